//! The Raft log and vote, in the `raft_log` and `raft_meta` column families.
//!
//! Appends, truncations, purges and votes are written with `sync`, and openraft is told an
//! append is flushed only after the write returned: an entry the leader counted towards a
//! quorum is on this node's disk.
//!
//! The newest entries are also kept decoded in memory ([`Recent`]): the leader reads each
//! entry back once per follower to replicate it and once more to apply it, and a follower
//! once to apply it, all within milliseconds of the append. Served from memory, those reads
//! cost a clone instead of a RocksDB read and a JSON decode.

use crate::db::{Cf, Db, StoreError, decode, encode};
use crate::{LogId, NodeId, StorageError, TypeConfig};
use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{Entry, RaftLogReader, StorageIOError, Vote};
use rocksdb::{Direction, IteratorMode, WriteBatch};
use std::collections::VecDeque;
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::{Arc, Mutex, MutexGuard};

const VOTE: &[u8] = b"vote";
const COMMITTED: &[u8] = b"committed";
const LAST_PURGED: &[u8] = b"last_purged";

/// How many bytes of encoded entries [`Recent`] keeps; decoded they take about three times
/// as much memory. Under load the entries being replicated and applied are the last few,
/// tens of KiB each; the bound only matters for large batches, whose older entries are then
/// read from RocksDB.
const RECENT_BYTES: usize = 1 << 20;

/// The log half of the storage. Cloning it gives another reader on the same database and the
/// same [`Recent`] entries.
#[derive(Clone, Debug)]
pub struct LogStore {
    db: Db,
    recent: Arc<Mutex<Recent>>,
}

/// The newest entries of the log, contiguous and ending at its last entry, as they were
/// appended. Every change to the log's tail or head goes through here after it reached
/// RocksDB, so what is here always matches what is stored.
#[derive(Debug, Default)]
struct Recent {
    /// The index of `entries[0]`.
    first: u64,
    /// Each entry with the size of its encoding, which is what the bound counts.
    entries: VecDeque<(Entry<TypeConfig>, usize)>,
    bytes: usize,
}

impl Recent {
    fn end(&self) -> u64 {
        self.first + self.entries.len() as u64
    }

    /// Adds an entry appended after the previous one; an entry that does not follow on
    /// starts the cache again.
    fn push(&mut self, entry: Entry<TypeConfig>, size: usize) {
        let index = entry.log_id.index;
        if self.entries.is_empty() || index != self.end() {
            self.entries.clear();
            self.bytes = 0;
            self.first = index;
        }
        self.entries.push_back((entry, size));
        self.bytes += size;
        while self.bytes > RECENT_BYTES {
            let Some((_, size)) = self.entries.pop_front() else {
                break;
            };
            self.bytes -= size;
            self.first += 1;
        }
    }

    /// Forgets the entries from `index` on.
    fn truncate(&mut self, index: u64) {
        while self.end() > index.max(self.first) {
            let Some((_, size)) = self.entries.pop_back() else {
                break;
            };
            self.bytes -= size;
        }
    }

    /// Forgets the entries up to and including `index`.
    fn purge(&mut self, index: u64) {
        while self.first <= index {
            let Some((_, size)) = self.entries.pop_front() else {
                break;
            };
            self.bytes -= size;
            self.first += 1;
        }
    }

    /// The entries `start..end`, if all of them are here.
    fn get(&self, start: u64, end: u64) -> Option<Vec<Entry<TypeConfig>>> {
        if start < self.first || end > self.end() || start > end {
            return None;
        }
        let from = (start - self.first) as usize;
        let to = (end - self.first) as usize;
        Some(
            self.entries
                .range(from..to)
                .map(|(entry, _)| entry.clone())
                .collect(),
        )
    }
}

impl LogStore {
    pub(crate) fn new(db: Db) -> LogStore {
        LogStore {
            db,
            recent: Arc::default(),
        }
    }

    fn recent(&self) -> MutexGuard<'_, Recent> {
        // The cache is only ever changed whole under the lock, so a panic elsewhere while it
        // was held leaves it consistent.
        self.recent.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn last_purged(&self) -> Result<Option<LogId>, StoreError> {
        Ok(self
            .db
            .get::<Option<LogId>>(Cf::Raft, LAST_PURGED)?
            .flatten())
    }

    fn last_entry(&self) -> Result<Option<Entry<TypeConfig>>, StoreError> {
        let rocks = self.db.rocks();
        let mut iter = rocks.iterator_cf(self.db.cf(Cf::Log), IteratorMode::End);
        match iter.next() {
            Some(item) => {
                let (key, value) = item.map_err(|source| StoreError::Rocks {
                    doing: "reading the log",
                    source,
                })?;
                decode(&key, &value).map(Some)
            }
            None => Ok(None),
        }
    }

    fn put_meta<T: serde::Serialize>(
        &self,
        key: &[u8],
        value: &T,
        sync: bool,
    ) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        batch.put_cf(self.db.cf(Cf::Raft), key, encode(value));
        self.db.write(batch, sync)
    }
}

fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

fn read_err(e: StoreError) -> StorageError {
    StorageIOError::read_logs(&e).into()
}

fn write_err(e: StoreError) -> StorageError {
    StorageIOError::write_logs(&e).into()
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError> {
        let start = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => i + 1,
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(i) => Some(i + 1),
            Bound::Excluded(i) => Some(*i),
            Bound::Unbounded => None,
        };
        if let Some(entries) = end.and_then(|end| self.recent().get(start, end)) {
            return Ok(entries);
        }
        let key = index_key(start);
        let iter = self.db.rocks().iterator_cf(
            self.db.cf(Cf::Log),
            IteratorMode::From(&key, Direction::Forward),
        );
        let mut entries = Vec::new();
        for item in iter {
            let (key, value) = item.map_err(|source| {
                read_err(StoreError::Rocks {
                    doing: "reading the log",
                    source,
                })
            })?;
            let index = crate::db::keys::id_of(&key).unwrap_or(u64::MAX);
            if !range.contains(&index) {
                break;
            }
            entries.push(decode(&key, &value).map_err(read_err)?);
        }
        Ok(entries)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged_log_id = self.last_purged().map_err(read_err)?;
        let last_log_id = match self.last_entry().map_err(read_err)? {
            Some(entry) => Some(entry.log_id),
            None => last_purged_log_id,
        };
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        self.put_meta(VOTE, vote, true)
            .map_err(|e| StorageIOError::write_vote(&e).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        self.db
            .get(Cf::Raft, VOTE)
            .map_err(|e| StorageIOError::read_vote(&e).into())
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Not synced: the committed id only saves re-applying entries after a restart, and an
        // older one read back after a crash is safe (the leader commits them again). The
        // write still reaches the write-ahead log in order with the next synced one.
        self.put_meta(COMMITTED, &committed, false)
            .map_err(write_err)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self
            .db
            .get::<Option<LogId>>(Cf::Raft, COMMITTED)
            .map_err(read_err)?
            .flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut batch = WriteBatch::default();
        let mut appended = Vec::new();
        for entry in entries {
            let bytes = encode(&entry);
            let size = bytes.len();
            batch.put_cf(self.db.cf(Cf::Log), index_key(entry.log_id.index), bytes);
            appended.push((entry, size));
        }
        let result = self.db.write(batch, true);
        if result.is_ok() {
            let mut recent = self.recent();
            for (entry, size) in appended {
                recent.push(entry, size);
            }
        }
        // openraft must hear about the flush, failed or not; the error is also returned.
        callback.log_io_completed(
            result
                .as_ref()
                .map(|_| ())
                .map_err(|e| std::io::Error::other(e.to_string())),
        );
        result.map_err(write_err)
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(
            self.db.cf(Cf::Log),
            index_key(log_id.index),
            index_key(u64::MAX),
        );
        batch.delete_cf(self.db.cf(Cf::Log), index_key(u64::MAX));
        self.db.write(batch, true).map_err(write_err)?;
        self.recent().truncate(log_id.index);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut batch = WriteBatch::default();
        batch.put_cf(self.db.cf(Cf::Raft), LAST_PURGED, encode(&Some(log_id)));
        batch.delete_range_cf(
            self.db.cf(Cf::Log),
            index_key(0),
            index_key(log_id.index + 1),
        );
        self.db.write(batch, true).map_err(write_err)?;
        self.recent().purge(log_id.index);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, EntryPayload};

    fn entry(index: u64) -> Entry<TypeConfig> {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Blank,
        }
    }

    fn indexes(entries: Option<Vec<Entry<TypeConfig>>>) -> Option<Vec<u64>> {
        entries.map(|entries| entries.iter().map(|e| e.log_id.index).collect())
    }

    fn filled(from: u64, to: u64, size: usize) -> Recent {
        let mut recent = Recent::default();
        for index in from..to {
            recent.push(entry(index), size);
        }
        recent
    }

    #[test]
    fn recent_entries_answer_only_ranges_they_hold_whole() {
        let recent = filled(5, 10, 100);
        assert_eq!(indexes(recent.get(5, 10)), Some(vec![5, 6, 7, 8, 9]));
        assert_eq!(indexes(recent.get(7, 8)), Some(vec![7]));
        assert_eq!(indexes(recent.get(7, 7)), Some(vec![]));
        assert_eq!(indexes(recent.get(4, 8)), None, "index 4 is not held");
        assert_eq!(indexes(recent.get(8, 11)), None, "index 10 is not held");
    }

    #[test]
    fn truncating_and_purging_keep_the_recent_entries_equal_to_the_log() {
        let mut recent = filled(1, 11, 100);
        recent.truncate(8);
        assert_eq!(indexes(recent.get(1, 8)), Some((1..8).collect()));
        assert_eq!(indexes(recent.get(1, 9)), None, "8 was truncated");
        assert_eq!(recent.bytes, 700);
        recent.purge(3);
        assert_eq!(indexes(recent.get(4, 8)), Some(vec![4, 5, 6, 7]));
        assert_eq!(indexes(recent.get(3, 8)), None, "3 was purged");
        // Appending after a truncation continues from it.
        recent.push(entry(8), 100);
        assert_eq!(indexes(recent.get(4, 9)), Some(vec![4, 5, 6, 7, 8]));
        // Truncating below the first entry empties it; purging past the last too.
        recent.truncate(2);
        assert_eq!(recent.entries.len(), 0);
        assert_eq!(recent.bytes, 0);
        let mut recent = filled(1, 5, 100);
        recent.purge(9);
        assert_eq!(recent.entries.len(), 0);
        assert_eq!(indexes(recent.get(1, 2)), None);
    }

    #[test]
    fn recent_entries_stay_within_their_bytes_and_restart_on_a_gap() {
        let size = RECENT_BYTES / 4;
        let mut recent = filled(1, 7, size);
        assert_eq!(recent.bytes, RECENT_BYTES);
        assert_eq!(indexes(recent.get(3, 7)), Some(vec![3, 4, 5, 6]));
        assert_eq!(indexes(recent.get(2, 7)), None, "the oldest went first");
        // An entry that does not follow the last (a snapshot was installed in between).
        recent.push(entry(20), 10);
        assert_eq!(indexes(recent.get(20, 21)), Some(vec![20]));
        assert_eq!(indexes(recent.get(6, 7)), None);
        assert_eq!(recent.bytes, 10);
        // One entry larger than the bound is not kept at all.
        recent.push(entry(21), RECENT_BYTES + 1);
        assert_eq!(indexes(recent.get(21, 22)), None);
        assert_eq!(recent.bytes, 0);
    }
}

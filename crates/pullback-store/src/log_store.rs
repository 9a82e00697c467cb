//! The Raft log and vote, in the `raft_log` and `raft_meta` column families.
//!
//! Appends, truncations, purges and votes are written with `sync`, and openraft is told an
//! append is flushed only after the write returned: an entry the leader counted towards a
//! quorum is on this node's disk.

use crate::db::{Cf, Db, StoreError, decode, encode};
use crate::{LogId, NodeId, StorageError, TypeConfig};
use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{Entry, RaftLogReader, StorageIOError, Vote};
use rocksdb::{Direction, IteratorMode, WriteBatch};
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};

const VOTE: &[u8] = b"vote";
const COMMITTED: &[u8] = b"committed";
const LAST_PURGED: &[u8] = b"last_purged";

/// The log half of the storage. Cloning it gives another reader on the same database.
#[derive(Clone, Debug)]
pub struct LogStore {
    db: Db,
}

impl LogStore {
    pub(crate) fn new(db: Db) -> LogStore {
        LogStore { db }
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
        for entry in entries {
            batch.put_cf(
                self.db.cf(Cf::Log),
                index_key(entry.log_id.index),
                encode(&entry),
            );
        }
        let result = self.db.write(batch, true);
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
        self.db.write(batch, true).map_err(write_err)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut batch = WriteBatch::default();
        batch.put_cf(self.db.cf(Cf::Raft), LAST_PURGED, encode(&Some(log_id)));
        batch.delete_range_cf(
            self.db.cf(Cf::Log),
            index_key(0),
            index_key(log_id.index + 1),
        );
        self.db.write(batch, true).map_err(write_err)
    }
}

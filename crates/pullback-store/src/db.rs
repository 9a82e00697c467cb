//! The RocksDB database, its column families and key layout.

use pullback_domain::versioned::{self, DecodeError};
use rocksdb::{
    BlockBasedIndexType, BlockBasedOptions, Cache, ColumnFamily, ColumnFamilyDescriptor, DB,
    Options, WriteBatch, WriteOptions,
};
use serde::{Serialize, de::DeserializeOwned};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Column families. Each holds one kind of data, so each can be iterated, dumped or cleared
/// on its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Cf {
    /// Raft log entries by index.
    Log,
    /// Raft vote, committed id, purge point, current snapshot.
    Raft,
    /// State machine records: alerts, incidents, jobs, conditions, checkpoints.
    State,
    /// Indexes derived from the records, kept in the same batches.
    Index,
}

impl Cf {
    pub const ALL: [Cf; 4] = [Cf::Log, Cf::Raft, Cf::State, Cf::Index];

    pub fn name(self) -> &'static str {
        match self {
            Cf::Log => "raft_log",
            Cf::Raft => "raft_meta",
            Cf::State => "state",
            Cf::Index => "index",
        }
    }

    /// The families a snapshot carries.
    pub const REPLICATED: [Cf; 2] = [Cf::State, Cf::Index];

    pub fn tag(self) -> u8 {
        match self {
            Cf::Log => 0,
            Cf::Raft => 1,
            Cf::State => 2,
            Cf::Index => 3,
        }
    }

    pub fn from_tag(tag: u8) -> Option<Cf> {
        Cf::ALL.into_iter().find(|cf| cf.tag() == tag)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot create data directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open the database in {path}: {source}")]
    Rocks {
        path: PathBuf,
        source: rocksdb::Error,
    },
    #[error("the database opened but its state cannot be read: {0}")]
    State(StoreError),
}

/// A failure to read or write the database, with what was being done.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("RocksDB failed while {doing}: {source}")]
    Rocks {
        doing: &'static str,
        source: rocksdb::Error,
    },
    #[error("stored value under {key} does not decode: {source}")]
    Decode { key: String, source: DecodeError },
    #[error("{0}")]
    Corrupt(String),
}

/// How much memory RocksDB may hold: two thirds for memtables (the largest is flushed when
/// they fill it), one third for the block cache shared by all column families.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreMemory {
    pub megabytes: usize,
}

impl Default for StoreMemory {
    /// 12 MiB: what keeps a node within 64 MB of its idle size through a 5-million-alert
    /// ingest (docs/performance.md). Larger budgets ingest faster.
    fn default() -> StoreMemory {
        StoreMemory { megabytes: 12 }
    }
}

impl StoreMemory {
    fn memtables(self) -> usize {
        (self.megabytes.max(3) << 20) * 2 / 3
    }

    fn cache(self) -> usize {
        (self.megabytes.max(3) << 20) / 3
    }

    /// The target size of the first level below the memtables: eight times one column
    /// family's memtable, so that it holds about two rounds of flushes (16 MiB by default).
    fn first_level(self) -> usize {
        self.memtables() / 4 * 8
    }
}

/// A cheap handle on the shared database.
#[derive(Clone)]
pub struct Db {
    inner: Arc<DB>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("path", &self.inner.path())
            .finish()
    }
}

impl Db {
    pub fn open(dir: &Path) -> Result<Db, OpenError> {
        Db::open_with(dir, StoreMemory::default())
    }

    pub fn open_with(dir: &Path, memory: StoreMemory) -> Result<Db, OpenError> {
        std::fs::create_dir_all(dir).map_err(|source| OpenError::CreateDir {
            path: dir.to_owned(),
            source,
        })?;
        let mut options = Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        // A fixed memory budget, whatever the ingest rate: without it each column family may
        // keep two 64 MiB memtables, and a burst of alerts grows the node by hundreds of MiB.
        options.set_db_write_buffer_size(memory.memtables());
        let cache = Cache::new_lru_cache(memory.cache());
        // A table file's index otherwise stays on the heap whole, so memory would grow with
        // the data. Partitioned, only a small top level is pinned and the partitions a lookup
        // needs come through the cache.
        // No Bloom filters: building them took about 12 MB more at the peak of a
        // 5-million-alert ingest, past the memory budget, for 7 % more cluster ingest
        // (docs/performance.md).
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&cache);
        table.set_index_type(BlockBasedIndexType::TwoLevelIndexSearch);
        table.set_cache_index_and_filter_blocks(true);
        table.set_pin_top_level_index_and_filter(true);
        let families = Cf::ALL.map(|cf| {
            let mut family = Options::default();
            family.set_write_buffer_size(memory.memtables() / 4);
            // The first level sized after what the memtables flush into it, not RocksDB's
            // default of 256 MiB: index keys arrive in no particular order, so every
            // compaction into that level rewrites most of it, and a level far larger than
            // the flushes multiplied the bytes written (docs/performance.md).
            family.set_max_bytes_for_level_base(memory.first_level() as u64);
            family.set_target_file_size_base(memory.first_level() as u64 / 4);
            family.set_block_based_table_factory(&table);
            ColumnFamilyDescriptor::new(cf.name(), family)
        });
        let db = DB::open_cf_descriptors(&options, dir, families).map_err(|source| {
            OpenError::Rocks {
                path: dir.to_owned(),
                source,
            }
        })?;
        Ok(Db {
            inner: Arc::new(db),
        })
    }

    pub fn rocks(&self) -> &DB {
        &self.inner
    }

    pub fn cf(&self, cf: Cf) -> &ColumnFamily {
        // The families are created at open, so a missing one is a broken invariant.
        self.inner
            .cf_handle(cf.name())
            .expect("column family created at open")
    }

    pub fn get_raw(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner
            .get_cf(self.cf(cf), key)
            .map_err(|source| StoreError::Rocks {
                doing: "reading",
                source,
            })
    }

    pub fn get<T: DeserializeOwned>(&self, cf: Cf, key: &[u8]) -> Result<Option<T>, StoreError> {
        match self.get_raw(cf, key)? {
            Some(bytes) => decode(key, &bytes).map(Some),
            None => Ok(None),
        }
    }

    /// Writes a batch; `durable` waits for the write-ahead log to reach the disk.
    pub fn write(&self, batch: WriteBatch, durable: bool) -> Result<(), StoreError> {
        let mut options = WriteOptions::default();
        options.set_sync(durable);
        self.inner
            .write_opt(batch, &options)
            .map_err(|source| StoreError::Rocks {
                doing: "writing a batch",
                source,
            })
    }

    /// Decoded values whose keys start with `prefix`, in key order.
    pub fn scan<T: DeserializeOwned>(
        &self,
        cf: Cf,
        prefix: &[u8],
    ) -> Result<Vec<(Vec<u8>, T)>, StoreError> {
        let mut out = Vec::new();
        for item in self.inner.prefix_iterator_cf(self.cf(cf), prefix) {
            let (key, value) = item.map_err(|source| StoreError::Rocks {
                doing: "scanning",
                source,
            })?;
            if !key.starts_with(prefix) {
                break;
            }
            out.push((key.to_vec(), decode(&key, &value)?));
        }
        Ok(out)
    }
}

pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    versioned::encode(value)
}

pub fn decode<T: DeserializeOwned>(key: &[u8], bytes: &[u8]) -> Result<T, StoreError> {
    versioned::decode(bytes).map_err(|source| StoreError::Decode {
        key: String::from_utf8_lossy(key).into(),
        source,
    })
}

/// Keys of the state machine. Numeric ids are big-endian so keys sort by id.
pub mod keys {
    pub const APPLIED: &[u8] = b"meta/applied";
    pub const MEMBERSHIP: &[u8] = b"meta/membership";

    pub fn seq(name: &str) -> Vec<u8> {
        format!("seq/{name}").into_bytes()
    }

    pub fn numbered(kind: &str, id: u64) -> Vec<u8> {
        let mut key = format!("{kind}/").into_bytes();
        key.extend_from_slice(&id.to_be_bytes());
        key
    }

    pub fn id_of(key: &[u8]) -> Option<u64> {
        let tail: [u8; 8] = key.get(key.len().checked_sub(8)?..)?.try_into().ok()?;
        Some(u64::from_be_bytes(tail))
    }

    pub fn alert(id: u64) -> Vec<u8> {
        numbered("alert", id)
    }
    pub fn incident(id: u64) -> Vec<u8> {
        numbered("incident", id)
    }
    pub fn job(id: u64) -> Vec<u8> {
        numbered("job", id)
    }
    /// Where match conditions start, each under `condition/<name>`.
    pub const CONDITIONS: &[u8] = b"condition/";
    pub fn condition(name: &str) -> Vec<u8> {
        [CONDITIONS, name.as_bytes()].concat()
    }
    pub fn source(name: &str) -> Vec<u8> {
        format!("source/{name}").into_bytes()
    }
    pub fn intel(kind: &str, value: &str) -> Vec<u8> {
        format!("intel/{kind}\0{value}").into_bytes()
    }
    /// A URL, domain or hash a TAP alert condemned: evidence for CLEAR.
    pub fn condemned(kind: &str, value: &str) -> Vec<u8> {
        format!("condemned/{kind}\0{value}").into_bytes()
    }
    pub fn checkpoint(source: &str) -> Vec<u8> {
        format!("checkpoint/{source}").into_bytes()
    }

    // Index keys. A NUL separates free-form parts, which cannot contain one.
    pub fn dedup(source: &str, dedup_key: &str) -> Vec<u8> {
        format!("dedup/{source}\0{dedup_key}").into_bytes()
    }
    pub fn link(index_key: &str) -> Vec<u8> {
        format!("link/{index_key}").into_bytes()
    }
    pub fn planned(message_id: &str, recipient: &str) -> Vec<u8> {
        format!("planned/{message_id}\0{recipient}").into_bytes()
    }
    pub fn rejected(source: &str, id: u64) -> Vec<u8> {
        numbered(&format!("rejected/{source}\0"), id)
    }
    pub fn rejected_seen(source: &str, event_key: &str) -> Vec<u8> {
        format!("rejected_seen/{source}\0{event_key}").into_bytes()
    }
    pub const CLUSTER_CA: &[u8] = b"cluster/ca";
    pub const CLUSTER_LEVEL: &[u8] = b"cluster/level";
    pub fn release(node_id: u64) -> Vec<u8> {
        numbered("release", node_id)
    }
    pub fn join_token(sha256: &str) -> Vec<u8> {
        format!("join_token/{sha256}").into_bytes()
    }
    pub fn queued(job_id: u64) -> Vec<u8> {
        numbered("queue", job_id)
    }
    pub fn user(name: &str) -> Vec<u8> {
        format!("user/{name}").into_bytes()
    }
    pub fn session(token_sha256: &str) -> Vec<u8> {
        format!("session/{token_sha256}").into_bytes()
    }
    pub fn backup(id: &str) -> Vec<u8> {
        format!("backup/{id}").into_bytes()
    }
    pub fn purge_schedule(name: &str) -> Vec<u8> {
        format!("purge_schedule/{name}").into_bytes()
    }
    pub fn purge_run(id: &str) -> Vec<u8> {
        format!("purge_run/{id}").into_bytes()
    }
    pub fn recommendation(id: &str) -> Vec<u8> {
        format!("recommendation/{id}").into_bytes()
    }
    pub fn audit(id: u64) -> Vec<u8> {
        numbered("audit", id)
    }
    /// Incidents by state, in the index family.
    pub fn incident_state_prefix(state: &str) -> Vec<u8> {
        format!("istate/{state}\0").into_bytes()
    }
    pub fn incident_state(state: &str, id: u64) -> Vec<u8> {
        let mut key = incident_state_prefix(state);
        key.extend_from_slice(&id.to_be_bytes());
        key
    }
    /// Counts of one day, `YYYY-MM-DD`, in the index family.
    pub fn day(day: &str) -> Vec<u8> {
        format!("day/{day}").into_bytes()
    }
    pub fn message(message_id: &str, alert_id: u64) -> Vec<u8> {
        let mut key = format!("message/{message_id}\0").into_bytes();
        key.extend_from_slice(&alert_id.to_be_bytes());
        key
    }
}

//! Pullback's durable state: the Raft log and the state machine, both in one RocksDB.
//!
//! Only this crate writes the database. The log store persists Raft entries and votes with
//! synchronous writes; the state machine applies committed [`Command`]s through the engine
//! and writes their effects in one batch together with the applied log id, so a restart
//! after a crash resumes exactly after the last entry whose effects are on disk.
//!
//! [`Command`]: pullback_domain::Command

mod apply;
mod db;
mod log_store;
mod read;
mod snapshot;
mod state_machine;

pub use db::{Db, OpenError, StoreError};
pub use log_store::LogStore;
pub use read::{IncidentFilter, Reader};
pub use state_machine::StateMachine;

use pullback_domain::{Command, CommandResponse};
use std::io::Cursor;

openraft::declare_raft_types!(
    /// The Raft types of a Pullback cluster.
    pub TypeConfig:
        D = Command,
        R = CommandResponse,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type NodeId = u64;
pub type LogId = openraft::LogId<NodeId>;
pub type StorageError = openraft::StorageError<NodeId>;
pub type Raft = openraft::Raft<TypeConfig>;

/// Opens (or creates) the database under `dir` and returns the two halves openraft needs,
/// plus a reader for queries.
pub fn open(dir: &std::path::Path) -> Result<(LogStore, StateMachine, Reader), OpenError> {
    let db = Db::open(dir)?;
    let state_machine = StateMachine::new(db.clone()).map_err(OpenError::State)?;
    Ok((LogStore::new(db.clone()), state_machine, Reader::new(db)))
}

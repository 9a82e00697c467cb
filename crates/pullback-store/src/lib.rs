//! Pullback's durable state: the Raft log and the state machine, both in one RocksDB.
//!
//! Only this crate writes the database. The log store persists Raft entries and votes with
//! synchronous writes; the state machine applies committed [`Command`]s through the engine
//! and writes their effects in one batch together with the applied log id, so a restart
//! after a crash resumes exactly after the last entry whose effects are on disk.
//!
//! [`Command`]: pullback_domain::Command

mod apply;
pub mod backup;
mod db;
mod directory;
mod log_store;
mod purge;
mod read;
mod recovery;
pub mod search;
mod snapshot;
mod state_machine;

pub use apply::{ClusterCa, DayCounts, JoinToken, NodeRelease};
pub use db::{Cf, Db, OpenError, StoreError, StoreMemory};
pub use log_store::LogStore;
pub use read::{IncidentFilter, Reader};
pub use recovery::{Forgotten, RecoveryError, forget_group};
pub use state_machine::StateMachine;

use pullback_domain::{Command, CommandResponse};

openraft::declare_raft_types!(
    /// The Raft types of a Pullback cluster.
    pub TypeConfig:
        D = Command,
        R = CommandResponse,
        NodeId = u64,
        Node = Member,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = tokio::fs::File,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type NodeId = u64;

/// How to reach a member of the group: peers call its Raft address, clients its API.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Member {
    /// `host:port` of the Raft listener, as peers reach it (its certificate names the host).
    #[serde(alias = "addr")]
    pub raft: String,
    /// Base URL of the API, such as `https://10.0.0.1:8480`; empty for a one-node group that
    /// has no peers to tell.
    #[serde(default)]
    pub api: String,
}

impl std::fmt::Display for Member {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "raft {} api {}", self.raft, self.api)
    }
}
pub type LogId = openraft::LogId<NodeId>;
pub type StorageError = openraft::StorageError<NodeId>;
pub type Raft = openraft::Raft<TypeConfig>;

/// Opens (or creates) the database under `dir` and returns the two halves openraft needs,
/// plus a reader for queries.
pub fn open(dir: &std::path::Path) -> Result<(LogStore, StateMachine, Reader), OpenError> {
    open_with(dir, StoreMemory::default())
}

/// Like [`open`], with a memory budget for RocksDB.
pub fn open_with(
    dir: &std::path::Path,
    memory: StoreMemory,
) -> Result<(LogStore, StateMachine, Reader), OpenError> {
    let db = Db::open_with(dir, memory)?;
    let state_machine = StateMachine::new(db.clone()).map_err(OpenError::State)?;
    Ok((LogStore::new(db.clone()), state_machine, Reader::new(db)))
}

//! Recovery after a cluster lost a majority of its nodes for good: one survivor forgets the
//! Raft group it belonged to and keeps its state, so that it can start a new group alone.

use crate::LogId;
use crate::db::{Cf, Db, OpenError, StoreError, encode, keys};
use pullback_domain::{QuarantineJob, RecipientStatus};
use rocksdb::{IteratorMode, WriteBatch};
use std::path::Path;

/// What [`forget_group`] kept.
#[derive(Clone, Debug)]
pub struct Forgotten {
    /// The last entry the state reflects.
    pub applied: Option<LogId>,
    /// Recipients left in progress by the old group's leaders, handed back to the new one.
    pub released: usize,
}

/// Makes the stopped node's store at `dir` forget its Raft group (log, vote, membership,
/// snapshots) while keeping every record. The new group's terms start again from one, so
/// recipients left in progress under an old term are released (term 0) for the new leader's
/// worker to claim; the old leaders are gone and cannot report them any more.
pub fn forget_group(dir: &Path) -> Result<Forgotten, RecoveryError> {
    if !dir.join("CURRENT").exists() {
        return Err(RecoveryError::NoStore(dir.display().to_string()));
    }
    let db = Db::open(dir)?;
    let applied = db.get::<Option<LogId>>(Cf::State, keys::APPLIED)?.flatten();
    let mut batch = WriteBatch::default();
    for cf in [Cf::Log, Cf::Raft] {
        for item in db.rocks().iterator_cf(db.cf(cf), IteratorMode::Start) {
            let (key, _) = item.map_err(|source| StoreError::Rocks {
                doing: "reading the Raft log",
                source,
            })?;
            batch.delete_cf(db.cf(cf), key);
        }
    }
    batch.delete_cf(db.cf(Cf::State), keys::APPLIED);
    batch.delete_cf(db.cf(Cf::State), keys::MEMBERSHIP);
    let mut released = 0;
    for (key, mut job) in db.scan::<QuarantineJob>(Cf::State, b"job/")? {
        let mut changed = false;
        for result in &mut job.results {
            if result.status == RecipientStatus::InProgress && result.term != 0 {
                result.term = 0;
                changed = true;
                released += 1;
            }
        }
        if changed {
            batch.put_cf(db.cf(Cf::State), key, encode(&job));
        }
    }
    db.write(batch, true)?;
    let snapshots = dir.join("snapshots");
    if snapshots.exists() {
        std::fs::remove_dir_all(&snapshots)
            .map_err(|e| StoreError::Corrupt(format!("removing {}: {e}", snapshots.display())))?;
    }
    Ok(Forgotten { applied, released })
}

#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    #[error("no store at {0}")]
    NoStore(String),
    #[error(transparent)]
    Open(#[from] OpenError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

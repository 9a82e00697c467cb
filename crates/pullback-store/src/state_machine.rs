//! The openraft state machine over the `state` and `index` column families.

use crate::apply::{Tx, apply};
use crate::db::{Cf, Db, StoreError, keys};
use crate::snapshot;
use crate::{LogId, Member, NodeId, StorageError, TypeConfig};
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    AnyError, Entry, EntryPayload, RaftSnapshotBuilder, SnapshotMeta, StorageIOError,
    StoredMembership,
};
use pullback_domain::CommandResponse;
use std::path::PathBuf;
use tokio::io::AsyncSeekExt;

type Membership = StoredMembership<NodeId, Member>;

/// Applies committed entries. Cloning gives a snapshot builder on the same database.
#[derive(Clone, Debug)]
pub struct StateMachine {
    db: Db,
    /// The file a snapshot is being received into.
    receiving: Option<PathBuf>,
}

impl StateMachine {
    pub(crate) fn new(db: Db) -> Result<StateMachine, StoreError> {
        // Fail at open, not at the first apply, when the stored state cannot be read.
        db.get::<Option<LogId>>(Cf::State, keys::APPLIED)?;
        db.get::<Membership>(Cf::State, keys::MEMBERSHIP)?;
        crate::search::ensure_index(&db)?;
        Ok(StateMachine {
            db,
            receiving: None,
        })
    }

    fn applied(&self) -> Result<(Option<LogId>, Membership), StoreError> {
        let applied = self
            .db
            .get::<Option<LogId>>(Cf::State, keys::APPLIED)?
            .flatten();
        let membership = self
            .db
            .get::<Membership>(Cf::State, keys::MEMBERSHIP)?
            .unwrap_or_default();
        Ok((applied, membership))
    }
}

fn sm_read(e: StoreError) -> StorageError {
    StorageIOError::read_state_machine(&e).into()
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = StateMachine;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, Membership), StorageError> {
        self.applied().map_err(sm_read)
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandResponse>, StorageError>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut tx = Tx::new(&self.db);
        let mut responses = Vec::new();
        let mut last = None;
        for entry in entries {
            let log_id = entry.log_id;
            let response = match &entry.payload {
                EntryPayload::Blank => CommandResponse::default(),
                EntryPayload::Normal(command) => apply(&mut tx, command, log_id.leader_id.term)
                    .map_err(|e| StorageIOError::apply(log_id, &e))?,
                EntryPayload::Membership(membership) => {
                    let stored = StoredMembership::new(Some(log_id), membership.clone());
                    tx.put(Cf::State, keys::MEMBERSHIP.to_vec(), &stored);
                    CommandResponse::default()
                }
            };
            responses.push(response);
            last = Some(log_id);
        }
        if let Some(last) = last {
            // The applied id goes into the same batch as the effects it covers.
            tx.put(Cf::State, keys::APPLIED.to_vec(), &Some(last));
            // The log was synced before these entries committed; after a crash they are
            // applied again from the applied id, so this batch need not wait for the disk.
            self.db
                .write(tx.into_batch(), false)
                .map_err(|e| StorageError::from(StorageIOError::write_state_machine(&e)))?;
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<tokio::fs::File>, StorageError> {
        let path = snapshot::receiving(&self.db)
            .map_err(|e| StorageError::from(StorageIOError::write_snapshot(None, &e)))?;
        // Read and write: openraft writes the chunks, installing reads them back.
        let file = tokio::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .await
            .map_err(|e| {
                StorageError::from(StorageIOError::write_snapshot(None, AnyError::new(&e)))
            })?;
        self.receiving = Some(path);
        Ok(Box::new(file))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, Member>,
        data: Box<tokio::fs::File>,
    ) -> Result<(), StorageError> {
        let signature = Some(meta.signature());
        let failed = |e: &dyn std::fmt::Display| {
            StorageError::from(StorageIOError::write_snapshot(
                signature.clone(),
                AnyError::error(e.to_string()),
            ))
        };
        // The data may come from the file begun above or, as openraft's own tests do, from
        // another node's snapshot: copy it from its start into a file of this store's.
        let mut data = *data;
        let received = snapshot::receiving(&self.db).map_err(|e| failed(&e))?;
        let mut copy = tokio::fs::File::create(&received)
            .await
            .map_err(|e| failed(&e))?;
        data.seek(std::io::SeekFrom::Start(0))
            .await
            .map_err(|e| failed(&e))?;
        tokio::io::copy(&mut data, &mut copy)
            .await
            .map_err(|e| failed(&e))?;
        copy.sync_all().await.map_err(|e| failed(&e))?;
        drop((data, copy));
        if let Some(begun) = self.receiving.take()
            && begun != received
        {
            let _ = tokio::fs::remove_file(&begun).await;
        }
        let (db, owned) = (self.db.clone(), meta.clone());
        tokio::task::spawn_blocking(move || {
            snapshot::install(&db, &owned, &received)?;
            crate::search::ensure_index(&db)
        })
        .await
        .map_err(|e| failed(&e))?
        .map_err(|e| failed(&e))?;
        tracing::info!(
            snapshot = %meta.snapshot_id,
            last_log_id = ?meta.last_log_id.map(|l| l.index),
            "installed a snapshot from the leader"
        );
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let stored = snapshot::current(&self.db)
            .map_err(|e| StorageError::from(StorageIOError::read_snapshot(None, &e)))?;
        let Some((meta, path)) = stored else {
            return Ok(None);
        };
        let file = tokio::fs::File::open(&path).await.map_err(|e| {
            StorageError::from(StorageIOError::read_snapshot(None, AnyError::new(&e)))
        })?;
        Ok(Some(Snapshot {
            meta,
            snapshot: Box::new(file),
        }))
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let failed = |e: &dyn std::fmt::Display| {
            StorageError::from(StorageIOError::read_snapshot(
                None,
                AnyError::error(e.to_string()),
            ))
        };
        let db = self.db.clone();
        let (meta, path) = tokio::task::spawn_blocking(move || snapshot::build(&db))
            .await
            .map_err(|e| failed(&e))?
            .map_err(|e| failed(&e))?;
        tracing::debug!(snapshot = %meta.snapshot_id, "built a snapshot");
        let file = tokio::fs::File::open(&path).await.map_err(|e| failed(&e))?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(file),
        })
    }
}

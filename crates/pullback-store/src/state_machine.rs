//! The openraft state machine over the `state` and `index` column families.

use crate::apply::{Tx, apply};
use crate::db::{Cf, Db, StoreError, keys};
use crate::snapshot;
use crate::{LogId, Member, NodeId, StorageError, TypeConfig};
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    Entry, EntryPayload, RaftSnapshotBuilder, SnapshotMeta, StorageIOError, StoredMembership,
};
use pullback_domain::CommandResponse;
use std::io::Cursor;

type Membership = StoredMembership<NodeId, Member>;

/// Applies committed entries. Cloning gives a snapshot builder on the same database.
#[derive(Clone, Debug)]
pub struct StateMachine {
    db: Db,
}

impl StateMachine {
    pub(crate) fn new(db: Db) -> Result<StateMachine, StoreError> {
        // Fail at open, not at the first apply, when the stored state cannot be read.
        db.get::<Option<LogId>>(Cf::State, keys::APPLIED)?;
        db.get::<Membership>(Cf::State, keys::MEMBERSHIP)?;
        Ok(StateMachine { db })
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

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, Member>,
        data: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let signature = Some(meta.signature());
        let data = data.into_inner();
        snapshot::install(&self.db, meta, &data)
            .map_err(|e| StorageIOError::write_snapshot(signature, &e))?;
        tracing::info!(
            snapshot = %meta.snapshot_id,
            bytes = data.len(),
            last_log_id = ?meta.last_log_id.map(|l| l.index),
            "installed a snapshot from the leader"
        );
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let stored = snapshot::current(&self.db)
            .map_err(|e| StorageError::from(StorageIOError::read_snapshot(None, &e)))?;
        Ok(stored.map(|(meta, data)| Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        }))
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let (meta, data) = snapshot::build(&self.db)
            .map_err(|e| StorageError::from(StorageIOError::read_snapshot(None, &e)))?;
        tracing::debug!(snapshot = %meta.snapshot_id, bytes = data.len(), "built a snapshot");
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

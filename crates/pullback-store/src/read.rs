//! Queries over the applied state, for the API and the workers.
//!
//! Reads see what this node has applied. On the leader that includes every acknowledged
//! write; followers may lag, which the cluster layer accounts for.

use crate::LogId;
use crate::apply::{ClusterCa, JoinToken};
use crate::db::{Cf, Db, StoreError, keys};
use pullback_domain::{
    Alert, Checkpoint, Incident, IncidentState, MatchCondition, MessageId, QuarantineJob,
    RejectedEvent, SourceDefinition, Timestamp,
};

/// Which incidents to list.
#[derive(Clone, Debug, Default)]
pub struct IncidentFilter {
    pub state: Option<IncidentState>,
    pub created_after: Option<Timestamp>,
    pub created_before: Option<Timestamp>,
}

#[derive(Clone, Debug)]
pub struct Reader {
    db: Db,
}

impl Reader {
    pub(crate) fn new(db: Db) -> Reader {
        Reader { db }
    }

    /// Memory RocksDB holds, by use, summed over column families; a use whose figure cannot
    /// be read is left out.
    pub fn memory_usage(&self) -> Vec<(&'static str, u64)> {
        let rocks = self.db.rocks();
        let per_family = |property: &str| -> Option<u64> {
            let mut total = 0;
            for cf in Cf::ALL {
                total += rocks
                    .property_int_value_cf(self.db.cf(cf), property)
                    .ok()
                    .flatten()?;
            }
            Some(total)
        };
        let mut usage = Vec::new();
        if let Some(bytes) = per_family("rocksdb.cur-size-all-mem-tables") {
            usage.push(("memtables", bytes));
        }
        if let Some(bytes) = per_family("rocksdb.estimate-table-readers-mem") {
            usage.push(("table_readers", bytes));
        }
        // The cache is shared: any family reports all of it.
        if let Ok(Some(bytes)) =
            rocks.property_int_value_cf(self.db.cf(Cf::State), "rocksdb.block-cache-usage")
        {
            usage.push(("block_cache", bytes));
        }
        usage
    }

    pub fn applied(&self) -> Result<Option<LogId>, StoreError> {
        Ok(self
            .db
            .get::<Option<LogId>>(Cf::State, keys::APPLIED)?
            .flatten())
    }

    /// The cluster CA, once the first node stored it.
    pub fn cluster_ca(&self) -> Result<Option<ClusterCa>, StoreError> {
        self.db.get(Cf::State, keys::CLUSTER_CA)
    }

    /// A join token by the SHA-256 of its secret.
    pub fn join_token(&self, sha256: &str) -> Result<Option<JoinToken>, StoreError> {
        self.db.get(Cf::State, &keys::join_token(sha256))
    }

    pub fn alert(&self, id: u64) -> Result<Option<Alert>, StoreError> {
        self.db.get(Cf::State, &keys::alert(id))
    }

    pub fn alerts(&self) -> Result<Vec<Alert>, StoreError> {
        self.values(Cf::State, b"alert/")
    }

    /// Alerts about one message, found through the Message-ID index.
    pub fn alerts_by_message_id(&self, message_id: &MessageId) -> Result<Vec<Alert>, StoreError> {
        let prefix = format!("message/{}\0", message_id.as_str()).into_bytes();
        let ids = self.values::<u64>(Cf::Index, &prefix)?;
        ids.into_iter()
            .filter_map(|id| self.alert(id).transpose())
            .collect()
    }

    pub fn incident(&self, id: u64) -> Result<Option<Incident>, StoreError> {
        self.db.get(Cf::State, &keys::incident(id))
    }

    pub fn incidents(&self, filter: &IncidentFilter) -> Result<Vec<Incident>, StoreError> {
        // FIXME: a full scan; fine for the tens of thousands of incidents a year brings, but
        // search over millions needs the time index the search issue adds.
        let mut all = self.values::<Incident>(Cf::State, b"incident/")?;
        all.retain(|i| {
            filter.state.is_none_or(|s| i.state == s)
                && filter.created_after.is_none_or(|t| i.created_at >= t)
                && filter.created_before.is_none_or(|t| i.created_at < t)
        });
        Ok(all)
    }

    pub fn job(&self, id: u64) -> Result<Option<QuarantineJob>, StoreError> {
        self.db.get(Cf::State, &keys::job(id))
    }

    pub fn jobs(&self) -> Result<Vec<QuarantineJob>, StoreError> {
        self.values(Cf::State, b"job/")
    }

    /// Jobs with a recipient still pending or in progress, oldest first.
    pub fn queued_jobs(&self) -> Result<Vec<QuarantineJob>, StoreError> {
        let ids = self.values::<u64>(Cf::Index, b"queue/")?;
        ids.into_iter()
            .filter_map(|id| self.job(id).transpose())
            .collect()
    }

    pub fn match_conditions(&self) -> Result<Vec<MatchCondition>, StoreError> {
        self.values(Cf::State, b"condition/")
    }

    /// Sources defined in the replicated state (not TAP sources, which the file defines).
    pub fn sources(&self) -> Result<Vec<SourceDefinition>, StoreError> {
        self.values(Cf::State, b"source/")
    }

    pub fn source(&self, name: &str) -> Result<Option<SourceDefinition>, StoreError> {
        self.db.get(Cf::State, &keys::source(name))
    }

    /// The intelligence entry for a value, already normalised.
    pub fn intel(
        &self,
        kind: pullback_domain::IntelKind,
        value: &str,
    ) -> Result<Option<pullback_domain::IntelEntry>, StoreError> {
        self.db.get(Cf::State, &keys::intel(kind.as_str(), value))
    }

    /// Every intelligence entry of a kind.
    pub fn intel_entries(
        &self,
        kind: pullback_domain::IntelKind,
    ) -> Result<Vec<pullback_domain::IntelEntry>, StoreError> {
        self.values(Cf::State, format!("intel/{}\0", kind.as_str()).as_bytes())
    }

    /// The alert of a threat feed that condemned this value, if one did.
    pub fn condemned_by(
        &self,
        kind: pullback_domain::IntelKind,
        value: &str,
    ) -> Result<Option<u64>, StoreError> {
        self.db
            .get(Cf::Index, &keys::condemned(kind.as_str(), value))
    }

    /// Events of a source that could not be read, oldest first.
    pub fn rejected_events(&self, source: &str) -> Result<Vec<RejectedEvent>, StoreError> {
        self.values(Cf::State, format!("rejected/{source}\0").as_bytes())
    }

    pub fn checkpoint(&self, source: &str) -> Result<Option<Checkpoint>, StoreError> {
        self.db.get(Cf::State, &keys::checkpoint(source))
    }

    pub fn checkpoints(&self) -> Result<Vec<(String, Checkpoint)>, StoreError> {
        let rows = self.db.scan::<Checkpoint>(Cf::State, b"checkpoint/")?;
        Ok(rows
            .into_iter()
            .map(|(key, cp)| {
                (
                    String::from_utf8_lossy(&key["checkpoint/".len()..]).into(),
                    cp,
                )
            })
            .collect())
    }

    fn values<T: serde::de::DeserializeOwned>(
        &self,
        cf: Cf,
        prefix: &[u8],
    ) -> Result<Vec<T>, StoreError> {
        Ok(self
            .db
            .scan(cf, prefix)?
            .into_iter()
            .map(|(_, v)| v)
            .collect())
    }
}

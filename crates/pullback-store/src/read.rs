//! Queries over the applied state, for the API and the workers.
//!
//! Reads see what this node has applied. On the leader that includes every acknowledged
//! write; followers may lag, which the cluster layer accounts for.

use crate::LogId;
use crate::apply::{ClusterCa, JoinToken, NodeRelease};
use crate::db::{Cf, Db, StoreError, keys};
use pullback_domain::{
    Alert, Checkpoint, Incident, IncidentState, MatchCondition, MessageId, QuarantineJob,
    RejectedEvent, SourceDefinition, Timestamp,
};
use std::collections::BTreeMap;

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

    pub(crate) fn db(&self) -> &Db {
        &self.db
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

    /// The cluster's command level: what commands may be proposed (see
    /// [`pullback_domain::COMMAND_LEVEL`]).
    pub fn cluster_level(&self) -> Result<u32, StoreError> {
        Ok(self
            .db
            .get::<u32>(Cf::State, keys::CLUSTER_LEVEL)?
            .unwrap_or(pullback_domain::BASE_LEVEL))
    }

    /// The release each node last reported, by node id.
    pub fn releases(&self) -> Result<BTreeMap<u64, NodeRelease>, StoreError> {
        Ok(self
            .db
            .scan::<NodeRelease>(Cf::State, b"release/")?
            .into_iter()
            .filter_map(|(key, release)| Some((keys::id_of(&key)?, release)))
            .collect())
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
        self.values(Cf::State, keys::CONDITIONS)
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

    /// One page of a search, newest first; see [`crate::search`]. `budget` bounds the alerts
    /// looked at.
    pub fn search(
        &self,
        query: &crate::search::Query,
        before: Option<u64>,
        limit: usize,
        budget: usize,
    ) -> Result<crate::search::Hits, StoreError> {
        crate::search::run(&self.db, query, before, limit, budget)
    }

    /// Incidents newest first, with ids below `before`, in `state` when given, that `keep`
    /// accepts; looks at no more than `budget` incidents. Returns the page and where the next
    /// one starts.
    pub fn incident_page(
        &self,
        state: Option<IncidentState>,
        before: Option<u64>,
        limit: usize,
        budget: usize,
        mut keep: impl FnMut(&Incident) -> bool,
    ) -> Result<(Vec<Incident>, Option<u64>), StoreError> {
        let (cf, prefix) = match state {
            Some(state) => (
                Cf::Index,
                keys::incident_state_prefix(crate::apply::state_name(state)),
            ),
            None => (Cf::State, b"incident/".to_vec()),
        };
        let mut iter = self.db.rocks().raw_iterator_cf(self.db.cf(cf));
        let mut target = prefix.clone();
        target.extend_from_slice(&before.unwrap_or(u64::MAX).saturating_sub(1).to_be_bytes());
        if before == Some(0) {
            return Ok((Vec::new(), None));
        }
        iter.seek_for_prev(&target);
        let mut page = Vec::new();
        let mut examined = 0;
        while iter.valid() {
            let Some(key) = iter.key() else { break };
            if !key.starts_with(&prefix) || key.len() != prefix.len() + 8 {
                break;
            }
            let Some(id) = keys::id_of(key) else { break };
            examined += 1;
            if let Some(incident) = self.incident(id)?
                && keep(&incident)
            {
                page.push(incident);
                if page.len() >= limit {
                    return Ok((page, (id > 1).then_some(id)));
                }
            }
            if examined >= budget {
                return Ok((page, Some(id)));
            }
            iter.prev();
        }
        iter.status().map_err(|source| StoreError::Rocks {
            doing: "listing incidents",
            source,
        })?;
        Ok((page, None))
    }

    pub fn user(&self, name: &str) -> Result<Option<pullback_domain::User>, StoreError> {
        self.db.get(Cf::State, &keys::user(name))
    }

    pub fn users(&self) -> Result<Vec<pullback_domain::User>, StoreError> {
        self.values(Cf::State, b"user/")
    }

    /// A session by the hex SHA-256 of its cookie.
    pub fn session(
        &self,
        token_sha256: &str,
    ) -> Result<Option<pullback_domain::Session>, StoreError> {
        self.db.get(Cf::State, &keys::session(token_sha256))
    }

    /// Audit entries newest first, with ids below `before`.
    pub fn audit_page(
        &self,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<pullback_domain::AuditEntry>, StoreError> {
        let mut iter = self.db.rocks().raw_iterator_cf(self.db.cf(Cf::State));
        let mut target = b"audit/".to_vec();
        target.extend_from_slice(&before.unwrap_or(u64::MAX).saturating_sub(1).to_be_bytes());
        iter.seek_for_prev(&target);
        let mut page = Vec::new();
        while iter.valid() && page.len() < limit {
            let (Some(key), Some(value)) = (iter.key(), iter.value()) else {
                break;
            };
            if !key.starts_with(b"audit/") {
                break;
            }
            page.push(crate::db::decode(key, value)?);
            iter.prev();
        }
        Ok(page)
    }

    /// Counts of each day from `first` to `last` (UTC days, inclusive); days without any are
    /// zero.
    pub fn days(
        &self,
        first: chrono::NaiveDate,
        last: chrono::NaiveDate,
    ) -> Result<Vec<(chrono::NaiveDate, crate::DayCounts)>, StoreError> {
        let mut out = Vec::new();
        let mut day = first;
        while day <= last {
            let key = keys::day(&day.format("%Y-%m-%d").to_string());
            out.push((day, self.db.get(Cf::Index, &key)?.unwrap_or_default()));
            day = day.succ_opt().unwrap_or(day);
            if out.len() > 3660 {
                break;
            }
        }
        Ok(out)
    }

    /// Backup runs, by id (ids start with their time, so oldest first).
    pub fn backups(&self) -> Result<Vec<pullback_domain::BackupRecord>, StoreError> {
        self.values(Cf::State, b"backup/")
    }

    pub fn backup(&self, id: &str) -> Result<Option<pullback_domain::BackupRecord>, StoreError> {
        self.db.get(Cf::State, &keys::backup(id))
    }

    pub fn purge_schedules(&self) -> Result<Vec<pullback_domain::PurgeSchedule>, StoreError> {
        self.values(Cf::State, b"purge_schedule/")
    }

    pub fn purge_runs(&self) -> Result<Vec<pullback_domain::PurgeRun>, StoreError> {
        let mut runs: Vec<pullback_domain::PurgeRun> = self.values(Cf::State, b"purge_run/")?;
        runs.sort_by_key(|r| r.started_at);
        Ok(runs)
    }

    pub fn recommendation_marks(
        &self,
    ) -> Result<Vec<(String, pullback_domain::RecommendationMarks)>, StoreError> {
        let rows = self.db.scan(Cf::State, b"recommendation/")?;
        Ok(rows
            .into_iter()
            .map(|(key, marks)| {
                (
                    String::from_utf8_lossy(&key["recommendation/".len()..]).into(),
                    marks,
                )
            })
            .collect())
    }

    /// How many records of the state have keys starting with `prefix` (keys only are read).
    pub fn count(&self, prefix: &str) -> Result<u64, StoreError> {
        let mut iter = self.db.rocks().raw_iterator_cf(self.db.cf(Cf::State));
        iter.seek(prefix.as_bytes());
        let mut count = 0;
        while iter.valid() && iter.key().is_some_and(|k| k.starts_with(prefix.as_bytes())) {
            count += 1;
            iter.next();
        }
        Ok(count)
    }

    /// The size of the store's tables on disk, in bytes.
    pub fn disk_bytes(&self) -> u64 {
        Cf::ALL
            .iter()
            .filter_map(|cf| {
                self.db
                    .rocks()
                    .property_int_value_cf(self.db.cf(*cf), "rocksdb.total-sst-files-size")
                    .ok()
                    .flatten()
            })
            .sum()
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

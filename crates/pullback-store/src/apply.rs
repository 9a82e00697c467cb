//! Applying commands: the state transitions of Pullback, decided by the engine.
//!
//! A [`Tx`] collects the writes of one batch of entries in memory, reads its own writes, and
//! becomes one RocksDB write batch together with the applied log id.

use crate::db::{Cf, Db, StoreError, decode, encode, keys};
use pullback_domain::{
    Alert, AlertDraft, BASE_LEVEL, Checkpoint, Command, CommandResponse, Comment, Incident,
    IncidentState, JobAction, MatchCondition, QuarantineJob, RecipientOutcome, RecipientResult,
    RecipientStatus, RejectedEvent, Removal, Secret, Timestamp,
};
use rocksdb::WriteBatch;
use serde::{Serialize, de::DeserializeOwned};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Pending writes of one apply batch, readable before they are committed.
pub(crate) struct Tx<'a> {
    db: &'a Db,
    writes: BTreeMap<(Cf, Vec<u8>), Option<Vec<u8>>>,
    /// Key ranges to delete, applied before the writes. Reads in the same batch do not see
    /// them, so only ranges nothing else in the batch reads may go here.
    ranges: Vec<(Cf, Vec<u8>, Vec<u8>)>,
    /// The match conditions as of the last read, until a write in the batch changes them:
    /// every alert of a batch is matched against them.
    conditions: Option<Arc<Vec<MatchCondition>>>,
}

impl<'a> Tx<'a> {
    pub(crate) fn new(db: &'a Db) -> Tx<'a> {
        Tx {
            db,
            writes: BTreeMap::new(),
            ranges: Vec::new(),
            conditions: None,
        }
    }

    /// Forgets the conditions read so far if a write to `cf` may change them.
    fn touch(&mut self, cf: Cf, key: &[u8]) {
        if cf == Cf::State && key.starts_with(keys::CONDITIONS) {
            self.conditions = None;
        }
    }

    fn get_raw(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        match self.writes.get(&(cf, key.to_vec())) {
            Some(pending) => Ok(pending.clone()),
            None => self.db.get_raw(cf, key),
        }
    }

    pub(crate) fn get<T: DeserializeOwned>(
        &self,
        cf: Cf,
        key: &[u8],
    ) -> Result<Option<T>, StoreError> {
        self.get_raw(cf, key)?
            .map(|bytes| decode(key, &bytes))
            .transpose()
    }

    fn exists(&self, cf: Cf, key: &[u8]) -> Result<bool, StoreError> {
        Ok(self.get_raw(cf, key)?.is_some())
    }

    pub(crate) fn put<T: Serialize>(&mut self, cf: Cf, key: Vec<u8>, value: &T) {
        self.touch(cf, &key);
        self.writes.insert((cf, key), Some(encode(value)));
    }

    pub(crate) fn db(&self) -> &'a Db {
        self.db
    }

    pub(crate) fn delete_range(&mut self, cf: Cf, from: Vec<u8>, to: Vec<u8>) {
        if cf == Cf::State {
            self.conditions = None;
        }
        self.writes
            .retain(|(c, key), _| *c != cf || key.as_slice() < from.as_slice() || key >= &to);
        self.ranges.push((cf, from, to));
    }

    pub(crate) fn delete(&mut self, cf: Cf, key: Vec<u8>) {
        self.touch(cf, &key);
        self.writes.insert((cf, key), None);
    }

    fn next_id(&mut self, sequence: &str) -> Result<u64, StoreError> {
        let key = keys::seq(sequence);
        let next = self.get::<u64>(Cf::State, &key)?.unwrap_or(0) + 1;
        self.put(Cf::State, key, &next);
        Ok(next)
    }

    /// Match conditions as of this point in the batch.
    fn conditions(&mut self) -> Result<Arc<Vec<MatchCondition>>, StoreError> {
        if let Some(conditions) = &self.conditions {
            return Ok(conditions.clone());
        }
        let mut by_key: BTreeMap<Vec<u8>, MatchCondition> = self
            .db
            .scan(Cf::State, keys::CONDITIONS)?
            .into_iter()
            .collect();
        let pending = self
            .writes
            .range((Cf::State, keys::CONDITIONS.to_vec())..)
            .take_while(|((cf, key), _)| *cf == Cf::State && key.starts_with(keys::CONDITIONS));
        for ((_, key), value) in pending {
            match value {
                Some(bytes) => by_key.insert(key.clone(), decode(key, bytes)?),
                None => by_key.remove(key),
            };
        }
        let conditions = Arc::new(by_key.into_values().collect::<Vec<_>>());
        self.conditions = Some(conditions.clone());
        Ok(conditions)
    }

    pub(crate) fn into_batch(self) -> WriteBatch {
        let mut batch = WriteBatch::default();
        for (cf, from, to) in self.ranges {
            batch.delete_range_cf(self.db.cf(cf), from, to);
        }
        for ((cf, key), value) in self.writes {
            match value {
                Some(bytes) => batch.put_cf(self.db.cf(cf), key, bytes),
                None => batch.delete_cf(self.db.cf(cf), key),
            }
        }
        batch
    }
}

/// Applies one command. `term` is the term of the leader that appended the entry.
pub(crate) fn apply(
    tx: &mut Tx<'_>,
    command: &Command,
    term: u64,
) -> Result<CommandResponse, StoreError> {
    // Audited and batched commands are checked one by one as they are applied.
    let wrapper = matches!(command, Command::Audited { .. } | Command::Batch { .. });
    if !wrapper && let Some(why) = command.refusal_by_level(|| cluster_level(tx))? {
        return Ok(CommandResponse::refused(why));
    }
    match command {
        Command::IngestAlerts {
            source,
            at,
            drafts,
            rejected,
            checkpoint,
        } => ingest(tx, source, *at, drafts, rejected, checkpoint.as_ref()),
        Command::SaveCheckpoint { source, checkpoint } => {
            save_checkpoint(tx, source, checkpoint, 0, 0, 0)?;
            Ok(CommandResponse::default())
        }
        Command::PutMatchCondition { condition } => {
            if let Err(reason) = condition.validate() {
                return Ok(CommandResponse::refused(reason));
            }
            tx.put(Cf::State, keys::condition(&condition.name), condition);
            Ok(CommandResponse::default())
        }
        Command::PutSource { source } => {
            if let Err(reason) = source.validate() {
                return Ok(CommandResponse::refused(reason));
            }
            tx.put(Cf::State, keys::source(&source.name), source);
            Ok(CommandResponse::default())
        }
        Command::PutIntel { entries } => {
            for entry in entries {
                let Some(value) = entry.kind.normalise(&entry.value) else {
                    return Ok(CommandResponse::refused(format!(
                        "{} {:?} is not valid",
                        entry.kind.as_str(),
                        entry.value
                    )));
                };
                let entry = pullback_domain::IntelEntry {
                    value: value.clone(),
                    ..entry.clone()
                };
                tx.put(Cf::State, keys::intel(entry.kind.as_str(), &value), &entry);
            }
            Ok(CommandResponse::default())
        }
        Command::DeleteIntel { kind, value } => {
            let key = keys::intel(kind.as_str(), value);
            if !tx.exists(Cf::State, &key)? {
                return Ok(CommandResponse::refused(format!(
                    "no {} {value:?} in the intelligence lists",
                    kind.as_str()
                )));
            }
            tx.delete(Cf::State, key);
            Ok(CommandResponse::default())
        }
        Command::OverrideVerdict {
            alert_id,
            disposition,
            reason,
            by,
            at,
        } => override_verdict(tx, *alert_id, disposition, reason, by, *at),
        Command::DeleteSource { name } => {
            if !tx.exists(Cf::State, &keys::source(name))? {
                return Ok(CommandResponse::refused(format!(
                    "no source named {name:?}"
                )));
            }
            tx.delete(Cf::State, keys::source(name));
            Ok(CommandResponse::default())
        }
        Command::DeleteMatchCondition { name } => {
            if !tx.exists(Cf::State, &keys::condition(name))? {
                return Ok(CommandResponse::refused(format!(
                    "no match condition named {name:?}"
                )));
            }
            tx.delete(Cf::State, keys::condition(name));
            Ok(CommandResponse::default())
        }
        Command::ClaimRecipients {
            job_id,
            recipients,
            term: claimed,
            at,
        } => claim(tx, *job_id, recipients, *claimed, term, *at),
        Command::RecordOutcomes {
            job_id,
            outcomes,
            term: started,
            at,
        } => {
            let outcomes = outcomes.iter().map(|o| (o, None));
            record(tx, *job_id, outcomes, true, *started, term, *at)
        }
        Command::RecordDirectoryOutcomes {
            job_id,
            outcomes,
            term: started,
            at,
        } => {
            let outcomes = outcomes.iter().map(|o| (&o.outcome, o.previous.as_ref()));
            record(tx, *job_id, outcomes, false, *started, term, *at)
        }
        Command::RequestRestore {
            job_id,
            recipients,
            requested_by,
            at,
        } => request_restore(tx, *job_id, recipients.as_deref(), requested_by, *at),
        Command::CloseIncident {
            incident_id,
            by,
            at,
        } => close_incident(tx, *incident_id, by, *at),
        Command::CommentIncident {
            incident_id,
            by,
            text,
            at,
        } => {
            let Some(mut incident) =
                tx.get::<Incident>(Cf::State, &keys::incident(*incident_id))?
            else {
                return Ok(CommandResponse::refused(format!(
                    "no incident {incident_id}"
                )));
            };
            incident.comments.push(Comment {
                at: *at,
                author: by.clone(),
                text: text.clone(),
            });
            incident.updated_at = *at;
            put_incident(tx, &incident)?;
            Ok(CommandResponse::default())
        }
        Command::SetClusterCa { cert_pem, key_pem } => {
            let ca = ClusterCa {
                cert_pem: cert_pem.clone(),
                key_pem: key_pem.clone(),
            };
            match tx.get::<ClusterCa>(Cf::State, keys::CLUSTER_CA)? {
                Some(stored) if stored == ca => Ok(CommandResponse::default()),
                Some(_) => Ok(CommandResponse::refused(
                    "the cluster already has a different certificate authority",
                )),
                None => {
                    tx.put(Cf::State, keys::CLUSTER_CA.to_vec(), &ca);
                    Ok(CommandResponse::default())
                }
            }
        }
        Command::CreateJoinToken {
            sha256,
            expires_at,
            created_by,
            at,
        } => {
            let token = JoinToken {
                expires_at: *expires_at,
                created_by: created_by.clone(),
                created_at: *at,
                used_by: None,
            };
            tx.put(Cf::State, keys::join_token(sha256), &token);
            Ok(CommandResponse::default())
        }
        Command::UseJoinToken {
            sha256,
            node_id,
            at,
        } => {
            let key = keys::join_token(sha256);
            let Some(mut token) = tx.get::<JoinToken>(Cf::State, &key)? else {
                return Ok(CommandResponse::refused("the join token is not known"));
            };
            if let Some(used_by) = token.used_by {
                return Ok(CommandResponse::refused(format!(
                    "the join token was already used by node {used_by}"
                )));
            }
            if token.expires_at <= *at {
                return Ok(CommandResponse::refused(format!(
                    "the join token expired at {}",
                    token.expires_at
                )));
            }
            token.used_by = Some(*node_id);
            tx.put(Cf::State, key, &token);
            Ok(CommandResponse::default())
        }
        Command::Note { .. } => Ok(CommandResponse::default()),
        Command::ReportRelease {
            node_id,
            level,
            version,
        } => {
            let release = NodeRelease {
                level: *level,
                version: version.clone(),
            };
            tx.put(Cf::State, keys::release(*node_id), &release);
            Ok(CommandResponse::default())
        }
        Command::SetClusterLevel { level } => set_cluster_level(tx, *level),
        #[cfg(feature = "rehearse-next-level")]
        Command::Rehearsal { .. } => Ok(CommandResponse::default()),
        Command::StageDirectory { import, records } => {
            for record in records {
                for address in &record.addresses {
                    let key = crate::directory::record_key(import, &address.to_ascii_lowercase());
                    tx.put(Cf::State, key, record);
                }
            }
            Ok(CommandResponse::default())
        }
        Command::RecordDirectoryRun { run, make_current } => {
            if *make_current {
                tx.put(Cf::State, crate::directory::CURRENT.to_vec(), &run.id);
                // Every other generation goes: the previous import and any left unfinished.
                let own = crate::directory::record_key(&run.id, "");
                let mut after = own.clone();
                after.pop();
                after.push(1);
                tx.delete_range(Cf::State, b"dir/".to_vec(), own);
                tx.delete_range(Cf::State, after, b"dir0".to_vec());
            }
            tx.put(Cf::State, crate::directory::run_key(&run.id), run);
            Ok(CommandResponse::default())
        }
        Command::PatchDirectory {
            base,
            run,
            upserts,
            removed,
        } => {
            let current: Option<String> = tx.get(Cf::State, crate::directory::CURRENT)?;
            if current.as_deref() != Some(base.as_str()) {
                return Ok(CommandResponse::refused(format!(
                    "the directory import in force is {current:?}, not {base}"
                )));
            }
            for address in removed {
                let key = crate::directory::record_key(base, &address.to_ascii_lowercase());
                tx.delete(Cf::State, key);
            }
            for record in upserts {
                for address in &record.addresses {
                    let key = crate::directory::record_key(base, &address.to_ascii_lowercase());
                    tx.put(Cf::State, key, record);
                }
            }
            tx.put(Cf::State, crate::directory::run_key(&run.id), run);
            Ok(CommandResponse::default())
        }
        Command::PutBackupRecord { record } => {
            tx.put(Cf::State, keys::backup(&record.id), record);
            Ok(CommandResponse::default())
        }
        Command::PutPurgeSchedule { schedule } => {
            if let Err(reason) = schedule.validate() {
                return Ok(CommandResponse::refused(reason));
            }
            tx.put(Cf::State, keys::purge_schedule(&schedule.name), schedule);
            Ok(CommandResponse::default())
        }
        Command::DeletePurgeSchedule { name } => {
            let key = keys::purge_schedule(name);
            if tx
                .get::<pullback_domain::PurgeSchedule>(Cf::State, &key)?
                .is_none()
            {
                return Ok(CommandResponse::refused(format!(
                    "no purge schedule {name:?}"
                )));
            }
            tx.delete(Cf::State, key);
            Ok(CommandResponse::default())
        }
        Command::PutPurgeRun { run, create_only } => {
            let key = keys::purge_run(&run.id);
            if *create_only
                && tx
                    .get::<pullback_domain::PurgeRun>(Cf::State, &key)?
                    .is_some()
            {
                return Ok(CommandResponse::refused(format!(
                    "purge {} already ran",
                    run.id
                )));
            }
            tx.put(Cf::State, key, run);
            Ok(CommandResponse::default())
        }
        Command::MarkRecommendation {
            id,
            by,
            at,
            acknowledge,
            dismiss_until,
        } => {
            let key = keys::recommendation(id);
            let mut marks = tx
                .get::<pullback_domain::RecommendationMarks>(Cf::State, &key)?
                .unwrap_or_default();
            if *acknowledge {
                marks.acknowledged_by = Some(by.clone());
                marks.acknowledged_at = Some(*at);
            }
            if let Some(until) = dismiss_until {
                marks.dismissed_by = Some(by.clone());
                marks.dismissed_until = Some(*until);
            }
            tx.put(Cf::State, key, &marks);
            Ok(CommandResponse::default())
        }
        Command::Purge {
            closed_before,
            alerts_before,
            after_alert,
            limit,
            ..
        } => crate::purge::purge(tx, *closed_before, *alerts_before, *after_alert, *limit),
        Command::PutUser { user } => {
            if !pullback_domain::valid_user_name(&user.name) {
                return Ok(CommandResponse::refused(format!(
                    "{:?} is not a valid user name: use 1 to 64 letters, digits, '.', '_', '-' or '@'",
                    user.name
                )));
            }
            if user.disabled {
                end_sessions_of(tx, &user.name, None)?;
            }
            tx.put(Cf::State, keys::user(&user.name), user);
            Ok(CommandResponse::default())
        }
        Command::DeleteUser { name } => {
            if tx
                .get::<pullback_domain::User>(Cf::State, &keys::user(name))?
                .is_none()
            {
                return Ok(CommandResponse::refused(format!("no user {name:?}")));
            }
            end_sessions_of(tx, name, None)?;
            tx.delete(Cf::State, keys::user(name));
            Ok(CommandResponse::default())
        }
        Command::StartSession {
            token_sha256,
            session,
        } => {
            // A session an identity provider vouched for needs no local account; a local
            // account of the same name is someone else.
            let user = tx.get::<pullback_domain::User>(Cf::State, &keys::user(&session.user))?;
            if session.external.is_none() && user.is_none_or(|u| u.disabled) {
                return Ok(CommandResponse::refused(format!(
                    "user {:?} cannot sign in",
                    session.user
                )));
            }
            end_sessions_of(tx, "", Some(session.created_at))?;
            tx.put(Cf::State, keys::session(token_sha256), session);
            Ok(CommandResponse::default())
        }
        Command::EndSession { token_sha256 } => {
            tx.delete(Cf::State, keys::session(token_sha256));
            Ok(CommandResponse::default())
        }
        Command::Audited { by, at, command } => {
            let response = match &**command {
                Command::Audited { .. } | Command::Batch { .. } => {
                    CommandResponse::refused("an audited change holds one plain command")
                }
                inner => apply(tx, inner, term)?,
            };
            let id = tx.next_id("audit")?;
            let entry = pullback_domain::AuditEntry {
                id,
                at: *at,
                by: by.clone(),
                action: match &**command {
                    Command::Note { action, .. } => action.clone(),
                    other => other.name().to_owned(),
                },
                detail: command.describe(),
                outcome: match &response.refused {
                    Some(why) => format!("refused: {why}"),
                    None => "ok".to_owned(),
                },
            };
            tx.put(Cf::State, keys::audit(id), &entry);
            Ok(response)
        }
        Command::Batch { commands } => {
            let mut batch = Vec::with_capacity(commands.len());
            for command in commands {
                batch.push(match command {
                    Command::Batch { .. } => CommandResponse::refused("batches do not nest"),
                    command => apply(tx, command, term)?,
                });
            }
            Ok(CommandResponse {
                batch,
                ..CommandResponse::default()
            })
        }
    }
}

/// Ends the sessions of `user`, or, with `expired_at`, every session expired at that time.
fn end_sessions_of(
    tx: &mut Tx<'_>,
    user: &str,
    expired_at: Option<Timestamp>,
) -> Result<(), StoreError> {
    let sessions = tx
        .db
        .scan::<pullback_domain::Session>(Cf::State, b"session/")?;
    for (key, session) in sessions {
        let ends = match expired_at {
            Some(now) => session.expires_at <= now,
            // Only local sessions belong to a local account.
            None => session.user == user && session.external.is_none(),
        };
        if ends {
            tx.delete(Cf::State, key);
        }
    }
    Ok(())
}

/// Alerts and quarantine outcomes of one day (UTC), for the dashboard.
#[derive(Clone, Debug, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct DayCounts {
    pub alerts: u64,
    pub quarantined: u64,
    pub restored: u64,
    pub failed: u64,
}

fn count_day(
    tx: &mut Tx<'_>,
    at: Timestamp,
    change: impl FnOnce(&mut DayCounts),
) -> Result<(), StoreError> {
    let key = keys::day(&at.format("%Y-%m-%d").to_string());
    let mut counts = tx.get::<DayCounts>(Cf::Index, &key)?.unwrap_or_default();
    change(&mut counts);
    tx.put(Cf::Index, key, &counts);
    Ok(())
}

/// Saves an incident and keeps the by-state index in step.
fn put_incident(tx: &mut Tx<'_>, incident: &Incident) -> Result<(), StoreError> {
    let key = keys::incident(incident.id);
    if let Some(before) = tx.get::<Incident>(Cf::State, &key)?
        && before.state != incident.state
    {
        tx.delete(
            Cf::Index,
            keys::incident_state(state_name(before.state), incident.id),
        );
    }
    tx.put(
        Cf::Index,
        keys::incident_state(state_name(incident.state), incident.id),
        &(),
    );
    tx.put(Cf::State, key, incident);
    Ok(())
}

pub(crate) fn state_name(state: IncidentState) -> &'static str {
    match state {
        IncidentState::Open => "open",
        IncidentState::Closed => "closed",
    }
}

/// The release a node reported; see [`Command::ReportRelease`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct NodeRelease {
    pub level: u32,
    pub version: String,
}

/// The cluster's command level as of this point in the batch.
pub(crate) fn cluster_level(tx: &Tx<'_>) -> Result<u32, StoreError> {
    Ok(tx
        .get::<u32>(Cf::State, keys::CLUSTER_LEVEL)?
        .unwrap_or(BASE_LEVEL))
}

/// Raises the cluster's command level once every member of the group, as the applied
/// membership says, reported a release that applies it.
fn set_cluster_level(tx: &mut Tx<'_>, level: u32) -> Result<CommandResponse, StoreError> {
    let current = cluster_level(tx)?;
    if level < current {
        return Ok(CommandResponse::refused(format!(
            "the cluster runs at command level {current}, which is never lowered"
        )));
    }
    let membership = tx
        .get::<openraft::StoredMembership<u64, crate::Member>>(Cf::State, keys::MEMBERSHIP)?
        .unwrap_or_default();
    let mut behind = Vec::new();
    for (id, _) in membership.membership().nodes() {
        match tx.get::<NodeRelease>(Cf::State, &keys::release(*id))? {
            Some(release) if release.level >= level => {}
            Some(release) => behind.push(format!(
                "node {id} runs {} (level {})",
                release.version, release.level
            )),
            None => behind.push(format!("node {id} has not reported its release")),
        }
    }
    if !behind.is_empty() {
        return Ok(CommandResponse::refused(format!(
            "command level {level} needs every member to run a release of that level: {}",
            behind.join("; ")
        )));
    }
    tx.put(Cf::State, keys::CLUSTER_LEVEL.to_vec(), &level);
    Ok(CommandResponse::default())
}

/// The cluster CA as stored; see [`Command::SetClusterCa`].
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct ClusterCa {
    pub cert_pem: String,
    pub key_pem: Secret,
}

/// A join token as stored under its hash.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct JoinToken {
    pub expires_at: Timestamp,
    pub created_by: String,
    pub created_at: Timestamp,
    pub used_by: Option<u64>,
}

fn ingest(
    tx: &mut Tx<'_>,
    source: &str,
    at: Timestamp,
    drafts: &[AlertDraft],
    rejected: &[RejectedEvent],
    checkpoint: Option<&Checkpoint>,
) -> Result<CommandResponse, StoreError> {
    let conditions = tx.conditions()?;
    let mut response = CommandResponse::default();
    let mut new_rejects = 0;
    for event in rejected {
        let seen = keys::rejected_seen(source, &event.key);
        if tx.exists(Cf::Index, &seen)? {
            continue;
        }
        let id = tx.next_id("rejected")?;
        tx.put(Cf::Index, seen, &id);
        tx.put(Cf::State, keys::rejected(source, id), event);
        new_rejects += 1;
    }
    for draft in drafts {
        let dedup = keys::dedup(source, &draft.dedup_key);
        if tx.exists(Cf::Index, &dedup)? {
            response.duplicates += 1;
            continue;
        }
        let id = tx.next_id("alert")?;
        tx.put(Cf::Index, dedup, &id);
        if let Some(message_id) = &draft.message_id {
            tx.put(Cf::Index, keys::message(message_id.as_str(), id), &id);
        }

        condemn(tx, draft, id);
        let directory = crate::directory::StoredDirectory::new(tx.db)?;
        let decision = pullback_engine::evaluate_with(&conditions, source, draft, &directory);
        let mut alert = Alert {
            id,
            source: source.to_owned(),
            received_at: at,
            incident_id: None,
            matched: decision.matched.clone(),
            body: draft.clone(),
        };
        if decision.open_incident {
            let (mut incident, created) = join_or_open(tx, &alert, at)?;
            if created {
                response.incidents.push(incident.id);
            }
            alert.incident_id = Some(incident.id);
            let plan = pullback_engine::plan_quarantine_with(
                draft,
                &decision,
                |message, recipient| {
                    tx.exists(Cf::Index, &keys::planned(message.as_str(), recipient))
                        .unwrap_or(false)
                },
                &directory,
            );
            if let Some(plan) = plan {
                let job_id = create_job(tx, &incident, &alert, plan, at)?;
                incident.job_ids.push(job_id);
                response.jobs.push(job_id);
            }
            for plan in pullback_engine::plan_directory(&decision, &directory) {
                let job_id = create_directory_job(tx, &incident, &alert, plan, at)?;
                incident.job_ids.push(job_id);
                response.jobs.push(job_id);
            }
            put_incident(tx, &incident)?;
        }
        for (field, term) in crate::search::alert_terms(&alert) {
            tx.put(Cf::Index, crate::search::term_key(field, &term, id), &());
        }
        tx.put(Cf::State, keys::alert(id), &alert);
        response.alerts.push(id);
    }
    if !response.alerts.is_empty() {
        count_day(tx, at, |day| day.alerts += response.alerts.len() as u64)?;
    }
    if let Some(checkpoint) = checkpoint {
        let accepted = response.alerts.len() as u64;
        save_checkpoint(
            tx,
            source,
            checkpoint,
            accepted,
            response.duplicates,
            new_rejects,
        )?;
    }
    Ok(response)
}

/// Records an analyst's verdict on a reported message beside the analysis, and says so in
/// the incident's comments.
fn override_verdict(
    tx: &mut Tx<'_>,
    alert_id: u64,
    disposition: &str,
    reason: &str,
    by: &str,
    at: Timestamp,
) -> Result<CommandResponse, StoreError> {
    const DISPOSITIONS: [&str; 4] = ["malicious", "suspicious", "bulk", "clean"];
    if !DISPOSITIONS.contains(&disposition) {
        return Ok(CommandResponse::refused(format!(
            "disposition must be one of {}, not {disposition:?}",
            DISPOSITIONS.join(", ")
        )));
    }
    let Some(mut alert) = tx.get::<Alert>(Cf::State, &keys::alert(alert_id))? else {
        return Ok(CommandResponse::refused(format!("no alert {alert_id}")));
    };
    let Some(serde_json::Value::Object(analysis)) = alert.body.analysis.as_mut() else {
        return Ok(CommandResponse::refused(format!(
            "alert {alert_id} carries no analysis to override"
        )));
    };
    let previous = analysis
        .get("override")
        .and_then(|o| o.get("disposition"))
        .or_else(|| analysis.get("disposition"))
        .and_then(|d| d.as_str())
        .unwrap_or("unknown")
        .to_owned();
    analysis.insert(
        "override".into(),
        serde_json::json!({ "disposition": disposition, "reason": reason, "by": by, "at": at }),
    );
    // The analyst's disposition now decides what the match conditions do, as the analysis
    // did: an override to malicious starts the quarantine the analysis withheld.
    for threat in &mut alert.body.threats {
        threat.classification = Some(disposition.to_owned());
    }
    let conditions = tx.conditions()?;
    let directory = crate::directory::StoredDirectory::new(tx.db)?;
    let decision =
        pullback_engine::evaluate_with(&conditions, &alert.source, &alert.body, &directory);
    let mut response = CommandResponse::default();
    let mut incident = match alert.incident_id {
        Some(id) => tx.get::<Incident>(Cf::State, &keys::incident(id))?,
        None if decision.open_incident => {
            let (incident, created) = join_or_open(tx, &alert, at)?;
            if created {
                response.incidents.push(incident.id);
            }
            alert.incident_id = Some(incident.id);
            Some(incident)
        }
        None => None,
    };
    for name in decision.matched.iter() {
        if !alert.matched.contains(name) {
            alert.matched.push(name.clone());
        }
    }
    if let Some(incident) = incident.as_mut() {
        let plan = pullback_engine::plan_quarantine_with(
            &alert.body,
            &decision,
            |message, recipient| {
                tx.exists(Cf::Index, &keys::planned(message.as_str(), recipient))
                    .unwrap_or(false)
            },
            &directory,
        );
        if let Some(plan) = plan {
            let job_id = create_job(tx, incident, &alert, plan, at)?;
            incident.job_ids.push(job_id);
            response.jobs.push(job_id);
        }
        for plan in pullback_engine::plan_directory(&decision, &directory) {
            let job_id = create_directory_job(tx, incident, &alert, plan, at)?;
            incident.job_ids.push(job_id);
            response.jobs.push(job_id);
        }
        incident.comments.push(Comment {
            at,
            author: by.to_owned(),
            text: format!(
                "verdict of alert {alert_id} overridden from {previous} to {disposition}: {reason}"
            ),
        });
        incident.updated_at = at;
        put_incident(tx, incident)?;
    }
    tx.put(Cf::State, keys::alert(alert_id), &alert);
    Ok(response)
}

/// Remembers the URLs, hosts and file hashes a threat feed condemned (an active threat
/// classified as malicious), so that the analysis of a reported message can use them.
fn condemn(tx: &mut Tx<'_>, draft: &AlertDraft, alert_id: u64) {
    const CONDEMNED: [&str; 4] = ["phish", "malware", "impostor", "spam"];
    for threat in &draft.threats {
        let active = threat.status.as_deref().is_none_or(|s| s == "active");
        let bad = threat
            .classification
            .as_deref()
            .is_some_and(|c| CONDEMNED.contains(&c));
        if !(active && bad) || draft.kind == pullback_domain::AlertKind::AbuseReport {
            continue;
        }
        let kinds = [
            (pullback_domain::IntelKind::Url, threat.value.as_deref()),
            (
                pullback_domain::IntelKind::Domain,
                threat.hostname.as_deref(),
            ),
            (pullback_domain::IntelKind::Sha256, threat.sha256.as_deref()),
        ];
        for (kind, value) in kinds {
            if let Some(value) = value.and_then(|v| kind.normalise(v)) {
                tx.put(Cf::Index, keys::condemned(kind.as_str(), &value), &alert_id);
            }
        }
    }
}

/// Stores a source's checkpoint. Counters belong to the state machine, which alone knows how
/// many events were repeats, so they are added here rather than taken from the source.
fn save_checkpoint(
    tx: &mut Tx<'_>,
    source: &str,
    checkpoint: &Checkpoint,
    accepted: u64,
    duplicates: u64,
    rejected: u64,
) -> Result<(), StoreError> {
    let key = keys::checkpoint(source);
    let old = tx.get::<Checkpoint>(Cf::State, &key)?.unwrap_or_default();
    let new = Checkpoint {
        accepted: old.accepted + accepted,
        duplicates: old.duplicates + duplicates,
        rejected: old.rejected + rejected,
        ..checkpoint.clone()
    };
    tx.put(Cf::State, key, &new);
    Ok(())
}

/// Finds the open incident the alert links to, or opens one. Returns it with the alert
/// added, and whether it is new.
fn join_or_open(
    tx: &mut Tx<'_>,
    alert: &Alert,
    at: Timestamp,
) -> Result<(Incident, bool), StoreError> {
    let links = pullback_engine::incident_links(&alert.body);
    for link in &links {
        let Some(id) = tx.get::<u64>(Cf::Index, &keys::link(&link.index_key()))? else {
            continue;
        };
        let Some(mut incident) = tx.get::<Incident>(Cf::State, &keys::incident(id))? else {
            continue;
        };
        if incident.state != IncidentState::Open {
            continue;
        }
        add_alert(&mut incident, alert, at);
        // Index the new alert's other links too, so its siblings find this incident.
        for other in &links {
            if !incident.links.contains(other) {
                incident.links.push(other.clone());
                tx.put(Cf::Index, keys::link(&other.index_key()), &incident.id);
            }
        }
        return Ok((incident, false));
    }

    let id = tx.next_id("incident")?;
    for link in &links {
        tx.put(Cf::Index, keys::link(&link.index_key()), &id);
    }
    let mut incident = Incident {
        id,
        title: pullback_engine::incident_title(&alert.body),
        state: IncidentState::Open,
        created_at: at,
        updated_at: at,
        links,
        alert_ids: Vec::new(),
        job_ids: Vec::new(),
        sources: Vec::new(),
        classifications: Vec::new(),
        comments: Vec::new(),
    };
    add_alert(&mut incident, alert, at);
    Ok((incident, true))
}

fn add_alert(incident: &mut Incident, alert: &Alert, at: Timestamp) {
    incident.alert_ids.push(alert.id);
    incident.updated_at = at;
    if !incident.sources.contains(&alert.source) {
        incident.sources.push(alert.source.clone());
    }
    for c in alert.body.classifications() {
        if !incident.classifications.iter().any(|known| known == c) {
            incident.classifications.push(c.to_owned());
        }
    }
}

fn create_job(
    tx: &mut Tx<'_>,
    incident: &Incident,
    alert: &Alert,
    plan: pullback_engine::JobPlan,
    at: Timestamp,
) -> Result<u64, StoreError> {
    let id = tx.next_id("job")?;
    let results = plan
        .recipients
        .into_iter()
        .map(|(recipient, unworkable)| {
            let mut result = RecipientResult::pending(recipient);
            if let Some(reason) = unworkable {
                result.status = RecipientStatus::Failed;
                result.details = reason;
                result.end_time = Some(at);
            } else if plan.dry_run {
                result.status = RecipientStatus::WouldQuarantine;
                result.details = "dry run: the mailbox was not touched".into();
                result.end_time = Some(at);
            }
            result
        })
        .collect();
    let job = QuarantineJob {
        id,
        incident_id: incident.id,
        alert_id: alert.id,
        action: JobAction::Quarantine,
        message_id: plan.message_id,
        fingerprint: plan.fingerprint,
        dry_run: plan.dry_run,
        removal: plan.removal,
        created_at: at,
        requested_by: alert.matched.join(", "),
        results,
    };
    if let Some(message_id) = &job.message_id {
        for result in &job.results {
            tx.put(
                Cf::Index,
                keys::planned(message_id.as_str(), &result.recipient),
                &id,
            );
        }
    }
    save_job(tx, &job);
    Ok(id)
}

/// Records a directory change for the people a plan names; a person it cannot be done for
/// is recorded as failed at once, with why.
fn create_directory_job(
    tx: &mut Tx<'_>,
    incident: &Incident,
    alert: &Alert,
    plan: pullback_engine::DirectoryPlan,
    at: Timestamp,
) -> Result<u64, StoreError> {
    let id = tx.next_id("job")?;
    let results = plan
        .recipients
        .into_iter()
        .map(|(recipient, unworkable)| {
            let mut result = RecipientResult::pending(recipient);
            if let Some(reason) = unworkable {
                result.status = RecipientStatus::Failed;
                result.details = reason;
                result.end_time = Some(at);
            }
            result
        })
        .collect();
    let job = QuarantineJob {
        id,
        incident_id: incident.id,
        alert_id: alert.id,
        action: JobAction::Directory {
            change: plan.action,
        },
        message_id: None,
        fingerprint: Default::default(),
        dry_run: false,
        removal: Default::default(),
        created_at: at,
        requested_by: plan.condition,
        results,
    };
    save_job(tx, &job);
    Ok(id)
}

/// Stores a job and keeps the work queue in step with it.
fn save_job(tx: &mut Tx<'_>, job: &QuarantineJob) {
    tx.put(Cf::State, keys::job(job.id), job);
    if job.is_done() {
        tx.delete(Cf::Index, keys::queued(job.id));
    } else {
        tx.put(Cf::Index, keys::queued(job.id), &job.id);
    }
}

fn claim(
    tx: &mut Tx<'_>,
    job_id: u64,
    recipients: &[String],
    claimed_term: u64,
    entry_term: u64,
    at: Timestamp,
) -> Result<CommandResponse, StoreError> {
    if claimed_term != entry_term {
        return Ok(stale(claimed_term, entry_term));
    }
    let Some(mut job) = tx.get::<QuarantineJob>(Cf::State, &keys::job(job_id))? else {
        return Ok(CommandResponse::refused(format!("no job {job_id}")));
    };
    for recipient in recipients {
        let Some(result) = job.result_mut(recipient) else {
            continue;
        };
        // A recipient in progress under an older term was abandoned by a deposed or crashed
        // leader; it is claimed again and redone, which the backends make idempotent.
        let claimable = result.status == RecipientStatus::Pending
            || (result.status == RecipientStatus::InProgress && result.term < claimed_term);
        if claimable {
            result.status = RecipientStatus::InProgress;
            result.term = claimed_term;
            result.attempts += 1;
            result.start_time.get_or_insert(at);
        }
    }
    save_job(tx, &job);
    Ok(CommandResponse::default())
}

/// Records what a worker did for some recipients of a job, each outcome with the values a
/// directory change replaced, if any. Mailbox outcomes (`mailbox`) count in the daily
/// quarantine figures; directory changes do not.
fn record<'a>(
    tx: &mut Tx<'_>,
    job_id: u64,
    outcomes: impl Iterator<Item = (&'a RecipientOutcome, Option<&'a Vec<String>>)>,
    mailbox: bool,
    started_term: u64,
    entry_term: u64,
    at: Timestamp,
) -> Result<CommandResponse, StoreError> {
    if started_term != entry_term {
        return Ok(stale(started_term, entry_term));
    }
    let Some(mut job) = tx.get::<QuarantineJob>(Cf::State, &keys::job(job_id))? else {
        return Ok(CommandResponse::refused(format!("no job {job_id}")));
    };
    let mut undone = Vec::new();
    for (outcome, previous) in outcomes {
        let Some(result) = job.result_mut(&outcome.recipient) else {
            continue;
        };
        if result.status != RecipientStatus::InProgress || result.term != started_term {
            continue;
        }
        result.status = outcome.status;
        result.details = outcome.details.clone();
        result.end_time = Some(at);
        if outcome.is_read.is_some() {
            result.is_read = outcome.is_read;
        }
        if previous.is_some() {
            result.previous = previous.cloned();
        }
        match outcome.status {
            _ if !mailbox => {}
            RecipientStatus::Quarantined => count_day(tx, at, |day| day.quarantined += 1)?,
            RecipientStatus::Restored => count_day(tx, at, |day| day.restored += 1)?,
            RecipientStatus::Failed => count_day(tx, at, |day| day.failed += 1)?,
            _ => {}
        }
        let put_back = matches!(
            outcome.status,
            RecipientStatus::Restored
                | RecipientStatus::Reverted
                | RecipientStatus::AlreadyInDestination
        );
        if put_back {
            undone.push(outcome.recipient.clone());
        }
    }
    if let JobAction::Restore { original } = job.action
        && !undone.is_empty()
        && let Some(mut original_job) = tx.get::<QuarantineJob>(Cf::State, &keys::job(original))?
    {
        for recipient in &undone {
            if let Some(result) = original_job.result_mut(recipient) {
                result.was_undone = true;
            }
        }
        save_job(tx, &original_job);
    }
    save_job(tx, &job);
    Ok(CommandResponse::default())
}

fn stale(reported: u64, current: u64) -> CommandResponse {
    CommandResponse::refused(format!(
        "work started under term {reported} is fenced off by the leader of term {current}"
    ))
}

fn request_restore(
    tx: &mut Tx<'_>,
    job_id: u64,
    only: Option<&[String]>,
    requested_by: &str,
    at: Timestamp,
) -> Result<CommandResponse, StoreError> {
    let Some(original) = tx.get::<QuarantineJob>(Cf::State, &keys::job(job_id))? else {
        return Ok(CommandResponse::refused(format!("no job {job_id}")));
    };
    if original.removal == Removal::HardDelete {
        return Ok(CommandResponse::refused(format!(
            "job {job_id} deleted its messages for good (a hard delete); that cannot be undone"
        )));
    }
    let undoable = match &original.action {
        JobAction::Quarantine if !original.dry_run => [
            RecipientStatus::Quarantined,
            RecipientStatus::AlreadyInDestination,
        ]
        .as_slice(),
        // An entry that was already as the job would leave it was not changed, so an undo
        // leaves it alone too.
        JobAction::Directory { .. } => [RecipientStatus::Applied].as_slice(),
        _ => {
            return Ok(CommandResponse::refused(format!(
                "job {job_id} is neither a quarantine nor a directory change"
            )));
        }
    };
    let restorable = |r: &&RecipientResult| {
        undoable.contains(&r.status)
            && !r.was_undone
            && only.is_none_or(|only| only.iter().any(|o| o.eq_ignore_ascii_case(&r.recipient)))
    };
    let recipients: Vec<RecipientResult> = original
        .results
        .iter()
        .filter(restorable)
        .map(|r| RecipientResult::pending(r.recipient.clone()))
        .collect();
    if recipients.is_empty() {
        return Ok(CommandResponse::refused(format!(
            "job {job_id} has nothing left to undo"
        )));
    }
    let id = tx.next_id("job")?;
    let job = QuarantineJob {
        id,
        incident_id: original.incident_id,
        alert_id: original.alert_id,
        action: JobAction::Restore { original: job_id },
        message_id: original.message_id.clone(),
        fingerprint: original.fingerprint.clone(),
        dry_run: false,
        removal: original.removal,
        created_at: at,
        requested_by: requested_by.to_owned(),
        results: recipients,
    };
    save_job(tx, &job);
    if let Some(mut incident) = tx.get::<Incident>(Cf::State, &keys::incident(job.incident_id))? {
        incident.job_ids.push(id);
        incident.updated_at = at;
        put_incident(tx, &incident)?;
    }
    Ok(CommandResponse {
        jobs: vec![id],
        ..CommandResponse::default()
    })
}

fn close_incident(
    tx: &mut Tx<'_>,
    incident_id: u64,
    by: &str,
    at: Timestamp,
) -> Result<CommandResponse, StoreError> {
    let Some(mut incident) = tx.get::<Incident>(Cf::State, &keys::incident(incident_id))? else {
        return Ok(CommandResponse::refused(format!(
            "no incident {incident_id}"
        )));
    };
    if incident.state == IncidentState::Closed {
        return Ok(CommandResponse::default());
    }
    incident.state = IncidentState::Closed;
    incident.updated_at = at;
    incident.comments.push(Comment {
        at,
        author: by.to_owned(),
        text: "closed".into(),
    });
    // New alerts about the same threat open a new incident from now on.
    for link in &incident.links {
        let key = keys::link(&link.index_key());
        if tx.get::<u64>(Cf::Index, &key)? == Some(incident_id) {
            tx.delete(Cf::Index, key);
        }
    }
    put_incident(tx, &incident)?;
    Ok(CommandResponse::default())
}

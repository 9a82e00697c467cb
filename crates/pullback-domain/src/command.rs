//! Commands: the only way the replicated state changes. Each is one Raft log entry.

use crate::{
    AlertDraft, Checkpoint, MatchCondition, RecipientOutcome, RejectedEvent, SourceDefinition,
    Timestamp,
};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The command level of a cluster that never raised it, and of every command the first
/// release with levels knew.
pub const BASE_LEVEL: u32 = 1;

/// The newest command level this build reads and applies.
///
/// Nodes of two adjacent releases share one log during a rolling upgrade, and an old node
/// cannot read a command its release does not know: it would stop replicating. So a change
/// to what a command carries or to how it applies gets the next level, and [`Command::level`]
/// returns it for the entries that use the change. The leader proposes such an entry only
/// once the cluster's level (see [`Command::SetClusterLevel`]) reached it, which happens when
/// every member runs a release of that level and an administrator finalized the upgrade.
#[cfg(not(feature = "rehearse-next-level"))]
pub const COMMAND_LEVEL: u32 = BASE_LEVEL;
#[cfg(feature = "rehearse-next-level")]
pub const COMMAND_LEVEL: u32 = BASE_LEVEL + 1;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Command {
    /// Alerts from one source and, in the same entry, the checkpoint that covers them, so a
    /// new leader neither refetches what was committed nor skips what was not.
    IngestAlerts {
        source: String,
        at: Timestamp,
        drafts: Vec<AlertDraft>,
        /// Events the source could not read; each is kept once and counted in the checkpoint.
        rejected: Vec<RejectedEvent>,
        checkpoint: Option<Checkpoint>,
    },
    /// A source's position or health without new alerts (a failed call, an empty window).
    SaveCheckpoint {
        source: String,
        checkpoint: Checkpoint,
    },
    PutMatchCondition {
        condition: MatchCondition,
    },
    /// Creates or replaces a source defined in the replicated state.
    PutSource {
        source: SourceDefinition,
    },
    /// Removes a source's definition; its alerts, checkpoint and rejected events stay.
    DeleteSource {
        name: String,
    },
    /// Adds or replaces known-bad URLs, domains and hashes.
    PutIntel {
        entries: Vec<crate::IntelEntry>,
    },
    DeleteIntel {
        kind: crate::IntelKind,
        value: String,
    },
    /// An analyst's verdict on a reported message, recorded beside the analysis (which is
    /// kept) and in the incident's comments.
    OverrideVerdict {
        alert_id: u64,
        disposition: String,
        reason: String,
        by: String,
        at: Timestamp,
    },
    DeleteMatchCondition {
        name: String,
    },
    /// A worker takes recipients of a job under its leader's term.
    ClaimRecipients {
        job_id: u64,
        recipients: Vec<String>,
        term: u64,
        at: Timestamp,
    },
    /// A worker reports what it did. Refused unless `term` is the term of the entry.
    RecordOutcomes {
        job_id: u64,
        outcomes: Vec<RecipientOutcome>,
        term: u64,
        at: Timestamp,
    },
    /// A worker reports what a directory job did; as `RecordOutcomes`, with the values each
    /// change replaced.
    RecordDirectoryOutcomes {
        job_id: u64,
        outcomes: Vec<crate::DirectoryOutcome>,
        term: u64,
        at: Timestamp,
    },
    /// Put back what a quarantine job moved, or undo what a directory job changed, for all
    /// or some of its recipients.
    RequestRestore {
        job_id: u64,
        recipients: Option<Vec<String>>,
        requested_by: String,
        at: Timestamp,
    },
    CloseIncident {
        incident_id: u64,
        by: String,
        at: Timestamp,
    },
    CommentIncident {
        incident_id: u64,
        by: String,
        text: String,
        at: Timestamp,
    },
    /// The cluster certificate authority, stored once by the node that created the cluster so
    /// that whichever node leads later can admit new members.
    SetClusterCa {
        cert_pem: String,
        key_pem: Secret,
    },
    /// A one-time join token, known only by its SHA-256.
    CreateJoinToken {
        sha256: String,
        expires_at: Timestamp,
        created_by: String,
        at: Timestamp,
    },
    /// Spends a join token for node `node_id`; refused when the token is unknown, spent or
    /// expired at `at`.
    UseJoinToken {
        sha256: String,
        node_id: u64,
        at: Timestamp,
    },
    /// Removes old data, at most `limit` alerts per entry so that every entry stays small:
    /// incidents closed before `closed_before` with their alerts and jobs, and alerts received
    /// before `alerts_before` that belong to no incident. Alerts of open incidents, and of
    /// closed ones not old enough, stay. The walk over alerts resumes after `after_alert`;
    /// the answer's `removed.next` says where the next entry starts, `None` when done.
    Purge {
        closed_before: Timestamp,
        alerts_before: Timestamp,
        after_alert: u64,
        limit: u64,
        /// The verified backup taken for this purge, if it was asked for.
        backup_id: Option<String>,
    },
    /// Creates or updates the record of a backup run.
    PutBackupRecord {
        record: crate::BackupRecord,
    },
    PutPurgeSchedule {
        schedule: crate::PurgeSchedule,
    },
    DeletePurgeSchedule {
        name: String,
    },
    /// Creates or updates the record of a purge run. `create_only` refuses when a run of that
    /// id exists, so that two leaders never both start a scheduled run.
    PutPurgeRun {
        run: crate::PurgeRun,
        create_only: bool,
    },
    /// Someone saw a recommendation (`acknowledge`), or put it aside until a time.
    MarkRecommendation {
        id: String,
        by: String,
        at: Timestamp,
        acknowledge: bool,
        dismiss_until: Option<Timestamp>,
    },
    /// Adds records to the directory import `import`, which is not in force yet.
    StageDirectory {
        import: String,
        records: Vec<crate::DirectoryRecord>,
    },
    /// Records a directory import's outcome; `make_current` puts the import in force and
    /// drops every other.
    RecordDirectoryRun {
        run: crate::DirectoryRun,
        make_current: bool,
    },
    /// Applies an incremental directory import to the import in force, in one entry: the
    /// records given replace those of their addresses, and the addresses in `removed` go.
    /// Refused unless `base` is the import in force, so a patch never lands on another one.
    PatchDirectory {
        base: String,
        run: crate::DirectoryRun,
        upserts: Vec<crate::DirectoryRecord>,
        removed: Vec<String>,
    },
    /// Records a change made outside the state machine (a membership change, a join token
    /// handed out, an uploaded export) so that it reaches the audit log as `action`. Changes
    /// nothing else.
    Note {
        action: String,
        detail: String,
    },
    /// Creates or replaces a local account.
    PutUser {
        user: crate::User,
    },
    /// Removes an account; its sessions end with it.
    DeleteUser {
        name: String,
    },
    /// A browser signed in; `token_sha256` is the hex SHA-256 of its cookie. Expired sessions
    /// are removed at the same time.
    StartSession {
        token_sha256: String,
        session: crate::Session,
    },
    EndSession {
        token_sha256: String,
    },
    /// A change made by a person or an API key: applied like `command`, and written to the
    /// audit log with who, when and how it ended.
    Audited {
        by: String,
        at: Timestamp,
        command: Box<Command>,
    },
    /// A node says which release it runs and the newest command level it applies. Each node
    /// sends this itself when it starts, so the cluster knows when every member can apply a
    /// newer command.
    ReportRelease {
        node_id: u64,
        level: u32,
        version: String,
    },
    /// Raises the cluster's command level to `level`: commands of that level may be proposed
    /// from then on. Refused unless every member reported a release that applies it, and
    /// never lowers the level.
    SetClusterLevel {
        level: u32,
    },
    /// A command that only a build with the `rehearse-next-level` feature knows, at a level
    /// above this release's: it stands for the first command a future release adds, so that
    /// tests can run two adjacent releases in one cluster.
    #[cfg(feature = "rehearse-next-level")]
    Rehearsal {
        text: String,
    },
    /// Several commands in one log entry, applied in order; each gets its own response in
    /// [`CommandResponse::batch`] and a refusal of one does not undo the others. Concurrent
    /// proposals are grouped this way so that one disk sync commits many of them.
    Batch {
        commands: Vec<Command>,
    },
}

/// A secret carried in a command. It is replicated and stored like any other value, but its
/// `Debug` never shows it, so logging a command cannot leak it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Command {
    /// A short name for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Command::IngestAlerts { .. } => "ingest_alerts",
            Command::SaveCheckpoint { .. } => "save_checkpoint",
            Command::PutMatchCondition { .. } => "put_match_condition",
            Command::DeleteMatchCondition { .. } => "delete_match_condition",
            Command::PutSource { .. } => "put_source",
            Command::DeleteSource { .. } => "delete_source",
            Command::PutIntel { .. } => "put_intel",
            Command::DeleteIntel { .. } => "delete_intel",
            Command::OverrideVerdict { .. } => "override_verdict",
            Command::ClaimRecipients { .. } => "claim_recipients",
            Command::RecordOutcomes { .. } => "record_outcomes",
            Command::RecordDirectoryOutcomes { .. } => "directory_change",
            Command::RequestRestore { .. } => "request_restore",
            Command::CloseIncident { .. } => "close_incident",
            Command::CommentIncident { .. } => "comment_incident",
            Command::SetClusterCa { .. } => "set_cluster_ca",
            Command::CreateJoinToken { .. } => "create_join_token",
            Command::UseJoinToken { .. } => "use_join_token",
            Command::Note { .. } => "note",
            Command::Purge { .. } => "purge",
            Command::StageDirectory { .. } => "stage_directory",
            Command::RecordDirectoryRun { .. } => "directory_import",
            Command::PatchDirectory { .. } => "directory_import",
            Command::PutBackupRecord { .. } => "backup",
            Command::PutPurgeSchedule { .. } => "put_purge_schedule",
            Command::DeletePurgeSchedule { .. } => "delete_purge_schedule",
            Command::PutPurgeRun { .. } => "purge_run",
            Command::MarkRecommendation {
                acknowledge: true, ..
            } => "acknowledge_recommendation",
            Command::MarkRecommendation { .. } => "dismiss_recommendation",
            Command::PutUser { .. } => "put_user",
            Command::DeleteUser { .. } => "delete_user",
            Command::StartSession { .. } => "sign_in",
            Command::EndSession { .. } => "sign_out",
            Command::ReportRelease { .. } => "report_release",
            Command::SetClusterLevel { .. } => "set_cluster_level",
            #[cfg(feature = "rehearse-next-level")]
            Command::Rehearsal { .. } => "rehearsal",
            Command::Audited { command, .. } => command.name(),
            Command::Batch { .. } => "batch",
        }
    }

    /// The lowest command level a node must apply to read and apply this entry as its
    /// proposer meant it. See [`COMMAND_LEVEL`].
    pub fn level(&self) -> u32 {
        match self {
            #[cfg(feature = "rehearse-next-level")]
            Command::Rehearsal { .. } => BASE_LEVEL + 1,
            Command::Audited { command, .. } => command.level(),
            Command::Batch { commands } => commands
                .iter()
                .map(Command::level)
                .max()
                .unwrap_or(BASE_LEVEL),
            _ => BASE_LEVEL,
        }
    }

    /// Why this command cannot go into the log of a cluster running at the command level
    /// `cluster` returns, if it cannot. `cluster` is asked only for a command above the base
    /// level, so the usual command reads nothing.
    pub fn refusal_by_level<E>(
        &self,
        cluster: impl FnOnce() -> Result<u32, E>,
    ) -> Result<Option<String>, E> {
        let level = self.level();
        if level <= BASE_LEVEL {
            return Ok(None);
        }
        let cluster = cluster()?;
        Ok((level > cluster).then(|| {
            format!(
                "{} needs command level {level}, and the cluster runs at level {cluster}: \
                 upgrade every node to a release of level {level} or later, then finalize the \
                 upgrade (`pullback cluster finalize`)",
                self.name()
            )
        }))
    }

    /// What the command applies to, for the audit log. Never holds a secret: credentials,
    /// keys, password hashes and session tokens are left out.
    pub fn describe(&self) -> String {
        let list = |items: &[String]| {
            let shown: Vec<&str> = items.iter().take(5).map(String::as_str).collect();
            match items.len() {
                0..=5 => shown.join(", "),
                n => format!("{} and {} more", shown.join(", "), n - 5),
            }
        };
        match self {
            Command::IngestAlerts {
                source,
                drafts,
                rejected,
                ..
            } => format!(
                "source {source}: {} alerts, {} rejected events",
                drafts.len(),
                rejected.len()
            ),
            Command::SaveCheckpoint { source, .. } => format!("source {source}"),
            Command::PutMatchCondition { condition } => {
                format!("match condition {}", condition.name)
            }
            Command::DeleteMatchCondition { name } => format!("match condition {name}"),
            Command::PutSource { source } => format!("source {}", source.name),
            Command::DeleteSource { name } => format!("source {name}"),
            Command::PutIntel { entries } => {
                let values: Vec<String> = entries.iter().map(|e| e.value.clone()).collect();
                format!("{} entries: {}", entries.len(), list(&values))
            }
            Command::DeleteIntel { kind, value } => format!("{kind:?} {value}"),
            Command::OverrideVerdict {
                alert_id,
                disposition,
                reason,
                ..
            } => format!("alert {alert_id}: {disposition} ({reason})"),
            Command::RecordDirectoryOutcomes {
                job_id, outcomes, ..
            } => {
                let each: Vec<String> = outcomes
                    .iter()
                    .map(|o| {
                        let status = o.outcome.status.as_str();
                        format!("{} {status} ({})", o.outcome.recipient, o.outcome.details)
                    })
                    .collect();
                format!("job {job_id}: {}", list(&each))
            }
            Command::ClaimRecipients { job_id, .. } | Command::RecordOutcomes { job_id, .. } => {
                format!("job {job_id}")
            }
            Command::RequestRestore {
                job_id, recipients, ..
            } => match recipients {
                Some(recipients) => format!("job {job_id}, recipients {}", list(recipients)),
                None => format!("job {job_id}, every recipient"),
            },
            Command::CloseIncident { incident_id, .. } => format!("incident {incident_id}"),
            Command::CommentIncident { incident_id, .. } => format!("incident {incident_id}"),
            Command::SetClusterCa { .. } => "cluster certificate authority".to_owned(),
            Command::CreateJoinToken { expires_at, .. } => {
                format!("join token valid until {}", expires_at.to_rfc3339())
            }
            Command::UseJoinToken { node_id, .. } => format!("node {node_id}"),
            Command::Note { detail, .. } => detail.clone(),
            Command::StageDirectory { import, records } => {
                format!("import {import}: {} records", records.len())
            }
            Command::RecordDirectoryRun { run, make_current } => format!(
                "import {}: {}, {} people, {} groups{}",
                run.id,
                run.state,
                run.people,
                run.groups,
                if *make_current { ", now in force" } else { "" }
            ),
            Command::PatchDirectory {
                base,
                run,
                upserts,
                removed,
            } => format!(
                "incremental import {} onto {base}: {} records changed, {} removed",
                run.id,
                upserts.len(),
                removed.len()
            ),
            Command::PutBackupRecord { record } => format!(
                "backup {} to {}: {}",
                record.id, record.target, record.stage
            ),
            Command::PutPurgeSchedule { schedule } => format!(
                "purge schedule {} ({}, closed over {} days, alerts over {} days, backup first: {})",
                schedule.name,
                schedule.cron,
                schedule.closed_days,
                schedule.alert_days,
                schedule.backup_first
            ),
            Command::DeletePurgeSchedule { name } => format!("purge schedule {name}"),
            Command::PutPurgeRun { run, .. } => format!("purge {}", run.id),
            Command::MarkRecommendation {
                id, dismiss_until, ..
            } => match dismiss_until {
                Some(until) => format!("{id} until {}", until.format("%Y-%m-%d %H:%M")),
                None => id.clone(),
            },
            Command::Purge {
                closed_before,
                alerts_before,
                backup_id,
                ..
            } => format!(
                "incidents closed before {}, alerts without one before {}, backup {}",
                closed_before.format("%Y-%m-%d %H:%M"),
                alerts_before.format("%Y-%m-%d %H:%M"),
                backup_id.as_deref().unwrap_or("none")
            ),
            Command::PutUser { user } => format!(
                "user {} as {}{}",
                user.name,
                user.role.as_str(),
                if user.disabled { ", disabled" } else { "" }
            ),
            Command::DeleteUser { name } => format!("user {name}"),
            Command::StartSession { session, .. } => match &session.external {
                Some(external) => format!("user {} ({})", session.user, external.provider),
                None => format!("user {}", session.user),
            },
            Command::EndSession { .. } => "session".to_owned(),
            Command::ReportRelease {
                node_id,
                level,
                version,
            } => format!("node {node_id} runs {version} (command level {level})"),
            Command::SetClusterLevel { level } => format!("command level {level}"),
            #[cfg(feature = "rehearse-next-level")]
            Command::Rehearsal { text } => text.clone(),
            Command::Audited { command, .. } => command.describe(),
            Command::Batch { commands } => format!("{} commands", commands.len()),
        }
    }
}

/// What applying a command produced.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CommandResponse {
    /// Ids of alerts, incidents or jobs created.
    #[serde(default)]
    pub alerts: Vec<u64>,
    #[serde(default)]
    pub incidents: Vec<u64>,
    #[serde(default)]
    pub jobs: Vec<u64>,
    #[serde(default)]
    pub duplicates: u64,
    /// Why the command changed nothing, when it was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
    /// What a [`Command::Purge`] removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub removed: Option<Removed>,
    /// The response to each command of a [`Command::Batch`], in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub batch: Vec<CommandResponse>,
}

/// Counts of what one purge entry removed, and where the next one starts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Removed {
    pub alerts: u64,
    pub incidents: u64,
    pub jobs: u64,
    /// The alert id after which the next entry continues; `None` when nothing is left.
    pub next: Option<u64>,
}

impl CommandResponse {
    pub fn refused(reason: impl Into<String>) -> CommandResponse {
        CommandResponse {
            refused: Some(reason.into()),
            ..CommandResponse::default()
        }
    }
}

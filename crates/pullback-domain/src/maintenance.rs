//! Keeping the appliance healthy: backups, scheduled purges and the recommendations it makes
//! about them.

use crate::{Removed, Timestamp};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackupState {
    /// Being written or read back.
    Running,
    /// Written and read back: hashes checked, manifest parsed, the checkpoint opened
    /// read-only. Only a verified backup counts.
    Verified,
    Failed,
}

/// One backup run, as every node sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BackupRecord {
    pub id: String,
    /// The configured target's name.
    pub target: String,
    pub node_id: u64,
    pub requested_by: String,
    pub started_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Timestamp>,
    pub state: BackupState,
    /// `checkpoint`, `writing`, `verifying`, `pruning` or `done`.
    pub stage: String,
    pub done_bytes: u64,
    pub total_bytes: u64,
    #[serde(default)]
    pub applied_index: u64,
    #[serde(default)]
    pub counts: BTreeMap<String, u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl BackupRecord {
    /// Progress from 0 to 100.
    pub fn percent(&self) -> u8 {
        if self.state != BackupState::Running {
            return 100;
        }
        match self.total_bytes {
            0 => 0,
            total => (self.done_bytes.min(total) * 100 / total) as u8,
        }
    }
}

/// A purge an administrator scheduled.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PurgeSchedule {
    pub name: String,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// When, as five cron fields in UTC: minute, hour, day of month, month, day of week.
    pub cron: String,
    /// Incidents closed for more than this many days go, with their alerts and jobs.
    pub closed_days: u32,
    /// Alerts of no incident older than this many days go.
    pub alert_days: u32,
    /// Take a verified backup first, and purge only if it succeeded. On unless turned off.
    #[serde(default = "yes")]
    pub backup_first: bool,
    /// The backup target, by name; required when `backup_first` is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

fn yes() -> bool {
    true
}

impl PurgeSchedule {
    pub fn validate(&self) -> Result<(), String> {
        if !crate::valid_source_name(&self.name) {
            return Err(format!(
                "name: {:?} is not a valid name (lower-case letters, digits, '-' and '_')",
                self.name
            ));
        }
        crate::cron::Cron::parse(&self.cron).map_err(|e| format!("cron: {e}"))?;
        if self.backup_first && self.target.is_none() {
            return Err("target: a purge that backs up first needs a backup target".into());
        }
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PurgeState {
    /// Backing up first, or removing.
    Running,
    Done,
    /// Did not remove anything, or stopped part way; `error` says why.
    Failed,
}

/// One purge, scheduled or asked for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PurgeRun {
    /// `<schedule>-<due time>` for a scheduled run, so that a new leader does not run it
    /// again; `manual-<time>` otherwise.
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    pub requested_by: String,
    pub started_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Timestamp>,
    pub closed_before: Timestamp,
    pub alerts_before: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_id: Option<String>,
    pub state: PurgeState,
    #[serde(default)]
    pub removed: Removed,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What people did about a recommendation.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RecommendationMarks {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledged_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledged_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dismissed_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dismissed_until: Option<Timestamp>,
}

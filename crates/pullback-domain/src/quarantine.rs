//! Quarantine jobs: the plan to pull one message from its recipients' mailboxes, or to put it
//! back, with a result per recipient.

use crate::{MessageId, Timestamp};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum JobAction {
    Quarantine,
    /// Put back what job `original` quarantined, or undo the directory change it made.
    Restore {
        original: u64,
    },
    /// Change each recipient's directory entry; the job's recipients are people, and no
    /// mailbox is touched.
    Directory {
        change: crate::DirectoryAction,
    },
}

/// Where one recipient's message stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecipientStatus {
    Pending,
    InProgress,
    Quarantined,
    /// The message was already where the job would move it (or the directory entry already
    /// as the job would leave it): an earlier run, or someone else, did the work.
    AlreadyInDestination,
    NotFound,
    Failed,
    Restored,
    /// A dry run: the message was not touched.
    WouldQuarantine,
    /// A directory job changed the recipient's entry.
    Applied,
    /// An undo put the recipient's directory entry back as it was.
    Reverted,
}

impl RecipientStatus {
    /// True once no worker will touch this recipient again for this job.
    pub fn is_final(self) -> bool {
        !matches!(self, RecipientStatus::Pending | RecipientStatus::InProgress)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RecipientStatus::Pending => "pending",
            RecipientStatus::InProgress => "in_progress",
            RecipientStatus::Quarantined => "quarantined",
            RecipientStatus::AlreadyInDestination => "already_in_destination",
            RecipientStatus::NotFound => "not_found",
            RecipientStatus::Failed => "failed",
            RecipientStatus::Restored => "restored",
            RecipientStatus::WouldQuarantine => "would_quarantine",
            RecipientStatus::Applied => "applied",
            RecipientStatus::Reverted => "reverted",
        }
    }
}

/// The record for one recipient of one job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecipientResult {
    pub recipient: String,
    pub status: RecipientStatus,
    /// Why it ended as it did, in words; the failure reason for `failed`.
    #[serde(default)]
    pub details: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<Timestamp>,
    #[serde(default)]
    pub attempts: u32,
    /// The Raft term of the leader whose worker claimed it last.
    #[serde(default)]
    pub term: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_read: Option<bool>,
    /// Set on a quarantine result once a restore job put the message back.
    #[serde(default)]
    pub was_undone: bool,
    /// For a directory job that set an attribute: the values it replaced, which an undo
    /// puts back (`[]` when the attribute was absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<Vec<String>>,
}

impl RecipientResult {
    pub fn pending(recipient: String) -> RecipientResult {
        RecipientResult {
            recipient,
            status: RecipientStatus::Pending,
            details: String::new(),
            start_time: None,
            end_time: None,
            attempts: 0,
            term: 0,
            is_read: None,
            was_undone: false,
            previous: None,
        }
    }
}

/// What a worker reports for one recipient.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecipientOutcome {
    pub recipient: String,
    pub status: RecipientStatus,
    pub details: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_read: Option<bool>,
}

/// What a worker reports for one recipient of a directory job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DirectoryOutcome {
    #[serde(flatten)]
    pub outcome: RecipientOutcome,
    /// See [`RecipientResult::previous`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<Vec<String>>,
}

/// What, besides the Message-ID, identifies the message, so that two different messages that
/// share an id are told apart before anything is moved.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MessageFingerprint {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender: Option<String>,
    /// Also act on copies with another Message-ID that have the same sender and subject and
    /// arrived in this window (a reported phish is often sent again under new ids). Only
    /// used when both `subject` and `sender` are set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub similar_within: Option<TimeWindow>,
}

/// From `since` to `until`, both included.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeWindow {
    pub since: Timestamp,
    pub until: Timestamp,
}

/// How a quarantine job takes a message out of the mailboxes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Removal {
    /// Moved to the quarantine folder; a restore moves it back.
    #[default]
    Quarantine,
    /// Deleted where an administrator can recover it; a restore brings it back.
    SoftDelete,
    /// Deleted for good; nothing can bring it back.
    HardDelete,
}

impl Removal {
    pub fn is_quarantine(&self) -> bool {
        *self == Removal::Quarantine
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Removal::Quarantine => "quarantine",
            Removal::SoftDelete => "soft_delete",
            Removal::HardDelete => "hard_delete",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QuarantineJob {
    pub id: u64,
    pub incident_id: u64,
    pub alert_id: u64,
    pub action: JobAction,
    pub message_id: Option<MessageId>,
    #[serde(default)]
    pub fingerprint: MessageFingerprint,
    pub dry_run: bool,
    /// How the message leaves the mailboxes; a restore job carries its original's.
    #[serde(default, skip_serializing_if = "Removal::is_quarantine")]
    pub removal: Removal,
    pub created_at: Timestamp,
    /// Who asked for it: a match condition's name or a user.
    pub requested_by: String,
    pub results: Vec<RecipientResult>,
}

impl QuarantineJob {
    pub fn is_done(&self) -> bool {
        self.results.iter().all(|r| r.status.is_final())
    }

    pub fn result_mut(&mut self, recipient: &str) -> Option<&mut RecipientResult> {
        self.results.iter_mut().find(|r| r.recipient == recipient)
    }
}

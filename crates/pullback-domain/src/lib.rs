//! Pullback's vocabulary: the records the appliance keeps and the commands that change them.
//!
//! Everything here is plain data. The engine decides with it, the store persists it, the API
//! converts it to wire shapes; nothing in this crate performs IO.

pub mod access;
pub mod alert;
pub mod command;
pub mod cron;
pub mod directory;
pub mod incident;
pub mod maintenance;
pub mod match_condition;
pub mod message_id;
pub mod quarantine;
pub mod source;
pub mod versioned;

pub use access::{AuditEntry, ExternalSignIn, Role, Session, User, valid_user_name};
pub use alert::{Alert, AlertDraft, AlertKind, Threat, ThreatKind, hostname_of, normalise_address};
pub use command::{BASE_LEVEL, COMMAND_LEVEL, Command, CommandResponse, Removed, Secret};
pub use directory::{
    DirectoryAction, DirectoryKind, DirectoryLookup, DirectoryRecord, DirectoryRun, NoDirectory,
};
pub use incident::{Comment, Incident, IncidentLink, IncidentState};
pub use maintenance::{
    BackupRecord, BackupState, PurgeRun, PurgeSchedule, PurgeState, RecommendationMarks,
};
pub use match_condition::{AttributeTest, MatchCondition, Response};
pub use message_id::MessageId;
pub use quarantine::{
    DirectoryOutcome, JobAction, MessageFingerprint, QuarantineJob, RecipientOutcome,
    RecipientResult, RecipientStatus, Removal, TimeWindow,
};
pub use source::{
    AbuseSpec, Checkpoint, IntelEntry, IntelKind, RejectedEvent, ReplySpec, ScriptSecret,
    ScriptSpec, SecretDelivery, SourceDefinition, SourceKind, valid_source_name,
};

/// Times are UTC everywhere; conversion to local time is the UI's business.
pub type Timestamp = chrono::DateTime<chrono::Utc>;

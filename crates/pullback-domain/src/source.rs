//! The replicated state of an alert source: where it stands, so a new leader resumes there.

use crate::Timestamp;
use serde::{Deserialize, Serialize};

/// An event a source delivered but Pullback could not read: kept, with why, so nothing that
/// arrived is silently lost and an operator can see what the feed sent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RejectedEvent {
    /// A hash of the whole event; the same bad event fetched again is stored once.
    pub key: String,
    /// What was wrong and where, such as `messagesDelivered[3]: threatsInfoMap is not a list`.
    pub reason: String,
    /// The event exactly as received.
    pub raw: serde_json::Value,
}

/// A source's position and health, written through the Raft log with the alerts it covers.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Everything before this time has been fetched and committed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<Timestamp>,
    /// Times of the calls made in the last 24 hours, for quota accounting across failovers.
    #[serde(default)]
    pub calls: Vec<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Events accepted, events dropped as repeats, and events that could not be read.
    #[serde(default)]
    pub accepted: u64,
    #[serde(default)]
    pub duplicates: u64,
    #[serde(default)]
    pub rejected: u64,
}

//! The replicated state of an alert source: where it stands, so a new leader resumes there.

use crate::Timestamp;
use serde::{Deserialize, Serialize};

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

//! Match conditions: rules that say which alerts get which responses.

use crate::AlertKind;
use serde::{Deserialize, Serialize};

/// What Pullback does for an alert that a condition matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    /// Open or join an incident, and nothing else.
    Incident,
    /// Open or join an incident and pull the message from every recipient's mailbox.
    Quarantine,
    /// Open or join an incident and record the quarantine that would have run, without
    /// touching any mailbox.
    DryRunQuarantine,
}

/// A rule. Every list is a filter that passes when empty or when any of its values matches;
/// a condition matches when all of its filters pass.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchCondition {
    /// Unique, stable name; used in the API and in the record of what fired.
    pub name: String,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Lower numbers are evaluated first.
    #[serde(default)]
    pub priority: i32,
    /// Configured source names.
    #[serde(default)]
    pub sources: Vec<String>,
    #[serde(default)]
    pub kinds: Vec<AlertKind>,
    /// Threat classifications, any case (`phish`, `malware`...).
    #[serde(default)]
    pub classifications: Vec<String>,
    /// Threat statuses, any case (`active`, `cleared`, `falsePositive`).
    #[serde(default)]
    pub threat_statuses: Vec<String>,
    /// Threat types, any case (`url`, `attachment`, `messageText`).
    #[serde(default)]
    pub threat_types: Vec<String>,
    /// Recipient domains; an alert passes when any recipient is in one of them.
    #[serde(default)]
    pub recipient_domains: Vec<String>,
    /// Recipients never acted on, such as phishing-simulation or security-team mailboxes.
    #[serde(default)]
    pub exclude_recipients: Vec<String>,
    /// Senders (addresses, or `@domain`) whose mail this condition never acts on, such as a
    /// phishing-simulation platform: the condition does not match their alerts.
    #[serde(default)]
    pub exclude_senders: Vec<String>,
    pub responses: Vec<Response>,
    /// Stop evaluating later conditions once this one matched.
    #[serde(default)]
    pub stop: bool,
}

fn yes() -> bool {
    true
}

impl MatchCondition {
    /// Checks what the engine cannot repair; returns each problem in words.
    pub fn validate(&self) -> Result<(), String> {
        if self.name.trim().is_empty() {
            return Err("match condition has an empty name".into());
        }
        if self.responses.is_empty() {
            return Err(format!("match condition {:?} has no responses", self.name));
        }
        Ok(())
    }
}

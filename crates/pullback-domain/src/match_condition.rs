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
    /// Like `quarantine`, but the message is deleted where the user cannot see it and an
    /// administrator can restore it (Exchange Online's Recoverable Items). Backends that cannot
    /// delete record a failed outcome saying so.
    SoftDelete,
    /// Like `quarantine`, but the message is deleted for good. It cannot be restored.
    HardDelete,
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
    /// Directory groups (by name or DN); passes when any recipient is in one, nested groups
    /// included.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recipient_groups: Vec<String>,
    /// Directory groups whose members are never acted on (the security team, say); the
    /// condition still matches for the other recipients.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_recipient_groups: Vec<String>,
    /// Directory attribute tests; passes when any recipient passes every test.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recipient_attributes: Vec<AttributeTest>,
    /// Directory object classes; passes when any recipient has one of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recipient_object_classes: Vec<String>,
    pub responses: Vec<Response>,
    /// Changes made in the directory for each recipient (people, with distribution lists
    /// expanded and excluded recipients left out) when this condition matches.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub directory_actions: Vec<crate::DirectoryAction>,
    /// Stop evaluating later conditions once this one matched.
    #[serde(default)]
    pub stop: bool,
}

/// A test of one directory attribute: `equals` (any case) or `matches` (a pattern where `*`
/// stands for any text, any case).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttributeTest {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matches: Option<String>,
}

impl AttributeTest {
    pub fn passes(&self, record: &crate::DirectoryRecord) -> bool {
        record.values(&self.name).into_iter().any(|value| {
            self.equals
                .as_deref()
                .is_none_or(|e| value.eq_ignore_ascii_case(e.trim()))
                && self.matches.as_deref().is_none_or(|p| glob(p, value))
        })
    }
}

/// `*` matches any text; the rest compares without case.
fn glob(pattern: &str, text: &str) -> bool {
    let (pattern, text) = (pattern.to_lowercase(), text.to_lowercase());
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || !text[first.len()..].ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(at) => rest = &rest[at + middle.len()..],
            None => return false,
        }
    }
    true
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
        for test in &self.recipient_attributes {
            if test.name.trim().is_empty() || (test.equals.is_none() && test.matches.is_none()) {
                return Err(format!(
                    "match condition {:?}: an attribute test needs a name and equals or matches",
                    self.name
                ));
            }
        }
        if self.responses.is_empty() {
            return Err(format!("match condition {:?} has no responses", self.name));
        }
        Ok(())
    }
}

#[cfg(test)]
mod glob_tests {
    #[test]
    fn stars_match_any_text() {
        assert!(super::glob("VP*", "vp of finance"));
        assert!(super::glob("*finance*", "VP of Finance"));
        assert!(super::glob("a*b*c", "axxbyyc"));
        assert!(!super::glob("a*b*c", "axxcyyb"));
        assert!(super::glob("exact", "EXACT"));
        assert!(!super::glob("exact", "exactly"));
    }
}

//! Alerts: one report from one source that something is wrong with a message, URL or file.

use crate::{MessageId, Timestamp};
use serde::{Deserialize, Serialize};

/// What kind of event an alert came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    MessageDelivered,
    MessageBlocked,
    ClickPermitted,
    ClickBlocked,
    SearchExport,
    JsonEvent,
    AbuseReport,
    Script,
}

impl AlertKind {
    pub const ALL: [AlertKind; 8] = [
        AlertKind::MessageDelivered,
        AlertKind::MessageBlocked,
        AlertKind::ClickPermitted,
        AlertKind::ClickBlocked,
        AlertKind::SearchExport,
        AlertKind::JsonEvent,
        AlertKind::AbuseReport,
        AlertKind::Script,
    ];

    /// The name used in configuration files and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::MessageDelivered => "message_delivered",
            AlertKind::MessageBlocked => "message_blocked",
            AlertKind::ClickPermitted => "click_permitted",
            AlertKind::ClickBlocked => "click_blocked",
            AlertKind::SearchExport => "search_export",
            AlertKind::JsonEvent => "json_event",
            AlertKind::AbuseReport => "abuse_report",
            AlertKind::Script => "script",
        }
    }
}

/// What a threat is, as the feed typed it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ThreatKind {
    Url,
    Attachment,
    MessageText,
    Other(String),
}

impl ThreatKind {
    /// Reads a feed's spelling (`url`, `URL`, `messageText`...).
    pub fn from_feed(raw: &str) -> ThreatKind {
        match raw.trim().to_ascii_lowercase().as_str() {
            "url" => ThreatKind::Url,
            "attachment" => ThreatKind::Attachment,
            "messagetext" | "message_text" => ThreatKind::MessageText,
            other => ThreatKind::Other(other.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            ThreatKind::Url => "url",
            ThreatKind::Attachment => "attachment",
            ThreatKind::MessageText => "message_text",
            ThreatKind::Other(s) => s,
        }
    }
}

/// One threat found in the message or click an alert is about.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Threat {
    /// The feed's identifier of the threat (`threatID`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<ThreatKind>,
    /// The threat itself: a URL, a hostname or a file hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// The threat's page on the vendor's dashboard (`threatUrl`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dashboard_url: Option<String>,
    /// The host of a URL threat, lower case: what analysts search by.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// A SHA-256 when the threat is a file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Lower case: `phish`, `malware`, `spam`, `impostor`...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classification: Option<String>,
    /// Lower case: `active`, `cleared`, `falsepositive`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<Timestamp>,
}

/// An alert as a source produced it, before the state machine numbered and linked it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlertDraft {
    pub kind: AlertKind,
    /// Identifies the event within its source: the feed's own id where it has one, else a
    /// hash of the whole event. Never a message GUID alone, which recipients share.
    pub dedup_key: String,
    /// When the event happened (message or click time).
    pub time: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<MessageId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender: Option<String>,
    /// Lower-case addresses of the mailboxes the message reached.
    #[serde(default)]
    pub recipients: Vec<String>,
    #[serde(default)]
    pub threats: Vec<Threat>,
    /// Anything the parser noticed and worked around, for the analyst to see.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// A source-chosen value that decides which alerts share an incident (the JSON source's
    /// `link_attribute`); when set, it replaces the campaign, threat and Message-ID links.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    /// For a reported message, the CLEAR analysis: disposition, score and the reasons, each
    /// naming the URL, attachment or header that triggered it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<serde_json::Value>,
    /// The event exactly as the source sent it, unknown fields included.
    pub raw: serde_json::Value,
}

impl AlertDraft {
    /// Classifications of all threats, lower case, without repeats.
    pub fn classifications(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for c in self
            .threats
            .iter()
            .filter_map(|t| t.classification.as_deref())
        {
            if !out.contains(&c) {
                out.push(c);
            }
        }
        out
    }
}

/// An alert accepted into the replicated state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub id: u64,
    /// The configured source that produced it.
    pub source: String,
    pub received_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident_id: Option<u64>,
    /// Names of the match conditions that fired on it.
    #[serde(default)]
    pub matched: Vec<String>,
    #[serde(flatten)]
    pub body: AlertDraft,
}

/// Lower-cases and trims an e-mail address; `None` for an empty one.
pub fn normalise_address(raw: &str) -> Option<String> {
    let s = raw.trim();
    let s = match (s.rfind('<'), s.rfind('>')) {
        (Some(a), Some(b)) if a < b => &s[a + 1..b],
        _ => s,
    };
    let s = s.trim().trim_matches('"').to_ascii_lowercase();
    if s.is_empty() { None } else { Some(s) }
}

/// The lower-case host of a URL or bare hostname, `None` when there is none.
pub fn hostname_of(url: &str) -> Option<String> {
    let s = url.trim();
    let rest = match s.find("://") {
        Some(i) => &s[i + 3..],
        None => s,
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let host = authority.rsplit('@').next().unwrap_or(authority);
    let host = if host.starts_with('[') {
        host.split(']').next().map(|h| &h[1..]).unwrap_or(host)
    } else {
        host.split(':').next().unwrap_or(host)
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let plausible =
        !host.is_empty() && host.contains(['.', ':']) && !host.contains(char::is_whitespace);
    plausible.then_some(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_normalised() {
        assert_eq!(
            normalise_address(" User@Example.COM ").as_deref(),
            Some("user@example.com")
        );
        assert_eq!(
            normalise_address("\"A\" <a@b.zz>").as_deref(),
            Some("a@b.zz")
        );
        assert_eq!(normalise_address("  "), None);
    }

    #[test]
    fn hostnames_come_from_urls_and_bare_hosts() {
        let cases = [
            ("https://Sub.Example.com:443/x?y", Some("sub.example.com")),
            ("http://user:pw@host.zz/", Some("host.zz")),
            ("badsite.zz", Some("badsite.zz")),
            ("http://[2001:db8::1]/x", Some("2001:db8::1")),
            ("2fab740f143fc1aa4c1cd0146d334c5593b1428f", None),
            ("", None),
        ];
        for (url, expected) in cases {
            assert_eq!(hostname_of(url).as_deref(), expected, "{url}");
        }
    }
}

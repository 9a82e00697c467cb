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
    /// An opaque position a scripted poller printed and gets back on its next run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<String>,
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

/// A source defined in the replicated state, through the configuration file or the API:
/// the pushed ones (search exports, the JSON alert source) and scripted pollers. TAP
/// sources are defined in the configuration file only.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SourceDefinition {
    /// Unique among sources; letters, digits, `.`, `_` and `-`. Pushers put it in the URL.
    pub name: String,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Hex SHA-256 of the credential a pusher presents in `Authorization`. Only push sources
    /// have one; the credential itself is never stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_sha256: Option<String>,
    #[serde(flatten)]
    pub kind: SourceKind,
}

fn yes() -> bool {
    true
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SourceKind {
    /// Message-log search results pushed (or uploaded) as CSV or JSON.
    SearchExport,
    /// The Threat-Response-compatible JSON alert source.
    JsonEvent,
    /// A program the leader runs on a schedule; it prints alerts as JSON lines.
    Script(ScriptSpec),
    /// A mailbox users forward suspicious mail to; the leader analyses each report.
    AbuseMailbox(AbuseSpec),
}

impl SourceKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            SourceKind::SearchExport => "search_export",
            SourceKind::JsonEvent => "json_event",
            SourceKind::Script(_) => "script",
            SourceKind::AbuseMailbox(_) => "abuse_mailbox",
        }
    }

    pub fn is_pushed(&self) -> bool {
        matches!(self, SourceKind::SearchExport | SourceKind::JsonEvent)
    }
}

/// How and how long a scripted poller runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptSpec {
    /// Absolute path of the program. It gets no shell: `args` are passed as they are.
    pub command: String,
    #[serde(default)]
    pub args: Vec<String>,
    /// Time from the end of one run to the start of the next.
    #[serde(default = "default_script_interval")]
    pub interval_secs: u64,
    /// A run still going after this long is killed, with everything it started.
    #[serde(default = "default_script_timeout")]
    pub timeout_secs: u64,
    /// The program's address-space limit (`RLIMIT_AS`).
    #[serde(default = "default_script_memory")]
    pub memory_mb: u64,
    /// Output lines read per second at most; a faster script is slowed by its full pipe.
    #[serde(default = "default_script_rate")]
    pub max_lines_per_sec: u32,
    /// Secrets handed to the program in its environment or in private files, never on its
    /// command line.
    #[serde(default)]
    pub secrets: Vec<ScriptSecret>,
}

pub fn default_script_interval() -> u64 {
    300
}
pub fn default_script_timeout() -> u64 {
    600
}
pub fn default_script_memory() -> u64 {
    1024
}
pub fn default_script_rate() -> u32 {
    50_000
}

/// Where reports arrive and how their reporters hear back.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AbuseSpec {
    /// The abuse mailbox's address; the mailbox backend serving its domain reads it.
    pub mailbox: String,
    #[serde(default = "default_inbox")]
    pub folder: String,
    /// Where a report goes once it is dealt with; created when missing.
    #[serde(default = "default_processed")]
    pub processed_folder: String,
    #[serde(default = "default_abuse_interval")]
    pub interval_secs: u64,
    /// Reports read per cycle at most.
    #[serde(default = "default_abuse_batch")]
    pub batch: usize,
    /// Replies to reporters; none are sent without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply: Option<ReplySpec>,
}

/// How replies to reporters are sent, and their texts. In the templates, `{subject}` is the
/// reported message's subject, `{disposition}`, `{score}`, `{summary}` and `{reasons}` (one
/// line each) come from the analysis.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplySpec {
    pub host: String,
    pub port: u16,
    /// `smtp` to a relay, `lmtp` straight into the delivery agent.
    #[serde(default = "default_reply_protocol")]
    pub protocol: String,
    /// The sender of replies, e.g. `Security team <security@corp.example>`.
    pub from: String,
    #[serde(default = "default_ack_subject")]
    pub acknowledgement_subject: String,
    #[serde(default = "default_ack_body")]
    pub acknowledgement_body: String,
    #[serde(default = "default_verdict_subject")]
    pub verdict_subject: String,
    #[serde(default = "default_verdict_body")]
    pub verdict_body: String,
}

fn default_inbox() -> String {
    "INBOX".into()
}
fn default_processed() -> String {
    "Processed".into()
}
fn default_abuse_interval() -> u64 {
    60
}
fn default_abuse_batch() -> usize {
    50
}
fn default_reply_protocol() -> String {
    "smtp".into()
}
fn default_ack_subject() -> String {
    "We received your report: {subject}".into()
}
fn default_ack_body() -> String {
    "Thank you for reporting \"{subject}\". The security team's tools are looking at it; \
     you will hear what they found."
        .into()
}
fn default_verdict_subject() -> String {
    "Your report: {disposition}: {subject}".into()
}
fn default_verdict_body() -> String {
    "The message you reported, \"{subject}\", was found {disposition} (score {score}).\n\n\
     Why:\n{reasons}\n\nIf it was malicious, it has been removed from every mailbox that \
     received it. Thank you for reporting it."
        .into()
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptSecret {
    /// The environment variable, or the file's name in `$PULLBACK_SECRETS_DIR`.
    pub name: String,
    #[serde(default)]
    pub delivery: SecretDelivery,
    pub value: crate::Secret,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecretDelivery {
    #[default]
    Env,
    File,
}

impl SourceDefinition {
    /// Checks everything the state machine cannot repair; each problem names its field.
    pub fn validate(&self) -> Result<(), String> {
        let name = &self.name;
        if !valid_source_name(name) {
            return Err(format!(
                "source name {name:?} must be 1 to 64 letters, digits, '.', '_' or '-'"
            ));
        }
        if let Some(hash) = &self.credential_sha256 {
            if !self.kind.is_pushed() {
                return Err(format!(
                    "source {name:?}: only pushed sources take a credential"
                ));
            }
            if hash.len() != 64 || !hash.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(format!(
                    "source {name:?}: credential_sha256 must be 64 hex digits"
                ));
            }
        }
        if let SourceKind::AbuseMailbox(abuse) = &self.kind {
            if !abuse.mailbox.contains('@') {
                return Err(format!(
                    "source {name:?}: mailbox must be the abuse mailbox's address, not {:?}",
                    abuse.mailbox
                ));
            }
            if abuse.interval_secs == 0 || abuse.batch == 0 {
                return Err(format!(
                    "source {name:?}: interval_secs and batch must be at least 1"
                ));
            }
            if let Some(reply) = &abuse.reply
                && !matches!(reply.protocol.as_str(), "smtp" | "lmtp")
            {
                return Err(format!(
                    "source {name:?}: reply.protocol must be smtp or lmtp, not {:?}",
                    reply.protocol
                ));
            }
            return Ok(());
        }
        let SourceKind::Script(script) = &self.kind else {
            return Ok(());
        };
        if !script.command.starts_with('/') {
            return Err(format!(
                "source {name:?}: command must be an absolute path, not {:?}",
                script.command
            ));
        }
        let positive = [
            ("interval_secs", script.interval_secs),
            ("timeout_secs", script.timeout_secs),
            ("memory_mb", script.memory_mb),
            ("max_lines_per_sec", u64::from(script.max_lines_per_sec)),
        ];
        if let Some((field, _)) = positive.iter().find(|(_, value)| *value == 0) {
            return Err(format!("source {name:?}: {field} must be at least 1"));
        }
        for (index, secret) in script.secrets.iter().enumerate() {
            let valid = !secret.name.is_empty()
                && !secret.name.starts_with(|c: char| c.is_ascii_digit())
                && secret
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(format!(
                    "source {name:?}: secrets[{index}].name {:?} must be letters, digits and \
                     '_', not starting with a digit",
                    secret.name
                ));
            }
            if secret.name.starts_with("PULLBACK_") {
                return Err(format!(
                    "source {name:?}: secrets[{index}].name may not start with PULLBACK_"
                ));
            }
        }
        Ok(())
    }
}

/// Source names travel in URLs and file names: keep them plain.
pub fn valid_source_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && !name.starts_with('.')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<SourceDefinition, String> {
        serde_json::from_str::<SourceDefinition>(json).map_err(|e| e.to_string())
    }

    #[test]
    fn definitions_read_their_kind_and_refuse_unknown_script_fields() {
        let push = parse(r#"{"name":"pps","type":"search_export","credential_sha256":null}"#);
        assert_eq!(push.unwrap().kind, SourceKind::SearchExport);
        let script = parse(
            r#"{"name":"imd","enabled":false,"type":"script","command":"/opt/imd",
                "secrets":[{"name":"TOKEN","value":"s"}]}"#,
        )
        .unwrap();
        assert!(!script.enabled);
        let SourceKind::Script(spec) = &script.kind else {
            panic!("not a script: {script:?}")
        };
        assert_eq!(spec.timeout_secs, 600);
        assert_eq!(spec.secrets[0].delivery, SecretDelivery::Env);
        assert!(!format!("{script:?}").contains("\"s\""));
        let typo = parse(r#"{"name":"imd","type":"script","command":"/x","timout_secs":3}"#);
        assert!(typo.unwrap_err().contains("timout_secs"));
        let back = serde_json::to_string(&script).unwrap();
        assert_eq!(parse(&back).unwrap(), script);
    }

    #[test]
    fn validation_names_the_field() {
        let def = |json: &str| parse(json).unwrap().validate().unwrap_err();
        assert!(def(r#"{"name":"a b","type":"json_event"}"#).contains("source name"));
        assert!(def(r#"{"name":"s","type":"script","command":"rel/x"}"#).contains("absolute"));
        assert!(
            def(r#"{"name":"s","type":"script","command":"/x","timeout_secs":0}"#)
                .contains("timeout_secs")
        );
        assert!(
            def(r#"{"name":"s","type":"script","command":"/x","secrets":[{"name":"1A","value":"v"}]}"#)
                .contains("secrets[0].name")
        );
        assert!(
            def(r#"{"name":"s","type":"json_event","credential_sha256":"abc"}"#)
                .contains("credential_sha256")
        );
    }
}

/// What a piece of intelligence names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IntelKind {
    Url,
    Domain,
    Sha256,
}

impl IntelKind {
    pub fn as_str(self) -> &'static str {
        match self {
            IntelKind::Url => "url",
            IntelKind::Domain => "domain",
            IntelKind::Sha256 => "sha256",
        }
    }

    /// The form values are stored and looked up in: domains and hashes lower case, a URL as
    /// given but for its scheme and host.
    pub fn normalise(self, value: &str) -> Option<String> {
        let value = value.trim();
        if value.is_empty() || value.len() > 2048 || value.contains(char::is_control) {
            return None;
        }
        match self {
            IntelKind::Domain => {
                let domain = value.trim_end_matches('.').to_ascii_lowercase();
                (domain.contains('.') && !domain.contains(['/', ' ', '@'])).then_some(domain)
            }
            IntelKind::Sha256 => {
                let hash = value.to_ascii_lowercase();
                (hash.len() == 64 && hash.chars().all(|c| c.is_ascii_hexdigit())).then_some(hash)
            }
            IntelKind::Url => {
                let (scheme, rest) = value.split_once("://")?;
                let (host, path) = rest.split_at(rest.find(['/', '?', '#']).unwrap_or(rest.len()));
                Some(format!(
                    "{}://{}{}",
                    scheme.to_ascii_lowercase(),
                    host.to_ascii_lowercase(),
                    if path.is_empty() { "/" } else { path }
                ))
            }
        }
    }
}

/// One known-bad URL, domain or file hash, kept by Pullback.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IntelEntry {
    pub kind: IntelKind,
    /// Normalised (see [`IntelKind::normalise`]).
    pub value: String,
    /// The list it belongs to, such as `phish-feed` or `manual`.
    pub list: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

//! The configuration file (TOML): the node, API keys, alert sources, mailbox backends and
//! match conditions. `pullback validate` runs [`Config::load`] and reports every problem.

use pullback_domain::{
    AbuseSpec, MatchCondition, ScriptSecret, ScriptSpec, SecretDelivery, SourceDefinition,
    SourceKind,
};
use serde::Deserialize;
use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub node: NodeSection,
    #[serde(default)]
    pub api_keys: Vec<ApiKeyConfig>,
    /// Local accounts for the web UI, such as the first administrator. Written to the
    /// replicated state at start; administrators add the others through the API or the UI.
    #[serde(default)]
    pub users: Vec<UserConfig>,
    #[serde(default)]
    pub sources: Vec<SourceConfig>,
    #[serde(default)]
    pub mailboxes: Vec<MailboxConfig>,
    #[serde(default)]
    pub match_conditions: Vec<MatchCondition>,
    #[serde(default)]
    pub workers: WorkerConfig,
    /// Where backups go. Every node that may take one (any node for backups asked through
    /// its API, the leader for scheduled purges) needs the same targets.
    #[serde(default)]
    pub backup_targets: Vec<BackupTargetConfig>,
    /// The LDAP or Active Directory server people and groups are imported from.
    #[serde(default)]
    pub directory: Option<crate::directory::DirectorySection>,
    /// Sign-in with Azure AD for the web UI, next to local accounts.
    #[serde(default)]
    pub oidc: Option<crate::oidc::OidcSection>,
    /// Thresholds of the recommendations about size and backups.
    #[serde(default)]
    pub maintenance: MaintenanceConfig,
    /// Present on a member of a cluster; without it the node runs alone.
    #[serde(default)]
    pub cluster: Option<ClusterSection>,
}

/// How a node takes part in a cluster. Its certificate and the cluster CA live in
/// `<data_dir>/cluster`, written by `pullback cluster init` or `pullback cluster join`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSection {
    /// Where this node serves Raft to its peers (mutual TLS). Its calls to peers also leave
    /// from this address's IP when it is a specific one.
    pub raft_listen: SocketAddr,
    /// `host:port` peers use to reach `raft_listen`, when it differs (NAT, a proxy, a DNS
    /// name). Its host must be in the node's certificate.
    #[serde(default)]
    pub raft_advertise: Option<String>,
    /// The API's base URL as clients and peers reach it, when it differs from
    /// `https://<listen>`.
    #[serde(default)]
    pub api_advertise: Option<String>,
    /// More names (DNS or IP) for the node's certificate.
    #[serde(default)]
    pub names: Vec<String>,
    /// How many log entries since the last snapshot trigger a new one; older entries are
    /// then purged.
    #[serde(default = "default_snapshot_logs")]
    pub snapshot_logs: u64,
}

fn default_snapshot_logs() -> u64 {
    20_000
}

impl ClusterSection {
    /// The Raft address written into the membership.
    pub fn raft_address(&self) -> String {
        self.raft_advertise
            .clone()
            .unwrap_or_else(|| self.raft_listen.to_string())
    }

    /// The API base URL written into the membership.
    pub fn api_address(&self, listen: SocketAddr) -> String {
        self.api_advertise
            .clone()
            .unwrap_or_else(|| format!("https://{listen}"))
    }

    /// Every name the node's certificate must cover: the hosts of its Raft and API
    /// addresses, the addresses it listens on when they are specific, and `names`.
    pub fn certificate_names(&self, listen: SocketAddr) -> Vec<String> {
        let mut names = BTreeSet::new();
        names.insert(host_of(&self.raft_address()));
        let api = self.api_address(listen);
        let api = api.split_once("://").map_or(api.as_str(), |(_, rest)| rest);
        names.insert(host_of(api.split('/').next().unwrap_or(api)));
        for ip in [listen.ip(), self.raft_listen.ip()] {
            if !ip.is_unspecified() {
                names.insert(ip.to_string());
            }
        }
        names.extend(self.names.iter().cloned());
        names.retain(|name| !name.is_empty());
        names.into_iter().collect()
    }
}

/// The host of `host:port` (IPv6 hosts in brackets lose them).
fn host_of(address: &str) -> String {
    let host = match address.rsplit_once(':') {
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host,
        _ => address,
    };
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSection {
    /// This node's Raft id; unique in the cluster, never reused.
    #[serde(default = "one")]
    pub id: u64,
    pub data_dir: PathBuf,
    /// Where the API, UI and metrics listen.
    pub listen: SocketAddr,
    /// Serve the API over TLS with this certificate chain and key (PEM). Without it the API
    /// is plain HTTP, which is only fit for loopback: API keys would cross the network in
    /// clear.
    #[serde(default)]
    pub tls: Option<TlsFiles>,
    /// Memory RocksDB may hold, in MiB: two thirds for memtables, one third for the block
    /// cache. The default keeps a node small; more ingests faster (docs/performance.md).
    #[serde(default = "default_store_memory")]
    pub store_memory_mb: usize,
    /// On the appliance: the folder where an upgrade image uploaded through the API waits for
    /// root to check and apply it (`/data/upgrade-inbox`). Without it, uploads answer 404.
    #[serde(default)]
    pub upgrade_inbox: Option<PathBuf>,
}

fn default_store_memory() -> usize {
    pullback_store::StoreMemory::default().megabytes
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

fn one() -> u64 {
    1
}

pub use pullback_domain::Role;

/// A backup target: a local folder or an SFTP server (see `pullback_backup::TargetConfig`),
/// with how many backups to keep there.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupTargetConfig {
    pub name: String,
    /// Backups kept on the target; older ones are removed after each verified backup.
    #[serde(default = "seven")]
    pub keep: usize,
    pub target: pullback_backup::TargetConfig,
}

fn seven() -> usize {
    7
}

/// When the appliance recommends backups and purges.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MaintenanceConfig {
    /// The store size this machine is sized for, in GB.
    pub recommended_store_gb: u64,
    /// Past this share of the recommended size, a purge is recommended.
    pub size_warning_percent: u8,
    /// A verified backup older than this is reported.
    pub backup_max_age_days: u32,
    /// With this many alerts kept and no purge scheduled, a schedule is recommended.
    pub alerts_without_purge: u64,
}

impl Default for MaintenanceConfig {
    fn default() -> MaintenanceConfig {
        MaintenanceConfig {
            recommended_store_gb: 100,
            size_warning_percent: 80,
            backup_max_age_days: 7,
            alerts_without_purge: 1_000_000,
        }
    }
}

/// An account defined in the file, with its password's argon2 hash (PHC form), as
/// `pullback user hash` prints it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    pub name: String,
    pub role: Role,
    pub password_hash: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    pub name: String,
    pub role: Role,
    /// Hex SHA-256 of the key; the key itself is never stored.
    pub sha256: String,
}

/// A secret given inline, in a file readable only by its owner, or in an environment
/// variable. Its `Debug` never shows the value.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretRef {
    #[serde(default)]
    pub value: Option<String>,
    #[serde(default)]
    pub file: Option<PathBuf>,
    #[serde(default)]
    pub env: Option<String>,
}

impl fmt::Debug for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretRef")
            .field("value", &self.value.as_ref().map(|_| "<redacted>"))
            .field("file", &self.file)
            .field("env", &self.env)
            .finish()
    }
}

impl SecretRef {
    /// Reads the secret. A file must not be readable by group or others.
    pub fn resolve(&self, what: &str) -> Result<String, String> {
        match (&self.value, &self.file, &self.env) {
            (Some(value), None, None) => Ok(value.clone()),
            (None, Some(path), None) => read_secret_file(path, what),
            (None, None, Some(var)) => std::env::var(var)
                .map(|v| v.trim().to_owned())
                .map_err(|_| format!("{what}: environment variable {var} is not set")),
            (None, None, None) => Err(format!("{what}: no secret given (value, file or env)")),
            _ => Err(format!("{what}: give exactly one of value, file or env")),
        }
    }
}

fn read_secret_file(path: &Path, what: &str) -> Result<String, String> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path)
        .map_err(|e| format!("{what}: cannot read {}: {e}", path.display()))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(format!(
            "{what}: {} is readable by group or others; chmod 600 it",
            path.display()
        ));
    }
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .map_err(|e| format!("{what}: cannot read {}: {e}", path.display()))
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum SourceConfig {
    Tap(TapSourceConfig),
    /// Message-search results pushed to `/api/v1/sources/<name>/push`.
    SearchExport(PushSourceConfig),
    /// The JSON alert source at `/threat/json_event/events/<name>`.
    JsonEvent(PushSourceConfig),
    Script(ScriptSourceConfig),
    /// A mailbox users forward suspicious mail to (see `docs/sources.md`).
    AbuseMailbox(AbuseSourceConfig),
}

/// An abuse mailbox: `name`, `enabled`, and the fields of [`AbuseSpec`] beside them.
#[derive(Debug, Deserialize)]
pub struct AbuseSourceConfig {
    pub name: String,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(flatten)]
    pub spec: AbuseSpec,
}

impl SourceConfig {
    pub fn name(&self) -> &str {
        match self {
            SourceConfig::Tap(tap) => &tap.name,
            SourceConfig::SearchExport(push) | SourceConfig::JsonEvent(push) => &push.name,
            SourceConfig::Script(script) => &script.name,
            SourceConfig::AbuseMailbox(abuse) => &abuse.name,
        }
    }

    /// The definition this entry stores in the replicated state, with its secrets read;
    /// `None` for a TAP source, which lives in the file only.
    pub fn definition(&self) -> Result<Option<SourceDefinition>, String> {
        let (name, enabled, credential_sha256, kind) = match self {
            SourceConfig::Tap(_) => return Ok(None),
            SourceConfig::SearchExport(push) => (
                &push.name,
                push.enabled,
                push.credential_sha256.clone(),
                SourceKind::SearchExport,
            ),
            SourceConfig::JsonEvent(push) => (
                &push.name,
                push.enabled,
                push.credential_sha256.clone(),
                SourceKind::JsonEvent,
            ),
            SourceConfig::AbuseMailbox(abuse) => (
                &abuse.name,
                abuse.enabled,
                None,
                SourceKind::AbuseMailbox(abuse.spec.clone()),
            ),
            SourceConfig::Script(script) => {
                let mut secrets = Vec::with_capacity(script.secrets.len());
                for secret in &script.secrets {
                    let what = format!("source {:?} secret {:?}", script.name, secret.name);
                    secrets.push(ScriptSecret {
                        name: secret.name.clone(),
                        delivery: secret.delivery,
                        value: pullback_domain::Secret(secret.secret.resolve(&what)?),
                    });
                }
                let spec = ScriptSpec {
                    command: script.command.clone(),
                    args: script.args.clone(),
                    interval_secs: script.interval_secs,
                    timeout_secs: script.timeout_secs,
                    memory_mb: script.memory_mb,
                    max_lines_per_sec: script.max_lines_per_sec,
                    secrets,
                };
                (&script.name, script.enabled, None, SourceKind::Script(spec))
            }
        };
        let definition = SourceDefinition {
            name: name.clone(),
            enabled,
            credential_sha256: credential_sha256.map(|h| h.to_ascii_lowercase()),
            kind,
        };
        definition.validate()?;
        Ok(Some(definition))
    }
}

/// A source that others push alerts to. Without `credential_sha256` nothing can push to it
/// until an administrator sets a credential through the API.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushSourceConfig {
    pub name: String,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Hex SHA-256 of the credential pushers send (`pullback api-key` prints a random key and
    /// its hash; `POST /api/v1/sources/<name>/credential` sets one instead).
    #[serde(default)]
    pub credential_sha256: Option<String>,
}

/// A program the leader runs on a schedule (see `docs/sources.md`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptSourceConfig {
    pub name: String,
    #[serde(default = "yes")]
    pub enabled: bool,
    pub command: String,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default = "pullback_domain::source::default_script_interval")]
    pub interval_secs: u64,
    #[serde(default = "pullback_domain::source::default_script_timeout")]
    pub timeout_secs: u64,
    #[serde(default = "pullback_domain::source::default_script_memory")]
    pub memory_mb: u64,
    #[serde(default = "pullback_domain::source::default_script_rate")]
    pub max_lines_per_sec: u32,
    #[serde(default)]
    pub secrets: Vec<ScriptSecretConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptSecretConfig {
    pub name: String,
    #[serde(default)]
    pub delivery: SecretDelivery,
    /// Where Pullback reads it: `{ env = "..." }`, `{ file = "..." }` or `{ value = "..." }`.
    pub secret: SecretRef,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TapSourceConfig {
    pub name: String,
    pub base_url: String,
    pub principal: String,
    pub secret: SecretRef,
    #[serde(default = "default_interval")]
    pub interval_secs: u64,
    /// How far back to look after a restart or outage.
    #[serde(default = "default_lookback")]
    pub lookback_hours: u64,
    /// How much of the previous window every cycle asks for again, for late events.
    #[serde(default = "default_overlap")]
    pub overlap_minutes: u64,
    #[serde(default = "default_quota")]
    pub daily_quota: u32,
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

fn default_interval() -> u64 {
    60
}
fn default_lookback() -> u64 {
    12
}
fn default_overlap() -> u64 {
    30
}
fn default_quota() -> u32 {
    1800
}
fn default_timeout() -> u64 {
    30
}

/// A mailbox backend. Its `type` and the fields of that type sit beside the common fields.
#[derive(Debug, Deserialize)]
pub struct MailboxConfig {
    pub name: String,
    /// Recipient domains this backend serves; empty means every domain not served by
    /// another backend.
    #[serde(default)]
    pub domains: Vec<String>,
    #[serde(default = "default_quarantine_folder")]
    pub quarantine_folder: String,
    #[serde(default = "default_source_folder")]
    pub source_folder: String,
    #[serde(flatten)]
    pub backend: BackendConfig,
}

fn default_quarantine_folder() -> String {
    "Quarantine".into()
}
fn default_source_folder() -> String {
    "INBOX".into()
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum BackendConfig {
    Maildir {
        root: PathBuf,
    },
    Imap {
        host: String,
        port: u16,
        #[serde(default)]
        tls: TlsMode,
        #[serde(default)]
        ca_file: Option<PathBuf>,
        master_user: String,
        master_password: SecretRef,
        #[serde(default = "default_timeout")]
        timeout_secs: u64,
    },
    /// Exchange Online through Microsoft Graph (see [`crate::graph::GraphMailboxConfig`]).
    Graph(Box<crate::graph::GraphMailboxConfig>),
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TlsMode {
    None,
    Starttls,
    #[default]
    Tls,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerConfig {
    /// Mailboxes worked on at once.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// How often the queue is looked at when nothing announced new work.
    #[serde(default = "default_poll_ms")]
    pub poll_interval_ms: u64,
}

impl Default for WorkerConfig {
    fn default() -> WorkerConfig {
        WorkerConfig {
            concurrency: default_concurrency(),
            poll_interval_ms: default_poll_ms(),
        }
    }
}

fn default_concurrency() -> usize {
    8
}
fn default_poll_ms() -> u64 {
    1000
}

/// Every problem found in a configuration, each naming where it is.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration {path}:\n  - {}", problems.join("\n  - "))]
pub struct ConfigError {
    pub path: PathBuf,
    pub problems: Vec<String>,
}

impl NodeSection {
    /// Where the store (RocksDB) lives.
    pub fn store_dir(&self) -> PathBuf {
        self.data_dir.join("db")
    }

    /// Where the node's cluster certificate, key and the cluster CA live.
    pub fn cluster_dir(&self) -> PathBuf {
        self.data_dir.join("cluster")
    }
}

impl Config {
    /// Reads and checks a configuration file, resolving no secrets.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let fail = |problem: String| ConfigError {
            path: path.to_owned(),
            problems: vec![problem],
        };
        let text = std::fs::read_to_string(path).map_err(|e| fail(format!("cannot read: {e}")))?;
        let config: Config = toml::from_str(&text).map_err(|e| fail(e.to_string()))?;
        let problems = config.problems();
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError {
                path: path.to_owned(),
                problems,
            })
        }
    }

    /// Checks what serde cannot: uniqueness, references, and that secrets can be read.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !(3..=65_536).contains(&self.node.store_memory_mb) {
            problems.push("node.store_memory_mb must be between 3 and 65536".into());
        }
        if let Some(cluster) = &self.cluster {
            if cluster.raft_listen == self.node.listen {
                problems.push("cluster.raft_listen must differ from node.listen".into());
            }
            if cluster.snapshot_logs == 0 {
                problems.push("cluster.snapshot_logs must be at least 1".into());
            }
            if self.node.id == 0 {
                problems.push("node.id must be at least 1".into());
            }
        }
        for target in &self.backup_targets {
            if let Err(e) = target.target.validate() {
                problems.push(format!("backup target {:?}: {e}", target.name));
            }
            if target.keep == 0 {
                problems.push(format!(
                    "backup target {:?}: keep must be at least 1",
                    target.name
                ));
            }
        }
        if let Some(directory) = &self.directory
            && let Err(e) = directory.ldap.validate()
        {
            problems.push(format!("directory: {e}"));
        }
        if let Some(oidc) = &self.oidc
            && let Err(found) = oidc.settings()
        {
            problems.extend(found);
        }
        if !(1..=100).contains(&self.maintenance.size_warning_percent) {
            problems.push("maintenance.size_warning_percent must be between 1 and 100".into());
        }
        for user in &self.users {
            if !pullback_domain::valid_user_name(&user.name) {
                problems.push(format!(
                    "user {:?}: use 1 to 64 letters, digits, '.', '_', '-' or '@'",
                    user.name
                ));
            }
            if !user.password_hash.starts_with("$argon2") {
                problems.push(format!(
                    "user {:?}: password_hash must be an argon2 hash (run `pullback user-hash`)",
                    user.name
                ));
            }
        }
        let mut unique = |kind: &str, name: &str, seen: &mut BTreeSet<String>| {
            if !seen.insert(name.to_owned()) {
                problems.push(format!("{kind} {name:?} is defined twice"));
            }
        };
        let mut seen = BTreeSet::new();
        for user in &self.users {
            unique("user", &user.name, &mut seen);
        }
        let mut seen = BTreeSet::new();
        for target in &self.backup_targets {
            unique("backup target", &target.name, &mut seen);
        }
        let mut seen = BTreeSet::new();
        for source in &self.sources {
            unique("source", source.name(), &mut seen);
        }
        let mut seen = BTreeSet::new();
        for mailbox in &self.mailboxes {
            unique("mailbox backend", &mailbox.name, &mut seen);
        }
        let mut seen = BTreeSet::new();
        for condition in &self.match_conditions {
            unique("match condition", &condition.name, &mut seen);
        }
        for key in &self.api_keys {
            let valid = key.sha256.len() == 64 && key.sha256.chars().all(|c| c.is_ascii_hexdigit());
            if !valid {
                problems.push(format!(
                    "api key {:?}: sha256 must be 64 hex digits",
                    key.name
                ));
            }
        }
        for condition in &self.match_conditions {
            if let Err(problem) = condition.validate() {
                problems.push(problem);
            }
            for source in &condition.sources {
                if !self.sources.iter().any(|s| s.name() == source) {
                    problems.push(format!(
                        "match condition {:?} names source {source:?}, which is not configured",
                        condition.name
                    ));
                }
            }
        }
        for source in &self.sources {
            let tap = match source {
                SourceConfig::Tap(tap) => tap,
                other => {
                    if let Err(problem) = other.definition() {
                        problems.push(problem);
                    }
                    if let SourceConfig::Script(script) = other {
                        problems.extend(script_problem(script));
                    }
                    continue;
                }
            };
            if let Err(problem) = tap.secret.resolve(&format!("source {:?} secret", tap.name)) {
                problems.push(problem);
            }
            if !(tap.base_url.starts_with("https://") || tap.base_url.starts_with("http://")) {
                problems.push(format!(
                    "source {:?}: base_url must be an http(s) URL",
                    tap.name
                ));
            }
            if tap.lookback_hours > 24 * 7 {
                problems.push(format!(
                    "source {:?}: lookback_hours is {}, but the TAP API keeps only 7 days",
                    tap.name, tap.lookback_hours
                ));
            }
        }
        for mailbox in &self.mailboxes {
            if let BackendConfig::Imap {
                master_password, ..
            } = &mailbox.backend
                && let Err(problem) =
                    master_password.resolve(&format!("mailbox backend {:?} password", mailbox.name))
            {
                problems.push(problem);
            }
            if let BackendConfig::Graph(graph) = &mailbox.backend {
                problems.extend(graph.problems(&mailbox.name));
            }
        }
        let catch_alls = self
            .mailboxes
            .iter()
            .filter(|m| m.domains.is_empty())
            .count();
        if catch_alls > 1 {
            problems.push("more than one mailbox backend has no domains (a catch-all)".into());
        }
        problems
    }
}

/// Whether this node can run the script: every node that may lead needs it.
fn script_problem(script: &ScriptSourceConfig) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let path = Path::new(&script.command);
    if !path.is_absolute() {
        return None;
    }
    match std::fs::metadata(path) {
        Err(e) => Some(format!(
            "source {:?}: command {}: {e} (every node that may lead needs it)",
            script.name, script.command
        )),
        Ok(meta) if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 => Some(format!(
            "source {:?}: command {} is not an executable file",
            script.name, script.command
        )),
        Ok(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems_of(toml_text: &str) -> Vec<String> {
        let config: Config = toml::from_str(toml_text).unwrap();
        config.problems()
    }

    const NODE: &str = "[node]\ndata_dir = \"/tmp/x\"\nlisten = \"127.0.0.1:0\"\n";

    #[test]
    fn reports_every_problem_by_name() {
        let text = format!(
            "{NODE}
[[sources]]
type = \"tap\"
name = \"tap\"
base_url = \"ftp://x\"
principal = \"p\"
secret = {{ env = \"PULLBACK_TEST_UNSET_VARIABLE\" }}

[[match_conditions]]
name = \"q\"
sources = [\"nope\"]
responses = [\"quarantine\"]

[[match_conditions]]
name = \"q\"
responses = []
"
        );
        let problems = problems_of(&text).join("\n");
        for expected in [
            "PULLBACK_TEST_UNSET_VARIABLE is not set",
            "base_url must be an http(s) URL",
            "names source \"nope\"",
            "match condition \"q\" is defined twice",
            "has no responses",
        ] {
            assert!(
                problems.contains(expected),
                "{expected} missing from:\n{problems}"
            );
        }
    }

    #[test]
    fn pushed_and_script_sources_are_checked_by_name() {
        let text = format!(
            "{NODE}
[[sources]]
type = \"script\"
name = \"imd\"
command = \"/nonexistent/imd-poller\"
secrets = [{{ name = \"TOKEN\", secret = {{ env = \"PULLBACK_TEST_UNSET_VARIABLE\" }} }}]

[[sources]]
type = \"search_export\"
name = \"pps export\"

[[sources]]
type = \"json_event\"
name = \"soar\"
credential_sha256 = \"00\"
"
        );
        let problems = problems_of(&text).join("\n");
        for expected in [
            "/nonexistent/imd-poller",
            "PULLBACK_TEST_UNSET_VARIABLE is not set",
            "source name \"pps export\"",
            "source \"soar\": credential_sha256 must be 64 hex digits",
        ] {
            assert!(
                problems.contains(expected),
                "{expected} missing from:\n{problems}"
            );
        }
    }

    #[test]
    fn secret_files_must_be_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "s3cret\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let secret = SecretRef {
            file: Some(path.clone()),
            ..SecretRef::default()
        };
        assert!(secret.resolve("tap").unwrap_err().contains("chmod 600"));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(secret.resolve("tap").unwrap(), "s3cret");
        assert!(
            !format!(
                "{:?}",
                SecretRef {
                    value: Some("x1".into()),
                    ..secret
                }
            )
            .contains("x1")
        );
    }

    #[test]
    fn a_node_certificate_covers_every_address_peers_and_clients_use() {
        let text = "[node]\ndata_dir = \"/tmp/x\"\nlisten = \"0.0.0.0:8480\"\n\
                    [cluster]\nraft_listen = \"10.0.0.1:8481\"\n\
                    raft_advertise = \"pb1.corp.example:8481\"\n\
                    api_advertise = \"https://[fd00::1]:8480/\"\nnames = [\"pb1\"]\n";
        let config: Config = toml::from_str(text).unwrap();
        let cluster = config.cluster.as_ref().unwrap();
        assert_eq!(cluster.raft_address(), "pb1.corp.example:8481");
        // The unspecified listen address is no name; the bracketed IPv6 host loses brackets.
        assert_eq!(
            cluster.certificate_names(config.node.listen),
            ["10.0.0.1", "fd00::1", "pb1", "pb1.corp.example"]
        );
    }

    #[test]
    fn a_cluster_node_needs_its_own_raft_port_and_an_id() {
        let text = "[node]\nid = 0\ndata_dir = \"/tmp/x\"\nlisten = \"127.0.0.1:8480\"\n\
                    [cluster]\nraft_listen = \"127.0.0.1:8480\"\nsnapshot_logs = 0\n";
        let problems = problems_of(text);
        assert!(
            problems
                .iter()
                .any(|p| p.contains("raft_listen must differ")),
            "{problems:?}"
        );
        assert!(
            problems.iter().any(|p| p.contains("node.id")),
            "{problems:?}"
        );
        assert!(
            problems.iter().any(|p| p.contains("snapshot_logs")),
            "{problems:?}"
        );
    }
}

//! Shared pieces of the end-to-end tests: the `pullback` binary as a server process, the
//! TAP-compatible server, events in the recorded TAP shape, a latency proxy, and waiting;
//! for the cluster tests, a proxy that cuts links between nodes and the history check.

#![allow(dead_code)]

pub mod cluster;
pub mod fault_proxy;
pub mod history;
pub mod webdriver;

use chrono::{TimeDelta, Utc};
use pullback_domain::{AlertKind, Timestamp};
use pullback_mailbox::headers::{MessageHeaders, decode_encoded_words};
use pullback_tap::simulator::{SimulatorConfig, TapSimulator};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const PRINCIPAL: &str = "test-principal";
pub const TAP_SECRET: &str = "tap-secret-never-logged-7f3a";
pub const ADMIN_KEY: &str = "admin-key-0123456789";
pub const ANALYST_KEY: &str = "analyst-key-0123456789";
pub const READER_KEY: &str = "reader-key-0123456789";

/// The shared test data folder, from `PULLBACK_SHARED_DATA` or `../shared/data`.
pub fn shared_data() -> PathBuf {
    pullback_mailbox::testing::shared_data_dir()
}

pub fn shared_mail(relative: &str) -> Vec<u8> {
    pullback_mailbox::testing::shared_mail(relative)
}

/// A free port on 127.0.0.1.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

/// The TAP-compatible server, serving on a free loopback port.
pub async fn start_tap() -> (Arc<TapSimulator>, SocketAddr) {
    let tap = Arc::new(TapSimulator::new(SimulatorConfig {
        principal: PRINCIPAL.into(),
        secret: TAP_SECRET.into(),
        quota_per_day: 1800,
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind TAP");
    let address = listener.local_addr().expect("TAP address");
    tokio::spawn(pullback_tap::simulator::serve(listener, tap.clone()));
    (tap, address)
}

/// A delivered-message event built from the vendor's documentation sample, so it carries
/// every field and quirk of that payload, about the given message and recipients.
pub fn delivered_event(id: &str, message: &[u8], recipients: &[&str], status: &str) -> Value {
    let path = shared_data().join("tap-siem/sumologic_docs/siem_api_doc_sample_message_event.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {} (set PULLBACK_SHARED_DATA): {e}",
            path.display()
        )
    });
    let mut event: Value = serde_json::from_str(&text).expect("the sample event is JSON");
    let headers = MessageHeaders::parse(message);
    let time = (Utc::now() - TimeDelta::minutes(20)).to_rfc3339();
    event["id"] = json!(id);
    event["messageID"] = json!(
        headers
            .message_id
            .map(|m| m.bracketed())
            .unwrap_or_default()
    );
    event["subject"] = json!(headers.subject.as_deref().map(decode_encoded_words));
    event["recipient"] = json!(recipients);
    event["toAddresses"] = json!(recipients);
    event["ccAddresses"] = json!([]);
    event["messageTime"] = json!(time);
    // Threats and campaign belong to the message, so that alerts about one message join one
    // incident and alerts about different messages do not.
    let message_key = event["messageID"].as_str().unwrap_or_default().to_owned();
    for (i, threat) in event["threatsInfoMap"]
        .as_array_mut()
        .expect("threats")
        .iter_mut()
        .enumerate()
    {
        threat["threatTime"] = json!(time);
        threat["threatStatus"] = json!(status);
        threat["threatId"] = json!(format!("{message_key}#{i}"));
        threat["campaignId"] = json!(format!("campaign-{message_key}"));
    }
    event
}

/// Adds an event to the TAP server, filed and indexed twenty minutes ago.
pub fn serve_event(tap: &TapSimulator, kind: AlertKind, event: Value) {
    let at: Timestamp = Utc::now() - TimeDelta::minutes(20);
    tap.add_event(kind, event, at, at);
}

/// The configuration file of a test node.
pub struct NodeConfig<'a> {
    pub dir: &'a Path,
    pub listen: SocketAddr,
    pub tap: SocketAddr,
    /// The `[[mailboxes]]` table(s), verbatim.
    pub mailboxes: String,
    pub worker_concurrency: usize,
    /// A certificate chain and key to serve the API over TLS.
    pub tls: Option<(PathBuf, PathBuf)>,
}

impl NodeConfig<'_> {
    /// Writes `pullback.toml` for a node running alone, with its data in `dir/node`.
    pub fn write(&self) -> PathBuf {
        let text = self.text(1, &self.dir.join("node"), self.listen, "");
        let path = self.dir.join("pullback.toml");
        std::fs::write(&path, text).expect("write config");
        path
    }

    /// The configuration of node `id` listening on `listen`, with `extra` TOML appended (a
    /// `[cluster]` section).
    pub fn text(&self, id: u64, data: &Path, listen: SocketAddr, extra: &str) -> String {
        let hash = |key: &str| hex::encode(pullback_api::hash_key(key));
        format!(
            r#"
[node]
id = {id}
data_dir = {data:?}
listen = "{listen}"
{tls}

[workers]
concurrency = {concurrency}
poll_interval_ms = 100

[[api_keys]]
name = "admin"
role = "admin"
sha256 = "{admin}"

[[api_keys]]
name = "analyst"
role = "analyst"
sha256 = "{analyst}"

[[api_keys]]
name = "reader"
role = "read_only"
sha256 = "{reader}"

[[sources]]
type = "tap"
name = "tap"
base_url = "http://{tap}"
principal = "{PRINCIPAL}"
secret = {{ env = "PULLBACK_TEST_TAP_SECRET" }}
interval_secs = 1

{mailboxes}

[[match_conditions]]
name = "tap-active-threats"
sources = ["tap"]
kinds = ["message_delivered", "click_permitted"]
classifications = ["phish", "malware"]
threat_statuses = ["active"]
responses = ["quarantine"]

{extra}
"#,
            data = data.display().to_string(),
            tls = match &self.tls {
                Some((cert, key)) =>
                    format!("tls = {{ cert_file = {cert:?}, key_file = {key:?} }}"),
                None => String::new(),
            },
            concurrency = self.worker_concurrency,
            admin = hash(ADMIN_KEY),
            analyst = hash(ANALYST_KEY),
            reader = hash(READER_KEY),
            tap = self.tap,
            mailboxes = self.mailboxes,
        )
    }
}

/// An IMAP mailbox table for a private Dovecot, through `address` (Dovecot or a proxy).
pub fn imap_mailbox(dovecot: &pullback_mailbox::testing::Dovecot, address: SocketAddr) -> String {
    let imap = dovecot.imap_config();
    format!(
        r#"[[mailboxes]]
name = "dovecot"
type = "imap"
host = "{}"
port = {}
tls = "none"
master_user = "{}"
master_password = {{ value = "{}" }}
timeout_secs = 10
"#,
        address.ip(),
        address.port(),
        imap.master_user,
        imap.master_password
    )
}

/// A `pullback` built one command level ahead of this one, with the command only such a
/// build knows: the next release, for tests of rolling upgrades. `scripts/test.sh` builds it
/// (`scripts/build-rehearsal.sh`).
pub fn rehearsal_binary() -> PathBuf {
    let ours = Path::new(env!("CARGO_BIN_EXE_pullback"));
    let target = ours
        .parent()
        .and_then(Path::parent)
        .expect("the binary is in <target>/<profile>");
    let binary = target.join("rehearsal/pullback");
    assert!(
        binary.is_file(),
        "{} is missing: run scripts/build-rehearsal.sh (scripts/test.sh does) to build the next \
         release's stand-in",
        binary.display()
    );
    binary
}

/// A running `pullback server`; killed when dropped.
pub struct Server {
    pub child: Child,
    pub base: String,
    pub log: PathBuf,
}

impl Server {
    pub async fn start(config: &Path, listen: SocketAddr) -> Server {
        Server::start_with(config, format!("http://{listen}"), reqwest::Client::new()).await
    }

    /// Starts the server without waiting for it.
    pub fn spawn(config: &Path, base: String) -> Server {
        Server::spawn_binary(Path::new(env!("CARGO_BIN_EXE_pullback")), config, base)
    }

    /// Starts `binary` (a `pullback` of another build) as the server, without waiting.
    pub fn spawn_binary(binary: &Path, config: &Path, base: String) -> Server {
        let log = config.with_file_name(format!("server-{}.log", Utc::now().timestamp_micros()));
        let out = std::fs::File::create(&log).expect("log file");
        let child = Command::new(binary)
            .args(["server", "--config"])
            .arg(config)
            .env("PULLBACK_TEST_TAP_SECRET", TAP_SECRET)
            .env("PULLBACK_LOG", "info,openraft=warn")
            .stdout(Stdio::null())
            .stderr(out)
            .spawn()
            .expect("spawn pullback");
        Server { child, base, log }
    }

    /// Starts the server and waits for readiness at `base` through `client`.
    pub async fn start_with(config: &Path, base: String, client: reqwest::Client) -> Server {
        let binary = Path::new(env!("CARGO_BIN_EXE_pullback"));
        Server::start_binary(binary, config, base, client).await
    }

    /// As [`Server::start_with`], running `binary`.
    pub async fn start_binary(
        binary: &Path,
        config: &Path,
        base: String,
        client: reqwest::Client,
    ) -> Server {
        let server = Server::spawn_binary(binary, config, base);
        let ready = wait_for(Duration::from_secs(30), || {
            let url = format!("{}/health/ready", server.base);
            let client = client.clone();
            async move {
                client
                    .get(url)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success())
            }
        })
        .await;
        assert!(ready, "server did not become ready:\n{}", server.log_text());
        server
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Ends the process with SIGKILL: no shutdown code runs.
    pub fn kill_9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn api(&self, key: &str) -> Api {
        Api {
            base: self.base.clone(),
            key: key.into(),
            client: reqwest::Client::new(),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill_9();
    }
}

/// A client of the API with one key.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub key: String,
    pub client: reqwest::Client,
}

impl Api {
    pub async fn get(&self, path: &str) -> (u16, Value) {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .header("Authorization", &self.key)
            .send()
            .await
            .expect("GET");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// Like [`Api::get`], but `None` when the node cannot be reached.
    pub async fn try_get(&self, path: &str) -> Option<(u16, Value)> {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .header("Authorization", &self.key)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .ok()?;
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        Some((
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        ))
    }

    pub async fn send(&self, method: reqwest::Method, path: &str, body: Value) -> (u16, Value) {
        let response = self
            .client
            .request(method, format!("{}{path}", self.base))
            .header("Authorization", &self.key)
            .json(&body)
            .send()
            .await
            .expect("request");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// Waits until the source has fetched up to now and no job has work left.
    pub async fn wait_until_idle(&self, since: Timestamp) -> bool {
        wait_for(Duration::from_secs(60), || async {
            let (_, sources) = self.get("/api/v1/sources").await;
            let fetched = sources.as_array().into_iter().flatten().any(|s| {
                s["cursor"]
                    .as_str()
                    .and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok())
                    .is_some_and(|c| c.to_utc() >= since)
            });
            let (_, queued) = self.get("/api/v1/jobs?state=queued").await;
            fetched && queued["total"] == 0
        })
        .await
    }
}

/// Polls `check` every 100 ms until it holds or `limit` passes; returns whether it held.
pub async fn wait_for<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < limit {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// A TCP proxy to `upstream` that holds each new connection for `delay` before relaying it:
/// the latency of a distant mail server, on loopback.
pub async fn latency_proxy(upstream: SocketAddr, delay: Duration) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind proxy");
    let address = listener.local_addr().expect("proxy address");
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    address
}

/// A self-signed certificate for 127.0.0.1 and localhost, made with the openssl tool.
pub fn self_signed_certificate(dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("api.crt"), dir.join("api.key"));
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ])
        .args(["-days", "2", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
        // An end-entity certificate: TLS clients refuse a CA certificate used as a server's.
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .args(["-addext", "extendedKeyUsage=serverAuth"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null())
        .status()
        .expect("run openssl");
    assert!(status.success(), "openssl could not make a certificate");
    (cert, key)
}

/// A node running alone with one Dovecot backend, an idle TAP source, and `extra`
/// configuration (given the test's folder, for scripts it writes there).
pub struct SoloNode {
    pub server: Server,
    pub dir: tempfile::TempDir,
    _tap: Arc<TapSimulator>,
}

impl SoloNode {
    pub async fn start(
        dovecot: &pullback_mailbox::testing::Dovecot,
        workers: usize,
        extra: impl FnOnce(&Path) -> String,
    ) -> SoloNode {
        let (tap, tap_address) = start_tap().await;
        let dir = tempfile::tempdir().expect("a test folder");
        let listen: SocketAddr = format!("127.0.0.1:{}", free_port())
            .parse()
            .expect("an address");
        let imap: SocketAddr = format!("127.0.0.1:{}", dovecot.port())
            .parse()
            .expect("an address");
        let node = NodeConfig {
            dir: dir.path(),
            listen,
            tap: tap_address,
            mailboxes: imap_mailbox(dovecot, imap),
            worker_concurrency: workers,
            tls: None,
        };
        let text = node.text(1, &dir.path().join("node"), listen, &extra(dir.path()));
        let config = dir.path().join("pullback.toml");
        std::fs::write(&config, text).expect("write config");
        let server = Server::start(&config, listen).await;
        SoloNode {
            server,
            dir,
            _tap: tap,
        }
    }
}

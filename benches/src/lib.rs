//! Helpers shared by Pullback's benchmark binaries: sizes from the environment, latency
//! percentiles, alerts shaped like TAP events, and real nodes started from configuration
//! files in a temporary folder.

use anyhow::Context;
use pullback_domain::{AlertDraft, AlertKind, MessageId, Threat, ThreatKind, hostname_of};
use pullback_node::config::Config;
use pullback_node::{Backends, Node, Parts};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Reads a positive whole number from the environment variable `name`, or `default` when it
/// is unset.
pub fn size_from_env(name: &str, default: usize) -> anyhow::Result<usize> {
    let Ok(text) = std::env::var(name) else {
        return Ok(default);
    };
    match text.trim().parse::<usize>() {
        Ok(size) if size > 0 => Ok(size),
        _ => anyhow::bail!("{name} must be a positive whole number, not {text:?}"),
    }
}

/// How many of something happened per second.
pub fn per_second(count: usize, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64().max(f64::MIN_POSITIVE)
}

/// The latencies of individual operations, for percentiles.
#[derive(Debug, Default)]
pub struct Latencies {
    samples: Vec<Duration>,
}

impl Latencies {
    pub fn record(&mut self, latency: Duration) {
        self.samples.push(latency);
    }

    pub fn merge(&mut self, other: Latencies) {
        self.samples.extend(other.samples);
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// The latency that `percent` of the operations did not exceed (nearest rank); zero when
    /// nothing was recorded.
    pub fn percentile(&self, percent: f64) -> Duration {
        let mut sorted = self.samples.clone();
        sorted.sort_unstable();
        let rank = (percent / 100.0 * sorted.len() as f64).ceil() as usize;
        sorted
            .get(rank.clamp(1, sorted.len().max(1)) - 1)
            .copied()
            .unwrap_or_default()
    }

    /// `<what>_p50_ms=… <what>_p99_ms=…`, for a result line.
    pub fn summary(&self, what: &str) -> String {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        format!(
            "{what}_p50_ms={:.2} {what}_p99_ms={:.2}",
            ms(self.percentile(50.0)),
            ms(self.percentile(99.0))
        )
    }
}

/// What an alert is about: one delivered message and the URL threat it carries.
#[derive(Clone, Debug)]
pub struct AlertSpec {
    /// The source's id of the event; unique within a run.
    pub event_id: String,
    pub message_id: MessageId,
    pub subject: String,
    pub sender: String,
    pub recipients: Vec<String>,
    /// The feed's id of the threat; alerts sharing it join one incident.
    pub threat_id: String,
    pub threat_url: String,
}

impl AlertSpec {
    /// A delivered-message alert with one active phishing URL, carrying as `raw` an event in
    /// the shape of a TAP SIEM message event (about 1 KB with one recipient).
    pub fn draft(&self) -> AlertDraft {
        let now = chrono::Utc::now();
        let threat = Threat {
            id: Some(self.threat_id.clone()),
            kind: Some(ThreatKind::Url),
            value: Some(self.threat_url.clone()),
            dashboard_url: Some(self.dashboard_url()),
            hostname: hostname_of(&self.threat_url),
            sha256: None,
            classification: Some("phish".into()),
            status: Some("active".into()),
            campaign_id: None,
            time: Some(now),
        };
        AlertDraft {
            kind: AlertKind::MessageDelivered,
            dedup_key: format!("id:{}", self.event_id),
            time: now,
            message_id: Some(self.message_id.clone()),
            subject: Some(self.subject.clone()),
            sender: Some(self.sender.clone()),
            recipients: self.recipients.clone(),
            threats: vec![threat],
            notes: Vec::new(),
            link: None,
            analysis: None,
            raw: self.raw_event(now),
        }
    }

    fn dashboard_url(&self) -> String {
        format!("https://threatinsight.example/#/threat/{}", self.threat_id)
    }

    fn raw_event(&self, now: chrono::DateTime<chrono::Utc>) -> Value {
        let time = now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        json!({
            "GUID": format!("guid-{}", self.event_id),
            "id": self.event_id,
            "QID": format!("q{}", self.event_id),
            "messageID": self.message_id.bracketed(),
            "messageTime": time,
            "messageSize": 48213,
            "subject": self.subject,
            "sender": self.sender,
            "senderIP": "192.0.2.10",
            "fromAddress": [self.sender],
            "headerFrom": format!("\"Accounts Payable\" <{}>", self.sender),
            "headerReplyTo": null,
            "replyToAddress": [],
            "recipient": self.recipients,
            "toAddresses": self.recipients,
            "ccAddresses": [],
            "xmailer": null,
            "completelyRewritten": true,
            "impostorScore": 0.0,
            "malwareScore": 0,
            "phishScore": 93,
            "spamScore": 18,
            "cluster": "pullback-bench_hosted",
            "policyRoutes": ["default_inbound", "allow_relay"],
            "modulesRun": ["spam", "urldefense", "pdr", "sandbox"],
            "quarantineFolder": null,
            "quarantineRule": null,
            "messageParts": [{
                "contentType": "text/html",
                "disposition": "inline",
                "filename": "text.html",
                "md5": "5873c7d37608e0d49bcaa6f32b6c731f",
                "sha256": "3a34e2d3a6e4d4f0b6c1f6e0c2b9a6f77b0c4b3ad6d5c8f1e2a3b4c5d6e7f809",
                "oContentType": "text/html",
                "sandboxStatus": null
            }],
            "threatsInfoMap": [{
                "threatID": self.threat_id,
                "threat": self.threat_url,
                "threatType": "url",
                "classification": "phish",
                "threatStatus": "active",
                "threatTime": time,
                "threatUrl": self.dashboard_url(),
                "campaignID": null
            }]
        })
    }
}

/// Runs the async part of a benchmark on a multi-threaded runtime, handing it a temporary
/// folder for node data.
///
/// The folder is removed only after the runtime is gone: a node's database closes when the
/// last task holding it ends, which can be after `Node::shutdown` returned, and RocksDB writes
/// into its folder as it closes.
pub fn run_with_data_folder<F, Fut>(body: F) -> anyhow::Result<()>
where
    F: FnOnce(PathBuf) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let folder = tempfile::Builder::new()
        .prefix("pullback-bench-")
        .tempdir()
        .context("creating a temporary folder for node data")?;
    let runtime = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    let result = runtime.block_on(body(folder.path().to_owned()));
    drop(runtime);
    drop(folder);
    result
}

/// A node of its own, in a new folder under the benchmark's data folder.
pub struct BenchNode {
    pub node: Arc<Node>,
}

impl BenchNode {
    /// Writes a configuration file with node id 1 and `sections` after the `[node]` table into
    /// a new folder under `data_folder`, loads it as `pullback validate` would, builds the
    /// mailbox backends it names, and starts the node. The listen address is only recorded:
    /// nothing binds it.
    pub async fn start(data_folder: &Path, sections: &str) -> anyhow::Result<BenchNode> {
        static STARTED: AtomicUsize = AtomicUsize::new(0);
        let number = STARTED.fetch_add(1, Ordering::Relaxed);
        let dir = data_folder.join(format!("node-{number}"));
        std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let text = format!(
            "[node]\nid = 1\ndata_dir = {:?}\nlisten = \"127.0.0.1:0\"\n\n{sections}",
            dir.join("data").display().to_string()
        );
        let path = dir.join("pullback.toml");
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        let config = Config::load(&path)?;
        let backends = Backends::from_config(&config.mailboxes).map_err(anyhow::Error::msg)?;
        let parts = Parts {
            backends: std::sync::Arc::new(backends),
            sources: Vec::new(),
        };
        let node = Node::start(&config, parts).await?;
        Ok(BenchNode { node })
    }

    /// The index of the last entry in the node's Raft log.
    pub fn last_log_index(&self) -> u64 {
        self.node.status().last_log_index.unwrap_or(0)
    }

    /// Stops the node's leader work and Raft.
    pub async fn stop(self) {
        self.node.shutdown().await;
    }
}

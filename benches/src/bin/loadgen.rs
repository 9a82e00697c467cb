//! `loadgen`: committed writes per second against a cluster, etcd's or Pullback's, from many
//! concurrent clients, for the side-by-side benchmark in `benches/cluster_vs_etcd.sh`.
//!
//! Both targets get the same loop. Each client task writes one record with a unique key and
//! `--payload` bytes of user data, waits until the cluster answers that it was committed, and
//! writes the next. Tasks are spread round-robin over the endpoints. After a warm-up, only
//! writes answered as committed within the measured window count; their latencies give the
//! percentiles.

use anyhow::{Context, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use clap::{Args, Parser, Subcommand};
use pullback_benches::{Latencies, per_second};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// How long a client waits after a failed write before the next, so that a refused
/// connection or a cluster without quorum does not turn the loop into a busy spin.
const PAUSE_AFTER_ERROR: Duration = Duration::from_millis(20);

/// Extra time, past the measured window and one request timeout, after which the run is
/// abandoned.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

#[derive(Parser)]
#[command(
    name = "loadgen",
    about = "Committed writes per second against etcd or Pullback, from concurrent clients"
)]
struct Cli {
    #[command(subcommand)]
    target: TargetArgs,
}

#[derive(Subcommand)]
enum TargetArgs {
    /// Puts unique keys through etcd's v3 JSON gateway (`POST /v3/kv/put`).
    Etcd {
        #[command(flatten)]
        load: LoadArgs,
        /// A PEM certificate authority to trust, the only one, for `https://` endpoints.
        #[arg(long)]
        ca_file: Option<PathBuf>,
    },
    /// Posts one alert per request to Pullback's ingest endpoint (`POST /api/v1/alerts`).
    Pullback {
        #[command(flatten)]
        load: LoadArgs,
        /// The cluster CA in PEM, the only certificate authority trusted.
        #[arg(long)]
        ca_file: PathBuf,
        /// A file holding the API key, sent as `Authorization: Bearer <key>`.
        #[arg(long)]
        api_key_file: PathBuf,
        /// Where an alert carries its user data: `subject`, which makes every padding word a
        /// search term of its own (the figures in docs/performance.md); or `details`, a field
        /// kept with the alert but not searched, beside a short subject and a threat URL.
        #[arg(long, value_enum, default_value_t = PadInto::Subject)]
        pad_into: PadInto,
    },
}

/// Which field of a pushed alert holds its user data.
#[derive(Clone, Copy, Debug, PartialEq, clap::ValueEnum)]
enum PadInto {
    Details,
    Subject,
}

/// The shape of the load, the same for both targets.
#[derive(Args)]
struct LoadArgs {
    /// Base URLs, comma-separated; client tasks are spread over them round-robin.
    #[arg(long, value_delimiter = ',', required = true)]
    endpoints: Vec<String>,
    /// Client tasks, each with one write in flight at a time.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=4096))]
    concurrency: u64,
    /// Bytes of user data in each write.
    #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u64).range(1..=1 << 20))]
    payload: u64,
    /// Length of the measured window.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=3600))]
    duration_secs: u64,
    /// Writes before the measured window, not counted.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(0..=600))]
    warmup_secs: u64,
    /// Records per request: etcd puts them in one transaction, Pullback takes them as one
    /// push of several alerts (the way its pollers commit a window of events).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=1000))]
    batch: u64,
    /// Deadline of one request, connection included.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=300))]
    timeout_secs: u64,
    /// Also print the result as one JSON line, after the human one.
    #[arg(long)]
    json: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (load, target) = match Cli::parse().target {
        TargetArgs::Etcd { load, ca_file } => {
            let http = http_client(&load, ca_file.as_deref())?;
            let batch = load.batch;
            (load, Target::Etcd { http, batch })
        }
        TargetArgs::Pullback {
            load,
            ca_file,
            api_key_file,
            pad_into,
        } => {
            let http = http_client(&load, Some(&ca_file))?;
            let authorization = bearer(&read_api_key(&api_key_file)?)?;
            let batch = load.batch;
            (
                load,
                Target::Pullback {
                    http,
                    authorization,
                    batch,
                    pad_into,
                },
            )
        }
    };

    let report = run(&load, Arc::new(target)).await?;
    println!("{}", report.human_line());
    if load.json {
        println!("{}", report.json_line());
    }
    if report.committed == 0 {
        bail!(
            "no write was committed in the measured window; first error: {}",
            report.first_error.as_deref().unwrap_or("none")
        );
    }
    Ok(())
}

/// An HTTP/1.1 client that goes straight to the endpoints, never through a proxy, and trusts
/// only `ca_file` when one is given.
fn http_client(load: &LoadArgs, ca_file: Option<&Path>) -> anyhow::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(load.timeout_secs))
        .connect_timeout(Duration::from_secs(load.timeout_secs.min(5)))
        .pool_max_idle_per_host(load.concurrency as usize)
        .tcp_nodelay(true);
    if let Some(path) = ca_file {
        let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let ca = reqwest::Certificate::from_pem(&pem)
            .with_context(|| format!("{} is not a PEM certificate", path.display()))?;
        builder = builder
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca);
    }
    builder.build().context("building the HTTP client")
}

fn read_api_key(path: &Path) -> anyhow::Result<String> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let key = text.trim();
    if key.is_empty() {
        bail!("{} holds no API key", path.display());
    }
    Ok(key.to_owned())
}

/// The `Authorization` header for `key`, kept out of debug output.
fn bearer(key: &str) -> anyhow::Result<reqwest::header::HeaderValue> {
    let mut value = reqwest::header::HeaderValue::try_from(format!("Bearer {key}"))
        .context("the API key is not a valid header value")?;
    value.set_sensitive(true);
    Ok(value)
}

/// Where the writes go and how one is made.
enum Target {
    Etcd {
        http: reqwest::Client,
        batch: u64,
    },
    Pullback {
        http: reqwest::Client,
        authorization: reqwest::header::HeaderValue,
        batch: u64,
        pad_into: PadInto,
    },
}

/// What the cluster answered to a write it accepted.
enum Committed {
    /// A new record.
    New,
    /// Pullback already had an alert with this key; not counted as a committed write.
    Duplicate,
}

/// A write that failed, with a kind from a small set (for counting) and the details.
struct WriteError {
    kind: String,
    detail: String,
}

impl WriteError {
    fn new(kind: impl Into<String>, detail: impl Into<String>) -> WriteError {
        WriteError {
            kind: kind.into(),
            detail: detail.into(),
        }
    }

    fn from_reqwest(error: reqwest::Error) -> WriteError {
        let kind = if error.is_timeout() {
            "timeout"
        } else if error.is_connect() {
            "connect"
        } else if error.is_decode() || error.is_body() {
            "body"
        } else {
            "request"
        };
        WriteError::new(kind, format!("{error:#}"))
    }
}

impl Target {
    fn name(&self) -> &'static str {
        match self {
            Target::Etcd { .. } => "etcd",
            Target::Pullback { .. } => "pullback",
        }
    }

    /// The URL that writes go to, on the node at `endpoint`.
    fn write_url(&self, endpoint: &str) -> String {
        let base = endpoint.trim_end_matches('/');
        match self {
            Target::Etcd { .. } if self.batch() > 1 => format!("{base}/v3/kv/txn"),
            Target::Etcd { .. } => format!("{base}/v3/kv/put"),
            Target::Pullback { .. } => format!("{base}/api/v1/alerts"),
        }
    }

    /// The request body of the write of `key`: for etcd the key and a value of `payload`
    /// bytes, base64-encoded as the gateway wants them; for Pullback one alert whose JSON
    /// comes to `payload` bytes (or as little above as its fixed fields allow), filled up
    /// through the field `pad_into` names.
    fn body(&self, key: &str, payload: usize, padding: &mut Padding) -> Vec<u8> {
        let keys: Vec<String> = (0..self.batch()).map(|n| batch_key(key, n)).collect();
        match self {
            Target::Etcd { .. } if keys.len() > 1 => {
                let puts: Vec<Value> = keys
                    .iter()
                    .map(|key| {
                        let value = padding.text(payload);
                        json!({"requestPut": {"key": BASE64.encode(key), "value": BASE64.encode(value)}})
                    })
                    .collect();
                json!({ "success": puts }).to_string().into_bytes()
            }
            Target::Etcd { .. } => {
                let value = padding.text(payload);
                json!({"key": BASE64.encode(key), "value": BASE64.encode(value)})
                    .to_string()
                    .into_bytes()
            }
            Target::Pullback { pad_into, .. } => {
                let bare = alert_request(&keys[..1], "", *pad_into).to_string().len();
                let fillings: Vec<String> = keys
                    .iter()
                    .map(|_| padding.text(payload.saturating_sub(bare)))
                    .collect();
                let alerts: Vec<Value> = keys
                    .iter()
                    .zip(&fillings)
                    .map(|(key, filling)| alert(key, filling, *pad_into))
                    .collect();
                json!({ "source": "loadgen", "alerts": alerts })
                    .to_string()
                    .into_bytes()
            }
        }
    }

    fn batch(&self) -> u64 {
        match self {
            Target::Etcd { batch, .. } | Target::Pullback { batch, .. } => *batch,
        }
    }

    /// Sends one write and waits for the cluster to say it was committed.
    async fn write(&self, url: &str, body: Vec<u8>) -> Result<Committed, WriteError> {
        let request = match self {
            Target::Etcd { http, .. } => http.post(url),
            Target::Pullback {
                http,
                authorization,
                ..
            } => http
                .post(url)
                .header(reqwest::header::AUTHORIZATION, authorization.clone()),
        };
        let response = request
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(WriteError::from_reqwest)?;
        let status = response.status();
        let text = response.text().await.map_err(WriteError::from_reqwest)?;
        if status != reqwest::StatusCode::OK {
            let detail = format!("{status}: {}", text.chars().take(200).collect::<String>());
            return Err(WriteError::new(
                format!("status_{}", status.as_u16()),
                detail,
            ));
        }
        let answer: Value = serde_json::from_str(&text)
            .map_err(|error| WriteError::new("answer", format!("not JSON ({error}): {text}")))?;
        match self {
            Target::Etcd { .. } => read_etcd_answer(&answer),
            Target::Pullback { .. } => read_pullback_answer(&answer),
        }
    }
}

/// The ingest request carrying one alert for each of `keys`.
fn alert_request(keys: &[String], filling: &str, pad_into: PadInto) -> Value {
    let alerts: Vec<Value> = keys
        .iter()
        .map(|key| alert(key, filling, pad_into))
        .collect();
    json!({ "source": "loadgen", "alerts": alerts })
}

/// One alert whose user data, `filling`, is in the field `pad_into` names.
fn alert(key: &str, filling: &str, pad_into: PadInto) -> Value {
    match pad_into {
        PadInto::Subject => json!({
            "id": key,
            "message_id": format!("<{key}@loadgen>"),
            "recipients": ["user@example.com"],
            "sender": "attacker@example.net",
            "subject": filling,
        }),
        PadInto::Details => json!({
            "id": key,
            "message_id": format!("<{key}@loadgen>"),
            "recipients": ["user@example.com"],
            "sender": "attacker@example.net",
            "subject": "Your invoice is overdue",
            "classification": "phish",
            "threats": [{ "type": "url", "value": "https://invoices.example.net/pay" }],
            "details": filling,
        }),
    }
}

/// The key of record `n` of the request keyed by `key`.
fn batch_key(key: &str, n: u64) -> String {
    if n == 0 {
        key.to_owned()
    } else {
        format!("{key}.{n:03}")
    }
}

/// A put answered 200 carries the header of the revision it created.
fn read_etcd_answer(answer: &Value) -> Result<Committed, WriteError> {
    if answer.get("header").is_some() {
        Ok(Committed::New)
    } else {
        Err(WriteError::new("answer", format!("no header in {answer}")))
    }
}

/// An ingest answered 200 lists the new alert or counts it as a duplicate.
fn read_pullback_answer(answer: &Value) -> Result<Committed, WriteError> {
    let new = answer.get("alerts").and_then(Value::as_array).map(Vec::len);
    let duplicates = answer.get("duplicates").and_then(Value::as_u64);
    match (new, duplicates) {
        (Some(n), Some(0)) if n > 0 => Ok(Committed::New),
        (Some(0), Some(d)) if d > 0 => Ok(Committed::Duplicate),
        _ => Err(WriteError::new(
            "answer",
            format!("unexpected answer {answer}"),
        )),
    }
}

/// Printable padding that neither store can compress much: letters and digits from a
/// xorshift generator, seeded differently for each client task.
struct Padding {
    state: u64,
}

impl Padding {
    const ALPHABET: &'static [u8] =
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

    fn new(seed: u64) -> Padding {
        Padding { state: seed.max(1) }
    }

    fn text(&mut self, len: usize) -> String {
        let mut text = String::with_capacity(len);
        for _ in 0..len {
            self.state ^= self.state << 13;
            self.state ^= self.state >> 7;
            self.state ^= self.state << 17;
            let index = (self.state % Self::ALPHABET.len() as u64) as usize;
            text.push(char::from(Self::ALPHABET[index]));
        }
        text
    }
}

/// The measured part of the run: writes answered within it count.
#[derive(Clone, Copy)]
struct Window {
    start: Instant,
    end: Instant,
}

impl Window {
    fn contains(&self, at: Instant) -> bool {
        self.start <= at && at <= self.end
    }
}

/// What one client task saw within the measured window.
#[derive(Default)]
struct Tally {
    committed: u64,
    duplicates: u64,
    latencies: Latencies,
    errors: BTreeMap<String, u64>,
    first_error: Option<String>,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.committed += other.committed;
        self.duplicates += other.duplicates;
        self.latencies.merge(other.latencies);
        for (kind, count) in other.errors {
            *self.errors.entry(kind).or_default() += count;
        }
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
}

/// One client task: writes until the window ends, one at a time, each with a new key.
async fn client_task(
    target: Arc<Target>,
    url: String,
    run_id: String,
    task: usize,
    payload: usize,
    window: Window,
) -> Tally {
    let mut tally = Tally::default();
    let mut padding = Padding::new(seed(&run_id, task));
    for sequence in 0u64.. {
        if Instant::now() >= window.end {
            break;
        }
        let key = record_key(&run_id, task, sequence);
        let body = target.body(&key, payload, &mut padding);
        let started = Instant::now();
        let outcome = target.write(&url, body).await;
        let finished = Instant::now();
        let counted = window.contains(finished);
        match outcome {
            Ok(Committed::New) if counted => {
                // Every record of the request committed with it.
                tally.committed += target.batch();
                tally.latencies.record(finished - started);
            }
            Ok(Committed::Duplicate) if counted => tally.duplicates += 1,
            Ok(_) => {}
            Err(error) => {
                if counted {
                    *tally.errors.entry(error.kind).or_default() += 1;
                }
                if tally.first_error.is_none() {
                    tally.first_error = Some(format!("{url}: {}", error.detail));
                }
                tokio::time::sleep(PAUSE_AFTER_ERROR).await;
            }
        }
    }
    tally
}

/// A key no other write of this run or another run has: the run, the task and a sequence
/// number, each of fixed width so that every request body has the same length.
fn record_key(run_id: &str, task: usize, sequence: u64) -> String {
    format!("loadgen-{run_id}-{task:04}-{sequence:010}")
}

fn seed(run_id: &str, task: usize) -> u64 {
    let run = u64::from_str_radix(run_id, 16).unwrap_or(0x9e37_79b9_7f4a_7c15);
    run ^ (task as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// Twelve hex digits from the clock and the process id, naming this run in every key.
fn new_run_id() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|since| since.as_nanos() as u64)
        .unwrap_or_default();
    let mixed = nanos ^ u64::from(std::process::id()).rotate_left(40);
    format!("{:012x}", mixed & 0xffff_ffff_ffff)
}

/// Runs the client tasks through the warm-up and the measured window and adds up what they
/// saw.
async fn run(load: &LoadArgs, target: Arc<Target>) -> anyhow::Result<Report> {
    let endpoints: Vec<&str> = load.endpoints.iter().map(|e| e.trim()).collect();
    if endpoints.iter().any(|endpoint| endpoint.is_empty()) {
        bail!("--endpoints has an empty entry");
    }
    let run_id = new_run_id();
    let payload = load.payload as usize;
    let request_body_bytes = target
        .body(&record_key(&run_id, 0, 0), payload, &mut Padding::new(1))
        .len();
    eprintln!(
        "loadgen {}: run {run_id}, {} clients over {} endpoints, {payload}-byte payloads \
         ({request_body_bytes}-byte request bodies), {} s warm-up, {} s measured",
        target.name(),
        load.concurrency,
        endpoints.len(),
        load.warmup_secs,
        load.duration_secs,
    );

    let start = Instant::now() + Duration::from_secs(load.warmup_secs);
    let window = Window {
        start,
        end: start + Duration::from_secs(load.duration_secs),
    };
    let mut tasks = JoinSet::new();
    for task in 0..load.concurrency as usize {
        let url = target.write_url(endpoints[task % endpoints.len()]);
        let target = Arc::clone(&target);
        tasks.spawn(client_task(
            target,
            url,
            run_id.clone(),
            task,
            payload,
            window,
        ));
    }

    let deadline = window.end + Duration::from_secs(load.timeout_secs) + SHUTDOWN_GRACE;
    let mut tally = Tally::default();
    loop {
        match tokio::time::timeout_at(deadline, tasks.join_next()).await {
            Ok(Some(joined)) => tally.merge(joined.context("a client task failed")?),
            Ok(None) => break,
            Err(_) => {
                tasks.abort_all();
                bail!(
                    "{} client tasks were still writing at the deadline",
                    tasks.len()
                );
            }
        }
    }

    Ok(Report {
        target: target.name(),
        run_id,
        endpoints: endpoints.len(),
        concurrency: load.concurrency,
        payload: load.payload,
        request_body_bytes,
        window: window.end - window.start,
        committed: tally.committed,
        duplicates: tally.duplicates,
        latencies: tally.latencies,
        errors: tally.errors,
        first_error: tally.first_error,
    })
}

/// The result of a run.
struct Report {
    target: &'static str,
    run_id: String,
    endpoints: usize,
    concurrency: u64,
    payload: u64,
    request_body_bytes: usize,
    window: Duration,
    committed: u64,
    duplicates: u64,
    latencies: Latencies,
    errors: BTreeMap<String, u64>,
    first_error: Option<String>,
}

impl Report {
    fn writes_per_sec(&self) -> f64 {
        per_second(self.committed as usize, self.window)
    }

    fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    fn latency_ms(&self, percent: f64) -> f64 {
        self.latencies.percentile(percent).as_secs_f64() * 1000.0
    }

    fn human_line(&self) -> String {
        let mut line = format!(
            "{}: writes_per_sec={:.1} committed={} duplicates={} errors={} p50_ms={:.2} \
             p99_ms={:.2} max_ms={:.2} concurrency={} payload={} request_body_bytes={} \
             endpoints={} window_s={}",
            self.target,
            self.writes_per_sec(),
            self.committed,
            self.duplicates,
            self.error_count(),
            self.latency_ms(50.0),
            self.latency_ms(99.0),
            self.latency_ms(100.0),
            self.concurrency,
            self.payload,
            self.request_body_bytes,
            self.endpoints,
            self.window.as_secs(),
        );
        for (kind, count) in &self.errors {
            line.push_str(&format!(" error_{kind}={count}"));
        }
        line
    }

    fn json_line(&self) -> String {
        let round = |value: f64| (value * 100.0).round() / 100.0;
        json!({
            "target": self.target,
            "run_id": self.run_id,
            "writes_per_sec": round(self.writes_per_sec()),
            "committed": self.committed,
            "duplicates": self.duplicates,
            "errors": self.error_count(),
            "errors_by_kind": self.errors,
            "first_error": self.first_error,
            "p50_ms": round(self.latency_ms(50.0)),
            "p99_ms": round(self.latency_ms(99.0)),
            "max_ms": round(self.latency_ms(100.0)),
            "concurrency": self.concurrency,
            "payload": self.payload,
            "request_body_bytes": self.request_body_bytes,
            "endpoints": self.endpoints,
            "window_secs": self.window.as_secs_f64(),
        })
        .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pullback(pad_into: PadInto) -> Target {
        Target::Pullback {
            http: reqwest::Client::new(),
            authorization: bearer("k").unwrap(),
            batch: 1,
            pad_into,
        }
    }

    #[test]
    fn pullback_bodies_come_to_the_payload() {
        let key = record_key("0123456789ab", 7, 42);
        let shapes = [
            (PadInto::Details, "details", [512, 4096]),
            (PadInto::Subject, "subject", [300, 4096]),
        ];
        for (pad_into, field, payloads) in shapes {
            for payload in payloads {
                let body = pullback(pad_into).body(&key, payload, &mut Padding::new(3));
                assert_eq!(body.len(), payload, "{field}");
                let request: Value = serde_json::from_slice(&body).unwrap();
                let alert = &request["alerts"][0];
                assert_eq!(alert["id"], key.as_str());
                assert!(
                    alert[field].as_str().unwrap().len() > payload / 4,
                    "{field}"
                );
            }
        }
    }

    #[test]
    fn etcd_values_carry_the_payload() {
        let etcd = Target::Etcd {
            http: reqwest::Client::new(),
            batch: 1,
        };
        let body = etcd.body("k", 512, &mut Padding::new(3));
        let request: Value = serde_json::from_slice(&body).unwrap();
        let value = BASE64.decode(request["value"].as_str().unwrap()).unwrap();
        assert_eq!(value.len(), 512);
        assert_eq!(
            BASE64.decode(request["key"].as_str().unwrap()).unwrap(),
            b"k"
        );
    }

    #[test]
    fn keys_have_one_width() {
        let first = record_key("0123456789ab", 0, 0);
        let later = record_key("0123456789ab", 4095, 9_999_999_999);
        assert_eq!(first.len(), later.len());
    }

    #[test]
    fn pullback_answers() {
        let new = json!({"alerts": ["a1"], "duplicates": 0});
        let duplicate = json!({"alerts": [], "duplicates": 1});
        assert!(matches!(read_pullback_answer(&new), Ok(Committed::New)));
        assert!(matches!(
            read_pullback_answer(&duplicate),
            Ok(Committed::Duplicate)
        ));
        assert!(read_pullback_answer(&json!({"error": "x"})).is_err());
    }
}

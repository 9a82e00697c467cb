//! `pullback demo`: the whole job on one node with no outside service.
//!
//! It seeds Maildir mailboxes with sample messages, serves TAP events about some of them from
//! the built-in TAP-compatible server, and runs a real node against both: poll, match,
//! incident, quarantine. The events take the shapes real TAP payloads take, quirks included.

use anyhow::Context;
use chrono::{TimeDelta, Utc};
use pullback_api::AppState;
use pullback_domain::{AlertKind, Timestamp};
use pullback_mailbox::headers::{MessageHeaders, decode_encoded_words};
use pullback_mailbox::maildir::MaildirBackend;
use pullback_node::Node;
use pullback_node::config::Config;
use pullback_store::Reader;
use pullback_tap::simulator::{SimulatorConfig, TapSimulator};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

#[derive(clap::Args)]
pub struct DemoOptions {
    /// Run the job to the end, print a summary line, and exit.
    #[arg(long)]
    once: bool,
    /// Seed the mailboxes from the `.eml` files under this folder instead of the built-in
    /// samples; files under a folder named `phish` get TAP alerts.
    #[arg(long)]
    mail: Option<PathBuf>,
    /// Keep the node's data here instead of in a fresh temporary folder.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Where the API listens.
    #[arg(long, default_value = "127.0.0.1:8480")]
    listen: SocketAddr,
}

const DOMAIN: &str = "demo.pullback.test";

/// A sample message and what the demo does with it.
struct Sample {
    name: String,
    bytes: Vec<u8>,
    recipients: Vec<String>,
    /// The classification of the TAP alert about it; `None` for mail nobody reports.
    alert: Option<&'static str>,
}

fn built_in_samples() -> Vec<Sample> {
    let sample = |name: &str, bytes: &[u8], to: &[&str], alert| Sample {
        name: name.into(),
        bytes: bytes.to_vec(),
        recipients: to.iter().map(|u| format!("{u}@{DOMAIN}")).collect(),
        alert,
    };
    vec![
        sample(
            "invoice-phish",
            include_bytes!("../samples/invoice-phish.eml"),
            &["alice", "bob"],
            Some("phish"),
        ),
        sample(
            "shared-drive-malware",
            include_bytes!("../samples/shared-drive-malware.eml"),
            &["carol"],
            Some("malware"),
        ),
        sample(
            "newsletter",
            include_bytes!("../samples/newsletter.eml"),
            &["alice", "bob", "carol"],
            None,
        ),
        sample(
            "reused-id-phish",
            include_bytes!("../samples/reused-id-phish.eml"),
            &["dave"],
            Some("phish"),
        ),
        sample(
            "reused-id-legit",
            include_bytes!("../samples/reused-id-legit.eml"),
            &["dave"],
            None,
        ),
    ]
}

/// Every `.eml` under `dir`, in path order, spread over five demo mailboxes.
fn samples_from(dir: &Path) -> anyhow::Result<Vec<Sample>> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(folder) = pending.pop() {
        let entries = std::fs::read_dir(&folder)
            .with_context(|| format!("cannot read mail folder {}", folder.display()))?;
        for entry in entries {
            let path = entry?.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "eml") {
                files.push(path);
            }
        }
    }
    files.sort();
    if files.is_empty() {
        anyhow::bail!("no .eml files under {}", dir.display());
    }
    let users = ["alice", "bob", "carol", "dave", "erin"];
    let mut samples = Vec::new();
    for (i, path) in files.iter().enumerate() {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let mut recipients = vec![format!("{}@{DOMAIN}", users[i % users.len()])];
        if i.is_multiple_of(3) {
            recipients.push(format!("{}@{DOMAIN}", users[(i + 2) % users.len()]));
        }
        let phish = path.components().any(|c| c.as_os_str() == "phish");
        samples.push(Sample {
            name: path.strip_prefix(dir).unwrap_or(path).display().to_string(),
            bytes,
            recipients,
            alert: phish.then_some("phish"),
        });
    }
    Ok(samples)
}

pub async fn run(options: DemoOptions) -> anyhow::Result<()> {
    let temp;
    let dir = match &options.data_dir {
        Some(dir) => dir.clone(),
        None => {
            temp = tempfile::Builder::new()
                .prefix("pullback-demo-")
                .tempdir()?;
            temp.path().to_path_buf()
        }
    };
    let samples = match &options.mail {
        Some(folder) => samples_from(folder)?,
        None => built_in_samples(),
    };

    // Mailboxes.
    let mail_root = dir.join("mail");
    let maildir = MaildirBackend::new(mail_root.clone());
    let mut delivered = 0;
    for sample in &samples {
        for recipient in &sample.recipients {
            maildir
                .deliver(recipient, "INBOX", &sample.bytes)
                .with_context(|| format!("cannot seed {} for {recipient}", sample.name))?;
            delivered += 1;
        }
    }

    // The TAP-compatible server with events about the reported samples.
    let principal = "demo-principal".to_owned();
    let secret = crate::server::new_api_key()?;
    let tap = Arc::new(TapSimulator::new(SimulatorConfig {
        principal: principal.clone(),
        secret: secret.clone(),
        quota_per_day: 1800,
    }));
    let now = Utc::now();
    let events = seed_events(&tap, &samples, now);
    let tap_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let tap_address = tap_listener.local_addr()?;
    tokio::spawn(pullback_tap::simulator::serve(tap_listener, tap.clone()));

    // The node, configured through a real configuration file.
    let api_key = crate::server::new_api_key()?;
    // A first administrator for the web UI, with a password made for this run.
    let password = crate::server::new_api_key()?
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(20)
        .collect::<String>();
    let password_hash = pullback_api::hash_password(&password).map_err(anyhow::Error::msg)?;
    let credentials = Credentials {
        principal: &principal,
        secret: &secret,
        api_key: &api_key,
        password_hash: &password_hash,
    };
    let config_path = write_config(&dir, &options, &credentials, tap_address)?;
    let config = Config::load(&config_path)?;
    let (parts, keys) = crate::server::parts(&config)?;
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} (try --listen 127.0.0.1:0)",
                options.listen
            )
        })?;
    let address = listener.local_addr()?;
    let node = Node::start(&config, parts).await?;
    let app = pullback_api::router(AppState::new(node.clone(), keys));
    let api = tokio::spawn(async move { axum::serve(listener, app).await });

    eprintln!(
        "demo: {} message(s) delivered to {} mailbox(es) under {}; {events} TAP event(s) served at http://{tap_address}",
        samples.len(),
        delivered,
        mail_root.display()
    );
    if options.once {
        let summary = wait_until_done(node.reader(), now).await;
        node.shutdown().await;
        api.abort();
        let summary = summary?;
        println!(
            "demo: {} alerts, {} incidents, {} quarantined, {} failed",
            summary.alerts, summary.incidents, summary.quarantined, summary.failed
        );
        eprintln!(
            "demo: {} not found, {} already in destination, {} event(s) rejected by the parser",
            summary.not_found, summary.already, summary.rejected
        );
        return Ok(());
    }

    println!("Pullback demo is running.");
    println!("  web UI:   http://{address}/  (user admin, password {password})");
    println!("  API:      http://{address}/api/v1");
    println!("  API key:  {api_key}");
    println!("  config:   {}", config_path.display());
    println!("  try:      curl -s -H 'Authorization: {api_key}' http://{address}/api/incidents");
    println!("Press Ctrl-C to stop.");
    tokio::signal::ctrl_c().await?;
    node.shutdown().await;
    api.abort();
    Ok(())
}

/// Adds TAP events about the samples that have alerts; returns how many.
fn seed_events(tap: &TapSimulator, samples: &[Sample], now: Timestamp) -> usize {
    let mut count = 0;
    let mut add = |kind, event: Value, minutes_ago: i64| {
        let at = now - TimeDelta::minutes(minutes_ago);
        tap.add_event(kind, event, at, at);
        count += 1;
    };
    for (i, sample) in samples.iter().enumerate() {
        let Some(classification) = sample.alert else {
            continue;
        };
        let headers = MessageHeaders::parse(&sample.bytes);
        let event = delivered_event(i, &headers, &sample.recipients, classification, now);
        add(
            AlertKind::MessageDelivered,
            event.clone(),
            30 + i as i64 % 60,
        );
        if i == 0 {
            // A click on the same message: it joins the incident and plans no second pull.
            add(
                AlertKind::ClickPermitted,
                click_event(&event, &sample.recipients[0]),
                20,
            );
            // A message blocked before delivery: an alert with nothing to pull.
            let mut blocked = event.clone();
            blocked["id"] = json!(format!("demo-blocked-{i}"));
            add(AlertKind::MessageBlocked, blocked, 25);
            // An event the parser cannot read; its neighbours must still be taken.
            add(AlertKind::MessageDelivered, json!("not an event"), 24);
        }
    }
    count
}

/// A delivered-message event in the shape the TAP SIEM API returns, with the spelling
/// variants real payloads show.
fn delivered_event(
    i: usize,
    headers: &MessageHeaders,
    recipients: &[String],
    classification: &str,
    now: Timestamp,
) -> Value {
    let time = (now - TimeDelta::minutes(35)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let threat_host = format!("threat-{i}.bad.example");
    let message_id = headers
        .message_id
        .as_ref()
        .map(|m| m.bracketed())
        .unwrap_or_default();
    let subject = headers.subject.as_deref().map(decode_encoded_words);
    let (id_key, url_key, class) = if i.is_multiple_of(2) {
        ("threatID", "threatUrl", classification.to_owned())
    } else {
        ("threatId", "threatURL", classification.to_uppercase())
    };
    json!({
        "GUID": format!("demo-guid-{i}"),
        "id": format!("demo-event-{i}"),
        "QID": format!("q{i}"),
        "messageID": message_id,
        "messageTime": time,
        "subject": subject,
        "sender": headers.return_path.clone().or(headers.from.clone()).unwrap_or_default(),
        "senderIP": "192.0.2.10",
        "fromAddress": [headers.from.clone().unwrap_or_default()],
        "headerFrom": headers.from,
        "recipient": recipients,
        "toAddresses": recipients,
        "completelyRewritten": if i.is_multiple_of(2) { json!(true) } else { json!("true") },
        "impostorScore": 0.0,
        "phishScore": 91,
        "spamScore": 12,
        "malwareScore": 0,
        "quarantineFolder": null,
        "threatsInfoMap": [{
            id_key: format!("demo-threat-{i}"),
            "threat": format!("https://{threat_host}/login"),
            "threatType": if i.is_multiple_of(2) { "url" } else { "URL" },
            "classification": class,
            "threatStatus": "active",
            "threatTime": time,
            url_key: format!("https://threatinsight.example/#/threat/{i}"),
            "campaignID": null
        }]
    })
}

fn click_event(delivered: &Value, recipient: &str) -> Value {
    let threat = &delivered["threatsInfoMap"][0];
    json!({
        "id": "demo-click-0",
        "GUID": delivered["GUID"],
        "messageID": delivered["messageID"],
        "recipient": recipient,
        "sender": delivered["sender"],
        "senderIP": "192.0.2.10",
        "clickIP": "198.51.100.7",
        "clickTime": delivered["messageTime"],
        "url": threat["threat"],
        "classification": "phish",
        "threatID": "demo-threat-0",
        "threatURL": "https://threatinsight.example/#/threat/0",
        "threatStatus": "active",
        "threatTime": delivered["messageTime"],
        "userAgent": "Mozilla/5.0"
    })
}

/// What the demo's configuration file grants access with.
struct Credentials<'a> {
    principal: &'a str,
    secret: &'a str,
    api_key: &'a str,
    password_hash: &'a str,
}

fn write_config(
    dir: &Path,
    options: &DemoOptions,
    credentials: &Credentials<'_>,
    tap: SocketAddr,
) -> anyhow::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let Credentials {
        principal,
        secret,
        api_key,
        password_hash,
    } = credentials;
    let secret_path = dir.join("tap.secret");
    std::fs::write(&secret_path, secret)?;
    std::fs::set_permissions(&secret_path, std::fs::Permissions::from_mode(0o600))?;
    let key_hash = hex::encode(pullback_api::hash_key(api_key));
    let config = format!(
        r#"# Written by `pullback demo`.
[node]
id = 1
data_dir = {data:?}
listen = "{listen}"

[[api_keys]]
name = "demo"
role = "admin"
sha256 = "{key_hash}"

[[users]]
name = "admin"
role = "admin"
password_hash = "{password_hash}"

[[sources]]
type = "tap"
name = "tap"
base_url = "http://{tap}"
principal = "{principal}"
secret = {{ file = {secret_path:?} }}
interval_secs = 2

[[mailboxes]]
name = "demo-maildir"
type = "maildir"
root = {mail:?}

[[match_conditions]]
name = "quarantine-tap-phish-and-malware"
sources = ["tap"]
kinds = ["message_delivered", "click_permitted", "message_blocked"]
classifications = ["phish", "malware"]
threat_statuses = ["active"]
responses = ["quarantine"]
"#,
        data = dir.join("node").display().to_string(),
        listen = options.listen,
        secret_path = secret_path.display().to_string(),
        mail = dir.join("mail").display().to_string(),
    );
    let path = dir.join("pullback.toml");
    std::fs::write(&path, config)?;
    Ok(path)
}

#[derive(Debug, Default)]
struct Summary {
    alerts: usize,
    incidents: usize,
    quarantined: usize,
    failed: usize,
    not_found: usize,
    already: usize,
    rejected: u64,
}

/// Waits until the source has fetched up to the demo's start and no job is left to do.
async fn wait_until_done(reader: &Reader, started: Timestamp) -> anyhow::Result<Summary> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let checkpoint = reader.checkpoint("tap")?.unwrap_or_default();
        let fetched = checkpoint.cursor.is_some_and(|c| c >= started);
        if fetched && reader.queued_jobs()?.is_empty() {
            return summarise(reader, checkpoint.rejected);
        }
        if tokio::time::Instant::now() > deadline {
            anyhow::bail!(
                "the demo did not finish in 120 s (last source error: {})",
                checkpoint.last_error.unwrap_or_else(|| "none".into())
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn summarise(reader: &Reader, rejected: u64) -> anyhow::Result<Summary> {
    use pullback_domain::RecipientStatus as S;
    let mut summary = Summary {
        alerts: reader.alerts()?.len(),
        incidents: reader.incidents(&Default::default())?.len(),
        rejected,
        ..Summary::default()
    };
    for job in reader.jobs()? {
        for result in &job.results {
            match result.status {
                S::Quarantined => summary.quarantined += 1,
                S::Failed | S::NotFound => summary.failed += 1,
                S::AlreadyInDestination => summary.already += 1,
                _ => {}
            }
            if result.status == S::NotFound {
                summary.not_found += 1;
            }
        }
    }
    Ok(summary)
}

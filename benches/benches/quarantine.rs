//! Quarantines per second against a private Dovecot on the loopback interface.
//!
//! A real phishing message from the shared data is delivered to the inbox of every user.
//! First the IMAP backend alone quarantines it for every user, in sequence and then with
//! several mailboxes at once, restoring after each pass. Then a real node configured with
//! that Dovecot as its mailbox backend ingests one alert naming every user, and the run is
//! timed until every recipient of the job it creates has a final result.
//!
//! Sizes come from the environment:
//! - `PULLBACK_BENCH_USERS`: mailboxes, each with one copy of the message (50).
//! - `PULLBACK_BENCH_CONCURRENCY`: mailboxes worked on at once, by the backend and by the
//!   node's workers (8).
//! - `PULLBACK_BENCH_MESSAGE`: the message, relative to `mail/` in the shared data folder
//!   named by `PULLBACK_SHARED_DATA` (`phish/sample-14.eml`).

use anyhow::Context;
use pullback_benches::{
    AlertSpec, BenchNode, Latencies, per_second, run_with_data_folder, size_from_env,
};
use pullback_domain::{Command, MessageFingerprint, QuarantineJob, RecipientStatus};
use pullback_mailbox::headers::{MessageHeaders, decode_encoded_words};
use pullback_mailbox::testing::{
    Dovecot, DovecotOptions, MASTER_PASSWORD, MASTER_USER, shared_mail,
};
use pullback_mailbox::{ImapBackend, MailboxBackend, MessageTarget, RecipientOutcome};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The longest wait for the node to finish its job.
const JOB_DEADLINE: Duration = Duration::from_secs(120);

/// How often the job is read while waiting for it.
const JOB_POLL: Duration = Duration::from_millis(2);

/// The domain of the benchmark's mailboxes.
const DOMAIN: &str = "bench.pullback.test";

struct Sizes {
    users: usize,
    concurrency: usize,
    message: String,
}

impl Sizes {
    fn from_env() -> anyhow::Result<Sizes> {
        Ok(Sizes {
            users: size_from_env("PULLBACK_BENCH_USERS", 50)?,
            concurrency: size_from_env("PULLBACK_BENCH_CONCURRENCY", 8)?,
            message: std::env::var("PULLBACK_BENCH_MESSAGE")
                .unwrap_or_else(|_| "phish/sample-14.eml".into()),
        })
    }
}

/// The message under test and what identifies it, as an alert about it would.
struct Message {
    bytes: Vec<u8>,
    headers: MessageHeaders,
    /// The decoded subject, which the node uses as the fingerprint of the job.
    subject: Option<String>,
}

impl Message {
    fn target(&self) -> anyhow::Result<MessageTarget> {
        let message_id = self
            .headers
            .message_id
            .clone()
            .context("the message has no Message-ID")?;
        let fingerprint = MessageFingerprint {
            subject: self.subject.clone(),
            ..MessageFingerprint::default()
        };
        Ok(MessageTarget::new(message_id, fingerprint))
    }
}

/// Which way a backend pass moves the message.
#[derive(Clone, Copy)]
enum Action {
    Quarantine,
    Restore,
}

impl Action {
    fn name(self) -> &'static str {
        match self {
            Action::Quarantine => "quarantine",
            Action::Restore => "restore",
        }
    }

    fn done(self) -> RecipientStatus {
        match self {
            Action::Quarantine => RecipientStatus::Quarantined,
            Action::Restore => RecipientStatus::Restored,
        }
    }
}

fn main() -> anyhow::Result<()> {
    let sizes = Sizes::from_env()?;
    let bytes = shared_mail(&sizes.message);
    let headers = MessageHeaders::parse(&bytes);
    let subject = headers.subject.as_deref().map(decode_encoded_words);
    let message = Message {
        bytes,
        headers,
        subject,
    };
    let users: Vec<String> = (1..=sizes.users)
        .map(|i| format!("user{i}@{DOMAIN}"))
        .collect();

    let started = Instant::now();
    let names: Vec<&str> = users.iter().map(String::as_str).collect();
    let dovecot = Dovecot::try_start(&names, &DovecotOptions::default())?;
    for user in &users {
        dovecot.try_deliver(user, "INBOX", &message.bytes)?;
    }
    println!(
        "quarantine: Dovecot on 127.0.0.1:{} with {} users; {} ({} bytes) delivered to each \
         in {:.1} s; mail under {}",
        dovecot.port(),
        users.len(),
        sizes.message,
        message.bytes.len(),
        started.elapsed().as_secs_f64(),
        dovecot.mail_root().display()
    );

    run_with_data_folder(|data_folder| measure(data_folder, &dovecot, &users, &message, &sizes))
}

async fn measure(
    data_folder: PathBuf,
    dovecot: &Dovecot,
    users: &[String],
    message: &Message,
    sizes: &Sizes,
) -> anyhow::Result<()> {
    let backend = Arc::new(ImapBackend::new(dovecot.imap_config())?);
    let target = message.target()?;
    let users: Arc<[String]> = users.into();
    for concurrency in [1, sizes.concurrency] {
        for action in [Action::Quarantine, Action::Restore] {
            let pass = Pass {
                backend: backend.clone(),
                users: users.clone(),
                target: target.clone(),
                action,
                concurrency,
            };
            pass.run().await?;
        }
    }
    through_node(&data_folder, dovecot, &users, message, sizes).await
}

/// One action on every user's mailbox by the backend alone.
struct Pass {
    backend: Arc<ImapBackend>,
    users: Arc<[String]>,
    target: MessageTarget,
    action: Action,
    concurrency: usize,
}

impl Pass {
    /// Runs the pass with `concurrency` tasks taking the next mailbox until none is left,
    /// checks that every mailbox ended as expected, and prints the result.
    async fn run(self) -> anyhow::Result<()> {
        let next = Arc::new(AtomicUsize::new(0));
        let this = Arc::new(self);
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..this.concurrency {
            let (this, next) = (this.clone(), next.clone());
            tasks.spawn(async move { this.take_mailboxes(&next).await });
        }
        let mut outcomes = Vec::new();
        let mut latencies = Latencies::default();
        while let Some(joined) = tasks.join_next().await {
            for (outcome, latency) in joined.context("a backend task panicked")? {
                outcomes.push(outcome);
                latencies.record(latency);
            }
        }
        let elapsed = started.elapsed();

        check_outcomes(&outcomes, this.action.done())?;
        println!(
            "quarantine path=backend action={} concurrency={} mailboxes={} secs={:.2} \
             per_sec={:.1} {}",
            this.action.name(),
            this.concurrency,
            outcomes.len(),
            elapsed.as_secs_f64(),
            per_second(outcomes.len(), elapsed),
            latencies.summary("mailbox")
        );
        Ok(())
    }

    async fn take_mailboxes(&self, next: &AtomicUsize) -> Vec<(RecipientOutcome, Duration)> {
        let mut done = Vec::new();
        while let Some(user) = self.users.get(next.fetch_add(1, Ordering::Relaxed)) {
            let started = Instant::now();
            let outcome = match self.action {
                Action::Quarantine => self.backend.quarantine(user, &self.target).await,
                Action::Restore => self.backend.restore(user, &self.target).await,
            };
            done.push((outcome, started.elapsed()));
        }
        done
    }
}

/// Fails with the first unexpected outcome and a count of every status seen.
fn check_outcomes(outcomes: &[RecipientOutcome], expected: RecipientStatus) -> anyhow::Result<()> {
    let Some(odd) = outcomes.iter().find(|o| o.status != expected) else {
        return Ok(());
    };
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for outcome in outcomes {
        *counts.entry(outcome.status.as_str()).or_default() += 1;
    }
    anyhow::bail!(
        "expected every mailbox to end {}, got {counts:?}; {}: {}",
        expected.as_str(),
        odd.recipient,
        odd.details
    )
}

/// Ingests one alert about the message naming every user into a node whose mailbox backend
/// is the Dovecot, and times it until every recipient of the job is final.
async fn through_node(
    data_folder: &Path,
    dovecot: &Dovecot,
    users: &[String],
    message: &Message,
    sizes: &Sizes,
) -> anyhow::Result<()> {
    let config = node_config(dovecot.port(), sizes.concurrency);
    let bench = BenchNode::start(data_folder, &config).await?;
    let command = Command::IngestAlerts {
        source: "bench".into(),
        at: chrono::Utc::now(),
        drafts: vec![alert(users, message)?.draft()],
        rejected: Vec::new(),
        checkpoint: None,
    };

    let started = Instant::now();
    let response = bench.node.propose(command).await?;
    let committed = started.elapsed();
    if let Some(reason) = response.refused {
        anyhow::bail!("the node refused the alert: {reason}");
    }
    let job_id = *response
        .jobs
        .first()
        .context("the alert created no quarantine job; did the condition match?")?;
    let job = wait_until_done(&bench, job_id).await?;
    let elapsed = started.elapsed();
    bench.stop().await;

    let outcomes: Vec<RecipientOutcome> = job
        .results
        .iter()
        .map(|r| RecipientOutcome {
            recipient: r.recipient.clone(),
            status: r.status,
            details: r.details.clone(),
            is_read: r.is_read,
        })
        .collect();
    check_outcomes(&outcomes, RecipientStatus::Quarantined)?;
    println!(
        "quarantine path=node action=quarantine concurrency={} mailboxes={} secs={:.2} \
         per_sec={:.1} ingest_commit_ms={:.2}",
        sizes.concurrency,
        outcomes.len(),
        elapsed.as_secs_f64(),
        per_second(outcomes.len(), elapsed),
        committed.as_secs_f64() * 1000.0
    );
    Ok(())
}

/// Reads the job until every recipient is final, or fails after [`JOB_DEADLINE`].
async fn wait_until_done(bench: &BenchNode, job_id: u64) -> anyhow::Result<QuarantineJob> {
    let deadline = Instant::now() + JOB_DEADLINE;
    loop {
        let job = bench
            .node
            .reader()
            .job(job_id)?
            .with_context(|| format!("job {job_id} is missing"))?;
        if job.is_done() {
            return Ok(job);
        }
        if Instant::now() > deadline {
            let left = job.results.iter().filter(|r| !r.status.is_final()).count();
            anyhow::bail!("job {job_id} still had {left} recipient(s) open after {JOB_DEADLINE:?}");
        }
        tokio::time::sleep(JOB_POLL).await;
    }
}

/// The node's configuration besides `[node]`: the Dovecot as its only mailbox backend, and
/// a condition that quarantines phishing.
fn node_config(port: u16, concurrency: usize) -> String {
    format!(
        r#"[[mailboxes]]
name = "dovecot"
type = "imap"
tls = "none"
host = "127.0.0.1"
port = {port}
master_user = "{MASTER_USER}"
master_password = {{ value = "{MASTER_PASSWORD}" }}
timeout_secs = 10

[workers]
concurrency = {concurrency}

[[match_conditions]]
name = "quarantine-phish"
classifications = ["phish"]
responses = ["quarantine"]
"#
    )
}

/// An alert about the message as delivered to every user.
fn alert(users: &[String], message: &Message) -> anyhow::Result<AlertSpec> {
    let headers = &message.headers;
    let sender = [&headers.return_path, &headers.from]
        .into_iter()
        .flatten()
        .find_map(|h| pullback_domain::normalise_address(h))
        .unwrap_or_default();
    Ok(AlertSpec {
        event_id: "quarantine-bench-1".into(),
        message_id: headers
            .message_id
            .clone()
            .context("the message has no Message-ID")?,
        subject: message.subject.clone().unwrap_or_default(),
        sender,
        recipients: users.to_vec(),
        threat_id: "quarantine-bench-threat".into(),
        threat_url: "https://login.phish.bench.test/verify".into(),
    })
}

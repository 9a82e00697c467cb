//! Quarantines per second against the local Graph, with Outlook's throttling enforced at
//! Microsoft's published limits per application and mailbox: 4 concurrent requests, 10,000
//! requests in 10 minutes.
//!
//! The local Graph answers each request (each group of up to four requests of a `$batch`)
//! after a fixed service time, `PULLBACK_BENCH_GRAPH_LATENCY_MS` (100 ms), standing in for
//! Exchange Online's. It runs in the same process, on the same cores, as the client. Runs:
//!
//! - `one-mailbox`: `PULLBACK_BENCH_GRAPH_MESSAGES` (60) messages, each with its own
//!   Message-ID, in one mailbox, quarantined by the backend eight at a time, under
//!   Microsoft's limits; in a run this short the budget never binds, so this is what four
//!   concurrent requests allow.
//! - `one-mailbox-sustained`: the same with the budget window scaled down to 60 s and 1,000
//!   requests (the same 16.7 requests per second), for `PULLBACK_BENCH_GRAPH_SUSTAINED` (300)
//!   messages, so the run is long enough for the budget to bind as it would after the first
//!   10,000 requests of a real mailbox.
//! - `mailboxes`: one message in each of `PULLBACK_BENCH_GRAPH_MAILBOXES` (1,000) mailboxes,
//!   quarantined by the backend `PULLBACK_BENCH_GRAPH_CONCURRENCY` (64) mailboxes at a time,
//!   and then by a node whose workers do the same for one alert naming every mailbox.
//!
//! Every outcome is checked, and so are the server's counts: a run fails if any mailbox did
//! not end quarantined.

use anyhow::Context;
use pullback_benches::{
    AlertSpec, BenchNode, Latencies, per_second, run_with_data_folder, size_from_env,
};
use pullback_domain::{Command, MessageFingerprint, MessageId, RecipientStatus};
use pullback_graph::testing::{
    CLIENT_ID, CLIENT_SECRET, LocalGraph, LocalGraphConfig, NewMessage, ServerStats, TENANT_ID,
};
use pullback_graph::{GraphBackend, GraphClient, Limits};
use pullback_mailbox::{MailboxBackend, MessageTarget, RecipientOutcome};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const DOMAIN: &str = "bench.contoso.test";
const SUBJECT: &str = "Action required: your mailbox is full";
const SENDER: &str = "it-support@phish.bench.test";

struct Sizes {
    latency: Duration,
    messages: usize,
    sustained: usize,
    mailboxes: usize,
    concurrency: usize,
}

fn main() -> anyhow::Result<()> {
    let sizes = Sizes {
        latency: Duration::from_millis(
            size_from_env("PULLBACK_BENCH_GRAPH_LATENCY_MS", 100)? as u64
        ),
        messages: size_from_env("PULLBACK_BENCH_GRAPH_MESSAGES", 60)?,
        sustained: size_from_env("PULLBACK_BENCH_GRAPH_SUSTAINED", 300)?,
        mailboxes: size_from_env("PULLBACK_BENCH_GRAPH_MAILBOXES", 1000)?,
        concurrency: size_from_env("PULLBACK_BENCH_GRAPH_CONCURRENCY", 64)?,
    };
    run_with_data_folder(|folder| async move {
        one_mailbox("one-mailbox", Limits::default(), sizes.messages, &sizes).await?;
        let scaled = Limits {
            concurrent: 4,
            requests: 1000,
            window: Duration::from_secs(60),
        };
        one_mailbox("one-mailbox-sustained", scaled, sizes.sustained, &sizes).await?;
        mailboxes(&folder, &sizes).await
    })
}

fn target(id: &str) -> MessageTarget {
    let fingerprint = MessageFingerprint {
        subject: Some(SUBJECT.to_owned()),
        ..MessageFingerprint::default()
    };
    MessageTarget::new(MessageId::parse(id).expect("an id"), fingerprint)
}

async fn start_graph(limits: Limits, latency: Duration) -> LocalGraph {
    LocalGraph::start(LocalGraphConfig {
        limits,
        latency,
        ..LocalGraphConfig::default()
    })
    .await
}

fn backend(graph: &LocalGraph) -> anyhow::Result<GraphBackend> {
    let client = GraphClient::new(graph.secret_config()).context("a Graph client")?;
    Ok(GraphBackend::new(Arc::new(client)))
}

/// Quarantines `count` messages in one mailbox, eight at a time.
async fn one_mailbox(run: &str, limits: Limits, count: usize, sizes: &Sizes) -> anyhow::Result<()> {
    let graph = start_graph(limits, sizes.latency).await;
    let mailbox = format!("one@{DOMAIN}");
    graph.add_mailbox(&mailbox);
    let ids: Vec<String> = (0..count)
        .map(|i| format!("<one-{i}@phish.bench.test>"))
        .collect();
    for id in &ids {
        graph.deliver(&mailbox, "inbox", &NewMessage::new(id, SUBJECT, SENDER));
    }
    let backend = Arc::new(backend(&graph)?);
    let jobs: Vec<(String, MessageTarget)> =
        ids.iter().map(|id| (mailbox.clone(), target(id))).collect();
    let (outcomes, latencies, elapsed) = run_all(backend.clone(), jobs, 8).await;
    check(&outcomes)?;
    report(
        run,
        1,
        &outcomes,
        elapsed,
        &latencies,
        &graph.stats(),
        &backend,
        limits,
    );
    Ok(())
}

/// One message in each of many mailboxes: the backend alone, then through a node.
async fn mailboxes(folder: &Path, sizes: &Sizes) -> anyhow::Result<()> {
    let limits = Limits::default();
    let graph = start_graph(limits, sizes.latency).await;
    let users: Vec<String> = (0..sizes.mailboxes)
        .map(|i| format!("user{i}@{DOMAIN}"))
        .collect();
    let backend_id = "<many-backend@phish.bench.test>";
    let node_id = "<many-node@phish.bench.test>";
    for user in &users {
        graph.add_mailbox(user);
        graph.deliver(user, "inbox", &NewMessage::new(backend_id, SUBJECT, SENDER));
        graph.deliver(user, "inbox", &NewMessage::new(node_id, SUBJECT, SENDER));
    }

    let backend = Arc::new(backend(&graph)?);
    let jobs: Vec<(String, MessageTarget)> = users
        .iter()
        .map(|u| (u.clone(), target(backend_id)))
        .collect();
    let (outcomes, latencies, elapsed) = run_all(backend.clone(), jobs, sizes.concurrency).await;
    check(&outcomes)?;
    let stats = graph.stats();
    report(
        "mailboxes-backend",
        users.len(),
        &outcomes,
        elapsed,
        &latencies,
        &stats,
        &backend,
        limits,
    );

    through_node(folder, &graph, &users, node_id, sizes).await
}

/// One alert naming every mailbox, through a node whose mailbox backend is the local Graph.
async fn through_node(
    folder: &Path,
    graph: &LocalGraph,
    users: &[String],
    message_id: &str,
    sizes: &Sizes,
) -> anyhow::Result<()> {
    let ca = folder.join("graph-ca.pem");
    std::fs::write(&ca, graph.ca_pem())?;
    let config = format!(
        r#"[[mailboxes]]
name = "exchange"
type = "graph"
tenant_id = "{TENANT_ID}"
client_id = "{CLIENT_ID}"
client_secret = {{ value = "{CLIENT_SECRET}" }}
authority_url = "{url}"
graph_url = "{url}"
ca_file = {ca:?}

[workers]
concurrency = {concurrency}
poll_interval_ms = 10

[[match_conditions]]
name = "phish"
classifications = ["phish"]
responses = ["quarantine"]
"#,
        url = graph.base_url(),
        concurrency = sizes.concurrency,
    );
    let bench = BenchNode::start(folder, &config).await?;
    let alert = AlertSpec {
        event_id: "many-node".into(),
        message_id: MessageId::parse(message_id).expect("an id"),
        subject: SUBJECT.into(),
        sender: SENDER.into(),
        recipients: users.to_vec(),
        threat_id: "threat-many".into(),
        threat_url: "https://phish.bench.test/login".into(),
    };
    let before = graph.stats();
    let started = Instant::now();
    let response = bench
        .node
        .propose(Command::IngestAlerts {
            source: "bench".into(),
            at: chrono::Utc::now(),
            drafts: vec![alert.draft()],
            rejected: Vec::new(),
            checkpoint: None,
        })
        .await?;
    let job_id = *response.jobs.first().context("the alert created no job")?;
    let job = loop {
        let job = bench
            .node
            .reader()
            .job(job_id)?
            .context("the job is missing")?;
        if job.is_done() {
            break job;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(900),
            "the job did not finish"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let elapsed = started.elapsed();
    bench.stop().await;
    let stats = graph.stats();
    let not_done = job
        .results
        .iter()
        .filter(|r| r.status != RecipientStatus::Quarantined)
        .map(|r| format!("{} {}: {}", r.recipient, r.status.as_str(), r.details))
        .next();
    anyhow::ensure!(
        not_done.is_none(),
        "a mailbox did not end quarantined: {not_done:?}"
    );
    let requests = stats.requests - before.requests;
    println!(
        "graph run=mailboxes-node mailboxes={} concurrency={} secs={:.2} per_sec={:.1} \
         graph_requests={} requests_per_sec={:.1} throttled={} latency_ms={}",
        job.results.len(),
        sizes.concurrency,
        elapsed.as_secs_f64(),
        per_second(job.results.len(), elapsed),
        requests,
        per_second(requests as usize, elapsed),
        stats.throttled - before.throttled,
        sizes.latency.as_millis()
    );
    Ok(())
}

/// Runs every `(mailbox, target)` quarantine with `concurrency` tasks.
async fn run_all(
    backend: Arc<GraphBackend>,
    jobs: Vec<(String, MessageTarget)>,
    concurrency: usize,
) -> (Vec<RecipientOutcome>, Latencies, Duration) {
    let jobs: Arc<[(String, MessageTarget)]> = jobs.into();
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (backend, jobs, next) = (backend.clone(), jobs.clone(), next.clone());
        tasks.spawn(async move {
            let mut done = Vec::new();
            while let Some((mailbox, target)) = jobs.get(next.fetch_add(1, Ordering::Relaxed)) {
                let at = Instant::now();
                done.push((backend.quarantine(mailbox, target).await, at.elapsed()));
            }
            done
        });
    }
    let mut outcomes = Vec::new();
    let mut latencies = Latencies::default();
    while let Some(joined) = tasks.join_next().await {
        for (outcome, latency) in joined.expect("a task") {
            outcomes.push(outcome);
            latencies.record(latency);
        }
    }
    (outcomes, latencies, started.elapsed())
}

fn check(outcomes: &[RecipientOutcome]) -> anyhow::Result<()> {
    match outcomes
        .iter()
        .find(|o| o.status != RecipientStatus::Quarantined)
    {
        None => Ok(()),
        Some(odd) => anyhow::bail!(
            "{} ended {}: {}",
            odd.recipient,
            odd.status.as_str(),
            odd.details
        ),
    }
}

#[allow(clippy::too_many_arguments)]
fn report(
    run: &str,
    mailboxes: usize,
    outcomes: &[RecipientOutcome],
    elapsed: Duration,
    latencies: &Latencies,
    server: &ServerStats,
    backend: &GraphBackend,
    limits: Limits,
) {
    let client = backend.client().stats();
    let per_message = client.graph_requests as f64 / outcomes.len().max(1) as f64;
    // What the rules allow per mailbox, in requests per second, over a long run.
    let budget_rate = f64::from(limits.requests) / limits.window.as_secs_f64();
    println!(
        "graph run={run} mailboxes={mailboxes} messages={} secs={:.2} per_sec={:.2} \
         requests_per_message={per_message:.2} requests_per_sec={:.1} \
         allowed_per_mailbox_requests_per_sec={budget_rate:.1} allowed_per_mailbox_per_sec={:.2} \
         max_in_flight={} over_concurrency={} over_budget={} throttled={} {}",
        outcomes.len(),
        elapsed.as_secs_f64(),
        per_second(outcomes.len(), elapsed),
        per_second(client.graph_requests as usize, elapsed),
        budget_rate / per_message.max(1.0),
        server.max_in_flight,
        server.over_concurrency,
        server.over_budget,
        server.throttled,
        latencies.summary("quarantine")
    );
}

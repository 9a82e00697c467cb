//! Alerts committed per second on one node whose Raft log is synced to disk on every write.
//!
//! Each run starts a fresh node from a configuration file in a temporary folder and proposes
//! `IngestAlerts` commands directly, the way a source's poller does: one alert per proposal
//! in sequence, batches of alerts in sequence, and single alerts from many concurrent
//! proposers. Every run is done twice: once with a match condition that matches none of the
//! alerts, and once with one that quarantines everything, so that every alert also opens or
//! joins an incident and creates a quarantine job.
//!
//! Arguments that do not start with `-` select runs: a run is done when its name, such as
//! `no-match/single`, contains one of them. Sizes come from the environment:
//! - `PULLBACK_BENCH_SINGLE_ALERTS`: alerts proposed one at a time in sequence (2000).
//! - `PULLBACK_BENCH_BATCHES` and `PULLBACK_BENCH_BATCH_SIZE`: batches in sequence (100 of 100).
//! - `PULLBACK_BENCH_PROPOSERS` and `PULLBACK_BENCH_CONCURRENT_ALERTS`: concurrent proposers
//!   of one alert each and the alerts they propose in all (16 and 4000).

use anyhow::Context;
use pullback_benches::{
    AlertSpec, BenchNode, Latencies, per_second, run_with_data_folder, size_from_env,
};
use pullback_domain::{Command, MessageId};
use pullback_node::Node;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Proposals made before timing starts, so that the first writes of a new database are not
/// counted.
const WARM_UP_PROPOSALS: usize = 20;

/// Alerts that share a threat, and so one incident, when the condition quarantines.
const ALERTS_PER_THREAT: usize = 4;

struct Sizes {
    single_alerts: usize,
    batches: usize,
    batch_size: usize,
    proposers: usize,
    concurrent_alerts: usize,
}

impl Sizes {
    fn from_env() -> anyhow::Result<Sizes> {
        Ok(Sizes {
            single_alerts: size_from_env("PULLBACK_BENCH_SINGLE_ALERTS", 2000)?,
            batches: size_from_env("PULLBACK_BENCH_BATCHES", 100)?,
            batch_size: size_from_env("PULLBACK_BENCH_BATCH_SIZE", 100)?,
            proposers: size_from_env("PULLBACK_BENCH_PROPOSERS", 16)?,
            concurrent_alerts: size_from_env("PULLBACK_BENCH_CONCURRENT_ALERTS", 4000)?,
        })
    }
}

/// Which match condition the node is configured with.
#[derive(Clone, Copy)]
enum Scenario {
    /// A condition for malware, which none of the phishing alerts match.
    NoMatch,
    /// A condition without filters that quarantines every alert.
    QuarantineAll,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::NoMatch => "no-match",
            Scenario::QuarantineAll => "quarantine-all",
        }
    }

    fn config(self) -> &'static str {
        match self {
            Scenario::NoMatch => {
                "[[match_conditions]]\nname = \"quarantine-malware\"\n\
                 classifications = [\"malware\"]\nresponses = [\"quarantine\"]\n"
            }
            Scenario::QuarantineAll => {
                "[[match_conditions]]\nname = \"quarantine\"\nresponses = [\"quarantine\"]\n"
            }
        }
    }
}

/// How alerts are proposed.
#[derive(Clone, Copy)]
enum Mode {
    /// One alert per proposal, each proposal awaited before the next.
    Single,
    /// Many alerts per proposal, in sequence.
    Batched,
    /// One alert per proposal from several tasks at once.
    Concurrent,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Single => "single",
            Mode::Batched => "batch",
            Mode::Concurrent => "concurrent",
        }
    }
}

/// What one timed run measured.
struct Run {
    alerts: usize,
    proposals: usize,
    elapsed: Duration,
    latencies: Latencies,
    /// Log entries the node appended during the run besides the benchmark's own proposals:
    /// the quarantine worker's claims and outcomes.
    worker_entries: u64,
}

fn main() -> anyhow::Result<()> {
    let sizes = Sizes::from_env()?;
    // Cargo passes `--bench`; everything else that is not an option names runs to do.
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    run_with_data_folder(|data_folder| run_all(data_folder, sizes, filters))
}

async fn run_all(data_folder: PathBuf, sizes: Sizes, filters: Vec<String>) -> anyhow::Result<()> {
    let sample = spec(0, "sample").draft();
    let raw_bytes = serde_json::to_vec(&sample.raw)?.len();
    println!(
        "ingest: durable single-node log; raw event {raw_bytes} bytes with one recipient; \
         1-3 recipients per alert; data under {}",
        data_folder.display()
    );
    for scenario in [Scenario::NoMatch, Scenario::QuarantineAll] {
        for mode in [Mode::Single, Mode::Batched, Mode::Concurrent] {
            let name = format!("{}/{}", scenario.name(), mode.name());
            if !filters.is_empty() && !filters.iter().any(|f| name.contains(f.as_str())) {
                continue;
            }
            let run = run(&data_folder, scenario, mode, &sizes).await?;
            print_run(scenario, mode, &sizes, &run);
        }
    }
    Ok(())
}

fn print_run(scenario: Scenario, mode: Mode, sizes: &Sizes, run: &Run) {
    let shape = match mode {
        Mode::Single => "alerts_per_proposal=1".to_owned(),
        Mode::Batched => format!("alerts_per_proposal={}", sizes.batch_size),
        Mode::Concurrent => format!("alerts_per_proposal=1 proposers={}", sizes.proposers),
    };
    println!(
        "ingest scenario={} mode={} {shape} alerts={} proposals={} secs={:.2} \
         alerts_per_sec={:.0} {} worker_entries={}",
        scenario.name(),
        mode.name(),
        run.alerts,
        run.proposals,
        run.elapsed.as_secs_f64(),
        per_second(run.alerts, run.elapsed),
        run.latencies.summary("proposal"),
        run.worker_entries,
    );
}

/// Starts a fresh node, warms it up, proposes the alerts of one mode and stops the node.
async fn run(
    data_folder: &Path,
    scenario: Scenario,
    mode: Mode,
    sizes: &Sizes,
) -> anyhow::Result<Run> {
    let bench = BenchNode::start(data_folder, scenario.config()).await?;
    let warm_up = (0..WARM_UP_PROPOSALS)
        .map(|i| ingest(&[i], "warm-up"))
        .collect();
    propose_from_tasks(&bench.node, vec![warm_up]).await?;

    let (alerts, shares) = workload(mode, sizes);
    let first_index = bench.last_log_index();
    let started = Instant::now();
    let latencies = propose_from_tasks(&bench.node, shares).await?;
    let elapsed = started.elapsed();

    let proposals = latencies.len();
    let appended = bench.last_log_index() - first_index;
    bench.stop().await;
    Ok(Run {
        alerts,
        proposals,
        elapsed,
        latencies,
        worker_entries: appended.saturating_sub(proposals as u64),
    })
}

/// The commands of one mode, built before timing starts: one list for each proposer task,
/// and how many alerts they carry in all.
fn workload(mode: Mode, sizes: &Sizes) -> (usize, Vec<Vec<Command>>) {
    let label = mode.name();
    match mode {
        Mode::Single => {
            let commands = (0..sizes.single_alerts)
                .map(|i| ingest(&[i], label))
                .collect();
            (sizes.single_alerts, vec![commands])
        }
        Mode::Batched => {
            let size = sizes.batch_size;
            let commands = (0..sizes.batches)
                .map(|b| ingest(&(b * size..(b + 1) * size).collect::<Vec<_>>(), label))
                .collect();
            (sizes.batches * size, vec![commands])
        }
        Mode::Concurrent => {
            let mut shares: Vec<Vec<Command>> = vec![Vec::new(); sizes.proposers];
            for i in 0..sizes.concurrent_alerts {
                shares[i % sizes.proposers].push(ingest(&[i], label));
            }
            (sizes.concurrent_alerts, shares)
        }
    }
}

/// Runs one task per list of commands, each proposing its commands in sequence, and returns
/// every proposal's latency.
async fn propose_from_tasks(
    node: &Arc<Node>,
    shares: Vec<Vec<Command>>,
) -> anyhow::Result<Latencies> {
    let mut tasks = tokio::task::JoinSet::new();
    for share in shares {
        let node = node.clone();
        tasks.spawn(async move {
            let mut latencies = Latencies::default();
            for command in share {
                latencies.record(propose(&node, command).await?);
            }
            anyhow::Ok(latencies)
        });
    }
    let mut latencies = Latencies::default();
    while let Some(joined) = tasks.join_next().await {
        latencies.merge(joined.context("a proposer task panicked")??);
    }
    Ok(latencies)
}

/// Proposes one command, checks that every alert in it was accepted, and returns how long
/// the commit took.
async fn propose(node: &Node, command: Command) -> anyhow::Result<Duration> {
    let expected = match &command {
        Command::IngestAlerts { drafts, .. } => drafts.len(),
        _ => 0,
    };
    let started = Instant::now();
    let response = node.propose(command).await?;
    let latency = started.elapsed();
    if let Some(reason) = response.refused {
        anyhow::bail!("the node refused an ingest: {reason}");
    }
    if response.alerts.len() != expected {
        anyhow::bail!(
            "{} of {expected} alerts were accepted ({} duplicates)",
            response.alerts.len(),
            response.duplicates
        );
    }
    Ok(latency)
}

/// An `IngestAlerts` command with one alert for each number.
fn ingest(numbers: &[usize], label: &str) -> Command {
    Command::IngestAlerts {
        source: "bench".into(),
        at: chrono::Utc::now(),
        drafts: numbers.iter().map(|&n| spec(n, label).draft()).collect(),
        rejected: Vec::new(),
        checkpoint: None,
    }
}

/// The `n`th alert of a run: its own event and message, one to three recipients, and a
/// threat shared with its neighbours.
fn spec(n: usize, label: &str) -> AlertSpec {
    let threat = n / ALERTS_PER_THREAT;
    let recipients = (0..n % 3 + 1)
        .map(|r| format!("user{}@corp.bench.test", (n * 7 + r * 13) % 5000))
        .collect();
    let message_id = format!("<{label}.{n}.4f1c9e@mail.sender.bench.test>");
    AlertSpec {
        event_id: format!("{label}-{n}"),
        message_id: MessageId::parse(&message_id).expect("a non-empty Message-ID"),
        subject: format!("Action required: invoice {n} is overdue"),
        sender: "billing@sender.bench.test".into(),
        recipients,
        threat_id: format!("{threat:064x}"),
        threat_url: format!("https://login-{threat}.phish.bench.test/session/verify?id={n}"),
    }
}

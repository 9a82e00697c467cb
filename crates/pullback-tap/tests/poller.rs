//! The poller against the simulator over real HTTP on the loopback, with a sink in memory that
//! deduplicates on `dedup_key` as the replicated store does.

use chrono::{TimeDelta, TimeZone, Utc};
use pullback_domain::{AlertDraft, AlertKind, Checkpoint, Timestamp};
use pullback_tap::simulator::serve;
use pullback_tap::{
    Batch, BatchSink, FetchError, GapReason, Quota, SimulatorConfig, TapClient, TapClientConfig,
    TapPoller, TapSimulator, Window, WindowConfig,
};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::future::{Future, ready};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;

const PRINCIPAL: &str = "poller-principal";
const SECRET: &str = "s3cret-never-shown";

fn t0() -> Timestamp {
    Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0)
        .single()
        .expect("a valid time")
}

fn minutes(n: i64) -> Timestamp {
    t0() + TimeDelta::minutes(n)
}

fn hours(n: f64) -> Timestamp {
    t0() + TimeDelta::seconds((n * 3600.0) as i64)
}

/// A delivered message event dated `time`.
fn delivered(id: &str, time: Timestamp) -> Value {
    let iso = time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    json!({
        "id": id,
        "GUID": format!("guid-{id}"),
        "messageTime": iso,
        "messageID": format!("<{id}@example.zz>"),
        "sender": "bad@evil.zz",
        "recipient": ["user@example.zz"],
        "threatsInfoMap": [{
            "threatID": format!("threat-{id}"), "threat": "https://evil.zz/x",
            "threatType": "url", "classification": "phish", "threatStatus": "active",
            "threatTime": iso
        }]
    })
}

/// Keeps alerts by dedup key and the checkpoint, as the store commits them together.
#[derive(Default)]
struct MemorySink {
    state: Mutex<SinkState>,
}

#[derive(Default)]
struct SinkState {
    alerts: BTreeMap<String, AlertDraft>,
    rejected: std::collections::BTreeSet<String>,
    checkpoint: Checkpoint,
    commits: usize,
    refuse: bool,
}

impl MemorySink {
    fn with_cursor(cursor: Timestamp) -> MemorySink {
        let sink = MemorySink::default();
        sink.lock().checkpoint.cursor = Some(cursor);
        sink
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SinkState> {
        self.state.lock().expect("the sink's lock")
    }

    fn checkpoint(&self) -> Checkpoint {
        self.lock().checkpoint.clone()
    }

    fn ids(&self) -> Vec<String> {
        self.lock().alerts.keys().cloned().collect()
    }
}

impl BatchSink for MemorySink {
    fn commit(
        &self,
        batch: Batch,
    ) -> impl Future<Output = Result<Checkpoint, anyhow::Error>> + Send {
        let mut state = self.lock();
        if state.refuse {
            return ready(Err(anyhow::anyhow!("the store is read-only")));
        }
        let mut checkpoint = batch.checkpoint;
        for rejected in batch.rejected {
            if state.rejected.insert(rejected.key) {
                checkpoint.rejected += 1;
            }
        }
        for draft in batch.drafts {
            if state.alerts.contains_key(&draft.dedup_key) {
                checkpoint.duplicates += 1;
            } else {
                checkpoint.accepted += 1;
                state.alerts.insert(draft.dedup_key.clone(), draft);
            }
        }
        state.checkpoint = checkpoint.clone();
        state.commits += 1;
        ready(Ok(checkpoint))
    }
}

/// A simulator stopped at `t0` on a loopback port, and a poller of it.
struct Harness {
    sim: Arc<TapSimulator>,
    base: String,
}

impl Harness {
    async fn start(quota_per_day: u32) -> Harness {
        let config = SimulatorConfig {
            principal: PRINCIPAL.to_owned(),
            secret: SECRET.to_owned(),
            quota_per_day,
        };
        let sim = Arc::new(TapSimulator::new(config));
        sim.set_now(t0());
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let addr = listener.local_addr().expect("the bound address");
        tokio::spawn(serve(listener, Arc::clone(&sim)));
        Harness {
            sim,
            base: format!("http://{addr}"),
        }
    }

    fn client(&self, secret: &str) -> TapClient {
        TapClient::new(TapClientConfig {
            base_url: self.base.clone(),
            principal: PRINCIPAL.to_owned(),
            secret: secret.to_owned(),
            timeout: Duration::from_secs(10),
        })
        .expect("a client")
    }

    fn poller(&self, window: WindowConfig) -> TapPoller {
        TapPoller::new(self.client(SECRET), window, Quota::default())
    }

    /// Files an event that is indexed at once.
    fn file(&self, id: &str, time: Timestamp) {
        self.sim
            .add_event(AlertKind::MessageDelivered, delivered(id, time), time, time);
    }

    /// Runs one cycle at `now`, on the simulator's clock too, from the sink's checkpoint.
    async fn cycle(
        &self,
        poller: &TapPoller,
        sink: &MemorySink,
        now: Timestamp,
    ) -> pullback_tap::CycleReport {
        self.sim.set_now(now);
        poller.run_cycle(&sink.checkpoint(), now, sink).await
    }
}

fn keys(ids: &[&str]) -> Vec<String> {
    let mut keys: Vec<String> = ids.iter().map(|id| format!("id:{id}/guid-{id}")).collect();
    keys.sort();
    keys
}

#[tokio::test]
async fn the_overlap_catches_a_late_indexed_event_exactly_once() {
    let h = Harness::start(100).await;
    h.file("early", minutes(-20));
    // Filed in the first cycle's window, but indexed only after the cursor passed it.
    h.sim.add_event(
        AlertKind::MessageDelivered,
        delivered("late", minutes(-5)),
        minutes(-5),
        minutes(10),
    );

    let poller = h.poller(WindowConfig::default());
    let sink = MemorySink::with_cursor(minutes(-10));
    let first = h.cycle(&poller, &sink, t0()).await;
    assert_eq!((first.windows_fetched, first.drafts), (1, 1));
    assert_eq!(sink.ids(), keys(&["early"]));
    assert_eq!(sink.checkpoint().cursor, Some(t0()));

    let second = h.cycle(&poller, &sink, minutes(15)).await;
    let third = h.cycle(&poller, &sink, minutes(20)).await;
    assert_eq!((second.drafts, third.drafts), (2, 1));
    assert_eq!(sink.ids(), keys(&["early", "late"]));

    let checkpoint = sink.checkpoint();
    assert_eq!((checkpoint.accepted, checkpoint.duplicates), (2, 2));
    assert_eq!(checkpoint.cursor, Some(minutes(20)));
    assert_eq!(checkpoint.calls.len(), 3);
    assert_eq!(checkpoint.last_success, Some(minutes(20)));

    // Without the overlap the same late event is never seen.
    let h = Harness::start(100).await;
    h.sim.add_event(
        AlertKind::MessageDelivered,
        delivered("late", minutes(-5)),
        minutes(-5),
        minutes(10),
    );
    let poller = h.poller(WindowConfig {
        overlap: Duration::ZERO,
        ..WindowConfig::default()
    });
    let sink = MemorySink::with_cursor(minutes(-10));
    for now in [t0(), minutes(15), minutes(20)] {
        h.cycle(&poller, &sink, now).await;
    }
    assert!(sink.ids().is_empty());
}

#[tokio::test]
async fn a_thirteen_hour_outage_recovers_twelve_hours_in_windows_of_an_hour() {
    let h = Harness::start(100).await;
    h.file("lost", hours(-12.5));
    h.file("recovered", hours(-11.0));
    h.file("recent", minutes(-1));

    let poller = h.poller(WindowConfig::default());
    let sink = MemorySink::with_cursor(hours(-13.0));
    let report = h.cycle(&poller, &sink, t0()).await;

    let gap = report
        .gap
        .clone()
        .expect("the outage's lost hour is reported");
    assert_eq!(
        (gap.from, gap.to, gap.reason),
        (hours(-13.0), hours(-12.0), GapReason::Lookback)
    );
    assert_eq!((report.windows_planned, report.windows_fetched), (12, 12));
    assert_eq!(report.error, None);
    assert_eq!((h.sim.calls(), h.sim.answered(400)), (12, 0));
    assert_eq!(sink.ids(), keys(&["recent", "recovered"]));
    assert_eq!(sink.checkpoint().cursor, Some(t0()));
}

#[tokio::test]
async fn a_cursor_eight_days_old_is_clamped_to_the_seven_days_the_api_keeps() {
    let h = Harness::start(1800).await;
    h.file("lost", hours(-7.5 * 24.0));
    h.file("kept", hours(-6.9 * 24.0));
    h.file("recent", minutes(-1));

    let window = WindowConfig {
        lookback_on_start: Duration::from_secs(10 * 24 * 3600),
        ..WindowConfig::default()
    };
    let poller = h.poller(window);
    let sink = MemorySink::with_cursor(hours(-8.0 * 24.0));
    let report = h.cycle(&poller, &sink, t0()).await;

    let gap = report.gap.clone().expect("a gap");
    assert_eq!(gap.reason, GapReason::ApiLimit);
    assert_eq!(gap.to, t0() - TimeDelta::days(7) + TimeDelta::minutes(5));
    assert_eq!(report.error, None);
    assert_eq!((report.windows_fetched, h.sim.answered(400)), (168, 0));
    assert_eq!(sink.ids(), keys(&["kept", "recent"]));
    assert_eq!(sink.checkpoint().cursor, Some(t0()));
}

#[tokio::test]
async fn a_429_stops_the_cycle_backs_off_and_the_next_cycle_loses_nothing() {
    let h = Harness::start(5).await;
    // Another tool sharing the credential spent three calls a little under a day ago.
    h.sim.set_now(minutes(-24 * 60 + 5));
    let other = h.client(SECRET);
    for _ in 0..3 {
        let window = Window {
            start: minutes(-24 * 60 - 30),
            end: minutes(-24 * 60),
        };
        other.fetch(window).await.expect("the other tool's call");
    }
    for (id, at) in [
        ("a", hours(-3.2)),
        ("b", hours(-2.0)),
        ("c", hours(-1.0)),
        ("d", hours(-0.2)),
    ] {
        h.file(id, at);
    }

    let poller = h.poller(WindowConfig::default());
    let sink = MemorySink::with_cursor(hours(-3.0));
    let stopped = h.cycle(&poller, &sink, t0()).await;
    assert_eq!((stopped.windows_planned, stopped.windows_fetched), (4, 2));
    assert_eq!(stopped.retry_after, Some(Duration::from_secs(60)));
    let error = stopped.error.clone().expect("the 429 is reported");
    assert!(
        error.contains("429") && error.contains("/v2/siem/all"),
        "{error}"
    );
    let checkpoint = sink.checkpoint();
    assert_eq!(checkpoint.cursor, Some(hours(-1.5)));
    assert_eq!(checkpoint.last_error.as_deref(), Some(error.as_str()));
    assert_eq!(checkpoint.calls.len(), 3);
    assert_eq!(sink.ids(), keys(&["a", "b"]));

    // Still refused a minute later: the cursor stays and the backoff doubles.
    let again = h.cycle(&poller, &sink, minutes(1)).await;
    assert_eq!(
        (again.windows_fetched, again.retry_after),
        (0, Some(Duration::from_secs(120)))
    );
    assert_eq!(sink.checkpoint().cursor, Some(hours(-1.5)));

    // Once the other tool's calls are a day old, the cycle resumes where it stopped.
    let resumed = h.cycle(&poller, &sink, minutes(10)).await;
    assert_eq!(
        (resumed.windows_fetched, resumed.error, resumed.retry_after),
        (3, None, None)
    );
    assert_eq!(sink.ids(), keys(&["a", "b", "c", "d"]));
    let checkpoint = sink.checkpoint();
    assert_eq!(
        (checkpoint.cursor, checkpoint.last_error),
        (Some(minutes(10)), None)
    );
    assert_eq!(h.sim.answered(429), 2);
}

#[tokio::test]
async fn a_wrong_secret_is_unauthorized_and_never_shown() {
    let h = Harness::start(100).await;
    let wrong = "wr0ng-pa55word";
    let client = h.client(wrong);
    let window = Window {
        start: minutes(-30),
        end: t0(),
    };
    let err = client.fetch(window).await.expect_err("refused");
    assert!(
        matches!(err, FetchError::Unauthorized { status: 401, .. }),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(message.contains("/v2/siem/all"), "{message}");
    assert!(
        message.contains("2024-05-01T11:30:00Z/2024-05-01T12:00:00Z"),
        "{message}"
    );
    assert!(message.contains("not accepted"), "{message}");
    assert!(
        !message.contains(wrong) && !format!("{err:?}").contains(wrong),
        "{message}"
    );
    assert!(!format!("{:?}", client.config()).contains(wrong));

    let poller = TapPoller::new(client, WindowConfig::default(), Quota::default());
    let sink = MemorySink::with_cursor(minutes(-10));
    let report = poller.run_cycle(&sink.checkpoint(), t0(), &sink).await;
    let checkpoint = sink.checkpoint();
    assert_eq!(checkpoint.cursor, Some(minutes(-10)));
    let stored = checkpoint.last_error.expect("the error is stored");
    assert!(
        stored.contains("not accepted") && !stored.contains(wrong),
        "{stored}"
    );
    assert_eq!((report.windows_fetched, report.retry_after), (0, None));
}

#[tokio::test]
async fn a_server_error_keeps_the_cursor_and_the_next_cycle_retries() {
    let h = Harness::start(100).await;
    h.file("x", minutes(-5));
    let poller = h.poller(WindowConfig::default());
    let sink = MemorySink::with_cursor(minutes(-10));

    h.sim.fail_next(503);
    let failed = h.cycle(&poller, &sink, t0()).await;
    assert!(
        failed.error.as_deref().is_some_and(|e| e.contains("503")),
        "{:?}",
        failed.error
    );
    assert_eq!(
        (sink.checkpoint().cursor, failed.retry_after),
        (Some(minutes(-10)), None)
    );

    let retried = h.cycle(&poller, &sink, minutes(1)).await;
    assert_eq!(retried.error, None);
    assert_eq!(sink.ids(), keys(&["x"]));
}

#[tokio::test]
async fn rejected_events_are_counted_and_their_neighbours_kept() {
    let h = Harness::start(100).await;
    h.file("good", minutes(-5));
    h.sim.add_event(
        AlertKind::ClickBlocked,
        json!("not an event"),
        minutes(-4),
        minutes(-4),
    );
    let poller = h.poller(WindowConfig::default());
    let sink = MemorySink::with_cursor(minutes(-10));

    let report = h.cycle(&poller, &sink, t0()).await;
    assert_eq!((report.drafts, report.rejected), (1, 1));
    assert_eq!(sink.ids(), keys(&["good"]));
    assert_eq!(sink.checkpoint().rejected, 1);
}

#[tokio::test]
async fn a_failed_commit_stops_the_cycle() {
    let h = Harness::start(100).await;
    let poller = h.poller(WindowConfig::default());
    let sink = MemorySink::with_cursor(hours(-3.0));
    sink.lock().refuse = true;

    let report = h.cycle(&poller, &sink, t0()).await;
    let error = report.error.expect("reported");
    assert!(
        error.contains("commit failed") && error.contains("read-only"),
        "{error}"
    );
    assert_eq!((report.windows_fetched, h.sim.calls()), (0, 1));
    assert_eq!(report.checkpoint.cursor, Some(hours(-3.0)));
}

#[tokio::test]
async fn a_spent_quota_in_the_checkpoint_makes_no_call() {
    let h = Harness::start(100).await;
    let client = h.client(SECRET);
    let quota = Quota {
        limit: 2,
        ..Quota::default()
    };
    let poller = TapPoller::new(client, WindowConfig::default(), quota);
    let sink = MemorySink::with_cursor(minutes(-10));
    sink.lock().checkpoint.calls = vec![minutes(-60), minutes(-1)];

    let report = h.cycle(&poller, &sink, t0()).await;
    assert_eq!(h.sim.calls(), 0);
    assert!(
        report.error.as_deref().is_some_and(|e| e.contains("quota")),
        "{:?}",
        report.error
    );
    assert_eq!(report.retry_after, Some(Duration::from_secs(23 * 3600)));
    assert_eq!(sink.checkpoint().cursor, Some(minutes(-10)));
}

#[tokio::test]
async fn a_server_that_is_not_there_is_a_transport_error_with_its_cause() {
    // A port that was free a moment ago, on the loopback.
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let addr = listener.local_addr().expect("the bound address");
    drop(listener);
    let client = TapClient::new(TapClientConfig {
        base_url: format!("http://{addr}/"),
        principal: PRINCIPAL.to_owned(),
        secret: SECRET.to_owned(),
        timeout: Duration::from_secs(5),
    })
    .expect("a client");

    let err = client
        .fetch(Window {
            start: minutes(-30),
            end: t0(),
        })
        .await
        .expect_err("refused");
    let FetchError::Transport { detail, .. } = &err else {
        panic!("not a transport error: {err:?}");
    };
    assert!(detail.contains(": "), "the cause is spelled out: {detail}");
    let message = err.to_string();
    assert!(
        message.starts_with("GET /v2/siem/all for 2024-05-01T11:30:00Z/"),
        "{message}"
    );
    assert!(!message.contains(SECRET), "{message}");
}

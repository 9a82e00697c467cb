//! One poll cycle: plan the windows, fetch each within the quota, and commit each window's
//! alerts together with the checkpoint that covers them.

use crate::client::{FetchError, TapClient};
use crate::event::Envelope;
use crate::quota::{Backoff, Quota};
use crate::window::{Gap, Window, WindowConfig, plan};
use pullback_domain::{AlertDraft, Checkpoint, RejectedEvent, Timestamp};
use std::future::Future;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tracing::{debug, error, info, warn};

/// The name under which this source logs.
pub const SOURCE: &str = "tap";

/// One window's alerts and the checkpoint that covers them, to be stored atomically.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    pub drafts: Vec<AlertDraft>,
    /// Events of the window that could not be read, with why.
    pub rejected: Vec<RejectedEvent>,
    /// The source's position after this window. Its counters are the sink's to add, since it
    /// alone knows which events it has seen before.
    pub checkpoint: Checkpoint,
}

/// Where a poller's batches go: the replicated store in the appliance, memory in tests.
pub trait BatchSink {
    /// Stores the drafts not seen before (by `dedup_key`) and the checkpoint in one write, and
    /// returns the checkpoint as stored.
    fn commit(
        &self,
        batch: Batch,
    ) -> impl Future<Output = Result<Checkpoint, anyhow::Error>> + Send;
}

/// What one cycle did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CycleReport {
    pub windows_planned: usize,
    /// Windows fetched and committed.
    pub windows_fetched: usize,
    /// Drafts handed to the sink, repeats from overlapping windows included.
    pub drafts: usize,
    pub rejected: usize,
    /// Time that was never fetched and will not be.
    pub gap: Option<Gap>,
    /// Why the cycle stopped early, if it did.
    pub error: Option<String>,
    /// How long to wait before the next cycle, after a 429 or a spent quota.
    pub retry_after: Option<Duration>,
    /// The checkpoint as last stored; the one given to the cycle if nothing was stored.
    pub checkpoint: Checkpoint,
}

/// Polls the TAP SIEM API for one source.
#[derive(Debug)]
pub struct TapPoller {
    pub client: TapClient,
    pub window: WindowConfig,
    pub quota: Quota,
    backoff: Mutex<Backoff>,
}

impl TapPoller {
    /// A poller with the default backoff after a 429: one minute, doubling, to one hour.
    pub fn new(client: TapClient, window: WindowConfig, quota: Quota) -> Self {
        TapPoller {
            client,
            window,
            quota,
            backoff: Mutex::new(Backoff::default()),
        }
    }

    /// Fetches and commits every window from the checkpoint's cursor to `now`, stopping at the
    /// first window that cannot be fetched or committed.
    pub async fn run_cycle<S: BatchSink>(
        &self,
        checkpoint: &Checkpoint,
        now: Timestamp,
        sink: &S,
    ) -> CycleReport {
        let plan = plan(checkpoint.cursor, now, &self.window);
        if let Some(gap) = &plan.gap {
            warn!(
                source = SOURCE,
                gap_from = %gap.from,
                gap_to = %gap.to,
                reason = %gap.reason,
                "time that will never be fetched: events filed in it are lost"
            );
        }
        let mut report = CycleReport {
            windows_planned: plan.windows.len(),
            gap: plan.gap,
            checkpoint: checkpoint.clone(),
            ..CycleReport::default()
        };

        for window in plan.windows {
            let mut next = report.checkpoint.clone();
            next.last_run = Some(now);
            self.quota.prune(&mut next.calls, now);
            if !self.quota.allows(&next.calls, now) {
                self.quota_spent(next, now, sink, &mut report).await;
                break;
            }

            next.calls.push(now);
            let fetched = match self.client.fetch(window).await {
                Ok(envelope) => {
                    self.fetched(window, envelope, next, now, sink, &mut report)
                        .await
                }
                Err(err) => {
                    self.failed(window, err, next, sink, &mut report).await;
                    false
                }
            };
            if !fetched {
                break;
            }
        }
        report
    }

    /// Commits a fetched window; false when the commit failed and the cycle must stop.
    async fn fetched<S: BatchSink>(
        &self,
        window: Window,
        envelope: Envelope,
        mut next: Checkpoint,
        now: Timestamp,
        sink: &S,
        report: &mut CycleReport,
    ) -> bool {
        self.backoff().reset();
        for rejected in &envelope.rejected {
            warn!(
                source = SOURCE,
                window_start = %window.start,
                window_end = %window.end,
                kind = rejected.kind.as_str(),
                index = rejected.index,
                reason = %rejected.reason,
                "event rejected"
            );
        }
        let events = envelope.drafts.len();
        let rejected = envelope.rejected.len();
        if events > 0 || rejected > 0 {
            info!(
                source = SOURCE,
                window_start = %window.start,
                window_end = %window.end,
                events,
                rejected,
                "window fetched"
            );
        } else {
            debug!(
                source = SOURCE,
                window_start = %window.start,
                window_end = %window.end,
                events,
                rejected,
                "window fetched"
            );
        }

        next.cursor = Some(next.cursor.map_or(window.end, |c| c.max(window.end)));
        next.last_success = Some(now);
        next.last_error = None;
        let batch = Batch {
            drafts: envelope.drafts,
            rejected: envelope
                .rejected
                .into_iter()
                .map(|r| r.into_record())
                .collect(),
            checkpoint: next,
        };
        if !commit(sink, batch, report).await {
            return false;
        }
        report.windows_fetched += 1;
        report.drafts += events;
        report.rejected += rejected;
        true
    }

    /// Records a failed fetch in the checkpoint, without moving the cursor.
    async fn failed<S: BatchSink>(
        &self,
        window: Window,
        err: FetchError,
        mut next: Checkpoint,
        sink: &S,
        report: &mut CycleReport,
    ) {
        let message = err.to_string();
        match &err {
            FetchError::RateLimited { .. } => {
                let delay = self.backoff().next_delay();
                report.retry_after = Some(delay);
                warn!(
                    source = SOURCE,
                    window_start = %window.start,
                    window_end = %window.end,
                    retry_after_secs = delay.as_secs(),
                    error = %message,
                    "quota exceeded, backing off"
                );
            }
            FetchError::Unauthorized { .. } => {
                error!(
                    source = SOURCE,
                    window_start = %window.start,
                    window_end = %window.end,
                    error = %message,
                    "fetch refused: check the principal and secret"
                );
            }
            _ => {
                warn!(
                    source = SOURCE,
                    window_start = %window.start,
                    window_end = %window.end,
                    error = %message,
                    "fetch failed"
                );
            }
        }
        next.last_error = Some(message.clone());
        report.error = Some(message);
        let batch = Batch {
            drafts: Vec::new(),
            rejected: Vec::new(),
            checkpoint: next,
        };
        commit(sink, batch, report).await;
    }

    /// Records that the quota kept in the checkpoint allows no call now.
    async fn quota_spent<S: BatchSink>(
        &self,
        mut next: Checkpoint,
        now: Timestamp,
        sink: &S,
        report: &mut CycleReport,
    ) {
        let wait = self.quota.wait(&next.calls, now);
        let message = format!(
            "quota of {} calls per {} h spent; the next call is allowed in {} s",
            self.quota.limit,
            self.quota.period.as_secs() / 3600,
            wait.as_secs()
        );
        warn!(
            source = SOURCE,
            retry_after_secs = wait.as_secs(),
            "{message}"
        );
        next.last_error = Some(message.clone());
        report.error = Some(message);
        report.retry_after = Some(wait);
        let batch = Batch {
            drafts: Vec::new(),
            rejected: Vec::new(),
            checkpoint: next,
        };
        commit(sink, batch, report).await;
    }

    fn backoff(&self) -> MutexGuard<'_, Backoff> {
        self.backoff.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Hands a batch to the sink; false, with the error in the report, when it could not.
async fn commit<S: BatchSink>(sink: &S, batch: Batch, report: &mut CycleReport) -> bool {
    let cursor = batch.checkpoint.cursor;
    match sink.commit(batch).await {
        Ok(stored) => {
            report.checkpoint = stored;
            true
        }
        Err(err) => {
            let message = format!("commit failed: {err:#}");
            error!(source = SOURCE, cursor = ?cursor, error = %format!("{err:#}"), "commit failed");
            report.error = Some(match report.error.take() {
                Some(earlier) => format!("{earlier}; then {message}"),
                None => message,
            });
            false
        }
    }
}

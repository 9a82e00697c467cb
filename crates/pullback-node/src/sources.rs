//! Running alert sources on the leader: each cycle reads the source's checkpoint from the
//! replicated state, fetches, and commits alerts and the new checkpoint in one entry.

use crate::{Node, ProposeError};
use pullback_domain::{AlertDraft, Checkpoint, Command, CommandResponse, RejectedEvent};
use pullback_tap::poller::{Batch, BatchSink, TapPoller};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// A configured alert source, ready to poll.
pub struct Source {
    pub name: String,
    pub poller: TapPoller,
    pub interval: Duration,
}

/// Commits a source's batches through Raft.
struct RaftSink<'a> {
    node: &'a Node,
    source: &'a str,
}

impl BatchSink for RaftSink<'_> {
    async fn commit(&self, batch: Batch) -> anyhow::Result<Checkpoint> {
        let drafts = batch.drafts.len();
        let rejected = batch.rejected.len() as u64;
        let command = Command::IngestAlerts {
            source: self.source.to_owned(),
            at: chrono::Utc::now(),
            drafts: batch.drafts,
            rejected: batch.rejected,
            checkpoint: Some(batch.checkpoint),
        };
        let response = self.node.propose_local(command).await?;
        if let Some(reason) = response.refused {
            anyhow::bail!("the state machine refused the batch: {reason}");
        }
        self.node.count_ingested(self.source, &response, rejected);
        self.node
            .metrics
            .source_calls
            .with_label_values(&[self.source])
            .inc();
        tracing::info!(
            source = self.source,
            events = drafts,
            accepted = response.alerts.len(),
            duplicates = response.duplicates,
            incidents = response.incidents.len(),
            jobs = response.jobs.len(),
            "batch committed"
        );
        let stored = self.node.reader.checkpoint(self.source)?;
        Ok(stored.unwrap_or_default())
    }
}

impl Node {
    /// Counts what one committed batch of a source brought.
    pub(crate) fn count_ingested(&self, source: &str, response: &CommandResponse, rejected: u64) {
        let metrics = &self.metrics;
        metrics
            .alerts_accepted
            .with_label_values(&[source])
            .inc_by(response.alerts.len() as u64);
        metrics
            .alerts_duplicate
            .with_label_values(&[source])
            .inc_by(response.duplicates);
        metrics
            .events_rejected
            .with_label_values(&[source])
            .inc_by(rejected);
    }

    /// Commits alerts pushed to (or uploaded for) a source defined in the replicated state,
    /// with the source's health: when it was last used and, if this push carried rows or
    /// events that could not be read, the first reason. Works on any node; a follower
    /// forwards the write.
    pub async fn ingest_pushed(
        &self,
        source: &str,
        drafts: Vec<AlertDraft>,
        rejected: Vec<RejectedEvent>,
    ) -> Result<CommandResponse, ProposeError> {
        let now = chrono::Utc::now();
        let mut checkpoint = self
            .reader
            .checkpoint(source)
            .ok()
            .flatten()
            .unwrap_or_default();
        checkpoint.last_run = Some(now);
        checkpoint.last_success = Some(now);
        checkpoint.last_error = rejected.first().map(|r| r.reason.clone());
        let bad = rejected.len() as u64;
        let command = Command::IngestAlerts {
            source: source.to_owned(),
            at: now,
            drafts,
            rejected,
            checkpoint: Some(checkpoint),
        };
        let response = self.propose(command).await?;
        if response.refused.is_none() {
            self.count_ingested(source, &response, bad);
        }
        Ok(response)
    }
}

/// Polls one source until told to stop.
pub(crate) async fn run(node: Arc<Node>, source: &Source, mut stop: watch::Receiver<bool>) {
    let sink = RaftSink {
        node: &node,
        source: &source.name,
    };
    loop {
        let checkpoint = match node.reader.checkpoint(&source.name) {
            Ok(checkpoint) => checkpoint.unwrap_or_default(),
            Err(e) => {
                tracing::error!(source = %source.name, error = %e, "cannot read checkpoint");
                Checkpoint::default()
            }
        };
        let cycle = source
            .poller
            .run_cycle(&checkpoint, chrono::Utc::now(), &sink);
        let report = tokio::select! {
            report = cycle => report,
            _ = stop.changed() => return,
        };
        if let Some(error) = &report.error {
            node.metrics
                .source_errors
                .with_label_values(&[&source.name])
                .inc();
            tracing::warn!(source = %source.name, error = %error, "source cycle failed");
        }
        let delay = report.retry_after.unwrap_or(source.interval);
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.changed() => return,
        }
    }
}

impl Source {
    /// Builds the TAP poller a configuration entry describes, reading its secret; `None` for
    /// the other kinds, which the replicated state defines.
    pub fn from_config(config: &crate::config::SourceConfig) -> Result<Option<Source>, String> {
        let crate::config::SourceConfig::Tap(tap) = config else {
            return Ok(None);
        };
        let secret = tap
            .secret
            .resolve(&format!("source {:?} secret", tap.name))?;
        let client = pullback_tap::client::TapClient::new(pullback_tap::client::TapClientConfig {
            base_url: tap.base_url.clone(),
            principal: tap.principal.clone(),
            secret,
            timeout: Duration::from_secs(tap.timeout_secs),
        })
        .map_err(|e| format!("source {:?}: {e}", tap.name))?;
        let window = pullback_tap::window::WindowConfig {
            overlap: Duration::from_secs(tap.overlap_minutes * 60),
            lookback_on_start: Duration::from_secs(tap.lookback_hours * 3600),
            ..Default::default()
        };
        let quota = pullback_tap::quota::Quota {
            limit: tap.daily_quota,
            ..Default::default()
        };
        Ok(Some(Source {
            name: tap.name.clone(),
            poller: TapPoller::new(client, window, quota),
            interval: Duration::from_secs(tap.interval_secs.max(1)),
        }))
    }
}

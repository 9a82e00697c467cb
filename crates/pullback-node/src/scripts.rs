//! Scripted pollers on the leader: one task per enabled script source in the replicated
//! state, restarted when its definition changes and stopped when it is removed or
//! leadership ends. [`supervise`] does the same for abuse mailboxes. Each run's batches go through Raft with the position they cover (see
//! `pullback_script::runner`).

use crate::Node;
use pullback_domain::{Command, ScriptSpec, SourceDefinition, SourceKind};
use pullback_script::runner::{Batch, Ending, Sink};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How often the leader looks for added, changed or removed script sources.
const RECONCILE: Duration = Duration::from_secs(1);

struct Running {
    definition: SourceDefinition,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// Keeps one task running per enabled source that `wanted` selects, started by `start`,
/// restarted when its definition changes, until `stop` changes.
pub(crate) async fn supervise<F>(
    node: Arc<Node>,
    wanted: fn(&SourceDefinition) -> bool,
    start: F,
    mut stop: watch::Receiver<bool>,
) where
    F: Fn(SourceDefinition, watch::Receiver<bool>) -> JoinHandle<()>,
{
    let mut running: BTreeMap<String, Running> = BTreeMap::new();
    loop {
        let defined: Vec<SourceDefinition> = match node.reader.sources() {
            Ok(all) => all.into_iter().filter(|d| d.enabled && wanted(d)).collect(),
            Err(e) => {
                tracing::error!(error = %e, "cannot read the source definitions");
                Vec::new()
            }
        };
        let stale: Vec<String> = running
            .iter()
            .filter(|(name, r)| {
                !defined
                    .iter()
                    .any(|w| &w.name == *name && *w == r.definition)
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in stale {
            if let Some(old) = running.remove(&name) {
                tracing::info!(source = %name, "source changed or removed; stopping it");
                end(old).await;
            }
        }
        for definition in defined {
            if running.contains_key(&definition.name) {
                continue;
            }
            let (stop_one, stopped) = watch::channel(false);
            let task = start(definition.clone(), stopped);
            running.insert(
                definition.name.clone(),
                Running {
                    definition,
                    stop: stop_one,
                    task,
                },
            );
        }
        tokio::select! {
            () = tokio::time::sleep(RECONCILE) => {}
            _ = stop.changed() => break,
        }
    }
    for (_, old) in running {
        end(old).await;
    }
}

/// Starts the poller of a script source.
pub(crate) fn start_script(
    node: &Arc<Node>,
    definition: SourceDefinition,
    stopped: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let SourceKind::Script(spec) = definition.kind else {
        return tokio::spawn(async {});
    };
    tokio::spawn(poll(node.clone(), definition.name, spec, stopped))
}

/// How long a stopped source task may take to finish before it is abandoned.
const END_GRACE: Duration = Duration::from_secs(30);

async fn end(running: Running) {
    let _ = running.stop.send(true);
    let mut task = running.task;
    match tokio::time::timeout(END_GRACE, &mut task).await {
        Ok(Err(e)) if e.is_panic() => tracing::error!(error = %e, "a source task panicked"),
        Ok(_) => {}
        Err(_) => {
            tracing::error!(
                source = %running.definition.name,
                "a source task did not stop in time; abandoning it"
            );
            task.abort();
        }
    }
}

/// Runs one script on its schedule until told to stop.
async fn poll(node: Arc<Node>, name: String, spec: ScriptSpec, mut stop: watch::Receiver<bool>) {
    loop {
        let started = chrono::Utc::now();
        let position = match node.reader.checkpoint(&name) {
            Ok(checkpoint) => checkpoint.and_then(|c| c.position),
            Err(e) => {
                tracing::error!(source = %name, error = %e, "cannot read the checkpoint");
                return;
            }
        };
        tracing::info!(source = %name, position = ?position, "running script");
        let mut sink = RaftSink {
            node: &node,
            source: &name,
            started,
        };
        let report =
            pullback_script::run(&name, &spec, position.as_deref(), &mut sink, stop.clone()).await;
        node.metrics.source_calls.with_label_values(&[&name]).inc();
        tracing::info!(
            source = %name,
            lines = report.lines,
            alerts = report.alerts,
            malformed = report.malformed,
            stderr_lines = report.stderr_lines,
            elapsed_ms = report.elapsed.as_millis() as u64,
            ending = ?report.ending,
            "script run ended"
        );
        if report.ending == Ending::Stopped {
            return;
        }
        if let Some(error) = report.ending.error() {
            node.metrics.source_errors.with_label_values(&[&name]).inc();
            tracing::warn!(source = %name, %error, "script run failed");
        }
        record_run(&node, &name, started, report.ending.error()).await;
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(spec.interval_secs)) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Stores when a source's run (a script run, an abuse-mailbox cycle) started and how it
/// ended, keeping the position its batches stored.
pub(crate) async fn record_run(
    node: &Node,
    name: &str,
    started: pullback_domain::Timestamp,
    error: Option<String>,
) {
    let mut checkpoint = match node.reader.checkpoint(name) {
        Ok(checkpoint) => checkpoint.unwrap_or_default(),
        Err(e) => {
            tracing::error!(source = %name, error = %e, "cannot read the checkpoint");
            return;
        }
    };
    checkpoint.last_run = Some(started);
    match error {
        None => {
            checkpoint.last_success = Some(chrono::Utc::now());
            checkpoint.last_error = None;
        }
        Some(error) => checkpoint.last_error = Some(error),
    }
    let command = Command::SaveCheckpoint {
        source: name.to_owned(),
        checkpoint,
    };
    if let Err(e) = node.propose_local(command).await {
        tracing::warn!(source = %name, error = %e, "cannot record the source's run");
    }
}

/// Commits a run's batches on this node, which must lead.
struct RaftSink<'a> {
    node: &'a Node,
    source: &'a str,
    started: pullback_domain::Timestamp,
}

impl Sink for RaftSink<'_> {
    async fn commit(&mut self, batch: Batch) -> Result<(), String> {
        let mut checkpoint = self
            .node
            .reader
            .checkpoint(self.source)
            .map_err(|e| e.to_string())?
            .unwrap_or_default();
        checkpoint.last_run = Some(self.started);
        if batch.position.is_some() {
            checkpoint.position = batch.position;
        }
        let rejected = batch.rejected.len() as u64;
        let command = Command::IngestAlerts {
            source: self.source.to_owned(),
            at: chrono::Utc::now(),
            drafts: batch.drafts,
            rejected: batch.rejected,
            checkpoint: Some(checkpoint),
        };
        let response = self
            .node
            .propose_local(command)
            .await
            .map_err(|e| e.to_string())?;
        if let Some(reason) = response.refused {
            return Err(format!("the state machine refused the batch: {reason}"));
        }
        self.node.count_ingested(self.source, &response, rejected);
        Ok(())
    }
}

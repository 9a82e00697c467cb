//! Leader-only work. The supervisor watches Raft; when this node becomes leader of a term it
//! starts one task per source and the quarantine worker, all carrying that term, and when it
//! stops leading it tells them to stop and waits for them.
//!
//! A leader cut off from the others does not know at once that it was deposed; it stops its
//! work when it has not heard from a majority for [`LEASE`], so that it does not keep
//! fetching and touching mailboxes while a new leader does the same.

use crate::config::WorkerConfig;
use crate::{Node, Parts, abuse, scripts, sources, worker};
use openraft::ServerState;
use pullback_domain::SourceKind;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// How long a leader may go without hearing from a majority before it stops its work: three
/// heartbeats. With [`LEASE_CHECK`] it stays below the time followers refuse to vote for a
/// successor (`ELECTION_TIMEOUT_MAX_MS`), so the old leader stops before a new one starts.
const LEASE: Duration = Duration::from_millis(300);
/// How often the lease is checked when nothing else changes.
const LEASE_CHECK: Duration = Duration::from_millis(50);

const _: () =
    assert!((LEASE.as_millis() + LEASE_CHECK.as_millis()) < crate::ELECTION_TIMEOUT_MAX_MS as u128);

pub(crate) async fn supervise(node: Arc<Node>, parts: Arc<Parts>, workers: WorkerConfig) {
    let mut raft_metrics = node.raft.metrics();
    let mut shutdown = node.stop.subscribe();
    let mut current: Option<(u64, watch::Sender<bool>, JoinSet<()>)> = None;
    loop {
        let leading_term = {
            let m = raft_metrics.borrow_and_update();
            let alone = m.membership_config.membership().voter_ids().count() <= 1;
            // Work starts only once a majority has acknowledged this leader in its term. A
            // node restarted with its own vote of an earlier term still recorded calls itself
            // leader before it learns of the newer term, with a state that may be far behind;
            // it must not start pollers from its stale checkpoints. A newly elected leader is
            // acknowledged within a round trip (its first entry of the term).
            let heard = m
                .millis_since_quorum_ack
                .is_some_and(|ms| ms < LEASE.as_millis() as u64);
            (m.state == ServerState::Leader && (alone || heard)).then_some(m.current_term)
        };
        let running_term = current.as_ref().map(|(t, _, _)| *t);
        if leading_term != running_term {
            if let Some((term, stop, tasks)) = current.take() {
                tracing::info!(
                    node = node.id,
                    term,
                    "leadership ended; stopping leader work"
                );
                stop_all(stop, tasks).await;
                *node.leader_work.lock().expect("leader work lock") = None;
            }
            if let Some(term) = leading_term {
                tracing::info!(
                    node = node.id,
                    term,
                    "leading; starting pollers and workers"
                );
                current = Some(start(&node, &parts, &workers, term));
                *node.leader_work.lock().expect("leader work lock") = Some(crate::LeaderWork {
                    term,
                    started_at: chrono::Utc::now(),
                });
            }
        }
        tokio::select! {
            changed = raft_metrics.changed() => if changed.is_err() { break },
            () = tokio::time::sleep(LEASE_CHECK) => {}
            _ = shutdown.changed() => break,
        }
    }
    if let Some((_, stop, tasks)) = current.take() {
        stop_all(stop, tasks).await;
    }
}

fn start(
    node: &Arc<Node>,
    parts: &Arc<Parts>,
    workers: &WorkerConfig,
    term: u64,
) -> (u64, watch::Sender<bool>, JoinSet<()>) {
    let (stop, stopped) = watch::channel(false);
    let mut tasks = JoinSet::new();
    for index in 0..parts.sources.len() {
        let (node, parts, stopped) = (node.clone(), parts.clone(), stopped.clone());
        tasks.spawn(async move { sources::run(node, &parts.sources[index], stopped).await });
    }
    let for_scripts = node.clone();
    tasks.spawn(scripts::supervise(
        node.clone(),
        |d| matches!(d.kind, SourceKind::Script(_)),
        move |definition, stopped| scripts::start_script(&for_scripts, definition, stopped),
        stopped.clone(),
    ));
    let (for_abuse, backends) = (node.clone(), parts.backends.clone());
    tasks.spawn(scripts::supervise(
        node.clone(),
        |d| matches!(d.kind, SourceKind::AbuseMailbox(_)),
        move |definition, stopped| {
            let SourceKind::AbuseMailbox(spec) = definition.kind else {
                return tokio::spawn(async {});
            };
            let poll = abuse::poll(
                for_abuse.clone(),
                backends.clone(),
                definition.name,
                spec,
                stopped,
            );
            tokio::spawn(poll)
        },
        stopped.clone(),
    ));
    tasks.spawn(crate::maintenance::schedule(node.clone(), stopped.clone()));
    tasks.spawn(crate::directory::schedule(node.clone(), stopped.clone()));
    let (node, parts, workers) = (node.clone(), parts.clone(), workers.clone());
    tasks.spawn(async move { worker::run(node, &parts.backends, workers, term, stopped).await });
    (term, stop, tasks)
}

async fn stop_all(stop: watch::Sender<bool>, mut tasks: JoinSet<()>) {
    let _ = stop.send(true);
    while let Some(joined) = tasks.join_next().await {
        if let Err(e) = joined {
            tracing::error!(error = %e, "a leader task panicked");
        }
    }
}

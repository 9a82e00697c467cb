//! One Pullback node: its Raft group member, and, while it leads, the pollers that fetch
//! alerts and the workers that act on mailboxes.
//!
//! [`Node::start`] opens the store, starts Raft, and runs a supervisor that starts the
//! leader-only work when this node becomes leader and stops it when it steps down. Every
//! change goes through [`Node::propose`]; reads go through [`Node::reader`].

pub mod backends;
pub mod config;
mod leader;
pub mod metrics;
mod network;
mod sources;
mod worker;

pub use backends::Backends;
pub use config::{Config, Role};
pub use metrics::Metrics;

use openraft::{BasicNode, ServerState};
use pullback_domain::{Command, CommandResponse};
use pullback_store::{Raft, Reader};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

/// Why a command was not committed.
#[derive(Debug, thiserror::Error)]
pub enum ProposeError {
    #[error("this node is not the leader{}", leader_hint(.leader))]
    NotLeader { leader: Option<u64> },
    #[error("raft failed: {0}")]
    Raft(String),
}

fn leader_hint(leader: &Option<u64>) -> String {
    leader
        .map(|id| format!(" (node {id} is)"))
        .unwrap_or_default()
}

/// What the status endpoint and `cluster status` show about this node.
#[derive(Clone, Debug, Serialize)]
pub struct NodeStatus {
    pub id: u64,
    pub state: String,
    pub leader: Option<u64>,
    pub term: u64,
    pub last_log_index: Option<u64>,
    pub last_applied: Option<u64>,
    pub members: Vec<u64>,
}

/// Everything a node needs besides its configuration file: the pieces a test or the demo
/// may want to replace.
pub struct Parts {
    pub backends: Backends,
    pub sources: Vec<sources::Source>,
}

pub use sources::Source;

pub struct Node {
    pub id: u64,
    raft: Raft,
    reader: Reader,
    metrics: Metrics,
    /// Woken when new quarantine work was committed.
    work: Arc<Notify>,
    stop: watch::Sender<bool>,
    supervisor: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl Node {
    /// Opens the store in `config.node.data_dir`, starts Raft, forms a one-member group on
    /// first start, waits until this node leads, and starts the supervisor.
    pub async fn start(config: &Config, parts: Parts) -> anyhow::Result<Arc<Node>> {
        let id = config.node.id;
        let data_dir = &config.node.data_dir;
        tracing::info!(node = id, data_dir = %data_dir.display(), "opening the store");
        let (log_store, state_machine, reader) = pullback_store::open(data_dir)?;

        let raft_config = openraft::Config {
            cluster_name: "pullback".into(),
            heartbeat_interval: 250,
            election_timeout_min: 600,
            election_timeout_max: 1200,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(20_000),
            max_in_snapshot_log_to_keep: 2_000,
            ..Default::default()
        }
        .validate()?;
        let raft = Raft::new(
            id,
            Arc::new(raft_config),
            network::Network,
            log_store,
            state_machine,
        )
        .await?;
        if !raft.is_initialized().await? {
            tracing::info!(node = id, "forming a new one-member group");
            let mut members = BTreeMap::new();
            members.insert(id, BasicNode::new(config.node.listen.to_string()));
            raft.initialize(members).await?;
        }
        raft.wait(Some(Duration::from_secs(30)))
            .state(ServerState::Leader, "wait for leadership")
            .await
            .map_err(|e| anyhow::anyhow!("node {id} did not become leader: {e}"))?;

        let (stop, _) = watch::channel(false);
        let node = Arc::new(Node {
            id,
            raft,
            reader,
            metrics: Metrics::new(),
            work: Arc::new(Notify::new()),
            stop,
            supervisor: std::sync::Mutex::new(None),
        });
        node.sync_match_conditions(config).await?;
        let supervisor = leader::supervise(node.clone(), Arc::new(parts), config.workers.clone());
        *node.supervisor.lock().expect("supervisor lock") = Some(tokio::spawn(supervisor));
        tracing::info!(node = id, "node started");
        Ok(node)
    }

    /// Commits a command through the Raft log and returns what applying it produced.
    pub async fn propose(&self, command: Command) -> Result<CommandResponse, ProposeError> {
        let name = command.name();
        let result = self.raft.client_write(command).await;
        let outcome = match &result {
            Ok(r) if r.data.refused.is_some() => "refused",
            Ok(_) => "ok",
            Err(_) => "error",
        };
        self.metrics
            .proposals
            .with_label_values(&[name, outcome])
            .inc();
        match result {
            Ok(response) => {
                if !response.data.jobs.is_empty() {
                    self.work.notify_waiters();
                }
                Ok(response.data)
            }
            Err(openraft::error::RaftError::APIError(
                openraft::error::ClientWriteError::ForwardToLeader(forward),
            )) => Err(ProposeError::NotLeader {
                leader: forward.leader_id,
            }),
            Err(e) => Err(ProposeError::Raft(e.to_string())),
        }
    }

    pub fn reader(&self) -> &Reader {
        &self.reader
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Whether this node can serve: it has a leader it knows of.
    pub fn is_ready(&self) -> bool {
        self.raft.metrics().borrow().current_leader.is_some()
    }

    pub fn status(&self) -> NodeStatus {
        let m = self.raft.metrics().borrow().clone();
        let state = match m.state {
            ServerState::Leader => "leader",
            ServerState::Follower => "follower",
            ServerState::Candidate => "candidate",
            ServerState::Learner => "learner",
            ServerState::Shutdown => "shutdown",
        };
        NodeStatus {
            id: self.id,
            state: state.into(),
            leader: m.current_leader,
            term: m.current_term,
            last_log_index: m.last_log_index,
            last_applied: m.last_applied.map(|l| l.index),
            members: m.membership_config.membership().voter_ids().collect(),
        }
    }

    /// Refreshes the Raft gauges; called before metrics are rendered.
    pub fn refresh_gauges(&self) {
        let status = self.status();
        let raft = &self.metrics.raft;
        raft.with_label_values(&["term"]).set(status.term as i64);
        raft.with_label_values(&["last_log_index"])
            .set(status.last_log_index.unwrap_or(0) as i64);
        raft.with_label_values(&["last_applied"])
            .set(status.last_applied.unwrap_or(0) as i64);
        raft.with_label_values(&["is_leader"])
            .set((status.state == "leader") as i64);
    }

    /// Stops the leader work (letting in-flight mailbox operations finish), then Raft.
    pub async fn shutdown(&self) {
        tracing::info!(node = self.id, "shutting down");
        let _ = self.stop.send(true);
        let supervisor = self.supervisor.lock().expect("supervisor lock").take();
        if let Some(handle) = supervisor {
            let _ = handle.await;
        }
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(node = self.id, error = %e, "raft did not shut down cleanly");
        }
    }

    /// Writes the configuration file's match conditions into the replicated state where they
    /// differ, so the file stays the source of truth for the conditions it names.
    async fn sync_match_conditions(&self, config: &Config) -> anyhow::Result<()> {
        let stored = self.reader.match_conditions()?;
        for condition in &config.match_conditions {
            if stored.iter().any(|s| s == condition) {
                continue;
            }
            tracing::info!(condition = %condition.name, "storing match condition from config");
            let command = Command::PutMatchCondition {
                condition: condition.clone(),
            };
            let response = self.propose(command).await?;
            if let Some(reason) = response.refused {
                anyhow::bail!("match condition {:?} refused: {reason}", condition.name);
            }
        }
        Ok(())
    }
}

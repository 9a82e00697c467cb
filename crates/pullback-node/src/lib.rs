//! One Pullback node: its Raft group member, and, while it leads, the pollers that fetch
//! alerts and the workers that act on mailboxes.
//!
//! [`Node::start`] opens the store, starts Raft, and runs a supervisor that starts the
//! leader-only work when this node becomes leader and stops it when it steps down. Every
//! change goes through [`Node::propose`]; reads go through [`Node::reader`].

mod abuse;
pub mod backends;
pub mod cluster;
pub mod config;
pub mod directory;
pub mod graph;
mod leader;
pub mod maintenance;
pub mod metrics;
mod network;
pub mod oidc;
mod scripts;
mod sources;
mod worker;

pub use backends::Backends;
pub use cluster::{Admission, ClusterStatus, JoinRequest, JoinToken, MemberStatus};
pub use config::{Config, Role};
pub use metrics::Metrics;

use openraft::ServerState;
use pullback_cluster::{NodeIdentity, PeerNetwork};
use pullback_domain::{COMMAND_LEVEL, Command, CommandResponse, Timestamp};
use pullback_store::{Member, Raft, Reader};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, Semaphore, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

/// How often the leader sends heartbeats.
const HEARTBEAT_MS: u64 = 100;
/// The longest a follower waits without a heartbeat before it calls an election; also how
/// long it refuses to vote for anyone else after hearing from a leader.
pub(crate) const ELECTION_TIMEOUT_MAX_MS: u64 = 500;
/// How long a write may wait for a leader and a majority before the caller is told.
const PROPOSE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a read may wait to confirm that its answer is current.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// The most commands grouped into one log entry.
const MAX_GROUP: usize = 512;
/// The most alerts grouped into one entry. openraft gives an append one heartbeat interval
/// to reach a follower and be stored, so entries must stay small enough to make it.
const MAX_GROUP_ALERTS: usize = 2_000;
/// How many grouped entries may be in flight at once. openraft 0.9 holds its core while the
/// leader's own append is synced, so entries do not overlap much on the leader: two let one
/// entry replicate while the next is appended. One and two measured the same, four lower
/// (smaller entries, as many syncs; docs/performance.md).
const GROUPS_IN_FLIGHT: usize = 2;

/// Why a command was not committed or a read cannot be answered.
#[derive(Clone, Debug, thiserror::Error, Serialize, serde::Deserialize)]
pub enum ProposeError {
    #[error("this node is not the leader{}", leader_hint(.leader))]
    NotLeader { leader: Option<u64> },
    /// No leader, no majority, or the leader cannot be reached: try again later.
    #[error("{0}")]
    Unavailable(String),
    /// The cluster understood and said no.
    #[error("{0}")]
    Refused(String),
    #[error("raft failed: {0}")]
    Raft(String),
}

fn leader_hint(leader: &Option<u64>) -> String {
    leader
        .map(|id| format!(" (node {id} is)"))
        .unwrap_or_default()
}

/// What the status endpoint shows about this node.
#[derive(Clone, Debug, Serialize)]
pub struct NodeStatus {
    pub id: u64,
    pub state: String,
    pub leader: Option<u64>,
    pub term: u64,
    pub last_log_index: Option<u64>,
    pub last_applied: Option<u64>,
    pub members: Vec<u64>,
    /// Since when, and for which term, this node runs the leader's pollers and workers;
    /// `None` when it does not (a follower, or a leader that lost touch with its majority).
    pub leader_work: Option<LeaderWork>,
}

#[derive(Clone, Copy, Debug, Serialize)]
pub struct LeaderWork {
    pub term: u64,
    pub started_at: Timestamp,
}

/// Everything a node needs besides its configuration file: the pieces a test or the demo
/// may want to replace.
pub struct Parts {
    pub backends: Arc<Backends>,
    pub sources: Vec<sources::Source>,
}

pub use sources::Source;

/// A command waiting to be grouped with others into one log entry.
pub(crate) struct Pending {
    command: Command,
    reply: oneshot::Sender<Result<CommandResponse, ProposeError>>,
}

pub struct Node {
    pub id: u64,
    raft: Raft,
    reader: Reader,
    metrics: Metrics,
    /// Woken when new quarantine work was committed.
    work: Arc<Notify>,
    stop: watch::Sender<bool>,
    supervisor: Mutex<Option<JoinHandle<()>>>,
    /// Tasks that end with the node: the Raft server, joining, syncing configuration.
    background: Mutex<Vec<JoinHandle<()>>>,
    /// The mutual-TLS client for peers; `None` when the node runs alone.
    peers: Option<reqwest::Client>,
    /// Where proposals on the leader wait to be grouped.
    group: mpsc::Sender<Pending>,
    /// Where proposals on a follower wait to be sent to the leader together.
    forward: mpsc::Sender<Pending>,
    leader_work: Mutex<Option<LeaderWork>>,
    /// Names of the TAP sources the configuration file defines.
    tap_sources: Vec<String>,
    /// Backup targets and the thresholds of recommendations.
    pub maintenance: maintenance::Maintenance,
    /// Where the directory is imported from, if anywhere.
    pub directory: Option<directory::DirectorySection>,
    /// The leader's last directory import, for the next one to read only changes.
    directory_cache: tokio::sync::Mutex<Option<directory::DirectoryCache>>,
}

impl Node {
    /// Opens the store in `<data_dir>/db` and starts Raft. Alone (no `[cluster]` section), it
    /// forms a one-member group on first start and waits until it leads. In a cluster, it
    /// serves Raft to its peers, creates the group if this node created the cluster, or asks
    /// to be added if it joined, and returns without waiting for a leader.
    pub async fn start(config: &Config, parts: Parts) -> anyhow::Result<Arc<Node>> {
        let id = config.node.id;
        // The store holds the cluster CA key and every alert: nobody else may look inside.
        let data_dir = &config.node.data_dir;
        std::fs::create_dir_all(data_dir)?;
        std::fs::set_permissions(
            data_dir,
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .map_err(|e| anyhow::anyhow!("cannot make {} private: {e}", data_dir.display()))?;
        let maintenance = maintenance::Maintenance::new(
            &config.backup_targets,
            config.maintenance.clone(),
            data_dir,
        )
        .map_err(anyhow::Error::msg)?;
        let store_dir = config.node.store_dir();
        tracing::info!(node = id, store = %store_dir.display(), "opening the store");
        let memory = pullback_store::StoreMemory {
            megabytes: config.node.store_memory_mb,
        };
        let (log_store, state_machine, reader) = pullback_store::open_with(&store_dir, memory)?;
        let level = reader.cluster_level()?;
        if level > COMMAND_LEVEL {
            anyhow::bail!(
                "this release of pullback ({}) applies commands up to level {COMMAND_LEVEL}, but \
                 the cluster in {} was finalized at level {level} by a newer release: run that \
                 release or a later one on this node",
                env!("CARGO_PKG_VERSION"),
                store_dir.display()
            );
        }

        let (network, identity, peers) = match &config.cluster {
            None => (network::Network::Alone, None, None),
            Some(cluster) => {
                let dir = config.node.cluster_dir();
                let identity = NodeIdentity::read_from(&dir).map_err(|e| {
                    anyhow::anyhow!(
                        "this node has no cluster identity in {} ({e}); run `pullback cluster \
                         init` on the first node or `pullback cluster join` on the others",
                        dir.display()
                    )
                })?;
                let local = Some(cluster.raft_listen.ip()).filter(|ip| !ip.is_unspecified());
                let network = PeerNetwork::new(id, &identity, local)?;
                let peers = pullback_cluster::peer_client(&identity, local)?;
                (
                    network::Network::Peers(network),
                    Some(identity),
                    Some(peers),
                )
            }
        };
        let snapshot_logs = config.cluster.as_ref().map_or(20_000, |c| c.snapshot_logs);
        let raft_config = openraft::Config {
            cluster_name: "pullback".into(),
            // A follower refuses to vote until `election_timeout_max` has passed since it last
            // heard from a leader (openraft's leader lease), so failover takes between one and
            // two of these; a narrow range keeps it short.
            heartbeat_interval: HEARTBEAT_MS,
            election_timeout_min: 350,
            election_timeout_max: ELECTION_TIMEOUT_MAX_MS,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(snapshot_logs),
            max_in_snapshot_log_to_keep: snapshot_logs.min(2_000),
            // Appends must fit in one heartbeat interval (see MAX_GROUP_ALERTS).
            max_payload_entries: 32,
            ..Default::default()
        }
        .validate()?;
        let raft = Raft::new(id, Arc::new(raft_config), network, log_store, state_machine).await?;

        let (stop, _) = watch::channel(false);
        let (group, grouped) = mpsc::channel(MAX_GROUP * GROUPS_IN_FLIGHT);
        let (forward, forwarded) = mpsc::channel(MAX_GROUP * GROUPS_IN_FLIGHT);
        let node = Arc::new(Node {
            id,
            raft: raft.clone(),
            reader,
            metrics: Metrics::new(),
            work: Arc::new(Notify::new()),
            stop,
            supervisor: Mutex::new(None),
            background: Mutex::new(Vec::new()),
            peers,
            group,
            forward,
            leader_work: Mutex::new(None),
            tap_sources: parts.sources.iter().map(|s| s.name.clone()).collect(),
            maintenance,
            directory: config.directory.clone(),
            directory_cache: tokio::sync::Mutex::new(None),
        });
        let leader_raft = raft.clone();
        let metrics = node.metrics.clone();
        node.spawn_background(run_groups(grouped, move |commands| {
            commit_group(leader_raft.clone(), metrics.clone(), commands)
        }));
        if node.peers.is_some() {
            node.spawn_background(cluster::forward_groups(node.clone(), forwarded));
        }

        match (&config.cluster, identity) {
            (Some(cluster), Some(identity)) => {
                node.start_in_cluster(config, cluster, identity).await?;
            }
            _ => {
                if !raft.is_initialized().await? {
                    tracing::info!(node = id, "forming a new one-member group");
                    raft.initialize(BTreeMap::from([(id, Member::default())]))
                        .await?;
                }
                raft.wait(Some(Duration::from_secs(30)))
                    .state(ServerState::Leader, "wait for leadership")
                    .await
                    .map_err(|e| anyhow::anyhow!("node {id} did not become leader: {e}"))?;
                node.sync_config(config).await?;
            }
        }

        let supervisor = leader::supervise(node.clone(), Arc::new(parts), config.workers.clone());
        *node.supervisor.lock().expect("supervisor lock") = Some(tokio::spawn(supervisor));
        tracing::info!(node = id, "node started");
        Ok(node)
    }

    async fn start_in_cluster(
        self: &Arc<Node>,
        config: &Config,
        cluster: &config::ClusterSection,
        identity: NodeIdentity,
    ) -> anyhow::Result<()> {
        let listener = tokio::net::TcpListener::bind(cluster.raft_listen)
            .await
            .map_err(|e| {
                anyhow::anyhow!("cannot listen for Raft on {}: {e}", cluster.raft_listen)
            })?;
        let router = pullback_cluster::raft_router(self.raft.clone())
            .merge(cluster::peer_routes(self.clone()));
        let mut stopped = self.stop.subscribe();
        let shutdown = async move {
            let _ = stopped.changed().await;
        };
        tracing::info!(node = self.id, address = %cluster.raft_listen, "serving Raft over mutual TLS");
        self.spawn_background(async move {
            if let Err(e) =
                pullback_cluster::serve_raft(listener, &identity, router, shutdown).await
            {
                tracing::error!(error = %e, "the Raft server stopped");
            }
        });

        let me = Member {
            raft: cluster.raft_address(),
            api: cluster.api_address(config.node.listen),
        };
        let dir = config.node.cluster_dir();
        let mut created = false;
        if !self.raft.is_initialized().await? {
            if cluster::created_here(&dir) {
                tracing::info!(node = self.id, "creating the cluster's group");
                self.raft
                    .initialize(BTreeMap::from([(self.id, me.clone())]))
                    .await?;
                created = true;
            } else {
                let seeds = cluster::read_seeds(&dir);
                if seeds.is_empty() {
                    anyhow::bail!(
                        "this node joined no cluster: {} has no seeds; run `pullback cluster join`",
                        dir.display()
                    );
                }
                tracing::info!(
                    node = self.id,
                    ?seeds,
                    "asking the cluster to add this node"
                );
                self.spawn_background(cluster::ask_to_join(self.clone(), me.clone(), seeds));
            }
        }
        if cluster::created_here(&dir) {
            let ca = pullback_cluster::ClusterCa::read_from(&dir)?;
            let (cert_pem, key_pem) = ca.to_pem();
            let command = Command::SetClusterCa {
                cert_pem,
                key_pem: pullback_domain::Secret(key_pem),
            };
            let store = settle(self.clone(), "storing the cluster CA", vec![command]);
            if created {
                // A new cluster admits nobody until its CA is stored: do it before serving.
                tokio::time::timeout(PROPOSE_TIMEOUT, store)
                    .await
                    .map_err(|_| anyhow::anyhow!("the new cluster could not store its CA"))?;
                if cluster::was_forced(&dir) {
                    self.cover_kept_state(&dir).await?;
                }
            } else {
                self.spawn_background(store);
            }
        }
        let commands = config_commands(config)?;
        self.spawn_background(settle(
            self.clone(),
            "storing match conditions and sources",
            commands,
        ));
        Ok(())
    }

    /// After `cluster force-new-cluster`, the state holds records no log entry of the new
    /// group carries. A snapshot of it, with the log purged up to it, makes every node that
    /// joins later start from that snapshot instead of replaying an incomplete log.
    async fn cover_kept_state(&self, dir: &std::path::Path) -> anyhow::Result<()> {
        tracing::info!(
            node = self.id,
            "covering the state kept from the old cluster with a snapshot"
        );
        self.raft.trigger().snapshot().await?;
        let metrics = self
            .raft
            .wait(Some(Duration::from_secs(60)))
            .metrics(|m| m.snapshot.is_some(), "a snapshot of the kept state")
            .await
            .map_err(|e| anyhow::anyhow!("no snapshot of the kept state: {e}"))?;
        if let Some(snapshot) = metrics.snapshot {
            self.raft.trigger().purge_log(snapshot.index).await?;
        }
        cluster::forced_done(dir);
        Ok(())
    }

    fn spawn_background(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        let handle = tokio::spawn(task);
        self.background
            .lock()
            .expect("background lock")
            .push(handle);
    }

    /// Commits a command through the Raft log and returns what applying it produced. On a
    /// follower the command is forwarded to the leader. Gives up with
    /// [`ProposeError::Unavailable`] when no leader with a majority answers in time.
    pub async fn propose(&self, command: Command) -> Result<CommandResponse, ProposeError> {
        let name = command.name();
        if let Err(e) = self.check_level(&command) {
            let result = Err(e);
            self.count(name, &result);
            return result;
        }
        let result =
            match tokio::time::timeout(PROPOSE_TIMEOUT, self.propose_anywhere(command)).await {
                Ok(result) => result,
                Err(_) => Err(ProposeError::Unavailable(format!(
                    "the change was not committed within {}s: the cluster has no leader with a \
                 majority; it may still be committed later",
                    PROPOSE_TIMEOUT.as_secs()
                ))),
            };
        self.count(name, &result);
        result
    }

    async fn propose_anywhere(&self, command: Command) -> Result<CommandResponse, ProposeError> {
        loop {
            if self.leader_is_here() {
                match self.propose_here(command.clone()).await {
                    // Leadership moved between the check and the write: nothing was appended.
                    Err(ProposeError::NotLeader { .. }) => {}
                    result => return result,
                }
            } else if self.peers.is_some() && self.raft.metrics().borrow().current_leader.is_some()
            {
                // Once sent, a forwarded write may have been committed even if the answer is
                // lost, so it is not retried here: the caller decides.
                let (reply, answer) = oneshot::channel();
                self.forward
                    .send(Pending { command, reply })
                    .await
                    .map_err(|_| ProposeError::Unavailable("the node is shutting down".into()))?;
                return answer
                    .await
                    .map_err(|_| ProposeError::Unavailable("the node is shutting down".into()))?;
            }
            self.wait_for_leader().await;
        }
    }

    /// Commits a command on this node, which must be the leader; nothing is forwarded. The
    /// leader's own work proposes this way, so a deposed leader's writes fail instead of
    /// reaching its successor.
    pub async fn propose_local(&self, command: Command) -> Result<CommandResponse, ProposeError> {
        let name = command.name();
        let result = match tokio::time::timeout(PROPOSE_TIMEOUT, self.propose_here(command)).await {
            Ok(result) => result,
            Err(_) => Err(ProposeError::Unavailable(
                "this leader could not commit within the time allowed; it may have lost its majority"
                    .into(),
            )),
        };
        self.count(name, &result);
        result
    }

    pub(crate) async fn propose_here(
        &self,
        command: Command,
    ) -> Result<CommandResponse, ProposeError> {
        self.check_level(&command)?;
        let (reply, answer) = oneshot::channel();
        self.group
            .send(Pending { command, reply })
            .await
            .map_err(|_| ProposeError::Unavailable("the node is shutting down".into()))?;
        let response = answer
            .await
            .map_err(|_| ProposeError::Unavailable("the node is shutting down".into()))??;
        if !response.jobs.is_empty() {
            self.work.notify_waiters();
        }
        Ok(response)
    }

    /// Refuses a command above the cluster's command level before it reaches the log, where
    /// members of an older release could not read it (see [`COMMAND_LEVEL`]). A follower
    /// checks too, so that its other forwarded commands do not fail with it at an older
    /// leader.
    fn check_level(&self, command: &Command) -> Result<(), ProposeError> {
        let refusal = command.refusal_by_level(|| {
            self.reader.cluster_level().map_err(|e| {
                ProposeError::Unavailable(format!("reading the cluster's command level: {e}"))
            })
        })?;
        match refusal {
            Some(why) => Err(ProposeError::Refused(why)),
            None => Ok(()),
        }
    }

    fn count(&self, name: &str, result: &Result<CommandResponse, ProposeError>) {
        let outcome = match result {
            Ok(r) if r.refused.is_some() => "refused",
            Ok(_) => "ok",
            Err(_) => "error",
        };
        self.metrics
            .proposals
            .with_label_values(&[name, outcome])
            .inc();
    }

    async fn wait_for_leader(&self) {
        let _ = self
            .raft
            .wait(Some(Duration::from_millis(500)))
            .metrics(|m| m.current_leader.is_some(), "a leader is known")
            .await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    fn leader_is_here(&self) -> bool {
        self.raft.metrics().borrow().current_leader == Some(self.id)
    }

    fn require_leader(&self) -> Result<(), ProposeError> {
        if self.leader_is_here() {
            Ok(())
        } else {
            Err(ProposeError::NotLeader {
                leader: self.raft.metrics().borrow().current_leader,
            })
        }
    }

    /// Resolves when this node's Raft has stopped by itself (a fatal storage error or a
    /// panic in its core), with the reason. The node cannot recover from that while running;
    /// the server exits so that its supervisor (systemd) starts it again.
    pub async fn raft_failed(&self) -> String {
        let mut metrics = self.raft.metrics();
        loop {
            if let Err(e) = &metrics.borrow_and_update().running_state {
                return e.to_string();
            }
            if metrics.changed().await.is_err() {
                return "raft stopped".into();
            }
        }
    }

    /// Whether this node votes in the group.
    pub fn is_voter(&self) -> bool {
        self.raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .voter_ids()
            .any(|id| id == self.id)
    }

    /// Whether this node is in the group's membership.
    pub fn is_member(&self) -> bool {
        self.raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .get_node(&self.id)
            .is_some()
    }

    /// Waits until this node has applied everything the leader had committed when the call
    /// began, so that a read that follows sees every write acknowledged before it (the Raft
    /// read index). Fails when no leader with a majority confirms in time.
    pub async fn read_barrier(&self) -> Result<(), ProposeError> {
        if self.peers.is_none() {
            return Ok(());
        }
        let index = if self.leader_is_here() {
            self.read_index_here().await?
        } else if self.raft.metrics().borrow().current_leader.is_some() {
            tokio::time::timeout(
                READ_TIMEOUT,
                self.call_leader::<_, Option<u64>>("read-index", &()),
            )
            .await
            .map_err(|_| no_quorum())??
        } else {
            return Err(no_quorum());
        };
        if let Some(index) = index {
            self.raft
                .wait(Some(READ_TIMEOUT))
                .applied_index_at_least(Some(index), "read index applied")
                .await
                .map_err(|_| {
                    ProposeError::Unavailable(format!(
                        "this node has not caught up with the leader (index {index}); try again"
                    ))
                })?;
        }
        Ok(())
    }

    /// On the leader: confirms leadership with a majority and returns the index a read must
    /// wait for.
    async fn read_index_here(&self) -> Result<Option<u64>, ProposeError> {
        match tokio::time::timeout(READ_TIMEOUT, self.raft.get_read_log_id()).await {
            Ok(Ok((read, _applied))) => Ok(read.map(|l| l.index)),
            Ok(Err(e)) => {
                tracing::debug!(node = self.id, error = %e, "read index refused");
                Err(no_quorum())
            }
            Err(_) => Err(no_quorum()),
        }
    }

    /// Names of the TAP sources the configuration file defines.
    pub fn tap_sources(&self) -> &[String] {
        &self.tap_sources
    }

    pub fn reader(&self) -> &Reader {
        &self.reader
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Whether this node can serve: its Raft runs, it knows a leader, and if it is that
    /// leader it heard from a majority lately (or it is alone).
    pub fn is_ready(&self) -> bool {
        let m = self.raft.metrics().borrow().clone();
        if m.running_state.is_err() {
            return false;
        }
        match m.current_leader {
            None => false,
            Some(leader) if leader == self.id => {
                m.membership_config.membership().voter_ids().count() <= 1
                    || m.millis_since_quorum_ack.is_some_and(|ms| ms < 1_000)
            }
            Some(_) => true,
        }
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
            leader_work: *self.leader_work.lock().expect("leader work lock"),
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
        for (name, bytes) in self.reader.memory_usage() {
            self.metrics
                .store_memory
                .with_label_values(&[name])
                .set(bytes as i64);
        }
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
        let background = std::mem::take(&mut *self.background.lock().expect("background lock"));
        for handle in background {
            handle.abort();
            let _ = handle.await;
        }
    }

    /// Writes the configuration file's match conditions and sources into the replicated state
    /// where they differ, so the file stays the source of truth for what it names.
    async fn sync_config(&self, config: &Config) -> anyhow::Result<()> {
        for command in config_commands(config)? {
            if in_effect(self, &command).await {
                continue;
            }
            tracing::info!(
                command = command.name(),
                "storing configuration from the file"
            );
            let response = self.propose(command).await?;
            if let Some(reason) = response.refused {
                anyhow::bail!("the configuration file was refused: {reason}");
            }
        }
        Ok(())
    }
}

fn no_quorum() -> ProposeError {
    ProposeError::Unavailable(
        "no quorum: this node cannot reach a majority of the cluster, so it cannot tell \
         whether its data is current"
            .into(),
    )
}

/// Proposes each command until it is committed or found already in effect; used for state
/// a node brings at start (its configuration's match conditions, the cluster CA) when no
/// leader may be known yet.
async fn settle(node: Arc<Node>, what: &'static str, commands: Vec<Command>) {
    let mut stop = node.stop.subscribe();
    for command in commands {
        loop {
            if in_effect(&node, &command).await {
                break;
            }
            match node.propose(command.clone()).await {
                Ok(response) => {
                    if let Some(reason) = response.refused {
                        tracing::error!(node = node.id, what, %reason, "refused");
                    }
                    break;
                }
                Err(e) => tracing::info!(node = node.id, what, error = %e, "will retry"),
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = stop.changed() => return,
            }
        }
    }
}

/// The commands that store the configuration file's match conditions and the sources it
/// defines for the replicated state.
fn config_commands(config: &Config) -> anyhow::Result<Vec<Command>> {
    // The release first: the cluster learns what this node can apply as soon as it can.
    let mut commands = vec![this_release(config.node.id)];
    commands.extend(
        config
            .match_conditions
            .iter()
            .map(|condition| Command::PutMatchCondition {
                condition: condition.clone(),
            }),
    );
    for source in &config.sources {
        if let Some(source) = source.definition().map_err(anyhow::Error::msg)? {
            commands.push(Command::PutSource { source });
        }
    }
    let now = chrono::Utc::now();
    for user in &config.users {
        commands.push(Command::PutUser {
            user: pullback_domain::User {
                name: user.name.clone(),
                role: user.role,
                password_hash: pullback_domain::Secret(user.password_hash.clone()),
                disabled: false,
                created_at: now,
                updated_at: now,
            },
        });
    }
    Ok(commands)
}

/// What node `id` reports about itself: this build's version and command level.
fn this_release(node_id: u64) -> Command {
    Command::ReportRelease {
        node_id,
        level: COMMAND_LEVEL,
        version: env!("CARGO_PKG_VERSION").to_owned(),
    }
}

/// Whether `command` would change nothing, as far as the current state says.
async fn in_effect(node: &Node, command: &Command) -> bool {
    if node.read_barrier().await.is_err() {
        return false;
    }
    match command {
        Command::PutMatchCondition { condition } => node
            .reader
            .match_conditions()
            .is_ok_and(|stored| stored.contains(condition)),
        Command::PutSource { source } => node
            .reader
            .source(&source.name)
            .is_ok_and(|stored| stored.as_ref() == Some(source)),
        // The file's account is in effect when it exists as written; its times do not matter.
        Command::PutUser { user } => node.reader.user(&user.name).is_ok_and(|stored| {
            stored.is_some_and(|s| {
                s.role == user.role && s.password_hash == user.password_hash && !s.disabled
            })
        }),
        Command::ReportRelease {
            node_id,
            level,
            version,
        } => node.reader.releases().is_ok_and(|releases| {
            releases
                .get(node_id)
                .is_some_and(|r| r.level == *level && &r.version == version)
        }),
        Command::SetClusterCa { cert_pem, .. } => node
            .reader
            .cluster_ca()
            .is_ok_and(|stored| stored.is_some_and(|ca| &ca.cert_pem == cert_pem)),
        _ => false,
    }
}

/// The answers to a group of commands, in order, or why none was given.
type GroupAnswer = Result<Vec<Result<CommandResponse, ProposeError>>, ProposeError>;

/// Sends the proposals waiting in `waiting` through `send` in groups, at most
/// [`GROUPS_IN_FLIGHT`] at once: whatever is waiting when a slot frees goes into one group
/// (up to [`MAX_GROUP`] commands or [`MAX_GROUP_ALERTS`] alerts), so under load one round
/// serves many commands and a lone command is not delayed. Each caller gets its command's
/// answer, or the group's failure.
pub(crate) async fn run_groups<F, Fut>(mut waiting: mpsc::Receiver<Pending>, send: F)
where
    F: Fn(Vec<Command>) -> Fut,
    Fut: std::future::Future<Output = GroupAnswer> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(GROUPS_IN_FLIGHT));
    while let Some(first) = waiting.recv().await {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let mut weight = weight_of(&first.command);
        let mut group = vec![first];
        while group.len() < MAX_GROUP && weight < MAX_GROUP_ALERTS {
            match waiting.try_recv() {
                Ok(next) => {
                    weight += weight_of(&next.command);
                    group.push(next);
                }
                Err(_) => break,
            }
        }
        let (commands, replies): (Vec<_>, Vec<_>) =
            group.into_iter().map(|p| (p.command, p.reply)).unzip();
        let sent = send(commands);
        tokio::spawn(async move {
            let _slot = slot;
            match sent.await {
                Ok(answers) => {
                    for (reply, answer) in replies.into_iter().zip(answers) {
                        let _ = reply.send(answer);
                    }
                }
                Err(e) => {
                    for reply in replies {
                        let _ = reply.send(Err(e.clone()));
                    }
                }
            }
        });
    }
}

/// Roughly how much a command adds to an entry: its alerts, or one.
fn weight_of(command: &Command) -> usize {
    match command {
        Command::IngestAlerts { drafts, .. } => drafts.len().max(1),
        Command::Audited { command, .. } => weight_of(command),
        _ => 1,
    }
}

/// Commits a group of commands on the leader as one log entry (a lone command as itself).
async fn commit_group(raft: Raft, metrics: Metrics, mut commands: Vec<Command>) -> GroupAnswer {
    metrics.group_commands.observe(commands.len() as f64);
    let _timer = metrics.commit_seconds.start_timer();
    if commands.len() == 1 {
        let response = write(&raft, commands.remove(0)).await?;
        return Ok(vec![Ok(response)]);
    }
    let response = write(&raft, Command::Batch { commands }).await?;
    Ok(response.batch.into_iter().map(Ok).collect())
}

async fn write(raft: &Raft, command: Command) -> Result<CommandResponse, ProposeError> {
    match raft.client_write(command).await {
        Ok(response) => Ok(response.data),
        Err(openraft::error::RaftError::APIError(
            openraft::error::ClientWriteError::ForwardToLeader(forward),
        )) => Err(ProposeError::NotLeader {
            leader: forward.leader_id,
        }),
        Err(e) => Err(ProposeError::Raft(e.to_string())),
    }
}

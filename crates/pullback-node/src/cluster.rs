//! The node's part in a cluster: the calls peers make to each other besides Raft itself
//! (forwarded writes, read indexes, membership changes, the leader's view of replication),
//! admitting new members with a join token, and the files a member keeps.
//!
//! Peer calls travel over the Raft port, so they are mutually authenticated with cluster
//! certificates like the Raft RPCs. A follower forwards to the leader it knows; the leader
//! never forwards further, so a call crosses at most one hop.

use crate::{Node, ProposeError};
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use openraft::ChangeMembers;
use pullback_cluster::{ClusterCa, NodeIdentity, PeerIdentity};
use pullback_domain::{Command, CommandResponse};
use pullback_store::{Member, NodeId, NodeRelease};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// The seeds file a joining node keeps until it is a member: Raft addresses of the members
/// at the time it was admitted.
const SEEDS_FILE: &str = "seeds.json";
/// How long a new learner has to receive the log before it is refused a vote.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a membership change may take; adding a learner waits until it caught up.
const MEMBERSHIP_TIMEOUT: Duration = Duration::from_secs(120);

/// What `cluster status` shows.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// The node that answered.
    pub answered_by: NodeId,
    /// Whether the figures below come from the leader (otherwise from a follower that could
    /// not reach it, and replication lag is unknown).
    pub from_leader: bool,
    pub leader: Option<NodeId>,
    pub term: u64,
    pub last_log_index: Option<u64>,
    pub applied: Option<u64>,
    /// The cluster's command level: commands up to it may be proposed.
    #[serde(default = "base_level")]
    pub level: u32,
    pub members: Vec<MemberStatus>,
}

fn base_level() -> u32 {
    pullback_domain::BASE_LEVEL
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MemberStatus {
    pub id: NodeId,
    /// `leader`, `voter` or `learner`.
    pub role: String,
    pub raft: String,
    pub api: String,
    /// The last log index the leader knows this member holds.
    pub matched: Option<u64>,
    /// How many entries it is behind the leader's log.
    pub lag: Option<u64>,
    /// The release it last reported, with the newest command level it applies.
    #[serde(default)]
    pub release: Option<NodeRelease>,
}

impl ClusterStatus {
    /// The command level every member's release applies, which an upgrade raises the cluster
    /// to once it is finished; or which members hold it back: those that have not reported a
    /// release, and those that run an older one than the others.
    pub fn common_level(&self) -> Result<u32, String> {
        let silent: Vec<String> = self
            .members
            .iter()
            .filter(|m| m.release.is_none())
            .map(|m| format!("node {}", m.id))
            .collect();
        if !silent.is_empty() {
            return Err(format!("no release reported yet by {}", silent.join(", ")));
        }
        let releases = self
            .members
            .iter()
            .filter_map(|m| Some((m.id, m.release.as_ref()?)));
        let newest = releases.clone().map(|(_, r)| r.level).max();
        let behind: Vec<String> = releases
            .filter(|(_, r)| Some(r.level) < newest)
            .map(|(id, r)| format!("node {id} runs {} (level {})", r.version, r.level))
            .collect();
        match newest {
            Some(newest) if behind.is_empty() => Ok(newest),
            Some(newest) => Err(format!(
                "the upgrade is not finished: {}; upgrade them to a release of command level \
                 {newest} first",
                behind.join(", ")
            )),
            None => Ok(self.level),
        }
    }
}

/// What a joining node sends with its token.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JoinRequest {
    pub token: String,
    pub node_id: NodeId,
    pub member: Member,
    /// The names its certificate must cover.
    pub names: Vec<String>,
}

/// What an admitted node receives.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Admission {
    pub cert_pem: String,
    pub key_pem: String,
    pub ca_pem: String,
    /// Raft addresses of the members, to ask to be added once the node runs.
    pub seeds: Vec<String>,
}

/// A join token as handed to an operator: `pbj1.<secret>.<CA fingerprint>`. The secret
/// admits one node; the fingerprint lets the joining node check it talks to this cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinToken {
    pub secret: String,
    pub ca_fingerprint: String,
}

impl JoinToken {
    const PREFIX: &'static str = "pbj1";

    pub fn parse(text: &str) -> Result<JoinToken, String> {
        let mut parts = text.trim().split('.');
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(JoinToken::PREFIX), Some(secret), Some(fingerprint), None)
                if is_hex(secret, 64) && is_hex(fingerprint, 64) =>
            {
                Ok(JoinToken {
                    secret: secret.to_owned(),
                    ca_fingerprint: fingerprint.to_ascii_lowercase(),
                })
            }
            _ => Err("a join token looks like pbj1.<64 hex digits>.<64 hex digits>".into()),
        }
    }

    /// What the cluster stores instead of the secret.
    pub fn secret_sha256(&self) -> String {
        use sha2::{Digest, Sha256};
        hex::encode(Sha256::digest(self.secret.to_ascii_lowercase().as_bytes()))
    }
}

impl std::fmt::Display for JoinToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}.{}.{}",
            JoinToken::PREFIX,
            self.secret,
            self.ca_fingerprint
        )
    }
}

/// The most names one node certificate may carry.
const MAX_NAMES: usize = 16;

/// An IP address, or a DNS name of letters, digits and hyphens (no wildcard).
fn is_certificate_name(name: &str) -> bool {
    if name.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

fn is_hex(text: &str, len: usize) -> bool {
    text.len() == len && text.chars().all(|c| c.is_ascii_hexdigit())
}

/// Writes the seeds a joining node will ask to be added by.
pub fn write_seeds(cluster_dir: &Path, seeds: &[String]) -> std::io::Result<()> {
    let text = serde_json::to_string_pretty(seeds).map_err(std::io::Error::other)?;
    std::fs::write(cluster_dir.join(SEEDS_FILE), text)
}

pub(crate) fn read_seeds(cluster_dir: &Path) -> Vec<String> {
    std::fs::read(cluster_dir.join(SEEDS_FILE))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

/// The marker `cluster force-new-cluster` leaves until the new group covered the kept state.
const FORCED_FILE: &str = "forced-new-cluster";

/// Marks that this node's state was kept from an old cluster by `force-new-cluster`.
pub fn mark_forced(cluster_dir: &Path) -> std::io::Result<()> {
    std::fs::write(cluster_dir.join(FORCED_FILE), b"")
}

pub(crate) fn was_forced(cluster_dir: &Path) -> bool {
    cluster_dir.join(FORCED_FILE).exists()
}

pub(crate) fn forced_done(cluster_dir: &Path) {
    let _ = std::fs::remove_file(cluster_dir.join(FORCED_FILE));
}

/// Whether this node created the cluster: only the first node keeps the CA key on disk.
pub(crate) fn created_here(cluster_dir: &Path) -> bool {
    cluster_dir.join("ca.key").exists()
}

/// The routes peers call on the Raft port, besides the Raft RPCs.
pub(crate) fn peer_routes(node: Arc<Node>) -> Router {
    Router::new()
        .route("/cluster/propose", post(propose))
        .route("/cluster/read-index", post(read_index))
        .route("/cluster/add", post(add))
        .route("/cluster/remove", post(remove))
        .route("/cluster/status", get(status))
        // Forwarded writes carry whole pushes of alerts.
        .layer(DefaultBodyLimit::max(64 * 1024 * 1024))
        .with_state(node)
}

/// A peer's answer keeps the kind of error, so a follower passes "no majority" on as such.
type Answer<T> = Json<Result<T, ProposeError>>;

/// Refuses a peer call from anyone but a member: a certificate of the cluster CA alone (a
/// removed node, a spent join token) must not change the cluster.
fn member_only(node: &Node, peer: PeerIdentity) -> Result<(), ProposeError> {
    if pullback_cluster::is_member(&node.raft, peer.node_id) {
        Ok(())
    } else {
        tracing::warn!(node = node.id, caller = ?peer.node_id, "peer call from a non-member refused");
        Err(ProposeError::Refused(
            "the caller is not a member of this cluster".into(),
        ))
    }
}

/// Commits commands forwarded together by a follower; each gets its own answer. They enter
/// the leader's grouping queue together, so they usually share one log entry.
async fn propose(
    State(node): State<Arc<Node>>,
    ConnectInfo(peer): ConnectInfo<PeerIdentity>,
    Json(commands): Json<Vec<Command>>,
) -> Answer<Vec<Result<CommandResponse, ProposeError>>> {
    if let Err(e) = member_only(&node, peer) {
        return Json(Err(e));
    }
    if !node.leader_is_here() {
        return Json(Err(ProposeError::NotLeader {
            leader: node.raft.metrics().borrow().current_leader,
        }));
    }
    let answers = commands
        .into_iter()
        .map(|command| node.propose_here(command));
    Json(Ok(futures::future::join_all(answers).await))
}

async fn read_index(
    State(node): State<Arc<Node>>,
    ConnectInfo(peer): ConnectInfo<PeerIdentity>,
) -> Answer<Option<u64>> {
    if let Err(e) = member_only(&node, peer) {
        return Json(Err(e));
    }
    Json(node.read_index_here().await)
}

#[derive(Serialize, Deserialize)]
pub(crate) struct AddRequest {
    pub id: NodeId,
    pub member: Member,
}

async fn add(
    State(node): State<Arc<Node>>,
    ConnectInfo(peer): ConnectInfo<PeerIdentity>,
    Json(request): Json<AddRequest>,
) -> Answer<()> {
    // A node asks for itself; a member may pass the request on to the leader.
    if peer.node_id != Some(request.id)
        && let Err(e) = member_only(&node, peer)
    {
        return Json(Err(e));
    }
    Json(node.add_member_here(request.id, request.member).await)
}

#[derive(Serialize, Deserialize)]
pub(crate) struct RemoveRequest {
    pub id: NodeId,
}

async fn remove(
    State(node): State<Arc<Node>>,
    ConnectInfo(peer): ConnectInfo<PeerIdentity>,
    Json(request): Json<RemoveRequest>,
) -> Answer<()> {
    if let Err(e) = member_only(&node, peer) {
        return Json(Err(e));
    }
    Json(node.remove_member_here(request.id).await)
}

async fn status(
    State(node): State<Arc<Node>>,
    ConnectInfo(peer): ConnectInfo<PeerIdentity>,
) -> Result<Json<ClusterStatus>, axum::http::StatusCode> {
    member_only(&node, peer).map_err(|_| axum::http::StatusCode::FORBIDDEN)?;
    Ok(Json(node.local_cluster_status()))
}

impl Node {
    /// Adds node `id` to the group, as a learner until it holds the log, then as a voter.
    /// A member asking again is one that lost its store: it is taken out and added anew.
    pub(crate) async fn add_member_here(
        &self,
        id: NodeId,
        member: Member,
    ) -> Result<(), ProposeError> {
        self.require_leader()?;
        let doing = format!("adding node {id}");
        if self.membership().get_node(&id).is_some() {
            // A node asks to be added only while its store is empty: it lost its disk. Its
            // log and its vote are gone, so Raft must not count it as the member it was (the
            // leader would see its log go backwards, and it could vote twice in a term): it
            // is taken out, then added again like a new node.
            tracing::warn!(
                node = self.id,
                member = id,
                "a member asks to join again with an empty store; re-adding it as a new node"
            );
            self.take_out(id, &doing).await?;
        }
        tracing::info!(node = self.id, member = id, %member, "adding a learner");
        tokio::time::timeout(MEMBERSHIP_TIMEOUT, self.raft.add_learner(id, member, true))
            .await
            .map_err(|_| too_long(&doing))?
            .map_err(raft_error)?;
        // openraft's blocking add returns once the learner lags less than its threshold,
        // which a learner that never answered also does in a young cluster: wait until it
        // really holds the log, or leave it a learner, which costs the quorum nothing.
        let target = self.raft.metrics().borrow().last_log_index;
        let caught_up = self
            .raft
            .wait(Some(CATCH_UP_TIMEOUT))
            .metrics(
                |m| {
                    m.replication.as_ref().is_some_and(|replication| {
                        replication.get(&id).cloned().flatten().map(|l| l.index) >= target
                    })
                },
                "the learner holds the log",
            )
            .await;
        if caught_up.is_err() {
            return Err(ProposeError::Unavailable(format!(
                "node {id} was added as a learner but has not received the log within {}s; \
                 check that its Raft address is reachable from the leader. It stays a learner \
                 and is made a voter when it asks again",
                CATCH_UP_TIMEOUT.as_secs()
            )));
        }
        tracing::info!(
            node = self.id,
            member = id,
            "learner caught up; making it a voter"
        );
        let change = ChangeMembers::AddVoterIds(BTreeSet::from([id]));
        self.change_membership(change, true, &doing).await
    }

    /// Takes node `id` out of the group entirely.
    pub(crate) async fn remove_member_here(&self, id: NodeId) -> Result<(), ProposeError> {
        self.require_leader()?;
        if self.membership().get_node(&id).is_none() {
            return Err(ProposeError::Refused(format!("node {id} is not a member")));
        }
        tracing::info!(node = self.id, member = id, "removing a member");
        self.take_out(id, &format!("removing node {id}")).await
    }

    /// The membership this node knows.
    fn membership(&self) -> openraft::Membership<NodeId, Member> {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow();
        metrics.membership_config.membership().clone()
    }

    /// Takes member `id`, voter or learner, out of the group; the last voter stays.
    async fn take_out(&self, id: NodeId, doing: &str) -> Result<(), ProposeError> {
        let voters: BTreeSet<NodeId> = self.membership().voter_ids().collect();
        if voters.len() == 1 && voters.contains(&id) {
            return Err(ProposeError::Refused(format!(
                "node {id} is the last voter and cannot be taken out"
            )));
        }
        let change = if voters.contains(&id) {
            ChangeMembers::RemoveVoters(BTreeSet::from([id]))
        } else {
            ChangeMembers::RemoveNodes(BTreeSet::from([id]))
        };
        self.change_membership(change, false, doing).await
    }

    /// Commits a membership change, giving up after [`MEMBERSHIP_TIMEOUT`].
    async fn change_membership(
        &self,
        change: ChangeMembers<NodeId, Member>,
        retain: bool,
        doing: &str,
    ) -> Result<(), ProposeError> {
        tokio::time::timeout(
            MEMBERSHIP_TIMEOUT,
            self.raft.change_membership(change, retain),
        )
        .await
        .map_err(|_| too_long(doing))?
        .map_err(raft_error)?;
        Ok(())
    }

    /// Asks the leader to add this node; used by a node that joined and is not yet a member.
    pub async fn add_member(&self, id: NodeId, member: Member) -> Result<(), ProposeError> {
        if self.leader_is_here() {
            return self.add_member_here(id, member).await;
        }
        self.call_leader("add", &AddRequest { id, member }).await
    }

    /// Takes node `id` out of the cluster, through the leader.
    pub async fn remove_member(&self, id: NodeId) -> Result<(), ProposeError> {
        if self.leader_is_here() {
            return self.remove_member_here(id).await;
        }
        self.call_leader("remove", &RemoveRequest { id }).await
    }

    /// The cluster as this node sees it; lag is known only on the leader.
    pub fn local_cluster_status(&self) -> ClusterStatus {
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let last = m.last_log_index;
        let replication = m.replication.clone();
        let releases = self.reader.releases().unwrap_or_else(|e| {
            tracing::warn!(error = %e, "the members' releases cannot be read");
            Default::default()
        });
        let members = membership
            .nodes()
            .map(|(id, member)| {
                let matched = match &replication {
                    Some(_) if *id == self.id => last,
                    Some(replication) => replication.get(id).cloned().flatten().map(|l| l.index),
                    None => None,
                };
                let role = if m.current_leader == Some(*id) {
                    "leader"
                } else if voters.contains(id) {
                    "voter"
                } else {
                    "learner"
                };
                MemberStatus {
                    id: *id,
                    role: role.into(),
                    raft: member.raft.clone(),
                    api: member.api.clone(),
                    matched,
                    lag: matched.map(|matched| last.unwrap_or(0).saturating_sub(matched)),
                    release: releases.get(id).cloned(),
                }
            })
            .collect();
        ClusterStatus {
            answered_by: self.id,
            from_leader: m.current_leader == Some(self.id),
            leader: m.current_leader,
            term: m.current_term,
            last_log_index: last,
            applied: m.last_applied.map(|l| l.index),
            level: self
                .reader
                .cluster_level()
                .unwrap_or(pullback_domain::BASE_LEVEL),
            members,
        }
    }

    /// The cluster as the leader sees it, or this node's own view when the leader cannot be
    /// reached.
    pub async fn cluster_status(&self) -> ClusterStatus {
        if self.leader_is_here() || self.peers.is_none() {
            return self.local_cluster_status();
        }
        match self.get_leader::<ClusterStatus>("status").await {
            Ok(status) => status,
            Err(e) => {
                tracing::debug!(error = %e, "the leader's status is not available");
                self.local_cluster_status()
            }
        }
    }

    /// Creates a one-time join token valid for `ttl`.
    pub async fn create_join_token(
        &self,
        by: &str,
        ttl: Duration,
    ) -> Result<JoinToken, ProposeError> {
        self.read_barrier().await?;
        let ca = self
            .reader
            .cluster_ca()
            .map_err(|e| ProposeError::Raft(e.to_string()))?
            .ok_or_else(|| ProposeError::Refused("this node is not part of a cluster".into()))?;
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret)
            .map_err(|e| ProposeError::Raft(format!("no randomness: {e}")))?;
        let token = JoinToken {
            secret: hex::encode(secret),
            ca_fingerprint: pullback_cluster::fingerprint(&ca.cert_pem)
                .map_err(|e| ProposeError::Raft(e.to_string()))?,
        };
        let now = chrono::Utc::now();
        let ttl = chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::hours(1));
        let command = Command::CreateJoinToken {
            sha256: token.secret_sha256(),
            expires_at: now + ttl,
            created_by: by.to_owned(),
            at: now,
        };
        refused_to_error(self.propose(command).await?)?;
        Ok(token)
    }

    /// Spends a join token and issues the joining node its certificate.
    pub async fn admit(&self, request: &JoinRequest) -> Result<Admission, ProposeError> {
        let token = JoinToken::parse(&request.token).map_err(ProposeError::Refused)?;
        if request.node_id == 0 {
            return Err(ProposeError::Refused("node ids start at 1".into()));
        }
        if request.member.raft.is_empty() || request.names.is_empty() {
            return Err(ProposeError::Refused(
                "the joining node gave no Raft address or certificate names".into(),
            ));
        }
        if let Some(bad) = request.names.iter().find(|name| !is_certificate_name(name)) {
            return Err(ProposeError::Refused(format!(
                "{bad:?} is not an IP address or a DNS name fit for a node certificate"
            )));
        }
        if request.names.len() > MAX_NAMES {
            return Err(ProposeError::Refused(format!(
                "a node certificate carries at most {MAX_NAMES} names"
            )));
        }
        // Anyone may call this; only a token the cluster knows is worth a log entry (guesses
        // cost a read, not a write), and nothing about the members is told before that.
        self.read_barrier().await?;
        let known = self
            .reader
            .join_token(&token.secret_sha256())
            .map_err(|e| ProposeError::Raft(e.to_string()))?;
        if known.is_none() {
            return Err(ProposeError::Refused("the join token is not known".into()));
        }
        let membership = self.membership();
        if let Some(existing) = membership.get_node(&request.node_id)
            && existing.raft != request.member.raft
        {
            return Err(ProposeError::Refused(format!(
                "node id {} is already taken by the member at {}; pick another id or remove it first",
                request.node_id, existing.raft
            )));
        }
        let command = Command::UseJoinToken {
            sha256: token.secret_sha256(),
            node_id: request.node_id,
            at: chrono::Utc::now(),
        };
        refused_to_error(self.propose(command).await?)?;
        self.read_barrier().await?;
        let stored = self
            .reader
            .cluster_ca()
            .map_err(|e| ProposeError::Raft(e.to_string()))?
            .ok_or_else(|| ProposeError::Refused("this node is not part of a cluster".into()))?;
        let ca = ClusterCa::from_pem(&stored.cert_pem, &stored.key_pem.0)
            .map_err(|e| ProposeError::Raft(format!("the stored cluster CA: {e}")))?;
        let identity: NodeIdentity = ca
            .issue_node(request.node_id, &request.names)
            .map_err(|e| ProposeError::Refused(e.to_string()))?;
        tracing::info!(node = self.id, joining = request.node_id, names = ?request.names, "admitted a node");
        let seeds = membership
            .nodes()
            .map(|(_, member)| member.raft.clone())
            .collect();
        Ok(Admission {
            cert_pem: identity.cert_pem,
            key_pem: identity.key_pem,
            ca_pem: identity.ca_pem,
            seeds,
        })
    }

    /// Calls `/cluster/<path>` on the leader and returns its answer.
    pub(crate) async fn call_leader<Req: Serialize, Resp: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &Req,
    ) -> Result<Resp, ProposeError> {
        let (client, url) = self.leader_url(path)?;
        let sent = client
            .post(url)
            .timeout(MEMBERSHIP_TIMEOUT)
            .json(body)
            .send()
            .await;
        decode_answer(sent).await
    }

    async fn get_leader<Resp: serde::de::DeserializeOwned>(
        &self,
        path: &str,
    ) -> Result<Resp, ProposeError> {
        let (client, url) = self.leader_url(path)?;
        let response = client
            .get(url)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(unreachable_leader)?;
        response.json().await.map_err(unreachable_leader)
    }

    fn leader_url(&self, path: &str) -> Result<(&reqwest::Client, String), ProposeError> {
        let Some(client) = &self.peers else {
            return Err(ProposeError::NotLeader { leader: None });
        };
        let m = self.raft.metrics().borrow().clone();
        let leader = m.current_leader.ok_or_else(no_leader)?;
        let member = m
            .membership_config
            .membership()
            .get_node(&leader)
            .cloned()
            .ok_or_else(no_leader)?;
        Ok((client, format!("https://{}/cluster/{path}", member.raft)))
    }
}

/// Sends the proposals waiting on a follower to the leader, grouped as on the leader (see
/// [`crate::run_groups`]), one request per group.
pub(crate) async fn forward_groups(
    node: Arc<Node>,
    waiting: tokio::sync::mpsc::Receiver<crate::Pending>,
) {
    crate::run_groups(waiting, move |commands| {
        let node = node.clone();
        async move { node.call_leader("propose", &commands).await }
    })
    .await;
}

/// Asks the given seeds, in turn and until one succeeds, to add this node to the group.
pub(crate) async fn ask_to_join(node: Arc<Node>, member: Member, seeds: Vec<String>) {
    let Some(client) = node.peers.clone() else {
        return;
    };
    let request = AddRequest {
        id: node.id,
        member,
    };
    let mut stop = node.stop.subscribe();
    let mut delay = Duration::from_millis(200);
    loop {
        if node.is_voter() {
            tracing::info!(node = node.id, "this node is a voter of the cluster");
            return;
        }
        for seed in &seeds {
            let url = format!("https://{seed}/cluster/add");
            let sent = client
                .post(&url)
                .timeout(MEMBERSHIP_TIMEOUT)
                .json(&request)
                .send()
                .await;
            match decode_answer::<()>(sent).await {
                Ok(()) => {
                    tracing::info!(node = node.id, %seed, "added to the cluster");
                    return;
                }
                Err(e) => {
                    tracing::warn!(node = node.id, %seed, error = %e, "asking to join failed; will retry")
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            _ = stop.changed() => return,
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

async fn decode_answer<T: serde::de::DeserializeOwned>(
    sent: Result<reqwest::Response, reqwest::Error>,
) -> Result<T, ProposeError> {
    let response = sent
        .and_then(|r| r.error_for_status())
        .map_err(unreachable_leader)?;
    match response.json::<Result<T, ProposeError>>().await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(e),
        Err(e) => Err(unreachable_leader(e)),
    }
}

fn unreachable_leader(e: reqwest::Error) -> ProposeError {
    ProposeError::Unavailable(format!("the leader cannot be reached: {}", e.without_url()))
}

fn too_long(doing: &str) -> ProposeError {
    ProposeError::Unavailable(format!(
        "{doing} took longer than {}s",
        MEMBERSHIP_TIMEOUT.as_secs()
    ))
}

fn no_leader() -> ProposeError {
    ProposeError::Unavailable(
        "no leader is known: this node cannot reach a majority of the cluster".into(),
    )
}

fn refused_to_error(response: CommandResponse) -> Result<CommandResponse, ProposeError> {
    match response.refused {
        Some(reason) => Err(ProposeError::Refused(reason)),
        None => Ok(response),
    }
}

pub(crate) fn raft_error<E: std::fmt::Display>(e: E) -> ProposeError {
    ProposeError::Raft(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_common_level_waits_for_every_member_to_run_the_newest_release() {
        let member = |id: NodeId, level: Option<u32>| MemberStatus {
            id,
            role: "voter".into(),
            raft: String::new(),
            api: String::new(),
            matched: None,
            lag: None,
            release: level.map(|level| NodeRelease {
                level,
                version: "v".into(),
            }),
        };
        let status = |members| ClusterStatus {
            answered_by: 1,
            from_leader: true,
            leader: Some(1),
            term: 1,
            last_log_index: None,
            applied: None,
            level: 1,
            members,
        };
        let done = status(vec![
            member(1, Some(2)),
            member(2, Some(2)),
            member(3, Some(2)),
        ]);
        assert_eq!(done.common_level(), Ok(2));
        let mixed = status(vec![
            member(1, Some(3)),
            member(2, Some(2)),
            member(3, Some(3)),
        ]);
        assert_eq!(
            mixed.common_level(),
            Err(
                "the upgrade is not finished: node 2 runs v (level 2); upgrade them to a \
                 release of command level 3 first"
                    .into()
            )
        );
        let silent = status(vec![member(1, Some(2)), member(2, None), member(3, None)]);
        assert_eq!(
            silent.common_level(),
            Err("no release reported yet by node 2, node 3".into())
        );
    }

    #[test]
    fn certificate_names_are_addresses_or_plain_dns_names() {
        for good in ["10.0.0.1", "fd00::1", "pb1", "pb-1.corp.example"] {
            assert!(is_certificate_name(good), "{good}");
        }
        for bad in [
            "",
            "*.corp.example",
            "a b",
            "x\u{0}",
            "-pb",
            "pb..corp",
            &"a".repeat(64),
        ] {
            assert!(!is_certificate_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn a_join_token_reads_back_as_written_and_nothing_else_passes() {
        let token = JoinToken {
            secret: "ab".repeat(32),
            ca_fingerprint: "cd".repeat(32),
        };
        assert_eq!(JoinToken::parse(&format!(" {token}\n")), Ok(token.clone()));
        // The store keeps a hash, not the secret.
        assert_ne!(token.secret_sha256(), token.secret);
        assert_eq!(token.secret_sha256().len(), 64);
        for bad in [
            "",
            "pbj1",
            "pbj2.ab.cd",
            &format!("pbj1.{}", "ab".repeat(32)),
            &format!("pbj1.{}.{}", "ab".repeat(31), "cd".repeat(32)),
            &format!("pbj1.{}.{}.x", "ab".repeat(32), "cd".repeat(32)),
            &format!("pbj1.{}.{}", "zz".repeat(32), "cd".repeat(32)),
        ] {
            assert!(JoinToken::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }
}

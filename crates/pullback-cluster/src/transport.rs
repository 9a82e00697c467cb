//! Raft RPCs between nodes: JSON over HTTPS, with both ends proving a cluster certificate.
//!
//! Each RPC is a `POST` to `https://<Member.raft>/raft/<rpc>` whose body is openraft's
//! request and whose answer is the `Result` the remote `Raft` returned, so the caller can tell
//! a refusal by the peer from a failure to reach it.

use crate::pki::NodeIdentity;
use crate::tls::{self, PeerIdentity, TlsError, TlsListener};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::routing::post;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Timeout, Unreachable,
};
use openraft::network::{RPCOption, RPCTypes, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use pullback_store::{Member, NodeId, Raft, TypeConfig};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::future::Future;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;
use tokio::net::TcpListener;

/// The largest RPC body accepted. A snapshot chunk is 3 MiB by default and an append carries
/// up to a few hundred entries, each of which may hold a window of alerts.
const MAX_RPC_BODY_BYTES: usize = 64 * 1024 * 1024;
/// How long connecting to a peer, handshake included, may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Why the Raft transport could not be set up or stopped serving.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("cannot build the peer client: {0}")]
    Client(reqwest::Error),
    #[error("serving Raft RPCs failed: {0}")]
    Serve(std::io::Error),
}

/// The routes a node serves to its peers; they call into `raft`.
pub fn raft_router(raft: Raft) -> axum::Router {
    axum::Router::new()
        .route("/raft/append", post(append))
        .route("/raft/vote", post(vote))
        .route("/raft/snapshot", post(snapshot))
        .layer(DefaultBodyLimit::max(MAX_RPC_BODY_BYTES))
        .with_state(raft)
}

type Answer<T, E = RaftError<NodeId>> = Result<Json<Result<T, E>>, (StatusCode, String)>;

/// Whether `node` is in this node's membership, as a voter or a learner. A node that knows
/// no membership yet (it is joining) counts every holder of a cluster certificate, because
/// it cannot tell who its leader will be.
pub fn is_member(raft: &Raft, node: Option<NodeId>) -> bool {
    let metrics = raft.metrics();
    let metrics = metrics.borrow();
    let membership = metrics.membership_config.membership();
    if membership.nodes().next().is_none() {
        return node.is_some();
    }
    node.is_some_and(|id| membership.get_node(&id).is_some())
}

/// Refuses a Raft RPC unless the caller's certificate names a member and, where the RPC
/// speaks for a leader or candidate, that very node: a certificate of the cluster CA alone
/// (a removed node, a spent join token) must not steer the log.
fn check_caller(
    raft: &Raft,
    peer: PeerIdentity,
    speaks_for: NodeId,
) -> Result<(), (StatusCode, String)> {
    if peer.node_id != Some(speaks_for) {
        return Err((
            StatusCode::FORBIDDEN,
            format!("the caller's certificate does not name node {speaks_for}"),
        ));
    }
    if !is_member(raft, peer.node_id) {
        return Err((StatusCode::FORBIDDEN, "the caller is not a member".into()));
    }
    Ok(())
}

async fn append(
    State(raft): State<Raft>,
    ConnectInfo(peer): ConnectInfo<PeerIdentity>,
    body: Bytes,
) -> Answer<AppendEntriesResponse<NodeId>> {
    // Decoded straight from the bytes: axum's extractor also tracks the path to an error,
    // which costs a tenth of a follower's time under load, and serde's message already
    // says where the entries stopped making sense.
    let rpc: AppendEntriesRequest<TypeConfig> =
        serde_json::from_slice(&body).map_err(unreadable_entries)?;
    check_caller(
        &raft,
        peer,
        rpc.vote.leader_id().voted_for().unwrap_or_default(),
    )?;
    Ok(Json(raft.append_entries(rpc).await))
}

/// Entries this build cannot read come from a newer release whose leader proposed a command
/// above this node's level, which the cluster's command level should have prevented. Nothing
/// is applied; the node lags until it runs that release.
fn unreadable_entries(error: serde_json::Error) -> (StatusCode, String) {
    let why = format!(
        "entries from the leader cannot be read by this release (command level {}): {error}; \
         this node needs the leader's release",
        pullback_domain::COMMAND_LEVEL,
    );
    tracing::error!("{why}");
    (StatusCode::UNPROCESSABLE_ENTITY, why)
}

async fn vote(
    State(raft): State<Raft>,
    ConnectInfo(peer): ConnectInfo<PeerIdentity>,
    Json(rpc): Json<VoteRequest<NodeId>>,
) -> Answer<VoteResponse<NodeId>> {
    check_caller(
        &raft,
        peer,
        rpc.vote.leader_id().voted_for().unwrap_or_default(),
    )?;
    Ok(Json(raft.vote(rpc).await))
}

async fn snapshot(
    State(raft): State<Raft>,
    ConnectInfo(peer): ConnectInfo<PeerIdentity>,
    Json(rpc): Json<InstallSnapshotRequest<TypeConfig>>,
) -> Answer<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>> {
    check_caller(
        &raft,
        peer,
        rpc.vote.leader_id().voted_for().unwrap_or_default(),
    )?;
    Ok(Json(raft.install_snapshot(rpc).await))
}

/// Serves `router` (usually [`raft_router`]) on `listener` over TLS as `identity`, accepting
/// only clients with a certificate from the cluster CA, until `shutdown` completes; then it
/// stops accepting and returns once the open requests are answered.
pub async fn serve_raft(
    listener: TcpListener,
    identity: &NodeIdentity,
    router: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), TransportError> {
    let config = tls::server_config(identity)?;
    let listener = TlsListener::new(listener, config).map_err(TransportError::Serve)?;
    let service = router.into_make_service_with_connect_info::<PeerIdentity>();
    axum::serve(listener, service)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(TransportError::Serve)
}

/// This node's side of the Raft network: it opens a [`PeerClient`] per peer, all sharing one
/// HTTPS client that presents the node's certificate and trusts only the cluster CA.
#[derive(Clone, Debug)]
pub struct PeerNetwork {
    id: NodeId,
    client: reqwest::Client,
}

impl PeerNetwork {
    /// The network of node `id`, which calls its peers as `identity` from `local` (any
    /// address when `None`).
    pub fn new(
        id: NodeId,
        identity: &NodeIdentity,
        local: Option<IpAddr>,
    ) -> Result<PeerNetwork, TransportError> {
        let client = peer_client(identity, local)?;
        Ok(PeerNetwork { id, client })
    }
}

/// An HTTPS client that presents `identity`, trusts the cluster CA and nothing else, and
/// connects from `local` when given (so that a node's calls leave from its Raft address).
pub fn peer_client(
    identity: &NodeIdentity,
    local: Option<IpAddr>,
) -> Result<reqwest::Client, TransportError> {
    let mut pem = identity.cert_pem.clone().into_bytes();
    pem.push(b'\n');
    pem.extend_from_slice(identity.key_pem.as_bytes());
    let client_identity = reqwest::Identity::from_pem(&pem).map_err(TransportError::Client)?;
    let ca = reqwest::Certificate::from_pem(identity.ca_pem.as_bytes())
        .map_err(TransportError::Client)?;

    reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .identity(client_identity)
        .https_only(true)
        .connect_timeout(CONNECT_TIMEOUT)
        .local_address(local)
        .build()
        .map_err(TransportError::Client)
}

impl RaftNetworkFactory<TypeConfig> for PeerNetwork {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &Member) -> PeerClient {
        PeerClient {
            id: self.id,
            target,
            node: node.clone(),
            client: self.client.clone(),
            appends: Mutex::new(AppendSize::default()),
        }
    }
}

/// The connection from this node to one peer.
#[derive(Debug)]
pub struct PeerClient {
    id: NodeId,
    target: NodeId,
    node: Member,
    client: reqwest::Client,
    appends: Mutex<AppendSize>,
}

/// An append on its way. Dropped unfinished, when it timed out or openraft gave up on it at
/// its deadline, it halves this peer's append size.
struct InFlight<'a> {
    appends: &'a Mutex<AppendSize>,
    sent: usize,
    target: NodeId,
    finished: bool,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if self.finished || self.sent == 0 {
            return;
        }
        let mut appends = self.appends.lock().expect("not poisoned");
        appends.timed_out(self.sent);
        tracing::info!(
            target = self.target,
            entries = self.sent,
            next = appends.take(usize::MAX),
            "an append timed out; sending fewer entries at once"
        );
    }
}

/// How many log entries one append to a peer may carry.
///
/// openraft gives an append one heartbeat interval to reach the peer and be stored there.
/// A peer that fell behind (restarted, or slowed by a loaded machine) is sent up to
/// `max_payload_entries` entries at once, each possibly holding thousands of alerts; if that
/// cannot arrive in time, resending the same append would time out forever and the peer
/// would never catch up. So an append that timed out halves the next one, down to a single
/// entry, and the entries left out are reported to openraft as not yet sent
/// (`PartialSuccess`), which sends them next. Every append that arrives doubles the limit
/// again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppendSize {
    limit: usize,
}

impl AppendSize {
    /// The limit never grows past this: openraft sends no more entries at once anyway.
    const CEILING: usize = 1024;

    /// How many of `offered` entries to send.
    pub fn take(&self, offered: usize) -> usize {
        offered.min(self.limit)
    }

    /// An append of `sent` entries arrived in time.
    pub fn arrived(&mut self, sent: usize) {
        if sent >= self.limit {
            self.limit = (self.limit * 2).min(Self::CEILING);
        }
    }

    /// An append of `sent` entries timed out.
    pub fn timed_out(&mut self, sent: usize) {
        if sent == 0 {
            // A heartbeat: its delay says nothing about the size of appends.
            return;
        }
        self.limit = (sent.min(self.limit) / 2).max(1);
    }
}

impl Default for AppendSize {
    fn default() -> Self {
        AppendSize {
            limit: Self::CEILING,
        }
    }
}

type Rpc<T, E = RaftError<NodeId>> = Result<T, RPCError<NodeId, Member, E>>;

impl PeerClient {
    /// Posts `rpc` to the peer's `/raft/<path>` and decodes the peer's answer.
    async fn call<Req, Resp, E>(
        &self,
        path: &str,
        action: RPCTypes,
        rpc: &Req,
        option: &RPCOption,
    ) -> Rpc<Resp, E>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let url = format!("https://{}/raft/{path}", self.node.raft);
        let ttl = option.hard_ttl();
        let sent = self.client.post(url).timeout(ttl).json(rpc).send().await;
        let answer = match sent.and_then(|response| response.error_for_status()) {
            Ok(response) => response.json::<Result<Resp, E>>().await,
            Err(e) => Err(e),
        };
        match answer {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(refusal)) => Err(RPCError::RemoteError(RemoteError::new_with_node(
                self.target,
                self.node.clone(),
                refusal,
            ))),
            Err(e) => Err(self.failure(e, action, ttl)),
        }
    }

    /// Classifies a failed request: a timeout, a peer that cannot be reached (connection or
    /// handshake failed), or a request or answer that went wrong on the way.
    fn failure<E: std::error::Error>(
        &self,
        e: reqwest::Error,
        action: RPCTypes,
        ttl: Duration,
    ) -> RPCError<NodeId, Member, E> {
        let e = e.without_url();
        if e.is_timeout() {
            RPCError::Timeout(Timeout {
                action,
                id: self.id,
                target: self.target,
                timeout: ttl,
            })
        } else if e.is_connect() || e.is_status() {
            // A refused connection, a failed handshake or a peer that does not serve the
            // route: retrying at once would not help, so openraft backs off.
            RPCError::Unreachable(Unreachable::new(&e))
        } else {
            RPCError::Network(NetworkError::new(&e))
        }
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        mut rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Rpc<AppendEntriesResponse<NodeId>> {
        let sent = self
            .appends
            .lock()
            .expect("not poisoned")
            .take(rpc.entries.len());
        // The last entry sent, when some are held back for the next append.
        let held_back = (sent < rpc.entries.len()).then(|| rpc.entries[sent - 1].log_id);
        rpc.entries.truncate(sent);
        let mut in_flight = InFlight {
            appends: &self.appends,
            sent,
            target: self.target,
            finished: false,
        };
        let answer = self
            .call("append", RPCTypes::AppendEntries, &rpc, &option)
            .await;
        in_flight.finished = !matches!(answer, Err(RPCError::Timeout(_)));
        drop(in_flight);
        if let Ok(response) = &answer {
            self.appends.lock().expect("not poisoned").arrived(sent);
            if let (AppendEntriesResponse::Success, Some(last)) = (response, held_back) {
                return Ok(AppendEntriesResponse::PartialSuccess(Some(last)));
            }
        }
        answer
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Rpc<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>> {
        self.call("snapshot", RPCTypes::InstallSnapshot, &rpc, &option)
            .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Rpc<VoteResponse<NodeId>> {
        self.call("vote", RPCTypes::Vote, &rpc, &option).await
    }
}

#[cfg(test)]
mod tests {
    use super::AppendSize;

    #[test]
    fn appends_shrink_on_timeouts_down_to_one_entry_and_grow_back() {
        let mut size = AppendSize::default();
        assert_eq!(size.take(32), 32, "a healthy peer gets all it is offered");
        size.timed_out(0);
        assert_eq!(size.take(32), 32, "a heartbeat's timeout changes nothing");
        size.timed_out(32);
        assert_eq!(size.take(32), 16);
        size.timed_out(16);
        size.timed_out(8);
        size.timed_out(4);
        size.timed_out(2);
        assert_eq!(size.take(32), 1);
        size.timed_out(1);
        assert_eq!(size.take(32), 1, "one entry is always sent");

        size.arrived(1);
        size.arrived(2);
        assert_eq!(size.take(32), 4);
        // A short append that arrived says nothing about larger ones.
        size.arrived(3);
        assert_eq!(size.take(32), 4);
        for sent in [4, 8, 16, 32, 64, 128, 256, 512, 1024, 1024] {
            size.arrived(sent);
        }
        assert_eq!(size.take(5000), AppendSize::CEILING);
    }
}

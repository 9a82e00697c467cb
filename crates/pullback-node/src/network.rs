//! How this node reaches its Raft peers: over mutual TLS when it is a member of a cluster,
//! not at all when it runs alone (a one-member group never sends an RPC).

use openraft::error::{InstallSnapshotError, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use pullback_cluster::{PeerClient, PeerNetwork};
use pullback_store::{Member, NodeId, TypeConfig};

#[derive(Debug, thiserror::Error)]
#[error("node {0} is not reachable: this node runs alone (no [cluster] section)")]
struct Alone(NodeId);

#[derive(Clone, Debug)]
pub(crate) enum Network {
    Alone,
    Peers(PeerNetwork),
}

#[derive(Debug)]
pub(crate) enum Peer {
    Alone(NodeId),
    Peer(PeerClient),
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: NodeId, node: &Member) -> Peer {
        match self {
            Network::Alone => Peer::Alone(target),
            Network::Peers(peers) => Peer::Peer(peers.new_client(target, node).await),
        }
    }
}

type Rpc<T, E = RaftError<NodeId>> = Result<T, RPCError<NodeId, Member, E>>;

fn alone<E: std::error::Error>(target: NodeId) -> RPCError<NodeId, Member, E> {
    RPCError::Unreachable(Unreachable::new(&Alone(target)))
}

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Rpc<AppendEntriesResponse<NodeId>> {
        match self {
            Peer::Alone(target) => Err(alone(*target)),
            Peer::Peer(peer) => peer.append_entries(rpc, option).await,
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Rpc<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>> {
        match self {
            Peer::Alone(target) => Err(alone(*target)),
            Peer::Peer(peer) => peer.install_snapshot(rpc, option).await,
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Rpc<VoteResponse<NodeId>> {
        match self {
            Peer::Alone(target) => Err(alone(*target)),
            Peer::Peer(peer) => peer.vote(rpc, option).await,
        }
    }
}

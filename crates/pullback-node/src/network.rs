//! How this node reaches its Raft peers.
//!
//! A one-member group never sends an RPC, so this network only has to exist.

use openraft::BasicNode;
use openraft::error::{InstallSnapshotError, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use pullback_store::{NodeId, TypeConfig};

#[derive(Debug, thiserror::Error)]
#[error("node {0} is not reachable: peer networking is not available in this build")]
struct NoPeers(NodeId);

// FIXME: peers are unreachable, so a group can only have one member; a second node added to
// the membership would never receive the log. The cluster layer replaces this with RPCs over
// mutually authenticated TLS.
#[derive(Clone, Debug, Default)]
pub struct Network;

#[derive(Debug)]
pub struct Peer(NodeId);

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: NodeId, _node: &BasicNode) -> Peer {
        Peer(target)
    }
}

type Rpc<T, E = RaftError<NodeId>> = Result<T, RPCError<NodeId, BasicNode, E>>;

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        _rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Rpc<AppendEntriesResponse<NodeId>> {
        Err(RPCError::Unreachable(Unreachable::new(&NoPeers(self.0))))
    }

    async fn install_snapshot(
        &mut self,
        _rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Rpc<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>> {
        Err(RPCError::Unreachable(Unreachable::new(&NoPeers(self.0))))
    }

    async fn vote(
        &mut self,
        _rpc: VoteRequest<NodeId>,
        _option: RPCOption,
    ) -> Rpc<VoteResponse<NodeId>> {
        Err(RPCError::Unreachable(Unreachable::new(&NoPeers(self.0))))
    }
}

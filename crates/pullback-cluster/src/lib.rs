//! Pullback's cluster layer: the certificate authority that admits nodes, and the Raft RPCs
//! nodes exchange over mutually authenticated TLS.
//!
//! A node gets a [`NodeIdentity`] from the [`ClusterCa`], serves [`raft_router`] with
//! [`serve_raft`], and hands openraft a [`PeerNetwork`] to reach the others. Both ends of
//! every RPC prove a certificate from the same CA; nothing else is trusted.

mod pki;
mod tls;
mod transport;

pub use pki::{ClusterCa, NodeIdentity, PkiError, fingerprint, node_common_name};
pub use tls::{PeerIdentity, TlsError, TlsListener, api_server_config, node_id_of, server_config};
pub use transport::{
    PeerClient, PeerNetwork, TransportError, is_member, peer_client, raft_router, serve_raft,
};

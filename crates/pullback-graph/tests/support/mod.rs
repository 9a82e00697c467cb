//! Shared helpers: a local Graph with mailboxes, a backend for it, targets.

#![allow(dead_code)]

use pullback_domain::{MessageFingerprint, MessageId};
use pullback_graph::testing::{LocalGraph, LocalGraphConfig, NewMessage};
use pullback_graph::{GraphBackend, GraphClient, GraphConfig};
use pullback_mailbox::MessageTarget;
use std::sync::Arc;

pub const ALICE: &str = "alice@contoso.example";
pub const BOB: &str = "bob@contoso.example";
pub const SENDER: &str = "phisher@evil.example";
pub const SUBJECT: &str = "Your invoice is overdue";

/// A local Graph (global cloud, Microsoft's limits) with Alice's and Bob's mailboxes.
pub async fn graph() -> LocalGraph {
    graph_with(LocalGraphConfig::default()).await
}

pub async fn graph_with(config: LocalGraphConfig) -> LocalGraph {
    let graph = LocalGraph::start(config).await;
    graph.add_mailbox(ALICE);
    graph.add_mailbox(BOB);
    graph
}

pub fn backend(graph: &LocalGraph) -> GraphBackend {
    backend_with(graph.secret_config())
}

pub fn backend_with(config: GraphConfig) -> GraphBackend {
    GraphBackend::new(Arc::new(GraphClient::new(config).expect("a client")))
}

/// A target for `id`, fingerprinted by the usual subject and sender.
pub fn target(id: &str) -> MessageTarget {
    let fingerprint = MessageFingerprint {
        subject: Some(SUBJECT.to_owned()),
        sender: Some(SENDER.to_owned()),
        similar_within: None,
    };
    MessageTarget::new(MessageId::parse(id).expect("an id"), fingerprint)
}

/// The usual phish with Message-ID `id`.
pub fn phish(id: &str) -> NewMessage {
    NewMessage::new(id, SUBJECT, SENDER)
}

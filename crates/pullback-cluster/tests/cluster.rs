//! Raft over mutual TLS end to end: three nodes in one process replicate, survive the loss of
//! their leader, and refuse callers without a cluster certificate.

use openraft::{ServerState, Vote};
use pullback_cluster::{ClusterCa, NodeIdentity, PeerNetwork, raft_router, serve_raft};
use pullback_domain::{Command, MatchCondition, Response};
use pullback_store::{Member, NodeId, Raft, Reader};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The longest any one condition is waited for.
const WAIT: Duration = Duration::from_secs(20);

/// One node: its Raft, its store's reader, and its RPC server.
struct TestNode {
    id: NodeId,
    addr: String,
    raft: Raft,
    reader: Reader,
    stop_server: Option<oneshot::Sender<()>>,
    server: JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl TestNode {
    async fn start(id: NodeId, identity: &NodeIdentity) -> TestNode {
        let dir = tempfile::tempdir().unwrap();
        let (log_store, state_machine, reader) = pullback_store::open(dir.path()).unwrap();
        let config = openraft::Config {
            cluster_name: "test".into(),
            heartbeat_interval: 100,
            election_timeout_min: 300,
            election_timeout_max: 600,
            ..Default::default()
        }
        .validate()
        .unwrap();
        let network = PeerNetwork::new(id, identity, None).unwrap();
        let raft = Raft::new(id, Arc::new(config), network, log_store, state_machine)
            .await
            .unwrap();

        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (stop_server, stopped) = oneshot::channel::<()>();
        let (router, identity) = (raft_router(raft.clone()), identity.clone());
        let server = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.await;
            };
            serve_raft(listener, &identity, router, shutdown)
                .await
                .unwrap();
        });
        TestNode {
            id,
            addr,
            raft,
            reader,
            stop_server: Some(stop_server),
            server,
            _dir: dir,
        }
    }

    /// Stops Raft and the RPC server, as if the node went down.
    async fn stop(&mut self) {
        self.raft.shutdown().await.unwrap();
        if let Some(stop) = self.stop_server.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(WAIT, &mut self.server)
            .await
            .unwrap()
            .unwrap();
    }

    /// Waits until this node knows a leader other than `not`, and returns it.
    async fn leader_other_than(&self, not: Option<NodeId>) -> NodeId {
        let metrics = self
            .raft
            .wait(Some(WAIT))
            .metrics(
                |m| m.current_leader.is_some_and(|l| Some(l) != not),
                "a leader",
            )
            .await
            .unwrap();
        metrics.current_leader.unwrap()
    }

    fn condition_names(&self) -> Vec<String> {
        self.reader
            .match_conditions()
            .unwrap()
            .into_iter()
            .map(|c| c.name)
            .collect()
    }
}

fn condition(name: &str) -> MatchCondition {
    MatchCondition {
        name: name.into(),
        enabled: true,
        priority: 0,
        sources: vec![],
        kinds: vec![],
        classifications: vec!["phish".into()],
        threat_statuses: vec![],
        threat_types: vec![],
        recipient_domains: vec![],
        exclude_recipients: vec![],
        exclude_senders: vec![],
        recipient_groups: vec![],
        exclude_recipient_groups: vec![],
        recipient_attributes: vec![],
        recipient_object_classes: vec![],
        responses: vec![Response::Incident],
        directory_actions: vec![],
        stop: false,
    }
}

/// Writes a match condition on `leader` and waits until every node in `nodes` applied it.
async fn put_and_replicate(leader: &TestNode, nodes: &[&TestNode], name: &str) {
    let condition = condition(name);
    condition.validate().unwrap();
    let command = Command::PutMatchCondition { condition };
    let written = tokio::time::timeout(WAIT, leader.raft.client_write(command))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(written.data.refused, None);

    for node in nodes {
        node.raft
            .wait(Some(WAIT))
            .applied_index_at_least(Some(written.log_id.index), "the write applied")
            .await
            .unwrap();
        assert!(
            node.condition_names().contains(&name.to_owned()),
            "node {}",
            node.id
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_replicate() {
    let ca = ClusterCa::generate("test").unwrap();
    let mut nodes = Vec::new();
    for id in 1..=3 {
        let identity = ca.issue_node(id, &["127.0.0.1".to_owned()]).unwrap();
        nodes.push(TestNode::start(id, &identity).await);
    }
    let members: BTreeMap<NodeId, Member> = nodes
        .iter()
        .map(|node| {
            let member = Member {
                raft: node.addr.clone(),
                api: String::new(),
            };
            (node.id, member)
        })
        .collect();
    nodes[0].raft.initialize(members).await.unwrap();

    let leader = nodes[0].leader_other_than(None).await;
    let index = nodes.iter().position(|node| node.id == leader).unwrap();
    let all: Vec<&TestNode> = nodes.iter().collect();
    put_and_replicate(&nodes[index], &all, "phish-first").await;

    let mut old_leader = nodes.remove(index);
    old_leader.stop().await;
    let survivor = &nodes[0];
    let new_leader = survivor.leader_other_than(Some(leader)).await;
    let new_index = nodes.iter().position(|node| node.id == new_leader).unwrap();
    nodes[new_index]
        .raft
        .wait(Some(WAIT))
        .state(ServerState::Leader, "leadership")
        .await
        .unwrap();

    let survivors: Vec<&TestNode> = nodes.iter().collect();
    put_and_replicate(&nodes[new_index], &survivors, "phish-second").await;
    for node in &nodes {
        assert_eq!(node.condition_names().len(), 2, "node {}", node.id);
    }

    for node in &mut nodes {
        node.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_without_a_cluster_certificate_is_refused() {
    let ca = ClusterCa::generate("test").unwrap();
    let identity = ca.issue_node(1, &["127.0.0.1".to_owned()]).unwrap();
    let mut node = TestNode::start(1, &identity).await;
    let url = format!("https://{}/raft/vote", node.addr);
    let vote = openraft::raft::VoteRequest::<NodeId>::new(Vote::new(1, 2), None);

    let trusts_the_ca = || {
        let ca_cert = reqwest::Certificate::from_pem(identity.ca_pem.as_bytes()).unwrap();
        reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca_cert)
            .timeout(Duration::from_secs(5))
    };
    let with_identity = |identity: &NodeIdentity| {
        let pem = format!("{}\n{}", identity.cert_pem, identity.key_pem);
        trusts_the_ca().identity(reqwest::Identity::from_pem(pem.as_bytes()).unwrap())
    };

    // A holder of a cluster certificate speaking for itself is heard by a node that knows no
    // membership yet (it is joining), which shows the refusals below are about the caller.
    let second = ca.issue_node(2, &["127.0.0.1".to_owned()]).unwrap();
    let second = pullback_cluster::peer_client(&second, None).unwrap();
    let heard = second.post(&url).json(&vote).send().await.unwrap();
    assert_eq!(heard.status(), 200);
    // Speaking for another node is refused.
    let for_third = openraft::raft::VoteRequest::<NodeId>::new(Vote::new(1, 3), None);
    let refused = second.post(&url).json(&for_third).send().await.unwrap();
    assert_eq!(refused.status(), 403);
    // Once the node has a membership, a certificate of the cluster CA that names no member
    // (a removed node, a spent join token) is refused.
    let formed = ca.issue_node(5, &["127.0.0.1".to_owned()]).unwrap();
    let mut formed = TestNode::start(5, &formed).await;
    let alone = Member {
        raft: formed.addr.clone(),
        api: String::new(),
    };
    formed
        .raft
        .initialize(BTreeMap::from([(5, alone)]))
        .await
        .unwrap();
    // `initialize` returns once the membership is proposed; wait until the node applies it.
    formed
        .raft
        .wait(Some(std::time::Duration::from_secs(10)))
        .metrics(
            |m| {
                m.membership_config
                    .membership()
                    .voter_ids()
                    .any(|id| id == 5)
            },
            "the node knows its membership",
        )
        .await
        .unwrap();
    let formed_url = format!("https://{}/raft/vote", formed.addr);
    let refused = second.post(&formed_url).json(&vote).send().await.unwrap();
    assert_eq!(refused.status(), 403, "a non-member was heard");
    formed.stop().await;

    let anonymous = trusts_the_ca().build().unwrap();
    let refused = anonymous.post(&url).json(&vote).send().await;
    assert!(
        refused.is_err(),
        "a caller without a certificate was answered: {refused:?}"
    );

    let stranger_ca = ClusterCa::generate("test").unwrap();
    let stranger = stranger_ca
        .issue_node(2, &["127.0.0.1".to_owned()])
        .unwrap();
    let stranger = with_identity(&stranger).build().unwrap();
    let refused = stranger.post(&url).json(&vote).send().await;
    assert!(
        refused.is_err(),
        "a caller from another CA was answered: {refused:?}"
    );

    node.stop().await;
}

//! Exchange Online end to end: TAP alerts, the `pullback` binary, and mailboxes in the local
//! Graph (and in a real Dovecot beside it): quarantine and restore of every copy, a soft
//! delete and its undo, a throttling storm the job waits out, and a hybrid incident.

mod support;

use pullback_domain::AlertKind;
use pullback_graph::testing::{
    CLIENT_ID, CLIENT_SECRET, Fault, FaultRule, LocalGraph, LocalGraphConfig, NewMessage, TENANT_ID,
};
use pullback_mailbox::headers::{MessageHeaders, decode_encoded_words};
use pullback_mailbox::testing::Dovecot;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use support::*;

const ALICE: &str = "alice@contoso.example";
const BOB: &str = "bob@contoso.example";
const CAROL: &str = "carol@corp.test";

/// The `[[mailboxes]]` table of the local Graph, serving `contoso.example`.
fn graph_mailbox(graph: &LocalGraph, dir: &Path) -> String {
    let ca = dir.join("graph-ca.pem");
    std::fs::write(&ca, graph.ca_pem()).expect("write the CA");
    format!(
        r#"[[mailboxes]]
name = "exchange"
type = "graph"
domains = ["contoso.example"]
cloud = "global"
tenant_id = "{TENANT_ID}"
client_id = "{CLIENT_ID}"
client_secret = {{ value = "{CLIENT_SECRET}" }}
authority_url = "{url}"
graph_url = "{url}"
ca_file = {ca:?}
timeout_secs = 5
"#,
        url = graph.base_url(),
    )
}

/// A copy of `message` as Graph holds it.
fn copy_of(message: &[u8]) -> NewMessage {
    let headers = MessageHeaders::parse(message);
    let id = headers.message_id.expect("a Message-ID").bracketed();
    let subject = headers
        .subject
        .as_deref()
        .map(decode_encoded_words)
        .unwrap_or_default();
    let from = headers.from.unwrap_or_default();
    let address = pullback_domain::normalise_address(&from).unwrap_or(from);
    NewMessage::new(&id, &subject, &address)
}

fn message_id(message: &[u8]) -> String {
    MessageHeaders::parse(message)
        .message_id
        .expect("a Message-ID")
        .bracketed()
}

/// A node with the given mailbox tables and extra configuration, and the TAP server it polls.
struct Node {
    server: Server,
    _dir: tempfile::TempDir,
    _tap: std::sync::Arc<pullback_tap::simulator::TapSimulator>,
}

impl Node {
    async fn start(
        graph: &LocalGraph,
        dovecot: Option<&Dovecot>,
        events: Vec<Value>,
        extra: &str,
    ) -> Node {
        let (tap, tap_address) = start_tap().await;
        for event in events {
            serve_event(&tap, AlertKind::MessageDelivered, event);
        }
        let dir = tempfile::tempdir().expect("a test folder");
        let mut mailboxes = graph_mailbox(graph, dir.path());
        if let Some(dovecot) = dovecot {
            let address: SocketAddr = format!("127.0.0.1:{}", dovecot.port()).parse().unwrap();
            mailboxes.push('\n');
            mailboxes.push_str(&imap_mailbox(dovecot, address));
        }
        let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let config = NodeConfig {
            dir: dir.path(),
            listen,
            tap: tap_address,
            mailboxes,
            worker_concurrency: 4,
            tls: None,
        };
        let text = config.text(1, &dir.path().join("node"), listen, extra);
        let path = dir.path().join("pullback.toml");
        std::fs::write(&path, text).expect("write the configuration");
        let server = Server::start(&path, listen).await;
        Node {
            server,
            _dir: dir,
            _tap: tap,
        }
    }

    async fn idle(&self, since: pullback_domain::Timestamp) {
        let idle = self.server.api(ADMIN_KEY).wait_until_idle(since).await;
        assert!(idle, "the jobs did not finish:\n{}", self.server.log_text());
    }

    /// Every recipient result of every job: `(job id, recipient, status, details)`.
    async fn results(&self) -> Vec<(u64, String, String, String)> {
        let (_, jobs) = self
            .server
            .api(ADMIN_KEY)
            .get("/api/v1/jobs?limit=100")
            .await;
        let mut out = Vec::new();
        for job in jobs["items"].as_array().into_iter().flatten() {
            for result in job["results"].as_array().into_iter().flatten() {
                out.push((
                    job["id"].as_u64().unwrap_or_default(),
                    result["recipient"].as_str().unwrap_or_default().to_owned(),
                    result["status"].as_str().unwrap_or_default().to_owned(),
                    result["details"].as_str().unwrap_or_default().to_owned(),
                ));
            }
        }
        out
    }

    async fn status_of(&self, job: u64, recipient: &str) -> (String, String) {
        self.results()
            .await
            .into_iter()
            .find(|(id, r, _, _)| *id == job && r == recipient)
            .map(|(_, _, status, details)| (status, details))
            .unwrap_or_else(|| panic!("no result for {recipient} in job {job}"))
    }

    async fn restore_incident(&self, incident: u64) {
        let (status, body) = self
            .server
            .api(ANALYST_KEY)
            .send(
                reqwest::Method::POST,
                &format!("/api/v1/incidents/{incident}/restore"),
                json!({}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }

    async fn only_incident(&self) -> u64 {
        let (_, incidents) = self
            .server
            .api(ADMIN_KEY)
            .get("/api/incidents?state=open")
            .await;
        let incidents = incidents.as_array().expect("incidents").clone();
        assert_eq!(incidents.len(), 1, "{incidents:?}");
        incidents[0]["id"].as_u64().expect("an id")
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn quarantine_and_restore_every_copy_in_exchange_online() {
    let graph = LocalGraph::start(LocalGraphConfig::default()).await;
    graph.add_mailbox(ALICE);
    graph.add_mailbox(BOB);
    let love = shared_mail("phish/sample-3690.eml");
    let id = message_id(&love);
    graph.deliver(ALICE, "inbox", &copy_of(&love));
    graph.deliver(ALICE, "archive", &copy_of(&love));
    graph.deliver(BOB, "inbox", &copy_of(&love));
    let events = vec![delivered_event("ev-love", &love, &[ALICE, BOB], "active")];

    let started = chrono::Utc::now();
    let node = Node::start(&graph, None, events, "").await;
    node.idle(started).await;
    assert_eq!(graph.folders_of(ALICE, &id), ["Quarantine", "Quarantine"]);
    assert_eq!(graph.folders_of(BOB, &id), ["Quarantine"]);
    let (status, details) = node.status_of(1, ALICE).await;
    assert_eq!(status, "quarantined", "{details}");
    assert!(
        details.contains("moved 2 copies from Archive and Inbox"),
        "{details}"
    );

    // The Threat Response view reads as it does for IMAP mailboxes.
    let (_, incidents) = node
        .server
        .api(ADMIN_KEY)
        .get("/api/incidents?state=open")
        .await;
    let results = incidents[0]["quarantine_results"]
        .as_array()
        .expect("results")
        .clone();
    assert_eq!(results.len(), 2, "{results:?}");
    assert!(
        results.iter().all(|r| r["status"] == "successful"),
        "{results:?}"
    );

    let restore_from = chrono::Utc::now();
    node.restore_incident(node.only_incident().await).await;
    node.idle(restore_from).await;
    assert_eq!(graph.folders_of(ALICE, &id), ["Archive", "Inbox"]);
    assert_eq!(graph.folders_of(BOB, &id), ["Inbox"]);
    let (_, incident) = node
        .server
        .api(ADMIN_KEY)
        .get(&format!(
            "/api/incidents/{}.json",
            node.only_incident().await
        ))
        .await;
    let undone = incident["quarantine_results"].as_array().expect("results");
    assert!(
        undone.iter().all(|r| r["wasUndone"] == "true"),
        "{undone:?}"
    );
    assert!(
        !node.server.log_text().contains(CLIENT_SECRET),
        "the secret reached the log"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_soft_delete_response_moves_to_recoverable_items_and_restore_brings_it_back() {
    let graph = LocalGraph::start(LocalGraphConfig::default()).await;
    graph.add_mailbox(ALICE);
    let diplomat = shared_mail("phish/sample-1006.eml");
    let id = message_id(&diplomat);
    graph.deliver(ALICE, "inbox", &copy_of(&diplomat));
    let events = vec![delivered_event("ev-dip", &diplomat, &[ALICE], "active")];
    let soft_delete = r#"
[[match_conditions]]
name = "delete-phish"
sources = ["tap"]
classifications = ["phish", "malware"]
responses = ["soft_delete"]
"#;

    let started = chrono::Utc::now();
    let node = Node::start(&graph, None, events, soft_delete).await;
    node.idle(started).await;
    assert_eq!(graph.folders_of(ALICE, &id), ["Deletions"]);
    let (status, details) = node.status_of(1, ALICE).await;
    assert_eq!(status, "quarantined", "{details}");
    assert!(details.contains("soft delete"), "{details}");

    let restore_from = chrono::Utc::now();
    node.restore_incident(node.only_incident().await).await;
    node.idle(restore_from).await;
    assert_eq!(graph.folders_of(ALICE, &id), ["Inbox"]);
    let (status, details) = node.status_of(2, ALICE).await;
    assert_eq!(status, "restored", "{details}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_throttling_storm_slows_the_job_but_never_fails_it() {
    let graph = LocalGraph::start(LocalGraphConfig {
        latency: Duration::from_millis(20),
        ..LocalGraphConfig::default()
    })
    .await;
    graph.add_mailbox(ALICE);
    graph.add_mailbox(BOB);
    let love = shared_mail("phish/sample-3690.eml");
    let id = message_id(&love);
    graph.deliver(ALICE, "inbox", &copy_of(&love));
    graph.deliver(BOB, "inbox", &copy_of(&love));
    // Every request about Alice is throttled for a while: 429s, then 503s.
    for status in [429, 503] {
        graph.inject(FaultRule {
            mailbox: Some(ALICE.into()),
            fault: Fault::Throttle {
                status,
                retry_after_secs: Some(0.3),
            },
            times: 12,
        });
    }
    let events = vec![delivered_event("ev-storm", &love, &[ALICE, BOB], "active")];

    let started = chrono::Utc::now();
    let node = Node::start(&graph, None, events, "").await;
    // Until the job is done, Alice is never reported failed, nor done early.
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut done = false;
    while !done && std::time::Instant::now() < deadline {
        let results = node.results().await;
        if let Some((_, _, status, details)) = results.iter().find(|(_, r, _, _)| r == ALICE) {
            assert_ne!(
                status, "failed",
                "reported failed during throttling: {details}"
            );
            if status == "quarantined" {
                assert_eq!(
                    graph.folders_of(ALICE, &id),
                    ["Quarantine"],
                    "done before it was"
                );
                done = true;
            }
            seen.push(status.clone());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        done,
        "the throttled job did not finish:\n{}",
        node.server.log_text()
    );
    node.idle(started).await;
    assert!(seen.iter().any(|s| s == "in_progress"), "{seen:?}");
    assert!(graph.stats().throttled >= 24, "{:?}", graph.stats());
    assert_eq!(graph.folders_of(BOB, &id), ["Quarantine"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hybrid_incident_pulls_from_dovecot_and_exchange_online_alike() {
    let dovecot = Dovecot::start(&[CAROL]);
    let graph = LocalGraph::start(LocalGraphConfig::default()).await;
    graph.add_mailbox(ALICE);
    let love = shared_mail("phish/sample-3690.eml");
    let id = message_id(&love);
    dovecot.deliver(CAROL, "INBOX", &love);
    graph.deliver(ALICE, "inbox", &copy_of(&love));
    let events = vec![delivered_event(
        "ev-hybrid",
        &love,
        &[ALICE, CAROL],
        "active",
    )];

    let started = chrono::Utc::now();
    let node = Node::start(&graph, Some(&dovecot), events, "").await;
    node.idle(started).await;
    assert_eq!(graph.folders_of(ALICE, &id), ["Quarantine"]);
    assert_eq!(dovecot.messages(CAROL, "Quarantine").len(), 1);
    for recipient in [ALICE, CAROL] {
        let (status, details) = node.status_of(1, recipient).await;
        assert_eq!(status, "quarantined", "{recipient}: {details}");
        assert!(
            details.starts_with("moved 1 copy from"),
            "{recipient}: {details}"
        );
    }

    let restore_from = chrono::Utc::now();
    node.restore_incident(node.only_incident().await).await;
    node.idle(restore_from).await;
    assert_eq!(graph.folders_of(ALICE, &id), ["Inbox"]);
    assert_eq!(dovecot.messages(CAROL, "INBOX").len(), 1);
    assert!(dovecot.messages(CAROL, "Quarantine").is_empty());
    for recipient in [ALICE, CAROL] {
        let (status, details) = node.status_of(2, recipient).await;
        assert_eq!(status, "restored", "{recipient}: {details}");
    }
}

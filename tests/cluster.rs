//! Faults a cluster of real `pullback` processes must survive without losing or repeating
//! work: its leader killed again and again, its leader cut off from the others, every node
//! restarting at once, a follower losing its disk. Each test ends with the history check,
//! which reads every node's store and the mailboxes.

mod support;

use pullback_domain::AlertKind;
use pullback_mailbox::headers::MessageHeaders;
use pullback_mailbox::testing::Dovecot;
use serde_json::json;
use std::net::SocketAddr;
use std::time::Duration;
use support::cluster::{ClusterOptions, TestCluster};
use support::history::{self, Expected, ExpectedAlert, ExpectedQuarantine};
use support::*;

/// A configuration for every node of a test cluster: a TAP source and a Dovecot (or
/// nothing to quarantine).
fn base<'a>(dir: &'a std::path::Path, tap: SocketAddr, mailboxes: String) -> NodeConfig<'a> {
    NodeConfig {
        dir,
        // Each node gets its own address; this one is not used.
        listen: "127.0.0.1:0".parse().unwrap(),
        tap,
        mailboxes,
        worker_concurrency: 4,
        tls: None,
    }
}

/// A cluster of `nodes` with a TAP source and no mailboxes, for tests about the replicated
/// state alone.
async fn cluster_without_mail(
    dir: &std::path::Path,
    nodes: u64,
    proxied: bool,
    snapshot_logs: u64,
) -> TestCluster {
    let (_tap, tap_address) = start_tap().await;
    TestCluster::start(ClusterOptions {
        nodes,
        base: base(dir, tap_address, String::new()),
        proxied,
        snapshot_logs,
    })
    .await
}

/// Pushes `count` alerts with ids `<prefix>-<n>` through node `via`, in requests of `per`.
async fn push_alerts(cluster: &TestCluster, via: u64, prefix: &str, count: usize, per: usize) {
    let api = cluster.api(via);
    for start in (0..count).step_by(per) {
        let alerts: Vec<_> = (start..(start + per).min(count))
            .map(|n| json!({ "id": format!("{prefix}-{n}"), "recipients": ["someone@corp.test"] }))
            .collect();
        let (status, body) = api
            .send(
                reqwest::Method::POST,
                "/api/v1/alerts",
                json!({ "source": "script", "alerts": alerts }),
            )
            .await;
        assert_eq!(
            status,
            200,
            "push through node {via}: {body}\n{}",
            cluster.logs()
        );
    }
}

fn expected_pushed(prefix: &str, count: usize) -> Vec<ExpectedAlert> {
    (0..count)
        .map(|n| ExpectedAlert::new("script", &format!("id:{prefix}-{n}")))
        .collect()
}

async fn assert_history(cluster: &mut TestCluster, expected: &Expected, dovecot: Option<&Dovecot>) {
    // Pollers keep committing (a TAP checkpoint a second), so nodes stopped one after another
    // right after they agree can still stop at different entries; they are then started and
    // stopped again.
    for _ in 0..5 {
        cluster.wait_converged().await;
        cluster.stop_all();
        let applied: std::collections::BTreeSet<_> = cluster
            .stores()
            .iter()
            .map(|db| history::NodeState::read(db).map(|s| s.applied.map(|id| id.index)))
            .collect();
        if applied.len() == 1 {
            break;
        }
        for id in 1..=cluster.nodes.len() as u64 {
            cluster.start_node(id).await;
        }
    }
    let problems = history::check(&cluster.stores(), expected, dovecot);
    assert!(
        problems.is_empty(),
        "the history check found problems:\n  - {}\n{}",
        problems.join("\n  - "),
        cluster.logs()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn killing_the_leader_repeatedly_loses_and_repeats_nothing() {
    const USERS: usize = 8;
    const MESSAGES: [&str; 5] = [
        "phish/sample-1006.eml",
        "phish/sample-1086.eml",
        "phish/sample-1133.eml",
        "phish/sample-1261.eml",
        "phish/sample-1266.eml",
    ];
    let users: Vec<String> = (0..USERS).map(|i| format!("user{i}@corp.test")).collect();
    let user_refs: Vec<&str> = users.iter().map(String::as_str).collect();
    let dovecot = Dovecot::start(&user_refs);
    let (tap, tap_address) = start_tap().await;
    // Each IMAP connection waits, so quarantines are in flight when the leader dies.
    let upstream: SocketAddr = format!("127.0.0.1:{}", dovecot.port()).parse().unwrap();
    let slow = latency_proxy(upstream, Duration::from_millis(80)).await;
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = TestCluster::start(ClusterOptions {
        nodes: 3,
        base: base(dir.path(), tap_address, imap_mailbox(&dovecot, slow)),
        proxied: false,
        snapshot_logs: 20_000,
    })
    .await;

    let started = chrono::Utc::now();
    let mut expected = Expected::default();
    let mut leader = cluster.wait_for_leader(None).await;
    for (round, path) in MESSAGES.iter().enumerate() {
        let message = shared_mail(path);
        let message_id = MessageHeaders::parse(&message).message_id.unwrap();
        for user in &users {
            dovecot.deliver(user, "INBOX", &message);
            expected
                .quarantined
                .push(ExpectedQuarantine::new(user, message_id.as_str()));
        }
        let event = delivered_event(&format!("ev-{round}"), &message, &user_refs, "active");
        expected.alerts.push(ExpectedAlert::from_tap_event(
            "tap",
            AlertKind::MessageDelivered,
            &event,
        ));
        serve_event(&tap, AlertKind::MessageDelivered, event);

        // Let the leader fetch and start moving mail, then kill it mid-way.
        tokio::time::sleep(Duration::from_millis(1200 + 150 * round as u64)).await;
        cluster.kill(leader);
        let successor = cluster.wait_for_leader(Some(leader)).await;
        cluster.start_node(leader).await;
        leader = successor;
    }

    let api = cluster.api(leader);
    assert!(
        api.wait_until_idle(started).await,
        "the cluster did not finish its work:\n{}",
        cluster.logs()
    );
    assert!(
        cluster.wait_converged().await,
        "nodes did not converge:\n{}",
        cluster.logs()
    );
    assert_history(&mut cluster, &expected, Some(&dovecot)).await;
}

/// A scripted poller that prints 3,000 alerts over several seconds, with a checkpoint every
/// 100, resuming from the checkpoint it is given.
const SLOW_POLLER: &str = r#"#!/usr/bin/env python3
import json, os, sys, time
start = int(os.environ.get("PULLBACK_CHECKPOINT", "0"))
for i in range(start, 3000):
    print(json.dumps({"id": "s-%d" % i, "recipients": ["someone@corp.test"]}))
    if (i + 1) % 100 == 0:
        print(json.dumps({"checkpoint": str(i + 1)}), flush=True)
        time.sleep(0.15)
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_scripted_poller_survives_leader_kills_without_losing_or_repeating_alerts() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("slow-poller.py");
    std::fs::write(&script, SLOW_POLLER).unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut cluster = cluster_without_mail(dir.path(), 3, false, 20_000).await;
    let mut leader = cluster.wait_for_leader(None).await;
    // Defined through a follower's API, as an administrator might.
    let follower = [1, 2, 3].into_iter().find(|id| *id != leader).unwrap();
    let (status, body) = cluster
        .api(follower)
        .send(
            reqwest::Method::PUT,
            "/api/v1/sources/imd",
            json!({ "type": "script", "command": script, "interval_secs": 1 }),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    // Kill the leader twice while the script is half-way through its output.
    for pause in [1800, 1500] {
        tokio::time::sleep(Duration::from_millis(pause)).await;
        cluster.kill(leader);
        let successor = cluster.wait_for_leader(Some(leader)).await;
        cluster.start_node(leader).await;
        leader = successor;
    }
    let api = cluster.api(leader);
    let done = wait_for(Duration::from_secs(60), || async {
        let (_, source) = api.get("/api/v1/sources/imd").await;
        source["position"] == "3000" && source["last_success"].is_string()
    })
    .await;
    assert!(done, "the poller did not finish:\n{}", cluster.logs());
    let (_, source) = api.get("/api/v1/sources/imd").await;
    assert_eq!(source["accepted"], 3000, "{source}");
    assert!(cluster.wait_converged().await, "{}", cluster.logs());
    let expected = Expected {
        alerts: (0..3000)
            .map(|i| ExpectedAlert::new("imd", &format!("id:s-{i}")))
            .collect(),
        quarantined: Vec::new(),
    };
    assert_history(&mut cluster, &expected, None).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_isolated_leader_stops_and_the_majority_carries_on() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = cluster_without_mail(dir.path(), 3, true, 20_000).await;
    let old = cluster.wait_for_leader(None).await;
    push_alerts(&cluster, old, "before", 20, 10).await;

    cluster.faults.isolate(old, &[1, 2, 3]);
    let new = cluster.wait_for_leader(Some(old)).await;
    assert_ne!(new, old);
    // The majority takes writes, through its leader or a follower.
    let follower = [1, 2, 3]
        .into_iter()
        .find(|id| *id != old && *id != new)
        .unwrap();
    push_alerts(&cluster, new, "during", 20, 10).await;
    push_alerts(&cluster, follower, "during-follower", 5, 5).await;

    // The cut-off node answers, but refuses to pretend: no reads, no writes.
    let isolated = cluster.api(old);
    let (status, body) = isolated.get("/api/v1/alerts").await;
    assert_eq!(status, 503, "a read on the isolated node: {body}");
    assert!(
        body["error"].as_str().unwrap().contains("majority"),
        "{body}"
    );
    let (status, body) = isolated
        .send(
            reqwest::Method::POST,
            "/api/v1/alerts",
            json!({ "source": "script", "alerts": [{ "id": "lost-1" }] }),
        )
        .await;
    assert_eq!(status, 503, "a write on the isolated node: {body}");
    // It may still call itself leader (nothing told it otherwise), but it stopped its
    // pollers and workers once it lost touch with the majority.
    let (_, own) = isolated.get("/api/v1/status").await;
    assert!(
        own["leader_work"].is_null(),
        "the isolated node still works: {own}"
    );

    cluster.faults.heal();
    assert!(
        cluster.wait_converged().await,
        "nodes did not converge:\n{}",
        cluster.logs()
    );
    let (status, alerts) = isolated.get("/api/v1/alerts?limit=1000").await;
    assert_eq!(status, 200);
    assert_eq!(
        alerts["total"], 45,
        "the healed node sees the majority's writes"
    );

    let mut expected = Expected::default();
    for (prefix, count) in [("before", 20), ("during", 20), ("during-follower", 5)] {
        expected.alerts.extend(expected_pushed(prefix, count));
    }
    assert_history(&mut cluster, &expected, None).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn five_nodes_restarted_at_once_come_back_with_their_state() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = cluster_without_mail(dir.path(), 5, false, 20_000).await;
    let leader = cluster.wait_for_leader(None).await;
    push_alerts(&cluster, leader, "first", 30, 10).await;
    // Through a follower too: forwarded writes are acknowledged only once committed.
    let follower = (1..=5).find(|id| *id != leader).unwrap();
    push_alerts(&cluster, follower, "second", 30, 10).await;

    for id in 1..=5 {
        cluster.kill(id);
    }
    for id in 1..=5 {
        cluster.launch(id);
    }
    let leader = cluster.wait_for_leader(None).await;
    push_alerts(&cluster, leader, "third", 10, 10).await;
    assert!(
        cluster.wait_converged().await,
        "nodes did not converge:\n{}",
        cluster.logs()
    );
    for id in 1..=5 {
        let (status, alerts) = cluster.api(id).get("/api/v1/alerts?limit=1").await;
        assert_eq!(status, 200);
        assert_eq!(alerts["total"], 70, "node {id} after the restart");
    }

    let mut expected = Expected::default();
    for (prefix, count) in [("first", 30), ("second", 30), ("third", 10)] {
        expected.alerts.extend(expected_pushed(prefix, count));
    }
    assert_history(&mut cluster, &expected, None).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_follower_that_lost_its_disk_rejoins_from_a_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    // Snapshot and purge the log often, so the wiped node cannot replay it from the start.
    let mut cluster = cluster_without_mail(dir.path(), 3, false, 10).await;
    let leader = cluster.wait_for_leader(None).await;
    push_alerts(&cluster, leader, "old", 60, 2).await;
    let lost = (1..=3).find(|id| *id != leader).unwrap();
    cluster.wipe(lost);
    push_alerts(&cluster, leader, "while-away", 60, 2).await;

    // The operator gives the replacement disk a new token; the node keeps its id.
    cluster.join(lost).await;
    assert!(
        cluster.wait_converged().await,
        "nodes did not converge:\n{}",
        cluster.logs()
    );
    let (status, alerts) = cluster.api(lost).get("/api/v1/alerts?limit=1").await;
    assert_eq!(status, 200);
    assert_eq!(alerts["total"], 120, "the rejoined node holds everything");
    // Its search index came with the snapshot: it finds what was pushed before and after.
    let (status, found) = cluster
        .api(lost)
        .get("/api/v1/search?recipient=SOMEONE@corp.test&source=script&limit=500")
        .await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(
        found["alerts"].as_array().map(Vec::len),
        Some(120),
        "{found}"
    );
    let log = cluster.node(lost).server.as_ref().unwrap().log_text();
    assert!(
        log.contains("installed a snapshot from the leader"),
        "the node caught up without a snapshot:\n{}",
        cluster.logs()
    );

    let mut expected = Expected::default();
    expected.alerts.extend(expected_pushed("old", 60));
    expected.alerts.extend(expected_pushed("while-away", 60));
    assert_history(&mut cluster, &expected, None).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn join_tokens_come_from_admins_admit_once_and_pin_the_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let (_tap, tap_address) = start_tap().await;
    let cluster = TestCluster::start(ClusterOptions {
        nodes: 1,
        base: base(dir.path(), tap_address, String::new()),
        proxied: false,
        snapshot_logs: 20_000,
    })
    .await;
    let admin = cluster.api(1);
    let analyst = Api {
        key: ANALYST_KEY.into(),
        ..admin.clone()
    };
    let (status, _) = analyst
        .send(
            reqwest::Method::POST,
            "/api/v1/cluster/join-tokens",
            json!({}),
        )
        .await;
    assert_eq!(status, 403, "an analyst issued a join token");
    let (status, _) = analyst
        .send(
            reqwest::Method::DELETE,
            "/api/v1/cluster/members/1",
            json!({}),
        )
        .await;
    assert_eq!(status, 403, "an analyst removed a member");

    // The join call needs no API key, only a token.
    let anonymous = Api {
        key: String::new(),
        ..admin.clone()
    };
    let request = |token: &str| {
        json!({
            "token": token, "node_id": 9,
            "member": { "raft": "127.0.0.9:1", "api": "https://127.0.0.9:2" },
            "names": ["127.0.0.9"],
        })
    };
    let (status, body) = anonymous
        .send(
            reqwest::Method::POST,
            "/api/v1/cluster/join",
            request("pbj1.nonsense"),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    let fake = format!("pbj1.{}.{}", "ab".repeat(32), "cd".repeat(32));
    let (status, body) = anonymous
        .send(
            reqwest::Method::POST,
            "/api/v1/cluster/join",
            request(&fake),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("not known"),
        "{body}"
    );

    let token = cluster.token().await;
    let (status, body) = anonymous
        .send(
            reqwest::Method::POST,
            "/api/v1/cluster/join",
            request(&token),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["cert_pem"]
            .as_str()
            .unwrap()
            .contains("BEGIN CERTIFICATE")
    );
    // That certificate names no member (node 9 never started): the peer port hears it not.
    let ca = std::fs::read(cluster.node(1).data_dir.join("cluster/ca.crt")).unwrap();
    let pem = format!(
        "{}\n{}",
        body["cert_pem"].as_str().unwrap(),
        body["key_pem"].as_str().unwrap()
    );
    let outsider = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .identity(reqwest::Identity::from_pem(pem.as_bytes()).unwrap())
        .build()
        .unwrap();
    let raft = cluster.members().await[0]["raft"]
        .as_str()
        .unwrap()
        .to_owned();
    let forged = json!([{ "type": "delete_match_condition", "name": "tap-active-threats" }]);
    let answer: serde_json::Value = outsider
        .post(format!("https://{raft}/cluster/propose"))
        .json(&forged)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        answer["Err"]["Refused"].is_string(),
        "an outsider proposed: {answer}"
    );
    let vote = json!({ "vote": { "leader_id": { "term": 99, "node_id": 9 }, "committed": false },
                       "last_log_id": null });
    let status = outsider
        .post(format!("https://{raft}/raft/vote"))
        .json(&vote)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 403, "an outsider's vote request was heard");
    let (_, conditions) = admin.get("/api/v1/match-conditions").await;
    assert_eq!(conditions.as_array().unwrap().len(), 1, "{conditions}");
    let (status, body) = anonymous
        .send(
            reqwest::Method::POST,
            "/api/v1/cluster/join",
            request(&token),
        )
        .await;
    assert_eq!(status, 403, "a token admitted twice: {body}");
    assert!(
        body["error"].as_str().unwrap().contains("already used"),
        "{body}"
    );

    // A token naming another cluster's CA is never sent to this one.
    let other = cluster.token().await;
    let (secret, _) = other.rsplit_once('.').unwrap();
    let wrong_ca = format!("{secret}.{}", "00".repeat(32));
    let config = dir.path().join("stranger.toml");
    let text = base(dir.path(), tap_address, String::new()).text(
        7,
        &dir.path().join("stranger"),
        "127.0.0.1:1".parse().unwrap(),
        "[cluster]\nraft_listen = \"127.0.0.1:2\"\n",
    );
    std::fs::write(&config, text).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_pullback"))
        .args(["cluster", "join", "--peer", &admin.base, "--config"])
        .arg(&config)
        .env("PULLBACK_JOIN_TOKEN", &wrong_ca)
        .env("PULLBACK_TEST_TAP_SECRET", TAP_SECRET)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("not the cluster that issued the token"),
        "{stderr}"
    );
    // The secret was not spent: the real CA's token still admits a node.
    let (status, body) = anonymous
        .send(reqwest::Method::POST, "/api/v1/cluster/join", {
            let mut r = request(&other);
            r["node_id"] = json!(10);
            r
        })
        .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_removed_node_leaves_and_the_rest_carry_on() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = cluster_without_mail(dir.path(), 3, false, 20_000).await;
    let leader = cluster.wait_for_leader(None).await;
    let gone = (1..=3).find(|id| *id != leader).unwrap();
    let key_file = dir.path().join("admin.key");
    std::fs::write(&key_file, ADMIN_KEY).unwrap();
    let config = cluster.node(leader).config.clone();
    let cli = |args: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_pullback"))
            .args(["cluster"])
            .args(args)
            .arg("--config")
            .arg(&config)
            .arg("--api-key-file")
            .arg(&key_file)
            .env("PULLBACK_TEST_TAP_SECRET", TAP_SECRET)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    };
    cli(&["remove", &gone.to_string()]);
    cluster.stop(gone);

    let status: serde_json::Value = serde_json::from_str(&cli(&["status", "--json"])).unwrap();
    let ids: Vec<u64> = status["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids.len(), 2, "{status}");
    assert!(!ids.contains(&gone), "{status}");
    assert_eq!(status["leader"], leader);
    // Two voters out of two: writes still commit without the removed node.
    push_alerts(&cluster, leader, "after-removal", 5, 5).await;
    let table = cli(&["status"]);
    assert!(table.contains(&format!("leader: node {leader}")), "{table}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lone_survivor_starts_a_new_cluster_with_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = cluster_without_mail(dir.path(), 3, false, 20_000).await;
    let leader = cluster.wait_for_leader(None).await;
    push_alerts(&cluster, leader, "kept", 20, 10).await;
    assert!(
        cluster.wait_converged().await,
        "nodes did not converge:\n{}",
        cluster.logs()
    );

    // Two of three are lost for good; the survivor alone cannot answer.
    let survivor = (1..=3).find(|id| *id != leader).unwrap();
    let lost: Vec<u64> = (1..=3).filter(|id| *id != survivor).collect();
    for id in &lost {
        cluster.kill(*id);
    }
    let (status, body) = cluster.api(survivor).get("/api/v1/alerts").await;
    assert_eq!(
        status, 503,
        "a survivor without a majority answered: {body}"
    );

    cluster.stop(survivor);
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_pullback"))
        .args(["cluster", "force-new-cluster", "--yes", "--config"])
        .arg(&cluster.node(survivor).config)
        .env("PULLBACK_TEST_TAP_SECRET", TAP_SECRET)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    cluster.start_node(survivor).await;
    let (status, alerts) = cluster.api(survivor).get("/api/v1/alerts?limit=1").await;
    assert_eq!(status, 200, "{alerts}");
    assert_eq!(alerts["total"], 20, "the survivor kept its data");
    push_alerts(&cluster, survivor, "after", 5, 5).await;

    // Replacements join the new cluster the usual way and receive everything.
    for id in lost {
        cluster.wipe(id);
        cluster.join(id).await;
    }
    assert!(
        cluster.wait_converged().await,
        "nodes did not converge:\n{}",
        cluster.logs()
    );
    assert_eq!(cluster.members().await.len(), 3);
    let mut expected = Expected::default();
    expected.alerts.extend(expected_pushed("kept", 20));
    expected.alerts.extend(expected_pushed("after", 5));
    assert_history(&mut cluster, &expected, None).await;
}

/// `pullback cluster upgrade` rolls an IMG over an appliance cluster through the API: one
/// node at a time, followers first and the leader last, each next one only after the last
/// one confirmed, and it stops at the first node that falls back. The test plays root on
/// every node: it takes the uploaded image from the node's inbox, "reboots" the node into the
/// next release (starts the build one command level ahead on its data) and writes the
/// trial's outcome, as `pullback upgrade inbox` and the boot checks do on the appliance. After
/// the last node the roll finalizes the upgrade.
#[tokio::test(flavor = "multi_thread")]
async fn a_rolling_upgrade_goes_node_by_node_and_stops_at_a_fallback() {
    use pullback_appliance::inbox::{Inbox, InboxResult, InboxState};
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = cluster_without_mail(dir.path(), 3, false, 1000).await;
    // Appliance nodes: each with its upgrade inbox, restarted to read it.
    let mut inboxes = Vec::new();
    for id in 1..=3u64 {
        let inbox = dir.path().join(format!("inbox{id}"));
        std::fs::create_dir(&inbox).unwrap();
        let config = cluster.node(id).config.clone();
        let text = std::fs::read_to_string(&config).unwrap().replacen(
            "[node]\n",
            &format!(
                "[node]\nupgrade_inbox = {:?}\n",
                inbox.display().to_string()
            ),
            1,
        );
        std::fs::write(&config, text).unwrap();
        cluster.stop(id);
        cluster.start_node(id).await;
        inboxes.push(Inbox::at(inbox));
    }
    assert!(cluster.wait_converged().await, "{}", cluster.logs());
    let leader = cluster.wait_for_leader(None).await;
    let mut followers: Vec<u64> = (1..=3).filter(|&id| id != leader).collect();
    followers.sort();
    let key_file = dir.path().join("admin.key");
    std::fs::write(&key_file, ADMIN_KEY).unwrap();
    let ca = cluster.node(1).data_dir.join("cluster/ca.crt");

    let image = |version: &str| {
        let release = pullback_appliance::Release {
            version: version.into(),
            data_format: 1,
            oldest_data_format: 1,
            built: 0,
        };
        let payload: [(&str, &[u8]); 3] = [
            ("vmlinuz", b"kernel"),
            ("initrd.img", b"initrd"),
            ("rootfs.ext4", b"root"),
        ];
        let manifest = pullback_appliance::img::testing::manifest(&release, &payload);
        let key = ring::signature::Ed25519KeyPair::from_seed_unchecked(&[7; 32]).unwrap();
        let path = dir.path().join(format!("pullback-{version}.img"));
        std::fs::write(
            &path,
            pullback_appliance::img::testing::image(&key, &manifest, &payload),
        )
        .unwrap();
        path
    };
    // Any member answers for the cluster; node 1 is asked.
    let api_base = cluster.node(1).api_base.clone();
    let roll = |file: &std::path::Path| {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_pullback"))
            .args(["cluster", "upgrade", "--node-timeout-secs", "120", "--api"])
            .arg(&api_base)
            .arg("--ca-file")
            .arg(&ca)
            .arg("--api-key-file")
            .arg(&key_file)
            .arg(file)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    // Root's side: the nodes in the order their uploads arrived.
    async fn play_root(
        cluster: &mut TestCluster,
        inboxes: &[Inbox],
        dir: &std::path::Path,
        child: &mut tokio::process::Child,
        falls_back: Option<u64>,
        release: &std::path::Path,
    ) -> Vec<u64> {
        let mut order = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(300);
        while child.try_wait().unwrap().is_none() {
            assert!(std::time::Instant::now() < deadline, "the roll did not end");
            for (index, inbox) in inboxes.iter().enumerate() {
                let id = index as u64 + 1;
                let taken = dir.join(format!("taken{id}.img"));
                let Some(taken) = inbox.take_request(&taken).unwrap() else {
                    continue;
                };
                order.push(id);
                let manifest = pullback_appliance::img::read_manifest(&taken).unwrap();
                let uploaded_by = inbox.result().unwrap().unwrap().uploaded_by;
                let result = |state, message: &str| InboxResult {
                    state,
                    message: message.into(),
                    version: Some(manifest.version.clone()),
                    uploaded_by: uploaded_by.clone(),
                    at: 1,
                };
                inbox
                    .set_result(&result(InboxState::Rebooting, "written; rebooting"))
                    .unwrap();
                cluster.replace_binary(id, release).await;
                let (state, message) = if falls_back == Some(id) {
                    (
                        InboxState::FellBack,
                        "failed its trial boot; back on slot A",
                    )
                } else {
                    (InboxState::Confirmed, "confirmed")
                };
                inbox
                    .settle(&manifest.version, state, message.into())
                    .unwrap();
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        order
    }

    // The image "installs" the next release's stand-in, one command level ahead.
    let next = support::rehearsal_binary();
    let mut child = roll(&image("9.9.9"));
    let order = play_root(&mut cluster, &inboxes, dir.path(), &mut child, None, &next).await;
    let output = child.wait_with_output().await.unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{stdout}\n{stderr}\n{}",
        cluster.logs()
    );
    assert_eq!(
        order,
        [followers.clone(), vec![leader]].concat(),
        "{stdout}"
    );
    assert!(stdout.contains("every node runs 9.9.9"), "{stdout}");
    assert!(
        stdout.contains("the cluster now runs at command level 2"),
        "{stdout}"
    );
    for inbox in &inboxes {
        let result = inbox.result().unwrap().unwrap();
        assert_eq!(result.state, InboxState::Confirmed);
        assert_eq!(result.uploaded_by.as_deref(), Some("key admin"));
    }

    // The second node falls back: the roll stops there and the leader is never touched.
    let leader = cluster.wait_for_leader(None).await;
    let mut followers: Vec<u64> = (1..=3).filter(|&id| id != leader).collect();
    followers.sort();
    let mut child = roll(&image("9.9.10"));
    let order = play_root(
        &mut cluster,
        &inboxes,
        dir.path(),
        &mut child,
        Some(followers[1]),
        &next,
    )
    .await;
    let output = child.wait_with_output().await.unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert_eq!(order, followers, "{stderr}");
    assert!(
        stderr.contains(&format!("node {}: fellback", followers[1]))
            && stderr.contains("the roll stops here"),
        "{stderr}"
    );
    let untouched = inboxes[(leader - 1) as usize].result().unwrap().unwrap();
    assert_eq!(
        untouched.version.as_deref(),
        Some("9.9.9"),
        "the leader got the image"
    );
}

/// Proposes, through node `via`, the command only the next release knows.
async fn rehearse(cluster: &TestCluster, via: u64, text: &str) -> (u16, serde_json::Value) {
    let body = json!({ "text": text });
    cluster
        .api(via)
        .send(reqwest::Method::POST, "/api/v1/cluster/rehearsal", body)
        .await
}

async fn finalize(cluster: &TestCluster, via: u64) -> (u16, serde_json::Value) {
    cluster
        .api(via)
        .send(reqwest::Method::POST, "/api/v1/cluster/finalize", json!({}))
        .await
}

/// A rolling upgrade between adjacent releases: a node of the next release (a build one
/// command level ahead, with a command this build does not know) leads nodes of this one. The
/// old nodes keep replicating, because the new command is refused until every node runs the
/// new release and the upgrade is finalized; after that, this release no longer starts.
#[tokio::test(flavor = "multi_thread")]
async fn two_adjacent_releases_share_a_cluster_until_the_upgrade_is_finalized() {
    let next = support::rehearsal_binary();
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = cluster_without_mail(dir.path(), 3, false, 1000).await;
    let levels = |members: Vec<serde_json::Value>| -> Vec<Option<u64>> {
        (1..=3u64)
            .map(|id| {
                let member = members.iter().find(|m| m["id"] == id)?;
                member["release"]["level"].as_u64()
            })
            .collect()
    };

    // Node 1 runs the next release and leads the two others.
    cluster.replace_binary(1, &next).await;
    let mut leader = 0;
    for _ in 0..12 {
        // A node that restarted may still call an election: only a leader that lasts counts.
        tokio::time::sleep(Duration::from_secs(2)).await;
        leader = cluster.wait_for_leader(None).await;
        if leader == 1 {
            break;
        }
        cluster.stop(leader);
        cluster.wait_for_leader(Some(leader)).await;
        cluster.start_node(leader).await;
    }
    assert_eq!(leader, 1, "node 1 never led:\n{}", cluster.logs());
    let reported = wait_for(Duration::from_secs(30), || async {
        levels(cluster.members().await) == [Some(2), Some(1), Some(1)]
    })
    .await;
    assert!(
        reported,
        "releases: {:?}\n{}",
        cluster.members().await,
        cluster.logs()
    );

    // Writes through the new leader and through an old follower reach every node.
    push_alerts(&cluster, 1, "leader", 20, 5).await;
    push_alerts(&cluster, 3, "follower", 20, 5).await;
    assert!(cluster.wait_converged().await, "{}", cluster.logs());

    // The next release's command waits for the upgrade to end.
    let (status, body) = rehearse(&cluster, 1, "too early").await;
    assert_eq!(status, 409, "{body}");
    let error = body["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("needs command level 2, and the cluster runs at level 1"),
        "{error}"
    );
    let (status, body) = finalize(&cluster, 1).await;
    assert_eq!(status, 409, "{body}");
    let error = body["error"].as_str().unwrap_or_default();
    assert!(error.contains("the upgrade is not finished"), "{error}");
    for old in [2, 3] {
        assert!(
            error.contains(&format!("node {old} runs ")),
            "{old}: {error}"
        );
    }
    assert!(!error.contains("node 1 runs"), "{error}");
    assert!(cluster.wait_converged().await, "{}", cluster.logs());

    // Every node upgraded: finalizing raises the level once, and the command is accepted.
    cluster.replace_binary(2, &next).await;
    cluster.replace_binary(3, &next).await;
    let reported = wait_for(Duration::from_secs(30), || async {
        levels(cluster.members().await) == [Some(2); 3]
    })
    .await;
    assert!(reported, "{:?}", cluster.members().await);
    let (status, body) = finalize(&cluster, 2).await;
    assert_eq!(
        (status, &body["level"], &body["raised"]),
        (200, &json!(2), &json!(true))
    );
    let (status, body) = finalize(&cluster, 3).await;
    assert_eq!(
        (status, &body["level"], &body["raised"]),
        (200, &json!(2), &json!(false))
    );
    let (status, body) = rehearse(&cluster, 3, "after the upgrade").await;
    assert_eq!(status, 204, "{body}");
    assert!(cluster.wait_converged().await, "{}", cluster.logs());
    for id in 1..=3 {
        let (_, page) = cluster.api(id).get("/api/v1/audit").await;
        let actions: Vec<&str> = page["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["action"].as_str())
            .collect();
        assert!(actions.contains(&"rehearsal"), "node {id}: {actions:?}");
        assert!(
            actions.contains(&"set_cluster_level"),
            "node {id}: {actions:?}"
        );
    }

    let expected = Expected {
        alerts: [
            expected_pushed("leader", 20),
            expected_pushed("follower", 20),
        ]
        .concat(),
        quarantined: Vec::new(),
    };
    assert_history(&mut cluster, &expected, None).await;

    // This release no longer starts on the cluster's data, and says why.
    let node = cluster.node(2);
    let mut old = support::Server::spawn(&node.config, node.api_base.clone());
    let exited = wait_for(Duration::from_secs(30), || {
        let exited = matches!(old.child.try_wait(), Ok(Some(_)));
        async move { exited }
    })
    .await;
    let log = std::fs::read_to_string(&old.log).unwrap_or_default();
    assert!(exited, "the old release kept running:\n{log}");
    assert!(log.contains("finalized at level 2"), "{log}");
}

//! A node killed with SIGKILL in the middle of a quarantine job and started again: nothing
//! it acknowledged is lost, and no message is moved twice.

mod support;

use pullback_domain::AlertKind;
use pullback_mailbox::testing::Dovecot;
use std::net::SocketAddr;
use std::time::Duration;
use support::*;

const USERS: usize = 30;

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_mid_job_loses_nothing_and_moves_nothing_twice() {
    let users: Vec<String> = (0..USERS).map(|i| format!("user{i}@corp.test")).collect();
    let user_refs: Vec<&str> = users.iter().map(String::as_str).collect();
    let dovecot = Dovecot::start(&user_refs);
    let message = shared_mail("phish/sample-1006.eml");
    for user in &users {
        dovecot.deliver(user, "INBOX", &message);
    }
    let (tap, tap_address) = start_tap().await;
    let event = delivered_event("ev-all", &message, &user_refs, "active");
    serve_event(&tap, AlertKind::MessageDelivered, event);

    // Each IMAP connection waits 150 ms, so the job takes seconds and can be cut in the middle.
    let upstream: SocketAddr = format!("127.0.0.1:{}", dovecot.port()).parse().unwrap();
    let slow = latency_proxy(upstream, Duration::from_millis(150)).await;
    let dir = tempfile::tempdir().unwrap();
    let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let config = NodeConfig {
        dir: dir.path(),
        listen,
        tap: tap_address,
        mailboxes: imap_mailbox(&dovecot, slow),
        worker_concurrency: 1,
        tls: None,
    }
    .write();

    let started = chrono::Utc::now();
    let mut server = Server::start(&config, listen).await;
    let api = server.api(ADMIN_KEY);
    // Wait until some recipients are done and most are not, then cut the power.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let acknowledged = loop {
        let (_, job) = api.get("/api/v1/jobs/1").await;
        let done = job["results"]
            .as_array()
            .map(|r| r.iter().filter(|r| r["status"] == "quarantined").count())
            .unwrap_or(0);
        if (3..USERS / 2).contains(&done) {
            break job;
        }
        assert!(
            done < USERS / 2 && std::time::Instant::now() < deadline,
            "never saw the job half done ({done} done):\n{}",
            server.log_text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    server.kill_9();
    let alert_before = acknowledged["alert_id"].clone();

    let server = Server::start(&config, listen).await;
    let api = server.api(ADMIN_KEY);
    assert!(
        api.wait_until_idle(started).await,
        "job did not finish:\n{}",
        server.log_text()
    );

    // Everything acknowledged before the kill is still there, unchanged where it was final.
    let (_, job) = api.get("/api/v1/jobs/1").await;
    assert_eq!(job["alert_id"], alert_before);
    for before in acknowledged["results"].as_array().unwrap() {
        if before["status"] == "quarantined" {
            let after = job["results"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["recipient"] == before["recipient"])
                .unwrap();
            assert_eq!(after, before, "an acknowledged result changed");
        }
    }
    // Every recipient ended quarantined; any redone one says so instead of moving again.
    for result in job["results"].as_array().unwrap() {
        let status = result["status"].as_str().unwrap();
        assert!(
            status == "quarantined" || status == "already_in_destination",
            "{result}\n{}",
            server.log_text()
        );
    }
    // The mailboxes: exactly one copy, in the quarantine folder, for every user.
    for user in &users {
        assert_eq!(dovecot.messages(user, "Quarantine").len(), 1, "{user}");
        assert!(dovecot.messages(user, "INBOX").is_empty(), "{user}");
    }
    // The source resumed from its checkpoint: the event is not taken twice.
    let (_, alerts) = api.get("/api/v1/alerts").await;
    assert_eq!(alerts["total"], 1, "{alerts}");
    let (_, jobs) = api.get("/api/v1/jobs").await;
    assert_eq!(jobs["total"], 1, "{jobs}");
}

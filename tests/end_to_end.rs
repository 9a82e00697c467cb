//! The main job end to end: real TAP-shaped events from the TAP-compatible server, the
//! `pullback` binary, and a real Dovecot holding real messages.

mod support;

use pullback_domain::AlertKind;
use pullback_mailbox::testing::Dovecot;
use serde_json::{Value, json};
use std::net::SocketAddr;
use support::*;

const ALICE: &str = "alice@corp.test";
const BOB: &str = "bob@corp.test";
const CAROL: &str = "carol@corp.test";
const DAVE: &str = "dave@corp.test";

fn ids(dovecot: &Dovecot, user: &str, folder: &str) -> Vec<String> {
    let mut ids: Vec<String> = dovecot
        .messages(user, folder)
        .into_iter()
        .map(|m| m.subject)
        .collect();
    ids.sort();
    ids
}

fn subject_of(message: &[u8]) -> String {
    let headers = pullback_mailbox::headers::MessageHeaders::parse(message);
    headers.subject.unwrap_or_default()
}

/// The incident whose quarantine results name `recipient`.
fn results_for<'a>(incidents: &'a [Value], recipient: &str) -> Vec<&'a Value> {
    incidents
        .iter()
        .flat_map(|i| i["quarantine_results"].as_array().into_iter().flatten())
        .filter(|r| r["recipient"] == recipient)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn tap_alerts_quarantine_real_mail_in_dovecot_and_restore_undoes_it() {
    let dovecot = Dovecot::start(&[ALICE, BOB, CAROL, DAVE]);
    let love = shared_mail("phish/sample-3690.eml");
    // A different message that carries the same Message-ID: it must stay where it is.
    let housing = shared_mail("phish/sample-3744.eml");
    let diplomat = shared_mail("phish/sample-1006.eml");
    // Its Message-ID header is folded onto a second line.
    let no_id = shared_mail("phish/sample-423.eml");
    let ham = shared_mail("ham/easy_ham-00001.eml");
    dovecot.deliver(ALICE, "INBOX", &love);
    dovecot.deliver(ALICE, "INBOX", &housing);
    dovecot.deliver(BOB, "INBOX", &love);
    dovecot.deliver(CAROL, "INBOX", &diplomat);
    dovecot.deliver(DAVE, "INBOX", &ham);
    dovecot.deliver(DAVE, "INBOX", &no_id);

    let (tap, tap_address) = start_tap().await;
    // One message to two recipients, as TAP reports it: one event per recipient, one GUID.
    let mut to_alice = delivered_event("ev-love-alice", &love, &[ALICE], "active");
    let mut to_bob = delivered_event("ev-love-bob", &love, &[BOB], "active");
    to_alice["GUID"] = json!("guid-love");
    to_bob["GUID"] = json!("guid-love");
    serve_event(&tap, AlertKind::MessageDelivered, to_alice);
    serve_event(&tap, AlertKind::MessageDelivered, to_bob);
    serve_event(
        &tap,
        AlertKind::MessageDelivered,
        delivered_event("ev-dip", &diplomat, &[CAROL], "active"),
    );
    // A false positive: no quarantine.
    serve_event(
        &tap,
        AlertKind::MessageDelivered,
        delivered_event("ev-ham", &ham, &[DAVE], "falsePositive"),
    );
    // A message that is not in the mailbox, and one whose Message-ID is empty.
    serve_event(
        &tap,
        AlertKind::MessageDelivered,
        delivered_event("ev-gone", &diplomat, &[DAVE], "active"),
    );
    // TAP sends delivered events with an empty messageID; the message is left alone.
    let mut empty_id = delivered_event("ev-noid", &no_id, &[DAVE], "active");
    empty_id["messageID"] = json!("");
    serve_event(&tap, AlertKind::MessageDelivered, empty_id);
    // An event the parser cannot read, between good ones.
    serve_event(
        &tap,
        AlertKind::MessageDelivered,
        json!(["not", "an", "event"]),
    );

    let dir = tempfile::tempdir().unwrap();
    let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let dovecot_address: SocketAddr = format!("127.0.0.1:{}", dovecot.port()).parse().unwrap();
    let config = NodeConfig {
        dir: dir.path(),
        listen,
        tap: tap_address,
        mailboxes: imap_mailbox(&dovecot, dovecot_address),
        worker_concurrency: 4,
        tls: None,
    }
    .write();
    let started = chrono::Utc::now();
    let server = Server::start(&config, listen).await;
    let admin = server.api(ADMIN_KEY);
    assert!(
        admin.wait_until_idle(started).await,
        "job did not finish:\n{}",
        server.log_text()
    );

    // The mailboxes: exactly the reported copies moved, once each.
    let love_subject = subject_of(&love);
    let housing_subject = subject_of(&housing);
    assert_eq!(
        ids(&dovecot, ALICE, "Quarantine"),
        vec![love_subject.clone()]
    );
    assert_eq!(ids(&dovecot, ALICE, "INBOX"), vec![housing_subject.clone()]);
    assert_eq!(ids(&dovecot, BOB, "Quarantine"), vec![love_subject.clone()]);
    assert!(ids(&dovecot, BOB, "INBOX").is_empty());
    assert_eq!(ids(&dovecot, CAROL, "Quarantine").len(), 1);
    assert_eq!(
        ids(&dovecot, DAVE, "INBOX").len(),
        2,
        "dave's mail must not move"
    );

    // The Threat Response view of the same facts.
    let (status, incidents) = admin.get("/api/incidents?state=open").await;
    assert_eq!(status, 200, "{incidents}");
    let incidents = incidents.as_array().expect("a list of incidents").clone();
    for recipient in [ALICE, BOB, CAROL] {
        let results = results_for(&incidents, recipient);
        assert_eq!(results.len(), 1, "{recipient}: {results:?}");
        assert_eq!(
            results[0]["status"], "successful",
            "{recipient}: {results:?}"
        );
        assert_eq!(results[0]["wasUndone"], "false");
    }
    let dave = results_for(&incidents, DAVE);
    assert_eq!(dave.len(), 2, "not found and no Message-ID: {dave:?}");
    assert!(dave.iter().all(|r| r["status"] == "failed"), "{dave:?}");
    let details: Vec<&str> = dave.iter().filter_map(|r| r["details"].as_str()).collect();
    assert!(
        details.iter().any(|d| d.contains("Not found")),
        "{details:?}"
    );
    assert!(
        details.iter().any(|d| d.contains("no Message-ID")),
        "{details:?}"
    );

    // Two recipients of one message make one incident with both results.
    let love_incident = incidents
        .iter()
        .find(|i| results_for(std::slice::from_ref(i), ALICE).len() == 1)
        .expect("alice's incident");
    assert_eq!(love_incident["event_count"], 2, "{love_incident}");
    assert_eq!(
        love_incident["quarantine_results"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_threat_response_shape(love_incident);

    // The bad event was counted, not lost with its neighbours. Every cycle fetches the overlap again; the bad event is still kept and counted once.
    // The first cycle makes twelve calls (twelve hours of look-back); wait for two more.
    let later_cycles = wait_for(std::time::Duration::from_secs(20), || async {
        let (_, sources) = admin.get("/api/v1/sources").await;
        sources[0]["calls_last_24h"].as_u64().unwrap_or(0) >= 14
    })
    .await;
    assert!(
        later_cycles,
        "the source stopped polling:\n{}",
        server.log_text()
    );
    let (_, sources) = admin.get("/api/v1/sources").await;
    assert_eq!(sources[0]["rejected"], 1, "{sources}");
    let (_, rejected) = admin.get("/api/v1/sources/tap/rejected").await;
    assert_eq!(rejected["total"], 1, "{rejected}");
    let reason = rejected["items"][0]["reason"].as_str().unwrap();
    assert!(reason.starts_with("messagesDelivered["), "{reason}");
    assert_eq!(rejected["items"][0]["raw"], json!(["not", "an", "event"]));
    assert_eq!(sources[0]["accepted"], 6, "{sources}");
    assert!(
        !server.log_text().contains(TAP_SECRET),
        "the TAP secret reached the log"
    );

    // Restore alice's and bob's copies through the API: one call for the incident.
    let analyst = server.api(ANALYST_KEY);
    let restore = format!("/api/v1/incidents/{}/restore", love_incident["id"]);
    let (status, body) = analyst
        .send(reqwest::Method::POST, &restore, json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["jobs"].as_array().unwrap().len(), 2, "{body}");
    assert!(
        admin.wait_until_idle(started).await,
        "restore did not finish"
    );
    assert_eq!(ids(&dovecot, ALICE, "INBOX"), {
        let mut both = vec![love_subject.clone(), housing_subject];
        both.sort();
        both
    });
    assert!(ids(&dovecot, ALICE, "Quarantine").is_empty());
    assert_eq!(ids(&dovecot, BOB, "INBOX"), vec![love_subject]);

    let (_, incident) = admin
        .get(&format!("/api/incidents/{}.json", love_incident["id"]))
        .await;
    let undone: Vec<&Value> = incident["quarantine_results"]
        .as_array()
        .unwrap()
        .iter()
        .collect();
    assert!(
        undone.iter().all(|r| r["wasUndone"] == "true"),
        "{undone:?}"
    );

    // Nothing is left to restore: a second request is refused with a reason.
    let (status, body) = analyst
        .send(reqwest::Method::POST, &restore, json!({}))
        .await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("no quarantined message left"),
        "{body}"
    );
    let (_, jobs) = admin.get("/api/v1/jobs").await;

    // An integration comments on the incident and closes it, as it would on the original.
    let id = &love_incident["id"];
    let comment = json!({ "summary": "Reviewed", "detail": "restored after a false alarm" });
    let (status, body) = analyst
        .send(
            reqwest::Method::POST,
            &format!("/api/incidents/{id}/comments.json"),
            comment,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = analyst
        .send(
            reqwest::Method::POST,
            &format!("/api/incidents/{id}/comments.json"),
            json!({}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let reader_close = server
        .api(READER_KEY)
        .send(
            reqwest::Method::POST,
            &format!("/api/incidents/{id}/close.json"),
            json!({}),
        )
        .await;
    assert_eq!(reader_close.0, 403);
    let (status, body) = analyst
        .send(
            reqwest::Method::POST,
            &format!("/api/incidents/{id}/close.json"),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, closed) = admin.get("/api/incidents?state=closed").await;
    let closed = closed.as_array().unwrap();
    assert_eq!(closed.len(), 1, "{closed:?}");
    assert_eq!(closed[0]["state"], "Closed");
    let texts: Vec<&str> = closed[0]["comments"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["summary"].as_str())
        .collect();
    assert_eq!(texts, ["Reviewed: restored after a false alarm", "closed"]);

    let first_job = jobs["items"][0]["id"].as_u64().unwrap();
    let (status, body) = analyst
        .send(
            reqwest::Method::POST,
            &format!("/api/v1/jobs/{first_job}/restore"),
            json!({}),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("nothing left to undo"),
        "{body}"
    );
}

/// Every field the Threat Response API's incidents carry, with the same JSON type, as in
/// the recorded responses of that API.
fn assert_threat_response_shape(ours: &Value) {
    let path = shared_data().join("threat-response/event_collector_raw_response.json");
    let recorded: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let reference = recorded
        .as_array()
        .unwrap()
        .iter()
        .find(|i| !i["quarantine_results"].as_array().unwrap().is_empty())
        .expect("a recorded incident with quarantine results");
    let same_kind = |a: &Value, b: &Value| {
        std::mem::discriminant(a) == std::mem::discriminant(b) || (a.is_number() && b.is_number())
    };
    for (key, value) in reference.as_object().unwrap() {
        if key == "type" {
            continue; // Only reported-abuse incidents carry a type.
        }
        let mine = ours
            .get(key)
            .unwrap_or_else(|| panic!("incident lacks {key}: {ours}"));
        assert!(
            same_kind(mine, value),
            "{key}: ours {mine}, recorded {value}"
        );
    }
    let recorded_result = &reference["quarantine_results"][0];
    let our_result = &ours["quarantine_results"][0];
    for (key, value) in recorded_result.as_object().unwrap() {
        let mine = our_result
            .get(key)
            .unwrap_or_else(|| panic!("result lacks {key}"));
        assert!(
            same_kind(mine, value),
            "result {key}: ours {mine}, recorded {value}"
        );
    }
}

//! The sources besides TAP, end to end: the `pullback` binary, a real Dovecot holding real
//! messages, and each source's alerts going through match conditions to quarantine.

mod support;

use pullback_mailbox::testing::Dovecot;
use serde_json::{Value, json};
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;
use support::*;

const ALICE: &str = "alice@corp.test";
const BOB: &str = "bob@corp.test";
const CAROL: &str = "carol@corp.test";
const DAVE: &str = "dave@corp.test";
const EXPORT_CREDENTIAL: &str = "export-credential-5e1f";
const SOAR_CREDENTIAL: &str = "soar-credential-77a0";

/// A real phishing message with its Message-ID and raw Subject.
struct Mail {
    bytes: Vec<u8>,
    message_id: String,
    subject: String,
}

fn mail(relative: &str) -> Mail {
    let bytes = shared_mail(relative);
    let headers = pullback_mailbox::headers::MessageHeaders::parse(&bytes);
    Mail {
        message_id: format!("<{}>", headers.message_id.expect("a Message-ID").as_str()),
        subject: headers.subject.expect("a Subject"),
        bytes,
    }
}

fn subjects(dovecot: &Dovecot, user: &str, folder: &str) -> Vec<String> {
    let mut subjects: Vec<String> = dovecot
        .messages(user, folder)
        .into_iter()
        .map(|m| m.subject)
        .collect();
    subjects.sort();
    subjects
}

/// A node with one Dovecot backend, an idle TAP source, and `extra` configuration.
struct Rig {
    dovecot: Dovecot,
    node: SoloNode,
}

/// Starts Dovecot, delivers `mail` (user, message) to inboxes, then starts the node: a
/// scripted poller runs as soon as the node leads, so its mail must already be there.
async fn rig(
    users: &[&str],
    mail: &[(&str, &[u8])],
    extra: impl FnOnce(&std::path::Path) -> String,
) -> Rig {
    let dovecot = Dovecot::start(users);
    for (user, message) in mail {
        dovecot.deliver(user, "INBOX", message);
    }
    let node = SoloNode::start(&dovecot, 4, extra).await;
    Rig { dovecot, node }
}

impl Rig {
    /// Waits until every quarantine job is done.
    async fn settle(&self) {
        let admin = self.node.server.api(ADMIN_KEY);
        let done = wait_for(Duration::from_secs(60), || async {
            let (_, queued) = admin.get("/api/v1/jobs?state=queued").await;
            queued["total"] == 0
        })
        .await;
        assert!(
            done,
            "jobs did not finish:\n{}",
            self.node.server.log_text()
        );
    }

    async fn source(&self, name: &str) -> Value {
        let (status, source) = self
            .node
            .server
            .api(READER_KEY)
            .get(&format!("/api/v1/sources/{name}"))
            .await;
        assert_eq!(status, 200, "{source}");
        source
    }

    async fn alert_count(&self) -> u64 {
        let (_, alerts) = self
            .node
            .server
            .api(READER_KEY)
            .get("/api/v1/alerts?limit=1")
            .await;
        alerts["total"].as_u64().unwrap()
    }
}

/// Posts `body` with `content_type` to `path`, authorised by `key` (bare, as pushers send it).
async fn post(
    base: &str,
    path: &str,
    key: Option<&str>,
    content_type: &str,
    body: Vec<u8>,
) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .header("Content-Type", content_type)
        .body(body);
    if let Some(key) = key {
        request = request.header("Authorization", key);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn hash(key: &str) -> String {
    hex::encode(pullback_api::hash_key(key))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pushed_search_export_quarantines_every_recipient_of_its_rows() {
    let diplomat = mail("phish/sample-1006.eml");
    let contract = mail("phish/sample-1261.eml");
    let invoice = mail("phish/sample-1266.eml");
    let mail: [(&str, &[u8]); 5] = [
        (ALICE, &diplomat.bytes),
        (BOB, &diplomat.bytes),
        (CAROL, &contract.bytes),
        (DAVE, &contract.bytes),
        (CAROL, &invoice.bytes),
    ];
    let rig = rig(&[ALICE, BOB, CAROL, DAVE], &mail, |_| {
        format!(
            r#"
[[sources]]
type = "search_export"
name = "pps-export"
credential_sha256 = "{}"

[[match_conditions]]
name = "exports-quarantine"
sources = ["pps-export"]
responses = ["quarantine"]
exclude_recipients = ["{DAVE}"]
"#,
            hash(EXPORT_CREDENTIAL)
        )
    })
    .await;
    let dovecot = &rig.dovecot;
    let base = rig.node.server.base.clone();
    let push = "/api/v1/sources/pps-export/push";

    // The gateway's export: a BOM, CRLF, columns in its own order plus one Pullback does not
    // know, quoted recipients with commas, a subject with a comma, and one bad row.
    let csv = format!(
        "\u{feff}Date,Sender,Header_From,Header_Return-Path,Recipients,Sender_IP_Address,\
         Message_ID,Subject,Message_Size,Policy_Route\r\n\
         2026-12-03 10:00:00,a@x.example,a@x.example,a@x.example,\"{ALICE}, {BOB}\",192.0.2.1,\
         {},\"{}\",2048,inbound\r\n\
         2026-12-03 10:05:00,b@x.example,b@x.example,b@x.example,\"{CAROL},{DAVE}\",192.0.2.2,\
         {},\"{}\",4096,inbound\r\n\
         2026-12-03 10:06:00,c@x.example,c@x.example,c@x.example,{CAROL},192.0.2.3,,\"no id\",1,inbound\r\n",
        diplomat.message_id,
        diplomat.subject.replace('"', "\"\""),
        contract.message_id,
        contract.subject.replace('"', "\"\""),
    );

    // Without the credential, or with an API key instead, nothing happens but a log line.
    for key in [None, Some("wrong"), Some(ADMIN_KEY)] {
        let (status, body) = post(&base, push, key, "text/csv", csv.clone().into_bytes()).await;
        assert_eq!(status, 401, "{key:?}: {body}");
    }
    assert_eq!(rig.alert_count().await, 0);

    let (status, answer) = post(
        &base,
        push,
        Some(EXPORT_CREDENTIAL),
        "text/csv",
        csv.clone().into_bytes(),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["rows"], 3, "{answer}");
    assert_eq!(answer["alerts"], 4, "{answer}");
    assert_eq!(answer["bad_rows"], 1, "{answer}");
    let error = answer["errors"][0].as_str().unwrap();
    assert!(
        error.contains("line 4") && error.contains("Message_ID"),
        "{error}"
    );
    rig.settle().await;

    assert_eq!(subjects(dovecot, ALICE, "Quarantine").len(), 1);
    assert_eq!(subjects(dovecot, BOB, "Quarantine").len(), 1);
    // Carol loses the contract but keeps the invoice nobody exported; Dave is excluded.
    assert_eq!(subjects(dovecot, CAROL, "Quarantine").len(), 1);
    assert_eq!(subjects(dovecot, CAROL, "INBOX").len(), 1);
    assert_eq!(subjects(dovecot, DAVE, "INBOX").len(), 1);

    // The same export again: every alert is a repeat and no mailbox is touched twice.
    let (status, again) = post(
        &base,
        push,
        Some(EXPORT_CREDENTIAL),
        "text/csv",
        csv.into_bytes(),
    )
    .await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["alerts"], 0, "{again}");
    assert_eq!(again["duplicates"], 4, "{again}");
    assert_eq!(rig.alert_count().await, 4);

    // An export without a Message_ID column is refused whole, naming the column.
    let (status, refused) = post(
        &base,
        push,
        Some(EXPORT_CREDENTIAL),
        "text/csv",
        format!("Recipients,Subject\n{CAROL},x\n").into_bytes(),
    )
    .await;
    assert_eq!(status, 400, "{refused}");
    assert!(
        refused["error"].as_str().unwrap().contains("Message_ID"),
        "{refused}"
    );

    // An analyst uploads the invoice row by hand, as JSON; a reader may not.
    let rows = json!([{ "Message_ID": invoice.message_id, "Recipients": [CAROL],
                        "Subject": invoice.subject, "Date": "2026-12-03T11:00:00Z" }]);
    let upload = "/api/v1/sources/pps-export/upload";
    let body = serde_json::to_vec(&rows).unwrap();
    let (status, _) = post(
        &base,
        upload,
        Some(READER_KEY),
        "application/json",
        body.clone(),
    )
    .await;
    assert_eq!(status, 403);
    let (status, uploaded) = post(&base, upload, Some(ANALYST_KEY), "application/json", body).await;
    assert_eq!(status, 200, "{uploaded}");
    assert_eq!(uploaded["alerts"], 1, "{uploaded}");
    rig.settle().await;
    assert_eq!(subjects(dovecot, CAROL, "Quarantine").len(), 2);
    assert!(subjects(dovecot, CAROL, "INBOX").is_empty());

    // The source shows what it did, and keeps the bad row.
    let source = rig.source("pps-export").await;
    assert_eq!(source["type"], "search_export");
    assert_eq!(source["has_credential"], true);
    assert_eq!(source["accepted"], 5, "{source}");
    assert_eq!(source["duplicates"], 4, "{source}");
    assert!(source.get("credential_sha256").is_none());
    let (_, rejected) = rig
        .node
        .server
        .api(READER_KEY)
        .get("/api/v1/sources/pps-export/rejected")
        .await;
    assert_eq!(rejected["total"], 1, "{rejected}");
    // A disabled source takes nothing, pushed or uploaded; its credential survives the edit.
    let admin = rig.node.server.api(ADMIN_KEY);
    let (status, body) = admin
        .send(
            reqwest::Method::PUT,
            "/api/v1/sources/pps-export",
            json!({ "type": "search_export", "enabled": false }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let one_row = format!("Message_ID,Recipients\n<late@x.example>,{CAROL}\n").into_bytes();
    let (status, _) = post(
        &base,
        push,
        Some(EXPORT_CREDENTIAL),
        "text/csv",
        one_row.clone(),
    )
    .await;
    assert_eq!(status, 403);
    let (status, _) = post(&base, upload, Some(ANALYST_KEY), "text/csv", one_row).await;
    assert_eq!(status, 403);
    assert_eq!(rig.source("pps-export").await["has_credential"], true);
    // Nor can alerts be posted under its name through the generic route.
    let (status, body) = rig
        .node
        .server
        .api(ANALYST_KEY)
        .send(
            reqwest::Method::POST,
            "/api/v1/alerts",
            json!({ "source": "pps-export", "alerts": [{ "id": "x", "recipients": [CAROL] }] }),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(rig.alert_count().await, 5);

    let log = rig.node.server.log_text();
    assert!(
        !log.contains(EXPORT_CREDENTIAL),
        "the credential was logged"
    );
    assert!(log.contains("push refused"), "refusals leave a log line");
}

/// A JSON alert source event as a SOAR integration sends it.
fn soar_event(mail: &Mail, to: &str, attacker_ip: &str) -> Value {
    json!({
        "json_version": "2.0",
        "attacker": { "ip_address": attacker_ip, "host_name": "mx.evil.example" },
        "target": { "user": to, "host_name": "laptop-17" },
        "classification": "phish",
        "severity": "Major",
        "summary": "Credential phishing reported by the mail gateway",
        "detector": { "product": "Gateway", "vendor": "Example" },
        "email": {
            "from": "billing@evil.example",
            "to": to,
            "subject": mail.subject,
            "message_id": mail.message_id,
            "urls": ["https://evil.example/login"]
        },
        "threat_info": { "name": "Cred phish", "url": "https://evil.example/login",
                         "occurred_at": "2026-12-03T10:00:00Z" },
        "link_attribute": "attacker_ip_address",
        "custom_fields": { "ticket": "SOC-4711" }
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn json_events_from_a_soar_join_incidents_by_their_link_attribute_and_quarantine() {
    let diplomat = mail("phish/sample-1006.eml");
    let invoice = mail("phish/sample-1266.eml");
    let love = mail("phish/sample-3690.eml");
    let mail: [(&str, &[u8]); 3] = [
        (ALICE, &diplomat.bytes),
        (BOB, &invoice.bytes),
        (CAROL, &love.bytes),
    ];
    let rig = rig(&[ALICE, BOB, CAROL], &mail, |_| {
        format!(
            r#"
[[sources]]
type = "json_event"
name = "soar"
credential_sha256 = "{}"

[[match_conditions]]
name = "soar-phish"
sources = ["soar"]
classifications = ["phish"]
responses = ["quarantine"]
"#,
            hash(SOAR_CREDENTIAL)
        )
    })
    .await;
    let base = rig.node.server.base.clone();
    let path = "/threat/json_event/events/soar";
    let send = |event: &Value, key: Option<&'static str>| {
        let body = serde_json::to_vec(event).unwrap();
        let base = base.clone();
        async move { post(&base, path, key, "application/json", body).await }
    };

    let first = soar_event(&diplomat, ALICE, "198.51.100.7");
    let (status, _) = send(&first, None).await;
    assert_eq!(status, 401);
    let (status, one) = send(&first, Some(SOAR_CREDENTIAL)).await;
    assert_eq!(status, 201, "{one}");
    // Same attacker IP: the same incident. Another IP: another incident.
    let (status, two) = send(
        &soar_event(&invoice, BOB, "198.51.100.7"),
        Some(SOAR_CREDENTIAL),
    )
    .await;
    assert_eq!(status, 201, "{two}");
    let (status, three) = send(
        &soar_event(&love, CAROL, "203.0.113.9"),
        Some(SOAR_CREDENTIAL),
    )
    .await;
    assert_eq!(status, 201, "{three}");
    assert!(one["incident_id"].is_u64(), "{one}");
    assert_eq!(one["incident_id"], two["incident_id"]);
    assert_ne!(one["incident_id"], three["incident_id"]);

    // The same event again is a repeat; a body that does not fit names the field.
    let (status, repeat) = send(&first, Some(SOAR_CREDENTIAL)).await;
    assert_eq!(status, 200, "{repeat}");
    assert_eq!(repeat["duplicate"], true);
    let mut bad = soar_event(&love, CAROL, "203.0.113.9");
    bad["attacker"]["ip_address"] = json!(17);
    let (status, refused) = send(&bad, Some(SOAR_CREDENTIAL)).await;
    assert_eq!(status, 400, "{refused}");
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("attacker.ip_address"),
        "{refused}"
    );
    let mut bad_link = soar_event(&love, CAROL, "203.0.113.9");
    bad_link["link_attribute"] = json!("favourite_colour");
    let (status, refused) = send(&bad_link, Some(SOAR_CREDENTIAL)).await;
    assert_eq!(status, 400, "{refused}");
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("link_attribute"),
        "{refused}"
    );

    rig.settle().await;
    for user in [ALICE, BOB, CAROL] {
        assert_eq!(
            subjects(&rig.dovecot, user, "Quarantine").len(),
            1,
            "{user}"
        );
        assert!(subjects(&rig.dovecot, user, "INBOX").is_empty(), "{user}");
    }
    // The Threat Response view shows the pushed events in their incident.
    let (status, incident) = rig
        .node
        .server
        .api(READER_KEY)
        .get(&format!("/api/incidents/{}.json", one["incident_id"]))
        .await;
    assert_eq!(status, 200, "{incident}");
    assert_eq!(
        incident["events"].as_array().unwrap().len(),
        2,
        "{incident}"
    );
    assert_eq!(rig.alert_count().await, 3);
}

fn write_script(dir: &std::path::Path, name: &str, body: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, body).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.display().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scripted_poller_feeds_quarantines_and_resumes_from_its_checkpoint() {
    let diplomat = mail("phish/sample-1006.eml");
    let contract = mail("phish/sample-1261.eml");
    let (d_id, d_subject) = (diplomat.message_id.clone(), diplomat.subject.clone());
    let (c_id, c_subject) = (contract.message_id.clone(), contract.subject.clone());
    let mail: [(&str, &[u8]); 2] = [(ALICE, &diplomat.bytes), (BOB, &contract.bytes)];
    let rig = rig(&[ALICE, BOB], &mail, move |dir| {
        // A detector's poller: it reports what came after its checkpoint, prints noise on
        // stderr and one garbage line, and checks that its token arrived.
        let script = write_script(
            dir,
            "imd-poller.py",
            &format!(
                r#"#!/usr/bin/env python3
import json, os, sys
assert os.environ["IMD_TOKEN"] == "imd-token-1", "no token"
seen = int(os.environ.get("PULLBACK_CHECKPOINT", "0"))
alerts = [
    {{"id": "imd-1", "message_id": {d_id:?}, "recipients": ["{ALICE}"], "subject": {d_subject:?},
      "classification": "phish", "time": "2026-12-03T09:00:00Z"}},
    {{"id": "imd-2", "message_id": {c_id:?}, "recipients": ["{BOB}"], "subject": {c_subject:?},
      "classification": "malware", "time": "2026-12-03T09:01:00Z"}},
]
print("polling from", seen, file=sys.stderr)
for n, alert in enumerate(alerts[seen:], start=seen + 1):
    print(json.dumps(alert))
    print("this is not json")
    print(json.dumps({{"checkpoint": str(n)}}))
"#
            ),
        );
        format!(
            r#"
[[sources]]
type = "script"
name = "imd"
command = "{script}"
interval_secs = 1
timeout_secs = 30
secrets = [{{ name = "IMD_TOKEN", secret = {{ value = "imd-token-1" }} }}]

[[match_conditions]]
name = "imd-quarantine"
sources = ["imd"]
responses = ["quarantine"]
"#
        )
    })
    .await;

    let admin = rig.node.server.api(ADMIN_KEY);
    let ran_twice = wait_for(Duration::from_secs(30), || async {
        let (_, source) = admin.get("/api/v1/sources/imd").await;
        source["position"] == "2" && source["last_success"].is_string()
    })
    .await;
    assert!(ran_twice, "{}", rig.node.server.log_text());
    rig.settle().await;
    assert_eq!(subjects(&rig.dovecot, ALICE, "Quarantine").len(), 1);
    assert_eq!(subjects(&rig.dovecot, BOB, "Quarantine").len(), 1);
    // Runs after the first printed nothing new: two alerts in all, each once.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(rig.alert_count().await, 2);
    let source = rig.source("imd").await;
    assert_eq!(source["type"], "script");
    assert_eq!(source["accepted"], 2, "{source}");
    assert_eq!(source["script"]["secrets"][0]["name"], "IMD_TOKEN");
    assert!(!source.to_string().contains("imd-token-1"), "{source}");
    let (_, rejected) = admin.get("/api/v1/sources/imd/rejected").await;
    assert!(
        rejected["items"][0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("line 2:"),
        "{rejected}"
    );
    assert!(
        rig.node.server.log_text().contains("polling from"),
        "stderr reaches the log"
    );
    assert!(
        !rig.node.server.log_text().contains("imd-token-1"),
        "the secret was logged"
    );

    // An administrator adds a failing script through the API; its error shows, then it goes.
    let dir = tempfile::tempdir().unwrap();
    let broken = write_script(
        dir.path(),
        "broken.sh",
        "#!/bin/sh\necho '{\"id\":\"b1\"}'\nexit 7\n",
    );
    let (status, body) = admin
        .send(
            reqwest::Method::PUT,
            "/api/v1/sources/broken",
            json!({ "type": "script", "command": broken, "interval_secs": 3600 }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let failed = wait_for(Duration::from_secs(20), || async {
        let (_, source) = admin.get("/api/v1/sources/broken").await;
        source["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("exit status: 7"))
    })
    .await;
    assert!(failed, "{}", rig.node.server.log_text());
    assert_eq!(
        rig.alert_count().await,
        3,
        "what it printed before failing is kept"
    );
    let (status, _) = rig
        .node
        .server
        .api(ANALYST_KEY)
        .send(
            reqwest::Method::DELETE,
            "/api/v1/sources/broken",
            json!(null),
        )
        .await;
    assert_eq!(status, 403);
    let (status, body) = admin
        .send(
            reqwest::Method::DELETE,
            "/api/v1/sources/broken",
            json!(null),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // A relative command is refused, naming the field.
    let (status, body) = admin
        .send(
            reqwest::Method::PUT,
            "/api/v1/sources/relative",
            json!({ "type": "script", "command": "poll.sh" }),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("absolute"),
        "{body}"
    );
}

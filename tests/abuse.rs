//! The reported-phishing loop end to end: a user forwards a phish to the abuse mailbox of a
//! real Dovecot; the `pullback` binary takes the report, finds the message in it, judges it
//! with its intelligence lists, pulls every copy from the other mailboxes, answers the
//! reporter over LMTP and files the report away.

mod support;

use pullback_mailbox::testing::Dovecot;
use serde_json::Value;
use std::time::Duration;
use support::*;

const ABUSE: &str = "abuse@corp.test";
const ALICE: &str = "alice@corp.test";
const BOB: &str = "bob@corp.test";
const CAROL: &str = "carol@corp.test";

/// A credential phish sent to Alice and Bob, copying Carol.
fn phish() -> Vec<u8> {
    "From: \"IT Service Desk\" <helpdesk@mail.evil-login.example>\r\n\
     To: alice@corp.test, bob@corp.test\r\n\
     Cc: carol@corp.test\r\n\
     Subject: Your mailbox is almost full\r\n\
     Date: Thu, 03 Dec 2026 09:00:00 +0000\r\n\
     Message-ID: <quota-7731@mail.evil-login.example>\r\n\
     MIME-Version: 1.0\r\n\
     Content-Type: text/html; charset=utf-8\r\n\r\n\
     <html><body><p>Your mailbox is 99% full. Verify your password within 24 hours or lose \
     your mail:</p><p><a href=\"https://portal.evil-login.example/owa/verify\">Verify now</a>\
     </p></body></html>\r\n"
        .as_bytes()
        .to_vec()
}

/// Alice's report: a short note with the phish attached as a message.
fn report_of(original: &[u8]) -> Vec<u8> {
    let mut report = "From: Alice <alice@corp.test>\r\n\
         To: abuse@corp.test\r\n\
         Subject: FW: Your mailbox is almost full\r\n\
         Date: Thu, 03 Dec 2026 09:05:00 +0000\r\n\
         Message-ID: <report-1@corp.test>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n\
         --b1\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\n\
         This looks fake.\r\n\
         --b1\r\n\
         Content-Type: message/rfc822\r\n\
         Content-Disposition: attachment; filename=\"phish.eml\"\r\n\r\n"
        .as_bytes()
        .to_vec();
    report.extend_from_slice(original);
    report.extend_from_slice(b"\r\n--b1--\r\n");
    report
}

/// A report with nothing attached or forwarded.
fn empty_report() -> Vec<u8> {
    "From: Bob <bob@corp.test>\r\n\
     To: abuse@corp.test\r\n\
     Subject: weird mail?\r\n\
     Message-ID: <report-2@corp.test>\r\n\r\n\
     I got something odd this morning but deleted it.\r\n"
        .as_bytes()
        .to_vec()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reported_phish_is_judged_pulled_from_every_mailbox_and_the_reporter_answered() {
    let dovecot = Dovecot::start(&[ABUSE, ALICE, BOB, CAROL]);
    let original = phish();
    for user in [ALICE, BOB, CAROL] {
        dovecot.deliver(user, "INBOX", &original);
    }
    // The same phish sent again under another Message-ID, and a different message from the
    // same sender: the first goes with the reported one, the second stays.
    let text = String::from_utf8(original.clone()).unwrap();
    let resent = text.replace("quota-7731@", "quota-9902@");
    let other = resent
        .replace("quota-9902@", "newsletter-1@")
        .replace("Your mailbox is almost full", "December newsletter");
    dovecot.deliver(BOB, "INBOX", resent.as_bytes());
    dovecot.deliver(BOB, "INBOX", other.as_bytes());
    let extra = format!(
        r#"
[[sources]]
type = "abuse_mailbox"
name = "abuse"
mailbox = "{ABUSE}"
interval_secs = 1
reply = {{ host = "127.0.0.1", port = {lmtp}, protocol = "lmtp", from = "Security team <security@corp.test>" }}

[[match_conditions]]
name = "reported-malicious"
kinds = ["abuse_report"]
classifications = ["malicious"]
responses = ["quarantine"]
exclude_recipients = ["{ABUSE}"]
"#,
        lmtp = dovecot.lmtp_port()
    );
    let node = SoloNode::start(&dovecot, 4, |_| extra).await;
    let server = &node.server;
    let admin = server.api(ADMIN_KEY);

    // The security team knows the phishing domain from a feed.
    let response = reqwest::Client::new()
        .post(format!(
            "{}/api/v1/intel?list=phish-feed&kind=domain",
            server.base
        ))
        .header("Authorization", ADMIN_KEY)
        .header("Content-Type", "text/plain")
        .body("# today's feed\nportal.evil-login.example\nnot a domain\n")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let imported: Value = response.json().await.unwrap();
    assert_eq!(imported["added"], 1, "{imported}");
    assert!(
        imported["errors"][0].as_str().unwrap().contains("line 3"),
        "{imported}"
    );

    dovecot.deliver(ABUSE, "INBOX", &report_of(&original));
    dovecot.deliver(ABUSE, "INBOX", &empty_report());

    let filed = wait_for(Duration::from_secs(60), || async {
        dovecot.messages(ABUSE, "Processed").len() == 2
    })
    .await;
    assert!(
        filed,
        "the reports were not filed away:\n{}",
        server.log_text()
    );
    let pulled = wait_for(Duration::from_secs(60), || async {
        [ALICE, CAROL]
            .iter()
            .all(|user| dovecot.messages(user, "Quarantine").len() == 1)
            && dovecot.messages(BOB, "Quarantine").len() == 2
    })
    .await;
    assert!(pulled, "not every copy was pulled:\n{}", server.log_text());
    let bob_inbox: Vec<String> = dovecot
        .messages(BOB, "INBOX")
        .into_iter()
        .map(|m| m.subject)
        .collect();
    assert_eq!(
        bob_inbox,
        ["December newsletter"],
        "only the resent phish went along"
    );
    assert!(dovecot.messages(ABUSE, "INBOX").is_empty());

    // The alert carries the analysis, whose reasons name what decided it.
    let (_, alerts) = admin
        .get("/api/v1/alerts?message_id=quota-7731@mail.evil-login.example")
        .await;
    let alert = &alerts["items"][0];
    assert_eq!(alert["kind"], "abuse_report", "{alerts}");
    let analysis = &alert["analysis"];
    assert_eq!(
        analysis["disposition"]
            .as_str()
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some("malicious"),
        "{analysis}"
    );
    let reasons = analysis["reasons"].to_string();
    assert!(reasons.contains("evil-login.example"), "{reasons}");
    assert!(
        reasons.contains("phish-feed"),
        "the list is named: {reasons}"
    );

    // The reporter heard back twice: the acknowledgement and the verdict.
    let replies = wait_for(Duration::from_secs(30), || async {
        dovecot.messages(ALICE, "INBOX").len() == 2
    })
    .await;
    assert!(
        replies,
        "{:?}\n{}",
        dovecot.messages(ALICE, "INBOX"),
        server.log_text()
    );
    let subjects: Vec<String> = dovecot
        .messages(ALICE, "INBOX")
        .into_iter()
        .map(|m| m.subject)
        .collect();
    assert!(
        subjects.iter().any(|s| s.contains("malicious")),
        "{subjects:?}"
    );

    // The report with nothing in it is recorded with why, and cost the other nothing.
    let (_, rejected) = admin.get("/api/v1/sources/abuse/rejected").await;
    let reason = rejected["items"][0]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("bob@corp.test") && reason.contains("no reported message"),
        "{rejected}"
    );
    let (_, source) = admin.get("/api/v1/sources/abuse").await;
    assert_eq!(source["type"], "abuse_mailbox", "{source}");
    assert!(source["last_success"].is_string(), "{source}");

    // The incident's threat description is what the analysis found.
    let incident_id = alert["incident_id"].as_u64().expect("an incident");
    let (_, incident) = admin
        .get(&format!("/api/incidents/{incident_id}.json"))
        .await;
    let description = incident["description"].as_str().unwrap_or_default();
    assert!(description.starts_with("malicious"), "{incident}");

    // An analyst overrides the verdict: the analysis stays, the override is recorded.
    let analyst = server.api(ANALYST_KEY);
    let path = format!("/api/v1/alerts/{}/verdict", alert["id"]);
    let (status, body) = analyst
        .send(
            reqwest::Method::POST,
            &path,
            serde_json::json!({ "disposition": "harmless", "reason": "x" }),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("malicious, suspicious"),
        "{body}"
    );
    let (status, body) = analyst
        .send(
            reqwest::Method::POST,
            &path,
            serde_json::json!({ "disposition": "Clean", "reason": "a test sent by the security team" }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, overridden) = admin.get(&format!("/api/v1/alerts/{}", alert["id"])).await;
    let analysis = &overridden["analysis"];
    assert_eq!(analysis["override"]["disposition"], "clean", "{analysis}");
    assert_eq!(analysis["override"]["by"], "analyst", "{analysis}");
    assert_eq!(analysis["disposition"], "malicious", "the analysis is kept");
    let (_, incident) = admin
        .get(&format!("/api/incidents/{incident_id}.json"))
        .await;
    assert!(
        incident["comments"]
            .to_string()
            .contains("overridden from malicious to clean"),
        "{incident}"
    );
}

/// A report forwarded inline, as Outlook does: the original headers are gone.
fn inline_report() -> Vec<u8> {
    "From: Carol <carol@corp.test>\r\n\
     To: abuse@corp.test\r\n\
     Subject: FW: Your mailbox is almost full\r\n\
     Message-ID: <report-3@corp.test>\r\n\
     Content-Type: text/plain; charset=utf-8\r\n\r\n\
     Is this real?\r\n\r\n\
     -----Original Message-----\r\n\
     From: IT Service Desk <helpdesk@mail.evil-login.example>\r\n\
     Sent: Thursday, December 3, 2026 9:00 AM\r\n\
     To: carol@corp.test\r\n\
     Subject: Your mailbox is almost full\r\n\r\n\
     Verify your password within 24 hours: https://portal.evil-login.example/owa/verify\r\n"
        .as_bytes()
        .to_vec()
}

/// A report carrying an Outlook `.msg` file (a real one from a parser's fixtures).
fn msg_report() -> Vec<u8> {
    use base64::Engine;
    let msg =
        std::fs::read(shared_data().join("mail/mime-edge/SpamScope_mail-parser/mail_outlook_1"))
            .expect("the .msg fixture");
    let encoded = base64::engine::general_purpose::STANDARD.encode(msg);
    let lines: Vec<&str> = encoded
        .as_bytes()
        .chunks(76)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "From: Dave <dave@corp.test>\r\n\
         To: abuse@corp.test\r\n\
         Subject: suspicious\r\n\
         Message-ID: <report-4@corp.test>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"b2\"\r\n\r\n\
         --b2\r\n\
         Content-Type: text/plain\r\n\r\n\
         See attached.\r\n\
         --b2\r\n\
         Content-Type: application/vnd.ms-outlook; name=\"suspicious.msg\"\r\n\
         Content-Disposition: attachment; filename=\"suspicious.msg\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n\
         {}\r\n\
         --b2--\r\n",
        lines.join("\r\n")
    )
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread")]
async fn inline_forwards_and_outlook_files_are_analysed_too() {
    let dovecot = Dovecot::start(&[ABUSE, CAROL, "dave@corp.test"]);
    let extra = format!(
        "[[sources]]\ntype = \"abuse_mailbox\"\nname = \"abuse\"\nmailbox = \"{ABUSE}\"\n\
         interval_secs = 1\n"
    );
    let node = SoloNode::start(&dovecot, 2, |_| extra).await;
    let server = &node.server;
    dovecot.deliver(ABUSE, "INBOX", &inline_report());
    dovecot.deliver(ABUSE, "INBOX", &msg_report());
    let filed = wait_for(Duration::from_secs(60), || async {
        dovecot.messages(ABUSE, "Processed").len() == 2
    })
    .await;
    assert!(filed, "{}", server.log_text());

    let admin = server.api(ADMIN_KEY);
    let (_, alerts) = admin.get("/api/v1/alerts").await;
    let items = alerts["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{alerts}");
    let inline = items
        .iter()
        .find(|a| a["raw"]["found_as"] == "inline_forward")
        .unwrap_or_else(|| panic!("no inline forward: {alerts}"));
    assert!(
        inline["notes"].to_string().contains("headers"),
        "the alert says the headers were lost: {inline}"
    );
    assert_eq!(inline["subject"], "Your mailbox is almost full");
    let reasons = inline["analysis"]["reasons"].to_string();
    assert!(reasons.contains("evil-login.example"), "{reasons}");
    let outlook = items
        .iter()
        .find(|a| a["raw"]["found_as"] == "outlook_msg")
        .unwrap_or_else(|| panic!("no .msg report: {alerts}"));
    assert!(outlook["analysis"]["disposition"].is_string(), "{outlook}");
}

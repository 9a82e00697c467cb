use super::*;
use crate::shared::content_key;
use serde_json::json;

const FULL: &str = include_str!("../../tests/fixtures/json_event_full.json");
const HASH: &str = "3b7e4c3a4f0d4d2f9c4b1e8a0f6d2c5b7a9e1d3c5b7a9e1d3c5b7a9e1d3c5b7a";

fn now() -> Timestamp {
    "2024-06-01T12:00:00Z".parse().expect("a time")
}

fn time(text: &str) -> Timestamp {
    text.parse().expect("a time")
}

fn full() -> Value {
    serde_json::from_str(FULL).expect("the fixture is JSON")
}

fn read(body: &Value) -> AlertDraft {
    parse(body, now()).unwrap_or_else(|err| panic!("{err} in {body}"))
}

/// The full body with the fields at `pointer` replaced (or removed, for null).
fn full_with(changes: &[(&str, Value)]) -> Value {
    let mut body = full();
    for (pointer, value) in changes {
        let (parent, key) = pointer.rsplit_once('/').expect("a JSON pointer");
        let parent = body.pointer_mut(parent).expect("the parent exists");
        let map = parent.as_object_mut().expect("an object");
        if value.is_null() {
            map.remove(key);
        } else {
            map.insert(key.to_owned(), value.clone());
        }
    }
    body
}

#[test]
fn a_full_body_is_mapped_field_by_field() {
    let body = full();
    let draft = read(&body);

    assert_eq!(draft.kind, AlertKind::JsonEvent);
    assert_eq!(draft.dedup_key, content_key(&body));
    assert_eq!(
        draft.time,
        time("2024-05-01T09:31:12Z"),
        "threat_info.occurred_at"
    );
    assert_eq!(
        draft.message_id.as_ref().map(MessageId::as_str),
        Some("20240501093000.4412@relay7.bad-sender.example")
    );
    assert_eq!(
        draft.subject.as_deref(),
        Some("Action required: invoice 88231 overdue")
    );
    assert_eq!(draft.sender.as_deref(), Some("billing@bad-sender.example"));
    assert_eq!(
        draft.recipients,
        [
            "jane.doe@corp.example",
            "bob.smith@corp.example",
            "finance@corp.example"
        ]
    );
    assert_eq!(
        draft.threats,
        [
            Threat {
                kind: Some(ThreatKind::Url),
                value: Some("https://login.bad-sender.example/owa/".to_owned()),
                hostname: Some("login.bad-sender.example".to_owned()),
                sha256: Some(HASH.to_owned()),
                classification: Some("phish".to_owned()),
                time: Some(time("2024-05-01T09:31:12Z")),
                ..Threat::default()
            },
            Threat {
                kind: Some(ThreatKind::Url),
                value: Some("http://track.bad-sender.example/o.gif?id=88231".to_owned()),
                hostname: Some("track.bad-sender.example".to_owned()),
                classification: Some("phish".to_owned()),
                ..Threat::default()
            },
        ],
        "threat_info, then email.urls without the URL threat_info already gave"
    );
    assert_eq!(draft.classifications(), ["phish"]);
    assert!(draft.notes.is_empty(), "{:?}", draft.notes);
    assert_eq!(
        draft.link.as_deref(),
        Some("attacker_host_name=relay7.bad-sender.example")
    );
    assert_eq!(
        draft.raw, body,
        "the body as received, unknown fields included"
    );
    assert_eq!(draft.raw["soar_playbook"], "phish-triage-v3");
}

#[test]
fn a_minimal_body_is_accepted() {
    let draft = read(&json!({}));
    assert_eq!(draft.kind, AlertKind::JsonEvent);
    assert_eq!(draft.time, now());
    assert_eq!(
        (draft.sender, draft.subject, draft.message_id, draft.link),
        (None, None, None, None)
    );
    assert!(draft.recipients.is_empty() && draft.threats.is_empty());
    assert_eq!(
        draft.notes,
        [
            "no readable threat_info.occurred_at or e-mail date; the alert's time is when the \
             event arrived",
            "no recipient: no email.to, email.cc, To or Cc header, and target.user is not an \
             e-mail address",
        ]
    );

    let draft = read(&json!({
        "json_version": "2.0",
        "classification": "MALWARE",
        "summary": "EDR quarantined a dropper",
        "target": {"user": "Jane@Corp.Example"},
    }));
    assert_eq!(
        draft.subject.as_deref(),
        Some("EDR quarantined a dropper"),
        "from summary"
    );
    assert_eq!(draft.recipients, ["jane@corp.example"]);
    assert_eq!(
        draft.threats,
        [Threat {
            classification: Some("malware".to_owned()),
            ..Threat::default()
        }]
    );
    assert!(
        draft
            .notes
            .contains(&"no email.to or email.cc; the recipient is target.user".to_owned())
    );
}

#[test]
fn the_same_body_in_another_key_order_gets_the_same_key() {
    let a = json!({"summary": "s", "email": {"to": "a@x.zz", "subject": "hi"}, "severity": 3});
    let b = json!({"severity": 3, "email": {"subject": "hi", "to": "a@x.zz"}, "summary": "s"});
    assert_eq!(a.to_string().len(), b.to_string().len());
    assert_ne!(a.to_string(), b.to_string());
    assert_eq!(read(&a).dedup_key, read(&b).dedup_key);

    let c = json!({"severity": 4, "email": {"subject": "hi", "to": "a@x.zz"}, "summary": "s"});
    assert_ne!(read(&a).dedup_key, read(&c).dedup_key);
}

#[test]
fn link_attributes_name_the_field_whose_value_links_alerts() {
    let cases = [
        ("attacker_ip_address", "attacker_ip_address=203.0.113.45"),
        (
            "attacker_host_name",
            "attacker_host_name=relay7.bad-sender.example",
        ),
        (
            "attacker_hostname",
            "attacker_host_name=relay7.bad-sender.example",
        ),
        ("attacker_machine_name", "attacker_machine_name=relay7"),
        (
            "attacker_mac_address",
            "attacker_mac_address=00:00:5e:00:53:af",
        ),
        ("attacker_user", "attacker_user=billing@bad-sender.example"),
        (
            "attacker_url",
            "attacker_url=https://login.bad-sender.example/owa/",
        ),
        ("target_ip_address", "target_ip_address=198.51.100.20"),
        ("target_host_name", "target_host_name=ws-0412.corp.example"),
        ("Target_HostName", "target_host_name=ws-0412.corp.example"),
        ("target_machine_name", "target_machine_name=ws-0412"),
        ("target_mac_address", "target_mac_address=00:00:5e:00:53:01"),
        ("target_user", "target_user=jane.doe@corp.example"),
        ("target_url", "target_url=https://intranet.corp.example/"),
        ("email_sender", "email_sender=billing@bad-sender.example"),
        (
            "email_recipient",
            "email_recipient=bob.smith@corp.example,finance@corp.example,jane.doe@corp.example",
        ),
        (
            "email_subject",
            "email_subject=action required: invoice 88231 overdue",
        ),
        (
            "message_id",
            "message_id=20240501093000.4412@relay7.bad-sender.example",
        ),
        ("threat_name", "threat_name=phish.credentialharvest.owa"),
        (
            "threat_url",
            "threat_url=https://login.bad-sender.example/owa/",
        ),
        ("threat_filename", "threat_filename=invoice_88231.html"),
        ("threat_filehash", &format!("threat_filehash={HASH}")),
        ("classification", "classification=phish"),
        ("custom_fields.ticket", "custom_fields.ticket=soc-4471"),
        ("custom_fields.Confidence", "custom_fields.confidence=92"),
        (
            "custom_fields.auto_remediate",
            "custom_fields.auto_remediate=true",
        ),
        (" email_sender ", "email_sender=billing@bad-sender.example"),
    ];
    for (attribute, expected) in cases {
        let draft = read(&full_with(&[("/link_attribute", json!(attribute))]));
        assert_eq!(draft.link.as_deref(), Some(expected), "{attribute}");
    }

    let draft = read(&full_with(&[("/link_attribute", json!("not_linked"))]));
    assert_eq!(draft.link, Some(format!("event={}", draft.dedup_key)));
    let draft = read(&full_with(&[("/link_attribute", json!("NOT_LINKED"))]));
    assert_eq!(draft.link, Some(format!("event={}", draft.dedup_key)));

    for absent in [Value::Null, json!(""), json!("  ")] {
        let mut body = full();
        body["link_attribute"] = absent.clone();
        assert_eq!(read(&body).link, None, "{absent}");
    }
}

#[test]
fn a_link_attribute_must_exist_and_name_a_field_with_a_value() {
    let allowed = LINK_ATTRIBUTES.join(", ");
    let cases = [
        (
            json!("attacker_ip"),
            format!("unknown value \"attacker_ip\"; expected one of {allowed}"),
        ),
        (
            json!("custom_fields."),
            format!("unknown value \"custom_fields.\"; expected one of {allowed}"),
        ),
        (
            json!("sender"),
            format!("unknown value \"sender\"; expected one of {allowed}"),
        ),
        (
            json!("custom_fields.case_id"),
            "\"custom_fields.case_id\" links on custom_fields.case_id, which is absent or empty"
                .to_owned(),
        ),
        (json!(7), "expected a string, found a number".to_owned()),
    ];
    for (attribute, reason) in cases {
        let err = parse(&full_with(&[("/link_attribute", attribute.clone())]), now())
            .expect_err("refused");
        assert_eq!(
            err,
            FieldError::new("link_attribute", reason),
            "{attribute}"
        );
    }

    let body = full_with(&[
        ("/threat_info/filename", json!(" ")),
        ("/link_attribute", json!("threat_filename")),
    ]);
    assert_eq!(
        parse(&body, now()).expect_err("empty").to_string(),
        "link_attribute: \"threat_filename\" links on threat_info.filename, which is absent or \
         empty"
    );
    let body = full_with(&[
        ("/target", json!({})),
        ("/link_attribute", json!("target_hostname")),
    ]);
    assert_eq!(
        parse(&body, now()).expect_err("empty").to_string(),
        "link_attribute: \"target_hostname\" links on target.host_name, which is absent or empty"
    );
}

#[test]
fn errors_name_the_field_by_its_path() {
    let cases = [
        (
            json!(["an", "array"]),
            "(body): expected a JSON object, found an array",
        ),
        (
            json!("text"),
            "(body): expected a JSON object, found a string",
        ),
        (
            json!({"json_version": "1.0"}),
            "json_version: version \"1.0\" is not supported; this source reads version 2.0",
        ),
        (
            json!({"json_version": 3}),
            "json_version: version 3 is not supported; this source reads version 2.0",
        ),
        (
            json!({"attacker": {"ip_address": 3405803776u32}}),
            "attacker.ip_address: expected a string, found a number",
        ),
        (
            json!({"attacker": "203.0.113.45"}),
            "attacker: expected an object, found a string",
        ),
        (
            json!({"target": {"port": true}}),
            "target.port: expected a string or a number, found a boolean",
        ),
        (
            json!({"severity": {"level": 3}}),
            "severity: expected a string or a number, found an object",
        ),
        (
            json!({"classification": ["phish"]}),
            "classification: expected a string, found an array",
        ),
        (
            json!({"detector": "Mail Sandbox"}),
            "detector: expected an object, found a string",
        ),
        (
            json!({"custom_fields": {"ticket": "SOC-1", "tags": ["a"]}}),
            "custom_fields.tags: expected a string, a number or a boolean, found an array",
        ),
        (
            json!({"email": {"to": ["a@x.zz", "b@x.zz", "bob"]}}),
            "email.to[2]: not an e-mail address: \"bob\"",
        ),
        (
            json!({"email": {"to": ["a@x.zz", 7]}}),
            "email.to[1]: expected a string, found a number",
        ),
        (
            json!({"email": {"to": "a@x.zz, Bob Smith"}}),
            "email.to: not an e-mail address: \"Bob Smith\"",
        ),
        (
            json!({"email": {"cc": {"address": "a@x.zz"}}}),
            "email.cc: expected a string or an array of strings, found an object",
        ),
        (
            json!({"email": {"subject": 42}}),
            "email.subject: expected a string, found a number",
        ),
        (
            json!({"email": {"urls": ["https://a.zz/", {"url": "https://b.zz/"}]}}),
            "email.urls[1]: expected a string, found an object",
        ),
        (
            json!({"email": {"urls": "https://a.zz/"}}),
            "email.urls: expected an array, found a string",
        ),
        (
            json!({"email": {"attachments": {"filename": "a.html"}}}),
            "email.attachments: expected an array, found an object",
        ),
        (
            json!({"email": {"headers": {"Subject": 42}}}),
            "email.headers.Subject: expected a string or an array of strings, found a number",
        ),
        (
            json!({"email": {"header": {"To": ["a@x.zz", false]}}}),
            "email.header.To[1]: expected a string, found a boolean",
        ),
        (
            json!({"email": {"received_at": [2024]}}),
            "email.received_at: expected a string or a number, found an array",
        ),
        (
            json!({"threat_info": "phish"}),
            "threat_info: expected an object, found a string",
        ),
        (
            json!({"threat_info": {"filehash": 12}}),
            "threat_info.filehash: expected a string, found a number",
        ),
    ];
    for (body, expected) in cases {
        let err = parse(&body, now()).expect_err(&body.to_string());
        assert_eq!(err.to_string(), expected, "{body}");
    }
}

#[test]
fn versions_and_severities_in_either_spelling_are_accepted() {
    let bodies = [
        json!({"json_version": "2.0", "severity": "Critical"}),
        json!({"json_version": 2.0, "severity": 4}),
        json!({"severity": "info"}),
        json!({"severity": 0.5}),
        json!({"json_version": null, "severity": null}),
    ];
    for body in bodies {
        assert!(parse(&body, now()).is_ok(), "{body}");
    }
}

#[test]
fn field_names_are_matched_ignoring_case() {
    let draft = read(&json!({
        "Email": {"From": "a@x.zz", "TO": "b@x.zz", "Subject": "hi"},
        "Threat_Info": {"URL": "https://bad.zz/x"},
        "Classification": "Spam",
    }));
    assert_eq!(draft.sender.as_deref(), Some("a@x.zz"));
    assert_eq!(draft.recipients, ["b@x.zz"]);
    assert_eq!(draft.subject.as_deref(), Some("hi"));
    assert_eq!(draft.classifications(), ["spam"]);
    assert_eq!(draft.threats[0].hostname.as_deref(), Some("bad.zz"));
}

#[test]
fn headers_stand_in_for_missing_email_fields() {
    let draft = read(&json!({
        "email": {"headers": {
            "message-id": "<m1@x.zz>",
            "FROM": "Someone <Someone@X.zz>",
            "to": ["A@x.zz, undisclosed-recipients:;", "b@x.zz"],
            "Cc": "a@x.zz",
            "subject": ["First", "Second"],
            "Date": "Wed, 01 May 2024 11:30:00 +0200",
        }},
        "summary": "not the subject",
    }));
    assert_eq!(draft.message_id, MessageId::parse("m1@x.zz"));
    assert_eq!(draft.sender.as_deref(), Some("someone@x.zz"));
    assert_eq!(draft.recipients, ["a@x.zz", "b@x.zz"]);
    assert_eq!(draft.subject.as_deref(), Some("First"));
    assert_eq!(draft.time, time("2024-05-01T09:30:00Z"));
    assert_eq!(
        draft.notes,
        [
            "email.headers.to: \"undisclosed-recipients:\" is not an e-mail address, passed over",
            "no email.to or email.cc; the recipients are from the To and Cc headers",
        ]
    );
}

#[test]
fn the_time_falls_back_from_occurred_at_to_the_message_date_to_now() {
    let cases = [
        (
            json!({"threat_info": {"occurred_at": "2024-05-01T09:31:12Z"}}),
            "2024-05-01T09:31:12Z",
            0,
        ),
        (
            json!({"threat_info": {"occurred_at": 1714555872}}),
            "2024-05-01T09:31:12Z",
            0,
        ),
        (
            json!({"threat_info": {"occurred_at": 1714555872123u64}}),
            "2024-05-01T09:31:12.123Z",
            0,
        ),
        (
            json!({"threat_info": {"occurred_at": "2024-05-01 09:31:12"}}),
            "2024-05-01T09:31:12Z",
            0,
        ),
        (
            json!({
                "threat_info": {"occurred_at": "soon"},
                "email": {"received_at": "2024-05-01T09:30:04Z"},
            }),
            "2024-05-01T09:30:04Z",
            1,
        ),
        (
            json!({"email": {"date": "Wed, 01 May 2024 11:30:00 +0200"}}),
            "2024-05-01T09:30:00Z",
            0,
        ),
        (
            json!({"threat_info": {"occurred_at": "soon"}}),
            "2024-06-01T12:00:00Z",
            2,
        ),
    ];
    for (body, expected, time_notes) in cases {
        let mut with_recipient = body.clone();
        with_recipient["target"] = json!({"user": "a@x.zz"});
        let draft = read(&with_recipient);
        assert_eq!(draft.time, time(expected), "{body}");
        assert_eq!(
            draft.notes.len(),
            time_notes + 1,
            "{body}: {:?}",
            draft.notes
        );
    }

    let draft = read(&json!({"threat_info": {"occurred_at": "soon", "url": "https://x.zz/"}}));
    assert_eq!(draft.threats[0].time, None);
    assert_eq!(
        draft.notes[0],
        "threat_info.occurred_at \"soon\" could not be read as a time"
    );
}

#[test]
fn the_threat_is_the_url_else_the_file_hash_else_the_name() {
    let cases = [
        (
            json!({"filehash": HASH.to_uppercase(), "name": "Trojan.X", "filename": "a.exe"}),
            Some(ThreatKind::Attachment),
            HASH.to_uppercase(),
            Some(HASH),
        ),
        (
            json!({"filehash": "d41d8cd98f00b204e9800998ecf8427e"}),
            Some(ThreatKind::Attachment),
            "d41d8cd98f00b204e9800998ecf8427e".to_owned(),
            None,
        ),
        (
            json!({"name": "Emotet C2", "threat_type": "command-and-control"}),
            Some(ThreatKind::Other("command-and-control".to_owned())),
            "Emotet C2".to_owned(),
            None,
        ),
        (
            json!({"name": "Emotet C2"}),
            None,
            "Emotet C2".to_owned(),
            None,
        ),
        (
            json!({"filename": "invoice.html"}),
            Some(ThreatKind::Attachment),
            "invoice.html".to_owned(),
            None,
        ),
    ];
    for (info, kind, value, sha256) in cases {
        let draft = read(&json!({"threat_info": info, "classification": "Malware"}));
        let threat = &draft.threats[0];
        assert_eq!(threat.kind, kind, "{info}");
        assert_eq!(threat.value.as_deref(), Some(value.as_str()), "{info}");
        assert_eq!(threat.sha256.as_deref(), sha256, "{info}");
        assert_eq!(threat.hostname, None, "{info}");
        assert_eq!(threat.classification.as_deref(), Some("malware"), "{info}");
    }
}

#[test]
fn a_sender_that_is_not_an_address_is_noted_and_the_header_used() {
    let draft = read(&json!({"email": {
        "from": "MAILER-DAEMON",
        "headers": {"From": "\"Postmaster\" <postmaster@x.zz>"},
        "to": "a@x.zz",
    }}));
    assert_eq!(draft.sender.as_deref(), Some("postmaster@x.zz"));
    assert!(
        draft
            .notes
            .contains(&"email.from \"MAILER-DAEMON\" is not an e-mail address".to_owned())
    );
}

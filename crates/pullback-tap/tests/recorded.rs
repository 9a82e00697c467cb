//! Reads every recorded TAP SIEM file of the shared data folder, with exact counts of drafts
//! and rejects per file, and gives each quirk the data's README lists a test of its own.
//!
//! The folder comes from `PULLBACK_SHARED_DATA` (default `../../../shared/data` from this
//! crate); the files are never copied into the project.

use pullback_domain::{AlertDraft, AlertKind, ThreatKind};
use pullback_tap::{Envelope, EnvelopeError, parse_envelope, parse_event};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// How a recorded file is laid out.
#[derive(Clone, Copy, Debug)]
enum Shape {
    /// A whole `/v2/siem/...` response.
    Envelope,
    /// One event a line, of the kind the file name says; a line may be an envelope.
    Lines,
    /// A single bare event.
    Event(AlertKind),
    /// Not JSON: reading it as an envelope must fail.
    NotJson,
}

/// Every file of `tap-siem/`, with what reading it must give: (drafts, rejected).
const RECORDED: [(&str, Shape, usize, usize); 19] = [
    (
        "elastic_integrations/test-clicks-blocked.log",
        Shape::Lines,
        5,
        0,
    ),
    (
        "elastic_integrations/test-clicks-permitted.log",
        Shape::Lines,
        4,
        0,
    ),
    (
        "elastic_integrations/test-message-blocked.log",
        Shape::Lines,
        6,
        0,
    ),
    (
        "elastic_integrations/test-message-delivered.log",
        Shape::Lines,
        8,
        0,
    ),
    (
        "rapid7_insightconnect-plugins/LICENSE",
        Shape::NotJson,
        0,
        0,
    ),
    (
        "rapid7_insightconnect-plugins/all_threats.json.resp",
        Shape::Envelope,
        2,
        0,
    ),
    (
        "rapid7_insightconnect-plugins/blocked_clicks.json.resp",
        Shape::Envelope,
        1,
        0,
    ),
    (
        "rapid7_insightconnect-plugins/blocked_clicks_without_url.json.resp",
        Shape::Envelope,
        1,
        0,
    ),
    (
        "rapid7_insightconnect-plugins/blocked_messages.json.resp",
        Shape::Envelope,
        1,
        0,
    ),
    (
        "rapid7_insightconnect-plugins/blocked_messages_without_subject.json.resp",
        Shape::Envelope,
        1,
        0,
    ),
    (
        "rapid7_insightconnect-plugins/decode_few_urls.json.resp",
        Shape::Envelope,
        0,
        0,
    ),
    (
        "rapid7_insightconnect-plugins/decode_invalid_url.json.resp",
        Shape::Envelope,
        0,
        0,
    ),
    (
        "rapid7_insightconnect-plugins/delivered_messages.json.resp",
        Shape::Envelope,
        1,
        0,
    ),
    (
        "rapid7_insightconnect-plugins/delivered_messages_without_subject.json.resp",
        Shape::Envelope,
        1,
        0,
    ),
    (
        "rapid7_insightconnect-plugins/monitor_events.json.resp",
        Shape::Envelope,
        5,
        0,
    ),
    (
        "rapid7_insightconnect-plugins/parse_tap_alert_success.json.inp",
        Shape::Envelope,
        0,
        0,
    ),
    (
        "rapid7_insightconnect-plugins/permitted_clicks.json.resp",
        Shape::Envelope,
        1,
        0,
    ),
    (
        "rapid7_insightconnect-plugins/permitted_clicks_without_url.json.resp",
        Shape::Envelope,
        1,
        0,
    ),
    (
        "sumologic_docs/siem_api_doc_sample_message_event.json",
        Shape::Event(AlertKind::MessageDelivered),
        1,
        0,
    ),
];

fn data_dir() -> PathBuf {
    let base = match std::env::var_os("PULLBACK_SHARED_DATA") {
        Some(dir) => PathBuf::from(dir),
        None => manifest_dir().join("../../../shared/data"),
    };
    let dir = base.join("tap-siem");
    assert!(
        dir.is_dir(),
        "{} is missing: set PULLBACK_SHARED_DATA to the shared data folder",
        dir.display()
    );
    dir
}

fn read(relative: &str) -> Vec<u8> {
    let path = data_dir().join(relative);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The kind of the events of an NDJSON file, from its name.
fn kind_from_name(relative: &str) -> AlertKind {
    let kinds = [
        ("clicks-blocked", AlertKind::ClickBlocked),
        ("clicks-permitted", AlertKind::ClickPermitted),
        ("message-blocked", AlertKind::MessageBlocked),
        ("message-delivered", AlertKind::MessageDelivered),
    ];
    kinds
        .iter()
        .find(|(name, _)| relative.contains(name))
        .map(|&(_, kind)| kind)
        .unwrap_or_else(|| panic!("no event kind in the name {relative}"))
}

/// Reads an NDJSON file: each line an event, or an envelope when it looks like one.
fn read_lines(relative: &str) -> Envelope {
    let kind = kind_from_name(relative);
    let bytes = read(relative);
    let text = String::from_utf8_lossy(&bytes);
    let mut out = Envelope::default();
    for (index, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let value: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("{relative} line {}: {e}", index + 1));
        if value.get("queryEndTime").is_some() {
            let envelope = parse_envelope(line.as_bytes()).expect("an envelope line");
            out.query_end_time = envelope.query_end_time;
            out.drafts.extend(envelope.drafts);
            out.rejected.extend(envelope.rejected);
            continue;
        }
        match parse_event(kind, &value) {
            Ok(draft) => out.drafts.push(draft),
            Err(e) => panic!("{relative} line {}: {e}", index + 1),
        }
    }
    out
}

fn read_recorded(relative: &str, shape: Shape) -> Result<Envelope, EnvelopeError> {
    match shape {
        Shape::Envelope | Shape::NotJson => parse_envelope(&read(relative)),
        Shape::Lines => Ok(read_lines(relative)),
        Shape::Event(kind) => {
            let value: Value = serde_json::from_slice(&read(relative)).expect("one JSON event");
            let draft = parse_event(kind, &value).expect("a readable event");
            Ok(Envelope {
                drafts: vec![draft],
                ..Envelope::default()
            })
        }
    }
}

fn drafts(relative: &str) -> Vec<AlertDraft> {
    let shape = RECORDED
        .iter()
        .find(|(path, ..)| *path == relative)
        .map(|&(_, shape, ..)| shape)
        .unwrap_or_else(|| panic!("{relative} is not in RECORDED"));
    read_recorded(relative, shape).expect("readable").drafts
}

fn sumologic() -> AlertDraft {
    drafts("sumologic_docs/siem_api_doc_sample_message_event.json").remove(0)
}

#[test]
fn the_table_covers_every_recorded_file() {
    fn walk(dir: &Path, root: &Path, out: &mut BTreeSet<String>) {
        let entries =
            std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                walk(&path, root, out);
            } else if let Ok(relative) = path.strip_prefix(root) {
                out.insert(relative.to_string_lossy().into_owned());
            }
        }
    }
    let root = data_dir();
    let mut found = BTreeSet::new();
    walk(&root, &root, &mut found);
    let listed: BTreeSet<String> = RECORDED.iter().map(|(p, ..)| (*p).to_owned()).collect();
    assert_eq!(found, listed);
}

#[test]
fn every_recorded_file_reads_with_exact_counts() {
    for (relative, shape, drafts, rejected) in RECORDED {
        let result = read_recorded(relative, shape);
        if let Shape::NotJson = shape {
            assert!(
                matches!(result, Err(EnvelopeError::NotJson(_))),
                "{relative}"
            );
            continue;
        }
        let envelope = result.unwrap_or_else(|e| panic!("{relative}: {e}"));
        assert_eq!(envelope.drafts.len(), drafts, "drafts of {relative}");
        assert_eq!(envelope.rejected.len(), rejected, "rejects of {relative}");
        for draft in &envelope.drafts {
            assert!(!draft.dedup_key.is_empty(), "{relative}");
            assert!(
                !draft.threats.is_empty(),
                "{relative}: {:?}",
                draft.dedup_key
            );
            assert!(draft.raw.is_object(), "{relative}");
        }
    }
}

#[test]
fn completely_rewritten_comes_as_a_boolean_or_a_string() {
    let sample = sumologic();
    assert_eq!(sample.raw["completelyRewritten"], json!("true"));
    let delivered = drafts("elastic_integrations/test-message-delivered.log");
    assert_eq!(delivered[0].raw["completelyRewritten"], json!(true));
}

#[test]
fn from_address_comes_as_a_string_or_a_list() {
    // The documentation sample has it as a string; take away the sender fields that win over it.
    let path = "sumologic_docs/siem_api_doc_sample_message_event.json";
    let mut raw: Value = serde_json::from_slice(&read(path)).expect("JSON");
    assert!(raw["fromAddress"].is_string());
    raw["sender"] = json!("");
    raw["headerFrom"] = Value::Null;
    let draft = parse_event(AlertKind::MessageDelivered, &raw).expect("readable");
    assert_eq!(draft.sender.as_deref(), Some("badguy@evil.zz"));
    assert!(
        draft
            .notes
            .contains(&"sender empty, used fromAddress".to_owned()),
        "{:?}",
        draft.notes
    );

    // Rapid7's sparse events have it as a list and no sender at all.
    let blocked = drafts("rapid7_insightconnect-plugins/blocked_messages.json.resp");
    assert!(blocked[0].raw["fromAddress"].is_array());
    assert_eq!(blocked[0].sender.as_deref(), Some("user@example.com"));
    assert!(
        blocked[0]
            .notes
            .contains(&"sender missing, used fromAddress".to_owned())
    );
}

#[test]
fn cluster_comes_as_cluster_id_or_cluster_and_is_kept() {
    assert_eq!(sumologic().raw["clusterId"], json!("pharmtech_hosted"));
    let blocked = drafts("elastic_integrations/test-message-blocked.log");
    assert_eq!(blocked[0].raw["cluster"], json!("pharmtech_hosted"));
}

#[test]
fn threat_id_comes_in_either_case() {
    let sample = sumologic();
    assert!(sample.raw["threatsInfoMap"][0].get("threatId").is_some());
    let ids: Vec<&str> = sample
        .threats
        .iter()
        .filter_map(|t| t.id.as_deref())
        .collect();
    assert_eq!(
        ids,
        [
            "2fab740f143fc1aa4c1cd0146d334c5593b1428f6d062b2c406e5efe8abe95ca",
            "3ba97fc852c66a7ba761450edfdfb9f4ffab74715b591294f78b5e37a76481aa",
        ]
    );
    let blocked = drafts("elastic_integrations/test-message-blocked.log");
    assert!(
        blocked[0].raw["threatsInfoMap"][0]
            .get("threatID")
            .is_some()
    );
    assert!(
        blocked[0].threats[0]
            .id
            .as_deref()
            .is_some_and(|id| id.starts_with("dhgonvj"))
    );
}

#[test]
fn threat_url_comes_in_either_case() {
    let message = &drafts("elastic_integrations/test-message-blocked.log")[0];
    assert!(message.raw["threatsInfoMap"][0].get("threatUrl").is_some());
    let dashboard = message.threats[0]
        .dashboard_url
        .as_deref()
        .expect("threatUrl read");
    assert!(dashboard.starts_with("https://threatinsight.proofpoint.com/"));

    let click = &drafts("elastic_integrations/test-clicks-blocked.log")[0];
    assert!(click.raw.get("threatURL").is_some());
    assert_eq!(
        click.threats[0].dashboard_url.as_deref(),
        Some("https://www.abc.com/?name=john")
    );
}

#[test]
fn campaign_id_comes_in_either_case_or_null() {
    let sample = sumologic();
    assert_eq!(
        sample.threats[0].campaign_id.as_deref(),
        Some("46e01b8a-c899-404d-bcd9-189bb393d1a7")
    );
    let click = &drafts("elastic_integrations/test-clicks-blocked.log")[0];
    assert_eq!(
        click.threats[0].campaign_id.as_deref(),
        Some("46x01x8x-x899-404x-xxx9-111xx393d1x7")
    );

    let message = &drafts("elastic_integrations/test-message-blocked.log")[0];
    assert_eq!(message.raw["threatsInfoMap"][0]["campaignID"], Value::Null);
    assert_eq!(message.threats[0].campaign_id, None);
}

#[test]
fn classification_and_threat_type_are_read_in_any_case() {
    let sample = sumologic();
    let read: Vec<(Option<&str>, Option<&ThreatKind>)> = sample
        .threats
        .iter()
        .map(|t| (t.classification.as_deref(), t.kind.as_ref()))
        .collect();
    assert_eq!(
        read,
        [
            (Some("malware"), Some(&ThreatKind::Attachment)),
            (Some("malware"), Some(&ThreatKind::Url)),
        ]
    );
    let permitted = drafts("elastic_integrations/test-clicks-permitted.log");
    assert_eq!(permitted[0].raw["classification"], json!("MALWARE"));
    assert_eq!(permitted[0].classifications(), ["malware"]);

    let text = drafts("rapid7_insightconnect-plugins/delivered_messages_without_subject.json.resp");
    assert_eq!(text[0].threats[0].kind, Some(ThreatKind::MessageText));
}

#[test]
fn threat_status_false_positive_is_lower_cased() {
    let click = &drafts("rapid7_insightconnect-plugins/blocked_clicks_without_url.json.resp")[0];
    assert_eq!(click.raw["threatStatus"], json!("falsePositive"));
    assert_eq!(click.threats[0].status.as_deref(), Some("falsepositive"));
}

#[test]
fn a_click_recipient_comes_as_a_string_or_a_list() {
    let as_string = &drafts("rapid7_insightconnect-plugins/blocked_clicks.json.resp")[0];
    let as_list = &drafts("rapid7_insightconnect-plugins/blocked_clicks_without_url.json.resp")[0];
    assert!(as_string.raw["recipient"].is_string() && as_list.raw["recipient"].is_array());
    assert_eq!(as_string.recipients, ["user@example.com"]);
    assert_eq!(as_list.recipients, ["user@example.com"]);
}

#[test]
fn delivered_events_with_empty_sender_and_message_id_and_null_subject_are_read() {
    let delivered = drafts("elastic_integrations/test-message-delivered.log");
    let sparse = &delivered[0];
    assert_eq!(sparse.raw["sender"], json!(""));
    assert_eq!(sparse.raw["messageID"], json!(""));
    assert_eq!(sparse.raw["subject"], Value::Null);
    assert_eq!(
        (&sparse.sender, &sparse.message_id, &sparse.subject),
        (&None, &None, &None)
    );
    assert_eq!(
        sparse.recipients,
        ["fhsvbui8axxxxxxui8abc256326@example.com"]
    );
    for note in [
        "messageID empty",
        "sender empty, and no headerFrom or fromAddress",
    ] {
        assert!(
            sparse.notes.contains(&note.to_owned()),
            "{note}: {:?}",
            sparse.notes
        );
    }
    assert_eq!(sparse.time.to_rfc3339(), "2022-01-05T10:05:56.020+00:00");
}

#[test]
fn the_same_message_twice_with_different_guid_and_qid_gives_two_drafts() {
    let blocked = drafts("elastic_integrations/test-message-blocked.log");
    let (first, second) = (&blocked[4], &blocked[5]);
    assert_eq!(first.message_id, second.message_id);
    assert_ne!(first.raw["GUID"], second.raw["GUID"]);
    assert_ne!(first.raw["QID"], second.raw["QID"]);
    assert_ne!(first.threats[0].id, second.threats[0].id);
    // The recorded pair also shares its `id`; the GUID in the key keeps them apart.
    assert!(
        first
            .dedup_key
            .starts_with("id:ee212323-1234-1234-1234-0f0abcd123456/")
    );
    assert_ne!(first.dedup_key, second.dedup_key);
}

#[test]
fn impostor_score_as_a_float_is_read() {
    let blocked = drafts("elastic_integrations/test-message-blocked.log");
    assert!(blocked[0].raw["impostorScore"].is_f64());
    let delivered = drafts("elastic_integrations/test-message-delivered.log");
    assert!(delivered[4].raw["impostorScore"].is_u64());
}

#[test]
fn query_end_time_comes_with_or_without_milliseconds() {
    let recorded = parse_envelope(&read("rapid7_insightconnect-plugins/all_threats.json.resp"))
        .expect("an envelope");
    let end = recorded.query_end_time.map(|t| t.to_rfc3339());
    assert_eq!(end.as_deref(), Some("2021-08-27T16:00:00+00:00"));

    // No recorded file has milliseconds; the API's documentation shows both forms.
    let with_millis =
        parse_envelope(br#"{"queryEndTime": "2021-08-27T16:00:00.250Z"}"#).expect("an envelope");
    let end = with_millis.query_end_time.map(|t| t.to_rfc3339());
    assert_eq!(end.as_deref(), Some("2021-08-27T16:00:00.250+00:00"));
}

#[test]
fn an_elastic_file_may_end_with_an_empty_envelope() {
    let permitted = read_lines("elastic_integrations/test-clicks-permitted.log");
    assert_eq!(permitted.drafts.len(), 4);
    let end = permitted.query_end_time.map(|t| t.to_rfc3339());
    assert_eq!(end.as_deref(), Some("2024-10-11T14:34:53+00:00"));
}

#[test]
fn events_without_id_are_keyed_by_a_hash_and_reach_recipients_through_to_addresses() {
    let delivered = &drafts("rapid7_insightconnect-plugins/delivered_messages.json.resp")[0];
    assert!(
        delivered.dedup_key.starts_with("sha256:"),
        "{}",
        delivered.dedup_key
    );
    assert_eq!(delivered.recipients, ["user@example.com"]);
    assert!(
        delivered
            .notes
            .contains(&"recipient missing, used toAddresses and ccAddresses".into())
    );
    // With no messageTime the event is dated by its threat.
    assert_eq!(delivered.time.to_rfc3339(), "2021-08-27T15:59:49+00:00");
}

#[test]
fn attachment_threats_carry_their_sha256_and_url_threats_their_host() {
    let sample = sumologic();
    assert_eq!(
        sample.threats[0].sha256.as_deref(),
        Some("2fab740f143fc1aa4c1cd0146d334c5593b1428f6d062b2c406e5efe8abe95ca")
    );
    assert_eq!(sample.threats[0].hostname, None);
    assert_eq!(sample.threats[1].hostname.as_deref(), Some("badsite.zz"));
    assert_eq!(sample.threats[1].sha256, None);
    assert_eq!(
        sample.recipients,
        ["clark.kent@pharmtech.zz", "diana.prince@pharmtech.zz"]
    );
    assert_eq!(
        sample.message_id.as_ref().map(|m| m.as_str()),
        Some("20160624211145.62086.mail@evil.zz")
    );

    let click = &drafts("elastic_integrations/test-clicks-blocked.log")[0];
    assert_eq!(
        click.threats[0].hostname.as_deref(),
        Some("www.example.com")
    );
}

/// This crate's folder. Cargo sets it when it runs a test; the compiled-in value is only a
/// fallback, because a build shared between two checkouts may carry the other one's path.
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

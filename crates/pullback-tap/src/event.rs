//! Tolerant reading of TAP SIEM events into alert drafts.
//!
//! Real payloads disagree with the vendor's documentation: field names change case, lists
//! arrive as strings, nulls appear anywhere. Every event is read on its own, so one that cannot
//! be read is set aside with its reason and never costs the rest of its window.

use chrono::{NaiveDateTime, SecondsFormat};
use pullback_domain::{
    AlertDraft, AlertKind, MessageId, Threat, ThreatKind, Timestamp, hostname_of, normalise_address,
};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// The four event arrays of a SIEM response, with the kind of alert each holds.
pub(crate) const ARRAYS: [(&str, AlertKind); 4] = [
    ("messagesDelivered", AlertKind::MessageDelivered),
    ("messagesBlocked", AlertKind::MessageBlocked),
    ("clicksPermitted", AlertKind::ClickPermitted),
    ("clicksBlocked", AlertKind::ClickBlocked),
];

/// One `/v2/siem/...` response, read event by event.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Envelope {
    /// The end of the window the server answered for; `None` when absent or unreadable.
    pub query_end_time: Option<Timestamp>,
    /// The events that could be read, in the order of the arrays and of the events in them.
    pub drafts: Vec<AlertDraft>,
    /// The events that could not be read, each with the reason.
    pub rejected: Vec<RejectedEvent>,
}

/// An event that could not be turned into an alert draft.
#[derive(Clone, Debug, PartialEq)]
pub struct RejectedEvent {
    /// The kind of the array the event came in.
    pub kind: AlertKind,
    /// Its position in that array.
    pub index: usize,
    /// What was wrong, naming the array, the index and the field.
    pub reason: String,
    /// The event exactly as received.
    pub raw: Value,
}

impl RejectedEvent {
    /// The record the store keeps: a hash of the whole event, so a bad event fetched again by
    /// an overlapping window is kept and counted once.
    pub fn into_record(self) -> pullback_domain::RejectedEvent {
        pullback_domain::RejectedEvent {
            key: hashed_key(&self.raw),
            reason: self.reason,
            raw: self.raw,
        }
    }
}

/// A response body that is not a SIEM envelope at all.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error("the response is not JSON: {0}")]
    NotJson(#[from] serde_json::Error),
    #[error("the response is a JSON {found}, not an object")]
    NotAnObject { found: &'static str },
}

/// Why one event could not be read.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("the event is a JSON {found}, not an object")]
    NotAnObject { found: &'static str },
    #[error("{kind} events do not come from the TAP SIEM API", kind = .0.as_str())]
    UnsupportedKind(AlertKind),
    #[error("{field} is a JSON {found}, not a list")]
    NotAList {
        field: &'static str,
        found: &'static str,
    },
    #[error("no usable time: {field} is {found} and no threatTime could be read")]
    NoTime { field: &'static str, found: String },
}

/// Reads a SIEM response body. Only a body that is not a JSON object is an error; events that
/// cannot be read are listed in [`Envelope::rejected`].
pub fn parse_envelope(body: &[u8]) -> Result<Envelope, EnvelopeError> {
    let value: Value = serde_json::from_slice(body)?;
    let Value::Object(map) = value else {
        return Err(EnvelopeError::NotAnObject {
            found: type_name(&value),
        });
    };

    let mut envelope = Envelope {
        query_end_time: field(&map, &["queryEndTime"]).and_then(parse_time),
        ..Envelope::default()
    };
    for (array, kind) in ARRAYS {
        match field(&map, &[array]) {
            None => {}
            Some(Value::Array(events)) => {
                for (index, raw) in events.iter().enumerate() {
                    match parse_event(kind, raw) {
                        Ok(draft) => envelope.drafts.push(draft),
                        Err(err) => envelope.rejected.push(RejectedEvent {
                            kind,
                            index,
                            reason: format!("{array}[{index}]: {err}"),
                            raw: raw.clone(),
                        }),
                    }
                }
            }
            Some(other) => envelope.rejected.push(RejectedEvent {
                kind,
                index: 0,
                reason: format!("{array} is a JSON {}, not a list", type_name(other)),
                raw: other.clone(),
            }),
        }
    }
    Ok(envelope)
}

/// Reads one event of a SIEM array into an alert draft.
pub fn parse_event(kind: AlertKind, raw: &Value) -> Result<AlertDraft, EventError> {
    let Value::Object(event) = raw else {
        return Err(EventError::NotAnObject {
            found: type_name(raw),
        });
    };
    let mut notes = Vec::new();
    let (threats, time_field, recipients) = match kind {
        AlertKind::MessageDelivered | AlertKind::MessageBlocked => {
            let threats = message_threats(event, &mut notes)?;
            (
                threats,
                "messageTime",
                message_recipients(event, &mut notes),
            )
        }
        AlertKind::ClickPermitted | AlertKind::ClickBlocked => {
            let threats = vec![click_threat(event, &mut notes)];
            (threats, "clickTime", click_recipients(event, &mut notes))
        }
        other => return Err(EventError::UnsupportedKind(other)),
    };
    let time = event_time(event, time_field, &threats, &mut notes)?;

    Ok(AlertDraft {
        kind,
        dedup_key: dedup_key(event, raw, &mut notes),
        time,
        message_id: message_id(event, &mut notes),
        subject: text(event, &["subject"]),
        sender: sender(event, &mut notes),
        recipients,
        threats,
        notes,
        link: None,
        analysis: None,
        raw: raw.clone(),
    })
}

/// The key the store deduplicates on: the event's own `id` (with its `GUID` where it has
/// one), else a hash of the whole event. Never the message GUID alone, which every
/// recipient's copy of a message shares. The GUID is part of the key because recorded
/// payloads hold two different events that share one `id`; a repeat of one event fetched
/// again by an overlapping window carries both the same `id` and the same `GUID`.
fn dedup_key(event: &Map<String, Value>, raw: &Value, notes: &mut Vec<String>) -> String {
    match text(event, &["id"]) {
        Some(id) => match text(event, &["GUID"]) {
            Some(guid) => format!("id:{id}/{guid}"),
            None => format!("id:{id}"),
        },
        None => {
            notes.push("id missing, deduplicated on a hash of the whole event".to_owned());
            hashed_key(raw)
        }
    }
}

fn hashed_key(raw: &Value) -> String {
    let mut canonical = String::new();
    write_canonical(raw, &mut canonical);
    format!(
        "sha256:{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    )
}

/// Writes compact JSON with the keys of every object sorted, so that the same event hashes
/// the same whatever order its fields arrived in.
fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::from(key.as_str()).to_string());
                out.push(':');
                write_canonical(&map[key], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

fn message_threats(
    event: &Map<String, Value>,
    notes: &mut Vec<String>,
) -> Result<Vec<Threat>, EventError> {
    let entries = match field(event, &["threatsInfoMap"]) {
        None => {
            notes.push("threatsInfoMap missing".to_owned());
            return Ok(Vec::new());
        }
        Some(Value::Array(entries)) => entries,
        Some(other) => {
            return Err(EventError::NotAList {
                field: "threatsInfoMap",
                found: type_name(other),
            });
        }
    };

    let mut threats = Vec::with_capacity(entries.len());
    for (i, entry) in entries.iter().enumerate() {
        match entry {
            Value::Object(info) => threats.push(message_threat(info)),
            Value::Null => notes.push(format!("threatsInfoMap[{i}] is null, skipped")),
            other => notes.push(format!(
                "threatsInfoMap[{i}] is a JSON {}, not an object, skipped",
                type_name(other)
            )),
        }
    }
    Ok(threats)
}

fn message_threat(info: &Map<String, Value>) -> Threat {
    let kind = text(info, &["threatType"]).map(|t| ThreatKind::from_feed(&t));
    let value = text(info, &["threat"]);
    let hostname = match kind {
        Some(ThreatKind::Attachment | ThreatKind::MessageText) => None,
        _ => value.as_deref().and_then(hostname_of),
    };
    let sha256 = match kind {
        Some(ThreatKind::Attachment) => value.as_deref().filter(|v| is_sha256(v)),
        _ => None,
    }
    .map(str::to_ascii_lowercase);

    Threat {
        id: text(info, &["threatID"]),
        kind,
        value,
        dashboard_url: text(info, &["threatURL"]),
        hostname,
        sha256,
        classification: lower(info, &["classification"]),
        status: lower(info, &["threatStatus"]),
        campaign_id: text(info, &["campaignID"]),
        time: field(info, &["threatTime"]).and_then(parse_time),
    }
}

fn click_threat(event: &Map<String, Value>, notes: &mut Vec<String>) -> Threat {
    let url = text(event, &["url"]);
    if url.is_none() {
        notes.push("url missing".to_owned());
    }
    Threat {
        id: text(event, &["threatID"]),
        kind: Some(ThreatKind::Url),
        hostname: url.as_deref().and_then(hostname_of),
        value: url,
        dashboard_url: text(event, &["threatURL"]),
        sha256: None,
        classification: lower(event, &["classification"]),
        status: lower(event, &["threatStatus"]),
        campaign_id: text(event, &["campaignID"]),
        time: field(event, &["threatTime"]).and_then(parse_time),
    }
}

fn message_recipients(event: &Map<String, Value>, notes: &mut Vec<String>) -> Vec<String> {
    let listed = addresses(field(event, &["recipient"]));
    if !listed.is_empty() {
        return listed;
    }
    let mut fallback = addresses(field(event, &["toAddresses"]));
    fallback.extend(addresses(field(event, &["ccAddresses"])));
    let fallback = dedup(fallback);
    if fallback.is_empty() {
        notes.push("no recipient in recipient, toAddresses or ccAddresses".to_owned());
    } else {
        notes.push("recipient missing, used toAddresses and ccAddresses".to_owned());
    }
    fallback
}

fn click_recipients(event: &Map<String, Value>, notes: &mut Vec<String>) -> Vec<String> {
    let listed = addresses(field(event, &["recipient"]));
    if listed.is_empty() {
        notes.push("recipient missing".to_owned());
    }
    listed
}

/// The event's time, else the latest threat time, else an error naming the field.
fn event_time(
    event: &Map<String, Value>,
    time_field: &'static str,
    threats: &[Threat],
    notes: &mut Vec<String>,
) -> Result<Timestamp, EventError> {
    let raw = field(event, &[time_field]);
    if let Some(time) = raw.and_then(parse_time) {
        return Ok(time);
    }
    let found = match raw {
        None => "missing".to_owned(),
        Some(value) => format!("{value} (not a time)"),
    };
    match threats.iter().filter_map(|t| t.time).max() {
        Some(latest) => {
            notes.push(format!("{time_field} {found}, used the latest threatTime"));
            Ok(latest)
        }
        None => Err(EventError::NoTime {
            field: time_field,
            found,
        }),
    }
}

fn message_id(event: &Map<String, Value>, notes: &mut Vec<String>) -> Option<MessageId> {
    match field(event, &["messageID"]) {
        None => {
            notes.push("messageID missing".to_owned());
            None
        }
        Some(value) => {
            let parsed = scalar_text(value).as_deref().and_then(MessageId::parse);
            if parsed.is_none() {
                notes.push("messageID empty".to_owned());
            }
            parsed
        }
    }
}

/// The envelope sender, else the first header or envelope From address.
fn sender(event: &Map<String, Value>, notes: &mut Vec<String>) -> Option<String> {
    let state = match field(event, &["sender"]) {
        None => "missing",
        Some(value) => match scalar_text(value).as_deref().and_then(normalise_address) {
            Some(sender) => return Some(sender),
            None => "empty",
        },
    };
    for name in ["headerFrom", "fromAddress"] {
        if let Some(address) = addresses(field(event, &[name])).into_iter().next() {
            notes.push(format!("sender {state}, used {name}"));
            return Some(address);
        }
    }
    notes.push(format!("sender {state}, and no headerFrom or fromAddress"));
    None
}

/// The first non-null value whose key matches one of `names`, ignoring case.
pub(crate) fn field<'a>(map: &'a Map<String, Value>, names: &[&str]) -> Option<&'a Value> {
    names.iter().find_map(|name| {
        map.iter()
            .filter(|(key, value)| key.eq_ignore_ascii_case(name) && !value.is_null())
            .map(|(_, value)| value)
            .next()
    })
}

/// A field as trimmed text; numbers are written out, empty strings count as absent.
fn text(map: &Map<String, Value>, names: &[&str]) -> Option<String> {
    field(map, names).and_then(scalar_text)
}

fn lower(map: &Map<String, Value>, names: &[&str]) -> Option<String> {
    text(map, names).map(|s| s.to_ascii_lowercase())
}

fn scalar_text(value: &Value) -> Option<String> {
    let s = match value {
        Value::String(s) => s.trim().to_owned(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => return None,
    };
    (!s.is_empty()).then_some(s)
}

/// Addresses from a string or a list of strings, normalised and without repeats.
fn addresses(value: Option<&Value>) -> Vec<String> {
    let found = match value {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(scalar_text)
            .filter_map(|a| normalise_address(&a))
            .collect(),
        Some(other) => scalar_text(other)
            .and_then(|a| normalise_address(&a))
            .into_iter()
            .collect(),
        None => Vec::new(),
    };
    dedup(found)
}

fn dedup(items: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(items.len());
    for item in items {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

/// Reads an RFC 3339 time with or without fractional seconds; a time without a zone is UTC.
fn parse_time(value: &Value) -> Option<Timestamp> {
    parse_time_str(value.as_str()?)
}

/// Reads a time written as [`parse_time`] accepts it.
pub(crate) fn parse_time_str(s: &str) -> Option<Timestamp> {
    let s = s.trim();
    if let Ok(time) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(time.to_utc());
    }
    NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|t| t.and_utc())
}

/// Writes a time as the API does: whole seconds when there is no fraction, a `Z` zone.
pub(crate) fn format_time(time: Timestamp) -> String {
    time.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

fn is_sha256(value: &str) -> bool {
    value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit())
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn message(id: &str, time: &str) -> Value {
        json!({
            "id": id,
            "GUID": "guid-1",
            "messageTime": time,
            "messageID": "<m1@example.zz>",
            "sender": "Bounce@Example.zz",
            "recipient": ["a@example.zz"],
            "threatsInfoMap": [{
                "threatID": "t1", "threat": "https://bad.example.zz/x", "threatType": "URL",
                "classification": "PHISH", "threatStatus": "active",
                "threatTime": "2024-01-01T00:00:00Z"
            }]
        })
    }

    #[test]
    fn malformed_events_do_not_cost_their_neighbours() {
        let mut bad_map = message("m3", "2024-01-01T00:00:00Z");
        bad_map["threatsInfoMap"] = json!("not a list");
        let mut bad_time = message("m4", "yesterday");
        bad_time["threatsInfoMap"] = json!([]);
        let body = json!({
            "queryEndTime": "2024-01-01T01:00:00Z",
            "messagesDelivered": [
                message("m1", "2024-01-01T00:10:00Z"),
                "an event that is a string",
                bad_map,
                bad_time,
                message("m5", "2024-01-01T00:20:00.123Z"),
            ],
            "clicksBlocked": [42, {"id": "c1", "clickTime": "2024-01-01T00:30:00Z"}],
        });

        let envelope = parse_envelope(body.to_string().as_bytes()).expect("an object");
        let keys: Vec<&str> = envelope
            .drafts
            .iter()
            .map(|d| d.dedup_key.as_str())
            .collect();
        assert_eq!(keys, ["id:m1/guid-1", "id:m5/guid-1", "id:c1"]);

        let reasons: Vec<&str> = envelope
            .rejected
            .iter()
            .map(|r| r.reason.as_str())
            .collect();
        assert_eq!(
            reasons,
            [
                "messagesDelivered[1]: the event is a JSON string, not an object",
                "messagesDelivered[2]: threatsInfoMap is a JSON string, not a list",
                "messagesDelivered[3]: no usable time: messageTime is \"yesterday\" (not a time) \
                 and no threatTime could be read",
                "clicksBlocked[0]: the event is a JSON number, not an object",
            ]
        );
        assert_eq!(envelope.rejected[1].index, 2);
        assert_eq!(envelope.rejected[1].kind, AlertKind::MessageDelivered);
        assert_eq!(envelope.rejected[1].raw["id"], "m3");
    }

    #[test]
    fn only_a_body_that_is_not_an_object_is_an_envelope_error() {
        assert!(matches!(
            parse_envelope(b"[]"),
            Err(EnvelopeError::NotAnObject { found: "list" })
        ));
        assert!(matches!(
            parse_envelope(b"<html>"),
            Err(EnvelopeError::NotJson(_))
        ));

        let envelope = parse_envelope(br#"{"messagesBlocked": null, "other": 1}"#).expect("object");
        assert_eq!(envelope, Envelope::default());

        let envelope = parse_envelope(br#"{"clicksPermitted": {"id": "x"}}"#).expect("object");
        assert_eq!(envelope.rejected.len(), 1);
        assert_eq!(
            envelope.rejected[0].reason,
            "clicksPermitted is a JSON object, not a list"
        );
    }

    #[test]
    fn a_bad_threat_time_falls_back_and_a_bad_entry_is_skipped() {
        let mut event = message("m1", "not a time");
        event["threatsInfoMap"]
            .as_array_mut()
            .expect("list")
            .push(json!("junk"));
        let draft = parse_event(AlertKind::MessageBlocked, &event).expect("readable");
        assert_eq!(draft.time.to_rfc3339(), "2024-01-01T00:00:00+00:00");
        assert_eq!(draft.threats.len(), 1);
        assert!(
            draft
                .notes
                .iter()
                .any(|n| n.contains("used the latest threatTime"))
        );
        assert!(
            draft
                .notes
                .iter()
                .any(|n| n.starts_with("threatsInfoMap[1] is a JSON string"))
        );
    }

    #[test]
    fn non_tap_kinds_are_refused() {
        let err = parse_event(
            AlertKind::AbuseReport,
            &message("m1", "2024-01-01T00:00:00Z"),
        );
        assert_eq!(
            err,
            Err(EventError::UnsupportedKind(AlertKind::AbuseReport))
        );
    }

    fn click_key(mut event: Value) -> String {
        event["clickTime"] = json!("2024-01-01T00:00:00Z");
        parse_event(AlertKind::ClickPermitted, &event)
            .expect("readable")
            .dedup_key
    }

    #[test]
    fn dedup_keys_prefer_the_id_and_hash_canonically_without_it() {
        assert_eq!(click_key(json!({"id": "abc", "GUID": "g"})), "id:abc/g");
        assert_eq!(click_key(json!({"id": 7})), "id:7");

        let a = click_key(json!({"GUID": "g", "x": {"b": 1, "a": [1, {"d": 2, "c": 3}]}}));
        let b = click_key(json!({"x": {"a": [1, {"c": 3, "d": 2}], "b": 1}, "GUID": "g"}));
        assert_eq!(a, b);
        assert!(a.starts_with("sha256:") && a.len() == 7 + 64, "{a}");

        let one_recipient = click_key(json!({"GUID": "g", "id": "", "recipient": "x@y.zz"}));
        let another = click_key(json!({"GUID": "g", "id": "", "recipient": "z@y.zz"}));
        assert_ne!(one_recipient, another);
    }

    #[test]
    fn times_are_read_with_or_without_fractions_and_zones() {
        let cases = [
            ("2021-08-27T16:00:00Z", "2021-08-27T16:00:00Z"),
            ("2021-08-27T16:00:00.250Z", "2021-08-27T16:00:00.250Z"),
            ("2021-08-27T18:00:00+02:00", "2021-08-27T16:00:00Z"),
            ("2021-08-27T16:00:00", "2021-08-27T16:00:00Z"),
        ];
        for (raw, expected) in cases {
            let time = parse_time(&json!(raw)).map(format_time);
            assert_eq!(time.as_deref(), Some(expected), "{raw}");
        }
        assert_eq!(parse_time(&json!("yesterday")), None);
        assert_eq!(parse_time(&json!(1_700_000_000)), None);
    }
}

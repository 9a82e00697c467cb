//! The generic alert object: one JSON object per alert, as scripted pollers print them (one a
//! line) and as `POST /api/v1/alerts` takes them.
//!
//! ```json
//! {"id": "imd-4711", "message_id": "<a@b>", "recipients": ["x@corp.example"],
//!  "sender": "bad@evil.example", "subject": "Invoice", "time": "2026-12-04T10:00:00Z",
//!  "classification": "phish", "threats": [{"value": "https://evil.example/x", "type": "url"}]}
//! ```
//!
//! A scripted poller may also print `{"checkpoint": "..."}`: everything it printed before that
//! line is covered, and its next run gets the value back.

use pullback_domain::{
    AlertDraft, AlertKind, MessageId, Threat, ThreatKind, Timestamp, hostname_of, normalise_address,
};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// What one line (or one pushed object) said.
#[derive(Debug, PartialEq)]
pub enum Parsed {
    Alert(Box<AlertDraft>),
    /// The position to resume from, printed by the script.
    Checkpoint(String),
}

/// Why an object is not an alert, naming the field.
#[derive(Debug, PartialEq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct FieldError {
    pub field: String,
    pub reason: String,
}

fn error(field: impl Into<String>, reason: impl Into<String>) -> FieldError {
    FieldError {
        field: field.into(),
        reason: reason.into(),
    }
}

/// Reads one JSON text; `now` stands in for a missing time.
pub fn parse_line(line: &[u8], now: Timestamp) -> Result<Parsed, FieldError> {
    let value: Value =
        serde_json::from_slice(line).map_err(|e| error("(line)", format!("not JSON: {e}")))?;
    parse_value(value, now)
}

/// Reads one JSON value that should be an alert or a checkpoint.
pub fn parse_value(value: Value, now: Timestamp) -> Result<Parsed, FieldError> {
    let Value::Object(object) = &value else {
        return Err(error(
            "(line)",
            format!("expected a JSON object, found {}", kind_of(&value)),
        ));
    };
    if let Some(checkpoint) = object.get("checkpoint") {
        if object.len() > 1 {
            return Err(error(
                "checkpoint",
                "a checkpoint line carries nothing else",
            ));
        }
        let position = match checkpoint {
            Value::String(s) => s.clone(),
            Value::Null => return Err(error("checkpoint", "is null")),
            other => other.to_string(),
        };
        return Ok(Parsed::Checkpoint(position));
    }
    alert(object, &value, now).map(|draft| Parsed::Alert(Box::new(draft)))
}

fn alert(
    object: &Map<String, Value>,
    raw: &Value,
    now: Timestamp,
) -> Result<AlertDraft, FieldError> {
    let id = optional_string(object, "id")?;
    if id.as_deref().is_some_and(|id| id.trim().is_empty()) {
        return Err(error("id", "is empty"));
    }
    let mut notes = Vec::new();
    let message_id = match optional_string(object, "message_id")? {
        Some(raw_id) => {
            Some(MessageId::parse(&raw_id).ok_or_else(|| error("message_id", "is empty"))?)
        }
        None => None,
    };
    let recipients = recipients(object.get("recipients"))?;
    let sender = match optional_string(object, "sender")? {
        Some(s) => Some(normalise_address(&s).ok_or_else(|| error("sender", "is empty"))?),
        None => None,
    };
    let time = match optional_string(object, "time")? {
        Some(t) => chrono::DateTime::parse_from_rfc3339(t.trim())
            .map(|t| t.to_utc())
            .map_err(|e| error("time", format!("{t:?} is not an RFC 3339 time: {e}")))?,
        None => {
            notes.push("no time given; the time of arrival is used".to_owned());
            now
        }
    };
    let classification = optional_string(object, "classification")?.map(|c| c.to_lowercase());
    let mut threats = Vec::new();
    if let Some(value) = object.get("threats") {
        let Value::Array(items) = value else {
            return Err(error(
                "threats",
                format!("expected a list, found {}", kind_of(value)),
            ));
        };
        for (index, item) in items.iter().enumerate() {
            threats.push(threat(
                item,
                &format!("threats[{index}]"),
                classification.as_deref(),
            )?);
        }
    }
    if threats.is_empty() && classification.is_some() {
        threats.push(Threat {
            classification: classification.clone(),
            ..Threat::default()
        });
    }
    let link = optional_string(object, "link")?;
    let dedup_key = match &id {
        Some(id) => format!("id:{}", id.trim()),
        None => format!("sha256:{}", canonical_hash(raw)),
    };
    Ok(AlertDraft {
        kind: AlertKind::Script,
        dedup_key,
        time,
        message_id,
        subject: optional_string(object, "subject")?,
        sender,
        recipients,
        threats,
        notes,
        link,
        analysis: None,
        raw: raw.clone(),
    })
}

fn recipients(value: Option<&Value>) -> Result<Vec<String>, FieldError> {
    let items: Vec<(String, &str)> = match value {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::String(s)) => s
            .split([',', ';'])
            .filter(|part| !part.trim().is_empty())
            .map(|part| ("recipients".to_owned(), part))
            .collect(),
        Some(Value::Array(items)) => {
            let mut out = Vec::with_capacity(items.len());
            for (index, item) in items.iter().enumerate() {
                let field = format!("recipients[{index}]");
                let Value::String(s) = item else {
                    return Err(error(
                        field,
                        format!("expected a string, found {}", kind_of(item)),
                    ));
                };
                out.push((field, s.as_str()));
            }
            out
        }
        Some(other) => {
            return Err(error(
                "recipients",
                format!("expected a list or a string, found {}", kind_of(other)),
            ));
        }
    };
    let mut out: Vec<String> = Vec::with_capacity(items.len());
    for (field, raw) in items {
        let address = normalise_address(raw)
            .filter(|a| a.contains('@'))
            .ok_or_else(|| error(field, format!("{raw:?} is not an e-mail address")))?;
        if !out.contains(&address) {
            out.push(address);
        }
    }
    Ok(out)
}

fn threat(item: &Value, field: &str, classification: Option<&str>) -> Result<Threat, FieldError> {
    let Value::Object(object) = item else {
        return Err(error(
            field,
            format!("expected an object, found {}", kind_of(item)),
        ));
    };
    let at = |name: &str| format!("{field}.{name}");
    let text = |name: &str| -> Result<Option<String>, FieldError> {
        match object.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(error(
                at(name),
                format!("expected a string, found {}", kind_of(other)),
            )),
        }
    };
    let value = text("value")?;
    let kind = text("type")?.map(|k| ThreatKind::from_feed(&k));
    let hostname = match (&kind, &value) {
        (Some(ThreatKind::Url) | None, Some(v)) => hostname_of(v),
        _ => None,
    };
    let sha256 = value
        .as_deref()
        .filter(|v| v.len() == 64 && v.chars().all(|c| c.is_ascii_hexdigit()))
        .map(str::to_ascii_lowercase);
    Ok(Threat {
        id: text("id")?,
        kind,
        value,
        hostname,
        sha256,
        classification: text("classification")?
            .map(|c| c.to_lowercase())
            .or_else(|| classification.map(str::to_owned)),
        status: text("status")?.map(|s| s.to_lowercase()),
        campaign_id: text("campaign_id")?,
        ..Threat::default()
    })
}

fn optional_string(object: &Map<String, Value>, name: &str) -> Result<Option<String>, FieldError> {
    match object.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(error(
            name,
            format!("expected a string, found {}", kind_of(other)),
        )),
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// A hash of the value that does not depend on the order of object keys or on spacing, so the
/// same alert printed twice is recognised.
pub fn canonical_hash(value: &Value) -> String {
    let mut hasher = Sha256::new();
    feed_canonical(value, &mut hasher);
    hex::encode(hasher.finalize())
}

fn feed_canonical(value: &Value, hasher: &mut Sha256) {
    match value {
        Value::Object(object) => {
            let mut keys: Vec<&String> = object.keys().collect();
            keys.sort();
            hasher.update(b"{");
            for key in keys {
                hasher.update(serde_json::to_string(key).unwrap_or_default().as_bytes());
                hasher.update(b":");
                feed_canonical(&object[key], hasher);
                hasher.update(b",");
            }
            hasher.update(b"}");
        }
        Value::Array(items) => {
            hasher.update(b"[");
            for item in items {
                feed_canonical(item, hasher);
                hasher.update(b",");
            }
            hasher.update(b"]");
        }
        scalar => hasher.update(scalar.to_string().as_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        chrono::DateTime::parse_from_rfc3339("2026-12-04T12:00:00Z")
            .unwrap()
            .to_utc()
    }

    fn alert_of(line: &str) -> AlertDraft {
        match parse_line(line.as_bytes(), now()).unwrap() {
            Parsed::Alert(draft) => *draft,
            other => panic!("not an alert: {other:?}"),
        }
    }

    #[test]
    fn a_full_alert_is_read_field_by_field() {
        let draft = alert_of(
            r#"{"id":"imd-1","message_id":"a@b.example","recipients":"X@Corp.example; y@corp.example",
               "sender":"Bad <bad@evil.example>","subject":"Invoice","time":"2026-12-01T10:00:00+01:00",
               "classification":"Phish","threats":[{"value":"https://Evil.example/x","type":"url"}],
               "extra":{"kept":true}}"#,
        );
        assert_eq!(draft.kind, AlertKind::Script);
        assert_eq!(draft.dedup_key, "id:imd-1");
        assert_eq!(draft.message_id.unwrap().as_str(), "a@b.example");
        assert_eq!(draft.recipients, ["x@corp.example", "y@corp.example"]);
        assert_eq!(draft.sender.as_deref(), Some("bad@evil.example"));
        assert_eq!(draft.time.to_rfc3339(), "2026-12-01T09:00:00+00:00");
        assert_eq!(draft.threats.len(), 1);
        assert_eq!(draft.threats[0].hostname.as_deref(), Some("evil.example"));
        assert_eq!(draft.threats[0].classification.as_deref(), Some("phish"));
        assert_eq!(draft.raw["extra"]["kept"], true);
        assert!(draft.notes.is_empty());
    }

    #[test]
    fn without_an_id_the_same_alert_in_another_key_order_has_the_same_key() {
        let a = alert_of(r#"{"message_id":"<m@x>","recipients":["a@b.zz"],"subject":"s"}"#);
        let b = alert_of(r#"{ "subject":"s", "recipients":["a@b.zz"], "message_id":"<m@x>" }"#);
        let c = alert_of(r#"{"message_id":"<m@x>","recipients":["c@b.zz"],"subject":"s"}"#);
        assert!(a.dedup_key.starts_with("sha256:"));
        assert_eq!(a.dedup_key, b.dedup_key);
        assert_ne!(a.dedup_key, c.dedup_key);
        assert_eq!(a.time, now());
        assert_eq!(a.notes.len(), 1);
    }

    #[test]
    fn checkpoints_are_read_and_must_stand_alone() {
        assert_eq!(
            parse_line(br#"{"checkpoint":"2026-12-04T10:00:00Z"}"#, now()).unwrap(),
            Parsed::Checkpoint("2026-12-04T10:00:00Z".into())
        );
        assert_eq!(
            parse_line(br#"{"checkpoint":{"page":3}}"#, now()).unwrap(),
            Parsed::Checkpoint(r#"{"page":3}"#.into())
        );
        let e = parse_line(br#"{"checkpoint":"x","id":"y"}"#, now()).unwrap_err();
        assert_eq!(e.field, "checkpoint");
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (r#"not json"#, "(line)"),
            (r#"[1,2]"#, "(line)"),
            (r#"{"recipients":["a@b.zz", 7]}"#, "recipients[1]"),
            (r#"{"recipients":["a@b.zz", "nobody"]}"#, "recipients[1]"),
            (r#"{"recipients":{}}"#, "recipients"),
            (r#"{"time":"yesterday"}"#, "time"),
            (r#"{"id":" "}"#, "id"),
            (r#"{"subject":12}"#, "subject"),
            (r#"{"threats":[{"value":1}]}"#, "threats[0].value"),
            (r#"{"message_id":"<>"}"#, "message_id"),
        ];
        for (line, field) in cases {
            let e = parse_line(line.as_bytes(), now()).unwrap_err();
            assert_eq!(e.field, field, "{line}: {e}");
        }
    }
}

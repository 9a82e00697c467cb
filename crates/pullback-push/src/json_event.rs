//! The Threat-Response-compatible JSON alert source: `POST /threat/json_event/events/<source>`
//! with one JSON object in the JSON alert source format 2.0, exactly as SOAR integrations
//! already send it. Each body becomes one alert draft.
//!
//! Every field of the format is checked for its type, and a wrong one refuses the body with
//! its path (`attacker.ip_address: expected a string, found a number`). Field names are
//! matched ignoring case. Unknown fields are kept in the draft's raw body and otherwise
//! ignored, so that a sender adding fields of its own is never refused.

use chrono::DateTime;
use pullback_domain::{
    AlertDraft, AlertKind, MessageId, Threat, ThreatKind, Timestamp, hostname_of,
};
use serde_json::{Map, Value};

use crate::shared::{address, content_key, parse_time, quoted, split_address_list, type_name};

/// The values `link_attribute` may take, as an error message lists them.
const LINK_ATTRIBUTES: [&str; 23] = [
    "attacker_ip_address",
    "attacker_host_name",
    "attacker_machine_name",
    "attacker_mac_address",
    "attacker_user",
    "attacker_url",
    "target_ip_address",
    "target_host_name",
    "target_machine_name",
    "target_mac_address",
    "target_user",
    "target_url",
    "email_sender",
    "email_recipient",
    "email_subject",
    "message_id",
    "threat_name",
    "threat_url",
    "threat_filename",
    "threat_filehash",
    "classification",
    "custom_fields.<name>",
    "not_linked",
];

/// A field of the body that is wrong: its path, such as `email.to[2]` (or `(body)` for the
/// body itself), and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct FieldError {
    /// The field's path from the top of the body: `link_attribute`, `attacker.ip_address`,
    /// `email.headers.Subject` (header names as sent), `email.to[2]`.
    pub field: String,
    /// What is wrong, such as `expected a string, found a number`.
    pub reason: String,
}

impl FieldError {
    fn new(field: impl Into<String>, reason: impl Into<String>) -> FieldError {
        FieldError {
            field: field.into(),
            reason: reason.into(),
        }
    }

    fn expected(field: impl Into<String>, what: &str, found: &Value) -> FieldError {
        FieldError::new(
            field,
            format!("expected {what}, found {}", type_name(found)),
        )
    }
}

/// Reads one event body into an alert draft; `now` is the alert's time when the body gives
/// none that can be read.
///
/// - Recipients are `email.to` and `email.cc`; without them the `To` and `Cc` headers, and
///   without those `target.user` when it is an e-mail address.
/// - The sender is `email.from`, else the `From` header; the subject is `email.subject`, else
///   the `Subject` header, else `summary`; the Message-ID is `email.message_id`, else the
///   `Message-ID` header.
/// - Threats: one for `threat_info` (its `url`, else `filehash`, `name` or `filename`) with
///   the event's `classification` in lower case, and one URL threat for each of `email.urls`.
/// - The time is `threat_info.occurred_at`, else `email.received_at`, `email.date` or the
///   `Date` header, else `now`; a time that cannot be read is noted and passed over. Times
///   are RFC 3339, RFC 2822, `YYYY-MM-DD HH:MM:SS` (UTC), or Unix seconds or milliseconds.
/// - The dedup key is `sha256:` and the hash of the body with its object keys sorted, so the
///   same body sent twice is one alert.
/// - `link_attribute` names the field whose value decides which alerts share an incident:
///   the draft's `link` becomes `<attribute>=<value in lower case>`, `not_linked` gives a link
///   of the event's own, and without it the link is `None` (Pullback's own grouping).
pub fn parse(body: &Value, now: Timestamp) -> Result<AlertDraft, FieldError> {
    let Value::Object(map) = body else {
        return Err(FieldError::expected("(body)", "a JSON object", body));
    };
    let event = Event::read(&Object::top(map))?;

    let mut notes = Vec::new();
    let occurred_at = read_time(event.threat.occurred_at.as_ref(), &mut notes);
    let time = event.time(occurred_at, now, &mut notes);
    let mut draft = AlertDraft {
        kind: AlertKind::JsonEvent,
        dedup_key: content_key(body),
        time,
        message_id: event.message_id(),
        subject: event.subject().map(str::to_owned),
        sender: event.sender(&mut notes),
        recipients: event.recipients(&mut notes),
        threats: event.threats(occurred_at),
        notes,
        link: None,
        analysis: None,
        raw: body.clone(),
    };
    draft.link = link(&event, &draft)?;
    Ok(draft)
}

/// One object of the body and its path, so that every error names the full path.
struct Object<'a> {
    path: String,
    map: &'a Map<String, Value>,
}

impl<'a> Object<'a> {
    fn top(map: &'a Map<String, Value>) -> Object<'a> {
        Object {
            path: String::new(),
            map,
        }
    }

    fn path_of(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// The value under `key`, matched ignoring case; null counts as absent.
    fn get(&self, key: &str) -> Option<&'a Value> {
        let value = match self.map.get(key) {
            Some(value) => value,
            None => {
                self.map
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(key))?
                    .1
            }
        };
        (!value.is_null()).then_some(value)
    }

    /// A string field, trimmed; an empty one counts as absent.
    fn text(&self, key: &str) -> Result<Option<&'a str>, FieldError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(text)) => Ok(Some(text.trim()).filter(|t| !t.is_empty())),
            Some(other) => Err(FieldError::expected(self.path_of(key), "a string", other)),
        }
    }

    /// A field that may be a string or a number, such as `port` or `severity`.
    fn text_or_number(&self, key: &str) -> Result<Option<&'a Value>, FieldError> {
        match self.get(key) {
            None => Ok(None),
            Some(value @ (Value::String(_) | Value::Number(_))) => Ok(Some(value)),
            Some(other) => Err(FieldError::expected(
                self.path_of(key),
                "a string or a number",
                other,
            )),
        }
    }

    fn object(&self, key: &str) -> Result<Option<Object<'a>>, FieldError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Object(map)) => Ok(Some(Object {
                path: self.path_of(key),
                map,
            })),
            Some(other) => Err(FieldError::expected(self.path_of(key), "an object", other)),
        }
    }

    fn array(&self, key: &str) -> Result<Option<&'a [Value]>, FieldError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(items)) => Ok(Some(items)),
            Some(other) => Err(FieldError::expected(self.path_of(key), "an array", other)),
        }
    }

    /// A time field: a string, or a number of Unix seconds or milliseconds.
    fn time(&self, key: &str) -> Result<Option<TimeField<'a>>, FieldError> {
        Ok(self.text_or_number(key)?.map(|value| TimeField {
            path: self.path_of(key),
            value,
        }))
    }

    /// A field holding addresses: a string listing them, or an array of such strings. Each
    /// must be an e-mail address.
    fn addresses(&self, key: &str) -> Result<Vec<String>, FieldError> {
        let path = self.path_of(key);
        let items = match self.get(key) {
            None => return Ok(Vec::new()),
            Some(Value::String(text)) => vec![(path, text)],
            Some(Value::Array(items)) => {
                let mut texts = Vec::with_capacity(items.len());
                for (index, item) in items.iter().enumerate() {
                    let item_path = format!("{path}[{index}]");
                    match item {
                        Value::String(text) => texts.push((item_path, text)),
                        other => return Err(FieldError::expected(item_path, "a string", other)),
                    }
                }
                texts
            }
            Some(other) => {
                return Err(FieldError::expected(
                    path,
                    "a string or an array of strings",
                    other,
                ));
            }
        };

        let mut addresses = Vec::new();
        for (path, text) in items {
            for entry in split_address_list(text) {
                let Some(found) = address(entry) else {
                    let reason = format!("not an e-mail address: {}", quoted(entry));
                    return Err(FieldError::new(path, reason));
                };
                addresses.push(found);
            }
        }
        Ok(addresses)
    }
}

/// A time field as sent, read once the alert's time is chosen.
struct TimeField<'a> {
    path: String,
    value: &'a Value,
}

/// The fields of a body that Pullback reads, checked for their types.
struct Event<'a> {
    attacker: Party<'a>,
    target: Party<'a>,
    /// Lower case.
    classification: Option<String>,
    summary: Option<&'a str>,
    email: Email<'a>,
    threat: ThreatInfo<'a>,
    custom_fields: Option<Object<'a>>,
    link_attribute: Option<&'a str>,
}

impl<'a> Event<'a> {
    fn read(top: &Object<'a>) -> Result<Event<'a>, FieldError> {
        check_version(top)?;
        top.text_or_number("severity")?;
        top.object("detector")?;
        let custom_fields = top.object("custom_fields")?;
        if let Some(fields) = &custom_fields {
            check_scalars(fields)?;
        }
        Ok(Event {
            attacker: Party::read(top, "attacker")?,
            target: Party::read(top, "target")?,
            classification: top.text("classification")?.map(str::to_lowercase),
            summary: top.text("summary")?,
            email: Email::read(top)?,
            threat: ThreatInfo::read(top)?,
            custom_fields,
            link_attribute: top.text("link_attribute")?,
        })
    }

    fn recipients(&self, notes: &mut Vec<String>) -> Vec<String> {
        if !self.email.recipients.is_empty() {
            return dedup(self.email.recipients.clone());
        }
        let from_headers = self.email.headers.recipients(notes);
        if !from_headers.is_empty() {
            notes.push(
                "no email.to or email.cc; the recipients are from the To and Cc headers".to_owned(),
            );
            return dedup(from_headers);
        }
        if let Some(user) = self.target.user.and_then(address) {
            notes.push("no email.to or email.cc; the recipient is target.user".to_owned());
            return vec![user];
        }
        notes.push(
            "no recipient: no email.to, email.cc, To or Cc header, and target.user is not an \
             e-mail address"
                .to_owned(),
        );
        Vec::new()
    }

    fn sender(&self, notes: &mut Vec<String>) -> Option<String> {
        if let Some(from) = self.email.from {
            match address(from) {
                Some(sender) => return Some(sender),
                None => notes.push(format!(
                    "email.from {} is not an e-mail address",
                    quoted(from)
                )),
            }
        }
        let from = self.email.headers.from?;
        split_address_list(from).into_iter().find_map(address)
    }

    fn subject(&self) -> Option<&'a str> {
        self.email
            .subject
            .or(self.email.headers.subject)
            .or(self.summary)
    }

    fn message_id(&self) -> Option<MessageId> {
        let from_email = self.email.message_id.and_then(MessageId::parse);
        from_email.or_else(|| self.email.headers.message_id.and_then(MessageId::parse))
    }

    /// When the threat occurred, else when the message arrived, else `now`.
    fn time(
        &self,
        occurred_at: Option<Timestamp>,
        now: Timestamp,
        notes: &mut Vec<String>,
    ) -> Timestamp {
        if let Some(time) = occurred_at {
            return time;
        }
        for field in &self.email.dates {
            if let Some(time) = read_time(Some(field), notes) {
                return time;
            }
        }
        notes.push(
            "no readable threat_info.occurred_at or e-mail date; the alert's time is when the \
             event arrived"
                .to_owned(),
        );
        now
    }

    fn threats(&self, occurred_at: Option<Timestamp>) -> Vec<Threat> {
        let info = &self.threat;
        let (kind, value) = if let Some(url) = info.url {
            (Some(ThreatKind::Url), Some(url))
        } else if let Some(hash) = info.filehash {
            (Some(ThreatKind::Attachment), Some(hash))
        } else if let Some(name) = info.name {
            (info.threat_type.map(ThreatKind::from_feed), Some(name))
        } else if let Some(filename) = info.filename {
            (Some(ThreatKind::Attachment), Some(filename))
        } else {
            (info.threat_type.map(ThreatKind::from_feed), None)
        };

        let mut threats = Vec::new();
        if value.is_some() || kind.is_some() || self.classification.is_some() {
            threats.push(Threat {
                kind,
                value: value.map(str::to_owned),
                hostname: info.url.and_then(hostname_of),
                sha256: info
                    .filehash
                    .filter(|h| is_sha256(h))
                    .map(str::to_ascii_lowercase),
                classification: self.classification.clone(),
                time: occurred_at,
                ..Threat::default()
            });
        }
        for url in &self.email.urls {
            if Some(*url) != info.url {
                threats.push(Threat {
                    kind: Some(ThreatKind::Url),
                    value: Some((*url).to_owned()),
                    hostname: hostname_of(url),
                    classification: self.classification.clone(),
                    ..Threat::default()
                });
            }
        }
        threats
    }

    /// The value of a custom field as text; `None` when absent or empty.
    fn custom_field(&self, name: &str) -> Option<String> {
        let value = self.custom_fields.as_ref()?.get(name)?;
        let text = match value {
            Value::String(text) => text.trim().to_owned(),
            other => other.to_string(),
        };
        (!text.is_empty()).then_some(text)
    }
}

fn check_version(top: &Object) -> Result<(), FieldError> {
    match top.get("json_version") {
        None => Ok(()),
        Some(Value::String(version)) if version.trim() == "2.0" => Ok(()),
        Some(Value::Number(version)) if version.as_f64() == Some(2.0) => Ok(()),
        Some(other) => Err(FieldError::new(
            "json_version",
            format!("version {other} is not supported; this source reads version 2.0"),
        )),
    }
}

/// Custom fields hold strings, numbers and booleans only.
fn check_scalars(fields: &Object) -> Result<(), FieldError> {
    for (key, value) in fields.map {
        if matches!(value, Value::Array(_) | Value::Object(_)) {
            let what = "a string, a number or a boolean";
            return Err(FieldError::expected(fields.path_of(key), what, value));
        }
    }
    Ok(())
}

/// `attacker` or `target`: the two ends of what the detector saw.
#[derive(Default)]
struct Party<'a> {
    ip_address: Option<&'a str>,
    host_name: Option<&'a str>,
    machine_name: Option<&'a str>,
    mac_address: Option<&'a str>,
    url: Option<&'a str>,
    user: Option<&'a str>,
}

impl<'a> Party<'a> {
    fn read(top: &Object<'a>, key: &str) -> Result<Party<'a>, FieldError> {
        let Some(party) = top.object(key)? else {
            return Ok(Party::default());
        };
        party.text_or_number("port")?;
        Ok(Party {
            ip_address: party.text("ip_address")?,
            host_name: party.text("host_name")?,
            machine_name: party.text("machine_name")?,
            mac_address: party.text("mac_address")?,
            url: party.text("url")?,
            user: party.text("user")?,
        })
    }

    /// For the part of a link attribute after `attacker_` or `target_`: the field's own name
    /// and its value. `None` when there is no such field.
    fn field(&self, name: &str) -> Option<(&'static str, Option<&'a str>)> {
        Some(match name {
            "ip_address" => ("ip_address", self.ip_address),
            "host_name" | "hostname" => ("host_name", self.host_name),
            "machine_name" => ("machine_name", self.machine_name),
            "mac_address" => ("mac_address", self.mac_address),
            "url" => ("url", self.url),
            "user" => ("user", self.user),
            _ => return None,
        })
    }
}

/// The message the event is about.
#[derive(Default)]
struct Email<'a> {
    from: Option<&'a str>,
    /// `to` then `cc`, each an e-mail address.
    recipients: Vec<String>,
    subject: Option<&'a str>,
    message_id: Option<&'a str>,
    urls: Vec<&'a str>,
    /// `received_at`, `date` and the `Date` header, in the order they are tried.
    dates: Vec<TimeField<'a>>,
    headers: Headers<'a>,
}

impl<'a> Email<'a> {
    fn read(top: &Object<'a>) -> Result<Email<'a>, FieldError> {
        let Some(email) = top.object("email")? else {
            return Ok(Email::default());
        };
        email.text("body")?;
        email.text("body_type")?;
        email.array("attachments")?;
        let headers = match email.object("headers")? {
            Some(headers) => Some(headers),
            None => email.object("header")?,
        };
        let mut headers = Headers::read(headers.as_ref())?;

        let mut recipients = email.addresses("to")?;
        recipients.extend(email.addresses("cc")?);
        let dates = [
            email.time("received_at")?,
            email.time("date")?,
            headers.date.take(),
        ];
        let dates = dates.into_iter().flatten().collect();
        Ok(Email {
            from: email.text("from")?,
            recipients,
            subject: email.text("subject")?,
            message_id: email.text("message_id")?,
            urls: urls(&email)?,
            dates,
            headers,
        })
    }
}

fn urls<'a>(email: &Object<'a>) -> Result<Vec<&'a str>, FieldError> {
    let Some(items) = email.array("urls")? else {
        return Ok(Vec::new());
    };
    let mut urls = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        match item {
            Value::String(url) if url.trim().is_empty() => {}
            Value::String(url) => urls.push(url.trim()),
            other => {
                let path = format!("{}[{index}]", email.path_of("urls"));
                return Err(FieldError::expected(path, "a string", other));
            }
        }
    }
    Ok(urls)
}

/// The headers of the message that Pullback reads, from `email.headers` (or `email.header`).
/// Names are matched ignoring case and punctuation; a header sent as an array of strings (one
/// per occurrence) is read from its first.
#[derive(Default)]
struct Headers<'a> {
    from: Option<&'a str>,
    to: Vec<(String, &'a str)>,
    subject: Option<&'a str>,
    message_id: Option<&'a str>,
    /// Moved to [`Email::dates`] once read.
    date: Option<TimeField<'a>>,
}

impl<'a> Headers<'a> {
    fn read(headers: Option<&Object<'a>>) -> Result<Headers<'a>, FieldError> {
        let mut read = Headers::default();
        let Some(headers) = headers else {
            return Ok(read);
        };
        for (name, value) in headers.map {
            let squashed: String = name
                .chars()
                .filter(|c| c.is_alphanumeric())
                .flat_map(char::to_lowercase)
                .collect();
            let path = headers.path_of(name);
            match squashed.as_str() {
                "from" => read.from = header_values(&path, value)?.first().copied(),
                "to" | "cc" => {
                    let values = header_values(&path, value)?;
                    read.to
                        .extend(values.into_iter().map(|v| (path.clone(), v)));
                }
                "subject" => read.subject = header_values(&path, value)?.first().copied(),
                "messageid" => read.message_id = header_values(&path, value)?.first().copied(),
                "date" => {
                    header_values(&path, value)?;
                    let first = match value {
                        Value::Array(items) => items.first(),
                        single => Some(single),
                    };
                    let first = first.filter(|value| !value.is_null());
                    read.date = first.map(|value| TimeField { path, value });
                }
                _ => {}
            }
        }
        Ok(read)
    }

    /// The addresses of the To and Cc headers. Headers often hold what is not an address
    /// (`undisclosed-recipients:;`), so such an entry is noted and passed over.
    fn recipients(&self, notes: &mut Vec<String>) -> Vec<String> {
        let mut recipients = Vec::new();
        for (path, text) in &self.to {
            for entry in split_address_list(text) {
                match address(entry) {
                    Some(found) => recipients.push(found),
                    None => notes.push(format!(
                        "{path}: {} is not an e-mail address, passed over",
                        quoted(entry)
                    )),
                }
            }
        }
        recipients
    }
}

/// A header's values: a string, or an array of strings. Empty values are left out.
fn header_values<'a>(path: &str, value: &'a Value) -> Result<Vec<&'a str>, FieldError> {
    let texts = match value {
        Value::Null => Vec::new(),
        Value::String(text) => vec![text.as_str()],
        Value::Array(items) => {
            let mut texts = Vec::with_capacity(items.len());
            for (index, item) in items.iter().enumerate() {
                match item {
                    Value::String(text) => texts.push(text.as_str()),
                    other => {
                        let path = format!("{path}[{index}]");
                        return Err(FieldError::expected(path, "a string", other));
                    }
                }
            }
            texts
        }
        other => {
            let what = "a string or an array of strings";
            return Err(FieldError::expected(path, what, other));
        }
    };
    Ok(texts
        .into_iter()
        .map(str::trim)
        .filter(|text| !text.is_empty())
        .collect())
}

/// `threat_info`: what the detector found.
#[derive(Default)]
struct ThreatInfo<'a> {
    name: Option<&'a str>,
    url: Option<&'a str>,
    filename: Option<&'a str>,
    filehash: Option<&'a str>,
    threat_type: Option<&'a str>,
    occurred_at: Option<TimeField<'a>>,
}

impl<'a> ThreatInfo<'a> {
    fn read(top: &Object<'a>) -> Result<ThreatInfo<'a>, FieldError> {
        let Some(info) = top.object("threat_info")? else {
            return Ok(ThreatInfo::default());
        };
        Ok(ThreatInfo {
            name: info.text("name")?,
            url: info.text("url")?,
            filename: info.text("filename")?,
            filehash: info.text("filehash")?,
            threat_type: info.text("threat_type")?,
            occurred_at: info.time("occurred_at")?,
        })
    }
}

/// Reads a time field; one that cannot be read is noted and gives `None`.
fn read_time(field: Option<&TimeField>, notes: &mut Vec<String>) -> Option<Timestamp> {
    let field = field?;
    let time = match field.value {
        Value::String(text) => parse_time(text),
        Value::Number(number) => number.as_f64().and_then(unix_time),
        _ => None,
    };
    if time.is_none() {
        notes.push(format!(
            "{} {} could not be read as a time",
            field.path, field.value
        ));
    }
    time
}

/// Unix seconds, or milliseconds when the number is too large to be seconds of this era.
fn unix_time(number: f64) -> Option<Timestamp> {
    const MILLISECONDS_FROM: f64 = 100_000_000_000.0;
    let millis = if number.abs() >= MILLISECONDS_FROM {
        number
    } else {
        number * 1000.0
    };
    DateTime::from_timestamp_millis(millis.round() as i64)
}

/// The draft's incident link, from `link_attribute`.
fn link(event: &Event, draft: &AlertDraft) -> Result<Option<String>, FieldError> {
    let Some(requested) = event.link_attribute else {
        return Ok(None);
    };
    let name = requested.to_lowercase();
    if name == "not_linked" {
        return Ok(Some(format!("event={}", draft.dedup_key)));
    }
    let Some((attribute, source, value)) = linked_value(&name, event, draft) else {
        let reason = format!(
            "unknown value {}; expected one of {}",
            quoted(requested),
            LINK_ATTRIBUTES.join(", ")
        );
        return Err(FieldError::new("link_attribute", reason));
    };
    let value = value
        .map(|value| value.trim().to_lowercase())
        .filter(|value| !value.is_empty());
    let Some(value) = value else {
        let reason = format!(
            "{} links on {source}, which is absent or empty",
            quoted(requested)
        );
        return Err(FieldError::new("link_attribute", reason));
    };
    Ok(Some(format!("{attribute}={value}")))
}

/// For a link attribute in lower case: its canonical name, the field it reads, and that
/// field's value. `None` for an attribute that does not exist.
fn linked_value(
    name: &str,
    event: &Event,
    draft: &AlertDraft,
) -> Option<(String, String, Option<String>)> {
    if let Some(field) = name.strip_prefix("custom_fields.") {
        let attribute = format!("custom_fields.{field}");
        return (!field.is_empty())
            .then(|| (attribute.clone(), attribute, event.custom_field(field)));
    }
    for (party_name, party) in [("attacker", &event.attacker), ("target", &event.target)] {
        if let Some(rest) = name
            .strip_prefix(party_name)
            .and_then(|r| r.strip_prefix('_'))
        {
            let (field, value) = party.field(rest)?;
            return Some((
                format!("{party_name}_{field}"),
                format!("{party_name}.{field}"),
                value.map(str::to_owned),
            ));
        }
    }

    let owned = |value: Option<&str>| value.map(str::to_owned);
    let (source, value) = match name {
        "email_sender" => ("email.from", draft.sender.clone()),
        "email_recipient" => ("email.to", recipient_list(&draft.recipients)),
        "email_subject" => (
            "email.subject",
            owned(event.email.subject.or(event.email.headers.subject)),
        ),
        "message_id" => (
            "email.message_id",
            owned(draft.message_id.as_ref().map(MessageId::as_str)),
        ),
        "threat_name" => ("threat_info.name", owned(event.threat.name)),
        "threat_url" => ("threat_info.url", owned(event.threat.url)),
        "threat_filename" => ("threat_info.filename", owned(event.threat.filename)),
        "threat_filehash" => ("threat_info.filehash", owned(event.threat.filehash)),
        "classification" => ("classification", event.classification.clone()),
        _ => return None,
    };
    Some((name.to_owned(), source.to_owned(), value))
}

/// All recipients, sorted and comma separated, so that the same set links the same way
/// whatever order the sender listed it in.
fn recipient_list(recipients: &[String]) -> Option<String> {
    let mut sorted = recipients.to_vec();
    sorted.sort();
    (!sorted.is_empty()).then(|| sorted.join(","))
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

fn is_sha256(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests;

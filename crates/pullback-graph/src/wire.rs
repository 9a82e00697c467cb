//! The JSON Graph sends and expects, only the fields Pullback uses, and the OData spelling
//! rules a request must follow (quoted literals, percent-encoded query strings).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// The extended property where a quarantine records where each copy came from, so that a
/// restore puts it back there. Named in Pullback's own property set; invisible to users.
pub const ORIGIN_PROPERTY: &str =
    "String {4f1d2b8e-6c3a-4e57-9b1a-2d7c8e5f0a93} Name PullbackOrigin";

/// The properties of a message a lookup asks for.
pub const MESSAGE_FIELDS: &str = "id,parentFolderId,internetMessageId,subject,from,sender,isRead";

/// A page of a collection.
#[derive(Debug, Deserialize)]
pub struct Page<T> {
    pub value: Vec<T>,
    #[serde(rename = "@odata.nextLink", default)]
    pub next_link: Option<String>,
}

/// A message, as far as finding and moving it goes.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    pub id: String,
    #[serde(default)]
    pub parent_folder_id: Option<String>,
    #[serde(default)]
    pub internet_message_id: Option<String>,
    #[serde(default)]
    pub subject: Option<String>,
    #[serde(default)]
    pub from: Option<Recipient>,
    #[serde(default)]
    pub sender: Option<Recipient>,
    #[serde(default)]
    pub is_read: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub single_value_extended_properties: Option<Vec<ExtendedProperty>>,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Recipient {
    pub email_address: EmailAddress,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct EmailAddress {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub address: Option<String>,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct ExtendedProperty {
    pub id: String,
    pub value: String,
}

/// A mail folder.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MailFolder {
    pub id: String,
    #[serde(default)]
    pub display_name: String,
}

/// What a quarantine or soft delete records on each copy it moves.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct Origin {
    /// The folder the copy was in.
    pub from: String,
    /// The folder it was moved to, by id or well-known name.
    pub to: String,
}

impl Message {
    /// The origin a quarantine recorded on this copy, if any.
    pub fn origin(&self) -> Option<Origin> {
        self.single_value_extended_properties
            .as_ref()?
            .iter()
            .find(|p| p.id.eq_ignore_ascii_case(ORIGIN_PROPERTY))
            .and_then(|p| serde_json::from_str(&p.value).ok())
    }
}

/// Graph's error body: `{"error": {"code": ..., "message": ...}}`.
#[derive(Debug, Default, Deserialize)]
pub struct ErrorBody {
    #[serde(default)]
    pub error: ErrorDetail,
}

#[derive(Debug, Default, Deserialize)]
pub struct ErrorDetail {
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub message: String,
}

/// One request inside a `$batch`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct BatchItem {
    pub id: String,
    pub method: String,
    /// Relative to the version root: `/users/...`.
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<BTreeMap<String, String>>,
    #[serde(rename = "dependsOn", default, skip_serializing_if = "Option::is_none")]
    pub depends_on: Option<Vec<String>>,
}

impl BatchItem {
    pub fn get(id: impl Into<String>, url: impl Into<String>) -> BatchItem {
        BatchItem {
            id: id.into(),
            method: "GET".into(),
            url: url.into(),
            body: None,
            headers: None,
            depends_on: None,
        }
    }

    /// A request with a JSON body (Graph refuses a body without its content type).
    pub fn with_json(
        id: impl Into<String>,
        method: &str,
        url: impl Into<String>,
        body: Value,
    ) -> BatchItem {
        let headers = BTreeMap::from([("Content-Type".to_owned(), "application/json".to_owned())]);
        BatchItem {
            id: id.into(),
            method: method.into(),
            url: url.into(),
            body: Some(body),
            headers: Some(headers),
            depends_on: None,
        }
    }

    pub fn after(mut self, id: &str) -> BatchItem {
        self.depends_on = Some(vec![id.to_owned()]);
        self
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct BatchRequest {
    pub requests: Vec<BatchItem>,
}

#[derive(Debug, Deserialize, Serialize)]
pub struct BatchResponse {
    pub responses: Vec<BatchReply>,
}

/// One answer inside a `$batch` response.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct BatchReply {
    pub id: String,
    pub status: u16,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub body: Option<Value>,
}

/// An OData string literal: single quotes, with a quote inside doubled.
pub fn quoted(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// Percent-encodes everything but RFC 3986's unreserved characters, so that `+`, `&`, `#`,
/// `%` and spaces in a Message-ID or a folder name survive the trip.
pub fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// A path with a query string of `(name, value)` pairs, values encoded.
pub fn with_query(path: &str, query: &[(&str, &str)]) -> String {
    let pairs: Vec<String> = query
        .iter()
        .map(|(name, value)| format!("{name}={}", encode(value)))
        .collect();
    format!("{path}?{}", pairs.join("&"))
}

/// An id (a message's, a folder's) as one path segment. Graph's ids are URL-safe base64 and
/// pass unchanged; anything else is percent-encoded rather than allowed to split the path.
pub fn segment(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for byte in id.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~' | b'=') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// `/users/<mailbox>`, the mailbox encoded as a path segment.
pub fn user_path(mailbox: &str) -> String {
    let mut out = String::from("/users/");
    for byte in mailbox.trim().bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~' | b'@') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_are_quoted_and_queries_encoded() {
        assert_eq!(quoted("<o'brien@x>"), "'<o''brien@x>'");
        assert_eq!(encode("a+b c&d#e%"), "a%2Bb%20c%26d%23e%25");
        assert_eq!(
            with_query(
                "/users/a@x/messages",
                &[("$top", "10"), ("$filter", "x eq 'y'")]
            ),
            "/users/a@x/messages?$top=10&$filter=x%20eq%20%27y%27"
        );
        assert_eq!(user_path("a b@x.example"), "/users/a%20b@x.example");
    }

    #[test]
    fn reads_the_origin_of_a_copy() {
        let json = serde_json::json!({
            "id": "AAMk1",
            "singleValueExtendedProperties": [
                {"id": ORIGIN_PROPERTY, "value": "{\"from\":\"inbox-id\",\"to\":\"q-id\"}"}
            ]
        });
        let message: Message = serde_json::from_value(json).expect("a message");
        let origin = message.origin().expect("an origin");
        assert_eq!(
            (origin.from.as_str(), origin.to.as_str()),
            ("inbox-id", "q-id")
        );
    }
}

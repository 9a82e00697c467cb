//! What both readers need: address lists, times in the spellings pushers use, JSON type names
//! for error messages, and the hash that keys an event by its content.

use chrono::{DateTime, NaiveDateTime};
use pullback_domain::{Timestamp, normalise_address};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Splits a list of addresses on `,` and `;`, except inside double quotes or angle brackets,
/// so `"Doe, Jane" <jane@example.zz>; bob@example.zz` gives two entries. Entries come back
/// trimmed; empty ones (from `a@x.zz;;b@x.zz` or a trailing `;`) are left out.
pub(crate) fn split_address_list(text: &str) -> Vec<&str> {
    let mut entries = Vec::new();
    let mut quoted = false;
    let mut bracketed = false;
    let mut start = 0;
    for (at, c) in text.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '<' if !quoted => bracketed = true,
            '>' if !quoted => bracketed = false,
            ',' | ';' if !quoted && !bracketed => {
                entries.push(&text[start..at]);
                start = at + 1;
            }
            _ => {}
        }
    }
    entries.push(&text[start..]);
    entries
        .into_iter()
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .collect()
}

/// Normalises one address (`"Jane" <Jane@Example.ZZ>` gives `jane@example.zz`) and checks that
/// what is left has the shape `local@domain`; `None` when it does not.
pub(crate) fn address(raw: &str) -> Option<String> {
    let address = normalise_address(raw)?;
    let (local, domain) = address.rsplit_once('@')?;
    let forbidden = |c: char| c.is_whitespace() || c.is_control() || "<>,;\"".contains(c);
    let plausible = !local.is_empty()
        && !domain.is_empty()
        && !domain.contains('@')
        && !address.contains(forbidden);
    plausible.then_some(address)
}

/// Reads a time in one of the spellings pushers use: RFC 3339 (`2024-05-01T09:30:00Z`, with
/// any offset), `2024-05-01 09:30:00` or `2024-05-01T09:30:00` without a zone (taken as UTC,
/// fractions of a second allowed), or RFC 2822 (`Wed, 01 May 2024 09:30:00 +0200`).
pub(crate) fn parse_time(text: &str) -> Option<Timestamp> {
    let text = text.trim();
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Some(time.to_utc());
    }
    for format in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
        if let Ok(time) = NaiveDateTime::parse_from_str(text, format) {
            return Some(time.and_utc());
        }
    }
    DateTime::parse_from_rfc2822(text)
        .ok()
        .map(|time| time.to_utc())
}

/// The JSON type of a value as an error message says it: "found a number".
pub(crate) fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A value as an error message quotes it: in double quotes, escaped, and cut short after 80
/// characters so that a huge field cannot make a huge message.
pub(crate) fn quoted(text: &str) -> String {
    const SHOWN: usize = 80;
    match text.char_indices().nth(SHOWN) {
        Some((at, _)) => format!("{:?}...", &text[..at]),
        None => format!("{text:?}"),
    }
}

/// `sha256:` and the hex SHA-256 of the value's canonical JSON: compact, with the keys of
/// every object sorted. The same event sent twice gets the same key whatever order its
/// fields arrived in.
pub(crate) fn content_key(value: &Value) -> String {
    let mut hasher = Sha256::new();
    hash_canonical(value, &mut hasher);
    format!("sha256:{}", hex::encode(hasher.finalize()))
}

fn hash_canonical(value: &Value, hasher: &mut Sha256) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by_key(|(key, _)| *key);
            hasher.update(b"{");
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    hasher.update(b",");
                }
                hasher.update(Value::from(key.as_str()).to_string());
                hasher.update(b":");
                hash_canonical(item, hasher);
            }
            hasher.update(b"}");
        }
        Value::Array(items) => {
            hasher.update(b"[");
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    hasher.update(b",");
                }
                hash_canonical(item, hasher);
            }
            hasher.update(b"]");
        }
        scalar => hasher.update(scalar.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn address_lists_split_outside_quotes_and_brackets() {
        let cases: [(&str, &[&str]); 6] = [
            ("a@x.zz", &["a@x.zz"]),
            (" a@x.zz , b@x.zz;c@x.zz ", &["a@x.zz", "b@x.zz", "c@x.zz"]),
            ("a@x.zz;;b@x.zz;", &["a@x.zz", "b@x.zz"]),
            (
                "\"Doe, Jane\" <jane@x.zz>; bob@x.zz",
                &["\"Doe, Jane\" <jane@x.zz>", "bob@x.zz"],
            ),
            ("<odd,one@x.zz>, b@x.zz", &["<odd,one@x.zz>", "b@x.zz"]),
            (" ; , ", &[]),
        ];
        for (text, expected) in cases {
            assert_eq!(split_address_list(text), expected, "{text:?}");
        }
    }

    #[test]
    fn addresses_must_have_a_local_part_and_a_domain() {
        let cases = [
            ("Jane.Doe@Example.ZZ", Some("jane.doe@example.zz")),
            ("\"Jane\" <jane@x.zz>", Some("jane@x.zz")),
            ("user+tag@sub.x.zz", Some("user+tag@sub.x.zz")),
            ("jane", None),
            ("@x.zz", None),
            ("jane@", None),
            ("jane doe@x.zz", None),
            ("<>", None),
            ("", None),
        ];
        for (raw, expected) in cases {
            assert_eq!(address(raw).as_deref(), expected, "{raw:?}");
        }
    }

    #[test]
    fn times_are_read_in_the_spellings_pushers_use() {
        let cases = [
            ("2024-05-01T09:30:00Z", "2024-05-01T09:30:00+00:00"),
            ("2024-05-01T11:30:00+02:00", "2024-05-01T09:30:00+00:00"),
            ("2024-05-01 09:30:00Z", "2024-05-01T09:30:00+00:00"),
            ("2024-05-01 09:30:00", "2024-05-01T09:30:00+00:00"),
            (" 2024-05-01T09:30:00 ", "2024-05-01T09:30:00+00:00"),
            ("2024-05-01 09:30:00.250", "2024-05-01T09:30:00.250+00:00"),
            (
                "Wed, 01 May 2024 11:30:00 +0200",
                "2024-05-01T09:30:00+00:00",
            ),
            ("1 May 2024 09:30:00 GMT", "2024-05-01T09:30:00+00:00"),
        ];
        for (text, expected) in cases {
            let time = parse_time(text).map(|t| t.to_rfc3339());
            assert_eq!(time.as_deref(), Some(expected), "{text:?}");
        }
        for text in ["yesterday", "2024-05-01", "01/05/2024 09:30", ""] {
            assert_eq!(parse_time(text), None, "{text:?}");
        }
    }

    #[test]
    fn long_values_are_quoted_short() {
        assert_eq!(quoted("a\"b"), "\"a\\\"b\"");
        let long = "é".repeat(100);
        assert_eq!(quoted(&long), format!("{:?}...", "é".repeat(80)));
    }

    #[test]
    fn content_keys_ignore_key_order_but_not_values() {
        let a = content_key(&json!({"b": 1, "a": [{"y": null, "x": "é"}], "c": true}));
        let b = content_key(&json!({"c": true, "a": [{"x": "é", "y": null}], "b": 1}));
        assert_eq!(a, b);
        assert!(a.starts_with("sha256:") && a.len() == 7 + 64, "{a}");

        let reordered_list = content_key(&json!({"b": 1, "a": [{"y": null}, {"x": "é"}]}));
        assert_ne!(a, reordered_list);
        assert_ne!(
            content_key(&json!({"a": 1})),
            content_key(&json!({"a": "1"}))
        );
    }
}

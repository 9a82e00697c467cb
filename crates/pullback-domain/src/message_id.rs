//! Message-ID normalisation.
//!
//! Threat feeds give Message-IDs with or without angle brackets, with stray whitespace, and
//! sometimes empty. Mail servers compare them byte for byte. One normal form avoids both
//! kinds of miss: the id without brackets and without surrounding whitespace.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A Message-ID in normal form: no angle brackets, no surrounding whitespace, never empty.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MessageId(String);

impl MessageId {
    /// Normalises a raw header or feed value; `None` when nothing usable is left.
    pub fn parse(raw: &str) -> Option<MessageId> {
        let mut s = raw.trim();
        // Header values can be folded or carry a comment after the id.
        if let Some(start) = s.find('<') {
            let rest = &s[start + 1..];
            s = match rest.find('>') {
                Some(end) => &rest[..end],
                None => rest,
            };
        }
        let s = s.trim().trim_end_matches('>').trim();
        if s.is_empty() {
            None
        } else {
            Some(MessageId(s.to_owned()))
        }
    }

    /// The id without brackets, as stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id as it appears in a header: `<id>`.
    pub fn bracketed(&self) -> String {
        format!("<{}>", self.0)
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{}>", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::MessageId;

    fn check(raw: &str, expected: Option<&str>) {
        assert_eq!(
            MessageId::parse(raw).as_ref().map(MessageId::as_str),
            expected,
            "{raw:?}"
        );
    }

    #[test]
    fn normalises_brackets_and_whitespace() {
        check("<a@b>", Some("a@b"));
        check("a@b", Some("a@b"));
        check("  <a@b>  ", Some("a@b"));
        check("\r\n <a@b> (comment)", Some("a@b"));
        check("<$-odd+chars%@x.example>", Some("$-odd+chars%@x.example"));
        check("<a@b", Some("a@b"));
        check("a@b>", Some("a@b"));
        check("", None);
        check("<>", None);
        check("   ", None);
    }
}

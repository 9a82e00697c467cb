//! The few headers that identify a message (Message-ID, Subject, From, Sender, Return-Path),
//! read from a header block, and the fingerprint check that tells apart two messages sharing
//! one Message-ID.

use base64::Engine as _;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use pullback_domain::{MessageFingerprint, MessageId, normalise_address};
use std::io::{self, BufRead};

/// How much of a message is read looking for the end of its header block. Real header blocks
/// are a few kilobytes; the limit keeps a message that is one 600 KB line from being read
/// whole.
pub const MAX_HEADER_BYTES: u64 = 256 * 1024;

/// The identifying headers of one message, unfolded, as they appear in it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MessageHeaders {
    pub message_id: Option<MessageId>,
    /// The raw Subject, which may hold RFC 2047 encoded-words.
    pub subject: Option<String>,
    pub from: Option<String>,
    pub sender: Option<String>,
    pub return_path: Option<String>,
}

impl MessageHeaders {
    /// Parses a header block; stops at the first empty line, ignores lines that are not headers
    /// (such as an mbox `From ` line) and keeps the first occurrence of each field.
    pub fn parse(block: &[u8]) -> MessageHeaders {
        let mut headers = MessageHeaders::default();
        let mut current: Option<(String, Vec<u8>)> = None;
        for line in block.split(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.first().is_some_and(|b| *b == b' ' || *b == b'\t') {
                if let Some((_, value)) = current.as_mut() {
                    value.extend_from_slice(line);
                }
                continue;
            }
            if let Some((name, value)) = current.take() {
                headers.keep(&name, &value);
            }
            if line.is_empty() {
                break;
            }
            current = split_field(line).map(|(name, value)| (name, value.to_vec()));
        }
        if let Some((name, value)) = current {
            headers.keep(&name, &value);
        }
        headers
    }

    /// Reads and parses the header block at the start of `reader`, reading at most
    /// [`MAX_HEADER_BYTES`].
    pub fn read_from(reader: impl BufRead) -> io::Result<MessageHeaders> {
        let mut limited = reader.take(MAX_HEADER_BYTES);
        let mut block = Vec::new();
        loop {
            let start = block.len();
            if limited.read_until(b'\n', &mut block)? == 0 {
                break;
            }
            let line = &block[start..];
            if line == b"\n" || line == b"\r\n" {
                break;
            }
        }
        Ok(MessageHeaders::parse(&block))
    }

    /// True when the message agrees with every part of the fingerprint that is set.
    ///
    /// Subjects are compared after decoding RFC 2047 encoded-words (UTF-8, US-ASCII and the
    /// Latin-1 family; other charsets stay encoded and are compared as they are), trimming,
    /// collapsing whitespace and ignoring case. The sender is an address; it matches the
    /// address of From, Sender or Return-Path, so either the header From or the envelope
    /// sender of a feed identifies the message.
    pub fn matches(&self, fingerprint: &MessageFingerprint) -> bool {
        if let Some(wanted) = fingerprint.subject.as_deref().map(normalise_text)
            && !wanted.is_empty()
            && self.subject.as_deref().map(normalise_text) != Some(wanted)
        {
            return false;
        }
        if let Some(wanted) = fingerprint.sender.as_deref().and_then(sender_key) {
            let candidates = [&self.from, &self.sender, &self.return_path];
            let found = candidates
                .iter()
                .filter_map(|h| h.as_deref())
                .any(|h| sender_key(h).as_ref() == Some(&wanted));
            if !found {
                return false;
            }
        }
        true
    }

    fn keep(&mut self, name: &str, raw: &[u8]) {
        let value = text_of(raw);
        let slot = match name {
            "message-id" => {
                if self.message_id.is_none() {
                    self.message_id = MessageId::parse(&value);
                }
                return;
            }
            "subject" => &mut self.subject,
            "from" => &mut self.from,
            "sender" => &mut self.sender,
            "return-path" => &mut self.return_path,
            _ => return,
        };
        if slot.is_none() {
            *slot = Some(value.trim().to_owned());
        }
    }
}

/// Splits `Name: value` into the lower-case name and the value; `None` for a line that is not
/// a header field.
fn split_field(line: &[u8]) -> Option<(String, &[u8])> {
    let colon = line.iter().position(|&b| b == b':')?;
    let name = &line[..colon];
    let valid = !name.is_empty() && name.iter().all(|b| b.is_ascii_graphic() && *b != b':');
    valid.then(|| {
        (
            String::from_utf8_lossy(name).to_ascii_lowercase(),
            &line[colon + 1..],
        )
    })
}

/// Header bytes as text: UTF-8 when they are, else Latin-1, which maps every byte.
fn text_of(raw: &[u8]) -> String {
    match std::str::from_utf8(raw) {
        Ok(s) => s.to_owned(),
        Err(_) => latin1(raw),
    }
}

fn latin1(raw: &[u8]) -> String {
    raw.iter().map(|&b| char::from(b)).collect()
}

/// The comparable form of a header text: encoded-words decoded, whitespace collapsed, lower
/// case.
pub fn normalise_text(raw: &str) -> String {
    let decoded = decode_encoded_words(raw);
    decoded
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// The comparable form of a sender: the lower-case address, or `None` when there is none.
fn sender_key(raw: &str) -> Option<String> {
    normalise_address(&decode_encoded_words(raw))
}

/// Decodes RFC 2047 encoded-words (`=?charset?B|Q?text?=`) in a header value. Words in a
/// charset this function does not know are left as they are, and so is anything malformed.
pub fn decode_encoded_words(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    let mut after_word = false;
    while let Some(start) = rest.find("=?") {
        let (before, candidate) = rest.split_at(start);
        match decode_word(candidate) {
            Some((text, used)) => {
                // Whitespace between two adjacent encoded-words is not part of the text.
                if !(after_word && before.trim().is_empty()) {
                    out.push_str(before);
                }
                out.push_str(&text);
                rest = &candidate[used..];
                after_word = true;
            }
            None => {
                out.push_str(before);
                out.push_str("=?");
                rest = &candidate[2..];
                after_word = false;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Decodes one encoded-word at the start of `s`; returns the text and the bytes it used.
fn decode_word(s: &str) -> Option<(String, usize)> {
    let body = s.strip_prefix("=?")?;
    let (charset, body) = body.split_once('?')?;
    let (encoding, body) = body.split_once('?')?;
    let end = body.find("?=")?;
    let text = &body[..end];
    if text.contains(char::is_whitespace) || charset.is_empty() {
        return None;
    }
    let bytes = match encoding {
        "B" | "b" => lenient_base64().decode(text).ok()?,
        "Q" | "q" => decode_q(text)?,
        _ => return None,
    };
    let charset = charset
        .split('*')
        .next()
        .unwrap_or(charset)
        .to_ascii_lowercase();
    let decoded = match charset.as_str() {
        "utf-8" | "utf8" | "us-ascii" | "ascii" => String::from_utf8(bytes).ok()?,
        // FIXME: Windows-1252 differs from Latin-1 in 0x80..0x9F (curly quotes, the euro
        // sign); a subject using those characters does not match its decoded form.
        "iso-8859-1" | "latin1" | "iso-8859-15" | "windows-1252" | "cp1252" => latin1(&bytes),
        _ => return None,
    };
    let used = s.len() - body.len() + end + 2;
    Some((decoded, used))
}

fn lenient_base64() -> GeneralPurpose {
    let config = GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true);
    GeneralPurpose::new(&base64::alphabet::STANDARD, config)
}

/// The `Q` encoding: `_` is a space, `=XX` a byte in hex.
fn decode_q(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len());
    let mut bytes = text.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'_' => out.push(b' '),
            b'=' => {
                let hex = [bytes.next()?, bytes.next()?];
                let hex = std::str::from_utf8(&hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
            }
            _ => out.push(b),
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fingerprint(subject: Option<&str>, sender: Option<&str>) -> MessageFingerprint {
        MessageFingerprint {
            subject: subject.map(str::to_owned),
            sender: sender.map(str::to_owned),
            ..MessageFingerprint::default()
        }
    }

    #[test]
    fn unfolds_and_keeps_first_fields() {
        let block = b"From sender@x Mon Jan  1 00:00:00 2024\r\n\
            Subject: first\r\n  line folded\r\n\
            Message-Id:\r\n <a@b.example>\r\n\
            Subject: second\r\n\
            From: \"Person\" <P@X.Example>\r\n\
            \r\n\
            Message-ID: <body@not.header>\r\n";
        let h = MessageHeaders::parse(block);
        assert_eq!(h.subject.as_deref(), Some("first  line folded"));
        assert_eq!(
            h.message_id.as_ref().map(MessageId::as_str),
            Some("a@b.example")
        );
        assert_eq!(h.from.as_deref(), Some("\"Person\" <P@X.Example>"));
    }

    #[test]
    fn headerless_message_has_no_fields() {
        let h = MessageHeaders::parse(b"just a body line\r\nand another\r\n");
        assert_eq!(h, MessageHeaders::default());
    }

    #[test]
    fn bounded_read_stops_at_the_blank_line() {
        let mut message = b"Message-ID: <x@y>\r\n\r\n".to_vec();
        message.extend(std::iter::repeat_n(b'a', 1_000_000));
        let h = MessageHeaders::read_from(&message[..]).expect("reading from memory");
        assert_eq!(h.message_id.as_ref().map(MessageId::as_str), Some("x@y"));
    }

    #[test]
    fn decodes_encoded_words() {
        let check = |raw: &str, expected: &str| assert_eq!(decode_encoded_words(raw), expected);
        check("=?UTF-8?B?RnJlZVNwaW5zNFlvdQ==?=", "FreeSpins4You");
        check("=?utf-8?B?RnJlZVNwaW5zNFlvdQ?=", "FreeSpins4You");
        check("=?ISO-8859-1?Q?Caf=E9_cr=E8me?=", "Café crème");
        check("=?UTF-8?Q?a?= =?UTF-8?Q?b?= c", "ab c");
        check("x =?UTF-8?Q?a?= y", "x a y");
        check("=?KOI8-R?B?8NLJ18XU?=", "=?KOI8-R?B?8NLJ18XU?=");
        check("=?broken", "=?broken");
        check("no words", "no words");
    }

    #[test]
    fn fingerprint_matches_decoded_insensitively() {
        let h = MessageHeaders {
            subject: Some("=?UTF-8?Q?Urgent:__Invoice?=\t overdue ".to_owned()),
            from: Some("=?UTF-8?B?UGVyc29u?= <Billing@Example.COM>".to_owned()),
            return_path: Some("<bounce@mailer.example>".to_owned()),
            ..MessageHeaders::default()
        };
        assert!(h.matches(&fingerprint(None, None)));
        assert!(h.matches(&fingerprint(Some("urgent: invoice OVERDUE"), None)));
        assert!(h.matches(&fingerprint(Some(""), Some("billing@example.com"))));
        assert!(h.matches(&fingerprint(None, Some("Person <billing@example.com>"))));
        assert!(h.matches(&fingerprint(None, Some("bounce@mailer.example"))));
        assert!(!h.matches(&fingerprint(Some("urgent invoice"), None)));
        assert!(!h.matches(&fingerprint(None, Some("other@example.com"))));
        assert!(!MessageHeaders::default().matches(&fingerprint(Some("x"), None)));
    }
}

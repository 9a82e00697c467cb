//! Reads one Internet message into [`MessageFacts`]: its headers, decoded once; its text and
//! HTML bodies; every file it carries, including those inside uuencoded text and `winmail.dat`
//! streams; and messages attached to it. Reading never fails: whatever cannot be read is
//! written to [`MessageFacts::problems`] and reading goes on with the rest.
//!
//! Work per message is bounded: at most [`MAX_MESSAGE_BYTES`] of input, [`MAX_PARTS`] MIME
//! parts and [`MAX_TEXT_BYTES`] of text per body part. Attachments are hashed and inspected,
//! never kept.

mod attachment;
pub(crate) mod mapi;
pub(crate) mod outlook;
pub(crate) mod tnef;
mod uuencode;

use std::borrow::Cow;
use std::collections::HashSet;

use mail_parser::decoders::base64::base64_decode;
use mail_parser::decoders::charsets::map::charset_decoder;
use mail_parser::decoders::quoted_printable::quoted_printable_decode;
use mail_parser::{
    Address, Encoding, HeaderName, HeaderValue, Message, MessageParser, MessagePart,
};
use mail_parser::{MimeHeaders, PartType};

use crate::facts::{HeaderFacts, Mailbox, MessageFacts};

/// The largest input read; the rest of a longer one is cut off, with a problem noted.
pub const MAX_MESSAGE_BYTES: usize = 25 * 1024 * 1024;

/// The most MIME parts read in one message; later parts are skipped, with a problem noted.
pub const MAX_PARTS: usize = 200;

/// The most decoded text kept from one body part; the rest is cut off, with a problem noted.
pub const MAX_TEXT_BYTES: usize = 4 * 1024 * 1024;

/// The most headers kept in [`HeaderFacts::all`], and the longest value kept for each.
const MAX_HEADERS: usize = 500;
const MAX_HEADER_VALUE: usize = 8 * 1024;

/// Reads a message from its raw bytes (RFC 5322, optionally behind an mbox `From ` line).
pub fn read(bytes: &[u8]) -> MessageFacts {
    let mut problems = Vec::new();
    let bytes = bounded_input(bytes, &mut problems);
    let bytes = without_mbox_line(bytes);

    let mut facts = if let Some(facts) = read_outlook_forms(bytes) {
        facts
    } else {
        match MessageParser::default().parse(bytes) {
            Some(parsed) if has_headers(&parsed) => facts_of(&parsed, 0),
            _ => headerless(bytes),
        }
    };
    problems.append(&mut facts.problems);
    facts.problems = problems;
    facts
}

/// Outlook's forms of a whole message, which users and tools save as files: a `.msg` file
/// or a bare TNEF stream. `None` when the bytes are neither.
fn read_outlook_forms(bytes: &[u8]) -> Option<MessageFacts> {
    if tnef::is_tnef(bytes) {
        let mut facts = mapi::to_facts(&tnef::read(bytes), 0);
        facts.problems.insert(
            0,
            "the input is a TNEF stream (winmail.dat), read as MAPI".into(),
        );
        return Some(facts);
    }
    if !outlook::is_compound_file(bytes) {
        return None;
    }
    let mut facts = match outlook::read(bytes) {
        Ok(message) => mapi::to_facts(&message, 0),
        Err(problem) => MessageFacts {
            problems: vec![problem],
            ..MessageFacts::default()
        },
    };
    facts.problems.insert(
        0,
        "the input is an OLE compound file (Outlook .msg), read as MAPI".into(),
    );
    Some(facts)
}

/// Cuts input longer than [`MAX_MESSAGE_BYTES`].
pub(crate) fn bounded_input<'a>(bytes: &'a [u8], problems: &mut Vec<String>) -> &'a [u8] {
    if bytes.len() <= MAX_MESSAGE_BYTES {
        return bytes;
    }
    problems.push(format!(
        "the input is {} bytes; only the first {MAX_MESSAGE_BYTES} were read",
        bytes.len()
    ));
    &bytes[..MAX_MESSAGE_BYTES]
}

/// Skips the `From sender date` line that starts each message of an mbox file.
pub(crate) fn without_mbox_line(bytes: &[u8]) -> &[u8] {
    if !bytes.starts_with(b"From ") {
        return bytes;
    }
    match bytes.iter().position(|&b| b == b'\n') {
        Some(end) => &bytes[end + 1..],
        None => &[],
    }
}

/// Whether parsing found at least one well-formed header field. mail-parser reads the first
/// line of any input as a header, junk included; a field name of printable characters
/// without spaces (RFC 5322 section 2.2) is required here.
pub(crate) fn has_headers(parsed: &Message<'_>) -> bool {
    let well_formed =
        |name: &str| !name.is_empty() && name.bytes().all(|b| (33..=126).contains(&b) && b != b':');
    parsed
        .parts
        .first()
        .is_some_and(|root| root.headers.iter().any(|h| well_formed(h.name.as_str())))
}

/// Input without a single header is kept as one text body.
fn headerless(bytes: &[u8]) -> MessageFacts {
    let mut facts = MessageFacts::default();
    facts
        .problems
        .push("no headers found: the whole input was read as one text body".into());
    let text = String::from_utf8_lossy(bytes).into_owned();
    if !text.trim().is_empty() {
        let text = bounded_text(text, "the body", &mut facts.problems);
        facts.text_bodies.push(text);
    }
    facts
}

/// Reads a message that mail-parser has parsed. At `depth` 0 attached messages are read into
/// [`MessageFacts::attached_messages`]; deeper ones are listed as attachments.
pub(crate) fn facts_of(message: &Message<'_>, depth: usize) -> MessageFacts {
    let mut reader = PartReader {
        message,
        depth,
        facts: MessageFacts::default(),
        parts_read: 0,
    };
    reader.facts.headers = headers_of(message);
    reader.read_tree();
    reader.note_unclosed_boundaries();
    reader.facts
}

/// Walks the MIME tree of one message, filling its facts.
struct PartReader<'m, 'x> {
    message: &'m Message<'x>,
    depth: usize,
    facts: MessageFacts,
    parts_read: usize,
}

impl PartReader<'_, '_> {
    fn read_tree(&mut self) {
        let message = self.message;
        let parts = &message.parts;
        let mut pending = vec![0u32];
        let mut visited = 0;
        while let Some(id) = pending.pop() {
            visited += 1;
            let Some(part) = parts.get(id as usize).filter(|_| visited <= parts.len()) else {
                continue;
            };
            if let PartType::Multipart(children) = &part.body {
                pending.extend(children.iter().rev().filter(|&&child| child != id));
                continue;
            }
            self.parts_read += 1;
            if self.parts_read > MAX_PARTS {
                self.facts.problems.push(format!(
                    "more than {MAX_PARTS} parts: the rest of the message was not read"
                ));
                return;
            }
            self.read_part(id as usize, part);
        }
    }

    fn read_part(&mut self, id: usize, part: &MessagePart<'_>) {
        let label = format!("part {id}");
        self.note_transfer_encoding(&label, part);
        if part.is_encoding_problem {
            self.facts.problems.push(format!(
                "{label}: broken MIME structure or encoding; its raw content was read as text"
            ));
        }
        match &part.body {
            PartType::Text(text) | PartType::Html(text) if !is_attachment(part) => {
                self.read_body(&label, part, text);
            }
            PartType::Text(text) | PartType::Html(text) => {
                let raw = self.transfer_decoded(part);
                let data = raw.as_deref().unwrap_or(text.as_bytes());
                self.read_file(&label, part, data);
            }
            PartType::Binary(data) | PartType::InlineBinary(data) => {
                self.read_file(&label, part, data);
            }
            PartType::Message(inner) if self.depth == 0 => {
                self.facts
                    .attached_messages
                    .push(facts_of(inner, self.depth + 1));
            }
            PartType::Message(inner) => {
                let name = part.attachment_name().map(str::to_string);
                let described = attachment::describe(name, "message/rfc822", inner.raw_message());
                self.facts.attachments.push(described);
            }
            PartType::Multipart(_) => {}
        }
    }

    /// A text or HTML body: decoded with its charset, or with a fallback noted as a problem.
    fn read_body(&mut self, label: &str, part: &MessagePart<'_>, text: &str) {
        let text = self.with_charset_fallback(label, part, text);
        let text = bounded_text(text.into_owned(), label, &mut self.facts.problems);
        if text.starts_with("begin ") || text.contains("\nbegin ") {
            for file in uuencode::decode_all(&text) {
                self.add_uuencoded(label, file);
            }
        }
        if matches!(part.body, PartType::Html(_)) {
            self.facts.html_bodies.push(text);
        } else {
            self.facts.text_bodies.push(text);
        }
    }

    /// mail-parser reads text in an unknown charset, or without a charset, as UTF-8 and
    /// replaces what is not. Such text is read again as Windows-1252, which never fails.
    fn with_charset_fallback<'t>(
        &mut self,
        label: &str,
        part: &MessagePart<'_>,
        text: &'t str,
    ) -> Cow<'t, str> {
        let charset = part.content_type().and_then(|ct| ct.attribute("charset"));
        let known =
            charset.is_none_or(|c| is_utf8_label(c) || charset_decoder(c.as_bytes()).is_some());
        let garbled = text.contains('\u{FFFD}');
        if known && !(charset.is_none() && garbled) {
            return Cow::Borrowed(text);
        }
        let what = match charset {
            Some(name) if !known => format!("unknown charset {name}"),
            _ => "no charset declared and not UTF-8".to_string(),
        };
        let fallback = if garbled {
            self.transfer_decoded(part)
        } else {
            None
        };
        match fallback {
            Some(bytes) => {
                self.note(format!("{label}: {what}, read as Windows-1252"));
                Cow::Owned(mapi::decode_8bit(&bytes))
            }
            None => {
                self.note(format!("{label}: {what}, read as UTF-8"));
                Cow::Borrowed(text)
            }
        }
    }

    /// A file: a plain attachment, or a container whose inner files are read too.
    fn read_file(&mut self, label: &str, part: &MessagePart<'_>, data: &[u8]) {
        let name = part.attachment_name().map(str::to_string);
        let declared = declared_type(part);
        let is_uuencoded = part
            .content_transfer_encoding()
            .is_some_and(|e| is_uuencode_label(e.trim()));
        if is_uuencoded {
            let files = uuencode::decode_all(&String::from_utf8_lossy(data));
            if !files.is_empty() {
                files
                    .into_iter()
                    .for_each(|file| self.add_uuencoded(label, file));
                return;
            }
        }

        self.facts
            .attachments
            .push(attachment::describe(name.clone(), &declared, data));
        let is_winmail = name
            .as_deref()
            .is_some_and(|n| n.eq_ignore_ascii_case("winmail.dat"));
        if declared == "application/ms-tnef" || declared == "application/vnd.ms-tnef" || is_winmail
        {
            self.add_tnef(label, data);
        }
    }

    fn add_uuencoded(&mut self, label: &str, file: uuencode::UuFile) {
        if !file.complete {
            self.note(format!(
                "{label}: uuencoded file {} has no end line",
                file.name
            ));
        }
        let declared = "application/octet-stream";
        self.facts
            .attachments
            .push(attachment::describe(Some(file.name), declared, &file.data));
    }

    /// The files and bodies inside a `winmail.dat`, added after the stream itself.
    fn add_tnef(&mut self, label: &str, data: &[u8]) {
        if !tnef::is_tnef(data) {
            self.note(format!("{label}: declared TNEF but has no TNEF signature"));
            return;
        }
        let inner = mapi::content_facts(&tnef::read(data), self.depth);
        let facts = &mut self.facts;
        facts.attachments.extend(inner.attachments);
        facts.attached_messages.extend(inner.attached_messages);
        facts.text_bodies.extend(inner.text_bodies);
        facts.html_bodies.extend(inner.html_bodies);
        facts
            .problems
            .extend(inner.problems.into_iter().map(|p| format!("{label}: {p}")));
    }

    fn note_transfer_encoding(&mut self, label: &str, part: &MessagePart<'_>) {
        let Some(encoding) = part.content_transfer_encoding() else {
            return;
        };
        let encoding = encoding.trim();
        let known = ["7bit", "8bit", "binary", "base64", "quoted-printable"];
        if !known.iter().any(|k| k.eq_ignore_ascii_case(encoding)) && !is_uuencode_label(encoding) {
            self.note(format!(
                "{label}: unknown transfer encoding {encoding}, read as is"
            ));
        }
    }

    /// The part's bytes after transfer decoding and before charset decoding, read again from
    /// the raw message. Only used for the rare parts whose text needs a second look.
    fn transfer_decoded(&self, part: &MessagePart<'_>) -> Option<Vec<u8>> {
        let start = part.offset_body as usize;
        let end = part.offset_end as usize;
        let raw = self.message.raw_message.get(start..end.max(start))?;
        match part.encoding {
            Encoding::Base64 => base64_decode(raw),
            Encoding::QuotedPrintable => quoted_printable_decode(raw),
            Encoding::None => Some(raw.to_vec()),
        }
    }

    /// Notes every multipart boundary that is opened but never closed, which is how a
    /// truncated message shows. One pass over the raw lines checks all boundaries at once.
    fn note_unclosed_boundaries(&mut self) {
        let mut open: HashSet<&str> = self
            .message
            .parts
            .iter()
            .filter(|p| p.is_multipart())
            .filter_map(|p| p.content_type()?.attribute("boundary"))
            .take(MAX_PARTS)
            .collect();
        if open.is_empty() {
            return;
        }
        for line in self.message.raw_message.split(|&b| b == b'\n') {
            let Some(rest) = line.strip_prefix(b"--") else {
                continue;
            };
            let rest = rest.trim_ascii_end();
            let Some(boundary) = rest.strip_suffix(b"--") else {
                continue;
            };
            if let Ok(boundary) = std::str::from_utf8(boundary) {
                open.remove(boundary);
            }
        }
        let mut open: Vec<&str> = open.into_iter().collect();
        open.sort_unstable();
        for boundary in open {
            self.note(format!(
                "multipart boundary \"{boundary}\" is never closed: the message may be truncated"
            ));
        }
    }

    fn note(&mut self, problem: String) {
        self.facts.problems.push(problem);
    }
}

/// Whether a text part is a file rather than a body: marked as an attachment, or named.
pub(crate) fn is_attachment(part: &MessagePart<'_>) -> bool {
    let disposition = part.content_disposition();
    disposition.is_some_and(|d| d.is_attachment()) || part.attachment_name().is_some()
}

/// The declared `Content-Type` without parameters, lower case; `text/plain` when absent, as
/// RFC 2045 says.
pub(crate) fn declared_type(part: &MessagePart<'_>) -> String {
    match part.content_type() {
        Some(ct) => match ct.subtype() {
            Some(sub) => format!("{}/{}", ct.ctype(), sub).to_ascii_lowercase(),
            None => ct.ctype().to_ascii_lowercase(),
        },
        None => "text/plain".into(),
    }
}

/// mail-parser decodes UTF-8 itself, so its charset table has no entry for these labels.
fn is_utf8_label(charset: &str) -> bool {
    let labels = [
        "utf-8",
        "utf8",
        "unicode-1-1-utf-8",
        "unicode11utf8",
        "unicode20utf8",
    ];
    labels
        .iter()
        .any(|l| l.eq_ignore_ascii_case(charset.trim()))
}

fn is_uuencode_label(encoding: &str) -> bool {
    ["x-uuencode", "uuencode", "x-uue"]
        .iter()
        .any(|l| l.eq_ignore_ascii_case(encoding))
}

/// Cuts text longer than [`MAX_TEXT_BYTES`] at a character boundary, noting it.
pub(crate) fn bounded_text(mut text: String, label: &str, problems: &mut Vec<String>) -> String {
    if text.len() > MAX_TEXT_BYTES {
        let mut end = MAX_TEXT_BYTES;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        problems.push(format!(
            "{label}: {} bytes of text; only the first {MAX_TEXT_BYTES} were kept",
            text.len()
        ));
        text.truncate(end);
    }
    text
}

/// Reads the header facts of a parsed message or header block.
pub(crate) fn headers_of(message: &Message<'_>) -> HeaderFacts {
    let Some(root) = message.parts.first() else {
        return HeaderFacts::default();
    };
    let mut facts = HeaderFacts {
        from: message.from().and_then(|a| mailboxes(a).into_iter().next()),
        sender: message
            .sender()
            .and_then(|a| mailboxes(a).into_iter().next()),
        reply_to: message.reply_to().map(mailboxes).unwrap_or_default(),
        to: addresses_in(message, HeaderName::To),
        cc: addresses_in(message, HeaderName::Cc),
        subject: message.subject().map(|s| s.trim().to_string()),
        message_id: message.message_id().map(|id| id.trim().to_string()),
        ..HeaderFacts::default()
    };

    for header in &root.headers {
        let name = header.name.as_str();
        let start = header.offset_start as usize;
        let end = (header.offset_end as usize).max(start);
        let raw = message.raw_message.get(start..end).unwrap_or_default();
        let value = unfold(&String::from_utf8_lossy(raw));
        record_header(&mut facts, name, &value);
        if facts.all.len() < MAX_HEADERS {
            facts.all.push((name.to_string(), bounded_value(value)));
        }
    }
    facts
}

/// Files one raw header value into the facts that read it as written.
fn record_header(facts: &mut HeaderFacts, name: &str, value: &str) {
    let is = |n: &str| name.eq_ignore_ascii_case(n);
    let first = |slot: &mut Option<String>, value: &str| {
        if slot.is_none() && !value.is_empty() {
            *slot = Some(value.to_string());
        }
    };
    if is("Received") {
        facts.received_count += 1;
    } else if is("Authentication-Results") {
        facts.authentication_results.push(value.to_string());
    } else if is("Received-SPF") {
        facts.received_spf.push(value.to_string());
    } else if is("List-Id") {
        first(&mut facts.list_id, value);
    } else if is("List-Unsubscribe") {
        first(&mut facts.list_unsubscribe, value);
    } else if is("Precedence") {
        first(&mut facts.precedence, value);
    } else if is("Date") {
        first(&mut facts.date, value);
    } else if is("Return-Path") && facts.return_path.is_none() {
        let path = value.trim_matches(['<', '>', ' ']).to_ascii_lowercase();
        facts.return_path = Some(path).filter(|p| !p.is_empty());
    } else if is("Message-ID") && facts.message_id.is_none() {
        let id = value.trim_matches(['<', '>', ' ']);
        facts.message_id = Some(id.to_string()).filter(|id| !id.is_empty());
    }
}

/// Removes the line breaks of a folded header value and trims it.
fn unfold(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for (i, line) in value.split('\n').enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if i > 0 && !out.is_empty() && !line.starts_with([' ', '\t']) {
            out.push(' ');
        }
        out.push_str(line);
    }
    out.trim().to_string()
}

fn bounded_value(mut value: String) -> String {
    if value.len() > MAX_HEADER_VALUE {
        let mut end = MAX_HEADER_VALUE;
        while !value.is_char_boundary(end) {
            end -= 1;
        }
        value.truncate(end);
    }
    value
}

fn addresses_in(message: &Message<'_>, name: HeaderName<'static>) -> Vec<Mailbox> {
    message
        .header_values(name)
        .filter_map(HeaderValue::as_address)
        .flat_map(mailboxes)
        .collect()
}

/// The mailboxes of an address list or group, names decoded and addresses in lower case.
fn mailboxes(address: &Address<'_>) -> Vec<Mailbox> {
    address
        .iter()
        .map(|addr| Mailbox {
            name: addr
                .name()
                .map(|n| n.trim().trim_matches('"').trim().to_string())
                .filter(|n| !n.is_empty()),
            address: addr
                .address()
                .map(|a| a.trim().trim_matches(['<', '>']).to_ascii_lowercase())
                .filter(|a| a.contains('@')),
        })
        .filter(|m| m.name.is_some() || m.address.is_some())
        .collect()
}

#[cfg(test)]
pub(crate) mod tests;

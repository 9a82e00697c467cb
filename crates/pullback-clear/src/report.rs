//! Finds the original message inside a user's report to the abuse mailbox. Users forward a
//! suspicious message in one of five ways, tried in this order:
//!
//! 1. attached as `message/rfc822` ([`FoundAs::AttachedMessage`]);
//! 2. attached as an `.eml` file ([`FoundAs::EmlFile`]);
//! 3. attached as an Outlook `.msg` file ([`FoundAs::OutlookMsg`]);
//! 4. inside a `winmail.dat` stream, as an embedded message or an `.eml`/`.msg` file in it
//!    ([`FoundAs::Tnef`]);
//! 5. forwarded inline, below a separator and a short block of `From:`/`Sent:`/`To:`/`Subject:`
//!    lines ([`FoundAs::InlineForward`]): the original headers are lost, so what the block says
//!    is recovered and [`MessageFacts::headers_lost`] is set.
//!
//! When a report carries several forwarded messages, the first is read and the others are
//! counted in [`Report::problems`].
//!
//! A report that forwards nothing is [`FoundAs::NotFound`], with `original` `None` and the
//! reason in `problems`, even when it may itself be the suspicious message (a phish sent
//! straight to the abuse mailbox). The report is never taken for the original, because a
//! reporter's own note ("is this real?") would then be judged as the threat and the reporter
//! treated as the attacker. A caller that knows the mailbox receives phishing directly (a
//! spam-trap address, a journaling rule) reads the bytes with [`crate::message::read`] instead.
//!
//! A report may also be an Outlook `.msg` file or a TNEF stream on its own (as a user drags it
//! into a web form); it is read as [`FoundAs::OutlookMsg`] or [`FoundAs::Tnef`] without a
//! reporter. This is also how [`Report::original_bytes`] of such an original is read again.

mod inline;

use mail_parser::{Message, MessageParser, MessagePart, MimeHeaders, PartType};
use serde::Serialize;

use crate::facts::{Mailbox, MessageFacts};
use crate::message::{self, MAX_PARTS, mapi, outlook, tnef};

/// What was found in one report.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    /// Who reported: the report's `From`.
    pub reporter: Option<Mailbox>,
    /// The report's own subject, decoded.
    pub report_subject: Option<String>,
    /// The report's own Message-ID, without brackets: what a reply to the reporter refers to.
    pub report_message_id: Option<String>,
    /// The original message, read.
    pub original: Option<MessageFacts>,
    /// The original's bytes, for analysing again and for storage: the RFC 5322 message for
    /// [`FoundAs::AttachedMessage`] and [`FoundAs::EmlFile`], the `.msg` file for
    /// [`FoundAs::OutlookMsg`] (which [`read_report`] reads again as it is). `None` for
    /// [`FoundAs::Tnef`] embedded messages and [`FoundAs::InlineForward`], whose bytes no longer
    /// exist on their own.
    #[serde(skip)]
    pub original_bytes: Option<Vec<u8>>,
    pub found_as: FoundAs,
    /// What could not be read, and why nothing was found when nothing was.
    pub problems: Vec<String>,
}

/// How the original was carried in the report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FoundAs {
    /// A `message/rfc822` part.
    AttachedMessage,
    /// An attached `.eml` file (any type other than `message/rfc822`).
    EmlFile,
    /// An attached Outlook `.msg` file: MAPI properties in an OLE compound file.
    OutlookMsg,
    /// A message inside a `winmail.dat` (TNEF) attachment.
    Tnef,
    /// Forwarded inline: the original headers are lost, what the forward block says is kept.
    InlineForward,
    /// No original: the reason is in [`Report::problems`].
    NotFound,
}

/// Finds and reads the original message in a report. Never fails: a report in which nothing
/// is found says why in its problems.
pub fn read_report(bytes: &[u8]) -> Report {
    let mut report = Report {
        reporter: None,
        report_subject: None,
        report_message_id: None,
        original: None,
        original_bytes: None,
        found_as: FoundAs::NotFound,
        problems: Vec::new(),
    };
    let bytes = message::bounded_input(bytes, &mut report.problems);
    if outlook::is_compound_file(bytes) || tnef::is_tnef(bytes) {
        read_outlook_alone(&mut report, bytes);
        return report;
    }

    let bytes = message::without_mbox_line(bytes);
    let parsed = match MessageParser::default().parse(bytes) {
        Some(parsed) if message::has_headers(&parsed) => parsed,
        _ => {
            report.problems.push(
                "no original found: the report has no headers, so it is not a message".into(),
            );
            return report;
        }
    };
    let headers = message::headers_of(&parsed);
    report.reporter = headers.from;
    report.report_subject = headers.subject;
    report.report_message_id = headers.message_id;

    let mut search = Search::default();
    for (id, part) in parsed.parts.iter().enumerate().take(MAX_PARTS) {
        search.part(id, part);
    }
    match search.found.into_iter().next() {
        Some(found) => found.fill(&mut report, search.candidates),
        None => find_inline(&mut report, &parsed, &search.other_files),
    }
    report
}

/// A report that is a `.msg` file or a TNEF stream itself: that is the original.
fn read_outlook_alone(report: &mut Report, bytes: &[u8]) {
    if tnef::is_tnef(bytes) {
        report.original = Some(mapi::to_facts(&tnef::read(bytes), 0));
        report.original_bytes = Some(bytes.to_vec());
        report.found_as = FoundAs::Tnef;
        return;
    }
    match outlook::read(bytes) {
        Ok(msg) => {
            report.original = Some(mapi::to_facts(&msg, 0));
            report.original_bytes = Some(bytes.to_vec());
            report.found_as = FoundAs::OutlookMsg;
        }
        Err(problem) => report
            .problems
            .push(format!("no original found: {problem}")),
    }
}

/// An original found among the report's parts.
struct Found {
    facts: MessageFacts,
    bytes: Option<Vec<u8>>,
    found_as: FoundAs,
}

impl Found {
    fn fill(self, report: &mut Report, candidates: usize) {
        if candidates > 1 {
            report.problems.push(format!(
                "the report carries {candidates} forwarded messages; only the first was read"
            ));
        }
        report.original = Some(self.facts);
        report.original_bytes = self.bytes;
        report.found_as = self.found_as;
    }
}

/// Looks at each part of a report for a forwarded message.
#[derive(Default)]
struct Search {
    /// The first forwarded message found.
    found: Option<Found>,
    /// How many forwarded messages the report carries.
    candidates: usize,
    /// Files that are not messages, by name, for saying why nothing was found.
    other_files: Vec<String>,
}

impl Search {
    fn part(&mut self, id: usize, part: &MessagePart<'_>) {
        let name = part.attachment_name().unwrap_or("").to_string();
        let lower = name.to_ascii_lowercase();
        let declared = message::declared_type(part);
        match &part.body {
            PartType::Message(inner) => self.add(Found {
                facts: message::facts_of(inner, 0),
                bytes: Some(inner.raw_message().to_vec()),
                found_as: FoundAs::AttachedMessage,
            }),
            PartType::Binary(data) | PartType::InlineBinary(data) => {
                self.file(id, &name, &lower, &declared, data);
            }
            PartType::Text(text) | PartType::Html(text) if message::is_attachment(part) => {
                self.file(id, &name, &lower, &declared, text.as_bytes());
            }
            _ => {}
        }
    }

    fn file(&mut self, id: usize, name: &str, lower: &str, declared: &str, data: &[u8]) {
        if let Some(found) = as_message_file(lower, declared, data) {
            self.add(found);
            return;
        }
        let is_tnef = declared.ends_with("ms-tnef") || lower == "winmail.dat";
        if is_tnef && tnef::is_tnef(data) {
            let before = self.candidates;
            self.tnef(data);
            if self.candidates > before {
                return;
            }
        }
        let label = if name.is_empty() {
            format!("part {id} ({declared})")
        } else {
            name.to_string()
        };
        self.other_files.push(label);
    }

    /// Messages inside a `winmail.dat`: embedded message attachments and message files.
    fn tnef(&mut self, data: &[u8]) {
        let stream = tnef::read(data);
        for item in &stream.attachments {
            if let Some(embedded) = &item.embedded {
                let mut facts = mapi::to_facts(embedded, 0);
                facts.problems.extend(stream.problems.iter().cloned());
                self.add(Found {
                    facts,
                    bytes: None,
                    found_as: FoundAs::Tnef,
                });
                continue;
            }
            let name = item.name().unwrap_or_default().to_ascii_lowercase();
            let Some(bytes) = item.bytes() else { continue };
            if let Some(mut found) = as_message_file(&name, &item.mime_type(), bytes) {
                found.found_as = FoundAs::Tnef;
                self.add(found);
            }
        }
    }

    fn add(&mut self, found: Found) {
        self.candidates += 1;
        if self.found.is_none() {
            self.found = Some(found);
        }
    }
}

/// An attached file that is a message: a `.msg` compound file, or an `.eml` (or a file
/// declared as a message, or a generic file whose content has message headers).
fn as_message_file(lower_name: &str, declared: &str, data: &[u8]) -> Option<Found> {
    let msg_named = lower_name.ends_with(".msg") || declared == "application/vnd.ms-outlook";
    if outlook::is_compound_file(data) && (msg_named || outlook::looks_like_message(data)) {
        let (facts, problem) = match outlook::read(data) {
            Ok(msg) => (mapi::to_facts(&msg, 0), None),
            Err(problem) => (MessageFacts::default(), Some(problem)),
        };
        let mut facts = facts;
        facts.problems.extend(problem);
        return Some(Found {
            facts,
            bytes: Some(data.to_vec()),
            found_as: FoundAs::OutlookMsg,
        });
    }

    let eml_named = lower_name.ends_with(".eml");
    let declared_message = matches!(declared, "message/rfc822" | "message/global");
    let generic =
        matches!(declared, "application/octet-stream" | "text/plain") && !lower_name.contains('.');
    if !(eml_named || declared_message || generic && has_message_headers(data)) {
        return None;
    }
    Some(Found {
        facts: message::read(data),
        bytes: Some(data.to_vec()),
        found_as: FoundAs::EmlFile,
    })
}

/// Whether bytes start with the headers a delivered message has: a sender and one of the
/// headers transport adds.
fn has_message_headers(data: &[u8]) -> bool {
    let head = &data[..data.len().min(64 * 1024)];
    let Some(parsed) = MessageParser::default().parse_headers(head) else {
        return false;
    };
    let has = |name: &str| {
        parsed
            .headers()
            .iter()
            .any(|h| h.name.as_str().eq_ignore_ascii_case(name))
    };
    has("From") && (has("Received") || has("Message-ID") || has("Date"))
}

/// The report forwards no message as a file: look for a forwarded block in its bodies.
fn find_inline(report: &mut Report, parsed: &Message<'_>, other_files: &[String]) {
    let carrier = message::facts_of(parsed, 0);
    let from_text = carrier
        .text_bodies
        .iter()
        .find_map(|text| inline::find(text));
    let rendered: Vec<_> = carrier
        .html_bodies
        .iter()
        .map(|h| (h, inline::render_html(h)))
        .collect();
    let from_html = rendered
        .iter()
        .find_map(|(html, r)| Some((*html, r, inline::find(&r.text)?)));

    let (forwarded, html_part) = match (from_text, from_html) {
        (Some(text), html) => (text, html.map(|(h, r, f)| &h[r.html_offset(f.start)..])),
        (None, Some((html, r, found))) => {
            let cut = &html[r.html_offset(found.start)..];
            (found, Some(cut))
        }
        (None, None) => {
            report.problems.push(not_found_reason(other_files));
            return;
        }
    };

    let mut problems = vec!["forwarded inline: the original headers are lost; header facts are what the forward block says".to_string()];
    problems.extend(carrier.problems);
    report.original = Some(MessageFacts {
        headers: forwarded.headers,
        text_bodies: vec![forwarded.body],
        html_bodies: html_part.map(str::to_string).into_iter().collect(),
        attachments: carrier.attachments,
        attached_messages: Vec::new(),
        headers_lost: true,
        problems,
    });
    report.found_as = FoundAs::InlineForward;
}

fn not_found_reason(other_files: &[String]) -> String {
    if other_files.is_empty() {
        "no original found: the report has no message attachment and no forwarded block \
         (if the abuse mailbox received the suspicious message directly, read it with \
         message::read)"
            .into()
    } else {
        format!(
            "no original found: the report's attachments are not messages ({}) and its body \
             has no forwarded block",
            other_files.join(", ")
        )
    }
}

#[cfg(test)]
mod tests;

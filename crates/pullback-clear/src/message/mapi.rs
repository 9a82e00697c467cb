//! Outlook's own form of a message: MAPI properties, as a `.msg` file or a `winmail.dat`
//! stream carries them, turned into the same facts as an Internet message.

use std::collections::BTreeMap;

use mail_parser::MessageParser;

use super::attachment;
use crate::facts::{Mailbox, MessageFacts};

/// Property tags (the upper 16 bits of a MAPI property tag) that reading needs.
pub(crate) mod tag {
    pub const SUBJECT: u16 = 0x0037;
    pub const SENT_REPRESENTING_NAME: u16 = 0x0042;
    pub const SENT_REPRESENTING_EMAIL: u16 = 0x0065;
    pub const TRANSPORT_MESSAGE_HEADERS: u16 = 0x007D;
    pub const RECIPIENT_TYPE: u16 = 0x0C15;
    pub const SENDER_NAME: u16 = 0x0C1A;
    pub const SENDER_EMAIL: u16 = 0x0C1F;
    pub const BODY: u16 = 0x1000;
    pub const RTF_COMPRESSED: u16 = 0x1009;
    pub const BODY_HTML: u16 = 0x1013;
    pub const INTERNET_MESSAGE_ID: u16 = 0x1035;
    pub const DISPLAY_NAME: u16 = 0x3001;
    pub const EMAIL_ADDRESS: u16 = 0x3003;
    pub const ATTACH_DATA: u16 = 0x3701;
    pub const ATTACH_FILENAME: u16 = 0x3704;
    pub const ATTACH_LONG_FILENAME: u16 = 0x3707;
    pub const ATTACH_MIME_TAG: u16 = 0x370E;
    pub const SMTP_ADDRESS: u16 = 0x39FE;
    pub const INTERNET_CPID: u16 = 0x3FDE;
    pub const SENDER_SMTP_ADDRESS: u16 = 0x5D01;
    pub const SENT_REPRESENTING_SMTP_ADDRESS: u16 = 0x5D02;
}

/// One property value. Multi-valued and fixed-size types that reading does not need are kept
/// as `Other`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum PropValue {
    Text(String),
    Binary(Vec<u8>),
    Int(i64),
    Other,
}

/// A message as MAPI properties, with its recipients and attachments.
#[derive(Clone, Debug, Default)]
pub(crate) struct MapiMessage {
    pub props: BTreeMap<u16, PropValue>,
    pub recipients: Vec<BTreeMap<u16, PropValue>>,
    pub attachments: Vec<MapiAttachment>,
    /// What could not be read while gathering the properties.
    pub problems: Vec<String>,
}

/// One attachment: a file, or a message embedded in the message.
#[derive(Clone, Debug, Default)]
pub(crate) struct MapiAttachment {
    pub props: BTreeMap<u16, PropValue>,
    /// The 8.3 title that a TNEF stream gives outside the MAPI properties.
    pub title: Option<String>,
    pub data: Option<Vec<u8>>,
    pub embedded: Option<Box<MapiMessage>>,
}

impl MapiMessage {
    pub fn text(&self, tag: u16) -> Option<&str> {
        text_of(&self.props, tag)
    }
}

fn text_of(props: &BTreeMap<u16, PropValue>, tag: u16) -> Option<&str> {
    match props.get(&tag)? {
        PropValue::Text(text) => Some(text.trim()).filter(|t| !t.is_empty()),
        _ => None,
    }
}

impl MapiAttachment {
    /// The best name the attachment carries: long file name, short file name, display name,
    /// then the TNEF title.
    pub fn name(&self) -> Option<String> {
        [
            tag::ATTACH_LONG_FILENAME,
            tag::ATTACH_FILENAME,
            tag::DISPLAY_NAME,
        ]
        .iter()
        .find_map(|&t| text_of(&self.props, t))
        .or(self
            .title
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty()))
        .map(str::to_string)
    }

    /// The declared MIME type, `application/octet-stream` when none is given.
    pub fn mime_type(&self) -> String {
        let declared = text_of(&self.props, tag::ATTACH_MIME_TAG).unwrap_or("");
        let declared = declared.split(';').next().unwrap_or("").trim();
        if declared.is_empty() {
            "application/octet-stream".into()
        } else {
            declared.to_ascii_lowercase()
        }
    }

    /// The file's bytes: the data property, or the TNEF data attribute.
    pub fn bytes(&self) -> Option<&[u8]> {
        match self.props.get(&tag::ATTACH_DATA) {
            Some(PropValue::Binary(data)) => Some(data),
            _ => self.data.as_deref(),
        }
    }
}

/// Reads a MAPI message into facts. `depth` 0 puts embedded messages in `attached_messages`;
/// deeper ones are listed as attachments only.
pub(crate) fn to_facts(message: &MapiMessage, depth: usize) -> MessageFacts {
    let mut facts = content_facts(message, depth);
    read_headers(message, &mut facts);
    facts
}

/// Reads the bodies, attachments and embedded messages of a MAPI message, not its headers.
pub(crate) fn content_facts(message: &MapiMessage, depth: usize) -> MessageFacts {
    let mut facts = MessageFacts {
        problems: message.problems.clone(),
        ..MessageFacts::default()
    };
    read_bodies(message, &mut facts);

    for item in &message.attachments {
        if let Some(embedded) = &item.embedded {
            if depth == 0 {
                facts.attached_messages.push(to_facts(embedded, depth + 1));
            } else {
                let name = item.name().or_else(|| Some("embedded message".into()));
                facts
                    .attachments
                    .push(attachment::describe(name, "message/rfc822", &[]));
            }
            continue;
        }
        match item.bytes() {
            Some(data) => {
                facts
                    .attachments
                    .push(attachment::describe(item.name(), &item.mime_type(), data))
            }
            None => facts.problems.push(format!(
                "attachment {}: no data",
                item.name().unwrap_or_else(|| "without a name".into())
            )),
        }
    }
    facts
}

/// Headers come from the transport headers when the message kept them (received mail does);
/// otherwise they are rebuilt from the sender, recipient and subject properties.
fn read_headers(message: &MapiMessage, facts: &mut MessageFacts) {
    if let Some(raw) = message.text(tag::TRANSPORT_MESSAGE_HEADERS) {
        let mut block = raw.replace("\r\n", "\n").trim_end().to_string();
        block.push_str("\n\n");
        if let Some(parsed) = MessageParser::default().parse_headers(block.as_bytes()) {
            facts.headers = super::headers_of(&parsed);
        }
    }
    let headers = &mut facts.headers;
    if headers.all.is_empty() {
        facts
            .problems
            .push("no transport headers: header facts rebuilt from the MAPI properties".into());
    }
    if headers.subject.is_none() {
        headers.subject = message.text(tag::SUBJECT).map(str::to_string);
    }
    if headers.from.is_none() {
        headers.from = sender_of(message);
    }
    if headers.message_id.is_none() {
        headers.message_id = message
            .text(tag::INTERNET_MESSAGE_ID)
            .map(|id| id.trim_matches(['<', '>']).to_string());
    }
    if headers.to.is_empty() && headers.cc.is_empty() {
        for recipient in &message.recipients {
            let mailbox = recipient_of(recipient);
            match recipient.get(&tag::RECIPIENT_TYPE) {
                Some(PropValue::Int(2)) => headers.cc.push(mailbox),
                Some(PropValue::Int(3)) => {}
                _ => headers.to.push(mailbox),
            }
        }
    }
}

fn sender_of(message: &MapiMessage) -> Option<Mailbox> {
    let name = message
        .text(tag::SENT_REPRESENTING_NAME)
        .or(message.text(tag::SENDER_NAME))
        .map(str::to_string);
    let address = [
        tag::SENT_REPRESENTING_SMTP_ADDRESS,
        tag::SENDER_SMTP_ADDRESS,
        tag::SENT_REPRESENTING_EMAIL,
        tag::SENDER_EMAIL,
    ]
    .iter()
    .filter_map(|&t| message.text(t))
    .find(|a| a.contains('@'))
    .map(str::to_ascii_lowercase);
    (name.is_some() || address.is_some()).then_some(Mailbox { name, address })
}

fn recipient_of(props: &BTreeMap<u16, PropValue>) -> Mailbox {
    let address = [tag::SMTP_ADDRESS, tag::EMAIL_ADDRESS]
        .iter()
        .filter_map(|&t| text_of(props, t))
        .find(|a| a.contains('@'))
        .map(str::to_ascii_lowercase);
    let name = text_of(props, tag::DISPLAY_NAME).map(str::to_string);
    Mailbox { name, address }
}

fn read_bodies(message: &MapiMessage, facts: &mut MessageFacts) {
    if let Some(body) = message.text(tag::BODY) {
        facts.text_bodies.push(super::bounded_text(
            body.to_string(),
            "MAPI body",
            &mut facts.problems,
        ));
    }
    match message.props.get(&tag::BODY_HTML) {
        Some(PropValue::Binary(bytes)) => {
            let html = decode_with_codepage(bytes, message.props.get(&tag::INTERNET_CPID));
            facts.html_bodies.push(super::bounded_text(
                html,
                "MAPI HTML body",
                &mut facts.problems,
            ));
        }
        Some(PropValue::Text(html)) => {
            facts.html_bodies.push(super::bounded_text(
                html.clone(),
                "MAPI HTML body",
                &mut facts.problems,
            ));
        }
        _ => {}
    }
    let no_body = facts.text_bodies.is_empty() && facts.html_bodies.is_empty();
    if no_body && message.props.contains_key(&tag::RTF_COMPRESSED) {
        // FIXME: compressed RTF bodies are not decompressed, so links that only appear in an
        // RTF body are not seen.
        facts
            .problems
            .push("the body is only in compressed RTF, which is not read".into());
    }
}

/// Decodes 8-bit text in the code page the message names; UTF-8 or Windows-1252 otherwise.
pub(crate) fn decode_with_codepage(bytes: &[u8], codepage: Option<&PropValue>) -> String {
    let label = match codepage {
        Some(PropValue::Int(65001)) | None => None,
        Some(PropValue::Int(cp)) => Some(format!("cp{cp}")),
        Some(_) => None,
    };
    let bytes = bytes.strip_suffix(&[0]).unwrap_or(bytes);
    if let Some(decode) =
        label.and_then(|l| mail_parser::decoders::charsets::map::charset_decoder(l.as_bytes()))
    {
        return decode(bytes);
    }
    decode_8bit(bytes)
}

/// UTF-8 when the bytes are valid UTF-8, Windows-1252 otherwise.
pub(crate) fn decode_8bit(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => text.to_string(),
        Err(_) => match mail_parser::decoders::charsets::map::charset_decoder(b"windows-1252") {
            Some(decode) => decode(bytes),
            None => String::from_utf8_lossy(bytes).into_owned(),
        },
    }
}

/// Decodes UTF-16LE text, dropping a terminating NUL.
pub(crate) fn decode_utf16le(bytes: &[u8]) -> String {
    let units: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    let text = String::from_utf16_lossy(&units);
    text.trim_end_matches('\0').to_string()
}

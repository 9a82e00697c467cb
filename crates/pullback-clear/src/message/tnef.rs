//! TNEF (`winmail.dat`, `application/ms-tnef`): the stream Outlook and Exchange use to carry a
//! rich message. Reading keeps what analysis needs: the attachments (title, data, MAPI names
//! and types), messages embedded as attachments, and the message's own subject and bodies.

use std::collections::BTreeMap;

use super::attachment::{u16_le, u32_le};
use super::mapi::{self, MapiAttachment, MapiMessage, PropValue, tag};

/// The first four bytes of every TNEF stream, little-endian.
const SIGNATURE: [u8; 4] = [0x78, 0x9F, 0x3E, 0x22];

/// How deep messages embedded in messages are followed.
const MAX_EMBEDDING: usize = 3;

/// How many attributes and properties are read before the rest is ignored.
const MAX_ITEMS: usize = 20_000;

const LEVEL_MESSAGE: u8 = 1;

// Attribute ids, the lower 16 bits of an attribute tag.
const ATT_SUBJECT: u16 = 0x8004;
const ATT_BODY: u16 = 0x800C;
const ATT_ATTACH_DATA: u16 = 0x800F;
const ATT_ATTACH_TITLE: u16 = 0x8010;
const ATT_ATTACH_REND_DATA: u16 = 0x9002;
const ATT_MAPI_PROPS: u16 = 0x9003;
const ATT_ATTACHMENT: u16 = 0x9005;

/// The interface id that marks an embedded-object property as an embedded message.
const IID_IMESSAGE: [u8; 16] = [
    0x07, 0x03, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0xC0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x46,
];

/// Whether `data` starts like a TNEF stream.
pub(crate) fn is_tnef(data: &[u8]) -> bool {
    data.starts_with(&SIGNATURE)
}

/// Reads a TNEF stream. What cannot be read is noted in the message's problems; whatever was
/// read before that is kept.
pub(crate) fn read(data: &[u8]) -> MapiMessage {
    read_at(data, 0)
}

fn read_at(data: &[u8], embedding: usize) -> MapiMessage {
    let mut message = MapiMessage::default();
    if !is_tnef(data) {
        message.problems.push("TNEF: no TNEF signature".into());
        return message;
    }
    let mut at = 6;
    let mut current: Option<MapiAttachment> = None;
    for _ in 0..MAX_ITEMS {
        if at >= data.len() {
            break;
        }
        let Some(header) = data.get(at..at + 9) else {
            message
                .problems
                .push(format!("TNEF: stream cut inside an attribute at byte {at}"));
            break;
        };
        let level = header[0];
        let id = u16_le(header, 1);
        let len = u32_le(header, 5) as usize;
        let Some(value) = data.get(at + 9..(at + 9).saturating_add(len)) else {
            message
                .problems
                .push(format!("TNEF: attribute at byte {at} runs past the end"));
            break;
        };
        at += 9 + len + 2;

        if level == LEVEL_MESSAGE {
            read_message_attribute(&mut message, id, value, embedding);
            continue;
        }
        if id == ATT_ATTACH_REND_DATA {
            message.attachments.extend(current.take());
        }
        let item = current.get_or_insert_with(MapiAttachment::default);
        match id {
            ATT_ATTACH_TITLE => item.title = Some(mapi::decode_8bit(trim_nul(value))),
            ATT_ATTACH_DATA => item.data = Some(value.to_vec()),
            ATT_ATTACHMENT => {
                let props = read_props(value, embedding, &mut message.problems);
                take_embedded(item, props);
            }
            _ => {}
        }
    }
    message.attachments.extend(current);
    message
}

fn read_message_attribute(message: &mut MapiMessage, id: u16, value: &[u8], embedding: usize) {
    match id {
        ATT_MAPI_PROPS => {
            let props = read_props(value, embedding, &mut message.problems);
            for (tag, value) in props.props {
                message.props.insert(tag, value);
            }
        }
        ATT_SUBJECT => {
            let subject = PropValue::Text(mapi::decode_8bit(trim_nul(value)));
            message.props.entry(tag::SUBJECT).or_insert(subject);
        }
        ATT_BODY => {
            let body = PropValue::Text(mapi::decode_8bit(trim_nul(value)));
            message.props.entry(tag::BODY).or_insert(body);
        }
        _ => {}
    }
}

/// An attachment's MAPI properties, and the message embedded in it if there is one.
#[derive(Default)]
struct Props {
    props: BTreeMap<u16, PropValue>,
    embedded: Option<MapiMessage>,
}

fn take_embedded(item: &mut MapiAttachment, props: Props) {
    item.props.extend(props.props);
    if let Some(embedded) = props.embedded {
        item.embedded = Some(Box::new(embedded));
    }
}

/// Reads an encoded property list (MS-OXTNEF 2.1.3.4). Named properties are skipped; an
/// embedded message is read as a nested TNEF stream.
fn read_props(data: &[u8], embedding: usize, problems: &mut Vec<String>) -> Props {
    let mut props = Props::default();
    let count = u32_le(data, 0) as usize;
    let mut at = 4;
    for _ in 0..count.min(MAX_ITEMS) {
        match read_prop(data, at, embedding, &mut props) {
            Some(next) => at = next,
            None => {
                problems.push(format!(
                    "TNEF: property list cut or unreadable at byte {at}"
                ));
                break;
            }
        }
    }
    props
}

/// Reads one property starting at `at`; returns where the next one starts.
fn read_prop(data: &[u8], mut at: usize, embedding: usize, props: &mut Props) -> Option<usize> {
    let kind = u16_le(data.get(at..at + 4)?, 0);
    let id = u16_le(data, at + 2);
    at += 4;
    if id >= 0x8000 {
        data.get(at..at + 20)?;
        let name_kind = u32_le(data, at + 16);
        at += 20;
        if name_kind == 0 {
            at += 4;
        } else {
            let len = u32_le(data.get(at..at + 4)?, 0) as usize;
            at = at.checked_add(4 + padded(len))?;
        }
    }

    let multi = kind & 0x1000 != 0;
    let base = kind & !0x1000;
    let variable = matches!(base, 0x001E | 0x001F | 0x0102 | 0x000D);
    let values = if multi || variable {
        u32_le(data.get(at..at + 4)?, 0) as usize
    } else {
        1
    };
    if multi || variable {
        at += 4;
    }

    let mut first = None;
    for _ in 0..values.min(MAX_ITEMS) {
        let (value, next) = if variable {
            let len = u32_le(data.get(at..at + 4)?, 0) as usize;
            let bytes = data.get(at + 4..(at + 4).checked_add(len)?)?;
            (bytes, at + 4 + padded(len))
        } else {
            let size = fixed_size(base)?;
            (data.get(at..at + size)?, at + size)
        };
        at = next;
        first.get_or_insert(value);
    }

    if let Some(value) = first.filter(|_| id < 0x8000 && !multi) {
        let decoded = decode_value(base, value, embedding, props);
        props.props.insert(id, decoded);
    }
    Some(at)
}

fn decode_value(base: u16, value: &[u8], embedding: usize, props: &mut Props) -> PropValue {
    match base {
        0x001E => PropValue::Text(mapi::decode_8bit(trim_nul(value))),
        0x001F => PropValue::Text(mapi::decode_utf16le(value)),
        0x0102 => PropValue::Binary(value.to_vec()),
        0x000D => {
            let (iid, content) = value.split_at(value.len().min(16));
            if iid == IID_IMESSAGE && embedding < MAX_EMBEDDING && is_tnef(content) {
                props.embedded = Some(read_at(content, embedding + 1));
                PropValue::Other
            } else {
                PropValue::Binary(content.to_vec())
            }
        }
        0x0002 => PropValue::Int(i64::from(u16_le(value, 0) as i16)),
        0x0003 | 0x000B => PropValue::Int(i64::from(u32_le(value, 0) as i32)),
        _ => PropValue::Other,
    }
}

fn fixed_size(base: u16) -> Option<usize> {
    Some(match base {
        0x0001 | 0x0002 | 0x0003 | 0x0004 | 0x000A | 0x000B => 4,
        0x0005 | 0x0006 | 0x0007 | 0x0014 | 0x0040 => 8,
        0x0048 => 16,
        _ => return None,
    })
}

fn padded(len: usize) -> usize {
    len.div_ceil(4) * 4
}

fn trim_nul(bytes: &[u8]) -> &[u8] {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    &bytes[..end]
}

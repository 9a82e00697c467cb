//! Outlook `.msg` files: an OLE compound file whose streams hold the MAPI properties of one
//! message (`__substg1.0_<tag><type>`), with storages for its recipients and attachments and,
//! inside an attachment, a storage for an embedded message.

use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};

use crate::message::MAX_MESSAGE_BYTES;
use crate::message::mapi::{self, MapiAttachment, MapiMessage, PropValue};

type Compound<'a> = cfb::CompoundFile<Cursor<&'a [u8]>>;

/// The first bytes of every OLE compound file.
const CFB_MAGIC: &[u8] = b"\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1";

/// How deep messages embedded in attachments are followed.
const MAX_EMBEDDING: usize = 3;

/// How many entries of one storage are read.
const MAX_ENTRIES: usize = 2_000;

/// Whether `data` is an OLE compound file (of any kind; [`read`] says whether it is a message).
pub(crate) fn is_compound_file(data: &[u8]) -> bool {
    data.starts_with(CFB_MAGIC)
}

/// Reads a `.msg` file. The cfb crate reads hostile input, so a panic inside it is caught and
/// reported as an unreadable file.
pub(crate) fn read(data: &[u8]) -> Result<MapiMessage, String> {
    std::panic::catch_unwind(|| read_inner(data))
        .unwrap_or_else(|_| Err("the .msg file could not be read (corrupt compound file)".into()))
}

fn read_inner(data: &[u8]) -> Result<MapiMessage, String> {
    let mut file = cfb::CompoundFile::open(Cursor::new(data))
        .map_err(|e| format!("not a readable compound file: {e}"))?;
    let message = read_message(&mut file, Path::new("/"), 0, 32);
    if message.props.is_empty() && message.attachments.is_empty() {
        return Err("a compound file without message properties: not an Outlook message".into());
    }
    Ok(message)
}

/// Reads the message stored at `path`. `header_len` is the size of the header of its fixed
/// property stream: 32 bytes for the top message, 24 for an embedded one.
fn read_message(
    file: &mut Compound<'_>,
    path: &Path,
    embedding: usize,
    header_len: usize,
) -> MapiMessage {
    let mut message = MapiMessage::default();
    for (name, child, is_stream) in children(file, path) {
        if name.starts_with("__recip_version1.0_") && !is_stream {
            let recipient = read_props(file, &child, 8, &mut message.problems);
            message.recipients.push(recipient);
        } else if name.starts_with("__attach_version1.0_") && !is_stream {
            let item = read_attachment(file, &child, embedding, &mut message.problems);
            message.attachments.push(item);
        }
    }
    message.props = read_props(file, path, header_len, &mut message.problems);
    message
}

fn read_attachment(
    file: &mut Compound<'_>,
    path: &Path,
    embedding: usize,
    problems: &mut Vec<String>,
) -> MapiAttachment {
    let mut item = MapiAttachment {
        props: read_props(file, path, 8, problems),
        ..Default::default()
    };
    let embedded_path = path.join("__substg1.0_3701000D");
    if file.is_storage(&embedded_path) {
        if embedding < MAX_EMBEDDING {
            let embedded = read_message(file, &embedded_path, embedding + 1, 24);
            item.embedded = Some(Box::new(embedded));
        } else {
            problems.push("a message embedded too deep was not read".into());
        }
    }
    item
}

/// The name, path and kind of each entry directly inside a storage.
fn children(file: &Compound<'_>, path: &Path) -> Vec<(String, PathBuf, bool)> {
    match file.read_storage(path) {
        Ok(entries) => entries
            .take(MAX_ENTRIES)
            .map(|e| (e.name().to_string(), e.path().to_path_buf(), e.is_stream()))
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Reads the properties stored directly in a storage: one stream per variable-size property
/// and the fixed-size ones in `__properties_version1.0`.
fn read_props(
    file: &mut Compound<'_>,
    path: &Path,
    header_len: usize,
    problems: &mut Vec<String>,
) -> std::collections::BTreeMap<u16, PropValue> {
    let mut props = std::collections::BTreeMap::new();
    for (name, child, is_stream) in children(file, path) {
        if !is_stream {
            continue;
        }
        if name == "__properties_version1.0" {
            if let Some(bytes) = read_stream(file, &child, problems) {
                read_fixed(&bytes, header_len, &mut props);
            }
            continue;
        }
        let Some((id, kind)) = parse_stream_name(&name) else {
            continue;
        };
        if !matches!(kind, 0x001E | 0x001F | 0x0102) {
            continue;
        }
        let Some(bytes) = read_stream(file, &child, problems) else {
            continue;
        };
        let value = match kind {
            0x001F => PropValue::Text(mapi::decode_utf16le(&bytes)),
            0x001E => PropValue::Text(mapi::decode_8bit(&bytes)),
            _ => PropValue::Binary(bytes),
        };
        props.insert(id, value);
    }
    props
}

/// `__substg1.0_0037001F` names property 0x0037 of type 0x001F.
fn parse_stream_name(name: &str) -> Option<(u16, u16)> {
    let hex = name.strip_prefix("__substg1.0_")?;
    if hex.len() != 8 {
        return None;
    }
    let id = u16::from_str_radix(&hex[..4], 16).ok()?;
    let kind = u16::from_str_radix(&hex[4..], 16).ok()?;
    Some((id, kind))
}

/// Fixed-size properties: 16-byte entries of type, id, flags and an 8-byte value.
fn read_fixed(
    bytes: &[u8],
    header_len: usize,
    props: &mut std::collections::BTreeMap<u16, PropValue>,
) {
    let entries = bytes.get(header_len..).unwrap_or_default();
    for entry in entries.chunks_exact(16) {
        let kind = u16::from_le_bytes([entry[0], entry[1]]);
        let id = u16::from_le_bytes([entry[2], entry[3]]);
        let value = i32::from_le_bytes([entry[8], entry[9], entry[10], entry[11]]);
        if matches!(kind, 0x0002 | 0x0003 | 0x000B) {
            props.entry(id).or_insert(PropValue::Int(i64::from(value)));
        }
    }
}

fn read_stream(
    file: &mut Compound<'_>,
    path: &Path,
    problems: &mut Vec<String>,
) -> Option<Vec<u8>> {
    let stream = file.open_stream(path).ok()?;
    let mut bytes = Vec::new();
    let limit = MAX_MESSAGE_BYTES as u64;
    if stream.take(limit).read_to_end(&mut bytes).is_err() {
        problems.push(format!("{}: stream could not be read", path.display()));
        return None;
    }
    Some(bytes)
}

/// Whether a compound file holds message properties, without reading them all.
pub(crate) fn looks_like_message(data: &[u8]) -> bool {
    is_compound_file(data)
        && std::panic::catch_unwind(|| {
            let Ok(file) = cfb::CompoundFile::open(Cursor::new(data)) else {
                return false;
            };
            children(&file, Path::new("/"))
                .iter()
                .any(|(name, _, _)| name.starts_with("__substg1.0_"))
        })
        .unwrap_or(false)
}

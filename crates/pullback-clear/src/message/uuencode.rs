//! uuencoded files, the way attachments travelled before MIME and still do in some mailers:
//! a `begin <mode> <name>` line, lines of encoded data, and an `end` line.

/// A file found in uuencoded form.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct UuFile {
    pub name: String,
    pub data: Vec<u8>,
    /// False when the text ended before the `end` line.
    pub complete: bool,
}

/// How many uuencoded files one text may yield.
const MAX_FILES: usize = 50;

/// Finds and decodes every uuencoded file in `text`.
pub(crate) fn decode_all(text: &str) -> Vec<UuFile> {
    let mut files = Vec::new();
    let mut lines = text.lines();
    while files.len() < MAX_FILES {
        let Some(line) = lines.next() else { break };
        let Some(name) = begin_line(line) else {
            continue;
        };
        let mut file = UuFile {
            name,
            data: Vec::new(),
            complete: false,
        };
        for line in lines.by_ref() {
            let line = line.trim_end_matches('\r');
            if line == "end" {
                file.complete = true;
                break;
            }
            decode_line(line, &mut file.data);
        }
        files.push(file);
    }
    files
}

/// The file name of a `begin 644 name` line.
fn begin_line(line: &str) -> Option<String> {
    let rest = line.trim_end().strip_prefix("begin ")?;
    let (mode, name) = rest.split_once(' ')?;
    let is_mode = (3..=4).contains(&mode.len()) && mode.bytes().all(|b| (b'0'..=b'7').contains(&b));
    let name = name.trim();
    (is_mode && !name.is_empty()).then(|| name.to_string())
}

/// Decodes one line: a length character, then groups of four characters for three bytes.
/// A line that is not uuencoding is skipped.
fn decode_line(line: &str, out: &mut Vec<u8>) {
    let bytes = line.as_bytes();
    let Some(&first) = bytes.first() else { return };
    let len = usize::from(first.wrapping_sub(b' ') & 0x3F);
    let body = &bytes[1..];
    if len == 0 || body.len() < len.div_ceil(3) * 4 - 2 {
        return;
    }
    let sextet = |b: u8| b.wrapping_sub(b' ') & 0x3F;
    let mut decoded = Vec::with_capacity(len + 2);
    for group in body.chunks(4) {
        let mut g = [0u8; 4];
        for (slot, &b) in g.iter_mut().zip(group) {
            *slot = sextet(b);
        }
        decoded.push((g[0] << 2) | (g[1] >> 4));
        decoded.push((g[1] << 4) | (g[2] >> 2));
        decoded.push((g[2] << 6) | g[3]);
    }
    decoded.truncate(len);
    out.extend_from_slice(&decoded);
}

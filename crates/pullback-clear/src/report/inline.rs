//! Messages forwarded inline: the mail client put the original below a separator and a short
//! block of `From:`, `Sent:`, `To:` and `Subject:` lines, and dropped its real headers. This
//! finds that block in plain text, or in HTML through a text rendering that remembers where
//! each line came from.

use crate::facts::{HeaderFacts, Mailbox};

/// A forwarded block found in a body.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Forwarded {
    /// What the header lines of the block say.
    pub headers: HeaderFacts,
    /// The text after the header lines.
    pub body: String,
    /// Where the block (its separator, or its first header line) starts in the searched text.
    pub start: usize,
}

/// Lines that mail clients put above a forwarded block, lower case.
const SEPARATORS: &[&str] = &[
    "forwarded message",
    "original message",
    "begin forwarded message",
    "weitergeleitete nachricht",
    "ursprüngliche nachricht",
    "message transféré",
    "message d'origine",
    "mensaje reenviado",
    "mensaje original",
    "messaggio inoltrato",
    "doorgestuurd bericht",
];

/// What a header line of a forwarded block can say, by its key in the languages above.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Key {
    From,
    Date,
    To,
    Cc,
    Subject,
    ReplyTo,
}

fn key_of(word: &str) -> Option<Key> {
    let word = word.trim().trim_matches('*').trim().to_lowercase();
    Some(match word.as_str() {
        "from" | "von" | "de" | "da" | "van" => Key::From,
        "sent" | "date" | "gesendet" | "datum" | "envoyé" | "enviado" | "fecha" | "inviato"
        | "verzonden" => Key::Date,
        "to" | "an" | "à" | "para" | "a" | "aan" => Key::To,
        "cc" => Key::Cc,
        "subject" | "betreff" | "objet" | "asunto" | "oggetto" | "onderwerp" => Key::Subject,
        "reply-to" => Key::ReplyTo,
        _ => return None,
    })
}

/// How many lines below a separator the header block may start.
const MAX_GAP: usize = 3;

/// How many lines the header block may take, continuation lines included.
const MAX_BLOCK_LINES: usize = 40;

/// Finds the first forwarded block in `text`: after a separator line, or, without one, a
/// `From:` line that a subject or date line follows within the block.
pub(crate) fn find(text: &str) -> Option<Forwarded> {
    let lines = lines_with_offsets(text);
    for (index, &(offset, line)) in lines.iter().enumerate() {
        let plain = unquoted(line);
        let lower = plain.to_lowercase();
        let is_separator = SEPARATORS.iter().any(|s| lower.contains(s)) && lower.len() < 120
            || plain.len() >= 10 && plain.chars().all(|c| c == '_');
        if is_separator {
            let first = (index + 1..lines.len().min(index + 1 + MAX_GAP))
                .find(|&i| !unquoted(lines[i].1).is_empty());
            if let Some(found) = first.and_then(|i| block_at(text, &lines, i, offset)) {
                return Some(found);
            }
        } else if header_line(plain).is_some_and(|(key, _)| key == Key::From) {
            let found = block_at(text, &lines, index, offset);
            if found
                .as_ref()
                .is_some_and(|f| f.headers.subject.is_some() || f.headers.date.is_some())
            {
                return found;
            }
        }
    }
    None
}

/// Reads a header block starting at line `first`; needs at least a `From:` line.
fn block_at(text: &str, lines: &[(usize, &str)], first: usize, start: usize) -> Option<Forwarded> {
    let mut fields: Vec<(Key, String)> = Vec::new();
    let mut end = first;
    for (i, &(_, line)) in lines.iter().enumerate().skip(first).take(MAX_BLOCK_LINES) {
        let plain = unquoted(line);
        if plain.is_empty() {
            end = i;
            break;
        }
        match header_line(plain) {
            Some((key, value)) => fields.push((key, value.to_string())),
            None => match fields.last_mut() {
                Some((key, value)) if continues(*key, value, plain) => {
                    value.push(' ');
                    value.push_str(plain);
                }
                Some(_) => {
                    end = i;
                    break;
                }
                None => return None,
            },
        }
        end = i + 1;
    }
    if !fields.iter().any(|(key, _)| *key == Key::From) {
        return None;
    }

    let body_start = lines.get(end).map_or(text.len(), |&(offset, _)| offset);
    Some(Forwarded {
        headers: headers_from(&fields),
        body: text[body_start..]
            .trim_start_matches(['\r', '\n'])
            .to_string(),
        start,
    })
}

/// Whether a line that is not a header line continues the value above it: only a list of
/// recipients wraps onto more lines.
fn continues(key: Key, value: &str, line: &str) -> bool {
    let is_list = matches!(key, Key::To | Key::Cc);
    is_list && (value.trim_end().ends_with([';', ',']) || line.contains('@'))
}

fn headers_from(fields: &[(Key, String)]) -> HeaderFacts {
    let mut headers = HeaderFacts::default();
    for (key, value) in fields {
        let value = value.trim();
        match key {
            Key::From => {
                headers.from = headers
                    .from
                    .take()
                    .or_else(|| mailboxes(value).into_iter().next())
            }
            Key::Date => headers.date = headers.date.take().or(Some(value.to_string())),
            Key::To => headers.to.extend(mailboxes(value)),
            Key::Cc => headers.cc.extend(mailboxes(value)),
            Key::Subject => headers.subject = headers.subject.take().or(Some(value.to_string())),
            Key::ReplyTo => headers.reply_to.extend(mailboxes(value)),
        }
        headers.all.push((format!("{key:?}"), value.to_string()));
    }
    headers
}

/// `Key: value`, when the key is one a forwarded block uses.
fn header_line(line: &str) -> Option<(Key, &str)> {
    let (word, value) = line.split_once(':')?;
    if word.len() > 20 {
        return None;
    }
    let key = key_of(word)?;
    Some((key, value.trim().trim_start_matches('*').trim()))
}

/// A line without its quotation marks (`> `) and surrounding space.
fn unquoted(line: &str) -> &str {
    line.trim()
        .trim_start_matches(|c: char| c == '>' || c.is_whitespace())
        .trim()
}

fn lines_with_offsets(text: &str) -> Vec<(usize, &str)> {
    let mut offset = 0;
    text.split('\n')
        .map(|line| {
            let at = offset;
            offset += line.len() + 1;
            (at, line.trim_end_matches('\r'))
        })
        .collect()
}

/// The mailboxes of a forwarded `From:` or `To:` value, in the forms clients write them:
/// `Name <a@b>`, `Name [mailto:a@b]`, `"Name" <mailto:a@b>`, `a@b`, or a bare display name.
/// Entries are separated by `;`, or by `,` once an entry holds an address.
pub(crate) fn mailboxes(value: &str) -> Vec<Mailbox> {
    let mut found = Vec::new();
    let mut current = String::new();
    for c in value.chars() {
        let ends_entry = c == ';' || c == ',' && (current.contains('@') || current.contains('>'));
        if ends_entry {
            found.extend(mailbox(&current));
            current.clear();
        } else {
            current.push(c);
        }
    }
    found.extend(mailbox(&current));
    found
}

fn mailbox(entry: &str) -> Option<Mailbox> {
    let entry = entry.trim();
    if entry.is_empty() {
        return None;
    }
    let bracket = entry.find(['<', '[']);
    let (name, address) = match bracket {
        Some(open) => {
            let inner = entry[open + 1..].trim_end_matches(['>', ']', ' ']);
            (
                &entry[..open],
                inner.split(['>', ']']).next().unwrap_or(inner),
            )
        }
        None if entry.contains('@') => match entry.rsplit_once(' ') {
            Some((name, address)) => (name, address),
            None => ("", entry),
        },
        None => (entry, ""),
    };
    let address = address
        .trim()
        .trim_matches(['"', '\''])
        .trim_start_matches("mailto:")
        .trim()
        .to_lowercase();
    let name = name.trim().trim_matches(['"', '\'']).trim();
    Some(Mailbox {
        name: Some(name.to_string()).filter(|n| !n.is_empty()),
        address: Some(address).filter(|a| a.contains('@')),
    })
}

/// Text rendered from HTML, with the HTML offset of each rendered line start.
pub(crate) struct RenderedHtml {
    pub text: String,
    line_starts: Vec<(usize, usize)>,
}

impl RenderedHtml {
    /// The HTML offset of the rendered line that holds text offset `at`.
    pub fn html_offset(&self, at: usize) -> usize {
        let index = self
            .line_starts
            .partition_point(|&(text_at, _)| text_at <= at);
        index.checked_sub(1).map_or(0, |i| self.line_starts[i].1)
    }
}

/// Renders HTML as text, a line for each block element. Good enough to find a forwarded
/// block; not a general converter (the URL analysis reads the HTML itself).
pub(crate) fn render_html(html: &str) -> RenderedHtml {
    let mut text = String::with_capacity(html.len() / 2);
    let mut line_starts = vec![(0, 0)];
    let mut rest = html;
    let mut skip_until: Option<&str> = None;
    while !rest.is_empty() {
        let at = html.len() - rest.len();
        if let Some(tag_end) = rest.strip_prefix('<').and_then(|r| r.find('>')) {
            let tag = rest[1..=tag_end].trim_end_matches('>').to_ascii_lowercase();
            rest = &rest[tag_end + 2..];
            let name = tag
                .trim_start_matches('/')
                .split([' ', '/', '\t', '\n'])
                .next()
                .unwrap_or("");
            if let Some(closing) = skip_until {
                if tag.starts_with('/') && name == closing {
                    skip_until = None;
                }
                continue;
            }
            if matches!(name, "style" | "script" | "head" | "title") && !tag.starts_with('/') {
                skip_until = Some(match name {
                    "style" => "style",
                    "script" => "script",
                    "head" => "head",
                    _ => "title",
                });
                continue;
            }
            const BLOCKS: &[&str] = &[
                "br",
                "p",
                "div",
                "tr",
                "li",
                "h1",
                "h2",
                "h3",
                "h4",
                "h5",
                "h6",
                "hr",
                "table",
                "blockquote",
                "pre",
            ];
            let opens_line = name == "br" || !tag.starts_with('/');
            if opens_line && BLOCKS.contains(&name) {
                text.push('\n');
                line_starts.push((text.len(), at));
            }
            continue;
        }
        let first_len = rest.chars().next().map_or(1, char::len_utf8);
        let next = rest[first_len..]
            .find('<')
            .map_or(rest.len(), |i| i + first_len);
        if skip_until.is_none() {
            push_decoded(&mut text, &rest[..next]);
        }
        rest = &rest[next..];
    }
    RenderedHtml { text, line_starts }
}

/// Appends text with its common character references decoded and its whitespace collapsed.
fn push_decoded(out: &mut String, chunk: &str) {
    let decoded = chunk
        .replace("&nbsp;", " ")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&");
    let mut last_space = out.ends_with([' ', '\n']);
    for c in decoded.chars() {
        if c.is_whitespace() {
            if !last_space {
                out.push(' ');
            }
            last_space = true;
        } else {
            out.push(c);
            last_space = false;
        }
    }
}

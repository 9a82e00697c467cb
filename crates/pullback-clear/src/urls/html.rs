//! A forgiving, single-pass HTML tokenizer: enough to read links, forms and visible text from
//! mail, never a DOM. Entities are left for the caller to decode, once.

use std::borrow::Cow;

/// One piece of an HTML document.
#[derive(Debug, PartialEq)]
pub enum Token<'a> {
    /// A start tag: its name, lower case, and attributes as (name lower case, value with its
    /// entities decoded once).
    Start {
        name: String,
        attrs: Vec<(String, Cow<'a, str>)>,
    },
    End {
        name: String,
    },
    /// Text between tags, entities not yet decoded. Comments, `<script>` and `<style>` are
    /// not text.
    Text(&'a str),
    /// The content of a `<style>` element.
    Style(&'a str),
    /// The content of a `<script>` element.
    Script(&'a str),
}

/// The most attributes read from one tag; the rest are skipped.
const MAX_ATTRS: usize = 64;

/// The tokens of `html`, lazily, in one pass.
pub fn tokens(html: &str) -> Tokens<'_> {
    Tokens {
        html,
        at: 0,
        raw_until: None,
    }
}

pub struct Tokens<'a> {
    html: &'a str,
    at: usize,
    /// After `<script>` or `<style>`: the end tag that closes its raw content.
    raw_until: Option<&'static str>,
}

impl<'a> Iterator for Tokens<'a> {
    type Item = Token<'a>;

    fn next(&mut self) -> Option<Token<'a>> {
        let bytes = self.html.as_bytes();
        if let Some(closer) = self.raw_until.take() {
            let start = self.at;
            self.at = find_ignore_case(bytes, self.at, closer).unwrap_or(bytes.len());
            if self.at > start {
                let content = &self.html[start..self.at];
                match closer {
                    "</style" => return Some(Token::Style(content)),
                    "</script" => return Some(Token::Script(content)),
                    _ => {}
                }
            }
        }
        while self.at < bytes.len() {
            let start = self.at;
            if bytes[start] != b'<' {
                let end = memchr(b'<', bytes, start).unwrap_or(bytes.len());
                self.at = end;
                return Some(Token::Text(&self.html[start..end]));
            }
            let next = bytes.get(start + 1).copied().unwrap_or(0);
            if next.is_ascii_alphabetic() {
                return Some(self.start_tag());
            }
            if next == b'/'
                && bytes
                    .get(start + 2)
                    .is_some_and(|b| b.is_ascii_alphabetic())
            {
                let (name, after) = read_name(bytes, start + 2);
                self.at = memchr(b'>', bytes, after).map_or(bytes.len(), |p| p + 1);
                return Some(Token::End { name });
            }
            if bytes[start..].starts_with(b"<!--") {
                self.at = find(bytes, start + 4, b"-->").map_or(bytes.len(), |p| p + 3);
                continue;
            }
            if next == b'!' || next == b'?' {
                self.at = memchr(b'>', bytes, start).map_or(bytes.len(), |p| p + 1);
                continue;
            }
            // A lone '<' is text.
            let end = memchr(b'<', bytes, start + 1).unwrap_or(bytes.len());
            self.at = end;
            return Some(Token::Text(&self.html[start..end]));
        }
        None
    }
}

impl<'a> Tokens<'a> {
    fn start_tag(&mut self) -> Token<'a> {
        let bytes = self.html.as_bytes();
        let (name, mut at) = read_name(bytes, self.at + 1);
        let mut attrs = Vec::new();
        loop {
            while at < bytes.len() && (bytes[at].is_ascii_whitespace() || bytes[at] == b'/') {
                at += 1;
            }
            if at >= bytes.len() || bytes[at] == b'>' {
                at = (at + 1).min(bytes.len());
                break;
            }
            let name_start = at;
            while at < bytes.len() && !b" \t\r\n\x0c=>/".contains(&bytes[at]) {
                at += 1;
            }
            let attr_name = self.html[name_start..at].to_ascii_lowercase();
            while at < bytes.len() && bytes[at].is_ascii_whitespace() {
                at += 1;
            }
            let mut value: &str = "";
            if bytes.get(at) == Some(&b'=') {
                at += 1;
                while at < bytes.len() && bytes[at].is_ascii_whitespace() {
                    at += 1;
                }
                let (v, after) = read_value(self.html, at);
                value = v;
                at = after;
            }
            if attrs.len() < MAX_ATTRS && !attr_name.is_empty() {
                attrs.push((attr_name, decode_entities(value)));
            }
        }
        self.at = at;
        self.raw_until = match name.as_str() {
            "script" => Some("</script"),
            "style" => Some("</style"),
            "textarea" => Some("</textarea"),
            _ => None,
        };
        Token::Start { name, attrs }
    }
}

fn read_name(bytes: &[u8], from: usize) -> (String, usize) {
    let mut at = from;
    while at < bytes.len()
        && (bytes[at].is_ascii_alphanumeric() || bytes[at] == b'-' || bytes[at] == b':')
    {
        at += 1;
    }
    let name = String::from_utf8_lossy(&bytes[from..at]).to_ascii_lowercase();
    (name, at)
}

/// An attribute value, quoted or not, and where reading goes on.
fn read_value(html: &str, at: usize) -> (&str, usize) {
    let bytes = html.as_bytes();
    match bytes.get(at) {
        Some(&q @ (b'"' | b'\'')) => match memchr(q, bytes, at + 1) {
            Some(end) => (&html[at + 1..end], end + 1),
            // An unclosed quote: the value runs to the end of the tag.
            None => {
                let end = memchr(b'>', bytes, at + 1).unwrap_or(bytes.len());
                (&html[at + 1..end], end)
            }
        },
        _ => {
            let mut end = at;
            while end < bytes.len() && !bytes[end].is_ascii_whitespace() && bytes[end] != b'>' {
                end += 1;
            }
            (&html[at..end], end)
        }
    }
}

fn memchr(needle: u8, bytes: &[u8], from: usize) -> Option<usize> {
    bytes
        .get(from..)?
        .iter()
        .position(|&b| b == needle)
        .map(|p| p + from)
}

fn find(bytes: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    let hay = bytes.get(from..)?;
    let mut at = 0;
    while let Some(p) = memchr(needle[0], hay, at) {
        if hay[p..].starts_with(needle) {
            return Some(from + p);
        }
        at = p + 1;
    }
    None
}

fn find_ignore_case(bytes: &[u8], from: usize, needle: &str) -> Option<usize> {
    let needle = needle.as_bytes();
    let mut at = from;
    while let Some(p) = memchr(b'<', bytes, at) {
        let candidate = &bytes[p..];
        if candidate.len() >= needle.len() && candidate[..needle.len()].eq_ignore_ascii_case(needle)
        {
            return Some(p);
        }
        at = p + 1;
    }
    None
}

/// Decodes HTML character references once: numeric ones and the common named ones. An
/// unknown reference stays as written; `&amp;lt;` becomes `&lt;`, never `<`.
pub fn decode_entities(text: &str) -> Cow<'_, str> {
    if !text.contains('&') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        match reference(rest) {
            Some((decoded, used)) => {
                out.push_str(&decoded.as_str());
                rest = &rest[used..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// A decoded reference at the start of `text` (which starts with '&') and its length.
fn reference(text: &str) -> Option<(Decoded, usize)> {
    let bytes = text.as_bytes();
    if bytes.get(1) == Some(&b'#') {
        let hex = matches!(bytes.get(2), Some(b'x' | b'X'));
        let digits_from = if hex { 3 } else { 2 };
        let mut end = digits_from;
        while end < bytes.len()
            && end - digits_from < 8
            && (if hex {
                bytes[end].is_ascii_hexdigit()
            } else {
                bytes[end].is_ascii_digit()
            })
        {
            end += 1;
        }
        if end == digits_from {
            return None;
        }
        let value = u32::from_str_radix(&text[digits_from..end], if hex { 16 } else { 10 }).ok()?;
        let c = char::from_u32(value)
            .filter(|&c| c != '\0')
            .unwrap_or('\u{FFFD}');
        let used = if bytes.get(end) == Some(&b';') {
            end + 1
        } else {
            end
        };
        return Some((Decoded::Char(c), used));
    }
    let mut end = 1;
    while end < bytes.len() && end < 12 && bytes[end].is_ascii_alphanumeric() {
        end += 1;
    }
    let name = &text[1..end];
    let with_semicolon = bytes.get(end) == Some(&b';');
    let decoded = named(name)?;
    // Without its ';' only the oldest few are references; "&copy=1" in a query is not one.
    if !with_semicolon && !matches!(name, "amp" | "lt" | "gt" | "quot" | "nbsp") {
        return None;
    }
    Some((Decoded::Str(decoded), end + usize::from(with_semicolon)))
}

enum Decoded {
    Char(char),
    Str(&'static str),
}

impl Decoded {
    fn as_str(&self) -> Cow<'static, str> {
        match self {
            Decoded::Char(c) => Cow::Owned(c.to_string()),
            Decoded::Str(s) => Cow::Borrowed(s),
        }
    }
}

fn named(name: &str) -> Option<&'static str> {
    Some(match name {
        "amp" | "AMP" => "&",
        "lt" | "LT" => "<",
        "gt" | "GT" => ">",
        "quot" | "QUOT" => "\"",
        "apos" => "'",
        "nbsp" => "\u{A0}",
        "shy" => "\u{AD}",
        "zwnj" => "\u{200C}",
        "zwj" => "\u{200D}",
        "copy" => "©",
        "reg" => "®",
        "trade" => "™",
        "ndash" => "–",
        "mdash" => "—",
        "hellip" => "…",
        "laquo" => "«",
        "raquo" => "»",
        "lsquo" => "‘",
        "rsquo" => "’",
        "ldquo" => "“",
        "rdquo" => "”",
        "bull" => "•",
        "middot" => "·",
        "euro" => "€",
        "pound" => "£",
        "yen" => "¥",
        "cent" => "¢",
        "sol" => "/",
        "colon" => ":",
        "period" => ".",
        "commat" => "@",
        "quest" => "?",
        "equals" => "=",
        "num" => "#",
        "percnt" => "%",
        "lowbar" => "_",
        "aacute" => "á",
        "eacute" => "é",
        "iacute" => "í",
        "oacute" => "ó",
        "uacute" => "ú",
        "agrave" => "à",
        "egrave" => "è",
        "ccedil" => "ç",
        "atilde" => "ã",
        "otilde" => "õ",
        "ntilde" => "ñ",
        "auml" => "ä",
        "ouml" => "ö",
        "uuml" => "ü",
        "szlig" => "ß",
        "ecirc" => "ê",
        "acirc" => "â",
        "ocirc" => "ô",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entities_are_decoded_once() {
        assert_eq!(decode_entities("a&amp;lt;b"), "a&lt;b");
        assert_eq!(decode_entities("&#104;&#x74;tp"), "http");
        assert_eq!(decode_entities("?a=1&copy=2&b"), "?a=1&copy=2&b");
        assert_eq!(decode_entities("x&unknown;y"), "x&unknown;y");
    }

    #[test]
    fn tags_attributes_and_text_are_read() {
        let html = "<p>Hi <A HREF='http://a.example/x?y=1&amp;z=2' class=b>there</a><!-- <a href=x> -->\
                    <script>var s = '<a href=\"http://hidden.example\">';</script>done";
        let tokens: Vec<_> = tokens(html).collect();
        assert!(tokens.contains(&Token::Start {
            name: "a".into(),
            attrs: vec![
                (
                    "href".into(),
                    Cow::Owned("http://a.example/x?y=1&z=2".into())
                ),
                ("class".into(), Cow::Borrowed("b")),
            ],
        }));
        assert!(tokens.contains(&Token::Text("done")));
        assert!(
            !tokens
                .iter()
                .any(|t| matches!(t, Token::Text(s) if s.contains("hidden")))
        );
    }

    #[test]
    fn broken_markup_does_not_stop_reading() {
        let tokens: Vec<_> = tokens("a < b <p class=\"x>text").collect();
        assert_eq!(tokens[0], Token::Text("a "));
        assert_eq!(tokens[1], Token::Text("< b "));
    }
}

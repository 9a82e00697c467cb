//! Parsing IMAP4rev1 server responses (RFC 3501 section 7) from complete response bytes, with
//! any literals inline exactly as they came off the wire.

use std::fmt;

/// One response from the server.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Response {
    /// `+ ...`: the server waits for the rest of a command.
    Continuation,
    /// `* OK|NO|BAD|BYE|PREAUTH ...`.
    Status(Status),
    /// Any other untagged response, as a list of values (`* 3 FETCH (...)` gives
    /// `[3, FETCH, (...)]`).
    Data(Vec<Value>),
    /// The completion of the command with this tag.
    Tagged { tag: String, status: Status },
}

/// A status response: its kind, the optional response code in brackets, and the text.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Status {
    pub kind: StatusKind,
    /// The response code without its brackets, e.g. `ALREADYEXISTS` or `CAPABILITY IMAP4rev1`.
    pub code: Option<String>,
    pub text: String,
}

impl Status {
    /// The first word of the response code, upper case.
    pub fn code_name(&self) -> Option<String> {
        let code = self.code.as_deref()?;
        code.split_whitespace().next().map(str::to_ascii_uppercase)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.kind)?;
        if let Some(code) = &self.code {
            write!(f, " [{code}]")?;
        }
        write!(f, " {}", self.text)
    }
}

/// The kind of a status response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StatusKind {
    Ok,
    No,
    Bad,
    Bye,
    Preauth,
}

impl fmt::Display for StatusKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StatusKind::Ok => "OK",
            StatusKind::No => "NO",
            StatusKind::Bad => "BAD",
            StatusKind::Bye => "BYE",
            StatusKind::Preauth => "PREAUTH",
        })
    }
}

/// A value in a data response.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Value {
    /// An atom or number; a section such as `BODY[HEADER.FIELDS (FROM)]` is one atom.
    Atom(String),
    /// A quoted string or a literal.
    Bytes(Vec<u8>),
    List(Vec<Value>),
    Nil,
}

impl Value {
    pub fn as_atom(&self) -> Option<&str> {
        match self {
            Value::Atom(a) => Some(a),
            _ => None,
        }
    }

    pub fn as_number(&self) -> Option<u32> {
        self.as_atom()?.parse().ok()
    }
}

/// Why a response could not be parsed.
#[derive(Debug, PartialEq, thiserror::Error)]
#[error("malformed response at byte {at}: {what}")]
pub(crate) struct ParseError {
    pub at: usize,
    pub what: &'static str,
}

/// Parses one complete response, ending in CRLF.
pub(crate) fn parse_response(bytes: &[u8]) -> Result<Response, ParseError> {
    let line = bytes
        .strip_suffix(b"\r\n")
        .or_else(|| bytes.strip_suffix(b"\n"))
        .unwrap_or(bytes);
    let (first, rest) = split_word(line);
    match first {
        b"+" => Ok(Response::Continuation),
        b"*" => {
            let (word, after) = split_word(rest);
            match status_kind(word) {
                Some(kind) => Ok(Response::Status(parse_status(kind, after))),
                None => Ok(Response::Data(Parser::new(rest).values()?)),
            }
        }
        tag if !tag.is_empty() => {
            let (word, after) = split_word(rest);
            let kind = status_kind(word).ok_or(ParseError {
                at: tag.len(),
                what: "no status",
            })?;
            let tag = String::from_utf8_lossy(tag).into_owned();
            Ok(Response::Tagged {
                tag,
                status: parse_status(kind, after),
            })
        }
        _ => Err(ParseError {
            at: 0,
            what: "empty response",
        }),
    }
}

fn split_word(line: &[u8]) -> (&[u8], &[u8]) {
    match line.iter().position(|&b| b == b' ') {
        Some(i) => (&line[..i], &line[i + 1..]),
        None => (line, &[]),
    }
}

fn status_kind(word: &[u8]) -> Option<StatusKind> {
    match word.to_ascii_uppercase().as_slice() {
        b"OK" => Some(StatusKind::Ok),
        b"NO" => Some(StatusKind::No),
        b"BAD" => Some(StatusKind::Bad),
        b"BYE" => Some(StatusKind::Bye),
        b"PREAUTH" => Some(StatusKind::Preauth),
        _ => None,
    }
}

fn parse_status(kind: StatusKind, rest: &[u8]) -> Status {
    let text = String::from_utf8_lossy(rest);
    if let Some(inner) = text.strip_prefix('[')
        && let Some((code, text)) = inner.split_once(']')
    {
        let text = text.trim_start().to_owned();
        return Status {
            kind,
            code: Some(code.to_owned()),
            text,
        };
    }
    Status {
        kind,
        code: None,
        text: text.into_owned(),
    }
}

/// A cursor over the values of a data response.
struct Parser<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Parser<'a> {
    fn new(bytes: &'a [u8]) -> Parser<'a> {
        Parser { bytes, at: 0 }
    }

    fn error(&self, what: &'static str) -> ParseError {
        ParseError { at: self.at, what }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    /// All values up to the end of the response.
    fn values(&mut self) -> Result<Vec<Value>, ParseError> {
        let mut out = Vec::new();
        loop {
            self.skip_spaces();
            if self.peek().is_none() {
                return Ok(out);
            }
            out.push(self.value()?);
        }
    }

    fn skip_spaces(&mut self) {
        while self.peek() == Some(b' ') {
            self.at += 1;
        }
    }

    fn value(&mut self) -> Result<Value, ParseError> {
        match self.peek() {
            Some(b'(') => self.list(),
            Some(b'"') => self.quoted(),
            Some(b'{') => self.literal(),
            Some(b')') => Err(self.error("unexpected ')'")),
            Some(_) => Ok(self.atom()),
            None => Err(self.error("unexpected end")),
        }
    }

    fn list(&mut self) -> Result<Value, ParseError> {
        self.at += 1;
        let mut items = Vec::new();
        loop {
            self.skip_spaces();
            match self.peek() {
                Some(b')') => {
                    self.at += 1;
                    return Ok(Value::List(items));
                }
                None => return Err(self.error("unclosed list")),
                Some(_) => items.push(self.value()?),
            }
        }
    }

    fn quoted(&mut self) -> Result<Value, ParseError> {
        self.at += 1;
        let mut out = Vec::new();
        loop {
            match self.peek() {
                Some(b'"') => {
                    self.at += 1;
                    return Ok(Value::Bytes(out));
                }
                Some(b'\\') => {
                    self.at += 1;
                    let escaped = self.peek().ok_or_else(|| self.error("unclosed string"))?;
                    out.push(escaped);
                    self.at += 1;
                }
                Some(b) => {
                    out.push(b);
                    self.at += 1;
                }
                None => return Err(self.error("unclosed string")),
            }
        }
    }

    /// `{n}` CRLF and n bytes.
    fn literal(&mut self) -> Result<Value, ParseError> {
        let close = self.bytes[self.at..]
            .iter()
            .position(|&b| b == b'}')
            .ok_or_else(|| self.error("unclosed literal length"))?;
        let digits = &self.bytes[self.at + 1..self.at + close];
        let digits = digits.strip_suffix(b"+").unwrap_or(digits);
        let len: usize = std::str::from_utf8(digits)
            .ok()
            .and_then(|d| d.parse().ok())
            .ok_or_else(|| self.error("bad literal length"))?;
        self.at += close + 1;
        if self.bytes.get(self.at..self.at + 2) != Some(b"\r\n") {
            return Err(self.error("literal length not followed by CRLF"));
        }
        self.at += 2;
        let data = self
            .bytes
            .get(self.at..self.at + len)
            .ok_or_else(|| self.error("short literal"))?;
        self.at += len;
        Ok(Value::Bytes(data.to_vec()))
    }

    /// An atom, where a bracketed section (which may hold spaces and parentheses) is part of
    /// it, as in `BODY[HEADER.FIELDS (FROM)]<0>`.
    fn atom(&mut self) -> Value {
        let start = self.at;
        let mut depth = 0usize;
        while let Some(b) = self.peek() {
            match b {
                b'[' => depth += 1,
                b']' => depth = depth.saturating_sub(1),
                b' ' | b'(' | b')' | b'\r' | b'\n' if depth == 0 => break,
                _ => {}
            }
            self.at += 1;
        }
        let atom = String::from_utf8_lossy(&self.bytes[start..self.at]).into_owned();
        if atom.eq_ignore_ascii_case("NIL") {
            Value::Nil
        } else {
            Value::Atom(atom)
        }
    }
}

/// If `line` (a response line without its CRLF) ends with a literal announcement `{n}` or
/// `{n+}`, the announced length.
pub(crate) fn literal_length(line: &[u8]) -> Option<usize> {
    let inner = line.strip_suffix(b"}")?;
    let open = inner.iter().rposition(|&b| b == b'{')?;
    let digits = &inner[open + 1..];
    let digits = digits.strip_suffix(b"+").unwrap_or(digits);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn atom(s: &str) -> Value {
        Value::Atom(s.to_owned())
    }

    #[test]
    fn parses_status_responses() {
        let r = parse_response(b"a1 NO [ALREADYEXISTS] Mailbox already exists\r\n");
        let status = Status {
            kind: StatusKind::No,
            code: Some("ALREADYEXISTS".to_owned()),
            text: "Mailbox already exists".to_owned(),
        };
        assert_eq!(
            r,
            Ok(Response::Tagged {
                tag: "a1".to_owned(),
                status
            })
        );

        let r = parse_response(b"* OK [CAPABILITY IMAP4rev1 MOVE] Ready.\r\n").expect("valid");
        let Response::Status(status) = r else {
            panic!("not a status: {r:?}")
        };
        assert_eq!(status.code_name().as_deref(), Some("CAPABILITY"));
        assert_eq!(
            parse_response(b"+ go ahead\r\n"),
            Ok(Response::Continuation)
        );
        assert_eq!(parse_response(b"+\r\n"), Ok(Response::Continuation));
    }

    #[test]
    fn parses_fetch_with_literal_and_section_atom() {
        let bytes = b"* 12 FETCH (UID 40 FLAGS (\\Seen \\Recent) \
            BODY[HEADER.FIELDS (MESSAGE-ID SUBJECT)] {18}\r\nSubject: a)b\"c\r\n\r\n)\r\n";
        let Ok(Response::Data(values)) = parse_response(bytes) else {
            panic!("not data")
        };
        let expected = vec![
            atom("12"),
            atom("FETCH"),
            Value::List(vec![
                atom("UID"),
                atom("40"),
                atom("FLAGS"),
                Value::List(vec![atom("\\Seen"), atom("\\Recent")]),
                atom("BODY[HEADER.FIELDS (MESSAGE-ID SUBJECT)]"),
                Value::Bytes(b"Subject: a)b\"c\r\n\r\n".to_vec()),
            ]),
        ];
        assert_eq!(values, expected);
    }

    #[test]
    fn parses_quoted_strings_and_nil() {
        let Ok(Response::Data(values)) = parse_response(b"* LIST () \"\\\\\" NIL\r\n") else {
            panic!("not data")
        };
        assert_eq!(
            values,
            vec![
                atom("LIST"),
                Value::List(vec![]),
                Value::Bytes(b"\\".to_vec()),
                Value::Nil
            ]
        );
    }

    #[test]
    fn rejects_malformed_data() {
        assert!(parse_response(b"* 1 FETCH (UID 1\r\n").is_err());
        assert!(parse_response(b"* 1 FETCH (BODY[] {10}\r\nshort)\r\n").is_err());
        assert!(parse_response(b"* 1 FETCH (X \"open\r\n").is_err());
    }

    #[test]
    fn finds_literal_announcements() {
        assert_eq!(literal_length(b"* 1 FETCH (BODY[] {123}"), Some(123));
        assert_eq!(literal_length(b"a LOGIN {5+}"), Some(5));
        assert_eq!(literal_length(b"* OK {not}"), None);
        assert_eq!(literal_length(b"* OK done"), None);
    }
}

//! The OData the local Graph understands: query strings decoded the way a web server does,
//! and `$filter` expressions of clauses joined by `and`, typed as Graph types them.
//!
//! It is strict where Graph is: a string compared without quotes, a date in quotes, an
//! unknown property or operator are all refused with a message like Graph's.

use chrono::{DateTime, Utc};

/// The decoded `name=value` pairs of a query string; `+` is a space, as in forms.
pub fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(name), decode(value))
        })
        .collect()
}

/// Percent-decoding, `+` as a space; invalid escapes stay as they are.
pub fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(byte) => {
                        out.push(byte);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A value in a filter.
#[derive(Clone, Debug, PartialEq)]
pub enum Literal {
    Str(String),
    DateTime(DateTime<Utc>),
    Bool(bool),
    Number(f64),
}

impl Literal {
    fn type_name(&self) -> &'static str {
        match self {
            Literal::Str(_) => "Edm.String",
            Literal::DateTime(_) => "Edm.DateTimeOffset",
            Literal::Bool(_) => "Edm.Boolean",
            Literal::Number(_) => "Edm.Int32",
        }
    }
}

/// A comparison operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

/// `field op value`.
#[derive(Clone, Debug, PartialEq)]
pub struct Clause {
    pub field: String,
    pub op: Op,
    pub value: Literal,
}

/// The type of each property a filter may name, per resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Str,
    DateTime,
    Bool,
}

/// Reads a filter: clauses joined by `and`, each checked against `fields`.
pub fn parse_filter(text: &str, fields: &[(&str, Kind)]) -> Result<Vec<Clause>, String> {
    let tokens = tokenize(text)?;
    let mut clauses = Vec::new();
    let mut rest = tokens.as_slice();
    loop {
        let [Token::Word(field), Token::Word(op), value, tail @ ..] = rest else {
            return Err(format!("Invalid filter clause: syntax error in '{text}'."));
        };
        let op = match op.as_str() {
            "eq" => Op::Eq,
            "ne" => Op::Ne,
            "gt" => Op::Gt,
            "ge" => Op::Ge,
            "lt" => Op::Lt,
            "le" => Op::Le,
            other => {
                return Err(format!(
                    "Invalid filter clause: unknown operator '{other}'."
                ));
            }
        };
        let Some((_, kind)) = fields
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(field))
        else {
            return Err(format!(
                "Could not find a property named '{field}' on type for this filter."
            ));
        };
        let value = literal(value, text)?;
        let compatible = matches!(
            (kind, &value),
            (Kind::Str, Literal::Str(_))
                | (Kind::DateTime, Literal::DateTime(_))
                | (Kind::Bool, Literal::Bool(_))
        );
        if !compatible {
            return Err(format!(
                "A binary operator with incompatible types was detected. Found operand types \
                 '{}' and '{}' for operator kind '{op:?}'.",
                kind_name(*kind),
                value.type_name()
            ));
        }
        if *kind == Kind::Str && !matches!(op, Op::Eq | Op::Ne) {
            return Err(format!(
                "Invalid filter clause: '{op:?}' is not supported on strings."
            ));
        }
        clauses.push(Clause {
            field: field.clone(),
            op,
            value,
        });
        match tail {
            [] => return Ok(clauses),
            [Token::Word(and), more @ ..] if and == "and" => rest = more,
            _ => return Err(format!("Invalid filter clause: syntax error in '{text}'.")),
        }
    }
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Str => "Edm.String",
        Kind::DateTime => "Edm.DateTimeOffset",
        Kind::Bool => "Edm.Boolean",
    }
}

/// Whether `value` passes `clause` (strings compare without case, as Exchange does).
pub fn passes(clause: &Clause, value: &Literal) -> bool {
    use std::cmp::Ordering;
    let order = match (value, &clause.value) {
        (Literal::Str(a), Literal::Str(b)) => {
            let equal = a.eq_ignore_ascii_case(b);
            return match clause.op {
                Op::Eq => equal,
                Op::Ne => !equal,
                _ => false,
            };
        }
        (Literal::DateTime(a), Literal::DateTime(b)) => a.cmp(b),
        (Literal::Bool(a), Literal::Bool(b)) => a.cmp(b),
        _ => return false,
    };
    match clause.op {
        Op::Eq => order == Ordering::Equal,
        Op::Ne => order != Ordering::Equal,
        Op::Gt => order == Ordering::Greater,
        Op::Ge => order != Ordering::Less,
        Op::Lt => order == Ordering::Less,
        Op::Le => order != Ordering::Greater,
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Token {
    Word(String),
    Quoted(String),
}

fn tokenize(text: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == ' ' {
            i += 1;
            continue;
        }
        if c == '\'' {
            let mut value = String::new();
            i += 1;
            loop {
                match (chars.get(i), chars.get(i + 1)) {
                    (Some('\''), Some('\'')) => {
                        value.push('\'');
                        i += 2;
                    }
                    (Some('\''), _) => {
                        i += 1;
                        break;
                    }
                    (Some(other), _) => {
                        value.push(*other);
                        i += 1;
                    }
                    (None, _) => {
                        return Err(format!(
                            "Invalid filter clause: unterminated string literal in '{text}'."
                        ));
                    }
                }
            }
            tokens.push(Token::Quoted(value));
            continue;
        }
        let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '/' | ':' | '-' | '.' | '_');
        if !valid(c) {
            return Err(format!(
                "Invalid filter clause: syntax error: character '{c}' is not valid at position {i} \
                 in '{text}'."
            ));
        }
        let start = i;
        while i < chars.len() && chars[i] != ' ' {
            if !valid(chars[i]) {
                return Err(format!(
                    "Invalid filter clause: syntax error: character '{}' is not valid at position \
                     {i} in '{text}'.",
                    chars[i]
                ));
            }
            i += 1;
        }
        tokens.push(Token::Word(chars[start..i].iter().collect()));
    }
    Ok(tokens)
}

fn literal(token: &Token, text: &str) -> Result<Literal, String> {
    match token {
        Token::Quoted(value) => Ok(Literal::Str(value.clone())),
        Token::Word(word) => {
            if let Ok(at) = DateTime::parse_from_rfc3339(word) {
                return Ok(Literal::DateTime(at.with_timezone(&Utc)));
            }
            match word.as_str() {
                "true" => return Ok(Literal::Bool(true)),
                "false" => return Ok(Literal::Bool(false)),
                _ => {}
            }
            word.parse::<f64>().map(Literal::Number).map_err(|_| {
                format!("Invalid filter clause: '{word}' is not a valid literal in '{text}'.")
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIELDS: [(&str, Kind); 2] = [
        ("internetMessageId", Kind::Str),
        ("sentDateTime", Kind::DateTime),
    ];

    #[test]
    fn reads_quoted_literals_with_doubled_quotes() {
        let clauses = parse_filter("internetMessageId eq '<o''brien@x>'", &FIELDS).expect("valid");
        assert_eq!(clauses[0].value, Literal::Str("<o'brien@x>".into()));
    }

    #[test]
    fn refuses_what_graph_refuses() {
        for bad in [
            "internetMessageId eq <a@b>",
            "internetMessageId eq \"<a@b>\"",
            "internetMessageId eq '<a@b>",
            "sentDateTime ge '2024-01-01T00:00:00Z'",
            "subject eq 'x'",
            "internetMessageId like 'x'",
        ] {
            assert!(parse_filter(bad, &FIELDS).is_err(), "{bad}");
        }
        let ok = "internetMessageId eq 'a' and sentDateTime ge 2024-01-01T00:00:00Z";
        assert_eq!(parse_filter(ok, &FIELDS).expect("valid").len(), 2);
    }

    #[test]
    fn decodes_queries_like_a_web_server() {
        let pairs = parse_query("$filter=a%20eq%20%27x%2By%27&$top=5&b=c+d");
        assert_eq!(pairs[0].1, "a eq 'x+y'");
        assert_eq!(pairs[2].1, "c d");
    }
}

//! Distinguished names as RFC 4514 writes them: checking that a value is one, and a normal
//! form so that two spellings of the same name (`CN=Sales, OU=Groups` and `cn=sales,ou=groups`)
//! compare equal.

/// Why a string is not a distinguished name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnError(pub &'static str);

impl std::fmt::Display for DnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

/// The normal form of a distinguished name: attribute types and values in lower case, the
/// spaces around separators gone, escapes resolved and written again one way.
///
/// Values are compared without regard to case because the naming attributes people and
/// groups use (`cn`, `uid`, `ou`, `dc`) match that way in every directory.
pub fn normalize(dn: &str) -> Result<String, DnError> {
    let rdns = parse(dn)?;
    if rdns.is_empty() {
        return Err(DnError("empty name"));
    }
    let mut out = String::with_capacity(dn.len());
    for (i, rdn) in rdns.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        for (j, (kind, value)) in rdn.iter().enumerate() {
            if j > 0 {
                out.push('+');
            }
            out.push_str(&kind.to_ascii_lowercase());
            out.push('=');
            escape_into(&value.to_lowercase(), &mut out);
        }
    }
    Ok(out)
}

/// Whether the string is a non-empty distinguished name.
pub fn is_dn(value: &str) -> bool {
    normalize(value).is_ok()
}

/// The value of the first relative name, unescaped: `Sales` for `cn=Sales,ou=Groups,…`.
pub fn first_value(dn: &str) -> Option<String> {
    let rdns = parse(dn).ok()?;
    let (_, value) = rdns.first()?.first()?;
    Some(value.clone())
}

/// Whether `dn` is `base` or lies below it; both are normalised first.
pub fn is_under(dn: &str, base: &str) -> bool {
    match (normalize(dn), normalize(base)) {
        (Ok(dn), Ok(base)) => dn == base || dn.ends_with(&format!(",{base}")),
        _ => false,
    }
}

/// Whether the string is an attribute type: a name (`mail`, `x-Custom-1`) or an OID.
pub fn is_attribute_type(kind: &str) -> bool {
    let mut chars = kind.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() => chars.all(|c| c.is_ascii_alphanumeric() || c == '-'),
        Some(c) if c.is_ascii_digit() => kind
            .split('.')
            .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit())),
        _ => false,
    }
}

type Rdn = Vec<(String, String)>;

/// Splits a name into relative names of `(type, value)` pairs, values unescaped.
fn parse(dn: &str) -> Result<Vec<Rdn>, DnError> {
    let mut rdns = Vec::new();
    if dn.trim().is_empty() {
        return Ok(rdns);
    }
    let mut rdn = Rdn::new();
    let mut chars = dn.chars().peekable();
    loop {
        let kind: String = take_type(&mut chars);
        if !is_attribute_type(&kind) {
            return Err(DnError("an attribute type is missing or malformed"));
        }
        if chars.next() != Some('=') {
            return Err(DnError("a relative name has no '='"));
        }
        let (value, end) = take_value(&mut chars)?;
        rdn.push((kind, value));
        match end {
            Some('+') => {}
            Some(',' | ';') => rdns.push(std::mem::take(&mut rdn)),
            None => {
                rdns.push(rdn);
                return Ok(rdns);
            }
            Some(_) => return Err(DnError("unexpected character")),
        }
    }
}

fn take_type(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> String {
    while chars.peek() == Some(&' ') {
        chars.next();
    }
    let mut kind = String::new();
    while let Some(&c) = chars.peek() {
        if c == '=' {
            break;
        }
        kind.push(c);
        chars.next();
    }
    kind.trim_end().to_owned()
}

/// Reads a value up to an unescaped separator; returns it and the separator (None at the end).
fn take_value(
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
) -> Result<(String, Option<char>), DnError> {
    while chars.peek() == Some(&' ') {
        chars.next();
    }
    if chars.peek() == Some(&'"') {
        return take_quoted(chars);
    }
    let mut value = String::new();
    let mut bytes: Vec<u8> = Vec::new();
    // Trailing spaces are dropped unless escaped; this counts the escaped ones kept at the end.
    let mut kept_len = 0;
    let mut end = None;
    while let Some(c) = chars.next() {
        match c {
            ',' | '+' | ';' => {
                end = Some(c);
                break;
            }
            '\\' => {
                let next = chars.next().ok_or(DnError("a name ends with '\\'"))?;
                if next.is_ascii_hexdigit() {
                    let low = chars.next().filter(char::is_ascii_hexdigit);
                    let low = low.ok_or(DnError("a hex escape is cut short"))?;
                    let byte = u8::from_str_radix(&format!("{next}{low}"), 16)
                        .map_err(|_| DnError("a hex escape is malformed"))?;
                    bytes.push(byte);
                    continue;
                }
                flush(&mut bytes, &mut value, &mut kept_len)?;
                value.push(next);
                kept_len = value.len();
                continue;
            }
            '=' => return Err(DnError("an unescaped '=' in a value")),
            _ => {}
        }
        flush(&mut bytes, &mut value, &mut kept_len)?;
        value.push(c);
        if c != ' ' {
            kept_len = value.len();
        }
    }
    flush(&mut bytes, &mut value, &mut kept_len)?;
    value.truncate(kept_len);
    Ok((value, end))
}

fn take_quoted(
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
) -> Result<(String, Option<char>), DnError> {
    chars.next();
    let mut value = String::new();
    loop {
        match chars.next() {
            Some('"') => break,
            Some('\\') => value.push(chars.next().ok_or(DnError("a name ends with '\\'"))?),
            Some(c) => value.push(c),
            None => return Err(DnError("a quoted value is not closed")),
        }
    }
    while chars.peek() == Some(&' ') {
        chars.next();
    }
    match chars.next() {
        None => Ok((value, None)),
        Some(c @ (',' | '+' | ';')) => Ok((value, Some(c))),
        Some(_) => Err(DnError("text after a quoted value")),
    }
}

/// Appends the hex-escaped bytes read so far; escaped characters are always kept.
fn flush(bytes: &mut Vec<u8>, value: &mut String, kept_len: &mut usize) -> Result<(), DnError> {
    if bytes.is_empty() {
        return Ok(());
    }
    let text = std::str::from_utf8(bytes).map_err(|_| DnError("an escape is not UTF-8"))?;
    value.push_str(text);
    bytes.clear();
    *kept_len = value.len();
    Ok(())
}

fn escape_into(value: &str, out: &mut String) {
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=')
            || (i == 0 && matches!(c, ' ' | '#'))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(input: &str, expected: Option<&str>) {
        assert_eq!(normalize(input).ok().as_deref(), expected, "{input:?}");
    }

    #[test]
    fn normal_forms() {
        check(
            "cn=Sales,ou=Groups,dc=Example,dc=test",
            Some("cn=sales,ou=groups,dc=example,dc=test"),
        );
        check("CN = Sales , OU=Groups", Some("cn=sales,ou=groups"));
        check(
            "cn=Smith\\, John,ou=People",
            Some("cn=smith\\, john,ou=people"),
        );
        check(
            "cn=Smith\\2C John,ou=People",
            Some("cn=smith\\, john,ou=people"),
        );
        check(
            "cn=\"Smith, John\",ou=People",
            Some("cn=smith\\, john,ou=people"),
        );
        check("cn=a+uid=b,dc=x", Some("cn=a+uid=b,dc=x"));
        check("cn=J\\C3\\BCrgen,dc=x", Some("cn=jürgen,dc=x"));
        check("cn=trailing\\ ,dc=x", Some("cn=trailing\\ ,dc=x"));
        check("2.5.4.3=x,dc=y", Some("2.5.4.3=x,dc=y"));
        check("", None);
        check("bob", None);
        check("bob@example.test", None);
        check("cn=a=b", None);
        check("=x", None);
        check("cn=x\\", None);
        check("cn=\"open", None);
    }

    #[test]
    fn first_values_and_bases() {
        assert_eq!(
            first_value("cn=Sales\\, EMEA,ou=g").as_deref(),
            Some("Sales, EMEA")
        );
        assert!(is_under("uid=a,ou=People,dc=x", "OU=people, dc=X"));
        assert!(is_under("dc=x", "dc=x"));
        assert!(!is_under("uid=a,ou=people2,dc=x", "ou=people,dc=x"));
        assert!(is_attribute_type("pullbackRiskTier"));
        assert!(is_attribute_type("1.2.840.113556.1.2.210"));
        assert!(!is_attribute_type("mail)(x=*"));
        assert!(!is_attribute_type("1..2"));
    }
}

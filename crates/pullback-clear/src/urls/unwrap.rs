//! Un-rewriting links that a link-protection service wrapped to pass through itself, so that
//! evidence and block lists see the destination.

use base64::Engine;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use percent_encoding::percent_decode_str;

use super::Wrapper;

/// URL Defense v3 encodes its replacement bytes in URL-safe base64, padded or not.
const V3_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// In URL Defense v3, `**` followed by one of these stands for a run of 2, 3, ... replacement
/// characters, by its position here.
const V3_RUN_LENGTHS: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// The wrapper of a rewritten URL and the URL it wraps, exactly as encoded (not normalised);
/// `None` when `url` is not a wrapped link or cannot be decoded.
pub fn unwrap(url: &str) -> Option<(Wrapper, String)> {
    let (host, rest) = host_and_rest(url)?;
    if host.ends_with(".safelinks.protection.outlook.com") {
        let inner = query_param(rest, "url")?;
        return Some((
            Wrapper::SafeLinks,
            percent_decode_str(inner).decode_utf8().ok()?.into_owned(),
        ));
    }
    if host == "urldefense.proofpoint.com" && rest.starts_with("/v2/url") {
        return decode_v2(query_param(rest, "u")?).map(|u| (Wrapper::UrlDefenseV2, u));
    }
    if host == "urldefense.com" {
        return decode_v3(rest.strip_prefix("/v3/__")?).map(|u| (Wrapper::UrlDefenseV3, u));
    }
    None
}

/// The host (lower case, without user or port) and what follows it.
fn host_and_rest(url: &str) -> Option<(String, &str)> {
    let scheme_end = url.find("://")?;
    if !url[..scheme_end].eq_ignore_ascii_case("https")
        && !url[..scheme_end].eq_ignore_ascii_case("http")
    {
        return None;
    }
    let after = &url[scheme_end + 3..];
    let end = after.find(['/', '?', '#']).unwrap_or(after.len());
    let authority = &after[..end];
    let host = authority
        .rsplit('@')
        .next()?
        .split(':')
        .next()?
        .to_ascii_lowercase();
    Some((host, &after[end..]))
}

/// The raw value of one query parameter.
fn query_param<'a>(rest: &'a str, name: &str) -> Option<&'a str> {
    let (_, query) = rest.split_once('?')?;
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
        .filter(|v| !v.is_empty())
}

/// v2 writes the URL with `-` for `%` and `_` for `/`, then percent-encodes.
fn decode_v2(value: &str) -> Option<String> {
    let translated: String = value
        .chars()
        .map(|c| match c {
            '-' => '%',
            '_' => '/',
            other => other,
        })
        .collect();
    Some(
        percent_decode_str(&translated)
            .decode_utf8()
            .ok()?
            .into_owned(),
    )
}

/// v3 writes `__<url>__;<base64 of the replaced characters>!<signature>`, each `*` in the URL
/// standing for the next replaced character and `**X` for a run of them.
fn decode_v3(rest: &str) -> Option<String> {
    let (inner, tail) = rest.split_once("__;")?;
    let encoded = tail.split('!').next().unwrap_or("");
    let replacements: Vec<char> = if encoded.is_empty() {
        Vec::new()
    } else {
        let bytes = V3_BASE64.decode(encoded.trim_end_matches('=')).ok()?;
        String::from_utf8(bytes).ok()?.chars().collect()
    };

    let mut out = String::with_capacity(inner.len());
    let mut used = 0;
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '*' {
            out.push(c);
            continue;
        }
        let run = if chars.peek() == Some(&'*') {
            chars.next();
            let marker = chars.next()?;
            V3_RUN_LENGTHS.find(marker)? + 2
        } else {
            1
        };
        out.extend(replacements.get(used..used + run)?);
        used += run;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_links_are_unwrapped() {
        let wrapped = "https://nam02.safelinks.protection.outlook.com/?url=https%3A%2F%2Fevil.example%2Flogin%3Fa%3D1&data=05%7C01&sdata=x&reserved=0";
        assert_eq!(
            unwrap(wrapped),
            Some((
                Wrapper::SafeLinks,
                "https://evil.example/login?a=1".to_owned()
            ))
        );
    }

    #[test]
    fn url_defense_v3_runs_replace_several_characters() {
        // "**A" stands for a run of two replaced characters: here "+" and "&".
        let encoded = V3_BASE64.encode("+&");
        let wrapped =
            format!("https://urldefense.com/v3/__https://a.example/?q=x**Ab=1__;{encoded}!!sig$");
        assert_eq!(
            unwrap(&wrapped).map(|(_, u)| u).as_deref(),
            Some("https://a.example/?q=x+&b=1")
        );
    }

    #[test]
    fn url_defense_v3_without_replacements() {
        let wrapped = "https://urldefense.com/v3/__https://a.example/path__;!!abc$";
        assert_eq!(
            unwrap(wrapped).map(|(_, u)| u).as_deref(),
            Some("https://a.example/path")
        );
    }

    #[test]
    fn too_few_replacements_is_not_a_decoding() {
        let wrapped = "https://urldefense.com/v3/__https://a.example/**Z__;Kw!!x$";
        assert_eq!(unwrap(wrapped), None);
    }

    #[test]
    fn ordinary_urls_are_not_wrapped() {
        assert_eq!(unwrap("https://example.com/?url=https://x.example"), None);
        assert_eq!(unwrap("invalid_url"), None);
    }
}

//! The URLs of a message: found in plain text, HTML attributes and HTML text, un-rewritten
//! from link-protection wrappers, normalised and deduplicated, with the traits that make a URL
//! evidence. Linear in the size of the message and bounded in what it keeps.

use std::borrow::Cow;
use std::collections::HashMap;

use serde::Serialize;
use url::{Host, Url};

use crate::facts::MessageFacts;

pub mod html;
pub mod lexicon;
mod unwrap;

pub use unwrap::unwrap;

/// The most URLs kept for one message; the rest are counted, not kept.
pub const MAX_URLS: usize = 5_000;
/// URLs longer than this are cut (a `data:` URL can be the size of the message).
const MAX_URL_CHARS: usize = 4_096;
/// How much of an anchor's text is kept.
const MAX_ANCHOR_CHARS: usize = 200;

/// One distinct URL of a message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FoundUrl {
    /// Unwrapped and normalised: lower-case scheme and host, default port dropped.
    pub url: String,
    /// As written in the message, after one decoding of HTML entities.
    pub original: String,
    /// The host, lower case, in its ASCII (punycode) form; `None` for `data:` and
    /// `javascript:` URLs.
    pub host: Option<String>,
    pub found_in: UrlSource,
    /// The link-protection service that had rewritten it, when one had.
    pub wrapped_by: Option<Wrapper>,
    /// The text the reader saw for the link, when the URL was an anchor's `href`.
    pub anchor_text: Option<String>,
}

/// Where a URL was first seen.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UrlSource {
    Text,
    /// The attribute's name, lower case (`href`, `src`, `action`, `data-url`, `content`...).
    HtmlAttribute(String),
    HtmlText,
}

/// A link-protection service that rewrites URLs to pass through itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Wrapper {
    SafeLinks,
    UrlDefenseV2,
    UrlDefenseV3,
}

/// Everything in a URL that is worth telling an analyst.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UrlTrait {
    /// The host is an IP address, not a name.
    IpHost,
    /// The host has a punycode (`xn--`) label.
    Punycode,
    /// A label of the host mixes scripts or is spelt with look-alike characters.
    ConfusableHost,
    /// The host imitates a well-known brand: its look-alike, or the brand's domain used as a
    /// subdomain of another (`paypal.com.example.net`).
    LookalikeHost {
        brand: &'static str,
    },
    /// The anchor's text shows one domain and the link goes to another.
    DisplayMismatch {
        shown: String,
    },
    Shortener,
    DataUrl,
    JavascriptUrl,
    /// The path asks for credentials (`/login`, `/verify`...).
    CredentialPath,
    /// Free hosting, free forms or IPFS, where anyone can publish a page.
    FreeHosting,
    /// The link downloads a file of a kind that runs or carries code.
    RiskyDownload {
        extension: String,
    },
    /// The URL as written holds control or invisible characters that browsers drop.
    Obfuscated,
}

/// Finds the URLs of one message's bodies (not of its attached messages), HTML first.
pub fn extract(facts: &MessageFacts) -> Vec<FoundUrl> {
    extract_counting(facts).0
}

/// As [`extract`], also returning how many distinct URLs were left out past [`MAX_URLS`].
pub fn extract_counting(facts: &MessageFacts) -> (Vec<FoundUrl>, usize) {
    let mut found = Collector::default();
    for body in &facts.html_bodies {
        collect_html(body, &mut found);
    }
    for body in &facts.text_bodies {
        scan_text(body, |raw| {
            found.add(raw, UrlSource::Text, None);
        });
        scan_bare_hosts(body, |raw| {
            found.add(&format!("http://{raw}"), UrlSource::Text, None);
        });
    }
    (found.urls, found.left_out)
}

/// The traits of one URL that count as evidence.
pub fn traits(found: &FoundUrl) -> Vec<UrlTrait> {
    let mut out = Vec::new();
    let lower = found.url.to_ascii_lowercase();
    if lower.starts_with("data:") {
        out.push(UrlTrait::DataUrl);
        return out;
    }
    if lower.starts_with("javascript:") {
        if !is_empty_script(&lower) {
            out.push(UrlTrait::JavascriptUrl);
        }
        return out;
    }
    let Ok(parsed) = Url::parse(&found.url) else {
        return out;
    };
    let hidden =
        |c: char| (c.is_control() && !matches!(c, '\r' | '\n' | '\t')) || lexicon::is_invisible(c);
    if found.original.chars().any(hidden) {
        out.push(UrlTrait::Obfuscated);
    }

    match parsed.host() {
        Some(Host::Ipv4(_)) | Some(Host::Ipv6(_)) => out.push(UrlTrait::IpHost),
        Some(Host::Domain(host)) => host_traits(host, &mut out),
        None => {}
    }
    if let (Some(shown), Some(host)) = (found.anchor_text.as_deref(), found.host.as_deref())
        && let Some(shown_host) = shown_domain(shown)
    {
        let shown_site = lexicon::registrable(&shown_host);
        // A tracked redirect that names the shown site as its destination goes there.
        let redirects_there = parsed
            .query()
            .is_some_and(|q| q.to_ascii_lowercase().contains(shown_site));
        if shown_site != lexicon::registrable(host) && !redirects_there {
            out.push(UrlTrait::DisplayMismatch { shown: shown_host });
        }
    }

    // What a page loads by itself (images, backgrounds) is not where the reader is sent.
    let clickable = !matches!(&found.found_in, UrlSource::HtmlAttribute(a) if matches!(a.as_str(), "src" | "background" | "poster"));
    if !clickable {
        out.retain(|t| *t != UrlTrait::FreeHosting);
    }
    let path = parsed.path().to_ascii_lowercase();
    let query = parsed.query().unwrap_or("").to_ascii_lowercase();
    if clickable
        && lexicon::CREDENTIAL_PATH_WORDS
            .iter()
            .any(|w| path.contains(w) || query.contains(w))
    {
        out.push(UrlTrait::CredentialPath);
    }
    if clickable && path.contains("/ipfs/") && !out.contains(&UrlTrait::FreeHosting) {
        out.push(UrlTrait::FreeHosting);
    }
    if let Some(extension) = risky_download(&path) {
        out.push(UrlTrait::RiskyDownload { extension });
    }
    out
}

fn host_traits(host: &str, out: &mut Vec<UrlTrait>) {
    if host.split('.').any(|label| label.starts_with("xn--")) {
        out.push(UrlTrait::Punycode);
        let (unicode, _) = idna::domain_to_unicode(host);
        if unicode.split('.').any(lexicon::is_confusable_label) {
            out.push(UrlTrait::ConfusableHost);
        }
    }
    if let Some(brand) = lexicon::imitated_brand(host) {
        out.push(UrlTrait::LookalikeHost { brand });
    }
    if lexicon::in_list(host, lexicon::SHORTENERS) {
        out.push(UrlTrait::Shortener);
    }
    if lexicon::in_list(host, lexicon::FREE_HOSTING) {
        out.push(UrlTrait::FreeHosting);
    }
}

/// `javascript:void(0)` and its kin do nothing; any other script in a mail link is odd.
fn is_empty_script(lower: &str) -> bool {
    let body = lower["javascript:".len()..].trim().trim_end_matches(';');
    matches!(
        body,
        "" | "void(0)" | "void 0" | "void(null)" | "return false"
    )
}

/// The extension of the last path segment, when it names a kind of file that runs code.
fn risky_download(path: &str) -> Option<String> {
    let last = path.rsplit('/').next()?;
    let (_, extension) = last.rsplit_once('.')?;
    lexicon::RISKY_DOWNLOAD_EXTENSIONS
        .contains(&extension)
        .then(|| extension.to_owned())
}

/// The host an anchor's text shows, when the text is itself a URL or a bare domain.
fn shown_domain(shown: &str) -> Option<String> {
    let text = shown.trim().trim_end_matches(['.', ',', ')', ';', ':']);
    let first = text.split_whitespace().next()?;
    let lower = first.to_ascii_lowercase();
    let rest = if let Some(at) = lower.find("://") {
        &lower[at + 3..]
    } else if lower.starts_with("www.") || text.split_whitespace().count() == 1 {
        &lower[..]
    } else {
        return None;
    };
    let host = rest.split(['/', '?', '#', ':']).next()?;
    let host = host.rsplit('@').next()?.trim_end_matches('.');
    lexicon::looks_like_domain(host).then(|| host.to_owned())
}

/// Distinct URLs in order of first sighting.
#[derive(Default)]
struct Collector {
    urls: Vec<FoundUrl>,
    index: HashMap<String, usize>,
    left_out: usize,
}

impl Collector {
    /// Records one URL as written; returns its index when it was kept.
    fn add(&mut self, raw: &str, found_in: UrlSource, base: Option<&Url>) -> Option<usize> {
        let original = raw.trim_matches(|c: char| c.is_whitespace() || c == '"' || c == '\'');
        let (url, host, wrapped_by) = normalise(&clean(original)?, &found_in, base)?;
        if let Some(&at) = self.index.get(&url) {
            return Some(at);
        }
        if self.urls.len() >= MAX_URLS {
            self.left_out += 1;
            return None;
        }
        let at = self.urls.len();
        self.index.insert(url.clone(), at);
        self.urls.push(FoundUrl {
            url,
            original: cut(original, MAX_URL_CHARS).into_owned(),
            host,
            found_in,
            wrapped_by,
            anchor_text: None,
        });
        Some(at)
    }

    fn set_anchor_text(&mut self, at: usize, text: &str) {
        let shown = collapse_whitespace(text, MAX_ANCHOR_CHARS);
        let slot = &mut self.urls[at].anchor_text;
        if slot.is_none() && !shown.is_empty() {
            *slot = Some(shown);
        }
    }
}

/// Drops the control and invisible characters that line wrapping or obfuscation leave inside
/// a URL, as browsers do.
fn clean(trimmed: &str) -> Option<String> {
    if trimmed.is_empty() || trimmed.starts_with('#') {
        return None;
    }
    let dropped = |c: char| c.is_control() || lexicon::is_invisible(c);
    Some(trimmed.chars().filter(|&c| !dropped(c)).collect())
}

/// The normalised, unwrapped form of a URL, its host and its wrapper; `None` for what is not
/// a web link (`mailto:`, `cid:`, inline images, fragments, unparsable text).
fn normalise(
    original: &str,
    found_in: &UrlSource,
    base: Option<&Url>,
) -> Option<(String, Option<String>, Option<Wrapper>)> {
    let scheme_end = original.find(':').filter(|&i| i < 16);
    let scheme = scheme_end.map(|i| original[..i].to_ascii_lowercase());
    match scheme.as_deref() {
        Some("data") => {
            let is_image = original[5..]
                .trim_start()
                .to_ascii_lowercase()
                .starts_with("image/");
            let is_media_slot = matches!(found_in, UrlSource::HtmlAttribute(a) if a != "href" && a != "action" && a != "formaction");
            if is_image && is_media_slot {
                return None;
            }
            return Some((cut(original, 200).into_owned(), None, None));
        }
        Some("javascript") => return Some((cut(original, 200).into_owned(), None, None)),
        Some("mailto" | "tel" | "cid" | "sms" | "about" | "callto" | "file") => return None,
        _ => {}
    }

    let mut parsed = parse_web(original, base)?;
    let mut wrapped_by = None;
    // A link can be wrapped more than once (Safe Links around URL Defense); peel a few.
    for _ in 0..4 {
        let Some((wrapper, inner)) = unwrap(parsed.as_str()).or_else(|| unwrap(original)) else {
            break;
        };
        let Some(inner) = parse_web(&inner, None) else {
            break;
        };
        wrapped_by.get_or_insert(wrapper);
        parsed = inner;
    }
    let host = parsed
        .host_str()
        .map(|h| h.trim_matches(['[', ']']).trim_end_matches('.').to_owned());
    Some((
        cut(parsed.as_str(), MAX_URL_CHARS).into_owned(),
        host,
        wrapped_by,
    ))
}

/// Parses an http(s) or ftp URL, resolving a relative one against `base`.
fn parse_web(text: &str, base: Option<&Url>) -> Option<Url> {
    let parsed = match Url::parse(text) {
        Ok(url) => url,
        Err(url::ParseError::RelativeUrlWithoutBase) => {
            if text.len() > 4 && text[..4].eq_ignore_ascii_case("www.") {
                Url::parse(&format!("http://{text}")).ok()?
            } else {
                base?.join(text).ok()?
            }
        }
        Err(_) => return None,
    };
    if !matches!(parsed.scheme(), "http" | "https" | "ftp") {
        return None;
    }
    parsed.host_str().filter(|h| !h.is_empty())?;
    Some(parsed)
}

fn collect_html(body: &str, found: &mut Collector) {
    let mut base: Option<Url> = None;
    // The anchor being read: where its URL was kept, and its text so far.
    let mut anchor: Option<(usize, String)> = None;

    for token in html::tokens(body) {
        match token {
            html::Token::Start { name, attrs } => {
                if name == "a" {
                    finish_anchor(&mut anchor, found);
                }
                if name == "base" && base.is_none() {
                    base = attr(&attrs, "href").and_then(|h| Url::parse(h.trim()).ok());
                }
                // `<base href>` says how to read other links; it is not one.
                let attrs = if name == "base" { &[][..] } else { &attrs[..] };
                for (attr_name, value) in attrs {
                    let Some(raw) = url_in_attribute(&name, attr_name, value, attrs) else {
                        continue;
                    };
                    let source = UrlSource::HtmlAttribute(attr_name.clone());
                    let kept = found.add(raw, source, base.as_ref());
                    if let (Some(at), "a", "href") = (kept, name.as_str(), attr_name.as_str()) {
                        anchor = Some((at, String::new()));
                    }
                }
            }
            html::Token::End { name } => {
                if name == "a" {
                    finish_anchor(&mut anchor, found);
                }
            }
            html::Token::Style(_) | html::Token::Script(_) => {}
            html::Token::Text(text) => {
                let text = html::decode_entities(text);
                if let Some((_, shown)) = anchor.as_mut()
                    && shown.len() < MAX_ANCHOR_CHARS * 4
                {
                    shown.push_str(&text);
                }
                scan_text(&text, |raw| {
                    found.add(raw, UrlSource::HtmlText, base.as_ref());
                });
                scan_bare_hosts(&text, |raw| {
                    found.add(&format!("http://{raw}"), UrlSource::HtmlText, None);
                });
            }
        }
    }
    finish_anchor(&mut anchor, found);
}

fn finish_anchor(anchor: &mut Option<(usize, String)>, found: &mut Collector) {
    if let Some((at, text)) = anchor.take() {
        found.set_anchor_text(at, &text);
    }
}

fn attr<'a>(attrs: &'a [(String, Cow<'_, str>)], name: &str) -> Option<&'a str> {
    attrs
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_ref())
}

/// The URL an attribute holds, when it is one of those that hold URLs.
fn url_in_attribute<'v>(
    tag: &str,
    name: &str,
    value: &'v str,
    attrs: &[(String, Cow<'_, str>)],
) -> Option<&'v str> {
    match name {
        "href" | "src" | "action" | "formaction" | "background" | "poster" => Some(value),
        "content" if tag == "meta" => {
            let refresh =
                attr(attrs, "http-equiv").is_some_and(|v| v.eq_ignore_ascii_case("refresh"));
            refresh.then(|| refresh_target(value)).flatten()
        }
        _ if name.starts_with("data-") => {
            let lower = value
                .trim_start()
                .get(..8)
                .unwrap_or("")
                .to_ascii_lowercase();
            (lower.starts_with("http://") || lower.starts_with("https://")).then_some(value)
        }
        _ => None,
    }
}

/// The target of `<meta http-equiv="refresh" content="0; url=...">`.
fn refresh_target(content: &str) -> Option<&str> {
    let lower = content.to_ascii_lowercase();
    let at = lower.find("url")?;
    let rest = content[at + 3..].trim_start().strip_prefix('=')?;
    Some(rest.trim().trim_matches(['\'', '"']))
}

/// Calls `found` with every URL written out in `text` (`scheme://...` or `www....`), in one
/// pass.
pub fn scan_text(text: &str, mut found: impl FnMut(&str)) {
    let bytes = text.as_bytes();
    let mut at = 0;
    let mut next_scheme = find_from(text, "://", 0);
    let mut next_www = find_www(text, 0);
    loop {
        if next_scheme.is_some_and(|p| p < at) {
            next_scheme = find_from(text, "://", at);
        }
        if next_www.is_some_and(|p| p < at) {
            next_www = find_www(text, at);
        }
        let start = match (next_scheme, next_www) {
            (None, None) => return,
            (Some(s), Some(w)) if w < s => w,
            (Some(s), _) => scheme_start(bytes, s, at).unwrap_or(usize::MAX),
            (None, Some(w)) => w,
        };
        if start == usize::MAX {
            // A "://" without a web scheme before it: step over it.
            at = next_scheme.map_or(bytes.len(), |s| s + 3);
            continue;
        }
        let end = url_end(text, start);
        if end > start + 4 {
            found(&text[start..end]);
        }
        at = end.max(start + 1);
    }
}

/// Calls `found` with every bare host name (no scheme, no `www.`) in `text` that is a
/// shortener's or on free hosting: those are links a reader will type or paste.
pub fn scan_bare_hosts(text: &str, mut found: impl FnMut(&str)) {
    let separators = |c: char| c.is_whitespace() || "<>()[]{}\"'`,;|".contains(c);
    for token in text.split(separators) {
        let token = token.trim_end_matches(['.', ':', '!', '?']);
        if !token.contains('.')
            || token.contains("://")
            || token.contains('@')
            || token.len() > MAX_URL_CHARS
        {
            continue;
        }
        let host = token.split(['/', '?', '#']).next().unwrap_or("");
        let plain = host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
        let lower = host.to_ascii_lowercase();
        if plain
            && (lexicon::in_list(&lower, lexicon::FREE_HOSTING)
                || lexicon::in_list(&lower, lexicon::SHORTENERS))
        {
            found(token);
        }
    }
}

fn find_from(text: &str, needle: &str, from: usize) -> Option<usize> {
    text.get(from..)?.find(needle).map(|p| p + from)
}

/// The next `www.` that starts a word.
fn find_www(text: &str, from: usize) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut at = from;
    loop {
        let p = find_from(text, "www.", at)?;
        let starts_word =
            p == 0 || !(bytes[p - 1].is_ascii_alphanumeric() || b"./@-_".contains(&bytes[p - 1]));
        if starts_word {
            return Some(p);
        }
        at = p + 4;
    }
}

/// Where the scheme before the `://` at `sep` starts, when it is a web scheme.
fn scheme_start(bytes: &[u8], sep: usize, floor: usize) -> Option<usize> {
    let mut start = sep;
    while start > floor && sep - start < 6 && bytes[start - 1].is_ascii_alphabetic() {
        start -= 1;
    }
    let scheme = std::str::from_utf8(&bytes[start..sep])
        .ok()?
        .to_ascii_lowercase();
    matches!(scheme.as_str(), "http" | "https" | "ftp").then_some(start)
}

/// The end of the URL starting at `start`: the first character that cannot be in one, less
/// the trailing punctuation of the sentence around it.
fn url_end(text: &str, start: usize) -> usize {
    let mut end = start;
    let mut opened = 0i32;
    for (i, c) in text[start..].char_indices() {
        if c.is_whitespace() || c.is_control() || "<>\"'`{}|\\^\u{3001}\u{3002}\u{FF0C}".contains(c)
        {
            break;
        }
        match c {
            '(' | '[' => opened += 1,
            ')' | ']' => opened -= 1,
            _ => {}
        }
        end = start + i + c.len_utf8();
        if end - start >= MAX_URL_CHARS {
            break;
        }
    }
    let mut trimmed = &text[start..end];
    loop {
        let before = trimmed.len();
        trimmed = trimmed.trim_end_matches(['.', ',', ';', ':', '!', '?', '*']);
        if opened < 0 && (trimmed.ends_with(')') || trimmed.ends_with(']')) {
            trimmed = &trimmed[..trimmed.len() - 1];
            opened += 1;
        }
        if trimmed.len() == before {
            break;
        }
    }
    start + trimmed.len()
}

/// Keeps at most `max` characters.
fn cut(text: &str, max: usize) -> Cow<'_, str> {
    match text.char_indices().nth(max) {
        Some((at, _)) => Cow::Owned(text[..at].to_owned()),
        None => Cow::Borrowed(text),
    }
}

fn collapse_whitespace(text: &str, max: usize) -> String {
    let mut out = String::new();
    for word in text.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
        if out.len() >= max {
            return cut(&out, max).into_owned();
        }
    }
    out
}

#[cfg(test)]
mod tests;

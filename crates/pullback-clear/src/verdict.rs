//! Weighs the evidence of a reported message (its URLs, attachments, headers and content)
//! into an abuse disposition, a score, and reasons that each name the URL, attachment or
//! header that triggered them: the alert's "CLEAR analysis".
//!
//! Each kind of evidence (a reason's code) counts once towards the score, at its strongest:
//! nine hundred links on IP addresses are no more damning than one, and a newsletter's many
//! links cannot add up to a verdict.

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

use aho_corasick::AhoCorasick;
use serde::Serialize;

use crate::facts::{AttachmentFacts, MessageFacts, RiskyKind};
use crate::header_checks::{self, FindingKind};
use crate::urls::{self, UrlTrait, html, lexicon};

/// From this score on, a message is malicious.
pub const MALICIOUS_SCORE: i32 = 60;
/// From this score on, a message is suspicious.
pub const SUSPICIOUS_SCORE: i32 = 30;
/// The weight of knowledge from threat intelligence: decisive on its own.
const KNOWN_BAD: i32 = 100;
/// The most reasons kept in a verdict; the strongest are kept.
const MAX_REASONS: usize = 50;
/// The most reasons kept for one code.
const MAX_REASONS_PER_CODE: usize = 10;
/// How much of each body's text is searched for lures.
const MAX_CONTENT_BYTES: usize = 256 * 1024;

/// The abuse disposition of a reported message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Disposition {
    Malicious,
    Suspicious,
    /// List mail or a newsletter, without evidence of a threat.
    Bulk,
    Clean,
}

impl Disposition {
    pub fn as_str(self) -> &'static str {
        match self {
            Disposition::Malicious => "malicious",
            Disposition::Suspicious => "suspicious",
            Disposition::Bulk => "bulk",
            Disposition::Clean => "clean",
        }
    }

    /// Whether the disposition calls for a response (malicious or suspicious).
    pub fn is_positive(self) -> bool {
        matches!(self, Disposition::Malicious | Disposition::Suspicious)
    }
}

/// One piece of evidence.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Reason {
    /// A stable name for the kind of evidence (`url.ip_host`, `attachment.disk_image`...).
    pub code: &'static str,
    pub weight: i32,
    /// The exact URL, attachment name or header that triggered it.
    pub item: String,
    /// One sentence for the analyst.
    pub text: String,
}

/// The outcome of a CLEAR analysis.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub disposition: Disposition,
    pub score: i32,
    /// Strongest first.
    pub reasons: Vec<Reason>,
    /// One line for the incident's threat description: `malicious: <the strongest reason>`.
    pub summary: String,
    /// What could not be read or examined.
    pub problems: Vec<String>,
}

/// What threat intelligence knows. Each answer says where the knowledge came from ("TAP",
/// "list phish-feeds").
pub trait Intelligence {
    fn url_is_bad(&self, url: &str) -> Option<String>;
    fn domain_is_bad(&self, domain: &str) -> Option<String>;
    fn hash_is_bad(&self, sha256: &str) -> Option<String>;
}

/// No threat intelligence: the analysis goes by the message alone.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoIntelligence;

impl Intelligence for NoIntelligence {
    fn url_is_bad(&self, _url: &str) -> Option<String> {
        None
    }
    fn domain_is_bad(&self, _domain: &str) -> Option<String> {
        None
    }
    fn hash_is_bad(&self, _sha256: &str) -> Option<String> {
        None
    }
}

/// Analyses one message, and the messages attached to it, into a verdict.
pub fn analyse(facts: &MessageFacts, intel: &dyn Intelligence) -> Verdict {
    let mut evidence = Evidence::default();
    let mut problems = facts.problems.clone();
    examine(facts, intel, &mut evidence, &mut problems);
    for attached in &facts.attached_messages {
        examine(attached, intel, &mut evidence, &mut problems);
        problems.extend(
            attached
                .problems
                .iter()
                .map(|p| format!("attached message: {p}")),
        );
    }
    evidence.into_verdict(is_bulk(facts), problems)
}

fn examine(
    facts: &MessageFacts,
    intel: &dyn Intelligence,
    evidence: &mut Evidence,
    problems: &mut Vec<String>,
) {
    url_evidence(facts, intel, evidence, problems);
    for attachment in &facts.attachments {
        attachment_evidence(attachment, intel, evidence);
    }
    header_evidence(facts, evidence);
    content_evidence(facts, evidence);
}

/// Reasons gathered so far.
#[derive(Default)]
struct Evidence {
    reasons: Vec<Reason>,
    /// (code, item) of every reason kept, and how many reasons each code has.
    seen: HashSet<(&'static str, String)>,
    per_code: HashMap<&'static str, usize>,
}

impl Evidence {
    fn add(
        &mut self,
        code: &'static str,
        weight: i32,
        item: impl Into<String>,
        text: impl Into<String>,
    ) {
        let item = item.into();
        let count = self.per_code.entry(code).or_insert(0);
        // Past a few items of one kind, more of the same tell the analyst nothing new.
        if *count >= MAX_REASONS_PER_CODE || !self.seen.insert((code, item.clone())) {
            return;
        }
        *count += 1;
        self.reasons.push(Reason {
            code,
            weight,
            item,
            text: text.into(),
        });
    }

    fn into_verdict(mut self, bulk: Option<String>, problems: Vec<String>) -> Verdict {
        let mut strongest: HashMap<&'static str, i32> = HashMap::new();
        for reason in &self.reasons {
            let best = strongest.entry(reason.code).or_insert(reason.weight);
            *best = (*best).max(reason.weight);
        }
        let score: i32 = strongest.values().sum();
        let decisive = self.reasons.iter().any(|r| r.weight >= KNOWN_BAD);

        // Strongest first; among equals, the order of discovery.
        self.reasons.sort_by_key(|r| std::cmp::Reverse(r.weight));
        self.reasons.truncate(MAX_REASONS);

        let disposition = if decisive || score >= MALICIOUS_SCORE {
            Disposition::Malicious
        } else if score >= SUSPICIOUS_SCORE {
            Disposition::Suspicious
        } else if bulk.is_some() {
            Disposition::Bulk
        } else {
            Disposition::Clean
        };
        let summary = match (disposition, self.reasons.first(), bulk) {
            (Disposition::Malicious | Disposition::Suspicious, Some(top), _) => {
                format!("{}: {}", disposition.as_str(), top.text)
            }
            (Disposition::Bulk, _, Some(marker)) => {
                format!("bulk: list mail or a newsletter ({marker}) with no sign of a threat")
            }
            _ => "clean: no evidence of a threat was found".to_owned(),
        };
        Verdict {
            disposition,
            score,
            reasons: self.reasons,
            summary,
            problems,
        }
    }
}

/// The header that marks a message as list mail or a newsletter, when one does.
fn is_bulk(facts: &MessageFacts) -> Option<String> {
    let headers = &facts.headers;
    if let Some(id) = &headers.list_id {
        return Some(format!("List-Id: {id}"));
    }
    if let Some(precedence) = &headers.precedence {
        let p = precedence.trim().to_ascii_lowercase();
        if matches!(p.as_str(), "bulk" | "list" | "junk") {
            return Some(format!("Precedence: {p}"));
        }
    }
    headers
        .list_unsubscribe
        .as_ref()
        .map(|_| "List-Unsubscribe".to_owned())
}

fn url_evidence(
    facts: &MessageFacts,
    intel: &dyn Intelligence,
    evidence: &mut Evidence,
    problems: &mut Vec<String>,
) {
    let (found, left_out) = urls::extract_counting(facts);
    if left_out > 0 {
        problems.push(format!(
            "{left_out} URLs past the first {} were not examined",
            urls::MAX_URLS
        ));
    }
    for url in &found {
        if let Some(source) = intel.url_is_bad(&url.url) {
            evidence.add(
                "url.known_bad",
                KNOWN_BAD,
                &url.url,
                format!("The link {} is known to be malicious ({source}).", url.url),
            );
        }
        if let Some(host) = &url.host {
            let domain = lexicon::registrable(host);
            if let Some(source) = intel
                .domain_is_bad(host)
                .or_else(|| intel.domain_is_bad(domain))
            {
                evidence.add(
                    "url.domain_known_bad",
                    KNOWN_BAD,
                    &url.url,
                    format!(
                        "The link {} goes to {host}, known to be malicious ({source}).",
                        url.url
                    ),
                );
            }
        }
        for t in urls::traits(url) {
            let (code, weight, text) = url_trait_reason(&t, &url.url);
            evidence.add(code, weight, &url.url, text);
        }
    }
}

fn url_trait_reason(t: &UrlTrait, url: &str) -> (&'static str, i32, String) {
    match t {
        UrlTrait::IpHost => (
            "url.ip_host",
            25,
            format!("The link {url} goes to a bare IP address instead of a name."),
        ),
        UrlTrait::Punycode => (
            "url.punycode",
            10,
            format!("The link {url} goes to an internationalised (punycode) domain."),
        ),
        UrlTrait::ConfusableHost => (
            "url.confusable_host",
            35,
            format!("The link {url} goes to a domain spelt with look-alike characters."),
        ),
        UrlTrait::LookalikeHost { brand } => (
            "url.lookalike_host",
            35,
            format!("The link {url} goes to a domain that imitates {brand}."),
        ),
        UrlTrait::DisplayMismatch { shown } => (
            "url.display_mismatch",
            20,
            format!("The link shows {shown} but goes to {url}."),
        ),
        UrlTrait::Shortener => (
            "url.shortener",
            10,
            format!("The link {url} is shortened, hiding where it goes."),
        ),
        UrlTrait::DataUrl => (
            "url.data",
            30,
            format!("A link carries its own content as a data: URL ({url})."),
        ),
        UrlTrait::JavascriptUrl => ("url.javascript", 20, format!("A link runs script ({url}).")),
        UrlTrait::CredentialPath => (
            "url.credential_path",
            8,
            format!("The link {url} leads to a sign-in or verification page."),
        ),
        UrlTrait::FreeHosting => (
            "url.free_hosting",
            20,
            format!(
                "The link {url} goes to free hosting, forms or IPFS, where anyone can publish."
            ),
        ),
        UrlTrait::Obfuscated => (
            "url.obfuscated",
            30,
            format!(
                "The link {url} is written with hidden characters that browsers drop, to slip past scanners."
            ),
        ),
        UrlTrait::RiskyDownload { extension } => (
            "url.risky_download",
            35,
            format!("The link {url} downloads a .{extension} file, a kind that runs code."),
        ),
    }
}

fn attachment_evidence(
    attachment: &AttachmentFacts,
    intel: &dyn Intelligence,
    evidence: &mut Evidence,
) {
    let name = attachment
        .name
        .clone()
        .unwrap_or_else(|| format!("unnamed {} part", attachment.declared_type));
    if let Some(source) = intel.hash_is_bad(&attachment.sha256) {
        evidence.add(
            "attachment.known_bad",
            KNOWN_BAD,
            &name,
            format!(
                "The attachment \"{name}\" is known to be malicious ({source}; SHA-256 {}).",
                attachment.sha256
            ),
        );
    }
    if let Some(kind) = attachment.risky {
        let (code, weight, what) = match (kind, attachment.extension.as_deref()) {
            // An Internet shortcut only opens a link; a .lnk or .scf runs commands.
            (RiskyKind::Shortcut, Some("url")) => (
                "attachment.internet_shortcut",
                25,
                "an Internet shortcut, a link in a file that can also open remote files",
            ),
            _ => risky_reason(kind),
        };
        evidence.add(
            code,
            weight,
            &name,
            format!("The attachment \"{name}\" is {what}."),
        );
    }
    if let Some(mismatch) = &attachment.mismatch {
        evidence.add(
            "attachment.type_mismatch",
            30,
            &name,
            format!("The attachment \"{name}\" is not what it claims to be: {mismatch}."),
        );
    }
    if let Some(hidden) = double_extension(&name) {
        evidence.add("attachment.double_extension", 30, &name, format!("The attachment \"{name}\" hides its real type, .{hidden}, behind another extension."));
    }
    if name
        .chars()
        .any(|c| lexicon::is_invisible(c) || lexicon::is_overlay_mark(c))
    {
        evidence.add(
            "attachment.disguised_name",
            30,
            &name,
            format!(
                "The attachment's name \"{name}\" holds invisible or direction-changing characters."
            ),
        );
    }
}

fn risky_reason(kind: RiskyKind) -> (&'static str, i32, &'static str) {
    match kind {
        RiskyKind::Executable => ("attachment.executable", 70, "a program"),
        RiskyKind::Script => ("attachment.script", 70, "a script"),
        RiskyKind::Shortcut => (
            "attachment.shortcut",
            70,
            "a shortcut, which can run commands",
        ),
        RiskyKind::DiskImage => (
            "attachment.disk_image",
            60,
            "a disk image, a container that bypasses mark-of-the-web",
        ),
        RiskyKind::ConfigurationProfile => (
            "attachment.configuration_profile",
            60,
            "an Apple configuration profile, which can take over a device's mail and network settings",
        ),
        RiskyKind::MacroDocument => (
            "attachment.macro_document",
            50,
            "an Office document with macros",
        ),
        RiskyKind::Html => (
            "attachment.html",
            45,
            "an HTML file, which can smuggle files or host a sign-in form offline",
        ),
        RiskyKind::EncryptedContainer => (
            "attachment.encrypted",
            35,
            "encrypted, which keeps scanners from seeing inside",
        ),
        RiskyKind::Archive => (
            "attachment.archive",
            10,
            "an archive, a common wrapper for harmful files",
        ),
    }
}

/// The hidden real extension of `document.pdf.exe` or `order.xls.htm`: an innocent-looking
/// extension followed by one that runs code or renders a page.
fn double_extension(name: &str) -> Option<String> {
    let lower = name.trim().to_lowercase();
    let mut parts = lower.rsplit('.');
    let last = parts.next()?;
    let before = parts.next()?;
    parts.next()?;
    let innocent = [
        "pdf", "doc", "docx", "xls", "xlsx", "txt", "jpg", "jpeg", "png", "rtf", "csv", "ppt",
        "pptx",
    ];
    let active = [
        "exe", "scr", "com", "bat", "cmd", "js", "vbs", "hta", "htm", "html", "shtml", "svg",
        "lnk", "iso", "img", "msi", "jar", "wsf", "ps1",
    ];
    (innocent.contains(&before) && active.contains(&last)).then(|| last.to_owned())
}

fn header_evidence(facts: &MessageFacts, evidence: &mut Evidence) {
    // Mailing lists rewrite messages and so break signatures: their authentication failures
    // weigh half.
    let is_list = facts.headers.list_id.is_some();
    for finding in header_checks::check(&facts.headers) {
        // Headers recovered from a forwarded text are too partial to judge by what is absent.
        let about_absence = matches!(
            finding.kind,
            FindingKind::MissingFrom | FindingKind::MissingDate | FindingKind::FakeReply
        );
        if facts.headers_lost && about_absence {
            continue;
        }
        let (code, mut weight) = header_weight(finding.kind);
        if is_list && is_authentication(finding.kind) {
            weight /= 2;
        }
        evidence.add(
            code,
            weight,
            format!("{}: {}", finding.header, finding.value),
            finding.detail,
        );
    }

    if let Some(subject) = &facts.headers.subject {
        let disguise = lexicon::disguise(subject);
        if disguise.is_deliberate() {
            evidence.add(
                "subject.disguised",
                30,
                format!("Subject: {subject}"),
                format!(
                    "The subject is disguised to slip past filters: {}.",
                    disguise.describe()
                ),
            );
        }
        if let Some((word, brand)) = lexicon::misspelt_brand(subject) {
            evidence.add(
                "subject.misspelt_brand",
                30,
                format!("Subject: {subject}"),
                format!("The subject spells \"{brand}\" with look-alike characters: \"{word}\"."),
            );
        }
    }
}

fn is_authentication(kind: FindingKind) -> bool {
    use FindingKind::*;
    matches!(
        kind,
        SpfFail | SpfSoftfail | SpfNone | DkimFail | DmarcFail | DmarcNone | CompositeAuthFail
    )
}

fn header_weight(kind: FindingKind) -> (&'static str, i32) {
    use FindingKind::*;
    match kind {
        SpfFail => ("header.spf_fail", 15),
        SpfSoftfail => ("header.spf_softfail", 8),
        SpfNone => ("header.spf_none", 3),
        DkimFail => ("header.dkim_fail", 8),
        DmarcFail => ("header.dmarc_fail", 20),
        DmarcNone => ("header.dmarc_none", 3),
        CompositeAuthFail => ("header.compauth_fail", 10),
        DisplayNameAddress => ("header.display_name_address", 25),
        DisplayNameDomain => ("header.display_name_domain", 15),
        DisplayNameBrand => ("header.display_name_brand", 25),
        DisguisedDisplayName => ("header.disguised_display_name", 30),
        LookalikeDomain => ("header.lookalike_domain", 40),
        PunycodeDomain => ("header.punycode_domain", 10),
        ReplyToDiffers => ("header.reply_to_differs", 10),
        ReplyToFreemail => ("header.reply_to_freemail", 25),
        ReturnPathDiffers => ("header.return_path_differs", 3),
        FakeReply => ("header.fake_reply", 10),
        MissingFrom => ("header.missing_from", 30),
        MissingDate => ("header.missing_date", 10),
    }
}

/// What reading the bodies' text and markup shows.
#[derive(Default)]
struct Content {
    /// Lower-cased, look-alikes folded, invisible characters dropped, whitespace collapsed.
    text: String,
    /// Characters of body text (not the subject), whitespace aside.
    body_chars: usize,
    forms: usize,
    password_fields: usize,
    /// Scripts that send the browser to another page.
    redirecting_scripts: usize,
    hidden_chars: usize,
    disguise: lexicon::Disguise,
}

fn content_evidence(facts: &MessageFacts, evidence: &mut Evidence) {
    let content = read_content(facts);
    let item = "message body";

    if content.password_fields > 0 {
        evidence.add(
            "content.password_form",
            40,
            item,
            "The message holds a form that asks for a password.",
        );
    } else if content.forms > 0 {
        evidence.add(
            "content.html_form",
            20,
            item,
            "The message holds a form that sends what is typed into it.",
        );
    }
    if content.redirecting_scripts > 0 {
        evidence.add("content.script_redirect", 25, item, "The message holds a script that sends the reader to another page, which no legitimate mail needs.");
    }
    if content.hidden_chars >= 200 {
        evidence.add(
            "content.hidden_text",
            10,
            item,
            format!(
                "The message hides {} characters of text from the reader.",
                content.hidden_chars
            ),
        );
    }
    let d = content.disguise;
    if d.invisible_in_words >= 3
        || d.mixed_script_words >= 2
        || d.math_letters >= 3
        || d.overlay_marks >= 2
    {
        evidence.add(
            "content.disguised_text",
            30,
            item,
            format!(
                "The text is disguised to slip past filters: {}.",
                d.describe()
            ),
        );
    }

    let hits = lure_hits(&content.text);
    for (lure, phrases) in hits.iter().enumerate() {
        if phrases.is_empty() {
            continue;
        }
        let (code, one, more, what) = LURES[lure].weights;
        let weight = if phrases.len() >= 2 { more } else { one };
        let quoted: Vec<String> = phrases.iter().take(4).map(|p| format!("\"{p}\"")).collect();
        evidence.add(
            code,
            weight,
            item,
            format!("The text {what}: {}.", quoted.join(", ")),
        );
    }

    let sender_domain = facts
        .headers
        .from
        .as_ref()
        .and_then(|f| f.domain())
        .unwrap_or("");
    let paying = !hits[PAYMENT_LURE].is_empty();
    if let (true, Some(phone), Some(brand)) = (
        paying,
        phone_number(&content.text),
        foreign_brand(&content.text, sender_domain),
    ) {
        evidence.add("content.callback_lure", 35, item, format!("The text names {brand}, speaks of a payment and asks the reader to call {phone}, but the sender is not {brand}."));
    }

    let documents: Vec<&str> = facts
        .attachments
        .iter()
        .filter_map(|a| a.name.as_deref())
        .filter(|n| is_document(n))
        .collect();
    if let Some(first) = documents.first()
        && content.body_chars < 160
    {
        evidence.add(
            "content.attachment_only",
            10,
            *first,
            format!(
                "The message says almost nothing and leaves everything to the attachment \"{first}\"."
            ),
        );
    }
    let asks = !hits[CREDENTIAL_LURE].is_empty() || paying;
    if lexicon::in_list(lexicon::registrable(sender_domain), lexicon::FREEMAIL)
        && (asks || !documents.is_empty())
    {
        let from = facts
            .headers
            .from
            .as_ref()
            .and_then(|f| f.address.clone())
            .unwrap_or_default();
        evidence.add(
            "header.freemail_business",
            10,
            format!("From: {from}"),
            "A free-mail address sends documents, payment requests or account notices.",
        );
    }
    let subject_empty = facts
        .headers
        .subject
        .as_deref()
        .is_none_or(|s| s.trim().is_empty());
    if subject_empty && !facts.headers_lost && !facts.headers.all.is_empty() {
        evidence.add(
            "header.no_subject",
            5,
            "Subject",
            "The message has no subject.",
        );
    }
}

/// The first thing in `text` written like a telephone number: ten to fifteen digits in
/// groups, standing apart from other words.
fn phone_number(text: &str) -> Option<&str> {
    let bytes = text.as_bytes();
    let mut at = 0;
    while at < bytes.len() {
        let b = bytes[at];
        let starts = (b == b'+' || b == b'(' || b.is_ascii_digit())
            && (at == 0 || !bytes[at - 1].is_ascii_alphanumeric());
        if !starts {
            at += 1;
            continue;
        }
        let (mut end, mut digits, mut groups_split) = (at, 0, 0);
        while end < bytes.len() && (bytes[end].is_ascii_digit() || b"+-. ()".contains(&bytes[end]))
        {
            if bytes[end].is_ascii_digit() {
                digits += 1;
            } else if end > at && bytes[end - 1].is_ascii_digit() {
                groups_split += 1;
            }
            end += 1;
        }
        let candidate = text[at..end].trim_end_matches([' ', '-', '.', '(']);
        let after = at + candidate.len();
        let alone = after == bytes.len() || !bytes[after].is_ascii_alphanumeric();
        if (10..=15).contains(&digits) && groups_split >= 2 && alone {
            return Some(candidate);
        }
        at = end.max(at + 1);
    }
    None
}

/// A brand that `text` names although the sender's domain is not the brand's.
fn foreign_brand(text: &str, sender_domain: &str) -> Option<&'static str> {
    let own = lexicon::registrable(sender_domain);
    lexicon::BRANDS
        .iter()
        .find(|(brand, domains)| !domains.contains(&own) && mentions(text, brand))
        .map(|(brand, _)| *brand)
}

/// Whether `word` occurs in `text` as a word of its own.
fn mentions(text: &str, word: &str) -> bool {
    let bytes = text.as_bytes();
    text.match_indices(word).any(|(at, _)| {
        let end = at + word.len();
        (at == 0 || !bytes[at - 1].is_ascii_alphanumeric())
            && (end == bytes.len() || !bytes[end].is_ascii_alphanumeric())
    })
}

/// Whether a file name is of a kind that carries a document, a page or other files.
fn is_document(name: &str) -> bool {
    let extension = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    matches!(
        extension.as_str(),
        "pdf"
            | "doc"
            | "docx"
            | "docm"
            | "xls"
            | "xlsx"
            | "xlsm"
            | "ppt"
            | "pptx"
            | "rtf"
            | "odt"
            | "htm"
            | "html"
            | "shtml"
            | "svg"
            | "zip"
            | "rar"
            | "7z"
            | "iso"
            | "img"
            | "one"
            | "rpmsg"
    )
}

fn read_content(facts: &MessageFacts) -> Content {
    let mut content = Content::default();
    let mut raw = String::new();
    if let Some(subject) = &facts.headers.subject {
        raw.push_str(subject);
        raw.push('\n');
    }
    for body in &facts.text_bodies {
        raw.push_str(prefix(body, MAX_CONTENT_BYTES));
        raw.push('\n');
    }
    for body in &facts.html_bodies {
        read_html(prefix(body, MAX_CONTENT_BYTES * 2), &mut content, &mut raw);
    }
    let body_only = raw.split_once('\n').map_or("", |(_, b)| b);
    content.disguise = lexicon::disguise(body_only);
    content.body_chars = body_only.chars().filter(|c| !c.is_whitespace()).count();
    content.text = fold_for_matching(&raw);
    content
}

/// Adds an HTML body's visible text to `text`, counting forms and hidden text.
fn read_html(body: &str, content: &mut Content, text: &mut String) {
    // The tag that hides what is inside it, and how deep inside it reading is.
    let mut hidden: Option<(String, usize)> = None;
    let mut hidden_by_css: Vec<String> = Vec::new();
    let budget = text.len() + MAX_CONTENT_BYTES;
    for token in html::tokens(body) {
        match token {
            html::Token::Start { name, attrs } => {
                let attr = |n: &str| attrs.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_ref());
                match name.as_str() {
                    "form" => content.forms += 1,
                    "input" if attr("type").is_some_and(|t| t.eq_ignore_ascii_case("password")) => {
                        content.password_fields += 1
                    }
                    _ => {}
                }
                if let Some((tag, depth)) = hidden.as_mut() {
                    if *tag == name {
                        *depth += 1;
                    }
                } else if !is_void(&name)
                    && (attr("style").is_some_and(hides) || hidden_by_css.contains(&name))
                {
                    hidden = Some((name, 1));
                }
            }
            html::Token::End { name } => {
                if let Some((tag, depth)) = hidden.as_mut()
                    && *tag == name
                {
                    *depth -= 1;
                    if *depth == 0 {
                        hidden = None;
                    }
                }
                if matches!(
                    name.as_str(),
                    "p" | "div" | "td" | "tr" | "li" | "h1" | "h2" | "h3" | "title"
                ) {
                    text.push('\n');
                }
            }
            html::Token::Style(css) => hidden_by_css.extend(hidden_elements(css)),
            html::Token::Script(script) => {
                let lower = script.to_ascii_lowercase();
                if [
                    "location.href",
                    "location.replace",
                    "window.location",
                    "document.location",
                    "window.open",
                ]
                .iter()
                .any(|n| lower.contains(n))
                {
                    content.redirecting_scripts += 1;
                }
            }
            html::Token::Text(raw) => {
                let decoded = html::decode_entities(raw);
                if hidden.is_some() {
                    content.hidden_chars += decoded.chars().filter(|c| !c.is_whitespace()).count();
                }
                if text.len() < budget {
                    text.push_str(&decoded);
                    text.push(' ');
                }
            }
        }
    }
}

/// The element names that a style sheet hides with a plain type selector (`q{display:none}`).
fn hidden_elements(css: &str) -> Vec<String> {
    let mut out = Vec::new();
    for rule in css.split('}').take(500) {
        let Some((selectors, body)) = rule.split_once('{') else {
            continue;
        };
        if !hides(body) {
            continue;
        }
        for selector in selectors.split(',') {
            let selector = selector.trim();
            if !selector.is_empty()
                && selector.len() <= 12
                && selector.chars().all(|c| c.is_ascii_alphanumeric())
            {
                out.push(selector.to_ascii_lowercase());
            }
        }
    }
    out
}

fn is_void(tag: &str) -> bool {
    matches!(
        tag,
        "img"
            | "br"
            | "hr"
            | "input"
            | "meta"
            | "link"
            | "area"
            | "base"
            | "col"
            | "wbr"
            | "source"
    )
}

/// Whether an inline style hides the element's content.
fn hides(style: &str) -> bool {
    let compact: String = style
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_lowercase();
    [
        "display:none",
        "visibility:hidden",
        "font-size:0;",
        "font-size:0px",
        "opacity:0;",
        "max-height:0",
    ]
    .iter()
    .any(|h| compact.contains(h) || (h.ends_with(';') && compact.ends_with(&h[..h.len() - 1])))
}

fn prefix(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Lower case, look-alike letters folded to the Latin ones they imitate, invisible characters
/// dropped, runs of whitespace made one space.
fn fold_for_matching(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut space = false;
    for c in text.chars() {
        if lexicon::is_invisible(c) || lexicon::is_overlay_mark(c) {
            continue;
        }
        if c.is_whitespace() {
            space = true;
            continue;
        }
        if space && !out.is_empty() {
            out.push(' ');
        }
        space = false;
        if c.is_ascii() {
            out.push(c.to_ascii_lowercase());
        } else if c == '’' {
            out.push('\'');
        } else {
            out.push(lexicon::fold(c));
        }
    }
    out
}

/// A family of lures: its phrases and (code, weight for one phrase, weight for two or more,
/// what the text does).
struct Lure {
    phrases: &'static [&'static str],
    weights: (&'static str, i32, i32, &'static str),
}

/// Phrases of the lures that phishing and fraud use, in the languages most seen. General
/// wording only: each phrase is common to a whole kind of lure.
const CREDENTIAL_LURE: usize = 0;
const PAYMENT_LURE: usize = 2;

const LURES: &[Lure] = &[
    Lure {
        phrases: &[
            "verify your account",
            "verify your identity",
            "verify your information",
            "verify your email",
            "confirm your account",
            "confirm your identity",
            "confirm your details",
            "update your account",
            "update your payment",
            "update your billing",
            "account has been suspended",
            "account is suspended",
            "account will be suspended",
            "account has been locked",
            "account has been limited",
            "temporarily on hold",
            "unusual activity",
            "unusual sign-in",
            "suspicious activity",
            "reset your password",
            "password expires",
            "password will expire",
            "validate your",
            "reactivate your",
            "log in to your account",
            "login to your account",
            "sign in to your account",
            "mailbox is full",
            "storage is full",
            "storage is almost full",
            "restore your account",
            "account will be closed",
            "enter your password",
            "keep your account",
            "verifique sua conta",
            "confirme seus dados",
            "atualize seus dados",
            "sua senha",
            "senha de acesso",
            "verifique su cuenta",
            "actualice sus datos",
            "su contraseña",
            "vérifiez votre compte",
            "votre mot de passe",
            "ihr passwort",
            "bestätigen sie ihr",
            "uw wachtwoord",
            "bevestig uw",
            "verifieer uw",
        ],
        weights: (
            "content.credential_lure",
            12,
            20,
            "asks the reader to sign in or confirm account details",
        ),
    },
    Lure {
        phrases: &[
            "urgent",
            "immediately",
            "action required",
            "within 24 hours",
            "within 48 hours",
            "final notice",
            "last warning",
            "expires today",
            "act now",
            "respond promptly",
            "as soon as possible",
            "asap",
            "imediatamente",
            "urgente",
            "dringend",
            "sofort",
            "dès que possible",
            "onmiddellijk",
            "reageer alstublieft",
            "atualize agora",
            "hurry up",
            "confirm now",
            "only today",
            "expires soon",
        ],
        weights: ("content.urgency", 5, 10, "presses for haste"),
    },
    Lure {
        phrases: &[
            "invoice",
            "wire transfer",
            "bank transfer",
            "remittance",
            "purchase order",
            "overdue",
            "outstanding balance",
            "bank details",
            "proof of payment",
            "transfer slip",
            "payment confirmation",
            "order confirmation",
            "has been renewed",
            "subscription has been",
            "pagamento",
            "fatura",
            "factura",
            "comprobante",
            "rechnung",
            "zahlung",
            "facture",
            "paiement",
            "factuur",
            "betaling",
            "boleto",
        ],
        weights: (
            "content.payment_lure",
            6,
            12,
            "speaks of payments or invoices",
        ),
    },
    Lure {
        phrases: &[
            "beneficiary",
            "next of kin",
            "inheritance",
            "consignment",
            "million usd",
            "million dollars",
            "million united states dollars",
            "usd$",
            "us$",
            "diplomat",
            "my late",
            "compensation fund",
            "atm card",
            "barrister",
            "foreign partner",
            "transfer the sum",
            "sum of $",
            "deceased",
            "milhões",
            "millones",
            "herança",
            "beneficiário",
            "falecido",
            "fallecido",
            "next-of-kin",
            "monetary fund",
            "dormant account",
            "your assistance",
        ],
        weights: (
            "content.fortune_lure",
            12,
            30,
            "promises a fortune in return for help or fees",
        ),
    },
    Lure {
        phrases: &[
            "you have won",
            "you've won",
            "you are a winner",
            "you have been chosen",
            "congratulations",
            "gift card",
            "free spins",
            "airdrop",
            "claim your",
            "claim now",
            "prize",
            "giveaway",
            "free gift",
            "reward",
            "you have been selected",
            "ganhou",
            "prêmio",
            "gewonnen",
            "cadeaukaart",
            "gagné",
            "ha ganado",
            "premio",
        ],
        weights: (
            "content.prize_lure",
            8,
            15,
            "dangles a prize, a gift or free money",
        ),
    },
    Lure {
        phrases: &[
            "sex chat",
            "live sex",
            "hot singles",
            "lonely women",
            "hookup",
            "meet singles",
            "sexy girls",
            "adult dating",
            "nude",
            "naked",
            "singles in your area",
            "hot girls",
            "webcam",
            "dating site",
        ],
        weights: ("content.adult_lure", 10, 20, "lures with sex or dating"),
    },
];

/// The distinct phrases of each lure found in `text`.
fn lure_hits(text: &str) -> Vec<Vec<&'static str>> {
    static MATCHER: OnceLock<(AhoCorasick, Vec<(usize, &'static str)>)> = OnceLock::new();
    let (matcher, owners) = MATCHER.get_or_init(|| {
        let owners: Vec<(usize, &'static str)> = LURES
            .iter()
            .enumerate()
            .flat_map(|(i, l)| l.phrases.iter().map(move |p| (i, *p)))
            .collect();
        let folded: Vec<String> = owners.iter().map(|(_, p)| fold_for_matching(p)).collect();
        let matcher = AhoCorasick::new(&folded).expect("the lure phrases build a matcher");
        (matcher, owners)
    });
    let mut hits: Vec<Vec<&'static str>> = vec![Vec::new(); LURES.len()];
    for m in matcher.find_overlapping_iter(text) {
        let (lure, phrase) = owners[m.pattern().as_usize()];
        let bytes = text.as_bytes();
        let starts_word = m.start() == 0 || !bytes[m.start() - 1].is_ascii_alphanumeric();
        let ends_at = |end: usize| end == bytes.len() || !bytes[end].is_ascii_alphanumeric();
        // A plural still counts: "invoices", "prizes".
        let ends_word =
            ends_at(m.end()) || (bytes.get(m.end()) == Some(&b's') && ends_at(m.end() + 1));
        if starts_word && ends_word && !hits[lure].contains(&phrase) {
            hits[lure].push(phrase);
        }
    }
    hits
}

/// How a set of verdicts compares with the truth, Malicious and Suspicious counting as
/// positive.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Confusion {
    pub tp: usize,
    pub fp: usize,
    pub tn: usize,
    pub fn_: usize,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub false_positive_rate: f64,
}

/// Counts (truly malicious, disposition) pairs into a confusion matrix and its rates. A rate
/// whose denominator is zero is 0.
pub fn confusion(results: &[(bool, Disposition)]) -> Confusion {
    let (mut tp, mut fp, mut tn, mut fn_) = (0, 0, 0, 0);
    for &(malicious, disposition) in results {
        match (malicious, disposition.is_positive()) {
            (true, true) => tp += 1,
            (false, true) => fp += 1,
            (false, false) => tn += 1,
            (true, false) => fn_ += 1,
        }
    }
    let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let precision = ratio(tp, tp + fp);
    let recall = ratio(tp, tp + fn_);
    let f1 = if precision + recall == 0.0 {
        0.0
    } else {
        2.0 * precision * recall / (precision + recall)
    };
    Confusion {
        tp,
        fp,
        tn,
        fn_,
        precision,
        recall,
        f1,
        false_positive_rate: ratio(fp, fp + tn),
    }
}

#[cfg(test)]
mod tests;

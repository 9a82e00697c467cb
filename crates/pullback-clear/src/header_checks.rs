//! Evidence in a message's headers: failed sender authentication, display names that pretend
//! to be someone else, look-alike domains, and replies or bounces that go elsewhere than the
//! sender. Each finding names the header and the value that triggered it.

use serde::Serialize;

use crate::facts::{HeaderFacts, Mailbox};
use crate::urls::lexicon;

/// One thing in the headers worth telling an analyst.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HeaderFinding {
    pub kind: FindingKind,
    /// The header that triggered it (`From`, `Reply-To`, `Authentication-Results`...).
    pub header: &'static str,
    /// The part of the header's value that triggered it.
    pub value: String,
    /// One sentence for the analyst.
    pub detail: String,
}

/// What a [`HeaderFinding`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    SpfFail,
    SpfSoftfail,
    SpfNone,
    DkimFail,
    DmarcFail,
    DmarcNone,
    /// Microsoft's composite authentication (`compauth=fail`).
    CompositeAuthFail,
    /// The display name holds an address at another domain than the sender's.
    DisplayNameAddress,
    /// The display name holds a domain other than the sender's.
    DisplayNameDomain,
    /// The display name names a well-known brand; the sender's domain is not the brand's.
    DisplayNameBrand,
    /// The display name hides its letters (invisible characters, mixed alphabets).
    DisguisedDisplayName,
    /// A sender or reply domain imitates a brand's or the recipient's domain.
    LookalikeDomain,
    /// A sender domain is written in punycode.
    PunycodeDomain,
    /// Replies go to another domain than the sender's.
    ReplyToDiffers,
    /// Replies go to a free-mail mailbox that is not the sender's.
    ReplyToFreemail,
    /// Bounces go to another domain than the sender's.
    ReturnPathDiffers,
    /// The subject claims a reply or forward, but nothing refers to an earlier message.
    FakeReply,
    /// There is no `From`, which every message must have.
    MissingFrom,
    /// There is no `Date`, which every message must have.
    MissingDate,
}

/// Every finding in `headers`, in a stable order.
pub fn check(headers: &HeaderFacts) -> Vec<HeaderFinding> {
    let mut out = Vec::new();
    authentication(headers, &mut out);
    let is_list = headers.list_id.is_some();

    if let Some(from) = &headers.from {
        display_name(from, &mut out);
        if let Some(address) = &from.address {
            lookalike("From", address, &recipient_domains(headers), &mut out);
        }
        if !is_list {
            reply_to(from, &headers.reply_to, &mut out);
        }
        return_path(from, headers.return_path.as_deref(), &mut out);
    }
    fake_reply(headers, &mut out);
    missing_required(headers, &mut out);
    out
}

/// RFC 5322 requires `From` and `Date`; mail programs always write them. Only read when the
/// headers were read whole (`all` is filled).
fn missing_required(headers: &HeaderFacts, out: &mut Vec<HeaderFinding>) {
    if headers.all.is_empty() && headers.from.is_some() {
        return;
    }
    let has = |name: &str| {
        headers
            .all
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(name))
    };
    for (header, kind) in [
        ("From", FindingKind::MissingFrom),
        ("Date", FindingKind::MissingDate),
    ] {
        if !has(header) {
            out.push(HeaderFinding {
                kind,
                header,
                value: String::new(),
                detail: format!(
                    "The message has no {header} header, which every mail program writes."
                ),
            });
        }
    }
}

/// The results of one authentication method, from the topmost header that reports it.
fn authentication(headers: &HeaderFacts, out: &mut Vec<HeaderFinding>) {
    for method in ["spf", "dkim", "dmarc", "compauth"] {
        let Some((result, clause)) = method_result(&headers.authentication_results, method) else {
            if method == "spf" {
                received_spf(headers, out);
            }
            continue;
        };
        let (kind, meaning) = match (method, result.as_str()) {
            ("spf", "fail") => (
                FindingKind::SpfFail,
                "the sending server is not allowed to send for the envelope domain",
            ),
            ("spf", "softfail") => (
                FindingKind::SpfSoftfail,
                "the envelope domain does not vouch for the sending server",
            ),
            ("spf", "none") => (
                FindingKind::SpfNone,
                "the envelope domain publishes no SPF policy",
            ),
            ("dkim", "fail") => (FindingKind::DkimFail, "the DKIM signature does not verify"),
            ("dmarc", "fail") => (
                FindingKind::DmarcFail,
                "the From domain's DMARC check failed",
            ),
            ("dmarc", "none") => (
                FindingKind::DmarcNone,
                "the From domain publishes no DMARC policy",
            ),
            ("compauth", "fail") => (
                FindingKind::CompositeAuthFail,
                "the receiving service could not authenticate the sender",
            ),
            _ => continue,
        };
        out.push(HeaderFinding {
            kind,
            header: "Authentication-Results",
            value: clip(&clause, 200),
            detail: format!("{method}={result}: {meaning}."),
        });
    }
}

/// `method`'s result and the clause that gave it. A pass anywhere in that header wins (a
/// message can carry several DKIM signatures).
fn method_result(values: &[String], method: &str) -> Option<(String, String)> {
    for value in values {
        let mut found: Option<(String, String)> = None;
        for clause in value.split(';') {
            let clause = clause.trim();
            let Some((name, rest)) = clause.split_once('=') else {
                continue;
            };
            if !name.trim().eq_ignore_ascii_case(method) {
                continue;
            }
            let result = rest
                .trim_start()
                .split(|c: char| c.is_whitespace() || c == '(')
                .next()
                .unwrap_or("")
                .to_ascii_lowercase();
            if result == "pass" || found.is_none() {
                found = Some((result, clause.to_owned()));
            }
        }
        if found.is_some() {
            return found;
        }
    }
    None
}

fn received_spf(headers: &HeaderFacts, out: &mut Vec<HeaderFinding>) {
    let Some(value) = headers.received_spf.first() else {
        return;
    };
    let result = value
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    let kind = match result.as_str() {
        "fail" => FindingKind::SpfFail,
        "softfail" => FindingKind::SpfSoftfail,
        _ => return,
    };
    out.push(HeaderFinding {
        kind,
        header: "Received-SPF",
        value: clip(value, 200),
        detail: format!(
            "SPF {result}: the sending server is not authorised for the envelope domain."
        ),
    });
}

fn display_name(from: &Mailbox, out: &mut Vec<HeaderFinding>) {
    let (Some(name), Some(address)) = (from.name.as_deref(), from.address.as_deref()) else {
        return;
    };
    let domain = from.domain().unwrap_or("");
    let own = lexicon::registrable(domain);
    let value = format!("{name} <{address}>");

    let disguise = lexicon::disguise(name);
    if disguise.invisible_in_words > 0
        || disguise.mixed_script_words > 0
        || disguise.overlay_marks > 0
        || disguise.math_letters >= 3
    {
        out.push(HeaderFinding {
            kind: FindingKind::DisguisedDisplayName,
            header: "From",
            value: value.clone(),
            detail: format!(
                "The sender's display name is disguised: {}.",
                disguise.describe()
            ),
        });
    }

    if let Some((word, brand)) = lexicon::misspelt_brand(name) {
        out.push(HeaderFinding {
            kind: FindingKind::DisguisedDisplayName,
            header: "From",
            value: value.clone(),
            detail: format!(
                "The display name spells \"{brand}\" with look-alike characters: \"{word}\"."
            ),
        });
    }

    let lower = name.to_lowercase();
    for token in lower.split(|c: char| c.is_whitespace() || "<>()[]\"',;|:".contains(c)) {
        let token = token.trim_matches(|c: char| !c.is_alphanumeric());
        if token.is_empty() || token == address {
            continue;
        }
        if let Some((_, shown_domain)) = token.rsplit_once('@') {
            if is_address_domain(shown_domain) && lexicon::registrable(shown_domain) != own {
                out.push(HeaderFinding {
                    kind: FindingKind::DisplayNameAddress,
                    header: "From",
                    value: value.clone(),
                    detail: format!("The display name shows the address {token}, but the message comes from {address}."),
                });
                break;
            }
        } else if lexicon::looks_like_domain(token) && lexicon::registrable(token) != own {
            out.push(HeaderFinding {
                kind: FindingKind::DisplayNameDomain,
                header: "From",
                value: value.clone(),
                detail: format!("The display name shows the domain {token}, but the message comes from {domain}."),
            });
            break;
        }
    }

    let folded = lexicon::skeleton(name);
    for (brand, domains) in lexicon::BRANDS {
        if domains.contains(&own) || !contains_word(&folded, &lexicon::skeleton(brand)) {
            continue;
        }
        out.push(HeaderFinding {
            kind: FindingKind::DisplayNameBrand,
            header: "From",
            value: value.clone(),
            detail: format!("The display name says \"{brand}\", but the sender's domain {domain} is not that brand's."),
        });
        break;
    }
}

/// Whether the part after `@` in a display name is a domain: labels and a top-level domain of
/// letters.
fn is_address_domain(domain: &str) -> bool {
    let Some((head, tld)) = domain.rsplit_once('.') else {
        return false;
    };
    !head.is_empty() && tld.len() >= 2 && tld.chars().all(|c| c.is_ascii_alphabetic())
}

/// Whether `word` occurs in `text` between non-letters (or glued into a run of letters only
/// when it is long enough to be unambiguous, as in "PepeBinance").
fn contains_word(text: &str, word: &str) -> bool {
    let mut from = 0;
    while let Some(p) = text[from..].find(word).map(|p| p + from) {
        let before = text[..p].chars().next_back();
        let after = text[p + word.len()..].chars().next();
        let bounded = |c: Option<char>| c.is_none_or(|c| !c.is_alphanumeric());
        if (bounded(before) && bounded(after)) || (word.len() >= 6 && bounded(after)) {
            return true;
        }
        from = p + word.len();
    }
    false
}

/// The registrable domains the message was addressed to.
fn recipient_domains(headers: &HeaderFacts) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for mailbox in headers.to.iter().chain(&headers.cc).take(50) {
        if let Some(domain) = mailbox.domain() {
            let own = lexicon::registrable(domain).to_owned();
            if !out.contains(&own) {
                out.push(own);
            }
        }
    }
    out
}

fn lookalike(
    header: &'static str,
    address: &str,
    recipients: &[String],
    out: &mut Vec<HeaderFinding>,
) {
    let Some((_, domain)) = address.rsplit_once('@') else {
        return;
    };
    let own = lexicon::registrable(domain);
    let name = lexicon::registrable_name(domain);

    if domain.split('.').any(|label| label.starts_with("xn--")) {
        let (unicode, _) = idna::domain_to_unicode(domain);
        let confusable = unicode.split('.').any(lexicon::is_confusable_label);
        out.push(HeaderFinding {
            kind: if confusable {
                FindingKind::LookalikeDomain
            } else {
                FindingKind::PunycodeDomain
            },
            header,
            value: address.to_owned(),
            detail: if confusable {
                format!(
                    "The sender's domain {domain} ({unicode}) is spelt with look-alike characters."
                )
            } else {
                format!("The sender's domain {domain} ({unicode}) is an internationalised name.")
            },
        });
        return;
    }
    if let Some(brand) = lexicon::imitated_brand(domain) {
        out.push(HeaderFinding {
            kind: FindingKind::LookalikeDomain,
            header,
            value: address.to_owned(),
            detail: format!("The sender's domain {domain} imitates {brand}."),
        });
        return;
    }
    for recipient in recipients {
        let theirs = recipient.split('.').next().unwrap_or("");
        if own != recipient
            && lexicon::skeleton(name) == lexicon::skeleton(theirs)
            && name != theirs
        {
            out.push(HeaderFinding {
                kind: FindingKind::LookalikeDomain,
                header,
                value: address.to_owned(),
                detail: format!(
                    "The sender's domain {domain} imitates the recipient's domain {recipient}."
                ),
            });
            return;
        }
    }
}

fn reply_to(from: &Mailbox, reply_to: &[Mailbox], out: &mut Vec<HeaderFinding>) {
    let Some(from_address) = from.address.as_deref() else {
        return;
    };
    let from_domain = from.domain().unwrap_or("");
    let own = lexicon::registrable(from_domain);
    for mailbox in reply_to.iter().take(10) {
        let (Some(address), Some(domain)) = (mailbox.address.as_deref(), mailbox.domain()) else {
            continue;
        };
        if address == from_address {
            continue;
        }
        let theirs = lexicon::registrable(domain);
        if lexicon::in_list(theirs, lexicon::FREEMAIL) {
            out.push(HeaderFinding {
                kind: FindingKind::ReplyToFreemail,
                header: "Reply-To",
                value: address.to_owned(),
                detail: format!("Replies go to the free-mail address {address}, not to the sender {from_address}."),
            });
        } else if theirs != own {
            out.push(HeaderFinding {
                kind: FindingKind::ReplyToDiffers,
                header: "Reply-To",
                value: address.to_owned(),
                detail: format!(
                    "Replies go to {domain}, another domain than the sender's {from_domain}."
                ),
            });
        }
    }
}

fn return_path(from: &Mailbox, return_path: Option<&str>, out: &mut Vec<HeaderFinding>) {
    let (Some(from_domain), Some(path)) = (from.domain(), return_path) else {
        return;
    };
    let path = path.trim().trim_matches(['<', '>']);
    let Some((_, domain)) = path.rsplit_once('@') else {
        return;
    };
    let domain = domain.to_ascii_lowercase();
    if lexicon::registrable(&domain) != lexicon::registrable(from_domain) {
        out.push(HeaderFinding {
            kind: FindingKind::ReturnPathDiffers,
            header: "Return-Path",
            value: path.to_owned(),
            detail: format!(
                "Bounces go to {domain}, another domain than the sender's {from_domain}."
            ),
        });
    }
}

fn fake_reply(headers: &HeaderFacts, out: &mut Vec<HeaderFinding>) {
    let Some(subject) = headers.subject.as_deref() else {
        return;
    };
    let lower = subject.trim_start().to_lowercase();
    if !lower.starts_with("re:") || headers.all.is_empty() {
        return;
    }
    let refers = headers.all.iter().any(|(name, _)| {
        name.eq_ignore_ascii_case("in-reply-to")
            || name.eq_ignore_ascii_case("references")
            || name.eq_ignore_ascii_case("thread-index")
    });
    if !refers {
        out.push(HeaderFinding {
            kind: FindingKind::FakeReply,
            header: "Subject",
            value: clip(subject, 200),
            detail: "The subject claims a reply, but no header refers to an earlier message."
                .to_owned(),
        });
    }
}

fn clip(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests;

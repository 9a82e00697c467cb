//! Turning what the server returned for one entry into a [`DirectoryEntry`]: addresses in
//! order, the enrichment fields, kept attributes and member DNs, and a [`Problem`] for every
//! value that is not what it should be. Nothing here does IO.

use crate::config::{ClassConfig, EntryKind};
use crate::dn;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// A person or group as imported.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectoryEntry {
    /// The distinguished name as the server wrote it.
    pub dn: String,
    /// Every object class of the entry.
    pub object_classes: Vec<String>,
    /// Person or group, from the class configuration that found it.
    pub kind: EntryKind,
    /// Addresses in lower case, the primary first, no repeats.
    pub addresses: Vec<String>,
    /// `displayName`, else the first `cn`.
    pub display_name: Option<String>,
    /// `department`, else `departmentNumber`.
    pub department: Option<String>,
    /// `title`.
    pub title: Option<String>,
    /// The manager's DN (`manager`).
    pub manager: Option<String>,
    /// The attributes the class configuration keeps, by the name it gives them.
    pub attributes: BTreeMap<String, Vec<String>>,
    /// For groups: the members' DNs as listed, people and groups alike.
    pub member_dns: Vec<String>,
    /// The DNs of the groups this entry is in, directly or through nested groups.
    pub groups: Vec<String>,
}

/// Something wrong with one entry; the rest of the import goes on.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Problem {
    /// The entry concerned (for a referral, the place it points to).
    pub dn: String,
    /// What is wrong.
    pub what: ProblemKind,
}

/// The kinds of [`Problem`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ProblemKind {
    /// A person with no usable address, who cannot be matched to mail.
    NoAddress,
    /// Values of an attribute that are not UTF-8 text; they were left out.
    NotText {
        /// The attribute.
        attribute: String,
    },
    /// A value that should be a DN (a member, a manager) and is not; it was left out.
    NotADn {
        /// The attribute.
        attribute: String,
        /// The value as sent.
        value: String,
    },
    /// A value of an address attribute that is not an address; it was left out.
    NotAnAddress {
        /// The attribute.
        attribute: String,
        /// The value as sent.
        value: String,
    },
    /// Groups that contain each other, directly or through others. Membership is still
    /// resolved: each of them counts as containing the members of all.
    GroupLoop {
        /// The DNs of the groups in the loop, sorted.
        groups: Vec<String>,
    },
    /// Part of the tree lives on another server; it was not followed.
    Referral {
        /// Where the server pointed.
        urls: Vec<String>,
    },
    /// Two entries claim one address; lookups find the first.
    SharedAddress {
        /// The address.
        address: String,
        /// The entry lookups find.
        other_dn: String,
    },
    /// Classes of both kinds matched the entry; the first kind found was kept.
    KindConflict {
        /// The kind kept.
        kept: EntryKind,
        /// The object classes of the entry.
        class: String,
    },
    /// The server sent an entry this client could not decode.
    Malformed {
        /// What was wrong with it.
        reason: String,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.dn, self.what)
    }
}

impl fmt::Display for ProblemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProblemKind::NoAddress => f.write_str("no e-mail address"),
            ProblemKind::NotText { attribute } => {
                write!(f, "{attribute} has values that are not text")
            }
            ProblemKind::NotADn { attribute, value } => {
                write!(f, "{attribute} value {value:?} is not a distinguished name")
            }
            ProblemKind::NotAnAddress { attribute, value } => {
                write!(f, "{attribute} value {value:?} is not an e-mail address")
            }
            ProblemKind::GroupLoop { groups } => {
                write!(f, "groups contain each other: {}", groups.join(" ⊃ "))
            }
            ProblemKind::Referral { urls } => {
                write!(f, "referral not followed: {}", urls.join(", "))
            }
            ProblemKind::SharedAddress { address, other_dn } => {
                write!(f, "address {address} also belongs to {other_dn}")
            }
            ProblemKind::KindConflict { kept, class } => {
                write!(f, "class {class} gives another kind; kept {kept:?}")
            }
            ProblemKind::Malformed { reason } => write!(f, "undecodable entry: {reason}"),
        }
    }
}

/// One entry as the server sent it: attribute descriptions with their options, raw values.
#[derive(Clone, Debug, Default)]
pub(crate) struct RawEntry {
    pub dn: String,
    pub attributes: Vec<(String, Vec<Vec<u8>>)>,
}

/// Where the next slice of a ranged attribute starts (Active Directory sends at most 1,500
/// values of `member` at a time as `member;range=0-1499`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct MoreValues {
    pub attribute: String,
    pub start: u64,
}

impl RawEntry {
    /// The values of an attribute, its name compared without case; descriptions with options
    /// (`member;range=0-1499`, `cn;lang-de`) are not included.
    pub fn values(&self, name: &str) -> impl Iterator<Item = &Vec<u8>> {
        self.attributes
            .iter()
            .filter(move |(description, _)| description.eq_ignore_ascii_case(name))
            .flat_map(|(_, values)| values)
    }

    /// The values of an attribute including ranged slices, and where the next slice starts
    /// when the server held some back.
    pub fn ranged_values(&self, name: &str) -> (Vec<&Vec<u8>>, Option<MoreValues>) {
        let mut values: Vec<&Vec<u8>> = self.values(name).collect();
        let mut more = None;
        for (description, slice) in &self.attributes {
            let Some((base, option)) = description.split_once(';') else {
                continue;
            };
            let Some(range) = strip_prefix_ignore_case(option, "range=") else {
                continue;
            };
            if !base.eq_ignore_ascii_case(name) {
                continue;
            }
            values.extend(slice);
            if let Some((_, high)) = range.split_once('-')
                && let Ok(high) = high.parse::<u64>()
            {
                more = Some(MoreValues {
                    attribute: base.to_owned(),
                    start: high + 1,
                });
            }
        }
        (values, more)
    }

    /// The text values of an attribute; a problem when some are not UTF-8.
    pub fn text(&self, name: &str, problems: &mut Vec<Problem>) -> Vec<String> {
        text_of(&self.dn, name, self.values(name), problems)
    }

    /// The first text value, problems ignored (for change markers and single fields).
    pub fn first_text(&self, name: &str) -> Option<String> {
        self.values(name)
            .find_map(|v| std::str::from_utf8(v).ok())
            .map(str::to_owned)
    }
}

fn text_of<'a>(
    dn: &str,
    name: &str,
    values: impl IntoIterator<Item = &'a Vec<u8>>,
    problems: &mut Vec<Problem>,
) -> Vec<String> {
    let mut texts = Vec::new();
    let mut bad = false;
    for value in values {
        match std::str::from_utf8(value) {
            Ok(text) => texts.push(text.to_owned()),
            Err(_) => bad = true,
        }
    }
    if bad {
        problems.push(Problem {
            dn: dn.to_owned(),
            what: ProblemKind::NotText {
                attribute: name.to_owned(),
            },
        });
    }
    texts
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

/// The attributes to ask the server for, for one class.
pub(crate) fn requested_attributes(class: &ClassConfig) -> Vec<String> {
    let fixed = [
        "objectClass",
        "displayName",
        "cn",
        "department",
        "departmentNumber",
        "title",
        "manager",
        "entryCSN",
        "modifyTimestamp",
        "uSNChanged",
    ];
    let mut names: Vec<String> = fixed.iter().map(|n| (*n).to_owned()).collect();
    names.extend(class.mail_attributes.iter().cloned());
    names.extend(class.keep.iter().cloned());
    names.extend(class.member_attribute.iter().cloned());
    let mut seen = std::collections::HashSet::new();
    names.retain(|n| seen.insert(n.to_ascii_lowercase()));
    names
}

/// Maps a raw entry found by a class search; the second value says where a held-back slice
/// of the member attribute starts.
pub(crate) fn map_entry(
    raw: &RawEntry,
    class: &ClassConfig,
    problems: &mut Vec<Problem>,
) -> (DirectoryEntry, Option<MoreValues>) {
    let mut entry = DirectoryEntry {
        dn: raw.dn.clone(),
        object_classes: raw.text("objectClass", problems),
        kind: class.kind,
        addresses: addresses(raw, class, problems),
        display_name: first(raw.text("displayName", problems))
            .or_else(|| first(raw.text("cn", problems))),
        department: first(raw.text("department", problems))
            .or_else(|| first(raw.text("departmentNumber", problems))),
        title: first(raw.text("title", problems)),
        manager: None,
        attributes: BTreeMap::new(),
        member_dns: Vec::new(),
        groups: Vec::new(),
    };
    entry.manager = dns_of(raw, "manager", raw.text("manager", problems), problems)
        .into_iter()
        .next();
    for name in &class.keep {
        let values = raw.text(name, problems);
        if !values.is_empty() {
            entry.attributes.insert(name.clone(), values);
        }
    }
    let mut more = None;
    if let Some(attribute) = &class.member_attribute {
        let (values, next) = raw.ranged_values(attribute);
        let texts = text_of(&raw.dn, attribute, values, problems);
        entry.member_dns = dns_of(raw, attribute, texts, problems);
        more = next;
    }
    (entry, more)
}

fn first(values: Vec<String>) -> Option<String> {
    values.into_iter().next()
}

/// The values that are DNs; a problem for each that is not.
pub(crate) fn dns_of(
    raw: &RawEntry,
    attribute: &str,
    values: Vec<String>,
    problems: &mut Vec<Problem>,
) -> Vec<String> {
    let mut dns = Vec::with_capacity(values.len());
    for value in values {
        if dn::is_dn(&value) {
            dns.push(value);
        } else {
            problems.push(Problem {
                dn: raw.dn.clone(),
                what: ProblemKind::NotADn {
                    attribute: attribute.to_owned(),
                    value,
                },
            });
        }
    }
    dns
}

/// What one value of an address attribute holds.
#[derive(Debug, PartialEq, Eq)]
enum AddressValue {
    /// An address; `true` when marked primary (`SMTP:`).
    Address(String, bool),
    /// A value of another kind (`X500:…`, `sip:…`), rightly ignored.
    Other,
    /// Something that should be an address and is not.
    Bad,
}

fn classify(value: &str) -> AddressValue {
    let value = value.trim();
    if let Some((kind, rest)) = value.split_once(':')
        && !kind.contains('@')
        && kind.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        if !kind.eq_ignore_ascii_case("smtp") {
            return AddressValue::Other;
        }
        return match checked_address(rest) {
            Some(address) => AddressValue::Address(address, kind == "SMTP"),
            None => AddressValue::Bad,
        };
    }
    // RFC 1274 otherMailbox: "<mailbox type> $ <mailbox>".
    if let Some((kind, rest)) = value.split_once('$') {
        let kind = kind.trim().to_ascii_lowercase();
        if !matches!(kind.as_str(), "smtp" | "internet" | "rfc822") {
            return AddressValue::Other;
        }
        return checked_address(rest.trim())
            .map_or(AddressValue::Bad, |a| AddressValue::Address(a, false));
    }
    checked_address(value).map_or(AddressValue::Bad, |a| AddressValue::Address(a, false))
}

/// The address in lower case, when it has the shape `local@domain`.
fn checked_address(value: &str) -> Option<String> {
    let (local, domain) = value.rsplit_once('@')?;
    let domain_ok = !domain.is_empty()
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains("..")
        && domain
            .chars()
            .all(|c| c.is_alphanumeric() || c == '.' || c == '-');
    let local_ok = !local.is_empty() && !local.chars().any(|c| c.is_whitespace() || c == '@');
    (domain_ok && local_ok).then(|| value.to_lowercase())
}

fn addresses(raw: &RawEntry, class: &ClassConfig, problems: &mut Vec<Problem>) -> Vec<String> {
    let mut primary = None;
    let mut others = Vec::new();
    for attribute in &class.mail_attributes {
        for value in raw.text(attribute, problems) {
            match classify(&value) {
                AddressValue::Address(address, true) if primary.is_none() => {
                    primary = Some(address)
                }
                AddressValue::Address(address, _) => others.push(address),
                AddressValue::Other => {}
                AddressValue::Bad => problems.push(Problem {
                    dn: raw.dn.clone(),
                    what: ProblemKind::NotAnAddress {
                        attribute: attribute.clone(),
                        value,
                    },
                }),
            }
        }
    }
    let mut all: Vec<String> = primary.into_iter().chain(others).collect();
    let mut seen = std::collections::HashSet::new();
    all.retain(|a| seen.insert(a.clone()));
    all
}

/// Folds a second finding of the same entry (by another class) into the first.
pub(crate) fn merge(into: &mut DirectoryEntry, other: DirectoryEntry, problems: &mut Vec<Problem>) {
    if other.kind != into.kind {
        problems.push(Problem {
            dn: into.dn.clone(),
            what: ProblemKind::KindConflict {
                kept: into.kind,
                class: other.object_classes.join(","),
            },
        });
    }
    for address in other.addresses {
        if !into.addresses.contains(&address) {
            into.addresses.push(address);
        }
    }
    into.display_name = into.display_name.take().or(other.display_name);
    into.department = into.department.take().or(other.department);
    into.title = into.title.take().or(other.title);
    into.manager = into.manager.take().or(other.manager);
    for (name, values) in other.attributes {
        into.attributes.entry(name).or_insert(values);
    }
    for member in other.member_dns {
        if !into.member_dns.contains(&member) {
            into.member_dns.push(member);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(attributes: &[(&str, &[&[u8]])]) -> RawEntry {
        RawEntry {
            dn: "uid=a,dc=x".to_owned(),
            attributes: attributes
                .iter()
                .map(|(name, values)| {
                    (
                        (*name).to_owned(),
                        values.iter().map(|v| v.to_vec()).collect(),
                    )
                })
                .collect(),
        }
    }

    #[track_caller]
    fn check(value: &str, expected: AddressValue) {
        assert_eq!(classify(value), expected, "{value:?}");
    }

    #[test]
    fn address_values() {
        let address = |a: &str, primary| AddressValue::Address(a.to_owned(), primary);
        check("Alice@Example.TEST", address("alice@example.test", false));
        check(
            "SMTP:Alice@Example.test",
            address("alice@example.test", true),
        );
        check("smtp:a.b@example.test", address("a.b@example.test", false));
        check("Smtp:a@example.test", address("a@example.test", false));
        check(
            "X500:/o=Org/ou=Exchange/cn=Recipients/cn=alice",
            AddressValue::Other,
        );
        check("sip:alice@example.test", AddressValue::Other);
        check(
            "internet $ alice@example.test",
            address("alice@example.test", false),
        );
        check("fax $ +1 555", AddressValue::Other);
        check("smtp:not an address", AddressValue::Bad);
        check("alice", AddressValue::Bad);
        check("alice@", AddressValue::Bad);
        check("alice@exa mple.test", AddressValue::Bad);
        check(
            "Jürgen@Bücher.example",
            address("jürgen@bücher.example", false),
        );
    }

    #[test]
    fn proxy_addresses_put_the_primary_first() {
        let mut class = ClassConfig::people("user");
        class.mail_attributes = vec!["mail".into(), "proxyAddresses".into()];
        let entry = raw(&[
            ("mail", &[b"old@example.test"]),
            (
                "proxyAddresses",
                &[
                    b"smtp:Old@example.test",
                    b"SMTP:New@Example.test",
                    b"X500:/o=x",
                    b"smtp:x",
                ],
            ),
        ]);
        let mut problems = Vec::new();
        let (mapped, _) = map_entry(&entry, &class, &mut problems);
        assert_eq!(mapped.addresses, ["new@example.test", "old@example.test"]);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(matches!(problems[0].what, ProblemKind::NotAnAddress { .. }));
    }

    #[test]
    fn fields_kept_attributes_members_and_bad_values() {
        let mut class = ClassConfig::groups("groupOfNames", "member");
        class.keep = vec!["pullbackRiskTier".into(), "badge".into()];
        let entry = raw(&[
            ("objectClass", &[b"top", b"groupOfNames"]),
            ("cn", &[b"Sales"]),
            ("departmentNumber", &[b"42"]),
            ("PULLBACKRISKTIER", &[b"high"]),
            ("badge", &[b"\xff\xfe"]),
            ("member", &[b"uid=a,dc=x", b"bob"]),
            ("member;range=2-3", &[b"uid=c,dc=x"]),
            ("manager", &[b"not a dn"]),
        ]);
        let mut problems = Vec::new();
        let (mapped, more) = map_entry(&entry, &class, &mut problems);
        assert_eq!(mapped.display_name.as_deref(), Some("Sales"));
        assert_eq!(mapped.department.as_deref(), Some("42"));
        assert_eq!(mapped.manager, None);
        assert_eq!(mapped.attributes["pullbackRiskTier"], ["high"]);
        assert!(!mapped.attributes.contains_key("badge"));
        assert_eq!(mapped.member_dns, ["uid=a,dc=x", "uid=c,dc=x"]);
        assert_eq!(
            more,
            Some(MoreValues {
                attribute: "member".into(),
                start: 4
            })
        );
        let kinds: Vec<String> = problems.iter().map(|p| p.what.to_string()).collect();
        assert_eq!(
            kinds,
            [
                "manager value \"not a dn\" is not a distinguished name",
                "badge has values that are not text",
                "member value \"bob\" is not a distinguished name",
            ]
        );
    }

    #[test]
    fn the_last_range_slice_asks_for_nothing_more() {
        let entry = raw(&[("member;range=1500-*", &[b"uid=z,dc=x"])]);
        let (values, more) = entry.ranged_values("member");
        assert_eq!(values.len(), 1);
        assert_eq!(more, None);
    }
}

//! Importing people and groups: one paged search per base DN and class, entries mapped and
//! merged, group membership resolved, and a watermark that lets the next run ask only for what
//! changed and learn what was deleted.
//!
//! Change tracking uses what the server has, in this order: Active Directory's
//! `highestCommittedUSN` and `uSNChanged`; OpenLDAP's `contextCSN` and `entryCSN`; the newest
//! `entryCSN` or `modifyTimestamp` seen. An incremental run also reads every group (membership
//! of a changed person cannot be resolved without them) and lists every DN in scope with no
//! attributes (`1.1`), which is how deletions are found.

use crate::client::{DirectoryClient, Found, RootDse};
use crate::config::{ClassConfig, DirectoryConfig, EntryKind};
use crate::directory::Directory;
use crate::dn;
use crate::entry::{self, DirectoryEntry, MoreValues, Problem, ProblemKind, RawEntry};
use crate::error::DirectoryError;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::time::Instant;

/// What the next run needs to be incremental.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Watermark {
    /// The newest change the run covered; absent when the server offers no way to tell.
    pub mark: Option<ChangeMark>,
    /// A digest of the base DNs and classes imported; a run with another scope starts over.
    pub scope: String,
    /// Every DN in scope at the end of the run, sorted, so the next run can name deletions.
    pub dns: Vec<String>,
}

/// How far a run got in the server's own record of changes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ChangeMark {
    /// Active Directory: the `highestCommittedUSN` of the domain controller (`server`) when the
    /// run started. USNs belong to one controller, so another one means a full run.
    Usn {
        /// The `highestCommittedUSN`.
        usn: u64,
        /// The controller's `dnsHostName`.
        server: Option<String>,
    },
    /// OpenLDAP and servers like it: the change sequence number (`contextCSN` when the run
    /// started, else the newest `entryCSN` seen).
    Csn {
        /// The CSN, as the server writes it.
        csn: String,
    },
    /// Servers with only `modifyTimestamp`: the newest seen. The next run asks from that
    /// second on, so entries changed within it come again.
    ModifyTimestamp {
        /// The generalized time, as the server writes it.
        at: String,
    },
}

/// What an import found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportResult {
    /// A full run: every entry. An incremental run: the entries changed or added since the
    /// watermark. Each with its groups resolved against every group in scope. A person whose
    /// groups changed only because a group did is not among them; [`Directory::update`]
    /// resolves membership again over everything.
    pub entries: Vec<DirectoryEntry>,
    /// DNs that were in scope at the watermark and are gone now (deleted, moved, or no longer
    /// of an imported class). Empty without a watermark.
    pub removed_dns: Vec<String>,
    /// Entries that could not be read fully, group loops, referrals.
    pub problems: Vec<Problem>,
    /// Where the next run starts.
    pub watermark: Watermark,
    /// Sizes, for logs and status.
    pub counts: ImportCounts,
    /// Whether only changes were read.
    pub incremental: bool,
}

/// Sizes of an import.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportCounts {
    /// People in `entries`.
    pub people: usize,
    /// Groups in `entries`.
    pub groups: usize,
    /// DNs in scope now.
    pub in_scope: usize,
    /// DNs in `removed_dns`.
    pub removed: usize,
    /// Search requests made, each page counting one.
    pub pages: usize,
    /// Member DNs naming no imported entry.
    pub unresolved_members: usize,
    /// Entries in `problems`.
    pub problems: usize,
    /// How long the run took, in milliseconds.
    pub elapsed_ms: u64,
}

/// Imports people and groups; incrementally when `since` comes from a run over the same scope
/// on a server that tracks changes, in full otherwise.
///
/// An unreachable server, a refused bind, a certificate that does not verify, or a search the
/// server cuts short fail the whole run. Problems with single entries are collected in the
/// result.
pub async fn import(
    config: &DirectoryConfig,
    since: Option<Watermark>,
) -> Result<ImportResult, DirectoryError> {
    let started = Instant::now();
    let mut client = DirectoryClient::connect(config).await?;
    let dse = client.root_dse().await?;
    let scope = config.scope_digest();
    let start_mark = start_mark(&mut client, &dse, config).await?;
    let changes = since
        .as_ref()
        .and_then(|w| usable_mark(w, &scope, &dse, start_mark.as_ref()));
    tracing::info!(
        url = %config.url,
        incremental = changes.is_some(),
        paged = dse.paged,
        "directory import started"
    );

    let mut run = Run {
        client: &mut client,
        config,
        page_size: dse.paged.then_some(config.page_size),
        found: Collected::default(),
        pages: 0,
    };
    for base in &config.base_dns {
        for class in &config.classes {
            run.class(base, class, changes.as_ref()).await?;
        }
    }
    run.fetch_held_back_members().await?;
    let current_dns = match changes {
        Some(_) => run.list_dns().await?,
        None => run.found.entries.iter().map(|e| e.dn.clone()).collect(),
    };
    let pages = run.pages;
    let found = std::mem::take(&mut run.found);
    client.close().await;

    let mut result = finish(
        found,
        changes.as_ref(),
        start_mark,
        since,
        current_dns,
        scope,
    );
    result.counts.pages = pages;
    result.counts.elapsed_ms = started.elapsed().as_millis() as u64;
    tracing::info!(
        url = %config.url,
        incremental = result.incremental,
        people = result.counts.people,
        groups = result.counts.groups,
        removed = result.counts.removed,
        problems = result.counts.problems,
        elapsed_ms = result.counts.elapsed_ms,
        "directory import finished"
    );
    Ok(result)
}

/// Everything the searches found, merged by DN.
#[derive(Default)]
struct Collected {
    entries: Vec<DirectoryEntry>,
    /// Normalised DN to position in `entries`.
    positions: HashMap<String, usize>,
    /// Positions of entries read only to resolve groups (unchanged groups of an incremental
    /// run).
    context_only: HashSet<usize>,
    problems: Vec<Problem>,
    /// Ranged member attributes with values still on the server.
    held_back: Vec<(usize, MoreValues)>,
    /// The newest change markers seen, for servers without a start mark.
    newest_csn: Option<String>,
    newest_timestamp: Option<String>,
}

struct Run<'a> {
    client: &'a mut DirectoryClient,
    config: &'a DirectoryConfig,
    page_size: Option<u32>,
    found: Collected,
    pages: usize,
}

impl Run<'_> {
    async fn class(
        &mut self,
        base: &str,
        class: &ClassConfig,
        changes: Option<&ChangeMark>,
    ) -> Result<(), DirectoryError> {
        let class_filter = format!("(objectClass={})", class.object_class);
        // Groups are always read whole: a changed person's groups are found through them.
        let filter = match changes {
            Some(mark) if class.kind == EntryKind::Person => {
                format!("(&{class_filter}{})", change_filter(mark))
            }
            _ => class_filter,
        };
        let attributes = entry::requested_attributes(class);
        let found = &mut self.found;
        let pages = self
            .client
            .search_all(
                base,
                &filter,
                &attributes,
                self.page_size,
                |item| match item {
                    Found::Entry(raw) => found.add(&raw, class, changes),
                    Found::Malformed(dn, reason) => found.problems.push(Problem {
                        dn: dn.unwrap_or_else(|| base.to_owned()),
                        what: ProblemKind::Malformed { reason },
                    }),
                    Found::Referral(urls) => found.referral(base, urls),
                },
            )
            .await?;
        self.pages += pages;
        Ok(())
    }

    /// Reads the rest of member attributes the server sent in slices.
    async fn fetch_held_back_members(&mut self) -> Result<(), DirectoryError> {
        let held_back = std::mem::take(&mut self.found.held_back);
        for (position, mut more) in held_back {
            let dn = self.found.entries[position].dn.clone();
            loop {
                let description = format!("{};range={}-*", more.attribute, more.start);
                let Some(raw) = self.client.read(&dn, &[&description]).await? else {
                    break;
                };
                self.pages += 1;
                let (values, next) = raw.ranged_values(&more.attribute);
                let mut problems = Vec::new();
                let texts: Vec<String> = values
                    .into_iter()
                    .filter_map(|v| String::from_utf8(v.clone()).ok())
                    .collect();
                let dns = entry::dns_of(&raw, &more.attribute, texts, &mut problems);
                self.found.problems.extend(problems);
                self.found.entries[position].member_dns.extend(dns);
                match next {
                    Some(next) if next.start > more.start => more = next,
                    _ => break,
                }
            }
        }
        Ok(())
    }

    /// Every DN of an imported class in scope, attributes left out.
    async fn list_dns(&mut self) -> Result<Vec<String>, DirectoryError> {
        let classes: String = self
            .config
            .classes
            .iter()
            .map(|c| format!("(objectClass={})", c.object_class))
            .collect();
        let filter = format!("(|{classes})");
        let attributes = vec!["1.1".to_owned()];
        let mut dns = Vec::new();
        for base in &self.config.base_dns {
            let found = &mut self.found;
            let pages = self
                .client
                .search_all(
                    base,
                    &filter,
                    &attributes,
                    self.page_size,
                    |item| match item {
                        Found::Entry(raw) => dns.push(raw.dn),
                        Found::Malformed(Some(dn), _) => dns.push(dn),
                        Found::Malformed(None, _) => {}
                        Found::Referral(urls) => found.referral(base, urls),
                    },
                )
                .await?;
            self.pages += pages;
        }
        Ok(dns)
    }
}

impl Collected {
    fn add(&mut self, raw: &RawEntry, class: &ClassConfig, changes: Option<&ChangeMark>) {
        self.note_markers(raw);
        let (entry, more) = entry::map_entry(raw, class, &mut self.problems);
        let key = dn::normalize(&raw.dn).unwrap_or_else(|_| raw.dn.to_lowercase());
        let unchanged = changes.is_some_and(|mark| !is_changed(raw, mark));
        let position = match self.positions.get(&key) {
            Some(&position) => {
                entry::merge(&mut self.entries[position], entry, &mut self.problems);
                if !unchanged {
                    self.context_only.remove(&position);
                }
                position
            }
            None => {
                let position = self.entries.len();
                self.entries.push(entry);
                self.positions.insert(key, position);
                if unchanged {
                    self.context_only.insert(position);
                }
                position
            }
        };
        if let Some(more) = more {
            self.held_back.push((position, more));
        }
    }

    fn note_markers(&mut self, raw: &RawEntry) {
        if let Some(csn) = raw
            .values("entryCSN")
            .filter_map(|v| std::str::from_utf8(v).ok())
            .max()
            && self.newest_csn.as_deref().is_none_or(|newest| csn > newest)
        {
            self.newest_csn = Some(csn.to_owned());
        }
        if let Some(at) = raw.first_text("modifyTimestamp")
            && self
                .newest_timestamp
                .as_deref()
                .is_none_or(|newest| timestamp_key(&at) > timestamp_key(newest))
        {
            self.newest_timestamp = Some(at);
        }
    }

    /// Records a referral once per target.
    fn referral(&mut self, base: &str, urls: Vec<String>) {
        let dn = urls
            .iter()
            .find_map(|u| dn_of_url(u))
            .unwrap_or_else(|| base.to_owned());
        let problem = Problem {
            dn,
            what: ProblemKind::Referral { urls },
        };
        if !self.problems.contains(&problem) {
            self.problems.push(problem);
        }
    }
}

/// The filter that selects entries changed after the mark.
fn change_filter(mark: &ChangeMark) -> String {
    match mark {
        ChangeMark::Usn { usn, .. } => format!("(uSNChanged>={})", usn.saturating_add(1)),
        ChangeMark::Csn { csn } => {
            let csn = ldap3::ldap_escape(csn.as_str());
            format!("(&(entryCSN>={csn})(!(entryCSN={csn})))")
        }
        ChangeMark::ModifyTimestamp { at } => {
            format!("(modifyTimestamp>={})", ldap3::ldap_escape(at.as_str()))
        }
    }
}

/// Whether an entry changed after the mark; an entry without the marker counts as changed.
fn is_changed(raw: &RawEntry, mark: &ChangeMark) -> bool {
    match mark {
        ChangeMark::Usn { usn, .. } => raw
            .first_text("uSNChanged")
            .and_then(|u| u.parse::<u64>().ok())
            .is_none_or(|changed| changed > *usn),
        ChangeMark::Csn { csn } => {
            let newest = raw
                .values("entryCSN")
                .filter_map(|v| std::str::from_utf8(v).ok())
                .max();
            newest.is_none_or(|newest| newest > csn.as_str())
        }
        ChangeMark::ModifyTimestamp { at } => raw
            .first_text("modifyTimestamp")
            .is_none_or(|changed| timestamp_key(&changed) >= timestamp_key(at)),
    }
}

/// The digits of a generalized time up to the second, which orders `…Z` and `….0Z` alike.
fn timestamp_key(at: &str) -> String {
    at.chars().filter(char::is_ascii_digit).take(14).collect()
}

/// A mark taken before anything is read, so that changes made during the run are read again
/// next time rather than missed.
async fn start_mark(
    client: &mut DirectoryClient,
    dse: &RootDse,
    config: &DirectoryConfig,
) -> Result<Option<ChangeMark>, DirectoryError> {
    if let Some(usn) = dse.highest_usn {
        return Ok(Some(ChangeMark::Usn {
            usn,
            server: dse.server.clone(),
        }));
    }
    // contextCSN lives on the suffix (the naming context) holding each base DN.
    let mut newest: Option<String> = None;
    for base in &config.base_dns {
        let Some(suffix) = dse
            .naming_contexts
            .iter()
            .filter(|nc| dn::is_under(base, nc))
            .max_by_key(|nc| nc.len())
        else {
            return Ok(None);
        };
        // A server that will not show it is one without it.
        let Ok(Some(entry)) = client.read(suffix, &["contextCSN"]).await else {
            return Ok(None);
        };
        let Some(csn) = entry
            .values("contextCSN")
            .filter_map(|v| std::str::from_utf8(v).ok())
            .max()
        else {
            return Ok(None);
        };
        if newest.as_deref().is_none_or(|n| csn > n) {
            newest = Some(csn.to_owned());
        }
    }
    Ok(newest.map(|csn| ChangeMark::Csn { csn }))
}

/// The watermark's mark, when this run can start from it.
fn usable_mark(
    since: &Watermark,
    scope: &str,
    dse: &RootDse,
    start: Option<&ChangeMark>,
) -> Option<ChangeMark> {
    if since.scope != scope {
        tracing::info!("the directory scope changed since the watermark; importing in full");
        return None;
    }
    let mark = since.mark.clone()?;
    let usable = match (&mark, start) {
        (ChangeMark::Usn { server, .. }, Some(ChangeMark::Usn { server: now, .. })) => {
            server == now
        }
        (ChangeMark::Usn { .. }, _) => false,
        (_, Some(ChangeMark::Usn { .. })) => false,
        _ => dse.highest_usn.is_none(),
    };
    if !usable {
        tracing::info!("the watermark is from another server; importing in full");
    }
    usable.then_some(mark)
}

fn finish(
    mut found: Collected,
    changes: Option<&ChangeMark>,
    start_mark: Option<ChangeMark>,
    since: Option<Watermark>,
    current_dns: Vec<String>,
    scope: String,
) -> ImportResult {
    let context_only = std::mem::take(&mut found.context_only);
    let changed: Vec<bool> = (0..found.entries.len())
        .map(|i| !context_only.contains(&i))
        .collect();
    for entry in &found.entries {
        if entry.kind == EntryKind::Person && entry.addresses.is_empty() {
            found.problems.push(Problem {
                dn: entry.dn.clone(),
                what: ProblemKind::NoAddress,
            });
        }
    }
    let directory = Directory::new(std::mem::take(&mut found.entries));
    let unresolved_members = directory.unresolved_members();
    let mut problems = found.problems;
    problems.extend(directory.problems().iter().cloned());
    let entries: Vec<DirectoryEntry> = directory
        .into_entries()
        .into_iter()
        .zip(changed)
        .filter_map(|(entry, changed)| changed.then_some(entry))
        .collect();

    let mut dns = current_dns;
    dns.sort();
    dns.dedup();
    let removed_dns = match &since {
        Some(previous) => removed(&previous.dns, &dns),
        None => Vec::new(),
    };
    // FIXME: without a start mark (no contextCSN, no highestCommittedUSN) the mark is the
    // newest change seen, so an entry changed during a run, after its class was read, while
    // an entry read later changed after it, is missed until the next full run.
    let seen = found
        .newest_csn
        .map(|csn| ChangeMark::Csn { csn })
        .or_else(|| {
            found
                .newest_timestamp
                .map(|at| ChangeMark::ModifyTimestamp { at })
        });
    let mark = start_mark.or_else(|| newest(seen, changes.cloned()));
    let counts = ImportCounts {
        people: entries
            .iter()
            .filter(|e| e.kind == EntryKind::Person)
            .count(),
        groups: entries
            .iter()
            .filter(|e| e.kind == EntryKind::Group)
            .count(),
        in_scope: dns.len(),
        removed: removed_dns.len(),
        pages: 0,
        unresolved_members,
        problems: problems.len(),
        elapsed_ms: 0,
    };
    ImportResult {
        entries,
        removed_dns,
        problems,
        watermark: Watermark { mark, scope, dns },
        counts,
        incremental: changes.is_some(),
    }
}

/// The later of the mark seen in this run and the one it started from: an incremental run
/// sees only changed entries and unchanged groups, whose markers may be older.
fn newest(seen: Option<ChangeMark>, previous: Option<ChangeMark>) -> Option<ChangeMark> {
    match (seen, previous) {
        (Some(ChangeMark::Csn { csn: a }), Some(ChangeMark::Csn { csn: b })) => {
            Some(ChangeMark::Csn { csn: a.max(b) })
        }
        (
            Some(ChangeMark::ModifyTimestamp { at: a }),
            Some(ChangeMark::ModifyTimestamp { at: b }),
        ) => {
            let at = if timestamp_key(&a) >= timestamp_key(&b) {
                a
            } else {
                b
            };
            Some(ChangeMark::ModifyTimestamp { at })
        }
        (seen, previous) => previous.or(seen),
    }
}

/// The DNs of `before` that are not in `now`, however spelled.
fn removed(before: &[String], now: &[String]) -> Vec<String> {
    let present: HashSet<String> = now.iter().filter_map(|d| dn::normalize(d).ok()).collect();
    before
        .iter()
        .filter(|d| dn::normalize(d).is_ok_and(|n| !present.contains(&n)))
        .cloned()
        .collect()
}

/// The DN of an LDAP URL (`ldap://host/ou=x,dc=y??sub`), percent-decoded.
fn dn_of_url(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let path = rest.split_once('/')?.1;
    let path = path.split('?').next()?;
    let mut bytes = Vec::with_capacity(path.len());
    let mut chars = path.bytes();
    while let Some(b) = chars.next() {
        if b == b'%' {
            let hex = [chars.next()?, chars.next()?];
            bytes.push(u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?);
        } else {
            bytes.push(b);
        }
    }
    let dn = String::from_utf8(bytes).ok()?;
    dn::is_dn(&dn).then_some(dn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn change_filters() {
        let usn = ChangeMark::Usn {
            usn: 41,
            server: None,
        };
        assert_eq!(change_filter(&usn), "(uSNChanged>=42)");
        let csn = ChangeMark::Csn {
            csn: "20240101000000.000001Z#000000#000#000000".into(),
        };
        assert_eq!(
            change_filter(&csn),
            "(&(entryCSN>=20240101000000.000001Z#000000#000#000000)\
             (!(entryCSN=20240101000000.000001Z#000000#000#000000)))"
        );
    }

    #[test]
    fn timestamps_of_both_spellings_compare() {
        let raw = RawEntry {
            dn: "cn=a".into(),
            attributes: vec![(
                "modifyTimestamp".into(),
                vec![b"20240101120000.0Z".to_vec()],
            )],
        };
        let mark = |at: &str| ChangeMark::ModifyTimestamp { at: at.into() };
        assert!(is_changed(&raw, &mark("20240101120000Z")));
        assert!(!is_changed(&raw, &mark("20240101120001Z")));
    }

    #[test]
    fn removed_dns_ignore_spelling() {
        let before = vec!["uid=a,dc=x".to_owned(), "uid=b,dc=x".to_owned()];
        let now = vec!["UID=A, DC=X".to_owned()];
        assert_eq!(removed(&before, &now), ["uid=b,dc=x"]);
    }

    #[test]
    fn referral_urls_name_their_dn() {
        assert_eq!(
            dn_of_url("ldap://elsewhere.test/ou=far%20away,dc=x??sub").as_deref(),
            Some("ou=far away,dc=x")
        );
        assert_eq!(dn_of_url("ldap://elsewhere.test/"), None);
    }
}

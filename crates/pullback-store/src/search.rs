//! Search over alerts: the terms each alert is indexed by, the queries analysts ask, and how
//! a query is answered from the index.
//!
//! Every indexed term is a key `s/<field>/<term>\0<alert id>` in the index family, written in
//! the same batch as the alert, so every node answers from its own applied state. A query
//! with several terms walks their lists together from the newest alert down (a leapfrog
//! join): each step seeks every list to the largest id not above the current candidate, so
//! the cost follows the rarest term rather than the commonest. Criteria that are not terms
//! (the time range, the incident's state) are checked on the alerts the join yields, under a
//! budget, so a query never stalls a node: past the budget it returns what it found with a
//! cursor to continue from.

use crate::db::{Cf, Db, StoreError};
use pullback_domain::{Alert, IncidentState, MessageId, ThreatKind, Timestamp};
use std::collections::BTreeSet;
use std::fmt;

/// Bumped whenever the terms derived from an alert change; a store whose index was built by
/// another version rebuilds it when it opens or installs a snapshot.
pub(crate) const INDEX_VERSION: u64 = 2;
pub(crate) const VERSION_KEY: &[u8] = b"search/version";

/// What an alert can be found by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Field {
    /// The threat's page on the TAP dashboard (`threatUrl`).
    ThreatUrl,
    /// A URL the alert is about.
    Url,
    /// The host of a threat URL, or of any of its parent domains.
    Host,
    Recipient,
    Sender,
    /// One word of the subject.
    Word,
    MessageId,
    /// SHA-256 or MD5 of an attachment or message part.
    Hash,
    Classification,
    Source,
}

impl Field {
    fn tag(self) -> &'static str {
        match self {
            Field::ThreatUrl => "turl",
            Field::Url => "url",
            Field::Host => "host",
            Field::Recipient => "rcpt",
            Field::Sender => "from",
            Field::Word => "word",
            Field::MessageId => "mid",
            Field::Hash => "hash",
            Field::Classification => "class",
            Field::Source => "src",
        }
    }
}

/// Where the alert ids of one term start.
pub(crate) fn term_prefix(field: Field, term: &str) -> Vec<u8> {
    format!("s/{}/{}\0", field.tag(), term.replace('\0', "")).into_bytes()
}

pub(crate) fn term_key(field: Field, term: &str, alert_id: u64) -> Vec<u8> {
    let mut key = term_prefix(field, term);
    key.extend_from_slice(&alert_id.to_be_bytes());
    key
}

/// Longest term kept; longer values are cut (at a character boundary) before indexing and
/// before searching, so both sides agree.
const MAX_TERM: usize = 512;
/// Subject words indexed per alert.
const MAX_WORDS: usize = 48;

fn cut(mut text: String) -> String {
    if text.len() > MAX_TERM {
        let mut end = MAX_TERM;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// The terms one threat of an alert gives: its dashboard link, URL, host and parent domains,
/// hashes and classification.
pub fn threat_terms(threat: &pullback_domain::Threat) -> BTreeSet<(Field, String)> {
    let mut terms = BTreeSet::new();
    let mut hosts = BTreeSet::new();
    if let Some(url) = threat
        .dashboard_url
        .as_deref()
        .and_then(|u| threat_url(u).ok())
    {
        terms.insert((Field::ThreatUrl, url));
    }
    let value = threat.value.as_deref().unwrap_or_default();
    let is_url =
        threat.kind == Some(ThreatKind::Url) || value.contains("://") || value.starts_with("www.");
    if is_url && let Ok(normal) = url(value) {
        hosts.insert(host_of_normal_url(&normal).to_owned());
        terms.insert((Field::Url, normal));
    }
    if let Some(host) = threat.hostname.as_deref().and_then(|h| host(h).ok()) {
        hosts.insert(host);
    }
    for candidate in [threat.sha256.as_deref(), Some(value)]
        .into_iter()
        .flatten()
    {
        if let Ok(hash) = hash(candidate) {
            terms.insert((Field::Hash, hash));
        }
    }
    if let Some(class) = threat.classification.as_deref() {
        terms.insert((Field::Classification, class.trim().to_lowercase()));
    }
    for host in hosts {
        for suffix in host_suffixes(&host) {
            terms.insert((Field::Host, suffix.to_owned()));
        }
    }
    terms
}

/// Every term an alert is indexed by.
pub(crate) fn alert_terms(alert: &Alert) -> BTreeSet<(Field, String)> {
    let body = &alert.body;
    let mut terms = BTreeSet::new();
    terms.insert((Field::Source, alert.source.clone()));
    for threat in &body.threats {
        terms.extend(threat_terms(threat));
    }
    // TAP events list the hashes of every part of the message.
    if let Some(parts) = body.raw.get("messageParts").and_then(|p| p.as_array()) {
        for part in parts {
            for name in ["md5", "sha256"] {
                if let Some(Ok(hash)) = part.get(name).and_then(|h| h.as_str()).map(hash) {
                    terms.insert((Field::Hash, hash));
                }
            }
        }
    }
    for recipient in &body.recipients {
        for term in address_terms(recipient) {
            terms.insert((Field::Recipient, term));
        }
    }
    if let Some(sender) = &body.sender {
        for term in address_terms(sender) {
            terms.insert((Field::Sender, term));
        }
    }
    if let Some(subject) = &body.subject {
        for word in words(subject).into_iter().take(MAX_WORDS) {
            terms.insert((Field::Word, word));
        }
    }
    if let Some(message_id) = &body.message_id {
        terms.insert((Field::MessageId, cut(message_id.as_str().to_owned())));
    }
    terms
        .into_iter()
        .filter(|(_, term)| !term.is_empty())
        .map(|(field, term)| (field, cut(term)))
        .collect()
}

/// A URL as it is indexed and searched: no scheme, lower case, the host in ASCII (punycode),
/// no default port, no fragment, no lone trailing slash. `HTTPS://Bücher.example/A` and
/// `xn--bcher-kva.example/a` are the same.
pub fn url(raw: &str) -> Result<String, String> {
    normal_url(raw, false)
}

/// A threat's page on the TAP dashboard, as [`url`] but keeping the part after `#`: the
/// dashboard is a single-page application whose links differ only there
/// (`https://threatinsight.proofpoint.com/#/<org>/threat/u/<id>`).
pub fn threat_url(raw: &str) -> Result<String, String> {
    normal_url(raw, true)
}

fn normal_url(raw: &str, keep_fragment: bool) -> Result<String, String> {
    let text = raw.trim();
    if text.is_empty() {
        return Err("is empty".into());
    }
    if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("contains spaces or control characters".into());
    }
    let lower = text.to_lowercase();
    let rest = match lower.split_once("://") {
        Some((scheme, rest)) => {
            let valid = scheme
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
            if !valid {
                return Err(format!("has an invalid scheme {scheme:?}"));
            }
            rest
        }
        None => lower.as_str(),
    };
    let (rest, fragment) = match rest.split_once('#') {
        Some((rest, fragment)) if keep_fragment => (rest, Some(fragment)),
        Some((rest, _)) => (rest, None),
        None => (rest, None),
    };
    let split = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(split);
    // Credentials before the host are not part of where the link goes.
    let authority = authority.rsplit('@').next().unwrap_or_default();
    let (host_part, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => {
            if !p.is_empty() && !p.chars().all(|c| c.is_ascii_digit()) {
                return Err(format!("has an invalid port {p:?}"));
            }
            (h, p)
        }
        _ => (authority, ""),
    };
    let host = host(host_part).map_err(|e| format!("has a host that {e}"))?;
    let mut out = host;
    if !port.is_empty() && port != "80" && port != "443" {
        out.push(':');
        out.push_str(port);
    }
    if path != "/" || fragment.is_some() {
        out.push_str(path);
    }
    if let Some(fragment) = fragment {
        out.push('#');
        out.push_str(fragment);
    }
    Ok(out)
}

fn host_of_normal_url(normal: &str) -> &str {
    let end = normal.find([':', '/', '?']).unwrap_or(normal.len());
    &normal[..end]
}

/// A hostname in lower-case ASCII (punycode for international names), without a trailing
/// dot. A URL is accepted too, and gives its host.
pub fn host(raw: &str) -> Result<String, String> {
    let mut text = raw.trim().to_lowercase();
    if text.contains("://") || text.contains('/') {
        let normal = url(&text)?;
        text = host_of_normal_url(&normal).to_owned();
    }
    let text = text.trim_end_matches('.');
    if text.is_empty() {
        return Err("is empty".into());
    }
    if text.starts_with('[') && text.ends_with(']') {
        return text[1..text.len() - 1]
            .parse::<std::net::Ipv6Addr>()
            .map(|ip| format!("[{ip}]"))
            .map_err(|_| format!("is not an IPv6 address: {text:?}"));
    }
    let ascii =
        idna::domain_to_ascii(text).map_err(|_| format!("is not a valid name: {text:?}"))?;
    let valid_labels = ascii.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    });
    if !valid_labels || ascii.len() > 253 {
        return Err(format!("is not a valid name: {text:?}"));
    }
    Ok(ascii)
}

/// The host and each parent domain of at least two labels: `a.b.example.com` gives itself,
/// `b.example.com` and `example.com`. An IP address gives only itself.
fn host_suffixes(host: &str) -> Vec<&str> {
    if host.parse::<std::net::Ipv4Addr>().is_ok() || host.starts_with('[') {
        return vec![host];
    }
    let mut out = vec![host];
    let mut rest = host;
    while let Some((_, parent)) = rest.split_once('.') {
        if !parent.contains('.') {
            break;
        }
        out.push(parent);
        rest = parent;
    }
    out
}

/// An address as indexed: the whole address and `@domain`, both lower case, the domain in
/// punycode.
fn address_terms(raw: &str) -> Vec<String> {
    match address(raw) {
        Ok(address) => {
            let domain = address
                .rsplit_once('@')
                .map(|(_, d)| format!("@{d}"))
                .unwrap_or_default();
            vec![address, domain]
        }
        Err(_) => Vec::new(),
    }
}

/// An address to search for: `user@example.com`, or `@example.com` (or `example.com`) for
/// everyone at a domain.
pub fn address(raw: &str) -> Result<String, String> {
    let text = raw
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim();
    if text.is_empty() {
        return Err("is empty".into());
    }
    if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("contains spaces or control characters".into());
    }
    let (local, domain) = match text.rsplit_once('@') {
        Some((local, domain)) => (local, domain),
        None => ("", text),
    };
    let domain = host(domain).map_err(|e| format!("has a domain that {e}"))?;
    Ok(format!("{}@{domain}", local.to_lowercase()))
}

/// Lower-case words of two characters or more, letters and digits in any script.
pub fn words(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for word in text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.chars().count() >= 2)
    {
        let word = word.to_lowercase();
        if !out.contains(&word) {
            out.push(word);
        }
    }
    out
}

/// A file hash: MD5, SHA-1 or SHA-256 in hex, any case.
pub fn hash(raw: &str) -> Result<String, String> {
    let text = raw.trim().to_ascii_lowercase();
    if !matches!(text.len(), 32 | 40 | 64) {
        return Err(format!(
            "has {} characters; an MD5, SHA-1 or SHA-256 has 32, 40 or 64",
            text.len()
        ));
    }
    if let Some(bad) = text.chars().find(|c| !c.is_ascii_hexdigit()) {
        return Err(format!("contains {bad:?}, which is not a hex digit"));
    }
    Ok(text)
}

/// A search for alerts: every part must hold.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Query {
    pub terms: Vec<(Field, String)>,
    /// The state of the alert's incident; an alert without an incident has none.
    pub state: Option<IncidentState>,
    /// The event's time, inclusive.
    pub after: Option<Timestamp>,
    /// The event's time, exclusive.
    pub before: Option<Timestamp>,
}

/// A query parameter that could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueryError {
    pub parameter: String,
    pub problem: String,
}

impl fmt::Display for QueryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.parameter, self.problem)
    }
}

impl std::error::Error for QueryError {}

impl Query {
    /// The parameters a search form or URL gives. Empty values are ignored; unknown names
    /// are the caller's business.
    pub fn parse<'a>(
        params: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Query, QueryError> {
        let mut query = Query::default();
        for (name, value) in params {
            if value.trim().is_empty() {
                continue;
            }
            let fail = |problem: String| QueryError {
                parameter: name.to_owned(),
                problem: format!("{value:?} {problem}"),
            };
            let mut term = |field: Field, term: String| query.terms.push((field, cut(term)));
            match name {
                "threat_url" => term(Field::ThreatUrl, threat_url(value).map_err(fail)?),
                "url" => term(Field::Url, url(value).map_err(fail)?),
                "host" => term(Field::Host, host(value).map_err(fail)?),
                "recipient" => term(Field::Recipient, address(value).map_err(fail)?),
                "sender" => term(Field::Sender, address(value).map_err(fail)?),
                "subject" => {
                    let found = words(value);
                    if found.is_empty() {
                        return Err(fail("has no word of two letters or more".into()));
                    }
                    for word in found {
                        term(Field::Word, word);
                    }
                }
                "message_id" => {
                    let id = MessageId::parse(value)
                        .ok_or_else(|| fail("is not a Message-ID".into()))?;
                    term(Field::MessageId, id.as_str().to_owned());
                }
                "hash" => term(Field::Hash, hash(value).map_err(fail)?),
                "classification" => term(Field::Classification, value.trim().to_lowercase()),
                "source" => term(Field::Source, value.trim().to_owned()),
                "state" => {
                    query.state = Some(match value.trim() {
                        "open" => IncidentState::Open,
                        "closed" => IncidentState::Closed,
                        _ => return Err(fail("is not a state; use open or closed".into())),
                    })
                }
                "after" => query.after = Some(time(value).map_err(fail)?),
                "before" => query.before = Some(time(value).map_err(fail)?),
                _ => {}
            }
        }
        if let (Some(after), Some(before)) = (query.after, query.before)
            && after >= before
        {
            return Err(QueryError {
                parameter: "before".into(),
                problem: "must be later than after".into(),
            });
        }
        query.terms.sort();
        query.terms.dedup();
        Ok(query)
    }
}

/// RFC 3339, or a day `YYYY-MM-DD` (its midnight, UTC).
pub fn time(raw: &str) -> Result<Timestamp, String> {
    let text = raw.trim();
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&chrono::Utc));
    }
    if let Ok(day) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(day.and_time(chrono::NaiveTime::MIN).and_utc());
    }
    Err("is not a time; use 2026-12-01 or 2026-12-01T08:30:00Z".into())
}

/// One page of answers, newest first.
#[derive(Clone, Debug, Default)]
pub struct Hits {
    pub alerts: Vec<Alert>,
    /// Where the next page starts (pass it as `before`); none when there is no more.
    pub next: Option<u64>,
    /// The budget ran out before the page was full; `next` continues the search.
    pub partial: bool,
}

/// A walk down the ids of one key prefix, largest first.
struct Postings<'a> {
    prefix: Vec<u8>,
    iter: rocksdb::DBRawIteratorWithThreadMode<'a, rocksdb::DB>,
    /// Where the iterator stands: the id it answered last, or `None` before the first seek.
    /// `Some(None)` once the list has nothing left below.
    at: Option<Option<u64>>,
}

/// How many entries a list steps through before it seeks instead. Stepping to the next key
/// costs a small part of a seek, so lists that hold many of the same ids (two common subject
/// words) are intersected by walking them, and sparse ones by seeking.
const STEPS_BEFORE_SEEK: usize = 8;

impl<'a> Postings<'a> {
    fn new(prefix: Vec<u8>, iter: rocksdb::DBRawIteratorWithThreadMode<'a, rocksdb::DB>) -> Self {
        Postings {
            prefix,
            iter,
            at: None,
        }
    }

    /// The largest id at most `at`, or none. Each call must ask for no more than the one
    /// before (the join only ever lowers its candidate), which lets a list answer from where
    /// it stands.
    fn seek(&mut self, at: u64) -> Result<Option<u64>, StoreError> {
        match self.at {
            Some(None) => return Ok(None),
            // The id it stands on is the largest at most an earlier, higher target, so it is
            // also the largest at most this one.
            Some(Some(current)) if current <= at => return Ok(Some(current)),
            Some(Some(_)) => {
                for _ in 0..STEPS_BEFORE_SEEK {
                    self.iter.prev();
                    let id = self.current()?;
                    if id.is_none_or(|id| id <= at) {
                        self.at = Some(id);
                        return Ok(id);
                    }
                }
            }
            None => {}
        }
        let mut target = self.prefix.clone();
        target.extend_from_slice(&at.to_be_bytes());
        self.iter.seek_for_prev(&target);
        let id = self.current()?;
        self.at = Some(id);
        Ok(id)
    }

    /// The id under the iterator, or none when it has left this list.
    fn current(&self) -> Result<Option<u64>, StoreError> {
        if !self.iter.valid() {
            self.iter.status().map_err(|source| StoreError::Rocks {
                doing: "searching",
                source,
            })?;
            return Ok(None);
        }
        match self.iter.key() {
            Some(key) if key.starts_with(&self.prefix) && key.len() == self.prefix.len() + 8 => {
                Ok(crate::db::keys::id_of(key))
            }
            _ => Ok(None),
        }
    }
}

/// Answers `query` with at most `limit` alerts whose ids are below `before`, looking at no
/// more than `budget` candidates.
pub(crate) fn run(
    db: &Db,
    query: &Query,
    before: Option<u64>,
    limit: usize,
    budget: usize,
) -> Result<Hits, StoreError> {
    let rocks = db.rocks();
    let mut lists: Vec<Postings<'_>> = if query.terms.is_empty() {
        vec![Postings::new(
            b"alert/".to_vec(),
            rocks.raw_iterator_cf(db.cf(Cf::State)),
        )]
    } else {
        query
            .terms
            .iter()
            .map(|(field, term)| {
                Postings::new(
                    term_prefix(*field, term),
                    rocks.raw_iterator_cf(db.cf(Cf::Index)),
                )
            })
            .collect()
    };
    let mut hits = Hits::default();
    let mut incident_states = std::collections::HashMap::new();
    let mut candidate = match before {
        Some(0) => return Ok(hits),
        Some(before) => before - 1,
        None => u64::MAX,
    };
    let mut examined = 0;
    'walk: loop {
        // Leapfrog: lower the candidate until every list holds it.
        let mut agreed = 0;
        let mut i = 0;
        while agreed < lists.len() {
            let Some(id) = lists[i].seek(candidate)? else {
                break 'walk;
            };
            if id == candidate {
                agreed += 1;
            } else {
                candidate = id;
                agreed = 1;
            }
            i = (i + 1) % lists.len();
        }
        examined += 1;
        if let Some(alert) = db.get::<Alert>(Cf::State, &crate::db::keys::alert(candidate))?
            && keeps(db, query, &alert, &mut incident_states)?
        {
            hits.alerts.push(alert);
            if hits.alerts.len() >= limit {
                hits.next = (candidate > 1).then_some(candidate);
                break;
            }
        }
        if candidate <= 1 {
            break;
        }
        if examined >= budget {
            hits.next = Some(candidate);
            hits.partial = true;
            break;
        }
        candidate -= 1;
    }
    Ok(hits)
}

fn keeps(
    db: &Db,
    query: &Query,
    alert: &Alert,
    states: &mut std::collections::HashMap<u64, Option<IncidentState>>,
) -> Result<bool, StoreError> {
    let time = alert.body.time;
    if query.after.is_some_and(|t| time < t) || query.before.is_some_and(|t| time >= t) {
        return Ok(false);
    }
    let Some(wanted) = query.state else {
        return Ok(true);
    };
    let Some(incident_id) = alert.incident_id else {
        return Ok(false);
    };
    let state = match states.get(&incident_id) {
        Some(state) => *state,
        None => {
            let state = db
                .get::<pullback_domain::Incident>(
                    Cf::State,
                    &crate::db::keys::incident(incident_id),
                )?
                .map(|i| i.state);
            states.insert(incident_id, state);
            state
        }
    };
    Ok(state == Some(wanted))
}

/// Rebuilds the search index, the incident-state index and the daily counts when they were
/// built by another version of the terms, or never (a store from before search existed, a
/// snapshot from an older leader). Derived data only: the records are not touched.
pub(crate) fn ensure_index(db: &Db) -> Result<(), StoreError> {
    if db.get::<u64>(Cf::Index, VERSION_KEY)? == Some(INDEX_VERSION) {
        return Ok(());
    }
    let started = std::time::Instant::now();
    let rocks = db.rocks();
    let index = db.cf(Cf::Index);
    let rocks_error = |doing: &'static str| move |source| StoreError::Rocks { doing, source };
    for (from, to) in [
        (&b"s/"[..], &b"s0"[..]),
        (b"istate/", b"istate0"),
        (b"day/", b"day0"),
    ] {
        rocks
            .delete_range_cf(index, from, to)
            .map_err(rocks_error("clearing the search index"))?;
    }
    let mut days: std::collections::BTreeMap<String, crate::apply::DayCounts> = Default::default();
    let day_of = |t: Timestamp| t.format("%Y-%m-%d").to_string();
    let mut batch = rocksdb::WriteBatch::default();
    let mut alerts = 0u64;
    for item in rocks.prefix_iterator_cf(db.cf(Cf::State), b"alert/") {
        let (key, value) = item.map_err(rocks_error("reading alerts"))?;
        if !key.starts_with(b"alert/") {
            break;
        }
        let alert: Alert = crate::db::decode(&key, &value)?;
        for (field, term) in alert_terms(&alert) {
            batch.put_cf(
                index,
                term_key(field, &term, alert.id),
                crate::db::encode(&()),
            );
        }
        days.entry(day_of(alert.received_at)).or_default().alerts += 1;
        alerts += 1;
        if batch.len() >= 50_000 {
            db.write(std::mem::take(&mut batch), false)?;
        }
    }
    for (_, incident) in db.scan::<pullback_domain::Incident>(Cf::State, b"incident/")? {
        let state = crate::apply::state_name(incident.state);
        batch.put_cf(
            index,
            crate::db::keys::incident_state(state, incident.id),
            crate::db::encode(&()),
        );
    }
    // Directory changes and their undos are not quarantines; an original job always has a
    // lower id than its undo, so it is seen first.
    let mut directory_jobs = std::collections::HashSet::new();
    for (_, job) in db.scan::<pullback_domain::QuarantineJob>(Cf::State, b"job/")? {
        let directory = match &job.action {
            pullback_domain::JobAction::Directory { .. } => true,
            pullback_domain::JobAction::Restore { original } => directory_jobs.contains(original),
            pullback_domain::JobAction::Quarantine => false,
        };
        if directory {
            directory_jobs.insert(job.id);
            continue;
        }
        for result in &job.results {
            let Some(end) = result.end_time else { continue };
            let day = days.entry(day_of(end)).or_default();
            match result.status {
                pullback_domain::RecipientStatus::Quarantined => day.quarantined += 1,
                pullback_domain::RecipientStatus::Restored => day.restored += 1,
                pullback_domain::RecipientStatus::Failed => day.failed += 1,
                _ => {}
            }
        }
    }
    for (day, counts) in days {
        batch.put_cf(
            index,
            crate::db::keys::day(&day),
            crate::db::encode(&counts),
        );
    }
    batch.put_cf(index, VERSION_KEY, crate::db::encode(&INDEX_VERSION));
    db.write(batch, true)?;
    tracing::info!(
        alerts,
        seconds = started.elapsed().as_secs_f64(),
        "rebuilt the search index"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_with_and_without_scheme_and_in_any_case_are_the_same() {
        let want = "evil.example.com/login?x=1";
        for raw in [
            "https://evil.example.com/login?x=1",
            "HTTP://EVIL.example.COM/login?x=1",
            "evil.example.com/login?x=1#frag",
            "https://evil.example.com:443/login?x=1",
            "  https://user:pw@evil.example.com/login?x=1 ",
        ] {
            assert_eq!(url(raw).as_deref(), Ok(want), "{raw}");
        }
        assert_eq!(url("https://example.com/").as_deref(), Ok("example.com"));
        assert_eq!(
            url("example.com:8080/a").as_deref(),
            Ok("example.com:8080/a")
        );
    }

    #[test]
    fn dashboard_links_keep_their_fragment() {
        let a = threat_url("https://threatinsight.proofpoint.com/#/8a7b/threat/u/AAA").unwrap();
        let b = threat_url("threatinsight.proofpoint.com/#/8a7b/threat/u/BBB").unwrap();
        assert_ne!(a, b);
        assert_eq!(a, "threatinsight.proofpoint.com/#/8a7b/threat/u/aaa");
        assert_eq!(
            url("https://example.com/a#b").as_deref(),
            Ok("example.com/a")
        );
    }

    #[test]
    fn international_names_become_punycode() {
        assert_eq!(
            host("Bücher.Example").as_deref(),
            Ok("xn--bcher-kva.example")
        );
        assert_eq!(
            host("xn--bcher-kva.example.").as_deref(),
            Ok("xn--bcher-kva.example")
        );
        assert_eq!(
            url("https://bücher.example/Path").as_deref(),
            Ok("xn--bcher-kva.example/path")
        );
        assert_eq!(
            address("Anna@Bücher.Example").as_deref(),
            Ok("anna@xn--bcher-kva.example")
        );
    }

    #[test]
    fn bad_values_say_what_is_wrong() {
        assert!(url("https://exa mple.com").unwrap_err().contains("spaces"));
        assert!(url("ht!tp://example.com").unwrap_err().contains("scheme"));
        assert!(
            url("https://example.com:80x/")
                .unwrap_err()
                .contains("port")
        );
        assert!(
            host("bad..example")
                .unwrap_err()
                .contains("not a valid name")
        );
        assert!(hash("abc").unwrap_err().contains("3 characters"));
        assert!(hash(&"g".repeat(64)).unwrap_err().contains("'g'"));
        let error = Query::parse([("hash", "12zz")]).unwrap_err();
        assert_eq!(error.parameter, "hash");
        let error = Query::parse([("after", "yesterday")]).unwrap_err();
        assert_eq!(error.parameter, "after");
        assert!(error.to_string().contains("yesterday"));
        let error = Query::parse([("after", "2026-12-02"), ("before", "2026-12-01")]).unwrap_err();
        assert_eq!(error.parameter, "before");
    }

    #[test]
    fn hosts_are_found_by_their_parent_domains() {
        assert_eq!(
            host_suffixes("a.b.example.com"),
            vec!["a.b.example.com", "b.example.com", "example.com"]
        );
        assert_eq!(host_suffixes("10.1.2.3"), vec!["10.1.2.3"]);
        assert_eq!(host_suffixes("localhost"), vec!["localhost"]);
    }

    #[test]
    fn subject_words_are_lower_case_and_unique() {
        assert_eq!(
            words("Re: Invoice #42 — INVOICE überfällig"),
            vec!["re", "invoice", "42", "überfällig"]
        );
        let query = Query::parse([("subject", "Invoice überfällig")]).unwrap();
        assert_eq!(query.terms.len(), 2);
        assert!(Query::parse([("subject", "- !")]).is_err());
    }
}

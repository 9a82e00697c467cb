//! Search and the incident list with a million alerts in the store.
//!
//! One node is started from a configuration file in a temporary folder, with one match
//! condition: threats classified `phish` (about 40 % of the threats) get a dry-run quarantine,
//! so their alerts open or join incidents and create quarantine jobs that are final at once
//! (no mailbox is touched and the worker has nothing to do). The alerts are loaded through
//! the real node, `Command::IngestAlerts` of 1000 drafts, four proposals in flight. Every five
//! batches, incidents opened 20 batches ago or more are closed (one `CloseIncident` proposal
//! each, all at once), as analysts would, so later alerts about the same threat open new
//! incidents; one incident in ten (by id) stays open for 200 batches instead, like a campaign
//! being watched. The load line gives the rate over the whole load and over its first and
//! last tenth.
//!
//! The data is generated from a fixed seed, so every run stores the same alerts:
//! - 20 000 URL threats on 2000 registrable domains (several subdomains each, some two levels
//!   deep), picked with a Zipf distribution (exponent 1: the commonest threat is in about 9 %
//!   of the alerts, most appear a handful of times). Each threat's TAP dashboard URL is
//!   `https://threatinsight.proofpoint.com/<tenant>/threat/email/<threat id>`.
//! - 50 000 recipients on four domains (Zipf, exponent 0.8), one to three per alert.
//! - Subjects from a vocabulary of 2000 words (Zipf, exponent 1; the commonest are real
//!   phishing words): each threat has a template of four to eight words, and alerts add
//!   `RE:` or `FW:`, a replaced word or a reference number now and then.
//!
//! Then, once for each RocksDB memory budget (`[node] store_memory_mb`; the first is the one
//! the data was loaded with, each next one restarts the node on the same data):
//! - `path=store`: `Reader::search` for the first page of 50, with the API's budget of 20 000
//!   candidates, by threat URL, by host (the registrable domain, which matches every
//!   subdomain), by recipient, by two subject words, and by host and recipient together.
//!   Half of the queries take their values from a random stored alert (so common values come
//!   up as often as they are stored); the other half take a random distinct value (a threat,
//!   domain or recipient picked uniformly, two words of a random threat's template), which
//!   may match nothing. Every hit is checked against the query (`wrong`). `reread` is reading
//!   the page's alerts again by id right after: the point reads and JSON decoding alone.
//! - `path=http`: the same queries as `GET /api/v1/search`, served by `pullback_api::router`
//!   in-process on 127.0.0.1 with a read-only API key, timed by a reqwest client from sending
//!   until the whole body is read. `beyond_store` is the HTTP time minus the store time of
//!   the same query; `incident_alerts` is how many alerts the incidents shown with the rows
//!   hold, since the handler reads each of them whole.
//! - `list=...`: `GET /api/v1/incidents?limit=50`: the first page repeatedly, pages at random
//!   cursors over every incident id, the first page with `state=open`, and every page of open
//!   incidents following `next_cursor`. `jobs_per_page` is how many quarantine jobs the pages
//!   name, which the handler reads one by one to count outcomes; `us_per_job` divides the
//!   time of the pages naming 1000 or more by their jobs.
//!
//! Before the passes, the generated alerts are indexed in memory to tell, for every query,
//! how many alerts carry each term and all of them, and how many seeks the store's leapfrog
//! join makes for the first page (`seeks`); each store line is followed by the time per seek
//! over the queries needing 1000 or more, and the slowest query's terms.
//!
//! The machine may be shared: every measurement waits until the whole machine is nearly idle
//! and is done again (up to three times) when other processes used more than a quarter of a
//! core while it ran; `others_cores` and `attempts` say how it went.
//!
//! Sizes come from the environment:
//! - `PULLBACK_BENCH_SEARCH_ALERTS`: alerts loaded (1 000 000).
//! - `PULLBACK_BENCH_SEARCH_QUERIES`: queries of each kind and path (1000).
//! - `PULLBACK_BENCH_SEARCH_PAGES`: incident list pages of each kind (500).
//! - `PULLBACK_BENCH_SEARCH_MEMORY_MB`: memory budgets, comma-separated (`12,256`).

use anyhow::Context;
use pullback_api::{ApiKey, AppState, hash_key};
use pullback_benches::{AlertSpec, Latencies, per_second, run_with_data_folder, size_from_env};
use pullback_domain::{AlertDraft, Command, MessageId, Role};
use pullback_node::config::Config;
use pullback_node::{Backends, Node, Parts};
use pullback_store::search::{Query, words};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SEED: u64 = 0x5eed_5ea7_c420_2026;
const THREATS: usize = 20_000;
const DOMAINS: usize = 2_000;
const RECIPIENTS: usize = 50_000;
const VOCABULARY: usize = 2_000;
const BATCH: usize = 1_000;
const IN_FLIGHT: usize = 4;
/// Incidents are closed once this many batches were committed after the one that opened
/// them, checked every `CLOSE_EVERY` batches; one in `LONG_OPEN_EVERY` (by id) stays open
/// for `LONG_OPEN_AFTER` batches instead, like a campaign an analyst keeps watching.
const CLOSE_AFTER: usize = 20;
const LONG_OPEN_AFTER: usize = 200;
const LONG_OPEN_EVERY: u64 = 10;
const CLOSE_EVERY: usize = 5;
/// What the API looks at per search page (`SEARCH_BUDGET` in pullback-api).
const SEARCH_BUDGET: usize = 20_000;
const PAGE: usize = 50;
/// Queries and pages run before timing, to fill the caches the way a running node has them.
const WARM_UP: usize = 100;
const API_KEY: &str = "pullback-bench-search-read-only";
const TENANT: &str = "73aa0499-dfc8-75eb-1de8-a471b24a2e75";

struct Sizes {
    alerts: usize,
    queries: usize,
    pages: usize,
    memory_mb: Vec<usize>,
}

impl Sizes {
    fn from_env() -> anyhow::Result<Sizes> {
        let name = "PULLBACK_BENCH_SEARCH_MEMORY_MB";
        let memory_mb = match std::env::var(name) {
            Err(_) => vec![12, 256],
            Ok(text) => text
                .split(',')
                .map(|m| match m.trim().parse::<usize>() {
                    Ok(mb) if (3..=65_536).contains(&mb) => Ok(mb),
                    _ => anyhow::bail!("{name} must list numbers from 3 to 65536, not {text:?}"),
                })
                .collect::<anyhow::Result<_>>()?,
        };
        Ok(Sizes {
            alerts: size_from_env("PULLBACK_BENCH_SEARCH_ALERTS", 1_000_000)?,
            queries: size_from_env("PULLBACK_BENCH_SEARCH_QUERIES", 1000)?,
            pages: size_from_env("PULLBACK_BENCH_SEARCH_PAGES", 500)?,
            memory_mb,
        })
    }
}

fn main() -> anyhow::Result<()> {
    let sizes = Sizes::from_env()?;
    run_with_data_folder(|data_folder| run(data_folder, sizes))
}

async fn run(data_folder: PathBuf, sizes: Sizes) -> anyhow::Result<()> {
    let world = Arc::new(World::new());
    let node_dir = data_folder.join("node");
    std::fs::create_dir(&node_dir)?;
    println!(
        "search: {} alerts, {THREATS} threats on {DOMAINS} domains, {RECIPIENTS} recipients, \
         {VOCABULARY} words; pages of {PAGE}; data under {}",
        sizes.alerts,
        node_dir.display()
    );
    let mut node = start_node(&node_dir, sizes.memory_mb[0]).await?;
    let loaded = load(&node, &world, sizes.alerts).await?;
    println!(
        "search load alerts={} batches={} secs={:.1} alerts_per_sec={:.0} \
         first_tenth_alerts_per_sec={:.0} last_tenth_alerts_per_sec={:.0} {} \
         incidents_opened={} incidents_closed={} jobs={} store_mb={:.0} others_cores={:.2}",
        sizes.alerts,
        loaded.batches,
        loaded.elapsed.as_secs_f64(),
        per_second(sizes.alerts, loaded.elapsed),
        loaded.first_tenth,
        loaded.last_tenth,
        loaded.latencies.summary("proposal"),
        loaded.opened,
        loaded.closed,
        loaded.jobs,
        megabytes(folder_size(&node_dir)),
        loaded.others_cores,
    );
    print_incidents(&node)?;

    let queries = Kind::ALL.map(|kind| (kind, world.queries(kind, sizes.queries, sizes.alerts)));
    let warm_up: Vec<Params> = Kind::ALL
        .iter()
        .flat_map(|&kind| world.queries(kind, WARM_UP / Kind::ALL.len(), sizes.alerts))
        .collect();
    // What each query is for the index, from the generated data.
    let inverted = world.inverted(sizes.alerts);
    let work: Vec<Vec<Work>> = queries
        .iter()
        .map(|(_, list)| list.iter().map(|p| inverted.work(p)).collect())
        .collect();
    drop(inverted);
    for ((kind, _), work) in queries.iter().zip(&work) {
        let mut seeks = Latencies::default();
        let mut matching = Latencies::default();
        for w in work {
            seeks.record(Duration::from_micros(w.seeks as u64));
            matching.record(Duration::from_micros(w.matching as u64));
        }
        let at = |l: &Latencies, p: f64| l.percentile(p).as_micros();
        println!(
            "search queries by={} n={} matching_p50={} matching_max={} seeks_p50={} \
             seeks_p95={} seeks_p99={} seeks_max={}",
            kind.name(),
            work.len(),
            at(&matching, 50.0),
            at(&matching, 100.0),
            at(&seeks, 50.0),
            at(&seeks, 95.0),
            at(&seeks, 99.0),
            at(&seeks, 100.0),
        );
    }
    for (pass, &memory_mb) in sizes.memory_mb.iter().enumerate() {
        if pass > 0 {
            node.shutdown().await;
            drop(node);
            node = restart_node(&node_dir, memory_mb).await?;
        }
        let settled = wait_until_idle(Duration::from_secs(300)).await;
        print_lsm(
            &node_dir.join("data").join("db"),
            &format!("memory_mb={memory_mb}"),
        );
        println!(
            "search pass memory_mb={memory_mb} idle_after_secs={:.1}",
            settled.as_secs_f64()
        );
        let cpu = CpuUse::now();
        measure(&node, memory_mb, &queries, &warm_up, &work, sizes.pages).await?;
        print_memory(&node, memory_mb, &cpu);
    }
    node.shutdown().await;
    drop(node);
    println!(
        "search store_mb={:.0} (at the end)",
        megabytes(folder_size(&node_dir))
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The generated alerts.

/// splitmix64: small, fast and good enough to draw test data.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// True with probability `percent` / 100.
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// A number derived from `what` and `n`, the same in every run.
fn hash(what: u64, n: usize) -> u64 {
    Rng::new(SEED ^ what.wrapping_mul(0x2545_f491_4f6c_dd1d) ^ n as u64).next()
}

/// Ranks `0..n` drawn with probability proportional to `1 / (rank + 1)^exponent`.
struct Zipf {
    cumulative: Vec<f64>,
}

impl Zipf {
    fn new(n: usize, exponent: f64) -> Zipf {
        let mut total = 0.0;
        let cumulative = (0..n)
            .map(|rank| {
                total += 1.0 / ((rank + 1) as f64).powf(exponent);
                total
            })
            .collect();
        Zipf { cumulative }
    }

    fn draw(&self, rng: &mut Rng) -> usize {
        let total = self.cumulative.last().copied().unwrap_or_default();
        let u = (rng.next() >> 11) as f64 / (1u64 << 53) as f64 * total;
        self.cumulative
            .partition_point(|&c| c <= u)
            .min(self.cumulative.len() - 1)
    }
}

/// A made-up word, different for every number: syllables for its digits in base 100.
fn pseudo_word(mut n: usize) -> String {
    const CONSONANTS: &[u8] = b"bcdfghjklmnprstvwxyz";
    const VOWELS: &[u8] = b"aeiou";
    let mut word = String::new();
    loop {
        let syllable = n % 100;
        word.push(CONSONANTS[syllable / 5] as char);
        word.push(VOWELS[syllable % 5] as char);
        n /= 100;
        if n == 0 {
            break;
        }
    }
    word
}

/// The commonest words of the vocabulary; the rest are made up.
const COMMON_WORDS: &[&str] = &[
    "your",
    "account",
    "invoice",
    "payment",
    "urgent",
    "action",
    "required",
    "document",
    "shared",
    "with",
    "you",
    "password",
    "expires",
    "today",
    "verify",
    "update",
    "new",
    "message",
    "from",
    "please",
    "review",
    "secure",
    "notification",
    "delivery",
    "failed",
    "order",
    "confirmation",
    "bank",
    "transfer",
    "pending",
    "approval",
    "scan",
    "voicemail",
    "received",
    "final",
    "notice",
    "overdue",
    "statement",
    "tax",
    "refund",
    "policy",
    "benefits",
    "salary",
    "adjustment",
    "sign",
    "contract",
    "agreement",
    "quote",
    "purchase",
    "wire",
    "details",
    "alert",
    "security",
    "login",
    "attempt",
    "unusual",
    "activity",
    "mailbox",
    "storage",
    "full",
    "quota",
    "suspended",
    "office",
    "teams",
    "meeting",
    "calendar",
    "file",
    "attached",
    "important",
    "reminder",
    "customer",
    "service",
    "ticket",
    "support",
    "shipment",
    "tracking",
    "package",
    "parcel",
    "outstanding",
    "balance",
    "remittance",
    "advice",
    "receipt",
    "june",
    "report",
    "quarterly",
    "bonus",
    "holiday",
    "schedule",
];
const SUBDOMAINS: &[&str] = &[
    "login", "secure", "mail", "account", "verify", "portal", "docs", "share", "auth", "my",
    "update", "cdn",
];
const DOMAIN_WORDS: &[&str] = &[
    "online", "secure", "cloud", "docs", "mail", "files", "web", "portal",
];
const TLDS: &[&str] = &["com", "net", "org", "info", "xyz", "top", "online"];
const RECIPIENT_DOMAINS: &[&str] = &[
    "corp.example.com",
    "example-corp.com",
    "eu.corp.example.com",
    "subsidiary.example.net",
];
const SENDERS: &[&str] = &[
    "billing",
    "noreply",
    "support",
    "hr",
    "it-helpdesk",
    "accounts",
];
const CLASSIFICATIONS: [&str; 3] = ["phish", "malware", "spam"];

struct ThreatInfo {
    id: String,
    url: String,
    dashboard_url: String,
    domain: usize,
    classification: &'static str,
    /// Indexes into the vocabulary.
    template: Vec<usize>,
}

/// Everything the alerts are drawn from.
struct World {
    words: Vec<String>,
    domains: Vec<String>,
    threats: Vec<ThreatInfo>,
    threat_pick: Zipf,
    recipient_pick: Zipf,
    word_pick: Zipf,
}

/// The generated alerts by term, to tell how much work a query is for the index.
struct Inverted {
    lists: HashMap<(&'static str, String), Vec<u32>>,
}

/// What a query is for the index: the size of each term's list, how many alerts carry
/// every term, and how many seeks the leapfrog join makes for the first page.
struct Work {
    terms: Vec<(String, usize)>,
    matching: usize,
    seeks: usize,
}

impl Inverted {
    fn work(&self, params: &Params) -> Work {
        const EMPTY: &Vec<u32> = &Vec::new();
        let mut terms: Vec<(&'static str, String)> = Vec::new();
        for (name, value) in &params.0 {
            if *name == "subject" {
                terms.extend(words(value).into_iter().map(|w| ("subject", w)));
            } else {
                terms.push((name, value.clone()));
            }
        }
        let lists: Vec<&Vec<u32>> = terms
            .iter()
            .map(|key| self.lists.get(key).unwrap_or(EMPTY))
            .collect();
        let matching = match lists.split_first() {
            Some((first, rest)) => first
                .iter()
                .filter(|n| rest.iter().all(|l| l.binary_search(n).is_ok()))
                .count(),
            None => 0,
        };
        Work {
            seeks: leapfrog_seeks(&lists, PAGE),
            matching,
            terms: terms
                .into_iter()
                .zip(&lists)
                .map(|((_, term), list)| (term, list.len()))
                .collect(),
        }
    }
}

/// The seeks `pullback_store::search` makes for the first `page` alerts carrying every term,
/// newest first: each step seeks one list to the largest id at most the candidate.
fn leapfrog_seeks(lists: &[&Vec<u32>], page: usize) -> usize {
    if lists.is_empty() {
        return 0;
    }
    let at_most = |list: &Vec<u32>, at: u32| -> Option<u32> {
        let i = list.partition_point(|&x| x <= at);
        i.checked_sub(1).map(|j| list[j])
    };
    let mut candidate = u32::MAX;
    let (mut seeks, mut found) = (0, 0);
    'walk: loop {
        let (mut agreed, mut i) = (0, 0);
        while agreed < lists.len() {
            seeks += 1;
            let Some(id) = at_most(lists[i], candidate) else {
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
        found += 1;
        if found >= page || candidate == 0 {
            break;
        }
        candidate -= 1;
    }
    seeks
}

/// One generated alert, before it becomes a draft.
struct Planned {
    n: usize,
    threat: usize,
    recipients: Vec<usize>,
    subject: String,
}

impl World {
    fn new() -> World {
        let words: Vec<String> = (0..VOCABULARY)
            .map(|i| match COMMON_WORDS.get(i) {
                Some(word) => (*word).to_owned(),
                None => pseudo_word(i + 10_000),
            })
            .collect();
        let domains = (0..DOMAINS)
            .map(|d| {
                format!(
                    "{}-{}.{}",
                    pseudo_word(d),
                    DOMAIN_WORDS[d % DOMAIN_WORDS.len()],
                    TLDS[(d / DOMAIN_WORDS.len()) % TLDS.len()]
                )
            })
            .collect::<Vec<_>>();
        let word_pick = Zipf::new(VOCABULARY, 1.0);
        let threats = (0..THREATS)
            .map(|t| {
                let mut rng = Rng::new(hash(1, t));
                let domain = rng.below(DOMAINS);
                // Each domain uses a few of the subdomains; some hosts are two levels deep.
                let subs = 3 + domain % 5;
                let first = SUBDOMAINS[(domain + rng.below(subs)) % SUBDOMAINS.len()];
                let host = if rng.chance(20) {
                    let second = SUBDOMAINS[(domain + 5 + rng.below(3)) % SUBDOMAINS.len()];
                    format!("{first}.{second}.{}", domains[domain])
                } else {
                    format!("{first}.{}", domains[domain])
                };
                let id = format!(
                    "{:016x}{:016x}{:016x}{:016x}",
                    hash(2, t),
                    hash(3, t),
                    hash(4, t),
                    hash(5, t)
                );
                let url = format!(
                    "https://{host}/{}/{:08x}.php?ref={t}",
                    pseudo_word(rng.below(500)),
                    rng.next() as u32
                );
                let classification = match rng.below(10) {
                    0..=3 => CLASSIFICATIONS[0],
                    4..=7 => CLASSIFICATIONS[1],
                    _ => CLASSIFICATIONS[2],
                };
                let length = 4 + rng.below(5);
                let mut template = Vec::with_capacity(length);
                while template.len() < length {
                    let word = word_pick.draw(&mut rng);
                    if !template.contains(&word) {
                        template.push(word);
                    }
                }
                ThreatInfo {
                    dashboard_url: format!(
                        "https://threatinsight.proofpoint.com/{TENANT}/threat/email/{id}"
                    ),
                    id,
                    url,
                    domain,
                    classification,
                    template,
                }
            })
            .collect();
        World {
            words,
            domains,
            threats,
            threat_pick: Zipf::new(THREATS, 1.0),
            recipient_pick: Zipf::new(RECIPIENTS, 0.8),
            word_pick,
        }
    }

    fn recipient(&self, r: usize) -> String {
        let domain = match r % 10 {
            0..=5 => RECIPIENT_DOMAINS[0],
            6 | 7 => RECIPIENT_DOMAINS[1],
            8 => RECIPIENT_DOMAINS[2],
            _ => RECIPIENT_DOMAINS[3],
        };
        format!("{}.{}@{domain}", pseudo_word(r), pseudo_word(r / 7 + 3))
    }

    /// The `n`th alert; the same in every run.
    fn planned(&self, n: usize) -> Planned {
        let mut rng = Rng::new(hash(6, n));
        let threat = self.threat_pick.draw(&mut rng);
        let count = match rng.below(10) {
            0..=6 => 1,
            7 | 8 => 2,
            _ => 3,
        };
        let mut recipients = Vec::with_capacity(count);
        while recipients.len() < count {
            let r = self.recipient_pick.draw(&mut rng);
            if !recipients.contains(&r) {
                recipients.push(r);
            }
        }
        let mut subject_words: Vec<&str> = self.threats[threat]
            .template
            .iter()
            .map(|&w| self.words[w].as_str())
            .collect();
        if rng.chance(30) {
            let at = rng.below(subject_words.len());
            subject_words[at] = &self.words[self.word_pick.draw(&mut rng)];
        }
        let mut subject = String::new();
        match rng.below(100) {
            0..=14 => subject.push_str("RE: "),
            15..=24 => subject.push_str("FW: "),
            _ => {}
        }
        let mut first = true;
        for word in subject_words {
            if !first {
                subject.push(' ');
            }
            if first {
                let mut chars = word.chars();
                if let Some(c) = chars.next() {
                    subject.extend(c.to_uppercase());
                    subject.push_str(chars.as_str());
                }
            } else {
                subject.push_str(word);
            }
            first = false;
        }
        if rng.chance(40) {
            subject.push_str(&format!(" #{}", 10_000 + rng.below(9_990_000)));
        }
        Planned {
            n,
            threat,
            recipients,
            subject,
        }
    }

    fn draft(&self, planned: &Planned) -> AlertDraft {
        let threat = &self.threats[planned.threat];
        let domain = &self.domains[threat.domain];
        let spec = AlertSpec {
            event_id: format!("search-{}", planned.n),
            message_id: MessageId::parse(&format!(
                "<{}.{:x}@mail.{domain}>",
                planned.n,
                hash(7, planned.n)
            ))
            .expect("a non-empty Message-ID"),
            subject: planned.subject.clone(),
            sender: format!(
                "{}@{domain}",
                SENDERS[(hash(8, planned.n) % SENDERS.len() as u64) as usize]
            ),
            recipients: planned
                .recipients
                .iter()
                .map(|&r| self.recipient(r))
                .collect(),
            threat_id: threat.id.clone(),
            threat_url: threat.url.clone(),
        };
        let mut draft = spec.draft();
        if let Some(first) = draft.threats.first_mut() {
            first.classification = Some(threat.classification.to_owned());
            first.dashboard_url = Some(threat.dashboard_url.clone());
        }
        if let Some(info) = draft.raw.pointer_mut("/threatsInfoMap/0") {
            info["classification"] = threat.classification.into();
            info["threatUrl"] = threat.dashboard_url.clone().into();
        }
        draft
    }

    /// Which of the first `alerts` alerts carry each term the queries can ask for, as the
    /// store's index has them (a subject gives one term per word).
    fn inverted(&self, alerts: usize) -> Inverted {
        let mut lists: HashMap<(&'static str, String), Vec<u32>> = HashMap::new();
        for n in 0..alerts {
            let planned = self.planned(n);
            let threat = &self.threats[planned.threat];
            let mut add = |name: &'static str, term: String| {
                lists.entry((name, term)).or_default().push(n as u32);
            };
            add("threat_url", threat.dashboard_url.clone());
            add("host", self.domains[threat.domain].clone());
            for &r in &planned.recipients {
                add("recipient", self.recipient(r));
            }
            for word in words(&planned.subject) {
                add("subject", word);
            }
        }
        Inverted { lists }
    }

    /// `count` queries of one kind: alternately from a random stored alert and from a
    /// random distinct value.
    fn queries(&self, kind: Kind, count: usize, alerts: usize) -> Vec<Params> {
        let mut rng = Rng::new(hash(9 + kind as u64, count));
        (0..count)
            .map(|i| {
                let (threat, recipient, subject) = if i % 2 == 0 {
                    let planned = self.planned(rng.below(alerts));
                    let recipient = planned.recipients[rng.below(planned.recipients.len())];
                    let words = words(&planned.subject)
                        .into_iter()
                        .filter(|w| !w.chars().all(|c| c.is_ascii_digit()))
                        .filter(|w| w != "re" && w != "fw")
                        .collect::<Vec<_>>();
                    (planned.threat, recipient, words)
                } else {
                    let threat = rng.below(THREATS);
                    let words = self.threats[threat]
                        .template
                        .iter()
                        .map(|&w| self.words[w].clone())
                        .collect();
                    (threat, rng.below(RECIPIENTS), words)
                };
                let info = &self.threats[threat];
                let domain = self.domains[info.domain].clone();
                let recipient = self.recipient(recipient);
                let params = match kind {
                    Kind::ThreatUrl => vec![("threat_url", info.dashboard_url.clone())],
                    Kind::Host => vec![("host", domain)],
                    Kind::Recipient => vec![("recipient", recipient)],
                    Kind::Subject => {
                        let a = rng.below(subject.len());
                        let b = (a + 1 + rng.below(subject.len() - 1)) % subject.len();
                        vec![("subject", format!("{} {}", subject[a], subject[b]))]
                    }
                    Kind::HostAndRecipient => {
                        vec![("host", domain), ("recipient", recipient)]
                    }
                };
                Params(params)
            })
            .collect()
    }
}

// ---------------------------------------------------------------------------------------
// Loading.

struct Loaded {
    batches: usize,
    elapsed: Duration,
    /// Alerts per second over the first and the last tenth of the batches.
    first_tenth: f64,
    last_tenth: f64,
    others_cores: f64,
    latencies: Latencies,
    opened: usize,
    closed: usize,
    jobs: usize,
}

/// What one ingest proposal created.
struct Committed {
    latency: Duration,
    incidents: Vec<u64>,
    jobs: usize,
}

async fn load(node: &Arc<Node>, world: &Arc<World>, alerts: usize) -> anyhow::Result<Loaded> {
    let batches = alerts.div_ceil(BATCH);
    let mut tasks = tokio::task::JoinSet::new();
    let mut next = 0;
    let mut done = 0;
    let mut latencies = Latencies::default();
    // Incidents by the number of batches committed when they were opened; the long-open
    // ones move to the second map when the others are closed.
    let mut opened_at: BTreeMap<usize, Vec<u64>> = BTreeMap::new();
    let mut long_open: BTreeMap<usize, Vec<u64>> = BTreeMap::new();
    let (mut opened, mut closed, mut jobs) = (0, 0, 0);
    let cpu = CpuUse::now();
    let started = Instant::now();
    // How many batches were done after each tenth, and when.
    let mut tenths: Vec<(usize, Duration)> = Vec::new();
    while done < batches {
        while next < batches && tasks.len() < IN_FLIGHT {
            let range = next * BATCH..((next + 1) * BATCH).min(alerts);
            tasks.spawn(ingest(node.clone(), world.clone(), range));
            next += 1;
        }
        let committed = tasks
            .join_next()
            .await
            .context("no ingest in flight")?
            .context("an ingest task panicked")??;
        done += 1;
        latencies.record(committed.latency);
        opened += committed.incidents.len();
        jobs += committed.jobs;
        opened_at.insert(done, committed.incidents);
        if done % CLOSE_EVERY == 0 && done > CLOSE_AFTER {
            let keep = opened_at.split_off(&(done - CLOSE_AFTER + 1));
            let mut to_close = Vec::new();
            for (at, ids) in std::mem::replace(&mut opened_at, keep) {
                let (long, short): (Vec<u64>, Vec<u64>) =
                    ids.into_iter().partition(|id| id % LONG_OPEN_EVERY == 0);
                to_close.extend(short);
                long_open.insert(at, long);
            }
            if done > LONG_OPEN_AFTER {
                let keep = long_open.split_off(&(done - LONG_OPEN_AFTER + 1));
                let old = std::mem::replace(&mut long_open, keep);
                to_close.extend(old.into_values().flatten());
            }
            closed += close(node, to_close).await?;
        }
        if done % (batches / 10).max(1) == 0 {
            tenths.push((done, started.elapsed()));
            eprintln!(
                "search: loaded {done} of {batches} batches in {:.0} s",
                started.elapsed().as_secs_f64()
            );
        }
    }
    // Alerts per second between two of those points (batches are full but maybe the last).
    let tenth_rate = |i: usize| {
        let (start_batch, start) = i.checked_sub(1).map_or((0, Duration::ZERO), |j| tenths[j]);
        let (end_batch, end) = tenths[i];
        let count = (end_batch * BATCH).min(alerts) - start_batch * BATCH;
        per_second(count, end.saturating_sub(start))
    };
    Ok(Loaded {
        batches,
        elapsed: started.elapsed(),
        first_tenth: tenth_rate(0),
        last_tenth: tenth_rate(tenths.len().saturating_sub(1)),
        others_cores: cpu.others_since(),
        latencies,
        opened,
        closed,
        jobs,
    })
}

async fn ingest(
    node: Arc<Node>,
    world: Arc<World>,
    range: std::ops::Range<usize>,
) -> anyhow::Result<Committed> {
    let drafts: Vec<AlertDraft> = range.map(|n| world.draft(&world.planned(n))).collect();
    let expected = drafts.len();
    let command = Command::IngestAlerts {
        source: "tap".into(),
        at: chrono::Utc::now(),
        drafts,
        rejected: Vec::new(),
        checkpoint: None,
    };
    let started = Instant::now();
    let response = node.propose(command).await?;
    let latency = started.elapsed();
    if let Some(reason) = response.refused {
        anyhow::bail!("the node refused an ingest: {reason}");
    }
    if response.alerts.len() != expected {
        anyhow::bail!(
            "{} of {expected} alerts were accepted ({} duplicates)",
            response.alerts.len(),
            response.duplicates
        );
    }
    Ok(Committed {
        latency,
        incidents: response.incidents,
        jobs: response.jobs.len(),
    })
}

/// Closes incidents, one proposal each, all at once (the node groups them into a few log
/// entries, as it does for analysts' requests); returns how many were closed.
///
/// Not one `Command::Batch`: the node groups concurrent proposals into a batch of its own,
/// and a batch inside a batch is refused.
async fn close(node: &Arc<Node>, incidents: Vec<u64>) -> anyhow::Result<usize> {
    let at = chrono::Utc::now();
    let mut tasks = tokio::task::JoinSet::new();
    for incident_id in incidents {
        let node = node.clone();
        tasks.spawn(async move {
            let command = Command::CloseIncident {
                incident_id,
                by: "bench".into(),
                at,
            };
            node.propose(command).await
        });
    }
    let mut closed = 0;
    while let Some(joined) = tasks.join_next().await {
        let response = joined.context("a close task panicked")??;
        if let Some(reason) = response.refused {
            anyhow::bail!("the node refused to close an incident: {reason}");
        }
        closed += 1;
    }
    Ok(closed)
}

fn print_incidents(node: &Node) -> anyhow::Result<()> {
    let started = Instant::now();
    let incidents = node
        .reader()
        .incidents(&pullback_store::IncidentFilter::default())?;
    let scan = started.elapsed();
    let open = incidents
        .iter()
        .filter(|i| i.state == pullback_domain::IncidentState::Open)
        .count();
    let mut sizes: Vec<usize> = incidents.iter().map(|i| i.alert_ids.len()).collect();
    sizes.sort_unstable();
    let at =
        |p: f64| sizes.get(((sizes.len() as f64 * p) as usize).min(sizes.len().saturating_sub(1)));
    let bytes: usize = incidents
        .iter()
        .map(|i| serde_json::to_vec(i).map(|v| v.len()).unwrap_or_default())
        .sum();
    let largest = incidents.iter().max_by_key(|i| i.alert_ids.len());
    println!(
        "search incidents total={} open={open} alerts_per_incident_p50={} p99={} max={} \
         largest_jobs={} largest_links={} mean_json_bytes={:.0} full_scan_ms={:.0}",
        incidents.len(),
        at(0.5).copied().unwrap_or_default(),
        at(0.99).copied().unwrap_or_default(),
        sizes.last().copied().unwrap_or_default(),
        largest.map(|i| i.job_ids.len()).unwrap_or_default(),
        largest.map(|i| i.links.len()).unwrap_or_default(),
        bytes as f64 / incidents.len().max(1) as f64,
        scan.as_secs_f64() * 1000.0,
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Queries.

#[derive(Clone, Copy, Debug)]
enum Kind {
    ThreatUrl,
    Host,
    Recipient,
    Subject,
    HostAndRecipient,
}

impl Kind {
    const ALL: [Kind; 5] = [
        Kind::ThreatUrl,
        Kind::Host,
        Kind::Recipient,
        Kind::Subject,
        Kind::HostAndRecipient,
    ];

    fn name(self) -> &'static str {
        match self {
            Kind::ThreatUrl => "threat_url",
            Kind::Host => "host",
            Kind::Recipient => "recipient",
            Kind::Subject => "subject_words",
            Kind::HostAndRecipient => "host+recipient",
        }
    }
}

/// A search's URL parameters.
#[derive(Clone, Debug)]
struct Params(Vec<(&'static str, String)>);

impl Params {
    fn query(&self) -> anyhow::Result<Query> {
        Query::parse(self.0.iter().map(|(n, v)| (*n, v.as_str())))
            .map_err(|e| anyhow::anyhow!("{e}"))
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether an alert is one the query asks for.
    fn matches(&self, alert: &pullback_domain::Alert) -> bool {
        let body = &alert.body;
        let threat_url = self.get("threat_url").is_none_or(|url| {
            body.threats
                .iter()
                .any(|t| t.dashboard_url.as_deref() == Some(url))
        });
        let host = self.get("host").is_none_or(|domain| {
            body.threats.iter().any(|t| {
                t.hostname
                    .as_deref()
                    .is_some_and(|h| h == domain || h.ends_with(&format!(".{domain}")))
            })
        });
        let recipient = self
            .get("recipient")
            .is_none_or(|r| body.recipients.iter().any(|x| x.eq_ignore_ascii_case(r)));
        let subject = self.get("subject").is_none_or(|wanted| {
            let have = words(body.subject.as_deref().unwrap_or_default());
            words(wanted).iter().all(|w| have.contains(w))
        });
        threat_url && host && recipient && subject
    }
}

/// Latencies with how many hits the queries found.
#[derive(Default)]
struct Outcome {
    latencies: Latencies,
    hits: usize,
    empty: usize,
    partial: usize,
    wrong: usize,
    /// Reading the page's alerts again by id, right after the search: the point reads and
    /// JSON decoding alone, from warm caches.
    reread: Latencies,
    /// Every query's latency, in the order of the queries.
    each: Vec<Duration>,
}

impl Outcome {
    fn record(&mut self, latency: Duration, hits: usize, partial: bool) {
        self.latencies.record(latency);
        self.each.push(latency);
        self.hits += hits;
        self.empty += usize::from(hits == 0);
        self.partial += usize::from(partial);
    }

    /// How the latencies follow the leapfrog seeks of each query (`work`, in the same
    /// order): the time per seek over the queries that needed 1000 or more, and the slowest
    /// query's terms, matches and seeks.
    fn against(&self, work: &[Work]) -> String {
        let heavy: Vec<(Duration, usize)> = self
            .each
            .iter()
            .zip(work)
            .filter(|(_, w)| w.seeks >= 1000)
            .map(|(d, w)| (*d, w.seeks))
            .collect();
        let time = heavy.iter().fold(0.0, |t, (d, _)| t + d.as_secs_f64());
        let seeks: usize = heavy.iter().map(|(_, s)| s).sum();
        let mut line = format!(
            "heavy_queries={} us_per_seek={:.2}",
            heavy.len(),
            time * 1e6 / seeks.max(1) as f64
        );
        let slowest = self
            .each
            .iter()
            .enumerate()
            .max_by_key(|(_, d)| **d)
            .map(|(i, d)| (d, &work[i]));
        if let Some((latency, work)) = slowest {
            let terms: Vec<String> = work.terms.iter().map(|(t, n)| format!("{t}:{n}")).collect();
            line.push_str(&format!(
                " slowest_ms={:.1} slowest_terms={} slowest_matching={} slowest_seeks={}",
                latency.as_secs_f64() * 1000.0,
                terms.join(","),
                work.matching,
                work.seeks
            ));
        }
        line
    }

    fn line(&self) -> String {
        let n = self.latencies.len().max(1);
        let mut line = format!(
            "{} hits_per_query={:.1} empty={} partial={} wrong={}",
            percentiles(&self.latencies),
            self.hits as f64 / n as f64,
            self.empty,
            self.partial,
            self.wrong
        );
        if !self.reread.is_empty() {
            let ms = |p: f64| self.reread.percentile(p).as_secs_f64() * 1000.0;
            line.push_str(&format!(
                " reread_p50_ms={:.2} reread_p99_ms={:.2}",
                ms(50.0),
                ms(99.0)
            ));
        }
        line
    }
}

fn percentiles(latencies: &Latencies) -> String {
    let ms = |p: f64| latencies.percentile(p).as_secs_f64() * 1000.0;
    format!(
        "n={} p50_ms={:.2} p95_ms={:.2} p99_ms={:.2} max_ms={:.2}",
        latencies.len(),
        ms(50.0),
        ms(95.0),
        ms(99.0),
        ms(100.0)
    )
}

fn search_store(node: &Node, params: &Params, outcome: &mut Outcome) -> anyhow::Result<()> {
    let started = Instant::now();
    let query = params.query()?;
    let hits = node.reader().search(&query, None, PAGE, SEARCH_BUDGET)?;
    let latency = started.elapsed();
    let reread = Instant::now();
    for alert in &hits.alerts {
        node.reader().alert(alert.id)?;
    }
    outcome.reread.record(reread.elapsed());
    outcome.wrong += hits.alerts.iter().filter(|a| !params.matches(a)).count();
    outcome.record(latency, hits.alerts.len(), hits.partial);
    Ok(())
}

async fn measure(
    node: &Arc<Node>,
    memory_mb: usize,
    queries: &[(Kind, Vec<Params>)],
    warm_up: &[Params],
    work: &[Vec<Work>],
    pages: usize,
) -> anyhow::Result<()> {
    let mut ignored = Outcome::default();
    for params in warm_up {
        search_store(node, params, &mut ignored)?;
    }
    let mut in_store = Vec::new();
    for ((kind, list), work) in queries.iter().zip(work) {
        let (outcome, quiet) = quietly(|| async move {
            let mut outcome = Outcome::default();
            for params in list {
                search_store(node, params, &mut outcome)?;
            }
            Ok(outcome)
        })
        .await?;
        println!(
            "search memory_mb={memory_mb} path=store by={} {} {quiet}",
            kind.name(),
            outcome.line()
        );
        println!(
            "search memory_mb={memory_mb} path=store by={} {}",
            kind.name(),
            outcome.against(work)
        );
        in_store.push(outcome);
    }

    let server = Server::start(node.clone()).await?;
    for params in warm_up {
        server.search(params).await?;
    }
    for ((kind, list), store) in queries.iter().zip(&in_store) {
        let server = &server;
        let ((outcome, incident_alerts), quiet) = quietly(|| async move {
            let mut outcome = Outcome::default();
            let mut incident_alerts = Vec::with_capacity(list.len());
            for params in list {
                let (latency, answer) = server.search(params).await?;
                let rows = answer["alerts"].as_array().map_or(0, Vec::len);
                outcome.record(latency, rows, answer["partial"] == true);
                incident_alerts.push(alerts_in_incidents(&answer));
            }
            Ok((outcome, incident_alerts))
        })
        .await?;
        println!(
            "search memory_mb={memory_mb} path=http by={} {} {quiet}",
            kind.name(),
            outcome.line()
        );
        println!(
            "search memory_mb={memory_mb} path=http by={} {}",
            kind.name(),
            beyond_store(&outcome, store, &incident_alerts)
        );
    }
    list_pages(node, &server, memory_mb, pages).await?;
    server.stop().await;
    Ok(())
}

/// How many alerts the incidents of a search answer hold in all: the handler reads each
/// incident whole (alert ids, links and job ids included) to show its state.
fn alerts_in_incidents(answer: &Value) -> usize {
    answer["incidents"].as_array().map_or(0, |incidents| {
        incidents
            .iter()
            .map(|i| i["alert_count"].as_u64().unwrap_or_default() as usize)
            .sum()
    })
}

/// What the HTTP path adds to the same queries in the store: the difference per query, and
/// how it follows the size of the incidents the rows show (over the queries whose incidents
/// hold 2000 alerts or more).
fn beyond_store(http: &Outcome, store: &Outcome, incident_alerts: &[usize]) -> String {
    let mut extra = Latencies::default();
    let (mut heavy, mut heavy_extra, mut heavy_alerts) = (0, 0.0, 0);
    for ((h, s), &alerts) in http.each.iter().zip(&store.each).zip(incident_alerts) {
        let more = h.saturating_sub(*s);
        extra.record(more);
        if alerts >= 2000 {
            heavy += 1;
            heavy_extra += more.as_secs_f64();
            heavy_alerts += alerts;
        }
    }
    let mut sizes = Latencies::default();
    for &alerts in incident_alerts {
        sizes.record(Duration::from_micros(alerts as u64));
    }
    let ms = |l: &Latencies, p: f64| l.percentile(p).as_secs_f64() * 1000.0;
    format!(
        "beyond_store_p50_ms={:.2} beyond_store_p99_ms={:.2} incident_alerts_p50={} \
         incident_alerts_p99={} heavy_queries={heavy} us_per_incident_alert={:.2}",
        ms(&extra, 50.0),
        ms(&extra, 99.0),
        sizes.percentile(50.0).as_micros(),
        sizes.percentile(99.0).as_micros(),
        heavy_extra * 1e6 / heavy_alerts.max(1) as f64
    )
}

/// The incident list: the first page, pages at random cursors, open incidents.
async fn list_pages(
    node: &Node,
    server: &Server,
    memory_mb: usize,
    pages: usize,
) -> anyhow::Result<()> {
    let highest = node
        .reader()
        .incident_page(None, None, 1, 1, |_| true)?
        .0
        .first()
        .map_or(0, |i| i.id);
    let mut rng = Rng::new(hash(20, pages));
    let random: Vec<Option<u64>> = (0..pages)
        .map(|_| Some(1 + rng.below(highest.max(1) as usize) as u64))
        .collect();
    for _ in 0..WARM_UP {
        server.incidents(None, None).await?;
    }
    let runs = [
        ("first", None, vec![None; pages]),
        ("random_cursor", None, random),
        ("open_first", Some("open"), vec![None; pages]),
        // Every page of open incidents, following the cursor.
        ("open_walk", Some("open"), Vec::new()),
    ];
    for (name, state, cursors) in &runs {
        let (pages, quiet) = quietly(|| async move {
            let mut measured = ListPages::default();
            if cursors.is_empty() {
                let mut cursor = None;
                for _ in 0..pages {
                    let answer = measured.page(node, server, *state, cursor).await?;
                    cursor = answer["next_cursor"].as_str().and_then(|c| c.parse().ok());
                    if cursor.is_none() {
                        break;
                    }
                }
            }
            for cursor in cursors {
                measured.page(node, server, *state, *cursor).await?;
            }
            Ok(measured)
        })
        .await?;
        println!(
            "search memory_mb={memory_mb} path=http list={name} {} {quiet}",
            pages.line()
        );
    }
    Ok(())
}

/// Latencies of incident list pages, with their rows and the jobs they name.
#[derive(Default)]
struct ListPages {
    latencies: Latencies,
    rows: usize,
    /// Jobs named per page, as microseconds to reuse the percentiles.
    jobs: Latencies,
    /// Every page's latency and jobs, in order.
    each: Vec<Duration>,
    named: Vec<usize>,
}

impl ListPages {
    async fn page(
        &mut self,
        node: &Node,
        server: &Server,
        state: Option<&str>,
        cursor: Option<u64>,
    ) -> anyhow::Result<Value> {
        let (latency, answer) = server.incidents(state, cursor).await?;
        self.latencies.record(latency);
        let (rows, jobs) = jobs_named(node, &answer)?;
        self.rows += rows;
        self.jobs.record(Duration::from_micros(jobs as u64));
        self.each.push(latency);
        self.named.push(jobs);
        Ok(answer)
    }

    fn line(&self) -> String {
        let count = |p: f64| self.jobs.percentile(p).as_micros();
        // Time per job named, over the pages naming 1000 jobs or more.
        let (mut heavy, mut time, mut jobs) = (0, 0.0, 0);
        for (latency, named) in self.each.iter().zip(&self.named) {
            if *named >= 1000 {
                heavy += 1;
                time += latency.as_secs_f64();
                jobs += named;
            }
        }
        format!(
            "{} rows_per_page={:.1} jobs_per_page_p50={} jobs_per_page_p99={} \
             jobs_per_page_max={} heavy_pages={heavy} us_per_job={:.1}",
            percentiles(&self.latencies),
            self.rows as f64 / self.latencies.len().max(1) as f64,
            count(50.0),
            count(99.0),
            count(100.0),
            time * 1e6 / jobs.max(1) as f64
        )
    }
}

/// Other processes may use at most this many cores on average during a measurement...
const QUIET_CORES: f64 = 0.25;
/// ...or it is done again, up to this many times in all.
const ATTEMPTS: usize = 3;

/// Runs a measurement once the machine is idle, and again when other processes (a build)
/// used more than [`QUIET_CORES`] while it ran. Returns the last result with
/// `others_cores=… attempts=…`.
async fn quietly<T, F, Fut>(mut measurement: F) -> anyhow::Result<(T, String)>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        wait_until_idle(Duration::from_secs(300)).await;
        let cpu = CpuUse::now();
        let value = measurement().await?;
        let others = cpu.others_since();
        if others <= QUIET_CORES || attempt >= ATTEMPTS {
            return Ok((
                value,
                format!("others_cores={others:.2} attempts={attempt}"),
            ));
        }
        eprintln!("search: other processes used {others:.2} cores; measuring again");
    }
}

/// Rows on a page of the incident list, and the quarantine jobs their incidents name.
fn jobs_named(node: &Node, answer: &Value) -> anyhow::Result<(usize, usize)> {
    let items = answer["items"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mut jobs = 0;
    for item in items {
        let id = item["id"].as_u64().context("an incident without an id")?;
        jobs += node.reader().incident(id)?.map_or(0, |i| i.job_ids.len());
    }
    Ok((items.len(), jobs))
}

// ---------------------------------------------------------------------------------------
// The node and the API server.

/// Writes a configuration file naming `dir/data` with `memory_mb` of RocksDB memory and the
/// match condition, and starts the node from it.
async fn start_node(dir: &Path, memory_mb: usize) -> anyhow::Result<Arc<Node>> {
    let text = format!(
        "[node]\nid = 1\ndata_dir = {:?}\nlisten = \"127.0.0.1:0\"\nstore_memory_mb = {memory_mb}\n\n\
         [[match_conditions]]\nname = \"phish\"\nclassifications = [\"phish\"]\n\
         responses = [\"dry_run_quarantine\"]\n",
        dir.join("data").display().to_string()
    );
    let path = dir.join(format!("pullback-{memory_mb}.toml"));
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    let config = Config::load(&path)?;
    let backends = Backends::from_config(&config.mailboxes).map_err(anyhow::Error::msg)?;
    let parts = Parts {
        backends: Arc::new(backends),
        sources: Vec::new(),
    };
    Node::start(&config, parts).await
}

/// Starts the node again on the same data; the previous one's database may take a moment to
/// close (its last tasks end after `shutdown`), so opening is retried.
async fn restart_node(dir: &Path, memory_mb: usize) -> anyhow::Result<Arc<Node>> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match start_node(dir, memory_mb).await {
            Ok(node) => return Ok(node),
            Err(e) if Instant::now() < deadline && format!("{e:#}").contains("lock") => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Waits until the whole machine (this process's compactions included) used less than a
/// quarter of a core for two seconds, or `limit` passed; returns how long it waited.
async fn wait_until_idle(limit: Duration) -> Duration {
    let started = Instant::now();
    while started.elapsed() < limit {
        let before = machine_ticks();
        tokio::time::sleep(Duration::from_secs(2)).await;
        match (before, machine_ticks()) {
            // Clock ticks are 100 per second.
            (Some(a), Some(b)) if b - a < 50 => break,
            (None, _) | (_, None) => break,
            _ => {}
        }
    }
    started.elapsed()
}

struct Server {
    base: String,
    client: reqwest::Client,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Server {
    async fn start(node: Arc<Node>) -> anyhow::Result<Server> {
        let keys = vec![ApiKey {
            name: "bench".into(),
            role: Role::ReadOnly,
            sha256: hash_key(API_KEY),
        }];
        let app = pullback_api::router(AppState::new(node, keys));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await
        });
        let client = reqwest::Client::builder().no_proxy().build()?;
        Ok(Server {
            base,
            client,
            stop,
            task,
        })
    }

    /// Times one GET from sending it until its whole body arrived; fails unless it is 200.
    async fn get(&self, path: &str, query: &[(&str, String)]) -> anyhow::Result<(Duration, Value)> {
        let started = Instant::now();
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .query(query)
            .bearer_auth(API_KEY)
            .send()
            .await?;
        let status = response.status();
        let body = response.bytes().await?;
        let latency = started.elapsed();
        if !status.is_success() {
            anyhow::bail!(
                "GET {path} {query:?}: {status}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        Ok((latency, serde_json::from_slice(&body)?))
    }

    async fn search(&self, params: &Params) -> anyhow::Result<(Duration, Value)> {
        let mut query = params.0.clone();
        query.push(("limit", PAGE.to_string()));
        self.get("/api/v1/search", &query).await
    }

    async fn incidents(
        &self,
        state: Option<&str>,
        cursor: Option<u64>,
    ) -> anyhow::Result<(Duration, Value)> {
        let mut query = vec![("limit", PAGE.to_string())];
        if let Some(state) = state {
            query.push(("state", state.to_owned()));
        }
        if let Some(cursor) = cursor {
            query.push(("cursor", cursor.to_string()));
        }
        self.get("/api/v1/incidents", &query).await
    }

    async fn stop(self) {
        drop(self.client);
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

fn print_memory(node: &Node, memory_mb: usize, cpu: &CpuUse) {
    let parts: Vec<String> = node
        .reader()
        .memory_usage()
        .into_iter()
        .map(|(name, bytes)| format!("{name}_mb={:.1}", bytes as f64 / 1048576.0))
        .collect();
    println!(
        "search memory_mb={memory_mb} store_memory {} other_processes_cores={:.2}",
        parts.join(" "),
        cpu.others_since()
    );
}

/// CPU time used by the whole machine and by this process, to tell whether something else
/// ran during a measurement.
struct CpuUse {
    at: Instant,
    machine: u64,
    this: u64,
}

impl CpuUse {
    fn now() -> CpuUse {
        CpuUse {
            at: Instant::now(),
            machine: machine_ticks().unwrap_or_default(),
            this: process_ticks().unwrap_or_default(),
        }
    }

    /// Cores other processes kept busy on average since `self` (clock ticks of 1/100 s).
    fn others_since(&self) -> f64 {
        let now = CpuUse::now();
        let others = (now.machine - self.machine).saturating_sub(now.this - self.this);
        others as f64 / 100.0 / self.at.elapsed().as_secs_f64().max(0.001)
    }
}

/// Busy clock ticks of every CPU, from the first line of `/proc/stat`.
fn machine_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().unwrap_or_default())
        .collect();
    // user nice system idle iowait irq softirq steal: all but idle and iowait.
    Some(fields.iter().take(8).sum::<u64>() - fields.get(3)? - fields.get(4)?)
}

/// User and system clock ticks of this process.
fn process_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15; `after` starts at field 3.
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// The shape of the store's trees, read through a read-only handle (which takes no lock):
/// table files per level and table megabytes of each column family.
fn print_lsm(store: &Path, when: &str) {
    const FAMILIES: [&str; 4] = ["raft_log", "raft_meta", "state", "index"];
    let db = match rocksdb::DB::open_cf_for_read_only(
        &rocksdb::Options::default(),
        store,
        FAMILIES,
        false,
    ) {
        Ok(db) => db,
        Err(e) => {
            println!("search lsm when={when} unreadable: {e}");
            return;
        }
    };
    for name in FAMILIES {
        let Some(cf) = db.cf_handle(name) else {
            continue;
        };
        let int = |property: &str| {
            db.property_int_value_cf(&cf, property)
                .ok()
                .flatten()
                .unwrap_or_default()
        };
        let files: Vec<String> = (0..7)
            .map(|level| int(&format!("rocksdb.num-files-at-level{level}")).to_string())
            .collect();
        println!(
            "search lsm when={when} cf={name} files_per_level={} sst_mb={:.0} keys={}",
            files.join(","),
            megabytes(int("rocksdb.total-sst-files-size")),
            int("rocksdb.estimate-num-keys"),
        );
    }
}

fn folder_size(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(m) if m.is_dir() => folder_size(&entry.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

fn megabytes(bytes: u64) -> f64 {
    bytes as f64 / 1_048_576.0
}

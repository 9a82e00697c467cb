//! The check at the end of every fault test: after the nodes stopped, read each node's store
//! and the mailboxes, and list what went wrong: alerts lost or stored twice, messages moved
//! twice or not at all, nodes that disagree.
//!
//! Problems come back as sentences rather than a first failed assertion, so that one run shows
//! everything a fault broke; an empty list means the history is fine.

#![allow(dead_code)]

use pullback_domain::{
    Alert, AlertKind, Checkpoint, Incident, JobAction, MessageId, QuarantineJob, RecipientStatus,
};
use pullback_mailbox::testing::Dovecot;
use pullback_store::{IncidentFilter, LogId};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::PathBuf;

/// The folder the IMAP backend moves quarantined mail to: the `quarantine_folder` default of a
/// `[[mailboxes]]` table, which the test configurations keep.
pub const QUARANTINE_FOLDER: &str = "Quarantine";

/// The folder mail is delivered to and pulled from.
pub const SOURCE_FOLDER: &str = "INBOX";

/// How many differing records to describe per pair of nodes before summarising the rest.
const MAX_DIFFERENCES: usize = 10;

/// How much of a JSON value to quote in a problem.
const MAX_QUOTE_CHARS: usize = 120;

/// One node's database: the folder `pullback_store::open` takes, under the node's data dir.
#[derive(Clone, Debug)]
pub struct NodeDb {
    pub node: u64,
    pub path: PathBuf,
}

impl NodeDb {
    pub fn new(node: u64, path: impl Into<PathBuf>) -> NodeDb {
        NodeDb {
            node,
            path: path.into(),
        }
    }
}

/// An event a source served, which must become exactly one alert on every node. The store
/// deduplicates on the source's name and the event's dedup key, so that is what identifies it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ExpectedAlert {
    pub source: String,
    pub dedup_key: String,
}

impl ExpectedAlert {
    pub fn new(source: &str, dedup_key: &str) -> ExpectedAlert {
        ExpectedAlert {
            source: source.to_owned(),
            dedup_key: dedup_key.to_owned(),
        }
    }

    /// The alert a TAP event served to source `source` must become. The key comes from the
    /// real parser, so the test does not restate how TAP keys are built (`id` with `GUID`).
    ///
    /// # Panics
    /// When the parser refuses the event: such an event never becomes an alert.
    pub fn from_tap_event(source: &str, kind: AlertKind, event: &Value) -> ExpectedAlert {
        let draft = pullback_tap::parse_event(kind, event)
            .unwrap_or_else(|e| panic!("the served event cannot be parsed: {e}"));
        ExpectedAlert::new(source, &draft.dedup_key)
    }
}

/// A message that must end up in a user's quarantine folder, once, and out of their inbox.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ExpectedQuarantine {
    /// The Dovecot user, which is the recipient's address.
    pub user: String,
    /// With or without angle brackets.
    pub message_id: String,
}

impl ExpectedQuarantine {
    pub fn new(user: &str, message_id: &str) -> ExpectedQuarantine {
        ExpectedQuarantine {
            user: user.to_owned(),
            message_id: message_id.to_owned(),
        }
    }
}

/// What a fault test put in and expects to come out.
#[derive(Clone, Debug, Default)]
pub struct Expected {
    pub alerts: Vec<ExpectedAlert>,
    pub quarantined: Vec<ExpectedQuarantine>,
}

/// Checks the stores of `nodes` and, when given, the mailboxes of `dovecot`. The nodes must
/// be stopped: RocksDB lets one process open a database at a time.
pub fn check(nodes: &[NodeDb], expected: &Expected, dovecot: Option<&Dovecot>) -> Vec<String> {
    let mut problems = Vec::new();
    let mut states = Vec::new();
    for node in nodes {
        match NodeState::read(node) {
            Ok(state) => states.push(state),
            Err(problem) => problems.push(problem),
        }
    }
    problems.extend(check_states(&states, expected));
    match dovecot {
        Some(dovecot) => problems.extend(check_mailboxes(dovecot, &expected.quarantined)),
        None if !expected.quarantined.is_empty() => {
            problems.push("quarantines are expected but no Dovecot was given to check".into());
        }
        None => {}
    }
    problems
}

/// What one node's store holds, read after the node stopped.
#[derive(Clone, Debug)]
pub struct NodeState {
    pub node: u64,
    pub applied: Option<LogId>,
    pub alerts: Vec<Alert>,
    pub incidents: Vec<Incident>,
    pub jobs: Vec<QuarantineJob>,
    pub checkpoints: Vec<(String, Checkpoint)>,
}

impl NodeState {
    /// Opens the node's store, reads it through `Reader` and closes it again.
    pub fn read(db: &NodeDb) -> Result<NodeState, String> {
        let unreadable = |e: &dyn fmt::Display| format!("unreadable: node {}: {e}", db.node);
        // Opening creates a missing database, which would pass for a node that lost
        // everything; a wrong path is the test's mistake and is said so.
        if !db.path.join("CURRENT").is_file() {
            return Err(unreadable(&format!("no database at {}", db.path.display())));
        }
        let (_log, _state_machine, reader) =
            pullback_store::open(&db.path).map_err(|e| unreadable(&e))?;
        Ok(NodeState {
            node: db.node,
            applied: reader.applied().map_err(|e| unreadable(&e))?,
            alerts: reader.alerts().map_err(|e| unreadable(&e))?,
            incidents: reader
                .incidents(&IncidentFilter::default())
                .map_err(|e| unreadable(&e))?,
            jobs: reader.jobs().map_err(|e| unreadable(&e))?,
            checkpoints: reader.checkpoints().map_err(|e| unreadable(&e))?,
        })
    }

    /// Every replicated record by name, as JSON, for comparing nodes.
    fn records(&self) -> BTreeMap<Record, Value> {
        let mut records = BTreeMap::new();
        for alert in &self.alerts {
            records.insert(Record::Alert(alert.id), json(alert));
        }
        for incident in &self.incidents {
            records.insert(Record::Incident(incident.id), json(incident));
        }
        for job in &self.jobs {
            records.insert(Record::Job(job.id), json(job));
        }
        for (source, checkpoint) in &self.checkpoints {
            records.insert(Record::Checkpoint(source.clone()), json(checkpoint));
        }
        records
    }
}

fn json<T: serde::Serialize>(record: &T) -> Value {
    serde_json::to_value(record).expect("a stored record serialises")
}

/// The stores' part of [`check`]: lost and duplicated alerts, duplicated quarantines,
/// quarantines without a record, lagging and diverging nodes.
pub fn check_states(states: &[NodeState], expected: &Expected) -> Vec<String> {
    // The same problem on several nodes (an alert lost before it was replicated, say) is
    // one problem; it is reported once, with the nodes that have it.
    let mut per_node: Vec<(String, Vec<u64>)> = Vec::new();
    for state in states {
        for problem in node_problems(state, expected) {
            match per_node.iter_mut().find(|(p, _)| *p == problem) {
                Some((_, nodes)) => nodes.push(state.node),
                None => per_node.push((problem, vec![state.node])),
            }
        }
    }
    let mut problems: Vec<String> = per_node
        .into_iter()
        .map(|(problem, nodes)| format!("{problem} (on {})", node_list(&nodes)))
        .collect();
    problems.extend(divergence(states));
    problems
}

/// What is wrong within one node's state, without saying which node.
fn node_problems(state: &NodeState, expected: &Expected) -> Vec<String> {
    let mut problems = Vec::new();

    let mut alerts_by_event: BTreeMap<(&str, &str), Vec<u64>> = BTreeMap::new();
    for alert in &state.alerts {
        let event = (alert.source.as_str(), alert.body.dedup_key.as_str());
        alerts_by_event.entry(event).or_default().push(alert.id);
    }
    for wanted in &expected.alerts {
        let event = (wanted.source.as_str(), wanted.dedup_key.as_str());
        if !alerts_by_event.contains_key(&event) {
            problems.push(format!(
                "lost: no alert for event `{}` of source `{}`",
                wanted.dedup_key, wanted.source
            ));
        }
    }
    for ((source, key), ids) in &alerts_by_event {
        if ids.len() > 1 {
            problems.push(format!(
                "duplicated: alerts {} are all event `{key}` of source `{source}`",
                id_list(ids)
            ));
        }
    }

    problems.extend(job_duplicates(&state.jobs));
    for wanted in &expected.quarantined {
        if !recorded_as_quarantined(&state.jobs, wanted) {
            problems.push(format!(
                "unrecorded: no job records {} of `{}` as quarantined",
                wanted.message_id, wanted.user
            ));
        }
    }
    problems
}

/// Recipients listed twice in one job, and one alert's recipient in several quarantine jobs.
fn job_duplicates(jobs: &[QuarantineJob]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut jobs_by_target: BTreeMap<(u64, &str), Vec<u64>> = BTreeMap::new();
    for job in jobs {
        let mut statuses: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for result in &job.results {
            statuses
                .entry(result.recipient.as_str())
                .or_default()
                .push(result.status.as_str());
        }
        for (recipient, statuses) in &statuses {
            if statuses.len() > 1 {
                problems.push(format!(
                    "duplicated: job {} lists `{recipient}` {} times ({})",
                    job.id,
                    statuses.len(),
                    statuses.join(", ")
                ));
            }
        }
        // A dry run moves nothing, so it may well sit beside the real job.
        if job.action == JobAction::Quarantine && !job.dry_run {
            for recipient in statuses.keys() {
                jobs_by_target
                    .entry((job.alert_id, recipient))
                    .or_default()
                    .push(job.id);
            }
        }
    }
    for ((alert, recipient), ids) in &jobs_by_target {
        if ids.len() > 1 {
            problems.push(format!(
                "duplicated: quarantine jobs {} all act on alert {alert} for `{recipient}`",
                id_list(ids)
            ));
        }
    }
    problems
}

/// Whether some real quarantine job of this message ended, for this user, with the message in
/// quarantine: the store must agree with the mailbox.
fn recorded_as_quarantined(jobs: &[QuarantineJob], wanted: &ExpectedQuarantine) -> bool {
    let message = MessageId::parse(&wanted.message_id);
    jobs.iter()
        .filter(|job| job.action == JobAction::Quarantine && !job.dry_run)
        .filter(|job| job.message_id.is_some() && job.message_id == message)
        .flat_map(|job| &job.results)
        .any(|result| {
            result.recipient.eq_ignore_ascii_case(&wanted.user)
                && matches!(
                    result.status,
                    RecipientStatus::Quarantined | RecipientStatus::AlreadyInDestination
                )
        })
}

/// Nodes that applied different amounts of the log, or that applied the same log and reached
/// different states.
fn divergence(states: &[NodeState]) -> Vec<String> {
    let Some(first) = states.first() else {
        return Vec::new();
    };
    let applied: BTreeSet<Option<u64>> = states
        .iter()
        .map(|s| s.applied.map(|id| id.index))
        .collect();
    if applied.len() > 1 {
        // Records of nodes at different points of the log differ for that reason alone, so
        // comparing them would bury the one finding that matters.
        let positions: Vec<String> = states
            .iter()
            .map(|s| match &s.applied {
                Some(id) => format!("node {} at index {}", s.node, id.index),
                None => format!("node {} at none", s.node),
            })
            .collect();
        return vec![format!(
            "lagging: the nodes applied different parts of the log ({}); records not compared",
            positions.join(", ")
        )];
    }

    let reference = first.records();
    let mut problems = Vec::new();
    for other in &states[1..] {
        let differences = compare(first.node, &reference, other.node, &other.records());
        let extra = differences.len().saturating_sub(MAX_DIFFERENCES);
        problems.extend(differences.into_iter().take(MAX_DIFFERENCES));
        if extra > 0 {
            problems.push(format!(
                "diverging: {extra} more records differ between node {} and node {}",
                first.node, other.node
            ));
        }
    }
    problems
}

/// A replicated record, named as a problem names it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Record {
    Alert(u64),
    Incident(u64),
    Job(u64),
    Checkpoint(String),
}

impl fmt::Display for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Record::Alert(id) => write!(f, "alert {id}"),
            Record::Incident(id) => write!(f, "incident {id}"),
            Record::Job(id) => write!(f, "job {id}"),
            Record::Checkpoint(source) => write!(f, "the checkpoint of `{source}`"),
        }
    }
}

fn compare(
    a: u64,
    left: &BTreeMap<Record, Value>,
    b: u64,
    right: &BTreeMap<Record, Value>,
) -> Vec<String> {
    let names: BTreeSet<&Record> = left.keys().chain(right.keys()).collect();
    let mut problems = Vec::new();
    for name in names {
        let problem = match (left.get(name), right.get(name)) {
            (Some(_), None) => format!("diverging: {name} is on node {a} but not on node {b}"),
            (None, Some(_)) => format!("diverging: {name} is on node {b} but not on node {a}"),
            (Some(l), Some(r)) => match first_difference(String::new(), l, r) {
                Some((path, l, r)) => format!(
                    "diverging: {name} differs at `{path}`: node {a} has {l}, node {b} has {r}"
                ),
                None => continue,
            },
            (None, None) => continue,
        };
        problems.push(problem);
    }
    problems
}

/// The JSON pointer of the first place two values differ, with what each side has there.
fn first_difference(path: String, left: &Value, right: &Value) -> Option<(String, String, String)> {
    if left == right {
        return None;
    }
    match (left, right) {
        (Value::Object(l), Value::Object(r)) => {
            let keys: BTreeSet<&String> = l.keys().chain(r.keys()).collect();
            keys.into_iter().find_map(|key| {
                let here = format!("{path}/{key}");
                match (l.get(key), r.get(key)) {
                    (Some(l), Some(r)) => first_difference(here, l, r),
                    (l, r) => Some((here, quote(l), quote(r))),
                }
            })
        }
        (Value::Array(l), Value::Array(r)) => {
            let inner = l
                .iter()
                .zip(r)
                .enumerate()
                .find_map(|(i, (l, r))| first_difference(format!("{path}/{i}"), l, r));
            inner.or_else(|| {
                let count = |n: usize| format!("{n} items");
                Some((path, count(l.len()), count(r.len())))
            })
        }
        _ => Some((path, quote(Some(left)), quote(Some(right)))),
    }
}

fn quote(value: Option<&Value>) -> String {
    let Some(value) = value else {
        return "nothing".into();
    };
    let text = value.to_string();
    match text.char_indices().nth(MAX_QUOTE_CHARS) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text,
    }
}

/// The mailboxes' part of [`check`]: each expected message is in the user's quarantine
/// folder exactly once and no longer in their inbox, and nothing else was quarantined for
/// the users named.
pub fn check_mailboxes(dovecot: &Dovecot, expected: &[ExpectedQuarantine]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut wanted: BTreeMap<&str, BTreeSet<MessageId>> = BTreeMap::new();
    for item in expected {
        match MessageId::parse(&item.message_id) {
            Some(id) => {
                wanted.entry(item.user.as_str()).or_default().insert(id);
            }
            None => problems.push(format!(
                "mailbox: the expectation for `{}` has no usable Message-ID ({:?})",
                item.user, item.message_id
            )),
        }
    }

    for (user, ids) in &wanted {
        let quarantined = message_ids(dovecot, user, QUARANTINE_FOLDER);
        let inbox = message_ids(dovecot, user, SOURCE_FOLDER);
        let copies = |folder: &[Option<MessageId>], id: &MessageId| {
            folder.iter().filter(|m| m.as_ref() == Some(id)).count()
        };
        for id in ids {
            match copies(&quarantined, id) {
                0 => problems.push(format!(
                    "mailbox: {id} is missing from {QUARANTINE_FOLDER} of `{user}`"
                )),
                1 => {}
                n => problems.push(format!(
                    "mailbox: {id} is {n} times in {QUARANTINE_FOLDER} of `{user}`"
                )),
            }
            let left = copies(&inbox, id);
            if left > 0 {
                problems.push(format!(
                    "mailbox: {id} is still in {SOURCE_FOLDER} of `{user}` ({left} left)"
                ));
            }
        }
        let unexpected: BTreeSet<String> = quarantined
            .iter()
            .filter(|m| m.as_ref().is_none_or(|m| !ids.contains(m)))
            .map(|m| {
                m.as_ref()
                    .map_or("a message without Message-ID".into(), |m| m.to_string())
            })
            .collect();
        for message in unexpected {
            problems.push(format!(
                "mailbox: {QUARANTINE_FOLDER} of `{user}` holds {message}, which no \
                 expectation names"
            ));
        }
    }
    problems
}

/// The Message-IDs of a folder in normal form; `None` for a message without one.
fn message_ids(dovecot: &Dovecot, user: &str, folder: &str) -> Vec<Option<MessageId>> {
    dovecot
        .message_ids(user, folder)
        .iter()
        .map(|raw| MessageId::parse(raw))
        .collect()
}

fn node_list(nodes: &[u64]) -> String {
    let noun = if nodes.len() == 1 { "node" } else { "nodes" };
    format!("{noun} {}", id_list(nodes))
}

fn id_list(ids: &[u64]) -> String {
    let ids: Vec<String> = ids.iter().map(u64::to_string).collect();
    ids.join(", ")
}

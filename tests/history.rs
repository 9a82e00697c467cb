//! The history check the cluster tests end with: it finds each kind of fault it is meant to
//! find, names the nodes that have it, and finds nothing in a clean history.
//!
//! States are built by hand, so each fault is planted exactly; the store and the mailboxes
//! are real, to show the check reads them as the fault tests will.

mod support;

use pullback_domain::{
    Alert, AlertDraft, AlertKind, Checkpoint, Incident, IncidentState, JobAction,
    MessageFingerprint, MessageId, QuarantineJob, RecipientResult, RecipientStatus, Timestamp,
};
use pullback_mailbox::headers::MessageHeaders;
use pullback_mailbox::testing::Dovecot;
use pullback_mailbox::{ImapBackend, MailboxBackend, MessageTarget};
use pullback_store::LogId;
use serde_json::json;
use support::history::{
    Expected, ExpectedAlert, ExpectedQuarantine, NodeDb, NodeState, SOURCE_FOLDER, check,
    check_mailboxes, check_states,
};
use support::shared_mail;

const ALICE: &str = "alice@corp.test";
const BOB: &str = "bob@corp.test";
const MESSAGE: &str = "<invoice-42@evil.test>";

fn at() -> Timestamp {
    "2026-01-02T03:04:05Z".parse().expect("a timestamp")
}

fn applied(index: u64) -> Option<LogId> {
    Some(LogId {
        index,
        ..LogId::default()
    })
}

fn alert(id: u64, dedup_key: &str) -> Alert {
    Alert {
        id,
        source: "tap".into(),
        received_at: at(),
        incident_id: Some(1),
        matched: vec!["tap-active-threats".into()],
        body: AlertDraft {
            kind: AlertKind::MessageDelivered,
            dedup_key: dedup_key.into(),
            time: at(),
            message_id: MessageId::parse(MESSAGE),
            subject: Some("Invoice".into()),
            sender: Some("billing@evil.test".into()),
            recipients: vec![ALICE.into(), BOB.into()],
            threats: Vec::new(),
            notes: Vec::new(),
            link: None,
            analysis: None,
            raw: json!({ "id": dedup_key }),
        },
    }
}

fn quarantined(recipient: &str) -> RecipientResult {
    RecipientResult {
        status: RecipientStatus::Quarantined,
        attempts: 1,
        term: 1,
        ..RecipientResult::pending(recipient.into())
    }
}

fn job(id: u64, alert_id: u64, recipients: &[&str]) -> QuarantineJob {
    QuarantineJob {
        id,
        incident_id: 1,
        alert_id,
        action: JobAction::Quarantine,
        message_id: MessageId::parse(MESSAGE),
        fingerprint: MessageFingerprint::default(),
        dry_run: false,
        removal: Default::default(),
        created_at: at(),
        requested_by: "tap-active-threats".into(),
        results: recipients.iter().map(|r| quarantined(r)).collect(),
    }
}

/// A node after a clean run: two alerts about one message, one incident, one job that
/// quarantined it for both recipients.
fn clean(node: u64) -> NodeState {
    NodeState {
        node,
        applied: applied(7),
        alerts: vec![alert(1, "id:a"), alert(2, "id:b")],
        incidents: vec![Incident {
            id: 1,
            title: "Invoice".into(),
            state: IncidentState::Open,
            created_at: at(),
            updated_at: at(),
            links: Vec::new(),
            alert_ids: vec![1, 2],
            job_ids: vec![1],
            sources: vec!["tap".into()],
            classifications: vec!["phish".into()],
            comments: Vec::new(),
        }],
        jobs: vec![job(1, 1, &[ALICE, BOB])],
        checkpoints: vec![(
            "tap".into(),
            Checkpoint {
                accepted: 2,
                ..Checkpoint::default()
            },
        )],
    }
}

fn expected() -> Expected {
    Expected {
        alerts: vec![
            ExpectedAlert::new("tap", "id:a"),
            ExpectedAlert::new("tap", "id:b"),
        ],
        quarantined: vec![
            ExpectedQuarantine::new(ALICE, MESSAGE),
            ExpectedQuarantine::new(BOB, MESSAGE),
        ],
    }
}

/// Plants a fault in two clean nodes and compares the problems found with `problems`.
fn check_fault(fault: fn(&mut [NodeState]), problems: &[&str]) {
    let mut states = vec![clean(1), clean(2)];
    fault(&mut states);
    assert_eq!(check_states(&states, &expected()), problems);
}

#[test]
fn a_clean_history_has_no_problems() {
    check_fault(|_| {}, &[]);
}

#[test]
fn lost_and_duplicated_alerts_are_found() {
    check_fault(
        |states| states[1].alerts.retain(|a| a.id != 2),
        &[
            "lost: no alert for event `id:b` of source `tap` (on node 2)",
            "diverging: alert 2 is on node 1 but not on node 2",
        ],
    );
    check_fault(
        |states| {
            states
                .iter_mut()
                .for_each(|s| s.alerts.push(alert(3, "id:a")))
        },
        &["duplicated: alerts 1, 3 are all event `id:a` of source `tap` (on nodes 1, 2)"],
    );
}

#[test]
fn duplicated_quarantines_are_found() {
    check_fault(
        |states| {
            for state in states {
                state.jobs[0].results.push(quarantined(ALICE));
            }
        },
        &[
            "duplicated: job 1 lists `alice@corp.test` 2 times (quarantined, quarantined) \
           (on nodes 1, 2)",
        ],
    );
    check_fault(
        |states| {
            states
                .iter_mut()
                .for_each(|s| s.jobs.push(job(2, 1, &[BOB])))
        },
        &[
            "duplicated: quarantine jobs 1, 2 all act on alert 1 for `bob@corp.test` \
           (on nodes 1, 2)",
        ],
    );
    // A dry run beside the real job moves nothing.
    check_fault(
        |states| {
            for state in states {
                state.jobs.push(QuarantineJob {
                    dry_run: true,
                    ..job(2, 1, &[BOB])
                });
            }
        },
        &[],
    );
}

#[test]
fn diverging_and_lagging_nodes_are_found() {
    check_fault(
        |states| states[1].jobs[0].results[1].status = RecipientStatus::Failed,
        &[
            "unrecorded: no job records <invoice-42@evil.test> of `bob@corp.test` as \
             quarantined (on node 2)",
            "diverging: job 1 differs at `/results/1/status`: node 1 has \"quarantined\", \
             node 2 has \"failed\"",
        ],
    );
    check_fault(
        |states| states[1].checkpoints[0].1.accepted = 3,
        &[
            "diverging: the checkpoint of `tap` differs at `/accepted`: node 1 has 2, node 2 \
           has 3",
        ],
    );
    check_fault(
        |states| states[0].incidents[0].alert_ids.push(9),
        &[
            "diverging: incident 1 differs at `/alert_ids`: node 1 has 3 items, node 2 has 2 \
           items",
        ],
    );
    check_fault(
        |states| {
            states[1].applied = applied(5);
            states[1].alerts.pop();
        },
        &[
            "lost: no alert for event `id:b` of source `tap` (on node 2)",
            "lagging: the nodes applied different parts of the log (node 1 at index 7, node 2 \
             at index 5); records not compared",
        ],
    );
}

#[test]
fn stores_are_read_from_disk_and_a_wrong_path_is_reported() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let db = dir.path().join("node/db");
    drop(pullback_store::open(&db).expect("create a store"));
    let nodes = [
        NodeDb::new(1, &db),
        NodeDb::new(2, dir.path().join("missing/db")),
    ];
    let expected = Expected {
        alerts: vec![ExpectedAlert::new("tap", "id:a")],
        quarantined: Vec::new(),
    };

    let problems = check(&nodes, &expected, None);
    assert_eq!(problems.len(), 2, "{problems:#?}");
    assert!(
        problems[0].starts_with("unreadable: node 2: no database at "),
        "{problems:#?}"
    );
    assert_eq!(
        problems[1],
        "lost: no alert for event `id:a` of source `tap` (on node 1)"
    );
    let state = NodeState::read(&nodes[0]).expect("read the store");
    assert_eq!(state.applied, None);
    assert!(state.alerts.is_empty() && state.jobs.is_empty());
}

/// Delivers `message` to the user's inbox and has the real IMAP backend pull every copy of it
/// into quarantine, as a worker would.
async fn deliver_and_quarantine(dovecot: &Dovecot, user: &str, message: &[u8], copies: usize) {
    for _ in 0..copies {
        dovecot.deliver(user, SOURCE_FOLDER, message);
    }
    let backend = ImapBackend::new(dovecot.imap_config()).expect("an IMAP backend");
    let headers = MessageHeaders::parse(message);
    let target = MessageTarget::new(
        headers.message_id.expect("a Message-ID"),
        MessageFingerprint::default(),
    );
    let outcome = backend.quarantine(user, &target).await;
    assert_eq!(outcome.status, RecipientStatus::Quarantined, "{outcome:?}");
}

#[tokio::test]
async fn mailboxes_must_hold_each_quarantined_message_once() {
    let carol = "carol@corp.test";
    let dovecot = Dovecot::start(&[ALICE, BOB, carol]);
    let phish = shared_mail("phish/sample-1006.eml");
    let other = shared_mail("phish/sample-1086.eml");
    let id = |message: &[u8]| {
        let headers = MessageHeaders::parse(message);
        headers.message_id.expect("a Message-ID").bracketed()
    };
    deliver_and_quarantine(&dovecot, ALICE, &phish, 1).await;
    deliver_and_quarantine(&dovecot, BOB, &phish, 2).await;
    dovecot.deliver(BOB, SOURCE_FOLDER, &phish);
    deliver_and_quarantine(&dovecot, carol, &other, 1).await;
    let expected: Vec<ExpectedQuarantine> = [ALICE, BOB, carol]
        .iter()
        .map(|user| ExpectedQuarantine::new(user, &id(&phish)))
        .collect();

    let problems = check_mailboxes(&dovecot, &expected);
    let (phish, other) = (id(&phish), id(&other));
    assert_eq!(
        problems,
        [
            format!("mailbox: {phish} is 2 times in Quarantine of `{BOB}`"),
            format!("mailbox: {phish} is still in INBOX of `{BOB}` (1 left)"),
            format!("mailbox: {phish} is missing from Quarantine of `{carol}`"),
            format!("mailbox: Quarantine of `{carol}` holds {other}, which no expectation names"),
        ]
    );
    let without_dovecot = check(
        &[],
        &Expected {
            alerts: Vec::new(),
            quarantined: expected,
        },
        None,
    );
    assert_eq!(
        without_dovecot,
        ["quarantines are expected but no Dovecot was given to check"]
    );
}

//! The state machine through openraft's own interface, on a real RocksDB: deduplication,
//! grouping, jobs, term fencing, restore, durability across a reopen, and snapshots.

use chrono::Utc;
use openraft::storage::{RaftLogStorage, RaftStateMachine};
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, RaftSnapshotBuilder};
use pullback_domain::{
    AlertDraft, AlertKind, Command, CommandResponse, MatchCondition, MessageId, RecipientOutcome,
    RecipientStatus, Response, Threat, ThreatKind,
};
use pullback_store::{IncidentFilter, Reader, StateMachine, TypeConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Harness {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    sm: StateMachine,
    reader: Reader,
    index: u64,
}

impl Harness {
    fn new() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let (_log, sm, reader) = pullback_store::open(&path).unwrap();
        Harness {
            _dir: dir,
            path,
            sm,
            reader,
            index: 0,
        }
    }

    /// The next log entry, appended by node 1 in `term`.
    fn next_entry(&mut self, term: u64, payload: EntryPayload<TypeConfig>) -> Entry<TypeConfig> {
        self.index += 1;
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(term, 1), self.index),
            payload,
        }
    }

    async fn apply_in_term(&mut self, term: u64, command: Command) -> CommandResponse {
        let entry = self.next_entry(term, EntryPayload::Normal(command));
        self.sm.apply(vec![entry]).await.unwrap().remove(0)
    }

    async fn apply(&mut self, command: Command) -> CommandResponse {
        self.apply_in_term(1, command).await
    }
}

fn draft(id: &str, message_id: &str, recipients: &[&str], classification: &str) -> AlertDraft {
    AlertDraft {
        kind: AlertKind::MessageDelivered,
        dedup_key: format!("id:{id}"),
        time: Utc::now(),
        message_id: MessageId::parse(message_id),
        subject: Some("Invoice".into()),
        sender: Some("bad@evil.zz".into()),
        recipients: recipients.iter().map(|r| r.to_string()).collect(),
        threats: vec![Threat {
            id: Some(format!("threat-{message_id}")),
            kind: Some(ThreatKind::Url),
            value: Some("https://evil.zz/x".into()),
            hostname: Some("evil.zz".into()),
            classification: Some(classification.into()),
            status: Some("active".into()),
            ..Threat::default()
        }],
        notes: vec![],
        link: None,
        analysis: None,
        raw: serde_json::json!({ "id": id }),
    }
}

fn ingest(drafts: Vec<AlertDraft>) -> Command {
    Command::IngestAlerts {
        source: "tap".into(),
        at: Utc::now(),
        drafts,
        rejected: vec![],
        checkpoint: None,
    }
}

fn quarantine_phish() -> Command {
    Command::PutMatchCondition {
        condition: MatchCondition {
            name: "phish".into(),
            enabled: true,
            priority: 0,
            sources: vec!["tap".into()],
            kinds: vec![],
            classifications: vec!["phish".into()],
            threat_statuses: vec![],
            threat_types: vec![],
            recipient_domains: vec![],
            exclude_recipients: vec!["soc@x".into()],
            exclude_senders: vec![],
            recipient_groups: vec![],
            exclude_recipient_groups: vec![],
            recipient_attributes: vec![],
            recipient_object_classes: vec![],
            responses: vec![Response::Quarantine],
            directory_actions: vec![],
            stop: false,
        },
    }
}

fn outcome(recipient: &str, status: RecipientStatus) -> RecipientOutcome {
    RecipientOutcome {
        recipient: recipient.into(),
        status,
        details: String::new(),
        is_read: None,
    }
}

#[tokio::test]
async fn repeats_are_dropped_and_one_message_makes_one_incident_and_one_pull_per_recipient() {
    let mut h = Harness::new();
    h.apply(quarantine_phish()).await;
    let first = h
        .apply(ingest(vec![
            draft("e1", "<m1@x>", &["a@x"], "phish"),
            draft("e2", "<m1@x>", &["b@x", "soc@x"], "phish"),
            draft("e3", "<m2@x>", &["a@x"], "spam"),
        ]))
        .await;
    assert_eq!(first.alerts.len(), 3);
    assert_eq!(first.incidents.len(), 1, "the spam alert matches nothing");
    assert_eq!(first.jobs.len(), 2);

    // The same events again (an overlapping window) and a click on the same message.
    let mut click = draft("c1", "m1@x", &["a@x"], "phish");
    click.kind = AlertKind::ClickPermitted;
    let again = h
        .apply(ingest(vec![
            draft("e1", "<m1@x>", &["a@x"], "phish"),
            click,
        ]))
        .await;
    assert_eq!(again.duplicates, 1);
    assert_eq!(again.alerts.len(), 1, "the click is new");
    assert!(again.jobs.is_empty(), "alice's copy is already planned");

    let incidents = h.reader.incidents(&IncidentFilter::default()).unwrap();
    assert_eq!(incidents.len(), 1);
    assert_eq!(incidents[0].alert_ids.len(), 3);
    let recipients: Vec<String> = h
        .reader
        .jobs()
        .unwrap()
        .iter()
        .flat_map(|j| j.results.iter().map(|r| r.recipient.clone()))
        .collect();
    assert_eq!(recipients, ["a@x", "b@x"], "soc@x is excluded");
    assert_eq!(h.reader.queued_jobs().unwrap().len(), 2);
    let by_id = h
        .reader
        .alerts_by_message_id(&MessageId::parse("m1@x").unwrap())
        .unwrap();
    assert_eq!(by_id.len(), 3);
}

#[tokio::test]
async fn outcomes_from_an_older_term_are_refused_and_abandoned_claims_are_retaken() {
    let mut h = Harness::new();
    h.apply(quarantine_phish()).await;
    h.apply(ingest(vec![draft(
        "e1",
        "<m1@x>",
        &["a@x", "b@x"],
        "phish",
    )]))
    .await;
    let claim = |term| Command::ClaimRecipients {
        job_id: 1,
        recipients: vec!["a@x".into(), "b@x".into()],
        term,
        at: Utc::now(),
    };
    assert!(h.apply_in_term(1, claim(1)).await.refused.is_none());

    // A new leader (term 2) takes over; the old leader's late report is fenced off.
    let stale = Command::RecordOutcomes {
        job_id: 1,
        outcomes: vec![outcome("a@x", RecipientStatus::Quarantined)],
        term: 1,
        at: Utc::now(),
    };
    let refused = h.apply_in_term(2, stale).await.refused.expect("refused");
    assert!(refused.contains("fenced off"), "{refused}");
    assert!(h.apply_in_term(2, claim(2)).await.refused.is_none());
    let job = h.reader.job(1).unwrap().unwrap();
    assert!(
        job.results.iter().all(|r| r.term == 2 && r.attempts == 2),
        "{job:?}"
    );

    let report = Command::RecordOutcomes {
        job_id: 1,
        outcomes: vec![
            outcome("a@x", RecipientStatus::AlreadyInDestination),
            outcome("b@x", RecipientStatus::Quarantined),
        ],
        term: 2,
        at: Utc::now(),
    };
    assert!(h.apply_in_term(2, report).await.refused.is_none());
    assert!(h.reader.queued_jobs().unwrap().is_empty());

    // Restore creates a job for both; its success marks the quarantine undone.
    let restore = Command::RequestRestore {
        job_id: 1,
        recipients: None,
        requested_by: "analyst".into(),
        at: Utc::now(),
    };
    let created = h.apply_in_term(2, restore.clone()).await;
    let restore_job = created.jobs[0];
    h.apply_in_term(
        2,
        Command::ClaimRecipients {
            job_id: restore_job,
            recipients: vec!["a@x".into(), "b@x".into()],
            term: 2,
            at: Utc::now(),
        },
    )
    .await;
    h.apply_in_term(
        2,
        Command::RecordOutcomes {
            job_id: restore_job,
            outcomes: vec![outcome("a@x", RecipientStatus::Restored)],
            term: 2,
            at: Utc::now(),
        },
    )
    .await;
    let original = h.reader.job(1).unwrap().unwrap();
    let undone: Vec<bool> = original.results.iter().map(|r| r.was_undone).collect();
    assert_eq!(undone, [true, false]);
    // Only b@x is left to restore.
    let again = h.apply_in_term(2, restore).await;
    assert!(again.refused.is_none());
    let job = h.reader.job(again.jobs[0]).unwrap().unwrap();
    assert_eq!(job.results.len(), 1);
    assert_eq!(job.results[0].recipient, "b@x");
}

#[tokio::test]
async fn closed_incidents_take_no_new_alerts() {
    let mut h = Harness::new();
    h.apply(quarantine_phish()).await;
    h.apply(ingest(vec![draft("e1", "<m1@x>", &["a@x"], "phish")]))
        .await;
    let close = Command::CloseIncident {
        incident_id: 1,
        by: "analyst".into(),
        at: Utc::now(),
    };
    assert!(h.apply(close).await.refused.is_none());
    let later = h
        .apply(ingest(vec![draft("e2", "<m1@x>", &["b@x"], "phish")]))
        .await;
    assert_eq!(later.incidents, vec![2]);
}

#[tokio::test]
async fn state_survives_a_reopen_and_a_snapshot_rebuilds_it_elsewhere() {
    let mut h = Harness::new();
    h.apply(quarantine_phish()).await;
    h.apply(ingest(vec![draft("e1", "<m1@x>", &["a@x"], "phish")]))
        .await;
    let (applied, _) = h.sm.applied_state().await.unwrap();
    let snapshot =
        h.sm.get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();

    let path = h.path.clone();
    drop(h.sm);
    drop(h.reader);
    let (mut log, mut sm, reader) = pullback_store::open(&path).unwrap();
    assert_eq!(sm.applied_state().await.unwrap().0, applied);
    assert_eq!(reader.alerts().unwrap().len(), 1);
    assert!(log.get_log_state().await.unwrap().last_log_id.is_none());

    let other = tempfile::tempdir().unwrap();
    let (_log, mut fresh, fresh_reader) = pullback_store::open(other.path()).unwrap();
    // Sent the way openraft sends it: read in small chunks into the receiver's own file.
    let mut receiving = fresh.begin_receiving_snapshot().await.unwrap();
    let mut source = snapshot.snapshot;
    let mut chunk = vec![0u8; 100];
    let mut sent = 0;
    loop {
        let n = source.read(&mut chunk).await.unwrap();
        if n == 0 {
            break;
        }
        receiving.write_all(&chunk[..n]).await.unwrap();
        sent += n;
    }
    assert!(sent > 300, "the snapshot went in several chunks");
    receiving.flush().await.unwrap();
    fresh
        .install_snapshot(&snapshot.meta, receiving)
        .await
        .unwrap();
    assert_eq!(fresh.applied_state().await.unwrap().0, applied);
    assert_eq!(fresh_reader.alerts().unwrap(), reader.alerts().unwrap());
    assert_eq!(fresh_reader.jobs().unwrap(), reader.jobs().unwrap());
    assert_eq!(fresh_reader.match_conditions().unwrap().len(), 1);
    // The dedup index came along: the same event is still a repeat there.
    let current = fresh.get_current_snapshot().await.unwrap().expect("kept");
    assert_eq!(current.meta.snapshot_id, snapshot.meta.snapshot_id);
    // The built snapshot outlives a reopen of the node that built it.
    let current = sm.get_current_snapshot().await.unwrap().expect("kept");
    assert_eq!(current.meta.snapshot_id, snapshot.meta.snapshot_id);
}

#[tokio::test]
async fn a_database_from_a_newer_release_is_refused_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = pullback_store::Db::open(dir.path()).unwrap();
        let mut batch = rocksdb::WriteBatch::default();
        let mut value = pullback_domain::versioned::encode(&Option::<LogId<u64>>::None);
        value[0] = pullback_domain::versioned::DATA_FORMAT + 1;
        batch.put_cf(
            db.rocks().cf_handle("state").unwrap(),
            b"meta/applied",
            value,
        );
        db.rocks().write(batch).unwrap();
    }
    let error = pullback_store::open(dir.path())
        .expect_err("refused")
        .to_string();
    assert!(error.contains("reads formats up to"), "{error}");
}

#[tokio::test]
async fn a_join_token_admits_one_node_before_it_expires() {
    let mut h = Harness::new();
    let now = Utc::now();
    let create = |sha256: &str, minutes: i64| Command::CreateJoinToken {
        sha256: sha256.into(),
        expires_at: now + chrono::Duration::minutes(minutes),
        created_by: "admin".into(),
        at: now,
    };
    let spend = |sha256: &str, node_id: u64, at| Command::UseJoinToken {
        sha256: sha256.into(),
        node_id,
        at,
    };
    h.apply(create("aa", 60)).await;
    h.apply(create("bb", 60)).await;

    let unknown = h.apply(spend("cc", 2, now)).await;
    assert_eq!(
        unknown.refused.as_deref(),
        Some("the join token is not known")
    );
    let late = h
        .apply(spend("bb", 3, now + chrono::Duration::minutes(61)))
        .await;
    assert!(late.refused.unwrap().contains("expired"));

    assert_eq!(h.apply(spend("aa", 2, now)).await.refused, None);
    let again = h.apply(spend("aa", 4, now)).await;
    assert_eq!(
        again.refused.as_deref(),
        Some("the join token was already used by node 2")
    );
}

#[tokio::test]
async fn the_cluster_ca_is_set_once_and_its_key_never_shows_in_debug_output() {
    let mut h = Harness::new();
    let set = |cert: &str| Command::SetClusterCa {
        cert_pem: cert.into(),
        key_pem: pullback_domain::Secret("PRIVATE-KEY-BYTES".into()),
    };
    assert!(!format!("{:?}", set("cert")).contains("PRIVATE-KEY-BYTES"));

    assert_eq!(h.apply(set("cert-1")).await.refused, None);
    // Setting the same CA again changes nothing; another one is refused.
    assert_eq!(h.apply(set("cert-1")).await.refused, None);
    let other = h.apply(set("cert-2")).await;
    assert!(
        other
            .refused
            .unwrap()
            .contains("different certificate authority")
    );
    let stored = h.reader.cluster_ca().unwrap().unwrap();
    assert_eq!(stored.cert_pem, "cert-1");
    assert_eq!(stored.key_pem.0, "PRIVATE-KEY-BYTES");
}

/// Match conditions are read once per apply batch and kept while they do not change; a
/// change in the middle of the batch must still reach the alerts after it.
#[tokio::test]
async fn alerts_of_one_batch_are_matched_against_the_conditions_as_of_their_command() {
    let mut h = Harness::new();
    let alert = |n: u32| {
        ingest(vec![draft(
            &format!("e{n}"),
            &format!("<m{n}@x>"),
            &["a@corp.test"],
            "phish",
        )])
    };
    let entries = [
        alert(1),
        quarantine_phish(),
        alert(2),
        alert(3),
        Command::DeleteMatchCondition {
            name: "phish".into(),
        },
        alert(4),
    ]
    .into_iter()
    .map(|command| h.next_entry(1, EntryPayload::Normal(command)))
    .collect::<Vec<_>>();
    let responses = h.sm.apply(entries).await.unwrap();
    let jobs: Vec<usize> = responses.iter().map(|r| r.jobs.len()).collect();
    assert_eq!(
        jobs,
        [0, 0, 1, 1, 0, 0],
        "only the alerts between the condition's creation and its deletion are quarantined"
    );
}

#[tokio::test]
async fn a_batch_applies_each_command_in_order_and_answers_each() {
    let mut h = Harness::new();
    let batch = Command::Batch {
        commands: vec![
            quarantine_phish(),
            ingest(vec![draft("e1", "<m1@x>", &["a@corp.test"], "phish")]),
            // A repeat of the alert just before it in the same entry.
            ingest(vec![draft("e1", "<m1@x>", &["a@corp.test"], "phish")]),
            Command::DeleteMatchCondition {
                name: "no-such-condition".into(),
            },
            Command::Batch { commands: vec![] },
        ],
    };
    let response = h.apply(batch).await;
    assert_eq!(response.batch.len(), 5);
    assert_eq!(response.batch[0].refused, None);
    assert_eq!(response.batch[1].alerts.len(), 1);
    assert_eq!(
        response.batch[1].jobs.len(),
        1,
        "the condition of command 0 applies"
    );
    assert_eq!(response.batch[2].duplicates, 1);
    assert!(
        response.batch[3].refused.is_some(),
        "a refusal stays with its command"
    );
    assert_eq!(
        response.batch[4].refused.as_deref(),
        Some("batches do not nest")
    );
    assert_eq!(h.reader.alerts().unwrap().len(), 1);
}

#[tokio::test]
async fn an_override_to_malicious_starts_the_quarantine_the_analysis_withheld() {
    let mut h = Harness::new();
    let mut condition = match quarantine_phish() {
        Command::PutMatchCondition { condition } => condition,
        _ => unreachable!(),
    };
    condition.name = "reported-malicious".into();
    condition.classifications = vec!["malicious".into()];
    h.apply(Command::PutMatchCondition { condition }).await;
    let mut report = draft("r1", "<p1@evil.zz>", &["a@x", "b@x", "soc@x"], "clean");
    report.kind = AlertKind::AbuseReport;
    report.analysis = Some(serde_json::json!({ "disposition": "clean", "score": 3 }));
    let ingested = h.apply(ingest(vec![report])).await;
    assert!(ingested.jobs.is_empty(), "a clean verdict pulls nothing");
    let alert_id = ingested.alerts[0];

    let refused = h
        .apply(Command::OverrideVerdict {
            alert_id,
            disposition: "evil".into(),
            reason: "x".into(),
            by: "ana".into(),
            at: Utc::now(),
        })
        .await;
    assert!(refused.refused.unwrap().contains("malicious"));

    let overridden = h
        .apply(Command::OverrideVerdict {
            alert_id,
            disposition: "malicious".into(),
            reason: "credential phish, the analysis missed the form".into(),
            by: "ana".into(),
            at: Utc::now(),
        })
        .await;
    assert_eq!(overridden.jobs.len(), 1, "{overridden:?}");
    let job = h.reader.job(overridden.jobs[0]).unwrap().unwrap();
    let recipients: Vec<&str> = job.results.iter().map(|r| r.recipient.as_str()).collect();
    assert_eq!(
        recipients,
        ["a@x", "b@x"],
        "the excluded mailbox stays untouched"
    );
    let alert = h.reader.alert(alert_id).unwrap().unwrap();
    let analysis = alert.body.analysis.unwrap();
    assert_eq!(analysis["disposition"], "clean", "the analysis is kept");
    assert_eq!(analysis["override"]["disposition"], "malicious");
    let incident = h
        .reader
        .incident(alert.incident_id.unwrap())
        .unwrap()
        .unwrap();
    assert!(
        incident.comments[0]
            .text
            .contains("from clean to malicious")
    );

    // Saying it again plans nothing twice.
    let again = h
        .apply(Command::OverrideVerdict {
            alert_id,
            disposition: "malicious".into(),
            reason: "still".into(),
            by: "ana".into(),
            at: Utc::now(),
        })
        .await;
    assert!(again.jobs.is_empty(), "{again:?}");
}

/// An alert about a URL on `host`, for `recipient`, with a TAP dashboard link of its own.
fn url_alert(id: &str, host: &str, recipient: &str, subject: &str, class: &str) -> AlertDraft {
    let mut draft = draft(id, &format!("<{id}@mail.example>"), &[recipient], class);
    draft.subject = Some(subject.into());
    draft.threats[0].value = Some(format!("https://{host}/login"));
    draft.threats[0].hostname = Some(host.into());
    draft.threats[0].dashboard_url = Some(format!(
        "https://threatinsight.proofpoint.com/8a7b/threat/email/{id}"
    ));
    draft.threats[0].sha256 = Some(format!("{:0>64}", id.len()));
    draft
}

fn query(params: &[(&str, &str)]) -> pullback_store::search::Query {
    pullback_store::search::Query::parse(params.iter().copied()).expect("a valid query")
}

fn found(reader: &Reader, params: &[(&str, &str)]) -> Vec<String> {
    let hits = reader.search(&query(params), None, 100, 10_000).unwrap();
    assert!(hits.next.is_none() && !hits.partial);
    hits.alerts.into_iter().map(|a| a.body.dedup_key).collect()
}

#[tokio::test]
async fn search_combines_criteria_and_forgives_case_scheme_and_script() {
    let mut h = Harness::new();
    h.apply(ingest(vec![
        url_alert(
            "a1",
            "login.evil.example",
            "Ann@Corp.example",
            "Invoice overdue",
            "phish",
        ),
        url_alert(
            "a2",
            "cdn.evil.example",
            "bob@corp.example",
            "Your invoice",
            "malware",
        ),
        url_alert(
            "a3",
            "bücher.example",
            "ann@corp.example",
            "Bücher Rechnung",
            "phish",
        ),
        url_alert("a4", "good.example", "carl@other.example", "Lunch", "spam"),
    ]))
    .await;
    let r = &h.reader;
    // A TAP dashboard threat URL, pasted with or without its scheme, in any case.
    let dashboard = "https://threatinsight.proofpoint.com/8a7b/threat/email/a2";
    assert_eq!(found(r, &[("threat_url", dashboard)]), ["id:a2"]);
    let bare = "THREATINSIGHT.proofpoint.com/8a7b/threat/email/a2";
    assert_eq!(found(r, &[("threat_url", bare)]), ["id:a2"]);
    assert_eq!(
        found(r, &[("url", "HTTPS://Login.Evil.Example/login")]),
        ["id:a1"]
    );
    // A domain finds its subdomains, newest first; a subdomain only itself.
    assert_eq!(found(r, &[("host", "evil.example")]), ["id:a2", "id:a1"]);
    assert_eq!(found(r, &[("host", "cdn.EVIL.example")]), ["id:a2"]);
    assert!(found(r, &[("host", "vil.example")]).is_empty());
    // International names match in Unicode and in punycode.
    assert_eq!(found(r, &[("host", "Bücher.example")]), ["id:a3"]);
    assert_eq!(found(r, &[("host", "xn--bcher-kva.example")]), ["id:a3"]);
    assert_eq!(
        found(r, &[("url", "xn--bcher-kva.example/login")]),
        ["id:a3"]
    );
    // Addresses in any case; a domain finds everyone there.
    assert_eq!(
        found(r, &[("recipient", "ANN@corp.example")]),
        ["id:a3", "id:a1"]
    );
    assert_eq!(found(r, &[("recipient", "@corp.example")]).len(), 3);
    // Every subject word must be there.
    assert_eq!(found(r, &[("subject", "invoice")]), ["id:a2", "id:a1"]);
    assert_eq!(found(r, &[("subject", "OVERDUE invoice")]), ["id:a1"]);
    assert_eq!(found(r, &[("subject", "rechnung")]), ["id:a3"]);
    // Combinations are the intersection.
    let both = [("host", "evil.example"), ("recipient", "ann@corp.example")];
    assert_eq!(found(r, &both), ["id:a1"]);
    let none = [("classification", "PHISH"), ("host", "cdn.evil.example")];
    assert!(found(r, &none).is_empty());
    assert_eq!(found(r, &[("classification", "Phish")]), ["id:a3", "id:a1"]);
    assert_eq!(found(r, &[("message_id", "a4@mail.example")]), ["id:a4"]);
    assert_eq!(found(r, &[("hash", &format!("{:0>64}", 2))]).len(), 4);
    assert_eq!(found(r, &[("source", "tap")]).len(), 4);
    // Time: everything is from today.
    let tomorrow = (Utc::now() + chrono::Duration::days(1))
        .format("%Y-%m-%d")
        .to_string();
    assert!(found(r, &[("after", tomorrow.as_str())]).is_empty());
    assert_eq!(found(r, &[("before", tomorrow.as_str())]).len(), 4);
}

#[tokio::test]
async fn search_pages_by_cursor_and_stops_at_its_budget() {
    let mut h = Harness::new();
    let drafts = (0..25)
        .map(|i| {
            url_alert(
                &format!("p{i}"),
                "evil.example",
                "ann@corp.example",
                "Hi",
                "phish",
            )
        })
        .collect();
    h.apply(ingest(drafts)).await;
    // Pages of 10 walk everything once, newest first.
    let q = query(&[("host", "evil.example"), ("recipient", "ann@corp.example")]);
    let (mut seen, mut cursor) = (Vec::new(), None);
    loop {
        let hits = h.reader.search(&q, cursor, 10, 10_000).unwrap();
        seen.extend(hits.alerts.iter().map(|a| a.id));
        match hits.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, (1..=25).rev().collect::<Vec<u64>>());
    // A filter that rejects everything looks at no more than the budget, then says where
    // to go on.
    let tomorrow = (Utc::now() + chrono::Duration::days(1)).to_rfc3339();
    let none = query(&[("source", "tap"), ("after", tomorrow.as_str())]);
    let hits = h.reader.search(&none, None, 10, 7).unwrap();
    assert!(hits.alerts.is_empty() && hits.partial);
    assert_eq!(hits.next, Some(19));
    let rest = h.reader.search(&none, hits.next, 10, 100).unwrap();
    assert!(rest.alerts.is_empty() && !rest.partial && rest.next.is_none());
}

#[tokio::test]
async fn incident_state_filters_search_and_the_incident_list() {
    let mut h = Harness::new();
    h.apply(quarantine_phish()).await;
    h.apply(ingest(vec![
        url_alert("s1", "one.example", "a@x", "One", "phish"),
        url_alert("s2", "two.example", "b@x", "Two", "phish"),
    ]))
    .await;
    let closed = h.reader.alert(1).unwrap().unwrap().incident_id.unwrap();
    let close = Command::CloseIncident {
        incident_id: closed,
        by: "ann".into(),
        at: Utc::now(),
    };
    h.apply(close).await;
    assert_eq!(found(&h.reader, &[("state", "closed")]), ["id:s1"]);
    assert_eq!(found(&h.reader, &[("state", "open")]), ["id:s2"]);
    let open = pullback_domain::IncidentState::Open;
    let (page, next) = h
        .reader
        .incident_page(Some(open), None, 10, 100, |_| true)
        .unwrap();
    assert_eq!(page.iter().map(|i| i.id).collect::<Vec<_>>(), [closed + 1]);
    assert!(next.is_none());
    let (page, _) = h
        .reader
        .incident_page(None, None, 10, 100, |_| true)
        .unwrap();
    assert_eq!(page.len(), 2);
    // Each day's counts follow alerts and quarantine outcomes.
    let today = Utc::now().date_naive();
    let days = h.reader.days(today, today).unwrap();
    assert_eq!(days[0].1.alerts, 2);
}

#[tokio::test]
async fn a_store_without_a_search_index_rebuilds_it_when_opened() {
    let mut h = Harness::new();
    h.apply(ingest(vec![url_alert(
        "r1",
        "evil.example",
        "a@x",
        "Hello",
        "phish",
    )]))
    .await;
    // Close the store but keep its folder.
    let Harness {
        _dir: kept,
        path,
        sm,
        reader,
        ..
    } = h;
    drop((sm, reader));
    {
        // As a store written before search existed: no terms, no version.
        let db = pullback_store::Db::open(&path).unwrap();
        let index = db.cf(pullback_store::Cf::Index);
        db.rocks().delete_range_cf(index, b"s/", b"s0").unwrap();
        db.rocks().delete_cf(index, b"search/version").unwrap();
    }
    let (_log, _sm, reader) = pullback_store::open(&path).unwrap();
    assert_eq!(found(&reader, &[("host", "evil.example")]), ["id:r1"]);
    drop(kept);
}

#[tokio::test]
async fn users_sessions_and_the_audit_log() {
    let mut h = Harness::new();
    let now = Utc::now();
    let user = pullback_domain::User {
        name: "ann".into(),
        role: pullback_domain::Role::Analyst,
        password_hash: pullback_domain::Secret("$argon2id$v=19$secret-hash".into()),
        disabled: false,
        created_at: now,
        updated_at: now,
    };
    let audited = |command: Command| Command::Audited {
        by: "key admin".into(),
        at: now,
        command: Box::new(command),
    };
    let session = pullback_domain::Session {
        user: "ann".into(),
        created_at: now,
        expires_at: now + chrono::Duration::hours(8),
        csrf_token: pullback_domain::Secret("csrf".into()),
        external: None,
    };
    let start = Command::StartSession {
        token_sha256: "t1".into(),
        session: session.clone(),
    };
    // No such user yet: refused, and the refusal is in the log too.
    let refused = h.apply(audited(start.clone())).await;
    assert!(refused.refused.is_some());
    h.apply(audited(Command::PutUser { user: user.clone() }))
        .await;
    assert!(h.apply(audited(start)).await.refused.is_none());
    assert!(h.reader.session("t1").unwrap().is_some());
    // Disabling the user ends the session.
    let disabled = pullback_domain::User {
        disabled: true,
        ..user
    };
    h.apply(audited(Command::PutUser { user: disabled })).await;
    assert!(h.reader.session("t1").unwrap().is_none());

    let log = h.reader.audit_page(None, 10).unwrap();
    let actions: Vec<(&str, &str)> = log
        .iter()
        .map(|e| (e.action.as_str(), e.outcome.as_str()))
        .collect();
    assert_eq!(actions[0], ("put_user", "ok"));
    assert_eq!(actions[1], ("sign_in", "ok"));
    assert_eq!(actions[2], ("put_user", "ok"));
    assert!(
        actions[3]
            .1
            .starts_with("refused: user \"ann\" cannot sign in")
    );
    assert!(log.iter().all(|e| e.by == "key admin"));
    assert_eq!(log[0].detail, "user ann as analyst, disabled");
    let text = format!("{log:?}");
    assert!(
        !text.contains("secret-hash") && !text.contains("csrf"),
        "{text}"
    );
    // Paging: entries older than the second.
    let older = h.reader.audit_page(Some(log[1].id), 10).unwrap();
    assert_eq!(older.len(), 2);
}

#[tokio::test]
async fn sessions_an_identity_provider_vouched_for_need_no_local_account() {
    let mut h = Harness::new();
    let now = Utc::now();
    let audited = |command: Command| Command::Audited {
        by: "user ann@contoso.test (azure ad)".into(),
        at: now,
        command: Box::new(command),
    };
    let session = pullback_domain::Session {
        user: "ann@contoso.test".into(),
        created_at: now,
        expires_at: now + chrono::Duration::hours(8),
        csrf_token: pullback_domain::Secret("csrf".into()),
        external: Some(pullback_domain::ExternalSignIn {
            provider: "azure ad".into(),
            role: pullback_domain::Role::Admin,
            subject: "0d2b1b8e-1111-4c5d-9e6f-000000000a11".into(),
            tenant: "5e3ce6c0-2b1f-4285-8d4b-75ee78787346".into(),
        }),
    };
    let start = Command::StartSession {
        token_sha256: "t-azure".into(),
        session: session.clone(),
    };
    assert!(h.apply(audited(start)).await.refused.is_none());
    assert_eq!(h.reader.session("t-azure").unwrap(), Some(session));

    // A local account of the same name is someone else: disabling or deleting it leaves the
    // session alone.
    let local = pullback_domain::User {
        name: "ann@contoso.test".into(),
        role: pullback_domain::Role::ReadOnly,
        password_hash: pullback_domain::Secret("$argon2id$v=19$hash".into()),
        disabled: true,
        created_at: now,
        updated_at: now,
    };
    h.apply(audited(Command::PutUser { user: local })).await;
    h.apply(audited(Command::DeleteUser {
        name: "ann@contoso.test".into(),
    }))
    .await;
    assert!(h.reader.session("t-azure").unwrap().is_some());

    let log = h.reader.audit_page(None, 10).unwrap();
    let sign_in = log.iter().find(|e| e.action == "sign_in").expect("audited");
    assert_eq!(sign_in.by, "user ann@contoso.test (azure ad)");
    assert_eq!(sign_in.detail, "user ann@contoso.test (azure ad)");
}

#[tokio::test]
async fn purges_remove_old_closed_incidents_and_lone_alerts_in_bounded_steps() {
    let mut h = Harness::new();
    h.apply(quarantine_phish()).await;
    let long_ago = Utc::now() - chrono::Duration::days(100);
    let old = |drafts: Vec<AlertDraft>| Command::IngestAlerts {
        source: "tap".into(),
        at: long_ago,
        drafts,
        rejected: vec![],
        checkpoint: None,
    };
    // Two old phish (one incident each, with jobs), three old alerts nobody acts on, and a
    // recent phish.
    h.apply(old(vec![
        url_alert("o1", "one.example", "a@x", "One", "phish"),
        url_alert("o2", "two.example", "b@x", "Two", "phish"),
        url_alert("o3", "three.example", "c@x", "Three", "spam"),
        url_alert("o4", "four.example", "c@x", "Four", "spam"),
        url_alert("o5", "five.example", "c@x", "Five", "spam"),
    ]))
    .await;
    h.apply(ingest(vec![url_alert(
        "n1",
        "new.example",
        "d@x",
        "New",
        "phish",
    )]))
    .await;
    let first = h.reader.alert(1).unwrap().unwrap().incident_id.unwrap();
    h.apply(Command::CloseIncident {
        incident_id: first,
        by: "ann".into(),
        at: long_ago,
    })
    .await;

    let cutoff = Utc::now() - chrono::Duration::days(90);
    let (mut after, mut total) = (0, pullback_domain::Removed::default());
    for _ in 0..10 {
        let purge = Command::Purge {
            closed_before: cutoff,
            alerts_before: cutoff,
            after_alert: after,
            limit: 2,
            backup_id: Some("b1".into()),
        };
        let removed = h.apply(purge).await.removed.expect("a purge answer");
        assert!(removed.alerts <= 2, "{removed:?}");
        total.alerts += removed.alerts;
        total.incidents += removed.incidents;
        total.jobs += removed.jobs;
        match removed.next {
            Some(next) => after = next,
            None => break,
        }
    }
    // The closed incident with its alert and job, and the three lone spam alerts; the open
    // old incident and the new one stay.
    assert_eq!(
        (total.alerts, total.incidents, total.jobs),
        (4, 1, 1),
        "{total:?}"
    );
    let left: Vec<String> = h
        .reader
        .alerts()
        .unwrap()
        .into_iter()
        .map(|a| a.body.dedup_key)
        .collect();
    assert_eq!(left, ["id:o2", "id:n1"]);
    assert!(h.reader.incident(first).unwrap().is_none());
    assert!(found(&h.reader, &[("host", "one.example")]).is_empty());
    assert!(found(&h.reader, &[("recipient", "c@x")]).is_empty());
    assert_eq!(found(&h.reader, &[("host", "two.example")]), ["id:o2"]);
    // A repeat of a purged event is still known.
    let again = h
        .apply(old(vec![url_alert(
            "o3",
            "three.example",
            "c@x",
            "Three",
            "spam",
        )]))
        .await;
    assert_eq!(again.duplicates, 1);
}

#[tokio::test]
async fn a_checkpoint_restores_into_a_store_of_its_own_and_a_newer_format_is_refused() {
    let mut h = Harness::new();
    h.apply(quarantine_phish()).await;
    h.apply(ingest(vec![
        url_alert("c1", "one.example", "a@x", "One", "phish"),
        url_alert("c2", "two.example", "b@x", "Two", "spam"),
    ]))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = dir.path().join("checkpoint");
    let summary = h.reader.backup_checkpoint(&checkpoint).unwrap();
    assert_eq!(summary.counts["alert"], 2);
    assert_eq!(summary.counts["incident"], 1);
    assert_eq!(summary.counts["condition"], 1);
    assert_eq!(summary.cluster, "standalone");
    assert_eq!(summary.applied_index, h.index);
    // The node goes on while the checkpoint stays as it was.
    h.apply(ingest(vec![url_alert(
        "c3",
        "three.example",
        "c@x",
        "Three",
        "spam",
    )]))
    .await;
    assert_eq!(
        pullback_store::backup::inspect(&checkpoint).unwrap(),
        summary
    );

    let store = dir.path().join("restored");
    let (restored, _) = pullback_store::backup::restore(&checkpoint, &store).unwrap();
    assert_eq!(restored, summary);
    let (_log, _sm, reader) = pullback_store::open(&store).unwrap();
    let keys: Vec<String> = reader
        .alerts()
        .unwrap()
        .into_iter()
        .map(|a| a.body.dedup_key)
        .collect();
    assert_eq!(keys, ["id:c1", "id:c2"]);
    assert!(
        reader.applied().unwrap().is_none(),
        "the restored store starts a group of its own"
    );
    drop(reader);
    assert!(
        !checkpoint.join("CURRENT").exists(),
        "the checkpoint's files were moved into the store"
    );
    let checkpoint = dir.path().join("checkpoint-2");
    h.reader.backup_checkpoint(&checkpoint).unwrap();
    let again = pullback_store::backup::restore(&checkpoint, &store).unwrap_err();
    assert!(
        again.to_string().contains("already holds a store"),
        "{again}"
    );

    // A value written by a newer release makes the whole backup refused, with why.
    {
        let db = pullback_store::Db::open(&checkpoint).unwrap();
        let state = db.cf(pullback_store::Cf::State);
        db.rocks()
            .put_cf(state, b"future/thing", [9u8, b'{', b'}'])
            .unwrap();
    }
    let newer =
        pullback_store::backup::restore(&checkpoint, &dir.path().join("other")).unwrap_err();
    assert!(newer.to_string().contains("data format 9"), "{newer}");
}

fn person(address: &str, groups: &[&str], title: &str) -> pullback_domain::DirectoryRecord {
    pullback_domain::DirectoryRecord {
        dn: format!("uid={address},ou=people,dc=corp"),
        kind: Some(pullback_domain::DirectoryKind::Person),
        object_classes: vec!["inetOrgPerson".into(), "pullbackPerson".into()],
        addresses: vec![address.into()],
        title: Some(title.into()),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        ..Default::default()
    }
}

fn directory_run(id: &str) -> Command {
    Command::RecordDirectoryRun {
        run: pullback_domain::DirectoryRun {
            id: id.into(),
            state: "done".into(),
            ..Default::default()
        },
        make_current: true,
    }
}

#[tokio::test]
async fn the_directory_expands_lists_excludes_groups_and_feeds_match_conditions() {
    let mut h = Harness::new();
    let list = pullback_domain::DirectoryRecord {
        dn: "cn=all-staff,ou=groups,dc=corp".into(),
        kind: Some(pullback_domain::DirectoryKind::Group),
        addresses: vec!["all@x".into()],
        members: vec!["a@x".into(), "b@x".into(), "soc@x".into(), "sec@x".into()],
        ..Default::default()
    };
    let records = vec![
        person("a@x", &["finance"], "Clerk"),
        person("b@x", &["executives", "finance"], "VP of Finance"),
        person("sec@x", &["security-team"], "Analyst"),
        list,
    ];
    // Staged but not in force: nothing changes yet.
    h.apply(Command::StageDirectory {
        import: "i1".into(),
        records,
    })
    .await;
    assert!(h.reader.directory_lookup("a@x").unwrap().is_none());
    h.apply(directory_run("i1")).await;
    assert_eq!(
        h.reader
            .directory_lookup("B@X")
            .unwrap()
            .unwrap()
            .title
            .as_deref(),
        Some("VP of Finance")
    );

    let mut condition = match quarantine_phish() {
        Command::PutMatchCondition { condition } => condition,
        _ => unreachable!(),
    };
    condition.exclude_recipient_groups = vec!["security-team".into()];
    h.apply(Command::PutMatchCondition {
        condition: condition.clone(),
    })
    .await;
    let mut executives = condition.clone();
    executives.name = "executives".into();
    executives.responses = vec![pullback_domain::Response::Incident];
    executives.recipient_attributes = vec![pullback_domain::AttributeTest {
        name: "title".into(),
        equals: None,
        matches: Some("vp*".into()),
    }];
    h.apply(Command::PutMatchCondition {
        condition: executives,
    })
    .await;

    // A phish to the list reaches each member but the security team and the SOC box.
    let response = h
        .apply(ingest(vec![draft("d1", "<d1@x>", &["all@x"], "phish")]))
        .await;
    let job = h.reader.job(response.jobs[0]).unwrap().unwrap();
    let mut reached: Vec<&str> = job.results.iter().map(|r| r.recipient.as_str()).collect();
    reached.sort();
    assert_eq!(reached, ["a@x", "b@x"]);
    let alert = h.reader.alert(response.alerts[0]).unwrap().unwrap();
    assert_eq!(
        alert.matched,
        ["phish"],
        "no VP among the alert's own recipients"
    );
    let response = h
        .apply(ingest(vec![draft("d2", "<d2@x>", &["b@x"], "phish")]))
        .await;
    let alert = h.reader.alert(response.alerts[0]).unwrap().unwrap();
    assert_eq!(alert.matched, ["executives", "phish"]);

    // A new import replaces the old one whole.
    h.apply(Command::StageDirectory {
        import: "i2".into(),
        records: vec![person("a@x", &[], "Clerk")],
    })
    .await;
    h.apply(directory_run("i2")).await;
    assert!(h.reader.directory_lookup("b@x").unwrap().is_none());
    assert!(h.reader.directory_lookup("a@x").unwrap().is_some());
}

#[tokio::test]
async fn deletes_are_recorded_on_the_job_and_only_a_soft_one_can_be_restored() {
    for (response, removal) in [
        (Response::SoftDelete, pullback_domain::Removal::SoftDelete),
        (Response::HardDelete, pullback_domain::Removal::HardDelete),
    ] {
        let mut h = Harness::new();
        let Command::PutMatchCondition { mut condition } = quarantine_phish() else {
            unreachable!("a match condition");
        };
        condition.responses = vec![Response::Quarantine, response];
        h.apply(Command::PutMatchCondition { condition }).await;
        h.apply(ingest(vec![draft("e1", "<m1@x>", &["a@x"], "phish")]))
            .await;
        let job = h.reader.job(1).unwrap().unwrap();
        assert_eq!((job.removal, job.dry_run), (removal, false));

        let claim = Command::ClaimRecipients {
            job_id: 1,
            recipients: vec!["a@x".into()],
            term: 1,
            at: Utc::now(),
        };
        h.apply(claim).await;
        let report = Command::RecordOutcomes {
            job_id: 1,
            outcomes: vec![outcome("a@x", RecipientStatus::Quarantined)],
            term: 1,
            at: Utc::now(),
        };
        h.apply(report).await;
        let restore = Command::RequestRestore {
            job_id: 1,
            recipients: None,
            requested_by: "analyst".into(),
            at: Utc::now(),
        };
        let answer = h.apply(restore).await;
        match removal {
            pullback_domain::Removal::HardDelete => {
                let refused = answer.refused.expect("a hard delete cannot be undone");
                assert!(refused.contains("cannot be undone"), "{refused}");
            }
            _ => {
                assert!(answer.refused.is_none(), "{answer:?}");
                let restore_job = h.reader.job(answer.jobs[0]).unwrap().unwrap();
                assert_eq!(restore_job.removal, removal, "the undo knows what to undo");
            }
        }
    }
}

#[tokio::test]
async fn the_command_level_rises_once_every_member_reported_it_and_never_falls() {
    let mut h = Harness::new();
    assert_eq!(
        h.reader.cluster_level().unwrap(),
        pullback_domain::BASE_LEVEL
    );
    let members = std::collections::BTreeMap::from([
        (1, pullback_store::Member::default()),
        (2, pullback_store::Member::default()),
    ]);
    let entry = h.next_entry(
        1,
        EntryPayload::Membership(openraft::Membership::new(vec![[1, 2].into()], members)),
    );
    h.sm.apply(vec![entry]).await.unwrap();
    let report = |node_id: u64, level: u32| Command::ReportRelease {
        node_id,
        level,
        version: format!("v{level}"),
    };

    h.apply(report(1, 2)).await;
    let silent = h.apply(Command::SetClusterLevel { level: 2 }).await;
    assert_eq!(
        silent.refused.as_deref(),
        Some(
            "command level 2 needs every member to run a release of that level: node 2 has not \
             reported its release"
        )
    );
    h.apply(report(2, 1)).await;
    let old = h.apply(Command::SetClusterLevel { level: 2 }).await;
    assert!(
        old.refused
            .as_deref()
            .unwrap()
            .contains("node 2 runs v1 (level 1)"),
        "{old:?}"
    );
    assert_eq!(h.reader.cluster_level().unwrap(), 1);

    h.apply(report(2, 3)).await;
    let raised = h.apply(Command::SetClusterLevel { level: 2 }).await;
    assert_eq!(raised.refused, None);
    assert_eq!(h.reader.cluster_level().unwrap(), 2);
    let lower = h.apply(Command::SetClusterLevel { level: 1 }).await;
    assert!(lower.refused.unwrap().contains("never lowered"));
    assert_eq!(h.reader.cluster_level().unwrap(), 2);
    let releases = h.reader.releases().unwrap();
    assert_eq!(releases[&1].version, "v2");
    assert_eq!(releases[&2].level, 3);
}

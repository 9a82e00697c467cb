//! What an imported directory costs while alerts are processed.
//!
//! One node is started with a directory of `PULLBACK_BENCH_DIRECTORY_PEOPLE` people (100 000)
//! and one distribution list per 100 of them, written into the replicated state the way an
//! import writes it (`StageDirectory` in entries of 500 records, then `RecordDirectoryRun`).
//! Every person is in three groups out of 500, with a title and two kept attributes. Then:
//!
//! - `lookup`: `Reader::directory_lookup` of random addresses, nine in ten of them known, one
//!   at a time: the read the state machine makes for every recipient of every alert.
//! - `ingest`: batches of 100 alerts (one to three recipients, one alert in ten to a list)
//!   committed in sequence, three times: on a second node without a directory, with a
//!   condition that quarantines (dry run) every phish; on this node with the same condition,
//!   so every list is expanded and each member looked up; and on this node with conditions
//!   that also test a group, an attribute and an object class and exclude a group, so every
//!   recipient is looked up for each. The differences per alert are what the directory costs
//!   the processing of an alert.
//!
//! Sizes come from the environment: `PULLBACK_BENCH_DIRECTORY_PEOPLE` (100 000),
//! `PULLBACK_BENCH_DIRECTORY_LOOKUPS` (100 000), `PULLBACK_BENCH_DIRECTORY_BATCHES` (50).

use pullback_benches::{
    AlertSpec, BenchNode, Latencies, per_second, run_with_data_folder, size_from_env,
};
use pullback_domain::{
    Command, DirectoryKind, DirectoryRecord, DirectoryRun, MatchCondition, MessageId,
};
use pullback_node::Node;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const GROUPS: usize = 500;
const PEOPLE_PER_LIST: usize = 100;
const STAGE_CHUNK: usize = 500;
const BATCH: usize = 100;

fn main() -> anyhow::Result<()> {
    let people = size_from_env("PULLBACK_BENCH_DIRECTORY_PEOPLE", 100_000)?;
    let lookups = size_from_env("PULLBACK_BENCH_DIRECTORY_LOOKUPS", 100_000)?;
    let batches = size_from_env("PULLBACK_BENCH_DIRECTORY_BATCHES", 50)?;
    run_with_data_folder(|folder| async move {
        let bench = BenchNode::start(&folder, "").await?;
        let node = bench.node.clone();

        let started = Instant::now();
        load_directory(&node, people).await?;
        println!(
            "directory load people={people} lists={} secs={:.1}",
            people / PEOPLE_PER_LIST,
            started.elapsed().as_secs_f64()
        );

        let reader = node.reader();
        let mut latencies = Latencies::default();
        let mut found = 0;
        for n in 0..lookups {
            // Nine in ten known; the rest outside the directory.
            let i = (n * 7919) % people;
            let address = match n % 10 {
                9 => format!("stranger{i}@elsewhere.bench.test"),
                _ => person_address(i),
            };
            let at = Instant::now();
            let record = reader.directory_lookup(&address)?;
            latencies.record(at.elapsed());
            found += usize::from(record.is_some());
        }
        let us = |p: f64| latencies.percentile(p).as_secs_f64() * 1e6;
        println!(
            "directory lookup n={lookups} found={found} p50_us={:.1} p99_us={:.1} max_us={:.1}",
            us(50.0),
            us(99.0),
            us(100.0)
        );

        // The same alerts three ways: on a node without a directory, then on this one with
        // conditions that do not consult it (only lists are expanded), then with conditions
        // that test every recipient.
        let bare = BenchNode::start(&folder, "").await?;
        put_conditions(&bare.node, baseline()).await?;
        let without = ingest(&bare.node, people, batches, "bare").await?;
        bare.stop().await;
        put_conditions(&node, baseline()).await?;
        let lists_only = ingest(&node, people, batches, "lists").await?;
        put_conditions(&node, conditions()).await?;
        let tested = ingest(&node, people, batches, "tested").await?;
        for (name, run) in [
            ("no-directory", &without),
            ("lists-expanded", &lists_only),
            ("every-recipient-tested", &tested),
        ] {
            println!(
                "directory ingest run={name} alerts_per_sec={:.0} us_per_alert={:.1} \
                 people_per_alert={:.1} jobs={}",
                run.rate,
                run.per_alert.as_secs_f64() * 1e6,
                run.lookups_per_alert,
                run.jobs,
            );
        }
        bench.stop().await;
        Ok(())
    })
}

fn person_address(i: usize) -> String {
    format!("person{i}@corp.bench.test")
}

fn list_address(l: usize) -> String {
    format!("list{l}@corp.bench.test")
}

fn group_names(i: usize) -> [String; 3] {
    [i % GROUPS, (i * 31 + 7) % GROUPS, (i * 97 + 13) % GROUPS].map(|g| format!("group{g}"))
}

fn person(i: usize) -> DirectoryRecord {
    let mut groups = Vec::new();
    for name in group_names(i) {
        groups.push(format!("cn={name},ou=groups,dc=bench,dc=test"));
        groups.push(name);
    }
    DirectoryRecord {
        dn: format!("uid=person{i},ou=people,dc=bench,dc=test"),
        kind: Some(DirectoryKind::Person),
        object_classes: vec!["inetOrgPerson".into(), "benchPerson".into()],
        addresses: vec![person_address(i)],
        display_name: Some(format!("Person {i}")),
        department: Some(format!("Department {}", i % 40)),
        title: Some(
            if i.is_multiple_of(50) {
                "Vice President"
            } else {
                "Analyst"
            }
            .into(),
        ),
        manager: Some(format!("uid=person{},ou=people,dc=bench,dc=test", i / 10)),
        groups,
        attributes: BTreeMap::from([
            ("employeeNumber".into(), vec![i.to_string()]),
            (
                "riskTier".into(),
                vec![["low", "medium", "high"][i % 3].into()],
            ),
        ]),
        members: Vec::new(),
    }
}

fn list(l: usize) -> DirectoryRecord {
    DirectoryRecord {
        dn: format!("cn=list{l},ou=lists,dc=bench,dc=test"),
        kind: Some(DirectoryKind::Group),
        object_classes: vec!["groupOfNames".into()],
        addresses: vec![list_address(l)],
        members: (l * PEOPLE_PER_LIST..(l + 1) * PEOPLE_PER_LIST)
            .map(person_address)
            .collect(),
        ..DirectoryRecord::default()
    }
}

async fn load_directory(node: &Node, people: usize) -> anyhow::Result<()> {
    let import = "bench-import".to_owned();
    let records: Vec<DirectoryRecord> = (0..people)
        .map(person)
        .chain((0..people / PEOPLE_PER_LIST).map(list))
        .collect();
    for chunk in records.chunks(STAGE_CHUNK) {
        node.propose(Command::StageDirectory {
            import: import.clone(),
            records: chunk.to_vec(),
        })
        .await?;
    }
    let run = DirectoryRun {
        id: import,
        state: "done".into(),
        people: people as u64,
        ..DirectoryRun::default()
    };
    node.propose(Command::RecordDirectoryRun {
        run,
        make_current: true,
    })
    .await?;
    Ok(())
}

async fn put_conditions(node: &Node, conditions: Vec<MatchCondition>) -> anyhow::Result<()> {
    for condition in conditions {
        node.propose(Command::PutMatchCondition { condition })
            .await?;
    }
    Ok(())
}

/// A dry-run quarantine of phish that consults no directory attribute.
fn baseline() -> Vec<MatchCondition> {
    let json = serde_json::json!([{
        "name": "pull-phish",
        "classifications": ["phish"],
        "responses": ["dry_run_quarantine"]
    }]);
    serde_json::from_value(json).expect("the condition is valid")
}

/// Conditions that consult the directory for every recipient; `pull-phish` replaces the
/// baseline's.
fn conditions() -> Vec<MatchCondition> {
    let json = serde_json::json!([
        {
            "name": "executives",
            "recipient_attributes": [{ "name": "title", "matches": "Vice*" }],
            "responses": ["incident"]
        },
        {
            "name": "group-watch",
            "recipient_groups": ["group7", "group99", "group301"],
            "recipient_object_classes": ["benchPerson"],
            "responses": ["incident"]
        },
        {
            "name": "pull-phish",
            "classifications": ["phish"],
            "exclude_recipient_groups": ["group42"],
            "responses": ["dry_run_quarantine"]
        }
    ]);
    serde_json::from_value(json).expect("the conditions are valid")
}

struct Ingested {
    rate: f64,
    per_alert: Duration,
    lookups_per_alert: f64,
    jobs: usize,
}

async fn ingest(
    node: &Node,
    people: usize,
    batches: usize,
    label: &str,
) -> anyhow::Result<Ingested> {
    let mut alerts = 0;
    let mut recipients = 0;
    let mut jobs = 0;
    let started = Instant::now();
    for b in 0..batches {
        let drafts: Vec<_> = (0..BATCH)
            .map(|k| spec(b * BATCH + k, people, label))
            .inspect(|s| {
                recipients += s
                    .recipients
                    .iter()
                    .map(|r| match r.starts_with("list") {
                        true => PEOPLE_PER_LIST + 1,
                        false => 1,
                    })
                    .sum::<usize>()
            })
            .map(|s| s.draft())
            .collect();
        let response = node
            .propose(Command::IngestAlerts {
                source: "bench".into(),
                at: chrono::Utc::now(),
                drafts,
                rejected: Vec::new(),
                checkpoint: None,
            })
            .await?;
        if let Some(reason) = response.refused {
            anyhow::bail!("the node refused an ingest: {reason}");
        }
        alerts += response.alerts.len();
        jobs += response.jobs.len();
    }
    let elapsed = started.elapsed();
    Ok(Ingested {
        rate: per_second(alerts, elapsed),
        per_alert: elapsed / alerts.max(1) as u32,
        lookups_per_alert: recipients as f64 / alerts.max(1) as f64,
        jobs,
    })
}

fn spec(n: usize, people: usize, label: &str) -> AlertSpec {
    let lists = (people / PEOPLE_PER_LIST).max(1);
    let recipients = (0..n % 3 + 1)
        .map(|r| match (n + r) % 10 {
            0 => list_address((n * 13 + r) % lists),
            _ => person_address((n * 7919 + r * 104_729) % people),
        })
        .collect();
    let message_id = format!("<{label}.{n}.dir@mail.sender.bench.test>");
    AlertSpec {
        event_id: format!("{label}-{n}"),
        message_id: MessageId::parse(&message_id).expect("a non-empty Message-ID"),
        subject: format!("Your mailbox is full ({n})"),
        sender: "it-desk@sender.bench.test".into(),
        recipients,
        threat_id: format!("{:064x}", n / 4),
        threat_url: format!("https://mailbox-{}.phish.bench.test/login", n / 4),
    }
}

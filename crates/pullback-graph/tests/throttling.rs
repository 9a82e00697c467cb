//! Throttling: storms of 429 and 503 are waited out, requests throttled inside a batch are
//! sent again, and the client stays within four concurrent requests and the request budget
//! per mailbox, so the local Graph (which enforces both) never has to refuse it.

mod support;

use pullback_domain::RecipientStatus;
use pullback_graph::Limits;
use pullback_graph::testing::{Fault, FaultRule, LocalGraphConfig};
use pullback_mailbox::MailboxBackend;
use std::time::Duration;
use support::*;

fn storm(status: u16, times: usize) -> FaultRule {
    FaultRule {
        mailbox: Some(ALICE.into()),
        fault: Fault::Throttle {
            status,
            retry_after_secs: Some(0.05),
        },
        times,
    }
}

#[tokio::test]
async fn a_storm_of_429_and_503_is_waited_out() {
    let graph = graph().await;
    let backend = backend(&graph);
    graph.deliver(ALICE, "inbox", &phish("<storm@evil.example>"));
    graph.inject(storm(429, 15));
    graph.inject(storm(503, 15));
    let outcome = backend
        .quarantine(ALICE, &target("storm@evil.example"))
        .await;
    assert_eq!(outcome.status, RecipientStatus::Quarantined, "{outcome:?}");
    assert_eq!(
        graph.folders_of(ALICE, "<storm@evil.example>"),
        ["Quarantine"]
    );
    assert!(
        backend.client().stats().throttled >= 30,
        "{:?}",
        backend.client().stats()
    );
}

#[tokio::test]
async fn requests_throttled_inside_a_batch_go_again_alone() {
    let graph = graph().await;
    let backend = backend(&graph);
    graph.deliver(ALICE, "inbox", &phish("<inner@evil.example>"));
    graph.deliver(ALICE, "archive", &phish("<inner@evil.example>"));
    let target = target("inner@evil.example");
    assert_eq!(
        backend.quarantine(ALICE, &target).await.status,
        RecipientStatus::Quarantined
    );

    // The restore's first batch holds the lookups; the throttled ones are asked again and
    // the others are not asked twice.
    let before = graph.stats().requests;
    graph.inject(storm(429, 1));
    let outcome = backend.restore(ALICE, &target).await;
    assert_eq!(outcome.status, RecipientStatus::Restored, "{outcome:?}");
    let stats = graph.stats();
    // The lookup (3 requests, one throttled and asked again), then the moves back (2 folder
    // lookups and 2 moves).
    assert_eq!(stats.requests - before, 3 + 1 + 4, "{stats:?}");
    assert_eq!(
        graph.folders_of(ALICE, "<inner@evil.example>"),
        ["Archive", "Inbox"]
    );
}

#[tokio::test]
async fn the_client_never_runs_more_than_four_requests_on_one_mailbox() {
    let graph = graph_with(LocalGraphConfig {
        latency: Duration::from_millis(40),
        ..LocalGraphConfig::default()
    })
    .await;
    let backend = backend(&graph);
    let mut runs = Vec::new();
    for i in 0..12 {
        let id = format!("<parallel{i}@evil.example>");
        graph.deliver(ALICE, "inbox", &phish(&id));
        let backend = backend.clone();
        runs.push(tokio::spawn(async move {
            backend.quarantine(ALICE, &target(&id)).await
        }));
    }
    for run in runs {
        let outcome = run.await.expect("a run");
        assert_eq!(outcome.status, RecipientStatus::Quarantined, "{outcome:?}");
    }
    let stats = graph.stats();
    assert_eq!(stats.over_concurrency, 0, "{stats:?}");
    assert_eq!(stats.max_in_flight, 4, "{stats:?}");
}

#[tokio::test]
async fn the_client_paces_itself_to_the_request_budget() {
    let limits = Limits {
        concurrent: 4,
        requests: 100,
        window: Duration::from_secs(2),
    };
    let graph = graph_with(LocalGraphConfig {
        limits,
        ..LocalGraphConfig::default()
    })
    .await;
    let backend = backend(&graph);
    let started = std::time::Instant::now();
    for i in 0..30 {
        let id = format!("<paced{i}@evil.example>");
        graph.deliver(ALICE, "inbox", &phish(&id));
        let outcome = backend.quarantine(ALICE, &target(&id)).await;
        assert_eq!(outcome.status, RecipientStatus::Quarantined, "{outcome:?}");
    }
    let stats = graph.stats();
    assert_eq!(stats.over_budget, 0, "{stats:?}");
    // 30 quarantines of 4 requests each, 100 per 2 s: at least a second of pacing.
    assert!(stats.requests >= 120, "{stats:?}");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );

    // Bob's mailbox has a budget of its own.
    graph.deliver(BOB, "inbox", &phish("<bob@evil.example>"));
    let outcome = backend.quarantine(BOB, &target("bob@evil.example")).await;
    assert_eq!(outcome.status, RecipientStatus::Quarantined, "{outcome:?}");
}

#[tokio::test]
async fn a_client_that_overspends_is_told_to_wait_and_then_finishes() {
    let graph = graph_with(LocalGraphConfig {
        limits: Limits {
            concurrent: 4,
            requests: 12,
            window: Duration::from_secs(2),
        },
        ..LocalGraphConfig::default()
    })
    .await;
    // A client that believes Microsoft's full budget applies.
    let mut config = graph.secret_config();
    config.limits = Limits::default();
    let backend = backend_with(config);
    for i in 0..6 {
        let id = format!("<over{i}@evil.example>");
        graph.deliver(ALICE, "inbox", &phish(&id));
        let outcome = backend.quarantine(ALICE, &target(&id)).await;
        assert_eq!(outcome.status, RecipientStatus::Quarantined, "{outcome:?}");
    }
    assert!(graph.stats().over_budget > 0, "{:?}", graph.stats());
}

#[tokio::test]
async fn throttling_longer_than_allowed_fails_saying_so() {
    let graph = graph().await;
    let mut config = graph.secret_config();
    config.max_throttled = Duration::from_millis(500);
    let backend = backend_with(config);
    graph.inject(FaultRule {
        mailbox: Some(ALICE.into()),
        fault: Fault::Throttle {
            status: 429,
            retry_after_secs: Some(3600.0),
        },
        times: 1,
    });
    let outcome = backend
        .quarantine(ALICE, &target("long@evil.example"))
        .await;
    assert_eq!(outcome.status, RecipientStatus::Failed, "{outcome:?}");
    assert!(
        outcome.details.contains("still throttled"),
        "{}",
        outcome.details
    );
}

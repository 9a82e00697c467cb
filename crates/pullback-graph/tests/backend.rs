//! The Graph backend against the local Graph: outcomes like IMAP's, every copy found, undo,
//! deletes, renamed and vanished folders, bad answers.

mod support;

use pullback_domain::{RecipientStatus, TimeWindow};
use pullback_graph::testing::{Fault, FaultRule, NewMessage};
use pullback_mailbox::{Deletion, MailboxBackend};
use support::*;

fn check(outcome: &pullback_domain::RecipientOutcome, status: RecipientStatus, words: &[&str]) {
    assert_eq!(outcome.status, status, "{outcome:?}");
    for word in words {
        assert!(
            outcome.details.contains(word),
            "{word:?} not in {:?}",
            outcome.details
        );
    }
}

#[tokio::test]
async fn quarantine_takes_every_copy_and_restore_puts_each_back_where_it_was() {
    let graph = graph().await;
    let backend = backend(&graph);
    graph.deliver(ALICE, "inbox", &phish("<copies@evil.example>"));
    graph.deliver(ALICE, "archive", &phish("<copies@evil.example>"));
    let target = target("copies@evil.example");

    let outcome = backend.quarantine(ALICE, &target).await;
    check(
        &outcome,
        RecipientStatus::Quarantined,
        &["moved 2 copies", "Archive and Inbox", "to Quarantine"],
    );
    assert_eq!(outcome.is_read, Some(false));
    assert_eq!(
        graph.folders_of(ALICE, "<copies@evil.example>"),
        ["Quarantine", "Quarantine"]
    );
    assert_eq!(
        graph.is_hidden(ALICE, "Quarantine"),
        Some(true),
        "users must not see it"
    );

    let again = backend.quarantine(ALICE, &target).await;
    check(
        &again,
        RecipientStatus::AlreadyInDestination,
        &["2 copies already in Quarantine"],
    );

    let restored = backend.restore(ALICE, &target).await;
    check(
        &restored,
        RecipientStatus::Restored,
        &["moved 2 copies from Quarantine to"],
    );
    assert_eq!(
        graph.folders_of(ALICE, "<copies@evil.example>"),
        ["Archive", "Inbox"]
    );
    let again = backend.restore(ALICE, &target).await;
    check(
        &again,
        RecipientStatus::AlreadyInDestination,
        &["2 copies already out of Quarantine"],
    );
}

#[tokio::test]
async fn a_different_message_with_the_same_id_is_left_alone() {
    let graph = graph().await;
    let backend = backend(&graph);
    let other = NewMessage::new(
        "<shared@x.example>",
        "Team lunch",
        "colleague@contoso.example",
    );
    graph.deliver(ALICE, "inbox", &other);
    let outcome = backend.quarantine(ALICE, &target("shared@x.example")).await;
    check(
        &outcome,
        RecipientStatus::NotFound,
        &["matched a different message", "1 with another subject"],
    );
    assert_eq!(graph.folders_of(ALICE, "<shared@x.example>"), ["Inbox"]);

    graph.deliver(ALICE, "inbox", &phish("<shared@x.example>"));
    let outcome = backend.quarantine(ALICE, &target("shared@x.example")).await;
    check(&outcome, RecipientStatus::Quarantined, &["moved 1 copy"]);
    assert_eq!(
        graph.folders_of(ALICE, "<shared@x.example>"),
        ["Inbox", "Quarantine"]
    );

    let missing = backend.quarantine(BOB, &target("shared@x.example")).await;
    check(
        &missing,
        RecipientStatus::NotFound,
        &["no message with Message-ID <shared@x.example>", BOB],
    );
}

#[tokio::test]
async fn ids_with_quotes_and_odd_characters_are_found() {
    let graph = graph().await;
    let backend = backend(&graph);
    let id = "<o'brien+1%&#x@evil.example>";
    graph.deliver(ALICE, "inbox", &phish(id));
    let outcome = backend.quarantine(ALICE, &target(id)).await;
    check(&outcome, RecipientStatus::Quarantined, &["moved 1 copy"]);
}

#[tokio::test]
async fn many_copies_are_paged_through_and_moved_in_batches_of_twenty() {
    let graph = graph().await;
    let backend = backend(&graph);
    for _ in 0..13 {
        graph.deliver(ALICE, "inbox", &phish("<many@evil.example>"));
    }
    let outcome = backend
        .quarantine(ALICE, &target("many@evil.example"))
        .await;
    check(&outcome, RecipientStatus::Quarantined, &["moved 13 copies"]);
    assert_eq!(
        graph.folders_of(ALICE, "<many@evil.example>"),
        vec!["Quarantine"; 13]
    );
}

#[tokio::test]
async fn similar_copies_under_new_ids_are_taken_too() {
    let graph = graph().await;
    let backend = backend(&graph);
    graph.deliver(ALICE, "inbox", &phish("<first@evil.example>"));
    graph.deliver(ALICE, "inbox", &phish("<resent@evil.example>"));
    let mut target = target("first@evil.example");
    let now = chrono::Utc::now();
    target.fingerprint.similar_within = Some(TimeWindow {
        since: now - chrono::TimeDelta::hours(1),
        until: now + chrono::TimeDelta::hours(1),
    });
    let outcome = backend.quarantine(ALICE, &target).await;
    check(&outcome, RecipientStatus::Quarantined, &["moved 2 copies"]);
    assert_eq!(
        graph.folders_of(ALICE, "<resent@evil.example>"),
        ["Quarantine"]
    );
}

#[tokio::test]
async fn soft_delete_goes_to_recoverable_items_and_comes_back() {
    let graph = graph().await;
    let backend = backend(&graph);
    graph.deliver(ALICE, "inbox", &phish("<soft@evil.example>"));
    let target = target("soft@evil.example");

    let deleted = backend.delete(ALICE, &target, Deletion::Soft).await;
    check(
        &deleted,
        RecipientStatus::Quarantined,
        &["Recoverable Items", "soft delete"],
    );
    assert_eq!(
        graph.folders_of(ALICE, "<soft@evil.example>"),
        ["Deletions"]
    );
    let again = backend.delete(ALICE, &target, Deletion::Soft).await;
    check(
        &again,
        RecipientStatus::AlreadyInDestination,
        &["already in Recoverable Items"],
    );

    let back = backend.restore_deleted(ALICE, &target).await;
    check(
        &back,
        RecipientStatus::Restored,
        &["from Recoverable Items to Inbox"],
    );
    assert_eq!(graph.folders_of(ALICE, "<soft@evil.example>"), ["Inbox"]);
}

#[tokio::test]
async fn hard_delete_purges_every_copy_and_says_it_cannot_be_undone() {
    let graph = graph().await;
    let backend = backend(&graph);
    graph.deliver(ALICE, "inbox", &phish("<hard@evil.example>"));
    graph.deliver(ALICE, "archive", &phish("<hard@evil.example>"));
    let target = target("hard@evil.example");
    let deleted = backend.delete(ALICE, &target, Deletion::Hard).await;
    check(
        &deleted,
        RecipientStatus::Quarantined,
        &["permanently deleted 2 copies", "cannot be undone"],
    );
    assert_eq!(
        graph.folders_of(ALICE, "<hard@evil.example>"),
        ["Purges", "Purges"]
    );
    let again = backend.delete(ALICE, &target, Deletion::Hard).await;
    check(
        &again,
        RecipientStatus::AlreadyInDestination,
        &["already permanently deleted"],
    );
    let restore = backend.restore_deleted(ALICE, &target).await;
    assert_ne!(restore.status, RecipientStatus::Restored, "{restore:?}");
}

#[tokio::test]
async fn a_renamed_quarantine_folder_is_still_recognised() {
    let graph = graph().await;
    let backend = backend(&graph);
    graph.deliver(ALICE, "inbox", &phish("<renamed@evil.example>"));
    let target = target("renamed@evil.example");
    check(
        &backend.quarantine(ALICE, &target).await,
        RecipientStatus::Quarantined,
        &[],
    );
    graph.rename_folder(ALICE, "Quarantine", "Old stuff");

    let again = backend.quarantine(ALICE, &target).await;
    check(&again, RecipientStatus::AlreadyInDestination, &["renamed"]);
    let restored = backend.restore(ALICE, &target).await;
    check(
        &restored,
        RecipientStatus::Restored,
        &["to Inbox", "renamed"],
    );
    assert_eq!(graph.folders_of(ALICE, "<renamed@evil.example>"), ["Inbox"]);
}

#[tokio::test]
async fn a_copy_whose_folder_is_gone_is_restored_to_the_inbox() {
    let graph = graph().await;
    let backend = backend(&graph);
    graph.create_folder(ALICE, "Projects");
    graph.deliver(ALICE, "Projects", &phish("<orphan@evil.example>"));
    let target = target("orphan@evil.example");
    check(
        &backend.quarantine(ALICE, &target).await,
        RecipientStatus::Quarantined,
        &["from Projects"],
    );
    graph.delete_folder(ALICE, "Projects");
    let restored = backend.restore(ALICE, &target).await;
    check(
        &restored,
        RecipientStatus::Restored,
        &["no longer exists", "Inbox"],
    );
    assert_eq!(graph.folders_of(ALICE, "<orphan@evil.example>"), ["Inbox"]);
}

#[tokio::test]
async fn unknown_and_disabled_mailboxes_fail_naming_them() {
    let graph = graph().await;
    let backend = backend(&graph);
    let target = target("any@evil.example");
    let unknown = backend.quarantine("nobody@contoso.example", &target).await;
    check(
        &unknown,
        RecipientStatus::Failed,
        &[
            "nobody@contoso.example was not found",
            "404 ErrorInvalidUser",
        ],
    );
    graph.disable_mailbox(BOB);
    let disabled = backend.quarantine(BOB, &target).await;
    check(
        &disabled,
        RecipientStatus::Failed,
        &[BOB, "MailboxNotEnabledForRESTAPI"],
    );
}

#[tokio::test]
async fn a_malformed_answer_fails_clearly() {
    let graph = graph().await;
    let backend = backend(&graph);
    graph.deliver(ALICE, "inbox", &phish("<bad@evil.example>"));
    graph.inject(FaultRule {
        mailbox: Some(ALICE.into()),
        fault: Fault::Malformed,
        times: 1,
    });
    let outcome = backend.quarantine(ALICE, &target("bad@evil.example")).await;
    check(
        &outcome,
        RecipientStatus::Failed,
        &[ALICE, "not the JSON expected"],
    );
    assert_eq!(graph.folders_of(ALICE, "<bad@evil.example>"), ["Inbox"]);
}

#[tokio::test]
async fn a_graph_that_does_not_answer_in_time_fails_after_its_attempts() {
    let graph = graph().await;
    let mut config = graph.secret_config();
    config.timeout = std::time::Duration::from_millis(300);
    config.attempts = 2;
    let backend = backend_with(config);
    let slow = Fault::Slow(std::time::Duration::from_secs(2));
    graph.inject(FaultRule {
        mailbox: Some(ALICE.into()),
        fault: slow,
        times: 10,
    });
    let outcome = backend
        .quarantine(ALICE, &target("slow@evil.example"))
        .await;
    check(
        &outcome,
        RecipientStatus::Failed,
        &[ALICE, "no answer within 300ms, 2 times"],
    );
}

#[tokio::test]
async fn an_error_answer_names_the_code_and_message() {
    let graph = graph().await;
    let backend = backend(&graph);
    graph.deliver(ALICE, "inbox", &phish("<denied@evil.example>"));
    graph.set_roles(&["User.Read.All"]);
    let outcome = backend
        .quarantine(ALICE, &target("denied@evil.example"))
        .await;
    check(
        &outcome,
        RecipientStatus::Failed,
        &["403", "ErrorAccessDenied", "Mail.ReadWrite"],
    );
}

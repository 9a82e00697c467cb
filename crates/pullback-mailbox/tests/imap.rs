//! The IMAP backend against a private Dovecot, on real phishing messages.

mod support;

use pullback_mailbox::testing::{Dovecot, DovecotMessage, DovecotOptions, MASTER_PASSWORD};
use pullback_mailbox::{
    ImapBackend, ImapConfig, MailboxBackend, MessageTarget, RecipientOutcome, RecipientStatus,
    TlsMode,
};
use support::*;

fn backend(config: ImapConfig) -> ImapBackend {
    ImapBackend::new(config).expect("a valid IMAP configuration")
}

fn assert_status(outcome: &RecipientOutcome, status: RecipientStatus) {
    assert_eq!(outcome.status, status, "{outcome:?}");
    assert_eq!(outcome.recipient, ALICE);
}

fn subjects(messages: &[DovecotMessage]) -> Vec<&str> {
    messages.iter().map(|m| m.subject.as_str()).collect()
}

#[tokio::test]
async fn quarantine_and_restore_a_real_phishing_message_idempotently() {
    let dovecot = Dovecot::start(&[ALICE]);
    let other = phish("sample-1006.eml");
    dovecot.deliver(ALICE, "INBOX", &other);
    dovecot.deliver(ALICE, "INBOX", &phish("sample-14.eml"));
    dovecot.add_flag(ALICE, "INBOX", SAMPLE_14_ID, "\\Seen");
    assert!(!dovecot.folders(ALICE).contains(&"Quarantine".to_owned()));
    let imap = backend(dovecot.imap_config());
    let target = target(
        SAMPLE_14_ID,
        Some(SAMPLE_14_SUBJECT),
        Some("registration@and.co.uk"),
    );

    let first = imap.quarantine(ALICE, &target).await;
    assert_status(&first, RecipientStatus::Quarantined);
    assert_eq!(first.is_read, Some(true));
    assert!(dovecot.folders(ALICE).contains(&"Quarantine".to_owned()));
    assert_eq!(dovecot.message_ids(ALICE, "Quarantine"), [SAMPLE_14_ID]);
    assert_eq!(dovecot.message_ids(ALICE, "INBOX"), [id_of(&other)]);

    let second = imap.quarantine(ALICE, &target).await;
    assert_status(&second, RecipientStatus::AlreadyInDestination);
    assert_eq!(second.is_read, Some(true));
    assert_eq!(dovecot.message_ids(ALICE, "Quarantine"), [SAMPLE_14_ID]);
    assert_eq!(dovecot.message_ids(ALICE, "INBOX"), [id_of(&other)]);

    let restored = imap.restore(ALICE, &target).await;
    assert_status(&restored, RecipientStatus::Restored);
    assert_eq!(
        dovecot.message_ids(ALICE, "INBOX"),
        [id_of(&other), SAMPLE_14_ID.to_owned()]
    );
    assert!(dovecot.message_ids(ALICE, "Quarantine").is_empty());

    let again = imap.restore(ALICE, &target).await;
    assert_status(&again, RecipientStatus::AlreadyInDestination);
    assert_eq!(dovecot.message_ids(ALICE, "INBOX").len(), 2);
}

#[tokio::test]
async fn copy_fallback_moves_exactly_that_message() {
    let dovecot = Dovecot::start(&[ALICE]);
    let others = [
        phish("sample-1006.eml"),
        phish("sample-3863.eml"),
        phish("sample-423.eml"),
    ];
    dovecot.deliver(ALICE, "INBOX", &others[0]);
    dovecot.deliver(ALICE, "INBOX", &phish("sample-14.eml"));
    dovecot.deliver(ALICE, "INBOX", &others[1]);
    dovecot.deliver(ALICE, "INBOX", &others[2]);
    // A message the user marked deleted but did not expunge must survive our UID EXPUNGE.
    dovecot.add_flag(ALICE, "INBOX", &id_of(&others[2]), "\\Deleted");
    let mut config = dovecot.imap_config();
    config.force_copy_fallback = true;
    let imap = backend(config);
    let target = target(SAMPLE_14_ID, Some(SAMPLE_14_SUBJECT), None);

    let outcome = imap.quarantine(ALICE, &target).await;
    assert_status(&outcome, RecipientStatus::Quarantined);
    assert_eq!(outcome.is_read, Some(false));
    assert_eq!(dovecot.message_ids(ALICE, "Quarantine"), [SAMPLE_14_ID]);
    let inbox = dovecot.messages(ALICE, "INBOX");
    let expected: Vec<String> = others.iter().map(|m| id_of(m)).collect();
    assert_eq!(
        inbox
            .iter()
            .map(|m| m.message_id.clone())
            .collect::<Vec<_>>(),
        expected
    );
    assert!(inbox[2].flags.contains("\\Deleted"), "{inbox:?}");

    assert_status(
        &imap.quarantine(ALICE, &target).await,
        RecipientStatus::AlreadyInDestination,
    );
    assert_status(
        &imap.restore(ALICE, &target).await,
        RecipientStatus::Restored,
    );
    assert_eq!(dovecot.message_ids(ALICE, "INBOX").len(), 4);
    assert!(dovecot.message_ids(ALICE, "Quarantine").is_empty());
}

#[tokio::test]
async fn shared_message_id_moves_only_the_fingerprinted_message() {
    let dovecot = Dovecot::start(&[ALICE]);
    dovecot.deliver(ALICE, "INBOX", &phish("sample-3690.eml"));
    dovecot.deliver(ALICE, "INBOX", &phish("sample-3744.eml"));
    let imap = backend(dovecot.imap_config());

    let neither = target(SHARED_ID, Some("An unrelated subject"), None);
    let outcome = imap.quarantine(ALICE, &neither).await;
    assert_status(&outcome, RecipientStatus::NotFound);
    assert!(
        outcome.details.contains("matched a different message"),
        "{}",
        outcome.details
    );
    assert_eq!(dovecot.messages(ALICE, "INBOX").len(), 2);

    let one = target(
        SHARED_ID,
        Some(SUBJECT_3744),
        Some("yasmin.kolmitz@iptesetxkeys.com"),
    );
    assert_status(
        &imap.quarantine(ALICE, &one).await,
        RecipientStatus::Quarantined,
    );
    assert_eq!(subjects(&dovecot.messages(ALICE, "INBOX")), [SUBJECT_3690]);
    assert_eq!(dovecot.messages(ALICE, "Quarantine").len(), 1);
    assert_status(
        &imap.quarantine(ALICE, &one).await,
        RecipientStatus::AlreadyInDestination,
    );
    assert_eq!(subjects(&dovecot.messages(ALICE, "INBOX")), [SUBJECT_3690]);
}

#[tokio::test]
async fn a_copy_cut_before_its_expunge_is_finished_without_a_duplicate() {
    let dovecot = Dovecot::start(&[ALICE]);
    dovecot.deliver(ALICE, "INBOX", &phish("sample-14.eml"));
    dovecot.deliver(ALICE, "INBOX", &phish("sample-1006.eml"));
    let target = target(SAMPLE_14_ID, Some(SAMPLE_14_SUBJECT), None);
    // What a run killed between UID COPY and UID EXPUNGE leaves behind: a copy in each folder.
    let moved = backend(dovecot.imap_config())
        .quarantine(ALICE, &target)
        .await;
    assert_status(&moved, RecipientStatus::Quarantined);
    dovecot.deliver(ALICE, "INBOX", &phish("sample-14.eml"));
    let mut config = dovecot.imap_config();
    config.force_copy_fallback = true;
    let imap = backend(config);

    let outcome = imap.quarantine(ALICE, &target).await;
    assert_status(&outcome, RecipientStatus::AlreadyInDestination);
    assert_eq!(dovecot.message_ids(ALICE, "Quarantine"), [SAMPLE_14_ID]);
    assert_eq!(
        dovecot.message_ids(ALICE, "INBOX"),
        [id_of(&phish("sample-1006.eml"))]
    );
    let again = imap.quarantine(ALICE, &target).await;
    assert_status(&again, RecipientStatus::AlreadyInDestination);
    assert_eq!(dovecot.messages(ALICE, "Quarantine").len(), 1);
}

#[tokio::test]
async fn without_a_fingerprint_every_copy_moves() {
    let dovecot = Dovecot::start(&[ALICE]);
    dovecot.deliver(ALICE, "INBOX", &phish("sample-3690.eml"));
    dovecot.deliver(ALICE, "INBOX", &phish("sample-3744.eml"));
    let imap = backend(dovecot.imap_config());

    let outcome = imap.quarantine(ALICE, &target(SHARED_ID, None, None)).await;
    assert_status(&outcome, RecipientStatus::Quarantined);
    assert!(
        outcome.details.contains("moved 2 copies"),
        "{}",
        outcome.details
    );
    assert!(dovecot.messages(ALICE, "INBOX").is_empty());
    assert_eq!(dovecot.messages(ALICE, "Quarantine").len(), 2);
}

#[tokio::test]
async fn message_ids_with_or_without_brackets_and_odd_characters_are_found() {
    let dovecot = Dovecot::start(&[ALICE]);
    let odd = fixture("odd-message-id.eml");
    let quoted = fixture("quoted-message-id.eml");
    dovecot.deliver(ALICE, "INBOX", &phish("sample-14.eml"));
    dovecot.deliver(ALICE, "INBOX", &odd);
    dovecot.deliver(ALICE, "INBOX", &quoted);
    let imap = backend(dovecot.imap_config());

    let bare = SAMPLE_14_ID.trim_start_matches('<').trim_end_matches('>');
    let cases = [
        (SAMPLE_14_ID.to_owned(), RecipientStatus::Quarantined),
        (bare.to_owned(), RecipientStatus::AlreadyInDestination),
        (id_of(&odd), RecipientStatus::Quarantined),
        (id_of(&quoted), RecipientStatus::Quarantined),
    ];
    for (id, status) in cases {
        let outcome = imap.quarantine(ALICE, &target(&id, None, None)).await;
        assert_eq!(outcome.status, status, "{id}: {outcome:?}");
    }
    assert!(dovecot.messages(ALICE, "INBOX").is_empty());
    assert_eq!(dovecot.messages(ALICE, "Quarantine").len(), 3);
}

#[tokio::test]
async fn missing_message_is_not_found_and_a_wrong_password_fails() {
    let dovecot = Dovecot::start(&[ALICE]);
    dovecot.deliver(ALICE, "INBOX", &phish("sample-1006.eml"));
    let target = target("<never-delivered@nowhere.example>", None, None);

    let outcome = backend(dovecot.imap_config())
        .quarantine(ALICE, &target)
        .await;
    assert_status(&outcome, RecipientStatus::NotFound);
    assert!(
        outcome.details.contains("never-delivered@nowhere.example"),
        "{}",
        outcome.details
    );

    let mut config = dovecot.imap_config();
    config.master_password = format!("wrong-{MASTER_PASSWORD}");
    let outcome = backend(config.clone()).quarantine(ALICE, &target).await;
    assert_status(&outcome, RecipientStatus::Failed);
    assert!(
        outcome
            .details
            .contains("login refused for alice@example.test"),
        "{}",
        outcome.details
    );
    assert!(
        !outcome.details.contains(&config.master_password),
        "{}",
        outcome.details
    );

    let outcome = backend(dovecot.imap_config())
        .quarantine("nobody@example.test", &target)
        .await;
    assert_eq!(outcome.status, RecipientStatus::Failed, "{outcome:?}");
    assert!(
        outcome.details.contains("nobody@example.test"),
        "{}",
        outcome.details
    );
    assert_eq!(dovecot.messages(ALICE, "INBOX").len(), 1);
}

#[tokio::test]
async fn refused_copy_leaves_the_message_in_the_inbox() {
    // 23 KB of mail under a 40 KiB quota: Dovecot refuses a second copy.
    let options = DovecotOptions {
        quota_kib: Some(40),
        ..DovecotOptions::default()
    };
    let dovecot = Dovecot::start_with(&[ALICE], &options);
    dovecot.deliver(ALICE, "INBOX", &phish("sample-14.eml"));
    let target = target(SAMPLE_14_ID, None, None);
    let mut config = dovecot.imap_config();
    config.force_copy_fallback = true;

    let outcome = backend(config).quarantine(ALICE, &target).await;
    assert_status(&outcome, RecipientStatus::Failed);
    assert!(
        outcome
            .details
            .contains("UID COPY from INBOX to Quarantine refused"),
        "{}",
        outcome.details
    );
    assert!(outcome.details.contains("OVERQUOTA"), "{}", outcome.details);
    assert_eq!(dovecot.message_ids(ALICE, "INBOX"), [SAMPLE_14_ID]);
    assert!(dovecot.messages(ALICE, "Quarantine").is_empty());

    // Dovecot does not charge a MOVE against the quota, so the same job succeeds with it.
    let outcome = backend(dovecot.imap_config())
        .quarantine(ALICE, &target)
        .await;
    assert_status(&outcome, RecipientStatus::Quarantined);
    assert_eq!(dovecot.message_ids(ALICE, "Quarantine"), [SAMPLE_14_ID]);
}

#[tokio::test]
async fn a_quarantine_folder_the_server_refuses_fails_without_moving() {
    let dovecot = Dovecot::start(&[ALICE]);
    dovecot.deliver(ALICE, "INBOX", &phish("sample-14.eml"));
    let target = MessageTarget {
        quarantine_folder: "Quar/antine".to_owned(),
        ..target(SAMPLE_14_ID, None, None)
    };
    for force_copy_fallback in [false, true] {
        let config = ImapConfig {
            force_copy_fallback,
            ..dovecot.imap_config()
        };
        let outcome = backend(config).quarantine(ALICE, &target).await;
        assert_status(&outcome, RecipientStatus::Failed);
        assert!(
            outcome.details.contains("folder Quar/antine refused"),
            "{}",
            outcome.details
        );
        assert_eq!(dovecot.message_ids(ALICE, "INBOX"), [SAMPLE_14_ID]);
    }
}

#[tokio::test]
async fn tls_and_starttls_verify_the_server_against_the_configured_ca() {
    let options = DovecotOptions {
        tls: true,
        ..DovecotOptions::default()
    };
    let dovecot = Dovecot::start_with(&[ALICE], &options);
    dovecot.deliver(ALICE, "INBOX", &phish("sample-14.eml"));
    let target = target(SAMPLE_14_ID, None, None);

    let starttls = ImapConfig {
        tls: TlsMode::Starttls,
        ca_file: dovecot.ca_file(),
        ..dovecot.imap_config()
    };
    assert_status(
        &backend(starttls).quarantine(ALICE, &target).await,
        RecipientStatus::Quarantined,
    );

    let port = dovecot.tls_port().expect("a TLS port");
    let implicit = ImapConfig {
        tls: TlsMode::Tls,
        port,
        ca_file: dovecot.ca_file(),
        ..dovecot.imap_config()
    };
    assert_status(
        &backend(implicit.clone()).restore(ALICE, &target).await,
        RecipientStatus::Restored,
    );

    // Without the test CA, the public roots do not vouch for the server.
    let untrusted = ImapConfig {
        ca_file: None,
        ..implicit
    };
    let outcome = backend(untrusted).quarantine(ALICE, &target).await;
    assert_status(&outcome, RecipientStatus::Failed);
    assert!(
        outcome.details.contains("TLS handshake"),
        "{}",
        outcome.details
    );
    assert_eq!(dovecot.message_ids(ALICE, "INBOX"), [SAMPLE_14_ID]);
}

/// An abuse mailbox read as an inbox: reports come out whole, oldest first, unread; filing
/// them away moves them; and a reply delivered over LMTP lands in the reporter's inbox.
#[tokio::test]
async fn reports_are_taken_whole_filed_away_and_replies_delivered() {
    let dovecot = Dovecot::start(&["abuse@corp.test", "alice@corp.test"]);
    let first = phish("sample-1006.eml");
    let second = phish("sample-1261.eml");
    dovecot.deliver("abuse@corp.test", "INBOX", &first);
    dovecot.deliver("abuse@corp.test", "INBOX", &second);
    let mut config = dovecot.imap_config();
    config.tls = TlsMode::None;
    let backend = ImapBackend::new(config).unwrap();

    let taken = backend
        .take_messages("abuse@corp.test", "INBOX", 10)
        .await
        .unwrap();
    assert_eq!(taken.len(), 2);
    assert_eq!(
        taken[0].1.len(),
        first.len(),
        "the first report, byte for byte"
    );
    assert!(taken[1].1.ends_with(&second[second.len() - 20..]));
    let limited = backend
        .take_messages("abuse@corp.test", "INBOX", 1)
        .await
        .unwrap();
    assert_eq!(limited.len(), 1);

    let uids: Vec<u32> = taken.iter().map(|(uid, _)| *uid).collect();
    backend
        .file_away("abuse@corp.test", "INBOX", &uids, "Processed")
        .await
        .unwrap();
    assert!(dovecot.messages("abuse@corp.test", "INBOX").is_empty());
    assert_eq!(dovecot.messages("abuse@corp.test", "Processed").len(), 2);
    let none = backend
        .take_messages("abuse@corp.test", "INBOX", 10)
        .await
        .unwrap();
    assert!(none.is_empty());

    let smtp = pullback_mailbox::smtp::SmtpConfig {
        host: "127.0.0.1".into(),
        port: dovecot.lmtp_port(),
        protocol: pullback_mailbox::smtp::Protocol::Lmtp,
        hello_name: "pullback.test".into(),
        timeout: std::time::Duration::from_secs(10),
    };
    let reply = pullback_mailbox::smtp::compose(
        "Pullback <pullback@corp.test>",
        "alice@corp.test",
        "Your report: malicious (déjà vu)",
        Some("report-1@corp.test"),
        "Thank you.\n.\nA line that starts with a dot survives.",
        "reply-1@pullback.test",
    );
    pullback_mailbox::smtp::send(
        &smtp,
        "pullback@corp.test",
        &["alice@corp.test".into()],
        &reply,
    )
    .await
    .unwrap();
    let inbox = dovecot.messages("alice@corp.test", "INBOX");
    assert_eq!(inbox.len(), 1);
    assert_eq!(inbox[0].message_id, "<reply-1@pullback.test>");
    // An unknown recipient is refused, with the server's words.
    let refused = pullback_mailbox::smtp::send(
        &smtp,
        "pullback@corp.test",
        &["nobody@corp.test".into()],
        &reply,
    )
    .await
    .unwrap_err();
    assert!(refused.contains("RCPT TO"), "{refused}");
}

#[tokio::test]
async fn a_soft_delete_goes_to_the_trash_and_comes_back_and_a_hard_one_is_refused() {
    use pullback_mailbox::Deletion;
    let dovecot = Dovecot::start(&[ALICE]);
    dovecot.deliver(ALICE, "INBOX", &phish("sample-14.eml"));
    let imap = backend(dovecot.imap_config());
    let target = target(SAMPLE_14_ID, Some(SAMPLE_14_SUBJECT), None);

    let hard = imap.delete(ALICE, &target, Deletion::Hard).await;
    assert_status(&hard, RecipientStatus::Failed);
    assert!(
        hard.details.contains("cannot delete messages for good"),
        "{hard:?}"
    );
    assert_eq!(dovecot.message_ids(ALICE, "INBOX"), [SAMPLE_14_ID]);

    let soft = imap.delete(ALICE, &target, Deletion::Soft).await;
    assert_status(&soft, RecipientStatus::Quarantined);
    assert!(soft.details.contains("to Trash"), "{soft:?}");
    assert_eq!(dovecot.message_ids(ALICE, "Trash"), [SAMPLE_14_ID]);
    let again = imap.delete(ALICE, &target, Deletion::Soft).await;
    assert_status(&again, RecipientStatus::AlreadyInDestination);

    let back = imap.restore_deleted(ALICE, &target).await;
    assert_status(&back, RecipientStatus::Restored);
    assert_eq!(dovecot.message_ids(ALICE, "INBOX"), [SAMPLE_14_ID]);
    assert!(dovecot.message_ids(ALICE, "Trash").is_empty());
}

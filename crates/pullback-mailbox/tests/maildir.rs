//! The Maildir backend on real messages in a temporary folder.

mod support;

use pullback_mailbox::maildir::StoredMessage;
use pullback_mailbox::{MailboxBackend, MaildirBackend, MessageTarget, RecipientStatus};
use std::fs;
use std::path::PathBuf;
use support::*;
use tempfile::TempDir;

/// A Maildir root in a temporary folder, removed when dropped.
struct Store {
    _dir: TempDir,
    backend: MaildirBackend,
}

impl Store {
    fn new() -> Store {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let backend = MaildirBackend::new(dir.path().to_owned());
        Store { _dir: dir, backend }
    }

    fn deliver(&self, message: &[u8]) -> PathBuf {
        self.backend
            .deliver(ALICE, "INBOX", message)
            .expect("delivery")
    }

    fn messages(&self, folder: &str) -> Vec<StoredMessage> {
        self.backend
            .messages(ALICE, folder)
            .expect("a readable folder")
    }

    fn ids(&self, folder: &str) -> Vec<String> {
        let ids = self
            .messages(folder)
            .into_iter()
            .filter_map(|m| m.headers.message_id);
        let mut ids: Vec<String> = ids.map(|id| id.bracketed()).collect();
        ids.sort();
        ids
    }

    fn subjects(&self, folder: &str) -> Vec<String> {
        self.messages(folder)
            .into_iter()
            .filter_map(|m| m.headers.subject)
            .collect()
    }
}

#[tokio::test]
async fn quarantine_and_restore_a_real_phishing_message_idempotently() {
    let store = Store::new();
    let other = phish("sample-1006.eml");
    store.deliver(&other);
    store.deliver(&phish("sample-14.eml"));
    let quarantine_dir = store
        .backend
        .folder_dir(ALICE, "Quarantine")
        .expect("a valid folder");
    assert!(!quarantine_dir.exists());
    let target = target(
        SAMPLE_14_ID,
        Some(SAMPLE_14_SUBJECT),
        Some("registration@and.co.uk"),
    );

    let first = store.backend.quarantine(ALICE, &target).await;
    assert_eq!(first.status, RecipientStatus::Quarantined, "{first:?}");
    assert_eq!(first.is_read, Some(false));
    assert!(quarantine_dir.join("maildirfolder").exists());
    assert_eq!(store.ids("Quarantine"), [SAMPLE_14_ID]);
    assert_eq!(store.ids("INBOX"), [id_of(&other)]);

    let second = store.backend.quarantine(ALICE, &target).await;
    assert_eq!(
        second.status,
        RecipientStatus::AlreadyInDestination,
        "{second:?}"
    );
    assert_eq!(store.ids("Quarantine"), [SAMPLE_14_ID]);

    let restored = store.backend.restore(ALICE, &target).await;
    assert_eq!(restored.status, RecipientStatus::Restored, "{restored:?}");
    assert_eq!(store.ids("INBOX").len(), 2);
    assert!(store.ids("Quarantine").is_empty());
    let again = store.backend.restore(ALICE, &target).await;
    assert_eq!(
        again.status,
        RecipientStatus::AlreadyInDestination,
        "{again:?}"
    );
    assert_eq!(store.ids("INBOX").len(), 2);
}

#[tokio::test]
async fn read_flag_travels_with_the_file() {
    let store = Store::new();
    let new = store.deliver(&phish("sample-14.eml"));
    let name = new
        .file_name()
        .expect("a file name")
        .to_string_lossy()
        .into_owned();
    let seen = store
        .backend
        .folder_dir(ALICE, "INBOX")
        .expect("INBOX")
        .join("cur")
        .join(format!("{name}:2,S"));
    fs::rename(&new, &seen).expect("marking the message read");
    let target = target(SAMPLE_14_ID, None, None);

    let outcome = store.backend.quarantine(ALICE, &target).await;
    assert_eq!(
        (outcome.status, outcome.is_read),
        (RecipientStatus::Quarantined, Some(true)),
        "{outcome:?}"
    );
    assert!(
        store.messages("Quarantine")[0]
            .path
            .ends_with(format!("cur/{name}:2,S"))
    );
}

#[tokio::test]
async fn shared_message_id_moves_only_the_fingerprinted_message() {
    let store = Store::new();
    store.deliver(&phish("sample-3690.eml"));
    store.deliver(&phish("sample-3744.eml"));

    let neither = target(SHARED_ID, Some("An unrelated subject"), None);
    let outcome = store.backend.quarantine(ALICE, &neither).await;
    assert_eq!(outcome.status, RecipientStatus::NotFound, "{outcome:?}");
    assert!(
        outcome.details.contains("matched a different message"),
        "{}",
        outcome.details
    );

    let one = target(SHARED_ID, Some(SUBJECT_3744), None);
    let outcome = store.backend.quarantine(ALICE, &one).await;
    assert_eq!(outcome.status, RecipientStatus::Quarantined, "{outcome:?}");
    assert_eq!(store.subjects("INBOX"), [SUBJECT_3690]);
    assert_eq!(store.subjects("Quarantine"), [SUBJECT_3744]);

    let outcome = store
        .backend
        .quarantine(ALICE, &target(SHARED_ID, None, None))
        .await;
    assert_eq!(outcome.status, RecipientStatus::Quarantined, "{outcome:?}");
    assert!(store.messages("INBOX").is_empty());
    assert_eq!(store.messages("Quarantine").len(), 2);
}

#[tokio::test]
async fn message_ids_with_or_without_brackets_and_odd_characters_are_found() {
    let store = Store::new();
    let odd = fixture("odd-message-id.eml");
    let quoted = fixture("quoted-message-id.eml");
    store.deliver(&phish("sample-14.eml"));
    store.deliver(&odd);
    store.deliver(&quoted);

    let bare = SAMPLE_14_ID.trim_start_matches('<').trim_end_matches('>');
    let cases = [
        (SAMPLE_14_ID.to_owned(), RecipientStatus::Quarantined),
        (bare.to_owned(), RecipientStatus::AlreadyInDestination),
        (id_of(&odd), RecipientStatus::Quarantined),
        (id_of(&quoted), RecipientStatus::Quarantined),
    ];
    for (id, status) in cases {
        let outcome = store
            .backend
            .quarantine(ALICE, &target(&id, None, None))
            .await;
        assert_eq!(outcome.status, status, "{id}: {outcome:?}");
    }
    assert!(store.messages("INBOX").is_empty());
}

#[tokio::test]
async fn headerless_and_huge_single_line_messages() {
    let store = Store::new();
    let headerless = phish("sample-2024.eml");
    assert_eq!(headerless.len(), 47);
    store.deliver(&headerless);
    let huge = phish("sample-6363.eml");
    assert!(huge.len() > 600_000);
    store.deliver(&huge);

    let missing = target("<never-delivered@nowhere.example>", None, None);
    let outcome = store.backend.quarantine(ALICE, &missing).await;
    assert_eq!(outcome.status, RecipientStatus::NotFound, "{outcome:?}");
    assert!(
        outcome.details.contains("never-delivered@nowhere.example"),
        "{}",
        outcome.details
    );

    let huge_target = target(
        &id_of(&huge),
        Some("Support Your Knees the Smart Way"),
        None,
    );
    let outcome = store.backend.quarantine(ALICE, &huge_target).await;
    assert_eq!(outcome.status, RecipientStatus::Quarantined, "{outcome:?}");
    let moved = &store.messages("Quarantine")[0].path;
    assert_eq!(fs::read(moved).expect("the moved message"), huge);
    assert_eq!(store.messages("INBOX").len(), 1);
}

#[tokio::test]
async fn failures_name_the_mailbox_and_move_nothing() {
    let store = Store::new();
    let path = store.deliver(&phish("sample-14.eml"));
    let target = target(SAMPLE_14_ID, None, None);

    let bad_folder = MessageTarget {
        quarantine_folder: "../escape".to_owned(),
        ..target.clone()
    };
    let outcome = store.backend.quarantine(ALICE, &bad_folder).await;
    assert_eq!(outcome.status, RecipientStatus::Failed, "{outcome:?}");
    assert!(
        outcome.details.contains("failed for alice@example.test"),
        "{}",
        outcome.details
    );

    let same_folder = MessageTarget {
        quarantine_folder: "inbox".to_owned(),
        ..target.clone()
    };
    let outcome = store.backend.quarantine(ALICE, &same_folder).await;
    assert_eq!(outcome.status, RecipientStatus::Failed, "{outcome:?}");
    assert!(
        outcome.details.contains("folders are both"),
        "{}",
        outcome.details
    );

    // A file of the same name in the quarantine folder is never overwritten.
    store
        .backend
        .deliver(ALICE, "Quarantine", b"Subject: placeholder\r\n\r\n")
        .expect("delivery");
    let clash = store
        .backend
        .folder_dir(ALICE, "Quarantine")
        .expect("a folder")
        .join("new");
    let clash = clash.join(path.file_name().expect("a file name"));
    fs::write(&clash, b"Subject: not the message\r\n\r\n").expect("a clashing file");
    let outcome = store.backend.quarantine(ALICE, &target).await;
    assert_eq!(outcome.status, RecipientStatus::Failed, "{outcome:?}");
    assert!(
        outcome.details.contains("refusing to overwrite"),
        "{}",
        outcome.details
    );
    assert!(path.exists());
    assert_eq!(
        fs::read(&clash).expect("the clashing file"),
        b"Subject: not the message\r\n\r\n"
    );

    let outcome = store
        .backend
        .quarantine("nobody@example.test", &target)
        .await;
    assert_eq!(outcome.status, RecipientStatus::NotFound, "{outcome:?}");
    assert!(
        outcome.details.contains("nobody@example.test"),
        "{}",
        outcome.details
    );
}

//! Mailbox backends for quarantine workers: given a recipient's mailbox and a message, pull the
//! message into a quarantine folder, or put it back.
//!
//! Every backend answers with a [`RecipientOutcome`] and never with an error: a worker records
//! what happened to each recipient, and a failure is one of the things that can happen. Every
//! operation is idempotent: running it again after it succeeded answers
//! [`RecipientStatus::AlreadyInDestination`] and changes nothing.
//!
//! A message is found by its Message-ID. Two different messages can share one, so when the
//! [`MessageFingerprint`] names a subject or a sender, only copies whose headers agree are
//! touched (see [`headers::MessageHeaders::matches`]).

pub mod headers;
pub mod imap;
pub mod maildir;
pub mod smtp;
#[cfg(feature = "testing")]
pub mod testing;

pub use imap::{ImapBackend, ImapConfig, ImapError, TlsMode};
pub use maildir::{MaildirBackend, MaildirError};
pub use pullback_domain::{MessageFingerprint, MessageId, RecipientOutcome, RecipientStatus};

/// The message a quarantine or restore acts on, and the two folders it moves between.
#[derive(Clone, Debug, PartialEq)]
pub struct MessageTarget {
    pub message_id: MessageId,
    pub fingerprint: MessageFingerprint,
    /// Where quarantined mail goes, e.g. `Quarantine`; created on first use.
    pub quarantine_folder: String,
    /// Where the message was delivered and where a restore puts it back, usually `INBOX`.
    pub source_folder: String,
}

impl MessageTarget {
    /// A target moving between `INBOX` and `Quarantine`.
    pub fn new(message_id: MessageId, fingerprint: MessageFingerprint) -> MessageTarget {
        MessageTarget {
            message_id,
            fingerprint,
            quarantine_folder: "Quarantine".to_owned(),
            source_folder: "INBOX".to_owned(),
        }
    }
}

/// How a message is deleted, when a response asks for a deletion rather than a quarantine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deletion {
    /// Moved where the user no longer sees it but where it can be brought back from (Exchange
    /// Online's Recoverable Items); [`MailboxBackend::restore_deleted`] undoes it.
    Soft,
    /// Removed for good. It cannot be undone.
    Hard,
}

/// One kind of mail store that quarantine workers can act on.
#[async_trait::async_trait]
pub trait MailboxBackend: Send + Sync {
    /// A short name for logs and results, such as `imap` or `maildir`.
    fn name(&self) -> &str;

    /// Moves every matching copy from the source folder to the quarantine folder.
    async fn quarantine(&self, mailbox: &str, target: &MessageTarget) -> RecipientOutcome;

    /// Moves every matching copy from the quarantine folder back to the source folder.
    async fn restore(&self, mailbox: &str, target: &MessageTarget) -> RecipientOutcome;

    /// Deletes every matching copy, softly or for good. The outcome reads like a quarantine's:
    /// `Quarantined` when this run deleted copies, `AlreadyInDestination` when they were
    /// already deleted. By default a soft delete moves the copies to the user's [`TRASH`], as
    /// a mail client deletes, and a hard delete is refused with a failed outcome saying that
    /// nothing was deleted; backends with a recoverable-items store do better.
    async fn delete(
        &self,
        mailbox: &str,
        target: &MessageTarget,
        how: Deletion,
    ) -> RecipientOutcome {
        match how {
            Deletion::Soft => self.quarantine(mailbox, &to_trash(target)).await,
            Deletion::Hard => no_hard_delete(self.name(), mailbox),
        }
    }

    /// Puts back what a soft [`MailboxBackend::delete`] removed, where it came from.
    async fn restore_deleted(&self, mailbox: &str, target: &MessageTarget) -> RecipientOutcome {
        self.restore(mailbox, &to_trash(target)).await
    }

    /// Reads up to `limit` messages of `folder` in `mailbox` whole, oldest first, without
    /// marking them read: the reports waiting in an abuse mailbox. Each comes with the id
    /// [`MailboxBackend::file_away`] takes.
    async fn take_messages(
        &self,
        mailbox: &str,
        folder: &str,
        limit: usize,
    ) -> Result<Vec<(u32, Vec<u8>)>, String> {
        let _ = (mailbox, folder, limit);
        Err(format!(
            "the {} backend cannot read abuse mailboxes",
            self.name()
        ))
    }

    /// Moves messages [`MailboxBackend::take_messages`] returned from `folder` to `to`
    /// (created when missing), once they are dealt with.
    async fn file_away(
        &self,
        mailbox: &str,
        folder: &str,
        ids: &[u32],
        to: &str,
    ) -> Result<(), String> {
        let _ = (mailbox, folder, ids, to);
        Err(format!(
            "the {} backend cannot file messages away",
            self.name()
        ))
    }
}

/// Where backends without a recoverable-items store put softly deleted mail: the user's
/// Trash, from which the user, or a restore, can take it back.
pub const TRASH: &str = "Trash";

/// The target of a soft delete in a backend that deletes to [`TRASH`]: the same message,
/// moving between its source folder and the trash.
pub(crate) fn to_trash(target: &MessageTarget) -> MessageTarget {
    MessageTarget {
        quarantine_folder: TRASH.to_owned(),
        ..target.clone()
    }
}

/// The `Failed` outcome of a hard delete in a backend that only deletes softly.
pub(crate) fn no_hard_delete(backend: &str, mailbox: &str) -> RecipientOutcome {
    let details = format!(
        "the {backend} backend cannot delete messages for good; nothing was deleted (a soft \
         delete moves them to {TRASH})"
    );
    outcome(mailbox, RecipientStatus::Failed, details, None)
}

/// The direction of a move, which decides the folders and the status of success.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Direction {
    Quarantine,
    Restore,
}

impl Direction {
    /// The folder the message leaves and the folder it goes to.
    pub(crate) fn folders(self, target: &MessageTarget) -> (&str, &str) {
        match self {
            Direction::Quarantine => (&target.source_folder, &target.quarantine_folder),
            Direction::Restore => (&target.quarantine_folder, &target.source_folder),
        }
    }

    /// The status reported when this run moved the message.
    pub(crate) fn done(self) -> RecipientStatus {
        match self {
            Direction::Quarantine => RecipientStatus::Quarantined,
            Direction::Restore => RecipientStatus::Restored,
        }
    }

    /// The operation's name in failure reasons.
    pub(crate) fn verb(self) -> &'static str {
        match self {
            Direction::Quarantine => "quarantine",
            Direction::Restore => "restore",
        }
    }
}

/// The `Failed` outcome for a target no backend can act on: one whose two folders are the
/// same, where a move would go nowhere.
pub(crate) fn refuse_target(
    mailbox: &str,
    target: &MessageTarget,
    direction: Direction,
) -> Option<RecipientOutcome> {
    let (from, to) = direction.folders(target);
    let inbox = |f: &str| f.eq_ignore_ascii_case("INBOX");
    if from != to && !(inbox(from) && inbox(to)) {
        return None;
    }
    let details = format!(
        "{} for {mailbox} refused: the source and quarantine folders are both {from}",
        direction.verb()
    );
    Some(outcome(mailbox, RecipientStatus::Failed, details, None))
}

/// How many copies a run found, and whether any of them had been read.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Copies {
    pub count: usize,
    pub read: bool,
}

impl Copies {
    fn noun(self) -> &'static str {
        if self.count == 1 { "copy" } else { "copies" }
    }
}

/// The outcome when this run moved the copies.
pub(crate) fn moved(
    mailbox: &str,
    target: &MessageTarget,
    direction: Direction,
    copies: Copies,
) -> RecipientOutcome {
    let (from, to) = direction.folders(target);
    let details = format!(
        "moved {} {} from {from} to {to}",
        copies.count,
        copies.noun()
    );
    outcome(mailbox, direction.done(), details, Some(copies.read))
}

/// The outcome when the copies already were where this run would have moved them.
pub(crate) fn already_there(
    mailbox: &str,
    target: &MessageTarget,
    direction: Direction,
    copies: Copies,
) -> RecipientOutcome {
    let (from, to) = direction.folders(target);
    let details = format!(
        "{} {} already in {to} and none in {from}",
        copies.count,
        copies.noun()
    );
    let status = RecipientStatus::AlreadyInDestination;
    outcome(mailbox, status, details, Some(copies.read))
}

/// Builds the outcome for one recipient.
pub(crate) fn outcome(
    mailbox: &str,
    status: RecipientStatus,
    details: String,
    is_read: Option<bool>,
) -> RecipientOutcome {
    RecipientOutcome {
        recipient: mailbox.to_owned(),
        status,
        details,
        is_read,
    }
}

/// The `NotFound` outcome after both folders were searched.
///
/// `different` counts the messages that carried the Message-ID but failed the fingerprint
/// check; they are named in the details so that an analyst sees why nothing moved.
pub(crate) fn not_found(
    mailbox: &str,
    target: &MessageTarget,
    direction: Direction,
    different: usize,
    note: &str,
) -> RecipientOutcome {
    let (from, to) = direction.folders(target);
    let id = target.message_id.bracketed();
    let mut details = if different > 0 {
        format!(
            "Message-ID {id} matched a different message in {mailbox} ({different} with another \
             subject or sender); nothing was moved"
        )
    } else {
        format!("no message with Message-ID {id} in {from} or {to} of {mailbox}")
    };
    if !note.is_empty() {
        details.push_str("; ");
        details.push_str(note);
    }
    outcome(mailbox, RecipientStatus::NotFound, details, None)
}

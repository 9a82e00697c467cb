//! Exchange Online mailboxes through Graph: quarantine, restore, soft and hard delete, with
//! the same per-recipient outcomes as the IMAP backend.
//!
//! A message is looked up by `internetMessageId` across the whole mailbox, because the id is
//! not unique there: a user may have filed a copy, or received it twice. Every copy that
//! passes the fingerprint check is acted on. Each run looks before it acts, so running it
//! again after it succeeded (or after it was cut short) answers "already in destination".
//!
//! A quarantine (or soft delete) first records on each copy, in an extended property, which
//! folder it came from and which folder it went to, then moves it; both in one `$batch`, the
//! move depending on the record. A restore reads the record to put each copy back where it
//! was, and recognises the quarantine folder by it even if someone renamed the folder.

mod act;
mod find;

use crate::client::{GraphClient, GraphError};
use act::Acted;
use find::{Copy, Found};
use pullback_domain::{RecipientOutcome, RecipientStatus};
use pullback_mailbox::{Deletion, MailboxBackend, MessageTarget};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex};

/// How many times a run looks again after copies moved under it.
const ROUNDS: usize = 3;

/// The well-known folder a soft delete moves to: Recoverable Items, Deletions.
pub(crate) const DELETIONS: &str = "recoverableitemsdeletions";
/// The well-known folder where permanently deleted items wait to be purged.
pub(crate) const PURGES: &str = "recoverableitemspurges";

/// Quarantine through Microsoft Graph with application permissions.
#[derive(Clone)]
pub struct GraphBackend {
    client: Arc<GraphClient>,
    /// Display names of folders by id (Exchange's folder ids are unique across mailboxes),
    /// so that saying where a copy came from costs a request only the first time. A name
    /// that changed since is only ever shown, never acted on.
    names: Arc<Mutex<HashMap<String, String>>>,
}

/// Folder names kept at most; the cache starts again beyond it.
const MAX_NAMES: usize = 100_000;

impl fmt::Debug for GraphBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GraphBackend")
            .field("client", &self.client)
            .finish()
    }
}

/// What a run does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Operation {
    Quarantine,
    Restore,
    SoftDelete,
    HardDelete,
    /// Puts back what a soft delete removed.
    Undelete,
}

impl Operation {
    fn verb(self) -> &'static str {
        match self {
            Operation::Quarantine => "quarantine",
            Operation::Restore => "restore",
            Operation::SoftDelete => "soft delete",
            Operation::HardDelete => "hard delete",
            Operation::Undelete => "restore of deleted mail",
        }
    }

    fn done(self) -> RecipientStatus {
        match self {
            Operation::Restore | Operation::Undelete => RecipientStatus::Restored,
            _ => RecipientStatus::Quarantined,
        }
    }

    /// Whether the quarantine folder takes part (and must differ from the source folder).
    fn uses_quarantine_folder(self) -> bool {
        matches!(self, Operation::Quarantine | Operation::Restore)
    }
}

impl GraphBackend {
    pub fn new(client: Arc<GraphClient>) -> GraphBackend {
        GraphBackend {
            client,
            names: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// The display name of `folder`, when known.
    fn name_of(&self, folder: &str) -> Option<String> {
        let names = self.names.lock().unwrap_or_else(|e| e.into_inner());
        names.get(folder).cloned()
    }

    fn remember(&self, found: &BTreeMap<String, String>) {
        let mut names = self.names.lock().unwrap_or_else(|e| e.into_inner());
        if names.len() + found.len() > MAX_NAMES {
            names.clear();
        }
        names.extend(found.iter().map(|(id, name)| (id.clone(), name.clone())));
    }

    pub fn client(&self) -> &GraphClient {
        &self.client
    }

    async fn run(&self, mailbox: &str, target: &MessageTarget, op: Operation) -> RecipientOutcome {
        let outcome = match refuse(mailbox, target, op) {
            Some(refused) => refused,
            None => self
                .transfer(mailbox, target, op)
                .await
                .unwrap_or_else(|e| failed(mailbox, op, &e)),
        };
        tracing::debug!(
            backend = "graph",
            mailbox,
            message_id = %target.message_id,
            operation = op.verb(),
            status = outcome.status.as_str(),
            "mailbox operation finished"
        );
        outcome
    }

    /// Looks, acts on what it found, and looks again while copies moved under it.
    async fn transfer(
        &self,
        mailbox: &str,
        target: &MessageTarget,
        op: Operation,
    ) -> Result<RecipientOutcome, GraphError> {
        let mut acted = Acted::default();
        for _ in 0..ROUNDS {
            let found = self.find(mailbox, target, op).await?;
            if found.to_act.is_empty() {
                return Ok(summary(mailbox, target, op, &acted, &found));
            }
            let round = self.act(mailbox, target, op, &found).await?;
            let vanished = round.vanished;
            acted.absorb(round);
            if !acted.failures.is_empty() {
                return Ok(partial_failure(mailbox, target, op, &acted));
            }
            if vanished == 0 {
                return Ok(success(mailbox, op, &acted));
            }
        }
        Ok(success(mailbox, op, &acted))
    }
}

#[async_trait::async_trait]
impl MailboxBackend for GraphBackend {
    fn name(&self) -> &str {
        "graph"
    }

    async fn quarantine(&self, mailbox: &str, target: &MessageTarget) -> RecipientOutcome {
        self.run(mailbox, target, Operation::Quarantine).await
    }

    async fn restore(&self, mailbox: &str, target: &MessageTarget) -> RecipientOutcome {
        self.run(mailbox, target, Operation::Restore).await
    }

    async fn delete(
        &self,
        mailbox: &str,
        target: &MessageTarget,
        how: Deletion,
    ) -> RecipientOutcome {
        let op = match how {
            Deletion::Soft => Operation::SoftDelete,
            Deletion::Hard => Operation::HardDelete,
        };
        self.run(mailbox, target, op).await
    }

    async fn restore_deleted(&self, mailbox: &str, target: &MessageTarget) -> RecipientOutcome {
        self.run(mailbox, target, Operation::Undelete).await
    }
}

/// A quarantine whose two folders are one folder would go nowhere; refused as IMAP does.
fn refuse(mailbox: &str, target: &MessageTarget, op: Operation) -> Option<RecipientOutcome> {
    if !op.uses_quarantine_folder() {
        return None;
    }
    let (source, quarantine) = (&target.source_folder, &target.quarantine_folder);
    let same = source.eq_ignore_ascii_case(quarantine)
        || (find::is_inbox(source) && find::is_inbox(quarantine));
    if !same && !quarantine.trim().is_empty() {
        return None;
    }
    let details = format!(
        "{} for {mailbox} refused: the source and quarantine folders are both {quarantine:?}",
        op.verb()
    );
    Some(outcome(mailbox, RecipientStatus::Failed, details, None))
}

fn outcome(
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

fn failed(mailbox: &str, op: Operation, error: &GraphError) -> RecipientOutcome {
    let mut details = format!("graph {} failed for {mailbox}: {error}", op.verb());
    if let GraphError::Refused { status: 403, .. } = error {
        details.push_str(
            "; the application needs the Mail.ReadWrite application permission, and any \
             application access policy must include this mailbox",
        );
    }
    outcome(mailbox, RecipientStatus::Failed, details, None)
}

fn noun(count: usize) -> &'static str {
    if count == 1 { "copy" } else { "copies" }
}

/// Folder names as a phrase: `Inbox`, `Inbox and Archive`, `3 folders`.
fn folders_phrase(names: &[String]) -> String {
    let mut names = names.to_vec();
    names.sort();
    match names.as_slice() {
        [] => "its folder".to_owned(),
        [one] => one.clone(),
        [a, b] => format!("{a} and {b}"),
        more => format!("{} folders", more.len()),
    }
}

/// Where an operation puts copies, in words.
fn destination(target: &MessageTarget, op: Operation) -> String {
    match op {
        Operation::Quarantine => target.quarantine_folder.clone(),
        Operation::SoftDelete => "Recoverable Items".to_owned(),
        Operation::HardDelete => "the purge folder".to_owned(),
        Operation::Restore | Operation::Undelete => target.source_folder.clone(),
    }
}

/// Where an operation takes copies from, in words.
fn origin(target: &MessageTarget, op: Operation) -> String {
    match op {
        Operation::Restore => target.quarantine_folder.clone(),
        Operation::Undelete => "Recoverable Items".to_owned(),
        _ => "the mailbox".to_owned(),
    }
}

/// The outcome once this run has acted on every copy it found.
fn success(mailbox: &str, op: Operation, acted: &Acted) -> RecipientOutcome {
    let count = acted.done;
    let from = folders_phrase(&acted.from_names);
    let mut details = match op {
        Operation::HardDelete => format!(
            "permanently deleted {count} {} from {from}; a hard delete cannot be undone",
            noun(count)
        ),
        Operation::SoftDelete => format!(
            "moved {count} {} from {from} to Recoverable Items (soft delete, can be restored)",
            noun(count)
        ),
        _ => {
            let to = folders_phrase(&acted.to_names);
            format!("moved {count} {} from {from} to {to}", noun(count))
        }
    };
    for note in &acted.notes {
        details.push_str("; ");
        details.push_str(note);
    }
    outcome(mailbox, op.done(), details, Some(acted.read))
}

/// The outcome when some copies could not be acted on.
fn partial_failure(
    mailbox: &str,
    target: &MessageTarget,
    op: Operation,
    acted: &Acted,
) -> RecipientOutcome {
    let tried = acted.done + acted.failures.len();
    let mut details = format!(
        "graph {} of Message-ID {} failed for {mailbox} on {} of {tried} {}: {}",
        op.verb(),
        target.message_id.bracketed(),
        acted.failures.len(),
        noun(tried),
        acted.failures.join("; ")
    );
    if acted.done > 0 {
        details.push_str(&format!(
            "; {} {} reached {}",
            acted.done,
            noun(acted.done),
            destination(target, op)
        ));
    }
    outcome(mailbox, RecipientStatus::Failed, details, None)
}

/// The outcome when nothing was left to act on: done earlier, done now, or never there.
fn summary(
    mailbox: &str,
    target: &MessageTarget,
    op: Operation,
    acted: &Acted,
    found: &Found,
) -> RecipientOutcome {
    if acted.done > 0 {
        return success(mailbox, op, acted);
    }
    if !found.done.is_empty() {
        let count = found.done.len();
        let read = found.done.iter().any(Copy::is_read);
        let mut details = match op {
            Operation::HardDelete => format!(
                "{count} {} already permanently deleted and none left in {mailbox}",
                noun(count)
            ),
            Operation::Restore | Operation::Undelete => format!(
                "{count} {} already out of {} and none in it",
                noun(count),
                origin(target, op)
            ),
            _ => format!(
                "{count} {} already in {} and none elsewhere in {mailbox}",
                noun(count),
                destination(target, op)
            ),
        };
        for note in &found.notes {
            details.push_str("; ");
            details.push_str(note);
        }
        return outcome(
            mailbox,
            RecipientStatus::AlreadyInDestination,
            details,
            Some(read),
        );
    }
    let id = target.message_id.bracketed();
    let mut details = if found.different > 0 {
        format!(
            "Message-ID {id} matched a different message in {mailbox} ({} with another subject \
             or sender); nothing was moved",
            found.different
        )
    } else {
        format!(
            "no message with Message-ID {id} in {} of {mailbox}",
            found.searched
        )
    };
    for note in &found.notes {
        details.push_str("; ");
        details.push_str(note);
    }
    outcome(mailbox, RecipientStatus::NotFound, details, None)
}

//! Finding every copy of a message, and the folders a run needs, in one `$batch`.

use super::{DELETIONS, GraphBackend, Operation, PURGES};
use crate::client::{GraphError, Reply};
use crate::wire::{
    BatchItem, MESSAGE_FIELDS, MailFolder, Message, ORIGIN_PROPERTY, Page, quoted, user_path,
    with_query,
};
use pullback_domain::{MessageFingerprint, MessageId};
use pullback_mailbox::MessageTarget;
use pullback_mailbox::headers::MessageHeaders;
use std::collections::{BTreeMap, HashSet};

/// Copies asked for per page; more than that many copies of one message are paged through.
const PAGE_SIZE: &str = "100";

/// Where a lookup searches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scope {
    /// Every folder the user sees (and the hidden quarantine folder).
    Mailbox,
    /// Recoverable Items, Deletions: where a soft delete puts mail.
    Deletions,
    /// Recoverable Items, Purges: where a hard delete puts mail until it is purged.
    Purges,
}

impl Scope {
    fn key(self) -> &'static str {
        match self {
            Scope::Mailbox => "mailbox",
            Scope::Deletions => "deletions",
            Scope::Purges => "purges",
        }
    }

    fn messages_path(self, user: &str) -> String {
        match self {
            Scope::Mailbox => format!("{user}/messages"),
            Scope::Deletions => format!("{user}/mailFolders/{DELETIONS}/messages"),
            Scope::Purges => format!("{user}/mailFolders/{PURGES}/messages"),
        }
    }
}

/// Where a copy is, as far as the run is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Place {
    /// In an ordinary folder.
    Live,
    /// In the quarantine folder; `renamed` when it was recognised by the record a quarantine
    /// left on it because no folder carries the quarantine folder's name any more.
    Quarantined {
        renamed: bool,
    },
    Deleted,
    Purged,
}

/// One copy of the message.
#[derive(Clone, Debug)]
pub(crate) struct Copy {
    pub message: Message,
    pub place: Place,
}

impl Copy {
    pub fn is_read(&self) -> bool {
        self.message.is_read.unwrap_or(false)
    }

    pub fn folder_id(&self) -> &str {
        self.message.parent_folder_id.as_deref().unwrap_or_default()
    }
}

/// What a lookup found.
#[derive(Debug, Default)]
pub(crate) struct Found {
    /// Copies the operation acts on.
    pub to_act: Vec<Copy>,
    /// Copies already where the operation would put them.
    pub done: Vec<Copy>,
    /// Messages with the Message-ID that failed the fingerprint check.
    pub different: usize,
    /// The quarantine folder, when the operation uses one and it exists.
    pub quarantine: Option<MailFolder>,
    /// The folder a restore falls back to, when it exists.
    pub source: Option<MailFolder>,
    /// What was searched, for "not found".
    pub searched: &'static str,
    pub notes: Vec<String>,
}

pub(crate) fn is_inbox(folder: &str) -> bool {
    folder.trim().eq_ignore_ascii_case("inbox")
}

// FIXME: In-Place Archive mailboxes are not searched, so a copy the user archived there stays.
fn scopes(op: Operation) -> &'static [Scope] {
    match op {
        Operation::Quarantine | Operation::Restore => &[Scope::Mailbox],
        Operation::SoftDelete | Operation::Undelete => &[Scope::Mailbox, Scope::Deletions],
        Operation::HardDelete => &[Scope::Mailbox, Scope::Deletions, Scope::Purges],
    }
}

/// A `$filter` on a folder's display name, hidden folders included.
// FIXME: only folders at the top of the mailbox are looked up; a quarantine folder given as a
// path (`Security/Quarantine`) is created as one folder of that name.
pub(crate) fn folder_by_name(user: &str, name: &str) -> String {
    let filter = format!("displayName eq {}", quoted(name));
    with_query(
        &format!("{user}/mailFolders"),
        &[
            ("$filter", &filter),
            ("$select", "id,displayName"),
            ("includeHiddenFolders", "true"),
        ],
    )
}

/// The messages of `scope` that `filter` selects, with the origin record a quarantine left.
fn message_query(user: &str, scope: Scope, filter: &str) -> String {
    let expand = format!(
        "singleValueExtendedProperties($filter=id eq {})",
        quoted(ORIGIN_PROPERTY)
    );
    with_query(
        &scope.messages_path(user),
        &[
            ("$filter", filter),
            ("$select", MESSAGE_FIELDS),
            ("$expand", &expand),
            ("$top", PAGE_SIZE),
        ],
    )
}

/// The filter for copies with another Message-ID but the same sender, sent in the
/// fingerprint's window; `None` when the fingerprint asks for none.
fn similar_filter(fingerprint: &MessageFingerprint) -> Option<String> {
    let (Some(window), Some(_), Some(sender)) = (
        fingerprint.similar_within,
        fingerprint.subject.as_deref(),
        fingerprint.sender.as_deref(),
    ) else {
        return None;
    };
    let address = pullback_domain::normalise_address(sender)?;
    let format =
        |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    Some(format!(
        "from/emailAddress/address eq {} and sentDateTime ge {} and sentDateTime le {}",
        quoted(&address),
        format(window.since),
        format(window.until)
    ))
}

fn headers_of(message: &Message) -> MessageHeaders {
    let address = |r: &Option<crate::wire::Recipient>| {
        r.as_ref().and_then(|r| r.email_address.address.clone())
    };
    MessageHeaders {
        message_id: message
            .internet_message_id
            .as_deref()
            .and_then(MessageId::parse),
        subject: message.subject.clone(),
        from: address(&message.from),
        sender: address(&message.sender),
        return_path: None,
    }
}

impl GraphBackend {
    /// Looks up every copy of the target where `op` may find it, and the folders `op` needs.
    pub(super) async fn find(
        &self,
        mailbox: &str,
        target: &MessageTarget,
        op: Operation,
    ) -> Result<Found, GraphError> {
        let user = user_path(mailbox);
        let id = target.message_id.bracketed();
        let by_id = format!("internetMessageId eq {}", quoted(&id));
        let similar = similar_filter(&target.fingerprint);
        let mut items = Vec::new();
        for scope in scopes(op) {
            let key = scope.key();
            items.push(BatchItem::get(key, message_query(&user, *scope, &by_id)));
            if let Some(filter) = &similar {
                let query = message_query(&user, *scope, filter);
                items.push(BatchItem::get(format!("similar-{key}"), query));
            }
        }
        if op.uses_quarantine_folder() {
            let query = folder_by_name(&user, &target.quarantine_folder);
            items.push(BatchItem::get("quarantine", query));
        }
        if matches!(op, Operation::Restore | Operation::Undelete) {
            items.push(BatchItem::get(
                "source",
                source_query(&user, &target.source_folder),
            ));
        }

        let what = format!("looking up Message-ID {id} in {mailbox}");
        let mut answers = self.client.batch(mailbox, &what, items).await?;
        let mut found = Found {
            searched: if scopes(op).len() > 1 {
                "any folder or Recoverable Items"
            } else {
                "any folder"
            },
            ..Found::default()
        };
        if op.uses_quarantine_folder() {
            found.quarantine = self.folder_answer(mailbox, &what, &mut answers, "quarantine")?;
        }
        if matches!(op, Operation::Restore | Operation::Undelete) {
            found.source = self.folder_answer(mailbox, &what, &mut answers, "source")?;
        }

        let mut seen = HashSet::new();
        for scope in scopes(op) {
            let key = scope.key();
            let exact = self
                .messages_answer(mailbox, &what, &mut answers, key)
                .await?;
            for message in exact {
                if headers_of(&message).message_id.as_ref() != Some(&target.message_id) {
                    continue;
                }
                if !headers_of(&message).matches(&target.fingerprint) {
                    found.different += 1;
                    continue;
                }
                if seen.insert(message.id.clone()) {
                    self.place(&mut found, op, *scope, message);
                }
            }
            if similar.is_some() {
                let key = format!("similar-{key}");
                for message in self
                    .messages_answer(mailbox, &what, &mut answers, &key)
                    .await?
                {
                    if headers_of(&message).matches(&target.fingerprint)
                        && seen.insert(message.id.clone())
                    {
                        self.place(&mut found, op, *scope, message);
                    }
                }
            }
        }
        Ok(found)
    }

    /// Files a copy under "to act on" or "done" for `op`.
    fn place(&self, found: &mut Found, op: Operation, scope: Scope, message: Message) {
        let parent = message.parent_folder_id.clone().unwrap_or_default();
        let place = match scope {
            Scope::Deletions => Place::Deleted,
            Scope::Purges => Place::Purged,
            Scope::Mailbox => {
                let quarantine = found.quarantine.as_ref().map(|f| f.id.as_str());
                let recorded = message
                    .origin()
                    .is_some_and(|o| o.to == parent && o.to != DELETIONS);
                if quarantine == Some(parent.as_str()) {
                    Place::Quarantined { renamed: false }
                } else if op.uses_quarantine_folder() && recorded {
                    Place::Quarantined { renamed: true }
                } else {
                    Place::Live
                }
            }
        };
        if place == (Place::Quarantined { renamed: true }) {
            let note = "the quarantine folder holding it no longer has that name (renamed)";
            if !found.notes.iter().any(|n| n == note) {
                found.notes.push(note.to_owned());
            }
        }
        let act = match op {
            Operation::Quarantine => place == Place::Live,
            Operation::Restore => matches!(place, Place::Quarantined { .. }),
            Operation::SoftDelete => matches!(place, Place::Live | Place::Quarantined { .. }),
            Operation::Undelete => place == Place::Deleted,
            Operation::HardDelete => place != Place::Purged,
        };
        let copy = Copy { message, place };
        if act {
            found.to_act.push(copy);
        } else {
            found.done.push(copy);
        }
    }

    /// The messages one batch answer lists, with its further pages.
    async fn messages_answer(
        &self,
        mailbox: &str,
        what: &str,
        answers: &mut BTreeMap<String, Reply>,
        key: &str,
    ) -> Result<Vec<Message>, GraphError> {
        let reply = take(answers, key, what)?;
        check(mailbox, what, &reply)?;
        let page: Page<Message> = reply.json(what)?;
        self.client.get_all(mailbox, what, page).await
    }

    /// The folder one batch answer names: a folder itself, or the first of a list.
    fn folder_answer(
        &self,
        mailbox: &str,
        what: &str,
        answers: &mut BTreeMap<String, Reply>,
        key: &str,
    ) -> Result<Option<MailFolder>, GraphError> {
        let reply = take(answers, key, what)?;
        if reply.status == 404 && reply.error().0 == "ErrorItemNotFound" {
            return Ok(None);
        }
        check(mailbox, what, &reply)?;
        if reply.body.get("value").is_some() {
            let page: Page<MailFolder> = reply.json(what)?;
            return Ok(page.value.into_iter().next());
        }
        reply.json(what).map(Some)
    }
}

/// A well-known folder by its name (`inbox`), any other at the top by display name.
fn source_query(user: &str, folder: &str) -> String {
    if is_inbox(folder) {
        return with_query(
            &format!("{user}/mailFolders/inbox"),
            &[("$select", "id,displayName")],
        );
    }
    folder_by_name(user, folder)
}

fn take(answers: &mut BTreeMap<String, Reply>, key: &str, what: &str) -> Result<Reply, GraphError> {
    answers.remove(key).ok_or_else(|| GraphError::Malformed {
        what: what.to_owned(),
        status: 200,
        detail: format!("the batch response has no answer {key:?}"),
    })
}

/// Turns an unsuccessful answer about the mailbox into an error that says what it means.
pub(crate) fn check(mailbox: &str, what: &str, reply: &Reply) -> Result<(), GraphError> {
    if reply.is_success() && reply.unreadable.is_none() {
        return Ok(());
    }
    let (code, _) = reply.error();
    let what = match (reply.status, code.as_str()) {
        (404, "ErrorInvalidUser" | "ResourceNotFound" | "MailboxNotEnabledForRESTAPI")
        | (404, "ErrorItemNotFound" | "ErrorNonExistentMailbox") => {
            format!("mailbox {mailbox} was not found in Exchange Online ({what})")
        }
        _ => what.to_owned(),
    };
    Err(reply.refused(&what))
}

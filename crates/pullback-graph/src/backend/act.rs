//! Acting on the copies a lookup found: moves that record where each copy came from,
//! moves back, and permanent deletes, each slice of copies in one `$batch`.

use super::find::{Copy, Found, Place, check, folder_by_name};
use super::{DELETIONS, GraphBackend, Operation};
use crate::client::{GraphError, Reply};
use crate::wire::{
    BatchItem, MailFolder, ORIGIN_PROPERTY, Origin, Page, segment, user_path, with_query,
};
use pullback_mailbox::MessageTarget;
use reqwest::Method;
use serde_json::json;
use std::collections::BTreeMap;

/// Copies acted on per `$batch`: two requests each, plus a folder lookup each, stays within
/// Graph's 20.
const SLICE: usize = 6;

/// What acting did, summed over the rounds of a run.
#[derive(Debug, Default)]
pub(crate) struct Acted {
    /// Copies moved or deleted.
    pub done: usize,
    /// Whether any of them had been read.
    pub read: bool,
    /// Copies that were gone when acted on (moved or deleted by someone else meanwhile).
    pub vanished: usize,
    /// One line per copy that could not be acted on.
    pub failures: Vec<String>,
    pub from_names: Vec<String>,
    pub to_names: Vec<String>,
    pub notes: Vec<String>,
}

impl Acted {
    pub fn absorb(&mut self, other: Acted) {
        self.done += other.done;
        self.read |= other.read;
        self.vanished = other.vanished;
        self.failures.extend(other.failures);
        for (mine, theirs) in [
            (&mut self.from_names, other.from_names),
            (&mut self.to_names, other.to_names),
            (&mut self.notes, other.notes),
        ] {
            for name in theirs {
                push_unique(mine, name);
            }
        }
    }

    fn moved(&mut self, copy: &Copy, from: Option<String>, to: String) {
        self.done += 1;
        self.read |= copy.is_read();
        if let Some(from) = from {
            push_unique(&mut self.from_names, from);
        }
        push_unique(&mut self.to_names, to);
    }
}

fn push_unique(list: &mut Vec<String>, value: String) {
    if !list.contains(&value) {
        list.push(value);
    }
}

impl GraphBackend {
    pub(super) async fn act(
        &self,
        mailbox: &str,
        target: &MessageTarget,
        op: Operation,
        found: &Found,
    ) -> Result<Acted, GraphError> {
        let mut acted = Acted {
            notes: found.notes.clone(),
            ..Acted::default()
        };
        for slice in found.to_act.chunks(SLICE) {
            let round = match op {
                Operation::Quarantine => {
                    let folder = self.quarantine_folder(mailbox, target, found).await?;
                    self.move_recorded(mailbox, slice, &folder.id, &folder.display_name)
                        .await?
                }
                Operation::SoftDelete => {
                    self.move_recorded(mailbox, slice, DELETIONS, "Recoverable Items")
                        .await?
                }
                Operation::HardDelete => self.purge(mailbox, slice).await?,
                Operation::Restore | Operation::Undelete => {
                    self.move_back(mailbox, target, op, slice, found).await?
                }
            };
            acted.absorb(round);
        }
        Ok(acted)
    }

    /// The quarantine folder, created (hidden from the user's folder list) when missing.
    async fn quarantine_folder(
        &self,
        mailbox: &str,
        target: &MessageTarget,
        found: &Found,
    ) -> Result<MailFolder, GraphError> {
        if let Some(folder) = &found.quarantine {
            return Ok(folder.clone());
        }
        let user = user_path(mailbox);
        let name = &target.quarantine_folder;
        let what = format!("creating folder {name} in {mailbox}");
        let body = json!({ "displayName": name, "isHidden": true });
        let path = format!("{user}/mailFolders");
        let reply = self
            .client
            .send(mailbox, &what, Method::POST, &path, Some(&body))
            .await?;
        if reply.is_success() {
            return reply.json(&what);
        }
        // Another run created it meanwhile.
        if reply.status == 409 {
            let what = format!("looking up folder {name} in {mailbox}");
            let reply = self
                .client
                .send(
                    mailbox,
                    &what,
                    Method::GET,
                    &folder_by_name(&user, name),
                    None,
                )
                .await?;
            check(mailbox, &what, &reply)?;
            let page: Page<MailFolder> = reply.json(&what)?;
            if let Some(folder) = page.value.into_iter().next() {
                return Ok(folder);
            }
        }
        check(mailbox, &what, &reply)?;
        Err(reply.refused(&what))
    }

    /// Records each copy's folders on it, then moves it to `to` (an id or well-known name).
    async fn move_recorded(
        &self,
        mailbox: &str,
        copies: &[Copy],
        to: &str,
        to_name: &str,
    ) -> Result<Acted, GraphError> {
        let user = user_path(mailbox);
        let unnamed = copies
            .iter()
            .map(Copy::folder_id)
            .filter(|f| self.name_of(f).is_none());
        let mut items = self.folder_lookups(&user, unnamed);
        for (i, copy) in copies.iter().enumerate() {
            let origin = Origin {
                from: copy.folder_id().to_owned(),
                to: to.to_owned(),
            };
            let record = json!({ "singleValueExtendedProperties": [
                { "id": ORIGIN_PROPERTY, "value": serde_json::to_string(&origin).expect("plain") }
            ]});
            let message = format!("{user}/messages/{}", segment(&copy.message.id));
            items.push(BatchItem::with_json(
                format!("p{i}"),
                "PATCH",
                &message,
                record,
            ));
            let destination = json!({ "destinationId": to });
            let item = BatchItem::with_json(
                format!("m{i}"),
                "POST",
                format!("{message}/move"),
                destination,
            );
            items.push(item.after(&format!("p{i}")));
        }

        let what = format!("moving copies to {to_name} in {mailbox}");
        let answers = self.client.batch(mailbox, &what, items).await?;
        self.remember(&folder_names(&answers));
        let mut acted = Acted::default();
        for (i, copy) in copies.iter().enumerate() {
            let from = self.name_of(copy.folder_id());
            let moved = answer(&answers, &format!("m{i}"));
            match moved.map(|r| r.status) {
                Some(200..=299) => acted.moved(copy, from, to_name.to_owned()),
                Some(404) => acted.vanished += 1,
                Some(424) | None => {
                    let recorded = answer(&answers, &format!("p{i}"));
                    match recorded {
                        Some(r) if r.status == 404 => acted.vanished += 1,
                        Some(r) => {
                            acted
                                .failures
                                .push(failure(copy, &from, "recording its folder", r))
                        }
                        None => acted
                            .failures
                            .push(format!("{}: no answer", describe(copy, &from))),
                    }
                }
                Some(_) => {
                    let reply = moved.expect("an answer");
                    acted.failures.push(failure(
                        copy,
                        &from,
                        &format!("moving it to {to_name}"),
                        reply,
                    ));
                }
            }
        }
        Ok(acted)
    }

    /// Deletes each copy for good (`permanentDelete`).
    async fn purge(&self, mailbox: &str, copies: &[Copy]) -> Result<Acted, GraphError> {
        let user = user_path(mailbox);
        let unnamed = copies
            .iter()
            .map(Copy::folder_id)
            .filter(|f| self.name_of(f).is_none());
        let mut items = self.folder_lookups(&user, unnamed);
        for (i, copy) in copies.iter().enumerate() {
            let path = format!(
                "{user}/messages/{}/permanentDelete",
                segment(&copy.message.id)
            );
            items.push(BatchItem {
                method: "POST".into(),
                ..BatchItem::get(format!("d{i}"), path)
            });
        }
        let what = format!("permanently deleting copies in {mailbox}");
        let answers = self.client.batch(mailbox, &what, items).await?;
        self.remember(&folder_names(&answers));
        let mut acted = Acted::default();
        for (i, copy) in copies.iter().enumerate() {
            let from = match copy.place {
                Place::Deleted => Some("Recoverable Items".to_owned()),
                _ => self.name_of(copy.folder_id()),
            };
            match answer(&answers, &format!("d{i}")) {
                Some(r) if r.is_success() => acted.moved(copy, from, "purges".into()),
                Some(r) if r.status == 404 => acted.vanished += 1,
                Some(r) => acted.failures.push(failure(copy, &from, "deleting it", r)),
                None => acted
                    .failures
                    .push(format!("{}: no answer", describe(copy, &from))),
            }
        }
        Ok(acted)
    }

    /// Moves each copy back to the folder its record names, or to the source folder when it
    /// has none or that folder is gone.
    async fn move_back(
        &self,
        mailbox: &str,
        target: &MessageTarget,
        op: Operation,
        copies: &[Copy],
        found: &Found,
    ) -> Result<Acted, GraphError> {
        let user = user_path(mailbox);
        let from_name = match op {
            Operation::Undelete => "Recoverable Items".to_owned(),
            _ => target.quarantine_folder.clone(),
        };
        let (fallback, fallback_name) = match &found.source {
            Some(folder) => (folder.id.clone(), folder.display_name.clone()),
            None => ("inbox".to_owned(), "Inbox".to_owned()),
        };
        let origins: Vec<Option<String>> = copies
            .iter()
            .map(|c| c.message.origin().map(|o| o.from).filter(|f| !f.is_empty()))
            .collect();
        let lookups = lookups_by_folder(&user, origins.iter().flatten().map(String::as_str));
        let lookup_of: BTreeMap<String, String> = lookups
            .iter()
            .map(|(folder, item)| (folder.clone(), item.id.clone()))
            .collect();
        let mut items: Vec<BatchItem> = lookups.into_values().collect();
        for (i, copy) in copies.iter().enumerate() {
            let path = format!("{user}/messages/{}/move", segment(&copy.message.id));
            let item = match &origins[i] {
                Some(origin) => {
                    let body = json!({ "destinationId": origin });
                    BatchItem::with_json(format!("m{i}"), "POST", path, body)
                        .after(&lookup_of[origin])
                }
                None => {
                    let body = json!({ "destinationId": fallback });
                    BatchItem::with_json(format!("m{i}"), "POST", path, body)
                }
            };
            items.push(item);
        }

        let what = format!("moving copies back from {from_name} in {mailbox}");
        let answers = self.client.batch(mailbox, &what, items).await?;
        let names = folder_names(&answers);
        self.remember(&names);
        let mut acted = Acted::default();
        let mut orphans = Vec::new();
        for (i, copy) in copies.iter().enumerate() {
            let to_name = match &origins[i] {
                Some(origin) => names.get(origin.as_str()).cloned(),
                None => Some(fallback_name.clone()),
            };
            match answer(&answers, &format!("m{i}")) {
                Some(r) if r.is_success() => {
                    acted.moved(copy, Some(from_name.clone()), to_name.unwrap_or_default())
                }
                Some(r) if r.status == 404 => acted.vanished += 1,
                // The folder it came from is gone.
                Some(r) if r.status == 424 => orphans.push(copy),
                Some(r) => acted
                    .failures
                    .push(failure(copy, &to_name, "moving it back", r)),
                None => acted
                    .failures
                    .push(format!("{}: no answer", describe(copy, &to_name))),
            }
        }
        if !orphans.is_empty() {
            let note = format!(
                "the folder {} came from no longer exists, so it went to {fallback_name}",
                if orphans.len() == 1 {
                    "one copy"
                } else {
                    "some copies"
                }
            );
            acted.notes.push(note);
            let items = orphans
                .iter()
                .enumerate()
                .map(|(i, copy)| {
                    let path = format!("{user}/messages/{}/move", segment(&copy.message.id));
                    let body = json!({ "destinationId": fallback });
                    BatchItem::with_json(format!("o{i}"), "POST", path, body)
                })
                .collect();
            let answers = self.client.batch(mailbox, &what, items).await?;
            for (i, copy) in orphans.iter().enumerate() {
                match answer(&answers, &format!("o{i}")) {
                    Some(r) if r.is_success() => {
                        acted.moved(copy, Some(from_name.clone()), fallback_name.clone())
                    }
                    Some(r) if r.status == 404 => acted.vanished += 1,
                    Some(r) => acted
                        .failures
                        .push(failure(copy, &None, "moving it back", r)),
                    None => acted
                        .failures
                        .push(format!("{}: no answer", describe(copy, &None))),
                }
            }
        }
        Ok(acted)
    }

    /// One `GET` per distinct folder, for its display name (`f0`, `f1`...).
    fn folder_lookups<'a>(
        &self,
        user: &str,
        folders: impl Iterator<Item = &'a str>,
    ) -> Vec<BatchItem> {
        lookups_by_folder(user, folders).into_values().collect()
    }
}

/// One `GET` per distinct folder, by folder id.
fn lookups_by_folder<'a>(
    user: &str,
    folders: impl Iterator<Item = &'a str>,
) -> BTreeMap<String, BatchItem> {
    let mut items = BTreeMap::new();
    for folder in folders {
        if folder.is_empty() || items.contains_key(folder) {
            continue;
        }
        let url = with_query(
            &format!("{user}/mailFolders/{}", segment(folder)),
            &[("$select", "id,displayName")],
        );
        let item = BatchItem::get(format!("f{}", items.len()), url);
        items.insert(folder.to_owned(), item);
    }
    items
}

/// Folder id to display name, from the lookups' answers.
fn folder_names(answers: &BTreeMap<String, Reply>) -> BTreeMap<String, String> {
    answers
        .iter()
        .filter(|(id, reply)| id.starts_with('f') && reply.is_success())
        .filter_map(|(_, reply)| serde_json::from_value::<MailFolder>(reply.body.clone()).ok())
        .map(|folder| (folder.id, folder.display_name))
        .collect()
}

fn answer<'a>(answers: &'a BTreeMap<String, Reply>, id: &str) -> Option<&'a Reply> {
    answers.get(id)
}

fn describe(copy: &Copy, folder: &Option<String>) -> String {
    match folder {
        Some(name) if !name.is_empty() => format!("the copy in {name}"),
        _ => format!("copy {}", short_id(&copy.message.id)),
    }
}

fn failure(copy: &Copy, folder: &Option<String>, step: &str, reply: &Reply) -> String {
    let (code, message) = reply.error();
    format!(
        "{}: {step}: Graph answered {} {code}: {message}",
        describe(copy, folder),
        reply.status
    )
}

/// The end of a Graph id, enough to tell copies apart in a message.
fn short_id(id: &str) -> &str {
    let start = id.len().saturating_sub(12);
    id.get(start..).unwrap_or(id)
}

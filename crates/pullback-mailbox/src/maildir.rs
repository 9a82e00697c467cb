//! A Maildir++ backend: mailboxes are folders on a local filesystem, as Dovecot and Postfix
//! keep them, and a quarantine is a `rename` from one folder into another.
//!
//! Mailbox `user@domain` lives at `<root>/user@domain/`. Its INBOX is that folder itself (with
//! `cur/`, `new/` and `tmp/`); another folder `Name` is the subfolder `.Name/`. Files keep
//! their names when they move, so Maildir flags (`:2,S` for read) travel with them.

use crate::headers::MessageHeaders;
use crate::{
    Copies, Direction, MailboxBackend, MessageTarget, already_there, moved, not_found, outcome,
    refuse_target,
};
use pullback_domain::{RecipientOutcome, RecipientStatus};
use std::fs::{self, File};
use std::io::{self, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// How often a move is retried when another process renamed a file under it (a mail server
/// moves new mail to `cur/` and renames files when flags change).
const ATTEMPTS: usize = 3;

/// What went wrong in a Maildir operation.
#[derive(Debug, thiserror::Error)]
pub enum MaildirError {
    #[error("invalid mailbox name {0:?}")]
    InvalidMailbox(String),
    #[error("invalid folder name {0:?}")]
    InvalidFolder(String),
    #[error("could not {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("{0} already exists; refusing to overwrite it")]
    Exists(PathBuf),
    #[error("the background task stopped: {0}")]
    Task(String),
}

impl MaildirError {
    fn io(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> MaildirError {
        let path = path.to_owned();
        move |source| MaildirError::Io {
            action,
            path,
            source,
        }
    }

    /// True when a file went away between listing and moving it.
    fn is_vanished(&self) -> bool {
        matches!(self, MaildirError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }
}

/// One message file in a Maildir folder.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredMessage {
    pub path: PathBuf,
    pub headers: MessageHeaders,
    /// The Maildir `S` flag; mail still in `new/` is unread.
    pub is_read: bool,
}

/// Mailboxes as Maildir++ folders under one root.
#[derive(Clone, Debug)]
pub struct MaildirBackend {
    root: PathBuf,
}

impl MaildirBackend {
    pub fn new(root: PathBuf) -> MaildirBackend {
        MaildirBackend { root }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory of `folder` in `mailbox`; checks both names so that neither can leave
    /// the root.
    pub fn folder_dir(&self, mailbox: &str, folder: &str) -> Result<PathBuf, MaildirError> {
        folder_dir(&self.mailbox_dir(mailbox)?, folder)
    }

    /// Seeds mail the way a delivery agent does: written under `tmp/`, synced, then renamed
    /// into `new/`. Creates the folder when it is missing. Returns the delivered file.
    pub fn deliver(
        &self,
        mailbox: &str,
        folder: &str,
        message: &[u8],
    ) -> Result<PathBuf, MaildirError> {
        let dir = self.folder_dir(mailbox, folder)?;
        ensure_folder(&dir, is_inbox(folder))?;
        let name = unique_name();
        let tmp = dir.join("tmp").join(&name);
        let mut file = File::create_new(&tmp).map_err(MaildirError::io("create", &tmp))?;
        file.write_all(message)
            .map_err(MaildirError::io("write", &tmp))?;
        file.sync_all().map_err(MaildirError::io("sync", &tmp))?;
        let new = dir.join("new").join(&name);
        fs::rename(&tmp, &new).map_err(MaildirError::io("move into new/", &tmp))?;
        Ok(new)
    }

    /// The messages in a folder with their identifying headers; empty when it does not exist.
    pub fn messages(
        &self,
        mailbox: &str,
        folder: &str,
    ) -> Result<Vec<StoredMessage>, MaildirError> {
        let dir = self.folder_dir(mailbox, folder)?;
        let mut out = Vec::new();
        for (path, is_read) in list_files(&dir)? {
            match read_headers(&path) {
                Ok(headers) => out.push(StoredMessage {
                    path,
                    headers,
                    is_read,
                }),
                Err(e) if e.is_vanished() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    fn mailbox_dir(&self, mailbox: &str) -> Result<PathBuf, MaildirError> {
        let invalid = mailbox.is_empty()
            || mailbox.starts_with('.')
            || mailbox.contains(['/', '\0'])
            || mailbox.chars().any(char::is_control);
        if invalid {
            return Err(MaildirError::InvalidMailbox(mailbox.to_owned()));
        }
        Ok(self.root.join(mailbox))
    }

    /// Moves the target from one folder to the other; the blocking body of both operations.
    fn transfer(
        &self,
        mailbox: &str,
        target: &MessageTarget,
        direction: Direction,
    ) -> Result<RecipientOutcome, MaildirError> {
        let (from, to) = direction.folders(target);
        let home = self.mailbox_dir(mailbox)?;
        let from_dir = folder_dir(&home, from)?;
        let to_dir = folder_dir(&home, to)?;
        if !home.is_dir() {
            let details = format!(
                "mailbox {mailbox} has no directory under {}",
                self.root.display()
            );
            return Ok(outcome(mailbox, RecipientStatus::NotFound, details, None));
        }

        let mut attempt = 1;
        let found = loop {
            let found = find(&from_dir, target)?;
            if found.copies.is_empty() {
                break found;
            }
            ensure_folder(&to_dir, is_inbox(to))?;
            match move_all(&found.copies, &to_dir) {
                Ok(()) => return Ok(moved(mailbox, target, direction, found.summary())),
                Err(e) if e.is_vanished() && attempt < ATTEMPTS => attempt += 1,
                Err(e) => return Err(e),
            }
        };

        let already = find(&to_dir, target)?;
        if !already.copies.is_empty() {
            return Ok(already_there(mailbox, target, direction, already.summary()));
        }
        Ok(not_found(
            mailbox,
            target,
            direction,
            found.different + already.different,
            "",
        ))
    }

    async fn run(
        &self,
        mailbox: &str,
        target: &MessageTarget,
        direction: Direction,
    ) -> RecipientOutcome {
        if let Some(refused) = refuse_target(mailbox, target, direction) {
            return refused;
        }
        let backend = self.clone();
        let owned_mailbox = mailbox.to_owned();
        let owned_target = target.clone();
        let result = tokio::task::spawn_blocking(move || {
            backend.transfer(&owned_mailbox, &owned_target, direction)
        })
        .await
        .unwrap_or_else(|e| Err(MaildirError::Task(e.to_string())));
        let result = result.unwrap_or_else(|e| {
            let details = format!("maildir {} failed for {mailbox}: {e}", direction.verb());
            outcome(mailbox, RecipientStatus::Failed, details, None)
        });
        tracing::debug!(
            backend = "maildir",
            mailbox,
            message_id = %target.message_id,
            status = result.status.as_str(),
            "mailbox operation finished"
        );
        result
    }
}

#[async_trait::async_trait]
impl MailboxBackend for MaildirBackend {
    fn name(&self) -> &str {
        "maildir"
    }

    async fn quarantine(&self, mailbox: &str, target: &MessageTarget) -> RecipientOutcome {
        self.run(mailbox, target, Direction::Quarantine).await
    }

    async fn restore(&self, mailbox: &str, target: &MessageTarget) -> RecipientOutcome {
        self.run(mailbox, target, Direction::Restore).await
    }
}

/// The copies of the target found in one folder.
#[derive(Default)]
struct Found {
    /// Files that match the Message-ID and the fingerprint, with their read flag.
    copies: Vec<(PathBuf, bool)>,
    /// Files with the Message-ID that failed the fingerprint check.
    different: usize,
}

impl Found {
    fn summary(&self) -> Copies {
        let read = self.copies.iter().any(|(_, read)| *read);
        Copies {
            count: self.copies.len(),
            read,
        }
    }
}

fn find(dir: &Path, target: &MessageTarget) -> Result<Found, MaildirError> {
    let mut found = Found::default();
    for (path, is_read) in list_files(dir)? {
        let headers = match read_headers(&path) {
            Ok(headers) => headers,
            Err(e) if e.is_vanished() => continue,
            Err(e) => return Err(e),
        };
        if headers.message_id.as_ref() != Some(&target.message_id) {
            continue;
        }
        if headers.matches(&target.fingerprint) {
            found.copies.push((path, is_read));
        } else {
            found.different += 1;
        }
    }
    Ok(found)
}

/// The message files in `new/` and `cur/` with their read flag; empty for a missing folder.
fn list_files(dir: &Path) -> Result<Vec<(PathBuf, bool)>, MaildirError> {
    let mut out = Vec::new();
    for sub in ["new", "cur"] {
        let sub_dir = dir.join(sub);
        let entries = match fs::read_dir(&sub_dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(MaildirError::io("list", &sub_dir)(e)),
        };
        for entry in entries {
            let entry = entry.map_err(MaildirError::io("list", &sub_dir))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') {
                continue;
            }
            let is_read = sub == "cur" && flags(&name).contains('S');
            out.push((entry.path(), is_read));
        }
    }
    Ok(out)
}

/// The Maildir flags of a file name in `cur/`: the letters after `:2,`.
fn flags(name: &str) -> &str {
    name.rsplit_once(":2,")
        .map(|(_, flags)| flags)
        .unwrap_or("")
}

fn read_headers(path: &Path) -> Result<MessageHeaders, MaildirError> {
    let file = File::open(path).map_err(MaildirError::io("open", path))?;
    MessageHeaders::read_from(BufReader::new(file)).map_err(MaildirError::io("read", path))
}

/// Renames each file into the same subfolder (`new/` or `cur/`) of `to_dir`.
fn move_all(files: &[(PathBuf, bool)], to_dir: &Path) -> Result<(), MaildirError> {
    for (path, _) in files {
        let (Some(name), Some(sub)) = (path.file_name(), path.parent().and_then(Path::file_name))
        else {
            return Err(MaildirError::io("name", path)(
                io::ErrorKind::InvalidInput.into(),
            ));
        };
        let dest = to_dir.join(sub).join(name);
        // A rename replaces an existing file silently; Maildir names are unique, so an
        // existing one means something is wrong and nothing must be lost.
        if fs::symlink_metadata(&dest).is_ok() {
            return Err(MaildirError::Exists(dest));
        }
        fs::rename(path, &dest).map_err(MaildirError::io("rename", path))?;
    }
    Ok(())
}

fn folder_dir(home: &Path, folder: &str) -> Result<PathBuf, MaildirError> {
    if is_inbox(folder) {
        return Ok(home.to_owned());
    }
    let invalid = folder.is_empty()
        || folder.starts_with('.')
        || folder.ends_with('.')
        || folder.contains("..")
        || folder.contains(['/', '\0'])
        || folder.chars().any(char::is_control);
    if invalid {
        return Err(MaildirError::InvalidFolder(folder.to_owned()));
    }
    Ok(home.join(format!(".{folder}")))
}

fn is_inbox(folder: &str) -> bool {
    folder.eq_ignore_ascii_case("INBOX")
}

/// Creates a folder's `cur/`, `new/` and `tmp/`, and for a subfolder the `maildirfolder`
/// marker that Maildir++ readers expect.
fn ensure_folder(dir: &Path, inbox: bool) -> Result<(), MaildirError> {
    for sub in ["cur", "new", "tmp"] {
        let path = dir.join(sub);
        fs::create_dir_all(&path).map_err(MaildirError::io("create", &path))?;
    }
    if !inbox {
        let marker = dir.join("maildirfolder");
        if !marker.exists() {
            File::create(&marker).map_err(MaildirError::io("create", &marker))?;
        }
    }
    Ok(())
}

/// A Maildir file name: time, process and a counter make it unique on this host.
fn unique_name() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id();
    format!(
        "{}.M{}P{pid}Q{n}.pullback",
        now.as_secs(),
        now.subsec_micros()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_outside_the_root_are_refused() {
        let backend = MaildirBackend::new(PathBuf::from("/nonexistent"));
        for mailbox in ["", "../x", "a/b", ".hidden", "a\0b"] {
            assert!(backend.folder_dir(mailbox, "INBOX").is_err(), "{mailbox:?}");
        }
        for folder in ["", "../x", "a/b", ".x", "x.", "a..b"] {
            assert!(backend.folder_dir("u@x", folder).is_err(), "{folder:?}");
        }
        let dir = backend
            .folder_dir("u@x", "Quarantine.Old")
            .expect("a valid folder");
        assert_eq!(dir, PathBuf::from("/nonexistent/u@x/.Quarantine.Old"));
        let inbox = backend.folder_dir("u@x", "inbox").expect("INBOX");
        assert_eq!(inbox, PathBuf::from("/nonexistent/u@x"));
    }

    #[test]
    fn read_flag_comes_from_the_file_name() {
        assert_eq!(flags("1.M1P1Q1.host:2,FS"), "FS");
        assert_eq!(flags("1.M1P1Q1.host"), "");
    }
}

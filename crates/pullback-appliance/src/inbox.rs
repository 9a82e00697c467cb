//! Upgrades uploaded through the API or the web UI.
//!
//! The node runs unprivileged and cannot write a root slot, so an upload only drops the
//! image in the inbox, a folder on the data partition that the node's group may write. A
//! path unit starts `pullback upgrade inbox` as root when `request.img` appears there; it
//! moves the file out of the node's reach, checks and applies it exactly as `pullback
//! upgrade apply` does, and writes each step's outcome to `result.json`, which the node reads
//! back for the API.
//!
//! The image itself is untrusted either way: its signature is what counts. What root must
//! not trust is the file system object the node left, so [`take_request`] accepts a plain
//! file with a single link only.

use crate::boot::write_synced;
use serde::{Deserialize, Serialize};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The image the node leaves for root to apply.
pub const REQUEST: &str = "request.img";
/// The outcome of the last request, written by root.
pub const RESULT: &str = "result.json";

/// Where an uploaded image stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InboxState {
    /// Uploaded; root has not taken it yet.
    Queued,
    /// Root took it and is checking signature, hashes and data format.
    Checking,
    /// A check failed; nothing was written to any slot.
    Refused,
    /// Every check passed; the node is stopped and the other slot is being written.
    Installing,
    /// Written; the appliance is rebooting into the new slot for its one try.
    Rebooting,
    /// Writing failed after the checks; the node runs the current release again.
    Failed,
    /// The trial boot was healthy: the new release is the active one.
    Confirmed,
    /// The trial boot failed its health check; the appliance is back on the previous release.
    FellBack,
}

impl InboxState {
    /// Whether a new upload must wait for this one.
    pub fn busy(self) -> bool {
        matches!(
            self,
            InboxState::Queued | InboxState::Checking | InboxState::Installing
        )
    }
}

/// What `result.json` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboxResult {
    /// The step reached.
    pub state: InboxState,
    /// What happened, for people (a refusal names the check that failed).
    pub message: String,
    /// The release in the image, once its manifest was read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Who uploaded it, as the API's audit names callers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uploaded_by: Option<String>,
    /// Seconds since the Unix epoch.
    pub at: u64,
}

/// The inbox folder.
#[derive(Debug, Clone)]
pub struct Inbox {
    dir: PathBuf,
}

impl Inbox {
    /// The inbox at `dir`.
    pub fn at(dir: impl Into<PathBuf>) -> Inbox {
        Inbox { dir: dir.into() }
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where a request waits.
    pub fn request(&self) -> PathBuf {
        self.dir.join(REQUEST)
    }

    /// The last outcome, if any and readable.
    pub fn result(&self) -> io::Result<Option<InboxResult>> {
        match std::fs::read(self.dir.join(RESULT)) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Replaces the outcome, readable by the node's group.
    pub fn set_result(&self, result: &InboxResult) -> io::Result<()> {
        let path = self.dir.join(RESULT);
        let bytes = serde_json::to_vec_pretty(result).map_err(io::Error::other)?;
        write_synced(&path, &bytes)?;
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o640))
    }

    /// Records how the trial boot of the uploaded release `version` ended, if the last
    /// request is the one that rebooted into it.
    pub fn settle(&self, version: &str, state: InboxState, message: String) -> io::Result<()> {
        match self.result() {
            Ok(Some(result))
                if result.state == InboxState::Rebooting
                    && result.version.as_deref() == Some(version) =>
            {
                self.set_result(&InboxResult {
                    state,
                    message,
                    at: crate::slots::now(),
                    ..result
                })
            }
            _ => Ok(()),
        }
    }

    /// Makes the finished upload `partial` the request, unless one is already waiting
    /// (`AlreadyExists`). A hard link, then the partial name goes: never a replacement.
    pub fn submit(&self, partial: &Path) -> io::Result<()> {
        let linked = std::fs::hard_link(partial, self.request());
        let removed = std::fs::remove_file(partial);
        linked?;
        removed
    }

    /// Moves a waiting request to `into` (a folder only root can write, on the same file
    /// system) and returns it. `Ok(None)` when nothing waits. Anything but a regular file
    /// with one link is removed and refused.
    pub fn take_request(&self, into: &Path) -> io::Result<Option<PathBuf>> {
        let request = self.request();
        let metadata = match std::fs::symlink_metadata(&request) {
            Ok(metadata) => metadata,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        if !metadata.file_type().is_file() {
            let _ = std::fs::remove_file(&request);
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a regular file", request.display()),
            ));
        }
        if let Some(parent) = into.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::rename(&request, into)?;
        // Checked again after the move: the name could have changed between the two calls.
        let moved = std::fs::symlink_metadata(into)?;
        if !moved.file_type().is_file() || moved.nlink() != 1 {
            let _ = std::fs::remove_file(into);
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} is not a regular file with a single link",
                    request.display()
                ),
            ));
        }
        Ok(Some(into.to_path_buf()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(state: InboxState) -> InboxResult {
        InboxResult {
            state,
            message: "m".into(),
            version: None,
            uploaded_by: Some("admin".into()),
            at: 1,
        }
    }

    #[test]
    fn a_second_upload_never_replaces_a_waiting_one() {
        let dir = tempfile::tempdir().unwrap();
        let inbox = Inbox::at(dir.path());
        std::fs::write(dir.path().join("one.partial"), b"first").unwrap();
        inbox.submit(&dir.path().join("one.partial")).unwrap();
        std::fs::write(dir.path().join("two.partial"), b"second").unwrap();
        let refused = inbox.submit(&dir.path().join("two.partial")).unwrap_err();
        assert_eq!(refused.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(inbox.request()).unwrap(), b"first");
        assert!(
            !dir.path().join("two.partial").exists(),
            "the refused upload stays behind"
        );
    }

    #[test]
    fn root_takes_only_a_plain_file_with_one_link() {
        let dir = tempfile::tempdir().unwrap();
        let inbox = Inbox::at(dir.path().join("inbox"));
        std::fs::create_dir(inbox.dir()).unwrap();
        let private = dir.path().join("private/request.img");
        assert_eq!(inbox.take_request(&private).unwrap(), None);

        // A symbolic link to something root can read is refused and removed.
        let secret = dir.path().join("secret");
        std::fs::write(&secret, b"root's").unwrap();
        std::os::unix::fs::symlink(&secret, inbox.request()).unwrap();
        let refused = inbox.take_request(&private).unwrap_err();
        assert!(
            refused.to_string().contains("not a regular file"),
            "{refused}"
        );
        assert!(std::fs::symlink_metadata(inbox.request()).is_err());
        assert_eq!(std::fs::read(&secret).unwrap(), b"root's");

        // A second name for a file elsewhere is refused too.
        std::fs::hard_link(&secret, inbox.request()).unwrap();
        let refused = inbox.take_request(&private).unwrap_err();
        assert!(refused.to_string().contains("single link"), "{refused}");
        assert!(!private.exists());
        assert_eq!(std::fs::read(&secret).unwrap(), b"root's");

        std::fs::write(inbox.request(), b"image").unwrap();
        assert_eq!(inbox.take_request(&private).unwrap(), Some(private.clone()));
        assert_eq!(std::fs::read(&private).unwrap(), b"image");
        assert!(!inbox.request().exists());
    }

    #[test]
    fn results_round_trip_and_say_when_an_upload_must_wait() {
        let dir = tempfile::tempdir().unwrap();
        let inbox = Inbox::at(dir.path());
        assert_eq!(inbox.result().unwrap(), None);
        inbox.set_result(&result(InboxState::Checking)).unwrap();
        assert_eq!(inbox.result().unwrap(), Some(result(InboxState::Checking)));
        assert!(InboxState::Checking.busy());
        assert!(!InboxState::Refused.busy() && !InboxState::Rebooting.busy());
        // A trial's end is recorded only for the release the last request rebooted into.
        inbox
            .settle("2.0", InboxState::Confirmed, "ok".into())
            .unwrap();
        assert_eq!(inbox.result().unwrap().unwrap().state, InboxState::Checking);
        let rebooting = InboxResult {
            version: Some("2.0".into()),
            ..result(InboxState::Rebooting)
        };
        inbox.set_result(&rebooting).unwrap();
        inbox
            .settle("1.9", InboxState::Confirmed, "ok".into())
            .unwrap();
        assert_eq!(
            inbox.result().unwrap().unwrap().state,
            InboxState::Rebooting
        );
        inbox
            .settle("2.0", InboxState::FellBack, "not healthy".into())
            .unwrap();
        let settled = inbox.result().unwrap().unwrap();
        assert_eq!(
            (settled.state, settled.message.as_str()),
            (InboxState::FellBack, "not healthy")
        );
        assert_eq!(settled.uploaded_by.as_deref(), Some("admin"));
        std::fs::write(dir.path().join(RESULT), b"{not json").unwrap();
        assert_eq!(
            inbox.result().unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
    }
}

//! Backups of a Pullback node on a target: a local folder or a folder on an SFTP server.
//!
//! A backup is a folder of files (a RocksDB checkpoint made on local disk) plus a
//! `manifest.json` that lists every file with its size and SHA-256. [`Target::write`] copies
//! the files into `<id>.partial/`, hashing them as they stream, writes the manifest last and
//! only then renames the folder to `<id>`, so a backup cut short never looks complete.
//! [`Target::verify`] reads everything back and names the first bad file, [`Target::fetch`]
//! downloads a backup into a local folder checking every hash, and [`Target::prune`] keeps the
//! newest few.
//!
//! This crate does pure file and network IO: it knows nothing of RocksDB or the cluster.

mod config;
mod error;
mod local;
mod manifest;
mod progress;
mod sftp;
mod stream;
#[cfg(feature = "testing")]
pub mod testing;

pub use config::{DEFAULT_SFTP_PORT, Secret, TargetConfig};
pub use error::BackupError;
pub use local::LocalTarget;
pub use manifest::{
    DELETING_SUFFIX, FileEntry, MANIFEST_FILE, MANIFEST_FORMAT, Manifest, PARTIAL_SUFFIX,
    backup_id, check_id,
};
pub use progress::{NO_PROGRESS, Progress, ProgressFn, Stage};
pub use sftp::{DEFAULT_CONNECT_TIMEOUT, SftpConfig, SftpTarget};

use std::path::Path;
use std::time::Duration;

/// How long an unfinished backup folder (`*.partial`, `*.deleting`) must have been left
/// untouched before [`Target::prune`] removes it.
pub const STALE_PARTIAL_AFTER: Duration = Duration::from_secs(3600);

/// Where backups are kept.
#[derive(Clone, Debug)]
pub enum Target {
    /// A local folder.
    Local(LocalTarget),
    /// A folder on an SFTP server.
    Sftp(SftpTarget),
}

impl Target {
    /// The target a configuration describes, after checking it (see
    /// [`TargetConfig::validate`]); an SFTP private key is read now.
    pub fn new(config: &TargetConfig) -> Result<Target, BackupError> {
        config.validate()?;
        Ok(match config.clone() {
            TargetConfig::Local { path } => Target::Local(LocalTarget::new(path)),
            TargetConfig::Sftp {
                host,
                port,
                user,
                path,
                password,
                private_key,
                host_key_sha256,
            } => Target::Sftp(SftpTarget::new(SftpConfig {
                host,
                port,
                user,
                path,
                password,
                private_key,
                host_key_sha256,
            })?),
        })
    }

    /// Where backups go, for messages and logs; holds no secret.
    pub fn location(&self) -> String {
        match self {
            Target::Local(local) => local.root().display().to_string(),
            Target::Sftp(sftp) => sftp.location(),
        }
    }

    /// Writes a backup of every regular file under `source_dir` (recursively, symbolic links
    /// left out) as backup `manifest.id`, and returns the manifest with its files filled in.
    ///
    /// The files are copied into `<id>.partial/` and hashed as they stream; the manifest is
    /// written last, everything is synced to disk, and the folder is renamed to `<id>`.
    /// `manifest.files` is ignored and `manifest.manifest_format` set to [`MANIFEST_FORMAT`].
    /// An existing `<id>.partial/` is replaced; an existing backup `<id>` is refused. On
    /// failure the partial folder is removed when possible.
    pub async fn write(
        &self,
        source_dir: &Path,
        manifest: Manifest,
        progress: &ProgressFn<'_>,
    ) -> Result<Manifest, BackupError> {
        let id = manifest.id.clone();
        self.write_described(source_dir, &id, async { Ok(manifest) }, progress)
            .await
    }

    /// [`Target::write`] with a manifest that is still being worked out while the files are
    /// copied (the counts of a scan of the same files, say): `manifest` is awaited once every
    /// file is written, and its error abandons the backup. Its `id` must be `id`.
    pub async fn write_described(
        &self,
        source_dir: &Path,
        id: &str,
        manifest: impl Future<Output = Result<Manifest, BackupError>> + Send,
        progress: &ProgressFn<'_>,
    ) -> Result<Manifest, BackupError> {
        match self {
            Target::Local(local) => local.write(source_dir, id, manifest, progress).await,
            Target::Sftp(sftp) => sftp.write(source_dir, id, manifest, progress).await,
        }
    }

    /// Reads the backup `id` back from the target and checks it: its manifest is readable and
    /// of a known format, and every listed file is there with the right size and SHA-256.
    /// The error names the first bad file ([`BackupError::BadFile`]).
    pub async fn verify(
        &self,
        id: &str,
        progress: &ProgressFn<'_>,
    ) -> Result<Manifest, BackupError> {
        match self {
            Target::Local(local) => local.verify(id, progress).await,
            Target::Sftp(sftp) => sftp.verify(id, progress).await,
        }
    }

    /// Copies the files of backup `id` into the local folder `into`, which must be absent or
    /// empty, checking each file's size and SHA-256 as it arrives; the manifest itself is
    /// returned, not written. On failure `into` is left empty.
    pub async fn fetch(
        &self,
        id: &str,
        into: &Path,
        progress: &ProgressFn<'_>,
    ) -> Result<Manifest, BackupError> {
        match self {
            Target::Local(local) => local.fetch(id, into, progress).await,
            Target::Sftp(sftp) => sftp.fetch(id, into, progress).await,
        }
    }

    /// The complete backups (folders with a readable manifest), oldest first. Unfinished
    /// folders and anything else are left out; a folder whose manifest cannot be read is
    /// logged and left out.
    pub async fn list(&self) -> Result<Vec<Manifest>, BackupError> {
        match self {
            Target::Local(local) => local.list().await,
            Target::Sftp(sftp) => sftp.list().await,
        }
    }

    /// Deletes backup `id`. The folder is first renamed `<id>.deleting`, so a deletion cut
    /// short leaves nothing that looks like a backup.
    pub async fn delete(&self, id: &str) -> Result<(), BackupError> {
        match self {
            Target::Local(local) => local.delete(id).await,
            Target::Sftp(sftp) => sftp.delete(id).await,
        }
    }

    /// Keeps the newest `keep` complete backups and deletes the others (all of them when
    /// `keep` is 0), then removes unfinished folders untouched for [`STALE_PARTIAL_AFTER`].
    /// Returns the names of the folders deleted: backup ids, and unfinished folders with
    /// their suffix.
    pub async fn prune(&self, keep: usize) -> Result<Vec<String>, BackupError> {
        match self {
            Target::Local(local) => local.prune(keep).await,
            Target::Sftp(sftp) => sftp.prune(keep).await,
        }
    }
}

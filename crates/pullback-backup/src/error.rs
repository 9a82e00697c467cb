//! Why a backup operation failed. Every message says what was being done and where (the
//! file, the folder, the server), and none holds a secret.

use std::io;
use std::path::PathBuf;

/// Why a backup operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// What the manifest describes could not be worked out, so the backup was abandoned.
    #[error("describing the backup: {reason}")]
    Describe {
        /// Why not, such as a value in the store that cannot be read.
        reason: String,
    },
    /// The target configuration cannot work.
    #[error("backup target: {problem}")]
    InvalidConfig {
        /// What is wrong with it.
        problem: String,
    },
    /// A local file operation failed, such as a write to a full disk.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done, such as `writing`.
        what: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// The SFTP server could not be reached.
    #[error("cannot reach SFTP server {host}:{port}: {reason}")]
    Unreachable {
        /// The server's host name or address.
        host: String,
        /// The server's port.
        port: u16,
        /// Why not, such as `connection refused`.
        reason: String,
    },
    /// The SFTP server's host key is not the one configured; nothing was sent to it.
    #[error(
        "SFTP server {host}:{port} offered host key {offered}, but the target expects \
         {expected}; refusing to log in"
    )]
    HostKeyMismatch {
        /// The server's host name or address.
        host: String,
        /// The server's port.
        port: u16,
        /// The configured fingerprint.
        expected: String,
        /// The fingerprint of the key the server offered, as `ssh-keygen -lf` prints it.
        offered: String,
    },
    /// The SFTP server refused every credential configured.
    #[error("SFTP server {host}:{port} refused to log in user {user} with {methods}")]
    AuthenticationFailed {
        /// The server's host name or address.
        host: String,
        /// The server's port.
        port: u16,
        /// The user name.
        user: String,
        /// The methods tried, such as `private key, password`.
        methods: String,
    },
    /// The SSH connection failed after it was made.
    #[error("SSH connection to {host}:{port}: {what}: {source}")]
    Ssh {
        /// The server's host name or address.
        host: String,
        /// The server's port.
        port: u16,
        /// What was being done.
        what: &'static str,
        /// The SSH library's error.
        #[source]
        source: russh::Error,
    },
    /// The SFTP server answered a request with an error.
    #[error("SFTP server {server}: {what} {path}: {source}")]
    Sftp {
        /// `host:port`.
        server: String,
        /// What was being done, such as `writing`.
        what: &'static str,
        /// The remote path.
        path: String,
        /// The server's answer.
        #[source]
        source: io::Error,
    },
    /// The SFTP server did not answer in time.
    #[error("SFTP server {server}: {what} took longer than {secs} s")]
    Timeout {
        /// `host:port`.
        server: String,
        /// What was being done.
        what: &'static str,
        /// The limit.
        secs: u64,
    },
    /// The backup id cannot name a backup folder.
    #[error("invalid backup id {id:?}: {reason}")]
    InvalidId {
        /// The id given.
        id: String,
        /// Why it cannot be used.
        reason: &'static str,
    },
    /// No complete backup has this id.
    #[error("no backup {id} in {location}")]
    NotFound {
        /// The id asked for.
        id: String,
        /// The target, as [`crate::TargetConfig::location`] describes it.
        location: String,
    },
    /// A complete backup already has this id.
    #[error("backup {id} already exists in {location}")]
    AlreadyExists {
        /// The id.
        id: String,
        /// The target.
        location: String,
    },
    /// The backup's manifest is missing, unreadable, or of a format this version does not read.
    #[error("backup {id}: {}: {problem}", crate::MANIFEST_FILE)]
    BadManifest {
        /// The backup.
        id: String,
        /// What is wrong.
        problem: String,
    },
    /// A file of the backup is missing, truncated or corrupted.
    #[error("backup {id}: file {file}: {problem}")]
    BadFile {
        /// The backup.
        id: String,
        /// The file's path inside the backup.
        file: String,
        /// What is wrong, such as `truncated: 10 bytes, the manifest says 20`.
        problem: String,
    },
    /// The folder to back up cannot be used.
    #[error("source folder {path}: {problem}")]
    BadSource {
        /// The folder.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// The folder to fetch into cannot be used.
    #[error("fetching into {path}: {problem}")]
    BadDestination {
        /// The folder.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// The operation was given up because the caller stopped waiting for it.
    #[error("the backup operation was cancelled")]
    Cancelled,
}

impl BackupError {
    /// True when a file of the backup is missing, truncated or corrupted, or its manifest is
    /// bad: the backup itself is damaged, rather than the way to it.
    pub fn is_damaged_backup(&self) -> bool {
        matches!(
            self,
            BackupError::BadFile { .. } | BackupError::BadManifest { .. }
        )
    }
}

/// A mapper from an IO error to [`BackupError::Io`] for `map_err`.
pub(crate) fn io_error(
    what: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(io::Error) -> BackupError {
    let path = path.into();
    move |source| BackupError::Io { what, path, source }
}

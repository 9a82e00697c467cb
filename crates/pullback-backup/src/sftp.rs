//! The SFTP target: backups in sub-folders of a folder on an SSH server, reached with a pure
//! Rust client. The server's host key is checked against the configured fingerprint before
//! any credential is sent. Each operation opens its own connection and closes it at the end.
//!
//! Local file work (reading, hashing, writing fetched files) runs on blocking threads that
//! exchange large chunks with the task talking to the server, so hashing overlaps the
//! network.

use crate::config::parse_fingerprint;
use crate::error::io_error;
use crate::local::{
    SourceFile, bad_file, check_streamed, empty_folder, parents, prepare_destination, size_problem,
    sort_oldest_first, walk_source,
};
use crate::manifest::{
    DELETING_SUFFIX, MANIFEST_FILE, MANIFEST_FORMAT, MANIFEST_MAX_BYTES, PARTIAL_SUFFIX, check_id,
};
use crate::progress::{ProgressFn, Reporter, Stage};
use crate::stream::{CHUNK_BYTES, Streamed, fill, write_in_pieces};
use crate::{BackupError, FileEntry, Manifest, STALE_PARTIAL_AFTER, Secret};
use russh::client;
use russh::keys::{HashAlg, PrivateKey, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use russh_sftp::client::SftpSession;
use russh_sftp::client::error::Error as SftpError;
use russh_sftp::protocol::StatusCode;
use sha2::{Digest, Sha256};
use std::fmt;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// How long a TCP connection to the server may take.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the SSH handshake, the login and the start of SFTP may take together.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(30);

/// How long one SFTP request may wait for its answer; syncing a large file to a slow disk is
/// the slowest.
const REQUEST_TIMEOUT_SECS: u64 = 120;

/// The ciphers offered, best first: AES-GCM runs on the processor's AES instructions and
/// moves backups faster than ChaCha20-Poly1305, which stays for servers without AES-GCM.
const CIPHERS: &[russh::cipher::Name] = &[
    russh::cipher::AES_256_GCM,
    russh::cipher::AES_128_GCM,
    russh::cipher::CHACHA20_POLY1305,
    russh::cipher::AES_256_CTR,
    russh::cipher::AES_128_CTR,
];

/// Chunks in flight between the network task and a local thread.
const BUFFERS: usize = 4;

/// A buffer and how many of its bytes hold content.
type Chunk = (Vec<u8>, usize);

/// Backups in a folder on an SFTP server: `<path>/<id>/` holds a backup's files and its
/// `manifest.json`. Its `Debug` shows no credential.
#[derive(Clone)]
pub struct SftpTarget {
    host: String,
    port: u16,
    user: String,
    path: String,
    password: Option<Secret>,
    private_key: Option<Arc<PrivateKey>>,
    host_key_sha256: String,
    connect_timeout: Duration,
}

impl fmt::Debug for SftpTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SftpTarget")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("path", &self.path)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field(
                "private_key",
                &self.private_key.as_ref().map(|_| "<redacted>"),
            )
            .field("host_key_sha256", &self.host_key_sha256)
            .finish()
    }
}

/// The credentials and address of an SFTP target, as in [`crate::TargetConfig::Sftp`].
#[derive(Clone, Debug)]
pub struct SftpConfig {
    /// The server's host name or address.
    pub host: String,
    /// The server's port.
    pub port: u16,
    /// The user to log in as.
    pub user: String,
    /// The remote folder holding the backups.
    pub path: String,
    /// The password, tried after the private key.
    pub password: Option<Secret>,
    /// An unencrypted private key in OpenSSH or PEM text.
    pub private_key: Option<Secret>,
    /// The server's host key fingerprint, `SHA256:` and base64.
    pub host_key_sha256: String,
}

impl SftpTarget {
    /// A target for `config`, whose private key is read now so that a bad key is reported
    /// before the first backup.
    pub fn new(config: SftpConfig) -> Result<SftpTarget, BackupError> {
        let location = format!("sftp://{}@{}:{}", config.user, config.host, config.port);
        let private_key = match &config.private_key {
            None => None,
            Some(Secret(text)) => Some(Arc::new(
                russh::keys::decode_secret_key(text, None).map_err(|e| {
                    BackupError::InvalidConfig {
                        problem: format!("{location}: the private key cannot be used: {e}"),
                    }
                })?,
            )),
        };
        let host_key_sha256 = parse_fingerprint(&config.host_key_sha256)
            .map_err(|problem| BackupError::InvalidConfig {
                problem: format!("{location}: host_key_sha256 {problem}"),
            })?
            .to_owned();
        Ok(SftpTarget {
            host: config.host,
            port: config.port,
            user: config.user,
            path: config.path,
            password: config.password,
            private_key,
            host_key_sha256,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        })
    }

    /// The same target with another limit on the time a TCP connection may take.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> SftpTarget {
        self.connect_timeout = timeout;
        self
    }

    /// Where backups go, such as `sftp://pullback@backup.example.test:22/srv/backups`.
    pub fn location(&self) -> String {
        let slash = if self.path.starts_with('/') {
            ""
        } else {
            "/~/"
        };
        format!(
            "sftp://{}@{}:{}{slash}{}",
            self.user, self.host, self.port, self.path
        )
    }

    /// Uploads every regular file under `source_dir` into `<path>/<id>.partial/`, hashing as
    /// it goes, writes the manifest, asks the server to sync each file to disk, and renames
    /// the folder to `<path>/<id>`.
    pub async fn write(
        &self,
        source_dir: &Path,
        id: &str,
        manifest: impl Future<Output = Result<Manifest, BackupError>> + Send,
        progress: &ProgressFn<'_>,
    ) -> Result<Manifest, BackupError> {
        check_id(id)?;
        let id = id.to_owned();
        let source = source_dir.to_owned();
        let files = blocking(move || walk_source(&source)).await?;
        let session = self.connect().await?;
        session.check_root(&self.path).await?;
        let done = self.remote(&[&id]);
        if session.exists(&done).await? {
            return Err(BackupError::AlreadyExists {
                id,
                location: self.location(),
            });
        }
        let partial = self.remote(&[&format!("{id}{PARTIAL_SUFFIX}")]);
        if session.exists(&partial).await? {
            session.remove_tree(&partial).await?;
        }
        session.create_dir(&partial).await?;

        let total = files.iter().map(|f| f.size).sum();
        let mut reporter = Reporter::new(progress, Stage::Writing, total);
        let written = async {
            let files = self
                .upload_all(&session, &partial, &files, &mut reporter)
                .await?;
            let mut manifest = manifest.await?;
            if manifest.id != id {
                return Err(BackupError::Describe {
                    reason: format!("the manifest is for backup {}, not {id}", manifest.id),
                });
            }
            manifest.manifest_format = MANIFEST_FORMAT;
            manifest.files = files;
            let manifest_path = join(&partial, MANIFEST_FILE);
            session
                .upload_bytes(&manifest_path, &manifest.to_json())
                .await?;
            Ok(manifest)
        }
        .await;
        let manifest = match written {
            Ok(manifest) => manifest,
            Err(e) => {
                // Best effort: the error that stopped the write is the one to report.
                let _ = session.remove_tree(&partial).await;
                session.close().await;
                return Err(e);
            }
        };
        session.rename(&partial, &done).await?;
        session.close().await;
        reporter.report();
        tracing::info!(id, target = %self.location(), bytes = total, "backup written");
        Ok(manifest)
    }

    async fn upload_all(
        &self,
        session: &Session,
        partial: &str,
        files: &[SourceFile],
        reporter: &mut Reporter<'_>,
    ) -> Result<Vec<FileEntry>, BackupError> {
        for parent in parents(files.iter().map(|f| f.relative.as_str())) {
            session.create_dir(&join(partial, parent)).await?;
        }
        let mut entries = Vec::with_capacity(files.len());
        for file in files {
            let remote = join(partial, &file.relative);
            let streamed = session.upload(&file.path, &remote, reporter).await?;
            entries.push(FileEntry {
                path: file.relative.clone(),
                size: streamed.size,
                sha256: streamed.sha256,
            });
        }
        Ok(entries)
    }

    /// Downloads the backup and checks every file against the manifest.
    pub async fn verify(
        &self,
        id: &str,
        progress: &ProgressFn<'_>,
    ) -> Result<Manifest, BackupError> {
        let session = self.connect().await?;
        let (folder, manifest) = self.open_backup(&session, id).await?;
        let mut reporter = Reporter::new(progress, Stage::Verifying, manifest.total_bytes());
        for entry in &manifest.files {
            let remote = join(&folder, &entry.path);
            let streamed = session.download(&remote, None, &mut reporter).await?;
            check_streamed(&manifest, entry, &streamed)?;
        }
        session.close().await;
        reporter.report();
        Ok(manifest)
    }

    /// Downloads the backup's files into the local folder `into` (absent or empty), checking
    /// each against the manifest. On failure `into` is left empty.
    pub async fn fetch(
        &self,
        id: &str,
        into: &Path,
        progress: &ProgressFn<'_>,
    ) -> Result<Manifest, BackupError> {
        let session = self.connect().await?;
        let (folder, manifest) = self.open_backup(&session, id).await?;
        let destination = into.to_owned();
        blocking(move || prepare_destination(&destination)).await?;
        let mut reporter = Reporter::new(progress, Stage::Fetching, manifest.total_bytes());
        let fetched = async {
            for parent in parents(manifest.files.iter().map(|f| f.path.as_str())) {
                let path = into.join(parent);
                std::fs::create_dir_all(&path).map_err(io_error("creating", &path))?;
            }
            for entry in &manifest.files {
                let remote = join(&folder, &entry.path);
                let local = into.join(&entry.path);
                let streamed = session
                    .download(&remote, Some(local), &mut reporter)
                    .await?;
                check_streamed(&manifest, entry, &streamed)?;
            }
            Ok(())
        }
        .await;
        session.close().await;
        if let Err(e) = fetched {
            let destination = into.to_owned();
            let _ = blocking(move || {
                empty_folder(&destination);
                Ok(())
            })
            .await;
            return Err(e);
        }
        reporter.report();
        Ok(manifest)
    }

    /// The complete backups, oldest first.
    pub async fn list(&self) -> Result<Vec<Manifest>, BackupError> {
        let session = self.connect().await?;
        let manifests = self.list_with(&session).await;
        session.close().await;
        manifests
    }

    async fn list_with(&self, session: &Session) -> Result<Vec<Manifest>, BackupError> {
        let mut manifests = Vec::new();
        for (id, is_dir, _) in session.read_dir(&self.path).await? {
            if !is_dir || check_id(&id).is_err() {
                continue;
            }
            let folder = self.remote(&[&id]);
            if !session.exists(&join(&folder, MANIFEST_FILE)).await? {
                continue;
            }
            match session.read_manifest(&folder, &id).await {
                Ok(manifest) => manifests.push(manifest),
                Err(error) => tracing::warn!(
                    id, target = %self.location(), %error, "backup left out of the list"
                ),
            }
        }
        sort_oldest_first(&mut manifests);
        Ok(manifests)
    }

    /// Deletes one backup.
    pub async fn delete(&self, id: &str) -> Result<(), BackupError> {
        check_id(id)?;
        let session = self.connect().await?;
        let deleted = self.delete_with(&session, id).await;
        session.close().await;
        deleted
    }

    async fn delete_with(&self, session: &Session, id: &str) -> Result<(), BackupError> {
        let folder = self.remote(&[id]);
        if !session.exists(&folder).await? {
            return Err(BackupError::NotFound {
                id: id.to_owned(),
                location: self.location(),
            });
        }
        // Renamed first, so that a deletion cut short never leaves a backup that looks
        // complete but is not; prune removes the rest later.
        let deleting = self.remote(&[&format!("{id}{DELETING_SUFFIX}")]);
        if session.exists(&deleting).await? {
            session.remove_tree(&deleting).await?;
        }
        session.rename(&folder, &deleting).await?;
        session.remove_tree(&deleting).await?;
        tracing::info!(id, target = %self.location(), "backup deleted");
        Ok(())
    }

    /// Keeps the newest `keep` complete backups and deletes the others, and any unfinished
    /// folder untouched for an hour. Returns the names deleted.
    pub async fn prune(&self, keep: usize) -> Result<Vec<String>, BackupError> {
        let session = self.connect().await?;
        let pruned = self.prune_with(&session, keep).await;
        session.close().await;
        pruned
    }

    async fn prune_with(&self, session: &Session, keep: usize) -> Result<Vec<String>, BackupError> {
        let manifests = self.list_with(session).await?;
        let mut deleted = Vec::new();
        for manifest in &manifests[..manifests.len().saturating_sub(keep)] {
            self.delete_with(session, &manifest.id).await?;
            deleted.push(manifest.id.clone());
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        for (name, is_dir, mtime) in session.read_dir(&self.path).await? {
            let unfinished = name.ends_with(PARTIAL_SUFFIX) || name.ends_with(DELETING_SUFFIX);
            if !is_dir || !unfinished {
                continue;
            }
            let folder = self.remote(&[&name]);
            let last_change = session.newest_change(&folder, mtime).await?;
            if now.saturating_sub(last_change) >= STALE_PARTIAL_AFTER.as_secs() {
                session.remove_tree(&folder).await?;
                tracing::info!(name, target = %self.location(), "unfinished backup folder removed");
                deleted.push(name);
            }
        }
        Ok(deleted)
    }

    async fn open_backup(
        &self,
        session: &Session,
        id: &str,
    ) -> Result<(String, Manifest), BackupError> {
        check_id(id)?;
        let folder = self.remote(&[id]);
        if !session.exists(&folder).await? {
            return Err(BackupError::NotFound {
                id: id.to_owned(),
                location: self.location(),
            });
        }
        let manifest = session.read_manifest(&folder, id).await?;
        // Sizes first: a missing or truncated file is found before gigabytes are read.
        for entry in &manifest.files {
            let found = session.file_size(&join(&folder, &entry.path)).await?;
            if let Some(problem) = size_problem(found, entry.size) {
                return Err(bad_file(&manifest, entry, problem));
            }
        }
        Ok((folder, manifest))
    }

    /// The remote path of `parts` under the target folder.
    fn remote(&self, parts: &[&str]) -> String {
        parts
            .iter()
            .fold(self.path.clone(), |path, part| join(&path, part))
    }

    fn server(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// Connects, checks the host key, logs in and starts SFTP.
    async fn connect(&self) -> Result<Session, BackupError> {
        let unreachable = |reason: String| BackupError::Unreachable {
            host: self.host.clone(),
            port: self.port,
            reason,
        };
        let connecting = tokio::net::TcpStream::connect((self.host.as_str(), self.port));
        let tcp = match tokio::time::timeout(self.connect_timeout, connecting).await {
            Err(_) => {
                let secs = self.connect_timeout.as_secs_f32();
                return Err(unreachable(format!("no answer within {secs} s")));
            }
            Ok(Err(e)) => return Err(unreachable(e.to_string())),
            Ok(Ok(tcp)) => tcp,
        };
        // Nagle's algorithm would delay the small requests that SFTP sends.
        let _ = tcp.set_nodelay(true);
        match tokio::time::timeout(LOGIN_TIMEOUT, self.login(tcp)).await {
            Ok(result) => result,
            Err(_) => Err(BackupError::Timeout {
                server: self.server(),
                what: "logging in",
                secs: LOGIN_TIMEOUT.as_secs(),
            }),
        }
    }

    async fn login(&self, tcp: tokio::net::TcpStream) -> Result<Session, BackupError> {
        let offered = Arc::new(Mutex::new(None));
        let checker = HostKeyCheck {
            expected: self.host_key_sha256.clone(),
            offered: offered.clone(),
        };
        let config = Arc::new(client::Config {
            inactivity_timeout: Some(Duration::from_secs(REQUEST_TIMEOUT_SECS * 2)),
            preferred: russh::Preferred {
                cipher: std::borrow::Cow::Borrowed(CIPHERS),
                ..russh::Preferred::default()
            },
            ..client::Config::default()
        });
        let ssh = match client::connect_stream(config, tcp, checker).await {
            Ok(ssh) => ssh,
            Err(russh::Error::UnknownKey) => {
                let offered = offered.lock().expect("the checker never panics").clone();
                return Err(BackupError::HostKeyMismatch {
                    host: self.host.clone(),
                    port: self.port,
                    expected: format!("SHA256:{}", self.host_key_sha256),
                    offered: offered.unwrap_or_else(|| "no key".to_owned()),
                });
            }
            Err(e) => return Err(self.ssh_error("the SSH handshake")(e)),
        };
        let mut ssh = ssh;
        self.authenticate(&mut ssh).await?;

        let channel = ssh
            .channel_open_session()
            .await
            .map_err(self.ssh_error("opening a session"))?;
        channel
            .request_subsystem(true, "sftp")
            .await
            .map_err(self.ssh_error("starting SFTP"))?;
        let config = russh_sftp::client::Config {
            request_timeout_secs: REQUEST_TIMEOUT_SECS,
            max_concurrent_reads: 32,
            max_concurrent_writes: 32,
            max_write_packet_len: 64 << 10,
            ..russh_sftp::client::Config::default()
        };
        let sftp = SftpSession::new_with_config(channel.into_stream(), config)
            .await
            .map_err(|e| BackupError::Sftp {
                server: self.server(),
                what: "starting SFTP for",
                path: self.path.clone(),
                source: sftp_io_error(e),
            })?;
        Ok(Session {
            ssh,
            sftp,
            server: self.server(),
        })
    }

    /// Tries the private key, then the password.
    async fn authenticate(
        &self,
        ssh: &mut client::Handle<HostKeyCheck>,
    ) -> Result<(), BackupError> {
        let mut tried = Vec::new();
        if let Some(key) = &self.private_key {
            tried.push("private key");
            let hash = match key.algorithm().is_rsa() {
                true => ssh
                    .best_supported_rsa_hash()
                    .await
                    .map_err(self.ssh_error("asking for RSA signature algorithms"))?
                    .flatten(),
                false => None,
            };
            let key = PrivateKeyWithHashAlg::new(key.clone(), hash);
            let result = ssh
                .authenticate_publickey(&self.user, key)
                .await
                .map_err(self.ssh_error("logging in with the private key"))?;
            if result.success() {
                return Ok(());
            }
        }
        if let Some(Secret(password)) = &self.password {
            tried.push("password");
            let result = ssh
                .authenticate_password(&self.user, password)
                .await
                .map_err(self.ssh_error("logging in with the password"))?;
            if result.success() {
                return Ok(());
            }
        }
        Err(BackupError::AuthenticationFailed {
            host: self.host.clone(),
            port: self.port,
            user: self.user.clone(),
            methods: tried.join(" and "),
        })
    }

    fn ssh_error(&self, what: &'static str) -> impl FnOnce(russh::Error) -> BackupError {
        let host = self.host.clone();
        let port = self.port;
        move |source| BackupError::Ssh {
            host,
            port,
            what,
            source,
        }
    }
}

/// Accepts only the server key with the expected fingerprint, and remembers the one offered.
struct HostKeyCheck {
    /// The base64 part of the expected SHA-256 fingerprint, without padding.
    expected: String,
    offered: Arc<Mutex<Option<String>>>,
}

impl client::Handler for HostKeyCheck {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let key_data = match key {
            PublicKeyOrCertificate::PublicKey { key, .. } => key.key_data(),
            PublicKeyOrCertificate::Certificate(certificate) => certificate.public_key(),
        };
        let fingerprint = key_data.fingerprint(HashAlg::Sha256).to_string();
        let accepted = parse_fingerprint(&fingerprint).is_ok_and(|f| f == self.expected);
        *self
            .offered
            .lock()
            .expect("nothing panics holding the lock") = Some(fingerprint);
        Ok(accepted)
    }
}

/// One logged-in SFTP connection.
struct Session {
    ssh: client::Handle<HostKeyCheck>,
    sftp: SftpSession,
    server: String,
}

impl Session {
    fn error(&self, what: &'static str, path: &str) -> impl FnOnce(SftpError) -> BackupError {
        self.io_error(what, path).compose(sftp_io_error)
    }

    fn io_error(&self, what: &'static str, path: &str) -> IoMapper {
        IoMapper {
            server: self.server.clone(),
            what,
            path: path.to_owned(),
        }
    }

    /// The target folder must exist: a missing mount on the server must not fill its disk.
    async fn check_root(&self, root: &str) -> Result<(), BackupError> {
        let metadata = self
            .sftp
            .metadata(root)
            .await
            .map_err(self.error("opening the target folder", root))?;
        if !metadata.is_dir() {
            return Err(self
                .io_error("opening the target folder", root)
                .map(io::Error::from(io::ErrorKind::NotADirectory)));
        }
        Ok(())
    }

    async fn exists(&self, path: &str) -> Result<bool, BackupError> {
        match self.sftp.symlink_metadata(path).await {
            Ok(_) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(self.error("reading", path)(e)),
        }
    }

    /// The size of a regular file, `None` when there is none.
    async fn file_size(&self, path: &str) -> Result<Option<u64>, BackupError> {
        match self.sftp.symlink_metadata(path).await {
            Ok(metadata) if metadata.file_type().is_file() => Ok(Some(metadata.len())),
            Ok(_) => Ok(None),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(self.error("reading", path)(e)),
        }
    }

    async fn create_dir(&self, path: &str) -> Result<(), BackupError> {
        self.sftp
            .create_dir(path)
            .await
            .map_err(self.error("creating", path))
    }

    async fn rename(&self, from: &str, to: &str) -> Result<(), BackupError> {
        self.sftp
            .rename(from, to)
            .await
            .map_err(self.error("renaming", from))
    }

    /// The entries of a folder: name, whether it is a folder, and its modification time in
    /// seconds since 1970.
    async fn read_dir(&self, path: &str) -> Result<Vec<(String, bool, u64)>, BackupError> {
        let entries = self
            .sftp
            .read_dir(path)
            .await
            .map_err(self.error("listing", path))?;
        Ok(entries
            .filter(|e| e.file_name() != "." && e.file_name() != "..")
            .map(|e| {
                let metadata = e.metadata();
                (
                    e.file_name(),
                    e.file_type().is_dir(),
                    u64::from(metadata.mtime.unwrap_or(0)),
                )
            })
            .collect())
    }

    /// Removes a folder and everything in it.
    async fn remove_tree(&self, path: &str) -> Result<(), BackupError> {
        // Folders are removed after their content, so they wait on a stack, deepest last.
        let mut folders = vec![path.to_owned()];
        let mut index = 0;
        while index < folders.len() {
            let folder = folders[index].clone();
            for (name, is_dir, _) in self.read_dir(&folder).await? {
                let child = join(&folder, &name);
                if is_dir {
                    folders.push(child);
                } else {
                    self.sftp
                        .remove_file(child.as_str())
                        .await
                        .map_err(self.error("removing", &child))?;
                }
            }
            index += 1;
        }
        for folder in folders.iter().rev() {
            self.sftp
                .remove_dir(folder.as_str())
                .await
                .map_err(self.error("removing", folder))?;
        }
        Ok(())
    }

    /// The latest modification time in seconds of `folder` (whose own is `own`) and
    /// everything in it.
    async fn newest_change(&self, folder: &str, own: u64) -> Result<u64, BackupError> {
        let mut newest = own;
        let mut folders = vec![folder.to_owned()];
        while let Some(folder) = folders.pop() {
            for (name, is_dir, mtime) in self.read_dir(&folder).await? {
                newest = newest.max(mtime);
                if is_dir {
                    folders.push(join(&folder, &name));
                }
            }
        }
        Ok(newest)
    }

    async fn read_manifest(&self, folder: &str, id: &str) -> Result<Manifest, BackupError> {
        let path = join(folder, MANIFEST_FILE);
        let bad = |problem: String| BackupError::BadManifest {
            id: id.to_owned(),
            problem,
        };
        let size = self.file_size(&path).await?;
        match size {
            None => return Err(bad("missing".to_owned())),
            Some(size) if size > MANIFEST_MAX_BYTES => {
                return Err(bad(format!("larger than {MANIFEST_MAX_BYTES} bytes")));
            }
            Some(_) => {}
        }
        let bytes = self
            .sftp
            .read(path.as_str())
            .await
            .map_err(self.error("reading", &path))?;
        Manifest::from_json(id, &bytes)
    }

    /// Writes a new remote file whole and syncs it.
    async fn upload_bytes(&self, path: &str, bytes: &[u8]) -> Result<(), BackupError> {
        let mut file = self
            .sftp
            .create(path)
            .await
            .map_err(self.error("creating", path))?;
        let fail = |e| self.io_error("writing", path).map(e);
        file.write_all(bytes).await.map_err(fail)?;
        file.flush().await.map_err(fail)?;
        file.shutdown().await.map_err(fail)
    }

    /// Uploads a local file, hashing it on a blocking thread as it is read.
    async fn upload(
        &self,
        source: &Path,
        remote: &str,
        reporter: &mut Reporter<'_>,
    ) -> Result<Streamed, BackupError> {
        let mut file = self
            .sftp
            .create(remote)
            .await
            .map_err(self.error("creating", remote))?;
        let (chunk_tx, mut chunk_rx) = mpsc::channel::<Chunk>(BUFFERS);
        let (free_tx, free_rx) = mpsc::channel::<Vec<u8>>(BUFFERS);
        for _ in 0..BUFFERS {
            free_tx
                .send(vec![0; CHUNK_BYTES])
                .await
                .expect("the pool has room for every buffer");
        }
        let path = source.to_owned();
        let reader = tokio::task::spawn_blocking(move || read_and_hash(&path, free_rx, chunk_tx));

        let fail = |e| self.io_error("writing", remote).map(e);
        let mut sent = Ok(());
        while let Some((buf, n)) = chunk_rx.recv().await {
            if let Err(e) = file.write_all(&buf[..n]).await {
                sent = Err(fail(e));
                break;
            }
            reporter.add(n as u64);
            // The reader may have stopped after its last chunk.
            let _ = free_tx.send(buf).await;
        }
        // Dropping both channels stops a reader still running after a failed write, whether
        // it waits to hand over a chunk or for a buffer.
        drop(chunk_rx);
        drop(free_tx);
        let streamed = reader
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        sent?;
        let streamed = streamed?;
        file.flush().await.map_err(fail)?;
        file.shutdown().await.map_err(fail)?;
        Ok(streamed)
    }

    /// Downloads a remote file, hashing it (and writing it to `local` if given) on a blocking
    /// thread.
    async fn download(
        &self,
        remote: &str,
        local: Option<PathBuf>,
        reporter: &mut Reporter<'_>,
    ) -> Result<Streamed, BackupError> {
        let mut file = self
            .sftp
            .open(remote)
            .await
            .map_err(self.error("opening", remote))?;
        let (chunk_tx, chunk_rx) = mpsc::channel::<Chunk>(BUFFERS);
        let (free_tx, mut free_rx) = mpsc::channel::<Vec<u8>>(BUFFERS);
        for _ in 0..BUFFERS {
            free_tx
                .send(vec![0; CHUNK_BYTES])
                .await
                .expect("the pool has room for every buffer");
        }
        let sink = tokio::task::spawn_blocking(move || hash_and_write(local, chunk_rx, free_tx));

        let mut received = Ok(());
        while let Some(mut buf) = free_rx.recv().await {
            let n = match fill_remote(&mut file, &mut buf).await {
                Ok(n) => n,
                Err(e) => {
                    received = Err(self.io_error("reading", remote).map(e));
                    break;
                }
            };
            reporter.add(n as u64);
            if chunk_tx.send((buf, n)).await.is_err() || n < CHUNK_BYTES {
                break;
            }
        }
        // Closing the channel tells the sink that the file has ended.
        drop(chunk_tx);
        let streamed = sink
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        // A local write error explains a download that stopped early, so it comes first.
        let streamed = streamed?;
        received?;
        Ok(streamed)
    }

    async fn close(self) {
        let _ = self.sftp.close().await;
        let _ = self
            .ssh
            .disconnect(russh::Disconnect::ByApplication, "", "en")
            .await;
    }
}

/// Builds [`BackupError::Sftp`] from an IO error.
struct IoMapper {
    server: String,
    what: &'static str,
    path: String,
}

impl IoMapper {
    fn map(self, source: io::Error) -> BackupError {
        BackupError::Sftp {
            server: self.server,
            what: self.what,
            path: self.path,
            source,
        }
    }

    fn compose<E>(self, convert: impl FnOnce(E) -> io::Error) -> impl FnOnce(E) -> BackupError {
        move |e| self.map(convert(e))
    }
}

/// The server's answer as an IO error whose message is the server's own, once.
fn sftp_io_error(error: SftpError) -> io::Error {
    let SftpError::Status(status) = error else {
        return error.into();
    };
    let kind = match status.status_code {
        StatusCode::NoSuchFile => io::ErrorKind::NotFound,
        StatusCode::PermissionDenied => io::ErrorKind::PermissionDenied,
        _ => io::ErrorKind::Other,
    };
    match status.error_message.trim() {
        "" => io::Error::new(kind, status.status_code.to_string()),
        message => io::Error::new(kind, message.to_owned()),
    }
}

fn is_not_found(error: &SftpError) -> bool {
    matches!(error, SftpError::Status(status) if status.status_code == StatusCode::NoSuchFile)
}

/// Joins a remote path and a relative `/`-separated path.
fn join(base: &str, relative: &str) -> String {
    match base {
        "" => relative.to_owned(),
        _ if base.ends_with('/') => format!("{base}{relative}"),
        _ => format!("{base}/{relative}"),
    }
}

/// Reads until `buf` is full or the remote file ends.
async fn fill_remote(file: &mut russh_sftp::client::fs::File, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]).await? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// Reads a local file in chunks, hashing each before handing it to the uploading task.
fn read_and_hash(
    path: &Path,
    mut free: mpsc::Receiver<Vec<u8>>,
    chunks: mpsc::Sender<Chunk>,
) -> Result<Streamed, BackupError> {
    let mut input = File::open(path).map_err(io_error("opening", path))?;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    while let Some(mut buf) = free.blocking_recv() {
        let n = fill(&mut input, &mut buf).map_err(io_error("reading", path))?;
        hasher.update(&buf[..n]);
        size += n as u64;
        if n == 0 || chunks.blocking_send((buf, n)).is_err() || n < CHUNK_BYTES {
            break;
        }
    }
    Ok(Streamed {
        size,
        sha256: hex::encode(hasher.finalize()),
    })
}

/// Hashes downloaded chunks, writing them to a new local file (synced at the end) if given.
fn hash_and_write(
    local: Option<PathBuf>,
    mut chunks: mpsc::Receiver<Chunk>,
    free: mpsc::Sender<Vec<u8>>,
) -> Result<Streamed, BackupError> {
    let mut output = match &local {
        Some(path) => Some(File::create_new(path).map_err(io_error("creating", path))?),
        None => None,
    };
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    while let Some((buf, n)) = chunks.blocking_recv() {
        hasher.update(&buf[..n]);
        size += n as u64;
        if let (Some(output), Some(path)) = (output.as_mut(), &local) {
            write_in_pieces(output, &buf[..n]).map_err(io_error("writing", path))?;
        }
        // The downloading task may have stopped after its last chunk.
        let _ = free.blocking_send(buf);
    }
    if let (Some(output), Some(path)) = (output, &local) {
        output.sync_all().map_err(io_error("syncing", path))?;
    }
    Ok(Streamed {
        size,
        sha256: hex::encode(hasher.finalize()),
    })
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, BackupError> + Send + 'static,
) -> Result<T, BackupError> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}

//! Test support for this crate and the crates above it: a private OpenSSH server on a free
//! loopback port, started from a generated configuration in a temporary folder with its own
//! host key and one authorised client key, serving SFTP only.
//!
//! It runs `/usr/sbin/sshd` (Debian's `openssh-server`) as the user running the tests, who
//! logs in with the generated key; tests run as root, so root logins are allowed. The server
//! is killed when the [`Sshd`] is dropped.

use crate::{Secret, TargetConfig};
use std::fs::{self, File};
use std::io;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// The OpenSSH server binary; it must be started by its absolute path.
const SSHD: &str = "/usr/sbin/sshd";

/// The folder sshd needs for privilege separation, normally made by its service unit.
const PRIVSEP_DIR: &str = "/run/sshd";

/// How long sshd gets to start listening.
const START_DEADLINE: Duration = Duration::from_secs(10);

/// Why the private sshd could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// A file or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: io::Error,
    },
    /// A tool ran but failed, or the server did not come up.
    #[error("{0}")]
    Failed(String),
}

fn io_error(what: impl Into<String>) -> impl FnOnce(io::Error) -> HarnessError {
    let what = what.into();
    move |source| HarnessError::Io { what, source }
}

/// A running private OpenSSH server; killed when dropped.
#[derive(Debug)]
pub struct Sshd {
    dir: TempDir,
    child: Child,
    port: u16,
    user: String,
    host_key_sha256: String,
    private_key: String,
}

impl Sshd {
    /// Starts a server.
    ///
    /// # Panics
    /// When sshd cannot be configured or started; the message says why.
    pub fn start() -> Sshd {
        Sshd::start_denying(&[])
    }

    /// Starts a server whose SFTP refuses the requests named, such as `write` or `rename`
    /// (as `/usr/lib/openssh/sftp-server -Q requests` lists them), to test failures.
    ///
    /// # Panics
    /// When sshd cannot be configured or started.
    pub fn start_denying(requests: &[&str]) -> Sshd {
        Sshd::try_start(requests).unwrap_or_else(|e| panic!("private sshd: {e}"))
    }

    /// Writes the keys and the configuration, starts sshd and waits until it listens. Its
    /// SFTP refuses the `denied` requests.
    pub fn try_start(denied: &[&str]) -> Result<Sshd, HarnessError> {
        if !Path::new(SSHD).exists() {
            return Err(HarnessError::Failed(format!(
                "{SSHD} is missing: install the openssh-server package"
            )));
        }
        if !Path::new(PRIVSEP_DIR).is_dir() {
            fs::create_dir_all(PRIVSEP_DIR).map_err(io_error(format!("creating {PRIVSEP_DIR}")))?;
        }
        let dir = tempfile::Builder::new()
            .prefix("pullback-sshd-")
            .tempdir()
            .map_err(io_error("creating a temporary folder"))?;
        let root = dir.path();
        fs::create_dir(root.join("backups")).map_err(io_error("creating the backup folder"))?;

        let host_key = root.join("host_ed25519");
        generate_key(&host_key)?;
        let host_key_sha256 = fingerprint(&host_key.with_extension("pub"))?;
        let client_key = root.join("client_ed25519");
        generate_key(&client_key)?;
        fs::copy(
            client_key.with_extension("pub"),
            root.join("authorized_keys"),
        )
        .map_err(io_error("writing authorized_keys"))?;
        let private_key =
            fs::read_to_string(&client_key).map_err(io_error("reading the client key"))?;

        let port = free_port()?;
        let config = root.join("sshd_config");
        fs::write(&config, config_text(root, &host_key, port, denied)?)
            .map_err(io_error("writing sshd_config"))?;
        let log = File::create(root.join("sshd.log")).map_err(io_error("creating sshd.log"))?;
        let child = Command::new(SSHD)
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(io_error(format!("running {SSHD}")))?;
        let mut sshd = Sshd {
            dir,
            child,
            port,
            user: current_user()?,
            host_key_sha256,
            private_key,
        };
        sshd.wait_until_listening()?;
        Ok(sshd)
    }

    fn wait_until_listening(&mut self) -> Result<(), HarnessError> {
        let deadline = Instant::now() + START_DEADLINE;
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(HarnessError::Failed(format!(
                    "sshd exited ({status}) before listening:\n{}",
                    self.log()
                )));
            }
            if Instant::now() > deadline {
                return Err(HarnessError::Failed(format!(
                    "sshd did not listen on 127.0.0.1:{} within {START_DEADLINE:?}:\n{}",
                    self.port,
                    self.log()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// The port sshd listens on at 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The user that logs in: the one running the tests.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The host key's fingerprint as `ssh-keygen -lf` prints it, `SHA256:...`.
    pub fn host_key_sha256(&self) -> &str {
        &self.host_key_sha256
    }

    /// The authorised client key, OpenSSH private key text.
    pub fn private_key(&self) -> &str {
        &self.private_key
    }

    /// An empty folder, by absolute path, for backups.
    pub fn backup_dir(&self) -> PathBuf {
        self.dir.path().join("backups")
    }

    /// A target logging in with the authorised key and keeping backups in
    /// [`Sshd::backup_dir`].
    pub fn target_config(&self) -> TargetConfig {
        TargetConfig::Sftp {
            host: "127.0.0.1".to_owned(),
            port: self.port,
            user: self.user.clone(),
            path: self.backup_dir().display().to_string(),
            password: None,
            private_key: Some(Secret(self.private_key.clone())),
            host_key_sha256: self.host_key_sha256.clone(),
        }
    }

    /// A new ed25519 private key that the server does not accept.
    ///
    /// # Panics
    /// When ssh-keygen fails.
    pub fn unauthorised_key(&self) -> String {
        let path = self.dir.path().join(format!("other_{}", unique()));
        generate_key(&path).unwrap_or_else(|e| panic!("{e}"));
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
    }

    /// sshd's log so far, for failure messages and checks.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        // Nothing to do about a failed kill here; the temporary folder goes either way.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config_text(
    root: &Path,
    host_key: &Path,
    port: u16,
    denied: &[&str],
) -> Result<String, HarnessError> {
    let sftp = match denied {
        [] => "internal-sftp".to_owned(),
        _ => format!("internal-sftp -P {}", denied.join(",")),
    };
    let mut text = format!(
        "ListenAddress 127.0.0.1:{port}\n\
         HostKey {host_key}\n\
         PidFile {root}/sshd.pid\n\
         AuthorizedKeysFile {root}/authorized_keys\n\
         StrictModes no\n\
         UsePAM no\n\
         PermitRootLogin yes\n\
         PubkeyAuthentication yes\n\
         PasswordAuthentication yes\n\
         KbdInteractiveAuthentication no\n\
         Subsystem sftp {sftp}\n\
         ForceCommand {sftp}\n\
         AllowTcpForwarding no\n\
         X11Forwarding no\n\
         PermitTTY no\n\
         UseDNS no\n\
         LogLevel DEBUG1\n",
        host_key = host_key.display(),
        root = root.display(),
    );
    // From OpenSSH 9.8 on, failed logins would make sshd refuse 127.0.0.1 for a while.
    if openssh_version()? >= (9, 8) {
        text.push_str("PerSourcePenalties no\n");
    }
    Ok(text)
}

/// The version of the installed OpenSSH, from `sshd -V`.
fn openssh_version() -> Result<(u32, u32), HarnessError> {
    let output = Command::new(SSHD)
        .arg("-V")
        .output()
        .map_err(io_error("running sshd -V"))?;
    let text = String::from_utf8_lossy(&output.stderr);
    let version = text.split_once("OpenSSH_").and_then(|(_, rest)| {
        let digits = rest
            .split(|c: char| !c.is_ascii_digit() && c != '.')
            .next()?;
        let (major, minor) = digits.split_once('.')?;
        Some((major.parse().ok()?, minor.parse().ok()?))
    });
    version.ok_or_else(|| HarnessError::Failed(format!("cannot read sshd -V: {text}")))
}

/// Makes an ed25519 key pair without passphrase at `path` and `path.pub`.
fn generate_key(path: &Path) -> Result<(), HarnessError> {
    let output = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "pullback-test", "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .map_err(io_error("running ssh-keygen (install openssh-client)"))?;
    if !output.status.success() {
        return Err(HarnessError::Failed(format!(
            "ssh-keygen failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )));
    }
    Ok(())
}

/// The SHA-256 fingerprint of a public key file, as `ssh-keygen -lf` prints it.
fn fingerprint(public_key: &Path) -> Result<String, HarnessError> {
    let output = Command::new("ssh-keygen")
        .args(["-l", "-E", "sha256", "-f"])
        .arg(public_key)
        .output()
        .map_err(io_error("running ssh-keygen -l"))?;
    let text = String::from_utf8_lossy(&output.stdout);
    text.split_whitespace()
        .nth(1)
        .filter(|f| f.starts_with("SHA256:"))
        .map(str::to_owned)
        .ok_or_else(|| HarnessError::Failed(format!("cannot read ssh-keygen -l output: {text}")))
}

fn current_user() -> Result<String, HarnessError> {
    let output = Command::new("id")
        .arg("-un")
        .output()
        .map_err(io_error("running id -un"))?;
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

fn free_port() -> Result<u16, HarnessError> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(io_error("finding a free port"))?;
    Ok(listener
        .local_addr()
        .map_err(io_error("finding a free port"))?
        .port())
}

/// A number that differs between calls in one process.
fn unique() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

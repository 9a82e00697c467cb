//! Test support for this crate and the crates above it: a private Dovecot on a free loopback
//! port, started from a generated configuration in a temporary folder, and the shared folder
//! of real mail.
//!
//! The helpers panic with a full explanation when something is missing, because a test that
//! cannot set up its server has nothing better to do.

use crate::imap::{ImapConfig, TlsMode};
use std::fs::{self, File};
use std::io::{self, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::{PermissionsExt, chown};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// The environment variable naming the shared data folder.
pub const SHARED_DATA_VAR: &str = "PULLBACK_SHARED_DATA";

/// The master user that logs in to every mailbox.
pub const MASTER_USER: &str = "pullback-master";
/// The master user's password.
pub const MASTER_PASSWORD: &str = "master-password-for-tests";
/// Every ordinary user's own password.
pub const USER_PASSWORD: &str = "user-password-for-tests";

/// Dovecot refuses to run mail processes as root; this is `nobody`.
const MAIL_UID: u32 = 65534;

/// How long Dovecot gets to start listening.
const START_DEADLINE: Duration = Duration::from_secs(10);

/// The shared data folder: `$PULLBACK_SHARED_DATA`, else `shared/data` beside the project.
///
/// # Panics
/// When the folder does not exist, naming the variable.
pub fn shared_data_dir() -> PathBuf {
    let dir = match std::env::var_os(SHARED_DATA_VAR) {
        Some(dir) => PathBuf::from(dir),
        None => manifest_dir().join("../../../shared/data"),
    };
    if !dir.is_dir() {
        panic!(
            "the shared test data is missing: {} is not a folder; set {SHARED_DATA_VAR} to the \
             shared/data folder",
            dir.display()
        );
    }
    dir
}

/// The bytes of `mail/<relative>` in the shared data folder.
///
/// # Panics
/// When the file cannot be read.
pub fn shared_mail(relative: &str) -> Vec<u8> {
    let path = shared_data_dir().join("mail").join(relative);
    fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {} (set {SHARED_DATA_VAR}): {e}",
            path.display()
        )
    })
}

/// What the private Dovecot offers beyond the defaults.
#[derive(Clone, Debug, Default)]
pub struct DovecotOptions {
    /// A storage quota per user in kibibytes, enforced by Dovecot's quota plugin.
    pub quota_kib: Option<u64>,
    /// A test certificate authority and TLS: STARTTLS on the IMAP port and a second port
    /// with implicit TLS.
    pub tls: bool,
}

/// Why the private Dovecot could not be set up or inspected.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error("{what}: {source}")]
    Io { what: String, source: io::Error },
    #[error("{0}")]
    Failed(String),
}

fn io_error(what: impl Into<String>) -> impl FnOnce(io::Error) -> HarnessError {
    let what = what.into();
    move |source| HarnessError::Io { what, source }
}

/// A message as Dovecot reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct DovecotMessage {
    pub uid: u32,
    pub flags: String,
    /// The Message-ID header as stored, brackets included.
    pub message_id: String,
    /// The Subject header as stored.
    pub subject: String,
}

/// A running private Dovecot; stopped when dropped.
#[derive(Debug)]
pub struct Dovecot {
    dir: TempDir,
    config: PathBuf,
    port: u16,
    tls_port: Option<u16>,
    lmtp_port: u16,
}

impl Dovecot {
    /// Starts a Dovecot with the given users (addresses such as `alice@example.test`).
    ///
    /// # Panics
    /// When Dovecot cannot be configured or started; the message says why.
    pub fn start(users: &[&str]) -> Dovecot {
        Dovecot::start_with(users, &DovecotOptions::default())
    }

    /// [`Dovecot::start`] with options.
    ///
    /// # Panics
    /// When Dovecot cannot be configured or started.
    pub fn start_with(users: &[&str], options: &DovecotOptions) -> Dovecot {
        Dovecot::try_start(users, options).unwrap_or_else(|e| panic!("private Dovecot: {e}"))
    }

    /// Writes the configuration, starts Dovecot and waits until it accepts connections.
    pub fn try_start(users: &[&str], options: &DovecotOptions) -> Result<Dovecot, HarnessError> {
        let dir = tempfile::Builder::new()
            .prefix("pullback-dovecot-")
            .tempdir()
            .map_err(io_error("creating a temporary folder"))?;
        let root = dir.path().to_owned();
        // Dovecot's unprivileged processes must reach the mail folder inside.
        set_mode(&root, 0o755)?;
        for sub in ["run", "state"] {
            fs::create_dir(root.join(sub)).map_err(io_error(format!("creating {sub}")))?;
        }
        let mail = root.join("mail");
        fs::create_dir(&mail).map_err(io_error("creating the mail folder"))?;
        chown(&mail, Some(MAIL_UID), Some(MAIL_UID)).map_err(io_error(
            "giving the mail folder to uid 65534 (run as root)",
        ))?;

        let user_lines: String = users
            .iter()
            .map(|u| format!("{u}:{{PLAIN}}{USER_PASSWORD}::::::\n"))
            .collect();
        write_file(&root.join("users"), &user_lines)?;
        write_file(
            &root.join("masters"),
            &format!("{MASTER_USER}:{{PLAIN}}{MASTER_PASSWORD}::::::\n"),
        )?;

        let port = free_port()?;
        let tls_port = if options.tls {
            make_certificates(&root)?;
            Some(free_port()?)
        } else {
            None
        };
        let lmtp_port = free_port()?;
        let config = root.join("dovecot.conf");
        write_file(
            &config,
            &config_text(&root, port, tls_port, lmtp_port, options),
        )?;

        let dovecot = Dovecot {
            dir,
            config,
            port,
            tls_port,
            lmtp_port,
        };
        // The daemon keeps its parent's stdout and stderr open, so they go to a file: a pipe
        // would never reach end of file while Dovecot runs.
        let start_log = root.join("start.log");
        let output = File::create(&start_log).map_err(io_error("creating start.log"))?;
        let errors = output.try_clone().map_err(io_error("opening start.log"))?;
        let status = Command::new("dovecot")
            .arg("-c")
            .arg(&dovecot.config)
            .stdin(Stdio::null())
            .stdout(output)
            .stderr(errors)
            .status()
            .map_err(io_error("running dovecot (is dovecot-imapd installed?)"))?;
        if !status.success() {
            return Err(HarnessError::Failed(format!(
                "dovecot did not start ({status}): {}\n{}",
                fs::read_to_string(&start_log).unwrap_or_default(),
                dovecot.log()
            )));
        }
        dovecot.wait_until_listening()?;
        Ok(dovecot)
    }

    fn wait_until_listening(&self) -> Result<(), HarnessError> {
        let deadline = Instant::now() + START_DEADLINE;
        let ports = [Some(self.port), self.tls_port, Some(self.lmtp_port)];
        for port in ports.into_iter().flatten() {
            while TcpStream::connect(("127.0.0.1", port)).is_err() {
                if Instant::now() > deadline {
                    return Err(HarnessError::Failed(format!(
                        "dovecot did not listen on 127.0.0.1:{port} within {START_DEADLINE:?}\n{}",
                        self.log()
                    )));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        Ok(())
    }

    /// The LMTP port, where mail can be delivered as a mail server would.
    pub fn lmtp_port(&self) -> u16 {
        self.lmtp_port
    }

    /// The plain IMAP port (which also offers STARTTLS when TLS is on).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The implicit-TLS port, when TLS is on.
    pub fn tls_port(&self) -> Option<u16> {
        self.tls_port
    }

    /// The PEM file of the test certificate authority, when TLS is on.
    pub fn ca_file(&self) -> Option<PathBuf> {
        self.tls_port.map(|_| self.dir.path().join("ca.pem"))
    }

    /// Where Dovecot keeps the mail: `<mail_root>/<user>/` is each user's Maildir.
    pub fn mail_root(&self) -> PathBuf {
        self.dir.path().join("mail")
    }

    /// A backend configuration for this server: plain TCP, the master user, a short timeout.
    pub fn imap_config(&self) -> ImapConfig {
        let mut config = ImapConfig::new("127.0.0.1", self.port, MASTER_USER, MASTER_PASSWORD);
        config.tls = TlsMode::None;
        config.timeout = Duration::from_secs(10);
        config
    }

    /// Dovecot's log so far, for failure messages.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("dovecot.log")).unwrap_or_default()
    }

    /// Stores a message in a folder (created when missing) as a delivery would.
    ///
    /// # Panics
    /// When Dovecot refuses it.
    pub fn deliver(&self, user: &str, folder: &str, message: &[u8]) {
        self.try_deliver(user, folder, message)
            .unwrap_or_else(|e| panic!("delivery to {user}: {e}"))
    }

    /// [`Dovecot::deliver`] returning Dovecot's refusal, such as a full quota.
    pub fn try_deliver(
        &self,
        user: &str,
        folder: &str,
        message: &[u8],
    ) -> Result<(), HarnessError> {
        let mut child = self
            .doveadm()
            .args(["save", "-u", user, "-m", folder])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(io_error("running doveadm save"))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(message)
                .map_err(io_error("writing to doveadm save"))?;
        }
        let output = child
            .wait_with_output()
            .map_err(io_error("waiting for doveadm save"))?;
        check(&output, "doveadm save").map(|_| ())
    }

    /// The messages in a folder in UID order; empty when the folder does not exist.
    ///
    /// # Panics
    /// When doveadm fails for another reason.
    pub fn messages(&self, user: &str, folder: &str) -> Vec<DovecotMessage> {
        let output = self
            .doveadm()
            .args([
                "fetch",
                "-u",
                user,
                "uid flags hdr.message-id hdr.subject",
                "mailbox",
                folder,
                "ALL",
            ])
            .output()
            .unwrap_or_else(|e| panic!("running doveadm fetch: {e}"));
        if !output.status.success()
            && String::from_utf8_lossy(&output.stderr).contains("doesn't exist")
        {
            return Vec::new();
        }
        let text = check(&output, "doveadm fetch").unwrap_or_else(|e| panic!("{e}"));
        text.split('\u{c}').filter_map(parse_fetched).collect()
    }

    /// The Message-IDs in a folder, in UID order.
    pub fn message_ids(&self, user: &str, folder: &str) -> Vec<String> {
        self.messages(user, folder)
            .into_iter()
            .map(|m| m.message_id)
            .collect()
    }

    /// The user's folders.
    ///
    /// # Panics
    /// When doveadm fails.
    pub fn folders(&self, user: &str) -> Vec<String> {
        let output = self
            .doveadm()
            .args(["mailbox", "list", "-u", user])
            .output()
            .unwrap_or_else(|e| panic!("running doveadm mailbox list: {e}"));
        let text = check(&output, "doveadm mailbox list").unwrap_or_else(|e| panic!("{e}"));
        text.lines().map(str::to_owned).collect()
    }

    /// Adds a flag such as `\Seen` or `\Deleted` to every message with this Message-ID
    /// (brackets included) in a folder.
    ///
    /// # Panics
    /// When doveadm fails.
    pub fn add_flag(&self, user: &str, folder: &str, message_id: &str, flag: &str) {
        let output = self
            .doveadm()
            .args(["flags", "add", "-u", user, flag, "mailbox", folder])
            .args(["header", "Message-ID", message_id])
            .output()
            .unwrap_or_else(|e| panic!("running doveadm flags: {e}"));
        check(&output, "doveadm flags add").unwrap_or_else(|e| panic!("{e}"));
    }

    fn doveadm(&self) -> Command {
        let mut command = Command::new("doveadm");
        command.arg("-c").arg(&self.config);
        command
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        // Nothing to do about a failed stop here; the temporary folder goes either way.
        let _ = self.doveadm().arg("stop").output();
    }
}

fn check(output: &Output, what: &str) -> Result<String, HarnessError> {
    if output.status.success() {
        return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
    }
    Err(HarnessError::Failed(format!(
        "{what} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    )))
}

/// One record of `doveadm fetch` output: `key: value` lines, a value possibly continued on
/// the next lines.
fn parse_fetched(record: &str) -> Option<DovecotMessage> {
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in record.lines() {
        match line
            .split_once(": ")
            .or_else(|| line.strip_suffix(':').map(|k| (k, "")))
        {
            Some((key, value))
                if ["uid", "flags", "hdr.message-id", "hdr.subject"].contains(&key) =>
            {
                fields.push((key.to_owned(), value.to_owned()));
            }
            _ => {
                if let Some((_, value)) = fields.last_mut() {
                    value.push_str(line.trim());
                }
            }
        }
    }
    let field = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim().to_owned())
    };
    Some(DovecotMessage {
        uid: field("uid")?.parse().ok()?,
        flags: field("flags").unwrap_or_default(),
        message_id: field("hdr.message-id").unwrap_or_default(),
        subject: field("hdr.subject").unwrap_or_default(),
    })
}

fn config_text(
    root: &Path,
    port: u16,
    tls_port: Option<u16>,
    lmtp_port: u16,
    options: &DovecotOptions,
) -> String {
    let root = root.display();
    let name = root
        .to_string()
        .rsplit('/')
        .next()
        .unwrap_or("pullback")
        .to_owned();
    let mut text = format!(
        "instance_name = {name}
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
listen = 127.0.0.1
protocols = imap lmtp
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_master_user_separator = *
mail_location = maildir:{root}/mail/%u
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps}
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {lmtp}
  }}
}}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/masters
  master = yes
  pass = yes
}}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/users
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {root}/users
  default_fields = uid={MAIL_UID} gid={MAIL_UID} home={root}/mail/%u
}}
",
        imaps = tls_port.unwrap_or(0),
        lmtp = lmtp_port,
    );
    if tls_port.is_some() {
        text.push_str(&format!(
            "ssl = yes\nssl_cert = <{root}/server.pem\nssl_key = <{root}/server.key\n"
        ));
    } else {
        text.push_str("ssl = no\n");
    }
    if let Some(kib) = options.quota_kib {
        text.push_str(&format!(
            "mail_plugins = $mail_plugins quota
protocol imap {{
  mail_plugins = $mail_plugins imap_quota
}}
plugin {{
  quota = count:User quota
  quota_vsizes = yes
  quota_rule = *:storage={kib}K
}}
"
        ));
    }
    text
}

/// A test certificate authority and a server certificate for 127.0.0.1 signed by it.
fn make_certificates(root: &Path) -> Result<(), HarnessError> {
    let ext = "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n\
               extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n";
    write_file(&root.join("server.ext"), ext)?;
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let steps: [Vec<&str>; 3] = [
        [
            &["req", "-x509"][..],
            &ec,
            &["-keyout", "ca.key", "-out", "ca.pem", "-days", "2"],
        ]
        .concat(),
        [
            &["req"][..],
            &ec,
            &["-keyout", "server.key", "-out", "server.csr"],
        ]
        .concat(),
        vec![
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ],
    ];
    let subjects = [Some("/CN=Pullback test CA"), Some("/CN=127.0.0.1"), None];
    for (args, subject) in steps.iter().zip(subjects) {
        let mut command = Command::new("openssl");
        command.current_dir(root).args(args);
        if let Some(subject) = subject {
            command.args(["-subj", subject]);
        }
        let output = command.output().map_err(io_error("running openssl"))?;
        check(&output, "openssl")?;
    }
    set_mode(&root.join("server.key"), 0o644)
}

fn free_port() -> Result<u16, HarnessError> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(io_error("finding a free port"))?;
    let port = listener
        .local_addr()
        .map_err(io_error("finding a free port"))?
        .port();
    Ok(port)
}

fn write_file(path: &Path, text: &str) -> Result<(), HarnessError> {
    fs::write(path, text).map_err(io_error(format!("writing {}", path.display())))?;
    set_mode(path, 0o644)
}

fn set_mode(path: &Path, mode: u32) -> Result<(), HarnessError> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(io_error(format!("setting the mode of {}", path.display())))
}

/// This crate's folder. Cargo sets it when it runs a test; the compiled-in value is only a
/// fallback, because a build shared between two checkouts may carry the other one's path.
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

//! An IMAP backend that acts on any user's mailbox by logging in through a master user, as
//! Dovecot offers (`user*master`), and moves messages with `UID MOVE`, or with `UID COPY`
//! followed by a `UID EXPUNGE` of exactly the copied messages.
//!
//! The original is never deleted unless the copy succeeded, and never with a plain `EXPUNGE`,
//! which would also remove whatever else the user had marked deleted.

mod client;
mod parse;

use crate::headers::MessageHeaders;
use crate::{
    Copies, Direction, MailboxBackend, MessageTarget, already_there, moved, not_found, outcome,
    refuse_target,
};
use client::{Arg, Connection, Reply};
use parse::{Status, Value};
use pullback_domain::{RecipientOutcome, RecipientStatus};
use rustls::RootCertStore;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use std::collections::HashSet;
use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio_rustls::TlsConnector;

/// The headers fetched to identify a message.
const FETCH_ITEMS: &str =
    "(UID FLAGS BODY.PEEK[HEADER.FIELDS (MESSAGE-ID SUBJECT FROM SENDER RETURN-PATH)])";

/// How the connection is protected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsMode {
    /// Plain TCP: only for a server on the same host or in tests.
    None,
    /// Plain TCP upgraded with `STARTTLS` before logging in (usually port 143).
    Starttls,
    /// TLS from the first byte (usually port 993).
    Tls,
}

/// Where the IMAP server is and how to log in to any mailbox on it.
#[derive(Clone)]
pub struct ImapConfig {
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
    /// PEM file with the certificate authorities to trust instead of the public web roots.
    pub ca_file: Option<PathBuf>,
    pub master_user: String,
    pub master_password: String,
    /// The login name, where `{mailbox}` is the recipient's mailbox and `{master}` the master
    /// user; Dovecot's default master-user separator gives `{mailbox}*{master}`.
    pub login_format: String,
    /// The longest wait for the server: connecting, the TLS handshake and each response.
    pub timeout: Duration,
    /// Move with `UID COPY` and `UID EXPUNGE` even where the server offers `MOVE`.
    pub force_copy_fallback: bool,
    /// When the server's header search finds nothing, how many of the newest messages of the
    /// folder are fetched and compared here instead.
    pub fallback_scan_limit: u32,
}

impl ImapConfig {
    /// A configuration with implicit TLS, Dovecot's login format, a 30 s timeout and a
    /// fallback scan of the newest 500 messages.
    pub fn new(host: &str, port: u16, master_user: &str, master_password: &str) -> ImapConfig {
        ImapConfig {
            host: host.to_owned(),
            port,
            tls: TlsMode::Tls,
            ca_file: None,
            master_user: master_user.to_owned(),
            master_password: master_password.to_owned(),
            login_format: "{mailbox}*{master}".to_owned(),
            timeout: Duration::from_secs(30),
            force_copy_fallback: false,
            fallback_scan_limit: 500,
        }
    }

    /// The login name for `mailbox`.
    pub fn login_name(&self, mailbox: &str) -> String {
        self.login_format
            .replace("{mailbox}", mailbox)
            .replace("{master}", &self.master_user)
    }
}

impl fmt::Debug for ImapConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImapConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("ca_file", &self.ca_file)
            .field("master_user", &self.master_user)
            .field("master_password", &"[redacted]")
            .field("login_format", &self.login_format)
            .field("timeout", &self.timeout)
            .field("force_copy_fallback", &self.force_copy_fallback)
            .field("fallback_scan_limit", &self.fallback_scan_limit)
            .finish()
    }
}

/// What went wrong talking to the server. Operations turn these into `Failed` outcomes.
#[derive(Debug, thiserror::Error)]
pub enum ImapError {
    #[error("could not connect to {address}: {source}")]
    Connect { address: String, source: io::Error },
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("connection error: {0}")]
    Io(#[from] io::Error),
    #[error("the server closed the connection")]
    Closed,
    #[error("the server ended the session: {0}")]
    Bye(String),
    #[error("the server refused the connection: {0}")]
    Greeting(String),
    #[error("STARTTLS refused: {0}")]
    Starttls(String),
    #[error("TLS handshake with {host} failed: {source}")]
    Handshake { host: String, source: io::Error },
    #[error("{0:?} is not a valid TLS server name")]
    ServerName(String),
    #[error("could not read CA file {path}: {reason}")]
    CaFile { path: PathBuf, reason: String },
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("response larger than {0} bytes")]
    TooLarge(usize),
}

/// Quarantine through IMAP with a master user.
pub struct ImapBackend {
    config: ImapConfig,
    tls: Option<TlsConnector>,
}

impl fmt::Debug for ImapBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImapBackend")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl ImapBackend {
    /// Checks the configuration and loads the trusted certificates once.
    pub fn new(config: ImapConfig) -> Result<ImapBackend, ImapError> {
        let tls = match config.tls {
            TlsMode::None => None,
            TlsMode::Starttls | TlsMode::Tls => Some(tls_connector(&config)?),
        };
        Ok(ImapBackend { config, tls })
    }

    pub fn config(&self) -> &ImapConfig {
        &self.config
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
        let result = match self.login(mailbox).await {
            Ok(mut session) => {
                let result = session.transfer(target, direction).await;
                session.logout().await;
                result
            }
            Err(details) => Err(details),
        };
        let result = result
            .unwrap_or_else(|details| outcome(mailbox, RecipientStatus::Failed, details, None));
        tracing::debug!(
            backend = "imap",
            mailbox,
            message_id = %target.message_id,
            status = result.status.as_str(),
            "mailbox operation finished"
        );
        result
    }

    /// Connects and logs in to `mailbox` through the master user.
    async fn login(&self, mailbox: &str) -> Result<Session<'_>, String> {
        let config = &self.config;
        let (mut conn, _greeting) = Connection::connect(
            &config.host,
            config.port,
            config.tls,
            self.tls.as_ref(),
            config.timeout,
        )
        .await
        .map_err(|e| {
            format!(
                "connecting to {}:{} for {mailbox} failed: {e}",
                config.host, config.port
            )
        })?;

        let user = config.login_name(mailbox);
        let login = [
            Arg::Raw("LOGIN"),
            Arg::Str(&user),
            Arg::Str(&config.master_password),
        ];
        let reply = conn
            .command(&login)
            .await
            .map_err(|e| format!("login for {mailbox} failed: {e}"))?;
        if !reply.is_ok() {
            return Err(format!("login refused for {mailbox}: {}", reply.status));
        }

        let mut session = Session {
            conn,
            mailbox: mailbox.to_owned(),
            capabilities: HashSet::new(),
            config,
        };
        session.capabilities = match reply.status.code_name().as_deref() {
            Some("CAPABILITY") => capabilities_of_code(&reply.status),
            _ => session.fetch_capabilities().await?,
        };
        Ok(session)
    }
}

#[async_trait::async_trait]
impl MailboxBackend for ImapBackend {
    fn name(&self) -> &str {
        "imap"
    }

    async fn quarantine(&self, mailbox: &str, target: &MessageTarget) -> RecipientOutcome {
        self.run(mailbox, target, Direction::Quarantine).await
    }

    async fn restore(&self, mailbox: &str, target: &MessageTarget) -> RecipientOutcome {
        self.run(mailbox, target, Direction::Restore).await
    }

    async fn take_messages(
        &self,
        mailbox: &str,
        folder: &str,
        limit: usize,
    ) -> Result<Vec<(u32, Vec<u8>)>, String> {
        let mut session = self.login(mailbox).await?;
        let taken = session.take_messages(folder, limit).await;
        session.logout().await;
        taken
    }

    async fn file_away(
        &self,
        mailbox: &str,
        folder: &str,
        ids: &[u32],
        to: &str,
    ) -> Result<(), String> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut session = self.login(mailbox).await?;
        let filed = session.file_away(folder, ids, to).await;
        session.logout().await;
        filed
    }
}

fn tls_connector(config: &ImapConfig) -> Result<TlsConnector, ImapError> {
    let mut roots = RootCertStore::empty();
    match &config.ca_file {
        Some(path) => {
            let ca_error = |reason: String| ImapError::CaFile {
                path: path.clone(),
                reason,
            };
            let certs = CertificateDer::pem_file_iter(path).map_err(|e| ca_error(e.to_string()))?;
            for cert in certs {
                roots.add(cert.map_err(|e| ca_error(e.to_string()))?)?;
            }
            if roots.is_empty() {
                return Err(ca_error("no certificate in it".to_owned()));
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(tls)))
}

/// A logged-in connection to one mailbox.
struct Session<'a> {
    conn: Connection,
    mailbox: String,
    /// Upper-case capability names.
    capabilities: HashSet<String>,
    config: &'a ImapConfig,
}

/// The copies of the target found in one folder.
#[derive(Debug, Default)]
struct Found {
    /// UIDs of messages that match the Message-ID and the fingerprint.
    uids: Vec<u32>,
    /// Whether any of them carries `\Seen`.
    read: bool,
    /// Messages with the Message-ID that failed the fingerprint check.
    different: usize,
    /// Said when the search could not cover the whole folder.
    note: String,
}

impl Found {
    fn summary(&self) -> Copies {
        Copies {
            count: self.uids.len(),
            read: self.read,
        }
    }
}

/// One message's answer to a header fetch.
struct Fetched {
    uid: u32,
    seen: bool,
    headers: MessageHeaders,
}

impl Session<'_> {
    /// Moves the target's copies from one folder to the other, or says why not.
    async fn transfer(
        &mut self,
        target: &MessageTarget,
        direction: Direction,
    ) -> Result<RecipientOutcome, String> {
        let (from, to) = direction.folders(target);
        let mailbox = self.mailbox.clone();
        // Without MOVE, a run cut between COPY and EXPUNGE leaves the message in both folders.
        // Looking at the destination first lets the next run finish that move instead of
        // copying again, so the destination never holds a duplicate.
        let copy_path = !self.uses_move() && self.capabilities.contains("UIDPLUS");
        let earlier = match copy_path {
            true => Some(self.find(to, target, false).await?),
            false => None,
        };
        let source = self.find(from, target, true).await?;
        if !source.uids.is_empty() {
            if let Some(dest) = earlier.as_ref().filter(|d| !d.uids.is_empty()) {
                self.remove_originals(&source.uids, from, to).await?;
                return Ok(already_there(&mailbox, target, direction, dest.summary()));
            }
            self.move_uids(&source.uids, from, to).await?;
            return Ok(moved(&mailbox, target, direction, source.summary()));
        }

        let dest = match earlier {
            Some(dest) => dest,
            None => self.find(to, target, false).await?,
        };
        if !dest.uids.is_empty() {
            return Ok(already_there(&mailbox, target, direction, dest.summary()));
        }
        let note = [source.note, dest.note]
            .into_iter()
            .filter(|n| !n.is_empty())
            .collect::<Vec<_>>();
        Ok(not_found(
            &mailbox,
            target,
            direction,
            source.different + dest.different,
            &note.join("; "),
        ))
    }

    /// Opens `folder` (read-write when the copies will be moved out of it) and finds the
    /// target there. A folder that does not exist holds nothing.
    async fn find(
        &mut self,
        folder: &str,
        target: &MessageTarget,
        write: bool,
    ) -> Result<Found, String> {
        let verb = if write { "SELECT" } else { "EXAMINE" };
        let reply = self
            .command(&[Arg::Raw(verb), Arg::Str(folder)], "opening folder")
            .await?;
        if !reply.is_ok() {
            if is_nonexistent(&reply.status) {
                return Ok(Found::default());
            }
            return Err(self.refused(&format!("opening folder {folder}"), &reply.status));
        }
        let exists = reply
            .data
            .iter()
            .find_map(|d| match d.as_slice() {
                [n, Value::Atom(word)] if word.eq_ignore_ascii_case("EXISTS") => n.as_number(),
                _ => None,
            })
            .unwrap_or(0);
        if exists == 0 {
            return Ok(Found::default());
        }

        let mut fetched = self.search_by_header(target).await?;
        fetched.retain(|m| m.headers.message_id.as_ref() == Some(&target.message_id));
        let mut note = String::new();
        if fetched.is_empty() {
            (fetched, note) = self.scan_newest(folder, exists, target).await?;
        }

        let mut found = Found {
            note,
            ..Found::default()
        };
        for m in fetched {
            if m.headers.matches(&target.fingerprint) {
                found.uids.push(m.uid);
                found.read |= m.seen;
            } else {
                found.different += 1;
            }
        }
        for m in self.search_similar(target).await? {
            if !found.uids.contains(&m.uid) && m.headers.matches(&target.fingerprint) {
                found.uids.push(m.uid);
                found.read |= m.seen;
            }
        }
        Ok(found)
    }

    /// Copies with another Message-ID but the same sender and subject, received in the
    /// fingerprint's window; nothing when the fingerprint asks for none. The server's search
    /// is by substring, so the caller checks each header exactly.
    async fn search_similar(&mut self, target: &MessageTarget) -> Result<Vec<Fetched>, String> {
        let fingerprint = &target.fingerprint;
        let (Some(window), Some(subject), Some(sender)) = (
            fingerprint.similar_within,
            fingerprint.subject.as_deref(),
            fingerprint.sender.as_deref(),
        ) else {
            return Ok(Vec::new());
        };
        // The window is about the message's own Date header, so SENTSINCE and SENTBEFORE
        // (not SINCE and BEFORE, which compare the day the server received it). They compare
        // dates only; SENTBEFORE excludes its day.
        let since = window.since.format("%d-%b-%Y").to_string();
        let before = (window.until + chrono::TimeDelta::days(1))
            .format("%d-%b-%Y")
            .to_string();
        let search = [
            Arg::Raw("UID SEARCH FROM"),
            Arg::Str(sender),
            Arg::Raw("SUBJECT"),
            Arg::Str(subject),
            Arg::Raw("SENTSINCE"),
            Arg::Raw(&since),
            Arg::Raw("SENTBEFORE"),
            Arg::Raw(&before),
        ];
        let reply = self.command(&search, "searching similar copies").await?;
        if !reply.is_ok() {
            // A server that cannot search so is not an error: the Message-ID search stands.
            tracing::debug!(mailbox = %self.mailbox, status = %reply.status, "no search for similar copies");
            return Ok(Vec::new());
        }
        let uids: Vec<u32> = searched_uids(&reply).take(1_000).collect();
        if uids.is_empty() {
            return Ok(Vec::new());
        }
        let set = uid_set(&uids);
        self.fetch(&[Arg::Raw("UID FETCH"), Arg::Raw(&set), Arg::Raw(FETCH_ITEMS)])
            .await
    }

    /// Compares the newest messages of the selected folder here, for servers whose header
    /// search tokenises ids or misses unusual characters. Returns the matches and, when the
    /// folder is larger than the scan, a note saying so.
    async fn scan_newest(
        &mut self,
        folder: &str,
        exists: u32,
        target: &MessageTarget,
    ) -> Result<(Vec<Fetched>, String), String> {
        let limit = self.config.fallback_scan_limit.max(1);
        let first = exists.saturating_sub(limit) + 1;
        let range = format!("{first}:{exists}");
        let mut fetched = self
            .fetch(&[Arg::Raw("FETCH"), Arg::Raw(&range), Arg::Raw(FETCH_ITEMS)])
            .await?;
        fetched.retain(|m| m.headers.message_id.as_ref() == Some(&target.message_id));
        let note = if first > 1 {
            format!(
                "the server's header search found no match in {folder}, and only its newest \
                 {limit} of {exists} messages were compared"
            )
        } else {
            String::new()
        };
        Ok((fetched, note))
    }

    /// `UID SEARCH HEADER Message-ID "<id>"`, then the headers of what it found.
    async fn search_by_header(&mut self, target: &MessageTarget) -> Result<Vec<Fetched>, String> {
        let id = target.message_id.bracketed();
        let search = [Arg::Raw("UID SEARCH HEADER Message-ID"), Arg::Str(&id)];
        let reply = self.command(&search, "searching").await?;
        if !reply.is_ok() {
            // A server that cannot run this search still gets the fallback scan.
            let status = &reply.status;
            tracing::debug!(mailbox = self.mailbox, %status, "header search refused");
            return Ok(Vec::new());
        }
        let uids: Vec<u32> = searched_uids(&reply).collect();
        if uids.is_empty() {
            return Ok(Vec::new());
        }
        let set = uid_set(&uids);
        self.fetch(&[Arg::Raw("UID FETCH"), Arg::Raw(&set), Arg::Raw(FETCH_ITEMS)])
            .await
    }

    async fn fetch(&mut self, command: &[Arg<'_>]) -> Result<Vec<Fetched>, String> {
        let reply = self.command(command, "fetching headers").await?;
        if !reply.is_ok() {
            return Err(self.refused("fetching headers", &reply.status));
        }
        Ok(reply.data.iter().filter_map(|d| fetched(d)).collect())
    }

    /// Opens `folder` read-only and fetches up to `limit` undeleted messages whole, lowest
    /// UID first. A message too large for one response fails the call, naming it.
    async fn take_messages(
        &mut self,
        folder: &str,
        limit: usize,
    ) -> Result<Vec<(u32, Vec<u8>)>, String> {
        let reply = self
            .command(&[Arg::Raw("EXAMINE"), Arg::Str(folder)], "opening folder")
            .await?;
        if !reply.is_ok() {
            return Err(self.refused(&format!("opening folder {folder}"), &reply.status));
        }
        let reply = self
            .command(&[Arg::Raw("UID SEARCH UNDELETED")], "listing messages")
            .await?;
        if !reply.is_ok() {
            return Err(self.refused("listing messages", &reply.status));
        }
        let mut uids: Vec<u32> = searched_uids(&reply).collect();
        uids.sort_unstable();
        uids.truncate(limit);
        let mut messages = Vec::with_capacity(uids.len());
        for uid in uids {
            let set = uid.to_string();
            let reply = self
                .command(
                    &[
                        Arg::Raw("UID FETCH"),
                        Arg::Raw(&set),
                        Arg::Raw("(UID BODY.PEEK[])"),
                    ],
                    "fetching a message",
                )
                .await?;
            if !reply.is_ok() {
                return Err(self.refused(&format!("fetching message {uid}"), &reply.status));
            }
            let body = reply.data.iter().find_map(|d| whole_message(d, uid));
            match body {
                Some(body) => messages.push((uid, body)),
                None => {
                    tracing::warn!(mailbox = %self.mailbox, uid, "message vanished before it was fetched")
                }
            }
        }
        Ok(messages)
    }

    async fn file_away(&mut self, folder: &str, uids: &[u32], to: &str) -> Result<(), String> {
        let reply = self
            .command(&[Arg::Raw("SELECT"), Arg::Str(folder)], "opening folder")
            .await?;
        if !reply.is_ok() {
            return Err(self.refused(&format!("opening folder {folder}"), &reply.status));
        }
        self.move_uids(uids, folder, to).await
    }

    /// Moves the UIDs from the selected folder `from` to `to`, creating `to` when missing.
    /// Whether moves use `UID MOVE` rather than COPY and UID EXPUNGE.
    fn uses_move(&self) -> bool {
        self.capabilities.contains("MOVE") && !self.config.force_copy_fallback
    }

    async fn move_uids(&mut self, uids: &[u32], from: &str, to: &str) -> Result<(), String> {
        self.ensure_folder(to).await?;
        let set = uid_set(uids);
        if self.uses_move() {
            let reply = self
                .command(
                    &[Arg::Raw("UID MOVE"), Arg::Raw(&set), Arg::Str(to)],
                    "moving",
                )
                .await?;
            if !reply.is_ok() {
                return Err(self.refused(&format!("UID MOVE from {from} to {to}"), &reply.status));
            }
            return Ok(());
        }

        if !self.capabilities.contains("UIDPLUS") {
            return Err(format!(
                "moving from {from} to {to} failed for {}: the server offers neither MOVE nor \
                 UIDPLUS, and removing the original without UID EXPUNGE could expunge other \
                 messages; nothing was moved",
                self.mailbox
            ));
        }
        let reply = self
            .command(
                &[Arg::Raw("UID COPY"), Arg::Raw(&set), Arg::Str(to)],
                "copying",
            )
            .await?;
        if !reply.is_ok() {
            let step = format!("UID COPY from {from} to {to}");
            return Err(format!(
                "{}; the message was left in {from}",
                self.refused(&step, &reply.status)
            ));
        }
        self.remove_originals(uids, from, to).await
    }

    /// Flags the given messages of the selected folder deleted and expunges exactly them;
    /// called only once their copies are in `to`.
    async fn remove_originals(&mut self, uids: &[u32], from: &str, to: &str) -> Result<(), String> {
        if !self.capabilities.contains("UIDPLUS") {
            return Err(format!(
                "removing the original from {from} failed for {}: the server lacks UIDPLUS",
                self.mailbox
            ));
        }
        let set = uid_set(uids);
        let store = [
            Arg::Raw("UID STORE"),
            Arg::Raw(&set),
            Arg::Raw("+FLAGS.SILENT (\\Deleted)"),
        ];
        let reply = self
            .command(&store, "flagging the original deleted")
            .await?;
        if !reply.is_ok() {
            let step = format!("copied to {to}, but flagging the original in {from} deleted");
            return Err(self.refused(&step, &reply.status));
        }
        let reply = self
            .command(&[Arg::Raw("UID EXPUNGE"), Arg::Raw(&set)], "expunging")
            .await?;
        if !reply.is_ok() {
            let step = format!("copied to {to}, but expunging the original from {from}");
            return Err(self.refused(&step, &reply.status));
        }
        Ok(())
    }

    /// `CREATE`, where a folder that already exists is success.
    async fn ensure_folder(&mut self, folder: &str) -> Result<(), String> {
        if folder.eq_ignore_ascii_case("INBOX") {
            return Ok(());
        }
        let reply = self
            .command(&[Arg::Raw("CREATE"), Arg::Str(folder)], "creating folder")
            .await?;
        let exists = reply.status.code_name().as_deref() == Some("ALREADYEXISTS")
            || reply
                .status
                .text
                .to_ascii_lowercase()
                .contains("already exists");
        if reply.is_ok() || exists {
            return Ok(());
        }
        Err(self.refused(&format!("creating folder {folder}"), &reply.status))
    }

    async fn fetch_capabilities(&mut self) -> Result<HashSet<String>, String> {
        let reply = self
            .command(&[Arg::Raw("CAPABILITY")], "asking capabilities")
            .await?;
        let words = reply
            .data
            .iter()
            .filter(|d| {
                d.first()
                    .and_then(Value::as_atom)
                    .is_some_and(|w| w.eq_ignore_ascii_case("CAPABILITY"))
            })
            .flat_map(|d| d[1..].iter().filter_map(Value::as_atom))
            .map(str::to_ascii_uppercase)
            .collect();
        Ok(words)
    }

    /// Sends a command; a connection error becomes the failure reason for `step`.
    async fn command(&mut self, args: &[Arg<'_>], step: &str) -> Result<Reply, String> {
        self.conn
            .command(args)
            .await
            .map_err(|e| format!("{step} failed for {}: {e}", self.mailbox))
    }

    fn refused(&self, step: &str, status: &Status) -> String {
        format!("{step} refused for {}: {status}", self.mailbox)
    }

    /// Ends the session politely; the outcome is already decided, so errors do not matter.
    async fn logout(&mut self) {
        if let Err(e) = self.conn.command(&[Arg::Raw("LOGOUT")]).await {
            tracing::debug!(mailbox = self.mailbox, error = %e, "logout failed");
        }
    }
}

/// Reads `* n FETCH (UID u FLAGS (...) BODY[...] {literal})`; `None` for other data and for
/// unsolicited fetch responses that carry no headers.
fn fetched(data: &[Value]) -> Option<Fetched> {
    let [_, Value::Atom(word), Value::List(items)] = data else {
        return None;
    };
    if !word.eq_ignore_ascii_case("FETCH") {
        return None;
    }
    let (mut uid, mut seen, mut headers) = (None, false, None);
    for pair in items.chunks(2) {
        let [Value::Atom(key), value] = pair else {
            continue;
        };
        let key = key.to_ascii_uppercase();
        match (key.as_str(), value) {
            ("UID", v) => uid = v.as_number(),
            ("FLAGS", Value::List(flags)) => {
                seen = flags.iter().any(|f| {
                    f.as_atom()
                        .is_some_and(|f| f.eq_ignore_ascii_case("\\Seen"))
                });
            }
            (k, Value::Bytes(block)) if k.starts_with("BODY[") => {
                headers = Some(MessageHeaders::parse(block))
            }
            (k, Value::Nil) if k.starts_with("BODY[") => headers = Some(MessageHeaders::default()),
            _ => {}
        }
    }
    Some(Fetched {
        uid: uid?,
        seen,
        headers: headers?,
    })
}

/// The body of `* n FETCH (UID u BODY[] {literal})` when it is message `uid`.
fn whole_message(data: &[Value], uid: u32) -> Option<Vec<u8>> {
    let [_, Value::Atom(word), Value::List(items)] = data else {
        return None;
    };
    if !word.eq_ignore_ascii_case("FETCH") {
        return None;
    }
    let (mut found_uid, mut body) = (None, None);
    for pair in items.chunks(2) {
        match pair {
            [Value::Atom(key), value] if key.eq_ignore_ascii_case("UID") => {
                found_uid = value.as_number()
            }
            [Value::Atom(key), Value::Bytes(bytes)] if key.eq_ignore_ascii_case("BODY[]") => {
                body = Some(bytes.clone())
            }
            _ => {}
        }
    }
    (found_uid == Some(uid)).then_some(body).flatten()
}

/// The UIDs of the `* SEARCH` responses in a reply.
fn searched_uids(reply: &Reply) -> impl Iterator<Item = u32> + '_ {
    reply
        .data
        .iter()
        .filter(|d| {
            d.first()
                .and_then(Value::as_atom)
                .is_some_and(|w| w.eq_ignore_ascii_case("SEARCH"))
        })
        .flat_map(|d| d[1..].iter().filter_map(Value::as_number))
}

fn capabilities_of_code(status: &Status) -> HashSet<String> {
    let code = status.code.as_deref().unwrap_or("");
    code.split_whitespace()
        .skip(1)
        .map(str::to_ascii_uppercase)
        .collect()
}

fn is_nonexistent(status: &Status) -> bool {
    status.code_name().as_deref() == Some("NONEXISTENT") || {
        let text = status.text.to_ascii_lowercase();
        text.contains("doesn't exist") || text.contains("does not exist")
    }
}

fn uid_set(uids: &[u32]) -> String {
    uids.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use pullback_domain::MessageId;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    use tokio::net::TcpListener;
    use tokio::task::JoinHandle;

    #[test]
    fn debug_hides_the_master_password() {
        let config = ImapConfig::new("imap.example", 993, "master", "s3cret-pass");
        let shown = format!("{config:?}");
        assert!(!shown.contains("s3cret-pass"), "{shown}");
        assert!(shown.contains("[redacted]"));
        assert_eq!(config.login_name("u@x.example"), "u@x.example*master");
    }

    #[test]
    fn reads_fetch_responses() {
        let data = vec![
            Value::Atom("3".into()),
            Value::Atom("FETCH".into()),
            Value::List(vec![
                Value::Atom("UID".into()),
                Value::Atom("17".into()),
                Value::Atom("FLAGS".into()),
                Value::List(vec![Value::Atom("\\Seen".into())]),
                Value::Atom("BODY[HEADER.FIELDS (MESSAGE-ID)]".into()),
                Value::Bytes(b"Message-ID: <a@b>\r\n\r\n".to_vec()),
            ]),
        ];
        let m = fetched(&data).expect("a fetch response");
        assert_eq!((m.uid, m.seen), (17, true));
        assert_eq!(
            m.headers.message_id.as_ref().map(|id| id.as_str()),
            Some("a@b")
        );

        let mut flags_only = data[..2].to_vec();
        flags_only.push(Value::List(vec![
            Value::Atom("UID".into()),
            Value::Atom("17".into()),
        ]));
        assert!(fetched(&flags_only).is_none());
    }

    /// A server on a loopback port that answers each command with the next scripted reply
    /// (`TAG` stands for the command's tag) and returns the commands it received.
    async fn scripted_server(replies: Vec<String>) -> (u16, JoinHandle<Vec<String>>) {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let port = listener.local_addr().expect("a bound address").port();
        let server = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.expect("a client");
            let (read, mut write) = stream.into_split();
            let mut lines = BufReader::new(read).lines();
            write
                .write_all(b"* OK scripted server ready\r\n")
                .await
                .expect("greeting");
            let mut seen = Vec::new();
            for reply in replies {
                let Ok(Some(line)) = lines.next_line().await else {
                    break;
                };
                let (tag, command) = line.split_once(' ').expect("a tagged command");
                seen.push(command.to_owned());
                write
                    .write_all(reply.replace("TAG", tag).as_bytes())
                    .await
                    .expect("reply");
            }
            seen
        });
        (port, server)
    }

    fn fetch_line(seq: u32, uid: u32, header: &str) -> String {
        let section = "BODY[HEADER.FIELDS (MESSAGE-ID SUBJECT FROM SENDER RETURN-PATH)]";
        format!(
            "* {seq} FETCH (UID {uid} FLAGS () {section} {{{}}}\r\n{header})\r\n",
            header.len()
        )
    }

    fn scripted_config(port: u16) -> ImapConfig {
        let mut config = ImapConfig::new("127.0.0.1", port, "master", "pw");
        config.tls = TlsMode::None;
        config.timeout = Duration::from_secs(5);
        config.fallback_scan_limit = 2;
        config
    }

    #[tokio::test]
    async fn falls_back_to_scanning_the_newest_messages_when_search_finds_nothing() {
        let replies = vec![
            "TAG OK [CAPABILITY IMAP4rev1 MOVE UIDPLUS] Logged in\r\n".to_owned(),
            "* 3 EXISTS\r\nTAG OK [READ-WRITE] Selected\r\n".to_owned(),
            "* SEARCH\r\nTAG OK Searched\r\n".to_owned(),
            fetch_line(2, 11, "Message-ID: <other@x.example>\r\n\r\n")
                + &fetch_line(3, 12, "Message-ID:\r\n <$odd id@x.example>\r\n\r\n")
                + "TAG OK Fetched\r\n",
            "TAG NO [ALREADYEXISTS] Mailbox already exists\r\n".to_owned(),
            "TAG OK Moved\r\n".to_owned(),
            "* BYE Logging out\r\nTAG OK Logged out\r\n".to_owned(),
        ];
        let (port, server) = scripted_server(replies).await;
        let backend = ImapBackend::new(scripted_config(port)).expect("a valid configuration");
        let id = MessageId::parse("$odd id@x.example").expect("an id");
        let target = MessageTarget::new(id, Default::default());

        let outcome = backend.quarantine("u@x.example", &target).await;
        assert_eq!(outcome.status, RecipientStatus::Quarantined, "{outcome:?}");
        let commands = server.await.expect("the server task");
        assert_eq!(
            commands,
            [
                "LOGIN \"u@x.example*master\" \"pw\"",
                "SELECT \"INBOX\"",
                "UID SEARCH HEADER Message-ID \"<$odd id@x.example>\"",
                &format!("FETCH 2:3 {FETCH_ITEMS}"),
                "CREATE \"Quarantine\"",
                "UID MOVE 12 \"Quarantine\"",
                "LOGOUT",
            ]
        );
    }

    #[tokio::test]
    async fn a_scan_that_could_not_cover_the_folder_says_so() {
        let replies = vec![
            "TAG OK [CAPABILITY IMAP4rev1 MOVE] Logged in\r\n".to_owned(),
            "* 3 EXISTS\r\nTAG OK Selected\r\n".to_owned(),
            "* SEARCH\r\nTAG OK Searched\r\n".to_owned(),
            fetch_line(2, 11, "Message-ID: <other@x.example>\r\n\r\n") + "TAG OK Fetched\r\n",
            "TAG NO [NONEXISTENT] Mailbox doesn't exist: Quarantine\r\n".to_owned(),
            "TAG OK Logged out\r\n".to_owned(),
        ];
        let (port, server) = scripted_server(replies).await;
        let backend = ImapBackend::new(scripted_config(port)).expect("a valid configuration");
        let id = MessageId::parse("<a@x.example>").expect("an id");
        let target = MessageTarget::new(id, Default::default());

        let outcome = backend.quarantine("u@x.example", &target).await;
        assert_eq!(outcome.status, RecipientStatus::NotFound, "{outcome:?}");
        assert!(
            outcome.details.contains("newest 2 of 3 messages"),
            "{}",
            outcome.details
        );
        let commands = server.await.expect("the server task");
        assert_eq!(commands[4..], ["EXAMINE \"Quarantine\"", "LOGOUT"]);
    }

    #[tokio::test]
    async fn refuses_to_copy_without_move_or_uidplus() {
        let replies = vec![
            "TAG OK Logged in\r\n".to_owned(),
            "* CAPABILITY IMAP4rev1\r\nTAG OK Capability\r\n".to_owned(),
            "* 1 EXISTS\r\nTAG OK Selected\r\n".to_owned(),
            "* SEARCH 5\r\nTAG OK Searched\r\n".to_owned(),
            fetch_line(1, 5, "Message-ID: <a@x.example>\r\n\r\n") + "TAG OK Fetched\r\n",
            "TAG OK Created\r\n".to_owned(),
            "TAG OK Logged out\r\n".to_owned(),
        ];
        let (port, server) = scripted_server(replies).await;
        let backend = ImapBackend::new(scripted_config(port)).expect("a valid configuration");
        let target = MessageTarget::new(
            MessageId::parse("<a@x.example>").expect("an id"),
            Default::default(),
        );

        let outcome = backend.quarantine("u@x.example", &target).await;
        assert_eq!(outcome.status, RecipientStatus::Failed, "{outcome:?}");
        assert!(
            outcome.details.contains("neither MOVE nor UIDPLUS"),
            "{}",
            outcome.details
        );
        let commands = server.await.expect("the server task");
        assert_eq!(commands[5..], ["CREATE \"Quarantine\"", "LOGOUT"]);
    }

    #[test]
    fn a_missing_ca_file_is_a_configuration_error() {
        let mut config = ImapConfig::new("imap.example", 993, "master", "pw");
        config.ca_file = Some(PathBuf::from("/nonexistent/ca.pem"));
        let err = ImapBackend::new(config).expect_err("no such file");
        assert!(matches!(err, ImapError::CaFile { .. }), "{err}");
    }
}

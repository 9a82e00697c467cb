//! A bound connection to the directory: TLS that always verifies the server, paged searches
//! that read past the server's size limit, and the writes Pullback makes (group membership and
//! single attributes), each idempotent and returning what undoes it.

use crate::config::{ClassConfig, DirectoryConfig, EntryKind, Scheme};
use crate::entry::RawEntry;
use crate::error::DirectoryError;
use ldap3::asn1::{PL, StructureTag};
use ldap3::controls::{Control, ControlType, PagedResults};
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, LdapError, LdapResult, Mod, Scope};
use rustls::RootCertStore;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// The OID of the simple paged results control (RFC 2696).
const PAGED_RESULTS: &str = "1.2.840.113556.1.4.319";

/// Result codes the client acts on (RFC 4511, appendix A).
mod rc {
    pub const SUCCESS: u32 = 0;
    pub const SIZE_LIMIT_EXCEEDED: u32 = 4;
    pub const COMPARE_FALSE: u32 = 5;
    pub const COMPARE_TRUE: u32 = 6;
    pub const REFERRAL: u32 = 10;
    pub const NO_SUCH_ATTRIBUTE: u32 = 16;
    pub const ATTRIBUTE_OR_VALUE_EXISTS: u32 = 20;
    pub const NO_SUCH_OBJECT: u32 = 32;
    /// Active Directory's answer to adding a member twice.
    pub const ENTRY_ALREADY_EXISTS: u32 = 68;
}

/// Whether a write changed the directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Changed {
    /// The change was made.
    Done,
    /// The directory already was that way; nothing was written.
    AlreadySo,
}

/// What an attribute held before [`DirectoryClient::set_attribute`]; setting these values
/// again undoes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Previous {
    /// The entry changed.
    pub dn: String,
    /// The attribute changed.
    pub attribute: String,
    /// Its values before, empty when it was absent.
    pub values: Vec<String>,
    /// Whether anything was written.
    pub changed: Changed,
}

/// What the server's root DSE says about it.
#[derive(Clone, Debug, Default)]
pub(crate) struct RootDse {
    /// Whether it offers the paged results control.
    pub paged: bool,
    /// Active Directory's `highestCommittedUSN`.
    pub highest_usn: Option<u64>,
    /// The server's host name (`dnsHostName`), which USNs belong to.
    pub server: Option<String>,
    /// The suffixes it holds.
    pub naming_contexts: Vec<String>,
}

/// One item of a search.
pub(crate) enum Found {
    Entry(RawEntry),
    /// An entry that could not be decoded: its DN when known, and why.
    Malformed(Option<String>, String),
    /// A continuation reference or a referral answer: the URLs.
    Referral(Vec<String>),
}

/// A connection to the directory, bound with the configured account.
#[derive(Debug)]
pub struct DirectoryClient {
    ldap: Ldap,
    url: String,
    timeout: Duration,
    classes: Vec<ClassConfig>,
    base_dns: Vec<String>,
    driver: JoinHandle<()>,
}

impl Drop for DirectoryClient {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

impl DirectoryClient {
    /// Connects (with TLS or StartTLS as configured, the server certificate verified) and
    /// binds.
    pub async fn connect(config: &DirectoryConfig) -> Result<DirectoryClient, DirectoryError> {
        config.validate()?;
        let url = config.url.clone();
        let timeout = config.timeout();
        let mut settings = LdapConnSettings::new().set_conn_timeout(timeout);
        if config.scheme()? == Scheme::Tls || config.starttls {
            settings = settings
                .set_config(tls_config(config)?)
                .set_starttls(config.starttls);
        }
        let connecting = LdapConnAsync::with_settings(settings, &config.url);
        let (connection, ldap) = tokio::time::timeout(timeout, connecting)
            .await
            .map_err(|_| timed_out(&url, "connecting", timeout))?
            .map_err(|e| connect_error(config, e))?;
        let driver = tokio::spawn(async move {
            if let Err(error) = connection.drive().await {
                tracing::debug!(error = %error, "directory connection ended");
            }
        });
        let mut client = DirectoryClient {
            ldap,
            url,
            timeout,
            classes: config.classes.clone(),
            base_dns: config.base_dns.clone(),
            driver,
        };
        if let (Some(dn), Some(password)) = (&config.bind_dn, &config.bind_password) {
            client.bind(dn, &password.0).await?;
        }
        Ok(client)
    }

    /// The URL this client is connected to.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Ends the session politely.
    pub async fn close(mut self) {
        // The server drops the connection either way.
        let _ = self.ldap.unbind().await;
    }

    async fn bind(&mut self, dn: &str, password: &str) -> Result<(), DirectoryError> {
        let result = self
            .ldap
            .with_timeout(self.timeout)
            .simple_bind(dn, password)
            .await
            .map_err(|e| {
                self.op_error(e, "binding", |reason| DirectoryError::Connect {
                    url: self.url.clone(),
                    reason,
                })
            })?;
        if result.rc != rc::SUCCESS {
            return Err(DirectoryError::Bind {
                url: self.url.clone(),
                dn: dn.to_owned(),
                reason: describe(&result),
            });
        }
        Ok(())
    }

    /// Reads the root DSE. A server that hides it, or hides its controls, is still asked for
    /// pages: the control is not critical, so a server without it answers as if unasked.
    pub(crate) async fn root_dse(&mut self) -> Result<RootDse, DirectoryError> {
        let attributes = [
            "supportedControl",
            "highestCommittedUSN",
            "dnsHostName",
            "namingContexts",
        ];
        let Some(entry) = self.read("", &attributes).await? else {
            return Ok(RootDse {
                paged: true,
                ..RootDse::default()
            });
        };
        let texts = |name: &str| -> Vec<String> {
            entry
                .values(name)
                .filter_map(|v| String::from_utf8(v.clone()).ok())
                .collect()
        };
        Ok(RootDse {
            paged: {
                let controls = texts("supportedControl");
                controls.is_empty() || controls.iter().any(|c| c == PAGED_RESULTS)
            },
            highest_usn: texts("highestCommittedUSN")
                .first()
                .and_then(|u| u.parse().ok()),
            server: texts("dnsHostName").into_iter().next(),
            naming_contexts: texts("namingContexts"),
        })
    }

    /// One entry by DN with the given attributes; `None` when it does not exist.
    pub(crate) async fn read(
        &mut self,
        dn: &str,
        attributes: &[&str],
    ) -> Result<Option<RawEntry>, DirectoryError> {
        let mut found = None;
        let mut malformed = None;
        let attributes: Vec<String> = attributes.iter().map(|a| (*a).to_owned()).collect();
        let outcome = self
            .search_pages(
                dn,
                Scope::Base,
                "(objectClass=*)",
                &attributes,
                None,
                |item| match item {
                    Found::Entry(entry) => found = Some(entry),
                    Found::Malformed(_, reason) => malformed = Some(reason),
                    Found::Referral(_) => {}
                },
            )
            .await;
        match outcome {
            Ok(_) => {}
            Err(SearchFailure::Result(result)) if result.rc == rc::NO_SUCH_OBJECT => {
                return Ok(None);
            }
            Err(failure) => return Err(self.search_error(dn, failure)),
        }
        if let Some(reason) = malformed {
            return Err(DirectoryError::Search {
                url: self.url.clone(),
                base: dn.to_owned(),
                reason,
            });
        }
        Ok(found)
    }

    /// Every entry below `base` matching `filter`, a page at a time when `page_size` is given;
    /// returns how many requests it took. A result the server cut short is an error, because
    /// an incomplete listing would make present entries look deleted.
    pub(crate) async fn search_all(
        &mut self,
        base: &str,
        filter: &str,
        attributes: &[String],
        page_size: Option<u32>,
        each: impl FnMut(Found),
    ) -> Result<usize, DirectoryError> {
        self.search_pages(base, Scope::Subtree, filter, attributes, page_size, each)
            .await
            .map_err(|failure| self.search_error(base, failure))
    }

    async fn search_pages(
        &mut self,
        base: &str,
        scope: Scope,
        filter: &str,
        attributes: &[String],
        page_size: Option<u32>,
        mut each: impl FnMut(Found),
    ) -> Result<usize, SearchFailure> {
        let mut cookie = Vec::new();
        let mut pages = 0;
        loop {
            let mut ldap = self.ldap.clone();
            ldap.with_timeout(self.timeout);
            if let Some(size) = page_size {
                ldap.with_controls(PagedResults {
                    size: size as i32,
                    cookie: std::mem::take(&mut cookie),
                });
            }
            let mut stream = ldap
                .streaming_search(base, scope, filter, attributes.to_vec())
                .await
                .map_err(SearchFailure::Client)?;
            while let Some(item) = stream.next().await.map_err(SearchFailure::Client)? {
                if item.is_intermediate() {
                    continue;
                }
                if item.is_ref() {
                    each(Found::Referral(references(item.0)));
                    continue;
                }
                each(decode_entry(item.0));
            }
            let result = stream.finish().await;
            pages += 1;
            match result.rc {
                rc::SUCCESS => {}
                rc::REFERRAL => each(Found::Referral(result.refs.clone())),
                _ => return Err(SearchFailure::Result(result)),
            }
            cookie = next_cookie(&result);
            if page_size.is_none() || cookie.is_empty() {
                return Ok(pages);
            }
        }
    }

    fn search_error(&self, base: &str, failure: SearchFailure) -> DirectoryError {
        let error = |reason| DirectoryError::Search {
            url: self.url.clone(),
            base: base.to_owned(),
            reason,
        };
        match failure {
            SearchFailure::Client(e) => self.op_error(e, "searching", error),
            SearchFailure::Result(result) if result.rc == rc::SIZE_LIMIT_EXCEEDED => {
                error(format!(
                    "the server cut the result short ({}); it does not page this search, so the \
                 import would be incomplete",
                    describe(&result)
                ))
            }
            SearchFailure::Result(result) => error(describe(&result)),
        }
    }

    /// The DN of the group named `name`: `name` itself when it is a DN, else the one entry of
    /// a configured group class (any group class when none is configured) under the base DNs
    /// whose `cn` is `name`. None, or more than one, is an error that says so.
    pub async fn find_group(&mut self, name: &str) -> Result<String, DirectoryError> {
        let name = name.trim();
        if name.contains('=') {
            return Ok(name.to_owned());
        }
        let mut classes: Vec<String> = self
            .classes
            .iter()
            .filter(|c| c.kind == EntryKind::Group)
            .map(|c| format!("(objectClass={})", filter_value(&c.object_class)))
            .collect();
        if classes.is_empty() {
            classes = ["groupOfNames", "groupOfUniqueNames", "group"]
                .map(|c| format!("(objectClass={c})"))
                .to_vec();
        }
        let filter = format!("(&(|{})(cn={}))", classes.concat(), filter_value(name));
        let mut found = Vec::new();
        for base in self.base_dns.clone() {
            self.search_all(&base, &filter, &["1.1".to_owned()], None, |item| {
                if let Found::Entry(entry) = item {
                    found.push(entry.dn);
                }
            })
            .await?;
        }
        found.dedup();
        match found.as_slice() {
            [dn] => Ok(dn.clone()),
            [] => Err(DirectoryError::NoSuchEntry {
                url: self.url.clone(),
                dn: format!("a group named {name:?}"),
            }),
            many => Err(DirectoryError::Config {
                reason: format!(
                    "{} groups are named {name:?} ({}); name the group by its DN",
                    many.len(),
                    many.join("; ")
                ),
            }),
        }
    }

    /// Adds a member to a group, through the member attribute of the first configured group
    /// class the entry belongs to (`member` when none names one). Undone by
    /// [`DirectoryClient::remove_member`].
    pub async fn add_member(
        &mut self,
        group_dn: &str,
        member_dn: &str,
    ) -> Result<Changed, DirectoryError> {
        let attribute = self.member_attribute(group_dn).await?;
        if self.has_value(group_dn, &attribute, member_dn).await? {
            return Ok(Changed::AlreadySo);
        }
        let values = HashSet::from([member_dn]);
        let result = self
            .modify(group_dn, vec![Mod::Add(attribute.as_str(), values)])
            .await?;
        match result.rc {
            rc::SUCCESS => Ok(Changed::Done),
            rc::ATTRIBUTE_OR_VALUE_EXISTS | rc::ENTRY_ALREADY_EXISTS => Ok(Changed::AlreadySo),
            _ => Err(self.write_error(group_dn, &result)),
        }
    }

    /// Removes a member from a group. Undone by [`DirectoryClient::add_member`].
    pub async fn remove_member(
        &mut self,
        group_dn: &str,
        member_dn: &str,
    ) -> Result<Changed, DirectoryError> {
        let attribute = self.member_attribute(group_dn).await?;
        // Asking first matters for Active Directory, which answers "unwilling to perform"
        // rather than "no such value" when the member is not there.
        if !self.has_value(group_dn, &attribute, member_dn).await? {
            return Ok(Changed::AlreadySo);
        }
        let values = HashSet::from([member_dn]);
        let result = self
            .modify(group_dn, vec![Mod::Delete(attribute.as_str(), values)])
            .await?;
        match result.rc {
            rc::SUCCESS => Ok(Changed::Done),
            rc::NO_SUCH_ATTRIBUTE => Ok(Changed::AlreadySo),
            _ => Err(self.write_error(group_dn, &result)),
        }
    }

    /// Gives an attribute exactly these values (none removes it) and returns the old ones,
    /// which undo it. Values already equal, in any order, write nothing.
    pub async fn set_attribute(
        &mut self,
        dn: &str,
        attribute: &str,
        values: &[String],
    ) -> Result<Previous, DirectoryError> {
        if !crate::dn::is_attribute_type(attribute) {
            return Err(DirectoryError::Config {
                reason: format!("{attribute:?} is not an attribute name"),
            });
        }
        let entry =
            self.read(dn, &[attribute])
                .await?
                .ok_or_else(|| DirectoryError::NoSuchEntry {
                    url: self.url.clone(),
                    dn: dn.to_owned(),
                })?;
        let mut old = Vec::new();
        for value in entry.values(attribute) {
            match String::from_utf8(value.clone()) {
                Ok(text) => old.push(text),
                Err(_) => {
                    return Err(DirectoryError::Write {
                        url: self.url.clone(),
                        dn: dn.to_owned(),
                        reason: format!(
                            "{attribute} holds binary values, which could not be put back"
                        ),
                    });
                }
            }
        }
        let previous = |changed| Previous {
            dn: dn.to_owned(),
            attribute: attribute.to_owned(),
            values: old.clone(),
            changed,
        };
        let wanted: HashSet<&str> = values.iter().map(String::as_str).collect();
        let current: HashSet<&str> = old.iter().map(String::as_str).collect();
        if wanted == current {
            return Ok(previous(Changed::AlreadySo));
        }
        let result = self
            .modify(dn, vec![Mod::Replace(attribute, wanted)])
            .await?;
        match result.rc {
            rc::SUCCESS => Ok(previous(Changed::Done)),
            _ => Err(self.write_error(dn, &result)),
        }
    }

    /// The member attribute of the first configured group class of the entry; `member` when
    /// no class names one.
    async fn member_attribute(&mut self, group_dn: &str) -> Result<String, DirectoryError> {
        let entry = self
            .read(group_dn, &["objectClass"])
            .await?
            .ok_or_else(|| DirectoryError::NoSuchEntry {
                url: self.url.clone(),
                dn: group_dn.to_owned(),
            })?;
        let classes: Vec<String> = entry
            .values("objectClass")
            .filter_map(|v| std::str::from_utf8(v).ok())
            .map(str::to_ascii_lowercase)
            .collect();
        let configured = self.classes.iter().find(|class| {
            class.kind == EntryKind::Group
                && class.member_attribute.is_some()
                && classes.contains(&class.object_class.to_ascii_lowercase())
        });
        Ok(configured
            .and_then(|class| class.member_attribute.clone())
            .unwrap_or_else(|| "member".to_owned()))
    }

    /// Whether the attribute holds the value, by the server's own matching rule (so a DN
    /// spelled differently still matches).
    async fn has_value(
        &mut self,
        dn: &str,
        attribute: &str,
        value: &str,
    ) -> Result<bool, DirectoryError> {
        let result = self
            .ldap
            .with_timeout(self.timeout)
            .compare(dn, attribute, value)
            .await
            .map_err(|e| self.op_error(e, "comparing", |reason| self.write_reason(dn, reason)))?
            .0;
        match result.rc {
            rc::COMPARE_TRUE => Ok(true),
            rc::COMPARE_FALSE | rc::NO_SUCH_ATTRIBUTE => Ok(false),
            rc::NO_SUCH_OBJECT => Err(DirectoryError::NoSuchEntry {
                url: self.url.clone(),
                dn: dn.to_owned(),
            }),
            _ => Err(self.write_error(dn, &result)),
        }
    }

    async fn modify(
        &mut self,
        dn: &str,
        mods: Vec<Mod<&str>>,
    ) -> Result<LdapResult, DirectoryError> {
        let result = self
            .ldap
            .with_timeout(self.timeout)
            .modify(dn, mods)
            .await
            .map_err(|e| self.op_error(e, "writing", |reason| self.write_reason(dn, reason)))?;
        tracing::info!(dn, rc = result.rc, url = %self.url, "directory modified");
        Ok(result)
    }

    fn write_reason(&self, dn: &str, reason: String) -> DirectoryError {
        DirectoryError::Write {
            url: self.url.clone(),
            dn: dn.to_owned(),
            reason,
        }
    }

    fn write_error(&self, dn: &str, result: &LdapResult) -> DirectoryError {
        if result.rc == rc::NO_SUCH_OBJECT {
            return DirectoryError::NoSuchEntry {
                url: self.url.clone(),
                dn: dn.to_owned(),
            };
        }
        self.write_reason(dn, describe(result))
    }

    /// A client-side failure: a timeout is its own error, anything else goes to `other`.
    fn op_error(
        &self,
        error: LdapError,
        what: &str,
        other: impl FnOnce(String) -> DirectoryError,
    ) -> DirectoryError {
        match error {
            LdapError::Timeout { .. } => timed_out(&self.url, what, self.timeout),
            error => other(error.to_string()),
        }
    }
}

/// Why a search did not complete.
enum SearchFailure {
    Client(LdapError),
    Result(LdapResult),
}

fn timed_out(url: &str, what: &str, timeout: Duration) -> DirectoryError {
    DirectoryError::Timeout {
        url: url.to_owned(),
        what: what.to_owned(),
        secs: timeout.as_secs(),
    }
}

/// A result code with its name and the server's text: `invalidCredentials (49)`.
fn describe(result: &LdapResult) -> String {
    let full = result.to_string();
    let name = full
        .split_once('(')
        .and_then(|(_, rest)| rest.split_once(')'))
        .map_or("unknown", |(name, _)| name);
    let mut text = format!("{name} ({})", result.rc);
    if !result.text.is_empty() {
        text.push_str(": ");
        text.push_str(result.text.trim());
    }
    text
}

fn next_cookie(result: &LdapResult) -> Vec<u8> {
    result
        .ctrls
        .iter()
        .find_map(|control| match control {
            Control(Some(ControlType::PagedResults), raw) => {
                Some(raw.parse::<PagedResults>().cookie)
            }
            _ => None,
        })
        .unwrap_or_default()
}

/// The TLS settings: the configured CA bundle, else the system trust store. There is no way
/// to turn verification off.
fn tls_config(config: &DirectoryConfig) -> Result<Arc<rustls::ClientConfig>, DirectoryError> {
    let mut roots = RootCertStore::empty();
    match &config.ca_file {
        Some(path) => {
            let ca_error = |reason: String| DirectoryError::CaFile {
                path: path.clone(),
                reason,
            };
            let certificates =
                CertificateDer::pem_file_iter(path).map_err(|e| ca_error(e.to_string()))?;
            for certificate in certificates {
                let certificate = certificate.map_err(|e| ca_error(e.to_string()))?;
                roots
                    .add(certificate)
                    .map_err(|e| ca_error(e.to_string()))?;
            }
            if roots.is_empty() {
                return Err(ca_error("no certificate in it".to_owned()));
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            for certificate in native.certs {
                // A system certificate rustls cannot use is skipped, as browsers do.
                let _ = roots.add(certificate);
            }
            if roots.is_empty() {
                return Err(DirectoryError::Config {
                    reason: "TLS without ca_file needs the system trust store, which is empty"
                        .to_owned(),
                });
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| DirectoryError::Config {
            reason: format!("TLS: {e}"),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(tls))
}

/// Names a connection failure: TLS when rustls refused, a timeout, else unreachable.
fn connect_error(config: &DirectoryConfig, error: LdapError) -> DirectoryError {
    let url = config.url.clone();
    let tls_reason = |e: &rustls::Error| {
        let trusted = match &config.ca_file {
            Some(path) => format!("the CA bundle {}", path.display()),
            None => "the system trust store".to_owned(),
        };
        match e {
            rustls::Error::InvalidCertificate(_) => {
                format!("the server certificate does not verify against {trusted}: {e}")
            }
            _ => e.to_string(),
        }
    };
    match &error {
        LdapError::Rustls { source } => DirectoryError::Tls {
            url,
            reason: tls_reason(source),
        },
        LdapError::Io { source } => {
            match source
                .get_ref()
                .and_then(|e| e.downcast_ref::<rustls::Error>())
            {
                Some(e) => DirectoryError::Tls {
                    url,
                    reason: tls_reason(e),
                },
                None => DirectoryError::Connect {
                    url,
                    reason: source.to_string(),
                },
            }
        }
        LdapError::Timeout { .. } => timed_out(&url, "connecting", config.timeout()),
        LdapError::LdapResult { result } if config.starttls => DirectoryError::Tls {
            url,
            reason: format!("StartTLS refused: {}", describe(result)),
        },
        _ => DirectoryError::Connect {
            url,
            reason: error.to_string(),
        },
    }
}

/// Decodes a SearchResultEntry without trusting it: a malformed one becomes a problem rather
/// than a panic.
fn decode_entry(tag: StructureTag) -> Found {
    let Some(mut parts) = tag.expect_constructed().map(Vec::into_iter) else {
        return Found::Malformed(None, "an entry that is not a sequence".to_owned());
    };
    let Some(dn) = parts.next().and_then(StructureTag::expect_primitive) else {
        return Found::Malformed(None, "an entry without a name".to_owned());
    };
    let Ok(dn) = String::from_utf8(dn) else {
        return Found::Malformed(None, "an entry whose name is not UTF-8".to_owned());
    };
    let malformed =
        |dn: &str, reason: &str| Found::Malformed(Some(dn.to_owned()), reason.to_owned());
    let Some(list) = parts.next().and_then(StructureTag::expect_constructed) else {
        return malformed(&dn, "no attribute list");
    };
    let mut attributes = Vec::with_capacity(list.len());
    for attribute in list {
        let Some(mut pair) = attribute.expect_constructed().map(Vec::into_iter) else {
            return malformed(&dn, "an attribute that is not a sequence");
        };
        let name = pair.next().and_then(StructureTag::expect_primitive);
        let Some(Ok(name)) = name.map(String::from_utf8) else {
            return malformed(&dn, "an attribute without a readable name");
        };
        let Some(values) = pair.next().and_then(StructureTag::expect_constructed) else {
            return malformed(&dn, "an attribute without a value set");
        };
        let mut raw = Vec::with_capacity(values.len());
        for value in values {
            match value.payload {
                PL::P(bytes) => raw.push(bytes),
                PL::C(_) => return malformed(&dn, "a value that is not a string"),
            }
        }
        attributes.push((name, raw));
    }
    Found::Entry(RawEntry { dn, attributes })
}

/// The URLs of a SearchResultReference, undecodable ones left out.
fn references(tag: StructureTag) -> Vec<String> {
    tag.expect_constructed()
        .unwrap_or_default()
        .into_iter()
        .filter_map(StructureTag::expect_primitive)
        .filter_map(|url| String::from_utf8(url).ok())
        .collect()
}

/// A value escaped for an LDAP search filter (RFC 4515).
fn filter_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '*' => out.push_str("\\2a"),
            '(' => out.push_str("\\28"),
            ')' => out.push_str("\\29"),
            '\\' => out.push_str("\\5c"),
            '\0' => out.push_str("\\00"),
            c => out.push(c),
        }
    }
    out
}

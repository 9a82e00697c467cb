//! What to import from a directory and how to reach it: the server, the credentials, the
//! subtrees and, per object class, which attributes carry addresses, which are kept and which
//! lists a group's members.

use crate::dn;
use crate::error::DirectoryError;
use pullback_domain::Secret;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::time::Duration;

/// How to reach a directory and what to read from it.
///
/// ```toml
/// url = "ldaps://dc1.corp.example:636/"
/// ca_file = "/etc/pullback/corp-ca.pem"
/// bind_dn = "CN=pullback,OU=Service Accounts,DC=corp,DC=example"
/// bind_password = "…"
/// base_dns = ["OU=Staff,DC=corp,DC=example"]
///
/// [[classes]]
/// object_class = "user"
/// kind = "person"
/// mail_attributes = ["proxyAddresses", "mail"]
/// keep = ["displayName", "department", "title", "manager"]
///
/// [[classes]]
/// object_class = "group"
/// kind = "group"
/// mail_attributes = ["mail"]
/// member_attribute = "member"
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectoryConfig {
    /// `ldap://host:port/` or `ldaps://host:port/` (TLS from the first byte).
    pub url: String,
    /// Upgrade an `ldap://` connection with StartTLS before binding.
    #[serde(default)]
    pub starttls: bool,
    /// A PEM bundle of the certificate authorities the server certificate must verify against;
    /// without it, the operating system's trust store. Verification is never skipped.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// The account to bind as; anonymous when absent.
    #[serde(default)]
    pub bind_dn: Option<String>,
    /// The account's password; required with `bind_dn`.
    #[serde(default)]
    pub bind_password: Option<Secret>,
    /// The subtrees searched, each with all its levels.
    pub base_dns: Vec<String>,
    /// Entries asked for per page of a paged search (RFC 2696). Active Directory returns at
    /// most 1,000 a page whatever is asked.
    #[serde(default = "default_page_size")]
    pub page_size: u32,
    /// How long to wait for the connection and for each answer, in seconds.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// The object classes imported and how each is read.
    pub classes: Vec<ClassConfig>,
}

/// How entries of one object class are read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassConfig {
    /// The object class searched for: `user`, `person`, `inetOrgPerson`, `group`,
    /// `groupOfNames`, `contact` or any custom class, structural or auxiliary.
    pub object_class: String,
    /// Whether its entries are people (mail recipients) or groups.
    pub kind: EntryKind,
    /// The attributes holding addresses, in order of preference: `mail`, `otherMailbox`, or
    /// `proxyAddresses`, of whose values only `smtp:` ones count (`SMTP:` marks the primary).
    #[serde(default)]
    pub mail_attributes: Vec<String>,
    /// Further attributes kept in [`DirectoryEntry::attributes`](crate::DirectoryEntry), such
    /// as `department` or custom ones.
    #[serde(default)]
    pub keep: Vec<String>,
    /// For groups: the attribute listing the members' DNs, `member` or `uniqueMember`.
    #[serde(default)]
    pub member_attribute: Option<String>,
}

/// Whether an entry is a person or a group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// Someone (or a contact) who receives mail.
    Person,
    /// A group of people and other groups; a distribution list when it has an address.
    Group,
}

fn default_page_size() -> u32 {
    500
}

fn default_timeout_secs() -> u64 {
    30
}

impl ClassConfig {
    /// People of a class, their addresses in `mail`, keeping nothing else.
    pub fn people(object_class: &str) -> ClassConfig {
        ClassConfig {
            object_class: object_class.to_owned(),
            kind: EntryKind::Person,
            mail_attributes: vec!["mail".to_owned()],
            keep: Vec::new(),
            member_attribute: None,
        }
    }

    /// Groups of a class, their members in `member_attribute`, their address in `mail`.
    pub fn groups(object_class: &str, member_attribute: &str) -> ClassConfig {
        ClassConfig {
            object_class: object_class.to_owned(),
            kind: EntryKind::Group,
            mail_attributes: vec!["mail".to_owned()],
            keep: Vec::new(),
            member_attribute: Some(member_attribute.to_owned()),
        }
    }
}

/// Whether a URL is `ldap://` or `ldaps://`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scheme {
    Plain,
    Tls,
}

impl DirectoryConfig {
    /// A configuration with the defaults: no TLS settings, anonymous, no classes.
    pub fn new(url: &str, base_dns: &[&str]) -> DirectoryConfig {
        DirectoryConfig {
            url: url.to_owned(),
            starttls: false,
            ca_file: None,
            bind_dn: None,
            bind_password: None,
            base_dns: base_dns.iter().map(|b| (*b).to_owned()).collect(),
            page_size: default_page_size(),
            timeout_secs: default_timeout_secs(),
            classes: Vec::new(),
        }
    }

    /// The timeout as a duration.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs)
    }

    /// Checks everything that can be checked without the server: the URL, TLS settings,
    /// credentials, base DNs and attribute names (which end up in search filters, so a
    /// malformed one is refused rather than escaped).
    pub fn validate(&self) -> Result<(), DirectoryError> {
        let invalid = |reason: String| Err(DirectoryError::Config { reason });
        let scheme = self.scheme()?;
        if self.starttls && scheme == Scheme::Tls {
            return invalid(format!(
                "starttls is for ldap:// URLs; {} is already TLS",
                self.url
            ));
        }
        if self.bind_dn.is_some() != self.bind_password.is_some() {
            return invalid("bind_dn and bind_password go together".to_owned());
        }
        if let Some(bind_dn) = &self.bind_dn
            && !dn::is_dn(bind_dn)
        {
            return invalid(format!("bind_dn {bind_dn:?} is not a distinguished name"));
        }
        if self.base_dns.is_empty() {
            return invalid("base_dns is empty".to_owned());
        }
        if let Some(base) = self.base_dns.iter().find(|b| !dn::is_dn(b)) {
            return invalid(format!("base DN {base:?} is not a distinguished name"));
        }
        if self.page_size == 0 || self.page_size > i32::MAX as u32 {
            return invalid(format!("page_size {} is out of range", self.page_size));
        }
        if self.timeout_secs == 0 {
            return invalid("timeout_secs must be at least 1".to_owned());
        }
        if self.classes.is_empty() {
            return invalid("no classes to import".to_owned());
        }
        self.classes.iter().try_for_each(ClassConfig::validate)
    }

    pub(crate) fn scheme(&self) -> Result<Scheme, DirectoryError> {
        let lower = self.url.to_ascii_lowercase();
        if lower.starts_with("ldap://") {
            Ok(Scheme::Plain)
        } else if lower.starts_with("ldaps://") {
            Ok(Scheme::Tls)
        } else {
            Err(DirectoryError::Config {
                reason: format!("url {:?} is neither ldap:// nor ldaps://", self.url),
            })
        }
    }

    /// A digest of what is imported (base DNs and classes). A watermark from a run with a
    /// different scope cannot make the next run incremental.
    pub(crate) fn scope_digest(&self) -> String {
        let scope = serde_json::json!({ "base_dns": self.base_dns, "classes": self.classes });
        let digest = Sha256::digest(scope.to_string().as_bytes());
        hex::encode(&digest[..16])
    }
}

impl ClassConfig {
    fn validate(&self) -> Result<(), DirectoryError> {
        let names = std::iter::once(&self.object_class)
            .chain(&self.mail_attributes)
            .chain(&self.keep)
            .chain(&self.member_attribute);
        for name in names {
            if !dn::is_attribute_type(name) {
                return Err(DirectoryError::Config {
                    reason: format!(
                        "{name:?} (class {:?}) is not an attribute or class name",
                        self.object_class
                    ),
                });
            }
        }
        if self.kind == EntryKind::Person && self.member_attribute.is_some() {
            return Err(DirectoryError::Config {
                reason: format!(
                    "class {:?} holds people but names a member attribute",
                    self.object_class
                ),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> DirectoryConfig {
        let mut config = DirectoryConfig::new("ldap://127.0.0.1:389/", &["dc=example,dc=test"]);
        config.classes = vec![ClassConfig::people("inetOrgPerson")];
        config
    }

    #[track_caller]
    fn refused(change: impl FnOnce(&mut DirectoryConfig), needle: &str) {
        let mut config = config();
        change(&mut config);
        let error = config.validate().expect_err("refused").to_string();
        assert!(
            error.contains(needle),
            "{error:?} should mention {needle:?}"
        );
    }

    #[test]
    fn validation() {
        config().validate().expect("valid");
        refused(|c| c.url = "http://x/".into(), "neither ldap");
        refused(
            |c| (c.url, c.starttls) = ("ldaps://x/".into(), true),
            "already TLS",
        );
        refused(|c| c.bind_dn = Some("cn=a,dc=b".into()), "go together");
        refused(
            |c| c.base_dns = vec!["example.test".into()],
            "not a distinguished name",
        );
        refused(|c| c.base_dns.clear(), "base_dns is empty");
        refused(|c| c.page_size = 0, "page_size");
        refused(|c| c.timeout_secs = 0, "timeout_secs");
        refused(
            |c| c.classes[0].keep = vec!["x)(mail=*".into()],
            "not an attribute",
        );
        refused(
            |c| c.classes[0].member_attribute = Some("member".into()),
            "holds people",
        );
    }

    #[test]
    fn reads_from_toml_shaped_json_with_defaults_and_a_redacted_password() {
        let config: DirectoryConfig = serde_json::from_value(serde_json::json!({
            "url": "ldaps://dc1/",
            "bind_dn": "cn=svc,dc=corp",
            "bind_password": "hunter2",
            "base_dns": ["dc=corp"],
            "classes": [{ "object_class": "group", "kind": "group", "member_attribute": "member" }],
        }))
        .expect("config");
        assert_eq!((config.page_size, config.timeout_secs), (500, 30));
        assert_eq!(config.classes[0].kind, EntryKind::Group);
        assert!(!format!("{config:?}").contains("hunter2"));
        let unknown =
            serde_json::json!({ "url": "ldap://x/", "base_dns": [], "classes": [], "x": 1 });
        assert!(serde_json::from_value::<DirectoryConfig>(unknown).is_err());
    }
}

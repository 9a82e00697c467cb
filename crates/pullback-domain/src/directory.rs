//! The organisation's directory as Pullback keeps it: people and groups imported from LDAP
//! or Active Directory, looked up by address to enrich alerts, to match on and to expand
//! distribution lists.

use crate::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DirectoryKind {
    Person,
    Group,
}

/// One imported entry with an address, as every node stores it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DirectoryRecord {
    pub dn: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<DirectoryKind>,
    #[serde(default)]
    pub object_classes: Vec<String>,
    /// Lower case, the primary one first.
    pub addresses: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub department: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// The manager's DN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manager: Option<String>,
    /// The groups a person is in, directly or through nested groups: each by its name (the
    /// first value of its RDN, such as `security-team`) and by its DN.
    #[serde(default)]
    pub groups: Vec<String>,
    /// The imported attributes the administrator chose to keep, custom ones included.
    #[serde(default)]
    pub attributes: BTreeMap<String, Vec<String>>,
    /// For a group with an address (a distribution list): the addresses of the people in
    /// it, nested groups included.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<String>,
}

impl DirectoryRecord {
    /// Whether the record is in `group`, given by name or DN, in any case.
    pub fn in_group(&self, group: &str) -> bool {
        let group = group.trim();
        self.groups.iter().any(|g| g.eq_ignore_ascii_case(group))
    }

    pub fn has_class(&self, class: &str) -> bool {
        self.object_classes
            .iter()
            .any(|c| c.eq_ignore_ascii_case(class.trim()))
    }

    /// The values of an attribute: the kept ones, and the well-known fields by their LDAP
    /// names.
    pub fn values(&self, name: &str) -> Vec<&str> {
        let known = match name.to_ascii_lowercase().as_str() {
            "displayname" => self.display_name.as_deref(),
            "department" => self.department.as_deref(),
            "title" => self.title.as_deref(),
            "manager" => self.manager.as_deref(),
            _ => None,
        };
        let kept = self
            .attributes
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| v.iter().map(String::as_str));
        known.into_iter().chain(kept).collect()
    }
}

/// Answers directory questions while alerts are matched and quarantines planned.
pub trait DirectoryLookup {
    /// The record of the person or group with this address.
    fn lookup(&self, address: &str) -> Option<DirectoryRecord>;
}

/// No directory imported: every lookup finds nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoDirectory;

impl DirectoryLookup for NoDirectory {
    fn lookup(&self, _address: &str) -> Option<DirectoryRecord> {
        None
    }
}

/// One import, as recorded.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DirectoryRun {
    pub id: String,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
    /// `running`, `done` or `failed`.
    pub state: String,
    pub people: u64,
    pub groups: u64,
    /// Entries not kept, each with its DN and why (no address, a group loop...).
    pub problems: Vec<String>,
    pub error: Option<String>,
}

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

/// A change a match condition makes in the directory for each recipient of an alert it
/// matches: enrol them in a training group, put them in a group that forces a password
/// change, mark them in an attribute. Each is idempotent and can be undone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum DirectoryAction {
    /// Adds the recipient to a group, named by its name or DN.
    AddToGroup { group: String },
    /// Removes the recipient from a group, named by its name or DN.
    RemoveFromGroup { group: String },
    /// Replaces the values of an attribute of the recipient's entry (no values removes it).
    SetAttribute {
        attribute: String,
        #[serde(default)]
        values: Vec<String>,
    },
}

impl DirectoryAction {
    /// What the action does, in words, for records and the audit log.
    pub fn describe(&self) -> String {
        match self {
            DirectoryAction::AddToGroup { group } => format!("add to group {group}"),
            DirectoryAction::RemoveFromGroup { group } => format!("remove from group {group}"),
            DirectoryAction::SetAttribute { attribute, values } if values.is_empty() => {
                format!("clear attribute {attribute}")
            }
            DirectoryAction::SetAttribute { attribute, values } => {
                format!("set attribute {attribute} to {}", values.join(", "))
            }
        }
    }

    /// Why the action cannot be taken as written, if so.
    pub fn problem(&self) -> Option<String> {
        match self {
            DirectoryAction::AddToGroup { group } | DirectoryAction::RemoveFromGroup { group }
                if group.trim().is_empty() =>
            {
                Some("a group action names no group".to_owned())
            }
            DirectoryAction::SetAttribute { attribute, .. }
                if attribute.is_empty()
                    || !attribute
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == ';')
                    || !attribute.starts_with(|c: char| c.is_ascii_alphabetic()) =>
            {
                Some(format!("{attribute:?} is not an attribute name"))
            }
            _ => None,
        }
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
    /// Only changes since the previous run were read from the server.
    #[serde(default)]
    pub incremental: bool,
    /// Records written: every record for a full run, the changed ones for an incremental one.
    #[serde(default)]
    pub changed: u64,
    /// Records removed by an incremental run.
    #[serde(default)]
    pub removed: u64,
}

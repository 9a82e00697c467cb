//! Who may do what: roles, local user accounts, sign-in sessions and the audit log.

use crate::{Secret, Timestamp};
use serde::{Deserialize, Serialize};

/// What a person or an API key may do. Ordered: each role may do everything the ones before
/// it may.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Looks at everything, changes nothing.
    ReadOnly,
    /// Works incidents: comments, closes, overrides verdicts, quarantines and restores.
    Analyst,
    /// Everything, including sources, match conditions, users and the cluster.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::ReadOnly => "read_only",
            Role::Analyst => "analyst",
            Role::Admin => "admin",
        }
    }
}

/// A local account. The password is kept only as an argon2 hash in PHC form.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct User {
    pub name: String,
    pub role: Role,
    pub password_hash: Secret,
    #[serde(default)]
    pub disabled: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A user name: 1 to 64 characters of letters, digits, `.`, `_`, `-` and `@`.
pub fn valid_user_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'))
}

/// A signed-in browser, known by the SHA-256 of its cookie.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Session {
    pub user: String,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    /// The token every changing request of this session must repeat in a header. It is not
    /// a credential on its own: without the cookie it opens nothing.
    pub csrf_token: Secret,
    /// Set when an outside identity provider vouched for the user instead of a local
    /// password: such a session needs no local account, and its role is the one the
    /// provider's groups or app roles granted at sign-in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<ExternalSignIn>,
}

/// Who vouched for a session's user, when it was not a local password.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExternalSignIn {
    /// The identity provider as audit entries name it, such as `azure ad`.
    pub provider: String,
    /// The role granted at sign-in.
    pub role: Role,
    /// The user's immutable id at the provider (Azure AD's object id).
    pub subject: String,
    /// The provider's tenant the user belongs to.
    pub tenant: String,
}

/// One change, who made it and how it ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub id: u64,
    pub at: Timestamp,
    /// The user or API key.
    pub by: String,
    /// The command's name, such as `request_restore`.
    pub action: String,
    /// What it was applied to, without secrets.
    pub detail: String,
    /// `ok`, or `refused: <why>`.
    pub outcome: String,
}

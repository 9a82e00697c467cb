//! From what Azure AD says about a user to a Pullback role.
//!
//! An ID token carries the user's groups (object ids, when the application registration asks
//! for the `groups` claim) and app roles (the `roles` claim, values defined on the
//! application registration and assigned to users or groups). Each Pullback role lists the
//! groups and app roles that grant it; the highest role granted wins. A user granted none is
//! refused, unless a `default_role` is configured: a sign-in never quietly becomes read-only.

use pullback_domain::Role;
use serde::Deserialize;

/// The groups and app roles that grant one Pullback role.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleMembers {
    /// Group object ids (from the `groups` claim); compared without regard to case.
    #[serde(default)]
    pub groups: Vec<String>,
    /// App role values (from the `roles` claim); compared exactly.
    #[serde(default)]
    pub app_roles: Vec<String>,
}

impl RoleMembers {
    fn is_empty(&self) -> bool {
        self.groups.is_empty() && self.app_roles.is_empty()
    }

    fn grants(&self, groups: &[String], app_roles: &[String]) -> bool {
        self.groups
            .iter()
            .any(|wanted| groups.iter().any(|g| g.eq_ignore_ascii_case(wanted)))
            || self
                .app_roles
                .iter()
                .any(|wanted| app_roles.iter().any(|r| r == wanted))
    }
}

/// Which groups and app roles grant which Pullback role (`[oidc.roles]`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleMapping {
    /// Grants everything, including users, sources and the cluster.
    #[serde(default)]
    pub admin: RoleMembers,
    /// Grants working incidents.
    #[serde(default)]
    pub analyst: RoleMembers,
    /// Grants looking.
    #[serde(default)]
    pub read_only: RoleMembers,
    /// The role of a user no list grants one. Without it such a user is refused.
    #[serde(default)]
    pub default_role: Option<Role>,
}

/// What the ID token said about the user's memberships.
#[derive(Clone, Debug, Default)]
pub struct Memberships<'a> {
    /// The user, for messages.
    pub user: &'a str,
    /// The `groups` claim.
    pub groups: &'a [String],
    /// The `roles` claim.
    pub app_roles: &'a [String],
    /// Azure AD left the groups out because there are too many (the "groups overage"):
    /// the token then names a Graph query instead (`_claim_names`).
    pub groups_left_out: bool,
}

/// Why a user gets no role.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RoleError {
    /// Nothing the user is in grants a role, and there is no default.
    #[error(
        "{user} signed in, but none of their {groups} group(s) and app roles [{app_roles}] grants \
         a Pullback role; an administrator adds them to a group or app role listed in [oidc.roles]"
    )]
    NoRole {
        /// The user.
        user: String,
        /// How many groups the token listed.
        groups: usize,
        /// The app roles the token listed.
        app_roles: String,
    },
    /// The groups were left out of the token and no app role decided.
    #[error(
        "{user} is in more groups than Azure AD puts in a token, so their groups are unknown; \
         grant Pullback roles by app roles, or set the registration's groups claim to the \
         groups assigned to the application"
    )]
    GroupsLeftOut {
        /// The user.
        user: String,
    },
}

impl RoleMapping {
    /// Whether any group or app role grants a role.
    pub fn lists_anything(&self) -> bool {
        !(self.admin.is_empty() && self.analyst.is_empty() && self.read_only.is_empty())
    }

    /// Whether some role is granted by groups (so the `groups` claim is needed).
    pub fn uses_groups(&self) -> bool {
        [&self.admin, &self.analyst, &self.read_only]
            .iter()
            .any(|m| !m.groups.is_empty())
    }

    /// The highest role the memberships grant, or the default role.
    pub fn role_of(&self, members: &Memberships<'_>) -> Result<Role, RoleError> {
        let ordered = [
            (Role::Admin, &self.admin),
            (Role::Analyst, &self.analyst),
            (Role::ReadOnly, &self.read_only),
        ];
        for (role, list) in ordered {
            if list.grants(members.groups, members.app_roles) {
                return Ok(role);
            }
        }
        // Without the groups, a missing grant may be a group we were not told about: the
        // default would then hand out less (or more) than the directory says.
        // FIXME: the groups are not fetched from Microsoft Graph when left out, so a user in
        // more than 200 groups can be granted a role only by an app role.
        if members.groups_left_out && self.uses_groups() {
            return Err(RoleError::GroupsLeftOut {
                user: members.user.to_owned(),
            });
        }
        self.default_role.ok_or_else(|| RoleError::NoRole {
            user: members.user.to_owned(),
            groups: members.groups.len(),
            app_roles: members.app_roles.join(", "),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADMINS: &str = "0f5c6a52-6a0e-4b6f-9a55-1f1f0e0d0c01";
    const ANALYSTS: &str = "1b9d2f61-7c4d-4f0e-8d3a-2e2e0e0d0c02";

    fn mapping(default_role: Option<Role>) -> RoleMapping {
        RoleMapping {
            admin: RoleMembers {
                groups: vec![ADMINS.into()],
                app_roles: vec!["Pullback.Admin".into()],
            },
            analyst: RoleMembers {
                groups: vec![ANALYSTS.into()],
                app_roles: vec![],
            },
            read_only: RoleMembers {
                groups: vec![],
                app_roles: vec!["Pullback.Reader".into()],
            },
            default_role,
        }
    }

    fn check(mapping: &RoleMapping, groups: &[&str], roles: &[&str], left_out: bool) -> String {
        let groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
        let roles: Vec<String> = roles.iter().map(|r| r.to_string()).collect();
        let members = Memberships {
            user: "alice@contoso.test",
            groups: &groups,
            app_roles: &roles,
            groups_left_out: left_out,
        };
        match mapping.role_of(&members) {
            Ok(role) => role.as_str().to_owned(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn the_highest_role_granted_wins() {
        let m = mapping(None);
        assert_eq!(check(&m, &[ANALYSTS, ADMINS], &[], false), "admin");
        assert_eq!(
            check(&m, &[ANALYSTS], &["Pullback.Reader"], false),
            "analyst"
        );
        assert_eq!(check(&m, &[], &["Pullback.Reader"], false), "read_only");
        assert_eq!(check(&m, &[], &["Pullback.Admin"], false), "admin");
        // Object ids are GUIDs, whose case varies between tools.
        assert_eq!(check(&m, &[&ADMINS.to_uppercase()], &[], false), "admin");
        // App role values are exact.
        assert!(check(&m, &[], &["pullback.admin"], false).contains("grants a Pullback role"));
    }

    #[test]
    fn a_user_granted_nothing_is_refused_unless_a_default_is_configured() {
        let refused = check(&mapping(None), &["another-group"], &["Other"], false);
        assert!(refused.contains("alice@contoso.test"), "{refused}");
        assert!(refused.contains("1 group(s)"), "{refused}");
        assert!(refused.contains("[oidc.roles]"), "{refused}");
        assert_eq!(
            check(&mapping(Some(Role::ReadOnly)), &[], &[], false),
            "read_only"
        );
    }

    #[test]
    fn left_out_groups_are_named_rather_than_defaulted() {
        let answer = check(&mapping(Some(Role::ReadOnly)), &[], &[], true);
        assert!(
            answer.contains("more groups than Azure AD puts"),
            "{answer}"
        );
        // An app role still decides on its own.
        assert_eq!(
            check(&mapping(None), &[], &["Pullback.Admin"], true),
            "admin"
        );
    }
}

//! Where backups go: a local folder (a mounted disk or share) or a folder on an SFTP server
//! whose host key is pinned by its fingerprint.

use crate::BackupError;
pub use pullback_domain::Secret;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The SSH port.
pub const DEFAULT_SFTP_PORT: u16 = 22;

/// A backup target as configured. Serialised with a `type` of `local` or `sftp`; its `Debug`
/// never shows a password or key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum TargetConfig {
    /// A folder on this machine, which must exist.
    Local {
        /// The folder that holds one sub-folder per backup.
        path: PathBuf,
    },
    /// A folder on an SFTP server.
    Sftp {
        /// The server's host name or address.
        host: String,
        /// The server's port, 22 when not given.
        #[serde(default = "default_port")]
        port: u16,
        /// The user to log in as.
        user: String,
        /// The remote folder that holds one sub-folder per backup, which must exist; relative
        /// to the user's home folder unless it starts with `/`.
        path: String,
        /// The password, tried after the private key.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        password: Option<Secret>,
        /// An unencrypted private key in OpenSSH or PEM text (ed25519, ECDSA or RSA).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        private_key: Option<Secret>,
        /// The SHA-256 fingerprint of the server's host key as `ssh-keygen -lf` prints it,
        /// such as `SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s`. Required: a server
        /// offering another key is refused before any credential is sent.
        host_key_sha256: String,
    },
}

fn default_port() -> u16 {
    DEFAULT_SFTP_PORT
}

impl TargetConfig {
    /// Where backups go, for messages and logs: the local folder, or
    /// `sftp://user@host:port/path`. Holds no secret.
    pub fn location(&self) -> String {
        match self {
            TargetConfig::Local { path } => path.display().to_string(),
            TargetConfig::Sftp {
                host,
                port,
                user,
                path,
                ..
            } => {
                let slash = if path.starts_with('/') { "" } else { "/~/" };
                format!("sftp://{user}@{host}:{port}{slash}{path}")
            }
        }
    }

    /// Checks what can be checked without reaching the target: required fields, a credential
    /// for SFTP, and the form of the fingerprint.
    pub fn validate(&self) -> Result<(), BackupError> {
        let invalid = |problem: String| Err(BackupError::InvalidConfig { problem });
        match self {
            TargetConfig::Local { path } if path.as_os_str().is_empty() => {
                invalid("the local path is empty".to_owned())
            }
            TargetConfig::Local { .. } => Ok(()),
            TargetConfig::Sftp {
                host,
                port,
                user,
                path,
                password,
                private_key,
                host_key_sha256,
            } => {
                let location = self.location();
                if host.is_empty() || user.is_empty() || path.is_empty() || *port == 0 {
                    return invalid(format!(
                        "{location}: host, port, user and path are all required"
                    ));
                }
                if password.is_none() && private_key.is_none() {
                    return invalid(format!("{location}: give a password or a private_key"));
                }
                parse_fingerprint(host_key_sha256)
                    .map(|_| ())
                    .map_err(|problem| BackupError::InvalidConfig {
                        problem: format!("{location}: host_key_sha256 {problem}"),
                    })
            }
        }
    }
}

/// The base64 part of a `SHA256:...` fingerprint without padding, or why it is malformed.
pub(crate) fn parse_fingerprint(text: &str) -> Result<&str, String> {
    let Some(encoded) = text.trim().strip_prefix("SHA256:") else {
        return Err(format!(
            "{text:?} must start with \"SHA256:\", as `ssh-keygen -lf <host key>.pub` prints it"
        ));
    };
    let encoded = encoded.trim_end_matches('=');
    let base64 = |b: u8| b.is_ascii_alphanumeric() || b == b'+' || b == b'/';
    if encoded.len() != 43 || !encoded.bytes().all(base64) {
        return Err(format!(
            "{text:?} is not a SHA-256 fingerprint (43 base64 characters after \"SHA256:\")"
        ));
    }
    Ok(encoded)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FINGERPRINT: &str = "SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s";

    fn sftp(password: Option<&str>, fingerprint: &str) -> TargetConfig {
        TargetConfig::Sftp {
            host: "backup.example.test".to_owned(),
            port: 22,
            user: "pullback".to_owned(),
            path: "/srv/backups".to_owned(),
            password: password.map(|p| Secret(p.to_owned())),
            private_key: None,
            host_key_sha256: fingerprint.to_owned(),
        }
    }

    #[test]
    fn reads_both_kinds_with_defaults() {
        let local: TargetConfig =
            serde_json::from_str(r#"{"type":"local","path":"/var/backups"}"#).unwrap();
        assert_eq!(
            local,
            TargetConfig::Local {
                path: "/var/backups".into()
            }
        );
        let remote: TargetConfig = serde_json::from_str(&format!(
            r#"{{"type":"sftp","host":"backup.example.test","user":"pullback",
                "path":"/srv/backups","password":"pw","host_key_sha256":"{FINGERPRINT}"}}"#
        ))
        .unwrap();
        assert_eq!(remote, sftp(Some("pw"), FINGERPRINT));
        remote.validate().unwrap();
        let text = serde_json::to_string(&remote).unwrap();
        assert!(text.contains(r#""type":"sftp""#), "{text}");
    }

    #[test]
    fn refuses_unknown_fields() {
        let error = serde_json::from_str::<TargetConfig>(
            r#"{"type":"local","path":"/var/backups","paht":"x"}"#,
        )
        .unwrap_err();
        assert!(error.to_string().contains("paht"), "{error}");
    }

    #[test]
    fn debug_hides_secrets() {
        let shown = format!("{:?}", sftp(Some("hunter2-secret"), FINGERPRINT));
        assert!(!shown.contains("hunter2-secret"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }

    #[test]
    fn validation_names_the_problem() {
        let check = |config: TargetConfig, needle: &str| {
            let error = config.validate().unwrap_err().to_string();
            assert!(
                error.contains(needle),
                "{error:?} should contain {needle:?}"
            );
        };
        check(sftp(None, FINGERPRINT), "give a password or a private_key");
        check(sftp(Some("pw"), "uNiVztks"), "must start with \"SHA256:\"");
        check(
            sftp(Some("pw"), "SHA256:short"),
            "not a SHA-256 fingerprint",
        );
        check(
            TargetConfig::Local {
                path: PathBuf::new(),
            },
            "empty",
        );
        sftp(Some("pw"), &format!("{FINGERPRINT}="))
            .validate()
            .unwrap();
    }

    #[test]
    fn location_holds_no_secret() {
        let config = sftp(Some("hunter2-secret"), FINGERPRINT);
        assert_eq!(
            config.location(),
            "sftp://pullback@backup.example.test:22/srv/backups"
        );
    }
}

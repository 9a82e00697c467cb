//! The `[oidc]` section: sign-in with Azure AD for the web UI (see `docs/azure-ad.md`). The
//! node reads its secrets and files; `pullback_oidc` checks the rest and does the sign-in.

use crate::config::SecretRef;
use pullback_domain::Secret;
use pullback_oidc::{ClientCredential, Cloud, OidcSettings, RoleMapping};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `[oidc]`: the app registration and how its users map to roles.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcSection {
    /// `global`, `us_gov` (GCC High and DoD), `china` (21Vianet) or `custom`.
    #[serde(default)]
    pub cloud: Cloud,
    /// Where the OpenID configuration is, instead of the cloud's own sign-in host; required
    /// for `custom`. The tenant and `/v2.0/.well-known/openid-configuration` follow it.
    #[serde(default)]
    pub authority_url: Option<String>,
    /// The directory (tenant) id, or a verified domain of the tenant.
    pub tenant_id: String,
    /// The application (client) id of the app registration.
    pub client_id: String,
    /// The client secret (`{ file = "…" }`, `{ env = "…" }` or `{ value = "…" }`).
    #[serde(default)]
    pub client_secret: Option<SecretRef>,
    /// A certificate uploaded to the app registration, instead of a secret.
    #[serde(default)]
    pub client_certificate: Option<CertificateFiles>,
    /// The redirect URI registered for the app: `https://<this appliance>/api/v1/oidc/callback`.
    pub redirect_url: String,
    /// More CA certificates (PEM) to trust for the authority's TLS, for an authority behind
    /// a private CA.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Each request to Azure AD gives up after this long.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// The least time between two fetches of the signing keys caused by an unknown key id.
    #[serde(default = "default_key_refresh")]
    pub key_refresh_secs: u64,
    /// Which groups and app roles grant which role (`[oidc.roles]`).
    #[serde(default)]
    pub roles: RoleMapping,
}

/// A certificate credential: the certificate and its RSA private key, PEM.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateFiles {
    /// The certificate uploaded to the app registration.
    pub cert_file: PathBuf,
    /// Its private key; readable by the owner only.
    pub key_file: PathBuf,
}

fn default_timeout() -> u64 {
    OidcSettings::DEFAULT_TIMEOUT.as_secs()
}

fn default_key_refresh() -> u64 {
    OidcSettings::DEFAULT_KEY_REFRESH.as_secs()
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("oidc.{what}: cannot read {}: {e}", path.display()))
}

impl OidcSection {
    /// Reads the secret or certificate and checks every setting; each problem names its
    /// setting.
    pub fn settings(&self) -> Result<OidcSettings, Vec<String>> {
        let mut problems = Vec::new();
        let credential = match (&self.client_secret, &self.client_certificate) {
            (Some(secret), None) => match secret.resolve("oidc.client_secret") {
                Ok(value) => Some(ClientCredential::Secret(Secret(value))),
                Err(problem) => {
                    problems.push(problem);
                    None
                }
            },
            (None, Some(files)) => match certificate(files) {
                Ok(credential) => Some(credential),
                Err(problem) => {
                    problems.push(problem);
                    None
                }
            },
            _ => {
                problems.push(
                    "oidc: give exactly one of client_secret or client_certificate".to_owned(),
                );
                None
            }
        };
        let ca_pem = match &self.ca_file {
            Some(path) => match read(path, "ca_file") {
                Ok(pem) => Some(pem),
                Err(problem) => {
                    problems.push(problem);
                    None
                }
            },
            None => None,
        };
        let Some(credential) = credential else {
            return Err(problems);
        };
        let settings = OidcSettings {
            cloud: self.cloud,
            authority_url: self.authority_url.clone(),
            tenant_id: self.tenant_id.trim().to_owned(),
            client_id: self.client_id.trim().to_owned(),
            credential,
            redirect_url: self.redirect_url.trim().to_owned(),
            ca_pem,
            roles: self.roles.clone(),
            timeout: Duration::from_secs(self.timeout_secs),
            key_refresh_interval: Duration::from_secs(self.key_refresh_secs),
        };
        if let Err(e) = settings.check() {
            problems.extend(e.problems.into_iter().map(|p| format!("oidc: {p}")));
        }
        if problems.is_empty() {
            Ok(settings)
        } else {
            Err(problems)
        }
    }
}

fn certificate(files: &CertificateFiles) -> Result<ClientCredential, String> {
    let certificate = read(&files.cert_file, "client_certificate.cert_file")?;
    // The key is a secret: the same permission check as secret files.
    let key = SecretRef {
        file: Some(files.key_file.clone()),
        ..SecretRef::default()
    }
    .resolve("oidc.client_certificate.key_file")?;
    ClientCredential::certificate_from_pem(&certificate, key.as_bytes())
        .map_err(|e| format!("oidc.client_certificate: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(text: &str) -> OidcSection {
        toml::from_str(text).unwrap()
    }

    const BASE: &str = "tenant_id = \"5e3ce6c0-2b1f-4285-8d4b-75ee78787346\"\n\
                        client_id = \"4a1aa1d5-c567-49d0-ad0b-cd957a47f842\"\n\
                        redirect_url = \"https://pullback.contoso.test/api/v1/oidc/callback\"\n";

    #[test]
    fn a_complete_section_gives_settings_and_each_problem_is_named() {
        let good = format!(
            "cloud = \"us_gov\"\n{BASE}client_secret = {{ value = \"s\" }}\n\
             [roles]\nadmin = {{ groups = [\"b8b6d0a2-4c1f-4f0b-9a5e-0c9d1e2f3a4b\"] }}\n\
             read_only = {{ app_roles = [\"Pullback.Reader\"] }}\n"
        );
        let settings = section(&good).settings().expect("good settings");
        assert_eq!(settings.cloud, Cloud::UsGov);
        assert_eq!(settings.roles.read_only.app_roles, ["Pullback.Reader"]);
        assert!(!format!("{settings:?}").contains("value = \"s\""));

        let problems = section(&format!("{BASE}[roles]\ndefault_role = \"read_only\"\n"))
            .settings()
            .unwrap_err();
        assert!(
            problems[0].contains("exactly one of client_secret"),
            "{problems:?}"
        );

        let problems = section(&format!(
            "cloud = \"custom\"\n{BASE}client_secret = {{ env = \"PULLBACK_TEST_UNSET_VARIABLE\" }}\n"
        ))
        .settings()
        .unwrap_err()
        .join("\n");
        assert!(
            problems.contains("PULLBACK_TEST_UNSET_VARIABLE is not set"),
            "{problems}"
        );

        let problems = section(&format!(
            "cloud = \"custom\"\n{BASE}client_secret = {{ value = \"s\" }}\n"
        ))
        .settings()
        .unwrap_err()
        .join("\n");
        assert!(
            problems.contains("oidc: cloud \"custom\" needs authority_url"),
            "{problems}"
        );
        assert!(
            problems.contains("oidc: [oidc.roles] grants no role"),
            "{problems}"
        );
        assert!(toml::from_str::<OidcSection>(&format!("{BASE}cloud = \"germany\"\n")).is_err());
    }

    #[test]
    fn a_certificate_key_must_be_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("key.pem");
        let cert = dir.path().join("cert.pem");
        std::fs::write(
            &key,
            "-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::write(&cert, "not a certificate").unwrap();
        let text = format!(
            "{BASE}client_certificate = {{ cert_file = \"{}\", key_file = \"{}\" }}\n\
             [roles]\ndefault_role = \"read_only\"\n",
            cert.display(),
            key.display()
        );
        let problems = section(&text).settings().unwrap_err().join("\n");
        assert!(problems.contains("chmod 600"), "{problems}");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        let problems = section(&text).settings().unwrap_err().join("\n");
        assert!(
            problems.contains("oidc.client_certificate: no certificate"),
            "{problems}"
        );
    }
}

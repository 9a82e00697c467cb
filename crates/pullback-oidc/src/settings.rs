//! What sign-in with Azure AD is configured with, and the checks that find a wrong setting
//! before the first user does. Secrets are already read here; their `Debug` hides them.

use crate::cloud::Cloud;
use crate::roles::RoleMapping;
use pullback_domain::Secret;
use ring::signature::RsaKeyPair;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::fmt;
use std::time::Duration;

/// The path of the API's callback route; the redirect URL registered in Azure AD must end
/// with it.
pub const CALLBACK_PATH: &str = "/api/v1/oidc/callback";

/// Tenant names that stand for many tenants. A sign-in for the appliance must be limited to
/// its organisation's tenant, whose issuer is known in advance.
const MULTI_TENANT: [&str; 3] = ["common", "organizations", "consumers"];

/// How the application proves itself at the token endpoint.
#[derive(Clone)]
pub enum ClientCredential {
    /// A client secret from the application registration.
    Secret(Secret),
    /// A certificate uploaded to the application registration, and its private key: the
    /// application signs a short assertion (RFC 7523) instead of sending a secret.
    Certificate {
        /// The certificate's DER, whose SHA-256 names it to Azure AD (`x5t#S256`).
        certificate_der: Vec<u8>,
        /// The RSA private key, PKCS#8 or PKCS#1 DER.
        key: PrivateKey,
    },
}

/// An RSA private key's DER; `Debug` never shows it.
#[derive(Clone)]
pub struct PrivateKey {
    /// The DER bytes.
    pub der: Vec<u8>,
    /// True for PKCS#8, false for PKCS#1.
    pub pkcs8: bool,
}

impl PrivateKey {
    /// The key pair ring signs with.
    pub fn key_pair(&self) -> Result<RsaKeyPair, String> {
        let parsed = if self.pkcs8 {
            RsaKeyPair::from_pkcs8(&self.der)
        } else {
            RsaKeyPair::from_der(&self.der)
        };
        parsed.map_err(|e| format!("not a usable RSA private key ({e})"))
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Debug for ClientCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientCredential::Secret(_) => f.write_str("Secret(<redacted>)"),
            ClientCredential::Certificate {
                certificate_der, ..
            } => f
                .debug_struct("Certificate")
                .field(
                    "sha256",
                    &crate::encoding::b64url(crate::encoding::sha256(certificate_der)),
                )
                .finish_non_exhaustive(),
        }
    }
}

impl ClientCredential {
    /// A certificate credential from PEM: the certificate (the first one of the file is the
    /// application's) and its RSA private key.
    pub fn certificate_from_pem(
        certificate_pem: &[u8],
        key_pem: &[u8],
    ) -> Result<ClientCredential, String> {
        let certificate = CertificateDer::from_pem_slice(certificate_pem)
            .map_err(|e| format!("no certificate in the PEM ({e})"))?;
        let key = match PrivateKeyDer::from_pem_slice(key_pem)
            .map_err(|e| format!("no private key in the PEM ({e})"))?
        {
            PrivateKeyDer::Pkcs8(der) => PrivateKey {
                der: der.secret_pkcs8_der().to_vec(),
                pkcs8: true,
            },
            PrivateKeyDer::Pkcs1(der) => PrivateKey {
                der: der.secret_pkcs1_der().to_vec(),
                pkcs8: false,
            },
            _ => return Err("the private key is not an RSA key (PKCS#8 or PKCS#1)".into()),
        };
        key.key_pair()?;
        Ok(ClientCredential::Certificate {
            certificate_der: certificate.to_vec(),
            key,
        })
    }

    /// Bytes only the holder of the credential knows, from which the key that seals sign-in
    /// cookies is derived, so that every node configured alike derives the same key.
    pub(crate) fn secret_material(&self) -> &[u8] {
        match self {
            ClientCredential::Secret(secret) => secret.0.as_bytes(),
            ClientCredential::Certificate { key, .. } => &key.der,
        }
    }
}

/// Everything sign-in with Azure AD needs, read and resolved.
#[derive(Clone, Debug)]
pub struct OidcSettings {
    /// Which cloud the tenant lives in.
    pub cloud: Cloud,
    /// Where the OpenID configuration is published, instead of the cloud's own sign-in host
    /// (required for [`Cloud::Custom`]). Without a trailing slash, before the tenant:
    /// `https://login.microsoftonline.us`.
    pub authority_url: Option<String>,
    /// The directory (tenant) id, a GUID, or one of the tenant's verified domain names.
    pub tenant_id: String,
    /// The application (client) id of the app registration.
    pub client_id: String,
    /// How the application proves itself.
    pub credential: ClientCredential,
    /// The redirect URI registered for the application: this appliance's
    /// `https://<host>/api/v1/oidc/callback`.
    pub redirect_url: String,
    /// More certificate authorities to trust for the authority's TLS (PEM), for an explicit
    /// authority behind a private CA; the public web roots are always trusted.
    pub ca_pem: Option<Vec<u8>>,
    /// Groups and app roles to Pullback roles.
    pub roles: RoleMapping,
    /// Each request to Azure AD gives up after this long.
    pub timeout: Duration,
    /// An ID token signed by a key the cached key set lacks fetches the keys again, at most
    /// once per this interval.
    pub key_refresh_interval: Duration,
}

/// Every problem found in the settings, each naming the setting.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", problems.join("; "))]
pub struct SettingsError {
    /// One sentence per problem.
    pub problems: Vec<String>,
}

impl OidcSettings {
    /// The default timeout of a request to Azure AD.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);
    /// The default least interval between key fetches caused by an unknown key id.
    pub const DEFAULT_KEY_REFRESH: Duration = Duration::from_secs(60);

    /// The authority the OpenID configuration is fetched from, without a trailing slash.
    pub fn authority(&self) -> Option<String> {
        self.authority_url
            .as_deref()
            .or(self.cloud.authority())
            .map(|a| a.trim_end_matches('/').to_owned())
    }

    /// Where the OpenID configuration of the tenant is.
    pub fn discovery_url(&self) -> Option<String> {
        self.authority().map(|authority| {
            format!(
                "{authority}/{}/v2.0/.well-known/openid-configuration",
                self.tenant_id
            )
        })
    }

    /// Finds every problem; `Ok` when there is none.
    pub fn check(&self) -> Result<(), SettingsError> {
        let mut problems = Vec::new();
        let tenant = self.tenant_id.trim();
        if tenant.is_empty() {
            problems.push("tenant_id is empty: use the directory (tenant) id".to_owned());
        } else if MULTI_TENANT.contains(&tenant.to_ascii_lowercase().as_str()) {
            problems.push(format!(
                "tenant_id {tenant:?} admits users of any tenant; use your directory (tenant) id"
            ));
        } else if !tenant
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        {
            problems.push(format!(
                "tenant_id {tenant:?} is neither a tenant id (GUID) nor a domain name"
            ));
        }
        let client_id = self.client_id.trim();
        if self.cloud != Cloud::Custom && !is_guid(client_id) {
            problems.push(format!(
                "client_id {client_id:?} is not an application (client) id: Azure AD's are GUIDs"
            ));
        } else if client_id.is_empty() || client_id.contains(char::is_whitespace) {
            problems.push("client_id is empty or has spaces".to_owned());
        }
        match (&self.authority_url, self.cloud) {
            (None, Cloud::Custom) => problems
                .push("cloud \"custom\" needs authority_url (https://<host>[/path])".to_owned()),
            (Some(url), _) => {
                if let Err(problem) = check_https_url(url, "authority_url") {
                    problems.push(problem);
                } else if url.contains('?') || url.contains('#') {
                    problems.push(format!(
                        "authority_url {url:?} must have no query or fragment"
                    ));
                }
            }
            (None, _) => {}
        }
        if let Err(problem) = check_redirect_url(&self.redirect_url) {
            problems.push(problem);
        }
        if let ClientCredential::Secret(secret) = &self.credential
            && secret.0.trim().is_empty()
        {
            problems.push("client_secret is empty".to_owned());
        }
        if !self.roles.lists_anything() && self.roles.default_role.is_none() {
            problems.push(
                "[oidc.roles] grants no role: list groups or app_roles under admin, analyst or \
                 read_only, or set default_role"
                    .to_owned(),
            );
        }
        if self.timeout.is_zero() {
            problems.push("timeout_secs must be at least 1".to_owned());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(SettingsError { problems })
        }
    }
}

/// Whether `text` is a GUID in its usual 8-4-4-4-12 hexadecimal form.
pub fn is_guid(text: &str) -> bool {
    let parts: Vec<&str> = text.split('-').collect();
    parts.len() == 5
        && parts
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(part, len)| part.len() == len && part.chars().all(|c| c.is_ascii_hexdigit()))
}

fn check_https_url(url: &str, what: &str) -> Result<reqwest::Url, String> {
    let parsed =
        reqwest::Url::parse(url).map_err(|e| format!("{what} {url:?} is not a URL ({e})"))?;
    if parsed.scheme() != "https" {
        return Err(format!("{what} {url:?} must use https"));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(format!("{what} {url:?} has no host"));
    }
    Ok(parsed)
}

/// Azure AD accepts `http` redirect URIs only for the machine itself; everything else must
/// be `https`. The path must reach the API's callback.
fn check_redirect_url(url: &str) -> Result<(), String> {
    let parsed =
        reqwest::Url::parse(url).map_err(|e| format!("redirect_url {url:?} is not a URL ({e})"))?;
    let loopback = matches!(parsed.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
    match parsed.scheme() {
        "https" => {}
        "http" if loopback => {}
        _ => {
            return Err(format!(
                "redirect_url {url:?} must use https (http only on localhost)"
            ));
        }
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(format!(
            "redirect_url {url:?} must have no query or fragment"
        ));
    }
    if !parsed.path().ends_with(CALLBACK_PATH) {
        return Err(format!(
            "redirect_url {url:?} must end with {CALLBACK_PATH}, where the API takes the answer"
        ));
    }
    Ok(())
}

/// Settings for tests: the global cloud at an explicit authority, a secret, one admin group.
#[cfg(any(test, feature = "testing"))]
pub fn example(authority_url: &str, redirect_url: &str) -> OidcSettings {
    OidcSettings {
        cloud: Cloud::Global,
        authority_url: Some(authority_url.to_owned()),
        tenant_id: "72f988bf-0000-4000-8000-00000000c0de".to_owned(),
        client_id: "11111111-2222-4333-8444-555555555555".to_owned(),
        credential: ClientCredential::Secret(Secret("example-secret".into())),
        redirect_url: redirect_url.to_owned(),
        ca_pem: None,
        roles: RoleMapping {
            default_role: Some(pullback_domain::Role::ReadOnly),
            ..RoleMapping::default()
        },
        timeout: OidcSettings::DEFAULT_TIMEOUT,
        key_refresh_interval: OidcSettings::DEFAULT_KEY_REFRESH,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(change: impl FnOnce(&mut OidcSettings)) -> String {
        let mut settings = example(
            "https://login.example.test",
            "https://pullback.example.test/api/v1/oidc/callback",
        );
        change(&mut settings);
        match settings.check() {
            Ok(()) => "ok".to_owned(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn good_settings_pass_and_each_bad_one_is_named() {
        assert_eq!(problems(|_| {}), "ok");
        type Change = fn(&mut OidcSettings);
        let cases: [(&str, Change); 10] = [
            ("admits users of any tenant", |s| {
                s.tenant_id = "common".into()
            }),
            ("neither a tenant id", |s| s.tenant_id = "a/b".into()),
            ("client_id \"app\" is not", |s| s.client_id = "app".into()),
            ("needs authority_url", |s| {
                s.cloud = Cloud::Custom;
                s.authority_url = None;
            }),
            ("authority_url \"http://x\" must use https", |s| {
                s.authority_url = Some("http://x".into())
            }),
            ("must use https (http only on localhost)", |s| {
                s.redirect_url = "http://pullback.example.test/api/v1/oidc/callback".into()
            }),
            ("must end with /api/v1/oidc/callback", |s| {
                s.redirect_url = "https://pullback.example.test/".into()
            }),
            ("client_secret is empty", |s| {
                s.credential = ClientCredential::Secret(Secret(" ".into()))
            }),
            ("grants no role", |s| s.roles.default_role = None),
            ("timeout_secs", |s| s.timeout = Duration::ZERO),
        ];
        for (expected, change) in cases {
            let found = problems(change);
            assert!(found.contains(expected), "{expected:?} not in {found:?}");
        }
        // Loopback may use http, as Azure AD allows.
        assert_eq!(
            problems(|s| s.redirect_url = "http://127.0.0.1:8480/api/v1/oidc/callback".into()),
            "ok"
        );
    }

    #[test]
    fn the_discovery_url_follows_the_cloud_unless_an_authority_is_given() {
        let mut settings = example("https://idp.test/", "https://p.test/api/v1/oidc/callback");
        assert_eq!(
            settings.discovery_url().unwrap(),
            "https://idp.test/72f988bf-0000-4000-8000-00000000c0de/v2.0/.well-known/openid-configuration"
        );
        settings.authority_url = None;
        settings.cloud = Cloud::UsGov;
        assert!(
            settings
                .discovery_url()
                .unwrap()
                .starts_with("https://login.microsoftonline.us/72f988bf-")
        );
    }

    #[test]
    fn credentials_never_show_in_debug_output() {
        let settings = example("https://idp.test", "https://p.test/api/v1/oidc/callback");
        let shown = format!("{settings:?}");
        assert!(!shown.contains("example-secret"), "{shown}");
        let pem = include_bytes!("testing/keys/client.pem");
        let key = match PrivateKeyDer::from_pem_slice(pem).unwrap() {
            PrivateKeyDer::Pkcs8(der) => der.secret_pkcs8_der().to_vec(),
            _ => unreachable!("the fixture is PKCS#8"),
        };
        let credential = ClientCredential::Certificate {
            certificate_der: vec![1, 2, 3],
            key: PrivateKey {
                der: key.clone(),
                pkcs8: true,
            },
        };
        let shown = format!("{credential:?}");
        assert!(!shown.contains(&format!("{:?}", &key[..8])), "{shown}");
        assert!(shown.contains("sha256"), "{shown}");
        assert!(is_guid("72f988bf-86f1-41af-91ab-2d7cd011db47"));
        assert!(!is_guid("72f988bf-86f1-41af-91ab-2d7cd011db4"));
    }
}

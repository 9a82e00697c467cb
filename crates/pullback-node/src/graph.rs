//! The `type = "graph"` mailbox backend: Exchange Online through Microsoft Graph, configured
//! by cloud, tenant and application, with a client secret or a certificate.

use crate::config::SecretRef;
use pullback_graph::{
    AssertionAlgorithm, CertificateCredential, Credential, Endpoints, GraphBackend, GraphClient,
    GraphConfig, Limits, NationalCloud,
};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// An Exchange Online tenant reached through Graph with application permissions
/// (`Mail.ReadWrite`). See `docs/microsoft365.md`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraphMailboxConfig {
    /// `global`, `us_gov` (GCC High), `us_gov_dod`, `china` (21Vianet) or `custom`.
    #[serde(default)]
    pub cloud: NationalCloud,
    /// The tenant's id (a GUID) or one of its verified domains.
    pub tenant_id: String,
    /// The application (client) id of the app registration.
    pub client_id: String,
    /// The application's client secret; give this or `certificate`.
    #[serde(default)]
    pub client_secret: Option<SecretRef>,
    /// A certificate registered with the application; give this or `client_secret`.
    #[serde(default)]
    pub certificate: Option<GraphCertificateConfig>,
    /// The sign-in authority's root, replacing the cloud's (required for `custom`).
    #[serde(default)]
    pub authority_url: Option<String>,
    /// Graph's root, replacing the cloud's (required for `custom`).
    #[serde(default)]
    pub graph_url: Option<String>,
    /// PEM certificates to trust instead of the public roots (a TLS-inspecting proxy).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// The longest wait for one answer.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// Requests in flight on one mailbox at once; Exchange Online allows 4.
    #[serde(default = "default_concurrent")]
    pub max_concurrent_per_mailbox: u32,
    /// Requests to one mailbox in any `window_secs`; Exchange Online allows 10,000 in 600 s.
    #[serde(default = "default_requests")]
    pub requests_per_window: u32,
    #[serde(default = "default_window_secs")]
    pub window_secs: u64,
    /// How long one request may wait on throttling in all before the recipient fails.
    #[serde(default = "default_max_throttled_secs")]
    pub max_throttled_secs: u64,
}

/// A certificate credential: the certificate registered with the application and its RSA
/// private key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraphCertificateConfig {
    /// The certificate, PEM.
    pub cert_file: PathBuf,
    /// The private key, PEM (PKCS#8 or PKCS#1), usually `{ file = "..." }`.
    pub key: SecretRef,
    /// `PS256` (Microsoft's current advice) or `RS256`.
    #[serde(default)]
    pub algorithm: AssertionAlgorithm,
}

fn default_timeout_secs() -> u64 {
    30
}
fn default_concurrent() -> u32 {
    4
}
fn default_requests() -> u32 {
    10_000
}
fn default_window_secs() -> u64 {
    600
}
fn default_max_throttled_secs() -> u64 {
    3600
}

impl GraphMailboxConfig {
    /// Every problem with this backend's settings, each naming the backend.
    pub fn problems(&self, name: &str) -> Vec<String> {
        let mut problems = Vec::new();
        if let Err(e) = self.endpoints() {
            problems.push(format!("mailbox backend {name:?}: {e}"));
        }
        for (field, value) in [
            ("tenant_id", &self.tenant_id),
            ("client_id", &self.client_id),
        ] {
            if value.trim().is_empty() {
                problems.push(format!("mailbox backend {name:?}: {field} is empty"));
            }
        }
        if self.max_concurrent_per_mailbox == 0
            || self.requests_per_window == 0
            || self.window_secs == 0
        {
            problems.push(format!(
                "mailbox backend {name:?}: max_concurrent_per_mailbox, requests_per_window and \
                 window_secs must be above zero"
            ));
        }
        if let Err(problem) = self.credential(name) {
            problems.push(problem);
        }
        if let Some(path) = &self.ca_file
            && let Err(problem) = read_file(path, name, "ca_file")
        {
            problems.push(problem);
        }
        problems
    }

    /// The backend these settings describe, its secrets read.
    pub fn backend(&self, name: &str) -> Result<GraphBackend, String> {
        let endpoints = self
            .endpoints()
            .map_err(|e| format!("mailbox backend {name:?}: {e}"))?;
        let credential = self.credential(name)?;
        let mut config = GraphConfig::new(endpoints, &self.tenant_id, &self.client_id, credential);
        if let Some(path) = &self.ca_file {
            config.ca_pem = Some(read_file(path, name, "ca_file")?);
        }
        config.timeout = Duration::from_secs(self.timeout_secs.max(1));
        config.limits = Limits {
            concurrent: self.max_concurrent_per_mailbox.max(1),
            requests: self.requests_per_window.max(1),
            window: Duration::from_secs(self.window_secs.max(1)),
        };
        config.max_throttled = Duration::from_secs(self.max_throttled_secs);
        let client =
            GraphClient::new(config).map_err(|e| format!("mailbox backend {name:?}: {e}"))?;
        Ok(GraphBackend::new(Arc::new(client)))
    }

    fn endpoints(&self) -> Result<Endpoints, pullback_graph::EndpointError> {
        Endpoints::resolve(
            self.cloud,
            self.authority_url.as_deref(),
            self.graph_url.as_deref(),
        )
    }

    fn credential(&self, name: &str) -> Result<Credential, String> {
        match (&self.client_secret, &self.certificate) {
            (Some(secret), None) => {
                let what = format!("mailbox backend {name:?} client_secret");
                Ok(Credential::Secret(secret.resolve(&what)?))
            }
            (None, Some(cert)) => {
                let pem = read_file(&cert.cert_file, name, "certificate.cert_file")?;
                let key = cert
                    .key
                    .resolve(&format!("mailbox backend {name:?} certificate key"))?;
                CertificateCredential::from_pem(&pem, key.as_bytes(), cert.algorithm)
                    .map(Credential::Certificate)
                    .map_err(|e| format!("mailbox backend {name:?} certificate: {e}"))
            }
            (None, None) => Err(format!(
                "mailbox backend {name:?}: give client_secret or certificate"
            )),
            (Some(_), Some(_)) => Err(format!(
                "mailbox backend {name:?}: give client_secret or certificate, not both"
            )),
        }
    }
}

fn read_file(path: &Path, name: &str, field: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| {
        format!(
            "mailbox backend {name:?}: cannot read {field} {}: {e}",
            path.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> GraphMailboxConfig {
        toml::from_str(text).expect("a valid graph section")
    }

    #[test]
    fn problems_name_the_backend_and_the_field() {
        let config = parse(
            "cloud = \"custom\"\ntenant_id = \"\"\nclient_id = \"app\"\nrequests_per_window = 0",
        );
        let problems = config.problems("exo").join("\n");
        for expected in [
            "\"exo\": cloud \"custom\" needs both authority_url and graph_url",
            "\"exo\": tenant_id is empty",
            "must be above zero",
            "\"exo\": give client_secret or certificate",
        ] {
            assert!(
                problems.contains(expected),
                "{expected} missing from:\n{problems}"
            );
        }
    }

    #[test]
    fn a_graph_mailbox_reads_from_the_configuration_file() {
        let text = "[node]\ndata_dir = \"/tmp/x\"\nlisten = \"127.0.0.1:0\"\n\n\
            [[mailboxes]]\nname = \"exo\"\ntype = \"graph\"\ndomains = [\"contoso.com\"]\n\
            tenant_id = \"t\"\nclient_id = \"c\"\nclient_secret = { env = \"PULLBACK_TEST_UNSET\" }\n";
        let config: crate::config::Config = toml::from_str(text).expect("a configuration");
        let problems = config.problems().join("\n");
        assert!(
            problems.contains("PULLBACK_TEST_UNSET is not set"),
            "{problems}"
        );
        let typo = text.replace("client_id", "client_ld");
        assert!(toml::from_str::<crate::config::Config>(&typo).is_err());
    }

    #[test]
    fn a_complete_configuration_builds_a_backend_without_contacting_anyone() {
        let config = parse(
            "cloud = \"us_gov\"\ntenant_id = \"contoso.onmicrosoft.us\"\nclient_id = \"app\"\n\
             client_secret = { value = \"not-shown\" }",
        );
        assert!(
            config.problems("exo").is_empty(),
            "{:?}",
            config.problems("exo")
        );
        let backend = config.backend("exo").expect("a backend");
        let endpoints = &backend.client().config().endpoints;
        assert_eq!(endpoints.scope(), "https://graph.microsoft.us/.default");
        assert!(!format!("{backend:?}").contains("not-shown"));
    }
}

//! National clouds: where a tenant signs its applications in, where its Graph is, and which
//! resource a token must be asked for.
//!
//! Microsoft runs separate, unconnected instances of Azure AD and Graph for governments and
//! for China. A token from one is worthless at another, so the authority, the Graph host and
//! the scope all follow one setting. The hosts below are configuration values only: nothing
//! in this crate contacts them unless a deployment is configured for that cloud.

use serde::Deserialize;
use std::fmt;

/// A Microsoft national cloud, or a deployment with explicit endpoints.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NationalCloud {
    /// The worldwide service (Microsoft 365 commercial and GCC).
    #[default]
    Global,
    /// US Government GCC High.
    UsGov,
    /// US Government DoD.
    UsGovDod,
    /// Microsoft 365 operated by 21Vianet in China.
    China,
    /// Anything else: both `authority_url` and `graph_url` must be given.
    Custom,
}

impl NationalCloud {
    /// Every named cloud, for documentation and tests.
    pub const NAMED: [NationalCloud; 4] = [
        NationalCloud::Global,
        NationalCloud::UsGov,
        NationalCloud::UsGovDod,
        NationalCloud::China,
    ];

    /// The sign-in authority's root, without a tenant; `None` for [`NationalCloud::Custom`].
    pub fn authority(self) -> Option<&'static str> {
        match self {
            NationalCloud::Global => Some("https://login.microsoftonline.com"),
            NationalCloud::UsGov | NationalCloud::UsGovDod => {
                Some("https://login.microsoftonline.us")
            }
            NationalCloud::China => Some("https://login.chinacloudapi.cn"),
            NationalCloud::Custom => None,
        }
    }

    /// Graph's root, without a version; `None` for [`NationalCloud::Custom`].
    ///
    /// It is also the resource a token is asked for: `<graph>/.default`.
    pub fn graph(self) -> Option<&'static str> {
        match self {
            NationalCloud::Global => Some("https://graph.microsoft.com"),
            NationalCloud::UsGov => Some("https://graph.microsoft.us"),
            NationalCloud::UsGovDod => Some("https://dod-graph.microsoft.us"),
            NationalCloud::China => Some("https://microsoftgraph.chinacloudapi.cn"),
            NationalCloud::Custom => None,
        }
    }

    /// The name used in configuration files.
    pub fn as_str(self) -> &'static str {
        match self {
            NationalCloud::Global => "global",
            NationalCloud::UsGov => "us_gov",
            NationalCloud::UsGovDod => "us_gov_dod",
            NationalCloud::China => "china",
            NationalCloud::Custom => "custom",
        }
    }
}

impl fmt::Display for NationalCloud {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The three addresses one deployment uses, resolved from the cloud and any overrides.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoints {
    /// The authority's root, such as `https://login.microsoftonline.us` (no tenant, no `/`).
    pub authority: String,
    /// Graph's root, such as `https://graph.microsoft.us` (no version, no `/`).
    pub graph: String,
    /// The resource tokens are asked for, such as `https://graph.microsoft.us`. It stays the
    /// cloud's own Graph when only the address is overridden (a proxy, or a local Graph in
    /// tests), because the audience of a token does not change with the route to Graph.
    pub resource: String,
}

/// Why endpoints could not be resolved.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    #[error("cloud \"custom\" needs both authority_url and graph_url")]
    CustomNeedsUrls,
    #[error("{field} {value:?} must be an https:// URL without a query")]
    NotHttps { field: &'static str, value: String },
}

impl Endpoints {
    /// The endpoints of `cloud`, with `authority_url` and `graph_url` replacing its hosts when
    /// given. Both must be `https://` URLs.
    pub fn resolve(
        cloud: NationalCloud,
        authority_url: Option<&str>,
        graph_url: Option<&str>,
    ) -> Result<Endpoints, EndpointError> {
        let authority = match (authority_url, cloud.authority()) {
            (Some(url), _) => checked("authority_url", url)?,
            (None, Some(default)) => default.to_owned(),
            (None, None) => return Err(EndpointError::CustomNeedsUrls),
        };
        let graph = match (graph_url, cloud.graph()) {
            (Some(url), _) => checked("graph_url", url)?,
            (None, Some(default)) => default.to_owned(),
            (None, None) => return Err(EndpointError::CustomNeedsUrls),
        };
        let resource = cloud.graph().map_or_else(|| graph.clone(), str::to_owned);
        Ok(Endpoints {
            authority,
            graph,
            resource,
        })
    }

    /// The v2.0 token endpoint of `tenant`.
    pub fn token_url(&self, tenant: &str) -> String {
        format!("{}/{tenant}/oauth2/v2.0/token", self.authority)
    }

    /// The scope of an application token for Graph: every application permission granted.
    pub fn scope(&self) -> String {
        format!("{}/.default", self.resource)
    }

    /// The root of Graph's v1.0 API.
    pub fn api_root(&self) -> String {
        format!("{}/v1.0", self.graph)
    }
}

/// An `https://` URL without query or fragment, without its trailing `/`.
fn checked(field: &'static str, value: &str) -> Result<String, EndpointError> {
    let url = value.trim().trim_end_matches('/');
    let valid = url.len() > "https://".len()
        && url[..8].eq_ignore_ascii_case("https://")
        && !url.contains(['?', '#', ' ']);
    if !valid {
        return Err(EndpointError::NotHttps {
            field,
            value: value.to_owned(),
        });
    }
    Ok(url.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(cloud: NationalCloud, authority: &str, graph: &str) {
        let endpoints = Endpoints::resolve(cloud, None, None).expect("a named cloud");
        assert_eq!(endpoints.authority, authority, "{cloud}");
        assert_eq!(endpoints.graph, graph, "{cloud}");
        assert_eq!(endpoints.scope(), format!("{graph}/.default"), "{cloud}");
    }

    #[test]
    fn each_cloud_has_its_own_authority_and_graph() {
        let global = (
            "https://login.microsoftonline.com",
            "https://graph.microsoft.com",
        );
        check(NationalCloud::Global, global.0, global.1);
        let us = "https://login.microsoftonline.us";
        check(NationalCloud::UsGov, us, "https://graph.microsoft.us");
        check(
            NationalCloud::UsGovDod,
            us,
            "https://dod-graph.microsoft.us",
        );
        let cn = "https://login.chinacloudapi.cn";
        check(
            NationalCloud::China,
            cn,
            "https://microsoftgraph.chinacloudapi.cn",
        );
    }

    #[test]
    fn overridden_addresses_keep_the_cloud_resource() {
        let local = "https://127.0.0.1:8443/";
        let endpoints = Endpoints::resolve(NationalCloud::UsGovDod, Some(local), Some(local))
            .expect("valid overrides");
        assert_eq!(endpoints.authority, "https://127.0.0.1:8443");
        assert_eq!(endpoints.api_root(), "https://127.0.0.1:8443/v1.0");
        assert_eq!(endpoints.scope(), "https://dod-graph.microsoft.us/.default");
        assert_eq!(
            endpoints.token_url("contoso.onmicrosoft.us"),
            "https://127.0.0.1:8443/contoso.onmicrosoft.us/oauth2/v2.0/token"
        );
    }

    #[test]
    fn custom_needs_both_urls_and_https() {
        let err = Endpoints::resolve(NationalCloud::Custom, Some("https://login.example"), None);
        assert_eq!(err, Err(EndpointError::CustomNeedsUrls));
        let custom = Endpoints::resolve(
            NationalCloud::Custom,
            Some("https://login.example"),
            Some("https://graph.example"),
        )
        .expect("both given");
        assert_eq!(custom.scope(), "https://graph.example/.default");
        let plain = Endpoints::resolve(NationalCloud::Global, Some("http://login.example"), None);
        assert!(
            matches!(plain, Err(EndpointError::NotHttps { .. })),
            "{plain:?}"
        );
    }
}

//! The tenant's OpenID configuration (`<authority>/<tenant>/v2.0/.well-known/openid-configuration`)
//! and the checks that it is the tenant's, in the configured cloud.
//!
//! The issuer it names is the one every ID token must carry. It is accepted only in the
//! per-tenant v2.0 form, `https://<issuer host>/<tenant id>/v2.0`, with a host of the
//! configured cloud (or the explicit authority for a custom one) and the configured tenant:
//! a configuration of another cloud or tenant, or a multi-tenant one, is refused before
//! anyone signs in with it.

use crate::cloud::Cloud;
use crate::settings::{OidcSettings, is_guid};
use serde::Deserialize;

/// The fields of the OpenID configuration that the sign-in uses.
#[derive(Clone, Debug, Deserialize)]
pub struct ProviderMetadata {
    /// The issuer ID tokens carry.
    pub issuer: String,
    /// Where the browser is sent to sign in.
    pub authorization_endpoint: String,
    /// Where the code is exchanged for tokens.
    pub token_endpoint: String,
    /// The signing keys.
    pub jwks_uri: String,
    /// The algorithms ID tokens may be signed with.
    #[serde(default)]
    pub id_token_signing_alg_values_supported: Vec<String>,
}

/// The tenant as its configuration names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tenant {
    /// The issuer every ID token must carry exactly.
    pub issuer: String,
    /// The tenant id (GUID) in the issuer, which `tid` must carry.
    pub id: String,
}

/// Reads the configuration and checks it against the settings.
pub fn read(json: &[u8], settings: &OidcSettings) -> Result<(ProviderMetadata, Tenant), String> {
    let metadata: ProviderMetadata = serde_json::from_slice(json)
        .map_err(|e| format!("the OpenID configuration does not read: {e}"))?;
    let tenant = check(&metadata, settings)?;
    Ok((metadata, tenant))
}

/// Checks the endpoints and the issuer; answers the tenant.
pub fn check(metadata: &ProviderMetadata, settings: &OidcSettings) -> Result<Tenant, String> {
    for (name, url) in [
        ("authorization_endpoint", &metadata.authorization_endpoint),
        ("token_endpoint", &metadata.token_endpoint),
        ("jwks_uri", &metadata.jwks_uri),
    ] {
        let parsed = reqwest::Url::parse(url)
            .map_err(|e| format!("the OpenID configuration's {name} {url:?} is not a URL: {e}"))?;
        if parsed.scheme() != "https" {
            return Err(format!(
                "the OpenID configuration's {name} {url:?} does not use https"
            ));
        }
    }
    let algorithms = &metadata.id_token_signing_alg_values_supported;
    if !algorithms.is_empty() && !algorithms.iter().any(|a| a == "RS256") {
        return Err(format!(
            "the OpenID configuration signs ID tokens with {algorithms:?}, not RS256"
        ));
    }
    let id = issuer_tenant(&metadata.issuer, settings)?;
    let configured = settings.tenant_id.trim();
    if is_guid(configured) && !configured.eq_ignore_ascii_case(&id) {
        return Err(format!(
            "the OpenID configuration is tenant {id}'s, not tenant {configured}'s"
        ));
    }
    Ok(Tenant {
        issuer: metadata.issuer.clone(),
        id,
    })
}

/// The tenant id in an issuer of the v2.0 per-tenant form, with a host of the cloud.
fn issuer_tenant(issuer: &str, settings: &OidcSettings) -> Result<String, String> {
    let wrong = |why: String| {
        Err(format!(
            "the OpenID configuration names the issuer {issuer:?}, {why}"
        ))
    };
    if issuer.contains("{tenantid}") {
        return wrong("which stands for any tenant; configure your own tenant id".into());
    }
    let Some(rest) = issuer.strip_suffix("/v2.0") else {
        return wrong("not a v2.0 issuer (…/<tenant id>/v2.0)".into());
    };
    let Some((base, tenant)) = rest.rsplit_once('/') else {
        return wrong("with no tenant id".into());
    };
    if !is_guid(tenant) {
        return wrong(format!("whose tenant part {tenant:?} is not a tenant id"));
    }
    let allowed: Vec<String> = match settings.cloud {
        Cloud::Custom => settings.authority().into_iter().collect(),
        cloud => cloud
            .issuer_hosts()
            .iter()
            .map(|host| format!("https://{host}"))
            .collect(),
    };
    if !allowed.iter().any(|a| a == base) {
        return wrong(format!(
            "which is not of the {} cloud (expected {})",
            settings.cloud,
            allowed
                .iter()
                .map(|a| format!("{a}/<tenant id>/v2.0"))
                .collect::<Vec<_>>()
                .join(" or ")
        ));
    }
    Ok(tenant.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::example;

    const TENANT: &str = "72f988bf-0000-4000-8000-00000000c0de";

    fn metadata(issuer: &str) -> ProviderMetadata {
        ProviderMetadata {
            issuer: issuer.to_owned(),
            authorization_endpoint: "https://idp.test/t/oauth2/v2.0/authorize".into(),
            token_endpoint: "https://idp.test/t/oauth2/v2.0/token".into(),
            jwks_uri: "https://idp.test/t/discovery/v2.0/keys".into(),
            id_token_signing_alg_values_supported: vec!["RS256".into()],
        }
    }

    fn check_in(cloud: Cloud, tenant: &str, metadata: &ProviderMetadata) -> Result<Tenant, String> {
        let mut settings = example(
            "https://idp.test/root",
            "https://p.test/api/v1/oidc/callback",
        );
        settings.cloud = cloud;
        settings.tenant_id = tenant.to_owned();
        check(metadata, &settings)
    }

    #[test]
    fn each_cloud_accepts_its_own_issuer_only() {
        let issuer = |host: &str| format!("https://{host}/{TENANT}/v2.0");
        let table = [
            (Cloud::Global, "login.microsoftonline.com", true),
            (Cloud::Global, "login.microsoftonline.us", false),
            (Cloud::UsGov, "login.microsoftonline.us", true),
            (Cloud::UsGov, "login.microsoftonline.com", false),
            (Cloud::China, "login.partner.microsoftonline.cn", true),
            (Cloud::China, "login.chinacloudapi.cn", true),
            (Cloud::China, "login.microsoftonline.com", false),
            (Cloud::Custom, "idp.test/root", true),
            (Cloud::Custom, "idp.test", false),
        ];
        for (cloud, host, accepted) in table {
            let found = check_in(cloud, TENANT, &metadata(&issuer(host)));
            assert_eq!(found.is_ok(), accepted, "{cloud} {host}: {found:?}");
            if let Err(e) = found {
                assert!(e.contains("is not of the"), "{e}");
            }
        }
    }

    #[test]
    fn the_tenant_must_be_the_configured_one_in_the_v2_form() {
        let good = format!("https://login.microsoftonline.com/{TENANT}/v2.0");
        // A domain name as the tenant takes the id from the issuer.
        let tenant = check_in(Cloud::Global, "contoso.onmicrosoft.com", &metadata(&good)).unwrap();
        assert_eq!(tenant.id, TENANT);
        assert_eq!(tenant.issuer, good);
        for (issuer, configured, expected) in [
            (
                good.as_str(),
                "f8cdef31-a31e-4b4a-93e4-5f571e91255a",
                "not tenant f8cdef31",
            ),
            (
                "https://login.microsoftonline.com/{tenantid}/v2.0",
                TENANT,
                "stands for any tenant",
            ),
            (
                "https://sts.windows.net/72f988bf-0000-4000-8000-00000000c0de/",
                TENANT,
                "not a v2.0 issuer",
            ),
            (
                "https://login.microsoftonline.com/contoso/v2.0",
                TENANT,
                "is not a tenant id",
            ),
        ] {
            let refused = check_in(Cloud::Global, configured, &metadata(issuer)).unwrap_err();
            assert!(refused.contains(expected), "{issuer}: {refused}");
        }
    }

    #[test]
    fn endpoints_must_use_https_and_tokens_rs256() {
        let good = format!("https://login.microsoftonline.com/{TENANT}/v2.0");
        let mut plain = metadata(&good);
        plain.token_endpoint = "http://idp.test/token".into();
        let refused = check_in(Cloud::Global, TENANT, &plain).unwrap_err();
        assert!(refused.contains("token_endpoint"), "{refused}");
        let mut hs = metadata(&good);
        hs.id_token_signing_alg_values_supported = vec!["HS256".into()];
        let refused = check_in(Cloud::Global, TENANT, &hs).unwrap_err();
        assert!(refused.contains("not RS256"), "{refused}");
        let refused = read(
            b"{\"issuer\": 1}",
            &example("https://i.test", "https://p.test/api/v1/oidc/callback"),
        )
        .unwrap_err();
        assert!(refused.contains("does not read"), "{refused}");
    }
}

//! The Azure AD clouds. Each is a separate instance with its own sign-in host, and the ID
//! tokens it issues name its own issuer host, which is not always the sign-in host (the China
//! cloud signs in at `login.chinacloudapi.cn` and issues as `login.partner.microsoftonline.cn`).
//!
//! This table is the only place these host names are written: everything else gets them from
//! here or from the configured `authority_url`.

use serde::{Deserialize, Serialize};

/// Which Azure AD instance the tenant lives in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cloud {
    /// Microsoft Entra ID, the global service.
    #[default]
    Global,
    /// Azure Government: GCC High and DoD tenants.
    UsGov,
    /// Microsoft Azure operated by 21Vianet.
    China,
    /// Any other authority, given as `authority_url`; its tokens must name that authority
    /// as their issuer host.
    Custom,
}

/// Every cloud with a built-in authority, for documentation and tests.
pub const KNOWN_CLOUDS: [Cloud; 3] = [Cloud::Global, Cloud::UsGov, Cloud::China];

impl Cloud {
    /// The setting's spelling: `global`, `us_gov`, `china` or `custom`.
    pub fn as_str(self) -> &'static str {
        match self {
            Cloud::Global => "global",
            Cloud::UsGov => "us_gov",
            Cloud::China => "china",
            Cloud::Custom => "custom",
        }
    }

    /// Where users sign in and the OpenID configuration is published, unless `authority_url`
    /// says otherwise. `None` for [`Cloud::Custom`], which needs `authority_url`.
    pub fn authority(self) -> Option<&'static str> {
        match self {
            Cloud::Global => Some("https://login.microsoftonline.com"),
            Cloud::UsGov => Some("https://login.microsoftonline.us"),
            Cloud::China => Some("https://login.chinacloudapi.cn"),
            Cloud::Custom => None,
        }
    }

    /// The hosts this cloud's v2.0 ID tokens may name in `iss`
    /// (`https://<host>/<tenant id>/v2.0`). Empty for [`Cloud::Custom`], whose issuer is
    /// its authority.
    pub fn issuer_hosts(self) -> &'static [&'static str] {
        match self {
            Cloud::Global => &["login.microsoftonline.com"],
            Cloud::UsGov => &["login.microsoftonline.us"],
            // The documented issuer; the sign-in host is accepted too, as older tenants'
            // configurations name it.
            Cloud::China => &["login.partner.microsoftonline.cn", "login.chinacloudapi.cn"],
            Cloud::Custom => &[],
        }
    }

    /// The Azure portal where the application is registered, for messages and documentation.
    pub fn portal(self) -> Option<&'static str> {
        match self {
            Cloud::Global => Some("https://portal.azure.com"),
            Cloud::UsGov => Some("https://portal.azure.us"),
            Cloud::China => Some("https://portal.azure.cn"),
            Cloud::Custom => None,
        }
    }
}

impl std::fmt::Display for Cloud {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_cloud_has_an_https_authority_and_an_issuer_host() {
        for cloud in KNOWN_CLOUDS {
            let authority = cloud.authority().expect("a built-in authority");
            assert!(authority.starts_with("https://"), "{cloud}: {authority}");
            assert!(!cloud.issuer_hosts().is_empty(), "{cloud}");
        }
        assert_eq!(Cloud::Custom.authority(), None);
        // The national clouds never share a host with the global one.
        let global = Cloud::Global.issuer_hosts()[0];
        for cloud in [Cloud::UsGov, Cloud::China] {
            assert!(!cloud.issuer_hosts().contains(&global), "{cloud}");
        }
    }

    #[test]
    fn settings_spell_clouds_in_snake_case() {
        #[derive(Deserialize)]
        struct Holder {
            cloud: Cloud,
        }
        for cloud in [Cloud::Global, Cloud::UsGov, Cloud::China, Cloud::Custom] {
            let text = format!("cloud = \"{}\"", cloud.as_str());
            let holder: Holder = toml::from_str(&text).unwrap();
            assert_eq!(holder.cloud, cloud);
        }
        assert!(toml::from_str::<Holder>("cloud = \"germany\"").is_err());
    }
}

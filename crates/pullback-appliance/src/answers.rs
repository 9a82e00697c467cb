//! First-boot answers: what the wizard asks, or what a config disk or cloud user data says
//! (`pullback-firstboot.toml`), checked before anything is set up, and turned into the
//! node's configuration and system settings.
//!
//! ```toml
//! hostname = "pb1"
//! [network]                 # or mode = "dhcp" (the default)
//! mode = "static"
//! address = "10.0.0.5/24"
//! gateway = "10.0.0.1"
//! dns = ["10.0.0.2"]
//! [time]
//! ntp = ["ntp1.corp.example"]
//! [admin]
//! password = "a long passphrase"
//! [tls]                     # optional: the API's certificate; the cluster's otherwise
//! cert_file = "api.crt"     # next to this file
//! key_file = "api.key"
//! [cluster]
//! mode = "new"              # or "join", with peer and join_token
//! node_id = 1
//! ```

use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::IpAddr;

/// The port the API and web UI listen on.
pub const API_PORT: u16 = 443;
/// The port nodes talk Raft on.
pub const RAFT_PORT: u16 = 8481;

/// A password or token: never shown by `Debug`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(transparent)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<hidden>")
    }
}

/// Every answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Answers {
    /// The node's host name.
    pub hostname: String,
    /// Its network.
    #[serde(default)]
    pub network: Network,
    /// Its time servers.
    #[serde(default)]
    pub time: Time,
    /// The administrator.
    pub admin: Admin,
    /// The API's own certificate; without it the node serves its cluster certificate.
    #[serde(default)]
    pub tls: Option<Tls>,
    /// New cluster or join.
    pub cluster: Cluster,
    /// API keys to create (for automation), as `pullback api-key` prints them.
    #[serde(default)]
    pub api_keys: Vec<ApiKey>,
}

/// DHCP or a static address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    /// Everything from DHCP.
    #[default]
    Dhcp,
    /// The address below.
    Static,
}

/// The network settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// DHCP or static.
    #[serde(default)]
    pub mode: NetworkMode,
    /// Address with prefix length, e.g. `10.0.0.5/24` (static).
    #[serde(default)]
    pub address: Option<String>,
    /// The default gateway (static).
    #[serde(default)]
    pub gateway: Option<String>,
    /// DNS servers; with DHCP they replace the offered ones when given.
    #[serde(default)]
    pub dns: Vec<String>,
}

/// Time servers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Time {
    /// NTP servers; empty keeps Debian's pool.
    #[serde(default)]
    pub ntp: Vec<String>,
}

/// The administrator's password: the web UI's `admin` account and the console's `root`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Admin {
    /// At least 12 characters.
    pub password: Secret,
}

/// Certificate and key files (PEM), relative to the answers file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    /// The certificate chain.
    pub cert_file: String,
    /// Its private key.
    pub key_file: String,
}

/// Start a cluster or join one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClusterMode {
    /// This node creates the cluster.
    New,
    /// This node joins a member with a token.
    Join,
}

/// The cluster answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cluster {
    /// New or join.
    pub mode: ClusterMode,
    /// This node's id, unique in the cluster.
    #[serde(default = "one")]
    pub node_id: u64,
    /// A member's API URL (join), e.g. `https://10.0.0.1`.
    #[serde(default)]
    pub peer: Option<String>,
    /// The join token from `pullback cluster token` (join).
    #[serde(default)]
    pub join_token: Option<Secret>,
    /// The name or address peers reach this node by; its first address otherwise.
    #[serde(default)]
    pub advertise: Option<String>,
}

fn one() -> u64 {
    1
}

/// An API key entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKey {
    /// Its name.
    pub name: String,
    /// admin, analyst or read_only.
    pub role: String,
    /// SHA-256 of the key, hex.
    pub sha256: String,
}

/// Whether `name` is a host name: labels of letters, digits and inner hyphens.
pub fn valid_hostname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// Checks an address with a prefix length, `10.0.0.5/24` or `fd00::5/64`.
pub fn check_cidr(text: &str) -> Result<(), String> {
    let (address, prefix) = text
        .split_once('/')
        .ok_or_else(|| format!("{text:?} has no prefix length (like 10.0.0.5/24)"))?;
    let address: IpAddr = address
        .parse()
        .map_err(|_| format!("{address:?} is not an IP address"))?;
    let max = if address.is_ipv4() { 32 } else { 128 };
    match prefix.parse::<u8>() {
        Ok(p) if (1..=max).contains(&p) => Ok(()),
        _ => Err(format!("{prefix:?} is not a prefix length from 1 to {max}")),
    }
}

/// Checks a password's length.
pub fn check_password(password: &str) -> Result<(), String> {
    if password.chars().count() < 12 {
        return Err("the password needs at least 12 characters".into());
    }
    Ok(())
}

impl Answers {
    /// Parses `pullback-firstboot.toml`.
    pub fn parse(text: &str) -> Result<Answers, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// Every problem, each naming its field; empty when the answers can be used.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !valid_hostname(&self.hostname) {
            problems.push(format!("hostname: {:?} is not a host name", self.hostname));
        }
        let net = &self.network;
        match net.mode {
            NetworkMode::Static => match &net.address {
                None => problems.push("network.address: a static network needs one".into()),
                Some(address) => {
                    if let Err(e) = check_cidr(address) {
                        problems.push(format!("network.address: {e}"));
                    }
                }
            },
            NetworkMode::Dhcp if net.address.is_some() || net.gateway.is_some() => {
                problems.push("network: address and gateway need mode = \"static\"".into());
            }
            NetworkMode::Dhcp => {}
        }
        for (field, value) in net
            .gateway
            .iter()
            .map(|g| ("gateway", g))
            .chain(net.dns.iter().map(|d| ("dns", d)))
        {
            if value.parse::<IpAddr>().is_err() {
                problems.push(format!("network.{field}: {value:?} is not an IP address"));
            }
        }
        for server in &self.time.ntp {
            if !valid_hostname(server) && server.parse::<IpAddr>().is_err() {
                problems.push(format!(
                    "time.ntp: {server:?} is not a host name or address"
                ));
            }
        }
        if let Err(e) = check_password(&self.admin.password.0) {
            problems.push(format!("admin.password: {e}"));
        }
        if let Some(tls) = &self.tls {
            for (field, file) in [("cert_file", &tls.cert_file), ("key_file", &tls.key_file)] {
                if file.is_empty() || file.contains("..") || file.starts_with('/') {
                    problems.push(format!(
                        "tls.{field}: {file:?} must name a file next to the answers"
                    ));
                }
            }
        }
        problems.extend(self.cluster_problems());
        for key in &self.api_keys {
            if !matches!(key.role.as_str(), "admin" | "analyst" | "read_only") {
                problems.push(format!(
                    "api_keys {:?}: role {:?} is unknown",
                    key.name, key.role
                ));
            }
            if key.sha256.len() != 64 || !key.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                problems.push(format!(
                    "api_keys {:?}: sha256 is not 64 hex digits",
                    key.name
                ));
            }
        }
        problems
    }

    fn cluster_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let cluster = &self.cluster;
        if cluster.node_id == 0 {
            problems.push("cluster.node_id: must be at least 1".into());
        }
        match cluster.mode {
            ClusterMode::New => {
                if cluster.peer.is_some() || cluster.join_token.is_some() {
                    problems.push("cluster: peer and join_token are for mode = \"join\"".into());
                }
            }
            ClusterMode::Join => {
                match &cluster.peer {
                    Some(peer) if peer.starts_with("https://") => {}
                    Some(peer) => problems.push(format!(
                        "cluster.peer: {peer:?} must be a member's https:// URL"
                    )),
                    None => problems.push("cluster.peer: joining needs a member's URL".into()),
                }
                if cluster
                    .join_token
                    .as_ref()
                    .is_none_or(|t| !t.0.starts_with("pbj1."))
                {
                    problems.push(
                        "cluster.join_token: joining needs a token from `pullback cluster token`"
                            .into(),
                    );
                }
            }
        }
        if let Some(advertise) = &cluster.advertise
            && !valid_hostname(advertise)
            && advertise.parse::<IpAddr>().is_err()
        {
            problems.push(format!(
                "cluster.advertise: {advertise:?} is not a host name or address"
            ));
        }
        problems
    }

    /// The node's configuration file. `host` is the name or address peers reach the node
    /// by; `admin_hash` the argon2 hash of the administrator's password.
    pub fn node_config(&self, host: &str, admin_hash: &str) -> String {
        let host_port = |port: u16| match host.parse::<IpAddr>() {
            Ok(IpAddr::V6(_)) => format!("[{host}]:{port}"),
            _ => format!("{host}:{port}"),
        };
        let mut names = vec![self.hostname.clone()];
        if host != self.hostname {
            names.push(host.to_string());
        }
        let mut out = format!(
            "# Written by the first-boot wizard of the Pullback appliance. The node reads it at\n\
             # every start (`pullback validate` checks it first); see\n\
             # /usr/share/doc/pullback/configuration.md.\n\n\
             [node]\nid = {id}\ndata_dir = \"/var/lib/pullback\"\nlisten = \"0.0.0.0:{API_PORT}\"\n\
             upgrade_inbox = \"/data/upgrade-inbox\"\n",
            id = self.cluster.node_id,
        );
        if self.tls.is_some() {
            out.push_str(
                "tls = { cert_file = \"/etc/pullback/api.crt\", key_file = \"/etc/pullback/api.key\" }\n",
            );
        }
        out.push_str(&format!(
            "\n[cluster]\nraft_listen = \"0.0.0.0:{RAFT_PORT}\"\nraft_advertise = {raft:?}\n\
             api_advertise = {api:?}\nnames = {names:?}\n",
            raft = host_port(RAFT_PORT),
            api = format!("https://{}", host_port(API_PORT)),
        ));
        out.push_str(&format!(
            "\n[[users]]\nname = \"admin\"\nrole = \"admin\"\npassword_hash = {admin_hash:?}\n"
        ));
        for key in &self.api_keys {
            out.push_str(&format!(
                "\n[[api_keys]]\nname = {:?}\nrole = {:?}\nsha256 = {:?}\n",
                key.name, key.role, key.sha256
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
hostname = "pb1"
[network]
mode = "static"
address = "10.0.0.5/24"
gateway = "10.0.0.1"
dns = ["10.0.0.2"]
[time]
ntp = ["ntp1.corp.example", "10.0.0.3"]
[admin]
password = "a long passphrase"
[cluster]
mode = "new"
[[api_keys]]
name = "soar"
role = "analyst"
sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
"#;

    #[test]
    fn good_answers_make_a_configuration() {
        let answers = Answers::parse(GOOD).unwrap();
        assert_eq!(answers.problems(), Vec::<String>::new());
        assert!(
            !format!("{answers:?}").contains("passphrase"),
            "Debug shows the password"
        );
        let config = answers.node_config("10.0.0.5", "$argon2id$x");
        let parsed: toml::Value = toml::from_str(&config).unwrap();
        assert_eq!(parsed["node"]["id"].as_integer(), Some(1));
        assert_eq!(parsed["node"]["listen"].as_str(), Some("0.0.0.0:443"));
        assert_eq!(
            parsed["cluster"]["raft_advertise"].as_str(),
            Some("10.0.0.5:8481")
        );
        assert_eq!(
            parsed["cluster"]["api_advertise"].as_str(),
            Some("https://10.0.0.5:443")
        );
        assert_eq!(
            parsed["users"][0]["password_hash"].as_str(),
            Some("$argon2id$x")
        );
        assert_eq!(parsed["api_keys"][0]["role"].as_str(), Some("analyst"));
        assert!(!config.contains("passphrase"));
        let v6 = answers.node_config("fd00::5", "h");
        assert!(v6.contains("raft_advertise = \"[fd00::5]:8481\""), "{v6}");
    }

    #[test]
    fn each_problem_names_its_field() {
        let checks = [
            ("hostname = \"pb1\"", "hostname = \"-pb\"", "hostname:"),
            (
                "address = \"10.0.0.5/24\"",
                "address = \"10.0.0.5\"",
                "network.address: ",
            ),
            (
                "address = \"10.0.0.5/24\"",
                "address = \"10.0.0.5/33\"",
                "prefix length",
            ),
            (
                "gateway = \"10.0.0.1\"",
                "gateway = \"router\"",
                "network.gateway",
            ),
            (
                "mode = \"static\"",
                "mode = \"dhcp\"",
                "need mode = \"static\"",
            ),
            ("\"a long passphrase\"", "\"short\"", "admin.password: "),
            ("mode = \"new\"", "mode = \"join\"", "cluster.peer: joining"),
            (
                "role = \"analyst\"",
                "role = \"root\"",
                "api_keys \"soar\": role",
            ),
            ("\"10.0.0.3\"", "\"bad host!\"", "time.ntp"),
        ];
        for (from, to, words) in checks {
            let answers = Answers::parse(&GOOD.replacen(from, to, 1)).unwrap();
            let problems = answers.problems().join("; ");
            assert!(problems.contains(words), "{to}: {problems}");
        }
        let unknown = Answers::parse(&format!("{GOOD}\n[extra]\nx = 1\n")).unwrap_err();
        assert!(unknown.contains("unknown field"), "{unknown}");
        let join = GOOD.replacen(
            "mode = \"new\"",
            "mode = \"join\"\npeer = \"https://10.0.0.1\"\njoin_token = \"pbj1.s.f\"\nnode_id = 2",
            1,
        );
        assert_eq!(
            Answers::parse(&join).unwrap().problems(),
            Vec::<String>::new()
        );
    }
}

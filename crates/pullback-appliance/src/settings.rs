//! The node's system settings, kept on the data partition and written into `/run` at every
//! boot: the root slot is the release and is replaced by upgrades, so nothing the
//! administrator chose may live there.
//!
//! - the host name, set in the kernel;
//! - the network: a systemd-networkd file in `/run/systemd/network`, which wins over the
//!   image's DHCP default in `/usr/lib/systemd/network`;
//! - the time servers: a systemd-timesyncd drop-in in `/run/systemd/timesyncd.conf.d`;
//! - the console password of `root`, as the crypt hash `chpasswd` made at first boot.

use crate::answers::{Answers, Network, NetworkMode, Time};
use crate::boot::write_synced;
use crate::layout::Layout;
use serde::{Deserialize, Serialize};
use std::fmt;

/// What is applied at every boot.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The host name.
    pub hostname: String,
    /// The network.
    pub network: Network,
    /// The time servers.
    pub time: Time,
    /// The crypt hash of root's console password.
    #[serde(default)]
    pub console_password_hash: Option<String>,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("hostname", &self.hostname)
            .field("network", &self.network)
            .field("time", &self.time)
            .field(
                "console_password_hash",
                &self.console_password_hash.as_ref().map(|_| "<hidden>"),
            )
            .finish()
    }
}

/// Why settings could not be read or applied.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// A file could not be read or written.
    #[error("{what}: {error}")]
    Io {
        /// What, with the path.
        what: String,
        /// Why.
        error: std::io::Error,
    },
    /// The settings file does not parse.
    #[error("{path} is not valid: {reason}")]
    Parse {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
}

impl Settings {
    /// The settings the answers choose; the console hash comes later.
    pub fn from_answers(answers: &Answers) -> Settings {
        Settings {
            hostname: answers.hostname.clone(),
            network: answers.network.clone(),
            time: answers.time.clone(),
            console_password_hash: None,
        }
    }

    /// Reads the settings, `None` before first boot wrote them.
    pub fn load(layout: &Layout) -> Result<Option<Settings>, SettingsError> {
        let path = layout.settings_file();
        match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str(&text)
                .map(Some)
                .map_err(|e| SettingsError::Parse {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(SettingsError::Io {
                what: format!("reading {}", path.display()),
                error: source,
            }),
        }
    }

    /// Writes the settings to the data partition (root only: they hold a password hash).
    pub fn save(&self, layout: &Layout) -> Result<(), SettingsError> {
        let path = layout.settings_file();
        let text = toml::to_string(self).expect("settings serialise");
        write_synced(&path, text.as_bytes()).map_err(|source| SettingsError::Io {
            what: format!("writing {}", path.display()),
            error: source,
        })?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(|source| {
            SettingsError::Io {
                what: format!("restricting {}", path.display()),
                error: source,
            }
        })
    }

    /// The systemd-networkd file for every Ethernet interface.
    pub fn network_file(&self) -> String {
        let mut out = String::from(
            "# Written at boot by `pullback appliance apply-settings` from \
             /data/appliance/settings.toml.\n[Match]\nType=ether\nName=en* eth*\n\n[Network]\n",
        );
        match self.network.mode {
            NetworkMode::Dhcp => out.push_str("DHCP=yes\n"),
            NetworkMode::Static => {
                if let Some(address) = &self.network.address {
                    out.push_str(&format!("Address={address}\n"));
                }
                if let Some(gateway) = &self.network.gateway {
                    out.push_str(&format!("Gateway={gateway}\n"));
                }
            }
        }
        for dns in &self.network.dns {
            out.push_str(&format!("DNS={dns}\n"));
        }
        if self.network.mode == NetworkMode::Dhcp {
            out.push_str("\n[DHCPv4]\nClientIdentifier=mac\n");
            if !self.network.dns.is_empty() {
                out.push_str("UseDNS=no\n");
            }
        }
        out
    }

    /// The systemd-timesyncd drop-in, `None` to keep the defaults.
    pub fn timesyncd_dropin(&self) -> Option<String> {
        if self.time.ntp.is_empty() {
            return None;
        }
        Some(format!("[Time]\nNTP={}\n", self.time.ntp.join(" ")))
    }

    /// Writes the host name, network and time files under the layout's /proc and /run.
    /// The console password is the caller's (it runs `usermod`).
    pub fn apply(&self, layout: &Layout) -> Result<(), SettingsError> {
        let write = |path: std::path::PathBuf, text: &str| {
            write_synced(&path, text.as_bytes()).map_err(|source| SettingsError::Io {
                what: format!("writing {}", path.display()),
                error: source,
            })
        };
        write(
            layout.run("systemd/network/10-pullback.network"),
            &self.network_file(),
        )?;
        let timesyncd = layout.run("systemd/timesyncd.conf.d/pullback.conf");
        match self.timesyncd_dropin() {
            Some(text) => write(timesyncd, &text)?,
            None => {
                let _ = std::fs::remove_file(timesyncd);
            }
        }
        let hostname = layout.other("/proc/sys/kernel/hostname");
        std::fs::write(&hostname, format!("{}\n", self.hostname)).map_err(|source| {
            SettingsError::Io {
                what: format!("setting the host name through {}", hostname.display()),
                error: source,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(network: Network, ntp: &[&str]) -> Settings {
        Settings {
            hostname: "pb1".into(),
            network,
            time: Time {
                ntp: ntp.iter().map(|s| s.to_string()).collect(),
            },
            console_password_hash: Some("$y$secret".into()),
        }
    }

    #[test]
    fn renders_network_and_time_files() {
        let dhcp = settings(Network::default(), &[]);
        assert!(dhcp.network_file().contains("DHCP=yes\n"));
        assert!(!dhcp.network_file().contains("UseDNS"));
        assert_eq!(dhcp.timesyncd_dropin(), None);

        let fixed = settings(
            Network {
                mode: NetworkMode::Static,
                address: Some("10.0.0.5/24".into()),
                gateway: Some("10.0.0.1".into()),
                dns: vec!["10.0.0.2".into(), "10.0.0.3".into()],
            },
            &["ntp1.corp.example", "ntp2.corp.example"],
        );
        let file = fixed.network_file();
        for line in [
            "Address=10.0.0.5/24",
            "Gateway=10.0.0.1",
            "DNS=10.0.0.2",
            "DNS=10.0.0.3",
        ] {
            assert!(file.contains(line), "{line} missing from {file}");
        }
        assert!(!file.contains("DHCP="));
        assert_eq!(
            fixed.timesyncd_dropin().unwrap(),
            "[Time]\nNTP=ntp1.corp.example ntp2.corp.example\n"
        );
        assert!(!format!("{fixed:?}").contains("secret"));
    }

    #[test]
    fn round_trips_and_applies_under_a_root() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::at(dir.path());
        std::fs::create_dir_all(dir.path().join("proc/sys/kernel")).unwrap();
        let chosen = settings(Network::default(), &["10.0.0.3"]);
        chosen.save(&layout).unwrap();
        let loaded = Settings::load(&layout).unwrap().unwrap();
        assert_eq!(loaded, chosen);
        loaded.apply(&layout).unwrap();
        let read = |p: &str| std::fs::read_to_string(dir.path().join(p)).unwrap();
        assert_eq!(read("proc/sys/kernel/hostname"), "pb1\n");
        assert!(read("run/systemd/network/10-pullback.network").contains("DHCP=yes"));
        assert!(read("run/systemd/timesyncd.conf.d/pullback.conf").contains("10.0.0.3"));
    }
}

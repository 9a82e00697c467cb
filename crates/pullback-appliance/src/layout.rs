//! Where the appliance keeps things. Every path hangs off one root, `/` on the appliance and
//! a temporary folder in tests, where the slots' partitions are plain files.

use crate::boot::Slot;
use std::path::{Path, PathBuf};

/// The appliance's paths under one root.
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    /// The running appliance.
    pub fn system() -> Layout {
        Layout::at("/")
    }

    /// The same tree under `root`.
    pub fn at(root: impl Into<PathBuf>) -> Layout {
        Layout { root: root.into() }
    }

    fn path(&self, absolute: &str) -> PathBuf {
        self.root.join(absolute.trim_start_matches('/'))
    }

    /// The running slot's release (`release.json`).
    pub fn release_file(&self) -> PathBuf {
        self.path("/usr/lib/pullback/release.json")
    }

    /// The release keys the running slot trusts.
    pub fn trusted_keys(&self) -> PathBuf {
        self.path("/usr/lib/pullback/trusted-release-keys")
    }

    /// The EFI system partition, mounted.
    pub fn esp(&self) -> PathBuf {
        self.path("/efi")
    }

    /// The data partition, mounted.
    pub fn data(&self) -> PathBuf {
        self.path("/data")
    }

    /// The node's data folder on the data partition (bind-mounted at /var/lib/pullback).
    pub fn node_data(&self) -> PathBuf {
        self.path("/data/pullback")
    }

    /// The node's configuration folder on the data partition (bind-mounted at /etc/pullback).
    pub fn node_config_dir(&self) -> PathBuf {
        self.path("/data/etc")
    }

    /// The appliance's own state: slots, settings, first boot.
    pub fn appliance_dir(&self) -> PathBuf {
        self.path("/data/appliance")
    }

    /// The slot state file.
    pub fn slot_state(&self) -> PathBuf {
        self.path("/data/appliance/slots.json")
    }

    /// The node's system settings (hostname, network, time, console password).
    pub fn settings_file(&self) -> PathBuf {
        self.path("/data/appliance/settings.toml")
    }

    /// Present once first boot finished.
    pub fn firstboot_done(&self) -> PathBuf {
        self.path("/data/appliance/firstboot.done")
    }

    /// Where the node leaves upgrade images uploaded through its API (see [`crate::inbox`]).
    pub fn upgrade_inbox(&self) -> PathBuf {
        self.path("/data/upgrade-inbox")
    }

    /// Where root keeps an uploaded image while it checks and applies it.
    pub fn taken_upload(&self) -> PathBuf {
        self.path("/data/appliance/uploaded.img")
    }

    /// Where data snapshots go; on the data partition so that they can share files.
    pub fn snapshots(&self) -> PathBuf {
        self.path("/data/snapshots")
    }

    /// A root slot's partition.
    pub fn slot_device(&self, slot: Slot) -> PathBuf {
        self.path(&format!(
            "/dev/disk/by-partlabel/{}",
            slot.partition_label()
        ))
    }

    /// The kernel command line.
    pub fn cmdline(&self) -> PathBuf {
        self.path("/proc/cmdline")
    }

    /// A path under /run.
    pub fn run(&self, relative: &str) -> PathBuf {
        self.path("/run").join(relative)
    }

    /// A path under /etc of the running slot.
    pub fn etc(&self, relative: &str) -> PathBuf {
        self.path("/etc").join(relative)
    }

    /// Any other absolute path under the root.
    pub fn other(&self, absolute: &str) -> PathBuf {
        self.path(absolute)
    }

    /// The root itself.
    pub fn root(&self) -> &Path {
        &self.root
    }
}

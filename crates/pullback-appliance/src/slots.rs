//! The appliance's record of its slots, on the data partition (`/data/appliance/slots.json`):
//! which slot is active, which release each holds and whether it proved good, the format of
//! the node's data, an upgrade waiting for its trial boot, the snapshot taken before the last
//! upgrade, and a short history an administrator can read after a failed upgrade.

use crate::boot::{Slot, write_synced};
use crate::release::Release;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// How far a slot's release got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SlotStatus {
    /// Nothing written yet.
    Empty,
    /// Written, waiting for its trial boot.
    Trial,
    /// Booted and healthy.
    Good,
    /// Its trial boot did not confirm it.
    Failed,
}

/// One slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotRecord {
    /// Its release, once written.
    pub release: Option<Release>,
    /// How far it got.
    pub status: SlotStatus,
}

/// An upgrade written to a slot and not yet confirmed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trial {
    /// The slot being tried.
    pub slot: Slot,
    /// The release in it.
    pub release: Release,
    /// The data format before the upgrade.
    pub data_format_before: u8,
    /// When it was written, seconds since 1970.
    pub started: u64,
}

/// The copy of the node's data taken before an upgrade.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotRecord {
    /// Where it is.
    pub path: PathBuf,
    /// The data format of its content.
    pub data_format: u8,
    /// The release that was running when it was taken.
    pub version: String,
    /// When, seconds since 1970.
    pub taken: u64,
}

/// One line of history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// When, seconds since 1970.
    pub at: u64,
    /// What happened, as a sentence.
    pub text: String,
}

/// The whole record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotState {
    /// The slot that boots.
    pub active: Slot,
    /// Slot A.
    pub a: SlotRecord,
    /// Slot B.
    pub b: SlotRecord,
    /// The data format of the node's data.
    pub data_format: u8,
    /// An upgrade waiting to be confirmed.
    pub trial: Option<Trial>,
    /// The snapshot taken before the last upgrade.
    pub snapshot: Option<SnapshotRecord>,
    /// Put the snapshot back at the next boot (a rollback to a release that cannot read
    /// the current data).
    #[serde(default)]
    pub restore_snapshot_at_boot: bool,
    /// What happened, oldest first, at most [`HISTORY`] lines.
    pub history: Vec<Event>,
}

/// How many history lines are kept.
pub const HISTORY: usize = 50;

impl SlotState {
    /// The record of a fresh appliance: `booted` holds `release` and is good.
    pub fn fresh(booted: Slot, release: &Release) -> SlotState {
        let good = SlotRecord {
            release: Some(release.clone()),
            status: SlotStatus::Good,
        };
        let empty = SlotRecord {
            release: None,
            status: SlotStatus::Empty,
        };
        let (a, b) = match booted {
            Slot::A => (good, empty),
            Slot::B => (empty, good),
        };
        SlotState {
            active: booted,
            a,
            b,
            data_format: release.data_format,
            trial: None,
            snapshot: None,
            restore_snapshot_at_boot: false,
            history: Vec::new(),
        }
    }

    /// Reads the record, or `None` when there is none yet.
    pub fn load(path: &Path) -> std::io::Result<Option<SlotState>> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{} is not a slot record: {e}", path.display()),
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes the record durably.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let mut bytes = serde_json::to_vec_pretty(self).expect("the slot record serialises");
        bytes.push(b'\n');
        write_synced(path, &bytes)
    }

    /// A slot's record.
    pub fn slot(&self, slot: Slot) -> &SlotRecord {
        match slot {
            Slot::A => &self.a,
            Slot::B => &self.b,
        }
    }

    /// A slot's record, to change.
    pub fn slot_mut(&mut self, slot: Slot) -> &mut SlotRecord {
        match slot {
            Slot::A => &mut self.a,
            Slot::B => &mut self.b,
        }
    }

    /// Adds a history line, dropping the oldest past [`HISTORY`].
    pub fn record(&mut self, at: u64, text: String) {
        tracing::info!(event = %text, "appliance");
        self.history.push(Event { at, text });
        let excess = self.history.len().saturating_sub(HISTORY);
        self.history.drain(..excess);
    }
}

/// Seconds since 1970.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

//! In-place upgrades with automatic rollback.
//!
//! 1. [`Appliance::check_image`] verifies an image (signature, manifest, hashes, size) and
//!    that its release can run on the node's data; nothing is written before it passed.
//! 2. [`Appliance::install`], with the node stopped: snapshots the data, writes the inactive
//!    slot, its kernel and initramfs, and a trial boot entry with one try. The caller reboots.
//! 3. On the trial boot, once the node is healthy, [`Appliance::confirm`] makes the slot the
//!    active one. If that never happens, the next boot starts the old slot (the trial entry
//!    has spent its try) and [`Appliance::boot_check`] records the failure, removes the
//!    entry and, if the failed release may have migrated the data, puts the snapshot back.
//! 4. [`Appliance::rollback`] goes back to the previous slot on purpose when that release
//!    can read the data (or, when asked, with the snapshot put back).

use crate::boot::{self, EntryName, Esp, Role, Slot};
use crate::img::{self, ImgError, VerifiedImg};
use crate::keys::{KeysError, TrustedKeys};
use crate::layout::Layout;
use crate::release::{Release, ReleaseError};
use crate::slots::{SlotRecord, SlotState, SlotStatus, SnapshotRecord, Trial, now};
use crate::snapshot;
use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom, Write};
use std::path::PathBuf;

/// Why an upgrade step could not be done.
#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    /// The image failed a check; nothing was written.
    #[error("upgrade image {path} refused, nothing was written: {error}")]
    Refused {
        /// The image.
        path: String,
        /// The check that failed.
        error: ImgError,
    },
    /// The trusted keys could not be read.
    #[error(transparent)]
    Keys(#[from] KeysError),
    /// The running release could not be read.
    #[error(transparent)]
    Release(#[from] ReleaseError),
    /// A file or device could not be read or written.
    #[error("{what}: {error}")]
    Io {
        /// What was being done, with the path.
        what: String,
        /// Why it failed.
        error: std::io::Error,
    },
    /// The kernel command line names no slot: this system did not boot from a slot entry.
    #[error("cannot tell which slot is running: {0} has no pullback.slot=")]
    NotBooted(String),
    /// An upgrade already waits for its trial boot.
    #[error(
        "release {version} is already written to slot {slot} and waits for its trial boot; \
         reboot to try it, or run `pullback upgrade rollback` to drop it"
    )]
    Pending {
        /// Its version.
        version: String,
        /// Its slot.
        slot: Slot,
    },
    /// The image's root filesystem does not fit the slot.
    #[error(
        "upgrade image refused, nothing was written: size check failed: its root filesystem \
         has {size} bytes, slot {slot} holds {capacity}"
    )]
    TooLarge {
        /// The root filesystem's size.
        size: u64,
        /// The slot.
        slot: Slot,
        /// The slot's size.
        capacity: u64,
    },
    /// Confirmation asked outside a trial boot.
    #[error("slot {0} is not being tried: nothing to confirm")]
    NotTrial(Slot),
    /// No release to roll back to.
    #[error("slot {0} holds no release that booted well: nothing to roll back to")]
    NoPrevious(Slot),
    /// The previous release cannot read the current data.
    #[error("rollback refused: {reason}")]
    RollbackRefused {
        /// Why, and what would make it possible.
        reason: String,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> UpgradeError {
    let what = what.into();
    move |source| UpgradeError::Io {
        what,
        error: source,
    }
}

/// An image that passed every check, and where it would go.
#[derive(Debug)]
pub struct Checked {
    /// The verified image.
    pub img: VerifiedImg,
    /// The slot it would be written to.
    pub target: Slot,
    /// The release running now.
    pub current: Release,
}

/// What [`Appliance::boot_check`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootOutcome {
    /// The first boot: the slot record was created.
    Fresh(Slot),
    /// An ordinary boot of the active slot.
    Normal(Slot),
    /// The trial boot of a new slot; confirmation is to come.
    TrialInProgress(Slot),
    /// The previous boot tried a slot that never confirmed itself; this is the old one.
    TrialFailed {
        /// The release that failed.
        failed: Release,
        /// The slot running now.
        back_on: Slot,
        /// Whether the data snapshot was put back.
        restored: bool,
    },
    /// The other slot became active (a rollback, or a choice in the boot menu).
    Switched {
        /// The slot running now.
        to: Slot,
        /// Whether the data snapshot was put back.
        restored: bool,
    },
}

/// The appliance's slots, ESP and data, under a [`Layout`].
#[derive(Debug, Clone)]
pub struct Appliance {
    layout: Layout,
}

impl Appliance {
    /// The appliance laid out as `layout` says.
    pub fn new(layout: Layout) -> Appliance {
        Appliance { layout }
    }

    /// The layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    fn esp(&self) -> Esp {
        Esp::at(self.layout.esp())
    }

    /// The running slot and whether this is its trial boot.
    pub fn booted(&self) -> Result<(Slot, bool), UpgradeError> {
        let path = self.layout.cmdline();
        let cmdline =
            std::fs::read_to_string(&path).map_err(io(format!("reading {}", path.display())))?;
        boot::booted(&cmdline).ok_or_else(|| UpgradeError::NotBooted(path.display().to_string()))
    }

    /// The release of the running slot.
    pub fn current_release(&self) -> Result<Release, UpgradeError> {
        Ok(Release::read(&self.layout.release_file())?)
    }

    /// The slot record, created for a fresh appliance when missing.
    pub fn state(&self) -> Result<SlotState, UpgradeError> {
        let path = self.layout.slot_state();
        let loaded = SlotState::load(&path).map_err(io(format!("reading {}", path.display())))?;
        match loaded {
            Some(state) => Ok(state),
            None => Ok(SlotState::fresh(self.booted()?.0, &self.current_release()?)),
        }
    }

    fn save(&self, state: &SlotState) -> Result<(), UpgradeError> {
        let path = self.layout.slot_state();
        state
            .save(&path)
            .map_err(io(format!("writing {}", path.display())))
    }

    /// Verifies `path` and checks that its release can run here. Writes nothing.
    pub fn check_image(&self, path: &std::path::Path) -> Result<Checked, UpgradeError> {
        let state = self.state()?;
        if let Some(trial) = &state.trial {
            return Err(UpgradeError::Pending {
                version: trial.release.version.clone(),
                slot: trial.slot,
            });
        }
        let keys = TrustedKeys::read(&self.layout.trusted_keys())?;
        let refused = |source| UpgradeError::Refused {
            path: path.display().to_string(),
            error: source,
        };
        let data_format = state.data_format;
        let img = img::verify_with(path, &keys, |manifest| {
            manifest
                .release()
                .can_run_on(data_format)
                .map_err(ImgError::DataFormat)
        })
        .map_err(refused)?;

        let target = state.active.other();
        let size = img.manifest.member("rootfs.ext4").map_or(0, |m| m.size);
        let capacity = self.slot_capacity(target)?;
        if size > capacity {
            return Err(UpgradeError::TooLarge {
                size,
                slot: target,
                capacity,
            });
        }
        Ok(Checked {
            img,
            target,
            current: self.current_release()?,
        })
    }

    fn slot_capacity(&self, slot: Slot) -> Result<u64, UpgradeError> {
        let device = self.layout.slot_device(slot);
        let what = format!("opening slot {slot} ({})", device.display());
        let mut file = OpenOptions::new()
            .read(true)
            .open(&device)
            .map_err(io(&what))?;
        file.seek(SeekFrom::End(0)).map_err(io(what))
    }

    /// Writes a checked image to its slot and arms its trial boot. The node must be stopped:
    /// its data is snapshotted first. `progress` hears about each step.
    pub fn install(
        &self,
        checked: &Checked,
        progress: &mut dyn FnMut(&str),
    ) -> Result<(), UpgradeError> {
        let mut state = self.state()?;
        let release = checked.img.manifest.release();
        let target = checked.target;

        progress("taking a snapshot of the node's data");
        self.replace_snapshot(&mut state, &release)?;

        // The slot's old release goes away: its entries first, so nothing boots a half-written
        // slot.
        self.esp()
            .remove_entries(target)
            .map_err(io("removing the slot's old boot entries"))?;
        *state.slot_mut(target) = SlotRecord {
            release: None,
            status: SlotStatus::Empty,
        };
        self.save(&state)?;

        progress(&format!("writing slot {target}"));
        self.write_slot(checked, target)?;
        progress("writing the kernel and initramfs to the ESP");
        let kernel_dir = self.esp().kernel_dir(target);
        for name in ["vmlinuz", "initrd.img"] {
            let mut bytes = Vec::new();
            checked
                .img
                .copy_member(name, &mut bytes)
                .map_err(|source| UpgradeError::Refused {
                    path: checked.img.path.display().to_string(),
                    error: source,
                })?;
            boot::write_synced(&kernel_dir.join(name), &bytes)
                .map_err(io(format!("writing {}", kernel_dir.join(name).display())))?;
        }

        let entry = EntryName {
            slot: target,
            counter: Some((1, 0)),
        };
        self.esp()
            .set_entry(
                &entry,
                &boot::entry_text(target, &release.version, Role::Trial),
            )
            .map_err(io("writing the trial boot entry"))?;
        *state.slot_mut(target) = SlotRecord {
            release: Some(release.clone()),
            status: SlotStatus::Trial,
        };
        state.trial = Some(Trial {
            slot: target,
            release: release.clone(),
            data_format_before: state.data_format,
            started: now(),
        });
        state.record(
            now(),
            format!(
                "release {} written to slot {target} (signed by {}); its trial boot is next",
                release.version, checked.img.signed_by
            ),
        );
        self.save(&state)
    }

    fn replace_snapshot(&self, state: &mut SlotState, next: &Release) -> Result<(), UpgradeError> {
        if let Some(old) = state.snapshot.take()
            && old.path.exists()
        {
            std::fs::remove_dir_all(&old.path).map_err(io(format!(
                "removing the old snapshot {}",
                old.path.display()
            )))?;
        }
        let current = self.current_release()?;
        let folder = self.layout.snapshots();
        std::fs::create_dir_all(&folder).map_err(io(format!("creating {}", folder.display())))?;
        let taken = now();
        let path = folder.join(format!("before-{}-{taken}", next.version));
        let source = self.layout.node_data();
        snapshot::take(&source, &path).map_err(io(format!(
            "snapshotting {} to {}",
            source.display(),
            path.display()
        )))?;
        state.snapshot = Some(SnapshotRecord {
            path,
            data_format: state.data_format,
            version: current.version,
            taken,
        });
        Ok(())
    }

    fn write_slot(&self, checked: &Checked, slot: Slot) -> Result<(), UpgradeError> {
        let device = self.layout.slot_device(slot);
        let what = format!("writing slot {slot} ({})", device.display());
        let mut file = OpenOptions::new()
            .write(true)
            .open(&device)
            .map_err(io(&what))?;
        let result = checked.img.copy_member("rootfs.ext4", &mut file);
        if let Err(source) = result {
            // Whatever was written is not a release: make sure it is never taken for one.
            let _ = file
                .seek(SeekFrom::Start(0))
                .and_then(|_| file.write_all(&[0u8; 4096]));
            return Err(UpgradeError::Refused {
                path: checked.img.path.display().to_string(),
                error: source,
            });
        }
        file.sync_all().map_err(io(what))
    }

    /// Makes the slot on its trial boot the active one. The caller checked the node's health.
    pub fn confirm(&self) -> Result<Release, UpgradeError> {
        let (booted, _) = self.booted()?;
        let mut state = self.state()?;
        let Some(trial) = state.trial.clone().filter(|t| t.slot == booted) else {
            return Err(UpgradeError::NotTrial(booted));
        };
        let esp = self.esp();
        let release = trial.release.clone();
        esp.set_entry(
            &EntryName {
                slot: booted,
                counter: None,
            },
            &boot::entry_text(booted, &release.version, Role::Active),
        )
        .map_err(io("writing the confirmed slot's boot entry"))?;
        let old = state.active;
        if let Some(old_release) = state.slot(old).release.clone() {
            esp.set_entry(
                &EntryName {
                    slot: old,
                    counter: None,
                },
                &boot::entry_text(old, &old_release.version, Role::Previous),
            )
            .map_err(io("writing the previous slot's boot entry"))?;
        }
        state.active = booted;
        state.slot_mut(booted).status = SlotStatus::Good;
        state.data_format = release.data_format;
        state.trial = None;
        state.record(
            now(),
            format!(
                "release {} on slot {booted} is healthy and now the active slot",
                release.version
            ),
        );
        self.save(&state)?;
        Ok(release)
    }

    /// Settles the slots at boot, before the node starts (see [`BootOutcome`]).
    pub fn boot_check(&self) -> Result<BootOutcome, UpgradeError> {
        let (booted, _) = self.booted()?;
        let path = self.layout.slot_state();
        let loaded = SlotState::load(&path).map_err(io(format!("reading {}", path.display())))?;
        let Some(mut state) = loaded else {
            let state = SlotState::fresh(booted, &self.current_release()?);
            self.save(&state)?;
            return Ok(BootOutcome::Fresh(booted));
        };

        if let Some(trial) = state.trial.clone() {
            if trial.slot == booted {
                return Ok(BootOutcome::TrialInProgress(booted));
            }
            return self.trial_failed(state, trial, booted);
        }
        if booted == state.active {
            return Ok(BootOutcome::Normal(booted));
        }

        let restored = state.restore_snapshot_at_boot && self.restore_snapshot(&mut state)?;
        state.restore_snapshot_at_boot = false;
        let release = self.current_release()?;
        let old = state.active;
        state.active = booted;
        state.slot_mut(booted).release = Some(release.clone());
        state.slot_mut(booted).status = SlotStatus::Good;
        state.record(
            now(),
            format!(
                "slot {booted} ({}) is active again instead of slot {old}{}",
                release.version,
                snapshot_note(restored)
            ),
        );
        self.save(&state)?;
        Ok(BootOutcome::Switched {
            to: booted,
            restored,
        })
    }

    fn trial_failed(
        &self,
        mut state: SlotState,
        trial: Trial,
        booted: Slot,
    ) -> Result<BootOutcome, UpgradeError> {
        self.esp()
            .remove_entries(trial.slot)
            .map_err(io("removing the failed slot's boot entry"))?;
        state.slot_mut(trial.slot).status = SlotStatus::Failed;
        // A release that writes a newer format may have migrated the data before it failed;
        // the old release cannot read that, so the data goes back to the snapshot.
        let restored = trial.release.data_format != trial.data_format_before
            && self.restore_snapshot(&mut state)?;
        state.data_format = trial.data_format_before;
        state.trial = None;
        let running = self.current_release()?;
        state.record(
            now(),
            format!(
                "upgrade to {} failed: slot {} did not confirm itself healthy on its trial boot; \
                 back on slot {booted} with {}{}",
                trial.release.version,
                trial.slot,
                running.version,
                snapshot_note(restored)
            ),
        );
        self.save(&state)?;
        Ok(BootOutcome::TrialFailed {
            failed: trial.release,
            back_on: booted,
            restored,
        })
    }

    fn restore_snapshot(&self, state: &mut SlotState) -> Result<bool, UpgradeError> {
        let Some(snapshot) = state.snapshot.clone() else {
            return Ok(false);
        };
        let target = self.layout.node_data();
        snapshot::restore(&snapshot.path, &target).map_err(io(format!(
            "putting the snapshot {} back to {}",
            snapshot.path.display(),
            target.display()
        )))?;
        state.data_format = snapshot.data_format;
        Ok(true)
    }

    /// Makes the previous slot the one that boots next. With `restore_snapshot`, the data
    /// snapshot is put back at that boot, for a release that cannot read the current data.
    /// Returns the release that will boot. During a trial boot, this simply drops the trial:
    /// the next boot starts the old slot.
    pub fn rollback(&self, restore_snapshot: bool) -> Result<Release, UpgradeError> {
        let (booted, _) = self.booted()?;
        let mut state = self.state()?;
        if let Some(trial) = state.trial.clone() {
            if trial.slot != booted {
                // Not tried yet: drop it.
                self.esp()
                    .remove_entries(trial.slot)
                    .map_err(io("removing the trial boot entry"))?;
                state.slot_mut(trial.slot).status = SlotStatus::Failed;
                state.trial = None;
                state.record(
                    now(),
                    format!("upgrade to {} dropped", trial.release.version),
                );
                self.save(&state)?;
                return self.current_release();
            }
            // On the trial boot: its entry has no tries left, so the next boot is the old slot.
            let old = state.active;
            return state
                .slot(old)
                .release
                .clone()
                .ok_or(UpgradeError::NoPrevious(old));
        }

        let previous = state.active.other();
        let record = state.slot(previous).clone();
        let Some(release) = record.release.filter(|_| record.status == SlotStatus::Good) else {
            return Err(UpgradeError::NoPrevious(previous));
        };
        if let Err(reason) = release.can_run_on(state.data_format) {
            let snapshot_fits = state
                .snapshot
                .as_ref()
                .is_some_and(|s| release.can_run_on(s.data_format).is_ok());
            if !restore_snapshot || !snapshot_fits {
                let hint = if snapshot_fits {
                    "; `--restore-snapshot` puts back the data as it was before the upgrade, \
                     losing what changed since"
                } else {
                    "; no snapshot in a format it reads exists"
                };
                return Err(UpgradeError::RollbackRefused {
                    reason: format!("{reason}{hint}"),
                });
            }
            state.restore_snapshot_at_boot = true;
        }

        let esp = self.esp();
        let current = state.active;
        esp.set_entry(
            &EntryName {
                slot: previous,
                counter: None,
            },
            &boot::entry_text(previous, &release.version, Role::Active),
        )
        .map_err(io("writing the previous slot's boot entry"))?;
        if let Some(current_release) = state.slot(current).release.clone() {
            esp.set_entry(
                &EntryName {
                    slot: current,
                    counter: None,
                },
                &boot::entry_text(current, &current_release.version, Role::Previous),
            )
            .map_err(io("writing the current slot's boot entry"))?;
        }
        state.record(
            now(),
            format!("rollback to {} on slot {previous} asked", release.version),
        );
        self.save(&state)?;
        Ok(release)
    }

    /// Where the snapshots are.
    pub fn snapshots_dir(&self) -> PathBuf {
        self.layout.snapshots()
    }
}

/// What a slot record adds when a switch of slots also put the data snapshot back.
fn snapshot_note(restored: bool) -> &'static str {
    if restored {
        "; the data snapshot was put back"
    } else {
        ""
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::img::testing;
    use ring::signature::{Ed25519KeyPair, KeyPair};
    use std::fs;
    use std::path::Path;

    const SLOT_BYTES: usize = 64 * 1024;

    struct Rig {
        _dir: tempfile::TempDir,
        root: PathBuf,
        appliance: Appliance,
        key: Ed25519KeyPair,
    }

    fn release(version: &str, data_format: u8) -> Release {
        Release {
            version: version.into(),
            data_format,
            oldest_data_format: 1,
            built: 0,
        }
    }

    impl Rig {
        /// A fresh appliance booted from slot A with release 0.1.0 (data format 1).
        fn new() -> Rig {
            let dir = tempfile::tempdir().unwrap();
            let root = dir.path().to_path_buf();
            let key = Ed25519KeyPair::from_seed_unchecked(&[1; 32]).unwrap();
            let rig = Rig {
                appliance: Appliance::new(Layout::at(&root)),
                root,
                _dir: dir,
                key,
            };
            rig.install_running(&release("0.1.0", 1));
            rig.write(
                "usr/lib/pullback/trusted-release-keys",
                &format!(
                    "ed25519 {} release-test\n",
                    hex::encode(rig.key.public_key())
                ),
            );
            rig.write("data/pullback/db/000001.sst", "alerts");
            rig.write("data/pullback/db/MANIFEST-000001", "v1");
            rig.write(
                "efi/loader/entries/pullback-a.conf",
                &boot::entry_text(Slot::A, "0.1.0", Role::Active),
            );
            for slot in ["a", "b"] {
                rig.write(
                    &format!("dev/disk/by-partlabel/pullback-root-{slot}"),
                    &"\0".repeat(SLOT_BYTES),
                );
            }
            rig.boot(Slot::A, false);
            assert_eq!(
                rig.appliance.boot_check().unwrap(),
                BootOutcome::Fresh(Slot::A)
            );
            rig
        }

        fn write(&self, path: &str, text: &str) {
            let path = self.root.join(path);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, text).unwrap();
        }

        fn read(&self, path: &str) -> String {
            fs::read_to_string(self.root.join(path)).unwrap_or_default()
        }

        /// What the slot's root filesystem would say about itself once booted.
        fn install_running(&self, release: &Release) {
            self.write(
                "usr/lib/pullback/release.json",
                &serde_json::to_string(release).unwrap(),
            );
        }

        fn boot(&self, slot: Slot, trial: bool) {
            let trial = if trial { " pullback.trial" } else { "" };
            self.write(
                "proc/cmdline",
                &format!("root=x pullback.slot={}{trial}\n", slot.letter()),
            );
        }

        fn entries(&self) -> Vec<String> {
            let esp = Esp::at(self.root.join("efi"));
            esp.entries()
                .unwrap()
                .iter()
                .map(EntryName::file_name)
                .collect()
        }

        fn image(&self, release: &Release, rootfs: &[u8]) -> PathBuf {
            self.image_signed(&self.key, release, rootfs)
        }

        fn image_signed(&self, key: &Ed25519KeyPair, release: &Release, rootfs: &[u8]) -> PathBuf {
            let payload: Vec<(&str, &[u8])> = vec![
                ("vmlinuz", b"kernel of the new release"),
                ("initrd.img", b"initrd of the new release"),
                ("rootfs.ext4", rootfs),
            ];
            let manifest = testing::manifest(release, &payload);
            let path = self
                .root
                .join(format!("{}-{}.img", release.version, rootfs.len()));
            fs::write(&path, testing::image(key, &manifest, &payload)).unwrap();
            path
        }

        /// systemd-boot starting a trial entry: one try spent.
        fn firmware_starts_trial(&self, slot: Slot) {
            let entries = self.root.join("efi/loader/entries");
            let from = entries.join(format!("pullback-{}+1-0.conf", slot.letter()));
            let to = entries.join(format!("pullback-{}+0-1.conf", slot.letter()));
            fs::rename(from, to).unwrap();
            self.boot(slot, true);
        }

        fn upgrade(&self, release: &Release, rootfs: &[u8]) {
            let checked = self
                .appliance
                .check_image(&self.image(release, rootfs))
                .unwrap();
            self.appliance.install(&checked, &mut |_| {}).unwrap();
        }

        fn tree(&self) -> Vec<(PathBuf, Vec<u8>)> {
            fn walk(dir: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
                let mut items: Vec<_> = fs::read_dir(dir).unwrap().map(|i| i.unwrap()).collect();
                items.sort_by_key(|i| i.file_name());
                for item in items {
                    if item.file_type().unwrap().is_dir() {
                        walk(&item.path(), out);
                    } else if !item.file_name().to_string_lossy().ends_with(".img") {
                        out.push((item.path(), fs::read(item.path()).unwrap()));
                    }
                }
            }
            let mut out = Vec::new();
            walk(&self.root, &mut out);
            out
        }
    }

    #[test]
    fn an_upgrade_boots_once_on_trial_and_becomes_active_when_confirmed() {
        let rig = Rig::new();
        let rootfs = vec![0x5a; 20_000];
        rig.upgrade(&release("0.2.0", 1), &rootfs);

        let slot_b = fs::read(rig.root.join("dev/disk/by-partlabel/pullback-root-b")).unwrap();
        assert_eq!(&slot_b[..rootfs.len()], &rootfs[..]);
        assert_eq!(
            rig.read("efi/pullback/b/vmlinuz"),
            "kernel of the new release"
        );
        assert_eq!(rig.entries(), ["pullback-a.conf", "pullback-b+1-0.conf"]);
        assert!(
            rig.read("efi/loader/entries/pullback-b+1-0.conf")
                .contains("pullback.trial")
        );
        let state = rig.appliance.state().unwrap();
        let snapshot = state.snapshot.clone().unwrap();
        assert_eq!(
            fs::read_to_string(snapshot.path.join("db/000001.sst")).unwrap(),
            "alerts"
        );
        assert!(matches!(
            rig.appliance
                .check_image(&rig.image(&release("0.3.0", 1), b"x")),
            Err(UpgradeError::Pending { .. })
        ));

        rig.firmware_starts_trial(Slot::B);
        rig.install_running(&release("0.2.0", 1));
        assert_eq!(
            rig.appliance.boot_check().unwrap(),
            BootOutcome::TrialInProgress(Slot::B)
        );
        assert_eq!(rig.appliance.confirm().unwrap().version, "0.2.0");
        assert_eq!(rig.entries(), ["pullback-a.conf", "pullback-b.conf"]);
        assert!(
            rig.read("efi/loader/entries/pullback-b.conf")
                .contains("pullback-2-active")
        );
        assert!(
            rig.read("efi/loader/entries/pullback-a.conf")
                .contains("pullback-3-previous")
        );
        assert!(
            !rig.read("efi/loader/entries/pullback-b.conf")
                .contains("pullback.trial")
        );

        rig.boot(Slot::B, false);
        assert_eq!(
            rig.appliance.boot_check().unwrap(),
            BootOutcome::Normal(Slot::B)
        );
        let state = rig.appliance.state().unwrap();
        assert_eq!((state.active, state.b.status), (Slot::B, SlotStatus::Good));
        assert_eq!(rig.read("data/pullback/db/000001.sst"), "alerts");
    }

    #[test]
    fn a_trial_that_never_confirms_falls_back_and_restores_migrated_data() {
        let rig = Rig::new();
        // The new release writes data format 2: it may migrate the data when it starts.
        rig.upgrade(&release("0.3.0", 2), &[1u8; 1000]);
        rig.firmware_starts_trial(Slot::B);
        rig.install_running(&release("0.3.0", 2));
        assert_eq!(
            rig.appliance.boot_check().unwrap(),
            BootOutcome::TrialInProgress(Slot::B)
        );
        rig.write("data/pullback/db/MANIFEST-000001", "migrated to format 2");
        rig.write("data/pullback/db/000002.sst", "written by 0.3.0");

        // The health check gave up and rebooted; the spent entry sorts last, slot A boots.
        rig.boot(Slot::A, false);
        rig.install_running(&release("0.1.0", 1));
        let outcome = rig.appliance.boot_check().unwrap();
        assert_eq!(
            outcome,
            BootOutcome::TrialFailed {
                failed: release("0.3.0", 2),
                back_on: Slot::A,
                restored: true
            }
        );
        assert_eq!(rig.entries(), ["pullback-a.conf"]);
        assert_eq!(rig.read("data/pullback/db/MANIFEST-000001"), "v1");
        assert!(!rig.root.join("data/pullback/db/000002.sst").exists());
        let state = rig.appliance.state().unwrap();
        assert_eq!(
            (state.active, state.b.status, state.data_format),
            (Slot::A, SlotStatus::Failed, 1)
        );
        assert!(
            state
                .history
                .last()
                .unwrap()
                .text
                .contains("upgrade to 0.3.0 failed")
        );

        // The same format: the data written during the trial is kept.
        rig.upgrade(&release("0.2.1", 1), &[2u8; 1000]);
        rig.firmware_starts_trial(Slot::B);
        rig.write("data/pullback/db/000003.sst", "written during the trial");
        rig.boot(Slot::A, false);
        let outcome = rig.appliance.boot_check().unwrap();
        assert!(
            matches!(
                outcome,
                BootOutcome::TrialFailed {
                    restored: false,
                    ..
                }
            ),
            "{outcome:?}"
        );
        assert!(rig.root.join("data/pullback/db/000003.sst").exists());
    }

    #[test]
    fn refused_images_write_nothing() {
        let rig = Rig::new();
        let good = rig.image(&release("0.2.0", 1), &[3u8; 3000]);
        let bytes = fs::read(&good).unwrap();
        let mut tampered = bytes.clone();
        let at = tampered
            .windows(3000)
            .position(|w| w.iter().all(|&b| b == 3))
            .unwrap();
        tampered[at + 1] = 4;
        let tampered_path = rig.root.join("tampered.img");
        fs::write(&tampered_path, tampered).unwrap();
        let truncated_path = rig.root.join("truncated.img");
        fs::write(&truncated_path, &bytes[..bytes.len() / 2]).unwrap();
        let stranger = Ed25519KeyPair::from_seed_unchecked(&[9; 32]).unwrap();
        let other_key = rig.image_signed(&stranger, &release("0.2.0", 1), &[3u8; 3000]);
        let older_format = rig.image(
            &Release {
                version: "0.0.9".into(),
                data_format: 0,
                oldest_data_format: 0,
                built: 0,
            },
            &[3u8; 3000],
        );
        let too_new = rig.image(
            &Release {
                version: "9.0.0".into(),
                data_format: 5,
                oldest_data_format: 4,
                built: 0,
            },
            &[3u8; 3000],
        );
        let too_large = rig.image(&release("0.2.0", 1), &vec![3u8; SLOT_BYTES + 1]);

        let before = rig.tree();
        let checks = [
            (tampered_path, "hash check failed"),
            (truncated_path, "truncated"),
            (other_key, "signature check failed"),
            (
                older_format,
                "data format check failed: release 0.0.9 writes data format 0",
            ),
            (
                too_new,
                "data format check failed: release 9.0.0 migrates data from format 4",
            ),
            (too_large, "size check failed"),
        ];
        for (path, words) in checks {
            let err = rig.appliance.check_image(&path).unwrap_err().to_string();
            assert!(err.contains(words), "{}: {err}", path.display());
            assert!(err.contains("nothing was written"), "{err}");
        }
        assert!(before == rig.tree(), "a refused image changed a file");
    }

    #[test]
    fn rollback_returns_to_the_previous_slot_while_the_data_format_allows() {
        let rig = Rig::new();
        rig.upgrade(&release("0.2.0", 1), &[1u8; 100]);
        rig.firmware_starts_trial(Slot::B);
        rig.install_running(&release("0.2.0", 1));
        rig.appliance.confirm().unwrap();
        rig.boot(Slot::B, false);

        assert_eq!(rig.appliance.rollback(false).unwrap().version, "0.1.0");
        assert!(
            rig.read("efi/loader/entries/pullback-a.conf")
                .contains("pullback-2-active")
        );
        assert!(
            rig.read("efi/loader/entries/pullback-b.conf")
                .contains("pullback-3-previous")
        );
        rig.boot(Slot::A, false);
        rig.install_running(&release("0.1.0", 1));
        let outcome = rig.appliance.boot_check().unwrap();
        assert_eq!(
            outcome,
            BootOutcome::Switched {
                to: Slot::A,
                restored: false
            }
        );

        // Forward again to a release with a newer data format: going back needs the snapshot.
        rig.upgrade(&release("0.4.0", 2), &[2u8; 100]);
        rig.firmware_starts_trial(Slot::B);
        rig.install_running(&release("0.4.0", 2));
        rig.appliance.confirm().unwrap();
        rig.boot(Slot::B, false);
        rig.write("data/pullback/db/MANIFEST-000001", "format 2");
        let err = rig.appliance.rollback(false).unwrap_err().to_string();
        assert!(
            err.contains("rollback refused") && err.contains("--restore-snapshot"),
            "{err}"
        );
        rig.appliance.rollback(true).unwrap();
        rig.boot(Slot::A, false);
        rig.install_running(&release("0.1.0", 1));
        let outcome = rig.appliance.boot_check().unwrap();
        assert_eq!(
            outcome,
            BootOutcome::Switched {
                to: Slot::A,
                restored: true
            }
        );
        assert_eq!(rig.read("data/pullback/db/MANIFEST-000001"), "v1");
        assert_eq!(rig.appliance.state().unwrap().data_format, 1);
    }
}

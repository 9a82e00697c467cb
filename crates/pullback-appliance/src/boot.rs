//! systemd-boot entries for the root slots, and boot counting for the one boot that tries a
//! new slot.
//!
//! The ESP has one entry file per slot in `/loader/entries`, and each slot's kernel and
//! initramfs in `/pullback/<slot>/`. `loader.conf` names no default: systemd-boot starts the
//! first entry in its order, which puts entries with no tries left last and otherwise sorts
//! by `sort-key`. So the roles are sort keys: `pullback-1-trial` before `pullback-2-active`
//! before `pullback-3-previous`.
//!
//! A trial entry is written as `pullback-<slot>+1-0.conf`: one try left, none done. Starting
//! it, systemd-boot renames it `+0-1`; from then on it has no tries left and sorts last, so
//! any later boot (a crash, a reboot after a failed health check) starts the active slot
//! again. Only [`crate::upgrade`]'s confirmation turns it into a plain active entry.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

/// A root slot.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Slot {
    /// The first root partition.
    A,
    /// The second root partition.
    B,
}

impl Slot {
    /// The other slot.
    pub fn other(self) -> Slot {
        match self {
            Slot::A => Slot::B,
            Slot::B => Slot::A,
        }
    }

    /// `a` or `b`, as in file names and the kernel command line.
    pub fn letter(self) -> &'static str {
        match self {
            Slot::A => "a",
            Slot::B => "b",
        }
    }

    /// The GPT partition name.
    pub fn partition_label(self) -> &'static str {
        match self {
            Slot::A => "pullback-root-a",
            Slot::B => "pullback-root-b",
        }
    }

    /// The fixed GPT partition GUID packaging/build-image gives the slot.
    pub fn partition_uuid(self) -> &'static str {
        match self {
            Slot::A => "5075626c-6261-4b00-8000-00000000000a",
            Slot::B => "5075626c-6261-4b00-8000-00000000000b",
        }
    }

    /// Parses `a` or `b`.
    pub fn parse(text: &str) -> Option<Slot> {
        match text {
            "a" | "A" => Some(Slot::A),
            "b" | "B" => Some(Slot::B),
            _ => None,
        }
    }
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Slot::A => "A",
            Slot::B => "B",
        })
    }
}

/// What an entry is for; decides its place in the boot order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A new slot's one try.
    Trial,
    /// The slot that boots.
    Active,
    /// The slot before, kept to be chosen from the menu or by a rollback.
    Previous,
}

impl Role {
    fn sort_key(self) -> &'static str {
        match self {
            Role::Trial => "pullback-1-trial",
            Role::Active => "pullback-2-active",
            Role::Previous => "pullback-3-previous",
        }
    }
}

/// The slot a running system booted from, and whether it is a trial, from its kernel
/// command line.
pub fn booted(cmdline: &str) -> Option<(Slot, bool)> {
    let slot = cmdline
        .split_whitespace()
        .find_map(|word| word.strip_prefix("pullback.slot="))
        .and_then(Slot::parse)?;
    let trial = cmdline.split_whitespace().any(|w| w == "pullback.trial");
    Some((slot, trial))
}

/// An entry file's name: its slot and boot counter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryName {
    /// The slot.
    pub slot: Slot,
    /// `(tries left, tries done)` when the entry counts boots.
    pub counter: Option<(u32, u32)>,
}

impl EntryName {
    /// Parses `pullback-<slot>[+LEFT[-DONE]].conf`; other files are not ours.
    pub fn parse(file_name: &str) -> Option<EntryName> {
        let stem = file_name.strip_suffix(".conf")?.strip_prefix("pullback-")?;
        let (slot, counter) = match stem.split_once('+') {
            None => (stem, None),
            Some((slot, counter)) => {
                let (left, done) = match counter.split_once('-') {
                    Some((left, done)) => (left.parse().ok()?, done.parse().ok()?),
                    None => (counter.parse().ok()?, 0),
                };
                (slot, Some((left, done)))
            }
        };
        Some(EntryName {
            slot: Slot::parse(slot).filter(|_| slot.len() == 1)?,
            counter,
        })
    }

    /// The file name.
    pub fn file_name(&self) -> String {
        match self.counter {
            None => format!("pullback-{}.conf", self.slot.letter()),
            Some((left, done)) => format!("pullback-{}+{left}-{done}.conf", self.slot.letter()),
        }
    }

    /// Whether systemd-boot considers the entry spent: counting, and no tries left.
    pub fn is_spent(&self) -> bool {
        matches!(self.counter, Some((0, _)))
    }
}

/// The text of a slot's entry.
pub fn entry_text(slot: Slot, version: &str, role: Role) -> String {
    let title = match role {
        Role::Trial => format!("Pullback {version} (slot {slot}, trying)"),
        Role::Active => format!("Pullback {version} (slot {slot})"),
        Role::Previous => format!("Pullback {version} (slot {slot}, previous)"),
    };
    let trial = if role == Role::Trial {
        " pullback.trial"
    } else {
        ""
    };
    format!(
        "title {title}\nversion {version}\nsort-key {}\nlinux /pullback/{l}/vmlinuz\n\
         initrd /pullback/{l}/initrd.img\noptions root=PARTUUID={uuid} rw rootwait \
         pullback.slot={l}{trial} console=ttyS0,115200 console=tty0 panic=10 quiet\n",
        role.sort_key(),
        l = slot.letter(),
        uuid = slot.partition_uuid(),
    )
}

/// The ESP, mounted at a folder.
#[derive(Debug, Clone)]
pub struct Esp {
    root: PathBuf,
}

impl Esp {
    /// The ESP mounted at `root`.
    pub fn at(root: impl Into<PathBuf>) -> Esp {
        Esp { root: root.into() }
    }

    fn entries_dir(&self) -> PathBuf {
        self.root.join("loader/entries")
    }

    /// The folder of a slot's kernel and initramfs.
    pub fn kernel_dir(&self, slot: Slot) -> PathBuf {
        self.root.join("pullback").join(slot.letter())
    }

    /// Our entry files, sorted by name.
    pub fn entries(&self) -> std::io::Result<Vec<EntryName>> {
        let mut entries = Vec::new();
        for item in std::fs::read_dir(self.entries_dir())? {
            let name = item?.file_name();
            if let Some(entry) = name.to_str().and_then(EntryName::parse) {
                entries.push(entry);
            }
        }
        entries.sort_by_key(EntryName::file_name);
        Ok(entries)
    }

    /// Removes every entry of `slot`.
    pub fn remove_entries(&self, slot: Slot) -> std::io::Result<()> {
        for entry in self.entries()? {
            if entry.slot == slot {
                std::fs::remove_file(self.entries_dir().join(entry.file_name()))?;
            }
        }
        Ok(())
    }

    /// Replaces the entries of `slot` by one, named `name`, with `text`.
    pub fn set_entry(&self, name: &EntryName, text: &str) -> std::io::Result<()> {
        let others: Vec<EntryName> = self
            .entries()?
            .into_iter()
            .filter(|e| e.slot == name.slot && e != name)
            .collect();
        write_synced(&self.entries_dir().join(name.file_name()), text.as_bytes())?;
        for entry in others {
            std::fs::remove_file(self.entries_dir().join(entry.file_name()))?;
        }
        Ok(())
    }

    /// The title line of the entry `name`, for messages.
    pub fn read_entry(&self, name: &EntryName) -> std::io::Result<String> {
        std::fs::read_to_string(self.entries_dir().join(name.file_name()))
    }
}

/// Writes a file through a temporary name and syncs it, so a power cut leaves the old or
/// the new content.
pub fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let parent = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)?;
    let tmp = parent.join(format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file")
    ));
    {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Ok(dir) = std::fs::File::open(parent) {
        // Not every filesystem syncs a folder (FAT does not need to); the rename is done.
        let _ = dir.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_names_round_trip_with_their_counters() {
        let checks = [
            ("pullback-a.conf", Some((Slot::A, None))),
            ("pullback-b+1-0.conf", Some((Slot::B, Some((1, 0))))),
            ("pullback-b+0-1.conf", Some((Slot::B, Some((0, 1))))),
            ("pullback-a+1.conf", Some((Slot::A, Some((1, 0))))),
            ("pullback-c.conf", None),
            ("pullback-ab.conf", None),
            ("debian.conf", None),
            ("pullback-a+x.conf", None),
        ];
        for (name, expected) in checks {
            let parsed = EntryName::parse(name);
            assert_eq!(
                parsed.as_ref().map(|e| (e.slot, e.counter)),
                expected,
                "{name}"
            );
        }
        let spent = EntryName::parse("pullback-b+0-1.conf").unwrap();
        assert!(spent.is_spent());
        assert_eq!(spent.file_name(), "pullback-b+0-1.conf");
        assert!(!EntryName::parse("pullback-b+1-0.conf").unwrap().is_spent());
    }

    #[test]
    fn reads_the_booted_slot_from_the_command_line() {
        let checks = [
            ("root=x pullback.slot=a quiet", Some((Slot::A, false))),
            ("pullback.slot=b pullback.trial", Some((Slot::B, true))),
            ("root=x quiet", None),
            ("pullback.slot=c", None),
        ];
        for (cmdline, expected) in checks {
            assert_eq!(booted(cmdline), expected, "{cmdline}");
        }
    }

    #[test]
    fn entries_sort_trial_then_active_then_previous() {
        let keys: Vec<String> = [Role::Previous, Role::Trial, Role::Active]
            .iter()
            .map(|role| {
                let text = entry_text(Slot::A, "1.0.0", *role);
                text.lines()
                    .find(|l| l.starts_with("sort-key"))
                    .unwrap()
                    .to_string()
            })
            .collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(sorted, [keys[1].clone(), keys[2].clone(), keys[0].clone()]);
        assert!(
            entry_text(Slot::B, "1.0.0", Role::Trial).contains("pullback.slot=b pullback.trial")
        );
        assert!(!entry_text(Slot::B, "1.0.0", Role::Active).contains("pullback.trial"));
    }
}

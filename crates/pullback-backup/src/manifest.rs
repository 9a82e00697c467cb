//! The manifest that makes a folder of files a backup: who made it, of what, and the size and
//! SHA-256 of every file, so that a backup can be checked without trusting where it was kept.

use crate::BackupError;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The manifest format this version writes and the newest it reads.
pub const MANIFEST_FORMAT: u32 = 1;

/// The manifest's file name inside a backup folder; written last, so a folder without it is
/// not a backup.
pub const MANIFEST_FILE: &str = "manifest.json";

/// The suffix of a backup folder still being written.
pub const PARTIAL_SUFFIX: &str = ".partial";

/// The suffix of a backup folder being deleted.
pub const DELETING_SUFFIX: &str = ".deleting";

/// The largest manifest read back; a bigger one is refused rather than loaded.
pub(crate) const MANIFEST_MAX_BYTES: u64 = 64 << 20;

/// What a backup holds, written as `manifest.json` beside its files.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// The manifest's own format, [`MANIFEST_FORMAT`] when written by this version.
    pub manifest_format: u32,
    /// The backup's id and folder name, such as `20261205T001500Z-n1` (see [`backup_id`]).
    pub id: String,
    /// The Pullback version that made the backup.
    pub pullback_version: String,
    /// The format of the stored data inside the files, so a restore can refuse what it cannot
    /// read.
    pub data_format: u8,
    /// The identity of the cluster the backup was taken from.
    pub cluster: String,
    /// The node that took the backup.
    pub node_id: u64,
    /// When the backup was taken.
    pub created_at: DateTime<Utc>,
    /// The last Raft log index applied to the state in the backup.
    pub applied_index: u64,
    /// Counts of records by kind (alerts, incidents, ...), for people choosing a backup.
    pub counts: BTreeMap<String, u64>,
    /// Every file of the backup, sorted by path; filled in while the backup is written.
    pub files: Vec<FileEntry>,
}

/// One file of a backup.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// The path inside the backup folder: relative, `/`-separated, without `.` or `..`.
    pub path: String,
    /// The size in bytes.
    pub size: u64,
    /// The SHA-256 of the content, 64 lower-case hexadecimal digits.
    pub sha256: String,
}

impl Manifest {
    /// The sum of the sizes of the files.
    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }

    /// The manifest as written to `manifest.json`: indented JSON ending in a newline.
    pub fn to_json(&self) -> Vec<u8> {
        // Serialising plain data with string keys cannot fail.
        let mut bytes = serde_json::to_vec_pretty(self).expect("a manifest serialises");
        bytes.push(b'\n');
        bytes
    }

    /// Reads the `manifest.json` of the backup folder named `id`, refusing a manifest of a
    /// newer format, one that names another backup, and any file path that could point
    /// outside the backup folder.
    pub fn from_json(id: &str, bytes: &[u8]) -> Result<Manifest, BackupError> {
        let bad = |problem: String| BackupError::BadManifest {
            id: id.to_owned(),
            problem,
        };
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| bad(format!("not JSON: {e}")))?;
        match value
            .get("manifest_format")
            .and_then(serde_json::Value::as_u64)
        {
            Some(format) if format == u64::from(MANIFEST_FORMAT) => {}
            Some(format) => {
                return Err(bad(format!(
                    "manifest format {format} is not one this version reads ({MANIFEST_FORMAT}); \
                     a newer Pullback wrote it"
                )));
            }
            None => return Err(bad("manifest_format is missing".to_owned())),
        }
        let manifest: Manifest =
            serde_json::from_value(value).map_err(|e| bad(format!("unreadable: {e}")))?;
        if manifest.id != id {
            return Err(bad(format!("it names backup {:?}", manifest.id)));
        }
        manifest.check_files().map_err(bad)?;
        Ok(manifest)
    }

    /// Checks every file entry: a safe path, listed once, and a well-formed hash.
    fn check_files(&self) -> Result<(), String> {
        let mut seen = std::collections::HashSet::new();
        for file in &self.files {
            check_relative_path(&file.path).map_err(|e| format!("file {:?}: {e}", file.path))?;
            if file.path == MANIFEST_FILE {
                return Err(format!("file {MANIFEST_FILE:?} cannot be listed in itself"));
            }
            if !seen.insert(file.path.as_str()) {
                return Err(format!("file {:?} is listed twice", file.path));
            }
            let hex_ok = file.sha256.len() == 64
                && file
                    .sha256
                    .bytes()
                    .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
            if !hex_ok {
                return Err(format!("file {:?}: sha256 is not 64 hex digits", file.path));
            }
        }
        Ok(())
    }
}

/// The usual id of a backup: its UTC time to the second and the node that took it, such as
/// `20261205T001500Z-n1`. Ids of one node sort in time order.
pub fn backup_id(created_at: DateTime<Utc>, node_id: u64) -> String {
    format!("{}-n{node_id}", created_at.format("%Y%m%dT%H%M%SZ"))
}

/// Checks that `id` can name a backup folder: 1 to 128 characters among letters, digits,
/// `-`, `_` and `.`, not starting with `.`, not ending in a reserved suffix.
pub fn check_id(id: &str) -> Result<(), BackupError> {
    let reason = if id.is_empty() || id.len() > 128 {
        Some("it must have 1 to 128 characters")
    } else if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        Some("only letters, digits, '-', '_' and '.' are allowed")
    } else if id.starts_with('.') {
        Some("it cannot start with '.'")
    } else if id.ends_with(PARTIAL_SUFFIX) || id.ends_with(DELETING_SUFFIX) {
        Some("it cannot end in .partial or .deleting")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(BackupError::InvalidId {
            id: id.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

/// Checks a file path from a manifest: relative, `/`-separated, no empty, `.` or `..` part,
/// no backslash or NUL.
pub(crate) fn check_relative_path(path: &str) -> Result<(), &'static str> {
    if path.is_empty() {
        return Err("the path is empty");
    }
    if path.contains('\\') || path.contains('\0') {
        return Err("the path holds a backslash or NUL");
    }
    if path.starts_with('/') {
        return Err("the path is absolute");
    }
    if path
        .split('/')
        .any(|part| part.is_empty() || part == "." || part == "..")
    {
        return Err("the path has an empty, '.' or '..' part");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn manifest(files: Vec<FileEntry>) -> Manifest {
        Manifest {
            manifest_format: MANIFEST_FORMAT,
            id: "b1".to_owned(),
            pullback_version: "0.1.0".to_owned(),
            data_format: 1,
            cluster: "c".to_owned(),
            node_id: 1,
            created_at: Utc.with_ymd_and_hms(2026, 12, 5, 0, 15, 0).unwrap(),
            applied_index: 7,
            counts: BTreeMap::from([("alerts".to_owned(), 3)]),
            files,
        }
    }

    fn file(path: &str) -> FileEntry {
        FileEntry {
            path: path.to_owned(),
            size: 1,
            sha256: "a".repeat(64),
        }
    }

    #[test]
    fn round_trips() {
        let m = manifest(vec![file("a/b.sst"), file("CURRENT")]);
        assert_eq!(Manifest::from_json("b1", &m.to_json()).unwrap(), m);
    }

    #[test]
    fn backup_ids_carry_time_and_node() {
        let at = Utc.with_ymd_and_hms(2026, 12, 5, 0, 15, 0).unwrap();
        assert_eq!(backup_id(at, 1), "20261205T001500Z-n1");
        check_id(&backup_id(at, 1)).unwrap();
    }

    #[test]
    fn refuses_bad_manifests() {
        let check = |m: Manifest, id: &str, needle: &str| {
            let error = Manifest::from_json(id, &m.to_json())
                .unwrap_err()
                .to_string();
            assert!(
                error.contains(needle),
                "{error:?} should contain {needle:?}"
            );
        };
        check(manifest(vec![file("../x")]), "b1", "'..' part");
        check(manifest(vec![file("/etc/passwd")]), "b1", "absolute");
        check(manifest(vec![file("a//b")]), "b1", "empty");
        check(manifest(vec![file("a\\b")]), "b1", "backslash");
        check(manifest(vec![file("a"), file("a")]), "b1", "listed twice");
        check(manifest(vec![file(MANIFEST_FILE)]), "b1", "in itself");
        check(manifest(vec![]), "b2", "names backup \"b1\"");
        let mut short = file("a");
        short.sha256 = "abc".to_owned();
        check(manifest(vec![short]), "b1", "64 hex");
        let mut newer = manifest(vec![]);
        newer.manifest_format = 2;
        check(newer, "b1", "manifest format 2");
    }

    #[test]
    fn refuses_bad_ids() {
        for id in ["", ".hidden", "a/b", "..", "x.partial", "x.deleting", "a b"] {
            assert!(check_id(id).is_err(), "{id:?} should be refused");
        }
    }
}

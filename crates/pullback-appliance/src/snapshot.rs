//! The copy of the node's data taken before an upgrade writes a slot.
//!
//! The node is stopped first, so the RocksDB files are at rest. Its table files (`.sst`,
//! `.blob`) are never changed once written, so the snapshot hard-links them instead of
//! copying them: it costs the space of the small files only (the manifest, the write-ahead
//! log, options, certificates) and takes a moment whatever the size of the store. The files
//! the node would change later are copied. Owners and modes are kept, so that a restore
//! gives the node back files it can open.

use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

/// What a snapshot or a restore did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Copied {
    /// Files shared by a hard link.
    pub linked: u64,
    /// Files copied.
    pub copied: u64,
    /// Bytes of the copied files.
    pub copied_bytes: u64,
}

/// Whether a file never changes after it is written, so that a link is as good as a copy.
fn immutable(name: &str) -> bool {
    name.ends_with(".sst") || name.ends_with(".blob")
}

/// Copies the tree `source` to `dest` (which must not exist), linking immutable files.
pub fn take(source: &Path, dest: &Path) -> io::Result<Copied> {
    if dest.exists() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} already exists", dest.display()),
        ));
    }
    let tmp = suffixed(dest, "partial");
    if tmp.exists() {
        fs::remove_dir_all(&tmp)?;
    }
    let mut copied = Copied::default();
    copy_tree(source, &tmp, &mut copied)?;
    sync_tree(&tmp)?;
    fs::rename(&tmp, dest)?;
    Ok(copied)
}

/// Puts the snapshot `snapshot` back as `target`, keeping the snapshot. The current
/// `target` is moved aside first and removed once the restore is complete.
pub fn restore(snapshot: &Path, target: &Path) -> io::Result<Copied> {
    let staged = suffixed(target, "restoring");
    if staged.exists() {
        fs::remove_dir_all(&staged)?;
    }
    let mut copied = Copied::default();
    copy_tree(snapshot, &staged, &mut copied)?;
    sync_tree(&staged)?;
    let aside = suffixed(target, "replaced");
    if aside.exists() {
        fs::remove_dir_all(&aside)?;
    }
    if target.exists() {
        fs::rename(target, &aside)?;
    }
    fs::rename(&staged, target)?;
    if aside.exists() {
        fs::remove_dir_all(&aside)?;
    }
    Ok(copied)
}

/// `path` with `.suffix` added to its last component (`with_extension` would replace a
/// version's last number).
fn suffixed(path: &Path, suffix: &str) -> std::path::PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".");
    name.push(suffix);
    path.with_file_name(name)
}

fn copy_tree(source: &Path, dest: &Path, copied: &mut Copied) -> io::Result<()> {
    let meta = fs::symlink_metadata(source)?;
    fs::create_dir(dest)?;
    keep_owner_and_mode(dest, &meta)?;
    let mut items: Vec<_> = fs::read_dir(source)?.collect::<Result<_, _>>()?;
    items.sort_by_key(|item| item.file_name());
    for item in items {
        let from = item.path();
        let to = dest.join(item.file_name());
        let meta = fs::symlink_metadata(&from)?;
        if meta.is_dir() {
            copy_tree(&from, &to, copied)?;
        } else if meta.file_type().is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(&from)?, &to)?;
        } else if immutable(&item.file_name().to_string_lossy()) {
            fs::hard_link(&from, &to)?;
            copied.linked += 1;
        } else {
            fs::copy(&from, &to)?;
            keep_owner_and_mode(&to, &meta)?;
            copied.copied += 1;
            copied.copied_bytes += meta.len();
        }
    }
    Ok(())
}

fn keep_owner_and_mode(path: &Path, meta: &fs::Metadata) -> io::Result<()> {
    match std::os::unix::fs::chown(path, Some(meta.uid()), Some(meta.gid())) {
        Ok(()) => {}
        // Only root may give files away; tests run the copy on their own files.
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {}
        Err(e) => return Err(e),
    }
    fs::set_permissions(path, fs::Permissions::from_mode(meta.mode() & 0o7777))
}

fn sync_tree(path: &Path) -> io::Result<()> {
    for item in fs::read_dir(path)? {
        let item = item?;
        if item.file_type()?.is_dir() {
            sync_tree(&item.path())?;
        } else if item.file_type()?.is_file() {
            fs::File::open(item.path())?.sync_all()?;
        }
    }
    fs::File::open(path)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_tables_copies_the_rest_and_restores() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("pullback");
        fs::create_dir_all(data.join("db")).unwrap();
        fs::create_dir_all(data.join("cluster")).unwrap();
        fs::write(data.join("db/000012.sst"), b"table").unwrap();
        fs::write(data.join("db/MANIFEST-000005"), b"manifest v1").unwrap();
        fs::write(data.join("cluster/node.key"), b"key").unwrap();
        fs::set_permissions(
            data.join("cluster/node.key"),
            fs::Permissions::from_mode(0o600),
        )
        .unwrap();

        let snapshot = dir.path().join("snapshots/before-0.1.0");
        fs::create_dir_all(dir.path().join("snapshots")).unwrap();
        let copied = take(&data, &snapshot).unwrap();
        assert_eq!((copied.linked, copied.copied), (1, 2));
        let linked = fs::metadata(snapshot.join("db/000012.sst")).unwrap();
        assert_eq!(
            linked.ino(),
            fs::metadata(data.join("db/000012.sst")).unwrap().ino()
        );
        let key = fs::metadata(snapshot.join("cluster/node.key")).unwrap();
        assert_eq!(key.mode() & 0o777, 0o600);
        assert!(
            take(&data, &snapshot).is_err(),
            "a snapshot is never overwritten"
        );

        // The node goes on: a new table, the manifest rewritten, a table compacted away.
        fs::write(data.join("db/MANIFEST-000005"), b"manifest v2").unwrap();
        fs::write(data.join("db/000020.sst"), b"new table").unwrap();
        fs::remove_file(data.join("db/000012.sst")).unwrap();

        restore(&snapshot, &data).unwrap();
        assert_eq!(
            fs::read(data.join("db/MANIFEST-000005")).unwrap(),
            b"manifest v1"
        );
        assert_eq!(fs::read(data.join("db/000012.sst")).unwrap(), b"table");
        assert!(!data.join("db/000020.sst").exists());
        assert!(
            snapshot.join("db/000012.sst").exists(),
            "the snapshot is kept"
        );
        assert!(!dir.path().join("pullback.replaced").exists());
    }
}

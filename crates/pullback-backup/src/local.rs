//! The local target: backups in sub-folders of a folder on this machine, such as a mounted
//! disk or network share. File work runs on tokio's blocking pool, several files at once.

use crate::error::io_error;
use crate::manifest::{
    DELETING_SUFFIX, MANIFEST_FILE, MANIFEST_FORMAT, MANIFEST_MAX_BYTES, PARTIAL_SUFFIX, check_id,
    check_relative_path,
};
use crate::progress::{Meter, ProgressFn, Stage, run_blocking};
use crate::stream::{Streamed, run_parallel, stream_file, syncing_while};
use crate::{BackupError, FileEntry, Manifest, STALE_PARTIAL_AFTER};
use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Backups in a local folder: `<root>/<id>/` holds a backup's files and its `manifest.json`.
#[derive(Clone, Debug)]
pub struct LocalTarget {
    root: PathBuf,
}

/// A file found in the folder being backed up.
#[derive(Debug)]
pub(crate) struct SourceFile {
    /// The path inside the folder, `/`-separated.
    pub(crate) relative: String,
    /// Where it is.
    pub(crate) path: PathBuf,
    /// Its size when it was listed.
    pub(crate) size: u64,
}

impl LocalTarget {
    /// A target keeping backups in `root`, which must exist when backups are written.
    pub fn new(root: impl Into<PathBuf>) -> LocalTarget {
        LocalTarget { root: root.into() }
    }

    /// The folder holding the backups.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Copies every regular file under `source_dir` into `<root>/<id>.partial/`, hashing as
    /// it goes, writes the manifest, syncs everything to disk and renames the folder to
    /// `<root>/<id>`. Returns the manifest with its files filled in.
    pub async fn write(
        &self,
        source_dir: &Path,
        id: &str,
        manifest: impl Future<Output = Result<Manifest, BackupError>> + Send,
        progress: &ProgressFn<'_>,
    ) -> Result<Manifest, BackupError> {
        let (root, source, owned_id) = (self.root.clone(), source_dir.to_owned(), id.to_owned());
        let (partial, files, entries) = run_blocking(Stage::Writing, progress, move |meter| {
            write_files(&root, &source, &owned_id, meter)
        })
        .await?;
        let described = match manifest.await {
            Ok(manifest) if manifest.id != id => Err(BackupError::Describe {
                reason: format!("the manifest is for backup {}, not {id}", manifest.id),
            }),
            described => described,
        };
        match described {
            Ok(manifest) => {
                let root = self.root.clone();
                // The bytes are all counted already; this part reports no progress of its own.
                blocking(move || finish(&root, &partial, &files, entries, manifest)).await
            }
            Err(e) => {
                // Best effort: the error that stopped the write is the one to report.
                let _ = fs::remove_dir_all(&partial);
                Err(e)
            }
        }
    }

    /// Reads the backup back and checks every file against the manifest.
    pub async fn verify(
        &self,
        id: &str,
        progress: &ProgressFn<'_>,
    ) -> Result<Manifest, BackupError> {
        let root = self.root.clone();
        let id = id.to_owned();
        run_blocking(Stage::Verifying, progress, move |meter| {
            verify(&root, &id, meter)
        })
        .await
    }

    /// Copies the backup's files into `into` (absent or empty), checking each against the
    /// manifest. On failure `into` is left empty.
    pub async fn fetch(
        &self,
        id: &str,
        into: &Path,
        progress: &ProgressFn<'_>,
    ) -> Result<Manifest, BackupError> {
        let root = self.root.clone();
        let id = id.to_owned();
        let into = into.to_owned();
        run_blocking(Stage::Fetching, progress, move |meter| {
            fetch(&root, &id, &into, meter)
        })
        .await
    }

    /// The complete backups, oldest first.
    pub async fn list(&self) -> Result<Vec<Manifest>, BackupError> {
        let root = self.root.clone();
        blocking(move || list(&root)).await
    }

    /// Deletes one backup.
    pub async fn delete(&self, id: &str) -> Result<(), BackupError> {
        let root = self.root.clone();
        let id = id.to_owned();
        blocking(move || delete(&root, &id)).await
    }

    /// Keeps the newest `keep` complete backups and deletes the others, and any unfinished
    /// folder untouched for an hour. Returns the names deleted.
    pub async fn prune(&self, keep: usize) -> Result<Vec<String>, BackupError> {
        let root = self.root.clone();
        blocking(move || prune(&root, keep)).await
    }
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, BackupError> + Send + 'static,
) -> Result<T, BackupError> {
    run_blocking(Stage::Verifying, crate::NO_PROGRESS, move |_| work()).await
}

/// Copies the files of `source` into `<root>/<id>.partial/`; returns that folder, the files
/// and their entries.
fn write_files(
    root: &Path,
    source: &Path,
    id: &str,
    meter: &Meter,
) -> Result<(PathBuf, Vec<SourceFile>, Vec<FileEntry>), BackupError> {
    check_id(id)?;
    check_root(root)?;
    let done = root.join(id);
    if done.exists() {
        return Err(BackupError::AlreadyExists {
            id: id.to_owned(),
            location: root.display().to_string(),
        });
    }
    let files = walk_source(source)?;
    meter.set_total(files.iter().map(|f| f.size).sum());

    let partial = root.join(format!("{id}{PARTIAL_SUFFIX}"));
    if partial.exists() {
        fs::remove_dir_all(&partial).map_err(io_error("removing the stale", &partial))?;
    }
    fs::create_dir(&partial).map_err(io_error("creating", &partial))?;
    match copy_into(&partial, &files, meter) {
        Ok(entries) => Ok((partial, files, entries)),
        Err(e) => {
            // Best effort: the error that stopped the write is the one to report.
            let _ = fs::remove_dir_all(&partial);
            Err(e)
        }
    }
}

/// Writes the manifest into the partial folder, syncs everything and renames the folder to
/// the backup's id, which makes it complete.
fn finish(
    root: &Path,
    partial: &Path,
    files: &[SourceFile],
    entries: Vec<FileEntry>,
    mut manifest: Manifest,
) -> Result<Manifest, BackupError> {
    manifest.manifest_format = MANIFEST_FORMAT;
    manifest.files = entries;
    let written = write_synced(&partial.join(MANIFEST_FILE), &manifest.to_json())
        .and_then(|()| sync_folders(partial, files.iter().map(|f| f.relative.as_str())));
    if let Err(e) = written {
        let _ = fs::remove_dir_all(partial);
        return Err(e);
    }
    let done = root.join(&manifest.id);
    fs::rename(partial, &done).map_err(io_error("renaming", partial))?;
    sync_folder(root)?;
    let id = &manifest.id;
    tracing::info!(id, target = %root.display(), bytes = manifest.total_bytes(), "backup written");
    Ok(manifest)
}

/// The target folder must exist: a missing mount point must not fill the disk under it.
fn check_root(root: &Path) -> Result<(), BackupError> {
    let metadata = fs::metadata(root).map_err(io_error("opening the target folder", root))?;
    if !metadata.is_dir() {
        return Err(io_error("opening the target folder", root)(
            io::Error::from(io::ErrorKind::NotADirectory),
        ));
    }
    Ok(())
}

/// Every regular file under `source`, sorted by path; symbolic links and special files are
/// left out.
pub(crate) fn walk_source(source: &Path) -> Result<Vec<SourceFile>, BackupError> {
    let metadata = fs::metadata(source).map_err(io_error("reading the source folder", source))?;
    if !metadata.is_dir() {
        return Err(BackupError::BadSource {
            path: source.to_owned(),
            problem: "not a folder".to_owned(),
        });
    }
    let mut files = Vec::new();
    let mut folders = vec![(source.to_owned(), String::new())];
    while let Some((folder, prefix)) = folders.pop() {
        let entries = fs::read_dir(&folder).map_err(io_error("listing", &folder))?;
        for entry in entries {
            let entry = entry.map_err(io_error("listing", &folder))?;
            let path = entry.path();
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                return Err(BackupError::BadSource {
                    path,
                    problem: "the name is not UTF-8".to_owned(),
                });
            };
            let relative = format!("{prefix}{name}");
            let kind = entry.file_type().map_err(io_error("reading", &path))?;
            if kind.is_dir() {
                folders.push((path, format!("{relative}/")));
            } else if kind.is_file() {
                let size = entry.metadata().map_err(io_error("reading", &path))?.len();
                files.push(SourceFile {
                    relative,
                    path,
                    size,
                });
            }
        }
    }
    for file in &files {
        if let Err(problem) = check_relative_path(&file.relative) {
            return Err(BackupError::BadSource {
                path: file.path.clone(),
                problem: problem.to_owned(),
            });
        }
        if file.relative == MANIFEST_FILE {
            return Err(BackupError::BadSource {
                path: file.path.clone(),
                problem: format!("a file named {MANIFEST_FILE} would clash with the manifest"),
            });
        }
    }
    files.sort_by(|a, b| a.relative.cmp(&b.relative));
    Ok(files)
}

/// Copies `files` into `folder`, largest first, several at once, and syncs them to disk;
/// returns their entries in path order.
fn copy_into(
    folder: &Path,
    files: &[SourceFile],
    meter: &Meter,
) -> Result<Vec<FileEntry>, BackupError> {
    create_parents(folder, files.iter().map(|f| f.relative.as_str()))?;
    let mut order: Vec<&SourceFile> = files.iter().collect();
    order.sort_by_key(|f| std::cmp::Reverse(f.size));
    let streamed = syncing_while(|sync| {
        let results = run_parallel(&order, meter, |file, buffers, meter| {
            let dest = folder.join(&file.relative);
            let streamed = stream_file(&file.path, Some(&dest), file.size, buffers, meter)?;
            sync(dest);
            Ok(streamed)
        });
        first_error(results)
    })?;
    let mut entries: Vec<FileEntry> = order
        .iter()
        .zip(streamed)
        .map(|(file, streamed)| FileEntry {
            path: file.relative.clone(),
            size: streamed.size,
            sha256: streamed.sha256,
        })
        .collect();
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(entries)
}

/// The results of all items, or the first error in item order, preferring a real failure to
/// the cancellations it caused.
pub(crate) fn first_error<R>(
    results: Vec<Option<Result<R, BackupError>>>,
) -> Result<Vec<R>, BackupError> {
    let mut values = Vec::with_capacity(results.len());
    let mut cancelled = false;
    let mut failure = None;
    for result in results {
        match result {
            Some(Ok(value)) => values.push(value),
            Some(Err(BackupError::Cancelled)) | None => cancelled = true,
            Some(Err(e)) => {
                failure.get_or_insert(e);
            }
        }
    }
    match (failure, cancelled) {
        (Some(e), _) => Err(e),
        (None, true) => Err(BackupError::Cancelled),
        (None, false) => Ok(values),
    }
}

/// Creates the sub-folders that the relative `paths` need under `folder`.
fn create_parents<'a>(
    folder: &Path,
    paths: impl Iterator<Item = &'a str>,
) -> Result<(), BackupError> {
    for parent in parents(paths) {
        let path = folder.join(parent);
        fs::create_dir_all(&path).map_err(io_error("creating", &path))?;
    }
    Ok(())
}

/// The distinct parent folders of relative `/`-separated paths, each before its children.
pub(crate) fn parents<'a>(paths: impl Iterator<Item = &'a str>) -> BTreeSet<&'a str> {
    let mut parents = BTreeSet::new();
    for path in paths {
        let mut end = path.len();
        while let Some(slash) = path[..end].rfind('/') {
            if !parents.insert(&path[..slash]) {
                break;
            }
            end = slash;
        }
    }
    parents
}

/// Writes a new file and syncs it to disk.
fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), BackupError> {
    let mut file = File::create_new(path).map_err(io_error("creating", path))?;
    file.write_all(bytes).map_err(io_error("writing", path))?;
    file.sync_all().map_err(io_error("syncing", path))
}

/// Syncs `folder` and the sub-folders the relative `paths` are in, deepest first, so their
/// entries are on disk before the backup is renamed complete.
fn sync_folders<'a>(
    folder: &Path,
    paths: impl Iterator<Item = &'a str>,
) -> Result<(), BackupError> {
    for parent in parents(paths).iter().rev() {
        sync_folder(&folder.join(parent))?;
    }
    sync_folder(folder)
}

fn sync_folder(folder: &Path) -> Result<(), BackupError> {
    File::open(folder)
        .and_then(|f| f.sync_all())
        .map_err(io_error("syncing", folder))
}

/// Reads and checks the manifest of the backup folder `folder` named `id`.
fn read_manifest(folder: &Path, id: &str) -> Result<Manifest, BackupError> {
    let path = folder.join(MANIFEST_FILE);
    let file = File::open(&path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => BackupError::BadManifest {
            id: id.to_owned(),
            problem: "missing".to_owned(),
        },
        _ => io_error("opening", &path)(e),
    })?;
    let mut bytes = Vec::new();
    file.take(MANIFEST_MAX_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io_error("reading", &path))?;
    if bytes.len() as u64 > MANIFEST_MAX_BYTES {
        return Err(BackupError::BadManifest {
            id: id.to_owned(),
            problem: format!("larger than {MANIFEST_MAX_BYTES} bytes"),
        });
    }
    Manifest::from_json(id, &bytes)
}

/// The folder of the complete backup `id`, with its manifest.
fn open_backup(root: &Path, id: &str) -> Result<(PathBuf, Manifest), BackupError> {
    check_id(id)?;
    let folder = root.join(id);
    if !folder.is_dir() {
        return Err(BackupError::NotFound {
            id: id.to_owned(),
            location: root.display().to_string(),
        });
    }
    let manifest = read_manifest(&folder, id)?;
    Ok((folder, manifest))
}

/// Checks that every file of the manifest is in `folder` with its size, in manifest order,
/// before anything is read.
fn check_sizes(folder: &Path, manifest: &Manifest) -> Result<(), BackupError> {
    for entry in &manifest.files {
        let path = folder.join(&entry.path);
        let found = match fs::symlink_metadata(&path) {
            Ok(metadata) if metadata.is_file() => Some(metadata.len()),
            Ok(_) => None,
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_error("reading", &path)(e)),
        };
        if let Some(problem) = size_problem(found, entry.size) {
            return Err(bad_file(manifest, entry, problem));
        }
    }
    Ok(())
}

/// What is wrong with a file of `found` bytes (`None`: no such file) where the manifest says
/// `expected`.
pub(crate) fn size_problem(found: Option<u64>, expected: u64) -> Option<String> {
    match found {
        None => Some("missing".to_owned()),
        Some(found) if found < expected => Some(format!(
            "truncated: {found} bytes, the manifest says {expected}"
        )),
        Some(found) if found > expected => Some(format!(
            "too long: {found} bytes, the manifest says {expected}"
        )),
        Some(_) => None,
    }
}

/// Compares what was read with the manifest's entry.
pub(crate) fn check_streamed(
    manifest: &Manifest,
    entry: &FileEntry,
    streamed: &Streamed,
) -> Result<(), BackupError> {
    if let Some(problem) = size_problem(Some(streamed.size), entry.size) {
        return Err(bad_file(manifest, entry, problem));
    }
    if streamed.sha256 != entry.sha256 {
        return Err(bad_file(
            manifest,
            entry,
            format!(
                "corrupted: its SHA-256 is {}, the manifest says {}",
                streamed.sha256, entry.sha256
            ),
        ));
    }
    Ok(())
}

pub(crate) fn bad_file(manifest: &Manifest, entry: &FileEntry, problem: String) -> BackupError {
    BackupError::BadFile {
        id: manifest.id.clone(),
        file: entry.path.clone(),
        problem,
    }
}

fn verify(root: &Path, id: &str, meter: &Meter) -> Result<Manifest, BackupError> {
    let (folder, manifest) = open_backup(root, id)?;
    check_sizes(&folder, &manifest)?;
    meter.set_total(manifest.total_bytes());
    let order = largest_first(&manifest);
    let results = run_parallel(&order, meter, |entry, buffers, meter| {
        let streamed = stream_file(&folder.join(&entry.path), None, entry.size, buffers, meter)?;
        check_streamed(&manifest, entry, &streamed)
    });
    first_error(in_manifest_order(&manifest, &order, results))?;
    Ok(manifest)
}

fn largest_first(manifest: &Manifest) -> Vec<&FileEntry> {
    let mut order: Vec<&FileEntry> = manifest.files.iter().collect();
    order.sort_by_key(|f| std::cmp::Reverse(f.size));
    order
}

/// Puts results of entries taken largest first back in manifest order, so that the first bad
/// file reported is the first in the manifest among those found bad.
fn in_manifest_order<R>(
    manifest: &Manifest,
    order: &[&FileEntry],
    results: Vec<Option<Result<R, BackupError>>>,
) -> Vec<Option<Result<R, BackupError>>> {
    let mut by_path: std::collections::HashMap<&str, Option<Result<R, BackupError>>> =
        order.iter().map(|e| e.path.as_str()).zip(results).collect();
    manifest
        .files
        .iter()
        .map(|e| by_path.remove(e.path.as_str()).flatten())
        .collect()
}

fn fetch(root: &Path, id: &str, into: &Path, meter: &Meter) -> Result<Manifest, BackupError> {
    let (folder, manifest) = open_backup(root, id)?;
    check_sizes(&folder, &manifest)?;
    prepare_destination(into)?;
    meter.set_total(manifest.total_bytes());
    let fetched = create_parents(into, manifest.files.iter().map(|f| f.path.as_str()))
        .and_then(|()| {
            let order = largest_first(&manifest);
            syncing_while(|sync| {
                let results = run_parallel(&order, meter, |entry, buffers, meter| {
                    let dest = into.join(&entry.path);
                    let source = folder.join(&entry.path);
                    let streamed = stream_file(&source, Some(&dest), entry.size, buffers, meter)?;
                    check_streamed(&manifest, entry, &streamed)?;
                    sync(dest);
                    Ok(())
                });
                first_error(in_manifest_order(&manifest, &order, results))
            })
        })
        .and_then(|_| sync_folders(into, manifest.files.iter().map(|f| f.path.as_str())));
    if let Err(e) = fetched {
        empty_folder(into);
        return Err(e);
    }
    Ok(manifest)
}

/// Makes sure `into` is an empty folder, creating it if needed.
pub(crate) fn prepare_destination(into: &Path) -> Result<(), BackupError> {
    match fs::read_dir(into) {
        Ok(mut entries) => match entries.next() {
            None => Ok(()),
            Some(_) => Err(BackupError::BadDestination {
                path: into.to_owned(),
                problem: "the folder is not empty".to_owned(),
            }),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(into).map_err(io_error("creating", into))
        }
        Err(e) => Err(io_error("opening", into)(e)),
    }
}

/// Removes what a failed fetch left in `into`, which was empty before. Best effort: the
/// error that stopped the fetch is the one to report.
pub(crate) fn empty_folder(into: &Path) {
    let Ok(entries) = fs::read_dir(into) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let _ = match entry.file_type() {
            Ok(kind) if kind.is_dir() => fs::remove_dir_all(&path),
            _ => fs::remove_file(&path),
        };
    }
}

fn list(root: &Path) -> Result<Vec<Manifest>, BackupError> {
    let entries = fs::read_dir(root).map_err(io_error("listing", root))?;
    let mut manifests = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_error("listing", root))?;
        let Some(id) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if check_id(&id).is_err() || !entry.file_type().is_ok_and(|k| k.is_dir()) {
            continue;
        }
        let folder = entry.path();
        if !folder.join(MANIFEST_FILE).exists() {
            continue;
        }
        match read_manifest(&folder, &id) {
            Ok(manifest) => manifests.push(manifest),
            Err(error) => {
                tracing::warn!(id, target = %root.display(), %error, "backup left out of the list")
            }
        }
    }
    sort_oldest_first(&mut manifests);
    Ok(manifests)
}

pub(crate) fn sort_oldest_first(manifests: &mut [Manifest]) {
    manifests.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
}

fn delete(root: &Path, id: &str) -> Result<(), BackupError> {
    check_id(id)?;
    let folder = root.join(id);
    if !folder.is_dir() {
        return Err(BackupError::NotFound {
            id: id.to_owned(),
            location: root.display().to_string(),
        });
    }
    // Renamed first, so that a deletion cut short never leaves a backup that looks complete
    // but is not; prune removes the rest later.
    let deleting = root.join(format!("{id}{DELETING_SUFFIX}"));
    if deleting.exists() {
        fs::remove_dir_all(&deleting).map_err(io_error("removing", &deleting))?;
    }
    fs::rename(&folder, &deleting).map_err(io_error("renaming", &folder))?;
    fs::remove_dir_all(&deleting).map_err(io_error("removing", &deleting))?;
    tracing::info!(id, target = %root.display(), "backup deleted");
    Ok(())
}

fn prune(root: &Path, keep: usize) -> Result<Vec<String>, BackupError> {
    let manifests = list(root)?;
    let mut deleted = Vec::new();
    for manifest in &manifests[..manifests.len().saturating_sub(keep)] {
        delete(root, &manifest.id)?;
        deleted.push(manifest.id.clone());
    }
    let entries = fs::read_dir(root).map_err(io_error("listing", root))?;
    for entry in entries {
        let entry = entry.map_err(io_error("listing", root))?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let unfinished = name.ends_with(PARTIAL_SUFFIX) || name.ends_with(DELETING_SUFFIX);
        let path = entry.path();
        if !unfinished || !entry.file_type().is_ok_and(|k| k.is_dir()) {
            continue;
        }
        let last_change = newest_change(&path).map_err(io_error("reading", &path))?;
        let age = SystemTime::now()
            .duration_since(last_change)
            .unwrap_or_default();
        if age >= STALE_PARTIAL_AFTER {
            fs::remove_dir_all(&path).map_err(io_error("removing", &path))?;
            tracing::info!(name, target = %root.display(), "unfinished backup folder removed");
            deleted.push(name);
        }
    }
    Ok(deleted)
}

/// The latest modification time of `folder` and everything in it: a write under way keeps
/// changing the file it copies even when no new file appears.
fn newest_change(folder: &Path) -> io::Result<SystemTime> {
    let mut newest = fs::symlink_metadata(folder)?.modified()?;
    for entry in fs::read_dir(folder)? {
        let entry = entry?;
        let changed = if entry.file_type()?.is_dir() {
            newest_change(&entry.path())?
        } else {
            entry.metadata()?.modified()?
        };
        newest = newest.max(changed);
    }
    Ok(newest)
}

//! The store's side of backups: a consistent checkpoint taken while the node keeps working,
//! a read-only look at a checkpoint (what it holds, which data format, which cluster), and a
//! restore that turns a checkpoint into the store of a node that starts a group of its own.
//!
//! Copying a checkpoint to a backup target, hashing and verifying it is `pullback-backup`'s
//! work; this module never leaves the local disk.

use crate::db::{Cf, Db, StoreError, keys};
use crate::recovery::{Forgotten, RecoveryError, forget_group};
use pullback_domain::versioned::DATA_FORMAT;
use rocksdb::{DB, IteratorMode, Options};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::Path;

/// What a checkpoint holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    /// The last log entry its state reflects.
    pub applied_index: u64,
    /// The newest data format of any value in it.
    pub data_format: u8,
    /// `ca:<SHA-256 of the cluster CA certificate>`, or `standalone` for a node that never
    /// was part of a cluster.
    pub cluster: String,
    /// Records by kind: `alert`, `incident`, `job`, `user`, `audit`, `source`, `condition`.
    pub counts: BTreeMap<String, u64>,
}

const COUNTED: [&str; 7] = [
    "alert",
    "incident",
    "job",
    "user",
    "audit",
    "source",
    "condition",
];

fn rocks(doing: &'static str) -> impl Fn(rocksdb::Error) -> StoreError {
    move |source| StoreError::Rocks { doing, source }
}

/// The identity of the cluster whose CA certificate is `cert_pem`.
pub fn cluster_identity(cert_pem: Option<&str>) -> String {
    match cert_pem {
        Some(pem) => format!("ca:{}", hex::encode(Sha256::digest(pem.trim().as_bytes()))),
        None => "standalone".to_owned(),
    }
}

impl crate::Reader {
    /// Writes a consistent checkpoint of the whole store into `dir` (which must not exist)
    /// while the node keeps applying entries, and says what it holds. Most files are hard
    /// links to the live store's, so this takes moments and little space until the store
    /// compacts them away.
    pub fn backup_checkpoint(&self, dir: &Path) -> Result<Summary, StoreError> {
        self.store_checkpoint(dir)?;
        inspect(dir)
    }

    /// [`Reader::backup_checkpoint`] without the look at what it holds, for a caller that
    /// runs [`inspect`] itself, alongside other work on the same files.
    pub fn store_checkpoint(&self, dir: &Path) -> Result<(), StoreError> {
        rocksdb::checkpoint::Checkpoint::new(self.db().rocks())
            .and_then(|c| c.create_checkpoint(dir))
            .map_err(rocks("creating a checkpoint for a backup"))
    }
}

/// Opens the checkpoint at `dir` read-only and reads what it holds, looking at every value
/// of the replicated state (so a value that cannot be read is found here, not after a
/// restore).
pub fn inspect(dir: &Path) -> Result<Summary, StoreError> {
    if !dir.join("CURRENT").exists() {
        return Err(StoreError::Corrupt(format!(
            "{} holds no store (no CURRENT file)",
            dir.display()
        )));
    }
    let names = Cf::ALL.map(Cf::name);
    let frozen = DB::open_cf_for_read_only(&Options::default(), dir, names, false)
        .map_err(rocks("opening a checkpoint read-only"))?;
    let family = |cf: Cf| {
        frozen.cf_handle(cf.name()).ok_or_else(|| {
            StoreError::Corrupt(format!("the checkpoint has no {} family", cf.name()))
        })
    };
    let state = family(Cf::State)?;
    // Only the state family is read whole. Every value carries the data format of the build
    // that wrote it, and every applied entry rewrites the applied index in this family, so
    // a store written by a newer build shows it here; the index family holds ids derived
    // from the state (tens of millions of tiny entries, most of a scan's time) and the
    // search terms are rebuilt whenever their own version differs.
    family(Cf::Index)?;
    let Scan { newest, counts } = scan(&frozen, state)?;
    let get = |key: &[u8]| {
        frozen
            .get_cf(state, key)
            .map_err(rocks("reading a checkpoint"))
    };
    let applied = match get(keys::APPLIED)? {
        Some(bytes) if newest <= DATA_FORMAT => {
            crate::db::decode::<Option<crate::LogId>>(keys::APPLIED, &bytes)?
        }
        _ => None,
    };
    let ca = match get(keys::CLUSTER_CA)? {
        Some(bytes) if newest <= DATA_FORMAT => {
            Some(crate::db::decode::<crate::ClusterCa>(keys::CLUSTER_CA, &bytes)?.cert_pem)
        }
        _ => None,
    };
    Ok(Summary {
        applied_index: applied.map_or(0, |a| a.index),
        data_format: newest.max(1),
        cluster: cluster_identity(ca.as_deref()),
        counts,
    })
}

/// Moves a file by renaming it, which costs nothing on one filesystem; across filesystems
/// it copies the file, syncs the copy to disk and removes the original.
fn move_file(from: &Path, to: &Path) -> std::io::Result<()> {
    match std::fs::rename(from, to) {
        Err(e) if e.kind() == std::io::ErrorKind::CrossesDevices => {
            std::fs::copy(from, to)?;
            std::fs::File::open(to)?.sync_all()?;
            std::fs::remove_file(from)
        }
        moved => moved,
    }
}

/// What one pass over a column family found.
struct Scan {
    /// The newest data format among its values.
    newest: u8,
    /// Records by kind.
    counts: BTreeMap<String, u64>,
}

/// Reads every value of `family`, noting the newest data format and counting records by kind.
fn scan(frozen: &DB, family: &rocksdb::ColumnFamily) -> Result<Scan, StoreError> {
    let mut counts: BTreeMap<String, u64> = COUNTED.iter().map(|k| (k.to_string(), 0)).collect();
    let mut newest = 0u8;
    let mut options = rocksdb::ReadOptions::default();
    options.set_readahead_size(4 << 20);
    options.fill_cache(false);
    for item in frozen.iterator_cf_opt(family, options, IteratorMode::Start) {
        let (key, value) = item.map_err(rocks("reading a checkpoint"))?;
        newest = newest.max(value.first().copied().unwrap_or(0));
        if let Some(kind) = key.split(|b| *b == b'/').next()
            && let Some(count) = counts.get_mut(std::str::from_utf8(kind).unwrap_or(""))
        {
            *count += 1;
        }
    }
    Ok(Scan { newest, counts })
}

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error(
        "the backup has data format {found}; this Pullback reads formats up to {DATA_FORMAT}: \
         restore it with the same or a newer version"
    )]
    TooNew { found: u8 },
    #[error(
        "{0} already holds a store; restore into an empty data folder, or move the old one \
         away first"
    )]
    NotEmpty(String),
    #[error("moving {path}: {source}")]
    Move {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Recovery(#[from] RecoveryError),
}

/// Makes the checkpoint at `from` the store at `store_dir` (which must hold no store), and
/// makes it forget the Raft group it came from, so that the node starts a group of its own
/// with all the data; other nodes then join it and catch up.
///
/// The checkpoint's files are moved, not copied: `from` is left empty. On one filesystem
/// that is a rename per file, so a restore writes the store's bytes once (when they are
/// fetched), not twice.
pub fn restore(from: &Path, store_dir: &Path) -> Result<(Summary, Forgotten), RestoreError> {
    let summary = inspect(from)?;
    if summary.data_format > DATA_FORMAT {
        return Err(RestoreError::TooNew {
            found: summary.data_format,
        });
    }
    let forgotten = restore_verified(from, store_dir)?;
    Ok((summary, forgotten))
}

/// [`restore`] without reading the checkpoint's records first, for a checkpoint whose every
/// file was just checked against a verified backup's manifest (size and SHA-256): the scan
/// would only find again the counts and data format that manifest already holds, and costs
/// a read of the whole state (a third of a restore's time for 5 GB). The caller checks the
/// manifest's data format.
pub fn restore_verified(from: &Path, store_dir: &Path) -> Result<Forgotten, RestoreError> {
    if store_dir.join("CURRENT").exists() {
        return Err(RestoreError::NotEmpty(store_dir.display().to_string()));
    }
    let copy_error = |path: &Path| {
        let path = path.display().to_string();
        move |source| RestoreError::Move { path, source }
    };
    std::fs::create_dir_all(store_dir).map_err(copy_error(store_dir))?;
    for entry in std::fs::read_dir(from).map_err(copy_error(from))? {
        let entry = entry.map_err(copy_error(from))?;
        if entry
            .file_type()
            .map_err(copy_error(&entry.path()))?
            .is_file()
        {
            move_file(&entry.path(), &store_dir.join(entry.file_name()))
                .map_err(copy_error(&entry.path()))?;
        }
    }
    std::fs::File::open(store_dir)
        .and_then(|folder| folder.sync_all())
        .map_err(copy_error(store_dir))?;
    // Opening once with this build's options upgrades nothing on disk but proves the copy
    // opens; forgetting the group then leaves a store a node can start alone with.
    drop(Db::open(store_dir).map_err(RecoveryError::from)?);
    Ok(forget_group(store_dir)?)
}

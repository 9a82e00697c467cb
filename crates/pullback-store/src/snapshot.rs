//! Snapshots of the replicated state, kept as files beside the database.
//!
//! Building one takes a RocksDB checkpoint (hard links to the current SST files, after a
//! flush) and streams the `state` and `index` families out of that frozen copy into a file, so
//! a long build neither holds the live database's iterators nor sees later writes. The file is
//! a header (magic, data format) and length-prefixed records, so a newer release can read it.
//! openraft sends it to a lagging node in chunks (`snapshot_max_chunk_size`, 3 MiB), which
//! the receiver writes into a file of its own before installing it.

use crate::db::{Cf, Db, StoreError, decode, encode, keys};
use crate::{LogId, Member, NodeId};
use openraft::{SnapshotMeta, StoredMembership};
use pullback_domain::versioned::DATA_FORMAT;
use rocksdb::{DB, IteratorMode, Options, WriteBatch};
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

const MAGIC: &[u8; 8] = b"PBSNAP01";
const CURRENT_META: &[u8] = b"snapshot_meta";
/// Where an older release kept the snapshot's bytes; removed when a new snapshot is saved.
const LEGACY_DATA: &[u8] = b"snapshot_data";
/// The largest key or value a snapshot record may hold.
const MAX_RECORD_BYTES: usize = 256 << 20;
/// The folder, inside the database folder, that holds snapshot files.
const FOLDER: &str = "snapshots";

type Meta = SnapshotMeta<NodeId, Member>;

/// Distinguishes temporary files made by one process.
static SEQUENCE: AtomicU64 = AtomicU64::new(0);

fn io_error(doing: &'static str, path: &Path, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{doing} {}: {e}", path.display()))
}

fn folder(db: &Db) -> Result<PathBuf, StoreError> {
    let folder = db.rocks().path().join(FOLDER);
    std::fs::create_dir_all(&folder).map_err(|e| io_error("creating", &folder, e))?;
    Ok(folder)
}

fn file_of(db: &Db, meta: &Meta) -> Result<PathBuf, StoreError> {
    Ok(folder(db)?.join(format!("{}.snap", meta.snapshot_id)))
}

fn temporary(db: &Db, what: &str) -> Result<PathBuf, StoreError> {
    let n = SEQUENCE.fetch_add(1, Ordering::Relaxed);
    Ok(folder(db)?.join(format!("{what}-{}-{n}", std::process::id())))
}

/// Builds a snapshot of the applied state and makes it the current one.
pub(crate) fn build(db: &Db) -> Result<(Meta, PathBuf), StoreError> {
    let checkpoint_dir = temporary(db, "checkpoint")?;
    let checkpoint = rocksdb::checkpoint::Checkpoint::new(db.rocks())
        .and_then(|c| c.create_checkpoint(&checkpoint_dir))
        .map_err(|source| StoreError::Rocks {
            doing: "creating a checkpoint for a snapshot",
            source,
        });
    let built = checkpoint.and_then(|()| write_from_checkpoint(db, &checkpoint_dir));
    let _ = std::fs::remove_dir_all(&checkpoint_dir);
    let (meta, written) = built?;
    let path = file_of(db, &meta)?;
    std::fs::rename(&written, &path).map_err(|e| io_error("renaming", &written, e))?;
    save_current(db, &meta)?;
    Ok((meta, path))
}

/// Streams the replicated families of the checkpoint at `dir` into a new file.
fn write_from_checkpoint(db: &Db, dir: &Path) -> Result<(Meta, PathBuf), StoreError> {
    let rocks = |source| StoreError::Rocks {
        doing: "reading a checkpoint for a snapshot",
        source,
    };
    let names = Cf::ALL.map(Cf::name);
    let frozen =
        DB::open_cf_for_read_only(&Options::default(), dir, names, false).map_err(rocks)?;
    let cf = |cf: Cf| {
        frozen
            .cf_handle(cf.name())
            .expect("column family in checkpoint")
    };
    let read = |key: &[u8]| frozen.get_cf(cf(Cf::State), key).map_err(rocks);
    let applied: Option<LogId> = match read(keys::APPLIED)? {
        Some(bytes) => decode::<Option<LogId>>(keys::APPLIED, &bytes)?,
        None => None,
    };
    let membership: StoredMembership<NodeId, Member> = match read(keys::MEMBERSHIP)? {
        Some(bytes) => decode(keys::MEMBERSHIP, &bytes)?,
        None => StoredMembership::default(),
    };

    let path = temporary(db, "building")?;
    let file = File::create(&path).map_err(|e| io_error("creating", &path, e))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let write = |out: &mut BufWriter<File>, bytes: &[u8]| {
        out.write_all(bytes)
            .map_err(|e| io_error("writing", &path, e))
    };
    write(&mut out, MAGIC)?;
    write(&mut out, &[DATA_FORMAT])?;
    let mut size = 9u64;
    for family in Cf::REPLICATED {
        for item in frozen.iterator_cf(cf(family), IteratorMode::Start) {
            let (key, value) = item.map_err(rocks)?;
            write(&mut out, &[family.tag()])?;
            for bytes in [&key[..], &value[..]] {
                write(&mut out, &(bytes.len() as u32).to_be_bytes())?;
                write(&mut out, bytes)?;
            }
            size += 9 + key.len() as u64 + value.len() as u64;
        }
    }
    let file = out
        .into_inner()
        .map_err(|e| io_error("writing", &path, e.error()))?;
    file.sync_all().map_err(|e| io_error("syncing", &path, e))?;

    let snapshot_id = match applied {
        Some(id) => format!("{}-{}-{size}", id.leader_id.term, id.index),
        None => format!("empty-{size}"),
    };
    let meta = Meta {
        last_log_id: applied,
        last_membership: membership,
        snapshot_id,
    };
    Ok((meta, path))
}

/// A new, empty file for a snapshot being received.
pub(crate) fn receiving(db: &Db) -> Result<PathBuf, StoreError> {
    temporary(db, "receiving")
}

/// Replaces the replicated state with the snapshot in `received`, and keeps the file as the
/// current snapshot.
pub(crate) fn install(db: &Db, meta: &Meta, received: &Path) -> Result<(), StoreError> {
    // FIXME: the whole state goes into one write batch, so installing needs memory the size
    // of the state; ingesting SST files built by the sender would not.
    let file = File::open(received).map_err(|e| io_error("opening", received, e))?;
    let mut records = Records::new(BufReader::with_capacity(1 << 20, file))?;
    let mut batch = WriteBatch::default();
    for cf in Cf::REPLICATED {
        // Every key sorts before a run of 0xff bytes longer than any key we write.
        batch.delete_range_cf(db.cf(cf), [0u8].as_slice(), [0xffu8; 64].as_slice());
    }
    while let Some((cf, key, value)) = records.next_record()? {
        batch.put_cf(db.cf(cf), key, value);
    }
    batch.put_cf(db.cf(Cf::State), keys::APPLIED, encode(&meta.last_log_id));
    batch.put_cf(
        db.cf(Cf::State),
        keys::MEMBERSHIP,
        encode(&meta.last_membership),
    );
    db.write(batch, true)?;
    let path = file_of(db, meta)?;
    std::fs::rename(received, &path).map_err(|e| io_error("renaming", received, e))?;
    save_current(db, meta)
}

/// The current snapshot's meta and file, if there is one.
pub(crate) fn current(db: &Db) -> Result<Option<(Meta, PathBuf)>, StoreError> {
    let Some(meta) = db.get::<Meta>(Cf::Raft, CURRENT_META)? else {
        return Ok(None);
    };
    let path = file_of(db, &meta)?;
    // A snapshot saved by an older release lived in the database; the next build replaces it.
    Ok(path.exists().then_some((meta, path)))
}

/// Records `meta` as current and removes every other snapshot file.
fn save_current(db: &Db, meta: &Meta) -> Result<(), StoreError> {
    let mut batch = WriteBatch::default();
    batch.put_cf(db.cf(Cf::Raft), CURRENT_META, encode(meta));
    batch.delete_cf(db.cf(Cf::Raft), LEGACY_DATA);
    db.write(batch, true)?;
    let keep = file_of(db, meta)?;
    let folder = folder(db)?;
    for entry in std::fs::read_dir(&folder).map_err(|e| io_error("listing", &folder, e))? {
        let path = entry.map_err(|e| io_error("listing", &folder, e))?.path();
        let finished = path.extension().is_some_and(|e| e == "snap");
        if finished && path != keep {
            let _ = std::fs::remove_file(&path);
        }
    }
    Ok(())
}

/// One key and value of a column family.
type Record = (Cf, Vec<u8>, Vec<u8>);

/// Reads the records of a snapshot file one at a time.
struct Records<R> {
    input: R,
}

impl<R: Read> Records<R> {
    fn new(mut input: R) -> Result<Records<R>, StoreError> {
        let mut header = [0u8; 9];
        input
            .read_exact(&mut header)
            .map_err(|_| corrupt("has no header"))?;
        if &header[..8] != MAGIC.as_slice() {
            return Err(corrupt("has no header"));
        }
        let format = header[8];
        if format > DATA_FORMAT {
            return Err(StoreError::Corrupt(format!(
                "snapshot has data format {format}; this build reads up to {DATA_FORMAT}"
            )));
        }
        Ok(Records { input })
    }

    fn next_record(&mut self) -> Result<Option<Record>, StoreError> {
        let mut tag = [0u8; 1];
        match self.input.read(&mut tag) {
            Ok(0) => return Ok(None),
            Ok(_) => {}
            Err(e) => return Err(StoreError::Corrupt(format!("snapshot unreadable: {e}"))),
        }
        let cf = Cf::from_tag(tag[0])
            .filter(|cf| Cf::REPLICATED.contains(cf))
            .ok_or_else(|| corrupt("names an unknown column family"))?;
        let key = self.bytes().ok_or_else(|| corrupt("has a truncated key"))?;
        let value = self
            .bytes()
            .ok_or_else(|| corrupt("has a truncated value"))?;
        Ok(Some((cf, key, value)))
    }

    fn bytes(&mut self) -> Option<Vec<u8>> {
        let mut len = [0u8; 4];
        self.input.read_exact(&mut len).ok()?;
        let len = u32::from_be_bytes(len) as usize;
        // No record is this large; a corrupt length must not allocate gigabytes.
        if len > MAX_RECORD_BYTES {
            return None;
        }
        let mut bytes = vec![0u8; len];
        self.input.read_exact(&mut bytes).ok()?;
        Some(bytes)
    }
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("snapshot {what}"))
}

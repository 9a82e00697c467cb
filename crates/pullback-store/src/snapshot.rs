//! Snapshots of the replicated state.
//!
//! A snapshot is every key and value of the `state` and `index` families, read through one
//! RocksDB snapshot so it is consistent with the applied id it records. The format is a
//! header (magic, data format) and length-prefixed records, so a newer release can read it.

use crate::db::{Cf, Db, StoreError, decode, encode, keys};
use crate::{LogId, Member, NodeId};
use openraft::{SnapshotMeta, StoredMembership};
use pullback_domain::versioned::DATA_FORMAT;
use rocksdb::{IteratorMode, WriteBatch};

const MAGIC: &[u8; 8] = b"PBSNAP01";
const CURRENT_META: &[u8] = b"snapshot_meta";
const CURRENT_DATA: &[u8] = b"snapshot_data";

type Meta = SnapshotMeta<NodeId, Member>;

// FIXME: the whole snapshot is built in memory and kept in the database; with a large state
// this costs memory and write amplification. Build it from a RocksDB checkpoint and stream
// it in chunks when clusters with long-lagging members arrive.
pub(crate) fn build(db: &Db) -> Result<(Meta, Vec<u8>), StoreError> {
    let rocks = db.rocks();
    let view = rocks.snapshot();
    let read = |key: &[u8]| -> Result<Option<Vec<u8>>, StoreError> {
        view.get_cf(db.cf(Cf::State), key)
            .map_err(|source| StoreError::Rocks {
                doing: "reading for a snapshot",
                source,
            })
    };
    let applied: Option<LogId> = match read(keys::APPLIED)? {
        Some(bytes) => decode::<Option<LogId>>(keys::APPLIED, &bytes)?,
        None => None,
    };
    let membership: StoredMembership<NodeId, Member> = match read(keys::MEMBERSHIP)? {
        Some(bytes) => decode(keys::MEMBERSHIP, &bytes)?,
        None => StoredMembership::default(),
    };

    let mut data = Vec::with_capacity(1 << 16);
    data.extend_from_slice(MAGIC);
    data.push(DATA_FORMAT);
    for cf in Cf::REPLICATED {
        for item in view.iterator_cf(db.cf(cf), IteratorMode::Start) {
            let (key, value) = item.map_err(|source| StoreError::Rocks {
                doing: "reading for a snapshot",
                source,
            })?;
            data.push(cf.tag());
            put_bytes(&mut data, &key);
            put_bytes(&mut data, &value);
        }
    }

    let snapshot_id = match applied {
        Some(id) => format!("{}-{}-{}", id.leader_id.term, id.index, data.len()),
        None => format!("empty-{}", data.len()),
    };
    let meta = Meta {
        last_log_id: applied,
        last_membership: membership,
        snapshot_id,
    };
    save_current(db, &meta, &data)?;
    Ok((meta, data))
}

pub(crate) fn install(db: &Db, meta: &Meta, data: &[u8]) -> Result<(), StoreError> {
    let records = parse(data)?;
    let mut batch = WriteBatch::default();
    for cf in Cf::REPLICATED {
        // Every key sorts before a run of 0xff bytes longer than any key we write.
        batch.delete_range_cf(db.cf(cf), [0u8].as_slice(), [0xffu8; 64].as_slice());
    }
    for (cf, key, value) in records {
        batch.put_cf(db.cf(cf), key, value);
    }
    batch.put_cf(db.cf(Cf::State), keys::APPLIED, encode(&meta.last_log_id));
    batch.put_cf(
        db.cf(Cf::State),
        keys::MEMBERSHIP,
        encode(&meta.last_membership),
    );
    db.write(batch, true)?;
    save_current(db, meta, data)
}

pub(crate) fn current(db: &Db) -> Result<Option<(Meta, Vec<u8>)>, StoreError> {
    let Some(meta) = db.get::<Meta>(Cf::Raft, CURRENT_META)? else {
        return Ok(None);
    };
    let data = db.get_raw(Cf::Raft, CURRENT_DATA)?.unwrap_or_default();
    Ok(Some((meta, data)))
}

fn save_current(db: &Db, meta: &Meta, data: &[u8]) -> Result<(), StoreError> {
    let mut batch = WriteBatch::default();
    batch.put_cf(db.cf(Cf::Raft), CURRENT_META, encode(meta));
    batch.put_cf(db.cf(Cf::Raft), CURRENT_DATA, data);
    db.write(batch, true)
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
}

type Record<'a> = (Cf, &'a [u8], &'a [u8]);

fn parse(data: &[u8]) -> Result<Vec<Record<'_>>, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("snapshot {what}"));
    let body = data
        .strip_prefix(MAGIC.as_slice())
        .ok_or_else(|| corrupt("has no header"))?;
    let (&format, mut rest) = body.split_first().ok_or_else(|| corrupt("is truncated"))?;
    if format > DATA_FORMAT {
        return Err(StoreError::Corrupt(format!(
            "snapshot has data format {format}; this build reads up to {DATA_FORMAT}"
        )));
    }
    let mut records = Vec::new();
    while let Some((&tag, tail)) = rest.split_first() {
        let cf = Cf::from_tag(tag)
            .filter(|cf| Cf::REPLICATED.contains(cf))
            .ok_or_else(|| corrupt("names an unknown column family"))?;
        let (key, tail) = take_bytes(tail).ok_or_else(|| corrupt("has a truncated key"))?;
        let (value, tail) = take_bytes(tail).ok_or_else(|| corrupt("has a truncated value"))?;
        records.push((cf, key, value));
        rest = tail;
    }
    Ok(records)
}

fn take_bytes(data: &[u8]) -> Option<(&[u8], &[u8])> {
    let len = u32::from_be_bytes(data.get(..4)?.try_into().ok()?) as usize;
    let bytes = data.get(4..4 + len)?;
    Some((bytes, &data[4 + len..]))
}

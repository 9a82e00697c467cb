//! Shared helpers of the backup tests: source folders with known content and manifests to
//! write.

#![allow(dead_code)]

use chrono::{DateTime, TimeZone, Utc};
use pullback_backup::{MANIFEST_FORMAT, Manifest, Progress, backup_id};
use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::sync::Mutex;

/// The files of the test source: small ones, an empty one, nested folders, and one larger
/// than a chunk so that the threaded copy runs.
pub const FILES: &[(&str, usize)] = &[
    ("CURRENT", 16),
    ("MANIFEST-000005", 1500),
    ("000012.sst", 5 * 1024 * 1024 + 123),
    ("000013.sst", 4 * 1024 * 1024),
    ("empty.log", 0),
    ("sub/deeper/OPTIONS-000007", 7000),
];

/// Deterministic content that differs from file to file and from byte to byte.
pub fn content(name: &str, size: usize) -> Vec<u8> {
    let mut state = name.bytes().fold(0x9e37_79b9_7f4a_7c15_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    (0..size)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// Writes [`FILES`] under `dir`.
pub fn make_source(dir: &Path) {
    for (name, size) in FILES {
        let path = dir.join(name);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, content(name, *size)).unwrap();
    }
}

/// Checks that `dir` holds exactly [`FILES`] with their content.
pub fn assert_same_files(dir: &Path) {
    for (name, size) in FILES {
        let found = fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(found == content(name, *size), "{name} differs");
    }
    let mut count = 0;
    let mut folders = vec![dir.to_owned()];
    while let Some(folder) = folders.pop() {
        for entry in fs::read_dir(folder).unwrap() {
            let entry = entry.unwrap();
            match entry.file_type().unwrap().is_dir() {
                true => folders.push(entry.path()),
                false => count += 1,
            }
        }
    }
    assert_eq!(count, FILES.len(), "unexpected files in {}", dir.display());
}

/// The time of the `n`th test backup.
pub fn time(n: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 5, n, 15, 0).unwrap()
}

/// A manifest for the `n`th test backup, files to be filled in.
pub fn manifest(n: u32) -> Manifest {
    Manifest {
        manifest_format: MANIFEST_FORMAT,
        id: backup_id(time(n), 1),
        pullback_version: "0.1.0".to_owned(),
        data_format: 1,
        cluster: "cluster-test".to_owned(),
        node_id: 1,
        created_at: time(n),
        applied_index: u64::from(n) * 100,
        counts: BTreeMap::from([("alerts".to_owned(), u64::from(n))]),
        files: Vec::new(),
    }
}

/// Collects progress reports.
#[derive(Default)]
pub struct Reports(pub Mutex<Vec<Progress>>);

impl Reports {
    pub fn record(&self) -> impl Fn(Progress) + Send + Sync + '_ {
        |p| self.0.lock().unwrap().push(p)
    }

    pub fn last(&self) -> Progress {
        *self.0.lock().unwrap().last().expect("at least one report")
    }
}

/// Overwrites one byte of a file with its complement.
pub fn flip_byte(path: &Path, at: usize) {
    let mut bytes = fs::read(path).unwrap();
    bytes[at] = !bytes[at];
    fs::write(path, bytes).unwrap();
}

/// Cuts a file down to `len` bytes.
pub fn truncate(path: &Path, len: u64) {
    fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}

/// Sets the modification time of `path` and everything under it to two hours ago.
pub fn age(path: &Path) {
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
    if path.is_dir() {
        for entry in fs::read_dir(path).unwrap() {
            age(&entry.unwrap().path());
        }
    }
    fs::File::open(path).unwrap().set_modified(old).unwrap();
}

//! The imported directory in the replicated state.
//!
//! An import writes a new generation of records (`dir/<import id>\0<address>`) in bounded
//! entries; a last entry makes it current and drops every other generation. Until then the
//! previous import stays in force, so a run that fails half way changes nothing.

use crate::db::{Cf, Db, StoreError};
use pullback_domain::{DirectoryLookup, DirectoryRecord, DirectoryRun};

pub(crate) const CURRENT: &[u8] = b"dirmeta/current";

pub(crate) fn record_key(import: &str, address: &str) -> Vec<u8> {
    format!("dir/{import}\0{address}").into_bytes()
}

pub(crate) fn run_key(id: &str) -> Vec<u8> {
    format!("dirrun/{id}").into_bytes()
}

/// Directory lookups against the applied state.
pub(crate) struct StoredDirectory<'a> {
    db: &'a Db,
    current: Option<String>,
}

impl<'a> StoredDirectory<'a> {
    pub(crate) fn new(db: &'a Db) -> Result<StoredDirectory<'a>, StoreError> {
        Ok(StoredDirectory {
            db,
            current: db.get(Cf::State, CURRENT)?,
        })
    }
}

impl DirectoryLookup for StoredDirectory<'_> {
    fn lookup(&self, address: &str) -> Option<DirectoryRecord> {
        let current = self.current.as_deref()?;
        let address = address.trim().to_ascii_lowercase();
        match self.db.get(Cf::State, &record_key(current, &address)) {
            Ok(record) => record,
            Err(e) => {
                tracing::error!(error = %e, "a directory record cannot be read");
                None
            }
        }
    }
}

impl crate::Reader {
    /// The current directory record of an address.
    pub fn directory_lookup(&self, address: &str) -> Result<Option<DirectoryRecord>, StoreError> {
        Ok(StoredDirectory::new(self.db())?.lookup(address))
    }

    /// The id of the directory import in force, if any.
    pub fn directory_in_force(&self) -> Result<Option<String>, StoreError> {
        self.db().get(Cf::State, CURRENT)
    }

    /// Directory imports, oldest first.
    pub fn directory_runs(&self) -> Result<Vec<DirectoryRun>, StoreError> {
        let rows = self.db().scan::<DirectoryRun>(Cf::State, b"dirrun/")?;
        Ok(rows.into_iter().map(|(_, run)| run).collect())
    }
}

//! openraft's own storage test suite, run against the RocksDB log store and state machine.

use openraft::testing::{StoreBuilder, Suite};
use pullback_store::{LogStore, StateMachine, StorageError, TypeConfig};

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Builder {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError> {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let (log, state_machine, _reader) =
            pullback_store::open(&dir.path().join("db")).expect("a fresh database opens");
        Ok((dir, log, state_machine))
    }
}

#[test]
fn openraft_storage_suite_passes() {
    Suite::test_all(Builder).expect("every case of the suite");
}

#![allow(clippy::result_large_err)]
//! openraft's storage conformance suite against the sled store.

use openraft::testing::{StoreBuilder, Suite};
use raft_store::types::{StorageError, TypeConfig};
use raft_store::{LogStore, StateMachine};

struct SledBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, (tempfile::TempDir, sled::Db)> for SledBuilder {
    async fn build(&self) -> Result<((tempfile::TempDir, sled::Db), LogStore, StateMachine), StorageError> {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let (db, log, sm) = raft_store::open(dir.path()).expect("open store");
        Ok(((dir, db), log, sm))
    }
}

/// Every conformance test (log, vote, purge, truncate, snapshot, apply) on a fresh store.
#[test]
fn openraft_storage_suite() -> Result<(), StorageError> {
    Suite::test_all(SledBuilder)
}

//! The replicated state of a director cluster and its openraft storage on sled.
//!
//! - [`codec`]: the one place entries and snapshots are encoded (bincode 2, behind a
//!   format-version byte so the encoding can change without a flag day).
//! - [`events`]: what the Raft log carries ([`events::Command`] with a [`events::ConfigEvent`]).
//! - [`state`]: the event-sourced state machine as a pure fold, tested without Raft.
//! - [`chain`]: the history as a hash chain, and its verification.
//! - [`types`]: the openraft type configuration ([`types::TypeConfig`]).
//! - [`log_store`]: the Raft log, vote and committed index on sled.
//! - [`state_machine`]: applies entries, keeps the history, snapshots; [`StateReader`] reads it.

// openraft's storage traits fix the error type (`StorageError`, ~224 bytes); our helpers
// return the same type so `?` carries it through unchanged.
#![allow(clippy::result_large_err)]

pub mod chain;
pub mod codec;
pub mod events;
pub mod log_store;
pub mod state;
pub mod state_machine;
pub mod types;

pub use log_store::LogStore;
pub use state_machine::{StateMachine, StateReader};

/// Opens (or creates) a director's store in `dir`.
pub fn open(dir: &std::path::Path) -> Result<(sled::Db, LogStore, StateMachine), OpenError> {
    let db = open_db(dir)?;
    let log = LogStore::open(&db)?;
    let sm = StateMachine::open(&db).map_err(|e| OpenError::State(e.to_string()))?;
    Ok((db, log, sm))
}

/// Opens (or creates) the sled database of a director's store in `dir`; what
/// [`open`] builds on, and what a director reopens after a write error.
pub fn open_db(dir: &std::path::Path) -> Result<sled::Db, sled::Error> {
    sled::Config::new()
        .path(dir)
        .mode(sled::Mode::HighThroughput)
        .open()
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot open the store: {0}")]
    Sled(#[from] sled::Error),
    #[error("cannot read the applied state: {0}")]
    State(String),
}

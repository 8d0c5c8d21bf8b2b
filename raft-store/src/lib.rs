//! The replicated state of a director cluster.
//!
//! - [`codec`]: the one place entries and snapshots are encoded (bincode 2, behind a
//!   format-version byte so the encoding can change without a flag day).
//! - [`events`]: what the Raft log carries ([`events::ConfigEvent`]).
//! - [`state`]: the event-sourced state machine as a pure fold, tested without Raft.
//!
//! The openraft storage (log, vote, snapshots on sled) builds on these (issue 4).

pub mod codec;
pub mod events;
pub mod state;

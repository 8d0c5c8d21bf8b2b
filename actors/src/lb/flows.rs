//! Flows in terms every director shares (issue 22, design in
//! docs/dev-notes/flow-sync.md): the director that forwards a connection says which
//! virtual service it belongs to, who the client is and which real server it went to, so
//! that a director taking the VIP over forwards its next packets to the same server.
//! Service ids and destination marks are each kernel's own; these records are not.

use super::model::{DestKey, SvcKey};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

/// One flow as the forwarding director's kernel pinned it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct FlowRecord {
    pub service: SvcKey,
    pub client: SocketAddr,
    pub dest: DestKey,
}

/// What became of records handed to a kernel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowInstall {
    /// Flows now pinned in the kernel (new, or refreshed).
    pub installed: usize,
    /// Records for a service or real server this director does not have (configurations
    /// converge through Raft before a VIP moves, so this is rare), or a service that pins
    /// nothing (one-packet scheduling).
    pub skipped: usize,
}

/// At most this many records go in one message between directors.
pub const MAX_BATCH: usize = 1024;

/// A batch as it travels between directors.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowBatch {
    /// The director that forwards these flows.
    pub from: String,
    pub flows: Vec<FlowRecord>,
    /// Unix microseconds when the sender read the batch's first flows from its kernel's
    /// log (0: not from the log, a catch-up): the receiver measures the sync lag from it.
    pub learned_at_us: u64,
}

/// Now, in unix microseconds.
pub fn unix_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

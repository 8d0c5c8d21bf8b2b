//! The openraft type configuration of a director cluster.

use crate::events::Command;
use crate::state::Applied;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Raft node id. Derived from the director name with [`node_id`], so every tool computes
/// the same id for `lvs01` without a registry.
pub type NodeId = u64;

/// A director as Raft knows it: its name, the address of its API (Raft RPC and admin), and
/// the incarnation of its store (random, made when the store is created). A director whose
/// data was wiped comes back with another incarnation; its peers then refuse to treat it as
/// the member they knew (a voter that forgot its log and vote would break Raft's safety).
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Director {
    pub name: String,
    pub addr: String,
    pub incarnation: String,
}

impl std::fmt::Display for Director {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.name, self.addr)
    }
}

openraft::declare_raft_types!(
    pub TypeConfig:
        D = Command,
        R = Applied,
        NodeId = NodeId,
        Node = Director,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = std::io::Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type Vote = openraft::Vote<NodeId>;
pub type StoredMembership = openraft::StoredMembership<NodeId, Director>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, Director>;
pub type StorageError = openraft::StorageError<NodeId>;
pub type RaftMetrics = openraft::RaftMetrics<NodeId, Director>;

/// The Raft id of a director name: the first 8 bytes of its sha256, top bit clear
/// (ids stay positive in JSON consumers that use i64).
pub fn node_id(name: &str) -> NodeId {
    let d = Sha256::digest(name.as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    u64::from_be_bytes(b) & (u64::MAX >> 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_are_stable_and_distinct() {
        assert_eq!(node_id("lvs01"), node_id("lvs01"));
        assert_ne!(node_id("lvs01"), node_id("lvs02"));
        assert!(node_id("lvs01") < 1 << 63);
    }
}

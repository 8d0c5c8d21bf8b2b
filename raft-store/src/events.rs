//! What the Raft log carries: configuration events. Each applied event is kept in the
//! history forever (log compaction never drops it).

use ha_config::{canon, ClusterConfig};
use serde::{Deserialize, Serialize};

/// A proposed cluster configuration, validated by the proposer and again by the leader.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    pub config: ClusterConfig,
    /// `canon::hash(&config)`, as computed by the proposer; checked on apply.
    pub hash: String,
    pub author: String,
    pub reason: String,
    /// The proposer's wall clock, milliseconds since the Unix epoch (informational).
    pub client_time_ms: u64,
    /// Optimistic concurrency: the version this proposal was written against.
    pub base_version: Option<u64>,
}

impl Proposal {
    pub fn new(
        config: ClusterConfig,
        author: impl Into<String>,
        reason: impl Into<String>,
        client_time_ms: u64,
        base_version: Option<u64>,
    ) -> Self {
        let hash = canon::hash(&config);
        Proposal {
            config,
            hash,
            author: author.into(),
            reason: reason.into(),
            client_time_ms,
            base_version,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConfigEvent {
    ConfigProposed(Box<Proposal>),
    /// A director joined or left the Raft membership.
    MembershipChanged {
        author: String,
        voters: Vec<String>,
        learners: Vec<String>,
    },
}

//! What the Raft log carries: commands that produce configuration events. Each applied
//! event is kept in the history forever (log compaction never drops it).

use ha_config::keyed::{Delta, KeyedCluster};
use ha_config::ClusterConfig;
use serde::{Deserialize, Serialize};

/// A proposed change of the cluster configuration, validated by the proposer and again by
/// the leader, carried as the keys it changes (issue 20): the log, the history and every
/// replica's apply cost O(change), whatever the size of the configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    /// The changed keys' new slots, against config version `derived_from`.
    pub delta: Delta,
    /// The version the delta was computed against; applied to any other version it is
    /// refused as [`crate::state::Applied::Rebase`] (the leader computes it again).
    pub derived_from: u64,
    /// The content hash of the whole configuration after the delta; checked on apply.
    pub hash: String,
    pub author: String,
    pub reason: String,
    /// The proposer's wall clock, milliseconds since the Unix epoch (informational).
    pub client_time_ms: u64,
    /// Optimistic concurrency: the version this proposal was written against.
    pub base_version: Option<u64>,
    /// Chosen by the client; a retried proposal with the same id is applied once.
    pub proposal_id: String,
}

impl Proposal {
    /// The proposal that turns `from` (committed as version `derived_from`) into `to`.
    pub fn between(
        from: &KeyedCluster,
        derived_from: u64,
        to: &ClusterConfig,
        author: impl Into<String>,
        reason: impl Into<String>,
        client_time_ms: u64,
        base_version: Option<u64>,
    ) -> Self {
        let to = KeyedCluster::from_cluster(to);
        let hash = to.hash();
        let proposal_id = format!("{}-{}", &hash[..16], client_time_ms);
        Proposal {
            delta: from.delta_to(&to),
            derived_from,
            hash,
            author: author.into(),
            reason: reason.into(),
            client_time_ms,
            base_version,
            proposal_id,
        }
    }

    /// The first configuration of a cluster (against the empty version 0).
    pub fn new(
        config: ClusterConfig,
        author: impl Into<String>,
        reason: impl Into<String>,
        client_time_ms: u64,
        base_version: Option<u64>,
    ) -> Self {
        Self::between(
            &KeyedCluster::default(),
            0,
            &config,
            author,
            reason,
            client_time_ms,
            base_version,
        )
    }
}

/// One event of the cluster's configuration history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConfigEvent {
    ConfigProposed(Box<Proposal>),
    /// An operator asked for a membership change (the change itself follows as
    /// [`ConfigEvent::MembershipChanged`] once Raft commits it).
    MembershipRequested {
        author: String,
        reason: String,
        /// What was asked, e.g. `add lvs03 at 198.18.0.3:7101`.
        action: String,
    },
    /// The Raft membership now has these voters and learners (director names).
    MembershipChanged {
        author: String,
        voters: Vec<String>,
        learners: Vec<String>,
    },
}

impl ConfigEvent {
    pub fn author(&self) -> &str {
        match self {
            ConfigEvent::ConfigProposed(p) => &p.author,
            ConfigEvent::MembershipRequested { author, .. }
            | ConfigEvent::MembershipChanged { author, .. } => author,
        }
    }

    pub fn reason(&self) -> &str {
        match self {
            ConfigEvent::ConfigProposed(p) => &p.reason,
            ConfigEvent::MembershipRequested { reason, .. } => reason,
            ConfigEvent::MembershipChanged { .. } => "",
        }
    }
}

/// The application data of a Raft log entry: an event, stamped by the leader that
/// accepted it (so every replica records the same time).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    pub event: ConfigEvent,
    /// The accepting leader's wall clock, milliseconds since the Unix epoch.
    pub accepted_at_ms: u64,
    /// Name of the director that accepted the command.
    pub accepted_by: String,
}

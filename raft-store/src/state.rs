//! The event-sourced cluster state: a pure fold of [`ConfigEvent`]s.

use crate::events::{ConfigEvent, Proposal};
use ha_config::{canon, ClusterConfig};
use serde::{Deserialize, Serialize};

/// One applied configuration event, as kept in the history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// Config version after this event (unchanged by membership events).
    pub version: u64,
    /// Raft log index that carried the event.
    pub log_index: u64,
    pub event: ConfigEvent,
}

/// The current configuration and its version; the history is stored beside it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterState {
    /// Number of applied configuration proposals (0: nothing committed yet).
    pub version: u64,
    pub hash: String,
    pub config: ClusterConfig,
    pub voters: Vec<String>,
    pub learners: Vec<String>,
}

/// The outcome of applying one event; every replica computes the same one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Applied {
    /// The configuration is now at `version`.
    Committed {
        version: u64,
        hash: String,
    },
    /// Refused deterministically on every replica; nothing changed.
    StaleBase {
        base: u64,
        current: u64,
    },
    HashMismatch {
        claimed: String,
        actual: String,
    },
    Membership,
}

impl ClusterState {
    /// Applies one event. Refusals leave the state untouched and return why.
    pub fn apply(&mut self, event: &ConfigEvent) -> Applied {
        match event {
            ConfigEvent::ConfigProposed(p) => self.apply_proposal(p),
            ConfigEvent::MembershipChanged { voters, learners, .. } => {
                self.voters = voters.clone();
                self.learners = learners.clone();
                Applied::Membership
            }
        }
    }

    fn apply_proposal(&mut self, p: &Proposal) -> Applied {
        if let Some(base) = p.base_version {
            if base != self.version {
                return Applied::StaleBase {
                    base,
                    current: self.version,
                };
            }
        }
        let actual = canon::hash(&p.config);
        if actual != p.hash {
            return Applied::HashMismatch {
                claimed: p.hash.clone(),
                actual,
            };
        }
        self.version += 1;
        self.hash = actual;
        self.config = p.config.clone();
        Applied::Committed {
            version: self.version,
            hash: self.hash.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ha_config::cluster;

    fn cfg(weight: u32) -> ClusterConfig {
        let text = format!(
            "virtual_server 198.18.116.134 80 {{\n lb_kind DR\n real_server 198.18.116.131 80 {{\n  weight {weight}\n }}\n}}\n"
        );
        cluster::load_str("t.conf", &text, &[]).1.cluster
    }

    #[test]
    fn proposals_advance_the_version_and_hash() {
        let mut s = ClusterState::default();
        let p1 = Proposal::new(cfg(1), "alice", "first", 1, None);
        assert_eq!(
            s.apply(&ConfigEvent::ConfigProposed(Box::new(p1.clone()))),
            Applied::Committed {
                version: 1,
                hash: p1.hash.clone()
            }
        );
        let p2 = Proposal::new(cfg(2), "bob", "weight", 2, Some(1));
        assert!(matches!(
            s.apply(&ConfigEvent::ConfigProposed(Box::new(p2))),
            Applied::Committed { version: 2, .. }
        ));
        assert_eq!(s.config, cfg(2));
    }

    #[test]
    fn stale_base_version_changes_nothing() {
        let mut s = ClusterState::default();
        s.apply(&ConfigEvent::ConfigProposed(Box::new(Proposal::new(
            cfg(1),
            "a",
            "",
            1,
            None,
        ))));
        let before = s.clone();
        let stale = Proposal::new(cfg(3), "b", "", 2, Some(0));
        assert_eq!(
            s.apply(&ConfigEvent::ConfigProposed(Box::new(stale))),
            Applied::StaleBase { base: 0, current: 1 }
        );
        assert_eq!(s, before);
    }

    #[test]
    fn a_hash_that_does_not_match_the_config_is_refused() {
        let mut s = ClusterState::default();
        let mut p = Proposal::new(cfg(1), "a", "", 1, None);
        p.config = cfg(5);
        assert!(matches!(
            s.apply(&ConfigEvent::ConfigProposed(Box::new(p))),
            Applied::HashMismatch { .. }
        ));
        assert_eq!(s, ClusterState::default());
    }
}

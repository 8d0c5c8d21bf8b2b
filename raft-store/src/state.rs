//! The event-sourced cluster state: a pure fold of commands into a state and a history.
//! No I/O here; [`crate::state_machine`] persists what this computes.

use crate::events::{Command, ConfigEvent, Proposal};
use ha_config::diff;
use ha_config::keyed::KeyedCluster;
use serde::{Deserialize, Serialize};

/// One applied event, as kept in the history (never dropped by log compaction).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// Position in the history, from 1, without gaps.
    pub seq: u64,
    /// Config version after this event (membership events leave it unchanged).
    pub version: u64,
    /// Raft log index that carried the event.
    pub log_index: u64,
    /// When the accepting leader stamped it (ms since the Unix epoch; 0 if unknown).
    pub at_ms: u64,
    /// The director that accepted it.
    pub accepted_by: String,
    pub event: ConfigEvent,
    /// One line: what changed (semantic diff summary for configurations).
    pub summary: String,
    /// The previous entry's `hash` ([`crate::chain::GENESIS`] for the first).
    pub prev_hash: String,
    /// [`crate::chain::entry_hash`] of this entry: the history is a hash chain.
    pub hash: String,
}

/// The current configuration, its version and the membership, as every replica holds it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterState {
    /// Number of committed configuration proposals (0: nothing committed yet).
    pub version: u64,
    pub hash: String,
    /// The committed configuration, keyed. Persisted key by key beside the rest (see
    /// [`crate::state_machine`]), so it is not part of this struct's encoding; a copy
    /// costs O(1).
    #[serde(skip)]
    pub config: KeyedCluster,
    pub voters: Vec<String>,
    pub learners: Vec<String>,
    /// Number of history entries so far.
    pub history_len: u64,
    /// The last history entry's hash (empty before the first: read as the genesis link).
    pub history_head: String,
    /// Author and time of the last membership request, credited to the changes that follow
    /// it (a request causes one or two: learner added, then promoted).
    pending_membership: Option<(String, u64)>,
}

/// The outcome of applying one log entry; every replica computes the same one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Applied {
    /// The configuration is now at `version`.
    Committed { version: u64, hash: String },
    /// The same proposal (same id) was already committed as `version`; nothing changed.
    Duplicate { version: u64 },
    /// Written against `base`, but the configuration is at `current`; nothing changed.
    StaleBase { base: u64, current: u64 },
    /// The proposal's hash does not match its configuration; nothing changed.
    HashMismatch { claimed: String, actual: String },
    /// The delta was computed against another version than `current`; nothing changed
    /// (the leader computes it again against `current`).
    Rebase { derived_from: u64, current: u64 },
    /// Recorded in the history as entry `seq` (membership events).
    Recorded { seq: u64 },
    /// Nothing to record (blank entries, unchanged membership).
    Noop,
}

impl ClusterState {
    /// Applies one command carried at `log_index`. `committed_as` tells whether a proposal
    /// id was already committed (and as which version). Refusals change nothing.
    pub fn apply_command(
        &mut self,
        cmd: &Command,
        log_index: u64,
        committed_as: impl Fn(&str) -> Option<u64>,
    ) -> (Applied, Option<HistoryEntry>) {
        match &cmd.event {
            ConfigEvent::ConfigProposed(p) => {
                if let Some(version) = committed_as(&p.proposal_id) {
                    return (Applied::Duplicate { version }, None);
                }
                if let Err(refused) = self.check(p) {
                    return (refused, None);
                }
                // What the delta touches, before and after: the summary costs O(change).
                let (before, after) = self.config.around(&p.delta);
                let undo = self.config.apply(&p.delta);
                let actual = self.config.hash();
                if actual != p.hash {
                    self.config.apply(&undo);
                    return (
                        Applied::HashMismatch {
                            claimed: p.hash.clone(),
                            actual,
                        },
                        None,
                    );
                }
                let summary = diff::headline(&diff::diff(&before, &after), 3);
                self.version += 1;
                self.hash = actual.clone();
                let entry = self.record(cmd, log_index, summary);
                (
                    Applied::Committed {
                        version: self.version,
                        hash: actual,
                    },
                    Some(entry),
                )
            }
            ConfigEvent::MembershipRequested { author, action, .. } => {
                self.pending_membership = Some((author.clone(), cmd.accepted_at_ms));
                let entry = self.record(cmd, log_index, format!("requested: {action}"));
                (Applied::Recorded { seq: entry.seq }, Some(entry))
            }
            // Only the state machine produces these, from Raft membership entries.
            ConfigEvent::MembershipChanged { .. } => (Applied::Noop, None),
        }
    }

    /// Records a (uniform) Raft membership taking effect at `log_index`.
    pub fn apply_membership(
        &mut self,
        voters: Vec<String>,
        learners: Vec<String>,
        log_index: u64,
    ) -> Option<HistoryEntry> {
        if voters == self.voters && learners == self.learners {
            return None;
        }
        self.voters = voters.clone();
        self.learners = learners.clone();
        let (author, at_ms) = self
            .pending_membership
            .clone()
            .unwrap_or_else(|| ("raft".to_string(), 0));
        let summary = format!(
            "members: voters {}{}",
            join_or_none(&voters),
            if learners.is_empty() {
                String::new()
            } else {
                format!(", learners {}", learners.join(","))
            }
        );
        let cmd = Command {
            event: ConfigEvent::MembershipChanged {
                author,
                voters,
                learners,
            },
            accepted_at_ms: at_ms,
            accepted_by: String::new(),
        };
        Some(self.record(&cmd, log_index, summary))
    }

    fn check(&self, p: &Proposal) -> Result<(), Applied> {
        if let Some(base) = p.base_version {
            if base != self.version {
                return Err(Applied::StaleBase {
                    base,
                    current: self.version,
                });
            }
        }
        if p.derived_from != self.version {
            return Err(Applied::Rebase {
                derived_from: p.derived_from,
                current: self.version,
            });
        }
        Ok(())
    }

    fn record(&mut self, cmd: &Command, log_index: u64, summary: String) -> HistoryEntry {
        self.history_len += 1;
        let prev_hash = if self.history_head.is_empty() {
            crate::chain::GENESIS.to_string()
        } else {
            self.history_head.clone()
        };
        let mut e = HistoryEntry {
            seq: self.history_len,
            version: self.version,
            log_index,
            at_ms: cmd.accepted_at_ms,
            accepted_by: cmd.accepted_by.clone(),
            event: cmd.event.clone(),
            summary,
            prev_hash,
            hash: String::new(),
        };
        e.hash = crate::chain::entry_hash(&e);
        self.history_head = e.hash.clone();
        e
    }
}

fn join_or_none(names: &[String]) -> String {
    if names.is_empty() {
        "(none)".to_string()
    } else {
        names.join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ha_config::{cluster, ClusterConfig};

    fn cfg(weight: u32) -> ClusterConfig {
        let text = format!(
            "virtual_server 198.18.116.134 80 {{\n lb_kind DR\n real_server 198.18.116.131 80 {{\n  weight {weight}\n }}\n}}\n"
        );
        cluster::load_str("t.conf", &text, &[]).1.cluster
    }

    fn cmd(p: Proposal) -> Command {
        Command {
            event: ConfigEvent::ConfigProposed(Box::new(p)),
            accepted_at_ms: 42,
            accepted_by: "lvs01".into(),
        }
    }

    fn never(_: &str) -> Option<u64> {
        None
    }

    #[test]
    fn proposals_advance_the_version_and_hash_and_are_recorded() {
        let mut s = ClusterState::default();
        let p1 = Proposal::new(cfg(1), "alice", "first", 1, None);
        let (out, h) = s.apply_command(&cmd(p1.clone()), 3, never);
        assert_eq!(
            out,
            Applied::Committed {
                version: 1,
                hash: p1.hash.clone()
            }
        );
        let h = h.unwrap();
        assert_eq!((h.seq, h.version, h.log_index, h.at_ms), (1, 1, 3, 42));
        assert!(h.summary.contains("virtual_server"), "{}", h.summary);
        let p2 = Proposal::between(&s.config, 1, &cfg(2), "bob", "weight", 2, Some(1));
        assert_eq!(p2.delta.len(), 1, "one virtual server changed");
        let (out, h) = s.apply_command(&cmd(p2), 4, never);
        assert!(matches!(out, Applied::Committed { version: 2, .. }));
        let h = h.unwrap();
        assert!(h.summary.contains("weight 1 -> 2"), "{}", h.summary);
        assert_eq!(s.config.to_cluster(), ha_config::canon::canonical(&cfg(2)));
        assert_eq!(s.hash, ha_config::canon::hash(&cfg(2)));
        assert_eq!(s.history_len, 2);
    }

    #[test]
    fn stale_base_version_changes_nothing() {
        let mut s = ClusterState::default();
        s.apply_command(&cmd(Proposal::new(cfg(1), "a", "", 1, None)), 1, never);
        let before = s.clone();
        let stale = Proposal::new(cfg(3), "b", "", 2, Some(0));
        let (out, h) = s.apply_command(&cmd(stale), 2, never);
        assert_eq!(out, Applied::StaleBase { base: 0, current: 1 });
        assert!(h.is_none());
        assert_eq!(s, before);
    }

    #[test]
    fn a_hash_that_does_not_match_the_config_is_refused() {
        let mut s = ClusterState::default();
        let mut p = Proposal::new(cfg(1), "a", "", 1, None);
        p.hash = Proposal::new(cfg(5), "a", "", 1, None).hash;
        let (out, h) = s.apply_command(&cmd(p), 1, never);
        assert!(matches!(out, Applied::HashMismatch { .. }));
        assert!(h.is_none());
        assert_eq!(s, ClusterState::default());
        assert!(s.config.is_empty(), "the delta was undone");
    }

    #[test]
    fn a_delta_computed_against_another_version_is_refused_for_a_rebase() {
        let mut s = ClusterState::default();
        s.apply_command(&cmd(Proposal::new(cfg(1), "a", "", 1, None)), 1, never);
        let before = s.clone();
        // Written against version 0 by a leader that had not applied version 1 yet.
        let late = Proposal::new(cfg(3), "b", "", 2, None);
        let (out, h) = s.apply_command(&cmd(late), 2, never);
        assert_eq!(
            out,
            Applied::Rebase {
                derived_from: 0,
                current: 1
            }
        );
        assert!(h.is_none());
        assert_eq!(s, before);
    }

    #[test]
    fn a_retried_proposal_is_applied_once() {
        let mut s = ClusterState::default();
        let p = Proposal::new(cfg(1), "a", "", 1, None);
        s.apply_command(&cmd(p.clone()), 1, never);
        let before = s.clone();
        let (out, h) = s.apply_command(&cmd(p), 2, |_| Some(1));
        assert_eq!(out, Applied::Duplicate { version: 1 });
        assert!(h.is_none());
        assert_eq!(s, before);
    }

    #[test]
    fn membership_changes_are_credited_to_the_request() {
        let mut s = ClusterState::default();
        let boot = s.apply_membership(vec!["lvs01".into()], vec![], 0).unwrap();
        assert_eq!(boot.event.author(), "raft");
        let req = Command {
            event: ConfigEvent::MembershipRequested {
                author: "carol".into(),
                reason: "grow".into(),
                action: "add lvs02 at 127.0.0.1:7102".into(),
            },
            accepted_at_ms: 7,
            accepted_by: "lvs01".into(),
        };
        let (out, _) = s.apply_command(&req, 1, never);
        assert_eq!(out, Applied::Recorded { seq: 2 });
        let h = s
            .apply_membership(vec!["lvs01".into(), "lvs02".into()], vec![], 3)
            .unwrap();
        assert_eq!((h.seq, h.at_ms, h.event.author()), (3, 7, "carol"));
        assert_eq!(h.summary, "members: voters lvs01,lvs02");
        assert!(s
            .apply_membership(vec!["lvs01".into(), "lvs02".into()], vec![], 4)
            .is_none());
        let h = s.apply_membership(vec!["lvs01".into()], vec![], 5).unwrap();
        assert_eq!(h.event.author(), "carol", "credited until the next request");
        assert_eq!(s.version, 0);
    }
}

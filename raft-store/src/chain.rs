//! The history as a hash chain (pure): each entry carries the hash of the one before it
//! and its own hash over its content and that link, so a changed, dropped or reordered
//! entry shows as the first entry whose hash no longer holds. A configuration entry's
//! config hash is also re-checked: its delta is applied to the configuration the entries
//! before it built, and the result must hash to the recorded hash. Every replica computes
//! the same chain (the fold is deterministic), so the heads of two directors at the same
//! length must be equal.

use crate::events::ConfigEvent;
use crate::state::HistoryEntry;
use ha_config::keyed::KeyedCluster;
use serde::Serialize;
use sha2::{Digest, Sha256};

/// The link of the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[derive(Serialize)]
struct Hashed<'a> {
    seq: u64,
    version: u64,
    log_index: u64,
    at_ms: u64,
    accepted_by: &'a str,
    event: &'a ConfigEvent,
    summary: &'a str,
    prev_hash: &'a str,
}

/// sha256 (hex) over the entry's content and `prev_hash` (not over `hash` itself).
pub fn entry_hash(e: &HistoryEntry) -> String {
    let h = Hashed {
        seq: e.seq,
        version: e.version,
        log_index: e.log_index,
        at_ms: e.at_ms,
        accepted_by: &e.accepted_by,
        event: &e.event,
        summary: &e.summary,
        prev_hash: &e.prev_hash,
    };
    // The codec is deterministic for a value (no maps with random order in the model).
    let bytes = crate::codec::encode(&h).unwrap_or_default();
    hex::encode(Sha256::digest(bytes))
}

/// Where a chain first fails.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct BadEntry {
    pub seq: u64,
    /// The config version the entry is at (if it could be read).
    pub version: Option<u64>,
    pub reason: String,
}

/// A chain that holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    pub entries: u64,
    /// The config version after the last entry.
    pub version: u64,
    /// The last entry's hash ([`GENESIS`] for an empty history).
    pub head: String,
}

/// Walks `entries` in order (each already decoded, or the reason it could not be, with
/// its seq) and checks links, hashes, sequence numbers, versions and config hashes.
pub fn verify<I>(entries: I) -> Result<Verified, BadEntry>
where
    I: IntoIterator<Item = Result<HistoryEntry, (u64, String)>>,
{
    let mut head = GENESIS.to_string();
    let mut version = 0u64;
    let mut n = 0u64;
    let mut config = KeyedCluster::default();
    for item in entries {
        let e = item.map_err(|(seq, reason)| BadEntry {
            seq,
            version: None,
            reason: format!("unreadable: {reason}"),
        })?;
        let bad = |reason: String| BadEntry {
            seq: e.seq,
            version: Some(e.version),
            reason,
        };
        if e.seq != n + 1 {
            return Err(bad(format!("sequence {} where {} was expected", e.seq, n + 1)));
        }
        if e.prev_hash != head {
            return Err(bad(format!(
                "link to the previous entry is {} but that entry's hash is {}",
                short(&e.prev_hash),
                short(&head)
            )));
        }
        let actual = entry_hash(&e);
        if e.hash != actual {
            return Err(bad(format!(
                "content does not match its hash (stored {}, computed {})",
                short(&e.hash),
                short(&actual)
            )));
        }
        match &e.event {
            ConfigEvent::ConfigProposed(p) => {
                if e.version != version + 1 {
                    return Err(bad(format!("config version {} after {}", e.version, version)));
                }
                config.apply(&p.delta);
                let h = config.hash();
                if h != p.hash {
                    return Err(bad(format!(
                        "the config its change builds hashes to {}, not the recorded {}",
                        short(&h),
                        short(&p.hash)
                    )));
                }
            }
            _ => {
                if e.version != version {
                    return Err(bad(format!(
                        "a membership event moved the version from {version} to {}",
                        e.version
                    )));
                }
            }
        }
        version = e.version;
        head = e.hash.clone();
        n += 1;
    }
    Ok(Verified {
        entries: n,
        version,
        head,
    })
}

fn short(h: &str) -> &str {
    &h[..h.len().min(12)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Command, Proposal};
    use crate::state::ClusterState;
    use ha_config::cluster;

    fn history(n: u32) -> Vec<HistoryEntry> {
        let mut s = ClusterState::default();
        let mut out = Vec::new();
        for w in 1..=n {
            let text = format!(
                "virtual_server 198.18.116.134 80 {{\n lb_kind DR\n real_server 198.18.116.131 80 {{\n  weight {w}\n }}\n}}\n"
            );
            let config = cluster::load_str("t.conf", &text, &[]).1.cluster;
            let cmd = Command {
                event: ConfigEvent::ConfigProposed(Box::new(Proposal::between(
                    &s.config,
                    s.version,
                    &config,
                    "ops",
                    "w",
                    u64::from(w),
                    None,
                ))),
                accepted_at_ms: u64::from(w),
                accepted_by: "lvs01".into(),
            };
            let (_, e) = s.apply_command(&cmd, u64::from(w), |_| None);
            out.push(e.expect("recorded"));
            if w == 2 {
                out.push(
                    s.apply_membership(vec!["lvs01".into(), "lvs02".into()], vec![], 100)
                        .expect("membership"),
                );
            }
        }
        out
    }

    fn ok(h: &[HistoryEntry]) -> Result<Verified, BadEntry> {
        verify(h.iter().cloned().map(Ok))
    }

    #[test]
    fn the_fold_builds_a_chain_that_verifies() {
        let h = history(5);
        let v = ok(&h).expect("verifies");
        assert_eq!(v.entries, 6);
        assert_eq!(v.version, 5);
        assert_eq!(v.head, h.last().unwrap().hash);
        assert_eq!(h[0].prev_hash, GENESIS);
        assert_eq!(h[1].prev_hash, h[0].hash);
    }

    #[test]
    fn a_changed_entry_is_named_with_its_version() {
        let mut h = history(5);
        h[3].summary.push('!');
        let e = ok(&h).expect_err("tampered");
        assert_eq!((e.seq, e.version), (4, Some(3)));
        assert!(e.reason.contains("does not match its hash"), "{e:?}");
    }

    #[test]
    fn a_rehashed_change_breaks_the_next_link() {
        let mut h = history(5);
        h[1].summary = "something else".into();
        h[1].hash = entry_hash(&h[1]);
        let e = ok(&h).expect_err("tampered");
        assert_eq!(e.seq, 3);
        assert!(e.reason.contains("link"), "{e:?}");
    }

    #[test]
    fn a_config_whose_hash_was_forged_along_is_caught() {
        let mut h = history(3);
        if let ConfigEvent::ConfigProposed(p) = &mut h[0].event {
            p.hash = "f".repeat(64);
        }
        h[0].hash = entry_hash(&h[0]);
        // Also re-link the rest, as a forger would.
        for i in 1..h.len() {
            h[i].prev_hash = h[i - 1].hash.clone();
            h[i].hash = entry_hash(&h[i]);
        }
        let e = ok(&h).expect_err("forged");
        assert_eq!((e.seq, e.version), (1, Some(1)));
        assert!(e.reason.contains("hashes to"), "{e:?}");
    }

    #[test]
    fn dropped_and_unreadable_entries_are_named() {
        let mut h = history(4);
        h.remove(2);
        assert_eq!(ok(&h).expect_err("gap").seq, 4);
        let items = vec![Ok(history(1).remove(0)), Err((2, "bad bytes".to_string()))];
        let e = verify(items).expect_err("unreadable");
        assert_eq!((e.seq, e.version), (2, None));
    }
}

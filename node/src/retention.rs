//! Retention of a director's runtime events: the journal keeps at most `max_events`.
//! When it holds a tenth more than that, the oldest events are folded (by replay's own
//! fold) into one `checkpoint` event that stands in for them, written in place of the
//! last one dropped, in one atomic batch. Replay of any later moment is unchanged; the
//! moments before it are refused by name. The committed config history lives in the Raft
//! state machine and is never truncated.

use crate::journal::{HistorySource, Journal};
use crate::replay::{Configs, Replayer};
use ha_config::api::{EventDetail, EventItem};

/// What one truncation did.
#[derive(Debug, PartialEq, Eq)]
pub struct Truncation {
    /// Runtime events dropped now (an earlier checkpoint folded in is not counted).
    pub dropped: u64,
    /// Runtime events dropped since the journal began.
    pub dropped_total: u64,
    /// The checkpoint's sequence number: the first event kept.
    pub checkpoint_seq: u64,
    /// The time of the last dropped event (the checkpoint's time).
    pub up_to_ms: u64,
}

/// How far past the cap the journal may grow before it is truncated (so truncation is a
/// batch, not a per-event cost).
fn slack(max_events: u64) -> u64 {
    (max_events / 10).max(1)
}

/// Truncates `journal` if it holds more than its cap allows; `history` is read only then.
pub fn enforce(journal: &Journal, history: &HistorySource) -> anyhow::Result<Option<Truncation>> {
    let max = journal.max_events();
    let b = journal.bounds()?;
    if b.len() <= max + slack(max) {
        return Ok(None);
    }
    // Keep the newest max - 1 events and the checkpoint at `cut`.
    let cut = b.next - max;
    let entries = history()?;
    let configs = Configs::from_history(&journal.node, &entries);
    let mut fold = Replayer::new(&configs);
    let mut dropped = 0;
    let mut up_to_ms = 0;
    for e in journal.iter_from(b.first) {
        let e = e?;
        if e.seq > cut {
            break;
        }
        if !matches!(e.detail, Some(EventDetail::Checkpoint(_))) {
            dropped += 1;
        }
        up_to_ms = up_to_ms.max(e.at_ms);
        fold.apply(&e);
    }
    let mut checkpoint = fold.checkpoint();
    checkpoint.dropped += dropped;
    let total = checkpoint.dropped;
    let item = EventItem {
        seq: cut,
        at_ms: up_to_ms,
        node: journal.node.clone(),
        kind: "checkpoint".into(),
        subject: "journal".into(),
        summary: format!(
            "retention (max_events {max}): {dropped} runtime event(s) dropped, {total} in all; \
             this checkpoint holds their state"
        ),
        detail: Some(EventDetail::Checkpoint(Box::new(checkpoint))),
    };
    journal.replace_prefix(b.first, cut, &item)?;
    tracing::warn!(
        node = %journal.node,
        dropped,
        dropped_total = total,
        up_to_seq = cut,
        up_to_ms,
        max_events = max,
        "journal retention: dropped the oldest runtime events, a checkpoint stands in for them"
    );
    Ok(Some(Truncation {
        dropped,
        dropped_total: total,
        checkpoint_seq: cut,
        up_to_ms,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::{replay, Moment, ReplayError};
    use raft_store::events::{ConfigEvent, Proposal};
    use raft_store::state::HistoryEntry;

    const SEED: &str = "virtual_server 198.18.116.134 80 {\n lb_kind DR\n quorum 2\n hysteresis 1\n real_server 198.18.116.131 80 {\n  TCP_CHECK {\n  }\n }\n real_server 198.18.116.132 80 {\n  TCP_CHECK {\n  }\n }\n}\n";

    fn history() -> Vec<HistoryEntry> {
        [
            (1u64, SEED.to_string()),
            (2, SEED.replace("quorum 2", "quorum 1")),
        ]
        .into_iter()
        .map(|(v, text)| {
            let (_, l) = ha_config::cluster::load_str("cluster.conf", &text, &[]);
            assert!(!l.diags.has_errors(), "{:?}", l.diags);
            HistoryEntry {
                seq: v,
                version: v,
                log_index: v,
                at_ms: v * 100,
                accepted_by: "lvs01".into(),
                event: ConfigEvent::ConfigProposed(Box::new(Proposal::new(
                    l.cluster,
                    "ops",
                    "test",
                    v * 100,
                    None,
                ))),
                summary: String::new(),
                prev_hash: String::new(),
                hash: String::new(),
            }
        })
        .collect()
    }

    /// Event n of a run: applies of versions 1 and 2, syncs, VRRP changes, checker flaps.
    fn detail(n: u64) -> EventDetail {
        match n {
            0 => EventDetail::Applied {
                version: 1,
                unstarted: Vec::new(),
            },
            150 => EventDetail::Applied {
                version: 2,
                unstarted: Vec::new(),
            },
            n if n % 25 == 1 => EventDetail::Sync {
                version: Some(if n > 150 { 2 } else { 1 }),
                ops: 1,
                errors: 0,
                repaired: 0,
            },
            n if n % 40 == 7 => EventDetail::VrrpState {
                instance: "VI_1".into(),
                from: "BACKUP".into(),
                to: if n % 80 == 7 { "MASTER" } else { "BACKUP" }.into(),
                priority: 100,
                reason: "test".into(),
            },
            n => EventDetail::Check {
                vs: "198.18.116.134:80".into(),
                rs: format!("198.18.116.{}:80", 131 + (n * 7) % 2),
                checker: "TCP_CHECK#0".into(),
                up: (n / 3).is_multiple_of(2),
                weight: None,
                reason: format!("result {n}"),
            },
        }
    }

    #[test]
    fn a_capped_journal_drops_the_oldest_events_behind_a_checkpoint_and_replays_the_same() {
        let dir = std::env::temp_dir().join(format!("retention-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let source: HistorySource = Box::new(|| Ok(history()));
        let entries = history();
        let configs = Configs::from_history("lvs01", &entries);
        let mut all: Vec<EventItem> = Vec::new();
        let mut truncations = 0;
        {
            let db = sled::open(&dir).unwrap();
            let j = Journal::open(&db, "lvs01", 20).unwrap();
            for n in 0..300u64 {
                let at = 1000 + n * 10;
                let seq = j.append_at(at, "test", "x", "y", Some(detail(n))).unwrap();
                all.push(j.list(seq, 1).unwrap().remove(0));
                if let Some(t) = enforce(&j, &source).unwrap() {
                    truncations += 1;
                    assert_eq!(t.dropped_total, j.dropped());
                }
                let b = j.bounds().unwrap();
                assert!(b.len() <= 22, "{b:?}: the cap (20 and a tenth) holds");
                // Every moment the journal still covers replays as the whole run did.
                let kept: Vec<EventItem> = j.iter_from(1).map(|e| e.unwrap()).collect();
                assert_eq!(kept.len() as u64, b.len());
                for t in [kept[0].at_ms, at.saturating_sub(35), at] {
                    if t < kept[0].at_ms {
                        continue;
                    }
                    let full = replay::<std::convert::Infallible, _>(
                        "lvs01",
                        &configs,
                        all.iter().map(Ok),
                        Moment::Time(t),
                    );
                    let short = replay::<std::convert::Infallible, _>(
                        "lvs01",
                        &configs,
                        kept.iter().map(Ok),
                        Moment::Time(t),
                    );
                    let (Ok(Ok(full)), Ok(Ok(short))) = (full, short) else {
                        panic!("after event {n}, at {t}: replay failed");
                    };
                    assert_eq!(short.desired_json, full.desired_json, "after event {n}, at {t}");
                    assert_eq!(short.services, full.services, "after event {n}, at {t}");
                    assert_eq!(short.instances, full.instances, "after event {n}, at {t}");
                    assert_eq!(short.dataplane_version, full.dataplane_version);
                    assert_eq!(short.config_version, full.config_version);
                }
            }
            let b = j.bounds().unwrap();
            assert_eq!(j.dropped(), 300 - (b.len() - 1), "every dropped event is counted");
            assert!(truncations >= 10, "{truncations} truncations");
            let first = j.list(1, 1).unwrap().remove(0);
            assert_eq!(first.kind, "checkpoint");
            assert!(first.summary.contains("dropped"), "{}", first.summary);
            // A moment before the checkpoint is refused by name, not replayed wrong.
            let early = replay::<std::convert::Infallible, _>(
                "lvs01",
                &configs,
                j.iter_from(1).map(|e| Ok(e.unwrap())),
                Moment::Time(1005),
            );
            assert!(matches!(early, Ok(Err(ReplayError::Dropped { .. }))));
        }
        // The count survives a restart.
        let db = crate::journal::reopen(&dir);
        let j = Journal::open(&db, "lvs01", 20).unwrap();
        let b = j.bounds().unwrap();
        assert_eq!(j.dropped(), 300 - (b.len() - 1));
        assert_eq!(j.append("check", "x", "y").unwrap(), 301);
        drop(db);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

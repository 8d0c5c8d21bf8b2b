//! Replay benchmark (issue 9): 100,000 config + runtime events folded to one moment.
//! A history of 50 committed versions of a 100-virtual-server x 4-real-server config, and a
//! journal of 100,000 runtime events (an `apply` of each version, checker flaps, VRRP
//! transitions and priority changes, syncs) replayed to its last moment. Prints events/s
//! for the fold alone (events already decoded), with decoding as the journal stores them
//! (bincode) and with JSON decoding (journals of earlier hanodes). Every run reads the
//! 50 configs out of the history afresh (their preparation is part of the time).
//!
//! `cargo run --release -p hanode --example replay_bench`

use ha_config::api::{EventDetail, EventItem};
use hanode::replay::{replay, Configs, Moment};
use raft_store::events::{ConfigEvent, Proposal};
use raft_store::state::HistoryEntry;
use std::convert::Infallible;
use std::time::Instant;

const VERSIONS: u64 = 50;
const EVENTS: u64 = 100_000;
const VS: u32 = 100;
const RS: u32 = 4;

fn config_text(generation: u64) -> String {
    let mut s = String::from(
        "vrrp_instance VI_1 {\n interface ens33\n virtual_router_id 51\n @lvs01 priority 100\n @lvs02 priority 90\n virtual_ipaddress {\n  198.18.116.134\n }\n}\n",
    );
    for v in 0..VS {
        s.push_str(&format!(
            "virtual_server 198.18.116.134 {} {{\n lb_kind DR\n",
            1000 + v
        ));
        for r in 0..RS {
            s.push_str(&format!(
                " real_server 198.18.117.{} {} {{\n  weight {}\n  TCP_CHECK {{\n  }}\n }}\n",
                10 + r,
                1000 + v,
                1 + (generation + u64::from(r)) % 100
            ));
        }
        s.push_str("}\n");
    }
    s
}

fn history() -> Vec<HistoryEntry> {
    (1..=VERSIONS)
        .map(|v| {
            let (_, l) = ha_config::cluster::load_str("cluster.conf", &config_text(v), &[]);
            assert!(!l.diags.has_errors(), "{:?}", l.diags);
            HistoryEntry {
                seq: v,
                version: v,
                log_index: v,
                at_ms: v * 1000,
                accepted_by: "lvs01".into(),
                event: ConfigEvent::ConfigProposed(Box::new(Proposal::new(
                    l.cluster, "ops", "bench", v, None,
                ))),
                summary: String::new(),
                prev_hash: String::new(),
                hash: String::new(),
            }
        })
        .collect()
}

/// A small deterministic generator (xorshift).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn journal() -> Vec<EventItem> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let per_version = EVENTS / VERSIONS;
    (1..=EVENTS)
        .map(|seq| {
            let version = (seq - 1) / per_version + 1;
            let at_ms = version * 1000 + 10 + (seq - 1) % per_version;
            let detail = match (seq - 1) % per_version {
                0 => EventDetail::Applied {
                    version,
                    unstarted: Vec::new(),
                },
                1 => EventDetail::Sync {
                    version: Some(version),
                    ops: 8,
                    errors: 0,
                    repaired: 0,
                },
                n if n % 100 == 50 => EventDetail::VrrpState {
                    instance: "VI_1".into(),
                    from: "BACKUP".into(),
                    to: if n % 200 == 50 { "MASTER" } else { "BACKUP" }.into(),
                    priority: 100,
                    reason: "preempted".into(),
                },
                n if n % 100 == 75 => EventDetail::VrrpPriority {
                    instance: "VI_1".into(),
                    from: 100,
                    to: 90,
                },
                _ => {
                    let r = rng.next();
                    let vs = (r % u64::from(VS)) as u32;
                    let rs = ((r >> 16) % u64::from(RS)) as u32;
                    EventDetail::Check {
                        vs: format!("198.18.116.134:{}", 1000 + vs),
                        rs: format!("198.18.117.{}:{}", 10 + rs, 1000 + vs),
                        checker: "TCP_CHECK#0".into(),
                        up: (r >> 40).is_multiple_of(2),
                        weight: None,
                        reason: "connection refused".into(),
                    }
                }
            };
            // Kind, subject and summary as the director writes them.
            let (kind, subject, summary) = match &detail {
                EventDetail::Applied { version, .. } => (
                    "apply",
                    "config".to_string(),
                    format!("now running version {version}"),
                ),
                EventDetail::Sync { version, ops, .. } => (
                    "sync",
                    "nftables".to_string(),
                    format!("version {version:?} applied: {ops} ops, 0 errors"),
                ),
                EventDetail::VrrpState { to, .. } => ("vrrp", "VI_1".to_string(), format!("BACKUP -> {to}")),
                EventDetail::VrrpPriority { .. } => {
                    ("vrrp", "VI_1".to_string(), "priority 100 -> 90".to_string())
                }
                EventDetail::Check { rs, up, .. } => (
                    "check",
                    rs.clone(),
                    if *up {
                        "DOWN -> UP: connected"
                    } else {
                        "UP -> DOWN: connection refused"
                    }
                    .to_string(),
                ),
                _ => ("other", String::new(), String::new()),
            };
            EventItem {
                seq,
                at_ms,
                node: "lvs01".into(),
                kind: kind.into(),
                subject,
                summary,
                detail: Some(detail),
            }
        })
        .collect()
}

fn main() {
    let h = history();
    let events = journal();
    let stored: Vec<Vec<u8>> = events
        .iter()
        .map(|e| hanode::journal::encode(e).expect("encode"))
        .collect();
    let json: Vec<Vec<u8>> = events
        .iter()
        .map(|e| serde_json::to_vec(e).expect("encode"))
        .collect();
    let end = Moment::Time(u64::MAX);
    let total = EVENTS + VERSIONS;
    let mut best_fold = f64::MAX;
    let mut best_decoded = f64::MAX;
    let mut best_json = f64::MAX;
    let mut dests = 0;
    for _ in 0..5 {
        // Each run reads the configs afresh: preparing each applied version's view for the
        // check state is part of the fold's time.
        let t = Instant::now();
        let configs = Configs::from_history("lvs01", &h);
        let r = replay::<Infallible, _>("lvs01", &configs, events.iter().map(Ok), end);
        best_fold = best_fold.min(t.elapsed().as_secs_f64());
        if let Ok(Ok(r)) = r {
            dests = r.desired_json.as_array().map(|a| a.len()).unwrap_or(0);
        }
        let t = Instant::now();
        let configs = Configs::from_history("lvs01", &h);
        let r = replay(
            "lvs01",
            &configs,
            json.iter().map(|b| serde_json::from_slice::<EventItem>(b)),
            end,
        );
        best_json = best_json.min(t.elapsed().as_secs_f64());
        assert!(matches!(r, Ok(Ok(_))));
        let t = Instant::now();
        let configs = Configs::from_history("lvs01", &h);
        let r = replay(
            "lvs01",
            &configs,
            stored.iter().map(|b| hanode::journal::decode(b)),
            end,
        );
        best_decoded = best_decoded.min(t.elapsed().as_secs_f64());
        assert!(matches!(r, Ok(Ok(_))));
    }
    println!(
        "replay of {EVENTS} runtime events + {VERSIONS} config versions ({VS} virtual servers x {RS} real servers) to the last moment ({dests} services in the table):"
    );
    println!(
        "  fold (events decoded):     {:>8.1} ms  {:>10.0} events/s",
        best_fold * 1e3,
        total as f64 / best_fold
    );
    println!(
        "  fold + decoding as stored: {:>8.1} ms  {:>10.0} events/s  (bincode, {} bytes/event)",
        best_decoded * 1e3,
        total as f64 / best_decoded,
        stored.iter().map(Vec::len).sum::<usize>() / stored.len()
    );
    println!(
        "  fold + JSON decoding:      {:>8.1} ms  {:>10.0} events/s  (journals of earlier hanodes, {} bytes/event)",
        best_json * 1e3,
        total as f64 / best_json,
        json.iter().map(Vec::len).sum::<usize>() / json.len()
    );
}

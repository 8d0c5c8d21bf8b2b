//! The desired destinations of a virtual server, from its configuration and the verdicts
//! of its real servers' checkers (keepalived's rules). Pure: the data plane makes the
//! kernel table equal to this.
//!
//! - A real server is alive when all its checkers are up (no checker: always alive).
//! - Alive: in the table with its weight (a dynamic MISC_CHECK's weight if it set one).
//!   Dead: removed, or kept with weight 0 under `inhibit_on_failure`.
//! - Quorum: the alive weight sum against `quorum` with `hysteresis` (down below
//!   quorum - hysteresis, up again at quorum + hysteresis). With quorum lost and a
//!   `sorry_server`, the sorry server replaces the alive real servers.

use super::schedule::Health;
use ha_config::model::{Forwarding, RealServer, VirtualServer};
use std::net::IpAddr;

/// The combined verdict on one real server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RsVerdict {
    pub alive: bool,
    /// Weight set by a dynamic MISC_CHECK.
    pub weight: Option<u32>,
}

/// Combines the checkers of one real server: alive iff all are up.
pub fn rs_verdict(checkers: impl IntoIterator<Item = (Health, Option<u32>)>) -> RsVerdict {
    let mut alive = true;
    let mut weight = None;
    for (h, w) in checkers {
        alive &= h == Health::Up;
        weight = weight.or(w);
    }
    RsVerdict { alive, weight }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Dest {
    pub ip: IpAddr,
    pub port: Option<u16>,
    pub weight: u32,
    pub forwarding: Forwarding,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VsOutcome {
    pub dests: Vec<Dest>,
    pub quorum_up: bool,
    pub sorry_active: bool,
}

/// `verdict` gives each real server's verdict (by its index in `vs.real_servers`, and the
/// real server); `quorum_was_up` is the previous quorum
/// state (true at start, as keepalived).
pub fn desired(
    vs: &VirtualServer,
    verdict: impl Fn(usize, &RealServer) -> RsVerdict,
    quorum_was_up: bool,
) -> VsOutcome {
    let fwd = |rs: &RealServer| rs.lb_kind.unwrap_or(vs.lb_kind);
    let verdicts: Vec<(&RealServer, RsVerdict)> = vs
        .real_servers
        .iter()
        .enumerate()
        .map(|(j, rs)| (rs, verdict(j, rs)))
        .collect();
    let weight_of = |rs: &RealServer, v: &RsVerdict| v.weight.unwrap_or(rs.weight);
    let alive_sum: u64 = verdicts
        .iter()
        .filter(|(_, v)| v.alive)
        .map(|(rs, v)| u64::from(weight_of(rs, v)))
        .sum();
    let quorum = u64::from(vs.quorum.max(1));
    let hysteresis = u64::from(vs.hysteresis);
    let quorum_up = if quorum_was_up {
        !(alive_sum == 0 || alive_sum < quorum.saturating_sub(hysteresis))
    } else {
        alive_sum >= quorum + hysteresis
    };
    let sorry_active = !quorum_up && vs.sorry_server.is_some();
    let mut dests = Vec::new();
    for (rs, v) in &verdicts {
        let keep_alive = v.alive && !sorry_active;
        if keep_alive {
            dests.push(Dest {
                ip: rs.ip,
                port: rs.port,
                weight: weight_of(rs, v),
                forwarding: fwd(rs),
            });
        } else if rs.inhibit_on_failure {
            dests.push(Dest {
                ip: rs.ip,
                port: rs.port,
                weight: 0,
                forwarding: fwd(rs),
            });
        }
    }
    if let Some(s) = &vs.sorry_server {
        if sorry_active || vs.sorry_server_inhibit {
            dests.push(Dest {
                ip: s.ip,
                port: s.port,
                weight: if sorry_active { 1 } else { 0 },
                forwarding: s.forwarding.unwrap_or(vs.lb_kind),
            });
        }
    }
    dests.sort();
    VsOutcome {
        dests,
        quorum_up,
        sorry_active,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ha_config::cluster;

    fn vs(extra: &str, rs_extra: &str) -> VirtualServer {
        let text = format!(
            "virtual_server 198.18.116.134 80 {{\n lb_kind DR\n{extra} real_server 198.18.116.131 80 {{\n  weight 3\n{rs_extra} }}\n real_server 198.18.116.132 80 {{\n  weight 2\n }}\n}}\n"
        );
        let (_, l) = cluster::load_str("t.conf", &text, &[]);
        assert!(!l.diags.has_errors(), "{:?}", l.diags);
        (*l.cluster.default.virtual_servers[0]).clone()
    }

    fn alive_if(ips: &'static [&'static str]) -> impl Fn(usize, &RealServer) -> RsVerdict {
        move |_, rs| RsVerdict {
            alive: ips.iter().any(|i| rs.ip.to_string() == *i),
            weight: None,
        }
    }

    fn ips(o: &VsOutcome) -> Vec<(String, u32)> {
        o.dests.iter().map(|d| (d.ip.to_string(), d.weight)).collect()
    }

    #[test]
    fn dead_servers_leave_the_table() {
        let v = vs("", "");
        let o = desired(&v, alive_if(&["198.18.116.132"]), true);
        assert_eq!(ips(&o), vec![("198.18.116.132".into(), 2)]);
        assert!(o.quorum_up);
    }

    #[test]
    fn inhibit_on_failure_keeps_weight_zero() {
        let v = vs("", "  inhibit_on_failure\n");
        let o = desired(&v, alive_if(&["198.18.116.132"]), true);
        assert_eq!(
            ips(&o),
            vec![("198.18.116.131".into(), 0), ("198.18.116.132".into(), 2)]
        );
    }

    #[test]
    fn quorum_with_hysteresis_and_sorry_server() {
        let v = vs(" quorum 4\n hysteresis 1\n sorry_server 198.18.116.140 80\n", "");
        // Both alive: 5 >= 4.
        let o = desired(&v, alive_if(&["198.18.116.131", "198.18.116.132"]), true);
        assert!(o.quorum_up && !o.sorry_active);
        // Only .131 (3): 3 >= 4 - 1, still up (hysteresis).
        let o = desired(&v, alive_if(&["198.18.116.131"]), true);
        assert!(o.quorum_up);
        // Only .132 (2) < 3: lost; the sorry server replaces the alive ones.
        let o = desired(&v, alive_if(&["198.18.116.132"]), true);
        assert!(!o.quorum_up && o.sorry_active);
        assert_eq!(ips(&o), vec![("198.18.116.140".into(), 1)]);
        // From down, 3 is not enough to come back (needs 4 + 1).
        let o = desired(&v, alive_if(&["198.18.116.131"]), false);
        assert!(!o.quorum_up);
        let o = desired(&v, alive_if(&["198.18.116.131", "198.18.116.132"]), false);
        assert!(o.quorum_up);
    }

    #[test]
    fn all_checkers_must_be_up_and_dynamic_weight_wins() {
        assert!(!rs_verdict([(Health::Up, None), (Health::Down, None)]).alive);
        assert!(rs_verdict([]).alive);
        let v = vs("", "");
        let o = desired(
            &v,
            |_, rs| RsVerdict {
                alive: true,
                weight: (rs.ip.to_string() == "198.18.116.131").then_some(9),
            },
            true,
        );
        assert_eq!(
            ips(&o),
            vec![("198.18.116.131".into(), 9), ("198.18.116.132".into(), 2)]
        );
    }
}

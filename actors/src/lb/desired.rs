//! Config + checker outcome -> kernel services (pure). A `virtual_server` becomes one
//! service, a `virtual_server group` one per member (address ranges expanded), each with
//! the destinations the checkers currently allow (see `check::table`).

use super::model::{DestKey, DestSpec, Persistence, Service, SvcKey, SvcSpec};
use crate::check::table::VsOutcome;
use ha_config::model::{Forwarding, VirtualServer, VirtualServerGroup, VsKey, VsgMember};
use std::net::IpAddr;

/// The kernel keys a virtual server stands for.
pub fn keys(vs: &VirtualServer, groups: &[VirtualServerGroup]) -> Vec<SvcKey> {
    let fwmark_v6 = vs.real_servers.first().map(|r| r.ip.is_ipv6()).unwrap_or(false);
    match &vs.key {
        VsKey::Addr { ip, port } => vec![SvcKey::Inet {
            proto: vs.protocol,
            addr: *ip,
            port: *port,
        }],
        VsKey::Fwmark(mark) => vec![SvcKey::Fwmark {
            v6: fwmark_v6,
            mark: *mark,
        }],
        VsKey::Group(name) => {
            let Some(g) = groups.iter().find(|g| &g.name == name) else {
                return Vec::new();
            };
            let mut out = Vec::new();
            for m in &g.members {
                match m {
                    VsgMember::Addr { ip, range_end, port } => {
                        for addr in expand(*ip, *range_end) {
                            out.push(SvcKey::Inet {
                                proto: vs.protocol,
                                addr,
                                port: *port,
                            });
                        }
                    }
                    VsgMember::Fwmark(mark) => out.push(SvcKey::Fwmark {
                        v6: fwmark_v6,
                        mark: *mark,
                    }),
                }
            }
            out.sort();
            out.dedup();
            out
        }
    }
}

/// `IP-LAST`: LAST replaces the last octet (IPv4) or hextet (IPv6).
fn expand(ip: IpAddr, last: Option<u16>) -> Vec<IpAddr> {
    let Some(last) = last else { return vec![ip] };
    match ip {
        IpAddr::V4(a) => {
            let o = a.octets();
            (u16::from(o[3])..=last.min(255))
                .map(|x| IpAddr::from([o[0], o[1], o[2], x as u8]))
                .collect()
        }
        IpAddr::V6(a) => {
            let mut s = a.segments();
            (s[7]..=last)
                .map(|x| {
                    s[7] = x;
                    IpAddr::from(s)
                })
                .collect()
        }
    }
}

/// The spec every service of `vs` gets.
pub fn spec(vs: &VirtualServer, v6: bool) -> SvcSpec {
    let full = if v6 { 128 } else { 32 };
    SvcSpec {
        sched: vs.lb_algo.name().to_string(),
        // keepalived: `persistence_timeout 0` means no persistence.
        persistence: vs
            .persistence_timeout
            .filter(|t| *t > 0)
            .map(|timeout| Persistence {
                timeout,
                prefix: vs
                    .persistence_granularity
                    .map(|m| prefix_of(m).unwrap_or(full))
                    .unwrap_or(full),
            }),
        ops: vs.ops,
        sched_flags: vs.sched_flags.ipvs_bits(),
    }
}

/// The prefix length of a contiguous netmask (`255.255.255.0` -> 24); IPv6
/// granularity is written as a mask too.
pub fn prefix_of(mask: IpAddr) -> Option<u8> {
    let (bits, width) = match mask {
        IpAddr::V4(m) => (u128::from(u32::from(m)) << 96, 32),
        IpAddr::V6(m) => (u128::from(m), 128),
    };
    let ones = bits.leading_ones();
    (bits.checked_shl(ones).unwrap_or(0) == 0).then_some(ones.min(width) as u8)
}

/// The services of one virtual server with the destinations of `outcome`.
pub fn services(
    vs: &VirtualServer,
    groups: &[VirtualServerGroup],
    outcome: &VsOutcome,
) -> Vec<(SvcKey, Service)> {
    keys(vs, groups)
        .into_iter()
        .map(|key| {
            let port = match key {
                SvcKey::Inet { port, .. } => port,
                SvcKey::Fwmark { .. } => 0,
            };
            let dests = outcome
                .dests
                .iter()
                .map(|d| {
                    // keepalived: a real server that is not masqueraded (DR, TUN) takes
                    // the service's port (group entries' included), none (`:0`) for a
                    // fwmark service; only NAT keeps its own.
                    let port = match d.forwarding {
                        Forwarding::Nat => d.port.unwrap_or(port),
                        _ => port,
                    };
                    (
                        DestKey { addr: d.ip, port },
                        DestSpec {
                            fwd: d.forwarding,
                            weight: d.weight,
                            u_thresh: 0,
                            l_thresh: 0,
                        },
                    )
                })
                .collect();
            (
                key,
                Service {
                    spec: spec(vs, key.is_v6()),
                    dests,
                },
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::table::Dest;
    use ha_config::cluster;

    fn config(text: &str) -> ha_config::model::Config {
        let (_, l) = cluster::load_str("t.conf", text, &[]);
        assert!(!l.diags.has_errors(), "{:?}", l.diags);
        l.cluster.default
    }

    #[test]
    fn seed_virtual_server_becomes_one_dr_service() {
        let c = config(
            "virtual_server 198.18.116.134 80 {\n lb_algo rr\n lb_kind DR\n persistence_timeout 300\n persistence_granularity 255.255.255.0\n real_server 198.18.116.131 80 {\n weight 1\n }\n}\n",
        );
        let vs = &c.virtual_servers[0];
        let outcome = VsOutcome {
            dests: vec![Dest {
                ip: "198.18.116.131".parse().unwrap(),
                port: Some(80),
                weight: 1,
                forwarding: Forwarding::Dr,
            }],
            quorum_up: true,
            sorry_active: false,
        };
        let s = services(vs, &c.vs_groups, &outcome);
        assert_eq!(s.len(), 1);
        let (k, svc) = &s[0];
        assert_eq!(k.to_string(), "TCP 198.18.116.134:80");
        assert_eq!(svc.spec.sched, "rr");
        assert_eq!(
            svc.spec.persistence,
            Some(Persistence {
                timeout: 300,
                prefix: 24
            })
        );
        assert_eq!(svc.dests.len(), 1);
    }

    #[test]
    fn groups_expand_ranges_and_fwmarks() {
        let c = config(
            "virtual_server_group web {\n 198.18.116.140-142 80\n fwmark 7\n}\nvirtual_server group web {\n lb_kind DR\n real_server 198.18.116.131 80 {\n }\n}\n",
        );
        let ks: Vec<String> = keys(&c.virtual_servers[0], &c.vs_groups)
            .iter()
            .map(|k| k.to_string())
            .collect();
        assert_eq!(
            ks,
            vec![
                "TCP 198.18.116.140:80",
                "TCP 198.18.116.141:80",
                "TCP 198.18.116.142:80",
                "FWM 7"
            ]
        );
    }

    #[test]
    fn fwmark_real_servers_have_no_port_unless_masqueraded() {
        let c = config("virtual_server fwmark 7 {\n lb_kind DR\n real_server 198.18.116.131 80 {\n }\n}\n");
        let dest = |fwd| Dest {
            ip: "198.18.116.131".parse().unwrap(),
            port: Some(80),
            weight: 1,
            forwarding: fwd,
        };
        let port_of = |fwd| {
            let outcome = VsOutcome {
                dests: vec![dest(fwd)],
                quorum_up: true,
                sorry_active: false,
            };
            let s = services(&c.virtual_servers[0], &c.vs_groups, &outcome);
            s[0].1.dests.keys().next().map(|k| k.port)
        };
        assert_eq!(
            port_of(Forwarding::Dr),
            Some(0),
            "keepalived: `port will be ignored`"
        );
        assert_eq!(port_of(Forwarding::Nat), Some(80));
    }

    #[test]
    fn netmasks_become_prefixes() {
        assert_eq!(prefix_of("255.255.255.0".parse().unwrap()), Some(24));
        assert_eq!(prefix_of("255.255.255.255".parse().unwrap()), Some(32));
        assert_eq!(prefix_of("255.0.255.0".parse().unwrap()), None);
        assert_eq!(prefix_of("ffff:ffff:ffff:ffff::".parse().unwrap()), Some(64));
    }
}

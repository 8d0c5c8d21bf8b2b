//! Property tests over generated configurations: printing then parsing gives the same
//! model; the hash ignores formatting and block order and sees every semantic edit; a
//! cluster merged from per-director views gives each director its view back.

use ha_config::canon;
use ha_config::cluster::{self, ClusterConfig, NodeInput};
use ha_config::lower::SpanIndex;
use ha_config::model::*;
use ha_config::printer;
use proptest::prelude::*;
use std::net::{IpAddr, Ipv4Addr};

fn ip() -> impl Strategy<Value = IpAddr> {
    (0u8..4, 1u8..255).prop_map(|(c, d)| IpAddr::V4(Ipv4Addr::new(198, 18, c, d)))
}

fn name() -> impl Strategy<Value = String> {
    "[A-Za-z][A-Za-z0-9_]{0,8}"
}

fn secs(lo: u64, hi: u64) -> impl Strategy<Value = Dur> {
    (lo..=hi).prop_map(Dur::from_secs)
}

fn script_cmd() -> impl Strategy<Value = String> {
    prop_oneof![
        "/usr/local/bin/[a-z]{1,8}",
        "/usr/bin/[a-z]{1,5} [a-z]{1,5} [0-9]{1,3}"
    ]
}

fn vrrp_script() -> impl Strategy<Value = VrrpScript> {
    (
        name(),
        script_cmd(),
        1u64..10,
        proptest::option::of(1u64..10),
        -50i32..50,
        any::<bool>(),
        1u32..5,
        1u32..5,
        any::<bool>(),
    )
        .prop_map(
            |(n, cmd, interval, timeout, weight, rev, rise, fall, init_fail)| {
                let mut s = VrrpScript::new(n);
                s.script = cmd;
                s.interval = Dur::from_secs(interval);
                s.timeout = timeout.map(Dur::from_secs);
                s.weight = weight;
                s.weight_reverse = rev && weight != 0;
                s.rise = rise;
                s.fall = fall;
                s.init_fail = init_fail;
                s
            },
        )
}

fn vip() -> impl Strategy<Value = VipAddr> {
    (
        ip(),
        proptest::option::of(8u8..=32),
        proptest::option::of(Just("ens33".to_string())),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(a, prefix, dev, label, no_track)| {
            let mut v = VipAddr::new(a);
            v.prefix = prefix;
            v.label = if label && dev.is_some() {
                Some("ens33:9".into())
            } else {
                None
            };
            v.dev = dev;
            v.no_track = no_track;
            v
        })
}

fn instance(scripts: Vec<String>) -> impl Strategy<Value = VrrpInstance> {
    (
        (
            name(),
            any::<bool>(),
            prop_oneof![Just("eth0"), Just("ens33")],
            1u8..=255,
            1u8..=254,
            1u64..5,
        ),
        proptest::option::of("[a-z0-9]{1,8}"),
        proptest::collection::vec(vip(), 1..3),
        any::<bool>(),
        proptest::option::of(1u64..30),
        proptest::sample::subsequence(scripts.clone(), 0..=scripts.len()),
        proptest::option::of(-20i32..20),
        proptest::option::of(script_cmd()),
        (0u32..10, 1u32..10),
    )
        .prop_map(
            |(
                (n, master, iface, vrid, prio, adv),
                pass,
                vips,
                nopreempt,
                pdelay,
                tracked,
                tw,
                notify,
                garp,
            )| {
                let mut i = VrrpInstance::new(n);
                i.state = if master {
                    InitialState::Master
                } else {
                    InitialState::Backup
                };
                i.interface = iface.to_string();
                i.virtual_router_id = vrid;
                i.priority = prio;
                i.advert_int = Dur::from_secs(adv);
                i.auth = pass.map(Auth::Pass);
                i.virtual_ipaddress = vips;
                i.nopreempt = nopreempt;
                i.preempt_delay = pdelay.map(Dur::from_secs);
                i.track_script = tracked
                    .into_iter()
                    .map(|name| TrackRef {
                        name,
                        weight: tw,
                        weight_reverse: false,
                    })
                    .collect();
                i.notify.master = notify.map(Script::new);
                i.garp.master_delay = garp.0;
                i.garp.master_repeat = garp.1;
                i
            },
        )
}

fn url() -> impl Strategy<Value = UrlCheck> {
    (
        "/[a-z]{0,6}",
        proptest::option::of("[0-9a-f]{32}"),
        proptest::collection::vec((100u16..600, 0u16..50), 0..3),
    )
        .prop_map(|(path, digest, codes)| UrlCheck {
            path,
            digest,
            status_code: ha_config::lower::normalize_status(
                codes
                    .into_iter()
                    .map(|(lo, span)| StatusRange {
                        lo,
                        hi: (lo + span).min(599),
                    })
                    .collect(),
            ),
            virtualhost: None,
            extra: vec![],
        })
}

fn checker() -> impl Strategy<Value = Checker> {
    let kind = prop_oneof![
        Just(CheckKind::Tcp),
        proptest::collection::vec(url(), 1..3).prop_map(|urls| CheckKind::Http(HttpCheck {
            urls,
            virtualhost: None
        })),
        (
            proptest::collection::vec(url(), 1..2),
            proptest::option::of("[a-z]{1,8}\\.example")
        )
            .prop_map(|(urls, vh)| CheckKind::Ssl(HttpCheck {
                urls,
                virtualhost: vh
            })),
        (script_cmd(), proptest::option::of(1u64..10), any::<bool>()).prop_map(|(p, t, d)| CheckKind::Misc(
            MiscCheck {
                misc_path: p,
                misc_timeout: t.map(Dur::from_secs),
                misc_dynamic: d,
                user: None
            }
        )),
    ];
    (
        kind,
        secs(1, 10),
        1u32..5,
        secs(0, 5),
        secs(1, 30),
        proptest::option::of(1u16..65535),
        any::<bool>(),
    )
        .prop_map(|(kind, ct, retry, dbr, dl, cport, alpha)| Checker {
            kind,
            common: CheckCommon {
                connect_port: cport,
                connect_timeout: ct,
                retry,
                delay_before_retry: dbr,
                delay_loop: dl,
                alpha,
                ..CheckCommon::default()
            },
            extra: vec![],
        })
}

fn real_server(port: u16) -> impl Strategy<Value = RealServer> {
    (
        ip(),
        0u32..100,
        any::<bool>(),
        proptest::collection::vec(checker(), 0..3),
    )
        .prop_map(move |(ip, w, inhibit, checkers)| {
            let mut rs = RealServer::new(ip, Some(port));
            rs.weight = w;
            rs.inhibit_on_failure = inhibit;
            rs.checkers = checkers;
            rs
        })
}

fn virtual_server() -> impl Strategy<Value = VirtualServer> {
    (
        ip(),
        prop_oneof![Just(80u16), Just(443), Just(8080)],
        0usize..13,
        0usize..3,
        0usize..3,
        proptest::option::of(1u32..3600),
        1u32..4,
    )
        .prop_flat_map(|(ip, port, algo, kind, proto, persist, quorum)| {
            proptest::collection::vec(real_server(port), 0..4).prop_map(move |mut rss| {
                rss.sort_by_key(|r| r.ip);
                rss.dedup_by_key(|r| r.ip);
                let mut vs = VirtualServer::new(VsKey::Addr { ip, port });
                vs.lb_algo = Scheduler::ALL[algo];
                vs.lb_kind = [Forwarding::Nat, Forwarding::Dr, Forwarding::Tun][kind];
                vs.protocol = [Protocol::Tcp, Protocol::Udp, Protocol::Sctp][proto];
                vs.persistence_timeout = persist;
                vs.quorum = quorum;
                vs.real_servers = rss;
                vs
            })
        })
}

fn config() -> impl Strategy<Value = Config> {
    (
        proptest::option::of(name()),
        any::<bool>(),
        proptest::collection::vec(vrrp_script(), 0..3),
        proptest::collection::vec(virtual_server(), 0..4),
    )
        .prop_flat_map(|(router_id, skip, mut scripts, mut vss)| {
            scripts.sort_by(|a, b| a.name.cmp(&b.name));
            scripts.dedup_by(|a, b| a.name == b.name);
            vss.sort_by(|a, b| a.key.cmp(&b.key));
            vss.dedup_by(|a, b| a.key == b.key);
            let names: Vec<String> = scripts.iter().map(|s| s.name.clone()).collect();
            proptest::collection::vec(instance(names), 0..3).prop_map(move |mut insts| {
                insts.sort_by(|a, b| a.name.cmp(&b.name));
                insts.dedup_by(|a, b| a.name == b.name);
                let mut c = Config::default();
                c.global.router_id = router_id.clone();
                c.global.vrrp_skip_check_adv_addr = skip;
                c.vrrp_scripts = scripts.clone();
                c.instances = insts;
                c.virtual_servers = vss.iter().cloned().map(std::sync::Arc::new).collect();
                c
            })
        })
}

fn reparse(text: &str) -> ClusterConfig {
    let (parsed, loaded) = cluster::load_str("gen.conf", text, &[]);
    assert!(parsed.diags.is_empty(), "{:?}\n{text}", parsed.diags);
    loaded.cluster
}

/// Same meaning, different text: tabs, comments, blank lines, quotes.
fn reformat(text: &str, salt: u32) -> String {
    let mut out = String::new();
    for (n, line) in text.lines().enumerate() {
        let t = line.trim_start();
        let indent = if salt.is_multiple_of(2) {
            "\t".repeat((line.len() - t.len()) / 4)
        } else {
            "  ".repeat((line.len() - t.len()) / 4)
        };
        out.push_str(&indent);
        out.push_str(t);
        if (n as u32 + salt).is_multiple_of(3) {
            out.push_str("   # comment");
        }
        out.push('\n');
        if (n as u32 + salt).is_multiple_of(5) {
            out.push_str("! a comment line\n\n");
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, .. ProptestConfig::default() })]

    #[test]
    fn parse_of_print_is_identity(cfg in config()) {
        let text = printer::print(&cfg);
        let back = reparse(&text);
        prop_assert!(back.nodes.is_empty());
        prop_assert_eq!(&back.default, &cfg, "printed:\n{}", text);
    }

    #[test]
    fn hash_ignores_formatting_and_block_order(cfg in config(), salt in 0u32..100) {
        let original = ClusterConfig { nodes: Default::default(), default: cfg.clone() };
        let h = canon::hash(&original);
        prop_assert_eq!(canon::hash(&reparse(&reformat(&printer::print(&cfg), salt))), h.clone());
        // Reversed block and real-server order: same meaning, same hash.
        let mut shuffled = cfg.clone();
        shuffled.instances.reverse();
        shuffled.virtual_servers.reverse();
        for vs in &mut shuffled.virtual_servers {
            std::sync::Arc::make_mut(vs).real_servers.reverse();
        }
        shuffled.vrrp_scripts.reverse();
        prop_assert_eq!(canon::hash(&reparse(&printer::print(&shuffled))), h);
    }

    #[test]
    fn hash_changes_under_any_semantic_edit(cfg in config(), pick in 0usize..1000, edit in 0u8..6) {
        let h = canon::hash(&ClusterConfig { nodes: Default::default(), default: cfg.clone() });
        let mut m = cfg.clone();
        let changed = match edit {
            0 => { m.global.router_id = Some(format!("{}x", m.global.router_id.unwrap_or_default())); true }
            1 => match m.instances.get_mut(pick % cfg.instances.len().max(1)) {
                Some(i) => { i.priority = if i.priority == 1 { 2 } else { i.priority - 1 }; true }
                None => false,
            },
            2 => match m.virtual_servers.iter_mut().flat_map(|v| std::sync::Arc::make_mut(v).real_servers.iter_mut()).nth(pick % 7) {
                Some(r) => { r.weight += 1; true }
                None => false,
            },
            3 => match m.virtual_servers.get_mut(pick % cfg.virtual_servers.len().max(1)) {
                Some(v) => { let v = std::sync::Arc::make_mut(v); v.real_servers.push(RealServer::new(IpAddr::V4(Ipv4Addr::new(198, 19, 0, 1)), v.real_servers.first().and_then(|r| r.port))); true }
                None => false,
            },
            4 => match m.virtual_servers.iter_mut().flat_map(|v| std::sync::Arc::make_mut(v).real_servers.iter_mut()).flat_map(|r| r.checkers.iter_mut()).nth(pick % 5) {
                Some(c) => { c.common.retry += 1; true }
                None => false,
            },
            _ => match m.instances.get_mut(pick % cfg.instances.len().max(1)) {
                Some(i) => { i.virtual_ipaddress.push(VipAddr::new(IpAddr::V4(Ipv4Addr::new(198, 19, 9, 9)))); true }
                None => false,
            },
        };
        prop_assume!(changed);
        let text = printer::print(&m);
        prop_assert_ne!(canon::hash(&reparse(&text)), h);
    }

    #[test]
    fn merged_cluster_gives_each_director_its_view(cfg in config(), p1 in 1u8..=254, p2 in 1u8..=254, w in 0u32..50, master in any::<bool>()) {
        let mut a = cfg.clone();
        let mut b = cfg.clone();
        for i in &mut a.instances {
            i.priority = p1;
            i.state = if master { InitialState::Master } else { InitialState::Backup };
        }
        for i in &mut b.instances {
            i.priority = p2;
        }
        if let Some(rs) = b.virtual_servers.iter_mut().flat_map(|v| std::sync::Arc::make_mut(v).real_servers.iter_mut()).next() {
            rs.weight = w;
        }
        let spans = SpanIndex::new();
        let loc = |_| String::new();
        let inputs = vec![
            NodeInput { name: "lvs01".into(), config: a.clone(), spans: &spans, locate: &loc, file: "a".into() },
            NodeInput { name: "lvs02".into(), config: b.clone(), spans: &spans, locate: &loc, file: "b".into() },
        ];
        let (merged, text) = cluster::merge(&inputs).map_err(|d| TestCaseError::fail(d.message))?;
        let back = reparse(&text);
        prop_assert_eq!(back.view("lvs01"), &a);
        prop_assert_eq!(back.view("lvs02"), &b);
        prop_assert_eq!(canon::hash(&back), canon::hash(&merged));
        // And the canonical print of the cluster reads back to the same cluster.
        let printed = back.print().map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(canon::hash(&reparse(&printed)), canon::hash(&merged));
    }
}

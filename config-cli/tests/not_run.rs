//! Nothing in a configuration is silently not run (issue 24): a checker, tracker or
//! block keepalived acts on and hanode does not is an error at its line, in `hactl check`
//! (one pass) and in a proposal's path (the whole file) alike, unless `global_defs`
//! accepts it with `hanode_ignore KEYWORD`, and then each use is still a warning.

use ha_config::cluster;
use ha_config::diag::Severity;
use ha_config::file_check::check_str;
use ha_config::model::VsKey;

const SAMPLES: &str = "/usr/share/doc/keepalived/samples";

/// (line, severity, keyword) of each diagnostic about something hanode does not run, by
/// both paths (which must agree).
fn not_run(text: &str) -> Vec<(u32, Severity, String)> {
    let (_, loaded) = cluster::load_str("t.conf", text, &[]);
    let keyword = |m: &str| m.split('`').nth(1).unwrap_or("").to_string();
    let pick = |d: &ha_config::diag::Diagnostic| {
        d.message.contains("is not run by hanode").then(|| {
            (
                d.span.map(|s| s.line).unwrap_or(0),
                d.severity,
                keyword(&d.message),
            )
        })
    };
    let whole: Vec<_> = loaded.diags.iter().filter_map(pick).collect();
    let checked = check_str("t.conf", text, &[]);
    let streamed: Vec<_> = checked.diags.iter().filter_map(pick).collect();
    assert_eq!(
        streamed, whole,
        "hactl check and the whole-file path disagree on:\n{text}"
    );
    whole
}

const TEXT: &str = "bfd_instance bfd1 {\n neighbor_ip 198.18.116.131\n}\n\
vrrp_instance VI_1 {\n interface ens33\n virtual_router_id 51\n priority 100\n vmac_xmit_base\n\
 virtual_ipaddress {\n  198.18.116.134\n }\n track_bfd {\n  bfd1\n }\n\
 use_vmac\n # (two lines\n # kept)\n}\n\
virtual_server 198.18.116.134 53 {\n protocol UDP\n lb_kind DR\n\
 real_server 198.18.116.131 53 {\n  BFD_CHECK {\n   name bfd1\n  }\n }\n\
 real_server 198.18.116.132 53 {\n  BFD_CHECK {\n  }\n }\n\
 real_server 198.18.116.133 53 {\n  UDP_CHECK {\n   require_reply 0a0bXX\n  }\n  PING_CHECK {\n  }\n }\n}\n";

#[test]
fn what_hanode_does_not_run_is_an_error_at_its_line() {
    let found = not_run(TEXT);
    let expect = [
        (1, "bfd_instance"),
        (8, "vmac_xmit_base"),
        (12, "track_bfd"),
        (15, "use_vmac"),
        (23, "BFD_CHECK"),
        (28, "BFD_CHECK"),
    ];
    assert_eq!(
        found,
        expect
            .iter()
            .map(|(l, k)| (*l, Severity::Error, k.to_string()))
            .collect::<Vec<_>>()
    );
    let (_, loaded) = cluster::load_str("t.conf", TEXT, &[]);
    assert!(loaded.diags.has_errors(), "a proposal of it is refused");
    // UDP_CHECK and PING_CHECK are run: lowered with their settings.
    let rs = &loaded.cluster.default.virtual_servers[0].real_servers[2];
    match &rs.checkers[0].kind {
        ha_config::model::CheckKind::Udp(u) => {
            assert!(u.require_reply);
            let want = u.reply.as_ref().expect("reply pattern");
            assert_eq!(want.to_string(), "0a0bXX");
            assert!(want.matches(&[0x0a, 0x0b, 0x7f, 0x01]));
            assert!(!want.matches(&[0x0a, 0x0c]));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(rs.checkers[1].kind, ha_config::model::CheckKind::Ping);
}

#[test]
fn hanode_ignore_accepts_each_keyword_it_names_wherever_global_defs_is() {
    let accept = "global_defs {\n hanode_ignore BFD_CHECK track_bfd\n}\n";
    // Before the uses (lines shift by 3) and after them (global_defs last).
    for (text, shift) in [(format!("{accept}{TEXT}"), 3), (format!("{TEXT}{accept}"), 0)] {
        let found = not_run(&text);
        let severity = |kw: &str| {
            found
                .iter()
                .find(|(_, _, k)| k == kw)
                .map(|(l, s, _)| (*l - shift, *s))
        };
        assert_eq!(severity("BFD_CHECK"), Some((23, Severity::Warning)), "{found:?}");
        assert_eq!(severity("track_bfd"), Some((12, Severity::Warning)));
        // Not named: still refused.
        assert_eq!(severity("use_vmac"), Some((15, Severity::Error)));
        assert_eq!(severity("bfd_instance"), Some((1, Severity::Error)));
    }
    // Per director: `@lvs02 hanode_ignore` accepts it on lvs02 only.
    let text = format!("global_defs {{\n @lvs02 hanode_ignore BFD_CHECK\n}}\n@lvs01 router_id a\n{TEXT}");
    let (parsed, loaded) = cluster::load_str("t.conf", &text, &[]);
    let udp: Vec<String> = loaded
        .diags
        .iter()
        .filter(|d| d.message.contains("`BFD_CHECK`"))
        .map(|d| d.render(&parsed.sources))
        .collect();
    assert!(
        udp.iter()
            .any(|d| d.contains("error") && d.contains("lvs01") && !d.contains("lvs02")),
        "{udp:?}"
    );
    assert!(
        udp.iter().any(|d| d.contains("warning") && d.contains("lvs02")),
        "{udp:?}"
    );
}

#[test]
fn hanode_ignore_names_keepalived_keywords_only() {
    let (parsed, loaded) = cluster::load_str("t.conf", "global_defs {\n hanode_ignore SMTP_CHEK\n}\n", &[]);
    let rendered: Vec<String> = loaded.diags.iter().map(|d| d.render(&parsed.sources)).collect();
    assert_eq!(
        rendered,
        ["t.conf:2:16: error: `hanode_ignore SMTP_CHEK`: not a keepalived keyword"]
    );
    let (_, loaded) = cluster::load_str("t.conf", "global_defs {\n hanode_ignore\n}\n", &[]);
    assert!(loaded.diags.has_errors());
}

/// keepalived: `persistence_timeout` alone is persistence for IPVS's default 360 s.
#[test]
fn persistence_timeout_without_a_value_is_keepalived_default() {
    let (_, loaded) = cluster::load_str(
        "t.conf",
        "virtual_server 198.18.116.134 80 {\n lb_kind DR\n persistence_timeout\n real_server 198.18.116.131 80 {\n  TCP_CHECK {\n  }\n }\n}\n",
        &[],
    );
    assert!(!loaded.diags.has_errors(), "{:?}", loaded.diags);
    let vs = &loaded.cluster.default.virtual_servers[0];
    assert!(matches!(vs.key, VsKey::Addr { .. }));
    assert_eq!(vs.persistence_timeout, Some(360));
}

/// Every Debian sample either runs entirely or is refused with an error at each line it
/// holds that hanode does not run; accepting those keywords with `hanode_ignore` leaves
/// warnings at the same lines and no such error.
#[test]
fn every_debian_sample_runs_entirely_or_is_refused_at_the_line() {
    let mut refused = std::collections::BTreeMap::new();
    let files = std::fs::read_dir(SAMPLES)
        .expect("Debian's keepalived package must be installed (the README's test command installs it)");
    for e in files.flatten() {
        if !e.file_name().to_string_lossy().starts_with("keepalived.conf") {
            continue;
        }
        let text = String::from_utf8_lossy(&std::fs::read(e.path()).expect("read sample")).into_owned();
        let found = not_run(&text);
        if found.is_empty() {
            continue;
        }
        let name = e.file_name().to_string_lossy().into_owned();
        assert!(
            found.iter().all(|(l, s, _)| *s == Severity::Error && *l > 0),
            "{name:?}: {found:?}"
        );
        let keywords: std::collections::BTreeSet<&str> = found.iter().map(|(_, _, k)| k.as_str()).collect();
        let accepted = format!(
            "global_defs {{\n hanode_ignore {}\n}}\n{text}",
            keywords.iter().copied().collect::<Vec<_>>().join(" ")
        );
        let again = not_run(&accepted);
        assert_eq!(
            again
                .iter()
                .map(|(l, s, k)| (*l - 3, *s, k.clone()))
                .collect::<Vec<_>>(),
            found
                .iter()
                .map(|(l, _, k)| (*l, Severity::Warning, k.clone()))
                .collect::<Vec<_>>(),
            "{name:?}"
        );
        refused.insert(name, keywords.into_iter().map(str::to_string).collect::<Vec<_>>());
    }
    // What Debian's samples still hold that hanode does not run (routes, rules, static
    // addresses and VRRP's smtp_alert run since issue 24).
    let want = [(
        "keepalived.conf.conditional_conf",
        vec!["net_namespace", "use_vmac"],
    )];
    assert_eq!(
        refused,
        want.into_iter()
            .map(|(n, k)| (
                n.to_string(),
                k.into_iter().map(str::to_string).collect::<Vec<_>>()
            ))
            .collect(),
    );
}

/// Debian's routing samples: routes and static addresses run as written; the rules sample
/// is refused at its two malformed addresses (`192.168.100./24`), which keepalived skips.
#[test]
fn debian_routing_samples_run_or_are_refused_at_the_bad_address() {
    let load = |name: &str| {
        let path = std::path::Path::new(SAMPLES).join(name);
        let text = String::from_utf8_lossy(&std::fs::read(&path).expect("read sample")).into_owned();
        let (parsed, loaded) = cluster::load_str(name, &text, &[]);
        let errors: Vec<String> = loaded
            .diags
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .map(|d| d.render(&parsed.sources))
            .collect();
        (loaded, errors)
    };
    let (routes, errors) = load("keepalived.conf.vrrp.routes");
    assert!(errors.is_empty(), "{errors:?}");
    let c = &routes.cluster.default;
    assert_eq!(c.global.statics.routes.len(), 5);
    let vi = &c.instances[0];
    assert_eq!(vi.virtual_routes.len(), 7);
    let multipath = &vi.virtual_routes[4];
    assert_eq!(multipath.via.len(), 2, "`or`: a second gateway");
    assert_eq!(vi.virtual_routes[5].kind, ha_config::model::RouteType::Blackhole);
    assert_eq!(vi.virtual_routes[6].table, Some(100));
    let (statics, errors) = load("keepalived.conf.vrrp.static_ipaddress");
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(statics.cluster.default.global.statics.addresses.len(), 3);
    let (_, errors) = load("keepalived.conf.vrrp.rules");
    assert_eq!(
        errors,
        [
            "keepalived.conf.vrrp.rules:11:8: error: `192.168.100./24` is not an address or prefix",
            "keepalived.conf.vrrp.rules:26:12: error: `192.168.200./24` is not an address or prefix",
        ]
    );
}

/// keepalived's DNS_CHECK defaults: `SOA` of the root, 3 retries `delay_loop` apart.
#[test]
fn dns_check_defaults_are_keepalived_s() {
    let (_, loaded) = cluster::load_str(
        "t.conf",
        "virtual_server 198.18.116.134 53 {\n protocol UDP\n delay_loop 6\n real_server 198.18.116.131 53 {\n  DNS_CHECK {\n  }\n  DNS_CHECK {\n   type aaaa\n   name www.example.test\n   retry 1\n  }\n }\n}\n",
        &[],
    );
    assert!(!loaded.diags.has_errors(), "{:?}", loaded.diags);
    let rs = &loaded.cluster.default.virtual_servers[0].real_servers[0];
    let c = &rs.checkers[0];
    assert_eq!(
        c.kind,
        ha_config::model::CheckKind::Dns(ha_config::model::DnsCheck {
            qtype: "SOA".into(),
            name: String::new()
        })
    );
    assert_eq!(c.common.retry, 3);
    assert_eq!(c.common.delay_before_retry, ha_config::model::Dur::from_secs(6));
    match &rs.checkers[1].kind {
        ha_config::model::CheckKind::Dns(d) => {
            assert_eq!((d.qtype.as_str(), d.name.as_str()), ("AAAA", "www.example.test"));
            assert_eq!(d.qtype_code(), 28);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(rs.checkers[1].common.retry, 1);
    let (parsed, loaded) = cluster::load_str(
        "t.conf",
        "virtual_server 198.18.116.134 53 {\n real_server 198.18.116.131 53 {\n  DNS_CHECK {\n   type PTR\n   name a..b\n  }\n }\n}\n",
        &[],
    );
    let text = loaded.diags.render(&parsed.sources);
    assert!(
        text.contains("t.conf:4:9: error: DNS_CHECK type `PTR` is not one of A, NS"),
        "{text}"
    );
    assert!(
        text.contains("t.conf:5:9: error: DNS_CHECK name `a..b` has an empty label"),
        "{text}"
    );
}

/// keepalived's SMTP_CHECK `host` blocks: one checker per host, with the block's timing
/// and `helo_name`; the block's own connection is a checker too only when it sets one.
#[test]
fn smtp_check_host_blocks_are_checkers_of_their_own() {
    let block = |own: &str| {
        format!(
            "virtual_server 198.18.116.134 25 {{\n lb_kind DR\n real_server 198.18.116.131 25 {{\n  SMTP_CHECK {{\n   retry 2\n   helo_name \"foo.bar.com\"\n{own}   host {{\n    connect_ip 198.18.116.140\n    connect_timeout 7\n   }}\n   host {{\n    connect_ip 198.18.116.141\n    connect_port 2525\n   }}\n  }}\n }}\n}}\n"
        )
    };
    let checkers = |text: &str| {
        let (_, loaded) = cluster::load_str("t.conf", text, &[]);
        assert!(!loaded.diags.has_errors(), "{:?}", loaded.diags);
        assert!(loaded
            .diags
            .iter()
            .any(|d| d.message.contains("`host` in SMTP_CHECK is deprecated")));
        loaded.cluster.default.virtual_servers[0].real_servers[0]
            .checkers
            .clone()
    };
    let hosts = checkers(&block(""));
    assert_eq!(hosts.len(), 2);
    let ip = |c: &ha_config::model::Checker| c.common.connect_ip.map(|i| i.to_string());
    assert_eq!(ip(&hosts[0]).as_deref(), Some("198.18.116.140"));
    assert_eq!(
        hosts[0].common.connect_timeout,
        ha_config::model::Dur::from_secs(7)
    );
    assert_eq!(ip(&hosts[1]).as_deref(), Some("198.18.116.141"));
    assert_eq!(hosts[1].common.connect_port, Some(2525));
    assert_eq!(
        hosts[1].common.connect_timeout,
        ha_config::model::Dur::from_secs(5)
    );
    for c in &hosts {
        assert_eq!(c.common.retry, 2);
        assert_eq!(
            c.kind,
            ha_config::model::CheckKind::Smtp(ha_config::model::SmtpCheck {
                helo_name: "foo.bar.com".into()
            })
        );
    }
    let with_own = checkers(&block("   connect_port 587\n"));
    assert_eq!(with_own.len(), 3);
    assert_eq!(with_own[0].common.connect_port, Some(587));
    assert_eq!(ip(&with_own[0]), None, "the real server itself");
}

//! keepalived's routing blocks (issue 24): `static_ipaddress`, `static_routes`,
//! `static_rules`, `virtual_routes`, `virtual_rules` read as keepalived reads them,
//! printed back to the same model; malformed and unsupported words refused at their place.

use ha_config::cluster;
use ha_config::model::*;

const TEXT: &str = "static_ipaddress {\n 198.18.9.1/24 dev ens34 scope link\n}\n\
static_routes {\n 198.18.10.0/24 via 198.18.9.254 dev ens34 metric 50\n default via 198.18.9.254 table 100\n 198.18.11.0/24 dev ens34 protocol bird\n default via fe80::1 dev ens34\n}\n\
static_rules {\n from 198.18.9.0/24 table 100 priority 1000\n not to 198.18.10.0/24 fwmark 0x10/0xff lookup main\n inet6 iif ens34 ipproto tcp dport 80-90 prohibit\n}\n\
vrrp_instance VI_1 {\n interface ens33\n virtual_router_id 51\n virtual_ipaddress {\n  198.18.116.134\n }\n\
 virtual_routes {\n  src 198.18.116.134 198.18.20.0/24 via 198.18.116.1 or 198.18.116.2 onlink\n  blackhole 198.18.21.0/24\n  198.18.22.0/24 dev ens33 scope link protocol static mtu 1400 no_track\n }\n\
 virtual_rules {\n  from 198.18.116.134 table 200\n }\n}\n";

fn rendered(text: &str) -> Vec<String> {
    let (parsed, l) = cluster::load_str("t.conf", text, &[]);
    l.diags
        .iter()
        .filter(|d| d.severity == ha_config::diag::Severity::Error)
        .map(|d| d.render(&parsed.sources))
        .collect()
}

#[test]
fn routes_rules_and_static_addresses_read_and_print_back() {
    let (_, l) = cluster::load_str("t.conf", TEXT, &[]);
    assert!(!l.diags.has_errors(), "{:?}", rendered(TEXT));
    let c = &l.cluster.default;
    let st = &c.global.statics;
    assert_eq!(st.addresses[0].dev.as_deref(), Some("ens34"));
    assert_eq!(st.routes[0].metric, Some(50));
    assert_eq!(st.routes[1].dest.len, 0);
    assert_eq!(st.routes[1].table, Some(100));
    assert_eq!(
        st.routes[2].protocol, None,
        "keepalived's own protocol unless no_track"
    );
    assert!(
        st.routes[3].dest.addr.is_ipv6() && st.routes[3].dest.len == 0,
        "default of the gateway's family"
    );
    assert_eq!(st.rules[0].action, RuleAction::Table(100));
    assert_eq!(
        (st.rules[1].priority, st.rules[2].priority),
        (Some(16384), Some(16384)),
        "keepalived's priority for rules without one, per family"
    );
    assert_eq!(st.rules[0].priority, Some(1000));
    assert!(st.rules[1].not);
    assert_eq!(st.rules[1].fwmark, Some((0x10, Some(0xff))));
    assert_eq!(st.rules[1].action, RuleAction::Table(254));
    assert!(
        st.rules[2].v6 && st.rules[2].dport == Some((80, 90)) && st.rules[2].action == RuleAction::Prohibit
    );
    let vr = &c.instances[0].virtual_routes;
    assert_eq!(vr[0].src, Some("198.18.116.134".parse().unwrap()));
    assert_eq!(vr[0].via.len(), 2);
    assert!(vr[0].onlink);
    assert_eq!(vr[1].kind, RouteType::Blackhole);
    assert_eq!(
        (vr[2].scope, vr[2].protocol, vr[2].mtu),
        (Some(253), Some(4), Some(1400))
    );
    assert_eq!(c.instances[0].virtual_rules[0].action, RuleAction::Table(200));

    let printed = l.cluster.print().expect("print");
    let (_, again) = cluster::load_str("again.conf", &printed, &[]);
    assert!(!again.diags.has_errors(), "{printed}");
    assert_eq!(
        ha_config::canon::canonical_config(&again.cluster.default),
        ha_config::canon::canonical_config(c),
        "{printed}"
    );
}

#[test]
fn bad_routes_and_rules_are_refused_at_their_word() {
    let text = "static_routes {\n 198.18.10.0/24 via 198.18.9.\n 198.18.11.0/24 dev ens34 encap mpls 100\n 198.18.12.0/24\n 198.18.13.0/24 frobnicate 1\n}\n\
static_rules {\n from 198.18.9.0/33 table 1\n from 198.18.9.0/24\n to 198.18.1.0/24 table nosuch\n}\n";
    let e = rendered(text);
    for want in [
        "t.conf:2:21: error: `198.18.9.` is not an IP address",
        "t.conf:3:27: error: `encap` is not run by hanode",
        "t.conf:4:2: error: route to 198.18.12.0/24 has neither a gateway (`via`) nor a device (`dev`)",
        "t.conf:5:17: error: unknown route option `frobnicate`",
        "t.conf:8:7: error: `/33` in `198.18.9.0/33` is not a prefix length 0..32",
        "t.conf:9:2: error: a rule needs `table N`",
        "t.conf:10:25: error: `nosuch` is not a table",
    ] {
        assert!(e.iter().any(|m| m.starts_with(want)), "missing {want} in {e:#?}");
    }
    assert_eq!(e.len(), 7, "one error per bad line: {e:#?}");
}

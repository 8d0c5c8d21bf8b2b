//! The rtnetlink messages of keepalived's routing lines (`virtual_routes`, `static_routes`,
//! `virtual_rules`, `static_rules`), as keepalived 2.2.7 sends them: scope global unless
//! given, table main, protocol keepalived (18) on routes and on rules (but a `no_track`
//! rule's). Pure: interface names are resolved by the caller's lookup.

use ha_config::model::{Prefix, Route, RouteType, Rule, RuleAction, RTPROT_KEEPALIVED};
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteMetric, RouteNextHop, RouteNextHopFlags,
    RouteProtocol, RouteScope, RouteType as NlRouteType,
};
use rtnetlink::packet_route::rule::{
    RuleAction as NlRuleAction, RuleAttribute, RuleFlags, RuleMessage, RulePortRange,
};
use rtnetlink::packet_route::AddressFamily;
use std::net::IpAddr;

fn address(a: IpAddr) -> RouteAddress {
    match a {
        IpAddr::V4(v) => RouteAddress::Inet(v),
        IpAddr::V6(v) => RouteAddress::Inet6(v),
    }
}

fn family(a: IpAddr) -> AddressFamily {
    if a.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    }
}

/// The message adding (or, the same, deleting) `r`. `index`: an interface's index by name.
pub fn route_message(r: &Route, index: &dyn Fn(&str) -> Option<u32>) -> Result<RouteMessage, String> {
    let dev = |name: &str| index(name).ok_or_else(|| format!("no interface {name}"));
    let mut m = RouteMessage::default();
    let h = &mut m.header;
    h.address_family = family(r.dest.addr);
    h.destination_prefix_length = r.dest.len;
    h.protocol = RouteProtocol::from(r.protocol.unwrap_or(RTPROT_KEEPALIVED));
    h.kind = match r.kind {
        RouteType::Unicast => NlRouteType::Unicast,
        RouteType::Blackhole => NlRouteType::BlackHole,
        RouteType::Unreachable => NlRouteType::Unreachable,
        RouteType::Prohibit => NlRouteType::Prohibit,
        RouteType::Throw => NlRouteType::Throw,
    };
    h.scope = RouteScope::from(r.scope.unwrap_or(0));
    let table = r.table.unwrap_or(u32::from(RouteHeader::RT_TABLE_MAIN));
    h.table = u8::try_from(table).unwrap_or(RouteHeader::RT_TABLE_UNSPEC);
    let a = &mut m.attributes;
    if table > 255 {
        a.push(RouteAttribute::Table(table));
    }
    if r.dest.len > 0 {
        a.push(RouteAttribute::Destination(address(r.dest.addr)));
    }
    if let Some(s) = r.src {
        a.push(RouteAttribute::PrefSource(address(s)));
    }
    if let Some(d) = &r.dev {
        a.push(RouteAttribute::Oif(dev(d)?));
    }
    match r.via.as_slice() {
        [] => {}
        [one] if one.dev.is_none() && one.weight.is_none() => {
            a.push(RouteAttribute::Gateway(address(one.via)))
        }
        hops => {
            let mut out = Vec::new();
            for hop in hops {
                let mut nh = RouteNextHop::default();
                if r.onlink {
                    nh.flags = RouteNextHopFlags::Onlink;
                }
                nh.hops = hop.weight.map(|w| w.saturating_sub(1) as u8).unwrap_or(0);
                if let Some(d) = hop.dev.as_deref().or(r.dev.as_deref()) {
                    nh.interface_index = dev(d)?;
                }
                nh.attributes.push(RouteAttribute::Gateway(address(hop.via)));
                out.push(nh);
            }
            a.push(RouteAttribute::MultiPath(out));
        }
    }
    if r.onlink && r.via.len() == 1 {
        m.header.flags |= rtnetlink::packet_route::route::RouteFlags::Onlink;
    }
    if let Some(p) = r.metric {
        m.attributes.push(RouteAttribute::Priority(p));
    }
    let mut metrics = Vec::new();
    if let Some(v) = r.mtu {
        metrics.push(RouteMetric::Mtu(v));
    }
    if let Some(v) = r.advmss {
        metrics.push(RouteMetric::Advmss(v));
    }
    if !metrics.is_empty() {
        m.attributes.push(RouteAttribute::Metrics(metrics));
    }
    Ok(m)
}

fn prefix_of(p: &Option<Prefix>) -> (u8, Option<IpAddr>) {
    match p {
        Some(p) if p.len > 0 => (p.len, Some(p.addr)),
        _ => (0, None),
    }
}

/// The message adding (or deleting) rule `r`.
pub fn rule_message(r: &Rule) -> RuleMessage {
    let mut m = RuleMessage::default();
    let h = &mut m.header;
    h.family = if r.v6 {
        AddressFamily::Inet6
    } else {
        AddressFamily::Inet
    };
    let (src_len, src) = prefix_of(&r.from);
    let (dst_len, dst) = prefix_of(&r.to);
    h.src_len = src_len;
    h.dst_len = dst_len;
    h.tos = r.tos.unwrap_or(0);
    if r.not {
        h.flags = RuleFlags::Invert;
    }
    let a = &mut m.attributes;
    match r.action {
        RuleAction::Table(t) => {
            h.action = NlRuleAction::ToTable;
            h.table = u8::try_from(t).unwrap_or(0);
            a.push(RuleAttribute::Table(t));
        }
        RuleAction::Blackhole => h.action = NlRuleAction::Blackhole,
        RuleAction::Unreachable => h.action = NlRuleAction::Unreachable,
        RuleAction::Prohibit => h.action = NlRuleAction::Prohibit,
    }
    if !r.no_track {
        a.push(RuleAttribute::Protocol(RouteProtocol::from(RTPROT_KEEPALIVED)));
    }
    if let Some(s) = src {
        a.push(RuleAttribute::Source(s));
    }
    if let Some(d) = dst {
        a.push(RuleAttribute::Destination(d));
    }
    if let Some(p) = r.priority {
        a.push(RuleAttribute::Priority(p));
    }
    if let Some(i) = &r.iif {
        a.push(RuleAttribute::Iifname(i.clone()));
    }
    if let Some(o) = &r.oif {
        a.push(RuleAttribute::Oifname(o.clone()));
    }
    if let Some((mark, mask)) = r.fwmark {
        a.push(RuleAttribute::FwMark(mark));
        if let Some(k) = mask {
            a.push(RuleAttribute::FwMask(k));
        }
    }
    if let Some(p) = r.ipproto {
        a.push(RuleAttribute::IpProtocol(p.into()));
    }
    if let Some((start, end)) = r.sport {
        a.push(RuleAttribute::SourcePortRange(RulePortRange { start, end }));
    }
    if let Some((start, end)) = r.dport {
        a.push(RuleAttribute::DestinationPortRange(RulePortRange { start, end }));
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use ha_config::model::NextHop;
    use rtnetlink::packet_route::route::RouteFlags;

    fn idx(name: &str) -> Option<u32> {
        (name == "ens34").then_some(7)
    }

    fn prefix(s: &str) -> Prefix {
        let (a, l) = s.split_once('/').unwrap_or((s, "32"));
        Prefix {
            addr: a.parse().unwrap(),
            len: l.parse().unwrap(),
        }
    }

    #[test]
    fn a_gateway_route_as_ip_route_sends_it() {
        let mut r = Route::new(prefix("198.18.10.0/24"));
        r.via.push(NextHop {
            via: "198.18.9.254".parse().unwrap(),
            dev: None,
            weight: None,
        });
        r.dev = Some("ens34".into());
        r.metric = Some(50);
        r.src = Some("198.18.9.1".parse().unwrap());
        let m = route_message(&r, &idx).unwrap();
        assert_eq!(m.header.destination_prefix_length, 24);
        assert_eq!(m.header.table, 254, "main");
        assert_eq!(m.header.scope, RouteScope::Universe);
        assert_eq!(m.header.protocol, RouteProtocol::from(18u8), "keepalived's");
        assert_eq!(m.header.kind, NlRouteType::Unicast);
        assert_eq!(
            m.attributes,
            [
                RouteAttribute::Destination(RouteAddress::Inet("198.18.10.0".parse().unwrap())),
                RouteAttribute::PrefSource(RouteAddress::Inet("198.18.9.1".parse().unwrap())),
                RouteAttribute::Oif(7),
                RouteAttribute::Gateway(RouteAddress::Inet("198.18.9.254".parse().unwrap())),
                RouteAttribute::Priority(50),
            ]
        );
    }

    #[test]
    fn device_blackhole_multipath_big_table_and_missing_device() {
        let mut dev = Route::new(prefix("198.18.12.0/24"));
        dev.dev = Some("ens34".into());
        assert_eq!(
            route_message(&dev, &idx).unwrap().header.scope,
            RouteScope::Universe,
            "keepalived's default, not ip's"
        );
        let mut bh = Route::new(prefix("198.18.13.1/32"));
        bh.kind = RouteType::Blackhole;
        bh.table = Some(1000);
        let m = route_message(&bh, &idx).unwrap();
        assert_eq!((m.header.kind, m.header.table), (NlRouteType::BlackHole, 0));
        assert!(m.attributes.contains(&RouteAttribute::Table(1000)));
        let mut mp = Route::new(prefix("0.0.0.0/0"));
        for g in ["198.18.9.252", "198.18.9.253"] {
            mp.via.push(NextHop {
                via: g.parse().unwrap(),
                dev: None,
                weight: None,
            });
        }
        mp.onlink = true;
        mp.dev = Some("ens34".into());
        let m = route_message(&mp, &idx).unwrap();
        let Some(RouteAttribute::MultiPath(hops)) = m
            .attributes
            .iter()
            .find(|a| matches!(a, RouteAttribute::MultiPath(_)))
        else {
            panic!("{m:?}")
        };
        assert_eq!(hops.len(), 2);
        assert!(hops
            .iter()
            .all(|h| h.interface_index == 7 && h.flags == RouteNextHopFlags::Onlink));
        assert!(
            !m.attributes
                .iter()
                .any(|a| matches!(a, RouteAttribute::Destination(_))),
            "default: no RTA_DST"
        );
        assert!(!m.header.flags.contains(RouteFlags::Onlink), "per hop");
        dev.dev = Some("nosuch".into());
        assert_eq!(route_message(&dev, &idx).unwrap_err(), "no interface nosuch");
    }

    #[test]
    fn rules_as_ip_rule_sends_them() {
        let r = Rule {
            v6: false,
            from: Some(prefix("198.18.9.0/24")),
            to: None,
            not: true,
            action: RuleAction::Table(100),
            priority: Some(1000),
            iif: Some("ens34".into()),
            oif: None,
            fwmark: Some((0x10, Some(0xff))),
            tos: None,
            ipproto: Some(6),
            sport: None,
            dport: Some((80, 90)),
            no_track: false,
        };
        let m = rule_message(&r);
        assert_eq!(m.header.family, AddressFamily::Inet);
        assert_eq!((m.header.src_len, m.header.dst_len, m.header.table), (24, 0, 100));
        assert_eq!(m.header.action, NlRuleAction::ToTable);
        assert_eq!(m.header.flags, RuleFlags::Invert);
        assert_eq!(
            m.attributes,
            [
                RuleAttribute::Table(100),
                RuleAttribute::Protocol(RouteProtocol::from(18u8)),
                RuleAttribute::Source("198.18.9.0".parse().unwrap()),
                RuleAttribute::Priority(1000),
                RuleAttribute::Iifname("ens34".into()),
                RuleAttribute::FwMark(0x10),
                RuleAttribute::FwMask(0xff),
                RuleAttribute::IpProtocol(6u8.into()),
                RuleAttribute::DestinationPortRange(RulePortRange { start: 80, end: 90 }),
            ]
        );
        let bh = rule_message(&Rule {
            action: RuleAction::Blackhole,
            v6: true,
            from: None,
            not: false,
            fwmark: None,
            ipproto: None,
            dport: None,
            iif: None,
            priority: None,
            no_track: true,
            ..r
        });
        assert_eq!(
            (bh.header.family, bh.header.action),
            (AddressFamily::Inet6, NlRuleAction::Blackhole)
        );
        assert!(bh.attributes.is_empty());
    }
}

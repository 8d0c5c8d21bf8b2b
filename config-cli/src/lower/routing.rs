//! `static_ipaddress`, `static_routes`, `static_rules`, and an instance's
//! `virtual_routes` / `virtual_rules`: `ip route` / `ip rule` lines as keepalived 2.2.7
//! reads them. An option hanode does not install is an error at its word (nothing is
//! half-installed); a malformed address is an error at its word.

use super::args::parse_ip;
use super::Ctx;
use crate::model::*;
use crate::syntax::{Stmt, Word};

fn prefix(cx: &mut Ctx, w: &Word) -> Option<Prefix> {
    let text = w.text.as_str();
    if is_any(text) {
        // The family is decided by the rest of the line (see `route`).
        return Some(Prefix {
            addr: IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            len: 0,
        });
    }
    let (a, p) = match text.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (text, None),
    };
    let Some(addr) = parse_ip(a) else {
        cx.error(w.span, format!("`{text}` is not an address or prefix"));
        return None;
    };
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let len = match p {
        None => max,
        Some(p) => match p.parse::<u8>() {
            Ok(n) if n <= max => n,
            _ => {
                cx.error(
                    w.span,
                    format!("`/{p}` in `{text}` is not a prefix length 0..{max}"),
                );
                return None;
            }
        },
    };
    Some(Prefix { addr, len })
}

use std::net::IpAddr;

/// `default`, `all`, `any`: every address, of a family the line decides.
fn is_any(w: &str) -> bool {
    matches!(w, "default" | "all" | "any")
}

fn ip(cx: &mut Ctx, w: Option<&Word>, after: &Word) -> Option<IpAddr> {
    let Some(w) = w else {
        cx.error(after.span, format!("`{}` needs an address", after.text));
        return None;
    };
    let a = parse_ip(&w.text);
    if a.is_none() {
        cx.error(w.span, format!("`{}` is not an IP address", w.text));
    }
    a
}

fn value<'a>(cx: &mut Ctx, w: Option<&'a Word>, after: &Word) -> Option<&'a Word> {
    if w.is_none() {
        cx.error(after.span, format!("`{}` needs a value", after.text));
    }
    w
}

fn number<T: std::str::FromStr>(cx: &mut Ctx, w: Option<&Word>, after: &Word, what: &str) -> Option<T> {
    let w = value(cx, w, after)?;
    let n = w.text.parse::<T>().ok();
    if n.is_none() {
        cx.error(w.span, format!("`{}` {what}, not `{}`", after.text, w.text));
    }
    n
}

/// The value after `after`, read by `parse`; an error at it (naming `what` it must be)
/// when it does not read.
fn parsed<T>(
    cx: &mut Ctx,
    w: Option<&Word>,
    after: &Word,
    parse: impl Fn(&str) -> Option<T>,
    what: &str,
) -> Option<T> {
    let v = value(cx, w, after)?;
    let out = parse(&v.text);
    if out.is_none() {
        cx.error(v.span, format!("`{}` is not {what}", v.text));
    }
    out
}

const SCOPE: &str = "a scope (global, site, link, host, nowhere or 0..255)";
const TABLE: &str = "a table (local, main, default or a number)";

fn not_run(cx: &mut Ctx, w: &Word, what: &str) {
    cx.push(crate::diag::Diagnostic::not_run(
        w.span,
        &w.text,
        &format!("hanode installs no {what} with it, so the {what} is left out"),
    ));
}

/// One `virtual_routes` / `static_routes` line.
pub fn route(cx: &mut Ctx, c: &Stmt) -> Option<Route> {
    cx.no_block(c);
    let words = &c.words;
    let mut r = Route::new(Prefix {
        addr: IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
        len: 0,
    });
    let mut dest = false;
    let mut any_dest = false;
    let mut family: Option<bool> = None;
    let mut ok = true;
    let mut i = 0;
    while i < words.len() {
        let w = &words[i];
        let next = words.get(i + 1);
        i += 1;
        match w.text.as_str() {
            "inet" | "inet6" => {
                family = Some(w.text == "inet6");
                continue;
            }
            "src" => {
                r.src = ip(cx, next, w).or_else(|| {
                    ok = false;
                    None
                })
            }
            "via" | "gw" => match ip(cx, next, w) {
                Some(a) => r.via.insert(
                    0,
                    NextHop {
                        via: a,
                        dev: None,
                        weight: None,
                    },
                ),
                None => ok = false,
            },
            "or" => match ip(cx, next, w) {
                Some(a) => r.via.push(NextHop {
                    via: a,
                    dev: None,
                    weight: None,
                }),
                None => ok = false,
            },
            "dev" | "oif" => r.dev = value(cx, next, w).map(|v| v.text.clone()),
            "scope" => {
                r.scope = parsed(cx, next, w, parse_scope, SCOPE);
                ok &= r.scope.is_some();
            }
            "table" => {
                r.table = parsed(cx, next, w, parse_table, TABLE);
                ok &= r.table.is_some();
            }
            "metric" | "priority" | "preference" => {
                r.metric = number(cx, next, w, "expects a whole number");
                ok &= r.metric.is_some();
            }
            "protocol" => {
                r.protocol = parsed(cx, next, w, parse_protocol, "a route protocol");
                ok &= r.protocol.is_some();
            }
            "mtu" => {
                r.mtu = number(cx, next, w, "expects a whole number");
                ok &= r.mtu.is_some();
            }
            "advmss" => {
                r.advmss = number(cx, next, w, "expects a whole number");
                ok &= r.advmss.is_some();
            }
            "onlink" => {
                r.onlink = true;
                continue;
            }
            "no_track" => {
                r.no_track = true;
                continue;
            }
            "to" => match value(cx, next, w).and_then(|v| {
                any_dest = is_any(&v.text);
                prefix(cx, v)
            }) {
                Some(p) => {
                    r.dest = p;
                    dest = true;
                }
                None => ok = false,
            },
            t if RouteType::parse(t).is_some() => {
                r.kind = RouteType::parse(t).unwrap_or(RouteType::Unicast);
                continue;
            }
            t if t.contains('/') || is_any(t) || parse_ip(t).is_some() => {
                if dest {
                    cx.error(w.span, format!("a second destination `{t}` on one route"));
                    ok = false;
                } else {
                    any_dest = is_any(t);
                    match prefix(cx, w) {
                        Some(p) => {
                            r.dest = p;
                            dest = true;
                        }
                        None => ok = false,
                    }
                }
                continue;
            }
            "nexthop" | "encap" | "realms" | "expires" | "rtt" | "rttvar" | "reordering" | "window"
            | "cwnd" | "ssthresh" | "initcwnd" | "initrwnd" | "features" | "quickack" | "congctl"
            | "rto_min" | "hoplimit" | "pref" | "tos" | "ttl-propagate" | "fastopen_no_cookie"
            | "track_group" | "vrf" | "nhid" => {
                not_run(cx, w, "route");
                return None;
            }
            t if t
                .chars()
                .next()
                .is_some_and(|ch| ch.is_ascii_digit() || ch == ':') =>
            {
                cx.error(w.span, format!("`{t}` is not an address or prefix"));
                ok = false;
                continue;
            }
            other => {
                cx.error(w.span, format!("unknown route option `{other}`"));
                return None;
            }
        }
        // Options with a value: skip it.
        i += 1;
    }
    if !ok {
        return None;
    }
    if !dest {
        cx.error(
            c.span(),
            "a route needs a destination (an address, prefix or `default`)",
        );
        return None;
    }
    if any_dest {
        // `default`: the family of the gateway or source, or as `inet6` says.
        let v6 = r
            .via
            .first()
            .map(|h| h.via.is_ipv6())
            .or(r.src.map(|s| s.is_ipv6()))
            .or(family)
            .unwrap_or(false);
        if v6 {
            r.dest.addr = IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED);
        }
    }
    if r.via.iter().any(|h| h.via.is_ipv4() != r.dest.addr.is_ipv4())
        || r.src.is_some_and(|s| s.is_ipv4() != r.dest.addr.is_ipv4())
    {
        cx.error(
            c.span(),
            format!("route to {}: IPv4 and IPv6 addresses mixed", r.dest),
        );
        return None;
    }
    if !r.no_track && r.protocol.is_some_and(|p| p != RTPROT_KEEPALIVED) {
        cx.warning(
            c.span(),
            "a route's `protocol` is keepalived's own (18) unless `no_track`: as keepalived, hanode resets it",
        );
        r.protocol = None;
    }
    if r.kind == RouteType::Unicast && r.via.is_empty() && r.dev.is_none() {
        cx.error(
            c.span(),
            format!(
                "route to {} has neither a gateway (`via`) nor a device (`dev`)",
                r.dest
            ),
        );
        return None;
    }
    Some(r)
}

fn port_range(cx: &mut Ctx, w: Option<&Word>, after: &Word) -> Option<(u16, u16)> {
    let v = value(cx, w, after)?;
    let (a, b) = v.text.split_once('-').unwrap_or((&v.text, &v.text));
    match (a.parse::<u16>(), b.parse::<u16>()) {
        (Ok(a), Ok(b)) if a <= b => Some((a, b)),
        _ => {
            cx.error(v.span, format!("`{}` is not a port or range PORT-PORT", v.text));
            None
        }
    }
}

/// One `virtual_rules` / `static_rules` line.
pub fn rule(cx: &mut Ctx, c: &Stmt) -> Option<Rule> {
    cx.no_block(c);
    let words = &c.words;
    let mut r = Rule {
        v6: false,
        from: None,
        to: None,
        not: false,
        action: RuleAction::Table(254),
        priority: None,
        iif: None,
        oif: None,
        fwmark: None,
        tos: None,
        ipproto: None,
        sport: None,
        dport: None,
        no_track: false,
    };
    let mut have_action = false;
    let mut ok = true;
    let mut family: Option<bool> = None;
    let mut i = 0;
    while i < words.len() {
        let w = &words[i];
        let next = words.get(i + 1);
        i += 1;
        match w.text.as_str() {
            "from" | "to" => match value(cx, next, w) {
                Some(v) => {
                    let p = if is_any(&v.text) { None } else { prefix(cx, v) };
                    if p.is_none() && !is_any(&v.text) {
                        ok = false;
                    }
                    if w.text == "from" {
                        r.from = p;
                    } else {
                        r.to = p;
                    }
                }
                None => ok = false,
            },
            "not" => {
                r.not = true;
                continue;
            }
            "table" | "lookup" => match parsed(cx, next, w, parse_table, TABLE) {
                Some(t) => {
                    r.action = RuleAction::Table(t);
                    have_action = true;
                }
                None => ok = false,
            },
            "priority" | "preference" | "order" => {
                r.priority = number(cx, next, w, "expects a whole number");
                ok &= r.priority.is_some();
            }
            "iif" | "dev" => r.iif = value(cx, next, w).map(|v| v.text.clone()),
            "oif" => r.oif = value(cx, next, w).map(|v| v.text.clone()),
            "fwmark" => match value(cx, next, w) {
                Some(v) => {
                    let (m, mask) = match v.text.split_once('/') {
                        Some((m, k)) => (m, Some(k)),
                        None => (v.text.as_str(), None),
                    };
                    let num = |s: &str| match s.strip_prefix("0x") {
                        Some(h) => u32::from_str_radix(h, 16).ok(),
                        None => s.parse().ok(),
                    };
                    match (num(m), mask.map(num)) {
                        (Some(m), None) => r.fwmark = Some((m, None)),
                        (Some(m), Some(Some(k))) => r.fwmark = Some((m, Some(k))),
                        _ => {
                            cx.error(v.span, format!("`{}` is not a mark MARK[/MASK]", v.text));
                            ok = false;
                        }
                    }
                }
                None => ok = false,
            },
            "tos" | "dsfield" => {
                r.tos = number(cx, next, w, "expects a number 0..255");
                ok &= r.tos.is_some();
            }
            "ipproto" => {
                let proto = |t: &str| match t {
                    "tcp" => Some(6),
                    "udp" => Some(17),
                    "sctp" => Some(132),
                    "icmp" => Some(1),
                    "ipv6-icmp" | "icmpv6" => Some(58),
                    n => n.parse().ok(),
                };
                r.ipproto = parsed(cx, next, w, proto, "an IP protocol");
                ok &= r.ipproto.is_some();
            }
            "sport" => {
                r.sport = port_range(cx, next, w);
                ok &= r.sport.is_some();
            }
            "dport" => {
                r.dport = port_range(cx, next, w);
                ok &= r.dport.is_some();
            }
            "blackhole" | "unreachable" | "prohibit" => {
                r.action = match w.text.as_str() {
                    "blackhole" => RuleAction::Blackhole,
                    "unreachable" => RuleAction::Unreachable,
                    _ => RuleAction::Prohibit,
                };
                have_action = true;
                continue;
            }
            "inet" | "inet6" => {
                family = Some(w.text == "inet6");
                continue;
            }
            "no_track" => {
                r.no_track = true;
                continue;
            }
            "goto" | "nop" | "realms" | "uidrange" | "l3mdev" | "tunnel-id" | "sup_pl" | "sup_group"
            | "protocol" | "track_group" | "type" => {
                not_run(cx, w, "rule");
                return None;
            }
            other => {
                cx.error(w.span, format!("unknown rule option `{other}`"));
                return None;
            }
        }
        i += 1;
    }
    if !ok {
        return None;
    }
    if !have_action {
        cx.error(
            c.span(),
            "a rule needs `table N` (or `lookup N`), or blackhole / unreachable / prohibit",
        );
        return None;
    }
    let addr_family = r.from.or(r.to).map(|p| p.addr.is_ipv6());
    if let (Some(a), Some(b)) = (r.from, r.to) {
        if a.addr.is_ipv6() != b.addr.is_ipv6() {
            cx.error(c.span(), "rule: IPv4 and IPv6 addresses mixed");
            return None;
        }
    }
    r.v6 = addr_family.or(family).unwrap_or(false);
    if r.priority.is_none() {
        let p = cx.next_rule_priority(r.v6);
        r.priority = Some(p);
        cx.warning(
            c.span(),
            format!("rule without `priority`: {p}, as keepalived gives it (it comes before the operator's own rules; set one)"),
        );
    }
    Some(r)
}

/// keepalived watches the routes and rules it installs (unless `no_track`): one deleted
/// behind its back is put back (static) or takes the instance out of MASTER (virtual).
/// hanode installs and removes them but does not watch them: said once per block.
fn untracked(cx: &mut Ctx, s: &Stmt, any_tracked: bool, what: &str) {
    if any_tracked {
        cx.warning(
            s.span(),
            format!(
                "`{}`: hanode installs these {what} but does not watch them (keepalived puts back or reacts to one deleted behind its back, unless `no_track`)",
                s.keyword()
            ),
        );
    }
}

/// The lines of a routes block.
pub fn routes(cx: &mut Ctx, s: &Stmt) -> Vec<Route> {
    let out: Vec<Route> = cx.block(s).into_iter().filter_map(|c| route(cx, c)).collect();
    untracked(cx, s, out.iter().any(|r| !r.no_track), "routes");
    out
}

/// The lines of a rules block.
pub fn rules(cx: &mut Ctx, s: &Stmt) -> Vec<Rule> {
    let out: Vec<Rule> = cx.block(s).into_iter().filter_map(|c| rule(cx, c)).collect();
    untracked(cx, s, out.iter().any(|r| !r.no_track), "rules");
    out
}

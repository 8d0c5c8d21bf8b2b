//! `virtual_server_group`, `virtual_server`, `real_server`.

use super::args::parse_ip;
use super::check;
use super::Ctx;
use crate::model::*;
use crate::syntax::keywords::Section;
use crate::syntax::Stmt;

/// IPVS accepts weights up to this.
pub const IPVS_WEIGHT_LIMIT: u64 = 65535;
/// `persistence_timeout` without a value: keepalived's (and ipvsadm's) default, 6 minutes.
pub const DEFAULT_PERSISTENCE_TIMEOUT: u32 = 360;

/// keepalived's bound for persistence_timeout (31 days).
pub const LVS_MAX_TIMEOUT: u64 = 2_678_400;

pub fn vs_group(cx: &mut Ctx, s: &Stmt) -> Option<VirtualServerGroup> {
    let name = s.args().first()?.text.clone();
    let mut g = VirtualServerGroup {
        name,
        members: Vec::new(),
    };
    cx.mark(format!("vs_group {}", g.name), s.span());
    for c in cx.block(s) {
        cx.no_block(c);
        if c.keyword() == "fwmark" {
            if let Some(m) = cx.uint(c, 0, 1, u32::MAX as u64, true) {
                g.members.push(VsgMember::Fwmark(m as u32));
            }
            continue;
        }
        let first = c.keyword();
        let (ip_s, range_end) = match first.rsplit_once('-') {
            Some((ip, end)) if parse_ip(ip).is_some() => (ip, Some(end)),
            _ => (first, None),
        };
        let Some(ip) = parse_ip(ip_s) else {
            cx.error(
                c.span(),
                format!("`{first}` is not an address, address range or `fwmark N`"),
            );
            continue;
        };
        let range_end = match range_end {
            None => None,
            Some(e) => match e.parse::<u16>() {
                Ok(n) if (ip.is_ipv4() && n <= 255) || ip.is_ipv6() => Some(n),
                _ => {
                    cx.error(c.span(), format!("`{e}` is not a valid range end"));
                    continue;
                }
            },
        };
        let Some(port) = cx.port(c, 0) else { continue };
        g.members.push(VsgMember::Addr { ip, range_end, port });
    }
    Some(g)
}

/// Checker settings that flow from the virtual server to its real servers and checkers.
#[derive(Clone, Default)]
pub(super) struct Inherit {
    pub connect_timeout: Option<Dur>,
    pub retry: Option<u32>,
    pub delay_before_retry: Option<Dur>,
    pub warmup: Option<Dur>,
    pub delay_loop: Option<Dur>,
    pub alpha: Option<bool>,
    pub inhibit_on_failure: Option<bool>,
    pub virtualhost: Option<String>,
}

/// Handles an inheritable keyword; false if `c` is not one.
fn inherit_kw(cx: &mut Ctx, c: &Stmt, h: &mut Inherit) -> bool {
    if timing_kw(cx, c, h) {
        return true;
    }
    match c.keyword() {
        "inhibit_on_failure" => h.inhibit_on_failure = Some(cx.flag(c)),
        "virtualhost" => {
            h.virtualhost = cx
                .arg(c, 0, "a host name")
                .map(str::to_string)
                .or(h.virtualhost.take())
        }
        _ => return false,
    }
    true
}

/// The checker timing keywords, valid in virtual_server, real_server and each checker.
pub(super) fn timing_kw(cx: &mut Ctx, c: &Stmt, h: &mut Inherit) -> bool {
    match c.keyword() {
        "connect_timeout" => {
            h.connect_timeout = cx
                .secs(c, 0, Dur(1), Dur::from_secs(u32::MAX as u64), false)
                .or(h.connect_timeout)
        }
        "retry" => {
            h.retry = cx
                .uint(c, 0, 1, u32::MAX as u64, false)
                .map(|n| n as u32)
                .or(h.retry)
        }
        "delay_before_retry" => {
            h.delay_before_retry = cx
                .secs(c, 0, Dur(0), Dur::from_secs(u32::MAX as u64), false)
                .or(h.delay_before_retry)
        }
        "warmup" => {
            h.warmup = cx
                .secs(c, 0, Dur(0), Dur::from_secs(u32::MAX as u64), false)
                .or(h.warmup)
        }
        "delay_loop" => {
            h.delay_loop = cx
                .secs(c, 0, Dur(1), Dur::from_secs(u32::MAX as u64), false)
                .or(h.delay_loop)
        }
        "alpha" => h.alpha = Some(cx.flag(c)),
        _ => return false,
    }
    true
}

pub(crate) fn vs_key(cx: &mut Ctx, s: &Stmt) -> Option<VsKey> {
    let args = s.args();
    match args.first().map(|w| w.text.as_str()) {
        None => {
            cx.error(
                s.span(),
                "virtual_server needs `IP PORT`, `fwmark N` or `group NAME`",
            );
            None
        }
        Some("fwmark") => cx
            .uint(s, 1, 1, u32::MAX as u64, true)
            .map(|m| VsKey::Fwmark(m as u32)),
        Some("group") => cx.arg(s, 1, "a group name").map(|g| VsKey::Group(g.to_string())),
        Some(ip_s) => {
            let Some(ip) = parse_ip(ip_s) else {
                cx.error(s.arg_span(0), format!("`{ip_s}` is not an IP address"));
                return None;
            };
            let port = if args.len() > 1 { cx.port(s, 1)? } else { 0 };
            cx.max_args(s, 2);
            Some(VsKey::Addr { ip, port })
        }
    }
}

fn forwarding(cx: &mut Ctx, c: &Stmt) -> Option<Forwarding> {
    let v = cx.arg(c, 0, "NAT, DR or TUN")?;
    match Forwarding::parse(v) {
        Some(f) => Some(f),
        None if v == "PASSTHROUGH" || v == "MASQ" || v == "GATEWAY" => {
            cx.warning(
                c.arg_span(0),
                format!("`{v}` is not modelled; use NAT, DR or TUN: ignored"),
            );
            None
        }
        None => {
            cx.error(
                c.arg_span(0),
                format!("unknown forwarding method `{v}`: expected NAT, DR or TUN"),
            );
            None
        }
    }
}

pub fn virtual_server(cx: &mut Ctx, s: &Stmt) -> Option<VirtualServer> {
    let key = vs_key(cx, s)?;
    let mut vs = VirtualServer::new(key);
    let vs_mark = format!("vs {}", vs.key);
    cx.mark(vs_mark.clone(), s.span());
    let mut inh = Inherit::default();
    let body = cx.block(s);
    for c in body.iter().copied() {
        if c.keyword() == "real_server" || inherit_kw(cx, c, &mut inh) {
            continue;
        }
        cx.mark(format!("{vs_mark} {}", c.keyword()), c.span());
        match c.keyword() {
            "lb_algo" | "lvs_sched" => {
                if let Some(a) = cx.arg(c, 0, "a scheduler") {
                    match Scheduler::parse(a) {
                        Some(sch) => vs.lb_algo = sch,
                        None => cx.error(
                            c.arg_span(0),
                            format!(
                                "unknown scheduler `{a}`: expected one of {}",
                                Scheduler::ALL.map(Scheduler::name).join(" ")
                            ),
                        ),
                    }
                }
            }
            "lb_kind" | "lvs_method" => {
                if let Some(f) = forwarding(cx, c) {
                    vs.lb_kind = f;
                }
            }
            "protocol" => {
                if let Some(p) = cx.arg(c, 0, "TCP, UDP or SCTP") {
                    match Protocol::parse(p) {
                        Some(p) => vs.protocol = p,
                        None => cx.error(
                            c.arg_span(0),
                            format!("protocol must be TCP, UDP or SCTP, not `{p}`"),
                        ),
                    }
                }
            }
            "persistence_timeout" => {
                if c.args().is_empty() {
                    // keepalived: persistence with the kernel's default timeout.
                    vs.persistence_timeout = Some(DEFAULT_PERSISTENCE_TIMEOUT);
                } else if c.args().first().is_some_and(|w| w.text == "0") {
                    cx.warning(
                        c.arg_span(0),
                        format!("`persistence_timeout` 0 is outside the range 1..{LVS_MAX_TIMEOUT} and keepalived ignores the line, so persistence stays off (which is what 0 usually intends): remove the line"),
                    );
                    vs.persistence_timeout = None;
                } else if let Some(t) = cx.uint(c, 0, 1, LVS_MAX_TIMEOUT, false) {
                    vs.persistence_timeout = Some(t as u32);
                }
            }
            "persistence_granularity" => {
                if let Some(v) = cx.arg(c, 0, "a netmask") {
                    match parse_ip(v) {
                        Some(ip) => vs.persistence_granularity = Some(ip),
                        None => cx.error(c.arg_span(0), format!("`{v}` is not a netmask")),
                    }
                }
            }
            "ops" => vs.ops = cx.flag(c),
            "flag-1" | "flag-2" | "flag-3" | "sh-fallback" | "sh-port" | "mh-fallback" | "mh-port" => {
                cx.max_args(c, 0);
                sched_flag(cx, c, &mut vs);
            }
            "hashed" => {
                cx.max_args(c, 0);
                cx.warning(
                    c.span(),
                    "`hashed` has no effect (the kernel marks every service it holds as hashed): kept for export",
                );
                vs.extra.push(cx.raw(c));
            }
            "sorry_server" => {
                if let Some(ip) = cx.ip(c, 0) {
                    let port = if c.args().len() > 1 { cx.port(c, 1) } else { None };
                    let forwarding = vs.sorry_server.as_ref().and_then(|s| s.forwarding);
                    vs.sorry_server = Some(SorryServer { ip, port, forwarding });
                }
            }
            "sorry_server_lvs_method" => {
                let f = forwarding(cx, c);
                match &mut vs.sorry_server {
                    Some(ss) => ss.forwarding = f,
                    None => cx.error(c.span(), "sorry_server_lvs_method before any sorry_server"),
                }
            }
            "sorry_server_inhibit" => vs.sorry_server_inhibit = cx.flag(c),
            "quorum" => {
                vs.quorum = cx
                    .uint(c, 0, 1, u32::MAX as u64, false)
                    .map(|n| n as u32)
                    .unwrap_or(vs.quorum)
            }
            "hysteresis" => {
                vs.hysteresis = cx
                    .uint(c, 0, 0, u32::MAX as u64, false)
                    .map(|n| n as u32)
                    .unwrap_or(vs.hysteresis)
            }
            "quorum_up" => vs.quorum_up = cx.script(c).or(vs.quorum_up.take()),
            "quorum_down" => vs.quorum_down = cx.script(c).or(vs.quorum_down.take()),
            "omega" => vs.omega = cx.flag(c),
            "ha_suspend" => vs.ha_suspend = cx.flag(c),
            _ => {
                if let Some(raw) = cx.other(Section::VirtualServer, c) {
                    vs.extra.push(raw);
                }
            }
        }
    }
    for c in body.iter().copied().filter(|c| c.keyword() == "real_server") {
        if let Some(rs) = real_server(cx, c, &inh, &vs.key) {
            if vs.real_server(rs.ip, rs.port).is_some() {
                cx.error(
                    c.span(),
                    format!(
                        "real_server {} is listed twice in virtual_server {}",
                        rs_name(&rs),
                        vs.key
                    ),
                );
            } else {
                vs.real_servers.push(rs);
            }
        }
    }
    vs.real_servers.shrink_to_fit();
    vs.extra.shrink_to_fit();
    Some(vs)
}

/// One scheduler-flag line of `vs`. `sh-*` and `mh-*` apply to their own scheduler
/// only, as set at that line (keepalived reads them only after `lb_algo sh`/`mh`):
/// elsewhere keepalived ignores them, and so do we, with a warning.
fn sched_flag(cx: &mut Ctx, c: &Stmt, vs: &mut VirtualServer) {
    let kw = c.keyword();
    let (only, bit) = match kw {
        "flag-1" => (None, SchedFlags::FALLBACK),
        "flag-2" => (None, SchedFlags::PORT),
        "flag-3" => (None, SchedFlags::FLAG_3),
        "sh-fallback" => (Some(Scheduler::Sh), SchedFlags::FALLBACK),
        "sh-port" => (Some(Scheduler::Sh), SchedFlags::PORT),
        "mh-fallback" => (Some(Scheduler::Mh), SchedFlags::FALLBACK),
        _ => (Some(Scheduler::Mh), SchedFlags::PORT),
    };
    match only {
        Some(s) if s != vs.lb_algo => cx.warning(
            c.span(),
            format!(
                "`{kw}` applies to the {0} scheduler only, and the scheduler at this line is `{1}` (keepalived reads `{kw}` only below `lb_algo {0}`): ignored, as keepalived ignores it",
                s.name(),
                vs.lb_algo.name()
            ),
        ),
        _ => vs.sched_flags.0 |= bit,
    }
}

pub fn rs_name(rs: &RealServer) -> String {
    match (rs.ip, rs.port) {
        (std::net::IpAddr::V6(ip), Some(p)) => format!("[{ip}]:{p}"),
        (ip, Some(p)) => format!("{ip}:{p}"),
        (ip, None) => ip.to_string(),
    }
}

fn real_server(cx: &mut Ctx, s: &Stmt, vs_inh: &Inherit, vs_key: &VsKey) -> Option<RealServer> {
    let ip = cx.ip(s, 0)?;
    let port = if s.args().len() > 1 {
        Some(cx.port(s, 1)?)
    } else {
        None
    };
    cx.max_args(s, 2);
    let mut rs = RealServer::new(ip, port);
    cx.mark(format!("vs {vs_key} rs {}", rs_name(&rs)), s.span());
    let mut inh = vs_inh.clone();
    let body = cx.block(s);
    for c in body.iter().copied() {
        if check::is_checker(c.keyword()) || inherit_kw(cx, c, &mut inh) {
            continue;
        }
        match c.keyword() {
            "weight" => {
                if let Some(w) = cx.uint(c, 0, 0, IPVS_WEIGHT_LIMIT, true) {
                    rs.weight = w as u32;
                }
            }
            "lvs_method" | "lb_kind" => rs.lb_kind = forwarding(cx, c).or(rs.lb_kind),
            "notify_up" => rs.notify_up = cx.script(c).or(rs.notify_up.take()),
            "notify_down" => rs.notify_down = cx.script(c).or(rs.notify_down.take()),
            _ => {
                if let Some(raw) = cx.other(Section::RealServer, c) {
                    rs.extra.push(raw);
                }
            }
        }
    }
    rs.inhibit_on_failure = inh.inhibit_on_failure.unwrap_or(false);
    for c in body.iter().copied().filter(|c| check::is_checker(c.keyword())) {
        rs.checkers.extend(check::checker(cx, c, &inh, vs_key, &rs));
    }
    // Exact sizes: 10,000s of these are held (a one-checker Vec would reserve four).
    rs.checkers.shrink_to_fit();
    rs.extra.shrink_to_fit();
    Some(rs)
}

//! `vrrp_script`, `vrrp_sync_group`, `vrrp_instance`.

use super::args::parse_ip;
use super::Ctx;
use crate::model::*;
use crate::syntax::keywords::Section;
use crate::syntax::Stmt;

fn name_arg(cx: &mut Ctx, s: &Stmt) -> Option<String> {
    let name = s.args().first().map(|w| w.text.clone());
    if name.is_none() {
        cx.error(s.span(), format!("`{}` needs a name", s.keyword()));
    }
    if s.args().len() > 1 {
        cx.max_args(s, 1);
    }
    name
}

pub fn vrrp_script(cx: &mut Ctx, s: &Stmt) -> Option<VrrpScript> {
    let mut v = VrrpScript::new(name_arg(cx, s)?);
    cx.mark(format!("vrrp_script {}", v.name), s.span());
    let mut have_script = false;
    for c in cx.block(s) {
        match c.keyword() {
            "script" => {
                if let Some(sc) = cx.script(c) {
                    v.script = sc.cmd;
                    have_script = true;
                    if sc.user.is_some() {
                        v.user = sc.user;
                    }
                }
            }
            "interval" => {
                if let Some(n) = cx.uint(c, 0, 1, 4_294, false) {
                    v.interval = Dur::from_secs(n);
                }
            }
            "timeout" => {
                if let Some(n) = cx.uint(c, 0, 1, 4_294, false) {
                    v.timeout = Some(Dur::from_secs(n));
                }
            }
            "weight" => {
                if let Some(w) = cx.int(c, 0, -253, 253) {
                    v.weight = w as i32;
                }
                v.weight_reverse = weight_reverse(cx, c, 1);
            }
            "rise" => {
                v.rise = cx
                    .uint(c, 0, 1, u32::MAX as u64, false)
                    .map(|n| n as u32)
                    .unwrap_or(v.rise)
            }
            "fall" => {
                v.fall = cx
                    .uint(c, 0, 1, u32::MAX as u64, false)
                    .map(|n| n as u32)
                    .unwrap_or(v.fall)
            }
            "user" => {
                if cx.arg(c, 0, "a user name").is_some() {
                    v.user = cx.user_words(c, c.args());
                }
            }
            "init_fail" => v.init_fail = cx.flag(c),
            _ => {
                if let Some(raw) = cx.other(Section::VrrpScript, c) {
                    v.extra.push(raw);
                }
            }
        }
    }
    if !have_script {
        cx.error(s.span(), format!("vrrp_script {} has no `script` line", v.name));
        return None;
    }
    Some(v)
}

fn weight_reverse(cx: &mut Ctx, c: &Stmt, at: usize) -> bool {
    match c.args().get(at).map(|w| w.text.as_str()) {
        None => false,
        Some("reverse") => {
            cx.max_args(c, at + 1);
            true
        }
        Some(other) => {
            cx.warning(
                c.arg_span(at),
                format!("unknown weight option `{other}` ignored (only `reverse`)"),
            );
            false
        }
    }
}

/// Lines of a `track_script`, `track_file` or `track_process` block:
/// `NAME [weight N [reverse]]`.
/// Each line is marked `KEYWORD NAME in OWNER` (`OWNER`: `vrrp_instance X`, ...).
fn track_refs(cx: &mut Ctx, s: &Stmt, owner: &str) -> Vec<TrackRef> {
    let mut out = Vec::new();
    for c in cx.block(s) {
        let name = c.keyword().to_string();
        cx.mark(format!("{} {name} in {owner}", s.keyword()), c.span());
        let (weight, weight_reverse) = track_weight(cx, c);
        out.push(TrackRef {
            name,
            weight,
            weight_reverse,
        });
    }
    out
}

fn track_weight(cx: &mut Ctx, c: &Stmt) -> (Option<i32>, bool) {
    cx.no_block(c);
    match c.args().first().map(|w| w.text.as_str()) {
        None => (None, false),
        Some("weight") => {
            let w = cx.int(c, 1, -254, 254).map(|w| w as i32);
            (w, weight_reverse(cx, c, 2))
        }
        Some(other) => {
            cx.warning(
                c.arg_span(0),
                format!(
                    "expected `weight N` after `{}`, found `{other}`: ignored",
                    c.keyword()
                ),
            );
            (None, false)
        }
    }
}

fn track_interfaces(cx: &mut Ctx, s: &Stmt, owner: &str) -> Vec<TrackInterface> {
    let mut out = Vec::new();
    for c in cx.block(s) {
        cx.mark(format!("track_interface {} in {owner}", c.keyword()), c.span());
        let (weight, weight_reverse) = track_weight(cx, c);
        out.push(TrackInterface {
            name: c.keyword().to_string(),
            weight,
            weight_reverse,
        });
    }
    out
}

fn notify(cx: &mut Ctx, c: &Stmt, n: &mut Notify) -> bool {
    let slot = match c.keyword() {
        "notify_master" => &mut n.master,
        "notify_backup" => &mut n.backup,
        "notify_fault" => &mut n.fault,
        "notify_stop" => &mut n.stop,
        "notify" => &mut n.any,
        _ => return false,
    };
    if let Some(sc) = cx.script(c) {
        *slot = Some(sc);
    }
    true
}

pub fn sync_group(cx: &mut Ctx, s: &Stmt) -> Option<SyncGroup> {
    let mut g = SyncGroup {
        name: name_arg(cx, s)?,
        members: Vec::new(),
        notify: Notify::default(),
        track_script: Vec::new(),
        track_interface: Vec::new(),
        track_file: Vec::new(),
        track_process: Vec::new(),
        tracking_weight: false,
        smtp_alert: None,
        extra: Vec::new(),
    };
    cx.mark(format!("sync_group {}", g.name), s.span());
    for c in cx.block(s) {
        if notify(cx, c, &mut g.notify) {
            continue;
        }
        match c.keyword() {
            "group" => {
                for m in cx.block(c) {
                    for w in &m.words {
                        g.members.push(w.text.clone());
                    }
                }
            }
            "track_script" => g.track_script = track_refs(cx, c, &format!("vrrp_sync_group {}", g.name)),
            "track_file" => g.track_file = track_refs(cx, c, &format!("vrrp_sync_group {}", g.name)),
            "track_process" => g.track_process = track_refs(cx, c, &format!("vrrp_sync_group {}", g.name)),
            "track_interface" => {
                g.track_interface = track_interfaces(cx, c, &format!("vrrp_sync_group {}", g.name))
            }
            "sync_group_tracking_weight" => g.tracking_weight = cx.flag(c),
            "smtp_alert" => g.smtp_alert = Some(cx.flag(c)),
            "global_tracking" => {
                cx.warning(
                    c.span(),
                    "`global_tracking` is deprecated; use `sync_group_tracking_weight`",
                );
                g.tracking_weight = cx.flag(c);
            }
            _ => {
                if let Some(raw) = cx.other(Section::SyncGroup, c) {
                    g.extra.push(raw);
                }
            }
        }
    }
    Some(g)
}

/// One `virtual_ipaddress` line.
pub fn vip_line(cx: &mut Ctx, c: &Stmt) -> Option<VipAddr> {
    cx.no_block(c);
    let first = c.keyword();
    let (addr_s, prefix_s) = match first.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (first, None),
    };
    let Some(addr) = parse_ip(addr_s) else {
        cx.error(c.span(), format!("`{first}` is not an IP address"));
        return None;
    };
    let mut v = VipAddr::new(addr);
    if let Some(p) = prefix_s {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        match p.parse::<u8>() {
            Ok(n) if n <= max => v.prefix = Some(n),
            _ => {
                cx.error(c.span(), format!("`/{p}` is not a prefix length 0..{max}"));
                return None;
            }
        }
    }
    let args = c.args();
    let mut i = 0;
    while i < args.len() {
        let w = &args[i];
        let val = args.get(i + 1);
        let need = |cx: &mut Ctx| {
            if val.is_none() {
                cx.error(w.span, format!("`{}` needs a value", w.text));
            }
        };
        match w.text.as_str() {
            "dev" => {
                need(cx);
                v.dev = val.map(|x| x.text.clone());
                i += 2;
            }
            "label" => {
                need(cx);
                v.label = val.map(|x| x.text.clone());
                i += 2;
            }
            "scope" => {
                need(cx);
                if let Some(x) = val {
                    if parse_scope(&x.text).is_none() {
                        cx.error(
                            x.span,
                            format!(
                                "`{}` is not a scope (global, site, link, host, nowhere or 0..255)",
                                x.text
                            ),
                        );
                    }
                }
                v.scope = val.map(|x| x.text.clone());
                i += 2;
            }
            "brd" | "broadcast" => {
                need(cx);
                if let Some(x) = val {
                    match parse_ip(&x.text) {
                        Some(ip) => v.brd = Some(ip),
                        None => cx.error(x.span, format!("`{}` is not a broadcast address", x.text)),
                    }
                }
                i += 2;
            }
            "no_track" => {
                v.no_track = true;
                i += 1;
            }
            "use_vmac" => {
                cx.push(crate::diag::Diagnostic::not_run(
                    w.span,
                    "use_vmac",
                    "the address would be added without its virtual MAC interface",
                ));
                v.extra.push(w.text.clone());
                if let Some(x) = val {
                    v.extra.push(x.text.clone());
                }
                i += 2;
            }
            "peer" | "preferred_lft" => {
                need(cx);
                v.extra.push(w.text.clone());
                if let Some(x) = val {
                    v.extra.push(x.text.clone());
                }
                i += 2;
            }
            "home" | "-nodad" | "nodad" | "mngtmpaddr" | "noprefixroute" | "autojoin" => {
                v.extra.push(w.text.clone());
                i += 1;
            }
            other => {
                cx.warning(
                    w.span,
                    format!(
                        "unknown option `{other}` on a virtual_ipaddress line (ignored, as keepalived does)"
                    ),
                );
                i += 1;
            }
        }
    }
    Some(v)
}

pub fn vip_block(cx: &mut Ctx, s: &Stmt) -> Vec<VipAddr> {
    let mut out = Vec::new();
    for c in cx.block(s) {
        if let Some(v) = vip_line(cx, c) {
            out.push(v);
        }
    }
    out
}

pub fn instance(cx: &mut Ctx, s: &Stmt, g: &GlobalDefs) -> Option<VrrpInstance> {
    let mut v = VrrpInstance::new(name_arg(cx, s)?);
    v.version = g.vrrp_version.unwrap_or(2);
    if let Some(d) = g.vrrp_garp_master_delay {
        v.garp.master_delay = d;
    }
    if let Some(d) = g.vrrp_garp_master_repeat {
        v.garp.master_repeat = d;
    }
    if let Some(d) = g.vrrp_garp_master_refresh {
        v.garp.master_refresh = d;
    }
    if let Some(d) = g.vrrp_garp_master_refresh_repeat {
        v.garp.master_refresh_repeat = d;
    }
    let key = format!("instance {}", v.name);
    cx.mark(key.clone(), s.span());
    let mut vrid_seen = false;
    let mut bad_vrid = false;
    let mut iface_seen = false;
    for c in cx.block(s) {
        cx.mark(format!("{key} {}", c.keyword()), c.span());
        if notify(cx, c, &mut v.notify) {
            continue;
        }
        match c.keyword() {
            // Read by the caller: it sets the global `lvs_sync_daemon`.
            "lvs_sync_daemon_interface" => {}
            "state" => match cx.arg(c, 0, "MASTER or BACKUP") {
                Some("MASTER") => v.state = InitialState::Master,
                Some("BACKUP") => v.state = InitialState::Backup,
                Some(other) => cx.error(
                    c.arg_span(0),
                    format!("state must be MASTER or BACKUP, not `{other}`"),
                ),
                None => {}
            },
            "interface" => {
                if let Some(i) = cx.arg(c, 0, "an interface name") {
                    v.interface = i.to_string();
                    iface_seen = true;
                }
                cx.max_args(c, 1);
            }
            "virtual_router_id" => {
                vrid_seen = true;
                if let Some(n) = cx.uint(c, 0, 1, 255, true) {
                    v.virtual_router_id = n as u8;
                } else {
                    bad_vrid = true;
                }
            }
            "priority" => {
                if let Some(n) = cx.uint(c, 0, 1, 255, true) {
                    v.priority = n as u8;
                }
            }
            "advert_int" => {
                if let Some(d) = cx.secs(c, 0, Dur::from_millis(10), Dur::from_secs(255), true) {
                    v.advert_int = d;
                }
            }
            "version" => {
                if let Some(n) = cx.uint(c, 0, 2, 3, true) {
                    v.version = n as u8;
                }
            }
            "authentication" => {
                let mut kind = None;
                let mut pass = None;
                for a in cx.block(c) {
                    match a.keyword() {
                        "auth_type" => match cx.arg(a, 0, "PASS or AH") {
                            Some(t @ ("PASS" | "AH")) => kind = Some((t.to_string(), a.arg_span(0))),
                            Some(other) => cx.error(
                                a.arg_span(0),
                                format!("auth_type must be PASS or AH, not `{other}`"),
                            ),
                            None => {}
                        },
                        "auth_pass" => {
                            if let Some(p) = cx.arg(a, 0, "a password") {
                                let mut p = p.to_string();
                                if p.chars().count() > 8 {
                                    cx.warning(
                                        a.arg_span(0),
                                        format!("auth_pass is {} characters; VRRP carries only 8: truncated to `{}`, as keepalived does", p.chars().count(), p.chars().take(8).collect::<String>()),
                                    );
                                    p = p.chars().take(8).collect();
                                }
                                pass = Some(p);
                            }
                        }
                        _ => {
                            cx.other(Section::Authentication, a);
                        }
                    }
                }
                match (kind, pass) {
                    (Some((k, _)), Some(p)) => {
                        v.auth = Some(if k == "PASS" { Auth::Pass(p) } else { Auth::Ah(p) })
                    }
                    (Some((_, span)), None) => {
                        cx.error(span, "authentication has auth_type but no auth_pass")
                    }
                    (None, Some(_)) => cx.error(c.span(), "authentication has auth_pass but no auth_type"),
                    (None, None) => {}
                }
            }
            "virtual_ipaddress" => v.virtual_ipaddress.extend(vip_block(cx, c)),
            "virtual_ipaddress_excluded" => v.virtual_ipaddress_excluded.extend(vip_block(cx, c)),
            "virtual_routes" => v.virtual_routes.extend(super::routing::routes(cx, c)),
            "virtual_rules" => v.virtual_rules.extend(super::routing::rules(cx, c)),
            "nopreempt" => v.nopreempt = cx.flag(c),
            "preempt" => {
                cx.flag(c);
                v.nopreempt = false;
            }
            "preempt_delay" => {
                if let Some(d) = cx.secs(c, 0, Dur(0), Dur::from_secs(1000), false) {
                    v.preempt_delay = if d == Dur(0) { None } else { Some(d) };
                }
            }
            "track_interface" => {
                v.track_interface = track_interfaces(cx, c, &format!("vrrp_instance {}", v.name))
            }
            "track_script" => v.track_script = track_refs(cx, c, &format!("vrrp_instance {}", v.name)),
            "track_file" => v.track_file = track_refs(cx, c, &format!("vrrp_instance {}", v.name)),
            "track_process" => v.track_process = track_refs(cx, c, &format!("vrrp_instance {}", v.name)),
            "dont_track_primary" => v.dont_track_primary = cx.flag(c),
            "unicast_src_ip" => v.unicast_src_ip = cx.ip(c, 0).or(v.unicast_src_ip),
            "mcast_src_ip" => v.mcast_src_ip = cx.ip(c, 0).or(v.mcast_src_ip),
            "unicast_peer" => {
                for p in cx.block(c) {
                    cx.no_block(p);
                    let Some(addr) = parse_ip(p.keyword()) else {
                        cx.error(
                            p.span(),
                            format!("unicast_peer `{}` is not an IP address", p.keyword()),
                        );
                        continue;
                    };
                    let mut peer = UnicastPeer {
                        addr,
                        min_ttl: None,
                        max_ttl: None,
                    };
                    let mut i = 0;
                    while i < p.args().len() {
                        match p.args()[i].text.as_str() {
                            "min_ttl" => peer.min_ttl = cx.uint(p, i + 1, 0, 255, true).map(|n| n as u8),
                            "max_ttl" => peer.max_ttl = cx.uint(p, i + 1, 0, 255, true).map(|n| n as u8),
                            other => cx.warning(
                                p.arg_span(i),
                                format!("unknown unicast_peer option `{other}` ignored"),
                            ),
                        }
                        i += 2;
                    }
                    v.unicast_peer.push(peer);
                }
            }
            "garp_master_delay" => {
                v.garp.master_delay = cx
                    .uint(c, 0, 0, 255, false)
                    .map(|n| n as u32)
                    .unwrap_or(v.garp.master_delay)
            }
            "garp_master_repeat" => {
                v.garp.master_repeat = cx
                    .uint(c, 0, 1, 255, false)
                    .map(|n| n as u32)
                    .unwrap_or(v.garp.master_repeat)
            }
            "garp_master_refresh" => {
                v.garp.master_refresh = cx
                    .uint(c, 0, 0, u32::MAX as u64, false)
                    .map(|n| n as u32)
                    .unwrap_or(v.garp.master_refresh)
            }
            "garp_master_refresh_repeat" => {
                v.garp.master_refresh_repeat = cx
                    .uint(c, 0, 1, 255, false)
                    .map(|n| n as u32)
                    .unwrap_or(v.garp.master_refresh_repeat)
            }
            "smtp_alert" => v.smtp_alert = Some(cx.flag(c)),
            _ => {
                if let Some(raw) = cx.other(Section::VrrpInstance, c) {
                    v.extra.push(raw);
                }
            }
        }
    }
    if !vrid_seen {
        cx.error(
            s.span(),
            format!("vrrp_instance {} has no virtual_router_id", v.name),
        );
        return None;
    }
    if !iface_seen {
        cx.error(s.span(), format!("vrrp_instance {} has no interface", v.name));
        return None;
    }
    // An invalid id was reported where it was written; the instance cannot run.
    if bad_vrid {
        return None;
    }
    Some(v)
}

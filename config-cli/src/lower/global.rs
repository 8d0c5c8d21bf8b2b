//! `global_defs`.

use super::Ctx;
use crate::model::{Dur, GlobalDefs, LvsSyncDaemon, SmtpServer};
use crate::syntax::keywords::Section;
use crate::syntax::Stmt;

/// keepalived accepts garp/gna intervals in this range; 0 is refused (and then ignored).
const GARP_MIN: Dur = Dur(1);
const GARP_MAX: Dur = Dur(4_294_967_295);

pub fn global_defs(cx: &mut Ctx, s: &Stmt, g: &mut GlobalDefs) {
    for c in cx.block(s) {
        let kw = c.keyword();
        match kw {
            crate::model::HANODE_IGNORE => {
                if c.args().is_empty() {
                    cx.error(
                        c.span(),
                        "`hanode_ignore` needs the keywords it accepts (for example `hanode_ignore UDP_CHECK`)",
                    );
                }
                for (i, w) in c.args().iter().enumerate() {
                    if !super::check::may_be_not_run(&w.text) {
                        cx.error(
                            c.arg_span(i),
                            format!("`hanode_ignore {}`: not a keepalived keyword", w.text),
                        );
                    }
                }
                g.extra.push(cx.raw(c));
            }
            "router_id" => {
                if let Some(v) = cx.arg(c, 0, "a name") {
                    g.router_id = Some(v.to_string());
                }
                cx.max_args(c, 1);
            }
            "notification_email" => {
                // Each word is an address (keepalived reads the block word by word).
                for e in cx.block(c) {
                    g.notification_email
                        .extend(e.words.iter().map(|w| w.text.clone()));
                }
            }
            "notification_email_from" => {
                if let Some(v) = cx.arg(c, 0, "an address") {
                    g.notification_email_from = Some(v.to_string());
                }
            }
            "smtp_server" => {
                if let Some(host) = cx.arg(c, 0, "a host") {
                    let host = host.to_string();
                    let port = if c.args().len() > 1 { cx.port(c, 1) } else { None };
                    g.smtp_server = Some(SmtpServer { host, port });
                }
            }
            "smtp_helo_name" => {
                if let Some(v) = cx.arg(c, 0, "a name") {
                    g.smtp_helo_name = Some(v.to_string());
                }
            }
            "smtp_alert_vrrp" => g.smtp_alert_vrrp = Some(cx.flag(c)),
            "smtp_alert" => {
                g.smtp_alert = Some(cx.flag(c));
                if g.smtp_alert == Some(true) {
                    cx.push(crate::diag::Diagnostic::not_run(
                        c.span(),
                        "smtp_alert",
                        "VRRP's state changes are mailed, the checkers' are not",
                    ));
                }
            }
            "no_email_faults" => g.no_email_faults = cx.flag(c),
            "smtp_connect_timeout" => {
                if let Some(v) = cx.uint(c, 0, 1, u32::MAX as u64, false) {
                    g.smtp_connect_timeout = Some(v as u32);
                }
            }
            "vrrp_garp_interval" | "vrrp_gna_interval" => {
                let v = if c.args().first().is_some_and(|w| w.text == "0") {
                    cx.warning(
                        c.arg_span(0),
                        format!(
                            "`{kw}` 0 is outside the range {GARP_MIN}..{GARP_MAX} seconds and keepalived ignores the line; no delay is already the default: remove the line"
                        ),
                    );
                    None
                } else {
                    cx.secs(c, 0, GARP_MIN, GARP_MAX, false)
                };
                if kw == "vrrp_garp_interval" {
                    g.vrrp_garp_interval = v.or(g.vrrp_garp_interval);
                } else {
                    g.vrrp_gna_interval = v.or(g.vrrp_gna_interval);
                }
            }
            "vrrp_garp_master_delay" => {
                g.vrrp_garp_master_delay = cx
                    .uint(c, 0, 0, 255, false)
                    .map(|v| v as u32)
                    .or(g.vrrp_garp_master_delay)
            }
            "vrrp_garp_master_repeat" => {
                g.vrrp_garp_master_repeat = cx
                    .uint(c, 0, 1, 255, false)
                    .map(|v| v as u32)
                    .or(g.vrrp_garp_master_repeat)
            }
            "vrrp_garp_master_refresh" => {
                g.vrrp_garp_master_refresh = cx
                    .uint(c, 0, 0, u32::MAX as u64, false)
                    .map(|v| v as u32)
                    .or(g.vrrp_garp_master_refresh)
            }
            "vrrp_garp_master_refresh_repeat" => {
                g.vrrp_garp_master_refresh_repeat = cx
                    .uint(c, 0, 1, 255, false)
                    .map(|v| v as u32)
                    .or(g.vrrp_garp_master_refresh_repeat)
            }
            "vrrp_version" => {
                if let Some(v) = cx.uint(c, 0, 2, 3, true) {
                    g.vrrp_version = Some(v as u8);
                }
            }
            "vrrp_strict" => g.vrrp_strict = cx.flag(c),
            "vrrp_skip_check_adv_addr" => g.vrrp_skip_check_adv_addr = cx.flag(c),
            "vrrp_check_unicast_src" => g.vrrp_check_unicast_src = cx.flag(c),
            "vrrp_mcast_group4" => {
                if let Some(ip) = cx.ip(c, 0) {
                    if ip.is_ipv4() && ip.is_multicast() {
                        g.vrrp_mcast_group4 = Some(ip);
                    } else {
                        cx.error(
                            c.arg_span(0),
                            format!("vrrp_mcast_group4 {ip} is not an IPv4 multicast address"),
                        );
                    }
                }
            }
            "vrrp_mcast_group6" => {
                if let Some(ip) = cx.ip(c, 0) {
                    if ip.is_ipv6() && ip.is_multicast() {
                        g.vrrp_mcast_group6 = Some(ip);
                    } else {
                        cx.error(
                            c.arg_span(0),
                            format!("vrrp_mcast_group6 {ip} is not an IPv6 multicast address"),
                        );
                    }
                }
            }
            "script_user" => {
                if cx.arg(c, 0, "a user name").is_some() {
                    g.script_user = cx.user_words(c, c.args());
                }
            }
            "enable_script_security" => g.enable_script_security = cx.flag(c),
            "lvs_sync_daemon" => {
                if let Some(l) = &g.lvs_sync_daemon {
                    sync_daemon_already_set(cx, c, l);
                } else if let Some(l) = lvs_sync_daemon(cx, c) {
                    cx.mark("global lvs_sync_daemon", c.span());
                    g.lvs_sync_daemon = Some(l);
                }
            }
            _ => {
                if let Some(raw) = cx.other(Section::GlobalDefs, c) {
                    g.extra.push(raw);
                }
            }
        }
    }
}

/// `lvs_sync_daemon INTERFACE VRRP_INSTANCE [id N] [maxlen N] [port N] [ttl N] [group
/// ADDR]`, also keepalived's older `INTERFACE VRRP_INSTANCE SYNC_ID`. A bad option is an
/// error naming its word (keepalived ignores it and runs with its default).
fn lvs_sync_daemon(cx: &mut Ctx, c: &Stmt) -> Option<LvsSyncDaemon> {
    let interface = cx.arg(c, 0, "an interface")?.to_string();
    let Some(instance) = c.args().get(1).map(|w| w.text.clone()) else {
        cx.error(
            c.span(),
            "lvs_sync_daemon needs an interface and the VRRP instance it follows (master while that instance is MASTER)",
        );
        return None;
    };
    // keepalived refuses (and ignores) either name at 16 characters or more.
    for (i, (what, name)) in [("interface", &interface), ("VRRP instance", &instance)]
        .into_iter()
        .enumerate()
    {
        if name.len() >= 16 {
            cx.error(
                c.arg_span(i),
                format!("lvs_sync_daemon {what} name `{name}` is longer than 15 characters"),
            );
            return None;
        }
    }
    let mut l = LvsSyncDaemon {
        interface,
        instance,
        ..LvsSyncDaemon::default()
    };
    let mut i = 2;
    while i < c.args().len() {
        let word = c.args()[i].text.clone();
        if i == 2 && word.parse::<u8>().is_ok() {
            cx.warning(
                c.arg_span(i),
                "a sync id after the VRRP instance is keepalived's old form: write `id N`",
            );
            l.sync_id = cx.uint(c, i, 0, 255, false).map(|v| v as u8);
            i += 1;
            continue;
        }
        if c.args().get(i + 1).is_none() {
            cx.error(c.arg_span(i), format!("lvs_sync_daemon `{word}` needs a value"));
            return None;
        }
        match word.as_str() {
            "id" => l.sync_id = Some(cx.uint(c, i + 1, 0, 255, false)? as u8),
            "maxlen" => l.maxlen = Some(cx.uint(c, i + 1, 1, 65535 - 20 - 8, false)? as u16),
            "port" => l.port = Some(cx.uint(c, i + 1, 1, 65535, false)? as u16),
            "ttl" => l.ttl = Some(cx.uint(c, i + 1, 1, 255, false)? as u8),
            "group" => {
                let ip = cx.ip(c, i + 1)?;
                if !ip.is_multicast() {
                    cx.error(
                        c.arg_span(i + 1),
                        format!("lvs_sync_daemon group {ip} is not a multicast address"),
                    );
                    return None;
                }
                l.group = Some(ip);
            }
            _ => {
                cx.error(
                    c.arg_span(i),
                    format!(
                        "unknown lvs_sync_daemon option `{word}`: expected id, maxlen, port, ttl or group"
                    ),
                );
                return None;
            }
        }
        i += 2;
    }
    Some(l)
}

/// A second `lvs_sync_daemon` (or instance `lvs_sync_daemon_interface`) line: keepalived
/// keeps the first and ignores this one, with a warning.
pub(super) fn sync_daemon_already_set(cx: &mut Ctx, c: &Stmt, l: &LvsSyncDaemon) {
    cx.warning(
        c.span(),
        format!(
            "lvs_sync_daemon is already set ({} {}): this line is ignored, as keepalived ignores it",
            l.interface, l.instance
        ),
    );
}

//! Semantic checks on one director's [`Config`] and across the directors of a cluster.
//! Problems a single line cannot show: references between blocks, conflicts between
//! instances, and keepalived's `vrrp_strict` rules.

use crate::diag::{Diagnostic, Diagnostics};
use crate::lower::SpanIndex;
use crate::model::*;
use crate::syntax::Span;
use std::collections::{BTreeMap, BTreeSet};

fn at(spans: &SpanIndex, keys: &[String]) -> Option<Span> {
    keys.iter().find_map(|k| spans.get(k).copied())
}

/// Checks one director's configuration.
pub fn validate(cfg: &Config, spans: &SpanIndex) -> Diagnostics {
    let mut d = Diagnostics::new();
    vrrp_checks(cfg, spans, &mut d);
    lvs_checks(cfg, spans, &mut d);
    if let Some(l) = &cfg.global.lvs_sync_daemon {
        if !cfg.instances.iter().any(|i| i.name == l.instance) {
            d.error(
                at(spans, &["global lvs_sync_daemon".to_string()]),
                format!(
                    "lvs_sync_daemon follows vrrp_instance {}, which is not defined",
                    l.instance
                ),
            );
        }
    }
    d
}

fn vrrp_checks(cfg: &Config, spans: &SpanIndex, d: &mut Diagnostics) {
    let strict = cfg.global.vrrp_strict;
    let mut by_vrid: BTreeMap<(String, u8, bool), &str> = BTreeMap::new();
    let mut vip_owner: BTreeMap<std::net::IpAddr, &str> = BTreeMap::new();
    for inst in &cfg.instances {
        let k = format!("instance {}", inst.name);
        let kw = |w: &str| at(spans, &[format!("{k} {w}"), k.clone()]);
        let v6 = inst.virtual_ipaddress.first().is_some_and(|v| v.addr.is_ipv6());
        let id = (inst.interface.clone(), inst.virtual_router_id, v6);
        if let Some(other) = by_vrid.insert(id, &inst.name) {
            d.error(
                kw("virtual_router_id"),
                format!(
                    "vrrp_instance {} uses virtual_router_id {} on {} like vrrp_instance {other}: the two would fight over one virtual router",
                    inst.name, inst.virtual_router_id, inst.interface
                ),
            );
        }
        for vip in inst.vips() {
            if let Some(other) = vip_owner.insert(vip.addr, &inst.name) {
                if other != inst.name {
                    d.error(
                        kw("virtual_ipaddress"),
                        format!(
                            "address {} is a virtual address of both vrrp_instance {other} and {}",
                            vip.addr, inst.name
                        ),
                    );
                }
            }
            if vip.addr.is_ipv6() != v6 && inst.version == 2 {
                d.error(
                    kw("virtual_ipaddress"),
                    format!(
                        "vrrp_instance {}: VRRPv2 cannot mix IPv4 and IPv6 addresses",
                        inst.name
                    ),
                );
            }
        }
        if inst.virtual_ipaddress.is_empty() {
            d.warning(
                kw("virtual_ipaddress"),
                format!("vrrp_instance {} has no virtual_ipaddress", inst.name),
            );
        }
        if v6 && inst.version == 2 {
            d.error(
                kw("version"),
                format!("vrrp_instance {}: IPv6 addresses need `version 3`", inst.name),
            );
        }
        // Advertisement interval: v2 carries whole seconds, v3 centiseconds up to 40.95 s.
        if inst.version == 2 && inst.advert_int.0 % 1_000_000 != 0 {
            d.warning(
                kw("advert_int"),
                format!("vrrp_instance {}: VRRPv2 advertises whole seconds; advert_int {} is rounded, as keepalived does", inst.name, inst.advert_int),
            );
        }
        if inst.version == 3 && (inst.advert_int.0 % 10_000 != 0 || inst.advert_int > Dur(40_950_000)) {
            d.error(
                kw("advert_int"),
                format!(
                    "vrrp_instance {}: VRRPv3 advert_int must be a multiple of 0.01 s up to 40.95 s, not {}",
                    inst.name, inst.advert_int
                ),
            );
        }
        if inst.priority == 255 {
            d.warning(
                kw("priority"),
                format!("vrrp_instance {}: priority 255 claims ownership of the virtual addresses; they must be this director's own interface addresses", inst.name),
            );
        }
        if let Some(Auth::Pass(_) | Auth::Ah(_)) = &inst.auth {
            if inst.version == 3 {
                d.warning(
                    kw("authentication"),
                    format!(
                        "vrrp_instance {}: VRRPv3 has no authentication; the block is ignored",
                        inst.name
                    ),
                );
            } else if strict {
                d.warning(
                    kw("authentication"),
                    format!("vrrp_instance {}: vrrp_strict does not support authentication; keepalived ignores the block", inst.name),
                );
            }
        }
        if strict {
            if inst.state == InitialState::Master && inst.priority != 255 {
                d.warning(
                    kw("state"),
                    format!("vrrp_instance {}: under vrrp_strict, state MASTER must match being address owner (priority 255); keepalived starts it as BACKUP", inst.name),
                );
            }
            if !inst.unicast_peer.is_empty() {
                d.error(
                    kw("unicast_peer"),
                    format!(
                        "vrrp_instance {}: vrrp_strict does not allow unicast_peer",
                        inst.name
                    ),
                );
            }
        }
        for (kw, refs) in [
            ("track_script", &inst.track_script),
            ("track_file", &inst.track_file),
            ("track_process", &inst.track_process),
        ] {
            for t in refs {
                if let Some(block) = undefined(cfg, kw, &t.name) {
                    d.error(
                        at(
                            spans,
                            &[
                                format!("{kw} {} in vrrp_instance {}", t.name, inst.name),
                                k.clone(),
                            ],
                        ),
                        format!(
                            "vrrp_instance {} tracks `{}` ({kw}), which no {block} defines",
                            inst.name, t.name
                        ),
                    );
                }
            }
        }
        let alerts = inst
            .smtp_alert
            .or(cfg.global.smtp_alert_vrrp)
            .or(cfg.global.smtp_alert)
            .unwrap_or(false);
        if alerts && (cfg.global.smtp_server.is_none() || cfg.global.notification_email.is_empty()) {
            d.warning(
                kw("smtp_alert"),
                format!(
                    "vrrp_instance {}: smtp_alert sends nothing without `smtp_server` and `notification_email` in global_defs",
                    inst.name
                ),
            );
        }
        for n in cfg.tracking(inst).1 {
            d.warning(
                at(
                    spans,
                    &[
                        format!("{} {} in vrrp_instance {}", n.kind.keyword(), n.name, inst.name),
                        k.clone(),
                    ],
                ),
                n.message,
            );
        }
        if inst.unicast_peer.is_empty() && inst.unicast_src_ip.is_some() {
            d.warning(
                kw("unicast_src_ip"),
                format!(
                    "vrrp_instance {}: unicast_src_ip without unicast_peer has no effect",
                    inst.name
                ),
            );
        }
    }
    let mut in_group: BTreeMap<&str, &str> = BTreeMap::new();
    for g in &cfg.sync_groups {
        let k = format!("sync_group {}", g.name);
        for m in &g.members {
            if cfg.instance(m).is_none() {
                d.error(
                    spans.get(&k).copied(),
                    format!(
                        "vrrp_sync_group {} names vrrp_instance `{m}`, which is not defined",
                        g.name
                    ),
                );
            }
            if let Some(other) = in_group.insert(m, &g.name) {
                d.error(
                    spans.get(&k).copied(),
                    format!(
                        "vrrp_instance {m} is in both vrrp_sync_group {other} and {}",
                        g.name
                    ),
                );
            }
        }
        if g.members.len() < 2 {
            d.warning(
                spans.get(&k).copied(),
                format!("vrrp_sync_group {} has fewer than two members", g.name),
            );
        }
        for (kw, refs) in [
            ("track_script", &g.track_script),
            ("track_file", &g.track_file),
            ("track_process", &g.track_process),
        ] {
            for t in refs {
                if let Some(block) = undefined(cfg, kw, &t.name) {
                    d.error(
                        at(
                            spans,
                            &[
                                format!("{kw} {} in vrrp_sync_group {}", t.name, g.name),
                                k.clone(),
                            ],
                        ),
                        format!(
                            "vrrp_sync_group {} tracks `{}` ({kw}), which no {block} defines",
                            g.name, t.name
                        ),
                    );
                }
            }
        }
    }
}

/// The block that should define what a `track_script`/`track_file`/`track_process` line
/// names, when none does.
fn undefined(cfg: &Config, kw: &str, name: &str) -> Option<&'static str> {
    match kw {
        "track_script" => cfg.vrrp_script(name).is_none().then_some("vrrp_script"),
        "track_file" => cfg.track_file(name).is_none().then_some("track_file"),
        _ => cfg.track_process(name).is_none().then_some("vrrp_track_process"),
    }
}

fn lvs_checks(cfg: &Config, spans: &SpanIndex, d: &mut Diagnostics) {
    let groups: BTreeSet<&str> = cfg.vs_groups.iter().map(|g| g.name.as_str()).collect();
    for vs in &cfg.virtual_servers {
        let here = spans.get(&format!("vs {}", vs.key)).copied();
        group_reference(&vs.key, here, |g| groups.contains(g), d);
        virtual_server(vs, spans, d);
        for rs in &vs.real_servers {
            for c in &rs.checkers {
                let CheckKind::File(f) = &c.kind else { continue };
                if cfg.track_file(&f.track_file).is_none() {
                    let place = format!("vs {} rs {} FILE_CHECK", vs.key, crate::lower::rs_name(rs));
                    d.error(
                        at(spans, &[format!("{place} track_file {}", f.track_file), format!("vs {}", vs.key)]),
                        format!(
                            "real server {} of virtual_server {}: FILE_CHECK reads `{}`, which no track_file defines",
                            crate::lower::rs_name(rs),
                            vs.key,
                            f.track_file
                        ),
                    );
                }
            }
        }
    }
}

/// A `virtual_server group NAME` needs a `virtual_server_group NAME` in the same view.
pub fn group_reference(key: &VsKey, here: Option<Span>, defined: impl Fn(&str) -> bool, d: &mut Diagnostics) {
    if let VsKey::Group(g) = key {
        if !defined(g) {
            d.error(
                here,
                format!("virtual_server group {g}: no virtual_server_group {g} is defined"),
            );
        }
    }
}

/// The checks of one virtual server that need nothing outside it.
pub fn virtual_server(vs: &VirtualServer, spans: &SpanIndex, d: &mut Diagnostics) {
    let k = format!("vs {}", vs.key);
    let here = spans.get(&k).copied();
    if vs.real_servers.is_empty() && vs.sorry_server.is_none() {
        d.warning(here, format!("virtual_server {} has no real_server", vs.key));
    }
    if vs.persistence_granularity.is_some() && vs.persistence_timeout.is_none() {
        d.warning(
            at(spans, &[format!("{k} persistence_granularity"), k.clone()]),
            format!(
                "virtual_server {}: persistence_granularity has no effect without persistence_timeout",
                vs.key
            ),
        );
    }
    for rs in &vs.real_servers {
        let rk = format!("{k} rs {}", crate::lower::rs_name(rs));
        let rhere = at(spans, &[rk, k.clone()]);
        let fwd = rs.lb_kind.unwrap_or(vs.lb_kind);
        if let (VsKey::Addr { port, .. }, Some(rport)) = (&vs.key, rs.port) {
            if matches!(fwd, Forwarding::Dr | Forwarding::Tun) && *port != 0 && rport != *port {
                d.error(
                    rhere,
                    format!(
                        "real_server {} in {} virtual_server {}: {} cannot change the port; traffic arrives on port {port}, not {rport}",
                        crate::lower::rs_name(rs),
                        fwd.name(),
                        vs.key,
                        fwd.name()
                    ),
                );
            }
        }
        if rs.checkers.is_empty() {
            d.warning(
                rhere,
                format!(
                    "real_server {} in virtual_server {} has no checker: it is always considered up",
                    crate::lower::rs_name(rs),
                    vs.key
                ),
            );
        }
    }
}

/// Checks across directors: the same VRRP instance on several directors.
pub fn cross_node(views: &BTreeMap<String, (&Config, &SpanIndex)>) -> Diagnostics {
    let mut d = Diagnostics::new();
    let mut names: BTreeSet<&str> = BTreeSet::new();
    for (cfg, _) in views.values() {
        names.extend(cfg.instances.iter().map(|i| i.name.as_str()));
    }
    for name in names {
        let present: Vec<(&String, &VrrpInstance, &SpanIndex)> = views
            .iter()
            .filter_map(|(n, (c, s))| c.instance(name).map(|i| (n, i, *s)))
            .collect();
        for (node, inst, spans) in &present {
            if inst.state != InitialState::Master || inst.nopreempt {
                continue;
            }
            for (other, oi, _) in &present {
                if other != node && oi.priority > inst.priority {
                    let mut diag = Diagnostic::warning(
                        at(spans, &[format!("instance {name} state"), format!("instance {name}")]),
                        format!(
                            "vrrp_instance {name}: {node} has state MASTER with priority {} but {other} has priority {}: {other} will hold the VIP (state only sets how an instance starts)",
                            inst.priority, oi.priority
                        ),
                    );
                    diag.node = Some((*node).clone());
                    d.push(diag);
                }
            }
        }
        let vrids: BTreeSet<u8> = present.iter().map(|(_, i, _)| i.virtual_router_id).collect();
        if vrids.len() > 1 {
            let (_, _, spans) = present[0];
            d.error(
                at(spans, &[format!("instance {name} virtual_router_id"), format!("instance {name}")]),
                format!("vrrp_instance {name} has different virtual_router_id on different directors: they would never see each other"),
            );
        }
    }
    d
}

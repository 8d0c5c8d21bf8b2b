//! Lowering: from the syntax tree to one director's typed [`Config`], with diagnostics.
//!
//! keepalived's behaviour is followed where it is lenient: a value it refuses is reported
//! and ignored (the default stays), an unknown keyword is reported and ignored. Where a
//! silently ignored value would change who holds a VIP or where traffic goes, we report an
//! error instead. Keywords keepalived knows and we do not model are kept in `extra`.

mod args;
mod check;
mod global;
mod lvs;
mod routing;
mod track;
mod vrrp;

pub use args::{Ctx, SpanIndex};
pub use check::normalize_status;
pub use lvs::rs_name;

use crate::diag::Diagnostics;
use crate::model::Config;
use crate::syntax::keywords::{self, Section};
use crate::syntax::Stmt;

/// The result of lowering one director's view.
#[derive(Clone, Debug)]
pub struct Lowered {
    pub config: Config,
    pub spans: SpanIndex,
    pub diags: Diagnostics,
}

/// Lowers the statements visible to director `node` (None: a director named in no `@`
/// condition) into its configuration.
pub fn lower(stmts: &[Stmt], node: Option<&str>) -> Lowered {
    lower_with(stmts, node, None)
}

/// `virtual_server` blocks lowered once for every view: a block with no `@node` line in it
/// lowers the same for every director (its lowering reads nothing but the block), so a
/// file with several views lowers its 10,000s of virtual servers once, not once per view.
pub struct SharedBlocks {
    /// By the statement's address in the parsed tree.
    by_stmt: std::collections::HashMap<
        usize,
        (
            Option<std::sync::Arc<crate::model::VirtualServer>>,
            Diagnostics,
            SpanIndex,
        ),
    >,
}

impl SharedBlocks {
    pub fn new(stmts: &[Stmt]) -> Self {
        let by_stmt = stmts
            .iter()
            .filter(|s| s.keyword() == "virtual_server" && !has_condition(s))
            .map(|s| {
                let (vs, diags, spans) = virtual_server_alone(s, None);
                (s as *const Stmt as usize, (vs.map(Into::into), diags, spans))
            })
            .collect();
        SharedBlocks { by_stmt }
    }
}

/// [`lower`], taking the blocks in `shared` as they were lowered there.
pub fn lower_with(stmts: &[Stmt], node: Option<&str>, shared: Option<&SharedBlocks>) -> Lowered {
    lower_from(stmts, node, shared, crate::model::GlobalDefs::default())
}

/// [`lower`] of blocks read in the context of global settings already in force (a patch:
/// VRRP instances take their defaults from `global_defs`).
pub fn lower_in(stmts: &[Stmt], node: Option<&str>, global: crate::model::GlobalDefs) -> Lowered {
    lower_from(stmts, node, None, global)
}

fn lower_from(
    stmts: &[Stmt],
    node: Option<&str>,
    shared: Option<&SharedBlocks>,
    global: crate::model::GlobalDefs,
) -> Lowered {
    let mut view = ViewLowering::new(node, global);
    for s in stmts {
        if view.sees(s) {
            view.statement(s, shared);
        }
    }
    view.finish()
}

/// One director's view lowered a top-level statement at a time (what [`lower`] does over
/// a whole tree; `hactl check` feeds it statements as they are parsed).
#[derive(Clone)]
pub struct ViewLowering {
    cx: Ctx,
    cfg: Config,
    /// Virtual servers can be 10,000s: duplicates are found by key, not by a scan.
    vs_keys: std::collections::HashSet<crate::model::VsKey>,
}

impl ViewLowering {
    pub fn new(node: Option<&str>, global: crate::model::GlobalDefs) -> Self {
        ViewLowering {
            cx: Ctx::new(node),
            cfg: Config {
                global,
                ..Config::default()
            },
            vs_keys: Default::default(),
        }
    }

    /// The same view so far, for a director `node` that no line seen so far names (it sees
    /// exactly what this view saw).
    pub fn fork(&self, node: Option<&str>) -> Self {
        let mut v = self.clone();
        v.cx.set_node(node);
        v
    }

    /// Whether this view sees top-level statement `s`.
    pub fn sees(&self, s: &Stmt) -> bool {
        self.cx.admits(s)
    }

    /// Lowers a top-level statement this view sees.
    pub fn statement(&mut self, s: &Stmt, shared: Option<&SharedBlocks>) {
        let cx = &mut self.cx;
        let cfg = &mut self.cfg;
        match s.keyword() {
            "global_defs" => global::global_defs(cx, s, &mut cfg.global),
            "vrrp_script" => {
                if let Some(v) = vrrp::vrrp_script(cx, s) {
                    upsert(cx, &mut cfg.vrrp_scripts, v, |v| &v.name, s, "vrrp_script")
                }
            }
            "static_ipaddress" => {
                for c in cx.block(s) {
                    let Some(v) = vrrp::vip_line(cx, c) else { continue };
                    if v.dev.is_none() {
                        cx.error(
                            c.span(),
                            format!("static address {} needs `dev` (no instance says where)", v.addr),
                        );
                        continue;
                    }
                    cfg.global.statics.addresses.push(v);
                }
            }
            "static_routes" => {
                let routes = routing::routes(cx, s);
                cfg.global.statics.routes.extend(routes);
            }
            "static_rules" => {
                let rules = routing::rules(cx, s);
                cfg.global.statics.rules.extend(rules);
            }
            "track_file" | "vrrp_track_file" => {
                if let Some(v) = track::track_file(cx, s) {
                    upsert(cx, &mut cfg.track_files, v, |v| &v.name, s, "track_file")
                }
            }
            "vrrp_track_process" => {
                if let Some(v) = track::track_process(cx, s) {
                    upsert(
                        cx,
                        &mut cfg.track_processes,
                        v,
                        |v| &v.name,
                        s,
                        "vrrp_track_process",
                    )
                }
            }
            "vrrp_sync_group" => {
                if let Some(v) = vrrp::sync_group(cx, s) {
                    upsert(cx, &mut cfg.sync_groups, v, |v| &v.name, s, "vrrp_sync_group")
                }
            }
            "vrrp_instance" => {
                sync_daemon_of_instance(cx, s, &mut cfg.global);
                if let Some(v) = vrrp::instance(cx, s, &cfg.global) {
                    upsert(cx, &mut cfg.instances, v, |v| &v.name, s, "vrrp_instance")
                }
            }
            "virtual_server_group" => {
                if let Some(v) = lvs::vs_group(cx, s) {
                    upsert(cx, &mut cfg.vs_groups, v, |v| &v.name, s, "virtual_server_group")
                }
            }
            "virtual_server" => {
                let lowered = match shared.and_then(|sh| sh.by_stmt.get(&(s as *const Stmt as usize))) {
                    Some((vs, diags, spans)) => {
                        for d in diags.iter() {
                            cx.push(d.clone());
                        }
                        for (k, span) in spans {
                            cx.mark(k.clone(), *span);
                        }
                        vs.clone()
                    }
                    None => lvs::virtual_server(cx, s).map(Into::into),
                };
                if let Some(v) = lowered {
                    if self.vs_keys.insert(v.key.clone()) {
                        cfg.virtual_servers.push(v);
                    } else {
                        cx.push(duplicate_virtual_server(&v.key, s.span()));
                    }
                }
            }
            _ => {
                if let Some(raw) = cx.other(Section::Root, s) {
                    cfg.extra.push(raw);
                }
            }
        }
    }

    /// The view's configuration, where its entities were written, and its diagnostics.
    pub fn finish(self) -> Lowered {
        let (all, spans) = self.cx.finish();
        // What hanode does not run is decided now that the view's global_defs is known.
        let mut diags = crate::diag::Diagnostics::new();
        for d in all {
            diags.push(d.accept_not_run(|kw| self.cfg.global.ignores(kw)));
        }
        Lowered {
            config: self.cfg,
            spans,
            diags,
        }
    }
}

/// A `vrrp_instance`'s deprecated `lvs_sync_daemon_interface IFNAME`: the global
/// `lvs_sync_daemon` on IFNAME following this instance, unless one is set already.
fn sync_daemon_of_instance(cx: &mut Ctx, s: &Stmt, g: &mut crate::model::GlobalDefs) {
    let name = s.args().first().map(|w| w.text.clone()).unwrap_or_default();
    let lines = s.block.as_ref().map(|b| cx.visible(&b.stmts)).unwrap_or_default();
    for c in lines
        .into_iter()
        .filter(|c| c.keyword() == "lvs_sync_daemon_interface")
    {
        let Some(ifname) = cx.arg(c, 0, "an interface").map(str::to_string) else {
            continue;
        };
        cx.max_args(c, 1);
        if let Some(l) = &g.lvs_sync_daemon {
            global::sync_daemon_already_set(cx, c, l);
            continue;
        }
        cx.warning(
            c.span(),
            format!("`lvs_sync_daemon_interface` in a vrrp_instance is deprecated: write `lvs_sync_daemon {ifname} {name}` in global_defs"),
        );
        cx.mark("global lvs_sync_daemon", c.span());
        g.lvs_sync_daemon = Some(crate::model::LvsSyncDaemon {
            interface: ifname,
            instance: name.clone(),
            ..Default::default()
        });
    }
}

/// keepalived refuses a second `virtual_server` with the same address (or fwmark, group).
pub fn duplicate_virtual_server(
    key: &crate::model::VsKey,
    at: crate::syntax::Span,
) -> crate::diag::Diagnostic {
    crate::diag::Diagnostic::error(at, format!("virtual_server {key} is defined twice"))
}

/// One `virtual_server` block lowered alone for director `node`: its model (None when its
/// key line is unusable), its diagnostics, and where its settings were written.
pub fn virtual_server_alone(
    s: &Stmt,
    node: Option<&str>,
) -> (
    Option<crate::model::VirtualServer>,
    crate::diag::Diagnostics,
    SpanIndex,
) {
    let mut cx = Ctx::new(node);
    let vs = lvs::virtual_server(&mut cx, s);
    let (diags, spans) = cx.finish();
    (vs, diags, spans)
}

/// Whether a statement or any line inside it has an `@node` condition.
pub fn has_condition(s: &Stmt) -> bool {
    s.cond.is_some() || s.children().iter().any(has_condition)
}

/// The key a `virtual_server ARGS` line names, or why it names none.
pub fn virtual_server_key(s: &Stmt) -> Result<crate::model::VsKey, Diagnostics> {
    let mut cx = Ctx::new(None);
    let key = lvs::vs_key(&mut cx, s);
    let (diags, _) = cx.finish();
    match key {
        Some(k) if !diags.has_errors() => Ok(k),
        _ => Err(diags),
    }
}

/// keepalived: a second block with the same name is a configuration error.
fn upsert<T>(cx: &mut Ctx, list: &mut Vec<T>, v: T, name: impl Fn(&T) -> &String, s: &Stmt, what: &str) {
    if list.iter().any(|o| name(o) == name(&v)) {
        cx.error(s.span(), format!("{what} {} is defined twice", name(&v)));
    } else {
        list.push(v);
    }
}

/// The keyword list a suggestion is drawn from.
pub(crate) fn suggest(section: Section, word: &str) -> Option<&'static str> {
    keywords::closest(section, word)
}

#[cfg(test)]
mod shared_tests {
    use super::*;
    use crate::syntax::parse_str;

    /// Lowering with the shared blocks gives, for every view, exactly what lowering the
    /// whole file for that view gives: configuration, spans and diagnostics.
    #[test]
    fn shared_blocks_lower_like_every_view_alone() {
        let texts = [
            include_str!("../../tests/fixtures/keepalived.lvs01-master.conf").to_string(),
            include_str!("../../tests/fixtures/keepalived.sample.conf").to_string(),
            // @ lines inside one virtual server, a duplicate (conditional on one director),
            // an error in a shared block, an unknown keyword.
            "vrrp_instance VI_1 {\n interface ens33\n virtual_router_id 51\n @lvs01 priority 110\n}\n\
             virtual_server 198.18.1.1 80 {\n lb_kind DR\n real_server 198.18.2.1 80 {\n  @lvs02 weight 3\n }\n}\n\
             virtual_server 198.18.1.2 80 {\n lb_kind XX\n frobnicate 1\n real_server 198.18.2.2 80 {\n  weight 2\n }\n}\n\
             virtual_server 198.18.1.2 80 {\n lb_kind NAT\n}\n\
             @lvs02 virtual_server 198.18.1.1 80 {\n lb_kind NAT\n}\n"
                .to_string(),
        ];
        for text in texts {
            let parsed = parse_str("t.conf", &text);
            let shared = SharedBlocks::new(&parsed.stmts);
            for view in [None, Some("lvs01"), Some("lvs02"), Some("other")] {
                let alone = lower(&parsed.stmts, view);
                let with = lower_with(&parsed.stmts, view, Some(&shared));
                assert_eq!(with.config, alone.config, "{view:?}");
                assert_eq!(with.spans, alone.spans, "{view:?}");
                assert_eq!(
                    with.diags.clone().sorted(),
                    alone.diags.clone().sorted(),
                    "{view:?}"
                );
            }
        }
    }
}

#[cfg(test)]
mod sched_flag_tests {
    use super::*;
    use crate::model::{SchedFlags, Scheduler};
    use crate::syntax::parse_str;

    fn lowered(body: &str) -> Lowered {
        let text =
            format!("virtual_server 198.18.1.1 80 {{\n{body}\n real_server 198.18.2.1 80 {{\n }}\n}}\n");
        lower(&parse_str("t.conf", &text).stmts, None)
    }

    /// Issue 22: `mh-port`/`mh-fallback` (and `sh-*`, `flag-N`) set the IPVS scheduler
    /// flags; a scheduler's own flag under another scheduler (or above its `lb_algo`,
    /// which keepalived has not read yet) is ignored with a warning naming the line, as
    /// keepalived ignores it; the export spells them as keepalived does and reads back
    /// alike.
    #[test]
    fn scheduler_flags_are_read_for_their_scheduler_and_exported_back() {
        let l = lowered(" mh-port\n lb_algo mh\n lb_kind DR");
        assert_eq!(l.config.virtual_servers[0].sched_flags, SchedFlags::default());
        let warnings: Vec<String> = l.diags.iter().map(|d| d.message.clone()).collect();
        assert!(
            warnings.len() == 1 && warnings[0].contains("the scheduler at this line is `wlc`"),
            "{warnings:?}"
        );
        let l = lowered(" lb_algo mh\n mh-port\n mh-fallback\n lb_kind DR");
        assert!(l.diags.iter().next().is_none(), "{:?}", l.diags);
        let vs = &l.config.virtual_servers[0];
        assert_eq!(vs.lb_algo, Scheduler::Mh);
        assert_eq!(
            vs.sched_flags,
            SchedFlags(SchedFlags::FALLBACK | SchedFlags::PORT)
        );
        assert_eq!(vs.sched_flags.ipvs_bits(), 0x18);
        let exported = crate::printer::print(&l.config);
        assert!(
            exported.contains("mh-fallback") && exported.contains("mh-port"),
            "{exported}"
        );
        let again = lower(&parse_str("e.conf", &exported).stmts, None);
        assert_eq!(again.config.virtual_servers[0].sched_flags, vs.sched_flags);

        let l = lowered(" lb_algo rr\n sh-port\n flag-3");
        let vs = &l.config.virtual_servers[0];
        assert_eq!(vs.sched_flags, SchedFlags(SchedFlags::FLAG_3));
        let warnings: Vec<String> = l.diags.iter().map(|d| d.message.clone()).collect();
        assert!(
            warnings.len() == 1 && warnings[0].contains("`sh-port` applies to the sh scheduler only"),
            "{warnings:?}"
        );
        let exported = crate::printer::print(&l.config);
        assert!(
            exported.contains("flag-3") && !exported.contains("sh-port"),
            "{exported}"
        );
    }
}

#[cfg(test)]
mod sync_daemon_tests {
    use super::*;
    use crate::model::LvsSyncDaemon;
    use crate::syntax::parse_str;

    const VI_1: &str = "vrrp_instance VI_1 {\n interface ens33\n virtual_router_id 51\n priority 100\n virtual_ipaddress {\n  198.18.116.134\n }\n";

    fn lowered(text: &str) -> (Lowered, Vec<String>) {
        let l = lower(&parse_str("t.conf", text).stmts, None);
        let v = crate::validate::validate(&l.config, &l.spans);
        let msgs = l
            .diags
            .iter()
            .chain(v.iter())
            .map(|d| d.message.clone())
            .collect();
        (l, msgs)
    }

    /// Issue 22: `lvs_sync_daemon` as keepalived 2.2.7 reads it (global_defs, its options;
    /// the old positional sync id and the vrrp_instance form with a warning), exported in
    /// the global form and read back alike; a bad option or an unknown instance is an
    /// error naming the line.
    #[test]
    fn lvs_sync_daemon_is_read_in_every_form_and_exported_back() {
        let text = format!(
            "global_defs {{\n lvs_sync_daemon ens33 VI_1 id 5 maxlen 1400 port 8848 ttl 2 group 224.0.0.81\n}}\n{VI_1}}}\n"
        );
        let (l, msgs) = lowered(&text);
        assert!(msgs.is_empty(), "{msgs:?}");
        let want = LvsSyncDaemon {
            interface: "ens33".into(),
            instance: "VI_1".into(),
            sync_id: Some(5),
            maxlen: Some(1400),
            port: Some(8848),
            ttl: Some(2),
            group: Some("224.0.0.81".parse().unwrap()),
        };
        assert_eq!(l.config.global.lvs_sync_daemon.as_ref(), Some(&want));
        let exported = crate::printer::print(&l.config);
        let (again, _) = lowered(&exported);
        assert_eq!(again.config.global.lvs_sync_daemon, Some(want));

        // keepalived's old form: the sync id after the instance.
        let (l, msgs) = lowered(&format!(
            "global_defs {{\n lvs_sync_daemon ens33 VI_1 7\n}}\n{VI_1}}}\n"
        ));
        assert_eq!(l.config.global.lvs_sync_daemon.and_then(|s| s.sync_id), Some(7));
        assert!(msgs.len() == 1 && msgs[0].contains("write `id N`"), "{msgs:?}");

        // The deprecated vrrp_instance form.
        let (l, msgs) = lowered(&format!("{VI_1} lvs_sync_daemon_interface ens33\n}}\n"));
        let s = l.config.global.lvs_sync_daemon.expect("set by the instance");
        assert_eq!((s.interface.as_str(), s.instance.as_str()), ("ens33", "VI_1"));
        assert!(msgs.len() == 1 && msgs[0].contains("deprecated"), "{msgs:?}");

        // Per director: each sees its own line.
        let text = format!(
            "{VI_1} @lvs01 lvs_sync_daemon_interface eth0\n @lvs02 lvs_sync_daemon_interface eth1\n}}\n"
        );
        for (node, ifname) in [("lvs01", "eth0"), ("lvs02", "eth1")] {
            let l = lower(&parse_str("t.conf", &text).stmts, Some(node));
            let s = l.config.global.lvs_sync_daemon.expect("set");
            assert_eq!(s.interface, ifname, "{node}");
            assert_eq!(l.diags.iter().count(), 1, "{node}: {:?}", l.diags);
        }

        // Errors.
        for (line, error) in [
            (
                "lvs_sync_daemon ens33",
                "needs an interface and the VRRP instance",
            ),
            ("lvs_sync_daemon ens33 VI_1 id 300", "300"),
            (
                "lvs_sync_daemon ens33 VI_1 group 198.18.0.1",
                "not a multicast address",
            ),
            (
                "lvs_sync_daemon ens33 VI_1 colour red",
                "unknown lvs_sync_daemon option `colour`",
            ),
            (
                "lvs_sync_daemon ens33 VI_2",
                "follows vrrp_instance VI_2, which is not defined",
            ),
            (
                "lvs_sync_daemon ens33 VI_1_with_a_long_name",
                "longer than 15 characters",
            ),
        ] {
            let (_, msgs) = lowered(&format!("global_defs {{\n {line}\n}}\n{VI_1}}}\n"));
            assert!(msgs.iter().any(|m| m.contains(error)), "{line}: {msgs:?}");
        }
    }
}

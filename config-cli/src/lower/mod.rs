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
    let mut cx = Ctx::new(node);
    let mut cfg = Config::default();
    // Virtual servers can be 10,000s: duplicates are found by key, not by a scan.
    let mut vs_keys = std::collections::HashSet::new();
    for s in cx.visible(stmts) {
        match s.keyword() {
            "global_defs" => global::global_defs(&mut cx, s, &mut cfg.global),
            "vrrp_script" => {
                if let Some(v) = vrrp::vrrp_script(&mut cx, s) {
                    upsert(&mut cx, &mut cfg.vrrp_scripts, v, |v| &v.name, s, "vrrp_script")
                }
            }
            "vrrp_sync_group" => {
                if let Some(v) = vrrp::sync_group(&mut cx, s) {
                    upsert(
                        &mut cx,
                        &mut cfg.sync_groups,
                        v,
                        |v| &v.name,
                        s,
                        "vrrp_sync_group",
                    )
                }
            }
            "vrrp_instance" => {
                if let Some(v) = vrrp::instance(&mut cx, s, &cfg.global) {
                    upsert(&mut cx, &mut cfg.instances, v, |v| &v.name, s, "vrrp_instance")
                }
            }
            "virtual_server_group" => {
                if let Some(v) = lvs::vs_group(&mut cx, s) {
                    upsert(
                        &mut cx,
                        &mut cfg.vs_groups,
                        v,
                        |v| &v.name,
                        s,
                        "virtual_server_group",
                    )
                }
            }
            "virtual_server" => {
                if let Some(v) = lvs::virtual_server(&mut cx, s) {
                    if !vs_keys.insert(v.key.clone()) {
                        cx.error(s.span(), format!("virtual_server {} is defined twice", v.key));
                    } else {
                        cfg.virtual_servers.push(v);
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
    let (diags, spans) = cx.finish();
    Lowered {
        config: cfg,
        spans,
        diags,
    }
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

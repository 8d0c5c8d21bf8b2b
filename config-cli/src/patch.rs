//! A change without the whole file (issue 20): `hactl propose --patch FILE`. The patch is
//! keepalived.conf text holding whole top-level blocks, each replacing the block of the
//! same name (or adding it) on every director, `@node` lines included, and `delete` lines
//! naming blocks to remove:
//!
//! ```text
//! virtual_server 198.18.120.1 80 {
//!     lb_kind DR
//!     real_server 198.19.0.1 80 {
//!         weight 3
//!     }
//! }
//! delete virtual_server 198.18.120.2 80
//! delete vrrp_instance VI_9
//! ```
//!
//! Applying it to the committed configuration is O(change); the result is then validated
//! as a whole, as any proposal is, and goes through the same Raft log and history.

use crate::diag::{Diagnostic, Diagnostics, Severity};
use crate::keyed::{Delta, Item, Key, KeyedCluster, Slot};
use crate::lower::{lower, virtual_server_key};
use crate::syntax::{Parsed, Stmt};
use crate::validate;
use std::collections::{BTreeMap, BTreeSet};

/// The blocks a patch may hold (top-level statements kept verbatim are changed by
/// proposing the whole file).
const BLOCKS: [&str; 6] = [
    "global_defs",
    "vrrp_script",
    "vrrp_sync_group",
    "vrrp_instance",
    "virtual_server_group",
    "virtual_server",
];

/// A patch applied to a committed configuration.
#[derive(Debug)]
pub struct Patched {
    /// The change against the committed configuration (keys the patch leaves as they are
    /// are not in it).
    pub delta: Delta,
    /// The configuration after the change.
    pub result: KeyedCluster,
    /// Errors anywhere in the result, warnings about the patch's own blocks.
    pub diags: Diagnostics,
}

/// Applies the parsed patch to `committed`. `extra_nodes`: directors known from elsewhere
/// (Raft membership) whose views are validated too.
pub fn apply(parsed: &Parsed, committed: &KeyedCluster, extra_nodes: &[String]) -> Patched {
    let mut diags = parsed.diags.clone();
    let mut blocks: Vec<Stmt> = Vec::new();
    let mut deletes: Vec<(Key, &Stmt)> = Vec::new();
    for s in &parsed.stmts {
        match s.keyword() {
            "delete" => match deleted_key(s) {
                Ok(k) => deletes.push((k, s)),
                Err(d) => diags.extend(d),
            },
            kw if BLOCKS.contains(&kw) => blocks.push(s.clone()),
            kw => diags.error(
                s.span(),
                format!(
                    "a patch holds whole blocks ({}) and `delete` lines; `{kw}` is changed by proposing the whole file",
                    BLOCKS.join(", ")
                ),
            ),
        }
    }
    let default = lower(&blocks, None);
    diags.extend(default.diags.clone());
    let patched_global = blocks.iter().any(|s| s.keyword() == "global_defs");
    let keys: BTreeSet<Key> = crate::keyed::items_of(&default.config)
        .map(|(k, _)| k)
        .filter(|k| *k != Key::Global || patched_global)
        .collect();
    let mut names: BTreeSet<String> = crate::cluster::node_names(&blocks);
    names.extend(extra_nodes.iter().cloned());
    for k in &keys {
        if let Some(s) = committed.get(k) {
            names.extend(s.nodes.keys().cloned());
        }
    }
    let mut views: BTreeMap<String, crate::lower::Lowered> = BTreeMap::new();
    for n in &names {
        let l = lower(&blocks, Some(n));
        diags.extend(l.diags.clone());
        views.insert(n.clone(), l);
    }
    // Each view's items by key, once.
    let by_key =
        |config: &crate::model::Config| -> BTreeMap<Key, Item> { crate::keyed::items_of(config).collect() };
    let default_items = by_key(&default.config);
    let view_items: BTreeMap<&String, BTreeMap<Key, Item>> =
        views.iter().map(|(n, l)| (n, by_key(&l.config))).collect();
    let item = |items: &BTreeMap<Key, Item>, node: Option<&str>, key: &Key| -> Option<Item> {
        let found = items.get(key).cloned()?;
        match found {
            // The statements kept verbatim stay as committed.
            Item::Global { defs, .. } => {
                let extra = match committed.get(&Key::Global).and_then(|s| match node {
                    Some(n) => s.view(n),
                    None => s.default.as_ref(),
                }) {
                    Some(Item::Global { extra, .. }) => extra.clone(),
                    _ => Vec::new(),
                };
                Some(Item::Global { defs, extra })
            }
            other => Some(other),
        }
    };
    let mut changes: BTreeMap<Key, Option<Slot>> = BTreeMap::new();
    for key in &keys {
        let default_item = item(&default_items, None, key);
        let mut slot = Slot {
            default: default_item,
            nodes: BTreeMap::new(),
        };
        for (n, items) in &view_items {
            let it = item(items, Some(n.as_str()), key);
            if it != slot.default {
                slot.nodes.insert((*n).clone(), it);
            }
        }
        if committed.get(key) != Some(&slot) {
            changes.insert(key.clone(), Some(slot));
        }
    }
    for (key, s) in deletes {
        if keys.contains(&key) {
            diags.error(
                s.span(),
                format!("{key} is both replaced and deleted by this patch"),
            );
        } else if committed.get(&key).is_none() {
            diags.error(s.span(), format!("{key} is not in the committed configuration"));
        } else {
            changes.insert(key, None);
        }
    }
    let delta = Delta {
        changes: changes.into_iter().collect(),
    };
    let mut result = committed.clone();
    result.apply(&delta);
    if !diags.has_errors() {
        let checked = checked_part(&result, &delta);
        diags.extend(validate_result(&checked, &default.spans, &views, &names));
    }
    Patched {
        delta,
        result,
        diags: diags.sorted(),
    }
}

/// The part of the result whose validity a delta can change: every block but the virtual
/// servers (VRRP checks look across instances; they are few), the virtual servers the delta
/// writes, and, when it touches a virtual_server_group, every virtual server naming a group.
/// Validating it costs O(change), not O(virtual servers).
fn checked_part(result: &KeyedCluster, delta: &Delta) -> KeyedCluster {
    let groups_touched = delta.changes.iter().any(|(k, _)| matches!(k, Key::VsGroup(_)));
    let written: BTreeSet<&Key> = delta
        .changes
        .iter()
        .filter(|(_, s)| s.is_some())
        .map(|(k, _)| k)
        .collect();
    let slots = result
        .iter()
        .filter(|(k, _)| match k {
            Key::VirtualServer(vs) => {
                written.contains(k) || (groups_touched && matches!(vs, crate::model::VsKey::Group(_)))
            }
            _ => true,
        })
        .map(|(k, s)| (k.clone(), s.clone()))
        .collect();
    KeyedCluster::from_slots(slots)
}

/// Validates every director's view of the result: errors anywhere, warnings located in
/// the patch (the rest of the configuration was validated when it was committed).
fn validate_result(
    result: &KeyedCluster,
    default_spans: &crate::lower::SpanIndex,
    views: &BTreeMap<String, crate::lower::Lowered>,
    names: &BTreeSet<String>,
) -> Diagnostics {
    let mut out = Diagnostics::new();
    let mut keep = |d: Diagnostic| {
        if d.severity == Severity::Error || d.span.is_some() {
            out.push(d);
        }
    };
    for d in validate::validate(&result.view_default(), default_spans) {
        keep(d);
    }
    let mut for_cross = BTreeMap::new();
    for n in names {
        let spans = views.get(n).map(|l| l.spans.clone()).unwrap_or_default();
        let view = result.view(n);
        for d in validate::validate(&view, &spans) {
            keep(d);
        }
        for_cross.insert(n.clone(), (view, spans));
    }
    for d in validate::cross_node(&for_cross) {
        keep(d);
    }
    out
}

/// The patch that turns the committed slots `theirs` into `mine` on the keys they differ
/// on: the changed blocks printed (with their `@node` lines) and a `delete` line per
/// removed key; checked by applying it to `theirs` here. `None` when a patch cannot say it
/// (top-level statements kept verbatim changed, or the printed blocks do not read back as
/// the same slots): the whole file must be sent.
pub fn render(theirs: &BTreeMap<Key, Slot>, mine: &BTreeMap<Key, Slot>) -> Option<String> {
    let mut written = BTreeMap::new();
    let mut deleted = Vec::new();
    for (k, s) in mine {
        if theirs.get(k) != Some(s) {
            written.insert(k.clone(), s.clone());
        }
    }
    for k in theirs.keys() {
        if !mine.contains_key(k) {
            deleted.push(k.clone());
        }
    }
    let verbatim = |s: Option<&Slot>| {
        s.is_some_and(|s| {
            std::iter::once(&s.default)
                .chain(s.nodes.values())
                .any(|i| matches!(i, Some(Item::Global { extra, .. }) if !extra.is_empty()))
        })
    };
    if written.contains_key(&Key::Global)
        && (verbatim(theirs.get(&Key::Global)) || verbatim(mine.get(&Key::Global)))
    {
        return None;
    }
    if deleted.contains(&Key::Global) {
        return None;
    }
    let mut text = if written.is_empty() {
        String::new()
    } else {
        crate::keyed::cluster_of(&written)
            .print_blocks(written.contains_key(&Key::Global))
            .ok()?
    };
    for k in &deleted {
        text.push_str(&format!("delete {}\n", delete_words(k).join(" ")));
    }
    // The patch must read back as exactly these slots.
    let parsed = crate::syntax::parse_str("<patch>", &text);
    let base = KeyedCluster::from_slots(theirs.clone());
    let applied = apply(&parsed, &base, &[]);
    if applied.diags.has_errors() {
        return None;
    }
    let back: BTreeMap<Key, Slot> = applied.result.slots();
    (back == *mine).then_some(text)
}

/// The words after `delete` that name `key`.
fn delete_words(key: &Key) -> Vec<String> {
    use crate::model::VsKey;
    let q = crate::printer::quote;
    match key {
        Key::Global => vec!["global_defs".into()],
        Key::Script(n) => vec!["vrrp_script".into(), q(n)],
        Key::SyncGroup(n) => vec!["vrrp_sync_group".into(), q(n)],
        Key::Instance(n) => vec!["vrrp_instance".into(), q(n)],
        Key::VsGroup(n) => vec!["virtual_server_group".into(), q(n)],
        Key::VirtualServer(VsKey::Addr { ip, port }) => {
            vec!["virtual_server".into(), ip.to_string(), port.to_string()]
        }
        Key::VirtualServer(VsKey::Fwmark(m)) => vec!["virtual_server".into(), "fwmark".into(), m.to_string()],
        Key::VirtualServer(VsKey::Group(g)) => vec!["virtual_server".into(), "group".into(), q(g)],
    }
}

/// The key a `delete KEYWORD ARGS` line names.
fn deleted_key(s: &Stmt) -> Result<Key, Diagnostics> {
    let mut d = Diagnostics::new();
    let args = s.args();
    let Some(kw) = args.first() else {
        d.error(
            s.span(),
            format!(
                "`delete` needs a block to delete: one of {}",
                BLOCKS[1..].join(", ")
            ),
        );
        return Err(d);
    };
    let name = || args.get(1).map(|w| w.text.clone());
    let key = match kw.text.as_str() {
        "virtual_server" => {
            let inner = Stmt {
                cond: None,
                words: args.to_vec(),
                block: None,
            };
            return virtual_server_key(&inner).map(Key::VirtualServer);
        }
        "vrrp_script" => name().map(Key::Script),
        "vrrp_sync_group" => name().map(Key::SyncGroup),
        "vrrp_instance" => name().map(Key::Instance),
        "virtual_server_group" => name().map(Key::VsGroup),
        other => {
            d.error(
                kw.span,
                format!("`delete {other}`: only {} can be deleted", BLOCKS[1..].join(", ")),
            );
            return Err(d);
        }
    };
    match key {
        Some(k) if args.len() == 2 => Ok(k),
        _ => {
            d.error(s.span(), format!("`delete {}` needs exactly one name", kw.text));
            Err(d)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{canon, cluster, syntax::parse_str};

    const BASE: &str = "vrrp_instance VI_1 {\n interface ens33\n virtual_router_id 51\n @lvs01 priority 110\n @lvs02 priority 90\n virtual_ipaddress {\n  198.18.116.134\n }\n}\n\
        virtual_server 198.18.116.134 80 {\n lb_kind DR\n real_server 198.18.116.131 80 {\n  weight 1\n }\n}\n\
        virtual_server 198.18.116.134 443 {\n lb_kind DR\n real_server 198.18.116.131 443 {\n  weight 1\n }\n}\n";

    fn keyed(text: &str) -> KeyedCluster {
        let (_, l) = cluster::load_str("c.conf", text, &[]);
        assert!(!l.diags.has_errors(), "{:?}", l.diags);
        KeyedCluster::from_cluster(&l.cluster)
    }

    fn patch(committed: &KeyedCluster, text: &str) -> Patched {
        apply(&parse_str("patch.conf", text), committed, &[])
    }

    #[test]
    fn a_replaced_block_gives_what_the_whole_file_would() {
        let base = keyed(BASE);
        let p = patch(
            &base,
            "virtual_server 198.18.116.134 80 {\n lb_kind DR\n real_server 198.18.116.131 80 {\n  weight 3\n }\n}\n",
        );
        assert!(!p.diags.has_errors(), "{:?}", p.diags);
        assert_eq!(p.delta.len(), 1);
        let whole = keyed(&BASE.replacen("weight 1", "weight 3", 1));
        assert_eq!(p.result, whole);
        assert_eq!(p.result.hash(), whole.hash());
    }

    #[test]
    fn per_director_lines_and_deletes_apply_like_the_whole_file() {
        let base = keyed(BASE);
        let p = patch(
            &base,
            "vrrp_instance VI_1 {\n interface ens33\n virtual_router_id 51\n @lvs01 priority 120\n @lvs02 priority 90\n virtual_ipaddress {\n  198.18.116.134\n }\n}\n\
             delete virtual_server 198.18.116.134 443\n",
        );
        assert!(!p.diags.has_errors(), "{:?}", p.diags);
        let whole_text = BASE.replace("@lvs01 priority 110", "@lvs01 priority 120");
        let whole_text =
            whole_text[..whole_text.find("virtual_server 198.18.116.134 443").unwrap()].to_string();
        let whole = keyed(&whole_text);
        assert_eq!(p.result, whole);
        assert_eq!(p.result.to_cluster(), canon::canonical(&whole.to_cluster()));
        assert_eq!(p.delta.len(), 2);
    }

    #[test]
    fn bad_patches_are_refused_with_their_place_and_change_nothing() {
        let base = keyed(BASE);
        for (text, says) in [
            ("virtual_server 198.18.116.134 80 {\n lb_kind XX\n}\n", "patch.conf:2"),
            ("delete virtual_server 198.18.116.134 81\n", "not in the committed configuration"),
            ("delete frobnicate x\n", "only vrrp_script"),
            ("static_ipaddress {\n 198.18.5.1/24 dev ens33\n}\n", "proposing the whole file"),
            (
                "vrrp_instance VI_2 {\n interface ens33\n virtual_router_id 51\n virtual_ipaddress {\n  198.18.116.135\n }\n}\n",
                "51",
            ),
        ] {
            let parsed = parse_str("patch.conf", text);
            let p = apply(&parsed, &base, &[]);
            assert!(p.diags.has_errors(), "{text}: no error");
            let rendered: Vec<String> = p.diags.iter().map(|d| d.render(&parsed.sources)).collect();
            assert!(rendered.iter().any(|r| r.contains(says)), "{text}: {rendered:?}");
        }
    }

    #[test]
    fn deleting_a_group_that_an_untouched_virtual_server_names_is_refused() {
        let base = keyed(
            "virtual_server_group G1 {\n 198.18.116.134 8080\n}\n\
             virtual_server group G1 {\n lb_kind NAT\n real_server 198.18.116.131 8080 {\n  weight 1\n }\n}\n",
        );
        let parsed = parse_str("patch.conf", "delete virtual_server_group G1\n");
        let p = apply(&parsed, &base, &[]);
        assert!(p.diags.has_errors(), "{:?}", p.diags);
        assert!(
            p.diags
                .iter()
                .any(|d| d.message.contains("no virtual_server_group G1")),
            "{:?}",
            p.diags
        );
    }

    #[test]
    fn a_rendered_patch_leaves_unchanged_global_settings_alone() {
        let with_global = format!("global_defs {{\n router_id R1\n}}\n{BASE}");
        let base = keyed(&with_global);
        let target = keyed(&with_global.replacen("weight 1", "weight 4", 1));
        let text = render(&base.slots(), &target.slots()).expect("a patch says it");
        assert!(!text.contains("global_defs"), "{text}");
        let p = patch(&base, &text);
        assert_eq!(p.result, target);
        let renamed = keyed(&with_global.replace("router_id R1", "router_id R2"));
        let text = render(&base.slots(), &renamed.slots()).expect("a patch says it");
        assert!(text.contains("router_id R2"), "{text}");
        assert_eq!(patch(&base, &text).result, renamed);
    }

    #[test]
    fn a_rendered_patch_reads_back_as_the_changed_blocks() {
        let base = keyed(BASE);
        let new_text = BASE
            .replace("@lvs01 priority 110", "@lvs01 priority 120")
            .replacen("weight 1", "weight 7", 1);
        let new_text = new_text[..new_text.find("virtual_server 198.18.116.134 443").unwrap()].to_string()
            + "virtual_server fwmark 7 {\n lb_kind DR\n real_server 198.18.116.132 0 {\n  weight 2\n }\n}\n";
        let target = keyed(&new_text);
        let text = render(&base.slots(), &target.slots()).expect("a patch says it");
        assert!(
            text.contains("delete virtual_server 198.18.116.134 443"),
            "{text}"
        );
        assert!(text.contains("@lvs01 priority 120"), "{text}");
        let p = patch(&base, &text);
        assert!(!p.diags.has_errors(), "{:?}\n{text}", p.diags);
        assert_eq!(p.result, target);
        assert_eq!(p.result.hash(), target.hash());
        // Verbatim top-level statements are changed by the whole file only.
        let with_extra = keyed(&format!(
            "{BASE}static_ipaddress {{\n 198.18.5.1/24 dev ens33\n}}\n"
        ));
        assert!(render(&base.slots(), &with_extra.slots()).is_none());
    }

    #[test]
    fn a_patch_equal_to_the_committed_blocks_changes_nothing() {
        let base = keyed(BASE);
        let p = patch(
            &base,
            "virtual_server 198.18.116.134 80 {\n lb_kind DR\n real_server 198.18.116.131 80 {\n  weight 1\n }\n}\n",
        );
        assert!(p.delta.is_empty());
        assert_eq!(p.result, base);
    }
}

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
use crate::lower::{lower_in, virtual_server_key};
use crate::syntax::{Parsed, Stmt};
use crate::validate;
use std::collections::{BTreeMap, BTreeSet};

/// The blocks a patch may hold. `global_defs` is not one of them: it decides how every
/// `vrrp_instance` is read (its defaults), so it is changed by proposing the whole file, as
/// are the top-level statements kept verbatim.
const BLOCKS: [&str; 8] = [
    "vrrp_script",
    "track_file",
    "vrrp_track_file",
    "vrrp_track_process",
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

/// Applies the parsed patch to `committed` and validates the result. `extra_nodes`:
/// directors known from elsewhere (Raft membership) whose views are validated too.
/// Whether a `vrrp_instance` block has the deprecated `lvs_sync_daemon_interface`
/// (which sets a global setting, outside what a patch may change).
fn sets_sync_daemon(s: &crate::syntax::Stmt) -> bool {
    s.block
        .iter()
        .flat_map(|b| b.stmts.iter())
        .any(|c| c.keyword() == "lvs_sync_daemon_interface")
}

pub fn apply(parsed: &Parsed, committed: &KeyedCluster, extra_nodes: &[String]) -> Patched {
    apply_inner(parsed, committed, extra_nodes, true)
}

fn apply_inner(parsed: &Parsed, committed: &KeyedCluster, extra_nodes: &[String], check: bool) -> Patched {
    let mut diags = parsed.diags.clone();
    let mut blocks: Vec<Stmt> = Vec::new();
    let mut deletes: Vec<(Key, &Stmt)> = Vec::new();
    for s in &parsed.stmts {
        match s.keyword() {
            "delete" if s.cond.is_some() => diags.error(
                s.span(),
                "a `delete` line removes a block from every director: it cannot be an `@node` line",
            ),
            "delete" => match deleted_key(s) {
                Ok(k) => deletes.push((k, s)),
                Err(d) => diags.extend(d),
            },
            "vrrp_instance" if sets_sync_daemon(s) => diags.error(
                s.span(),
                "`lvs_sync_daemon_interface` sets the global lvs_sync_daemon: propose the whole file (better: `lvs_sync_daemon` in global_defs)",
            ),
            kw if BLOCKS.contains(&kw) => blocks.push(s.clone()),
            "global_defs" => diags.error(
                s.span(),
                "`global_defs` decides how every vrrp_instance is read: change it by proposing the whole file",
            ),
            kw => diags.error(
                s.span(),
                format!(
                    "a patch holds whole blocks ({}) and `delete` lines; `{kw}` is changed by proposing the whole file",
                    BLOCKS.join(", ")
                ),
            ),
        }
    }
    // Each view's blocks are read with that view's committed global settings.
    let committed_global = |node: Option<&str>| match committed.get(&Key::Global).and_then(|s| match node {
        Some(n) => s.view(n),
        None => s.default.as_ref(),
    }) {
        Some(Item::Global { defs, .. }) => (**defs).clone(),
        _ => crate::model::GlobalDefs::default(),
    };
    let default = lower_in(&blocks, None, committed_global(None));

    diags.extend(default.diags.clone());
    let keys: BTreeSet<Key> = crate::keyed::items_of(&default.config)
        .map(|(k, _)| k)
        .filter(|k| *k != Key::Global)
        .collect();
    let named_in_patch: BTreeSet<String> = crate::cluster::node_names(&blocks);
    let mut names = named_in_patch.clone();
    names.extend(extra_nodes.iter().cloned());
    for k in keys.iter().chain([&Key::Global]) {
        if let Some(s) = committed.get(k) {
            names.extend(s.nodes.keys().cloned());
        }
    }
    let default_global = committed_global(None);
    let mut views: BTreeMap<String, crate::lower::Lowered> = BTreeMap::new();
    for n in &names {
        let global = committed_global(Some(n));
        // A director no line of the patch names, reading it with the unnamed directors'
        // global settings, sees what they see: lowered once.
        let l = if !named_in_patch.contains(n) && global == default_global {
            crate::lower::Lowered {
                config: default.config.clone(),
                spans: default.spans.clone(),
                diags: Diagnostics::new(),
            }
        } else {
            let l = lower_in(&blocks, Some(n), global);
            diags.extend(l.diags.clone());
            l
        };
        views.insert(n.clone(), l);
    }
    // Each view's items by key, once.
    let by_key =
        |config: &crate::model::Config| -> BTreeMap<Key, Item> { crate::keyed::items_of(config).collect() };
    let default_items = by_key(&default.config);
    let view_items: BTreeMap<&String, BTreeMap<Key, Item>> =
        views.iter().map(|(n, l)| (n, by_key(&l.config))).collect();
    let mut changes: BTreeMap<Key, Option<Slot>> = BTreeMap::new();
    for key in &keys {
        let mut slot = Slot {
            default: default_items.get(key).cloned(),
            nodes: BTreeMap::new(),
        };
        for (n, items) in &view_items {
            let it = items.get(key).cloned();
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
    if check && !diags.has_errors() {
        let checked = checked_part(&result, &delta);
        // Every director the checked part names, besides the members and the patch's own.
        for s in checked.values() {
            names.extend(s.nodes.keys().cloned());
        }
        // Validated as configurations; the part needs no hash tree.
        let checked = crate::keyed::cluster_of(&checked);
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
fn checked_part(result: &KeyedCluster, delta: &Delta) -> BTreeMap<Key, Slot> {
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
    slots
}

/// Validates every director's view of the result: errors anywhere, warnings located in
/// the patch (the rest of the configuration was validated when it was committed). As for a
/// whole file, an error only the view of directors named in no `@` line has is a warning
/// when named directors exist (such a director is checked in its own view once it exists).
fn validate_result(
    result: &crate::cluster::ClusterConfig,
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
    let default_only = validate::validate(&result.default, default_spans);
    let mut named = Diagnostics::new();
    let mut for_cross = BTreeMap::new();
    for n in names {
        let spans = views.get(n).map(|l| l.spans.clone()).unwrap_or_default();
        let view = result.view(n);
        named.extend(validate::validate(view, &spans));
        for_cross.insert(n.clone(), (view, spans));
    }
    for mut d in default_only {
        if d.is_error() && !names.is_empty() && !named.iter().any(|x| *x == d) {
            d.severity = Severity::Warning;
        }
        keep(d);
    }
    for d in named {
        keep(d);
    }
    let refs = for_cross.iter().map(|(n, (c, s))| (n.clone(), (*c, s))).collect();
    for d in validate::cross_node(&refs) {
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
    // A patch never changes the global settings (they decide how instances are read).
    if written.contains_key(&Key::Global) || deleted.contains(&Key::Global) {
        return None;
    }
    let mut text = if written.is_empty() {
        String::new()
    } else {
        crate::keyed::cluster_of(&written).print_blocks(false).ok()?
    };
    for k in &deleted {
        text.push_str(&format!("delete {}\n", delete_words(k).join(" ")));
    }
    // The patch must read back as exactly these slots.
    let parsed = crate::syntax::parse_str("<patch>", &text);
    let base = KeyedCluster::from_slots(theirs.clone());
    // Only the read-back matters here (the leader validates the whole result).
    let applied = apply_inner(&parsed, &base, &[], false);
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
        Key::TrackFile(n) => vec!["track_file".into(), q(n)],
        Key::TrackProcess(n) => vec!["vrrp_track_process".into(), q(n)],
    }
}

/// The key a `delete KEYWORD ARGS` line names.
fn deleted_key(s: &Stmt) -> Result<Key, Diagnostics> {
    let mut d = Diagnostics::new();
    let args = s.args();
    let Some(kw) = args.first() else {
        d.error(
            s.span(),
            format!("`delete` needs a block to delete: one of {}", BLOCKS.join(", ")),
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
        "track_file" | "vrrp_track_file" => name().map(Key::TrackFile),
        "vrrp_track_process" => name().map(Key::TrackProcess),
        "vrrp_sync_group" => name().map(Key::SyncGroup),
        "vrrp_instance" => name().map(Key::Instance),
        "virtual_server_group" => name().map(Key::VsGroup),
        other => {
            d.error(
                kw.span,
                format!("`delete {other}`: only {} can be deleted", BLOCKS.join(", ")),
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
                "vrrp_instance VI_1 {\n interface ens33\n virtual_router_id 51\n lvs_sync_daemon_interface ens33\n}\n",
                "propose the whole file",
            ),
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
        // A change of the global settings goes as the whole file.
        let renamed = keyed(&with_global.replace("router_id R1", "router_id R2"));
        assert!(render(&base.slots(), &renamed.slots()).is_none());
    }

    #[test]
    fn patched_instances_are_read_with_the_committed_global_settings() {
        let with_v3 = format!("global_defs {{\n vrrp_version 3\n}}\n{BASE}");
        let base = keyed(&with_v3);
        let changed = with_v3.replace("@lvs01 priority 110", "@lvs01 priority 120");
        let block_start = changed.find("vrrp_instance").unwrap();
        let block_end = changed.find("virtual_server").unwrap();
        let p = patch(&base, &changed[block_start..block_end]);
        assert!(!p.diags.has_errors(), "{:?}", p.diags);
        assert_eq!(p.result, keyed(&changed), "the instance keeps VRRPv3");
        let refused = patch(&base, "global_defs {\n vrrp_version 2\n}\n");
        assert!(refused.diags.has_errors());
        assert!(refused.delta.is_empty());
    }

    #[test]
    fn a_delete_line_cannot_be_for_one_director() {
        let p = patch(&keyed(BASE), "@lvs02 delete virtual_server 198.18.116.134 443\n");
        assert!(
            p.diags
                .iter()
                .any(|d| d.is_error() && d.message.contains("every director")),
            "{:?}",
            p.diags
        );
        assert!(p.delta.is_empty());
    }

    #[test]
    fn validation_covers_directors_named_only_in_untouched_blocks() {
        // lvs03's view has VI_2 on router id 52: moving VI_1 to 52 clashes there only.
        let base = keyed(&format!(
            "{BASE}vrrp_instance VI_2 {{\n interface ens33\n virtual_router_id 60\n @lvs03 virtual_router_id 52\n virtual_ipaddress {{\n  198.18.116.140\n }}\n}}\n"
        ));
        let p = patch(
            &base,
            "vrrp_instance VI_1 {\n interface ens33\n virtual_router_id 52\n @lvs01 priority 110\n @lvs02 priority 90\n virtual_ipaddress {\n  198.18.116.134\n }\n}\n",
        );
        assert!(
            p.diags
                .iter()
                .any(|d| d.is_error() && d.message.contains("virtual_router_id 52")),
            "{:?}",
            p.diags
        );
    }

    #[test]
    fn an_error_only_unnamed_directors_would_have_stays_a_warning_as_for_the_whole_file() {
        // No interface for directors named in no @ line: the whole file commits (a
        // warning), so a patch of an unrelated block must too.
        let text = BASE.replace(
            " interface ens33\n",
            " @lvs01 interface ens33\n @lvs02 interface ens33\n",
        );
        let (_, whole) = cluster::load_str("c.conf", &text, &[]);
        assert!(!whole.diags.has_errors(), "{:?}", whole.diags);
        let base = KeyedCluster::from_cluster(&whole.cluster);
        let p = patch(
            &base,
            "virtual_server 198.18.116.134 80 {\n lb_kind DR\n real_server 198.18.116.131 80 {\n  weight 3\n }\n}\n",
        );
        assert!(!p.diags.has_errors(), "{:?}", p.diags);
        assert_eq!(p.delta.len(), 1);
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
        let accept = "global_defs {\n hanode_ignore static_ipaddress\n}\n";
        let without = keyed(&format!("{accept}{BASE}"));
        let with_extra = keyed(&format!(
            "{accept}{BASE}static_ipaddress {{\n 198.18.5.1/24 dev ens33\n}}\n"
        ));
        assert!(render(&without.slots(), &with_extra.slots()).is_none());
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

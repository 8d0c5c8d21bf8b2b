//! Semantic difference between two cluster configurations: which virtual servers, real
//! servers, weights, VRRP instances and settings were added, removed or changed, and on
//! which directors. Not a text diff: formatting and block order never show up.

use crate::cluster::ClusterConfig;
use crate::lower::rs_name;
use crate::model::*;
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum ChangeKind {
    Added,
    Removed,
    Changed { field: String, old: String, new: String },
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct Change {
    /// What changed, e.g. `virtual_server 198.18.116.134:80 real_server 198.18.116.131:80`.
    pub path: String,
    #[serde(flatten)]
    pub kind: ChangeKind,
    /// Directors the change applies to; empty means all of them.
    pub nodes: Vec<String>,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ChangeKind::Added => write!(f, "+ {}", self.path)?,
            ChangeKind::Removed => write!(f, "- {}", self.path)?,
            ChangeKind::Changed { field, old, new } => write!(f, "~ {}: {field} {old} -> {new}", self.path)?,
        }
        if !self.nodes.is_empty() {
            write!(f, " (on {})", self.nodes.join(", "))?;
        }
        Ok(())
    }
}

/// Changes from `old` to `new`, each once, with the directors it concerns.
pub fn diff(old: &ClusterConfig, new: &ClusterConfig) -> Vec<Change> {
    let mut views: Vec<Option<&str>> = vec![None];
    let names: BTreeSet<&String> = old.nodes.keys().chain(new.nodes.keys()).collect();
    views.extend(names.iter().map(|n| Some(n.as_str())));
    let mut acc: Vec<(Change, BTreeSet<Option<&str>>)> = Vec::new();
    let mut at: HashMap<Change, usize> = HashMap::new();
    // Views share their virtual servers (`Arc`s): each pair is compared once.
    let mut memo = VsMemo::new();
    for v in &views {
        let (o, n) = match v {
            None => (&old.default, &new.default),
            Some(name) => (old.view(name), new.view(name)),
        };
        for c in diff_views(o, n, &mut memo) {
            match at.get(&c) {
                Some(&i) => {
                    acc[i].1.insert(*v);
                }
                None => {
                    at.insert(c.clone(), acc.len());
                    acc.push((c, BTreeSet::from([*v])));
                }
            }
        }
    }
    let all: BTreeSet<Option<&str>> = views.iter().copied().collect();
    acc.into_iter()
        .map(|(mut c, set)| {
            if set != all {
                c.nodes = set
                    .iter()
                    .map(|v| v.unwrap_or("(unnamed directors)").to_string())
                    .collect();
            }
            c
        })
        .collect()
}

fn value_text(v: &Value) -> String {
    match v {
        Value::Null => "(none)".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Field-by-field changes between two serialisable values (objects compared per key).
fn fields<T: Serialize>(path: &str, old: &T, new: &T, skip: &[&str], out: &mut Vec<Change>) {
    let (Ok(Value::Object(o)), Ok(Value::Object(n))) = (serde_json::to_value(old), serde_json::to_value(new))
    else {
        return;
    };
    for (k, ov) in &o {
        if skip.contains(&k.as_str()) {
            continue;
        }
        let nv = n.get(k).unwrap_or(&Value::Null);
        if ov != nv {
            out.push(Change {
                path: path.to_string(),
                kind: ChangeKind::Changed {
                    field: k.clone(),
                    old: value_text(ov),
                    new: value_text(nv),
                },
                nodes: vec![],
            });
        }
    }
}

fn keyed<'a, T, K: Eq + std::hash::Hash>(
    old: &'a [T],
    new: &'a [T],
    key: impl Fn(&T) -> K,
    mut on_pair: impl FnMut(&'a T, &'a T),
    mut on_added: impl FnMut(&'a T),
    mut on_removed: impl FnMut(&'a T),
) {
    let new_by_key: HashMap<K, &'a T> = new.iter().map(|n| (key(n), n)).collect();
    let mut old_keys = HashSet::with_capacity(old.len());
    for o in old {
        let k = key(o);
        match new_by_key.get(&k) {
            Some(n) => on_pair(o, n),
            None => on_removed(o),
        }
        old_keys.insert(k);
    }
    for n in new {
        if !old_keys.contains(&key(n)) {
            on_added(n);
        }
    }
}

fn simple(path: String, kind: ChangeKind) -> Change {
    Change {
        path,
        kind,
        nodes: vec![],
    }
}

/// Changes between two views of one director.
pub fn diff_config(old: &Config, new: &Config) -> Vec<Change> {
    diff_views(old, new, &mut VsMemo::new())
}

/// The changes of each pair of virtual servers compared so far, by their addresses (the
/// configurations compared are borrowed for as long as the memo lives).
type VsMemo = HashMap<(*const VirtualServer, *const VirtualServer), VsChanges>;

/// How one virtual server changed: its own settings and real servers changed, real
/// servers added and removed (listed after every change, as for other items).
struct VsChanges {
    changed: Vec<Change>,
    added: Vec<String>,
    removed: Vec<String>,
}

fn vs_changes(o: &VirtualServer, n: &VirtualServer) -> VsChanges {
    let mut c = VsChanges {
        changed: Vec::new(),
        added: Vec::new(),
        removed: Vec::new(),
    };
    let vp = format!("virtual_server {}", o.key);
    let (oh, nh) = (VsHead::of(o), VsHead::of(n));
    if oh != nh {
        fields(&vp, &oh, &nh, &[], &mut c.changed);
    }
    let mut rs_pairs = Vec::new();
    keyed(
        &o.real_servers,
        &n.real_servers,
        |r| (r.ip, r.port),
        |a, b| {
            if a != b {
                rs_pairs.push((a, b))
            }
        },
        |b| {
            c.added
                .push(format!("{vp} real_server {} weight {}", rs_name(b), b.weight))
        },
        |a| c.removed.push(format!("{vp} real_server {}", rs_name(a))),
    );
    for (a, b) in rs_pairs {
        let rp = format!("{vp} real_server {}", rs_name(a));
        let (ah, bh) = (RsHead::of(a), RsHead::of(b));
        if ah != bh {
            fields(&rp, &ah, &bh, &[], &mut c.changed);
        }
        if a.checkers != b.checkers {
            let kinds = |v: &[Checker]| {
                v.iter()
                    .map(|c| c.kind.keyword().to_string())
                    .collect::<Vec<_>>()
                    .join("+")
            };
            c.changed.push(simple(
                rp,
                ChangeKind::Changed {
                    field: "checkers".into(),
                    old: kinds(&a.checkers),
                    new: format!("{} (settings changed)", kinds(&b.checkers)),
                },
            ));
        }
    }
    c
}

/// A virtual server's own settings (its key and real servers left out), with the
/// model's field names: diffed field by field without serialising its real servers.
#[derive(PartialEq, Serialize)]
struct VsHead<'a> {
    protocol: &'a Protocol,
    lb_algo: &'a Scheduler,
    lb_kind: &'a Forwarding,
    persistence_timeout: &'a Option<u32>,
    persistence_granularity: &'a Option<std::net::IpAddr>,
    ops: &'a bool,
    sched_flags: &'a SchedFlags,
    sorry_server: &'a Option<SorryServer>,
    sorry_server_inhibit: &'a bool,
    quorum: &'a u32,
    hysteresis: &'a u32,
    quorum_up: &'a Option<Script>,
    quorum_down: &'a Option<Script>,
    omega: &'a bool,
    ha_suspend: &'a bool,
    extra: &'a Vec<RawStmt>,
}

impl<'a> VsHead<'a> {
    fn of(v: &'a VirtualServer) -> Self {
        // Destructured whole: a field added to the model must be placed here or skipped.
        let VirtualServer {
            key: _,
            protocol,
            lb_algo,
            lb_kind,
            persistence_timeout,
            persistence_granularity,
            ops,
            sched_flags,
            sorry_server,
            sorry_server_inhibit,
            quorum,
            hysteresis,
            quorum_up,
            quorum_down,
            omega,
            ha_suspend,
            real_servers: _,
            extra,
        } = v;
        VsHead {
            protocol,
            lb_algo,
            lb_kind,
            persistence_timeout,
            persistence_granularity,
            ops,
            sched_flags,
            sorry_server,
            sorry_server_inhibit,
            quorum,
            hysteresis,
            quorum_up,
            quorum_down,
            omega,
            ha_suspend,
            extra,
        }
    }
}

/// A real server's own settings (address and checkers left out).
#[derive(PartialEq, Serialize)]
struct RsHead<'a> {
    weight: &'a u32,
    lb_kind: &'a Option<Forwarding>,
    inhibit_on_failure: &'a bool,
    notify_up: &'a Option<Script>,
    notify_down: &'a Option<Script>,
    extra: &'a Vec<RawStmt>,
}

impl<'a> RsHead<'a> {
    fn of(r: &'a RealServer) -> Self {
        let RealServer {
            ip: _,
            port: _,
            weight,
            lb_kind,
            inhibit_on_failure,
            notify_up,
            notify_down,
            checkers: _,
            extra,
        } = r;
        RsHead {
            weight,
            lb_kind,
            inhibit_on_failure,
            notify_up,
            notify_down,
            extra,
        }
    }
}

fn diff_views(old: &Config, new: &Config, memo: &mut VsMemo) -> Vec<Change> {
    let mut out = Vec::new();
    if old.global != new.global {
        fields("global_defs", &old.global, &new.global, &[], &mut out);
    }
    let mut added = Vec::new();
    let mut removed = Vec::new();
    let mut pairs = Vec::new();

    keyed(
        &old.instances,
        &new.instances,
        |i| i.name.clone(),
        |o, n| {
            if o == n {
                return;
            }
            pairs.push((
                format!("vrrp_instance {}", o.name),
                serde_json::to_value(o),
                serde_json::to_value(n),
            ))
        },
        |n| added.push(format!("vrrp_instance {}", n.name)),
        |o| removed.push(format!("vrrp_instance {}", o.name)),
    );
    keyed(
        &old.track_files,
        &new.track_files,
        |i| i.name.clone(),
        |o, n| {
            if o == n {
                return;
            }
            pairs.push((
                format!("track_file {}", o.name),
                serde_json::to_value(o),
                serde_json::to_value(n),
            ))
        },
        |n| added.push(format!("track_file {}", n.name)),
        |o| removed.push(format!("track_file {}", o.name)),
    );
    keyed(
        &old.track_processes,
        &new.track_processes,
        |i| i.name.clone(),
        |o, n| {
            if o == n {
                return;
            }
            pairs.push((
                format!("vrrp_track_process {}", o.name),
                serde_json::to_value(o),
                serde_json::to_value(n),
            ))
        },
        |n| added.push(format!("vrrp_track_process {}", n.name)),
        |o| removed.push(format!("vrrp_track_process {}", o.name)),
    );
    keyed(
        &old.vrrp_scripts,
        &new.vrrp_scripts,
        |i| i.name.clone(),
        |o, n| {
            if o == n {
                return;
            }
            pairs.push((
                format!("vrrp_script {}", o.name),
                serde_json::to_value(o),
                serde_json::to_value(n),
            ))
        },
        |n| added.push(format!("vrrp_script {}", n.name)),
        |o| removed.push(format!("vrrp_script {}", o.name)),
    );
    keyed(
        &old.sync_groups,
        &new.sync_groups,
        |i| i.name.clone(),
        |o, n| {
            if o == n {
                return;
            }
            pairs.push((
                format!("vrrp_sync_group {}", o.name),
                serde_json::to_value(o),
                serde_json::to_value(n),
            ))
        },
        |n| added.push(format!("vrrp_sync_group {}", n.name)),
        |o| removed.push(format!("vrrp_sync_group {}", o.name)),
    );
    keyed(
        &old.vs_groups,
        &new.vs_groups,
        |i| i.name.clone(),
        |o, n| {
            if o == n {
                return;
            }
            pairs.push((
                format!("virtual_server_group {}", o.name),
                serde_json::to_value(o),
                serde_json::to_value(n),
            ))
        },
        |n| added.push(format!("virtual_server_group {}", n.name)),
        |o| removed.push(format!("virtual_server_group {}", o.name)),
    );
    for (path, o, n) in pairs {
        if let (Ok(o), Ok(n)) = (o, n) {
            fields(&path, &o, &n, &["name"], &mut out);
        }
    }

    let mut vs_pairs = Vec::new();
    keyed(
        &old.virtual_servers,
        &new.virtual_servers,
        |v| v.key.clone(),
        |o, n| {
            // Most virtual servers of a large configuration do not change.
            if o != n {
                vs_pairs.push((o, n))
            }
        },
        |n| added.push(format!("virtual_server {}", n.key)),
        |o| removed.push(format!("virtual_server {}", o.key)),
    );
    for (o, n) in vs_pairs {
        let id = (std::sync::Arc::as_ptr(o), std::sync::Arc::as_ptr(n));
        let found = memo.entry(id).or_insert_with(|| vs_changes(o, n));
        out.extend(found.changed.iter().cloned());
        added.extend(found.added.iter().cloned());
        removed.extend(found.removed.iter().cloned());
    }
    if old.extra != new.extra {
        out.push(simple(
            "top-level unmodelled blocks".into(),
            ChangeKind::Changed {
                field: "content".into(),
                old: format!("{} blocks", old.extra.len()),
                new: format!("{} blocks", new.extra.len()),
            },
        ));
    }
    out.extend(added.into_iter().map(|p| simple(p, ChangeKind::Added)));
    out.extend(removed.into_iter().map(|p| simple(p, ChangeKind::Removed)));
    out
}

/// A one-line summary: counts of added, removed and changed items.
pub fn summary(changes: &[Change]) -> String {
    if changes.is_empty() {
        return "no change".into();
    }
    let count = |f: fn(&ChangeKind) -> bool| changes.iter().filter(|c| f(&c.kind)).count();
    format!(
        "{} added, {} removed, {} changed",
        count(|k| matches!(k, ChangeKind::Added)),
        count(|k| matches!(k, ChangeKind::Removed)),
        count(|k| matches!(k, ChangeKind::Changed { .. }))
    )
}

/// The lines `hactl propose` prints for a change (each change as [`Change`]'s display:
/// `+ PATH`, `- PATH`, `~ PATH: ...`): every change when there are at most `max` (or
/// `full`), else a count per kind of block and operation, the first `max` changes, and how
/// many more there are.
pub fn listing(changes: &[String], max: usize, full: bool) -> Vec<String> {
    if full || changes.len() <= max {
        return changes.to_vec();
    }
    let mut counts: std::collections::BTreeMap<(&str, &str), usize> = Default::default();
    let mut by_op = [0usize; 3];
    for c in changes {
        let mut words = c.split_whitespace();
        let (op, i) = match words.next() {
            Some("+") => ("added", 0),
            Some("-") => ("removed", 1),
            _ => ("changed", 2),
        };
        by_op[i] += 1;
        let block = words.next().unwrap_or("").trim_end_matches(':');
        *counts.entry((block, op)).or_default() += 1;
    }
    let mut out = vec![format!(
        "{} changes ({} added, {} removed, {} changed):",
        changes.len(),
        by_op[0],
        by_op[1],
        by_op[2]
    )];
    for ((block, op), n) in counts {
        out.push(format!("  {block}: {n} {op}"));
    }
    out.push(format!("the first {max}:"));
    out.extend(changes.iter().take(max).map(|c| format!("  {c}")));
    out.push(format!(
        "... and {} more (--full lists them all)",
        changes.len() - max
    ));
    out
}

/// One line naming the first `max` changes (and how many more), for history listings.
pub fn headline(changes: &[Change], max: usize) -> String {
    if changes.is_empty() {
        return "no change".into();
    }
    let mut parts: Vec<String> = changes.iter().take(max).map(|c| c.to_string()).collect();
    if changes.len() > max {
        parts.push(format!("and {} more ({})", changes.len() - max, summary(changes)));
    }
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(i: usize) -> Change {
        Change {
            path: format!("virtual_server 198.18.120.{i}:80"),
            kind: ChangeKind::Added,
            nodes: vec![],
        }
    }

    #[test]
    fn a_large_change_is_listed_as_counts_and_the_first_ones() {
        let mut changes: Vec<Change> = (0..120).map(change).collect();
        changes.push(Change {
            path: "vrrp_instance VI_1".into(),
            kind: ChangeKind::Changed {
                field: "priority".into(),
                old: "100".into(),
                new: "90".into(),
            },
            nodes: vec!["lvs02".into()],
        });
        let changes: Vec<String> = changes.iter().map(|c| c.to_string()).collect();
        let lines = listing(&changes, 50, false);
        assert_eq!(lines[0], "121 changes (120 added, 0 removed, 1 changed):");
        assert!(
            lines.contains(&"  virtual_server: 120 added".to_string()),
            "{lines:?}"
        );
        assert!(
            lines.contains(&"  vrrp_instance: 1 changed".to_string()),
            "{lines:?}"
        );
        assert_eq!(lines.last().unwrap(), "... and 71 more (--full lists them all)");
        assert_eq!(lines.len(), 1 + 2 + 1 + 50 + 1);
        assert_eq!(
            listing(&changes, 50, true).len(),
            121,
            "--full lists every change"
        );
        assert_eq!(
            listing(&changes[..3], 50, false).len(),
            3,
            "a small change is listed whole"
        );
    }
    /// Every kind of change, on all directors and on one: the lines `hactl` prints (pinned:
    /// the diff compares settings without serialising real servers, and once per pair of
    /// virtual servers shared by several directors' views).
    #[test]
    fn every_kind_of_change_is_listed_once_with_its_directors() {
        let before = r#"
global_defs { router_id lvs }
vrrp_instance VI_1 {
    state BACKUP
    interface ens33
    virtual_router_id 51
    @lvs01 priority 100
    @lvs02 priority 90
    virtual_ipaddress { 198.18.116.134 }
}
virtual_server 198.18.116.134 80 {
    lb_algo rr
    lb_kind DR
    real_server 198.18.116.131 80 {
        weight 1
        TCP_CHECK {
            connect_timeout 3
        }
    }
    real_server 198.18.116.132 80 { weight 1 }
    real_server 198.18.116.133 80 { weight 1 }
}
virtual_server 198.18.116.134 443 {
    lb_algo rr
    lb_kind DR
    real_server 198.18.116.131 443 { weight 1 }
}
"#;
        let after = r#"
global_defs { router_id lvs }
vrrp_instance VI_1 {
    state BACKUP
    interface ens33
    virtual_router_id 51
    @lvs01 priority 100
    @lvs02 priority 80
    virtual_ipaddress { 198.18.116.134 }
}
virtual_server 198.18.116.134 80 {
    lb_algo wrr
    lb_kind DR
    persistence_timeout 60
    real_server 198.18.116.131 80 {
        weight 2
        TCP_CHECK {
            connect_timeout 5
        }
    }
    @lvs01 real_server 198.18.116.132 80 { weight 1 }
    real_server 198.18.116.134 80 { weight 3 inhibit_on_failure }
}
virtual_server 198.18.116.134 8080 {
    lb_algo rr
    lb_kind DR
    real_server 198.18.116.131 8080 { weight 1 }
}
"#;
        let load = |t: &str| crate::cluster::load_str("c.conf", t, &[]).1.cluster;
        let lines: Vec<String> = diff(&load(before), &load(after))
            .iter()
            .map(|c| c.to_string())
            .collect();
        let want = [
            "~ virtual_server 198.18.116.134:80: lb_algo Rr -> Wrr",
            "~ virtual_server 198.18.116.134:80: persistence_timeout (none) -> 60",
            "~ virtual_server 198.18.116.134:80 real_server 198.18.116.131:80: weight 1 -> 2",
            "~ virtual_server 198.18.116.134:80 real_server 198.18.116.131:80: checkers TCP_CHECK -> TCP_CHECK (settings changed)",
            "+ virtual_server 198.18.116.134:8080",
            "+ virtual_server 198.18.116.134:80 real_server 198.18.116.134:80 weight 3",
            "- virtual_server 198.18.116.134:443",
            "- virtual_server 198.18.116.134:80 real_server 198.18.116.132:80 (on (unnamed directors), lvs02)",
            "- virtual_server 198.18.116.134:80 real_server 198.18.116.133:80",
            "~ vrrp_instance VI_1: priority 90 -> 80 (on lvs02)",
        ];
        assert_eq!(lines, want);
    }
}

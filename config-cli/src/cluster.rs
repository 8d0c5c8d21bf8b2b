//! The cluster configuration: one keepalived.conf whose `@NODE` lines give each director
//! its own view. [`ClusterConfig`] holds each named director's [`Config`] and the view of
//! a director named in no condition; [`merge`] builds one from per-director configs
//! (`hactl import`) and [`ClusterConfig::print`] writes it back with `@` lines.

use crate::diag::{Diagnostic, Diagnostics};
use crate::lower::SpanIndex;
use crate::model::Config;
use crate::printer::{self, Node};
use crate::syntax::{parse_str, Cond, Parsed, Span, Stmt};
use crate::validate;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterConfig {
    /// Directors named in `@` conditions whose view differs from `default`.
    pub nodes: BTreeMap<String, Config>,
    /// What a director named in no condition sees.
    pub default: Config,
}

/// A cluster file parsed, lowered for every director, and validated.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub cluster: ClusterConfig,
    pub diags: Diagnostics,
    /// Span index per view (`None`: the default view).
    pub spans: BTreeMap<Option<String>, SpanIndex>,
}

fn collect_nodes(stmts: &[Stmt], out: &mut BTreeSet<String>) {
    for s in stmts {
        if let Some(c) = &s.cond {
            out.insert(c.node().to_string());
        }
        collect_nodes(s.children(), out);
    }
}

/// Lowers and validates every view, the views spread over the machine's cores (each view
/// lowers the whole file: with 10,000s of blocks and several `@node` views this is most of
/// `hactl check`'s and a proposal's time). Results in the order of `views`.
fn lower_views(stmts: &[Stmt], views: &[Option<String>]) -> Vec<(crate::lower::Lowered, Diagnostics)> {
    let shared = (views.len() > 1).then(|| crate::lower::SharedBlocks::new(stmts));
    let one = |v: &Option<String>| {
        let lowered = crate::lower::lower_with(stmts, v.as_deref(), shared.as_ref());
        let checked = validate::validate(&lowered.config, &lowered.spans);
        (lowered, checked)
    };
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(views.len());
    if threads <= 1 {
        return views.iter().map(one).collect();
    }
    let chunk = views.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = views
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().map(one).collect::<Vec<_>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| match h.join() {
                Ok(v) => v,
                // A panic in lowering is a bug: surface it where it happened.
                Err(e) => std::panic::resume_unwind(e),
            })
            .collect()
    })
}

/// Diagnostics of several views (by index; 0 is the view of directors named in no `@`
/// line), each kept once with the views that produced it.
#[derive(Default)]
pub(crate) struct ViewDiags {
    seen: Vec<(Diagnostic, BTreeSet<usize>)>,
    at: std::collections::HashMap<Diagnostic, usize>,
}

impl ViewDiags {
    pub(crate) fn note(&mut self, d: Diagnostic, view: usize) {
        match self.at.get(&d) {
            Some(&i) => {
                self.seen[i].1.insert(view);
            }
            None => {
                self.at.insert(d.clone(), self.seen.len());
                self.seen.push((d, BTreeSet::from([view])));
            }
        }
    }

    /// View `to` starts as a copy of view `from`: it has every diagnostic `from` has.
    pub(crate) fn fork(&mut self, from: usize, to: usize) {
        for (_, set) in &mut self.seen {
            if set.contains(&from) {
                set.insert(to);
            }
        }
    }

    /// The diagnostics of the file (`parsed`: the lexer's and parser's), each naming the
    /// directors it concerns when not all of `views` have it, sorted by place.
    pub(crate) fn finish(self, parsed: Diagnostics, views: &[Option<String>]) -> Diagnostics {
        let mut diags = parsed;
        for (mut d, set) in self.seen {
            // Errors only in the view of directors named in no `@` line matter only if
            // such a director exists: `--node`/membership names it, and then it is checked
            // in its own view.
            if set.len() == 1 && set.contains(&0) && views.len() > 1 && d.is_error() {
                d.severity = crate::diag::Severity::Warning;
            }
            if set.len() != views.len() && d.node.is_none() {
                let named: Vec<String> = set
                    .iter()
                    .filter_map(|&i| views.get(i))
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .map(|v| v.clone().unwrap_or_else(|| "(unnamed directors)".into()))
                    .collect();
                d.node = Some(named.join(", "));
            }
            diags.push(d);
        }
        diags.sorted()
    }
}

/// Names of the directors a cluster file mentions in `@` conditions.
pub fn node_names(stmts: &[Stmt]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    collect_nodes(stmts, &mut out);
    out
}

impl ClusterConfig {
    /// One director's configuration.
    pub fn view(&self, node: &str) -> &Config {
        self.nodes.get(node).unwrap_or(&self.default)
    }

    /// Lowers and validates every view of a parsed cluster file. `extra_nodes` are
    /// directors known from elsewhere (Raft membership) that must get a valid view too.
    pub fn from_parsed(parsed: &Parsed, extra_nodes: &[String]) -> Loaded {
        let mut names = node_names(&parsed.stmts);
        names.extend(extra_nodes.iter().cloned());
        let mut views: Vec<Option<String>> = vec![None];
        views.extend(names.iter().cloned().map(Some));

        let mut notes = ViewDiags::default();
        let mut lowered = lower_views(&parsed.stmts, &views);
        for (i, (l, checked)) in lowered.iter_mut().enumerate() {
            for d in std::mem::take(&mut l.diags)
                .into_iter()
                .chain(std::mem::take(checked))
            {
                notes.note(d, i);
            }
        }
        let cross: BTreeMap<String, (&Config, &SpanIndex)> = views
            .iter()
            .zip(&lowered)
            .filter_map(|(v, (l, _))| Some((v.clone()?, (&l.config, &l.spans))))
            .collect();
        for d in validate::cross_node(&cross) {
            notes.note(d, 0);
        }
        let diags = notes.finish(parsed.diags.clone(), &views);
        let mut cluster = ClusterConfig::default();
        let mut spans = BTreeMap::new();
        for (v, (l, _)) in views.into_iter().zip(lowered) {
            match &v {
                None => cluster.default = l.config,
                Some(n) => {
                    cluster.nodes.insert(n.clone(), l.config);
                }
            }
            spans.insert(v, l.spans);
        }
        cluster.normalize();
        Loaded {
            cluster,
            diags,
            spans,
        }
    }

    /// Drops named views identical to the default view (they add nothing).
    pub fn normalize(&mut self) {
        let ClusterConfig { nodes, default } = self;
        nodes.retain(|_, c| c != default);
    }

    pub fn print(&self) -> Result<String, MergeError> {
        self.print_blocks(true)
    }

    /// The cluster file, without the `global_defs` block unless `with_global` (a patch
    /// leaves the global settings as they are unless it names them).
    pub fn print_blocks(&self, with_global: bool) -> Result<String, MergeError> {
        let nodes = |c: &Config| {
            let mut v = printer::nodes(c);
            if !with_global {
                v.retain(|n| n.words.first().map(String::as_str) != Some("global_defs"));
            }
            v
        };
        let mut views: Vec<(Option<String>, Vec<Node>)> = vec![(None, nodes(&self.default))];
        for (n, c) in &self.nodes {
            views.push((Some(n.clone()), nodes(c)));
        }
        let merged = factor(&views, &mut Vec::new())?;
        Ok(render_cluster(&merged))
    }
}

/// A difference between directors that one keepalived.conf cannot express.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MergeError {
    /// Lines from the top block down to the difference.
    pub path: Vec<String>,
    /// The directors that have the block, and those that do not.
    pub have: Vec<String>,
    pub lack: Vec<String>,
    /// Span-index key of the nearest enclosing entity, to locate it in each source.
    pub origin: Option<String>,
}

impl std::fmt::Display for MergeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}` is on {} but not on {}: a block cannot differ between directors (only single lines can, as `@node` lines)",
            self.path.join(" > "),
            self.have.join(", "),
            self.lack.join(", ")
        )
    }
}

/// A merged line: the node, its condition, its merged block.
#[derive(Clone, Debug)]
struct CNode {
    words: Vec<String>,
    cond: Option<Cond>,
    block: Option<Vec<CNode>>,
}

fn view_name(v: &Option<String>) -> String {
    v.clone().unwrap_or_else(|| "directors named in no @ line".into())
}

fn factor(views: &[(Option<String>, Vec<Node>)], path: &mut Vec<String>) -> Result<Vec<CNode>, MergeError> {
    // Keys in order of first appearance; each view's nodes by key (a file can have
    // 10,000s of top-level blocks).
    let mut keys: Vec<&str> = Vec::new();
    let mut known = std::collections::HashSet::new();
    let by_key: Vec<std::collections::HashMap<&str, &Node>> = views
        .iter()
        .map(|(_, nodes)| {
            let mut m = std::collections::HashMap::with_capacity(nodes.len());
            for n in nodes {
                m.entry(n.key.as_str()).or_insert(n);
            }
            m
        })
        .collect();
    for (_, nodes) in views {
        for n in nodes {
            if known.insert(n.key.as_str()) {
                keys.push(&n.key);
            }
        }
    }
    let mut out = Vec::new();
    for key in keys {
        let per: Vec<(&Option<String>, Option<&Node>)> = views
            .iter()
            .zip(&by_key)
            .map(|((v, _), m)| (v, m.get(key).copied()))
            .collect();
        let any = per.iter().find_map(|(_, n)| *n).expect("key came from some view");
        if any.block.is_some() {
            let lack: Vec<String> = per
                .iter()
                .filter(|(_, n)| n.is_none_or(|n| n.block.is_none()))
                .map(|(v, _)| view_name(v))
                .collect();
            if !lack.is_empty() {
                let mut p = path.clone();
                p.push(any.words.join(" "));
                return Err(MergeError {
                    path: p,
                    have: per
                        .iter()
                        .filter(|(_, n)| n.is_some())
                        .map(|(v, _)| view_name(v))
                        .collect(),
                    lack,
                    origin: any.origin.clone(),
                });
            }
            let children: Vec<(Option<String>, Vec<Node>)> = per
                .iter()
                .map(|(v, n)| ((*v).clone(), n.and_then(|n| n.block.clone()).unwrap_or_default()))
                .collect();
            path.push(any.words.join(" "));
            let merged = factor(&children, path).map_err(|mut e| {
                if e.origin.is_none() {
                    e.origin = any.origin.clone();
                }
                e
            })?;
            path.pop();
            out.push(CNode {
                words: any.words.clone(),
                cond: None,
                block: Some(merged),
            });
            continue;
        }
        let first = per[0].1.map(|n| &n.words);
        if per.iter().all(|(_, n)| n.map(|n| &n.words) == first) && first.is_some() {
            out.push(CNode {
                words: any.words.clone(),
                cond: None,
                block: None,
            });
            continue;
        }
        // The default view is first; its value is the base line, named views override.
        let (default_view, default_node) = &per[0];
        let base = if default_view.is_none() {
            default_node.map(|n| n.words.clone())
        } else {
            None
        };
        if let Some(b) = &base {
            out.push(CNode {
                words: b.clone(),
                cond: None,
                block: None,
            });
        }
        let lacking: Vec<String> = per
            .iter()
            .filter(|(v, n)| v.is_some() && n.is_none() && base.is_some())
            .map(|(v, _)| view_name(v))
            .collect();
        if !lacking.is_empty() {
            let mut p = path.clone();
            p.push(any.words.join(" "));
            return Err(MergeError {
                path: p,
                have: vec![view_name(&None)],
                lack: lacking,
                origin: None,
            });
        }
        for (v, n) in &per {
            if let (Some(name), Some(n)) = (v, n) {
                if Some(&n.words) != base.as_ref() {
                    out.push(CNode {
                        words: n.words.clone(),
                        cond: Some(Cond::Only(name.clone())),
                        block: None,
                    });
                }
            }
        }
    }
    Ok(out)
}

fn render_cluster(nodes: &[CNode]) -> String {
    let mut out = String::new();
    render_level(nodes, 0, &mut out);
    out
}

fn render_level(nodes: &[CNode], depth: usize, out: &mut String) {
    for (i, n) in nodes.iter().enumerate() {
        if depth == 0 && i > 0 {
            out.push('\n');
        }
        out.push_str(&"    ".repeat(depth));
        if let Some(c) = &n.cond {
            match c {
                Cond::Only(x) => out.push_str(&format!("@{x} ")),
                Cond::Except(x) => out.push_str(&format!("@^{x} ")),
            }
        }
        let words: Vec<String> = n.words.iter().map(|w| printer::quote(w)).collect();
        out.push_str(&words.join(" "));
        match &n.block {
            Some(children) => {
                out.push_str(" {\n");
                render_level(children, depth + 1, out);
                out.push_str(&"    ".repeat(depth));
                out.push_str("}\n");
            }
            None => out.push('\n'),
        }
    }
}

/// One director's input to [`merge`]: its name, configuration, and where it came from.
pub struct NodeInput<'a> {
    pub name: String,
    pub config: Config,
    pub spans: &'a SpanIndex,
    pub locate: &'a dyn Fn(Span) -> String,
    pub file: String,
}

/// Merges per-director configurations into one cluster configuration (`hactl import`).
/// Differences in single lines become `@node` lines; a block present on some directors
/// only is an error naming each director's file and line.
pub fn merge(inputs: &[NodeInput<'_>]) -> Result<(ClusterConfig, String), Diagnostic> {
    let views: Vec<(Option<String>, Vec<Node>)> = inputs
        .iter()
        .map(|i| (Some(i.name.clone()), printer::nodes(&i.config)))
        .collect();
    let merged = factor(&views, &mut Vec::new()).map_err(|e| {
        let mut msg = e.to_string();
        let mut places = Vec::new();
        for i in inputs {
            let loc = e
                .origin
                .as_ref()
                .and_then(|o| i.spans.get(o))
                .map(|s| (i.locate)(*s))
                .unwrap_or_else(|| format!("{} (absent)", i.file));
            places.push(format!("{}: {loc}", i.name));
        }
        msg.push_str(&format!(" [{}]", places.join("; ")));
        Diagnostic::error(None, msg)
    })?;
    let text = render_cluster(&merged);
    // The merged text must give every director exactly its own configuration back.
    let parsed = parse_str("<merged>", &text);
    let loaded = ClusterConfig::from_parsed(&parsed, &[]);
    for i in inputs {
        if loaded.cluster.view(&i.name) != &i.config {
            return Err(Diagnostic::error(
                None,
                format!(
                    "internal error: the merged file does not reproduce director {}'s configuration",
                    i.name
                ),
            ));
        }
    }
    let mut cluster = loaded.cluster;
    for i in inputs {
        cluster.nodes.insert(i.name.clone(), i.config.clone());
    }
    cluster.normalize();
    Ok((cluster, text))
}

/// Parses and lowers a cluster file from disk (with its includes).
pub fn load_file(path: &std::path::Path, extra_nodes: &[String]) -> (Parsed, Loaded) {
    let parsed = crate::syntax::parse_file(path, &crate::syntax::FsLoader);
    let loaded = ClusterConfig::from_parsed(&parsed, extra_nodes);
    (parsed, loaded)
}

/// Parses and lowers cluster text received as a whole (API bodies, tests).
pub fn load_str(name: &str, text: &str, extra_nodes: &[String]) -> (Parsed, Loaded) {
    let parsed = parse_str(name, text);
    let loaded = ClusterConfig::from_parsed(&parsed, extra_nodes);
    (parsed, loaded)
}

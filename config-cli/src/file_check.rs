//! `hactl check`: a cluster file checked in one pass, statement by statement as it is
//! parsed, so neither the file's tree nor its 10,000s of virtual servers are ever all
//! held: a virtual server is lowered, validated and dropped, only its key is kept (to find
//! duplicates). Every other top-level block (global settings, VRRP, groups) is small and
//! is lowered into each director's view as [`ClusterConfig::from_parsed`] does.
//!
//! The diagnostics are those of parsing the file and [`ClusterConfig::from_parsed`] (a
//! test holds the two to it). Views appear as their names do: a director first named at
//! statement k saw, up to k, exactly what a director named nowhere saw, so its view starts
//! as a copy of that one.
//!
//! [`ClusterConfig::from_parsed`]: crate::cluster::ClusterConfig::from_parsed

use crate::cluster::{node_names, ViewDiags};
use crate::diag::Diagnostics;
use crate::lower::{self, ViewLowering};
use crate::model::{GlobalDefs, VsKey};
use crate::syntax::parser::StmtStream;
use crate::syntax::{SourceLoader, SourceMap, Span, Stmt};
use crate::validate;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::Path;

/// What `hactl check` reports: the files read and every diagnostic, sorted by place.
pub struct FileCheck {
    pub sources: SourceMap,
    pub diags: Diagnostics,
}

/// Checks a cluster file and its includes for every director's view; `extra_nodes` are
/// directors that get a view though no `@` line names them.
pub fn check_file(path: &Path, loader: &dyn SourceLoader, extra_nodes: &[String]) -> FileCheck {
    let mut stream = StmtStream::open(path, loader);
    let mut views = Views::new(extra_nodes);
    while let Some(s) = stream.next_stmt() {
        views.statement(&s);
    }
    let (sources, parsed) = stream.finish();
    FileCheck {
        sources,
        diags: views.finish(parsed),
    }
}

/// [`check_file`] of text without includes.
pub fn check_str(name: &str, text: &str, extra_nodes: &[String]) -> FileCheck {
    let loader = crate::syntax::MemLoader::new().with(name, text);
    check_file(Path::new(name), &loader, extra_nodes)
}

/// Every view being checked, by index (0: directors named in no `@` line).
struct Views {
    names: Vec<Option<String>>,
    /// Each view lowered so far, virtual servers left out.
    lowering: Vec<ViewLowering>,
    notes: ViewDiags,
    /// Keys of the virtual servers every view has.
    common_keys: HashSet<VsKey>,
    /// Keys of the virtual servers only some views have, by view.
    own_keys: Vec<HashSet<VsKey>>,
    /// `virtual_server group NAME` blocks (rare): where, and the views that have them; the
    /// group may be defined later in the file, so they are checked at the end.
    group_refs: Vec<(VsKey, Option<Span>, BTreeSet<usize>)>,
    /// What virtual servers hold that hanode does not run, and the views that have it:
    /// decided at the end, against each view's `hanode_ignore` (global_defs may come later).
    not_run: Vec<(crate::diag::Diagnostic, BTreeSet<usize>)>,
}

impl Views {
    fn new(extra_nodes: &[String]) -> Self {
        let mut views = Views {
            names: vec![None],
            lowering: vec![ViewLowering::new(None, GlobalDefs::default())],
            notes: ViewDiags::default(),
            common_keys: HashSet::new(),
            own_keys: vec![HashSet::new()],
            group_refs: Vec::new(),
            not_run: Vec::new(),
        };
        let extra: BTreeSet<&String> = extra_nodes.iter().collect();
        for n in extra {
            views.fork(n);
        }
        views
    }

    /// A view for director `name`, first named now: a copy of the unnamed directors' view.
    fn fork(&mut self, name: &str) {
        let to = self.names.len();
        self.names.push(Some(name.to_string()));
        self.lowering.push(self.lowering[0].fork(Some(name)));
        self.own_keys.push(self.own_keys[0].clone());
        self.notes.fork(0, to);
        for (_, _, set) in &mut self.group_refs {
            if set.contains(&0) {
                set.insert(to);
            }
        }
        for (_, set) in &mut self.not_run {
            if set.contains(&0) {
                set.insert(to);
            }
        }
    }

    fn statement(&mut self, s: &Stmt) {
        for name in node_names(std::slice::from_ref(s)) {
            if !self.names.iter().any(|v| v.as_deref() == Some(name.as_str())) {
                self.fork(&name);
            }
        }
        if s.keyword() != "virtual_server" {
            for v in &mut self.lowering {
                if v.sees(s) {
                    v.statement(s, None);
                }
            }
        } else if lower::has_condition(s) {
            for v in 0..self.names.len() {
                if self.lowering[v].sees(s) {
                    self.virtual_server(s, self.names[v].clone().as_deref(), &[v]);
                }
            }
        } else {
            let all: Vec<usize> = (0..self.names.len()).collect();
            self.virtual_server(s, None, &all);
        }
    }

    /// A `virtual_server` block that reads the same in `views`, lowered as `node` sees it.
    fn virtual_server(&mut self, s: &Stmt, node: Option<&str>, views: &[usize]) {
        let (vs, diags, spans) = lower::virtual_server_alone(s, node);
        for d in diags {
            if d.not_run.is_some() {
                self.not_run.push((d, views.iter().copied().collect()));
                continue;
            }
            for &v in views {
                self.notes.note(d.clone(), v);
            }
        }
        let Some(vs) = vs else { return };
        let common = self.common_keys.contains(&vs.key);
        let (twice, have): (Vec<usize>, Vec<usize>) = views
            .iter()
            .partition(|&&v| common || self.own_keys[v].contains(&vs.key));
        for &v in &twice {
            self.notes
                .note(lower::duplicate_virtual_server(&vs.key, s.span()), v);
        }
        if have.len() == self.names.len() {
            self.common_keys.insert(vs.key.clone());
        } else {
            for &v in &have {
                self.own_keys[v].insert(vs.key.clone());
            }
        }
        let mut checked = Diagnostics::new();
        validate::virtual_server(&vs, &spans, &mut checked);
        for d in checked {
            for &v in &have {
                self.notes.note(d.clone(), v);
            }
        }
        if matches!(vs.key, VsKey::Group(_)) && !have.is_empty() {
            let here = spans.get(&format!("vs {}", vs.key)).copied();
            self.group_refs.push((vs.key, here, have.into_iter().collect()));
        }
    }

    fn finish(mut self, parsed: Diagnostics) -> Diagnostics {
        let lowered: Vec<lower::Lowered> = std::mem::take(&mut self.lowering)
            .into_iter()
            .map(ViewLowering::finish)
            .collect();
        for (d, set) in std::mem::take(&mut self.not_run) {
            for v in set {
                let global = &lowered[v].config.global;
                self.notes
                    .note(d.clone().accept_not_run(|kw| global.ignores(kw)), v);
            }
        }
        for (v, l) in lowered.iter().enumerate() {
            for d in l.diags.iter() {
                self.notes.note(d.clone(), v);
            }
            for d in validate::validate(&l.config, &l.spans) {
                self.notes.note(d, v);
            }
            let mut refs = Diagnostics::new();
            for (key, here, _) in self.group_refs.iter().filter(|(_, _, set)| set.contains(&v)) {
                let defined = |g: &str| l.config.vs_groups.iter().any(|x| x.name == g);
                validate::group_reference(key, *here, defined, &mut refs);
            }
            for d in refs {
                self.notes.note(d, v);
            }
        }
        let cross: BTreeMap<String, (&crate::model::Config, &lower::SpanIndex)> = self
            .names
            .iter()
            .zip(&lowered)
            .filter_map(|(n, l)| Some((n.clone()?, (&l.config, &l.spans))))
            .collect();
        for d in validate::cross_node(&cross) {
            self.notes.note(d, 0);
        }
        self.notes.finish(parsed, &self.names)
    }
}

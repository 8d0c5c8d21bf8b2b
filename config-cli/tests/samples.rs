//! Every sample configuration shipped with Debian's keepalived parses without a crash,
//! and nothing in it is dropped silently: each statement is either carried into the
//! model (it shows up when the model is printed) or reported.

use ha_config::cluster;
use ha_config::printer;
use ha_config::syntax::Stmt;
use std::collections::BTreeSet;
use std::path::PathBuf;

const SAMPLES: &str = "/usr/share/doc/keepalived/samples";

/// Keywords that legitimately vanish from the printed model: aliases printed under their
/// canonical name, defaults not printed, inherited settings printed on each checker.
const ALIASES: &[&str] = &[
    "nb_get_retry",
    "lvs_sched",
    "lvs_method",
    "version",
    "preempt",
    "broadcast",
    "delay_loop",
    "connect_timeout",
    "retry",
    "delay_before_retry",
    "virtualhost",
    "alpha",
    "inhibit_on_failure",
    "warmup",
    "auth_type",
    "quorum",
    "hysteresis",
    "interval",
    "rise",
    "fall",
    "smtp_alert",
];

fn samples() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(SAMPLES)
        .expect("Debian's keepalived package must be installed (the README's test command installs it)")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("keepalived.conf"))
        })
        .collect();
    v.sort();
    v
}

fn walk<'a>(stmts: &'a [Stmt], out: &mut Vec<&'a Stmt>) {
    for s in stmts {
        out.push(s);
        walk(s.children(), out);
    }
}

#[test]
fn debian_samples_parse_and_nothing_is_dropped_silently() {
    let files = samples();
    assert!(
        files.len() >= 20,
        "expected Debian's ~25 samples, found {}",
        files.len()
    );
    for f in files {
        let (parsed, loaded) = cluster::load_file(&f, &[]);
        let mut printed_words: BTreeSet<String> = BTreeSet::new();
        for view in std::iter::once(&loaded.cluster.default).chain(loaded.cluster.nodes.values()) {
            for line in printer::print(view).lines() {
                printed_words.extend(line.split_whitespace().map(|w| w.trim_matches('"').to_string()));
            }
        }
        let flagged: BTreeSet<(u32, u32)> = loaded
            .diags
            .iter()
            .filter_map(|d| d.span.map(|s| (s.file.0, s.line)))
            .collect();
        let mut all = Vec::new();
        walk(&parsed.stmts, &mut all);
        let mut silent = Vec::new();
        for s in all {
            let kw = s.keyword();
            let span = s.span();
            let printed = printed_words.contains(kw);
            let reported = flagged.contains(&(span.file.0, span.line));
            // Reported blocks cover their contents.
            if !printed
                && !reported
                && !ALIASES.contains(&kw)
                && !is_inside_reported(&parsed.stmts, s, &flagged)
            {
                silent.push(format!("{}: `{kw}`", parsed.sources.locate(span)));
            }
        }
        assert!(
            silent.is_empty(),
            "{}: dropped without a word:\n{}",
            f.display(),
            silent.join("\n")
        );
    }
}

fn is_inside_reported(stmts: &[Stmt], target: &Stmt, flagged: &BTreeSet<(u32, u32)>) -> bool {
    fn go(stmts: &[Stmt], target: &Stmt, flagged: &BTreeSet<(u32, u32)>, covered: bool) -> Option<bool> {
        for s in stmts {
            let sp = s.span();
            let here = covered || flagged.contains(&(sp.file.0, sp.line));
            if std::ptr::eq(s, target) {
                return Some(covered);
            }
            if let Some(r) = go(s.children(), target, flagged, here) {
                return Some(r);
            }
        }
        None
    }
    go(stmts, target, flagged, false).unwrap_or(false)
}

#[test]
fn samples_round_trip_through_the_printer() {
    for f in samples() {
        let (_, loaded) = cluster::load_file(&f, &[]);
        let text = match loaded.cluster.print() {
            Ok(t) => t,
            Err(e) => {
                // Only a file whose unnamed-director view is itself broken (e.g. a
                // vrrp_script whose only `script` lines are `@high`/`@low`) may fail, and
                // then check must have said so.
                assert!(
                    loaded
                        .diags
                        .iter()
                        .any(|d| d.node.as_deref() == Some("(unnamed directors)")),
                    "{}: {e}",
                    f.display()
                );
                continue;
            }
        };
        let (_, again) = cluster::load_str("printed.conf", &text, &[]);
        assert_eq!(
            again.cluster,
            loaded.cluster,
            "{} does not round-trip:\n{text}",
            f.display()
        );
    }
}

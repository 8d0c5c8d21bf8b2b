//! Reading keyword arguments with keepalived's rules and located diagnostics.

use crate::diag::{Diagnostic, Diagnostics};
use crate::model::{Dur, RawStmt, Script, ScriptUser};
use crate::syntax::keywords::{self, Section};
use crate::syntax::{Span, Stmt};
use std::net::IpAddr;
use std::str::FromStr;

/// Lowering context: the director being lowered and the diagnostics collected.
#[derive(Clone)]
pub struct Ctx {
    node: Option<String>,
    diags: Diagnostics,
    spans: SpanIndex,
    /// The priority keepalived gives the next rule written without one (IPv4, IPv6):
    /// 16384, then one less each time.
    next_rule_priority: [u32; 2],
}

/// Where model entities were written, for diagnostics found after lowering. Keys are
/// paths such as `instance VI_1`, `instance VI_1 priority`, `vs 1.2.3.4:80`,
/// `vs 198.18.0.1:80 rs 198.18.0.2:80`.
pub type SpanIndex = std::collections::BTreeMap<String, Span>;

impl Ctx {
    pub fn new(node: Option<&str>) -> Self {
        Ctx {
            node: node.map(str::to_string),
            diags: Diagnostics::new(),
            spans: SpanIndex::new(),
            next_rule_priority: [16_384; 2],
        }
    }

    /// The priority of a rule written without one (keepalived's, per family).
    pub fn next_rule_priority(&mut self, v6: bool) -> u32 {
        let p = &mut self.next_rule_priority[usize::from(v6)];
        let out = *p;
        *p = p.saturating_sub(1);
        out
    }

    pub fn finish(self) -> (Diagnostics, SpanIndex) {
        (self.diags, self.spans)
    }

    /// Records where an entity (or one of its settings) was written.
    pub fn mark(&mut self, key: impl Into<String>, span: Span) {
        self.spans.entry(key.into()).or_insert(span);
    }

    pub(crate) fn set_node(&mut self, node: Option<&str>) {
        self.node = node.map(str::to_string);
    }

    /// Whether this director sees statement `s` (its own line; not what is inside it).
    pub fn admits(&self, s: &Stmt) -> bool {
        s.cond.as_ref().is_none_or(|c| c.admits(self.node.as_deref()))
    }

    /// Statements this director sees.
    pub fn visible<'a>(&self, stmts: &'a [Stmt]) -> Vec<&'a Stmt> {
        stmts.iter().filter(|s| self.admits(s)).collect()
    }

    pub fn error(&mut self, span: Span, msg: impl Into<String>) {
        self.diags.error(span, msg);
    }

    pub fn warning(&mut self, span: Span, msg: impl Into<String>) {
        self.diags.warning(span, msg);
    }

    pub fn push(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    /// A keyword not handled by the section's lowering: kept verbatim if keepalived knows
    /// it, otherwise reported as unknown (with a suggestion) and ignored, as keepalived does.
    pub fn other(&mut self, section: Section, s: &Stmt) -> Option<RawStmt> {
        let kw = s.keyword();
        if let Some(dep) = keywords::deprecated(section, kw) {
            self.warning(s.span(), format!("`{kw}` is deprecated; use `{dep}`"));
        }
        if section == Section::Root && kw == "SSL" {
            // hanode uses `ca` (it verifies SSL_GET servers against it); say what it ignores.
            let unused: Vec<String> = s
                .block
                .iter()
                .flat_map(|b| b.stmts.iter())
                .map(|x| x.keyword().to_string())
                .filter(|k| k != "ca")
                .collect();
            if !unused.is_empty() {
                self.warning(
                    s.span(),
                    format!(
                        "`SSL`: hanode uses `ca` only (to verify SSL_GET servers); {} kept for export, not acted on",
                        unused.join(", ")
                    ),
                );
            }
            return Some(self.raw(s));
        }
        if keywords::is_known(section, kw) {
            self.push(Diagnostic::not_run(
                s.span(),
                kw,
                &format!(
                    "keepalived acts on it in {}, hanode keeps it for export only",
                    section.name()
                ),
            ));
            return Some(self.raw(s));
        }
        let mut d = Diagnostic::warning(s.span(), format!("unknown keyword `{kw}` in {}", section.name()));
        if let Some(sug) = super::suggest(section, kw) {
            d.message.push_str(&format!("; did you mean `{sug}`?"));
            d.suggestion = Some(sug.to_string());
        }
        d.message.push_str(" (ignored, as keepalived does)");
        self.push(d);
        None
    }

    /// Verbatim copy of a statement and the lines of its block this director sees.
    pub fn raw(&self, s: &Stmt) -> RawStmt {
        RawStmt {
            words: s.words.iter().map(|w| w.text.clone()).collect(),
            block: s
                .block
                .as_ref()
                .map(|b| self.visible(&b.stmts).into_iter().map(|c| self.raw(c)).collect()),
        }
    }

    pub fn block<'a>(&mut self, s: &'a Stmt) -> Vec<&'a Stmt> {
        match &s.block {
            Some(b) => self.visible(&b.stmts),
            None => {
                self.error(s.span(), format!("`{}` needs a `{{ ... }}` block", s.keyword()));
                Vec::new()
            }
        }
    }

    pub fn no_block(&mut self, s: &Stmt) {
        // Block headers read their arguments with the same helpers.
        const HEADERS: [&str; 2] = ["virtual_server", "real_server"];
        if HEADERS.contains(&s.keyword()) {
            return;
        }
        if let Some(b) = &s.block {
            self.warning(b.open, format!("`{}` takes no block: block ignored", s.keyword()));
        }
    }

    /// Argument `i` as text, or an error naming what is missing.
    pub fn arg<'a>(&mut self, s: &'a Stmt, i: usize, what: &str) -> Option<&'a str> {
        self.no_block(s);
        match s.args().get(i) {
            Some(w) => Some(w.text.as_str()),
            None => {
                self.error(s.span(), format!("`{}` needs {what}", s.keyword()));
                None
            }
        }
    }

    /// Warns about words after the last expected argument.
    pub fn max_args(&mut self, s: &Stmt, n: usize) {
        if let Some(w) = s.args().get(n) {
            self.warning(
                w.span,
                format!("extra words after `{}` ignored: `{}`", s.keyword(), w.text),
            );
        }
    }

    /// A flag keyword: no arguments (keepalived ignores extra words with a complaint).
    pub fn flag(&mut self, s: &Stmt) -> bool {
        self.no_block(s);
        if let Some(w) = s.args().first() {
            match w.text.as_str() {
                "true" | "on" | "yes" => return true,
                "false" | "off" | "no" => return false,
                _ => self.max_args(s, 0),
            }
        }
        true
    }

    /// The rest of the line as one string (scripts, names with spaces).
    pub fn rest(&mut self, s: &Stmt, from: usize, what: &str) -> Option<String> {
        self.no_block(s);
        let words = s.args().get(from..).unwrap_or(&[]);
        if words.is_empty() {
            self.error(s.span(), format!("`{}` needs {what}", s.keyword()));
            return None;
        }
        Some(
            words
                .iter()
                .map(|w| w.text.as_str())
                .collect::<Vec<_>>()
                .join(" "),
        )
    }

    /// An unsigned number in `lo..=hi`. `strict`: out of range is an error (the product
    /// refuses it); otherwise a warning and the line is ignored, as keepalived does.
    pub fn uint(&mut self, s: &Stmt, i: usize, lo: u64, hi: u64, strict: bool) -> Option<u64> {
        let text = self.arg(s, i, "a number")?;
        let span = s.arg_span(i);
        let kw = s.keyword();
        let v = match text.parse::<u64>() {
            Ok(v) => v,
            Err(_) => {
                self.error(span, format!("`{kw}` expects a whole number, not `{text}`"));
                return None;
            }
        };
        if v < lo || v > hi {
            let msg = format!("`{kw}` {v} is outside the range {lo}..{hi}");
            if strict {
                self.error(span, msg);
            } else {
                self.warning(span, format!("{msg}; keepalived ignores the line"));
            }
            return None;
        }
        Some(v)
    }

    /// A signed number in `lo..=hi` (weights).
    pub fn int(&mut self, s: &Stmt, i: usize, lo: i64, hi: i64) -> Option<i64> {
        let text = self.arg(s, i, "a number")?;
        let span = s.arg_span(i);
        let kw = s.keyword();
        match text.parse::<i64>() {
            Ok(v) if v >= lo && v <= hi => Some(v),
            Ok(v) => {
                self.error(span, format!("`{kw}` {v} is outside the range {lo}..{hi}"));
                None
            }
            Err(_) => {
                self.error(span, format!("`{kw}` expects a whole number, not `{text}`"));
                None
            }
        }
    }

    /// Decimal seconds in `lo..=hi`.
    pub fn secs(&mut self, s: &Stmt, i: usize, lo: Dur, hi: Dur, strict: bool) -> Option<Dur> {
        let text = self.arg(s, i, "a time in seconds")?;
        let span = s.arg_span(i);
        let kw = s.keyword();
        let Some(d) = Dur::parse_secs(text) else {
            self.error(
                span,
                format!("`{kw}` expects seconds (e.g. `1` or `0.5`), not `{text}`"),
            );
            return None;
        };
        if d < lo || d > hi {
            let msg = format!("`{kw}` {d} is outside the range {lo}..{hi} seconds");
            if strict {
                self.error(span, msg);
            } else {
                self.warning(span, format!("{msg}; keepalived ignores the line"));
            }
            return None;
        }
        Some(d)
    }

    pub fn ip(&mut self, s: &Stmt, i: usize) -> Option<IpAddr> {
        let text = self.arg(s, i, "an IP address")?;
        parse_ip(text).or_else(|| {
            self.error(s.arg_span(i), format!("`{text}` is not an IP address"));
            None
        })
    }

    pub fn port(&mut self, s: &Stmt, i: usize) -> Option<u16> {
        self.uint(s, i, 0, 65535, true).map(|v| v as u16)
    }

    /// `SCRIPT [USER [GROUP]]` as keepalived's notify and script keywords take it.
    pub fn script(&mut self, s: &Stmt) -> Option<Script> {
        self.no_block(s);
        let args = s.args();
        let Some(first) = args.first() else {
            self.error(s.span(), format!("`{}` needs a program", s.keyword()));
            return None;
        };
        // The first word (quote a command that has arguments) is the command line; the
        // next words are the user and group to run it as.
        let (cmd, rest) = (first.text.clone(), &args[1..]);
        if cmd.trim().is_empty() {
            self.error(first.span, "empty program name");
            return None;
        }
        let user = self.user_words(s, rest);
        Some(Script { cmd, user })
    }

    pub fn user_words(&mut self, s: &Stmt, words: &[crate::syntax::Word]) -> Option<ScriptUser> {
        match words {
            [] => None,
            [u] => Some(ScriptUser {
                user: u.text.clone(),
                group: None,
            }),
            [u, g, more @ ..] => {
                if let Some(w) = more.first() {
                    self.warning(w.span, format!("extra words after `{}` ignored", s.keyword()));
                }
                Some(ScriptUser {
                    user: u.text.clone(),
                    group: Some(g.text.clone()),
                })
            }
        }
    }
}

pub fn parse_ip(text: &str) -> Option<IpAddr> {
    IpAddr::from_str(text).ok()
}

//! Diagnostics: errors and warnings with a source position, rendered as
//! `FILE:LINE:COL: error|warning: message` or as JSON for tools.

use crate::syntax::{SourceMap, Span};
use serde::Serialize;
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Error,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Warning => "warning",
            Severity::Error => "error",
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Diagnostic {
    pub severity: Severity,
    pub span: Option<Span>,
    pub message: String,
    /// A replacement the user probably meant (e.g. a keyword), also part of `message`.
    pub suggestion: Option<String>,
    /// The director whose view produced this diagnostic, when it is not common to all.
    pub node: Option<String>,
    /// Something hanode does not run (a checker, a tracker, a route...): an error unless
    /// the view's `global_defs` accepts it with `hanode_ignore KEYWORD`, decided once the
    /// whole view is read (see [`Diagnostic::accept_not_run`]).
    pub not_run: Option<Box<NotRun>>,
}

/// A keyword in the configuration that hanode does not run, and what that means for the
/// operator.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct NotRun {
    pub keyword: String,
    pub what: String,
}

impl Diagnostic {
    pub fn error(span: impl Into<Option<Span>>, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            span: span.into(),
            message: message.into(),
            suggestion: None,
            node: None,
            not_run: None,
        }
    }

    /// `keyword` is in the configuration and hanode does not run it: `what` says what
    /// that means for the operator (an error until `hanode_ignore keyword` accepts it).
    pub fn not_run(span: impl Into<Option<Span>>, keyword: &str, what: &str) -> Self {
        Diagnostic {
            not_run: Some(Box::new(NotRun {
                keyword: keyword.to_string(),
                what: what.to_string(),
            })),
            ..Diagnostic::error(
                span,
                format!(
                    "`{keyword}` is not run by hanode: {what}; remove it, or accept that with `hanode_ignore {keyword}` in global_defs"
                ),
            )
        }
    }

    /// A [`Diagnostic::not_run`] decided against the keywords the view's `global_defs`
    /// accepts (`hanode_ignore`): a warning if `ignored` holds its keyword, the error
    /// otherwise. Any other diagnostic is returned as it is.
    pub fn accept_not_run(self, ignored: impl Fn(&str) -> bool) -> Self {
        let message = match self.not_run.as_deref() {
            Some(NotRun { keyword, what }) if ignored(keyword) => {
                format!("`{keyword}` is not run by hanode (accepted by `hanode_ignore {keyword}`): {what}")
            }
            _ => return self,
        };
        Diagnostic {
            severity: Severity::Warning,
            message,
            not_run: None,
            ..self
        }
    }

    pub fn warning(span: impl Into<Option<Span>>, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(span, message)
        }
    }

    pub fn with_suggestion(mut self, s: impl Into<String>) -> Self {
        self.suggestion = Some(s.into());
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// One line: `FILE:LINE:COL: severity: message`.
    pub fn render(&self, sources: &SourceMap) -> String {
        let loc = match self.span {
            Some(s) => sources.locate(s),
            None => "<cluster>".to_string(),
        };
        match &self.node {
            Some(n) => format!("{loc}: {}: {} [director {n}]", self.severity, self.message),
            None => format!("{loc}: {}: {}", self.severity, self.message),
        }
    }

    pub fn to_json(&self, sources: &SourceMap) -> serde_json::Value {
        let (file, line, col) = match self.span {
            Some(s) => (
                Some(sources.path(s.file).display().to_string()),
                Some(s.line),
                Some(s.col),
            ),
            None => (None, None, None),
        };
        serde_json::json!({
            "file": file,
            "line": line,
            "column": col,
            "severity": self.severity,
            "message": self.message,
            "suggestion": self.suggestion,
            "node": self.node,
        })
    }
}

/// An ordered collection of diagnostics without duplicates.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Diagnostics {
    items: Vec<Diagnostic>,
    /// What `items` holds, for O(1) duplicate checks (a file may have 10,000s of errors).
    seen: std::collections::HashSet<Diagnostic>,
}

impl Diagnostics {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, d: Diagnostic) {
        if !self.seen.contains(&d) {
            self.seen.insert(d.clone());
            self.items.push(d);
        }
    }

    pub fn error(&mut self, span: impl Into<Option<Span>>, message: impl Into<String>) {
        self.push(Diagnostic::error(span, message));
    }

    pub fn warning(&mut self, span: impl Into<Option<Span>>, message: impl Into<String>) {
        self.push(Diagnostic::warning(span, message));
    }

    pub fn extend(&mut self, other: Diagnostics) {
        for d in other.items {
            self.push(d);
        }
    }

    pub fn has_errors(&self) -> bool {
        self.items.iter().any(Diagnostic::is_error)
    }

    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.items.iter().filter(|d| d.is_error())
    }

    pub fn iter(&self) -> impl Iterator<Item = &Diagnostic> {
        self.items.iter()
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Sorted by position (file, line, column), positionless ones last.
    pub fn sorted(mut self) -> Self {
        // By place (diagnostics without one last), then by content: one order whatever
        // order they were found in.
        self.items.sort_by(|a, b| {
            let place = match (a.span, b.span) {
                (Some(x), Some(y)) => x.cmp(&y),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => std::cmp::Ordering::Equal,
            };
            place.then_with(|| {
                (a.severity, &a.message, &a.node, &a.suggestion).cmp(&(
                    b.severity,
                    &b.message,
                    &b.node,
                    &b.suggestion,
                ))
            })
        });
        self
    }

    pub fn render(&self, sources: &SourceMap) -> String {
        let mut out = String::new();
        for d in &self.items {
            out.push_str(&d.render(sources));
            out.push('\n');
        }
        out
    }
}

impl IntoIterator for Diagnostics {
    type Item = Diagnostic;
    type IntoIter = std::vec::IntoIter<Diagnostic>;
    fn into_iter(self) -> Self::IntoIter {
        self.items.into_iter()
    }
}

//! The syntax tree of a keepalived.conf: statements (a keyword line, optionally with a
//! `{ ... }` block), each with its source span and its `@node` condition.

use super::source::Span;
use serde::{Deserialize, Serialize};

/// keepalived's config-id line prefix.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Cond {
    /// `@NAME line`: only director NAME sees the line.
    Only(String),
    /// `@^NAME line`: every director but NAME sees the line.
    Except(String),
}

impl Cond {
    /// Whether a director named `node` (None: a director named in no condition) sees the line.
    pub fn admits(&self, node: Option<&str>) -> bool {
        match self {
            Cond::Only(n) => node == Some(n.as_str()),
            Cond::Except(n) => node != Some(n.as_str()),
        }
    }

    pub fn node(&self) -> &str {
        match self {
            Cond::Only(n) | Cond::Except(n) => n,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Word {
    pub text: String,
    pub span: Span,
    pub quoted: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    pub open: Span,
    pub stmts: Vec<Stmt>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stmt {
    pub cond: Option<Cond>,
    pub words: Vec<Word>,
    pub block: Option<Block>,
}

impl Stmt {
    pub fn keyword(&self) -> &str {
        self.words.first().map(|w| w.text.as_str()).unwrap_or("")
    }

    pub fn span(&self) -> Span {
        self.words
            .first()
            .map(|w| w.span)
            .unwrap_or(Span::new(super::FileId(0), 0, 0))
    }

    /// Arguments after the keyword.
    pub fn args(&self) -> &[Word] {
        self.words.get(1..).unwrap_or(&[])
    }

    /// Span of argument `i` (0-based), or the keyword's span when it is missing.
    pub fn arg_span(&self, i: usize) -> Span {
        self.args().get(i).map(|w| w.span).unwrap_or_else(|| self.span())
    }

    pub fn children(&self) -> &[Stmt] {
        self.block.as_ref().map(|b| b.stmts.as_slice()).unwrap_or(&[])
    }
}

//! Builds the statement tree from lexical lines (after `include` expansion).

use super::ast::{Block, Cond, Stmt, Word};
use super::lexer::{Tok, TokKind};
use super::loader::{Lines, SourceLoader};
use super::source::{SourceMap, Span};
use crate::diag::Diagnostics;
use std::path::Path;

/// Deepest accepted block nesting (keepalived's deepest real block is 4 levels).
pub const MAX_DEPTH: usize = 32;

/// A parsed configuration: its statements, the files read, and what went wrong.
#[derive(Clone, Debug)]
pub struct Parsed {
    pub stmts: Vec<Stmt>,
    pub sources: SourceMap,
    pub diags: Diagnostics,
}

/// Reads `path` (and its includes) through `loader` and parses it.
pub fn parse_file(path: &Path, loader: &dyn SourceLoader) -> Parsed {
    let mut stream = StmtStream::open(path, loader);
    let stmts = std::iter::from_fn(|| stream.next_stmt()).collect();
    let (sources, diags) = stream.finish();
    Parsed {
        stmts,
        sources,
        diags,
    }
}

/// Parses text that has no includes (tests, API bodies). `name` is used in positions.
pub fn parse_str(name: &str, text: &str) -> Parsed {
    let loader = super::loader::MemLoader::new().with(name, text);
    parse_file(Path::new(name), &loader)
}

/// The top-level statements of a file, parsed one at a time as they are asked for: the
/// lines are lexed as the parser reaches them, so a reader that handles each statement
/// and drops it (`hactl check`) never holds the file's tree.
pub struct StmtStream<'l> {
    cur: Cursor<'l>,
}

impl<'l> StmtStream<'l> {
    pub fn open(path: &Path, loader: &'l dyn SourceLoader) -> Self {
        let mut sources = SourceMap::new();
        let mut diags = Diagnostics::new();
        let lines = Lines::open(path, loader, &mut sources, &mut diags);
        StmtStream {
            cur: Cursor {
                lines,
                sources,
                diags,
                cond: None,
                toks: Vec::new(),
            },
        }
    }

    /// The next top-level statement; None at the end of the input.
    pub fn next_stmt(&mut self) -> Option<Stmt> {
        loop {
            match parse_item(&mut self.cur, None, 0) {
                Item::Stmt(s) => return Some(s),
                Item::Skipped => continue,
                Item::Closed | Item::End => return None,
            }
        }
    }

    /// The files read and every problem found (call after the last statement).
    pub fn finish(mut self) -> (SourceMap, Diagnostics) {
        self.cur.skip_to_end();
        (self.cur.sources, self.cur.diags)
    }
}

/// The token stream: the current line's condition and its tokens not yet consumed (last
/// first), the next lines read on demand.
struct Cursor<'l> {
    lines: Lines<'l>,
    sources: SourceMap,
    diags: Diagnostics,
    cond: Option<(Cond, Span)>,
    toks: Vec<Tok>,
}

/// The next token, its line's condition, and whether it ends its line.
type Peek<'a> = (&'a TokKind, Span, Option<&'a (Cond, Span)>, bool);

impl Cursor<'_> {
    fn peek(&mut self) -> Option<Peek<'_>> {
        while self.toks.is_empty() {
            let line = self.lines.next_line(&mut self.sources, &mut self.diags)?;
            self.cond = line.cond;
            self.toks = line.toks;
            self.toks.reverse();
        }
        let eol = self.toks.len() == 1;
        let t = self.toks.last()?;
        Some((&t.kind, t.span, self.cond.as_ref(), eol))
    }

    /// Consumes the token [`peek`](Self::peek) returned.
    fn bump(&mut self) -> Option<Tok> {
        self.toks.pop()
    }

    /// Drops every token left (the lines are still read, for their diagnostics).
    fn skip_to_end(&mut self) {
        self.toks.clear();
        while self.lines.next_line(&mut self.sources, &mut self.diags).is_some() {}
    }
}

enum Item {
    Stmt(Stmt),
    /// Something that is not a statement was consumed (and reported).
    Skipped,
    /// The `}` of the enclosing block.
    Closed,
    End,
}

fn parse_block(cur: &mut Cursor<'_>, opened_at: Option<Span>, depth: usize) -> Vec<Stmt> {
    let mut stmts = Vec::new();
    loop {
        match parse_item(cur, opened_at, depth) {
            Item::Stmt(s) => stmts.push(s),
            Item::Skipped => {}
            Item::Closed | Item::End => return stmts,
        }
    }
}

/// One item of a block opened at `opened_at` (None: the top level).
fn parse_item(cur: &mut Cursor<'_>, opened_at: Option<Span>, depth: usize) -> Item {
    let Some((kind, span, cond, _)) = cur.peek() else {
        if let Some(open) = opened_at {
            cur.diags.error(
                open,
                "block opened here is not closed: missing `}` before the end of the file",
            );
        }
        return Item::End;
    };
    let cond_span = cond.map(|(_, s)| *s);
    match kind {
        TokKind::Close => {
            cur.bump();
            if let Some(cspan) = cond_span {
                cur.diags.error(
                    cspan,
                    "a conditional (`@`) line cannot close a block: put `}` on its own line",
                );
            }
            match opened_at {
                Some(_) => Item::Closed,
                None => {
                    cur.diags.error(span, "extra `}` with no open block");
                    Item::Skipped
                }
            }
        }
        TokKind::Open => {
            cur.bump();
            cur.diags
                .error(span, "`{` without a keyword before it: block ignored");
            if depth + 1 >= MAX_DEPTH {
                cur.diags
                    .error(span, format!("blocks nested deeper than {MAX_DEPTH} levels"));
                cur.skip_to_end();
                return Item::Skipped;
            }
            parse_block(cur, Some(span), depth + 1);
            Item::Skipped
        }
        TokKind::Word { .. } => {
            let cond = cond.map(|(c, _)| c.clone());
            let mut words = Vec::new();
            while let Some((TokKind::Word { .. }, _, _, eol)) = cur.peek() {
                if let Some(Tok {
                    kind: TokKind::Word { text, quoted },
                    span,
                }) = cur.bump()
                {
                    words.push(Word { text, span, quoted });
                }
                if eol {
                    break;
                }
            }
            words.shrink_to_fit();
            let mut stmt = Stmt {
                cond,
                words,
                block: None,
            };
            if let Some((TokKind::Open, ospan, ocond, _)) = cur.peek() {
                let ocond_span = ocond.map(|(_, s)| *s);
                cur.bump();
                if let Some(cspan) = cond_span.or(ocond_span) {
                    cur.diags.error(
                        cspan,
                        "a block cannot be conditional: put the `@node` prefix on the lines inside it",
                    );
                }
                if depth + 1 >= MAX_DEPTH {
                    cur.diags
                        .error(ospan, format!("blocks nested deeper than {MAX_DEPTH} levels"));
                    cur.skip_to_end();
                    return Item::Stmt(stmt);
                }
                let mut inner = parse_block(cur, Some(ospan), depth + 1);
                inner.shrink_to_fit();
                stmt.block = Some(Block {
                    open: ospan,
                    stmts: inner,
                });
            }
            Item::Stmt(stmt)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_blocks_and_brace_on_next_line() {
        let p = parse_str(
            "t.conf",
            "vrrp_instance VI_1\n{\n  state MASTER\n  authentication { auth_type PASS\n auth_pass 1111 }\n}\n",
        );
        assert!(p.diags.is_empty(), "{:?}", p.diags);
        assert_eq!(p.stmts.len(), 1);
        let vi = &p.stmts[0];
        assert_eq!(vi.keyword(), "vrrp_instance");
        assert_eq!(vi.children().len(), 2);
        assert_eq!(vi.children()[1].children().len(), 2);
        assert_eq!(vi.children()[1].children()[1].args()[0].text, "1111");
    }

    #[test]
    fn unterminated_block_names_the_opening_brace() {
        let p = parse_str("t.conf", "global_defs {\n router_id x\n");
        let e: Vec<_> = p.diags.errors().collect();
        assert_eq!(e.len(), 1);
        assert_eq!((e[0].span.unwrap().line, e[0].span.unwrap().col), (1, 13));
    }

    #[test]
    fn extra_close_brace() {
        let p = parse_str("t.conf", "a 1\n}\n");
        assert!(p.diags.errors().any(|d| d.message.contains("extra `}`")));
    }

    #[test]
    fn conditional_block_is_refused() {
        let p = parse_str("t.conf", "@lvs01 vrrp_instance X {\n}\n");
        assert!(p
            .diags
            .errors()
            .any(|d| d.message.contains("cannot be conditional")));
    }

    #[test]
    fn deep_nesting_does_not_overflow() {
        let text = "a {\n".repeat(10_000);
        let p = parse_str("t.conf", &text);
        assert!(p.diags.has_errors());
    }
}

//! Builds the statement tree from lexical lines (after `include` expansion).

use super::ast::{Block, Cond, Stmt, Word};
use super::lexer::{LexLine, TokKind};
use super::loader::{load, SourceLoader};
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
    let mut sources = SourceMap::new();
    let mut diags = Diagnostics::new();
    let lines = load(path, loader, &mut sources, &mut diags);
    let stmts = build_tree(&lines, &mut diags);
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

/// A token, its span, its line's condition, and whether it ends its line.
type FlatTok<'a> = (&'a TokKind, Span, Option<&'a (Cond, Span)>, bool);

struct Cursor<'a> {
    toks: Vec<FlatTok<'a>>,
    pos: usize,
}

/// One flat token stream; the bool marks the end of a physical line.
fn flatten(lines: &[LexLine]) -> Cursor<'_> {
    let mut toks = Vec::new();
    for l in lines {
        let n = l.toks.len();
        for (i, t) in l.toks.iter().enumerate() {
            toks.push((&t.kind, t.span, l.cond.as_ref(), i + 1 == n));
        }
    }
    Cursor { toks, pos: 0 }
}

pub fn build_tree(lines: &[LexLine], diags: &mut Diagnostics) -> Vec<Stmt> {
    let mut cur = flatten(lines);
    parse_block(&mut cur, None, 0, diags)
}

fn parse_block(
    cur: &mut Cursor<'_>,
    opened_at: Option<Span>,
    depth: usize,
    diags: &mut Diagnostics,
) -> Vec<Stmt> {
    let mut stmts = Vec::new();
    loop {
        let Some(&(kind, span, cond, _)) = cur.toks.get(cur.pos) else {
            if let Some(open) = opened_at {
                diags.error(
                    open,
                    "block opened here is not closed: missing `}` before the end of the file",
                );
            }
            return stmts;
        };
        match kind {
            TokKind::Close => {
                cur.pos += 1;
                if let Some((_, cspan)) = cond {
                    diags.error(
                        *cspan,
                        "a conditional (`@`) line cannot close a block: put `}` on its own line",
                    );
                }
                match opened_at {
                    Some(_) => return stmts,
                    None => diags.error(span, "extra `}` with no open block"),
                }
            }
            TokKind::Open => {
                cur.pos += 1;
                diags.error(span, "`{` without a keyword before it: block ignored");
                if depth + 1 >= MAX_DEPTH {
                    diags.error(span, format!("blocks nested deeper than {MAX_DEPTH} levels"));
                    skip_to_end(cur);
                    return stmts;
                }
                parse_block(cur, Some(span), depth + 1, diags);
            }
            TokKind::Word { .. } => {
                let mut words = Vec::new();
                while let Some(&(TokKind::Word { text, quoted }, wspan, _, eol)) = cur.toks.get(cur.pos) {
                    words.push(Word {
                        text: text.clone(),
                        span: wspan,
                        quoted: *quoted,
                    });
                    cur.pos += 1;
                    if eol {
                        break;
                    }
                }
                let mut stmt = Stmt {
                    cond: cond.map(|(c, _)| c.clone()),
                    words,
                    block: None,
                };
                if let Some(&(TokKind::Open, ospan, ocond, _)) = cur.toks.get(cur.pos) {
                    cur.pos += 1;
                    if let Some((_, cspan)) = cond.or(ocond) {
                        diags.error(
                            *cspan,
                            "a block cannot be conditional: put the `@node` prefix on the lines inside it",
                        );
                    }
                    if depth + 1 >= MAX_DEPTH {
                        diags.error(ospan, format!("blocks nested deeper than {MAX_DEPTH} levels"));
                        skip_to_end(cur);
                        stmts.push(stmt);
                        return stmts;
                    }
                    let inner = parse_block(cur, Some(ospan), depth + 1, diags);
                    stmt.block = Some(Block {
                        open: ospan,
                        stmts: inner,
                    });
                }
                stmts.push(stmt);
            }
        }
    }
}

fn skip_to_end(cur: &mut Cursor<'_>) {
    cur.pos = cur.toks.len();
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

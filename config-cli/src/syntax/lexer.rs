//! keepalived.conf lexical rules, applied one physical line at a time:
//!
//! - `!` and `#` start a comment anywhere outside double quotes; `\!` and `\#` are literal.
//! - Words are separated by blanks; `"..."` is one word without the quotes (no escapes).
//! - `{` and `}` outside quotes are tokens of their own, with or without blanks around them.
//! - A line may start with keepalived's config-id prefix: `@NAME rest` keeps `rest` only for
//!   the director NAME, `@^NAME rest` for every director but NAME.
//! - keepalived's parameter definitions (`$NAME=value`) and `~SEQ`/`~LST` are not supported:
//!   they are reported, never silently dropped.

use super::ast::Cond;
use super::source::{FileId, Span};
use crate::diag::Diagnostics;

/// Longest accepted physical line, in bytes (keepalived's own buffer is far smaller).
pub const MAX_LINE_BYTES: usize = 64 * 1024;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokKind {
    Word { text: String, quoted: bool },
    Open,
    Close,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tok {
    pub kind: TokKind,
    pub span: Span,
}

/// The tokens of one physical line, with the line's condition if any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LexLine {
    pub cond: Option<(Cond, Span)>,
    pub toks: Vec<Tok>,
}

impl LexLine {
    /// `include PATTERN` lines are expanded by the loader.
    pub fn include_pattern(&self) -> Option<(&str, Span)> {
        match self.toks.as_slice() {
            [Tok {
                kind: TokKind::Word { text: kw, .. },
                ..
            }, Tok {
                kind: TokKind::Word { text: pat, .. },
                span,
            }] if kw == "include" => Some((pat.as_str(), *span)),
            _ => None,
        }
    }

    pub fn first_word(&self) -> Option<&str> {
        match self.toks.first() {
            Some(Tok {
                kind: TokKind::Word { text, .. },
                ..
            }) => Some(text),
            _ => None,
        }
    }
}

/// One physical line (without its `\n`): its tokens, or None for a blank, comment-only or
/// refused (over-long) line. Problems go to `diags`; the lexer never fails. Lines are lexed
/// one at a time as the parser asks for them ([`super::loader::Lines`]).
pub fn lex_physical_line(file: FileId, line_no: u32, raw: &str, diags: &mut Diagnostics) -> Option<LexLine> {
    let raw = raw.strip_suffix('\r').unwrap_or(raw);
    if raw.len() > MAX_LINE_BYTES {
        diags.error(
            Span::new(file, line_no, 1),
            format!(
                "line is {} bytes long; the limit is {MAX_LINE_BYTES} bytes: line ignored",
                raw.len()
            ),
        );
        return None;
    }
    lex_line(file, line_no, raw, diags)
}

fn lex_line(file: FileId, line_no: u32, raw: &str, diags: &mut Diagnostics) -> Option<LexLine> {
    let chars: Vec<char> = raw.chars().collect();
    let at = |col0: usize| Span::new(file, line_no, (col0 + 1) as u32);
    let mut i = 0;
    while i < chars.len() && (chars[i] == ' ' || chars[i] == '\t') {
        i += 1;
    }
    if i >= chars.len() || chars[i] == '!' || chars[i] == '#' {
        return None;
    }

    let mut cond = None;
    if chars[i] == '@' {
        let start = i;
        let (neg, name_start) = if chars.get(i + 1) == Some(&'^') {
            (true, i + 2)
        } else {
            (false, i + 1)
        };
        let mut j = name_start;
        while j < chars.len() && !chars[j].is_whitespace() && chars[j] != '#' && chars[j] != '!' {
            j += 1;
        }
        let name: String = chars[name_start..j].iter().collect();
        if name.is_empty() {
            diags.error(
                at(start),
                "`@` must be followed by a director name, as in `@lvs01 priority 100`",
            );
            return None;
        }
        let c = if neg { Cond::Except(name) } else { Cond::Only(name) };
        cond = Some((c, at(start)));
        i = j;
    }

    let mut toks = Vec::new();
    let mut word = String::new();
    let mut word_start = 0usize;
    let flush = |word: &mut String, start: usize, toks: &mut Vec<Tok>| {
        if !word.is_empty() {
            toks.push(Tok {
                kind: TokKind::Word {
                    text: std::mem::take(word),
                    quoted: false,
                },
                span: at(start),
            });
        }
    };
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' => {
                flush(&mut word, word_start, &mut toks);
                let start = i;
                let mut j = i + 1;
                while j < chars.len() && chars[j] != '"' {
                    j += 1;
                }
                let text: String = chars[(i + 1).min(chars.len())..j].iter().collect();
                if j >= chars.len() {
                    diags.error(
                        at(start),
                        "unterminated quoted string (no closing `\"` on this line)",
                    );
                }
                toks.push(Tok {
                    kind: TokKind::Word { text, quoted: true },
                    span: at(start),
                });
                i = j + 1;
                continue;
            }
            '\\' if matches!(chars.get(i + 1), Some('#') | Some('!')) => {
                if word.is_empty() {
                    word_start = i;
                }
                word.push(chars[i + 1]);
                i += 2;
                continue;
            }
            '!' | '#' => break,
            '{' | '}' => {
                flush(&mut word, word_start, &mut toks);
                toks.push(Tok {
                    kind: if c == '{' { TokKind::Open } else { TokKind::Close },
                    span: at(i),
                });
            }
            c if c.is_whitespace() => {
                flush(&mut word, word_start, &mut toks);
            }
            c => {
                if word.is_empty() {
                    word_start = i;
                }
                word.push(c);
            }
        }
        i += 1;
    }
    flush(&mut word, word_start, &mut toks);

    if toks.is_empty() {
        if let Some((_, span)) = cond {
            diags.warning(span, "condition prefix with nothing after it: line ignored");
        }
        return None;
    }
    if let Some(TokKind::Word { text, quoted: false }) = toks.first().map(|t| &t.kind) {
        if text.starts_with('$') && (text.contains('=') || is_def_start(&toks)) {
            diags.error(
                toks[0].span,
                "keepalived parameter definitions (`$NAME=value`) are not supported: write the values out",
            );
            return None;
        }
        if text.starts_with("~SEQ") || text.starts_with("~LST") {
            diags.error(
                toks[0].span,
                "keepalived `~SEQ`/`~LST` line generators are not supported: write the lines out",
            );
            return None;
        }
    }
    Some(LexLine { cond, toks })
}

fn is_def_start(toks: &[Tok]) -> bool {
    matches!(toks.get(1).map(|t| &t.kind), Some(TokKind::Word { text, .. }) if text.starts_with('='))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &LexLine) -> Vec<String> {
        line.toks
            .iter()
            .map(|t| match &t.kind {
                TokKind::Word { text, .. } => text.clone(),
                TokKind::Open => "{".into(),
                TokKind::Close => "}".into(),
            })
            .collect()
    }

    fn lex1(s: &str) -> (Vec<LexLine>, Diagnostics) {
        let mut d = Diagnostics::new();
        let l = s
            .split('\n')
            .enumerate()
            .filter_map(|(i, raw)| lex_physical_line(FileId(0), (i + 1) as u32, raw, &mut d))
            .collect();
        (l, d)
    }

    #[test]
    fn comments_anywhere_outside_quotes() {
        let (l, d) = lex1("protocol TCP#TCP协议\n! whole line\n  # indented\nauth_pass \"a#b\" ! c\n");
        assert!(d.is_empty());
        assert_eq!(l.len(), 2);
        assert_eq!(words(&l[0]), ["protocol", "TCP"]);
        assert_eq!(words(&l[1]), ["auth_pass", "a#b"]);
    }

    #[test]
    fn escaped_comment_chars_are_literal() {
        let (l, _) = lex1("script \"/bin/x\" a\\#b\n");
        assert_eq!(words(&l[0]), ["script", "/bin/x", "a#b"]);
    }

    #[test]
    fn braces_split_without_blanks() {
        let (l, _) = lex1("url{path /}\n");
        assert_eq!(words(&l[0]), ["url", "{", "path", "/", "}"]);
        assert_eq!(l[0].toks[1].span.col, 4);
    }

    #[test]
    fn condition_prefixes() {
        let (l, d) = lex1("@lvs01 priority 100\n\t@^lvs02 nopreempt\n@ x\n@only\n");
        assert_eq!(l.len(), 2);
        assert_eq!(l[0].cond.as_ref().unwrap().0, Cond::Only("lvs01".into()));
        assert_eq!(words(&l[0]), ["priority", "100"]);
        assert_eq!(l[1].cond.as_ref().unwrap().0, Cond::Except("lvs02".into()));
        assert_eq!(d.len(), 2, "{d:?}");
    }

    #[test]
    fn columns_count_characters() {
        let (l, _) = lex1("协议 x\n");
        assert_eq!(l[0].toks[1].span.col, 4);
    }

    #[test]
    fn unterminated_quote_is_an_error_with_column() {
        let (_, d) = lex1("  auth_pass \"abc\n");
        let e = d.iter().next().unwrap();
        assert!(e.is_error());
        assert_eq!(e.span.unwrap().col, 13);
    }

    #[test]
    fn overlong_line_is_an_error() {
        let s = format!("router_id {}\n", "x".repeat(MAX_LINE_BYTES + 1));
        let (l, d) = lex1(&s);
        assert!(l.is_empty());
        assert!(d.has_errors());
    }

    #[test]
    fn definitions_are_refused() {
        let (l, d) = lex1("$IF=eth0\n~SEQ(i,1,3) x\n");
        assert!(l.is_empty());
        assert_eq!(d.errors().count(), 2);
    }
}

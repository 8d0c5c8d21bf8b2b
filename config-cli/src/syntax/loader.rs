//! Reading configuration files and expanding `include` lines.
//!
//! `include PATTERN` is expanded where it stands (even inside a block), as keepalived does;
//! a relative pattern is resolved against the directory of the file that contains it, and
//! glob matches are read in sorted order. Loops, missing files, binary files and oversized
//! files are reported at the `include` line. All I/O goes through [`SourceLoader`], so the
//! parser runs the same over the file system and over in-memory files.

use super::lexer::{lex_physical_line, LexLine};
use super::source::{SourceMap, Span};
use crate::diag::Diagnostics;
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

/// Largest accepted configuration file.
pub const MAX_FILE_BYTES: usize = 128 * 1024 * 1024;
/// Deepest accepted chain of includes.
pub const MAX_INCLUDE_DEPTH: usize = 16;

pub trait SourceLoader {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// Paths matching a glob pattern, sorted.
    fn glob(&self, pattern: &Path) -> io::Result<Vec<PathBuf>>;
    /// A stable identity for loop detection.
    fn identity(&self, path: &Path) -> PathBuf {
        path.to_path_buf()
    }
}

/// The real file system.
#[derive(Clone, Copy, Debug, Default)]
pub struct FsLoader;

impl SourceLoader for FsLoader {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let meta = std::fs::metadata(path)?;
        if meta.is_dir() {
            return Err(io::Error::other("is a directory"));
        }
        if meta.len() > MAX_FILE_BYTES as u64 {
            return Err(io::Error::other(format!(
                "file is {} bytes; the limit is {MAX_FILE_BYTES}",
                meta.len()
            )));
        }
        std::fs::read(path)
    }

    fn glob(&self, pattern: &Path) -> io::Result<Vec<PathBuf>> {
        let pat = pattern.to_string_lossy();
        let paths = glob::glob(&pat).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.msg))?;
        let mut v: Vec<PathBuf> = paths.filter_map(Result::ok).filter(|p| p.is_file()).collect();
        v.sort();
        Ok(v)
    }

    fn identity(&self, path: &Path) -> PathBuf {
        std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
    }
}

/// In-memory files, for tests and for configs that arrive over the network.
#[derive(Clone, Debug, Default)]
pub struct MemLoader {
    files: BTreeMap<PathBuf, Vec<u8>>,
}

impl MemLoader {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with(mut self, path: impl Into<PathBuf>, text: impl Into<Vec<u8>>) -> Self {
        self.files.insert(path.into(), text.into());
        self
    }
}

impl SourceLoader for MemLoader {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.files
            .get(path)
            .cloned()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "No such file or directory"))
    }

    fn glob(&self, pattern: &Path) -> io::Result<Vec<PathBuf>> {
        let pat = glob::Pattern::new(&pattern.to_string_lossy())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.msg))?;
        Ok(self
            .files
            .keys()
            .filter(|p| pat.matches_path(p))
            .cloned()
            .collect())
    }
}

fn has_glob_chars(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

fn decode(bytes: &[u8]) -> Result<String, String> {
    if let Some(pos) = bytes.iter().position(|&b| b == 0) {
        return Err(format!(
            "binary data (NUL byte at offset {pos}): not a configuration file"
        ));
    }
    // keepalived reads bytes; comments in legacy encodings must not stop us.
    Ok(String::from_utf8_lossy(bytes).into_owned())
}

/// The lexical lines of a file and its includes, read one at a time: a file's text is
/// held while it is being read, its lines are lexed as they are asked for, so a parser
/// that drops what it has consumed holds O(one statement), not O(file).
pub struct Lines<'l> {
    loader: &'l dyn SourceLoader,
    /// The file being read and the files that include it, outermost first.
    frames: Vec<Frame>,
}

struct Frame {
    /// For loop detection.
    identity: PathBuf,
    file: crate::syntax::FileId,
    dir: PathBuf,
    text: String,
    /// Byte offset of the next physical line; None once the last one was read.
    next: Option<usize>,
    line_no: u32,
    /// Files an `include` glob matched and that are still to be read, in order.
    pending: std::collections::VecDeque<(PathBuf, Span)>,
}

impl<'l> Lines<'l> {
    /// Starts reading `path` (problems opening it go to `diags`; then there are no lines).
    pub fn open(
        path: &Path,
        loader: &'l dyn SourceLoader,
        sources: &mut SourceMap,
        diags: &mut Diagnostics,
    ) -> Self {
        let mut lines = Lines {
            loader,
            frames: Vec::new(),
        };
        lines.enter(path, None, sources, diags);
        lines
    }

    /// Pushes `path` as the file being read, or reports why it cannot be.
    fn enter(
        &mut self,
        path: &Path,
        included_at: Option<Span>,
        sources: &mut SourceMap,
        diags: &mut Diagnostics,
    ) {
        let identity = self.loader.identity(path);
        if self.frames.iter().any(|f| f.identity == identity) {
            diags.error(
                included_at,
                format!("include loop: {} is already being read", path.display()),
            );
            return;
        }
        if self.frames.len() >= MAX_INCLUDE_DEPTH {
            diags.error(
                included_at,
                format!("includes nested deeper than {MAX_INCLUDE_DEPTH} files"),
            );
            return;
        }
        let bytes = match self.loader.read(path) {
            Ok(b) if b.len() > MAX_FILE_BYTES => Err(format!(
                "{}: file is {} bytes; the limit is {MAX_FILE_BYTES}",
                path.display(),
                b.len()
            )),
            Ok(b) => Ok(b),
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        };
        let file = sources.add(path);
        let text = match bytes.and_then(|b| decode(&b).map_err(|e| format!("{}: {e}", path.display()))) {
            Ok(t) => t,
            Err(msg) => {
                diags.error(included_at.or(Some(Span::new(file, 1, 1))), msg);
                return;
            }
        };
        self.frames.push(Frame {
            identity,
            file,
            dir: path.parent().map(Path::to_path_buf).unwrap_or_default(),
            text,
            next: Some(0),
            line_no: 0,
            pending: Default::default(),
        });
    }

    /// The next lexical line, `include` lines expanded where they stand; None at the end.
    pub fn next_line(&mut self, sources: &mut SourceMap, diags: &mut Diagnostics) -> Option<LexLine> {
        loop {
            let top = self.frames.last_mut()?;
            if let Some((path, span)) = top.pending.pop_front() {
                self.enter(&path, Some(span), sources, diags);
                continue;
            }
            let Some(at) = top.next else {
                self.frames.pop();
                continue;
            };
            let rest = top.text.get(at..).unwrap_or("");
            let raw = match rest.find('\n') {
                Some(i) => {
                    top.next = Some(at + i + 1);
                    &rest[..i]
                }
                None => {
                    top.next = None;
                    rest
                }
            };
            top.line_no += 1;
            let Some(line) = lex_physical_line(top.file, top.line_no, raw, diags) else {
                continue;
            };
            let Some((pattern, pspan)) = line.include_pattern() else {
                if line.first_word() == Some("include") {
                    diags.error(
                        line.toks[0].span,
                        "`include` takes exactly one file name or glob pattern",
                    );
                    continue;
                }
                return Some(line);
            };
            if let Some((_, cspan)) = &line.cond {
                diags.error(
                    *cspan,
                    "a conditional (`@`) include is not supported: put the condition on the included lines",
                );
                continue;
            }
            let full = if Path::new(pattern).is_absolute() {
                PathBuf::from(pattern)
            } else {
                top.dir.join(pattern)
            };
            if !has_glob_chars(pattern) {
                self.enter(&full, Some(pspan), sources, diags);
                continue;
            }
            match self.loader.glob(&full) {
                Ok(matches) if matches.is_empty() => {
                    diags.warning(pspan, format!("no file matches include pattern `{pattern}`"))
                }
                Ok(matches) => top.pending.extend(matches.into_iter().map(|m| (m, pspan))),
                Err(e) => diags.error(pspan, format!("bad include pattern `{pattern}`: {e}")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syntax::parser::parse_file;

    #[test]
    fn include_relative_to_including_file_with_glob() {
        let l = MemLoader::new()
            .with(
                "/etc/k/main.conf",
                "include conf.d/*.conf\nglobal_defs {\n include inner.conf\n}\n",
            )
            .with("/etc/k/conf.d/b.conf", "b 2\n")
            .with("/etc/k/conf.d/a.conf", "a 1\n")
            .with("/etc/k/inner.conf", "router_id R\n");
        let p = parse_file(Path::new("/etc/k/main.conf"), &l);
        assert!(p.diags.is_empty(), "{:?}", p.diags);
        let kws: Vec<_> = p.stmts.iter().map(|s| s.keyword().to_string()).collect();
        assert_eq!(kws, ["a", "b", "global_defs"]);
        assert_eq!(p.stmts[2].children()[0].keyword(), "router_id");
        let span = p.stmts[2].children()[0].span();
        assert_eq!(p.sources.locate(span), "/etc/k/inner.conf:1:1");
    }

    #[test]
    fn binary_file_is_refused() {
        let l = MemLoader::new().with("/a.conf", vec![0x7f, 0x45, 0x00, 0x01]);
        let p = parse_file(Path::new("/a.conf"), &l);
        assert!(p.diags.errors().any(|d| d.message.contains("binary data")));
    }
}

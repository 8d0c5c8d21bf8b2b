//! Reading configuration files and expanding `include` lines.
//!
//! `include PATTERN` is expanded where it stands (even inside a block), as keepalived does;
//! a relative pattern is resolved against the directory of the file that contains it, and
//! glob matches are read in sorted order. Loops, missing files, binary files and oversized
//! files are reported at the `include` line. All I/O goes through [`SourceLoader`], so the
//! parser runs the same over the file system and over in-memory files.

use super::lexer::{lex, LexLine};
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

/// Reads `path` and every file it includes, in order, as lexical lines.
pub fn load(
    path: &Path,
    loader: &dyn SourceLoader,
    sources: &mut SourceMap,
    diags: &mut Diagnostics,
) -> Vec<LexLine> {
    let mut out = Vec::new();
    let mut stack = Vec::new();
    load_one(path, None, loader, sources, diags, &mut stack, &mut out);
    out
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

fn load_one(
    path: &Path,
    included_at: Option<Span>,
    loader: &dyn SourceLoader,
    sources: &mut SourceMap,
    diags: &mut Diagnostics,
    stack: &mut Vec<PathBuf>,
    out: &mut Vec<LexLine>,
) {
    let id = loader.identity(path);
    if stack.contains(&id) {
        diags.error(
            included_at,
            format!("include loop: {} is already being read", path.display()),
        );
        return;
    }
    if stack.len() >= MAX_INCLUDE_DEPTH {
        diags.error(
            included_at,
            format!("includes nested deeper than {MAX_INCLUDE_DEPTH} files"),
        );
        return;
    }
    let bytes = match loader.read(path) {
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
    stack.push(id);
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    for line in lex(file, &text, diags) {
        let Some((pattern, pspan)) = line.include_pattern() else {
            if line.first_word() == Some("include") {
                diags.error(
                    line.toks[0].span,
                    "`include` takes exactly one file name or glob pattern",
                );
                continue;
            }
            out.push(line);
            continue;
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
            dir.join(pattern)
        };
        if !has_glob_chars(pattern) {
            load_one(&full, Some(pspan), loader, sources, diags, stack, out);
            continue;
        }
        match loader.glob(&full) {
            Ok(matches) if matches.is_empty() => {
                diags.warning(pspan, format!("no file matches include pattern `{pattern}`"))
            }
            Ok(matches) => {
                for m in matches {
                    load_one(&m, Some(pspan), loader, sources, diags, stack, out);
                }
            }
            Err(e) => diags.error(pspan, format!("bad include pattern `{pattern}`: {e}")),
        }
    }
    stack.pop();
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

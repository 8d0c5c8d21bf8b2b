//! A configuration as the set of files it was read from (main file and includes), so a
//! remote reader (the Raft leader) parses exactly what the operator checked and reports
//! diagnostics with the same `FILE:LINE:COL`.

use crate::cluster::{ClusterConfig, Loaded};
use crate::syntax::loader::{FsLoader, MemLoader, SourceLoader};
use crate::syntax::{parse_file, Parsed};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

/// Reads through another loader and remembers every file it returned.
struct Recording<'a> {
    inner: &'a dyn SourceLoader,
    seen: RefCell<BTreeMap<PathBuf, Vec<u8>>>,
}

impl SourceLoader for Recording<'_> {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let bytes = self.inner.read(path)?;
        self.seen.borrow_mut().insert(path.to_path_buf(), bytes.clone());
        Ok(bytes)
    }

    fn glob(&self, pattern: &Path) -> io::Result<Vec<PathBuf>> {
        self.inner.glob(pattern)
    }

    fn identity(&self, path: &Path) -> PathBuf {
        self.inner.identity(path)
    }
}

/// Loads `path` from disk and returns, besides the result, every file read (path -> text).
pub fn load_file_recorded(path: &Path) -> (Parsed, Loaded, BTreeMap<String, String>) {
    let (parsed, files) = parse_file_recorded(path);
    let loaded = ClusterConfig::from_parsed(&parsed, &[]);
    (parsed, loaded, files)
}

/// Parses `path` from disk (not lowered: a patch) and returns every file read.
pub fn parse_file_recorded(path: &Path) -> (Parsed, BTreeMap<String, String>) {
    let rec = Recording {
        inner: &FsLoader,
        seen: RefCell::new(BTreeMap::new()),
    };
    let parsed = parse_file(path, &rec);
    let files = rec
        .seen
        .into_inner()
        .into_iter()
        .map(|(p, b)| {
            (
                p.to_string_lossy().into_owned(),
                String::from_utf8_lossy(&b).into_owned(),
            )
        })
        .collect();
    (parsed, files)
}

/// Parses a bundle received whole: `main` and the files it includes, all from `files`.
pub fn load_bundle(main: &str, files: &BTreeMap<String, String>) -> (Parsed, Loaded) {
    let parsed = parse_bundle(main, files);
    let loaded = ClusterConfig::from_parsed(&parsed, &[]);
    (parsed, loaded)
}

/// Parses a bundle received whole without lowering it (a patch is lowered against the
/// committed configuration).
pub fn parse_bundle(main: &str, files: &BTreeMap<String, String>) -> Parsed {
    let mut mem = MemLoader::new();
    for (p, text) in files {
        mem = mem.with(p.as_str(), text.as_bytes().to_vec());
    }
    parse_file(Path::new(main), &mem)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recorded_bundle_parses_the_same_remotely() {
        let dir = std::env::temp_dir().join(format!("ha-bundle-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("conf.d")).unwrap();
        std::fs::write(
            dir.join("main.conf"),
            "include conf.d/*.conf\nvrrp_instance VI_1 {\n interface eth0\n virtual_router_id 300\n}\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("conf.d/vs.conf"),
            "virtual_server 198.18.116.134 80 {\n lb_kind DR\n real_server 198.18.116.131 80 {\n }\n}\n",
        )
        .unwrap();
        let main = dir.join("main.conf");
        let (p1, l1, files) = load_file_recorded(&main);
        assert_eq!(files.len(), 2);
        let (p2, l2) = load_bundle(&main.to_string_lossy(), &files);
        assert_eq!(l1.cluster, l2.cluster);
        assert_eq!(l1.diags.render(&p1.sources), l2.diags.render(&p2.sources));
        assert!(l2.diags.render(&p2.sources).contains("main.conf:4:"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

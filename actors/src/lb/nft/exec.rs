//! Runs nft scripts and table listings, in-process through libnftables where the library
//! can be loaded, else with the `nft` program.
//!
//! In-process, no process is started per change (about 4 ms each); the context is renewed
//! after each run so that its copy of the ruleset (its cache) is not held between runs. The library is
//! loaded at run time (`libnftables.so.1`, shipped by Debian's `nftables` package beside
//! the `nft` program), so a host without it still works through the program, and the IPVS
//! backend does not need it at all.

use std::ffi::{c_char, c_int, c_uint, c_void, CStr, CString};
use std::io::Write;
use std::process::{Command, Stdio};

/// How scripts reach the kernel.
pub enum Nft {
    Lib(LibNft),
    Program(String),
}

impl Nft {
    /// libnftables if it loads (and `HANODE_NFT_PROGRAM` is not set), else `nft`.
    pub fn open() -> Nft {
        if std::env::var_os("HANODE_NFT_PROGRAM").is_none() {
            match LibNft::load() {
                Ok(lib) => return Nft::Lib(lib),
                Err(e) => tracing::info!("libnftables not loaded ({e}); running the nft program"),
            }
        }
        Nft::Program("nft".into())
    }

    /// What runs the scripts, for logs and status.
    pub fn kind(&self) -> &'static str {
        match self {
            Nft::Lib(_) => "libnftables",
            Nft::Program(_) => "nft program",
        }
    }

    /// Runs `script` as one transaction. The error is nft's own text (first lines).
    pub fn run(&mut self, script: &str) -> Result<(), String> {
        match self {
            Nft::Lib(lib) => lib.run(script),
            Nft::Program(p) => run_program(p, script),
        }
    }

    /// `list table FAMILY NAME` as JSON; None if the table does not exist.
    pub fn list_json(&mut self, table: &str) -> Result<Option<String>, String> {
        // Listings always go through the program: libnftables prints its JSON warnings
        // ("stmt ops map have no json callback") straight to the process's stderr, which
        // is the daemon's log. A listing is only needed at start and for drift checks.
        let program = match self {
            Nft::Lib(_) => "nft",
            Nft::Program(p) => p.as_str(),
        };
        let mut args = vec!["-j", "list", "table"];
        args.extend(table.split_whitespace());
        let result = list_program(program, &args);
        match result {
            Ok(out) => Ok(Some(out)),
            Err(e) if e.contains("No such file or directory") => Ok(None),
            Err(e) => Err(e
                .lines()
                .filter(|l| !l.starts_with("warning:"))
                .collect::<Vec<_>>()
                .join(" ")
                .trim()
                .to_string()),
        }
    }
}

impl Nft {
    /// `nft -j list tables`: every table's family and name.
    pub fn list_tables_json(&mut self) -> Result<String, String> {
        let program = match self {
            Nft::Lib(_) => "nft",
            Nft::Program(p) => p.as_str(),
        };
        list_program(program, &["-j", "list", "tables"])
    }
}

/// nft names the offending line: keep the first error line and the text it points at.
fn first_lines(err: &str) -> String {
    let first: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).take(2).collect();
    first.join(" | ")
}

fn run_program(nft: &str, script: &str) -> Result<(), String> {
    let mut child = Command::new(nft)
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{nft}: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .map_err(|e| format!("{nft} stdin: {e}"))?;
    }
    let out = child.wait_with_output().map_err(|e| format!("{nft}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(first_lines(&String::from_utf8_lossy(&out.stderr)))
    }
}

fn list_program(nft: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(nft)
        .args(args)
        .output()
        .map_err(|e| format!("{nft}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

type CtxNew = unsafe extern "C" fn(c_uint) -> *mut c_void;
type CtxFree = unsafe extern "C" fn(*mut c_void);
type CtxInt = unsafe extern "C" fn(*mut c_void) -> c_int;
type CtxBuf = unsafe extern "C" fn(*mut c_void) -> *const c_char;
type RunCmd = unsafe extern "C" fn(*mut c_void, *const c_char) -> c_int;

/// One libnftables context (`struct nft_ctx`), its output and errors buffered.
pub struct LibNft {
    ctx: *mut c_void,
    new: CtxNew,
    buffer_output: CtxInt,
    buffer_error: CtxInt,
    free: CtxFree,
    run: RunCmd,
    output: CtxBuf,
    error: CtxBuf,
    /// Kept last: the functions above point into it.
    _lib: libloading::Library,
}

// The context is only used through `&mut self` (the backend sits behind a mutex), and
// libnftables keeps no thread-local state for it.
unsafe impl Send for LibNft {}

impl LibNft {
    pub fn load() -> Result<LibNft, String> {
        // SAFETY: loading Debian's libnftables runs no initialiser with preconditions.
        let lib = unsafe { libloading::Library::new("libnftables.so.1") }.map_err(|e| e.to_string())?;
        // SAFETY: the signatures are libnftables' public API (nftables/libnftables.h).
        unsafe {
            let new: CtxNew = *lib.get(b"nft_ctx_new\0").map_err(|e| e.to_string())?;
            let free: CtxFree = *lib.get(b"nft_ctx_free\0").map_err(|e| e.to_string())?;
            let run: RunCmd = *lib.get(b"nft_run_cmd_from_buffer\0").map_err(|e| e.to_string())?;
            let buffer_output: CtxInt = *lib.get(b"nft_ctx_buffer_output\0").map_err(|e| e.to_string())?;
            let buffer_error: CtxInt = *lib.get(b"nft_ctx_buffer_error\0").map_err(|e| e.to_string())?;
            let output: CtxBuf = *lib
                .get(b"nft_ctx_get_output_buffer\0")
                .map_err(|e| e.to_string())?;
            let error: CtxBuf = *lib
                .get(b"nft_ctx_get_error_buffer\0")
                .map_err(|e| e.to_string())?;
            let ctx = fresh_ctx(new, buffer_output, buffer_error, free)?;
            Ok(LibNft {
                ctx,
                new,
                buffer_output,
                buffer_error,
                free,
                run,
                output,
                error,
                _lib: lib,
            })
        }
    }

    /// Runs one buffer of commands (one transaction).
    fn run(&mut self, commands: &str) -> Result<(), String> {
        let text = CString::new(commands).map_err(|_| "nft script holds a NUL byte".to_string())?;
        // SAFETY: `ctx` is valid until drop; the buffers returned are NUL-terminated and
        // owned by the context, copied out before the next call.
        unsafe {
            let rc = (self.run)(self.ctx, text.as_ptr());
            // Read (and so reset) both buffers every time.
            let _ = buffer(self.output, self.ctx);
            let err = buffer(self.error, self.ctx);
            // The context keeps a copy of the ruleset it read (about 1 KB per service at
            // 10,000s of services). Our own netlink batches move the ruleset's generation
            // between two runs anyway, so that copy would be read again: a fresh context
            // holds nothing meanwhile.
            if let Ok(fresh) = fresh_ctx(self.new, self.buffer_output, self.buffer_error, self.free) {
                (self.free)(self.ctx);
                self.ctx = fresh;
            }
            if rc == 0 {
                Ok(())
            } else {
                Err(first_lines(&err))
            }
        }
    }
}

/// A new context with its output and errors buffered.
///
/// # Safety
/// The functions are libnftables' own.
unsafe fn fresh_ctx(
    new: CtxNew,
    buffer_output: CtxInt,
    buffer_error: CtxInt,
    free: CtxFree,
) -> Result<*mut c_void, String> {
    let ctx = new(0);
    if ctx.is_null() {
        return Err("nft_ctx_new failed".into());
    }
    if buffer_output(ctx) != 0 || buffer_error(ctx) != 0 {
        free(ctx);
        return Err("nft_ctx_buffer_output/error failed".into());
    }
    Ok(ctx)
}

/// # Safety
/// `ctx` must be a live context with the buffer enabled.
unsafe fn buffer(get: CtxBuf, ctx: *mut c_void) -> String {
    let p = get(ctx);
    if p.is_null() {
        String::new()
    } else {
        CStr::from_ptr(p).to_string_lossy().into_owned()
    }
}

impl Drop for LibNft {
    fn drop(&mut self) {
        // SAFETY: created by nft_ctx_new, freed once.
        unsafe { (self.free)(self.ctx) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_check_names_the_line_with_either_runner() {
        // `-c`-like: a syntax error is refused before anything reaches the kernel, so this
        // needs no privileges and changes nothing.
        let bad = "add table inet hanode_probe\nadd chain inet hanode_probe c { type nonsense hook x; }\n";
        let mut runners = vec![Nft::Program("nft".into())];
        if let Ok(lib) = LibNft::load() {
            runners.push(Nft::Lib(lib));
        }
        for mut r in runners {
            if matches!(&r, Nft::Program(_)) && Command::new("nft").arg("--version").output().is_err() {
                continue;
            }
            let e = r.run(bad).expect_err("a syntax error is refused");
            assert!(e.contains("Error"), "{}: {e}", r.kind());
            assert!(
                e.contains("nonsense") || e.contains("syntax"),
                "{}: {e}",
                r.kind()
            );
        }
    }
}

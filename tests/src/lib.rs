//! Harness for end-to-end tests: starts `hanode` processes on loopback ports, runs
//! `hactl`, reads `/v1/*`. Every process is killed when its handle drops (and by the
//! kernel if the test thread dies: `PR_SET_PDEATHSIG`), every directory is temporary.
//!
//! The binaries come from the same target directory as the test (`cargo build --bins`
//! runs before the suite in `tests/run.sh`).

use ha_config::api::{HistoryItem, StatusResponse};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// `target/debug` (or release) of the running test.
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let mut dir = exe.parent().expect("exe dir").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    for b in ["hanode", "hactl"] {
        assert!(
            dir.join(b).exists(),
            "{} missing: run `cargo build --workspace --bins` before the end-to-end tests",
            dir.join(b).display()
        );
    }
    dir
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

pub mod chaos;
pub mod chaos_schedule;
pub mod conn_harness;
pub mod fuzz;
pub mod ipvs_cluster;
pub mod netns;
pub mod scale;
pub mod scale_lab;
pub mod seed_cluster;
pub mod seed_lab;
pub mod vip_watch;
pub mod vm;
pub mod vrrp_lab;

pub(crate) fn die_with_parent(cmd: &mut Command) {
    // SAFETY: prctl is async-signal-safe; the closure runs in the child before exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

/// One `hanode` process (restartable with the same data).
pub struct Node {
    pub name: String,
    pub addr: String,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    extra: Vec<String>,
    child: Option<Child>,
}

impl Node {
    pub fn new(root: &Path, name: &str, extra: &[&str]) -> Node {
        let addr = format!("127.0.0.1:{}", free_port());
        Node {
            name: name.to_string(),
            addr,
            data_dir: root.join(name),
            log: root.join(format!("{name}.log")),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            child: None,
        }
    }

    /// Starts the process with `args` added to the node's own flags.
    pub fn start(&mut self, args: &[&str]) {
        assert!(self.child.is_none(), "{} already running", self.name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let mut cmd = Command::new(bin_dir().join("hanode"));
        cmd.arg("--name")
            .arg(&self.name)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--listen")
            .arg(&self.addr)
            // On the host's own network: Raft and the API only, never its kernel.
            .arg("--control-plane-only")
            .args(&self.extra)
            .args(args)
            .env("RUST_LOG", "info,openraft=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        die_with_parent(&mut cmd);
        self.child = Some(cmd.spawn().expect("spawn hanode"));
    }

    /// `kill -9`.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    /// The running process's id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn status(&self) -> Option<StatusResponse> {
        let (code, body) = http(&self.addr, "GET", "/v1/status", b"").ok()?;
        if code != 200 {
            return None;
        }
        serde_json::from_slice(&body).ok()
    }

    /// This director's status once it has applied `version` (a long poll,
    /// `GET /v1/status?wait_version=`), or when `within` is up; `None` if it cannot answer.
    pub fn status_at(&self, version: u64, within: Duration) -> Option<StatusResponse> {
        let path = format!("/v1/status?wait_version={version}&wait_ms={}", within.as_millis());
        let (code, body) = http(&self.addr, "GET", &path, b"").ok()?;
        if code != 200 {
            return None;
        }
        serde_json::from_slice(&body).ok()
    }

    /// Waits (long polls) until this director has applied `version`; panics after `within`.
    pub fn wait_applied(&self, version: u64, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.status_at(version, left) {
                Some(s) if s.version >= version => return,
                _ if left.is_zero() => {
                    panic!("{}: version {version} not applied within {within:?}", self.name)
                }
                Some(_) => {}
                None => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    }

    pub fn history(&self) -> Vec<HistoryItem> {
        let (code, body) = http(&self.addr, "GET", "/v1/history?limit=10000", b"").expect("history");
        assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
        serde_json::from_slice(&body).expect("history json")
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            // The test failed: show what this director said (the directory goes away).
            let log = self.log_text();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(400)..];
            eprintln!(
                "--- last lines of {} ({}):\n{}",
                self.name,
                self.log.display(),
                tail.join("\n")
            );
        }
    }
}

/// A minimal blocking HTTP/1.1 exchange (the server always sends Content-Length).
pub fn http(addr: &str, method: &str, path: &str, body: &[u8]) -> std::io::Result<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect_timeout(&addr.parse().expect("addr"), Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())?;
    // A server may answer (413) and close before reading a large body: keep its answer.
    let _ = s.write_all(body);
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no header end"))?;
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    let code: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line: {head}")))?;
    Ok((code, buf[split + 4..].to_vec()))
}

/// Runs `hactl ARGS` against `cluster` (comma-separated addresses).
pub fn hactl(cluster: &str, args: &[&str]) -> Output {
    let mut cmd = Command::new(bin_dir().join("hactl"));
    cmd.args(args)
        .env("HACTL_CLUSTER", cluster)
        .env("HACTL_AUTHOR", "e2e-test")
        .stdin(Stdio::null());
    die_with_parent(&mut cmd);
    cmd.output().expect("run hactl")
}

pub fn text(o: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Polls `f` every 20 ms until it returns `Some`, or panics with `what` after `within`.
pub fn wait_for<T>(within: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        if start.elapsed() > within {
            panic!("timed out after {within:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A cluster file in keepalived.conf syntax for the seed's topology (lab addresses):
/// `n_vs` virtual servers with `n_rs` real servers each; `generation` varies the weights
/// so every generation has a different hash.
pub fn cluster_conf(generation: u32, n_vs: u32, n_rs: u32) -> String {
    cluster_conf_by(n_vs, n_rs, |_| generation)
}

/// [`cluster_conf`] with each virtual server `v` at its own generation `gen_of(v)`.
pub fn cluster_conf_by(n_vs: u32, n_rs: u32, gen_of: impl Fn(u32) -> u32) -> String {
    let mut s = String::from(
        "global_defs {\n    router_id LVS_DEVEL\n}\n\nvrrp_instance VI_1 {\n    @lvs01 state MASTER\n    @lvs02 state BACKUP\n    @lvs03 state BACKUP\n    interface ens33\n    virtual_router_id 51\n    @lvs01 priority 100\n    @lvs02 priority 90\n    @lvs03 priority 80\n    advert_int 1\n    authentication {\n        auth_type PASS\n        auth_pass 1111\n    }\n    virtual_ipaddress {\n        198.18.116.134\n    }\n}\n",
    );
    for v in 0..n_vs {
        s.push('\n');
        s.push_str(&http_vs_block(v, gen_of(v), n_rs));
    }
    s
}

/// Virtual server `v` of [`cluster_conf`] at `generation` (its weights follow it).
pub fn http_vs_block(v: u32, generation: u32, n_rs: u32) -> String {
    let mut s = format!(
        "virtual_server 198.18.116.134 {} {{\n    delay_loop 6\n    lb_algo rr\n    lb_kind DR\n    protocol TCP\n",
        80 + v
    );
    for r in 0..n_rs {
        s.push_str(&format!(
            "    real_server 198.18.117.{} {} {{\n        weight {}\n        HTTP_GET {{\n            url {{\n                path /\n                status_code 200\n            }}\n            connect_timeout 3\n            retry 3\n            delay_before_retry 3\n        }}\n    }}\n",
            10 + r,
            80 + v,
            1 + generation % 60_000 + r
        ));
    }
    s.push_str("}\n");
    s
}

/// Starts `names` (control-plane-only, with `extra` flags), the first bootstrapping and
/// the others joining it; waits until the first sees them all as voters.
pub fn start_voters(root: &Path, names: &[&str], extra: &[&str]) -> Vec<Node> {
    let mut nodes: Vec<Node> = names.iter().map(|n| Node::new(root, n, extra)).collect();
    nodes[0].start(&["--bootstrap"]);
    let seed = nodes[0].addr.clone();
    for n in nodes.iter_mut().skip(1) {
        n.start(&["--join", &seed]);
    }
    wait_for(Duration::from_secs(60), "every director a voter", || {
        let s = nodes[0].status()?;
        (s.members.iter().filter(|m| m.role == "voter").count() == names.len()).then_some(())
    });
    nodes
}

/// Parses `committed: version N hash H` from `hactl propose`'s output (which must succeed).
pub fn committed(out: &Output) -> (u64, String) {
    assert!(out.status.success(), "{}", text(out));
    commit_line(out)
}

/// Parses `committed: version N hash H` from `hactl propose`'s output, whatever its exit
/// status (`--wait` exits 3 after a commit some director did not apply in time).
pub fn commit_line(out: &Output) -> (u64, String) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find(|l| l.starts_with("committed: version "))
        .unwrap_or_else(|| panic!("no commit line:\n{}", text(out)));
    let mut w = line.split_whitespace();
    let version = w.nth(2).and_then(|v| v.parse().ok()).expect("version");
    let hash = w.nth(1).expect("hash").to_string();
    (version, hash)
}

/// A temporary directory for one test's nodes and files.
pub fn temp_root(test: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("e2e-{test}-"))
        .tempdir()
        .expect("temp dir")
}

//! Benchmark (issue 20): the control plane at scale. A generated cluster file of N virtual
//! servers x 4 real servers (`TCP_CHECK` each, `wrr`, DR), then:
//! - `hactl check` on it (wall time, peak RSS), and `keepalived -t` on the same file beside;
//! - `hactl check` on a file where every real server has an error;
//! - three `--control-plane-only` directors on loopback (fsync on): the first `hactl propose
//!   -f`, then K proposals that each change one weight, timed from the call until all three
//!   directors report the new version; the data directories' growth per version; the RSS of
//!   each director;
//! - then (snapshots every 2K+50 versions, so none while measuring) patches until the leader
//!   purged its log, a late joiner, and a follower wiped and added again: the time each
//!   takes to reach the last version, from a snapshot.
//!
//! With `--full`: three full directors in namespaces instead (nftables data plane, a TCP
//! check on every real server; see `e2e::scale_lab`): the first load, then K one-weight
//! patches while the 120,000 checkers make their first probes and K more once every
//! checker has probed (steady state), each timed from the call until every director's
//! kernel table is at the new version (the `sync` event of that version on each), each
//! sync's own duration, and each director's RSS once every checker has probed.
//!
//! `cargo build --release --workspace --bins && target/release/config-scale-bench [--full] [N] [K]`
//! (`config-scale-bench --write N FILE` writes the cluster file alone, for profiling).

use e2e::scale::{rs_addr, scale_conf, vs_addr, vs_block};
use e2e::*;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn main() {
    let all: Vec<String> = std::env::args().skip(1).collect();
    if let [flag, n, path] = all.as_slice() {
        if flag == "--write" {
            // The bench's cluster file alone (for profiling `hactl check` and keepalived -t).
            let n: u32 = n.parse().expect("--write N FILE");
            std::fs::write(path, scale_conf(n, 4, |_, _| 10)).expect("write cluster file");
            return;
        }
    }
    let full = all.iter().any(|a| a == "--full");
    let mut args = all.into_iter().filter(|a| a != "--full");
    let n: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let k: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(20);
    if full {
        full_directors(n, k);
        return;
    }
    let root = temp_root("scale");
    let file = root.path().join("cluster.conf");
    let base = scale_conf(n, 4, |_, _| 10);
    std::fs::write(&file, &base).expect("write cluster file");
    println!(
        "config: {n} virtual servers x 4 real servers (TCP_CHECK), {:.1} MB of keepalived.conf",
        base.len() as f64 / 1e6
    );

    let hactl_bin = bin_dir().join("hactl");
    let (t, rss, ok) = timed(Command::new(&hactl_bin).arg("check").arg(&file));
    println!(
        "hactl check: {:.2} s, peak RSS {} MB (exit ok: {ok})",
        t,
        rss / 1024
    );
    if let Ok(ka) = which("keepalived") {
        // keepalived -t reads only the file it is given; it needs no privileges to parse.
        let (t, rss, ok) = timed(Command::new(ka).args(["-t", "-f"]).arg(&file));
        println!(
            "keepalived -t: {:.2} s, peak RSS {} MB (exit ok: {ok})",
            t,
            rss / 1024
        );
    }
    let bad_file = root.path().join("errors.conf");
    std::fs::write(&bad_file, base.replace("weight 10", "weight ten")).expect("write");
    let (t, rss, _) = timed(Command::new(&hactl_bin).arg("check").arg(&bad_file));
    println!(
        "hactl check, {} errors: {:.2} s, peak RSS {} MB",
        n * 4,
        t,
        rss / 1024
    );

    // A snapshot after the measured versions (so their growth is the history's alone),
    // for the late joiner and the wiped director at the end to catch up from.
    let settings = root.path().join("raft.toml");
    let snapshot_logs = 2 * u64::from(k) + 50;
    std::fs::write(
        &settings,
        format!("[raft]\nsnapshot_logs = {snapshot_logs}\nkeep_logs = 2\n"),
    )
    .expect("write");
    let settings = settings.to_str().expect("path").to_string();
    let mut nodes = start_voters(
        root.path(),
        &["lvs01", "lvs02", "lvs03"],
        &["--config", &settings],
    );
    let cluster: String = nodes.iter().map(|x| x.addr.clone()).collect::<Vec<_>>().join(",");
    // Each director answers once it has applied the version (a long poll).
    let wait_all = |v: u64| {
        for x in &nodes {
            x.wait_applied(v, Duration::from_secs(120));
        }
    };

    let propose_file = |reason: &str| {
        let out = hactl(
            &cluster,
            &["propose", "-f", file.to_str().expect("path"), "--reason", reason],
        );
        assert!(out.status.success(), "{}", text(&out));
    };
    let start = Instant::now();
    propose_file("first load");
    let committed = start.elapsed();
    wait_all(1);
    println!(
        "first load: committed in {:.2} s, applied on all three in {:.2} s",
        committed.as_secs_f64(),
        start.elapsed().as_secs_f64()
    );
    let sizes0 = dir_bytes(root.path());
    let rss0: Vec<u64> = nodes.iter().map(rss_kb).collect();

    let mut lat = Vec::new();
    for g in 1..=k {
        // One weight changed in virtual server g (the others keep theirs).
        let target = g * 7919 % n;
        let conf = scale_conf(n, 4, |i, r| if i == target && r == 0 { 10 + g } else { 10 });
        std::fs::write(&file, &conf).expect("write");
        let start = Instant::now();
        propose_file("one weight");
        wait_all(1 + g as u64);
        lat.push(start.elapsed());
        if g == 1 {
            let (ip, port) = vs_addr(target);
            println!(
                "  change: virtual_server {ip} {port} real_server {} weight {}",
                rs_addr(target, 0),
                10 + g
            );
        }
    }
    report(
        "one-weight propose (hactl propose -f) -> applied on all three",
        lat,
    );
    let grown = dir_bytes(root.path()).saturating_sub(sizes0);
    println!(
        "data directories (three directors): {:.1} KB per one-weight version each",
        grown as f64 / 1024.0 / k as f64 / 3.0
    );

    // The same change without the whole file: `hactl propose --patch` with one block.
    let patch = root.path().join("patch.conf");
    let sizes1 = dir_bytes(root.path());
    let mut lat = Vec::new();
    for g in 1..=k {
        let target = g * 104_729 % n;
        std::fs::write(&patch, vs_block(target, 4, |r| if r == 0 { 100 + g } else { 10 })).expect("write");
        let start = Instant::now();
        let out = hactl(&cluster, &["propose", "--patch", patch.to_str().expect("path")]);
        assert!(out.status.success(), "{}", text(&out));
        wait_all(1 + (k + g) as u64);
        lat.push(start.elapsed());
    }
    report(
        "one-weight propose (hactl propose --patch, one block) -> applied on all three",
        lat,
    );
    let grown = dir_bytes(root.path()).saturating_sub(sizes1);
    println!(
        "data directories (three directors): {:.1} KB per patched version each",
        grown as f64 / 1024.0 / k as f64 / 3.0
    );
    let rss1: Vec<u64> = nodes.iter().map(rss_kb).collect();
    println!(
        "director RSS after first load: {} MB; after {k} changes: {} MB",
        rss0.iter()
            .map(|r| (r / 1024).to_string())
            .collect::<Vec<_>>()
            .join("/"),
        rss1.iter()
            .map(|r| (r / 1024).to_string())
            .collect::<Vec<_>>()
            .join("/")
    );

    // A late joiner, then a director whose disk was wiped: each catches up from a
    // snapshot of the whole configuration (more patches first, past the threshold).
    let leader = wait_for(Duration::from_secs(30), "a leader", || {
        nodes
            .iter()
            .position(|x| x.status().is_some_and(|s| s.role == "leader"))
    });
    let mut last = 1 + 2 * u64::from(k);
    let purged = |nodes: &[Node]| {
        nodes[leader]
            .status()
            .and_then(|s| s.purged_index)
            .is_some_and(|p| p > 5)
    };
    while !purged(&nodes) && last < 4 * snapshot_logs {
        std::fs::write(
            &patch,
            vs_block(1, 4, |r| if r == 0 { 200 + last as u32 } else { 10 }),
        )
        .expect("write");
        let out = hactl(&cluster, &["propose", "--patch", patch.to_str().expect("path")]);
        assert!(out.status.success(), "{}", text(&out));
        last += 1;
        wait_all(last);
    }
    wait_for(
        Duration::from_secs(60),
        "a snapshot and a purged log on the leader",
        || purged(&nodes).then_some(()),
    );
    let caught_up = |node: &Node, start: Instant| -> (f64, bool) {
        wait_for(Duration::from_secs(600), "caught up", || {
            node.status().is_some_and(|s| s.version >= last).then_some(())
        });
        (
            start.elapsed().as_secs_f64(),
            node.log_text().contains("snapshot installed"),
        )
    };
    let mut late = Node::new(root.path(), "lvs04", &["--config", &settings]);
    let start = Instant::now();
    late.start(&["--join", &nodes[leader].addr]);
    let (t, snap) = caught_up(&late, start);
    println!("late joiner: at version {last} {t:.2} s after it started (from a snapshot: {snap})");
    nodes.push(late);
    let wiped = (0..3).find(|i| *i != leader).unwrap_or(2);
    nodes[wiped].kill9();
    std::fs::remove_dir_all(&nodes[wiped].data_dir).expect("wipe");
    let seed = nodes[leader].addr.clone();
    let start = Instant::now();
    nodes[wiped].start(&["--join", &seed]);
    let others: Vec<String> = (0..nodes.len())
        .filter(|i| *i != wiped)
        .map(|i| nodes[i].addr.clone())
        .collect();
    let out = hactl(
        &others.join(","),
        &["cluster", "remove", &nodes[wiped].name.clone()],
    );
    assert!(out.status.success(), "{}", text(&out));
    let (t, snap) = caught_up(&nodes[wiped], start);
    println!(
        "wiped director ({}): removed, joined again, at version {last} {t:.2} s after it started (from a snapshot: {snap})",
        nodes[wiped].name
    );
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Follows each director's event journal from where it was last read.
struct Journals {
    next: [u64; 3],
}

impl Journals {
    /// Waits until each director recorded an error-free `sync` of `version`; returns each
    /// one's (time in ms, duration in us).
    fn synced(&mut self, lab: &e2e::scale_lab::ScaleLab, version: u64) -> Vec<(u64, u64)> {
        let mut found: [Option<(u64, u64)>; 3] = [None; 3];
        let start = Instant::now();
        while found.iter().any(Option::is_none) {
            assert!(
                start.elapsed() < Duration::from_secs(600),
                "version {version} never synced"
            );
            for (i, f) in found.iter_mut().enumerate() {
                if f.is_some() {
                    continue;
                }
                for e in lab.events_from(i, self.next[i]) {
                    if let Some(seq) = e["seq"].as_u64() {
                        self.next[i] = seq + 1;
                    }
                    let d = &e["detail"];
                    if f.is_none() && e["kind"] == "sync" && d["version"] == version && d["errors"] == 0 {
                        let us = e["summary"]
                            .as_str()
                            .and_then(|s| s.split(" ops in ").nth(1))
                            .and_then(|s| s.split(' ').next())
                            .and_then(|s| s.parse().ok())
                            .unwrap_or(0);
                        *f = Some((e["at_ms"].as_u64().unwrap_or(0), us));
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        found.into_iter().flatten().collect()
    }
}

/// Three full directors (see the module doc).
fn full_directors(n: u32, k: u32) {
    use e2e::scale_lab::{self, ScaleLab};
    let lab = ScaleLab::start("bench-full", &[]);
    let file = lab.path().join("cluster.conf");
    std::fs::write(&file, scale_lab::conf(n, |_, _| 10)).expect("write");
    println!(
        "full directors: {n} virtual servers x 4 real servers, {} TCP checks per director (nftables)",
        n * 4
    );
    let mut journals = Journals { next: [1; 3] };
    let t0 = now_ms();
    let out = lab.hactl(&[
        "propose",
        "-f",
        file.to_str().expect("path"),
        "--reason",
        "first load",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let (v1, _) = committed(&out);
    let synced = journals.synced(&lab, v1);
    let last = synced.iter().map(|(at, _)| *at).max().unwrap_or(t0);
    println!(
        "first load: in every kernel {:.2} s after the call; full syncs {} ms",
        (last - t0) as f64 / 1e3,
        synced
            .iter()
            .map(|(_, us)| (us / 1000).to_string())
            .collect::<Vec<_>>()
            .join("/")
    );
    let patch = lab.path().join("patch.conf");
    let mut round = 0;
    let mut patches = |journals: &mut Journals, when: &str| {
        let (mut lat, mut sync_us) = (Vec::new(), Vec::new());
        for _ in 1..=k {
            round += 1;
            let g = round;
            let target = g * 104_729 % n;
            std::fs::write(
                &patch,
                scale_lab::vs_block(target, |r| if r == 0 { 100 + g } else { 10 }),
            )
            .expect("write");
            let t = now_ms();
            let out = lab.hactl(&["propose", "--patch", patch.to_str().expect("path")]);
            assert!(out.status.success(), "{}", text(&out));
            let (v, _) = committed(&out);
            let synced = journals.synced(&lab, v);
            let last = synced.iter().map(|(at, _)| *at).max().unwrap_or(t);
            lat.push(Duration::from_millis(last.saturating_sub(t)));
            sync_us.extend(synced.iter().map(|(_, us)| Duration::from_micros(*us)));
        }
        report(
            &format!("one-weight patch -> in all three kernels (hactl call included), {when}"),
            lat,
        );
        report("  of which the kernel sync (nftables) on each director", sync_us);
    };
    patches(&mut journals, "during the checkers' first minute");
    // Every probe has run once a warmup (60 s) after the first load.
    let warm = Duration::from_millis((t0 + 65_000).saturating_sub(now_ms()));
    std::thread::sleep(warm);
    let pids: Vec<u32> = lab.nodes.iter().flatten().map(|p| p.child.id()).collect();
    let rss = |pids: &[u32]| -> String {
        pids.iter()
            .map(|p| rss_of(*p).map(|kb| (kb / 1024).to_string()).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("/")
    };
    let (rss_warm, cpu0, at0) = (
        rss(&pids),
        pids.iter().map(|p| cpu_ticks(*p)).collect::<Vec<_>>(),
        Instant::now(),
    );
    patches(&mut journals, "steady (every checker running)");
    // The checkers' CPU over 20 s of steady state.
    std::thread::sleep(Duration::from_secs(20).saturating_sub(at0.elapsed()));
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let secs = at0.elapsed().as_secs_f64();
    let cpu: Vec<String> = pids
        .iter()
        .zip(&cpu0)
        .map(|(p, c0)| format!("{:.0}", (cpu_ticks(*p) - c0) as f64 / ticks / secs * 100.0))
        .collect();
    println!(
        "director RSS with every checker running ({} TCP checks each): {} MB; {:.0} s later {} MB",
        n * 4,
        rss_warm,
        secs,
        rss(&pids)
    );
    println!(
        "director CPU with every checker running: {} % of a core over {secs:.0} s",
        cpu.join("/")
    );
    let hwm: Vec<String> = pids
        .iter()
        .map(|p| {
            status_kb(*p, "VmHWM:")
                .map(|kb| (kb / 1024).to_string())
                .unwrap_or_default()
        })
        .collect();
    println!(
        "director peak RSS (the first load's full sync): {} MB",
        hwm.join("/")
    );
}

/// A process's resident set (KiB).
fn rss_of(pid: u32) -> Option<u64> {
    status_kb(pid, "VmRSS:")
}

/// A `/proc/PID/status` figure in KiB (`VmRSS:`, `VmHWM:`).
fn status_kb(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
}

/// A process's user and system time, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // After the command's closing parenthesis: state is field 3, utime 14, stime 15.
    let rest = s.rsplit_once(')').map(|x| x.1).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let n = |i: usize| f.get(i).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
    n(11) + n(12)
}

/// `label: p50 …, p99 …, max …` over `lat`.
fn report(label: &str, mut lat: Vec<Duration>) {
    lat.sort();
    let pct = |p: f64| {
        lat[((lat.len() as f64 * p).ceil() as usize)
            .saturating_sub(1)
            .min(lat.len() - 1)]
    };
    println!(
        "{label}: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} changes)",
        ms(pct(0.5)),
        ms(pct(0.99)),
        ms(lat[lat.len() - 1]),
        lat.len()
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn which(name: &str) -> Result<std::path::PathBuf, ()> {
    for dir in ["/usr/sbin", "/usr/bin", "/sbin", "/bin"] {
        let p = Path::new(dir).join(name);
        if p.exists() {
            return Ok(p);
        }
    }
    Err(())
}

/// Runs a command to completion: wall seconds, peak RSS (KiB), success.
// The child is reaped by wait4 (which also gives its peak RSS), not by Child::wait.
#[allow(clippy::zombie_processes)]
fn timed(cmd: &mut Command) -> (f64, u64, bool) {
    let start = Instant::now();
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let mut status = 0;
    // SAFETY: plain wait4 on our own child, with valid out-pointers.
    let usage = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::wait4(child.id() as i32, &mut status, 0, &mut ru);
        ru
    };
    let ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    (start.elapsed().as_secs_f64(), usage.ru_maxrss as u64, ok)
}

fn rss_kb(node: &Node) -> u64 {
    node.pid().and_then(rss_of).unwrap_or(0)
}

fn dir_bytes(p: &Path) -> u64 {
    let mut total = 0;
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            let Ok(md) = e.metadata() else { continue };
            if md.is_dir() {
                total += dir_bytes(&e.path());
            } else {
                total += md.len();
            }
        }
    }
    total
}

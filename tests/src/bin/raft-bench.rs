//! Benchmark (issue 4): three `hanode` processes on loopback, fsync on, N sequential
//! proposals of a realistic cluster config (10 virtual servers x 4 real servers); latency
//! from the propose call until all three directors have applied it.
//!
//! With `--patch`, each proposal after a first load is one virtual server's block (its
//! weights changed) sent as a patch (`hactl propose --patch`'s request), with the whole
//! configuration's hash: a small change, as an operator changing one thing sends it.
//!
//! `cargo build --release --workspace --bins && cargo run --release -p e2e --bin raft-bench [-- N] [--patch]`

use e2e::*;
use ha_config::{canon, cluster};
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let patch = args.iter().any(|a| a == "--patch");
    let n: u32 = args.iter().find_map(|a| a.parse().ok()).unwrap_or(1000);
    let root = temp_root("bench");
    let nodes = start_voters(root.path(), &["lvs01", "lvs02", "lvs03"], &[]);
    let leader = wait_for(Duration::from_secs(10), "leader", || {
        nodes
            .iter()
            .position(|x| x.status().is_some_and(|s| s.role == "leader"))
    });

    let sample = cluster_conf(0, 10, 4);
    println!(
        "config: 10 virtual servers x 4 real servers, {} bytes of keepalived.conf",
        sample.len()
    );
    let propose = |main: &str, text: String, full: &str, g: u32, patch: bool| {
        let (_, loaded) = cluster::load_str("cluster.conf", full, &[]);
        serde_json::json!({
            "main": main,
            "files": {main: text},
            "hash": canon::hash(&loaded.cluster),
            "author": "bench",
            "reason": format!("generation {g}"),
            "proposal_id": format!("bench-{g}"),
            "patch": patch,
        })
        .to_string()
    };
    // With --patch: a first load, then one virtual server's block at a time.
    let mut gens = [0u32; 10];
    let first = if patch {
        let text = cluster_conf(0, 10, 4);
        let body = propose("cluster.conf", text.clone(), &text, 0, false);
        let (code, resp) =
            http(&nodes[leader].addr, "POST", "/v1/proposals", body.as_bytes()).expect("propose");
        assert_eq!(code, 200, "{}", String::from_utf8_lossy(&resp));
        println!("proposals: one virtual server's block each (patches)");
        1
    } else {
        0
    };
    let mut lat = Vec::with_capacity(n as usize);
    let mut commit_lat = Vec::with_capacity(n as usize);
    // One watcher per director: given a version before the proposal is sent, it asks its
    // director to answer once that version is applied (a long poll, as `hactl propose
    // --wait` asks) and reports when the answer came. Asking the three in parallel, already
    // waiting, measures when each applied, not how long three requests in turn take.
    let watchers: Vec<_> = nodes
        .iter()
        .map(|x| {
            let (ask, asked) = std::sync::mpsc::channel::<u64>();
            let (tell, told) = std::sync::mpsc::channel::<Instant>();
            let addr = x.addr.clone();
            std::thread::spawn(move || {
                for want in asked {
                    applied_at(&addr, want);
                    if tell.send(Instant::now()).is_err() {
                        return;
                    }
                }
            });
            (ask, told)
        })
        .collect();
    let t0 = Instant::now();
    for g in 1..=n {
        let body = if patch {
            let v = g % 10;
            gens[v as usize] = g;
            let full = cluster_conf_by(10, 4, |i| gens[i as usize]);
            propose("patch.conf", http_vs_block(v, g, 4), &full, g, true)
        } else {
            let text = cluster_conf(g, 10, 4);
            propose("cluster.conf", text.clone(), &text, g, false)
        };
        let want = (g + first) as u64;
        for (ask, _) in &watchers {
            ask.send(want).expect("watcher");
        }
        let start = Instant::now();
        let (code, resp) =
            http(&nodes[leader].addr, "POST", "/v1/proposals", body.as_bytes()).expect("propose");
        assert_eq!(code, 200, "{}", String::from_utf8_lossy(&resp));
        commit_lat.push(start.elapsed());
        let applied = watchers
            .iter()
            .map(|(_, told)| told.recv().expect("watcher"))
            .max()
            .expect("three directors");
        lat.push(applied.saturating_duration_since(start));
    }
    let total = t0.elapsed();
    let report = |name: &str, v: &mut Vec<Duration>| {
        v.sort();
        let pct = |p: f64| {
            v[((v.len() as f64 * p).ceil() as usize)
                .saturating_sub(1)
                .min(v.len() - 1)]
        };
        println!(
            "{name}: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            pct(0.50).as_secs_f64() * 1e3,
            pct(0.99).as_secs_f64() * 1e3,
            v[v.len() - 1].as_secs_f64() * 1e3
        );
    };
    println!(
        "{n} sequential proposals in {:.2} s: {:.1} proposals/s",
        total.as_secs_f64(),
        n as f64 / total.as_secs_f64()
    );
    report("propose -> committed (leader applied, reply)", &mut commit_lat);
    report("propose -> applied on all three", &mut lat);
    let s = nodes[leader].status().expect("status");
    println!(
        "leader: version {}, last log index {:?}, snapshot {:?}, purged {:?}",
        s.version, s.last_log_index, s.snapshot_index, s.purged_index
    );
    let data: u64 = walk(&root.path().join("lvs01"));
    println!("lvs01 data dir: {:.1} MiB", data as f64 / (1024.0 * 1024.0));
}

/// Returns once the director at `addr` has applied `version` (long polls; panics after
/// two minutes).
fn applied_at(addr: &str, version: u64) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        let path = format!("/v1/status?wait_version={version}&wait_ms=10000");
        match http(addr, "GET", &path, b"") {
            Ok((200, body)) => {
                let s: ha_config::api::StatusResponse = serde_json::from_slice(&body).expect("status json");
                if s.version >= version {
                    return;
                }
            }
            _ => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    panic!("{addr}: version {version} not applied within two minutes");
}

fn walk(p: &std::path::Path) -> u64 {
    let mut total = 0;
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            let m = match e.metadata() {
                Ok(m) => m,
                Err(_) => continue,
            };
            total += if m.is_dir() { walk(&e.path()) } else { m.len() };
        }
    }
    total
}

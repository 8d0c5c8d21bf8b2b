//! Issue 20 at a CI-friendly size: 2,000 virtual servers x 4 real servers on three
//! directors. A change travels as the keys it changes: a whole-file proposal lists only
//! what differs, a patch changes one block without the whole file, both converge on every
//! director with the hash the whole file would have; bad patches are refused with their
//! place and change nothing; a late joiner catches up from a snapshot of the keyed
//! configuration and its history of deltas, and every version stays readable and verified.

use e2e::scale::{self, rs_addr, scale_conf, vs_addr};
use e2e::*;
use std::path::Path;
use std::time::Duration;

const N: u32 = 2_000;
const SETTLE: Duration = Duration::from_secs(60);

fn all_at(nodes: &[Node], version: u64, hash: &str) {
    wait_for(SETTLE, &format!("every director at version {version}"), || {
        nodes
            .iter()
            .all(|n| n.status().is_some_and(|s| s.version == version && s.hash == hash))
            .then_some(())
    });
}

/// `hactl hash FILE`: the content hash the whole file has.
fn file_hash(path: &Path) -> String {
    let out = hactl("", &["hash", path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .expect("hash")
        .to_string()
}

/// A finished child to swap in for one whose output a failing test reads.
fn spawn_true() -> std::process::Child {
    std::process::Command::new("true").spawn().expect("true")
}

fn vs_block(i: u32, weight0: u32) -> String {
    scale::vs_block(i, 4, |r| if r == 0 { weight0 } else { 10 })
}

/// Three directors with test hooks and a small snapshot threshold, the first load
/// committed; returns them, the cluster spec and the file's path.
fn loaded_cluster(root: &Path) -> (Vec<Node>, String, std::path::PathBuf) {
    let settings = root.join("raft.toml");
    std::fs::write(&settings, "[raft]\nsnapshot_logs = 5\nkeep_logs = 2\n").unwrap();
    let s = settings.to_str().unwrap().to_string();
    let nodes = start_voters(
        root,
        &["lvs01", "lvs02", "lvs03"],
        &["--config", &s, "--test-hooks"],
    );
    let cluster: String = nodes.iter().map(|n| n.addr.clone()).collect::<Vec<_>>().join(",");
    let file = root.join("cluster.conf");
    std::fs::write(&file, scale_conf(N, 4, |_, _| 10)).unwrap();
    let (v, h) = committed(&hactl(&cluster, &["propose", "-f", file.to_str().unwrap()]));
    all_at(&nodes, v, &h);
    (nodes, cluster, file)
}

#[test]
fn a_leader_killed_during_a_large_proposal_loses_nothing_and_commits_it_once() {
    let root = temp_root("scale-kill");
    let (mut nodes, cluster, file) = loaded_cluster(root.path());
    let f = file.to_str().unwrap().to_string();
    let mut version = 1;
    // Before the entry reaches Raft, then after it committed (before the reply): either
    // way hactl's retry, with the same proposal id, ends with the change committed once.
    for (round, phase) in ["before-commit", "after-commit"].into_iter().enumerate() {
        // Every director holds (whichever leads when the proposal arrives).
        for n in &nodes {
            let (code, body) = http(
                &n.addr,
                "POST",
                &format!("/v1/debug/hold-proposals?phase={phase}"),
                b"",
            )
            .unwrap();
            assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
        }
        // Every virtual server's first weight changes: a large change.
        let w = 20 + round as u32;
        std::fs::write(&file, scale_conf(N, 4, |_, r| if r == 0 { w } else { 10 })).unwrap();
        let want = file_hash(&file);
        let child = {
            let mut cmd = std::process::Command::new(bin_dir().join("hactl"));
            cmd.args(["propose", "-f", &f, "--reason", phase])
                .env("HACTL_CLUSTER", &cluster)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            cmd.spawn().expect("spawn hactl")
        };
        let held = format!("proposal held {}", phase.replace('-', " "));
        let mut child = child;
        let leader = wait_for(
            SETTLE,
            &format!("the leader to hold the proposal {phase}"),
            || {
                if let Ok(Some(_)) = child.try_wait() {
                    let out = std::mem::replace(&mut child, spawn_true())
                        .wait_with_output()
                        .expect("hactl");
                    panic!("hactl ended before the leader held its proposal: {}", text(&out));
                }
                nodes.iter().position(|n| n.log_text().contains(&held))
            },
        );
        // The holder stops holding if it comes back; the others must not hold the retry.
        for (i, n) in nodes.iter().enumerate() {
            if i != leader {
                let (code, _) = http(&n.addr, "POST", "/v1/debug/hold-proposals?phase=none", b"").unwrap();
                assert_eq!(code, 200);
            }
        }
        nodes[leader].kill9();
        let out = child.wait_with_output().expect("hactl");
        let (v, h) = committed(&out);
        version += 1;
        assert_eq!((v, h.as_str()), (version, want.as_str()), "{}", text(&out));
        if phase == "after-commit" {
            assert!(
                String::from_utf8_lossy(&out.stdout).contains("already committed by an earlier try"),
                "{}",
                text(&out)
            );
        }
        nodes[leader].start(&[]);
        all_at(&nodes, version, &want);
        // Exactly one history entry per proposal on every director.
        for n in &nodes {
            let reasons: Vec<String> = n
                .history()
                .into_iter()
                .filter(|e| e.kind == "config")
                .map(|e| e.reason)
                .collect();
            assert_eq!(
                reasons.iter().filter(|r| r.as_str() == phase).count(),
                1,
                "{}: {reasons:?}",
                n.name
            );
        }
    }

    // A director whose disk was wiped is removed, joins again and catches up from a
    // snapshot (more versions first, past the snapshot threshold).
    let patch = root.path().join("patch.conf");
    let mut last = (version, String::new());
    for w in 30..37 {
        std::fs::write(&patch, vs_block(5, w)).unwrap();
        last = committed(&hactl(&cluster, &["propose", "--patch", patch.to_str().unwrap()]));
    }
    all_at(&nodes, last.0, &last.1);
    wait_for(SETTLE, "log purge on lvs01 and lvs02", || {
        nodes[..2]
            .iter()
            .all(|n| n.status().and_then(|s| s.purged_index).is_some_and(|p| p > 5))
            .then_some(())
    });
    nodes[2].kill9();
    std::fs::remove_dir_all(&nodes[2].data_dir).unwrap();
    let seed = nodes[0].addr.clone();
    nodes[2].start(&["--join", &seed]);
    let out = hactl(
        &format!("{},{}", nodes[0].addr, nodes[1].addr),
        &["cluster", "remove", "lvs03"],
    );
    assert!(out.status.success(), "{}", text(&out));
    all_at(&nodes, last.0, &last.1);
    assert!(
        nodes[2].log_text().contains("snapshot installed"),
        "lvs03 caught up from a snapshot"
    );
    let out = hactl(&cluster, &["verify"]);
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn changes_at_scale_travel_as_keys_and_a_late_joiner_catches_up_from_a_snapshot() {
    let root = temp_root("scale");
    let settings = root.path().join("raft.toml");
    std::fs::write(&settings, "[raft]\nsnapshot_logs = 5\nkeep_logs = 2\n").unwrap();
    let s = settings.to_str().unwrap().to_string();
    let mut nodes = start_voters(root.path(), &["lvs01", "lvs02", "lvs03"], &["--config", &s]);
    let cluster: String = nodes.iter().map(|n| n.addr.clone()).collect::<Vec<_>>().join(",");
    let file = root.path().join("cluster.conf");
    let f = file.to_str().unwrap();

    // First load: the whole file, summed up by kind.
    std::fs::write(&file, scale_conf(N, 4, |_, _| 10)).unwrap();
    let out = hactl(&cluster, &["propose", "-f", f, "--reason", "first load"]);
    let (v1, h1) = committed(&out);
    assert_eq!(v1, 1);
    assert_eq!(h1, file_hash(&file));
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains(&format!("virtual_server: {N} added")), "{shown}");
    assert!(
        shown.contains("sending the whole file"),
        "a first load sends the file: {shown}"
    );
    assert!(shown.contains("(--full lists them all)"), "{shown}");
    all_at(&nodes, 1, &h1);

    // A patch: one block, without the whole file. Same hash as the whole file with it.
    let target = 1234;
    let patch = root.path().join("patch.conf");
    std::fs::write(&patch, vs_block(target, 3)).unwrap();
    let p = patch.to_str().unwrap();
    let dry = hactl(&cluster, &["propose", "--patch", p, "--dry-run"]);
    assert!(dry.status.success(), "{}", text(&dry));
    let dry_out = String::from_utf8_lossy(&dry.stdout);
    assert!(
        dry_out.contains("weight 10 -> 3") && dry_out.contains("dry run: nothing committed"),
        "{dry_out}"
    );
    assert_eq!(nodes[0].status().unwrap().version, 1, "a dry run commits nothing");

    let out = hactl(&cluster, &["propose", "--patch", p, "--reason", "one weight"]);
    let (v2, h2) = committed(&out);
    assert_eq!(v2, 2);
    let lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.trim_start().starts_with(['~', '+', '-']))
        .map(str::to_string)
        .collect();
    let (ip, port) = vs_addr(target);
    assert_eq!(
        lines,
        vec![format!(
            "  ~ virtual_server {ip}:{port} real_server {}:{port}: weight 10 -> 3",
            rs_addr(target, 0)
        )],
        "{}",
        text(&out)
    );
    std::fs::write(
        &file,
        scale_conf(N, 4, |i, r| if i == target && r == 0 { 3 } else { 10 }),
    )
    .unwrap();
    assert_eq!(
        h2,
        file_hash(&file),
        "the patch gives the hash of the whole file with the change"
    );
    all_at(&nodes, 2, &h2);
    // The history names the change, on every director.
    for n in &nodes {
        let h = n.history();
        let last = h.iter().rev().find(|e| e.kind == "config").unwrap();
        assert!(
            last.summary.contains("weight 10 -> 3"),
            "{}: {}",
            n.name,
            last.summary
        );
    }

    // Bad patches: refused with the patch's place, nothing committed.
    for (body, says) in [
        (
            vs_block(target, 3).replace("lb_kind DR", "lb_kind XYZ"),
            "patch.conf:4:",
        ),
        (
            "delete virtual_server 198.18.200.1 80\n".to_string(),
            "not in the committed configuration",
        ),
    ] {
        std::fs::write(&patch, &body).unwrap();
        let out = hactl(&cluster, &["propose", "--patch", p]);
        assert!(!out.status.success(), "{}", text(&out));
        assert!(text(&out).contains(says), "{}", text(&out));
    }
    assert_eq!(nodes[0].status().unwrap().version, 2);

    // The whole file again, two changes: only they are listed (compared by bucket).
    std::fs::write(
        &file,
        scale_conf(N, 4, |i, r| match (i, r) {
            (i, 0) if i == target => 3,
            (7, 1) => 5,
            _ => 10,
        })
        .replace(&vs_block(9, 10), ""),
    )
    .unwrap();
    let out = hactl(&cluster, &["propose", "-f", f]);
    let (v3, h3) = committed(&out);
    let shown = String::from_utf8_lossy(&out.stdout);
    let changed: Vec<&str> = shown
        .lines()
        .filter(|l| l.starts_with("  ~") || l.starts_with("  -"))
        .collect();
    assert!(shown.contains("sending the 2 changed block(s)"), "{shown}");
    assert_eq!(changed.len(), 2, "{shown}");
    assert_eq!(h3, file_hash(&file));
    all_at(&nodes, v3, &h3);

    // More patches, past the snapshot threshold; then a late joiner.
    let mut last = (v3, h3);
    for w in 20..26 {
        std::fs::write(&patch, vs_block(target, w)).unwrap();
        last = committed(&hactl(&cluster, &["propose", "--patch", p]));
    }
    all_at(&nodes, last.0, &last.1);
    let leader = wait_for(SETTLE, "a leader", || {
        nodes
            .iter()
            .position(|n| n.status().is_some_and(|s| s.role == "leader"))
    });
    wait_for(SETTLE, "log purge on the leader", || {
        nodes[leader]
            .status()
            .and_then(|s| s.purged_index.filter(|p| *p > 5))
    });
    let mut late = Node::new(root.path(), "lvs04", &["--config", &s]);
    late.start(&["--join", &nodes[leader].addr]);
    nodes.push(late);
    all_at(&nodes, last.0, &last.1);
    let late = nodes.last().unwrap();
    assert!(
        late.log_text().contains("snapshot installed"),
        "lvs04 got a snapshot"
    );
    // Every version is readable on the late joiner, with the hash it was committed with.
    let (code, body) = http(&late.addr, "GET", "/v1/config?version=2", b"").unwrap();
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    let c2: ha_config::api::ConfigResponse = serde_json::from_slice(&body).unwrap();
    assert_eq!((c2.version, c2.hash.as_str()), (2, h2.as_str()));
    let out = hactl(&cluster, &["verify"]);
    assert!(out.status.success(), "{}", text(&out));
}

/// Three full directors in namespaces (nftables data plane, a TCP checker on each of the
/// 8,000 real servers): one weight changed by a patch reaches all three kernels at the
/// same version, and only what that key holds is touched: no probe started, stopped or
/// retargeted, one kernel op per director.
#[test]
fn one_weight_reaches_every_kernel_touching_only_its_key() {
    use e2e::scale_lab::{self, ScaleLab, NAMES};
    let lab = ScaleLab::start("scale-full", &[]);
    // Probes every 60 s: 8,000 per director stay light on a CI machine.
    let text = scale_lab::conf(N, |_, _| 10);
    let file = lab.path().join("cluster.conf");
    std::fs::write(&file, &text).unwrap();
    let out = lab.hactl(&["propose", "-f", file.to_str().unwrap(), "--reason", "first load"]);
    let (v1, _) = committed(&out);
    lab.wait_applied(v1, SETTLE);
    let first_seq: Vec<u64> = (0..3)
        .map(|i| {
            lab.events_from(i, 1)
                .last()
                .and_then(|e| e["seq"].as_u64())
                .unwrap_or(0)
        })
        .collect();

    let target = 777;
    let patch = lab.path().join("patch.conf");
    std::fs::write(
        &patch,
        scale_lab::vs_block(target, |r| if r == 0 { 3 } else { 10 }),
    )
    .unwrap();
    let (v2, _) = committed(&lab.hactl(&["propose", "--patch", patch.to_str().unwrap()]));
    assert_eq!(v2, v1 + 1);
    lab.wait_applied(v2, SETTLE);

    let (_, port) = scale_lab::vs_addr(target);
    let changed_dest = format!("-> {}:{port}", scale_lab::rs_addr(target, 0));
    for (i, name) in NAMES.iter().enumerate() {
        // The kernel's own table, read back: the new weight, nothing left to do.
        let (applied, kernel, differences) = lab.kernel_table(i);
        assert_eq!(applied, Some(v2), "{name}");
        assert!(differences.is_empty(), "{name}: {differences:?}");
        let line = kernel
            .lines()
            .find(|l| l.contains(&changed_dest))
            .unwrap_or_else(|| panic!("{name}: {changed_dest} not in the kernel table"));
        assert_eq!(
            line.split_whitespace().nth(3),
            Some("3"),
            "{name}: weight in the kernel: {line}"
        );
        // What the change touched, from the director's own events.
        let events = lab.events_from(i, first_seq[i] + 1);
        let shown = || {
            events
                .iter()
                .map(|e| format!("{} {} {}", e["kind"], e["subject"], e["summary"]))
                .collect::<Vec<_>>()
                .join("\n")
        };
        let applied: Vec<&str> = events
            .iter()
            .filter(|e| e["kind"] == "apply")
            .filter_map(|e| e["summary"].as_str())
            .collect();
        assert_eq!(
            applied,
            vec![format!(
                "version {v2}: checkers and data plane on it (probes: 0 started, 0 stopped, 0 retargeted, {} running)",
                N * 4
            )],
            "{name}:\n{}",
            shown()
        );
        let ops: Vec<u64> = events
            .iter()
            .filter(|e| e["kind"] == "sync" && e["detail"]["version"] == v2)
            .filter_map(|e| e["detail"]["ops"].as_u64())
            .collect();
        assert_eq!(ops.iter().sum::<u64>(), 1, "{name}: one kernel op:\n{}", shown());
    }
}

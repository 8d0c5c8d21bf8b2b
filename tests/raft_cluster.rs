//! Issue 4 acceptance: three (and four) real `hanode` processes on loopback, driven with
//! `hactl` and the admin API. Each test owns its ports, directories and processes.

use e2e::*;
use ha_config::api::StatusResponse;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

const SETTLE: Duration = Duration::from_secs(20);

/// Starts `names` with the first bootstrapping and the others joining it; waits until the
/// first sees them all as voters.
fn start_cluster(root: &Path, names: &[&str], extra: &[&str]) -> Vec<Node> {
    let mut nodes: Vec<Node> = names.iter().map(|n| Node::new(root, n, extra)).collect();
    nodes[0].start(&["--bootstrap"]);
    let seed = nodes[0].addr.clone();
    for n in nodes.iter_mut().skip(1) {
        n.start(&["--join", &seed]);
    }
    wait_settled(&nodes);
    nodes
}

/// Waits until every director sees all of them as voters and has applied its whole log
/// (membership changes committed, not merely appended).
fn wait_settled(nodes: &[Node]) {
    let want = nodes.len();
    wait_for(
        SETTLE,
        "all directors to be voters with the membership applied",
        || {
            let all: Vec<_> = nodes.iter().map(|n| n.status()).collect::<Option<Vec<_>>>()?;
            let first = &all[0];
            all.iter()
                .all(|s| {
                    s.members.iter().filter(|m| m.role == "voter").count() == want
                        && s.applied_index == s.last_log_index
                        && s.applied_index == first.applied_index
                })
                .then_some(())
        },
    );
}

fn spec(nodes: &[Node]) -> String {
    nodes
        .iter()
        .filter(|n| n.running())
        .map(|n| n.addr.clone())
        .collect::<Vec<_>>()
        .join(",")
}

fn leader_index(nodes: &[Node]) -> usize {
    wait_for(SETTLE, "a leader", || {
        nodes
            .iter()
            .position(|n| n.running() && n.status().is_some_and(|s| s.role == "leader"))
    })
}

fn propose(cluster: &str, file: &Path, extra: &[&str]) -> (u64, String) {
    let mut args = vec!["propose", "-f", file.to_str().expect("path")];
    args.extend_from_slice(extra);
    let out = hactl(cluster, &args);
    assert!(out.status.success(), "{}", text(&out));
    committed(&out)
}

fn write_conf(root: &Path, name: &str, generation: u32) -> std::path::PathBuf {
    let p = root.join(name);
    std::fs::write(&p, cluster_conf(generation, 2, 2)).expect("write conf");
    p
}

/// Waits until every running node reports `version` with `hash`.
fn converged(nodes: &[Node], version: u64, hash: &str, within: Duration) -> Duration {
    let start = Instant::now();
    wait_for(within, &format!("all directors at version {version}"), || {
        nodes
            .iter()
            .filter(|n| n.running())
            .all(|n| n.status().is_some_and(|s| s.version == version && s.hash == hash))
            .then_some(())
    });
    start.elapsed()
}

#[test]
fn seed_config_commits_on_three_directors_and_survives_leader_loss() {
    let root = temp_root("seed");
    let mut nodes = start_cluster(root.path(), &["lvs01", "lvs02", "lvs03"], &[]);

    // The operator's path: import the two keepalived.conf files of the seed, propose.
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config-cli/tests/fixtures");
    let cluster_file = root.path().join("cluster.conf");
    let out = hactl(
        "",
        &[
            "import",
            "--node",
            &format!(
                "lvs01={}",
                fixtures.join("keepalived.lvs01-master.conf").display()
            ),
            "--node",
            &format!(
                "lvs02={}",
                fixtures.join("keepalived.lvs02-backup.conf").display()
            ),
            "-o",
            cluster_file.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let (v1, h1) = propose(&spec(&nodes), &cluster_file, &["--reason", "import of the seed"]);
    assert_eq!(v1, 1);
    let took = converged(&nodes, 1, &h1, Duration::from_secs(1));
    eprintln!("all three at version 1 after {took:?}");
    let shown = hactl(&spec(&nodes), &["config", "show"]);
    assert!(
        String::from_utf8_lossy(&shown.stdout).contains("@lvs02 priority 80"),
        "{}",
        text(&shown)
    );

    // Through a follower only.
    let leader = leader_index(&nodes);
    let follower = (leader + 1) % 3;
    let f2 = write_conf(root.path(), "gen2.conf", 2);
    let out = hactl(
        &nodes[follower].addr,
        &[
            "propose",
            "-f",
            f2.to_str().unwrap(),
            "--reason",
            "via a follower",
            "--wait",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let (v2, h2) = committed(&out);
    assert_eq!(v2, 2);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("applied: version 2 on "),
        "{}",
        text(&out)
    );
    // `--wait` returned: every director already runs version 2, no waiting here.
    for n in &nodes {
        let s = n.status().expect("status");
        assert_eq!((s.version, s.hash.as_str()), (2, h2.as_str()), "{}", n.name);
    }

    // kill -9 the leader; a new one is elected and commits.
    nodes[leader].kill9();
    let new_leader = leader_index(&nodes);
    assert_ne!(new_leader, leader);
    let f3 = write_conf(root.path(), "gen3.conf", 3);
    // Committed by the two left; `--wait` says which director did not apply it (exit 3).
    let out = hactl(
        &spec(&nodes),
        &[
            "propose",
            "-f",
            f3.to_str().unwrap(),
            "--reason",
            "after leader loss",
            "--wait",
            "5",
        ],
    );
    let (v3, h3) = commit_line(&out);
    assert_eq!(v3, 3);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let said = String::from_utf8_lossy(&out.stderr);
    let (behind, applied) = said
        .split_once("(applied on ")
        .unwrap_or_else(|| panic!("{said}"));
    assert!(
        behind.contains(&format!(
            "version 3 not applied within 5 s on: {} (",
            nodes[leader].name
        )),
        "{said}"
    );
    for n in nodes.iter().filter(|n| n.running()) {
        assert!(applied.contains(&n.name) && !behind.contains(&n.name), "{said}");
    }

    // The old leader comes back and catches up.
    nodes[leader].start(&[]);
    converged(&nodes, 3, &h3, SETTLE);
    let histories: Vec<_> = nodes.iter().map(|n| n.history()).collect();
    assert!(histories.iter().all(|h| *h == histories[0]), "histories differ");
    let versions: Vec<u64> = histories[0]
        .iter()
        .filter(|h| h.kind == "config")
        .map(|h| h.version)
        .collect();
    assert_eq!(versions, vec![1, 2, 3]);
    assert_eq!(
        histories[0].iter().find(|h| h.version == 1).unwrap().reason,
        "import of the seed"
    );
}

#[test]
fn committed_changes_survive_kill_9_of_every_director_20_times() {
    let root = temp_root("durable");
    let mut nodes = start_cluster(root.path(), &["lvs01", "lvs02", "lvs03"], &[]);
    let mut expected = (0u64, String::new());
    for round in 1..=20u32 {
        let f = write_conf(root.path(), &format!("r{round}.conf"), round);
        let (v, h) = propose(&spec(&nodes), &f, &["--reason", &format!("round {round}")]);
        assert_eq!(v, expected.0 + 1, "round {round}");
        // Right after `propose` returned: no clean shutdown for anyone.
        for n in nodes.iter_mut() {
            n.kill9();
        }
        expected = (v, h);
        for n in nodes.iter_mut() {
            n.start(&[]);
        }
        converged(&nodes, expected.0, &expected.1, SETTLE);
        eprintln!("round {round}: version {v} on all three after restart");
    }
    let h = nodes[0].history();
    let config_versions: Vec<u64> = h
        .iter()
        .filter(|e| e.kind == "config")
        .map(|e| e.version)
        .collect();
    assert_eq!(config_versions, (1..=20).collect::<Vec<_>>());
}

#[test]
fn concurrent_proposals_commit_once_each_and_stale_ones_say_so() {
    let root = temp_root("concurrent");
    let nodes = start_cluster(root.path(), &["lvs01", "lvs02", "lvs03"], &[]);
    let cluster = spec(&nodes);
    let f0 = write_conf(root.path(), "base.conf", 0);
    let (base, _) = propose(&cluster, &f0, &[]);

    // Round 1: 8 clients, all written against the same base version: one wins.
    let files: Vec<_> = (1..=8)
        .map(|i| write_conf(root.path(), &format!("a{i}.conf"), 100 + i))
        .collect();
    let outs = run_parallel(&cluster, &files, Some(base));
    let won: Vec<_> = outs.iter().filter(|o| o.status.success()).collect();
    assert_eq!(
        won.len(),
        1,
        "exactly one proposal against version {base} commits"
    );
    for o in outs.iter().filter(|o| !o.status.success()) {
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("stale base version"), "{}", text(o));
    }

    // Round 2: 8 clients without a base: every one commits, each exactly once.
    let files: Vec<_> = (1..=8)
        .map(|i| write_conf(root.path(), &format!("b{i}.conf"), 200 + i))
        .collect();
    let outs = run_parallel(&cluster, &files, None);
    let mut accepted: Vec<(u64, String)> = won.iter().map(|o| committed(o)).collect();
    for o in &outs {
        assert!(o.status.success(), "{}", text(o));
        accepted.push(committed(o));
    }
    let history = nodes[0].history();
    let configs: Vec<_> = history.iter().filter(|h| h.kind == "config").collect();
    assert_eq!(configs.len(), 1 + accepted.len(), "base + accepted, nothing else");
    for (v, h) in &accepted {
        let hits = configs
            .iter()
            .filter(|c| c.version == *v && c.hash.as_deref() == Some(h))
            .count();
        assert_eq!(hits, 1, "version {v} appears exactly once");
    }
    let ids: std::collections::BTreeSet<_> = configs.iter().map(|c| c.proposal_id.clone()).collect();
    assert_eq!(ids.len(), configs.len(), "distinct proposal ids");
}

fn run_parallel(cluster: &str, files: &[std::path::PathBuf], base: Option<u64>) -> Vec<std::process::Output> {
    std::thread::scope(|s| {
        let handles: Vec<_> = files
            .iter()
            .map(|f| {
                s.spawn(move || {
                    let mut args = vec!["propose".to_string(), "-f".into(), f.display().to_string()];
                    if let Some(b) = base {
                        args.push("--base-version".into());
                        args.push(b.to_string());
                    }
                    let args: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
                    hactl(cluster, &args)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("client thread"))
            .collect()
    })
}

#[test]
fn late_joiner_receives_a_snapshot_with_the_whole_history() {
    let root = temp_root("snapshot");
    let settings = root.path().join("raft.toml");
    std::fs::write(&settings, "[raft]\nsnapshot_logs = 5\nkeep_logs = 2\n").unwrap();
    let s = settings.to_str().unwrap().to_string();
    let mut nodes = start_cluster(root.path(), &["lvs01", "lvs02", "lvs03"], &["--config", &s]);
    let cluster = spec(&nodes);
    let mut last = (0, String::new());
    for g in 1..=12u32 {
        let f = write_conf(root.path(), &format!("g{g}.conf"), g);
        last = propose(&cluster, &f, &["--reason", &format!("generation {g}")]);
    }
    let leader = leader_index(&nodes);
    let purged = wait_for(SETTLE, "log purge on the leader", || {
        nodes[leader]
            .status()
            .and_then(|s| s.purged_index.filter(|p| *p > 5))
    });
    eprintln!("leader purged the log up to index {purged}");

    let mut late = Node::new(root.path(), "lvs04", &["--config", &s]);
    late.start(&["--join", &nodes[leader].addr]);
    nodes.push(late);
    converged(&nodes, last.0, &last.1, SETTLE);
    wait_for(SETTLE, "lvs04 to be a voter", || {
        nodes[leader]
            .status()?
            .members
            .iter()
            .any(|m| m.name == "lvs04" && m.role == "voter")
            .then_some(())
    });
    let late = nodes.last().unwrap();
    assert!(
        late.log_text().contains("snapshot installed"),
        "lvs04 got a snapshot"
    );
    let full = nodes[leader].history();
    let got = late.history();
    // lvs04's own join is recorded on both after the snapshot; compare the common prefix.
    assert_eq!(
        got[..full.len().min(got.len())],
        full[..full.len().min(got.len())]
    );
    let versions: Vec<u64> = got
        .iter()
        .filter(|h| h.kind == "config")
        .map(|h| h.version)
        .collect();
    assert_eq!(versions, (1..=12).collect::<Vec<_>>());
    let (code, body) = http(&late.addr, "GET", "/v1/config?version=1", b"").unwrap();
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    let v1: ha_config::api::ConfigResponse = serde_json::from_slice(&body).unwrap();
    assert_eq!(v1.version, 1);
    assert!(
        v1.text.contains("weight 2"),
        "version 1 as committed:\n{}",
        v1.text
    );
}

#[test]
fn a_retried_proposal_commits_once_even_with_a_base_version() {
    let root = temp_root("retry");
    let nodes = start_cluster(root.path(), &["lvs01", "lvs02", "lvs03"], &[]);
    let text = cluster_conf(1, 2, 2);
    let (_, loaded) = ha_config::cluster::load_str("c.conf", &text, &[]);
    let body = serde_json::json!({
        "main": "c.conf", "files": {"c.conf": text}, "hash": ha_config::canon::hash(&loaded.cluster),
        "author": "e2e", "proposal_id": "retry-1", "base_version": 0
    })
    .to_string();
    let follower = &nodes[(leader_index(&nodes) + 1) % 3];
    for (i, n) in [&nodes[0], follower, &nodes[2]].iter().enumerate() {
        let (code, resp) = http(&n.addr, "POST", "/v1/proposals", body.as_bytes()).unwrap();
        let r: ha_config::api::ProposeResponse = serde_json::from_slice(&resp)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&resp)));
        assert_eq!((code, r.version, r.duplicate), (200, 1, i > 0), "try {i}");
    }
    let configs = nodes[1]
        .history()
        .into_iter()
        .filter(|h| h.kind == "config")
        .count();
    assert_eq!(configs, 1);
}

#[test]
fn a_voter_that_lost_its_data_cannot_rejoin_silently() {
    let root = temp_root("wiped");
    let mut nodes = start_cluster(root.path(), &["lvs01", "lvs02", "lvs03"], &[]);
    nodes[2].kill9();
    std::fs::remove_dir_all(&nodes[2].data_dir).unwrap();
    let seed = nodes[0].addr.clone();
    nodes[2].start(&["--join", &seed]);
    wait_for(SETTLE, "the refusal in lvs03's log", || {
        nodes[2]
            .log_text()
            .contains("not the one that joined")
            .then_some(())
    });
    // The cluster is unharmed: the two intact directors still commit.
    let f = write_conf(root.path(), "during.conf", 5);
    let (v, _) = propose(&format!("{},{}", nodes[0].addr, nodes[1].addr), &f, &[]);
    assert_eq!(v, 1);
    // Removing it and letting it join again works.
    let out = hactl(
        &nodes[0].addr,
        &["cluster", "remove", "lvs03", "--reason", "wiped disk"],
    );
    assert!(out.status.success(), "{}", text(&out));
    wait_for(Duration::from_secs(40), "lvs03 to be a voter again", || {
        nodes[0]
            .status()?
            .members
            .iter()
            .any(|m| m.name == "lvs03" && m.role == "voter")
            .then_some(())
    });
}

#[test]
fn bad_input_is_refused_clearly_and_changes_nothing() {
    let root = temp_root("bad");
    let nodes = start_cluster(root.path(), &["lvs01", "lvs02", "lvs03"], &[]);
    let cluster = spec(&nodes);
    let f = write_conf(root.path(), "good.conf", 1);
    let (v, h) = propose(&cluster, &f, &[]);
    let before: BTreeMap<String, (u64, u64)> = nodes
        .iter()
        .map(|n| {
            let s = n.status().unwrap();
            (n.name.clone(), (s.version, s.history_len))
        })
        .collect();
    let follower = &nodes[(leader_index(&nodes) + 1) % 3];

    // An invalid config sent straight to the API (bypassing hactl's own check): the
    // located diagnostics come back, as `hactl check` prints them.
    let bad = "vrrp_instance VI_1 {\n    interface ens33\n    virtual_router_id 300\n    priority 100\n}\n";
    let body = serde_json::json!({
        "main": "bad.conf", "files": {"bad.conf": bad}, "hash": "x", "author": "mallory",
        "proposal_id": "p-bad-1"
    });
    let (code, resp) = http(
        &follower.addr,
        "POST",
        "/v1/proposals",
        body.to_string().as_bytes(),
    )
    .unwrap();
    let resp = String::from_utf8_lossy(&resp);
    assert_eq!(code, 422, "{resp}");
    assert!(
        resp.contains("bad.conf:3:23: error: `virtual_router_id` 300 is outside the range 1..255"),
        "{resp}"
    );

    // A status wait with bad parameters names the parameter; a wait for a version not
    // reached answers when its time is up, with the version there is.
    for (query, says) in [
        ("wait_version=x", "query parameter `wait_version`"),
        (
            "wait_ms=10",
            "query parameter `wait_ms`: only with `wait_version`",
        ),
    ] {
        let (code, resp) = http(&follower.addr, "GET", &format!("/v1/status?{query}"), b"").unwrap();
        let resp = String::from_utf8_lossy(&resp);
        assert_eq!(code, 400, "{resp}");
        assert!(resp.contains(says), "{resp}");
    }
    let (code, resp) = http(
        &follower.addr,
        "GET",
        "/v1/status?wait_version=999&wait_ms=50",
        b"",
    )
    .unwrap();
    assert_eq!(code, 200);
    let s: StatusResponse = serde_json::from_slice(&resp).unwrap();
    assert!(s.version < 999);

    // hactl refuses it before sending, with the same lines.
    let badf = root.path().join("bad.conf");
    std::fs::write(&badf, bad).unwrap();
    let out = hactl(&cluster, &["propose", "-f", badf.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains(":3:23: error: `virtual_router_id` 300"));

    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("empty body", Vec::new(), 400, "empty body"),
        ("garbage", b"\x00\xff garbage {".to_vec(), 400, "invalid proposal"),
        (
            "wrong field type",
            br#"{"main": 7}"#.to_vec(),
            400,
            "invalid proposal",
        ),
        (
            "missing field",
            br#"{"main": "a.conf", "files": {}}"#.to_vec(),
            400,
            "missing field",
        ),
        (
            "oversized",
            vec![b' '; ha_config::api::DEFAULT_MAX_PROPOSAL_BYTES + 1],
            413,
            "exceeds",
        ),
    ];
    for (what, body, want, says) in cases {
        for n in [&nodes[0], follower] {
            let (code, resp) = http(&n.addr, "POST", "/v1/proposals", &body).unwrap();
            let resp = String::from_utf8_lossy(&resp);
            assert_eq!(code, want, "{what} on {}: {resp}", n.name);
            assert!(resp.contains(says), "{what}: {resp}");
        }
    }
    // --dry-run shows the change and commits nothing.
    let next = write_conf(root.path(), "next.conf", 2);
    let out = hactl(&cluster, &["propose", "-f", next.to_str().unwrap(), "--dry-run"]);
    assert!(out.status.success(), "{}", text(&out));
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains("weight 2 -> 3") && shown.contains("dry run: nothing committed"),
        "{shown}"
    );

    let out = hactl(&cluster, &["cluster", "remove", "lvs09"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no director named \"lvs09\""),
        "{}",
        text(&out)
    );
    let (code, _) = http(
        &nodes[0].addr,
        "POST",
        "/v1/members",
        br#"{"name": "bad name!", "addr": "x"}"#,
    )
    .unwrap();
    assert_eq!(code, 400);

    // Adding a director nobody runs: refused before anything is recorded.
    let nowhere = format!("127.0.0.1:{}", free_port());
    let out = hactl(&cluster, &["cluster", "add", "lvs09", &nowhere]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot reach lvs09"),
        "{}",
        text(&out)
    );

    std::thread::sleep(Duration::from_millis(500));
    for n in &nodes {
        let s = n.status().unwrap();
        assert_eq!(
            (s.version, s.history_len),
            before[&n.name],
            "{} unchanged",
            n.name
        );
        assert_eq!(s.hash, h);
        assert_eq!(s.version, v);
    }
}

//! The seed's two keepalived.conf files (two directors, one VIP, DR, two real servers with
//! HTTP checks): import, export, and `hactl check` against what keepalived reports.

use ha_config::cluster::{self, ClusterConfig, NodeInput};
use ha_config::syntax::{parse_file, FsLoader};
use ha_config::{canon, printer};
use std::path::{Path, PathBuf};
use std::process::Command;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

const MASTER: &str = "keepalived.lvs01-master.conf";
const BACKUP: &str = "keepalived.lvs02-backup.conf";

fn load_plain(name: &str) -> (ha_config::syntax::Parsed, cluster::Loaded) {
    cluster::load_file(&fixture(name), &[])
}

fn import_seed() -> (ClusterConfig, String, Vec<ha_config::Config>) {
    let a = load_plain(MASTER);
    let b = load_plain(BACKUP);
    assert!(!a.1.diags.has_errors() && !b.1.diags.has_errors());
    let la = |s| a.0.sources.locate(s);
    let lb = |s| b.0.sources.locate(s);
    let inputs = vec![
        NodeInput {
            name: "lvs01".into(),
            config: a.1.cluster.default.clone(),
            spans: &a.1.spans[&None],
            locate: &la,
            file: MASTER.into(),
        },
        NodeInput {
            name: "lvs02".into(),
            config: b.1.cluster.default.clone(),
            spans: &b.1.spans[&None],
            locate: &lb,
            file: BACKUP.into(),
        },
    ];
    let (cluster, text) = cluster::merge(&inputs).expect("seed files merge");
    (
        cluster,
        text,
        vec![a.1.cluster.default.clone(), b.1.cluster.default.clone()],
    )
}

#[test]
fn seed_imports_with_only_state_and_priority_per_director() {
    let (_, text, _) = import_seed();
    let at_lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with('@'))
        .collect();
    assert_eq!(
        at_lines,
        [
            "@lvs01 state MASTER",
            "@lvs02 state BACKUP",
            "@lvs01 priority 100",
            "@lvs02 priority 80"
        ],
        "{text}"
    );
}

#[test]
fn seed_export_round_trips_each_director() {
    let (cluster, text, originals) = import_seed();
    // Reading the cluster file back gives each director exactly its original model.
    let (_, loaded) = cluster::load_str("cluster.conf", &text, &[]);
    assert!(!loaded.diags.has_errors(), "{:?}", loaded.diags);
    assert_eq!(canon::hash(&loaded.cluster), canon::hash(&cluster));
    for (node, original) in ["lvs01", "lvs02"].iter().zip(&originals) {
        assert_eq!(loaded.cluster.view(node), original, "view of {node}");
        // The export is plain keepalived.conf that parses back to the same model.
        let exported = printer::print(loaded.cluster.view(node));
        assert!(
            !exported.lines().any(|l| l.trim_start().starts_with('@')),
            "export has no conditional lines"
        );
        let (_, again) = cluster::load_str("export.conf", &exported, &[]);
        assert!(again.cluster.nodes.is_empty());
        assert_eq!(&again.cluster.default, original, "export of {node} round-trips");
    }
    let seed = &originals[0];
    let vs = &seed.virtual_servers[0];
    assert_eq!(vs.key.to_string(), "192.168.116.134:80");
    assert_eq!(vs.lb_kind, ha_config::model::Forwarding::Dr);
    assert_eq!(
        vs.persistence_timeout, None,
        "persistence_timeout 0 is ignored, as keepalived does"
    );
    let chk = &vs.real_servers[0].checkers[0].common;
    assert_eq!(
        (
            chk.retry,
            chk.connect_timeout.to_string(),
            chk.delay_loop.to_string()
        ),
        (3, "3".into(), "6".into())
    );
    assert_eq!(seed.instances[0].priority, 100);
    assert_eq!(originals[1].instances[0].priority, 80);
}

/// What `keepalived -t` prints about a file.
fn keepalived_test_output(file: &Path) -> String {
    let out = Command::new("keepalived")
        .args(["-t", "-l", "-f"])
        .arg(file)
        .output()
        .expect("keepalived must be installed for this test (the README's test command installs it)");
    let text = String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    text
}

/// `(Line N)` numbers keepalived -t reports, less its complaints about interfaces that do
/// not exist on this machine (we cannot know interfaces offline).
fn keepalived_lines(file: &Path) -> Vec<u32> {
    let text = keepalived_test_output(file);
    let mut lines = Vec::new();
    for l in text.lines() {
        if l.contains("doesn't exist") {
            continue;
        }
        if let Some(pos) = l.find("Line ") {
            let n: String = l[pos + 5..].chars().take_while(|c| c.is_ascii_digit()).collect();
            if let Ok(n) = n.parse() {
                lines.push(n);
            }
        }
    }
    lines.sort();
    lines.dedup();
    lines
}

#[test]
fn check_reports_everything_keepalived_reports_on_the_seed() {
    for name in [MASTER, BACKUP, "keepalived.sample.conf"] {
        let file = fixture(name);
        let (parsed, loaded) = cluster::load_file(&file, &[]);
        let ours: Vec<u32> = loaded
            .diags
            .iter()
            .filter_map(|d| d.span.map(|s| s.line))
            .collect();
        let theirs = keepalived_lines(&file);
        assert!(!theirs.is_empty(), "keepalived reported nothing on {name}?");
        for l in &theirs {
            assert!(
                ours.contains(l),
                "{name}: keepalived reports line {l}, hactl check does not:\n{}",
                loaded.diags.render(&parsed.sources)
            );
        }
    }
}

#[test]
fn check_output_on_the_seed_names_line_column_and_suggestion() {
    let out = Command::new(env!("CARGO_BIN_EXE_hactl"))
        .arg("check")
        .arg(fixture(MASTER))
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "warnings only: exit 0\n{text}");
    let f = fixture(MASTER).display().to_string();
    for expected in [
        format!("{f}:15:23: warning: `vrrp_garp_interval` 0 is outside the range"),
        format!("{f}:16:22: warning: `vrrp_gna_interval` 0 is outside the range"),
        format!("{f}:38:25: warning: `persistence_timeout` 0 is outside the range 1..2678400"),
        format!("{f}:46:15: warning: unknown keyword `status` in url; did you mean `status_code`?"),
        format!("{f}:49:13: warning: `nb_get_retry` is deprecated; use `retry`"),
        format!("{f}:58:15: warning: unknown keyword `status` in url; did you mean `status_code`?"),
        format!("{f}:61:13: warning: `nb_get_retry` is deprecated; use `retry`"),
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(&expected)),
            "missing `{expected}` in:\n{text}"
        );
    }
}

#[test]
fn check_json_format_and_error_exit_status() {
    let dir = tempdir("check-json");
    let bad = dir.join("bad.conf");
    std::fs::write(
        &bad,
        "vrrp_instance V {\n interface eth0\n virtual_router_id 300\n}\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_hactl"))
        .args(["check", "--format", "json"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v.as_array().unwrap().len(),
        1,
        "one error, no follow-up noise: {v}"
    );
    let first = &v[0];
    assert_eq!(first["severity"], "error");
    assert_eq!(first["line"], 3);
    assert_eq!(first["column"], 20);
    assert!(first["message"].as_str().unwrap().contains("virtual_router_id"));
}

#[test]
fn import_refuses_a_real_server_on_one_director_only_naming_both_files() {
    let dir = tempdir("import-diff");
    let a = std::fs::read_to_string(fixture(MASTER)).unwrap();
    let b = std::fs::read_to_string(fixture(BACKUP))
        .unwrap()
        .replace("192.168.116.132 80", "192.168.116.133 80");
    std::fs::write(dir.join("a.conf"), a).unwrap();
    std::fs::write(dir.join("b.conf"), b).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_hactl"))
        .arg("import")
        .arg(format!("--node=lvs01={}", dir.join("a.conf").display()))
        .arg(format!("--node=lvs02={}", dir.join("b.conf").display()))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("real_server 192.168.116.132 80"), "{err}");
    assert!(
        err.contains(&format!("lvs01: {}:53:5", dir.join("a.conf").display())),
        "{err}"
    );
    assert!(err.contains("lvs02: ") && err.contains("b.conf"), "{err}");
}

#[test]
fn cli_import_export_hash_and_diff() {
    let dir = tempdir("cli");
    let cluster = dir.join("cluster.conf");
    let st = Command::new(env!("CARGO_BIN_EXE_hactl"))
        .arg("import")
        .arg(format!("--node=lvs01={}", fixture(MASTER).display()))
        .arg(format!("--node=lvs02={}", fixture(BACKUP).display()))
        .arg("-o")
        .arg(&cluster)
        .status()
        .unwrap();
    assert!(st.success());
    let export = Command::new(env!("CARGO_BIN_EXE_hactl"))
        .args(["export", "--node", "lvs02"])
        .arg(&cluster)
        .output()
        .unwrap();
    let text = String::from_utf8(export.stdout).unwrap();
    assert!(text.contains("priority 80") && text.contains("state BACKUP"));
    assert!(!text.lines().any(|l| l.trim_start().starts_with('@')));

    let hash = |p: &Path| {
        let o = Command::new(env!("CARGO_BIN_EXE_hactl"))
            .arg("hash")
            .arg(p)
            .output()
            .unwrap();
        assert!(o.status.success());
        String::from_utf8(o.stdout).unwrap().trim().to_string()
    };
    let h1 = hash(&cluster);
    assert_eq!(h1.len(), 64);
    // Comments and indentation do not change the hash; a weight does.
    let original = std::fs::read_to_string(&cluster).unwrap();
    let reformatted = dir.join("reformatted.conf");
    std::fs::write(
        &reformatted,
        original
            .replace("    ", "\t")
            .replace("{\n", "{ # opened\n")
            .replace("weight 1", "weight 1 ! same"),
    )
    .unwrap();
    assert_eq!(hash(&reformatted), h1);
    let changed = dir.join("changed.conf");
    std::fs::write(&changed, original.replacen("weight 1", "weight 2", 1)).unwrap();
    assert_ne!(hash(&changed), h1);

    let d = Command::new(env!("CARGO_BIN_EXE_hactl"))
        .arg("diff")
        .arg(&cluster)
        .arg(&changed)
        .output()
        .unwrap();
    let out = String::from_utf8(d.stdout).unwrap();
    assert!(
        out.contains("~ virtual_server 192.168.116.134:80 real_server 192.168.116.131:80: weight 1 -> 2"),
        "{out}"
    );
    assert!(out.contains("0 added, 0 removed, 1 changed"), "{out}");
}

#[test]
fn parse_file_reads_the_fixture_with_spans() {
    let p = parse_file(&fixture(MASTER), &FsLoader);
    assert!(p.diags.is_empty());
    let vi = p.stmts.iter().find(|s| s.keyword() == "vrrp_instance").unwrap();
    assert_eq!(
        p.sources.locate(vi.span()),
        format!("{}:19:1", fixture(MASTER).display())
    );
}

fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ha-config-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// keepalived -t messages without their `(file: Line N)` prefix.
fn keepalived_messages(file: &Path) -> std::collections::BTreeSet<String> {
    let text = keepalived_test_output(file);
    text.lines()
        .map(|l| match l.find(") ") {
            Some(i) if l.starts_with('(') => l[i + 2..].to_string(),
            _ => l.to_string(),
        })
        .filter(|l| !l.trim().is_empty())
        .collect()
}

#[test]
fn keepalived_finds_nothing_new_in_the_exports() {
    let (_, text, _) = import_seed();
    let dir = tempdir("export-keepalived");
    for (node, original) in [("lvs01", MASTER), ("lvs02", BACKUP)] {
        let (_, loaded) = cluster::load_str("cluster.conf", &text, &[]);
        let export = dir.join(format!("{node}.conf"));
        std::fs::write(&export, printer::print(loaded.cluster.view(node))).unwrap();
        let before = keepalived_messages(&fixture(original));
        let after = keepalived_messages(&export);
        let new: Vec<&String> = after.difference(&before).collect();
        assert!(
            new.is_empty(),
            "{node}: keepalived reports on the export what it did not on the original: {new:?}"
        );
        assert!(
            after.len() < before.len(),
            "{node}: the export drops the seed's ignored lines"
        );
    }
}

/// `hactl check big.conf | head`: when the reader goes away, hactl ends as other Unix
/// tools do (SIGPIPE), without a panic message.
#[test]
fn check_ends_quietly_when_its_reader_goes_away() {
    use std::io::{BufRead, BufReader};
    use std::os::unix::process::ExitStatusExt;
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.conf");
    // 5,000 errors: far more output than a pipe holds.
    let block = "virtual_server 198.18.0.1 80 {\n  lb_kind XYZ\n}\n";
    std::fs::write(&big, block.repeat(5000)).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_hactl"))
        .arg("check")
        .arg(&big)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.contains("big.conf:1:"), "{first}");
    // The reader is gone (dropped above); hactl must not panic on its next line.
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    // Ended by SIGPIPE (13 on Linux), as `cat big.conf | head` ends cat.
    assert_eq!(out.status.signal(), Some(13), "{:?} {stderr}", out.status);
}

//! Issue 9 acceptance (part): the committed history is a hash chain that every director
//! can verify, and `hactl verify` compares the directors' chains; one flipped byte in one
//! director's stored history is named with that director and the config version.
//! Three real `hanode` processes on loopback (control plane only).

use e2e::*;
use std::time::Duration;

#[test]
fn verify_passes_everywhere_and_names_a_tampered_entry() {
    let root = temp_root("audit");
    let mut nodes: Vec<Node> = ["a1", "a2", "a3"]
        .iter()
        .map(|n| Node::new(root.path(), n, &[]))
        .collect();
    nodes[0].start(&["--bootstrap"]);
    let seed = nodes[0].addr.clone();
    for n in nodes.iter_mut().skip(1) {
        n.start(&["--join", &seed]);
    }
    let spec: String = nodes.iter().map(|n| n.addr.clone()).collect::<Vec<_>>().join(",");
    wait_for(Duration::from_secs(20), "three voters", || {
        let s = nodes[0].status()?;
        (s.members.iter().filter(|m| m.role == "voter").count() == 3).then_some(())
    });
    let file = root.path().join("c.conf");
    for g in 1..=20 {
        // 1..=18 change weights everywhere; 19 adds virtual server :82, 20 removes it.
        let conf = match g {
            19 => cluster_conf(18, 3, 2),
            20 => cluster_conf(18, 2, 2),
            _ => cluster_conf(g, 2, 2),
        };
        std::fs::write(&file, conf).unwrap();
        let author = if g % 2 == 1 { "alice" } else { "bob" };
        let reason = format!("change {g}");
        let args = [
            "propose",
            "-f",
            file.to_str().unwrap(),
            "--reason",
            &reason,
            "--author",
            author,
        ];
        let o = hactl(&spec, &args);
        assert!(o.status.success(), "{}", text(&o));
    }
    wait_for(Duration::from_secs(20), "all at version 20", || {
        nodes
            .iter()
            .all(|n| {
                n.status()
                    .is_some_and(|s| s.version == 20 && s.applied_index == s.last_log_index)
            })
            .then_some(())
    });
    // Every entry links to the previous one.
    let h = nodes[1].history();
    assert!(h.len() >= 22, "{} entries", h.len());
    for w in h.windows(2) {
        assert_eq!(
            w[1].prev_entry_hash, w[0].entry_hash,
            "entry {} links to {}",
            w[1].seq, w[0].seq
        );
    }
    let o = hactl(&spec, &["verify"]);
    assert!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    assert_eq!(out.matches(" ok ").count(), 3, "{out}");
    assert!(out.contains("every chain holds and they agree"), "{out}");

    // Filters: by author, by virtual server (with its changes), by time.
    let rows = |args: &[&str]| -> Vec<serde_json::Value> {
        let mut a = vec!["history", "--format", "json"];
        a.extend_from_slice(args);
        let o = hactl(&spec, &a);
        assert!(o.status.success(), "{}", text(&o));
        serde_json::from_slice(&o.stdout).expect("json")
    };
    let alice = rows(&["--author", "alice"]);
    assert_eq!(alice.len(), 10, "{alice:?}");
    assert!(alice.iter().all(|r| r["author"] == "alice"));
    let vs = rows(&["--vs", "198.18.116.134:82"]);
    let versions: Vec<u64> = vs.iter().map(|r| r["version"].as_u64().unwrap()).collect();
    assert_eq!(
        versions,
        vec![19, 20],
        "only the versions that touched :82: {vs:?}"
    );
    assert!(rows(&["--since", "2999-01-01"]).is_empty());
    // (Entries with no leader time, such as the bootstrap membership, carry 0.)
    let timed = h.iter().filter(|e| e.at_ms > 0).count();
    assert_eq!(rows(&["--since", "1h"]).len(), timed);
    let o = hactl(&spec, &["history", "--vs", "198.18.116.134:82"]);
    let t = text(&o);
    assert!(
        t.contains("+ virtual_server 198.18.116.134:82") && t.contains("- virtual_server 198.18.116.134:82"),
        "{t}"
    );
    let o = hactl(&spec, &["history", "--since", "yesterday"]);
    assert!(
        !o.status.success() && text(&o).contains("--since"),
        "a bad time names the flag: {}",
        text(&o)
    );

    // The JSON Lines export: every history entry, then runtime events, each a JSON object.
    let o = hactl(&spec, &["export-history", "--format", "jsonl"]);
    assert!(o.status.success(), "{}", text(&o));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    let config_lines = lines.iter().filter(|l| l["source"] == "config").count();
    assert_eq!(config_lines, h.len());
    assert!(lines.iter().all(|l| l["schema"] == 1 && l["time"].is_string()));
    let v19 = lines
        .iter()
        .find(|l| l["source"] == "config" && l["version"] == 19 && l["kind"] == "config")
        .expect("v19");
    assert_eq!(v19["author"], "alice");
    assert!(v19["changes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c.as_str().unwrap().contains("198.18.116.134:82")));

    // One byte of a stored entry on a3, while it is stopped.
    let victim = h
        .iter()
        .find(|e| e.kind == "config" && e.version == 7)
        .expect("version 7");
    nodes[2].kill9();
    let o = std::process::Command::new(bin_dir().join("hanode"))
        .args(["tamper-history", "--data-dir"])
        .arg(&nodes[2].data_dir)
        .args(["--seq", &victim.seq.to_string()])
        .output()
        .expect("tamper");
    assert!(o.status.success(), "{}", text(&o));
    nodes[2].start(&[]);
    wait_for(Duration::from_secs(20), "a3 back", || nodes[2].status());
    let o = hactl(&spec, &["verify"]);
    assert_eq!(o.status.code(), Some(5), "{}", text(&o));
    let out = text(&o);
    let fail: Vec<&str> = out.lines().filter(|l| l.starts_with("FAIL")).collect();
    assert_eq!(fail.len(), 1, "only a3 fails:\n{out}");
    assert!(
        fail[0].contains("a3")
            && fail[0].contains(&format!("entry {}", victim.seq))
            && fail[0].contains("config version 7"),
        "names the director, the entry and the version:\n{out}"
    );
    assert!(
        out.contains("a1") && out.lines().filter(|l| l.contains(" ok ")).count() == 2,
        "{out}"
    );
}

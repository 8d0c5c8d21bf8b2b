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
        std::fs::write(&file, cluster_conf(g, 2, 2)).unwrap();
        let o = hactl(
            &spec,
            &[
                "propose",
                "-f",
                file.to_str().unwrap(),
                "--reason",
                &format!("change {g}"),
            ],
        );
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

//! Issue 10 (scripts): every director checks the scripts of each config it applies and
//! reports, in `hactl status` and as a `script` event, one that is missing or that
//! `enable_script_security` refuses; a fixed script clears the report. Runs the seed
//! cluster in network namespaces (root).

use e2e::seed_cluster::Cluster;
use e2e::wait_for;
use std::time::Duration;

const NODES: [&str; 2] = ["lvs01", "lvs02"];

fn script_errors(c: &Cluster) -> Vec<(String, Vec<String>)> {
    let o = c.hactl(&["status", "--format", "json"]);
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap_or_default();
    rows.iter()
        .filter_map(|r| {
            let s = &r["status"];
            let name = s["name"].as_str()?.to_string();
            let errs = s["runtime"]["errors"]
                .as_array()?
                .iter()
                .filter_map(|e| e.as_str())
                .filter(|e| e.starts_with("script: "))
                .map(str::to_string)
                .collect();
            Some((name, errs))
        })
        .collect()
}

/// Waits until both directors report exactly one script problem containing `want`
/// (or none when `want` is None).
fn wait_report(c: &Cluster, want: Option<&str>, what: &str) -> Vec<(String, Vec<String>)> {
    wait_for(Duration::from_secs(20), what, || {
        let rows = script_errors(c);
        let ok = NODES.iter().all(|n| {
            rows.iter().any(|(name, errs)| {
                name == n
                    && match want {
                        Some(w) => errs.len() == 1 && errs[0].contains(w),
                        None => errs.is_empty(),
                    }
            })
        });
        ok.then_some(rows)
    })
}

#[test]
fn a_missing_or_unsafe_script_is_reported_by_every_director() {
    let dir = tempfile::tempdir().expect("tmp");
    let script = dir.path().join("notify.sh");
    let script_s = script.display().to_string();
    let line = format!("notify_up \"{script_s} rs01\"");
    let add_notify = |text: String| {
        let at = text.find("real_server 198.18.116.131 80 {").expect("rs01 block");
        let eol = at + text[at..].find('\n').expect("line end") + 1;
        format!("{}        {line}\n{}", &text[..eol], &text[eol..])
    };
    let c = Cluster::start_with(add_notify);
    let base = std::fs::read_to_string(c.work.join("cluster.conf")).expect("cluster file");
    assert!(base.contains(&line), "{base}");

    // 1. The script does not exist on the directors.
    let rows = wait_report(
        &c,
        Some("No such file"),
        "both directors to report the missing script",
    );
    for (_, errs) in &rows {
        assert!(
            errs[0].contains("real_server 198.18.116.131:80 notify_up") && errs[0].contains(&script_s),
            "{rows:?}"
        );
    }
    let o = c.hactl(&["events", "--node", "lvs02", "--format", "json"]);
    let events = String::from_utf8_lossy(&o.stdout);
    assert!(
        events.contains("\"kind\": \"script\"") || events.contains("\"kind\":\"script\""),
        "{events}"
    );

    // 2. It exists but anyone may write it, and the config turns on script security.
    std::fs::write(&script, "#!/bin/sh\nexit 0\n").expect("script");
    std::process::Command::new("chmod")
        .arg("777")
        .arg(&script)
        .status()
        .expect("chmod");
    let secure = base.replacen(
        "global_defs {\n",
        "global_defs {\n    enable_script_security\n",
        1,
    );
    assert_ne!(secure, base, "no global_defs block");
    let f = c.work.join("secure.conf");
    std::fs::write(&f, &secure).expect("write");
    let o = c.hactl(&[
        "propose",
        "-f",
        &f.to_string_lossy(),
        "--reason",
        "script security",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    wait_report(
        &c,
        Some("refused under enable_script_security: the script is writable by everyone (mode 0777)"),
        "both directors to refuse the world-writable script",
    );

    // 3. Fixed: the next config applied reports nothing.
    std::process::Command::new("chmod")
        .arg("755")
        .arg(&script)
        .status()
        .expect("chmod");
    let o = c.hactl(&[
        "propose",
        "-f",
        &f.to_string_lossy(),
        "--allow-no-change",
        "--reason",
        "fixed",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    wait_report(&c, None, "the report to clear");
}

//! A cluster that authenticates with bearer tokens only (plain HTTP on loopback, no
//! certificates): a director joins with an operator token from `--join-token-file`;
//! one holding a read-only token, or none, is refused and stays out of the membership.

use e2e::{bin_dir, hactl, text, wait_for, Node};
use std::process::{Command, Stdio};
use std::time::Duration;

fn new_token(file: &std::path::Path, name: &str, role: &str) -> String {
    let o = Command::new(bin_dir().join("hactl"))
        .args(["token", "new", name, "--role", role, "--file"])
        .arg(file)
        .output()
        .expect("hactl token new");
    assert!(o.status.success(), "{}", text(&o));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// GET `path` with a bearer token: (status, body).
fn get(addr: &str, token: &str, path: &str) -> (u16, String) {
    let o = Command::new("curl")
        .args(["-sS", "-m", "10", "-o", "-", "-w", "\n%{http_code}", "-H"])
        .arg(format!("Authorization: Bearer {token}"))
        .arg(format!("http://{addr}{path}"))
        .stdin(Stdio::null())
        .output()
        .expect("curl");
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let (body, code) = out.rsplit_once('\n').unwrap_or(("", &out));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

fn members(addr: &str, token: &str) -> Option<Vec<(String, String)>> {
    let (code, body) = get(addr, token, "/v1/status");
    if code != 200 {
        return None;
    }
    let s: serde_json::Value = serde_json::from_str(&body).ok()?;
    Some(
        s["members"]
            .as_array()?
            .iter()
            .map(|m| {
                (
                    m["name"].as_str().unwrap_or("").to_string(),
                    m["role"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect(),
    )
}

#[test]
fn a_director_joins_a_token_cluster_with_an_operator_token_and_not_without() {
    let root = e2e::temp_root("tokens_cluster");
    let root = root.path();
    let tokens = root.join("tokens");
    let op = new_token(&tokens, "deployer", "operator");
    let ro = new_token(&tokens, "dashboard", "read-only");
    let op_file = root.join("op.token");
    std::fs::write(&op_file, format!("{op}\n")).unwrap();
    let ro_file = root.join("ro.token");
    std::fs::write(&ro_file, &ro).unwrap();
    let tokens_arg = tokens.to_string_lossy().into_owned();
    let with_tokens = ["--tokens-file", tokens_arg.as_str()];

    let mut lvs01 = Node::new(root, "lvs01", &with_tokens);
    let a1 = lvs01.addr.clone();
    lvs01.start(&["--bootstrap"]);
    wait_for(Duration::from_secs(20), "lvs01 up", || members(&a1, &ro));

    // Without a token, and with a read-only one: refused, never a member.
    let mut anonymous = Node::new(root, "lvs02", &with_tokens);
    anonymous.start(&["--join", &a1]);
    let ro_arg = ro_file.to_string_lossy().into_owned();
    let mut reader = Node::new(root, "lvs03", &with_tokens);
    reader.start(&["--join", &a1, "--join-token-file", &ro_arg]);
    wait_for(Duration::from_secs(20), "both joins refused", || {
        let a = anonymous.log_text();
        let r = reader.log_text();
        (a.contains("join refused") && a.contains("401") && r.contains("join refused") && r.contains("403"))
            .then_some(())
    });
    let m = members(&a1, &ro).expect("status");
    assert_eq!(m, vec![("lvs01".to_string(), "voter".to_string())], "{m:?}");
    anonymous.kill9();
    reader.kill9();

    // With the operator token: a voter, credited to the token's name.
    let op_arg = op_file.to_string_lossy().into_owned();
    let mut lvs04 = Node::new(root, "lvs04", &with_tokens);
    lvs04.start(&["--join", &a1, "--join-token-file", &op_arg]);
    wait_for(Duration::from_secs(30), "lvs04 a voter", || {
        members(&a1, &ro)?
            .iter()
            .any(|(n, r)| n == "lvs04" && r == "voter")
            .then_some(())
    });
    // The request's audit event is journaled once its answer is written, which can be
    // just after the membership shows the new voter: wait for it.
    let credited = |e: &serde_json::Value| {
        e["kind"] == "audit"
            && e["subject"] == "deployer"
            && e["summary"].as_str().unwrap_or("").contains("/v1/members")
            && e["summary"].as_str().unwrap_or("").contains("accepted")
    };
    wait_for(
        Duration::from_secs(10),
        "an audit event crediting the joining token (deployer) with the accepted join",
        || {
            let (code, body) = get(&a1, &ro, "/v1/events?limit=10000");
            assert_eq!(code, 200, "{body}");
            let events: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
            events.iter().any(credited).then_some(())
        },
    );
    // The new member serves the same cluster, to readers only with a token.
    let a4 = lvs04.addr.clone();
    wait_for(Duration::from_secs(20), "lvs04 sees both members", || {
        (members(&a4, &ro)?.len() == 2).then_some(())
    });
    let o = hactl(&a4, &["status"]);
    assert!(!o.status.success() && text(&o).contains("401"), "{}", text(&o));

    // A join token file that is not one token is refused at start, naming the file.
    let bad = root.join("bad.token");
    std::fs::write(&bad, "two words\n").unwrap();
    let o = Command::new(bin_dir().join("hanode"))
        .args([
            "--name",
            "lvs05",
            "--control-plane-only",
            "--listen",
            "127.0.0.1:1",
        ])
        .arg("--data-dir")
        .arg(root.join("lvs05"))
        .args(["--join", &a1, "--join-token-file"])
        .arg(&bad)
        .output()
        .expect("hanode");
    assert!(!o.status.success());
    assert!(text(&o).contains("bad.token"), "{}", text(&o));
}

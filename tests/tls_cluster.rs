//! Three directors on loopback over mutual TLS, with certificates made by `hactl cert`
//! and tokens by `hactl token new`; curl (OpenSSL, an independent TLS client) plays the
//! operator, the auditor, the stranger and the impostor.
//!
//! - A director with a certificate from another CA cannot join (refused at the handshake,
//!   logged and recorded); a director's certificate cannot be used to join under, or send
//!   Raft RPCs as, another name; hanode refuses to start with another director's files.
//! - No certificate and no token: 401, nothing changes. A read-only token or certificate:
//!   reads, but a proposal is 403. Every mutating request is an audit event naming who.
//! - Rotation: new files for lvs01 are picked up without a restart; the cluster commits.
//! - Limits: plain HTTP to the TLS port, idle connections, a 100 MB body.

use e2e::{bin_dir, free_port, hactl, text, wait_for, Node};
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

struct Pki {
    dir: PathBuf,
}

impl Pki {
    fn cmd(&self, args: &[&str]) -> Output {
        let o = Command::new(bin_dir().join("hactl"))
            .args(args)
            .output()
            .expect("hactl");
        assert!(o.status.success(), "hactl {args:?}: {}", text(&o));
        o
    }
    fn new(dir: &Path) -> Pki {
        let p = Pki {
            dir: dir.to_path_buf(),
        };
        p.cmd(&["cert", "init", "--dir", &p.d()]);
        p
    }
    fn d(&self) -> String {
        self.dir.to_string_lossy().into_owned()
    }
    fn node(&self, name: &str) {
        self.cmd(&[
            "cert",
            "issue",
            "--dir",
            &self.d(),
            "--node",
            name,
            "--ip",
            "127.0.0.1",
        ]);
    }
    fn client(&self, name: &str, role: &str) {
        self.cmd(&[
            "cert",
            "issue",
            "--dir",
            &self.d(),
            "--client",
            name,
            "--role",
            role,
        ]);
    }
    fn file(&self, f: &str) -> String {
        self.dir.join(f).to_string_lossy().into_owned()
    }
    fn tls_args(&self, name: &str) -> Vec<String> {
        vec![
            "--tls-ca".into(),
            self.file("ca.pem"),
            "--tls-cert".into(),
            self.file(&format!("{name}.pem")),
            "--tls-key".into(),
            self.file(&format!("{name}.key")),
        ]
    }
}

/// Credentials curl presents.
enum Cred<'a> {
    None,
    Cert(&'a Pki, &'a str),
    Token(&'a str),
}

/// One request with curl: (status, body). Status 0: no HTTP answer.
fn curl(
    pki: &Pki,
    addr: &str,
    cred: Cred<'_>,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> (u16, String) {
    let mut c = Command::new("curl");
    c.args(["-sS", "-m", "20", "--cacert", &pki.file("ca.pem"), "-X", method])
        .args(["-o", "-", "-w", "\n%{http_code}"]);
    match cred {
        Cred::None => {}
        Cred::Cert(p, name) => {
            c.args([
                "--cert",
                &p.file(&format!("{name}.pem")),
                "--key",
                &p.file(&format!("{name}.key")),
            ]);
        }
        Cred::Token(t) => {
            c.args(["-H", &format!("Authorization: Bearer {t}")]);
        }
    }
    if let Some(b) = body {
        c.args(["-H", "content-type: application/json", "--data-binary", b]);
    }
    c.arg(format!("https://{addr}{path}"));
    let o = c.stdin(Stdio::null()).output().expect("curl");
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let (body, code) = out.rsplit_once('\n').unwrap_or(("", &out));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// A POST with lvs02's director certificate: curl's output is the status code. `data`
/// as curl's `--data-binary` takes it (`@FILE` for a file).
fn post_as_lvs02(pki: &Pki, addr: &str, path: &str, headers: &[String], data: &str) -> Output {
    let mut c = Command::new("curl");
    c.args(["-sS", "-m", "10", "-o", "/dev/null", "-w", "%{http_code}"])
        .args(["--cacert", &pki.file("ca.pem")])
        .args(["--cert", &pki.file("lvs02.pem"), "--key", &pki.file("lvs02.key")]);
    for h in headers {
        c.args(["-H", h]);
    }
    c.args(["--data-binary", data])
        .arg(format!("https://{addr}{path}"))
        .output()
        .expect("curl")
}

fn status(pki: &Pki, addr: &str) -> Option<serde_json::Value> {
    let (code, body) = curl(pki, addr, Cred::Cert(pki, "alice"), "GET", "/v1/status", None);
    (code == 200).then(|| serde_json::from_str(&body).ok()).flatten()
}

fn version(pki: &Pki, addr: &str) -> u64 {
    status(pki, addr)
        .and_then(|s| s["version"].as_u64())
        .expect("status")
}

fn events(pki: &Pki, addr: &str) -> Vec<serde_json::Value> {
    let (code, body) = curl(
        pki,
        addr,
        Cred::Cert(pki, "alice"),
        "GET",
        "/v1/events?limit=10000",
        None,
    );
    assert_eq!(code, 200, "{body}");
    serde_json::from_str::<Vec<serde_json::Value>>(&body).expect("events")
}

fn audit_lines(pki: &Pki, addr: &str) -> Vec<String> {
    events(pki, addr)
        .into_iter()
        .filter(|e| e["kind"] == "audit")
        .map(|e| {
            format!(
                "{}: {}",
                e["subject"].as_str().unwrap_or(""),
                e["summary"].as_str().unwrap_or("")
            )
        })
        .collect()
}

fn hactl_tls(pki: &Pki, cluster: &str, cred: Cred<'_>, args: &[&str]) -> Output {
    let mut all: Vec<String> = vec!["--ca".into(), pki.file("ca.pem")];
    match cred {
        Cred::Cert(p, n) => {
            all.extend([
                "--cert".into(),
                p.file(&format!("{n}.pem")),
                "--key".into(),
                p.file(&format!("{n}.key")),
            ]);
        }
        Cred::Token(t) => all.extend(["--token".into(), t.to_string()]),
        Cred::None => {}
    }
    all.extend(args.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    hactl(cluster, &refs)
}

const CONF: &str = "global_defs {\n  router_id lab\n}\nvirtual_server 198.18.0.10 80 {\n  lb_algo rr\n  lb_kind DR\n  protocol TCP\n  real_server 198.18.0.11 80 {\n    weight %W%\n  }\n}\n";

fn conf(dir: &Path, weight: u32) -> String {
    let p = dir.join(format!("cluster-{weight}.conf"));
    std::fs::write(&p, CONF.replace("%W%", &weight.to_string())).expect("write conf");
    p.to_string_lossy().into_owned()
}

#[test]
fn mutual_tls_cluster_refuses_strangers_and_keeps_committing_through_rotation() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path();
    let pki = Pki::new(&root.join("pki"));
    for n in ["lvs01", "lvs02", "lvs03"] {
        pki.node(n);
    }
    pki.client("alice", "operator");
    pki.client("auditor", "read-only");
    let other = Pki::new(&root.join("other-ca"));
    other.node("lvs04");

    // Tokens: only their hashes on the directors.
    let tokens = root.join("tokens");
    let token = |name: &str, role: &str| {
        let o = Command::new(bin_dir().join("hactl"))
            .args(["token", "new", name, "--role", role, "--file"])
            .arg(&tokens)
            .output()
            .expect("hactl token new");
        assert!(o.status.success(), "{}", text(&o));
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    let ro_token = token("dashboard", "read-only");
    let op_token = token("deployer", "operator");
    let stored = std::fs::read_to_string(&tokens).unwrap();
    assert!(
        !stored.contains(&ro_token) && !stored.contains(&op_token),
        "tokens stored in clear"
    );

    let tokens_arg = tokens.to_string_lossy().into_owned();
    let mut nodes: Vec<Node> = ["lvs01", "lvs02", "lvs03"]
        .iter()
        .map(|n| {
            let mut extra = pki.tls_args(n);
            extra.extend(["--tokens-file".to_string(), tokens_arg.clone()]);
            let refs: Vec<&str> = extra.iter().map(String::as_str).collect();
            Node::new(root, n, &refs)
        })
        .collect();
    let a1 = nodes[0].addr.clone();
    nodes[0].start(&["--bootstrap"]);
    wait_for(Duration::from_secs(20), "lvs01 serving TLS", || status(&pki, &a1));
    for n in nodes.iter_mut().skip(1) {
        n.start(&["--join", &a1]);
    }
    let cluster = nodes.iter().map(|n| n.addr.clone()).collect::<Vec<_>>().join(",");
    wait_for(Duration::from_secs(40), "3 voters", || {
        let s = status(&pki, &a1)?;
        let voters = s["members"]
            .as_array()?
            .iter()
            .filter(|m| m["role"] == "voter")
            .count();
        (voters == 3).then_some(())
    });
    let sec = status(&pki, &a1).unwrap()["security"].clone();
    assert_eq!(sec["tls"], true, "{sec}");
    assert_eq!(sec["authentication_required"], true, "{sec}");
    assert_eq!(sec["tokens"], 2, "{sec}");

    // An operator's certificate commits, through a follower too (forwarded to the leader,
    // credited to the operator).
    let o = hactl_tls(
        &pki,
        &nodes[2].addr,
        Cred::Cert(&pki, "alice"),
        &["propose", "-f", &conf(root, 1), "--reason", "first"],
    );
    assert!(o.status.success(), "{}", text(&o));
    let v1 = version(&pki, &a1);
    assert!(v1 >= 1);

    // --- strangers ------------------------------------------------------------------
    // No credentials: 401 for reads and writes, nothing changes.
    let (code, body) = curl(&pki, &a1, Cred::None, "GET", "/v1/status", None);
    assert_eq!(code, 401, "{body}");
    let (code, body) = curl(&pki, &a1, Cred::None, "POST", "/v1/proposals", Some("{}"));
    assert_eq!(code, 401, "{body}");
    let o = hactl_tls(&pki, &cluster, Cred::None, &["propose", "-f", &conf(root, 2)]);
    assert!(
        !o.status.success() && text(&o).contains("authentication required"),
        "{}",
        text(&o)
    );
    let (code, _) = curl(&pki, &a1, Cred::Token("hat_0000"), "GET", "/v1/status", None);
    assert_eq!(code, 401);
    // Read-only: reads, cannot propose (token or certificate), at the leader or a follower.
    let (code, _) = curl(&pki, &a1, Cred::Token(&ro_token), "GET", "/v1/status", None);
    assert_eq!(code, 200);
    for (cred, at) in [
        (Cred::Token(&ro_token), &a1),
        (Cred::Cert(&pki, "auditor"), &nodes[1].addr),
    ] {
        let o = hactl_tls(&pki, at, cred, &["propose", "-f", &conf(root, 3)]);
        assert!(
            !o.status.success() && text(&o).contains("may only read"),
            "{}",
            text(&o)
        );
    }
    let o = hactl_tls(&pki, &cluster, Cred::Token(&ro_token), &["status"]);
    assert!(
        o.status.success() && text(&o).contains("mutual TLS"),
        "{}",
        text(&o)
    );
    // An operator's token may.
    let o = hactl_tls(
        &pki,
        &cluster,
        Cred::Token(&op_token),
        &["propose", "-f", &conf(root, 4), "--reason", "token"],
    );
    assert!(o.status.success(), "{}", text(&o));
    let v2 = version(&pki, &a1);
    assert_eq!(v2, v1 + 1, "only the operator's proposal committed");
    // Operators and auditors cannot speak Raft.
    let (code, _) = curl(
        &pki,
        &a1,
        Cred::Cert(&pki, "alice"),
        "POST",
        "/raft/vote",
        Some("x"),
    );
    assert_eq!(code, 403);
    let (code, _) = curl(&pki, &a1, Cred::None, "POST", "/raft/vote", Some("x"));
    assert_eq!(code, 401);

    // --- impostors ------------------------------------------------------------------
    // lvs02's certificate cannot add another name, nor vote as another director.
    let (code, body) = curl(
        &pki,
        &a1,
        Cred::Cert(&pki, "lvs02"),
        "POST",
        "/v1/members",
        Some(r#"{"name":"lvs05","addr":"127.0.0.1:9"}"#),
    );
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("cannot join"), "{body}");
    let vote = openraft::raft::VoteRequest::<u64>::new(
        openraft::Vote::new(1_000_000, raft_store::types::node_id("lvs05")),
        None,
    );
    let vote_file = root.join("vote.bin");
    std::fs::write(&vote_file, raft_store::codec::encode(&vote).unwrap()).unwrap();
    let incarnation = status(&pki, &a1).unwrap()["incarnation"]
        .as_str()
        .unwrap()
        .to_string();
    let o = post_as_lvs02(
        &pki,
        &a1,
        "/raft/vote",
        &[
            format!("x-ha-target-incarnation: {incarnation}"),
            "content-type: application/octet-stream".into(),
        ],
        &format!("@{}", vote_file.display()),
    );
    assert_eq!(String::from_utf8_lossy(&o.stdout), "403", "{}", text(&o));
    // Nor lend a caller's identity where none is due: on Raft RPC, for a caller that
    // proved nothing, or as another director.
    for (path, forwarded, body) in [
        ("/raft/vote", "alice operator certificate", "x"),
        ("/v1/proposals", "x operator unauthenticated", "{}"),
        (
            "/v1/members",
            "lvs05 director certificate",
            r#"{"name":"lvs05","addr":"127.0.0.1:9"}"#,
        ),
    ] {
        let o = post_as_lvs02(
            &pki,
            &a1,
            path,
            &[
                format!("x-ha-forwarded-identity: {forwarded}"),
                "content-type: application/json".into(),
            ],
            body,
        );
        assert_eq!(
            String::from_utf8_lossy(&o.stdout),
            "403",
            "{path} as {forwarded}: {}",
            text(&o)
        );
    }
    // hanode will not even start as lvs05 with lvs02's files.
    let o = Command::new(bin_dir().join("hanode"))
        .args(["--name", "lvs05", "--data-dir"])
        .arg(root.join("lvs05"))
        .args([
            "--listen",
            &format!("127.0.0.1:{}", free_port()),
            "--join",
            &a1,
            "--control-plane-only",
        ])
        .args(pki.tls_args("lvs02"))
        .output()
        .unwrap();
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("\"lvs02\"") && text(&o).contains("lvs05"),
        "{}",
        text(&o)
    );
    // A director certified by another CA cannot join: refused at the handshake.
    let mut intruder = Node::new(root, "lvs04", &[]);
    let intruder_args = other.tls_args("lvs04");
    let mut args: Vec<&str> = intruder_args.iter().map(String::as_str).collect();
    args.extend(["--join", &a1]);
    intruder.start(&args);
    std::thread::sleep(Duration::from_secs(4));
    let s = status(&pki, &a1).unwrap();
    assert!(
        !s["members"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["name"] == "lvs04"),
        "the intruder joined: {s}"
    );
    assert!(
        intruder.log_text().contains("UnknownIssuer") || intruder.log_text().contains("certificate"),
        "{}",
        intruder.log_text()
    );
    drop(intruder);
    let lines = audit_lines(&pki, &a1);
    let has = |what: &[&str]| lines.iter().any(|l| what.iter().all(|w| l.contains(w)));
    assert!(has(&["connection from", "TLS handshake refused"]), "{lines:#?}");
    assert!(
        has(&["lvs02", "refused cluster RPC /raft/", "used to send as"]),
        "{lines:#?}"
    );
    assert!(has(&["lvs02", "POST /v1/members", "403"]), "{lines:#?}");
    assert!(has(&["dashboard", "POST /v1/proposals", "403"]), "{lines:#?}");
    assert!(
        has(&["deployer (operator, token)", "POST /v1/proposals", "200 accepted"]),
        "{lines:#?}"
    );
    assert!(has(&["refused POST /v1/proposals", "401"]), "{lines:#?}");
    assert!(
        nodes[0].log_text().contains("connection refused"),
        "lvs01 logs refused connections"
    );
    // The history credits the authenticated identities.
    let (code, body) = curl(&pki, &a1, Cred::Cert(&pki, "auditor"), "GET", "/v1/history", None);
    assert_eq!(code, 200);
    assert!(
        body.contains("\"alice (claimed e2e-test)\"") && body.contains("\"deployer (claimed e2e-test)\""),
        "{body}"
    );

    // --- rotation -------------------------------------------------------------------
    let before = status(&pki, &a1).unwrap()["security"]["cert_fingerprint"].clone();
    let fresh = Pki {
        dir: root.join("fresh"),
    };
    std::fs::create_dir_all(&fresh.dir).unwrap();
    for f in ["ca.pem", "ca.key"] {
        std::fs::copy(pki.dir.join(f), fresh.dir.join(f)).unwrap();
    }
    fresh.node("lvs01");
    // Key first, then certificate (as an operator's copy would): the half-way state is
    // refused and the old pair kept until the certificate lands.
    std::fs::copy(fresh.dir.join("lvs01.key"), pki.dir.join("lvs01.key")).unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    std::fs::copy(fresh.dir.join("lvs01.pem"), pki.dir.join("lvs01.pem")).unwrap();
    let after = wait_for(
        Duration::from_secs(15),
        "lvs01 to load its new certificate",
        || {
            let s = status(&pki, &a1)?;
            let fp = s["security"]["cert_fingerprint"].clone();
            (fp != before && s["security"]["tls_error"].is_null()).then_some(fp)
        },
    );
    assert_ne!(after, before);
    assert!(nodes[0].log_text().contains("TLS certificate reloaded"));
    // The cluster keeps committing over new connections to and from lvs01.
    let o = hactl_tls(
        &pki,
        &cluster,
        Cred::Cert(&pki, "alice"),
        &["propose", "-f", &conf(root, 5), "--reason", "after rotation"],
    );
    assert!(o.status.success(), "{}", text(&o));
    let v3 = v2 + 1;
    for n in &nodes {
        wait_for(
            Duration::from_secs(15),
            "every director at the new version",
            || (version(&pki, &n.addr) == v3).then_some(()),
        );
    }

    // --- limits ---------------------------------------------------------------------
    // Plain HTTP to the TLS port: a 400 that says why, at once.
    let t = Instant::now();
    let (code, body) = e2e::http(&a1, "GET", "/v1/status", b"").expect("plain http");
    assert_eq!(code, 400);
    assert!(
        String::from_utf8_lossy(&body).contains("TLS"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    assert!(t.elapsed() < Duration::from_secs(3));
    // Idle connections from one address: beyond its share they are closed at once, the
    // rest when the handshake deadline passes; others are served meanwhile.
    let target: SocketAddr = a1.parse().unwrap();
    let idle: Vec<TcpStream> = (0..100).map(|_| connect_from("127.0.0.2", target)).collect();
    std::thread::sleep(Duration::from_millis(500));
    let t = Instant::now();
    assert!(
        status(&pki, &a1).is_some(),
        "lvs01 serves others while 100 connections idle"
    );
    assert!(t.elapsed() < Duration::from_secs(3));
    let closed_at_once = idle
        .iter()
        .filter(|s| closed_within(s, Duration::from_millis(200)))
        .count();
    assert!(
        closed_at_once >= 100 - 64,
        "{closed_at_once} of 100 closed at once"
    );
    let t = Instant::now();
    let all_closed = idle.iter().all(|s| closed_within(s, Duration::from_secs(14)));
    assert!(all_closed, "idle connections still open after {:?}", t.elapsed());
    // A 100 MB body: 413 without reading it all; the node keeps serving.
    let big = root.join("big.json");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(100 * 1024 * 1024)
        .unwrap();
    let t = Instant::now();
    let o = Command::new("curl")
        .args([
            "-sS",
            "-m",
            "30",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--cacert",
            &pki.file("ca.pem"),
        ])
        .args(["--cert", &pki.file("alice.pem"), "--key", &pki.file("alice.key")])
        .args(["-H", "content-type: application/json", "--data-binary"])
        .arg(format!("@{}", big.display()))
        .arg(format!("https://{a1}/v1/proposals"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout), "413", "{}", text(&o));
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    // The same to a Raft path without a director's certificate: refused before the body.
    let o = Command::new("curl")
        .args([
            "-sS",
            "-m",
            "30",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--cacert",
            &pki.file("ca.pem"),
        ])
        .args(["-H", "content-type: application/octet-stream", "--data-binary"])
        .arg(format!("@{}", big.display()))
        .arg(format!("https://{a1}/raft/append"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout), "401", "{}", text(&o));
    assert_eq!(version(&pki, &a1), v3, "nothing changed");
    let o = hactl_tls(
        &pki,
        &cluster,
        Cred::Cert(&pki, "alice"),
        &["propose", "-f", &conf(root, 6)],
    );
    assert!(o.status.success(), "still committing: {}", text(&o));
}

fn connect_from(src: &str, to: SocketAddr) -> TcpStream {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.bind(&format!("{src}:0").parse::<SocketAddr>().unwrap().into())
        .unwrap();
    s.connect_timeout(&to.into(), Duration::from_secs(2)).unwrap();
    s.into()
}

/// Whether the server closed `s` within `d` (read returns end of file or an error).
fn closed_within(s: &TcpStream, d: Duration) -> bool {
    let deadline = Instant::now() + d;
    let mut buf = [0u8; 512];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        s.set_read_timeout(Some(left.max(Duration::from_millis(1)))).ok();
        match (&*s).read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return false
            }
            Err(_) => return true,
        }
    }
}

//! The nftables data plane in the seed's topology (namespaces): LVS-DR without IPVS.
//! `lb-sync` runs inside the director's namespace and makes its kernel table equal to a
//! desired table, as the data-plane actor does.

use e2e::netns::Netns;
use e2e::seed_lab::{in_netns, SeedLab, RS_ADDRS, VIP};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::Output;
use std::time::Duration;

fn lb_sync(ns: &Netns, args: &[&str], stdin: Option<&str>) -> Output {
    lb_sync_with(ns, args, stdin, true)
}

/// `netlink`: false runs the backend with `HANODE_NFT_NETLINK=0` (everything as nft text).
fn lb_sync_with(ns: &Netns, args: &[&str], stdin: Option<&str>, netlink: bool) -> Output {
    let mut c = ns.command(&e2e::bin_dir().join("lb-sync").to_string_lossy());
    c.args(["--backend", "nftables"]).args(args);
    if !netlink {
        c.env("HANODE_NFT_NETLINK", "0");
    }
    c.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = c.spawn().expect("lb-sync");
    if let Some(text) = stdin {
        child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    } else {
        drop(child.stdin.take());
    }
    child.wait_with_output().expect("lb-sync output")
}

/// Applies the seed's service (VIP:80, rr, DR) with these real servers; returns the
/// report line.
fn apply(ns: &Netns, service: &str, rs: &[(&str, &str, u32)]) -> serde_json::Value {
    let dests: Vec<String> = rs
        .iter()
        .map(|(addr, fwd, w)| {
            format!(
                r#"[{{"addr":"{addr}","port":80}},{{"fwd":"{fwd}","weight":{w},"u_thresh":0,"l_thresh":0}}]"#
            )
        })
        .collect();
    let table = format!(
        r#"[[{{"Inet":{{"proto":"Tcp","addr":"{VIP}","port":80}}}},{{"spec":{service},"dests":[{}]}}]]"#,
        dests.join(",")
    );
    apply_json(ns, &table)
}

fn apply_json(ns: &Netns, table: &str) -> serde_json::Value {
    let o = lb_sync(ns, &["apply", "-"], Some(table));
    assert!(
        o.status.success(),
        "lb-sync apply: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).expect("report json")
}

/// Our tables read by netlink (as the backend reads them) and through nft's JSON agree.
fn readings_agree(ns: &Netns) {
    let o = lb_sync(ns, &["compare-readings"], None);
    assert!(
        o.status.success(),
        "netlink and nft -j readings differ: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

const RR: &str = r#"{"sched":"rr","persistence":null,"ops":false}"#;

fn curls(lab: &SeedLab, n: usize) -> Vec<String> {
    (0..n)
        .map(|_| lab.curl().unwrap_or_else(|| "(no answer)".into()))
        .collect()
}

fn alternates(answers: &[String]) -> bool {
    answers.windows(2).all(|w| w[0] != w[1])
        && answers.iter().all(|a| a == "this is RS01" || a == "this is RS02")
}

/// An HTTP/1.1 keep-alive connection opened from the client namespace.
struct Conn(BufReader<TcpStream>);

impl Conn {
    fn get(&mut self) -> std::io::Result<String> {
        self.0
            .get_mut()
            .write_all(b"GET / HTTP/1.1\r\nHost: vip\r\n\r\n")?;
        let mut len = 0;
        loop {
            let mut line = String::new();
            if self.0.read_line(&mut line)? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap_or(0);
            }
            if line == "\r\n" {
                break;
            }
        }
        let mut body = vec![0; len];
        self.0.read_exact(&mut body)?;
        Ok(String::from_utf8_lossy(&body).trim().to_string())
    }
}

fn connect(lab: &SeedLab) -> Conn {
    let s = in_netns(&lab.client, || {
        TcpStream::connect_timeout(&format!("{VIP}:80").parse().unwrap(), Duration::from_secs(2))
    })
    .expect("connect to VIP");
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    Conn(BufReader::new(s))
}

fn nft_tables(ns: &Netns) -> String {
    let o = ns.command("nft").args(["list", "tables"]).output().unwrap();
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The seed's topology with one director holding the VIP as keepalived puts it.
fn lab_with_vip() -> SeedLab {
    let lab = SeedLab::new(1);
    let vip = format!("{VIP}/24");
    lab.directors[0].must(&["addr", "add", &vip, "dev", "ens33", "label", "ens33:9"]);
    lab
}

#[test]
fn seed_dr_alternates_drains_a_removed_server_and_takes_it_back() {
    let lab = lab_with_vip();
    let d = &lab.directors[0];
    // Something of the operator's own that we must leave alone.
    let o = d
        .command("nft")
        .args(["add", "table", "inet", "operator"])
        .output()
        .unwrap();
    assert!(o.status.success());

    let both = [(RS_ADDRS[0], "Dr", 1), (RS_ADDRS[1], "Dr", 1)];
    let r = apply(d, RR, &both);
    assert_eq!(r["ops"], 3, "{r}");
    assert_eq!(r["errors"].as_array().map(Vec::len), Some(0), "{r}");
    let a = curls(&lab, 6);
    assert!(
        alternates(&a),
        "curl should alternate RS01/RS02 like the seed: {a:?}"
    );

    // The kernel table reads back as applied: a second apply has nothing to do.
    readings_agree(d);
    let r = apply(d, RR, &both);
    assert_eq!(r["ops"], 0, "{r}");
    let o = lb_sync(d, &["dump"], None);
    let dump = String::from_utf8_lossy(&o.stdout);
    assert!(dump.contains("TCP  198.18.116.134:80 rr"), "{dump}");
    assert!(dump.contains("198.18.116.131:80"), "{dump}");

    // A connection held on RS01 across its removal.
    let mut held = None;
    for _ in 0..4 {
        let mut c = connect(&lab);
        if c.get().expect("first request") == "this is RS01" {
            held = Some(c);
            break;
        }
    }
    let mut held = held.expect("a connection on RS01");

    let r = apply(d, RR, &both[1..]);
    assert_eq!(r["ops"], 1, "removing one server is one op: {r}");
    readings_agree(d);
    let a = curls(&lab, 4);
    assert!(
        a.iter().all(|x| x == "this is RS02"),
        "only RS02 after removal: {a:?}"
    );
    assert_eq!(
        held.get().expect("the established connection still works"),
        "this is RS01",
        "an established connection finishes on its server"
    );

    let r = apply(d, RR, &both);
    assert_eq!(r["ops"], 1, "{r}");
    let a = curls(&lab, 6);
    assert!(alternates(&a), "alternation again after re-adding RS01: {a:?}");

    // Weights: wrr 2:1 gives RS01 twice as many new connections.
    let wrr = r#"{"sched":"wrr","persistence":null,"ops":false}"#;
    let r = apply(d, wrr, &[(RS_ADDRS[0], "Dr", 2), (RS_ADDRS[1], "Dr", 1)]);
    assert_eq!(r["ops"], 2, "{r}");
    let a = curls(&lab, 9);
    let rs01 = a.iter().filter(|x| *x == "this is RS01").count();
    assert_eq!(rs01, 6, "wrr 2:1 over 9 connections: {a:?}");
    readings_agree(d);

    // Persistence: one client sticks to one server.
    let sticky = r#"{"sched":"rr","persistence":{"timeout":300,"prefix":32},"ops":false}"#;
    let r = apply(d, sticky, &both);
    assert!(r["errors"].as_array().map(Vec::is_empty).unwrap_or(false), "{r}");
    let a = curls(&lab, 4);
    assert!(a.windows(2).all(|w| w[0] == w[1]), "persistent: {a:?}");
    readings_agree(d);

    let o = lb_sync(d, &["teardown"], None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let tables = nft_tables(d);
    assert!(!tables.contains("hanode"), "our tables removed: {tables}");
    assert!(
        tables.contains("table inet operator"),
        "operator's table untouched: {tables}"
    );
}

#[test]
fn what_nftables_cannot_do_fails_alone_and_drift_is_repaired() {
    let lab = lab_with_vip();
    let d = &lab.directors[0];
    let table = format!(
        r#"[[{{"Inet":{{"proto":"Tcp","addr":"{VIP}","port":80}}}},{{"spec":{RR},"dests":[[{{"addr":"{a}","port":80}},{{"fwd":"Dr","weight":1,"u_thresh":0,"l_thresh":0}}]]}}],
            [{{"Inet":{{"proto":"Tcp","addr":"{VIP}","port":443}}}},{{"spec":{RR},"dests":[[{{"addr":"{a}","port":443}},{{"fwd":"Tun","weight":1,"u_thresh":0,"l_thresh":0}}]]}}],
            [{{"Inet":{{"proto":"Tcp","addr":"{VIP}","port":8080}}}},{{"spec":{{"sched":"nosuch","persistence":null,"ops":false}},"dests":[]}}]]"#,
        a = RS_ADDRS[0]
    );
    let r = apply_json(d, &table);
    let errors = r["errors"].as_array().cloned().unwrap_or_default();
    let text = serde_json::to_string(&errors).unwrap();
    assert!(text.contains("TUN forwarding needs IPVS"), "{text}");
    assert!(text.contains("unknown scheduler"), "{text}");
    assert_eq!(
        errors.len(),
        3,
        "the TUN service (2 ops) and the bad scheduler (1): {text}"
    );
    let o = lb_sync(d, &["dump"], None);
    let dump = String::from_utf8_lossy(&o.stdout);
    assert!(
        dump.contains("198.18.116.134:80 rr"),
        "the good service is applied: {dump}"
    );
    assert!(!dump.contains(":443") && !dump.contains(":8080"), "{dump}");
    assert_eq!(lab.curl().as_deref(), Some("this is RS01"));

    // Someone flushes our slots map: the service reads back broken and is rendered again.
    let o = d
        .command("nft")
        .args(["flush", "map", "netdev", "hanode", "slots"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(lab.curl().is_none(), "without slots new flows are dropped");
    let r = apply_json(d, &table);
    assert!(r["kinds"]["add_service"].as_u64() >= Some(1), "{r}");
    assert_eq!(lab.curl().as_deref(), Some("this is RS01"), "repaired");
    readings_agree(d);
    // And someone deletes our whole table.
    let o = d
        .command("nft")
        .args(["delete", "table", "netdev", "hanode"])
        .output()
        .unwrap();
    assert!(o.status.success());
    let r = apply_json(d, &table);
    assert_eq!(r["ops"], 5, "every service and destination again: {r}");
    assert_eq!(lab.curl().as_deref(), Some("this is RS01"));
    let o = lb_sync(d, &["teardown"], None);
    assert!(o.status.success());
}

/// Issue 21: 500 random diffs (weights, real servers leaving and joining, schedulers,
/// persistence, DR <-> NAT moves, services leaving and coming) to a 2,000-service table,
/// applied as the sync actor applies them (element-only changes as netlink batches, the
/// rest through libnftables); after each, a fresh backend reads the kernel back (netlink
/// dumps) and the table must equal the one wanted.
#[test]
fn five_hundred_random_diffs_on_two_thousand_services_read_back_as_wanted() {
    let ns = Netns::new("nftrand");
    ns.must(&["link", "add", "veth0", "type", "veth", "peer", "name", "veth1"]);
    ns.must(&["addr", "add", "198.18.0.250/15", "dev", "veth0"]);
    ns.must(&["link", "set", "veth0", "up"]);
    ns.must(&["link", "set", "veth1", "up"]);
    let o = lb_sync(
        &ns,
        &["--ingress", "veth0", "random", "2000", "4", "500", "7"],
        None,
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && out.contains("500 diffs") && out.contains(" 0 mismatches"),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Everything nft lists of the namespace's ruleset.
fn ruleset(ns: &Netns) -> String {
    let o = ns.command("nft").args(["list", "ruleset"]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn veth_netns(name: &str) -> Netns {
    let ns = Netns::new(name);
    ns.must(&["link", "add", "veth0", "type", "veth", "peer", "name", "veth1"]);
    ns.must(&["addr", "add", "198.18.0.250/15", "dev", "veth0"]);
    ns.must(&["addr", "add", "2001:db8::250/64", "dev", "veth0", "nodad"]);
    ns.must(&["link", "set", "veth0", "up"]);
    ns.must(&["link", "set", "veth1", "up"]);
    ns
}

fn service_json(proto: &str, vip: &str, port: u16, spec: &str, dests: &[(&str, u16, &str, u32)]) -> String {
    let dests: Vec<String> = dests
        .iter()
        .map(|(a, p, fwd, w)| {
            format!(
                r#"[{{"addr":"{a}","port":{p}}},{{"fwd":"{fwd}","weight":{w},"u_thresh":0,"l_thresh":0}}]"#
            )
        })
        .collect();
    format!(
        r#"[{{"Inet":{{"proto":"{proto}","addr":"{vip}","port":{port}}}}},{{"spec":{spec},"dests":[{}]}}]"#,
        dests.join(",")
    )
}

/// Issue 21: service chains, rules and entries go to the kernel as netlink batches that
/// we encode ourselves; the kernel must then hold exactly what nft builds from the same
/// rules as text (every rule shape: rr/wrr by numgen, sh/dh by jhash, persistence by
/// client network, one-packet scheduling, DR and NAT). IPv6 affinity, which nft 1.0.6
/// cannot build (it aborts on the flow-map update), works through netlink.
#[test]
fn service_chains_by_netlink_are_what_nft_builds_from_the_text() {
    let sh24 = r#"{"sched":"sh","persistence":{"timeout":300,"prefix":24},"ops":false}"#;
    let sh32 = r#"{"sched":"sh","persistence":{"timeout":60,"prefix":32},"ops":false}"#;
    let dh_ops = r#"{"sched":"dh","persistence":null,"ops":true}"#;
    let wrr = r#"{"sched":"wrr","persistence":null,"ops":false}"#;
    let mh_port = r#"{"sched":"mh","persistence":null,"ops":false,"sched_flags":16}"#;
    let mh = r#"{"sched":"mh","persistence":null,"ops":false}"#;
    let v4 = [
        service_json(
            "Tcp",
            "198.18.116.134",
            80,
            RR,
            &[("198.18.0.1", 80, "Dr", 1), ("198.18.0.2", 80, "Dr", 1)],
        ),
        service_json(
            "Tcp",
            "198.18.116.134",
            443,
            sh24,
            &[("198.18.0.1", 443, "Dr", 1), ("198.18.0.2", 443, "Dr", 3)],
        ),
        service_json(
            "Udp",
            "198.18.116.134",
            53,
            dh_ops,
            &[("198.18.0.1", 53, "Dr", 1)],
        ),
        service_json(
            "Tcp",
            "198.18.116.135",
            80,
            wrr,
            &[("198.18.0.3", 8080, "Nat", 2), ("198.18.0.4", 8080, "Nat", 1)],
        ),
        service_json("Tcp", "198.18.116.135", 81, sh32, &[("198.18.0.3", 81, "Nat", 1)]),
        service_json(
            "Tcp",
            "198.18.116.134",
            8080,
            mh_port,
            &[("198.18.0.1", 8080, "Dr", 1), ("198.18.0.2", 8080, "Dr", 2)],
        ),
        service_json(
            "Udp",
            "198.18.116.135",
            8080,
            mh,
            &[("198.18.0.3", 8080, "Nat", 1), ("198.18.0.4", 8080, "Nat", 1)],
        ),
    ];
    let table = format!("[{}]", v4.join(","));
    let by_text = veth_netns("nftt");
    let by_netlink = veth_netns("nftn");
    for (ns, netlink) in [(&by_text, false), (&by_netlink, true)] {
        let o = lb_sync_with(ns, &["apply", "-"], Some(&table), netlink);
        let report = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success() && report.contains(r#""errors":[]"#),
            "{report}{}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let text_listing = ruleset(&by_text);
    assert!(text_listing.contains("jhash ip saddr mod 12"), "{text_listing}");
    // Maglev: each mh service looks its slot up in its own map of 2,039 slots.
    assert!(
        text_listing.contains("jhash ip saddr . th sport mod 2039 seed 0x48414e44 offset")
            && text_listing.contains(" map @mh_")
            && text_listing.contains("ct mark set jhash ip saddr mod 2039"),
        "{text_listing}"
    );
    assert_eq!(
        ruleset(&by_netlink),
        text_listing,
        "netlink and nft text build different tables"
    );
    readings_agree(&by_netlink);

    let pers64 = r#"{"sched":"sh","persistence":{"timeout":300,"prefix":64},"ops":false}"#;
    let v6 = [
        service_json("Tcp", "2001:db8::1", 80, RR, &[("2001:db8::10", 80, "Nat", 1)]),
        service_json(
            "Tcp",
            "2001:db8::1",
            443,
            pers64,
            &[("2001:db8::10", 443, "Nat", 1)],
        ),
        service_json("Tcp", "2001:db8::2", 80, RR, &[("2001:db8::11", 80, "Dr", 1)]),
    ];
    let table = format!("[{},{}]", v4.join(","), v6.join(","));
    let r = apply_json(&by_netlink, &table);
    assert_eq!(r["errors"], serde_json::json!([]), "{r}");
    let listing = ruleset(&by_netlink);
    for want in [
        "update @flows6 { ip6 saddr . th sport . ct mark & 0xffff0000 timeout 15m : ct mark } jump dnat6",
        "update @pflows6 { ip6 saddr & ffff:ffff:ffff:ffff:: . ct mark & 0xffff0000 timeout 5m : ct mark } jump dnat6",
        "update @flows6 { ip6 saddr . th sport . meta mark & 0xffff0000 timeout 15m : meta mark } jump fwd6",
    ] {
        assert!(listing.contains(want), "{want}\nnot in\n{listing}");
    }
    readings_agree(&by_netlink);
    let o = lb_sync(&by_netlink, &["dump"], None);
    let dump = String::from_utf8_lossy(&o.stdout);
    assert!(
        dump.contains("[2001:db8::1]:443 sh persistent 300 mask 64"),
        "{dump}"
    );
}

/// Issue 21: 1,000 services on the VIP (ports 10000-10999, DR to both real servers, wrr
/// with weights 1:1, 2:1 or 3:1), so two shards of tables. Every service answers, and
/// twelve connections to each (each a new flow: one pick of the service's 12 slots,
/// which the weights lay out exactly) split between the two real servers as the
/// weights say.
#[test]
fn a_thousand_services_all_answer_and_honour_their_weights() {
    const FIRST_PORT: u16 = 10000;
    const SERVICES: u16 = 1000;
    let lab = lab_with_vip();
    // The real servers answer every service port with their web server on port 80.
    for rs in &lab.rs {
        let o = rs
            .command("nft")
            .arg(format!(
                "add table ip redir; add chain ip redir pre {{ type nat hook prerouting priority dstnat; }}; \
                 add rule ip redir pre ip daddr {VIP} tcp dport {FIRST_PORT}-{} redirect to :80",
                FIRST_PORT + SERVICES - 1
            ))
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let weight = |i: u16| u32::from(i % 3) + 1;
    let wrr = r#"{"sched":"wrr","persistence":null,"ops":false}"#;
    let services: Vec<String> = (0..SERVICES)
        .map(|i| {
            let port = FIRST_PORT + i;
            service_json(
                "Tcp",
                VIP,
                port,
                wrr,
                &[(RS_ADDRS[0], port, "Dr", weight(i)), (RS_ADDRS[1], port, "Dr", 1)],
            )
        })
        .collect();
    let d = &lab.directors[0];
    let r = apply_json(d, &format!("[{}]", services.join(",")));
    assert_eq!(r["errors"], serde_json::json!([]), "{r}");
    assert!(nft_tables(d).contains("netdev hanode_1"), "{}", nft_tables(d));
    readings_agree(d);
    let counts = in_netns(&lab.client, move || {
        let mut counts = Vec::new();
        for i in 0..SERVICES {
            let addr: std::net::SocketAddr = format!("{VIP}:{}", FIRST_PORT + i).parse().unwrap();
            let mut first = 0u32;
            let mut answers = Vec::new();
            for _ in 0..12 {
                let body = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).and_then(|s| {
                    s.set_read_timeout(Some(Duration::from_secs(3)))?;
                    Conn(BufReader::new(s)).get()
                });
                match body.as_deref() {
                    Ok("this is RS01") => first += 1,
                    Ok("this is RS02") => {}
                    other => answers.push(format!("{other:?}")),
                }
            }
            counts.push((i, first, answers));
        }
        counts
    });
    let mut wrong = Vec::new();
    for (i, first, failures) in counts {
        let w = weight(i);
        let want = 12 * w / (w + 1);
        if !failures.is_empty() || first.abs_diff(want) > 1 {
            wrong.push(format!(
                "port {}: {first} of 12 to RS01 (weights {w}:1, want {want}); failures {failures:?}",
                FIRST_PORT + i
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} services wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    let o = lb_sync(d, &["teardown"], None);
    assert!(o.status.success());
}

/// What the flow log says of `client`: read until something comes (at most 5 s), then
/// one read more (200 ms), so that a second message of the same flow would be seen too.
fn logged_for(
    log: &mut actors::lb::nft::flowlog_io::FlowLogSocket,
    client: std::net::SocketAddr,
) -> Vec<actors::lb::nft::flowlog::LoggedFlow> {
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        let before = seen.len();
        seen.extend(
            log.read(1024)
                .expect("flow log")
                .into_iter()
                .filter(|f| f.client == client),
        );
        if before > 0 {
            break;
        }
    }
    seen
}

/// Issue 22: a DR flow's first packet is logged once (NFLOG, read as hanode reads it) with
/// the client's address and port and the mark of the real server the data plane chose;
/// the connection's later packets are not, until the flow's note in `relog4` expires.
#[test]
fn a_new_dr_flow_is_logged_once_with_its_client_and_real_server() {
    use actors::lb::nft::flowlog_io::FlowLogSocket;
    let lab = lab_with_vip();
    apply(
        &lab.directors[0],
        RR,
        &[(RS_ADDRS[0], "Dr", 1), (RS_ADDRS[1], "Dr", 1)],
    );
    let mut log = in_netns(&lab.directors[0], || {
        FlowLogSocket::open(Duration::from_millis(200))
    })
    .expect("subscribe to the flow log");
    // Two requests on one keep-alive connection: several packets, one new flow.
    let mut conn = connect(&lab);
    let client = conn.0.get_ref().local_addr().expect("client address");
    let answer = conn.get().expect("first request");
    assert_eq!(conn.get().expect("second request"), answer);
    let rs = if answer.contains("RS01") {
        RS_ADDRS[0]
    } else {
        RS_ADDRS[1]
    };
    let seen = logged_for(&mut log, client);
    assert_eq!(seen.len(), 1, "the flow logged once: {seen:?}");
    // The mark names a destination of the service: find it in the kernel's `dst4` map.
    let mark = seen[0].mark;
    assert_ne!(
        mark & 0x7fff,
        0,
        "a destination, not a bare service tag: {mark:#x}"
    );
    let o = lab.directors[0]
        .command("nft")
        .args(["-j", "list", "map", "netdev", "hanode", "dst4"])
        .output()
        .expect("nft");
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).expect("nft -j");
    let elems = json["nftables"]
        .as_array()
        .and_then(|a| a.iter().find_map(|i| i["map"]["elem"].as_array().cloned()))
        .expect("dst4 elements");
    let dest = elems.iter().find_map(|e| {
        let pair = e.as_array()?;
        let key = pair[0].as_u64().or_else(|| pair[0]["elem"]["val"].as_u64())?;
        (key == u64::from(mark)).then(|| pair[1].as_str().map(str::to_string))?
    });
    assert_eq!(
        dest.as_deref(),
        Some(rs),
        "the logged mark is the real server that answered"
    );

    // Announced again once its note in `relog4` is gone (it times out after RELOG_SECS):
    // the next packet of the pinned flow is logged, once, with the same mark.
    let o = lab.directors[0]
        .command("nft")
        .args(["flush", "set", "netdev", "hanode", "relog4"])
        .output()
        .expect("nft");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(conn.get().expect("third request"), answer);
    assert_eq!(conn.get().expect("fourth request"), answer);
    let again = logged_for(&mut log, client);
    assert_eq!(again, vec![seen[0]], "announced again once, as before");
}

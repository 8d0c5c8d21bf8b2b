//! Fuzz targets (issue 10): the decoders of what others send a director, each fuzzed for
//! `FUZZ_SECONDS` (60 by default) by [`e2e::fuzz`], after its regression fixtures in
//! `tests/fuzz/<target>/`.
//!
//! - `config_parser`: keepalived.conf text through lexing, parsing, lowering per director,
//!   validation and hashing (`hactl propose` input, and every file a proposal carries).
//! - `vrrp_decoder`: a received IPv4 datagram or VRRP message, through the header split,
//!   the advert parser and the receive checks.
//! - `ipvs_decoder`: kernel replies on the IPVS generic netlink socket, through framing,
//!   the message codec and the table conversion.
//! - `admin_request`: an admin API request (path, query, headers, body) through everything
//!   decoded before a handler acts: credentials, JSON bodies, proposal files, Raft RPCs.

use actors::lb::diff::Op;
use actors::lb::ipvs::msg::IpvsMsg;
use actors::lb::model::{DestKey, DestSpec, Persistence, SvcKey, SvcSpec};
use actors::vrrp::check::{check, RxMeta, RxPolicy};
use actors::vrrp::packet::{Advert, Auth, Version};
use e2e::fuzz::{fuzz, Target};
use ha_config::model::{Forwarding, Protocol};
use netlink_packet_core::{Emitable, ParseableParametrized};
use netlink_packet_generic::GenlMessage;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

fn repo(p: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(p)
}

fn files_in(dir: &std::path::Path) -> Vec<Vec<u8>> {
    let mut out: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.path().is_file())
                .filter_map(|e| std::fs::read(e.path()).ok().map(|b| (e.path(), b)))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out.into_iter().map(|(_, b)| b).collect()
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

// ---- config_parser ---------------------------------------------------------------------

fn config_seeds() -> Vec<Vec<u8>> {
    let mut seeds = files_in(&repo("deploy/lab/seed"));
    seeds.extend(files_in(&repo("config-cli/tests/fixtures")));
    // Debian's keepalived samples, when installed (tests/run.sh installs keepalived).
    seeds.extend(files_in(std::path::Path::new(
        "/usr/share/doc/keepalived/samples",
    )));
    seeds.push(
        b"global_defs {\n  router_id a\n}\nvrrp_instance VI_1 {\n  @lvs01 state MASTER\n  @lvs02 state BACKUP\n  interface ens33\n  virtual_router_id 51\n  @lvs01 priority 100\n  @lvs02 priority 80\n  virtual_ipaddress {\n    198.18.116.134/32 dev ens33 label ens33:1\n  }\n  track_script {\n    chk\n  }\n}\nvrrp_script chk {\n  script \"/bin/true\"\n  weight -20\n}\n"
            .to_vec(),
    );
    seeds.retain(|s| s.len() < 256 * 1024);
    seeds
}

const CONFIG_TOKENS: &[&[u8]] = &[
    b"{",
    b"}",
    b"\n",
    b" ",
    b"\"",
    b"!",
    b"#",
    b"@lvs01 ",
    b"@^lvs02 ",
    b"include ",
    b"vrrp_instance VI_2 {\n",
    b"virtual_server 198.18.0.1 80 {\n",
    b"real_server 198.18.0.2 80 {\n",
    b"HTTP_GET {\n",
    b"SSL_GET {\n",
    b"MISC_CHECK {\n",
    b"TCP_CHECK {\n",
    b"url {\n",
    b"virtual_ipaddress {\n",
    b"unicast_peer {\n",
    b"track_interface {\n",
    b"vrrp_sync_group G {\n",
    b"group {\n",
    b"virtual_server_group G {\n",
    b"fwmark 1 ",
    b"lb_kind DR\n",
    b"lb_algo wrr\n",
    b"persistence_timeout 0\n",
    b"weight -1\n",
    b"priority 255\n",
    b"advert_int 0.001\n",
    b"delay_loop 99999999999999999999\n",
    b"198.18.0.1-254 ",
    b"fe80::1/64 ",
    b"::ffff:1.2.3.4 ",
    b"255.255.255.255/33 ",
    b"status_code 200-299\n",
    b"digest 0123456789abcdef\n",
    b"$VAR ",
    b"$VAR=x\n",
    b"~SEQ(i,1,3) ",
    b"@",
    b"\\\n",
    b"\t",
    b"\xff\xfe",
    b"notify_master \"/bin/sh -c 'x'\"\n",
];

fn config_parser(b: &[u8]) {
    let text = String::from_utf8_lossy(b).into_owned();
    let files = BTreeMap::from([("keepalived.conf".to_string(), text)]);
    let (parsed, loaded) = ha_config::bundle::load_bundle("keepalived.conf", &files);
    for d in loaded.diags.iter().take(20) {
        let _ = d.render(&parsed.sources);
    }
    if !loaded.diags.has_errors() {
        let _ = ha_config::canon::hash(&loaded.cluster);
        for n in ["lvs01", "lvs02", "other"] {
            let _ = loaded.cluster.view(n).instances.len();
        }
    }
}

#[test]
fn config_parser_survives_mutated_keepalived_conf() {
    fuzz(Target {
        name: "config_parser",
        seeds: config_seeds(),
        tokens: CONFIG_TOKENS,
        run: &config_parser,
    });
}

// ---- vrrp_decoder ----------------------------------------------------------------------

fn ipv4_datagram(src: [u8; 4], dst: [u8; 4], ttl: u8, payload: &[u8]) -> Vec<u8> {
    let total = 20 + payload.len();
    let mut h = vec![
        0x45,
        0,
        (total >> 8) as u8,
        total as u8,
        0,
        0,
        0x40,
        0,
        ttl,
        112,
        0,
        0,
    ];
    h.extend(src);
    h.extend(dst);
    let sum = actors::vrrp::packet::internet_checksum(&[&h]);
    h[10..12].copy_from_slice(&sum.to_be_bytes());
    h.extend_from_slice(payload);
    h
}

fn vrrp_seeds() -> Vec<Vec<u8>> {
    let v2 = Advert {
        version: Version::V2,
        vrid: 51,
        priority: 100,
        interval_cs: 100,
        auth: Auth::pass("1111"),
        addrs: vec![ip("198.18.116.134")],
        checksum: 0,
    };
    let v3 = Advert {
        version: Version::V3,
        auth: Auth::None,
        interval_cs: 25,
        addrs: vec![ip("198.18.116.134"), ip("198.18.116.135")],
        ..v2.clone()
    };
    let v6 = Advert {
        version: Version::V3,
        auth: Auth::None,
        addrs: vec![ip("fe80::1"), ip("2001:db8::1")],
        ..v2.clone()
    };
    let (s4, d4) = (ip("198.18.116.130"), ip("224.0.0.18"));
    let (s6, d6) = (ip("fe80::2"), ip("ff02::12"));
    let mut seeds = Vec::new();
    for (a, s, d) in [(&v2, s4, d4), (&v3, s4, d4), (&v6, s6, d6)] {
        let msg = a.emit(s, d).expect("emit");
        if let (IpAddr::V4(s), IpAddr::V4(d)) = (s, d) {
            seeds.push(ipv4_datagram(s.octets(), d.octets(), 255, &msg));
        }
        seeds.push(msg);
    }
    seeds
}

fn vrrp_decoder(b: &[u8]) {
    let policy = RxPolicy {
        version: Version::V2,
        auth: Auth::pass("1111"),
        interval_cs: 100,
        vips: vec![ip("198.18.116.134")],
        skip_check_adv_addr: false,
        unicast: false,
        unicast_peers: vec![ip("198.18.116.135")],
    };
    let mut tries: Vec<(&[u8], IpAddr, IpAddr, Option<u8>)> = vec![
        (b, ip("198.18.116.130"), ip("224.0.0.18"), Some(255)),
        (b, ip("fe80::2"), ip("ff02::12"), Some(255)),
    ];
    if let Ok((h, payload)) = actors::vrrp::ipv4::split(b) {
        tries.push((payload, IpAddr::V4(h.src), IpAddr::V4(h.dst), Some(h.ttl)));
    }
    for (bytes, src, dst, ttl) in tries {
        if let Ok(a) = Advert::parse(bytes, src, dst) {
            for unicast in [false, true] {
                let p = RxPolicy {
                    unicast,
                    version: a.version,
                    ..policy.clone()
                };
                let m = RxMeta {
                    src,
                    ttl,
                    dst_multicast: !unicast,
                };
                let _ = check(&p, &a, &m, Some(ip("198.18.116.131")));
            }
            // What parses must emit again.
            let _ = a.emit(src, dst);
        }
    }
}

#[test]
fn vrrp_decoder_survives_mutated_adverts() {
    fuzz(Target {
        name: "vrrp_decoder",
        seeds: vrrp_seeds(),
        tokens: &[
            b"\x21",
            b"\x31",
            b"\xff",
            b"\x00\x00\x00\x00",
            b"\xc6\x12\x74\x86",
            b"\x45\x00",
        ],
        run: &vrrp_decoder,
    });
}

// ---- ipvs_decoder ----------------------------------------------------------------------

fn genl(msg: IpvsMsg) -> Vec<u8> {
    let g = GenlMessage::from_payload(msg);
    let mut buf = vec![0; g.buffer_len()];
    g.emit(&mut buf);
    buf
}

/// A netlink message around a genl payload (family id 30, as the kernel might assign).
fn nlmsg(payload: &[u8], seq: u32) -> Vec<u8> {
    let len = 16 + payload.len();
    let mut b = Vec::with_capacity(len);
    b.extend((len as u32).to_le_bytes());
    b.extend(30u16.to_le_bytes());
    b.extend(2u16.to_le_bytes()); // NLM_F_MULTI
    b.extend(seq.to_le_bytes());
    b.extend(0u32.to_le_bytes());
    b.extend_from_slice(payload);
    while b.len() % 4 != 0 {
        b.push(0);
    }
    b
}

fn ipvs_seeds() -> Vec<Vec<u8>> {
    let tcp = SvcKey::Inet {
        proto: Protocol::Tcp,
        addr: ip("198.18.0.1"),
        port: 80,
    };
    let udp6 = SvcKey::Inet {
        proto: Protocol::Udp,
        addr: ip("2001:db8::1"),
        port: 53,
    };
    let mark = SvcKey::Fwmark { v6: false, mark: 7 };
    let spec = |sched: &str, p: Option<(u32, u8)>| SvcSpec {
        sched: sched.into(),
        persistence: p.map(|(timeout, prefix)| Persistence { timeout, prefix }),
        ops: false,
        sched_flags: 0,
    };
    let d = |a: &str| DestKey {
        addr: ip(a),
        port: 80,
    };
    let ds = |fwd, weight| DestSpec {
        fwd,
        weight,
        u_thresh: 0,
        l_thresh: 0,
    };
    let ops = [
        Op::AddService(tcp, spec("rr", None)),
        Op::EditService(udp6, spec("sh", Some((300, 128)))),
        Op::AddService(mark, spec("wrr", Some((60, 24)))),
        Op::AddDest(tcp, d("198.18.0.2"), ds(Forwarding::Dr, 3)),
        Op::EditDest(udp6, d("2001:db8::2"), ds(Forwarding::Nat, 0)),
        Op::DelDest(mark, d("198.18.0.3")),
        Op::DelService(tcp),
    ];
    let mut seeds: Vec<Vec<u8>> = Vec::new();
    let mut dump = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        let g = genl(IpvsMsg::from(op));
        let n = nlmsg(&g, i as u32);
        dump.extend_from_slice(&n);
        seeds.push(g);
        seeds.push(n);
    }
    seeds.push(dump);
    // An error reply (EEXIST) and the end of a dump.
    let mut err = vec![0u8; 4];
    err.copy_from_slice(&(-17i32).to_le_bytes());
    err.extend(nlmsg(&[0; 4], 9)[..16].iter().copied());
    let mut e = nlmsg(&err, 9);
    e[4..6].copy_from_slice(&2u16.to_le_bytes());
    seeds.push(e);
    let mut done = nlmsg(&0i32.to_le_bytes(), 10);
    done[4..6].copy_from_slice(&3u16.to_le_bytes());
    seeds.push(done);
    seeds
}

fn ipvs_decoder(b: &[u8]) {
    let svc = SvcKey::Inet {
        proto: Protocol::Tcp,
        addr: ip("198.18.0.1"),
        port: 80,
    };
    if let Ok(g) = GenlMessage::<IpvsMsg>::parse_with_param(b, 30u16) {
        let m = g.payload;
        let _ = m.to_op();
        let _ = m.service();
        let _ = m.dest(&svc);
        let _ = genl(m);
    }
    if let Ok(msgs) = actors::lb::ipvs::frame::split::<IpvsMsg>(b) {
        for r in msgs {
            if let actors::lb::ipvs::frame::Reply::Data(m) = r.reply {
                let _ = m.to_op();
                let _ = m.service();
                let _ = m.dest(&svc);
            }
        }
    }
}

#[test]
fn ipvs_decoder_survives_mutated_netlink_replies() {
    fuzz(Target {
        name: "ipvs_decoder",
        seeds: ipvs_seeds(),
        tokens: &[
            b"\x04\x00\x01\x00",
            b"\x08\x00\x02\x00",
            b"\xff\xff",
            b"\x00\x00\x00\x00",
            b"\x0a\x00",
            b"\x02\x00",
        ],
        run: &ipvs_decoder,
    });
}

// ---- admin_request ---------------------------------------------------------------------

/// `PATH\nQUERY\nHEADER: VALUE...\n\nBODY`.
fn request(path: &str, query: &str, headers: &[&str], body: &[u8]) -> Vec<u8> {
    let mut b = format!("{path}\n{query}\n{}\n\n", headers.join("\n")).into_bytes();
    b.extend_from_slice(body);
    b
}

fn admin_seeds() -> Vec<Vec<u8>> {
    let conf = String::from_utf8_lossy(&config_seeds()[0]).into_owned();
    let files = BTreeMap::from([("cluster.conf".to_string(), conf)]);
    let (_, loaded) = ha_config::bundle::load_bundle("cluster.conf", &files);
    let proposal = serde_json::json!({
        "main": "cluster.conf",
        "files": files,
        "hash": ha_config::canon::hash(&loaded.cluster),
        "author": "alice",
        "reason": "fuzz",
        "client_time_ms": 1,
        "base_version": 3,
        "proposal_id": "p-1",
    })
    .to_string();
    let vote = openraft::raft::VoteRequest::<u64>::new(openraft::Vote::new(3, 7), None);
    let vote = raft_store::codec::encode(&vote).expect("encode vote");
    let ca = ha_config::pki::new_ca("fuzz", 1).expect("ca");
    let cert = ha_config::pki::issue(
        &ca.cert_pem,
        &ca.key_pem,
        &ha_config::pki::Subject {
            name: "lvs01",
            role: ha_config::access::Role::Director,
            ips: &[ip("198.18.116.130")],
            days: 1,
        },
    )
    .expect("cert");
    use rustls::pki_types::pem::PemObject;
    let der = rustls::pki_types::CertificateDer::from_pem_slice(cert.cert_pem.as_bytes()).expect("der");
    vec![
        request(
            "/v1/proposals",
            "",
            &["authorization: Bearer hat_00"],
            proposal.as_bytes(),
        ),
        // The one token decode_request's tokens know (operator "deployer").
        request("/v1/status", "", &["authorization: Bearer hat_fuzz"], b""),
        request(
            "/v1/members",
            "",
            &["x-ha-forwarded-identity: alice operator token"],
            br#"{"name":"lvs03","addr":"198.18.116.140:7101","author":"a","reason":"r"}"#,
        ),
        request("/v1/members/lvs%2003", "author=a%20b&reason=x+y", &[], b""),
        request("/v1/history", "from=1&to=18446744073709551615&limit=10", &[], b""),
        request("/v1/replay", "at=1700000000000", &[], b""),
        request("/v1/debug/hold-table", "", &[], br#"{"version": null}"#),
        request("/raft/vote", "", &["x-ha-target-incarnation: abc"], &vote),
        request("/raft/append", "", &[], der.as_ref()),
    ]
}

fn admin_request(b: &[u8]) {
    let split = b.windows(2).position(|w| w == b"\n\n").unwrap_or(b.len());
    let head = String::from_utf8_lossy(&b[..split]).into_owned();
    let body = b.get(split + 2..).unwrap_or(&[]);
    let mut lines = head.lines();
    let path = lines.next().unwrap_or("");
    let query = lines.next().unwrap_or("");
    let headers: Vec<(&str, &str)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim(), v.trim()))
        .collect();
    let _ = hanode::admin::decode_request(path, query, &headers, body);
}

#[test]
fn admin_request_decoding_survives_mutated_requests() {
    fuzz(Target {
        name: "admin_request",
        seeds: admin_seeds(),
        tokens: &[
            b"%",
            b"%zz",
            b"&",
            b"=",
            b"\"files\":{}",
            b"{",
            b"}",
            b"[",
            b"null",
            b"\\u0000",
            b"\x01",
            b"Bearer ",
            b"hat_fuzz",
        ],
        run: &admin_request,
    });
}

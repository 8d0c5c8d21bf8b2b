//! Whole datagrams captured from keepalived 2.2.7 in a namespace
//! (`tests/fixtures/capture-keepalived.sh 2|3`): IP header split, advert parsed, checks
//! passed, and our encoding of the same advert is byte-identical.

use actors::vrrp::check::{check, RxMeta, RxPolicy};
use actors::vrrp::ipv4;
use actors::vrrp::packet::{Advert, Auth, Version};
use std::net::IpAddr;

fn datagram(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let hex = std::fs::read_to_string(&path).unwrap();
    let hex = hex.trim();
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

fn roundtrip(name: &str, version: Version, auth: Auth) {
    let d = datagram(name);
    let (h, payload) = ipv4::split(&d).unwrap();
    assert_eq!((h.ttl, h.protocol), (255, 112));
    let (src, dst) = (IpAddr::V4(h.src), IpAddr::V4(h.dst));
    let a = Advert::parse(payload, src, dst).unwrap();
    let vip: IpAddr = "198.18.116.134".parse().unwrap();
    let policy = RxPolicy {
        version,
        auth,
        interval_cs: 100,
        vips: vec![vip],
        skip_check_adv_addr: false,
        unicast: false,
        unicast_peers: vec![],
    };
    let meta = RxMeta {
        src,
        ttl: Some(h.ttl),
        dst_multicast: true,
    };
    assert_eq!(check(&policy, &a, &meta, None), Ok(()));
    let ours = Advert {
        version,
        vrid: 51,
        priority: 100,
        interval_cs: 100,
        auth,
        addrs: vec![vip],
        checksum: 0,
    };
    assert_eq!(ours.emit(src, dst).unwrap(), payload);
}

#[test]
fn keepalived_v2_pass_datagram() {
    roundtrip("keepalived-2.2.7-v2-pass.hex", Version::V2, Auth::pass("1111"));
}

#[test]
fn keepalived_v3_datagram() {
    roundtrip("keepalived-2.2.7-v3.hex", Version::V3, Auth::None);
}

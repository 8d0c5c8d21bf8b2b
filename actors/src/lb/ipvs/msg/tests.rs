//! Byte fixtures (hand-computed from `include/uapi/linux/ip_vs.h` and the kernel's
//! `ip_vs_genl_fill_service` / `ip_vs_genl_fill_dest`) and round trips for the IPVS codec.
//! Bytes start at the `genlmsghdr`; host-order integers are little-endian here.

use super::*;
use crate::lb::diff::Op;
use crate::lb::model::{DestKey, DestSpec, Persistence, SvcKey, SvcSpec};
use ha_config::model::{Forwarding, Protocol};
use netlink_packet_generic::GenlMessage;
use proptest::prelude::*;
use std::net::IpAddr;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn tcp(addr: &str, port: u16) -> SvcKey {
    SvcKey::Inet {
        proto: Protocol::Tcp,
        addr: ip(addr),
        port,
    }
}

fn dest(addr: &str, port: u16) -> DestKey {
    DestKey { addr: ip(addr), port }
}

fn spec(sched: &str, persistence: Option<(u32, u8)>) -> SvcSpec {
    SvcSpec {
        sched: sched.into(),
        persistence: persistence.map(|(timeout, prefix)| Persistence { timeout, prefix }),
        ops: false,
        sched_flags: 0,
    }
}

fn dspec(fwd: Forwarding, weight: u32) -> DestSpec {
    DestSpec {
        fwd,
        weight,
        u_thresh: 0,
        l_thresh: 0,
    }
}

/// genlmsghdr + payload, as it follows the nlmsghdr.
fn emit(msg: IpvsMsg) -> Vec<u8> {
    let g = GenlMessage::from_payload(msg);
    let mut buf = vec![0; g.buffer_len()];
    g.emit(&mut buf);
    buf
}

fn parse(bytes: &[u8]) -> Result<IpvsMsg, DecodeError> {
    GenlMessage::<IpvsMsg>::parse_with_param(bytes, 0).map(|g| g.payload)
}

fn encode(op: &Op) -> Vec<u8> {
    emit(IpvsMsg::from(op))
}

// ---- requests -------------------------------------------------------------------------

/// `ipvsadm -A -t 198.18.0.1:80 -s rr`.
#[rustfmt::skip]
const ADD_TCP4_RR: [u8; 88] = [
    0x01, 0x01, 0x00, 0x00,                         // genl: cmd NEW_SERVICE, version 1, reserved
    0x54, 0x00, 0x01, 0x00,                         // SERVICE nest, 84 bytes
    0x06, 0x00, 0x01, 0x00, 0x02, 0x00, 0x00, 0x00, //   AF = AF_INET (u16 + 2 pad)
    0x06, 0x00, 0x02, 0x00, 0x06, 0x00, 0x00, 0x00, //   PROTOCOL = 6 (TCP)
    0x14, 0x00, 0x03, 0x00,                         //   ADDR, 16 bytes:
    198, 18, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, //     198.18.0.1 in the first four
    0x06, 0x00, 0x04, 0x00, 0x00, 0x50, 0x00, 0x00, //   PORT = 80, big-endian
    0x07, 0x00, 0x06, 0x00, b'r', b'r', 0x00, 0x00, //   SCHED_NAME = "rr\0" + 1 pad
    0x0c, 0x00, 0x07, 0x00,                         //   FLAGS:
    0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, //     flags 0, mask all ones
    0x08, 0x00, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, //   TIMEOUT = 0
    0x08, 0x00, 0x09, 0x00, 0xff, 0xff, 0xff, 0xff, //   NETMASK = 255.255.255.255
];

/// `ipvsadm -A -t 198.18.1.10:443 -s wlc -p 300 -M 255.255.255.0`.
#[rustfmt::skip]
const ADD_PERSIST_24: [u8; 88] = [
    0x01, 0x01, 0x00, 0x00,                         // genl: NEW_SERVICE, version 1
    0x54, 0x00, 0x01, 0x00,                         // SERVICE nest, 84 bytes
    0x06, 0x00, 0x01, 0x00, 0x02, 0x00, 0x00, 0x00, //   AF = AF_INET
    0x06, 0x00, 0x02, 0x00, 0x06, 0x00, 0x00, 0x00, //   PROTOCOL = TCP
    0x14, 0x00, 0x03, 0x00,                         //   ADDR:
    198, 18, 1, 10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0x06, 0x00, 0x04, 0x00, 0x01, 0xbb, 0x00, 0x00, //   PORT = 443
    0x08, 0x00, 0x06, 0x00, b'w', b'l', b'c', 0x00, //   SCHED_NAME = "wlc\0"
    0x0c, 0x00, 0x07, 0x00,                         //   FLAGS:
    0x01, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, //     PERSISTENT, mask all ones
    0x08, 0x00, 0x08, 0x00, 0x2c, 0x01, 0x00, 0x00, //   TIMEOUT = 300 s
    0x08, 0x00, 0x09, 0x00, 0xff, 0xff, 0xff, 0x00, //   NETMASK = 255.255.255.0 (network order)
];

/// `ipvsadm -A -f 7 -6 -s sh -p 600 -M 64`.
#[rustfmt::skip]
const ADD_FWMARK_V6: [u8; 60] = [
    0x01, 0x01, 0x00, 0x00,                         // genl: NEW_SERVICE, version 1
    0x38, 0x00, 0x01, 0x00,                         // SERVICE nest, 56 bytes
    0x06, 0x00, 0x01, 0x00, 0x0a, 0x00, 0x00, 0x00, //   AF = AF_INET6 (10)
    0x08, 0x00, 0x05, 0x00, 0x07, 0x00, 0x00, 0x00, //   FWMARK = 7 (no protocol/addr/port)
    0x07, 0x00, 0x06, 0x00, b's', b'h', 0x00, 0x00, //   SCHED_NAME = "sh\0"
    0x0c, 0x00, 0x07, 0x00,                         //   FLAGS:
    0x01, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, //     PERSISTENT, mask all ones
    0x08, 0x00, 0x08, 0x00, 0x58, 0x02, 0x00, 0x00, //   TIMEOUT = 600 s
    0x08, 0x00, 0x09, 0x00, 0x40, 0x00, 0x00, 0x00, //   NETMASK = prefix length 64, host order
];

/// The SERVICE nest that names TCP 198.18.0.1:80 in destination commands (no full entry).
#[rustfmt::skip]
const SVC_TCP4_ID: [u8; 48] = [
    0x30, 0x00, 0x01, 0x00,                         // SERVICE nest, 48 bytes
    0x06, 0x00, 0x01, 0x00, 0x02, 0x00, 0x00, 0x00, //   AF = AF_INET
    0x06, 0x00, 0x02, 0x00, 0x06, 0x00, 0x00, 0x00, //   PROTOCOL = TCP
    0x14, 0x00, 0x03, 0x00,                         //   ADDR = 198.18.0.1
    198, 18, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0x06, 0x00, 0x04, 0x00, 0x00, 0x50, 0x00, 0x00, //   PORT = 80
];

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// `ipvsadm -a -t 198.18.0.1:80 -r 198.18.0.2:80 -g -w 1`.
#[rustfmt::skip]
fn add_dr_dest() -> Vec<u8> {
    cat(&[
        &[0x05, 0x01, 0x00, 0x00],                       // genl: NEW_DEST, version 1
        &SVC_TCP4_ID,
        &[
            0x48, 0x00, 0x02, 0x00,                         // DEST nest, 72 bytes
            0x14, 0x00, 0x01, 0x00,                         //   ADDR = 198.18.0.2
            198, 18, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            0x06, 0x00, 0x02, 0x00, 0x00, 0x50, 0x00, 0x00, //   PORT = 80
            0x08, 0x00, 0x03, 0x00, 0x03, 0x00, 0x00, 0x00, //   FWD_METHOD = DROUTE (3)
            0x08, 0x00, 0x04, 0x00, 0x01, 0x00, 0x00, 0x00, //   WEIGHT = 1
            0x08, 0x00, 0x05, 0x00, 0x00, 0x00, 0x00, 0x00, //   U_THRESH = 0
            0x08, 0x00, 0x06, 0x00, 0x00, 0x00, 0x00, 0x00, //   L_THRESH = 0
            0x06, 0x00, 0x0b, 0x00, 0x02, 0x00, 0x00, 0x00, //   ADDR_FAMILY = AF_INET
        ],
    ])
}

/// `ipvsadm -e -t 198.18.0.1:80 -r 198.18.0.2:80 -m -w 5 -x 1000`.
#[rustfmt::skip]
fn edit_dest() -> Vec<u8> {
    cat(&[
        &[0x06, 0x01, 0x00, 0x00],                       // genl: SET_DEST, version 1
        &SVC_TCP4_ID,
        &[
            0x48, 0x00, 0x02, 0x00,                         // DEST nest, 72 bytes
            0x14, 0x00, 0x01, 0x00,                         //   ADDR = 198.18.0.2
            198, 18, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            0x06, 0x00, 0x02, 0x00, 0x00, 0x50, 0x00, 0x00, //   PORT = 80
            0x08, 0x00, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, //   FWD_METHOD = MASQ (0)
            0x08, 0x00, 0x04, 0x00, 0x05, 0x00, 0x00, 0x00, //   WEIGHT = 5
            0x08, 0x00, 0x05, 0x00, 0xe8, 0x03, 0x00, 0x00, //   U_THRESH = 1000
            0x08, 0x00, 0x06, 0x00, 0x00, 0x00, 0x00, 0x00, //   L_THRESH = 0
            0x06, 0x00, 0x0b, 0x00, 0x02, 0x00, 0x00, 0x00, //   ADDR_FAMILY = AF_INET
        ],
    ])
}

/// `ipvsadm -d -u [2001:db8::1]:53 -r [2001:db8::2]:53`.
#[rustfmt::skip]
const DEL_DEST_UDP6: [u8; 92] = [
    0x07, 0x01, 0x00, 0x00,                         // genl: DEL_DEST, version 1
    0x30, 0x00, 0x01, 0x00,                         // SERVICE nest, 48 bytes
    0x06, 0x00, 0x01, 0x00, 0x0a, 0x00, 0x00, 0x00, //   AF = AF_INET6
    0x06, 0x00, 0x02, 0x00, 0x11, 0x00, 0x00, 0x00, //   PROTOCOL = 17 (UDP)
    0x14, 0x00, 0x03, 0x00,                         //   ADDR = 2001:db8::1
    0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01,
    0x06, 0x00, 0x04, 0x00, 0x00, 0x35, 0x00, 0x00, //   PORT = 53
    0x28, 0x00, 0x02, 0x00,                         // DEST nest, 40 bytes (identity only)
    0x14, 0x00, 0x01, 0x00,                         //   ADDR = 2001:db8::2
    0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02,
    0x06, 0x00, 0x02, 0x00, 0x00, 0x35, 0x00, 0x00, //   PORT = 53
    0x06, 0x00, 0x0b, 0x00, 0x0a, 0x00, 0x00, 0x00, //   ADDR_FAMILY = AF_INET6
];

fn udp6_svc() -> SvcKey {
    SvcKey::Inet {
        proto: Protocol::Udp,
        addr: ip("2001:db8::1"),
        port: 53,
    }
}

#[test]
fn add_tcp4_service_rr_without_persistence() {
    let op = Op::AddService(tcp("198.18.0.1", 80), spec("rr", None));
    assert_eq!(encode(&op), ADD_TCP4_RR);
    assert_eq!(parse(&ADD_TCP4_RR).unwrap().to_op().unwrap(), op);
}

#[test]
fn add_service_with_persistence_300_and_netmask_24() {
    let op = Op::AddService(tcp("198.18.1.10", 443), spec("wlc", Some((300, 24))));
    assert_eq!(encode(&op), ADD_PERSIST_24);
    assert_eq!(parse(&ADD_PERSIST_24).unwrap().to_op().unwrap(), op);
}

#[test]
fn add_fwmark_ipv6_service() {
    let op = Op::AddService(SvcKey::Fwmark { v6: true, mark: 7 }, spec("sh", Some((600, 64))));
    assert_eq!(encode(&op), ADD_FWMARK_V6);
    assert_eq!(parse(&ADD_FWMARK_V6).unwrap().to_op().unwrap(), op);
}

#[test]
fn add_dr_dest_weight_1() {
    let op = Op::AddDest(
        tcp("198.18.0.1", 80),
        dest("198.18.0.2", 80),
        dspec(Forwarding::Dr, 1),
    );
    assert_eq!(encode(&op), add_dr_dest());
    assert_eq!(parse(&add_dr_dest()).unwrap().to_op().unwrap(), op);
}

#[test]
fn edit_dest_weight() {
    let mut s = dspec(Forwarding::Nat, 5);
    s.u_thresh = 1000;
    let op = Op::EditDest(tcp("198.18.0.1", 80), dest("198.18.0.2", 80), s);
    assert_eq!(encode(&op), edit_dest());
    assert_eq!(parse(&edit_dest()).unwrap().to_op().unwrap(), op);
}

#[test]
fn delete_dest_carries_identity_only() {
    let op = Op::DelDest(udp6_svc(), dest("2001:db8::2", 53));
    assert_eq!(encode(&op), DEL_DEST_UDP6);
    assert_eq!(parse(&DEL_DEST_UDP6).unwrap().to_op().unwrap(), op);
}

#[test]
fn delete_service_and_dumps_carry_identity_only() {
    let del = encode(&Op::DelService(tcp("198.18.0.1", 80)));
    assert_eq!(del, cat(&[&[0x03, 0x01, 0x00, 0x00], &SVC_TCP4_ID]));
    let get_dests = emit(IpvsMsg::get_dests(&tcp("198.18.0.1", 80)));
    assert_eq!(get_dests, cat(&[&[0x08, 0x01, 0x00, 0x00], &SVC_TCP4_ID]));
    // GET_SERVICE and FLUSH: the genl header alone.
    assert_eq!(emit(IpvsMsg::get_services()), [0x04, 0x01, 0x00, 0x00]);
    assert_eq!(emit(IpvsMsg::flush()), [0x11, 0x01, 0x00, 0x00]);
}

#[test]
fn netmask_without_persistence_is_all_ones_and_v6_is_128() {
    let v6 = svc_full(&SvcKey::Fwmark { v6: true, mark: 1 }, &spec("rr", None));
    assert!(v6.contains(&SvcAttr::Netmask([128, 0, 0, 0])));
    assert!(v6.contains(&SvcAttr::Timeout(0)));
    assert_eq!(netmask(false, 0), [0, 0, 0, 0]);
    assert_eq!(netmask(false, 32), [0xff; 4]);
    assert_eq!(netmask(false, 17), [0xff, 0xff, 0x80, 0]);
    assert_eq!(netmask(false, 40), [0xff; 4]);
}

#[test]
fn one_packet_scheduling_sets_the_flag() {
    let mut s = spec("rr", Some((60, 32)));
    s.ops = true;
    let attrs = svc_full(&tcp("198.18.0.1", 53), &s);
    assert!(attrs.contains(&SvcAttr::Flags {
        flags: SVC_F_PERSISTENT | SVC_F_ONEPACKET,
        mask: u32::MAX
    }));
}

/// Issue 22: `mh-port` and `mh-fallback` reach the kernel as IP_VS_SVC_F_SCHED2 and
/// SCHED1 (what `ipvsadm -Ln` prints as `mh-port`, `mh-fallback`), and read back.
#[test]
fn scheduler_flags_go_to_the_kernel_and_read_back() {
    let mut s = spec("mh", None);
    s.sched_flags = crate::lb::model::SCHED_PORT | crate::lb::model::SCHED_FALLBACK;
    let key = tcp("198.18.0.1", 80);
    let mut msg = IpvsMsg::from(&Op::AddService(key, s.clone()));
    let Some(CmdAttr::Service(attrs)) = msg.attrs.first_mut() else {
        panic!("no service in {msg:?}");
    };
    assert!(attrs.contains(&SvcAttr::Flags {
        flags: 0x18,
        mask: u32::MAX
    }));
    // The kernel adds HASHED: ignored.
    for a in attrs.iter_mut() {
        if let SvcAttr::Flags { flags, .. } = a {
            *flags |= SVC_F_HASHED;
        }
    }
    assert_eq!(msg.service().unwrap(), (key, s));
}

// ---- replies --------------------------------------------------------------------------

/// One GET_SERVICE dump message as the kernel fills it for
/// `ipvsadm -A -t 198.18.0.1:80 -s wrr -p 300 -M 255.255.255.0` (stats trimmed to one counter).
#[rustfmt::skip]
const SERVICE_REPLY: [u8; 116] = [
    0x01, 0x01, 0x00, 0x00,                         // genl: cmd NEW_SERVICE (dumps reuse it), version 1
    0x70, 0x00, 0x01, 0x00,                         // SERVICE nest, 112 bytes (no NLA_F_NESTED)
    0x06, 0x00, 0x01, 0x00, 0x02, 0x00, 0x00, 0x00, //   AF = AF_INET
    0x06, 0x00, 0x02, 0x00, 0x06, 0x00, 0x00, 0x00, //   PROTOCOL = TCP
    0x14, 0x00, 0x03, 0x00,                         //   ADDR = 198.18.0.1
    198, 18, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0x06, 0x00, 0x04, 0x00, 0x00, 0x50, 0x00, 0x00, //   PORT = 80
    0x08, 0x00, 0x06, 0x00, b'w', b'r', b'r', 0x00, //   SCHED_NAME = "wrr\0"
    0x0c, 0x00, 0x07, 0x00,                         //   FLAGS:
    0x03, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, //     PERSISTENT | HASHED, mask all ones
    0x08, 0x00, 0x08, 0x00, 0x2c, 0x01, 0x00, 0x00, //   TIMEOUT = 300
    0x08, 0x00, 0x09, 0x00, 0xff, 0xff, 0xff, 0x00, //   NETMASK = 255.255.255.0
    0x0c, 0x00, 0x0a, 0x00,                         //   STATS nest, 12 bytes:
    0x08, 0x00, 0x01, 0x00, 0x05, 0x00, 0x00, 0x00, //     CONNS = 5
    0x10, 0x00, 0x0c, 0x00,                         //   STATS64 nest, 16 bytes:
    0x0c, 0x00, 0x01, 0x00,                         //     CONNS = 5 (u64)
    0x05, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
];

/// One GET_DEST dump message as the kernel fills it: 198.18.0.2:80 DR weight 1 with
/// 2 active and 7 inactive connections.
#[rustfmt::skip]
const DEST_REPLY: [u8; 136] = [
    0x05, 0x01, 0x00, 0x00,                         // genl: cmd NEW_DEST, version 1
    0x84, 0x00, 0x02, 0x00,                         // DEST nest, 132 bytes
    0x14, 0x00, 0x01, 0x00,                         //   ADDR = 198.18.0.2
    198, 18, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0x06, 0x00, 0x02, 0x00, 0x00, 0x50, 0x00, 0x00, //   PORT = 80
    0x08, 0x00, 0x03, 0x00, 0x03, 0x00, 0x00, 0x00, //   FWD_METHOD = DROUTE
    0x08, 0x00, 0x04, 0x00, 0x01, 0x00, 0x00, 0x00, //   WEIGHT = 1
    0x05, 0x00, 0x0d, 0x00, 0x00, 0x00, 0x00, 0x00, //   TUN_TYPE = 0 (u8 + 3 pad)
    0x06, 0x00, 0x0e, 0x00, 0x00, 0x00, 0x00, 0x00, //   TUN_PORT = 0
    0x06, 0x00, 0x0f, 0x00, 0x00, 0x00, 0x00, 0x00, //   TUN_FLAGS = 0
    0x08, 0x00, 0x05, 0x00, 0x00, 0x00, 0x00, 0x00, //   U_THRESH = 0
    0x08, 0x00, 0x06, 0x00, 0x00, 0x00, 0x00, 0x00, //   L_THRESH = 0
    0x08, 0x00, 0x07, 0x00, 0x02, 0x00, 0x00, 0x00, //   ACTIVE_CONNS = 2
    0x08, 0x00, 0x08, 0x00, 0x07, 0x00, 0x00, 0x00, //   INACT_CONNS = 7
    0x08, 0x00, 0x09, 0x00, 0x00, 0x00, 0x00, 0x00, //   PERSIST_CONNS = 0
    0x06, 0x00, 0x0b, 0x00, 0x02, 0x00, 0x00, 0x00, //   ADDR_FAMILY = AF_INET
    0x0c, 0x00, 0x0a, 0x00,                         //   STATS nest, 12 bytes:
    0x08, 0x00, 0x01, 0x00, 0x09, 0x00, 0x00, 0x00, //     CONNS = 9
];

#[test]
fn service_reply_decodes_and_re_emits_identically() {
    let msg = parse(&SERVICE_REPLY).unwrap();
    assert_eq!(msg.cmd, Cmd::NewService);
    assert_eq!(
        msg.service().unwrap(),
        (tcp("198.18.0.1", 80), spec("wrr", Some((300, 24))))
    );
    assert_eq!(emit(msg), SERVICE_REPLY);
}

#[test]
fn dest_reply_decodes_and_re_emits_identically() {
    let msg = parse(&DEST_REPLY).unwrap();
    assert_eq!(msg.cmd, Cmd::NewDest);
    let svc = tcp("198.18.0.1", 80);
    assert_eq!(
        msg.dest(&svc).unwrap(),
        (dest("198.18.0.2", 80), dspec(Forwarding::Dr, 1))
    );
    let nest = msg.dest_attrs().unwrap();
    assert!(nest.contains(&DestAttr::ActiveConns(2)));
    assert!(nest.contains(&DestAttr::InactConns(7)));
    assert_eq!(emit(msg), DEST_REPLY);
}

/// Replaces the 4 value bytes of the attribute whose header (len, type) starts at `at`.
fn patched(bytes: &[u8], at: usize, value: [u8; 4]) -> Vec<u8> {
    let mut b = bytes.to_vec();
    b[at + 4..at + 8].copy_from_slice(&value);
    b
}

#[test]
fn unknown_af_protocol_and_forwarding_are_errors() {
    // AF header at 8, PROTOCOL at 16, NETMASK at 76 in SERVICE_REPLY.
    let bad_af = parse(&patched(&SERVICE_REPLY, 8, [7, 0, 0, 0])).unwrap();
    assert_eq!(bad_af.service(), Err(MsgError::UnknownAf(7)));
    let esp = parse(&patched(&SERVICE_REPLY, 16, [50, 0, 0, 0])).unwrap();
    assert_eq!(esp.service(), Err(MsgError::UnknownProtocol(50)));
    // FWD_METHOD at 36 in DEST_REPLY: LOCALNODE (1) is not something we configure.
    let local = parse(&patched(&DEST_REPLY, 36, [1, 0, 0, 0])).unwrap();
    assert_eq!(local.dest(&tcp("198.18.0.1", 80)), Err(MsgError::UnknownFwd(1)));
    // ADDR_FAMILY at 116.
    let bad_daf = parse(&patched(&DEST_REPLY, 116, [3, 0, 0, 0])).unwrap();
    assert_eq!(bad_daf.dest(&tcp("198.18.0.1", 80)), Err(MsgError::UnknownAf(3)));
}

#[test]
fn v6_netmask_over_128_is_an_error() {
    let mut attrs = svc_full(&SvcKey::Fwmark { v6: true, mark: 1 }, &spec("rr", Some((1, 64))));
    for a in attrs.iter_mut() {
        if let SvcAttr::Netmask(m) = a {
            *m = 200u32.to_ne_bytes();
        }
    }
    let msg = IpvsMsg {
        cmd: Cmd::NewService,
        attrs: vec![CmdAttr::Service(attrs)],
    };
    assert_eq!(msg.service(), Err(MsgError::BadPrefix(200)));
}

#[test]
fn missing_attributes_are_errors() {
    let msg = IpvsMsg {
        cmd: Cmd::NewService,
        attrs: vec![CmdAttr::Service(svc_id(&tcp("198.18.0.1", 80)))],
    };
    assert_eq!(msg.service(), Err(MsgError::Missing("service SCHED_NAME")));
    assert_eq!(
        IpvsMsg::get_services().service(),
        Err(MsgError::Missing("SERVICE"))
    );
    let no_port = IpvsMsg {
        cmd: Cmd::NewService,
        attrs: vec![CmdAttr::Service(vec![SvcAttr::Af(2), SvcAttr::Protocol(6)])],
    };
    assert_eq!(no_port.service(), Err(MsgError::Missing("service ADDR")));
    assert_eq!(IpvsMsg::flush().to_op(), Err(MsgError::UnexpectedCmd(Cmd::Flush)));
}

#[test]
fn dest_without_family_takes_the_service_family() {
    let msg = IpvsMsg {
        cmd: Cmd::NewDest,
        attrs: vec![CmdAttr::Dest(vec![
            DestAttr::Addr(addr_bytes(ip("2001:db8::9"))),
            DestAttr::Port(80),
            DestAttr::FwdMethod(2),
            DestAttr::Weight(3),
        ])],
    };
    let (d, s) = msg.dest(&SvcKey::Fwmark { v6: true, mark: 1 }).unwrap();
    assert_eq!(d, dest("2001:db8::9", 80));
    assert_eq!(s, dspec(Forwarding::Tun, 3));
}

#[test]
fn info_reply_attributes_are_not_read_as_nests() {
    // GET_INFO's reply reuses attribute 1 for a u32 version (here 1.2.1).
    #[rustfmt::skip]
    let info = [
        0x0e, 0x01, 0x00, 0x00,                         // genl: cmd SET_INFO (the info reply)
        0x08, 0x00, 0x01, 0x00, 0x01, 0x02, 0x01, 0x00, // INFO_ATTR_VERSION
        0x08, 0x00, 0x02, 0x00, 0x00, 0x10, 0x00, 0x00, // INFO_ATTR_CONN_TAB_SIZE = 4096
    ];
    let msg = parse(&info).unwrap();
    assert_eq!(msg.cmd, Cmd::Other(14));
    assert!(matches!(
        msg.attrs.as_slice(),
        [CmdAttr::Other(_), CmdAttr::Other(_)]
    ));
    assert_eq!(emit(msg), info);
}

#[test]
fn truncated_fixtures_never_panic() {
    let all: [&[u8]; 6] = [
        &ADD_TCP4_RR,
        &ADD_PERSIST_24,
        &ADD_FWMARK_V6,
        &DEL_DEST_UDP6,
        &SERVICE_REPLY,
        &DEST_REPLY,
    ];
    for bytes in all {
        for n in 0..bytes.len() {
            if let Ok(m) = parse(&bytes[..n]) {
                let _ = m.service();
                let _ = m.dest(&tcp("198.18.0.1", 80));
                let _ = m.to_op();
            }
        }
    }
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        if let Ok(m) = parse(&bytes) {
            let _ = m.service();
            let _ = m.dest(&SvcKey::Fwmark { v6: false, mark: 1 });
            let _ = m.to_op();
        }
    }
}

// ---- round trips ----------------------------------------------------------------------

fn every_op_kind() -> Vec<Op> {
    let keys = [
        tcp("198.18.0.1", 80),
        udp6_svc(),
        SvcKey::Inet {
            proto: Protocol::Sctp,
            addr: ip("198.18.0.5"),
            port: 9,
        },
        SvcKey::Fwmark { v6: false, mark: 42 },
        SvcKey::Fwmark {
            v6: true,
            mark: u32::MAX,
        },
    ];
    let mut ops = Vec::new();
    for k in keys {
        let v6 = k.is_v6();
        let d = if v6 {
            dest("2001:db8::7", 8080)
        } else {
            dest("198.18.2.3", 0)
        };
        let mut s = spec("wlc", Some((3600, if v6 { 48 } else { 16 })));
        s.ops = true;
        let ds = DestSpec {
            fwd: Forwarding::Tun,
            weight: 100,
            u_thresh: 7,
            l_thresh: 3,
        };
        ops.extend([
            Op::AddService(k, spec("rr", None)),
            Op::EditService(k, s),
            Op::DelService(k),
            Op::AddDest(k, d, dspec(Forwarding::Dr, 1)),
            Op::EditDest(k, d, ds),
            Op::EditDest(k, d, dspec(Forwarding::Nat, 0)),
            Op::DelDest(k, d),
        ]);
    }
    // A v4 real server behind a v6 service (tunnelling allows it).
    ops.push(Op::AddDest(
        SvcKey::Fwmark { v6: true, mark: 3 },
        dest("198.18.9.9", 0),
        dspec(Forwarding::Tun, 2),
    ));
    ops
}

#[test]
fn every_op_kind_round_trips_through_bytes() {
    for op in every_op_kind() {
        let bytes = encode(&op);
        let msg = parse(&bytes).unwrap_or_else(|e| panic!("{op}: {e}"));
        assert_eq!(msg, IpvsMsg::from(&op), "{op}");
        assert_eq!(msg.to_op().unwrap(), op);
    }
}

#[test]
fn full_entries_decode_like_dump_replies() {
    // A dump reply has the same nests as NEW_SERVICE / NEW_DEST: what we add reads back.
    for op in every_op_kind() {
        let msg = parse(&encode(&op)).unwrap();
        match &op {
            Op::AddService(k, s) | Op::EditService(k, s) => {
                assert_eq!(msg.service().unwrap(), (*k, s.clone()))
            }
            Op::AddDest(k, d, s) | Op::EditDest(k, d, s) => assert_eq!(msg.dest(k).unwrap(), (*d, *s)),
            _ => {}
        }
    }
}

//! New DR flows as the kernel reports them (issue 22, flow state that follows the VIP;
//! design in docs/dev-notes/flow-sync.md). The DR tables' `pick` chain, which only a
//! flow's first packet reaches, logs the packet to an NFLOG group once its mark holds the
//! chosen destination: the message carries that mark and the packet's first bytes, so the
//! client's address and port. Pure: the subscription requests to send and the parsing of
//! what the kernel answers; the socket is elsewhere.

use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
use netlink_packet_netfilter::nflog::{
    config_request, ConfigCmd, ConfigMode, ConfigNla, PacketNla, ULogMessage,
};
use netlink_packet_netfilter::{NetfilterMessage, NetfilterMessageInner, NetfilterProtoFamily};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The NFLOG group the DR tables log new flows to.
pub const FLOW_LOG_GROUP: u16 = 0x4861;
/// Bytes of each packet the kernel copies: an IPv6 header (40), a few extension headers
/// and a port fit.
pub const SNAPLEN: u32 = 128;
/// The kernel sends a message when this many packets wait, or after [`FLUSH_HUNDREDTHS`].
pub const QUEUE_THRESHOLD: u32 = 64;
pub const FLUSH_HUNDREDTHS: u32 = 1;

/// A flow's first packet as logged: who sent it and the mark (service tag | destination)
/// the data plane gave it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoggedFlow {
    pub client: SocketAddr,
    pub mark: u32,
}

/// The requests that subscribe a socket to [`FLOW_LOG_GROUP`] for netdev packets, each a
/// framed netlink message (sequence numbers from `seq`): bind the family, bind the group,
/// copy [`SNAPLEN`] bytes, batch up to [`QUEUE_THRESHOLD`] messages.
pub fn subscribe_requests(seq: u32) -> Vec<Vec<u8>> {
    let family = NetfilterProtoFamily::NetDev;
    let requests = [
        (0, vec![ConfigNla::Cmd(ConfigCmd::PfBind)]),
        (FLOW_LOG_GROUP, vec![ConfigNla::Cmd(ConfigCmd::Bind)]),
        (
            FLOW_LOG_GROUP,
            vec![
                ConfigNla::Mode(ConfigMode::new_packet(SNAPLEN)),
                ConfigNla::QThresh(QUEUE_THRESHOLD),
                ConfigNla::Timeout(netlink_packet_netfilter::nflog::Timeout::new(FLUSH_HUNDREDTHS)),
            ],
        ),
    ];
    requests
        .into_iter()
        .enumerate()
        .map(|(i, (group, nlas))| {
            let mut m = config_request(family, group, nlas);
            m.header.sequence_number = seq.wrapping_add(i as u32);
            let mut buf = vec![0u8; m.buffer_len()];
            m.serialize(&mut buf);
            buf
        })
        .collect()
}

/// The flows in one receive buffer (any number of netlink messages). Messages that are
/// not logged packets, or whose packet is not an IPv4/IPv6 TCP, UDP or SCTP one with its
/// ports, are skipped: the buffer comes from the kernel, but nothing in it is trusted.
pub fn parse(buf: &[u8]) -> Vec<LoggedFlow> {
    let mut out = Vec::new();
    let mut off = 0;
    while off + 16 <= buf.len() {
        let len = u32::from_ne_bytes([buf[off], buf[off + 1], buf[off + 2], buf[off + 3]]) as usize;
        if len < 16 || off + len > buf.len() {
            break;
        }
        if let Some(f) = one(&buf[off..off + len]) {
            out.push(f);
        }
        off += (len + 3) & !3;
    }
    out
}

fn one(bytes: &[u8]) -> Option<LoggedFlow> {
    let msg = NetlinkMessage::<NetfilterMessage>::deserialize(bytes).ok()?;
    let NetlinkPayload::InnerMessage(m) = msg.payload else {
        return None;
    };
    let NetfilterMessageInner::ULog(ULogMessage::Packet(nlas)) = m.inner else {
        return None;
    };
    let mut mark = None;
    let mut payload = None;
    for nla in nlas {
        match nla {
            PacketNla::Mark(v) => mark = Some(v),
            PacketNla::Payload(p) => payload = Some(p),
            _ => {}
        }
    }
    Some(LoggedFlow {
        client: source(&payload?)?,
        mark: mark?,
    })
}

/// The source address and port of an IPv4 or IPv6 packet carrying TCP, UDP or SCTP
/// (whose first two bytes are the source port), from its first bytes.
pub fn source(packet: &[u8]) -> Option<SocketAddr> {
    const TCP: u8 = 6;
    const UDP: u8 = 17;
    const SCTP: u8 = 132;
    let port_at = |at: usize| -> Option<u16> {
        let b = packet.get(at..at + 2)?;
        Some(u16::from_be_bytes([b[0], b[1]]))
    };
    match packet.first()? >> 4 {
        4 => {
            let ihl = usize::from(packet[0] & 0x0f) * 4;
            // A fragment after the first has no ports.
            let frag = u16::from_be_bytes([*packet.get(6)?, *packet.get(7)?]) & 0x1fff;
            if ihl < 20 || frag != 0 || ![TCP, UDP, SCTP].contains(packet.get(9)?) {
                return None;
            }
            let a = packet.get(12..16)?;
            let addr = Ipv4Addr::new(a[0], a[1], a[2], a[3]);
            Some(SocketAddr::new(IpAddr::V4(addr), port_at(ihl)?))
        }
        6 => {
            // nftables' `th` finds the transport header past extension headers: so does
            // this, within the bytes copied (hop-by-hop, routing, destination options; a
            // fragment header only on the first fragment).
            const HOP_BY_HOP: u8 = 0;
            const ROUTING: u8 = 43;
            const FRAGMENT: u8 = 44;
            const DEST_OPTS: u8 = 60;
            let mut next = *packet.get(6)?;
            let mut at = 40;
            for _ in 0..8 {
                match next {
                    HOP_BY_HOP | ROUTING | DEST_OPTS => {
                        let h = packet.get(at..at + 2)?;
                        next = h[0];
                        at += (usize::from(h[1]) + 1) * 8;
                    }
                    FRAGMENT => {
                        let h = packet.get(at..at + 4)?;
                        if u16::from_be_bytes([h[2], h[3]]) & 0xfff8 != 0 {
                            return None;
                        }
                        next = h[0];
                        at += 8;
                    }
                    _ => break,
                }
            }
            if ![TCP, UDP, SCTP].contains(&next) {
                return None;
            }
            let a: [u8; 16] = packet.get(8..24)?.try_into().ok()?;
            Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(a)), port_at(at)?))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A message the kernel sent (captured on this machine's kernel, 2026-12-07): a TCP SYN
    /// from 198.18.200.1:40123 to 198.18.200.2:7000 at a netdev ingress chain that set the
    /// mark 0x00030002 and logged it to group 7 with `snaplen 64`.
    const CAPTURED: &str = "e000000000040000000000000000000005000007080001000800000005000a000000000008000400000000020800020000030002100008000006000012791d88a5e0000006000f000001000006001100000e000012001000da5a037b134712791d88a5e00800000014000300000000006b165c0400000000000213ec08000b000000000008000e000000000012001500da5a037b134712791d88a5e008000000400009004500003c7b9240004006a300c612c801c612c8029cbb1b586ea17db100000000a002faf01c580000020405b40402080a74d4225f000000000103030a";

    fn bytes(hex: &str) -> Vec<u8> {
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
            .collect()
    }

    #[test]
    fn a_logged_packet_gives_its_client_and_mark() {
        let flows = parse(&bytes(CAPTURED));
        assert_eq!(
            flows,
            vec![LoggedFlow {
                client: "198.18.200.1:40123".parse().expect("addr"),
                mark: 0x0003_0002,
            }]
        );
    }

    #[test]
    fn several_messages_in_one_buffer_are_all_read() {
        let one = bytes(CAPTURED);
        let mut buf = one.clone();
        buf.extend_from_slice(&one);
        assert_eq!(parse(&buf).len(), 2);
    }

    #[test]
    fn truncated_or_foreign_bytes_give_nothing_and_never_panic() {
        let one = bytes(CAPTURED);
        for cut in 0..one.len() {
            let _ = parse(&one[..cut]);
        }
        assert!(parse(&one[..one.len() - 1]).is_empty());
        // A config answer (an ack) is not a flow.
        let mut ack = vec![0u8; 36];
        ack[0] = 36;
        ack[4] = 2; // NLMSG_ERROR
        assert!(parse(&ack).is_empty());
        // Any byte flipped: a flow or nothing, never a panic.
        for i in 0..one.len() {
            let mut b = one.clone();
            b[i] ^= 0xff;
            let _ = parse(&b);
        }
    }

    #[test]
    fn sources_of_ipv4_and_ipv6_transport_packets() {
        let all = bytes(CAPTURED);
        // The payload attribute ends the message: a 60-byte SYN.
        let v4 = &all[all.len() - 60..];
        assert_eq!(source(v4), Some("198.18.200.1:40123".parse().expect("addr")));
        let mut frag = v4.to_vec();
        frag[7] = 1; // offset 8: a later fragment
        assert_eq!(source(&frag), None);
        let mut icmp = v4.to_vec();
        icmp[9] = 1;
        assert_eq!(source(&icmp), None);
        let mut v6 = vec![0u8; 44];
        v6[0] = 0x60;
        v6[6] = 17; // UDP
        v6[8..24].copy_from_slice(&"2001:db8::7".parse::<Ipv6Addr>().expect("v6").octets());
        v6[40..42].copy_from_slice(&5353u16.to_be_bytes());
        assert_eq!(source(&v6), Some("[2001:db8::7]:5353".parse().expect("addr")));
        assert_eq!(source(&v6[..41]), None);
        // Past a hop-by-hop header (8 bytes) to a TCP port.
        let mut ext = v6[..40].to_vec();
        ext[6] = 0; // hop-by-hop next
        ext.extend_from_slice(&[6, 0, 0, 0, 0, 0, 0, 0]);
        ext.extend_from_slice(&443u16.to_be_bytes());
        assert_eq!(source(&ext), Some("[2001:db8::7]:443".parse().expect("addr")));
        // A later fragment has no ports.
        let mut frag6 = v6[..40].to_vec();
        frag6[6] = 44;
        frag6.extend_from_slice(&[6, 0, 0, 8, 0, 0, 0, 1, 0, 80]);
        assert_eq!(source(&frag6), None);
    }

    #[test]
    fn the_subscription_binds_netdev_and_the_group_with_a_packet_copy() {
        let reqs = subscribe_requests(100);
        assert_eq!(reqs.len(), 3);
        for (i, r) in reqs.iter().enumerate() {
            let len = u32::from_ne_bytes([r[0], r[1], r[2], r[3]]) as usize;
            assert_eq!(len, r.len());
            // NFNL_SUBSYS_ULOG (4) << 8 | NFULNL_MSG_CONFIG (1)
            assert_eq!(u16::from_ne_bytes([r[4], r[5]]), 0x0401);
            assert_eq!(u32::from_ne_bytes([r[8], r[9], r[10], r[11]]), 100 + i as u32);
            assert_eq!(r[16], 5, "NFPROTO_NETDEV");
        }
        // The group, big-endian, in the nfgenmsg of the second and third requests.
        assert_eq!(u16::from_be_bytes([reqs[1][18], reqs[1][19]]), FLOW_LOG_GROUP);
        assert_eq!(u16::from_be_bytes([reqs[0][18], reqs[0][19]]), 0);
    }
}

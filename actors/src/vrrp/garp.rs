//! Gratuitous ARP frames, as keepalived sends them on becoming MASTER: an Ethernet
//! broadcast ARP request whose sender and target protocol addresses are both the VIP, the
//! sender hardware address ours and the target hardware address broadcast.

use std::net::Ipv4Addr;

pub const FRAME_LEN: usize = 42;
const BROADCAST: [u8; 6] = [0xff; 6];

/// The Ethernet frame announcing that `vip` is at `mac`.
pub fn frame(mac: [u8; 6], vip: Ipv4Addr) -> [u8; FRAME_LEN] {
    let mut f = [0u8; FRAME_LEN];
    f[0..6].copy_from_slice(&BROADCAST);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&0x0806u16.to_be_bytes()); // ARP
    f[14..16].copy_from_slice(&1u16.to_be_bytes()); // Ethernet
    f[16..18].copy_from_slice(&0x0800u16.to_be_bytes()); // IPv4
    f[18] = 6;
    f[19] = 4;
    f[20..22].copy_from_slice(&1u16.to_be_bytes()); // request
    f[22..28].copy_from_slice(&mac);
    f[28..32].copy_from_slice(&vip.octets());
    f[32..38].copy_from_slice(&BROADCAST);
    f[38..42].copy_from_slice(&vip.octets());
    f
}

/// The VIP a gratuitous ARP frame announces, and from which MAC (for tests and captures).
pub fn parse(f: &[u8]) -> Option<([u8; 6], Ipv4Addr)> {
    if f.len() < FRAME_LEN || f[12..14] != [0x08, 0x06] || f[20..22] != [0, 1] || f[28..32] != f[38..42] {
        return None;
    }
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&f[22..28]);
    Some((mac, Ipv4Addr::new(f[28], f[29], f[30], f[31])))
}

/// The unsolicited neighbour advertisement announcing that `vip` is at `mac`, as
/// keepalived sends it: from the VIP to all nodes (ff02::1), hop limit 255, Override set,
/// with the target link-layer address option.
pub fn na_frame(mac: [u8; 6], vip: std::net::Ipv6Addr) -> Vec<u8> {
    let all_nodes = std::net::Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
    let mut icmp = vec![136u8, 0, 0, 0, 0x20, 0, 0, 0];
    icmp.extend_from_slice(&vip.octets());
    icmp.extend_from_slice(&[2, 1]);
    icmp.extend_from_slice(&mac);
    let mut pseudo = Vec::with_capacity(40);
    pseudo.extend_from_slice(&vip.octets());
    pseudo.extend_from_slice(&all_nodes.octets());
    pseudo.extend_from_slice(&(icmp.len() as u32).to_be_bytes());
    pseudo.extend_from_slice(&[0, 0, 0, 58]);
    let sum = super::packet::internet_checksum(&[&pseudo, &icmp]);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    let mut f = Vec::with_capacity(14 + 40 + icmp.len());
    f.extend_from_slice(&[0x33, 0x33, 0, 0, 0, 1]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&0x86ddu16.to_be_bytes());
    f.extend_from_slice(&[0x60, 0, 0, 0]);
    f.extend_from_slice(&(icmp.len() as u16).to_be_bytes());
    f.push(58);
    f.push(255);
    f.extend_from_slice(&vip.octets());
    f.extend_from_slice(&all_nodes.octets());
    f.extend_from_slice(&icmp);
    f
}

/// The target an unsolicited NA frame announces, and from which MAC.
pub fn parse_na(f: &[u8]) -> Option<([u8; 6], std::net::Ipv6Addr)> {
    if f.len() < 86 || f[12..14] != [0x86, 0xdd] || f[20] != 58 || f[54] != 136 {
        return None;
    }
    let mut t = [0u8; 16];
    t.copy_from_slice(&f[62..78]);
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&f[80..86]);
    Some((mac, std::net::Ipv6Addr::from(t)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_layout_matches_keepalived() {
        let mac = [0x4e, 0x09, 0x77, 0xb8, 0x00, 0x28];
        let f = frame(mac, Ipv4Addr::new(198, 18, 116, 134));
        let expect: [u8; 42] = [
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x4e, 0x09, 0x77, 0xb8, 0x00, 0x28, 0x08, 0x06, 0x00, 0x01,
            0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0x4e, 0x09, 0x77, 0xb8, 0x00, 0x28, 198, 18, 116, 134, 0xff,
            0xff, 0xff, 0xff, 0xff, 0xff, 198, 18, 116, 134,
        ];
        assert_eq!(f, expect);
        assert_eq!(parse(&f), Some((mac, Ipv4Addr::new(198, 18, 116, 134))));
        assert_eq!(parse(&f[..30]), None);
    }

    #[test]
    fn unsolicited_na_is_well_formed() {
        let mac = [0x4e, 0x09, 0x77, 0xb8, 0x00, 0x28];
        let vip: std::net::Ipv6Addr = "fe80::134".parse().unwrap();
        let f = na_frame(mac, vip);
        assert_eq!(f.len(), 86);
        assert_eq!(parse_na(&f), Some((mac, vip)));
        // The ICMPv6 checksum verifies over the pseudo-header.
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&f[22..54]);
        pseudo.extend_from_slice(&32u32.to_be_bytes());
        pseudo.extend_from_slice(&[0, 0, 0, 58]);
        assert_eq!(super::super::packet::internet_checksum(&[&pseudo, &f[54..]]), 0);
        assert_eq!(f[58], 0x20, "Override flag");
    }
}

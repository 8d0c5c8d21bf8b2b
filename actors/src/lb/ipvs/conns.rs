//! IPVS connection entries as the kernel lists them in `/proc/net/ip_vs_conn` (the table
//! `ipvsadm -Lnc` prints; generic netlink has no command for connections). Pure parsing
//! here; the read is [`read`].

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Where the kernel lists the connections of the reader's network namespace.
pub const PROC_PATH: &str = "/proc/net/ip_vs_conn";

/// A connection's identity: what a director that takes it over must know to forward
/// its next packet to the same real server.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct ConnKey {
    /// `TCP`, `UDP`, `SCTP` (as the kernel names it).
    pub proto: String,
    pub client: IpAddr,
    pub cport: u16,
    pub vaddr: IpAddr,
    pub vport: u16,
}

/// One line of the connection table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conn {
    pub key: ConnKey,
    pub dest: IpAddr,
    pub dport: u16,
    /// `ESTABLISHED`, `SYN_RECV`, `FIN_WAIT`, ... (TCP), `UDP`, ...
    pub state: String,
    /// Seconds until the entry expires.
    pub expires: u32,
}

/// An address as the kernel prints it: `%08X` for IPv4, `%pI6` (eight groups of four hex
/// digits) for IPv6.
fn addr(token: &str) -> Result<IpAddr, String> {
    if token.contains(':') {
        return token
            .parse::<Ipv6Addr>()
            .map(IpAddr::V6)
            .map_err(|e| format!("address {token:?}: {e}"));
    }
    u32::from_str_radix(token, 16)
        .map(|v| IpAddr::V4(Ipv4Addr::from(v)))
        .map_err(|e| format!("address {token:?}: {e}"))
}

fn port(token: &str) -> Result<u16, String> {
    u16::from_str_radix(token, 16).map_err(|e| format!("port {token:?}: {e}"))
}

/// Parses the table (its header line and every entry); an error names the line.
pub fn parse(text: &str) -> Result<Vec<Conn>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.is_empty() || f[0] == "Pro" {
            continue;
        }
        if f.len() < 9 {
            return Err(format!(
                "{PROC_PATH} line {}: {} fields: {line:?}",
                n + 1,
                f.len()
            ));
        }
        let at = |e: String| format!("{PROC_PATH} line {}: {e}", n + 1);
        out.push(Conn {
            key: ConnKey {
                proto: f[0].to_string(),
                client: addr(f[1]).map_err(at)?,
                cport: port(f[2]).map_err(at)?,
                vaddr: addr(f[3]).map_err(at)?,
                vport: port(f[4]).map_err(at)?,
            },
            dest: addr(f[5]).map_err(at)?,
            dport: port(f[6]).map_err(at)?,
            state: f[7].to_string(),
            expires: f[8].parse().map_err(|e| at(format!("expires {:?}: {e}", f[8])))?,
        });
    }
    Ok(out)
}

/// The keys of the established TCP and SCTP connections: what another director must hold
/// before it takes the VIP over from this one. Not UDP: the kernel syncs a UDP entry only
/// at its 3rd, 53rd, ... packet, so a short exchange (DNS) would never arrive.
pub fn live_keys(conns: &[Conn]) -> BTreeSet<ConnKey> {
    conns
        .iter()
        .filter(|c| matches!(c.key.proto.as_str(), "TCP" | "SCTP") && c.state == "ESTABLISHED")
        .map(|c| c.key.clone())
        .collect()
}

/// Reads this network namespace's connection table (empty when IPVS is not loaded).
pub fn read() -> Result<Vec<Conn>, String> {
    match std::fs::read_to_string(PROC_PATH) {
        Ok(t) => parse(&t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(format!("{PROC_PATH}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As a 6.1 kernel prints it (`ip_vs_conn_seq_show`): a synced TCP connection, a
    /// closing one, a UDP one, and an IPv6 one.
    const TABLE: &str = "\
Pro FromIP   FPrt ToIP     TPrt DestIP   DPrt State       Expires PEName PEData
TCP C6127465 9C41 C6127486 1B58 C6127483 1B58 ESTABLISHED     899
TCP C6127466 A000 C6127486 1B58 C6127484 1B58 FIN_WAIT        119
UDP C6127465 D431 C6127486 0035 C6123203 0035 UDP             299
TCP 2001:0db8:0000:0000:0000:0000:0000:0001 C350 2001:0db8:0000:0000:0000:0000:0000:0086 0050 2001:0db8:0000:0000:0000:0000:0000:0083 0050 ESTABLISHED     900
";

    #[test]
    fn the_kernel_table_parses_with_addresses_ports_and_states() {
        let c = parse(TABLE).expect("parses");
        assert_eq!(c.len(), 4);
        assert_eq!(
            c[0],
            Conn {
                key: ConnKey {
                    proto: "TCP".into(),
                    client: "198.18.116.101".parse().unwrap(),
                    cport: 40001,
                    vaddr: "198.18.116.134".parse().unwrap(),
                    vport: 7000,
                },
                dest: "198.18.116.131".parse().unwrap(),
                dport: 7000,
                state: "ESTABLISHED".into(),
                expires: 899,
            }
        );
        assert_eq!(c[2].key.vport, 53);
        assert_eq!(c[3].key.client, "2001:db8::1".parse::<IpAddr>().unwrap());
        assert_eq!(c[3].dest, "2001:db8::83".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn only_live_connections_count() {
        let keys = live_keys(&parse(TABLE).unwrap());
        let ports: Vec<u16> = keys.iter().map(|k| k.cport).collect();
        // Neither the closing TCP connection (port 0xA000) nor the UDP one is waited for.
        assert_eq!(keys.len(), 2);
        assert!(!ports.contains(&0xA000) && !ports.contains(&0xD431));
    }

    #[test]
    fn a_damaged_line_is_an_error_naming_it() {
        let e = parse("Pro FromIP\nTCP C6127465 9C41 nothex 1B58 C6127483 1B58 ESTABLISHED 1\n").unwrap_err();
        assert!(e.contains("line 2") && e.contains("nothex"), "{e}");
        let e = parse("TCP C6127465\n").unwrap_err();
        assert!(e.contains("line 1"), "{e}");
    }
}

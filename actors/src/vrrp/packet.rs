//! VRRP advertisements on the wire: version 2 (RFC 3768, IPv4, optional simple-password
//! authentication) and version 3 (RFC 5798, IPv4 and IPv6, checksum over a pseudo-header).
//!
//! Pure bytes in, bytes out: [`Advert::emit`] and [`Advert::parse`]. Checks that depend on
//! the instance (VRID, interval, password, address list) live in [`super::check`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// IP protocol number of VRRP.
pub const IPPROTO_VRRP: u8 = 112;
/// VRRP's IPv4 multicast group.
pub const MCAST_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
/// VRRP's IPv6 multicast group.
pub const MCAST_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);
/// TTL / hop limit every VRRP sender uses and every (multicast) receiver requires.
pub const TTL: u8 = 255;
const TYPE_ADVERT: u8 = 1;
const HEADER_LEN: usize = 8;
/// v2 authentication data length.
pub const AUTH_LEN: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Version {
    V2,
    V3,
}

impl Version {
    pub fn number(self) -> u8 {
        match self {
            Version::V2 => 2,
            Version::V3 => 3,
        }
    }
}

/// v2 authentication (RFC 3768 5.3.6; "PASS" is keepalived's name for type 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Auth {
    None,
    /// Up to 8 bytes, zero-padded.
    Pass([u8; AUTH_LEN]),
    /// IPsec AH (type 2): recognised, not supported (keepalived deprecates it).
    Ah,
    /// Any other type number (refused by the receive check).
    Unknown(u8),
}

impl Auth {
    pub fn type_number(&self) -> u8 {
        match self {
            Auth::None => 0,
            Auth::Pass(_) => 1,
            Auth::Ah => 2,
            Auth::Unknown(n) => *n,
        }
    }

    /// A PASS authentication from keepalived's `auth_pass` (truncated to 8 bytes, as keepalived does).
    pub fn pass(password: &str) -> Auth {
        let mut b = [0u8; AUTH_LEN];
        for (d, s) in b.iter_mut().zip(password.bytes()) {
            *d = s;
        }
        Auth::Pass(b)
    }
}

/// One VRRP advertisement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Advert {
    pub version: Version,
    pub vrid: u8,
    pub priority: u8,
    /// Advertisement interval in centiseconds (v2 carries whole seconds: a multiple of 100).
    pub interval_cs: u16,
    /// v2 only; `Auth::None` for v3.
    pub auth: Auth,
    /// The virtual addresses, all of one family (IPv6 only with v3).
    pub addrs: Vec<IpAddr>,
    /// The checksum found in a parsed packet (emit computes its own).
    pub checksum: u16,
}

/// Why bytes are not a VRRP advertisement (each is counted by the receiver).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum ParseError {
    #[error("packet shorter than a VRRP header")]
    TooShort,
    #[error("unknown VRRP version {0}")]
    BadVersion(u8),
    #[error("packet type {0} is not an advertisement")]
    BadType(u8),
    #[error("address count does not fit the packet length")]
    BadLength,
    #[error("checksum mismatch")]
    BadChecksum,
    #[error("IPv6 advertisement with VRRP version 2")]
    V2OverIpv6,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EmitError {
    #[error("more than 255 addresses")]
    TooManyAddrs,
    #[error("addresses of mixed families, or of another family than the packet's source")]
    MixedFamilies,
    #[error("VRRP version 2 carries IPv4 only")]
    V2Ipv6,
    #[error("v2 interval must be whole seconds between 1 and 255, got {0} cs")]
    BadV2Interval(u16),
    #[error("v3 interval must be 1..4095 centiseconds, got {0}")]
    BadV3Interval(u16),
}

/// The Internet checksum (RFC 1071) of `parts`, concatenated.
pub fn internet_checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    let mut odd: Option<u8> = None;
    for part in parts {
        for &b in *part {
            match odd.take() {
                Some(hi) => sum += u32::from(u16::from_be_bytes([hi, b])),
                None => odd = Some(b),
            }
        }
    }
    if let Some(hi) = odd {
        sum += u32::from(u16::from_be_bytes([hi, 0]));
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The v3 pseudo-header (RFC 5798 5.2.8: the IPv4 or IPv6 upper-layer pseudo-header).
fn pseudo_header(src: IpAddr, dst: IpAddr, len: usize) -> Vec<u8> {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let mut h = Vec::with_capacity(12);
            h.extend_from_slice(&s.octets());
            h.extend_from_slice(&d.octets());
            h.push(0);
            h.push(IPPROTO_VRRP);
            h.extend_from_slice(&(len as u16).to_be_bytes());
            h
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let mut h = Vec::with_capacity(40);
            h.extend_from_slice(&s.octets());
            h.extend_from_slice(&d.octets());
            h.extend_from_slice(&(len as u32).to_be_bytes());
            h.extend_from_slice(&[0, 0, 0, IPPROTO_VRRP]);
            h
        }
        // Mixed families cannot happen on one socket; checksum over nothing fails safely.
        _ => Vec::new(),
    }
}

impl Advert {
    /// The VRRP message (what follows the IP header). `src`/`dst` are the IP addresses it
    /// will be sent with (v3 checksums cover them).
    pub fn emit(&self, src: IpAddr, dst: IpAddr) -> Result<Vec<u8>, EmitError> {
        let count = u8::try_from(self.addrs.len()).map_err(|_| EmitError::TooManyAddrs)?;
        let v6 = src.is_ipv6();
        if self.addrs.iter().any(|a| a.is_ipv6() != v6) || dst.is_ipv6() != v6 {
            return Err(EmitError::MixedFamilies);
        }
        let mut out = Vec::with_capacity(HEADER_LEN + self.addrs.len() * 16 + AUTH_LEN);
        out.push(self.version.number() << 4 | TYPE_ADVERT);
        out.push(self.vrid);
        out.push(self.priority);
        out.push(count);
        match self.version {
            Version::V2 => {
                if v6 {
                    return Err(EmitError::V2Ipv6);
                }
                if self.interval_cs == 0
                    || !self.interval_cs.is_multiple_of(100)
                    || self.interval_cs / 100 > 255
                {
                    return Err(EmitError::BadV2Interval(self.interval_cs));
                }
                out.push(self.auth.type_number());
                out.push((self.interval_cs / 100) as u8);
            }
            Version::V3 => {
                if self.interval_cs == 0 || self.interval_cs > 0x0fff {
                    return Err(EmitError::BadV3Interval(self.interval_cs));
                }
                out.extend_from_slice(&self.interval_cs.to_be_bytes());
            }
        }
        out.extend_from_slice(&[0, 0]);
        for a in &self.addrs {
            match a {
                IpAddr::V4(a) => out.extend_from_slice(&a.octets()),
                IpAddr::V6(a) => out.extend_from_slice(&a.octets()),
            }
        }
        let sum = match self.version {
            Version::V2 => {
                match self.auth {
                    Auth::Pass(p) => out.extend_from_slice(&p),
                    Auth::None | Auth::Ah | Auth::Unknown(_) => out.extend_from_slice(&[0; AUTH_LEN]),
                }
                internet_checksum(&[&out])
            }
            Version::V3 => internet_checksum(&[&pseudo_header(src, dst, out.len()), &out]),
        };
        out[6..8].copy_from_slice(&sum.to_be_bytes());
        Ok(out)
    }

    /// Parses the VRRP message of a packet received from `src` to `dst` (IPv6 iff they are).
    /// Verifies version, type, length and checksum; nothing instance-specific.
    pub fn parse(bytes: &[u8], src: IpAddr, dst: IpAddr) -> Result<Advert, ParseError> {
        if bytes.len() < HEADER_LEN {
            return Err(ParseError::TooShort);
        }
        let version = match bytes[0] >> 4 {
            2 => Version::V2,
            3 => Version::V3,
            v => return Err(ParseError::BadVersion(v)),
        };
        if bytes[0] & 0x0f != TYPE_ADVERT {
            return Err(ParseError::BadType(bytes[0] & 0x0f));
        }
        let v6 = src.is_ipv6();
        if v6 && version == Version::V2 {
            return Err(ParseError::V2OverIpv6);
        }
        let count = usize::from(bytes[3]);
        let alen = if v6 { 16 } else { 4 };
        let auth_len = if version == Version::V2 { AUTH_LEN } else { 0 };
        let need = HEADER_LEN + count * alen + auth_len;
        // Trailing bytes beyond the message would change the checksum; refuse them too.
        if bytes.len() != need {
            return Err(ParseError::BadLength);
        }
        let ok = match version {
            Version::V2 => internet_checksum(&[bytes]) == 0,
            Version::V3 => internet_checksum(&[&pseudo_header(src, dst, bytes.len()), bytes]) == 0,
        };
        if !ok {
            return Err(ParseError::BadChecksum);
        }
        let mut addrs = Vec::with_capacity(count);
        for i in 0..count {
            let at = HEADER_LEN + i * alen;
            let a = &bytes[at..at + alen];
            addrs.push(if v6 {
                let mut o = [0u8; 16];
                o.copy_from_slice(a);
                IpAddr::V6(Ipv6Addr::from(o))
            } else {
                IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3]))
            });
        }
        let (interval_cs, auth) = match version {
            Version::V2 => {
                let mut data = [0u8; AUTH_LEN];
                data.copy_from_slice(&bytes[need - AUTH_LEN..]);
                let auth = match bytes[4] {
                    0 => Auth::None,
                    1 => Auth::Pass(data),
                    2 => Auth::Ah,
                    // Refused by the instance check (`Reject::AuthType`), not here.
                    other => Auth::Unknown(other),
                };
                (u16::from(bytes[5]) * 100, auth)
            }
            Version::V3 => (u16::from_be_bytes([bytes[4], bytes[5]]) & 0x0fff, Auth::None),
        };
        Ok(Advert {
            version,
            vrid: bytes[1],
            priority: bytes[2],
            interval_cs,
            auth,
            addrs,
            checksum: u16::from_be_bytes([bytes[6], bytes[7]]),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(a: &str) -> IpAddr {
        a.parse().unwrap()
    }

    /// VRRPv2 advert from keepalived 2.2.7 (VRID 51, priority 100, 1 s, PASS 1111, VIP
    /// 198.18.116.134), bytes after the IP header; captured by
    /// `tests/fixtures/capture-keepalived.sh 2` (the whole datagram is in that directory).
    const KA_V2: [u8; 20] = [
        0x21, 0x33, 0x64, 0x01, 0x01, 0x01, 0xdc, 0xce, 0xc6, 0x12, 0x74, 0x86, b'1', b'1', b'1', b'1', 0, 0,
        0, 0,
    ];
    /// The same instance with `vrrp_version 3` (no authentication).
    const KA_V3: [u8; 12] = [
        0x31, 0x33, 0x64, 0x01, 0x00, 0x64, 0x14, 0xaa, 0xc6, 0x12, 0x74, 0x86,
    ];

    #[test]
    fn keepalived_v2_advert_parses_and_re_emits_identically() {
        let a = Advert::parse(&KA_V2, v4("198.18.116.130"), v4("224.0.0.18")).unwrap();
        assert_eq!(a.version, Version::V2);
        assert_eq!((a.vrid, a.priority, a.interval_cs), (51, 100, 100));
        assert_eq!(a.auth, Auth::pass("1111"));
        assert_eq!(a.addrs, vec![v4("198.18.116.134")]);
        assert_eq!(a.emit(v4("198.18.116.130"), v4("224.0.0.18")).unwrap(), KA_V2);
    }

    #[test]
    fn keepalived_v3_advert_parses_and_re_emits_identically() {
        let src = v4("198.18.116.130");
        let dst = v4("224.0.0.18");
        let a = Advert::parse(&KA_V3, src, dst).unwrap();
        assert_eq!(a.version, Version::V3);
        assert_eq!(
            (a.vrid, a.priority, a.interval_cs, a.auth),
            (51, 100, 100, Auth::None)
        );
        assert_eq!(a.addrs, vec![v4("198.18.116.134")]);
        assert_eq!(a.emit(src, dst).unwrap(), KA_V3);
    }

    #[test]
    fn v3_checksum_covers_the_pseudo_header() {
        let a = Advert {
            version: Version::V3,
            vrid: 51,
            priority: 100,
            interval_cs: 100,
            auth: Auth::None,
            addrs: vec![v4("198.18.116.134")],
            checksum: 0,
        };
        let src = v4("198.18.116.130");
        let dst = v4("224.0.0.18");
        let bytes = a.emit(src, dst).unwrap();
        assert_eq!(bytes.len(), 12);
        assert!(Advert::parse(&bytes, src, dst).is_ok());
        assert_eq!(
            Advert::parse(&bytes, v4("198.18.116.131"), dst),
            Err(ParseError::BadChecksum),
            "another source address must fail the v3 checksum"
        );
        let src6: IpAddr = "fe80::1".parse().unwrap();
        let dst6 = IpAddr::V6(MCAST_V6);
        let a6 = Advert {
            addrs: vec!["2001:db8::134".parse().unwrap()],
            ..a
        };
        let b6 = a6.emit(src6, dst6).unwrap();
        assert_eq!(b6.len(), 8 + 16);
        let back = Advert::parse(&b6, src6, dst6).unwrap();
        assert_eq!(back.addrs, a6.addrs);
    }

    #[test]
    fn malformed_packets_are_errors() {
        let src = v4("198.18.116.130");
        let dst = v4("224.0.0.18");
        assert_eq!(Advert::parse(&KA_V2[..5], src, dst), Err(ParseError::TooShort));
        let mut b = KA_V2;
        b[0] = 0x41;
        assert_eq!(Advert::parse(&b, src, dst), Err(ParseError::BadVersion(4)));
        let mut b = KA_V2;
        b[0] = 0x22;
        assert_eq!(Advert::parse(&b, src, dst), Err(ParseError::BadType(2)));
        let mut b = KA_V2;
        b[3] = 2;
        assert_eq!(Advert::parse(&b, src, dst), Err(ParseError::BadLength));
        let mut b = KA_V2;
        b[2] = 101;
        assert_eq!(Advert::parse(&b, src, dst), Err(ParseError::BadChecksum));
    }
}

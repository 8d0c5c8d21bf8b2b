//! The IPv4 header of packets read from a raw `IPPROTO_VRRP` socket (the kernel hands
//! IPv4 raw sockets the whole datagram; for IPv6 it strips the header and reports the hop
//! limit in a control message instead).

use std::net::Ipv4Addr;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Header {
    pub ttl: u8,
    pub protocol: u8,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    /// Header length in bytes.
    pub header_len: usize,
    /// Total length from the header.
    pub total_len: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Ipv4Error {
    #[error("shorter than an IPv4 header")]
    TooShort,
    #[error("not IPv4")]
    NotV4,
    #[error("IPv4 total length {total} does not match the {got} bytes received")]
    LengthMismatch { total: usize, got: usize },
}

/// Splits a received datagram into its IPv4 header and payload.
pub fn split(datagram: &[u8]) -> Result<(Ipv4Header, &[u8]), Ipv4Error> {
    if datagram.len() < 20 {
        return Err(Ipv4Error::TooShort);
    }
    if datagram[0] >> 4 != 4 {
        return Err(Ipv4Error::NotV4);
    }
    let header_len = usize::from(datagram[0] & 0x0f) * 4;
    if header_len < 20 || datagram.len() < header_len {
        return Err(Ipv4Error::TooShort);
    }
    let total_len = usize::from(u16::from_be_bytes([datagram[2], datagram[3]]));
    if total_len != datagram.len() {
        return Err(Ipv4Error::LengthMismatch {
            total: total_len,
            got: datagram.len(),
        });
    }
    let h = Ipv4Header {
        ttl: datagram[8],
        protocol: datagram[9],
        src: Ipv4Addr::new(datagram[12], datagram[13], datagram[14], datagram[15]),
        dst: Ipv4Addr::new(datagram[16], datagram[17], datagram[18], datagram[19]),
        header_len,
        total_len,
    };
    Ok((h, &datagram[header_len..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_fields_and_payload() {
        let mut d = vec![
            0x45, 0xc0, 0x00, 0x28, 0x00, 0x00, 0x40, 0x00, 0xff, 0x70, 0x00, 0x00, 198, 18, 116, 130, 224,
            0, 0, 18,
        ];
        d.extend_from_slice(&[0u8; 20]);
        let (h, p) = split(&d).unwrap();
        assert_eq!((h.ttl, h.protocol, h.header_len, h.total_len), (255, 112, 20, 40));
        assert_eq!(h.src, Ipv4Addr::new(198, 18, 116, 130));
        assert_eq!(h.dst, Ipv4Addr::new(224, 0, 0, 18));
        assert_eq!(p.len(), 20);
        assert_eq!(
            split(&d[..30]),
            Err(Ipv4Error::LengthMismatch { total: 40, got: 30 })
        );
        assert_eq!(split(&d[..10]), Err(Ipv4Error::TooShort));
        let mut six = d.clone();
        six[0] = 0x60;
        assert_eq!(split(&six), Err(Ipv4Error::NotV4));
    }
}

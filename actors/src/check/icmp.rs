//! ICMP and ICMPv6 echo messages for PING_CHECK, without I/O: what is sent (as keepalived
//! sends it: an echo request carrying 128 bytes of `keepalived check - ` repeated) and
//! how an answer is read. A ping socket (`SOCK_DGRAM`) gives and takes the ICMP message
//! alone and sets the identifier itself; a raw IPv4 socket reads the IP header in front.

/// keepalived's ICMP payload length.
pub const PAYLOAD_LEN: usize = 128;

/// ICMP echo request / reply types (IPv4, IPv6).
const ECHO_REQUEST_V4: u8 = 8;
const ECHO_REPLY_V4: u8 = 0;
const ECHO_REQUEST_V6: u8 = 128;
const ECHO_REPLY_V6: u8 = 129;

/// `len` bytes of `keepalived check - ` repeated: what keepalived puts in probes that
/// carry no payload of the operator's (UDP_CHECK: 32 bytes, PING_CHECK: 128).
pub fn keepalived_fill(len: usize) -> Vec<u8> {
    b"keepalived check - ".iter().copied().cycle().take(len).collect()
}

/// The Internet checksum (RFC 1071) of `data`.
pub fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for pair in data.chunks(2) {
        let word = match pair {
            [a, b] => u16::from_be_bytes([*a, *b]),
            [a] => u16::from_be_bytes([*a, 0]),
            _ => 0,
        };
        sum += u32::from(word);
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An echo request: type, code 0, checksum, identifier, sequence, payload. The IPv4
/// checksum is filled in (a raw socket sends it as it is; a ping socket recomputes it);
/// for IPv6 the kernel computes it (it covers a pseudo-header we do not know).
pub fn echo_request(v6: bool, id: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(8 + payload.len());
    m.push(if v6 { ECHO_REQUEST_V6 } else { ECHO_REQUEST_V4 });
    m.push(0);
    m.extend_from_slice(&[0, 0]);
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(payload);
    if !v6 {
        let c = checksum(&m);
        m[2..4].copy_from_slice(&c.to_be_bytes());
    }
    m
}

/// What came back: an echo reply (identifier, sequence), or another ICMP message (its
/// type and code).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    Reply { id: u16, seq: u16 },
    Other { kind: u8, code: u8 },
}

/// Reads a received message; `ip_header`: it starts with an IPv4 header (a raw IPv4
/// socket). None when too short to be one.
pub fn answer(v6: bool, ip_header: bool, pkt: &[u8]) -> Option<Answer> {
    let icmp = if ip_header {
        let ihl = usize::from(pkt.first()? & 0x0f) * 4;
        if ihl < 20 {
            return None;
        }
        pkt.get(ihl..)?
    } else {
        pkt
    };
    if icmp.len() < 8 {
        return None;
    }
    let reply = if v6 { ECHO_REPLY_V6 } else { ECHO_REPLY_V4 };
    Some(if icmp[0] == reply {
        Answer::Reply {
            id: u16::from_be_bytes([icmp[4], icmp[5]]),
            seq: u16::from_be_bytes([icmp[6], icmp[7]]),
        }
    } else {
        Answer::Other {
            kind: icmp[0],
            code: icmp[1],
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_echo_request_is_what_ping_sends() {
        // id 0x1234, seq 1, payload "abcd"; checksum worked by hand: 0x0800 + 0x1234 +
        // 0x0001 + 0x6162 + 0x6364 = 0xdefb, complemented 0x2104.
        let m = echo_request(false, 0x1234, 1, b"abcd");
        assert_eq!(
            m,
            [0x08, 0x00, 0x21, 0x04, 0x12, 0x34, 0x00, 0x01, b'a', b'b', b'c', b'd']
        );
        assert_eq!(checksum(&m), 0, "a message with its checksum sums to zero");
        let v6 = echo_request(true, 7, 9, b"");
        assert_eq!(v6, [128, 0, 0, 0, 0, 7, 0, 9]);
    }

    #[test]
    fn answers_are_read_with_or_without_the_ip_header() {
        let reply = [0x00, 0x00, 0xff, 0xff, 0x12, 0x34, 0x00, 0x05, 1, 2];
        assert_eq!(
            answer(false, false, &reply),
            Some(Answer::Reply { id: 0x1234, seq: 5 })
        );
        let mut ip = vec![
            0x45, 0, 0, 30, 0, 0, 0, 0, 64, 1, 0, 0, 198, 18, 0, 1, 198, 18, 0, 2,
        ];
        ip.extend_from_slice(&reply);
        assert_eq!(
            answer(false, true, &ip),
            Some(Answer::Reply { id: 0x1234, seq: 5 })
        );
        // Destination unreachable, port unreachable.
        assert_eq!(
            answer(false, false, &[3, 3, 0, 0, 0, 0, 0, 0]),
            Some(Answer::Other { kind: 3, code: 3 })
        );
        assert_eq!(
            answer(true, false, &[129, 0, 0, 0, 0, 1, 0, 2]),
            Some(Answer::Reply { id: 1, seq: 2 })
        );
        assert_eq!(answer(false, false, &[0, 0, 0]), None);
        assert_eq!(answer(false, true, &[0x41, 0]), None, "IHL below 5");
    }

    #[test]
    fn keepalived_fills_probes_with_its_name() {
        assert_eq!(keepalived_fill(32), b"keepalived check - keepalived ch");
        assert_eq!(keepalived_fill(PAYLOAD_LEN).len(), 128);
    }
}

//! DNS_CHECK's messages, without I/O: the query keepalived sends (recursion desired, one
//! question of class IN) and how an answer is judged (keepalived 2.2.7: a message with
//! our id and the response bit, up when its rcode is 0; other messages are skipped).

/// A query for `name` (`""` or `"."`: the root) of type `qtype`, with `id`. None when a
/// label is longer than 63 bytes (the wire format cannot carry it).
pub fn query(id: u16, name: &str, qtype: u16) -> Option<Vec<u8>> {
    let mut m = Vec::with_capacity(17 + name.len());
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&0x0100u16.to_be_bytes()); // RD
    m.extend_from_slice(&1u16.to_be_bytes()); // QDCOUNT
    m.extend_from_slice(&[0; 6]); // AN, NS, AR
    for label in name.split('.').filter(|l| !l.is_empty()) {
        if label.len() > 63 {
            return None;
        }
        m.push(label.len() as u8);
        m.extend_from_slice(label.as_bytes());
    }
    m.push(0);
    m.extend_from_slice(&qtype.to_be_bytes());
    m.extend_from_slice(&1u16.to_be_bytes()); // IN
    Some(m)
}

/// What a received message says about our query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Not the answer to it (too short, another id, not a response): keep waiting.
    Skip,
    /// Answered with this rcode (0: no error).
    Rcode(u8),
}

/// Judges `msg` against the query with `id`.
pub fn judge(id: u16, msg: &[u8]) -> Verdict {
    if msg.len() < 12 || u16::from_be_bytes([msg[0], msg[1]]) != id {
        return Verdict::Skip;
    }
    let flags = u16::from_be_bytes([msg[2], msg[3]]);
    if flags & 0x8000 == 0 {
        return Verdict::Skip;
    }
    Verdict::Rcode((flags & 0x000f) as u8)
}

/// The rcode's name, for reasons.
pub fn rcode_name(rcode: u8) -> &'static str {
    match rcode {
        0 => "NOERROR",
        1 => "FORMERR",
        2 => "SERVFAIL",
        3 => "NXDOMAIN",
        4 => "NOTIMP",
        5 => "REFUSED",
        _ => "error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_keepalived_s() {
        // `dig +norecurse`-like bytes, with RD set: id 0xbeef, www.example.test A IN.
        let q = query(0xbeef, "www.example.test", 1).unwrap();
        let mut want = vec![0xbe, 0xef, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        want.extend_from_slice(b"\x03www\x07example\x04test\x00");
        want.extend_from_slice(&[0, 1, 0, 1]);
        assert_eq!(q, want);
        // keepalived's default: SOA of the root.
        assert_eq!(
            query(1, "", 6).unwrap(),
            [0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 6, 0, 1]
        );
        assert_eq!(query(1, ".", 6), query(1, "", 6));
        assert_eq!(query(1, "example.test.", 1), query(1, "example.test", 1));
        assert_eq!(query(1, &"a".repeat(64), 1), None);
    }

    #[test]
    fn answers_are_judged_by_id_response_bit_and_rcode() {
        let mut a = query(7, "example.test", 1).unwrap();
        assert_eq!(judge(7, &a), Verdict::Skip, "a query is not an answer");
        a[2] |= 0x80; // QR
        assert_eq!(judge(7, &a), Verdict::Rcode(0));
        assert_eq!(judge(8, &a), Verdict::Skip, "another id");
        a[3] |= 5; // REFUSED
        assert_eq!(judge(7, &a), Verdict::Rcode(5));
        assert_eq!(rcode_name(5), "REFUSED");
        assert_eq!(judge(7, &a[..11]), Verdict::Skip);
    }
}

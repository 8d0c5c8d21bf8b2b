//! Generic-netlink framing, pure: a payload -> one request (nlmsghdr + genlmsghdr +
//! attributes) with its sequence number; a received datagram -> its messages, each
//! classified as data, ack, error or end of dump; the bookkeeping that matches the acks
//! of a pipelined batch to its requests; and the controller messages that turn a family
//! name into its id.

use netlink_packet_core::{
    parse_u16, DecodeError, Emitable, NetlinkBuffer, NetlinkHeader, NetlinkMessage, NetlinkPayload,
    NlasIterator, ParseableParametrized,
};
use netlink_packet_generic::constants::CTRL_ATTR_FAMILY_ID;
use netlink_packet_generic::ctrl::nlas::GenlCtrlAttrs;
use netlink_packet_generic::ctrl::{GenlCtrl, GenlCtrlCmd};
use netlink_packet_generic::{GenlFamily, GenlHeader, GenlMessage};
use std::fmt::Debug;

const NLMSG_ALIGN: usize = 4;

/// One request message, ready to be sent (alone or concatenated with others).
pub fn request<F>(payload: F, family: u16, flags: u16, seq: u32) -> Vec<u8>
where
    F: GenlFamily + Emitable + Debug,
{
    let mut genl = GenlMessage::from_payload(payload);
    genl.set_resolved_family_id(family);
    let mut header = NetlinkHeader::default();
    header.flags = flags;
    header.sequence_number = seq;
    let mut msg = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(genl));
    msg.finalize();
    let len = msg.buffer_len();
    // Padded so that the next request of a batch starts aligned.
    let mut buf = vec![0; len.next_multiple_of(NLMSG_ALIGN)];
    msg.serialize(&mut buf[..len]);
    buf
}

/// What one received message says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply<F> {
    /// A message of the family (a dump entry, an answer to GETFAMILY).
    Data(F),
    /// `NLMSG_ERROR` with code 0.
    Ack,
    /// `NLMSG_ERROR`: the errno (positive).
    Error(i32),
    /// `NLMSG_DONE`: the end of a dump; 0, or the errno that cut it short.
    Done(i32),
    /// A message whose payload does not parse (its header did, so the rest of the
    /// datagram is still read).
    Bad(String),
    /// `NLMSG_NOOP`, `NLMSG_OVERRUN`.
    Other,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received<F> {
    pub seq: u32,
    pub flags: u16,
    pub reply: Reply<F>,
}

/// Splits a datagram into its messages. Fails only when a netlink header itself is
/// broken (a length that does not fit the datagram), since nothing after it can be found.
pub fn split<F>(datagram: &[u8]) -> Result<Vec<Received<F>>, DecodeError>
where
    F: ParseableParametrized<[u8], GenlHeader> + Debug,
{
    let mut out = Vec::new();
    let mut rest = datagram;
    while !rest.is_empty() {
        let buf = NetlinkBuffer::new_checked(rest)?;
        let len = buf.length() as usize;
        let (seq, flags) = (buf.sequence_number(), buf.flags());
        let reply = match NetlinkMessage::<GenlMessage<F>>::deserialize(&rest[..len]) {
            Ok(m) => match m.payload {
                NetlinkPayload::InnerMessage(g) => Reply::Data(g.payload),
                NetlinkPayload::Error(e) => match e.code {
                    None => Reply::Ack,
                    Some(code) => Reply::Error(code.get().saturating_abs()),
                },
                NetlinkPayload::Done(d) => Reply::Done(d.code.saturating_abs()),
                _ => Reply::Other,
            },
            Err(e) => Reply::Bad(e.to_string()),
        };
        out.push(Received { seq, flags, reply });
        rest = rest.get(len.next_multiple_of(NLMSG_ALIGN)..).unwrap_or(&[]);
    }
    Ok(out)
}

/// The answers awaited for a batch of requests with consecutive sequence numbers.
#[derive(Clone, Debug)]
pub struct Acks {
    first: u32,
    /// Per request: `None` until answered, then 0 or an errno.
    answers: Vec<Option<i32>>,
}

impl Acks {
    pub fn new(first: u32, count: usize) -> Acks {
        Acks {
            first,
            answers: vec![None; count],
        }
    }

    /// Records the kernel's answer (0 or an errno) to request `seq`. The kernel answers a
    /// batch in order, so requests before `seq` still unanswered never will be (it skips
    /// the ack of a request interrupted with EINTR): they count as EINTR. Sequence numbers
    /// outside the batch (late answers to an abandoned one) are ignored.
    pub fn answer(&mut self, seq: u32, errno: i32) {
        let i = seq.wrapping_sub(self.first) as usize;
        if i >= self.answers.len() {
            return;
        }
        for a in &mut self.answers[..i] {
            a.get_or_insert(libc::EINTR);
        }
        self.answers[i] = Some(errno);
    }

    /// Every request answered.
    pub fn complete(&self) -> bool {
        self.answers.iter().all(Option::is_some)
    }

    /// Per request, in order: `Some(0)` done, `Some(errno)` refused, `None` no answer.
    pub fn into_answers(self) -> Vec<Option<i32>> {
        self.answers
    }
}

/// CTRL_CMD_GETFAMILY for `name`.
pub fn get_family(name: &str) -> GenlCtrl {
    GenlCtrl {
        cmd: GenlCtrlCmd::GetFamily,
        nlas: vec![GenlCtrlAttrs::FamilyName(name.to_owned())],
    }
}

/// What we read of the controller's answer: the family id. Every other attribute is
/// skipped, so that attributes newer than our netlink crate cannot break the lookup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FamilyId(pub Option<u16>);

impl ParseableParametrized<[u8], GenlHeader> for FamilyId {
    fn parse_with_param(buf: &[u8], _header: GenlHeader) -> Result<Self, DecodeError> {
        for nla in NlasIterator::new(buf) {
            let nla = nla?;
            if nla.kind() == CTRL_ATTR_FAMILY_ID {
                return Ok(FamilyId(Some(parse_u16(nla.value())?)));
            }
        }
        Ok(FamilyId(None))
    }
}

#[cfg(all(test, target_endian = "little"))]
mod tests {
    use super::*;
    use crate::lb::diff::Op;
    use crate::lb::ipvs::msg::IpvsMsg;
    use crate::lb::model::SvcKey;
    use ha_config::model::Protocol;
    use netlink_packet_core::{NLM_F_ACK, NLM_F_MULTIPART, NLM_F_REQUEST};

    fn del_service() -> IpvsMsg {
        IpvsMsg::from(&Op::DelService(SvcKey::Inet {
            proto: Protocol::Tcp,
            addr: "198.18.0.1".parse().unwrap(),
            port: 80,
        }))
    }

    #[test]
    fn request_has_the_netlink_and_genl_headers() {
        let bytes = request(del_service(), 0x23, NLM_F_REQUEST | NLM_F_ACK, 7);
        #[rustfmt::skip]
        let head = [
            0x44, 0x00, 0x00, 0x00, // nlmsg_len = 68 (16 + 4 genl + 48 SERVICE nest)
            0x23, 0x00,             // type = the resolved IPVS family id
            0x05, 0x00,             // flags = REQUEST | ACK
            0x07, 0x00, 0x00, 0x00, // seq = 7
            0x00, 0x00, 0x00, 0x00, // pid = 0 (the kernel fills it)
            0x03, 0x01, 0x00, 0x00, // genl: DEL_SERVICE, version 1
            0x30, 0x00, 0x01, 0x00, // SERVICE nest, 48 bytes ...
        ];
        assert_eq!(bytes.len(), 68);
        assert_eq!(bytes[..head.len()], head);
    }

    #[test]
    fn get_family_request() {
        let bytes = request(get_family("IPVS"), 0, NLM_F_REQUEST | NLM_F_ACK, 1);
        #[rustfmt::skip]
        let want = [
            0x20, 0x00, 0x00, 0x00, // nlmsg_len = 32
            0x10, 0x00,             // type = GENL_ID_CTRL (static, not the 0 passed)
            0x05, 0x00,             // flags = REQUEST | ACK
            0x01, 0x00, 0x00, 0x00, // seq = 1
            0x00, 0x00, 0x00, 0x00, // pid
            0x03, 0x02, 0x00, 0x00, // genl: CTRL_CMD_GETFAMILY, version 2
            0x09, 0x00, 0x02, 0x00, // CTRL_ATTR_FAMILY_NAME, 9 bytes:
            b'I', b'P', b'V', b'S', 0x00, 0x00, 0x00, 0x00, // "IPVS\0" + 3 pad
        ];
        assert_eq!(bytes, want);
    }

    /// An ack (seq 5), an EEXIST error (seq 6) and the end of a dump (seq 9), as one
    /// datagram. Acks echo the request's header (NETLINK_CAP_ACK: header only).
    #[rustfmt::skip]
    const ACK_ERROR_DONE: [u8; 92] = [
        0x24, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x01, // len 36, NLMSG_ERROR, flags CAPPED
        0x05, 0x00, 0x00, 0x00, 0x99, 0x00, 0x00, 0x00, // seq 5, pid 0x99
        0x00, 0x00, 0x00, 0x00,                         // error 0: ack
        0x44, 0x00, 0x00, 0x00, 0x23, 0x00, 0x05, 0x00, //   the request's header
        0x05, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x24, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x01, // len 36, NLMSG_ERROR
        0x06, 0x00, 0x00, 0x00, 0x99, 0x00, 0x00, 0x00, // seq 6
        0xef, 0xff, 0xff, 0xff,                         // error -17 (EEXIST)
        0x44, 0x00, 0x00, 0x00, 0x23, 0x00, 0x05, 0x00,
        0x06, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x14, 0x00, 0x00, 0x00, 0x03, 0x00, 0x02, 0x00, // len 20, NLMSG_DONE, MULTI
        0x09, 0x00, 0x00, 0x00, 0x99, 0x00, 0x00, 0x00, // seq 9
        0x00, 0x00, 0x00, 0x00,                         // status 0
    ];

    #[test]
    fn split_classifies_ack_error_and_done() {
        let got = split::<IpvsMsg>(&ACK_ERROR_DONE).unwrap();
        let summary: Vec<_> = got.iter().map(|r| (r.seq, r.reply.clone())).collect();
        assert_eq!(
            summary,
            vec![(5, Reply::Ack), (6, Reply::Error(17)), (9, Reply::Done(0))]
        );
        assert_eq!(got[2].flags, NLM_F_MULTIPART);
    }

    #[test]
    fn split_reads_dump_entries_and_survives_a_bad_one() {
        let good = request(del_service(), 0x23, NLM_F_MULTIPART, 3);
        // Same header, but the SERVICE nest claims more bytes than the message has.
        let mut bad = good.clone();
        bad[20] = 0x40;
        let datagram = [bad, good].concat();
        let got = split::<IpvsMsg>(&datagram).unwrap();
        assert_eq!(got.len(), 2);
        assert!(matches!(got[0].reply, Reply::Bad(_)));
        assert_eq!(got[1].reply, Reply::Data(del_service()));
        assert_eq!(got[1].flags, NLM_F_MULTIPART);
    }

    #[test]
    fn split_rejects_broken_headers_without_panicking() {
        for n in 0..ACK_ERROR_DONE.len() {
            let _ = split::<IpvsMsg>(&ACK_ERROR_DONE[..n]);
        }
        let mut long = ACK_ERROR_DONE;
        long[0] = 0xff; // a length beyond the datagram
        assert!(split::<IpvsMsg>(&long).is_err());
        let mut short = ACK_ERROR_DONE;
        short[0] = 0x04; // shorter than a header
        assert!(split::<IpvsMsg>(&short).is_err());
    }

    #[test]
    fn acks_match_by_sequence_number() {
        let mut acks = Acks::new(100, 3);
        acks.answer(99, 0); // an older batch's late answer
        acks.answer(101, 0);
        assert!(!acks.complete());
        acks.answer(102, libc::ENOENT);
        assert!(acks.complete());
        // 100 was skipped by the kernel: it will never be answered.
        assert_eq!(
            acks.into_answers(),
            vec![Some(libc::EINTR), Some(0), Some(libc::ENOENT)]
        );
    }

    #[test]
    fn acks_wrap_around_sequence_numbers() {
        let mut acks = Acks::new(u32::MAX, 2);
        acks.answer(u32::MAX, 0);
        acks.answer(0, libc::EEXIST);
        acks.answer(1, 0); // outside the batch
        assert_eq!(acks.into_answers(), vec![Some(0), Some(libc::EEXIST)]);
        assert!(Acks::new(5, 0).complete());
    }

    #[test]
    fn family_id_is_read_among_unknown_attributes() {
        #[rustfmt::skip]
        let reply = [
            0x01, 0x02, 0x00, 0x00,                         // genl: CTRL_CMD_NEWFAMILY, version 2
            0x09, 0x00, 0x02, 0x00, b'I', b'P', b'V', b'S', // FAMILY_NAME "IPVS\0"
            0x00, 0x00, 0x00, 0x00,
            0x08, 0x00, 0x63, 0x00, 0x01, 0x00, 0x00, 0x00, // attribute 99, unknown to us
            0x06, 0x00, 0x01, 0x00, 0x23, 0x00, 0x00, 0x00, // FAMILY_ID = 0x23
        ];
        let g = GenlMessage::<FamilyId>::parse_with_param(&reply[..], 0x10).unwrap();
        assert_eq!(g.payload, FamilyId(Some(0x23)));
        let none = GenlMessage::<FamilyId>::parse_with_param(&reply[..16], 0x10).unwrap();
        assert_eq!(none.payload, FamilyId(None));
    }
}

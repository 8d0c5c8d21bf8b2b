//! Element changes sent to nf_tables as netlink batches, without libnftables: the
//! frequent changes (a weight, a destination going down or up, a draining destination
//! leaving) only add and delete elements of our data maps and sets, and the kernel does
//! those in O(1) (about 0.13 ms at 10,000 services) when no client reads the whole
//! ruleset first, as nft does before every command once the ruleset moved.
//!
//! Our tables are read back the same way ([`NfNetlink::list`]): the sets and maps, the
//! elements of those the dump needs (never the flow maps, which can hold millions), the
//! chains and their rules, as netlink dumps checked against the ruleset generation: no
//! JSON of the whole table is built (at 10,000 services it was most of the daemon's
//! peak memory).
//!
//! The messages are built and parsed with the rust-netlink `netlink-packet-netfilter`
//! crate (MIT); this file encodes our elements ([`super::render::Elem`]), reads the
//! listing ([`super::dump::Listing`]) and moves the bytes. One batch is one kernel
//! transaction: all of it applies or none does.

use super::dump::{Listing, RuleFacts};
use super::expr::{self, Data};
use super::render::{self, ChainOp, Cmd, Elem, ElemValue, TableId};
use crate::lb::kernel::KernelError;
use crate::lb::model::SvcKey;
use crate::lb::nl_io::{force_buffer, io_error, send_all};
use ha_config::model::Protocol;
use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_REQUEST,
};
use netlink_packet_core::{NLM_F_DUMP, NLM_F_DUMP_INTR};
use netlink_packet_netfilter::nftables::{
    ChainAttribute, ChainMessage, GenMessage, RuleAttribute, RuleMessage, SetAttribute, SetMessage,
};
use netlink_packet_netfilter::nftables::{
    DataAttribute, ListAttribute, NfTablesMessage, SetElementAttribute, SetElementList, SetElementMessage,
};
use netlink_packet_netfilter::none::ControlMessage;
use netlink_packet_netfilter::{NetfilterHeader, NetfilterMessage, NetfilterProtoFamily};
use netlink_sys::{protocols::NETLINK_NETFILTER, Socket, SocketAddr};
use std::io;
use std::net::IpAddr;
use std::time::Duration;

const NFNL_SUBSYS_NFTABLES: u16 = 10;
/// `NFTNL_UDATA_SET_ELEM_COMMENT`: how nft stores an element's comment in its user data.
const UDATA_COMMENT: u8 = 0;
/// Elements per message (a message stays well under the kernel's 64 KiB attribute limit).
const ELEMS_PER_MESSAGE: usize = 500;
const SO_RCVBUF_BYTES: libc::c_int = 4 << 20;
const RECV_TIMEOUT: Duration = Duration::from_secs(10);

/// The family and name of a table given as `netdev hanode`.
fn family_and_name(table: &str) -> Result<(NetfilterProtoFamily, &str), KernelError> {
    let (family, name) = table
        .split_once(' ')
        .ok_or_else(|| KernelError::other(format!("table {table:?} without family")))?;
    let family = match family {
        "netdev" => NetfilterProtoFamily::NetDev,
        "inet" => NetfilterProtoFamily::Inet,
        "ip" => NetfilterProtoFamily::IPv4,
        "ip6" => NetfilterProtoFamily::IPv6,
        other => return Err(KernelError::other(format!("table family {other:?}"))),
    };
    Ok((family, name))
}

/// The bytes of an element's value as the map's data type holds them: marks in host
/// order (as `meta mark` loads them), addresses and ports in network order, each part of
/// a concatenation padded to 4 bytes.
pub fn value_bytes(v: &ElemValue) -> Vec<u8> {
    fn addr(a: &IpAddr) -> Vec<u8> {
        match a {
            IpAddr::V4(a) => a.octets().to_vec(),
            IpAddr::V6(a) => a.octets().to_vec(),
        }
    }
    match v {
        ElemValue::Mark(m) => m.to_ne_bytes().to_vec(),
        ElemValue::Addr(a) => addr(a),
        ElemValue::AddrPort(a, p) => {
            let mut b = addr(a);
            b.extend_from_slice(&p.to_be_bytes());
            b.extend_from_slice(&[0, 0]);
            b
        }
    }
}

/// An element's comment as nft stores it: type, length, the text and its NUL.
pub fn comment_udata(c: &str) -> Result<Vec<u8>, KernelError> {
    let len = u8::try_from(c.len() + 1)
        .map_err(|_| KernelError::other(format!("element comment of {} bytes", c.len())))?;
    let mut b = Vec::with_capacity(c.len() + 3);
    b.push(UDATA_COMMENT);
    b.push(len);
    b.extend_from_slice(c.as_bytes());
    b.push(0);
    Ok(b)
}

fn element(e: &Elem, add: bool) -> Result<ListAttribute<SetElementAttribute>, KernelError> {
    let mut attrs = vec![SetElementAttribute::Key(DataAttribute::Value(
        e.key.to_ne_bytes().to_vec(),
    ))];
    if add {
        if let Some(v) = &e.value {
            attrs.push(SetElementAttribute::Data(DataAttribute::Value(value_bytes(v))));
        }
        if let Some(c) = &e.comment {
            attrs.push(SetElementAttribute::UserData(comment_udata(c)?));
        }
    }
    Ok(ListAttribute::Element(attrs))
}

fn frame(msg: NetfilterMessage, flags: u16, seq: u32) -> Vec<u8> {
    let mut m = NetlinkMessage::new(NetlinkHeader::default(), NetlinkPayload::InnerMessage(msg));
    m.header.flags = flags;
    m.header.sequence_number = seq;
    m.finalize();
    let mut buf = vec![0; m.header.length as usize];
    m.serialize(&mut buf);
    buf
}

/// Where one message of a batch came from: its command and which of the command's
/// messages it is (described only when the kernel refuses it: a full sync sends 100,000s).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Sent {
    seq: u32,
    cmd: u32,
    part: u32,
}

const NFT_MSG_DELCHAIN: u8 = 5;
const NFT_MSG_DELRULE: u8 = 8;
const NFT_MSG_DELSETELEM: u8 = 14;
const NFT_MSG_DELSET: u8 = 11;
/// `NFT_SET_MAP`.
const NFT_SET_MAP: u32 = 0x8;
/// nft's datatype numbers of `integer` and `mark` (`TYPE_INTEGER`, `TYPE_MARK`).
const NFT_TYPE_INTEGER: u32 = 4;
const NFT_TYPE_MARK: u32 = 19;

/// The user data nft stores with a map declared `typeof numgen inc mod 2 : meta mark`
/// (libnftnl's TLVs: type, length, value; numbers in host order): key and data byte
/// order (host), the key's typeof (expression `numgen`: type incremental, modulus 2,
/// offset 0), the data's (expression `meta`: key `mark`), and data interval 0.
fn maglev_map_udata() -> Vec<u8> {
    fn tlv(kind: u8, value: &[u8]) -> Vec<u8> {
        [&[kind, value.len() as u8][..], value].concat()
    }
    let n = |v: u32| v.to_ne_bytes();
    // NFTNL_UDATA_SET_TYPEOF_EXPR 0 (the expression's name number in nft: numgen 23,
    // meta 9), NFTNL_UDATA_SET_TYPEOF_DATA 1 (its own TLVs).
    let numgen = [tlv(0, &n(0)), tlv(1, &n(2)), tlv(2, &n(0))].concat();
    let meta = tlv(0, &n(3));
    [
        tlv(0, &n(1)),
        tlv(1, &n(1)),
        tlv(3, &[tlv(0, &n(23)), tlv(1, &numgen)].concat()),
        tlv(4, &[tlv(0, &n(9)), tlv(1, &meta)].concat()),
        tlv(6, &n(0)),
    ]
    .concat()
}
const NLM_F_APPEND: u16 = 0x800;

/// A nf_tables message built by hand (the crate has no rule expressions): netlink
/// header, nfgenmsg (family, version 0, resource id 0), attributes.
fn raw_frame(kind: u8, family: NetfilterProtoFamily, flags: u16, seq: u32, attrs: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(16 + 4 + attrs.len());
    write_frame(&mut b, kind, family, flags, seq, attrs);
    b
}

/// Appends one nf_tables message (netlink header, nfgenmsg, `attrs`) to `b`.
fn write_frame(b: &mut Vec<u8>, kind: u8, family: NetfilterProtoFamily, flags: u16, seq: u32, attrs: &[u8]) {
    let len = 16 + 4 + attrs.len();
    b.extend_from_slice(&(len as u32).to_ne_bytes());
    b.extend_from_slice(&((NFNL_SUBSYS_NFTABLES << 8) | u16::from(kind)).to_ne_bytes());
    b.extend_from_slice(&flags.to_ne_bytes());
    b.extend_from_slice(&seq.to_ne_bytes());
    b.extend_from_slice(&0u32.to_ne_bytes());
    b.extend_from_slice(&[u8::from(family), 0, 0, 0]);
    b.extend_from_slice(attrs);
}

/// The bytes of a service-map key: address, protocol, port, each padded to 4 bytes.
pub fn svc_key_bytes(key: &SvcKey) -> Option<Vec<u8>> {
    let SvcKey::Inet { proto, addr, port } = key else {
        return None;
    };
    let mut b = match addr {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    };
    let p = match proto {
        Protocol::Tcp => 6,
        Protocol::Udp => 17,
        Protocol::Sctp => 132,
    };
    b.extend_from_slice(&[p, 0, 0, 0]);
    b.extend_from_slice(&port.to_be_bytes());
    b.extend_from_slice(&[0, 0]);
    Some(b)
}

/// What a step does, for an error naming it: its nft text (as `script` writes it).
fn described(cmd: &Cmd) -> String {
    render::script(std::slice::from_ref(cmd)).trim_end().to_string()
}

/// One message of a batch, before framing: type, family, flags, attributes.
type Part = (u8, NetfilterProtoFamily, u16, Vec<u8>);

/// The messages of one step.
/// The attributes of one NEWSETELEM (`add`) or DELSETELEM message for `elems` of `set`
/// in table `name` (the crate encodes the element list; only its attributes are kept).
fn set_elements(
    family: NetfilterProtoFamily,
    name: &str,
    set: &str,
    elems: Vec<ListAttribute<SetElementAttribute>>,
    add: bool,
) -> Vec<u8> {
    let body = SetElementMessage {
        attributes: vec![
            SetElementList::Table(name.to_string()),
            SetElementList::Set(set.to_string()),
            SetElementList::Elements(elems),
        ],
    };
    let msg = if add {
        NfTablesMessage::NewSetElement(body)
    } else {
        NfTablesMessage::DeleteSetElement(body)
    };
    let framed = frame(
        NetfilterMessage::new(NetfilterHeader::new(family, 0, 0), msg),
        0,
        0,
    );
    framed[20..].to_vec()
}

fn parts_of(cmd: &Cmd) -> Result<Vec<Part>, KernelError> {
    let create = NLM_F_REQUEST | NLM_F_CREATE;
    match cmd {
        Cmd::Text(t) => Err(KernelError::other(format!(
            "nftables: not a netlink step: {}",
            t.lines().next().unwrap_or("")
        ))),
        Cmd::Elements { table, op } => {
            let (family, name) = family_and_name(table)?;
            let mut out = Vec::new();
            for chunk in op.elems.chunks(ELEMS_PER_MESSAGE) {
                let elems = chunk
                    .iter()
                    .map(|e| element(e, op.add))
                    .collect::<Result<Vec<_>, _>>()?;
                let (kind, flags) = if op.add {
                    (NFT_MSG_NEWSETELEM, create)
                } else {
                    (NFT_MSG_DELSETELEM, NLM_F_REQUEST)
                };
                let attrs = set_elements(family, name, &op.set, elems, op.add);
                out.push((kind, family, flags, attrs));
            }
            Ok(out)
        }
        Cmd::Flows {
            table,
            set,
            elems,
            replace,
        } => {
            let (family, name) = family_and_name(table)?;
            let mut out = Vec::new();
            for chunk in elems.chunks(ELEMS_PER_MESSAGE) {
                if *replace {
                    let keys = chunk
                        .iter()
                        .map(|e| {
                            ListAttribute::Element(vec![SetElementAttribute::Key(DataAttribute::Value(
                                e.key_bytes(),
                            ))])
                        })
                        .collect();
                    let attrs = set_elements(family, name, set, keys, false);
                    out.push((NFT_MSG_DELSETELEM, family, NLM_F_REQUEST, attrs));
                }
                let elems = chunk
                    .iter()
                    .map(|e| {
                        ListAttribute::Element(vec![
                            SetElementAttribute::Key(DataAttribute::Value(e.key_bytes())),
                            SetElementAttribute::Data(DataAttribute::Value(e.mark.to_ne_bytes().to_vec())),
                            SetElementAttribute::Timeout(u64::from(e.timeout) * 1000),
                        ])
                    })
                    .collect();
                let attrs = set_elements(family, name, set, elems, true);
                out.push((NFT_MSG_NEWSETELEM, family, create, attrs));
            }
            Ok(out)
        }
        Cmd::Chain { table, chain, op } => {
            let (family, name) = family_and_name(table)?;
            let ids = [
                expr::string(1, name),
                expr::string(
                    if matches!(op, ChainOp::Add | ChainOp::Delete) {
                        3
                    } else {
                        2
                    },
                    chain,
                ),
            ]
            .concat();
            Ok(vec![match op {
                ChainOp::Add => (NFT_MSG_NEWCHAIN, family, create, ids),
                ChainOp::Delete => (NFT_MSG_DELCHAIN, family, NLM_F_REQUEST, ids),
                ChainOp::Flush => (NFT_MSG_DELRULE, family, NLM_F_REQUEST, ids),
                ChainOp::Append(r) => (
                    NFT_MSG_NEWRULE,
                    family,
                    create | NLM_F_APPEND,
                    [ids, expr::expressions(&r.exprs)].concat(),
                ),
            }])
        }
        Cmd::Map {
            table,
            name: map,
            add,
        } => {
            let (family, name) = family_and_name(table)?;
            let ids = [expr::string(1, name), expr::string(2, map)].concat();
            if !*add {
                return Ok(vec![(NFT_MSG_DELSET, family, NLM_F_REQUEST, ids)]);
            }
            // NFTA_SET_FLAGS 3 (NFT_SET_MAP), _KEY_TYPE 4 (nft's `integer`) and
            // _DATA_TYPE 6 (`mark`), _KEY_LEN 5 and _DATA_LEN 7, _ID 10 (the kernel wants
            // one; unique in the batch: a service's maps are one per id), _USERDATA 13
            // (what nft stores for render::MAGLEV_MAP_TYPE).
            let be32 = |kind: u16, v: u32| expr::nla(kind, &v.to_be_bytes());
            let id = render::maglev_map_id(map).unwrap_or(0);
            let attrs = [
                ids,
                be32(3, NFT_SET_MAP),
                be32(4, NFT_TYPE_INTEGER),
                be32(5, 4),
                be32(6, NFT_TYPE_MARK),
                be32(7, 4),
                be32(10, id),
                expr::nla(13, &maglev_map_udata()),
            ]
            .concat();
            Ok(vec![(NFT_MSG_NEWSET, family, create, attrs)])
        }
        Cmd::Entry {
            table,
            map,
            key,
            target,
        } => {
            let (family, name) = family_and_name(table)?;
            let k = svc_key_bytes(key)
                .ok_or_else(|| KernelError::other(format!("service {key} has no service-map key")))?;
            let mut elem = vec![expr::nest(1, &[expr::nla(1, &k)])];
            if let Some((comment, chain)) = target {
                elem.push(expr::data(2, &Data::Verdict(expr::NFT_JUMP, Some(chain.clone()))));
                elem.push(expr::nla(6, &comment_udata(comment)?));
            }
            let attrs = [
                expr::string(1, name),
                expr::string(2, map),
                expr::nest(3, &[expr::nest(1, &elem)]),
            ]
            .concat();
            Ok(vec![match target {
                Some(_) => (NFT_MSG_NEWSETELEM, family, create, attrs),
                None => (NFT_MSG_DELSETELEM, family, NLM_F_REQUEST, attrs),
            }])
        }
    }
}

/// What message `part` of `cmd` (as [`parts_of`] makes them) does, for an error.
fn what_of(cmd: &Cmd, part: usize) -> String {
    let chunk_len = |n: usize, i: usize| n.saturating_sub(i * ELEMS_PER_MESSAGE).min(ELEMS_PER_MESSAGE);
    match cmd {
        Cmd::Elements { table, op } => format!(
            "{} {} element(s) {} {table} {}",
            if op.add { "add" } else { "delete" },
            chunk_len(op.elems.len(), part),
            if op.add { "to" } else { "from" },
            op.set
        ),
        Cmd::Flows {
            table,
            set,
            elems,
            replace,
        } => {
            // With `replace`, each chunk is a delete then an add.
            let (chunk, delete) = if *replace {
                (part / 2, part.is_multiple_of(2))
            } else {
                (part, false)
            };
            let n = chunk_len(elems.len(), chunk);
            if delete {
                format!("delete {n} flow(s) from {table} {set}")
            } else {
                format!("add {n} flow(s) to {table} {set}")
            }
        }
        _ => described(cmd),
    }
}

/// Encodes `cmds` as one batch (begin, the messages, end), sequence numbers from
/// `first` (the batch begin), each command's messages framed as they are made (a full
/// sync's batch is tens of megabytes: nothing else of that size is built beside it).
/// Only the last message asks for an acknowledgement: the kernel answers errors whatever
/// the flags, after the whole batch, and the last message's answer comes after them all
/// (a batch of 50,000 acknowledged messages would overflow any receive buffer). Returns
/// the bytes and where each message came from.
fn encode(cmds: &[&Cmd], first: u32) -> Result<(Vec<u8>, Vec<Sent>), KernelError> {
    let mut seq = first;
    let mut bytes = frame(
        NetfilterMessage::new(
            NetfilterHeader::new(NetfilterProtoFamily::Unspec, 0, NFNL_SUBSYS_NFTABLES),
            ControlMessage::BatchBegin,
        ),
        NLM_F_REQUEST,
        seq,
    );
    let mut sent = Vec::new();
    let mut last_at = None;
    for (i, c) in cmds.iter().enumerate() {
        for (p, (kind, family, flags, attrs)) in parts_of(c)?.into_iter().enumerate() {
            seq = seq.wrapping_add(1);
            last_at = Some(bytes.len());
            write_frame(&mut bytes, kind, family, flags, seq, &attrs);
            sent.push(Sent {
                seq,
                cmd: i as u32,
                part: p as u32,
            });
        }
    }
    if let Some(at) = last_at {
        // The header's flags: after its length (4 bytes) and type (2).
        let flags = u16::from_ne_bytes([bytes[at + 6], bytes[at + 7]]) | NLM_F_ACK;
        bytes[at + 6..at + 8].copy_from_slice(&flags.to_ne_bytes());
    }
    seq = seq.wrapping_add(1);
    bytes.extend(frame(
        NetfilterMessage::new(
            NetfilterHeader::new(NetfilterProtoFamily::Unspec, 0, NFNL_SUBSYS_NFTABLES),
            ControlMessage::BatchEnd,
        ),
        NLM_F_REQUEST,
        seq,
    ));
    Ok((bytes, sent))
}

/// A netfilter netlink socket that commits element batches and lists our tables.
pub struct NfNetlink {
    sock: Socket,
    seq: u32,
    sndbuf: usize,
    buf: Vec<u8>,
}

impl NfNetlink {
    pub fn open() -> Result<NfNetlink, KernelError> {
        let mut sock = Socket::new(NETLINK_NETFILTER).map_err(|e| io_error("netlink socket", &e))?;
        sock.bind_auto().map_err(|e| io_error("netlink bind", &e))?;
        sock.connect(&SocketAddr::new(0, 0))
            .map_err(|e| io_error("netlink connect", &e))?;
        if !force_buffer(&sock, libc::SO_RCVBUFFORCE, SO_RCVBUF_BYTES as usize) {
            let _ = sock.set_rx_buf_sz(SO_RCVBUF_BYTES);
        }
        // Errors echo only the request's header.
        let _ = sock.set_cap_ack(true);
        socket2::SockRef::from(&sock)
            .set_read_timeout(Some(RECV_TIMEOUT))
            .map_err(|e| io_error("netlink SO_RCVTIMEO", &e))?;
        Ok(NfNetlink {
            sock,
            seq: 0,
            sndbuf: 0,
            buf: Vec::with_capacity(64 * 1024),
        })
    }

    /// Applies `cmds` (netlink steps only) in one transaction: all or nothing. The error
    /// names the message the kernel refused.
    pub fn commit(&mut self, cmds: &[&Cmd]) -> Result<(), KernelError> {
        let first = self.seq.wrapping_add(1);
        let (bytes, sent) = encode(cmds, first)?;
        self.seq = first.wrapping_add(sent.len() as u32 + 1);
        if sent.is_empty() {
            return Ok(());
        }
        if bytes.len() + 4096 > self.sndbuf {
            // One datagram carries the whole batch (the kernel's transaction).
            let want = (bytes.len() + 4096).max(256 * 1024);
            if force_buffer(&self.sock, libc::SO_SNDBUFFORCE, want) {
                self.sndbuf = want;
            }
        }
        send_all(&self.sock, &bytes, "nftables netlink send")?;
        self.read_acks(first, cmds, &sent)
    }

    /// Reads the answers until the last message's: an error names its message (an error
    /// at commit, such as a loop found when the kernel validates the table, comes with
    /// the batch begin's sequence number).
    fn read_acks(&mut self, begin: u32, cmds: &[&Cmd], sent: &[Sent]) -> Result<(), KernelError> {
        let first = sent.first().map(|s| s.seq).unwrap_or(0);
        let last = sent.last().map(|s| s.seq).unwrap_or(0);
        let mut failure: Option<KernelError> = None;
        loop {
            self.buf.clear();
            // After an error the last answer may not come: only read what is there.
            let flags = if failure.is_some() { libc::MSG_DONTWAIT } else { 0 };
            match self.sock.recv(&mut self.buf, flags | libc::MSG_TRUNC) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) if failure.is_some() => break,
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                    return Err(KernelError::other(format!(
                        "nftables: no answer from the kernel in {} s",
                        RECV_TIMEOUT.as_secs()
                    )))
                }
                Err(e) => return Err(io_error("nftables netlink receive", &e)),
            }
            let mut done = false;
            for (seq, errno) in acks(&self.buf) {
                if errno != 0 && failure.is_none() {
                    let what = match sent.get(seq.wrapping_sub(first) as usize) {
                        Some(s) if seq != begin => match cmds.get(s.cmd as usize) {
                            Some(c) => what_of(c, s.part as usize),
                            None => format!("message {seq}"),
                        },
                        _ => "the transaction, at commit".to_string(),
                    };
                    failure = Some(KernelError::errno(errno, &format!("nftables refused: {what}")));
                }
                done |= seq == last;
            }
            if done {
                break;
            }
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// One message read back from a dump: its nf_tables type and attributes (after the
/// 4-byte nfgenmsg header).
enum Answer {
    /// nf_tables message type, the family of its nfgenmsg header, its attributes.
    Message(u8, u8, Vec<u8>),
    Done,
    Error(i32),
}

/// A dump's reply: nf_tables message type, family and attributes.
type Reply = (u8, u8, Vec<u8>);

const NFT_MSG_NEWCHAIN: u8 = 3;
const NFT_MSG_NEWRULE: u8 = 6;
const NFT_MSG_NEWSET: u8 = 9;
const NFT_MSG_NEWSETELEM: u8 = 12;
const NFT_MSG_NEWGEN: u8 = 15;
/// `NFT_SET_ANONYMOUS`: a set that is part of a rule (`{ tcp, udp, sctp }`).
const SET_ANONYMOUS: u32 = 0x1;

/// The attributes in `b`: (type without flags, value). Stops at the first malformed
/// one. (Replies are decoded here rather than with the crate's parsers, which format
/// the whole buffer into every nested attribute's error context even on success:
/// quadratic in a dump part's size.)
fn attrs(mut b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if b.len() < 4 {
            return None;
        }
        let len = usize::from(u16::from_ne_bytes([b[0], b[1]]));
        let kind = u16::from_ne_bytes([b[2], b[3]]) & 0x3fff;
        if len < 4 || len > b.len() {
            b = &[];
            return None;
        }
        let value = &b[4..len];
        b = b.get((len + 3) & !3..).unwrap_or(&[]);
        Some((kind, value))
    })
}

fn attr(b: &[u8], kind: u16) -> Option<&[u8]> {
    attrs(b).find(|(k, _)| *k == kind).map(|(_, v)| v)
}

fn be32(b: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(..4)?.try_into().ok()?))
}

/// Maps whose elements the dump reads (the flow maps are left out).
fn elements_wanted(set: &str) -> bool {
    matches!(set, "svc4" | "svc6" | "dst4" | "dst6" | "slots")
        || render::fwd_set_device(set).is_some()
        || render::maglev_map_id(set).is_some()
}

fn c_string(b: &[u8]) -> String {
    let end = b.iter().position(|c| *c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// The comment in an element's user data (nft's TLVs).
pub fn comment_of_udata(mut b: &[u8]) -> Option<String> {
    while b.len() >= 2 {
        let (kind, len) = (b[0], usize::from(b[1]));
        let value = b.get(2..2 + len)?;
        if kind == UDATA_COMMENT {
            return Some(c_string(value));
        }
        b = &b[2 + len..];
    }
    None
}

fn mark_of(b: &[u8]) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(..4)?.try_into().ok()?))
}

/// A service-map key: address, protocol and port, each padded to 4 bytes.
pub fn svc_key_of(b: &[u8]) -> Option<SvcKey> {
    let (addr, rest): (IpAddr, &[u8]) = match b.len() {
        12 => (IpAddr::from(<[u8; 4]>::try_from(&b[..4]).ok()?), &b[4..]),
        24 => (IpAddr::from(<[u8; 16]>::try_from(&b[..16]).ok()?), &b[16..]),
        _ => return None,
    };
    let proto = match rest[0] {
        6 => Protocol::Tcp,
        17 => Protocol::Udp,
        132 => Protocol::Sctp,
        _ => return None,
    };
    let port = u16::from_be_bytes([rest[4], rest[5]]);
    Some(SvcKey::Inet { proto, addr, port })
}

fn if_name(index: u32) -> Option<String> {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: the buffer holds IF_NAMESIZE bytes, as if_indextoname requires.
    let p = unsafe { libc::if_indextoname(index, buf.as_mut_ptr()) };
    if p.is_null() {
        return None;
    }
    let bytes: Vec<u8> = buf.iter().take_while(|c| **c != 0).map(|c| *c as u8).collect();
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

/// What the dump needs of a rule's expressions (`NFTA_RULE_EXPRESSIONS`): the modulus of
/// a `numgen` (`NFTA_NG_MODULUS`) or `hash` (`NFTA_HASH_MODULUS`), and the device of a
/// `fwd` (the interface index the immediate before it loads).
fn rule_facts(exprs: &[u8]) -> RuleFacts {
    let mut facts = RuleFacts::default();
    let mut last_word: Option<u32> = None;
    for (_, e) in attrs(exprs) {
        let name = attr(e, 1).map(c_string).unwrap_or_default();
        let data = attr(e, 2).unwrap_or(&[]);
        match name.as_str() {
            "immediate" => {
                if let Some(v) = attr(data, 2).and_then(|d| attr(d, 1)).filter(|v| v.len() == 4) {
                    last_word = mark_of(v);
                }
            }
            "numgen" => facts.modulus = facts.modulus.or_else(|| attr(data, 2).and_then(be32)),
            "hash" => facts.modulus = facts.modulus.or_else(|| attr(data, 4).and_then(be32)),
            "fwd" => facts.fwd_dev = last_word.and_then(if_name),
            _ => {}
        }
    }
    facts
}

impl NfNetlink {
    /// Sends one dump request and reads all of its answers (nf_tables type and
    /// attributes); None when the table (or set) does not exist. Err("interrupted")
    /// when the ruleset moved under the dump.
    fn dump(
        &mut self,
        family: NetfilterProtoFamily,
        msg: NfTablesMessage,
    ) -> Result<Option<Vec<Reply>>, KernelError> {
        self.seq = self.seq.wrapping_add(1);
        let bytes = frame(
            NetfilterMessage::new(NetfilterHeader::new(family, 0, 0), msg),
            NLM_F_REQUEST | NLM_F_DUMP,
            self.seq,
        );
        self.dump_raw(bytes)
    }

    /// Sends a framed dump request (sequence number `self.seq`) and reads its answers.
    fn dump_raw(&mut self, bytes: Vec<u8>) -> Result<Option<Vec<Reply>>, KernelError> {
        let seq = self.seq;
        send_all(&self.sock, &bytes, "nftables netlink send")?;
        let mut out = Vec::new();
        let mut interrupted = false;
        loop {
            self.buf.clear();
            match self.sock.recv(&mut self.buf, libc::MSG_TRUNC) {
                Ok(n) if n > self.buf.capacity() => {
                    return Err(KernelError::other(format!(
                        "nftables dump: reply of {n} bytes truncated"
                    )))
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_error("nftables netlink dump", &e)),
            }
            let mut off = 0;
            let mut done = false;
            let mut result = Ok(());
            let buf = &self.buf;
            while off + 16 <= buf.len() {
                let len = mark_of(&buf[off..]).unwrap_or(0) as usize;
                if len < 16 || off + len > buf.len() {
                    break;
                }
                let part = &buf[off..off + len];
                off += (len + 3) & !3;
                let flags = u16::from_ne_bytes([part[6], part[7]]);
                if mark_of(&part[8..]) != Some(seq) {
                    continue;
                }
                interrupted |= flags & NLM_F_DUMP_INTR != 0;
                match parse_answer(part) {
                    Answer::Message(kind, family, attrs) => out.push((kind, family, attrs)),
                    Answer::Done => done = true,
                    Answer::Error(0) => {}
                    Answer::Error(errno) => {
                        result = Err(errno);
                        done = true;
                    }
                }
            }
            match result {
                Err(libc::ENOENT) => return Ok(None),
                Err(errno) => return Err(KernelError::errno(errno, "nftables dump")),
                Ok(()) => {}
            }
            if done {
                break;
            }
        }
        if interrupted {
            return Err(KernelError::other("interrupted"));
        }
        Ok(Some(out))
    }

    /// The ruleset's generation: unchanged across a listing means the listing is whole.
    fn generation(&mut self) -> Result<u32, KernelError> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let bytes = frame(
            NetfilterMessage::new(
                NetfilterHeader::new(NetfilterProtoFamily::Unspec, 0, 0),
                NfTablesMessage::GetGen(GenMessage { attributes: vec![] }),
            ),
            NLM_F_REQUEST,
            seq,
        );
        send_all(&self.sock, &bytes, "nftables netlink send")?;
        loop {
            self.buf.clear();
            self.sock
                .recv(&mut self.buf, 0)
                .map_err(|e| io_error("nftables generation", &e))?;
            let len = mark_of(&self.buf).unwrap_or(0) as usize;
            if len < 16 || len > self.buf.len() || mark_of(&self.buf[8..]) != Some(seq) {
                continue;
            }
            return match parse_answer(&self.buf[..len]) {
                Answer::Message(NFT_MSG_NEWGEN, _, a) => attr(&a, 1)
                    .and_then(be32)
                    .ok_or_else(|| KernelError::other("nftables generation without id")),
                Answer::Error(errno) if errno != 0 => Err(KernelError::errno(errno, "nftables generation")),
                _ => Err(KernelError::other("nftables generation: unexpected answer")),
            };
        }
    }

    /// Our tables (every shard) that exist.
    pub fn tables(&mut self) -> Result<Vec<TableId>, KernelError> {
        const NFT_MSG_GETTABLE: u8 = 1;
        const NFT_MSG_NEWTABLE: u8 = 0;
        self.seq = self.seq.wrapping_add(1);
        let bytes = raw_frame(
            NFT_MSG_GETTABLE,
            NetfilterProtoFamily::Unspec,
            NLM_F_REQUEST | NLM_F_DUMP,
            self.seq,
            &[],
        );
        let replies = self.dump_raw(bytes)?.unwrap_or_default();
        let mut out = Vec::new();
        for (kind, family, a) in replies {
            // NFTA_TABLE_NAME 1
            let Some(name) = attr(&a, 1).map(c_string) else {
                continue;
            };
            let family = match NetfilterProtoFamily::from(family) {
                NetfilterProtoFamily::NetDev => "netdev",
                NetfilterProtoFamily::Inet => "inet",
                _ => continue,
            };
            if kind == NFT_MSG_NEWTABLE {
                out.extend(TableId::of_name(family, &name));
            }
        }
        out.sort();
        Ok(out)
    }

    /// Lists one of our tables (`netdev hanode`): None if it does not exist. Retried
    /// while the ruleset changes under the listing, or a set is rehashed under it
    /// ([`Listing::torn`]).
    pub fn list(&mut self, table: &str) -> Result<Option<Listing>, KernelError> {
        let mut last = None;
        for _ in 0..5 {
            let before = self.generation()?;
            match self.list_once(table) {
                Err(e) if e.message == "interrupted" => {
                    last = Some(e);
                    continue;
                }
                Err(e) => return Err(e),
                Ok(Some(l)) if l.torn() => {
                    last = Some(KernelError::other(
                        "nftables: a set was rehashed during every listing",
                    ));
                    std::thread::sleep(Duration::from_millis(2));
                }
                Ok(l) => {
                    if self.generation()? == before {
                        return Ok(l);
                    }
                }
            }
        }
        Err(last
            .unwrap_or_else(|| KernelError::other("nftables: the ruleset kept changing during the listing")))
    }

    /// The attributes of each element-list message a dump of `set` in our table `name`
    /// answers (NFTA_SET_ELEM_LIST_TABLE 1, _SET 2, _ELEMENTS 3 of NFTA_LIST_ELEM);
    /// none if the table or set does not exist.
    fn set_element_messages(
        &mut self,
        family: NetfilterProtoFamily,
        name: &str,
        set: &str,
    ) -> Result<Vec<Vec<u8>>, KernelError> {
        let msgs = self
            .dump(
                family,
                NfTablesMessage::GetSetElement(SetElementMessage {
                    attributes: vec![
                        SetElementList::Table(name.to_string()),
                        SetElementList::Set(set.to_string()),
                    ],
                }),
            )?
            .unwrap_or_default();
        Ok(msgs
            .into_iter()
            .filter(|(kind, _, a)| {
                *kind == NFT_MSG_NEWSETELEM && attr(a, 1).map(c_string).as_deref() == Some(name)
            })
            .map(|(_, _, a)| a)
            .collect())
    }

    /// The elements of one flow map of ours: each key's bytes and the destination mark
    /// it maps to (empty if the table or map does not exist). Flow maps are only read
    /// when a director catches up with another's flows: a set dump costs the kernel more
    /// than linear time in its size (docs/dev-notes/flow-sync.md).
    pub fn flow_elements(&mut self, table: &str, set: &str) -> Result<Vec<(Vec<u8>, u32)>, KernelError> {
        let (family, name) = family_and_name(table)?;
        let mut out = Vec::new();
        for a in self.set_element_messages(family, name, set)? {
            for (_, e) in attrs(attr(&a, 3).unwrap_or(&[])) {
                let key = attr(e, 1).and_then(|k| attr(k, 1));
                let value = attr(e, 2).and_then(|d| attr(d, 1)).and_then(mark_of);
                if let (Some(k), Some(v)) = (key, value) {
                    out.push((k.to_vec(), v));
                }
            }
        }
        Ok(out)
    }

    fn list_once(&mut self, table: &str) -> Result<Option<Listing>, KernelError> {
        let (family, name) = family_and_name(table)?;
        let ours = |a: &[u8], kind: u16| attr(a, kind).map(c_string).as_deref() == Some(name);
        let mut l = Listing::default();
        let Some(sets) = self.dump(
            family,
            NfTablesMessage::GetSet(SetMessage {
                attributes: vec![SetAttribute::Table(name.to_string())],
            }),
        )?
        else {
            return Ok(None);
        };
        for (kind, _, a) in sets {
            // NFTA_SET_TABLE 1, NFTA_SET_NAME 2, NFTA_SET_FLAGS 3
            let anonymous = attr(&a, 3).and_then(be32).unwrap_or(0) & SET_ANONYMOUS != 0;
            if kind == NFT_MSG_NEWSET && ours(&a, 1) && !anonymous {
                if let Some(n) = attr(&a, 2).map(c_string) {
                    l.objects.insert(n);
                }
            }
        }
        let wanted: Vec<String> = l.objects.iter().filter(|s| elements_wanted(s)).cloned().collect();
        for set in wanted {
            for a in self.set_element_messages(family, name, &set)? {
                for (_, e) in attrs(attr(&a, 3).unwrap_or(&[])) {
                    add_element(&mut l, &set, e);
                }
            }
        }
        let chains = self
            .dump(
                family,
                NfTablesMessage::GetChain(ChainMessage {
                    attributes: vec![ChainAttribute::Table(name.to_string())],
                }),
            )?
            .unwrap_or_default();
        for (kind, _, a) in chains {
            // NFTA_CHAIN_TABLE 1, NFTA_CHAIN_NAME 3, NFTA_CHAIN_HOOK 4 (NFTA_HOOK_DEV 3,
            // NFTA_HOOK_DEVS 4 of NFTA_DEVICE_NAME)
            if kind != NFT_MSG_NEWCHAIN || !ours(&a, 1) {
                continue;
            }
            let Some(n) = attr(&a, 3).map(c_string) else {
                continue;
            };
            let mut devs = std::collections::BTreeSet::new();
            if let Some(hook) = attr(&a, 4) {
                devs.extend(attr(hook, 3).map(c_string));
                if let Some(list) = attr(hook, 4) {
                    devs.extend(attrs(list).map(|(_, d)| c_string(d)));
                }
            }
            l.chains.push((n, devs));
        }
        let rules = self
            .dump(
                family,
                NfTablesMessage::GetRule(RuleMessage {
                    attributes: vec![RuleAttribute::Table(name.to_string())],
                }),
            )?
            .unwrap_or_default();
        for (kind, _, a) in rules {
            // NFTA_RULE_TABLE 1, NFTA_RULE_CHAIN 2, NFTA_RULE_EXPRESSIONS 4
            if kind != NFT_MSG_NEWRULE || !ours(&a, 1) {
                continue;
            }
            if let Some(chain) = attr(&a, 2).map(c_string) {
                let facts = rule_facts(attr(&a, 4).unwrap_or(&[]));
                l.rules.entry(chain).or_default().push(facts);
            }
        }
        Ok(Some(l))
    }
}

/// Files one element (`NFTA_LIST_ELEM`) of `set` into the listing: NFTA_SET_ELEM_KEY 1
/// and _DATA 2 (NFTA_DATA_VALUE 1, or NFTA_DATA_VERDICT 2 with NFTA_VERDICT_CHAIN 2),
/// _USERDATA 6.
fn add_element(l: &mut Listing, set: &str, e: &[u8]) {
    let Some(key) = attr(e, 1).and_then(|k| attr(k, 1)) else {
        return;
    };
    let data = attr(e, 2);
    let value = data.and_then(|d| attr(d, 1));
    let verdict = data
        .and_then(|d| attr(d, 2))
        .and_then(|v| attr(v, 2))
        .map(c_string);
    let comment = attr(e, 6).and_then(comment_of_udata);
    match set {
        "svc4" | "svc6" => {
            if let Some(target) = verdict {
                l.entries
                    .push((set.to_string(), svc_key_of(key), target, comment));
            }
        }
        "dst4" | "dst6" => {
            if let Some(mark) = mark_of(key) {
                l.dsts.push((set.to_string(), mark, comment));
            }
        }
        _ if set == "slots" || render::maglev_map_id(set).is_some() => {
            if let (Some(k), Some(v)) = (mark_of(key), value.and_then(mark_of)) {
                if set == "slots" {
                    l.slots.push((k, v));
                } else {
                    l.maglev.push((k, v));
                }
            }
        }
        _ => {
            if let Some(mark) = mark_of(key) {
                l.fwd.push((set.to_string(), mark));
            }
        }
    }
}

fn parse_answer(part: &[u8]) -> Answer {
    const NLMSG_ERROR: u16 = 2;
    const NLMSG_DONE: u16 = 3;
    let kind = u16::from_ne_bytes([part[4], part[5]]);
    match kind {
        NLMSG_DONE => Answer::Done,
        NLMSG_ERROR => Answer::Error(-(mark_of(part.get(16..).unwrap_or(&[])).unwrap_or(0) as i32)),
        // (NFNL_SUBSYS_NFTABLES << 8) | message; the nfgenmsg header is 4 bytes.
        k if k >> 8 == NFNL_SUBSYS_NFTABLES => Answer::Message(
            (k & 0xff) as u8,
            part.get(16).copied().unwrap_or(0),
            part.get(20..).unwrap_or(&[]).to_vec(),
        ),
        _ => Answer::Error(0),
    }
}

/// The (sequence, errno) of every NLMSG_ERROR message in one datagram (errno 0: ack).
fn acks(buf: &[u8]) -> Vec<(u32, i32)> {
    const NLMSG_ERROR: u16 = 2;
    let mut out = Vec::new();
    let mut off = 0;
    while off + 16 <= buf.len() {
        let word =
            |at: usize| -> Option<u32> { Some(u32::from_ne_bytes(buf.get(at..at + 4)?.try_into().ok()?)) };
        let (Some(len), Some(seq)) = (word(off), word(off + 8)) else {
            break;
        };
        let kind = u16::from_ne_bytes([buf[off + 4], buf[off + 5]]);
        let len = len as usize;
        if len < 16 || off + len > buf.len() {
            break;
        }
        if kind == NLMSG_ERROR {
            if let Some(code) = word(off + 16) {
                out.push((seq, -(code as i32)));
            }
        }
        off += (len + 3) & !3;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The user data of a Maglev map is what nft 1.0.6 sends for `add map netdev t
    /// mh_5 { typeof numgen inc mod 2 : meta mark; }` (`nft --debug=mnl`), so that nft
    /// lists a map we create as its own.
    #[test]
    fn a_maglev_map_s_user_data_is_nft_s() {
        let nft: [u8; 62] = [
            0x00, 0x04, 0x01, 0x00, 0x00, 0x00, 0x01, 0x04, 0x01, 0x00, 0x00, 0x00, 0x03, 0x1a, 0x00, 0x04,
            0x17, 0x00, 0x00, 0x00, 0x01, 0x12, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x01, 0x04, 0x02, 0x00,
            0x00, 0x00, 0x02, 0x04, 0x00, 0x00, 0x00, 0x00, 0x04, 0x0e, 0x00, 0x04, 0x09, 0x00, 0x00, 0x00,
            0x01, 0x06, 0x00, 0x04, 0x03, 0x00, 0x00, 0x00, 0x06, 0x04, 0x00, 0x00, 0x00, 0x00,
        ];
        if cfg!(target_endian = "little") {
            assert_eq!(maglev_map_udata(), nft);
        }
    }
    use crate::lb::nft::render::SetOp;
    use std::net::Ipv4Addr;

    /// A synced flow goes as one NEWSETELEM with its key, the destination mark and the
    /// timeout in milliseconds (big endian), created or refreshed (no NLM_F_EXCL).
    #[test]
    fn flows_are_added_with_their_timeout() {
        let e = crate::lb::nft::render::FlowElem {
            client: IpAddr::V4(Ipv4Addr::new(198, 18, 116, 100)),
            port: Some(40123),
            tag: 1 << 16,
            mark: (1 << 16) | 2,
            timeout: 900,
        };
        let mut cmd = Cmd::Flows {
            table: "netdev hanode",
            set: "flows4".into(),
            elems: vec![e.clone()],
            replace: true,
        };
        // Replacing: the key deleted first, in the same batch.
        let parts = parts_of(&cmd).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].0, NFT_MSG_DELSETELEM);
        assert_eq!(what_of(&cmd, 0), "delete 1 flow(s) from netdev hanode flows4");
        assert_eq!(what_of(&cmd, 1), "add 1 flow(s) to netdev hanode flows4");
        if let Cmd::Flows { replace, .. } = &mut cmd {
            *replace = false;
        }
        let parts = parts_of(&cmd).unwrap();
        assert_eq!(parts.len(), 1);
        let (kind, _, flags, attrs_bytes) = &parts[0];
        let what = what_of(&cmd, 0);
        assert_eq!(*kind, NFT_MSG_NEWSETELEM);
        assert_eq!(flags & NLM_F_CREATE, NLM_F_CREATE);
        assert_eq!(flags & 0x200, 0, "no NLM_F_EXCL: an existing flow is refreshed");
        assert!(what.contains("add 1 flow(s) to netdev hanode flows4"), "{what}");
        let list = attr(attrs_bytes, 3).expect("NFTA_SET_ELEM_LIST_ELEMENTS");
        let (_, elem) = attrs(list).next().expect("one element");
        let key = attr(elem, 1).and_then(|k| attr(k, 1)).expect("key");
        assert_eq!(key, e.key_bytes().as_slice());
        let data = attr(elem, 2).and_then(|d| attr(d, 1)).expect("data");
        assert_eq!(mark_of(data), Some((1 << 16) | 2));
        let timeout = attr(elem, 4).expect("NFTA_SET_ELEM_TIMEOUT");
        assert_eq!(timeout, 900_000u64.to_be_bytes());
    }

    #[test]
    fn values_are_laid_out_as_nft_declares_the_maps() {
        // mark: host order; address: network order; address . port: port big endian,
        // padded to a 4-byte register.
        assert_eq!(
            value_bytes(&ElemValue::Mark(0x0001_0002)),
            0x0001_0002u32.to_ne_bytes()
        );
        let a = IpAddr::V4(Ipv4Addr::new(198, 18, 116, 131));
        assert_eq!(value_bytes(&ElemValue::Addr(a)), [198, 18, 116, 131]);
        assert_eq!(
            value_bytes(&ElemValue::AddrPort(a, 8080)),
            [198, 18, 116, 131, 0x1f, 0x90, 0, 0]
        );
        assert_eq!(comment_udata("w=1").unwrap(), [0, 4, b'w', b'=', b'1', 0]);
        assert!(comment_udata(&"x".repeat(300)).is_err());
    }

    #[test]
    fn a_batch_is_framed_begin_messages_end_with_one_ack_asked_for_the_last() {
        let op = SetOp {
            set: "dst4".into(),
            add: true,
            elems: (0..501)
                .map(|i| Elem {
                    key: 0x10000 | i,
                    value: Some(ElemValue::Addr(IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1)))),
                    comment: Some("c".into()),
                })
                .collect(),
        };
        let key = SvcKey::Inet {
            proto: Protocol::Tcp,
            addr: IpAddr::V4(Ipv4Addr::new(198, 18, 116, 134)),
            port: 80,
        };
        let cmds = [
            Cmd::Elements {
                table: "netdev hanode",
                op,
            },
            Cmd::Chain {
                table: "netdev hanode",
                chain: "svc_1".into(),
                op: ChainOp::Add,
            },
            Cmd::Entry {
                table: "netdev hanode",
                map: "svc4",
                key,
                target: Some(("rr".into(), "svc_1".into())),
            },
        ];
        let refs: Vec<&Cmd> = cmds.iter().collect();
        let (bytes, sent) = encode(&refs, 7).unwrap();
        // 501 elements: two messages, sequence 8 and 9 (7 is the batch begin), then the
        // chain (10) and the entry (11).
        assert_eq!(sent.iter().map(|s| s.seq).collect::<Vec<_>>(), [8, 9, 10, 11]);
        let what = |i: usize| what_of(&cmds[sent[i].cmd as usize], sent[i].part as usize);
        assert_eq!(what(0), "add 500 element(s) to netdev hanode dst4");
        assert_eq!(what(1), "add 1 element(s) to netdev hanode dst4");
        assert!(what(3).contains("198.18.116.134"), "{}", what(3));
        // Walk the frames: BATCH_BEGIN, NEWSETELEM x2, NEWCHAIN, NEWSETELEM, BATCH_END;
        // only the last message before the end asks for an ack.
        let mut off = 0;
        let mut types = Vec::new();
        let mut acked = Vec::new();
        while off < bytes.len() {
            let len = u32::from_ne_bytes(bytes[off..off + 4].try_into().unwrap()) as usize;
            types.push(u16::from_ne_bytes([bytes[off + 4], bytes[off + 5]]));
            acked.push(u16::from_ne_bytes([bytes[off + 6], bytes[off + 7]]) & NLM_F_ACK != 0);
            off += (len + 3) & !3;
        }
        let t = |m: u16| (10 << 8) | m;
        assert_eq!(types, [0x10, t(12), t(12), t(3), t(12), 0x11]);
        assert_eq!(acked, [false, false, false, false, true, false]);
        // The entry's key: address, protocol and port padded to 4 bytes, as the dump
        // reads it back.
        let k = svc_key_bytes(&key).unwrap();
        assert_eq!(svc_key_of(&k), Some(key));
        assert!(bytes.windows(k.len()).any(|w| w == k));
        assert!(encode(&[&Cmd::Text("add table x".into())], 1).is_err());
    }

    fn nla(kind: u16, value: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&((value.len() + 4) as u16).to_ne_bytes());
        b.extend_from_slice(&kind.to_ne_bytes());
        b.extend_from_slice(value);
        while b.len() % 4 != 0 {
            b.push(0);
        }
        b
    }

    #[test]
    fn dumped_elements_and_rules_are_decoded_into_the_listing() {
        // A service-map element: key 198.18.116.134 . tcp . 80, jump svc_7, comment "rr".
        let key = nla(1, &nla(1, &[198, 18, 116, 134, 6, 0, 0, 0, 0, 80, 0, 0]));
        let verdict = nla(2, &[nla(1, &(-3i32).to_be_bytes()), nla(2, b"svc_7\0")].concat());
        let data = nla(2, &verdict);
        let udata = nla(6, &comment_udata("rr").unwrap());
        let elem = [key, data, udata].concat();
        let mut l = Listing::default();
        add_element(&mut l, "svc4", &elem);
        let want = SvcKey::Inet {
            proto: Protocol::Tcp,
            addr: IpAddr::V4(Ipv4Addr::new(198, 18, 116, 134)),
            port: 80,
        };
        assert_eq!(
            l.entries,
            [(
                "svc4".to_string(),
                Some(want),
                "svc_7".to_string(),
                Some("rr".to_string())
            )]
        );
        // A slot element: mark keys and values in host order.
        let slot = [
            nla(1, &nla(1, &0x18000u32.to_ne_bytes())),
            nla(2, &nla(1, &0x10001u32.to_ne_bytes())),
        ]
        .concat();
        add_element(&mut l, "slots", &slot);
        assert_eq!(l.slots, [(0x18000, 0x10001)]);
        // A rule with `numgen inc mod 12`: its modulus (big endian) is the slot count.
        let numgen = nla(
            1,
            &[
                nla(1, b"numgen\0"),
                nla(
                    2,
                    &[nla(1, &1u32.to_be_bytes()), nla(2, &12u32.to_be_bytes())].concat(),
                ),
            ]
            .concat(),
        );
        assert_eq!(rule_facts(&numgen).modulus, Some(12));
        // Malformed attributes end the walk instead of panicking.
        assert_eq!(attrs(&[200, 0, 1, 0, 1]).count(), 0);
        assert_eq!(svc_key_of(&[1, 2, 3]), None);
        assert_eq!(comment_of_udata(&[0, 9, b'x']), None);
    }

    #[test]
    fn acks_are_read_by_sequence_with_their_errno() {
        let mut buf = Vec::new();
        for (seq, code) in [(5u32, 0i32), (6, -2)] {
            buf.extend_from_slice(&36u32.to_ne_bytes());
            buf.extend_from_slice(&2u16.to_ne_bytes());
            buf.extend_from_slice(&0u16.to_ne_bytes());
            buf.extend_from_slice(&seq.to_ne_bytes());
            buf.extend_from_slice(&0u32.to_ne_bytes());
            buf.extend_from_slice(&code.to_ne_bytes());
            buf.extend_from_slice(&[0; 16]);
        }
        assert_eq!(acks(&buf), [(5, 0), (6, 2)]);
        assert_eq!(acks(&buf[..20]), []);
    }
}

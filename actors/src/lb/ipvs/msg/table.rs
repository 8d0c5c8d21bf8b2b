//! Table entries <-> IPVS attributes: [`Op`] -> request, dump reply -> `(SvcKey, SvcSpec)`
//! / `(DestKey, DestSpec)`, and back from a request to its `Op`. Pure.

use super::{
    Cmd, CmdAttr, DestAttr, IpvsMsg, MsgError, SvcAttr, ADDR_LEN, AF_INET, AF_INET6, FWD_DROUTE, FWD_MASK,
    FWD_MASQ, FWD_TUNNEL, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP, SVC_F_ONEPACKET, SVC_F_PERSISTENT,
};
use crate::lb::diff::Op;
use crate::lb::model::{DestKey, DestSpec, Persistence, SvcKey, SvcSpec, SCHED_FLAGS};
use ha_config::model::{Forwarding, Protocol};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

// ---- domain -> attributes -------------------------------------------------------------

fn af(v6: bool) -> u16 {
    if v6 {
        AF_INET6
    } else {
        AF_INET
    }
}

pub(super) fn addr_bytes(a: IpAddr) -> [u8; ADDR_LEN] {
    let mut b = [0u8; ADDR_LEN];
    match a {
        IpAddr::V4(a) => b[..4].copy_from_slice(&a.octets()),
        IpAddr::V6(a) => b = a.octets(),
    }
    b
}

fn proto_number(p: Protocol) -> u16 {
    match p {
        Protocol::Tcp => IPPROTO_TCP,
        Protocol::Udp => IPPROTO_UDP,
        Protocol::Sctp => IPPROTO_SCTP,
    }
}

fn fwd_number(f: Forwarding) -> u32 {
    match f {
        Forwarding::Nat => FWD_MASQ,
        Forwarding::Tun => FWD_TUNNEL,
        Forwarding::Dr => FWD_DROUTE,
    }
}

/// What the kernel keeps as the persistence netmask for a client prefix length.
pub(super) fn netmask(v6: bool, prefix: u8) -> [u8; 4] {
    if v6 {
        u32::from(prefix.min(128)).to_ne_bytes()
    } else {
        let p = u32::from(prefix.min(32));
        let mask = u32::MAX.checked_shl(32 - p).unwrap_or(0);
        mask.to_be_bytes()
    }
}

/// The attributes that name a service: AF, then protocol/addr/port or fwmark.
pub fn svc_id(key: &SvcKey) -> Vec<SvcAttr> {
    match *key {
        SvcKey::Inet { proto, addr, port } => vec![
            SvcAttr::Af(af(addr.is_ipv6())),
            SvcAttr::Protocol(proto_number(proto)),
            SvcAttr::Addr(addr_bytes(addr)),
            SvcAttr::Port(port),
        ],
        SvcKey::Fwmark { v6, mark } => vec![SvcAttr::Af(af(v6)), SvcAttr::Fwmark(mark)],
    }
}

/// The full entry NEW_SERVICE / SET_SERVICE need: the id, scheduler, flags (mask all
/// ones, as ipvsadm: we own every flag), timeout and netmask. Without persistence the
/// timeout is 0 and the netmask all ones (IPv6: 128), as ipvsadm sends them.
pub fn svc_full(key: &SvcKey, spec: &SvcSpec) -> Vec<SvcAttr> {
    let v6 = key.is_v6();
    let mut flags = 0;
    if spec.persistence.is_some() {
        flags |= SVC_F_PERSISTENT;
    }
    if spec.ops {
        flags |= SVC_F_ONEPACKET;
    }
    flags |= spec.sched_flags & SCHED_FLAGS;
    let (timeout, prefix) = match spec.persistence {
        Some(p) => (p.timeout, p.prefix),
        None => (0, if v6 { 128 } else { 32 }),
    };
    let mut attrs = svc_id(key);
    attrs.extend([
        SvcAttr::SchedName(spec.sched.clone()),
        SvcAttr::Flags {
            flags,
            mask: u32::MAX,
        },
        SvcAttr::Timeout(timeout),
        SvcAttr::Netmask(netmask(v6, prefix)),
    ]);
    attrs
}

/// The attributes that name a destination (its family included, so that a v4 real
/// server behind a v6 service is understood).
pub fn dest_id(d: &DestKey) -> Vec<DestAttr> {
    vec![
        DestAttr::Addr(addr_bytes(d.addr)),
        DestAttr::Port(d.port),
        DestAttr::AddrFamily(af(d.addr.is_ipv6())),
    ]
}

/// The full entry NEW_DEST / SET_DEST need.
pub fn dest_full(d: &DestKey, s: &DestSpec) -> Vec<DestAttr> {
    vec![
        DestAttr::Addr(addr_bytes(d.addr)),
        DestAttr::Port(d.port),
        DestAttr::FwdMethod(fwd_number(s.fwd)),
        DestAttr::Weight(s.weight),
        DestAttr::UThresh(s.u_thresh),
        DestAttr::LThresh(s.l_thresh),
        DestAttr::AddrFamily(af(d.addr.is_ipv6())),
    ]
}

impl From<&Op> for IpvsMsg {
    fn from(op: &Op) -> IpvsMsg {
        let (cmd, attrs) = match op {
            Op::AddService(k, s) => (Cmd::NewService, vec![CmdAttr::Service(svc_full(k, s))]),
            Op::EditService(k, s) => (Cmd::SetService, vec![CmdAttr::Service(svc_full(k, s))]),
            Op::DelService(k) => (Cmd::DelService, vec![CmdAttr::Service(svc_id(k))]),
            Op::AddDest(k, d, s) => (
                Cmd::NewDest,
                vec![CmdAttr::Service(svc_id(k)), CmdAttr::Dest(dest_full(d, s))],
            ),
            Op::EditDest(k, d, s) => (
                Cmd::SetDest,
                vec![CmdAttr::Service(svc_id(k)), CmdAttr::Dest(dest_full(d, s))],
            ),
            Op::DelDest(k, d) => (
                Cmd::DelDest,
                vec![CmdAttr::Service(svc_id(k)), CmdAttr::Dest(dest_id(d))],
            ),
        };
        IpvsMsg { cmd, attrs }
    }
}

impl IpvsMsg {
    /// GET_SERVICE; send with `NLM_F_DUMP` for every service.
    pub fn get_services() -> IpvsMsg {
        IpvsMsg {
            cmd: Cmd::GetService,
            attrs: Vec::new(),
        }
    }

    /// GET_DEST for one service; send with `NLM_F_DUMP` for all its destinations.
    pub fn get_dests(svc: &SvcKey) -> IpvsMsg {
        IpvsMsg {
            cmd: Cmd::GetDest,
            attrs: vec![CmdAttr::Service(svc_id(svc))],
        }
    }

    /// FLUSH: deletes every service (and so every destination).
    pub fn flush() -> IpvsMsg {
        IpvsMsg {
            cmd: Cmd::Flush,
            attrs: Vec::new(),
        }
    }

    pub(super) fn svc_attrs(&self) -> Result<&[SvcAttr], MsgError> {
        self.attrs
            .iter()
            .find_map(|a| match a {
                CmdAttr::Service(s) => Some(s.as_slice()),
                _ => None,
            })
            .ok_or(MsgError::Missing("SERVICE"))
    }

    pub(super) fn dest_attrs(&self) -> Result<&[DestAttr], MsgError> {
        self.attrs
            .iter()
            .find_map(|a| match a {
                CmdAttr::Dest(d) => Some(d.as_slice()),
                _ => None,
            })
            .ok_or(MsgError::Missing("DEST"))
    }

    /// A service of a GET_SERVICE reply (or of a NEW/SET_SERVICE request).
    pub fn service(&self) -> Result<(SvcKey, SvcSpec), MsgError> {
        let attrs = self.svc_attrs()?;
        let key = decode_svc_key(attrs)?;
        let spec = decode_svc_spec(attrs, key.is_v6())?;
        Ok((key, spec))
    }

    /// A destination of a GET_DEST reply for service `svc` (whose family is the default
    /// when the kernel is too old to say the destination's own).
    pub fn dest(&self, svc: &SvcKey) -> Result<(DestKey, DestSpec), MsgError> {
        let attrs = self.dest_attrs()?;
        let key = decode_dest_key(attrs, svc.is_v6())?;
        let spec = decode_dest_spec(attrs)?;
        Ok((key, spec))
    }

    /// The op this request performs: the inverse of `IpvsMsg::from(&Op)`.
    pub fn to_op(&self) -> Result<Op, MsgError> {
        let key = || decode_svc_key(self.svc_attrs()?);
        let dest = |k: &SvcKey| decode_dest_key(self.dest_attrs()?, k.is_v6());
        Ok(match self.cmd {
            Cmd::NewService => {
                let (k, s) = self.service()?;
                Op::AddService(k, s)
            }
            Cmd::SetService => {
                let (k, s) = self.service()?;
                Op::EditService(k, s)
            }
            Cmd::DelService => Op::DelService(key()?),
            Cmd::NewDest => {
                let k = key()?;
                let (d, s) = self.dest(&k)?;
                Op::AddDest(k, d, s)
            }
            Cmd::SetDest => {
                let k = key()?;
                let (d, s) = self.dest(&k)?;
                Op::EditDest(k, d, s)
            }
            Cmd::DelDest => {
                let k = key()?;
                Op::DelDest(k, dest(&k)?)
            }
            other => return Err(MsgError::UnexpectedCmd(other)),
        })
    }
}

// ---- attributes -> domain -------------------------------------------------------------

fn v6_of(af: u16) -> Result<bool, MsgError> {
    match af {
        AF_INET => Ok(false),
        AF_INET6 => Ok(true),
        other => Err(MsgError::UnknownAf(other)),
    }
}

fn ip_of(v6: bool, b: &[u8; ADDR_LEN]) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::from(*b))
    } else {
        IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
    }
}

fn decode_svc_key(attrs: &[SvcAttr]) -> Result<SvcKey, MsgError> {
    let mut af = None;
    let (mut proto, mut addr, mut port, mut mark) = (None, None, None, None);
    for a in attrs {
        match a {
            SvcAttr::Af(v) => af = Some(*v),
            SvcAttr::Protocol(v) => proto = Some(*v),
            SvcAttr::Addr(v) => addr = Some(v),
            SvcAttr::Port(v) => port = Some(*v),
            SvcAttr::Fwmark(v) => mark = Some(*v),
            _ => {}
        }
    }
    let v6 = v6_of(af.ok_or(MsgError::Missing("service AF"))?)?;
    if let Some(mark) = mark {
        return Ok(SvcKey::Fwmark { v6, mark });
    }
    let proto = match proto.ok_or(MsgError::Missing("service PROTOCOL"))? {
        IPPROTO_TCP => Protocol::Tcp,
        IPPROTO_UDP => Protocol::Udp,
        IPPROTO_SCTP => Protocol::Sctp,
        other => return Err(MsgError::UnknownProtocol(other)),
    };
    let addr = ip_of(v6, addr.ok_or(MsgError::Missing("service ADDR"))?);
    let port = port.ok_or(MsgError::Missing("service PORT"))?;
    Ok(SvcKey::Inet { proto, addr, port })
}

fn decode_svc_spec(attrs: &[SvcAttr], v6: bool) -> Result<SvcSpec, MsgError> {
    let (mut sched, mut flags, mut timeout, mut mask) = (None, None, None, None);
    for a in attrs {
        match a {
            SvcAttr::SchedName(s) => sched = Some(s.clone()),
            SvcAttr::Flags { flags: f, .. } => flags = Some(*f),
            SvcAttr::Timeout(t) => timeout = Some(*t),
            SvcAttr::Netmask(m) => mask = Some(*m),
            _ => {}
        }
    }
    let sched = sched.ok_or(MsgError::Missing("service SCHED_NAME"))?;
    let flags = flags.ok_or(MsgError::Missing("service FLAGS"))?;
    let persistence = if flags & SVC_F_PERSISTENT != 0 {
        let timeout = timeout.ok_or(MsgError::Missing("service TIMEOUT"))?;
        let mask = mask.ok_or(MsgError::Missing("service NETMASK"))?;
        let prefix = if v6 {
            let p = u32::from_ne_bytes(mask);
            u8::try_from(p)
                .ok()
                .filter(|p| *p <= 128)
                .ok_or(MsgError::BadPrefix(p))?
        } else {
            // Leading ones; a mask with holes (that no tool of ours writes) reads as
            // its leading part and is rewritten by the next sync.
            u32::from_be_bytes(mask).leading_ones() as u8
        };
        Some(Persistence { timeout, prefix })
    } else {
        None
    };
    Ok(SvcSpec {
        sched,
        persistence,
        ops: flags & SVC_F_ONEPACKET != 0,
        sched_flags: flags & SCHED_FLAGS,
    })
}

fn decode_dest_key(attrs: &[DestAttr], svc_v6: bool) -> Result<DestKey, MsgError> {
    let (mut addr, mut port, mut af) = (None, None, None);
    for a in attrs {
        match a {
            DestAttr::Addr(v) => addr = Some(v),
            DestAttr::Port(v) => port = Some(*v),
            DestAttr::AddrFamily(v) => af = Some(*v),
            _ => {}
        }
    }
    let v6 = match af {
        Some(af) => v6_of(af)?,
        None => svc_v6,
    };
    Ok(DestKey {
        addr: ip_of(v6, addr.ok_or(MsgError::Missing("destination ADDR"))?),
        port: port.ok_or(MsgError::Missing("destination PORT"))?,
    })
}

fn decode_dest_spec(attrs: &[DestAttr]) -> Result<DestSpec, MsgError> {
    let (mut fwd, mut weight, mut u_thresh, mut l_thresh) = (None, None, 0, 0);
    for a in attrs {
        match a {
            DestAttr::FwdMethod(v) => fwd = Some(*v),
            DestAttr::Weight(v) => weight = Some(*v),
            DestAttr::UThresh(v) => u_thresh = *v,
            DestAttr::LThresh(v) => l_thresh = *v,
            _ => {}
        }
    }
    let fwd = match fwd.ok_or(MsgError::Missing("destination FWD_METHOD"))? & FWD_MASK {
        FWD_MASQ => Forwarding::Nat,
        FWD_TUNNEL => Forwarding::Tun,
        FWD_DROUTE => Forwarding::Dr,
        other => return Err(MsgError::UnknownFwd(other)),
    };
    Ok(DestSpec {
        fwd,
        weight: weight.ok_or(MsgError::Missing("destination WEIGHT"))?,
        u_thresh,
        l_thresh,
    })
}

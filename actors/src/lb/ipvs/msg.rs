//! IPVS generic-netlink messages, pure (bytes in, bytes out, no sockets): the family's
//! commands and attribute sets as types that emit and parse themselves. The mapping to
//! table entries (`Op` -> request, dump reply -> entry) is in [`table`].
//!
//! [`IpvsMsg`] is the genl payload (everything after the `genlmsghdr`); it implements
//! netlink's [`Emitable`], [`GenlFamily`] and [`ParseableParametrized`] so that
//! `GenlMessage<IpvsMsg>` frames it. Layouts follow `include/uapi/linux/ip_vs.h`; integers
//! are host order except ports and IPv4 netmasks.

use netlink_packet_core::{
    parse_u16, parse_u16_be, parse_u32, DecodeError, DefaultNla, Emitable, Nla, NlaBuffer, NlasIterator,
    Parseable, ParseableParametrized,
};
use netlink_packet_generic::{GenlFamily, GenlHeader};

/// The generic-netlink family name the kernel registers for IPVS.
pub const FAMILY_NAME: &str = "IPVS";
/// `IPVS_GENL_VERSION`.
pub const VERSION: u8 = 1;

const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;

const IPPROTO_TCP: u16 = 6;
const IPPROTO_UDP: u16 = 17;
const IPPROTO_SCTP: u16 = 132;

/// `IPVS_CMD_ATTR_*`: the top level of a request or reply.
const CMD_ATTR_SERVICE: u16 = 1;
const CMD_ATTR_DEST: u16 = 2;

/// `IPVS_SVC_ATTR_*`.
const SVC_ATTR_AF: u16 = 1;
const SVC_ATTR_PROTOCOL: u16 = 2;
const SVC_ATTR_ADDR: u16 = 3;
const SVC_ATTR_PORT: u16 = 4;
const SVC_ATTR_FWMARK: u16 = 5;
const SVC_ATTR_SCHED_NAME: u16 = 6;
const SVC_ATTR_FLAGS: u16 = 7;
const SVC_ATTR_TIMEOUT: u16 = 8;
const SVC_ATTR_NETMASK: u16 = 9;
const SVC_ATTR_PE_NAME: u16 = 11;

/// `IPVS_DEST_ATTR_*`.
const DEST_ATTR_ADDR: u16 = 1;
const DEST_ATTR_PORT: u16 = 2;
const DEST_ATTR_FWD_METHOD: u16 = 3;
const DEST_ATTR_WEIGHT: u16 = 4;
const DEST_ATTR_U_THRESH: u16 = 5;
const DEST_ATTR_L_THRESH: u16 = 6;
const DEST_ATTR_ACTIVE_CONNS: u16 = 7;
const DEST_ATTR_INACT_CONNS: u16 = 8;
const DEST_ATTR_PERSIST_CONNS: u16 = 9;
const DEST_ATTR_ADDR_FAMILY: u16 = 11;

/// `IP_VS_SVC_F_*` service flags.
pub const SVC_F_PERSISTENT: u32 = 0x1;
/// Set by the kernel on every service it holds; never sent, ignored when read.
pub const SVC_F_HASHED: u32 = 0x2;
pub const SVC_F_ONEPACKET: u32 = 0x4;

/// `IP_VS_CONN_F_*` forwarding methods (the low bits of a destination's conn flags).
const FWD_MASQ: u32 = 0;
const FWD_TUNNEL: u32 = 2;
const FWD_DROUTE: u32 = 3;
const FWD_MASK: u32 = 7;

/// `union nf_inet_addr`: every IPVS address attribute is this long.
const ADDR_LEN: usize = 16;

/// IPVS generic-netlink commands (`IPVS_CMD_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Cmd {
    NewService,
    SetService,
    DelService,
    GetService,
    NewDest,
    SetDest,
    DelDest,
    GetDest,
    NewDaemon,
    DelDaemon,
    GetDaemon,
    GetInfo,
    Flush,
    /// Any other command number (daemon, config, info replies...).
    Other(u8),
}

impl From<Cmd> for u8 {
    fn from(c: Cmd) -> u8 {
        match c {
            Cmd::NewService => 1,
            Cmd::SetService => 2,
            Cmd::DelService => 3,
            Cmd::GetService => 4,
            Cmd::NewDest => 5,
            Cmd::SetDest => 6,
            Cmd::DelDest => 7,
            Cmd::GetDest => 8,
            Cmd::NewDaemon => 9,
            Cmd::DelDaemon => 10,
            Cmd::GetDaemon => 11,
            Cmd::GetInfo => 15,
            Cmd::Flush => 17,
            Cmd::Other(n) => n,
        }
    }
}

impl From<u8> for Cmd {
    fn from(n: u8) -> Cmd {
        match n {
            1 => Cmd::NewService,
            2 => Cmd::SetService,
            3 => Cmd::DelService,
            4 => Cmd::GetService,
            5 => Cmd::NewDest,
            6 => Cmd::SetDest,
            7 => Cmd::DelDest,
            8 => Cmd::GetDest,
            9 => Cmd::NewDaemon,
            10 => Cmd::DelDaemon,
            11 => Cmd::GetDaemon,
            15 => Cmd::GetInfo,
            17 => Cmd::Flush,
            n => Cmd::Other(n),
        }
    }
}

impl Cmd {
    /// Commands whose attributes are the SERVICE / DEST nests (others, such as the info
    /// reply, reuse the same attribute numbers for other things).
    fn has_svc_dest_attrs(self) -> bool {
        matches!(
            self,
            Cmd::NewService
                | Cmd::SetService
                | Cmd::DelService
                | Cmd::GetService
                | Cmd::NewDest
                | Cmd::SetDest
                | Cmd::DelDest
                | Cmd::GetDest
                | Cmd::NewDaemon
                | Cmd::DelDaemon
                | Cmd::GetDaemon
        )
    }
}

/// What went wrong turning IPVS bytes into table entries.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MsgError {
    #[error("malformed IPVS message: {0}")]
    Malformed(String),
    #[error("IPVS message without {0}")]
    Missing(&'static str),
    #[error("IPVS entry with unknown address family {0}")]
    UnknownAf(u16),
    #[error("IPVS service with unsupported protocol {0} (only TCP, UDP, SCTP)")]
    UnknownProtocol(u16),
    #[error("IPVS destination with unsupported forwarding method {0} (only NAT, TUN, DR)")]
    UnknownFwd(u32),
    #[error("IPVS IPv6 service with netmask {0} (prefix length must be at most 128)")]
    BadPrefix(u32),
    #[error("IPVS command {0:?} is not a service or destination change")]
    UnexpectedCmd(Cmd),
}

impl From<DecodeError> for MsgError {
    fn from(e: DecodeError) -> Self {
        MsgError::Malformed(e.to_string())
    }
}

/// One attribute of the SERVICE nest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SvcAttr {
    Af(u16),
    /// IP protocol number.
    Protocol(u16),
    /// Always 16 bytes on the wire; IPv4 in the first four.
    Addr([u8; ADDR_LEN]),
    /// Host value; big-endian on the wire.
    Port(u16),
    Fwmark(u32),
    SchedName(String),
    /// `struct ip_vs_flags`: the kernel changes the bits in `mask` to those of `flags`.
    Flags {
        flags: u32,
        mask: u32,
    },
    /// Persistence timeout, seconds.
    Timeout(u32),
    /// The bytes as the kernel keeps them (`__be32`): for IPv4 the mask in network order
    /// (`ff ff ff 00` for /24), for IPv6 the prefix length as a host-order u32.
    Netmask([u8; 4]),
    PeName(String),
    /// Statistics and anything newer: kept, not interpreted.
    Other(DefaultNla),
}

/// One attribute of the DEST nest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DestAttr {
    /// Always 16 bytes on the wire; IPv4 in the first four.
    Addr([u8; ADDR_LEN]),
    /// Host value; big-endian on the wire.
    Port(u16),
    /// `IP_VS_CONN_F_MASQ` 0, `TUNNEL` 2, `DROUTE` 3.
    FwdMethod(u32),
    Weight(u32),
    UThresh(u32),
    LThresh(u32),
    ActiveConns(u32),
    InactConns(u32),
    PersistConns(u32),
    AddrFamily(u16),
    /// Statistics, tunnel settings and anything newer: kept, not interpreted.
    Other(DefaultNla),
}

/// A top-level attribute.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CmdAttr {
    Service(Vec<SvcAttr>),
    Dest(Vec<DestAttr>),
    Daemon(Vec<DaemonAttr>),
    Other(DefaultNla),
}

/// An IPVS genl payload: the command (carried in the genl header) and its attributes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpvsMsg {
    pub cmd: Cmd,
    pub attrs: Vec<CmdAttr>,
}

// ---- emitting -------------------------------------------------------------------------

fn put_str(buf: &mut [u8], s: &str) {
    buf[..s.len()].copy_from_slice(s.as_bytes());
    buf[s.len()] = 0;
}

impl Nla for SvcAttr {
    fn value_len(&self) -> usize {
        match self {
            SvcAttr::Af(_) | SvcAttr::Protocol(_) | SvcAttr::Port(_) => 2,
            SvcAttr::Fwmark(_) | SvcAttr::Timeout(_) | SvcAttr::Netmask(_) => 4,
            SvcAttr::Addr(_) => ADDR_LEN,
            SvcAttr::SchedName(s) | SvcAttr::PeName(s) => s.len() + 1,
            SvcAttr::Flags { .. } => 8,
            SvcAttr::Other(n) => n.value_len(),
        }
    }

    fn kind(&self) -> u16 {
        match self {
            SvcAttr::Af(_) => SVC_ATTR_AF,
            SvcAttr::Protocol(_) => SVC_ATTR_PROTOCOL,
            SvcAttr::Addr(_) => SVC_ATTR_ADDR,
            SvcAttr::Port(_) => SVC_ATTR_PORT,
            SvcAttr::Fwmark(_) => SVC_ATTR_FWMARK,
            SvcAttr::SchedName(_) => SVC_ATTR_SCHED_NAME,
            SvcAttr::Flags { .. } => SVC_ATTR_FLAGS,
            SvcAttr::Timeout(_) => SVC_ATTR_TIMEOUT,
            SvcAttr::Netmask(_) => SVC_ATTR_NETMASK,
            SvcAttr::PeName(_) => SVC_ATTR_PE_NAME,
            SvcAttr::Other(n) => n.kind(),
        }
    }

    fn emit_value(&self, buf: &mut [u8]) {
        match self {
            SvcAttr::Af(v) | SvcAttr::Protocol(v) => buf[..2].copy_from_slice(&v.to_ne_bytes()),
            SvcAttr::Port(p) => buf[..2].copy_from_slice(&p.to_be_bytes()),
            SvcAttr::Fwmark(v) | SvcAttr::Timeout(v) => buf[..4].copy_from_slice(&v.to_ne_bytes()),
            SvcAttr::Netmask(m) => buf[..4].copy_from_slice(m),
            SvcAttr::Addr(a) => buf[..ADDR_LEN].copy_from_slice(a),
            SvcAttr::SchedName(s) | SvcAttr::PeName(s) => put_str(buf, s),
            SvcAttr::Flags { flags, mask } => {
                buf[..4].copy_from_slice(&flags.to_ne_bytes());
                buf[4..8].copy_from_slice(&mask.to_ne_bytes());
            }
            SvcAttr::Other(n) => n.emit_value(buf),
        }
    }
}

impl Nla for DestAttr {
    fn value_len(&self) -> usize {
        match self {
            DestAttr::Addr(_) => ADDR_LEN,
            DestAttr::Port(_) | DestAttr::AddrFamily(_) => 2,
            DestAttr::FwdMethod(_)
            | DestAttr::Weight(_)
            | DestAttr::UThresh(_)
            | DestAttr::LThresh(_)
            | DestAttr::ActiveConns(_)
            | DestAttr::InactConns(_)
            | DestAttr::PersistConns(_) => 4,
            DestAttr::Other(n) => n.value_len(),
        }
    }

    fn kind(&self) -> u16 {
        match self {
            DestAttr::Addr(_) => DEST_ATTR_ADDR,
            DestAttr::Port(_) => DEST_ATTR_PORT,
            DestAttr::FwdMethod(_) => DEST_ATTR_FWD_METHOD,
            DestAttr::Weight(_) => DEST_ATTR_WEIGHT,
            DestAttr::UThresh(_) => DEST_ATTR_U_THRESH,
            DestAttr::LThresh(_) => DEST_ATTR_L_THRESH,
            DestAttr::ActiveConns(_) => DEST_ATTR_ACTIVE_CONNS,
            DestAttr::InactConns(_) => DEST_ATTR_INACT_CONNS,
            DestAttr::PersistConns(_) => DEST_ATTR_PERSIST_CONNS,
            DestAttr::AddrFamily(_) => DEST_ATTR_ADDR_FAMILY,
            DestAttr::Other(n) => n.kind(),
        }
    }

    fn emit_value(&self, buf: &mut [u8]) {
        match self {
            DestAttr::Addr(a) => buf[..ADDR_LEN].copy_from_slice(a),
            DestAttr::Port(p) => buf[..2].copy_from_slice(&p.to_be_bytes()),
            DestAttr::AddrFamily(v) => buf[..2].copy_from_slice(&v.to_ne_bytes()),
            DestAttr::FwdMethod(v)
            | DestAttr::Weight(v)
            | DestAttr::UThresh(v)
            | DestAttr::LThresh(v)
            | DestAttr::ActiveConns(v)
            | DestAttr::InactConns(v)
            | DestAttr::PersistConns(v) => buf[..4].copy_from_slice(&v.to_ne_bytes()),
            DestAttr::Other(n) => n.emit_value(buf),
        }
    }
}

impl Nla for CmdAttr {
    fn value_len(&self) -> usize {
        match self {
            CmdAttr::Service(a) => a.as_slice().buffer_len(),
            CmdAttr::Dest(a) => a.as_slice().buffer_len(),
            CmdAttr::Daemon(a) => a.as_slice().buffer_len(),
            CmdAttr::Other(n) => n.value_len(),
        }
    }

    /// Nests go out without `NLA_F_NESTED`, as the kernel's own replies and ipvsadm do.
    fn kind(&self) -> u16 {
        match self {
            CmdAttr::Service(_) => CMD_ATTR_SERVICE,
            CmdAttr::Dest(_) => CMD_ATTR_DEST,
            CmdAttr::Daemon(_) => daemon::CMD_ATTR_DAEMON,
            CmdAttr::Other(n) => n.kind(),
        }
    }

    fn emit_value(&self, buf: &mut [u8]) {
        match self {
            CmdAttr::Service(a) => a.as_slice().emit(buf),
            CmdAttr::Dest(a) => a.as_slice().emit(buf),
            CmdAttr::Daemon(a) => a.as_slice().emit(buf),
            CmdAttr::Other(n) => n.emit_value(buf),
        }
    }
}

impl Emitable for IpvsMsg {
    fn buffer_len(&self) -> usize {
        self.attrs.as_slice().buffer_len()
    }

    fn emit(&self, buf: &mut [u8]) {
        self.attrs.as_slice().emit(buf)
    }
}

impl GenlFamily for IpvsMsg {
    fn family_name() -> &'static str {
        FAMILY_NAME
    }

    fn command(&self) -> u8 {
        self.cmd.into()
    }

    fn version(&self) -> u8 {
        VERSION
    }
}

// ---- parsing --------------------------------------------------------------------------

fn parse_str(v: &[u8]) -> Result<String, DecodeError> {
    let end = v.iter().position(|&b| b == 0).unwrap_or(v.len());
    String::from_utf8(v[..end].to_vec()).map_err(DecodeError::from)
}

/// Up to 16 bytes, zero-padded (the kernel always sends 16).
fn parse_addr(v: &[u8]) -> Result<[u8; ADDR_LEN], DecodeError> {
    if v.len() > ADDR_LEN {
        return Err(DecodeError::from(format!(
            "address attribute of {} bytes",
            v.len()
        )));
    }
    let mut a = [0u8; ADDR_LEN];
    a[..v.len()].copy_from_slice(v);
    Ok(a)
}

fn parse_4(v: &[u8]) -> Result<[u8; 4], DecodeError> {
    v.try_into().map_err(|_| DecodeError::invalid_number(4, v.len()))
}

fn nlas<'a, T>(buf: &'a [u8]) -> Result<Vec<T>, DecodeError>
where
    T: Parseable<NlaBuffer<&'a [u8]>>,
{
    NlasIterator::new(buf)
        .map(|nla| nla.and_then(|nla| T::parse(&nla)))
        .collect()
}

impl<'a, T: AsRef<[u8]> + ?Sized> Parseable<NlaBuffer<&'a T>> for SvcAttr {
    fn parse(buf: &NlaBuffer<&'a T>) -> Result<Self, DecodeError> {
        let v = buf.value();
        Ok(match buf.kind() {
            SVC_ATTR_AF => SvcAttr::Af(parse_u16(v)?),
            SVC_ATTR_PROTOCOL => SvcAttr::Protocol(parse_u16(v)?),
            SVC_ATTR_ADDR => SvcAttr::Addr(parse_addr(v)?),
            SVC_ATTR_PORT => SvcAttr::Port(parse_u16_be(v)?),
            SVC_ATTR_FWMARK => SvcAttr::Fwmark(parse_u32(v)?),
            SVC_ATTR_SCHED_NAME => SvcAttr::SchedName(parse_str(v)?),
            SVC_ATTR_FLAGS => {
                if v.len() != 8 {
                    return Err(DecodeError::invalid_number(8, v.len()));
                }
                SvcAttr::Flags {
                    flags: parse_u32(&v[..4])?,
                    mask: parse_u32(&v[4..])?,
                }
            }
            SVC_ATTR_TIMEOUT => SvcAttr::Timeout(parse_u32(v)?),
            SVC_ATTR_NETMASK => SvcAttr::Netmask(parse_4(v)?),
            SVC_ATTR_PE_NAME => SvcAttr::PeName(parse_str(v)?),
            _ => SvcAttr::Other(DefaultNla::parse(buf)?),
        })
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Parseable<NlaBuffer<&'a T>> for DestAttr {
    fn parse(buf: &NlaBuffer<&'a T>) -> Result<Self, DecodeError> {
        let v = buf.value();
        Ok(match buf.kind() {
            DEST_ATTR_ADDR => DestAttr::Addr(parse_addr(v)?),
            DEST_ATTR_PORT => DestAttr::Port(parse_u16_be(v)?),
            DEST_ATTR_FWD_METHOD => DestAttr::FwdMethod(parse_u32(v)?),
            DEST_ATTR_WEIGHT => DestAttr::Weight(parse_u32(v)?),
            DEST_ATTR_U_THRESH => DestAttr::UThresh(parse_u32(v)?),
            DEST_ATTR_L_THRESH => DestAttr::LThresh(parse_u32(v)?),
            DEST_ATTR_ACTIVE_CONNS => DestAttr::ActiveConns(parse_u32(v)?),
            DEST_ATTR_INACT_CONNS => DestAttr::InactConns(parse_u32(v)?),
            DEST_ATTR_PERSIST_CONNS => DestAttr::PersistConns(parse_u32(v)?),
            DEST_ATTR_ADDR_FAMILY => DestAttr::AddrFamily(parse_u16(v)?),
            _ => DestAttr::Other(DefaultNla::parse(buf)?),
        })
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Parseable<NlaBuffer<&'a T>> for CmdAttr {
    fn parse(buf: &NlaBuffer<&'a T>) -> Result<Self, DecodeError> {
        Ok(match buf.kind() {
            CMD_ATTR_SERVICE => CmdAttr::Service(nlas(buf.value())?),
            CMD_ATTR_DEST => CmdAttr::Dest(nlas(buf.value())?),
            daemon::CMD_ATTR_DAEMON => CmdAttr::Daemon(nlas(buf.value())?),
            _ => CmdAttr::Other(DefaultNla::parse(buf)?),
        })
    }
}

impl IpvsMsg {
    /// Parses the attributes that follow the genl header of a message with command `cmd`.
    pub fn parse(cmd: Cmd, buf: &[u8]) -> Result<IpvsMsg, DecodeError> {
        let attrs = if cmd.has_svc_dest_attrs() {
            nlas(buf)?
        } else {
            nlas::<DefaultNla>(buf)?.into_iter().map(CmdAttr::Other).collect()
        };
        Ok(IpvsMsg { cmd, attrs })
    }
}

impl ParseableParametrized<[u8], GenlHeader> for IpvsMsg {
    fn parse_with_param(buf: &[u8], header: GenlHeader) -> Result<Self, DecodeError> {
        IpvsMsg::parse(header.cmd.into(), buf)
    }
}

pub mod daemon;
pub mod table;
pub use daemon::{DaemonAttr, DaemonSpec, Role};
#[cfg(all(test, target_endian = "little"))]
use table::{addr_bytes, netmask};
pub use table::{dest_full, dest_id, svc_full, svc_id};

#[cfg(all(test, target_endian = "little"))]
mod tests;

//! The IPVS connection-sync daemons' messages (pure): `IPVS_CMD_NEW_DAEMON` starts the
//! kernel's master or backup sync thread, `IPVS_CMD_DEL_DAEMON` stops one,
//! `IPVS_CMD_GET_DAEMON` lists those running. Layout from `include/uapi/linux/ip_vs.h`;
//! integers in host order but the IPv4 group (network order).

use super::{parse_str, Cmd, CmdAttr, IpvsMsg};
use netlink_packet_core::{
    parse_u16, parse_u32, parse_u8, DecodeError, DefaultNla, Nla, NlaBuffer, Parseable,
};
use std::net::IpAddr;

/// `IPVS_CMD_ATTR_DAEMON`.
pub const CMD_ATTR_DAEMON: u16 = 3;

/// `IPVS_DAEMON_ATTR_*`.
const STATE: u16 = 1;
const MCAST_IFN: u16 = 2;
const SYNC_ID: u16 = 3;
const SYNC_MAXLEN: u16 = 4;
const MCAST_GROUP: u16 = 5;
const MCAST_GROUP6: u16 = 6;
const MCAST_PORT: u16 = 7;
const MCAST_TTL: u16 = 8;

/// `IP_VS_STATE_MASTER` / `IP_VS_STATE_BACKUP`: which sync thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Master,
    Backup,
}

impl Role {
    fn number(self) -> u32 {
        match self {
            Role::Master => 1,
            Role::Backup => 2,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Role::Master => "master",
            Role::Backup => "backup",
        }
    }
}

/// One attribute of the DAEMON nest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DaemonAttr {
    State(u32),
    McastIfn(String),
    SyncId(u32),
    SyncMaxlen(u16),
    /// IPv4 group, network order.
    McastGroup([u8; 4]),
    McastGroup6([u8; 16]),
    McastPort(u16),
    McastTtl(u8),
    Other(DefaultNla),
}

impl Nla for DaemonAttr {
    fn value_len(&self) -> usize {
        match self {
            DaemonAttr::State(_) | DaemonAttr::SyncId(_) | DaemonAttr::McastGroup(_) => 4,
            // NUL-terminated.
            DaemonAttr::McastIfn(s) => s.len() + 1,
            DaemonAttr::SyncMaxlen(_) | DaemonAttr::McastPort(_) => 2,
            DaemonAttr::McastGroup6(_) => 16,
            DaemonAttr::McastTtl(_) => 1,
            DaemonAttr::Other(n) => n.value_len(),
        }
    }

    fn kind(&self) -> u16 {
        match self {
            DaemonAttr::State(_) => STATE,
            DaemonAttr::McastIfn(_) => MCAST_IFN,
            DaemonAttr::SyncId(_) => SYNC_ID,
            DaemonAttr::SyncMaxlen(_) => SYNC_MAXLEN,
            DaemonAttr::McastGroup(_) => MCAST_GROUP,
            DaemonAttr::McastGroup6(_) => MCAST_GROUP6,
            DaemonAttr::McastPort(_) => MCAST_PORT,
            DaemonAttr::McastTtl(_) => MCAST_TTL,
            DaemonAttr::Other(n) => n.kind(),
        }
    }

    fn emit_value(&self, buf: &mut [u8]) {
        match self {
            DaemonAttr::State(v) | DaemonAttr::SyncId(v) => buf[..4].copy_from_slice(&v.to_ne_bytes()),
            DaemonAttr::McastIfn(s) => super::put_str(buf, s),
            DaemonAttr::SyncMaxlen(v) | DaemonAttr::McastPort(v) => {
                buf[..2].copy_from_slice(&v.to_ne_bytes())
            }
            DaemonAttr::McastGroup(a) => buf[..4].copy_from_slice(a),
            DaemonAttr::McastGroup6(a) => buf[..16].copy_from_slice(a),
            DaemonAttr::McastTtl(v) => buf[0] = *v,
            DaemonAttr::Other(n) => n.emit_value(buf),
        }
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Parseable<NlaBuffer<&'a T>> for DaemonAttr {
    fn parse(buf: &NlaBuffer<&'a T>) -> Result<Self, DecodeError> {
        let v = buf.value();
        Ok(match buf.kind() {
            STATE => DaemonAttr::State(parse_u32(v)?),
            MCAST_IFN => DaemonAttr::McastIfn(parse_str(v)?),
            SYNC_ID => DaemonAttr::SyncId(parse_u32(v)?),
            SYNC_MAXLEN => DaemonAttr::SyncMaxlen(parse_u16(v)?),
            MCAST_GROUP => DaemonAttr::McastGroup(
                v.try_into()
                    .map_err(|_| DecodeError::invalid_number(4, v.len()))?,
            ),
            MCAST_GROUP6 => DaemonAttr::McastGroup6(
                v.try_into()
                    .map_err(|_| DecodeError::invalid_number(16, v.len()))?,
            ),
            MCAST_PORT => DaemonAttr::McastPort(parse_u16(v)?),
            MCAST_TTL => DaemonAttr::McastTtl(parse_u8(v)?),
            _ => DaemonAttr::Other(DefaultNla::parse(buf)?),
        })
    }
}

/// A sync daemon as it is started: the multicast interface and sync id, and what
/// `lvs_sync_daemon` may set beyond (None: the kernel's default).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct DaemonSpec {
    pub interface: String,
    pub sync_id: u8,
    pub maxlen: Option<u16>,
    pub port: Option<u16>,
    pub ttl: Option<u8>,
    pub group: Option<IpAddr>,
}

impl IpvsMsg {
    /// NEW_DAEMON: starts the `role` sync thread as `spec` says.
    pub fn new_daemon(role: Role, spec: &DaemonSpec) -> IpvsMsg {
        let mut attrs = vec![
            DaemonAttr::State(role.number()),
            DaemonAttr::McastIfn(spec.interface.clone()),
            DaemonAttr::SyncId(u32::from(spec.sync_id)),
        ];
        attrs.extend(spec.maxlen.map(DaemonAttr::SyncMaxlen));
        attrs.extend(spec.group.map(|g| match g {
            IpAddr::V4(a) => DaemonAttr::McastGroup(a.octets()),
            IpAddr::V6(a) => DaemonAttr::McastGroup6(a.octets()),
        }));
        attrs.extend(spec.port.map(DaemonAttr::McastPort));
        attrs.extend(spec.ttl.map(DaemonAttr::McastTtl));
        IpvsMsg {
            cmd: Cmd::NewDaemon,
            attrs: vec![CmdAttr::Daemon(attrs)],
        }
    }

    /// DEL_DAEMON: stops the `role` sync thread (ENOENT-like ESRCH if none runs).
    pub fn del_daemon(role: Role) -> IpvsMsg {
        IpvsMsg {
            cmd: Cmd::DelDaemon,
            attrs: vec![CmdAttr::Daemon(vec![DaemonAttr::State(role.number())])],
        }
    }

    /// GET_DAEMON (a dump): the sync threads running.
    pub fn get_daemons() -> IpvsMsg {
        IpvsMsg {
            cmd: Cmd::GetDaemon,
            attrs: Vec::new(),
        }
    }

    /// The sync thread a GET_DAEMON reply describes: its role, interface and sync id.
    pub fn daemon(&self) -> Option<(Role, String, u32)> {
        let attrs = self.attrs.iter().find_map(|a| match a {
            CmdAttr::Daemon(d) => Some(d),
            _ => None,
        })?;
        let (mut role, mut ifn, mut id) = (None, None, None);
        for a in attrs {
            match a {
                DaemonAttr::State(1) => role = Some(Role::Master),
                DaemonAttr::State(2) => role = Some(Role::Backup),
                DaemonAttr::McastIfn(s) => ifn = Some(s.clone()),
                DaemonAttr::SyncId(v) => id = Some(*v),
                _ => {}
            }
        }
        Some((role?, ifn?, id.unwrap_or(0)))
    }
}

#[cfg(all(test, target_endian = "little"))]
mod tests {
    use super::*;
    use netlink_packet_core::Emitable;

    /// NEW_DAEMON as `ipvsadm --start-daemon master --mcast-interface ens33 --syncid 5`
    /// sends it (ipvsadm 1.31: state, interface, sync id; then what was given).
    #[test]
    fn new_daemon_bytes_are_ipvsadm_s() {
        let spec = DaemonSpec {
            interface: "ens33".into(),
            sync_id: 5,
            ..DaemonSpec::default()
        };
        let msg = IpvsMsg::new_daemon(Role::Master, &spec);
        let mut buf = vec![0u8; msg.buffer_len()];
        msg.emit(&mut buf);
        #[rustfmt::skip]
        let want: [u8; 32] = [
            0x20, 0x00, 0x03, 0x00,                         // DAEMON nest, 32 bytes
            0x08, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00, //   STATE = MASTER
            0x0a, 0x00, 0x02, 0x00, b'e', b'n', b's', b'3', //   MCAST_IFN = "ens33\0" (padded)
            b'3', 0x00, 0x00, 0x00,
            0x08, 0x00, 0x03, 0x00, 0x05, 0x00, 0x00, 0x00, //   SYNC_ID = 5
        ];
        assert_eq!(buf, want);
        // The options, in the kernel's attribute order of the nest; read back.
        let full = DaemonSpec {
            maxlen: Some(1400),
            port: Some(8848),
            ttl: Some(2),
            group: Some("224.0.0.81".parse().unwrap()),
            ..spec
        };
        let msg = IpvsMsg::new_daemon(Role::Backup, &full);
        let mut buf = vec![0u8; msg.buffer_len()];
        msg.emit(&mut buf);
        let parsed = IpvsMsg::parse(Cmd::NewDaemon, &buf).unwrap();
        assert_eq!(parsed, msg);
        assert_eq!(parsed.daemon(), Some((Role::Backup, "ens33".into(), 5)));
        let CmdAttr::Daemon(attrs) = &parsed.attrs[0] else {
            panic!("{parsed:?}")
        };
        assert!(attrs.contains(&DaemonAttr::McastGroup([224, 0, 0, 81])));
        assert!(attrs.contains(&DaemonAttr::McastTtl(2)));
        // DEL_DAEMON: the state alone.
        let del = IpvsMsg::del_daemon(Role::Backup);
        let mut buf = vec![0u8; del.buffer_len()];
        del.emit(&mut buf);
        assert_eq!(
            buf,
            [0x0c, 0x00, 0x03, 0x00, 0x08, 0x00, 0x01, 0x00, 0x02, 0x00, 0x00, 0x00]
        );
    }
}

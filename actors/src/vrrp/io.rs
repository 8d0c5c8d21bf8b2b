//! The kernel side of a VRRP instance: the raw IP-protocol-112 socket, the interface
//! (index, MAC, primary address), VIPs through rtnetlink, and gratuitous ARP through an
//! AF_PACKET socket. Nothing here decides anything; [`super::actor`] drives it.

use super::packet::{IPPROTO_VRRP, MCAST_V4, TTL};
use futures::TryStreamExt;
use socket2::{Domain, InterfaceIndexOrAddress, Protocol, SockAddr, Socket, Type};
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use tokio::io::unix::AsyncFd;

/// What an instance needs to know about its interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Iface {
    pub name: String,
    pub index: u32,
    pub mac: [u8; 6],
    /// The first IPv4 address (source of adverts unless `unicast_src_ip`/`mcast_src_ip`).
    pub primary_v4: Option<Ipv4Addr>,
    pub up: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum IoError {
    #[error("no interface named {0:?}")]
    NoSuchInterface(String),
    #[error("interface {0} has no IPv4 address to send adverts from")]
    NoAddress(String),
    #[error("{what}: {source}")]
    Os {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("netlink: {0}")]
    Netlink(String),
}

fn os(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> IoError {
    let what = what.into();
    move |source| IoError::Os { what, source }
}

/// Looks the interface up (index, MAC, first IPv4 address, operational state).
pub fn iface(name: &str) -> Result<Iface, IoError> {
    let i = pnet_datalink::interfaces()
        .into_iter()
        .find(|i| i.name == name)
        .ok_or_else(|| IoError::NoSuchInterface(name.to_string()))?;
    let primary_v4 = i.ips.iter().find_map(|n| match n.ip() {
        IpAddr::V4(a) => Some(a),
        IpAddr::V6(_) => None,
    });
    Ok(Iface {
        name: i.name.clone(),
        index: i.index,
        mac: i.mac.map(|m| m.octets()).unwrap_or_default(),
        primary_v4,
        up: i.is_up() && i.is_running(),
    })
}

/// Raw VRRP sockets on one interface: one to receive (joined to 224.0.0.18 in multicast
/// mode; not bound to an address, which would filter by destination), one to send, bound
/// to the source address, with TTL 255 and TOS 0xc0 as keepalived sends.
pub struct VrrpSocket {
    rx: AsyncFd<Socket>,
    tx: Socket,
}

fn raw_socket(ifc: &Iface) -> Result<Socket, IoError> {
    let s = Socket::new(
        Domain::IPV4,
        Type::RAW,
        Some(Protocol::from(i32::from(IPPROTO_VRRP))),
    )
    .map_err(os("raw socket (needs CAP_NET_RAW)"))?;
    s.set_nonblocking(true).map_err(os("nonblocking"))?;
    s.bind_device(Some(ifc.name.as_bytes()))
        .map_err(os(format!("bind to {}", ifc.name)))?;
    Ok(s)
}

impl VrrpSocket {
    pub fn open(ifc: &Iface, src: Ipv4Addr, multicast: bool) -> Result<Arc<Self>, IoError> {
        let rx = raw_socket(ifc)?;
        let tx = raw_socket(ifc)?;
        tx.bind(&SockAddr::from(SocketAddr::new(IpAddr::V4(src), 0)))
            .map_err(os(format!("bind to {src}")))?;
        tx.set_ttl_v4(u32::from(TTL)).map_err(os("ttl"))?;
        tx.set_tos_v4(0xc0).map_err(os("tos"))?;
        if multicast {
            rx.join_multicast_v4_n(&MCAST_V4, &InterfaceIndexOrAddress::Index(ifc.index))
                .map_err(os(format!("join 224.0.0.18 on {}", ifc.name)))?;
            tx.set_multicast_if_v4(&src).map_err(os("multicast interface"))?;
            tx.set_multicast_ttl_v4(u32::from(TTL))
                .map_err(os("multicast ttl"))?;
            tx.set_multicast_loop_v4(false).map_err(os("multicast loop"))?;
        }
        // SAFETY: `Socket` owns its descriptor and always returns it from `as_raw_fd`; the
        // `AsyncFd` owns the `Socket`, so the descriptor stays open while registered.
        let rx = unsafe { AsyncFd::register(rx) }.map_err(|e| IoError::Os {
            what: "register socket".into(),
            source: std::io::Error::other(e.to_string()),
        })?;
        Ok(Arc::new(VrrpSocket { rx, tx }))
    }

    /// The next datagram (IPv4 header included).
    pub async fn recv(&self) -> std::io::Result<Vec<u8>> {
        let mut buf = vec![0u8; 65536];
        loop {
            let mut guard = self.rx.readable().await?;
            match guard.try_io(|s| (&mut s.get_ref()).read(&mut buf)) {
                Ok(Ok(n)) => {
                    buf.truncate(n);
                    return Ok(buf);
                }
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
    }

    pub fn send_to(&self, payload: &[u8], dst: Ipv4Addr) -> std::io::Result<()> {
        self.tx
            .send_to(payload, &SockAddr::from(SocketAddr::new(IpAddr::V4(dst), 0)))
            .map(|_| ())
    }
}

/// Sends gratuitous ARP frames on one interface.
pub struct GarpSender {
    tx: Box<dyn pnet_datalink::DataLinkSender>,
    mac: [u8; 6],
}

impl GarpSender {
    pub fn open(ifc: &Iface) -> Result<Self, IoError> {
        let i = pnet_datalink::interfaces()
            .into_iter()
            .find(|i| i.name == ifc.name)
            .ok_or_else(|| IoError::NoSuchInterface(ifc.name.clone()))?;
        let cfg = pnet_datalink::Config {
            read_timeout: Some(std::time::Duration::from_millis(1)),
            read_buffer_size: 2048,
            ..Default::default()
        };
        match pnet_datalink::channel(&i, cfg).map_err(os(format!("AF_PACKET on {}", ifc.name)))? {
            pnet_datalink::Channel::Ethernet(tx, _rx) => Ok(GarpSender { tx, mac: ifc.mac }),
            _ => Err(IoError::Netlink(format!(
                "{}: not an Ethernet interface",
                ifc.name
            ))),
        }
    }

    pub fn send(&mut self, vip: Ipv4Addr, count: u32) -> std::io::Result<()> {
        let f = super::garp::frame(self.mac, vip);
        for _ in 0..count {
            if let Some(r) = self.tx.send_to(&f, None) {
                r?;
            }
        }
        Ok(())
    }
}

/// Adds and removes VIPs (`ip addr add VIP/PREFIX dev IF label L`) over rtnetlink.
#[derive(Clone)]
pub struct Addresses {
    handle: rtnetlink::Handle,
}

impl Addresses {
    /// Opens a netlink connection; its driver runs as a task on the current runtime.
    pub fn open() -> Result<Self, IoError> {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(os("netlink socket"))?;
        tokio::spawn(conn);
        Ok(Addresses { handle })
    }

    pub async fn add(
        &self,
        index: u32,
        addr: IpAddr,
        prefix: u8,
        label: Option<&str>,
    ) -> Result<(), IoError> {
        let mut req = self.handle.address().add(index, addr, prefix).replace();
        if let Some(l) = label {
            req.message_mut()
                .attributes
                .push(rtnetlink::packet_route::address::AddressAttribute::Label(
                    l.to_string(),
                ));
        }
        req.execute().await.map_err(|e| IoError::Netlink(e.to_string()))
    }

    pub async fn del(&self, index: u32, addr: IpAddr, prefix: u8) -> Result<(), IoError> {
        let mut found = None;
        let mut addrs = self.handle.address().get().set_link_index_filter(index).execute();
        while let Some(msg) = addrs
            .try_next()
            .await
            .map_err(|e| IoError::Netlink(e.to_string()))?
        {
            let has = msg.attributes.iter().any(
                |a| matches!(a, rtnetlink::packet_route::address::AddressAttribute::Address(x) if *x == addr),
            );
            // Read the dump to its end (leaving it would orphan the rest of the reply).
            if has && msg.header.prefix_len == prefix && found.is_none() {
                found = Some(msg);
            }
        }
        match found {
            // Already gone (someone removed it, or we never added it): nothing to do.
            None => Ok(()),
            Some(msg) => self
                .handle
                .address()
                .del(msg)
                .execute()
                .await
                .map_err(|e| IoError::Netlink(e.to_string())),
        }
    }
}

/// Up/down of one interface, from rtnetlink link notifications (no polling). Yields
/// `true` when the link is up and running (carrier), `false` otherwise, on every change.
pub fn link_states(index: u32) -> Result<impl futures::Stream<Item = bool>, IoError> {
    use futures::StreamExt;
    use rtnetlink::packet_core::NetlinkPayload;
    use rtnetlink::packet_route::link::LinkFlags;
    use rtnetlink::packet_route::RouteNetlinkMessage;
    let (conn, _handle, messages) = rtnetlink::new_multicast_connection(&[rtnetlink::MulticastGroup::Link])
        .map_err(os("netlink link monitor"))?;
    tokio::spawn(conn);
    Ok(messages.filter_map(move |(msg, _)| async move {
        match msg.payload {
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(l)) if l.header.index == index => {
                let f = l.header.flags;
                Some(f.contains(LinkFlags::Up) && f.contains(LinkFlags::Running))
            }
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(l)) if l.header.index == index => {
                Some(false)
            }
            _ => None,
        }
    }))
}

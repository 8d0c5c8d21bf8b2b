//! The kernel side of a VRRP instance: the raw IP-protocol-112 socket, the interface
//! (index, MAC, primary address), VIPs through rtnetlink, and gratuitous ARP through an
//! AF_PACKET socket. Nothing here decides anything; [`super::actor`] drives it.

use super::packet::{IPPROTO_VRRP, MCAST_V4, MCAST_V6, TTL};
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
    /// The link-local IPv6 address (source of IPv6 adverts).
    pub link_local_v6: Option<std::net::Ipv6Addr>,
    pub up: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum IoError {
    #[error("no interface named {0:?}")]
    NoSuchInterface(String),
    #[error("interface {0} has no IPv4 address to send adverts from")]
    NoAddress(String),
    #[error("{what}: {source}")]
    Os { what: String, source: std::io::Error },
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
    let link_local_v6 = i.ips.iter().find_map(|n| match n.ip() {
        IpAddr::V6(a) if (a.segments()[0] & 0xffc0) == 0xfe80 => Some(a),
        _ => None,
    });
    Ok(Iface {
        name: i.name.clone(),
        index: i.index,
        mac: i.mac.map(|m| m.octets()).unwrap_or_default(),
        primary_v4,
        link_local_v6,
        up: i.is_up() && i.is_running(),
    })
}

/// One received VRRP message with what the IP layer said about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// TTL (IPv4) or hop limit (IPv6), when known.
    pub ttl: Option<u8>,
    /// The VRRP message (IPv4: after the IP header).
    pub payload: Vec<u8>,
}

/// Raw VRRP sockets on one interface: one to receive (joined to 224.0.0.18 / ff02::12 in
/// multicast mode; not bound to an address, which would filter by destination), one to
/// send, bound to the source address, with TTL/hop limit 255 (and TOS 0xc0 for IPv4, as
/// keepalived sends).
pub struct VrrpSocket {
    rx: AsyncFd<Socket>,
    tx: Socket,
    v6: bool,
    ifindex: u32,
}

fn raw_socket(ifc: &Iface, v6: bool) -> Result<Socket, IoError> {
    let domain = if v6 { Domain::IPV6 } else { Domain::IPV4 };
    let s = Socket::new(domain, Type::RAW, Some(Protocol::from(i32::from(IPPROTO_VRRP))))
        .map_err(os("raw socket (needs CAP_NET_RAW)"))?;
    s.set_nonblocking(true).map_err(os("nonblocking"))?;
    s.bind_device(Some(ifc.name.as_bytes()))
        .map_err(os(format!("bind to {}", ifc.name)))?;
    Ok(s)
}

fn setsockopt_int(s: &Socket, level: i32, name: i32, value: i32, what: &str) -> Result<(), IoError> {
    use std::os::fd::AsRawFd;
    // SAFETY: setsockopt with a pointer to a live i32 and its size.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            level,
            name,
            &value as *const i32 as *const libc::c_void,
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(os(what)(std::io::Error::last_os_error()));
    }
    Ok(())
}

impl VrrpSocket {
    pub fn open(ifc: &Iface, src: IpAddr, multicast: bool) -> Result<Arc<Self>, IoError> {
        let v6 = src.is_ipv6();
        let rx = raw_socket(ifc, v6)?;
        let tx = raw_socket(ifc, v6)?;
        match src {
            IpAddr::V4(src4) => {
                tx.bind(&SockAddr::from(SocketAddr::new(src, 0)))
                    .map_err(os(format!("bind to {src}")))?;
                tx.set_ttl_v4(u32::from(TTL)).map_err(os("ttl"))?;
                tx.set_tos_v4(0xc0).map_err(os("tos"))?;
                if multicast {
                    rx.join_multicast_v4_n(&MCAST_V4, &InterfaceIndexOrAddress::Index(ifc.index))
                        .map_err(os(format!("join 224.0.0.18 on {}", ifc.name)))?;
                    tx.set_multicast_if_v4(&src4).map_err(os("multicast interface"))?;
                    tx.set_multicast_ttl_v4(u32::from(TTL))
                        .map_err(os("multicast ttl"))?;
                    tx.set_multicast_loop_v4(false).map_err(os("multicast loop"))?;
                }
            }
            IpAddr::V6(src6) => {
                let sa = SockAddr::from(std::net::SocketAddrV6::new(src6, 0, 0, ifc.index));
                // A link-local address is unusable while duplicate address detection runs
                // (about a second after the link comes up): wait for it, up to 10 s.
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
                loop {
                    match tx.bind(&sa) {
                        Ok(()) => break,
                        Err(e)
                            if e.raw_os_error() == Some(libc::EADDRNOTAVAIL)
                                && std::time::Instant::now() < deadline =>
                        {
                            std::thread::sleep(std::time::Duration::from_millis(100));
                        }
                        Err(e) => return Err(os(format!("bind to {src6}"))(e)),
                    }
                }
                tx.set_unicast_hops_v6(u32::from(TTL)).map_err(os("hop limit"))?;
                setsockopt_int(
                    &rx,
                    libc::IPPROTO_IPV6,
                    libc::IPV6_RECVHOPLIMIT,
                    1,
                    "IPV6_RECVHOPLIMIT",
                )?;
                setsockopt_int(
                    &rx,
                    libc::IPPROTO_IPV6,
                    libc::IPV6_RECVPKTINFO,
                    1,
                    "IPV6_RECVPKTINFO",
                )?;
                if multicast {
                    rx.join_multicast_v6(&MCAST_V6, ifc.index)
                        .map_err(os(format!("join ff02::12 on {}", ifc.name)))?;
                    tx.set_multicast_if_v6(ifc.index)
                        .map_err(os("multicast interface"))?;
                    tx.set_multicast_hops_v6(u32::from(TTL))
                        .map_err(os("multicast hops"))?;
                    tx.set_multicast_loop_v6(false).map_err(os("multicast loop"))?;
                }
            }
        }
        // SAFETY: `Socket` owns its descriptor and always returns it from `as_raw_fd`; the
        // `AsyncFd` owns the `Socket`, so the descriptor stays open while registered.
        let rx = unsafe { AsyncFd::register(rx) }.map_err(|e| IoError::Os {
            what: "register socket".into(),
            source: std::io::Error::other(e.to_string()),
        })?;
        Ok(Arc::new(VrrpSocket {
            rx,
            tx,
            v6,
            ifindex: ifc.index,
        }))
    }

    /// The next VRRP message, or why an IPv4 datagram's header was refused.
    pub async fn recv(&self) -> std::io::Result<Result<Received, super::ipv4::Ipv4Error>> {
        let mut buf = vec![0u8; 65536];
        loop {
            let mut guard = self.rx.readable().await?;
            let r = if self.v6 {
                guard.try_io(|s| recv_v6(s.get_ref(), &mut buf))
            } else {
                guard.try_io(|s| (&mut s.get_ref()).read(&mut buf).map(|n| split_v4(&buf[..n])))
            };
            match r {
                Ok(Ok(rcv)) => return Ok(rcv),
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
    }

    pub fn send_to(&self, payload: &[u8], dst: IpAddr) -> std::io::Result<()> {
        let addr = match dst {
            IpAddr::V4(_) => SockAddr::from(SocketAddr::new(dst, 0)),
            IpAddr::V6(d) => SockAddr::from(std::net::SocketAddrV6::new(d, 0, 0, self.ifindex)),
        };
        self.tx.send_to(payload, &addr).map(|_| ())
    }
}

fn split_v4(d: &[u8]) -> Result<Received, super::ipv4::Ipv4Error> {
    let (h, payload) = super::ipv4::split(d)?;
    if h.protocol != IPPROTO_VRRP {
        return Err(super::ipv4::Ipv4Error::NotV4);
    }
    Ok(Received {
        src: IpAddr::V4(h.src),
        dst: IpAddr::V4(h.dst),
        ttl: Some(h.ttl),
        payload: payload.to_vec(),
    })
}

/// recvmsg on an IPv6 raw socket: the payload, the source (msg_name), the hop limit and
/// destination from the control messages.
fn recv_v6(s: &Socket, buf: &mut [u8]) -> std::io::Result<Result<Received, super::ipv4::Ipv4Error>> {
    use std::os::fd::AsRawFd;
    let mut name: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // u64 elements: control messages must be read from a cmsghdr-aligned buffer.
    let mut cbuf = [0u64; 32];
    // SAFETY: msghdr points at live buffers sized as declared; recvmsg fills them.
    let (n, msg) = unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_name = &mut name as *mut libc::sockaddr_in6 as *mut libc::c_void;
        msg.msg_namelen = std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr() as *mut libc::c_void;
        msg.msg_controllen = std::mem::size_of_val(&cbuf);
        let n = libc::recvmsg(s.as_raw_fd(), &mut msg, 0);
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        (n as usize, msg)
    };
    let mut ttl = None;
    let mut dst = IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED);
    // SAFETY: walking the control messages recvmsg wrote, with the libc macros.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            let data = libc::CMSG_DATA(c);
            if (*c).cmsg_level == libc::IPPROTO_IPV6 && (*c).cmsg_type == libc::IPV6_HOPLIMIT {
                let v = std::ptr::read_unaligned(data as *const i32);
                ttl = u8::try_from(v).ok();
            } else if (*c).cmsg_level == libc::IPPROTO_IPV6 && (*c).cmsg_type == libc::IPV6_PKTINFO {
                let info = std::ptr::read_unaligned(data as *const libc::in6_pktinfo);
                dst = IpAddr::V6(std::net::Ipv6Addr::from(info.ipi6_addr.s6_addr));
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Ok(Ok(Received {
        src: IpAddr::V6(std::net::Ipv6Addr::from(name.sin6_addr.s6_addr)),
        dst,
        ttl,
        payload: buf[..n].to_vec(),
    }))
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

    /// Gratuitous ARP (IPv4) or unsolicited neighbour advertisement (IPv6), `count` times.
    pub fn send(&mut self, vip: IpAddr, count: u32) -> std::io::Result<()> {
        let f = match vip {
            IpAddr::V4(v4) => super::garp::frame(self.mac, v4).to_vec(),
            IpAddr::V6(v6) => super::garp::na_frame(self.mac, v6),
        };
        // A packet socket keeps an error from a link that went down (ENETDOWN) and reports
        // it once, on the next send after the link is back: each frame gets a second try,
        // and one failure does not cancel the repeats. Err only when none went out.
        let mut last = None;
        let mut sent = 0;
        for _ in 0..count {
            for _attempt in 0..2 {
                match self.tx.send_to(&f, None) {
                    Some(Err(e)) => last = Some(e),
                    _ => {
                        sent += 1;
                        break;
                    }
                }
            }
        }
        match last {
            Some(e) if sent == 0 => Err(e),
            _ => Ok(()),
        }
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

    /// Routes and rules over the same connection.
    pub fn routing(&self) -> Routing {
        Routing {
            handle: self.handle.clone(),
        }
    }

    pub async fn add(&self, index: u32, v: &super::setup::VipSpec) -> Result<(), IoError> {
        use rtnetlink::packet_route::address::AddressAttribute;
        let mut req = self.handle.address().add(index, v.addr, v.prefix).replace();
        if v.addr.is_ipv6() {
            // A VIP moves between directors: no duplicate address detection delay.
            req.message_mut().attributes.push(AddressAttribute::Flags(
                rtnetlink::packet_route::address::AddressFlags::Nodad,
            ));
        }
        if let Some(l) = &v.label {
            req.message_mut()
                .attributes
                .push(AddressAttribute::Label(l.to_string()));
        }
        if let Some(s) = v.scope {
            req.message_mut().header.scope = s.into();
        }
        {
            // keepalived sends a broadcast address only when the line gives one (the
            // request builder adds one to every IPv4 address shorter than /31).
            let m = req.message_mut();
            m.attributes
                .retain(|a| !matches!(a, AddressAttribute::Broadcast(_)));
            if let Some(IpAddr::V4(b)) = v.brd {
                m.attributes.push(AddressAttribute::Broadcast(b));
            }
            if let Some(p) = v.peer {
                m.attributes
                    .retain(|a| !matches!(a, AddressAttribute::Address(_)));
                m.attributes.push(AddressAttribute::Address(p));
            }
            m.attributes.retain(|a| !matches!(a, AddressAttribute::Flags(_)));
            let mut flags = rtnetlink::packet_route::address::AddressFlags::empty();
            if v.addr.is_ipv6() {
                flags |= rtnetlink::packet_route::address::AddressFlags::Nodad;
            }
            for f in &v.flags {
                use rtnetlink::packet_route::address::AddressFlags as F;
                flags |= match f.as_str() {
                    "home" => F::Homeaddress,
                    "nodad" | "-nodad" => F::Nodad,
                    "mngtmpaddr" => F::Managetempaddr,
                    "noprefixroute" => F::Noprefixroute,
                    _ => F::Mcautojoin,
                };
            }
            if !flags.is_empty() {
                m.attributes.push(AddressAttribute::Flags(flags));
            }
            if let Some(p) = v.preferred_lft {
                let mut ci = rtnetlink::packet_route::address::CacheInfo::default();
                ci.ifa_preferred = p;
                ci.ifa_valid = u32::MAX;
                m.attributes.push(AddressAttribute::CacheInfo(ci));
            }
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

/// An interface's index by name (`if_nametoindex`).
pub fn index_of(name: &str) -> Option<u32> {
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: a NUL-terminated name that lives across the call.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (i != 0).then_some(i)
}

fn absent(e: &rtnetlink::Error) -> bool {
    matches!(e, rtnetlink::Error::NetlinkError(m)
        if m.raw_code() == -libc::ESRCH || m.raw_code() == -libc::ENOENT || m.raw_code() == -libc::EADDRNOTAVAIL)
}

/// Installs and removes routes and rules (`ip route replace` / `ip rule add`) over
/// rtnetlink: an instance's `virtual_routes`/`virtual_rules` and the `static_*` ones.
#[derive(Clone)]
pub struct Routing {
    handle: rtnetlink::Handle,
}

impl Routing {
    /// Opens a netlink connection; its driver runs as a task on the current runtime.
    pub fn open() -> Result<Self, IoError> {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(os("netlink socket"))?;
        tokio::spawn(conn);
        Ok(Routing { handle })
    }

    /// Adds a route beside any the kernel has for the same destination, as keepalived
    /// does (`NLM_F_CREATE` alone: never `REPLACE`, which would overwrite the connected
    /// or default route a `virtual_routes` line often shares its prefix with, nor `EXCL`,
    /// which would refuse it). The same route already there (left by an earlier run) is
    /// fine.
    pub async fn add_route(&self, r: &ha_config::model::Route) -> Result<(), IoError> {
        use futures::StreamExt;
        use netlink_packet_core::{NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_REQUEST};
        let m = super::routes::route_message(r, &index_of).map_err(IoError::Netlink)?;
        let mut req = NetlinkMessage::from(rtnetlink::packet_route::RouteNetlinkMessage::NewRoute(m));
        req.header.flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE;
        let mut handle = self.handle.clone();
        let mut replies = handle.request(req).map_err(|e| IoError::Netlink(e.to_string()))?;
        while let Some(reply) = replies.next().await {
            if let NetlinkPayload::Error(e) = reply.payload {
                if e.raw_code() == 0 || e.raw_code() == -libc::EEXIST {
                    return Ok(());
                }
                return Err(IoError::Netlink(rtnetlink::Error::NetlinkError(e).to_string()));
            }
        }
        Ok(())
    }

    /// Removes a route (one already gone is fine).
    pub async fn del_route(&self, r: &ha_config::model::Route) -> Result<(), IoError> {
        let m = super::routes::route_message(r, &index_of).map_err(IoError::Netlink)?;
        match self.handle.route().del(m).execute().await {
            Err(e) if !absent(&e) => Err(IoError::Netlink(e.to_string())),
            _ => Ok(()),
        }
    }

    /// Adds a rule, once: a copy left by an earlier run is removed first (rules have no
    /// replace).
    pub async fn add_rule(&self, r: &ha_config::model::Rule) -> Result<(), IoError> {
        self.del_rule(r).await?;
        let mut req = self.handle.rule().add();
        *req.message_mut() = super::routes::rule_message(r);
        req.execute().await.map_err(|e| IoError::Netlink(e.to_string()))
    }

    /// Removes a rule (one already gone is fine).
    pub async fn del_rule(&self, r: &ha_config::model::Rule) -> Result<(), IoError> {
        match self
            .handle
            .rule()
            .del(super::routes::rule_message(r))
            .execute()
            .await
        {
            Err(e) if !absent(&e) => Err(IoError::Netlink(e.to_string())),
            _ => Ok(()),
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

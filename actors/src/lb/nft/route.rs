//! Which device leads to a real server (`ip route get ADDR`), over rtnetlink. A direct-
//! routing flow leaves on that device, addressed to the server's MAC.

use super::super::kernel::KernelError;
use futures::TryStreamExt;
use rtnetlink::packet_route::link::LinkAttribute;
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute};
use rtnetlink::RouteMessageBuilder;
use std::net::IpAddr;

/// The egress device for `addr`, and whether the route says the server is on-link
/// (no gateway: DR needs it to be).
pub fn egress_device(addr: IpAddr) -> Result<(String, bool), KernelError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| KernelError::other(format!("route lookup runtime: {e}")))?;
    rt.block_on(lookup(addr))
}

async fn lookup(addr: IpAddr) -> Result<(String, bool), KernelError> {
    let err = |what: &str, e: rtnetlink::Error| {
        KernelError::other(format!("route to real server {addr}: {what}: {e}"))
    };
    let (conn, handle, _) =
        rtnetlink::new_connection().map_err(|e| KernelError::other(format!("rtnetlink socket: {e}")))?;
    let task = tokio::spawn(conn);
    let prefix = if addr.is_ipv6() { 128 } else { 32 };
    let msg = RouteMessageBuilder::<IpAddr>::new()
        .destination_prefix(addr, prefix)
        .map_err(|e| KernelError::other(format!("route to {addr}: {e}")))?
        .build();
    let result = async {
        let route = handle
            .route()
            .get(msg)
            .execute()
            .try_next()
            .await
            .map_err(|e| err("no route", e))?
            .ok_or_else(|| KernelError::other(format!("no route to real server {addr}")))?;
        let mut oif = None;
        let mut gateway = false;
        for a in &route.attributes {
            match a {
                RouteAttribute::Oif(i) => oif = Some(*i),
                RouteAttribute::Gateway(RouteAddress::Inet(_) | RouteAddress::Inet6(_)) => gateway = true,
                _ => {}
            }
        }
        let index = oif.ok_or_else(|| KernelError::other(format!("route to {addr} names no device")))?;
        let link = handle
            .link()
            .get()
            .match_index(index)
            .execute()
            .try_next()
            .await
            .map_err(|e| err("device", e))?
            .ok_or_else(|| KernelError::other(format!("device {index} for {addr} vanished")))?;
        let name = link
            .attributes
            .iter()
            .find_map(|a| match a {
                LinkAttribute::IfName(n) => Some(n.clone()),
                _ => None,
            })
            .ok_or_else(|| KernelError::other(format!("device {index} has no name")))?;
        Ok((name, !gateway))
    }
    .await;
    task.abort();
    result
}

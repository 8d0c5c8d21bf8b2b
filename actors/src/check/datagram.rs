//! The datagram probes: UDP_CHECK, DNS_CHECK and PING_CHECK, one attempt each bounded by
//! the checker's `connect_timeout`, with keepalived 2.2.7's meaning.
//!
//! UDP_CHECK sends its payload (or keepalived's 32 bytes) on a connected socket that
//! receives ICMP errors (`IP_RECVERR`): an ICMP error (port or host unreachable) is down;
//! an answer is up (with `require_reply PATTERN`, if it matches and its length is within
//! `min_reply_length`..`max_reply_length`); silence until the timeout is up, unless
//! `require_reply` is set.
//!
//! DNS_CHECK sends its query the same way (see [`dns`]).
//!
//! PING_CHECK sends an ICMP (ICMPv6) echo request and is up on the echo reply: through an
//! unprivileged ping socket where `net.ipv4.ping_group_range` admits us (keepalived's
//! way), else a raw socket (root), which sees every echo reply from the server and keeps
//! those with its identifier and sequence.

use super::icmp::{self, Answer};
use super::probe::{secs, Target};
use super::schedule::ProbeResult;
use ha_config::model::{DnsCheck, UdpCheck};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

/// keepalived's UDP_CHECK payload length when none is configured.
const UDP_DEFAULT_PAYLOAD: usize = 32;

fn domain(a: &SocketAddr) -> Domain {
    if a.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    }
}

/// What an ICMP error on a socket means, for the reason.
fn icmp_error(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::ECONNREFUSED) => "ICMP port unreachable".into(),
        Some(libc::EHOSTUNREACH) => "ICMP host unreachable".into(),
        Some(libc::ENETUNREACH) => "ICMP network unreachable".into(),
        _ => e.to_string(),
    }
}

/// Asks for ICMP errors on the socket itself (keepalived's `IP_RECVERR`).
fn recv_errors(s: &Socket, v6: bool) -> io::Result<()> {
    let on: libc::c_int = 1;
    let (level, name) = if v6 {
        (libc::SOL_IPV6, libc::IPV6_RECVERR)
    } else {
        (libc::SOL_IP, libc::IP_RECVERR)
    };
    // SAFETY: a valid descriptor and an int option of the right size.
    let r = unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(s),
            level,
            name,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn udp_socket(t: &Target) -> io::Result<tokio::net::UdpSocket> {
    let s = Socket::new(domain(&t.addr), Type::DGRAM, Some(Protocol::UDP))?;
    s.set_nonblocking(true)?;
    recv_errors(&s, t.addr.is_ipv6())?;
    if let Some(b) = t.bind {
        s.bind(&b.into())?;
    }
    s.connect(&t.addr.into())?;
    tokio::net::UdpSocket::from_std(s.into())
}

/// UDP_CHECK (see the module doc).
pub async fn udp(t: &Target, check: &UdpCheck, timeout: Duration) -> ProbeResult {
    let sock = match udp_socket(t) {
        Ok(s) => s,
        Err(e) => return ProbeResult::down(format!("UDP socket: {e}")),
    };
    let fill;
    let payload: &[u8] = match &check.payload {
        Some(p) => &p.bytes,
        None => {
            fill = icmp::keepalived_fill(UDP_DEFAULT_PAYLOAD);
            &fill
        }
    };
    let exchange = async {
        sock.send(payload).await?;
        let mut buf = vec![0u8; usize::from(check.max_reply_length) + 1];
        let n = sock.recv(&mut buf).await?;
        buf.truncate(n);
        Ok::<_, io::Error>(buf)
    };
    match tokio::time::timeout(timeout, exchange).await {
        Err(_) if check.require_reply => ProbeResult::down(format!("no reply within {}", secs(timeout))),
        Err(_) => ProbeResult::up(format!("no ICMP error within {}", secs(timeout))),
        Ok(Err(e)) => ProbeResult::down(icmp_error(&e)),
        Ok(Ok(reply)) => match &check.reply {
            Some(want) => {
                let n = reply.len();
                if n < usize::from(check.min_reply_length) || n > usize::from(check.max_reply_length) {
                    ProbeResult::down(format!(
                        "reply of {n} bytes, outside {}..{}",
                        check.min_reply_length, check.max_reply_length
                    ))
                } else if !want.matches(&reply) {
                    ProbeResult::down(format!("reply does not match {want}"))
                } else {
                    ProbeResult::up(format!("reply of {n} bytes matches"))
                }
            }
            None => ProbeResult::up(format!("reply of {} bytes", reply.len())),
        },
    }
}

/// DNS_CHECK: the query (from [`super::dns::query`]) on a connected UDP socket; up when
/// the answer with its id has rcode 0; an ICMP error, an error rcode or no answer within
/// the timeout is down (keepalived 2.2.7).
pub async fn dns(t: &Target, check: &DnsCheck, timeout: Duration) -> ProbeResult {
    // Unpredictable, as keepalived's `random()`: an off-path host cannot forge the answer.
    let id = getrandom::u32()
        .map(|r| r as u16)
        .unwrap_or_else(|_| SEQ.fetch_add(1, Ordering::Relaxed));
    let Some(query) = super::dns::query(id, &check.name, check.qtype_code()) else {
        return ProbeResult::down(format!("name {:?} has a label over 63 bytes", check.name));
    };
    let sock = match udp_socket(t) {
        Ok(s) => s,
        Err(e) => return ProbeResult::down(format!("UDP socket: {e}")),
    };
    let exchange = async {
        sock.send(&query).await?;
        let mut buf = [0u8; 768];
        loop {
            let n = sock.recv(&mut buf).await?;
            if let super::dns::Verdict::Rcode(r) = super::dns::judge(id, &buf[..n]) {
                return Ok::<_, io::Error>(r);
            }
        }
    };
    let what = format!(
        "{} {}",
        check.qtype,
        if check.name.is_empty() { "." } else { &check.name }
    );
    match tokio::time::timeout(timeout, exchange).await {
        Err(_) => ProbeResult::down(format!("no answer to {what} within {}", secs(timeout))),
        Ok(Err(e)) => ProbeResult::down(icmp_error(&e)),
        Ok(Ok(0)) => ProbeResult::up(format!("{what}: NOERROR")),
        Ok(Ok(r)) => ProbeResult::down(format!("{what}: {} (rcode {r})", super::dns::rcode_name(r))),
    }
}

/// Sequence numbers of echo requests (process-wide, as keepalived's).
static SEQ: AtomicU16 = AtomicU16::new(0);

/// A socket for echo requests to `t`: a ping socket if allowed, else a raw one; and
/// whether it is raw.
fn ping_socket(t: &Target) -> io::Result<(Socket, bool)> {
    let v6 = t.addr.is_ipv6();
    let proto = if v6 { Protocol::ICMPV6 } else { Protocol::ICMPV4 };
    let (s, raw) = match Socket::new(domain(&t.addr), Type::DGRAM, Some(proto)) {
        Ok(s) => (s, false),
        // `ping_group_range` does not admit our group: a raw socket (needs CAP_NET_RAW).
        Err(e) if matches!(e.raw_os_error(), Some(libc::EACCES) | Some(libc::EPERM)) => {
            (Socket::new(domain(&t.addr), Type::RAW, Some(proto))?, true)
        }
        Err(e) => return Err(e),
    };
    s.set_nonblocking(true)?;
    recv_errors(&s, v6)?;
    if let Some(b) = t.bind {
        s.bind(&SocketAddr::new(b.ip(), 0).into())?;
    }
    // Connected: only the server's messages are read (and its ICMP errors reported).
    s.connect(&SockAddr::from(SocketAddr::new(t.addr.ip(), 0)))?;
    Ok((s, raw))
}

/// PING_CHECK (see the module doc).
pub async fn ping(t: &Target, timeout: Duration) -> ProbeResult {
    let (sock, raw) = match ping_socket(t) {
        Ok(s) => s,
        Err(e) => return ProbeResult::down(format!("ICMP socket: {e}")),
    };
    // tokio's UDP socket sends and receives datagrams on any connected datagram or raw
    // socket (send(2), recv(2)): ICMP ones included.
    let sock = match tokio::net::UdpSocket::from_std(sock.into()) {
        Ok(s) => s,
        Err(e) => return ProbeResult::down(format!("ICMP socket: {e}")),
    };
    let v6 = t.addr.is_ipv6();
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    // A ping socket sets the identifier itself (and hands us only its own replies).
    let id = (std::process::id() as u16) ^ seq.rotate_left(8);
    let request = icmp::echo_request(v6, id, seq, &icmp::keepalived_fill(icmp::PAYLOAD_LEN));
    let exchange = async {
        sock.send(&request).await?;
        let mut buf = [0u8; 1500];
        loop {
            let n = sock.recv(&mut buf).await?;
            let pkt = &buf[..n];
            match icmp::answer(v6, raw && !v6, pkt) {
                Some(Answer::Reply { id: rid, seq: rseq }) if rseq == seq && (!raw || rid == id) => {
                    return Ok(None);
                }
                // Unreachable, time exceeded: about our request (a raw socket sees the
                // server's other messages too; a ping socket reports errors instead).
                Some(Answer::Other { kind, code })
                    if is_error_kind(v6, kind) && (!raw || is_error_for(v6, pkt, id, seq)) =>
                {
                    return Ok(Some(format!("ICMP type {kind} code {code}")));
                }
                _ => {}
            }
        }
    };
    let how = if raw { "raw socket" } else { "ping socket" };
    match tokio::time::timeout(timeout, exchange).await {
        Err(_) => ProbeResult::down(format!("no echo reply within {} ({how})", secs(timeout))),
        Ok(Err(e)) => ProbeResult::down(format!("{} ({how})", icmp_error(&e))),
        Ok(Ok(Some(why))) => ProbeResult::down(format!("{why} ({how})")),
        Ok(Ok(None)) => ProbeResult::up(format!("echo reply ({how})")),
    }
}

/// Destination unreachable or time exceeded (ICMP 3, 11; ICMPv6 1, 3): errors about a
/// request. (A raw socket also reads echo requests, its own to a local address among them.)
fn is_error_kind(v6: bool, kind: u8) -> bool {
    if v6 {
        matches!(kind, 1 | 3)
    } else {
        matches!(kind, 3 | 11)
    }
}

/// Whether an ICMP error read from a raw socket quotes our echo request (identifier and
/// sequence in the quoted ICMP header).
fn is_error_for(v6: bool, pkt: &[u8], id: u16, seq: u16) -> bool {
    let icmp = if v6 {
        pkt
    } else {
        let ihl = usize::from(pkt.first().copied().unwrap_or(0) & 0x0f) * 4;
        pkt.get(ihl..).unwrap_or(&[])
    };
    // The error's 8 bytes, then the quoted IP header and the first 8 bytes of ours.
    let quoted = icmp.get(8..).unwrap_or(&[]);
    let inner = if v6 {
        quoted.get(40..)
    } else {
        let ihl = usize::from(quoted.first().copied().unwrap_or(0) & 0x0f) * 4;
        quoted.get(ihl..)
    };
    match inner {
        Some(h) if h.len() >= 8 => {
            u16::from_be_bytes([h[4], h[5]]) == id && u16::from_be_bytes([h[6], h[7]]) == seq
        }
        _ => false,
    }
}

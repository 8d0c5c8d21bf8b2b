//! The I/O of process tracking: the process events connector socket and /proc.
//!
//! The kernel sends process events to connector sockets of the initial network namespace
//! only (elsewhere the subscription is refused with ECONNREFUSED), so a director that runs
//! inside a network namespace opens its socket from a short-lived thread that joins the
//! initial one; the socket stays there when the thread ends. The initial namespace is
//! found as init's (`/proc/1/ns/net`) or, where init's cannot be opened (a sandbox), as
//! that of the nearest ancestor process whose namespace accepts the subscription.

use super::proc_event::{self, ProcEvent, CN_IDX_PROC, NETLINK_CONNECTOR};
use super::process::ProcInfo;
use netlink_sys::{Socket, SocketAddr};
use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;

/// A subscribed process events socket.
pub struct ProcEventSocket {
    sock: Socket,
}

/// The network namespaces to try the subscription in, after our own: init's, then each
/// ancestor's (nearest first).
fn candidate_namespaces() -> Vec<String> {
    let mut out = vec!["/proc/1/ns/net".to_string()];
    let mut pid = std::process::id();
    for _ in 0..64 {
        let Some(parent) = parent_of(pid) else { break };
        if parent <= 1 {
            break;
        }
        out.push(format!("/proc/{parent}/ns/net"));
        pid = parent;
    }
    out
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
    let close = stat.iter().rposition(|b| *b == b')')?;
    let rest = String::from_utf8_lossy(stat.get(close + 2..)?).into_owned();
    rest.split_whitespace().nth(1)?.parse().ok()
}

fn refused(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::ECONNREFUSED)
}

fn open_here(read_timeout: Duration) -> io::Result<Socket> {
    let mut sock = Socket::new(NETLINK_CONNECTOR)?;
    sock.bind(&SocketAddr::new(0, CN_IDX_PROC))?;
    let sref = socket2::SockRef::from(&sock);
    // Bursts of forks (a busy box) must not overflow it; an overflow is recovered by a
    // rescan anyway (ENOBUFS).
    sref.set_recv_buffer_size(1 << 20)?;
    sref.set_read_timeout(Some(Duration::from_millis(200)))?;
    let mut addr = SocketAddr::new(0, 0);
    sock.get_address(&mut addr)?;
    sock.send(&proc_event::subscription(addr.port_number(), true), 0)?;
    // The kernel answers the subscription; without an answer (a task outside the initial
    // PID or user namespace is ignored) or with an error (no CAP_NET_ADMIN), no event
    // would ever come: fail, so that the trackers read /proc instead.
    let deadline = std::time::Instant::now() + Duration::from_secs(1);
    loop {
        if std::time::Instant::now() > deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the kernel did not answer the process events subscription",
            ));
        }
        let mut buf = Vec::with_capacity(4096);
        match sock.recv_from(&mut buf, 0) {
            Ok((_, from)) if from.port_number() != 0 => continue,
            Ok(_) => {
                for e in proc_event::parse(&buf) {
                    if let ProcEvent::Ack { err } = e {
                        if err != 0 {
                            return Err(io::Error::from_raw_os_error(err as i32));
                        }
                        sref.set_read_timeout(Some(read_timeout))?;
                        return Ok(sock);
                    }
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(e),
        }
    }
}

impl ProcEventSocket {
    /// Opens and subscribes, in the initial network namespace. `read_timeout`: how long
    /// [`ProcEventSocket::recv`] waits at most (so its reader can notice it should stop).
    pub fn open(read_timeout: Duration) -> io::Result<Self> {
        match open_here(read_timeout) {
            Ok(sock) => return Ok(ProcEventSocket { sock }),
            Err(e) if !refused(&e) => return Err(e),
            Err(_) => {}
        }
        let sock = std::thread::spawn(move || -> io::Result<Socket> {
            let mut last = io::Error::from_raw_os_error(libc::ECONNREFUSED);
            for path in candidate_namespaces() {
                let Ok(ns) = std::fs::File::open(&path) else {
                    continue;
                };
                // SAFETY: setns(2) moves only this short-lived thread, with a descriptor
                // it just opened; nothing else runs on it.
                if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    last = io::Error::last_os_error();
                    continue;
                }
                match open_here(read_timeout) {
                    Ok(sock) => {
                        tracing::info!(namespace = %path, "process events socket opened in the initial network namespace");
                        return Ok(sock);
                    }
                    Err(e) => last = e,
                }
            }
            Err(last)
        })
        .join()
        .map_err(|_| io::Error::other("the thread opening the process events socket panicked"))??;
        Ok(ProcEventSocket { sock })
    }

    /// The events of the next datagram. `Ok(empty)` on timeout; `ErrorKind::OutOfMemory`
    /// is not used: ENOBUFS (events were lost) comes back as the OS error, for the caller
    /// to rescan.
    pub fn recv(&self) -> io::Result<Vec<ProcEvent>> {
        let mut buf = Vec::with_capacity(4096);
        match self.sock.recv_from(&mut buf, 0) {
            Ok((_, from)) if from.port_number() != 0 => Ok(Vec::new()), // not the kernel
            Ok(_) => Ok(proc_event::parse(&buf)),
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                Ok(Vec::new())
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }
}

/// Whether an error from [`ProcEventSocket::recv`] means events were lost.
pub fn lost_events(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::ENOBUFS)
}

/// What /proc says of `pid` now; `None` if it is gone or a zombie. `cmdline`: read the
/// command line too (only `full_command` matchers need it: reading it can wait on the
/// process's memory, as `ps` can).
pub fn info(pid: u32, cmdline: bool) -> Option<ProcInfo> {
    let stat = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) S ...`: comm may hold anything, so take the last `)`.
    let open = stat.iter().position(|b| *b == b'(')?;
    let close = stat.iter().rposition(|b| *b == b')')?;
    let comm = String::from_utf8_lossy(stat.get(open + 1..close)?).into_owned();
    if stat.get(close + 2) == Some(&b'Z') {
        return None;
    }
    let cmdline = if cmdline {
        std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default()
    } else {
        Vec::new()
    };
    Some(ProcInfo { comm, cmdline })
}

/// Every running process (with its command line when `cmdline`).
pub fn scan(cmdline: bool) -> Vec<(u32, ProcInfo)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| info(pid, cmdline).map(|i| (pid, i)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_found_with_its_name_and_arguments() {
        let me = std::process::id();
        let i = info(me, true).expect("our own /proc entry");
        assert!(!i.comm.is_empty() && i.comm.len() <= 15, "{i:?}");
        assert!(i.cmdline.ends_with(&[0]), "{i:?}");
        assert!(
            info(me, false).expect("again").cmdline.is_empty(),
            "not read unless asked"
        );
        assert!(scan(false).iter().any(|(p, _)| *p == me));
        assert_eq!(info(u32::MAX, true), None);
    }
}

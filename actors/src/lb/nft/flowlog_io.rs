//! The socket behind [`super::flowlog`]: a netlink socket subscribed to the DR tables'
//! NFLOG group, read by whoever wants the new flows (blocking reads with a timeout).

use super::flowlog::{self, LoggedFlow};
use crate::lb::kernel::KernelError;
use crate::lb::nl_io::{force_buffer, io_error, send_all};
use netlink_sys::{protocols::NETLINK_NETFILTER, Socket, SocketAddr};
use std::time::Duration;

/// Room for bursts of new flows between reads (each logged packet is about 230 bytes).
const RCVBUF_BYTES: usize = 8 << 20;

pub struct FlowLogSocket {
    sock: Socket,
    buf: Vec<u8>,
    /// Receive buffer overruns seen (the kernel dropped logged flows).
    pub overruns: u64,
}

impl FlowLogSocket {
    /// Subscribes to [`flowlog::FLOW_LOG_GROUP`]; reads wait at most `wait`. Fails when
    /// another socket holds the group (one per network namespace) or NFLOG is missing.
    pub fn open(wait: Duration) -> Result<FlowLogSocket, KernelError> {
        let mut sock = Socket::new(NETLINK_NETFILTER).map_err(|e| io_error("nflog socket", &e))?;
        sock.bind_auto().map_err(|e| io_error("nflog bind", &e))?;
        sock.connect(&SocketAddr::new(0, 0))
            .map_err(|e| io_error("nflog connect", &e))?;
        if !force_buffer(&sock, libc::SO_RCVBUFFORCE, RCVBUF_BYTES) {
            let _ = sock.set_rx_buf_sz(RCVBUF_BYTES);
        }
        socket2::SockRef::from(&sock)
            .set_read_timeout(Some(wait))
            .map_err(|e| io_error("nflog SO_RCVTIMEO", &e))?;
        let mut s = FlowLogSocket {
            sock,
            buf: Vec::with_capacity(256 * 1024),
            overruns: 0,
        };
        for (i, req) in flowlog::subscribe_requests(1).iter().enumerate() {
            send_all(&s.sock, req, "nflog subscribe")?;
            s.ack(1 + i as u32)?;
        }
        Ok(s)
    }

    /// Waits for the kernel's answer to request `seq`.
    fn ack(&mut self, seq: u32) -> Result<(), KernelError> {
        loop {
            self.buf.clear();
            self.sock
                .recv(&mut self.buf, 0)
                .map_err(|e| io_error("nflog subscribe answer", &e))?;
            let b = &self.buf;
            if b.len() < 20 || u32::from_ne_bytes([b[8], b[9], b[10], b[11]]) != seq {
                continue;
            }
            // NLMSG_ERROR (2) carries the errno (0: the ack).
            if u16::from_ne_bytes([b[4], b[5]]) == 2 {
                let errno = -i32::from_ne_bytes([b[16], b[17], b[18], b[19]]);
                if errno != 0 {
                    return Err(KernelError::errno(errno, "nflog subscribe"));
                }
            }
            return Ok(());
        }
    }

    /// The flows logged since the last read: waits up to the socket's timeout for the
    /// first message, then takes what else is queued, up to about `max` flows (the rest
    /// waits for the next read). Empty on timeout.
    pub fn read(&mut self, max: usize) -> Result<Vec<LoggedFlow>, KernelError> {
        let mut out = Vec::new();
        let mut flags = 0;
        while out.len() < max {
            self.buf.clear();
            match self.sock.recv(&mut self.buf, flags) {
                Ok(_) => out.extend(flowlog::parse(&self.buf)),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(out)
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                // ENOBUFS: the kernel dropped messages for us; the rest still comes.
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => self.overruns += 1,
                Err(e) => return Err(io_error("nflog receive", &e)),
            }
            flags = libc::MSG_DONTWAIT;
        }
        Ok(out)
    }
}

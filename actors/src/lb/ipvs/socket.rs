//! The IPVS backend's I/O: a blocking generic-netlink socket that resolves the IPVS
//! family, dumps the kernel table and applies ops in pipelined batches. What goes on the
//! wire is built and read by [`super::msg`] and [`super::frame`]; this file only moves
//! bytes and keeps the conversation in step.

use super::frame::{self, Acks, FamilyId, Received, Reply};
use super::msg::{IpvsMsg, MsgError, FAMILY_NAME};
use crate::lb::diff::Op;
use crate::lb::kernel::{KernelError, KernelLb};
use crate::lb::model::{Service, Table};
use crate::lb::nl_io::{force_buffer, io_error, send_all};
use crate::lb::syncd::{Role, Step, SyncDaemon};
use netlink_packet_core::ParseableParametrized;
use netlink_packet_core::{NLM_F_ACK, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_REQUEST};
use netlink_packet_generic::GenlHeader;
use netlink_sys::{protocols::NETLINK_GENERIC, Socket, SocketAddr};
use std::fmt::Debug;
use std::io;
use std::time::Duration;

/// What [`Ipvs::open`] says when the kernel has no IPVS family.
pub const NOT_AVAILABLE: &str = "IPVS not available in this kernel (modprobe ip_vs)";

/// Requests sent in one `send` call (then their acks are read before the next batch).
const BATCH_BYTES: usize = 32 * 1024;
/// Kernel receive buffer: acks of a whole batch, dump parts (the kernel doubles it).
const SO_RCVBUF_BYTES: libc::c_int = 4 << 20;
/// One datagram: the kernel builds dump parts of at most 32 KiB; acks are small.
const RECV_BYTES: usize = 64 * 1024;
/// The kernel answers at once; a silence this long means an answer was lost.
const RECV_TIMEOUT: Duration = Duration::from_secs(10);

/// An open conversation with the kernel's IPVS.
pub struct Ipvs {
    sock: Socket,
    family: u16,
    seq: u32,
    buf: Vec<u8>,
    /// The sync daemon this socket started last (the kernel lists only part of its
    /// settings).
    last_daemon: Option<SyncDaemon>,
}

fn open_socket() -> Result<Socket, KernelError> {
    let mut sock = Socket::new(NETLINK_GENERIC).map_err(|e| io_error("netlink socket", &e))?;
    sock.bind_auto().map_err(|e| io_error("netlink bind", &e))?;
    sock.connect(&SocketAddr::new(0, 0))
        .map_err(|e| io_error("netlink connect", &e))?;
    set_rcvbuf(&sock);
    // Errors echo only the request's header: smaller acks, and we match by sequence.
    if let Err(e) = sock.set_cap_ack(true) {
        tracing::debug!("ipvs: NETLINK_CAP_ACK: {e}");
    }
    socket2::SockRef::from(&sock)
        .set_read_timeout(Some(RECV_TIMEOUT))
        .map_err(|e| io_error("netlink SO_RCVTIMEO", &e))?;
    Ok(sock)
}

/// SO_RCVBUFFORCE, else SO_RCVBUF up to `net.core.rmem_max`.
fn set_rcvbuf(sock: &Socket) {
    let size = SO_RCVBUF_BYTES;
    if !force_buffer(sock, libc::SO_RCVBUFFORCE, size as usize) {
        if let Err(e) = sock.set_rx_buf_sz(size) {
            tracing::warn!("ipvs: SO_RCVBUF {size}: {e}");
        }
    }
}

impl Ipvs {
    /// Opens a socket and resolves the IPVS family. Fails with [`NOT_AVAILABLE`] when the
    /// kernel has no IPVS.
    pub fn open() -> Result<Ipvs, KernelError> {
        let mut ipvs = Ipvs {
            sock: open_socket()?,
            family: 0,
            seq: 0,
            buf: Vec::with_capacity(RECV_BYTES),
            last_daemon: None,
        };
        ipvs.family = ipvs.resolve()?;
        tracing::debug!("ipvs: generic netlink family {}", ipvs.family);
        Ok(ipvs)
    }

    /// The id the kernel gave the IPVS family.
    pub fn family_id(&self) -> u16 {
        self.family
    }

    /// Deletes every service (and with them every destination).
    pub fn flush(&mut self) -> Result<(), KernelError> {
        self.request(IpvsMsg::flush(), "flush")
    }

    /// One request that only answers an ack.
    fn request(&mut self, msg: IpvsMsg, what: &str) -> Result<(), KernelError> {
        let seq = self.next_seq();
        let req = frame::request(msg, self.family, NLM_F_REQUEST | NLM_F_ACK, seq);
        let (answers, failure) = self.exchange(&req, seq, 1);
        answer_to_result(answers.first().copied().flatten(), failure.as_ref(), what)
    }

    /// The connection sync daemons running: role, multicast interface, sync id.
    pub fn daemons(&mut self) -> Result<Vec<(Role, String, u32)>, KernelError> {
        Ok(self
            .dump_all(IpvsMsg::get_daemons(), "list sync daemons")?
            .iter()
            .filter_map(IpvsMsg::daemon)
            .collect())
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    fn resolve(&mut self) -> Result<u16, KernelError> {
        let seq = self.next_seq();
        let req = frame::request(frame::get_family(FAMILY_NAME), 0, NLM_F_REQUEST | NLM_F_ACK, seq);
        self.send(&req)?;
        let mut id = None;
        loop {
            for r in self.recv::<FamilyId>()? {
                if r.seq != seq {
                    continue;
                }
                match r.reply {
                    Reply::Data(FamilyId(found)) => id = id.or(found),
                    Reply::Ack | Reply::Done(0) => {
                        return id.ok_or_else(|| KernelError::other("IPVS family lookup: no family id"))
                    }
                    Reply::Error(libc::ENOENT) => {
                        return Err(KernelError {
                            errno: Some(libc::ENOENT),
                            message: NOT_AVAILABLE.into(),
                        })
                    }
                    Reply::Error(errno) | Reply::Done(errno) => {
                        return Err(KernelError::errno(errno, "IPVS family lookup"))
                    }
                    Reply::Bad(e) => return Err(KernelError::other(format!("IPVS family lookup: {e}"))),
                    Reply::Other => {}
                }
            }
        }
    }

    fn send(&self, bytes: &[u8]) -> Result<(), KernelError> {
        send_all(&self.sock, bytes, "netlink send")
    }

    /// Reads one datagram and splits it into messages.
    fn recv<F>(&mut self) -> Result<Vec<Received<F>>, KernelError>
    where
        F: ParseableParametrized<[u8], GenlHeader> + Debug,
    {
        loop {
            self.buf.clear();
            match self.sock.recv(&mut self.buf, libc::MSG_TRUNC) {
                Ok(n) if n > self.buf.len() => {
                    return Err(KernelError::other(format!(
                        "netlink reply of {n} bytes truncated to {}",
                        self.buf.len()
                    )))
                }
                Ok(_) => {
                    return frame::split(&self.buf)
                        .map_err(|e| KernelError::other(format!("netlink reply: {e}")))
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                    return Err(KernelError::other(format!(
                        "no answer from the kernel in {} s",
                        RECV_TIMEOUT.as_secs()
                    )))
                }
                Err(e) => return Err(io_error("netlink receive", &e)),
            }
        }
    }

    /// After a failure mid-conversation (lost acks, a dump left half read), starts over
    /// on a fresh socket so that nothing stale is read later; the family is looked up
    /// again in case the module was reloaded.
    fn reconnect(&mut self) {
        match open_socket() {
            Ok(sock) => {
                self.sock = sock;
                match self.resolve() {
                    Ok(id) => self.family = id,
                    Err(e) => tracing::warn!("ipvs: after reconnecting: {e}"),
                }
            }
            Err(e) => tracing::warn!("ipvs: reconnect: {e}"),
        }
    }

    /// Sends one batch (`count` requests from sequence `first`) and reads its acks:
    /// per request `Some(0)` or `Some(errno)`; `None` for those left unanswered when the
    /// conversation failed, with the failure (the socket is then replaced).
    fn exchange(
        &mut self,
        batch: &[u8],
        first: u32,
        count: usize,
    ) -> (Vec<Option<i32>>, Option<KernelError>) {
        let mut acks = Acks::new(first, count);
        if let Err(e) = self.send(batch) {
            return (acks.into_answers(), Some(e));
        }
        while !acks.complete() {
            match self.recv::<IpvsMsg>() {
                Ok(replies) => {
                    for r in replies {
                        match r.reply {
                            Reply::Ack => acks.answer(r.seq, 0),
                            Reply::Error(errno) => acks.answer(r.seq, errno),
                            _ => {}
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!("ipvs: waiting for acks: {e}; reconnecting");
                    self.reconnect();
                    return (acks.into_answers(), Some(e));
                }
            }
        }
        (acks.into_answers(), None)
    }

    /// Runs one dump request to its end. A dump left half read would make the kernel
    /// refuse the next one (EBUSY), so errors in entries are remembered and the rest is
    /// still read.
    fn dump_all(&mut self, req: IpvsMsg, what: &str) -> Result<Vec<IpvsMsg>, KernelError> {
        let seq = self.next_seq();
        self.send(&frame::request(req, self.family, NLM_F_REQUEST | NLM_F_DUMP, seq))?;
        let mut out = Vec::new();
        let mut failed: Option<KernelError> = None;
        loop {
            let replies = match self.recv::<IpvsMsg>() {
                Ok(r) => r,
                Err(e) => {
                    self.reconnect();
                    return Err(KernelError {
                        message: format!("{what}: {}", e.message),
                        ..e
                    });
                }
            };
            for r in replies {
                if r.seq != seq {
                    continue;
                }
                if r.flags & NLM_F_DUMP_INTR != 0 && failed.is_none() {
                    failed = Some(KernelError::other(format!(
                        "{what}: interrupted by a change, retry"
                    )));
                }
                match r.reply {
                    Reply::Data(m) => out.push(m),
                    Reply::Bad(e) => {
                        failed.get_or_insert_with(|| KernelError::other(format!("{what}: {e}")));
                    }
                    Reply::Done(0) | Reply::Ack => return failed.map_or(Ok(out), Err),
                    Reply::Done(errno) | Reply::Error(errno) => {
                        return Err(failed.unwrap_or_else(|| KernelError::errno(errno, what)))
                    }
                    Reply::Other => {}
                }
            }
        }
    }
}

/// One request's outcome: its ack, its errno, or why no answer came.
fn answer_to_result(
    answer: Option<i32>,
    failure: Option<&KernelError>,
    context: &str,
) -> Result<(), KernelError> {
    match (answer, failure) {
        (Some(0), _) => Ok(()),
        (Some(errno), _) => Err(KernelError::errno(errno, context)),
        (None, Some(f)) => Err(KernelError {
            errno: f.errno,
            message: format!("{context}: {}", f.message),
        }),
        (None, None) => Err(KernelError::other(format!(
            "{context}: no answer from the kernel"
        ))),
    }
}

impl KernelLb for Ipvs {
    fn backend(&self) -> &'static str {
        "ipvs"
    }

    /// GET_SERVICE dump, then one GET_DEST dump per service (the kernel runs one dump
    /// at a time per socket).
    fn dump(&mut self) -> Result<Table, KernelError> {
        let decode = |what: &str, e: MsgError| KernelError::other(format!("{what}: {e}"));
        let mut table = Table::new();
        for m in self.dump_all(IpvsMsg::get_services(), "dump services")? {
            let (key, spec) = m.service().map_err(|e| decode("dump services", e))?;
            table.insert(
                key,
                Service {
                    spec,
                    dests: Default::default(),
                },
            );
        }
        for (key, svc) in table.iter_mut() {
            let what = format!("dump destinations of {key}");
            for m in self.dump_all(IpvsMsg::get_dests(key), &what)? {
                let (d, s) = m.dest(key).map_err(|e| decode(&what, e))?;
                svc.dests.insert(d, s);
            }
        }
        Ok(table)
    }

    /// Pipelined: as many requests as fit in `BATCH_BYTES` (32 KiB) go out in one `send`, each
    /// with its own sequence number and an ack requested; the acks are matched back by
    /// sequence before the next batch goes out, so order across batches is kept.
    fn apply(&mut self, ops: &[Op]) -> Vec<Result<(), KernelError>> {
        let mut results = Vec::with_capacity(ops.len());
        let mut rest = ops;
        while !rest.is_empty() {
            let first = self.seq.wrapping_add(1);
            let mut batch = Vec::new();
            let mut count = 0;
            for op in rest {
                let seq = first.wrapping_add(count as u32);
                let req = frame::request(IpvsMsg::from(op), self.family, NLM_F_REQUEST | NLM_F_ACK, seq);
                if count > 0 && batch.len() + req.len() > BATCH_BYTES {
                    break;
                }
                batch.extend_from_slice(&req);
                count += 1;
            }
            self.seq = first.wrapping_add(count as u32 - 1);
            let (now, later) = rest.split_at(count);
            tracing::debug!("ipvs: {count} ops in {} bytes", batch.len());
            let (answers, failure) = self.exchange(&batch, first, count);
            results.extend(
                now.iter()
                    .zip(answers)
                    .map(|(op, a)| answer_to_result(a, failure.as_ref(), &op.to_string())),
            );
            rest = later;
        }
        results
    }

    fn sync_daemon(&mut self, want: Option<&SyncDaemon>) -> Result<Vec<Step>, KernelError> {
        let running = self.daemons()?;
        let steps = crate::lb::syncd::steps(&running, want, self.last_daemon.as_ref());
        for s in &steps {
            match s {
                Step::Stop(role) => {
                    self.request(
                        IpvsMsg::del_daemon(*role),
                        &format!("stop the {} sync daemon", role.name()),
                    )?;
                    // A kept daemon of the other role keeps its known settings.
                    if self.last_daemon.as_ref().is_some_and(|(r, _)| r == role) {
                        self.last_daemon = None;
                    }
                }
                Step::Start(role, spec) => {
                    let what = format!(
                        "start the {} sync daemon on {} (sync id {})",
                        role.name(),
                        spec.interface,
                        spec.sync_id
                    );
                    self.request(IpvsMsg::new_daemon(*role, spec), &what)?;
                    self.last_daemon = Some((*role, spec.clone()));
                }
            }
        }
        Ok(steps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The host may or may not have IPVS: either it opens and dumps, or it says why.
    #[test]
    fn open_succeeds_or_says_ipvs_is_not_available() {
        match Ipvs::open() {
            Ok(mut ipvs) => {
                assert_eq!(ipvs.backend(), "ipvs");
                assert_ne!(ipvs.family_id(), 0);
                // Without CAP_NET_ADMIN the dump is refused (EPERM); either way, no panic.
                let _ = ipvs.dump();
            }
            Err(e) => assert_eq!(e.message, NOT_AVAILABLE, "{e:?}"),
        }
    }

    #[test]
    fn available_agrees_with_open() {
        assert_eq!(super::super::available(), Ipvs::open().is_ok());
    }
}

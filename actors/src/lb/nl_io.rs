//! What both netlink backends (IPVS generic netlink, nf_tables) do with their sockets:
//! send a datagram whole, force a buffer size, turn an I/O error into a [`KernelError`].

use super::kernel::KernelError;
use netlink_sys::Socket;
use std::io;
use std::os::fd::AsRawFd;

pub fn io_error(context: &str, e: &io::Error) -> KernelError {
    match e.raw_os_error() {
        Some(errno) => KernelError::errno(errno, context),
        None => KernelError::other(format!("{context}: {e}")),
    }
}

/// Sends one datagram whole (a batch, or a request).
pub fn send_all(sock: &Socket, bytes: &[u8], context: &str) -> Result<(), KernelError> {
    loop {
        match sock.send(bytes, 0) {
            Ok(n) if n == bytes.len() => return Ok(()),
            Ok(n) => {
                return Err(KernelError::other(format!(
                    "{context}: {n} of {} bytes sent",
                    bytes.len()
                )))
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_error(context, &e)),
        }
    }
}

/// `setsockopt(SOL_SOCKET, opt, size)` (SO_RCVBUFFORCE / SO_SNDBUFFORCE: we hold
/// CAP_NET_ADMIN when we may program the kernel's tables at all); false if refused.
pub fn force_buffer(sock: &Socket, opt: libc::c_int, size: usize) -> bool {
    let size = libc::c_int::try_from(size).unwrap_or(libc::c_int::MAX);
    // SAFETY: setsockopt reads `size_of::<c_int>()` bytes from a live c_int.
    unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            opt,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        ) == 0
    }
}

//! IPVS over generic netlink: the kernel's virtual-server table programmed the way
//! `ipvsadm` does it, without `ipvsadm`.
//!
//! - [`msg`]: the IPVS family's messages (types that emit and parse themselves); its
//!   [`msg::table`] maps `Op` -> request and dump reply -> table entry. Pure.
//! - [`frame`]: netlink framing, ack matching, family lookup messages. Pure.
//! - [`socket`]: [`Ipvs`], the [`super::kernel::KernelLb`] that talks to the kernel.
//! - [`conns`]: the connection table (`/proc/net/ip_vs_conn`), parsed.

pub mod conns;
pub mod frame;
pub mod msg;
pub mod socket;

pub use socket::Ipvs;

/// Whether this kernel has IPVS (its generic netlink family resolves).
pub fn available() -> bool {
    Ipvs::open().is_ok()
}

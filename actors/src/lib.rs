//! The director's runtime parts. Each protocol has a pure core (no sockets, no clock) and,
//! separately, the I/O that feeds it.
//!
//! - [`vrrp`]: VRRP v2/v3 (RFC 3768 / 5798), wire-compatible with keepalived.

pub mod check;
pub mod lb;
pub mod script;
pub mod track;
pub mod vrrp;

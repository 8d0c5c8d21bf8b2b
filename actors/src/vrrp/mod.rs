//! VRRP: packet codec ([`packet`]), IPv4 header handling for raw sockets ([`ipv4`]),
//! receive checks ([`check`]) and the per-instance state machine ([`instance`]).

pub mod check;
pub mod instance;
pub mod ipv4;
pub mod packet;
#[cfg(test)]
mod sim;

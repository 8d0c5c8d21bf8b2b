//! VRRP: packet codec ([`packet`]), IPv4 header handling for raw sockets ([`ipv4`]),
//! receive checks ([`check`]), the per-instance state machine ([`instance`]), gratuitous
//! ARP frames ([`garp`]), the quorum gate ([`quorum`]); and the shell: config to spec ([`setup`]), kernel I/O ([`io`]),
//! the actix actor ([`actor`]) and the runner ([`runner`]).

pub mod actor;
pub mod alert;
pub mod check;
pub mod file_tracker;
pub mod garp;
pub mod instance;
pub mod io;
pub mod ipv4;
pub mod notify;
pub mod packet;
pub mod process_tracker;
pub mod quorum;
pub mod routes;
pub mod runner;
pub mod scripts;
pub mod setup;
#[cfg(test)]
mod sim;
pub mod sync_group;
pub mod trackers;
pub mod tracking;

//! Health checks of real servers (keepalived's checker semantics): the per-checker
//! retry/transition core ([`schedule`]), the probes ([`probe`]), the desired table as a
//! pure function ([`table`]) and the verdicts it is computed from ([`state`], shared with replay); one actor per checker ([`actor`]) feeding the [`hub`],
//! which publishes each virtual server's desired table; [`runner`] starts them.

pub mod actor;
pub mod datagram;
pub mod dns;
pub mod hub;
pub mod icmp;
pub mod probe;
pub mod runner;
pub mod schedule;
pub mod state;
pub mod stats;
pub mod table;
pub mod tls;

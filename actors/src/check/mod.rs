//! Health checks of real servers (keepalived's checker semantics): the per-checker
//! retry/transition core ([`schedule`]) and the desired virtual-server table as a pure
//! function of the config and the checkers' verdicts ([`table`]).

pub mod probe;
pub mod schedule;
pub mod table;

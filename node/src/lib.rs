//! `hanode`: one director of the cluster.
//!
//! - [`settings`]: flags and the TOML file.
//! - [`director`]: the Raft instance over the sled store, membership, leader tracking.
//! - [`admin`]: HTTP routes: Raft RPC from peers and the admin API for `hactl`.
//! - [`auth`]: who a caller is (certificate or token) and what each route needs.
//! - [`security`]: the listener's protection (TLS, tokens, `--insecure`) and the audit trail.
//! - [`transport`]: sockets (HTTP client, accept loop, openraft network).
//!
//! Data flow: `hactl propose` -> admin API -> (forward to leader) -> Raft log -> every
//! director's state machine -> `StateReader::subscribe` (the actors, issue 8).

pub mod admin;
pub mod auth;
pub mod director;
pub mod flow_sync;
pub mod ipvs_catch_up;
pub mod journal;
pub mod liveness;
pub mod metrics;
pub mod quorum;
pub mod replay;
pub mod retention;
pub mod runtime;
pub mod security;
pub mod settings;
pub mod store_recovery;
pub mod transport;

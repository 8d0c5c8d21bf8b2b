//! HTTP transport: the one place sockets are opened. HTTP/1.1 over TLS (mutual between
//! directors), or plain TCP on loopback or when asked for with `--insecure`.
//!
//! - [`client`]: outgoing requests (Raft RPC to peers, forwarding to the leader).
//! - [`server`]: the accept loop and request-body limits.
//! - [`raft_network`]: openraft's `RaftNetwork` over [`client`].
//! - [`tls`]: certificates and keys from files, reloaded when they change.

pub mod client;
pub mod raft_network;
pub mod server;
pub mod tls;

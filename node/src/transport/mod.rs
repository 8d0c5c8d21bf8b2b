//! HTTP transport: the one place sockets are opened. Plain HTTP/1.1 over TCP for now; TLS
//! (issue 10) replaces the connector and the acceptor here and nowhere else.
//!
//! - [`client`]: outgoing requests (Raft RPC to peers, forwarding to the leader).
//! - [`server`]: the accept loop and request-body limits.
//! - [`raft_network`]: openraft's `RaftNetwork` over [`client`].

pub mod client;
pub mod raft_network;
pub mod server;

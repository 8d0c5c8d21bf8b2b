//! Flow sync over the cluster transport (issue 22; design in
//! docs/dev-notes/flow-sync.md): the flows this director starts forwarding, as the
//! data plane's flow log reports them, go to every other director in batches
//! (`POST /cluster/flows`, a director's certificate, codec-encoded), never through Raft.
//! A batch is sent once: a peer that is down or slow loses it (its connections would be
//! rescheduled if it took the VIP over, as without flow sync), and nothing queues without
//! bound.

use crate::director::DirectorNode;
use crate::transport::client::Call;
use ::actors::lb::flows::{FlowBatch, FlowRecord, MAX_BATCH};
use hyper::Method;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

pub const FLOWS_PATH: &str = "/cluster/flows";
/// Learned flows waiting to be sent (in the kernel's read batches); more are dropped.
pub const SEND_QUEUE: usize = 1024;
/// A batch waits this long for more flows before it goes.
const LINGER: Duration = Duration::from_millis(20);
/// A peer that has not taken a batch in this long loses it.
const SEND_TIMEOUT: Duration = Duration::from_secs(1);
/// A peer that answered it does not sync flows is not sent any for this long.
const NOT_SYNCING_FOR: Duration = Duration::from_secs(60);
/// The largest body `/cluster/flows` takes.
pub const MAX_BODY: usize = 1 << 20;

/// What the sender did, for status and metrics.
#[derive(Debug, Default)]
pub struct SendStats {
    /// Flows sent to a peer that took them (counted once per peer).
    pub sent: AtomicU64,
    /// Flows a peer did not take (down, slow, or it refused them), once per peer.
    pub lost: AtomicU64,
    /// Learned flows dropped before sending: the queue was full.
    pub dropped: AtomicU64,
}

enum Sent {
    Taken,
    /// The peer has no data plane that pins flows (a witness).
    NotSyncing,
    Lost,
}

/// Sends what arrives on `rx` to every other member until the channel closes; a peer
/// that answers it does not sync flows is left out for [`NOT_SYNCING_FOR`].
pub async fn send_learned(
    node: Arc<DirectorNode>,
    mut rx: mpsc::Receiver<Vec<FlowRecord>>,
    stats: Arc<SendStats>,
) {
    // Peers (by address) that answered they do not sync flows (a witness), and when.
    let mut not_syncing: std::collections::HashMap<String, tokio::time::Instant> = Default::default();
    while let Some(mut flows) = rx.recv().await {
        let learned_at_us = ::actors::lb::flows::unix_us();
        let deadline = tokio::time::Instant::now() + LINGER;
        while flows.len() < MAX_BATCH {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(more)) => flows.extend(more),
                Ok(None) | Err(_) => break,
            }
        }
        let peers: Vec<(String, String)> = node
            .members()
            .into_iter()
            .filter(|m| m.name != node.name)
            .filter(|m| {
                not_syncing
                    .get(&m.addr)
                    .is_none_or(|t| t.elapsed() >= NOT_SYNCING_FOR)
            })
            .map(|m| (m.name, m.addr))
            .collect();
        if peers.is_empty() {
            continue;
        }
        for chunk in flows.chunks(MAX_BATCH) {
            let batch = FlowBatch {
                from: node.name.clone(),
                flows: chunk.to_vec(),
                learned_at_us,
            };
            let body = match raft_store::codec::encode(&batch) {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(director = %node.name, "flow sync: encoding a batch: {e}");
                    continue;
                }
            };
            let n = chunk.len() as u64;
            let mut sends = tokio::task::JoinSet::new();
            for (name, addr) in &peers {
                let (node, name, addr, body) = (node.clone(), name.clone(), addr.clone(), body.clone());
                let peer = addr.clone();
                sends.spawn(async move {
                    let r = node
                        .client
                        .send(Call {
                            method: Method::POST,
                            addr: &addr,
                            path: FLOWS_PATH,
                            content_type: crate::transport::raft_network::CONTENT_TYPE,
                            headers: &[],
                            body,
                            timeout: SEND_TIMEOUT,
                        })
                        .await;
                    let outcome = match r {
                        Ok((status, _)) if status.is_success() => Sent::Taken,
                        Ok((hyper::StatusCode::NOT_IMPLEMENTED, _)) => Sent::NotSyncing,
                        Ok((status, body)) => {
                            tracing::debug!(director = %node.name, peer = %name, "flow sync: {status}: {}", String::from_utf8_lossy(&body));
                            Sent::Lost
                        }
                        Err(e) => {
                            tracing::debug!(director = %node.name, peer = %name, "flow sync: {e}");
                            Sent::Lost
                        }
                    };
                    (peer, outcome)
                });
            }
            while let Some(r) = sends.join_next().await {
                match r {
                    Ok((_, Sent::Taken)) => {
                        stats.sent.fetch_add(n, Ordering::Relaxed);
                    }
                    Ok((peer, Sent::NotSyncing)) => {
                        not_syncing.insert(peer, tokio::time::Instant::now());
                    }
                    _ => {
                        stats.lost.fetch_add(n, Ordering::Relaxed);
                    }
                }
            }
        }
    }
}

/// A whole catch-up from one director may take this long (its kernel dumps its flow maps).
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(3);

/// Asks `peer` (None: every other member) for the flows it pins and pins them here;
/// answers a one-line summary. Errors are part of the summary: a peer that is down has
/// nothing to give.
pub async fn catch_up(
    node: &Arc<DirectorNode>,
    sync: &Arc<std::sync::OnceLock<::actors::lb::flowsync::FlowSync>>,
    peer: Option<&str>,
) -> String {
    let peers: Vec<(String, String)> = node
        .members()
        .into_iter()
        .filter(|m| m.name != node.name && peer.is_none_or(|p| p == m.name))
        .map(|m| (m.name, m.addr))
        .collect();
    let mut parts = Vec::new();
    for (name, addr) in peers {
        let r = node
            .client
            .send(Call {
                method: Method::GET,
                addr: &addr,
                path: FLOWS_PATH,
                content_type: crate::transport::raft_network::CONTENT_TYPE,
                headers: &[],
                body: Vec::new(),
                timeout: CATCH_UP_TIMEOUT,
            })
            .await;
        let batch: FlowBatch = match r {
            Ok((status, body)) if status.is_success() => match raft_store::codec::decode(&body) {
                Ok(b) => b,
                Err(e) => {
                    parts.push(format!("{name}: undecodable answer ({e})"));
                    continue;
                }
            },
            Ok((status, body)) => {
                parts.push(format!(
                    "{name}: {status} {}",
                    String::from_utf8_lossy(&body).trim()
                ));
                continue;
            }
            Err(e) => {
                parts.push(format!("{name}: {e}"));
                continue;
            }
        };
        let n = batch.flows.len();
        let sync = sync.clone();
        let pinned = tokio::task::spawn_blocking(move || match sync.get() {
            Some(s) => s.install_now(&batch.flows).map_err(|e| e.to_string()),
            None => Err("no flow sync here".to_string()),
        })
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
        parts.push(match pinned {
            Ok(i) => format!(
                "{name}: {n} flow(s), {} pinned, {} skipped",
                i.installed, i.skipped
            ),
            Err(e) => format!("{name}: {n} flow(s) not pinned: {e}"),
        });
    }
    if parts.is_empty() {
        "no other director".into()
    } else {
        parts.join("; ")
    }
}

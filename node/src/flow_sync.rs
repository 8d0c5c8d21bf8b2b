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

/// Batches waiting for one peer; more are lost (counted): a slow or unreachable peer
/// costs only its own flows, never the others'.
const PEER_QUEUE: usize = 16;

/// One peer's sender: its queue and the task that posts what it holds, in order.
struct PeerSender {
    addr: String,
    queue: mpsc::Sender<(Vec<u8>, u64)>,
    task: tokio::task::JoinHandle<()>,
}

/// Posts one encoded batch to `addr`.
async fn post(node: &DirectorNode, name: &str, addr: &str, body: Vec<u8>) -> Sent {
    let r = node
        .client
        .send(Call {
            method: Method::POST,
            addr,
            path: FLOWS_PATH,
            content_type: crate::transport::raft_network::CONTENT_TYPE,
            headers: &[],
            body,
            timeout: SEND_TIMEOUT,
        })
        .await;
    match r {
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
    }
}

/// Starts the sender of peer `name` at `addr`.
fn peer_sender(node: &Arc<DirectorNode>, name: &str, addr: &str, stats: &Arc<SendStats>) -> PeerSender {
    let (queue, mut rx) = mpsc::channel::<(Vec<u8>, u64)>(PEER_QUEUE);
    let (node, name, to, stats) = (node.clone(), name.to_string(), addr.to_string(), stats.clone());
    let task = tokio::spawn(async move {
        let mut not_syncing_since: Option<tokio::time::Instant> = None;
        while let Some((body, n)) = rx.recv().await {
            if not_syncing_since.is_some_and(|t| t.elapsed() < NOT_SYNCING_FOR) {
                continue;
            }
            match post(&node, &name, &to, body).await {
                Sent::Taken => {
                    not_syncing_since = None;
                    stats.sent.fetch_add(n, Ordering::Relaxed);
                }
                Sent::NotSyncing => not_syncing_since = Some(tokio::time::Instant::now()),
                Sent::Lost => {
                    stats.lost.fetch_add(n, Ordering::Relaxed);
                }
            }
        }
    });
    PeerSender {
        addr: addr.to_string(),
        queue,
        task,
    }
}

/// Sends what arrives on `rx` to every other member until the channel closes: batched
/// (up to [`MAX_BATCH`] flows or [`LINGER`]), each batch queued for every peer's own
/// sender; a peer that answers it does not sync flows is left out for
/// [`NOT_SYNCING_FOR`].
pub async fn send_learned(
    node: Arc<DirectorNode>,
    mut rx: mpsc::Receiver<Vec<FlowRecord>>,
    stats: Arc<SendStats>,
) {
    let mut peers: std::collections::HashMap<String, PeerSender> = Default::default();
    while let Some(mut flows) = rx.recv().await {
        let learned_at_us = ::actors::lb::flows::unix_us();
        let deadline = tokio::time::Instant::now() + LINGER;
        while flows.len() < MAX_BATCH {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(more)) => flows.extend(more),
                Ok(None) | Err(_) => break,
            }
        }
        let members: Vec<(String, String)> = node
            .members()
            .into_iter()
            .filter(|m| m.name != node.name)
            .map(|m| (m.name, m.addr))
            .collect();
        peers.retain(|name, p| {
            let keep = members.iter().any(|(n, a)| n == name && *a == p.addr);
            if !keep {
                p.task.abort();
            }
            keep
        });
        for (name, addr) in &members {
            peers
                .entry(name.clone())
                .or_insert_with(|| peer_sender(&node, name, addr, &stats));
        }
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
            for p in peers.values() {
                if p.queue.try_send((body.clone(), n)).is_err() {
                    stats.lost.fetch_add(n, Ordering::Relaxed);
                }
            }
        }
    }
}

/// A whole catch-up from one director may take this long (its kernel dumps its flow maps).
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(3);

/// Asks `peer` (None: every other member) for the flows it pins, all at once, and pins
/// them here (`replace`: over this director's own pins). Answers a one-line summary and
/// whether anything failed (a peer that could not be asked, flows not pinned); a peer
/// that does not sync flows is not a failure.
pub async fn catch_up(
    node: &Arc<DirectorNode>,
    sync: &Arc<std::sync::OnceLock<::actors::lb::flowsync::FlowSync>>,
    peer: Option<&str>,
    replace: bool,
) -> (String, bool) {
    let peers = node.peers(peer);
    let mut asks = tokio::task::JoinSet::new();
    for (name, addr) in peers {
        let node = node.clone();
        asks.spawn(async move {
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
            (name, r)
        });
    }
    let mut parts = Vec::new();
    let mut failed = false;
    while let Some(joined) = asks.join_next().await {
        let Ok((name, r)) = joined else {
            failed = true;
            continue;
        };
        let batch: FlowBatch = match r {
            Ok((status, body)) if status.is_success() => match raft_store::codec::decode(&body) {
                Ok(b) => b,
                Err(e) => {
                    failed = true;
                    parts.push(format!("{name}: undecodable answer ({e})"));
                    continue;
                }
            },
            Ok((hyper::StatusCode::NOT_IMPLEMENTED, _)) => {
                parts.push(format!("{name}: does not sync flows"));
                continue;
            }
            Ok((status, body)) => {
                failed = true;
                parts.push(format!(
                    "{name}: {status} {}",
                    String::from_utf8_lossy(&body).trim()
                ));
                continue;
            }
            Err(e) => {
                failed = true;
                parts.push(format!("{name}: {e}"));
                continue;
            }
        };
        let n = batch.flows.len();
        let sync = sync.clone();
        let pinned = tokio::task::spawn_blocking(move || match sync.get() {
            Some(s) => s.install_now(&batch.flows, replace).map_err(|e| e.to_string()),
            None => Err("no flow sync here".to_string()),
        })
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
        parts.push(match pinned {
            Ok(i) => format!(
                "{name}: {n} flow(s), {} pinned, {} skipped",
                i.installed, i.skipped
            ),
            Err(e) => {
                failed = true;
                format!("{name}: {n} flow(s) not pinned: {e}")
            }
        });
    }
    if parts.is_empty() {
        ("no other director".into(), false)
    } else {
        (parts.join("; "), failed)
    }
}

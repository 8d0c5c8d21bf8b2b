//! IPVS connection catch-up (issue 22). With `lvs_sync_daemon`, the kernel's sync daemon
//! carries the master's connections to the backups, but only when a connection changes
//! state or every 50 of its packets (`sync_threshold`), and never to a director whose
//! backup daemon was not running (its hanode was down, or its link). Such a director
//! would take the VIP back without the connections opened meanwhile, and its kernel
//! would answer their next packets with resets. So before its config fence lets it
//! claim MASTER, a director that (re)starts or sees a peer return asks the forwarding
//! directors which connections they hold (`GET /cluster/ipvs-conns`) and waits until
//! its own kernel lists each one (its sync daemon delivered it), for at most [`LIMIT`]:
//! a connection that sends nothing is never synced again.

use crate::director::DirectorNode;
use crate::transport::client::Call;
use ::actors::lb::ipvs::conns::{self, Conn, ConnKey};
use hyper::Method;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const CONNS_PATH: &str = "/cluster/ipvs-conns";
/// The longest a catch-up holds the config fence.
pub const LIMIT: Duration = Duration::from_secs(10);
/// How long a peer has to list its connections.
const ASK_TIMEOUT: Duration = Duration::from_secs(3);
/// How often the local table is read while connections are missing.
const POLL: Duration = Duration::from_millis(100);

/// A director's answer: the established connections in its kernel while it forwards (is
/// MASTER of the instance `lvs_sync_daemon` follows, so its master daemon sends them);
/// none while it does not (a backup's table is what it was sent, not what it must hand
/// on).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ConnList {
    pub from: String,
    pub forwarding: bool,
    pub keys: Vec<ConnKey>,
}

/// How many of `wanted` this kernel's table (`local`, any state) lacks.
pub fn missing(wanted: &BTreeSet<ConnKey>, local: &[Conn]) -> usize {
    let here: BTreeSet<&ConnKey> = local.iter().map(|c| &c.key).collect();
    wanted.iter().filter(|k| !here.contains(k)).count()
}

/// This kernel's live connections (for [`ConnList`]).
pub async fn live_keys() -> Result<Vec<ConnKey>, String> {
    tokio::task::spawn_blocking(|| conns::read().map(|c| conns::live_keys(&c).into_iter().collect()))
        .await
        .unwrap_or_else(|e| Err(e.to_string()))
}

/// Asks one peer for its list.
async fn ask(node: &DirectorNode, name: &str, addr: &str) -> Result<Option<ConnList>, String> {
    let r = node
        .client
        .send(Call {
            method: Method::GET,
            addr,
            path: CONNS_PATH,
            content_type: crate::transport::raft_network::CONTENT_TYPE,
            headers: &[],
            body: Vec::new(),
            timeout: ASK_TIMEOUT,
        })
        .await;
    match r {
        Ok((status, body)) if status.is_success() => raft_store::codec::decode(&body)
            .map(Some)
            .map_err(|e| format!("{name}: undecodable answer ({e})")),
        // A witness, or a director on nftables: nothing to wait for.
        Ok((hyper::StatusCode::NOT_IMPLEMENTED, _)) => Ok(None),
        Ok((status, body)) => Err(format!(
            "{name}: {status} {}",
            String::from_utf8_lossy(&body).trim()
        )),
        Err(e) => Err(format!("{name}: {e}")),
    }
}

/// Asks `peer` (None: every other member) for the connections it forwards, then waits
/// until this kernel holds them all, or [`LIMIT`]. Answers a one-line summary and
/// whether it failed (a peer not asked, or connections still missing).
pub async fn catch_up(node: &Arc<DirectorNode>, peer: Option<&str>) -> (String, bool) {
    let started = Instant::now();
    let peers = node.peers(peer);
    let mut asks = tokio::task::JoinSet::new();
    for (name, addr) in peers {
        let node = node.clone();
        asks.spawn(async move { ask(&node, &name, &addr).await });
    }
    let mut wanted = BTreeSet::new();
    let mut from = Vec::new();
    let mut problems = Vec::new();
    while let Some(joined) = asks.join_next().await {
        match joined.unwrap_or_else(|e| Err(e.to_string())) {
            Ok(Some(list)) if list.forwarding => {
                from.push(format!("{} ({})", list.from, list.keys.len()));
                wanted.extend(list.keys);
            }
            Ok(_) => {}
            Err(e) => problems.push(e),
        }
    }
    let mut left = wanted.len();
    while left > 0 && started.elapsed() < LIMIT {
        let local = tokio::task::spawn_blocking(conns::read)
            .await
            .unwrap_or_else(|e| Err(e.to_string()));
        match local {
            Ok(local) => left = missing(&wanted, &local),
            Err(e) => {
                problems.push(e);
                break;
            }
        }
        if left > 0 {
            tokio::time::sleep(POLL).await;
        }
    }
    let ms = started.elapsed().as_millis();
    let mut summary = if wanted.is_empty() {
        "no director forwards connections".to_string()
    } else if left == 0 {
        format!(
            "all {} connection(s) of {} here in {ms} ms",
            wanted.len(),
            from.join(", ")
        )
    } else {
        format!(
            "{left} of {} connection(s) of {} still missing after {ms} ms (their sync daemon resends a connection only as it changes or every 50 packets)",
            wanted.len(),
            from.join(", ")
        )
    };
    let failed = left > 0 || !problems.is_empty();
    if !problems.is_empty() {
        summary.push_str(&format!("; not asked: {}", problems.join("; ")));
    }
    (summary, failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(cport: u16, state: &str) -> Conn {
        Conn {
            key: ConnKey {
                proto: "TCP".into(),
                client: "198.18.116.101".parse().unwrap(),
                cport,
                vaddr: "198.18.116.134".parse().unwrap(),
                vport: 7000,
            },
            dest: "198.18.116.131".parse().unwrap(),
            dport: 7000,
            state: state.into(),
            expires: 900,
        }
    }

    #[test]
    fn a_connection_counts_as_here_in_any_state() {
        let wanted: BTreeSet<ConnKey> = [conn(1, "ESTABLISHED"), conn(2, "ESTABLISHED")]
            .into_iter()
            .map(|c| c.key)
            .collect();
        assert_eq!(missing(&wanted, &[]), 2);
        assert_eq!(missing(&wanted, &[conn(1, "SYN_RECV")]), 1);
        assert_eq!(
            missing(
                &wanted,
                &[conn(2, "ESTABLISHED"), conn(1, "FIN_WAIT"), conn(3, "NONE")]
            ),
            0
        );
    }

    #[test]
    fn the_list_crosses_the_wire_intact() {
        let list = ConnList {
            from: "lvs02".into(),
            forwarding: true,
            keys: vec![conn(40001, "ESTABLISHED").key],
        };
        let bytes = raft_store::codec::encode(&list).unwrap();
        let back: ConnList = raft_store::codec::decode(&bytes).unwrap();
        assert_eq!(back.keys, list.keys);
        assert!(back.forwarding);
    }
}

//! The quorum gate's probes (issue 23; the rule is `actors::vrrp::quorum`): every
//! [`PROBE_EVERY`] this director asks each other voter `GET /cluster/ping` over the
//! cluster transport (the port Raft uses, so a partition of Raft is a partition here)
//! and reports who answered within the round to the Director, which judges contact
//! with a majority and moves its VRRP instances to FAULT and back.

use crate::director::DirectorNode;
use crate::transport::client::Call;
use ::actors::vrrp::quorum::PROBE_EVERY;
use hyper::Method;
use std::sync::Arc;
use std::time::Instant;

pub const PING_PATH: &str = "/cluster/ping";

/// One probe round: the other voters, those that answered (and when), whether this
/// director votes.
#[derive(Debug, Clone)]
pub struct Round {
    pub others: Vec<String>,
    pub answered: Vec<(String, Instant)>,
    pub self_votes: bool,
    /// The round took far longer than it may (this process was stopped or starved): its
    /// silence says nothing about the network.
    pub stalled: bool,
}

/// Probes the voters forever, handing each round to `report`.
pub fn spawn(node: Arc<DirectorNode>, report: impl Fn(Round) + Send + 'static) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(PROBE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let started = Instant::now();
            let members = node.members();
            let self_votes = members.iter().any(|m| m.name == node.name && m.role == "voter");
            let others: Vec<(String, String)> = members
                .into_iter()
                .filter(|m| m.name != node.name && m.role == "voter")
                .map(|m| (m.name, m.addr))
                .collect();
            let mut probes = tokio::task::JoinSet::new();
            for (name, addr) in &others {
                let (node, name, addr) = (node.clone(), name.clone(), addr.clone());
                probes.spawn(async move { ping(&node, &addr).await.then(|| (name, Instant::now())) });
            }
            let mut answered = Vec::new();
            let deadline = tokio::time::Instant::now() + PROBE_EVERY;
            while let Ok(Some(joined)) = tokio::time::timeout_at(deadline, probes.join_next()).await {
                if let Ok(Some(answer)) = joined {
                    answered.push(answer);
                }
            }
            probes.abort_all();
            report(Round {
                others: others.into_iter().map(|(n, _)| n).collect(),
                answered,
                self_votes,
                stalled: started.elapsed() > PROBE_EVERY * 4,
            });
        }
    });
}

/// Whether the director at `addr` answers the ping within a probe interval. Any HTTP
/// answer is contact (a director of an older version answers 404).
async fn ping(node: &DirectorNode, addr: &str) -> bool {
    let r = node
        .client
        .send(Call {
            method: Method::GET,
            addr,
            path: PING_PATH,
            content_type: "text/plain",
            headers: &[],
            body: Vec::new(),
            timeout: PROBE_EVERY,
        })
        .await;
    r.is_ok()
}

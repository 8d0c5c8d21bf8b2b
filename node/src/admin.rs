//! The HTTP routes of a director: Raft RPC from peers (`/raft/*`, codec-encoded) and the
//! admin API (`/v1/*`, JSON). Errors are `{"error": {kind, message, ...}}` with a status to
//! match; a refused request changes nothing.

// Handlers return early with the finished error response; it is the `Err` value.
#![allow(clippy::result_large_err)]

use crate::auth::{
    authenticate, authorize, forwarded, forwarded_header, need, required, Need, Refusal, FORWARDED_IDENTITY,
};
use crate::director::{now_ms, DirectorNode};
use crate::security::{audit, request_summary, Security};
use crate::settings::check_name;
use crate::transport::client::Call;
use crate::transport::raft_network::{
    APPEND_PATH, CONTENT_TYPE, INCARNATION_HEADER, SNAPSHOT_PATH, VOTE_PATH,
};
use crate::transport::server::{BodyError, Peer, Req, Routes};
use bytes::Bytes;
use ha_config::access::{Identity, Proof, Role};
use ha_config::api::*;
use ha_config::bundle;
use ha_config::keyed::{Delta, KeyedCluster};
use http_body_util::Full;
use hyper::{Method, Response, StatusCode};
use openraft::error::{ClientWriteError, RaftError};
use openraft::ChangeMembers;
use raft_store::codec;
use raft_store::events::{Command, ConfigEvent, Proposal};
use raft_store::state::{Applied, ClusterState, HistoryEntry};
use raft_store::types::{node_id, Director, NodeId};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

type Reply = Response<Full<Bytes>>;

/// Raft messages carry up to `max_payload_entries` configs or one snapshot chunk.
const RAFT_MAX_BODY: usize = 256 * 1024 * 1024;
/// Set on a request a follower forwards to the leader (never forwarded twice).
const FORWARDED: &str = "x-ha-forwarded-by";
/// How long a new learner may take to catch up before it is taken out again.
const CATCH_UP: Duration = Duration::from_secs(30);
const MAX_HISTORY_PAGE: u64 = 10_000;
/// How long `GET /v1/status?wait_version=` waits by default, and at most.
const STATUS_WAIT_DEFAULT: Duration = Duration::from_secs(10);
const STATUS_WAIT_MAX: Duration = Duration::from_secs(60);

pub struct Api {
    node: Arc<DirectorNode>,
    /// One membership change at a time (Raft allows one; the history credits its author).
    membership: tokio::sync::Mutex<()>,
    /// The director's actors (None: control plane only).
    runtime: Option<crate::runtime::Runtime>,
    /// Whether test hooks (`/v1/debug/*`) are served.
    test_hooks: bool,
    /// Test hook: proposals stop (forever) before Raft sees them, or once committed before
    /// the reply, so a test can kill the leader at that point.
    hold_proposals: std::sync::atomic::AtomicU8,
    /// TLS, tokens, and the audit trail's rate limit.
    security: Security,
}

impl Api {
    pub fn new(node: Arc<DirectorNode>, security: Security) -> Self {
        Api {
            node,
            security,
            membership: tokio::sync::Mutex::new(()),
            runtime: None,
            test_hooks: false,
            hold_proposals: std::sync::atomic::AtomicU8::new(HOLD_NONE),
        }
    }

    pub fn with_runtime(mut self, runtime: Option<crate::runtime::Runtime>, test_hooks: bool) -> Self {
        self.runtime = runtime;
        self.test_hooks = test_hooks;
        self
    }
}

fn json<T: Serialize>(status: StatusCode, v: &T) -> Reply {
    let body = serde_json::to_vec_pretty(v).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}").into_bytes());
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

fn api_error(status: StatusCode, e: ApiError) -> Reply {
    json(status, &ErrorBody { error: e })
}

fn err(status: StatusCode, kind: &str, message: impl Into<String>) -> Reply {
    api_error(
        status,
        ApiError {
            kind: kind.to_string(),
            message: message.into(),
            diagnostics: Vec::new(),
            current_version: None,
        },
    )
}

fn raw(status: StatusCode, content_type: &str, body: Vec<u8>) -> Reply {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

fn role_name(state: openraft::ServerState) -> &'static str {
    match state {
        openraft::ServerState::Leader => "leader",
        openraft::ServerState::Follower => "follower",
        openraft::ServerState::Candidate => "candidate",
        openraft::ServerState::Learner => "learner",
        openraft::ServerState::Shutdown => "shutdown",
    }
}

fn query_params(q: &str) -> BTreeMap<String, String> {
    q.split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (k.to_string(), percent_decode(v)),
            None => (kv.to_string(), String::new()),
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A `u64` query parameter, or an error naming it.
fn u64_param(params: &BTreeMap<String, String>, name: &str) -> Result<Option<u64>, Reply> {
    match params.get(name) {
        None => Ok(None),
        Some(v) => v.parse::<u64>().map(Some).map_err(|_| {
            err(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("query parameter `{name}`: expected a non-negative integer, got {v:?}"),
            )
        }),
    }
}

fn parse_json<T: serde::de::DeserializeOwned>(body: &Bytes, what: &str) -> Result<T, Reply> {
    if body.is_empty() {
        return Err(err(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("empty body: expected a JSON {what}"),
        ));
    }
    serde_json::from_slice(body).map_err(|e| {
        err(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("invalid {what}: {e}"),
        )
    })
}

/// `director`: this director's name, for errors that are about it.
fn write_error(director: &str, e: RaftError<NodeId, ClientWriteError<NodeId, Director>>) -> Reply {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => err(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "leadership changed before the entry committed; retry (a retry with the same proposal id commits once)",
        ),
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
            err(StatusCode::CONFLICT, "conflict", format!("membership change refused: {e}"))
        }
        // 503: nothing was acknowledged; a client goes on to another director (a retry with
        // the same proposal id commits once).
        RaftError::Fatal(e) => err(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!(
                "director {director}: raft stopped ({}); the change is not committed here",
                crate::store_recovery::plain_cause(&e.to_string())
            ),
        ),
    }
}

impl Routes for Api {
    fn admit(&self, parts: &hyper::http::request::Parts, peer: &Peer) -> Result<Identity, Reply> {
        let path = parts.uri.path();
        let need = need(&parts.method, path);
        let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
        let who = authenticate(
            required(need, self.security.tls.is_some(), self.security.tokens.is_some()),
            peer.cert.as_ref(),
            header("authorization"),
            self.security.tokens.as_deref(),
        )
        .and_then(|via| {
            // Raft RPC speaks for its sender only.
            if need == Need::Director && header(FORWARDED_IDENTITY).is_some() {
                return Err(Refusal::Forbidden(format!(
                    "{FORWARDED_IDENTITY} is not accepted on Raft RPC"
                )));
            }
            // A director's certificate changes things (or forwards a caller's change) only
            // while it is a member; before that it may only join under its own name.
            let joining =
                parts.method == Method::POST && path == "/v1/members" && header(FORWARDED_IDENTITY).is_none();
            if via.role == Role::Director
                && via.proof == Proof::Certificate
                && need == Need::Change
                && !joining
            {
                let members = self.node.members();
                if !members.is_empty() && !members.iter().any(|m| m.name == via.name) {
                    return Err(Refusal::Forbidden(format!(
                        "{via} is not a member of the cluster"
                    )));
                }
            }
            forwarded(via, header(FORWARDED_IDENTITY))
        })
        .and_then(|who| authorize(&who, need).map(|()| who));
        match who {
            Ok(who) => Ok(who),
            Err(refusal) => {
                let (status, kind, message) = match refusal {
                    Refusal::Unauthenticated(m) => (StatusCode::UNAUTHORIZED, "unauthenticated", m),
                    Refusal::Forbidden(m) => (StatusCode::FORBIDDEN, "forbidden", m),
                };
                if need != Need::Read {
                    let subject = peer
                        .cert
                        .as_ref()
                        .map(|c| c.name.clone())
                        .unwrap_or_else(|| peer.addr.ip().to_string());
                    // Refusals of an authenticated caller are all recorded; anonymous ones at
                    // most once per source and quiet time (they cannot flood the journal).
                    let authenticated = status == StatusCode::FORBIDDEN;
                    if (need == Need::Change && authenticated)
                        || self.security.refusal_due(&format!("{subject} {path} {message}"))
                    {
                        audit(
                            &self.node.events,
                            &self.node.name,
                            &subject,
                            &format!(
                                "refused {} {path} from {}: {} {message}",
                                parts.method,
                                peer.addr,
                                status.as_u16()
                            ),
                        );
                    }
                }
                let mut reply = err(status, kind, message);
                if status == StatusCode::UNAUTHORIZED {
                    reply.headers_mut().insert(
                        "www-authenticate",
                        hyper::header::HeaderValue::from_static("Bearer"),
                    );
                }
                Err(reply)
            }
        }
    }

    fn connection_refused(&self, peer: SocketAddr, reason: &str) {
        if self.security.refusal_due(&format!("{} {reason}", peer.ip())) {
            tracing::warn!(director = %self.node.name, %peer, "connection refused: {reason}");
            audit(
                &self.node.events,
                &self.node.name,
                &peer.ip().to_string(),
                &format!("connection from {peer} refused: {reason}"),
            );
        }
    }

    fn body_limit(&self, _method: &Method, path: &str) -> usize {
        if path.starts_with("/raft/") {
            RAFT_MAX_BODY
        } else if path == crate::flow_sync::FLOWS_PATH {
            crate::flow_sync::MAX_BODY
        } else if path == "/v1/proposals" {
            self.node.max_proposal_bytes
        } else {
            self.node.max_request_bytes
        }
    }

    fn body_error(&self, _path: &str, e: BodyError) -> Reply {
        match e {
            BodyError::TooLarge { limit } => err(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("request body exceeds {limit} bytes"),
            ),
            BodyError::Io(m) => err(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("reading the body: {m}"),
            ),
        }
    }

    async fn handle(&self, req: Req) -> Reply {
        if need(&req.method, &req.path) != Need::Change {
            return self.route(req).await;
        }
        let (who, method, path, peer) = (req.who.clone(), req.method.clone(), req.path.clone(), req.peer);
        let reply = self.route(req).await;
        let status = reply.status();
        let outcome = if status.is_success() {
            "accepted"
        } else {
            "refused"
        };
        audit(
            &self.node.events,
            &self.node.name,
            &who.name,
            &request_summary(
                &who,
                method.as_str(),
                &path,
                &peer.to_string(),
                status.as_u16(),
                outcome,
            ),
        );
        reply
    }
}

impl Api {
    async fn route(&self, req: Req) -> Reply {
        let path = req.path.clone();
        match (&req.method, path.as_str()) {
            (&Method::POST, p) if p.starts_with("/raft/") && !self.incarnation_matches(&req) => raw(
                StatusCode::CONFLICT,
                "text/plain",
                format!(
                    "{} has incarnation {}; not the member the sender knows (store wiped?)",
                    self.node.name, self.node.incarnation
                )
                .into_bytes(),
            ),
            (&Method::POST, APPEND_PATH) => self.raft_append(&req).await,
            (&Method::POST, VOTE_PATH) => self.raft_vote(&req).await,
            (&Method::POST, SNAPSHOT_PATH) => self.raft_snapshot(&req).await,
            (&Method::POST, crate::flow_sync::FLOWS_PATH) => self.cluster_flows(&req),
            (&Method::GET, crate::flow_sync::FLOWS_PATH) => self.pinned_flows(&req).await,
            (&Method::GET, crate::ipvs_catch_up::CONNS_PATH) => self.ipvs_conns(&req).await,
            (&Method::GET, crate::quorum::PING_PATH) => {
                raw(StatusCode::OK, "text/plain", self.node.name.clone().into_bytes())
            }
            (&Method::POST, "/v1/proposals") => self.propose(&req).await,
            // A director whose store failed cannot know the committed configuration: a
            // client reads it from another (503: hactl goes on to the next).
            (&Method::GET, p) if p.starts_with("/v1/config") && self.node.store_failure().is_some() => {
                let cause = self.node.store_failure().map(|f| f.cause).unwrap_or_default();
                err(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    format!(
                        "director {}: its store failed ({cause}); its configuration may be behind the cluster's",
                        self.node.name
                    ),
                )
            }
            (&Method::GET, "/v1/config") => self.config(&req).await,
            (&Method::GET, "/v1/config/tree") => self.config_tree().await,
            (&Method::GET, "/v1/config/slots") => self.config_slots(&req).await,
            (&Method::GET, "/v1/status") => self.status(&req).await,
            (&Method::GET, "/v1/history") => self.history(&req),
            (&Method::GET, "/v1/verify") => self.verify().await,
            (&Method::GET, "/metrics") => self.metrics().await,
            (&Method::GET, "/v1/table") => self.table().await,
            (&Method::GET, "/v1/events") => self.events(&req),
            (&Method::GET, "/v1/replay") => self.replay(&req).await,
            (&Method::POST, "/v1/debug/hold-table") if self.test_hooks => self.hold_table(&req),
            (&Method::POST, "/v1/debug/hold-proposals") if self.test_hooks => self.hold_proposals(&req),
            (&Method::GET, "/v1/members") => json(
                StatusCode::OK,
                &MembersResponse {
                    members: self.node.members(),
                },
            ),
            (&Method::POST, "/v1/members") => self.add_member(&req).await,
            (&Method::DELETE, p) if p.starts_with("/v1/members/") => {
                let name = percent_decode(&p["/v1/members/".len()..]);
                self.remove_member(&req, &name).await
            }
            (_, p) if p.starts_with("/v1/") || p.starts_with("/raft/") || p.starts_with("/cluster/") => err(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no route {} {p}", req.method),
            ),
            _ => err(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no route {} {path}", req.method),
            ),
        }
    }
}

/// 501: this director has no data plane that pins flows (a witness, the IPVS backend);
/// senders stop sending it flows for a while.
fn not_syncing() -> Reply {
    raw(
        StatusCode::NOT_IMPLEMENTED,
        "text/plain",
        b"flows: this director does not sync flows (no data plane that pins them)".to_vec(),
    )
}

/// Raft RPC handlers: decode, hand to openraft, encode its `Result`.
impl Api {
    /// Every flow this director pins, for a director catching up (flow sync).
    async fn pinned_flows(&self, req: &Req) -> Reply {
        // A member's certificate only: the answer names every client.
        if let Err(reply) = self.check_sender(req, node_id(&req.who.name)) {
            return reply;
        }
        let flows = match &self.runtime {
            Some(rt) => rt.pinned_flows().await,
            None => None,
        };
        match flows {
            Some(Ok(flows)) => {
                let batch = ::actors::lb::flows::FlowBatch {
                    from: self.node.name.clone(),
                    flows,
                    learned_at_us: 0,
                };
                encoded(&batch)
            }
            Some(Err(e)) => raw(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                format!("flows: {e}").into_bytes(),
            ),
            None => not_syncing(),
        }
    }

    /// The connections this director's IPVS kernel forwards, for a director catching up
    /// before it takes a VIP back (`lvs_sync_daemon`, issue 22).
    async fn ipvs_conns(&self, req: &Req) -> Reply {
        // A member's certificate only: the answer names every client.
        if let Err(reply) = self.check_sender(req, node_id(&req.who.name)) {
            return reply;
        }
        let list = match &self.runtime {
            Some(rt) => rt.ipvs_conns().await,
            None => None,
        };
        match list {
            Some(Ok(mut list)) => {
                list.from = self.node.name.clone();
                encoded(&list)
            }
            Some(Err(e)) => raw(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                format!("IPVS connections: {e}").into_bytes(),
            ),
            None => raw(
                StatusCode::NOT_IMPLEMENTED,
                "text/plain",
                b"IPVS connections: this director's data plane is not IPVS".to_vec(),
            ),
        }
    }

    /// Flows another director forwards (flow sync, issue 22): pinned in this director's
    /// kernel so that it forwards them alike if it takes the VIP over.
    fn cluster_flows(&self, req: &Req) -> Reply {
        let batch: ::actors::lb::flows::FlowBatch = match codec::decode(&req.body) {
            Ok(b) => b,
            Err(e) => return raw(StatusCode::BAD_REQUEST, "text/plain", e.to_string().into_bytes()),
        };
        if let Err(reply) = self.check_sender(req, node_id(&batch.from)) {
            return reply;
        }
        if batch.flows.len() > ::actors::lb::flows::MAX_BATCH {
            return raw(
                StatusCode::PAYLOAD_TOO_LARGE,
                "text/plain",
                format!(
                    "flows: {} records, at most {} in a batch",
                    batch.flows.len(),
                    ::actors::lb::flows::MAX_BATCH
                )
                .into_bytes(),
            );
        }
        match self
            .runtime
            .as_ref()
            .and_then(|rt| rt.install_flows(batch.flows, batch.learned_at_us))
        {
            Some(true) => raw(StatusCode::NO_CONTENT, "text/plain", Vec::new()),
            Some(false) => raw(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                b"flows: the install queue is full; batch dropped".to_vec(),
            ),
            None => not_syncing(),
        }
    }

    fn incarnation_matches(&self, req: &Req) -> bool {
        req.headers
            .get(INCARNATION_HEADER)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v == self.node.incarnation)
    }

    /// A Raft RPC must come from the member it claims to be sent by: the certificate's
    /// name must be the sender's (ids are hashes of names) and, once this director knows
    /// the membership, a member's.
    fn check_sender(&self, req: &Req, sender: NodeId) -> Result<(), Reply> {
        let who = &req.who;
        if who.proof != Proof::Certificate {
            return Ok(()); // no TLS: nothing to check against
        }
        let membership = self.node.metrics().membership_config.membership().clone();
        let known = membership.nodes().count() > 0;
        let member = membership
            .get_node(&node_id(&who.name))
            .is_some_and(|d| d.name == who.name);
        let problem = if node_id(&who.name) != sender {
            let claimed = membership
                .get_node(&sender)
                .map(|d| d.name.clone())
                .unwrap_or_else(|| format!("id {sender}"));
            Some(format!("certificate of {:?} used to send as {claimed}", who.name))
        } else if known && !member {
            Some(format!("{:?} is not a member of the cluster", who.name))
        } else {
            None
        };
        let Some(problem) = problem else { return Ok(()) };
        if self
            .security
            .refusal_due(&format!("raft {} {problem}", req.peer.ip()))
        {
            tracing::warn!(director = %self.node.name, peer = %req.peer, path = %req.path, "cluster RPC refused: {problem}");
            audit(
                &self.node.events,
                &self.node.name,
                &who.name,
                &format!("refused cluster RPC {} from {}: {problem}", req.path, req.peer),
            );
        }
        Err(raw(
            StatusCode::FORBIDDEN,
            "text/plain",
            format!("refused: {problem}").into_bytes(),
        ))
    }

    async fn raft_append(&self, req: &Req) -> Reply {
        match codec::decode::<openraft::raft::AppendEntriesRequest<raft_store::types::TypeConfig>>(&req.body)
        {
            Ok(rpc) => match self.check_sender(req, rpc.vote.leader_id().node_id) {
                Ok(()) => encoded(&self.node.raft().append_entries(rpc).await),
                Err(reply) => reply,
            },
            Err(e) => raw(StatusCode::BAD_REQUEST, "text/plain", e.to_string().into_bytes()),
        }
    }

    async fn raft_vote(&self, req: &Req) -> Reply {
        match codec::decode::<openraft::raft::VoteRequest<NodeId>>(&req.body) {
            Ok(rpc) => match self.check_sender(req, rpc.vote.leader_id().node_id) {
                Ok(()) => encoded(&self.node.raft().vote(rpc).await),
                Err(reply) => reply,
            },
            Err(e) => raw(StatusCode::BAD_REQUEST, "text/plain", e.to_string().into_bytes()),
        }
    }

    async fn raft_snapshot(&self, req: &Req) -> Reply {
        match codec::decode::<openraft::raft::InstallSnapshotRequest<raft_store::types::TypeConfig>>(
            &req.body,
        ) {
            Ok(rpc) => match self.check_sender(req, rpc.vote.leader_id().node_id) {
                Ok(()) => encoded(&self.node.raft().install_snapshot(rpc).await),
                Err(reply) => reply,
            },
            Err(e) => raw(StatusCode::BAD_REQUEST, "text/plain", e.to_string().into_bytes()),
        }
    }

    /// The author recorded for a change: the authenticated identity, with what the
    /// client claimed when that differs.
    fn credited(who: &Identity, claimed: &str) -> String {
        if who.proof == Proof::Unauthenticated || claimed == who.name {
            claimed.to_string()
        } else if claimed.is_empty() {
            who.name.clone()
        } else {
            format!("{} (claimed {claimed})", who.name)
        }
    }
}

fn encoded<T: Serialize>(v: &T) -> Reply {
    match codec::encode(v) {
        Ok(b) => raw(StatusCode::OK, CONTENT_TYPE, b),
        Err(e) => raw(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain",
            e.to_string().into_bytes(),
        ),
    }
}

/// Leader routing for writes.
impl Api {
    /// `None`: this director is the leader, handle here. `Some(reply)`: forwarded (or refused).
    async fn route_to_leader(&self, req: &Req) -> Option<Reply> {
        if let Some(f) = self.node.store_failure() {
            // 503: a client goes on to the next director, which can take the change.
            return Some(err(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                format!(
                    "director {} cannot take changes: its store failed ({}); raft is stopped there \
                     until the store takes writes again",
                    self.node.name, f.cause
                ),
            ));
        }
        if self.node.is_leader() {
            return None;
        }
        if req.headers.contains_key(FORWARDED) {
            return Some(err(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                format!(
                    "{} is not the leader (leadership is moving); retry",
                    self.node.name
                ),
            ));
        }
        match self.node.wait_leader(Duration::from_secs(3)).await {
            None => Some(err(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "no leader: is a majority of the directors up?",
            )),
            Some((id, _)) if id == self.node.id => None,
            Some((_, leader)) => Some(self.forward(&leader, req).await),
        }
    }

    async fn forward(&self, leader: &Director, req: &Req) -> Reply {
        let path = if req.query.is_empty() {
            req.path.clone()
        } else {
            format!("{}?{}", req.path, req.query)
        };
        tracing::debug!(to = %leader, %path, "forwarding to the leader");
        // With TLS the leader sees our certificate and takes the caller's identity from us;
        // without, it checks the caller's token itself.
        let identity = forwarded_header(&req.who);
        let mut headers: Vec<(&str, &str)> = vec![(FORWARDED, &self.node.name)];
        if self.node.tls.is_some() {
            headers.push((FORWARDED_IDENTITY, &identity));
        } else if let Some(a) = req.headers.get("authorization").and_then(|v| v.to_str().ok()) {
            headers.push(("authorization", a));
        }
        let r = self
            .node
            .client
            .send(Call {
                method: req.method.clone(),
                addr: &leader.addr,
                path: &path,
                content_type: "application/json",
                headers: &headers,
                body: req.body.to_vec(),
                timeout: Duration::from_secs(120),
            })
            .await;
        match r {
            Ok((status, body)) => raw(status, "application/json", body.to_vec()),
            Err(e) => err(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                format!("forwarding to the leader {leader}: {e}"),
            ),
        }
    }
}

/// Proposals.
impl Api {
    async fn propose(&self, req: &Req) -> Reply {
        let p: ProposeRequest = match parse_json(&req.body, "proposal") {
            Ok(p) => p,
            Err(r) => return r,
        };
        if let Err(r) = check_proposal_fields(&p) {
            return r;
        }
        if p.patch {
            return self.propose_patch(req, p).await;
        }
        if p.dry_run {
            return err(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "field `dry_run`: only for patches (`hactl propose -f --dry-run` shows the change itself)",
            );
        }
        // Validate on whichever director receives it (early, located errors); the leader
        // validates again below, since forwarding sends the same body.
        // Parsing a whole file is O(file) (a second at 10,000 virtual servers): off the
        // async workers, which also carry Raft's heartbeats.
        let (main, files) = (p.main.clone(), p.files.clone());
        let loaded = tokio::task::spawn_blocking(move || {
            let (parsed, loaded) = bundle::load_bundle(&main, &files);
            let diagnostics: Vec<String> = loaded.diags.iter().map(|d| d.render(&parsed.sources)).collect();
            let errors = loaded.diags.errors().count();
            let target = (errors == 0).then(|| KeyedCluster::from_cluster(&loaded.cluster));
            (diagnostics, errors, target)
        })
        .await;
        let (diagnostics, target) = match loaded {
            Ok((diagnostics, 0, Some(target))) => (diagnostics, target),
            Ok((diagnostics, errors, _)) => return invalid_config(&p.main, errors, diagnostics),
            Err(e) => {
                return err(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    format!("parsing: {e}"),
                )
            }
        };
        let hash = target.hash();
        if hash != p.hash {
            return err(
                StatusCode::UNPROCESSABLE_ENTITY,
                "hash_mismatch",
                format!(
                    "field `hash`: the client computed {} but {} computes {hash} for the same files \
                     (hactl and hanode of different versions?)",
                    p.hash, self.node.name
                ),
            );
        }
        if let Some(reply) = self.route_to_leader(req).await {
            return reply;
        }
        // The log carries only the keys that change, against the version this leader has
        // applied; if another proposal commits first, the delta is computed again.
        self.commit(req, &p, diagnostics, |state| {
            Ok((state.config.delta_to(&target), hash.clone()))
        })
        .await
    }

    /// `--patch`: blocks that replace the committed ones and `delete` lines, applied to
    /// the configuration the leader has committed (so only the leader can validate it).
    async fn propose_patch(&self, req: &Req, p: ProposeRequest) -> Reply {
        if let Some(reply) = self.route_to_leader(req).await {
            return reply;
        }
        // O(patch) and O(change), but a patch may be large: then off the async workers' queue.
        let large = p.files.values().map(String::len).sum::<usize>() > LARGE_PATCH;
        let parsed = heavy(large, || bundle::parse_bundle(&p.main, &p.files));
        let sources = parsed.sources.clone();
        let main = p.main.clone();
        let expected = p.hash.clone();
        let make = |state: &ClusterState| {
            let mut members = state.voters.clone();
            members.extend(state.learners.iter().cloned());
            let patched = heavy(large, || {
                ha_config::patch::apply(&parsed, &state.config, &members)
            });
            if patched.diags.has_errors() {
                let rendered = patched.diags.iter().map(|d| d.render(&sources)).collect();
                return Err(invalid_config(&main, patched.diags.errors().count(), rendered));
            }
            if patched.delta.is_empty() {
                return Err(api_error(
                    StatusCode::CONFLICT,
                    ApiError {
                        kind: "no_change".into(),
                        message: format!(
                            "the patch changes nothing in version {}; nothing committed",
                            state.version
                        ),
                        diagnostics: Vec::new(),
                        current_version: Some(state.version),
                    },
                ));
            }
            let hash = patched.result.hash();
            // A client that sends a file's changed blocks names the file's hash: the result
            // must be exactly that file.
            if !expected.is_empty() && hash != expected {
                return Err(api_error(
                    StatusCode::CONFLICT,
                    ApiError {
                        kind: "conflict".into(),
                        message: format!(
                            "the changed blocks applied to version {} give {hash}, not the file's {expected}: \
                             the configuration changed meanwhile; compare again",
                            state.version
                        ),
                        diagnostics: Vec::new(),
                        current_version: Some(state.version),
                    },
                ));
            }
            Ok((patched.delta, hash))
        };
        if p.dry_run {
            let (state, _) = self.node.state.current().await;
            return match make(&state) {
                Err(reply) => reply,
                Ok((delta, hash)) => json(
                    StatusCode::OK,
                    &ProposeResponse {
                        version: state.version,
                        hash,
                        log_index: 0,
                        duplicate: false,
                        warnings: Vec::new(),
                        changes: change_lines(&state.config, &delta),
                        dry_run: true,
                    },
                ),
            };
        }
        self.commit(req, &p, Vec::new(), make).await
    }

    /// Proposes the change `make` computes against the leader's applied state, computing it
    /// again while other proposals commit first.
    async fn commit(
        &self,
        req: &Req,
        p: &ProposeRequest,
        warnings: Vec<String>,
        make: impl Fn(&ClusterState) -> Result<(Delta, String), Reply>,
    ) -> Reply {
        // A retry of a proposal that already committed gets its result, whatever the base.
        match self.node.state.committed_as(&p.proposal_id) {
            Ok(Some(version)) => return self.duplicate(version, 0, warnings),
            Ok(None) => {}
            Err(e) => return err(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
        }
        let author = Self::credited(&req.who, &p.author);
        let accepted_at_ms = now_ms();
        for _ in 0..MAX_REBASES {
            let (state, _) = self.node.state.current().await;
            if let Some(base) = p.base_version {
                if base != state.version {
                    return stale(base, state.version);
                }
            }
            let (delta, hash) = match make(&state) {
                Ok(x) => x,
                Err(reply) => return reply,
            };
            let changes = change_lines(&state.config, &delta);
            let proposal = Proposal {
                delta,
                derived_from: state.version,
                hash,
                author: author.clone(),
                reason: p.reason.clone(),
                client_time_ms: p.client_time_ms,
                base_version: p.base_version,
                proposal_id: p.proposal_id.clone(),
            };
            let cmd = Command {
                event: ConfigEvent::ConfigProposed(Box::new(proposal)),
                accepted_at_ms,
                accepted_by: self.node.name.clone(),
            };
            self.held(HOLD_BEFORE_COMMIT, "before commit").await;
            match self.node.raft().client_write(cmd).await {
                Ok(resp) => match resp.data {
                    Applied::Committed { version, hash } => {
                        tracing::info!(version, %hash, log_index = resp.log_id.index, "proposal committed");
                        self.held(HOLD_AFTER_COMMIT, "after commit").await;
                        return json(
                            StatusCode::OK,
                            &ProposeResponse {
                                version,
                                hash,
                                log_index: resp.log_id.index,
                                duplicate: false,
                                warnings,
                                changes,
                                dry_run: false,
                            },
                        );
                    }
                    Applied::Duplicate { version } => {
                        return self.duplicate(version, resp.log_id.index, warnings)
                    }
                    Applied::StaleBase { base, current } => return stale(base, current),
                    Applied::Rebase {
                        derived_from,
                        current,
                    } => {
                        tracing::info!(
                            derived_from,
                            current,
                            proposal = %p.proposal_id,
                            "another proposal committed first: computing the change again"
                        );
                    }
                    Applied::HashMismatch { claimed, actual } => {
                        return err(
                            StatusCode::UNPROCESSABLE_ENTITY,
                            "hash_mismatch",
                            format!("hash {claimed} does not match the configuration ({actual})"),
                        )
                    }
                    other => {
                        return err(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            "internal",
                            format!("unexpected apply result {other:?}"),
                        )
                    }
                },
                Err(e) => return write_error(&self.node.name, e),
            }
        }
        err(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!("other proposals kept committing first ({MAX_REBASES} tries); propose again"),
        )
    }
}

/// Patch text above which parsing and applying it leave the async worker
/// (`block_in_place`): below, handing the worker's other tasks to another thread costs more
/// than the work (a one-block patch takes ~0.1 ms).
const LARGE_PATCH: usize = 64 * 1024;

/// Runs `f` in place, or off the async workers' queue when `large`.
fn heavy<R>(large: bool, f: impl FnOnce() -> R) -> R {
    if large {
        tokio::task::block_in_place(f)
    } else {
        f()
    }
}

/// The semantic changes a delta makes to `config`, one line each (O(change)).
fn change_lines(config: &KeyedCluster, delta: &Delta) -> Vec<String> {
    let (before, after) = config.around(delta);
    ha_config::diff::diff(&before, &after)
        .iter()
        .map(|c| c.to_string())
        .collect()
}

fn invalid_config(main: &str, errors: usize, diagnostics: Vec<String>) -> Reply {
    api_error(
        StatusCode::UNPROCESSABLE_ENTITY,
        ApiError {
            kind: "invalid_config".into(),
            message: format!("{main} has {errors} error(s); nothing was committed"),
            diagnostics,
            current_version: None,
        },
    )
}

const HOLD_NONE: u8 = 0;
const HOLD_BEFORE_COMMIT: u8 = 1;
const HOLD_AFTER_COMMIT: u8 = 2;

/// How often a leader computes a proposal's change again when others commit first.
const MAX_REBASES: usize = 16;

impl Api {
    fn duplicate(&self, version: u64, log_index: u64, warnings: Vec<String>) -> Reply {
        let hash = self
            .node
            .state
            .committed_version(version)
            .ok()
            .flatten()
            .and_then(|h| match h.event {
                ConfigEvent::ConfigProposed(p) => Some(p.hash),
                _ => None,
            })
            .unwrap_or_default();
        json(
            StatusCode::OK,
            &ProposeResponse {
                version,
                hash,
                log_index,
                duplicate: true,
                warnings,
                changes: Vec::new(),
                dry_run: false,
            },
        )
    }
}

fn stale(base: u64, current: u64) -> Reply {
    api_error(
        StatusCode::CONFLICT,
        ApiError {
            kind: "stale_base".into(),
            message: format!(
                "stale base version: written against version {base}, but the cluster is at version {current}; \
                 review the changes since, then propose again"
            ),
            diagnostics: Vec::new(),
            current_version: Some(current),
        },
    )
}

fn check_proposal_fields(p: &ProposeRequest) -> Result<(), Reply> {
    let bad = |field: &str, msg: &str| {
        Err(err(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("field `{field}`: {msg}"),
        ))
    };
    if p.proposal_id.is_empty() || p.proposal_id.len() > 128 {
        return bad("proposal_id", "must be 1 to 128 characters");
    }
    if p.author.len() > 256 {
        return bad("author", "longer than 256 bytes");
    }
    if p.reason.len() > 4096 {
        return bad("reason", "longer than 4096 bytes");
    }
    if p.main.is_empty() || !p.files.contains_key(&p.main) {
        return bad("main", "must name one of `files`");
    }
    if p.files.len() > 1000 {
        return bad("files", "more than 1000 files");
    }
    Ok(())
}

/// Reads: config, status, history.
impl Api {
    async fn config_tree(&self) -> Reply {
        let (state, _) = self.node.state.current().await;
        json(
            StatusCode::OK,
            &ConfigTree {
                version: state.version,
                hash: state.hash,
                buckets: state.config.bucket_hashes(),
            },
        )
    }

    async fn config_slots(&self, req: &Req) -> Reply {
        let params = query_params(&req.query);
        let version = match u64_param(&params, "version") {
            Ok(Some(v)) => v,
            Ok(None) => {
                return err(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    "query parameter `version` is required",
                )
            }
            Err(r) => return r,
        };
        let mut buckets = Vec::new();
        for b in params.get("buckets").map(String::as_str).unwrap_or("").split(',') {
            if b.is_empty() {
                continue;
            }
            match b.parse::<usize>() {
                Ok(n) if n < ha_config::keyed::BUCKETS => buckets.push(n),
                _ => {
                    return err(
                        StatusCode::BAD_REQUEST,
                        "bad_request",
                        format!(
                            "query parameter `buckets`: {b:?} is not a bucket (0..{})",
                            ha_config::keyed::BUCKETS
                        ),
                    )
                }
            }
        }
        if buckets.len() > MAX_SLOT_BUCKETS {
            return err(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("query parameter `buckets`: more than {MAX_SLOT_BUCKETS} buckets; read /v1/config instead"),
            );
        }
        let (state, _) = self.node.state.current().await;
        if state.version != version {
            return api_error(
                StatusCode::CONFLICT,
                ApiError {
                    kind: "conflict".into(),
                    message: format!(
                        "the configuration is at version {}, not {version}: read the tree again",
                        state.version
                    ),
                    diagnostics: Vec::new(),
                    current_version: Some(state.version),
                },
            );
        }
        json(
            StatusCode::OK,
            &ConfigSlots {
                version: state.version,
                hash: state.hash,
                slots: state.config.bucket_slots(&buckets),
            },
        )
    }

    async fn config(&self, req: &Req) -> Reply {
        let params = query_params(&req.query);
        let wanted = match u64_param(&params, "version") {
            Ok(v) => v,
            Err(r) => return r,
        };
        let (state, _) = self.node.state.current().await;
        let version = wanted.unwrap_or(state.version);
        let keyed = match self.node.state.config_at(version).await {
            Ok(Some(k)) => k,
            Ok(None) => {
                return err(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    format!(
                        "no config version {version} (this director is at version {})",
                        state.version
                    ),
                )
            }
            Err(e) => return err(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
        };
        let hash = if version == 0 { String::new() } else { keyed.hash() };
        // O(configuration): off the async workers' queue.
        let config = tokio::task::block_in_place(|| keyed.to_cluster());
        let text = match tokio::task::block_in_place(|| config.print()) {
            Ok(t) => t,
            Err(e) => return err(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
        };
        json(
            StatusCode::OK,
            &ConfigResponse {
                version,
                hash,
                text,
                config,
            },
        )
    }

    /// `GET /v1/status[?wait_version=V[&wait_ms=T]]`: this director's view. With
    /// `wait_version`, the answer waits until this director has applied version V or
    /// later, or for T ms (default 10 s, at most 60 s); the caller reads `version` to tell
    /// which. A script (or `hactl propose --wait`) waits for every director this way
    /// instead of asking again and again.
    async fn status(&self, req: &Req) -> Reply {
        let params = query_params(&req.query);
        let (wait_version, wait_ms) =
            match (u64_param(&params, "wait_version"), u64_param(&params, "wait_ms")) {
                (Ok(v), Ok(t)) => (v, t),
                (Err(e), _) | (_, Err(e)) => return e,
            };
        if let Some(v) = wait_version {
            let limit = wait_ms
                .map(Duration::from_millis)
                .unwrap_or(STATUS_WAIT_DEFAULT)
                .min(STATUS_WAIT_MAX);
            let mut applied = self.node.state.subscribe();
            // A timeout answers with the version reached; a closed channel (shutdown) too.
            let _ = tokio::time::timeout(limit, applied.wait_for(|s| s.version >= v)).await;
        } else if wait_ms.is_some() {
            return err(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "query parameter `wait_ms`: only with `wait_version`",
            );
        }
        let m = self.node.metrics();
        let committed = self
            .node
            .raft()
            .with_raft_state(|s| s.committed.map(|l| l.index))
            .await
            .ok()
            .flatten();
        let (state, _) = self.node.state.current().await;
        let runtime = match &self.runtime {
            Some(r) => r.status().await,
            None => None,
        };
        let leader = m.current_leader.and_then(|id| {
            m.membership_config
                .membership()
                .get_node(&id)
                .map(|d| d.name.clone())
        });
        let role = role_name(m.state);
        json(
            StatusCode::OK,
            &StatusResponse {
                name: self.node.name.clone(),
                id: self.node.id,
                incarnation: self.node.incarnation.clone(),
                role: role.into(),
                term: m.current_term,
                leader,
                committed_index: committed,
                applied_index: m.last_applied.map(|l| l.index),
                last_log_index: m.last_log_index,
                snapshot_index: m.snapshot.map(|l| l.index),
                purged_index: m.purged.map(|l| l.index),
                version: state.version,
                hash: state.hash,
                history_len: state.history_len,
                members: self.node.members(),
                runtime,
                security: Some(self.security.status()),
                store_failure: self.node.store_failure().map(|f| {
                    format!(
                        "{} (for {} s)",
                        f.cause,
                        now_ms().saturating_sub(f.since_ms) / 1000
                    )
                }),
            },
        )
    }

    /// `GET /v1/events?from=&limit=`: this director's runtime events.
    fn events(&self, req: &Req) -> Reply {
        let params = query_params(&req.query);
        let (from, limit) = match (u64_param(&params, "from"), u64_param(&params, "limit")) {
            (Ok(f), Ok(l)) => (f.unwrap_or(1), l.unwrap_or(1000).min(MAX_HISTORY_PAGE)),
            (Err(e), _) | (_, Err(e)) => return e,
        };
        match self.node.journal.list(from, limit as usize) {
            Ok(items) => json(StatusCode::OK, &items),
            Err(e) => err(StatusCode::INTERNAL_SERVER_ERROR, "journal", e.to_string()),
        }
    }

    /// `GET /v1/replay?at=MS` or `?version=V`: this director's state at that moment,
    /// rebuilt from the committed history and its runtime events.
    async fn replay(&self, req: &Req) -> Reply {
        use crate::replay::{Configs, Moment, ReplayError};
        let params = query_params(&req.query);
        let moment = match (u64_param(&params, "at"), u64_param(&params, "version")) {
            (Ok(Some(t)), Ok(None)) => Moment::Time(t),
            (Ok(None), Ok(Some(v))) => Moment::Version(v),
            (Err(e), _) | (_, Err(e)) => return e,
            _ => {
                return err(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    "give exactly one of at (Unix ms) and version",
                )
            }
        };
        // A long journal takes a while to fold: off the async workers.
        let node = self.node.clone();
        let folded = tokio::task::spawn_blocking(move || {
            let history = node.state.history(1, u64::MAX).map_err(|e| e.to_string())?;
            let configs = Configs::from_history(&node.name, &history);
            crate::replay::replay(&node.name, &configs, node.journal.iter_from(1), moment)
                .map_err(|e| e.to_string())
        })
        .await;
        match folded {
            Ok(Ok(Ok(r))) => json(StatusCode::OK, &r),
            Ok(Ok(Err(e))) => {
                let kind = match e {
                    ReplayError::NoSuchVersion { .. } => "no_such_version",
                    ReplayError::NeverApplied { .. } => "never_applied",
                    ReplayError::Dropped { .. } => "dropped",
                };
                err(StatusCode::NOT_FOUND, kind, e.to_string())
            }
            Ok(Err(e)) => err(StatusCode::INTERNAL_SERVER_ERROR, "journal", e),
            Err(e) => err(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
        }
    }

    /// `GET /v1/table`: the kernel's table, the desired one and their differences.
    async fn table(&self) -> Reply {
        let Some(rt) = &self.runtime else {
            return err(
                StatusCode::NOT_FOUND,
                "no_runtime",
                format!("{} runs the control plane only (no data plane)", self.node.name),
            );
        };
        let Some((backend, applied, tables)) = rt.tables().await else {
            return err(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the actors are not running",
            );
        };
        match tables {
            Err(e) => err(
                StatusCode::SERVICE_UNAVAILABLE,
                "kernel",
                format!("reading the kernel table: {e}"),
            ),
            Ok((desired, kernel)) => {
                let differences = ::actors::lb::diff::diff(&desired, &kernel)
                    .iter()
                    .map(|op| op.to_string())
                    .collect();
                json(
                    StatusCode::OK,
                    &ha_config::api::TableResponse {
                        name: self.node.name.clone(),
                        backend,
                        applied_version: applied,
                        kernel: ::actors::lb::print::ipvsadm_ln(&kernel),
                        differences,
                        kernel_json: crate::replay::table_json(&kernel),
                        desired_json: crate::replay::table_json(&desired),
                    },
                )
            }
        }
    }

    /// Test hook: `{"version": N}` keeps the data plane at version N, `{"version": null}`
    /// releases it.
    fn hold_table(&self, req: &Req) -> Reply {
        #[derive(serde::Deserialize)]
        struct Hold {
            version: Option<u64>,
        }
        let hold: Hold = match serde_json::from_slice(&req.body) {
            Ok(h) => h,
            Err(e) => return err(StatusCode::BAD_REQUEST, "bad_request", format!("body: {e}")),
        };
        match &self.runtime {
            Some(rt) => {
                rt.hold_table(hold.version);
                json(StatusCode::OK, &serde_json::json!({"hold": hold.version}))
            }
            None => err(StatusCode::NOT_FOUND, "no_runtime", "no data plane here"),
        }
    }

    fn hold_proposals(&self, req: &Req) -> Reply {
        let phase = match query_params(&req.query).get("phase").map(String::as_str) {
            Some("before-commit") => HOLD_BEFORE_COMMIT,
            Some("after-commit") => HOLD_AFTER_COMMIT,
            Some("none") => HOLD_NONE,
            other => {
                return err(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    format!("query parameter `phase`: before-commit, after-commit or none, not {other:?}"),
                )
            }
        };
        self.hold_proposals
            .store(phase, std::sync::atomic::Ordering::SeqCst);
        json(StatusCode::OK, &serde_json::json!({"phase": phase}))
    }

    /// The test hook's hold, if set to `phase`: logs it and never returns.
    async fn held(&self, phase: u8, what: &str) {
        if self.hold_proposals.load(std::sync::atomic::Ordering::SeqCst) == phase {
            tracing::warn!("proposal held {what} (test hook)");
            std::future::pending::<()>().await;
        }
    }

    /// `GET /metrics`: Prometheus text exposition.
    async fn metrics(&self) -> Reply {
        use crate::metrics::Exposition;
        let m = self.node.metrics();
        let (state, _) = self.node.state.current().await;
        let mut e = Exposition::default();
        let role = role_name(m.state);
        e.family("hanode_raft_role", "gauge", "1 for this director's Raft role.");
        for r in ["leader", "follower", "candidate", "learner", "shutdown"] {
            e.sample(
                "hanode_raft_role",
                &[("role", r)],
                if r == role { 1.0 } else { 0.0 },
            );
        }
        e.single(
            "hanode_raft_term",
            "gauge",
            "Current Raft term.",
            m.current_term as f64,
        );
        let last_log = m.last_log_index.unwrap_or(0);
        let applied = m.last_applied.map(|l| l.index).unwrap_or(0);
        e.single(
            "hanode_raft_last_log_index",
            "gauge",
            "Last Raft log index.",
            last_log as f64,
        );
        e.single(
            "hanode_raft_applied_index",
            "gauge",
            "Last applied Raft log index.",
            applied as f64,
        );
        e.single(
            "hanode_raft_apply_lag",
            "gauge",
            "Log entries not yet applied here.",
            last_log.saturating_sub(applied) as f64,
        );
        e.single(
            "hanode_config_version",
            "gauge",
            "Committed config version applied here.",
            state.version as f64,
        );
        e.single(
            "hanode_history_entries",
            "gauge",
            "Entries in the committed history.",
            state.history_len as f64,
        );
        if let Ok(b) = self.node.journal.bounds() {
            e.single(
                "hanode_journal_events",
                "gauge",
                "Runtime events kept in this director's journal (a checkpoint counts as one).",
                b.len() as f64,
            );
        }
        e.single(
            "hanode_journal_max_events",
            "gauge",
            "The cap on runtime events kept (journal.max_events).",
            self.node.journal.max_events() as f64,
        );
        e.single(
            "hanode_journal_dropped_total",
            "counter",
            "Runtime events dropped by retention (a checkpoint holds their state).",
            self.node.journal.dropped() as f64,
        );
        if let Some(r) = &self.runtime {
            let (pinned, [sent, lost, dropped]) = r.flow_counts();
            if let Some(f) = pinned {
                e.family(
                    "hanode_flows_total",
                    "counter",
                    "Flow sync (issue 22): flows this director's kernel reported forwarding (learned; unplaced: not described), flows received from other directors and what became of them (installed, skipped: no such service or real server here, dropped: queue full or refused), kernel log overruns.",
                );
                for (event, v) in [
                    ("learned", f.learned),
                    ("unplaced", f.unplaced),
                    ("received", f.received),
                    ("installed", f.installed),
                    ("skipped", f.skipped),
                    ("dropped", f.dropped),
                    ("log_overruns", f.log_overruns),
                ] {
                    e.sample("hanode_flows_total", &[("event", event)], v as f64);
                }
            }
            if let Some(f) = pinned {
                e.family(
                    "hanode_flow_sync_lag_seconds",
                    "histogram",
                    "Flows received from other directors: from the sender's read of its kernel's flow log to pinned here (the directors' clocks must agree).",
                );
                e.histogram(
                    "hanode_flow_sync_lag_seconds",
                    &[],
                    &crate::metrics::Histogram::from_counts(f.lag, f.lag_count, f.lag_sum_seconds),
                );
            }
            e.family(
                "hanode_flows_sent_total",
                "counter",
                "Learned flows sent to other directors, once per peer: taken (sent), not taken (lost: peer down, slow or refusing), or dropped before sending (queue full).",
            );
            for (outcome, v) in [("sent", sent), ("lost", lost), ("dropped", dropped)] {
                e.sample("hanode_flows_sent_total", &[("outcome", outcome)], v as f64);
            }
        }
        let rt = match &self.runtime {
            Some(r) => r.status().await.zip(r.metrics().await),
            None => None,
        };
        if let Some((status, (c, instances))) = rt {
            e.family(
                "hanode_vrrp_state",
                "gauge",
                "1 for the state a VRRP instance is in.",
            );
            for i in &instances {
                let now = i.state.to_string();
                for st in ["INIT", "BACKUP", "MASTER", "FAULT"] {
                    e.sample(
                        "hanode_vrrp_state",
                        &[("instance", &i.name), ("state", st)],
                        if st == now { 1.0 } else { 0.0 },
                    );
                }
            }
            let per_instance =
                |e: &mut Exposition,
                 name: &str,
                 kind: &str,
                 help: &str,
                 v: &dyn Fn(&::actors::vrrp::actor::InstanceStatus) -> f64| {
                    e.family(name, kind, help);
                    for i in &instances {
                        e.sample(name, &[("instance", &i.name)], v(i));
                    }
                };
            let count = |m: &BTreeMap<String, u64>, name: &str| m.get(name).copied().unwrap_or(0) as f64;
            per_instance(
                &mut e,
                "hanode_vrrp_priority",
                "gauge",
                "Effective VRRP priority.",
                &|i| f64::from(i.priority),
            );
            per_instance(
                &mut e,
                "hanode_vrrp_transitions_total",
                "counter",
                "VRRP state transitions since start.",
                &|i| count(&c.transitions, &i.name),
            );
            per_instance(
                &mut e,
                "hanode_vrrp_fast_takeovers_total",
                "counter",
                "Takeovers on a peer's death signal.",
                &|i| count(&c.fast_takeovers, &i.name),
            );
            per_instance(
                &mut e,
                "hanode_vrrp_adverts_sent_total",
                "counter",
                "VRRP adverts sent.",
                &|i| i.adverts_sent as f64,
            );
            per_instance(
                &mut e,
                "hanode_vrrp_adverts_received_total",
                "counter",
                "VRRP adverts received and accepted.",
                &|i| i.adverts_received as f64,
            );
            e.family(
                "hanode_vrrp_adverts_rejected_total",
                "counter",
                "VRRP adverts rejected, by cause.",
            );
            for i in &instances {
                for (cause, n) in &i.rejected {
                    e.sample(
                        "hanode_vrrp_adverts_rejected_total",
                        &[("instance", &i.name), ("cause", cause)],
                        *n as f64,
                    );
                }
            }
            e.family(
                "hanode_real_server_up",
                "gauge",
                "1 while the checkers say a real server is up.",
            );
            for svc in &status.services {
                for r in &svc.real_servers {
                    e.sample(
                        "hanode_real_server_up",
                        &[("virtual_server", &svc.name), ("real_server", &r.name)],
                        if r.up { 1.0 } else { 0.0 },
                    );
                }
            }
            e.family(
                "hanode_checker_transitions_total",
                "counter",
                "Checker verdict changes, by checker.",
            );
            for (id, n) in &c.check_transitions {
                e.sample("hanode_checker_transitions_total", &[("checker", id)], *n as f64);
            }
            e.single(
                "hanode_dataplane_applied_version",
                "gauge",
                "Config version whose table the kernel holds without errors.",
                status.dataplane.applied_version.unwrap_or(0) as f64,
            );
            e.single(
                "hanode_dataplane_in_sync",
                "gauge",
                "1 when the kernel table equals the desired one.",
                if status.dataplane.in_sync { 1.0 } else { 0.0 },
            );
            e.single(
                "hanode_dataplane_gaps",
                "gauge",
                "Ops the kernel refuses now.",
                status.dataplane.gaps.len() as f64,
            );
            e.single(
                "hanode_dataplane_syncs_total",
                "counter",
                "Table syncs.",
                c.syncs as f64,
            );
            e.single(
                "hanode_dataplane_sync_errors_total",
                "counter",
                "Syncs with refused ops.",
                c.sync_errors as f64,
            );
            e.single(
                "hanode_dataplane_sync_ops_total",
                "counter",
                "Kernel ops applied by syncs.",
                c.sync_ops as f64,
            );
            e.single(
                "hanode_dataplane_drift_repairs_total",
                "counter",
                "Kernel changes made by others, put back.",
                c.drift_repairs as f64,
            );
            e.family(
                "hanode_dataplane_sync_duration_seconds",
                "histogram",
                "Duration of a table sync.",
            );
            e.histogram("hanode_dataplane_sync_duration_seconds", &[], &c.sync_duration);
            e.family(
                "hanode_check_duration_seconds",
                "histogram",
                "Duration of one health-check probe, by checker kind.",
            );
            for (i, kind) in ::actors::check::stats::KINDS.iter().enumerate() {
                let d = ::actors::check::stats::STATS.durations(i);
                let h = crate::metrics::Histogram::from_counts(d.buckets, d.count, d.sum_seconds);
                e.histogram("hanode_check_duration_seconds", &[("kind", kind)], &h);
            }
            e.family(
                "hanode_peer_alive",
                "gauge",
                "1 while a peer's process holds our connection.",
            );
            for p in &status.peers {
                e.sample(
                    "hanode_peer_alive",
                    &[("peer", &p.name)],
                    if p.liveness == "alive" { 1.0 } else { 0.0 },
                );
            }
            e.family(
                "hanode_check_probe_changes_total",
                "counter",
                "Probes started, stopped or retargeted (told a new set of checker ids) by configuration changes.",
            );
            for (change, n) in [
                ("started", c.probes_started),
                ("stopped", c.probes_stopped),
                ("retargeted", c.probes_retargeted),
            ] {
                e.sample(
                    "hanode_check_probe_changes_total",
                    &[("change", change)],
                    n as f64,
                );
            }
            e.single(
                "hanode_flow_catch_up_failures_total",
                "counter",
                "Catch-ups of other directors' flows that did not complete (a peer not asked in time, flows not pinned).",
                c.flow_catch_up_failures as f64,
            );
            e.single(
                "hanode_peer_death_signals_total",
                "counter",
                "Peer process deaths seen.",
                c.death_signals as f64,
            );
            e.single(
                "hanode_config_fence_held",
                "gauge",
                "1 while claims of MASTER wait for the kernel table.",
                if status.fence.starts_with("held") {
                    1.0
                } else {
                    0.0
                },
            );
        }
        raw(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            e.finish().into_bytes(),
        )
    }

    async fn verify(&self) -> Reply {
        let r = match self.node.state.verify_history().await {
            Ok(v) => VerifyResponse {
                node: self.node.name.clone(),
                ok: true,
                entries: v.entries,
                version: v.version,
                head: v.head,
                first_bad: None,
            },
            Err(bad) => {
                tracing::error!(director = %self.node.name, seq = bad.seq, version = ?bad.version, "history verification failed: {}", bad.reason);
                VerifyResponse {
                    node: self.node.name.clone(),
                    ok: false,
                    entries: bad.seq.saturating_sub(1),
                    version: bad.version.unwrap_or(0),
                    head: String::new(),
                    first_bad: Some(BadEntryInfo {
                        seq: bad.seq,
                        version: bad.version,
                        reason: bad.reason,
                    }),
                }
            }
        };
        json(StatusCode::OK, &r)
    }

    fn history(&self, req: &Req) -> Reply {
        let params = query_params(&req.query);
        let (from, to, limit) = match (
            u64_param(&params, "from"),
            u64_param(&params, "to"),
            u64_param(&params, "limit"),
        ) {
            (Ok(f), Ok(t), Ok(l)) => (
                f.unwrap_or(1),
                t.unwrap_or(u64::MAX),
                l.unwrap_or(1000).min(MAX_HISTORY_PAGE),
            ),
            (Err(r), _, _) | (_, Err(r), _) | (_, _, Err(r)) => return r,
        };
        let to = to.min(from.saturating_add(limit.saturating_sub(1)));
        match self.node.state.history(from.max(1), to) {
            Ok(entries) => json(
                StatusCode::OK,
                &entries.iter().map(history_item).collect::<Vec<_>>(),
            ),
            Err(e) => err(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
        }
    }
}

enum CatchUp {
    Done,
    LostLeadership,
    TimedOut,
}

pub fn history_item(h: &HistoryEntry) -> HistoryItem {
    let (kind, hash, proposal_id) = match &h.event {
        ConfigEvent::ConfigProposed(p) => ("config", Some(p.hash.clone()), Some(p.proposal_id.clone())),
        ConfigEvent::MembershipRequested { .. } => ("membership_request", None, None),
        ConfigEvent::MembershipChanged { .. } => ("membership", None, None),
    };
    HistoryItem {
        seq: h.seq,
        version: h.version,
        log_index: h.log_index,
        at_ms: h.at_ms,
        accepted_by: h.accepted_by.clone(),
        kind: kind.into(),
        author: h.event.author().to_string(),
        reason: h.event.reason().to_string(),
        summary: h.summary.clone(),
        hash,
        proposal_id,
        prev_entry_hash: h.prev_hash.clone(),
        entry_hash: h.hash.clone(),
    }
}

/// Membership.
impl Api {
    async fn record_request(&self, author: &str, reason: &str, action: String) -> Result<(), Reply> {
        let cmd = Command {
            event: ConfigEvent::MembershipRequested {
                author: if author.is_empty() {
                    "unknown".into()
                } else {
                    author.into()
                },
                reason: reason.into(),
                action,
            },
            accepted_at_ms: now_ms(),
            accepted_by: self.node.name.clone(),
        };
        self.node
            .raft()
            .client_write(cmd)
            .await
            .map(|_| ())
            .map_err(|e| write_error(&self.node.name, e))
    }

    fn members_reply(&self) -> Reply {
        json(
            StatusCode::OK,
            &MembersResponse {
                members: self.node.members(),
            },
        )
    }

    async fn add_member(&self, req: &Req) -> Reply {
        let r: AddMemberRequest = match parse_json(&req.body, "member (name, addr)") {
            Ok(r) => r,
            Err(e) => return e,
        };
        if let Err(e) = check_name(&r.name) {
            return err(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("field `name`: {e}"),
            );
        }
        if r.addr.parse::<SocketAddr>().is_err() {
            return err(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("field `addr`: expected IP:PORT, got {:?}", r.addr),
            );
        }
        // A director may add itself only, under the name its certificate gives it.
        if req.who.role == Role::Director && req.who.proof == Proof::Certificate && req.who.name != r.name {
            return err(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!(
                    "field `name`: the certificate of director {:?} cannot join (or add) {:?}",
                    req.who.name, r.name
                ),
            );
        }
        if let Some(reply) = self.route_to_leader(req).await {
            return reply;
        }
        let _one_at_a_time = self.membership.lock().await;
        // Nothing is recorded unless the new director answers, under the name it was given.
        let incarnation = match self.probe(req, &r.name, &r.addr).await {
            Ok(i) => i,
            Err(reply) => return reply,
        };
        let id = node_id(&r.name);
        let m = self.node.metrics();
        let membership = m.membership_config.membership().clone();
        let is_voter = membership.voter_ids().any(|v| v == id);
        if let Some(existing) = membership.get_node(&id) {
            if existing.name != r.name {
                return err(
                    StatusCode::CONFLICT,
                    "conflict",
                    format!(
                        "field `name`: {:?} has the same id as member {:?}; choose another name",
                        r.name, existing.name
                    ),
                );
            }
            if existing.addr != r.addr {
                return err(
                    StatusCode::CONFLICT,
                    "conflict",
                    format!(
                        "{} is already a member at {}; remove it first to move it",
                        r.name, existing.addr
                    ),
                );
            }
            if existing.incarnation != incarnation {
                return err(
                    StatusCode::CONFLICT,
                    "conflict",
                    format!(
                        "{} is a member, but its store is not the one that joined (data directory \
                         wiped?); a member without its log could undo committed changes: run \
                         `hactl cluster remove {}` first, then let it join again",
                        r.name, r.name
                    ),
                );
            }
            if is_voter {
                return self.members_reply();
            }
        }
        if let Some((_, other)) = membership
            .nodes()
            .find(|(nid, d)| **nid != id && d.addr == r.addr)
        {
            return err(
                StatusCode::CONFLICT,
                "conflict",
                format!(
                    "field `addr`: {} is already the address of {}",
                    r.addr, other.name
                ),
            );
        }
        if let Err(reply) = self
            .record_request(
                &Self::credited(&req.who, &r.author),
                &r.reason,
                format!("add {} at {}", r.name, r.addr),
            )
            .await
        {
            return reply;
        }
        let director = Director {
            name: r.name.clone(),
            addr: r.addr.clone(),
            incarnation,
        };
        if let Err(e) = self.node.raft().add_learner(id, director, false).await {
            return write_error(&self.node.name, e);
        }
        tracing::info!(member = %r.name, addr = %r.addr, "learner added; waiting for it to catch up");
        match self.wait_caught_up(id).await {
            CatchUp::Done => {}
            CatchUp::LostLeadership => {
                return err(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    format!(
                        "leadership moved while {} was catching up; it is a learner now: retry to promote it",
                        r.name
                    ),
                )
            }
            CatchUp::TimedOut => {
                let removed = self
                    .node
                    .raft()
                    .change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([id])), false)
                    .await;
                let what = match removed {
                    Ok(_) => "it was taken out again".to_string(),
                    Err(e) => format!("it is still a learner (taking it out failed: {e})"),
                };
                return err(
                    StatusCode::GATEWAY_TIMEOUT,
                    "unavailable",
                    format!(
                        "{} at {} did not catch up within {}s; {what}",
                        r.name,
                        r.addr,
                        CATCH_UP.as_secs()
                    ),
                );
            }
        }
        match self
            .node
            .raft()
            .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
            .await
        {
            Ok(_) => {
                tracing::info!(member = %r.name, "promoted to voter");
                self.members_reply()
            }
            Err(e) => write_error(&self.node.name, e),
        }
    }

    async fn wait_caught_up(&self, id: NodeId) -> CatchUp {
        let deadline = tokio::time::Instant::now() + CATCH_UP;
        while tokio::time::Instant::now() < deadline {
            let m = self.node.metrics();
            if m.state != openraft::ServerState::Leader {
                return CatchUp::LostLeadership;
            }
            let target = m.last_log_index;
            let matched = m
                .replication
                .as_ref()
                .and_then(|r| r.get(&id).cloned().flatten())
                .map(|l| l.index);
            if matched.is_some() && matched >= target.map(|t| t.saturating_sub(1)) {
                return CatchUp::Done;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        CatchUp::TimedOut
    }

    /// Asks `addr` who it is: it must answer `/v1/status` as `name`. Returns its incarnation.
    async fn probe(&self, req: &Req, name: &str, addr: &str) -> Result<String, Reply> {
        // Without TLS, a director with tokens wants the caller's token (with TLS, ours
        // is a director's certificate).
        let auth = req.headers.get("authorization").and_then(|v| v.to_str().ok());
        let headers: Vec<(&str, &str)> = match auth {
            Some(a) if self.node.tls.is_none() => vec![("authorization", a)],
            _ => Vec::new(),
        };
        let answer = self
            .node
            .client
            .send(Call {
                method: Method::GET,
                addr,
                path: "/v1/status",
                content_type: "application/json",
                headers: &headers,
                body: Vec::new(),
                timeout: Duration::from_secs(3),
            })
            .await;
        // 502, not 503: retrying elsewhere does not help, the target is what is down.
        let unreachable = |why: String| {
            err(
                StatusCode::BAD_GATEWAY,
                "unreachable",
                format!("the leader cannot reach {name} at {addr}: {why}; nothing was changed"),
            )
        };
        match answer {
            Err(e) => Err(unreachable(e.to_string())),
            Ok((status, body)) if status.is_success() => {
                match serde_json::from_slice::<StatusResponse>(&body) {
                    Ok(st) if st.name == name => Ok(st.incarnation),
                    Ok(st) => Err(err(
                        StatusCode::CONFLICT,
                        "conflict",
                        format!(
                            "{addr} is director {:?}, not {name:?}; nothing was changed",
                            st.name
                        ),
                    )),
                    Err(e) => Err(unreachable(format!("unexpected answer ({e})"))),
                }
            }
            Ok((status, _)) => Err(unreachable(format!("answered {status}"))),
        }
    }

    async fn remove_member(&self, req: &Req, name: &str) -> Reply {
        let params = query_params(&req.query);
        // Only the leader's membership answers: a follower's may lag, and a request
        // forwarded to a leader that has since died can reach a new process at its address
        // that is no member at all (a wiped director rejoining), which must not say 404.
        if let Some(reply) = self.route_to_leader(req).await {
            return reply;
        }
        let m = self.node.metrics();
        let membership = m.membership_config.membership().clone();
        let Some((id, _)) = membership
            .nodes()
            .find(|(_, d)| d.name == name)
            .map(|(i, d)| (*i, d.clone()))
        else {
            let mut names: Vec<String> = membership.nodes().map(|(_, d)| d.name.clone()).collect();
            names.sort();
            return err(
                StatusCode::NOT_FOUND,
                "not_found",
                format!(
                    "no director named {name:?} in the cluster (members: {})",
                    names.join(", ")
                ),
            );
        };
        let _one_at_a_time = self.membership.lock().await;
        let m = self.node.metrics();
        let membership = m.membership_config.membership().clone();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        if voters.contains(&id) && voters.len() == 1 {
            return err(
                StatusCode::CONFLICT,
                "conflict",
                format!("{name} is the last voter; a cluster cannot remove its last voter"),
            );
        }
        let author = Self::credited(&req.who, &params.get("author").cloned().unwrap_or_default());
        let reason = params.get("reason").cloned().unwrap_or_default();
        if let Err(reply) = self
            .record_request(&author, &reason, format!("remove {name}"))
            .await
        {
            return reply;
        }
        let change = if voters.contains(&id) {
            ChangeMembers::RemoveVoters(BTreeSet::from([id]))
        } else {
            ChangeMembers::RemoveNodes(BTreeSet::from([id]))
        };
        match self.node.raft().change_membership(change, false).await {
            Ok(_) => {
                tracing::info!(member = %name, "removed from the cluster");
                self.members_reply()
            }
            Err(e) => write_error(&self.node.name, e),
        }
    }
}

/// Everything the API decodes from a request before it acts on it, without a director:
/// the path, the query parameters, the credentials and forwarded identity, the JSON
/// bodies (proposal, member, hold), a proposal's files (parsed and validated as a commit
/// would), the Raft RPC encodings and a peer certificate. For the fuzz target
/// `admin_request`: it must answer every input with a result, never a panic.
pub fn decode_request(path: &str, query: &str, headers: &[(&str, &str)], body: &[u8]) -> usize {
    let body = Bytes::copy_from_slice(body);
    let mut ok = 0usize;
    let _ = percent_decode(path.strip_prefix("/v1/members/").unwrap_or(path));
    let params = query_params(query);
    for p in ["from", "to", "limit", "version", "at", "wait_version", "wait_ms"] {
        ok += usize::from(u64_param(&params, p).is_ok());
    }
    let header = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| *v)
    };
    let director = Identity {
        name: "lvs02".into(),
        role: Role::Director,
        proof: Proof::Certificate,
    };
    static TOKENS: std::sync::OnceLock<crate::auth::Tokens> = std::sync::OnceLock::new();
    let tokens = TOKENS.get_or_init(|| {
        crate::auth::Tokens::fixed(vec![ha_config::access::TokenEntry {
            name: "deployer".into(),
            role: Role::Operator,
            hash: ha_config::access::hash_token("hat_fuzz"),
        }])
    });
    ok += usize::from(authenticate(true, None, header("authorization"), Some(tokens)).is_ok());
    ok += usize::from(forwarded(director, header(FORWARDED_IDENTITY)).is_ok());
    if let Ok(p) = parse_json::<ProposeRequest>(&body, "proposal") {
        if check_proposal_fields(&p).is_ok() {
            let (_, loaded) = bundle::load_bundle(&p.main, &p.files);
            if !loaded.diags.has_errors() {
                let _ = ha_config::canon::hash(&loaded.cluster);
                ok += 1;
            }
        }
    }
    if let Ok(r) = parse_json::<AddMemberRequest>(&body, "member") {
        ok += usize::from(check_name(&r.name).is_ok() && r.addr.parse::<SocketAddr>().is_ok());
    }
    ok += usize::from(serde_json::from_slice::<serde_json::Value>(&body).is_ok());
    type T = raft_store::types::TypeConfig;
    ok += usize::from(codec::decode::<openraft::raft::AppendEntriesRequest<T>>(&body).is_ok());
    ok += usize::from(codec::decode::<openraft::raft::VoteRequest<NodeId>>(&body).is_ok());
    ok += usize::from(codec::decode::<openraft::raft::InstallSnapshotRequest<T>>(&body).is_ok());
    ok += usize::from(ha_config::tls::cert_identity(&body).is_ok());
    ok
}

#[cfg(test)]
mod tests {
    use super::decode_request;

    #[test]
    fn decode_request_checks_bearer_tokens_against_its_tokens() {
        let with = |h: &str| decode_request("/v1/status", "", &[("authorization", h)], b"");
        let known = with("Bearer hat_fuzz");
        assert_eq!(known, with("Bearer hat_nope") + 1);
        assert_eq!(known, with("Basic x") + 1);
    }
}

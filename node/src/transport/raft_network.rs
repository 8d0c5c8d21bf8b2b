//! openraft's `RaftNetwork` over HTTP: `POST /raft/{append,vote,snapshot}` with codec-encoded
//! (bincode, version byte) bodies. The peer answers with the encoded `Result` of its Raft call.

use super::client::{Call, ClientError, HttpClient};
use hyper::{Method, StatusCode};
use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use raft_store::codec;
use raft_store::types::{Director, NodeId, TypeConfig};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::time::Duration;

pub const APPEND_PATH: &str = "/raft/append";
pub const VOTE_PATH: &str = "/raft/vote";
pub const SNAPSHOT_PATH: &str = "/raft/snapshot";
pub const CONTENT_TYPE: &str = "application/x-ha-raft";
/// The incarnation the sender believes the target has; the target refuses (409) if it
/// has another (its store was wiped since it joined).
pub const INCARNATION_HEADER: &str = "x-ha-target-incarnation";

/// Makes one [`PeerConnection`] per target; all share the pool of [`HttpClient`].
#[derive(Clone)]
pub struct HttpRaftNetwork {
    client: HttpClient,
}

impl HttpRaftNetwork {
    pub fn new(client: HttpClient) -> Self {
        HttpRaftNetwork { client }
    }
}

pub struct PeerConnection {
    client: HttpClient,
    target: NodeId,
    node: Director,
}

impl RaftNetworkFactory<TypeConfig> for HttpRaftNetwork {
    type Network = PeerConnection;

    async fn new_client(&mut self, target: NodeId, node: &Director) -> PeerConnection {
        PeerConnection {
            client: self.client.clone(),
            target,
            node: node.clone(),
        }
    }
}

type RpcResult<T, E> = Result<T, RPCError<NodeId, Director, RaftError<NodeId, E>>>;

impl PeerConnection {
    async fn call<Req, Resp, E>(&self, path: &str, req: &Req, option: &RPCOption) -> RpcResult<Resp, E>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let body = codec::encode(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        // Leave openraft's own deadline the last word; ours only stops a stuck socket.
        let timeout = option.hard_ttl().max(Duration::from_millis(50));
        let (status, bytes) = self
            .client
            .send(Call {
                method: Method::POST,
                addr: &self.node.addr,
                path,
                content_type: CONTENT_TYPE,
                headers: &[(INCARNATION_HEADER, &self.node.incarnation)],
                body,
                timeout,
            })
            .await
            .map_err(|e| match e {
                e @ ClientError::Connect { .. } => RPCError::Unreachable(Unreachable::new(&e)),
                e => RPCError::Network(NetworkError::new(&e)),
            })?;
        if status == StatusCode::CONFLICT {
            // Not the member we knew: treat it as down (back off) until it is re-added.
            let e = std::io::Error::other(format!("{} has another incarnation", self.node));
            return Err(RPCError::Unreachable(Unreachable::new(&e)));
        }
        if status != StatusCode::OK {
            let msg = String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).into_owned();
            let e = std::io::Error::other(format!("{} answered {status}: {msg}", self.node));
            return Err(RPCError::Network(NetworkError::new(&e)));
        }
        let answer: Result<Resp, RaftError<NodeId, E>> =
            codec::decode(&bytes).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        answer
            .map_err(|e| RPCError::RemoteError(RemoteError::new_with_node(self.target, self.node.clone(), e)))
    }
}

impl RaftNetwork<TypeConfig> for PeerConnection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>, openraft::error::Infallible> {
        self.call(APPEND_PATH, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        self.call(SNAPSHOT_PATH, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>, openraft::error::Infallible> {
        self.call(VOTE_PATH, &rpc, &option).await
    }
}

//! The admin API's wire types (JSON), shared by `hanode` (server) and `hactl` (client).
//! Plain data only; no I/O.

use crate::ClusterConfig;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Largest admin request body `hanode` accepts by default (bytes).
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;

/// `POST /v1/proposals`: a cluster configuration as the source files `hactl` read, so the
/// leader re-parses exactly what the operator checked and reports the same diagnostics.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProposeRequest {
    /// Path of the main file, as given to `hactl` (diagnostics use these paths).
    pub main: String,
    /// Every file read (main and includes): path -> content.
    pub files: BTreeMap<String, String>,
    /// The content hash `hactl` computed; the leader refuses if it computes another.
    pub hash: String,
    pub author: String,
    #[serde(default)]
    pub reason: String,
    /// Refuse unless the committed version is still this one.
    #[serde(default)]
    pub base_version: Option<u64>,
    /// Chosen by the client (random); a retry with the same id commits once.
    pub proposal_id: String,
    /// Milliseconds since the Unix epoch on the client.
    #[serde(default)]
    pub client_time_ms: u64,
}

/// A committed (or already committed) proposal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProposeResponse {
    pub version: u64,
    pub hash: String,
    pub log_index: u64,
    /// True when this proposal id had been committed before (a retry).
    #[serde(default)]
    pub duplicate: bool,
    /// Warnings from validation (`FILE:LINE:COL: warning: ...`).
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// Every error response: `{"error": {...}}` with an HTTP status to match.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ApiError,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// Machine-readable: `invalid_config`, `stale_base`, `bad_request`, `too_large`,
    /// `not_found`, `conflict`, `unavailable`, `internal`.
    pub kind: String,
    pub message: String,
    /// Rendered diagnostics (`FILE:LINE:COL: error: ...`) for `invalid_config`.
    #[serde(default)]
    pub diagnostics: Vec<String>,
    /// For `stale_base`: the version the cluster is at.
    #[serde(default)]
    pub current_version: Option<u64>,
}

/// `GET /v1/config[?version=N]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigResponse {
    pub version: u64,
    pub hash: String,
    /// The cluster file (keepalived.conf with `@` lines), canonical form.
    pub text: String,
    pub config: ClusterConfig,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub name: String,
    pub addr: String,
    /// `voter` or `learner`.
    pub role: String,
}

/// `GET /v1/status`: one director's view.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusResponse {
    pub name: String,
    pub id: u64,
    /// Identity of this director's store; changes if its data directory is wiped.
    pub incarnation: String,
    /// `leader`, `follower`, `candidate`, `learner`, `shutdown`.
    pub role: String,
    pub term: u64,
    pub leader: Option<String>,
    pub committed_index: Option<u64>,
    pub applied_index: Option<u64>,
    pub last_log_index: Option<u64>,
    pub snapshot_index: Option<u64>,
    pub purged_index: Option<u64>,
    pub version: u64,
    pub hash: String,
    pub history_len: u64,
    pub members: Vec<Member>,
}

/// One entry of `GET /v1/history?from=&to=` (by history sequence number).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryItem {
    pub seq: u64,
    pub version: u64,
    pub log_index: u64,
    pub at_ms: u64,
    pub accepted_by: String,
    /// `config`, `membership_request`, `membership`.
    pub kind: String,
    pub author: String,
    pub reason: String,
    pub summary: String,
    /// Content hash for `config` entries.
    #[serde(default)]
    pub hash: Option<String>,
    #[serde(default)]
    pub proposal_id: Option<String>,
}

/// `POST /v1/members`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddMemberRequest {
    pub name: String,
    pub addr: String,
    #[serde(default)]
    pub author: String,
    #[serde(default)]
    pub reason: String,
}

/// `POST /v1/members` and `DELETE /v1/members/NAME`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembersResponse {
    pub members: Vec<Member>,
}

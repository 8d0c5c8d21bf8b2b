//! The admin API's wire types (JSON), shared by `hanode` (server) and `hactl` (client).
//! Plain data only; no I/O.

use crate::ClusterConfig;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Largest admin request body `hanode` accepts by default (bytes).
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;

/// Largest proposal body `hanode` accepts by default (bytes): the cluster file travels
/// whole, and 50,000 virtual servers x 4 real servers is about 30 MB of keepalived.conf.
pub const DEFAULT_MAX_PROPOSAL_BYTES: usize = 64 * 1024 * 1024;

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
    /// The files are a patch ([`crate::patch`]): whole blocks replacing the committed
    /// ones and `delete` lines, applied by the leader. `hash` empty: not checked (`hactl
    /// propose --patch`); set: the result must have it (`hactl propose -f` sends a file's
    /// changed blocks), else 409 `conflict`.
    #[serde(default)]
    pub patch: bool,
    /// Compute and return the change, commit nothing (patches).
    #[serde(default)]
    pub dry_run: bool,
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
    /// The semantic changes, one line each.
    #[serde(default)]
    pub changes: Vec<String>,
    /// Nothing was committed (`version` is the current one, `hash` the result's).
    #[serde(default)]
    pub dry_run: bool,
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

/// `GET /v1/config/tree`: the committed configuration's hash tree, for a client to find
/// which buckets its file changes without downloading the configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigTree {
    pub version: u64,
    pub hash: String,
    /// [`crate::keyed::BUCKETS`] bucket hashes (lower-case hex).
    pub buckets: Vec<String>,
}

/// `GET /v1/config/slots?version=V&buckets=B,B,...`: the committed keys in those buckets
/// (409 `conflict` with `current_version` if the configuration is no longer at `V`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigSlots {
    pub version: u64,
    pub hash: String,
    pub slots: Vec<(crate::keyed::Key, crate::keyed::Slot)>,
}

/// At most this many buckets are asked for by `GET /v1/config/slots`; a larger change is
/// compared against the whole configuration (`GET /v1/config`).
pub const MAX_SLOT_BUCKETS: usize = 256;

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
    /// The director's actors (absent on a control-plane-only node).
    #[serde(default)]
    pub runtime: Option<RuntimeStatus>,
    /// How this director's API is protected (absent from older directors).
    #[serde(default)]
    pub security: Option<SecurityStatus>,
    /// Why this director's store takes no writes (a full disk), while it does not: Raft
    /// is stopped here until the store is reopened. None: the store is fine.
    #[serde(default)]
    pub store_failure: Option<String>,
}

/// Transport security and authentication of one director.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityStatus {
    /// Raft RPC and the admin API are served over TLS (mutual between directors).
    pub tls: bool,
    /// Plain HTTP on a non-loopback address was allowed with `--insecure`.
    pub insecure: bool,
    /// Whether callers must authenticate (TLS or a tokens file).
    pub authentication_required: bool,
    /// SHA-256 of the certificate in use.
    #[serde(default)]
    pub cert_fingerprint: Option<String>,
    /// Certificate rotations picked up since the start.
    #[serde(default)]
    pub cert_reloads: u64,
    /// Why the last change of the TLS files could not be used (the old one is kept).
    #[serde(default)]
    pub tls_error: Option<String>,
    /// Bearer tokens known.
    #[serde(default)]
    pub tokens: usize,
    /// Why the tokens file cannot be used as it is now (the tokens loaded before stay).
    #[serde(default)]
    pub tokens_error: Option<String>,
}

/// What a director runs from the committed configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeStatus {
    /// The committed config version the actors were given.
    pub config_version: Option<u64>,
    pub dataplane: DataPlaneInfo,
    /// `open`, `held (table at N, config at M)`, or `stale-config (version N, cluster
    /// unknown)` when cut off from the Raft majority.
    pub fence: String,
    pub instances: Vec<InstanceInfo>,
    pub services: Vec<ServiceInfo>,
    /// Why the actors could not start, if they could not.
    pub errors: Vec<String>,
    /// What the cluster transport says of the other directors' processes.
    #[serde(default)]
    pub peers: Vec<PeerInfo>,
    /// The quorum gate: `off (...)`, `contact with N of M voters`, or `lost: N of M
    /// voters reached; VRRP instances in FAULT` (issue 23).
    #[serde(default)]
    pub quorum_gate: String,
}

/// One other director, as this one's peer-liveness watch sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerInfo {
    pub name: String,
    /// Its transport address.
    pub addr: String,
    /// `alive` (holds our connection), `process gone` (its host refused a connection),
    /// or `unknown` (no answer: frozen, partitioned or down; not a death signal).
    pub liveness: String,
    /// Unix milliseconds of the last change.
    pub since_ms: u64,
    /// Takeovers of an instance mastered by it, by path: `fast` (death signal) or
    /// `timer` (VRRP's master-down timer), as seen by this director.
    #[serde(default)]
    pub fast_takeovers: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataPlaneInfo {
    pub backend: String,
    /// The last config version whose table was applied without errors.
    pub applied_version: Option<u64>,
    pub in_sync: bool,
    /// Ops the kernel refused: (op, error).
    pub gaps: Vec<(String, String)>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceInfo {
    pub name: String,
    pub state: String,
    /// Effective priority (after tracking).
    pub priority: u8,
    pub held_by_fence: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceInfo {
    pub name: String,
    pub quorum_up: bool,
    pub real_servers: Vec<RealServerInfo>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RealServerInfo {
    pub name: String,
    pub up: bool,
    /// The last checker result's reason.
    pub reason: String,
}

/// One runtime event of a director (`GET /v1/events`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, bincode::Encode, bincode::Decode)]
pub struct EventItem {
    /// Per director, from 1.
    pub seq: u64,
    pub at_ms: u64,
    pub node: String,
    /// `vrrp`, `check`, `sync`, `fence`.
    pub kind: String,
    /// The instance, checker or backend concerned.
    pub subject: String,
    pub summary: String,
    /// The event's content in fields (what `hactl replay` folds); absent on events
    /// recorded before it existed and on events replay does not need (peers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<EventDetail>,
}

/// A runtime event's content, by type (`"type"` names the variant in JSON). Decoded by
/// [`detail_wire`] (the same JSON, read without buffering each object first).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, bincode::Encode, bincode::Decode)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventDetail {
    /// The checkers and the data plane now run committed version `version` (the desired
    /// table is computed from it from here on).
    Applied {
        version: u64,
        /// Configured checkers that could not start here (their script user is missing):
        /// `(virtual server, real server, checker)`.
        #[serde(default)]
        unstarted: Vec<(String, String, String)>,
    },
    /// A checker's result changed (or its first result after it started).
    Check {
        vs: String,
        rs: String,
        checker: String,
        up: bool,
        /// A dynamic MISC_CHECK's weight.
        #[serde(default)]
        weight: Option<u32>,
        reason: String,
    },
    /// A VRRP instance changed state.
    VrrpState {
        instance: String,
        from: String,
        to: String,
        priority: u8,
        reason: String,
    },
    /// A VRRP instance's effective priority changed (tracking), its state did not.
    VrrpPriority { instance: String, from: u8, to: u8 },
    /// VRRP instances were reconfigured: the stopped ones are gone.
    VrrpReconfigured {
        kept: Vec<String>,
        started: Vec<String>,
        stopped: Vec<String>,
    },
    /// A data-plane sync: the kernel table is at `version` when `errors` is 0.
    Sync {
        version: Option<u64>,
        ops: u64,
        errors: u64,
        repaired: u64,
    },
    /// The config fence was held or lifted.
    Fence { held: bool, state: String },
    /// Retention dropped the events before this one: what they had built up (replay
    /// starts from here for any later moment).
    Checkpoint(Box<Checkpoint>),
}

impl<'de> Deserialize<'de> for EventDetail {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(detail_wire::DetailVisitor)
    }
}

/// Decoding [`EventDetail`]: what serde derives for an internally tagged enum buffers
/// every object before it looks at `type`, which made decoding most of a replay's time.
/// Our encoder writes `type` first, so the variant is known at once and the rest of the
/// object is read straight into it; an object with `type` elsewhere (another writer) is
/// buffered and decoded the same way. Unknown fields are ignored, as before.
mod detail_wire {
    use super::{Checkpoint, EventDetail};
    use serde::de::value::MapAccessDeserializer;
    use serde::de::{Error, MapAccess, Visitor};
    use serde::Deserialize;

    #[derive(Deserialize)]
    struct Applied {
        version: u64,
        #[serde(default)]
        unstarted: Vec<(String, String, String)>,
    }

    #[derive(Deserialize)]
    struct Check {
        vs: String,
        rs: String,
        checker: String,
        up: bool,
        #[serde(default)]
        weight: Option<u32>,
        reason: String,
    }

    #[derive(Deserialize)]
    struct VrrpState {
        instance: String,
        from: String,
        to: String,
        priority: u8,
        reason: String,
    }

    #[derive(Deserialize)]
    struct VrrpPriority {
        instance: String,
        from: u8,
        to: u8,
    }

    #[derive(Deserialize)]
    struct VrrpReconfigured {
        kept: Vec<String>,
        started: Vec<String>,
        stopped: Vec<String>,
    }

    #[derive(Deserialize)]
    struct Sync {
        version: Option<u64>,
        ops: u64,
        errors: u64,
        repaired: u64,
    }

    #[derive(Deserialize)]
    struct Fence {
        held: bool,
        state: String,
    }

    const TYPES: &[&str] = &[
        "applied",
        "check",
        "vrrp_state",
        "vrrp_priority",
        "vrrp_reconfigured",
        "sync",
        "fence",
        "checkpoint",
    ];

    /// The variant named `ty`, from the fields `d` holds.
    fn variant<'de, D: serde::Deserializer<'de>>(ty: &str, d: D) -> Result<EventDetail, D::Error> {
        Ok(match ty {
            "applied" => {
                let v = Applied::deserialize(d)?;
                EventDetail::Applied {
                    version: v.version,
                    unstarted: v.unstarted,
                }
            }
            "check" => {
                let v = Check::deserialize(d)?;
                EventDetail::Check {
                    vs: v.vs,
                    rs: v.rs,
                    checker: v.checker,
                    up: v.up,
                    weight: v.weight,
                    reason: v.reason,
                }
            }
            "vrrp_state" => {
                let v = VrrpState::deserialize(d)?;
                EventDetail::VrrpState {
                    instance: v.instance,
                    from: v.from,
                    to: v.to,
                    priority: v.priority,
                    reason: v.reason,
                }
            }
            "vrrp_priority" => {
                let v = VrrpPriority::deserialize(d)?;
                EventDetail::VrrpPriority {
                    instance: v.instance,
                    from: v.from,
                    to: v.to,
                }
            }
            "vrrp_reconfigured" => {
                let v = VrrpReconfigured::deserialize(d)?;
                EventDetail::VrrpReconfigured {
                    kept: v.kept,
                    started: v.started,
                    stopped: v.stopped,
                }
            }
            "sync" => {
                let v = Sync::deserialize(d)?;
                EventDetail::Sync {
                    version: v.version,
                    ops: v.ops,
                    errors: v.errors,
                    repaired: v.repaired,
                }
            }
            "fence" => {
                let v = Fence::deserialize(d)?;
                EventDetail::Fence {
                    held: v.held,
                    state: v.state,
                }
            }
            "checkpoint" => EventDetail::Checkpoint(Box::new(Checkpoint::deserialize(d)?)),
            other => return Err(D::Error::unknown_variant(other, TYPES)),
        })
    }

    pub(super) struct DetailVisitor;

    impl<'de> Visitor<'de> for DetailVisitor {
        type Value = EventDetail;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an event detail object with a \"type\"")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<EventDetail, A::Error> {
            let Some(first) = map.next_key::<std::borrow::Cow<'de, str>>()? else {
                return Err(A::Error::missing_field("type"));
            };
            if first == "type" {
                let ty: std::borrow::Cow<'de, str> = map.next_value()?;
                return variant(&ty, MapAccessDeserializer::new(map));
            }
            // `type` is not first: buffer the object, then decode it the same way.
            let mut fields = serde_json::Map::new();
            fields.insert(first.into_owned(), map.next_value()?);
            while let Some((k, v)) = map.next_entry::<String, serde_json::Value>()? {
                fields.insert(k, v);
            }
            let ty = match fields.remove("type") {
                Some(serde_json::Value::String(t)) => t,
                Some(_) => return Err(A::Error::custom("event detail: `type` must be a string")),
                None => return Err(A::Error::missing_field("type")),
            };
            variant(&ty, serde_json::Value::Object(fields)).map_err(A::Error::custom)
        }
    }
}

/// The state a node's runtime events had built up at one point, in place of the events
/// retention dropped (the config itself comes from the committed history, never dropped).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, bincode::Encode, bincode::Decode)]
pub struct Checkpoint {
    /// Runtime events dropped, in total, up to here.
    pub dropped: u64,
    /// The config version the checkers and the data plane ran.
    pub applied: Option<u64>,
    #[serde(default)]
    pub unstarted: Vec<(String, String, String)>,
    /// Every checker's last result (`reason` None: not checked yet).
    pub verdicts: Vec<CheckpointVerdict>,
    /// Each virtual server's quorum (it has hysteresis: the next outcome depends on it).
    pub quorum: Vec<(String, bool)>,
    pub instances: Vec<ReplayInstance>,
    pub dataplane_version: Option<u64>,
    pub fence: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, bincode::Encode, bincode::Decode)]
pub struct CheckpointVerdict {
    pub vs: String,
    pub rs: String,
    pub checker: String,
    pub up: bool,
    #[serde(default)]
    pub weight: Option<u32>,
    #[serde(default)]
    pub reason: Option<String>,
}

/// A VRRP instance as replay rebuilds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, bincode::Encode, bincode::Decode)]
pub struct ReplayInstance {
    pub name: String,
    pub state: String,
    /// Effective priority (after tracking).
    pub priority: u8,
    /// When it entered `state` (Unix ms), and why.
    pub since_ms: u64,
    pub reason: String,
}

/// `GET /v1/replay?at=MS` or `?version=V`: one director's state at a past moment,
/// rebuilt from the committed history and its runtime events alone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplayResponse {
    pub node: String,
    /// What was asked: `time <ms>` or `version <V>`.
    pub moment: String,
    /// The moment replayed (Unix ms): the time asked, or when version V's table reached
    /// the kernel (its first error-free sync; its apply if none followed).
    pub at_ms: u64,
    /// The latest config version committed (by the cluster) at that moment.
    pub committed_version: u64,
    /// The config version this director's checkers and data plane ran, and its hash.
    pub config_version: Option<u64>,
    pub config_hash: Option<String>,
    /// The last version whose table reached the kernel without errors.
    pub dataplane_version: Option<u64>,
    pub fence: Option<String>,
    pub instances: Vec<ReplayInstance>,
    pub services: Vec<ServiceInfo>,
    /// The desired table in `ipvsadm -Ln` layout, and as `GET /v1/table`'s `desired_json`.
    pub desired: String,
    pub desired_json: serde_json::Value,
    /// Runtime events and committed history entries folded.
    pub events_folded: u64,
    pub history_folded: u64,
    /// Why the result may be incomplete (events recorded without their content).
    pub warnings: Vec<String>,
}

/// `GET /v1/table`: the kernel table and the desired one, in `ipvsadm -Ln` layout and
/// as differences.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableResponse {
    pub name: String,
    pub backend: String,
    pub applied_version: Option<u64>,
    pub kernel: String,
    /// What would have to change in the kernel to reach the desired table.
    pub differences: Vec<String>,
    /// Both tables as JSON (services with their destinations).
    pub kernel_json: serde_json::Value,
    pub desired_json: serde_json::Value,
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
    /// The entry's link in the history's hash chain, and its own hash.
    #[serde(default)]
    pub prev_entry_hash: String,
    #[serde(default)]
    pub entry_hash: String,
}

/// `GET /v1/verify`: this director's stored history checked as a hash chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyResponse {
    pub node: String,
    pub ok: bool,
    /// Entries that verified (all of them when `ok`).
    pub entries: u64,
    /// Config version after the last verified entry.
    pub version: u64,
    /// Hash of the last verified entry.
    pub head: String,
    /// Where the chain first fails.
    #[serde(default)]
    pub first_bad: Option<BadEntryInfo>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BadEntryInfo {
    pub seq: u64,
    pub version: Option<u64>,
    pub reason: String,
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

#[cfg(test)]
mod detail_tests {
    use super::*;

    fn every_variant() -> Vec<EventDetail> {
        vec![
            EventDetail::Applied {
                version: 3,
                unstarted: vec![("vs".into(), "rs".into(), "MISC_CHECK#0".into())],
            },
            EventDetail::Check {
                vs: "198.18.116.134:80".into(),
                rs: "198.18.116.131:80".into(),
                checker: "HTTP_GET#0".into(),
                up: false,
                weight: Some(7),
                reason: "status 500 \"quoted\"".into(),
            },
            EventDetail::VrrpState {
                instance: "VI_1".into(),
                from: "BACKUP".into(),
                to: "MASTER".into(),
                priority: 100,
                reason: "master down".into(),
            },
            EventDetail::VrrpPriority {
                instance: "VI_1".into(),
                from: 100,
                to: 90,
            },
            EventDetail::VrrpReconfigured {
                kept: vec!["VI_1".into()],
                started: vec![],
                stopped: vec!["VI_2".into()],
            },
            EventDetail::Sync {
                version: None,
                ops: 4,
                errors: 1,
                repaired: 0,
            },
            EventDetail::Fence {
                held: true,
                state: "held at 4".into(),
            },
            EventDetail::Checkpoint(Box::new(Checkpoint {
                dropped: 9,
                applied: Some(2),
                fence: Some("open".into()),
                ..Checkpoint::default()
            })),
        ]
    }

    #[test]
    fn every_detail_decodes_to_what_was_encoded_whatever_the_field_order() {
        for d in every_variant() {
            let text = serde_json::to_string(&d).unwrap();
            assert!(text.starts_with("{\"type\":"), "{text}");
            assert_eq!(serde_json::from_str::<EventDetail>(&text).unwrap(), d, "{text}");
            // `type` last, and a field from a newer writer: still the same detail.
            let mut v: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&text).unwrap();
            let ty = v.remove("type").unwrap();
            v.insert("added_later".into(), serde_json::json!({"x": [1, 2]}));
            v.insert("type".into(), ty);
            let moved = serde_json::to_string(&v).unwrap();
            assert_eq!(serde_json::from_str::<EventDetail>(&moved).unwrap(), d, "{moved}");
        }
    }

    #[test]
    fn a_bad_detail_is_refused_with_what_is_wrong() {
        let e = serde_json::from_str::<EventDetail>(r#"{"type":"teleport","x":1}"#).unwrap_err();
        assert!(e.to_string().contains("unknown variant `teleport`"), "{e}");
        let e = serde_json::from_str::<EventDetail>(r#"{"version":1}"#).unwrap_err();
        assert!(e.to_string().contains("missing field `type`"), "{e}");
        let e = serde_json::from_str::<EventDetail>(r#"{"type":"sync","ops":1}"#).unwrap_err();
        assert!(e.to_string().contains("missing field"), "{e}");
        let e = serde_json::from_str::<EventDetail>(r#"{"type":"check","vs":1}"#).unwrap_err();
        assert!(e.to_string().contains("invalid type"), "{e}");
    }
}

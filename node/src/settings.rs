//! How a director is started: command-line flags, optionally over a small TOML file.

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Raft timing and log retention. The defaults suit directors on one LAN.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct RaftTuning {
    /// Leader heartbeat; also openraft's deadline for one AppendEntries round trip.
    pub heartbeat_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// Build a snapshot after this many log entries since the last one.
    pub snapshot_logs: u64,
    /// Log entries kept below a snapshot (for slow followers) before purging.
    pub keep_logs: u64,
    /// Entries per AppendEntries message.
    pub max_payload_entries: u64,
}

impl Default for RaftTuning {
    fn default() -> Self {
        RaftTuning {
            heartbeat_ms: 250,
            election_timeout_min_ms: 1000,
            election_timeout_max_ms: 2000,
            snapshot_logs: 5000,
            keep_logs: 1000,
            max_payload_entries: 64,
        }
    }
}

impl RaftTuning {
    pub fn openraft_config(&self, cluster: &str) -> Result<openraft::Config> {
        let c = openraft::Config {
            cluster_name: cluster.to_string(),
            heartbeat_interval: self.heartbeat_ms,
            election_timeout_min: self.election_timeout_min_ms,
            election_timeout_max: self.election_timeout_max_ms,
            install_snapshot_timeout: 10_000,
            max_payload_entries: self.max_payload_entries,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(self.snapshot_logs),
            max_in_snapshot_log_to_keep: self.keep_logs,
            replication_lag_threshold: self.snapshot_logs.saturating_add(self.keep_logs).max(5000),
            purge_batch_size: 1,
            ..Default::default()
        };
        c.validate().context("raft timing")
    }
}

/// The TOML file: the same settings as the flags, flags win.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSettings {
    pub name: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub listen: Option<String>,
    pub advertise: Option<String>,
    #[serde(default)]
    pub bootstrap: bool,
    #[serde(default)]
    pub join: Vec<String>,
    pub log_format: Option<String>,
    pub max_request_bytes: Option<usize>,
    /// Largest `POST /v1/proposals` body (default 64 MiB: a whole cluster file).
    pub max_proposal_bytes: Option<usize>,
    /// Connections the listener holds open at once (default 1024).
    pub max_connections: Option<usize>,
    /// Connections from one address (default 64; directors on one host share theirs).
    pub max_connections_per_address: Option<usize>,
    #[serde(default)]
    pub raft: RaftTuning,
    /// Raft and the admin API only: no VRRP, checkers or kernel table (a witness).
    #[serde(default)]
    pub control_plane_only: bool,
    /// `auto` (IPVS when the kernel has it, else nftables), `ipvs` or `nftables`.
    pub dataplane: Option<String>,
    /// Devices DR traffic arrives on (nftables), besides those toward the real servers.
    #[serde(default)]
    pub ingress: Vec<String>,
    /// The quorum gate: `auto` (on with three voters or more), `on` or `off`.
    pub quorum_gate: Option<String>,
    #[serde(default)]
    pub journal: JournalSettings,
    /// TLS for Raft RPC and the admin API (mutual between directors).
    pub tls: Option<TlsFileSettings>,
    /// Bearer tokens for the admin API (`NAME ROLE sha256:HEX` lines).
    pub tokens_file: Option<PathBuf>,
    /// An operator token (the token itself, one line) sent with `join` when the cluster
    /// authenticates with tokens rather than certificates.
    pub join_token_file: Option<PathBuf>,
    /// Serve plain HTTP on a non-loopback address (anyone who reaches it can change the
    /// cluster).
    #[serde(default)]
    pub insecure: bool,
}

/// The `[tls]` table: PEM files.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TlsFileSettings {
    /// The cluster's CA certificate.
    pub ca: PathBuf,
    /// This director's certificate (`hactl cert issue --node NAME`).
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The runtime event journal.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct JournalSettings {
    /// Runtime events kept; older ones are folded into a checkpoint (config history is
    /// never truncated).
    pub max_events: u64,
}

impl Default for JournalSettings {
    fn default() -> Self {
        JournalSettings {
            max_events: crate::journal::DEFAULT_MAX_EVENTS,
        }
    }
}

impl FileSettings {
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
        toml::from_str(&text).map_err(|e| {
            let at = e
                .span()
                .map(|s| {
                    let line = text[..s.start].matches('\n').count() + 1;
                    let col = s.start - text[..s.start].rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
                    format!("{}:{line}:{col}", path.display())
                })
                .unwrap_or_else(|| path.display().to_string());
            anyhow::anyhow!("{at}: {}", e.message())
        })
    }
}

/// Everything a director needs to start.
#[derive(Clone, Debug)]
pub struct Settings {
    pub name: String,
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    /// The address peers and `hactl` use to reach this director (default: `listen`).
    pub advertise: String,
    pub bootstrap: bool,
    pub join: Vec<String>,
    pub max_request_bytes: usize,
    pub max_proposal_bytes: usize,
    pub limits: crate::transport::server::Limits,
    pub raft: RaftTuning,
    /// Runtime events kept in the journal.
    pub journal_max_events: u64,
    /// None: control plane only.
    pub runtime: Option<crate::runtime::RuntimeOptions>,
    /// Serve `/v1/debug/*` (tests only).
    pub test_hooks: bool,
    /// TLS files; None: plain HTTP.
    pub tls: Option<crate::transport::tls::TlsFiles>,
    pub tokens_file: Option<PathBuf>,
    /// The operator token sent with `join` (tokens-only clusters).
    pub join_token_file: Option<PathBuf>,
    /// Plain HTTP on a non-loopback address was asked for explicitly.
    pub insecure: bool,
}

/// Director names: what keepalived's `@NAME` accepts and our ids hash.
pub fn check_name(name: &str) -> Result<()> {
    ha_config::access::check_director_name(name).map_err(|e| anyhow::anyhow!(e))
}

impl Settings {
    pub fn validate(&self) -> Result<()> {
        check_name(&self.name)?;
        if self.advertise.parse::<std::net::SocketAddr>().is_err() {
            bail!(
                "--advertise: expected IP:PORT, got {:?} (peers are addressed by IP)",
                self.advertise
            );
        }
        for j in &self.join {
            if j.parse::<std::net::SocketAddr>().is_err() {
                bail!("--join: expected IP:PORT, got {j:?}");
            }
        }
        if self.bootstrap && !self.join.is_empty() {
            bail!("--bootstrap and --join exclude each other: bootstrap the first director, join the others");
        }
        if self.tls.is_none() && !self.insecure && !self.listen.ip().is_loopback() {
            bail!(
                "refusing to serve Raft and the admin API as plain HTTP on {}: anyone who reaches it could \
                 change the cluster. Configure [tls] (ca, cert, key; see `hactl cert`), listen on loopback, \
                 or pass --insecure to accept that",
                self.listen
            );
        }
        let l = self.limits;
        if l.connections == 0 || l.per_address == 0 || l.per_address > l.connections {
            bail!(
                "max_connections ({}) and max_connections_per_address ({}): both at least 1, per address at most the total",
                l.connections,
                l.per_address
            );
        }
        if self.journal_max_events < crate::journal::MIN_MAX_EVENTS {
            bail!(
                "journal.max_events: at least {} runtime events must be kept, got {}",
                crate::journal::MIN_MAX_EVENTS,
                self.journal_max_events
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_example_file_parses_and_its_raft_timing_is_valid() {
        let text = include_str!("../../deploy/hanode.toml.example");
        let f: FileSettings = toml::from_str(text).expect("deploy/hanode.toml.example");
        assert_eq!(f.name.as_deref(), Some("lvs01"));
        assert!(f.bootstrap);
        assert_eq!(f.raft, RaftTuning::default());
        assert_eq!(f.journal, JournalSettings::default());
        f.raft.openraft_config("t").expect("valid timing");
    }

    #[test]
    fn a_bad_settings_file_is_reported_with_its_position() {
        let dir = std::env::temp_dir().join(format!("hanode-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("bad.toml");
        std::fs::write(&p, "name = \"lvs01\"\n[raft]\nheartbeat_msec = 100\n").unwrap();
        let e = FileSettings::read(&p).unwrap_err().to_string();
        assert!(e.contains("bad.toml:3:1"), "{e}");
        assert!(e.contains("heartbeat_msec"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn names_and_modes_are_checked() {
        assert!(check_name("lvs01").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name("lvs 01").is_err());
        let s = Settings {
            name: "lvs01".into(),
            data_dir: "/tmp/x".into(),
            listen: "127.0.0.1:1".parse().unwrap(),
            advertise: "127.0.0.1:1".into(),
            bootstrap: true,
            join: vec!["127.0.0.1:2".into()],
            max_request_bytes: 1,
            max_proposal_bytes: 1,
            limits: Default::default(),
            raft: RaftTuning::default(),
            journal_max_events: crate::journal::DEFAULT_MAX_EVENTS,
            runtime: None,
            test_hooks: false,
            tls: None,
            tokens_file: None,
            join_token_file: None,
            insecure: false,
        };
        assert!(s.validate().is_err(), "bootstrap and join together");
        let open = Settings {
            join: vec![],
            listen: "198.18.116.130:7101".parse().unwrap(),
            advertise: "198.18.116.130:7101".into(),
            ..s.clone()
        };
        let e = open.validate().unwrap_err().to_string();
        assert!(
            e.contains("plain HTTP on 198.18.116.130:7101") && e.contains("--insecure"),
            "{e}"
        );
        let any = Settings {
            listen: "0.0.0.0:7101".parse().unwrap(),
            ..open.clone()
        };
        assert!(any.validate().is_err(), "the unspecified address is not loopback");
        assert!(Settings {
            insecure: true,
            ..open.clone()
        }
        .validate()
        .is_ok());
        let tls = crate::transport::tls::TlsFiles {
            ca: "ca.pem".into(),
            cert: "c.pem".into(),
            key: "c.key".into(),
        };
        assert!(Settings {
            tls: Some(tls),
            ..open.clone()
        }
        .validate()
        .is_ok());
        let limits = |connections, per_address| Settings {
            insecure: true,
            limits: crate::transport::server::Limits {
                connections,
                per_address,
            },
            ..open.clone()
        };
        assert!(limits(16, 16).validate().is_ok());
        let e = limits(16, 17).validate().unwrap_err().to_string();
        assert!(e.contains("max_connections_per_address (17)"), "{e}");
        assert!(limits(0, 0).validate().is_err());
    }
}

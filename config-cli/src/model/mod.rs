//! The typed configuration of ONE director, with keepalived's semantics. Defaults are
//! resolved while lowering (an explicit default and an absent line are the same model),
//! and inheritable checker settings (delay_loop, retry, ...) are stored on each checker.
//! Keywords keepalived knows that we do not model are kept verbatim in `extra` fields so
//! that export reproduces them; they are reported as warnings.

mod common;
mod global;
mod lvs;
mod routing;
mod track;
mod vrrp;

pub use common::*;
pub use global::*;
pub use lvs::*;
pub use routing::*;
pub use track::*;
pub use vrrp::*;

use serde::{Deserialize, Serialize};

/// One director's configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    pub global: GlobalDefs,
    pub vrrp_scripts: Vec<VrrpScript>,
    /// `track_file` (and `vrrp_track_file`) blocks.
    pub track_files: Vec<TrackFile>,
    pub track_processes: Vec<TrackProcess>,
    pub sync_groups: Vec<SyncGroup>,
    pub instances: Vec<VrrpInstance>,
    pub vs_groups: Vec<VirtualServerGroup>,
    /// Shared, not copied, between the views of a cluster and the keyed configuration
    /// (10,000s of them); changed through `Arc::make_mut`.
    pub virtual_servers: Vec<std::sync::Arc<VirtualServer>>,
    /// Top-level blocks keepalived knows and we do not model (e.g. `static_ipaddress`).
    pub extra: Vec<RawStmt>,
}

impl Config {
    pub fn instance(&self, name: &str) -> Option<&VrrpInstance> {
        self.instances.iter().find(|i| i.name == name)
    }

    pub fn virtual_server(&self, key: &VsKey) -> Option<&VirtualServer> {
        self.virtual_servers.iter().find(|v| &v.key == key).map(|v| &**v)
    }

    pub fn vrrp_script(&self, name: &str) -> Option<&VrrpScript> {
        self.vrrp_scripts.iter().find(|s| s.name == name)
    }

    pub fn track_file(&self, name: &str) -> Option<&TrackFile> {
        self.track_files.iter().find(|s| s.name == name)
    }

    pub fn track_process(&self, name: &str) -> Option<&TrackProcess> {
        self.track_processes.iter().find(|s| s.name == name)
    }
}

//! Canonical form and content hash of a cluster configuration.
//!
//! The canonical form orders everything whose order carries no meaning (blocks by name or
//! address, real servers, checkers, urls, tracked scripts and interfaces, sync group
//! members) and drops directors whose view equals the default one. The hash is the
//! sha256 of the canonical form's JSON encoding, prefixed by a schema tag, so formatting,
//! comments and block order never change it and any change of meaning does.

use crate::cluster::ClusterConfig;
use crate::model::*;
use sha2::{Digest, Sha256};

/// Bumped whenever the model's encoding changes meaning.
pub const SCHEMA: &str = "ha-config/v1";

fn sort_by_json<T: serde::Serialize>(v: &mut [T]) {
    v.sort_by_cached_key(|x| serde_json::to_string(x).unwrap_or_default());
}

/// One director's configuration in canonical order.
pub fn canonical_config(c: &Config) -> Config {
    let mut c = c.clone();
    c.vrrp_scripts.sort_by(|a, b| a.name.cmp(&b.name));
    for g in &mut c.sync_groups {
        g.members.sort();
        g.track_script.sort_by(|a, b| a.name.cmp(&b.name));
        g.track_interface.sort_by(|a, b| a.name.cmp(&b.name));
    }
    c.sync_groups.sort_by(|a, b| a.name.cmp(&b.name));
    for i in &mut c.instances {
        i.track_script.sort_by(|a, b| a.name.cmp(&b.name));
        i.track_interface.sort_by(|a, b| a.name.cmp(&b.name));
        i.unicast_peer.sort_by_key(|p| p.addr);
    }
    c.instances.sort_by(|a, b| a.name.cmp(&b.name));
    for g in &mut c.vs_groups {
        g.members.sort();
    }
    c.vs_groups.sort_by(|a, b| a.name.cmp(&b.name));
    for vs in &mut c.virtual_servers {
        for rs in &mut vs.real_servers {
            for chk in &mut rs.checkers {
                if let CheckKind::Http(h) | CheckKind::Ssl(h) = &mut chk.kind {
                    sort_by_json(&mut h.urls);
                }
            }
            sort_by_json(&mut rs.checkers);
        }
        vs.real_servers.sort_by_key(|r| (r.ip, r.port));
    }
    c.virtual_servers.sort_by(|a, b| a.key.cmp(&b.key));
    c
}

pub fn canonical(cluster: &ClusterConfig) -> ClusterConfig {
    let mut out = ClusterConfig {
        default: canonical_config(&cluster.default),
        nodes: cluster
            .nodes
            .iter()
            .map(|(n, c)| (n.clone(), canonical_config(c)))
            .collect(),
    };
    out.normalize();
    out
}

/// The canonical encoding that the hash covers.
pub fn canonical_bytes(cluster: &ClusterConfig) -> Vec<u8> {
    let mut out = SCHEMA.as_bytes().to_vec();
    out.push(b'\n');
    // Serialising a model of plain data cannot fail.
    out.extend(serde_json::to_vec(&canonical(cluster)).unwrap_or_default());
    out
}

/// sha256 of the canonical encoding, lower-case hex.
pub fn hash(cluster: &ClusterConfig) -> String {
    hex::encode(Sha256::digest(canonical_bytes(cluster)))
}

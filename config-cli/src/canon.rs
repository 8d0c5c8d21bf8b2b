//! Canonical form and content hash of a cluster configuration.
//!
//! The canonical form orders everything whose order carries no meaning (blocks by name or
//! address, real servers, checkers, urls, tracked scripts and interfaces, sync group
//! members) and drops directors whose view equals the default one. The hash is the root of
//! the keyed form's hash tree ([`crate::keyed`]), over canonical items and a schema tag, so
//! formatting, comments and block order never change it and any change of meaning does.

use crate::cluster::ClusterConfig;
use crate::model::*;

fn sort_by_json<T: serde::Serialize>(v: &mut [T]) {
    if v.len() > 1 {
        v.sort_by_cached_key(|x| serde_json::to_string(x).unwrap_or_default());
    }
}

fn sorted_by_json<T: serde::Serialize>(v: &[T]) -> bool {
    v.len() <= 1
        || v.windows(2).all(|w| {
            serde_json::to_string(&w[0]).unwrap_or_default()
                <= serde_json::to_string(&w[1]).unwrap_or_default()
        })
}

/// Whether a virtual server is already in canonical order (most are: one checker per
/// real server, real servers written in address order), so it can be shared as it is.
pub fn is_canonical_virtual_server(vs: &VirtualServer) -> bool {
    vs.real_servers
        .windows(2)
        .all(|w| (w[0].ip, w[0].port) <= (w[1].ip, w[1].port))
        && vs.real_servers.iter().all(|rs| {
            sorted_by_json(&rs.checkers)
                && rs.checkers.iter().all(|c| match &c.kind {
                    CheckKind::Http(h) | CheckKind::Ssl(h) => sorted_by_json(&h.urls),
                    _ => true,
                })
        })
}

/// A virtual server in canonical order, shared when it already is.
pub fn canonical_shared(vs: &std::sync::Arc<VirtualServer>) -> std::sync::Arc<VirtualServer> {
    if is_canonical_virtual_server(vs) {
        vs.clone()
    } else {
        let mut v = (**vs).clone();
        canonical_virtual_server(&mut v);
        std::sync::Arc::new(v)
    }
}

/// A sync group in canonical order.
pub fn canonical_sync_group(g: &mut SyncGroup) {
    g.members.sort();
    g.track_script.sort_by(|a, b| a.name.cmp(&b.name));
    g.track_interface.sort_by(|a, b| a.name.cmp(&b.name));
    g.track_file.sort_by(|a, b| a.name.cmp(&b.name));
    g.track_process.sort_by(|a, b| a.name.cmp(&b.name));
}

/// A VRRP instance in canonical order.
pub fn canonical_instance(i: &mut VrrpInstance) {
    i.track_script.sort_by(|a, b| a.name.cmp(&b.name));
    i.track_interface.sort_by(|a, b| a.name.cmp(&b.name));
    i.track_file.sort_by(|a, b| a.name.cmp(&b.name));
    i.track_process.sort_by(|a, b| a.name.cmp(&b.name));
    i.unicast_peer.sort_by_key(|p| p.addr);
}

/// A virtual server in canonical order.
pub fn canonical_virtual_server(vs: &mut VirtualServer) {
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

/// One director's configuration in canonical order.
pub fn canonical_config(c: &Config) -> Config {
    let mut c = c.clone();
    c.vrrp_scripts.sort_by(|a, b| a.name.cmp(&b.name));
    c.track_files.sort_by(|a, b| a.name.cmp(&b.name));
    c.track_processes.sort_by(|a, b| a.name.cmp(&b.name));
    c.sync_groups.iter_mut().for_each(canonical_sync_group);
    c.sync_groups.sort_by(|a, b| a.name.cmp(&b.name));
    c.instances.iter_mut().for_each(canonical_instance);
    c.instances.sort_by(|a, b| a.name.cmp(&b.name));
    for g in &mut c.vs_groups {
        g.members.sort();
    }
    c.vs_groups.sort_by(|a, b| a.name.cmp(&b.name));
    c.virtual_servers
        .iter_mut()
        .for_each(|v| *v = canonical_shared(v));
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

/// The content hash: the root of the keyed configuration's hash tree
/// ([`crate::keyed::KeyedCluster::hash`]), lower-case hex. A director keeps it up to date
/// in O(change); computing it from scratch is O(n).
pub fn hash(cluster: &ClusterConfig) -> String {
    crate::keyed::KeyedCluster::from_cluster(cluster).hash()
}

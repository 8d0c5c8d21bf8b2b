//! The cluster configuration keyed by what an operator changes one at a time (issue 20):
//! the global settings, each vrrp_script, sync group, VRRP instance, virtual_server_group
//! and virtual server is one [`Key`]; its [`Slot`] holds what directors named in no `@`
//! line see and where named directors differ. A change is a [`Delta`] (the new slot of each
//! changed key), applied in O(change).
//!
//! The content hash ([`KeyedCluster::hash`]) covers the whole canonical configuration and is
//! kept up to date in O(change): each key's canonical slot has a leaf hash, leaves fall
//! into [`BUCKETS`] buckets by a hash of their key, a bucket's hash covers its leaves in key
//! order, and the root covers the schema tag and every bucket's hash (a Merkle tree of
//! depth two). The map is persistent (`imbl`): a copy of the whole configuration costs
//! O(1), so readers hold a version while the next one is applied.

use crate::cluster::ClusterConfig;
use crate::model::*;
use crate::root_hash::RootHasher;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::Bound;
use std::sync::Arc;

/// Bumped whenever the model's encoding or the tree's shape changes meaning.
pub const SCHEMA: &str = "ha-config/v2-keyed";

/// Buckets of the hash tree: a change rehashes its bucket (a few leaves at 50,000 keys)
/// and the root (128 KiB of bucket hashes).
pub const BUCKETS: usize = 4096;

/// What one change addresses.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Key {
    /// `global_defs` and the top-level statements kept verbatim.
    Global,
    Script(String),
    SyncGroup(String),
    Instance(String),
    VsGroup(String),
    VirtualServer(VsKey),
    TrackFile(String),
    TrackProcess(String),
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::Global => write!(f, "global_defs"),
            Key::Script(n) => write!(f, "vrrp_script {n}"),
            Key::SyncGroup(n) => write!(f, "vrrp_sync_group {n}"),
            Key::Instance(n) => write!(f, "vrrp_instance {n}"),
            Key::VsGroup(n) => write!(f, "virtual_server_group {n}"),
            Key::VirtualServer(k) => write!(f, "virtual_server {k}"),
            Key::TrackFile(n) => write!(f, "track_file {n}"),
            Key::TrackProcess(n) => write!(f, "vrrp_track_process {n}"),
        }
    }
}

impl Key {
    /// The kind of block, for counts (`virtual_server`, `vrrp_instance`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            Key::Global => "global_defs",
            Key::Script(_) => "vrrp_script",
            Key::SyncGroup(_) => "vrrp_sync_group",
            Key::Instance(_) => "vrrp_instance",
            Key::VsGroup(_) => "virtual_server_group",
            Key::VirtualServer(_) => "virtual_server",
            Key::TrackFile(_) => "track_file",
            Key::TrackProcess(_) => "vrrp_track_process",
        }
    }
}

/// One key's content in one director's view (in canonical order).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Item {
    Global {
        defs: Box<GlobalDefs>,
        extra: Vec<RawStmt>,
    },
    Script(Box<VrrpScript>),
    SyncGroup(Box<SyncGroup>),
    Instance(Box<VrrpInstance>),
    VsGroup(Box<VirtualServerGroup>),
    VirtualServer(Arc<VirtualServer>),
    TrackFile(Box<TrackFile>),
    TrackProcess(Box<TrackProcess>),
}

/// One key across the directors.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Slot {
    /// What directors named in no override see (`None`: they do not have this block).
    pub default: Option<Item>,
    /// Directors whose view differs from `default` (`None`: they do not have it).
    pub nodes: BTreeMap<String, Option<Item>>,
}

impl Slot {
    /// What director `node` sees.
    pub fn view(&self, node: &str) -> Option<&Item> {
        match self.nodes.get(node) {
            Some(o) => o.as_ref(),
            None => self.default.as_ref(),
        }
    }
}

/// The new slot of each changed key (`None`: removed from every director), each key once,
/// in key order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delta {
    pub changes: Vec<(Key, Option<Slot>)>,
}

impl Delta {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    pub fn len(&self) -> usize {
        self.changes.len()
    }
}

type Leaf = [u8; 32];

/// A key placed in its hash bucket: the map's order, so a bucket is one range.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Placed {
    bucket: u16,
    key: Key,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    slot: Arc<Slot>,
    leaf: Leaf,
}

/// The committed configuration of every director, keyed, with its hash tree.
#[derive(Clone)]
pub struct KeyedCluster {
    map: imbl::OrdMap<Placed, Entry>,
    buckets: Arc<Vec<Leaf>>,
    /// SHA-256's state after each block of the root's input, to hash again only from the
    /// first changed bucket.
    hasher: Arc<RootHasher>,
    root: Leaf,
}

impl PartialEq for KeyedCluster {
    fn eq(&self, other: &Self) -> bool {
        self.root == other.root && self.map == other.map
    }
}
impl Eq for KeyedCluster {}

impl fmt::Debug for KeyedCluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyedCluster({} keys, {})", self.map.len(), self.hash())
    }
}

impl Default for KeyedCluster {
    fn default() -> Self {
        KeyedCluster::from_slots(BTreeMap::new())
    }
}

fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    // Plain data with no maps of non-string keys: encoding cannot fail.
    bincode::serde::encode_to_vec(v, bincode::config::standard()).unwrap_or_default()
}

fn bucket_of(key: &Key) -> u16 {
    let h = Sha256::digest(encode(key));
    (u16::from_be_bytes([h[0], h[1]]) as usize % BUCKETS) as u16
}

fn leaf_hash(key: &Key, slot: &Slot) -> Leaf {
    let mut h = Sha256::new();
    h.update(b"leaf\n");
    h.update(encode(key));
    h.update(encode(slot));
    h.finalize().into()
}

/// The hash of a bucket without leaves.
fn empty_bucket() -> Leaf {
    Sha256::new().finalize().into()
}

fn bucket_lower(bucket: usize) -> Placed {
    Placed {
        bucket: bucket as u16,
        key: Key::Global,
    }
}

impl KeyedCluster {
    /// Builds the map and the whole tree (O(n)).
    pub fn from_slots(slots: BTreeMap<Key, Slot>) -> Self {
        let mut map = imbl::OrdMap::new();
        for (key, slot) in slots {
            let leaf = leaf_hash(&key, &slot);
            map.insert(
                Placed {
                    bucket: bucket_of(&key),
                    key,
                },
                Entry {
                    slot: Arc::new(slot),
                    leaf,
                },
            );
        }
        let mut k = KeyedCluster {
            map,
            buckets: Arc::new(vec![empty_bucket(); BUCKETS]),
            hasher: Arc::new(RootHasher::new(format!("{SCHEMA}\n").as_bytes(), BUCKETS)),
            root: [0; 32],
        };
        // Empty buckets already hold the empty hash: only the others are hashed.
        let used: BTreeSet<usize> = k.map.keys().map(|p| p.bucket as usize).collect();
        let used: Vec<usize> = used.into_iter().collect();
        k.rehash(&used, 0);
        k
    }

    /// The keyed form of a cluster configuration (canonical order inside each item).
    pub fn from_cluster(c: &ClusterConfig) -> Self {
        let mut slots: BTreeMap<Key, Slot> = items_of(&c.default)
            .map(|(k, i)| {
                (
                    k,
                    Slot {
                        default: Some(i),
                        nodes: BTreeMap::new(),
                    },
                )
            })
            .collect();
        for (name, cfg) in &c.nodes {
            let mut seen = BTreeSet::new();
            for (key, item) in items_of(cfg) {
                seen.insert(key.clone());
                let slot = slots.entry(key).or_insert_with(|| Slot {
                    default: None,
                    nodes: BTreeMap::new(),
                });
                if slot.default.as_ref() != Some(&item) {
                    slot.nodes.insert(name.clone(), Some(item));
                }
            }
            for (key, slot) in slots.iter_mut() {
                if slot.default.is_some() && !seen.contains(key) {
                    slot.nodes.insert(name.clone(), None);
                }
            }
        }
        KeyedCluster::from_slots(slots)
    }

    /// The configuration of every director (canonical order), as the rest of the system
    /// reads it. O(n) per named view.
    pub fn to_cluster(&self) -> ClusterConfig {
        cluster_from_sorted(&self.sorted())
    }

    /// One director's view (canonical order). O(n).
    pub fn view(&self, node: &str) -> Config {
        let sorted = self.sorted();
        assemble(sorted.iter().filter_map(|(_, s)| s.view(node)))
    }

    /// What a director named in no override sees (canonical order). O(n).
    pub fn view_default(&self) -> Config {
        let sorted = self.sorted();
        assemble(sorted.iter().filter_map(|(_, s)| s.default.as_ref()))
    }

    fn sorted(&self) -> Vec<(&Key, &Slot)> {
        let mut v: Vec<(&Key, &Slot)> = self.map.iter().map(|(p, e)| (&p.key, &*e.slot)).collect();
        v.sort_unstable_by(|a, b| a.0.cmp(b.0));
        v
    }

    /// The slots in key order (O(n log n)).
    pub fn slots(&self) -> BTreeMap<Key, Slot> {
        self.map
            .iter()
            .map(|(p, e)| (p.key.clone(), (*e.slot).clone()))
            .collect()
    }

    /// Every key and slot, in no particular order (O(n), nothing copied).
    pub fn iter(&self) -> impl Iterator<Item = (&Key, &Slot)> {
        self.map.iter().map(|(p, e)| (&p.key, &*e.slot))
    }

    pub fn get(&self, key: &Key) -> Option<&Slot> {
        self.map
            .get(&Placed {
                bucket: bucket_of(key),
                key: key.clone(),
            })
            .map(|e| &*e.slot)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The content hash of the whole configuration (lower-case hex).
    pub fn hash(&self) -> String {
        hex::encode(self.root)
    }

    /// Each bucket's hash (lower-case hex), [`BUCKETS`] of them: a client compares its own
    /// with a director's and asks only for the buckets that differ.
    pub fn bucket_hashes(&self) -> Vec<String> {
        self.buckets.iter().map(hex::encode).collect()
    }

    /// The buckets whose hashes differ from `theirs` (all of them if `theirs` is not a
    /// list of [`BUCKETS`] hashes).
    pub fn differing_buckets(&self, theirs: &[String]) -> Vec<usize> {
        if theirs.len() != BUCKETS {
            return (0..BUCKETS).collect();
        }
        (0..BUCKETS)
            .filter(|&b| hex::encode(self.buckets[b]) != theirs[b])
            .collect()
    }

    /// The keys and slots in `buckets` (O(keys in them)).
    pub fn bucket_slots(&self, buckets: &[usize]) -> Vec<(Key, Slot)> {
        let mut out = Vec::new();
        for &b in buckets.iter().filter(|&&b| b < BUCKETS) {
            let range = self.map.range((
                Bound::Included(bucket_lower(b)),
                Bound::Excluded(bucket_lower(b + 1)),
            ));
            out.extend(range.map(|(p, e)| (p.key.clone(), (*e.slot).clone())));
        }
        out
    }

    /// What turns `self` into `new`: the keys whose slots differ. Only buckets whose hashes
    /// differ are compared, key by key: O(buckets + change).
    pub fn delta_to(&self, new: &KeyedCluster) -> Delta {
        let mut changes: Vec<(Key, Option<Slot>)> = Vec::new();
        for b in (0..BUCKETS).filter(|&b| self.buckets[b] != new.buckets[b]) {
            let range = (
                Bound::Included(bucket_lower(b)),
                Bound::Excluded(bucket_lower(b + 1)),
            );
            for (p, e) in new.map.range(range.clone()) {
                match self.map.get(p) {
                    Some(old) if old.leaf == e.leaf => {}
                    _ => changes.push((p.key.clone(), Some((*e.slot).clone()))),
                }
            }
            for (p, _) in self.map.range(range) {
                if !new.map.contains_key(p) {
                    changes.push((p.key.clone(), None));
                }
            }
        }
        changes.sort_by(|a, b| a.0.cmp(&b.0));
        Delta { changes }
    }

    /// What director `node` sees of each key, in key order (O(n log n)).
    pub fn view_items(&self, node: &str) -> BTreeMap<Key, Item> {
        self.iter()
            .filter_map(|(k, s)| s.view(node).map(|i| (k.clone(), i.clone())))
            .collect()
    }

    /// How director `node`'s view changes from `self` to `new`: each key whose item it sees
    /// differs, with its new item (`None`: gone from its view). O(buckets + change).
    pub fn view_delta(&self, new: &KeyedCluster, node: &str) -> Vec<(Key, Option<Item>)> {
        self.delta_to(new)
            .changes
            .into_iter()
            .filter_map(|(k, slot)| {
                let old = self.get(&k).and_then(|s| s.view(node));
                let now = slot.as_ref().and_then(|s| s.view(node));
                (old != now).then(|| (k, now.cloned()))
            })
            .collect()
    }

    /// Applies `delta` (O(change)); returns the delta that undoes it.
    pub fn apply(&mut self, delta: &Delta) -> Delta {
        let mut undo = Vec::with_capacity(delta.changes.len());
        let mut dirty = BTreeSet::new();
        for (key, slot) in &delta.changes {
            let placed = Placed {
                bucket: bucket_of(key),
                key: key.clone(),
            };
            dirty.insert(placed.bucket as usize);
            let old = match slot {
                Some(s) => self.map.insert(
                    placed,
                    Entry {
                        leaf: leaf_hash(key, s),
                        slot: Arc::new(s.clone()),
                    },
                ),
                None => self.map.remove(&placed),
            };
            undo.push((key.clone(), old.map(|e| (*e.slot).clone())));
        }
        let dirty: Vec<usize> = dirty.into_iter().collect();
        // Buckets in order: the root's input changes from the first dirty one on.
        let from = dirty
            .first()
            .map_or(usize::MAX, |&b| self.hasher.block_of_leaf(b));
        self.rehash(&dirty, from);
        undo.reverse();
        Delta { changes: undo }
    }

    /// The part of this configuration a delta touches, before it applies, and after: two
    /// small cluster configurations whose semantic diff is the delta's.
    pub fn around(&self, delta: &Delta) -> (ClusterConfig, ClusterConfig) {
        let mut before = BTreeMap::new();
        let mut after = BTreeMap::new();
        for (key, slot) in &delta.changes {
            if let Some(s) = self.get(key) {
                before.insert(key.clone(), s.clone());
            }
            if let Some(s) = slot {
                after.insert(key.clone(), s.clone());
            }
        }
        (cluster_of(&before), cluster_of(&after))
    }

    /// Hashes `buckets` again, then the root from block `from` of its input.
    fn rehash(&mut self, buckets: &[usize], from: usize) {
        let hashes = Arc::make_mut(&mut self.buckets);
        for &b in buckets {
            let mut h = Sha256::new();
            let range = self.map.range((
                Bound::Included(bucket_lower(b)),
                Bound::Excluded(bucket_lower(b + 1)),
            ));
            for (_, e) in range {
                h.update(e.leaf);
            }
            hashes[b] = h.finalize().into();
        }
        // The root covers the schema tag and every bucket's hash, in order.
        self.root = Arc::make_mut(&mut self.hasher).root(hashes, from);
    }
}

impl Serialize for KeyedCluster {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let sorted = self.sorted();
        let mut seq = s.serialize_seq(Some(sorted.len()))?;
        for kv in sorted {
            seq.serialize_element(&kv)?;
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for KeyedCluster {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let pairs: Vec<(Key, Slot)> = Vec::deserialize(d)?;
        Ok(KeyedCluster::from_slots(pairs.into_iter().collect()))
    }
}

/// The items of one director's configuration (the global one always), each in canonical
/// order.
pub(crate) fn items_of(c: &Config) -> impl Iterator<Item = (Key, Item)> + '_ {
    let global = std::iter::once((
        Key::Global,
        Item::Global {
            defs: Box::new(c.global.clone()),
            extra: c.extra.clone(),
        },
    ));
    let scripts = c
        .vrrp_scripts
        .iter()
        .map(|s| (Key::Script(s.name.clone()), Item::Script(Box::new(s.clone()))));
    let groups = c.sync_groups.iter().map(|g| {
        let mut g = g.clone();
        crate::canon::canonical_sync_group(&mut g);
        (Key::SyncGroup(g.name.clone()), Item::SyncGroup(Box::new(g)))
    });
    let instances = c.instances.iter().map(|i| {
        let mut i = i.clone();
        crate::canon::canonical_instance(&mut i);
        (Key::Instance(i.name.clone()), Item::Instance(Box::new(i)))
    });
    let vs_groups = c.vs_groups.iter().map(|g| {
        let mut g = g.clone();
        g.members.sort();
        (Key::VsGroup(g.name.clone()), Item::VsGroup(Box::new(g)))
    });
    let vss = c.virtual_servers.iter().map(|v| {
        let v = crate::canon::canonical_shared(v);
        (Key::VirtualServer(v.key.clone()), Item::VirtualServer(v))
    });
    let files = c.track_files.iter().map(|t| {
        (
            Key::TrackFile(t.name.clone()),
            Item::TrackFile(Box::new(t.clone())),
        )
    });
    let processes = c.track_processes.iter().map(|t| {
        (
            Key::TrackProcess(t.name.clone()),
            Item::TrackProcess(Box::new(t.clone())),
        )
    });
    global
        .chain(scripts)
        .chain(groups)
        .chain(instances)
        .chain(vs_groups)
        .chain(vss)
        .chain(files)
        .chain(processes)
}

/// The cluster configuration of some slots (canonical order), without a hash tree.
pub fn cluster_of(slots: &BTreeMap<Key, Slot>) -> ClusterConfig {
    let sorted: Vec<(&Key, &Slot)> = slots.iter().collect();
    cluster_from_sorted(&sorted)
}

fn cluster_from_sorted(sorted: &[(&Key, &Slot)]) -> ClusterConfig {
    let mut names = BTreeSet::new();
    for (_, s) in sorted {
        names.extend(s.nodes.keys().cloned());
    }
    let mut out = ClusterConfig {
        default: assemble(sorted.iter().filter_map(|(_, s)| s.default.as_ref())),
        nodes: BTreeMap::new(),
    };
    for n in names {
        let view = assemble(sorted.iter().filter_map(|(_, s)| s.view(&n)));
        out.nodes.insert(n, view);
    }
    out.normalize();
    out
}

/// One director's configuration from its items, in the order given.
/// A configuration from items in key order (one director's view).
pub fn assemble<'a>(items: impl Iterator<Item = &'a Item>) -> Config {
    let mut c = Config::default();
    for i in items {
        match i {
            Item::Global { defs, extra } => {
                c.global = (**defs).clone();
                c.extra = extra.clone();
            }
            Item::Script(s) => c.vrrp_scripts.push((**s).clone()),
            Item::SyncGroup(g) => c.sync_groups.push((**g).clone()),
            Item::Instance(i) => c.instances.push((**i).clone()),
            Item::VsGroup(g) => c.vs_groups.push((**g).clone()),
            Item::VirtualServer(v) => c.virtual_servers.push(v.clone()),
            Item::TrackFile(t) => c.track_files.push((**t).clone()),
            Item::TrackProcess(t) => c.track_processes.push((**t).clone()),
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{canon, cluster};

    fn load(text: &str) -> ClusterConfig {
        let (_, l) = cluster::load_str("t.conf", text, &[]);
        assert!(!l.diags.has_errors(), "{:?}", l.diags);
        l.cluster
    }

    const SEED: &str = include_str!("../tests/fixtures/keepalived.lvs01-master.conf");

    fn two_directors(weight: u32, prio2: u32) -> String {
        format!(
            "vrrp_instance VI_1 {{\n interface ens33\n virtual_router_id 51\n @lvs01 priority 110\n @lvs02 priority {prio2}\n virtual_ipaddress {{\n  198.18.116.134\n }}\n}}\n\
             virtual_server 198.18.116.134 80 {{\n lb_kind DR\n real_server 198.18.116.132 80 {{\n  weight 1\n }}\n real_server 198.18.116.131 80 {{\n  weight {weight}\n }}\n}}\n"
        )
    }

    #[test]
    fn the_keyed_form_gives_the_canonical_configuration_back() {
        for text in [SEED, &two_directors(3, 90)] {
            let c = load(text);
            let k = KeyedCluster::from_cluster(&c);
            assert_eq!(k.to_cluster(), canon::canonical(&c));
            for n in ["lvs01", "lvs02", "other"] {
                assert_eq!(k.view(n), canon::canonical_config(c.view(n)), "view {n}");
            }
        }
    }

    #[test]
    fn a_weight_change_is_one_key_and_the_hash_follows_it() {
        let a = KeyedCluster::from_cluster(&load(&two_directors(3, 90)));
        let b = KeyedCluster::from_cluster(&load(&two_directors(4, 90)));
        assert_ne!(a.hash(), b.hash());
        let d = a.delta_to(&b);
        assert_eq!(d.len(), 1);
        assert!(matches!(d.changes[0].0, Key::VirtualServer(_)));
        let mut c = a.clone();
        let undo = c.apply(&d);
        assert_eq!(c, b);
        c.apply(&undo);
        assert_eq!(c, a);
    }

    #[test]
    fn a_per_director_line_is_an_override_in_one_slot_only() {
        let k = KeyedCluster::from_cluster(&load(&two_directors(3, 90)));
        let vi = k.get(&Key::Instance("VI_1".into())).expect("instance");
        assert_eq!(vi.nodes.len(), 2, "lvs01 and lvs02 differ from the default");
        let vs = k
            .get(&Key::VirtualServer(VsKey::Addr {
                ip: "198.18.116.134".parse().unwrap(),
                port: 80,
            }))
            .expect("vs");
        assert!(vs.nodes.is_empty(), "the virtual server is the same everywhere");
        let a = KeyedCluster::from_cluster(&load(&two_directors(3, 90)));
        let b = KeyedCluster::from_cluster(&load(&two_directors(3, 80)));
        let d = a.delta_to(&b);
        assert_eq!(
            d.changes.iter().map(|c| c.0.clone()).collect::<Vec<_>>(),
            vec![Key::Instance("VI_1".into())]
        );
    }

    #[test]
    fn formatting_and_block_order_do_not_change_the_hash() {
        let a = load(&two_directors(3, 90));
        let reordered = two_directors(3, 90)
            .replace(
                " real_server 198.18.116.132 80 {\n  weight 1\n }\n real_server 198.18.116.131 80 {\n  weight 3\n }\n",
                "   real_server 198.18.116.131 80 {\n  weight 3\n }\n! a comment\n real_server 198.18.116.132 80 {\n  weight 1\n }\n",
            );
        let b = load(&reordered);
        assert_eq!(
            KeyedCluster::from_cluster(&a).hash(),
            KeyedCluster::from_cluster(&b).hash()
        );
    }

    #[test]
    fn the_encoding_round_trips_and_rebuilds_the_tree() {
        let k = KeyedCluster::from_cluster(&load(SEED));
        let bytes = serde_json::to_vec(&k).unwrap();
        let back: KeyedCluster = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(back, k);
        assert_eq!(back.hash(), k.hash());
    }

    #[test]
    fn differing_buckets_hold_exactly_the_changed_keys() {
        let a = KeyedCluster::from_cluster(&load(&two_directors(3, 90)));
        let b = KeyedCluster::from_cluster(&load(&two_directors(4, 80)));
        let differing = b.differing_buckets(&a.bucket_hashes());
        assert!(!differing.is_empty() && differing.len() <= 2, "{differing:?}");
        let mut keys: Vec<Key> = b.bucket_slots(&differing).into_iter().map(|(k, _)| k).collect();
        keys.sort();
        let changed: Vec<Key> = a.delta_to(&b).changes.into_iter().map(|(k, _)| k).collect();
        for k in &changed {
            assert!(keys.contains(k), "{k} is in a differing bucket");
        }
        assert!(a.differing_buckets(&a.bucket_hashes()).is_empty());
        assert_eq!(
            a.differing_buckets(&[]).len(),
            BUCKETS,
            "no tree: everything differs"
        );
    }

    #[test]
    fn around_gives_the_touched_part_for_a_semantic_diff() {
        let a = KeyedCluster::from_cluster(&load(&two_directors(3, 90)));
        let b = KeyedCluster::from_cluster(&load(&two_directors(4, 90)));
        let (before, after) = a.around(&a.delta_to(&b));
        let changes = crate::diff::diff(&before, &after);
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert!(changes[0].to_string().contains("weight 3 -> 4"), "{}", changes[0]);
    }
}

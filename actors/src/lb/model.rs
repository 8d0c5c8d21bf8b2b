//! The kernel load-balancing table as we model it: the same shape for every backend
//! (IPVS, nftables, the fake). Services are keyed the way IPVS keys them; destinations
//! by address and port. Ordered maps so that diffs and printouts are deterministic.

use ha_config::model::{Forwarding, Protocol};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

/// What identifies a virtual service in the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum SvcKey {
    Inet {
        proto: Protocol,
        addr: IpAddr,
        port: u16,
    },
    /// Packets marked by the firewall; `v6` selects the address family.
    Fwmark { v6: bool, mark: u32 },
}

impl SvcKey {
    pub fn is_v6(&self) -> bool {
        match self {
            SvcKey::Inet { addr, .. } => addr.is_ipv6(),
            SvcKey::Fwmark { v6, .. } => *v6,
        }
    }
}

impl fmt::Display for SvcKey {
    /// As `ipvsadm -Ln` prints it: `TCP  198.18.116.134:80`, `FWM  7 IPv6`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SvcKey::Inet { proto, addr, port } => {
                write!(f, "{} {}", proto.name(), SockAddr(*addr, *port))
            }
            SvcKey::Fwmark { v6: false, mark } => write!(f, "FWM {mark}"),
            SvcKey::Fwmark { v6: true, mark } => write!(f, "FWM {mark} IPv6"),
        }
    }
}

/// `ADDR:PORT`, with brackets for IPv6.
pub struct SockAddr(pub IpAddr, pub u16);

impl fmt::Display for SockAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V6(a) => write!(f, "[{a}]:{}", self.1),
            IpAddr::V4(a) => write!(f, "{a}:{}", self.1),
        }
    }
}

/// Client affinity: connections from one client (network) go to the same destination
/// for `timeout` seconds after the last one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Persistence {
    pub timeout: u32,
    /// Clients grouped by this prefix length (32/128: each address alone).
    pub prefix: u8,
}

/// The settings of a service (everything that is not its key).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SvcSpec {
    /// IPVS scheduler name (`rr`, `wlc`, ...).
    pub sched: String,
    pub persistence: Option<Persistence>,
    /// One-packet scheduling (UDP).
    pub ops: bool,
    #[serde(default)]
    /// The scheduler flags as IPVS has them ([`SCHED_FALLBACK`], [`SCHED_PORT`],
    /// [`SCHED_FLAG_3`]): what they mean is the scheduler's.
    pub sched_flags: u32,
}

/// `IP_VS_SVC_F_SCHED1`: `sh`/`mh` give a client whose server is unavailable another.
pub const SCHED_FALLBACK: u32 = 0x8;
/// `IP_VS_SVC_F_SCHED2`: `sh`/`mh` hash the source port with the address.
pub const SCHED_PORT: u32 = 0x10;
/// `IP_VS_SVC_F_SCHED3`.
pub const SCHED_FLAG_3: u32 = 0x20;
/// Every scheduler flag.
pub const SCHED_FLAGS: u32 = SCHED_FALLBACK | SCHED_PORT | SCHED_FLAG_3;

impl SvcSpec {
    /// Whether the source port is hashed with the address (`sh-port`, `mh-port`).
    pub fn hashes_port(&self) -> bool {
        self.sched_flags & SCHED_PORT != 0 && matches!(self.sched.as_str(), "sh" | "mh")
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DestKey {
    pub addr: IpAddr,
    pub port: u16,
}

impl fmt::Display for DestKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        SockAddr(self.addr, self.port).fmt(f)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DestSpec {
    pub fwd: Forwarding,
    pub weight: u32,
    /// Connection thresholds (0: none).
    pub u_thresh: u32,
    pub l_thresh: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    pub spec: SvcSpec,
    /// In JSON a list of `[key, spec]` pairs (the keys are not strings).
    pub dests: DestMap<DestSpec>,
}

/// A service's destinations by address and port, in order: a sorted `Vec`. A service has
/// a few; a `BTreeMap` allocates a node for eleven (three times the memory at four), and
/// a director holds every service several times (by virtual server, desired, believed,
/// the backend's view). The `BTreeMap` methods the data plane uses, with their meaning
/// (`litemap` has the layout but not `values_mut` nor iteration by reference).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DestMap<V>(Vec<(DestKey, V)>);

impl<V> Default for DestMap<V> {
    fn default() -> Self {
        DestMap(Vec::new())
    }
}

impl<V> DestMap<V> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn find(&self, k: &DestKey) -> Result<usize, usize> {
        self.0.binary_search_by(|(x, _)| x.cmp(k))
    }

    pub fn get(&self, k: &DestKey) -> Option<&V> {
        self.find(k).ok().map(|i| &self.0[i].1)
    }

    pub fn get_mut(&mut self, k: &DestKey) -> Option<&mut V> {
        self.find(k).ok().map(|i| &mut self.0[i].1)
    }

    pub fn contains_key(&self, k: &DestKey) -> bool {
        self.find(k).is_ok()
    }

    /// Adds or replaces; returns the value replaced.
    pub fn insert(&mut self, k: DestKey, v: V) -> Option<V> {
        match self.find(&k) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i].1, v)),
            Err(i) => {
                self.0.insert(i, (k, v));
                None
            }
        }
    }

    pub fn remove(&mut self, k: &DestKey) -> Option<V> {
        self.find(k).ok().map(|i| self.0.remove(i).1)
    }

    pub fn clear(&mut self) {
        self.0.clear()
    }

    pub fn retain(&mut self, mut keep: impl FnMut(&DestKey, &mut V) -> bool) {
        self.0.retain_mut(|(k, v)| keep(k, v))
    }

    pub fn iter(&self) -> DestIter<'_, V> {
        self.0.iter().map(|(k, v)| (k, v))
    }

    pub fn iter_mut(&mut self) -> DestIterMut<'_, V> {
        self.0.iter_mut().map(|(k, v)| (&*k, v))
    }

    pub fn keys(&self) -> DestKeys<'_, V> {
        self.0.iter().map(|(k, _)| k)
    }

    pub fn values(&self) -> DestValues<'_, V> {
        self.0.iter().map(|(_, v)| v)
    }

    pub fn values_mut(&mut self) -> DestValuesMut<'_, V> {
        self.0.iter_mut().map(|(_, v)| v)
    }
}

// Named iterator types (no destructor, as a `BTreeMap`'s), so a borrow ends where the
// iterator's last use is.
pub type DestIter<'a, V> =
    std::iter::Map<std::slice::Iter<'a, (DestKey, V)>, fn(&'a (DestKey, V)) -> (&'a DestKey, &'a V)>;
pub type DestIterMut<'a, V> = std::iter::Map<
    std::slice::IterMut<'a, (DestKey, V)>,
    fn(&'a mut (DestKey, V)) -> (&'a DestKey, &'a mut V),
>;
pub type DestKeys<'a, V> =
    std::iter::Map<std::slice::Iter<'a, (DestKey, V)>, fn(&'a (DestKey, V)) -> &'a DestKey>;
pub type DestValues<'a, V> =
    std::iter::Map<std::slice::Iter<'a, (DestKey, V)>, fn(&'a (DestKey, V)) -> &'a V>;
pub type DestValuesMut<'a, V> =
    std::iter::Map<std::slice::IterMut<'a, (DestKey, V)>, fn(&'a mut (DestKey, V)) -> &'a mut V>;

impl<V> FromIterator<(DestKey, V)> for DestMap<V> {
    /// As a `BTreeMap` collects: in key order, the last value of a repeated key kept.
    fn from_iter<I: IntoIterator<Item = (DestKey, V)>>(iter: I) -> Self {
        let mut all: Vec<(DestKey, V)> = iter.into_iter().collect();
        all.sort_by_key(|a| a.0);
        let mut out: Vec<(DestKey, V)> = Vec::with_capacity(all.len());
        for (k, v) in all {
            match out.last_mut() {
                Some(last) if last.0 == k => last.1 = v,
                _ => out.push((k, v)),
            }
        }
        out.shrink_to_fit();
        DestMap(out)
    }
}

impl<'a, V> IntoIterator for &'a DestMap<V> {
    type Item = (&'a DestKey, &'a V);
    type IntoIter =
        std::iter::Map<std::slice::Iter<'a, (DestKey, V)>, fn(&'a (DestKey, V)) -> (&'a DestKey, &'a V)>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(k, v)| (k, v))
    }
}

impl<V> IntoIterator for DestMap<V> {
    type Item = (DestKey, V);
    type IntoIter = std::vec::IntoIter<(DestKey, V)>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

/// A list of `[key, value]` pairs, as `BTreeMap`s with struct keys were written.
impl<V: Serialize> Serialize for DestMap<V> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter())
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for DestMap<V> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Vec::<(DestKey, V)>::deserialize(d)?.into_iter().collect())
    }
}

/// A whole table: what the directors want, or what a kernel has.
pub type Table = BTreeMap<SvcKey, Service>;

/// Counts (services, destinations).
pub fn size(t: &Table) -> (usize, usize) {
    (t.len(), t.values().map(|s| s.dests.len()).sum())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(i: u8) -> DestKey {
        DestKey {
            addr: IpAddr::from([198, 18, 0, i % 8]),
            port: 80 + u16::from(i / 8 % 2),
        }
    }

    proptest! {
        /// Any sequence of inserts, removes and weight changes leaves a `DestMap` equal to
        /// the `BTreeMap` it stands for: same answers, same order, same JSON.
        #[test]
        fn a_dest_map_behaves_as_a_btree_map(ops in proptest::collection::vec((0u8..3, 0u8..16, 0u32..5), 0..40)) {
            let mut map: DestMap<u32> = DestMap::new();
            let mut model: BTreeMap<DestKey, u32> = BTreeMap::new();
            for (op, k, w) in ops {
                let k = key(k);
                match op {
                    0 => prop_assert_eq!(map.insert(k, w), model.insert(k, w)),
                    1 => prop_assert_eq!(map.remove(&k), model.remove(&k)),
                    _ => {
                        if let (Some(a), Some(b)) = (map.get_mut(&k), model.get_mut(&k)) {
                            *a += w;
                            *b += w;
                        }
                        map.retain(|_, v| *v != 7);
                        model.retain(|_, v| *v != 7);
                    }
                }
                prop_assert_eq!(map.len(), model.len());
                prop_assert!(map.iter().eq(model.iter()));
                prop_assert_eq!(map.contains_key(&k), model.contains_key(&k));
            }
            let pairs: Vec<(DestKey, u32)> = model.clone().into_iter().collect();
            prop_assert_eq!(
                serde_json::to_string(&map).unwrap(),
                serde_json::to_string(&pairs).unwrap()
            );
            let back: DestMap<u32> = serde_json::from_str(&serde_json::to_string(&pairs).unwrap()).unwrap();
            prop_assert_eq!(&back, &map);
            // Collecting keeps the last value of a repeated key, as a BTreeMap does.
            let doubled: Vec<(DestKey, u32)> = pairs.iter().chain(pairs.iter()).map(|(k, v)| (*k, v + 1)).chain(pairs.iter().copied()).collect();
            let collected: DestMap<u32> = doubled.iter().copied().collect();
            let expected: BTreeMap<DestKey, u32> = doubled.into_iter().collect();
            prop_assert!(collected.iter().eq(expected.iter()));
        }
    }
}

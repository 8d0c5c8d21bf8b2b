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
    #[serde(with = "pairs")]
    pub dests: BTreeMap<DestKey, DestSpec>,
}

/// Serde for maps whose keys are structs: a list of pairs.
pub mod pairs {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::collections::BTreeMap;

    pub fn serialize<K: Serialize, V: Serialize, S: Serializer>(
        m: &BTreeMap<K, V>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(m.iter())
    }

    pub fn deserialize<'de, K, V, D>(d: D) -> Result<BTreeMap<K, V>, D::Error>
    where
        K: Deserialize<'de> + Ord,
        V: Deserialize<'de>,
        D: Deserializer<'de>,
    {
        Ok(Vec::<(K, V)>::deserialize(d)?.into_iter().collect())
    }
}

/// A whole table: what the directors want, or what a kernel has.
pub type Table = BTreeMap<SvcKey, Service>;

/// Counts (services, destinations).
pub fn size(t: &Table) -> (usize, usize) {
    (t.len(), t.values().map(|s| s.dests.len()).sum())
}

//! What our tables hold, as nft text and as steps (pure): `netdev hanode` forwards
//! direct-routing services at ingress (`fwd` to the real server's MAC, the VIP
//! unchanged: LVS-DR), `inet hanode_nat` DNATs masquerading services in prerouting
//! (LVS-NAT). Services are sharded by id over tables of [`SHARD_SIZE`] (`hanode`,
//! `hanode_1`, ...; `hanode_nat`, `hanode_nat_1`, ...), each a complete copy of the
//! layout below with its own hook chain: the kernel validates a whole table when a jump
//! is added to it, so a shard bounds that walk. Nothing outside our tables is touched.
//!
//! The layout is built so that the kernel's cost of a change does not grow with the
//! table. nf_tables looks sets up by walking a table's list of sets, and every element
//! added to a map is checked against every rule that reads the map; so there is no set
//! per service and no per-service rule reads a shared map. Instead:
//!
//! - marks: a service has an id N (1..=65535); its *tag* is `N << 16`, its destinations
//!   are `tag | d` (d in 1..=0x7fff) and its scheduling slots `tag | 0x8000 | s`.
//! - shared maps, one set of them per table: `svc4`/`svc6` (VIP . proto . port -> jump
//!   to the service chain; the element comment carries the service spec), `slots`
//!   (slot mark -> destination mark), `dst4`/`dst6` (destination mark -> real server;
//!   the comment carries port, weight, forwarding and a draining time), `flows4`/
//!   `flows6` (client address . port . tag -> destination, dynamic, per-element
//!   timeout: the affinity of DR flows, which bypass conntrack) and `pflows4`/`pflows6`
//!   (client network . tag, for persistence); per egress device, a set `fwd4_<hex>` of
//!   the destination marks behind it.
//! - shared chains, each the only reader of its map: `conn4`/`conn6` and `pers4_<P>`
//!   (look a flow up), `pick` (slot -> destination), `fwd4`/`fwd6` (DR: one `fwd` rule
//!   per device) or `dnat4`/`dnat6` (NAT).
//! - per service, chain `svc_N`: set the tag, jump to the flow lookup, else pick a slot
//!   with its own `numgen inc mod S` (rr keeps its own rotation) or `jhash`, remember the
//!   flow with the service's timeout, jump to the output chain; drop what is left.
//!
//! A destination that leaves keeps its mark in `dst` (and its device set) as *draining*
//! until its flows have expired, so established connections finish, as with IPVS.

use super::super::model::{DestKey, DestMap, DestSpec, SvcKey, SvcSpec};
use super::expr::{self, family_check, jump, Base, Data, Expr, Rule};
use super::slots::{self, Pick};
use ha_config::model::{Forwarding, Protocol};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::net::IpAddr;

pub const DR_TABLE: &str = "netdev hanode";
pub const NAT_TABLE: &str = "inet hanode_nat";
/// Service ids per shard: services are spread over tables of at most this many, because
/// the kernel validates a whole table (every chain a jump can reach) when a change adds
/// a jump to it: a new service, or a service chain rewritten. A shard keeps that walk
/// small whatever the number of services; each shard's base chain costs a packet one
/// more service-map lookup (see docs/BENCHMARKS.md).
pub const SHARD_SIZE: u32 = 1024;
/// New services go to the first shard with fewer than this many, so that a shard keeps
/// free ids to rotate through (an id, and the flows remembered under it, is not reused
/// soon).
pub const SHARD_FILL: usize = 896;
pub const SHARDS: u32 = MAX_SERVICES.div_ceil(SHARD_SIZE);
/// Room for flows in each flow map (the kernel default of 65535 is too small).
pub const FLOWS_SIZE: u32 = 1 << 24;
/// The shared chain that maps a slot to its destination without logging the flow: for
/// one-packet services, which pin nothing (every packet of theirs comes here).
pub const PICK_ONLY: &str = "pick_once";
/// A pinned flow is announced to the other directors again at most, and while packets
/// come at least, once in this many seconds (below every flow timeout but persistence
/// shorter than this: see docs/dev-notes/flow-sync.md).
pub const RELOG_SECS: u32 = 60;
/// Service ids fit in the upper half of a mark.
pub const MAX_SERVICES: u32 = 0xffff;
/// Destination numbers fit below the slot bit.
pub const MAX_DESTS: u32 = 0x7fff;
const SLOT_BIT: u32 = 0x8000;
const HASH_SEED: u32 = 0x4841_4e44;

/// The map of a Maglev (`mh`) service's lookup table: one per service, so that a dump
/// of it walks its own few thousand slots (a set's dump costs the kernel more than
/// linear time in its size: docs/dev-notes/flow-sync.md).
pub fn maglev_map(id: u32) -> String {
    format!("mh_{id}")
}

/// The type of a Maglev map: a 32-bit integer (a `jhash` result, which nft will not
/// name as a `typeof`: any 32-bit integer expression declares it) to a mark. The
/// netlink encoding says the same ([`super::netlink`]), so that nft lists both alike.
pub const MAGLEV_MAP_TYPE: &str = "typeof numgen inc mod 2 : meta mark";

/// The service id of a Maglev map's name.
pub fn maglev_map_id(name: &str) -> Option<u32> {
    name.strip_prefix("mh_")?.parse().ok()
}

/// The tag of service `id`: its marks share these upper 16 bits.
pub fn tag(id: u32) -> u32 {
    id << 16
}

/// A destination as the table holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slot {
    /// The destination's number within its service (1..=0x7fff); its mark is
    /// `tag | mark`.
    pub mark: u32,
    pub spec: DestSpec,
    /// Unix seconds when it left the service; None while it is part of it.
    pub draining_since: Option<u64>,
    /// DR: the device the real server is reached on (None for NAT, or not yet known).
    pub dev: Option<String>,
}

/// One service as rendered in the kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SvcState {
    pub key: SvcKey,
    pub id: u32,
    pub spec: SvcSpec,
    pub dests: DestMap<Slot>,
    /// The slot count its chain picks among (`mod S`): chosen by [`slots::count`], kept
    /// across changes that it still lays out (0: not chosen yet).
    pub slots: u32,
    /// The table the service sits in while it has no destination: where it was read from
    /// (a dump), or where it was when its last destination went. A service created empty
    /// starts in the direct-routing table and moves when a NAT destination comes.
    pub empty_in_nat: bool,
}

/// How a service remembers where a client went.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Affinity {
    /// One-packet scheduling: nothing remembered.
    None,
    /// Per connection (client address and port).
    Conn,
    /// Per client network of this prefix length (persistence).
    Client(u8),
}

impl SvcState {
    /// Chooses the slot count for the destinations as they now are, keeping the current
    /// one where it still fits.
    pub fn choose_slots(&mut self) {
        if let Some(plan) = slots::plan(&self.spec.sched) {
            self.slots = slots::count(&plan, &self.active(), Some(self.slots));
        }
    }

    /// Which table the service lives in: by its destinations' forwarding method (without
    /// any, where it already is).
    pub fn is_nat(&self) -> bool {
        let live = self.dests.values().find(|s| s.draining_since.is_none());
        live.or_else(|| self.dests.values().next())
            .map(|s| s.spec.fwd == Forwarding::Nat)
            .unwrap_or(self.empty_in_nat)
    }

    pub fn active(&self) -> Vec<(DestKey, DestSpec)> {
        self.dests
            .iter()
            .filter(|(_, s)| s.draining_since.is_none())
            .map(|(d, s)| (*d, s.spec))
            .collect()
    }

    /// Seconds a flow is remembered: the persistence timeout, else IPVS's defaults
    /// (TCP established 900 s, UDP 300 s).
    pub fn flow_timeout(&self) -> u32 {
        match (self.spec.persistence, self.key) {
            (Some(p), _) => p.timeout.max(1),
            (
                None,
                SvcKey::Inet {
                    proto: Protocol::Udp, ..
                },
            ) => 300,
            _ => 900,
        }
    }

    pub fn affinity(&self) -> Affinity {
        let full = if self.key.is_v6() { 128 } else { 32 };
        match self.spec.persistence {
            Some(p) => Affinity::Client(p.prefix.min(full)),
            None if self.spec.ops => Affinity::None,
            None => Affinity::Conn,
        }
    }

    pub fn table(&self) -> &'static str {
        self.table_id().name()
    }

    /// Whether its slots are a Maglev lookup table in its own map ([`maglev_map`]).
    pub fn is_maglev(&self) -> bool {
        slots::plan(&self.spec.sched).is_some_and(|p| p.maglev)
    }

    /// The map its slots are in.
    pub fn slot_map(&self) -> String {
        if self.is_maglev() {
            maglev_map(self.id)
        } else {
            "slots".to_string()
        }
    }

    pub fn table_id(&self) -> TableId {
        TableId {
            nat: self.is_nat(),
            shard: shard_of(self.id),
        }
    }
}

/// The shard of service id `id` (1..=MAX_SERVICES).
pub fn shard_of(id: u32) -> u32 {
    id.saturating_sub(1) / SHARD_SIZE
}

/// The ids of shard `shard`.
pub fn shard_ids(shard: u32) -> std::ops::RangeInclusive<u32> {
    shard * SHARD_SIZE + 1..=((shard + 1) * SHARD_SIZE).min(MAX_SERVICES)
}

/// One of our tables: DR (`netdev hanode`, `netdev hanode_1`, ...) or NAT (`inet
/// hanode_nat`, `inet hanode_nat_1`, ...), by shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TableId {
    pub nat: bool,
    pub shard: u32,
}

impl TableId {
    pub const DR: TableId = TableId { nat: false, shard: 0 };
    pub const NAT: TableId = TableId { nat: true, shard: 0 };

    /// `netdev hanode_3` (a name made once per table and kept: the steps of a change
    /// name their table without allocating).
    pub fn name(self) -> &'static str {
        static NAMES: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
        let names = NAMES.get_or_init(|| {
            let mut v = Vec::with_capacity(2 * SHARDS as usize);
            for nat in [false, true] {
                let base = if nat { NAT_TABLE } else { DR_TABLE };
                v.push(base.to_string());
                v.extend((1..SHARDS).map(|k| format!("{base}_{k}")));
            }
            v
        });
        let i = usize::from(self.nat) * SHARDS as usize + self.shard.min(SHARDS - 1) as usize;
        names[i].as_str()
    }

    /// The table named `family name`, if it is one of ours.
    pub fn of_name(family: &str, name: &str) -> Option<TableId> {
        let (nat, base) = match family {
            "netdev" => (false, "hanode"),
            "inet" => (true, "hanode_nat"),
            _ => return None,
        };
        let rest = name.strip_prefix(base)?;
        let shard = match rest.strip_prefix('_') {
            None if rest.is_empty() => 0,
            Some(k) if !k.starts_with('0') => k.parse().ok().filter(|k| (1..SHARDS).contains(k))?,
            _ => return None,
        };
        Some(TableId { nat, shard })
    }
}

impl std::fmt::Display for TableId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

pub fn table_name(nat: bool) -> &'static str {
    TableId { nat, shard: 0 }.name()
}

fn mark_expr(nat: bool) -> &'static str {
    if nat {
        "ct mark"
    } else {
        "meta mark"
    }
}

fn fam(v6: bool) -> char {
    if v6 {
        '6'
    } else {
        '4'
    }
}

/// Why the nftables backend cannot express a service.
pub fn unsupported(key: &SvcKey, spec: &SvcSpec, dests: &[DestSpec]) -> Option<String> {
    if dests.len() > MAX_DESTS as usize {
        return Some(format!(
            "{} destinations in one service: the nftables backend holds at most {MAX_DESTS}",
            dests.len()
        ));
    }
    if let SvcKey::Fwmark { .. } = key {
        return Some("fwmark services need IPVS (the nftables backend matches addresses)".into());
    }
    if slots::plan(&spec.sched).is_none() {
        return Some(format!("unknown scheduler {:?}", spec.sched));
    }
    if dests.iter().any(|d| d.fwd == Forwarding::Tun) {
        return Some("TUN forwarding needs IPVS (nftables cannot encapsulate)".into());
    }
    let kinds: BTreeSet<Forwarding> = dests.iter().map(|d| d.fwd).collect();
    if kinds.len() > 1 {
        return Some("mixed forwarding methods in one service need IPVS".into());
    }
    None
}

fn proto_name(p: Protocol) -> &'static str {
    match p {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
        Protocol::Sctp => "sctp",
    }
}

fn ipf(v6: bool) -> &'static str {
    if v6 {
        "ip6"
    } else {
        "ip"
    }
}

/// `198.18.116.134 . tcp . 80` (the key of the service vmaps).
pub fn vmap_key(key: &SvcKey) -> Option<String> {
    match key {
        SvcKey::Inet { proto, addr, port } => Some(format!("{addr} . {} . {port}", proto_name(*proto))),
        SvcKey::Fwmark { .. } => None,
    }
}

/// The comment on a service's vmap element: the spec, read back by the dump.
pub fn spec_comment(spec: &SvcSpec) -> String {
    let mut s = spec.sched.clone();
    if let Some(p) = spec.persistence {
        let _ = write!(s, " p={}/{}", p.timeout, p.prefix);
    }
    if spec.ops {
        s.push_str(" ops");
    }
    if spec.sched_flags != 0 {
        let _ = write!(s, " f={}", spec.sched_flags);
    }
    s
}

/// The comment on a destination's `dst_N` element.
pub fn dest_comment(d: &DestKey, slot: &Slot) -> String {
    let mut s = String::new();
    if let Some(t) = slot.draining_since {
        let _ = write!(s, "drain={t} ");
    }
    let _ = write!(
        s,
        "{} {} w={} u={} l={}",
        d,
        slot.spec.fwd.name(),
        slot.spec.weight,
        slot.spec.u_thresh,
        slot.spec.l_thresh
    );
    s
}

fn v6_mask(prefix: u8) -> String {
    let bits = u128::MAX
        .checked_shl(128 - u32::from(prefix.min(128)))
        .unwrap_or(0);
    std::net::Ipv6Addr::from(bits).to_string()
}

fn v4_mask(prefix: u8) -> String {
    let bits = u32::MAX.checked_shl(32 - u32::from(prefix.min(32))).unwrap_or(0);
    std::net::Ipv4Addr::from(bits).to_string()
}

/// The set of destination marks behind egress device `dev` (hex keeps any device name
/// a valid set name).
pub fn fwd_set(v6: bool, dev: &str) -> String {
    let hex: String = dev.bytes().map(|b| format!("{b:02x}")).collect();
    format!("fwd{}_{hex}", fam(v6))
}

/// The device behind a `fwd_set` name.
pub fn fwd_set_device(name: &str) -> Option<(bool, String)> {
    let (v6, hex) = if let Some(h) = name.strip_prefix("fwd4_") {
        (false, h)
    } else {
        (true, name.strip_prefix("fwd6_")?)
    };
    if hex.len() % 2 != 0 {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect();
    Some((v6, String::from_utf8(bytes?).ok()?))
}

/// The maps and base chains [`skeleton`] creates in a table.
pub fn skeleton_objects(nat: bool) -> Vec<&'static str> {
    let mut v = vec![
        "svc4", "svc6", "dst4", "dst6", "flows4", "flows6", "pflows4", "pflows6", "slots",
    ];
    if nat {
        v.push("prerouting");
    } else {
        v.extend(["relog4", "relog6"]);
    }
    v
}

/// Creates one table and its shared maps if they do not exist (idempotent, and cheap:
/// nothing here reads a map), and (re)makes its hook chain, which for DR hooks `ingress`
/// (the devices DR traffic arrives on: a base chain's devices are fixed when it is
/// created).
pub fn skeleton(table: TableId, ingress: &BTreeSet<String>) -> String {
    let mut s = String::new();
    let (nat, t) = (table.nat, table.name());
    let m = mark_expr(nat);
    let _ = writeln!(s, "add table {t}");
    for v6 in [false, true] {
        let (f, ip) = (fam(v6), ipf(v6));
        let _ = writeln!(
            s,
            "add map {t} svc{f} {{ typeof {ip} daddr . meta l4proto . th dport : verdict; }}"
        );
        let value = if nat {
            format!("{ip} daddr . th dport")
        } else {
            format!("{ip} daddr")
        };
        let _ = writeln!(s, "add map {t} dst{f} {{ typeof {m} : {value}; }}");
        let _ = writeln!(
            s,
            "add map {t} flows{f} {{ typeof {ip} saddr . th sport . {m} : {m}; flags dynamic,timeout; timeout 900s; size {FLOWS_SIZE}; }}"
        );
        let _ = writeln!(
            s,
            "add map {t} pflows{f} {{ typeof {ip} saddr . {m} : {m}; flags dynamic,timeout; timeout 900s; size {FLOWS_SIZE}; }}"
        );
    }
    let _ = writeln!(s, "add map {t} slots {{ typeof {m} : {m}; }}");
    if !nat {
        for v6 in [false, true] {
            let _ = writeln!(
                s,
                "add set {t} relog{} {{ typeof {} saddr . th sport . {m}; flags dynamic,timeout; timeout {RELOG_SECS}s; size {FLOWS_SIZE}; }}",
                fam(v6),
                ipf(v6)
            );
        }
    }
    if nat {
        let _ = writeln!(
            s,
            "add chain {t} prerouting {{ type nat hook prerouting priority dstnat - 5; policy accept; }}"
        );
        let _ = writeln!(s, "flush chain {t} prerouting");
        for (ip, f) in [("ip", '4'), ("ip6", '6')] {
            let _ = writeln!(
                s,
                "add rule {t} prerouting {ip} daddr . meta l4proto . th dport vmap @svc{f}"
            );
        }
    } else {
        // Replaced within the transaction (atomic).
        let _ = writeln!(s, "add chain {t} ingress");
        let _ = writeln!(s, "delete chain {t} ingress");
        if !ingress.is_empty() {
            let list: Vec<String> = ingress.iter().map(|d| format!("\"{d}\"")).collect();
            let _ = writeln!(
                s,
                "add chain {t} ingress {{ type filter hook ingress devices = {{ {} }} priority -500; policy accept; }}",
                list.join(", ")
            );
            for (ip, f) in [("ip", '4'), ("ip6", '6')] {
                let _ = writeln!(
                    s,
                    "add rule {t} ingress {ip} daddr . meta l4proto . th dport vmap @svc{f}"
                );
            }
        }
    }
    s
}

/// Removes tables (their flows included).
pub fn drop_tables(tables: impl IntoIterator<Item = TableId>) -> String {
    let mut s = String::new();
    for t in tables {
        let _ = writeln!(s, "add table {t}\ndelete table {t}");
    }
    s
}

fn conn_chain(v6: bool) -> String {
    format!("conn{}", fam(v6))
}

fn pers_chain(v6: bool, prefix: u8) -> String {
    format!("pers{}_{prefix}", fam(v6))
}

fn out_chain(nat: bool, v6: bool) -> String {
    format!("{}{}", if nat { "dnat" } else { "fwd" }, fam(v6))
}

/// The client part of a persistence key.
fn client_net(v6: bool, prefix: u8) -> String {
    let ip = ipf(v6);
    let full = if v6 { 128 } else { 32 };
    if prefix >= full {
        format!("{ip} saddr")
    } else {
        let mask = if v6 { v6_mask(prefix) } else { v4_mask(prefix) };
        format!("( {ip} saddr & {mask} )")
    }
}

/// What one table's shared chains are made of, given its services: chain -> rules.
pub fn shared_chains<'a>(
    nat: bool,
    services: impl Iterator<Item = &'a SvcState>,
) -> BTreeMap<String, Vec<String>> {
    let mut uses = Uses::default();
    for st in services {
        uses.add(st);
    }
    shared_chains_for(nat, &uses.devices(), &uses.prefixes())
}

/// What the shared chains of a table depend on, counted over its services: each
/// destination's device (by family) and each persistence prefix. Kept up to date per
/// service changed, so that a change does not walk every service.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Uses {
    /// How many services the table holds.
    pub services: usize,
    devices: [BTreeMap<String, usize>; 2],
    prefixes: BTreeMap<(bool, u8), usize>,
}

impl Uses {
    pub fn add(&mut self, st: &SvcState) {
        self.count(st, true);
    }

    pub fn remove(&mut self, st: &SvcState) {
        self.count(st, false);
    }

    fn count(&mut self, st: &SvcState, add: bool) {
        fn bump<K: Ord + Clone>(m: &mut BTreeMap<K, usize>, k: &K, add: bool) {
            if add {
                *m.entry(k.clone()).or_default() += 1;
            } else if let Some(n) = m.get_mut(k) {
                *n -= 1;
                if *n == 0 {
                    m.remove(k);
                }
            }
        }
        if add {
            self.services += 1;
        } else {
            self.services = self.services.saturating_sub(1);
        }
        let v6 = st.key.is_v6();
        if let Affinity::Client(p) = st.affinity() {
            bump(&mut self.prefixes, &(v6, p), add);
        }
        for slot in st.dests.values() {
            if let Some(d) = &slot.dev {
                bump(&mut self.devices[usize::from(v6)], d, add);
            }
        }
    }

    /// The devices destinations are reached on, by family (index: is IPv6).
    pub fn devices(&self) -> [BTreeSet<String>; 2] {
        [0, 1].map(|f| self.devices[f].keys().cloned().collect())
    }

    /// The persistence prefixes, with their family (is IPv6).
    pub fn prefixes(&self) -> BTreeSet<(bool, u8)> {
        self.prefixes.keys().copied().collect()
    }
}

/// The shared chains of a table whose destinations use `devices` (by family) and whose
/// services persist by `prefixes`.
pub fn shared_chains_for(
    nat: bool,
    devices: &[BTreeSet<String>; 2],
    prefixes: &BTreeSet<(bool, u8)>,
) -> BTreeMap<String, Vec<String>> {
    let m = mark_expr(nat);
    let mut out = BTreeMap::new();
    // A slot with no destination (none takes new flows) goes back to the bare tag, so
    // that the service drops the packet rather than remember a flow to nowhere.
    let mut pick = vec![
        format!("{m} & {SLOT_BIT:#x} != 0 {m} set {m} map @slots"),
        format!("{m} & {SLOT_BIT:#x} != 0 {m} set {m} & 0xffff0000"),
    ];
    if !nat {
        out.insert(PICK_ONLY.to_string(), pick.clone());
    }
    let log = format!(
        "log group {} snaplen {}",
        super::flowlog::FLOW_LOG_GROUP,
        super::flowlog::SNAPLEN
    );
    if !nat {
        // Only a flow's first packet comes here: once it has a destination, it is logged
        // (its mark and first bytes) for the directors that may take the VIP over
        // (`flowlog`; NAT flows are conntrack's), and noted as announced.
        pick.push(format!("{m} & {MAX_DESTS:#x} != 0 {log}"));
        for v6 in [false, true] {
            pick.push(format!(
                "{m} & {MAX_DESTS:#x} != 0 add @relog{} {{ {} saddr . th sport . {m} }}",
                fam(v6),
                ipf(v6)
            ));
        }
    }
    out.insert("pick".to_string(), pick);
    // A flow found pinned is announced again once per RELOG_SECS while packets come, so
    // that the other directors' copies (which no packet refreshes) outlive it, and a new
    // master announces the flows it took over.
    let relog = |v6: bool| -> Vec<String> {
        let (f, ip) = (fam(v6), ipf(v6));
        vec![
            format!("{m} & {MAX_DESTS:#x} == 0 return"),
            format!("{ip} saddr . th sport . {m} @relog{f} return"),
            format!("add @relog{f} {{ {ip} saddr . th sport . {m} }} {log}"),
        ]
    };
    for v6 in [false, true] {
        let (f, ip) = (fam(v6), ipf(v6));
        let mut rules = vec![format!("{m} set {ip} saddr . th sport . {m} map @flows{f}")];
        if !nat {
            rules.extend(relog(v6));
        }
        out.insert(conn_chain(v6), rules);
        let rules = if nat {
            vec![format!(
                "ct mark & {MAX_DESTS:#x} != 0 meta l4proto {{ tcp, udp, sctp }} dnat {ip} addr . port to ct mark map @dst{f}"
            )]
        } else {
            devices[usize::from(v6)]
                .iter()
                .map(|d| {
                    format!(
                        "meta mark @{} fwd {ip} to meta mark map @dst{f} device \"{d}\"",
                        fwd_set(v6, d)
                    )
                })
                .collect()
        };
        out.insert(out_chain(nat, v6), rules);
    }
    for &(v6, p) in prefixes {
        let mut rules = vec![format!(
            "{m} set {} . {m} map @pflows{}",
            client_net(v6, p),
            fam(v6)
        )];
        if !nat {
            rules.extend(relog(v6));
        }
        out.insert(pers_chain(v6, p), rules);
    }
    out
}

/// What the dump can tell of a shared chain: its rule count and the devices it forwards
/// to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fingerprint {
    pub rules: usize,
    pub devices: BTreeSet<String>,
}

pub fn fingerprint(rules: &[String]) -> Fingerprint {
    Fingerprint {
        rules: rules.len(),
        devices: rules
            .iter()
            .filter_map(|r| {
                let rest = r.split_once(" device \"")?.1;
                Some(rest.trim_end_matches('"').to_string())
            })
            .collect(),
    }
}

/// (Re)creates one shared chain, and the device sets its rules read.
pub fn render_shared(table: TableId, chain: &str, rules: &[String]) -> String {
    let t = table.name();
    let mut s = String::new();
    for r in rules {
        if let Some(set) = r.strip_prefix("meta mark @").and_then(|x| x.split(' ').next()) {
            let _ = writeln!(s, "add set {t} {set} {{ typeof meta mark; }}");
        }
    }
    let _ = writeln!(s, "add chain {t} {chain}");
    let _ = writeln!(s, "flush chain {t} {chain}");
    for r in rules {
        let _ = writeln!(s, "add rule {t} {chain} {r}");
    }
    s
}

/// How a rule reads or writes the service's mark: `meta mark` (DR, per packet) or
/// `ct mark` (NAT, per connection).
fn mark_load(nat: bool, dreg: u32) -> Expr {
    Expr::MarkLoad { ct: nat, dreg }
}

fn mark_cmp(nat: bool, tag: u32, neq: bool) -> [Expr; 2] {
    [
        mark_load(nat, expr::REG_1),
        Expr::Cmp {
            sreg: expr::REG_1,
            neq,
            data: tag.to_ne_bytes().to_vec(),
        },
    ]
}

/// The IP header offset and length of the source (or destination) address.
fn addr_field(v6: bool, source: bool) -> (u32, u32) {
    match (v6, source) {
        (false, true) => (12, 4),
        (false, false) => (16, 4),
        (true, true) => (8, 16),
        (true, false) => (24, 16),
    }
}

/// Loads the source port (`th sport`) into the 4-byte register after `bytes` of a key
/// or hash input that starts at `REG_1` (as nft concatenates).
fn source_port(bytes: u32) -> Expr {
    Expr::Payload {
        base: Base::Transport,
        offset: 0,
        len: 2,
        dreg: expr::reg32_after(bytes),
    }
}

/// The prefix mask of an address, in network order.
fn prefix_mask(v6: bool, prefix: u8) -> Vec<u8> {
    if v6 {
        u128::MAX
            .checked_shl(128 - u32::from(prefix.min(128)))
            .unwrap_or(0)
            .to_be_bytes()
            .to_vec()
    } else {
        u32::MAX
            .checked_shl(32 - u32::from(prefix.min(32)))
            .unwrap_or(0)
            .to_be_bytes()
            .to_vec()
    }
}

/// The expressions that remember a flow: the key (client address, masked for
/// persistence, then the source port for per-connection affinity, then the service's
/// tag) from `REG_1`, the destination mark as data, with `timeout`.
fn update_exprs(nat: bool, v6: bool, affinity: Affinity, timeout: u32) -> Vec<Expr> {
    let (off, len) = addr_field(v6, true);
    let mut e = family_check(nat, v6).to_vec();
    e.push(Expr::Payload {
        base: Base::Network,
        offset: off,
        len,
        dreg: expr::REG_1,
    });
    let mut key_len = len;
    let set = match affinity {
        Affinity::Client(p) => {
            if u32::from(p) < len * 8 {
                e.push(Expr::Mask {
                    reg: expr::REG_1,
                    mask: prefix_mask(v6, p),
                });
            }
            format!("pflows{}", fam(v6))
        }
        _ => {
            e.push(source_port(key_len));
            key_len += 4;
            format!("flows{}", fam(v6))
        }
    };
    let tag_reg = expr::reg32_after(key_len);
    e.push(mark_load(nat, tag_reg));
    e.push(Expr::Mask {
        reg: tag_reg,
        mask: 0xffff_0000u32.to_ne_bytes().to_vec(),
    });
    // The data after the key: nft's register for IPv4 (REG_2, past a 12-byte key), the
    // next free 16-byte one past IPv6's 20 or 24 bytes.
    let data_reg = if v6 { expr::REG_3 } else { expr::REG_2 };
    e.push(mark_load(nat, data_reg));
    e.push(Expr::Update {
        set,
        sreg_key: expr::REG_1,
        sreg_data: data_reg,
        timeout_ms: u64::from(timeout) * 1000,
    });
    e
}

/// The rules of chain `svc_N`.
pub fn service_rules(st: &SvcState) -> Result<Vec<Rule>, String> {
    let nat = st.is_nat();
    let v6 = st.key.is_v6();
    let m = mark_expr(nat);
    let tag = tag(st.id);
    let (f, ip) = (fam(v6), ipf(v6));
    let plan = slots::plan(&st.spec.sched).ok_or_else(|| format!("unknown scheduler {:?}", st.spec.sched))?;
    let n = st.slots;
    // Four rules: tag the packet and look its flow up; if none, pick a slot and map it to
    // a destination; remember the flow and go out; drop what has no destination.
    let affinity = st.affinity();
    let set_tag = vec![
        Expr::Immediate {
            dreg: expr::REG_1,
            data: Data::Value(tag.to_ne_bytes().to_vec()),
        },
        Expr::MarkSet {
            ct: nat,
            sreg: expr::REG_1,
        },
    ];
    let mut r = vec![match affinity {
        Affinity::None => Rule {
            text: format!("{m} set {tag}"),
            exprs: set_tag,
        },
        Affinity::Conn => Rule {
            text: format!("{m} set {tag} jump {}", conn_chain(v6)),
            exprs: [set_tag, vec![jump(&conn_chain(v6))]].concat(),
        },
        Affinity::Client(p) => Rule {
            text: format!("{m} set {tag} jump {}", pers_chain(v6, p)),
            exprs: [set_tag, vec![jump(&pers_chain(v6, p))]].concat(),
        },
    }];
    if n > 0 {
        let offset = tag | SLOT_BIT;
        let mut exprs = mark_cmp(nat, tag, false).to_vec();
        let pick = match plan.pick {
            Pick::Rotate => {
                exprs.push(Expr::Numgen {
                    dreg: expr::REG_1,
                    modulus: n,
                    offset,
                });
                format!("numgen inc mod {n} offset {offset}")
            }
            Pick::HashSource | Pick::HashDest => {
                let source = plan.pick == Pick::HashSource;
                let (off, len) = addr_field(v6, source);
                exprs.extend(family_check(nat, v6));
                exprs.push(Expr::Payload {
                    base: Base::Network,
                    offset: off,
                    len,
                    dreg: expr::REG_1,
                });
                let field = if source { "saddr" } else { "daddr" };
                let mut input = format!("{ip} {field}");
                let mut hashed = len;
                // sh-port / mh-port: the source port too (each in its own 4-byte
                // register, as nft concatenates).
                if source && st.spec.hashes_port() {
                    exprs.push(source_port(len));
                    hashed += 4;
                    input.push_str(" . th sport");
                }
                exprs.push(Expr::Jhash {
                    sreg: expr::REG_1,
                    dreg: expr::REG_1,
                    len: hashed,
                    modulus: n,
                    seed: HASH_SEED,
                    offset,
                });
                format!("jhash {input} mod {n} seed {HASH_SEED:#x} offset {offset}")
            }
        };
        // A Maglev service looks its slot up in its own map here (no entry: no
        // destination takes new flows, the mark stays the bare tag and the packet is
        // dropped below); the others map theirs in the shared `pick` chain.
        let pick = if plan.maglev {
            let map = maglev_map(st.id);
            exprs.push(Expr::Lookup {
                set: map.clone(),
                sreg: expr::REG_1,
                dreg: expr::REG_1,
            });
            format!("{pick} map @{map}")
        } else {
            pick
        };
        exprs.push(Expr::MarkSet {
            ct: nat,
            sreg: expr::REG_1,
        });
        // A one-packet service pins nothing: its packets are not logged for flow sync.
        let to = if affinity == Affinity::None && !nat {
            PICK_ONLY
        } else {
            "pick"
        };
        exprs.push(jump(to));
        r.push(Rule {
            text: format!("{m} {tag} {m} set {pick} jump {to}"),
            exprs,
        });
    }
    let timeout = st.flow_timeout();
    let out = out_chain(nat, v6);
    let mut exprs = mark_cmp(nat, tag, true).to_vec();
    let text = match affinity {
        Affinity::None => format!("{m} != {tag} jump {out}"),
        Affinity::Conn => format!(
            "{m} != {tag} update @flows{f} {{ {ip} saddr . th sport . ( {m} & 0xffff0000 ) timeout {timeout}s : {m} }} jump {out}"
        ),
        Affinity::Client(p) => format!(
            "{m} != {tag} update @pflows{f} {{ {} . ( {m} & 0xffff0000 ) timeout {timeout}s : {m} }} jump {out}",
            client_net(v6, p)
        ),
    };
    if affinity != Affinity::None {
        exprs.extend(update_exprs(nat, v6, affinity, timeout));
    }
    exprs.push(jump(&out));
    r.push(Rule { text, exprs });
    r.push(Rule {
        text: "drop".to_string(),
        exprs: vec![Expr::Immediate {
            dreg: expr::REG_VERDICT,
            data: Data::Verdict(expr::NF_DROP, None),
        }],
    });
    Ok(r)
}

/// The value of a map element.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ElemValue {
    /// A mark (`slots`: slot -> destination).
    Mark(u32),
    /// A DR destination's address (`dst` of the DR table).
    Addr(IpAddr),
    /// A NAT destination's address and port (`dst` of the NAT table).
    AddrPort(IpAddr, u16),
}

impl std::fmt::Display for ElemValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ElemValue::Mark(m) => write!(f, "{m}"),
            ElemValue::Addr(a) => write!(f, "{a}"),
            ElemValue::AddrPort(a, p) => write!(f, "{a} . {p}"),
        }
    }
}

/// One element of our mark-keyed maps and sets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Elem {
    pub key: u32,
    pub value: Option<ElemValue>,
    pub comment: Option<String>,
}

/// A flow in a flow map: the client (its network, masked, for persistence) and port
/// (none for persistence), the service's tag, and the destination mark it goes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowElem {
    pub client: IpAddr,
    pub port: Option<u16>,
    pub tag: u32,
    pub mark: u32,
    /// Seconds the kernel keeps it without traffic.
    pub timeout: u32,
}

impl FlowElem {
    /// The key's bytes as the map's concatenated type holds them: the address (network
    /// order), the port (network order, padded to 4 bytes), the tag (host order).
    pub fn key_bytes(&self) -> Vec<u8> {
        let mut b = match self.client {
            IpAddr::V4(a) => a.octets().to_vec(),
            IpAddr::V6(a) => a.octets().to_vec(),
        };
        if let Some(p) = self.port {
            b.extend_from_slice(&p.to_be_bytes());
            b.extend_from_slice(&[0, 0]);
        }
        b.extend_from_slice(&self.tag.to_ne_bytes());
        b
    }
}

/// Where a flow another director forwards goes in this service's tables: the table, the
/// flow map and the element. None when the service pins nothing (one-packet scheduling),
/// is NAT (conntrack's), does not have that real server, or the client is of the other
/// family.
pub fn flow_elem(
    st: &SvcState,
    client: std::net::SocketAddr,
    dest: &DestKey,
) -> Option<(TableId, String, FlowElem)> {
    let v6 = st.key.is_v6();
    if st.is_nat() || client.is_ipv6() != v6 {
        return None;
    }
    let slot = st.dests.get(dest)?;
    let tag = tag(st.id);
    let (set, addr, port) = match st.affinity() {
        Affinity::None => return None,
        Affinity::Conn => (format!("flows{}", fam(v6)), client.ip(), Some(client.port())),
        Affinity::Client(p) => (format!("pflows{}", fam(v6)), masked(client.ip(), p), None),
    };
    let elem = FlowElem {
        client: addr,
        port,
        tag,
        mark: tag | slot.mark,
        timeout: st.flow_timeout(),
    };
    Some((st.table_id(), set, elem))
}

/// A flow map element's key read back: the client (address and port; the network and
/// port 0 for a persistence map) and the service tag. `set` names the map.
pub fn flow_key_of(set: &str, key: &[u8]) -> Option<(std::net::SocketAddr, u32)> {
    let (v6, with_port) = match set {
        "flows4" => (false, true),
        "flows6" => (true, true),
        "pflows4" => (false, false),
        "pflows6" => (true, false),
        _ => return None,
    };
    let alen = if v6 { 16 } else { 4 };
    let want = alen + if with_port { 4 } else { 0 } + 4;
    if key.len() != want {
        return None;
    }
    let addr = if v6 {
        let a: [u8; 16] = key[..16].try_into().ok()?;
        IpAddr::from(a)
    } else {
        let a: [u8; 4] = key[..4].try_into().ok()?;
        IpAddr::from(a)
    };
    let port = if with_port {
        u16::from_be_bytes([key[alen], key[alen + 1]])
    } else {
        0
    };
    let t = &key[want - 4..];
    let tag = u32::from_ne_bytes([t[0], t[1], t[2], t[3]]);
    Some((std::net::SocketAddr::new(addr, port), tag))
}

/// The flow maps of a direct-routing table.
pub const FLOW_MAPS: [&str; 4] = ["flows4", "flows6", "pflows4", "pflows6"];

/// `addr` with only its first `prefix` bits.
fn masked(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let bits = u32::MAX.checked_shl(32 - u32::from(prefix.min(32))).unwrap_or(0);
            IpAddr::V4((u32::from(a) & bits).into())
        }
        IpAddr::V6(a) => {
            let bits = u128::MAX
                .checked_shl(128 - u32::from(prefix.min(128)))
                .unwrap_or(0);
            IpAddr::V6((u128::from(a) & bits).into())
        }
    }
}

/// Elements added to or deleted from one map or set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SetOp {
    pub set: String,
    pub add: bool,
    pub elems: Vec<Elem>,
}

/// What a step does to one chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChainOp {
    /// Creates it (nothing if it exists).
    Add,
    /// Removes its rules.
    Flush,
    /// Removes it (its rules with it).
    Delete,
    /// Appends a rule.
    Append(Rule),
}

/// One step of a change: nft text (the skeleton, the shared chains), or what can also go
/// to the kernel as a netlink batch: elements of the data maps and sets, a service's
/// chain and rules, a service-map entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cmd {
    Text(String),
    Elements {
        table: &'static str,
        op: SetOp,
    },
    Chain {
        table: &'static str,
        chain: String,
        op: ChainOp,
    },
    /// Flows pinned in a flow map (`flows4`/`6`, `pflows4`/`6`) as another director
    /// forwarded them: added, or refreshed where the same flow is already there.
    Flows {
        table: &'static str,
        set: String,
        elems: Vec<FlowElem>,
        /// Delete each element's key first, in the same transaction (the key is there,
        /// pinned to another server).
        replace: bool,
    },
    /// A service's own map of marks (a Maglev lookup table, [`maglev_map`]): created
    /// (if it is not there) or deleted with its elements.
    Map {
        table: &'static str,
        name: String,
        add: bool,
    },
    /// A service-map entry: added with (comment, chain to jump to), or deleted (None).
    Entry {
        table: &'static str,
        map: &'static str,
        key: SvcKey,
        target: Option<(String, String)>,
    },
}

impl Cmd {
    /// Whether the step can go as netlink (everything but text).
    pub fn is_netlink(&self) -> bool {
        !matches!(self, Cmd::Text(_))
    }

    fn write_to(&self, s: &mut String) {
        match self {
            Cmd::Text(t) => s.push_str(t),
            Cmd::Chain { table, chain, op } => {
                let _ = match op {
                    ChainOp::Add => writeln!(s, "add chain {table} {chain}"),
                    ChainOp::Flush => writeln!(s, "flush chain {table} {chain}"),
                    ChainOp::Delete => writeln!(s, "delete chain {table} {chain}"),
                    ChainOp::Append(r) => writeln!(s, "add rule {table} {chain} {}", r.text),
                };
            }
            Cmd::Map { table, name, add } => {
                let _ = if *add {
                    writeln!(s, "add map {table} {name} {{ {MAGLEV_MAP_TYPE}; }}")
                } else {
                    writeln!(s, "delete map {table} {name}")
                };
            }
            Cmd::Entry {
                table,
                map,
                key,
                target,
            } => {
                let k = vmap_key(key).unwrap_or_default();
                let _ = match target {
                    Some((comment, chain)) => writeln!(
                        s,
                        "add element {table} {map} {{ {k} comment \"{comment}\" : jump {chain} }}"
                    ),
                    None => writeln!(s, "delete element {table} {map} {{ {k} }}"),
                };
            }
            Cmd::Flows {
                table,
                set,
                elems,
                replace,
            } => {
                if *replace {
                    let keys = join(elems.iter(), |e| {
                        let port = e.port.map(|p| format!(" . {p}")).unwrap_or_default();
                        format!("{}{port} . {:#x}", e.client, e.tag)
                    });
                    let _ = writeln!(s, "delete element {table} {set} {{ {keys} }}");
                }
                let items = join(elems.iter(), |e| {
                    let mut it = e.client.to_string();
                    if let Some(p) = e.port {
                        let _ = write!(it, " . {p}");
                    }
                    let _ = write!(it, " . {:#x} timeout {}s : {:#x}", e.tag, e.timeout, e.mark);
                    it
                });
                let _ = writeln!(s, "add element {table} {set} {{ {items} }}");
            }
            Cmd::Elements { table, op } => {
                let verb = if op.add { "add" } else { "delete" };
                let items = join(op.elems.iter(), |e| {
                    let mut it = e.key.to_string();
                    if op.add {
                        if let Some(c) = &e.comment {
                            let _ = write!(it, " comment \"{c}\"");
                        }
                        if let Some(v) = &e.value {
                            let _ = write!(it, " : {v}");
                        }
                    }
                    it
                });
                let _ = writeln!(s, "{verb} element {table} {} {{ {items} }}", op.set);
            }
        }
    }
}

/// The nft script of `cmds` (one transaction).
pub fn script<'a>(cmds: impl IntoIterator<Item = &'a Cmd>) -> String {
    let mut s = String::new();
    for c in cmds {
        c.write_to(&mut s);
    }
    s
}

/// A service's elements in the shared maps and sets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Elements {
    /// The `svcN` entry: key and comment.
    pub vmap: Option<(String, String)>,
    /// Slot mark -> destination mark, in map `slot_map` (`slots`, or the service's own
    /// Maglev map).
    pub slots: BTreeMap<u32, u32>,
    pub slot_map: String,
    /// Destination mark -> (value, comment).
    pub dst: BTreeMap<u32, (ElemValue, String)>,
    /// (device set, destination mark).
    pub fwd: BTreeSet<(String, u32)>,
}

/// The elements a service puts in the shared maps. A DR destination whose device is not
/// known yet has no device-set entry.
pub fn elements(st: &SvcState) -> Elements {
    let tag = tag(st.id);
    let v6 = st.key.is_v6();
    let nat = st.is_nat();
    let mut e = Elements {
        vmap: vmap_key(&st.key).map(|k| (k, spec_comment(&st.spec))),
        slot_map: st.slot_map(),
        ..Elements::default()
    };
    if let Some(plan) = slots::plan(&st.spec.sched) {
        let active = st.active();
        for (i, d) in slots::layout(&plan, &active, st.slots).into_iter().enumerate() {
            if let Some(slot) = active.get(d).and_then(|(k, _)| st.dests.get(k)) {
                e.slots.insert(tag | SLOT_BIT | i as u32, tag | slot.mark);
            }
        }
    }
    for (d, slot) in &st.dests {
        let value = if nat {
            ElemValue::AddrPort(d.addr, d.port)
        } else {
            ElemValue::Addr(d.addr)
        };
        e.dst.insert(tag | slot.mark, (value, dest_comment(d, slot)));
        if let (false, Some(dev)) = (nat, &slot.dev) {
            e.fwd.insert((fwd_set(v6, dev), tag | slot.mark));
        }
    }
    e
}

fn vmap_name(key: &SvcKey) -> &'static str {
    if key.is_v6() {
        "svc6"
    } else {
        "svc4"
    }
}

fn join<T>(items: impl Iterator<Item = T>, f: impl Fn(T) -> String) -> String {
    items.map(f).collect::<Vec<_>>().join(", ")
}

/// Element steps that remove `gone` and add `new` (`gone` first). The service entries
/// (`vmap`) are not among them: they are verdicts, sent as text with the chains.
fn element_commands(t: &'static str, vm: &str, gone: &Elements, new: &Elements) -> Vec<Cmd> {
    let mut out = Vec::new();
    let mut push = |set: &str, add: bool, elems: Vec<Elem>| {
        if !elems.is_empty() {
            out.push(Cmd::Elements {
                table: t,
                op: SetOp {
                    set: set.to_string(),
                    add,
                    elems,
                },
            });
        }
    };
    let bare = |key: u32| Elem {
        key,
        value: None,
        comment: None,
    };
    let dmap = if vm == "svc6" { "dst6" } else { "dst4" };
    push(
        &gone.slot_map,
        false,
        gone.slots.keys().map(|k| bare(*k)).collect(),
    );
    push(dmap, false, gone.dst.keys().map(|k| bare(*k)).collect());
    for (set, marks) in by_set(&gone.fwd) {
        push(set, false, marks.into_iter().map(bare).collect());
    }
    push(
        &new.slot_map,
        true,
        new.slots
            .iter()
            .map(|(k, v)| Elem {
                key: *k,
                value: Some(ElemValue::Mark(*v)),
                comment: None,
            })
            .collect(),
    );
    push(
        dmap,
        true,
        new.dst
            .iter()
            .map(|(k, (v, c))| Elem {
                key: *k,
                value: Some(v.clone()),
                comment: Some(c.clone()),
            })
            .collect(),
    );
    for (set, marks) in by_set(&new.fwd) {
        push(set, true, marks.into_iter().map(bare).collect());
    }
    out
}

fn by_set(fwd: &BTreeSet<(String, u32)>) -> BTreeMap<&str, Vec<u32>> {
    let mut out: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
    for (set, m) in fwd {
        out.entry(set.as_str()).or_default().push(*m);
    }
    out
}

/// What is in `a` and not (the same) in `b`.
fn minus(a: &Elements, b: &Elements) -> Elements {
    Elements {
        vmap: a.vmap.clone().filter(|v| b.vmap.as_ref() != Some(v)),
        // Slots in another map (the scheduler became or left Maglev) all differ.
        slots: a
            .slots
            .iter()
            .filter(|(k, v)| a.slot_map != b.slot_map || b.slots.get(k) != Some(v))
            .map(|(k, v)| (*k, *v))
            .collect(),
        slot_map: a.slot_map.clone(),
        dst: a
            .dst
            .iter()
            .filter(|(k, v)| b.dst.get(k) != Some(v))
            .map(|(k, v)| (*k, v.clone()))
            .collect(),
        fwd: a.fwd.difference(&b.fwd).cloned().collect(),
    }
}

/// Removes a service: its entry, its chain and its elements.
pub fn delete_service(st: &SvcState) -> Vec<Cmd> {
    delete_service_in(st, st.table_id())
}

/// Removes a service from `table` (where a dump found it).
pub fn delete_service_in(st: &SvcState, table: TableId) -> Vec<Cmd> {
    let t = table.name();
    let gone = elements(st);
    let vm = vmap_name(&st.key);
    let mut out = Vec::new();
    if gone.vmap.is_some() {
        out.push(Cmd::Entry {
            table: t,
            map: vm,
            key: st.key,
            target: None,
        });
    }
    out.push(Cmd::Chain {
        table: t,
        chain: format!("svc_{}", st.id),
        op: ChainOp::Delete,
    });
    let maglev = st.is_maglev();
    let rest = Elements {
        vmap: None,
        // A Maglev map goes whole, with its elements, once the chain reading it went.
        slots: if maglev { BTreeMap::new() } else { gone.slots },
        ..gone
    };
    out.extend(element_commands(t, vm, &rest, &Elements::default()));
    if maglev {
        out.push(Cmd::Map {
            table: t,
            name: maglev_map(st.id),
            add: false,
        });
    }
    out
}

/// (Re)renders one service. `existed`: the service as the kernel has it (None: new).
/// Only what differs is sent: a weight change touches that service's slots and one
/// destination element; its chain is rewritten only when its rules change.
pub fn render_service(st: &SvcState, existed: Option<&SvcState>) -> Result<Vec<Cmd>, String> {
    if let Some(old) = existed {
        if old.is_nat() != st.is_nat() || old.id != st.id {
            let mut out = delete_service(old);
            out.extend(render_service(st, None)?);
            return Ok(out);
        }
    }
    if st.id == 0 || st.id > MAX_SERVICES {
        return Err(format!("service id {} out of range", st.id));
    }
    let t = st.table();
    let n = st.id;
    let vm = vmap_name(&st.key);
    let rules = service_rules(st)?;
    let new = elements(st);
    let (gone, added, old_rules) = match existed {
        None => (Elements::default(), new.clone(), None),
        Some(old) => {
            let old_el = elements(old);
            (
                minus(&old_el, &new),
                minus(&new, &old_el),
                service_rules(old).ok(),
            )
        }
    };
    // The service entry goes last (it jumps to the chain), so hold it back.
    let entry = added.vmap.clone();
    let added = Elements { vmap: None, ..added };
    let was_maglev = existed.is_some_and(SvcState::is_maglev);
    let mut out = Vec::new();
    if st.is_maglev() && !was_maglev {
        // Its map first: the chain reads it, the elements go in it.
        out.push(Cmd::Map {
            table: t,
            name: maglev_map(n),
            add: true,
        });
    }
    // A Maglev map that goes takes its elements with it (once its chain is rewritten).
    let gone = if was_maglev && !st.is_maglev() {
        Elements {
            slots: BTreeMap::new(),
            ..gone
        }
    } else {
        gone
    };
    out.extend(element_commands(t, vm, &gone, &Elements::default()));
    if gone.vmap.is_some() {
        // A changed spec: the entry is replaced below.
        out.insert(
            0,
            Cmd::Entry {
                table: t,
                map: vm,
                key: st.key,
                target: None,
            },
        );
    }
    if old_rules.as_ref() != Some(&rules) {
        let chain = format!("svc_{n}");
        let op = |op| Cmd::Chain {
            table: t,
            chain: chain.clone(),
            op,
        };
        out.push(op(ChainOp::Add));
        if existed.is_some() {
            out.push(op(ChainOp::Flush));
        }
        for r in rules {
            out.push(op(ChainOp::Append(r)));
        }
    }
    if was_maglev && !st.is_maglev() {
        out.push(Cmd::Map {
            table: t,
            name: maglev_map(n),
            add: false,
        });
    }
    out.extend(element_commands(t, vm, &Elements::default(), &added));
    if let Some((_, c)) = entry {
        out.push(Cmd::Entry {
            table: t,
            map: vm,
            key: st.key,
            target: Some((c, format!("svc_{n}"))),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::super::model::{Persistence, SCHED_PORT};
    use super::*;

    fn dr_service(weights: &[u32]) -> SvcState {
        let mut dests = DestMap::new();
        for (i, w) in weights.iter().enumerate() {
            dests.insert(
                DestKey {
                    addr: IpAddr::from([198, 18, 116, 131 + i as u8]),
                    port: 80,
                },
                Slot {
                    mark: i as u32 + 1,
                    spec: DestSpec {
                        fwd: Forwarding::Dr,
                        weight: *w,
                        u_thresh: 0,
                        l_thresh: 0,
                    },
                    draining_since: None,
                    dev: Some("ens33".into()),
                },
            );
        }
        let mut st = SvcState {
            key: SvcKey::Inet {
                proto: Protocol::Tcp,
                addr: IpAddr::from([198, 18, 116, 134]),
                port: 80,
            },
            id: 1,
            spec: SvcSpec {
                sched: "rr".into(),
                persistence: None,
                ops: false,
                sched_flags: 0,
            },
            dests,
            slots: 0,
            empty_in_nat: false,
        };
        st.choose_slots();
        st
    }

    /// A flow another director forwards lands in this service's flow map under its own
    /// tag and destination mark, with the service's timeout; its key reads back as the
    /// same client and tag.
    #[test]
    fn a_synced_flow_is_pinned_under_this_directors_own_marks() {
        let mut st = dr_service(&[1, 1]);
        st.id = 7;
        let client: std::net::SocketAddr = "198.18.116.100:40123".parse().unwrap();
        let rs02 = DestKey {
            addr: IpAddr::from([198, 18, 116, 132]),
            port: 80,
        };
        let (table, set, e) = flow_elem(&st, client, &rs02).expect("pinned");
        assert_eq!((table, set.as_str()), (TableId::DR, "flows4"));
        assert_eq!(
            e,
            FlowElem {
                client: client.ip(),
                port: Some(40123),
                tag: 7 << 16,
                mark: (7 << 16) | 2,
                timeout: 900,
            }
        );
        assert_eq!(flow_key_of("flows4", &e.key_bytes()), Some((client, 7 << 16)));
        let text = script(&[Cmd::Flows {
            table: table.name(),
            set,
            elems: vec![e],
            replace: false,
        }]);
        assert_eq!(
            text,
            "add element netdev hanode flows4 { 198.18.116.100 . 40123 . 0x70000 timeout 900s : 0x70002 }\n"
        );

        // Persistence: the client's network, no port, the persistence timeout.
        st.spec.persistence = Some(Persistence {
            timeout: 300,
            prefix: 24,
        });
        let (_, set, e) = flow_elem(&st, client, &rs02).expect("pinned");
        assert_eq!(set, "pflows4");
        assert_eq!(
            (e.client, e.port, e.timeout),
            (IpAddr::from([198, 18, 116, 0]), None, 300)
        );
        let back: std::net::SocketAddr = "198.18.116.0:0".parse().unwrap();
        assert_eq!(flow_key_of("pflows4", &e.key_bytes()), Some((back, 7 << 16)));

        // Nothing to pin: a real server this director does not have, a client of the
        // other family, one-packet scheduling.
        let unknown = DestKey {
            addr: IpAddr::from([198, 18, 116, 199]),
            port: 80,
        };
        assert_eq!(flow_elem(&st, client, &unknown), None);
        let v6: std::net::SocketAddr = "[2001:db8::1]:5000".parse().unwrap();
        assert_eq!(flow_elem(&st, v6, &rs02), None);
        st.spec.persistence = None;
        st.spec.ops = true;
        assert_eq!(flow_elem(&st, client, &rs02), None);
    }

    #[test]
    fn flow_keys_of_ipv6_maps_read_back_and_bad_lengths_do_not() {
        let e = FlowElem {
            client: "2001:db8::7".parse().unwrap(),
            port: Some(443),
            tag: 3 << 16,
            mark: (3 << 16) | 1,
            timeout: 900,
        };
        let key = e.key_bytes();
        assert_eq!(key.len(), 24);
        assert_eq!(
            flow_key_of("flows6", &key),
            Some(("[2001:db8::7]:443".parse().unwrap(), 3 << 16))
        );
        assert_eq!(flow_key_of("flows4", &key), None);
        assert_eq!(flow_key_of("flows6", &key[..23]), None);
        assert_eq!(flow_key_of("dst4", &key), None);
    }

    /// `slots { 98304 : 65537, ... }` for the marks laid out in order.
    fn slot_list(marks: &[u32]) -> String {
        let items: Vec<String> = marks
            .iter()
            .enumerate()
            .map(|(i, m)| format!("{} : {m}", 98304 + i as u32))
            .collect();
        format!("slots {{ {} }}", items.join(", "))
    }

    #[test]
    fn seed_service_renders_the_dr_recipe() {
        let st = dr_service(&[1, 1]);
        let text = script(&render_service(&st, None).unwrap());
        // Two destinations share 12 slots, so that a third one or a weight change fits
        // without rewriting the chain.
        let slots = slot_list(&[65537, 65538].repeat(6));
        let expected = format!("\
add chain netdev hanode svc_1
add rule netdev hanode svc_1 meta mark set 65536 jump conn4
add rule netdev hanode svc_1 meta mark 65536 meta mark set numgen inc mod 12 offset 98304 jump pick
add rule netdev hanode svc_1 meta mark != 65536 update @flows4 {{ ip saddr . th sport . ( meta mark & 0xffff0000 ) timeout 900s : meta mark }} jump fwd4
add rule netdev hanode svc_1 drop
add element netdev hanode {slots}
add element netdev hanode dst4 {{ 65537 comment \"198.18.116.131:80 DR w=1 u=0 l=0\" : 198.18.116.131, 65538 comment \"198.18.116.132:80 DR w=1 u=0 l=0\" : 198.18.116.132 }}
add element netdev hanode fwd4_656e733333 {{ 65537, 65538 }}
add element netdev hanode svc4 {{ 198.18.116.134 . tcp . 80 comment \"rr\" : jump svc_1 }}
");
        assert_eq!(text, expected);
        let shared = shared_chains(false, [&st].into_iter());
        assert_eq!(
            shared["fwd4"],
            vec!["meta mark @fwd4_656e733333 fwd ip to meta mark map @dst4 device \"ens33\""]
        );
        // A pinned flow is found, then announced again once per RELOG_SECS.
        assert_eq!(
            shared["conn4"],
            vec![
                "meta mark set ip saddr . th sport . meta mark map @flows4",
                "meta mark & 0x7fff == 0 return",
                "ip saddr . th sport . meta mark @relog4 return",
                "add @relog4 { ip saddr . th sport . meta mark } log group 18529 snaplen 128"
            ]
        );
        // A new flow is logged once it has a destination, and noted as announced.
        assert_eq!(
            shared["pick"],
            vec![
                "meta mark & 0x8000 != 0 meta mark set meta mark map @slots",
                "meta mark & 0x8000 != 0 meta mark set meta mark & 0xffff0000",
                "meta mark & 0x7fff != 0 log group 18529 snaplen 128",
                "meta mark & 0x7fff != 0 add @relog4 { ip saddr . th sport . meta mark }",
                "meta mark & 0x7fff != 0 add @relog6 { ip6 saddr . th sport . meta mark }"
            ]
        );
        assert_eq!(shared[PICK_ONLY], shared["pick"][..2]);
        // NAT flows are conntrack's: nothing logged.
        let nat = shared_chains_for(true, &[BTreeSet::new(), BTreeSet::new()], &BTreeSet::new());
        assert_eq!(nat["conn4"].len(), 1);
        assert_eq!(nat["pick"].len(), 2);
        assert!(shared["fwd6"].is_empty());
        assert_eq!(fingerprint(&shared["fwd4"]).devices.len(), 1);
    }

    #[test]
    fn a_weight_change_touches_only_that_service_s_slots_and_destination() {
        let mut old = dr_service(&[1, 1]);
        old.spec.sched = "wrr".into();
        let mut st = old.clone();
        let first = *st.dests.keys().next().unwrap();
        st.dests.get_mut(&first).unwrap().spec.weight = 2;
        st.choose_slots();
        let text = script(&render_service(&st, Some(&old)).unwrap());
        // 2:1 in the same 12 slots (A B A four times): the slots that change and the
        // destination's element, no rule: the chain is not rewritten.
        let changed = "98307, 98308, 98309, 98313, 98314, 98315";
        let expected = "\
delete element netdev hanode slots { 98307, 98308, 98309, 98313, 98314, 98315 }
delete element netdev hanode dst4 { 65537 }
add element netdev hanode slots { 98307 : 65537, 98308 : 65538, 98309 : 65537, 98313 : 65537, 98314 : 65538, 98315 : 65537 }
add element netdev hanode dst4 { 65537 comment \"198.18.116.131:80 DR w=2 u=0 l=0\" : 198.18.116.131 }
";
        assert!(expected.contains(changed));
        assert_eq!(text, expected);
        let el = elements(&st);
        assert_eq!(el.slots.values().filter(|m| **m == 65537).count(), 8);
        // Same proportions (4:2 is 2:1): the slots and the chain stay, only the
        // destinations' comments change.
        let mut doubled = st.clone();
        for s in doubled.dests.values_mut() {
            s.spec.weight *= 2;
        }
        doubled.choose_slots();
        let text = script(&render_service(&doubled, Some(&st)).unwrap());
        assert!(!text.contains("slots") && !text.contains("rule"), "{text}");
        assert_eq!(text.lines().count(), 2, "{text}");
        // Nothing changed: nothing sent.
        assert_eq!(script(&render_service(&st, Some(&st)).unwrap()), "");
        // Weights that 12 slots cannot lay out (5:2 is 7 parts): the chain moves to a
        // count that approximates them closely, once.
        let mut seven = st.clone();
        let second = *seven.dests.keys().nth(1).unwrap();
        seven.dests.get_mut(&first).unwrap().spec.weight = 5;
        seven.dests.get_mut(&second).unwrap().spec.weight = 2;
        seven.choose_slots();
        assert_eq!(seven.slots, 60);
        let text = script(&render_service(&seven, Some(&st)).unwrap());
        assert!(text.contains("numgen inc mod 60 offset 98304"), "{text}");
    }

    /// Issue 22: `mh` is a Maglev lookup table of 2,039 slots in the service's own map,
    /// looked up by the service's rule (`mh-port`: the source port hashed too); a third
    /// destination moves about a third of the slots (no more), all to it; the map goes
    /// with the service, or when the scheduler changes.
    #[test]
    fn a_maglev_service_has_its_own_lookup_map_and_a_new_server_moves_about_one_nth() {
        let mut old = dr_service(&[1, 1]);
        old.spec.sched = "mh".into();
        old.spec.sched_flags = SCHED_PORT;
        old.choose_slots();
        assert_eq!(
            old.slots,
            slots::plan("mh")
                .map(|_| super::super::maglev::TABLE_SIZE)
                .unwrap()
        );
        let text = script(&render_service(&old, None).unwrap());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "add map netdev hanode mh_1 { typeof numgen inc mod 2 : meta mark; }"
        );
        assert!(
            text.contains("add rule netdev hanode svc_1 meta mark 65536 meta mark set jhash ip saddr . th sport mod 2039 seed 0x48414e44 offset 98304 map @mh_1 jump pick"),
            "{text}"
        );
        let el = elements(&old);
        assert_eq!(el.slot_map, "mh_1");
        assert_eq!(el.slots.len(), 2039);
        assert!(
            text.contains("add element netdev hanode mh_1 { 98304 : "),
            "{text}"
        );
        assert!(!text.contains("hanode slots"), "{text}");
        // Without mh-port: the address alone.
        let mut plain = old.clone();
        plain.spec.sched_flags = 0;
        let rules = service_rules(&plain).unwrap();
        assert!(
            rules[1].text.contains("jhash ip saddr mod 2039"),
            "{}",
            rules[1].text
        );

        // A third real server: about a third of the slots move.
        let mut st = old.clone();
        let third = DestKey {
            addr: IpAddr::from([198, 18, 116, 140]),
            port: 80,
        };
        let mut slot = st.dests.values().next().unwrap().clone();
        slot.mark = 3;
        st.dests.insert(third, slot);
        st.choose_slots();
        let (a, b) = (elements(&old).slots, elements(&st).slots);
        let moved: Vec<u32> = a.keys().filter(|k| a[*k] != b[*k]).copied().collect();
        let ideal = 2039.0 / 3.0;
        assert!(
            (moved.len() as f64) <= 1.5 * ideal && (moved.len() as f64) >= 0.9 * ideal,
            "{} moved, ideal {ideal:.0}",
            moved.len()
        );
        // The newcomer's share is a third, to a slot (the rest of what moved is Maglev's
        // cascade between the others).
        let newcomer = b.values().filter(|m| **m == tag(1) | 3).count();
        assert!((679..=680).contains(&newcomer), "{newcomer}");
        let text = script(&render_service(&st, Some(&old)).unwrap());
        assert!(!text.contains("add rule") && !text.contains("add map"), "{text}");
        assert!(text.contains(&format!("delete element netdev hanode mh_1 {{ {}", moved[0])));

        // Removed: the chain, then the map with its elements (none deleted one by one).
        let text = script(&delete_service(&st));
        assert!(text.ends_with("delete map netdev hanode mh_1\n"), "{text}");
        assert!(!text.contains("element netdev hanode mh_1"), "{text}");
        // mh -> wrr: the slots go to the shared map, the chain is rewritten, the map goes.
        let mut wrr = st.clone();
        wrr.spec.sched = "wrr".into();
        wrr.choose_slots();
        let text = script(&render_service(&wrr, Some(&st)).unwrap());
        assert_eq!(wrr.slots, 12);
        let chain = text.find("add rule").unwrap();
        let gone = text.find("delete map netdev hanode mh_1").unwrap();
        assert!(
            chain < gone && text.contains("add element netdev hanode slots"),
            "{text}"
        );
        assert!(!text.contains("element netdev hanode mh_1"), "{text}");
        // and back: the map before the chain and its elements.
        let text = script(&render_service(&st, Some(&wrr)).unwrap());
        let map = text.find("add map netdev hanode mh_1").unwrap();
        let rule = text.find("add rule").unwrap();
        let elems = text.find("add element netdev hanode mh_1").unwrap();
        assert!(map < rule && map < elems, "{}", &text[..300]);
        assert!(
            text.contains("delete element netdev hanode slots"),
            "{}",
            &text[..300]
        );
    }

    #[test]
    fn draining_destination_keeps_its_mark_and_device_but_no_slot() {
        let old = dr_service(&[1, 1]);
        let mut st = old.clone();
        let first = *st.dests.keys().next().unwrap();
        st.dests.get_mut(&first).unwrap().draining_since = Some(1_764_000_000);
        st.choose_slots();
        assert_eq!(st.slots, 12);
        let text = script(&render_service(&st, Some(&old)).unwrap());
        // Its six slots go to the other destination; nothing else of the slots moves.
        let evens = "98304, 98306, 98308, 98310, 98312, 98314";
        assert!(
            text.contains(&format!("delete element netdev hanode slots {{ {evens} }}")),
            "{text}"
        );
        assert!(
            text.contains("add element netdev hanode slots { 98304 : 65538, 98306 : 65538, 98308 : 65538"),
            "{text}"
        );
        assert!(text.contains("65537 comment \"drain=1764000000 198.18.116.131:80 DR"));
        assert!(!text.contains("rule"), "the chain stays: {text}");
        assert!(!text.contains("fwd4_"), "still forwarded: {text}");
        // Same spec: the service entry is left alone.
        assert!(!text.contains("svc4"));
        // The last one down: its slots are emptied, the chain still stays.
        let mut none = st.clone();
        let second = *none.dests.keys().nth(1).unwrap();
        none.dests.get_mut(&second).unwrap().draining_since = Some(1_764_000_001);
        none.choose_slots();
        let text = script(&render_service(&none, Some(&st)).unwrap());
        assert!(
            !text.contains("rule") && !text.contains("add element netdev hanode slots"),
            "{text}"
        );
        assert_eq!(elements(&none).slots.len(), 0);
    }

    #[test]
    fn persistence_keys_flows_by_client_network_in_a_shared_chain() {
        let old = dr_service(&[1, 1]);
        let mut st = old.clone();
        st.spec.persistence = Some(Persistence {
            timeout: 300,
            prefix: 24,
        });
        let text = script(&render_service(&st, Some(&old)).unwrap());
        assert!(
            text.contains("svc_1 meta mark set 65536 jump pers4_24\n"),
            "{text}"
        );
        assert!(text.contains(
            "update @pflows4 { ( ip saddr & 255.255.255.0 ) . ( meta mark & 0xffff0000 ) timeout 300s : meta mark } jump fwd4"
        ));
        assert!(text.contains("delete element netdev hanode svc4 { 198.18.116.134 . tcp . 80 }"));
        assert!(text.contains("comment \"rr p=300/24\""));
        let shared = shared_chains(false, [&st].into_iter());
        assert_eq!(
            shared["pers4_24"][0],
            "meta mark set ( ip saddr & 255.255.255.0 ) . meta mark map @pflows4"
        );
        assert_eq!(shared["pers4_24"][1..], shared["conn4"][1..]);
        // One-packet scheduling remembers nothing.
        st.spec.persistence = None;
        st.spec.ops = true;
        let rules = service_rules(&st).unwrap();
        assert!(!rules.iter().any(|r| r.text.contains("flows")), "{rules:?}");
        // ... and logs nothing for flow sync: its every packet picks a slot.
        assert!(
            rules.iter().any(|r| r.text.ends_with("jump pick_once")),
            "{rules:?}"
        );
        assert!(!rules.iter().any(|r| r.text.ends_with("jump pick")), "{rules:?}");
    }

    #[test]
    fn nat_service_dnats_to_address_and_port() {
        let mut st = dr_service(&[2, 1]);
        st.spec.sched = "wrr".into();
        for s in st.dests.values_mut() {
            s.spec.fwd = Forwarding::Nat;
            s.dev = None;
        }
        let text = script(&render_service(&st, None).unwrap());
        assert!(text.contains("add chain inet hanode_nat svc_1"));
        assert!(text.contains("svc_1 ct mark set 65536 jump conn4\n"));
        assert!(text.contains("} jump dnat4\n"));
        assert!(text.contains(": 198.18.116.131 . 80"));
        let ab = slot_list(&[65537, 65538, 65537].repeat(4));
        assert!(text.contains(&ab), "{text}");
        let shared = shared_chains(true, [&st].into_iter());
        assert_eq!(
            shared["dnat4"],
            vec!["ct mark & 0x7fff != 0 meta l4proto { tcp, udp, sctp } dnat ip addr . port to ct mark map @dst4"]
        );
    }

    #[test]
    fn deleting_a_service_removes_its_entry_chain_and_elements() {
        let st = dr_service(&[1, 1]);
        let text = script(&delete_service(&st));
        let expected = "\
delete element netdev hanode svc4 { 198.18.116.134 . tcp . 80 }
delete chain netdev hanode svc_1
delete element netdev hanode slots { 98304, 98305, 98306, 98307, 98308, 98309, 98310, 98311, 98312, 98313, 98314, 98315 }
delete element netdev hanode dst4 { 65537, 65538 }
delete element netdev hanode fwd4_656e733333 { 65537, 65538 }
";
        assert_eq!(text, expected);
    }

    #[test]
    fn tables_are_named_by_family_and_shard_and_read_back() {
        assert_eq!(TableId::DR.name(), "netdev hanode");
        assert_eq!(TableId::NAT.name(), "inet hanode_nat");
        let t = TableId { nat: true, shard: 7 };
        assert_eq!(t.name(), "inet hanode_nat_7");
        for shard in [0, 1, SHARDS - 1] {
            for nat in [false, true] {
                let t = TableId { nat, shard };
                let (family, name) = t.name().split_once(' ').unwrap();
                assert_eq!(TableId::of_name(family, name), Some(t));
            }
        }
        // Not ours: another family, a shard out of range, a name that only starts alike.
        assert_eq!(TableId::of_name("ip", "hanode"), None);
        assert_eq!(TableId::of_name("netdev", &format!("hanode_{SHARDS}")), None);
        assert_eq!(TableId::of_name("netdev", "hanode_07"), None);
        assert_eq!(TableId::of_name("netdev", "hanodex"), None);
        assert_eq!(TableId::of_name("inet", "hanode_nat_"), None);
        // Service ids map to shards of SHARD_SIZE; the last shard ends at MAX_SERVICES.
        assert_eq!(shard_of(1), 0);
        assert_eq!(shard_of(SHARD_SIZE), 0);
        assert_eq!(shard_of(SHARD_SIZE + 1), 1);
        assert_eq!(shard_ids(SHARDS - 1).last(), Some(MAX_SERVICES));
        assert_eq!(shard_of(MAX_SERVICES), SHARDS - 1);
    }

    #[test]
    fn device_set_names_round_trip() {
        for dev in ["ens33", "veth-a.100", "br0@x"] {
            assert_eq!(fwd_set_device(&fwd_set(true, dev)), Some((true, dev.to_string())));
        }
        assert_eq!(fwd_set_device("fwd4_6"), None);
        assert_eq!(fwd_set_device("slots"), None);
    }

    #[test]
    fn what_nftables_cannot_express_is_named() {
        let st = dr_service(&[1]);
        let tun = DestSpec {
            fwd: Forwarding::Tun,
            weight: 1,
            u_thresh: 0,
            l_thresh: 0,
        };
        assert!(unsupported(&st.key, &st.spec, &[tun]).unwrap().contains("TUN"));
        let fw = SvcKey::Fwmark { v6: false, mark: 1 };
        assert!(unsupported(&fw, &st.spec, &[]).unwrap().contains("fwmark"));
        let mut bad = st.spec.clone();
        bad.sched = "nosuch".into();
        assert!(unsupported(&st.key, &bad, &[]).unwrap().contains("scheduler"));
        let dr = DestSpec {
            fwd: Forwarding::Dr,
            ..tun
        };
        let nat = DestSpec {
            fwd: Forwarding::Nat,
            ..tun
        };
        assert!(unsupported(&st.key, &st.spec, &[dr, nat])
            .unwrap()
            .contains("mixed"));
        assert!(unsupported(&st.key, &st.spec, &[dr, dr]).is_none());
        let many = vec![dr; MAX_DESTS as usize + 1];
        assert!(unsupported(&st.key, &st.spec, &many).unwrap().contains("at most"));
    }
}

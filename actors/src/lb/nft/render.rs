//! nft script text for our two tables (pure): `netdev hanode` forwards direct-routing
//! services at ingress (`fwd` to the real server's MAC, the VIP unchanged: LVS-DR),
//! `inet hanode_nat` DNATs masquerading services in prerouting (LVS-NAT, affinity held
//! by conntrack). Nothing outside these two tables is ever touched.
//!
//! Per service N: chain `svc_N`, map `slots_N` (slot -> destination mark), map `dst_N`
//! (mark -> real server; element comments carry port, weight and forwarding so that the
//! table reads back exactly), map `flows_N` (client -> mark, dynamic, with timeout: the
//! affinity of DR flows, which bypass conntrack). A destination that leaves keeps its
//! mark in `dst_N` as *draining* until its flows have expired, so established
//! connections finish, as with IPVS.
//!
//! Every service change re-renders that one service (flush + refill, one transaction):
//! the cost of a change does not depend on the size of the table.

use super::super::model::{DestKey, DestSpec, SvcKey, SvcSpec};
use super::slots::{self, Pick};
use ha_config::model::{Forwarding, Protocol};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::net::IpAddr;

pub const DR_TABLE: &str = "netdev hanode";
pub const NAT_TABLE: &str = "inet hanode_nat";
/// Room for flows per service map (the kernel default of 65535 is too small for a VIP).
pub const FLOWS_SIZE: u32 = 1 << 20;

/// A destination as the table holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot {
    pub mark: u32,
    pub spec: DestSpec,
    /// Unix seconds when it left the service; None while it is part of it.
    pub draining_since: Option<u64>,
}

/// One service as rendered in the kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SvcState {
    pub key: SvcKey,
    pub id: u32,
    pub spec: SvcSpec,
    pub dests: BTreeMap<DestKey, Slot>,
}

impl SvcState {
    /// Which table the service lives in: by its destinations' forwarding method.
    pub fn is_nat(&self) -> bool {
        let live = self.dests.values().find(|s| s.draining_since.is_none());
        live.or_else(|| self.dests.values().next())
            .map(|s| s.spec.fwd == Forwarding::Nat)
            .unwrap_or(false)
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

    fn table(&self) -> &'static str {
        if self.is_nat() {
            NAT_TABLE
        } else {
            DR_TABLE
        }
    }
}

/// Why the nftables backend cannot express a service.
pub fn unsupported(key: &SvcKey, spec: &SvcSpec, dests: &[DestSpec]) -> Option<String> {
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

/// The flow key expression and its `typeof`.
fn flow_key(st: &SvcState) -> (String, String) {
    let v6 = st.key.is_v6();
    let f = ipf(v6);
    match st.spec.persistence {
        Some(p) if (v6 && p.prefix < 128) || (!v6 && p.prefix < 32) => {
            let mask = if v6 { v6_mask(p.prefix) } else { v4_mask(p.prefix) };
            (format!("{f} saddr & {mask}"), format!("{f} saddr"))
        }
        Some(_) => (format!("{f} saddr"), format!("{f} saddr")),
        None => (format!("{f} saddr . th sport"), format!("{f} saddr . th sport")),
    }
}

/// Creates the tables, service vmaps and hook chains if they do not exist (idempotent).
/// `ingress`: the devices DR traffic arrives on (None: leave the chain as it is).
pub fn skeleton(ingress: Option<&BTreeSet<String>>, recreate_ingress: bool) -> String {
    let mut s = String::new();
    for t in [DR_TABLE, NAT_TABLE] {
        let _ = writeln!(s, "add table {t}");
        let _ = writeln!(
            s,
            "add map {t} svc4 {{ typeof ip daddr . meta l4proto . th dport : verdict; }}"
        );
        let _ = writeln!(
            s,
            "add map {t} svc6 {{ typeof ip6 daddr . meta l4proto . th dport : verdict; }}"
        );
    }
    let _ = writeln!(
        s,
        "add chain {NAT_TABLE} prerouting {{ type nat hook prerouting priority dstnat - 5; policy accept; }}"
    );
    if recreate_ingress {
        let _ = writeln!(s, "flush chain {NAT_TABLE} prerouting");
        let _ = writeln!(
            s,
            "add rule {NAT_TABLE} prerouting ip daddr . meta l4proto . th dport vmap @svc4"
        );
        let _ = writeln!(
            s,
            "add rule {NAT_TABLE} prerouting ip6 daddr . meta l4proto . th dport vmap @svc6"
        );
    }
    if let Some(devs) = ingress {
        if recreate_ingress {
            // A base chain's devices are fixed when it is created: replace it (atomic
            // within the transaction).
            let _ = writeln!(s, "add chain {DR_TABLE} ingress");
            let _ = writeln!(s, "delete chain {DR_TABLE} ingress");
            if !devs.is_empty() {
                let list: Vec<String> = devs.iter().map(|d| format!("\"{d}\"")).collect();
                let _ = writeln!(
                    s,
                    "add chain {DR_TABLE} ingress {{ type filter hook ingress devices = {{ {} }} priority -500; policy accept; }}",
                    list.join(", ")
                );
                let _ = writeln!(
                    s,
                    "add rule {DR_TABLE} ingress ip daddr . meta l4proto . th dport vmap @svc4"
                );
                let _ = writeln!(
                    s,
                    "add rule {DR_TABLE} ingress ip6 daddr . meta l4proto . th dport vmap @svc6"
                );
            }
        }
    }
    s
}

/// Removes both tables (flows included).
pub fn teardown() -> String {
    format!(
        "add table {DR_TABLE}\ndelete table {DR_TABLE}\nadd table {NAT_TABLE}\ndelete table {NAT_TABLE}\n"
    )
}

fn vmap_name(key: &SvcKey) -> &'static str {
    if key.is_v6() {
        "svc6"
    } else {
        "svc4"
    }
}

/// Removes a service from the table it is in.
pub fn delete_service(st: &SvcState) -> String {
    let t = st.table();
    let n = st.id;
    let mut s = String::new();
    if let Some(k) = vmap_key(&st.key) {
        let _ = writeln!(s, "delete element {t} {} {{ {k} }}", vmap_name(&st.key));
    }
    let _ = writeln!(s, "delete chain {t} svc_{n}");
    for m in ["slots", "dst", "flows"] {
        let _ = writeln!(s, "delete map {t} {m}_{n}");
    }
    s
}

/// (Re)renders one service. `existed`: the service as the kernel has it (None: new).
/// `device`: the egress device towards each DR destination.
pub fn render_service(
    st: &SvcState,
    existed: Option<&SvcState>,
    device: &BTreeMap<IpAddr, String>,
) -> Result<String, String> {
    let mut s = String::new();
    if let Some(old) = existed {
        if old.is_nat() != st.is_nat() || old.id != st.id {
            s.push_str(&delete_service(old));
            return Ok(s + &render_service(st, None, device)?);
        }
    }
    let t = st.table();
    let n = st.id;
    let v6 = st.key.is_v6();
    let f = ipf(v6);
    let nat = st.is_nat();
    let plan = slots::plan(&st.spec.sched).ok_or_else(|| format!("unknown scheduler {:?}", st.spec.sched))?;
    let active = st.active();
    let layout = slots::slots(&plan, &active);
    let addr_type = if v6 { "ip6 daddr" } else { "ip daddr" };
    let mark_expr = if nat { "ct mark" } else { "meta mark" };
    let (key_expr, key_type) = flow_key(st);

    let _ = writeln!(s, "add chain {t} svc_{n}");
    let _ = writeln!(s, "flush chain {t} svc_{n}");
    // Slots.
    let _ = writeln!(
        s,
        "add map {t} slots_{n} {{ typeof numgen inc mod 2 : meta mark; }}"
    );
    let _ = writeln!(s, "flush map {t} slots_{n}");
    if !layout.is_empty() {
        let elems: Vec<String> = layout
            .iter()
            .filter_map(|d| active.get(*d).and_then(|(k, _)| st.dests.get(k)))
            .enumerate()
            .map(|(i, slot)| format!("{i} : {}", slot.mark))
            .collect();
        let _ = writeln!(s, "add element {t} slots_{n} {{ {} }}", elems.join(", "));
    }
    // Destinations, draining ones included.
    let dst_type = if nat {
        format!("{addr_type} . th dport")
    } else {
        addr_type.to_string()
    };
    let _ = writeln!(s, "add map {t} dst_{n} {{ typeof meta mark : {dst_type}; }}");
    let _ = writeln!(s, "flush map {t} dst_{n}");
    if !st.dests.is_empty() {
        let elems: Vec<String> = st
            .dests
            .iter()
            .map(|(d, slot)| {
                let value = if nat {
                    format!("{} . {}", d.addr, d.port)
                } else {
                    d.addr.to_string()
                };
                format!("{} comment \"{}\" : {value}", slot.mark, dest_comment(d, slot))
            })
            .collect();
        let _ = writeln!(s, "add element {t} dst_{n} {{ {} }}", elems.join(", "));
    }
    // Flows: recreated when their key or timeout changes.
    let flows_changed = existed
        .map(|o| flow_key(o) != flow_key(st) || o.flow_timeout() != st.flow_timeout())
        .unwrap_or(false);
    if flows_changed {
        let _ = writeln!(s, "delete map {t} flows_{n}");
    }
    let _ = writeln!(
        s,
        "add map {t} flows_{n} {{ typeof {key_type} : meta mark; flags dynamic,timeout; timeout {}s; size {FLOWS_SIZE}; }}",
        st.flow_timeout()
    );
    // Rules.
    let pick = match plan.pick {
        Pick::Rotate => format!("numgen inc mod {}", layout.len().max(1)),
        Pick::HashSource => format!("jhash {f} saddr mod {} seed 0x48414e44", layout.len().max(1)),
        Pick::HashDest => format!("jhash {f} daddr mod {} seed 0x48414e44", layout.len().max(1)),
    };
    let rule = |s: &mut String, r: &str| {
        let _ = writeln!(s, "add rule {t} svc_{n} {r}");
    };
    if nat {
        rule(&mut s, "ct mark set 0");
    }
    if st.spec.ops {
        if !layout.is_empty() {
            rule(&mut s, &format!("{mark_expr} set {pick} map @slots_{n}"));
        }
    } else {
        rule(&mut s, &format!("{mark_expr} set {key_expr} map @flows_{n}"));
        if !layout.is_empty() {
            rule(
                &mut s,
                &format!("{mark_expr} 0 {mark_expr} set {pick} map @slots_{n}"),
            );
        }
        rule(
            &mut s,
            &format!("{mark_expr} != 0 update @flows_{n} {{ {key_expr} : {mark_expr} }}"),
        );
    }
    if nat {
        let family = if v6 { "ip6" } else { "ip" };
        rule(
            &mut s,
            &format!("{mark_expr} != 0 dnat {family} addr . port to {mark_expr} map @dst_{n}"),
        );
    } else {
        // One fwd rule per egress device, guarded by the marks behind it.
        let mut by_dev: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
        for (d, slot) in &st.dests {
            let dev = device
                .get(&d.addr)
                .ok_or_else(|| format!("no route to real server {}", d.addr))?;
            by_dev.entry(dev.as_str()).or_default().push(slot.mark);
        }
        let single = by_dev.len() == 1;
        for (dev, marks) in by_dev {
            let guard = if single {
                "meta mark != 0".to_string()
            } else {
                let m: Vec<String> = marks.iter().map(u32::to_string).collect();
                format!("meta mark {{ {} }}", m.join(", "))
            };
            rule(
                &mut s,
                &format!("{guard} fwd {f} to meta mark map @dst_{n} device \"{dev}\""),
            );
        }
    }
    rule(&mut s, "drop");
    // The service entry, with its spec in the comment.
    if let Some(k) = vmap_key(&st.key) {
        let vm = vmap_name(&st.key);
        if let Some(old) = existed {
            if old.spec != st.spec {
                let _ = writeln!(s, "delete element {t} {vm} {{ {k} }}");
            }
        }
        if existed.map(|o| o.spec != st.spec).unwrap_or(true) {
            let _ = writeln!(
                s,
                "add element {t} {vm} {{ {k} comment \"{}\" : jump svc_{n} }}",
                spec_comment(&st.spec)
            );
        }
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::super::super::model::Persistence;
    use super::*;

    fn dr_service(weights: &[u32]) -> SvcState {
        let mut dests = BTreeMap::new();
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
                },
            );
        }
        SvcState {
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
            },
            dests,
        }
    }

    fn ens33() -> BTreeMap<IpAddr, String> {
        (131..=140)
            .map(|i| (IpAddr::from([198, 18, 116, i]), "ens33".to_string()))
            .collect()
    }

    #[test]
    fn seed_service_renders_the_dr_recipe() {
        let st = dr_service(&[1, 1]);
        let text = render_service(&st, None, &ens33()).unwrap();
        let expected = "\
add chain netdev hanode svc_1
flush chain netdev hanode svc_1
add map netdev hanode slots_1 { typeof numgen inc mod 2 : meta mark; }
flush map netdev hanode slots_1
add element netdev hanode slots_1 { 0 : 1, 1 : 2 }
add map netdev hanode dst_1 { typeof meta mark : ip daddr; }
flush map netdev hanode dst_1
add element netdev hanode dst_1 { 1 comment \"198.18.116.131:80 DR w=1 u=0 l=0\" : 198.18.116.131, 2 comment \"198.18.116.132:80 DR w=1 u=0 l=0\" : 198.18.116.132 }
add map netdev hanode flows_1 { typeof ip saddr . th sport : meta mark; flags dynamic,timeout; timeout 900s; size 1048576; }
add rule netdev hanode svc_1 meta mark set ip saddr . th sport map @flows_1
add rule netdev hanode svc_1 meta mark 0 meta mark set numgen inc mod 2 map @slots_1
add rule netdev hanode svc_1 meta mark != 0 update @flows_1 { ip saddr . th sport : meta mark }
add rule netdev hanode svc_1 meta mark != 0 fwd ip to meta mark map @dst_1 device \"ens33\"
add rule netdev hanode svc_1 drop
add element netdev hanode svc4 { 198.18.116.134 . tcp . 80 comment \"rr\" : jump svc_1 }
";
        assert_eq!(text, expected);
    }

    #[test]
    fn draining_destination_keeps_its_mark_but_no_slot() {
        let mut st = dr_service(&[1, 1]);
        let first = *st.dests.keys().next().unwrap();
        st.dests.get_mut(&first).unwrap().draining_since = Some(1_764_000_000);
        let old = dr_service(&[1, 1]);
        let text = render_service(&st, Some(&old), &ens33()).unwrap();
        assert!(text.contains("slots_1 { 0 : 2 }"), "{text}");
        assert!(text.contains("1 comment \"drain=1764000000 198.18.116.131:80 DR"));
        assert!(text.contains("numgen inc mod 1 "));
        // Same spec: the service entry is left alone, flows are kept.
        assert!(!text.contains("svc4"));
        assert!(!text.contains("delete map"));
    }

    #[test]
    fn persistence_keys_flows_by_client_network_and_recreates_the_flow_map() {
        let old = dr_service(&[1, 1]);
        let mut st = old.clone();
        st.spec.persistence = Some(Persistence {
            timeout: 300,
            prefix: 24,
        });
        let text = render_service(&st, Some(&old), &ens33()).unwrap();
        assert!(text.contains("delete map netdev hanode flows_1\n"));
        assert!(text.contains("typeof ip saddr : meta mark; flags dynamic,timeout; timeout 300s"));
        assert!(text.contains("meta mark set ip saddr & 255.255.255.0 map @flows_1"));
        assert!(text.contains("delete element netdev hanode svc4 { 198.18.116.134 . tcp . 80 }"));
        assert!(text.contains("comment \"rr p=300/24\""));
    }

    #[test]
    fn nat_service_dnats_to_address_and_port() {
        let mut st = dr_service(&[2, 1]);
        st.spec.sched = "wrr".into();
        for s in st.dests.values_mut() {
            s.spec.fwd = Forwarding::Nat;
        }
        let text = render_service(&st, None, &BTreeMap::new()).unwrap();
        assert!(text.contains("add chain inet hanode_nat svc_1"));
        assert!(text.contains("typeof meta mark : ip daddr . th dport;"));
        assert!(text.contains(": 198.18.116.131 . 80"));
        assert!(text.contains("ct mark != 0 dnat ip addr . port to ct mark map @dst_1"));
        assert!(text.contains("slots_1 { 0 : 1, 1 : 2, 2 : 1 }"));
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
    }
}

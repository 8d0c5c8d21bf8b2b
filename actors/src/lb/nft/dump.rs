//! Reads our tables back from `nft -j list table` output (pure): every service, its spec
//! (the comment of its `svcN` element) and its destinations (the comments of `dstN`,
//! grouped by the service id in the upper half of their marks), and checks that the rest
//! of what we rendered (the chain's rules, the slots, the device sets) is still there. A
//! service whose parts were changed behind our back, and anything of ours no service
//! leads to, is listed for removal, so that the next sync renders it again cleanly.

use super::super::model::{DestKey, DestSpec, Persistence, SvcKey, SvcSpec, SCHED_FLAGS};
use super::render::{self, Fingerprint, Slot, SvcState, TableId};
use ha_config::model::{Forwarding, Protocol};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

/// What one of our tables holds.
#[derive(Debug, Default, PartialEq)]
pub struct Parsed {
    /// The services found whole.
    pub services: BTreeMap<SvcKey, SvcState>,
    /// Commands that remove what is ours but no longer makes a whole service: damaged
    /// services (added again by the next sync), chains and elements nothing leads to.
    pub cleanup: Vec<String>,
    /// Devices of the ingress chain (DR table).
    pub ingress: BTreeSet<String>,
    /// The shared chains there are.
    pub shared: BTreeMap<String, Fingerprint>,
    /// Names of the maps, sets and base chains there are.
    pub objects: BTreeSet<String>,
}

pub fn parse_spec(comment: &str) -> Result<SvcSpec, String> {
    let mut words = comment.split_whitespace();
    let sched = words.next().ok_or("empty service comment")?.to_string();
    let mut spec = SvcSpec {
        sched,
        persistence: None,
        ops: false,
        sched_flags: 0,
    };
    for w in words {
        if w == "ops" {
            spec.ops = true;
        } else if let Some(f) = w.strip_prefix("f=") {
            spec.sched_flags = f
                .parse::<u32>()
                .ok()
                .filter(|f| f & !SCHED_FLAGS == 0)
                .ok_or_else(|| format!("bad scheduler flags {f:?}"))?;
        } else if let Some(p) = w.strip_prefix("p=") {
            let (t, m) = p.split_once('/').ok_or("persistence without prefix")?;
            spec.persistence = Some(Persistence {
                timeout: t.parse().map_err(|_| format!("bad timeout {t:?}"))?,
                prefix: m.parse().map_err(|_| format!("bad prefix {m:?}"))?,
            });
        } else {
            return Err(format!("unknown word {w:?} in service comment"));
        }
    }
    Ok(spec)
}

pub fn parse_dest(comment: &str) -> Result<(DestKey, Option<u64>, DestSpec), String> {
    let mut words = comment.split_whitespace().peekable();
    let mut draining = None;
    if let Some(t) = words.peek().and_then(|w| w.strip_prefix("drain=")) {
        draining = Some(t.parse().map_err(|_| format!("bad drain time {t:?}"))?);
        words.next();
    }
    let addr = words.next().ok_or("destination comment without address")?;
    let sa: std::net::SocketAddr = addr.parse().map_err(|_| format!("bad address {addr:?}"))?;
    let fwd = match words.next() {
        Some("DR") => Forwarding::Dr,
        Some("NAT") => Forwarding::Nat,
        Some("TUN") => Forwarding::Tun,
        other => return Err(format!("bad forwarding {other:?}")),
    };
    let mut num = |k: &str| -> Result<u32, String> {
        let w = words.next().ok_or(format!("missing {k}"))?;
        w.strip_prefix(k)
            .and_then(|v| v.parse().ok())
            .ok_or(format!("bad {k} in {w:?}"))
    };
    let spec = DestSpec {
        fwd,
        weight: num("w=")?,
        u_thresh: num("u=")?,
        l_thresh: num("l=")?,
    };
    Ok((
        DestKey {
            addr: sa.ip(),
            port: sa.port(),
        },
        draining,
        spec,
    ))
}

fn proto(v: &Value) -> Option<Protocol> {
    match v {
        Value::String(s) => match s.as_str() {
            "tcp" => Some(Protocol::Tcp),
            "udp" => Some(Protocol::Udp),
            "sctp" => Some(Protocol::Sctp),
            _ => None,
        },
        Value::Number(n) => match n.as_u64() {
            Some(6) => Some(Protocol::Tcp),
            Some(17) => Some(Protocol::Udp),
            Some(132) => Some(Protocol::Sctp),
            _ => None,
        },
        _ => None,
    }
}

fn id_of(chain: &str) -> Option<u32> {
    chain.strip_prefix("svc_")?.parse().ok()
}

fn u32_of(v: &Value) -> Option<u32> {
    v.as_u64().and_then(|n| u32::try_from(n).ok())
}

/// A service entry of `svc4`/`svc6`: (map, key, chain id, spec).
type Entry = (String, Option<SvcKey>, u32, Result<SvcSpec, String>);

/// What the dump needs of one rule.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RuleFacts {
    /// The `mod S` of its `numgen` or `jhash` (a service's slot count).
    pub modulus: Option<u32>,
    /// The device its `fwd` sends to.
    pub fwd_dev: Option<String>,
}

/// What a listing of one of our tables holds, however it was read (nft's JSON output,
/// or netlink dumps): the elements of the maps and sets we read back (never the flows),
/// the chains and what matters of their rules.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Listing {
    /// Names of the maps and sets.
    pub objects: BTreeSet<String>,
    /// Service entries: (map, key, the chain it jumps to, comment).
    pub entries: Vec<(String, Option<SvcKey>, String, Option<String>)>,
    /// Destination elements: (map, mark, comment).
    pub dsts: Vec<(String, u32, Option<String>)>,
    /// Slot elements of the shared `slots` map: (slot mark, destination mark).
    pub slots: Vec<(u32, u32)>,
    /// Slot elements of the services' own Maglev maps (`mh_N`), alike.
    pub maglev: Vec<(u32, u32)>,
    /// Device-set elements: (set, destination mark).
    pub fwd: Vec<(String, u32)>,
    /// Chains, with the devices of a base chain's hook.
    pub chains: Vec<(String, BTreeSet<String>)>,
    /// Rules by chain, in order.
    pub rules: BTreeMap<String, Vec<RuleFacts>>,
}

impl Listing {
    /// Whether an element was read twice: the kernel walks a hash set anew for each part
    /// of a dump, skipping what it sent before, so when the set is rehashed between two
    /// parts (it grows in the background, without a new ruleset generation) some
    /// elements come twice and as many never. Such a reading is torn: read again.
    pub fn torn(&self) -> bool {
        fn repeats<T: Ord>(items: impl Iterator<Item = T>) -> bool {
            let mut seen = BTreeSet::new();
            items.into_iter().any(|i| !seen.insert(i))
        }
        repeats(self.slots.iter().map(|(k, _)| *k))
            || repeats(self.maglev.iter().map(|(k, _)| *k))
            || repeats(self.dsts.iter().map(|(m, k, _)| (m, *k)))
            || repeats(self.fwd.iter().map(|(s, k)| (s, *k)))
            || repeats(self.entries.iter().filter_map(|(m, k, _, _)| Some((m, (*k)?))))
    }
}

/// Reads the output of `nft -j list table T` into a [`Listing`].
pub fn listing_of_json(json: &str) -> Result<Listing, String> {
    let root: Value = serde_json::from_str(json).map_err(|e| format!("nft -j output: {e}"))?;
    let items = root
        .get("nftables")
        .and_then(Value::as_array)
        .ok_or("nft -j output without \"nftables\"")?;
    let mut l = Listing::default();
    for item in items {
        if let Some(m) = item.get("map").or_else(|| item.get("set")) {
            let name = m.get("name").and_then(Value::as_str).unwrap_or("");
            l.objects.insert(name.to_string());
            let elems: &[Value] = m
                .get("elem")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or_default();
            if name == "svc4" || name == "svc6" {
                for e in elems {
                    if let Some((k, target, comment)) = vmap_elem(e) {
                        l.entries.push((name.to_string(), k, target, comment));
                    }
                }
            } else if name == "dst4" || name == "dst6" {
                for e in elems {
                    let key = e.as_array().and_then(|pair| pair.first());
                    let el = key.and_then(|k| k.get("elem"));
                    let mark = el.and_then(|el| el.get("val")).or(key).and_then(u32_of);
                    let comment = el
                        .and_then(|el| el.get("comment"))
                        .and_then(Value::as_str)
                        .map(str::to_string);
                    if let Some(mark) = mark {
                        l.dsts.push((name.to_string(), mark, comment));
                    }
                }
            } else if name == "slots" || render::maglev_map_id(name).is_some() {
                let into = if name == "slots" {
                    &mut l.slots
                } else {
                    &mut l.maglev
                };
                for e in elems {
                    let pair = e.as_array();
                    if let Some(kv) = pair.and_then(|p| Some((u32_of(p.first()?)?, u32_of(p.get(1)?)?))) {
                        into.push(kv);
                    }
                }
            } else if render::fwd_set_device(name).is_some() {
                for e in elems {
                    if let Some(mark) = u32_of(e) {
                        l.fwd.push((name.to_string(), mark));
                    }
                }
            }
        } else if let Some(c) = item.get("chain") {
            let name = c.get("name").and_then(Value::as_str).unwrap_or("");
            let devs = match c.get("dev") {
                Some(Value::String(d)) => BTreeSet::from([d.clone()]),
                Some(Value::Array(ds)) => ds.iter().filter_map(Value::as_str).map(str::to_string).collect(),
                _ => BTreeSet::new(),
            };
            l.chains.push((name.to_string(), devs));
        } else if let Some(r) = item.get("rule") {
            if let Some(chain) = r.get("chain").and_then(Value::as_str) {
                let exprs = r.get("expr").and_then(Value::as_array);
                let fwd_dev = exprs.and_then(|ex| {
                    ex.iter()
                        .find_map(|e| e.get("fwd")?.get("dev")?.as_str().map(str::to_string))
                });
                l.rules.entry(chain.to_string()).or_default().push(RuleFacts {
                    modulus: slot_modulus(r),
                    fwd_dev,
                });
            }
        }
    }
    Ok(l)
}

/// Our tables among those of `nft -j list tables`.
pub fn tables_of_json(json: &str) -> Vec<TableId> {
    let root: Value = serde_json::from_str(json).unwrap_or(Value::Null);
    let mut out: Vec<TableId> = root
        .get("nftables")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(|item| {
            let t = item.get("table")?;
            TableId::of_name(t.get("family")?.as_str()?, t.get("name")?.as_str()?)
        })
        .collect();
    out.sort();
    out
}

/// Parses the output of `nft -j list table T` for one of our tables.
pub fn parse(json: &str, table: TableId) -> Result<Parsed, String> {
    Ok(build(listing_of_json(json)?, table))
}

/// Reads services, shared chains and what to clean up out of a listing of our table.
/// A service whose id belongs to another shard is not ours to keep here.
pub fn build(l: Listing, table: TableId) -> Parsed {
    let t = table.name();
    let mut p = Parsed {
        objects: l.objects,
        ..Parsed::default()
    };
    let rules = l.rules;
    let mut dsts: BTreeMap<u32, Vec<(String, DstElem)>> = BTreeMap::new();
    for (map, mark, comment) in l.dsts {
        dsts.entry(mark >> 16)
            .or_default()
            .push((map, dst_elem(mark, comment.as_deref())));
    }
    let mut slots: BTreeMap<u32, BTreeMap<u32, u32>> = BTreeMap::new();
    for (k, v) in l.slots {
        slots.entry(k >> 16).or_default().insert(k, v);
    }
    // A Maglev map's slots, by the id its name gives (its elements carry it too).
    let mut maglev: BTreeMap<u32, BTreeMap<u32, u32>> = BTreeMap::new();
    for (k, v) in l.maglev {
        maglev.entry(k >> 16).or_default().insert(k, v);
    }
    let mut maglev_maps: BTreeSet<u32> = p
        .objects
        .iter()
        .filter_map(|o| render::maglev_map_id(o))
        .collect();
    // destination mark -> device sets holding it
    let mut fwd: BTreeMap<u32, Vec<(String, String)>> = BTreeMap::new();
    for (set, mark) in l.fwd {
        if let Some((_, dev)) = render::fwd_set_device(&set) {
            fwd.entry(mark).or_default().push((set, dev));
        }
    }
    let mut chains = BTreeSet::new();
    for (name, devs) in l.chains {
        if let Some(id) = id_of(&name) {
            chains.insert(id);
        } else if name == "ingress" {
            p.ingress.extend(devs);
            p.objects.insert(name);
        } else if name == "prerouting" {
            p.objects.insert(name);
        } else {
            p.shared.insert(name, Fingerprint::default());
        }
    }
    for (name, fp) in p.shared.iter_mut() {
        let list = rules.get(name).map(Vec::as_slice).unwrap_or_default();
        fp.rules = list.len();
        fp.devices = list.iter().filter_map(|r| r.fwd_dev.clone()).collect();
    }
    let entries: Vec<Entry> = l
        .entries
        .into_iter()
        .filter_map(|(map, key, target, comment)| {
            let id = id_of(&target)?;
            let spec = comment
                .ok_or_else(|| "no spec comment".to_string())
                .and_then(|c| parse_spec(&c));
            Some((map, key, id, spec))
        })
        .collect();
    let mut live = BTreeSet::new();
    for (vm, key, id, spec) in entries {
        let Some(key) = key else { continue };
        let dests = dsts.remove(&id).unwrap_or_default();
        let shared_slots = slots.remove(&id).unwrap_or_default();
        let own_slots = maglev.remove(&id).unwrap_or_default();
        let own_map = maglev_maps.remove(&id);
        let mut st = SvcState {
            key,
            id,
            spec: spec.clone().unwrap_or(SvcSpec {
                sched: String::new(),
                persistence: None,
                ops: false,
                sched_flags: 0,
            }),
            dests: Default::default(),
            slots: rules
                .get(&format!("svc_{id}"))
                .and_then(|rs| rs.iter().find_map(|r| r.modulus))
                .unwrap_or(0),
            // Where it is, whatever its destinations (it may have none).
            empty_in_nat: table.nat,
        };
        let mut ok = spec.is_ok()
            && chains.contains(&id)
            && !live.contains(&id)
            && render::shard_of(id) == table.shard;
        let mut damaged = Vec::new();
        for (map, d) in dests {
            match d {
                Ok((mark, k, mut slot)) => {
                    let sets = fwd.remove(&mark).unwrap_or_default();
                    slot.dev = sets.first().map(|(_, dev)| dev.clone());
                    for (set, _) in sets {
                        damaged.push(format!("delete element {t} {set} {{ {mark} }}"));
                    }
                    damaged.push(format!("delete element {t} {map} {{ {mark} }}"));
                    if st.dests.insert(k, slot).is_some() {
                        ok = false;
                    }
                }
                Err((mark, _)) => {
                    ok = false;
                    damaged.push(format!("delete element {t} {map} {{ {mark} }}"));
                }
            }
        }
        if !shared_slots.is_empty() {
            let keys: Vec<String> = shared_slots.keys().map(u32::to_string).collect();
            damaged.push(format!("delete element {t} slots {{ {} }}", keys.join(", ")));
        }
        if own_map {
            damaged.push(format!("delete map {t} {}", render::maglev_map(id)));
        }
        // Its slots, in the map its scheduler puts them in; none in the other.
        let (have_slots, stray) = if st.is_maglev() {
            (own_slots, !shared_slots.is_empty() || !own_map)
        } else {
            (shared_slots, own_map)
        };
        let chain_rules = rules.get(&format!("svc_{id}")).map(Vec::len).unwrap_or(0);
        ok = ok && !stray && intact(&st, chain_rules, &have_slots);
        if ok {
            live.insert(id);
            p.services.insert(key, st);
        } else {
            // Damaged behind our back: remove what is left of it; the sync adds it again.
            if let Some(k) = render::vmap_key(&key) {
                p.cleanup.push(format!("delete element {t} {vm} {{ {k} }}"));
            }
            if chains.remove(&id) {
                p.cleanup.push(format!("delete chain {t} svc_{id}"));
            }
            p.cleanup.extend(damaged);
        }
    }
    // What no service entry leads to.
    for id in chains.difference(&live) {
        p.cleanup.push(format!("delete chain {t} svc_{id}"));
    }
    for (id, s) in slots {
        if !live.contains(&id) {
            let keys: Vec<String> = s.keys().map(u32::to_string).collect();
            p.cleanup
                .push(format!("delete element {t} slots {{ {} }}", keys.join(", ")));
        }
    }
    // Maglev maps no service entry leads to (their chains went above).
    for id in maglev_maps {
        p.cleanup
            .push(format!("delete map {t} {}", render::maglev_map(id)));
    }
    for (id, list) in dsts {
        if !live.contains(&id) {
            for (map, d) in list {
                let mark = match d {
                    Ok((m, ..)) => m,
                    Err((m, _)) => m,
                };
                p.cleanup.push(format!("delete element {t} {map} {{ {mark} }}"));
            }
        }
    }
    for (mark, sets) in fwd {
        for (set, _) in sets {
            p.cleanup.push(format!("delete element {t} {set} {{ {mark} }}"));
        }
    }
    p
}

/// The `mod S` of the `numgen` or `jhash` a service rule picks its slot with.
fn slot_modulus(v: &Value) -> Option<u32> {
    match v {
        Value::Object(o) => {
            for k in ["numgen", "jhash"] {
                if let Some(m) = o.get(k).and_then(|g| g.get("mod")).and_then(u32_of) {
                    return Some(m);
                }
            }
            o.values().find_map(slot_modulus)
        }
        Value::Array(a) => a.iter().find_map(slot_modulus),
        _ => None,
    }
}

/// Whether the chain and slots of `st` are what rendering it gives (and every DR
/// destination sits in a device set).
fn intact(st: &SvcState, chain_rules: usize, have_slots: &BTreeMap<u32, u32>) -> bool {
    let Ok(want_rules) = render::service_rules(st) else {
        return false;
    };
    let want = render::elements(st);
    let devices_known = st.is_nat() || st.dests.values().all(|s| s.dev.is_some());
    want_rules.len() == chain_rules && &want.slots == have_slots && devices_known
}

/// `[{"elem": {"val": {"concat": [addr, proto, port]}, "comment": c}}, {"jump": {"target": t}}]`
/// (or the key without the `elem` wrapper when there is no comment).
fn vmap_elem(e: &Value) -> Option<(Option<SvcKey>, String, Option<String>)> {
    let pair = e.as_array()?;
    let (key, verdict) = (pair.first()?, pair.get(1)?);
    let target = verdict.get("jump")?.get("target")?.as_str()?.to_string();
    let (val, comment) = match key.get("elem") {
        Some(el) => (
            el.get("val")?,
            el.get("comment").and_then(Value::as_str).map(str::to_string),
        ),
        None => (key, None),
    };
    let parts = val.get("concat")?.as_array()?;
    let k = (|| {
        let addr: IpAddr = parts.first()?.as_str()?.parse().ok()?;
        let proto = proto(parts.get(1)?)?;
        let port = u16::try_from(parts.get(2)?.as_u64()?).ok()?;
        Some(SvcKey::Inet { proto, addr, port })
    })();
    Some((k, target, comment))
}

/// A `dstN` element: (mark, destination, slot), or its mark and why it cannot be read.
type DstElem = Result<(u32, DestKey, Slot), (u32, String)>;

fn dst_elem(mark: u32, comment: Option<&str>) -> DstElem {
    let comment = comment.ok_or((mark, "dst element without comment".to_string()))?;
    let (key, draining_since, spec) = parse_dest(comment).map_err(|e| (mark, e))?;
    Ok((
        mark,
        key,
        Slot {
            mark: mark & 0xffff,
            spec,
            draining_since,
            dev: None,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::super::super::model::{SCHED_FALLBACK, SCHED_PORT};
    use super::*;

    #[test]
    fn comments_round_trip() {
        let spec = SvcSpec {
            sched: "wrr".into(),
            persistence: Some(Persistence {
                timeout: 300,
                prefix: 24,
            }),
            ops: true,
            sched_flags: SCHED_PORT | SCHED_FALLBACK,
        };
        assert_eq!(parse_spec(&render::spec_comment(&spec)).unwrap(), spec);
        let key = DestKey {
            addr: "2001:db8::5".parse().unwrap(),
            port: 443,
        };
        let slot = Slot {
            mark: 3,
            spec: DestSpec {
                fwd: Forwarding::Nat,
                weight: 7,
                u_thresh: 10,
                l_thresh: 2,
            },
            draining_since: Some(42),
            dev: None,
        };
        let (k, d, s) = parse_dest(&render::dest_comment(&key, &slot)).unwrap();
        assert_eq!((k, d, s), (key, Some(42), slot.spec));
        assert!(parse_dest("198.18.116.131:80 XX w=1 u=0 l=0").is_err());
        assert!(parse_spec("rr p=5").is_err());
    }

    const DR_JSON: &str = include_str!("fixtures/dr_table.json");
    const NAT_JSON: &str = include_str!("fixtures/nat_table.json");

    #[test]
    fn a_table_we_rendered_reads_back_whole_with_nothing_to_clean() {
        // Captured with `nft -j list table` after `lb-sync apply` of a wrr DR service,
        // a persistent sh DR service and a NAT service.
        let dr = parse(DR_JSON, TableId::DR).unwrap();
        assert_eq!(dr.cleanup, Vec::<String>::new());
        assert_eq!(dr.services.len(), 2);
        let web = dr.services.values().find(|s| s.spec.sched == "wrr").unwrap();
        let weights: Vec<u32> = web.dests.values().map(|s| s.spec.weight).collect();
        assert_eq!(weights, vec![2, 1]);
        assert!(web.dests.values().all(|s| s.dev.is_some()));
        let dns = dr.services.values().find(|s| s.spec.sched == "sh").unwrap();
        assert_eq!(
            dns.spec.persistence,
            Some(Persistence {
                timeout: 300,
                prefix: 24
            })
        );
        assert!(dr.shared.contains_key("pers4_24") && dr.shared["fwd4"].rules == 1);
        let nat = parse(NAT_JSON, TableId::NAT).unwrap();
        assert_eq!(nat.cleanup, Vec::<String>::new());
        assert_eq!(nat.services.len(), 1);
        assert!(nat.services.values().all(SvcState::is_nat));
        // A service read back remembers its table: emptied of its destinations, it is
        // still where it was read from (not moved to the direct-routing table).
        for (parsed, nat) in [(&dr, false), (&nat, true)] {
            for st in parsed.services.values() {
                let mut empty = st.clone();
                empty.dests.clear();
                assert_eq!(empty.table_id(), TableId { nat, shard: 0 }, "{:?}", st.key);
            }
        }
    }

    #[test]
    fn a_listing_with_an_element_read_twice_is_torn() {
        let mut l = listing_of_json(DR_JSON).unwrap();
        assert!(!l.torn());
        let first = l.slots[0];
        l.slots.push(first);
        assert!(l.torn(), "a slot read twice");
        let mut l = listing_of_json(DR_JSON).unwrap();
        let d = l.dsts[0].clone();
        l.dsts.push(d);
        assert!(l.torn(), "a destination read twice");
    }

    #[test]
    fn a_service_damaged_behind_our_back_is_removed_for_rendering_again() {
        // Someone deletes the slots of the wrr service (id 1: marks 0x18000..).
        let mut root: Value = serde_json::from_str(DR_JSON).unwrap();
        for item in root["nftables"].as_array_mut().unwrap() {
            if item.pointer("/map/name").and_then(Value::as_str) == Some("slots") {
                let elems = item["map"]["elem"].as_array_mut().unwrap();
                elems.retain(|e| e[0].as_u64().map(|k| k >> 16) != Some(1));
            }
        }
        let p = parse(&root.to_string(), TableId::DR).unwrap();
        assert_eq!(p.services.len(), 1, "the other service is whole");
        let text = p.cleanup.join("\n");
        assert!(
            text.contains("delete element netdev hanode svc4 { 198.18.116.134 . tcp . 80 }"),
            "{text}"
        );
        assert!(text.contains("delete chain netdev hanode svc_1"), "{text}");
        assert!(
            text.contains("delete element netdev hanode dst4 { 65537 }"),
            "{text}"
        );
        assert!(text.contains("delete element netdev hanode fwd4_"), "{text}");
    }
}

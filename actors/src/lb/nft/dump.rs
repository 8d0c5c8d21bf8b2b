//! Reads our tables back from `nft -j list table` output (pure): every service, its spec
//! (the comment of its vmap element) and its destinations (the comments of `dst_N`),
//! and checks that the rest of what we rendered (slots, rules) is still there. A service
//! whose parts were changed behind our back is reported broken, so that the next sync
//! renders it again.

use super::super::model::{DestKey, DestSpec, Persistence, SvcKey, SvcSpec};
use super::render::{self, Slot, SvcState};
use ha_config::model::{Forwarding, Protocol};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

/// What one of our tables holds.
#[derive(Debug, Default, PartialEq)]
pub struct Parsed {
    pub services: BTreeMap<SvcKey, SvcState>,
    /// Services present but damaged (their id, to render them again in place).
    pub broken: BTreeMap<SvcKey, u32>,
    /// Service chains no vmap entry leads to.
    pub orphans: BTreeSet<u32>,
    /// Devices of the ingress chain (DR table).
    pub ingress: BTreeSet<String>,
    /// Rules per service chain, and slots per service.
    rules: BTreeMap<u32, usize>,
    slots: BTreeMap<u32, Vec<(u64, u32)>>,
}

pub fn parse_spec(comment: &str) -> Result<SvcSpec, String> {
    let mut words = comment.split_whitespace();
    let sched = words.next().ok_or("empty service comment")?.to_string();
    let mut spec = SvcSpec {
        sched,
        persistence: None,
        ops: false,
    };
    for w in words {
        if w == "ops" {
            spec.ops = true;
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

/// Parses the output of `nft -j list table T` for one of our tables.
pub fn parse(json: &str) -> Result<Parsed, String> {
    let root: Value = serde_json::from_str(json).map_err(|e| format!("nft -j output: {e}"))?;
    let items = root
        .get("nftables")
        .and_then(Value::as_array)
        .ok_or("nft -j output without \"nftables\"")?;
    let mut p = Parsed::default();
    let mut entries: Vec<(SvcKey, u32, Result<SvcSpec, String>)> = Vec::new();
    let mut dsts: BTreeMap<u32, Vec<DstElem>> = BTreeMap::new();
    let mut chains = BTreeSet::new();
    for item in items {
        if let Some(m) = item.get("map") {
            let name = m.get("name").and_then(Value::as_str).unwrap_or("");
            let elems = m
                .get("elem")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if name == "svc4" || name == "svc6" {
                for e in &elems {
                    let Some((k, target, comment)) = vmap_elem(e) else {
                        continue;
                    };
                    match (k, id_of(&target)) {
                        (Some(k), Some(id)) => entries.push((
                            k,
                            id,
                            comment
                                .ok_or_else(|| "no spec comment".to_string())
                                .and_then(|c| parse_spec(&c)),
                        )),
                        _ => continue,
                    }
                }
            } else if let Some(id) = name.strip_prefix("dst_").and_then(|n| n.parse().ok()) {
                let list = dsts.entry(id).or_default();
                for e in &elems {
                    list.push(dst_elem(e));
                }
            } else if let Some(id) = name.strip_prefix("slots_").and_then(|n| n.parse().ok()) {
                let mut v: Vec<(u64, u32)> = elems
                    .iter()
                    .filter_map(|e| {
                        let pair = e.as_array()?;
                        Some((pair.first()?.as_u64()?, pair.get(1)?.as_u64()? as u32))
                    })
                    .collect();
                v.sort();
                p.slots.insert(id, v);
            }
        } else if let Some(c) = item.get("chain") {
            let name = c.get("name").and_then(Value::as_str).unwrap_or("");
            if let Some(id) = id_of(name) {
                chains.insert(id);
            }
            if name == "ingress" {
                match c.get("dev") {
                    Some(Value::String(d)) => {
                        p.ingress.insert(d.clone());
                    }
                    Some(Value::Array(ds)) => {
                        p.ingress
                            .extend(ds.iter().filter_map(Value::as_str).map(str::to_string));
                    }
                    _ => {}
                }
            }
        } else if let Some(r) = item.get("rule") {
            if let Some(id) = r.get("chain").and_then(Value::as_str).and_then(id_of) {
                *p.rules.entry(id).or_default() += 1;
            }
        }
    }
    let mut referenced = BTreeSet::new();
    for (key, id, spec) in entries {
        referenced.insert(id);
        let dests = dsts.remove(&id).unwrap_or_default();
        let spec = match spec {
            Ok(s) => s,
            Err(_) => {
                p.broken.insert(key, id);
                continue;
            }
        };
        let mut st = SvcState {
            key,
            id,
            spec,
            dests: BTreeMap::new(),
        };
        let mut ok = chains.contains(&id);
        for d in dests {
            match d {
                Ok((_, k, slot)) => {
                    st.dests.insert(k, slot);
                }
                Err(_) => ok = false,
            }
        }
        if ok && intact(&st, &p) {
            p.services.insert(key, st);
        } else {
            p.broken.insert(key, id);
        }
    }
    p.orphans = chains.difference(&referenced).copied().collect();
    Ok(p)
}

/// Whether the slots and rules of `st` are what rendering it gives.
fn intact(st: &SvcState, p: &Parsed) -> bool {
    let devices: BTreeMap<IpAddr, String> = st.dests.keys().map(|d| (d.addr, "dev".to_string())).collect();
    let Ok(text) = render::render_service(st, Some(st), &devices) else {
        return false;
    };
    let prefix = format!("add rule {} svc_{} ", table_of(st), st.id);
    let mut want_rules = text.lines().filter(|l| l.starts_with(&prefix)).count();
    // One fwd rule per device: the dump cannot tell devices apart, count what is there.
    let fwd_rules = text.lines().filter(|l| l.contains(" fwd ")).count();
    let have_rules = p.rules.get(&st.id).copied().unwrap_or(0);
    if fwd_rules > 0 && have_rules >= want_rules {
        want_rules = have_rules;
    }
    let slot_line = format!("add element {} slots_{} {{ ", table_of(st), st.id);
    let want_slots: Vec<(u64, u32)> = text
        .lines()
        .find_map(|l| l.strip_prefix(&slot_line))
        .map(|rest| {
            rest.trim_end_matches(" }")
                .split(", ")
                .filter_map(|kv| {
                    let (k, v) = kv.split_once(" : ")?;
                    Some((k.parse().ok()?, v.parse().ok()?))
                })
                .collect()
        })
        .unwrap_or_default();
    have_rules == want_rules && p.slots.get(&st.id).cloned().unwrap_or_default() == want_slots
}

fn table_of(st: &SvcState) -> &'static str {
    if st.is_nat() {
        render::NAT_TABLE
    } else {
        render::DR_TABLE
    }
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

/// A `dst_N` element: (mark, destination, slot), or why it cannot be read.
type DstElem = Result<(u32, DestKey, Slot), String>;

fn dst_elem(e: &Value) -> DstElem {
    let pair = e.as_array().ok_or("dst element is not a pair")?;
    let el = pair
        .first()
        .and_then(|k| k.get("elem"))
        .ok_or("dst element without comment")?;
    let mark = el
        .get("val")
        .and_then(Value::as_u64)
        .ok_or("dst element without mark")? as u32;
    let comment = el
        .get("comment")
        .and_then(Value::as_str)
        .ok_or("dst element without comment")?;
    let (key, draining_since, spec) = parse_dest(comment)?;
    Ok((
        mark,
        key,
        Slot {
            mark,
            spec,
            draining_since,
        },
    ))
}

#[cfg(test)]
mod tests {
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
        };
        let (k, d, s) = parse_dest(&render::dest_comment(&key, &slot)).unwrap();
        assert_eq!((k, d, s), (key, Some(42), slot.spec));
        assert!(parse_dest("198.18.116.131:80 XX w=1 u=0 l=0").is_err());
        assert!(parse_spec("rr p=5").is_err());
    }
}

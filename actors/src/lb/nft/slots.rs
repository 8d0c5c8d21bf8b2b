//! How an IPVS scheduler becomes nftables slot maps (pure).
//!
//! A service picks a destination for a new flow with `numgen inc mod S` (rotating) or
//! `jhash <addr> mod S` (hashing) into a map of S slots, each naming a destination.
//! Weights become slot counts (divided by their gcd, capped at [`MAX_SLOTS`]) laid out
//! in the smooth weighted round-robin order, so `wrr 3:1` yields A A B A rather than
//! A A A B. Destinations with weight 0 get no slot: they keep their flows, take no new ones.

use super::super::model::{DestKey, DestSpec};

pub const MAX_SLOTS: u32 = 256;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pick {
    /// `numgen inc mod S`: one flow after the other (rr, wrr, and the lc family).
    Rotate,
    /// `jhash ip saddr mod S`: the same client lands on the same slot (sh, mh).
    HashSource,
    /// `jhash ip daddr mod S` (dh, lblc, lblcr).
    HashDest,
}

/// How a scheduler is expressed; `approximation` says what differs from IPVS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    pub pick: Pick,
    pub weighted: bool,
    /// Only the highest-weight destination gets slots (fo).
    pub highest_only: bool,
    pub approximation: Option<&'static str>,
}

pub fn plan(sched: &str) -> Option<Plan> {
    let p = |pick, weighted, approximation| Plan {
        pick,
        weighted,
        highest_only: false,
        approximation,
    };
    Some(match sched {
        "rr" => p(Pick::Rotate, false, None),
        "wrr" => p(Pick::Rotate, true, None),
        "lc" | "wlc" | "sed" | "nq" | "ovf" => p(
            Pick::Rotate,
            true,
            Some("connection counts are not visible to nftables: scheduled as wrr"),
        ),
        "sh" => p(Pick::HashSource, true, None),
        "mh" => p(
            Pick::HashSource,
            true,
            Some("jhash over weighted slots instead of a Maglev table"),
        ),
        "dh" => p(Pick::HashDest, true, None),
        "lblc" | "lblcr" => p(
            Pick::HashDest,
            true,
            Some("locality without load: scheduled as dh"),
        ),
        "fo" => Plan {
            pick: Pick::Rotate,
            weighted: false,
            highest_only: true,
            approximation: None,
        },
        _ => return None,
    })
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// The slot layout: for each slot, the index (into `dests`) of its destination.
pub fn slots(plan: &Plan, dests: &[(DestKey, DestSpec)]) -> Vec<usize> {
    let live: Vec<(usize, u32)> = dests
        .iter()
        .enumerate()
        .filter(|(_, (_, s))| s.weight > 0)
        .map(|(i, (_, s))| (i, s.weight))
        .collect();
    if live.is_empty() {
        return Vec::new();
    }
    if plan.highest_only {
        let best = live.iter().max_by_key(|(i, w)| (*w, std::cmp::Reverse(*i)));
        return best.map(|(i, _)| vec![*i]).unwrap_or_default();
    }
    if !plan.weighted {
        return live.iter().map(|(i, _)| *i).collect();
    }
    let g = live.iter().fold(0, |g, (_, w)| gcd(g, *w));
    let mut weights: Vec<(usize, u64)> = live.iter().map(|(i, w)| (*i, u64::from(w / g.max(1)))).collect();
    let total: u64 = weights.iter().map(|(_, w)| w).sum();
    if total > u64::from(MAX_SLOTS) {
        for (_, w) in &mut weights {
            *w = ((*w * u64::from(MAX_SLOTS)) / total).max(1);
        }
    }
    // Smooth weighted round robin: each step every destination gains its weight, the
    // richest is picked and pays the total.
    let total: i64 = weights.iter().map(|(_, w)| *w as i64).sum();
    let mut current = vec![0i64; weights.len()];
    let mut out = Vec::with_capacity(total as usize);
    for _ in 0..total {
        for (c, (_, w)) in current.iter_mut().zip(&weights) {
            *c += *w as i64;
        }
        let mut best = 0;
        for j in 1..current.len() {
            if current[j] > current[best] {
                best = j;
            }
        }
        current[best] -= total;
        out.push(weights[best].0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ha_config::model::Forwarding;
    use std::net::IpAddr;

    fn dests(weights: &[u32]) -> Vec<(DestKey, DestSpec)> {
        weights
            .iter()
            .enumerate()
            .map(|(i, w)| {
                (
                    DestKey {
                        addr: IpAddr::from([198, 18, 116, 131 + i as u8]),
                        port: 80,
                    },
                    DestSpec {
                        fwd: Forwarding::Dr,
                        weight: *w,
                        u_thresh: 0,
                        l_thresh: 0,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn rr_gives_each_live_destination_one_slot_in_order() {
        let p = plan("rr").unwrap();
        assert_eq!(slots(&p, &dests(&[1, 5, 0, 2])), vec![0, 1, 3]);
    }

    #[test]
    fn wrr_interleaves_by_weight() {
        let p = plan("wrr").unwrap();
        assert_eq!(slots(&p, &dests(&[3, 1])), vec![0, 0, 1, 0]);
        // gcd: 20:10 is 2:1.
        assert_eq!(slots(&p, &dests(&[20, 10])), vec![0, 1, 0]);
        assert_eq!(slots(&p, &dests(&[0, 0])), Vec::<usize>::new());
    }

    #[test]
    fn large_weights_are_capped_but_keep_every_live_destination() {
        let p = plan("wrr").unwrap();
        let s = slots(&p, &dests(&[1000, 1, 999]));
        assert!(s.len() as u32 <= MAX_SLOTS + 3);
        assert!(s.contains(&1), "weight 1 next to 1000 still gets a slot");
        let a = s.iter().filter(|i| **i == 0).count();
        let c = s.iter().filter(|i| **i == 2).count();
        assert!(a.abs_diff(c) <= 1);
    }

    #[test]
    fn fo_takes_the_highest_weight_and_unknown_schedulers_are_refused() {
        let p = plan("fo").unwrap();
        assert_eq!(slots(&p, &dests(&[2, 7, 7])), vec![1]);
        assert!(plan("nosuch").is_none());
        assert!(plan("wlc").unwrap().approximation.is_some());
        assert!(plan("rr").unwrap().approximation.is_none());
    }
}

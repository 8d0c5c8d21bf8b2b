//! How an IPVS scheduler becomes nftables slot maps (pure).
//!
//! A service picks a destination for a new flow with `numgen inc mod S` (rotating) or
//! `jhash <addr> mod S` (hashing) into a map of S slots, each naming a destination. A plan
//! with `maglev` lays its S slots out as a Maglev lookup table ([`super::maglev`]).
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
    /// The slots are a Maglev lookup table (mh): see [`super::maglev`].
    pub maglev: bool,
    pub approximation: Option<&'static str>,
}

pub fn plan(sched: &str) -> Option<Plan> {
    let p = |pick, weighted, approximation| Plan {
        pick,
        weighted,
        highest_only: false,
        maglev: false,
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
        // A Maglev lookup table ([`super::maglev`]), in the service's own map.
        "mh" => Plan {
            maglev: true,
            ..p(Pick::HashSource, true, None)
        },
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
            maglev: false,
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

/// The destinations that take new flows, with their relative weights (divided by their
/// gcd, and scaled down when they add up to more than [`MAX_SLOTS`]): (index into
/// `dests`, weight).
fn weights(plan: &Plan, dests: &[(DestKey, DestSpec)]) -> Vec<(usize, u64)> {
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
        return best.map(|(i, _)| vec![(*i, 1)]).unwrap_or_default();
    }
    if !plan.weighted {
        return live.iter().map(|(i, _)| (*i, 1)).collect();
    }
    let g = live.iter().fold(0, |g, (_, w)| gcd(g, *w));
    let mut weights: Vec<(usize, u64)> = live.iter().map(|(i, w)| (*i, u64::from(w / g.max(1)))).collect();
    let total: u64 = weights.iter().map(|(_, w)| w).sum();
    if total > u64::from(MAX_SLOTS) {
        for (_, w) in &mut weights {
            *w = ((*w * u64::from(MAX_SLOTS)) / total).max(1);
        }
    }
    weights
}

/// Smooth weighted round robin: each step every destination gains its weight, the
/// richest is picked and pays the total.
fn smooth(weights: &[(usize, u64)]) -> Vec<usize> {
    let total: i64 = weights.iter().map(|(_, w)| *w as i64).sum();
    let mut current = vec![0i64; weights.len()];
    let mut out = Vec::with_capacity(total.max(0) as usize);
    for _ in 0..total {
        for (c, (_, w)) in current.iter_mut().zip(weights) {
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

/// The exact slot layout: for each slot, the index (into `dests`) of its destination
/// (as few slots as the weights need).
pub fn slots(plan: &Plan, dests: &[(DestKey, DestSpec)]) -> Vec<usize> {
    smooth(&weights(plan, dests))
}

/// Slot counts a service's chain is given. Each divides by many small totals (12: 1, 2,
/// 3, 4, 6; 60: 5, 10, 15, 20, 30 too), so that most weight changes and destinations
/// going down or up keep the count: the change is then map elements only, and the
/// service's chain (whose `mod S` is a constant of its rule) is not rewritten, which at
/// 10,000 services costs the kernel a validation of the whole table.
pub const SLOT_COUNTS: [u32; 4] = [12, 60, 120, 240];
/// A slot count at least this large (and four slots per destination) approximates any
/// weights within a sixtieth of the traffic, so it is kept even when not exact.
const APPROXIMATE_FROM: u32 = 60;
/// Destinations beyond what [`SLOT_COUNTS`] holds get one slot each, up to this.
const MAX_COUNT: u64 = 4096;

/// How many slots a service with `dests` uses, given the count its chain has now:
/// kept while it lays the weights out exactly (or closely enough, see
/// [`APPROXIMATE_FROM`]), else the first of [`SLOT_COUNTS`] that does. A Maglev table
/// has [`super::maglev::TABLE_SIZE`] slots, always.
pub fn count(plan: &Plan, dests: &[(DestKey, DestSpec)], current: Option<u32>) -> u32 {
    if plan.maglev {
        return super::maglev::TABLE_SIZE;
    }
    let w = weights(plan, dests);
    let total: u64 = w.iter().map(|(_, w)| w).sum();
    let live = w.len() as u64;
    // A count left by a Maglev table (the scheduler was mh) is not one to keep.
    let current = current.filter(|s| *s > 0 && *s != super::maglev::TABLE_SIZE);
    if total == 0 {
        return current.unwrap_or(SLOT_COUNTS[0]);
    }
    let exact = |s: u32| u64::from(s) % total == 0;
    let close = |s: u32| s >= APPROXIMATE_FROM && u64::from(s) >= 4 * live;
    if let Some(s) = current.filter(|s| exact(*s) || close(*s)) {
        return s;
    }
    SLOT_COUNTS
        .into_iter()
        .find(|s| exact(*s))
        .or_else(|| SLOT_COUNTS.into_iter().find(|s| close(*s)))
        .unwrap_or_else(|| total.clamp(live, MAX_COUNT) as u32)
}

/// The layout of exactly `count` slots: the exact layout repeated when `count` is a
/// multiple of it, else the weights scaled to `count` (largest remainder, each live
/// destination keeping at least one slot while there are enough). Empty when no
/// destination takes new flows.
pub fn layout(plan: &Plan, dests: &[(DestKey, DestSpec)], count: u32) -> Vec<usize> {
    let w = weights(plan, dests);
    if plan.maglev {
        let live: Vec<(DestKey, u64)> = w.iter().map(|(i, wt)| (dests[*i].0, *wt)).collect();
        let table = super::maglev::table(&live, count);
        return table.into_iter().map(|j| w[j].0).collect();
    }
    let total: u64 = w.iter().map(|(_, w)| w).sum();
    let n = u64::from(count);
    if total == 0 || n == 0 {
        return Vec::new();
    }
    if n % total == 0 {
        let once = smooth(&w);
        return once.iter().copied().cycle().take(n as usize).collect();
    }
    // Largest remainder over what is left after one slot each.
    let floor = u64::from(n >= w.len() as u64);
    let rest = n - floor * w.len() as u64;
    let mut scaled: Vec<(usize, u64, u64)> = w
        .iter()
        .map(|(i, wt)| (*i, floor + wt * rest / total, wt * rest % total))
        .collect();
    let given: u64 = scaled.iter().map(|(_, s, _)| s).sum();
    let mut order: Vec<usize> = (0..scaled.len()).collect();
    order.sort_by_key(|j| std::cmp::Reverse(scaled[*j].2));
    let missing = n.saturating_sub(given) as usize;
    for j in order.into_iter().cycle().take(missing) {
        scaled[j].1 += 1;
    }
    let weights: Vec<(usize, u64)> = scaled
        .iter()
        .map(|(i, s, _)| (*i, *s))
        .filter(|(_, s)| *s > 0)
        .collect();
    smooth(&weights)
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
    fn slot_counts_hold_across_common_weight_changes_and_layouts_keep_proportions() {
        let p = plan("wrr").unwrap();
        // 1:1:1:1 -> 12 slots; a destination down (3 left), 3:1:1:1 and 2:1:1:0 all fit 12.
        assert_eq!(count(&p, &dests(&[1, 1, 1, 1]), None), 12);
        for w in [&[1, 1, 1, 0][..], &[3, 1, 1, 1], &[2, 1, 1, 0], &[0, 0, 0, 0]] {
            assert_eq!(count(&p, &dests(w), Some(12)), 12, "{w:?}");
        }
        // 5:1:1:1 (8) does not divide 12: the next count that it divides.
        assert_eq!(count(&p, &dests(&[5, 1, 1, 1]), Some(12)), 120);
        // 60 is kept even when not exact: 7 live destinations, 9:9:9:9:8:8:8.
        let seven = dests(&[1; 7]);
        assert_eq!(count(&p, &seven, Some(60)), 60);
        let l = layout(&p, &seven, 60);
        assert_eq!(l.len(), 60);
        for d in 0..7 {
            let n = l.iter().filter(|i| **i == d).count();
            assert!((8..=9).contains(&n), "{d}: {n}");
        }
        // Exact layouts repeat: 3:1 in 12 slots is A A B A three times.
        assert_eq!(layout(&p, &dests(&[3, 1]), 12), [0, 0, 1, 0].repeat(3));
        assert_eq!(layout(&p, &dests(&[0, 0]), 12), Vec::<usize>::new());
        // Many destinations: one slot each at least.
        let many = dests(&[1; 100]);
        let c = count(&p, &many, None);
        assert!(c >= 100, "{c}");
        let l = layout(&p, &many, c);
        assert!((0..100).all(|d| l.contains(&d)));
    }

    #[test]
    fn fo_takes_the_highest_weight_and_unknown_schedulers_are_refused() {
        let p = plan("fo").unwrap();
        assert_eq!(slots(&p, &dests(&[2, 7, 7])), vec![1]);
        assert!(plan("nosuch").is_none());
        assert!(plan("wlc").unwrap().approximation.is_some());
        assert!(plan("rr").unwrap().approximation.is_none());
    }

    /// A Maglev plan's slots are its lookup table over the destinations taking new flows
    /// (weight 0: none), whatever count the chain had.
    #[test]
    fn a_maglev_plan_lays_its_slots_out_as_the_lookup_table() {
        let p = Plan {
            maglev: true,
            ..plan("sh").unwrap()
        };
        let mut d = dests(&[1, 0, 2]);
        assert_eq!(count(&p, &d, Some(12)), super::super::maglev::TABLE_SIZE);
        let live = vec![(d[0].0, 1), (d[2].0, 2)];
        let want: Vec<usize> = super::super::maglev::table(&live, 2039)
            .into_iter()
            .map(|j| [0, 2][j])
            .collect();
        assert_eq!(layout(&p, &d, 2039), want);
        d[1].1.weight = 1;
        assert!(layout(&p, &d, 2039).contains(&1));
    }
}

//! Maglev lookup tables for the `mh` scheduler (pure).
//!
//! Every director computes the same table from the committed destinations alone, so a
//! flow's slot (`jhash` of its source with a fixed seed, `mod M`) names the same real
//! server on whichever director holds the VIP, and a destination added or removed moves
//! about 1/N of the slots (Eisenbud et al., "Maglev", NSDI 2016, section 3.4): each
//! destination has its own permutation of the M slots, from two hashes of its identity
//! (address and port), and the destinations take turns claiming their next preferred free
//! slot, each as many turns per round as its weight (divided by the weights' gcd), as
//! the kernel's `ip_vs_mh` does. M is one prime, [`TABLE_SIZE`], for every service.

use super::super::model::DestKey;
use sha2::{Digest, Sha256};

/// The table size of every `mh` service: a prime (every skip is then a generator of the
/// slots), below 0x8000 (the slot index's room in a packet mark). One size for all, as
/// `ip_vs_mh` has one (65537): a size chosen from the number of servers would differ
/// between directors whose checkers disagree for a moment, and a different size is a
/// different table. Maglev moves more than the ideal 1/(N+1) of the slots when a server
/// comes (the claims after the newcomer's cascade), the less the more slots per server:
/// at most 1.5 x the ideal up to 12 servers (tested below), about 2 x at 32.
pub const TABLE_SIZE: u32 = 2039;

/// Where destination `d`'s permutation starts and how it steps (1..m).
fn permutation(d: &DestKey, m: u32) -> (u64, u64) {
    let mut h = Sha256::new();
    h.update(b"hanode-maglev\n");
    match d.addr {
        std::net::IpAddr::V4(a) => h.update(a.octets()),
        std::net::IpAddr::V6(a) => h.update(a.octets()),
    }
    h.update(d.port.to_be_bytes());
    let digest = h.finalize();
    let word = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&digest[i..i + 8]);
        u64::from_be_bytes(b)
    };
    let m = u64::from(m);
    let mut skip = word(8) % (m - 1) + 1;
    // With a prime m every skip visits every slot; a table read back from a kernel may
    // have another size until it is laid out again, and the fill must still end.
    while gcd(skip, m) != 1 {
        skip = skip % (m - 1) + 1;
    }
    (word(0) % m, skip)
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// The lookup table: for each of the `m` slots, the index (into `dests`) of its
/// destination. `dests` are the destinations taking new flows with their weights
/// (already divided by their gcd), in the same order on every director. Empty when
/// there is none.
pub fn table(dests: &[(DestKey, u64)], m: u32) -> Vec<usize> {
    if dests.is_empty() || m < 2 {
        return Vec::new();
    }
    let perms: Vec<(u64, u64)> = dests.iter().map(|(d, _)| permutation(d, m)).collect();
    let mut next = vec![0u64; dests.len()];
    let mut owner: Vec<Option<usize>> = vec![None; m as usize];
    let mut filled = 0u32;
    let mm = u64::from(m);
    'rounds: loop {
        for (i, (_, weight)) in dests.iter().enumerate() {
            let (offset, skip) = perms[i];
            for _ in 0..*weight {
                // The next slot of i's permutation that nobody holds (skip and m are
                // coprime, so the permutation visits every slot).
                let slot = loop {
                    let s = ((offset + next[i] * skip) % mm) as usize;
                    next[i] += 1;
                    if owner[s].is_none() {
                        break s;
                    }
                };
                owner[slot] = Some(i);
                filled += 1;
                if filled == m {
                    break 'rounds;
                }
            }
        }
    }
    owner.into_iter().map(|o| o.unwrap_or(0)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    fn dest(i: u32) -> DestKey {
        DestKey {
            addr: IpAddr::from([198, 19, (i / 250) as u8, (i % 250) as u8 + 1]),
            port: 80,
        }
    }

    fn equal(ids: &[u32]) -> Vec<(DestKey, u64)> {
        ids.iter().map(|i| (dest(*i), 1)).collect()
    }

    /// Each slot's destination, by identity (so tables over different lists compare).
    fn owners(dests: &[(DestKey, u64)], m: u32) -> Vec<DestKey> {
        table(dests, m).into_iter().map(|i| dests[i].0).collect()
    }

    fn moved(a: &[DestKey], b: &[DestKey]) -> usize {
        a.iter().zip(b).filter(|(x, y)| x != y).count()
    }

    #[test]
    fn every_slot_has_a_destination_and_shares_follow_the_weights() {
        let m = TABLE_SIZE;
        for n in 1..=40u32 {
            let t = table(&equal(&(0..n).collect::<Vec<_>>()), m);
            assert_eq!(t.len(), m as usize);
            let mut count = vec![0usize; n as usize];
            for i in t {
                count[i] += 1;
            }
            // Equal weights: every share within one slot of m/n.
            let (lo, hi) = (m as usize / n as usize, (m as usize).div_ceil(n as usize));
            assert!(
                count.iter().all(|c| *c >= lo && *c <= hi),
                "n={n} m={m} {count:?}"
            );
        }
        // 3:1: three quarters, within a slot.
        let t = table(&[(dest(1), 3), (dest(2), 1)], m);
        let first = t.iter().filter(|i| **i == 0).count();
        assert!((1528..=1530).contains(&first), "{first}");
    }

    #[test]
    fn the_table_depends_on_the_destinations_only() {
        let d = equal(&[3, 1, 4, 15, 9]);
        assert_eq!(table(&d, 251), table(&d, 251));
        // The same identities give the same permutations whatever else is in the list.
        assert_eq!(permutation(&dest(4), 251), permutation(&dest(4), 251));
        assert_ne!(permutation(&dest(4), 251), permutation(&dest(5), 251));
    }

    /// The bound: one destination added (or removed) moves at most 1.5 x the ideal
    /// 1/(N+1) of the slots, for many sets of destinations.
    #[test]
    fn one_destination_added_or_removed_moves_about_one_nth_of_the_slots() {
        let m = TABLE_SIZE;
        for n in 1..=12u32 {
            for shift in 0..6u32 {
                let base = shift * 37;
                let mut before: Vec<u32> = (base..base + n).collect();
                before.sort_by_key(|i| dest(*i));
                let mut after = before.clone();
                after.push(5000 + n + shift);
                after.sort_by_key(|i| dest(*i));
                let a = owners(&equal(&before), m);
                let b = owners(&equal(&after), m);
                let ideal = f64::from(m) / f64::from(n + 1);
                let added = moved(&a, &b) as f64;
                assert!(
                    added <= 1.5 * ideal,
                    "n={n}: added one, {added} moved, ideal {ideal:.1}"
                );
                if n < 2 {
                    continue;
                }
                // Removing one of the first n: its own slots move, and few others.
                let gone = dest(before[(n / 2) as usize]);
                let fewer: Vec<u32> = before.iter().copied().filter(|i| dest(*i) != gone).collect();
                let c = owners(&equal(&fewer), m);
                let own = a.iter().filter(|d| **d == gone).count() as f64;
                let all = moved(&a, &c) as f64;
                let ideal = f64::from(m) / f64::from(n);
                assert!(
                    all >= own && all <= 1.5 * ideal,
                    "n={n}: removed one with {own} slots, {all} moved, ideal {ideal:.1}"
                );
            }
        }
    }

    /// A size that is not prime (a table read back before it is laid out again) still
    /// gives a full table.
    #[test]
    fn any_size_fills() {
        for m in [2u32, 12, 60, 64, 240] {
            let t = table(&equal(&[1, 2, 3]), m);
            assert_eq!(t.len(), m as usize);
            assert!((0..3).all(|i| t.contains(&i)) || m < 3, "m={m} {t:?}");
        }
    }
}

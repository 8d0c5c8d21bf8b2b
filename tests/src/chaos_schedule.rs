//! Fault schedules for the chaos suite, drawn from a seed (pure: the same seed gives the
//! same schedule, so a failing run is replayed with its seed).
//!
//! The cluster is the seed lab's: member 0 lvs01 (MASTER, priority 100), member 1 lvs02
//! (BACKUP), member 2 the witness (Raft only). A schedule is a few steps; each step
//! injects one or two faults at once, keeps them for a while, heals them, and pauses.

use std::fmt;
use std::time::Duration;

pub const MEMBERS: [&str; 3] = ["lvs01", "lvs02", "witness"];

/// What a partition drops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Traffic {
    All,
    /// The cluster transport only (Raft, liveness, quorum probes: TCP port 7101).
    Transport,
    /// VRRP adverts only (IP protocol 112).
    Vrrp,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Drops `traffic` from members `from` to members `to` (and back unless `one_way`).
    /// A member in neither set still reaches both: a non-transitive partition.
    Partition {
        from: Vec<usize>,
        to: Vec<usize>,
        one_way: bool,
        traffic: Traffic,
    },
    /// A bad link between a member and the switch, both directions: `loss` and `dup` in
    /// percent, `delay_ms` ± `jitter_ms` (a jitter larger than the gap between two
    /// packets reorders them).
    Link {
        who: usize,
        loss: u32,
        delay_ms: u32,
        jitter_ms: u32,
        dup: u32,
    },
    /// `kill -9`, restarted when the step heals.
    Kill { who: usize },
    /// SIGSTOP, SIGCONT when the step heals.
    Stop { who: usize },
    /// The member's data directory full (its tmpfs filled), freed when the step heals.
    DiskFull { who: usize },
}

impl Fault {
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::Partition {
                one_way: false,
                traffic: Traffic::All,
                ..
            } => "partition",
            Fault::Partition { one_way: true, .. } => "one-way partition",
            Fault::Partition {
                traffic: Traffic::Transport,
                ..
            } => "transport-only partition",
            Fault::Partition {
                traffic: Traffic::Vrrp,
                ..
            } => "VRRP-only partition",
            Fault::Link { .. } => "bad link",
            Fault::Kill { .. } => "kill -9",
            Fault::Stop { .. } => "SIGSTOP",
            Fault::DiskFull { .. } => "disk full",
        }
    }

    /// The members this fault acts on (a partition: both sides).
    pub fn members(&self) -> Vec<usize> {
        match self {
            Fault::Partition { from, to, .. } => from.iter().chain(to).copied().collect(),
            Fault::Link { who, .. } | Fault::Kill { who } | Fault::Stop { who } | Fault::DiskFull { who } => {
                vec![*who]
            }
        }
    }

    /// Whether, while this fault lasts (and a moment after), both directors may hold the
    /// VIP by design, the quorum gate notwithstanding. `holder`: the director holding the
    /// VIP when the fault starts (None: unknown, judged as if either).
    /// - a partition that stops the holder's adverts reaching the other director (a BACKUP
    ///   sends none: cutting the other way changes nothing) while each still reaches a
    ///   majority over the transport (non-transitive, or VRRP only): each side may act and
    ///   the other does not hear it;
    /// - adverts lost on a director's link (three in a row make the backup claim);
    /// - a director killed or frozen: its address stays configured (nothing runs to remove
    ///   it) though it no longer answers as a director.
    pub fn may_split(&self, holder: Option<usize>) -> bool {
        match self {
            Fault::Partition {
                from,
                to,
                traffic,
                one_way,
            } => {
                if *traffic == Traffic::Transport {
                    return false;
                }
                let drops = |a: usize, b: usize| {
                    (from.contains(&a) && to.contains(&b))
                        || (!*one_way && from.contains(&b) && to.contains(&a))
                };
                let adverts_cut = match holder {
                    Some(h) => drops(h, 1 - h),
                    None => drops(0, 1) || drops(1, 0),
                };
                if !adverts_cut {
                    return false;
                }
                if *traffic == Traffic::Vrrp {
                    return true;
                }
                // All traffic: does each director still reach a majority (itself and one
                // more) over TCP? A connection needs both directions, so a one-way cut
                // breaks it as a two-way one does.
                let cut = |a: usize, b: usize| {
                    (from.contains(&a) && to.contains(&b)) || (from.contains(&b) && to.contains(&a))
                };
                let reaches_majority = |d: usize| (0..3).filter(|&m| m == d || !cut(d, m)).count() >= 2;
                reaches_majority(0) && reaches_majority(1)
            }
            Fault::Link { who, loss, .. } => *who < 2 && *loss > 0,
            Fault::Kill { who } | Fault::Stop { who } => *who < 2,
            Fault::DiskFull { .. } => false,
        }
    }
}

fn names(ms: &[usize]) -> String {
    ms.iter().map(|&m| MEMBERS[m]).collect::<Vec<_>>().join("+")
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Partition {
                from,
                to,
                one_way,
                traffic,
            } => write!(
                f,
                "{} {} {} {}",
                match traffic {
                    Traffic::All => "cut all traffic",
                    Traffic::Transport => "cut the transport",
                    Traffic::Vrrp => "cut VRRP",
                },
                names(from),
                if *one_way { "->" } else { "<->" },
                names(to)
            ),
            Fault::Link {
                who,
                loss,
                delay_ms,
                jitter_ms,
                dup,
            } => write!(
                f,
                "bad link at {}: loss {loss}%, delay {delay_ms}±{jitter_ms} ms, duplicate {dup}%",
                MEMBERS[*who]
            ),
            Fault::Kill { who } => write!(f, "kill -9 {}", MEMBERS[*who]),
            Fault::Stop { who } => write!(f, "SIGSTOP {}", MEMBERS[*who]),
            Fault::DiskFull { who } => write!(f, "fill the disk of {}", MEMBERS[*who]),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    pub faults: Vec<Fault>,
    pub lasts: Duration,
    pub pause: Duration,
}

/// splitmix64: small, fast, and the same everywhere (the schedule must not change with a
/// crate's version).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5DEE_CE66_D1CE_4E5B)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

fn fault(rng: &mut Rng) -> Fault {
    match rng.below(100) {
        0..=39 => {
            // Two disjoint non-empty sides; the third member, if in neither, reaches both.
            let first = rng.below(3) as usize;
            let mut from = vec![first];
            let others: Vec<usize> = (0..3).filter(|&m| m != first).collect();
            let second = others[rng.below(2) as usize];
            let third = others.iter().copied().find(|&m| m != second).unwrap_or(second);
            let mut to = vec![second];
            match rng.below(3) {
                0 => from.push(third),
                1 => to.push(third),
                _ => {}
            }
            let traffic = match rng.below(3) {
                0 => Traffic::All,
                1 => Traffic::Transport,
                _ => Traffic::Vrrp,
            };
            Fault::Partition {
                from,
                to,
                one_way: rng.chance(30),
                traffic,
            }
        }
        40..=59 => Fault::Link {
            who: rng.below(3) as usize,
            loss: [0, 5, 20, 40][rng.below(4) as usize],
            delay_ms: [0, 20, 100, 300][rng.below(4) as usize],
            jitter_ms: [0, 10, 50][rng.below(3) as usize],
            dup: [0, 5, 20][rng.below(3) as usize],
        },
        60..=74 => Fault::Kill {
            who: rng.below(3) as usize,
        },
        75..=89 => Fault::Stop {
            who: rng.below(3) as usize,
        },
        _ => Fault::DiskFull {
            who: rng.below(3) as usize,
        },
    }
}

/// Two faults of one step must not act on the same member (a member killed and frozen
/// at once, or partitioned twice, tests nothing more and heals ambiguously).
fn compatible(a: &Fault, b: &Fault) -> bool {
    let (ma, mb) = (a.members(), b.members());
    !ma.iter().any(|m| mb.contains(m))
}

/// The schedule for `seed`: `steps` steps of one or two faults, each kept 2 to 5 s.
pub fn schedule(seed: u64, steps: usize) -> Vec<Step> {
    let mut rng = Rng::new(seed);
    (0..steps)
        .map(|_| {
            let mut faults = vec![fault(&mut rng)];
            if rng.chance(30) {
                let second = fault(&mut rng);
                if compatible(&faults[0], &second) {
                    faults.push(second);
                }
            }
            Step {
                faults,
                lasts: Duration::from_millis(2000 + rng.below(3001)),
                pause: Duration::from_millis(500 + rng.below(1501)),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_schedule_and_another_seed_another() {
        assert_eq!(schedule(7, 4), schedule(7, 4));
        assert_ne!(schedule(7, 4), schedule(8, 4));
    }

    #[test]
    fn a_hundred_seeds_inject_every_kind_of_fault_on_every_member() {
        let mut kinds = std::collections::BTreeSet::new();
        let mut victims = std::collections::BTreeSet::new();
        for seed in 0..100 {
            for step in schedule(seed, 4) {
                assert!(!step.faults.is_empty() && step.faults.len() <= 2);
                if let [a, b] = &step.faults[..] {
                    assert!(compatible(a, b), "{a} and {b} in one step");
                }
                for f in &step.faults {
                    kinds.insert(f.kind());
                    for m in f.members() {
                        victims.insert((f.kind(), m));
                    }
                }
            }
        }
        assert_eq!(kinds.len(), 8, "{kinds:?}");
        for kind in ["kill -9", "SIGSTOP", "disk full", "bad link"] {
            for (m, name) in MEMBERS.iter().enumerate() {
                assert!(victims.contains(&(kind, m)), "{kind} never hits {name}");
            }
        }
    }

    fn cut(from: &[usize], to: &[usize], one_way: bool, traffic: Traffic) -> Fault {
        Fault::Partition {
            from: from.to_vec(),
            to: to.to_vec(),
            one_way,
            traffic,
        }
    }

    /// Where the quorum gate must keep the VIP on one side, and where VRRP alone decides.
    #[test]
    fn a_split_is_excused_only_where_both_directors_still_reach_a_majority() {
        let lvs01 = Some(0);
        // lvs01 cut off from everyone: lvs01 has no majority, the gate releases it.
        assert!(!cut(&[0], &[1, 2], false, Traffic::All).may_split(lvs01));
        // lvs01 and lvs02 apart, the witness with lvs02: lvs01 alone, released.
        assert!(!cut(&[0], &[1, 2], true, Traffic::All).may_split(lvs01));
        // lvs01 and lvs02 apart, both still reach the witness: non-transitive.
        assert!(cut(&[0], &[1], false, Traffic::All).may_split(lvs01));
        // VRRP alone cut from the master: both keep their majority, lvs02 hears nothing.
        assert!(cut(&[0], &[1], true, Traffic::Vrrp).may_split(lvs01));
        // ... but cut from the backup only, lvs02 still hears the master.
        assert!(!cut(&[1], &[0], true, Traffic::Vrrp).may_split(lvs01));
        assert!(cut(&[1], &[0], true, Traffic::Vrrp).may_split(Some(1)));
        assert!(cut(&[1], &[0], true, Traffic::Vrrp).may_split(None));
        // The transport alone cut: VRRP still flows, no split.
        assert!(!cut(&[0], &[1, 2], false, Traffic::Transport).may_split(lvs01));
        // The witness cut off: the directors still hear each other.
        assert!(!cut(&[2], &[0, 1], false, Traffic::All).may_split(lvs01));
        assert!(!Fault::DiskFull { who: 0 }.may_split(lvs01));
        assert!(Fault::Stop { who: 0 }.may_split(lvs01));
        assert!(!Fault::Stop { who: 2 }.may_split(lvs01));
    }
}

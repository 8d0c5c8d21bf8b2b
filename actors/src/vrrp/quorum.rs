//! The quorum gate (issue 23), pure. keepalived's split brain: directors that stop
//! hearing each other's adverts all become MASTER. Ours are Raft voters too, so a
//! director can tell whether it is on a side that holds a majority of them: it probes
//! every other voter over the cluster transport, and one that has not reached a majority
//! (itself included) for [`release_after`] puts its VRRP instances in FAULT (a MASTER
//! sends priority 0 and releases its VIPs) until it reaches one again. The majority side
//! then takes over by ordinary VRRP.
//!
//! The gate must release **before** the other side's Master_Down_Interval expires, or
//! both sides hold the VIP for a moment. A backup's timer expires at the earliest
//! 2 x advert_int after the cut (the master's last advert left at most one interval before
//! it; Master_Down_Interval is 3 x advert_int + skew); the gate notices at the latest one
//! probe interval after `release_after` (the last answer came at most one probe interval
//! before the cut). So `release_after` = 2 x advert_int - probe interval - [`MARGIN`]
//! (the smallest advert_int of the director's instances), proven on a virtual clock in
//! the tests below.
//!
//! The gate counts direct contact with each voter: when the voters split into disjoint
//! sides at most one side reaches a majority. A non-transitive partition (A and C both
//! reach B but not each other) can leave two directors each reaching a majority.

use std::collections::BTreeMap;
use std::time::Duration;

/// How often a director probes the other voters.
pub const PROBE_EVERY: Duration = Duration::from_millis(200);
/// Room for the probe's own delay and the release (an actor message, a netlink request).
pub const MARGIN: Duration = Duration::from_millis(300);
/// The gate never acts on less silence than this (a shorter gap is a scheduling hiccup).
pub const FLOOR: Duration = Duration::from_millis(300);

/// How long without a majority a director keeps its VIPs, for instances whose smallest
/// advert interval is `advert_int`.
pub fn release_after(advert_int: Duration) -> Duration {
    (advert_int * 2).saturating_sub(PROBE_EVERY + MARGIN).max(FLOOR)
}

/// Whether the gate releases in time (before another director's master-down timer) with
/// `advert_int`: not below 0.4 s, where [`FLOOR`] takes over.
pub fn in_time(advert_int: Duration) -> bool {
    advert_int * 2 >= FLOOR + PROBE_EVERY + MARGIN
}

/// Whether the gate applies: `setting` (None: automatic, on with three voters or more)
/// and the number of voters.
pub fn applies(setting: Option<bool>, voters: usize) -> bool {
    setting.unwrap_or(voters >= 3)
}

/// What one director knows of its contact with the voters.
#[derive(Clone, Debug)]
pub struct Gate {
    after: Duration,
    /// When each other voter last answered (virtual or monotonic time).
    seen: BTreeMap<String, Duration>,
    /// Contact is assumed from here on until a voter has had `after` to answer.
    since: Duration,
    in_contact: bool,
}

impl Gate {
    pub fn new(now: Duration, after: Duration) -> Gate {
        Gate {
            after,
            seen: BTreeMap::new(),
            since: now,
            in_contact: true,
        }
    }

    pub fn after(&self) -> Duration {
        self.after
    }

    /// A new release time (the advert intervals changed); contact is judged anew.
    pub fn set_after(&mut self, after: Duration) {
        self.after = after;
    }

    /// The gate does not apply (or applies anew): in contact from `now` on. `Some(true)`
    /// when that changes its verdict.
    pub fn reset(&mut self, now: Duration) -> Option<bool> {
        self.since = now;
        self.seen.clear();
        (!self.in_contact).then(|| {
            self.in_contact = true;
            true
        })
    }

    /// Voter `name` answered a probe at `now`.
    pub fn answered(&mut self, name: &str, now: Duration) {
        self.seen.insert(name.to_string(), now);
    }

    pub fn in_contact(&self) -> bool {
        self.in_contact
    }

    /// How many voters (of `others` and this director when `self_votes`) answered within
    /// `after` of `now`.
    pub fn reached(&self, now: Duration, others: &[String], self_votes: bool) -> usize {
        let recent = others
            .iter()
            .filter(|o| {
                let at = self.seen.get(*o).copied().unwrap_or(self.since).max(self.since);
                now.saturating_sub(at) <= self.after
            })
            .count();
        recent + usize::from(self_votes)
    }

    /// Judges contact at `now` with the other voters `others`; `Some(in_contact)` when it
    /// changed.
    pub fn evaluate(&mut self, now: Duration, others: &[String], self_votes: bool) -> Option<bool> {
        let voters = others.len() + usize::from(self_votes);
        if voters == 0 {
            // The membership is not known yet: nothing to judge.
            return None;
        }
        let ok = self.reached(now, others, self_votes) > voters / 2;
        (ok != self.in_contact).then(|| {
            self.in_contact = ok;
            ok
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::instance::{Input, State};
    use super::super::sim::{params, Sim};
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn release_time_leaves_room_before_the_other_sides_timer() {
        assert_eq!(release_after(Duration::from_secs(1)), ms(1500));
        assert_eq!(release_after(ms(500)), ms(500));
        // Very short adverts: the floor, which cannot release in time (said in status).
        assert_eq!(release_after(ms(100)), FLOOR);
        assert!(in_time(ms(400)) && !in_time(ms(390)));
    }

    #[test]
    fn automatic_with_three_voters_or_more() {
        assert!(!applies(None, 2));
        assert!(applies(None, 3));
        assert!(applies(Some(true), 2));
        assert!(!applies(Some(false), 5));
    }

    #[test]
    fn a_majority_is_counted_with_this_director_and_only_recent_answers() {
        let others = names(&["lvs02", "witness"]);
        let mut g = Gate::new(ms(0), ms(1500));
        // Nothing answered yet: contact is assumed for `after` from the start.
        assert_eq!(g.evaluate(ms(1000), &others, true), None);
        assert_eq!(g.evaluate(ms(1600), &others, true), Some(false));
        g.answered("witness", ms(1700));
        assert_eq!(g.evaluate(ms(1800), &others, true), Some(true));
        // The witness alone answering keeps 2 of 3.
        assert_eq!(g.evaluate(ms(3100), &others, true), None);
        assert_eq!(g.evaluate(ms(3300), &others, true), Some(false));
        // A director without a vote of its own (a learner) needs both others.
        let mut l = Gate::new(ms(0), ms(1500));
        l.answered("lvs02", ms(100));
        assert_eq!(l.reached(ms(1600), &others, false), 1);
        assert_eq!(l.evaluate(ms(1600), &others, false), Some(false));
        // Five voters: three needed.
        let five = names(&["b", "c", "d", "e"]);
        let mut f = Gate::new(ms(0), ms(1500));
        f.answered("b", ms(2000));
        assert_eq!(f.evaluate(ms(2000), &five, true), Some(false));
        f.answered("c", ms(2100));
        assert_eq!(f.evaluate(ms(2100), &five, true), Some(true));
    }

    /// The seed's pair (lvs01 MASTER at `prios.0`, lvs02 at `prios.1`) with lvs01 cut off from
    /// everything at `cut` (after 10 s of steady state): lvs01's gate probes the two
    /// other voters every [`PROBE_EVERY`] (answers stop at the cut), and feeds the
    /// instance. Returns (when lvs01 released the VIP, when lvs02 took it).
    fn cut_off_master(advert: Duration, prios: (u8, u8), cut: Duration) -> (Duration, Duration) {
        let mut p1 = params(prios.0, "198.18.116.130");
        let mut p2 = params(prios.1, "198.18.116.135");
        for p in [&mut p1, &mut p2] {
            p.advert_int = advert;
            p.v3 = advert < Duration::from_secs(1);
        }
        let mut sim = Sim::new(vec![p1, p2]);
        sim.start_all();
        let others = names(&["lvs02", "witness"]);
        let mut gate = Gate::new(Duration::ZERO, release_after(advert));
        let mut released = None;
        let mut taken = None;
        let mut t = Duration::ZERO;
        let end = cut + Duration::from_secs(10);
        while t < end {
            // The probe round at `t`: answers before the cut only.
            if t < cut {
                gate.answered("lvs02", t);
                gate.answered("witness", t);
            }
            if let Some(ok) = gate.evaluate(t, &others, true) {
                sim.input(0, Input::Quorum(ok));
            }
            // Advance to the next probe round, cutting the wire at `cut`.
            let next = t + PROBE_EVERY;
            if t < cut && next >= cut {
                sim.run_until(cut);
                sim.cut[0] = true;
            }
            sim.run_until(next);
            if released.is_none() && t >= cut && !sim.routers[0].holds_vip {
                released = sim.routers[0]
                    .transitions
                    .iter()
                    .rev()
                    .find(|x| x.2 == State::Fault)
                    .map(|x| x.0);
            }
            if taken.is_none() && sim.routers[1].inst.state() == State::Master {
                taken = sim.routers[1]
                    .transitions
                    .iter()
                    .rev()
                    .find(|x| x.2 == State::Master)
                    .map(|x| x.0);
            }
            t = next;
        }
        (
            released.expect("lvs01 never released the VIP"),
            taken.expect("lvs02 never took over"),
        )
    }

    #[test]
    fn a_cut_off_master_releases_before_the_other_side_takes_over() {
        // Every phase of the cut against the adverts and the probes, for the seed's
        // 1 s adverts and 0.5 s, the seed's priorities and 254/253 (the least skew).
        for advert in [Duration::from_secs(1), ms(500)] {
            for prio in [(100, 80), (254, 253)] {
                for phase in 0..40u64 {
                    let cut = Duration::from_secs(10) + advert * (phase as u32) / 40 + ms(phase * 7 % 200);
                    let (released, taken) = cut_off_master(advert, prio, cut);
                    assert!(
                        released < taken,
                        "advert {advert:?}, priorities {prio:?}, cut at {cut:?}: lvs01 released at {released:?}, lvs02 took over at {taken:?}"
                    );
                    // And no sooner than the gate's time after the last answer (at most one
                    // probe interval before the cut): no false alarm.
                    assert!(
                        released + PROBE_EVERY >= cut + release_after(advert),
                        "released at {released:?}, cut {cut:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn contact_back_returns_the_instance_to_backup_and_it_preempts() {
        let mut sim = Sim::new(vec![params(100, "198.18.116.130"), params(80, "198.18.116.135")]);
        sim.start_all();
        sim.run_until(Duration::from_secs(10));
        assert_eq!(sim.masters(), vec![0]);
        sim.input(0, Input::Quorum(false));
        assert_eq!(sim.routers[0].inst.state(), State::Fault);
        assert!(!sim.routers[0].holds_vip);
        // Priority 0 on the way out: lvs02 takes over after Skew_Time, not 3 s.
        sim.run_until(Duration::from_secs(11));
        assert_eq!(sim.masters(), vec![1]);
        sim.input(0, Input::Quorum(true));
        assert_eq!(sim.routers[0].inst.state(), State::Backup);
        sim.run_until(Duration::from_secs(20));
        assert_eq!(sim.masters(), vec![0]);
        assert_eq!(sim.vip_holders(), vec![0]);
    }

    #[test]
    fn an_address_owner_started_without_contact_never_holds_the_vip() {
        let mut owner = params(255, "198.18.116.130");
        owner.want_master = true;
        let mut sim = Sim::new(vec![owner, params(80, "198.18.116.135")]);
        sim.input(0, Input::Quorum(false));
        sim.start_all();
        assert_eq!(sim.routers[0].inst.state(), State::Fault);
        sim.run_until(Duration::from_secs(10));
        assert!(sim.routers[0].transitions.iter().all(|t| t.2 != State::Master));
        assert_eq!(sim.vip_holders(), vec![1]);
        sim.input(0, Input::Quorum(true));
        sim.run_until(Duration::from_secs(12));
        assert_eq!(sim.vip_holders(), vec![0]);
    }

    #[test]
    fn tracking_and_the_gate_both_must_clear() {
        let mut sim = Sim::new(vec![params(100, "198.18.116.130"), params(80, "198.18.116.135")]);
        sim.start_all();
        sim.run_until(Duration::from_secs(10));
        sim.input(0, Input::Quorum(false));
        sim.input(
            0,
            Input::Tracking {
                priority: 100,
                fault: true,
            },
        );
        sim.input(0, Input::Quorum(true));
        assert_eq!(
            sim.routers[0].inst.state(),
            State::Fault,
            "a tracked interface is still down"
        );
        sim.input(
            0,
            Input::Tracking {
                priority: 100,
                fault: false,
            },
        );
        assert_eq!(sim.routers[0].inst.state(), State::Backup);
    }
}

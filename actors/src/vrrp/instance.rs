//! One VRRP instance as a pure state machine (RFC 3768 6.4 / RFC 5798 6.4, with keepalived's
//! behaviour where it differs). No sockets and no clock: every input carries `now` (time
//! since an arbitrary origin), and [`Instance::deadline`] says when to feed [`Input::Timer`].

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    Init,
    Backup,
    Master,
    Fault,
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            State::Init => "INIT",
            State::Backup => "BACKUP",
            State::Master => "MASTER",
            State::Fault => "FAULT",
        })
    }
}

/// Why a transition happened (kept in the event history).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    Startup,
    /// No advert from a master within Master_Down_Interval.
    MasterDown,
    /// The master sent priority 0 (it is stopping): taken over after skew time.
    MasterStopped,
    /// The cluster transport says the master's director process is gone (its host
    /// refused our connection): taken over after skew time, as if it had sent priority 0.
    MasterProcessGone {
        master: IpAddr,
    },
    /// An advert with a higher priority (or equal and a higher address) arrived.
    HigherPriority {
        from: IpAddr,
        priority: u8,
    },
    /// A tracked interface or script put the instance in FAULT, or cleared it.
    Fault,
    FaultCleared,
    /// The quorum gate: this director lost contact with a majority of the Raft voters
    /// (it may be on the minority side of a partition), or regained it.
    NoQuorum,
    QuorumBack,
    /// Its sync group moved it.
    SyncGroup,
    Shutdown,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Startup => f.write_str("startup"),
            Reason::MasterDown => f.write_str("master down"),
            Reason::MasterStopped => f.write_str("master sent priority 0"),
            Reason::MasterProcessGone { master } => {
                write!(f, "master {master}: its director process is gone (fast path)")
            }
            Reason::HigherPriority { from, priority } => write!(f, "higher priority {priority} from {from}"),
            Reason::Fault => f.write_str("fault"),
            Reason::FaultCleared => f.write_str("fault cleared"),
            Reason::NoQuorum => f.write_str("no contact with a majority of the cluster's voters"),
            Reason::QuorumBack => f.write_str("contact with a majority of the cluster's voters is back"),
            Reason::SyncGroup => f.write_str("sync group"),
            Reason::Shutdown => f.write_str("shutdown"),
        }
    }
}

/// How the instance is configured (from `vrrp_instance`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Params {
    pub vrid: u8,
    /// VRRP version 3 computes skew from the master's interval.
    pub v3: bool,
    /// Configured priority (1..255; 255 = address owner).
    pub priority: u8,
    pub advert_int: Duration,
    /// `state MASTER` in the config (only the address owner starts as master at once).
    pub want_master: bool,
    /// False with `nopreempt`.
    pub preempt: bool,
    pub preempt_delay: Duration,
    /// Our primary address on the interface (tie-break at equal priority).
    pub primary: IpAddr,
    /// Adverts missed before the master is declared down (keepalived `down_timer_adverts`, 3).
    pub down_timer_adverts: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// Begin: `fault` when a tracked interface is down or a script failing at start.
    Start { fault: bool },
    /// An advert that passed the receive checks.
    Advert {
        from: IpAddr,
        priority: u8,
        interval: Duration,
    },
    /// The deadline passed.
    Timer,
    /// The result of tracking changed: effective priority, and whether it means FAULT.
    Tracking { priority: u8, fault: bool },
    /// The sync group wants this state (keepalived moves members together).
    Force(State),
    /// Graceful stop.
    Shutdown,
    /// The config fence: while held, the instance may not leave BACKUP for MASTER (its
    /// kernel table is not yet at the committed config version). A claim it would have
    /// made waits and is made when the fence is lifted, unless a master is heard first.
    Fence(bool),
    /// The quorum gate (issue 23): `false` when this director has lost contact with a
    /// majority of the cluster's voters: FAULT (a MASTER sends priority 0 and releases
    /// its VIPs) until it is `true` again, like a tracked interface going down.
    Quorum(bool),
    /// The director whose VRRP address this is has lost its process (the cluster
    /// transport's connection was refused by its host). If it is the master this backup
    /// defers to, it is treated as an advert of priority 0: takeover after Skew_Time, so
    /// that of several backups the highest priority still wins. Anything else: ignored.
    PeerGone(IpAddr),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send an advert with this priority (0 = "I am stopping").
    Send {
        priority: u8,
    },
    AddVips,
    DelVips,
    /// Gratuitous ARP / unsolicited NA for the VIPs (the shell repeats per garp settings).
    Garp,
    Transition {
        from: State,
        to: State,
        reason: Reason,
        priority: u8,
    },
}

#[derive(Clone, Debug)]
pub struct Instance {
    p: Params,
    state: State,
    /// Priority in effect (base adjusted by tracking).
    priority: u8,
    /// FAULT: a tracked interface or script, or the quorum gate.
    fault: bool,
    tracking_fault: bool,
    quorum_lost: bool,
    /// The master's advert interval (v3 backups learn it from adverts).
    master_adver_int: Duration,
    deadline: Option<Duration>,
    /// With `preempt_delay`: until when a lower-priority master is still tolerated.
    preempt_at: Option<Duration>,
    last_master: Option<IpAddr>,
    /// When an advert from a master we defer to was last accepted (BACKUP).
    master_heard_at: Option<Duration>,
    fenced: bool,
    /// A claim of MASTER held back by the fence.
    pending: Option<Reason>,
    /// Why the master-down deadline was shortened to Skew_Time (priority 0, or its
    /// process gone); cleared by the next advert accepted from a master.
    stopping_master: Option<Reason>,
}

impl Instance {
    pub fn new(p: Params) -> Self {
        Instance {
            priority: p.priority,
            master_adver_int: p.advert_int,
            state: State::Init,
            fault: false,
            tracking_fault: false,
            quorum_lost: false,
            deadline: None,
            preempt_at: None,
            last_master: None,
            master_heard_at: None,
            fenced: false,
            pending: None,
            stopping_master: None,
            p,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn priority(&self) -> u8 {
        self.priority
    }

    /// Whether a claim of MASTER is waiting for the config fence.
    pub fn held_by_fence(&self) -> bool {
        self.pending.is_some()
    }

    pub fn deadline(&self) -> Option<Duration> {
        self.deadline
    }

    /// Source of the last advert accepted from another router.
    pub fn last_master(&self) -> Option<IpAddr> {
        self.last_master
    }

    /// Skew_Time: lower priorities wait longer.
    pub fn skew(&self) -> Duration {
        let weight = 256 - u32::from(self.priority);
        if self.p.v3 {
            self.master_adver_int * weight / 256
        } else {
            Duration::from_secs(1) * weight / 256
        }
    }

    /// Master_Down_Interval.
    pub fn master_down_interval(&self) -> Duration {
        self.master_adver_int * self.p.down_timer_adverts + self.skew()
    }

    pub fn handle(&mut self, now: Duration, input: Input) -> Vec<Action> {
        let mut out = Vec::new();
        match input {
            Input::Start { fault } => self.start(now, fault, &mut out),
            Input::Timer => self.timer(now, &mut out),
            Input::Advert {
                from,
                priority,
                interval,
            } => self.advert(now, from, priority, interval, &mut out),
            Input::Tracking { priority, fault } => {
                self.priority = priority.max(1);
                self.tracking_fault = fault;
                self.set_fault(now, Reason::Fault, Reason::FaultCleared, &mut out);
            }
            Input::Quorum(in_contact) => {
                self.quorum_lost = !in_contact;
                self.set_fault(now, Reason::NoQuorum, Reason::QuorumBack, &mut out);
            }
            Input::Force(s) => self.force(now, s, &mut out),
            Input::Shutdown => self.shutdown(&mut out),
            Input::Fence(held) => self.fence(now, held, &mut out),
            Input::PeerGone(addr) => self.peer_gone(now, addr),
        }
        out
    }

    /// Becomes MASTER, or (fence held) waits in BACKUP until the fence is lifted.
    fn claim(&mut self, now: Duration, reason: Reason, out: &mut Vec<Action>) {
        if !self.fenced {
            self.become_master(now, reason, out);
            return;
        }
        if self.state != State::Backup {
            self.become_backup(now, reason.clone(), out);
        }
        self.pending = Some(reason);
        self.deadline = None;
    }

    fn fence(&mut self, now: Duration, held: bool, out: &mut Vec<Action>) {
        self.fenced = held;
        if held {
            return;
        }
        if let Some(reason) = self.pending.take() {
            if self.state == State::Backup && !self.fault {
                self.become_master(now, reason, out);
            }
        }
    }

    fn go(&mut self, to: State, reason: Reason, out: &mut Vec<Action>) {
        let from = self.state;
        self.state = to;
        out.push(Action::Transition {
            from,
            to,
            reason,
            priority: self.priority,
        });
    }

    fn become_master(&mut self, now: Duration, reason: Reason, out: &mut Vec<Action>) {
        self.go(State::Master, reason, out);
        out.push(Action::Send {
            priority: self.priority,
        });
        out.push(Action::AddVips);
        out.push(Action::Garp);
        self.master_adver_int = self.p.advert_int;
        self.deadline = Some(now + self.p.advert_int);
        self.preempt_at = None;
    }

    fn become_backup(&mut self, now: Duration, reason: Reason, out: &mut Vec<Action>) {
        let was_master = self.state == State::Master;
        self.go(State::Backup, reason, out);
        if was_master {
            out.push(Action::DelVips);
        }
        self.deadline = Some(now + self.master_down_interval());
    }

    fn start(&mut self, now: Duration, fault: bool, out: &mut Vec<Action>) {
        if self.state != State::Init {
            return;
        }
        self.tracking_fault = fault;
        self.fault = fault || self.quorum_lost;
        if self.fault {
            self.go(State::Fault, Reason::Startup, out);
            self.deadline = None;
            // A crash may have left our VIPs configured: not ours to hold now.
            out.push(Action::DelVips);
        } else if self.p.priority == 255 && self.p.want_master {
            self.claim(now, Reason::Startup, out);
        } else {
            self.become_backup(now, Reason::Startup, out);
            out.push(Action::DelVips);
        }
    }

    fn timer(&mut self, now: Duration, out: &mut Vec<Action>) {
        match self.deadline {
            Some(d) if now >= d => {}
            _ => return,
        }
        match self.state {
            State::Backup => {
                let reason = self.stopping_master.take().unwrap_or(Reason::MasterDown);
                self.claim(now, reason, out)
            }
            State::Master => {
                out.push(Action::Send {
                    priority: self.priority,
                });
                self.deadline = Some(now + self.p.advert_int);
            }
            State::Init | State::Fault => self.deadline = None,
        }
    }

    fn advert(
        &mut self,
        now: Duration,
        from: IpAddr,
        priority: u8,
        interval: Duration,
        out: &mut Vec<Action>,
    ) {
        if from == self.p.primary {
            return; // our own advert looped back
        }
        match self.state {
            State::Backup => {
                self.last_master = Some(from);
                if priority == 0 {
                    self.deadline = Some(now + self.skew());
                    self.stopping_master = Some(Reason::MasterStopped);
                    return;
                }
                let tolerate = !self.p.preempt || priority >= self.priority || self.within_preempt_delay(now);
                if tolerate {
                    self.pending = None;
                    self.stopping_master = None;
                    if self.p.v3 && !interval.is_zero() {
                        self.master_adver_int = interval;
                    }
                    self.master_heard_at = Some(now);
                    self.deadline = Some(now + self.master_down_interval());
                }
                // Otherwise: a lower-priority master and we preempt; let the timer run out.
            }
            State::Master => {
                if priority == 0 {
                    out.push(Action::Send {
                        priority: self.priority,
                    });
                    self.deadline = Some(now + self.p.advert_int);
                } else if priority > self.priority || (priority == self.priority && from > self.p.primary) {
                    self.last_master = Some(from);
                    // The advert we yield to is the new master heard: a death signal about
                    // it before its next advert is still about the master we follow.
                    self.master_heard_at = Some(now);
                    if self.p.v3 && !interval.is_zero() {
                        self.master_adver_int = interval;
                    }
                    self.become_backup(now, Reason::HigherPriority { from, priority }, out);
                } else {
                    // A lower-priority master: assert ourselves at once (keepalived does
                    // the same), so a split brain ends within one round trip.
                    out.push(Action::Send {
                        priority: self.priority,
                    });
                    out.push(Action::Garp);
                    self.deadline = Some(now + self.p.advert_int);
                }
            }
            State::Init | State::Fault => self.last_master = Some(from),
        }
    }

    fn peer_gone(&mut self, now: Duration, addr: IpAddr) {
        if self.state != State::Backup || self.last_master != Some(addr) || self.pending.is_some() {
            return;
        }
        // Only a master still being heard: one already declared down is being handled.
        let heard = self
            .master_heard_at
            .is_some_and(|t| now.saturating_sub(t) < self.master_down_interval());
        if !heard || self.stopping_master.is_some() {
            return;
        }
        let at = now + self.skew();
        if self.deadline.is_none_or(|d| at < d) {
            self.deadline = Some(at);
            self.stopping_master = Some(Reason::MasterProcessGone { master: addr });
        }
    }

    /// With `preempt_delay`, a lower-priority master is tolerated until the delay, counted
    /// from the first such advert, has passed.
    fn within_preempt_delay(&mut self, now: Duration) -> bool {
        if self.p.preempt_delay.is_zero() {
            return false;
        }
        let until = *self.preempt_at.get_or_insert(now + self.p.preempt_delay);
        now < until
    }

    /// FAULT while tracking or the quorum gate says so (`set`/`cleared`: why it changed).
    fn set_fault(&mut self, now: Duration, set: Reason, cleared: Reason, out: &mut Vec<Action>) {
        let was = self.fault;
        let fault = self.tracking_fault || self.quorum_lost;
        self.fault = fault;
        match (was, fault, self.state) {
            (false, true, State::Master) => {
                out.push(Action::Send { priority: 0 });
                out.push(Action::DelVips);
                self.go(State::Fault, set, out);
                self.enter_fault();
            }
            (false, true, State::Backup) => {
                self.go(State::Fault, set, out);
                self.enter_fault();
            }
            (true, false, State::Fault) => {
                if self.p.priority == 255 && self.p.want_master {
                    self.claim(now, cleared, out);
                } else {
                    self.become_backup(now, cleared, out);
                }
            }
            _ => {}
        }
    }

    /// In FAULT no timer runs, and nothing decided before carries over: a claim held by
    /// the fence, or a master seen stopping, is judged anew once the fault clears.
    fn enter_fault(&mut self) {
        self.deadline = None;
        self.pending = None;
        self.stopping_master = None;
    }

    fn force(&mut self, now: Duration, to: State, out: &mut Vec<Action>) {
        if self.fault || to == self.state || self.state == State::Init {
            return;
        }
        // keepalived moves a member to MASTER only when it could go there itself: not while
        // a master of its own virtual router is still being heard.
        if to == State::Master {
            if let Some(heard) = self.master_heard_at {
                if now.saturating_sub(heard) < self.master_down_interval() {
                    return;
                }
            }
        }
        match to {
            State::Master if self.state == State::Backup => self.claim(now, Reason::SyncGroup, out),
            State::Backup if matches!(self.state, State::Master | State::Fault) => {
                self.become_backup(now, Reason::SyncGroup, out)
            }
            State::Fault => {
                if self.state == State::Master {
                    out.push(Action::Send { priority: 0 });
                    out.push(Action::DelVips);
                }
                self.go(State::Fault, Reason::SyncGroup, out);
                self.deadline = None;
            }
            _ => {}
        }
    }

    fn shutdown(&mut self, out: &mut Vec<Action>) {
        if self.state == State::Master {
            out.push(Action::Send { priority: 0 });
            out.push(Action::DelVips);
        }
        if self.state != State::Init {
            self.go(State::Init, Reason::Shutdown, out);
        }
        self.deadline = None;
    }
}

#[cfg(test)]
mod tests {
    use super::super::sim::{params, Sim};
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    /// The seed's two directors (100 and 90), started and settled with 0 as MASTER.
    fn seed_pair_settled() -> Sim {
        let mut sim = Sim::new(vec![params(100, "198.18.116.130"), params(90, "198.18.116.135")]);
        sim.start_all();
        sim.run_until(secs(10.0));
        sim
    }

    /// lvs01 (router 0) comes back as a fresh process, not started yet.
    fn revive_lvs01(sim: &mut Sim) {
        sim.routers[0].alive = true;
        sim.routers[0].inst = Instance::new(params(100, "198.18.116.130"));
    }

    fn track(sim: &mut Sim, i: usize, priority: u8, fault: bool) {
        sim.input(i, Input::Tracking { priority, fault });
    }

    #[test]
    fn higher_priority_becomes_master_after_master_down_interval() {
        let sim = seed_pair_settled();
        assert_eq!(sim.masters(), vec![0]);
        assert_eq!(sim.vip_holders(), vec![0]);
        // 3 * 1 s + (256-100)/256 s, to the microsecond.
        let t = sim.routers[0]
            .transitions
            .iter()
            .find(|x| x.2 == State::Master)
            .unwrap()
            .0;
        assert_eq!(t, Duration::from_secs(3) + Duration::from_secs(156) / 256);
        assert_eq!(sim.routers[1].inst.state(), State::Backup);
        assert!(sim.routers[0].garps.len() == 1);
    }

    #[test]
    fn master_killed_backup_takes_over_within_the_rfc_bound_and_master_preempts_back() {
        let mut sim = seed_pair_settled();
        sim.kill(0);
        sim.run_until(secs(20.0));
        assert_eq!(sim.masters(), vec![1]);
        let took = sim.routers[1]
            .transitions
            .iter()
            .find(|x| x.2 == State::Master)
            .unwrap()
            .0
            - secs(10.0);
        let bound = Duration::from_secs(3) + Duration::from_secs(166) / 256;
        assert!(
            took <= bound && took > Duration::from_secs(2),
            "takeover in {took:?} (bound {bound:?})"
        );
        // The old master comes back (fresh process): it preempts because 100 > 90.
        revive_lvs01(&mut sim);
        sim.input(0, Input::Start { fault: false });
        sim.run_until(secs(30.0));
        assert_eq!(sim.masters(), vec![0]);
        assert_eq!(sim.vip_holders(), vec![0]);
        assert_eq!(sim.routers[1].inst.state(), State::Backup);
    }

    #[test]
    fn the_config_fence_holds_preemption_until_lifted() {
        let mut sim = seed_pair_settled();
        sim.kill(0);
        sim.run_until(secs(20.0));
        assert_eq!(sim.masters(), vec![1]);
        // The old master comes back with a stale table: it may not preempt.
        revive_lvs01(&mut sim);
        sim.input(0, Input::Fence(true));
        sim.input(0, Input::Start { fault: false });
        sim.run_until(secs(40.0));
        assert_eq!(sim.masters(), vec![1], "fenced: no preemption");
        assert!(sim.routers[0].inst.held_by_fence());
        assert_eq!(sim.routers[0].inst.state(), State::Backup);
        // Its table catches up: the claim is made at once.
        sim.input(0, Input::Fence(false));
        assert_eq!(sim.routers[0].inst.state(), State::Master);
        sim.run_until(secs(45.0));
        assert_eq!(sim.masters(), vec![0]);
        assert_eq!(sim.vip_holders(), vec![0]);
    }

    #[test]
    fn a_fenced_backup_waiting_to_claim_defers_to_a_master_it_hears() {
        let mut sim = seed_pair_settled();
        // 1 (priority 90) is fenced when 0 stops: it would take over but waits.
        sim.input(1, Input::Fence(true));
        sim.kill(0);
        sim.run_until(secs(20.0));
        assert!(sim.masters().is_empty(), "nobody may claim: {:?}", sim.masters());
        assert!(sim.routers[1].inst.held_by_fence());
        // 0 comes back and becomes master; 1's pending claim is dropped.
        revive_lvs01(&mut sim);
        sim.input(0, Input::Start { fault: false });
        sim.run_until(secs(30.0));
        assert_eq!(sim.masters(), vec![0]);
        assert!(!sim.routers[1].inst.held_by_fence());
        sim.input(1, Input::Fence(false));
        sim.run_until(secs(35.0));
        assert_eq!(sim.masters(), vec![0]);
    }

    #[test]
    fn nopreempt_keeps_the_current_master() {
        let mut p0 = params(100, "198.18.116.130");
        p0.preempt = false;
        let mut p1 = params(90, "198.18.116.135");
        p1.preempt = false;
        let mut sim = Sim::new(vec![p0.clone(), p1]);
        sim.input(1, Input::Start { fault: false });
        sim.run_until(secs(5.0));
        assert_eq!(sim.masters(), vec![1]);
        sim.routers[0].inst = Instance::new(p0);
        sim.input(0, Input::Start { fault: false });
        sim.run_until(secs(30.0));
        assert_eq!(
            sim.masters(),
            vec![1],
            "a higher priority backup does not preempt with nopreempt"
        );
    }

    #[test]
    fn preempt_delay_postpones_preemption() {
        let p0 = Params {
            preempt_delay: Duration::from_secs(10),
            ..params(100, "198.18.116.130")
        };
        let mut sim = Sim::new(vec![p0.clone(), params(90, "198.18.116.135")]);
        sim.input(1, Input::Start { fault: false });
        sim.run_until(secs(5.0));
        sim.input(0, Input::Start { fault: false });
        sim.run_until(secs(14.0));
        assert_eq!(sim.masters(), vec![1], "still tolerated within the delay");
        sim.run_until(secs(25.0));
        assert_eq!(sim.masters(), vec![0], "preempted after the delay");
        let t = sim.routers[0]
            .transitions
            .iter()
            .find(|x| x.2 == State::Master)
            .unwrap()
            .0;
        assert!(t >= secs(15.0) && t < secs(19.0), "{t:?}");
    }

    #[test]
    fn priority_zero_on_graceful_stop_hands_over_after_skew_time() {
        let mut sim = seed_pair_settled();
        sim.input(0, Input::Shutdown);
        assert!(!sim.routers[0].holds_vip);
        assert_eq!(sim.routers[0].sent.last().unwrap().1, 0);
        sim.kill(0);
        sim.run_until(secs(12.0));
        let took = sim.routers[1]
            .transitions
            .iter()
            .find(|x| x.2 == State::Master)
            .unwrap()
            .0
            - secs(10.0);
        let skew = Duration::from_secs(166) / 256;
        assert!(
            took <= skew + Duration::from_millis(1),
            "took {took:?}, skew {skew:?}"
        );
    }

    fn lvs01() -> IpAddr {
        "198.18.116.130".parse().unwrap()
    }

    fn took_over_at(sim: &Sim, i: usize) -> Duration {
        sim.routers[i]
            .transitions
            .iter()
            .find(|x| x.2 == State::Master)
            .expect("took over")
            .0
    }

    #[test]
    fn the_fast_path_names_itself_as_the_reason() {
        let mut i = Instance::new(params(90, "198.18.116.135"));
        let _ = i.handle(secs(0.0), Input::Start { fault: false });
        let _ = i.handle(
            secs(1.0),
            Input::Advert {
                from: lvs01(),
                priority: 100,
                interval: Duration::from_secs(1),
            },
        );
        let _ = i.handle(secs(1.5), Input::PeerGone(lvs01()));
        assert_eq!(i.deadline(), Some(secs(1.5) + i.skew()));
        let out = i.handle(secs(3.0), Input::Timer);
        assert!(out.contains(&Action::Transition {
            from: State::Backup,
            to: State::Master,
            reason: Reason::MasterProcessGone { master: lvs01() },
            priority: 90,
        }));
    }

    #[test]
    fn a_dead_masters_process_means_takeover_after_skew_time() {
        let mut sim = seed_pair_settled();
        sim.kill(0);
        sim.input(1, Input::PeerGone(lvs01()));
        sim.run_until(secs(12.0));
        assert_eq!(sim.masters(), vec![1]);
        let skew = Duration::from_secs(166) / 256;
        let took = took_over_at(&sim, 1) - secs(10.0);
        assert!(
            took <= skew + Duration::from_millis(1),
            "took {took:?}, skew {skew:?}"
        );
    }

    #[test]
    fn the_fast_path_holds_right_after_a_preemption_before_the_next_advert() {
        // The seed lab's sequence: lvs02 holds the VIP, lvs01 comes back and preempts,
        // and lvs01's process dies before its second advert: lvs02 has heard the new
        // master only in the advert that made it step down.
        let mut sim = seed_pair_settled();
        sim.kill(0);
        sim.run_until(secs(15.0));
        assert_eq!(sim.masters(), vec![1]);
        revive_lvs01(&mut sim);
        sim.input(0, Input::Start { fault: false });
        sim.run_until(secs(25.0));
        assert_eq!(sim.masters(), vec![0]);
        let preempted = sim.routers[0]
            .transitions
            .iter()
            .rfind(|x| x.2 == State::Master)
            .expect("lvs01 preempted")
            .0;
        // The same run again (the sim is deterministic), stopped just after the
        // preempting advert (the next one is 1 s later).
        let mut sim2 = seed_pair_settled();
        sim2.kill(0);
        sim2.run_until(secs(15.0));
        revive_lvs01(&mut sim2);
        sim2.input(0, Input::Start { fault: false });
        sim2.run_until(preempted + Duration::from_millis(100));
        assert_eq!(sim2.masters(), vec![0]);
        sim2.kill(0);
        sim2.input(1, Input::PeerGone(lvs01()));
        let killed = sim2.now;
        sim2.run_until(killed + secs(2.0));
        assert_eq!(sim2.masters(), vec![1]);
        let took = sim2.routers[1]
            .transitions
            .iter()
            .rfind(|x| x.2 == State::Master)
            .expect("lvs02 took over")
            .0
            - killed;
        let skew = Duration::from_secs(166) / 256;
        assert!(
            took <= skew + Duration::from_millis(1),
            "took {took:?}, skew {skew:?}"
        );
    }

    #[test]
    fn with_three_directors_the_highest_priority_backup_wins_the_fast_path() {
        let mut sim = Sim::new(vec![
            params(100, "198.18.116.130"),
            params(90, "198.18.116.135"),
            params(80, "198.18.116.136"),
        ]);
        sim.start_all();
        sim.run_until(secs(10.0));
        assert_eq!(sim.masters(), vec![0]);
        sim.kill(0);
        sim.input(1, Input::PeerGone(lvs01()));
        sim.input(2, Input::PeerGone(lvs01()));
        sim.run_until(secs(15.0));
        assert_eq!(sim.masters(), vec![1]);
        assert!(sim.routers[2].transitions.iter().all(|x| x.2 != State::Master));
        assert!(took_over_at(&sim, 1) - secs(10.0) < secs(1.0));
    }

    #[test]
    fn a_death_signal_about_another_director_or_while_master_changes_nothing() {
        let mut sim = seed_pair_settled();
        // lvs02 is not the master lvs01 defers to; and lvs01 is master anyway.
        sim.input(0, Input::PeerGone("198.18.116.135".parse().unwrap()));
        // lvs02 hears of a director that is not its master.
        sim.input(1, Input::PeerGone("198.18.116.140".parse().unwrap()));
        sim.run_until(secs(30.0));
        assert_eq!(sim.masters(), vec![0]);
        assert!(sim.routers[1].transitions.iter().all(|x| x.2 != State::Master));
    }

    #[test]
    fn a_false_death_signal_is_corrected_by_the_masters_next_advert() {
        // A signal although the master lives (cannot come from a refused connection, as
        // VRRP runs in the process that listens; guarded against anyway): at worst the
        // backup claims after Skew_Time and yields at the master's next advert.
        let mut sim = seed_pair_settled();
        sim.input(1, Input::PeerGone(lvs01()));
        sim.run_until(secs(20.0));
        assert_eq!(sim.masters(), vec![0]);
        assert_eq!(sim.vip_holders(), vec![0]);
        assert_eq!(sim.routers[1].inst.state(), State::Backup);
    }

    #[test]
    fn equal_priority_higher_address_wins() {
        let mut sim = Sim::new(vec![params(100, "198.18.116.130"), params(100, "198.18.116.135")]);
        // Both start at once: both become master at the same instant, then resolve.
        sim.start_all();
        sim.run_until(secs(10.0));
        assert_eq!(sim.masters(), vec![1]);
        assert_eq!(sim.vip_holders(), vec![1]);
    }

    #[test]
    fn split_brain_ends_when_the_wire_heals() {
        let mut sim = seed_pair_settled();
        sim.cut[0] = true;
        sim.run_until(secs(20.0));
        assert_eq!(sim.masters(), vec![0, 1], "both master while cut");
        sim.cut[0] = false;
        sim.run_until(secs(22.0));
        assert_eq!(sim.masters(), vec![0]);
        assert_eq!(sim.vip_holders(), vec![0]);
    }

    #[test]
    fn tracking_fault_and_priority_changes() {
        let mut sim = seed_pair_settled();
        // A tracked interface goes down on the master: FAULT, priority 0 sent, VIP released.
        track(&mut sim, 0, 100, true);
        assert_eq!(sim.routers[0].inst.state(), State::Fault);
        assert!(!sim.routers[0].holds_vip);
        sim.run_until(secs(12.0));
        assert_eq!(sim.masters(), vec![1]);
        // Back up: BACKUP, then it preempts (100 > 90).
        track(&mut sim, 0, 100, false);
        sim.run_until(secs(20.0));
        assert_eq!(sim.masters(), vec![0]);
        // A failing weighted script lowers it below the backup: the backup preempts.
        track(&mut sim, 0, 80, false);
        sim.run_until(secs(30.0));
        assert_eq!(sim.masters(), vec![1]);
        assert_eq!(sim.vip_holders(), vec![1]);
    }

    #[test]
    fn address_owner_starts_as_master_at_once() {
        let mut p = params(255, "198.18.116.130");
        p.want_master = true;
        let mut sim = Sim::new(vec![p, params(90, "198.18.116.135")]);
        sim.start_all();
        assert_eq!(sim.masters(), vec![0]);
        assert_eq!(sim.routers[0].transitions[0].0, Duration::ZERO);
    }

    #[test]
    fn a_sync_group_cannot_force_master_while_a_master_is_heard() {
        let mut i = Instance::new(params(90, "198.18.116.135"));
        let start = i.handle(Duration::ZERO, Input::Start { fault: false });
        assert!(
            start.contains(&Action::DelVips),
            "leftover VIPs are cleared at start"
        );
        let from = "198.18.116.130".parse().unwrap();
        let advert = Input::Advert {
            from,
            priority: 100,
            interval: Duration::from_secs(1),
        };
        i.handle(secs(1.0), advert);
        assert!(i.handle(secs(1.5), Input::Force(State::Master)).is_empty());
        assert_eq!(i.state(), State::Backup);
        // Once that master has been silent for the down interval, the force is obeyed.
        let later = i.handle(secs(5.0), Input::Force(State::Master));
        assert!(later.contains(&Action::AddVips), "{later:?}");
    }

    #[test]
    fn v3_backup_learns_the_master_interval() {
        let mut p = params(90, "198.18.116.135");
        p.v3 = true;
        p.advert_int = Duration::from_millis(100);
        let mut i = Instance::new(p);
        i.handle(Duration::ZERO, Input::Start { fault: false });
        i.handle(
            Duration::from_millis(50),
            Input::Advert {
                from: "198.18.116.130".parse().unwrap(),
                priority: 100,
                interval: Duration::from_millis(200),
            },
        );
        // 3 * 200 ms + (256-90)*200/256 ms.
        let want = Duration::from_millis(50 + 600) + Duration::from_millis(200) * 166 / 256;
        assert_eq!(i.deadline(), Some(want));
    }
}

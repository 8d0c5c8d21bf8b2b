//! A virtual-clock simulation of several instances on one wire: adverts are delivered to
//! every other router after `latency`; routers can be stopped, killed, partitioned. Tests
//! run seconds of protocol time in microseconds, with no sockets.

use super::instance::{Action, Input, Instance, Params, State};
use std::net::IpAddr;
use std::time::Duration;

pub struct Router {
    pub inst: Instance,
    pub addr: IpAddr,
    pub alive: bool,
    pub holds_vip: bool,
    pub sent: Vec<(Duration, u8)>,
    pub transitions: Vec<(Duration, State, State)>,
    pub garps: Vec<Duration>,
    /// The interval its adverts carry.
    pub advert_int: Duration,
}

pub struct Sim {
    pub now: Duration,
    pub routers: Vec<Router>,
    /// (deliver at, from index, priority, interval)
    in_flight: Vec<(Duration, usize, u8, Duration)>,
    pub latency: Duration,
    /// Routers whose adverts are not delivered (a cut cable).
    pub cut: Vec<bool>,
}

pub fn params(priority: u8, addr: &str) -> Params {
    Params {
        vrid: 51,
        v3: false,
        priority,
        advert_int: Duration::from_secs(1),
        want_master: false,
        preempt: true,
        preempt_delay: Duration::ZERO,
        primary: addr.parse().unwrap(),
        down_timer_adverts: 3,
    }
}

impl Sim {
    pub fn new(ps: Vec<Params>) -> Sim {
        let n = ps.len();
        let routers = ps
            .into_iter()
            .map(|p| Router {
                addr: p.primary,
                advert_int: p.advert_int,
                inst: Instance::new(p),
                alive: true,
                holds_vip: false,
                sent: vec![],
                transitions: vec![],
                garps: vec![],
            })
            .collect();
        Sim {
            now: Duration::ZERO,
            routers,
            in_flight: vec![],
            latency: Duration::from_micros(200),
            cut: vec![false; n],
        }
    }

    pub fn input(&mut self, i: usize, input: Input) {
        let acts = self.routers[i].inst.handle(self.now, input);
        self.apply(i, acts);
    }

    fn apply(&mut self, i: usize, acts: Vec<Action>) {
        for a in acts {
            match a {
                Action::Send { priority } => {
                    self.routers[i].sent.push((self.now, priority));
                    if !self.cut[i] {
                        let interval = self.routers[i].advert_int;
                        self.in_flight
                            .push((self.now + self.latency, i, priority, interval));
                    }
                }
                Action::AddVips => self.routers[i].holds_vip = true,
                Action::DelVips => self.routers[i].holds_vip = false,
                Action::Garp => self.routers[i].garps.push(self.now),
                Action::Transition { from, to, .. } => self.routers[i].transitions.push((self.now, from, to)),
            }
        }
    }

    pub fn start_all(&mut self) {
        for i in 0..self.routers.len() {
            self.input(i, Input::Start { fault: false });
        }
    }

    /// Kill -9: no priority-0 advert, no VIP removal (the box is gone).
    pub fn kill(&mut self, i: usize) {
        self.routers[i].alive = false;
        self.routers[i].holds_vip = false;
    }

    /// Runs until `until` (absolute), delivering adverts and firing timers in time order.
    pub fn run_until(&mut self, until: Duration) {
        loop {
            let next_delivery = self.in_flight.iter().map(|f| f.0).min();
            let next_timer = self
                .routers
                .iter()
                .enumerate()
                .filter(|(_, r)| r.alive)
                .filter_map(|(i, r)| r.inst.deadline().map(|d| (d, i)))
                .min();
            let t = match (next_delivery, next_timer.map(|x| x.0)) {
                (Some(a), Some(b)) => a.min(b),
                (Some(a), None) => a,
                (None, Some(b)) => b,
                (None, None) => break,
            };
            if t > until {
                break;
            }
            self.now = t;
            if next_delivery == Some(t) {
                let pos = self.in_flight.iter().position(|f| f.0 == t).unwrap();
                let (_, from, priority, interval) = self.in_flight.remove(pos);
                let addr = self.routers[from].addr;
                for j in 0..self.routers.len() {
                    if j != from && self.routers[j].alive {
                        self.input(
                            j,
                            Input::Advert {
                                from: addr,
                                priority,
                                interval,
                            },
                        );
                    }
                }
            } else if let Some((_, i)) = next_timer {
                self.input(i, Input::Timer);
            }
        }
        self.now = until;
    }

    pub fn masters(&self) -> Vec<usize> {
        (0..self.routers.len())
            .filter(|&i| self.routers[i].alive && self.routers[i].inst.state() == State::Master)
            .collect()
    }

    pub fn vip_holders(&self) -> Vec<usize> {
        (0..self.routers.len())
            .filter(|&i| self.routers[i].alive && self.routers[i].holds_vip)
            .collect()
    }
}

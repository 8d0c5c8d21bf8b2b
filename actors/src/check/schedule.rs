//! One checker's verdict over time, as keepalived decides it: a failure is retried
//! `retry` times, `delay_before_retry` apart, before the checker goes down; a success
//! brings it up at once; between rounds it waits `delay_loop`. Pure: the shell runs the
//! probe and feeds its result with [`CheckerCore::on_result`].

use ha_config::model::CheckCommon;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Health {
    Up,
    Down,
}

impl std::fmt::Display for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Health::Up => "UP",
            Health::Down => "DOWN",
        })
    }
}

/// The timing of one checker (keepalived's names).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    pub connect_timeout: Duration,
    pub retry: u32,
    pub delay_before_retry: Duration,
    pub delay_loop: Duration,
    /// First check at a random point within this (spreads load at start).
    pub warmup: Option<Duration>,
    /// Start DOWN (until the first success) instead of UP.
    pub alpha: bool,
}

impl From<&CheckCommon> for Timing {
    fn from(c: &CheckCommon) -> Self {
        Timing {
            connect_timeout: Duration::from_micros(c.connect_timeout.0),
            retry: c.retry,
            delay_before_retry: Duration::from_micros(c.delay_before_retry.0),
            delay_loop: Duration::from_micros(c.delay_loop.0),
            warmup: c.warmup.map(|w| Duration::from_micros(w.0)),
            alpha: c.alpha,
        }
    }
}

impl Timing {
    /// keepalived's worst case from a server failing (just after a successful check) to
    /// the checker declaring it down, when every attempt hangs until `connect_timeout`.
    pub fn worst_case_detection(&self) -> Duration {
        self.delay_loop + self.connect_timeout * (self.retry + 1) + self.delay_before_retry * self.retry
    }
}

/// What one probe found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeResult {
    pub ok: bool,
    /// Why it failed ("HTTP 503", "connect timeout after 3 s", ...), or what it saw.
    pub reason: String,
    /// MISC_CHECK with `misc_dynamic`: the weight the script asked for.
    pub weight: Option<u32>,
}

impl ProbeResult {
    pub fn up(reason: impl Into<String>) -> Self {
        ProbeResult {
            ok: true,
            reason: reason.into(),
            weight: None,
        }
    }

    pub fn down(reason: impl Into<String>) -> Self {
        ProbeResult {
            ok: false,
            reason: reason.into(),
            weight: None,
        }
    }
}

/// A change of verdict, for the event history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    pub from: Health,
    pub to: Health,
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckerCore {
    t: Timing,
    health: Health,
    /// Failed attempts in the current round.
    failures: u32,
    weight: Option<u32>,
}

impl CheckerCore {
    pub fn new(t: Timing) -> Self {
        CheckerCore {
            health: if t.alpha { Health::Down } else { Health::Up },
            failures: 0,
            weight: None,
            t,
        }
    }

    /// Keeps the verdict across a reconfiguration that only retunes the timing.
    pub fn retime(&mut self, t: Timing) {
        self.t = t;
    }

    pub fn health(&self) -> Health {
        self.health
    }

    pub fn timing(&self) -> &Timing {
        &self.t
    }

    /// Weight from a dynamic MISC_CHECK, if any.
    pub fn weight(&self) -> Option<u32> {
        self.weight
    }

    /// Delay before the first probe; `unit` is a random number in [0, 1).
    pub fn first_delay(&self, unit: f64) -> Duration {
        match self.t.warmup {
            Some(w) if !w.is_zero() => w.mul_f64(unit.clamp(0.0, 1.0)),
            _ => Duration::ZERO,
        }
    }

    /// Feeds one probe result; returns the transition (if any) and the delay to the next probe.
    pub fn on_result(&mut self, r: &ProbeResult) -> (Option<Transition>, Duration) {
        if r.ok {
            self.failures = 0;
            let weight_changed = r.weight.is_some() && r.weight != self.weight;
            self.weight = r.weight;
            let t = (self.health == Health::Down || weight_changed).then(|| Transition {
                from: self.health,
                to: Health::Up,
                reason: r.reason.clone(),
            });
            self.health = Health::Up;
            return (t, self.t.delay_loop);
        }
        // keepalived retries only while the server is up; a down one is probed each loop.
        if self.health == Health::Up && self.failures < self.t.retry {
            self.failures += 1;
            return (None, self.t.delay_before_retry);
        }
        self.failures = 0;
        let t = (self.health == Health::Up).then(|| Transition {
            from: Health::Up,
            to: Health::Down,
            reason: r.reason.clone(),
        });
        self.health = Health::Down;
        (t, self.t.delay_loop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed_timing() -> Timing {
        // The seed: connect_timeout 3, nb_get_retry 3, delay_before_retry 3, delay_loop 6.
        Timing {
            connect_timeout: Duration::from_secs(3),
            retry: 3,
            delay_before_retry: Duration::from_secs(3),
            delay_loop: Duration::from_secs(6),
            warmup: None,
            alpha: false,
        }
    }

    #[test]
    fn down_only_after_the_retries_are_spent() {
        let mut c = CheckerCore::new(seed_timing());
        let fail = ProbeResult::down("HTTP 503");
        for _ in 0..3 {
            assert_eq!(c.on_result(&fail), (None, Duration::from_secs(3)));
        }
        let (t, next) = c.on_result(&fail);
        assert_eq!(
            t,
            Some(Transition {
                from: Health::Up,
                to: Health::Down,
                reason: "HTTP 503".into()
            })
        );
        assert_eq!(next, Duration::from_secs(6));
        // Still failing: no new transition, and no retries while down.
        assert_eq!(c.on_result(&fail), (None, Duration::from_secs(6)));
        let (t, next) = c.on_result(&ProbeResult::up("HTTP 200"));
        assert_eq!(t.map(|t| t.to), Some(Health::Up));
        assert_eq!(next, Duration::from_secs(6));
    }

    #[test]
    fn a_success_between_failures_resets_the_count() {
        let mut c = CheckerCore::new(seed_timing());
        let fail = ProbeResult::down("timeout");
        c.on_result(&fail);
        c.on_result(&fail);
        c.on_result(&ProbeResult::up("ok"));
        for _ in 0..3 {
            assert_eq!(c.on_result(&fail).0, None);
        }
        assert!(c.on_result(&fail).0.is_some());
    }

    #[test]
    fn alpha_starts_down_and_warmup_spreads_the_start() {
        let mut t = seed_timing();
        t.alpha = true;
        t.warmup = Some(Duration::from_secs(10));
        let c = CheckerCore::new(t);
        assert_eq!(c.health(), Health::Down);
        assert_eq!(c.first_delay(0.5), Duration::from_secs(5));
        assert_eq!(CheckerCore::new(seed_timing()).first_delay(0.7), Duration::ZERO);
    }

    #[test]
    fn keepalived_worst_case_for_the_seed() {
        // 6 + 4 x 3 + 3 x 3 = 27 s.
        assert_eq!(seed_timing().worst_case_detection(), Duration::from_secs(27));
    }

    #[test]
    fn dynamic_weight_changes_are_transitions() {
        let mut c = CheckerCore::new(seed_timing());
        let w = |n| ProbeResult {
            ok: true,
            reason: format!("exit {}", n + 2),
            weight: Some(n),
        };
        assert!(c.on_result(&w(5)).0.is_some());
        assert!(c.on_result(&w(5)).0.is_none());
        assert!(c.on_result(&w(7)).0.is_some());
        assert_eq!(c.weight(), Some(7));
    }
}

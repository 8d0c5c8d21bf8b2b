//! What tracking does to an instance, as keepalived 2.2.7 does it: script results with
//! rise/fall hysteresis, and the effective priority (or FAULT) from tracked interfaces,
//! scripts, files and processes. Pure.

use ha_config::model::TrackedKind;

/// One tracked object: its kind and name (kinds have separate name spaces).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TrackerId {
    pub kind: TrackedKind,
    pub name: String,
}

impl std::fmt::Display for TrackerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.kind.keyword(), self.name)
    }
}

/// What a tracked object reports: ok or failing (interface, script, process quorum), or
/// the number in a tracked file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reading {
    Good(bool),
    Value(i64),
}

/// Hysteresis of one `vrrp_script` (keepalived's `result` counter: 0..rise+fall-1,
/// good when `>= rise`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScriptHealth {
    rise: u32,
    fall: u32,
    result: u32,
    /// No result yet (one success makes it good, one failure bad).
    init: bool,
}

impl ScriptHealth {
    /// `init_fail`: considered failed until it succeeds `rise` times.
    pub fn new(rise: u32, fall: u32, init_fail: bool) -> Self {
        let rise = rise.max(1);
        let fall = fall.max(1);
        ScriptHealth {
            rise,
            fall,
            result: if init_fail { 0 } else { rise - 1 },
            init: !init_fail,
        }
    }

    pub fn good(&self) -> bool {
        self.result >= self.rise
    }

    /// Whether the state is known (a result came in, or `init_fail` decided it).
    pub fn known(&self) -> bool {
        !self.init
    }

    /// Records one run. Returns the new verdict when it changed (or was first decided).
    pub fn record(&mut self, success: bool) -> Option<bool> {
        let top = self.rise + self.fall - 1;
        let was_init = self.init;
        self.init = false;
        if success {
            if self.result < self.rise - 1 {
                self.result += 1;
                None
            } else if self.result != top {
                let changed = self.result < self.rise;
                self.result = top;
                changed.then_some(true)
            } else {
                None
            }
        } else if self.result > self.rise {
            self.result -= 1;
            None
        } else {
            let changed = self.result == self.rise || was_init;
            self.result = 0;
            changed.then_some(false)
        }
    }
}

/// One tracked thing's weight: `None` means "FAULT while failing / down".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Weight {
    pub weight: Option<i32>,
    pub reverse: bool,
}

/// The priority change (or fault) of one tracked item, as keepalived computes it.
///
/// Ok/failing (script good, interface up, process quorum): a positive weight counts while
/// ok, a negative one while not ok; `reverse` negates the weight; without a weight the
/// instance is FAULT while not ok (while ok, with `reverse`).
///
/// A file's value: without a weight, any value but 0 is FAULT (with `reverse`, 0 is);
/// otherwise `value * weight` (negated by `reverse`), within -254..253, where -254 is FAULT.
fn contribution(w: Weight, reading: Reading) -> Result<i32, ()> {
    let mult = if w.reverse { -1 } else { 1 };
    let ok = match reading {
        Reading::Good(ok) => ok,
        Reading::Value(v) => {
            return match w.weight {
                None | Some(0) => {
                    if (v != 0) != w.reverse {
                        Err(())
                    } else {
                        Ok(0)
                    }
                }
                Some(x) => {
                    let s = v
                        .saturating_mul(i64::from(x))
                        .saturating_mul(mult)
                        .clamp(-254, 253);
                    if s == -254 {
                        Err(())
                    } else {
                        Ok(s as i32)
                    }
                }
            };
        }
    };
    let mult = mult as i32;
    match w.weight {
        None | Some(0) => {
            if ok != w.reverse {
                Ok(0)
            } else {
                Err(())
            }
        }
        Some(x) if x > 0 => Ok(if ok { x * mult } else { 0 }),
        Some(x) => Ok(if ok { 0 } else { x * mult }),
    }
}

/// Effective priority and fault from the base priority and every tracked item. The
/// address owner (255) is not moved by weights; others stay within 1..=254.
pub fn effective(base: u8, items: impl IntoIterator<Item = (Weight, Reading)>) -> (u8, bool) {
    let mut sum: i32 = 0;
    let mut fault = false;
    for (w, reading) in items {
        match contribution(w, reading) {
            Ok(x) => sum += x,
            Err(()) => fault = true,
        }
    }
    if base == 255 {
        return (255, fault);
    }
    let p = (i32::from(base) + sum).clamp(1, 254);
    (p as u8, fault)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_success_or_failure_decides_at_start() {
        let mut h = ScriptHealth::new(2, 2, false);
        assert!(!h.known());
        assert_eq!(h.record(true), Some(true));
        let mut h = ScriptHealth::new(2, 2, false);
        assert_eq!(h.record(false), Some(false));
    }

    #[test]
    fn fall_and_rise_counts() {
        let mut h = ScriptHealth::new(3, 2, false);
        assert_eq!(h.record(true), Some(true));
        assert_eq!(h.record(false), None, "one failure of fall 2");
        assert_eq!(h.record(false), Some(false), "second failure");
        assert_eq!(h.record(true), None);
        assert_eq!(h.record(true), None);
        assert_eq!(h.record(true), Some(true), "third success of rise 3");
        assert!(h.good());
    }

    #[test]
    fn init_fail_starts_failed() {
        let mut h = ScriptHealth::new(2, 2, true);
        assert!(h.known() && !h.good());
        assert_eq!(h.record(true), None);
        assert_eq!(h.record(true), Some(true));
    }

    fn w(weight: Option<i32>, reverse: bool) -> Weight {
        Weight { weight, reverse }
    }

    /// The ok/failing cases below, as readings.
    fn effective(base: u8, items: impl IntoIterator<Item = (Weight, bool)>) -> (u8, bool) {
        super::effective(base, items.into_iter().map(|(w, ok)| (w, Reading::Good(ok))))
    }

    fn file(base: u8, weight: Option<i32>, reverse: bool, value: i64) -> (u8, bool) {
        super::effective(base, [(w(weight, reverse), Reading::Value(value))])
    }

    #[test]
    fn file_values_as_keepalived() {
        assert_eq!(file(100, None, false, 0), (100, false), "unweighted: 0 is ok");
        assert_eq!(
            file(100, None, false, 7),
            (100, true),
            "unweighted: non-zero is FAULT"
        );
        assert_eq!(file(100, None, true, 0), (100, true), "reverse: 0 is FAULT");
        assert_eq!(file(100, None, true, -3), (100, false));
        assert_eq!(file(100, Some(1), false, 20), (120, false), "value * weight");
        assert_eq!(file(100, Some(-10), false, 3), (70, false));
        assert_eq!(file(100, Some(10), true, 3), (70, false), "reverse negates");
        assert_eq!(
            file(100, Some(1), false, 500),
            (254, false),
            "253 at most, within 1..254"
        );
        assert_eq!(file(100, Some(1), false, -254), (100, true), "-254 is FAULT");
        assert_eq!(file(100, Some(2), false, -200), (100, true), "below -254 too");
        assert_eq!(file(100, Some(1), false, -253), (1, false));
        assert_eq!(file(100, Some(254), false, i64::MAX), (254, false), "no overflow");
    }

    #[test]
    fn keepalived_weight_semantics() {
        assert_eq!(effective(100, [(w(Some(20), false), true)]), (120, false));
        assert_eq!(effective(100, [(w(Some(20), false), false)]), (100, false));
        assert_eq!(effective(100, [(w(Some(-30), false), false)]), (70, false));
        assert_eq!(effective(100, [(w(Some(-30), false), true)]), (100, false));
        assert_eq!(effective(100, [(w(None, false), false)]), (100, true));
        assert_eq!(
            effective(100, [(w(Some(20), true), true)]),
            (80, false),
            "reverse: subtract while ok"
        );
        assert_eq!(
            effective(100, [(w(Some(-20), true), false)]),
            (120, false),
            "reverse: add while failing"
        );
        assert_eq!(effective(100, [(w(Some(-20), true), true)]), (100, false));
        assert_eq!(
            effective(100, [(w(None, true), true)]),
            (100, true),
            "reverse, no weight: FAULT while ok"
        );
        assert_eq!(effective(250, [(w(Some(50), false), true)]), (254, false));
        assert_eq!(effective(10, [(w(Some(-50), false), false)]), (1, false));
        assert_eq!(effective(255, [(w(Some(-50), false), false)]), (255, false));
    }
}

//! `vrrp_track_process`, as keepalived 2.2.7 counts: which processes match (name or
//! command line, parameters), how the count follows fork, exec, rename and exit, and
//! whether the count is within quorum, with the fork and terminate delays. Pure: the
//! caller reads /proc and the clock.

use ha_config::model::{ParamMatch, TrackProcess};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// What /proc says of one process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcInfo {
    /// `comm` (at most 15 bytes).
    pub comm: String,
    /// `cmdline`: the arguments, each ended by a NUL.
    pub cmdline: Vec<u8>,
}

/// What one tracked process definition matches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Matcher {
    name: Vec<u8>,
    full_command: bool,
    params: Vec<u8>,
    param_match: ParamMatch,
}

impl Matcher {
    pub fn new(def: &TrackProcess) -> Self {
        let mut params = Vec::new();
        for p in &def.params {
            params.extend_from_slice(p.as_bytes());
            params.push(0);
        }
        Matcher {
            name: def.process.as_bytes().to_vec(),
            full_command: def.full_command,
            params,
            param_match: def.param_match,
        }
    }

    /// Whether it needs the command line (`full_command`).
    pub fn needs_cmdline(&self) -> bool {
        self.full_command
    }

    /// Whether a rename to `comm` is decided by the name alone (not with `full_command`).
    pub fn uses_comm(&self) -> bool {
        !self.full_command
    }

    pub fn matches(&self, p: &ProcInfo) -> bool {
        let name_end = p.cmdline.iter().position(|b| *b == 0).unwrap_or(p.cmdline.len());
        let name: &[u8] = if self.full_command {
            &p.cmdline[..name_end]
        } else {
            p.comm.as_bytes()
        };
        if name != self.name.as_slice() {
            return false;
        }
        if self.param_match == ParamMatch::None {
            return true;
        }
        let given = p.cmdline.get(name_end + 1..).unwrap_or(&[]);
        self.params_match(given)
    }

    fn params_match(&self, given: &[u8]) -> bool {
        let want = self.params.as_slice();
        match self.param_match {
            ParamMatch::None => true,
            ParamMatch::Exact => given == want,
            ParamMatch::Partial => given.starts_with(want),
            // The last parameter given may be the start of the process's.
            ParamMatch::Initial => want.len() <= 1 || given.starts_with(&want[..want.len() - 1]),
        }
    }
}

/// How the count changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    None,
    /// Up by a fork of a counted process (`fork_delay` applies).
    Forked,
    /// Down by a counted process's exit (`terminate_delay` applies).
    Exited,
    /// Any other change (exec, rename, rescan): no delay.
    Other,
}

/// The processes that match one definition, by pid.
#[derive(Clone, Debug)]
pub struct ProcessSet {
    matcher: Matcher,
    pids: BTreeSet<u32>,
}

impl ProcessSet {
    pub fn new(matcher: Matcher) -> Self {
        ProcessSet {
            matcher,
            pids: BTreeSet::new(),
        }
    }

    pub fn count(&self) -> u32 {
        self.pids.len() as u32
    }

    pub fn matcher(&self) -> &Matcher {
        &self.matcher
    }

    /// Replaces the set with what a scan of /proc found.
    pub fn rescan(&mut self, procs: impl IntoIterator<Item = (u32, ProcInfo)>) -> Change {
        let now: BTreeSet<u32> = procs
            .into_iter()
            .filter(|(_, p)| self.matcher.matches(p))
            .map(|(pid, _)| pid)
            .collect();
        let changed = now != self.pids;
        self.pids = now;
        if changed {
            Change::Other
        } else {
            Change::None
        }
    }

    /// A process exec'd (`info`: what it runs now; None if it is already gone).
    pub fn exec(&mut self, pid: u32, info: Option<&ProcInfo>) -> Change {
        self.set(pid, info.is_some_and(|i| self.matcher.matches(i)))
    }

    /// A process renamed itself. Only decides for matchers on `comm`.
    pub fn comm(&mut self, pid: u32, comm: &str) -> Change {
        if !self.matcher.uses_comm() {
            return Change::None;
        }
        let info = ProcInfo {
            comm: comm.to_string(),
            cmdline: Vec::new(),
        };
        // A parameter match needs the command line: a rename only removes.
        let matches = self.matcher.param_match == ParamMatch::None && self.matcher.matches(&info);
        if matches {
            self.set(pid, true)
        } else if info.comm.as_bytes() != self.matcher.name.as_slice() {
            self.set(pid, false)
        } else {
            Change::None
        }
    }

    /// A new process: counted when its parent is (it runs the same program).
    pub fn fork(&mut self, parent: u32, child: u32) -> Change {
        if self.pids.contains(&parent) && self.pids.insert(child) {
            Change::Forked
        } else {
            Change::None
        }
    }

    pub fn exit(&mut self, pid: u32) -> Change {
        match self.set(pid, false) {
            Change::Other => Change::Exited,
            c => c,
        }
    }

    fn set(&mut self, pid: u32, present: bool) -> Change {
        let changed = if present {
            self.pids.insert(pid)
        } else {
            self.pids.remove(&pid)
        };
        if changed {
            Change::Other
        } else {
            Change::None
        }
    }
}

/// Whether the count is within `quorum..=quorum_max`, as keepalived 2.2.7 decides it: only
/// a change that crosses a bound counts; one by a fork waits `fork_delay`, one by an exit
/// `terminate_delay` (an exit while a fork's delay runs cancels it, and the other way
/// round, the verdict staying as it was); one by exec, rename or a rescan counts at once
/// (cancelling a pending exit's delay). When a delay runs out, the verdict is the count's
/// then.
#[derive(Clone, Debug)]
pub struct Quorum {
    quorum: u32,
    quorum_max: u32,
    fork_delay: Duration,
    terminate_delay: Duration,
    up: Option<bool>,
    count: u32,
    /// The pending delay: when it runs out, and whether a fork (true) or an exit started it.
    pending: Option<(Instant, bool)>,
}

impl Quorum {
    pub fn new(def: &TrackProcess) -> Self {
        Quorum {
            quorum: def.quorum,
            quorum_max: def.quorum_max,
            fork_delay: def.fork_delay.as_std(),
            terminate_delay: def.terminate_delay.as_std(),
            up: None,
            count: 0,
            pending: None,
        }
    }

    fn within(&self, count: u32) -> bool {
        count >= self.quorum && count <= self.quorum_max
    }

    /// The verdict told so far (None before the first count).
    pub fn up(&self) -> Option<bool> {
        self.up
    }

    /// When [`Quorum::on_timer`] is due.
    pub fn deadline(&self) -> Option<Instant> {
        self.pending.map(|(at, _)| at)
    }

    fn tell(&mut self, want: bool) -> Option<bool> {
        (self.up != Some(want)).then(|| {
            self.up = Some(want);
            want
        })
    }

    /// The count is now `count` (after `change`). Returns the verdict when it changes now.
    pub fn on_count(&mut self, now: Instant, count: u32, change: Change) -> Option<bool> {
        let before = self.count;
        self.count = count;
        if self.up.is_none() {
            // The first count (the scan at start) decides at once.
            return self.tell(self.within(count));
        }
        if self.within(before) == self.within(count) {
            return None;
        }
        match change {
            Change::None => None,
            Change::Forked | Change::Exited => {
                let by_fork = change == Change::Forked;
                match self.pending {
                    // The opposite event's delay runs: cancelled, the verdict unchanged.
                    Some((_, fork)) if fork != by_fork => {
                        self.pending = None;
                        None
                    }
                    Some(_) => None,
                    None => {
                        let delay = if by_fork {
                            self.fork_delay
                        } else {
                            self.terminate_delay
                        };
                        if delay.is_zero() {
                            self.tell(self.within(count))
                        } else {
                            self.pending = Some((now + delay, by_fork));
                            None
                        }
                    }
                }
            }
            Change::Other => {
                if self.pending.is_some_and(|(_, fork)| !fork) {
                    self.pending = None;
                }
                self.tell(self.within(count))
            }
        }
    }

    /// The delay ran out: the verdict on the count now, if it changed.
    pub fn on_timer(&mut self, now: Instant) -> Option<bool> {
        match self.pending {
            Some((at, _)) if at <= now => {
                self.pending = None;
                self.tell(self.within(self.count))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ha_config::model::Dur;

    fn info(comm: &str, cmdline: &[&str]) -> ProcInfo {
        let mut c = Vec::new();
        for a in cmdline {
            c.extend_from_slice(a.as_bytes());
            c.push(0);
        }
        ProcInfo {
            comm: comm.into(),
            cmdline: c,
        }
    }

    fn def(process: &str, params: &[&str], m: ParamMatch) -> TrackProcess {
        let mut d = TrackProcess::new("t");
        d.process = process.into();
        d.params = params.iter().map(|s| s.to_string()).collect();
        d.param_match = m;
        d.full_command = !params.is_empty() || m != ParamMatch::None;
        d
    }

    #[test]
    fn names_and_parameters_match_as_keepalived() {
        let nginx = info("nginx", &["nginx: master process /usr/sbin/nginx"]);
        assert!(
            Matcher::new(&def("nginx", &[], ParamMatch::None)).matches(&nginx),
            "by comm"
        );
        let mut full = def("/usr/bin/python3", &[], ParamMatch::None);
        full.full_command = true;
        let py = info("python3", &["/usr/bin/python3", "agent.py", "--serve"]);
        assert!(Matcher::new(&full).matches(&py), "full_command: the first word");
        assert!(!Matcher::new(&def("python3", &["agent.py"], ParamMatch::Exact)).matches(&py));
        let exact = Matcher::new(&def(
            "/usr/bin/python3",
            &["agent.py", "--serve"],
            ParamMatch::Exact,
        ));
        assert!(exact.matches(&py));
        assert!(!exact.matches(&info(
            "python3",
            &["/usr/bin/python3", "agent.py", "--serve", "-v"]
        )));
        let partial = Matcher::new(&def("/usr/bin/python3", &["agent.py"], ParamMatch::Partial));
        assert!(partial.matches(&py), "starts with the given parameters");
        assert!(
            !partial.matches(&info("python3", &["/usr/bin/python3", "agent.pyc"])),
            "whole words"
        );
        let initial = Matcher::new(&def(
            "/usr/bin/python3",
            &["agent.py", "--se"],
            ParamMatch::Initial,
        ));
        assert!(initial.matches(&py), "the last one may be a prefix");
        let none = Matcher::new(&def("/usr/bin/python3", &[], ParamMatch::Exact));
        assert!(!none.matches(&py), "exact with no parameters: none allowed");
        assert!(none.matches(&info("python3", &["/usr/bin/python3"])));
    }

    #[test]
    fn the_set_follows_fork_exec_rename_and_exit() {
        let mut s = ProcessSet::new(Matcher::new(&def("hatrackd", &[], ParamMatch::None)));
        let d = info("hatrackd", &["hatrackd"]);
        assert_eq!(
            s.rescan([(10, d.clone()), (11, info("bash", &["bash"]))]),
            Change::Other
        );
        assert_eq!(s.count(), 1);
        assert_eq!(
            s.fork(10, 12),
            Change::Forked,
            "a child of a counted process counts"
        );
        assert_eq!(s.fork(11, 13), Change::None);
        assert_eq!(
            s.exec(12, Some(&info("sh", &["sh"]))),
            Change::Other,
            "exec'd something else"
        );
        assert_eq!(s.count(), 1);
        assert_eq!(s.exec(14, Some(&d)), Change::Other);
        assert_eq!(s.exec(14, Some(&d)), Change::None);
        assert_eq!(s.comm(14, "renamed"), Change::Other);
        assert_eq!(s.comm(15, "hatrackd"), Change::Other, "renamed into the name");
        assert_eq!(s.exit(10), Change::Exited);
        assert_eq!(s.exit(99), Change::None);
        assert_eq!(s.count(), 1);
        assert_eq!(s.exec(16, None), Change::None, "gone before /proc was read");
    }

    #[test]
    fn quorum_with_delays_as_keepalived() {
        let mut d = def("x", &[], ParamMatch::None);
        d.quorum = 2;
        d.quorum_max = 3;
        d.fork_delay = Dur::from_secs(1);
        d.terminate_delay = Dur::from_secs(2);
        let mut q = Quorum::new(&d);
        let t0 = Instant::now();
        let s = |n| t0 + Duration::from_secs(n);
        assert_eq!(
            q.on_count(t0, 1, Change::Other),
            Some(false),
            "first count decides"
        );
        assert_eq!(q.on_count(t0, 2, Change::Other), Some(true), "exec: no delay");
        assert_eq!(q.on_count(t0, 3, Change::Forked), None, "no bound crossed");
        assert_eq!(
            q.on_count(t0, 4, Change::Forked),
            None,
            "above quorum_max by a fork: fork delay"
        );
        assert_eq!(q.deadline(), Some(s(1)));
        assert_eq!(
            q.on_count(t0, 3, Change::Exited),
            None,
            "back by an exit: the fork's delay cancelled"
        );
        assert_eq!((q.deadline(), q.up()), (None, Some(true)));
        assert_eq!(q.on_count(t0, 2, Change::Exited), None, "no bound crossed");
        assert_eq!(
            q.on_count(t0, 1, Change::Exited),
            None,
            "below quorum by an exit: terminate delay"
        );
        assert_eq!(q.on_timer(s(1)), None, "not yet");
        assert_eq!(q.on_timer(s(2)), Some(false));
        // Found again while the fork's delay runs, then a churn of exits and forks that
        // crosses nothing: the delay stands (the review's case).
        assert_eq!(q.on_count(s(2), 2, Change::Forked), None);
        assert_eq!(q.on_count(s(2), 3, Change::Forked), None);
        assert_eq!(
            q.on_count(s(2), 2, Change::Exited),
            None,
            "crosses nothing: still waiting"
        );
        assert_eq!(q.deadline(), Some(s(3)));
        assert_eq!(q.on_timer(s(3)), Some(true));
        // An exec crossing cancels an exit's delay and counts at once.
        assert_eq!(q.on_count(s(3), 1, Change::Exited), None);
        assert_eq!(
            q.on_count(s(3), 2, Change::Other),
            None,
            "still up: nothing to tell"
        );
        assert_eq!((q.deadline(), q.up()), (None, Some(true)));

        let mut none = Quorum::new(&TrackProcess {
            quorum: 0,
            quorum_max: 0,
            ..def("x", &[], ParamMatch::None)
        });
        assert_eq!(
            none.on_count(t0, 0, Change::Other),
            Some(true),
            "quorum_max 0: up while none runs"
        );
        assert_eq!(none.on_count(t0, 1, Change::Other), Some(false));
    }
}

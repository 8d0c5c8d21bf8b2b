//! Replay: one director's state at a past moment (desired table, real-server verdicts,
//! VRRP states, data-plane version, fence), rebuilt from the committed config history and
//! that director's runtime events alone. Pure: the caller hands in history entries and
//! events; the fold runs the check hub's own [`HealthState`], so a replayed table is
//! computed by the same code the live one was.
//!
//! The moments: `Time(ms)` folds every event stamped at or before it; `Version(v)` folds
//! up to the first error-free sync of version v's table after the director applied v (or
//! up to its apply when no sync of it followed before the next version).

use ::actors::check::actor::CheckerId;
use ::actors::check::runner::checker_ids;
use ::actors::check::schedule::Health;
use ::actors::check::state::{HealthSnapshot, HealthState, Services};
use ha_config::api::{
    Checkpoint, CheckpointVerdict, EventDetail, EventItem, RealServerInfo, ReplayInstance, ReplayResponse,
    ServiceInfo,
};
use ha_config::keyed::KeyedCluster;
use ha_config::model::Config;
use raft_store::events::ConfigEvent;
use raft_store::state::HistoryEntry;
use std::cell::OnceCell;
use std::collections::{BTreeMap, BTreeSet};

/// A moment to replay to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Moment {
    /// Unix milliseconds.
    Time(u64),
    /// A committed config version.
    Version(u64),
}

impl std::fmt::Display for Moment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Moment::Time(t) => write!(f, "time {t}"),
            Moment::Version(v) => write!(f, "version {v}"),
        }
    }
}

/// Why a moment cannot be replayed.
#[derive(Debug, PartialEq, Eq)]
pub enum ReplayError {
    /// No such version was committed.
    NoSuchVersion { version: u64, latest: u64 },
    /// The version was committed but this director's actors never ran it (it was down,
    /// or a newer version arrived first).
    NeverApplied { version: u64, node: String },
    /// The moment lies before the oldest runtime event retention kept.
    Dropped { first_kept_ms: u64 },
}

impl std::fmt::Display for ReplayError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReplayError::NoSuchVersion { version, latest } => {
                write!(
                    f,
                    "version {version} was never committed (the latest is {latest})"
                )
            }
            ReplayError::NeverApplied { version, node } => write!(
                f,
                "{node} never ran version {version}: it was down or a newer version reached it first"
            ),
            ReplayError::Dropped { first_kept_ms } => write!(
                f,
                "the runtime events before {first_kept_ms} (Unix ms) were dropped by retention; \
                 replay a later moment"
            ),
        }
    }
}

/// One committed configuration as one director sees it (its `@node` view). What the fold
/// needs of it is built the first time a version is applied, once.
struct Committed<'h> {
    at_ms: u64,
    hash: &'h str,
    /// The whole configuration at this version (a copy costs O(1)); this director's view
    /// of it is built when the version is first needed.
    config: KeyedCluster,
    node: &'h str,
    view: OnceCell<Config>,
    prepared: OnceCell<Prepared>,
}

/// A committed view as the check hub's state takes it.
struct Prepared {
    services: Services,
    ids: BTreeMap<CheckerId, Health>,
}

impl Committed<'_> {
    fn view(&self) -> &Config {
        self.view.get_or_init(|| self.config.view(self.node))
    }

    fn prepared(&self) -> &Prepared {
        self.prepared.get_or_init(|| Prepared {
            services: self
                .view()
                .virtual_servers
                .iter()
                .map(|v| std::sync::Arc::new((v.key.to_string(), v.clone())))
                .collect::<Vec<_>>()
                .into(),
            ids: checker_ids(self.view()),
        })
    }
}

/// The committed configurations by version, for one director (borrowed from the history).
pub struct Configs<'h> {
    by_version: BTreeMap<u64, Committed<'h>>,
    history_len: u64,
}

impl<'h> Configs<'h> {
    /// From the committed history (membership entries are skipped; they change no view).
    pub fn from_history(node: &'h str, entries: &'h [HistoryEntry]) -> Configs<'h> {
        let mut by_version = BTreeMap::new();
        let mut config = KeyedCluster::default();
        for h in entries {
            if let ConfigEvent::ConfigProposed(p) = &h.event {
                config.apply(&p.delta);
                by_version.insert(
                    h.version,
                    Committed {
                        at_ms: h.at_ms,
                        hash: &p.hash,
                        config: config.clone(),
                        node,
                        view: OnceCell::new(),
                        prepared: OnceCell::new(),
                    },
                );
            }
        }
        Configs {
            by_version,
            history_len: entries.len() as u64,
        }
    }

    pub fn latest(&self) -> u64 {
        self.by_version.keys().next_back().copied().unwrap_or(0)
    }

    /// The latest version committed at or before `t`.
    fn committed_at(&self, t: u64) -> u64 {
        self.by_version
            .iter()
            .filter(|(_, c)| c.at_ms <= t)
            .map(|(v, _)| *v)
            .next_back()
            .unwrap_or(0)
    }
}

/// The fold: the state a director's runtime events build up, event by event.
pub struct Replayer<'a> {
    configs: &'a Configs<'a>,
    health: HealthState,
    applied: Option<u64>,
    unstarted: Vec<(String, String, String)>,
    instances: BTreeMap<String, ReplayInstance>,
    dataplane_version: Option<u64>,
    fence: Option<String>,
    dropped: u64,
    folded: u64,
    undetailed: u64,
    missing: BTreeSet<u64>,
    last_at: u64,
    /// Reused for each check event's id (no allocation per event).
    scratch: CheckerId,
    /// Virtual servers whose verdicts changed since their outcome was last computed
    /// (only those whose outcome does not depend on its previous one; see
    /// [`HealthState::depends_on_history`]).
    stale: Vec<bool>,
}

fn id_of(vs: &str, rs: &str, checker: &str) -> CheckerId {
    CheckerId {
        vs: vs.into(),
        rs: rs.into(),
        checker: checker.into(),
    }
}

fn health(up: bool) -> Health {
    if up {
        Health::Up
    } else {
        Health::Down
    }
}

impl<'a> Replayer<'a> {
    pub fn new(configs: &'a Configs<'a>) -> Self {
        Replayer {
            configs,
            health: HealthState::default(),
            applied: None,
            unstarted: Vec::new(),
            instances: BTreeMap::new(),
            dataplane_version: None,
            fence: None,
            dropped: 0,
            folded: 0,
            undetailed: 0,
            missing: BTreeSet::new(),
            last_at: 0,
            scratch: id_of("", "", ""),
            stale: Vec::new(),
        }
    }

    /// Brings every stale virtual server's outcome up to date.
    fn settle(&mut self) {
        for i in 0..self.stale.len() {
            if std::mem::take(&mut self.stale[i]) {
                self.health.recompute(i);
            }
        }
    }

    /// Folds one event.
    pub fn apply(&mut self, e: &EventItem) {
        self.folded += 1;
        self.last_at = self.last_at.max(e.at_ms);
        let Some(d) = &e.detail else {
            // Peer liveness and refusals change nothing replay shows; a state change
            // recorded without its content (an older journal) leaves a gap.
            let state_change = match e.kind.as_str() {
                "check" | "sync" | "fence" | "apply" => true,
                "vrrp" => e.summary.contains(" -> "),
                _ => false,
            };
            if state_change {
                self.undetailed += 1;
            }
            return;
        };
        match d {
            EventDetail::Applied { version, unstarted } => self.applied(*version, unstarted),
            EventDetail::Check {
                vs,
                rs,
                checker,
                up,
                weight,
                reason,
            } => {
                for (to, from) in [
                    (&mut self.scratch.vs, vs),
                    (&mut self.scratch.rs, rs),
                    (&mut self.scratch.checker, checker),
                ] {
                    // Ids are shared strings: a new one only when it differs.
                    if **to != **from {
                        *to = from.as_str().into();
                    }
                }
                if let Some(i) = self.health.record(&self.scratch, health(*up), *weight, reason) {
                    if self.health.depends_on_history(i) {
                        self.health.recompute(i);
                    } else {
                        if self.stale.len() <= i {
                            self.stale.resize(i + 1, false);
                        }
                        self.stale[i] = true;
                    }
                }
            }
            EventDetail::VrrpState {
                instance,
                to,
                priority,
                reason,
                ..
            } => {
                self.instances.insert(
                    instance.clone(),
                    ReplayInstance {
                        name: instance.clone(),
                        state: to.clone(),
                        priority: *priority,
                        since_ms: e.at_ms,
                        reason: reason.clone(),
                    },
                );
            }
            EventDetail::VrrpPriority { instance, to, .. } => {
                if let Some(i) = self.instances.get_mut(instance) {
                    i.priority = *to;
                }
            }
            EventDetail::VrrpReconfigured { stopped, started, .. } => {
                for s in stopped {
                    self.instances.remove(s);
                }
                for s in started {
                    // Its first transition may be recorded before or after this event.
                    self.instances.entry(s.clone()).or_insert_with(|| ReplayInstance {
                        name: s.clone(),
                        state: "INIT".into(),
                        priority: 0,
                        since_ms: e.at_ms,
                        reason: "started".into(),
                    });
                }
            }
            EventDetail::Sync { version, errors, .. } => {
                if *errors == 0 && version.is_some() {
                    self.dataplane_version = *version;
                }
            }
            EventDetail::Fence { state, .. } => self.fence = Some(state.clone()),
            EventDetail::Checkpoint(c) => self.restore(c),
        }
    }

    fn applied(&mut self, version: u64, unstarted: &[(String, String, String)]) {
        // A reconfiguration recomputes from each outcome's previous quorum state.
        self.settle();
        self.applied = Some(version);
        self.unstarted = unstarted.to_vec();
        let Some(c) = self.configs.by_version.get(&version) else {
            self.missing.insert(version);
            return;
        };
        let p = c.prepared();
        let ids = if unstarted.is_empty() {
            std::borrow::Cow::Borrowed(&p.ids)
        } else {
            let mut ids = p.ids.clone();
            for (vs, rs, checker) in unstarted {
                ids.remove(&id_of(vs, rs, checker));
            }
            std::borrow::Cow::Owned(ids)
        };
        self.health
            .reconfigure(&p.services, c.view().vs_groups.clone(), version, &ids);
    }

    fn restore(&mut self, c: &Checkpoint) {
        self.stale.clear();
        self.dropped = c.dropped;
        self.applied = c.applied;
        self.unstarted = c.unstarted.clone();
        self.instances = c.instances.iter().map(|i| (i.name.clone(), i.clone())).collect();
        self.dataplane_version = c.dataplane_version;
        self.fence = c.fence.clone();
        let snap = HealthSnapshot {
            verdicts: c
                .verdicts
                .iter()
                .map(|v| {
                    (
                        id_of(&v.vs, &v.rs, &v.checker),
                        health(v.up),
                        v.weight,
                        v.reason.clone(),
                    )
                })
                .collect(),
            quorum: c.quorum.iter().cloned().collect(),
        };
        self.health = match c
            .applied
            .and_then(|v| self.configs.by_version.get(&v).map(|k| (v, k)))
        {
            Some((v, k)) => HealthState::restore(&k.prepared().services, k.view().vs_groups.clone(), v, snap),
            None => {
                if let Some(v) = c.applied {
                    self.missing.insert(v);
                }
                HealthState::default()
            }
        };
    }

    /// What the events folded so far built up, to stand in for them (retention).
    pub fn checkpoint(&mut self) -> Checkpoint {
        self.settle();
        let snap = self.health.snapshot();
        Checkpoint {
            dropped: self.dropped,
            applied: self.applied,
            unstarted: self.unstarted.clone(),
            verdicts: snap
                .verdicts
                .into_iter()
                .map(|(id, h, weight, reason)| CheckpointVerdict {
                    vs: id.vs.to_string(),
                    rs: id.rs.to_string(),
                    checker: id.checker.to_string(),
                    up: h == Health::Up,
                    weight,
                    reason,
                })
                .collect(),
            quorum: snap.quorum.into_iter().collect(),
            instances: self.instances.values().cloned().collect(),
            dataplane_version: self.dataplane_version,
            fence: self.fence.clone(),
        }
    }

    /// The replayed state, as `GET /v1/replay` answers it.
    pub fn finish(&mut self, node: &str, moment: Moment, at_ms: u64) -> ReplayResponse {
        self.settle();
        let table = self.health.table();
        let mut warnings = Vec::new();
        if self.undetailed > 0 {
            warnings.push(format!(
                "{} runtime event(s) were recorded without their content (an older hanode): \
                 the state they changed may be missing",
                self.undetailed
            ));
        }
        for v in &self.missing {
            warnings.push(format!("version {v} is not in the committed history"));
        }
        if self.dropped > 0 {
            warnings.push(format!(
                "{} older runtime event(s) were dropped by retention; a checkpoint stands in for them",
                self.dropped
            ));
        }
        let config = self.applied.and_then(|v| self.configs.by_version.get(&v));
        ReplayResponse {
            node: node.to_string(),
            moment: moment.to_string(),
            at_ms,
            committed_version: self.configs.committed_at(at_ms),
            config_version: self.applied,
            config_hash: config.map(|c| c.hash.to_string()),
            dataplane_version: self.dataplane_version,
            fence: self.fence.clone(),
            instances: self.instances.values().cloned().collect(),
            services: services_info(self.health.real_servers()),
            desired: ::actors::lb::print::ipvsadm_ln(&table),
            desired_json: table_json(&table),
            events_folded: self.folded,
            history_folded: self.configs.history_len,
            warnings,
        }
    }
}

/// The check hub's view of the real servers, as status shows it.
pub fn services_info(s: Vec<::actors::check::state::ServiceHealth>) -> Vec<ServiceInfo> {
    s.into_iter()
        .map(|s| ServiceInfo {
            name: s.vs,
            quorum_up: s.quorum_up,
            real_servers: s
                .real_servers
                .into_iter()
                .map(|(name, up, reason)| RealServerInfo { name, up, reason })
                .collect(),
        })
        .collect()
}

/// A table as `GET /v1/table` shows it in JSON: its services with their destinations.
pub fn table_json(t: &::actors::lb::model::Table) -> serde_json::Value {
    serde_json::to_value(t.iter().collect::<Vec<_>>()).unwrap_or_default()
}

fn is_sync_of(e: &EventItem, v: u64) -> bool {
    matches!(&e.detail, Some(EventDetail::Sync { version: Some(s), errors: 0, .. }) if *s == v)
}

fn applied_version(e: &EventItem) -> Option<u64> {
    match &e.detail {
        Some(EventDetail::Applied { version, .. }) => Some(*version),
        _ => None,
    }
}

/// Replays `node`'s events (in sequence order) to `moment`.
pub fn replay<E, B: std::borrow::Borrow<EventItem>>(
    node: &str,
    configs: &Configs,
    events: impl IntoIterator<Item = Result<B, E>>,
    moment: Moment,
) -> Result<Result<ReplayResponse, ReplayError>, E> {
    let mut r = Replayer::new(configs);
    let mut first = true;
    match moment {
        Moment::Time(t) => {
            for e in events {
                let e = e?;
                let e = e.borrow();
                if e.at_ms > t {
                    if first && matches!(e.detail, Some(EventDetail::Checkpoint(_))) {
                        return Ok(Err(ReplayError::Dropped {
                            first_kept_ms: e.at_ms,
                        }));
                    }
                    break;
                }
                first = false;
                r.apply(e);
            }
            Ok(Ok(r.finish(node, moment, t)))
        }
        Moment::Version(v) => {
            if !configs.by_version.contains_key(&v) {
                return Ok(Err(ReplayError::NoSuchVersion {
                    version: v,
                    latest: configs.latest(),
                }));
            }
            let mut seen = false;
            for e in events {
                let e = e?;
                let e = e.borrow();
                if first {
                    if let Some(EventDetail::Checkpoint(c)) = &e.detail {
                        if c.applied.is_some_and(|a| a > v) {
                            return Ok(Err(ReplayError::Dropped {
                                first_kept_ms: e.at_ms,
                            }));
                        }
                    }
                }
                first = false;
                let applied = applied_version(e);
                if seen && applied.is_some_and(|a| a != v) {
                    break;
                }
                r.apply(e);
                let restored_at_v =
                    matches!(&e.detail, Some(EventDetail::Checkpoint(c)) if c.applied == Some(v));
                if applied == Some(v) || (restored_at_v && !seen) {
                    seen = true;
                } else if seen && is_sync_of(e, v) {
                    break;
                }
            }
            if !seen {
                return Ok(Err(ReplayError::NeverApplied {
                    version: v,
                    node: node.to_string(),
                }));
            }
            let at = r.last_at;
            Ok(Ok(r.finish(node, moment, at)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft_store::events::Proposal;
    use std::convert::Infallible;

    const SEED: &str = "vrrp_instance VI_1 {\n interface ens33\n virtual_router_id 51\n @lvs01 priority 100\n @lvs02 priority 90\n virtual_ipaddress {\n  198.18.116.134\n }\n}\nvirtual_server 198.18.116.134 80 {\n lb_kind DR\n real_server 198.18.116.131 80 {\n  TCP_CHECK {\n  }\n }\n real_server 198.18.116.132 80 {\n  TCP_CHECK {\n  }\n }\n}\n";

    fn entry(version: u64, at_ms: u64, text: &str) -> HistoryEntry {
        let (_, l) = ha_config::cluster::load_str("cluster.conf", text, &[]);
        assert!(!l.diags.has_errors(), "{:?}", l.diags);
        HistoryEntry {
            seq: version,
            version,
            log_index: version,
            at_ms,
            accepted_by: "lvs01".into(),
            event: ConfigEvent::ConfigProposed(Box::new(Proposal::new(
                l.cluster, "ops", "test", at_ms, None,
            ))),
            summary: String::new(),
            prev_hash: String::new(),
            hash: String::new(),
        }
    }

    fn ev(seq: u64, at_ms: u64, detail: EventDetail) -> Result<EventItem, Infallible> {
        Ok(EventItem {
            seq,
            at_ms,
            node: "lvs01".into(),
            kind: "x".into(),
            subject: String::new(),
            summary: String::new(),
            detail: Some(detail),
        })
    }

    fn check(rs: &str, up: bool, reason: &str) -> EventDetail {
        EventDetail::Check {
            vs: "198.18.116.134:80".into(),
            rs: rs.into(),
            checker: "TCP_CHECK#0".into(),
            up,
            weight: None,
            reason: reason.into(),
        }
    }

    fn vrrp(to: &str, priority: u8) -> EventDetail {
        EventDetail::VrrpState {
            instance: "VI_1".into(),
            from: "?".into(),
            to: to.into(),
            priority,
            reason: "test".into(),
        }
    }

    fn sync(v: u64) -> EventDetail {
        EventDetail::Sync {
            version: Some(v),
            ops: 3,
            errors: 0,
            repaired: 0,
        }
    }

    fn applied(v: u64) -> EventDetail {
        EventDetail::Applied {
            version: v,
            unstarted: Vec::new(),
        }
    }

    /// v1: the seed; v2 removes rs01.
    fn configs() -> Configs<'static> {
        let v2 = SEED.replace(" real_server 198.18.116.131 80 {\n  TCP_CHECK {\n  }\n }\n", "");
        let history = vec![entry(1, 1000, SEED), entry(2, 5000, &v2)];
        Configs::from_history("lvs01", Vec::leak(history))
    }

    fn journal() -> Vec<Result<EventItem, Infallible>> {
        vec![
            ev(1, 1100, applied(1)),
            ev(2, 1101, vrrp("BACKUP", 100)),
            ev(3, 1200, sync(1)),
            ev(4, 2000, check("198.18.116.131:80", false, "connection refused")),
            ev(5, 2500, vrrp("MASTER", 100)),
            ev(
                6,
                2600,
                EventDetail::VrrpPriority {
                    instance: "VI_1".into(),
                    from: 100,
                    to: 80,
                },
            ),
            ev(7, 3000, check("198.18.116.131:80", true, "connected")),
            ev(8, 5100, applied(2)),
            ev(9, 5150, check("198.18.116.132:80", false, "timeout")),
            ev(10, 5200, sync(2)),
        ]
    }

    fn dests(r: &ReplayResponse) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        for pair in r.desired_json.as_array().into_iter().flatten() {
            out.extend(pair[1]["dests"].as_array().into_iter().flatten().cloned());
        }
        out
    }

    fn at(m: Moment) -> ReplayResponse {
        let c = configs();
        match replay("lvs01", &c, journal(), m) {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => panic!("{e}"),
            Err(e) => match e {},
        }
    }

    #[test]
    fn a_time_shows_the_table_verdicts_and_vrrp_state_of_that_moment() {
        let r = at(Moment::Time(2700));
        assert_eq!(r.config_version, Some(1));
        assert_eq!(r.committed_version, 1);
        assert_eq!(r.dataplane_version, Some(1));
        assert_eq!(dests(&r).len(), 1, "rs01 is down: {}", r.desired);
        assert!(r.desired.contains("198.18.116.132:80"), "{}", r.desired);
        assert!(!r.desired.contains("198.18.116.131:80"), "{}", r.desired);
        let rs01 = &r.services[0].real_servers[0];
        assert_eq!(
            (rs01.up, rs01.reason.as_str()),
            (false, "TCP_CHECK#0: connection refused")
        );
        assert_eq!(r.services[0].real_servers[1].reason, "not checked yet");
        let i = &r.instances[0];
        assert_eq!((i.state.as_str(), i.priority, i.since_ms), ("MASTER", 80, 2500));
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);

        let later = at(Moment::Time(4000));
        assert_eq!(dests(&later).len(), 2, "rs01 is back: {}", later.desired);
        let before = at(Moment::Time(500));
        assert_eq!((before.config_version, before.committed_version), (None, 0));
        assert!(dests(&before).is_empty());
    }

    #[test]
    fn a_version_is_the_moment_its_table_reached_the_kernel() {
        let v1 = at(Moment::Version(1));
        assert_eq!(v1.at_ms, 1200, "its first sync");
        assert_eq!(dests(&v1).len(), 2);
        let v2 = at(Moment::Version(2));
        assert_eq!(v2.at_ms, 5200);
        assert_eq!(v2.config_version, Some(2));
        // rs01 left with v2; rs02 failed before the sync: no destination at all.
        assert!(dests(&v2).is_empty(), "{}", v2.desired);
        assert_eq!(v2.services[0].real_servers.len(), 1);
        let c = configs();
        assert_eq!(
            replay("lvs01", &c, journal(), Moment::Version(3)).ok(),
            Some(Err(ReplayError::NoSuchVersion {
                version: 3,
                latest: 2
            }))
        );
        let without_v2: Vec<_> = journal().into_iter().take(7).collect();
        assert_eq!(
            replay("lvs01", &c, without_v2, Moment::Version(2)).ok(),
            Some(Err(ReplayError::NeverApplied {
                version: 2,
                node: "lvs01".into()
            }))
        );
    }

    #[test]
    fn a_checkpoint_stands_in_for_the_events_before_it() {
        let c = configs();
        let all: Vec<EventItem> = journal()
            .into_iter()
            .map(|e| e.unwrap_or_else(|e| match e {}))
            .collect();
        for cut in 1..all.len() {
            let mut r = Replayer::new(&c);
            for e in &all[..cut] {
                r.apply(e);
            }
            let mut cp = r.checkpoint();
            cp.dropped = cut as u64;
            let mut rest: Vec<Result<EventItem, Infallible>> = vec![ev(
                cut as u64,
                all[cut - 1].at_ms,
                EventDetail::Checkpoint(Box::new(cp)),
            )];
            rest.extend(all[cut..].iter().cloned().map(Ok));
            for t in [all[cut - 1].at_ms, 2700, 4000, 6000] {
                if t < all[cut - 1].at_ms {
                    continue;
                }
                let full = at(Moment::Time(t));
                let Ok(short) = replay("lvs01", &c, rest.clone(), Moment::Time(t));
                let short = short.unwrap_or_else(|e| panic!("cut {cut}, t {t}: {e}"));
                assert_eq!(short.desired_json, full.desired_json, "cut {cut}, t {t}");
                assert_eq!(short.services, full.services, "cut {cut}, t {t}");
                assert_eq!(short.instances, full.instances, "cut {cut}, t {t}");
                assert_eq!(short.dataplane_version, full.dataplane_version);
                assert_eq!(short.config_version, full.config_version);
            }
            let Ok(early) = replay("lvs01", &c, rest.clone(), Moment::Time(10));
            assert_eq!(
                early.err(),
                Some(ReplayError::Dropped {
                    first_kept_ms: all[cut - 1].at_ms
                })
            );
        }
    }

    #[test]
    fn the_fold_gives_the_live_hubs_table_with_and_without_quorum_hysteresis() {
        // 198.18.116.134:80 has quorum with hysteresis (its outcome depends on the path
        // taken, so replay recomputes it on every result); :81 has none (recomputed once
        // before it is read). Both must equal a hub that recomputed after every result.
        let text = "virtual_server 198.18.116.134 80 {\n lb_kind DR\n quorum 3\n hysteresis 1\n sorry_server 198.18.116.150 80\n real_server 198.18.116.131 80 {\n  weight 2\n  TCP_CHECK {\n  }\n }\n real_server 198.18.116.132 80 {\n  weight 2\n  TCP_CHECK {\n  }\n }\n}\nvirtual_server 198.18.116.134 81 {\n lb_kind DR\n real_server 198.18.116.131 81 {\n  TCP_CHECK {\n  }\n }\n real_server 198.18.116.132 81 {\n  TCP_CHECK {\n  }\n }\n}\n";
        let history = [entry(1, 1000, text)];
        let c = Configs::from_history("lvs01", &history);
        let k = &c.by_version[&1];
        let mut live = HealthState::new(
            &k.prepared().services,
            k.view().vs_groups.clone(),
            1,
            &k.prepared().ids,
        );
        let mut events = vec![ev(1, 1001, applied(1))];
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for n in 0..400u64 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let port = if seed.is_multiple_of(3) { 81 } else { 80 };
            let rs = format!("198.18.116.{}:{port}", 131 + (seed >> 8) % 2);
            let up = (seed >> 20).is_multiple_of(2);
            let id = id_of(&format!("198.18.116.134:{port}"), &rs, "TCP_CHECK#0");
            if let Some(i) = live.record(&id, health(up), None, "flap") {
                live.recompute(i);
            }
            let d = EventDetail::Check {
                vs: id.vs.to_string(),
                rs: id.rs.to_string(),
                checker: id.checker.to_string(),
                up,
                weight: None,
                reason: "flap".into(),
            };
            events.push(ev(n + 2, 1002 + n, d));
            let Ok(r) = replay("lvs01", &c, events.clone(), Moment::Time(u64::MAX));
            let r = r.unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(
                r.desired_json,
                table_json(&live.table()),
                "after {} results",
                n + 1
            );
            assert_eq!(
                r.services,
                services_info(live.real_servers()),
                "after {} results",
                n + 1
            );
        }
    }
}

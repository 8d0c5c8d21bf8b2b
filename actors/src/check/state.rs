//! The verdicts of one director's checkers and the desired destinations of each virtual
//! server that follow from them (quorum state included): the check hub's state without
//! its I/O. The hub runs it live; replay rebuilds it from recorded events with the same
//! code, so a replayed table is computed exactly as the live one was.

use super::actor::CheckerId;
use super::hub::rs_name;
use super::schedule::Health;
use super::table::{desired, rs_verdict, RsVerdict, VsOutcome};
use crate::lb::model::{Service, SvcKey, Table};
use ha_config::model::{RealServer, VirtualServer, VirtualServerGroup};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// One virtual server with its display name (shared: replay reconfigures to the same
/// committed version's services many times, and the hub keeps those that did not change).
pub type NamedVs = Arc<(String, Arc<VirtualServer>)>;

/// A configuration's virtual servers by display name, in config order.
pub type Services = Arc<[NamedVs]>;

#[derive(Clone, Debug, Default)]
pub struct HealthState {
    /// Virtual servers by slot (a slot freed by a removal is reused).
    services: Vec<Option<NamedVs>>,
    /// Each slot's real servers' names (`rs_name`), in config order.
    rs_names: Vec<Vec<String>>,
    free: Vec<usize>,
    /// Slot of each virtual server, by display name.
    index: HashMap<String, usize>,
    groups: Vec<VirtualServerGroup>,
    verdicts: BTreeMap<CheckerId, Verdict>,
    tables: BTreeMap<String, VsOutcome>,
    version: u64,
}

/// One checker's verdict, its dynamic weight and the reason of its last result (None:
/// no result yet).
#[derive(Clone, Debug)]
struct Verdict {
    health: Health,
    weight: Option<u32>,
    reason: Option<String>,
}

impl Verdict {
    fn pair(&self) -> (Health, Option<u32>) {
        (self.health, self.weight)
    }
}

/// What one recomputation found.
pub struct Recomputed {
    /// The virtual server's quorum before (None: first computation).
    pub quorum_was: Option<bool>,
    /// Whether the outcome differs from the previous one.
    pub changed: bool,
}

/// What a reconfiguration did.
pub struct Reconfigured {
    /// The virtual servers that left.
    pub gone: Vec<String>,
    /// The recomputation of each virtual server that was (re)configured, by slot.
    pub recomputed: Vec<(usize, Recomputed)>,
}

/// What [`HealthState::snapshot`] keeps: (checker, verdict, weight, last reason) and
/// each virtual server's quorum.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HealthSnapshot {
    pub verdicts: Vec<(CheckerId, Health, Option<u32>, Option<String>)>,
    pub quorum: BTreeMap<String, bool>,
}

/// One virtual server's real servers: alive or not, and their checkers' last reasons.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceHealth {
    pub vs: String,
    pub quorum_up: bool,
    /// (real server, alive, reason)
    pub real_servers: Vec<(String, bool, String)>,
}

impl HealthState {
    /// `initial`: the verdict each checker starts with (up, or down with `alpha`).
    /// `version`: the config version `services` and `groups` come from. Every virtual
    /// server's outcome is computed.
    pub fn new(
        services: &[NamedVs],
        groups: Vec<VirtualServerGroup>,
        version: u64,
        initial: &BTreeMap<CheckerId, Health>,
    ) -> Self {
        let mut s = HealthState::default();
        s.reconfigure(services, groups, version, initial);
        s
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    /// The virtual server in slot `i`.
    pub fn service(&self, i: usize) -> Option<&NamedVs> {
        self.services.get(i).and_then(Option::as_ref)
    }

    /// Every virtual server, in slot order.
    pub fn services(&self) -> impl Iterator<Item = &NamedVs> {
        self.services.iter().flatten()
    }

    pub fn tables(&self) -> &BTreeMap<String, VsOutcome> {
        &self.tables
    }

    /// A new configuration: these services, and the verdict of every checker id that is
    /// new (ids that remain keep theirs; ids that left are forgotten). Every virtual server
    /// is recomputed, in config order.
    pub fn reconfigure(
        &mut self,
        services: &[NamedVs],
        groups: Vec<VirtualServerGroup>,
        version: u64,
        ids: &BTreeMap<CheckerId, Health>,
    ) -> Reconfigured {
        self.verdicts.retain(|id, _| ids.contains_key(id));
        self.add_verdicts(ids);
        self.index = services
            .iter()
            .enumerate()
            .map(|(i, nv)| (nv.0.clone(), i))
            .collect();
        let gone: Vec<String> = self
            .tables
            .keys()
            .filter(|n| !self.index.contains_key(*n))
            .cloned()
            .collect();
        for n in &gone {
            self.tables.remove(n);
        }
        self.rs_names = services.iter().map(|nv| names_of(&nv.1)).collect();
        self.services = services.iter().cloned().map(Some).collect();
        self.free.clear();
        self.groups = groups;
        self.version = version;
        let recomputed = (0..self.services.len()).map(|i| (i, self.recompute(i))).collect();
        Reconfigured { gone, recomputed }
    }

    /// A change to some virtual servers only (the groups unchanged): `upserts` are new or
    /// changed, `removed` left (by display name). `ids` are the checker ids of the upserted
    /// virtual servers with the verdict each starts with if new; their other ids are
    /// forgotten. Only those virtual servers are recomputed: O(change).
    pub fn update(
        &mut self,
        upserts: Vec<NamedVs>,
        removed: &[String],
        version: u64,
        ids: &BTreeMap<CheckerId, Health>,
    ) -> Reconfigured {
        self.version = version;
        let mut gone = Vec::new();
        for name in removed {
            self.forget_checkers(name, ids);
            if let Some(i) = self.index.remove(name) {
                self.services[i] = None;
                self.rs_names[i] = Vec::new();
                self.free.push(i);
                self.tables.remove(name);
                gone.push(name.clone());
            }
        }
        let mut recomputed = Vec::with_capacity(upserts.len());
        for nv in upserts {
            self.forget_checkers(&nv.0, ids);
            let names = names_of(&nv.1);
            let i = match self.index.get(&nv.0) {
                Some(&i) => i,
                None => {
                    let i = match self.free.pop() {
                        Some(i) => i,
                        None => {
                            self.services.push(None);
                            self.rs_names.push(Vec::new());
                            self.services.len() - 1
                        }
                    };
                    self.index.insert(nv.0.clone(), i);
                    i
                }
            };
            self.services[i] = Some(nv);
            self.rs_names[i] = names;
            recomputed.push(i);
        }
        self.add_verdicts(ids);
        let recomputed = recomputed.into_iter().map(|i| (i, self.recompute(i))).collect();
        Reconfigured { gone, recomputed }
    }

    /// Forgets the verdicts of virtual server `vs`'s checkers that are not in `keep`.
    fn forget_checkers(&mut self, vs: &str, keep: &BTreeMap<CheckerId, Health>) {
        let from = CheckerId {
            vs: vs.into(),
            rs: "".into(),
            checker: "".into(),
        };
        let stale: Vec<CheckerId> = self
            .verdicts
            .range(from..)
            .take_while(|(id, _)| &*id.vs == vs)
            .filter(|(id, _)| !keep.contains_key(*id))
            .map(|(id, _)| id.clone())
            .collect();
        for id in stale {
            self.verdicts.remove(&id);
        }
    }

    /// Adds a verdict for each id not known yet.
    fn add_verdicts(&mut self, ids: &BTreeMap<CheckerId, Health>) {
        for (id, h) in ids {
            if !self.verdicts.contains_key(id) {
                self.verdicts.insert(
                    id.clone(),
                    Verdict {
                        health: *h,
                        weight: None,
                        reason: None,
                    },
                );
            }
        }
    }

    /// Every checker's verdict and last reason (None: not checked yet), and each virtual
    /// server's quorum: what [`HealthState::restore`] needs to continue from here.
    pub fn snapshot(&self) -> HealthSnapshot {
        HealthSnapshot {
            verdicts: self
                .verdicts
                .iter()
                .map(|(id, v)| (id.clone(), v.health, v.weight, v.reason.clone()))
                .collect(),
            quorum: self
                .tables
                .iter()
                .map(|(n, t)| (n.clone(), t.quorum_up))
                .collect(),
        }
    }

    /// The state a [`HealthState::snapshot`] was taken of, under this configuration.
    pub fn restore(
        services: &[NamedVs],
        groups: Vec<VirtualServerGroup>,
        version: u64,
        snap: HealthSnapshot,
    ) -> Self {
        let mut s = HealthState {
            rs_names: services.iter().map(|nv| names_of(&nv.1)).collect(),
            index: services
                .iter()
                .enumerate()
                .map(|(i, nv)| (nv.0.clone(), i))
                .collect(),
            services: services.iter().cloned().map(Some).collect(),
            groups,
            version,
            ..HealthState::default()
        };
        for (id, health, weight, reason) in snap.verdicts {
            s.verdicts.insert(
                id,
                Verdict {
                    health,
                    weight,
                    reason,
                },
            );
        }
        for i in 0..s.services.len() {
            let Some(nv) = &s.services[i] else { continue };
            let (name, vs) = &**nv;
            let was = snap.quorum.get(name).copied().unwrap_or(true);
            let names = &s.rs_names[i];
            let outcome = desired(vs, |j, _| s.verdict_by_name(name, &names[j]), was);
            s.tables.insert(name.clone(), outcome);
        }
        s
    }

    /// Records a checker's result. Returns the index of its virtual server (to be
    /// recomputed), or None for an id this configuration does not have (a probe stopped
    /// by a reconfiguration may still report once).
    pub fn record(&mut self, id: &CheckerId, to: Health, weight: Option<u32>, reason: &str) -> Option<usize> {
        let v = self.verdicts.get_mut(id)?;
        v.health = to;
        v.weight = weight;
        match &mut v.reason {
            Some(r) => {
                r.clear();
                r.push_str(reason);
            }
            None => v.reason = Some(reason.to_string()),
        }
        self.index.get(&*id.vs).copied()
    }

    /// The checkers of one real server of virtual server `vs`, in id order.
    fn checkers_of<'a>(
        &'a self,
        vs: &str,
        rs: &str,
    ) -> impl Iterator<Item = (&'a CheckerId, &'a Verdict)> + 'a {
        let from = CheckerId {
            vs: vs.into(),
            rs: rs.into(),
            checker: "".into(),
        };
        let (vs, rs) = (from.vs.clone(), from.rs.clone());
        self.verdicts
            .range(from..)
            .take_while(move |(id, _)| id.vs == vs && id.rs == rs)
    }

    /// The combined verdict on real server `rs` of virtual server `vs`.
    pub fn verdict_of(&self, vs: &str, rs: &RealServer) -> RsVerdict {
        self.verdict_by_name(vs, &rs_name(rs))
    }

    fn verdict_by_name(&self, vs: &str, rs: &str) -> RsVerdict {
        rs_verdict(self.checkers_of(vs, rs).map(|(_, v)| v.pair()))
    }

    /// Whether virtual server `i`'s outcome depends on its previous one (quorum with
    /// hysteresis: the quorum state then depends on the path taken). Without hysteresis
    /// the outcome is a function of the current verdicts alone, so a caller that only
    /// needs the final table (replay) may recompute once after many records.
    pub fn depends_on_history(&self, i: usize) -> bool {
        self.service(i).is_some_and(|nv| nv.1.hysteresis > 0)
    }

    /// Recomputes the outcome of the virtual server in slot `i` from the verdicts.
    pub fn recompute(&mut self, i: usize) -> Recomputed {
        let Some(nv) = self.services.get(i).and_then(Option::as_ref) else {
            return Recomputed {
                quorum_was: None,
                changed: false,
            };
        };
        let (name, vs) = &**nv;
        let quorum_was = self.tables.get(name).map(|t| t.quorum_up);
        let names = &self.rs_names[i];
        let outcome = desired(
            vs,
            |j, _| self.verdict_by_name(name, &names[j]),
            quorum_was.unwrap_or(true),
        );
        let changed = self.tables.get(name) != Some(&outcome);
        if changed {
            self.tables.insert(name.clone(), outcome);
        }
        Recomputed { quorum_was, changed }
    }

    /// Virtual server `i`'s kernel services as its outcome makes them.
    pub fn kernel_services(&self, i: usize) -> Vec<(SvcKey, Service)> {
        let Some(nv) = self.service(i) else {
            return Vec::new();
        };
        let (name, vs) = &**nv;
        match self.tables.get(name) {
            Some(outcome) => crate::lb::desired::services(vs, &self.groups, outcome),
            None => Vec::new(),
        }
    }

    /// The whole desired kernel table.
    pub fn table(&self) -> Table {
        (0..self.services.len())
            .flat_map(|i| self.kernel_services(i))
            .collect()
    }

    /// Every real server of every virtual server (in config order): alive or not, with its
    /// checkers' last reasons (`not checked yet` before the first result, `no checker`
    /// without any).
    pub fn real_servers(&self) -> Vec<ServiceHealth> {
        let mut order: Vec<(&NamedVs, &Vec<String>)> = self
            .services
            .iter()
            .zip(&self.rs_names)
            .filter_map(|(nv, names)| nv.as_ref().map(|nv| (nv, names)))
            .collect();
        order.sort_by(|a, b| a.0 .1.key.cmp(&b.0 .1.key));
        let mut out = Vec::new();
        for (nv, names) in order {
            let name = &nv.0;
            let mut rss = Vec::new();
            for rname in names {
                let mine: Vec<_> = self.checkers_of(name, rname).collect();
                let alive = rs_verdict(mine.iter().map(|(_, v)| v.pair())).alive;
                let reason = mine
                    .iter()
                    .filter_map(|(id, v)| v.reason.as_ref().map(|r| format!("{}: {r}", id.checker)))
                    .collect::<Vec<_>>()
                    .join("; ");
                let reason = if !reason.is_empty() {
                    reason
                } else if mine.is_empty() {
                    "no checker".to_string()
                } else {
                    "not checked yet".to_string()
                };
                rss.push((rname.clone(), alive, reason));
            }
            out.push(ServiceHealth {
                vs: name.clone(),
                quorum_up: self.tables.get(name).map(|t| t.quorum_up).unwrap_or(true),
                real_servers: rss,
            });
        }
        out
    }
}

fn names_of(vs: &VirtualServer) -> Vec<String> {
    vs.real_servers.iter().map(rs_name).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ha_config::cluster;

    fn config(text: &str) -> ha_config::model::Config {
        let (_, l) = cluster::load_str("t.conf", text, &[]);
        assert!(!l.diags.has_errors(), "{:?}", l.diags);
        l.cluster.default
    }

    fn id(rs: &str) -> CheckerId {
        CheckerId {
            vs: "198.18.116.134:80".into(),
            rs: rs.into(),
            checker: "TCP_CHECK#0".into(),
        }
    }

    fn seed_state() -> HealthState {
        let c = config(
            "virtual_server 198.18.116.134 80 {\n lb_kind DR\n quorum 2\n sorry_server 198.18.116.150 80\n real_server 198.18.116.131 80 {\n  TCP_CHECK {\n  }\n }\n real_server 198.18.116.132 80 {\n  TCP_CHECK {\n  }\n }\n}\n",
        );
        let services: Vec<NamedVs> = c
            .virtual_servers
            .iter()
            .map(|v| Arc::new((v.key.to_string(), v.clone())))
            .collect();
        let initial = [id("198.18.116.131:80"), id("198.18.116.132:80")]
            .into_iter()
            .map(|i| (i, Health::Up))
            .collect();
        HealthState::new(&services, c.vs_groups.clone(), 1, &initial)
    }

    #[test]
    fn a_failed_checker_removes_its_real_server_and_quorum_brings_the_sorry_server() {
        let mut s = seed_state();
        assert_eq!(s.table().values().next().map(|svc| svc.dests.len()), Some(2));
        let i = s
            .record(&id("198.18.116.131:80"), Health::Down, None, "connection refused")
            .expect("known checker");
        let r = s.recompute(i);
        assert!(r.changed);
        assert_eq!(r.quorum_was, Some(true));
        let t = &s.tables()["198.18.116.134:80"];
        assert!(!t.quorum_up && t.sorry_active, "{t:?}");
        let rss = &s.real_servers()[0].real_servers;
        assert_eq!(
            rss[0],
            (
                "198.18.116.131:80".into(),
                false,
                "TCP_CHECK#0: connection refused".into()
            )
        );
        assert_eq!(rss[1].2, "not checked yet");
    }

    #[test]
    fn an_unknown_checker_changes_nothing_and_a_reconfiguration_keeps_verdicts() {
        let mut s = seed_state();
        let stranger = CheckerId {
            vs: "198.18.116.134:80".into(),
            rs: "198.18.116.199:80".into(),
            checker: "TCP_CHECK#0".into(),
        };
        assert_eq!(s.record(&stranger, Health::Down, None, "x"), None);
        let i = s
            .record(&id("198.18.116.132:80"), Health::Down, None, "timeout")
            .unwrap();
        s.recompute(i);
        let services: Vec<NamedVs> = s.services().cloned().collect();
        let ids = [id("198.18.116.131:80"), id("198.18.116.132:80")]
            .into_iter()
            .map(|i| (i, Health::Up))
            .collect();
        let r = s.reconfigure(&services, Vec::new(), 2, &ids);
        assert!(r.gone.is_empty());
        assert!(!r.recomputed[0].1.changed, "same verdicts, same outcome");
        assert_eq!(s.version(), 2);
        assert!(!s.real_servers()[0].real_servers[1].1, "rs02 stays down");
        let restored = HealthState::restore(&services, Vec::new(), 2, s.snapshot());
        assert_eq!(restored.table(), s.table());
        assert_eq!(restored.real_servers(), s.real_servers());
        let r = s.reconfigure(&[], Vec::new(), 3, &BTreeMap::new());
        assert_eq!(r.gone, vec!["198.18.116.134:80".to_string()]);
        assert!(s.table().is_empty());
    }

    /// The checker ids of services, each starting up.
    fn ids_of(services: &[NamedVs]) -> BTreeMap<CheckerId, Health> {
        services
            .iter()
            .flat_map(|nv| {
                nv.1.real_servers.iter().flat_map(move |rs| {
                    (0..rs.checkers.len()).map(move |n| {
                        (
                            CheckerId {
                                vs: nv.0.as_str().into(),
                                rs: rs_name(rs).into(),
                                checker: format!("TCP_CHECK#{n}").into(),
                            },
                            Health::Up,
                        )
                    })
                })
            })
            .collect()
    }

    #[test]
    fn updating_only_the_changed_virtual_servers_matches_a_whole_reconfiguration() {
        let mut x: u64 = 0x2026_1206;
        let mut rnd = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        let mut live = HealthState::default();
        let mut whole = HealthState::default();
        let mut prev: BTreeMap<String, NamedVs> = BTreeMap::new();
        for version in 1..=40 {
            // The next configuration: each of 8 virtual servers present or not, with 1-3
            // real servers of random weights and a random quorum.
            let mut text = String::new();
            for v in 0..8 {
                if rnd(4) == 0 {
                    continue;
                }
                text += &format!(
                    "virtual_server 198.18.120.{v} 80 {{\n lb_kind DR\n quorum {}\n",
                    1 + rnd(4)
                );
                for r in 0..=rnd(3) {
                    text += &format!(
                        " real_server 198.19.0.{r} 80 {{\n  weight {}\n  TCP_CHECK {{\n  }}\n }}\n",
                        1 + rnd(3)
                    );
                }
                text += "}\n";
            }
            let c = config(&text);
            let now: BTreeMap<String, NamedVs> = c
                .virtual_servers
                .iter()
                .map(|v| (v.key.to_string(), Arc::new((v.key.to_string(), v.clone()))))
                .collect();
            let upserts: Vec<NamedVs> = now
                .iter()
                .filter(|(n, nv)| prev.get(*n).map(|p| p.1 != nv.1).unwrap_or(true))
                .map(|(_, nv)| nv.clone())
                .collect();
            let removed: Vec<String> = prev.keys().filter(|n| !now.contains_key(*n)).cloned().collect();
            live.update(upserts.clone(), &removed, version, &ids_of(&upserts));
            let all: Vec<NamedVs> = now.values().cloned().collect();
            whole.reconfigure(&all, Vec::new(), version, &ids_of(&all));
            // Some checkers change their verdict, on both.
            let ids: Vec<CheckerId> = ids_of(&all).into_keys().collect();
            for _ in 0..3 {
                if ids.is_empty() {
                    break;
                }
                let id = &ids[rnd(ids.len() as u64) as usize];
                let to = if rnd(2) == 0 { Health::Up } else { Health::Down };
                for s in [&mut live, &mut whole] {
                    if let Some(i) = s.record(id, to, None, "probe") {
                        s.recompute(i);
                    }
                }
            }
            assert_eq!(live.table(), whole.table(), "version {version}");
            assert_eq!(live.real_servers(), whole.real_servers(), "version {version}");
            assert_eq!(live.snapshot(), whole.snapshot(), "version {version}");
            prev = now;
        }
    }
}

//! Starts the checkers of one director's configuration and the hub that turns their
//! verdicts into desired tables.

use super::actor::{CheckerActor, CheckerId, ProbeSpec, SetIds, StopChecker};
use super::hub::{rs_name, CheckHub, Reconfigure, Update};
use super::probe::Target;
use super::schedule::{CheckerCore, Timing};
use super::state::NamedVs;
use crate::lb::sync::Desired;
use crate::script::{self, lookup_user};
use actix::prelude::*;
use ha_config::model::{CheckKind, Config, VirtualServer};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::time::Duration;

pub struct Checks {
    pub hub: Addr<CheckHub>,
    /// One actor per distinct probe, by its key.
    pub checkers: BTreeMap<ProbeKey, Addr<CheckerActor>>,
    /// Checkers of the current configuration that could not start (see [`checker_ids`]).
    pub unstarted: Vec<CheckerId>,
    /// The checker ids each probe reports for, sorted (most probes have one: a set would
    /// allocate a node for eleven).
    probe_ids: BTreeMap<ProbeKey, Vec<CheckerId>>,
    /// The probes of each virtual server (by display name).
    by_vs: HashMap<std::sync::Arc<str>, BTreeSet<ProbeKey>>,
    /// What the probes of the configuration share (from its global settings).
    cx: PlanContext,
    /// Checker threads (one per core): probes spread over them so one busy thread does
    /// not make the others' probes late.
    arbiters: Vec<actix_rt::Arbiter>,
    next: usize,
}

/// What a reconfiguration did to the probes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProbeChanges {
    pub started: usize,
    pub stopped: usize,
    /// Probes kept whose set of checker ids changed (told with `SetIds`).
    pub retargeted: usize,
    /// Probes running after it.
    pub running: usize,
}

impl std::fmt::Display for ProbeChanges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} started, {} stopped, {} retargeted, {} running",
            self.started, self.stopped, self.retargeted, self.running
        )
    }
}

impl Drop for Checks {
    fn drop(&mut self) {
        for a in &self.arbiters {
            a.stop();
        }
    }
}

fn checker_threads() -> Vec<actix_rt::Arbiter> {
    let n = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 8);
    (0..n).map(|_| actix_rt::Arbiter::new()).collect()
}

/// What every probe of a configuration shares, from its global settings.
struct PlanContext {
    tls: std::sync::Arc<rustls::ClientConfig>,
    ca: Option<String>,
    default_user: Result<Option<script::RunAs>, String>,
    /// The `track_file`s FILE_CHECKs read.
    track_files: BTreeMap<String, ha_config::model::TrackFile>,
}

impl PlanContext {
    fn of(config: &Config) -> Self {
        PlanContext {
            track_files: config
                .track_files
                .iter()
                .map(|t| (t.name.clone(), t.clone()))
                .collect(),
            // keepalived's SSL_GET does not verify certificates (see `tls`) unless `SSL { ca }`.
            tls: tls_config(config),
            ca: ssl_ca(config),
            default_user: script::default_user(&config.global),
        }
    }
}

/// One checker to run: its id, timing and probe.
type Spec = (CheckerId, Timing, ProbeSpec);

/// Every checker of a configuration: services, each checker's spec, and those that
/// cannot run here.
struct Plan {
    services: Vec<NamedVs>,
    specs: Vec<Spec>,
    /// Checkers of [`checker_ids`] that cannot run here (their script user is missing).
    unstarted: Vec<CheckerId>,
}

/// Every checker a configuration defines, with the verdict it starts with (up, or down
/// with `alpha`), by id: what the hub holds verdicts for, less [`Checks::unstarted`].
/// Unsupported kinds and a MISC_CHECK whose command cannot be split have none.
pub fn checker_ids(config: &Config) -> BTreeMap<CheckerId, super::schedule::Health> {
    let mut out = BTreeMap::new();
    for vs in &config.virtual_servers {
        let vname: std::sync::Arc<str> = vs.key.to_string().into();
        for rs in &vs.real_servers {
            let rname: std::sync::Arc<str> = rs_name(rs).into();
            for (n, c) in rs.checkers.iter().enumerate() {
                match &c.kind {
                    CheckKind::Other(_) => continue,
                    CheckKind::Misc(m) if script::split_argv(&m.misc_path).is_err() => continue,
                    _ => {}
                }
                out.insert(
                    checker_id(&vname, &rname, n, c),
                    CheckerCore::new(timing_of(c)).health(),
                );
            }
        }
    }
    out
}

fn checker_id(
    vname: &std::sync::Arc<str>,
    rname: &std::sync::Arc<str>,
    n: usize,
    c: &ha_config::model::Checker,
) -> CheckerId {
    CheckerId {
        vs: vname.clone(),
        rs: rname.clone(),
        checker: format!("{}#{n}", c.kind.keyword()).into(),
    }
}

/// A random number in [0, 1) from the clock and a counter (warmup spreading only).
fn unit(i: usize) -> f64 {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0) as u64;
    let x = (n ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    (x >> 11) as f64 / (1u64 << 53) as f64
}

fn plan(config: &Config, cx: &PlanContext) -> Plan {
    let mut plan = Plan {
        services: Vec::with_capacity(config.virtual_servers.len()),
        specs: Vec::new(),
        unstarted: Vec::new(),
    };
    for vs in &config.virtual_servers {
        let vname = vs.key.to_string();
        plan_vs(&vname, vs, cx, &mut plan.specs, &mut plan.unstarted);
        plan.services.push(std::sync::Arc::new((vname, vs.clone())));
    }
    plan
}

/// The checkers of one virtual server, into `specs` (or `unstarted`).
fn plan_vs(
    vname: &str,
    vs: &ha_config::model::VirtualServer,
    cx: &PlanContext,
    specs: &mut Vec<Spec>,
    unstarted: &mut Vec<CheckerId>,
) {
    let vshared: std::sync::Arc<str> = vname.into();
    for rs in &vs.real_servers {
        let rname: std::sync::Arc<str> = rs_name(rs).into();
        for (n, c) in rs.checkers.iter().enumerate() {
            let port = c.common.connect_port.or(rs.port).unwrap_or(0);
            let ip = c.common.connect_ip.unwrap_or(rs.ip);
            let target = Target {
                addr: SocketAddr::new(ip, port),
                bind: c
                    .common
                    .bindto
                    .map(|b| SocketAddr::new(b, c.common.bind_port.unwrap_or(0))),
            };
            let probe = match &c.kind {
                CheckKind::Tcp => ProbeSpec::Tcp(target),
                CheckKind::Http(h) => ProbeSpec::Http {
                    target,
                    urls: h.urls.clone(),
                    virtualhost: h.virtualhost.clone(),
                },
                CheckKind::Ssl(h) => ProbeSpec::Https {
                    target,
                    urls: h.urls.clone(),
                    virtualhost: h.virtualhost.clone(),
                    tls: cx.tls.clone(),
                },
                CheckKind::Misc(m) => {
                    let Ok(argv) = script::split_argv(&m.misc_path) else {
                        tracing::error!(vs = %vname, rs = %rs_name(rs), "MISC_CHECK: bad misc_path");
                        continue;
                    };
                    // The script's own user, else script_user; never root by accident.
                    let run_as = match &m.user {
                        Some(u) => lookup_user(&u.user, u.group.as_deref()).map(Some),
                        None => cx.default_user.clone(),
                    };
                    let run_as = match run_as {
                        Ok(r) => r,
                        Err(e) => {
                            tracing::error!(vs = %vname, rs = %rs_name(rs), "MISC_CHECK user: {e}; checker not started");
                            unstarted.push(checker_id(&vshared, &rname, n, c));
                            continue;
                        }
                    };
                    let timing = Timing::from(&c.common);
                    ProbeSpec::Misc {
                        argv,
                        run_as,
                        timeout: m
                            .misc_timeout
                            .map(|t| Duration::from_micros(t.0))
                            .unwrap_or(timing.delay_loop),
                        dynamic: m.misc_dynamic,
                    }
                }
                CheckKind::Udp(u) => ProbeSpec::Udp {
                    target,
                    check: u.clone(),
                },
                CheckKind::Smtp(m) => ProbeSpec::Smtp {
                    target,
                    helo_name: m.helo_name.clone(),
                },
                CheckKind::Dns(d) => ProbeSpec::Dns {
                    target,
                    check: d.clone(),
                },
                CheckKind::Ping => ProbeSpec::Ping(Target {
                    addr: SocketAddr::new(ip, 0),
                    bind: target.bind,
                }),
                CheckKind::File(f) => {
                    let Some(def) = cx.track_files.get(&f.track_file) else {
                        tracing::error!(vs = %vname, rs = %rs_name(rs), "FILE_CHECK: no track_file {}; checker not started", f.track_file);
                        unstarted.push(checker_id(&vshared, &rname, n, c));
                        continue;
                    };
                    let (weight, reverse) = match f.weight {
                        Some(w) => (w, f.reverse),
                        None => (def.weight, def.weight_reverse),
                    };
                    let timing = timing_of(c);
                    if let Err(e) = crate::track::file::initialise(def) {
                        tracing::error!(track_file = %def.name, file = %def.file, "init_file: {e}");
                    }
                    let probe = ProbeSpec::File {
                        path: crate::track::file::watched_path(&def.file),
                        weight,
                        reverse,
                        rs_weight: rs.weight,
                    };
                    specs.push((checker_id(&vshared, &rname, n, c), timing, probe));
                    continue;
                }
                CheckKind::Other(k) => {
                    tracing::warn!(vs = %vname, rs = %rs_name(rs), "{k} is not supported; checker ignored");
                    continue;
                }
            };
            specs.push((checker_id(&vshared, &rname, n, c), Timing::from(&c.common), probe));
        }
    }
}

/// A checker's timing. FILE_CHECK is read when the file changes (and at each
/// `delay_loop`), decided by one reading (no retries), and counts as down until its first
/// reading, which comes at once.
fn timing_of(c: &ha_config::model::Checker) -> Timing {
    let t = Timing::from(&c.common);
    match c.kind {
        CheckKind::File(_) => Timing {
            retry: 0,
            alpha: true,
            warmup: None,
            ..t
        },
        _ => t,
    }
}

/// The verdict each checker of `specs` starts with.
fn initial_ids(specs: &[Spec]) -> BTreeMap<CheckerId, super::schedule::Health> {
    specs
        .iter()
        .map(|(id, t, _)| (id.clone(), CheckerCore::new(*t).health()))
        .collect()
}

/// `version`: the config version of `config`; `subscribers` get the kernel services.
pub fn start(config: &Config, version: u64, subscribers: Vec<Recipient<Desired>>) -> Checks {
    start_with(config, version, subscribers, None)
}

/// As [`start`], with every checker transition also sent to `events`.
pub fn start_with(
    config: &Config,
    version: u64,
    subscribers: Vec<Recipient<Desired>>,
    events: Option<Recipient<super::actor::CheckEvent>>,
) -> Checks {
    let cx = PlanContext::of(config);
    let plan = plan(config, &cx);
    let hub = CheckHub::new(
        plan.services.clone(),
        config.vs_groups.clone(),
        version,
        initial_ids(&plan.specs),
        subscribers,
    )
    .with_events(events);
    let hub = match &cx.default_user {
        Ok(user) => hub.with_default_user(*user),
        Err(e) => {
            // Never fall back to root for scripts meant to run as someone else.
            tracing::error!("script_user: {e}; notify and quorum scripts will not run");
            hub.without_scripts()
        }
    }
    .start();
    let mut checks = Checks {
        hub,
        checkers: BTreeMap::new(),
        unstarted: Vec::new(),
        probe_ids: BTreeMap::new(),
        by_vs: HashMap::new(),
        cx,
        arbiters: checker_threads(),
        next: 0,
    };
    checks.place(plan);
    checks
}

impl Checks {
    fn spawn(&mut self, actor: CheckerActor) -> Addr<CheckerActor> {
        let arbiter = &self.arbiters[self.next % self.arbiters.len()];
        self.next += 1;
        CheckerActor::start_in_arbiter(&arbiter.handle(), move |_| actor)
    }

    /// The key already held for this probe, if any (one allocation per probe).
    fn canonical(&self, key: ProbeKey) -> ProbeKey {
        match self.probe_ids.get_key_value(&key) {
            Some((k, _)) => k.clone(),
            None => key,
        }
    }

    /// Starts, retargets and stops probes so that they run exactly `plan`'s checkers.
    fn place(&mut self, plan: Plan) -> ProbeChanges {
        let old = std::mem::take(&mut self.probe_ids);
        self.by_vs.clear();
        self.unstarted = plan.unstarted;
        let mut spec_of = BTreeMap::new();
        for (id, t, p) in plan.specs {
            let key = self.canonical(probe_key(&t, &p, &self.cx.ca));
            self.by_vs.entry(id.vs.clone()).or_default().insert(key.clone());
            add_id(self.probe_ids.entry(key.clone()).or_default(), id);
            spec_of.entry(key).or_insert((t, p));
        }
        let mut touched: BTreeSet<ProbeKey> = old.keys().cloned().collect();
        touched.extend(self.probe_ids.keys().cloned());
        self.settle(touched, &old, spec_of)
    }

    /// Brings each probe of `touched` to its ids in `probe_ids` (`before`: the ids it had).
    fn settle(
        &mut self,
        touched: BTreeSet<ProbeKey>,
        before: &BTreeMap<ProbeKey, Vec<CheckerId>>,
        mut spec_of: BTreeMap<ProbeKey, (Timing, ProbeSpec)>,
    ) -> ProbeChanges {
        let mut out = ProbeChanges::default();
        for key in touched {
            let ids = self.probe_ids.get(&key).filter(|ids| !ids.is_empty()).cloned();
            let Some(ids) = ids else {
                self.probe_ids.remove(&key);
                if let Some(a) = self.checkers.remove(&key) {
                    a.do_send(StopChecker);
                    out.stopped += 1;
                }
                continue;
            };
            if let Some(a) = self.checkers.get(&key) {
                if before.get(&key) != Some(&ids) {
                    a.do_send(SetIds(ids.into_iter().collect()));
                    out.retargeted += 1;
                }
                continue;
            }
            let Some((t, p)) = spec_of.remove(&key) else {
                continue;
            };
            let jitter = unit(self.next);
            let actor = CheckerActor::new(
                ids.into_iter().collect(),
                t,
                p,
                self.hub.clone().recipient(),
                jitter,
            );
            let addr = self.spawn(actor);
            self.checkers.insert(key, addr);
            out.started += 1;
        }
        out.running = self.checkers.len();
        out
    }

    /// Applies a new configuration: unchanged probes keep running with their state and
    /// timers; removed ones stop; new or retuned ones start. O(configuration): for a
    /// change of virtual servers only, [`Checks::update`] costs O(change).
    pub fn reconfigure(&mut self, config: &Config, version: u64) -> ProbeChanges {
        self.cx = PlanContext::of(config);
        let plan = plan(config, &self.cx);
        // The hub learns the new ids first, so no event of a new probe arrives before it.
        self.hub.do_send(Reconfigure {
            services: plan.services.clone(),
            groups: config.vs_groups.clone(),
            version,
            ids: initial_ids(&plan.specs),
        });
        self.place(plan)
    }

    /// Applies a change of some virtual servers (by display name; `None`: removed) under
    /// the same global settings and groups: only their probes are touched, and the hub
    /// recomputes only them. O(change).
    pub fn update(
        &mut self,
        changes: Vec<(String, Option<std::sync::Arc<VirtualServer>>)>,
        version: u64,
    ) -> ProbeChanges {
        let mut touched = BTreeSet::new();
        let mut before = BTreeMap::new();
        let (mut specs, mut unstarted) = (Vec::new(), Vec::new());
        let (mut upserts, mut removed) = (Vec::new(), Vec::new());
        for (name, vs) in changes {
            for key in self.by_vs.remove(name.as_str()).unwrap_or_default() {
                if let Some(ids) = self.probe_ids.get_mut(&key) {
                    before.entry(key.clone()).or_insert_with(|| ids.clone());
                    ids.retain(|id| *id.vs != *name);
                }
                touched.insert(key);
            }
            self.unstarted.retain(|id| *id.vs != *name);
            match vs {
                Some(vs) => {
                    plan_vs(&name, &vs, &self.cx, &mut specs, &mut unstarted);
                    upserts.push(std::sync::Arc::new((name, vs)));
                }
                None => removed.push(name),
            }
        }
        self.unstarted.extend(unstarted);
        self.hub.do_send(Update {
            upserts,
            removed,
            version,
            ids: initial_ids(&specs),
        });
        let mut spec_of = BTreeMap::new();
        for (id, t, p) in specs {
            let key = self.canonical(probe_key(&t, &p, &self.cx.ca));
            self.by_vs.entry(id.vs.clone()).or_default().insert(key.clone());
            let ids = self.probe_ids.entry(key.clone()).or_default();
            before.entry(key.clone()).or_insert_with(|| ids.clone());
            add_id(ids, id);
            touched.insert(key.clone());
            spec_of.entry(key).or_insert((t, p));
        }
        self.settle(touched, &before, spec_of)
    }
}

/// Adds `id` to a sorted list of ids (once).
fn add_id(ids: &mut Vec<CheckerId>, id: CheckerId) {
    if let Err(i) = ids.binary_search(&id) {
        if ids.len() < 4 {
            // Exactly what is needed while small: most probes keep one id.
            ids.reserve_exact(1);
        }
        ids.insert(i, id);
    }
}

/// The top-level `SSL { ca FILE }`, if any.
pub fn ssl_ca(config: &Config) -> Option<String> {
    config
        .extra
        .iter()
        .filter(|r| r.words.first().map(String::as_str) == Some("SSL"))
        .flat_map(|r| r.block.iter().flatten())
        .find(|r| r.words.first().map(String::as_str) == Some("ca"))
        .and_then(|r| r.words.get(1).cloned())
}

/// TLS for SSL_GET: keepalived's accept-anything, or verification against `SSL { ca }`.
/// A CA that cannot be read fails every SSL_GET (never silently accept-anything).
fn tls_config(config: &Config) -> std::sync::Arc<rustls::ClientConfig> {
    let Some(path) = ssl_ca(config) else {
        return super::tls::client_accept_any();
    };
    let loaded = std::fs::read(&path)
        .map_err(|e| e.to_string())
        .and_then(|pem| super::tls::client_with_ca(&pem));
    match loaded {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(ca = %path, "SSL ca: {e}; every SSL_GET check will fail");
            super::tls::client_verify_nothing_trusted()
        }
    }
}

/// What makes two checks the same probe (shared: the probe's actor, its checker ids and
/// its virtual servers' index all hold it).
pub type ProbeKey = std::sync::Arc<str>;

/// What makes two checks the same probe.
fn probe_key(t: &Timing, p: &ProbeSpec, ca: &Option<String>) -> ProbeKey {
    let key = match p {
        // The common kind (10,000s of them): a short key, every field in it.
        ProbeSpec::Tcp(target) => {
            // Destructured: a new timing field cannot be left out of the key.
            let Timing {
                connect_timeout,
                retry,
                delay_before_retry,
                delay_loop,
                warmup,
                alpha,
            } = t;
            let bind = target.bind.map(|b| format!(" from {b}")).unwrap_or_default();
            let us = |d: &std::time::Duration| d.as_micros();
            format!(
                "tcp {}{bind} {}/{retry}/{}/{}/{}/{}",
                target.addr,
                us(connect_timeout),
                us(delay_before_retry),
                us(delay_loop),
                warmup
                    .as_ref()
                    .map(|w| us(w).to_string())
                    .unwrap_or_else(|| "-".into()),
                u8::from(*alpha)
            )
        }
        ProbeSpec::Http {
            target,
            urls,
            virtualhost,
        } => format!("http {target:?} {urls:?} {virtualhost:?} {t:?}"),
        ProbeSpec::Https {
            target,
            urls,
            virtualhost,
            ..
        } => format!("https {target:?} {urls:?} {virtualhost:?} {t:?} ca={ca:?}"),
        ProbeSpec::Misc {
            argv,
            run_as,
            timeout,
            dynamic,
        } => format!("misc {argv:?} {run_as:?} {timeout:?} {dynamic} {t:?}"),
        ProbeSpec::Udp { target, check } => format!("udp {target:?} {check:?} {t:?}"),
        ProbeSpec::Ping(target) => format!("ping {target:?} {t:?}"),
        ProbeSpec::Dns { target, check } => format!("dns {target:?} {check:?} {t:?}"),
        ProbeSpec::Smtp { target, helo_name } => format!("smtp {target:?} {helo_name:?} {t:?}"),
        ProbeSpec::File {
            path,
            weight,
            reverse,
            rs_weight,
        } => format!("file {path:?} {weight} {reverse} {rs_weight} {t:?}"),
    };
    key.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ssl_ca_comes_from_the_top_level_ssl_block() {
        let text =
            "SSL {\n  ca /etc/keepalived/ca.pem\n}\nvirtual_server 198.18.116.134 443 {\n lb_kind NAT\n}\n";
        let (parsed, l) = ha_config::cluster::load_str("c.conf", text, &[]);
        assert_eq!(
            ssl_ca(&l.cluster.default).as_deref(),
            Some("/etc/keepalived/ca.pem")
        );
        let text = l.diags.render(&parsed.sources);
        assert!(
            !text.contains("SSL"),
            "a `ca`-only SSL block is fully used: {text}"
        );
        let (_, l) = ha_config::cluster::load_str("c.conf", "virtual_server 198.18.116.134 443 {\n}\n", &[]);
        assert_eq!(ssl_ca(&l.cluster.default), None);
        let with_key = "SSL {\n  ca /x.pem\n  key /k.pem\n}\n";
        let (parsed, l) = ha_config::cluster::load_str("c.conf", with_key, &[]);
        let text = l.diags.render(&parsed.sources);
        assert!(
            text.contains("hanode uses `ca` only") && text.contains("key"),
            "{text}"
        );
    }
}

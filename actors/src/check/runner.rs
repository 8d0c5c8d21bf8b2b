//! Starts the checkers of one director's configuration and the hub that turns their
//! verdicts into desired tables.

use super::actor::{CheckerActor, CheckerId, ProbeSpec, SetIds, StopChecker};
use super::hub::{rs_name, CheckHub, Reconfigure};
use super::probe::Target;
use super::schedule::{CheckerCore, Timing};
use crate::lb::sync::Desired;
use crate::script::{self, lookup_user};
use actix::prelude::*;
use ha_config::model::{CheckKind, Config};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

pub struct Checks {
    pub hub: Addr<CheckHub>,
    /// One actor per distinct probe, by its key.
    pub checkers: BTreeMap<String, Addr<CheckerActor>>,
    /// Checkers of the current configuration that could not start (see [`checker_ids`]).
    pub unstarted: Vec<CheckerId>,
    /// Checker threads (one per core): probes spread over them so one busy thread does
    /// not make the others' probes late.
    arbiters: Vec<actix_rt::Arbiter>,
    next: usize,
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

/// Every checker of a configuration: services, and per distinct probe its ids, timing
/// and probe.
struct Plan {
    services: Vec<(String, ha_config::model::VirtualServer)>,
    probes: BTreeMap<String, (Vec<CheckerId>, Timing, ProbeSpec)>,
    /// Checkers of [`checker_ids`] that cannot run here (their script user is missing).
    unstarted: Vec<CheckerId>,
}

/// Every checker a configuration defines, with the verdict it starts with (up, or down
/// with `alpha`), by id: what the hub holds verdicts for, less [`Checks::unstarted`].
/// Unsupported kinds and a MISC_CHECK whose command cannot be split have none.
pub fn checker_ids(config: &Config) -> BTreeMap<CheckerId, super::schedule::Health> {
    let mut out = BTreeMap::new();
    for vs in &config.virtual_servers {
        let vname = vs.key.to_string();
        for rs in &vs.real_servers {
            for (n, c) in rs.checkers.iter().enumerate() {
                match &c.kind {
                    CheckKind::Other(_) => continue,
                    CheckKind::Misc(m) if script::split_argv(&m.misc_path).is_err() => continue,
                    _ => {}
                }
                out.insert(
                    checker_id(&vname, rs, n, c),
                    CheckerCore::new(Timing::from(&c.common)).health(),
                );
            }
        }
    }
    out
}

fn checker_id(
    vname: &str,
    rs: &ha_config::model::RealServer,
    n: usize,
    c: &ha_config::model::Checker,
) -> CheckerId {
    CheckerId {
        vs: vname.to_string(),
        rs: rs_name(rs),
        checker: format!("{}#{n}", c.kind.keyword()),
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

fn plan(config: &Config) -> Plan {
    // keepalived's SSL_GET does not verify certificates (see `tls`) unless `SSL { ca }`.
    let tls = tls_config(config);
    let ca = ssl_ca(config);
    let mut specs = Vec::new();
    let mut services = Vec::new();
    let mut unstarted = Vec::new();
    for vs in &config.virtual_servers {
        let vname = vs.key.to_string();
        services.push((vname.clone(), vs.clone()));
        for rs in &vs.real_servers {
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
                        tls: tls.clone(),
                    },
                    CheckKind::Misc(m) => {
                        let Ok(argv) = script::split_argv(&m.misc_path) else {
                            tracing::error!(vs = %vname, rs = %rs_name(rs), "MISC_CHECK: bad misc_path");
                            continue;
                        };
                        // The script's own user, else script_user; never root by accident.
                        let run_as = match &m.user {
                            Some(u) => lookup_user(&u.user, u.group.as_deref()).map(Some),
                            None => script::default_user(&config.global),
                        };
                        let run_as = match run_as {
                            Ok(r) => r,
                            Err(e) => {
                                tracing::error!(vs = %vname, rs = %rs_name(rs), "MISC_CHECK user: {e}; checker not started");
                                unstarted.push(checker_id(&vname, rs, n, c));
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
                    CheckKind::Other(k) => {
                        tracing::warn!(vs = %vname, rs = %rs_name(rs), "{k} is not supported; checker ignored");
                        continue;
                    }
                };
                let id = checker_id(&vname, rs, n, c);
                specs.push((id, Timing::from(&c.common), probe));
            }
        }
    }
    // One probe per distinct (target, probe, timing): keepalived probes a real server
    // once per virtual server; we probe it once and tell every virtual server.
    let mut probes: BTreeMap<String, (Vec<CheckerId>, Timing, ProbeSpec)> = BTreeMap::new();
    for (id, t, p) in specs {
        let key = probe_key(&t, &p, &ca);
        probes.entry(key).or_insert_with(|| (Vec::new(), t, p)).0.push(id);
    }
    Plan {
        services,
        probes,
        unstarted,
    }
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
    let plan = plan(config);
    let initial = plan
        .probes
        .values()
        .flat_map(|(ids, t, _)| ids.iter().map(|id| (id.clone(), CheckerCore::new(*t).health())))
        .collect::<BTreeMap<_, _>>();
    let hub = CheckHub::new(
        plan.services,
        config.vs_groups.clone(),
        version,
        initial,
        subscribers,
    )
    .with_events(events);
    let hub = match script::default_user(&config.global) {
        Ok(user) => hub.with_default_user(user),
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
        unstarted: plan.unstarted,
        arbiters: checker_threads(),
        next: 0,
    };
    for (i, (key, (ids, t, p))) in plan.probes.into_iter().enumerate() {
        let actor = CheckerActor::new(ids, t, p, checks.hub.clone().recipient(), unit(i));
        let addr = checks.spawn(actor);
        checks.checkers.insert(key, addr);
    }
    checks
}

impl Checks {
    fn spawn(&mut self, actor: CheckerActor) -> Addr<CheckerActor> {
        let arbiter = &self.arbiters[self.next % self.arbiters.len()];
        self.next += 1;
        CheckerActor::start_in_arbiter(&arbiter.handle(), move |_| actor)
    }

    /// Applies a new configuration: unchanged probes keep running with their state and
    /// timers; removed ones stop; new or retuned ones start. Returns (kept, started, stopped).
    pub fn reconfigure(&mut self, config: &Config, version: u64) -> (usize, usize, usize) {
        let plan = plan(config);
        // The hub learns the new ids first, so no event of a new probe arrives before it.
        let ids: BTreeMap<CheckerId, _> = plan
            .probes
            .values()
            .flat_map(|(pids, t, _)| pids.iter().map(|id| (id.clone(), CheckerCore::new(*t).health())))
            .collect();
        self.unstarted = plan.unstarted;
        self.hub.do_send(Reconfigure {
            services: plan.services,
            groups: config.vs_groups.clone(),
            version,
            ids,
        });
        let (mut kept, mut started) = (0, 0);
        let mut old = std::mem::take(&mut self.checkers);
        for (i, (key, (pids, t, p))) in plan.probes.into_iter().enumerate() {
            let addr = match old.remove(&key) {
                Some(a) => {
                    kept += 1;
                    a.do_send(SetIds(pids));
                    a
                }
                None => {
                    started += 1;
                    let actor = CheckerActor::new(pids, t, p, self.hub.clone().recipient(), unit(i));
                    self.spawn(actor)
                }
            };
            self.checkers.insert(key, addr);
        }
        let stopped = old.len();
        for a in old.values() {
            a.do_send(StopChecker);
        }
        (kept, started, stopped)
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

/// What makes two checks the same probe.
fn probe_key(t: &Timing, p: &ProbeSpec, ca: &Option<String>) -> String {
    match p {
        ProbeSpec::Tcp(target) => format!("tcp {target:?} {t:?}"),
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
    }
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

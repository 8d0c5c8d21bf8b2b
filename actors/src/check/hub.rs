//! Keeps every checker's verdict and the resulting desired table of each virtual server;
//! publishes a virtual server's kernel services whenever they change (to the data plane),
//! and after each configuration that every service of that version has been sent.

use super::actor::{CheckEvent, CheckerId};
use super::schedule::Health;
pub use super::state::ServiceHealth;
use super::state::{HealthState, NamedVs, Recomputed, Reconfigured};
use super::table::VsOutcome;
use crate::lb::model::{Service, SvcKey};
use crate::lb::sync::{Desired, VsServices};
use actix::prelude::*;
use ha_config::model::VirtualServerGroup;
use std::collections::BTreeMap;

/// The current desired tables (for status and tests).
#[derive(Message)]
#[rtype(result = "BTreeMap<String, VsOutcome>")]
pub struct GetTables;

pub struct CheckHub {
    /// Verdicts and desired outcomes (the pure part, shared with replay).
    state: HealthState,
    /// The kernel services last published per virtual server.
    published: BTreeMap<String, VsServices>,
    subscribers: Vec<Recipient<Desired>>,
    /// Every checker transition, for the node's event journal.
    events: Option<Recipient<CheckEvent>>,
    /// Whether each (virtual server, real server) was alive, for notify_up/notify_down.
    alive: BTreeMap<(String, String), bool>,
    /// Runs notify_up/down and quorum_up/down, in order.
    scripts: Option<crate::script::ScriptQueue>,
    default_user: Option<crate::script::RunAs>,
    scripts_enabled: bool,
}

/// The name a real server has in checker ids and events (`IP:PORT`).
pub fn rs_name(rs: &ha_config::model::RealServer) -> String {
    match rs.port {
        Some(p) if rs.ip.is_ipv6() => format!("[{}]:{p}", rs.ip),
        Some(p) => format!("{}:{p}", rs.ip),
        None => rs.ip.to_string(),
    }
}

impl CheckHub {
    /// `initial`: the verdict each checker starts with (up, or down with `alpha`).
    /// `version`: the config version `services` and `groups` come from.
    pub fn new(
        services: Vec<NamedVs>,
        groups: Vec<VirtualServerGroup>,
        version: u64,
        initial: BTreeMap<CheckerId, Health>,
        subscribers: Vec<Recipient<Desired>>,
    ) -> Self {
        let mut hub = CheckHub {
            state: HealthState::new(&[], Vec::new(), version, &BTreeMap::new()),
            published: BTreeMap::new(),
            subscribers,
            events: None,
            alive: BTreeMap::new(),
            scripts: None,
            default_user: None,
            scripts_enabled: true,
        };
        hub.reconfigure(services, groups, version, initial);
        hub
    }

    /// Brings the state to a configuration, then publishes every virtual server (and the
    /// removal of those that left) and that the version is settled.
    fn reconfigure(
        &mut self,
        services: Vec<NamedVs>,
        groups: Vec<VirtualServerGroup>,
        version: u64,
        ids: BTreeMap<CheckerId, Health>,
    ) {
        let r = self.state.reconfigure(&services, groups, version, &ids);
        let stale: Vec<String> = self
            .published
            .keys()
            .filter(|k| !self.state.tables().contains_key(*k))
            .cloned()
            .collect();
        for name in stale {
            self.publish(&name, Vec::new());
        }
        self.after_reconfigure(r);
    }

    /// Recomputes and publishes what a change to some virtual servers touches, then that
    /// the version is settled: O(change).
    fn update(&mut self, u: Update) {
        let r = self.state.update(u.upserts, &u.removed, u.version, &u.ids);
        for name in &u.removed {
            let gone: Vec<_> = self
                .alive
                .range((name.clone(), String::new())..)
                .take_while(|((vs, _), _)| vs == name)
                .map(|(k, _)| k.clone())
                .collect();
            for k in gone {
                self.alive.remove(&k);
            }
        }
        self.after_reconfigure(r);
    }

    fn after_reconfigure(&mut self, r: Reconfigured) {
        for name in &r.gone {
            self.publish(name, Vec::new());
        }
        for (i, rec) in r.recomputed {
            self.after_recompute(i, rec);
        }
        self.settled();
    }

    fn settled(&self) {
        for s in &self.subscribers {
            s.do_send(Desired::Settled {
                version: self.state.version(),
            });
        }
    }

    fn publish(&mut self, vs: &str, services: Vec<(SvcKey, Service)>) {
        if self.published.get(vs).map(|p| &p[..]) == Some(&services[..]) {
            return;
        }
        let services: VsServices = services.into();
        for s in &self.subscribers {
            s.do_send(Desired::Changed {
                vs: vs.to_string(),
                services: services.clone(),
                version: self.state.version(),
            });
        }
        if services.is_empty() {
            self.published.remove(vs);
        } else {
            self.published.insert(vs.to_string(), services);
        }
    }

    /// Forwards every checker transition to `events`.
    pub fn with_events(mut self, events: Option<Recipient<CheckEvent>>) -> Self {
        self.events = events;
        self
    }

    /// Runs no notify/quorum scripts (their user could not be resolved).
    pub fn without_scripts(mut self) -> Self {
        self.scripts_enabled = false;
        self
    }

    /// Scripts run as this user unless they name one.
    pub fn with_default_user(mut self, user: Option<crate::script::RunAs>) -> Self {
        self.default_user = user;
        self
    }

    fn script(
        &self,
        s: &Option<ha_config::model::Script>,
        extra: &[&str],
    ) -> Vec<(Vec<String>, Option<crate::script::RunAs>)> {
        let Some(s) = s else { return Vec::new() };
        let Ok(mut argv) = crate::script::split_argv(&s.cmd) else {
            return Vec::new();
        };
        argv.extend(extra.iter().map(|x| x.to_string()));
        let user = match &s.user {
            Some(u) => match crate::script::lookup_user(&u.user, u.group.as_deref()) {
                Ok(r) => Some(r),
                Err(e) => {
                    tracing::error!(script = %s.cmd, "script user: {e}; not run");
                    return Vec::new();
                }
            },
            None => self.default_user,
        };
        vec![(argv, user)]
    }

    /// Runs what a recomputation of virtual server `i` calls for: keepalived's
    /// notify_up / notify_down (per real server) and quorum_up / quorum_down scripts, and
    /// publishing its kernel services.
    fn after_recompute(&mut self, i: usize, rec: Recomputed) {
        let Some(nv) = self.state.service(i) else {
            return;
        };
        let (name, vs) = &**nv;
        let Some(outcome) = self.state.tables().get(name) else {
            return;
        };
        let mut batch = Vec::new();
        for rs in &vs.real_servers {
            let alive = self.state.verdict_of(name, rs).alive;
            let key = (name.clone(), rs_name(rs));
            if let Some(prev) = self.alive.insert(key, alive) {
                if prev != alive {
                    let s = if alive { &rs.notify_up } else { &rs.notify_down };
                    batch.extend(self.script(s, &[]));
                }
            }
        }
        if rec.quorum_was.is_some_and(|was| was != outcome.quorum_up) {
            let s = if outcome.quorum_up {
                &vs.quorum_up
            } else {
                &vs.quorum_down
            };
            batch.extend(self.script(s, &[]));
        }
        if let Some(q) = &self.scripts {
            q.push(batch);
        }
        if rec.changed {
            tracing::info!(vs = %name, dests = outcome.dests.len(), quorum_up = outcome.quorum_up,
                sorry = outcome.sorry_active, "desired table changed");
        }
        let name = name.clone();
        let services = self.state.kernel_services(i);
        self.publish(&name, services);
    }
}

impl Actor for CheckHub {
    type Context = Context<Self>;

    fn started(&mut self, _ctx: &mut Context<Self>) {
        if self.scripts_enabled {
            self.scripts = Some(crate::script::ScriptQueue::start("check hub".into()));
        }
    }
}

impl Handler<CheckEvent> for CheckHub {
    type Result = ();

    fn handle(&mut self, e: CheckEvent, _ctx: &mut Context<Self>) {
        // A probe stopped by a reconfiguration may still report once: ignore ids we dropped.
        let Some(i) = self.state.record(&e.id, e.to, e.weight, &e.reason) else {
            return;
        };
        if let Some(r) = &self.events {
            r.do_send(e.clone());
        }
        let rec = self.state.recompute(i);
        self.after_recompute(i, rec);
    }
}

/// A new configuration: these services, and the verdict of every checker id that is new
/// (ids that remain keep theirs; ids that left are forgotten).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Reconfigure {
    pub services: Vec<NamedVs>,
    pub groups: Vec<VirtualServerGroup>,
    pub version: u64,
    pub ids: BTreeMap<CheckerId, Health>,
}

impl Handler<Reconfigure> for CheckHub {
    type Result = ();

    fn handle(&mut self, r: Reconfigure, _ctx: &mut Context<Self>) {
        self.reconfigure(r.services, r.groups, r.version, r.ids);
    }
}

/// A change to some virtual servers only (the groups unchanged): see
/// [`HealthState::update`].
#[derive(Message)]
#[rtype(result = "()")]
pub struct Update {
    pub upserts: Vec<NamedVs>,
    pub removed: Vec<String>,
    pub version: u64,
    /// The checker ids of the upserted virtual servers, with the verdict a new one starts
    /// with.
    pub ids: BTreeMap<CheckerId, Health>,
}

impl Handler<Update> for CheckHub {
    type Result = ();

    fn handle(&mut self, u: Update, _ctx: &mut Context<Self>) {
        self.update(u);
    }
}

impl Handler<GetTables> for CheckHub {
    type Result = MessageResult<GetTables>;

    fn handle(&mut self, _: GetTables, _ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(self.state.tables().clone())
    }
}

/// Every real server of every virtual server: whether it is alive, and the reason of
/// its checkers' last results.
#[derive(Message)]
#[rtype(result = "Vec<ServiceHealth>")]
pub struct GetRealServers;

impl Handler<GetRealServers> for CheckHub {
    type Result = MessageResult<GetRealServers>;

    fn handle(&mut self, _: GetRealServers, _ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(self.state.real_servers())
    }
}

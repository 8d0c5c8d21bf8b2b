//! Keeps every checker's verdict and the resulting desired table of each virtual server;
//! publishes a virtual server's kernel services whenever they change (to the data plane),
//! and after each configuration that every service of that version has been sent.

use super::actor::{CheckEvent, CheckerId};
use super::schedule::Health;
use super::table::{desired, rs_verdict, VsOutcome};
use crate::lb::model::{Service, SvcKey};
use crate::lb::sync::Desired;
use actix::prelude::*;
use ha_config::model::{VirtualServer, VirtualServerGroup};
use std::collections::BTreeMap;

/// The current desired tables (for status and tests).
#[derive(Message)]
#[rtype(result = "BTreeMap<String, VsOutcome>")]
pub struct GetTables;

pub struct CheckHub {
    /// Virtual servers by display name, with their checkers' ids per real server.
    services: Vec<(String, VirtualServer)>,
    groups: Vec<VirtualServerGroup>,
    verdicts: BTreeMap<CheckerId, (Health, Option<u32>)>,
    tables: BTreeMap<String, VsOutcome>,
    /// The kernel services last published per virtual server.
    published: BTreeMap<String, Vec<(SvcKey, Service)>>,
    version: u64,
    subscribers: Vec<Recipient<Desired>>,
    /// The reason of each checker's last result.
    reasons: BTreeMap<CheckerId, String>,
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
        services: Vec<(String, VirtualServer)>,
        groups: Vec<VirtualServerGroup>,
        version: u64,
        initial: BTreeMap<CheckerId, Health>,
        subscribers: Vec<Recipient<Desired>>,
    ) -> Self {
        let verdicts = initial.into_iter().map(|(k, h)| (k, (h, None))).collect();
        let mut hub = CheckHub {
            services,
            groups,
            verdicts,
            tables: BTreeMap::new(),
            published: BTreeMap::new(),
            version,
            subscribers,
            reasons: BTreeMap::new(),
            events: None,
            alive: BTreeMap::new(),
            scripts: None,
            default_user: None,
            scripts_enabled: true,
        };
        for i in 0..hub.services.len() {
            hub.recompute(i);
        }
        hub.settled();
        hub
    }

    fn settled(&self) {
        for s in &self.subscribers {
            s.do_send(Desired::Settled {
                version: self.version,
            });
        }
    }

    fn publish(&mut self, vs: &str, services: Vec<(SvcKey, Service)>) {
        if self.published.get(vs) == Some(&services) {
            return;
        }
        for s in &self.subscribers {
            s.do_send(Desired::Changed {
                vs: vs.to_string(),
                services: services.clone(),
                version: self.version,
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

    fn recompute(&mut self, i: usize) {
        let (name, vs) = &self.services[i];
        let was_up = self.tables.get(name).map(|t| t.quorum_up).unwrap_or(true);
        let verdict_of = |rs: &ha_config::model::RealServer| {
            let rname = rs_name(rs);
            rs_verdict(
                self.verdicts
                    .iter()
                    .filter(|(id, _)| id.vs == *name && id.rs == rname)
                    .map(|(_, v)| *v),
            )
        };
        let outcome = desired(vs, verdict_of, was_up);
        // keepalived's notify_up / notify_down (per real server) and quorum_up / quorum_down.
        let mut batch = Vec::new();
        for rs in &vs.real_servers {
            let alive = verdict_of(rs).alive;
            let key = (name.clone(), rs_name(rs));
            if let Some(prev) = self.alive.insert(key, alive) {
                if prev != alive {
                    let s = if alive { &rs.notify_up } else { &rs.notify_down };
                    batch.extend(self.script(s, &[]));
                }
            }
        }
        if self.tables.contains_key(name) && outcome.quorum_up != was_up {
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
        let (name, vs) = &self.services[i];
        let services = crate::lb::desired::services(vs, &self.groups, &outcome);
        let name = name.clone();
        if self.tables.get(&name) != Some(&outcome) {
            tracing::info!(vs = %name, dests = outcome.dests.len(), quorum_up = outcome.quorum_up,
                sorry = outcome.sorry_active, "desired table changed");
            self.tables.insert(name.clone(), outcome);
        }
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
        if !self.verdicts.contains_key(&e.id) {
            return;
        }
        self.verdicts.insert(e.id.clone(), (e.to, e.weight));
        self.reasons.insert(e.id.clone(), e.reason.clone());
        if let Some(r) = &self.events {
            r.do_send(e.clone());
        }
        if let Some(i) = self.services.iter().position(|(n, _)| *n == e.id.vs) {
            self.recompute(i);
        }
    }
}

/// A new configuration: these services, and the verdict of every checker id that is new
/// (ids that remain keep theirs; ids that left are forgotten).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Reconfigure {
    pub services: Vec<(String, VirtualServer)>,
    pub groups: Vec<VirtualServerGroup>,
    pub version: u64,
    pub ids: BTreeMap<CheckerId, Health>,
}

impl Handler<Reconfigure> for CheckHub {
    type Result = ();

    fn handle(&mut self, r: Reconfigure, _ctx: &mut Context<Self>) {
        self.verdicts.retain(|id, _| r.ids.contains_key(id));
        self.reasons.retain(|id, _| r.ids.contains_key(id));
        for (id, h) in r.ids {
            self.verdicts.entry(id).or_insert((h, None));
        }
        let names: Vec<String> = r.services.iter().map(|(n, _)| n.clone()).collect();
        self.tables.retain(|n, _| names.contains(n));
        let gone: Vec<String> = self
            .published
            .keys()
            .filter(|n| !names.contains(n))
            .cloned()
            .collect();
        for n in gone {
            self.publish(&n, Vec::new());
        }
        self.services = r.services;
        self.groups = r.groups;
        self.version = r.version;
        for i in 0..self.services.len() {
            self.recompute(i);
        }
        self.settled();
    }
}

impl Handler<GetTables> for CheckHub {
    type Result = MessageResult<GetTables>;

    fn handle(&mut self, _: GetTables, _ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(self.tables.clone())
    }
}

/// Every real server of every virtual server: whether it is alive, and the reason of
/// its checkers' last results.
#[derive(Message)]
#[rtype(result = "Vec<ServiceHealth>")]
pub struct GetRealServers;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceHealth {
    pub vs: String,
    pub quorum_up: bool,
    /// (real server, alive, reason)
    pub real_servers: Vec<(String, bool, String)>,
}

impl Handler<GetRealServers> for CheckHub {
    type Result = MessageResult<GetRealServers>;

    fn handle(&mut self, _: GetRealServers, _ctx: &mut Context<Self>) -> Self::Result {
        let mut out = Vec::new();
        for (name, vs) in &self.services {
            let mut rss = Vec::new();
            for rs in &vs.real_servers {
                let rname = rs_name(rs);
                let mine: Vec<(&CheckerId, &(Health, Option<u32>))> = self
                    .verdicts
                    .iter()
                    .filter(|(id, _)| id.vs == *name && id.rs == rname)
                    .collect();
                let alive = rs_verdict(mine.iter().map(|(_, v)| **v)).alive;
                let reason = mine
                    .iter()
                    .filter_map(|(id, _)| self.reasons.get(*id).map(|r| format!("{}: {r}", id.checker)))
                    .collect::<Vec<_>>()
                    .join("; ");
                let reason = if reason.is_empty() {
                    if mine.is_empty() {
                        "no checker".to_string()
                    } else {
                        "not checked yet".to_string()
                    }
                } else {
                    reason
                };
                rss.push((rname, alive, reason));
            }
            out.push(ServiceHealth {
                vs: name.clone(),
                quorum_up: self.tables.get(name).map(|t| t.quorum_up).unwrap_or(true),
                real_servers: rss,
            });
        }
        MessageResult(out)
    }
}

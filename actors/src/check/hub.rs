//! Keeps every checker's verdict and the resulting desired table of each virtual server;
//! publishes a virtual server's table whenever it changes (to the data plane).

use super::actor::{CheckEvent, CheckerId};
use super::schedule::Health;
use super::table::{desired, rs_verdict, VsOutcome};
use actix::prelude::*;
use ha_config::model::VirtualServer;
use std::collections::BTreeMap;

/// The desired table of one virtual server changed.
#[derive(Clone, Debug, PartialEq, Eq, Message)]
#[rtype(result = "()")]
pub struct DesiredChanged {
    pub vs: String,
    pub outcome: VsOutcome,
}

/// The current desired tables (for status and tests).
#[derive(Message)]
#[rtype(result = "BTreeMap<String, VsOutcome>")]
pub struct GetTables;

pub struct CheckHub {
    /// Virtual servers by display name, with their checkers' ids per real server.
    services: Vec<(String, VirtualServer)>,
    verdicts: BTreeMap<CheckerId, (Health, Option<u32>)>,
    tables: BTreeMap<String, VsOutcome>,
    subscribers: Vec<Recipient<DesiredChanged>>,
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
    pub fn new(
        services: Vec<(String, VirtualServer)>,
        initial: BTreeMap<CheckerId, Health>,
        subscribers: Vec<Recipient<DesiredChanged>>,
    ) -> Self {
        let verdicts = initial.into_iter().map(|(k, h)| (k, (h, None))).collect();
        let mut hub = CheckHub {
            services,
            verdicts,
            tables: BTreeMap::new(),
            subscribers,
            alive: BTreeMap::new(),
            scripts: None,
            default_user: None,
            scripts_enabled: true,
        };
        for i in 0..hub.services.len() {
            hub.recompute(i);
        }
        hub
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
        let (name, _) = &self.services[i];
        if self.tables.get(name) != Some(&outcome) {
            tracing::info!(vs = %name, dests = outcome.dests.len(), quorum_up = outcome.quorum_up,
                sorry = outcome.sorry_active, "desired table changed");
            for s in &self.subscribers {
                s.do_send(DesiredChanged {
                    vs: name.clone(),
                    outcome: outcome.clone(),
                });
            }
            self.tables.insert(name.clone(), outcome);
        }
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
    pub ids: BTreeMap<CheckerId, Health>,
}

impl Handler<Reconfigure> for CheckHub {
    type Result = ();

    fn handle(&mut self, r: Reconfigure, _ctx: &mut Context<Self>) {
        self.verdicts.retain(|id, _| r.ids.contains_key(id));
        for (id, h) in r.ids {
            self.verdicts.entry(id).or_insert((h, None));
        }
        let names: Vec<String> = r.services.iter().map(|(n, _)| n.clone()).collect();
        self.tables.retain(|n, _| names.contains(n));
        self.services = r.services;
        for i in 0..self.services.len() {
            self.recompute(i);
        }
    }
}

impl Handler<GetTables> for CheckHub {
    type Result = MessageResult<GetTables>;

    fn handle(&mut self, _: GetTables, _ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(self.tables.clone())
    }
}

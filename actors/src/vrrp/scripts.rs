//! One actor per `vrrp_script`: runs it every `interval` (never two at once), applies
//! rise/fall, and tells the instances tracking it when its verdict changes.

use super::tracking::ScriptHealth;
use crate::script::{self, Outcome, RunAs};
use actix::prelude::*;
use std::time::Duration;

/// A script's verdict changed (or was first decided): `good` = succeeding.
#[derive(Clone, Debug, PartialEq, Eq, Message)]
#[rtype(result = "()")]
pub struct ScriptVerdict {
    pub script: String,
    pub good: bool,
}

/// One more instance tracks the script: it is told the current verdict at once.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Subscribe(pub Recipient<ScriptVerdict>);

/// The script is no longer tracked (or its definition changed): stop running it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Retire;

pub struct VrrpScriptActor {
    name: String,
    argv: Vec<String>,
    run_as: Option<RunAs>,
    interval: Duration,
    timeout: Duration,
    health: ScriptHealth,
    running: bool,
    subscribers: Vec<Recipient<ScriptVerdict>>,
}

impl VrrpScriptActor {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        name: String,
        argv: Vec<String>,
        run_as: Option<RunAs>,
        interval: Duration,
        timeout: Duration,
        health: ScriptHealth,
        subscribers: Vec<Recipient<ScriptVerdict>>,
    ) -> Self {
        VrrpScriptActor {
            name,
            argv,
            run_as,
            interval,
            timeout,
            health,
            running: false,
            subscribers,
        }
    }

    fn launch(&mut self, ctx: &mut Context<Self>) {
        if self.running {
            return; // keepalived does not overlap runs either
        }
        self.running = true;
        let argv = self.argv.clone();
        let run_as = self.run_as;
        let timeout = self.timeout;
        let fut = async move { script::run(&argv, run_as, timeout).await };
        ctx.spawn(fut.into_actor(self).map(|outcome, act, _| {
            act.running = false;
            act.record(outcome);
        }));
    }

    fn record(&mut self, outcome: Outcome) {
        let ok = outcome.success();
        if let Some(good) = self.health.record(ok) {
            if good {
                tracing::info!(script = %self.name, "VRRP script succeeded");
            } else {
                tracing::info!(script = %self.name, outcome = ?outcome, "VRRP script failed");
            }
            // Instances that were stopped by a reconfiguration drop out here.
            self.subscribers.retain(|s| s.connected());
            for s in &self.subscribers {
                s.do_send(ScriptVerdict {
                    script: self.name.clone(),
                    good,
                });
            }
        }
    }
}

impl Handler<Subscribe> for VrrpScriptActor {
    type Result = ();

    fn handle(&mut self, Subscribe(s): Subscribe, _ctx: &mut Context<Self>) {
        if self.health.known() {
            s.do_send(ScriptVerdict {
                script: self.name.clone(),
                good: self.health.good(),
            });
        }
        self.subscribers.push(s);
    }
}

impl Handler<Retire> for VrrpScriptActor {
    type Result = ();

    fn handle(&mut self, _: Retire, ctx: &mut Context<Self>) {
        tracing::debug!(script = %self.name, "VRRP script retired");
        ctx.stop();
    }
}

impl Actor for VrrpScriptActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // A script that starts failed (`init_fail`) is known at once.
        if self.health.known() {
            for s in &self.subscribers {
                s.do_send(ScriptVerdict {
                    script: self.name.clone(),
                    good: self.health.good(),
                });
            }
        }
        self.launch(ctx);
        ctx.run_interval(self.interval, |act, ctx| act.launch(ctx));
    }
}

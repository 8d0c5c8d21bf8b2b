//! One actor per `vrrp_script`: runs it every `interval` (never two at once), applies
//! rise/fall, and tells the instances tracking it when its verdict changes.

use super::trackers::{Retire, Subscribe, Subscribers, TrackerReading};
use super::tracking::{Reading, ScriptHealth, TrackerId};
use crate::script::{self, Outcome, RunAs};
use actix::prelude::*;
use ha_config::model::TrackedKind;
use std::time::Duration;

pub struct VrrpScriptActor {
    name: String,
    argv: Vec<String>,
    run_as: Option<RunAs>,
    interval: Duration,
    timeout: Duration,
    health: ScriptHealth,
    running: bool,
    subscribers: Subscribers,
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
        subscribers: Vec<Recipient<TrackerReading>>,
    ) -> Self {
        let id = TrackerId {
            kind: TrackedKind::Script,
            name: name.clone(),
        };
        let subscribers = Subscribers::new(id, subscribers);
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
            self.subscribers.tell(Reading::Good(good));
        }
    }
}

impl Handler<Subscribe> for VrrpScriptActor {
    type Result = ();

    fn handle(&mut self, Subscribe(s): Subscribe, _ctx: &mut Context<Self>) {
        self.subscribers.add(s);
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
            self.subscribers.tell(Reading::Good(self.health.good()));
        }
        self.launch(ctx);
        ctx.run_interval(self.interval, |act, ctx| act.launch(ctx));
    }
}

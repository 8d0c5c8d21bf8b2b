//! Runs the VRRP instances (and the `vrrp_script`s they track) of one director's
//! configuration; reconfigures them incrementally (an instance whose configuration did
//! not change keeps running, with its state); stops them gracefully (priority-0 adverts,
//! VIPs removed, notify_stop). Used by `hanode vrrp` and by the director's runtime.

use super::actor::JoinGroup;
use super::actor::{InstanceActor, Stop};
use super::file_tracker::FileTracker;
use super::io::{self, Addresses, GarpSender, VrrpSocket};
use super::process_tracker::ProcessTracker;
use super::scripts::VrrpScriptActor;
use super::setup;
use super::sync_group::SyncGroupActor;
use super::trackers::{Retire, Subscribe, TrackerReading};
use super::tracking::ScriptHealth;
use super::tracking::TrackerId;
use crate::script::{self, lookup_user, RunAs};
use actix::prelude::*;
use ha_config::model::{
    GlobalDefs, StaticRouting, SyncGroup, TrackFile, TrackProcess, TrackedKind, VrrpScript,
};
use ha_config::Config;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Setup(#[from] setup::SetupError),
    #[error("vrrp_instance {instance}: {source}")]
    Io {
        instance: String,
        #[source]
        source: io::IoError,
    },
    #[error("vrrp_script {script}: {message}")]
    Script { script: String, message: String },
}

/// What an instance runs from: when any of it changes, the instance is restarted; when
/// none does, a reconfiguration leaves it running with its state (MASTER stays MASTER).
#[derive(Clone, Debug, PartialEq)]
struct Unit {
    spec: setup::InstanceSpec,
    global: GlobalDefs,
    /// The definitions of what it tracks.
    trackers: Vec<Option<TrackerDef>>,
    /// The sync group it belongs to.
    group: Option<SyncGroup>,
}

/// The definition of a tracked object.
#[derive(Clone, Debug, PartialEq)]
enum TrackerDef {
    Script(VrrpScript),
    File(TrackFile),
    Process(TrackProcess),
}

fn tracker_def(config: &Config, id: &TrackerId) -> Option<TrackerDef> {
    match id.kind {
        TrackedKind::Script => config.vrrp_script(&id.name).cloned().map(TrackerDef::Script),
        TrackedKind::File => config.track_file(&id.name).cloned().map(TrackerDef::File),
        TrackedKind::Process => config.track_process(&id.name).cloned().map(TrackerDef::Process),
        TrackedKind::Interface => None,
    }
}

/// A running tracker actor (script, file or process).
struct RunningTracker {
    def: TrackerDef,
    subscribe: Recipient<Subscribe>,
    retire: Recipient<Retire>,
}

/// The running VRRP part of a director.
#[derive(Default)]
pub struct Running {
    /// Every running instance, by name order.
    pub instances: Vec<Addr<InstanceActor>>,
    units: BTreeMap<String, (Unit, Addr<InstanceActor>)>,
    trackers: BTreeMap<TrackerId, RunningTracker>,
    groups: BTreeMap<String, (SyncGroup, Addr<SyncGroupActor>)>,
    /// The quorum gate's verdict given to instances started from now on (they begin in
    /// FAULT without contact, never holding a VIP for a moment).
    pub quorum: QuorumVerdict,
    /// The `static_*` addresses, routes and rules asked for last, and (behind the lock:
    /// changes apply one after another, in order) those installed.
    statics: (StaticRouting, std::sync::Arc<tokio::sync::Mutex<StaticRouting>>),
    /// The `smtp_alert` mailer, with the settings it was started with.
    mailer: Option<(super::alert::MailSettings, Addr<super::alert::Mailer>)>,
    /// Sync groups that mail their state changes (their STOP too).
    alerting_groups: BTreeSet<String>,
}

/// Whether this director is in contact with a majority of the voters (the quorum gate).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuorumVerdict(pub bool);

impl Default for QuorumVerdict {
    fn default() -> Self {
        QuorumVerdict(true)
    }
}

fn default_user(config: &Config) -> Result<Option<RunAs>, RunError> {
    script::default_user(&config.global).map_err(|message| RunError::Script {
        script: "(script_user)".into(),
        message,
    })
}

fn units(config: &Config) -> Result<BTreeMap<String, Unit>, RunError> {
    let specs = setup::specs(config, |ifname| {
        io::iface(ifname)
            .map(|i| setup::IfAddrs {
                v4: i.primary_v4,
                link_local_v6: i.link_local_v6,
            })
            .unwrap_or_default()
    })?;
    Ok(specs
        .into_iter()
        .map(|spec| {
            let trackers = spec
                .trackers
                .iter()
                .map(|(id, _)| tracker_def(config, id))
                .collect();
            let group = config
                .sync_groups
                .iter()
                .find(|g| g.members.contains(&spec.name))
                .cloned();
            let unit = Unit {
                // The static routing is the runner's, not an instance's: a change of it
                // restarts no instance.
                global: GlobalDefs {
                    statics: StaticRouting::default(),
                    ..config.global.clone()
                },
                trackers,
                group,
                spec,
            };
            (unit.spec.name.clone(), unit)
        })
        .collect())
}

/// Starts one actor per instance and per tracked script (inside an actix System).
pub fn start(config: &Config) -> Result<Running, RunError> {
    start_with(config, None, false)
}

/// As [`start`], with each transition reported to `events`, and the config fence
/// held from the start when `fenced`.
pub fn start_with(
    config: &Config,
    events: Option<Recipient<super::actor::VrrpEvent>>,
    fenced: bool,
) -> Result<Running, RunError> {
    let mut running = Running::default();
    running.start_missing(config, events, fenced)?;
    Ok(running)
}

impl Running {
    /// Takes out the instances that `config` changes or drops (with the sync groups and
    /// scripts that go with them), to be stopped with [`stop_instances`] before
    /// [`Running::start_missing`] starts their replacements. Unchanged instances stay.
    pub fn take_stale(&mut self, config: &Config) -> Result<Vec<(String, Addr<InstanceActor>)>, RunError> {
        let want = units(config)?;
        let stale: Vec<String> = self
            .units
            .iter()
            .filter(|(name, (unit, _))| want.get(*name) != Some(unit))
            .map(|(name, _)| name.clone())
            .collect();
        // A group goes when its definition changes or one of its members restarts (the
        // new group then has every member join it again).
        self.groups.retain(|name, (def, _)| {
            config.sync_groups.iter().any(|g| &g.name == name && g == def)
                && !def.members.iter().any(|m| stale.contains(m))
        });
        let mut out = Vec::new();
        for name in stale {
            if let Some((_, addr)) = self.units.remove(&name) {
                out.push((name, addr));
            }
        }
        // A tracker goes when its definition changes or nothing running tracks it.
        let tracked: BTreeSet<&TrackerId> = want
            .values()
            .flat_map(|u| u.spec.trackers.iter().map(|(n, _)| n))
            .collect();
        let gone: Vec<TrackerId> = self
            .trackers
            .iter()
            .filter(|(id, t)| !tracked.contains(id) || tracker_def(config, id).as_ref() != Some(&t.def))
            .map(|(id, _)| id.clone())
            .collect();
        for id in gone {
            if let Some(t) = self.trackers.remove(&id) {
                t.retire.do_send(Retire);
            }
        }
        self.instances = self.units.values().map(|(_, a)| a.clone()).collect();
        Ok(out)
    }

    /// Starts what `config` has and is not running: instances, their scripts and sync
    /// groups. Stops at the first instance that cannot start (those started before it
    /// keep running).
    pub fn start_missing(
        &mut self,
        config: &Config,
        events: Option<Recipient<super::actor::VrrpEvent>>,
        fenced: bool,
    ) -> Result<Vec<String>, RunError> {
        // The director's own routing does not wait for (or on) its instances.
        self.install_statics(&config.global.statics);
        self.start_mailer(config);
        let want = units(config)?;
        let mut started = Vec::new();
        let result = self.start_units(config, &want, events, fenced, &mut started);
        self.instances = self.units.values().map(|(_, a)| a.clone()).collect();
        result.map(|()| started)
    }

    fn start_units(
        &mut self,
        config: &Config,
        want: &BTreeMap<String, Unit>,
        events: Option<Recipient<super::actor::VrrpEvent>>,
        fenced: bool,
        started: &mut Vec<String>,
    ) -> Result<(), RunError> {
        let user = default_user(config)?;
        let addrs = Addresses::open().map_err(|source| RunError::Io {
            instance: "(netlink)".into(),
            source,
        })?;
        let mut new_subscribers: BTreeMap<TrackerId, Vec<Recipient<TrackerReading>>> = BTreeMap::new();
        for (name, unit) in want {
            if self.units.contains_key(name) {
                continue;
            }
            let spec = unit.spec.clone();
            let io_err = |source| RunError::Io {
                instance: spec.name.clone(),
                source,
            };
            let ifc = io::iface(&spec.interface).map_err(io_err)?;
            let socket = VrrpSocket::open(&ifc, spec.src, spec.multicast).map_err(io_err)?;
            let garp = GarpSender::open(&ifc).map_err(io_err)?;
            let tracked: Vec<TrackerId> = spec.trackers.iter().map(|(n, _)| n.clone()).collect();
            let mailer = self.mailer.as_ref().map(|(_, m)| m.clone().recipient());
            let addr = InstanceActor::new(spec, ifc, socket, addrs.clone(), garp, events.clone(), user)
                .with_mailer(mailer)
                .fenced(fenced)
                .in_contact(self.quorum.0)
                .start();
            for id in tracked {
                match self.trackers.get(&id) {
                    Some(t) => t.subscribe.do_send(Subscribe(addr.clone().recipient())),
                    None => new_subscribers
                        .entry(id)
                        .or_default()
                        .push(addr.clone().recipient()),
                }
            }
            self.units.insert(name.clone(), (unit.clone(), addr));
            started.push(name.clone());
        }
        for g in &config.sync_groups {
            if self.groups.contains_key(&g.name) {
                continue;
            }
            let members: Vec<_> = g
                .members
                .iter()
                .filter_map(|m| self.units.get(m).map(|(_, a)| (m.clone(), a.clone().recipient())))
                .collect();
            let alerts = g
                .smtp_alert
                .or(config.global.smtp_alert_vrrp)
                .or(config.global.smtp_alert)
                .unwrap_or(false);
            if alerts {
                self.alerting_groups.insert(g.name.clone());
            } else {
                self.alerting_groups.remove(&g.name);
            }
            let mailer = self
                .mailer
                .as_ref()
                .filter(|_| alerts)
                .map(|(_, m)| m.clone().recipient());
            let group = SyncGroupActor::new(g.name.clone(), members, g.notify.clone(), user)
                .with_mailer(mailer)
                .start();
            for m in &g.members {
                if let Some((_, a)) = self.units.get(m) {
                    a.do_send(JoinGroup(group.clone().recipient()));
                }
            }
            self.groups.insert(g.name.clone(), (g.clone(), group));
        }
        for (id, subs) in new_subscribers {
            let Some(def) = tracker_def(config, &id) else {
                continue;
            };
            let running = match &def {
                TrackerDef::Script(s) => {
                    let addr = start_script(&id.name, s, user, subs)?;
                    RunningTracker {
                        def,
                        subscribe: addr.clone().recipient(),
                        retire: addr.recipient(),
                    }
                }
                TrackerDef::File(f) => {
                    let addr = FileTracker::new(f.clone(), subs).start();
                    RunningTracker {
                        def,
                        subscribe: addr.clone().recipient(),
                        retire: addr.recipient(),
                    }
                }
                TrackerDef::Process(p) => {
                    let addr = ProcessTracker::new(p.clone(), subs).start();
                    RunningTracker {
                        def,
                        subscribe: addr.clone().recipient(),
                        retire: addr.recipient(),
                    }
                }
            };
            self.trackers.insert(id, running);
        }
        Ok(())
    }

    /// Starts (or restarts, when the settings change) the mailer of `smtp_alert`.
    fn start_mailer(&mut self, config: &Config) {
        let want = super::alert::MailSettings::of(&config.global);
        if want.as_ref() == self.mailer.as_ref().map(|(s, _)| s) {
            return;
        }
        self.mailer = want.map(|s| (s.clone(), super::alert::Mailer::new(s).start()));
    }

    /// Brings the `static_*` blocks installed to `want`: what left them goes (rules,
    /// routes, then addresses), what is new comes (addresses, routes, then rules), as
    /// keepalived orders them.
    fn install_statics(&mut self, want: &StaticRouting) {
        if *want == self.statics.0 {
            return;
        }
        self.statics.0 = want.clone();
        let new = want.clone();
        let installed = self.statics.1.clone();
        let addrs = match Addresses::open() {
            Ok(a) => a,
            Err(e) => {
                tracing::error!("static addresses, routes and rules: {e}");
                return;
            }
        };
        // The lock is taken in the order the changes come (tokio's mutex is fair), so a
        // quick second change waits for the first.
        actix::spawn(async move {
            let mut have = installed.lock().await;
            let minus = |a: &StaticRouting, b: &StaticRouting| StaticRouting {
                addresses: a
                    .addresses
                    .iter()
                    .filter(|x| !b.addresses.contains(x))
                    .cloned()
                    .collect(),
                routes: a
                    .routes
                    .iter()
                    .filter(|x| !b.routes.contains(x))
                    .cloned()
                    .collect(),
                rules: a.rules.iter().filter(|x| !b.rules.contains(x)).cloned().collect(),
            };
            remove_statics(&addrs, &minus(&have, &new)).await;
            add_statics(&addrs, &minus(&new, &have)).await;
            *have = new;
        });
    }

    /// Names of the running instances.
    pub fn names(&self) -> Vec<String> {
        self.units.keys().cloned().collect()
    }
}

fn start_script(
    name: &str,
    s: &VrrpScript,
    user: Option<RunAs>,
    subs: Vec<Recipient<TrackerReading>>,
) -> Result<Addr<VrrpScriptActor>, RunError> {
    let argv = script::split_argv(&s.script).map_err(|message| RunError::Script {
        script: name.to_string(),
        message,
    })?;
    let run_as = match &s.user {
        Some(u) => Some(
            lookup_user(&u.user, u.group.as_deref()).map_err(|message| RunError::Script {
                script: name.to_string(),
                message,
            })?,
        ),
        None => user,
    };
    let interval = Duration::from_micros(s.interval.0).max(Duration::from_millis(10));
    let timeout = s.timeout.map(|t| Duration::from_micros(t.0)).unwrap_or(interval);
    let health = ScriptHealth::new(s.rise, s.fall, s.init_fail);
    Ok(VrrpScriptActor::new(name.to_string(), argv, run_as, interval, timeout, health, subs).start())
}

/// Stops these instances gracefully, all at once, and waits for them.
pub async fn stop_instances(instances: &[Addr<InstanceActor>]) {
    // All at once: stopping them one by one would make the peers' sync groups flap.
    let stops: Vec<_> = instances.iter().map(|a| a.send(Stop)).collect();
    for s in stops {
        let _ = s.await;
    }
    // Each answer came after its VIPs were removed; give the last adverts a moment.
    if !instances.is_empty() {
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Stops every instance gracefully and waits for them; the trackers stop too, and the
/// `static_*` addresses, routes and rules are removed.
pub async fn stop(running: &Running) {
    stop_instances(&running.instances).await;
    if let Some((_, m)) = &running.mailer {
        for g in running
            .groups
            .keys()
            .filter(|g| running.alerting_groups.contains(*g))
        {
            m.do_send(super::alert::Alert {
                source: super::alert::Source::Group,
                name: g.clone(),
                state: "STOP".into(),
            });
        }
        // The STOP mails go out before the process exits (or are given up after a while).
        let _ = tokio::time::timeout(Duration::from_secs(5), m.send(super::alert::Flush)).await;
    }
    for t in running.trackers.values() {
        t.retire.do_send(Retire);
    }
    // After any change still being applied.
    let mut have = running.statics.1.lock().await;
    if !have.is_empty() {
        match Addresses::open() {
            Ok(a) => remove_statics(&a, &have).await,
            Err(e) => tracing::error!("removing static addresses, routes and rules: {e}"),
        }
        *have = StaticRouting::default();
    }
}

fn static_address(v: &ha_config::model::VipAddr) -> Option<(u32, super::setup::VipSpec)> {
    let dev = v.dev.as_deref()?;
    Some((super::io::index_of(dev)?, super::setup::VipSpec::of(v, false)))
}

async fn add_statics(addrs: &Addresses, st: &StaticRouting) {
    let routing = addrs.routing();
    for v in &st.addresses {
        let words = ha_config::printer::vip_words(v).join(" ");
        match static_address(v) {
            Some((i, spec)) => match addrs.add(i, &spec).await {
                Ok(()) => tracing::info!(address = %words, "static address added"),
                Err(e) => tracing::error!(address = %words, "adding static address: {e}"),
            },
            None => tracing::error!(address = %words, "adding static address: no such interface"),
        }
    }
    for r in &st.routes {
        let words = ha_config::printer::route_words(r).join(" ");
        match routing.add_route(r).await {
            Ok(()) => tracing::info!(route = %words, "static route added"),
            Err(e) => tracing::error!(route = %words, "adding static route: {e}"),
        }
    }
    for r in &st.rules {
        let words = ha_config::printer::rule_words(r).join(" ");
        match routing.add_rule(r).await {
            Ok(()) => tracing::info!(rule = %words, "static rule added"),
            Err(e) => tracing::error!(rule = %words, "adding static rule: {e}"),
        }
    }
}

async fn remove_statics(addrs: &Addresses, st: &StaticRouting) {
    let routing = addrs.routing();
    for r in &st.rules {
        if let Err(e) = routing.del_rule(r).await {
            tracing::error!(rule = %ha_config::printer::rule_words(r).join(" "), "removing static rule: {e}");
        }
    }
    for r in &st.routes {
        if let Err(e) = routing.del_route(r).await {
            tracing::error!(route = %ha_config::printer::route_words(r).join(" "), "removing static route: {e}");
        }
    }
    for v in &st.addresses {
        if let Some((i, spec)) = static_address(v) {
            if let Err(e) = addrs.del(i, spec.addr, spec.prefix).await {
                tracing::error!(address = %ha_config::printer::vip_words(v).join(" "), "removing static address: {e}");
            }
        }
    }
}

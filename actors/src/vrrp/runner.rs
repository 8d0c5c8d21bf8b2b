//! Runs the VRRP instances (and the `vrrp_script`s they track) of one director's
//! configuration; reconfigures them incrementally (an instance whose configuration did
//! not change keeps running, with its state); stops them gracefully (priority-0 adverts,
//! VIPs removed, notify_stop). Used by `hanode vrrp` and by the director's runtime.

use super::actor::JoinGroup;
use super::actor::{InstanceActor, Stop};
use super::io::{self, Addresses, GarpSender, VrrpSocket};
use super::scripts::{Retire, ScriptVerdict, Subscribe, VrrpScriptActor};
use super::setup;
use super::sync_group::SyncGroupActor;
use super::tracking::ScriptHealth;
use crate::script::{self, lookup_user, RunAs};
use actix::prelude::*;
use ha_config::model::{GlobalDefs, SyncGroup, VrrpScript};
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
    /// The definitions of the scripts it tracks.
    scripts: Vec<Option<VrrpScript>>,
    /// The sync group it belongs to.
    group: Option<SyncGroup>,
}

struct Script {
    def: VrrpScript,
    addr: Addr<VrrpScriptActor>,
}

/// The running VRRP part of a director.
#[derive(Default)]
pub struct Running {
    /// Every running instance, by name order.
    pub instances: Vec<Addr<InstanceActor>>,
    units: BTreeMap<String, (Unit, Addr<InstanceActor>)>,
    scripts: BTreeMap<String, Script>,
    groups: BTreeMap<String, (SyncGroup, Addr<SyncGroupActor>)>,
    /// The quorum gate's verdict given to instances started from now on (they begin in
    /// FAULT without contact, never holding a VIP for a moment).
    pub quorum: QuorumVerdict,
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
            let scripts = spec
                .track_scripts
                .iter()
                .map(|(n, _)| config.vrrp_script(n).cloned())
                .collect();
            let group = config
                .sync_groups
                .iter()
                .find(|g| g.members.contains(&spec.name))
                .cloned();
            let unit = Unit {
                global: config.global.clone(),
                scripts,
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
        // A script goes when its definition changes or nothing running tracks it.
        let tracked: BTreeSet<&String> = want
            .values()
            .flat_map(|u| u.spec.track_scripts.iter().map(|(n, _)| n))
            .collect();
        let gone: Vec<String> = self
            .scripts
            .iter()
            .filter(|(name, s)| !tracked.contains(name) || config.vrrp_script(name) != Some(&s.def))
            .map(|(name, _)| name.clone())
            .collect();
        for name in gone {
            if let Some(s) = self.scripts.remove(&name) {
                s.addr.do_send(Retire);
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
        let mut new_subscribers: BTreeMap<String, Vec<Recipient<ScriptVerdict>>> = BTreeMap::new();
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
            let tracked: Vec<String> = spec.track_scripts.iter().map(|(n, _)| n.clone()).collect();
            let addr = InstanceActor::new(spec, ifc, socket, addrs.clone(), garp, events.clone(), user)
                .fenced(fenced)
                .in_contact(self.quorum.0)
                .start();
            for script in tracked {
                match self.scripts.get(&script) {
                    Some(s) => s.addr.do_send(Subscribe(addr.clone().recipient())),
                    None => new_subscribers
                        .entry(script)
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
            let group = SyncGroupActor::new(g.name.clone(), members, g.notify.clone(), user).start();
            for m in &g.members {
                if let Some((_, a)) = self.units.get(m) {
                    a.do_send(JoinGroup(group.clone().recipient()));
                }
            }
            self.groups.insert(g.name.clone(), (g.clone(), group));
        }
        for (name, subs) in new_subscribers {
            let Some(s) = config.vrrp_script(&name) else {
                continue;
            };
            let argv = script::split_argv(&s.script).map_err(|message| RunError::Script {
                script: name.clone(),
                message,
            })?;
            let run_as =
                match &s.user {
                    Some(u) => Some(lookup_user(&u.user, u.group.as_deref()).map_err(|message| {
                        RunError::Script {
                            script: name.clone(),
                            message,
                        }
                    })?),
                    None => user,
                };
            let interval = Duration::from_micros(s.interval.0).max(Duration::from_millis(10));
            let timeout = s.timeout.map(|t| Duration::from_micros(t.0)).unwrap_or(interval);
            let health = ScriptHealth::new(s.rise, s.fall, s.init_fail);
            let addr =
                VrrpScriptActor::new(name.clone(), argv, run_as, interval, timeout, health, subs).start();
            self.scripts.insert(name, Script { def: s.clone(), addr });
        }
        Ok(())
    }

    /// Names of the running instances.
    pub fn names(&self) -> Vec<String> {
        self.units.keys().cloned().collect()
    }
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

/// Stops every instance gracefully and waits for them; the scripts stop too.
pub async fn stop(running: &Running) {
    stop_instances(&running.instances).await;
    for s in running.scripts.values() {
        s.addr.do_send(Retire);
    }
}

//! Runs the VRRP instances (and the `vrrp_script`s they track) of one director's
//! configuration; stops them gracefully (priority-0 adverts, VIPs removed, notify_stop).
//! Used by `hanode vrrp`.

use super::actor::JoinGroup;
use super::actor::{InstanceActor, Stop};
use super::io::{self, Addresses, GarpSender, VrrpSocket};
use super::scripts::{ScriptVerdict, VrrpScriptActor};
use super::setup;
use super::sync_group::SyncGroupActor;
use super::tracking::ScriptHealth;
use crate::script::{self, lookup_user, RunAs};
use actix::prelude::*;
use ha_config::Config;
use std::collections::BTreeMap;
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

/// The running VRRP part of a director.
pub struct Running {
    pub instances: Vec<Addr<InstanceActor>>,
    pub scripts: Vec<Addr<VrrpScriptActor>>,
    pub groups: Vec<Addr<SyncGroupActor>>,
}

fn default_user(config: &Config) -> Result<Option<RunAs>, RunError> {
    script::default_user(&config.global).map_err(|message| RunError::Script {
        script: "(script_user)".into(),
        message,
    })
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
    let addrs = Addresses::open().map_err(|source| RunError::Io {
        instance: "(netlink)".into(),
        source,
    })?;
    let user = default_user(config)?;
    let specs = setup::specs(config, |ifname| {
        io::iface(ifname)
            .map(|i| setup::IfAddrs {
                v4: i.primary_v4,
                link_local_v6: i.link_local_v6,
            })
            .unwrap_or_default()
    })?;
    let mut instances = Vec::new();
    let mut by_name: BTreeMap<String, Addr<InstanceActor>> = BTreeMap::new();
    let mut subscribers: BTreeMap<String, Vec<Recipient<ScriptVerdict>>> = BTreeMap::new();
    for spec in specs {
        let io_err = |source| RunError::Io {
            instance: spec.name.clone(),
            source,
        };
        let ifc = io::iface(&spec.interface).map_err(io_err)?;
        let socket = VrrpSocket::open(&ifc, spec.src, spec.multicast).map_err(io_err)?;
        let garp = GarpSender::open(&ifc).map_err(io_err)?;
        let tracked: Vec<String> = spec.track_scripts.iter().map(|(n, _)| n.clone()).collect();
        let name = spec.name.clone();
        let addr = InstanceActor::new(spec, ifc, socket, addrs.clone(), garp, events.clone(), user)
            .fenced(fenced)
            .start();
        for name in tracked {
            subscribers
                .entry(name)
                .or_default()
                .push(addr.clone().recipient());
        }
        by_name.insert(name, addr.clone());
        instances.push(addr);
    }
    let mut groups = Vec::new();
    for g in &config.sync_groups {
        let members: Vec<_> = g
            .members
            .iter()
            .filter_map(|m| by_name.get(m).map(|a| (m.clone(), a.clone().recipient())))
            .collect();
        let group = SyncGroupActor::new(g.name.clone(), members, g.notify.clone(), user).start();
        for m in &g.members {
            if let Some(a) = by_name.get(m) {
                a.do_send(JoinGroup(group.clone().recipient()));
            }
        }
        groups.push(group);
    }
    let mut scripts = Vec::new();
    for (name, subs) in subscribers {
        let Some(s) = config.vrrp_script(&name) else {
            continue;
        };
        let argv = script::split_argv(&s.script).map_err(|message| RunError::Script {
            script: name.clone(),
            message,
        })?;
        let run_as = match &s.user {
            Some(u) => {
                Some(
                    lookup_user(&u.user, u.group.as_deref()).map_err(|message| RunError::Script {
                        script: name.clone(),
                        message,
                    })?,
                )
            }
            None => user,
        };
        let interval = Duration::from_micros(s.interval.0).max(Duration::from_millis(10));
        let timeout = s.timeout.map(|t| Duration::from_micros(t.0)).unwrap_or(interval);
        let health = ScriptHealth::new(s.rise, s.fall, s.init_fail);
        scripts.push(VrrpScriptActor::new(name, argv, run_as, interval, timeout, health, subs).start());
    }
    Ok(Running {
        instances,
        scripts,
        groups,
    })
}

/// Stops every instance gracefully and waits for them.
pub async fn stop(running: &Running) {
    // All at once: stopping them one by one would make the peers' sync groups flap.
    let stops: Vec<_> = running.instances.iter().map(|a| a.send(Stop)).collect();
    for s in stops {
        let _ = s.await;
    }
    // Each answer came after its VIPs were removed; give the last adverts a moment.
    actix_rt::time::sleep(Duration::from_millis(20)).await;
}

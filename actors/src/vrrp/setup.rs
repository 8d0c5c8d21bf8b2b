//! From the configuration model to what an instance runs with: the state-machine
//! parameters, the receive policy, where adverts go. Pure; the interface facts (primary
//! address) are passed in.

use super::check::RxPolicy;
use super::instance::Params;
use super::packet::{Auth, Version, MCAST_V4, MCAST_V6};
use super::tracking::{TrackerId, Weight};
use ha_config::model::{
    Auth as CfgAuth, Config, GlobalDefs, InitialState, Notify, TrackedKind, VrrpInstance,
};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

/// One address an instance adds while MASTER (`ip addr add ADDR/PREFIX dev DEV brd B
/// scope S label L`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VipSpec {
    pub addr: IpAddr,
    pub prefix: u8,
    pub label: Option<String>,
    /// Another interface than the instance's (`dev`).
    pub dev: Option<String>,
    pub scope: Option<u8>,
    pub brd: Option<IpAddr>,
    /// In the adverts (`virtual_ipaddress`), or not (`virtual_ipaddress_excluded`).
    pub advertised: bool,
    /// `home`, `nodad`, `mngtmpaddr`, `noprefixroute`, `autojoin`.
    pub flags: Vec<String>,
    /// `preferred_lft SECS` (0: deprecated at once; `forever`: None).
    pub preferred_lft: Option<u32>,
    /// `peer ADDR`: the other end of a point-to-point address.
    pub peer: Option<IpAddr>,
}

impl VipSpec {
    pub fn of(v: &ha_config::model::VipAddr, advertised: bool) -> Self {
        VipSpec {
            addr: v.addr,
            prefix: v.prefix_len(),
            label: v.label.clone(),
            dev: v.dev.clone(),
            scope: v.scope.as_deref().and_then(ha_config::model::parse_scope),
            brd: v.brd,
            advertised,
            flags: v
                .extra
                .iter()
                .filter(|w| {
                    matches!(
                        w.as_str(),
                        "home" | "nodad" | "-nodad" | "mngtmpaddr" | "noprefixroute" | "autojoin"
                    )
                })
                .cloned()
                .collect(),
            preferred_lft: v
                .extra
                .iter()
                .position(|w| w == "preferred_lft")
                .and_then(|i| v.extra.get(i + 1))
                .and_then(|x| x.parse().ok()),
            peer: v
                .extra
                .iter()
                .position(|w| w == "peer")
                .and_then(|i| v.extra.get(i + 1))
                .and_then(|x| x.split('/').next().and_then(|a| a.parse().ok())),
        }
    }
}

/// One instance, ready to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceSpec {
    pub name: String,
    pub interface: String,
    pub params: Params,
    pub policy: RxPolicy,
    pub version: Version,
    pub auth: Auth,
    /// Source of our adverts (IPv6: the interface's link-local address, RFC 5798 5.1.2.1).
    pub src: IpAddr,
    /// Where adverts go: 224.0.0.18 / ff02::12, or each unicast peer.
    pub destinations: Vec<IpAddr>,
    pub multicast: bool,
    /// Addresses added while MASTER: the VIPs (advertised), then the excluded ones.
    pub vips: Vec<VipSpec>,
    /// Routes and rules added while MASTER, after the addresses (removed before them).
    pub routes: Vec<ha_config::model::Route>,
    pub rules: Vec<ha_config::model::Rule>,
    pub garp_repeat: u32,
    pub garp_delay: Duration,
    /// While MASTER, every `garp_refresh` (zero: never) send `garp_refresh_repeat` GARPs.
    pub garp_refresh: Duration,
    pub garp_refresh_repeat: u32,
    /// Tracked scripts, files and processes (its sync group's too), with the weight in
    /// effect for this instance.
    pub trackers: Vec<(TrackerId, Weight)>,
    /// Tracked interfaces (the instance's own interface first, FAULT while down, unless
    /// `dont_track_primary`).
    pub track_interfaces: Vec<(String, Weight)>,
    pub notify: Notify,
    /// Mail each state change (`smtp_alert`, else `smtp_alert_vrrp`).
    pub smtp_alert: bool,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SetupError {
    #[error("vrrp_instance {0}: IPv6 addresses need VRRP version 3")]
    Ipv6NeedsV3(String),
    #[error("vrrp_instance {0}: IPv4 and IPv6 virtual addresses mixed in one instance")]
    MixedFamilies(String),
    #[error("vrrp_instance {0}: no IPv4 source address (interface has none and no unicast_src_ip)")]
    NoSource(String),
    #[error("vrrp_instance {0}: {1} is not defined")]
    Undefined(String, TrackerId),
}

/// Every instance of `config` (`addrs`: the addresses of an interface, by name).
/// The interval an instance advertises at: its `advert_int` as the packet can carry it
/// (v2: whole seconds, 1-255, sub-second intervals rounded up to 1 s as keepalived does;
/// v3: centiseconds, 0.01-40.95 s).
pub fn advert_interval(inst: &VrrpInstance) -> Duration {
    let configured = Duration::from_micros(inst.advert_int.0);
    let centis = if inst.version == 3 {
        (configured.as_millis() / 10).clamp(1, 4095) as u64
    } else {
        configured.as_secs().clamp(1, 255) * 100
    };
    Duration::from_millis(centis * 10)
}

pub fn specs(config: &Config, addrs: impl Fn(&str) -> IfAddrs) -> Result<Vec<InstanceSpec>, SetupError> {
    config
        .instances
        .iter()
        .map(|i| {
            let mut s = spec(&config.global, i, addrs(&i.interface))?;
            // Validation refuses what names nothing; a configuration that skipped it
            // does not start with the line silently left out.
            let group = config.group_of(&i.name);
            for (kind, refs) in [
                (TrackedKind::Script, &i.track_script),
                (TrackedKind::File, &i.track_file),
                (TrackedKind::Process, &i.track_process),
            ]
            .into_iter()
            .chain(group.into_iter().flat_map(|g| {
                [
                    (TrackedKind::Script, &g.track_script),
                    (TrackedKind::File, &g.track_file),
                    (TrackedKind::Process, &g.track_process),
                ]
            })) {
                for r in refs {
                    let defined = match kind {
                        TrackedKind::Script => config.vrrp_script(&r.name).is_some(),
                        TrackedKind::File => config.track_file(&r.name).is_some(),
                        _ => config.track_process(&r.name).is_some(),
                    };
                    if !defined {
                        let id = TrackerId {
                            kind,
                            name: r.name.clone(),
                        };
                        return Err(SetupError::Undefined(i.name.clone(), id));
                    }
                }
            }
            let (tracked, notes) = config.tracking(i);
            for n in notes {
                tracing::debug!(instance = %i.name, "{}", n.message);
            }
            for t in tracked {
                let weight = Weight {
                    weight: t.weight,
                    reverse: t.reverse,
                };
                if t.kind == TrackedKind::Interface {
                    match s.track_interfaces.iter_mut().find(|(n, _)| *n == t.name) {
                        // The instance's own interface: the line sets its weight.
                        Some(own) if !i.dont_track_primary && t.name == i.interface => own.1 = weight,
                        _ => s.track_interfaces.push((t.name, weight)),
                    }
                    continue;
                }
                let id = TrackerId {
                    kind: t.kind,
                    name: t.name,
                };
                s.trackers.push((id, weight));
            }
            Ok(s)
        })
        .collect()
}

/// The addresses of an interface an instance may send from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IfAddrs {
    pub v4: Option<Ipv4Addr>,
    pub link_local_v6: Option<Ipv6Addr>,
}

/// Builds the spec of `inst` on an interface with addresses `ifaddrs`.
pub fn spec(g: &GlobalDefs, inst: &VrrpInstance, ifaddrs: IfAddrs) -> Result<InstanceSpec, SetupError> {
    let version = if inst.version == 3 {
        Version::V3
    } else {
        Version::V2
    };
    let v6 = inst.virtual_ipaddress.first().is_some_and(|v| v.addr.is_ipv6());
    if inst.virtual_ipaddress.iter().any(|v| v.addr.is_ipv6() != v6) {
        return Err(SetupError::MixedFamilies(inst.name.clone()));
    }
    if v6 && version == Version::V2 {
        return Err(SetupError::Ipv6NeedsV3(inst.name.clone()));
    }
    let same_family = |a: &IpAddr| a.is_ipv6() == v6;
    let configured_src = inst
        .unicast_src_ip
        .as_ref()
        .or(inst.mcast_src_ip.as_ref())
        .filter(|a| same_family(a))
        .copied();
    let src = configured_src
        .or(if v6 {
            ifaddrs.link_local_v6.map(IpAddr::V6)
        } else {
            ifaddrs.v4.map(IpAddr::V4)
        })
        .ok_or_else(|| SetupError::NoSource(inst.name.clone()))?;
    let auth = match (&inst.auth, version) {
        (Some(CfgAuth::Pass(p)), Version::V2) => Auth::pass(p),
        (Some(CfgAuth::Ah(_)), Version::V2) => Auth::Ah,
        _ => Auth::None,
    };
    let advert_int = advert_interval(inst);
    let interval_cs = (advert_int.as_millis() / 10) as u16;
    let unicast = !inst.unicast_peer.is_empty();
    let destinations: Vec<IpAddr> = if unicast {
        inst.unicast_peer
            .iter()
            .map(|p| p.addr)
            .filter(same_family)
            .collect()
    } else if v6 {
        vec![IpAddr::V6(MCAST_V6)]
    } else {
        vec![IpAddr::V4(MCAST_V4)]
    };
    let vips: Vec<VipSpec> = inst
        .virtual_ipaddress
        .iter()
        .map(|v| VipSpec::of(v, true))
        .chain(
            inst.virtual_ipaddress_excluded
                .iter()
                .map(|v| VipSpec::of(v, false)),
        )
        .collect();
    let want_master = inst.state == InitialState::Master;
    let params = Params {
        vrid: inst.virtual_router_id,
        v3: version == Version::V3,
        priority: inst.priority,
        advert_int,
        want_master,
        // keepalived clears nopreempt and preempt_delay for `state MASTER`.
        preempt: !inst.nopreempt || want_master,
        preempt_delay: if want_master {
            Duration::ZERO
        } else {
            inst.preempt_delay
                .map(|d| Duration::from_micros(d.0))
                .unwrap_or_default()
        },
        primary: src,
        down_timer_adverts: 3,
    };
    let policy = RxPolicy {
        version,
        auth,
        interval_cs,
        vips: vips.iter().filter(|v| v.advertised).map(|v| v.addr).collect(),
        skip_check_adv_addr: g.vrrp_skip_check_adv_addr,
        unicast,
        unicast_peers: inst.unicast_peer.iter().map(|p| p.addr).collect(),
    };
    Ok(InstanceSpec {
        name: inst.name.clone(),
        interface: inst.interface.clone(),
        params,
        policy,
        version,
        auth,
        src,
        destinations,
        multicast: !unicast,
        vips,
        routes: inst.virtual_routes.clone(),
        rules: inst.virtual_rules.clone(),
        garp_repeat: inst.garp.master_repeat.max(1),
        garp_delay: Duration::from_secs(u64::from(inst.garp.master_delay)),
        garp_refresh: Duration::from_secs(u64::from(inst.garp.master_refresh)),
        garp_refresh_repeat: inst.garp.master_refresh_repeat.max(1),
        trackers: Vec::new(),
        // The instance's own interface first: FAULT while down, unless
        // `dont_track_primary`; `track_interface` lines are added by [`specs`].
        track_interfaces: if inst.dont_track_primary {
            Vec::new()
        } else {
            vec![(
                inst.interface.clone(),
                Weight {
                    weight: None,
                    reverse: false,
                },
            )]
        },
        notify: inst.notify.clone(),
        smtp_alert: inst
            .smtp_alert
            .or(g.smtp_alert_vrrp)
            .or(g.smtp_alert)
            .unwrap_or(false),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ha_config::cluster;

    #[test]
    fn the_seed_instance() {
        let text = "global_defs {\n vrrp_skip_check_adv_addr\n}\nvrrp_instance VI_1 {\n @lvs01 state MASTER\n @lvs02 state BACKUP\n interface ens33\n virtual_router_id 51\n @lvs01 priority 100\n @lvs02 priority 80\n advert_int 1\n authentication {\n  auth_type PASS\n  auth_pass 1111\n }\n virtual_ipaddress {\n  198.18.116.134\n }\n}\n";
        let (_, l) = cluster::load_str("c.conf", text, &[]);
        let c = l.cluster.view("lvs02");
        let a = |v4| IfAddrs {
            v4: Some(v4),
            link_local_v6: None,
        };
        let s = spec(&c.global, &c.instances[0], a(Ipv4Addr::new(198, 18, 116, 135))).unwrap();
        assert_eq!(s.params.priority, 80);
        assert!(!s.params.want_master && s.params.preempt);
        assert_eq!(s.params.advert_int, Duration::from_secs(1));
        assert_eq!(s.auth, Auth::pass("1111"));
        assert_eq!(s.destinations, vec![IpAddr::V4(MCAST_V4)]);
        assert!(s.policy.skip_check_adv_addr);
        assert_eq!(
            s.vips,
            vec![VipSpec {
                addr: "198.18.116.134".parse().unwrap(),
                prefix: 32,
                label: None,
                dev: None,
                scope: None,
                brd: None,
                advertised: true,
                flags: vec![],
                preferred_lft: None,
                peer: None,
            }]
        );
        let c1 = l.cluster.view("lvs01");
        let s1 = spec(&c1.global, &c1.instances[0], a(Ipv4Addr::new(198, 18, 116, 130))).unwrap();
        assert!(s1.params.want_master);
        assert_eq!(s1.params.priority, 100);
    }
}

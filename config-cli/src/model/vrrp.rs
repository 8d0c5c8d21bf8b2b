use super::common::{Dur, RawStmt, Script, ScriptUser};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// `vrrp_script NAME { ... }`: a tracking script whose result changes priority or state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VrrpScript {
    pub name: String,
    pub script: String,
    /// Seconds between runs (default 1).
    pub interval: Dur,
    /// Kill and count as failed after this long (default: the interval).
    pub timeout: Option<Dur>,
    /// 0: the script's failure puts tracking instances in FAULT. > 0: added while the
    /// script succeeds. < 0: subtracted while it fails. (`reverse` swaps success and failure.)
    pub weight: i32,
    pub weight_reverse: bool,
    pub rise: u32,
    pub fall: u32,
    pub user: Option<ScriptUser>,
    /// Start in the failed state (keepalived `init_fail`).
    pub init_fail: bool,
    pub extra: Vec<RawStmt>,
}

impl VrrpScript {
    pub fn new(name: impl Into<String>) -> Self {
        VrrpScript {
            name: name.into(),
            script: String::new(),
            interval: Dur::from_secs(1),
            timeout: None,
            weight: 0,
            weight_reverse: false,
            rise: 1,
            fall: 1,
            user: None,
            init_fail: false,
            extra: Vec::new(),
        }
    }
}

/// Notify scripts run on state changes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notify {
    pub master: Option<Script>,
    pub backup: Option<Script>,
    pub fault: Option<Script>,
    pub stop: Option<Script>,
    /// Generic script: called with `INSTANCE|GROUP name state priority`.
    pub any: Option<Script>,
}

/// `vrrp_sync_group NAME { group { ... } ... }`: instances that change state together.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncGroup {
    pub name: String,
    pub members: Vec<String>,
    pub notify: Notify,
    /// Tracked by every member, with these weights (a member that owns its addresses
    /// turns them into FAULT).
    pub track_script: Vec<TrackRef>,
    pub track_interface: Vec<TrackInterface>,
    pub track_file: Vec<TrackRef>,
    pub track_process: Vec<TrackRef>,
    /// `sync_group_tracking_weight` (or the deprecated `global_tracking`): members keep the
    /// weights of what they track themselves; without it keepalived drops a member's
    /// weighted scripts, files and processes and makes its weighted interfaces FAULT.
    pub tracking_weight: bool,
    /// `smtp_alert [BOOL]`: mail the group's state changes (unset: `smtp_alert_vrrp`).
    pub smtp_alert: Option<bool>,
    pub extra: Vec<RawStmt>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum InitialState {
    Master,
    Backup,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Auth {
    /// Simple password (VRRPv2 only); at most 8 characters are used. Not a security measure.
    Pass(String),
    /// IPSEC AH (VRRPv2 only); kept for export, not implemented.
    Ah(String),
}

/// One `virtual_ipaddress` line: `ADDR[/PREFIX] [dev IF] [brd ADDR] [label L] [scope S] ...`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct VipAddr {
    pub addr: IpAddr,
    /// Prefix length (default: /32 or /128).
    pub prefix: Option<u8>,
    pub dev: Option<String>,
    pub brd: Option<IpAddr>,
    pub label: Option<String>,
    pub scope: Option<String>,
    pub no_track: bool,
    /// Other options keepalived accepts on the line (e.g. `preferred_lft 0`), verbatim.
    pub extra: Vec<String>,
}

impl VipAddr {
    pub fn new(addr: IpAddr) -> Self {
        VipAddr {
            addr,
            prefix: None,
            dev: None,
            brd: None,
            label: None,
            scope: None,
            no_track: false,
            extra: Vec::new(),
        }
    }

    pub fn prefix_len(&self) -> u8 {
        self.prefix.unwrap_or(if self.addr.is_ipv4() { 32 } else { 128 })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TrackInterface {
    pub name: String,
    /// None: interface down puts the instance in FAULT; Some(w): priority changes by w.
    pub weight: Option<i32>,
    pub weight_reverse: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
/// One line of a `track_script`, `track_file` or `track_process` block: the tracked
/// object's name, and a weight overriding its own.
pub struct TrackRef {
    pub name: String,
    /// Overrides the tracked object's own weight.
    pub weight: Option<i32>,
    pub weight_reverse: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct UnicastPeer {
    pub addr: IpAddr,
    pub min_ttl: Option<u8>,
    pub max_ttl: Option<u8>,
}

/// GARP / unsolicited-NA behaviour on becoming MASTER.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Garp {
    /// Seconds after becoming MASTER before the second burst (default 5; 0 = none).
    pub master_delay: u32,
    /// Messages per burst (default 5).
    pub master_repeat: u32,
    /// Seconds between periodic refreshes while MASTER (0 = none).
    pub master_refresh: u32,
    /// Messages per refresh (default 1).
    pub master_refresh_repeat: u32,
}

impl Default for Garp {
    fn default() -> Self {
        Garp {
            master_delay: 5,
            master_repeat: 5,
            master_refresh: 0,
            master_refresh_repeat: 1,
        }
    }
}

/// `vrrp_instance NAME { ... }`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VrrpInstance {
    pub name: String,
    /// The state requested at start-up; keepalived starts as BACKUP unless MASTER and the
    /// address owner (priority 255).
    pub state: InitialState,
    pub interface: String,
    pub virtual_router_id: u8,
    pub priority: u8,
    pub advert_int: Dur,
    /// 2 or 3.
    pub version: u8,
    pub auth: Option<Auth>,
    pub virtual_ipaddress: Vec<VipAddr>,
    pub virtual_ipaddress_excluded: Vec<VipAddr>,
    /// Installed while MASTER, after the addresses.
    pub virtual_routes: Vec<super::Route>,
    pub virtual_rules: Vec<super::Rule>,
    pub nopreempt: bool,
    pub preempt_delay: Option<Dur>,
    pub track_interface: Vec<TrackInterface>,
    pub track_script: Vec<TrackRef>,
    pub track_file: Vec<TrackRef>,
    pub track_process: Vec<TrackRef>,
    pub dont_track_primary: bool,
    pub unicast_src_ip: Option<IpAddr>,
    pub unicast_peer: Vec<UnicastPeer>,
    pub mcast_src_ip: Option<IpAddr>,
    pub notify: Notify,
    pub garp: Garp,
    /// `smtp_alert [BOOL]`: mail each state change (unset: global `smtp_alert_vrrp`).
    pub smtp_alert: Option<bool>,
    pub extra: Vec<RawStmt>,
}

impl VrrpInstance {
    pub fn new(name: impl Into<String>) -> Self {
        VrrpInstance {
            name: name.into(),
            state: InitialState::Backup,
            interface: String::new(),
            virtual_router_id: 0,
            priority: 100,
            advert_int: Dur::from_secs(1),
            version: 2,
            auth: None,
            virtual_ipaddress: Vec::new(),
            virtual_ipaddress_excluded: Vec::new(),
            virtual_routes: Vec::new(),
            virtual_rules: Vec::new(),
            nopreempt: false,
            preempt_delay: None,
            track_interface: Vec::new(),
            track_script: Vec::new(),
            track_file: Vec::new(),
            track_process: Vec::new(),
            dont_track_primary: false,
            unicast_src_ip: None,
            unicast_peer: Vec::new(),
            mcast_src_ip: None,
            notify: Notify::default(),
            garp: Garp::default(),
            smtp_alert: None,
            extra: Vec::new(),
        }
    }

    /// Whether this instance owns its addresses (priority 255).
    pub fn is_address_owner(&self) -> bool {
        self.priority == 255
    }

    /// All addresses the instance moves, in order.
    pub fn vips(&self) -> impl Iterator<Item = &VipAddr> {
        self.virtual_ipaddress
            .iter()
            .chain(self.virtual_ipaddress_excluded.iter())
    }
}

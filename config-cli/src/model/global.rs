use super::common::{Dur, RawStmt, ScriptUser};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// `global_defs`. The notification settings (`smtp_server`, `notification_email`, ...) are
/// used by VRRP's `smtp_alert` mails.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GlobalDefs {
    pub router_id: Option<String>,
    pub notification_email: Vec<String>,
    pub notification_email_from: Option<String>,
    pub smtp_server: Option<SmtpServer>,
    pub smtp_connect_timeout: Option<u32>,
    /// `HELO` name of alert mails (keepalived's default: the host's name).
    pub smtp_helo_name: Option<String>,
    /// `smtp_alert_vrrp [BOOL]`: the default of instances' and sync groups' `smtp_alert`.
    pub smtp_alert_vrrp: Option<bool>,
    /// `smtp_alert [BOOL]`: the default of both VRRP's and the checkers' (the checkers'
    /// mails are not sent by hanode: refused unless `hanode_ignore smtp_alert`).
    pub smtp_alert: Option<bool>,
    /// `no_email_faults`: no mail for a change to FAULT.
    pub no_email_faults: bool,
    /// Delay between gratuitous ARPs sent on an interface (None: no delay).
    pub vrrp_garp_interval: Option<Dur>,
    /// Delay between unsolicited neighbour advertisements sent on an interface.
    pub vrrp_gna_interval: Option<Dur>,
    /// Defaults for the instances' garp_* settings.
    pub vrrp_garp_master_delay: Option<u32>,
    pub vrrp_garp_master_repeat: Option<u32>,
    pub vrrp_garp_master_refresh: Option<u32>,
    pub vrrp_garp_master_refresh_repeat: Option<u32>,
    /// Default VRRP version for instances without `version` (2 unless set).
    pub vrrp_version: Option<u8>,
    pub vrrp_strict: bool,
    pub vrrp_skip_check_adv_addr: bool,
    pub vrrp_check_unicast_src: bool,
    pub vrrp_mcast_group4: Option<IpAddr>,
    pub vrrp_mcast_group6: Option<IpAddr>,
    pub script_user: Option<ScriptUser>,
    pub enable_script_security: bool,
    /// The kernel's IPVS connection sync daemon, following one VRRP instance.
    pub lvs_sync_daemon: Option<LvsSyncDaemon>,
    pub extra: Vec<RawStmt>,
    /// The top-level `static_ipaddress`, `static_routes` and `static_rules` blocks (kept
    /// here: like `global_defs`, they are the director's, not an instance's).
    pub statics: super::StaticRouting,
}

impl GlobalDefs {
    /// Whether a `hanode_ignore` line accepts `keyword`, something in the configuration
    /// that hanode does not run (kept among the raw lines: it is hanode's own, printed
    /// back as written).
    pub fn ignores(&self, keyword: &str) -> bool {
        self.extra.iter().any(|r| {
            r.words.first().map(String::as_str) == Some(HANODE_IGNORE)
                && r.words.iter().skip(1).any(|w| w == keyword)
        })
    }
}

/// `global_defs { hanode_ignore KEYWORD... }`: what the operator accepts that hanode does
/// not run (each use is still a warning).
pub const HANODE_IGNORE: &str = "hanode_ignore";

/// `lvs_sync_daemon INTERFACE VRRP_INSTANCE [id N] [maxlen N] [port N] [ttl N] [group
/// ADDR]` (or a `vrrp_instance`'s deprecated `lvs_sync_daemon_interface INTERFACE`): the
/// kernel's IPVS sync daemon, multicasting connections on `interface`; master while
/// `instance` is MASTER, backup otherwise. Unset numbers are the kernel's defaults
/// (`sync_id`: the instance's `virtual_router_id`, as keepalived).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LvsSyncDaemon {
    pub interface: String,
    pub instance: String,
    pub sync_id: Option<u8>,
    pub maxlen: Option<u16>,
    pub port: Option<u16>,
    pub ttl: Option<u8>,
    pub group: Option<IpAddr>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmtpServer {
    pub host: String,
    pub port: Option<u16>,
}

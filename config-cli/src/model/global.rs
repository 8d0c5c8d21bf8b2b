use super::common::{Dur, RawStmt, ScriptUser};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// `global_defs`. Notification (email) settings are kept for export but are inert: the
/// product reports through its event history instead of SMTP.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GlobalDefs {
    pub router_id: Option<String>,
    pub notification_email: Vec<String>,
    pub notification_email_from: Option<String>,
    pub smtp_server: Option<SmtpServer>,
    pub smtp_connect_timeout: Option<u32>,
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
    pub extra: Vec<RawStmt>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmtpServer {
    pub host: String,
    pub port: Option<u16>,
}

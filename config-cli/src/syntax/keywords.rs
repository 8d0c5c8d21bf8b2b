//! The keywords keepalived 2.2.7 accepts in each block (read from its parser
//! registrations), used to tell "known but not modelled" (kept, warned) from "unknown"
//! (a typo: warned with a suggestion, ignored as keepalived ignores it).

/// A block kind of keepalived.conf.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Section {
    Root,
    GlobalDefs,
    VrrpScript,
    SyncGroup,
    VrrpInstance,
    Authentication,
    VirtualServer,
    RealServer,
    TcpCheck,
    HttpCheck,
    MiscCheck,
    Url,
    UdpCheck,
    PingCheck,
    DnsCheck,
    SmtpCheck,
    TrackFile,
    TrackProcess,
    FileCheck,
}

impl Section {
    pub const ALL: [Section; 19] = [
        Section::Root,
        Section::GlobalDefs,
        Section::VrrpScript,
        Section::SyncGroup,
        Section::VrrpInstance,
        Section::Authentication,
        Section::VirtualServer,
        Section::RealServer,
        Section::TcpCheck,
        Section::HttpCheck,
        Section::MiscCheck,
        Section::Url,
        Section::UdpCheck,
        Section::PingCheck,
        Section::DnsCheck,
        Section::SmtpCheck,
        Section::TrackFile,
        Section::TrackProcess,
        Section::FileCheck,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Section::Root => "the top level",
            Section::GlobalDefs => "global_defs",
            Section::VrrpScript => "vrrp_script",
            Section::SyncGroup => "vrrp_sync_group",
            Section::VrrpInstance => "vrrp_instance",
            Section::Authentication => "authentication",
            Section::VirtualServer => "virtual_server",
            Section::RealServer => "real_server",
            Section::TcpCheck => "TCP_CHECK",
            Section::HttpCheck => "HTTP_GET/SSL_GET",
            Section::MiscCheck => "MISC_CHECK",
            Section::Url => "url",
            Section::UdpCheck => "UDP_CHECK",
            Section::PingCheck => "PING_CHECK",
            Section::DnsCheck => "DNS_CHECK",
            Section::SmtpCheck => "SMTP_CHECK",
            Section::TrackFile => "track_file",
            Section::TrackProcess => "vrrp_track_process",
            Section::FileCheck => "FILE_CHECK",
        }
    }

    /// The keywords of the block: those every checker has (for a checker block) and its
    /// own.
    pub fn keywords(self) -> impl Iterator<Item = &'static str> {
        let common: &'static [&'static str] = match self {
            Section::TcpCheck
            | Section::HttpCheck
            | Section::MiscCheck
            | Section::UdpCheck
            | Section::PingCheck
            | Section::DnsCheck
            | Section::SmtpCheck => CHECK_COMMON,
            _ => &[],
        };
        common.iter().chain(self.own_keywords()).copied()
    }

    fn own_keywords(self) -> &'static [&'static str] {
        match self {
            Section::Root => ROOT,
            Section::GlobalDefs => GLOBAL_DEFS,
            Section::VrrpScript => VRRP_SCRIPT,
            Section::SyncGroup => SYNC_GROUP,
            Section::VrrpInstance => VRRP_INSTANCE,
            Section::Authentication => &["auth_type", "auth_pass"],
            Section::VirtualServer => VIRTUAL_SERVER,
            Section::RealServer => REAL_SERVER,
            Section::TcpCheck | Section::PingCheck => &[],
            Section::HttpCheck => HTTP_CHECK,
            Section::MiscCheck => MISC_CHECK,
            Section::Url => URL,
            Section::UdpCheck => UDP_CHECK,
            Section::DnsCheck => DNS_CHECK,
            Section::SmtpCheck => SMTP_CHECK,
            Section::TrackFile => &["file", "weight", "init_file"],
            Section::FileCheck => &["track_file", "weight"],
            Section::TrackProcess => &[
                "process",
                "param_match",
                "weight",
                "quorum",
                "quorum_max",
                "delay",
                "terminate_delay",
                "fork_delay",
                "full_command",
            ],
        }
    }
}

const ROOT: &[&str] = &[
    "global_defs",
    "vrrp_script",
    "vrrp_sync_group",
    "vrrp_instance",
    "virtual_server_group",
    "virtual_server",
    "include",
    "linkbeat_use_polling",
    "net_namespace",
    "net_namespace_ipvs",
    "namespace_with_ipsets",
    "use_pid_dir",
    "instance",
    "child_wait_time",
    "track_group",
    "static_ipaddress",
    "static_routes",
    "static_rules",
    "garp_group",
    "linkbeat_interfaces",
    "vrrp_track_process",
    "vrrp_track_file",
    "track_file",
    "interface_up_down_delays",
    "bfd_instance",
    "SSL",
];

const GLOBAL_DEFS: &[&str] = &[
    "process_names",
    "process_name",
    "vrrp_process_name",
    "checker_process_name",
    "lvs_process_name",
    "bfd_process_name",
    "router_id",
    "notification_email_from",
    "smtp_server",
    "smtp_helo_name",
    "smtp_connect_timeout",
    "notification_email",
    "smtp_alert",
    "startup_script",
    "startup_script_timeout",
    "shutdown_script",
    "shutdown_script_timeout",
    "max_auto_priority",
    "min_auto_priority_delay",
    "smtp_alert_vrrp",
    "smtp_alert_checker",
    "checker_log_all_failures",
    "dynamic_interfaces",
    "no_email_faults",
    "default_interface",
    "disable_local_igmp",
    "lvs_timeouts",
    "lvs_flush",
    "lvs_flush_on_stop",
    "lvs_flush_onstop",
    "lvs_sync_daemon",
    "lvs_id",
    "vrrp_mcast_group4",
    "vrrp_mcast_group6",
    "vrrp_garp_master_delay",
    "vrrp_garp_master_repeat",
    "vrrp_garp_master_refresh",
    "vrrp_garp_master_refresh_repeat",
    "vrrp_garp_lower_prio_delay",
    "vrrp_garp_lower_prio_repeat",
    "vrrp_down_timer_adverts",
    "vrrp_garp_interval",
    "vrrp_gna_interval",
    "vrrp_min_garp",
    "vrrp_garp_extra_if",
    "vrrp_vmac_garp_intvl",
    "vrrp_lower_prio_no_advert",
    "vrrp_higher_prio_send_advert",
    "vrrp_version",
    "vrrp_iptables",
    "vrrp_ipsets",
    "nftables",
    "nftables_priority",
    "nftables_ifindex",
    "nftables_ipvs",
    "nftables_ipvs_priority",
    "nftables_ipvs_start_fwmark",
    "nftables_counters",
    "vrrp_check_unicast_src",
    "vrrp_skip_check_adv_addr",
    "vrrp_strict",
    "vrrp_priority",
    "vrrp_no_swap",
    "vrrp_rt_priority",
    "vrrp_cpu_affinity",
    "vrrp_rlimit_rttime",
    "vrrp_rlimit_rtime",
    "notify_fifo",
    "notify_fifo_script",
    "vrrp_notify_fifo",
    "vrrp_notify_fifo_script",
    "vrrp_notify_priority_changes",
    "fifo_write_vrrp_states_on_reload",
    "lvs_notify_fifo",
    "lvs_notify_fifo_script",
    "checker_priority",
    "checker_no_swap",
    "checker_rt_priority",
    "checker_cpu_affinity",
    "checker_rlimit_rttime",
    "checker_rlimit_rtime",
    "bfd_priority",
    "bfd_no_swap",
    "bfd_rt_priority",
    "bfd_cpu_affinity",
    "bfd_rlimit_rttime",
    "bfd_rlimit_rtime",
    "snmp_socket",
    "enable_traps",
    "enable_snmp_vrrp",
    "enable_snmp_keepalived",
    "enable_snmp_rfc",
    "enable_snmp_rfcv2",
    "enable_snmp_rfcv3",
    "enable_snmp_checker",
    "enable_dbus",
    "dbus_service_name",
    "script_user",
    "enable_script_security",
    "vrrp_netlink_cmd_rcv_bufs",
    "vrrp_netlink_cmd_rcv_bufs_force",
    "vrrp_netlink_monitor_rcv_bufs",
    "vrrp_netlink_monitor_rcv_bufs_force",
    "process_monitor_rcv_bufs",
    "process_monitor_rcv_bufs_force",
    "lvs_netlink_cmd_rcv_bufs",
    "lvs_netlink_cmd_rcv_bufs_force",
    "lvs_netlink_monitor_rcv_bufs",
    "lvs_netlink_monitor_rcv_bufs_force",
    "rs_init_notifies",
    "no_checker_emails",
    "vrrp_rx_bufs_policy",
    "vrrp_rx_bufs_multiplier",
    "vrrp_startup_delay",
    "log_unknown_vrids",
    "vmac_prefix",
    "vmac_addr_prefix",
    "umask",
    "random_seed",
    "reload_check_config",
    "reload_time_file",
    "reload_repeat",
    "reload_file",
    "include_check",
    "config_save_dir",
    "tmp_config_directory",
    "data_use_instance",
];

const VRRP_SCRIPT: &[&str] = &[
    "script",
    "interval",
    "timeout",
    "weight",
    "rise",
    "fall",
    "user",
    "init_fail",
];

const SYNC_GROUP: &[&str] = &[
    "group",
    "track_interface",
    "track_script",
    "track_file",
    "track_process",
    "track_bfd",
    "notify_backup",
    "notify_master",
    "notify_fault",
    "notify_stop",
    "notify",
    "smtp_alert",
    "global_tracking",
    "sync_group_tracking_weight",
    "notify_priority_changes",
];

const VRRP_INSTANCE: &[&str] = &[
    "use_vmac",
    "use_vmac_addr",
    "vmac_xmit_base",
    "use_ipvlan",
    "unicast_peer",
    "unicast_fault_no_peer",
    "check_unicast_src",
    "old_unicast_checksum",
    "native_ipv6",
    "state",
    "interface",
    "vrf",
    "dont_track_primary",
    "track_interface",
    "track_script",
    "track_file",
    "track_process",
    "track_bfd",
    "mcast_src_ip",
    "unicast_src_ip",
    "mcast_dst_ip",
    "track_src_ip",
    "virtual_router_id",
    "unicast_ttl",
    "version",
    "priority",
    "advert_int",
    "virtual_ipaddress",
    "virtual_ipaddress_excluded",
    "promote_secondaries",
    "linkbeat_use_polling",
    "virtual_routes",
    "virtual_rules",
    "accept",
    "no_accept",
    "skip_check_adv_addr",
    "strict_mode",
    "preempt",
    "nopreempt",
    "preempt_delay",
    "debug",
    "notify_backup",
    "notify_master",
    "notify_fault",
    "notify_stop",
    "notify_deleted",
    "notify",
    "notify_master_rx_lower_pri",
    "smtp_alert",
    "notify_priority_changes",
    "lvs_sync_daemon_interface",
    "garp_master_delay",
    "garp_master_refresh",
    "garp_master_repeat",
    "garp_master_refresh_repeat",
    "garp_lower_prio_delay",
    "garp_lower_prio_repeat",
    "down_timer_adverts",
    "garp_extra_if",
    "vmac_garp_intvl",
    "lower_prio_no_advert",
    "higher_prio_send_advert",
    "kernel_rx_buf_size",
    "authentication",
];

const VIRTUAL_SERVER: &[&str] = &[
    "ip_family",
    "retry",
    "delay_before_retry",
    "warmup",
    "connect_timeout",
    "delay_loop",
    "inhibit_on_failure",
    "lb_algo",
    "lvs_sched",
    "hashed",
    "ops",
    "flag-1",
    "flag-2",
    "flag-3",
    "sh-port",
    "sh-fallback",
    "mh-port",
    "mh-fallback",
    "lb_kind",
    "lvs_method",
    "persistence_engine",
    "persistence_timeout",
    "persistence_granularity",
    "protocol",
    "ha_suspend",
    "smtp_alert",
    "virtualhost",
    "snmp_name",
    "alpha",
    "omega",
    "quorum_up",
    "quorum_down",
    "quorum",
    "hysteresis",
    "weight",
    "sorry_server",
    "sorry_server_inhibit",
    "sorry_server_lvs_method",
    "real_server",
];

const REAL_SERVER: &[&str] = &[
    "weight",
    "lvs_method",
    "uthreshold",
    "lthreshold",
    "inhibit_on_failure",
    "notify_up",
    "notify_down",
    "alpha",
    "retry",
    "delay_before_retry",
    "warmup",
    "connect_timeout",
    "delay_loop",
    "smtp_alert",
    "virtualhost",
    "snmp_name",
    "TCP_CHECK",
    "HTTP_GET",
    "SSL_GET",
    "MISC_CHECK",
    "SMTP_CHECK",
    "DNS_CHECK",
    "UDP_CHECK",
    "PING_CHECK",
    "FILE_CHECK",
    "BFD_CHECK",
];

/// The keywords every checker block has.
const CHECK_COMMON: &[&str] = &[
    "connect_ip",
    "connect_port",
    "bindto",
    "bind_port",
    "bind_if",
    "connect_timeout",
    "fwmark",
    "retry",
    "delay_before_retry",
    "warmup",
    "delay_loop",
    "alpha",
    "log_all_failures",
];

/// Besides [`CHECK_COMMON`].
const UDP_CHECK: &[&str] = &["payload", "require_reply", "min_reply_length", "max_reply_length"];

/// Besides [`CHECK_COMMON`].
const SMTP_CHECK: &[&str] = &["helo_name", "host"];

/// Besides [`CHECK_COMMON`].
const DNS_CHECK: &[&str] = &["type", "name"];

/// Besides [`CHECK_COMMON`].
const HTTP_CHECK: &[&str] = &[
    "nb_get_retry",
    "virtualhost",
    "http_protocol",
    "enable_sni",
    "fast_recovery",
    "url",
];

/// Besides [`CHECK_COMMON`].
const MISC_CHECK: &[&str] = &["misc_path", "misc_timeout", "misc_dynamic", "user"];

const URL: &[&str] = &[
    "path",
    "digest",
    "status_code",
    "virtualhost",
    "regex",
    "regex_no_match",
    "regex_options",
    "regex_min_offset",
    "regex_max_offset",
    "regex_stack",
];

pub fn is_known(section: Section, kw: &str) -> bool {
    section.keywords().any(|k| k == kw)
}

/// The replacement of a deprecated keyword.
pub fn deprecated(section: Section, kw: &str) -> Option<&'static str> {
    match (section, kw) {
        (Section::HttpCheck, "nb_get_retry") => Some("retry"),
        (Section::GlobalDefs, "lvs_flush_onstop") => Some("lvs_flush_on_stop"),
        (Section::VrrpInstance, "vmac_garp_intvl") => Some("garp_extra_if"),
        _ => None,
    }
}

/// The known keyword closest to a misspelt one, if any is close enough.
pub fn closest(section: Section, word: &str) -> Option<&'static str> {
    let mut best: Option<(&'static str, f64)> = None;
    for k in section.keywords() {
        let score = if k.starts_with(word) && word.len() >= 3 {
            0.95
        } else {
            strsim::jaro_winkler(word, k)
        };
        if score >= 0.85 && best.is_none_or(|(_, b)| score > b) {
            best = Some((k, score));
        }
    }
    best.map(|(k, _)| k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions() {
        assert_eq!(closest(Section::Url, "status"), Some("status_code"));
        assert_eq!(closest(Section::VrrpInstance, "priorty"), Some("priority"));
        assert_eq!(closest(Section::VirtualServer, "lb_algorithm"), Some("lb_algo"));
        assert_eq!(closest(Section::Url, "zzz"), None);
    }
}

//! keepalived's routing blocks: `static_ipaddress`, `static_routes`, `static_rules`
//! (installed while the director runs) and an instance's `virtual_routes` and
//! `virtual_rules` (installed while it is MASTER, after its addresses; removed before
//! them), as `ip route` / `ip rule` lines.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::IpAddr;

/// keepalived's route protocol (`ip route ... proto keepalived`), unless a line says.
pub const RTPROT_KEEPALIVED: u8 = 18;

/// An address and prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Prefix {
    pub addr: IpAddr,
    pub len: u8,
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// What a route does with what it matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RouteType {
    Unicast,
    Blackhole,
    Unreachable,
    Prohibit,
    Throw,
}

impl RouteType {
    pub fn keyword(self) -> &'static str {
        match self {
            RouteType::Unicast => "unicast",
            RouteType::Blackhole => "blackhole",
            RouteType::Unreachable => "unreachable",
            RouteType::Prohibit => "prohibit",
            RouteType::Throw => "throw",
        }
    }

    pub fn parse(w: &str) -> Option<RouteType> {
        Some(match w {
            "unicast" => RouteType::Unicast,
            "blackhole" => RouteType::Blackhole,
            "unreachable" => RouteType::Unreachable,
            "prohibit" => RouteType::Prohibit,
            "throw" => RouteType::Throw,
            _ => return None,
        })
    }
}

/// A gateway of a route (`via ADDR`, or each `or ADDR` of a multipath route).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NextHop {
    pub via: IpAddr,
    /// The device of this hop (`nexthop via A dev D`); else the route's.
    pub dev: Option<String>,
    /// `nexthop ... weight W` (1..=256).
    pub weight: Option<u16>,
}

/// One `ip route` line.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Route {
    pub kind: RouteType,
    pub dest: Prefix,
    /// Preferred source (`src`).
    pub src: Option<IpAddr>,
    /// No gateway (a device route), one, or several (multipath).
    pub via: Vec<NextHop>,
    pub dev: Option<String>,
    /// 0 global, 200 site, 253 link, 254 host, 255 nowhere.
    pub scope: Option<u8>,
    pub table: Option<u32>,
    pub metric: Option<u32>,
    pub protocol: Option<u8>,
    pub onlink: bool,
    pub mtu: Option<u32>,
    pub advmss: Option<u32>,
    pub no_track: bool,
}

impl Route {
    pub fn new(dest: Prefix) -> Self {
        Route {
            kind: RouteType::Unicast,
            dest,
            src: None,
            via: Vec::new(),
            dev: None,
            scope: None,
            table: None,
            metric: None,
            protocol: None,
            onlink: false,
            mtu: None,
            advmss: None,
            no_track: false,
        }
    }
}

/// What a rule does (`table N`, or a type).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RuleAction {
    Table(u32),
    Blackhole,
    Unreachable,
    Prohibit,
}

/// One `ip rule` line.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Rule {
    /// `inet6` when the rule names no address to tell.
    pub v6: bool,
    pub from: Option<Prefix>,
    pub to: Option<Prefix>,
    pub not: bool,
    pub action: RuleAction,
    pub priority: Option<u32>,
    pub iif: Option<String>,
    pub oif: Option<String>,
    /// `fwmark MARK[/MASK]`.
    pub fwmark: Option<(u32, Option<u32>)>,
    pub tos: Option<u8>,
    pub ipproto: Option<u8>,
    pub sport: Option<(u16, u16)>,
    pub dport: Option<(u16, u16)>,
    pub no_track: bool,
}

/// The routing state a director installs while it runs (the `static_*` blocks).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StaticRouting {
    pub addresses: Vec<super::VipAddr>,
    pub routes: Vec<Route>,
    pub rules: Vec<Rule>,
}

impl StaticRouting {
    pub fn is_empty(&self) -> bool {
        self.addresses.is_empty() && self.routes.is_empty() && self.rules.is_empty()
    }
}

pub fn scope_name(s: u8) -> String {
    match s {
        0 => "global".into(),
        200 => "site".into(),
        253 => "link".into(),
        254 => "host".into(),
        255 => "nowhere".into(),
        n => n.to_string(),
    }
}

pub fn parse_scope(w: &str) -> Option<u8> {
    Some(match w {
        "global" | "universe" => 0,
        "site" => 200,
        "link" => 253,
        "host" => 254,
        "nowhere" => 255,
        n => n.parse().ok()?,
    })
}

pub fn parse_table(w: &str) -> Option<u32> {
    Some(match w {
        "local" => 255,
        "main" => 254,
        "default" => 253,
        n => n.parse().ok().filter(|t| *t != 0)?,
    })
}

pub fn parse_protocol(w: &str) -> Option<u8> {
    Some(match w {
        "redirect" => 1,
        "kernel" => 2,
        "boot" => 3,
        "static" => 4,
        "ra" => 9,
        "zebra" => 11,
        "bird" => 12,
        "dhcp" => 16,
        "keepalived" => 18,
        n => n.parse().ok()?,
    })
}

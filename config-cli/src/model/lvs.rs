use super::common::{Dur, RawStmt, Script, ScriptUser};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::IpAddr;

/// What a `virtual_server` line names.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum VsKey {
    Addr { ip: IpAddr, port: u16 },
    Fwmark(u32),
    Group(String),
}

impl fmt::Display for VsKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VsKey::Addr {
                ip: IpAddr::V6(ip),
                port,
            } => write!(f, "[{ip}]:{port}"),
            VsKey::Addr { ip, port } => write!(f, "{ip}:{port}"),
            VsKey::Fwmark(m) => write!(f, "fwmark {m}"),
            VsKey::Group(g) => write!(f, "group {g}"),
        }
    }
}

/// IPVS schedulers (`lb_algo`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Scheduler {
    Rr,
    Wrr,
    Lc,
    Wlc,
    Lblc,
    Lblcr,
    Dh,
    Sh,
    Sed,
    Nq,
    Fo,
    Ovf,
    Mh,
}

impl Scheduler {
    pub const ALL: [Scheduler; 13] = [
        Scheduler::Rr,
        Scheduler::Wrr,
        Scheduler::Lc,
        Scheduler::Wlc,
        Scheduler::Lblc,
        Scheduler::Lblcr,
        Scheduler::Dh,
        Scheduler::Sh,
        Scheduler::Sed,
        Scheduler::Nq,
        Scheduler::Fo,
        Scheduler::Ovf,
        Scheduler::Mh,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scheduler::Rr => "rr",
            Scheduler::Wrr => "wrr",
            Scheduler::Lc => "lc",
            Scheduler::Wlc => "wlc",
            Scheduler::Lblc => "lblc",
            Scheduler::Lblcr => "lblcr",
            Scheduler::Dh => "dh",
            Scheduler::Sh => "sh",
            Scheduler::Sed => "sed",
            Scheduler::Nq => "nq",
            Scheduler::Fo => "fo",
            Scheduler::Ovf => "ovf",
            Scheduler::Mh => "mh",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name() == s)
    }
}

/// IPVS forwarding method (`lb_kind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Forwarding {
    Nat,
    Dr,
    Tun,
}

impl Forwarding {
    pub fn name(self) -> &'static str {
        match self {
            Forwarding::Nat => "NAT",
            Forwarding::Dr => "DR",
            Forwarding::Tun => "TUN",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "NAT" => Some(Forwarding::Nat),
            "DR" => Some(Forwarding::Dr),
            "TUN" => Some(Forwarding::Tun),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            _ => None,
        }
    }
}

/// One entry of a `virtual_server_group`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum VsgMember {
    /// `IP PORT` or a range `IP-LAST PORT` (LAST replaces the last octet/hextet).
    Addr {
        ip: IpAddr,
        range_end: Option<u16>,
        port: u16,
    },
    Fwmark(u32),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VirtualServerGroup {
    pub name: String,
    pub members: Vec<VsgMember>,
}

/// `sorry_server IP PORT`: used when no real server is up (or quorum is lost).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SorryServer {
    pub ip: IpAddr,
    pub port: Option<u16>,
    pub forwarding: Option<Forwarding>,
}

/// A virtual server's scheduler flags, as IPVS numbers them (`IP_VS_SVC_F_SCHED1` is
/// bit 0 here, the kernel's 0x8): what each means is the scheduler's. `sh` and `mh`
/// read flag 1 as *fallback* (a client whose server is unavailable goes to another)
/// and flag 2 as *port* (the source port is hashed with the address).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SchedFlags(pub u8);

impl SchedFlags {
    pub const FALLBACK: u8 = 1;
    pub const PORT: u8 = 2;
    pub const FLAG_3: u8 = 4;

    pub fn has(self, bit: u8) -> bool {
        self.0 & bit != 0
    }

    /// The keyword that sets `bit` (1, 2 or 4) under `sched`, as keepalived spells it.
    pub fn keyword(sched: Scheduler, bit: u8) -> &'static str {
        match (sched, bit) {
            (Scheduler::Sh, Self::FALLBACK) => "sh-fallback",
            (Scheduler::Sh, Self::PORT) => "sh-port",
            (Scheduler::Mh, Self::FALLBACK) => "mh-fallback",
            (Scheduler::Mh, Self::PORT) => "mh-port",
            (_, Self::FALLBACK) => "flag-1",
            (_, Self::PORT) => "flag-2",
            _ => "flag-3",
        }
    }

    /// The keywords of the flags set, in bit order.
    pub fn keywords(self, sched: Scheduler) -> Vec<&'static str> {
        [Self::FALLBACK, Self::PORT, Self::FLAG_3]
            .into_iter()
            .filter(|b| self.has(*b))
            .map(|b| Self::keyword(sched, b))
            .collect()
    }

    /// The `IP_VS_SVC_F_SCHED*` bits (0x8, 0x10, 0x20).
    pub fn ipvs_bits(self) -> u32 {
        u32::from(self.0 & 7) << 3
    }
}

/// `virtual_server`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VirtualServer {
    pub key: VsKey,
    pub protocol: Protocol,
    pub lb_algo: Scheduler,
    pub lb_kind: Forwarding,
    /// Seconds a client sticks to its real server (None: no persistence).
    pub persistence_timeout: Option<u32>,
    /// Netmask grouping clients for persistence.
    pub persistence_granularity: Option<IpAddr>,
    /// IPVS flags: one-packet scheduling.
    pub ops: bool,
    /// The scheduler flags (`IP_VS_SVC_F_SCHED1..3`, [`SchedFlags`]): `flag-1`..`flag-3`,
    /// spelled `sh-fallback`/`sh-port` with `sh` and `mh-fallback`/`mh-port` with `mh`.
    pub sched_flags: SchedFlags,
    pub sorry_server: Option<SorryServer>,
    pub sorry_server_inhibit: bool,
    /// Minimum total weight of up real servers (default 1).
    pub quorum: u32,
    pub hysteresis: u32,
    pub quorum_up: Option<Script>,
    pub quorum_down: Option<Script>,
    /// Start with quorum considered lost.
    pub omega: bool,
    /// Do not touch IPVS while the VRRP instances are BACKUP (keepalived `ha_suspend`).
    pub ha_suspend: bool,
    pub real_servers: Vec<RealServer>,
    pub extra: Vec<RawStmt>,
}

impl VirtualServer {
    pub fn new(key: VsKey) -> Self {
        VirtualServer {
            key,
            protocol: Protocol::Tcp,
            lb_algo: Scheduler::Wlc,
            lb_kind: Forwarding::Nat,
            persistence_timeout: None,
            persistence_granularity: None,
            ops: false,
            sched_flags: SchedFlags::default(),
            sorry_server: None,
            sorry_server_inhibit: false,
            quorum: 1,
            hysteresis: 0,
            quorum_up: None,
            quorum_down: None,
            omega: false,
            ha_suspend: false,
            real_servers: Vec::new(),
            extra: Vec::new(),
        }
    }

    pub fn real_server(&self, ip: IpAddr, port: Option<u16>) -> Option<&RealServer> {
        self.real_servers.iter().find(|r| r.ip == ip && r.port == port)
    }
}

/// `real_server IP [PORT]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RealServer {
    pub ip: IpAddr,
    pub port: Option<u16>,
    pub weight: u32,
    /// Per-real-server forwarding method (keepalived 2.x); None: the virtual server's.
    pub lb_kind: Option<Forwarding>,
    /// Keep the server with weight 0 instead of removing it when it fails.
    pub inhibit_on_failure: bool,
    pub notify_up: Option<Script>,
    pub notify_down: Option<Script>,
    pub checkers: Vec<Checker>,
    pub extra: Vec<RawStmt>,
}

impl RealServer {
    pub fn new(ip: IpAddr, port: Option<u16>) -> Self {
        RealServer {
            ip,
            port,
            weight: 1,
            lb_kind: None,
            inhibit_on_failure: false,
            notify_up: None,
            notify_down: None,
            checkers: Vec::new(),
            extra: Vec::new(),
        }
    }
}

/// Settings every checker has; unset ones are inherited from the real server, then the
/// virtual server, then keepalived's defaults, while lowering.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CheckCommon {
    pub connect_ip: Option<IpAddr>,
    pub connect_port: Option<u16>,
    pub bindto: Option<IpAddr>,
    pub bind_port: Option<u16>,
    /// Default 5 s.
    pub connect_timeout: Dur,
    /// Extra attempts before a failure is declared (default 1 for TCP/HTTP, 0 for MISC).
    pub retry: u32,
    /// Default 1 s.
    pub delay_before_retry: Dur,
    /// Seconds between checks (default 60, from the virtual server's `delay_loop`).
    pub delay_loop: Dur,
    /// Random delay up to this before the first check (default: delay_loop).
    pub warmup: Option<Dur>,
    pub alpha: bool,
}

impl Default for CheckCommon {
    fn default() -> Self {
        CheckCommon {
            connect_ip: None,
            connect_port: None,
            bindto: None,
            bind_port: None,
            connect_timeout: Dur::from_secs(5),
            retry: 1,
            delay_before_retry: Dur::from_secs(1),
            delay_loop: Dur::from_secs(60),
            warmup: None,
            alpha: false,
        }
    }
}

/// An accepted range of HTTP status codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct StatusRange {
    pub lo: u16,
    pub hi: u16,
}

impl StatusRange {
    pub fn contains(&self, code: u16) -> bool {
        self.lo <= code && code <= self.hi
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct UrlCheck {
    pub path: String,
    /// md5 of the body, lower-case hex.
    pub digest: Option<String>,
    /// Accepted codes (empty: 200-299).
    pub status_code: Vec<StatusRange>,
    pub virtualhost: Option<String>,
    pub extra: Vec<RawStmt>,
}

impl UrlCheck {
    pub fn accepts(&self, code: u16) -> bool {
        if self.status_code.is_empty() {
            (200..300).contains(&code)
        } else {
            self.status_code.iter().any(|r| r.contains(code))
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct HttpCheck {
    pub urls: Vec<UrlCheck>,
    /// Host header (and TLS SNI) unless a url sets its own.
    pub virtualhost: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MiscCheck {
    pub misc_path: String,
    /// Kill the program and count a failure after this long (default: delay_loop).
    pub misc_timeout: Option<Dur>,
    /// Exit 0 up, 1 down, 2..255 up with weight exit-2.
    pub misc_dynamic: bool,
    pub user: Option<ScriptUser>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CheckKind {
    Tcp,
    Http(HttpCheck),
    Ssl(HttpCheck),
    Misc(MiscCheck),
    /// A checker keepalived has that we do not run (SMTP_CHECK, DNS_CHECK, ...): kept for
    /// export; refused unless `hanode_ignore` accepts it (then it counts as up).
    Other(String),
    // New kinds go last: stored configurations name the kinds by their index.
    /// UDP_CHECK: a datagram sent; an ICMP error is down, silence up unless a reply is
    /// required.
    Udp(UdpCheck),
    /// PING_CHECK: an ICMP (ICMPv6) echo answered within `connect_timeout`.
    Ping,
    /// DNS_CHECK: a query over UDP answered without error.
    Dns(DnsCheck),
    /// SMTP_CHECK: the greeting (220), `HELO` (250) and `QUIT`.
    Smtp(SmtpCheck),
    /// FILE_CHECK: the number in a `track_file`, read when the file changes.
    File(FileCheck),
}

/// FILE_CHECK's settings: the `track_file` it reads and the weight that overrides the
/// file's own. Weight 0: any value but 0 is down (`reverse`: 0 is); otherwise `value *
/// weight` is added to the real server's weight (at least 0).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FileCheck {
    pub track_file: String,
    pub weight: Option<i32>,
    pub reverse: bool,
}

/// SMTP_CHECK's settings (each of keepalived's deprecated `host` blocks is a checker of
/// its own).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SmtpCheck {
    pub helo_name: String,
}

/// keepalived's `helo_name` when none is set.
pub const SMTP_DEFAULT_HELO: &str = "smtpchecker.keepalived.org";

/// DNS_CHECK's settings: the query's type and name (keepalived's defaults: `SOA` of the
/// root, `.`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DnsCheck {
    /// The type's name, upper case, one of [`DNS_TYPES`].
    pub qtype: String,
    /// The name queried, as written (`""`: the root).
    pub name: String,
}

/// The query types keepalived's DNS_CHECK knows, with their codes.
pub const DNS_TYPES: [(&str, u16); 9] = [
    ("A", 1),
    ("NS", 2),
    ("CNAME", 5),
    ("SOA", 6),
    ("MX", 15),
    ("TXT", 16),
    ("AAAA", 28),
    ("RRSIG", 46),
    ("DNSKEY", 48),
];

impl DnsCheck {
    /// The query type's code.
    pub fn qtype_code(&self) -> u16 {
        DNS_TYPES
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(&self.qtype))
            .map(|(_, c)| *c)
            .unwrap_or(6)
    }
}

/// UDP_CHECK's settings, as keepalived 2.2.7 reads them.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct UdpCheck {
    /// What is sent (None: keepalived's 32 bytes of `keepalived check - ` repeated).
    pub payload: Option<HexPattern>,
    /// Down unless an answer comes within `connect_timeout`.
    pub require_reply: bool,
    /// What the answer must start with (masked nibbles: any); lengths are checked only
    /// with it, as keepalived does.
    pub reply: Option<HexPattern>,
    pub min_reply_length: u16,
    pub max_reply_length: u16,
}

/// keepalived's UDP_CHECK reply length bounds when unset.
pub const UDP_REPLY_MAX_DEFAULT: u16 = 255;

/// Octets written in hexadecimal (`payload`, `require_reply`), with keepalived's `X`
/// wildcard nibbles in a reply: `mask` has 0xf in each nibble that matches anything
/// (empty: none).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct HexPattern {
    pub bytes: Vec<u8>,
    pub mask: Vec<u8>,
}

impl HexPattern {
    /// keepalived's reading: pairs of hex digits (`X`: a wildcard, with `wildcards`),
    /// spaces between octets; a lone digit before a space is one octet. None when empty
    /// or not hexadecimal.
    pub fn parse(text: &str, wildcards: bool) -> Option<HexPattern> {
        let digit = |c: u8| -> Option<(u8, u8)> {
            match c {
                b'0'..=b'9' => Some((c - b'0', 0)),
                b'a'..=b'f' => Some((c - b'a' + 10, 0)),
                b'A'..=b'F' => Some((c - b'A' + 10, 0)),
                b'x' | b'X' if wildcards => Some((0, 0xf)),
                _ => None,
            }
        };
        let (mut bytes, mut mask) = (Vec::new(), Vec::new());
        let b = text.as_bytes();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b' ' || b[i] == b'\t' {
                i += 1;
                continue;
            }
            let (mut v, mut m) = digit(b[i])?;
            i += 1;
            if i < b.len() && b[i] != b' ' && b[i] != b'\t' {
                let (v2, m2) = digit(b[i])?;
                v = (v << 4) | v2;
                m = (m << 4) | m2;
                i += 1;
            }
            bytes.push(v);
            mask.push(m);
        }
        if bytes.is_empty() {
            return None;
        }
        if mask.iter().all(|m| *m == 0) {
            mask.clear();
        }
        Some(HexPattern { bytes, mask })
    }

    /// Whether `data` matches on the octets both have (keepalived compares the shorter).
    pub fn matches(&self, data: &[u8]) -> bool {
        self.bytes.iter().zip(data).enumerate().all(|(i, (want, got))| {
            let care = !self.mask.get(i).copied().unwrap_or(0);
            (want ^ got) & care == 0
        })
    }
}

impl std::fmt::Display for HexPattern {
    /// Two digits per octet, `X` for a wildcard nibble.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, b) in self.bytes.iter().enumerate() {
            let m = self.mask.get(i).copied().unwrap_or(0);
            for (shift, nib_mask) in [(4, 0xf0), (0, 0x0f)] {
                if m & nib_mask == nib_mask {
                    f.write_str("X")?;
                } else {
                    write!(f, "{:x}", (b >> shift) & 0xf)?;
                }
            }
        }
        Ok(())
    }
}

impl CheckKind {
    pub fn keyword(&self) -> &str {
        match self {
            CheckKind::Tcp => "TCP_CHECK",
            CheckKind::Http(_) => "HTTP_GET",
            CheckKind::Ssl(_) => "SSL_GET",
            CheckKind::Misc(_) => "MISC_CHECK",
            CheckKind::Other(k) => k,
            CheckKind::Udp(_) => "UDP_CHECK",
            CheckKind::Ping => "PING_CHECK",
            CheckKind::Dns(_) => "DNS_CHECK",
            CheckKind::Smtp(_) => "SMTP_CHECK",
            CheckKind::File(_) => "FILE_CHECK",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Checker {
    pub kind: CheckKind,
    pub common: CheckCommon,
    pub extra: Vec<RawStmt>,
}

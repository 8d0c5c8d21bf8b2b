//! Checker blocks inside `real_server`: TCP_CHECK, HTTP_GET, SSL_GET, MISC_CHECK,
//! UDP_CHECK, PING_CHECK, DNS_CHECK, SMTP_CHECK, FILE_CHECK; BFD_CHECK is kept verbatim
//! (and refused unless `hanode_ignore` names it).

use super::lvs::Inherit;
use super::Ctx;
use crate::model::*;
use crate::syntax::keywords::{self, Section};
use crate::syntax::Stmt;

/// Checkers keepalived has that we keep for export but do not run.
const OTHER_CHECKERS: [&str; 1] = ["BFD_CHECK"];

pub fn is_checker(kw: &str) -> bool {
    matches!(
        kw,
        "TCP_CHECK"
            | "HTTP_GET"
            | "SSL_GET"
            | "MISC_CHECK"
            | "UDP_CHECK"
            | "PING_CHECK"
            | "DNS_CHECK"
            | "SMTP_CHECK"
            | "FILE_CHECK"
    ) || OTHER_CHECKERS.contains(&kw)
}

/// Whether `hanode_ignore` may name `word`: a keepalived keyword (of any block), which
/// hanode may not run.
pub fn may_be_not_run(word: &str) -> bool {
    OTHER_CHECKERS.contains(&word) || Section::ALL.iter().any(|s| keywords::is_known(*s, word))
}

/// The checkers of one checker block: one, or none when it is unusable; an SMTP_CHECK
/// with keepalived's deprecated `host` blocks gives one per host (as keepalived does).
pub(super) fn checker(cx: &mut Ctx, s: &Stmt, inh: &Inherit, vs: &VsKey, rs: &RealServer) -> Vec<Checker> {
    let kw = s.keyword();
    if OTHER_CHECKERS.contains(&kw) {
        cx.push(crate::diag::Diagnostic::not_run(
            s.span(),
            kw,
            &format!(
                "real server {} would count it as up (kept for export)",
                super::lvs::rs_name(rs)
            ),
        ));
        return vec![Checker {
            kind: CheckKind::Other(kw.to_string()),
            common: CheckCommon::default(),
            extra: vec![cx.raw(s)],
        }];
    }
    if kw == "FILE_CHECK" {
        let place = format!("vs {vs} rs {} FILE_CHECK", super::lvs::rs_name(rs));
        return file_check(cx, s, &place).into_iter().collect();
    }
    let mut timing = inh.clone();
    let mut common = CheckCommon::default();
    let section = match kw {
        "TCP_CHECK" => Section::TcpCheck,
        "MISC_CHECK" => Section::MiscCheck,
        "UDP_CHECK" => Section::UdpCheck,
        "PING_CHECK" => Section::PingCheck,
        "DNS_CHECK" => Section::DnsCheck,
        "SMTP_CHECK" => Section::SmtpCheck,
        _ => Section::HttpCheck,
    };
    let mut smtp = SmtpCheck {
        helo_name: SMTP_DEFAULT_HELO.to_string(),
    };
    // SMTP_CHECK `host` blocks: each one's connection and its own connect_timeout.
    let mut smtp_hosts: Vec<(CheckCommon, Option<Dur>)> = Vec::new();
    let mut dns = DnsCheck {
        qtype: "SOA".into(),
        name: String::new(),
    };
    let mut dns_name_set = false;
    let mut udp = UdpCheck {
        payload: None,
        require_reply: false,
        reply: None,
        min_reply_length: 0,
        max_reply_length: UDP_REPLY_MAX_DEFAULT,
    };
    let mut http = HttpCheck {
        urls: Vec::new(),
        virtualhost: None,
    };
    let mut misc = MiscCheck {
        misc_path: String::new(),
        misc_timeout: None,
        misc_dynamic: false,
        user: None,
    };
    let mut extra = Vec::new();
    for c in cx.block(s) {
        let ck = c.keyword();
        match ck {
            "connect_ip" => common.connect_ip = cx.ip(c, 0).or(common.connect_ip),
            "connect_port" => common.connect_port = cx.port(c, 0).or(common.connect_port),
            "bindto" => common.bindto = cx.ip(c, 0).or(common.bindto),
            "bind_port" => common.bind_port = cx.port(c, 0).or(common.bind_port),
            "nb_get_retry" => {
                cx.warning(
                    c.span(),
                    "`nb_get_retry` is deprecated; use `retry` (same meaning)",
                );
                timing.retry = cx
                    .uint(c, 0, 1, u32::MAX as u64, false)
                    .map(|n| n as u32)
                    .or(timing.retry);
            }
            _ if super::lvs::timing_kw(cx, c, &mut timing) => {}
            "url" if section == Section::HttpCheck => {
                if let Some(u) = url(cx, c) {
                    http.urls.push(u);
                }
            }
            "virtualhost" if section == Section::HttpCheck => {
                http.virtualhost = cx.arg(c, 0, "a host name").map(str::to_string)
            }
            "misc_path" if section == Section::MiscCheck => {
                if let Some(sc) = cx.script(c) {
                    misc.misc_path = sc.cmd;
                    if sc.user.is_some() {
                        misc.user = sc.user;
                    }
                }
            }
            "misc_timeout" if section == Section::MiscCheck => {
                misc.misc_timeout = cx
                    .secs(c, 0, Dur(1), Dur::from_secs(u32::MAX as u64), false)
                    .or(misc.misc_timeout)
            }
            "misc_dynamic" if section == Section::MiscCheck => misc.misc_dynamic = cx.flag(c),
            "payload" if section == Section::UdpCheck => {
                let text = words_from(c, 0);
                match HexPattern::parse(&text, false) {
                    Some(p) => udp.payload = Some(p),
                    None => cx.error(
                        c.span(),
                        format!("UDP_CHECK payload `{text}` is not a hexadecimal string (for example `payload 0a1b2c`)"),
                    ),
                }
            }
            "require_reply" if section == Section::UdpCheck => {
                udp.require_reply = true;
                if !c.args().is_empty() {
                    let text = words_from(c, 0);
                    match HexPattern::parse(&text, true) {
                        Some(p) => udp.reply = Some(p),
                        None => cx.error(
                            c.span(),
                            format!("UDP_CHECK require_reply `{text}` is not a hexadecimal string (`X`: any nibble)"),
                        ),
                    }
                }
            }
            "min_reply_length" if section == Section::UdpCheck => {
                if let Some(v) = cx.uint(c, 0, 0, u16::MAX as u64, false) {
                    udp.min_reply_length = v as u16;
                }
            }
            "max_reply_length" if section == Section::UdpCheck => {
                if let Some(v) = cx.uint(c, 0, 0, u16::MAX as u64, false) {
                    udp.max_reply_length = v as u16;
                }
            }
            "helo_name" if section == Section::SmtpCheck => {
                if let Some(h) = cx.arg(c, 0, "a host name") {
                    smtp.helo_name = h.to_string();
                }
                cx.max_args(c, 1);
            }
            "host" if section == Section::SmtpCheck => {
                cx.warning(
                    c.span(),
                    "`host` in SMTP_CHECK is deprecated (keepalived says so too): each host is an SMTP_CHECK of its own, and export writes it that way",
                );
                let mut host = CheckCommon::default();
                let mut host_timing = Inherit::default();
                for h in cx.block(c) {
                    match h.keyword() {
                        "connect_ip" => host.connect_ip = cx.ip(h, 0).or(host.connect_ip),
                        "connect_port" => host.connect_port = cx.port(h, 0).or(host.connect_port),
                        "bindto" => host.bindto = cx.ip(h, 0).or(host.bindto),
                        "bind_port" => host.bind_port = cx.port(h, 0).or(host.bind_port),
                        "connect_timeout" => {
                            super::lvs::timing_kw(cx, h, &mut host_timing);
                        }
                        _ => {
                            if let Some(raw) = cx.other(Section::TcpCheck, h) {
                                extra.push(raw);
                            }
                        }
                    }
                }
                smtp_hosts.push((host, host_timing.connect_timeout));
            }
            "type" if section == Section::DnsCheck => {
                if let Some(t) = cx.arg(c, 0, "a query type") {
                    match DNS_TYPES.iter().find(|(n, _)| n.eq_ignore_ascii_case(t)) {
                        Some((n, _)) => dns.qtype = n.to_string(),
                        None => {
                            let known: Vec<&str> = DNS_TYPES.iter().map(|(n, _)| *n).collect();
                            cx.error(
                                c.arg_span(0),
                                format!("DNS_CHECK type `{t}` is not one of {}", known.join(", ")),
                            )
                        }
                    }
                }
                cx.max_args(c, 1);
            }
            "name" if section == Section::DnsCheck => {
                if let Some(n) = cx.arg(c, 0, "a domain name") {
                    let n = n.to_string();
                    if dns_name_set {
                        cx.error(
                            c.span(),
                            "DNS_CHECK name is already set (keepalived ignores the second)",
                        );
                    } else if (n.starts_with('.') && n != ".") || n.contains("..") {
                        cx.error(c.arg_span(0), format!("DNS_CHECK name `{n}` has an empty label"));
                    } else if n.len() > 253 || n.split('.').any(|l| l.len() > 63) {
                        cx.error(
                            c.arg_span(0),
                            format!("DNS_CHECK name `{n}` is longer than DNS allows (63 bytes a label, 253 in all)"),
                        );
                    } else {
                        dns.name = n;
                        dns_name_set = true;
                    }
                }
                cx.max_args(c, 1);
            }
            "user" if section == Section::MiscCheck => {
                if cx.arg(c, 0, "a user name").is_some() {
                    misc.user = cx.user_words(c, c.args());
                }
            }
            _ => {
                if let Some(raw) = cx.other(section, c) {
                    extra.push(raw);
                }
            }
        }
    }
    common.connect_timeout = timing.connect_timeout.unwrap_or(Dur::from_secs(5));
    // keepalived's defaults: MISC_CHECK does not retry; DNS_CHECK retries 3 times,
    // `delay_loop` apart.
    common.retry = timing.retry.unwrap_or(match kw {
        "MISC_CHECK" => 0,
        "DNS_CHECK" => 3,
        _ => 1,
    });
    common.delay_loop = timing.delay_loop.unwrap_or(Dur::from_secs(60));
    common.delay_before_retry = timing.delay_before_retry.unwrap_or(if kw == "DNS_CHECK" {
        common.delay_loop
    } else {
        Dur::from_secs(1)
    });
    common.warmup = timing.warmup;
    common.alpha = timing.alpha.unwrap_or(false);
    let kind = match kw {
        "TCP_CHECK" => CheckKind::Tcp,
        "PING_CHECK" => CheckKind::Ping,
        "DNS_CHECK" => CheckKind::Dns(dns),
        "SMTP_CHECK" => CheckKind::Smtp(smtp),
        "UDP_CHECK" => {
            if udp.reply.is_some() && udp.min_reply_length > udp.max_reply_length {
                cx.error(
                    s.span(),
                    format!(
                        "UDP_CHECK min_reply_length {} > max_reply_length {}: it would always fail",
                        udp.min_reply_length, udp.max_reply_length
                    ),
                );
            }
            CheckKind::Udp(udp)
        }
        "MISC_CHECK" => {
            if misc.misc_path.is_empty() {
                cx.error(s.span(), "MISC_CHECK has no misc_path");
                return Vec::new();
            }
            CheckKind::Misc(misc)
        }
        _ => {
            if http.urls.is_empty() {
                cx.error(s.span(), format!("{kw} has no url block: it would check nothing"));
                return Vec::new();
            }
            if http.virtualhost.is_none() {
                http.virtualhost = inh.virtualhost.clone();
            }
            if kw == "SSL_GET" {
                CheckKind::Ssl(http)
            } else {
                CheckKind::Http(http)
            }
        }
    };
    if common.connect_port.is_none()
        && rs.port.is_none()
        && matches!(vs, VsKey::Fwmark(_))
        && !matches!(kind, CheckKind::Misc(_) | CheckKind::Ping)
    {
        cx.error(s.span(), format!("{kw} has no port: set connect_port (the real server and its fwmark virtual server have none)"));
    }
    if smtp_hosts.is_empty() {
        return vec![Checker { kind, common, extra }];
    }
    // keepalived: the block's own connection is checked too when it sets one; each host
    // is a checker with the block's timing and its own connection.
    let own = s.block.iter().flat_map(|b| b.stmts.iter()).any(|c| {
        matches!(
            c.keyword(),
            "connect_ip" | "connect_port" | "bindto" | "bind_port" | "connect_timeout"
        )
    });
    let mut out = Vec::new();
    if own {
        out.push(Checker {
            kind: kind.clone(),
            common: common.clone(),
            extra: extra.clone(),
        });
    }
    for (host, timeout) in smtp_hosts {
        let mut c = common.clone();
        c.connect_ip = host.connect_ip;
        c.connect_port = host.connect_port;
        c.bindto = host.bindto;
        c.bind_port = host.bind_port;
        c.connect_timeout = timeout.unwrap_or(c.connect_timeout);
        out.push(Checker {
            kind: kind.clone(),
            common: c,
            extra: extra.clone(),
        });
    }
    out
}

/// The words of `s` from argument `from` on, joined by spaces (keepalived's hex strings
/// may be written in groups).
fn words_from(s: &Stmt, from: usize) -> String {
    s.args()
        .iter()
        .skip(from)
        .map(|w| w.text.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

fn url(cx: &mut Ctx, s: &Stmt) -> Option<UrlCheck> {
    let mut u = UrlCheck {
        path: String::new(),
        digest: None,
        status_code: Vec::new(),
        virtualhost: None,
        extra: Vec::new(),
    };
    for c in cx.block(s) {
        match c.keyword() {
            "path" => {
                if let Some(p) = cx.arg(c, 0, "a path") {
                    u.path = p.to_string();
                }
            }
            "digest" => {
                if let Some(d) = cx.arg(c, 0, "an md5 digest") {
                    if d.len() == 32 && d.chars().all(|ch| ch.is_ascii_hexdigit()) {
                        u.digest = Some(d.to_ascii_lowercase());
                    } else {
                        cx.error(
                            c.arg_span(0),
                            format!("digest `{d}` is not 32 hexadecimal characters (an md5 sum)"),
                        );
                    }
                }
            }
            "status_code" => {
                if c.args().is_empty() {
                    cx.error(
                        c.span(),
                        "`status_code` needs one or more codes or ranges, e.g. `200-299 302`",
                    );
                }
                for w in c.args() {
                    for part in w.text.split(',').filter(|p| !p.is_empty()) {
                        match parse_status(part) {
                            Some(r) => u.status_code.push(r),
                            None => cx.error(
                                w.span,
                                format!("`{part}` is not an HTTP status code or range 100..599"),
                            ),
                        }
                    }
                }
            }
            "virtualhost" => u.virtualhost = cx.arg(c, 0, "a host name").map(str::to_string),
            _ => {
                if let Some(raw) = cx.other(Section::Url, c) {
                    u.extra.push(raw);
                }
            }
        }
    }
    if u.path.is_empty() {
        cx.error(s.span(), "url has no path");
        return None;
    }
    u.status_code = normalize_status(u.status_code);
    Some(u)
}

fn parse_status(s: &str) -> Option<StatusRange> {
    let (lo, hi) = match s.split_once('-') {
        Some((a, b)) => (a.parse::<u16>().ok()?, b.parse::<u16>().ok()?),
        None => {
            let v = s.parse::<u16>().ok()?;
            (v, v)
        }
    };
    if !(100..=599).contains(&lo) || !(100..=599).contains(&hi) || lo > hi {
        return None;
    }
    Some(StatusRange { lo, hi })
}

/// Sorted, merged ranges: `302 200-299 250` and `200-299 302` are the same set.
pub fn normalize_status(mut v: Vec<StatusRange>) -> Vec<StatusRange> {
    v.sort();
    let mut out: Vec<StatusRange> = Vec::new();
    for r in v {
        match out.last_mut() {
            Some(last) if r.lo <= last.hi.saturating_add(1) => last.hi = last.hi.max(r.hi),
            _ => out.push(r),
        }
    }
    out
}

/// `FILE_CHECK { track_file NAME; weight W [reverse] }`: keepalived's FILE_CHECK has no
/// connection or timing keywords (it is read when the file changes).
fn file_check(cx: &mut Ctx, s: &Stmt, place: &str) -> Option<Checker> {
    let mut f = FileCheck {
        track_file: String::new(),
        weight: None,
        reverse: false,
    };
    let mut extra = Vec::new();
    for c in cx.block(s) {
        match c.keyword() {
            "track_file" => {
                if let Some(n) = cx.arg(c, 0, "a track_file name") {
                    f.track_file = n.to_string();
                    cx.mark(format!("{place} track_file {n}"), c.span());
                }
                cx.max_args(c, 1);
            }
            "weight" => {
                if let Some((w, r)) = super::track::weight(cx, c, i32::MAX) {
                    f.weight = Some(w);
                    f.reverse = r;
                }
            }
            _ => {
                if let Some(raw) = cx.other(Section::FileCheck, c) {
                    extra.push(raw);
                }
            }
        }
    }
    if f.track_file.is_empty() {
        cx.error(s.span(), "FILE_CHECK has no `track_file` line");
        return None;
    }
    Some(Checker {
        kind: CheckKind::File(f),
        common: CheckCommon::default(),
        extra,
    })
}

#[cfg(test)]
mod tests {
    use crate::cluster;
    use crate::model::{CheckKind, StatusRange};

    fn url_codes(codes: &str) -> (Vec<StatusRange>, usize) {
        let text = format!(
            "virtual_server 198.18.0.1 80 {{\n real_server 198.18.0.2 80 {{\n  HTTP_GET {{\n   url {{\n    path /\n    status_code {codes}\n   }}\n  }}\n }}\n}}\n"
        );
        let (_, l) = cluster::load_str("t.conf", &text, &[]);
        let errors = l.diags.errors().count();
        let vs = &l.cluster.default.virtual_servers[0];
        match &vs.real_servers[0].checkers[0].kind {
            CheckKind::Http(h) => (h.urls[0].status_code.clone(), errors),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn status_code_lists_and_ranges() {
        let r = |lo, hi| StatusRange { lo, hi };
        assert_eq!(url_codes("200-299,302"), (vec![r(200, 299), r(302, 302)], 0));
        assert_eq!(url_codes("302 200-299 250"), (vec![r(200, 299), r(302, 302)], 0));
        assert_eq!(url_codes("200 201 202"), (vec![r(200, 202)], 0));
        assert_eq!(url_codes("99 200").1, 1, "99 is not an HTTP status");
        assert_eq!(url_codes("300-200").1, 1, "reversed range");
    }
}

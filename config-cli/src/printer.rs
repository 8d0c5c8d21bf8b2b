//! Printing a [`Config`] as keepalived.conf text. The printer first builds a tree of
//! [`Node`]s (which the cluster merger factors across directors), then renders it.
//! Output is deterministic: the same model always prints the same text.

use crate::model::*;
use std::net::IpAddr;

/// One printed line, with its block. `key` identifies the line among its siblings for
/// the cluster merger: the keyword for settings (last one wins in keepalived), the full
/// text for list entries and repeated blocks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub words: Vec<String>,
    pub block: Option<Vec<Node>>,
    pub key: String,
    /// Children are list entries (e.g. `virtual_ipaddress`), not settings.
    pub list: bool,
    /// The lowering span key of the entity this block prints (see `lower::SpanIndex`).
    pub origin: Option<String>,
}

impl Node {
    fn line<S: Into<String>>(words: impl IntoIterator<Item = S>) -> Node {
        let words: Vec<String> = words.into_iter().map(Into::into).collect();
        let key = words.first().cloned().unwrap_or_default();
        Node {
            words,
            block: None,
            key,
            list: false,
            origin: None,
        }
    }

    fn entry<S: Into<String>>(words: impl IntoIterator<Item = S>) -> Node {
        let mut n = Node::line(words);
        n.key = n.words.join(" ");
        n
    }

    fn block<S: Into<String>>(words: impl IntoIterator<Item = S>, mut children: Vec<Node>) -> Node {
        let mut n = Node::line(words);
        n.key = n.words.join(" ");
        // Repeated lines (e.g. several `host` blocks) are told apart by their position.
        let mut seen: std::collections::BTreeMap<String, usize> = Default::default();
        for c in &mut children {
            let count = seen.entry(c.key.clone()).or_insert(0);
            *count += 1;
            if *count > 1 {
                c.key = format!("{} #{count}", c.key);
            }
        }
        n.block = Some(children);
        n
    }

    fn list<S: Into<String>>(words: impl IntoIterator<Item = S>, children: Vec<Node>) -> Node {
        let mut n = Node::block(words, children);
        n.list = true;
        n
    }
}

/// Quotes a word when keepalived's lexer would otherwise split or cut it.
pub fn quote(w: &str) -> String {
    let needs = w.is_empty()
        || w.chars()
            .any(|c| c.is_whitespace() || matches!(c, '#' | '!' | '{' | '}' | '\\'));
    if needs && !w.contains('"') {
        format!("\"{w}\"")
    } else {
        w.to_string()
    }
}

/// Renders nodes as indented keepalived.conf text. `prefix` gives a line's `@node`
/// condition, if any.
pub fn render(nodes: &[Node]) -> String {
    let mut out = String::new();
    render_into(nodes, 0, &mut out, &|_| None);
    out
}

pub(crate) fn render_into(
    nodes: &[Node],
    depth: usize,
    out: &mut String,
    cond: &dyn Fn(&Node) -> Option<String>,
) {
    for (i, n) in nodes.iter().enumerate() {
        if depth == 0 && i > 0 {
            out.push('\n');
        }
        if let Some(c) = cond(n) {
            out.push_str(&c);
            out.push(' ');
        }
        out.push_str(&"    ".repeat(depth));
        let words: Vec<String> = n.words.iter().map(|w| quote(w)).collect();
        out.push_str(&words.join(" "));
        match &n.block {
            Some(children) => {
                out.push_str(" {\n");
                render_into(children, depth + 1, out, cond);
                out.push_str(&"    ".repeat(depth));
                out.push_str("}\n");
            }
            None => out.push('\n'),
        }
    }
}

/// The whole configuration as keepalived.conf text.
pub fn print(cfg: &Config) -> String {
    render(&nodes(cfg))
}

pub fn nodes(cfg: &Config) -> Vec<Node> {
    let mut out = vec![global(&cfg.global)];
    let st = &cfg.global.statics;
    if !st.addresses.is_empty() {
        out.push(Node::list(
            ["static_ipaddress"],
            st.addresses.iter().map(|v| Node::entry(vip_words(v))).collect(),
        ));
    }
    if !st.routes.is_empty() {
        out.push(Node::list(
            ["static_routes"],
            st.routes.iter().map(|r| Node::entry(route_words(r))).collect(),
        ));
    }
    if !st.rules.is_empty() {
        out.push(Node::list(
            ["static_rules"],
            st.rules.iter().map(|r| Node::entry(rule_words(r))).collect(),
        ));
    }
    out.extend(cfg.vrrp_scripts.iter().map(vrrp_script));
    out.extend(cfg.track_files.iter().map(track_file));
    out.extend(cfg.track_processes.iter().map(track_process));
    out.extend(cfg.sync_groups.iter().map(sync_group));
    out.extend(cfg.instances.iter().map(instance));
    out.extend(cfg.vs_groups.iter().map(vs_group));
    out.extend(cfg.virtual_servers.iter().map(|v| virtual_server(v)));
    out.extend(cfg.extra.iter().map(raw));
    out
}

fn raw(r: &RawStmt) -> Node {
    match &r.block {
        Some(children) => Node::block(r.words.clone(), children.iter().map(raw).collect()),
        None => Node::entry(r.words.clone()),
    }
}

fn opt<T: ToString>(out: &mut Vec<Node>, kw: &str, v: &Option<T>) {
    if let Some(v) = v {
        out.push(Node::line([kw.to_string(), v.to_string()]));
    }
}

fn flag(out: &mut Vec<Node>, kw: &str, v: bool) {
    if v {
        out.push(Node::line([kw]));
    }
}

fn user_words(u: &Option<ScriptUser>) -> Vec<String> {
    match u {
        None => vec![],
        Some(ScriptUser { user, group: None }) => vec![user.clone()],
        Some(ScriptUser { user, group: Some(g) }) => vec![user.clone(), g.clone()],
    }
}

fn script(out: &mut Vec<Node>, kw: &str, s: &Option<Script>) {
    if let Some(s) = s {
        let mut w = vec![kw.to_string(), s.cmd.clone()];
        w.extend(user_words(&s.user));
        out.push(Node::line(w));
    }
}

fn global(g: &GlobalDefs) -> Node {
    let mut c = Vec::new();
    if !g.notification_email.is_empty() {
        c.push(Node::list(
            ["notification_email"],
            g.notification_email
                .iter()
                .map(|e| Node::entry([e.clone()]))
                .collect(),
        ));
    }
    opt(&mut c, "notification_email_from", &g.notification_email_from);
    if let Some(s) = &g.smtp_server {
        let mut w = vec!["smtp_server".to_string(), s.host.clone()];
        if let Some(p) = s.port {
            w.push(p.to_string());
        }
        c.push(Node::line(w));
    }
    opt(&mut c, "smtp_connect_timeout", &g.smtp_connect_timeout);
    opt(&mut c, "smtp_helo_name", &g.smtp_helo_name);
    match g.smtp_alert_vrrp {
        Some(true) => c.push(Node::line(["smtp_alert_vrrp"])),
        Some(false) => c.push(Node::line(["smtp_alert_vrrp", "false"])),
        None => {}
    }
    flag(&mut c, "no_email_faults", g.no_email_faults);
    match g.smtp_alert {
        Some(true) => c.push(Node::line(["smtp_alert"])),
        Some(false) => c.push(Node::line(["smtp_alert", "false"])),
        None => {}
    }
    opt(&mut c, "router_id", &g.router_id);
    flag(&mut c, "vrrp_skip_check_adv_addr", g.vrrp_skip_check_adv_addr);
    flag(&mut c, "vrrp_strict", g.vrrp_strict);
    flag(&mut c, "vrrp_check_unicast_src", g.vrrp_check_unicast_src);
    opt(&mut c, "vrrp_garp_interval", &g.vrrp_garp_interval);
    opt(&mut c, "vrrp_gna_interval", &g.vrrp_gna_interval);
    opt(&mut c, "vrrp_garp_master_delay", &g.vrrp_garp_master_delay);
    opt(&mut c, "vrrp_garp_master_repeat", &g.vrrp_garp_master_repeat);
    opt(&mut c, "vrrp_garp_master_refresh", &g.vrrp_garp_master_refresh);
    opt(
        &mut c,
        "vrrp_garp_master_refresh_repeat",
        &g.vrrp_garp_master_refresh_repeat,
    );
    opt(&mut c, "vrrp_version", &g.vrrp_version);
    opt(&mut c, "vrrp_mcast_group4", &g.vrrp_mcast_group4);
    opt(&mut c, "vrrp_mcast_group6", &g.vrrp_mcast_group6);
    if g.script_user.is_some() {
        let mut w = vec!["script_user".to_string()];
        w.extend(user_words(&g.script_user));
        c.push(Node::line(w));
    }
    flag(&mut c, "enable_script_security", g.enable_script_security);
    if let Some(l) = &g.lvs_sync_daemon {
        let mut w = vec![
            "lvs_sync_daemon".to_string(),
            l.interface.clone(),
            l.instance.clone(),
        ];
        let opts = [
            ("id", l.sync_id.map(|v| v.to_string())),
            ("maxlen", l.maxlen.map(|v| v.to_string())),
            ("port", l.port.map(|v| v.to_string())),
            ("ttl", l.ttl.map(|v| v.to_string())),
            ("group", l.group.map(|v| v.to_string())),
        ];
        for (k, v) in opts {
            if let Some(v) = v {
                w.extend([k.to_string(), v]);
            }
        }
        c.push(Node::line(w));
    }
    c.extend(g.extra.iter().map(raw));
    Node::block(["global_defs"], c)
}

fn vrrp_script(s: &VrrpScript) -> Node {
    let mut c = vec![Node::line(["script".to_string(), s.script.clone()])];
    c.push(Node::line(["interval".to_string(), s.interval.to_string()]));
    opt(&mut c, "timeout", &s.timeout);
    if s.weight != 0 || s.weight_reverse {
        let mut w = vec!["weight".to_string(), s.weight.to_string()];
        if s.weight_reverse {
            w.push("reverse".into());
        }
        c.push(Node::line(w));
    }
    if s.rise != 1 {
        c.push(Node::line(["rise".to_string(), s.rise.to_string()]));
    }
    if s.fall != 1 {
        c.push(Node::line(["fall".to_string(), s.fall.to_string()]));
    }
    if s.user.is_some() {
        let mut w = vec!["user".to_string()];
        w.extend(user_words(&s.user));
        c.push(Node::line(w));
    }
    flag(&mut c, "init_fail", s.init_fail);
    c.extend(s.extra.iter().map(raw));
    with_origin(
        Node::block(["vrrp_script".to_string(), s.name.clone()], c),
        format!("vrrp_script {}", s.name),
    )
}

fn weight_line(c: &mut Vec<Node>, weight: i32, reverse: bool) {
    let mut w = vec!["weight".to_string(), weight.to_string()];
    if reverse {
        w.push("reverse".into());
    }
    c.push(Node::line(w));
}

fn track_file(t: &TrackFile) -> Node {
    let mut c = vec![Node::line(["file".to_string(), quote(&t.file)])];
    if t.weight != 1 || t.weight_reverse {
        weight_line(&mut c, t.weight, t.weight_reverse);
    }
    if let Some(i) = t.init {
        let mut w = vec!["init_file".to_string(), i.value.to_string()];
        if i.overwrite {
            w.push("overwrite".into());
        }
        c.push(Node::line(w));
    }
    c.extend(t.extra.iter().map(raw));
    with_origin(
        Node::block(["track_file".to_string(), t.name.clone()], c),
        format!("track_file {}", t.name),
    )
}

fn track_process(t: &TrackProcess) -> Node {
    let mut p = vec!["process".to_string(), quote(&t.process)];
    p.extend(t.params.iter().map(|w| quote(w)));
    let mut c = vec![Node::line(p)];
    match t.param_match {
        ParamMatch::None => {}
        ParamMatch::Exact => c.push(Node::line(["param_match"])),
        ParamMatch::Partial => c.push(Node::line(["param_match", "partial"])),
        ParamMatch::Initial => c.push(Node::line(["param_match", "initial"])),
    }
    flag(&mut c, "full_command", t.full_command);
    if t.weight != 0 || t.weight_reverse {
        weight_line(&mut c, t.weight, t.weight_reverse);
    }
    if t.quorum_max != u32::MAX {
        c.push(Node::line(["quorum_max".to_string(), t.quorum_max.to_string()]));
    }
    if t.quorum != 1 && t.quorum_max != 0 {
        c.push(Node::line(["quorum".to_string(), t.quorum.to_string()]));
    }
    if t.fork_delay == t.terminate_delay {
        if t.fork_delay != Dur(0) {
            c.push(Node::line(["delay".to_string(), t.fork_delay.to_string()]));
        }
    } else {
        if t.fork_delay != Dur(0) {
            c.push(Node::line(["fork_delay".to_string(), t.fork_delay.to_string()]));
        }
        if t.terminate_delay != Dur(0) {
            c.push(Node::line([
                "terminate_delay".to_string(),
                t.terminate_delay.to_string(),
            ]));
        }
    }
    c.extend(t.extra.iter().map(raw));
    with_origin(
        Node::block(["vrrp_track_process".to_string(), t.name.clone()], c),
        format!("vrrp_track_process {}", t.name),
    )
}

fn notify(c: &mut Vec<Node>, n: &Notify) {
    script(c, "notify_master", &n.master);
    script(c, "notify_backup", &n.backup);
    script(c, "notify_fault", &n.fault);
    script(c, "notify_stop", &n.stop);
    script(c, "notify", &n.any);
}

fn weight_words(name: &str, weight: Option<i32>, reverse: bool) -> Vec<String> {
    let mut w = vec![name.to_string()];
    if let Some(x) = weight {
        w.push("weight".into());
        w.push(x.to_string());
        if reverse {
            w.push("reverse".into());
        }
    }
    w
}

fn tracks(c: &mut Vec<Node>, ti: &[TrackInterface], refs: [(&str, &[TrackRef]); 3]) {
    if !ti.is_empty() {
        c.push(Node::list(
            ["track_interface"],
            ti.iter()
                .map(|t| Node::entry(weight_words(&t.name, t.weight, t.weight_reverse)))
                .collect(),
        ));
    }
    for (kw, list) in refs {
        if !list.is_empty() {
            c.push(Node::list(
                [kw],
                list.iter()
                    .map(|t| Node::entry(weight_words(&t.name, t.weight, t.weight_reverse)))
                    .collect(),
            ));
        }
    }
}

fn smtp_alert(c: &mut Vec<Node>, v: Option<bool>) {
    match v {
        Some(true) => c.push(Node::line(["smtp_alert"])),
        Some(false) => c.push(Node::line(["smtp_alert", "false"])),
        None => {}
    }
}

fn sync_group(g: &SyncGroup) -> Node {
    let mut c = vec![Node::list(
        ["group"],
        g.members.iter().map(|m| Node::entry([m.clone()])).collect(),
    )];
    tracks(
        &mut c,
        &g.track_interface,
        [
            ("track_script", &g.track_script),
            ("track_file", &g.track_file),
            ("track_process", &g.track_process),
        ],
    );
    flag(&mut c, "sync_group_tracking_weight", g.tracking_weight);
    smtp_alert(&mut c, g.smtp_alert);
    notify(&mut c, &g.notify);
    c.extend(g.extra.iter().map(raw));
    with_origin(
        Node::block(["vrrp_sync_group".to_string(), g.name.clone()], c),
        format!("sync_group {}", g.name),
    )
}

/// A route as an `ip route` line keepalived reads back the same.
pub fn route_words(r: &Route) -> Vec<String> {
    let mut w = Vec::new();
    if r.kind != RouteType::Unicast {
        w.push(r.kind.keyword().to_string());
    }
    w.push(if r.dest.len == 0 && r.dest.addr.is_ipv4() {
        "0.0.0.0/0".to_string()
    } else {
        r.dest.to_string()
    });
    if let Some(s) = r.src {
        w.extend(["src".to_string(), s.to_string()]);
    }
    for (n, h) in r.via.iter().enumerate() {
        w.extend([if n == 0 { "via" } else { "or" }.to_string(), h.via.to_string()]);
    }
    let mut opt = |k: &str, v: Option<String>| {
        if let Some(v) = v {
            w.extend([k.to_string(), v]);
        }
    };
    opt("dev", r.dev.clone());
    opt("scope", r.scope.map(scope_name));
    opt("table", r.table.map(|t| t.to_string()));
    opt("metric", r.metric.map(|t| t.to_string()));
    opt("protocol", r.protocol.map(|t| t.to_string()));
    opt("mtu", r.mtu.map(|t| t.to_string()));
    opt("advmss", r.advmss.map(|t| t.to_string()));
    if r.onlink {
        w.push("onlink".into());
    }
    if r.no_track {
        w.push("no_track".into());
    }
    w
}

/// A rule as an `ip rule` line keepalived reads back the same.
pub fn rule_words(r: &Rule) -> Vec<String> {
    let mut w = Vec::new();
    if r.from.is_none() && r.to.is_none() {
        w.push(if r.v6 { "inet6" } else { "inet" }.to_string());
    }
    if r.not {
        w.push("not".into());
    }
    if let Some(p) = r.from {
        w.extend(["from".to_string(), p.to_string()]);
    }
    if let Some(p) = r.to {
        w.extend(["to".to_string(), p.to_string()]);
    }
    if let Some((m, mask)) = r.fwmark {
        w.extend([
            "fwmark".to_string(),
            match mask {
                Some(k) => format!("{m:#x}/{k:#x}"),
                None => format!("{m:#x}"),
            },
        ]);
    }
    let mut opt = |k: &str, v: Option<String>| {
        if let Some(v) = v {
            w.extend([k.to_string(), v]);
        }
    };
    opt("iif", r.iif.clone());
    opt("oif", r.oif.clone());
    opt("tos", r.tos.map(|t| t.to_string()));
    opt("ipproto", r.ipproto.map(|t| t.to_string()));
    let range = |(a, b): (u16, u16)| if a == b { a.to_string() } else { format!("{a}-{b}") };
    opt("sport", r.sport.map(range));
    opt("dport", r.dport.map(range));
    opt("priority", r.priority.map(|t| t.to_string()));
    match r.action {
        RuleAction::Table(t) => w.extend(["table".to_string(), t.to_string()]),
        RuleAction::Blackhole => w.push("blackhole".into()),
        RuleAction::Unreachable => w.push("unreachable".into()),
        RuleAction::Prohibit => w.push("prohibit".into()),
    }
    if r.no_track {
        w.push("no_track".into());
    }
    w
}

pub fn vip_words(v: &VipAddr) -> Vec<String> {
    let mut w = vec![match v.prefix {
        Some(p) => format!("{}/{p}", v.addr),
        None => v.addr.to_string(),
    }];
    let mut kv = |k: &str, val: &Option<String>| {
        if let Some(x) = val {
            w.push(k.to_string());
            w.push(x.clone());
        }
    };
    kv("brd", &v.brd.map(|b| b.to_string()));
    kv("dev", &v.dev);
    kv("scope", &v.scope);
    kv("label", &v.label);
    if v.no_track {
        w.push("no_track".into());
    }
    w.extend(v.extra.iter().cloned());
    w
}

fn instance(i: &VrrpInstance) -> Node {
    let mut c = vec![
        Node::line([
            "state",
            if i.state == InitialState::Master {
                "MASTER"
            } else {
                "BACKUP"
            },
        ]),
        Node::line(["interface".to_string(), i.interface.clone()]),
        Node::line(["virtual_router_id".to_string(), i.virtual_router_id.to_string()]),
        Node::line(["priority".to_string(), i.priority.to_string()]),
        Node::line(["advert_int".to_string(), i.advert_int.to_string()]),
    ];
    if i.version != 2 {
        c.push(Node::line(["version".to_string(), i.version.to_string()]));
    }
    flag(&mut c, "nopreempt", i.nopreempt);
    opt(&mut c, "preempt_delay", &i.preempt_delay);
    flag(&mut c, "dont_track_primary", i.dont_track_primary);
    opt(&mut c, "mcast_src_ip", &i.mcast_src_ip);
    opt(&mut c, "unicast_src_ip", &i.unicast_src_ip);
    if !i.unicast_peer.is_empty() {
        c.push(Node::list(
            ["unicast_peer"],
            i.unicast_peer
                .iter()
                .map(|p| {
                    let mut w = vec![p.addr.to_string()];
                    if let Some(t) = p.min_ttl {
                        w.extend(["min_ttl".to_string(), t.to_string()]);
                    }
                    if let Some(t) = p.max_ttl {
                        w.extend(["max_ttl".to_string(), t.to_string()]);
                    }
                    Node::entry(w)
                })
                .collect(),
        ));
    }
    if let Some(a) = &i.auth {
        let (t, p) = match a {
            Auth::Pass(p) => ("PASS", p),
            Auth::Ah(p) => ("AH", p),
        };
        c.push(Node::block(
            ["authentication"],
            vec![
                Node::line(["auth_type", t]),
                Node::line(["auth_pass".to_string(), p.clone()]),
            ],
        ));
    }
    c.push(Node::list(
        ["virtual_ipaddress"],
        i.virtual_ipaddress
            .iter()
            .map(|v| Node::entry(vip_words(v)))
            .collect(),
    ));
    if !i.virtual_ipaddress_excluded.is_empty() {
        c.push(Node::list(
            ["virtual_ipaddress_excluded"],
            i.virtual_ipaddress_excluded
                .iter()
                .map(|v| Node::entry(vip_words(v)))
                .collect(),
        ));
    }
    if !i.virtual_routes.is_empty() {
        c.push(Node::list(
            ["virtual_routes"],
            i.virtual_routes
                .iter()
                .map(|r| Node::entry(route_words(r)))
                .collect(),
        ));
    }
    if !i.virtual_rules.is_empty() {
        c.push(Node::list(
            ["virtual_rules"],
            i.virtual_rules
                .iter()
                .map(|r| Node::entry(rule_words(r)))
                .collect(),
        ));
    }
    tracks(
        &mut c,
        &i.track_interface,
        [
            ("track_script", &i.track_script),
            ("track_file", &i.track_file),
            ("track_process", &i.track_process),
        ],
    );
    notify(&mut c, &i.notify);
    let d = Garp::default();
    if i.garp.master_delay != d.master_delay {
        c.push(Node::line([
            "garp_master_delay".to_string(),
            i.garp.master_delay.to_string(),
        ]));
    }
    if i.garp.master_repeat != d.master_repeat {
        c.push(Node::line([
            "garp_master_repeat".to_string(),
            i.garp.master_repeat.to_string(),
        ]));
    }
    if i.garp.master_refresh != d.master_refresh {
        c.push(Node::line([
            "garp_master_refresh".to_string(),
            i.garp.master_refresh.to_string(),
        ]));
    }
    if i.garp.master_refresh_repeat != d.master_refresh_repeat {
        c.push(Node::line([
            "garp_master_refresh_repeat".to_string(),
            i.garp.master_refresh_repeat.to_string(),
        ]));
    }
    smtp_alert(&mut c, i.smtp_alert);
    c.extend(i.extra.iter().map(raw));
    with_origin(
        Node::block(["vrrp_instance".to_string(), i.name.clone()], c),
        format!("instance {}", i.name),
    )
}

fn ip_port(ip: &IpAddr, port: u16) -> Vec<String> {
    vec![ip.to_string(), port.to_string()]
}

fn vs_group(g: &VirtualServerGroup) -> Node {
    let c = g
        .members
        .iter()
        .map(|m| match m {
            VsgMember::Fwmark(f) => Node::entry(["fwmark".to_string(), f.to_string()]),
            VsgMember::Addr {
                ip,
                range_end: Some(e),
                port,
            } => Node::entry([format!("{ip}-{e}"), port.to_string()]),
            VsgMember::Addr {
                ip,
                range_end: None,
                port,
            } => Node::entry(ip_port(ip, *port)),
        })
        .collect();
    with_origin(
        Node::list(["virtual_server_group".to_string(), g.name.clone()], c),
        format!("vs_group {}", g.name),
    )
}

fn vs_key_words(k: &VsKey) -> Vec<String> {
    let mut w = vec!["virtual_server".to_string()];
    match k {
        VsKey::Addr { ip, port } => w.extend(ip_port(ip, *port)),
        VsKey::Fwmark(m) => w.extend(["fwmark".to_string(), m.to_string()]),
        VsKey::Group(g) => w.extend(["group".to_string(), g.clone()]),
    }
    w
}

fn virtual_server(vs: &VirtualServer) -> Node {
    let mut c = vec![
        Node::line(["lb_algo", vs.lb_algo.name()]),
        Node::line(["lb_kind", vs.lb_kind.name()]),
        Node::line(["protocol", vs.protocol.name()]),
    ];
    opt(&mut c, "persistence_timeout", &vs.persistence_timeout);
    opt(&mut c, "persistence_granularity", &vs.persistence_granularity);
    flag(&mut c, "ops", vs.ops);
    for kw in vs.sched_flags.keywords(vs.lb_algo) {
        c.push(Node::line([kw]));
    }
    if let Some(s) = &vs.sorry_server {
        let mut w = vec!["sorry_server".to_string(), s.ip.to_string()];
        if let Some(p) = s.port {
            w.push(p.to_string());
        }
        c.push(Node::line(w));
        if let Some(f) = s.forwarding {
            c.push(Node::line(["sorry_server_lvs_method", f.name()]));
        }
    }
    flag(&mut c, "sorry_server_inhibit", vs.sorry_server_inhibit);
    if vs.quorum != 1 {
        c.push(Node::line(["quorum".to_string(), vs.quorum.to_string()]));
    }
    if vs.hysteresis != 0 {
        c.push(Node::line(["hysteresis".to_string(), vs.hysteresis.to_string()]));
    }
    script(&mut c, "quorum_up", &vs.quorum_up);
    script(&mut c, "quorum_down", &vs.quorum_down);
    flag(&mut c, "omega", vs.omega);
    flag(&mut c, "ha_suspend", vs.ha_suspend);
    c.extend(vs.extra.iter().map(raw));
    c.extend(vs.real_servers.iter().map(|rs| real_server(&vs.key, rs)));
    with_origin(Node::block(vs_key_words(&vs.key), c), format!("vs {}", vs.key))
}

fn with_origin(mut n: Node, origin: String) -> Node {
    n.origin = Some(origin);
    n
}

fn real_server(vs: &VsKey, rs: &RealServer) -> Node {
    let mut head = vec!["real_server".to_string(), rs.ip.to_string()];
    if let Some(p) = rs.port {
        head.push(p.to_string());
    }
    let mut c = vec![Node::line(["weight".to_string(), rs.weight.to_string()])];
    if let Some(f) = rs.lb_kind {
        c.push(Node::line(["lvs_method", f.name()]));
    }
    flag(&mut c, "inhibit_on_failure", rs.inhibit_on_failure);
    script(&mut c, "notify_up", &rs.notify_up);
    script(&mut c, "notify_down", &rs.notify_down);
    c.extend(rs.extra.iter().map(raw));
    c.extend(rs.checkers.iter().map(checker));
    with_origin(
        Node::block(head, c),
        format!("vs {vs} rs {}", crate::lower::rs_name(rs)),
    )
}

fn checker(chk: &Checker) -> Node {
    if let CheckKind::Other(_) = &chk.kind {
        // Kept verbatim: the raw block is the checker.
        if let Some(r) = chk.extra.first() {
            return raw(r);
        }
    }
    if let CheckKind::File(f) = &chk.kind {
        // No connection or timing lines: keepalived's FILE_CHECK has none.
        let mut c = vec![Node::line(["track_file".to_string(), quote(&f.track_file)])];
        if let Some(w) = f.weight {
            let mut words = vec!["weight".to_string(), w.to_string()];
            if f.reverse {
                words.push("reverse".into());
            }
            c.push(Node::line(words));
        }
        c.extend(chk.extra.iter().map(raw));
        return Node::block(["FILE_CHECK"], c);
    }
    let cm = &chk.common;
    let mut c = Vec::new();
    opt(&mut c, "connect_ip", &cm.connect_ip);
    opt(&mut c, "connect_port", &cm.connect_port);
    opt(&mut c, "bindto", &cm.bindto);
    opt(&mut c, "bind_port", &cm.bind_port);
    c.push(Node::line([
        "connect_timeout".to_string(),
        cm.connect_timeout.to_string(),
    ]));
    if !matches!(chk.kind, CheckKind::Misc(_)) || cm.retry != 0 {
        c.push(Node::line(["retry".to_string(), cm.retry.to_string()]));
    }
    c.push(Node::line([
        "delay_before_retry".to_string(),
        cm.delay_before_retry.to_string(),
    ]));
    c.push(Node::line(["delay_loop".to_string(), cm.delay_loop.to_string()]));
    opt(&mut c, "warmup", &cm.warmup);
    flag(&mut c, "alpha", cm.alpha);
    match &chk.kind {
        CheckKind::Http(h) | CheckKind::Ssl(h) => {
            opt(&mut c, "virtualhost", &h.virtualhost);
            for u in &h.urls {
                let mut uc = vec![Node::line(["path".to_string(), u.path.clone()])];
                opt(&mut uc, "digest", &u.digest);
                if !u.status_code.is_empty() {
                    let mut w = vec!["status_code".to_string()];
                    w.extend(u.status_code.iter().map(|r| {
                        if r.lo == r.hi {
                            r.lo.to_string()
                        } else {
                            format!("{}-{}", r.lo, r.hi)
                        }
                    }));
                    uc.push(Node::line(w));
                }
                opt(&mut uc, "virtualhost", &u.virtualhost);
                uc.extend(u.extra.iter().map(raw));
                c.push(Node::block(["url"], uc));
            }
        }
        CheckKind::Misc(m) => {
            c.push(Node::line(["misc_path".to_string(), m.misc_path.clone()]));
            if m.user.is_some() {
                let mut w = vec!["user".to_string()];
                w.extend(user_words(&m.user));
                c.push(Node::line(w));
            }
            opt(&mut c, "misc_timeout", &m.misc_timeout);
            flag(&mut c, "misc_dynamic", m.misc_dynamic);
        }
        CheckKind::Udp(u) => {
            if let Some(p) = &u.payload {
                c.push(Node::line(["payload".to_string(), p.to_string()]));
            }
            if u.require_reply {
                let mut w = vec!["require_reply".to_string()];
                w.extend(u.reply.as_ref().map(|r| r.to_string()));
                c.push(Node::line(w));
            }
            if u.min_reply_length != 0 {
                c.push(Node::line([
                    "min_reply_length".to_string(),
                    u.min_reply_length.to_string(),
                ]));
            }
            if u.max_reply_length != UDP_REPLY_MAX_DEFAULT {
                c.push(Node::line([
                    "max_reply_length".to_string(),
                    u.max_reply_length.to_string(),
                ]));
            }
        }
        CheckKind::Dns(d) => {
            c.push(Node::line(["type".to_string(), d.qtype.clone()]));
            if !d.name.is_empty() {
                c.push(Node::line(["name".to_string(), d.name.clone()]));
            }
        }
        CheckKind::Smtp(m) => {
            if m.helo_name != SMTP_DEFAULT_HELO {
                c.push(Node::line(["helo_name".to_string(), m.helo_name.clone()]));
            }
        }
        CheckKind::Tcp | CheckKind::Ping | CheckKind::Other(_) | CheckKind::File(_) => {}
    }
    c.extend(chk.extra.iter().map(raw));
    Node::block([chk.kind.keyword().to_string()], c)
}

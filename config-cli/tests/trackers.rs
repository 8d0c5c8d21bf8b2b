//! `track_file` and `vrrp_track_process` (issue 24): read with keepalived 2.2.7's keywords
//! and defaults, referenced from instances and sync groups, printed back to the same
//! model, and the weights keepalived settles for sync-group members and address owners.

use ha_config::cluster;
use ha_config::diag::Severity;
use ha_config::model::*;

const TEXT: &str = "track_file ready {\n file /run/ha/ready\n weight -10 reverse\n init_file 3 overwrite\n}\n\
vrrp_track_file old {\n file /run/ha/old\n}\n\
vrrp_track_process web {\n process nginx\n weight -30\n quorum 2\n delay 0.5\n}\n\
vrrp_track_process agent {\n process /usr/bin/python3 agent.py --serve\n param_match partial\n quorum_max 0\n fork_delay 2\n}\n\
vrrp_instance VI_1 {\n interface ens33\n virtual_router_id 51\n priority 100\n virtual_ipaddress {\n  198.18.116.134\n }\n\
 track_file {\n  ready\n  old weight 5\n }\n track_process {\n  web\n  agent weight 7 reverse\n }\n}\n";

fn load(text: &str) -> (ha_config::syntax::Parsed, cluster::Loaded) {
    cluster::load_str("t.conf", text, &[])
}

fn rendered(text: &str) -> Vec<String> {
    let (parsed, l) = load(text);
    l.diags.iter().map(|d| d.render(&parsed.sources)).collect()
}

#[test]
fn blocks_read_with_keepalived_defaults_and_print_back() {
    let (_, l) = load(TEXT);
    assert!(!l.diags.has_errors(), "{:?}", rendered(TEXT));
    let c = &l.cluster.default;
    let ready = c.track_file("ready").expect("track_file ready");
    assert_eq!(ready.file, "/run/ha/ready");
    assert_eq!((ready.weight, ready.weight_reverse), (-10, true));
    assert_eq!(
        ready.init,
        Some(FileInit {
            value: 3,
            overwrite: true
        })
    );
    let old = c.track_file("old").expect("vrrp_track_file is the same block");
    assert_eq!(
        (old.weight, old.init),
        (1, None),
        "keepalived's default weight is 1"
    );
    let web = c.track_process("web").expect("web");
    assert_eq!((web.quorum, web.quorum_max, web.weight), (2, u32::MAX, -30));
    assert_eq!(
        (web.fork_delay, web.terminate_delay),
        (Dur::from_millis(500), Dur::from_millis(500))
    );
    assert!(!web.full_command && web.param_match == ParamMatch::None);
    let agent = c.track_process("agent").expect("agent");
    assert_eq!(agent.process, "/usr/bin/python3");
    assert_eq!(agent.params, ["agent.py", "--serve"]);
    assert_eq!(agent.param_match, ParamMatch::Partial);
    assert!(agent.full_command, "parameters imply the full command line");
    assert_eq!(
        (agent.quorum, agent.quorum_max),
        (0, 0),
        "quorum_max 0: up while none runs"
    );
    assert_eq!(
        (agent.fork_delay, agent.terminate_delay),
        (Dur::from_secs(2), Dur(0))
    );

    let i = c.instance("VI_1").expect("instance");
    let (tracked, notes) = c.tracking(i);
    assert!(notes.is_empty(), "{notes:?}");
    let t = |kind, name: &str| tracked.iter().find(|t| t.kind == kind && t.name == name).cloned();
    assert_eq!(
        t(TrackedKind::File, "ready").map(|t| (t.weight, t.reverse)),
        Some((Some(-10), true))
    );
    assert_eq!(
        t(TrackedKind::File, "old").map(|t| (t.weight, t.reverse)),
        Some((Some(5), false))
    );
    assert_eq!(t(TrackedKind::Process, "web").map(|t| t.weight), Some(Some(-30)));
    assert_eq!(
        t(TrackedKind::Process, "agent").map(|t| (t.weight, t.reverse)),
        Some((Some(7), true))
    );

    // Printed and read again: the same model.
    let printed = l.cluster.print().expect("print");
    let (_, again) = load(&printed);
    assert!(!again.diags.has_errors(), "{printed}");
    assert_eq!(
        ha_config::canon::canonical_config(&again.cluster.default),
        ha_config::canon::canonical_config(c),
        "{printed}"
    );
}

#[test]
fn bad_tracker_lines_are_errors_at_their_place() {
    let text = "track_file f {\n file relative/path\n}\n\
vrrp_track_process p {\n quorum 3\n quorum_max 2\n process x\n}\n\
vrrp_track_process q {\n weight 300\n}\n\
vrrp_instance VI_1 {\n interface ens33\n virtual_router_id 51\n virtual_ipaddress {\n  198.18.116.134\n }\n track_file {\n  nosuch\n }\n track_process {\n  gone\n }\n}\n";
    let e = rendered(text).join("\n");
    for want in [
        "t.conf:2:7: error: track_file f: `relative/path` is not an absolute path",
        "t.conf:5:2: error: vrrp_track_process p: quorum 3 is above quorum_max 2",
        "t.conf:10:9: error: `weight` 300 is outside the range -254..254",
        "t.conf:9:1: error: vrrp_track_process q has no `process` line",
        "t.conf:19:3: error: vrrp_instance VI_1 tracks `nosuch` (track_file), which no track_file defines",
        "t.conf:22:3: error: vrrp_instance VI_1 tracks `gone` (track_process), which no vrrp_track_process defines",
    ] {
        assert!(e.contains(want), "missing {want} in\n{e}");
    }
}

#[test]
fn sync_groups_share_their_trackers_and_unweight_their_members_as_keepalived() {
    let text = "vrrp_script chk {\n script /bin/true\n weight 20\n}\n\
track_file f {\n file /run/f\n}\n\
vrrp_track_process p {\n process nginx\n weight -5\n}\n\
vrrp_sync_group G {\n group {\n  A\n  B\n }\n track_process {\n  p\n }\n}\n\
vrrp_instance A {\n interface ens33\n virtual_router_id 1\n virtual_ipaddress {\n  198.18.116.134\n }\n track_script {\n  chk\n }\n track_file {\n  f\n }\n track_interface {\n  eth1 weight 10\n }\n track_process {\n  p weight -9\n }\n}\n\
vrrp_instance B {\n interface ens33\n virtual_router_id 2\n virtual_ipaddress {\n  198.18.116.135\n }\n}\n";
    let (parsed, l) = load(text);
    let c = &l.cluster.default;
    let (tracked, notes) = c.tracking(c.instance("A").expect("A"));
    let kinds: Vec<(TrackedKind, &str, Option<i32>)> = tracked
        .iter()
        .map(|t| (t.kind, t.name.as_str(), t.weight))
        .collect();
    assert_eq!(
        kinds,
        [
            (TrackedKind::Interface, "eth1", None),
            (TrackedKind::File, "f", None),
            (TrackedKind::Process, "p", Some(-5)),
        ],
        "the weighted script is dropped, the file and interface unweighted, the process tracked once with the group's weight"
    );
    assert_eq!(notes.len(), 3, "{notes:?}");
    let (b, _) = c.tracking(c.instance("B").expect("B"));
    assert_eq!(b.len(), 1, "B tracks the group's process: {b:?}");
    let warnings: Vec<String> = l
        .diags
        .iter()
        .filter(|d| d.severity == Severity::Warning)
        .map(|d| d.render(&parsed.sources))
        .collect();
    assert!(
        warnings
            .iter()
            .any(|w| w.starts_with("t.conf:28:3: warning: vrrp_instance A: track_script chk is not tracked")),
        "{warnings:?}"
    );
    // With sync_group_tracking_weight the member keeps its weights.
    let weighted = text.replace(
        " track_process {\n  p\n }\n}\n",
        " track_process {\n  p\n }\n sync_group_tracking_weight\n}\n",
    );
    let (_, l) = load(&weighted);
    let c = &l.cluster.default;
    let (tracked, notes) = c.tracking(c.instance("A").expect("A"));
    assert!(notes.is_empty(), "{notes:?}");
    assert!(tracked
        .iter()
        .any(|t| t.kind == TrackedKind::Script && t.weight == Some(20)));
}

#[test]
fn file_check_reads_a_track_file_and_prints_back() {
    let text = "track_file maint {\n file /run/ha/maint\n weight 0\n}\n\
virtual_server 198.18.116.134 80 {\n lb_kind DR\n real_server 198.18.116.131 80 {\n  FILE_CHECK {\n   track_file maint\n   weight 4 reverse\n  }\n }\n\
 real_server 198.18.116.132 80 {\n  FILE_CHECK {\n   track_file gone\n  }\n }\n\
 real_server 198.18.116.133 80 {\n  FILE_CHECK {\n   weight 1\n  }\n }\n}\n";
    let e: Vec<String> = rendered(text)
        .into_iter()
        .filter(|d| d.contains("error"))
        .collect();
    assert_eq!(
        e,
        [
            "t.conf:15:4: error: real server 198.18.116.132:80 of virtual_server 198.18.116.134:80: FILE_CHECK reads `gone`, which no track_file defines",
            "t.conf:19:3: error: FILE_CHECK has no `track_file` line",
        ],
        "{e:?}"
    );
    let ok = text
        .replace("   track_file gone\n", "   track_file maint\n")
        .replace("  FILE_CHECK {\n   weight 1\n  }\n", "");
    let (_, l) = load(&ok);
    assert!(!l.diags.has_errors(), "{:?}", rendered(&ok));
    let c = &l.cluster.default;
    let rs = &c.virtual_servers[0].real_servers[0];
    assert_eq!(
        rs.checkers[0].kind,
        CheckKind::File(FileCheck {
            track_file: "maint".into(),
            weight: Some(4),
            reverse: true
        })
    );
    let printed = l.cluster.print().expect("print");
    assert!(
        printed.contains("FILE_CHECK {\n            track_file maint\n            weight 4 reverse\n"),
        "{printed}"
    );
    let (_, again) = load(&printed);
    assert_eq!(
        ha_config::canon::canonical_config(&again.cluster.default),
        ha_config::canon::canonical_config(c)
    );
}

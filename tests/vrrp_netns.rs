//! Issue 5 acceptance (part): our VRRP engine against real keepalived 2.2.7, and against
//! itself, in network namespaces on 198.18.116.0/24 (the seed's lab addresses): one VIP
//! holder, failover when the master dies, preemption when it returns, the seed's
//! link-down test. Needs root (namespaces, raw sockets) and keepalived (tests/run.sh).

use e2e::netns::{capture_arp, mac_text, Netns};
use e2e::vrrp_lab::*;
use e2e::{temp_root, wait_for};
use std::time::{Duration, Instant};

#[test]
fn keepalived_master_and_our_backup() {
    let lab = Lab::new("kaM", &cluster_conf(""));
    let mut ka = lab.keepalived("lvs01");
    let ours = lab.ours("lvs02");
    lab.wait_holder(
        (true, false),
        Duration::from_secs(10),
        "keepalived (lvs01) to hold the VIP",
    );
    lab.stays((true, false), Duration::from_secs(3));
    assert!(ours.log_text().contains("to=BACKUP"), "{}", dump(&lab));

    // The master dies: our backup takes over within 3 x advert + skew (3.7 s) plus slack.
    lab.crash("lvs01");
    ka.kill9();
    let took = lab.wait_holder((false, true), Duration::from_secs(6), "our lvs02 to take the VIP");
    assert!(
        took < Duration::from_millis(4500),
        "took {took:?}\n{}",
        dump(&lab)
    );

    // keepalived comes back with the higher priority and preempts.
    let ka = lab.keepalived("lvs01");
    lab.wait_holder(
        (true, false),
        Duration::from_secs(10),
        "keepalived to take the VIP back",
    );
    let complaints = ka_complaints(&ka.log_text());
    assert!(
        complaints.is_empty(),
        "keepalived complained about our adverts: {complaints:?}"
    );
}

#[test]
fn our_master_and_keepalived_backup() {
    let lab = Lab::new("ourM", &cluster_conf(""));
    let mut ours = lab.ours("lvs01");
    let ka = lab.keepalived("lvs02");
    lab.wait_holder(
        (true, false),
        Duration::from_secs(10),
        "our lvs01 to hold the VIP",
    );
    lab.stays((true, false), Duration::from_secs(3));
    let complaints = ka_complaints(&ka.log_text());
    assert!(
        complaints.is_empty(),
        "keepalived complained: {complaints:?}\n{}",
        dump(&lab)
    );
    assert!(ka.log_text().contains("Entering BACKUP STATE"), "{}", dump(&lab));

    // Graceful stop: priority 0, keepalived takes over after skew time, not 3 adverts.
    ours.term();
    let took = lab.wait_holder((false, true), Duration::from_secs(5), "keepalived to take over");
    assert!(
        took < Duration::from_millis(1500),
        "graceful takeover took {took:?}\n{}",
        dump(&lab)
    );
    assert!(!lab.lvs01.has_addr(VIP), "our stopped master removed the VIP");

    // Back, with the higher priority: preempts keepalived.
    let _ours = lab.ours("lvs01");
    lab.wait_holder(
        (true, false),
        Duration::from_secs(10),
        "our lvs01 to take the VIP back",
    );
    let complaints = ka_complaints(&ka.log_text());
    assert!(complaints.is_empty(), "keepalived complained: {complaints:?}");
}

#[test]
fn seed_link_down_moves_the_vip_and_link_up_brings_it_back() {
    let lab = Lab::new("seed", &cluster_conf("    vrrp_skip_check_adv_addr\n"));
    let _a = lab.ours("lvs01");
    let _b = lab.ours("lvs02");
    lab.wait_holder((true, false), Duration::from_secs(10), "lvs01 to hold the VIP");
    lab.stays((true, false), Duration::from_secs(2));
    // The seed's test: `ip link set ens33 down` on the master.
    let arp = capture_arp(&lab.switch, "br0", Duration::from_secs(6));
    lab.lvs01.must(&["link", "set", "ens33", "down"]);
    let took = lab.wait_holder((false, true), Duration::from_secs(6), "lvs02 to take the VIP");
    eprintln!("link down -> VIP on lvs02 after {took:?}");
    // The new master announced the VIP with gratuitous ARP, from its own MAC.
    let lvs02_mac = lab.lvs02.mac("ens33");
    let garps: Vec<_> = arp
        .join()
        .unwrap()
        .iter()
        .filter_map(|f| actors::vrrp::garp::parse(f))
        .collect();
    let vip: std::net::Ipv4Addr = VIP.parse().unwrap();
    assert!(
        garps
            .iter()
            .any(|(mac, ip)| *ip == vip && mac_text(mac) == lvs02_mac),
        "no gratuitous ARP for {VIP} from lvs02 ({lvs02_mac}) seen on the switch: {garps:?}"
    );
    lab.lvs01.must(&["link", "set", "ens33", "up"]);
    lab.wait_holder(
        (true, false),
        Duration::from_secs(10),
        "the VIP to return to lvs01",
    );
    let log = std::fs::read_to_string(lab.root.path().join("ours-lvs01.log")).unwrap();
    assert!(log.contains("to=FAULT") && log.contains("fault cleared"), "{log}");
}

#[test]
fn track_script_weight_fault_and_notify_in_order() {
    let root_flag = temp_root("flags");
    let flag = root_flag.path().join("lvs01-down");
    let fault_flag = root_flag.path().join("lvs01-fault");
    let notify_log = root_flag.path().join("notify.log");
    let notify = root_flag.path().join("notify.sh");
    std::fs::write(
        &notify,
        format!("#!/bin/sh\necho \"$@\" >> {}\n", notify_log.display()),
    )
    .unwrap();
    std::process::Command::new("chmod")
        .arg("755")
        .arg(&notify)
        .status()
        .unwrap();
    // lvs01 (100) loses 30 while `chk` fails: 70 < 80, lvs02 takes over; `hard` has no
    // weight: lvs01 goes FAULT while it fails.
    let conf = format!(
        "global_defs {{\n    router_id LVS_DEVEL\n    script_user root\n}}\n\
         vrrp_script chk {{\n    script \"/usr/bin/test ! -e {flag}\"\n    interval 1\n    weight -30\n    rise 1\n    fall 1\n}}\n\
         vrrp_script hard {{\n    script \"/usr/bin/test ! -e {fault}\"\n    interval 1\n    rise 1\n    fall 1\n}}\n\
         vrrp_instance VI_1 {{\n    @lvs01 state MASTER\n    @lvs02 state BACKUP\n    interface ens33\n    virtual_router_id 51\n    @lvs01 priority 100\n    @lvs02 priority 80\n    advert_int 1\n    virtual_ipaddress {{\n        {VIP}\n    }}\n    track_script {{\n        @lvs01 chk\n        @lvs01 hard\n    }}\n    @lvs01 notify {notify}\n}}\n",
        flag = flag.display(),
        fault = fault_flag.display(),
        notify = notify.display(),
    );
    let lab = Lab::new("track", &conf);
    let _a = lab.ours("lvs01");
    let _b = lab.ours("lvs02");
    lab.wait_holder((true, false), Duration::from_secs(10), "lvs01 to hold the VIP");

    std::fs::write(&flag, "").unwrap();
    lab.wait_holder(
        (false, true),
        Duration::from_secs(8),
        "lvs02 to preempt the weakened lvs01",
    );
    std::fs::remove_file(&flag).unwrap();
    lab.wait_holder((true, false), Duration::from_secs(8), "lvs01 to preempt back");

    std::fs::write(&fault_flag, "").unwrap();
    lab.wait_holder(
        (false, true),
        Duration::from_secs(8),
        "lvs02 to take over from the FAULTed lvs01",
    );
    let log = std::fs::read_to_string(lab.root.path().join("ours-lvs01.log")).unwrap();
    assert!(log.contains("to=FAULT"), "{log}");
    std::fs::remove_file(&fault_flag).unwrap();
    lab.wait_holder((true, false), Duration::from_secs(10), "lvs01 back from FAULT");

    std::thread::sleep(Duration::from_millis(300));
    let calls = std::fs::read_to_string(&notify_log).unwrap_or_default();
    let states: Vec<&str> = calls
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2))
        .collect();
    assert_eq!(
        states,
        ["BACKUP", "MASTER", "BACKUP", "MASTER", "FAULT", "BACKUP", "MASTER"],
        "notify calls in transition order:\n{calls}"
    );
    assert!(calls.lines().all(|l| l.starts_with("INSTANCE VI_1 ")), "{calls}");
}

/// The seed's instance with `body` replacing the lines after `advert_int`.
fn conf_with(global: &str, body: &str) -> String {
    format!(
        "global_defs {{\n    router_id LVS_DEVEL\n{global}}}\n\nvrrp_instance VI_1 {{\n    interface ens33\n    virtual_router_id 51\n    @lvs01 priority 100\n    @lvs02 priority 80\n    advert_int 1\n{body}    virtual_ipaddress {{\n        {VIP}\n    }}\n}}\n"
    )
}

#[test]
fn auth_mismatch_is_ignored_and_counted_on_both_sides() {
    let body = "    @lvs01 state MASTER\n    @lvs02 state BACKUP\n    authentication {\n        auth_type PASS\n        @lvs01 auth_pass 1111\n        @lvs02 auth_pass 2222\n    }\n";
    let lab = Lab::new("auth", &conf_with("", body));
    let ours = lab.ours("lvs01");
    let ka = lab.keepalived("lvs02");
    // Neither accepts the other's adverts: both end up MASTER (a split brain the operator
    // sees in both logs), and nothing panics or flaps.
    lab.wait_holder((true, true), Duration::from_secs(10), "both to hold the VIP");
    std::thread::sleep(Duration::from_secs(2));
    assert!(ours.log_text().contains("cause=wrong password"), "{}", dump(&lab));
    assert!(ka.log_text().contains("invalid passwd"), "{}", dump(&lab));
    let rejections = ours.log_text().matches("advert rejected").count();
    assert_eq!(rejections, 1, "logged once per cause, counted after that");
}

#[test]
fn vrrp_v3_keepalived_master_and_our_backup() {
    let body = "    @lvs01 state MASTER\n    @lvs02 state BACKUP\n";
    let lab = Lab::new("v3", &conf_with("    vrrp_version 3\n", body));
    let mut ka = lab.keepalived("lvs01");
    let ours = lab.ours("lvs02");
    lab.wait_holder((true, false), Duration::from_secs(10), "keepalived v3 master");
    lab.stays((true, false), Duration::from_secs(2));
    lab.crash("lvs01");
    ka.kill9();
    lab.wait_holder(
        (false, true),
        Duration::from_secs(6),
        "our v3 backup to take over",
    );
    let ka = lab.keepalived("lvs01");
    lab.wait_holder((true, false), Duration::from_secs(10), "keepalived v3 to preempt");
    let complaints = ka_complaints(&ka.log_text());
    assert!(complaints.is_empty(), "keepalived complained: {complaints:?}");
    assert!(!ours.log_text().contains("advert rejected"), "{}", dump(&lab));
}

#[test]
fn unicast_peers_fail_over() {
    let body = "    @lvs01 state MASTER\n    @lvs02 state BACKUP\n    @lvs01 unicast_src_ip 198.18.116.130\n    @lvs02 unicast_src_ip 198.18.116.135\n    unicast_peer {\n        @lvs01 198.18.116.135\n        @lvs02 198.18.116.130\n    }\n";
    let lab = Lab::new("ucast", &conf_with("", body));
    let mut a = lab.ours("lvs01");
    let _b = lab.ours("lvs02");
    lab.wait_holder((true, false), Duration::from_secs(10), "lvs01 to hold the VIP");
    lab.stays((true, false), Duration::from_secs(2));
    a.kill9();
    lab.lvs01
        .must(&["addr", "del", &format!("{VIP}/32"), "dev", "ens33"]);
    lab.wait_holder(
        (false, true),
        Duration::from_secs(6),
        "lvs02 to take over over unicast",
    );
}

#[test]
fn nopreempt_keeps_the_running_master() {
    let body = "    state BACKUP\n    nopreempt\n";
    let lab = Lab::new("nopre", &conf_with("", body));
    let _b = lab.ours("lvs02");
    lab.wait_holder(
        (false, true),
        Duration::from_secs(10),
        "lvs02 (alone) to become master",
    );
    let _a = lab.ours("lvs01");
    // lvs01 has the higher priority, but nopreempt: the VIP stays on lvs02.
    lab.stays((false, true), Duration::from_secs(6));
}

#[test]
fn sync_group_members_move_together() {
    let inst = |name: &str, ifname: &str, vrid: u8, vip: &str| {
        format!(
            "vrrp_instance {name} {{\n    @lvs01 state MASTER\n    @lvs02 state BACKUP\n    interface {ifname}\n    virtual_router_id {vrid}\n    @lvs01 priority 100\n    @lvs02 priority 80\n    advert_int 1\n    virtual_ipaddress {{\n        {vip}\n    }}\n}}\n"
        )
    };
    let conf = format!(
        "global_defs {{\n    router_id LVS_DEVEL\n}}\nvrrp_sync_group G1 {{\n    group {{\n        VI_1\n        VI_2\n    }}\n}}\n{}{}",
        inst("VI_1", "ens33", 51, VIP),
        inst("VI_2", "ens34", 52, "198.18.117.134")
    );
    let lab = Lab::new("sync", &conf);
    let _lan2 = lab.second_lan("sync");
    let _a = lab.ours("lvs01");
    let _b = lab.ours("lvs02");
    let both = |ns: &Netns| ns.has_addr(VIP) && ns.has_addr("198.18.117.134");
    let none = |ns: &Netns| !ns.has_addr(VIP) && !ns.has_addr("198.18.117.134");
    let wait = |what: &str, f: &dyn Fn() -> bool| {
        let start = Instant::now();
        while !f() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "timed out: {what}\n{}",
                dump(&lab)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait("lvs01 to hold both VIPs", &|| {
        both(&lab.lvs01) && none(&lab.lvs02)
    });
    // Only ens34 goes down on lvs01: VI_2 faults, and its group takes VI_1 along.
    lab.lvs01.must(&["link", "set", "ens34", "down"]);
    wait("both VIPs on lvs02", &|| both(&lab.lvs02) && none(&lab.lvs01));
    let log = std::fs::read_to_string(lab.root.path().join("ours-lvs01.log")).unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains("instance=VI_1") && l.contains("to=FAULT") && l.contains("sync group")),
        "VI_1 followed its group into FAULT:\n{log}"
    );
    lab.lvs01.must(&["link", "set", "ens34", "up"]);
    wait("both VIPs back on lvs01", &|| {
        both(&lab.lvs01) && none(&lab.lvs02)
    });
}

#[test]
fn preempt_delay_postpones_the_return_and_labels_are_applied() {
    let body = "    state BACKUP\n    preempt_delay 5\n";
    let conf = conf_with("", body).replace(
        &format!("        {VIP}\n"),
        &format!("        {VIP}/32 dev ens33 label ens33:9\n"),
    );
    let lab = Lab::new("pdelay", &conf);
    let _b = lab.ours("lvs02");
    lab.wait_holder(
        (false, true),
        Duration::from_secs(10),
        "lvs02 (alone) to become master",
    );
    let labels = lab.lvs02.ip(&["-o", "addr", "show", "label", "ens33:9"]);
    assert!(
        String::from_utf8_lossy(&labels.stdout).contains(VIP),
        "VIP carries its label: {}",
        String::from_utf8_lossy(&labels.stdout)
    );
    let started = Instant::now();
    let _a = lab.ours("lvs01");
    // lvs01 (100) would preempt after 3 x 1 s + skew; preempt_delay 5 holds it back.
    lab.stays((false, true), Duration::from_secs(5));
    lab.wait_holder(
        (true, false),
        Duration::from_secs(6),
        "lvs01 to preempt after the delay",
    );
    assert!(
        started.elapsed() >= Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn garp_master_refresh_repeats_while_master() {
    let body = "    state MASTER\n    garp_master_delay 0\n    garp_master_refresh 1\n    garp_master_refresh_repeat 2\n";
    let lab = Lab::new("refresh", &conf_with("", body));
    let _a = lab.ours("lvs01");
    lab.wait_holder((true, false), Duration::from_secs(10), "lvs01 to hold the VIP");
    let arp = capture_arp(&lab.switch, "br0", Duration::from_millis(3500));
    let vip: std::net::Ipv4Addr = VIP.parse().unwrap();
    let n = arp
        .join()
        .unwrap()
        .iter()
        .filter_map(|f| actors::vrrp::garp::parse(f))
        .filter(|(_, ip)| *ip == vip)
        .count();
    // 3.5 s of refreshes every second, 2 each: 6 (or 8 at the edges).
    assert!((6..=8).contains(&n), "{n} refresh GARPs in 3.5 s");
}

/// IPv6 (VRRPv3 over the link-local source, ff02::12). The VIP is link-local too, so no
/// test traffic can have anywhere to go beyond the namespaces' own link.
#[test]
fn ipv6_instances_fail_over_with_unsolicited_na() {
    const VIP6: &str = "fe80::134";
    let conf = format!(
        "global_defs {{\n    router_id LVS_DEVEL\n    vrrp_version 3\n}}\nvrrp_instance VI_6 {{\n    @lvs01 state MASTER\n    @lvs02 state BACKUP\n    interface ens33\n    virtual_router_id 61\n    @lvs01 priority 100\n    @lvs02 priority 80\n    advert_int 1\n    virtual_ipaddress {{\n        {VIP6}/128\n    }}\n}}\n"
    );
    let lab = Lab::new("six", &conf);
    let mut a = lab.ours("lvs01");
    let mut ka = lab.keepalived("lvs02");
    let holders = || (lab.lvs01.has_addr(VIP6), lab.lvs02.has_addr(VIP6));
    let wait = |want: (bool, bool), what: &str| {
        let start = Instant::now();
        while holders() != want {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "timed out: {what}\n{}",
                dump(&lab)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait(
        (true, false),
        "our lvs01 to hold the IPv6 VIP (keepalived backup)",
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        holders(),
        (true, false),
        "keepalived accepts our v6 adverts\n{}",
        dump(&lab)
    );
    let complaints = ka_complaints(&ka.log_text());
    assert!(complaints.is_empty(), "keepalived complained: {complaints:?}");
    // Ours dies: keepalived takes over; ours comes back, preempts and announces the VIP
    // with an unsolicited neighbour advertisement.
    a.kill9();
    lab.lvs01
        .must(&["addr", "del", &format!("{VIP6}/128"), "dev", "ens33"]);
    wait((false, true), "keepalived to take the IPv6 VIP");
    let frames = e2e::netns::capture_ipv6(&lab.switch, "br0", Duration::from_secs(8));
    let _a = lab.ours("lvs01");
    wait((true, false), "our lvs01 to preempt back");
    let mac = lab.lvs01.mac("ens33");
    let vip6: std::net::Ipv6Addr = VIP6.parse().unwrap();
    let nas: Vec<_> = frames
        .join()
        .unwrap()
        .iter()
        .filter_map(|f| actors::vrrp::garp::parse_na(f))
        .map(|(m, t)| (mac_text(&m), t))
        .collect();
    assert!(
        nas.contains(&(mac.clone(), vip6)),
        "no NA for {VIP6} from {mac}: {nas:?}"
    );
    ka.kill9();
    lab.lvs02.kill_all();
    // Now ours as the backup side: a second director of ours takes over from ours.
    let _b = lab.ours("lvs02");
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(holders(), (true, false));
    let log = std::fs::read_to_string(lab.root.path().join("ours-lvs02.log")).unwrap_or_default();
    assert!(
        log.contains("to=BACKUP") && !log.contains("advert rejected"),
        "{log}"
    );
}

#[test]
fn track_script_positive_weight_raises_the_backup_above_the_master() {
    let flags = temp_root("raise");
    let ok_flag = flags.path().join("lvs02-strong");
    // lvs02 (80) gains 30 while `boost` succeeds: 110 > 100, it preempts lvs01.
    let conf = format!(
        "global_defs {{\n    router_id LVS_DEVEL\n    script_user root\n}}\n\
         vrrp_script boost {{\n    script \"/usr/bin/test -e {flag}\"\n    interval 1\n    weight 30\n}}\n\
         vrrp_instance VI_1 {{\n    @lvs01 state MASTER\n    @lvs02 state BACKUP\n    interface ens33\n    virtual_router_id 51\n    @lvs01 priority 100\n    @lvs02 priority 80\n    advert_int 1\n    virtual_ipaddress {{\n        {VIP}\n    }}\n    track_script {{\n        @lvs02 boost\n    }}\n}}\n",
        flag = ok_flag.display()
    );
    let lab = Lab::new("raise", &conf);
    let _a = lab.ours("lvs01");
    let _b = lab.ours("lvs02");
    lab.wait_holder(
        (true, false),
        Duration::from_secs(10),
        "lvs01 (100 > 80) to hold the VIP",
    );
    std::fs::write(&ok_flag, "").unwrap();
    lab.wait_holder(
        (false, true),
        Duration::from_secs(8),
        "lvs02 (80 + 30) to preempt",
    );
    std::fs::remove_file(&ok_flag).unwrap();
    lab.wait_holder(
        (true, false),
        Duration::from_secs(8),
        "lvs01 back when the boost ends",
    );
}

#[test]
fn script_security_refuses_a_world_writable_notify_script() {
    let root = temp_root("scriptsec");
    let log = root.path().join("notify.log");
    let marker = root.path().join("hijacked");
    let safe = root.path().join("safe.sh");
    let open = root.path().join("open.sh");
    std::fs::write(&safe, format!("#!/bin/sh\necho \"$@\" >> {}\n", log.display())).unwrap();
    std::fs::write(&open, format!("#!/bin/sh\ntouch {}\n", marker.display())).unwrap();
    for (p, mode) in [(&safe, "755"), (&open, "777")] {
        std::process::Command::new("chmod")
            .arg(mode)
            .arg(p)
            .status()
            .unwrap();
    }
    let body = format!(
        "    state BACKUP\n    notify {}\n    notify_master {}\n",
        safe.display(),
        open.display()
    );
    let conf = conf_with("    script_user root\n    enable_script_security\n", &body);
    let lab = Lab::new("ssec", &conf);
    let _a = lab.ours("lvs01");
    lab.wait_holder(
        (true, false),
        Duration::from_secs(10),
        "lvs01 to hold the VIP alone",
    );
    // The safe script ran for the transition to MASTER; the world-writable one did not.
    wait_for(
        Duration::from_secs(5),
        "the safe notify script to record MASTER",
        || {
            std::fs::read_to_string(&log)
                .ok()
                .filter(|t| t.contains("INSTANCE VI_1 MASTER"))
        },
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(!marker.exists(), "the world-writable notify_master script ran");
    let out = std::fs::read_to_string(lab.root.path().join("ours-lvs01.log")).unwrap();
    let open_s = open.display().to_string();
    // Said at start (every script the config names is vetted) and when it was due to run.
    assert!(
        out.lines()
            .any(|l| l.contains("script: vrrp_instance VI_1 notify_master")
                && l.contains(&open_s)
                && l.contains("refused under enable_script_security")
                && l.contains("writable by everyone (mode 0777)")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.contains("notify script") && l.contains("refused under enable_script_security")),
        "{out}"
    );
}

#[test]
fn unicast_peers_are_an_allow_list() {
    // lvs01 and lvs02 list each other only; a third host on the LAN unicasts adverts of
    // priority 200 to lvs01. Accepted, they would make lvs01 step down.
    let body = "    @lvs01 state MASTER\n    @lvs02 state BACKUP\n    @intruder state MASTER\n    @intruder priority 200\n    @lvs01 unicast_src_ip 198.18.116.130\n    @lvs02 unicast_src_ip 198.18.116.135\n    @intruder unicast_src_ip 198.18.116.140\n    unicast_peer {\n        @lvs01 198.18.116.135\n        @lvs02 198.18.116.130\n        @intruder 198.18.116.130\n    }\n";
    let lab = Lab::new("allow", &conf_with("", body));
    let intruder = Netns::new("allowx");
    e2e::netns::attach(&lab.switch, "p3", &intruder, "ens33", "198.18.116.140/24");
    let _a = lab.ours("lvs01");
    let _b = lab.ours("lvs02");
    lab.wait_holder((true, false), Duration::from_secs(10), "lvs01 to hold the VIP");
    let mut c = intruder.command(e2e::bin_dir().join("hanode").to_str().unwrap());
    c.args(["vrrp", "--config"])
        .arg(lab.root.path().join("cluster.conf"))
        .args(["--node", "intruder"])
        .env("RUST_LOG", "info");
    let x = e2e::netns::NsProcess::spawn(c, lab.root.path().join("ours-intruder.log"));
    // The intruder believes itself master (its adverts go out to lvs01)...
    wait_for(
        Duration::from_secs(10),
        "the intruder to send adverts as MASTER",
        || x.log_text().contains("to=MASTER").then_some(()),
    );
    // ...and lvs01 keeps the VIP, naming the refused source.
    lab.stays((true, false), Duration::from_secs(4));
    let log = std::fs::read_to_string(lab.root.path().join("ours-lvs01.log")).unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains("advert rejected") && l.contains("198.18.116.140")),
        "{log}"
    );
}

/// Processes running under a name of their own (`comm`), killed when dropped.
struct Daemons {
    program: std::path::PathBuf,
    running: Vec<std::process::Child>,
}

impl Daemons {
    fn new(dir: &std::path::Path, name: &str) -> Daemons {
        // A link, not a copy: the kernel names a process after the path it was started
        // by, and a freshly written executable could be busy (ETXTBSY) while another
        // test forks.
        let program = dir.join(name);
        std::os::unix::fs::symlink("/bin/sleep", &program).unwrap();
        Daemons {
            program,
            running: Vec::new(),
        }
    }

    fn start(&mut self) {
        let child = std::process::Command::new(&self.program)
            .arg("3600")
            .spawn()
            .unwrap();
        self.running.push(child);
    }

    /// kill -9 of the oldest copy (reaped at once).
    fn kill_one(&mut self) {
        let mut c = self.running.remove(0);
        let _ = c.kill();
        let _ = c.wait();
    }
}

impl Drop for Daemons {
    fn drop(&mut self) {
        while !self.running.is_empty() {
            self.kill_one();
        }
    }
}

/// The track_file phases both engines go through as lvs01 (priority 100, against 80):
/// `hard` (weight 0) non-zero is FAULT; `soft` (weight -10) at 3 is 100 - 30 = 70.
fn track_file_phases(lab: &Lab, hard: &std::path::Path, soft: &std::path::Path, who: &str) {
    lab.wait_holder(
        (true, false),
        Duration::from_secs(10),
        &format!("{who} lvs01 to hold the VIP"),
    );
    std::fs::write(hard, "1\n").unwrap();
    lab.wait_holder(
        (false, true),
        Duration::from_secs(8),
        &format!("lvs02 to take over from the FAULTed {who} lvs01"),
    );
    std::fs::write(hard, "0\n").unwrap();
    lab.wait_holder(
        (true, false),
        Duration::from_secs(10),
        &format!("{who} lvs01 back from FAULT"),
    );
    std::fs::write(soft, "3\n").unwrap();
    lab.wait_holder(
        (false, true),
        Duration::from_secs(8),
        &format!("lvs02 to preempt {who} lvs01 at 100 - 3 x 10"),
    );
    std::fs::write(soft, "0\n").unwrap();
    lab.wait_holder(
        (true, false),
        Duration::from_secs(8),
        &format!("{who} lvs01 to preempt back"),
    );
}

fn track_file_conf(hard: &std::path::Path, soft: &std::path::Path) -> String {
    format!(
        "global_defs {{\n    router_id LVS_DEVEL\n}}\n\
         track_file hard {{\n    file {hard}\n    weight 0\n    init_file 0 overwrite\n}}\n\
         track_file soft {{\n    file {soft}\n    weight -10\n    init_file 0 overwrite\n}}\n\
         vrrp_instance VI_1 {{\n    @lvs01 state MASTER\n    @lvs02 state BACKUP\n    interface ens33\n    virtual_router_id 51\n    @lvs01 priority 100\n    @lvs02 priority 80\n    advert_int 1\n    virtual_ipaddress {{\n        {VIP}\n    }}\n    track_file {{\n        @lvs01 hard\n        @lvs01 soft\n    }}\n}}\n",
        hard = hard.display(),
        soft = soft.display(),
    )
}

#[test]
fn track_file_moves_the_vip_in_the_same_phases_as_keepalived() {
    let files = temp_root("tfile");
    let (hard, soft) = (files.path().join("hard"), files.path().join("soft"));
    let conf = track_file_conf(&hard, &soft);
    // keepalived tracks the files, our engine is its peer...
    {
        let lab = Lab::new("tfk", &conf);
        let _a = lab.keepalived("lvs01");
        let _b = lab.ours("lvs02");
        track_file_phases(&lab, &hard, &soft, "keepalived");
    }
    // ...then ours tracks them with keepalived as the peer: the same phases.
    let lab = Lab::new("tfo", &conf);
    let _a = lab.ours("lvs01");
    let _b = lab.keepalived("lvs02");
    track_file_phases(&lab, &hard, &soft, "our");
    let log = std::fs::read_to_string(lab.root.path().join("ours-lvs01.log")).unwrap();
    assert!(
        log.contains("to=FAULT") && log.contains("tracked file changed"),
        "{log}"
    );
}

#[test]
fn track_process_quorum_moves_the_vip_from_process_events() {
    // lvs01 (100) loses 30 while fewer than two `hatrackd` run: 70 < 80.
    let dir = temp_root("tproc");
    let mut daemons = Daemons::new(dir.path(), "hatrackd");
    daemons.start();
    daemons.start();
    let conf = format!(
        "global_defs {{\n    router_id LVS_DEVEL\n}}\n\
         vrrp_track_process daemon {{\n    process hatrackd\n    weight -30\n    quorum 2\n}}\n\
         vrrp_instance VI_1 {{\n    @lvs01 state MASTER\n    @lvs02 state BACKUP\n    interface ens33\n    virtual_router_id 51\n    @lvs01 priority 100\n    @lvs02 priority 80\n    advert_int 1\n    virtual_ipaddress {{\n        {VIP}\n    }}\n    track_process {{\n        @lvs01 daemon\n    }}\n}}\n"
    );
    let lab = Lab::new("tproc", &conf);
    let _a = lab.ours("lvs01");
    let _b = lab.keepalived("lvs02");
    lab.wait_holder(
        (true, false),
        Duration::from_secs(10),
        "lvs01 (two daemons running) to hold the VIP",
    );
    let ours = lab.root.path().join("ours-lvs01.log");
    let log = || std::fs::read_to_string(&ours).unwrap_or_default();
    assert!(log().contains("tracked process quorum reached"), "{}", log());
    // From the kernel's events (opened in the initial namespace), not a /proc poll.
    assert!(!log().contains("scanning /proc every second"), "{}", log());

    daemons.kill_one();
    // The exit is an event: the priority drops at once, lvs02 preempts (keepalived's
    // backup waits out its master-down timer, 3 x 1 s + skew).
    lab.wait_holder(
        (false, true),
        Duration::from_secs(8),
        "lvs02 to preempt lvs01 (one daemon left)",
    );
    assert!(log().contains("tracked process quorum lost"), "{}", log());

    daemons.start();
    lab.wait_holder(
        (true, false),
        Duration::from_secs(8),
        "lvs01 back with two daemons",
    );
    // And a box with no copy at all, then back.
    daemons.kill_one();
    daemons.kill_one();
    lab.wait_holder(
        (false, true),
        Duration::from_secs(8),
        "lvs02 with no daemon on lvs01",
    );
    daemons.start();
    daemons.start();
    lab.wait_holder((true, false), Duration::from_secs(8), "lvs01 back");
}

/// What a director's kernel holds of the routing test's making: its routes of protocol
/// keepalived (every table), its rules but the kernel's three, and its addresses (by
/// device), as `ip` prints them (sorted: order of install is not compared).
fn routing_state(ns: &Netns) -> Vec<String> {
    let text = |args: &[&str]| String::from_utf8_lossy(&ns.ip(args).stdout).into_owned();
    let mut out: Vec<String> = text(&["-o", "route", "show", "table", "all", "proto", "keepalived"])
        .lines()
        .map(|l| format!("route {}", l.split_whitespace().collect::<Vec<_>>().join(" ")))
        .collect();
    out.extend(
        text(&["-o", "rule", "show"])
            .lines()
            .filter(|l| !["0:", "32766:", "32767:"].iter().any(|p| l.starts_with(p)))
            .map(|l| format!("rule {}", l.split_whitespace().collect::<Vec<_>>().join(" "))),
    );
    out.extend(text(&["-o", "-4", "addr", "show"]).lines().filter_map(|l| {
        let w: Vec<&str> = l.split_whitespace().collect();
        let dev = w.get(1)?;
        let addr = w.get(3)?;
        addr.starts_with("198.18.").then(|| format!("addr {dev} {addr}"))
    }));
    out.sort();
    out
}

const ROUTING_CONF: &str = "global_defs {\n    router_id LVS_DEVEL\n}\n\
static_ipaddress {\n    @lvs01 198.18.118.1/32 dev ens34\n    @lvs02 198.18.118.2/32 dev ens34\n}\n\
static_routes {\n    198.18.119.0/24 via 198.18.117.1 dev ens34\n}\n\
static_rules {\n    from 198.18.118.0/24 table 118 priority 1180\n}\n\
vrrp_instance VI_1 {\n    @lvs01 state MASTER\n    @lvs02 state BACKUP\n    interface ens33\n    virtual_router_id 51\n    @lvs01 priority 100\n    @lvs02 priority 80\n    advert_int 1\n\
    virtual_ipaddress {\n        198.18.116.134\n        198.18.117.134/24 dev ens34\n    }\n\
    virtual_ipaddress_excluded {\n        198.18.116.136\n    }\n\
    virtual_routes {\n        198.18.116.0/24 dev ens33 src 198.18.116.134\n        198.18.120.0/24 via 198.18.116.1 dev ens33 table 120\n        blackhole 198.18.121.0/24\n        src 198.18.116.134 198.18.122.0/24 dev ens33 metric 7\n    }\n\
    virtual_rules {\n        from 198.18.116.134 table 120 priority 1200\n        to 198.18.123.0/24 priority 1201 blackhole\n    }\n}\n";

#[test]
fn routes_rules_and_addresses_follow_the_vip_as_keepalived_installs_them() {
    // keepalived as the master (lvs01) and our backup; then the other way round, in a
    // fresh lab: each director's kernel must hold the same routes, rules and addresses.
    let (ka_master, ours_backup) = {
        let lab = Lab::new("rtk", ROUTING_CONF);
        let _t = lab.second_lan("rtk");
        let ka = lab.keepalived("lvs01");
        let _b = lab.ours("lvs02");
        lab.wait_holder(
            (true, false),
            Duration::from_secs(10),
            "keepalived lvs01 to hold the VIP",
        );
        let master = wait_for(
            Duration::from_secs(10),
            "keepalived's virtual routes and rules",
            || {
                let s = routing_state(&lab.lvs01);
                s.iter().any(|l| l.contains("198.18.123.0/24")).then_some(s)
            },
        );
        let backup = wait_for(Duration::from_secs(5), "our static routing on lvs02", || {
            let s = routing_state(&lab.lvs02);
            s.iter().any(|l| l.contains("lookup 118")).then_some(s)
        });
        assert!(ka_complaints(&ka.log_text()).is_empty(), "{}", ka.log_text());
        (master, backup)
    };
    let lab = Lab::new("rto", ROUTING_CONF);
    let _t = lab.second_lan("rto");
    let mut ours = lab.ours("lvs01");
    let ka = lab.keepalived("lvs02");
    lab.wait_holder(
        (true, false),
        Duration::from_secs(10),
        "our lvs01 to hold the VIP",
    );
    let ours_master = wait_for(Duration::from_secs(10), "our virtual routes and rules", || {
        let s = routing_state(&lab.lvs01);
        (s.len() >= ka_master.len()).then_some(s)
    });
    let ka_backup = routing_state(&lab.lvs02);
    eprintln!("master's kernel: {ours_master:#?}\nbackup's kernel: {ka_backup:#?}");
    assert_eq!(
        ours_master, ka_master,
        "the master's kernel: ours (left) and keepalived's (right)"
    );
    assert_eq!(
        ka_backup, ours_backup,
        "the backup's kernel: keepalived's (left) and ours (right)"
    );
    for want in [
        "addr ens34 198.18.117.134/24",
        "addr ens33 198.18.116.136/32",
        "198.18.120.0/24 via 198.18.116.1 dev ens33",
        "blackhole 198.18.121.0/24",
        "lookup 120",
    ] {
        assert!(
            ours_master.iter().any(|l| l.contains(want)),
            "no {want:?} in {ours_master:#?}"
        );
    }
    // The excluded address is not in the adverts: keepalived, which checks the list, is content.
    assert!(ka_complaints(&ka.log_text()).is_empty(), "{}", ka.log_text());

    // Our master stops: its virtual and static routing goes with it; keepalived takes over
    // and installs the virtual part.
    ours.term();
    lab.wait_holder(
        (false, true),
        Duration::from_secs(8),
        "keepalived lvs02 to take over",
    );
    let left = wait_for(Duration::from_secs(5), "lvs01's routing removed", || {
        let s = routing_state(&lab.lvs01);
        (!s.iter()
            .any(|l| l.starts_with("route") || l.starts_with("rule") || l.contains("198.18.118.1")))
        .then_some(s)
    });
    assert!(
        left.iter()
            .all(|l| l == "addr ens33 198.18.116.130/24" || l == "addr ens34 198.18.117.130/24"),
        "{left:#?}"
    );
    // The virtual route beside the connected one of the same prefix went alone: the
    // kernel's own route is still there (it was never replaced).
    let kernel = String::from_utf8_lossy(&lab.lvs01.ip(&["-o", "route", "show", "198.18.116.0/24"]).stdout)
        .into_owned();
    assert!(
        kernel.contains("proto kernel"),
        "the connected route is gone: {kernel}"
    );
    wait_for(
        Duration::from_secs(5),
        "keepalived's virtual routes on lvs02",
        || {
            routing_state(&lab.lvs02)
                .iter()
                .any(|l| l.contains("198.18.123.0/24"))
                .then_some(())
        },
    );
}

/// The mails a Debugging aiosmtpd printed: (X-Mailer, Subject, body lines).
fn mails(log: &str) -> Vec<(String, String, Vec<String>)> {
    log.split("---------- MESSAGE FOLLOWS ----------")
        .skip(1)
        .map(|m| {
            let m = m
                .split("------------ END MESSAGE ------------")
                .next()
                .unwrap_or("");
            let header = |name: &str| {
                m.lines()
                    .find_map(|l| l.strip_prefix(&format!("{name}: ")))
                    .unwrap_or("")
                    .trim()
                    .to_string()
            };
            let body = m
                .split_once("\n\n")
                .map(|(_, b)| {
                    b.lines()
                        .map(|l| l.trim().to_string())
                        .filter(|l| !l.is_empty())
                        .collect()
                })
                .unwrap_or_default();
            (header("X-Mailer"), header("Subject"), body)
        })
        .collect()
}

#[test]
fn smtp_alert_mails_each_state_change_as_keepalived_writes_them() {
    let conf = "global_defs {\n    router_id LVS_DEVEL\n    notification_email {\n        ops@example.test\n    }\n    notification_email_from lvs@example.test\n    smtp_server 198.18.116.25\n    smtp_connect_timeout 5\n}\n\
vrrp_instance VI_1 {\n    @lvs01 state MASTER\n    @lvs02 state BACKUP\n    interface ens33\n    virtual_router_id 51\n    @lvs01 priority 100\n    @lvs02 priority 80\n    advert_int 1\n    smtp_alert\n    virtual_ipaddress {\n        198.18.116.134\n    }\n}\n";
    let lab = Lab::new("mail", conf);
    let mail = Netns::new("mailm");
    e2e::netns::attach(&lab.switch, "p4", &mail, "ens33", "198.18.116.25/24");
    let mut c = mail.command("/usr/bin/python3");
    c.args(["-u", "-m", "aiosmtpd", "-n", "-l", "198.18.116.25:25"]);
    let server = e2e::netns::NsProcess::spawn(c, lab.root.path().join("smtpd.log"));
    wait_for(Duration::from_secs(20), "aiosmtpd listening", || {
        mail.command("bash")
            .args(["-c", "exec 3<>/dev/tcp/198.18.116.25/25 && head -c3 <&3"])
            .output()
            .ok()
            .filter(|o| o.stdout.starts_with(b"220"))
    });
    let mut ours = lab.ours("lvs01");
    let _ka = lab.keepalived("lvs02");
    lab.wait_holder(
        (true, false),
        Duration::from_secs(10),
        "our lvs01 to hold the VIP",
    );
    let subject = |s: &str| format!("[LVS_DEVEL] VRRP Instance VI_1 - {s}");
    let has = |mailer: &str, subj: &str| {
        mails(&server.log_text())
            .into_iter()
            .find(|(m, s, _)| m == mailer && *s == subj)
    };
    let our_master = wait_for(Duration::from_secs(15), "our MASTER mail", || {
        has("hanode", &subject("Entering MASTER state"))
    });
    let ka_backup = wait_for(Duration::from_secs(15), "keepalived's BACKUP mail", || {
        has("Keepalived", &subject("Entering BACKUP state"))
    });
    assert_eq!(ka_backup.2, ["=> VRRP Instance is no longer owning VRRP VIPs <="]);

    // Ours stops (mailing it), keepalived takes over (mailing that).
    ours.term();
    lab.wait_holder(
        (false, true),
        Duration::from_secs(8),
        "keepalived lvs02 to take over",
    );
    let stopping = wait_for(Duration::from_secs(15), "our Stopping mail", || {
        has("hanode", &subject("Stopping"))
    });
    assert_eq!(stopping.2, ["=> VRRP Instance stopping <="]);
    let ka_master = wait_for(Duration::from_secs(15), "keepalived's MASTER mail", || {
        has("Keepalived", &subject("Entering MASTER state"))
    });
    // The same change, the same mail (but for the mailer's name and date).
    assert_eq!(
        (&our_master.1, &our_master.2),
        (&ka_master.1, &ka_master.2),
        "{}",
        server.log_text()
    );
    // Each change once: one MASTER mail of ours.
    let ours_master = mails(&server.log_text())
        .into_iter()
        .filter(|(m, s, _)| m == "hanode" && *s == subject("Entering MASTER state"))
        .count();
    assert_eq!(ours_master, 1, "{}", server.log_text());
}

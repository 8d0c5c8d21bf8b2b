//! Established connections through a takeover and a drain (issue 22), measured with the
//! connection harness (`conn-harness`): the seed's two directors and witness, an echo
//! service on both real servers behind VIP:7000 (DR), long-lived connections from eight
//! client addresses, each exchanging a numbered line every 100 ms.

use e2e::conn_harness::{echo_service, sources, start_echo, Clients, PhaseReport, ECHO_PORT};
use e2e::seed_cluster::{metric, scrape, Cluster, LVS, VIP};
use e2e::wait_for;
use std::time::Duration;

/// Connections the harness keeps open.
const CONNECTIONS: usize = 200;

fn assert_none_broken(r: &PhaseReport, c: &Cluster) {
    assert_eq!(
        r.broken,
        0,
        "phase {}: {} of {} connections broke ({:?}, on {:?})\n{}",
        r.phase,
        r.broken,
        r.connections,
        r.reasons,
        r.broken_on,
        c.logs()
    );
    assert!(r.echoes > 0, "phase {}: no echo at all", r.phase);
}

/// Kill -9 of the master's hanode with `CONNECTIONS` long-lived connections open through
/// the VIP: none breaks. For `rr` and `wrr` this needs flow sync (the new master must
/// forward each connection to the real server the old one chose): the test waits until
/// lvs02 has pinned every connection lvs01 forwards before it kills lvs01. For `mh` both
/// directors hash the client alike; flow sync pins the same servers.
fn connections_survive_kill_9_of_the_master(sched: &str) {
    let c = Cluster::start_with(|text| text + &echo_service(sched, [1, 1]));
    let _echo = start_echo(&c.lab);
    let mut clients = Clients::start(
        &c.lab.client,
        "ens33",
        &sources(101, 8),
        &format!("{VIP}:{ECHO_PORT}"),
        CONNECTIONS,
    );
    assert!(
        clients.settle(10, Duration::from_secs(60)),
        "connections did not settle\n{}",
        c.logs()
    );
    let start = clients.phase("takeover");
    assert!(
        start.new_on.len() == 2,
        "{sched}: connections should be spread over both real servers: {start:?}"
    );
    // Flow sync: every connection lvs01 forwards is pinned on lvs02 before the kill.
    wait_for(Duration::from_secs(20), "lvs02 pins lvs01's flows", || {
        let learned = metric(
            &scrape(&c, LVS[0]),
            "hanode_flows_total",
            Some(("event", "learned")),
        );
        let pinned = metric(
            &scrape(&c, LVS[1]),
            "hanode_flows_total",
            Some(("event", "installed")),
        );
        (learned >= CONNECTIONS as f64 && pinned >= learned).then_some(())
    });
    c.signal_lvs01(libc::SIGKILL);
    c.wait_backup_takes_over(Duration::from_secs(10));
    let takeover = clients.phase("after");
    assert!(
        clients.settle(10, Duration::from_secs(60)),
        "connections did not settle after the takeover\n{}",
        c.logs()
    );
    let after = clients.phase("end");
    println!("{sched} takeover: {takeover:?}\nafter: {after:?}");
    assert_none_broken(&takeover, &c);
    assert_none_broken(&after, &c);
}

#[test]
fn rr_connections_survive_kill_9_of_the_master() {
    connections_survive_kill_9_of_the_master("rr");
}

#[test]
fn wrr_connections_survive_kill_9_of_the_master() {
    connections_survive_kill_9_of_the_master("wrr");
}

#[test]
fn mh_connections_survive_kill_9_of_the_master() {
    connections_survive_kill_9_of_the_master("mh");
}

/// `weight 0` drains: connections on the drained real server go on, new ones go to the
/// other.
#[test]
fn weight_0_drains_without_breaking_connections() {
    let c = Cluster::start_with(|text| text + &echo_service("wrr", [1, 1]));
    let _echo = start_echo(&c.lab);
    let target = format!("{VIP}:{ECHO_PORT}");
    let mut old = Clients::start(&c.lab.client, "ens33", &sources(101, 4), &target, 60);
    assert!(
        old.settle(10, Duration::from_secs(60)),
        "connections did not settle\n{}",
        c.logs()
    );
    let start = old.phase("drain");
    assert!(
        start.new_on.get("rs02").copied().unwrap_or(0) > 0,
        "no connection went to rs02 before the drain: {start:?}"
    );
    let patch = c.work.join("drain.conf");
    std::fs::write(&patch, echo_service("wrr", [1, 0])).expect("patch");
    let o = c.hactl(&[
        "propose",
        "--patch",
        &patch.to_string_lossy(),
        "--wait",
        "--reason",
        "drain rs02",
    ]);
    assert!(
        o.status.success(),
        "propose: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let mut new = Clients::start(&c.lab.client, "ens33", &sources(111, 4), &target, 40);
    assert!(
        new.settle(10, Duration::from_secs(60)),
        "new connections did not settle\n{}",
        c.logs()
    );
    assert!(
        old.settle(20, Duration::from_secs(60)),
        "old connections stalled\n{}",
        c.logs()
    );
    let drained = old.phase("end");
    let opened = new.phase("end");
    println!("drain: {drained:?}\nnew: {opened:?}");
    assert_none_broken(&drained, &c);
    assert_eq!(opened.broken, 0, "new connections broke: {opened:?}");
    assert_eq!(
        opened.new_on.get("rs02"),
        None,
        "a drained real server got new connections: {opened:?}"
    );
}

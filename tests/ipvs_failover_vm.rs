//! The takeover scenario of `flows_failover` on real IPVS kernels (issue 22): the seed's
//! two directors are qemu VMs (Debian's kernel, see `e2e::vm::LiveVm`) whose network
//! cards sit on the seed lab's switch, each running `hanode --dataplane ipvs` with the
//! seed's cluster file plus `lvs_sync_daemon eth0 VI_1`: the kernel's sync daemon carries
//! the master's connections to the backup. The witness, the real servers (DR, an echo
//! service) and the clients are the lab's namespaces, as in `flows_failover`.

use e2e::conn_harness::{echo_service, sources, start_echo, Clients, PhaseReport, ECHO_PORT};
use e2e::ipvs_cluster::{start_hanode, VmCluster};
use e2e::seed_cluster::VIP;
use std::time::Duration;

/// Connections the harness keeps open (fewer than in `flows_failover`: the directors
/// are emulated CPUs).
const CONNECTIONS: usize = 60;

fn assert_none_broken(r: &PhaseReport, c: &mut VmCluster) {
    if r.broken != 0 || r.echoes == 0 {
        panic!(
            "phase {}: {} of {} connections broke ({:?}, on {:?}), {} echoes\n{}",
            r.phase,
            r.broken,
            r.connections,
            r.reasons,
            r.broken_on,
            r.echoes,
            c.logs()
        );
    }
}

/// Ends the phase of every set of clients once each has echoed again; none broke.
fn none_broken(c: &mut VmCluster, clients: &mut [&mut Clients], phase: &str, next: &str) {
    for cl in clients.iter_mut() {
        if !cl.settle(10, Duration::from_secs(60)) {
            panic!("{phase}: connections did not settle\n{}", c.logs());
        }
    }
    for cl in clients.iter_mut() {
        let r = cl.phase(next);
        println!("{phase}: {r:?}");
        assert_none_broken(&r, c);
    }
}

/// lvs01 preempts, the client sends to it, and no connection broke in `phase`.
fn lvs01_takes_back(c: &mut VmCluster, clients: &mut [&mut Clients], phase: &str, next: &str) {
    c.wait_vip(0, Duration::from_secs(90), "lvs01 to take the VIP back");
    c.wait_traffic_on(0);
    none_broken(c, clients, phase, next);
}

/// One scenario at a time: each runs two VMs on emulated CPUs.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Every way the master can go, and its return, with `sched` (for `rr` and `wrr` a new
/// master knows a connection only from the sync daemon; for `mh` too, since IPVS does
/// not schedule a packet in the middle of a connection it does not know):
/// 1. kill -9 of lvs01's hanode (the test first waits until lvs02's kernel holds lvs01's
///    connections);
/// 2. more connections open while lvs02 forwards; lvs01 restarts, waits until its kernel
///    holds lvs02's connections (the catch-up), and takes the VIP back;
/// 3. graceful stop of lvs01's hanode (it stops its sync daemon), restart and return;
/// 4. lvs01's link goes down, then up again, and it returns.
fn ipvs_connections_survive_every_failover(sched: &str) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(why) = e2e::vm::unavailable() {
        eprintln!("SKIPPED: {why}");
        return;
    }
    let mut c = VmCluster::start(sched, true);
    let _echo = start_echo(&c.lab);
    let target = format!("{VIP}:{ECHO_PORT}");
    let mut first = Clients::start(&c.lab.client, "ens33", &sources(101, 8), &target, CONNECTIONS);
    if !first.settle(10, Duration::from_secs(60)) {
        panic!("connections did not settle\n{}", c.logs());
    }
    let start = first.phase("kill-9");
    assert!(
        start.new_on.len() == 2,
        "connections should be spread over both real servers: {start:?}"
    );
    c.wait_synced_on_lvs02(CONNECTIONS);

    // 1. kill -9.
    c.vms[0].must("kill -9 $(pidof hanode)");
    c.wait_backup_takes_over();
    c.wait_traffic_on(1);
    none_broken(&mut c, &mut [&mut first], "kill-9", "lvs02-forwards");

    // 2. New connections while lvs01 is down; lvs01 returns.
    let mut second = Clients::start(&c.lab.client, "ens33", &sources(111, 4), &target, 20);
    none_broken(
        &mut c,
        &mut [&mut first, &mut second],
        "lvs02-forwards",
        "return-after-kill",
    );
    start_hanode(&mut c.vms[0], 0, &[]);
    lvs01_takes_back(
        &mut c,
        &mut [&mut first, &mut second],
        "return-after-kill",
        "graceful-stop",
    );
    // It took the VIP back once its kernel held the connections lvs02 forwards (the
    // 20 opened while it was down among them): the catch-up came first, not luck.
    let log = c.vms[0].must("cat /tmp/hanode.log");
    let since_restart: Vec<&str> = log
        .lines()
        .rev()
        .take_while(|l| !l.contains("hanode started"))
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let caught = since_restart
        .iter()
        .position(|l| l.contains("caught up with IPVS connections") && l.contains("connection(s) of lvs02"));
    let master = since_restart.iter().position(|l| l.contains("to=MASTER"));
    println!("lvs01 after its restart: {:?}", caught.map(|i| since_restart[i]));
    assert!(
        matches!((caught, master), (Some(c), Some(m)) if c < m),
        "lvs01 did not wait for lvs02's connections before taking the VIP back\n{}",
        c.logs()
    );

    // 3. Graceful stop, and return.
    c.vms[0].must("kill -TERM $(pidof hanode); while pidof hanode >/dev/null; do usleep 50000; done");
    c.wait_backup_takes_over();
    c.wait_traffic_on(1);
    none_broken(
        &mut c,
        &mut [&mut first, &mut second],
        "graceful-stop",
        "return-after-stop",
    );
    start_hanode(&mut c.vms[0], 0, &[]);
    lvs01_takes_back(
        &mut c,
        &mut [&mut first, &mut second],
        "return-after-stop",
        "link-down",
    );

    // 4. Link down on the master, and up again.
    c.vms[0].must("ip link set eth0 down");
    c.wait_backup_takes_over();
    c.wait_traffic_on(1);
    none_broken(&mut c, &mut [&mut first, &mut second], "link-down", "link-up");
    c.vms[0].must("ip link set eth0 up");
    lvs01_takes_back(&mut c, &mut [&mut first, &mut second], "link-up", "end");
}

#[test]
fn ipvs_rr_connections_survive_every_failover_with_lvs_sync_daemon() {
    ipvs_connections_survive_every_failover("rr");
}

#[test]
fn ipvs_wrr_connections_survive_every_failover_with_lvs_sync_daemon() {
    ipvs_connections_survive_every_failover("wrr");
}

#[test]
fn ipvs_mh_connections_survive_every_failover_with_lvs_sync_daemon() {
    ipvs_connections_survive_every_failover("mh");
}

/// `weight 0` drains on IPVS: connections on the drained real server go on, new ones go
/// to the other; also after kill -9 of the master (the new master's kernel has the
/// drained server's connections from the sync daemon, and schedules none to it).
#[test]
fn ipvs_weight_0_drains_without_breaking_connections_also_across_a_takeover() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(why) = e2e::vm::unavailable() {
        eprintln!("SKIPPED: {why}");
        return;
    }
    let mut c = VmCluster::start("wrr", true);
    let _echo = start_echo(&c.lab);
    let target = format!("{VIP}:{ECHO_PORT}");
    let mut old = Clients::start(&c.lab.client, "ens33", &sources(101, 4), &target, 40);
    if !old.settle(10, Duration::from_secs(60)) {
        panic!("connections did not settle\n{}", c.logs());
    }
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
        "--wait=60",
        "--reason",
        "drain rs02",
    ]);
    assert!(
        o.status.success(),
        "propose: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let mut new = Clients::start(&c.lab.client, "ens33", &sources(111, 4), &target, 20);
    if !new.settle(10, Duration::from_secs(60)) {
        panic!("new connections did not settle\n{}", c.logs());
    }
    let opened = new.phase("takeover");
    assert_none_broken(&opened, &mut c);
    assert_eq!(
        opened.new_on.get("rs02"),
        None,
        "a drained real server got new connections: {opened:?}"
    );
    none_broken(&mut c, &mut [&mut old], "drain", "takeover");

    // Across a takeover: the drained server keeps its connections on the new master,
    // which sends it no new ones either.
    c.wait_synced_on_lvs02(60);
    c.vms[0].must("kill -9 $(pidof hanode)");
    c.wait_backup_takes_over();
    c.wait_traffic_on(1);
    let mut newer = Clients::start(&c.lab.client, "ens33", &sources(115, 2), &target, 10);
    none_broken(&mut c, &mut [&mut old, &mut new], "takeover", "end");
    if !newer.settle(10, Duration::from_secs(60)) {
        panic!(
            "connections opened after the takeover did not settle\n{}",
            c.logs()
        );
    }
    let after = newer.phase("end");
    assert_none_broken(&after, &mut c);
    assert_eq!(
        after.new_on.get("rs02"),
        None,
        "the new master sent new connections to the drained real server: {after:?}"
    );
    let table = c.vms[1].must("ipvsadm -Ln");
    let rs02 = table
        .lines()
        .find(|l| l.contains(&format!("198.18.116.132:{ECHO_PORT}")))
        .unwrap_or_else(|| panic!("rs02 left lvs02's table:\n{table}"));
    assert_eq!(
        rs02.split_whitespace().nth(3),
        Some("0"),
        "rs02's weight on lvs02: {rs02}"
    );
    // rs02's connections from before the drain are all in the new master's kernel.
    let on_rs02 = c.vms[1]
        .must("ipvsadm -Lnc")
        .lines()
        .filter(|l| l.contains("ESTABLISHED") && l.ends_with(&format!("198.18.116.132:{ECHO_PORT}")))
        .count();
    assert_eq!(
        on_rs02 as u64,
        start.new_on.get("rs02").copied().unwrap_or(0),
        "rs02's connections in lvs02's kernel after the takeover"
    );
}

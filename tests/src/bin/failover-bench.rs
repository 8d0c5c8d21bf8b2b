//! Benchmark (issue 22): broken connections per failover, by scheduler and data plane.
//! For each scheduler: the seed's two directors and witness, an echo service behind
//! VIP:7000 (DR), C long-lived connections (`conn-harness`) from eight client addresses;
//! kill -9 of the master's hanode; the connections that break from the kill until each
//! has exchanged 10 more lines after lvs02 took the VIP.
//!
//! nftables (default): the directors are namespaces. `--ipvs`: the directors are qemu VMs
//! with real IPVS kernels (`e2e::ipvs_cluster`), each scheduler without and then with
//! `lvs_sync_daemon`.
//!
//! `cargo build --workspace --bins && target/debug/failover-bench [--ipvs] [C] [SCHED...]`
//! (run as root; debug binaries, as the suite's).

use e2e::conn_harness::{echo_service, sources, start_echo, Clients, PhaseReport, ECHO_PORT};
use e2e::ipvs_cluster::VmCluster;
use e2e::seed_cluster::{Cluster, VIP};
use e2e::seed_lab::SeedLab;
use std::time::Duration;

/// One row: the connections broken from the kill until every one exchanged 10 more lines.
fn row(label: &str, count: usize, took: Duration, during: PhaseReport, clients: &mut Clients) {
    let settled = clients.settle(10, Duration::from_secs(60));
    let after = clients.phase("end");
    let mut reasons = during.reasons.clone();
    for (k, v) in &after.reasons {
        *reasons.entry(k.clone()).or_default() += v;
    }
    println!(
        "{label}: {} of {count} broken ({reasons:?}), VIP on lvs02 {} ms after the kill{}",
        during.broken + after.broken,
        took.as_millis(),
        if settled {
            ""
        } else {
            " (some never exchanged 10 lines after)"
        }
    );
}

/// `count` connections from 8 client addresses through the VIP, each exchanging lines.
fn settled_clients(lab: &SeedLab, sched: &str, count: usize) -> Clients {
    let mut clients = Clients::start(
        &lab.client,
        "ens33",
        &sources(101, 8),
        &format!("{VIP}:{ECHO_PORT}"),
        count,
    );
    assert!(
        clients.settle(10, Duration::from_secs(60)),
        "{sched}: connections did not settle"
    );
    clients
}

/// The IPVS rows: directors in VMs, `sched` without and with `lvs_sync_daemon`.
fn ipvs(sched: &str, count: usize) {
    for sync in [false, true] {
        let mut c = VmCluster::start(sched, sync);
        let _echo = start_echo(&c.lab);
        let mut clients = settled_clients(&c.lab, sched, count);
        if sync {
            c.wait_synced_on_lvs02(count);
        }
        let _ = clients.phase("takeover");
        let t = std::time::Instant::now();
        c.vms[0].must("kill -9 $(pidof hanode)");
        c.wait_backup_takes_over();
        let took = t.elapsed();
        let during = clients.phase("after");
        let label = format!(
            "ipvs {sched:>4} {}",
            if sync {
                "with lvs_sync_daemon   "
            } else {
                "without lvs_sync_daemon"
            }
        );
        row(&label, count, took, during, &mut clients);
    }
}

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let on_ipvs = args.iter().any(|a| a == "--ipvs");
    args.retain(|a| a != "--ipvs");
    let count: usize = args.iter().find_map(|a| a.parse().ok()).unwrap_or(200);
    let mut scheds: Vec<&str> = args
        .iter()
        .filter(|a| a.parse::<usize>().is_err())
        .map(String::as_str)
        .collect();
    if scheds.is_empty() {
        scheds = vec!["rr", "wrr", "mh"];
    }
    println!("{count} connections from 8 client addresses, kill -9 of the master's hanode");
    if on_ipvs {
        for sched in scheds {
            ipvs(sched, count);
        }
        return;
    }
    for sched in scheds {
        let c = Cluster::start_with(|text| text + &echo_service(sched, [1, 1]));
        let _echo = start_echo(&c.lab);
        let mut clients = settled_clients(&c.lab, sched, count);
        let _ = clients.phase("takeover");
        c.signal_lvs01(libc::SIGKILL);
        let took = c.wait_backup_takes_over(Duration::from_secs(10));
        let during = clients.phase("after");
        row(&format!("{sched:>4}"), count, took, during, &mut clients);
    }
}

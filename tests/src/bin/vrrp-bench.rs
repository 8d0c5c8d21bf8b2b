//! Benchmark (issue 5): VIP takeover time in namespaces, from the master's death (kill -9,
//! or its link going down, or a graceful stop) to the VIP present on the backup and to the
//! backup's first gratuitous ARP on the wire. Ours<->ours, keepalived<->keepalived, mixed;
//! VRRPv2 advert_int 1 and VRRPv3 advert_int 0.1. Prints median and max beside the RFC
//! bound 3 x advert + skew. Root, keepalived, iproute2 required.
//!
//! `cargo build --release --workspace --bins && target/release/vrrp-bench [RUNS]`

use e2e::netns::capture_arp_timed;
use e2e::vrrp_lab::{Lab, VIP};
use std::io::BufRead;
use std::process::Stdio;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, PartialEq)]
enum Impl {
    Ours,
    Keepalived,
}

#[derive(Clone, Copy, PartialEq)]
enum Event {
    Kill,
    LinkDown,
    Graceful,
}

fn conf(v3: bool) -> String {
    let (global, adv) = if v3 {
        ("    vrrp_version 3\n", "0.1")
    } else {
        ("", "1")
    };
    format!(
        "global_defs {{\n    router_id LVS_DEVEL\n{global}}}\nvrrp_instance VI_1 {{\n    @lvs01 state MASTER\n    @lvs02 state BACKUP\n    interface ens33\n    virtual_router_id 51\n    @lvs01 priority 100\n    @lvs02 priority 80\n    advert_int {adv}\n    virtual_ipaddress {{\n        {VIP}\n    }}\n}}\n"
    )
}

struct Sample {
    vip: Duration,
    garp: Option<Duration>,
}

fn start(lab: &Lab, who: Impl, node: &str) -> e2e::netns::NsProcess {
    match who {
        Impl::Ours => lab.ours(node),
        Impl::Keepalived => lab.keepalived(node),
    }
}

fn one_run(master: Impl, backup: Impl, v3: bool, event: Event, tag: &str) -> Option<Sample> {
    let lab = Lab::new(tag, &conf(v3));
    let mut m = start(&lab, master, "lvs01");
    let _b = start(&lab, backup, "lvs02");
    if !wait(&lab, (true, false), Duration::from_secs(15)) {
        eprintln!("{tag}: lvs01 never became master");
        return None;
    }
    std::thread::sleep(if v3 {
        Duration::from_millis(500)
    } else {
        Duration::from_secs(2)
    });
    // Watch the backup's addresses and the wire before the event.
    let mut mon = lab
        .lvs02
        .command("ip")
        .args(["monitor", "address"])
        .stdout(Stdio::piped())
        .spawn()
        .ok()?;
    let stdout = mon.stdout.take()?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains(VIP) && !line.starts_with("Deleted") {
                let _ = tx.send(Instant::now());
                break;
            }
        }
    });
    let arp = capture_arp_timed(&lab.switch, "br0", Duration::from_secs(8));
    std::thread::sleep(Duration::from_millis(100));
    let t0 = Instant::now();
    match event {
        Event::Kill => {
            if master == Impl::Keepalived {
                lab.lvs01.kill_all();
            } else {
                m.kill9();
            }
        }
        Event::LinkDown => lab.lvs01.must(&["link", "set", "ens33", "down"]),
        Event::Graceful => m.term(),
    }
    let vip_at = rx.recv_timeout(Duration::from_secs(8)).ok();
    let _ = mon.kill();
    let _ = mon.wait();
    let frames = arp.join().unwrap_or_default();
    let backup_mac = lab.lvs02.mac("ens33");
    let vip: std::net::Ipv4Addr = VIP.parse().ok()?;
    let garp = frames.iter().find_map(|(t, f)| {
        let (mac, ip) = actors::vrrp::garp::parse(f)?;
        let mac = e2e::netns::mac_text(&mac);
        (ip == vip && mac == backup_mac && *t > t0).then(|| *t - t0)
    });
    Some(Sample {
        vip: vip_at? - t0,
        garp,
    })
}

fn wait(lab: &Lab, want: (bool, bool), within: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < within {
        if lab.holders() == want {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    let runs: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(20);
    let scenarios = [
        ("ours -> ours", Impl::Ours, Impl::Ours, false, Event::Kill),
        (
            "keepalived -> keepalived",
            Impl::Keepalived,
            Impl::Keepalived,
            false,
            Event::Kill,
        ),
        (
            "keepalived -> ours",
            Impl::Keepalived,
            Impl::Ours,
            false,
            Event::Kill,
        ),
        (
            "ours -> keepalived",
            Impl::Ours,
            Impl::Keepalived,
            false,
            Event::Kill,
        ),
        (
            "ours -> ours (link down)",
            Impl::Ours,
            Impl::Ours,
            false,
            Event::LinkDown,
        ),
        (
            "ours -> ours (graceful stop)",
            Impl::Ours,
            Impl::Ours,
            false,
            Event::Graceful,
        ),
        ("ours -> ours v3", Impl::Ours, Impl::Ours, true, Event::Kill),
        (
            "keepalived -> keepalived v3",
            Impl::Keepalived,
            Impl::Keepalived,
            true,
            Event::Kill,
        ),
        (
            "keepalived -> ours v3",
            Impl::Keepalived,
            Impl::Ours,
            true,
            Event::Kill,
        ),
    ];
    println!("{runs} runs per scenario; backup priority 80; times from the event");
    println!(
        "{:<30} {:>8} {:>10} {:>10} {:>12} {:>12} {:>8}",
        "scenario", "advert", "VIP p50", "VIP max", "GARP p50", "GARP max", "bound"
    );
    for (i, (name, m, b, v3, ev)) in scenarios.iter().enumerate() {
        let adv = if *v3 {
            Duration::from_millis(100)
        } else {
            Duration::from_secs(1)
        };
        let skew = if *v3 {
            adv * 176 / 256
        } else {
            Duration::from_secs(176) / 256
        };
        let bound = if *ev == Event::Graceful {
            skew
        } else {
            adv * 3 + skew
        };
        let mut vips = Vec::new();
        let mut garps = Vec::new();
        for r in 0..runs {
            if let Some(s) = one_run(*m, *b, *v3, *ev, &format!("b{i}r{r}")) {
                vips.push(s.vip);
                if let Some(g) = s.garp {
                    garps.push(g);
                }
            }
        }
        vips.sort();
        garps.sort();
        let p50 = |v: &[Duration]| v.get(v.len() / 2).map(|d| ms(*d)).unwrap_or_else(|| "-".into());
        let max = |v: &[Duration]| v.last().map(|d| ms(*d)).unwrap_or_else(|| "-".into());
        println!(
            "{:<30} {:>8} {:>10} {:>10} {:>12} {:>12} {:>8}   ({} ok)",
            name,
            if *v3 { "0.1 s" } else { "1 s" },
            p50(&vips),
            max(&vips),
            p50(&garps),
            max(&garps),
            ms(bound),
            vips.len()
        );
    }
}

//! Benchmark (issue 22): flow sync lag and CPU. The seed's two directors and witness in
//! namespaces (nftables, DR service VIP:7000, `rr`); from the client namespace, TCP SYNs
//! of new flows (a distinct source address and port each) at R flows/s for S seconds,
//! paced every millisecond. lvs01 forwards them and logs each; lvs02 pins them. Reported:
//! flows learned on lvs01 and pinned on lvs02, lost and dropped counts, the sync lag
//! (lvs01's read of its flow log to pinned on lvs02: `hanode_flow_sync_lag_seconds`,
//! quantiles as the upper bound of their histogram bucket) and the CPU time both hanode
//! processes used during the run.
//!
//! `cargo build --workspace --bins && target/debug/flow-sync-bench [RATE...] [--secs S]`
//! (root; debug binaries as the suite's; default rates 1000 10000, 10 s each).

use e2e::conn_harness::{echo_service, sources, start_echo, ECHO_PORT};
use e2e::seed_cluster::{scrape, Cluster, LVS, VIP};
use e2e::seed_lab::in_netns;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

/// The Internet checksum of the TCP segment `tcp` from `src` to `dst`.
fn tcp_checksum(src: Ipv4Addr, dst: Ipv4Addr, tcp: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut add = |b: &[u8]| {
        for c in b.chunks(2) {
            let w = if c.len() == 2 {
                u16::from_be_bytes([c[0], c[1]])
            } else {
                u16::from_be_bytes([c[0], 0])
            };
            sum += u32::from(w);
        }
    };
    add(&src.octets());
    add(&dst.octets());
    add(&[0, 6]);
    add(&(tcp.len() as u16).to_be_bytes());
    add(tcp);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A SYN from `src:port` to `dst:dport` (20-byte TCP header, no options).
fn syn(src: Ipv4Addr, port: u16, dst: Ipv4Addr, dport: u16, seq: u32) -> Vec<u8> {
    let mut t = vec![0u8; 20];
    t[0..2].copy_from_slice(&port.to_be_bytes());
    t[2..4].copy_from_slice(&dport.to_be_bytes());
    t[4..8].copy_from_slice(&seq.to_be_bytes());
    t[12] = 5 << 4;
    t[13] = 0x02;
    t[14..16].copy_from_slice(&64240u16.to_be_bytes());
    let sum = tcp_checksum(src, dst, &t);
    t[16..18].copy_from_slice(&sum.to_be_bytes());
    t
}

/// Sends `rate` SYNs a second for `secs` from the client namespace; answers how many went.
fn generate(c: &Cluster, rate: u64, secs: u64, first_port: u16) -> u64 {
    let srcs: Vec<Ipv4Addr> = sources(101, 8)
        .iter()
        .map(|a| a.parse().expect("source"))
        .collect();
    for a in &srcs {
        if !c.lab.client.has_addr(&a.to_string()) {
            c.lab
                .client
                .must(&["addr", "add", &format!("{a}/24"), "dev", "ens33"]);
        }
    }
    let vip: Ipv4Addr = VIP.parse().expect("VIP");
    in_netns(&c.lab.client, move || {
        let socks: Vec<(Ipv4Addr, socket2::Socket)> = srcs
            .iter()
            .map(|a| {
                let s = socket2::Socket::new(
                    socket2::Domain::IPV4,
                    socket2::Type::RAW,
                    Some(socket2::Protocol::TCP),
                )
                .expect("raw socket");
                s.bind(&std::net::SocketAddr::from((*a, 0)).into())
                    .expect("bind source");
                (*a, s)
            })
            .collect();
        let to: socket2::SockAddr = std::net::SocketAddr::from((vip, ECHO_PORT)).into();
        let start = Instant::now();
        let total = rate * secs;
        let mut sent = 0u64;
        let mut port = first_port;
        while sent < total {
            let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
            while sent < due.min(total) {
                let (a, s) = &socks[(sent % socks.len() as u64) as usize];
                if sent % socks.len() as u64 == socks.len() as u64 - 1 {
                    port = if port == u16::MAX { 1024 } else { port + 1 };
                }
                let seg = syn(*a, port, vip, ECHO_PORT, sent as u32);
                if s.send_to(&seg, &to).is_ok() {
                    sent += 1;
                } else {
                    break;
                }
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        sent
    })
}

/// CPU seconds (user + system) of process `pid` so far.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces): state is field 3; utime and
    // stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // SAFETY: sysconf with a valid name.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (ticks(11) + ticks(12)) / hz
}

struct Figures {
    learned: f64,
    installed: f64,
    lost: f64,
    dropped: f64,
    overruns: f64,
    lag: Vec<(f64, f64)>,
    lag_count: f64,
}

fn figures(c: &Cluster) -> Figures {
    let a = scrape(c, LVS[0]);
    let b = scrape(c, LVS[1]);
    let get = |s: &prometheus_parse::Scrape, name: &str, label: (&str, &str)| {
        s.samples
            .iter()
            .find(|x| x.metric == name && x.labels.get(label.0) == Some(label.1))
            .map(|x| match x.value {
                prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => v,
                _ => 0.0,
            })
            .unwrap_or(0.0)
    };
    let mut lag = Vec::new();
    let mut lag_count = 0.0;
    for s in &b.samples {
        if s.metric == "hanode_flow_sync_lag_seconds" {
            if let prometheus_parse::Value::Histogram(h) = &s.value {
                lag = h.iter().map(|c| (c.less_than, c.count)).collect();
            }
        }
        if s.metric == "hanode_flow_sync_lag_seconds_count" {
            if let prometheus_parse::Value::Untyped(v) | prometheus_parse::Value::Counter(v) = s.value {
                lag_count = v;
            }
        }
    }
    if lag_count == 0.0 {
        lag_count = lag.last().map(|l| l.1).unwrap_or(0.0);
    }
    Figures {
        learned: get(&a, "hanode_flows_total", ("event", "learned")),
        installed: get(&b, "hanode_flows_total", ("event", "installed")),
        lost: get(&a, "hanode_flows_sent_total", ("outcome", "lost")),
        dropped: get(&a, "hanode_flows_sent_total", ("outcome", "dropped"))
            + get(&b, "hanode_flows_total", ("event", "dropped")),
        overruns: get(&a, "hanode_flows_total", ("event", "log_overruns")),
        lag,
        lag_count,
    }
}

/// The upper bound of the bucket holding quantile `q` of the flows counted between two
/// readings of the cumulative histogram.
fn quantile(before: &[(f64, f64)], after: &[(f64, f64)], q: f64) -> String {
    let delta: Vec<(f64, f64)> = after
        .iter()
        .map(|(le, n)| {
            let b = before.iter().find(|(l, _)| l == le).map(|x| x.1).unwrap_or(0.0);
            (*le, n - b)
        })
        .collect();
    let total = delta.last().map(|d| d.1).unwrap_or(0.0);
    if total == 0.0 {
        return "-".into();
    }
    match delta.iter().find(|(_, n)| *n >= q * total) {
        Some((le, _)) if le.is_finite() => format!("<= {} ms", le * 1000.0),
        _ => "> 5 s".into(),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let secs: u64 = args
        .iter()
        .position(|a| a == "--secs")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let mut rates: Vec<u64> = args
        .iter()
        .enumerate()
        .filter(|(i, _)| *i == 0 || args[i - 1] != "--secs")
        .filter_map(|(_, a)| a.parse().ok())
        .collect();
    if rates.is_empty() {
        rates = vec![1000, 10_000];
    }
    let c = Cluster::start_with(|text| text + &echo_service("rr", [1, 1]));
    // The real servers' checks must pass for the service to have destinations.
    let _echo = start_echo(&c.lab);
    e2e::wait_for(Duration::from_secs(30), "both real servers up", || {
        let o = c.hactl(&["table"]);
        let t = String::from_utf8_lossy(&o.stdout).to_string();
        (t.matches(&format!(":{ECHO_PORT}")).count() >= 3).then_some(())
    });
    let pids = [
        c.nodes[0].as_ref().expect("lvs01").child.id(),
        c.nodes[1].as_ref().expect("lvs02").child.id(),
    ];
    println!("flow sync, nftables DR, rr: new flows (SYNs) from 8 client addresses, {secs} s per rate");
    let mut port = 1024u16;
    for rate in rates {
        let before = figures(&c);
        let cpu0 = pids.map(cpu_seconds);
        let t = Instant::now();
        let sent = generate(&c, rate, secs, port);
        port = port.wrapping_add((rate * secs / 8 + 1) as u16).max(1024);
        // Wait until lvs02 has pinned what lvs01 learned (or 10 s).
        let settle = Instant::now();
        let mut after = figures(&c);
        while settle.elapsed() < Duration::from_secs(10)
            && (after.installed - before.installed < after.learned - before.learned
                || after.learned - before.learned < sent as f64 * 0.99)
        {
            std::thread::sleep(Duration::from_millis(100));
            after = figures(&c);
        }
        let wall = t.elapsed().as_secs_f64();
        let cpu1 = pids.map(cpu_seconds);
        let learned = after.learned - before.learned;
        let pinned = after.installed - before.installed;
        let per10k = |i: usize| (cpu1[i] - cpu0[i]) / (sent as f64 / 10_000.0);
        println!(
            "{rate:>6}/s: {sent} SYNs, learned on lvs01 {learned}, pinned on lvs02 {pinned}, lost {}, dropped {}, log overruns {}; lag p50 {}, p99 {} ({} flows); hanode CPU lvs01 {:.2} s, lvs02 {:.2} s in {wall:.1} s (per 10,000 flows: {:.3} s, {:.3} s)",
            after.lost - before.lost,
            after.dropped - before.dropped,
            after.overruns - before.overruns,
            quantile(&before.lag, &after.lag, 0.5),
            quantile(&before.lag, &after.lag, 0.99),
            after.lag_count - before.lag_count,
            cpu1[0] - cpu0[0],
            cpu1[1] - cpu0[1],
            per10k(0),
            per10k(1),
        );
    }
}

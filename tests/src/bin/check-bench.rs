//! Benchmark (issues 6, 24): N checkers of each kind in `CHECK_BENCH_KINDS` (a comma list
//! of http, tcp, udp, dns, ping; default `http,tcp`) at delay_loop 1 s against loopback
//! targets (a few server processes: HTTP, a TCP listener, a UDP echo, a DNS responder that
//! answers every query; the kernel answers pings), all inside a fresh network namespace
//! (only `lo`, addresses 127.0.x.y; ping sockets allowed, keepalived's way). Prints
//! checks/s, the checker process's CPU and RSS, and the p50/p99 lateness of probes
//! against their schedule.
//!
//! `cargo build --release -p e2e --bin check-bench && target/release/check-bench [N] [SECS]`

use actix::prelude::*;
use e2e::netns::Netns;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

const HTTP_PORTS: [u16; 2] = [8001, 8002];
const TCP_PORT: u16 = 9001;
const UDP_PORT: u16 = 9002;
const DNS_PORT: u16 = 9053;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("--serve") => serve(&args[2..]),
        Some("--inner") => inner(&args[2..]),
        _ => outer(&args[1..]),
    }
}

/// Creates the namespace and runs the measurement inside it.
fn outer(args: &[String]) {
    let n = args.first().cloned().unwrap_or_else(|| "10000".into());
    let secs = args.get(1).cloned().unwrap_or_else(|| "20".into());
    let ns = Netns::new("chkbench");
    // keepalived's PING_CHECK uses ping sockets, which the kernel allows by group.
    let _ = ns
        .command("sysctl")
        .args(["-qw", "net.ipv4.ping_group_range=0 2147483647"])
        .status();
    let exe = std::env::current_exe().expect("exe");
    let status = ns
        .command(exe.to_str().expect("path"))
        .args(["--inner", &n, &secs])
        .stdout(std::process::Stdio::inherit())
        .stderr(std::process::Stdio::inherit())
        .status()
        .expect("run inner");
    drop(ns);
    std::process::exit(status.code().unwrap_or(1));
}

/// A target process: answers HTTP on the given ports (any 127.x.y.z).
fn serve(ports: &[String]) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        for p in ports {
            // `udp:PORT:FIRST:COUNT` (an echo) or `dns:PORT:FIRST:COUNT` (every query
            // answered with rcode 0): a socket bound to each target's own address, so that
            // the answer comes from the address the checker's connected socket expects.
            if let Some((kind, rest)) = p.split_once(':').filter(|(k, _)| matches!(*k, "udp" | "dns")) {
                let f: Vec<usize> = rest.split(':').map(|x| x.parse().expect("number")).collect();
                let (port, first, count) = (f[0] as u16, f[1], f[2]);
                raise_nofile();
                let dns = kind == "dns";
                for i in first..first + count {
                    let sock = tokio::net::UdpSocket::bind((target_addr(i).as_str(), port))
                        .await
                        .expect("bind");
                    tokio::spawn(async move {
                        let mut buf = [0u8; 2048];
                        loop {
                            let Ok((n, from)) = sock.recv_from(&mut buf).await else {
                                continue;
                            };
                            if dns {
                                if n < 12 {
                                    continue;
                                }
                                // The query back as its answer: response bit, rcode 0.
                                buf[2] |= 0x80;
                                buf[3] &= 0xf0;
                            }
                            let _ = sock.send_to(&buf[..n], from).await;
                        }
                    });
                }
                continue;
            }
            let port: u16 = p.parse().expect("port");
            let l = tokio::net::TcpListener::bind(("0.0.0.0", port))
                .await
                .expect("bind");
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                loop {
                    let Ok((mut s, _)) = l.accept().await else {
                        continue;
                    };
                    tokio::spawn(async move {
                        let mut buf = [0u8; 1024];
                        let _ = s.read(&mut buf).await;
                        let _ = s
                            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
                            .await;
                    });
                }
            });
        }
        std::future::pending::<()>().await;
    });
}

fn cpu_ticks() -> u64 {
    let mut s = String::new();
    if std::fs::File::open("/proc/self/stat")
        .and_then(|mut f| f.read_to_string(&mut s))
        .is_err()
    {
        return 0;
    }
    // Fields after the command name in parentheses: utime is 14th, stime 15th overall.
    let after = s.rsplit_once(')').map(|x| x.1).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    f.get(11).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0)
}

fn rss_mib() -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|k| k.parse::<f64>().ok())
        .map(|k| k / 1024.0)
        .unwrap_or(0.0)
}

/// Real server `i`'s address (on `lo`: all of 127/8 is local).
fn target_addr(i: usize) -> String {
    format!("127.{}.{}.{}", 1 + i / 65536, (i / 256) % 256, i % 256)
}

/// Room for a socket per UDP target (the soft limit is often 1,024).
fn raise_nofile() {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain getrlimit/setrlimit on our own process.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 {
            r.rlim_cur = r.rlim_max.min(1 << 20);
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}

/// The kinds measured (`CHECK_BENCH_KINDS`).
fn bench_kinds() -> Vec<&'static str> {
    let env = std::env::var("CHECK_BENCH_KINDS").unwrap_or_else(|_| "http,tcp".into());
    let env = if env == "both" {
        "http,tcp".to_string()
    } else {
        env
    };
    ["http", "tcp", "udp", "dns", "ping"]
        .into_iter()
        .filter(|k| env.split(',').any(|e| e.trim() == *k))
        .collect()
}

fn config_text(n: usize) -> String {
    let mut s = String::new();
    let per_vs = 100;
    let addr = target_addr;
    let kinds = bench_kinds();
    for (k, kind) in kinds.iter().enumerate() {
        let offset = k * n;
        for v in 0..n.div_ceil(per_vs) {
            let vs_index = offset / per_vs + v;
            let proto = if matches!(*kind, "udp" | "dns") {
                "UDP"
            } else {
                "TCP"
            };
            s.push_str(&format!(
                "virtual_server 198.18.{}.{} 80 {{\n  delay_loop 1\n  lb_kind NAT\n  protocol {proto}\n",
                100 + vs_index / 250,
                1 + vs_index % 250
            ));
            for r in 0..per_vs.min(n - v * per_vs) {
                let i = offset + v * per_vs + r;
                let timing = "connect_timeout 2\n      retry 1\n      delay_before_retry 1\n      warmup 1";
                let (port, check) = match *kind {
                    "http" => (
                        HTTP_PORTS[i % 2],
                        format!(
                            "HTTP_GET {{\n      url {{\n        path /\n      }}\n      {timing}\n    }}"
                        ),
                    ),
                    "udp" => (
                        UDP_PORT,
                        // The echo of keepalived's payload: `keepalived check - ...`.
                        format!("UDP_CHECK {{\n      require_reply 6b656570\n      {timing}\n    }}"),
                    ),
                    "dns" => (
                        DNS_PORT,
                        format!("DNS_CHECK {{\n      type A\n      name bench.test\n      {timing}\n    }}"),
                    ),
                    "ping" => (TCP_PORT, format!("PING_CHECK {{\n      {timing}\n    }}")),
                    _ => (TCP_PORT, format!("TCP_CHECK {{\n      {timing}\n    }}")),
                };
                s.push_str(&format!(
                    "  real_server {} {port} {{\n    {check}\n  }}\n",
                    addr(i)
                ));
            }
            s.push_str("}\n");
        }
    }
    s
}

fn inner(args: &[String]) {
    let n: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let secs: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(20);
    let exe = std::env::current_exe().expect("exe");
    let mut targets = Vec::new();
    for p in HTTP_PORTS {
        targets.push(
            std::process::Command::new(&exe)
                .args(["--serve", &p.to_string()])
                .spawn()
                .expect("target"),
        );
    }
    targets.push(
        std::process::Command::new(&exe)
            .args(["--serve", &TCP_PORT.to_string()])
            .spawn()
            .expect("target"),
    );
    for (k, kind) in bench_kinds().iter().enumerate() {
        let port = match *kind {
            "udp" => UDP_PORT,
            "dns" => DNS_PORT,
            _ => continue,
        };
        targets.push(
            std::process::Command::new(&exe)
                .args(["--serve", &format!("{kind}:{port}:{}:{n}", k * n)])
                .spawn()
                .expect("target"),
        );
    }
    // Binding 10,000s of sockets takes a moment.
    std::thread::sleep(Duration::from_millis(300 + n as u64 / 10));
    let text = config_text(n);
    let t = Instant::now();
    let (_, loaded) = ha_config::cluster::load_str("bench.conf", &text, &[]);
    println!(
        "config: {n} real servers with a check of each kind of {:?} in {} virtual servers ({} KiB), parsed in {:.2} s",
        bench_kinds(),
        loaded.cluster.default.virtual_servers.len(),
        text.len() / 1024,
        t.elapsed().as_secs_f64()
    );
    let config = loaded.cluster.default.clone();
    let config_checkers: usize = config.virtual_servers.iter().map(|v| v.real_servers.len()).sum();
    let sys = actix_rt::System::new();
    sys.block_on(async move {
        let checks = ::actors::check::runner::start(&config, 1, vec![]);
        println!("{} checker actors", checks.checkers.len());
        // Warm up (warmup 1 s spreads the first probes), then measure.
        actix_rt::time::sleep(Duration::from_secs(5)).await;
        let stats = &::actors::check::stats::STATS;
        stats.reset();
        let (c0, t0) = (cpu_ticks(), Instant::now());
        actix_rt::time::sleep(Duration::from_secs(secs)).await;
        let wall = t0.elapsed().as_secs_f64();
        let ticks = cpu_ticks() - c0;
        // SAFETY: sysconf is a plain query.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        let tables = checks
            .hub
            .send(::actors::check::hub::GetTables)
            .await
            .unwrap_or_default();
        let up: usize = tables.values().map(|t| t.dests.len()).sum();
        println!(
            "{:.0} checks/s over {wall:.0} s (schedule: {}/s); CPU {:.0}% of one core (all threads); RSS {:.0} MiB",
            stats.probes() as f64 / wall,
            config_checkers,
            100.0 * ticks as f64 / hz / wall,
            rss_mib()
        );
        println!(
            "lateness against the schedule: p50 {} ms, p99 {} ms, max bucket {} ms; {} of {} real servers up",
            stats.lateness_quantile_ms(0.50),
            stats.lateness_quantile_ms(0.99),
            stats.lateness_quantile_ms(1.0),
            up,
            config_checkers
        );
        System::current().stop();
    });
    for mut t in targets {
        let _ = t.kill();
        let _ = t.wait();
    }
    let _ = std::io::stdout().flush();
}

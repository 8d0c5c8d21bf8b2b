//! A simple packet generator for the data-plane benchmarks: sends small UDP datagrams to
//! ADDR:PORT from FLOWS sockets (each its own source port: a flow), round robin, for
//! SECONDS, and prints how many it sent.
//!
//! udp-flood ADDR:PORT SECONDS FLOWS

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = || -> ! {
        eprintln!("usage: udp-flood ADDR:PORT SECONDS FLOWS");
        std::process::exit(2)
    };
    let [addr, secs, flows] = args.as_slice() else {
        usage()
    };
    let (Ok(addr), Ok(secs), Ok(flows)) = (
        addr.parse::<SocketAddr>(),
        secs.parse::<f64>(),
        flows.parse::<usize>(),
    ) else {
        usage()
    };
    let any: SocketAddr = if addr.is_ipv4() {
        "0.0.0.0:0".parse().unwrap_or_else(|_| usage())
    } else {
        "[::]:0".parse().unwrap_or_else(|_| usage())
    };
    let socks: Vec<UdpSocket> = (0..flows.max(1))
        .map(|_| {
            let s = UdpSocket::bind(any).unwrap_or_else(|e| {
                eprintln!("udp-flood: bind: {e}");
                std::process::exit(1)
            });
            s.connect(addr).unwrap_or_else(|e| {
                eprintln!("udp-flood: connect {addr}: {e}");
                std::process::exit(1)
            });
            s
        })
        .collect();
    let payload = [0u8; 18];
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let (mut sent, mut failed) = (0u64, 0u64);
    'run: loop {
        for s in &socks {
            for _ in 0..64 {
                match s.send(&payload) {
                    Ok(_) => sent += 1,
                    Err(_) => failed += 1,
                }
            }
            if Instant::now() >= end {
                break 'run;
            }
        }
    }
    println!("sent {sent} failed {failed} seconds {secs}");
}

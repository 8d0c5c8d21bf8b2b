//! The connection harness (issue 22): long-lived TCP connections through a VIP, each
//! sending a numbered line every 100 ms and checking each echo and which real server
//! answers; it reports broken connections (reset, timeout, end of stream, answered by
//! another real server) per phase.
//!
//! `conn-harness echo NAME PORT` (on each real server): greets each connection with
//! `NAME\n`, then answers each line `L` with `NAME L\n`.
//!
//! `conn-harness clients TARGET COUNT FROM[,FROM...] [EVERY_MS]` (on the client): COUNT
//! connections to TARGET (`ip:port`), connection i from address FROM[i mod n]. A broken
//! connection is counted once and opened again (a new connection may go anywhere). Commands
//! on standard input, one answer line (JSON) each on standard output:
//! - `settle N SECS`: waits until every connection slot has had N echoes in this phase
//!   (`{"settled":true}`; false after SECS);
//! - `phase NAME`: the report of the phase that ends, then NAME begins;
//! - `quit` (or end of input): the report of the last phase, then exit.
//!
//! A report: `{"phase":..,"connections":C,"broken":B,"reasons":{"reset":..},
//! "broken_on":{"rs01":..},"new_on":{"rs01":..},"echoes":E}`: `broken_on` counts broken
//! connections by the real server they were on, `new_on` the connections opened in the
//! phase by the server that greeted them.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long an echo may take before the connection counts as broken: long enough for TCP
/// to retransmit through a takeover (the first retransmission comes after 200 ms, the
/// next ones double), short enough to tell a stuck connection.
const ECHO_TIMEOUT: Duration = Duration::from_secs(5);

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("echo") if args.len() == 3 => echo(&args[1], &args[2]),
        Some("clients") if args.len() >= 4 => clients(&args[1..]),
        _ => {
            Err("usage: conn-harness echo NAME PORT | clients TARGET COUNT FROM[,FROM...] [EVERY_MS]".into())
        }
    };
    if let Err(e) = result {
        eprintln!("conn-harness: {e}");
        std::process::exit(2);
    }
}

fn echo(name: &str, port: &str) -> Result<(), String> {
    let port: u16 = port.parse().map_err(|e| format!("port {port:?}: {e}"))?;
    let listener =
        TcpListener::bind(("0.0.0.0", port)).map_err(|e| format!("listening on port {port}: {e}"))?;
    for conn in listener.incoming() {
        let Ok(mut s) = conn else { continue };
        let name = name.to_string();
        std::thread::spawn(move || {
            let _ = s.set_nodelay(true);
            if s.write_all(format!("{name}\n").as_bytes()).is_err() {
                return;
            }
            let Ok(read) = s.try_clone() else { return };
            for line in BufReader::new(read).lines() {
                let Ok(line) = line else { return };
                if s.write_all(format!("{name} {line}\n").as_bytes()).is_err() {
                    return;
                }
            }
        });
    }
    Ok(())
}

/// What happened in the current phase.
#[derive(Default)]
struct Phase {
    name: String,
    /// Echoes per connection slot in this phase.
    echoes: Vec<u64>,
    broken: u64,
    reasons: BTreeMap<String, u64>,
    broken_on: BTreeMap<String, u64>,
    new_on: BTreeMap<String, u64>,
}

impl Phase {
    fn new(name: &str, slots: usize) -> Phase {
        Phase {
            name: name.to_string(),
            echoes: vec![0; slots],
            ..Phase::default()
        }
    }

    fn report(&self) -> serde_json::Value {
        serde_json::json!({
            "phase": self.name,
            "connections": self.echoes.len(),
            "broken": self.broken,
            "reasons": self.reasons,
            "broken_on": self.broken_on,
            "new_on": self.new_on,
            "echoes": self.echoes.iter().sum::<u64>(),
        })
    }
}

struct Shared {
    phase: Mutex<Phase>,
    changed: Condvar,
    stop: AtomicBool,
}

fn clients(args: &[String]) -> Result<(), String> {
    let target: SocketAddr = args[0]
        .parse()
        .map_err(|e| format!("target {:?}: {e}", args[0]))?;
    let count: usize = args[1].parse().map_err(|e| format!("count {:?}: {e}", args[1]))?;
    let from: Vec<IpAddr> = args[2]
        .split(',')
        .map(|a| a.parse().map_err(|e| format!("source address {a:?}: {e}")))
        .collect::<Result<_, String>>()?;
    let every = Duration::from_millis(match args.get(3) {
        Some(ms) => ms.parse().map_err(|e| format!("interval {ms:?}: {e}"))?,
        None => 100,
    });
    if count == 0 || from.is_empty() {
        return Err("at least one connection and one source address".into());
    }
    let shared = Arc::new(Shared {
        phase: Mutex::new(Phase::new("start", count)),
        changed: Condvar::new(),
        stop: AtomicBool::new(false),
    });
    let workers: Vec<_> = (0..count)
        .map(|slot| {
            let shared = shared.clone();
            let source = from[slot % from.len()];
            std::thread::spawn(move || worker(slot, source, target, every, &shared))
        })
        .collect();
    let stdin = std::io::stdin();
    let mut out = std::io::stdout();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        let words: Vec<&str> = line.split_whitespace().collect();
        let answer = match words.as_slice() {
            ["settle", n, secs] => match (n.parse::<u64>(), secs.parse::<u64>()) {
                (Ok(n), Ok(secs)) => {
                    serde_json::json!({ "settled": settle(&shared, n, Duration::from_secs(secs)) })
                }
                _ => serde_json::json!({"error": format!("bad command {line:?}")}),
            },
            ["phase", name] => {
                let mut p = lock(&shared);
                let report = p.report();
                *p = Phase::new(name, count);
                report
            }
            ["quit"] => break,
            _ => serde_json::json!({"error": format!("bad command {line:?}")}),
        };
        if writeln!(out, "{answer}").and_then(|_| out.flush()).is_err() {
            break;
        }
    }
    let report = lock(&shared).report();
    shared.stop.store(true, Ordering::SeqCst);
    let _ = writeln!(out, "{report}");
    let _ = out.flush();
    // Workers notice the stop within one interval (or one read timeout).
    drop(workers);
    Ok(())
}

fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, Phase> {
    shared.phase.lock().unwrap_or_else(|p| p.into_inner())
}

fn settle(shared: &Shared, n: u64, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    let mut p = lock(shared);
    loop {
        if p.echoes.iter().all(|&e| e >= n) {
            return true;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        p = shared
            .changed
            .wait_timeout(p, left)
            .map(|(g, _)| g)
            .unwrap_or_else(|e| e.into_inner().0);
    }
}

/// One connection slot: connect, greet, exchange lines until broken, count it, again.
fn worker(slot: usize, source: IpAddr, target: SocketAddr, every: Duration, shared: &Shared) {
    while !shared.stop.load(Ordering::SeqCst) {
        let (server, reason) = match session(slot, source, target, every, shared) {
            Ok(()) => return,
            Err(x) => x,
        };
        {
            let mut p = lock(shared);
            p.broken += 1;
            *p.reasons.entry(reason).or_default() += 1;
            if let Some(s) = server {
                *p.broken_on.entry(s).or_default() += 1;
            }
        }
        std::thread::sleep(every);
    }
}

/// Runs one connection until it breaks (Err: the server it was on, if any, and why) or
/// the harness stops (Ok).
fn session(
    slot: usize,
    source: IpAddr,
    target: SocketAddr,
    every: Duration,
    shared: &Shared,
) -> Result<(), (Option<String>, String)> {
    let stream = connect(source, target).map_err(|e| (None, format!("connect: {}", kind(&e))))?;
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(ECHO_TIMEOUT));
    let mut writer = stream.try_clone().map_err(|e| (None, kind(&e)))?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    let server = match reader.read_line(&mut line) {
        Ok(0) => return Err((None, "eof".into())),
        Ok(_) => line.trim().to_string(),
        Err(e) => return Err((None, kind(&e))),
    };
    *lock(shared).new_on.entry(server.clone()).or_default() += 1;
    let fail = |why: String| (Some(server.clone()), why);
    let mut seq: u64 = 0;
    while !shared.stop.load(Ordering::SeqCst) {
        seq += 1;
        writer
            .write_all(format!("{seq}\n").as_bytes())
            .map_err(|e| fail(kind(&e)))?;
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) => return Err(fail("eof".into())),
            Ok(_) => {}
            Err(e) => return Err(fail(kind(&e))),
        }
        let want = format!("{server} {seq}");
        if line.trim() != want {
            let who = line.split_whitespace().next().unwrap_or("").to_string();
            return Err(fail(if who != server {
                "answered by another server".into()
            } else {
                "wrong echo".into()
            }));
        }
        {
            let mut p = lock(shared);
            p.echoes[slot] += 1;
        }
        shared.changed.notify_all();
        std::thread::sleep(every);
    }
    Ok(())
}

fn connect(source: IpAddr, target: SocketAddr) -> std::io::Result<TcpStream> {
    let domain = if target.is_ipv6() {
        socket2::Domain::IPV6
    } else {
        socket2::Domain::IPV4
    };
    let s = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    s.bind(&SocketAddr::new(source, 0).into())?;
    s.connect_timeout(&target.into(), Duration::from_secs(2))?;
    Ok(s.into())
}

fn kind(e: &std::io::Error) -> String {
    use std::io::ErrorKind::*;
    match e.kind() {
        ConnectionReset => "reset".into(),
        ConnectionAborted => "aborted".into(),
        WouldBlock | TimedOut => "timeout".into(),
        ConnectionRefused => "refused".into(),
        BrokenPipe => "broken pipe".into(),
        other => format!("{other:?}"),
    }
}

//! The long chaos run (issue 23): many seeded fault schedules on one chaos lab
//! ([`e2e::chaos`]), every invariant checked after each, figures at the end.
//!
//! `chaos-bench [--schedules N] [--first-seed S] [--steps K]` (root: namespaces, nftables,
//! tmpfs). A schedule that breaks an invariant is printed with its seed and timeline;
//! replay it with `CHAOS_SEEDS=S cargo test -p e2e --test chaos`.

use e2e::chaos::{panics, run_schedule, ChaosLab};
use e2e::chaos_schedule::schedule;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn arg(args: &[String], name: &str, default: u64) -> u64 {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| {
            v.parse().unwrap_or_else(|_| {
                eprintln!("{name}: expected a number, got {v:?}");
                std::process::exit(2)
            })
        })
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[(sorted.len() - 1) * p / 100]
}

/// Set by SIGINT/SIGTERM: the run stops after the current schedule, and the lab is taken
/// down (namespaces, processes, mounts) as the test's would be.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn main() {
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    let args: Vec<String> = std::env::args().collect();
    let n = arg(&args, "--schedules", 100);
    let first = arg(&args, "--first-seed", 1);
    let steps = arg(&args, "--steps", 3) as usize;
    let t = Instant::now();
    let lab = Arc::new(Mutex::new(ChaosLab::start()));
    let counter = Arc::new(AtomicU64::new(1));
    let mut kinds: BTreeMap<&str, u64> = BTreeMap::new();
    let mut converge = Vec::new();
    let (mut violations, mut broken) = (0usize, Vec::new());
    let (mut dual_out, mut dual_longest, mut dual_in) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let (mut acked, mut unknown, mut curl_ok, mut curl_failed) = (0usize, 0usize, 0u64, 0u64);
    let mut n = n;
    for seed in first..first + n {
        if STOP.load(Ordering::SeqCst) {
            println!("stopped by a signal after {} schedules", seed - first);
            n = seed - first;
            break;
        }
        let r = run_schedule(&lab, seed, &schedule(seed, steps), &counter);
        for k in &r.faults {
            *kinds.entry(k).or_default() += 1;
        }
        if let Some(c) = r.converged_after {
            converge.push(c);
        }
        dual_out += r.dual_unexcused;
        dual_longest = dual_longest.max(r.dual_unexcused_longest);
        dual_in += r.dual_excused;
        acked += r.workload.acked.len();
        unknown += r.workload.unknown.len();
        curl_ok += r.workload.curl_ok;
        curl_failed += r.workload.curl_failed;
        if r.violations.is_empty() {
            println!(
                "seed {seed}: ok ({} faults, {} proposals acknowledged, converged in {} ms)",
                r.faults.len(),
                r.workload.acked.len(),
                r.converged_after.map(|d| d.as_millis()).unwrap_or(0)
            );
        } else {
            violations += r.violations.len();
            broken.push(seed);
            println!("{r}");
        }
    }
    let restart = lab.lock().map(|mut l| l.restart_all());
    let panicked = lab.lock().map(|l| panics(&l)).unwrap_or_default();
    converge.sort();
    println!(
        "\nchaos-bench: {n} schedules of {steps} steps (seeds {first}..{}), {:.0} s",
        first + n - 1,
        t.elapsed().as_secs_f64()
    );
    println!("| figure | value |");
    println!("| --- | --- |");
    println!("| schedules run | {n} |");
    let total: u64 = kinds.values().sum();
    let by_kind = kinds
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ");
    println!("| faults injected | {total}: {by_kind} |");
    println!("| invariant violations | {violations} (schedules {broken:?}) |");
    println!(
        "| VIP on both directors outside excusing faults | {} ms in total, longest stretch {} ms |",
        dual_out.as_millis(),
        dual_longest.as_millis()
    );
    println!(
        "| VIP on both directors during excusing faults (frozen/killed holder, non-transitive or VRRP-only cut, lossy link) | {} ms |",
        dual_in.as_millis()
    );
    println!(
        "| converged after the last heal | p50 {} ms, max {} ms ({} of {n} schedules) |",
        percentile(&converge, 50).as_millis(),
        converge.last().copied().unwrap_or_default().as_millis(),
        converge.len()
    );
    println!("| proposals acknowledged | {acked} (outcome unknown to the client: {unknown}) |");
    println!(
        "| curl through the VIP during faults | {:.2}% of {} answered |",
        100.0 * curl_ok as f64 / (curl_ok + curl_failed).max(1) as f64,
        curl_ok + curl_failed
    );
    match &restart {
        Ok(Ok(d)) => println!(
            "| restart of every member afterwards | clean, converged in {} ms |",
            d.as_millis()
        ),
        Ok(Err(e)) => println!("| restart of every member afterwards | FAILED: {e} |"),
        Err(_) => println!("| restart of every member afterwards | lab lock poisoned |"),
    }
    println!("| panics | {} |", panicked.len());
    if violations > 0 || !panicked.is_empty() || !matches!(restart, Ok(Ok(_))) {
        std::process::exit(1);
    }
}

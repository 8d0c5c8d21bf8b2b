//! Drives a data-plane backend from the command line: used by the namespace and qemu
//! tests (inside the VM it is the "sync test binary") and by the data-plane benchmark.
//!
//! lb-sync [--backend auto|ipvs|nftables] [--ingress DEV]... COMMAND
//!   apply FILE      make the kernel equal to the table in FILE (JSON, `-` for stdin);
//!                   prints one JSON line: ops (by kind), errors, microseconds
//!   dump [--json]   the kernel's table (`ipvsadm -Ln` layout, or JSON)
//!   teardown        remove everything of ours (nftables tables / all IPVS services)
//!   random N D STEPS SEED  STEPS random diffs to N services x D destinations (weights,
//!                   servers leaving and joining, schedulers, persistence, DR <-> NAT,
//!                   services leaving and coming), the kernel read back after each by a
//!                   fresh backend and compared; exit 1 on any difference
//!   compare-readings  nftables: read our tables by netlink and through `nft -j`, print
//!                   where they differ (exit 1) or `same`
//!   bench N D [SCHED]  full sync of N services x D destinations (scheduler SCHED, wrr
//!                   by default) from empty, one weight
//!                   change, one service add, then 100 changes of each kind (weight,
//!                   real server down and up, service removed and added: p50/p99), a
//!                   full re-read checked against the table; prints the figures

use actors::lb::backend::{self, Choice};
use actors::lb::diff::{diff, Op};
use actors::lb::kernel::KernelLb;
use actors::lb::model::{DestKey, DestSpec, Persistence, Service, SvcKey, SvcSpec, Table};
use ha_config::model::{Forwarding, Protocol};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

fn fail(msg: impl std::fmt::Display) -> ! {
    eprintln!("lb-sync: {msg}");
    std::process::exit(2)
}

fn kind(op: &Op) -> &'static str {
    match op {
        Op::AddService(..) => "add_service",
        Op::EditService(..) => "edit_service",
        Op::DelService(..) => "del_service",
        Op::AddDest(..) => "add_dest",
        Op::EditDest(..) => "edit_dest",
        Op::DelDest(..) => "del_dest",
    }
}

/// Makes the kernel equal to `want`; returns (ops by kind, errors, microseconds).
fn sync(k: &mut dyn KernelLb, want: &Table) -> (BTreeMap<&'static str, usize>, Vec<(String, String)>, u128) {
    let t0 = Instant::now();
    let have = k.dump().unwrap_or_else(|e| fail(e));
    let ops = diff(want, &have);
    let results = k.apply(&ops);
    let us = t0.elapsed().as_micros();
    let mut kinds = BTreeMap::new();
    for op in &ops {
        *kinds.entry(kind(op)).or_default() += 1;
    }
    let errors = ops
        .iter()
        .zip(results)
        .filter_map(|(op, r)| r.err().map(|e| (op.to_string(), e.to_string())))
        .collect();
    (kinds, errors, us)
}

fn read_table(path: &str) -> Table {
    let mut text = String::new();
    if path == "-" {
        std::io::stdin()
            .read_to_string(&mut text)
            .unwrap_or_else(|e| fail(e));
    } else {
        text = std::fs::read_to_string(path).unwrap_or_else(|e| fail(format!("{path}: {e}")));
    }
    let list: Vec<(SvcKey, Service)> =
        serde_json::from_str(&text).unwrap_or_else(|e| fail(format!("{path}: {e}")));
    list.into_iter().collect()
}

/// `count` changes of each kind, each to one random service, timed as the sync actor
/// applies them (the diff of the changed service only, then the kernel): p50, p99, max.
fn series(k: &mut dyn KernelLb, want: &mut Table, known: &mut Table, count: usize) {
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut rnd = move |m: usize| {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((seed >> 33) as usize) % m.max(1)
    };
    let keys: Vec<SvcKey> = want.keys().copied().collect();
    let apply_one = |k: &mut dyn KernelLb, want: &Table, known: &mut Table, key: &SvcKey| -> (f64, usize) {
        let one = |t: &Table| -> Table { t.get(key).map(|s| (*key, s.clone())).into_iter().collect() };
        let t0 = Instant::now();
        let ops = diff(&one(want), &one(known));
        let results = k.apply(&ops);
        let ms = t0.elapsed().as_secs_f64() * 1000.0;
        if let Some((op, e)) = ops
            .iter()
            .zip(&results)
            .find_map(|(o, r)| r.as_ref().err().map(|e| (o, e)))
        {
            fail(format!("{op}: {e}"));
        }
        match want.get(key) {
            Some(s) => known.insert(*key, s.clone()),
            None => known.remove(key),
        };
        (ms, ops.len())
    };
    let backend = k.backend();
    let report = |case: &str, mut lat: Vec<f64>, ops: usize| {
        lat.sort_by(f64::total_cmp);
        let at = |q: f64| {
            lat.get(((lat.len() as f64 - 1.0) * q).round() as usize)
                .copied()
                .unwrap_or(0.0)
        };
        println!(
            "BENCH backend={backend} case={case} changes={} ops={ops} p50_ms={:.2} p99_ms={:.2} max_ms={:.2}",
            lat.len(),
            at(0.5),
            at(0.99),
            at(1.0)
        );
    };
    let mut pick = |n: usize, taken: &mut BTreeSet<usize>| loop {
        let i = rnd(n);
        if taken.insert(i) {
            return i;
        }
    };
    // Weight changes: the first destination of a random service to another weight;
    // first 1 <-> 3 (3:1:1:1 still fits the service's slot count), then to 2 (2:1:1:1,
    // five parts: the chain moves to another slot count, once per service).
    for (case, next) in [
        (
            "weight_change_count_kept",
            (|w| if w == 3 { 1 } else { 3 }) as fn(u32) -> u32,
        ),
        ("weight_change_count_moved", |_| 2),
    ] {
        let (mut lat, mut ops) = (Vec::new(), 0);
        let mut taken = BTreeSet::new();
        for _ in 0..count {
            let key = keys[pick(keys.len(), &mut taken)];
            if let Some(dest) = want.get_mut(&key).and_then(|s| s.dests.values_mut().next()) {
                dest.weight = next(dest.weight);
            }
            let (ms, n) = apply_one(k, want, known, &key);
            lat.push(ms);
            ops += n;
        }
        report(case, lat, ops);
    }
    // A real server down (its destination leaves: drained), then back up.
    let mut downed = Vec::new();
    let (mut lat, mut ops) = (Vec::new(), 0);
    let mut taken = BTreeSet::new();
    for _ in 0..count {
        let key = keys[pick(keys.len(), &mut taken)];
        let Some(svc) = want.get_mut(&key) else { continue };
        let Some(dk) = svc.dests.keys().nth(1).copied() else {
            continue;
        };
        if let Some(spec) = svc.dests.remove(&dk) {
            downed.push((key, dk, spec));
        }
        let (ms, n) = apply_one(k, want, known, &key);
        lat.push(ms);
        ops += n;
    }
    report("real_server_down", lat, ops);
    let (mut lat, mut ops) = (Vec::new(), 0);
    for (key, dk, spec) in downed {
        if let Some(svc) = want.get_mut(&key) {
            svc.dests.insert(dk, spec);
        }
        let (ms, n) = apply_one(k, want, known, &key);
        lat.push(ms);
        ops += n;
    }
    report("real_server_up", lat, ops);
    // Services removed, then added back.
    let mut removed = Vec::new();
    let (mut lat, mut ops) = (Vec::new(), 0);
    let mut taken = BTreeSet::new();
    for _ in 0..count {
        let key = keys[pick(keys.len(), &mut taken)];
        if let Some(svc) = want.remove(&key) {
            removed.push((key, svc));
        }
        let (ms, n) = apply_one(k, want, known, &key);
        lat.push(ms);
        ops += n;
    }
    report("service_remove", lat, ops);
    let (mut lat, mut ops) = (Vec::new(), 0);
    for (key, svc) in removed {
        want.insert(key, svc);
        let (ms, n) = apply_one(k, want, known, &key);
        lat.push(ms);
        ops += n;
    }
    report("service_add", lat, ops);
}

/// `steps` random diffs to a table of `n` services x `d` destinations, applied as the
/// sync actor applies them (diff against what it believes the kernel holds); after each,
/// the kernel's table is read back by a second, fresh backend and compared with the
/// table wanted. Prints one line per mismatch and a summary; false on any mismatch.
fn random_diffs(choice: Choice, ingress: BTreeSet<String>, n: u32, d: u32, steps: u32, seed: u64) -> bool {
    let mut k = backend::open(choice, ingress.clone()).unwrap_or_else(|e| fail(e));
    let mut reader = backend::open(choice, ingress).unwrap_or_else(|e| fail(e));
    let mut state = seed | 1;
    let mut rnd = move |m: u32| -> u32 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % u64::from(m.max(1))) as u32
    };
    let (_, errors, _) = sync(k.as_mut(), &Table::new());
    if !errors.is_empty() {
        fail(format!("clearing: {errors:?}"));
    }
    let mut want = synthetic(n, d);
    let mut known = Table::new();
    let mut next_addr: u32 = 0;
    let scheds = ["rr", "wrr", "sh", "mh", "dh", "fo", "wlc"];
    let (mut mismatches, mut ops_total) = (0, 0);
    for step in 0..=steps {
        if step > 0 {
            for _ in 0..=rnd(4) {
                let keys: Vec<SvcKey> = want.keys().copied().collect();
                let Some(key) = keys.get(rnd(keys.len() as u32) as usize).copied() else {
                    break;
                };
                match rnd(8) {
                    // A weight (0 included: the destination takes no new flows).
                    0 | 1 => {
                        if let Some(svc) = want.get_mut(&key) {
                            let i = rnd(svc.dests.len() as u32) as usize;
                            if let Some(dest) = svc.dests.values_mut().nth(i) {
                                dest.weight = rnd(6);
                            }
                        }
                    }
                    // A real server leaves.
                    2 => {
                        if let Some(svc) = want.get_mut(&key) {
                            let i = rnd(svc.dests.len() as u32) as usize;
                            if let Some(dk) = svc.dests.keys().nth(i).copied() {
                                svc.dests.remove(&dk);
                            }
                        }
                    }
                    // A real server joins (same forwarding as the service's others).
                    3 => {
                        if let Some(svc) = want.get_mut(&key) {
                            let fwd = svc.dests.values().next().map(|s| s.fwd).unwrap_or(Forwarding::Dr);
                            next_addr += 1;
                            svc.dests.insert(
                                DestKey {
                                    addr: IpAddr::V4(Ipv4Addr::from(
                                        u32::from(Ipv4Addr::new(198, 19, 1, 0)) + next_addr % 4000,
                                    )),
                                    port: 80,
                                },
                                DestSpec {
                                    fwd,
                                    weight: 1 + rnd(3),
                                    u_thresh: 0,
                                    l_thresh: 0,
                                },
                            );
                        }
                    }
                    // The scheduler or persistence.
                    4 => {
                        if let Some(svc) = want.get_mut(&key) {
                            svc.spec.sched = scheds[rnd(scheds.len() as u32) as usize].into();
                            svc.spec.persistence = match rnd(3) {
                                0 => Some(Persistence {
                                    timeout: 300,
                                    prefix: 24,
                                }),
                                _ => None,
                            };
                        }
                    }
                    // Forwarding moves between DR and NAT (the service changes table).
                    5 => {
                        if let Some(svc) = want.get_mut(&key) {
                            let to = if svc.dests.values().any(|s| s.fwd == Forwarding::Nat) {
                                Forwarding::Dr
                            } else {
                                Forwarding::Nat
                            };
                            for s in svc.dests.values_mut() {
                                s.fwd = to;
                            }
                        }
                    }
                    // A service leaves, or a new one comes.
                    6 => {
                        want.remove(&key);
                    }
                    _ => {
                        next_addr += 1;
                        let mut extra = synthetic(1, 1 + rnd(d.max(1)));
                        if let Some((_, svc)) = extra.pop_first() {
                            let addr = IpAddr::V4(Ipv4Addr::from(
                                u32::from(Ipv4Addr::new(198, 18, 200, 0)) + next_addr,
                            ));
                            want.insert(
                                SvcKey::Inet {
                                    proto: Protocol::Tcp,
                                    addr,
                                    port: 80,
                                },
                                svc,
                            );
                        }
                    }
                }
            }
        }
        let ops = diff(&want, &known);
        ops_total += ops.len();
        let results = k.apply(&ops);
        let refused: Vec<String> = ops
            .iter()
            .zip(&results)
            .filter_map(|(o, r)| r.as_ref().err().map(|e| format!("{o}: {e}")))
            .collect();
        if !refused.is_empty() {
            println!("step {step}: refused {refused:?}");
            mismatches += 1;
        }
        known = want.clone();
        let read = reader.dump().unwrap_or_else(|e| fail(e));
        if read != want {
            mismatches += 1;
            let differ: Vec<String> = want
                .keys()
                .chain(read.keys())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .filter(|key| want.get(key) != read.get(key))
                .take(3)
                .map(|key| format!("{key:?}: want {:?}, kernel {:?}", want.get(key), read.get(key)))
                .collect();
            println!("step {step}: the kernel differs: {differ:?}");
        }
    }
    println!(
        "random: {steps} diffs ({ops_total} ops) on {n} services, {} services at the end, {mismatches} mismatches",
        want.len()
    );
    let (_, errors, _) = sync(k.as_mut(), &Table::new());
    mismatches == 0 && errors.is_empty()
}

fn synthetic(n: u32, d: u32) -> Table {
    synthetic_with(n, d, "wrr")
}

/// `n` services of `d` destinations each, all scheduled by `sched`.
fn synthetic_with(n: u32, d: u32, sched: &str) -> Table {
    (0..n)
        .map(|i| {
            let addr = IpAddr::V4(Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 0)) + i));
            let dests = (0..d)
                .map(|j| {
                    (
                        DestKey {
                            addr: IpAddr::V4(Ipv4Addr::new(198, 19, 0, 10 + j as u8)),
                            port: 80,
                        },
                        DestSpec {
                            fwd: Forwarding::Dr,
                            weight: 1,
                            u_thresh: 0,
                            l_thresh: 0,
                        },
                    )
                })
                .collect();
            (
                SvcKey::Inet {
                    proto: Protocol::Tcp,
                    addr,
                    port: 80,
                },
                Service {
                    spec: SvcSpec {
                        sched: sched.into(),
                        persistence: None,
                        ops: false,
                        sched_flags: 0,
                    },
                    dests,
                },
            )
        })
        .collect()
}

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut choice = Choice::Auto;
    let mut ingress = BTreeSet::new();
    loop {
        match args.first().map(String::as_str) {
            Some("--backend") if args.len() > 1 => {
                choice = args[1].parse().unwrap_or_else(|e: String| fail(e));
                args.drain(..2);
            }
            Some("--ingress") if args.len() > 1 => {
                ingress.insert(args[1].clone());
                args.drain(..2);
            }
            _ => break,
        }
    }
    let cmd: Vec<&str> = args.iter().map(String::as_str).collect();
    if cmd.as_slice() == ["compare-readings"] {
        // The nftables tables read by netlink and through `nft -j`: the same services,
        // chains and cleanup, or the differences and exit status 1.
        let mut nft = actors::lb::nft::NftKernel::new(ingress);
        let diffs = nft.compare_readings().unwrap_or_else(|e| fail(e));
        if diffs.is_empty() {
            println!("same");
            return;
        }
        for d in diffs {
            println!("{d}");
        }
        std::process::exit(1);
    }
    if let ["udp-send", to, count] = cmd.as_slice() {
        // COUNT datagrams to TO (`ip:port`) from one socket: one IPVS connection (the VM
        // tests have no UDP client: busybox's nc is TCP only).
        let sock =
            std::net::UdpSocket::bind("0.0.0.0:0").unwrap_or_else(|e| fail(format!("udp socket: {e}")));
        let n: u32 = count.parse().unwrap_or_else(|e| fail(format!("{count}: {e}")));
        for i in 0..n {
            sock.send_to(format!("{i}\n").as_bytes(), to)
                .unwrap_or_else(|e| fail(format!("send to {to}: {e}")));
        }
        println!(
            "sent {n} from {}",
            sock.local_addr().map(|a| a.to_string()).unwrap_or_default()
        );
        return;
    }
    if let ["maglev", n] = cmd.as_slice() {
        let n: u32 = n.parse().unwrap_or_else(|e| fail(format!("{n}: {e}")));
        maglev_bench(n);
        return;
    }
    if let ["random", n, d, steps, seed] = cmd.as_slice() {
        let num = |s: &str| -> u32 { s.parse().unwrap_or_else(|e| fail(format!("{s}: {e}"))) };
        let ok = random_diffs(choice, ingress, num(n), num(d), num(steps), u64::from(num(seed)));
        std::process::exit(if ok { 0 } else { 1 });
    }
    let mut k = backend::open(choice, ingress).unwrap_or_else(|e| fail(e));
    match cmd.as_slice() {
        ["apply", path] => {
            let want = read_table(path);
            let (kinds, errors, us) = sync(k.as_mut(), &want);
            let total: usize = kinds.values().sum();
            println!(
                "{}",
                serde_json::json!({"backend": k.backend(), "ops": total, "kinds": kinds, "errors": errors, "us": us})
            );
        }
        ["dump"] => {
            let t = k.dump().unwrap_or_else(|e| fail(e));
            print!("{}", actors::lb::print::ipvsadm_ln(&t));
        }
        ["dump", "--json"] => {
            let t = k.dump().unwrap_or_else(|e| fail(e));
            let list: Vec<(SvcKey, Service)> = t.into_iter().collect();
            println!("{}", serde_json::to_string(&list).unwrap_or_else(|e| fail(e)));
        }
        ["teardown"] => k.remove_all().unwrap_or_else(|e| fail(format!("teardown: {e}"))),
        // The connection sync daemon as hanode runs it for `lvs_sync_daemon`: only
        // `role` runs afterwards (none: every one stops); prints the steps taken.
        ["sync-daemon", "none"] => print_steps(k.sync_daemon(None)),
        ["sync-daemon", role, iface, id] => {
            use actors::lb::syncd::{DaemonSpec, Role};
            let role = match *role {
                "master" => Role::Master,
                "backup" => Role::Backup,
                other => fail(format!("sync-daemon: role {other:?} (master, backup or none)")),
            };
            let spec = DaemonSpec {
                interface: iface.to_string(),
                sync_id: id.parse().unwrap_or_else(|e| fail(format!("sync id {id}: {e}"))),
                ..DaemonSpec::default()
            };
            print_steps(k.sync_daemon(Some(&(role, spec))));
        }
        ["bench", n, d, rest @ ..] if rest.len() <= 1 => {
            let n: u32 = n.parse().unwrap_or_else(|e| fail(e));
            let d: u32 = d.parse().unwrap_or_else(|e| fail(e));
            let sched = rest.first().copied().unwrap_or("wrr");
            let (_, errors, _) = sync(k.as_mut(), &Table::new());
            if !errors.is_empty() {
                fail(format!("clearing: {errors:?}"));
            }
            // As the sync actor works: diff against what it knows the kernel holds,
            // apply; re-reading the kernel is the periodic reconcile, timed apart.
            let mut known = k.dump().unwrap_or_else(|e| fail(e));
            let mut step = |what: &str, k: &mut dyn KernelLb, want: &Table| {
                let t0 = Instant::now();
                let ops = diff(want, &known);
                let diffed = t0.elapsed();
                let results = k.apply(&ops);
                let ms = t0.elapsed().as_secs_f64() * 1000.0;
                let errors = results.iter().filter(|r| r.is_err()).count();
                // ms: diff + apply, as the sync actor does; diff_ms: the pure diff of the
                // whole table alone (the rest is the kernel and its client library).
                println!(
                    "BENCH backend={} case={what} ops={} ms={ms:.2} diff_ms={:.2} errors={errors}",
                    k.backend(),
                    ops.len(),
                    diffed.as_secs_f64() * 1000.0
                );
                known = want.clone();
            };
            let mut want = synthetic_with(n, d, sched);
            step(&format!("full_sync_{n}x{d}"), k.as_mut(), &want);
            if let Some(svc) = want.values_mut().nth(n as usize / 2) {
                if let Some(dest) = svc.dests.values_mut().next() {
                    dest.weight = 3;
                }
            }
            step("one_weight_change", k.as_mut(), &want);
            let extra = synthetic_with(n + 1, d, sched);
            if let Some((key, svc)) = extra.into_iter().next_back() {
                want.insert(key, svc);
            }
            step("one_service_add", k.as_mut(), &want);
            series(k.as_mut(), &mut want, &mut known, 100);
            let t0 = Instant::now();
            let read = k.dump().unwrap_or_else(|e| fail(e));
            println!(
                "BENCH backend={} case=reread_{}_services ops=0 ms={:.2} errors={}",
                k.backend(),
                read.len(),
                t0.elapsed().as_secs_f64() * 1000.0,
                usize::from(read != want)
            );
            let (_, errors, _) = sync(k.as_mut(), &Table::new());
            if !errors.is_empty() {
                fail(format!("clearing: {errors:?}"));
            }
        }
        _ => fail("usage: lb-sync [--backend auto|ipvs|nftables] [--ingress DEV]... apply FILE | dump [--json] | teardown | bench N D [SCHED] | maglev N | sync-daemon master|backup IFACE ID | sync-daemon none"),
    }
}

/// `maglev N`: the time to compute one `mh` service's Maglev lookup table for N real
/// servers (equal weights), and the slots that move when one more comes, against the
/// ideal 1/(N+1) (pure: no kernel).
fn maglev_bench(n: u32) {
    use actors::lb::model::DestKey;
    use actors::lb::nft::maglev::{table, TABLE_SIZE};
    let dest = |i: u32| DestKey {
        addr: std::net::IpAddr::from([198, 19, (i / 250) as u8, (i % 250) as u8 + 1]),
        port: 80,
    };
    let before: Vec<(DestKey, u64)> = (0..n).map(|i| (dest(i), 1)).collect();
    let mut after = before.clone();
    after.push((dest(n), 1));
    let rounds = 200;
    let t = std::time::Instant::now();
    let mut a = Vec::new();
    for _ in 0..rounds {
        a = table(&before, TABLE_SIZE);
    }
    let build_us = t.elapsed().as_secs_f64() * 1e6 / f64::from(rounds);
    let b = table(&after, TABLE_SIZE);
    let moved = a
        .iter()
        .zip(&b)
        .filter(|(x, y)| before[**x].0 != after[**y].0)
        .count();
    let ideal = f64::from(TABLE_SIZE) / f64::from(n + 1);
    println!(
        "BENCH maglev servers={n} slots={TABLE_SIZE} build_us={build_us:.1} added_one_moved={moved} ideal={ideal:.1} ratio={:.2}",
        moved as f64 / ideal
    );
}

fn print_steps(r: Result<Vec<actors::lb::syncd::Step>, actors::lb::kernel::KernelError>) {
    use actors::lb::syncd::Step;
    for s in r.unwrap_or_else(|e| fail(format!("sync daemon: {e}"))) {
        match s {
            Step::Stop(role) => println!("stopped {}", role.name()),
            Step::Start(role, spec) => {
                println!("started {} {} {}", role.name(), spec.interface, spec.sync_id)
            }
        }
    }
}

//! The data plane against the in-memory kernel: minimal diffs, the sync actor's
//! convergence, refused ops that leave the rest applied, drift repair.

use ::actors::lb::diff::{apply, diff, Op};
use ::actors::lb::kernel::{FakeKernel, KernelError, KernelLb};
use ::actors::lb::model::{DestKey, DestSpec, Service, SvcKey, SvcSpec, Table};
use ::actors::lb::sync::{DataPlane, Desired, GetStatus, SyncEvent, SyncTiming};
use actix::prelude::*;
use ha_config::model::{Forwarding, Protocol};
use proptest::prelude::*;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn key(i: u8) -> SvcKey {
    SvcKey::Inet {
        proto: Protocol::Tcp,
        addr: IpAddr::from([198, 18, 1, i]),
        port: 80,
    }
}

fn dest(i: u8) -> DestKey {
    DestKey {
        addr: IpAddr::from([198, 18, 2, i]),
        port: 80,
    }
}

fn dspec(weight: u32) -> DestSpec {
    DestSpec {
        fwd: Forwarding::Dr,
        weight,
        u_thresh: 0,
        l_thresh: 0,
    }
}

fn service(sched: &str, dests: &[(u8, u32)]) -> Service {
    Service {
        spec: SvcSpec {
            sched: sched.into(),
            persistence: None,
            ops: false,
            sched_flags: 0,
        },
        dests: dests.iter().map(|(d, w)| (dest(*d), dspec(*w))).collect(),
    }
}

fn table(n: u8) -> Table {
    (1..=n)
        .map(|i| (key(i), service("rr", &[(1, 1), (2, 1), (3, 2), (4, 1)])))
        .collect()
}

#[test]
fn one_change_costs_one_op_whatever_the_table_size() {
    let before = table(200);
    let mut after = before.clone();
    after.get_mut(&key(7)).unwrap().dests.insert(dest(2), dspec(5));
    assert_eq!(
        diff(&after, &before),
        vec![Op::EditDest(key(7), dest(2), dspec(5))]
    );

    let mut after = before.clone();
    after.get_mut(&key(9)).unwrap().dests.remove(&dest(1));
    assert_eq!(diff(&after, &before), vec![Op::DelDest(key(9), dest(1))]);

    let mut after = before.clone();
    after.insert(key(250), service("wrr", &[(1, 1)]));
    assert_eq!(
        diff(&after, &before),
        vec![
            Op::AddService(key(250), after[&key(250)].spec.clone()),
            Op::AddDest(key(250), dest(1), dspec(1)),
        ]
    );

    let mut after = before.clone();
    after.get_mut(&key(3)).unwrap().spec.sched = "wlc".into();
    assert_eq!(diff(&after, &before).len(), 1);
    assert!(diff(&before, &before).is_empty());
}

#[test]
fn services_that_go_are_deleted_first_and_once() {
    let before = table(3);
    let mut after = table(3);
    after.remove(&key(1));
    after.insert(key(9), service("rr", &[]));
    let ops = diff(&after, &before);
    assert_eq!(ops[0], Op::DelService(key(1)));
    // Deleting a service takes its destinations with it: no per-destination ops.
    assert_eq!(ops.len(), 2);
}

fn arb_table() -> impl Strategy<Value = Table> {
    let svc = (
        prop::sample::select(vec!["rr", "wrr", "sh"]),
        prop::collection::btree_map(0u8..6, 0u32..4, 0..5),
    );
    prop::collection::btree_map(0u8..8, svc, 0..6).prop_map(|m| {
        m.into_iter()
            .map(|(k, (sched, ds))| {
                let ds: Vec<(u8, u32)> = ds.into_iter().collect();
                (key(k), service(sched, &ds))
            })
            .collect()
    })
}

proptest! {
    #[test]
    fn applying_the_diff_reaches_the_desired_table(want in arb_table(), have in arb_table()) {
        let ops = diff(&want, &have);
        let mut t = have.clone();
        let mut fake = FakeKernel { table: have.clone(), ..Default::default() };
        for op in &ops {
            apply(&mut t, op);
        }
        // A kernel with IPVS's rules accepts every op, in this order.
        for r in fake.apply(&ops) {
            prop_assert!(r.is_ok(), "{:?}", r);
        }
        prop_assert_eq!(&t, &want);
        prop_assert_eq!(&fake.table, &want);
        prop_assert!(diff(&want, &t).is_empty());
    }
}

/// A fake the test can still look into while the actor owns it.
#[derive(Clone, Default)]
struct Shared(Arc<Mutex<FakeKernel>>);

impl KernelLb for Shared {
    fn backend(&self) -> &'static str {
        "fake"
    }
    fn dump(&mut self) -> Result<Table, KernelError> {
        self.0.lock().unwrap().dump()
    }
    fn apply(&mut self, ops: &[Op]) -> Vec<Result<(), KernelError>> {
        self.0.lock().unwrap().apply(ops)
    }
}

struct Events(Arc<Mutex<Vec<SyncEvent>>>);

impl Actor for Events {
    type Context = Context<Self>;
}

impl Handler<SyncEvent> for Events {
    type Result = ();
    fn handle(&mut self, e: SyncEvent, _: &mut Context<Self>) {
        self.0.lock().unwrap().push(e);
    }
}

type Log = Arc<Mutex<Vec<SyncEvent>>>;

/// A data plane on `fake`, its events collected.
fn started(fake: Shared) -> (Shared, Log, Addr<DataPlane>) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let events = Events(log.clone()).start();
    let dp = DataPlane::new(Box::new(fake.clone()), vec![events.recipient()])
        .with_timing(fast())
        .start();
    (fake, log, dp)
}

fn fast() -> SyncTiming {
    SyncTiming {
        reconcile_every: Duration::from_millis(200),
        retry_first: Duration::from_millis(50),
        retry_max: Duration::from_millis(200),
    }
}

async fn until(mut f: impl FnMut() -> bool) {
    for _ in 0..200 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("condition not reached in 4 s");
}

async fn status_until(
    dp: &Addr<DataPlane>,
    f: impl Fn(&::actors::lb::sync::DataPlaneStatus) -> bool,
) -> ::actors::lb::sync::DataPlaneStatus {
    for _ in 0..200 {
        let st = dp.send(GetStatus).await.unwrap();
        if f(&st) {
            return st;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "status not reached in 4 s: {:?}",
        dp.send(GetStatus).await.unwrap()
    );
}

fn changed(vs: &str, t: &Table, version: u64) -> Desired {
    Desired::Changed {
        vs: vs.into(),
        services: t.iter().map(|(k, s)| (*k, s.clone())).collect::<Vec<_>>().into(),
        version,
    }
}

#[actix_rt::test]
async fn sync_converges_and_reports_the_applied_version() {
    let (fake, log, dp) = started(Shared::default());
    let want = table(3);
    dp.do_send(changed("web", &want, 4));
    dp.do_send(Desired::Settled { version: 4 });
    until(|| fake.0.lock().unwrap().table == want).await;
    let st = status_until(&dp, |s| s.applied_version == Some(4)).await;
    assert!(st.in_sync && st.gaps.is_empty(), "{st:?}");
    // 3 services x (1 + 4 destinations), whatever the batching of the two messages.
    let total: usize = log.lock().unwrap().iter().map(|e| e.ops).sum();
    assert_eq!(total, 15);

    // The virtual server leaves: its services are deleted (one op each).
    dp.do_send(Desired::Changed {
        vs: "web".into(),
        services: Vec::new().into(),
        version: 5,
    });
    dp.do_send(Desired::Settled { version: 5 });
    let before = log.lock().unwrap().len();
    until(|| fake.0.lock().unwrap().table.is_empty()).await;
    until(|| log.lock().unwrap().iter().any(|e| e.version == Some(5))).await;
    let ops: usize = log.lock().unwrap()[before..].iter().map(|e| e.ops).sum();
    assert_eq!(ops, 3);
    // A new version's changes are applied in one sync, labelled with that version.
    assert!(log.lock().unwrap()[before..].iter().all(|e| e.version == Some(5)));
    status_until(&dp, |s| s.applied_version == Some(5)).await;
}

#[actix_rt::test]
async fn a_refused_service_leaves_the_rest_applied_and_holds_the_version() {
    let fake = Shared::default();
    fake.0.lock().unwrap().refused_schedulers = vec!["mh".into()];
    let (fake, log, dp) = started(fake);
    let mut want = table(2);
    want.insert(key(3), service("mh", &[(1, 1)]));
    dp.do_send(changed("web", &want, 1));
    dp.do_send(Desired::Settled { version: 1 });
    until(|| fake.0.lock().unwrap().table.len() == 2).await;
    let st = dp.send(GetStatus).await.unwrap();
    assert_eq!(st.applied_version, None);
    assert!(!st.in_sync);
    assert!(
        st.gaps
            .iter()
            .any(|(op, err)| op.contains("198.18.1.3:80") && err.contains("scheduler mh")),
        "{:?}",
        st.gaps
    );
    // The error names the kernel's reason in the event too.
    until(|| {
        log.lock().unwrap().iter().any(|e| {
            e.errors
                .iter()
                .any(|(_, e)| e.contains("No such file or directory"))
        })
    })
    .await;
    // Once the kernel accepts the scheduler, a retry completes the table.
    fake.0.lock().unwrap().refused_schedulers.clear();
    until(|| fake.0.lock().unwrap().table == want).await;
    let st = status_until(&dp, |s| s.applied_version == Some(1)).await;
    assert!(st.gaps.is_empty() && st.in_sync);
}

#[actix_rt::test]
async fn drift_is_repaired_and_named() {
    let (fake, log, dp) = started(Shared::default());
    let want = table(2);
    dp.do_send(changed("web", &want, 1));
    dp.do_send(Desired::Settled { version: 1 });
    until(|| fake.0.lock().unwrap().table == want).await;
    // Someone runs `ipvsadm -d -t 198.18.1.2:80 -r 198.18.2.3:80`.
    fake.0
        .lock()
        .unwrap()
        .table
        .get_mut(&key(2))
        .unwrap()
        .dests
        .remove(&dest(3));
    until(|| fake.0.lock().unwrap().table == want).await;
    until(|| {
        log.lock()
            .unwrap()
            .iter()
            .any(|e| e.repaired.iter().any(|r| r.contains("198.18.2.3:80")))
    })
    .await;
    // And `ipvsadm -C`.
    fake.0.lock().unwrap().table.clear();
    until(|| fake.0.lock().unwrap().table == want).await;
    until(|| {
        log.lock()
            .unwrap()
            .iter()
            .filter(|e| !e.repaired.is_empty())
            .count()
            >= 2
    })
    .await;
}

#[actix_rt::test]
async fn a_restarted_director_keeps_the_kernel_table_until_it_knows_the_config() {
    let fake = Shared::default();
    fake.0.lock().unwrap().table = table(2);
    let dp = DataPlane::new(Box::new(fake.clone()), vec![])
        .with_timing(fast())
        .start();
    // Reconcile ticks pass; without a complete desired table nothing is touched.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(fake.0.lock().unwrap().table, table(2));
    assert!(fake.0.lock().unwrap().log.is_empty());
    // Half a version (its Settled not yet in): still nothing.
    dp.do_send(changed("web", &table(1), 3));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(fake.0.lock().unwrap().log.is_empty());
    dp.do_send(Desired::Settled { version: 3 });
    until(|| fake.0.lock().unwrap().table == table(1)).await;
    assert_eq!(
        fake.0.lock().unwrap().log.len(),
        1,
        "only the service that left is deleted"
    );
}

/// A small deterministic generator (the test's seed is printed on failure).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The table the virtual servers' services make, computed from scratch: a service that
/// two virtual servers name is the last one's (by name).
fn from_scratch(by_vs: &std::collections::BTreeMap<String, Table>) -> Table {
    let mut t = Table::new();
    for services in by_vs.values() {
        for (k, s) in services {
            t.insert(*k, s.clone());
        }
    }
    t
}

#[actix_rt::test]
async fn random_changes_are_applied_by_their_keys_only_and_match_a_table_built_from_scratch() {
    let seed = 0x5eed_2026_1206u64;
    let mut rng = Rng(seed);
    // A slow reconcile: every sync below diffs only what changed.
    let fake = Shared::default();
    let log = Arc::new(Mutex::new(Vec::new()));
    let events = Events(log.clone()).start();
    let dp = DataPlane::new(Box::new(fake.clone()), vec![events.recipient()])
        .with_timing(SyncTiming {
            reconcile_every: Duration::from_secs(3600),
            ..fast()
        })
        .start();
    let mut by_vs: std::collections::BTreeMap<String, Table> = Default::default();
    let mut expected_ops = 0;
    let mut before = Table::new();
    for version in 1..=60u64 {
        // One to three virtual servers change; keys overlap between them at times.
        for _ in 0..=rng.below(3) {
            let vs = format!("vs{}", rng.below(12));
            let services: Table = if rng.below(5) == 0 {
                Table::new()
            } else {
                (0..=rng.below(3))
                    .map(|_| {
                        let dests: Vec<(u8, u32)> = (0..=rng.below(4))
                            .map(|_| (rng.below(6) as u8 + 1, rng.below(4) as u32 + 1))
                            .collect();
                        let sched = ["rr", "wrr", "sh"][rng.below(3) as usize];
                        (key(rng.below(30) as u8 + 1), service(sched, &dests))
                    })
                    .collect()
            };
            dp.do_send(changed(&vs, &services, version));
            if services.is_empty() {
                by_vs.remove(&vs);
            } else {
                by_vs.insert(vs, services);
            }
        }
        dp.do_send(Desired::Settled { version });
        let want = from_scratch(&by_vs);
        expected_ops += diff(&want, &before).len();
        before = want.clone();
        let st = status_until(&dp, |s| s.applied_version == Some(version) && s.in_sync).await;
        assert_eq!(
            fake.0.lock().unwrap().table,
            want,
            "seed {seed:#x}, version {version}: {st:?}"
        );
    }
    let ops: usize = log.lock().unwrap().iter().map(|e| e.ops).sum();
    assert_eq!(
        ops, expected_ops,
        "seed {seed:#x}: the syncs applied exactly the minimal diffs of the changes"
    );
}

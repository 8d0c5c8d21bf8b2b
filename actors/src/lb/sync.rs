//! The data-plane actor: owns the kernel's load-balancing table. It receives the desired
//! services of each virtual server (from the check hub), diffs them against what the
//! kernel holds and applies the ops, one sync at a time (changes that arrive meanwhile
//! are folded into the next sync). Periodically it re-reads the kernel and repairs drift.
//! Failed ops are retried with backoff; the applied config version only advances when a
//! sync of that version's table succeeded completely.
//!
//! The desired table is kept up to date per virtual server, and a sync diffs only the
//! services that changed since the last one against what the kernel holds: O(change). A
//! periodic reconcile (and the first sync) reads the whole kernel table and diffs it all.

use super::diff::{self, Op};
use super::kernel::{KernelError, KernelLb};
use super::model::{Service, SvcKey, Table};
use super::syncd::{Step, SyncDaemon};
use actix::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One virtual server's kernel services, shared between the check hub (what it last
/// published) and the data plane (what it holds per virtual server): one copy of each.
pub type VsServices = Arc<[(SvcKey, Service)]>;

/// News from the check hub.
#[derive(Clone, Debug, Message)]
#[rtype(result = "()")]
pub enum Desired {
    /// The services of one virtual server (empty: it has none, or it was removed), as of
    /// config `version`.
    Changed {
        vs: String,
        services: VsServices,
        version: u64,
    },
    /// Every virtual server of config `version` has been sent.
    Settled { version: u64 },
}

/// One sync, as an event for the node's journal.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Message)]
#[rtype(result = "()")]
pub struct SyncEvent {
    pub backend: String,
    /// The config version whose table this sync applied.
    pub version: Option<u64>,
    pub ops: usize,
    pub duration_us: u64,
    /// Ops the kernel refused, with its error.
    pub errors: Vec<(String, String)>,
    /// Differences found when re-reading the kernel (someone changed it behind us).
    pub repaired: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DataPlaneStatus {
    pub backend: String,
    /// The last config version whose table was applied without errors.
    pub applied_version: Option<u64>,
    /// The version whose table is wanted now.
    pub desired_version: Option<u64>,
    /// Whether the kernel equals the desired table (as of the last sync).
    pub in_sync: bool,
    /// Ops still refused by the kernel.
    pub gaps: Vec<(String, String)>,
    pub last: Option<SyncEvent>,
}

#[derive(Message)]
#[rtype(result = "DataPlaneStatus")]
pub struct GetStatus;

/// The desired table, and the kernel's own (read now).
#[derive(Message)]
#[rtype(result = "Result<(Table, Table), KernelError>")]
pub struct GetTables;

#[derive(Message)]
#[rtype(result = "()")]
struct SyncDone {
    report: Result<Outcome, KernelError>,
}

struct Outcome {
    after: Table,
    event: SyncEvent,
}

#[derive(Clone, Copy, Debug)]
pub struct SyncTiming {
    pub reconcile_every: Duration,
    pub retry_first: Duration,
    pub retry_max: Duration,
}

impl Default for SyncTiming {
    fn default() -> Self {
        SyncTiming {
            reconcile_every: Duration::from_secs(30),
            retry_first: Duration::from_millis(500),
            retry_max: Duration::from_secs(30),
        }
    }
}

pub struct DataPlane {
    kernel: Arc<Mutex<Box<dyn KernelLb>>>,
    backend: String,
    timing: SyncTiming,
    by_vs: BTreeMap<String, VsServices>,
    /// The desired table: each service as the last (by name) virtual server that has it.
    desired: Table,
    /// The virtual servers that have each service (one, unless the config repeats it),
    /// sorted, each once (a `Vec`: a set would allocate a node for eleven names).
    owners: HashMap<SvcKey, Vec<String>>,
    /// Services changed since the last sync took its work.
    dirty_keys: BTreeSet<SvcKey>,
    /// Diff the whole desired table against `believed` next time (after refused ops).
    full_diff: bool,
    /// The last sync applied every op and nothing changed since.
    clean: bool,
    desired_version: Option<u64>,
    /// A newer version whose changes are arriving (until its `Settled`).
    pending_version: Option<u64>,
    /// Version of the table being applied by the sync in flight.
    syncing_version: Option<u64>,
    applied_version: Option<u64>,
    /// What the kernel holds as far as we know (None: read it first).
    believed: Option<Table>,
    busy: bool,
    dirty: bool,
    reconcile_due: bool,
    retry: Option<Duration>,
    retry_handle: Option<SpawnHandle>,
    gaps: Vec<(String, String)>,
    last: Option<SyncEvent>,
    subscribers: Vec<Recipient<SyncEvent>>,
}

impl DataPlane {
    pub fn new(kernel: Box<dyn KernelLb>, subscribers: Vec<Recipient<SyncEvent>>) -> Self {
        Self::shared(Arc::new(Mutex::new(kernel)), subscribers)
    }

    /// A data plane over a kernel handle others also use between its syncs (the flow
    /// sync: [`super::flowsync`]).
    pub fn shared(kernel: super::flowsync::SharedKernel, subscribers: Vec<Recipient<SyncEvent>>) -> Self {
        let backend = match kernel.lock() {
            Ok(k) => k.backend().to_string(),
            Err(p) => p.into_inner().backend().to_string(),
        };
        DataPlane {
            kernel,
            backend,
            timing: SyncTiming::default(),
            by_vs: BTreeMap::new(),
            desired: Table::new(),
            owners: HashMap::new(),
            dirty_keys: BTreeSet::new(),
            full_diff: false,
            clean: false,
            desired_version: None,
            pending_version: None,
            syncing_version: None,
            applied_version: None,
            believed: None,
            busy: false,
            dirty: false,
            reconcile_due: false,
            retry: None,
            retry_handle: None,
            gaps: Vec::new(),
            last: None,
            subscribers,
        }
    }

    pub fn with_timing(mut self, timing: SyncTiming) -> Self {
        self.timing = timing;
        self
    }

    /// Records virtual server `vs`'s new services and updates the desired table where
    /// they (and the ones it had) are: O(its services).
    fn set_services(&mut self, vs: String, services: VsServices) {
        let old = if services.is_empty() {
            self.by_vs.remove(&vs)
        } else {
            self.by_vs.insert(vs.clone(), services)
        };
        let mut keys: BTreeSet<SvcKey> = BTreeSet::new();
        for (k, _) in old.iter().flat_map(|o| o.iter()) {
            if let Some(o) = self.owners.get_mut(k) {
                o.retain(|x| *x != vs);
            }
            keys.insert(*k);
        }
        for (k, _) in self.by_vs.get(&vs).into_iter().flat_map(|o| o.iter()) {
            let o = self.owners.entry(*k).or_default();
            if let Err(i) = o.binary_search(&vs) {
                o.insert(i, vs.clone());
            }
            keys.insert(*k);
        }
        for k in keys {
            let owner = self.owners.get(&k).and_then(|o| o.last());
            let service = owner
                .and_then(|o| self.by_vs.get(o))
                .and_then(|svcs| svcs.iter().find(|(key, _)| *key == k))
                .map(|(_, s)| s.clone());
            match service {
                Some(s) => {
                    self.desired.insert(k, s);
                }
                None => {
                    self.owners.remove(&k);
                    self.desired.remove(&k);
                }
            }
            self.dirty_keys.insert(k);
        }
    }

    fn kick(&mut self, ctx: &mut Context<Self>) {
        if self.busy || !(self.dirty || self.reconcile_due) {
            return;
        }
        // Nothing is known before the first complete table (a restarted director keeps the
        // kernel's table until then), and a new version's changes are applied together,
        // once all of them have arrived.
        if self.desired_version.is_none() || self.pending_version.is_some() {
            return;
        }
        self.busy = true;
        self.clean = false;
        let reconcile = self.reconcile_due || self.believed.is_none();
        self.dirty = false;
        self.reconcile_due = false;
        let keys = std::mem::take(&mut self.dirty_keys);
        let work = if reconcile || std::mem::take(&mut self.full_diff) {
            Work::Whole(self.desired.clone())
        } else {
            let part = keys
                .iter()
                .filter_map(|k| self.desired.get(k).map(|s| (*k, s.clone())))
                .collect();
            Work::Part(part, keys)
        };
        // Moved to the sync and back with its outcome (not copied).
        let believed = self.believed.take();
        let kernel = self.kernel.clone();
        let backend = self.backend.clone();
        let version = self.desired_version;
        self.syncing_version = version;
        let addr = ctx.address();
        tokio::task::spawn_blocking(move || {
            let report = sync_once(&kernel, &backend, version, work, believed, reconcile);
            addr.do_send(SyncDone { report });
        });
    }
}

/// What one sync diffs: the whole desired table, or the desired state of some services.
enum Work {
    Whole(Table),
    /// The services of these keys as desired (a key absent from the table: not wanted).
    Part(Table, BTreeSet<SvcKey>),
}

/// Diffs and applies. With `reconcile` (or nothing known yet) the kernel is read first,
/// and what differs from what we last knew it held is reported as repaired.
fn sync_once(
    kernel: &Mutex<Box<dyn KernelLb>>,
    backend: &str,
    version: Option<u64>,
    work: Work,
    believed: Option<Table>,
    reconcile: bool,
) -> Result<Outcome, KernelError> {
    let started = Instant::now();
    let mut k = kernel
        .lock()
        .map_err(|_| KernelError::other("kernel handle poisoned"))?;
    let (mut actual, repaired) = match believed {
        Some(t) if !reconcile => (t, Vec::new()),
        previous => {
            let t = k.dump()?;
            // The ops that would turn the kernel back into what we knew it held.
            let repaired = previous
                .map(|p| diff::diff(&p, &t).iter().map(Op::to_string).collect())
                .unwrap_or_default();
            (t, repaired)
        }
    };
    let ops = match &work {
        Work::Whole(desired) => diff::diff(desired, &actual),
        Work::Part(desired, keys) => {
            let held: Table = keys
                .iter()
                .filter_map(|k| actual.get(k).map(|s| (*k, s.clone())))
                .collect();
            diff::diff(desired, &held)
        }
    };
    let results = k.apply(&ops);
    let mut errors = Vec::new();
    for (op, r) in ops.iter().zip(&results) {
        match r {
            Ok(()) => diff::apply(&mut actual, op),
            Err(e) => errors.push((op.to_string(), e.to_string())),
        }
    }
    Ok(Outcome {
        after: actual,
        event: SyncEvent {
            backend: backend.to_string(),
            version,
            ops: ops.len(),
            duration_us: started.elapsed().as_micros() as u64,
            errors,
            repaired,
        },
    })
}

impl Actor for DataPlane {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        tracing::info!(backend = %self.backend, "data plane started");
        self.reconcile_due = true;
        self.kick(ctx);
        ctx.run_interval(self.timing.reconcile_every, |act, ctx| {
            act.reconcile_due = true;
            act.kick(ctx);
        });
    }
}

impl Handler<Desired> for DataPlane {
    type Result = ();

    fn handle(&mut self, msg: Desired, ctx: &mut Context<Self>) {
        match msg {
            Desired::Changed {
                vs,
                services,
                version,
            } => {
                if self.desired_version.map(|d| version > d).unwrap_or(true) {
                    self.pending_version = Some(version);
                }
                self.set_services(vs, services);
            }
            Desired::Settled { version } => {
                self.desired_version = Some(version);
                if self.pending_version.map(|p| p <= version).unwrap_or(false) {
                    self.pending_version = None;
                }
            }
        }
        self.dirty = true;
        self.clean = false;
        self.kick(ctx);
    }
}

impl Handler<SyncDone> for DataPlane {
    type Result = ();

    fn handle(&mut self, done: SyncDone, ctx: &mut Context<Self>) {
        self.busy = false;
        match done.report {
            Ok(out) => {
                let ok = out.event.errors.is_empty();
                if ok {
                    self.applied_version = self.syncing_version.or(self.applied_version);
                    self.retry = None;
                    self.clean = !self.dirty;
                } else {
                    // The refused ops' services are diffed again with the next sync.
                    self.full_diff = true;
                    let next = self
                        .retry
                        .map(|d| (d * 2).min(self.timing.retry_max))
                        .unwrap_or(self.timing.retry_first);
                    self.retry = Some(next);
                    if let Some(h) = self.retry_handle.take() {
                        ctx.cancel_future(h);
                    }
                    self.retry_handle = Some(ctx.run_later(next, |act, ctx| {
                        act.retry_handle = None;
                        act.dirty = true;
                        act.kick(ctx);
                    }));
                }
                let e = &out.event;
                let new_version = self.last.as_ref().map(|l| l.version) != Some(e.version);
                if e.ops > 0 || !e.errors.is_empty() || !e.repaired.is_empty() || new_version {
                    tracing::info!(backend = %e.backend, version = ?e.version, ops = e.ops,
                        errors = e.errors.len(), repaired = e.repaired.len(),
                        us = e.duration_us, "table synced");
                    for (op, err) in &e.errors {
                        tracing::warn!(backend = %e.backend, %op, "kernel refused: {err}");
                    }
                    for r in &e.repaired {
                        tracing::warn!(backend = %e.backend, "drift repaired: {r}");
                    }
                    for s in &self.subscribers {
                        s.do_send(e.clone());
                    }
                }
                self.gaps = e.errors.clone();
                self.last = Some(out.event.clone());
                self.believed = Some(out.after);
            }
            Err(e) => {
                tracing::error!(backend = %self.backend, "sync failed: {e}");
                // Read the kernel again and diff everything with the next sync.
                self.believed = None;
                self.dirty = true;
                let next = self
                    .retry
                    .map(|d| (d * 2).min(self.timing.retry_max))
                    .unwrap_or(self.timing.retry_first);
                self.retry = Some(next);
                ctx.run_later(next, |act, ctx| act.kick(ctx));
            }
        }
        self.kick(ctx);
    }
}

impl Handler<GetStatus> for DataPlane {
    type Result = MessageResult<GetStatus>;

    fn handle(&mut self, _: GetStatus, _ctx: &mut Context<Self>) -> Self::Result {
        let in_sync = !self.busy && !self.dirty && self.gaps.is_empty() && self.clean;
        MessageResult(DataPlaneStatus {
            backend: self.backend.clone(),
            applied_version: self.applied_version,
            desired_version: self.desired_version,
            in_sync,
            gaps: self.gaps.clone(),
            last: self.last.clone(),
        })
    }
}

impl Handler<GetTables> for DataPlane {
    type Result = ResponseFuture<Result<(Table, Table), KernelError>>;

    fn handle(&mut self, _: GetTables, _ctx: &mut Context<Self>) -> Self::Result {
        let desired = self.desired.clone();
        let kernel = self.kernel.clone();
        Box::pin(async move {
            let actual = tokio::task::spawn_blocking(move || {
                kernel
                    .lock()
                    .map_err(|_| KernelError::other("kernel handle poisoned"))?
                    .dump()
            })
            .await
            .map_err(|e| KernelError::other(format!("dump task: {e}")))??;
            Ok((desired, actual))
        })
    }
}

/// Runs the connection sync daemon `0` and no other (None: stops them all): answers the
/// steps taken. Handled one at a time, in order (the mailbox waits for the kernel).
#[derive(Message)]
#[rtype(result = "Result<Vec<Step>, KernelError>")]
pub struct SetSyncDaemon(pub Option<SyncDaemon>);

impl Handler<SetSyncDaemon> for DataPlane {
    type Result = AtomicResponse<Self, Result<Vec<Step>, KernelError>>;

    fn handle(&mut self, SetSyncDaemon(want): SetSyncDaemon, _ctx: &mut Context<Self>) -> Self::Result {
        let kernel = self.kernel.clone();
        AtomicResponse::new(Box::pin(
            async move {
                tokio::task::spawn_blocking(move || {
                    kernel
                        .lock()
                        .map_err(|_| KernelError::other("kernel handle poisoned"))?
                        .sync_daemon(want.as_ref())
                })
                .await
                .map_err(|e| KernelError::other(format!("sync daemon task: {e}")))?
            }
            .into_actor(self),
        ))
    }
}

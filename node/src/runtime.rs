//! The director's actors, driven by the committed configuration. The flow is one way:
//! Raft state machine -> this director's view of the config -> VRRP instances, checkers,
//! data plane -> kernel. They run in their own actix System on a dedicated thread; the
//! control plane (tokio) hands each newly applied config version over.
//!
//! The config fence: an instance may leave BACKUP for MASTER only while the data plane
//! has applied the committed version this director knows, so the VIP never lands on a
//! box whose table is stale. Cut off from the Raft majority, a director cannot know
//! whether its version is current: it lifts the fence (the VIP must not be lost) and
//! says so in its status (`stale-config`).

use crate::director::DirectorNode;
use ::actors::check::actor::CheckEvent;
use ::actors::check::hub::GetRealServers;
use ::actors::check::runner::Checks;
use ::actors::lb::backend::Choice;
use ::actors::lb::sync::{DataPlane, DataPlaneStatus, SetSyncDaemon, SyncEvent};
use ::actors::lb::syncd::{Step, SyncDaemon};
use ::actors::vrrp::actor::{SetFence, VrrpEvent};
use ::actors::vrrp::runner::Running;
use actix::prelude::*;
use ha_config::api::EventDetail;
use ha_config::api::{DataPlaneInfo, InstanceInfo, PeerInfo, RuntimeStatus};
use ha_config::keyed::{assemble, Item, Key};
use ha_config::model::Config;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct RuntimeOptions {
    pub backend: Choice,
    /// Devices DR traffic arrives on (nftables), besides those toward real servers.
    pub ingress: BTreeSet<String>,
    /// Without a Raft leader for this long, the fence no longer holds (stale-config).
    pub cutoff_after: Duration,
    /// Test hook: start with the data plane held at this version.
    pub hold: Option<u64>,
    /// The quorum gate: on, off, or None (automatic: on with three voters or more).
    pub quorum_gate: Option<bool>,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        RuntimeOptions {
            backend: Choice::Auto,
            ingress: BTreeSet::new(),
            cutoff_after: Duration::from_secs(3),
            hold: None,
            quorum_gate: None,
        }
    }
}

/// A handle on the running actors (cheap to clone, usable from any thread).
#[derive(Clone)]
pub struct Runtime {
    addr: Addr<Director>,
    flows: FlowWiring,
}

/// What links the data plane's flow sync to the cluster transport: the running flow sync
/// (set once the kernel is open, when its backend syncs flows), the queue of learned flows
/// to send and the sender's counters.
#[derive(Clone)]
struct FlowWiring {
    sync: Arc<std::sync::OnceLock<::actors::lb::flowsync::FlowSync>>,
    /// Requests to catch up with what other directors forward: id, from whom (None:
    /// every peer), what.
    catch_up: tokio::sync::mpsc::Sender<(u64, Option<String>, CatchUp)>,
    learned: tokio::sync::mpsc::Sender<Vec<::actors::lb::flows::FlowRecord>>,
    sent: Arc<crate::flow_sync::SendStats>,
    /// One dump of the flow maps at a time (they are read under the kernel handle).
    dumping: Arc<tokio::sync::Semaphore>,
}

/// What a director catches up with before its fence lets it claim MASTER.
#[derive(Clone, Copy, Debug)]
enum CatchUp {
    /// The flows other directors pin (nftables); `replace`: theirs replace this
    /// director's own pins.
    Flows { replace: bool },
    /// The connections forwarding directors hold, delivered by the kernel's sync
    /// daemon (IPVS with `lvs_sync_daemon`).
    IpvsConns,
}

impl CatchUp {
    /// The longest it holds the config fence.
    fn limit(self) -> Duration {
        match self {
            CatchUp::Flows { .. } => CATCH_UP_LIMIT,
            CatchUp::IpvsConns => crate::ipvs_catch_up::LIMIT,
        }
    }

    fn what(self) -> &'static str {
        match self {
            CatchUp::Flows { .. } => "flows",
            CatchUp::IpvsConns => "IPVS connections",
        }
    }
}

/// A round of the quorum gate's probes.
#[derive(Message)]
#[rtype(result = "()")]
struct QuorumRound(crate::quorum::Round);

/// Whether this director's kernel is IPVS and which VRRP instances it is MASTER of
/// (for `GET /cluster/ipvs-conns`).
#[derive(Message)]
#[rtype(result = "(bool, bool)")]
struct GetForwarding;

#[derive(Message)]
#[rtype(result = "()")]
struct ApplyConfig {
    version: u64,
    change: ViewChange,
}

/// How this director's view of the configuration changes with a committed version.
enum ViewChange {
    /// The whole view (the first version this process sees).
    Whole(BTreeMap<Key, Item>),
    /// The keys whose item in this view changed, with the new item (`None`: gone).
    Keys(Vec<(Key, Option<Item>)>),
}

#[derive(Message)]
#[rtype(result = "()")]
struct RaftHealth {
    has_leader: bool,
    /// Why this director's store takes no writes, while it does not.
    store_failed: Option<String>,
}

#[derive(Message)]
#[rtype(result = "RuntimeStatus")]
struct GetRuntimeStatus;

#[derive(Message)]
#[rtype(result = "()")]
struct HoldTable(Option<u64>);

/// What the peer-liveness watch learnt of another director.
#[derive(Message)]
#[rtype(result = "()")]
struct PeerLiveness {
    name: String,
    addr: String,
    change: crate::liveness::Change,
    /// Its VRRP addresses (from the committed config and membership), for a death.
    vrrp_addrs: Vec<IpAddr>,
}

/// The peers being watched now (members left are dropped from status).
#[derive(Message)]
#[rtype(result = "()")]
struct Watched(BTreeSet<String>);

#[derive(Message)]
#[rtype(result = "()")]
struct Shutdown;

type Tables = Result<(::actors::lb::model::Table, ::actors::lb::model::Table), String>;

#[derive(Message)]
#[rtype(result = "(String, Option<u64>, Tables)")]
struct GetTables;

struct Director {
    name: String,
    flows: FlowWiring,
    /// Catch-ups in flight (by request id: what, from whom, since when): the config
    /// fence holds meanwhile, for at most the catch-up's limit.
    catching_up: BTreeMap<u64, (CatchUp, String, Instant)>,
    next_catch_up: u64,
    /// The VRRP instances that are MASTER here now.
    masters: BTreeSet<String>,
    /// The quorum gate: contact with a majority of the voters (times since `started`).
    gate: ::actors::vrrp::quorum::Gate,
    started: Instant,
    /// What the gate says, for status.
    gate_text: String,
    /// Probe rounds judged so far (contact is assumed for one release time from the first:
    /// connections to the others are still being made).
    gate_rounds: u64,
    /// The IPVS sync daemon last asked of the data plane (`lvs_sync_daemon`); None:
    /// not known (at start, or a request failed), so the next update asks again.
    sync_daemon: Option<Option<SyncDaemon>>,
    /// Shutting down: the sync daemon stops, no transition starts one again.
    stopping: bool,
    /// Said once: `lvs_sync_daemon` has no effect on this backend.
    sync_daemon_ignored: bool,
    journal: crate::journal::JournalWriter,
    options: RuntimeOptions,
    dataplane: Option<Addr<DataPlane>>,
    backend: String,
    checks: Option<Checks>,
    vrrp: Option<Running>,
    /// The VRRP part of the config the instances run.
    vrrp_config: Option<Config>,
    /// The latest committed version this director knows.
    committed: Option<u64>,
    /// This director's view of that version, by key.
    view: BTreeMap<Key, Item>,
    /// Keys changed since the checkers were last fed (`None`: feed them everything).
    unfed: Option<BTreeSet<Key>>,
    /// The version handed to the checkers (and so to the data plane).
    fed: Option<u64>,
    /// Test hook: do not feed versions above this one.
    hold: Option<u64>,
    applied: Option<u64>,
    dp_status: Option<DataPlaneStatus>,
    leaderless_since: Option<Instant>,
    /// Why this director's store failed (Raft stopped here), while it is so.
    store_failed: Option<String>,
    fence_held: bool,
    errors: Vec<String>,
    /// What is wrong with the scripts the applied config names, here (missing, not
    /// executable, unsafe under `enable_script_security`).
    script_problems: BTreeMap<Key, Vec<String>>,
    /// The other directors' liveness, by name.
    peers: BTreeMap<String, PeerInfo>,
    counters: Counters,
}

/// Counters of what the actors did since this director started (for `/metrics`).
#[derive(Clone, Debug, Default)]
pub struct Counters {
    /// VRRP transitions by instance.
    pub transitions: BTreeMap<String, u64>,
    /// Takeovers by the fast path (a peer's death signal), by instance.
    pub fast_takeovers: BTreeMap<String, u64>,
    /// Checker transitions by checker (`VIP:PORT RS:PORT KIND#N`).
    pub check_transitions: BTreeMap<String, u64>,
    pub syncs: u64,
    /// Syncs with at least one refused op.
    pub sync_errors: u64,
    pub sync_ops: u64,
    /// Drift repaired (ops that put back what someone changed in the kernel).
    pub drift_repairs: u64,
    pub sync_duration: crate::metrics::Histogram,
    /// Death signals received from the peer-liveness watch.
    pub death_signals: u64,
    /// Probes started, stopped and retargeted by configuration changes.
    pub probes_started: u64,
    pub probes_stopped: u64,
    pub probes_retargeted: u64,
    /// Catch-ups of other directors' flows that did not complete (a peer could not be
    /// asked in time, or its flows could not be pinned).
    pub flow_catch_up_failures: u64,
}

type MetricsReply = (Counters, Vec<::actors::vrrp::actor::InstanceStatus>);

#[derive(Message)]
#[rtype(result = "MetricsReply")]
struct GetMetrics;
impl Director {
    fn record(&self, kind: &str, subject: &str, summary: &str) {
        self.journal.record(kind, subject, summary, None);
    }

    /// Records an event with its content in fields (what replay folds).
    fn record_detail(&self, kind: &str, subject: &str, summary: &str, detail: EventDetail) {
        self.journal.record(kind, subject, summary, Some(detail));
    }

    fn fence_state(&self) -> (bool, String) {
        // Raft is stopped here: what the cluster committed meanwhile is unknown. A MASTER
        // keeps the VIP and its table; a BACKUP does not claim with a table maybe behind.
        if let Some(cause) = &self.store_failed {
            return (true, format!("held (store failed: {cause})"));
        }
        let Some(committed) = &self.committed else {
            return (false, "open".into());
        };
        let cut_off = self
            .leaderless_since
            .map(|t| t.elapsed() >= self.options.cutoff_after)
            .unwrap_or(false);
        if self.applied == Some(*committed) {
            let pulling: Vec<String> = self
                .catching_up
                .values()
                .filter(|(what, _, since)| since.elapsed() < what.limit())
                .map(|(what, from, _)| format!("{} from {from}", what.what()))
                .collect();
            if !pulling.is_empty() {
                return (true, format!("held (catching up {})", pulling.join(", ")));
            }
            return (false, "open".into());
        }
        let table = self
            .applied
            .map(|v| v.to_string())
            .unwrap_or_else(|| "none".into());
        if cut_off {
            (false, format!("stale-config (version {table}, cluster unknown)"))
        } else {
            (true, format!("held (table at {table}, config at {committed})"))
        }
    }

    fn update_fence(&mut self) {
        let (held, text) = self.fence_state();
        if held != self.fence_held {
            tracing::info!(director = %self.name, fence = %text, "config fence {}", if held { "held" } else { "lifted" });
            self.record_detail(
                "fence",
                "config fence",
                &text,
                EventDetail::Fence {
                    held,
                    state: text.clone(),
                },
            );
            self.fence_held = held;
            if let Some(v) = &self.vrrp {
                for i in &v.instances {
                    i.do_send(SetFence(held));
                }
            }
        }
    }

    /// The VRRP part of the view: global settings, tracked scripts, files and processes,
    /// sync groups, instances.
    fn vrrp_part(&self) -> Config {
        let mut c = assemble(self.view.iter().filter(|(k, _)| is_vrrp_key(k)).map(|(_, i)| i));
        c.extra.clear();
        c
    }

    /// Feeds the checkers (and through them the data plane) the committed version,
    /// unless held by the test hook. Only the virtual servers changed since the last feed
    /// are handed over, unless the global settings, a group or a track_file changed.
    fn feed(&mut self, ctx: &mut Context<Self>) {
        let Some(version) = self.committed else {
            return;
        };
        if self.hold.map(|h| version > h).unwrap_or(false) || self.fed == Some(version) {
            return;
        }
        let Some(dp) = &self.dataplane else { return };
        let unfed = self.unfed.replace(BTreeSet::new());
        let whole = match &unfed {
            None => true,
            // FILE_CHECKs read the track_file definitions.
            Some(keys) => keys
                .iter()
                .any(|k| matches!(k, Key::Global | Key::VsGroup(_) | Key::TrackFile(_))),
        };
        let (checks, probes) = match &mut self.checks {
            Some(c) if !whole => {
                let changes: Vec<(String, Option<std::sync::Arc<::ha_config::model::VirtualServer>>)> = unfed
                    .iter()
                    .flatten()
                    .filter_map(|k| match k {
                        Key::VirtualServer(vk) => Some((
                            vk.to_string(),
                            match self.view.get(k) {
                                Some(Item::VirtualServer(vs)) => Some(vs.clone()),
                                _ => None,
                            },
                        )),
                        _ => None,
                    })
                    .collect();
                let probes = c.update(changes, version);
                (c, probes)
            }
            Some(c) => {
                let probes = c.reconfigure(&assemble(self.view.values()), version);
                (c, probes)
            }
            None => {
                let c = self.checks.insert(::actors::check::runner::start_with(
                    &assemble(self.view.values()),
                    version,
                    vec![dp.clone().recipient()],
                    Some(ctx.address().recipient()),
                ));
                let running = c.checkers.len();
                (
                    c,
                    ::actors::check::runner::ProbeChanges {
                        started: running,
                        running,
                        ..Default::default()
                    },
                )
            }
        };
        tracing::info!(director = %self.name, version, started = probes.started, stopped = probes.stopped,
            retargeted = probes.retargeted, running = probes.running, "checkers on version {version}: {probes}");
        let c = &mut self.counters;
        c.probes_started += probes.started as u64;
        c.probes_stopped += probes.stopped as u64;
        c.probes_retargeted += probes.retargeted as u64;
        let unstarted: Vec<(String, String, String)> = checks
            .unstarted
            .iter()
            .map(|id| (id.vs.to_string(), id.rs.to_string(), id.checker.to_string()))
            .collect();
        let summary = match unstarted.len() {
            0 => format!("version {version}: checkers and data plane on it (probes: {probes})"),
            n => format!(
                "version {version}: checkers and data plane on it (probes: {probes}); {n} checker(s) could not start"
            ),
        };
        self.record_detail(
            "apply",
            "config",
            &summary,
            EventDetail::Applied { version, unstarted },
        );
        self.fed = Some(version);
    }

    /// Brings the VRRP instances to the committed config: instances whose configuration
    /// changed or went are stopped (gracefully), new and changed ones started; the others
    /// keep running with their state.
    fn reconfigure_vrrp(&mut self, ctx: &mut Context<Self>) {
        let part = self.vrrp_part();
        if self.vrrp_config.as_ref() == Some(&part) {
            return;
        }
        self.vrrp_config = Some(part.clone());
        let mut running = self.vrrp.take().unwrap_or_default();
        let stale = match running.take_stale(&part) {
            Ok(s) => s,
            Err(e) => {
                // The new config cannot run here: keep what runs.
                tracing::error!(director = %self.name, "VRRP: {e}");
                self.errors.push(format!("VRRP: {e}"));
                self.record("vrrp", "VRRP reconfiguration refused", &e.to_string());
                self.vrrp = Some(running);
                return;
            }
        };
        let (stopped, addrs): (Vec<String>, Vec<_>) = stale.into_iter().unzip();
        let fut = async move {
            ::actors::vrrp::runner::stop_instances(&addrs).await;
            running
        };
        ctx.wait(fut.into_actor(self).map(move |mut running, act, ctx| {
            let events = ctx.address().recipient();
            let fence = act.fence_state().0;
            act.fence_held = fence;
            let kept: Vec<String> = running.names();
            // The fence applies to the instances kept as well.
            for i in &running.instances {
                i.do_send(SetFence(fence));
            }
            running.quorum = ::actors::vrrp::runner::QuorumVerdict(act.gate.in_contact());
            let result = running.start_missing(&part, Some(events), fence);
            // The gate's verdict may have changed while the instances were out of reach
            // (being reconfigured): every one gets the current one (the same is a no-op).
            for i in &running.instances {
                i.do_send(::actors::vrrp::actor::SetQuorum(act.gate.in_contact()));
            }
            let started = match &result {
                Ok(s) => s.clone(),
                Err(_) => Vec::new(),
            };
            let text = format!(
                "kept {}, started {}, stopped {}",
                list(&kept),
                list(&started),
                list(&stopped)
            );
            tracing::info!(director = %act.name, kept = kept.len(), started = started.len(), stopped = stopped.len(), "VRRP reconfigured: {text}");
            act.record_detail(
                "vrrp",
                "VRRP reconfigured",
                &text,
                EventDetail::VrrpReconfigured {
                    kept: kept.clone(),
                    started: started.clone(),
                    stopped: stopped.clone(),
                },
            );
            if let Err(e) = result {
                tracing::error!(director = %act.name, "VRRP: {e}");
                act.errors.push(format!("VRRP: {e}"));
                act.record("vrrp", "VRRP instance failed to start", &e.to_string());
                // Try again with the next config change.
                act.vrrp_config = None;
            }
            act.vrrp = Some(running);
        }));
    }
}

impl Director {
    /// The IPVS sync daemon `lvs_sync_daemon` wants now: master while the instance it
    /// follows is MASTER here, else backup; its sync id by default the instance's
    /// `virtual_router_id` (keepalived's default).
    fn wanted_sync_daemon(&self) -> Option<SyncDaemon> {
        let Some(Item::Global { defs, .. }) = self.view.get(&Key::Global) else {
            return None;
        };
        let l = defs.lvs_sync_daemon.as_ref()?;
        let vrid = match self.view.get(&Key::Instance(l.instance.clone())) {
            Some(Item::Instance(i)) => Some(i.virtual_router_id),
            _ => None,
        };
        ::actors::lb::syncd::wanted(l, vrid, self.masters.contains(&l.instance))
    }

    /// Asks the data plane for the sync daemon wanted now, if that changed (IPVS only:
    /// the nftables backend syncs its flows itself).
    fn update_sync_daemon(&mut self, ctx: &mut Context<Self>) {
        if self.stopping {
            return;
        }
        let want = self.wanted_sync_daemon();
        if self.backend != "ipvs" {
            if want.is_some() && !self.sync_daemon_ignored {
                self.sync_daemon_ignored = true;
                tracing::info!(director = %self.name, backend = %self.backend,
                    "lvs_sync_daemon: no IPVS here; the {} backend syncs connections itself (flow sync)", self.backend);
            }
            return;
        }
        if self.sync_daemon.as_ref() == Some(&want) {
            return;
        }
        let Some(dp) = self.dataplane.clone() else { return };
        self.sync_daemon = Some(want.clone());
        // The VRRP instance it follows, for the log lines.
        let instance = match self.view.get(&Key::Global) {
            Some(Item::Global { defs, .. }) => defs.lvs_sync_daemon.as_ref().map(|l| l.instance.clone()),
            _ => None,
        }
        .unwrap_or_default();
        dp.send(SetSyncDaemon(want))
            .into_actor(self)
            .map(move |r, act, _| {
                let r = r
                    .map_err(|e| ::actors::lb::kernel::KernelError::other(e.to_string()))
                    .and_then(|r| r);
                match r {
                    Ok(steps) => {
                        for s in steps {
                            match s {
                                Step::Stop(role) => tracing::info!(director = %act.name, %instance,
                                    role = role.name(), "IPVS sync daemon stopped"),
                                Step::Start(role, spec) => tracing::info!(director = %act.name, %instance,
                                    role = role.name(), interface = %spec.interface, sync_id = spec.sync_id,
                                    "IPVS sync daemon started"),
                            }
                        }
                    }
                    Err(e) => {
                        tracing::warn!(director = %act.name, %instance, "lvs_sync_daemon: {e}");
                        act.errors.push(format!("lvs_sync_daemon: {e}"));
                        // Not known now: asked again with the next change.
                        act.sync_daemon = None;
                    }
                }
            })
            // Not `wait`: the data plane may be busy with a long sync, and VRRP events
            // must not queue behind it; its mailbox keeps the requests in order.
            .spawn(ctx);
    }

    /// Checks every script the changed `keys` (and the keys reported before) name on this
    /// director (each director checks its own files: a proposal is valid everywhere only
    /// if every director says so) and
    /// reports each problem once per config version, as a log line and an event. `None`:
    /// every key (the global settings decide how every script runs).
    fn vet_scripts(&mut self, version: u64, keys: Option<Vec<Key>>) {
        let global = match self.view.get(&Key::Global) {
            Some(Item::Global { defs, .. }) => (**defs).clone(),
            _ => Default::default(),
        };
        ::actors::script::set_security(global.enable_script_security);
        let keys: BTreeSet<Key> = match keys {
            // The changed keys, and those whose scripts were refused before: a script
            // fixed on disk clears its report with the next version, changed or not.
            Some(k) => k
                .into_iter()
                .chain(self.script_problems.keys().cloned())
                .collect(),
            None => {
                self.script_problems.clear();
                self.view.keys().cloned().collect()
            }
        };
        let mut problems = Vec::new();
        for k in keys {
            let found = match self.view.get(&k) {
                Some(item) => ::actors::script::vet_uses(&global, ::actors::script::scripts_of_item(item)),
                None => Vec::new(),
            };
            problems.extend(found.iter().cloned());
            if found.is_empty() {
                self.script_problems.remove(&k);
            } else {
                self.script_problems.insert(k, found);
            }
        }
        for p in &problems {
            tracing::error!(director = %self.name, version, "script: {p}");
            self.record(
                "script",
                "script cannot run here",
                &format!("version {version}: {p}"),
            );
        }
    }
}

/// The longest a catch-up of other directors' flows holds the config fence.
const CATCH_UP_LIMIT: Duration = Duration::from_secs(3);

/// A catch-up finished (or gave up).
#[derive(Message)]
#[rtype(result = "()")]
struct CaughtUp {
    id: u64,
    summary: String,
    /// A peer could not be asked, or what it gave could not be pinned.
    failed: bool,
}

impl Handler<CaughtUp> for Director {
    type Result = ();

    fn handle(&mut self, m: CaughtUp, _ctx: &mut Context<Self>) {
        if let Some((what, from, since)) = self.catching_up.remove(&m.id) {
            let ms = since.elapsed().as_millis();
            let what = what.what();
            if m.failed {
                self.counters.flow_catch_up_failures += 1;
                tracing::warn!(director = %self.name, from = %from, "catch-up of {what} incomplete after {ms} ms: {}", m.summary);
            } else {
                tracing::info!(director = %self.name, from = %from, "caught up with {what} in {ms} ms: {}", m.summary);
            }
        }
        self.update_fence();
    }
}

impl Director {
    /// Asks what `peer` (None: every other director) forwards, and holds the config
    /// fence until this director has it too (at most the catch-up's limit): a director
    /// that restarted or was cut off takes no VIP over without the flows (nftables) or
    /// the connections (IPVS with `lvs_sync_daemon`) it missed.
    fn catch_up(&mut self, peer: Option<String>) {
        let what = if self.flows.sync.get().is_some() {
            // A director that forwards nothing (no MASTER instance) holds only what it
            // pinned before it went away: the others' pins are newer. One that forwards
            // keeps its own.
            CatchUp::Flows {
                replace: self.masters.is_empty(),
            }
        } else if self.backend == "ipvs" && self.wanted_sync_daemon().is_some() {
            CatchUp::IpvsConns
        } else {
            return;
        };
        self.next_catch_up += 1;
        let id = self.next_catch_up;
        let label = peer.clone().unwrap_or_else(|| "every director".into());
        if self.flows.catch_up.try_send((id, peer, what)).is_ok() {
            self.catching_up.insert(id, (what, label, Instant::now()));
            self.update_fence();
        } else {
            tracing::warn!(director = %self.name, from = %label, "catch-up of {} not started: too many queued", what.what());
        }
    }

    /// Starts carrying flows between the kernel and the other directors.
    fn start_flow_sync(&mut self, kernel: ::actors::lb::flowsync::SharedKernel) {
        let learned = self.flows.learned.clone();
        let sent = self.flows.sent.clone();
        let on_learned = Box::new(move |flows: Vec<::actors::lb::flows::FlowRecord>| {
            let n = flows.len() as u64;
            if learned.try_send(flows).is_err() {
                sent.dropped.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
            }
        });
        match ::actors::lb::flowsync::FlowSync::start(&self.name, kernel, on_learned) {
            Ok(sync) => {
                tracing::info!(director = %self.name, "flow sync: started (flows this director forwards go to the others)");
                let _ = self.flows.sync.set(sync);
            }
            Err(e) => {
                tracing::error!(director = %self.name, "flow sync: {e}");
                self.errors.push(format!("flow sync: {e}"));
            }
        }
    }
}

/// Whether a key belongs to the VRRP part of the configuration (what the instances run).
fn is_vrrp_key(k: &Key) -> bool {
    matches!(
        k,
        Key::Global
            | Key::Script(_)
            | Key::SyncGroup(_)
            | Key::Instance(_)
            | Key::TrackFile(_)
            | Key::TrackProcess(_)
    )
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "none".into()
    } else {
        names.join(" ")
    }
}

impl Actor for Director {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        match ::actors::lb::backend::open(self.options.backend, self.options.ingress.clone()) {
            Ok(kernel) => {
                self.backend = kernel.backend().to_string();
                let syncs_flows = kernel.syncs_flows();
                let kernel: ::actors::lb::flowsync::SharedKernel = Arc::new(std::sync::Mutex::new(kernel));
                if syncs_flows {
                    self.start_flow_sync(kernel.clone());
                }
                self.dataplane = Some(DataPlane::shared(kernel, vec![ctx.address().recipient()]).start());
            }
            Err(e) => {
                tracing::error!(director = %self.name, "data plane: {e}");
                self.errors.push(format!("data plane: {e}"));
            }
        }
        ctx.run_interval(Duration::from_millis(500), |act, _| act.update_fence());
    }
}

impl Handler<ApplyConfig> for Director {
    type Result = ();

    fn handle(&mut self, m: ApplyConfig, ctx: &mut Context<Self>) {
        let (vrrp_changed, vet) = match m.change {
            ViewChange::Whole(view) => {
                self.view = view;
                self.unfed = None;
                (true, None)
            }
            ViewChange::Keys(changes) => {
                if self.committed == Some(m.version) && changes.is_empty() {
                    return;
                }
                let vrrp = changes.iter().any(|(k, _)| is_vrrp_key(k));
                let keys: Vec<Key> = changes.iter().map(|(k, _)| k.clone()).collect();
                for (k, item) in changes {
                    match item {
                        Some(i) => self.view.insert(k.clone(), i),
                        None => self.view.remove(&k),
                    };
                    if let Some(u) = &mut self.unfed {
                        u.insert(k);
                    }
                }
                let vet = (!keys.contains(&Key::Global)).then_some(keys);
                (vrrp, vet)
            }
        };
        tracing::info!(director = %self.name, version = m.version, "applying committed config");
        self.committed = Some(m.version);
        self.vet_scripts(m.version, vet);
        // Hold the fence before anything can claim MASTER on the new version.
        self.update_fence();
        self.feed(ctx);
        // A failed start is tried again with the next change.
        if vrrp_changed || self.vrrp_config.is_none() {
            self.reconfigure_vrrp(ctx);
        }
        self.update_sync_daemon(ctx);
    }
}

impl Handler<SyncEvent> for Director {
    type Result = ();

    fn handle(&mut self, e: SyncEvent, ctx: &mut Context<Self>) {
        let mut summary = format!(
            "version {}: {} ops in {} us",
            e.version.map(|v| v.to_string()).unwrap_or_else(|| "-".into()),
            e.ops,
            e.duration_us
        );
        if !e.errors.is_empty() {
            let list: Vec<String> = e.errors.iter().map(|(op, err)| format!("{op}: {err}")).collect();
            summary.push_str(&format!("; {} refused: {}", e.errors.len(), list.join("; ")));
        }
        if !e.repaired.is_empty() {
            summary.push_str(&format!("; drift repaired: {}", e.repaired.join("; ")));
        }
        self.record_detail(
            "sync",
            &e.backend,
            &summary,
            EventDetail::Sync {
                version: e.version,
                ops: e.ops as u64,
                errors: e.errors.len() as u64,
                repaired: e.repaired.len() as u64,
            },
        );
        let c = &mut self.counters;
        c.syncs += 1;
        c.sync_ops += e.ops as u64;
        c.drift_repairs += e.repaired.len() as u64;
        if !e.errors.is_empty() {
            c.sync_errors += 1;
        }
        c.sync_duration.observe(e.duration_us as f64 / 1e6);
        if e.errors.is_empty() {
            if let Some(v) = e.version {
                if self.applied.is_none() {
                    // The first table: now the flows others pin can be placed in it.
                    self.catch_up(None);
                }
                self.applied = Some(v);
            }
        }
        self.update_fence();
        if let Some(dp) = &self.dataplane {
            dp.send(::actors::lb::sync::GetStatus)
                .into_actor(self)
                .map(|r, act, _| {
                    if let Ok(s) = r {
                        act.applied = s.applied_version;
                        act.dp_status = Some(s);
                        act.update_fence();
                    }
                })
                .spawn(ctx);
        }
    }
}

impl Handler<VrrpEvent> for Director {
    type Result = ();

    fn handle(&mut self, e: VrrpEvent, ctx: &mut Context<Self>) {
        if let Some(was) = e.priority_was {
            self.record_detail(
                "vrrp",
                &e.instance,
                &format!("priority {was} -> {} ({}), {}", e.priority, e.reason, e.to),
                EventDetail::VrrpPriority {
                    instance: e.instance.clone(),
                    from: was,
                    to: e.priority,
                },
            );
            return;
        }
        if e.to == ::actors::vrrp::instance::State::Master {
            self.masters.insert(e.instance.clone());
        } else {
            self.masters.remove(&e.instance);
        }
        self.update_sync_daemon(ctx);
        *self.counters.transitions.entry(e.instance.clone()).or_default() += 1;
        if e.fast_path_from.is_some() {
            *self
                .counters
                .fast_takeovers
                .entry(e.instance.clone())
                .or_default() += 1;
        }
        if let Some(master) = &e.fast_path_from {
            let master = master.to_string();
            if let Some(p) = self
                .peers
                .values_mut()
                .find(|p| p.addr.split(':').next() == Some(&master))
            {
                p.fast_takeovers += 1;
            }
        }
        self.record_detail(
            "vrrp",
            &e.instance,
            &format!("{} -> {} ({}), priority {}", e.from, e.to, e.reason, e.priority),
            EventDetail::VrrpState {
                instance: e.instance.clone(),
                from: e.from.to_string(),
                to: e.to.to_string(),
                priority: e.priority,
                reason: e.reason.clone(),
            },
        );
    }
}

impl Handler<CheckEvent> for Director {
    type Result = ();

    fn handle(&mut self, e: CheckEvent, _ctx: &mut Context<Self>) {
        *self
            .counters
            .check_transitions
            .entry(e.id.to_string())
            .or_default() += 1;
        self.record_detail(
            "check",
            &e.id.to_string(),
            &format!("{:?} -> {:?}: {}", e.from, e.to, e.reason),
            EventDetail::Check {
                vs: e.id.vs.to_string(),
                rs: e.id.rs.to_string(),
                checker: e.id.checker.to_string(),
                up: e.to == ::actors::check::schedule::Health::Up,
                weight: e.weight,
                reason: e.reason.clone(),
            },
        );
    }
}

impl Handler<RaftHealth> for Director {
    type Result = ();

    fn handle(&mut self, m: RaftHealth, _ctx: &mut Context<Self>) {
        self.store_failed = m.store_failed;
        match (m.has_leader, self.leaderless_since) {
            (true, Some(_)) => self.leaderless_since = None,
            (false, None) => self.leaderless_since = Some(Instant::now()),
            _ => {}
        }
        self.update_fence();
    }
}

impl Handler<PeerLiveness> for Director {
    type Result = ();

    fn handle(&mut self, m: PeerLiveness, _ctx: &mut Context<Self>) {
        let liveness = m.change.now.as_str();
        let entry = self.peers.entry(m.name.clone()).or_insert_with(|| PeerInfo {
            name: m.name.clone(),
            addr: m.addr.clone(),
            liveness: String::new(),
            since_ms: 0,
            fast_takeovers: 0,
        });
        entry.addr = m.addr.clone();
        entry.liveness = liveness.to_string();
        entry.since_ms = crate::director::now_ms();
        tracing::info!(director = %self.name, peer = %m.name, addr = %m.addr, "peer {liveness}");
        if m.change.now == crate::liveness::Liveness::Alive && self.applied.is_some() {
            // Back (restarted, or reachable again): what it forwarded meanwhile.
            self.catch_up(Some(m.name.clone()));
        }
        if !m.change.death {
            self.record("peer", &m.name, liveness);
            return;
        }
        // A dead director sends no more connections: a catch-up of IPVS connections that
        // waits on it would only keep the fence held (a backup could not take over).
        let before = self.catching_up.len();
        self.catching_up.retain(|_, (what, from, _)| {
            !matches!(what, CatchUp::IpvsConns) || (from != &m.name && from != "every director")
        });
        if self.catching_up.len() != before {
            tracing::info!(director = %self.name, peer = %m.name, "catch-up of IPVS connections given up: the peer's process is gone");
            self.update_fence();
        }
        let instances: Vec<_> = self
            .vrrp
            .as_ref()
            .map(|v| v.instances.clone())
            .unwrap_or_default();
        self.counters.death_signals += 1;
        let addrs: Vec<String> = m.vrrp_addrs.iter().map(IpAddr::to_string).collect();
        self.record(
            "peer",
            &m.name,
            &format!(
                "process gone (connection refused by its host): death signal for VRRP masters {} to {} instance(s)",
                addrs.join(" "),
                instances.len()
            ),
        );
        for i in instances {
            i.do_send(::actors::vrrp::actor::PeerGone(m.vrrp_addrs.clone()));
        }
    }
}

impl Handler<GetMetrics> for Director {
    type Result = ResponseFuture<MetricsReply>;

    fn handle(&mut self, _: GetMetrics, _ctx: &mut Context<Self>) -> Self::Result {
        let counters = self.counters.clone();
        let instances: Vec<_> = self
            .vrrp
            .as_ref()
            .map(|v| v.instances.clone())
            .unwrap_or_default();
        Box::pin(async move {
            let mut out = Vec::new();
            for i in instances {
                if let Ok(s) = i.send(::actors::vrrp::actor::GetStatus).await {
                    out.push(s);
                }
            }
            (counters, out)
        })
    }
}

impl Handler<Watched> for Director {
    type Result = ();

    fn handle(&mut self, Watched(names): Watched, _ctx: &mut Context<Self>) {
        self.peers.retain(|n, _| names.contains(n));
    }
}

impl Handler<HoldTable> for Director {
    type Result = ();

    fn handle(&mut self, HoldTable(v): HoldTable, ctx: &mut Context<Self>) {
        tracing::warn!(director = %self.name, hold = ?v, "test hook: data plane held");
        self.hold = v;
        self.feed(ctx);
    }
}

impl Handler<GetRuntimeStatus> for Director {
    type Result = ResponseActFuture<Self, RuntimeStatus>;

    fn handle(&mut self, _: GetRuntimeStatus, _ctx: &mut Context<Self>) -> Self::Result {
        let instances: Vec<_> = self
            .vrrp
            .as_ref()
            .map(|v| v.instances.clone())
            .unwrap_or_default();
        let hub = self.checks.as_ref().map(|c| c.hub.clone());
        let dp = self.dataplane.clone();
        let fut = async move {
            let mut infos = Vec::new();
            for i in instances {
                if let Ok(s) = i.send(::actors::vrrp::actor::GetStatus).await {
                    infos.push(InstanceInfo {
                        name: s.name,
                        state: s.state.to_string(),
                        priority: s.priority,
                        held_by_fence: s.held_by_fence,
                    });
                }
            }
            let services = match hub {
                Some(h) => h.send(GetRealServers).await.unwrap_or_default(),
                None => Vec::new(),
            };
            let dps = match dp {
                Some(d) => d.send(::actors::lb::sync::GetStatus).await.ok(),
                None => None,
            };
            (infos, services, dps)
        };
        Box::pin(fut.into_actor(self).map(|(instances, services, dps), act, _| {
            if let Some(s) = &dps {
                act.applied = s.applied_version;
                act.dp_status = Some(s.clone());
            }
            let dp = act.dp_status.clone();
            RuntimeStatus {
                config_version: act.committed,
                dataplane: DataPlaneInfo {
                    backend: act.backend.clone(),
                    applied_version: dp.as_ref().and_then(|d| d.applied_version),
                    in_sync: dp.as_ref().map(|d| d.in_sync).unwrap_or(false),
                    gaps: dp.map(|d| d.gaps).unwrap_or_default(),
                },
                fence: act.fence_state().1,
                quorum_gate: act.gate_text.clone(),
                instances,
                services: crate::replay::services_info(services),
                errors: act
                    .errors
                    .iter()
                    .cloned()
                    .chain(
                        act.script_problems
                            .values()
                            .flatten()
                            .map(|p| format!("script: {p}")),
                    )
                    .collect(),
                peers: act.peers.values().cloned().collect(),
            }
        }))
    }
}

impl Director {
    /// The smallest interval this director's VRRP instances advertise at, as they run
    /// it (None: it runs none).
    fn smallest_advert_int(&self) -> Option<Duration> {
        self.view
            .values()
            .filter_map(|item| match item {
                Item::Instance(i) => Some(::actors::vrrp::setup::advert_interval(i)),
                _ => None,
            })
            .min()
    }
}

impl Handler<QuorumRound> for Director {
    type Result = ();

    fn handle(&mut self, QuorumRound(r): QuorumRound, _ctx: &mut Context<Self>) {
        use ::actors::vrrp::quorum::{applies, release_after};
        let now = self.started.elapsed();
        if self.gate_rounds == 0 {
            self.gate.reset(now);
        }
        self.gate_rounds += 1;
        for (name, at) in &r.answered {
            self.gate
                .answered(name, at.saturating_duration_since(self.started));
        }
        let voters = r.others.len() + usize::from(r.self_votes);
        let Some(advert) = self.smallest_advert_int() else {
            self.gate_text = "idle (no VRRP instance)".into();
            return;
        };
        self.gate.set_after(release_after(advert));
        let change = if !applies(self.options.quorum_gate, voters) {
            self.gate_text = format!("off ({voters} voter(s); --quorum-gate on turns it on)");
            self.gate.reset(now)
        } else if r.stalled {
            // This process did not run for a while: the silence is its own.
            None
        } else {
            let change = self.gate.evaluate(now, &r.others, r.self_votes);
            let reached = self.gate.reached(now, &r.others, r.self_votes);
            let short = if ::actors::vrrp::quorum::in_time(advert) {
                String::new()
            } else {
                format!(
                    " (advert_int {} ms is too short for the gate to release before another director's master-down timer; 0.5 s or more is)",
                    advert.as_millis()
                )
            };
            self.gate_text = if self.gate.in_contact() {
                format!("contact with {reached} of {voters} voters{short}")
            } else {
                format!(
                    "lost: {reached} of {voters} voters reached within {} ms; VRRP instances in FAULT",
                    self.gate.after().as_millis()
                )
            };
            change
        };
        let Some(in_contact) = change else {
            return;
        };
        let text = self.gate_text.clone();
        if in_contact {
            tracing::info!(director = %self.name, gate = %text, "quorum gate: contact with a majority of the voters is back");
        } else {
            tracing::warn!(director = %self.name, gate = %text, "quorum gate: no contact with a majority of the voters; releasing the VIPs");
        }
        self.record("quorum", "quorum gate", &text);
        if let Some(v) = &self.vrrp {
            for i in &v.instances {
                i.do_send(::actors::vrrp::actor::SetQuorum(in_contact));
            }
        }
    }
}

impl Handler<GetForwarding> for Director {
    type Result = MessageResult<GetForwarding>;

    fn handle(&mut self, _: GetForwarding, _ctx: &mut Context<Self>) -> Self::Result {
        // Forwarding, for a catch-up: MASTER of the instance the sync daemon follows (its
        // master daemon sends what this kernel schedules).
        let syncing = match self.view.get(&Key::Global) {
            Some(Item::Global { defs, .. }) => defs
                .lvs_sync_daemon
                .as_ref()
                .is_some_and(|l| self.masters.contains(&l.instance)),
            _ => false,
        };
        MessageResult((self.backend == "ipvs", syncing))
    }
}

impl Handler<GetTables> for Director {
    type Result = ResponseFuture<(String, Option<u64>, Tables)>;

    fn handle(&mut self, _: GetTables, _ctx: &mut Context<Self>) -> Self::Result {
        let dp = self.dataplane.clone();
        let backend = self.backend.clone();
        let applied = self.applied;
        Box::pin(async move {
            let Some(dp) = dp else {
                return (backend, applied, Err("no data plane".to_string()));
            };
            let r = match dp.send(::actors::lb::sync::GetTables).await {
                Ok(Ok(t)) => Ok(t),
                Ok(Err(e)) => Err(e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            (backend, applied, r)
        })
    }
}

impl Handler<Shutdown> for Director {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: Shutdown, _ctx: &mut Context<Self>) -> Self::Result {
        let vrrp = self.vrrp.take();
        // The sync daemon stops with the director, as keepalived stops it (whatever was
        // asked before: a request may have failed).
        self.stopping = true;
        let dp = self.dataplane.clone().filter(|_| self.backend == "ipvs");
        self.sync_daemon = None;
        let name = self.name.clone();
        Box::pin(
            async move {
                if let Some(v) = vrrp {
                    ::actors::vrrp::runner::stop(&v).await;
                }
                if let Some(dp) = dp {
                    match dp.send(SetSyncDaemon(None)).await {
                        Ok(Ok(steps)) if !steps.is_empty() => {
                            tracing::info!(director = %name, "IPVS sync daemon stopped")
                        }
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => tracing::warn!(director = %name, "stopping the IPVS sync daemon: {e}"),
                        Err(e) => tracing::warn!(director = %name, "stopping the IPVS sync daemon: {e}"),
                    }
                }
            }
            .into_actor(self),
        )
    }
}

impl Runtime {
    /// Starts the actors on their own thread and feeds them every committed version.
    pub fn start(node: &Arc<DirectorNode>, options: RuntimeOptions) -> anyhow::Result<Runtime> {
        let (tx, rx) = std::sync::mpsc::channel();
        let (learned, to_send) = tokio::sync::mpsc::channel(crate::flow_sync::SEND_QUEUE);
        let (catch_up, catch_up_rx) = tokio::sync::mpsc::channel(64);
        let flows = FlowWiring {
            sync: Arc::new(std::sync::OnceLock::new()),
            catch_up,
            learned,
            sent: Arc::new(crate::flow_sync::SendStats::default()),
            dumping: Arc::new(tokio::sync::Semaphore::new(1)),
        };
        tokio::spawn(crate::flow_sync::send_learned(
            node.clone(),
            to_send,
            flows.sent.clone(),
        ));
        let wiring = flows.clone();
        let name = node.name.clone();
        let cutoff = options.cutoff_after;
        let journal = node.events.clone();
        let hold = options.hold;
        std::thread::Builder::new()
            .name("hanode-actors".into())
            .spawn(move || {
                let sys = actix_rt::System::new();
                sys.block_on(async move {
                    let addr = Director {
                        name,
                        flows: wiring,
                        catching_up: BTreeMap::new(),
                        next_catch_up: 0,
                        masters: BTreeSet::new(),
                        gate: ::actors::vrrp::quorum::Gate::new(
                            Duration::ZERO,
                            ::actors::vrrp::quorum::release_after(Duration::from_secs(1)),
                        ),
                        started: Instant::now(),
                        gate_text: "not judged yet".into(),
                        gate_rounds: 0,
                        sync_daemon: None,
                        stopping: false,
                        sync_daemon_ignored: false,
                        journal,
                        options,
                        dataplane: None,
                        backend: String::new(),
                        checks: None,
                        vrrp: None,
                        vrrp_config: None,
                        committed: None,
                        view: BTreeMap::new(),
                        unfed: None,
                        fed: None,
                        hold,
                        applied: None,
                        dp_status: None,
                        leaderless_since: None,
                        store_failed: None,
                        fence_held: false,
                        errors: Vec::new(),
                        script_problems: BTreeMap::new(),
                        peers: BTreeMap::new(),
                        counters: Counters::default(),
                    }
                    .start();
                    let _ = tx.send(addr);
                });
                sys.run()
            })?;
        let addr = rx
            .recv()
            .map_err(|_| anyhow::anyhow!("the actor thread did not start"))?;
        let rt = Runtime { addr, flows };
        {
            let (node, sync, director) = (node.clone(), rt.flows.sync.clone(), rt.addr.clone());
            tokio::spawn(async move {
                let mut rx = catch_up_rx;
                while let Some((id, peer, what)) = rx.recv().await {
                    let (summary, failed) = match what {
                        CatchUp::Flows { replace } => {
                            crate::flow_sync::catch_up(&node, &sync, peer.as_deref(), replace).await
                        }
                        CatchUp::IpvsConns => crate::ipvs_catch_up::catch_up(&node, peer.as_deref()).await,
                    };
                    director.do_send(CaughtUp { id, summary, failed });
                }
            });
        }
        // Committed versions -> the actors.
        let mut watch = node.state.subscribe();
        let me = node.name.clone();
        let a = rt.addr.clone();
        tokio::spawn(async move {
            // The configuration last handed over: the next is sent as the keys that changed
            // in this director's view (O(change)).
            let mut sent: Option<ha_config::keyed::KeyedCluster> = None;
            loop {
                let state = watch.borrow_and_update().clone();
                if state.version > 0 {
                    let change = match &sent {
                        Some(prev) => ViewChange::Keys(prev.view_delta(&state.config, &me)),
                        None => ViewChange::Whole(state.config.view_items(&me)),
                    };
                    sent = Some(state.config.clone());
                    a.do_send(ApplyConfig {
                        version: state.version,
                        change,
                    });
                }
                if watch.changed().await.is_err() {
                    return;
                }
            }
        });
        // The other directors' processes, over the cluster transport.
        spawn_liveness(node.clone(), rt.addr.clone());
        // Contact with a majority of the voters (the quorum gate).
        let director = rt.addr.clone();
        crate::quorum::spawn(node.clone(), move |round| director.do_send(QuorumRound(round)));
        // Whether the cluster is reachable (a leader is known).
        let node_for_health = node.clone();
        let a = rt.addr.clone();
        tokio::spawn(async move {
            let period = (cutoff / 4).max(Duration::from_millis(100));
            loop {
                let has_leader = node_for_health.metrics().current_leader.is_some();
                let store_failed = node_for_health.store_failure().map(|f| f.cause);
                a.do_send(RaftHealth {
                    has_leader,
                    store_failed,
                });
                tokio::time::sleep(period).await;
            }
        });
        Ok(rt)
    }

    pub async fn status(&self) -> Option<RuntimeStatus> {
        self.addr.send(GetRuntimeStatus).await.ok()
    }

    /// What `/metrics` shows of the actors: counters and each instance's status.
    pub async fn metrics(&self) -> Option<MetricsReply> {
        self.addr.send(GetMetrics).await.ok()
    }

    pub async fn tables(&self) -> Option<(String, Option<u64>, Tables)> {
        self.addr.send(GetTables).await.ok()
    }

    /// Pins flows another director forwards: None when this director does not sync flows
    /// (its backend does not pin them), false when they were dropped (queue full).
    pub fn install_flows(
        &self,
        flows: Vec<::actors::lb::flows::FlowRecord>,
        learned_at_us: u64,
    ) -> Option<bool> {
        self.flows.sync.get().map(|s| s.install(flows, learned_at_us))
    }

    /// Every flow this director's kernel pins (None: its backend does not sync flows).
    /// One dump at a time: another asked meanwhile is told to come back.
    pub async fn pinned_flows(&self) -> Option<Result<Vec<::actors::lb::flows::FlowRecord>, String>> {
        let sync = self.flows.sync.clone();
        sync.get()?;
        let Ok(_one) = self.flows.dumping.clone().try_acquire_owned() else {
            return Some(Err("another catch-up is reading the flow maps; ask again".into()));
        };
        let r = tokio::task::spawn_blocking(move || match sync.get() {
            Some(s) => s.pinned().map_err(|e| e.to_string()),
            None => Ok(Vec::new()),
        })
        .await;
        Some(r.unwrap_or_else(|e| Err(e.to_string())))
    }

    /// The live connections in this director's IPVS kernel while it forwards (None: its
    /// backend is not IPVS), for a director catching up.
    pub async fn ipvs_conns(&self) -> Option<Result<crate::ipvs_catch_up::ConnList, String>> {
        let (ipvs, forwarding) = self.addr.send(GetForwarding).await.ok()?;
        if !ipvs {
            return None;
        }
        let keys = if forwarding {
            match crate::ipvs_catch_up::live_keys().await {
                Ok(k) => k,
                Err(e) => return Some(Err(e)),
            }
        } else {
            Vec::new()
        };
        Some(Ok(crate::ipvs_catch_up::ConnList {
            from: String::new(),
            forwarding,
            keys,
        }))
    }

    /// The flow sync's counters: the data plane's side (None: its backend does not sync
    /// flows) and the sender's (sent, lost, dropped).
    pub fn flow_counts(&self) -> (Option<::actors::lb::flowsync::FlowCounts>, [u64; 3]) {
        let s = &self.flows.sent;
        let g = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
        (
            self.flows.sync.get().map(|f| f.counts()),
            [g(&s.sent), g(&s.lost), g(&s.dropped)],
        )
    }

    /// Test hook: keep the data plane at `version` (None: release).
    pub fn hold_table(&self, version: Option<u64>) {
        self.addr.do_send(HoldTable(version));
    }

    /// Stops the VRRP instances gracefully (priority 0, VIPs removed).
    pub async fn shutdown(&self) {
        let _ = self.addr.send(Shutdown).await;
    }
}

/// Keeps one [`crate::liveness::watch_peer`] task per other member of the cluster (by
/// name and transport address), following membership changes.
fn spawn_liveness(node: Arc<DirectorNode>, director: Addr<Director>) {
    tokio::spawn(async move {
        let mut tasks: BTreeMap<(String, String), tokio::task::JoinHandle<()>> = BTreeMap::new();
        loop {
            let members: BTreeSet<(String, String)> = node
                .members()
                .into_iter()
                .filter(|m| m.name != node.name)
                .map(|m| (m.name, m.addr))
                .collect();
            tasks.retain(|k, t| {
                let keep = members.contains(k);
                if !keep {
                    t.abort();
                }
                keep
            });
            for (name, addr) in &members {
                if tasks.contains_key(&(name.clone(), addr.clone())) {
                    continue;
                }
                let Ok(sock) = addr.parse::<std::net::SocketAddr>() else {
                    tracing::warn!(peer = %name, addr = %addr, "peer liveness: not an IP:port address; not watched");
                    continue;
                };
                let (n, a, d, reader) = (name.clone(), addr.clone(), director.clone(), node.state.clone());
                let task = tokio::spawn(crate::liveness::watch_peer(sock, move |change| {
                    let vrrp_addrs = if change.death {
                        vrrp_addresses(&reader.subscribe().borrow().config, &n, sock.ip())
                    } else {
                        Vec::new()
                    };
                    d.do_send(PeerLiveness {
                        name: n.clone(),
                        addr: a.clone(),
                        change,
                        vrrp_addrs,
                    });
                }));
                tasks.insert((name.clone(), addr.clone()), task);
            }
            director.do_send(Watched(members.into_iter().map(|(n, _)| n).collect()));
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
}

/// The addresses director `name` sends VRRP adverts from, as far as the committed config
/// and membership tell: its transport address's IP, and the `unicast_src_ip` of each
/// instance in its view of the cluster config.
fn vrrp_addresses(cluster: &ha_config::keyed::KeyedCluster, name: &str, transport: IpAddr) -> Vec<IpAddr> {
    let mut out = BTreeSet::from([transport]);
    for (_, slot) in cluster.iter() {
        if let Some(Item::Instance(i)) = slot.view(name) {
            if let Some(a) = i.unicast_src_ip {
                out.insert(a);
            }
        }
    }
    out.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vrrp_part_holds_everything_an_instance_tracks() {
        let n = || "x".to_string();
        for k in [
            Key::Global,
            Key::Script(n()),
            Key::SyncGroup(n()),
            Key::Instance(n()),
            Key::TrackFile(n()),
            Key::TrackProcess(n()),
        ] {
            assert!(is_vrrp_key(&k), "{k}: an instance tracking it would not start");
        }
        assert!(!is_vrrp_key(&Key::VsGroup(n())));
    }
}

//! One actor per `vrrp_track_process`: counts the matching processes from a scan of /proc
//! and then from the kernel's process events (fork, exec, rename, exit), applies quorum
//! and delays, and tells the instances tracking it.
//!
//! One events socket serves every tracker of the director (keepalived has one too): a
//! thread reads it, reads /proc for each exec, and hands the batch to every registered
//! tracker. If the socket cannot be opened (a kernel without `CONFIG_PROC_EVENTS`, or no
//! right to join the initial network namespace), the trackers scan /proc every second.

use super::trackers::{Retire, Subscribe, Subscribers, TrackerReading};
use super::tracking::{Reading, TrackerId};
use crate::track::proc_event::ProcEvent;
use crate::track::proc_io::{self, ProcEventSocket};
use crate::track::process::{Change, Matcher, ProcInfo, ProcessSet, Quorum};
use actix::prelude::*;
use ha_config::model::{TrackProcess, TrackedKind};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Events read together (an exec with what the process runs after it, read at once).
#[derive(Clone, Debug, Message)]
#[rtype(result = "()")]
pub enum ProcBatch {
    Events(Arc<Vec<(ProcEvent, Option<ProcInfo>)>>),
    /// Events were lost (the socket overflowed): scan /proc again.
    Lost,
}

type Listeners = Arc<Mutex<Vec<Recipient<ProcBatch>>>>;

/// Whether some tracker matches command lines (the reader then reads them at each exec).
static NEEDS_CMDLINE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The director's one process events reader: started by the first tracker.
fn listeners() -> Result<&'static Listeners, String> {
    static WATCH: OnceLock<Result<Listeners, String>> = OnceLock::new();
    WATCH
        .get_or_init(|| {
            let sock = ProcEventSocket::open(Duration::from_secs(1)).map_err(|e| e.to_string())?;
            let listeners: Listeners = Arc::default();
            let shared = listeners.clone();
            std::thread::Builder::new()
                .name("proc-events".into())
                .spawn(move || read_events(sock, shared))
                .map_err(|e| e.to_string())?;
            Ok(listeners)
        })
        .as_ref()
        .map_err(|e| e.clone())
}

fn read_events(sock: ProcEventSocket, listeners: Listeners) {
    loop {
        let received = sock.recv();
        // Nothing tracks processes any more: read no /proc for nobody.
        let anyone = listeners.lock().map(|mut l| {
            l.retain(|r| r.connected());
            !l.is_empty()
        });
        if !anyone.unwrap_or(false) {
            continue;
        }
        let batch = match received {
            Ok(events) if events.is_empty() => continue,
            Ok(events) => {
                let with_info: Vec<(ProcEvent, Option<ProcInfo>)> = events
                    .into_iter()
                    .filter_map(|e| match e {
                        // Threads come and go inside a process: not counted.
                        ProcEvent::Exec { pid, tgid } if pid == tgid => {
                            let cmdline = NEEDS_CMDLINE.load(std::sync::atomic::Ordering::Relaxed);
                            Some((e, proc_io::info(pid, cmdline)))
                        }
                        ProcEvent::Fork {
                            child_pid,
                            child_tgid,
                            ..
                        } if child_pid == child_tgid => Some((e, None)),
                        ProcEvent::Comm { pid, tgid, .. } | ProcEvent::Exit { pid, tgid } if pid == tgid => {
                            Some((e, None))
                        }
                        _ => None,
                    })
                    .collect();
                if with_info.is_empty() {
                    continue;
                }
                ProcBatch::Events(Arc::new(with_info))
            }
            Err(e) if proc_io::lost_events(&e) => ProcBatch::Lost,
            Err(e) => {
                tracing::error!("process events: {e}");
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
        };
        let Ok(list) = listeners.lock() else {
            return;
        };
        for r in list.iter() {
            r.do_send(batch.clone());
        }
    }
}

pub struct ProcessTracker {
    def: TrackProcess,
    set: ProcessSet,
    quorum: Quorum,
    subscribers: Subscribers,
    timer: Option<SpawnHandle>,
    rescan: Option<SpawnHandle>,
}

impl ProcessTracker {
    pub fn new(def: TrackProcess, subscribers: Vec<Recipient<TrackerReading>>) -> Self {
        let id = TrackerId {
            kind: TrackedKind::Process,
            name: def.name.clone(),
        };
        let matcher = Matcher::new(&def);
        if matcher.needs_cmdline() {
            NEEDS_CMDLINE.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        ProcessTracker {
            set: ProcessSet::new(matcher),
            quorum: Quorum::new(&def),
            def,
            subscribers: Subscribers::new(id, subscribers),
            timer: None,
            rescan: None,
        }
    }

    fn counted(&mut self, change: Change, ctx: &mut Context<Self>) {
        if change == Change::None && self.quorum.up().is_some() {
            return;
        }
        let count = self.set.count();
        tracing::debug!(track_process = %self.def.name, count, "tracked processes counted");
        let verdict = self.quorum.on_count(Instant::now(), count, change);
        self.told(verdict, count);
        self.arm(ctx);
    }

    fn told(&mut self, verdict: Option<bool>, count: u32) {
        if let Some(up) = verdict {
            tracing::info!(
                track_process = %self.def.name,
                process = %self.def.process,
                count,
                quorum = self.def.quorum,
                quorum_max = self.def.quorum_max,
                up,
                "tracked process quorum {}",
                if up { "reached" } else { "lost" }
            );
            self.subscribers.tell(Reading::Good(up));
        }
    }

    /// Runs the quorum's pending delay, if any.
    fn arm(&mut self, ctx: &mut Context<Self>) {
        if let Some(h) = self.timer.take() {
            ctx.cancel_future(h);
        }
        if let Some(at) = self.quorum.deadline() {
            let wait = at.saturating_duration_since(Instant::now());
            self.timer = Some(ctx.run_later(wait, |act, ctx| {
                act.timer = None;
                let verdict = act.quorum.on_timer(Instant::now());
                act.told(verdict, act.set.count());
                act.arm(ctx);
            }));
        }
    }

    /// Counts afresh from /proc, read on a blocking thread (a process's command line can
    /// make a read wait): `wait`, so no event is applied before the scan's result.
    fn scan(&mut self, ctx: &mut Context<Self>) {
        let cmdline = self.set.matcher().needs_cmdline();
        let read = async move {
            tokio::task::spawn_blocking(move || proc_io::scan(cmdline))
                .await
                .unwrap_or_default()
        };
        ctx.wait(read.into_actor(self).map(|procs, act, ctx| {
            let change = act.set.rescan(procs);
            act.counted(change, ctx);
        }));
    }
}

impl Actor for ProcessTracker {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Listening first, then the scan: nothing that happens in between is missed.
        match listeners() {
            Ok(l) => match l.lock() {
                Ok(mut list) => list.push(ctx.address().recipient()),
                Err(_) => tracing::error!(track_process = %self.def.name, "process events reader gone"),
            },
            Err(e) => {
                tracing::warn!(track_process = %self.def.name, "no process events ({e}): scanning /proc every second");
                ctx.run_interval(Duration::from_secs(1), |act, ctx| act.scan(ctx));
            }
        }
        self.scan(ctx);
    }
}

impl Handler<ProcBatch> for ProcessTracker {
    type Result = ();

    fn handle(&mut self, batch: ProcBatch, ctx: &mut Context<Self>) {
        let events = match batch {
            ProcBatch::Lost => {
                // As keepalived: let things settle for a second, then count afresh.
                if self.rescan.is_none() {
                    tracing::warn!(track_process = %self.def.name, "process events lost; scanning /proc in 1 s");
                    self.rescan = Some(ctx.run_later(Duration::from_secs(1), |act, ctx| {
                        act.rescan = None;
                        act.scan(ctx);
                    }));
                }
                return;
            }
            ProcBatch::Events(e) => e,
        };
        for (event, info) in events.iter() {
            let change = match event {
                ProcEvent::Fork {
                    parent_tgid,
                    child_tgid,
                    ..
                } => self.set.fork(*parent_tgid, *child_tgid),
                ProcEvent::Exec { pid, .. } => self.set.exec(*pid, info.as_ref()),
                ProcEvent::Comm { pid, comm, .. } => self.set.comm(*pid, comm),
                ProcEvent::Exit { pid, .. } => self.set.exit(*pid),
                ProcEvent::Ack { .. } | ProcEvent::Other(_) => Change::None,
            };
            self.counted(change, ctx);
        }
    }
}

impl Handler<Subscribe> for ProcessTracker {
    type Result = ();

    fn handle(&mut self, Subscribe(s): Subscribe, _ctx: &mut Context<Self>) {
        self.subscribers.add(s);
    }
}

impl Handler<Retire> for ProcessTracker {
    type Result = ();

    fn handle(&mut self, _: Retire, ctx: &mut Context<Self>) {
        tracing::debug!(track_process = %self.def.name, "vrrp_track_process retired");
        ctx.stop();
    }
}

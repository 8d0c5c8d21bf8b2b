//! The threads that carry flows between a director's kernel and the cluster (issue 22):
//! one reads the flow log (the flows this director starts forwarding), describes them
//! with the kernel's tables and hands them to the node, which sends them to the other
//! directors; the other pins the flows other directors send into the kernel. Both take
//! the kernel handle only for the moment of a translation or an install, between the
//! data plane's syncs. Loss is tolerated: a full queue drops a batch and counts it.

use super::flows::FlowRecord;
use super::kernel::KernelLb;
use super::nft::flowlog_io::FlowLogSocket;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub type SharedKernel = Arc<Mutex<Box<dyn KernelLb>>>;

/// Batches waiting to be installed; more are dropped (and counted).
const INSTALL_QUEUE: usize = 256;
/// How long a read of the flow log waits before it checks whether to stop.
const LOG_WAIT: Duration = Duration::from_millis(200);
/// Between attempts to subscribe to the flow log when it cannot be (another process in
/// this namespace holds the group, or NFLOG is missing).
const RESUBSCRIBE: Duration = Duration::from_secs(5);

/// Counters of the flow sync, for status and metrics.
#[derive(Debug, Default)]
pub struct FlowStats {
    /// Flows this director's kernel reported starting to forward.
    pub learned: AtomicU64,
    /// Logged flows that could not be described (a service or destination unknown here).
    pub unplaced: AtomicU64,
    /// Flows received from other directors.
    pub received: AtomicU64,
    pub installed: AtomicU64,
    pub skipped: AtomicU64,
    /// Received flows dropped: the install queue was full, or the kernel refused them.
    pub dropped: AtomicU64,
    /// Times the kernel dropped logged flows because we read too slowly.
    pub log_overruns: AtomicU64,
    /// Sync lag of received flows, from the sender's read of its log to pinned here (per
    /// flow, in [`LAG_BUCKETS`], not cumulated), their count and sum in µs.
    pub lag: [AtomicU64; LAG_BUCKETS.len()],
    pub lag_count: AtomicU64,
    pub lag_sum_us: AtomicU64,
}

/// Upper bounds (seconds) of the sync lag histogram's buckets.
pub const LAG_BUCKETS: [f64; 12] = crate::check::stats::DURATION_BUCKETS;

/// A snapshot of [`FlowStats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FlowCounts {
    pub learned: u64,
    pub unplaced: u64,
    pub received: u64,
    pub installed: u64,
    pub skipped: u64,
    pub dropped: u64,
    pub log_overruns: u64,
    /// Per bucket of [`LAG_BUCKETS`] (not cumulated), count, sum in seconds.
    pub lag: [u64; LAG_BUCKETS.len()],
    pub lag_count: u64,
    pub lag_sum_seconds: f64,
}

impl FlowStats {
    pub fn snapshot(&self) -> FlowCounts {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        FlowCounts {
            learned: g(&self.learned),
            unplaced: g(&self.unplaced),
            received: g(&self.received),
            installed: g(&self.installed),
            skipped: g(&self.skipped),
            dropped: g(&self.dropped),
            log_overruns: g(&self.log_overruns),
            lag: std::array::from_fn(|i| g(&self.lag[i])),
            lag_count: g(&self.lag_count),
            lag_sum_seconds: g(&self.lag_sum_us) as f64 / 1e6,
        }
    }

    /// `flows` flows learned by their sender at `learned_at_us` are pinned now.
    fn observe_lag(&self, learned_at_us: u64, flows: u64) {
        if learned_at_us == 0 {
            return;
        }
        let us = super::flows::unix_us().saturating_sub(learned_at_us);
        let secs = us as f64 / 1e6;
        if let Some(i) = LAG_BUCKETS.iter().position(|b| secs <= *b) {
            self.lag[i].fetch_add(flows, Ordering::Relaxed);
        }
        self.lag_count.fetch_add(flows, Ordering::Relaxed);
        self.lag_sum_us
            .fetch_add(us.saturating_mul(flows), Ordering::Relaxed);
    }
}

/// The running flow sync of one director.
pub struct FlowSync {
    install: SyncSender<(Vec<FlowRecord>, u64)>,
    stats: Arc<FlowStats>,
    kernel: SharedKernel,
}

impl FlowSync {
    /// Starts reading the flow log (what it learns goes to `learned`) and installing what
    /// [`FlowSync::install`] is given. `name` names the director in logs.
    pub fn start(
        name: &str,
        kernel: SharedKernel,
        learned: Box<dyn Fn(Vec<FlowRecord>) + Send>,
    ) -> std::io::Result<FlowSync> {
        let stats = Arc::new(FlowStats::default());
        let (tx, rx) = sync_channel(INSTALL_QUEUE);
        let (n, k, s) = (name.to_string(), kernel.clone(), stats.clone());
        std::thread::Builder::new()
            .name("hanode-flowlog".into())
            .spawn(move || learn(&n, &k, &s, learned))?;
        let (n, s, k) = (name.to_string(), stats.clone(), kernel.clone());
        std::thread::Builder::new()
            .name("hanode-flowpin".into())
            .spawn(move || pin(&n, &k, &s, rx))?;
        Ok(FlowSync {
            install: tx,
            stats,
            kernel,
        })
    }

    /// Queues flows another director forwards (learned there at `learned_at_us`, unix
    /// µs); false when the queue is full (dropped).
    pub fn install(&self, flows: Vec<FlowRecord>, learned_at_us: u64) -> bool {
        let n = flows.len() as u64;
        self.stats.received.fetch_add(n, Ordering::Relaxed);
        match self.install.try_send((flows, learned_at_us)) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.stats.dropped.fetch_add(n, Ordering::Relaxed);
                false
            }
        }
    }

    /// Pins flows now, on the caller's thread (a director catching up, before it may
    /// take a VIP over); `replace`: over flows pinned here to another server. Blocks
    /// while the data plane syncs.
    pub fn install_now(
        &self,
        flows: &[FlowRecord],
        replace: bool,
    ) -> Result<super::flows::FlowInstall, super::kernel::KernelError> {
        self.stats
            .received
            .fetch_add(flows.len() as u64, Ordering::Relaxed);
        let r = match self.kernel.lock() {
            Ok(mut k) => k.install_flows(flows, replace),
            Err(p) => p.into_inner().install_flows(flows, replace),
        };
        match &r {
            Ok(i) => {
                self.stats
                    .installed
                    .fetch_add(i.installed as u64, Ordering::Relaxed);
                self.stats.skipped.fetch_add(i.skipped as u64, Ordering::Relaxed);
            }
            Err(_) => {
                self.stats
                    .dropped
                    .fetch_add(flows.len() as u64, Ordering::Relaxed);
            }
        }
        r
    }

    /// Every flow pinned in this director's kernel (blocking: a dump of the flow maps).
    pub fn pinned(&self) -> Result<Vec<FlowRecord>, super::kernel::KernelError> {
        match self.kernel.lock() {
            Ok(mut k) => k.pinned_flows(),
            Err(p) => p.into_inner().pinned_flows(),
        }
    }

    pub fn counts(&self) -> FlowCounts {
        self.stats.snapshot()
    }
}

fn learn(name: &str, kernel: &SharedKernel, stats: &FlowStats, learned: Box<dyn Fn(Vec<FlowRecord>) + Send>) {
    let mut warned = false;
    loop {
        let mut log = match FlowLogSocket::open(LOG_WAIT) {
            Ok(l) => l,
            Err(e) => {
                if !warned {
                    tracing::warn!(director = %name, "flow sync: cannot read the flow log ({e}); flows this director forwards are not sent to the others; retrying every {}s", RESUBSCRIBE.as_secs());
                    warned = true;
                }
                std::thread::sleep(RESUBSCRIBE);
                continue;
            }
        };
        if warned {
            tracing::info!(director = %name, "flow sync: reading the flow log");
        }
        warned = false;
        let mut seen_overruns = 0;
        loop {
            let logged = match log.read(super::flows::MAX_BATCH) {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(director = %name, "flow sync: reading the flow log: {e}; subscribing again");
                    break;
                }
            };
            // The socket's count starts again with a new subscription: add what is new.
            let overruns = log.overruns;
            if overruns > seen_overruns {
                stats
                    .log_overruns
                    .fetch_add(overruns - seen_overruns, Ordering::Relaxed);
            }
            seen_overruns = overruns;
            if logged.is_empty() {
                continue;
            }
            let records = match kernel.lock() {
                Ok(k) => k.describe_flows(&logged),
                Err(p) => p.into_inner().describe_flows(&logged),
            };
            stats.learned.fetch_add(records.len() as u64, Ordering::Relaxed);
            stats
                .unplaced
                .fetch_add((logged.len() - records.len()) as u64, Ordering::Relaxed);
            if !records.is_empty() {
                learned(records);
            }
        }
    }
}

fn pin(name: &str, kernel: &SharedKernel, stats: &FlowStats, rx: Receiver<(Vec<FlowRecord>, u64)>) {
    let mut failing = false;
    while let Ok((flows, learned_at_us)) = rx.recv() {
        let result = match kernel.lock() {
            Ok(mut k) => k.install_flows(&flows, true),
            Err(p) => p.into_inner().install_flows(&flows, true),
        };
        match result {
            Ok(r) => {
                stats.installed.fetch_add(r.installed as u64, Ordering::Relaxed);
                stats.skipped.fetch_add(r.skipped as u64, Ordering::Relaxed);
                stats.observe_lag(learned_at_us, r.installed as u64);
                if failing {
                    tracing::info!(director = %name, "flow sync: pinning flows again");
                    failing = false;
                }
            }
            Err(e) => {
                stats.dropped.fetch_add(flows.len() as u64, Ordering::Relaxed);
                if !failing {
                    tracing::warn!(director = %name, "flow sync: the kernel refused {} flow(s): {e}", flows.len());
                    failing = true;
                }
            }
        }
    }
}

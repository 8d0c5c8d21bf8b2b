//! Process-wide checker counters: probes run, how late each started against its schedule
//! (a histogram in milliseconds), and how long probes took by kind (the `/metrics`
//! check latency histogram). Cheap atomics; read by status, metrics and benchmarks.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

const BUCKETS: usize = 1001; // 0..=999 ms, then ">= 1 s"

/// Upper bounds (seconds) of the probe-duration histogram's buckets.
pub const DURATION_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// The probe kinds, as the duration histogram labels them.
pub const KINDS: [&str; 9] = [
    "TCP_CHECK",
    "HTTP_GET",
    "SSL_GET",
    "MISC_CHECK",
    "UDP_CHECK",
    "PING_CHECK",
    "DNS_CHECK",
    "SMTP_CHECK",
    "FILE_CHECK",
];

/// One kind's probe durations: per-bucket counts (not cumulated), total count, sum in µs.
struct Durations {
    buckets: [AtomicU64; DURATION_BUCKETS.len()],
    count: AtomicU64,
    sum_us: AtomicU64,
}

pub struct Stats {
    probes: AtomicU64,
    late: [AtomicU64; BUCKETS],
    durations: [Durations; KINDS.len()],
}

pub static STATS: Stats = Stats {
    probes: AtomicU64::new(0),
    late: [const { AtomicU64::new(0) }; BUCKETS],
    durations: [const {
        Durations {
            buckets: [const { AtomicU64::new(0) }; DURATION_BUCKETS.len()],
            count: AtomicU64::new(0),
            sum_us: AtomicU64::new(0),
        }
    }; KINDS.len()],
};

/// A snapshot of one kind's probe durations.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DurationCounts {
    /// Per bucket of [`DURATION_BUCKETS`], not cumulated.
    pub buckets: [u64; DURATION_BUCKETS.len()],
    pub count: u64,
    pub sum_seconds: f64,
}

impl Stats {
    pub fn record(&self, lateness: Duration) {
        self.probes.fetch_add(1, Ordering::Relaxed);
        let ms = (lateness.as_millis() as usize).min(BUCKETS - 1);
        self.late[ms].fetch_add(1, Ordering::Relaxed);
    }

    /// A probe of kind `kind` (one of [`KINDS`]) took `took`.
    pub fn probe_took(&self, kind: usize, took: Duration) {
        let Some(d) = self.durations.get(kind) else { return };
        let secs = took.as_secs_f64();
        if let Some(i) = DURATION_BUCKETS.iter().position(|b| secs <= *b) {
            d.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        d.count.fetch_add(1, Ordering::Relaxed);
        d.sum_us.fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }

    /// Probe durations of kind `KINDS[kind]`.
    pub fn durations(&self, kind: usize) -> DurationCounts {
        let Some(d) = self.durations.get(kind) else {
            return DurationCounts::default();
        };
        DurationCounts {
            buckets: std::array::from_fn(|i| d.buckets[i].load(Ordering::Relaxed)),
            count: d.count.load(Ordering::Relaxed),
            sum_seconds: d.sum_us.load(Ordering::Relaxed) as f64 / 1e6,
        }
    }

    pub fn probes(&self) -> u64 {
        self.probes.load(Ordering::Relaxed)
    }

    /// The lateness under which `q` (0..1) of the probes started, in whole ms.
    pub fn lateness_quantile_ms(&self, q: f64) -> u64 {
        let counts: Vec<u64> = self.late.iter().map(|c| c.load(Ordering::Relaxed)).collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return 0;
        }
        let want = ((total as f64) * q).ceil() as u64;
        let mut acc = 0;
        for (ms, c) in counts.iter().enumerate() {
            acc += c;
            if acc >= want {
                return ms as u64;
            }
        }
        (BUCKETS - 1) as u64
    }

    pub fn reset(&self) {
        self.probes.store(0, Ordering::Relaxed);
        for c in &self.late {
            c.store(0, Ordering::Relaxed);
        }
    }
}

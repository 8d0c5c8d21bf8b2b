//! Process-wide checker counters: probes run and how late each started against its
//! schedule (a histogram in milliseconds). Cheap atomics; read by status and benchmarks.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

const BUCKETS: usize = 1001; // 0..=999 ms, then ">= 1 s"

pub struct Stats {
    probes: AtomicU64,
    late: [AtomicU64; BUCKETS],
}

pub static STATS: Stats = Stats {
    probes: AtomicU64::new(0),
    late: [const { AtomicU64::new(0) }; BUCKETS],
};

impl Stats {
    pub fn record(&self, lateness: Duration) {
        self.probes.fetch_add(1, Ordering::Relaxed);
        let ms = (lateness.as_millis() as usize).min(BUCKETS - 1);
        self.late[ms].fetch_add(1, Ordering::Relaxed);
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

//! Who holds a VIP, sampled every 10 ms in several namespaces at once (split-brain tests,
//! issue 23): one thread per namespace reads its addresses (`getifaddrs`, a netlink dump
//! in that namespace) and records (time, holds).

use crate::netns::Netns;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The sampling period.
pub const EVERY: Duration = Duration::from_millis(10);

/// Samples of one namespace: (time since the watch started, holds the VIP).
pub type Samples = Vec<(Duration, bool)>;

pub struct VipWatch {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<Samples>>,
}

/// Whether an IPv4 address of this thread's network namespace is `vip`.
fn holds_here(vip: Ipv4Addr) -> bool {
    let mut ifap: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `ifap` with a list we free below; we only read it.
    if unsafe { libc::getifaddrs(&mut ifap) } != 0 {
        return false;
    }
    let mut found = false;
    let mut p = ifap;
    while !p.is_null() {
        // SAFETY: `p` is a node of the list getifaddrs returned.
        let ifa = unsafe { &*p };
        if !ifa.ifa_addr.is_null() {
            // SAFETY: a non-null ifa_addr points at a sockaddr of its family.
            let family = unsafe { (*ifa.ifa_addr).sa_family };
            if i32::from(family) == libc::AF_INET {
                // SAFETY: AF_INET: the sockaddr is a sockaddr_in.
                let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
                if Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)) == vip {
                    found = true;
                }
            }
        }
        p = ifa.ifa_next;
    }
    // SAFETY: the list getifaddrs returned, freed once.
    unsafe { libc::freeifaddrs(ifap) };
    found
}

impl VipWatch {
    /// Starts sampling whether each of `namespaces` holds `vip`.
    pub fn start(namespaces: &[&Netns], vip: Ipv4Addr) -> VipWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let t0 = Instant::now();
        let threads = namespaces
            .iter()
            .map(|ns| {
                let path = format!("/var/run/netns/{}", ns.name);
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let file = std::fs::File::open(&path).expect("open netns");
                    // SAFETY: setns(2) on this thread only, with a namespace fd just opened.
                    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                    assert_eq!(rc, 0, "setns {path}");
                    let mut out = Vec::new();
                    let mut next = Instant::now();
                    while !stop.load(Ordering::SeqCst) {
                        out.push((t0.elapsed(), holds_here(vip)));
                        next += EVERY;
                        std::thread::sleep(next.saturating_duration_since(Instant::now()));
                    }
                    out
                })
            })
            .collect();
        VipWatch { stop, threads }
    }

    /// Stops; each namespace's samples, in the order given to [`VipWatch::start`].
    pub fn stop(self) -> Vec<Samples> {
        self.stop.store(true, Ordering::SeqCst);
        self.threads
            .into_iter()
            .map(|t| t.join().expect("sampler"))
            .collect()
    }
}

/// The state of `s` at time `t` (its last sample at or before `t`).
pub fn at(s: &Samples, t: Duration) -> bool {
    match s.partition_point(|(x, _)| *x <= t) {
        0 => false,
        i => s[i - 1].1,
    }
}

/// Sampled instants at which two of the namespaces held the VIP at once (each sample of
/// each namespace, against the others' latest state), as a time: count x [`EVERY`].
pub fn overlap(all: &[Samples]) -> Duration {
    let mut both = 0u32;
    for (i, s) in all.iter().enumerate() {
        for &(t, holds) in s {
            if holds && all.iter().enumerate().any(|(j, o)| j != i && at(o, t)) {
                both += 1;
            }
        }
    }
    // Each instant is seen from both sides: count it once.
    EVERY * both.div_ceil(2)
}

/// How long namespace `i` held the VIP in the samples.
pub fn held(all: &[Samples], i: usize) -> Duration {
    EVERY * all[i].iter().filter(|(_, h)| *h).count() as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn overlap_counts_instants_both_held() {
        let a: Samples = vec![(ms(0), true), (ms(10), true), (ms(20), false), (ms(30), false)];
        let b: Samples = vec![(ms(5), false), (ms(15), true), (ms(25), true), (ms(35), true)];
        // a holds at 10 (b false until 15), b holds at 15 (a true since 10): one instant.
        assert_eq!(overlap(&[a.clone(), b.clone()]), ms(10));
        let c: Samples = vec![(ms(0), false), (ms(40), true)];
        assert_eq!(overlap(&[a.clone(), c]), Duration::ZERO);
        assert_eq!(held(&[a, b], 1), ms(30));
    }
}

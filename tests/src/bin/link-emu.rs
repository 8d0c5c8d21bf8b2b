//! A bad link for the chaos lab, in user space (this machine's kernel has no `sch_netem`):
//! relays every Ethernet frame between two interfaces (AF_PACKET, both directions) and,
//! as told on stdin, drops, delays (with jitter, which reorders), and duplicates them.
//!
//! `link-emu IF_A IF_B`; each line on stdin: `LOSS% DELAY_MS JITTER_MS DUP%` (all 0: a
//! clean wire). The interfaces must not offload checksums or segmentation (the lab turns
//! them off with ethtool): a frame is relayed as read.

use std::collections::BinaryHeap;
use std::io::BufRead;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

#[derive(Default)]
struct Params {
    loss: AtomicU32,
    delay_ms: AtomicU32,
    jitter_ms: AtomicU32,
    dup: AtomicU32,
}

/// A frame due at `due` (the heap pops the earliest first; `seq` keeps equal times in
/// arrival order).
struct Due {
    due: Instant,
    seq: u64,
    frame: Vec<u8>,
}

impl PartialEq for Due {
    fn eq(&self, o: &Self) -> bool {
        (self.due, self.seq) == (o.due, o.seq)
    }
}
impl Eq for Due {}
impl PartialOrd for Due {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Due {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (o.due, o.seq).cmp(&(self.due, self.seq))
    }
}

type Queue = Arc<(Mutex<BinaryHeap<Due>>, Condvar)>;

/// An AF_PACKET socket bound to `ifname`, not seeing what it sends itself. Created with
/// protocol 0 (it receives nothing) and given ETH_P_ALL at bind: a socket created with
/// ETH_P_ALL would take frames of every interface until bound, and relay them.
fn packet_socket(ifname: &str) -> std::io::Result<i32> {
    // SAFETY: plain socket(2).
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let name = std::ffi::CString::new(ifname).map_err(std::io::Error::other)?;
    // SAFETY: a NUL-terminated name.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        return Err(std::io::Error::other(format!("no interface {ifname}")));
    }
    // SAFETY: zeroed sockaddr_ll, then the fields bind(2) reads.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
    sll.sll_ifindex = index as i32;
    // SAFETY: bind with a sockaddr_ll of the right size.
    let rc = unsafe {
        libc::bind(
            fd,
            &sll as *const libc::sockaddr_ll as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let one: libc::c_int = 1;
    // SAFETY: setsockopt with an int option.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_PACKET,
            libc::PACKET_IGNORE_OUTGOING,
            &one as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as u32,
        )
    };
    if rc != 0 {
        // Without it we would read our own frames back and relay them in a loop.
        return Err(std::io::Error::last_os_error());
    }
    Ok(fd)
}

/// splitmix64, per thread, seeded from the clock (the schedule's seed decides which
/// faults happen; which frames a 20% loss drops need not be replayable).
struct Rand(u64);
impl Rand {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn percent(&mut self) -> u32 {
        (self.next() % 100) as u32
    }
    fn below(&mut self, n: u32) -> u32 {
        (self.next() % u64::from(n.max(1))) as u32
    }
}

/// Reads frames from `from`, decides their fate, queues them for the sender.
fn read_side(from: i32, params: Arc<Params>, queue: Queue, seed: u64) {
    let mut rand = Rand(seed);
    let mut buf = vec![0u8; 65536];
    let mut seq = 0u64;
    loop {
        // SAFETY: recv into our buffer.
        let n = unsafe { libc::recv(from, buf.as_mut_ptr() as *mut libc::c_void, buf.len(), 0) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                // The interface went away (the lab is being torn down): do not spin.
                std::thread::sleep(Duration::from_millis(50));
            }
            continue;
        }
        if n == 0 {
            continue;
        }
        let frame = buf[..n as usize].to_vec();
        if rand.percent() < params.loss.load(Ordering::Relaxed) {
            continue;
        }
        let copies = if rand.percent() < params.dup.load(Ordering::Relaxed) {
            2
        } else {
            1
        };
        let (delay, jitter) = (
            params.delay_ms.load(Ordering::Relaxed),
            params.jitter_ms.load(Ordering::Relaxed),
        );
        let now = Instant::now();
        let (lock, wake) = &*queue;
        let mut q = match lock.lock() {
            Ok(q) => q,
            Err(p) => p.into_inner(),
        };
        for _ in 0..copies {
            let ms = (delay + rand.below(2 * jitter + 1)).saturating_sub(jitter);
            seq += 1;
            q.push(Due {
                due: now + Duration::from_millis(u64::from(ms)),
                seq,
                frame: frame.clone(),
            });
        }
        wake.notify_one();
    }
}

/// Sends queued frames on `to` when they are due.
fn send_side(to: i32, queue: Queue) {
    let (lock, wake) = &*queue;
    let mut q = match lock.lock() {
        Ok(q) => q,
        Err(p) => p.into_inner(),
    };
    loop {
        let now = Instant::now();
        match q.peek().map(|d| d.due) {
            Some(due) if due <= now => {
                if let Some(d) = q.pop() {
                    // SAFETY: send a frame we own.
                    unsafe {
                        libc::send(to, d.frame.as_ptr() as *const libc::c_void, d.frame.len(), 0);
                    }
                }
            }
            Some(due) => {
                q = match wake.wait_timeout(q, due - now) {
                    Ok((q, _)) => q,
                    Err(p) => p.into_inner().0,
                };
            }
            None => {
                q = match wake.wait(q) {
                    Ok(q) => q,
                    Err(p) => p.into_inner(),
                };
            }
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 {
        eprintln!("usage: link-emu IF_A IF_B (stdin: LOSS% DELAY_MS JITTER_MS DUP% per line)");
        std::process::exit(2);
    }
    let (a, b) = match (packet_socket(&args[1]), packet_socket(&args[2])) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("link-emu: {e}");
            std::process::exit(1);
        }
    };
    let params = Arc::new(Params::default());
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1);
    for (i, (from, to)) in [(a, b), (b, a)].into_iter().enumerate() {
        let queue: Queue = Arc::new((Mutex::new(BinaryHeap::new()), Condvar::new()));
        let (p, q) = (params.clone(), queue.clone());
        std::thread::spawn(move || read_side(from, p, q, seed.rotate_left(i as u32 * 17)));
        std::thread::spawn(move || send_side(to, queue));
    }
    println!("ready");
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let v: Vec<u32> = line.split_whitespace().filter_map(|w| w.parse().ok()).collect();
        if let [loss, delay, jitter, dup] = v[..] {
            params.loss.store(loss.min(100), Ordering::Relaxed);
            params.delay_ms.store(delay, Ordering::Relaxed);
            params.jitter_ms.store(jitter, Ordering::Relaxed);
            params.dup.store(dup.min(100), Ordering::Relaxed);
            println!("set {loss} {delay} {jitter} {dup}");
        } else {
            eprintln!("link-emu: expected `LOSS DELAY_MS JITTER_MS DUP`, got {line:?}");
        }
    }
    // stdin closed: keep relaying with the last settings (the lab kills us when it goes).
    loop {
        std::thread::park();
    }
}

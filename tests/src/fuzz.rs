//! A bounded-time, proptest-driven mutational fuzzer for the decoders that read what
//! others send us (config files, VRRP packets, kernel netlink replies, admin requests).
//!
//! Each target has seeds (valid inputs) and a dictionary of tokens; proptest generates a
//! seed and a list of mutations (bit flips, interesting bytes, insertions, deletions,
//! duplications, splices from other seeds, dictionary tokens) and runs the target on the
//! result, catching panics. A crash is shrunk by proptest (fewer, smaller mutations),
//! written to `tests/fuzz/<target>/crash-<sha256>` and reported in hex. Every file in
//! `tests/fuzz/<target>/` is a regression fixture: it is run first and must not crash,
//! and it also seeds the mutations. An input that runs longer than [`HANG`] is saved as
//! `hang-<sha256>` and aborts the run.
//!
//! The time budget is `FUZZ_SECONDS` (default 60) per target; `FUZZ_SEED` replays a run.

use proptest::prelude::*;
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use std::cell::RefCell;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

/// An input taking longer than this is a hang.
pub const HANG: Duration = Duration::from_secs(10);

#[derive(Clone, Debug)]
pub enum Mutation {
    Flip(usize, u8),
    Set(usize, u8),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    Duplicate(usize, usize, usize),
    Token(usize, usize),
    Splice(usize, usize, usize, usize),
    Truncate(usize),
}

const INTERESTING: [u8; 12] = [0, 1, 0x7f, 0x80, 0xff, b'{', b'}', b'"', b'\n', b' ', b'\\', b'%'];

fn mutation(seeds: usize, tokens: usize) -> impl Strategy<Value = Mutation> {
    let tokens = tokens.max(1);
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(p, b)| Mutation::Flip(p, b)),
        (any::<usize>(), 0..INTERESTING.len()).prop_map(|(p, i)| Mutation::Set(p, INTERESTING[i])),
        (any::<usize>(), any::<u8>()).prop_map(|(p, b)| Mutation::Set(p, b)),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..16)).prop_map(|(p, b)| Mutation::Insert(p, b)),
        (any::<usize>(), 1usize..64).prop_map(|(p, n)| Mutation::Delete(p, n)),
        (any::<usize>(), 1usize..64, any::<usize>()).prop_map(|(p, n, to)| Mutation::Duplicate(p, n, to)),
        (any::<usize>(), 0..tokens).prop_map(|(p, t)| Mutation::Token(p, t)),
        (any::<usize>(), 0..seeds, any::<usize>(), 1usize..256)
            .prop_map(|(p, s, from, n)| Mutation::Splice(p, s, from, n)),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn at(p: usize, len: usize) -> usize {
    if len == 0 {
        0
    } else {
        p % (len + 1)
    }
}

/// Applies `muts` to seed `seed`.
pub fn apply(seeds: &[Vec<u8>], tokens: &[&[u8]], seed: usize, muts: &[Mutation]) -> Vec<u8> {
    let mut b = seeds[seed % seeds.len()].clone();
    for m in muts {
        let len = b.len();
        match m {
            Mutation::Flip(p, bit) if len > 0 => b[p % len] ^= 1 << bit,
            Mutation::Set(p, v) if len > 0 => b[p % len] = *v,
            Mutation::Insert(p, bytes) => {
                let p = at(*p, len);
                b.splice(p..p, bytes.iter().copied());
            }
            Mutation::Delete(p, n) if len > 0 => {
                let p = p % len;
                let end = (p + n).min(len);
                b.drain(p..end);
            }
            Mutation::Duplicate(p, n, to) if len > 0 => {
                let p = p % len;
                let chunk: Vec<u8> = b[p..(p + n).min(len)].to_vec();
                let to = at(*to, len);
                b.splice(to..to, chunk);
            }
            Mutation::Token(p, t) if !tokens.is_empty() => {
                let p = at(*p, len);
                b.splice(p..p, tokens[t % tokens.len()].iter().copied());
            }
            Mutation::Splice(p, s, from, n) => {
                let other = &seeds[s % seeds.len()];
                if !other.is_empty() {
                    let from = from % other.len();
                    let chunk = other[from..(from + n).min(other.len())].to_vec();
                    let p = at(*p, len);
                    let end = (p + chunk.len()).min(len);
                    b.splice(p..end, chunk);
                }
            }
            Mutation::Truncate(p) => b.truncate(at(*p, len)),
            _ => {}
        }
        if b.len() > 1 << 20 {
            b.truncate(1 << 20);
        }
    }
    b
}

thread_local! {
    static LAST_PANIC: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Panics in targets are caught; their message is kept instead of printed.
fn quiet_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let fuzzing = LAST_PANIC.with(|l| {
                let mut l = l.borrow_mut();
                if l.as_str() == "\u{0}armed" {
                    *l = info.to_string();
                    true
                } else {
                    false
                }
            });
            if !fuzzing {
                default(info);
            }
        }));
    });
}

/// Runs `f` on `input`: `Some(message)` if it panicked.
fn crashes(f: &(dyn Fn(&[u8]) + Sync), input: &[u8]) -> Option<String> {
    LAST_PANIC.with(|l| *l.borrow_mut() = "\u{0}armed".into());
    let r = std::panic::catch_unwind(AssertUnwindSafe(|| f(input)));
    let msg = LAST_PANIC.with(|l| std::mem::take(&mut *l.borrow_mut()));
    r.err().map(|_| msg)
}

pub fn fixtures_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join(target)
}

fn save(dir: &std::path::Path, kind: &str, input: &[u8]) -> PathBuf {
    use sha2::{Digest, Sha256};
    let _ = std::fs::create_dir_all(dir);
    let name = format!("{kind}-{}", &hex::encode(Sha256::digest(input))[..16]);
    let p = dir.join(name);
    let _ = std::fs::write(&p, input);
    p
}

fn show(input: &[u8]) -> String {
    let head = &input[..input.len().min(512)];
    format!(
        "{} bytes: {:?}{}",
        input.len(),
        String::from_utf8_lossy(head),
        if input.len() > 512 { " ..." } else { "" }
    )
}

/// Delta-debugging style reduction of a crashing input: removes chunks of decreasing
/// size (half the input down to one byte) as long as the input still crashes, within
/// `max_runs` runs of the target. Returns the reduced input and the last crash message
/// seen on it (None when no removal kept the crash).
fn minimise_bytes(
    mut input: Vec<u8>,
    run: &dyn Fn(&[u8]) -> Option<String>,
    max_runs: usize,
) -> (Vec<u8>, Option<String>) {
    let mut msg = None;
    let mut runs = 0;
    let mut chunk = (input.len() / 2).max(1);
    loop {
        let mut removed_any = false;
        let mut at = 0;
        while at < input.len() && runs < max_runs {
            let end = (at + chunk).min(input.len());
            let mut cand = Vec::with_capacity(input.len() - (end - at));
            cand.extend_from_slice(&input[..at]);
            cand.extend_from_slice(&input[end..]);
            runs += 1;
            match run(&cand) {
                Some(m) => {
                    msg = Some(m);
                    input = cand;
                    removed_any = true;
                }
                None => at += chunk,
            }
        }
        if runs >= max_runs || (chunk == 1 && !removed_any) {
            return (input, msg);
        }
        if !removed_any {
            chunk = (chunk / 2).max(1);
        }
    }
}

pub struct Target<'a> {
    pub name: &'a str,
    pub seeds: Vec<Vec<u8>>,
    pub tokens: &'a [&'a [u8]],
    pub run: &'a (dyn Fn(&[u8]) + Sync),
}

/// What a run did.
#[derive(Debug)]
pub struct Report {
    pub regressions: usize,
    pub execs: u64,
    pub seconds: f64,
}

/// The input being run, and since when (for the watchdog).
type Running = Option<(Instant, Vec<u8>)>;

/// A crashing input, saved.
#[derive(Debug)]
pub struct Crash {
    pub message: String,
    pub input: Vec<u8>,
    pub saved: PathBuf,
}

/// Replays the target's fixtures, then fuzzes it for `FUZZ_SECONDS`. Panics (failing the
/// test) on a crash, after saving it as a fixture.
pub fn fuzz(t: Target<'_>) -> Report {
    let budget = Duration::from_secs(
        std::env::var("FUZZ_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(60),
    );
    let name = t.name.to_string();
    match fuzz_in(t, &fixtures_dir(&name), budget) {
        Ok(r) => r,
        Err(c) => panic!(
            "{name}: {}\nsaved as {} (commit it: it becomes a regression fixture)\ninput {}",
            c.message,
            c.saved.display(),
            show(&c.input)
        ),
    }
}

/// [`fuzz`] with its fixtures in `dir` and a budget.
pub fn fuzz_in(t: Target<'_>, dir: &std::path::Path, budget: Duration) -> Result<Report, Crash> {
    quiet_panics();
    // Fixtures first: each must run clean.
    let mut seeds = t.seeds;
    let mut regressions = 0;
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.sort();
    for f in files {
        let Ok(input) = std::fs::read(&f) else { continue };
        if let Some(msg) = crashes(t.run, &input) {
            return Err(Crash {
                message: format!("regression fixture crashes again: {msg}"),
                input,
                saved: f,
            });
        }
        regressions += 1;
        seeds.push(input);
    }
    if seeds.is_empty() {
        seeds.push(Vec::new());
    }

    // A watchdog saves an input that hangs and stops the run.
    let current: Arc<Mutex<Running>> = Arc::new(Mutex::new(None));
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watchdog = {
        let current = current.clone();
        let done = done.clone();
        let name = t.name.to_string();
        let dir = dir.to_path_buf();
        std::thread::spawn(move || {
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(250));
                let hung = current.lock().ok().and_then(|c| {
                    c.as_ref()
                        .filter(|(t, _)| t.elapsed() > HANG)
                        .map(|(_, i)| i.clone())
                });
                if let Some(input) = hung {
                    let p = save(&dir, "hang", &input);
                    eprintln!(
                        "{name}: an input ran longer than {HANG:?}; saved as {}: {}",
                        p.display(),
                        show(&input)
                    );
                    std::process::abort();
                }
            }
        })
    };

    let seed: u64 = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&(t.name.len() as u64).to_le_bytes());
    let mut runner = TestRunner::new_with_rng(
        Config {
            failure_persistence: None,
            ..Config::default()
        },
        TestRng::from_seed(RngAlgorithm::ChaCha, &key),
    );
    let strategy = (
        0..seeds.len(),
        prop::collection::vec(mutation(seeds.len(), t.tokens.len()), 1..8),
    );
    let start = Instant::now();
    let mut execs = 0u64;
    let run_one = |input: &[u8]| -> Option<String> {
        if let Ok(mut c) = current.lock() {
            *c = Some((Instant::now(), input.to_vec()));
        }
        let r = crashes(t.run, input);
        if let Ok(mut c) = current.lock() {
            *c = None;
        }
        r
    };
    while start.elapsed() < budget {
        let Ok(mut tree) = strategy.new_tree(&mut runner) else {
            continue;
        };
        let (s, muts) = tree.current();
        let input = apply(&seeds, t.tokens, s, &muts);
        execs += 1;
        let Some(mut msg) = run_one(&input) else { continue };
        // Shrink: fewer and smaller mutations that still crash.
        let mut smallest = input;
        let mut steps = 0;
        if tree.simplify() {
            loop {
                steps += 1;
                let (s, muts) = tree.current();
                let cand = apply(&seeds, t.tokens, s, &muts);
                let more = match run_one(&cand) {
                    Some(m) => {
                        msg = m;
                        smallest = cand;
                        tree.simplify()
                    }
                    None => tree.complicate(),
                };
                if !more || steps > 5000 {
                    break;
                }
            }
        }
        // Then bytes: drop chunks (halves down to single bytes) while it still crashes.
        let (smallest, m) = minimise_bytes(smallest, &run_one, 20_000);
        if let Some(m) = m {
            msg = m;
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = watchdog.join();
        let saved = save(dir, "crash", &smallest);
        return Err(Crash {
            message: format!("crash after {execs} inputs (FUZZ_SEED={seed}): {msg}"),
            input: smallest,
            saved,
        });
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = watchdog.join();
    let seconds = start.elapsed().as_secs_f64();
    eprintln!(
        "{}: {execs} inputs in {seconds:.0} s ({:.0}/s), {regressions} regression fixtures, FUZZ_SEED={seed}, no crash",
        t.name,
        execs as f64 / seconds
    );
    Ok(Report {
        regressions,
        execs,
        seconds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutations_stay_in_bounds() {
        let seeds = vec![b"abc".to_vec(), Vec::new()];
        let tokens: &[&[u8]] = &[b"{"];
        let all = [
            Mutation::Flip(99, 7),
            Mutation::Set(5, 0),
            Mutation::Insert(100, vec![1, 2]),
            Mutation::Delete(2, 100),
            Mutation::Duplicate(1, 50, 9),
            Mutation::Token(3, 8),
            Mutation::Splice(7, 0, 9, 200),
            Mutation::Truncate(1),
        ];
        for s in 0..2 {
            for m in &all {
                let _ = apply(&seeds, tokens, s, std::slice::from_ref(m));
            }
            let _ = apply(&seeds, tokens, s, &all);
        }
        assert_eq!(
            apply(&seeds, tokens, 0, &[Mutation::Insert(0, b"x".to_vec())]),
            b"xabc"
        );
    }

    #[test]
    fn byte_minimisation_keeps_only_what_the_crash_needs() {
        let needs_both = |b: &[u8]| -> Option<String> {
            (b.contains(&b'X') && b.windows(2).any(|w| w == b"YZ")).then(|| "both".to_string())
        };
        let (min, msg) = minimise_bytes(b"aaXbbbbbbbbYZcc".to_vec(), &needs_both, 10_000);
        assert_eq!(min, b"XYZ");
        assert_eq!(msg.as_deref(), Some("both"));
        // Nothing removable: the input and no message come back.
        let (same, msg) = minimise_bytes(b"XYZ".to_vec(), &needs_both, 10_000);
        assert_eq!((same.as_slice(), msg), (&b"XYZ"[..], None));
        // The run budget is respected.
        let runs = std::cell::Cell::new(0);
        let never = |_: &[u8]| -> Option<String> {
            runs.set(runs.get() + 1);
            None
        };
        let _ = minimise_bytes(vec![b'X'; 4000], &never, 50);
        assert_eq!(runs.get(), 50);
    }

    fn boom(b: &[u8]) {
        if b.windows(4).any(|w| w == b"BOOM") {
            panic!("found it");
        }
    }

    #[test]
    fn a_planted_crash_is_found_shrunk_saved_and_replayed() {
        let dir = tempfile::tempdir().unwrap();
        let target = || Target {
            name: "planted",
            seeds: vec![b"a BOO b".to_vec(), b"xyz".to_vec()],
            tokens: &[b"M"],
            run: &boom,
        };
        let c = fuzz_in(target(), dir.path(), Duration::from_secs(20)).expect_err("the planted crash");
        assert!(c.message.contains("found it"), "{}", c.message);
        // Byte-level reduction makes the fixture 1-minimal: nothing but the trigger.
        assert_eq!(
            c.input,
            b"BOOM",
            "shrunk: {:?}",
            String::from_utf8_lossy(&c.input)
        );
        assert_eq!(std::fs::read(&c.saved).unwrap(), c.input);
        // Next run: the saved crash is a regression fixture and fails at once.
        let t = Instant::now();
        let again = fuzz_in(target(), dir.path(), Duration::from_secs(20)).expect_err("replayed");
        assert!(again.message.contains("regression fixture"), "{}", again.message);
        assert!(t.elapsed() < Duration::from_secs(2));
        // A clean target runs out its budget.
        let clean = Target {
            name: "clean",
            seeds: vec![b"abc".to_vec()],
            tokens: &[],
            run: &|b: &[u8]| {
                let _ = b.len();
            },
        };
        let r = fuzz_in(clean, &dir.path().join("clean"), Duration::from_millis(300)).unwrap();
        assert!(r.execs > 100 && r.regressions == 0, "{r:?}");
    }
}

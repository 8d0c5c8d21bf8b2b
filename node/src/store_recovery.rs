//! A store that fails a write (a full disk, an I/O error) is answered, never fatal: openraft
//! stops its Raft instance for good on a storage error and sled refuses every write after
//! one, so this task notices the stop, says why (log, event, status, and a 503 naming this
//! director and the cause to every proposal sent here), waits until the data directory
//! takes writes again, and reopens the store with a new Raft instance, which catches up
//! from the leader. The actors keep the VIP and the table they have throughout.
//!
//! Nothing is acknowledged that is not durable: openraft counts a log entry towards a
//! commit only once this director's store flushed it, and a failed flush stops Raft here
//! before it can count.

use crate::director::{now_ms, DirectorNode, StoreFailure};
use openraft::error::Fatal;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// How often a stopped store is checked for room again.
const RETRY: Duration = Duration::from_secs(1);

/// Room the data directory must take (written, synced and removed) before the store is
/// reopened: a few of sled's segments (512 KiB each), so the reopened store does not stop
/// again at its first write.
const PROBE_BYTES: usize = 4 << 20;

/// The longest pause between two probes when the store keeps failing again.
const MAX_RETRY: Duration = Duration::from_secs(30);

/// A failure this soon after the last recovery counts as the same trouble coming back:
/// the pause between probes doubles.
const RELAPSE: Duration = Duration::from_secs(60);

pub fn spawn(node: Arc<DirectorNode>) {
    tokio::spawn(async move {
        let mut pause = RETRY;
        let mut last_recovery: Option<tokio::time::Instant> = None;
        loop {
            let cause = stopped(&node).await;
            // What this director had applied: after the reopen it must get there again
            // before it serves its configuration or lifts its fence (applied batches are
            // not flushed one by one, so the store may hold less).
            let applied = node.metrics().last_applied.map(|l| l.index).unwrap_or(0);
            pause = match last_recovery {
                Some(t) if t.elapsed() < RELAPSE => (pause * 2).min(MAX_RETRY),
                _ => RETRY,
            };
            fail(&node, cause);
            reopen(&node, pause).await;
            if caught_up(&node, applied).await {
                last_recovery = Some(tokio::time::Instant::now());
                let down = node
                    .store_failure()
                    .map(|f| now_ms().saturating_sub(f.since_ms))
                    .unwrap_or(0);
                node.set_store_failure(None);
                tracing::info!(director = %node.name, down_ms = down,
                    "store reopened and caught up: raft running again");
                node.events.record(
                    "store",
                    &node.name,
                    &format!("store reopened after {down} ms, caught up, raft running again"),
                    None,
                );
            }
        }
    });
}

/// Waits until this director's Raft instance stops on an error; its cause. A stop we
/// asked for (hanode shutting down, or the instance replaced by a reopen) is not one; an
/// instance whose task ended without saying why (a panic) is.
async fn stopped(node: &DirectorNode) -> String {
    let failed = |m: &raft_store::types::RaftMetrics| match &m.running_state {
        Err(Fatal::Stopped) | Ok(()) => None,
        Err(fatal) => Some(fatal.to_string()),
    };
    loop {
        let mut metrics = node.raft().metrics();
        loop {
            if let Some(cause) = failed(&metrics.borrow()) {
                return cause;
            }
            if metrics.changed().await.is_err() {
                // The instance ended: its last metrics say why.
                let last = metrics.borrow().running_state.clone();
                match last {
                    Err(Fatal::Stopped) => break,
                    Err(fatal) => return fatal.to_string(),
                    Ok(()) => return "raft stopped without a cause (its task ended: a panic?)".into(),
                }
            }
        }
        // Stopped on purpose: a reopen put a new instance in place, or hanode is exiting.
        tokio::time::sleep(RETRY).await;
    }
}

fn fail(node: &DirectorNode, cause: String) {
    let cause = plain_cause(&cause);
    tracing::error!(director = %node.name, "store failed, raft stopped here: {cause}; \
        keeping the VIP and the table this director has, reopening the store once it takes writes");
    node.events
        .record("store", &node.name, &format!("store failed: {cause}"), None);
    node.set_store_failure(Some(StoreFailure {
        cause,
        since_ms: now_ms(),
    }));
}

/// Adds `what` to the failure's cause as it stands now (the original cause first).
fn note(node: &DirectorNode, what: &str) {
    if let Some(mut f) = node.store_failure() {
        let first = f.cause.split("; ").next().unwrap_or("").to_string();
        f.cause = format!("{first}; {what}");
        node.set_store_failure(Some(f));
    }
}

/// Probes the data directory every `pause` until it takes writes, then reopens the store.
async fn reopen(node: &DirectorNode, pause: Duration) {
    let mut said = String::new();
    loop {
        tokio::time::sleep(pause).await;
        let dir = node.store_dir().to_path_buf();
        let probe = tokio::task::spawn_blocking(move || takes_writes(&dir)).await;
        let problem = match probe {
            Ok(Ok(())) => match node.reopen_store().await {
                Ok(()) => {
                    tracing::info!(director = %node.name, "store reopened: raft catching up from the leader");
                    return;
                }
                Err(e) => format!("{e:#}"),
            },
            Ok(Err(e)) => format!("the data directory still takes no writes: {e}"),
            Err(e) => format!("probe: {e}"),
        };
        if problem != said {
            tracing::warn!(director = %node.name, "store not reopened yet: {problem}");
            note(node, &problem);
            said = problem;
        }
    }
}

/// Waits until the new instance has applied at least log index `applied` again (true), or
/// stops on an error again (false; the caller starts over).
async fn caught_up(node: &DirectorNode, applied: u64) -> bool {
    note(
        node,
        &format!("store reopened, catching up to log index {applied}"),
    );
    let mut metrics = node.raft().metrics();
    loop {
        {
            let m = metrics.borrow();
            if m.running_state.is_err() {
                return false;
            }
            if m.last_applied.map(|l| l.index).unwrap_or(0) >= applied {
                return true;
            }
        }
        if metrics.changed().await.is_err() {
            return false;
        }
    }
}

/// Whether `dir` takes [`PROBE_BYTES`] (written, synced, removed).
fn takes_writes(dir: &Path) -> std::io::Result<()> {
    let path = dir.join(".space-probe");
    let result = (|| {
        let mut f = std::fs::File::create(&path)?;
        f.write_all(&vec![0u8; PROBE_BYTES])?;
        f.sync_all()
    })();
    let _ = std::fs::remove_file(&path);
    result
}

/// openraft's fatal error text reduced to what an operator needs: the OS error and what
/// was being written, e.g. "No space left on device (os error 28), while: write logs".
pub fn plain_cause(fatal: &str) -> String {
    let (what, why) = match fatal.find("when ").map(|at| &fatal[at + 5..]) {
        Some(rest) => match rest.split_once(": ") {
            Some((what, why)) => (Some(what.to_lowercase()), why),
            None => (None, fatal),
        },
        None => (None, fatal),
    };
    // An io::Error's Debug form: `Os { code: 28, kind: StorageFull, message: "No space.." }`.
    let field = |name: &str, end: char| -> Option<&str> {
        let at = why.find(name)? + name.len();
        why[at..].split(end).next()
    };
    let why = match (field("message: \"", '"'), field("code: ", ',')) {
        (Some(m), Some(c)) => format!("{m} (os error {c})"),
        _ => why.to_string(),
    };
    match what {
        Some(w) => format!("{why}, while: {w}"),
        None => why,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cause_names_the_os_error_and_what_was_written() {
        assert_eq!(
            plain_cause("storage error: when Write Logs: No space left on device (os error 28)"),
            "No space left on device (os error 28), while: write logs"
        );
        assert_eq!(
            plain_cause(
                "storage error: when Write Logs: sled::result::Error: IO error: Os { code: 28, \
                 kind: StorageFull, message: \"No space left on device\" }"
            ),
            "No space left on device (os error 28), while: write logs"
        );
        assert_eq!(plain_cause("panicked"), "panicked");
    }

    #[test]
    fn a_directory_that_takes_writes_passes_the_probe_and_keeps_nothing() {
        let dir = tempfile::tempdir().unwrap();
        takes_writes(dir.path()).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        assert!(takes_writes(&dir.path().join("missing")).is_err());
    }
}

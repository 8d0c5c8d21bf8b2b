//! The director's local, append-only journal of runtime events (VRRP transitions, checker
//! transitions, table syncs, config fence changes): a sled tree keyed by sequence number,
//! one encoded event per value (see [`encode`]), flushed on every append so a crash loses
//! none. Committed configuration changes live in the Raft history; `hactl events` merges
//! both by time.

use ha_config::api::{EventDetail, EventItem};
use raft_store::state::HistoryEntry;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Runtime events a director keeps by default (a few hundred bytes each).
pub const DEFAULT_MAX_EVENTS: u64 = 500_000;
/// The smallest cap accepted.
pub const MIN_MAX_EVENTS: u64 = 10;

/// Where the journal thread reads the committed history from (retention folds the
/// dropped events under the configurations they ran).
pub type HistorySource = Box<dyn Fn() -> anyhow::Result<Vec<HistoryEntry>> + Send>;

/// Writes a journal on its own thread, in order. Recording never waits for the disk: an
/// fsync stalled by writeback would otherwise hold up the actor that records events, and
/// with it the VRRP instances that share its thread (and the death signals it forwards).
#[derive(Clone)]
pub struct JournalWriter {
    tx: std::sync::mpsc::Sender<Pending>,
}

/// At most this many queued events are written with one flush.
const MAX_GROUP: usize = 1024;

/// An event waiting for the journal thread.
#[derive(Clone)]
struct Pending {
    at_ms: u64,
    kind: String,
    subject: String,
    summary: String,
    detail: Option<EventDetail>,
}

/// Events held back while the journal cannot be written (a full disk, the store being
/// reopened) are kept up to this many, then the oldest are dropped (and counted).
const MAX_HELD: usize = 100_000;

/// The writer thread. Group commit: what queued while the last flush ran is written and
/// flushed together (40,000 checkers coming up at start are a few hundred flushes, not
/// 40,000), still in order, still flushed before the next. Events that could not be
/// written are kept and tried again every second, before newer ones, so a full disk loses
/// no event (a group written in part before the failure may be written twice).
fn write_events(journal: &Journal, history: &HistorySource, rx: &std::sync::mpsc::Receiver<Pending>) {
    use std::sync::mpsc::RecvTimeoutError;
    let mut held: Vec<Pending> = Vec::new();
    loop {
        let first = if held.is_empty() {
            match rx.recv() {
                Ok(p) => Some(p),
                Err(_) => return,
            }
        } else {
            match rx.recv_timeout(std::time::Duration::from_secs(1)) {
                Ok(p) => Some(p),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return,
            }
        };
        let was_held = held.len();
        let mut group = std::mem::take(&mut held);
        group.extend(first);
        let room = MAX_GROUP.saturating_sub(group.len()).max(1);
        group.extend(rx.try_iter().take(room));
        match journal.append_group(&group) {
            Ok(_) => {
                if was_held > 0 {
                    tracing::info!(node = %journal.node, events = was_held,
                        "event journal writable again: the held events are written");
                }
                if let Err(e) = crate::retention::enforce(journal, history) {
                    tracing::error!(node = %journal.node, "event journal retention: {e:#}");
                }
            }
            Err(e) => {
                if was_held == 0 {
                    tracing::error!(node = %journal.node,
                        "event journal: {e:#}; holding events in memory until it can be written");
                }
                if group.len() > MAX_HELD {
                    let over = group.len() - MAX_HELD;
                    group.drain(..over);
                    journal.dropped.fetch_add(over as u64, Ordering::Relaxed);
                    tracing::error!(node = %journal.node, dropped = over,
                        "event journal: too many events held, the oldest dropped");
                }
                held = group;
            }
        }
        journal.held.store(held.len() as u64, Ordering::Relaxed);
    }
}

impl JournalWriter {
    /// After each append the cap on kept events is enforced (see [`crate::retention`]).
    pub fn spawn(journal: std::sync::Arc<Journal>, history: HistorySource) -> std::io::Result<JournalWriter> {
        let (tx, rx) = std::sync::mpsc::channel::<Pending>();
        std::thread::Builder::new()
            .name("hanode-journal".into())
            .spawn(move || write_events(&journal, &history, &rx))?;
        Ok(JournalWriter { tx })
    }

    /// Queues one event, stamped now.
    pub fn record(&self, kind: &str, subject: &str, summary: &str, detail: Option<EventDetail>) {
        let _ = self.tx.send(Pending {
            at_ms: crate::director::now_ms(),
            kind: kind.to_string(),
            subject: subject.to_string(),
            summary: summary.to_string(),
            detail,
        });
    }
}

pub struct Journal {
    /// None while the store is being reopened ([`Self::detach`]).
    tree: std::sync::RwLock<Option<sled::Tree>>,
    pub(crate) node: String,
    /// The sequence numbers kept (the lock also orders appends and truncations).
    bounds: Mutex<Bounds>,
    /// The cap on kept events (a checkpoint counts as one).
    max_events: u64,
    /// Runtime events dropped by retention since this journal began.
    dropped: AtomicU64,
    /// Events the writer holds in memory because the journal cannot be written.
    held: AtomicU64,
}

/// The sequence numbers a journal holds: `first..next`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounds {
    pub first: u64,
    pub next: u64,
}

impl Bounds {
    pub fn len(&self) -> u64 {
        self.next - self.first
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The first byte of an event stored in bincode, schema 1 (the fields of `EventItem` as
/// they are now). bincode is not self-describing: a change to those types gets a new tag,
/// and the decoder keeps reading the old ones.
const BINCODE_V1: u8 = 0xb1;
/// Events above this size are refused when read (a journal value is a few hundred bytes).
const MAX_EVENT_BYTES: usize = 16 << 20;

fn codec() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_EVENT_BYTES>()
}

/// How an event is stored: its tag, then bincode (about 3x faster to read back than JSON,
/// which replay and retention read a whole journal of).
pub fn encode(e: &EventItem) -> anyhow::Result<Vec<u8>> {
    let mut out = vec![BINCODE_V1];
    bincode::encode_into_std_write(e, &mut out, codec())?;
    Ok(out)
}

/// Reads a stored event: bincode (tagged), or JSON (journals of earlier hanodes).
pub fn decode(v: &[u8]) -> anyhow::Result<EventItem> {
    match v.first() {
        Some(&BINCODE_V1) => {
            let (e, used) = bincode::decode_from_slice(&v[1..], codec())?;
            if used + 1 != v.len() {
                anyhow::bail!("journal event: {} trailing byte(s)", v.len() - used - 1);
            }
            Ok(e)
        }
        Some(b'{') => Ok(serde_json::from_slice(v)?),
        Some(b) => anyhow::bail!("journal event: unknown encoding (first byte {b:#04x})"),
        None => anyhow::bail!("journal event: empty value"),
    }
}

fn seq_of(k: &[u8]) -> anyhow::Result<u64> {
    let bytes: [u8; 8] = k.try_into().map_err(|_| anyhow::anyhow!("journal: bad key"))?;
    Ok(u64::from_be_bytes(bytes))
}

/// The journal's tree in `db`, its bounds and the count of events retention dropped.
fn load(db: &sled::Db) -> anyhow::Result<(sled::Tree, Bounds, u64)> {
    let tree = db.open_tree("journal")?;
    let next = match tree.last()? {
        Some((k, _)) => seq_of(&k)? + 1,
        None => 1,
    };
    let (first, dropped) = match tree.first()? {
        Some((k, v)) => {
            let e = decode(&v)?;
            let dropped = match e.detail {
                Some(EventDetail::Checkpoint(c)) => c.dropped,
                _ => 0,
            };
            (seq_of(&k)?, dropped)
        }
        None => (next, 0),
    };
    Ok((tree, Bounds { first, next }, dropped))
}

impl Journal {
    /// `max_events`: the cap on kept events (at least [`MIN_MAX_EVENTS`]).
    pub fn open(db: &sled::Db, node: &str, max_events: u64) -> anyhow::Result<Journal> {
        if max_events < MIN_MAX_EVENTS {
            anyhow::bail!("journal max_events must be at least {MIN_MAX_EVENTS}, got {max_events}");
        }
        let (tree, bounds, dropped) = load(db)?;
        Ok(Journal {
            tree: std::sync::RwLock::new(Some(tree)),
            node: node.to_string(),
            bounds: Mutex::new(bounds),
            max_events,
            dropped: AtomicU64::new(dropped),
            held: AtomicU64::new(0),
        })
    }

    /// The store's tree, or an error while it is detached.
    fn tree(&self) -> anyhow::Result<sled::Tree> {
        self.tree
            .read()
            .ok()
            .and_then(|t| t.clone())
            .ok_or_else(|| anyhow::anyhow!("the store is being reopened"))
    }

    /// Lets go of the store so that it can be reopened; appends and reads fail until
    /// [`Self::reattach`].
    pub fn detach(&self) {
        if let Ok(mut t) = self.tree.write() {
            *t = None;
        }
    }

    /// Continues in a reopened store, from what is durable there.
    pub fn reattach(&self, db: &sled::Db) -> anyhow::Result<()> {
        let (tree, bounds, dropped) = load(db)?;
        let mut b = self
            .bounds
            .lock()
            .map_err(|_| anyhow::anyhow!("journal lock poisoned"))?;
        *b = bounds;
        // Events dropped while held in memory were never stored: keep counting them.
        self.dropped.fetch_max(dropped, Ordering::Relaxed);
        if let Ok(mut t) = self.tree.write() {
            *t = Some(tree);
        }
        Ok(())
    }

    /// Events held in memory until the journal can be written again.
    pub fn held(&self) -> u64 {
        self.held.load(Ordering::Relaxed)
    }

    pub fn max_events(&self) -> u64 {
        self.max_events
    }

    /// Runtime events dropped by retention so far (kept across restarts in the checkpoint).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    pub fn bounds(&self) -> anyhow::Result<Bounds> {
        Ok(*self
            .bounds
            .lock()
            .map_err(|_| anyhow::anyhow!("journal lock poisoned"))?)
    }

    /// Replaces events `first..=cut` by `checkpoint` (stored at `cut`), atomically: a
    /// crash leaves either all of them or the checkpoint. `first` must be the first kept.
    pub fn replace_prefix(&self, first: u64, cut: u64, checkpoint: &EventItem) -> anyhow::Result<()> {
        let Some(EventDetail::Checkpoint(c)) = &checkpoint.detail else {
            anyhow::bail!("journal: only a checkpoint event can replace events");
        };
        let mut b = self
            .bounds
            .lock()
            .map_err(|_| anyhow::anyhow!("journal lock poisoned"))?;
        if b.first != first || cut < first || cut >= b.next || checkpoint.seq != cut {
            anyhow::bail!(
                "journal: cannot replace {first}..={cut} (it holds {}..{})",
                b.first,
                b.next
            );
        }
        let mut batch = sled::Batch::default();
        for seq in first..cut {
            batch.remove(&seq.to_be_bytes());
        }
        batch.insert(&cut.to_be_bytes(), encode(checkpoint)?);
        let tree = self.tree()?;
        tree.apply_batch(batch)?;
        tree.flush()?;
        b.first = cut;
        self.dropped.store(c.dropped, Ordering::Relaxed);
        Ok(())
    }

    /// Appends one event stamped now; returns its sequence number.
    pub fn append(&self, kind: &str, subject: &str, summary: &str) -> anyhow::Result<u64> {
        self.append_at(crate::director::now_ms(), kind, subject, summary, None)
    }

    /// Appends one event that happened at `at_ms`; returns its sequence number.
    pub fn append_at(
        &self,
        at_ms: u64,
        kind: &str,
        subject: &str,
        summary: &str,
        detail: Option<EventDetail>,
    ) -> anyhow::Result<u64> {
        self.append_group(&[Pending {
            at_ms,
            kind: kind.to_string(),
            subject: subject.to_string(),
            summary: summary.to_string(),
            detail,
        }])
    }

    /// Appends events in order, with consecutive sequence numbers, and flushes once;
    /// returns the last one's. A crash keeps a prefix of them (sled recovers a prefix of
    /// its writes), so the journal never has a gap.
    fn append_group(&self, events: &[Pending]) -> anyhow::Result<u64> {
        let mut b = self
            .bounds
            .lock()
            .map_err(|_| anyhow::anyhow!("journal lock poisoned"))?;
        let mut next = b.next;
        let tree = self.tree()?;
        let written = (|| {
            for p in events {
                let item = EventItem {
                    seq: next,
                    at_ms: p.at_ms,
                    node: self.node.clone(),
                    kind: p.kind.clone(),
                    subject: p.subject.clone(),
                    summary: p.summary.clone(),
                    detail: p.detail.clone(),
                };
                tree.insert(item.seq.to_be_bytes(), encode(&item)?)?;
                next += 1;
            }
            tree.flush()?;
            anyhow::Ok(())
        })();
        // What was inserted holds its numbers even if the flush failed: the next event
        // must not overwrite one a later flush makes durable.
        b.next = next;
        written?;
        Ok(next - 1)
    }

    /// Every event from sequence number `from` on, decoded as it is read.
    pub fn iter_from(&self, from: u64) -> impl Iterator<Item = anyhow::Result<EventItem>> + '_ {
        let (tree, detached) = match self.tree() {
            Ok(t) => (Some(t), None),
            Err(e) => (None, Some(Err(e))),
        };
        detached.into_iter().chain(
            tree.into_iter()
                .flat_map(move |t| t.range(from.to_be_bytes()..))
                .map(|kv| {
                    let (_, v) = kv?;
                    decode(&v)
                }),
        )
    }

    /// Up to `limit` events from sequence number `from` on.
    pub fn list(&self, from: u64, limit: usize) -> anyhow::Result<Vec<EventItem>> {
        let mut out = Vec::new();
        for kv in self.tree()?.range(from.to_be_bytes()..).take(limit) {
            let (_, v) = kv?;
            out.push(decode(&v)?);
        }
        Ok(out)
    }
}

/// Opens a store a test just dropped: sled's flusher thread lets go of the file lock a
/// moment after the last handle is dropped, so the open is tried until the lock is free.
#[cfg(test)]
pub(crate) fn reopen(dir: &std::path::Path) -> sled::Db {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        match sled::open(dir) {
            Ok(db) => return db,
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(5))
            }
            Err(e) => panic!("reopening {}: {e}", dir.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_survive_a_reopen_and_keep_their_order() {
        let dir = std::env::temp_dir().join(format!("journal-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        {
            let db = sled::open(&dir).unwrap();
            let j = Journal::open(&db, "lvs01", DEFAULT_MAX_EVENTS).unwrap();
            assert_eq!(j.append("vrrp", "VI_1", "BACKUP -> MASTER").unwrap(), 1);
            assert_eq!(j.append("check", "rs01", "UP -> DOWN").unwrap(), 2);
        }
        let db = reopen(&dir);
        let j = Journal::open(&db, "lvs01", DEFAULT_MAX_EVENTS).unwrap();
        assert_eq!(j.append("sync", "nftables", "version 2").unwrap(), 3);
        let all = j.list(1, 10).unwrap();
        let kinds: Vec<&str> = all.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds, vec!["vrrp", "check", "sync"]);
        assert_eq!(j.list(3, 10).unwrap().len(), 1);
        drop(db);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// While the store cannot be written (detached for a reopen after a full disk), the
    /// writer holds events in memory; once it is back they are written, in order, none lost.
    #[test]
    fn events_recorded_while_the_store_is_away_are_written_once_it_is_back() {
        let dir = std::env::temp_dir().join(format!("journal-away-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let db = sled::open(&dir).unwrap();
        let j = std::sync::Arc::new(Journal::open(&db, "lvs01", DEFAULT_MAX_EVENTS).unwrap());
        let w = JournalWriter::spawn(j.clone(), Box::new(|| Ok(Vec::new()))).unwrap();
        w.record("vrrp", "VI_1", "BACKUP -> MASTER", None);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while j.bounds().unwrap().is_empty() {
            assert!(std::time::Instant::now() < deadline, "first event never written");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        j.detach();
        assert!(j.list(1, 10).is_err(), "reads fail while the store is away");
        for i in 0..3 {
            w.record("check", "rs01", &format!("event {i}"), None);
        }
        while j.held() < 3 {
            assert!(
                std::time::Instant::now() < deadline,
                "the writer never held the events"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        j.reattach(&db).unwrap();
        while j.list(1, 10).unwrap().len() < 4 {
            assert!(std::time::Instant::now() < deadline, "held events never written");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let all = j.list(1, 10).unwrap();
        let summaries: Vec<&str> = all.iter().map(|e| e.summary.as_str()).collect();
        assert_eq!(summaries, ["BACKUP -> MASTER", "event 0", "event 1", "event 2"]);
        let seqs: Vec<u64> = all.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [1, 2, 3, 4], "numbered without a gap");
        drop((w, j, db));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A burst (checkers coming up) is written in groups: every event is kept, in the order
    /// recorded, numbered without a gap, and still there after a reopen.
    #[test]
    fn a_burst_of_events_is_kept_whole_and_in_order() {
        let dir = std::env::temp_dir().join(format!("journal-burst-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        const N: u64 = 3000;
        {
            let db = sled::open(&dir).unwrap();
            let j = std::sync::Arc::new(Journal::open(&db, "lvs01", DEFAULT_MAX_EVENTS).unwrap());
            let w = JournalWriter::spawn(j.clone(), Box::new(|| Ok(Vec::new()))).unwrap();
            for i in 0..N {
                w.record("check", &format!("rs{i}"), "UP", None);
            }
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
            while j.bounds().unwrap().next <= N {
                assert!(std::time::Instant::now() < deadline, "{:?}", j.bounds().unwrap());
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        }
        let db = reopen(&dir);
        let j = Journal::open(&db, "lvs01", DEFAULT_MAX_EVENTS).unwrap();
        let all = j.list(1, N as usize + 10).unwrap();
        assert_eq!(all.len() as u64, N);
        for (i, e) in all.iter().enumerate() {
            assert_eq!(
                (e.seq, e.subject.as_str()),
                (i as u64 + 1, format!("rs{i}").as_str())
            );
        }
        drop(db);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn events_read_back_from_bincode_and_from_an_older_json_journal() {
        let e = EventItem {
            seq: 7,
            at_ms: 1_700_000_000_000,
            node: "lvs01".into(),
            kind: "check".into(),
            subject: "198.18.116.131:80".into(),
            summary: "UP -> DOWN".into(),
            detail: Some(EventDetail::Check {
                vs: "198.18.116.134:80".into(),
                rs: "198.18.116.131:80".into(),
                checker: "HTTP_GET#0".into(),
                up: false,
                weight: None,
                reason: "connection refused".into(),
            }),
        };
        let stored = encode(&e).unwrap();
        assert_eq!(stored[0], BINCODE_V1);
        assert_eq!(decode(&stored).unwrap(), e);
        assert_eq!(
            decode(&serde_json::to_vec(&e).unwrap()).unwrap(),
            e,
            "JSON of earlier hanodes"
        );
        let mut longer = stored.clone();
        longer.push(0);
        assert!(decode(&longer).unwrap_err().to_string().contains("trailing"));
        assert!(decode(&stored[..stored.len() - 3]).is_err(), "a cut value");
        assert!(decode(&[0x42, 1, 2])
            .unwrap_err()
            .to_string()
            .contains("unknown encoding"));
        assert!(decode(&[]).is_err());
    }
}

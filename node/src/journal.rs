//! The director's local, append-only journal of runtime events (VRRP transitions, checker
//! transitions, table syncs, config fence changes): a sled tree keyed by sequence number,
//! one JSON value per event, flushed on every append so a crash loses none. Committed
//! configuration changes live in the Raft history; `hactl events` merges both by time.

use ha_config::api::{EventDetail, EventItem};
use std::sync::Mutex;

/// Writes a journal on its own thread, in order. Recording never waits for the disk: an
/// fsync stalled by writeback would otherwise hold up the actor that records events, and
/// with it the VRRP instances that share its thread (and the death signals it forwards).
pub struct JournalWriter {
    tx: std::sync::mpsc::Sender<Pending>,
}

/// An event waiting for the journal thread.
struct Pending {
    at_ms: u64,
    kind: String,
    subject: String,
    summary: String,
    detail: Option<EventDetail>,
}

impl JournalWriter {
    pub fn spawn(journal: std::sync::Arc<Journal>) -> std::io::Result<JournalWriter> {
        let (tx, rx) = std::sync::mpsc::channel::<Pending>();
        std::thread::Builder::new()
            .name("hanode-journal".into())
            .spawn(move || {
                for p in rx {
                    if let Err(e) = journal.append_at(p.at_ms, &p.kind, &p.subject, &p.summary, p.detail) {
                        tracing::error!(node = %journal.node, "event journal: {e}");
                    }
                }
            })?;
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
    tree: sled::Tree,
    node: String,
    /// The next sequence number (the lock also orders appends).
    next: Mutex<u64>,
}

impl Journal {
    pub fn open(db: &sled::Db, node: &str) -> anyhow::Result<Journal> {
        let tree = db.open_tree("journal")?;
        let next = match tree.last()? {
            Some((k, _)) => {
                let bytes: [u8; 8] = k
                    .as_ref()
                    .try_into()
                    .map_err(|_| anyhow::anyhow!("journal: bad key"))?;
                u64::from_be_bytes(bytes) + 1
            }
            None => 1,
        };
        Ok(Journal {
            tree,
            node: node.to_string(),
            next: Mutex::new(next),
        })
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
        let mut next = self
            .next
            .lock()
            .map_err(|_| anyhow::anyhow!("journal lock poisoned"))?;
        let item = EventItem {
            seq: *next,
            at_ms,
            node: self.node.clone(),
            kind: kind.to_string(),
            subject: subject.to_string(),
            summary: summary.to_string(),
            detail,
        };
        self.tree
            .insert(item.seq.to_be_bytes(), serde_json::to_vec(&item)?)?;
        self.tree.flush()?;
        *next += 1;
        Ok(item.seq)
    }

    /// Every event from sequence number `from` on, decoded as it is read.
    pub fn iter_from(&self, from: u64) -> impl Iterator<Item = anyhow::Result<EventItem>> + '_ {
        self.tree.range(from.to_be_bytes()..).map(|kv| {
            let (_, v) = kv?;
            Ok(serde_json::from_slice(&v)?)
        })
    }

    /// Up to `limit` events from sequence number `from` on.
    pub fn list(&self, from: u64, limit: usize) -> anyhow::Result<Vec<EventItem>> {
        let mut out = Vec::new();
        for kv in self.tree.range(from.to_be_bytes()..).take(limit) {
            let (_, v) = kv?;
            out.push(serde_json::from_slice(&v)?);
        }
        Ok(out)
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
            let j = Journal::open(&db, "lvs01").unwrap();
            assert_eq!(j.append("vrrp", "VI_1", "BACKUP -> MASTER").unwrap(), 1);
            assert_eq!(j.append("check", "rs01", "UP -> DOWN").unwrap(), 2);
        }
        let db = sled::open(&dir).unwrap();
        let j = Journal::open(&db, "lvs01").unwrap();
        assert_eq!(j.append("sync", "nftables", "version 2").unwrap(), 3);
        let all = j.list(1, 10).unwrap();
        let kinds: Vec<&str> = all.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds, vec!["vrrp", "check", "sync"]);
        assert_eq!(j.list(3, 10).unwrap().len(), 1);
        drop(db);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

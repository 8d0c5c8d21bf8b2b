//! The Raft log and vote on sled.
//!
//! Keys: tree `log` maps the big-endian index to a codec-encoded entry; tree `raft_meta`
//! holds `vote` and `last_purged` (and, in stores written before 2026-12-07, a stale
//! `committed` hint, removed at open). Every write is flushed (fsync) before
//! openraft is told it is durable.

use crate::codec;
use crate::types::{Entry, LogId, StorageError, TypeConfig, Vote};
use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader, StorageIOError};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};

#[derive(Clone)]
pub struct LogStore {
    log: sled::Tree,
    meta: sled::Tree,
}

fn key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

fn index_of(k: &[u8]) -> Result<u64, StorageError> {
    let b: [u8; 8] = k
        .try_into()
        .map_err(|_| StorageIOError::read_logs(&std::io::Error::other("log key is not 8 bytes")))?;
    Ok(u64::from_be_bytes(b))
}

impl LogStore {
    pub fn open(db: &sled::Db) -> Result<Self, sled::Error> {
        let meta = db.open_tree("raft_meta")?;
        // No longer kept (see `save_committed`); a stale one is only noise.
        meta.remove("committed")?;
        Ok(LogStore {
            log: db.open_tree("log")?,
            meta,
        })
    }

    fn get_meta<T: DeserializeOwned>(&self, k: &str) -> Result<Option<T>, StorageError> {
        match self.meta.get(k).map_err(|e| StorageIOError::read(&e))? {
            None => Ok(None),
            Some(v) => Ok(Some(codec::decode(&v).map_err(|e| StorageIOError::read(&e))?)),
        }
    }

    async fn put_meta<T: Serialize>(&self, k: &str, v: &T) -> Result<(), StorageError> {
        let bytes = codec::encode(v).map_err(|e| StorageIOError::write(&e))?;
        self.meta
            .insert(k, bytes)
            .map_err(|e| StorageIOError::write(&e))?;
        self.meta
            .flush_async()
            .await
            .map_err(|e| StorageIOError::write(&e))?;
        Ok(())
    }

    fn last_entry_id(&self) -> Result<Option<LogId>, StorageError> {
        match self.log.last().map_err(|e| StorageIOError::read_logs(&e))? {
            None => Ok(None),
            Some((_, v)) => {
                let e: Entry = codec::decode(&v).map_err(|e| StorageIOError::read_logs(&e))?;
                Ok(Some(e.log_id))
            }
        }
    }

    /// Deletes the log entries whose keys fall in `range`, in one batch, then flushes.
    async fn remove_and_flush<R: std::ops::RangeBounds<[u8; 8]>>(
        &self,
        range: R,
    ) -> Result<(), StorageError> {
        let mut batch = sled::Batch::default();
        for kv in self.log.range(range) {
            batch.remove(kv.map_err(|e| StorageIOError::write_logs(&e))?.0);
        }
        self.log
            .apply_batch(batch)
            .map_err(|e| StorageIOError::write_logs(&e))?;
        self.log
            .flush_async()
            .await
            .map_err(|e| StorageIOError::write_logs(&e))?;
        Ok(())
    }

    /// This store's incarnation (see `Director::incarnation`), made on first use.
    pub async fn incarnation(&mut self) -> Result<String, StorageError> {
        if let Some(i) = self.get_meta::<String>("incarnation")? {
            return Ok(i);
        }
        let mut b = [0u8; 8];
        use std::io::Read;
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut b))
            .map_err(|e| StorageIOError::read(&e))?;
        let i: String = b.iter().map(|x| format!("{x:02x}")).collect();
        self.put_meta("incarnation", &i).await?;
        Ok(i)
    }

    /// True when nothing was ever written: no vote, no log (a node that may bootstrap).
    pub async fn is_pristine(&mut self) -> Result<bool, StorageError> {
        Ok(self.get_meta::<Vote>("vote")?.is_none()
            && self.log.is_empty()
            && self.get_meta::<LogId>("last_purged")?.is_none())
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let start = match range.start_bound() {
            Bound::Included(x) => *x,
            Bound::Excluded(x) => x.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let mut out = Vec::new();
        for kv in self.log.range(key(start)..) {
            let (k, v) = kv.map_err(|e| StorageIOError::read_logs(&e))?;
            if !range.contains(&index_of(&k)?) {
                break;
            }
            out.push(codec::decode(&v).map_err(|e| StorageIOError::read_logs(&e))?);
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged: Option<LogId> = self.get_meta("last_purged")?;
        let last = self.last_entry_id()?;
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: std::cmp::max(last, last_purged),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        self.put_meta("vote", vote)
            .await
            .map_err(|e| StorageIOError::write_vote(&e).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        self.get_meta("vote")
    }

    /// Not kept: the state machine persists what it applied (sled writes each apply's
    /// batch as soon as it is sealed; see `StateMachine::apply`), so a committed-index
    /// hint would only cover the entries between the last written apply and a crash, which
    /// the leader commits again for a restarted director. Writing it cost one more sled
    /// I/O buffer write (and sync) on every apply: the apply's batch seals the buffer the
    /// hint sits in before writing its own.
    async fn save_committed(&mut self, _committed: Option<LogId>) -> Result<(), StorageError> {
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(None)
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut encoded = Vec::new();
        for ent in entries {
            let bytes = codec::encode(&ent).map_err(|e| StorageIOError::write_logs(&e))?;
            encoded.push((key(ent.log_id.index), bytes));
        }
        // One entry (the usual case: a proposal) is one insert. A sled batch first writes
        // its manifest in an I/O buffer of its own, so the flush below would wait for two
        // writes, one after the other, instead of one.
        if encoded.len() == 1 {
            let (k, bytes) = encoded.swap_remove(0);
            self.log
                .insert(k, bytes)
                .map_err(|e| StorageIOError::write_logs(&e))?;
        } else {
            let mut batch = sled::Batch::default();
            for (k, bytes) in encoded {
                batch.insert(&k, bytes);
            }
            self.log
                .apply_batch(batch)
                .map_err(|e| StorageIOError::write_logs(&e))?;
        }
        let flushed = self
            .log
            .flush_async()
            .await
            .map(|_| ())
            .map_err(std::io::Error::from);
        callback.log_io_completed(flushed);
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.remove_and_flush(key(log_id.index)..).await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        // The purge point is durable before anything is deleted.
        self.put_meta("last_purged", &log_id).await?;
        self.remove_and_flush(..=key(log_id.index)).await
    }
}

//! The replicated state machine on sled: applies committed entries to [`ClusterState`],
//! keeps the history, builds and installs snapshots.
//!
//! Keys in tree `state_machine` (all written in one batch per `apply`; see `apply` for
//! why it is not flushed there):
//! - `state`: the applied log id, the Raft membership and the [`ClusterState`] without
//!   its configuration;
//! - `k` + key: one key of the committed configuration ([`ha_config::keyed::Slot`]), so an
//!   apply writes the keys its delta changes, never the whole configuration;
//! - `h` + seq (big-endian): a [`HistoryEntry`];
//! - `v` + version: the history seq that committed this config version;
//! - `p` + proposal id: the version it committed as (retries are applied once);
//! - `snapshot`: the current snapshot (meta + bytes). Installing one writes it in the same
//!   batch as the state it replaces, so a crash leaves either both or neither.
//!
//! A snapshot carries the state, the configuration and the whole history (deltas), so the
//! history survives log purge and reaches late joiners.

use crate::codec;
use crate::events::ConfigEvent;
use crate::state::{Applied, ClusterState, HistoryEntry};
use crate::types::{
    Director, Entry, LogId, NodeId, SnapshotMeta, StorageError, StoredMembership, TypeConfig,
};
use ha_config::keyed::{Key, KeyedCluster, Slot};
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{EntryPayload, Membership, OptionalSend, RaftSnapshotBuilder, StorageIOError};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::Cursor;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::{watch, RwLock};

/// What is applied, as persisted under `state`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct AppliedState {
    last_applied: Option<LogId>,
    membership: StoredMembership,
    state: ClusterState,
}

/// The bytes of a snapshot.
#[derive(Serialize, Deserialize)]
struct SnapshotBody {
    applied: AppliedState,
    config: KeyedCluster,
    history: Vec<HistoryEntry>,
}

#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta,
    data: Vec<u8>,
}

struct Shared {
    /// None between [`StateMachine::detach`] and [`StateMachine::reattach`] (the store
    /// being reopened after a write error).
    tree: std::sync::RwLock<Option<sled::Tree>>,
    applied: RwLock<AppliedState>,
    published: watch::Sender<Arc<ClusterState>>,
    snapshot_seq: AtomicU64,
}

/// The state machine handed to openraft; [`StateReader`] reads the same data.
#[derive(Clone)]
pub struct StateMachine {
    shared: Arc<Shared>,
}

/// Read access for the admin API and the actors: current state, history, subscriptions.
#[derive(Clone)]
pub struct StateReader {
    shared: Arc<Shared>,
}

const STATE_KEY: &[u8] = b"state";
const SNAPSHOT_KEY: &[u8] = b"snapshot";

fn hkey(seq: u64) -> Vec<u8> {
    prefixed(b'h', &seq.to_be_bytes())
}
fn vkey(version: u64) -> Vec<u8> {
    prefixed(b'v', &version.to_be_bytes())
}
fn kkey(key: &Key) -> Result<Vec<u8>, codec::CodecError> {
    Ok(prefixed(b'k', &codec::encode(key)?))
}
fn pkey(proposal_id: &str) -> Vec<u8> {
    prefixed(b'p', proposal_id.as_bytes())
}
fn prefixed(p: u8, rest: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + rest.len());
    k.push(p);
    k.extend_from_slice(rest);
    k
}
fn be_u64(v: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(v.try_into().ok()?))
}

fn sm_read(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::read_state_machine(&e).into()
}
fn sm_write(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::write_state_machine(&e).into()
}

/// Director names of the voters and learners of a membership.
pub fn member_names(m: &Membership<NodeId, Director>) -> (Vec<String>, Vec<String>) {
    let name = |id: NodeId| {
        m.get_node(&id)
            .map(|d| d.name.clone())
            .unwrap_or_else(|| id.to_string())
    };
    let mut voters: Vec<String> = m.voter_ids().map(name).collect();
    let mut learners: Vec<String> = m.learner_ids().map(name).collect();
    voters.sort();
    learners.sort();
    (voters, learners)
}

/// The state machine's tree in `db` and the applied state stored there.
fn load(db: &sled::Db) -> Result<(sled::Tree, AppliedState), StorageError> {
    let tree = db.open_tree("state_machine").map_err(sm_read)?;
    let mut applied: AppliedState = match tree.get(STATE_KEY).map_err(sm_read)? {
        Some(v) => codec::decode(&v).map_err(sm_read)?,
        None => AppliedState::default(),
    };
    let mut slots = std::collections::BTreeMap::new();
    for kv in tree.scan_prefix([b'k']) {
        let (k, v) = kv.map_err(sm_read)?;
        let key: Key = codec::decode(&k[1..]).map_err(sm_read)?;
        let slot: Slot = codec::decode(&v).map_err(sm_read)?;
        slots.insert(key, slot);
    }
    applied.state.config = KeyedCluster::from_slots(slots);
    if applied.state.config.hash() != applied.state.hash && applied.state.version > 0 {
        return Err(StorageIOError::read_state_machine(&std::io::Error::other(format!(
            "the stored configuration hashes to {}, but version {} recorded {}",
            applied.state.config.hash(),
            applied.state.version,
            applied.state.hash
        )))
        .into());
    }
    Ok((tree, applied))
}

impl Shared {
    /// Hands `state` to the subscribers, unless they already have it or a later one: after
    /// a reopen the store may apply again entries whose batch was not durable, and the
    /// actors must never see the configuration go back.
    fn publish(&self, state: &ClusterState) {
        if state.history_len > self.published.borrow().history_len {
            self.published.send_replace(Arc::new(state.clone()));
        }
    }

    /// The store's tree, or an error while it is detached.
    fn tree(&self) -> Result<sled::Tree, StorageError> {
        self.tree
            .read()
            .ok()
            .and_then(|t| t.clone())
            .ok_or_else(|| sm_read(std::io::Error::other("the store is being reopened")))
    }
}

impl StateMachine {
    pub fn open(db: &sled::Db) -> Result<Self, StorageError> {
        let (tree, applied) = load(db)?;
        let (published, _) = watch::channel(Arc::new(applied.state.clone()));
        Ok(StateMachine {
            shared: Arc::new(Shared {
                tree: std::sync::RwLock::new(Some(tree)),
                applied: RwLock::new(applied),
                published,
                snapshot_seq: AtomicU64::new(0),
            }),
        })
    }

    /// Lets go of the store (every reader and the Raft instance keep this state machine):
    /// the store can then be reopened. Reads fail until [`Self::reattach`].
    pub fn detach(&self) {
        if let Ok(mut t) = self.shared.tree.write() {
            *t = None;
        }
    }

    /// Reads the applied state again from a reopened store: what is durable there, which
    /// the Raft log then brings forward. Subscribers keep their subscription; nothing is
    /// published until the next apply.
    pub async fn reattach(&self, db: &sled::Db) -> Result<(), StorageError> {
        let (tree, loaded) = load(db)?;
        let mut applied = self.shared.applied.write().await;
        *applied = loaded;
        if let Ok(mut t) = self.shared.tree.write() {
            *t = Some(tree);
        }
        Ok(())
    }

    pub fn reader(&self) -> StateReader {
        StateReader {
            shared: self.shared.clone(),
        }
    }

    fn committed_as(&self, proposal_id: &str) -> Result<Option<u64>, StorageError> {
        self.reader().committed_as(proposal_id)
    }

    fn stored_snapshot(&self) -> Result<Option<StoredSnapshot>, StorageError> {
        let read_err = |e: &dyn std::error::Error| -> StorageError {
            StorageIOError::read_snapshot(None, &std::io::Error::other(e.to_string())).into()
        };
        match self.shared.tree()?.get(SNAPSHOT_KEY).map_err(|e| read_err(&e))? {
            None => Ok(None),
            Some(v) => Ok(Some(codec::decode(&v).map_err(|e| read_err(&e))?)),
        }
    }

    fn history_all(&self) -> Result<Vec<HistoryEntry>, StorageError> {
        self.reader().history(1, u64::MAX)
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        // Hold the read lock: apply cannot run, so state and history are one point in time.
        let applied = self.shared.applied.read().await;
        let history = self.history_all()?;
        let body = SnapshotBody {
            applied: applied.clone(),
            config: applied.state.config.clone(),
            history,
        };
        let data = codec::encode(&body).map_err(|e| StorageIOError::read_state_machine(&e))?;
        let n = self.shared.snapshot_seq.fetch_add(1, Ordering::SeqCst);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        let snapshot_id = match &body.applied.last_applied {
            Some(l) => format!("{}-{}-{now}-{n}", l.leader_id, l.index),
            None => format!("none-{now}-{n}"),
        };
        let meta = SnapshotMeta {
            last_log_id: body.applied.last_applied,
            last_membership: body.applied.membership.clone(),
            snapshot_id,
        };
        // Still under the read guard: an install cannot interleave, and a snapshot never
        // replaces a newer one.
        let newer_stored = self
            .stored_snapshot()?
            .is_some_and(|s| s.meta.last_log_id > meta.last_log_id);
        if !newer_stored {
            let bytes = encode_snapshot(&meta, &data)?;
            let tree = self.shared.tree()?;
            tree.insert(SNAPSHOT_KEY, bytes).map_err(sm_write)?;
            tree.flush_async().await.map_err(sm_write)?;
        }
        drop(applied);
        tracing::info!(snapshot = %meta.snapshot_id, bytes = data.len(), "snapshot built");
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

fn encode_snapshot(meta: &SnapshotMeta, data: &[u8]) -> Result<Vec<u8>, StorageError> {
    let stored = StoredSnapshot {
        meta: meta.clone(),
        data: data.to_vec(),
    };
    codec::encode(&stored).map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e).into())
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let a = self.shared.applied.read().await;
        Ok((a.last_applied, a.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Applied>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut applied = self.shared.applied.write().await;
        let mut batch = sled::Batch::default();
        let mut in_batch: HashMap<String, u64> = HashMap::new();
        let mut replies = Vec::new();
        let mut records = Vec::new();
        for ent in entries {
            let index = ent.log_id.index;
            applied.last_applied = Some(ent.log_id);
            let (reply, record) = match ent.payload {
                EntryPayload::Blank => (Applied::Noop, None),
                EntryPayload::Normal(cmd) => {
                    let known = match &cmd.event {
                        ConfigEvent::ConfigProposed(p) => match in_batch.get(&p.proposal_id) {
                            Some(v) => Some(*v),
                            None => self.committed_as(&p.proposal_id)?,
                        },
                        _ => None,
                    };
                    let (reply, record) = applied.state.apply_command(&cmd, index, |_| known);
                    if let (Applied::Committed { version, .. }, Some(h)) = (&reply, &record) {
                        if let ConfigEvent::ConfigProposed(p) = &cmd.event {
                            batch.insert(pkey(&p.proposal_id), &version.to_be_bytes());
                            in_batch.insert(p.proposal_id.clone(), *version);
                            for (key, slot) in &p.delta.changes {
                                let k = kkey(key).map_err(sm_write)?;
                                match slot {
                                    Some(slot) => batch.insert(k, codec::encode(slot).map_err(sm_write)?),
                                    None => batch.remove(k),
                                }
                            }
                        }
                        batch.insert(vkey(*version), &h.seq.to_be_bytes());
                    }
                    (reply, record)
                }
                EntryPayload::Membership(m) => {
                    applied.membership = StoredMembership::new(Some(ent.log_id), m.clone());
                    if m.get_joint_config().len() == 1 {
                        let (voters, learners) = member_names(&m);
                        match applied.state.apply_membership(voters, learners, index) {
                            Some(h) => (Applied::Recorded { seq: h.seq }, Some(h)),
                            None => (Applied::Noop, None),
                        }
                    } else {
                        (Applied::Noop, None)
                    }
                }
            };
            if let Some(h) = record {
                batch.insert(hkey(h.seq), codec::encode(&h).map_err(sm_write)?);
                records.push(h);
            }
            replies.push(reply);
        }
        batch.insert(STATE_KEY, codec::encode(&*applied).map_err(sm_write)?);
        // Not flushed here: sled writes the batch's buffers in the background, and the
        // next flush (the next log append's, a snapshot's, or sled's own every 500 ms)
        // waits for them. A crash before that leaves the applied state behind the log
        // (sled recovers a prefix of its writes, the batch whole or not at all); openraft
        // applies the committed entries again from `applied_state()`, and they are still
        // in the log because the log is purged only up to a snapshot, which is flushed
        // first. Applying is deterministic, so the history comes out the same.
        self.shared.tree()?.apply_batch(batch).map_err(sm_write)?;
        for h in &records {
            tracing::info!(
                seq = h.seq,
                version = h.version,
                log_index = h.log_index,
                author = h.event.author(),
                "applied: {}",
                h.summary
            );
        }
        if !records.is_empty() {
            self.shared.publish(&applied.state);
        }
        Ok(replies)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        let sig = || Some(meta.signature());
        let body: SnapshotBody =
            codec::decode(&data).map_err(|e| StorageIOError::read_snapshot(sig(), &e))?;
        let mut applied = self.shared.applied.write().await;
        let mut batch = sled::Batch::default();
        for kv in self.shared.tree()?.iter() {
            let (k, _) = kv.map_err(sm_read)?;
            batch.remove(k);
        }
        for h in &body.history {
            batch.insert(hkey(h.seq), codec::encode(h).map_err(sm_write)?);
            if let ConfigEvent::ConfigProposed(p) = &h.event {
                batch.insert(pkey(&p.proposal_id), &h.version.to_be_bytes());
                batch.insert(vkey(h.version), &h.seq.to_be_bytes());
            }
        }
        for (key, slot) in body.config.slots() {
            batch.insert(
                kkey(&key).map_err(sm_write)?,
                codec::encode(&slot).map_err(sm_write)?,
            );
        }
        let mut new_applied = body.applied;
        if new_applied.state.version > 0 && body.config.hash() != new_applied.state.hash {
            return Err(StorageIOError::read_snapshot(
                sig(),
                &std::io::Error::other(format!(
                    "the snapshot's configuration hashes to {}, but its version {} recorded {}",
                    body.config.hash(),
                    new_applied.state.version,
                    new_applied.state.hash
                )),
            )
            .into());
        }
        new_applied.state.config = body.config;
        new_applied.last_applied = meta.last_log_id;
        new_applied.membership = meta.last_membership.clone();
        batch.insert(STATE_KEY, codec::encode(&new_applied).map_err(sm_write)?);
        batch.insert(SNAPSHOT_KEY, encode_snapshot(meta, &data)?);
        let tree = self.shared.tree()?;
        tree.apply_batch(batch).map_err(sm_write)?;
        tree.flush_async().await.map_err(sm_write)?;
        *applied = new_applied;
        tracing::info!(
            snapshot = %meta.snapshot_id,
            version = applied.state.version,
            history = applied.state.history_len,
            "snapshot installed"
        );
        self.shared.publish(&applied.state);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        Ok(self.stored_snapshot()?.map(|s| Snapshot {
            meta: s.meta,
            snapshot: Box::new(Cursor::new(s.data)),
        }))
    }
}

/// Test tooling for `hactl verify`: flips one byte of the stored history entry `seq` in
/// the middle of its encoding (the director must be stopped). Returns the entry's version.
pub fn flip_history_byte(db: &sled::Db, seq: u64) -> Result<u64, String> {
    let tree = db.open_tree("state_machine").map_err(|e| e.to_string())?;
    let v = tree
        .get(hkey(seq))
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("no history entry {seq}"))?;
    let entry: HistoryEntry = codec::decode(&v).map_err(|e| e.to_string())?;
    // A byte of the summary text: the entry still decodes, its content no longer matches.
    let needle = entry.summary.as_bytes();
    let at = v
        .windows(needle.len().max(1))
        .position(|w| !needle.is_empty() && w == needle)
        .map(|p| p + needle.len() / 2)
        .unwrap_or(v.len() / 2);
    let mut bytes = v.to_vec();
    bytes[at] ^= 0x01;
    tree.insert(hkey(seq), bytes).map_err(|e| e.to_string())?;
    tree.flush().map_err(|e| e.to_string())?;
    Ok(entry.version)
}

impl StateReader {
    /// The current state and the last applied log id.
    pub async fn current(&self) -> (ClusterState, Option<LogId>) {
        let a = self.shared.applied.read().await;
        (a.state.clone(), a.last_applied)
    }

    /// Verifies the stored history as a hash chain ([`crate::chain::verify`]), reading each
    /// entry as stored (one that does not decode is named by its seq), and checks that it
    /// ends where the applied state says it does.
    pub async fn verify_history(&self) -> Result<crate::chain::Verified, crate::chain::BadEntry> {
        // Hold the read lock: no apply in between, the history and the state agree.
        let a = self.shared.applied.read().await;
        let tree = self.shared.tree().map_err(|e| crate::chain::BadEntry {
            seq: 0,
            version: None,
            reason: e.to_string(),
        })?;
        let items = tree.scan_prefix([b'h']).enumerate().map(|(i, kv)| {
            let fallback = i as u64 + 1;
            let (k, v) = kv.map_err(|e| (fallback, e.to_string()))?;
            let seq = k
                .get(1..9)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_be_bytes)
                .unwrap_or(fallback);
            codec::decode::<HistoryEntry>(&v).map_err(|e| (seq, e.to_string()))
        });
        let v = crate::chain::verify(items)?;
        let state = &a.state;
        if v.entries != state.history_len {
            return Err(crate::chain::BadEntry {
                seq: v.entries + 1,
                version: None,
                reason: format!(
                    "the stored history has {} entries, the applied state counts {}",
                    v.entries, state.history_len
                ),
            });
        }
        if v.entries > 0 && v.head != state.history_head {
            return Err(crate::chain::BadEntry {
                seq: v.entries,
                version: Some(v.version),
                reason: "the last entry's hash is not the head the applied state recorded".into(),
            });
        }
        Ok(v)
    }

    /// History entries with `from <= seq <= to`, in order.
    pub fn history(&self, from: u64, to: u64) -> Result<Vec<HistoryEntry>, StorageError> {
        let mut out = Vec::new();
        if from > to {
            return Ok(out);
        }
        for kv in self.shared.tree()?.range(hkey(from)..=hkey(to)) {
            let (_, v) = kv.map_err(sm_read)?;
            out.push(codec::decode(&v).map_err(sm_read)?);
        }
        Ok(out)
    }

    /// The config version a proposal id committed as, if it did.
    pub fn committed_as(&self, proposal_id: &str) -> Result<Option<u64>, StorageError> {
        Ok(self
            .shared
            .tree()?
            .get(pkey(proposal_id))
            .map_err(sm_read)?
            .and_then(|v| be_u64(&v)))
    }

    /// The history entry that committed config `version`.
    pub fn committed_version(&self, version: u64) -> Result<Option<HistoryEntry>, StorageError> {
        let Some(seq) = self
            .shared
            .tree()?
            .get(vkey(version))
            .map_err(sm_read)?
            .and_then(|v| be_u64(&v))
        else {
            return Ok(None);
        };
        Ok(self.history(seq, seq)?.into_iter().next())
    }

    /// The committed configuration at `version` (`None`: not committed here): the current
    /// one, or the history's deltas folded up to it.
    pub async fn config_at(&self, version: u64) -> Result<Option<KeyedCluster>, StorageError> {
        if version == 0 {
            return Ok(Some(KeyedCluster::default()));
        }
        let current = {
            let a = self.shared.applied.read().await;
            if version == a.state.version {
                return Ok(Some(a.state.config.clone()));
            }
            a.state.version
        };
        if version > current {
            return Ok(None);
        }
        let Some(last) = self.committed_version(version)? else {
            return Ok(None);
        };
        let mut config = KeyedCluster::default();
        for h in self.history(1, last.seq)? {
            if let ConfigEvent::ConfigProposed(p) = &h.event {
                config.apply(&p.delta);
            }
        }
        Ok(Some(config))
    }

    /// Receives the state after every applied change (config, membership).
    pub fn subscribe(&self) -> watch::Receiver<Arc<ClusterState>> {
        self.shared.published.subscribe()
    }
}

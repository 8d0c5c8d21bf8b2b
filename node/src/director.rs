//! One director's control plane: its Raft instance over the sled store, and the operations
//! the admin API exposes (propose, membership, status). HTTP lives in [`crate::admin`].

use crate::settings::Settings;
use crate::transport::client::{Call, HttpClient};
use crate::transport::raft_network::HttpRaftNetwork;
use anyhow::{Context, Result};
use ha_config::api::Member;
use openraft::ServerState;
use raft_store::types::{node_id, Director, NodeId, Raft, RaftMetrics};
use raft_store::{StateMachine, StateReader};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

pub struct DirectorNode {
    pub name: String,
    pub id: NodeId,
    /// Advertised address (Raft RPC and admin API).
    pub addr: String,
    /// Replaced when the store is reopened after a write error ([`Self::reopen_store`]).
    raft: std::sync::RwLock<Raft>,
    /// The state machine Raft applies to; kept across a reopen (its readers and
    /// subscribers with it).
    sm: StateMachine,
    pub state: StateReader,
    pub client: HttpClient,
    pub max_request_bytes: usize,
    pub max_proposal_bytes: usize,
    /// The incarnation of this director's store (see `Director::incarnation`).
    pub incarnation: String,
    /// Runtime events of this director.
    pub journal: Arc<crate::journal::Journal>,
    /// Records events into [`Self::journal`] on its own thread (actors, audit).
    pub events: crate::journal::JournalWriter,
    /// TLS material (None: plain HTTP).
    pub tls: Option<Arc<crate::transport::tls::Tls>>,
    /// The open store (None while it is being reopened).
    db: std::sync::Mutex<Option<sled::Db>>,
    /// Where the store lives (`DATA_DIR/raft`).
    store_dir: std::path::PathBuf,
    raft_config: Arc<openraft::Config>,
    /// Why the store cannot be written, while it cannot (see [`crate::store_recovery`]).
    store_failure: std::sync::Mutex<Option<StoreFailure>>,
}

/// The store failed a write: Raft stopped on this director until it is reopened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreFailure {
    pub cause: String,
    pub since_ms: u64,
}

/// Creates the data directory (Raft log, history, journal) readable by its owner only,
/// and tightens an existing one that others could read: the history names every real
/// server and who changed what, and the store's keys will live beside it.
pub fn secure_data_dir(dir: &std::path::Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("data dir {}", dir.display()))?;
    let mode = std::fs::metadata(dir)
        .with_context(|| format!("data dir {}", dir.display()))?
        .permissions()
        .mode()
        & 0o777;
    if mode & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("data dir {}: setting mode 0700", dir.display()))?;
        tracing::warn!(dir = %dir.display(), "data dir was mode {mode:04o}, others could read it: now 0700");
    }
    Ok(())
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl DirectorNode {
    /// Opens the store and starts Raft. Bootstraps a one-director cluster when asked to and
    /// the store is pristine; a director that has data never bootstraps again.
    pub async fn start(
        settings: &Settings,
        tls: Option<Arc<crate::transport::tls::Tls>>,
    ) -> Result<Arc<Self>> {
        secure_data_dir(&settings.data_dir)?;
        let (db, mut log, sm) = raft_store::open(&settings.data_dir.join("raft"))
            .with_context(|| format!("store in {}", settings.data_dir.display()))?;
        let pristine = log.is_pristine().await.map_err(|e| anyhow::anyhow!("{e}"))?;
        let incarnation = log.incarnation().await.map_err(|e| anyhow::anyhow!("{e}"))?;
        let state = sm.reader();
        let client = HttpClient::new(tls.as_ref());
        let config = Arc::new(settings.raft.openraft_config("ha-directors")?);
        let id = node_id(&settings.name);
        let raft = Raft::new(
            id,
            config.clone(),
            HttpRaftNetwork::new(client.clone()),
            log,
            sm.clone(),
        )
        .await
        .map_err(|e| anyhow::anyhow!("starting raft: {e}"))?;
        let journal = Arc::new(crate::journal::Journal::open(
            &db,
            &settings.name,
            settings.journal_max_events,
        )?);
        let history = state.clone();
        let events = crate::journal::JournalWriter::spawn(
            journal.clone(),
            Box::new(move || history.history(1, u64::MAX).map_err(|e| anyhow::anyhow!("{e}"))),
        )?;
        let node = Arc::new(DirectorNode {
            name: settings.name.clone(),
            id,
            addr: settings.advertise.clone(),
            raft: std::sync::RwLock::new(raft),
            sm,
            state,
            client,
            max_request_bytes: settings.max_request_bytes,
            max_proposal_bytes: settings.max_proposal_bytes,
            incarnation,
            journal,
            events,
            tls,
            db: std::sync::Mutex::new(Some(db)),
            store_dir: settings.data_dir.join("raft"),
            raft_config: config,
            store_failure: std::sync::Mutex::new(None),
        });
        if settings.bootstrap {
            if pristine {
                let members = BTreeMap::from([(id, node.director())]);
                node.raft()
                    .initialize(members)
                    .await
                    .map_err(|e| anyhow::anyhow!("bootstrap: {e}"))?;
                tracing::info!(director = %node.name, "bootstrapped a new cluster");
            } else {
                tracing::info!(director = %node.name, "store has data: not bootstrapping again");
            }
        }
        Ok(node)
    }

    pub fn director(&self) -> Director {
        Director {
            name: self.name.clone(),
            addr: self.addr.clone(),
            incarnation: self.incarnation.clone(),
        }
    }

    /// This director's Raft instance (a handle: cheap to clone).
    pub fn raft(&self) -> Raft {
        match self.raft.read() {
            Ok(r) => r.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub fn metrics(&self) -> RaftMetrics {
        self.raft().metrics().borrow().clone()
    }

    /// Why this director's store cannot be written, while it cannot.
    pub fn store_failure(&self) -> Option<StoreFailure> {
        self.store_failure.lock().ok().and_then(|f| f.clone())
    }

    pub(crate) fn set_store_failure(&self, failure: Option<StoreFailure>) {
        if let Ok(mut f) = self.store_failure.lock() {
            *f = failure;
        }
    }

    /// Where the store lives.
    pub fn store_dir(&self) -> &std::path::Path {
        &self.store_dir
    }

    /// Closes the store and opens it again, then starts a new Raft instance on it: after a
    /// write error (a full disk), sled refuses every write until it is reopened, and
    /// openraft stops for good on a storage error. What was durable is kept; the log then
    /// catches up from the leader. The actors, the admin API and the journal's and state
    /// machine's readers keep running throughout (their reads fail for the moment the
    /// store is closed).
    pub async fn reopen_store(&self) -> Result<()> {
        let old = self.raft();
        if let Err(e) = old.shutdown().await {
            tracing::debug!(director = %self.name, "stopping raft before reopening the store: {e}");
        }
        drop(old);
        self.sm.detach();
        self.journal.detach();
        // Dropping the last handle joins sled's flusher thread: off the async workers.
        let old_db = self.db.lock().ok().and_then(|mut d| d.take());
        if let Some(db) = old_db {
            let _ = tokio::task::spawn_blocking(move || drop(db)).await;
        }
        // sled's flusher lets go of the file lock a moment after the last handle is dropped.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let db = loop {
            match raft_store::open_db(&self.store_dir) {
                Ok(db) => break db,
                Err(e) if tokio::time::Instant::now() < deadline => {
                    tracing::debug!(director = %self.name, "reopening the store: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => anyhow::bail!("reopening the store in {}: {e}", self.store_dir.display()),
            }
        };
        let log = raft_store::LogStore::open(&db).context("reopening the Raft log")?;
        self.sm
            .reattach(&db)
            .await
            .map_err(|e| anyhow::anyhow!("reading the applied state again: {e}"))?;
        self.journal
            .reattach(&db)
            .context("reopening the event journal")?;
        let raft = Raft::new(
            self.id,
            self.raft_config.clone(),
            HttpRaftNetwork::new(self.client.clone()),
            log,
            self.sm.clone(),
        )
        .await
        .map_err(|e| anyhow::anyhow!("starting raft again: {e}"))?;
        match self.raft.write() {
            Ok(mut r) => *r = raft,
            Err(poisoned) => *poisoned.into_inner() = raft,
        }
        if let Ok(mut d) = self.db.lock() {
            *d = Some(db);
        }
        Ok(())
    }

    /// True when this director votes (a learner is still catching up).
    pub fn is_voter(&self) -> bool {
        self.metrics()
            .membership_config
            .membership()
            .voter_ids()
            .any(|v| v == self.id)
    }

    /// The leader as this director knows it.
    pub fn leader(&self) -> Option<(NodeId, Director)> {
        let m = self.metrics();
        let id = m.current_leader?;
        let node = m.membership_config.membership().get_node(&id)?.clone();
        Some((id, node))
    }

    /// Waits (up to `within`) until some leader is known.
    pub async fn wait_leader(&self, within: Duration) -> Option<(NodeId, Director)> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(l) = self.leader() {
                return Some(l);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub fn is_leader(&self) -> bool {
        let m = self.metrics();
        m.state == ServerState::Leader && m.current_leader == Some(self.id)
    }

    /// The other members' (name, transport address); only `only` when given.
    pub fn peers(&self, only: Option<&str>) -> Vec<(String, String)> {
        self.members()
            .into_iter()
            .filter(|m| m.name != self.name && only.is_none_or(|p| p == m.name))
            .map(|m| (m.name, m.addr))
            .collect()
    }

    pub fn members(&self) -> Vec<Member> {
        let m = self.metrics();
        let membership = m.membership_config.membership();
        let voters: std::collections::BTreeSet<NodeId> = membership.voter_ids().collect();
        let mut out: Vec<Member> = membership
            .nodes()
            .map(|(id, d)| Member {
                name: d.name.clone(),
                addr: d.addr.clone(),
                role: if voters.contains(id) { "voter" } else { "learner" }.to_string(),
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Keeps asking `targets` (any director of the cluster) to add this one, until it is a
    /// voter. Safe to run on every start: a voter does nothing.
    /// Asks `targets` to add this director, until it is a voter; `token`: an operator
    /// bearer token, for clusters that authenticate with tokens.
    pub fn spawn_join(self: &Arc<Self>, targets: Vec<String>, token: Option<String>) {
        if targets.is_empty() {
            return;
        }
        let node = self.clone();
        tokio::spawn(async move {
            let body = serde_json::json!({
                "name": node.name,
                "addr": node.addr,
                "author": node.name,
                "reason": "joined with --join",
            })
            .to_string();
            let bearer = token.map(|t| format!("Bearer {t}"));
            let headers: Vec<(&str, &str)> = bearer.iter().map(|b| ("authorization", b.as_str())).collect();
            let mut attempt = 0u32;
            let mut pause = Duration::from_millis(500);
            loop {
                if node.is_voter() {
                    tracing::info!(director = %node.name, "member of the cluster");
                    return;
                }
                for t in &targets {
                    let r = node
                        .client
                        .send(Call {
                            method: hyper::Method::POST,
                            addr: t,
                            path: "/v1/members",
                            content_type: "application/json",
                            headers: &headers,
                            body: body.clone().into_bytes(),
                            timeout: Duration::from_secs(60),
                        })
                        .await;
                    match r {
                        Ok((s, _)) if s.is_success() => {
                            tracing::info!(director = %node.name, via = %t, "joined the cluster");
                            return;
                        }
                        Ok((s, b)) => {
                            if attempt.is_multiple_of(10) {
                                tracing::warn!(director = %node.name, via = %t, status = %s,
                                    "join refused: {}", String::from_utf8_lossy(&b));
                            }
                        }
                        Err(e) => {
                            if attempt.is_multiple_of(10) {
                                tracing::warn!(director = %node.name, via = %t, "join: {e}");
                            }
                        }
                    }
                }
                attempt += 1;
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(10));
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &std::path::Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn the_data_dir_is_created_private_and_an_open_one_is_tightened() {
        let base = std::env::temp_dir().join(format!("hanode-datadir-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let fresh = base.join("a/b");
        secure_data_dir(&fresh).unwrap();
        assert_eq!(mode(&fresh), 0o700);
        let open = base.join("open");
        std::fs::create_dir_all(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
        secure_data_dir(&open).unwrap();
        assert_eq!(mode(&open), 0o700);
        std::fs::write(base.join("file"), "x").unwrap();
        assert!(
            secure_data_dir(&base.join("file")).is_err(),
            "a file is not a data dir"
        );
        std::fs::remove_dir_all(&base).unwrap();
    }
}

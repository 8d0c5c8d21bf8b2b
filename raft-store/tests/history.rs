#![allow(clippy::result_large_err)]
//! The history survives snapshots and restarts: what a late joiner and an auditor rely on.

use ha_config::cluster;
use ha_config::keyed::KeyedCluster;
use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, RaftSnapshotBuilder};
use raft_store::events::{Command, ConfigEvent, Proposal};
use raft_store::state::Applied;
use raft_store::types::{Entry, TypeConfig};

fn config(weight: u32) -> ha_config::ClusterConfig {
    let text = format!(
        "virtual_server 198.18.116.134 80 {{\n lb_kind DR\n real_server 198.18.116.131 80 {{\n  weight {weight}\n }}\n}}\n"
    );
    cluster::load_str("t.conf", &text, &[]).1.cluster
}

/// The proposal of `weight`'s configuration against the one of `from` (committed as
/// version `derived_from`; weight 0: the empty version 0).
fn proposal_from(from: u32, derived_from: u64, weight: u32, base: Option<u64>) -> Proposal {
    let from = if from == 0 {
        KeyedCluster::default()
    } else {
        KeyedCluster::from_cluster(&config(from))
    };
    Proposal::between(
        &from,
        derived_from,
        &config(weight),
        "alice",
        "test",
        weight as u64,
        base,
    )
}

fn entry(index: u64, p: Proposal) -> Entry {
    openraft::Entry::<TypeConfig> {
        log_id: openraft::testing::log_id(1, 1, index),
        payload: EntryPayload::Normal(Command {
            event: ConfigEvent::ConfigProposed(Box::new(p)),
            accepted_at_ms: 1000 + index,
            accepted_by: "lvs01".into(),
        }),
    }
}

#[tokio::test]
async fn snapshot_carries_the_history_and_a_restart_keeps_it() {
    let a_dir = tempfile::TempDir::new().unwrap();
    let b_dir = tempfile::TempDir::new().unwrap();
    let (_a_db, _, mut a) = raft_store::open(a_dir.path()).unwrap();
    let p1 = proposal_from(0, 0, 1, None);
    let replies = a
        .apply(vec![
            entry(1, p1.clone()),
            entry(2, proposal_from(1, 1, 2, Some(1))),
            entry(3, proposal_from(1, 1, 3, Some(1))),
            entry(4, p1.clone()),
        ])
        .await
        .unwrap();
    assert!(matches!(replies[0], Applied::Committed { version: 1, .. }));
    assert!(matches!(replies[1], Applied::Committed { version: 2, .. }));
    assert_eq!(replies[2], Applied::StaleBase { base: 1, current: 2 });
    assert_eq!(replies[3], Applied::Duplicate { version: 1 });
    let history = a.reader().history(1, u64::MAX).unwrap();
    assert_eq!(history.len(), 2);

    let snap = a.get_snapshot_builder().await.build_snapshot().await.unwrap();
    {
        let (_b_db, _, mut b) = raft_store::open(b_dir.path()).unwrap();
        b.install_snapshot(&snap.meta, snap.snapshot).await.unwrap();
        assert_eq!(b.reader().history(1, u64::MAX).unwrap(), history);
        // Dedup knowledge travels with the snapshot.
        let r = b.apply(vec![entry(5, p1.clone())]).await.unwrap();
        assert_eq!(r[0], Applied::Duplicate { version: 1 });
    }
    let (_b_db, _, mut b) = raft_store::open(b_dir.path()).unwrap();
    let (state, applied) = b.reader().current().await;
    assert_eq!(state.version, 2);
    assert_eq!(applied.map(|l| l.index), Some(5));
    // The configuration, stored key by key, comes back whole after snapshot + restart,
    // and every earlier version is rebuilt from the deltas.
    assert_eq!(state.config, KeyedCluster::from_cluster(&config(2)));
    assert_eq!(state.hash, state.config.hash());
    let v1 = b.reader().config_at(1).await.unwrap().expect("version 1");
    assert_eq!(v1, KeyedCluster::from_cluster(&config(1)));
    assert!(b.reader().config_at(3).await.unwrap().is_none());
    assert_eq!(b.reader().history(1, u64::MAX).unwrap(), history);
    let v1 = b.reader().committed_version(1).unwrap().unwrap();
    assert_eq!(v1.seq, 1);
    assert!(b.applied_state().await.unwrap().0.is_some());
}

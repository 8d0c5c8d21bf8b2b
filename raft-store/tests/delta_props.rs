#![allow(clippy::result_large_err)]
//! Property test (issue 20): for random sequences of edits, the keyed configuration that
//! the state machine builds by applying each version's delta equals the one parsed from
//! the whole file at every version (same hash), on the director that applied every entry
//! and on one that installed a snapshot taken at a random version and was restarted, and
//! every earlier version read back from the history of deltas is the one committed then.

use ha_config::keyed::KeyedCluster;
use ha_config::{canon, cluster, ClusterConfig};
use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, RaftSnapshotBuilder};
use proptest::prelude::*;
use raft_store::events::{Command, ConfigEvent, Proposal};
use raft_store::state::Applied;
use raft_store::types::{Entry, TypeConfig};

/// Per virtual server: present, weight, an `@lvs02` weight override; the instance's
/// priorities.
type Spec = (Vec<(bool, u32, Option<u32>)>, (u32, u32));

fn text(spec: &Spec) -> String {
    let (vs, (p1, p2)) = spec;
    let mut s = format!(
        "vrrp_instance VI_1 {{\n interface ens33\n virtual_router_id 51\n @lvs01 priority {p1}\n @lvs02 priority {p2}\n virtual_ipaddress {{\n  198.18.116.134\n }}\n}}\n"
    );
    for (i, (present, w, over)) in vs.iter().enumerate() {
        if *present {
            s.push_str(&format!(
                "virtual_server 198.18.120.{} 80 {{\n lb_kind DR\n real_server 198.19.0.{} 80 {{\n  weight {w}\n{}  TCP_CHECK {{\n   connect_timeout 3\n  }}\n }}\n}}\n",
                i + 1,
                i + 1,
                over.map(|o| format!("  @lvs02 weight {o}\n")).unwrap_or_default()
            ));
        }
    }
    s
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        proptest::collection::vec((any::<bool>(), 1u32..5, proptest::option::of(1u32..5)), 8),
        (1u32..5, 1u32..5),
    )
        .prop_map(|(vs, (a, b))| (vs, (a * 50, b * 50)))
}

fn load(text: &str) -> ClusterConfig {
    let (_, l) = cluster::load_str("cluster.conf", text, &[]);
    assert!(!l.diags.has_errors(), "{:?}", l.diags);
    l.cluster
}

fn entry(index: u64, p: Proposal) -> Entry {
    openraft::Entry::<TypeConfig> {
        log_id: openraft::testing::log_id(1, 1, index),
        payload: EntryPayload::Normal(Command {
            event: ConfigEvent::ConfigProposed(Box::new(p)),
            accepted_at_ms: index,
            accepted_by: "lvs01".into(),
        }),
    }
}

async fn run(versions: Vec<Spec>, snapshot_at: usize) {
    let a_dir = tempfile::TempDir::new().unwrap();
    let b_dir = tempfile::TempDir::new().unwrap();
    let (_a_db, _, mut a) = raft_store::open(a_dir.path()).unwrap();
    let configs: Vec<ClusterConfig> = versions.iter().map(|s| load(&text(s))).collect();
    let mut b: Option<(sled::Db, raft_store::StateMachine)> = None;
    for (i, c) in configs.iter().enumerate() {
        let index = i as u64 + 1;
        let (state, _) = a.reader().current().await;
        let p = Proposal::between(&state.config, state.version, c, "prop", "test", index, None);
        let e = entry(index, p);
        let r = a.apply(vec![e.clone()]).await.unwrap();
        assert!(
            matches!(&r[0], Applied::Committed { hash, .. } if *hash == canon::hash(c)),
            "{r:?}"
        );
        if let Some((_, sm)) = b.as_mut() {
            let r = sm.apply(vec![e]).await.unwrap();
            assert!(matches!(r[0], Applied::Committed { .. }), "{r:?}");
        }
        if i == snapshot_at {
            let snap = a.get_snapshot_builder().await.build_snapshot().await.unwrap();
            {
                let (_db, _, mut fresh) = raft_store::open(b_dir.path()).unwrap();
                fresh.install_snapshot(&snap.meta, snap.snapshot).await.unwrap();
            }
            // Restarted after the install: everything comes back from disk.
            let (db, _, sm) = raft_store::open(b_dir.path()).unwrap();
            b = Some((db, sm));
        }
    }
    let (_b_db, b) = b.expect("snapshot taken");
    drop(a);
    drop(_a_db);
    let (_a_db, _, a) = raft_store::open(a_dir.path()).unwrap();
    for sm in [&a, &b] {
        let (state, _) = sm.reader().current().await;
        let last = configs.last().unwrap();
        assert_eq!(state.config, KeyedCluster::from_cluster(last));
        assert_eq!(state.hash, canon::hash(last));
        for (i, c) in configs.iter().enumerate() {
            let got = sm
                .reader()
                .config_at(i as u64 + 1)
                .await
                .unwrap()
                .expect("version");
            assert_eq!(got, KeyedCluster::from_cluster(c), "version {}", i + 1);
        }
        assert!(sm.reader().verify_history().await.is_ok());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, .. ProptestConfig::default() })]

    #[test]
    fn deltas_applied_snapshotted_and_restarted_equal_the_parsed_files(
        versions in proptest::collection::vec(spec(), 2..10),
        at in 0usize..10,
    ) {
        let snapshot_at = at % versions.len();
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(run(versions, snapshot_at));
    }
}

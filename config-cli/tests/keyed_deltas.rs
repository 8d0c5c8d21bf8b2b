//! Property test (issue 20): for random sequences of edits to a cluster file, the keyed
//! configuration built by applying each version's delta to the previous one equals the one
//! parsed from the whole file, at every version: same slots, same hash, the same canonical
//! configuration for every director; and undoing a delta gives the previous version back.

use ha_config::canon;
use ha_config::cluster;
use ha_config::keyed::KeyedCluster;
use proptest::prelude::*;

/// A cluster file's varying parts.
#[derive(Clone, Debug)]
struct Spec {
    /// Per virtual server: present, weight of its first real server, an `@lvs02` weight
    /// override, scheduler.
    vs: Vec<(bool, u32, Option<u32>, bool)>,
    prio: (u32, u32),
    extra_block: bool,
    router_id: u8,
}

#[derive(Clone, Debug)]
enum Edit {
    Toggle(usize),
    Weight(usize, u32),
    Override(usize, Option<u32>),
    Scheduler(usize),
    Priority(u32, u32),
    Extra,
    RouterId(u8),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (0usize..12).prop_map(Edit::Toggle),
        (0usize..12, 1u32..6).prop_map(|(i, w)| Edit::Weight(i, w)),
        (0usize..12, proptest::option::of(1u32..6)).prop_map(|(i, w)| Edit::Override(i, w)),
        (0usize..12).prop_map(Edit::Scheduler),
        (1u32..5, 1u32..5).prop_map(|(a, b)| Edit::Priority(a * 50, b * 50)),
        Just(Edit::Extra),
        (0u8..3).prop_map(Edit::RouterId),
    ]
}

impl Spec {
    fn apply(&mut self, e: &Edit) {
        match *e {
            Edit::Toggle(i) => self.vs[i].0 = !self.vs[i].0,
            Edit::Weight(i, w) => self.vs[i].1 = w,
            Edit::Override(i, w) => self.vs[i].2 = w,
            Edit::Scheduler(i) => self.vs[i].3 = !self.vs[i].3,
            Edit::Priority(a, b) => self.prio = (a, b),
            Edit::Extra => self.extra_block = !self.extra_block,
            Edit::RouterId(r) => self.router_id = r,
        }
    }

    fn text(&self) -> String {
        let mut s = format!(
            "global_defs {{\n router_id R{}\n hanode_ignore static_ipaddress\n}}\n",
            self.router_id
        );
        if self.extra_block {
            s.push_str("static_ipaddress {\n 198.18.5.1/24 dev ens33\n}\n");
        }
        s.push_str(&format!(
            "vrrp_instance VI_1 {{\n interface ens33\n virtual_router_id 51\n @lvs01 priority {}\n @lvs02 priority {}\n virtual_ipaddress {{\n  198.18.116.134\n }}\n}}\n",
            self.prio.0, self.prio.1
        ));
        for (i, (present, w, over, wrr)) in self.vs.iter().enumerate() {
            if !present {
                continue;
            }
            s.push_str(&format!(
                "virtual_server 198.18.120.{} 80 {{\n lb_algo {}\n lb_kind DR\n real_server 198.19.0.{} 80 {{\n  weight {w}\n{}  TCP_CHECK {{\n   connect_timeout 3\n  }}\n }}\n real_server 198.19.1.{} 80 {{\n  weight 1\n }}\n}}\n",
                i + 1,
                if *wrr { "wrr" } else { "rr" },
                i + 1,
                over.map(|o| format!("  @lvs02 weight {o}\n")).unwrap_or_default(),
                i + 1,
            ));
        }
        s
    }
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        proptest::collection::vec(
            (
                any::<bool>(),
                1u32..6,
                proptest::option::of(1u32..6),
                any::<bool>(),
            ),
            12,
        ),
        (1u32..5, 1u32..5),
        any::<bool>(),
        0u8..3,
    )
        .prop_map(|(vs, (a, b), extra_block, router_id)| Spec {
            vs,
            prio: (a * 50, b * 50),
            extra_block,
            router_id,
        })
}

fn load(text: &str) -> ha_config::ClusterConfig {
    let (_, l) = cluster::load_str("cluster.conf", text, &[]);
    assert!(!l.diags.has_errors(), "{:?}\n{text}", l.diags);
    l.cluster
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    #[test]
    fn deltas_fold_to_the_parsed_file_at_every_version(start in spec(), edits in proptest::collection::vec(proptest::collection::vec(edit(), 1..4), 1..12)) {
        let mut spec = start;
        let mut applied = KeyedCluster::default();
        for (version, batch) in edits.iter().enumerate() {
            for e in batch {
                spec.apply(e);
            }
            let parsed = load(&spec.text());
            let whole = KeyedCluster::from_cluster(&parsed);
            let before = applied.clone();
            let delta = applied.delta_to(&whole);
            let undo = applied.apply(&delta);
            prop_assert_eq!(&applied, &whole, "version {}", version + 1);
            prop_assert_eq!(applied.hash(), canon::hash(&parsed));
            prop_assert_eq!(applied.to_cluster(), canon::canonical(&parsed));
            for node in ["lvs01", "lvs02", "lvs03"] {
                prop_assert_eq!(applied.view(node), canon::canonical_config(parsed.view(node)));
            }
            // The delta names only keys that differ, and undoing it restores the version.
            for (key, slot) in &delta.changes {
                prop_assert_ne!(before.get(key), slot.as_ref(), "{} did not change", key);
            }
            let mut back = applied.clone();
            back.apply(&undo);
            prop_assert_eq!(&back, &before);
            prop_assert_eq!(back.hash(), before.hash());
        }
    }
}

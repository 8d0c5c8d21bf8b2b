//! Issue 9 acceptance: `hactl replay --at` rebuilds, from the committed history and a
//! director's runtime events alone, what was live. The seed's two directors (plus a
//! witness) in namespaces; 20 proposals (weight changes, then a priority change that makes
//! lvs02 preempt), checker flaps (rs01, then rs02, stopped and started); at 5 quiescent
//! moments `hactl table` and `hactl status` of both directors are recorded, and at the end
//! each moment is replayed (by time, and the last one by version too) and must equal what
//! was recorded. `hactl verify` passes on every node, and `/metrics` counters moved.
//! lvs02 keeps only 30 runtime events (journal retention): its moments older than the
//! checkpoint retention wrote are refused by name, the later ones still replay equal, and
//! the truncation is counted in `/metrics` and logged.
//! Needs root, nftables, curl.

use e2e::seed_cluster::{metric, scrape, Cluster, LVS};
use e2e::wait_for;
use ha_config::api::{ReplayResponse, RuntimeStatus, StatusResponse, TableResponse};
use std::time::Duration;

const NODES: [&str; 2] = ["lvs01", "lvs02"];
/// lvs02's cap on runtime events.
const LVS02_MAX_EVENTS: &str = "30";

/// The seed with probes that notice a stopped web server within about two seconds.
fn fast_checks(text: String) -> String {
    text.lines()
        .map(|l| {
            let t = l.trim_start();
            let indent = &l[..l.len() - t.len()];
            match t {
                "connect_timeout 3" => format!("{indent}connect_timeout 1"),
                "retry 3" => format!("{indent}retry 1"),
                "delay_before_retry 3" => format!("{indent}delay_before_retry 1"),
                "delay_loop 6" => format!("{indent}delay_loop 1"),
                _ => l.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// What one director showed at one moment.
struct Recorded {
    at_ms: u64,
    node: &'static str,
    table: TableResponse,
    status: RuntimeStatus,
}

struct Run {
    c: Cluster,
    base: String,
    version: u64,
}

impl Run {
    fn ok(&self, args: &[&str]) -> String {
        let o = self.c.hactl(args);
        assert!(
            o.status.success(),
            "hactl {args:?}: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).to_string()
    }

    fn propose(&mut self, text: &str, reason: &str) {
        let f = self.c.work.join(format!("p{}.conf", self.version + 1));
        std::fs::write(&f, text).expect("write");
        self.ok(&[
            "propose",
            "-f",
            &f.to_string_lossy(),
            "--reason",
            reason,
            "--author",
            "auditor-test",
        ]);
        self.version += 1;
    }

    fn statuses(&self) -> Vec<StatusResponse> {
        let out = self.ok(&["status", "--format", "json"]);
        let rows: Vec<serde_json::Value> = serde_json::from_str(&out).expect("status json");
        rows.into_iter()
            .filter_map(|r| serde_json::from_value(r["status"].clone()).ok())
            .collect()
    }

    fn runtime(&self, node: &str) -> Option<RuntimeStatus> {
        self.statuses()
            .into_iter()
            .find(|s| s.name == node)
            .and_then(|s| s.runtime)
    }

    /// Waits until both directors run the latest version with their tables in sync, the
    /// real servers' verdicts are `up`, and VRRP is `states`; then lets the events reach
    /// the journals.
    fn settle(&self, up: [bool; 2], states: [&str; 2]) {
        let v = self.version;
        wait_for(Duration::from_secs(30), "directors settled", || {
            for (i, n) in NODES.iter().enumerate() {
                let rt = self.runtime(n)?;
                let dp = &rt.dataplane;
                let svc = rt.services.first()?;
                let ok = rt.config_version == Some(v)
                    && dp.applied_version == Some(v)
                    && dp.in_sync
                    && svc.real_servers.iter().map(|r| r.up).eq(up)
                    && rt
                        .instances
                        .iter()
                        .all(|x| x.state == states[i] && !x.held_by_fence)
                    && !rt.instances.is_empty();
                if !ok {
                    return None;
                }
            }
            Some(())
        });
        std::thread::sleep(Duration::from_millis(300));
    }

    fn record(&self, out: &mut Vec<Recorded>) {
        for n in NODES {
            let t = self.ok(&["table", "--node", n, "--format", "json"]);
            let table: TableResponse = serde_json::from_str(&t).expect("table json");
            let status = self.runtime(n).expect("runtime status");
            out.push(Recorded {
                at_ms: 0,
                node: n,
                table,
                status,
            });
        }
        let at = now_ms();
        for r in out.iter_mut().rev().take(2) {
            r.at_ms = at;
        }
        std::thread::sleep(Duration::from_millis(300));
    }

    fn replay(&self, node: &str, at: &str) -> ReplayResponse {
        let out = self.ok(&["replay", "--at", at, "--node", node, "--format", "json"]);
        serde_json::from_str(&out).expect("replay json")
    }

    /// Replays a moment that retention may have dropped: None when it was, by name.
    fn replay_kept(&self, node: &str, at: &str) -> Option<ReplayResponse> {
        let o = self
            .c
            .hactl(&["replay", "--at", at, "--node", node, "--format", "json"]);
        if o.status.success() {
            return Some(serde_json::from_slice(&o.stdout).expect("replay json"));
        }
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("dropped by retention"),
            "replay {node} at {at}: {err}"
        );
        None
    }
}

/// The sum of every sample of counter `name`.
fn sum(s: &prometheus_parse::Scrape, name: &str) -> f64 {
    s.samples
        .iter()
        .filter(|x| x.metric == name)
        .map(|x| match x.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

fn with_weight(base: &str, w: u32) -> String {
    let from = "real_server 198.18.116.132 80 {\n        weight 1\n";
    assert!(
        base.contains(from),
        "the imported cluster file changed layout:\n{base}"
    );
    base.replace(
        from,
        &format!("real_server 198.18.116.132 80 {{\n        weight {w}\n"),
    )
}

/// The recorded and the replayed state agree on everything replay rebuilds.
fn assert_same(rec: &Recorded, r: &ReplayResponse, what: &str) {
    assert_eq!(
        r.desired_json, rec.table.desired_json,
        "{what}: desired table\n{}",
        r.desired
    );
    assert_eq!(r.services, rec.status.services, "{what}: real servers");
    let live: Vec<(String, String, u8)> = rec
        .status
        .instances
        .iter()
        .map(|i| (i.name.clone(), i.state.clone(), i.priority))
        .collect();
    let replayed: Vec<(String, String, u8)> = r
        .instances
        .iter()
        .map(|i| (i.name.clone(), i.state.clone(), i.priority))
        .collect();
    assert_eq!(replayed, live, "{what}: VRRP");
    assert_eq!(
        r.config_version, rec.status.config_version,
        "{what}: config version"
    );
    assert_eq!(
        r.dataplane_version, rec.status.dataplane.applied_version,
        "{what}: data-plane version"
    );
    // lvs02's journal is capped: a checkpoint stands in for its oldest events, and says so.
    let unexpected: Vec<_> = r
        .warnings
        .iter()
        .filter(|w| !(rec.node == "lvs02" && w.contains("dropped by retention")))
        .collect();
    assert!(unexpected.is_empty(), "{what}: {:?}", r.warnings);
}

#[test]
fn replay_at_recorded_moments_equals_what_was_live() {
    let c = Cluster::start_full(fast_checks, &["--journal-max-events", LVS02_MAX_EVENTS]);
    let base = std::fs::read_to_string(c.work.join("cluster.conf")).expect("cluster file");
    let mut run = Run { c, base, version: 1 };
    let metrics_before: Vec<_> = LVS.iter().map(|a| scrape(&run.c, a)).collect();
    let mut moments = Vec::new();

    // Moment 1: the seed as proposed.
    run.settle([true, true], ["MASTER", "BACKUP"]);
    run.record(&mut moments);

    // Proposals 2..=6 (weights 2..=6), then rs01's web server stops. Moment 2.
    for w in 2..=6 {
        let text = with_weight(&run.base, w);
        run.propose(&text, &format!("rs02 weight {w}"));
    }
    run.c.lab.stop_web(0);
    run.settle([false, true], ["MASTER", "BACKUP"]);
    run.record(&mut moments);

    // rs01 back; proposals 7..=11. Moment 3.
    run.c.lab.start_web(0);
    for w in 7..=11 {
        let text = with_weight(&run.base, w);
        run.propose(&text, &format!("rs02 weight {w}"));
    }
    run.settle([true, true], ["MASTER", "BACKUP"]);
    run.record(&mut moments);

    // rs02 stops; proposals 12..=16. Moment 4.
    run.c.lab.stop_web(1);
    for w in 12..=16 {
        let text = with_weight(&run.base, w);
        run.propose(&text, &format!("rs02 weight {w}"));
    }
    run.settle([true, false], ["MASTER", "BACKUP"]);
    run.record(&mut moments);

    // rs02 back; proposals 17..=20, the last one gives lvs02 priority 120: it preempts.
    // Moment 5.
    run.c.lab.start_web(1);
    for w in 17..=20 {
        let text = with_weight(&run.base, w);
        run.propose(&text, &format!("rs02 weight {w}"));
    }
    // Every real server up before version 21, so that its table is the one recorded.
    run.settle([true, true], ["MASTER", "BACKUP"]);
    let last = with_weight(&run.base, 21).replace("@lvs02 priority 80", "@lvs02 priority 120");
    assert_ne!(last, with_weight(&run.base, 21), "no `@lvs02 priority 80` line");
    run.propose(&last, "lvs02 becomes the preferred master");
    assert_eq!(run.version, 21, "the seed and 20 proposals");
    run.settle([true, true], ["BACKUP", "MASTER"]);
    run.record(&mut moments);

    // Each moment, replayed from the history alone. lvs01 keeps every event; lvs02's
    // oldest moments went with the events retention dropped, and only those.
    let mut dropped_moments = 0;
    let mut kept_after_drop = false;
    for (k, rec) in moments.iter().enumerate() {
        let what = format!("moment {} on {}", k / 2 + 1, rec.node);
        match run.replay_kept(rec.node, &rec.at_ms.to_string()) {
            Some(r) => {
                assert_same(rec, &r, &what);
                kept_after_drop |= rec.node == "lvs02" && dropped_moments > 0;
            }
            None => {
                assert_eq!(rec.node, "lvs02", "{what}: lvs01 keeps every event");
                assert!(!kept_after_drop, "{what}: dropped after a later one was kept");
                dropped_moments += 1;
            }
        }
    }
    assert!(
        dropped_moments > 0 && kept_after_drop,
        "lvs02 kept {LVS02_MAX_EVENTS} events: its first moment is gone, its last is not"
    );
    // By version: version 21's table reached the kernel with every real server up (they
    // were before it was proposed); the
    // VRRP states are those of that moment (lvs02 may not have preempted yet), so only
    // the table and the verdicts are compared.
    for rec in moments.iter().rev().take(2) {
        let r = run.replay(rec.node, "21");
        assert_eq!(r.config_version, Some(21));
        assert_eq!(r.dataplane_version, Some(21));
        assert_eq!(
            r.desired_json, rec.table.desired_json,
            "version 21 on {}",
            rec.node
        );
        assert_eq!(r.services, rec.status.services, "version 21 on {}", rec.node);
    }
    // The earlier table differs (weights, rs01 down): replay is not just "now".
    let m2 = &moments[2];
    let r = run.replay(m2.node, &m2.at_ms.to_string());
    assert_ne!(r.desired_json, moments[8].table.desired_json);
    // A version never committed is refused, naming it.
    let o = run.c.hactl(&["replay", "--at", "99", "--node", "lvs01"]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("version 99 was never committed"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // The text layout carries the same content.
    let text = run.ok(&["replay", "--at", "21", "--node", "lvs02"]);
    assert!(
        text.contains("config version 21") && text.contains("198.18.116.132:80"),
        "{text}"
    );

    // Exit 0: every chain verified and the directors' chains agree.
    run.ok(&["verify"]);

    // The counters moved as the scenario ran.
    for (i, a) in LVS.iter().enumerate() {
        let (b, m) = (&metrics_before[i], scrape(&run.c, a));
        assert_eq!(metric(&m, "hanode_config_version", None), 21.0);
        assert!(
            sum(&m, "hanode_checker_transitions_total") >= sum(b, "hanode_checker_transitions_total") + 4.0,
            "two flaps, down and up, on {a}"
        );
        assert!(
            metric(&m, "hanode_vrrp_transitions_total", Some(("instance", "VI_1")))
                > metric(b, "hanode_vrrp_transitions_total", Some(("instance", "VI_1"))),
            "the preemption on {a}"
        );
        assert!(
            metric(&m, "hanode_dataplane_syncs_total", None)
                >= metric(b, "hanode_dataplane_syncs_total", None) + 20.0
        );
        assert!(
            metric(
                &m,
                "hanode_check_duration_seconds_count",
                Some(("kind", "HTTP_GET"))
            ) > metric(
                b,
                "hanode_check_duration_seconds_count",
                Some(("kind", "HTTP_GET"))
            )
        );
    }
    // Retention: counted in /metrics, logged; lvs01 (default cap) dropped nothing.
    let m1 = scrape(&run.c, LVS[0]);
    let m2 = scrape(&run.c, LVS[1]);
    assert_eq!(metric(&m1, "hanode_journal_dropped_total", None), 0.0);
    let cap: f64 = LVS02_MAX_EVENTS.parse().expect("cap");
    assert_eq!(metric(&m2, "hanode_journal_max_events", None), cap);
    assert!(metric(&m2, "hanode_journal_dropped_total", None) > 0.0);
    assert!(metric(&m2, "hanode_journal_events", None) <= cap + cap / 10.0);
    assert!(
        std::fs::read_to_string(run.c.work.join("lvs02.log"))
            .unwrap_or_default()
            .contains("journal retention: dropped the oldest runtime events"),
        "the truncation is logged"
    );
}

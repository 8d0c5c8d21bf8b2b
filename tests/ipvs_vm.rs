//! IPVS for real: Debian's kernel under qemu (see `e2e::vm`), `lb-sync` applies tables
//! through our generic netlink module and `ipvsadm -Ln` (the independent checker) must
//! show exactly the desired table; single changes cost the ops expected; `ipvsadm -C`
//! is repaired; a scheduler the kernel lacks fails alone.

use actors::lb::model::{DestKey, DestSpec, Persistence, Service, SvcKey, SvcSpec, Table};
use actors::lb::print::ipvsadm_ln;
use ha_config::model::{Forwarding, Protocol};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Duration;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn svc(
    sched: &str,
    persistence: Option<(u32, u8)>,
    ops: bool,
    dests: &[(&str, u16, Forwarding, u32)],
) -> Service {
    Service {
        spec: SvcSpec {
            sched: sched.into(),
            persistence: persistence.map(|(timeout, prefix)| Persistence { timeout, prefix }),
            ops,
            sched_flags: 0,
        },
        dests: dests
            .iter()
            .map(|(a, port, fwd, weight)| {
                (
                    DestKey {
                        addr: ip(a),
                        port: *port,
                    },
                    DestSpec {
                        fwd: *fwd,
                        weight: *weight,
                        u_thresh: 0,
                        l_thresh: 0,
                    },
                )
            })
            .collect(),
    }
}

fn inet(proto: Protocol, a: &str, port: u16) -> SvcKey {
    SvcKey::Inet {
        proto,
        addr: ip(a),
        port,
    }
}

/// NAT, DR and TUN; rr, wrr, sh; persistence with a netmask; fwmark; IPv6 (addresses
/// inside the VM only, which has no network card).
fn base() -> Table {
    use Forwarding::*;
    let mut t = Table::new();
    t.insert(
        inet(Protocol::Tcp, "198.18.0.1", 80),
        svc(
            "wrr",
            None,
            false,
            &[("198.18.1.1", 8080, Nat, 3), ("198.18.1.2", 8080, Nat, 1)],
        ),
    );
    t.insert(
        inet(Protocol::Tcp, "198.18.0.2", 443),
        svc(
            "rr",
            Some((300, 24)),
            false,
            &[("198.18.1.3", 443, Dr, 1), ("198.18.1.4", 443, Dr, 2)],
        ),
    );
    t.insert(
        inet(Protocol::Udp, "198.18.0.3", 53),
        svc("sh", None, true, &[("198.18.1.5", 53, Tun, 1)]),
    );
    t.insert(
        SvcKey::Fwmark { v6: false, mark: 7 },
        svc("rr", Some((60, 32)), false, &[("198.18.1.6", 0, Dr, 1)]),
    );
    t.insert(
        inet(Protocol::Tcp, "64:ff9b::c612:1", 80),
        svc(
            "wlc",
            None,
            false,
            &[
                ("64:ff9b::c612:101", 80, Nat, 5),
                ("64:ff9b::c612:102", 80, Dr, 1),
            ],
        ),
    );
    t
}

fn json(t: &Table) -> Vec<u8> {
    let list: Vec<(&SvcKey, &Service)> = t.iter().collect();
    serde_json::to_vec(&list).unwrap()
}

/// `ipvsadm -Ln` reduced to service line -> its destination lines (whitespace
/// normalised, connection counters dropped), order-independent.
fn blocks(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut cur = None;
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.first() {
            Some(&"->") if words.get(1) != Some(&"RemoteAddress:Port") => {
                if let Some(c) = &cur {
                    out.get_mut(c)
                        .unwrap()
                        .insert(words[..4.min(words.len())].join(" "));
                }
            }
            Some(&("TCP" | "UDP" | "SCTP" | "FWM")) => {
                let s = words.join(" ");
                out.insert(s.clone(), BTreeSet::new());
                cur = Some(s);
            }
            _ => {}
        }
    }
    out
}

fn section<'a>(out: &'a str, step: &str) -> &'a str {
    let marker = format!("@@STEP {step}\n");
    let start = out
        .find(&marker)
        .unwrap_or_else(|| panic!("no step {step} in:\n{out}"))
        + marker.len();
    let rest = &out[start..];
    &rest[..rest.find("@@STEP ").unwrap_or(rest.len())]
}

fn report(sec: &str) -> serde_json::Value {
    let line = sec
        .lines()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no lb-sync report in:\n{sec}"));
    serde_json::from_str(line).unwrap()
}

fn ipvsadm_part(sec: &str) -> &str {
    let start = sec
        .find("@@IPVSADM")
        .unwrap_or_else(|| panic!("no ipvsadm output in:\n{sec}"));
    let rest = &sec[start..];
    &rest[..rest.find("@@PCONN").unwrap_or(rest.len())]
}

#[test]
fn ipvs_table_matches_ipvsadm_and_changes_cost_single_ops() {
    if let Some(why) = e2e::vm::unavailable() {
        eprintln!("SKIPPED: {why}");
        return;
    }
    let t1 = base();
    // One weight change.
    let mut t2 = t1.clone();
    t2.get_mut(&inet(Protocol::Tcp, "198.18.0.1", 80))
        .unwrap()
        .dests
        .values_mut()
        .next()
        .unwrap()
        .weight = 2;
    // One destination removed.
    let mut t3 = t2.clone();
    t3.get_mut(&inet(Protocol::Tcp, "198.18.0.2", 443))
        .unwrap()
        .dests
        .remove(&DestKey {
            addr: ip("198.18.1.3"),
            port: 443,
        });
    // One service added.
    let mut t4 = t3.clone();
    t4.insert(
        inet(Protocol::Tcp, "198.18.0.4", 80),
        svc("rr", None, false, &[("198.18.1.7", 80, Forwarding::Dr, 1)]),
    );
    // A scheduler the VM's kernel lacks (ip_vs_mh is not loaded, nothing can load it).
    let mut t5 = t4.clone();
    t5.insert(
        inet(Protocol::Tcp, "198.18.0.5", 80),
        svc("mh", None, false, &[("198.18.1.8", 80, Forwarding::Dr, 1)]),
    );
    t5.get_mut(&inet(Protocol::Tcp, "198.18.0.4", 80))
        .unwrap()
        .spec
        .sched = "wrr".into();

    let script = r#"
show() { echo "@@IPVSADM"; ipvsadm -Ln; echo "@@PCONN"; ipvsadm -Ln --persistent-conn | head -4; }
echo "@@STEP t1"; lb-sync --backend ipvs apply t1.json; show
echo "@@STEP again"; lb-sync --backend ipvs apply t1.json
echo "@@STEP t2"; lb-sync --backend ipvs apply t2.json; show
echo "@@STEP t3"; lb-sync --backend ipvs apply t3.json; show
echo "@@STEP t4"; lb-sync --backend ipvs apply t4.json; show
echo "@@STEP cleared"; ipvsadm -C; lb-sync --backend ipvs apply t4.json; show
echo "@@STEP deldest"; ipvsadm -d -t 198.18.0.1:80 -r 198.18.1.2:8080; lb-sync --backend ipvs apply t4.json; show
echo "@@STEP t5"; lb-sync --backend ipvs apply t5.json; show
echo "@@STEP dump"; lb-sync --backend auto dump
"#;
    let files = vec![
        ("t1.json", json(&t1)),
        ("t2.json", json(&t2)),
        ("t3.json", json(&t3)),
        ("t4.json", json(&t4)),
        ("t5.json", json(&t5)),
    ];
    let out = e2e::vm::run(script, &files, Duration::from_secs(300)).unwrap_or_else(|e| panic!("{e}"));

    let check = |step: &str, want: &Table| {
        let sec = section(&out, step);
        let have = blocks(ipvsadm_part(sec));
        let expected = blocks(&ipvsadm_ln(want));
        assert_eq!(
            have, expected,
            "step {step}: ipvsadm -Ln differs from the desired table:\n{sec}"
        );
    };

    let r = report(section(&out, "t1"));
    assert_eq!(r["errors"].as_array().map(Vec::len), Some(0), "{r}");
    assert_eq!(r["ops"], 5 + 8, "5 services, 8 destinations: {r}");
    check("t1", &t1);
    let pconn = section(&out, "t1");
    assert!(
        pconn.contains("PersistConn"),
        "ipvsadm --persistent-conn: {pconn}"
    );
    assert!(pconn.contains("persistent 300 mask 255.255.255.0"), "{pconn}");

    assert_eq!(
        report(section(&out, "again"))["ops"],
        0,
        "a table read back needs no ops"
    );

    let r = report(section(&out, "t2"));
    assert_eq!(
        (r["ops"].clone(), r["kinds"]["edit_dest"].clone()),
        (1.into(), 1.into()),
        "{r}"
    );
    check("t2", &t2);
    let r = report(section(&out, "t3"));
    assert_eq!(
        (r["ops"].clone(), r["kinds"]["del_dest"].clone()),
        (1.into(), 1.into()),
        "{r}"
    );
    check("t3", &t3);
    let r = report(section(&out, "t4"));
    assert_eq!(r["ops"], 2, "one service with one destination: {r}");
    check("t4", &t4);

    let r = report(section(&out, "cleared"));
    assert_eq!(r["ops"], 6 + 8, "ipvsadm -C: everything put back: {r}");
    check("cleared", &t4);
    let r = report(section(&out, "deldest"));
    assert_eq!(
        (r["ops"].clone(), r["kinds"]["add_dest"].clone()),
        (1.into(), 1.into()),
        "{r}"
    );
    check("deldest", &t4);

    // The refused scheduler: its service and destination fail with the kernel's error,
    // the edit of the other service is applied.
    let sec = section(&out, "t5");
    let r = report(sec);
    let errors = r["errors"].as_array().cloned().unwrap_or_default();
    assert_eq!(errors.len(), 2, "{r}");
    let text = serde_json::to_string(&errors).unwrap();
    assert!(text.contains("198.18.0.5:80"), "{text}");
    assert!(
        text.contains("No such file or directory") || text.contains("No such process"),
        "the kernel's error: {text}"
    );
    let mut applied = t5.clone();
    applied.remove(&inet(Protocol::Tcp, "198.18.0.5", 80));
    check("t5", &applied);

    let dump = section(&out, "dump");
    assert!(
        dump.contains("TCP  198.18.0.4:80 wrr"),
        "auto picks IPVS here: {dump}"
    );
}

/// Issue 22: `lvs_sync_daemon` in a real IPVS kernel, through our generic netlink (what
/// hanode does on VRRP transitions), checked with `ipvsadm -L --daemon`: the backup
/// daemon starts, becomes master (the backup stopped first), a second run restarts it as
/// it does not know its settings, and everything stops at the end. Scheduler flags
/// (`sh-port`, `sh-fallback`) reach the kernel: `ipvsadm -Ln` names them.
#[test]
fn lvs_sync_daemon_starts_swaps_and_stops_in_a_real_kernel() {
    if let Some(why) = e2e::vm::unavailable() {
        eprintln!("SKIPPED: {why}");
        return;
    }
    let mut flags = Table::new();
    let mut sh = svc("sh", None, false, &[("198.18.1.2", 80, Forwarding::Dr, 1)]);
    sh.spec.sched_flags = actors::lb::model::SCHED_PORT | actors::lb::model::SCHED_FALLBACK;
    flags.insert(inet(Protocol::Tcp, "198.18.0.9", 80), sh);
    let script = r#"
daemons() { echo "@@DAEMONS"; ipvsadm -L --daemon; echo "@@LISTED"; }
echo "@@STEP backup"; lb-sync --backend ipvs sync-daemon backup dummy0 51; daemons
echo "@@STEP master"; lb-sync --backend ipvs sync-daemon master dummy0 51; daemons
echo "@@STEP again"; lb-sync --backend ipvs sync-daemon master dummy0 7; daemons
echo "@@STEP none"; lb-sync --backend ipvs sync-daemon none; daemons
echo "@@STEP flags"; lb-sync --backend ipvs apply flags.json; ipvsadm -Ln; lb-sync --backend ipvs dump
echo "@@STEP end"
"#;
    let out = e2e::vm::run(script, &[("flags.json", json(&flags))], Duration::from_secs(300))
        .unwrap_or_else(|e| panic!("{e}"));
    let daemons = |step: &str| -> (String, String) {
        let sec = section(&out, step);
        let start = sec.find("@@DAEMONS\n").unwrap_or_else(|| panic!("{step}: {sec}"));
        let end = sec.find("@@LISTED").unwrap_or(sec.len());
        (
            sec[..start].trim().to_string(),
            sec[start + 10..end].trim().to_string(),
        )
    };
    // ipvsadm 1.31 adds the kernel's defaults: `, maxlen=1472, group=224.0.0.81, ...)`.
    let check = |step: &str, steps: &str, listed: &str| {
        let (done, list) = daemons(step);
        assert_eq!(done, steps, "{step}: {out}");
        assert!(
            if listed.is_empty() {
                list.is_empty()
            } else {
                list.starts_with(listed)
            },
            "{step}: ipvsadm -L --daemon says {list:?}, not {listed:?}"
        );
    };
    check(
        "backup",
        "started backup dummy0 51",
        "backup sync daemon (mcast=dummy0, syncid=51,",
    );
    check(
        "master",
        "stopped backup\nstarted master dummy0 51",
        "master sync daemon (mcast=dummy0, syncid=51,",
    );
    check(
        "again",
        "stopped master\nstarted master dummy0 7",
        "master sync daemon (mcast=dummy0, syncid=7,",
    );
    check("none", "stopped master", "");
    let sec = section(&out, "flags");
    assert!(
        sec.contains("sh (sh-fallback,sh-port)") || sec.contains("sh (flag-1,flag-2)"),
        "ipvsadm -Ln does not show the scheduler flags:\n{sec}"
    );
    // Read back by us as ipvsadm prints them.
    assert_eq!(
        sec.matches("sh-fallback,sh-port").count() + sec.matches("flag-1,flag-2").count(),
        2,
        "{sec}"
    );
}

/// Issue 22: IPVS connection sync between two real IPVS kernels (two VMs on one virtual
/// Ethernet), the daemons run as hanode runs them for `lvs_sync_daemon`. lvs01 (master
/// daemon) schedules a UDP flow from lvs02 to its VIP: lvs02's backup daemon receives
/// it, and `ipvsadm -Lnc` on lvs02 lists the same client, VIP and real server. Then the
/// roles swap (as on a VRRP takeover: lvs01 backup first, then lvs02 master) and a flow
/// lvs02 schedules reaches lvs01's table.
#[test]
fn ipvs_connections_sync_between_two_kernels_and_back_after_the_roles_swap() {
    if let Some(why) = e2e::vm::unavailable() {
        eprintln!("SKIPPED: {why}");
        return;
    }
    let table = |vip: &str| {
        let mut t = Table::new();
        t.insert(
            inet(Protocol::Udp, vip, 53),
            svc("rr", None, false, &[("198.18.50.3", 53, Forwarding::Dr, 1)]),
        );
        json(&t)
    };
    // Waits for a connection to VIP:53 in this kernel's table (the master flushes its
    // sync buffer within seconds), then lists the table.
    let common = r#"
set +e
ip link set eth0 up
signal() { i=0; until echo go | nc -w 2 $1 $2 >/dev/null 2>&1; do usleep 200000; i=$((i+1)); [ $i -gt 300 ] && echo "@@NO-PEER $1:$2" && return 1; done; }
synced() { i=0; until ipvsadm -Lnc | grep -q " $1:53 "; do usleep 200000; i=$((i+1)); [ $i -gt 100 ] && break; done; echo "@@CONNS"; ipvsadm -Lnc; echo "@@DONE"; }
"#;
    let lvs01 = format!(
        r#"{common}
ip addr add 198.18.60.1/32 dev lo
lb-sync --backend ipvs apply vip1.json >/dev/null
echo "@@STEP master"; lb-sync --backend ipvs sync-daemon master eth0 51
ip addr add 198.18.50.1/24 dev eth0
nc -l -p 9000 >/dev/null
echo "@@STEP swap"; lb-sync --backend ipvs sync-daemon backup eth0 51
signal 198.18.50.2 9001
nc -l -p 9002 >/dev/null
ip route add 198.18.60.2/32 via 198.18.50.2
echo "@@STEP send"; lb-sync udp-send 198.18.60.2:53 5
echo "@@STEP synced"; synced 198.18.60.2
signal 198.18.50.2 9003
"#
    );
    let lvs02 = format!(
        r#"{common}
echo "@@STEP backup"; lb-sync --backend ipvs sync-daemon backup eth0 51
ip addr add 198.18.50.2/24 dev eth0
i=0; until ping -c 1 -W 1 198.18.50.1 >/dev/null 2>&1; do i=$((i+1)); [ $i -gt 120 ] && echo "@@NO-PEER" && break; done
ip route add 198.18.60.1/32 via 198.18.50.1
echo "@@STEP send"; lb-sync udp-send 198.18.60.1:53 5
echo "@@STEP synced"; synced 198.18.60.1
signal 198.18.50.1 9000
nc -l -p 9001 >/dev/null
echo "@@STEP swap"; lb-sync --backend ipvs sync-daemon master eth0 51
ip addr add 198.18.60.2/32 dev lo
lb-sync --backend ipvs apply vip2.json >/dev/null
signal 198.18.50.1 9002
nc -l -p 9003 >/dev/null
"#
    );
    let [one, two] = e2e::vm::run_pair(
        [&lvs01, &lvs02],
        &[
            ("vip1.json", table("198.18.60.1")),
            ("vip2.json", table("198.18.60.2")),
        ],
        Duration::from_secs(400),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let both = format!("lvs01:\n{one}\nlvs02:\n{two}");
    println!("{both}");
    assert!(!both.contains("@@NO-PEER"), "{both}");
    let conns = |out: &str| -> String {
        let sec = section(out, "synced");
        let start = sec.find("@@CONNS\n").map(|i| i + 8).unwrap_or(0);
        sec[start..sec.find("@@DONE").unwrap_or(sec.len())].to_string()
    };
    // lvs02's backup daemon has lvs01's connection: client lvs02, VIP 1, the real server.
    let synced = |out: &str, vip: &str, client: &str| {
        conns(out).lines().any(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            w.first() == Some(&"UDP")
                && w.iter().any(|x| x.starts_with(&format!("{client}:")))
                && w.contains(&format!("{vip}:53").as_str())
                && w.contains(&"198.18.50.3:53")
        })
    };
    assert!(
        synced(&two, "198.18.60.1", "198.18.50.2"),
        "lvs02 did not get lvs01's connection:\n{both}"
    );
    assert_eq!(section(&two, "backup").trim(), "started backup eth0 51", "{both}");
    assert_eq!(section(&one, "master").trim(), "started master eth0 51", "{both}");
    // After the swap, the other way.
    assert_eq!(
        section(&one, "swap").trim(),
        "stopped master\nstarted backup eth0 51",
        "{both}"
    );
    assert!(
        section(&two, "swap").contains("stopped backup\nstarted master eth0 51"),
        "{both}"
    );
    assert!(
        synced(&one, "198.18.60.2", "198.18.50.1"),
        "lvs01 did not get lvs02's connection:\n{both}"
    );
}

/// Our table of a keepalived.conf with every real server up (no checkers).
fn table_of(text: &str) -> Table {
    let (parsed, loaded) = ha_config::cluster::load_str("ka.conf", text, &[]);
    assert!(
        !loaded.diags.has_errors(),
        "{}",
        loaded.diags.render(&parsed.sources)
    );
    let cfg = &loaded.cluster.default;
    let mut t = Table::new();
    for vs in &cfg.virtual_servers {
        let out = actors::check::table::desired(vs, |_, _| actors::check::table::rs_verdict([]), true);
        t.extend(actors::lb::desired::services(vs, &cfg.vs_groups, &out));
    }
    t
}

/// virtual_server_group (address ranges, ports, fwmark members), fwmark services,
/// persistence, one-packet scheduling, NAT and DR: keepalived programs the VM's IPVS from
/// the file, then our backend programs it from our table of the same file; `ipvsadm -Ln`
/// must read the same (issue 24).
#[test]
fn groups_and_fwmark_services_as_keepalived_programs_them() {
    if let Some(why) = e2e::vm::unavailable() {
        eprintln!("SKIPPED: {why}");
        return;
    }
    let conf = "global_defs {\n router_id VM\n}\n\
virtual_server_group web {\n 198.18.0.10-12 80\n 198.18.0.20 80\n fwmark 7\n}\n\
virtual_server group web {\n delay_loop 6\n lb_algo wrr\n lb_kind DR\n protocol TCP\n persistence_timeout 300\n\
 real_server 198.18.1.1 80 {\n  weight 3\n }\n real_server 198.18.1.2 80 {\n  weight 1\n }\n}\n\
virtual_server fwmark 9 {\n lb_algo sh\n lb_kind NAT\n persistence_timeout 120\n persistence_granularity 255.255.255.0\n\
 real_server 198.18.1.3 443 {\n  weight 2\n }\n}\n\
virtual_server 198.18.0.30 53 {\n protocol UDP\n lb_algo rr\n lb_kind NAT\n ops\n\
 real_server 198.18.1.4 5353 {\n  weight 1\n }\n real_server 198.18.1.5 5353 {\n  weight 4\n }\n}\n";
    let ours = table_of(conf);
    assert_eq!(ours.len(), 7, "5 addresses and 2 marks: {ours:?}");
    // keepalived's checker process alone (-C), in the foreground; it programs IPVS at
    // start. Then it is stopped (it removes what it added) and ours programs the same.
    let script = r#"
mkdir -p /var/run /run /etc
echo "root:x:0:0:root:/root:/bin/sh" > /etc/passwd
echo "root:x:0:" > /etc/group
/usr/sbin/keepalived -n -l -C -f /t/ka.conf -p /tmp/ka.pid -c /tmp/ka-c.pid > /tmp/ka.log 2>&1 &
KA=$!
i=0
while [ $i -lt 200 ]; do
  n=$(ipvsadm -Ln | grep -c -- '->' )
  [ "$n" -ge 14 ] && break
  sleep 0.1; i=$((i+1))
done
sleep 1
echo "@@STEP keepalived"; echo "@@IPVSADM"; ipvsadm -Ln; echo "@@PCONN"
kill $KA; wait $KA
echo "@@STEP log"; cat /tmp/ka.log | tail -20
echo "@@STEP after"; echo "@@IPVSADM"; ipvsadm -Ln; echo "@@PCONN"
echo "@@STEP ours"; lb-sync --backend ipvs apply /t/ours.json; echo "@@IPVSADM"; ipvsadm -Ln; echo "@@PCONN"
echo "@@STEP done"
"#;
    let files = vec![("ka.conf", conf.as_bytes().to_vec()), ("ours.json", json(&ours))];
    let out = e2e::vm::run_with(
        script,
        &e2e::vm::Payload {
            files: &files,
            system: &["/usr/sbin/keepalived"],
            ..Default::default()
        },
        Duration::from_secs(300),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let ka = blocks(ipvsadm_part(section(&out, "keepalived")));
    let mine = blocks(ipvsadm_part(section(&out, "ours")));
    eprintln!(
        "keepalived programmed:\n{}",
        ipvsadm_part(section(&out, "keepalived"))
    );
    assert_eq!(ka.len(), 7, "keepalived's services:\n{out}");
    assert_eq!(
        mine, ka,
        "ipvsadm -Ln: ours (left) and keepalived's (right)\n{out}"
    );
    assert!(
        blocks(ipvsadm_part(section(&out, "after"))).is_empty(),
        "keepalived removes its services when it stops:\n{out}"
    );
    assert!(
        mine.keys().any(|k| k.starts_with("FWM 7")) && mine.keys().any(|k| k.starts_with("FWM 9")),
        "{mine:?}"
    );
}

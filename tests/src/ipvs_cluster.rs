//! The seed's two directors as qemu VMs with real IPVS kernels (Debian's kernel, see
//! [`crate::vm::LiveVm`]), their network cards on the seed lab's switch, each running
//! `hanode --dataplane ipvs` with the seed's cluster file (on the VMs' `eth0`, VRRPv3
//! adverts every 0.5 s) and optionally `lvs_sync_daemon eth0 VI_1`; the witness, the
//! real servers (DR, an echo service on VIP:7000) and the clients are the lab's
//! namespaces (`seed_lab`), as in the nftables scenarios.
//!
//! The quorum gate is off here: with 0.5 s adverts it releases after 0.5 s without an
//! answer from a majority, and a director on an emulated CPU (debug build under TCG)
//! misses that now and then; the gate is tested in `tests/partitions.rs` at native speed.
//!
//! Why 0.5 s adverts: when the master's link goes down, a backup takes over after its
//! master-down interval (3 x advert_int + skew: 2.7-3.7 s with the seed's 1 s), and a
//! TCP connection whose segment was lost meanwhile retransmits 3.0 s and then 6.2 s
//! after the loss; the harness counts a connection broken after 5 s without an echo.
//! (On nftables the backup's ingress hook forwards the frames the switch floods to it
//! once the master's port is down, which hides this.)

use crate::conn_harness::{echo_service, ECHO_PORT};
use crate::netns::{attach, Netns, NsProcess};
use crate::seed_cluster::{hactl_from, hanode, import_seed, LVS, VIP, WITNESS};
use crate::seed_lab::SeedLab;
use crate::vm::{LiveVm, Payload};
use crate::wait_for;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The directors' MAC addresses (the clients' neighbour entry for the VIP says which
/// one they send to).
pub const MACS: [&str; 2] = ["52:54:00:00:01:01", "52:54:00:00:01:02"];
pub const NAMES: [&str; 2] = ["lvs01", "lvs02"];

/// Fields drop in order: the VMs first, the lab's namespaces last.
pub struct VmCluster {
    pub vms: [LiveVm; 2],
    _witness_node: NsProcess,
    pub witness: Netns,
    pub lab: SeedLab,
    pub work: PathBuf,
}

/// Brings up a director VM: `eth0` at `LVS[i]` on the lab's switch, with hanode.
fn director_vm(lab: &SeedLab, i: usize) -> LiveVm {
    let setup = format!(
        "ip link set eth0 up\nip addr add {}/24 dev eth0\nsysctl -qw net.ipv4.conf.all.send_redirects=0\nsysctl -qw net.ipv4.conf.eth0.send_redirects=0\nmkdir -p /data",
        LVS[i]
    );
    let payload = Payload {
        bins: &["hanode"],
        modules: &["ip_vs_mh"],
        ..Payload::default()
    };
    LiveVm::boot_on_switch(&lab.sw, &format!("tap{i}"), MACS[i], &setup, &payload)
        .unwrap_or_else(|e| panic!("{}: {e}", NAMES[i]))
}

impl VmCluster {
    /// Starts the cluster with the echo service scheduled by `sched`, with or without
    /// `lvs_sync_daemon`; returns once lvs01 holds the VIP and curl answers through it.
    pub fn start(sched: &str, sync_daemon: bool) -> VmCluster {
        let lab = SeedLab::new(0);
        let work = lab.dir.path().to_path_buf();
        let witness = Netns::new("wit");
        attach(&lab.sw, "pw", &witness, "ens33", &format!("{WITNESS}/24"));
        // Both VMs boot at once.
        let mut vms = [director_vm(&lab, 0), director_vm(&lab, 1)];
        for (vm, name) in vms.iter_mut().zip(NAMES) {
            vm.wait_ready().unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        start_hanode(&mut vms[0], 0, &["--bootstrap"]);
        let join = format!("{}:7101", LVS[0]);
        start_hanode(&mut vms[1], 1, &["--join", &join]);
        let w = hanode(
            &witness,
            &work,
            "witness",
            WITNESS,
            &["--join", &join, "--control-plane-only"],
        );
        let mut c = VmCluster {
            vms,
            _witness_node: w,
            witness,
            lab,
            work,
        };
        let conf = c.cluster_file(sched, sync_daemon);
        wait_for(Duration::from_secs(120), "three voters", || {
            let o = c.hactl(&["cluster", "members"]);
            (String::from_utf8_lossy(&o.stdout).matches("voter").count() >= 3).then_some(())
        });
        let o = c.hactl(&[
            "propose",
            "-f",
            &conf.to_string_lossy(),
            "--wait=120",
            "--reason",
            "seed on IPVS",
            "--author",
            "test",
        ]);
        assert!(
            o.status.success(),
            "propose: {}{}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr),
            c.logs()
        );
        c.wait_vip(0, Duration::from_secs(60), "VIP on lvs01");
        wait_for(Duration::from_secs(60), "curl through the VIP", || c.lab.curl());
        c
    }

    /// The seed's two keepalived files imported into one cluster file, on the VMs'
    /// `eth0` with 0.5 s adverts, maybe `lvs_sync_daemon`, and the echo service
    /// scheduled by `sched`.
    fn cluster_file(&self, sched: &str, sync_daemon: bool) -> PathBuf {
        let conf = import_seed(&self.work);
        let text = std::fs::read_to_string(&conf).expect("cluster file");
        assert!(text.contains("global_defs {"), "{text}");
        assert!(text.contains("advert_int 1\n"), "{text}");
        let text = text
            .replace("ens33", "eth0")
            .replace("advert_int 1\n", "version 3\n    advert_int 0.5\n");
        let text = if sync_daemon {
            text.replacen("global_defs {", "global_defs {\n   lvs_sync_daemon eth0 VI_1", 1)
        } else {
            text
        } + &echo_service(sched, [1, 1]);
        std::fs::write(&conf, text).expect("cluster file");
        conf
    }

    pub fn hactl(&self, args: &[&str]) -> std::process::Output {
        hactl_from(&self.witness, args)
    }

    pub fn holds(&mut self, i: usize) -> bool {
        self.vms[i]
            .must("ip -o -4 addr show dev eth0")
            .contains(&format!(" {VIP}/"))
    }

    /// Waits until director `i` (and only it) holds the VIP.
    pub fn wait_vip(&mut self, i: usize, within: Duration, what: &str) {
        let t = Instant::now();
        while !self.holds(i) || self.holds(1 - i) {
            assert!(t.elapsed() < within, "timed out: {what}\n{}", self.logs());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Until lvs02 holds the VIP (a killed lvs01 leaves its address behind).
    pub fn wait_backup_takes_over(&mut self) {
        let t = Instant::now();
        while !self.holds(1) {
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "lvs02 did not take over\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Until the client sends to director `i` (its neighbour entry for the VIP).
    pub fn wait_traffic_on(&self, i: usize) {
        wait_for(
            Duration::from_secs(30),
            "the client to send to the new master",
            || {
                let o = self.lab.client.ip(&["neigh", "show", VIP]);
                String::from_utf8_lossy(&o.stdout).contains(MACS[i]).then_some(())
            },
        );
    }

    /// Established connections to the echo service in director `i`'s kernel
    /// (`ipvsadm -Lnc`, the independent checker).
    pub fn established(&mut self, i: usize) -> usize {
        let out = self.vms[i].must("ipvsadm -Lnc");
        let service = format!(" {VIP}:{ECHO_PORT} ");
        out.lines()
            .filter(|l| l.contains("ESTABLISHED") && l.contains(&service))
            .count()
    }

    /// Waits until lvs02's kernel has at least `n` established connections: the sync
    /// daemon carried lvs01's.
    pub fn wait_synced_on_lvs02(&mut self, n: usize) {
        let t = Instant::now();
        while self.established(1) < n {
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "lvs02's kernel has {} of {n} connections\n{}",
                self.established(1),
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn logs(&mut self) -> String {
        let mut s = String::new();
        for (i, name) in NAMES.iter().enumerate() {
            let tail = self.vms[i]
                .sh(
                    "grep -v openraft /tmp/hanode.log | tail -n 40; ipvsadm -Ln; ipvsadm -Lnc | head -n 8; ip -o addr show dev eth0",
                    Duration::from_secs(20),
                )
                .map(|(_, out)| out)
                .unwrap_or_else(|e| e);
            s.push_str(&format!(
                "--- {name} (VM): hanode.log, last lines; ipvsadm -Ln, -Lnc; eth0\n{tail}"
            ));
        }
        s
    }
}

/// Starts hanode in director VM `i` (its data directory survives restarts).
pub fn start_hanode(vm: &mut LiveVm, i: usize, extra: &[&str]) {
    vm.must(&format!(
        "RUST_LOG=info,openraft=warn hanode --name {name} --data-dir /data/{name} --listen {addr}:7101 --insecure --dataplane ipvs --quorum-gate off {} >> /tmp/hanode.log 2>&1 &",
        extra.join(" "),
        name = NAMES[i],
        addr = LVS[i],
    ));
}

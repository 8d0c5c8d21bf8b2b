//! A two-director VRRP lab in network namespaces (the seed's addresses): a switch
//! namespace with a bridge, `lvs01` and `lvs02` attached as `ens33`, our engine or
//! keepalived started in either. Used by `tests/vrrp_netns.rs` and the `vrrp-bench` binary.

use crate::netns::{attach, switch, Netns, NsProcess};
use crate::{bin_dir, temp_root};
use std::cell::Cell;
use std::time::{Duration, Instant};

pub const VIP: &str = "198.18.116.134";
pub const LVS01: &str = "198.18.116.130/24";
pub const LVS02: &str = "198.18.116.135/24";

pub fn cluster_conf(extra_global: &str) -> String {
    format!(
        "global_defs {{\n    router_id LVS_DEVEL\n{extra_global}}}\n\nvrrp_instance VI_1 {{\n    @lvs01 state MASTER\n    @lvs02 state BACKUP\n    interface ens33\n    virtual_router_id 51\n    @lvs01 priority 100\n    @lvs02 priority 80\n    advert_int 1\n    authentication {{\n        auth_type PASS\n        auth_pass 1111\n    }}\n    virtual_ipaddress {{\n        {VIP}\n    }}\n}}\n"
    )
}

/// Two directors on a switch (bridge), the cluster file on disk.
pub struct Lab {
    pub root: tempfile::TempDir,
    pub lvs01: Netns,
    pub lvs02: Netns,
    pub switch: Netns,
    starts: Cell<u32>,
}

impl Lab {
    pub fn new(tag: &str, conf: &str) -> Lab {
        let root = temp_root(tag);
        let sw = switch(&format!("{tag}s"));
        let lvs01 = Netns::new(&format!("{tag}1"));
        let lvs02 = Netns::new(&format!("{tag}2"));
        attach(&sw, "p1", &lvs01, "ens33", LVS01);
        attach(&sw, "p2", &lvs02, "ens33", LVS02);
        std::fs::write(root.path().join("cluster.conf"), conf).unwrap();
        Lab {
            root,
            lvs01,
            lvs02,
            switch: sw,
            starts: Cell::new(0),
        }
    }

    /// A second LAN (`ens34`, 198.18.117.0/24) on its own switch.
    pub fn second_lan(&self, tag: &str) -> Netns {
        let sw = switch(&format!("{tag}t"));
        attach(&sw, "q1", &self.lvs01, "ens34", "198.18.117.130/24");
        attach(&sw, "q2", &self.lvs02, "ens34", "198.18.117.135/24");
        sw
    }

    pub fn ours(&self, node: &str) -> NsProcess {
        let ns = if node == "lvs01" { &self.lvs01 } else { &self.lvs02 };
        let mut c = ns.command(bin_dir().join("hanode").to_str().unwrap());
        c.args(["vrrp", "--config"])
            .arg(self.root.path().join("cluster.conf"))
            .args(["--node", node])
            .env("RUST_LOG", "info");
        NsProcess::spawn(c, self.root.path().join(format!("ours-{node}.log")))
    }

    pub fn keepalived(&self, node: &str) -> NsProcess {
        let ns = if node == "lvs01" { &self.lvs01 } else { &self.lvs02 };
        let dir = self.root.path();
        let conf = dir.join(format!("ka-{node}.conf"));
        let out = std::process::Command::new(bin_dir().join("hactl"))
            .args(["export", "--node", node])
            .arg(dir.join("cluster.conf"))
            .arg("-o")
            .arg(&conf)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        // Fresh pid files per start: a killed keepalived's zombie would block the next.
        let n = self.starts.get() + 1;
        self.starts.set(n);
        let mut c = ns.command("keepalived");
        c.args(["-n", "-l", "-D", "-f"])
            .arg(&conf)
            .arg("-p")
            .arg(dir.join(format!("ka-{node}-{n}.pid")))
            .arg("-r")
            .arg(dir.join(format!("ka-{node}-{n}-vrrp.pid")));
        NsProcess::spawn(c, dir.join(format!("ka-{node}.log")))
    }

    /// `node` crashes: every process of its namespace killed at once (none stops
    /// gracefully). The VIP a killed keepalived leaves on its interface is removed, so
    /// that the holder checks see only the live routers.
    pub fn crash(&self, node: &str) {
        let ns = if node == "lvs01" { &self.lvs01 } else { &self.lvs02 };
        ns.crash_all();
        std::thread::sleep(Duration::from_millis(20));
        let _ = ns.ip(&["addr", "del", &format!("{VIP}/32"), "dev", "ens33"]);
        let _ = ns.ip(&["addr", "del", &format!("{VIP}/24"), "dev", "ens33"]);
    }

    pub fn holders(&self) -> (bool, bool) {
        (self.lvs01.has_addr(VIP), self.lvs02.has_addr(VIP))
    }

    pub fn wait_holder(&self, want: (bool, bool), within: Duration, what: &str) -> Duration {
        let start = Instant::now();
        while self.holders() != want {
            if start.elapsed() > within {
                panic!(
                    "timed out after {within:?} waiting for {what}; holders (lvs01, lvs02) = {:?}\n{}",
                    self.holders(),
                    dump(self)
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        start.elapsed()
    }

    /// The VIP stays where it is for `d` (exactly one holder throughout).
    pub fn stays(&self, want: (bool, bool), d: Duration) {
        let end = Instant::now() + d;
        while Instant::now() < end {
            assert_eq!(self.holders(), want, "VIP holder changed");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

pub fn ka_complaints(log: &str) -> Vec<String> {
    let needles = [
        "invalid",
        "mismatch",
        "bad ",
        "wrong",
        "Invalid",
        "unexpected",
        "received a ",
        "checksum",
    ];
    log.lines()
        .filter(|l| needles.iter().any(|n| l.contains(n)))
        .map(str::to_string)
        .collect()
}

pub fn dump(lab: &Lab) -> String {
    let mut s = String::new();
    for entry in std::fs::read_dir(lab.root.path()).unwrap().flatten() {
        let p = entry.path();
        if p.extension().is_some_and(|e| e == "log") {
            s += &format!(
                "--- {}\n{}\n",
                p.display(),
                std::fs::read_to_string(&p).unwrap_or_default()
            );
        }
    }
    s
}

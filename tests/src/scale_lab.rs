//! Three full directors at scale (issue 20), each in its own namespace on one switch, with
//! the nftables data plane and checkers on, and one namespace of real servers. Direct
//! routing needs every real server on-link, and each on-link address costs a neighbour
//! entry (the host's neighbour table is shared by every namespace and small), so the real
//! servers use 16 addresses and a port per virtual server: virtual server `i` listens on
//! port 1000 + `i` and its real servers on the same port of four of the 16 addresses
//! (every (address, port) distinct: one probe per real server). In the real servers'
//! namespace the 16 addresses are local, and every port is redirected to one listener.
//! Used by `config_scale` and `config-scale-bench --full`.

use crate::netns::{attach, switch, Netns, NsProcess};
use crate::seed_cluster::hanode;
use crate::{bin_dir, temp_root, wait_for};
use ha_config::api::StatusResponse;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

pub const NAMES: [&str; 3] = ["lvs01", "lvs02", "lvs03"];
pub const ADDRS: [&str; 3] = ["198.18.116.130", "198.18.116.135", "198.18.116.136"];
/// The real servers' namespace's address on the switch.
pub const RS_GW: &str = "198.18.116.131";
/// The real servers' 16 addresses: `RS_NET.0/28`.
pub const RS_NET: &str = "198.19.0";

/// Virtual server `i`'s address and port.
pub fn vs_addr(i: u32) -> (String, u16) {
    (
        format!("198.18.{}.{}", 128 + (i / 250) % 127, 1 + i % 250),
        1000 + (i % 60_000) as u16,
    )
}

/// Real server `r` (of 4) of virtual server `i`: its address (the port is the virtual
/// server's).
pub fn rs_addr(i: u32, r: u32) -> String {
    format!("{RS_NET}.{}", (i * 4 + r) % 16)
}

/// Virtual server `i`'s block; `weights(r)` gives each real server's weight.
pub fn vs_block(i: u32, weights: impl Fn(u32) -> u32) -> String {
    let (ip, port) = vs_addr(i);
    let mut s = format!(
        "virtual_server {ip} {port} {{\n    delay_loop 60\n    lb_algo wrr\n    lb_kind DR\n    protocol TCP\n"
    );
    for r in 0..4 {
        s.push_str(&format!(
            "    real_server {} {port} {{\n        weight {}\n        TCP_CHECK {{\n            connect_timeout 3\n            warmup 60\n        }}\n    }}\n",
            rs_addr(i, r),
            weights(r)
        ));
    }
    s.push_str("}\n");
    s
}

/// The cluster file of `n` virtual servers; `weights(i, r)` gives each real server's
/// weight. Probes every 60 s (`delay_loop 60`), 4 x `n` per director, their first ones
/// spread over a minute (`warmup 60`): one listener answers them all.
pub fn conf(n: u32, weights: impl Fn(u32, u32) -> u32) -> String {
    // The VRRP instance and global settings of the generic scale file.
    let mut s = crate::scale::scale_conf(0, 0, |_, _| 0);
    for i in 0..n {
        s.push('\n');
        s.push_str(&vs_block(i, |r| weights(i, r)));
    }
    s
}

pub struct ScaleLab {
    pub nodes: Vec<Option<NsProcess>>,
    pub web: NsProcess,
    pub dirs: Vec<Netns>,
    /// Real servers; also where the test's own HTTP calls and `hactl` run from.
    pub rs: Netns,
    pub sw: Netns,
    pub work: tempfile::TempDir,
}

impl ScaleLab {
    /// The namespaces, the real servers' listener and three directors (`extra`: more
    /// `hanode` flags for each), once all three are voters.
    pub fn start(tag: &str, extra: &[&str]) -> ScaleLab {
        let work = temp_root(tag);
        let sw = switch("ssw");
        let rs = Netns::new("srs");
        attach(&sw, "prs", &rs, "ens33", &format!("{RS_GW}/24"));
        rs.must(&["route", "add", "local", &format!("{RS_NET}.0/28"), "dev", "lo"]);
        let nft = rs
            .command("nft")
            .args([
                "add table ip redir; add chain ip redir pre { type nat hook prerouting priority -100; }; add rule ip redir pre tcp dport != 80 redirect to :80",
            ])
            .output()
            .expect("nft");
        assert!(
            nft.status.success(),
            "nft: {}",
            String::from_utf8_lossy(&nft.stderr)
        );
        let web = NsProcess::spawn(
            {
                let mut c = rs.command(&bin_dir().join("tiny-web").to_string_lossy());
                c.args(["0.0.0.0:80", "rs"]);
                c
            },
            work.path().join("web.log"),
        );
        let mut dirs = Vec::new();
        for (i, addr) in ADDRS.iter().enumerate() {
            let ns = Netns::new(&format!("sd{i}"));
            attach(&sw, &format!("pd{i}"), &ns, "ens33", &format!("{addr}/24"));
            ns.must(&["route", "add", &format!("{RS_NET}.0/28"), "dev", "ens33"]);
            dirs.push(ns);
        }
        let mut lab = ScaleLab {
            nodes: Vec::new(),
            web,
            dirs,
            rs,
            sw,
            work,
        };
        let seed = format!("{}:7101", ADDRS[0]);
        for i in 0..3 {
            let mut args: Vec<&str> = vec!["--dataplane", "nftables"];
            if i == 0 {
                args.push("--bootstrap");
            } else {
                args.extend(["--join", &seed]);
            }
            args.extend_from_slice(extra);
            lab.nodes.push(Some(hanode(
                &lab.dirs[i],
                lab.work.path(),
                NAMES[i],
                ADDRS[i],
                &args,
            )));
            if i == 0 {
                wait_for(Duration::from_secs(20), "lvs01 to answer", || lab.status(0));
            }
        }
        wait_for(Duration::from_secs(30), "three voters", || {
            let o = lab.hactl(&["cluster", "members"]);
            let t = String::from_utf8_lossy(&o.stdout).to_string();
            (t.matches("voter").count() >= 3).then_some(())
        });
        lab
    }

    pub fn path(&self) -> &Path {
        self.work.path()
    }

    pub fn cluster_arg(&self) -> String {
        ADDRS.map(|a| format!("{a}:7101")).join(",")
    }

    /// `hactl --cluster ALL ARGS`, from the real servers' namespace.
    pub fn hactl(&self, args: &[&str]) -> Output {
        self.rs
            .command(&bin_dir().join("hactl").to_string_lossy())
            .args(["--cluster", &self.cluster_arg()])
            .args(args)
            .output()
            .expect("hactl")
    }

    /// `GET PATH` of director `i` (None: no answer, or not 200).
    pub fn get(&self, i: usize, path: &str) -> Option<Vec<u8>> {
        let o = self
            .rs
            .command("curl")
            .args(["-sf", "-m", "10", &format!("http://{}:7101{path}", ADDRS[i])])
            .output()
            .ok()?;
        o.status.success().then_some(o.stdout)
    }

    pub fn status(&self, i: usize) -> Option<StatusResponse> {
        serde_json::from_slice(&self.get(i, "/v1/status")?).ok()
    }

    /// Waits until every director's data plane has applied `version` completely and its
    /// kernel table equals the desired one.
    pub fn wait_applied(&self, version: u64, within: Duration) {
        let start = std::time::Instant::now();
        loop {
            let runtimes: Vec<_> = (0..3).map(|i| self.status(i).and_then(|s| s.runtime)).collect();
            if runtimes.iter().all(|r| {
                r.as_ref()
                    .is_some_and(|r| r.dataplane.applied_version == Some(version) && r.dataplane.in_sync)
            }) {
                return;
            }
            if start.elapsed() > within {
                let mut text = String::new();
                for (i, r) in runtimes.iter().enumerate() {
                    let r = r.as_ref().map(|r| {
                        let d = &r.dataplane;
                        let gaps: Vec<_> = d.gaps.iter().take(3).collect();
                        format!(
                            "applied {:?}, in sync {}, {} gaps {gaps:?}..., fence {}, errors {:?}",
                            d.applied_version,
                            d.in_sync,
                            d.gaps.len(),
                            r.fence,
                            r.errors
                        )
                    });
                    text += &format!("--- {}: {r:?}\n{}\n", NAMES[i], self.log_tail(i, 15));
                }
                panic!(
                    "timed out after {within:?} waiting for every kernel table at version {version}\n{text}"
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The last `n` lines of director `i`'s log.
    pub fn log_tail(&self, i: usize, n: usize) -> String {
        let t = std::fs::read_to_string(self.log(i)).unwrap_or_default();
        let lines: Vec<String> = t.lines().map(|l| l.chars().take(300).collect()).collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Director `i`'s runtime events from sequence number `from` on.
    pub fn events_from(&self, i: usize, from: u64) -> Vec<serde_json::Value> {
        let mut out: Vec<serde_json::Value> = Vec::new();
        let mut next = from;
        loop {
            let body = self
                .get(i, &format!("/v1/events?from={next}&limit=1000"))
                .unwrap_or_else(|| panic!("events of {}", NAMES[i]));
            let page: Vec<serde_json::Value> = serde_json::from_slice(&body).expect("events JSON");
            let n = page.len();
            if let Some(last) = page.last().and_then(|e| e["seq"].as_u64()) {
                next = last + 1;
            }
            out.extend(page);
            if n < 1000 {
                return out;
            }
        }
    }

    /// Director `i`'s kernel table as `hactl table` prints it (read back from the kernel).
    pub fn kernel_table(&self, i: usize) -> (Option<u64>, String, Vec<String>) {
        let body = self.get(i, "/v1/table").expect("table");
        let t: ha_config::api::TableResponse = serde_json::from_slice(&body).expect("table JSON");
        (t.applied_version, t.kernel, t.differences)
    }

    pub fn log(&self, i: usize) -> PathBuf {
        self.path().join(format!("{}.log", NAMES[i]))
    }
}

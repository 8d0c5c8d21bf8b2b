//! The seed's two directors as a running cluster: the seed topology ([`SeedLab`]),
//! `hanode` on lvs01 (.130) and lvs02 (.135) with nftables data planes, a Raft witness
//! (.140, control plane only), the seed's two keepalived files imported into one cluster
//! file and proposed; `start` returns once lvs01 holds the VIP and curl answers.

use crate::netns::{attach, Netns, NsProcess};
use crate::seed_lab::SeedLab;
pub use crate::seed_lab::VIP;
use crate::{bin_dir, wait_for};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub const LVS: [&str; 2] = ["198.18.116.130", "198.18.116.135"];
pub const WITNESS: &str = "198.18.116.140";
pub struct Cluster {
    pub lab: SeedLab,
    pub witness: Netns,
    pub nodes: Vec<Option<NsProcess>>,
    pub witness_node: NsProcess,
    pub work: PathBuf,
}

pub fn seed_file(work: &Path, name: &str) -> PathBuf {
    let src =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../deploy/lab/seed/keepalived.{name}.conf"));
    let text = std::fs::read_to_string(&src).expect("seed file");
    let out = work.join(format!("{name}.conf"));
    std::fs::write(&out, text.replace("192.168.116.", "198.18.116.")).expect("write");
    out
}

/// The seed's two keepalived files (addresses mapped) imported with `hactl import` into
/// one cluster file, `cluster.conf` in `work`; its path.
pub fn import_seed(work: &Path) -> PathBuf {
    let l1 = seed_file(work, "lvs01-master");
    let l2 = seed_file(work, "lvs02-backup");
    let conf = work.join("cluster.conf");
    let o = std::process::Command::new(bin_dir().join("hactl"))
        .args(["import", "--node"])
        .arg(format!("lvs01={}", l1.display()))
        .arg("--node")
        .arg(format!("lvs02={}", l2.display()))
        .arg("-o")
        .arg(&conf)
        .output()
        .expect("hactl import");
    assert!(
        o.status.success(),
        "import: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    conf
}

pub fn hanode(ns: &Netns, work: &Path, name: &str, addr: &str, extra: &[&str]) -> NsProcess {
    let mut c = ns.command(&bin_dir().join("hanode").to_string_lossy());
    c.args(["--name", name, "--data-dir"])
        .arg(work.join(name))
        .args(["--listen", &format!("{addr}:7101")])
        // Plain HTTP inside the test's own namespaces (TLS is covered by tls_cluster and
        // the seed lab).
        .arg("--insecure")
        .args(extra)
        .env("RUST_LOG", "info,openraft=warn,hanode::liveness=debug");
    NsProcess::spawn(c, work.join(format!("{name}.log")))
}

/// `hactl --cluster (the seed's three members) ARGS`, run in the witness's namespace.
pub fn hactl_from(witness: &Netns, args: &[&str]) -> std::process::Output {
    witness
        .command(&bin_dir().join("hactl").to_string_lossy())
        .args(["--cluster", &cluster_arg()])
        .args(args)
        .output()
        .expect("hactl")
}

pub fn cluster_arg() -> String {
    format!("{}:7101,{}:7101,{WITNESS}:7101", LVS[0], LVS[1])
}

impl Cluster {
    pub fn start() -> Cluster {
        Cluster::start_with(|c| c)
    }

    /// `edit`: changes the imported cluster file before it is proposed.
    pub fn start_with(edit: impl FnOnce(String) -> String) -> Cluster {
        Cluster::start_full(edit, &[])
    }

    /// Also `lvs02_args`: extra `hanode` flags for lvs02.
    pub fn start_full(edit: impl FnOnce(String) -> String, lvs02_args: &[&str]) -> Cluster {
        let lab = SeedLab::new(2);
        let work = lab.dir.path().to_path_buf();
        let witness = Netns::new("wit");
        attach(&lab.sw, "pw", &witness, "ens33", &format!("{WITNESS}/24"));
        let n1 = hanode(
            &lab.directors[0],
            &work,
            "lvs01",
            LVS[0],
            &["--bootstrap", "--dataplane", "nftables"],
        );
        std::thread::sleep(Duration::from_millis(500));
        let join = format!("{}:7101", LVS[0]);
        let mut args = vec!["--join", &join, "--dataplane", "nftables"];
        args.extend_from_slice(lvs02_args);
        let n2 = hanode(&lab.directors[1], &work, "lvs02", LVS[1], &args);
        let w = hanode(
            &witness,
            &work,
            "witness",
            WITNESS,
            &["--join", &join, "--control-plane-only"],
        );
        let c = Cluster {
            lab,
            witness,
            nodes: vec![Some(n1), Some(n2)],
            witness_node: w,
            work,
        };
        let conf = import_seed(&c.work);
        let text = std::fs::read_to_string(&conf).expect("cluster file");
        std::fs::write(&conf, edit(text)).expect("cluster file");
        wait_for(Duration::from_secs(20), "three voters", || {
            let o = c.hactl(&["cluster", "members"]);
            let t = String::from_utf8_lossy(&o.stdout).to_string();
            (t.matches("voter").count() >= 3).then_some(())
        });
        let o = c.hactl(&[
            "propose",
            "-f",
            &conf.to_string_lossy(),
            "--reason",
            "seed",
            "--author",
            "test",
        ]);
        assert!(
            o.status.success(),
            "propose: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        c.wait_vip(0, Duration::from_secs(15), "VIP on lvs01");
        wait_for(Duration::from_secs(15), "curl through the VIP", || c.lab.curl());
        c
    }

    pub fn hactl(&self, args: &[&str]) -> std::process::Output {
        hactl_from(&self.witness, args)
    }

    pub fn holds(&self, i: usize) -> bool {
        self.lab.directors[i].has_addr(VIP)
    }

    /// Waits until director `i` (and only it) holds the VIP.
    pub fn wait_vip(&self, i: usize, within: Duration, what: &str) -> Duration {
        let t = Instant::now();
        loop {
            if self.holds(i) && !self.holds(1 - i) {
                return t.elapsed();
            }
            assert!(t.elapsed() < within, "timed out: {what}\n{}", self.logs());
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// From now until lvs02 holds the VIP (lvs01 may still have it: a killed or frozen
    /// process leaves its address behind).
    pub fn wait_backup_takes_over(&self, within: Duration) -> Duration {
        let t = Instant::now();
        while !self.holds(1) {
            assert!(t.elapsed() < within, "lvs02 did not take over\n{}", self.logs());
            std::thread::sleep(Duration::from_millis(2));
        }
        t.elapsed()
    }

    pub fn restart_lvs01(&mut self) {
        self.nodes[0] = Some(hanode(
            &self.lab.directors[0],
            &self.work,
            "lvs01",
            LVS[0],
            &["--dataplane", "nftables"],
        ));
    }

    pub fn signal_lvs01(&self, sig: i32) {
        let pid = self.nodes[0].as_ref().expect("lvs01 runs").child.id() as i32;
        // SAFETY: signalling our own child.
        unsafe {
            libc::kill(pid, sig);
        }
    }

    pub fn logs(&self) -> String {
        let mut s = String::new();
        for n in ["lvs01", "lvs02"] {
            let t = std::fs::read_to_string(self.work.join(format!("{n}.log"))).unwrap_or_default();
            let tail: Vec<&str> = t.lines().rev().take(25).collect();
            s.push_str(&format!("--- {n}.log (last lines)\n"));
            for l in tail.into_iter().rev() {
                s.push_str(l);
                s.push('\n');
            }
        }
        s
    }
}

/// `GET /metrics` of a director (from the witness namespace), parsed as Prometheus text.
pub fn scrape(c: &Cluster, addr: &str) -> prometheus_parse::Scrape {
    let o = c
        .witness
        .command("curl")
        .args(["-sf", "-m", "5", &format!("http://{addr}:7101/metrics")])
        .output()
        .expect("curl");
    assert!(o.status.success(), "metrics of {addr}");
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("Prometheus text format")
}

/// The value of `name` with `label=value` (the first such sample).
pub fn metric(s: &prometheus_parse::Scrape, name: &str, label: Option<(&str, &str)>) -> f64 {
    let sample = s
        .samples
        .iter()
        .find(|x| x.metric == name && label.is_none_or(|(k, v)| x.labels.get(k) == Some(v)))
        .unwrap_or_else(|| panic!("{name} {label:?} missing"));
    match sample.value {
        prometheus_parse::Value::Counter(v)
        | prometheus_parse::Value::Gauge(v)
        | prometheus_parse::Value::Untyped(v) => v,
        ref other => panic!("{name}: {other:?}"),
    }
}

//! The seed's topology in namespaces (198.18.116.0/24 for the seed's 192.168.116.0/24):
//! client .100, directors .130 (lvs01) and .135 (lvs02), real servers .131 (rs01) and
//! .132 (rs02) answering "this is RS01"/"this is RS02" on port 80, the VIP .134 on
//! the real servers' `lo` with the ARP settings LVS-DR needs. All on one switch.

use crate::netns::{attach, switch, Netns, NsProcess};
use std::os::fd::AsRawFd;
use std::time::Duration;

pub const VIP: &str = "198.18.116.134";

pub struct SeedLab {
    pub sw: Netns,
    pub client: Netns,
    pub directors: Vec<Netns>,
    pub rs: Vec<Netns>,
    pub web: Vec<Option<NsProcess>>,
    pub dir: tempfile::TempDir,
}

pub const RS_ADDRS: [&str; 2] = ["198.18.116.131", "198.18.116.132"];
pub const DIRECTOR_ADDRS: [&str; 2] = ["198.18.116.130", "198.18.116.135"];

fn sysctl(ns: &Netns, kv: &str) {
    let o = ns.command("sysctl").args(["-qw", kv]).output().expect("sysctl");
    assert!(
        o.status.success(),
        "sysctl {kv}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

impl SeedLab {
    /// `directors`: how many (1 or 2) directors to create.
    pub fn new(directors: usize) -> SeedLab {
        let sw = switch("sw");
        let client = Netns::new("client");
        attach(&sw, "pc", &client, "ens33", "198.18.116.100/24");
        let mut ds = Vec::new();
        for (i, addr) in DIRECTOR_ADDRS.iter().take(directors).enumerate() {
            let d = Netns::new(&format!("lvs0{}", i + 1));
            attach(&sw, &format!("pd{i}"), &d, "ens33", &format!("{addr}/24"));
            for kv in [
                "net.ipv4.conf.all.send_redirects=0",
                "net.ipv4.conf.ens33.send_redirects=0",
            ] {
                sysctl(&d, kv);
            }
            ds.push(d);
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let mut lab = SeedLab {
            sw,
            client,
            directors: ds,
            rs: Vec::new(),
            web: Vec::new(),
            dir,
        };
        for addr in RS_ADDRS {
            lab.add_real_server(addr);
        }
        for i in 0..2 {
            lab.start_web(i);
        }
        lab
    }

    /// One more direct-routing real server, `rs0{N}` at `addr` on the switch (the VIP on
    /// its `lo`, with the ARP settings LVS-DR needs); no service runs on it yet.
    pub fn add_real_server(&mut self, addr: &str) -> &Netns {
        let i = self.rs.len();
        let r = Netns::new(&format!("rs0{}", i + 1));
        attach(&self.sw, &format!("pr{i}"), &r, "ens33", &format!("{addr}/24"));
        r.must(&["addr", "add", &format!("{VIP}/32"), "dev", "lo"]);
        for kv in [
            "net.ipv4.conf.all.arp_ignore=1",
            "net.ipv4.conf.all.arp_announce=2",
            "net.ipv4.conf.lo.arp_ignore=1",
            "net.ipv4.conf.lo.arp_announce=2",
        ] {
            sysctl(&r, kv);
        }
        self.rs.push(r);
        self.web.push(None);
        &self.rs[i]
    }

    /// Starts rs0{i+1}'s web server (answers on every address, port 80).
    pub fn start_web(&mut self, i: usize) {
        let mut c = self.rs[i].command(&crate::bin_dir().join("tiny-web").to_string_lossy());
        c.args(["0.0.0.0:80", &format!("this is RS0{}", i + 1)]);
        let log = self.dir.path().join(format!("web{i}.log"));
        self.web[i] = Some(NsProcess::spawn(c, log));
        let addr = format!("{}:80", RS_ADDRS[i]);
        crate::wait_for(Duration::from_secs(5), "web server up", || {
            let o = self.rs[i]
                .command("curl")
                .args(["-s", "-m", "1", &format!("http://{addr}/")])
                .output()
                .ok()?;
            o.status.success().then_some(())
        });
    }

    pub fn stop_web(&mut self, i: usize) {
        if let Some(mut p) = self.web[i].take() {
            p.kill9();
        }
    }

    /// `curl http://VIP/` from the client: the body, or None when it fails.
    pub fn curl(&self) -> Option<String> {
        let o = self
            .client
            .command("curl")
            .args(["-s", "-m", "2", &format!("http://{VIP}/")])
            .output()
            .ok()?;
        o.status
            .success()
            .then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
    }
}

/// Runs `f` on a thread that has entered `ns`'s network namespace (sockets it opens
/// live there).
pub fn in_netns<T: Send + 'static>(ns: &Netns, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/var/run/netns/{}", ns.name);
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).expect("open netns");
        // SAFETY: setns(2) on this thread only, with a namespace fd we just opened.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
        f()
    })
    .join()
    .expect("netns thread")
}

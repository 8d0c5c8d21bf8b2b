//! The chaos lab (issue 23): the seed's cluster (lvs01, lvs02 and the witness, each a
//! `hanode` with its data directory on its own small tmpfs), each member's link to the
//! switch running through a link emulator (`link-emu`: loss, delay, jitter, duplication),
//! a client that proposes continuously (recording every acknowledged version) and curls the
//! VIP continuously, the VIP sampled every 10 ms on both directors, and a fault schedule
//! drawn from a seed ([`crate::chaos_schedule`]). After each schedule the invariants are
//! checked; a violation reports the seed and a timeline of what was injected.

use crate::chaos_schedule::{Fault, Step, Traffic, MEMBERS};
use crate::netns::{must, Netns, NsProcess};
use crate::seed_cluster::{import_seed, LVS, VIP, WITNESS};
use crate::seed_lab::SeedLab;
use crate::vip_watch::{Samples, VipWatch};
use crate::{bin_dir, die_with_parent, http};
use ha_config::api::{HistoryItem, StatusResponse};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const ADDRS: [&str; 3] = [LVS[0], LVS[1], WITNESS];
/// The members' ports on the switch's bridge (where partitions are cut).
pub const PORTS: [&str; 3] = ["pd0", "pd1", "pw"];
/// Each member's tmpfs (its data directory): room for the store, small enough to fill.
const DATA_DIR_SIZE: &str = "64m";
/// How long after a fault that excuses a split heals it is still excused: the other
/// director's next advert (1 s) ends it; a killed director's address goes when its
/// restarted hanode starts its instance (a process start, on a busy machine).
const SPLIT_GRACE: Duration = Duration::from_millis(2500);
const SPLIT_GRACE_AFTER_KILL: Duration = Duration::from_secs(6);
/// The longest the VIP may be on both directors at a handover outside a fault that
/// excuses it: the new master adds it a moment before the old one, hearing the new one's
/// advert, removes it.
pub const HANDOVER_OVERLAP: Duration = Duration::from_millis(100);
/// How long the cluster may take to converge after the last fault healed.
const CONVERGE_WITHIN: Duration = Duration::from_secs(40);

/// One member's link through the emulator.
struct Link {
    /// Killed with the lab.
    _emu: NsProcess,
    stdin: std::process::ChildStdin,
}

pub struct ChaosLab {
    pub lab: SeedLab,
    pub witness: Netns,
    /// `unshare -m`: the mount namespace the tmpfs data directories live in.
    holder: Child,
    pub nodes: Vec<Option<NsProcess>>,
    links: Vec<Link>,
    fillers: Vec<Option<Child>>,
    pub work: PathBuf,
    /// The cluster file with `@WEIGHT@` where rs01's weight goes.
    template: String,
}

/// Turns off what would make a frame read from AF_PACKET differ from what goes on the
/// wire (checksums left to the device, segmentation and coalescing offloads).
fn plain_frames(ns: &Netns, ifname: &str) {
    let o = ns
        .command("ethtool")
        .args([
            "-K", ifname, "tx", "off", "rx", "off", "tso", "off", "gso", "off", "gro", "off",
        ])
        .output()
        .expect("ethtool");
    // ethtool exits non-zero when a feature cannot be changed ("fixed"); the ones we need
    // off are not fixed on veth.
    let _ = o;
}

impl ChaosLab {
    pub fn start() -> ChaosLab {
        let mut lab = SeedLab::new(0);
        let work = lab.dir.path().to_path_buf();
        let witness = Netns::new("wit");
        for ns in [&lab.client, &lab.rs[0], &lab.rs[1]] {
            plain_frames(ns, "ens33");
        }
        let mut links = Vec::new();
        for (i, addr) in ADDRS.iter().enumerate() {
            let ns = if i < 2 {
                let d = Netns::new(&format!("lvs0{}", i + 1));
                for kv in [
                    "net.ipv4.conf.all.send_redirects=0",
                    "net.ipv4.conf.default.send_redirects=0",
                ] {
                    let o = d.command("sysctl").args(["-qw", kv]).output().expect("sysctl");
                    assert!(o.status.success());
                }
                lab.directors.push(d);
                &lab.directors[i]
            } else {
                &witness
            };
            links.push(attach_emulated(&lab.sw, i, ns, &format!("{addr}/24"), &work));
        }
        let mut holder = Command::new("unshare");
        holder
            .args(["-m", "--propagation", "private", "sleep", "infinity"])
            .stdin(Stdio::null());
        die_with_parent(&mut holder);
        let holder = holder.spawn().expect("unshare");
        let own = std::fs::read_link("/proc/self/ns/mnt").expect("mount ns");
        crate::wait_for(
            Duration::from_secs(5),
            "a mount namespace for the data dirs",
            || {
                let theirs = std::fs::read_link(format!("/proc/{}/ns/mnt", holder.id())).ok()?;
                (theirs != own).then_some(())
            },
        );
        let mut c = ChaosLab {
            lab,
            witness,
            holder,
            nodes: vec![None, None, None],
            links,
            fillers: vec![None, None, None],
            work,
            template: String::new(),
        };
        for name in MEMBERS {
            let dir = c.data_dir(name);
            std::fs::create_dir_all(&dir).expect("data dir");
            c.in_mounts(&[
                "mount",
                "-t",
                "tmpfs",
                "-o",
                &format!("size={DATA_DIR_SIZE},mode=0700"),
                "tmpfs",
                &dir.to_string_lossy(),
            ]);
        }
        // Every link works through its emulator before anything starts.
        for i in 0..3 {
            let ns = c.ns(i);
            crate::wait_for(Duration::from_secs(10), "the emulated links pass traffic", || {
                let o = ns
                    .command("curl")
                    .args(["-s", "-m", "1", "http://198.18.116.131/"])
                    .output()
                    .ok()?;
                o.status.success().then_some(())
            });
        }
        c.start_node(0, &["--bootstrap"]);
        crate::wait_for(Duration::from_secs(20), "lvs01 answers", || c.status(0));
        let join = format!("{}:7101", ADDRS[0]);
        c.start_node(1, &["--join", &join]);
        c.start_node(2, &["--join", &join]);
        crate::wait_for(Duration::from_secs(30), "three voters", || {
            let s = c.status(0)?;
            (s.members.iter().filter(|m| m.role == "voter").count() == 3).then_some(())
        });
        let conf = import_seed(&c.work);
        let text = std::fs::read_to_string(&conf).expect("cluster file");
        let at = text.find("real_server 198.18.116.131").expect("rs01 in the seed");
        let w = at + text[at..].find("weight 1").expect("rs01's weight");
        c.template = format!("{}weight @WEIGHT@{}", &text[..w], &text[w + "weight 1".len()..]);
        let first = c.propose(1, "seed");
        assert!(first.is_ok(), "the seed's proposal: {first:?}");
        crate::wait_for(Duration::from_secs(30), "VIP on lvs01, curl answers", || {
            (c.lab.directors[0].has_addr(VIP) && c.lab.curl().is_some()).then_some(())
        });
        c
    }

    pub fn ns(&self, i: usize) -> &Netns {
        if i < 2 {
            &self.lab.directors[i]
        } else {
            &self.witness
        }
    }

    fn data_dir(&self, name: &str) -> PathBuf {
        self.work.join(name)
    }

    /// Runs a command in the data directories' mount namespace; must succeed.
    fn in_mounts(&self, args: &[&str]) {
        let o = Command::new("nsenter")
            .args(["-t", &self.holder.id().to_string(), "-m", "--"])
            .args(args)
            .output()
            .expect("nsenter");
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }

    /// Starts member `i`'s hanode (in its network namespace and the data dirs' mount
    /// namespace) with `extra` flags.
    pub fn start_node(&mut self, i: usize, extra: &[&str]) {
        let name = MEMBERS[i];
        let mut c = Command::new("nsenter");
        c.args(["-t", &self.holder.id().to_string(), "-m", "--"])
            .args(["ip", "netns", "exec", &self.ns(i).name])
            .arg(bin_dir().join("hanode"))
            .args(["--name", name, "--data-dir"])
            .arg(self.data_dir(name))
            .args(["--listen", &format!("{}:7101", ADDRS[i]), "--insecure"])
            .args(if i < 2 {
                &["--dataplane", "nftables"][..]
            } else {
                &["--control-plane-only"][..]
            })
            .args(extra)
            .env("RUST_LOG", "info,openraft=warn")
            .stdin(Stdio::null());
        self.nodes[i] = Some(NsProcess::spawn(c, self.work.join(format!("{name}.log"))));
    }

    fn signal(&self, i: usize, sig: i32) {
        if let Some(p) = &self.nodes[i] {
            // SAFETY: signalling our own child (nsenter and ip exec into hanode: same pid).
            unsafe {
                libc::kill(p.child.id() as i32, sig);
            }
        }
    }

    /// `GET /v1/status` of member `i`, asked from the client's namespace.
    pub fn status(&self, i: usize) -> Option<StatusResponse> {
        let body = self.get(i, "/v1/status")?;
        serde_json::from_slice(&body).ok()
    }

    fn get(&self, i: usize, path: &str) -> Option<Vec<u8>> {
        let addr = format!("{}:7101", ADDRS[i]);
        let path = path.to_string();
        crate::seed_lab::in_netns(&self.lab.client, move || match http(&addr, "GET", &path, b"") {
            Ok((200, body)) => Some(body),
            _ => None,
        })
    }

    pub fn history(&self, i: usize) -> Option<Vec<HistoryItem>> {
        let body = self.get(i, "/v1/history?limit=100000")?;
        serde_json::from_slice(&body).ok()
    }

    /// What the proposer needs (it runs without the lab's lock).
    fn proposer(&self) -> Proposer {
        Proposer {
            client_ns: self.lab.client.name.clone(),
            template: self.template.clone(),
            work: self.work.clone(),
        }
    }

    /// `hactl propose` of the cluster file with rs01 at `weight`, from the client's
    /// namespace: the committed (version, hash), or what went wrong (after 30 s at most).
    pub fn propose(&self, weight: u32, reason: &str) -> Result<(u64, String), String> {
        self.proposer().propose(weight, reason)
    }

    fn partition_table(&self, id: usize, f: &Fault) -> String {
        let Fault::Partition {
            from,
            to,
            one_way,
            traffic,
        } = f
        else {
            return String::new();
        };
        let what: &[&str] = match traffic {
            Traffic::All => &[""],
            Traffic::Transport => &["tcp dport 7101", "tcp sport 7101"],
            Traffic::Vrrp => &["ip protocol vrrp"],
        };
        let mut rules = Vec::new();
        let mut dirs = vec![(from, to)];
        if !one_way {
            dirs.push((to, from));
        }
        for (a, b) in dirs {
            for &x in a.iter() {
                for &y in b.iter() {
                    for m in what {
                        rules.push(format!(
                            "    iifname \"{}\" oifname \"{}\" {m} drop",
                            PORTS[x], PORTS[y]
                        ));
                    }
                }
            }
        }
        format!(
            "table bridge chaos{id} {{\n  chain forward {{\n    type filter hook forward priority 0; policy accept;\n{}\n  }}\n}}\n",
            rules.join("\n")
        )
    }

    fn set_link(&mut self, i: usize, loss: u32, delay: u32, jitter: u32, dup: u32) {
        let l = &mut self.links[i];
        writeln!(l.stdin, "{loss} {delay} {jitter} {dup}").expect("link emulator");
        l.stdin.flush().expect("link emulator");
    }

    /// Injects fault number `id`.
    pub fn inject(&mut self, id: usize, f: &Fault) {
        match f {
            Fault::Partition { .. } => {
                let t = self.partition_table(id, f);
                self.lab.sw.nft(&t);
            }
            Fault::Link {
                who,
                loss,
                delay_ms,
                jitter_ms,
                dup,
            } => self.set_link(*who, *loss, *delay_ms, *jitter_ms, *dup),
            Fault::Kill { who } => {
                if let Some(p) = self.nodes[*who].as_mut() {
                    p.kill9();
                }
            }
            Fault::Stop { who } => self.signal(*who, libc::SIGSTOP),
            Fault::DiskFull { who } => {
                let dir = self.data_dir(MEMBERS[*who]);
                let script = format!(
                    "i=0; while :; do dd if=/dev/zero of={d}/fill.$i bs=4k 2>/dev/null; i=$((i+1)); sleep 0.02; done",
                    d = dir.display()
                );
                let mut c = Command::new("nsenter");
                c.args([
                    "-t",
                    &self.holder.id().to_string(),
                    "-m",
                    "--",
                    "sh",
                    "-c",
                    &script,
                ])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
                die_with_parent(&mut c);
                self.fillers[*who] = Some(c.spawn().expect("filler"));
                // Full before the step counts as started.
                crate::wait_for(Duration::from_secs(10), "the data dir full", || {
                    let o = Command::new("nsenter")
                        .args([
                            "-t",
                            &self.holder.id().to_string(),
                            "-m",
                            "--",
                            "df",
                            "--output=avail",
                        ])
                        .arg(&dir)
                        .output()
                        .ok()?;
                    let t = String::from_utf8_lossy(&o.stdout).to_string();
                    (t.lines().nth(1)?.trim() == "0").then_some(())
                });
            }
        }
    }

    /// Heals fault number `id`.
    pub fn heal(&mut self, id: usize, f: &Fault) {
        match f {
            Fault::Partition { .. } => {
                let o = self
                    .lab
                    .sw
                    .command("nft")
                    .args(["delete", "table", "bridge", &format!("chaos{id}")])
                    .output()
                    .expect("nft");
                assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            }
            Fault::Link { who, .. } => self.set_link(*who, 0, 0, 0, 0),
            Fault::Kill { who } => self.start_node(*who, &[]),
            Fault::Stop { who } => self.signal(*who, libc::SIGCONT),
            Fault::DiskFull { who } => {
                if let Some(mut f) = self.fillers[*who].take() {
                    let _ = f.kill();
                    let _ = f.wait();
                }
                let dir = self.data_dir(MEMBERS[*who]);
                self.in_mounts(&["sh", "-c", &format!("rm -f {}/fill.*", dir.display())]);
            }
        }
    }

    /// The last lines of each member's log.
    pub fn logs(&self, lines: usize) -> String {
        let mut s = String::new();
        for n in MEMBERS {
            let t = std::fs::read_to_string(self.work.join(format!("{n}.log"))).unwrap_or_default();
            let all: Vec<&str> = t.lines().collect();
            s.push_str(&format!("--- {n}.log (last lines)\n"));
            for l in &all[all.len().saturating_sub(lines)..] {
                s.push_str(l);
                s.push('\n');
            }
        }
        s
    }

    /// Stops every member (SIGTERM), starts them again on the same data, and waits until
    /// they agree again: a store a crash, a full disk or a partition left behind must
    /// open cleanly.
    pub fn restart_all(&mut self) -> Result<Duration, String> {
        for i in 0..3 {
            if let Some(mut p) = self.nodes[i].take() {
                p.term();
            }
        }
        let t = Instant::now();
        for i in 0..3 {
            self.start_node(i, &[]);
        }
        let deadline = Instant::now() + CONVERGE_WITHIN;
        loop {
            match self.converged(0) {
                Ok(_) => return Ok(t.elapsed()),
                Err(e) if Instant::now() > deadline => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// Whether the cluster has converged at a version of at least `at_least`: every member
    /// at the same version and hash, no store failure, both data planes in sync at that
    /// version, exactly one director holding the VIP. The version, or what is missing.
    pub fn converged(&self, at_least: u64) -> Result<u64, String> {
        let mut st = Vec::new();
        for (i, name) in MEMBERS.iter().enumerate() {
            st.push(self.status(i).ok_or(format!("{name} does not answer"))?);
        }
        let v = st[0].version;
        if v < at_least {
            return Err(format!("lvs01 at version {v}, {at_least} was acknowledged"));
        }
        for s in &st {
            if (s.version, &s.hash) != (v, &st[0].hash) {
                return Err(format!("{} at version {}, lvs01 at {v}", s.name, s.version));
            }
            if let Some(f) = &s.store_failure {
                return Err(format!("{}: store failed: {f}", s.name));
            }
        }
        for s in &st[..2] {
            let dp = &s
                .runtime
                .as_ref()
                .ok_or(format!("{}: no runtime", s.name))?
                .dataplane;
            if !dp.in_sync || dp.applied_version != Some(v) {
                return Err(format!(
                    "{}: table at {:?}, in sync {}, version {v} committed",
                    s.name, dp.applied_version, dp.in_sync
                ));
            }
        }
        let holders: Vec<&str> = (0..2)
            .filter(|&i| self.lab.directors[i].has_addr(VIP))
            .map(|i| MEMBERS[i])
            .collect();
        if holders.len() != 1 {
            return Err(format!("VIP held by {holders:?}"));
        }
        Ok(v)
    }
}

impl Drop for ChaosLab {
    fn drop(&mut self) {
        // `CHAOS_LOGS=DIR`: keep the members' logs (the lab's directory goes away).
        if let Ok(dir) = std::env::var("CHAOS_LOGS") {
            let _ = std::fs::create_dir_all(&dir);
            for n in MEMBERS {
                let _ = std::fs::copy(
                    self.work.join(format!("{n}.log")),
                    Path::new(&dir).join(format!("{n}.log")),
                );
            }
        }
        for f in self.fillers.iter_mut().flatten() {
            let _ = f.kill();
            let _ = f.wait();
        }
        for n in self.nodes.iter_mut().flatten() {
            n.kill9();
        }
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// Connects member `i` (`ns`, interface `ens33` with `addr`) to the switch through a link
/// emulator: ens33 <-> eA{i} (switch namespace) <-> link-emu <-> eB{i} <-> PORTS[i] on br0.
fn attach_emulated(sw: &Netns, i: usize, ns: &Netns, addr: &str, work: &Path) -> Link {
    let (ea, eb, port) = (format!("eA{i}"), format!("eB{i}"), PORTS[i]);
    must(&[
        "link", "add", "ens33", "netns", &ns.name, "type", "veth", "peer", "name", &ea, "netns", &sw.name,
    ]);
    sw.must(&["link", "add", &eb, "type", "veth", "peer", "name", port]);
    sw.must(&["link", "set", port, "master", "br0"]);
    for l in [ea.as_str(), eb.as_str(), port] {
        sw.must(&["link", "set", l, "up"]);
        plain_frames(sw, l);
    }
    ns.must(&["addr", "add", addr, "dev", "ens33"]);
    ns.must(&["link", "set", "ens33", "up"]);
    plain_frames(ns, "ens33");
    let mut c = sw.command(&bin_dir().join("link-emu").to_string_lossy());
    c.args([&ea, &eb]).stdin(Stdio::piped());
    let mut emu = NsProcess::spawn(c, work.join(format!("link-emu-{i}.log")));
    let stdin = emu.child.stdin.take().expect("link-emu stdin");
    Link { _emu: emu, stdin }
}

/// What the background client saw.
#[derive(Default)]
pub struct Workload {
    /// Acknowledged proposals: (reason, version, hash), in the order acknowledged.
    pub acked: Vec<(String, u64, String)>,
    /// Proposals whose outcome the client does not know (an error or a timeout).
    pub unknown: Vec<(String, String)>,
    pub curl_ok: u64,
    pub curl_failed: u64,
}

/// The proposer and the curler, running until stopped.
pub struct Background {
    stop: Arc<AtomicBool>,
    /// Proposals acknowledged so far.
    pub acked: Arc<AtomicU64>,
    proposer: std::thread::JoinHandle<Workload>,
    curler: std::thread::JoinHandle<(u64, u64)>,
}

impl Background {
    /// `lab` is shared with the threads; `tag`: a prefix for the proposals' reasons.
    pub fn start(lab: &Arc<Mutex<ChaosLab>>, tag: &str, counter: Arc<AtomicU64>) -> Background {
        let stop = Arc::new(AtomicBool::new(false));
        // The proposer and the curler run outside the lab's lock (it is held while a fault
        // is injected): they take what they need up front.
        let proposer_lab = lab.lock().expect("lab").proposer();
        let client_name = proposer_lab.client_ns.clone();
        let (s1, tag) = (stop.clone(), tag.to_string());
        let acked = Arc::new(AtomicU64::new(0));
        let acks = acked.clone();
        let proposer = std::thread::spawn(move || {
            let mut w = Workload::default();
            while !s1.load(Ordering::SeqCst) {
                let n = counter.fetch_add(1, Ordering::SeqCst);
                let reason = format!("{tag}-{n}");
                // Weights 2..=9 in turn: every proposal is a change.
                match proposer_lab.propose(2 + (n % 8) as u32, &reason) {
                    Ok((v, h)) => {
                        w.acked.push((reason, v, h));
                        acks.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(e) => w.unknown.push((reason, e)),
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            w
        });
        let s2 = stop.clone();
        let curler = std::thread::spawn(move || {
            let (mut ok, mut failed) = (0, 0);
            while !s2.load(Ordering::SeqCst) {
                let o = Command::new("ip")
                    .args(["netns", "exec", &client_name, "curl", "-s", "-m", "1"])
                    .arg(format!("http://{VIP}/"))
                    .output();
                match o {
                    Ok(o) if o.status.success() => ok += 1,
                    _ => failed += 1,
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            (ok, failed)
        });
        Background {
            stop,
            acked,
            proposer,
            curler,
        }
    }

    pub fn stop(self) -> Workload {
        self.stop.store(true, Ordering::SeqCst);
        let mut w = self.proposer.join().expect("proposer");
        let (ok, failed) = self.curler.join().expect("curler");
        w.curl_ok = ok;
        w.curl_failed = failed;
        w
    }
}

/// What the proposer needs of the lab (it runs without the lab's lock).
struct Proposer {
    client_ns: String,
    template: String,
    work: PathBuf,
}

impl Proposer {
    fn propose(&self, weight: u32, reason: &str) -> Result<(u64, String), String> {
        let file = self.work.join(format!("propose-{reason}.conf"));
        std::fs::write(&file, self.template.replace("@WEIGHT@", &weight.to_string()))
            .map_err(|e| e.to_string())?;
        let cluster = ADDRS.map(|a| format!("{a}:7101")).join(",");
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.client_ns])
            .arg(bin_dir().join("hactl"))
            .args(["--cluster", &cluster, "propose", "-f"])
            .arg(&file)
            .args(["--reason", reason, "--author", "chaos"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        die_with_parent(&mut c);
        let result = run_for(c, Duration::from_secs(30));
        let _ = std::fs::remove_file(&file);
        let (ok, out, err) = result?;
        match out.lines().find(|l| l.starts_with("committed: version ")) {
            Some(line) if ok => {
                let mut w = line.split_whitespace();
                let version = w.nth(2).and_then(|v| v.parse().ok()).ok_or("no version")?;
                let hash = w.nth(1).ok_or("no hash")?.to_string();
                Ok((version, hash))
            }
            _ => Err(format!(
                "{}{}",
                err.lines().last().unwrap_or(""),
                out.lines().last().unwrap_or("")
            )),
        }
    }
}

/// Runs `c` for at most `limit`: (succeeded, stdout, stderr).
fn run_for(mut c: Command, limit: Duration) -> Result<(bool, String, String), String> {
    let mut child = c.spawn().map_err(|e| e.to_string())?;
    let t = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if t.elapsed() < limit => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                break;
            }
        }
    }
    let o = child.wait_with_output().map_err(|e| e.to_string())?;
    Ok((
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    ))
}

/// What one schedule did and found.
pub struct Report {
    pub seed: u64,
    pub timeline: Vec<(Duration, String)>,
    pub faults: Vec<&'static str>,
    pub workload: Workload,
    /// VIP on both directors, in total, outside the faults that excuse it.
    pub dual_unexcused: Duration,
    /// The longest such stretch.
    pub dual_unexcused_longest: Duration,
    /// VIP on both directors during faults that excuse it.
    pub dual_excused: Duration,
    /// From the last heal until the cluster converged.
    pub converged_after: Option<Duration>,
    pub violations: Vec<String>,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "seed {}: timeline", self.seed)?;
        for (at, what) in &self.timeline {
            writeln!(f, "  {:>7.2} s  {what}", at.as_secs_f64())?;
        }
        writeln!(
            f,
            "  proposals acknowledged {}, unknown outcome {}; curl {} ok, {} failed; \
             VIP on both {} ms outside excusing faults (longest {} ms), {} ms during them; \
             converged {:?} after the last heal",
            self.workload.acked.len(),
            self.workload.unknown.len(),
            self.workload.curl_ok,
            self.workload.curl_failed,
            self.dual_unexcused.as_millis(),
            self.dual_unexcused_longest.as_millis(),
            self.dual_excused.as_millis(),
            self.converged_after
        )?;
        for v in &self.violations {
            writeln!(f, "  VIOLATION: {v}")?;
        }
        Ok(())
    }
}

/// Splits the time both directors held the VIP into (outside excusing windows, the longest
/// such stretch, inside them). `excused`: [from, to) windows. Each of lvs01's samples is
/// judged against lvs02's state at that time (the two samplers run on their own clocks).
pub fn dual_time(samples: &[Samples], excused: &[(Duration, Duration)]) -> (Duration, Duration, Duration) {
    let (mut out, mut inside) = (Duration::ZERO, Duration::ZERO);
    let (mut run_from, mut longest) = (None::<Duration>, Duration::ZERO);
    let [a, b] = samples else {
        return (out, longest, inside);
    };
    for &(t, holds) in a {
        let both = holds && crate::vip_watch::at(b, t);
        let is_excused = excused.iter().any(|(from, to)| t >= *from && t < *to);
        if both && is_excused {
            inside += crate::vip_watch::EVERY;
        } else if both {
            out += crate::vip_watch::EVERY;
            let from = *run_from.get_or_insert(t);
            longest = longest.max(t - from + crate::vip_watch::EVERY);
            continue;
        }
        run_from = None;
    }
    (out, longest, inside)
}

/// Runs `steps` (the schedule of `seed`) on a running lab, with the workload, then heals
/// everything and checks the invariants. `counter`: numbers the proposals across runs.
pub fn run_schedule(
    lab: &Arc<Mutex<ChaosLab>>,
    seed: u64,
    steps: &[Step],
    counter: &Arc<AtomicU64>,
) -> Report {
    let vip = VIP.parse().expect("VIP");
    let watch = {
        let l = lab.lock().expect("lab");
        VipWatch::start(&[&l.lab.directors[0], &l.lab.directors[1]], vip)
    };
    let t0 = Instant::now();
    let background = Background::start(lab, &format!("s{seed}"), counter.clone());
    let mut timeline = Vec::new();
    let mut excused = Vec::new();
    let mut kinds = Vec::new();
    let mut id = seed as usize * 10;
    for step in steps {
        let start = t0.elapsed();
        let holder;
        {
            let mut l = lab.lock().expect("lab");
            // Which director's adverts a cut must stop to let the other claim.
            holder = match (l.lab.directors[0].has_addr(VIP), l.lab.directors[1].has_addr(VIP)) {
                (true, false) => Some(0),
                (false, true) => Some(1),
                _ => None,
            };
            for (k, f) in step.faults.iter().enumerate() {
                l.inject(id + k, f);
                timeline.push((t0.elapsed(), format!("inject: {f}")));
                kinds.push(f.kind());
            }
        }
        std::thread::sleep(step.lasts);
        {
            let mut l = lab.lock().expect("lab");
            for (k, f) in step.faults.iter().enumerate() {
                l.heal(id + k, f);
                timeline.push((t0.elapsed(), format!("heal: {f}")));
            }
        }
        let healed = t0.elapsed();
        if step.faults.iter().any(|f| f.may_split(holder)) {
            let grace = if step.faults.iter().any(|f| matches!(f, Fault::Kill { .. })) {
                SPLIT_GRACE_AFTER_KILL
            } else {
                SPLIT_GRACE
            };
            excused.push((start, healed + grace));
        }
        id += step.faults.len();
        std::thread::sleep(step.pause);
    }
    let last_heal = Instant::now();
    // Convergence: the workload keeps going meanwhile; it stops once the cluster agrees.
    let mut converged_after = None;
    let mut last_problem = String::new();
    while last_heal.elapsed() < CONVERGE_WITHIN {
        match lab.lock().expect("lab").converged(0) {
            Ok(_) => {
                converged_after = Some(last_heal.elapsed());
                break;
            }
            Err(e) => last_problem = e,
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let workload = background.stop();
    let samples = watch.stop();
    let (dual_unexcused, dual_unexcused_longest, dual_excused) = dual_time(&samples, &excused);
    timeline.push((t0.elapsed(), "workload stopped".into()));
    let mut violations = Vec::new();
    if converged_after.is_none() {
        violations.push(format!(
            "not converged {CONVERGE_WITHIN:?} after the last heal: {last_problem}"
        ));
    }
    if dual_unexcused_longest > HANDOVER_OVERLAP {
        violations.push(format!(
            "the VIP was on both directors for {} ms at a stretch outside any fault that excuses it",
            dual_unexcused_longest.as_millis()
        ));
    }
    let l = lab.lock().expect("lab");
    // After the workload: the final version, then the histories.
    let last_acked = workload.acked.last().map(|a| a.1).unwrap_or(0);
    let deadline = Instant::now() + CONVERGE_WITHIN;
    let version = loop {
        match l.converged(last_acked) {
            Ok(v) => break Some(v),
            Err(e) if Instant::now() > deadline => {
                violations.push(format!("after the workload stopped: {e}"));
                break None;
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    };
    if version.is_some() {
        violations.extend(check_histories(&l, &workload));
    }
    drop(l);
    Report {
        seed,
        timeline,
        faults: kinds,
        workload,
        dual_unexcused,
        dual_unexcused_longest,
        dual_excused,
        converged_after,
        violations,
    }
}

/// Every acknowledged proposal in every member's history, once, in the order acknowledged;
/// the histories identical; `hactl verify` passes.
fn check_histories(l: &ChaosLab, w: &Workload) -> Vec<String> {
    let mut v = Vec::new();
    let mut hs = Vec::new();
    for (i, name) in MEMBERS.iter().enumerate() {
        match l.history(i) {
            Some(h) => hs.push(h),
            None => {
                v.push(format!("{name}: no history"));
                return v;
            }
        }
    }
    let chain = |h: &[HistoryItem]| -> Vec<(u64, String)> {
        h.iter().map(|e| (e.seq, e.entry_hash.clone())).collect()
    };
    for i in 1..3 {
        if chain(&hs[i]) != chain(&hs[0]) {
            v.push(format!(
                "{}'s history ({} entries) differs from lvs01's ({} entries)",
                MEMBERS[i],
                hs[i].len(),
                hs[0].len()
            ));
        }
    }
    let mut last_seq = 0;
    for (reason, version, hash) in &w.acked {
        let found: Vec<&HistoryItem> = hs[0]
            .iter()
            .filter(|e| e.kind == "config" && e.reason == *reason)
            .collect();
        match found[..] {
            [e] => {
                if e.version != *version || e.hash.as_deref() != Some(hash.as_str()) {
                    v.push(format!(
                        "{reason}: acknowledged as version {version}, history has version {} hash {:?}",
                        e.version, e.hash
                    ));
                }
                if e.seq <= last_seq {
                    v.push(format!("{reason}: out of order in the history (seq {})", e.seq));
                }
                last_seq = e.seq;
            }
            [] => v.push(format!(
                "{reason}: acknowledged as version {version}, not in the history"
            )),
            _ => v.push(format!("{reason}: {} times in the history", found.len())),
        }
    }
    let cluster = ADDRS.map(|a| format!("{a}:7101")).join(",");
    let o = l
        .lab
        .client
        .command(&bin_dir().join("hactl").to_string_lossy())
        .args(["--cluster", &cluster, "verify"])
        .output()
        .expect("hactl verify");
    if !o.status.success() {
        v.push(format!(
            "hactl verify: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ));
    }
    v
}

/// Whether any member's log shows a panic.
pub fn panics(l: &ChaosLab) -> Vec<String> {
    MEMBERS
        .iter()
        .filter_map(|n| {
            let t = std::fs::read_to_string(l.work.join(format!("{n}.log"))).unwrap_or_default();
            t.lines()
                .find(|line| line.contains("panicked"))
                .map(|line| format!("{n}: {line}"))
        })
        .collect()
}

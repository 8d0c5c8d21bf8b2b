//! Network namespaces for end-to-end tests. Every namespace a test creates is deleted (and
//! every process in it killed) when its handle drops, even if the test panics. Names carry
//! the test's pid and a tag, so parallel tests never collide; nothing touches the host's
//! own interfaces.

use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

static SEQ: AtomicU32 = AtomicU32::new(0);

fn ip(args: &[&str]) -> Output {
    Command::new("ip").args(args).output().expect("run ip")
}

pub fn must(args: &[&str]) {
    let o = ip(args);
    assert!(
        o.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&o.stderr)
    );
}

pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(tag: &str) -> Netns {
        let name = format!(
            "e2e{}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst),
            tag
        );
        must(&["netns", "add", &name]);
        must(&["-n", &name, "link", "set", "lo", "up"]);
        Netns { name }
    }

    /// `ip -n NS ARGS`.
    pub fn ip(&self, args: &[&str]) -> Output {
        let mut a = vec!["-n", self.name.as_str()];
        a.extend_from_slice(args);
        ip(&a)
    }

    pub fn must(&self, args: &[&str]) {
        let mut a = vec!["-n", self.name.as_str()];
        a.extend_from_slice(args);
        must(&a);
    }

    /// A command to run inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c.stdin(Stdio::null());
        c
    }

    /// Loads `rules` (an nftables script) into the namespace with `nft -f -`; must succeed.
    pub fn nft(&self, rules: &str) {
        let mut c = self.command("nft");
        c.args(["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().expect("nft");
        std::io::Write::write_all(child.stdin.as_mut().expect("stdin"), rules.as_bytes()).expect("nft rules");
        let o = child.wait_with_output().expect("nft");
        assert!(
            o.status.success(),
            "nft: {}\n{rules}",
            String::from_utf8_lossy(&o.stderr)
        );
    }

    /// Whether `addr` is configured on any interface of the namespace.
    pub fn has_addr(&self, addr: &str) -> bool {
        let o = self.ip(&["-o", "addr", "show"]);
        String::from_utf8_lossy(&o.stdout)
            .split_whitespace()
            .any(|w| w.split('/').next() == Some(addr))
    }

    /// The MAC address of `ifname` (`aa:bb:...`), or empty if unknown.
    pub fn mac(&self, ifname: &str) -> String {
        let o = self.ip(&["-br", "link", "show", ifname]);
        String::from_utf8_lossy(&o.stdout)
            .split_whitespace()
            .nth(2)
            .unwrap_or("")
            .to_string()
    }

    /// Kills every process in the namespace as a crash would: all are stopped first, so
    /// that none can react (keepalived's VRRP child would otherwise get SIGTERM from its
    /// parent's death and stop gracefully, sending priority 0), then killed.
    pub fn crash_all(&self) {
        let o = Command::new("ip").args(["netns", "pids", &self.name]).output();
        let pids: Vec<i32> = o
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .split_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        for sig in [libc::SIGSTOP, libc::SIGKILL] {
            for &p in &pids {
                // SAFETY: kill(2) with pids read from `ip netns pids`.
                unsafe {
                    libc::kill(p, sig);
                }
            }
        }
    }

    /// Kills every process in the namespace.
    pub fn kill_all(&self) {
        let o = Command::new("ip").args(["netns", "pids", &self.name]).output();
        if let Ok(o) = o {
            for pid in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                if let Ok(p) = pid.parse::<i32>() {
                    // SAFETY: kill(2) with a pid read from `ip netns pids`.
                    unsafe {
                        libc::kill(p, libc::SIGKILL);
                    }
                }
            }
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        self.kill_all();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let _ = ip(&["netns", "del", &self.name]);
    }
}

/// Connects `a` and `b` with a veth pair named `ifname` on both sides and gives them
/// `a_addr`/`b_addr` (CIDR).
pub fn link(a: &Netns, a_addr: &str, b: &Netns, b_addr: &str, ifname: &str) {
    must(&[
        "link", "add", ifname, "netns", &a.name, "type", "veth", "peer", "name", ifname, "netns", &b.name,
    ]);
    a.must(&["addr", "add", a_addr, "dev", ifname]);
    b.must(&["addr", "add", b_addr, "dev", ifname]);
    a.must(&["link", "set", ifname, "up"]);
    b.must(&["link", "set", ifname, "up"]);
}

/// A switch: a namespace holding bridge `br0`. Directors attach to it with [`attach`], so
/// a link going down on one of them leaves the others' carrier up (as on a real LAN).
pub fn switch(tag: &str) -> Netns {
    let sw = Netns::new(tag);
    sw.must(&["link", "add", "br0", "type", "bridge"]);
    sw.must(&["link", "set", "br0", "up"]);
    sw
}

/// Connects `ns` to the switch `sw`: interface `ifname` with `addr` (CIDR) in `ns`, port
/// `port` on `br0` in `sw`.
pub fn attach(sw: &Netns, port: &str, ns: &Netns, ifname: &str, addr: &str) {
    must(&[
        "link", "add", ifname, "netns", &ns.name, "type", "veth", "peer", "name", port, "netns", &sw.name,
    ]);
    sw.must(&["link", "set", port, "master", "br0"]);
    sw.must(&["link", "set", port, "up"]);
    ns.must(&["addr", "add", addr, "dev", ifname]);
    ns.must(&["link", "set", ifname, "up"]);
}

/// A process started in a namespace; killed on drop.
pub struct NsProcess {
    pub child: Child,
    pub log: std::path::PathBuf,
}

impl NsProcess {
    pub fn spawn(mut cmd: Command, log: std::path::PathBuf) -> NsProcess {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("log");
        let f2 = f.try_clone().expect("log");
        cmd.stdout(f).stderr(f2);
        crate::die_with_parent(&mut cmd);
        NsProcess {
            child: cmd.spawn().expect("spawn"),
            log,
        }
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait (graceful stop).
    pub fn term(&mut self) {
        // SAFETY: signalling our own child.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let _ = self.child.wait();
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for NsProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Captures ARP frames on `ifname` inside `ns` for `dur` (AF_PACKET from a thread that
/// entered the namespace; the test's own threads stay where they are).
pub fn capture_arp(
    ns: &Netns,
    ifname: &str,
    dur: std::time::Duration,
) -> std::thread::JoinHandle<Vec<Vec<u8>>> {
    let h = capture_arp_timed(ns, ifname, dur);
    std::thread::spawn(move || h.join().unwrap_or_default().into_iter().map(|(_, f)| f).collect())
}

/// Captures IPv6 frames on `ifname` inside `ns` for `dur`.
pub fn capture_ipv6(
    ns: &Netns,
    ifname: &str,
    dur: std::time::Duration,
) -> std::thread::JoinHandle<Vec<Vec<u8>>> {
    let h = capture_ethertype(ns, ifname, dur, libc::ETH_P_IPV6 as u16);
    std::thread::spawn(move || h.join().unwrap_or_default().into_iter().map(|(_, f)| f).collect())
}

/// [`capture_arp`] with the time each frame was read.
pub fn capture_arp_timed(
    ns: &Netns,
    ifname: &str,
    dur: std::time::Duration,
) -> std::thread::JoinHandle<Vec<(std::time::Instant, Vec<u8>)>> {
    capture_ethertype(ns, ifname, dur, libc::ETH_P_ARP as u16)
}

fn capture_ethertype(
    ns: &Netns,
    ifname: &str,
    dur: std::time::Duration,
    ethertype: u16,
) -> std::thread::JoinHandle<Vec<(std::time::Instant, Vec<u8>)>> {
    let path = format!("/var/run/netns/{}", ns.name);
    let ifname = std::ffi::CString::new(ifname).expect("ifname");
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let h = std::thread::spawn(move || {
        let mut frames = Vec::new();
        let f = std::fs::File::open(&path).expect("netns file");
        use std::os::fd::AsRawFd;
        // SAFETY: plain syscalls on descriptors this thread owns; setns moves only this thread.
        unsafe {
            assert_eq!(libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET), 0, "setns");
            let proto = ethertype.to_be() as i32;
            let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, proto);
            assert!(fd >= 0, "AF_PACKET socket");
            let idx = libc::if_nametoindex(ifname.as_ptr());
            let mut sll: libc::sockaddr_ll = std::mem::zeroed();
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_protocol = proto as u16;
            sll.sll_ifindex = idx as i32;
            libc::bind(
                fd,
                &sll as *const libc::sockaddr_ll as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            );
            let tv = libc::timeval {
                tv_sec: 0,
                tv_usec: 100_000,
            };
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                &tv as *const libc::timeval as *const libc::c_void,
                std::mem::size_of::<libc::timeval>() as u32,
            );
            let _ = ready_tx.send(());
            let end = std::time::Instant::now() + dur;
            let mut buf = [0u8; 2048];
            while std::time::Instant::now() < end {
                let n = libc::recv(fd, buf.as_mut_ptr() as *mut libc::c_void, buf.len(), 0);
                if n > 0 {
                    frames.push((std::time::Instant::now(), buf[..n as usize].to_vec()));
                }
            }
            libc::close(fd);
        }
        frames
    });
    let _ = ready_rx.recv_timeout(std::time::Duration::from_secs(2));
    h
}

/// `aa:bb:cc:dd:ee:ff` for a MAC address.
pub fn mac_text(m: &[u8; 6]) -> String {
    m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

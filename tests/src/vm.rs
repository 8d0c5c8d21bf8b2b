//! A throwaway VM with a real IPVS kernel: Debian's kernel under `qemu -accel tcg`
//! (this machine's own kernel has no IPVS), booted from an initramfs built here from
//! installed packages: static busybox, `ipvsadm` and its libraries, our `lb-sync`, and
//! the ip_vs modules loaded in dependency order (from `modules.dep`). A VM alone has no
//! network card (`-nic none`); [`run_pair`] joins two VMs by a virtual Ethernet of their
//! own (a TCP connection between the two qemu processes on 127.0.0.1): nothing leaves
//! them. Results come back on the serial console between marker lines.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Modules the VM loads (their dependencies come first, from `modules.dep`).
pub const MODULES: &[&str] = &[
    "crc32c_generic",
    "ip_vs",
    "ip_vs_rr",
    "ip_vs_wrr",
    "ip_vs_sh",
    "ip_vs_wlc",
    "ip_vs_lc",
    "dummy",
    "virtio_pci",
    "virtio_net",
];

/// Why the VM cannot run here (the test then skips, saying so).
pub fn unavailable() -> Option<String> {
    if Command::new("qemu-system-x86_64")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_err()
    {
        return Some("qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)".into());
    }
    None
}

/// The newest Debian kernel with IPVS modules: (vmlinuz, modules dir).
fn kernel() -> Result<(PathBuf, PathBuf), String> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/boot")
        .map_err(|e| format!("/boot: {e}"))?
        .flatten()
    {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(ver) = name.strip_prefix("vmlinuz-") {
            let mods = PathBuf::from(format!("/lib/modules/{ver}"));
            if mods.join("modules.dep").exists() {
                found.push((e.path(), mods));
            }
        }
    }
    found.sort();
    found
        .pop()
        .ok_or_else(|| "no /boot/vmlinuz-* with /lib/modules (apt-get install linux-image-amd64)".into())
}

/// Module file paths (relative to the modules dir) in load order: [`MODULES`] and
/// `extra`.
fn module_order(mods: &Path, extra: &[&str]) -> Result<Vec<String>, String> {
    let dep = std::fs::read_to_string(mods.join("modules.dep")).map_err(|e| format!("modules.dep: {e}"))?;
    let mut deps: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut by_name: BTreeMap<String, String> = BTreeMap::new();
    for line in dep.lines() {
        let Some((m, rest)) = line.split_once(':') else {
            continue;
        };
        let name = Path::new(m)
            .file_name()
            .map(|f| {
                f.to_string_lossy()
                    .split('.')
                    .next()
                    .unwrap_or("")
                    .replace('-', "_")
            })
            .unwrap_or_default();
        by_name.insert(name, m.to_string());
        deps.insert(
            m.to_string(),
            rest.split_whitespace().map(str::to_string).collect(),
        );
    }
    let mut order = Vec::new();
    let mut seen = BTreeSet::new();
    fn visit(
        m: &str,
        deps: &BTreeMap<String, Vec<String>>,
        seen: &mut BTreeSet<String>,
        order: &mut Vec<String>,
    ) {
        if !seen.insert(m.to_string()) {
            return;
        }
        // modules.dep lists every dependency (transitively); load the deepest first.
        let mut ds = deps.get(m).cloned().unwrap_or_default();
        ds.reverse();
        for d in ds {
            visit(&d, deps, seen, order);
        }
        order.push(m.to_string());
    }
    for want in MODULES.iter().chain(extra) {
        let m = by_name
            .get(*want)
            .ok_or_else(|| format!("module {want} not in {}", mods.display()))?;
        visit(m, &deps, &mut seen, &mut order);
    }
    Ok(order)
}

/// The shared libraries `ldd` names for a binary.
fn libraries(bin: &Path) -> Result<Vec<PathBuf>, String> {
    let o = Command::new("ldd")
        .arg(bin)
        .output()
        .map_err(|e| format!("ldd: {e}"))?;
    let text = String::from_utf8_lossy(&o.stdout);
    let mut out = Vec::new();
    for line in text.lines() {
        let path = match line.split_once("=>") {
            Some((_, r)) => r.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        if let Some(p) = path.filter(|p| p.starts_with('/')) {
            out.push(PathBuf::from(p));
        }
    }
    Ok(out)
}

/// A minimal `newc` cpio archive writer (what the kernel unpacks as initramfs).
struct Cpio {
    out: Vec<u8>,
    ino: u32,
    dirs: BTreeSet<String>,
}

impl Cpio {
    fn new() -> Cpio {
        Cpio {
            out: Vec::new(),
            ino: 1,
            dirs: BTreeSet::new(),
        }
    }

    fn entry(&mut self, name: &str, mode: u32, data: &[u8]) {
        let name = name.trim_start_matches('/');
        let header = format!(
            "070701{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            self.ino,
            mode,
            0,
            0,
            1,
            0,
            data.len(),
            0,
            0,
            0,
            0,
            name.len() + 1,
            0
        );
        self.ino += 1;
        self.out.extend_from_slice(header.as_bytes());
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(0);
        while !self.out.len().is_multiple_of(4) {
            self.out.push(0);
        }
        self.out.extend_from_slice(data);
        while !self.out.len().is_multiple_of(4) {
            self.out.push(0);
        }
    }

    fn dir(&mut self, path: &str) {
        let mut cur = String::new();
        for part in path.trim_matches('/').split('/').filter(|p| !p.is_empty()) {
            cur.push('/');
            cur.push_str(part);
            if self.dirs.insert(cur.clone()) {
                let c = cur.clone();
                self.entry(&c, 0o040755, &[]);
            }
        }
    }

    fn file(&mut self, path: &str, mode: u32, data: &[u8]) {
        if let Some(parent) = Path::new(path).parent() {
            self.dir(&parent.to_string_lossy());
        }
        self.entry(path, 0o100000 | mode, data);
    }

    fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, &[]);
        self.out
    }
}

fn read(p: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))
}

/// A stripped copy of `bin`, cached by its size and mtime.
fn stripped(bin: &Path, cache: &Path) -> Result<Vec<u8>, String> {
    let meta = std::fs::metadata(bin).map_err(|e| format!("{}: {e}", bin.display()))?;
    let stamp = format!(
        "{}-{}-{:?}",
        bin.file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default(),
        meta.len(),
        meta.modified().ok()
    );
    let key = format!(
        "{:x}",
        stamp
            .bytes()
            .fold(0xcbf29ce484222325u64, |h, b| (h ^ u64::from(b))
                .wrapping_mul(0x100000001b3))
    );
    let out = cache.join(format!("stripped-{key}"));
    if !out.exists() {
        let tmp = unique_tmp(cache, &format!("stripped-{key}"));
        let o = Command::new("strip")
            .arg("-o")
            .arg(&tmp)
            .arg(bin)
            .output()
            .map_err(|e| format!("strip: {e}"))?;
        if !o.status.success() {
            std::fs::copy(bin, &tmp).map_err(|e| format!("copy: {e}"))?;
        }
        std::fs::rename(&tmp, &out).map_err(|e| format!("rename: {e}"))?;
    }
    read(&out)
}

/// A temporary name beside `name` in `cache` that no other thread or process uses.
fn unique_tmp(cache: &Path, name: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    cache.join(format!("{name}.{}-{n}.tmp", std::process::id()))
}

/// Loaded module contents, cached (decompressed when the kernel ships them as .xz).
fn module_bytes(mods: &Path, rel: &str, cache: &Path) -> Result<Vec<u8>, String> {
    let src = mods.join(rel);
    if let Some(stem) = rel.strip_suffix(".xz") {
        let out = cache.join(stem.replace('/', "_"));
        if !out.exists() {
            let o = Command::new("xz")
                .arg("-dc")
                .arg(&src)
                .output()
                .map_err(|e| format!("xz: {e}"))?;
            if !o.status.success() {
                return Err(format!(
                    "xz -dc {}: {}",
                    src.display(),
                    String::from_utf8_lossy(&o.stderr)
                ));
            }
            // Tests boot VMs at once: each writes its own file and renames it in place,
            // so that none reads another's half-written copy.
            let tmp = unique_tmp(cache, &stem.replace('/', "_"));
            std::fs::write(&tmp, &o.stdout).map_err(|e| format!("{}: {e}", tmp.display()))?;
            std::fs::rename(&tmp, &out).map_err(|e| format!("rename: {e}"))?;
        }
        return read(&out);
    }
    read(&src)
}

const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
for m in $(cat /modules.order); do
  insmod /lib/modules/$m.ko || echo "@@INSMOD-FAILED $m"
done
ip link set lo up
ip link set dummy0 up 2>/dev/null || echo "@@NO-DUMMY"
ip addr add 198.18.0.250/15 dev dummy0
ip -6 addr add 64:ff9b::c612:fa/96 dev dummy0 nodad 2>/dev/null || ip -6 addr add 64:ff9b::c612:fa/96 dev dummy0
echo "@@READY"
cd /t
. /t/test.sh
echo "@@END"
poweroff -f
"#;

/// What a VM carries besides the test script: `files` under /t, the target directory's
/// binaries `bins` in /bin (stripped, with their libraries), and kernel `modules` loaded
/// besides [`MODULES`].
#[derive(Default)]
pub struct Payload<'a> {
    pub files: &'a [(&'a str, Vec<u8>)],
    pub bins: &'a [&'a str],
    pub modules: &'a [&'a str],
    /// Programs of this machine (absolute paths) put at the same path, with their
    /// libraries: keepalived, to compare what it programs with what we do.
    pub system: &'a [&'a str],
}

/// The kernel to boot and an initramfs with `script` as /t/test.sh and `payload`.
fn initramfs(script: &str, payload: &Payload) -> Result<(PathBuf, PathBuf), String> {
    let Payload {
        files,
        bins,
        modules,
        system,
    } = payload;
    let (vmlinuz, mods) = kernel()?;
    let cache = crate::bin_dir().join("vm-cache");
    std::fs::create_dir_all(&cache).map_err(|e| format!("{}: {e}", cache.display()))?;
    let mut cpio = Cpio::new();
    for d in ["/proc", "/sys", "/dev", "/tmp", "/sbin", "/t"] {
        cpio.dir(d);
    }
    cpio.file("/init", 0o755, INIT.as_bytes());
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.exists())
        .ok_or("busybox not installed (apt-get install busybox-static)")?;
    cpio.file("/bin/busybox", 0o755, &read(busybox)?);
    let ipvsadm = ["/usr/sbin/ipvsadm", "/sbin/ipvsadm"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.exists())
        .ok_or("ipvsadm not installed (apt-get install ipvsadm)")?;
    let ours: Vec<(&str, PathBuf)> = std::iter::once("lb-sync")
        .chain(bins.iter().copied())
        .map(|b| (b, crate::bin_dir().join(b)))
        .collect();
    let mut libs = BTreeSet::new();
    libs.extend(libraries(ipvsadm)?);
    for (_, bin) in &ours {
        libs.extend(libraries(bin)?);
    }
    for prog in system.iter() {
        let p = Path::new(prog);
        if !p.exists() {
            return Err(format!("{prog} is not installed"));
        }
        libs.extend(libraries(p)?);
        cpio.file(prog, 0o755, &read(p)?);
    }
    for lib in libs {
        cpio.file(&lib.to_string_lossy(), 0o755, &read(&lib)?);
    }
    cpio.file("/sbin/ipvsadm", 0o755, &read(ipvsadm)?);
    for (name, bin) in &ours {
        cpio.file(&format!("/bin/{name}"), 0o755, &stripped(bin, &cache)?);
    }
    let order = module_order(&mods, modules)?;
    let mut names = Vec::new();
    for rel in &order {
        let base = Path::new(rel)
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let stem = base.split(".ko").next().unwrap_or(&base).to_string();
        cpio.file(
            &format!("/lib/modules/{stem}.ko"),
            0o644,
            &module_bytes(&mods, rel, &cache)?,
        );
        names.push(stem);
    }
    cpio.file("/modules.order", 0o644, names.join("\n").as_bytes());
    cpio.file("/t/test.sh", 0o755, script.as_bytes());
    for (name, data) in files.iter() {
        cpio.file(&format!("/t/{name}"), 0o644, data);
    }
    static BUILT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = BUILT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let initrd = cache.join(format!("initrd-{}-{n}.cpio", std::process::id()));
    std::fs::write(&initrd, cpio.finish()).map_err(|e| format!("{}: {e}", initrd.display()))?;
    Ok((vmlinuz, initrd))
}

/// Boots `initrd` with the network card `nic` (qemu arguments; `-nic none` for none),
/// its console on a pipe.
fn boot(vmlinuz: &Path, initrd: &Path, nic: &[String]) -> Result<std::process::Child, String> {
    let mut qemu = Command::new("qemu-system-x86_64");
    qemu.stdin(Stdio::null());
    boot_with(qemu, vmlinuz, initrd, nic)
}

/// Boots with `qemu` (the program, maybe wrapped, with its stdin set).
fn boot_with(
    mut qemu: Command,
    vmlinuz: &Path,
    initrd: &Path,
    nic: &[String],
) -> Result<std::process::Child, String> {
    qemu.args(["-accel", "tcg", "-cpu", "max", "-m", "1024", "-smp", "1"])
        .arg("-kernel")
        .arg(vmlinuz)
        .arg("-initrd")
        .arg(initrd)
        .args([
            "-append",
            "console=ttyS0 panic=-1 loglevel=3 quiet",
            "-nographic",
            "-no-reboot",
            "-monitor",
            "none",
            "-serial",
            "stdio",
        ])
        .args(nic)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("qemu: {e}"))
}

/// A booted VM whose console is being read.
struct Console {
    child: std::process::Child,
    reader: std::thread::JoinHandle<Vec<u8>>,
    initrd: PathBuf,
}

impl Console {
    fn start(mut child: std::process::Child, initrd: PathBuf) -> Result<Console, String> {
        let mut stdout = child.stdout.take().ok_or("qemu stdout")?;
        let reader = std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = std::io::Read::read_to_end(&mut stdout, &mut buf);
            buf
        });
        Ok(Console {
            child,
            reader,
            initrd,
        })
    }

    /// Waits until the VM powers off or `deadline` (then kills it); the console output
    /// between `@@READY` and `@@END`.
    fn finish(mut self, deadline: Instant, timeout: Duration) -> Result<String, String> {
        loop {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = std::fs::remove_file(&self.initrd);
        let out = String::from_utf8_lossy(&self.reader.join().unwrap_or_default()).replace('\r', "");
        let Some(start) = out.find("@@READY\n") else {
            return Err(format!("the VM did not get ready within {timeout:?}:\n{out}"));
        };
        if let Some(line) = out.lines().find(|l| l.starts_with("@@INSMOD-FAILED")) {
            return Err(format!("{line}\n{out}"));
        }
        let body = &out[start + "@@READY\n".len()..];
        match body.find("@@END") {
            Some(end) => Ok(body[..end].to_string()),
            None => Err(format!("the VM test did not finish within {timeout:?}:\n{out}")),
        }
    }
}

/// Builds the initramfs (with `script` as /t/test.sh and `files` under /t) and boots it
/// without a network card; returns the console output between `@@READY` and `@@END`.
pub fn run(script: &str, files: &[(&str, Vec<u8>)], timeout: Duration) -> Result<String, String> {
    run_with(
        script,
        &Payload {
            files,
            ..Payload::default()
        },
        timeout,
    )
}

/// As [`run`], with everything a [`Payload`] carries.
pub fn run_with(script: &str, payload: &Payload, timeout: Duration) -> Result<String, String> {
    let (vmlinuz, initrd) = initramfs(script, payload)?;
    let started = Instant::now();
    let child = boot(&vmlinuz, &initrd, &["-nic".into(), "none".into()])?;
    Console::start(child, initrd)?.finish(started + timeout, timeout)
}

/// Two VMs on one virtual Ethernet of their own (qemu's `-netdev socket`: a TCP
/// connection between the two qemu processes on 127.0.0.1, nothing else on it), each
/// with its script (`eth0`, MAC 52:54:00:00:00:01 and :02); both outputs.
pub fn run_pair(
    scripts: [&str; 2],
    files: &[(&str, Vec<u8>)],
    timeout: Duration,
) -> Result<[String; 2], String> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("a free port: {e}"))?
        .port();
    let started = Instant::now();
    let nic = |i: usize, how: &str| -> Vec<String> {
        vec![
            "-netdev".into(),
            format!("socket,id=n0,{how}=127.0.0.1:{port}"),
            "-device".into(),
            format!("virtio-net-pci,netdev=n0,mac=52:54:00:00:00:0{}", i + 1),
        ]
    };
    let payload = Payload {
        files,
        ..Payload::default()
    };
    let (vmlinuz, initrd0) = initramfs(scripts[0], &payload)?;
    let first = Console::start(boot(&vmlinuz, &initrd0, &nic(0, "listen"))?, initrd0)?;
    // The second connects once the first listens (qemu does not retry).
    let listening = || {
        std::fs::read_to_string("/proc/net/tcp")
            .map(|t| {
                t.lines()
                    .any(|l| l.contains(&format!(":{port:04X} 00000000:0000 0A")))
            })
            .unwrap_or(false)
    };
    while !listening() {
        if started.elapsed() > Duration::from_secs(20) {
            let _ = first.finish(Instant::now(), timeout);
            return Err(format!("qemu did not listen on 127.0.0.1:{port}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let (_, initrd1) = initramfs(scripts[1], &payload)?;
    let second = Console::start(boot(&vmlinuz, &initrd1, &nic(1, "connect"))?, initrd1)?;
    let deadline = started + timeout;
    let b = second.finish(deadline, timeout);
    let a = first.finish(deadline, timeout);
    Ok([a?, b?])
}

/// The console loop of a [`LiveVm`]: each line `@@CMD ID BASE64` runs the decoded command
/// and answers `@@OUT ID`, its output, `@@RC ID STATUS`.
const CONSOLE_LOOP: &str = r#"
while read -r tag id b64; do
  [ "$tag" = "@@CMD" ] || continue
  echo "$b64" | base64 -d > /tmp/cmd.sh
  sh /tmp/cmd.sh > /tmp/cmd.out 2>&1 < /dev/null
  rc=$?
  echo "@@OUT $id"
  cat /tmp/cmd.out
  echo "@@RC $id $rc"
done
"#;

/// A VM that stays up while a test drives it: its network card is a tap device on the
/// bridge `br0` of a switch namespace the test made (see `netns::switch`), so it joins
/// the test's own namespaces as a host among them; the test runs shell commands in it
/// over its serial console ([`LiveVm::sh`]). qemu runs inside the switch namespace and
/// dies with it (and with the test).
pub struct LiveVm {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    lines: std::sync::mpsc::Receiver<String>,
    console: std::sync::Arc<std::sync::Mutex<String>>,
    initrd: PathBuf,
    seq: u64,
}

impl LiveVm {
    /// Boots a VM with `payload`, its `eth0` (MAC `mac`) on tap `tap` of `sw`'s bridge,
    /// which runs `setup` and then
    /// takes commands ([`LiveVm::wait_ready`] waits for that). qemu dies with the
    /// calling thread: boot from the test's own thread.
    pub fn boot_on_switch(
        sw: &crate::netns::Netns,
        tap: &str,
        mac: &str,
        setup: &str,
        payload: &Payload,
    ) -> Result<LiveVm, String> {
        sw.must(&["tuntap", "add", "dev", tap, "mode", "tap"]);
        sw.must(&["link", "set", tap, "master", "br0"]);
        sw.must(&["link", "set", tap, "up"]);
        let script = format!("{setup}\necho @@LIVE\n{CONSOLE_LOOP}");
        let (vmlinuz, initrd) = initramfs(&script, payload)?;
        let mut qemu = sw.command("qemu-system-x86_64");
        qemu.stdin(Stdio::piped());
        crate::die_with_parent(&mut qemu);
        let nic = vec![
            "-netdev".into(),
            format!("tap,id=n0,ifname={tap},script=no,downscript=no"),
            "-device".into(),
            format!("virtio-net-pci,netdev=n0,mac={mac}"),
        ];
        let mut child = boot_with(qemu, &vmlinuz, &initrd, &nic)?;
        let stdin = child.stdin.take().ok_or("qemu stdin")?;
        let stdout = child.stdout.take().ok_or("qemu stdout")?;
        let console = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let (tx, lines) = std::sync::mpsc::channel();
        let all = console.clone();
        std::thread::spawn(move || {
            let mut r = std::io::BufReader::new(stdout);
            let mut buf = Vec::new();
            while matches!(std::io::BufRead::read_until(&mut r, b'\n', &mut buf), Ok(n) if n > 0) {
                let line = String::from_utf8_lossy(&buf).replace('\r', "");
                if let Ok(mut c) = all.lock() {
                    c.push_str(&line);
                }
                if tx.send(line.trim_end_matches('\n').to_string()).is_err() {
                    break;
                }
                buf.clear();
            }
        });
        Ok(LiveVm {
            child,
            stdin,
            lines,
            console,
            initrd,
            seq: 0,
        })
    }

    /// Waits until the VM has booted and run its setup.
    pub fn wait_ready(&mut self) -> Result<(), String> {
        self.expect_line(|l| l == "@@LIVE", Duration::from_secs(180), "the VM to boot")
            .map(|_| ())
    }

    /// Waits for a console line `is` accepts.
    fn expect_line(
        &mut self,
        is: impl Fn(&str) -> bool,
        within: Duration,
        what: &str,
    ) -> Result<String, String> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if l.starts_with("@@INSMOD-FAILED") => return Err(format!("{l}\n{}", self.console())),
                Ok(l) if is(&l) => return Ok(l),
                Ok(_) => {}
                Err(_) => {
                    return Err(format!(
                        "timed out after {within:?} waiting for {what}; console:\n{}",
                        self.console()
                    ))
                }
            }
        }
    }

    /// Runs `cmd` with `sh` in the VM: (exit status, output).
    pub fn sh(&mut self, cmd: &str, within: Duration) -> Result<(i32, String), String> {
        self.seq += 1;
        let id = self.seq;
        let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, cmd);
        writeln!(self.stdin, "@@CMD {id} {b64}")
            .and_then(|_| self.stdin.flush())
            .map_err(|e| format!("the VM's console: {e}"))?;
        let begin = format!("@@OUT {id}");
        let end = format!("@@RC {id} ");
        self.expect_line(|l| l == begin, within, cmd)?;
        let mut out = String::new();
        loop {
            let l = self.expect_line(|_| true, within, cmd)?;
            if let Some(rc) = l.strip_prefix(&end) {
                return Ok((rc.trim().parse().unwrap_or(-1), out));
            }
            out.push_str(&l);
            out.push('\n');
        }
    }

    /// Runs `cmd`, which must succeed within 60 s; its output.
    pub fn must(&mut self, cmd: &str) -> String {
        match self.sh(cmd, Duration::from_secs(60)) {
            Ok((0, out)) => out,
            Ok((rc, out)) => panic!("`{cmd}` in the VM exited {rc}:\n{out}"),
            Err(e) => panic!("{e}"),
        }
    }

    /// Everything the console printed so far.
    pub fn console(&self) -> String {
        self.console.lock().map(|c| c.clone()).unwrap_or_default()
    }
}

impl Drop for LiveVm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.initrd);
    }
}

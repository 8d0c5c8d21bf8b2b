//! Drives `conn-harness` (tests/src/bin/conn-harness.rs): echo services on the seed lab's
//! real servers and long-lived client connections through the VIP, reported per phase.

use crate::netns::{Netns, NsProcess};
use crate::seed_lab::SeedLab;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Stdio};
use std::time::Duration;

/// The port the echo services listen on.
pub const ECHO_PORT: u16 = 7000;

/// A `virtual_server` block for the echo service on the seed's VIP (DR, a TCP check on
/// each real server), with `sched` and the two real servers' weights.
pub fn echo_service(sched: &str, weights: [u32; 2]) -> String {
    let servers: Vec<(&str, u32)> = crate::seed_lab::RS_ADDRS.into_iter().zip(weights).collect();
    echo_service_on(sched, &[], &servers)
}

/// The echo service's `virtual_server` block with `sched` and its `flags` lines (as
/// `mh-port`), on `servers` (address, weight).
pub fn echo_service_on(sched: &str, flags: &[&str], servers: &[(&str, u32)]) -> String {
    let vip = crate::seed_lab::VIP;
    let mut s = format!(
        "\nvirtual_server {vip} {ECHO_PORT} {{\n    delay_loop 1\n    lb_algo {sched}\n    lb_kind DR\n    protocol TCP\n"
    );
    for f in flags {
        s.push_str(&format!("    {f}\n"));
    }
    for &(rs, w) in servers {
        s.push_str(&format!(
            "    real_server {rs} {ECHO_PORT} {{\n        weight {w}\n        TCP_CHECK {{\n            connect_timeout 1\n        }}\n    }}\n"
        ));
    }
    s.push_str("}\n");
    s
}

/// `n` client addresses from 198.18.116.`first`.
pub fn sources(first: u8, n: u8) -> Vec<String> {
    (first..first + n).map(|i| format!("198.18.116.{i}")).collect()
}

/// One phase's outcome.
#[derive(Debug, serde::Deserialize)]
pub struct PhaseReport {
    pub phase: String,
    pub connections: usize,
    pub broken: u64,
    pub reasons: BTreeMap<String, u64>,
    /// Broken connections by the real server they were on.
    pub broken_on: BTreeMap<String, u64>,
    /// Connections opened in the phase, by the real server that answered them.
    pub new_on: BTreeMap<String, u64>,
    pub echoes: u64,
}

/// Starts `conn-harness echo rs0N 7000` on each of the seed's real servers.
pub fn start_echo(lab: &SeedLab) -> Vec<NsProcess> {
    crate::seed_lab::RS_ADDRS
        .iter()
        .enumerate()
        .map(|(i, addr)| start_echo_on(lab, i, addr))
        .collect()
}

/// Starts `conn-harness echo rs0{i+1} 7000` on the lab's real server `i` (at `addr`),
/// and waits until it answers.
pub fn start_echo_on(lab: &SeedLab, i: usize, addr: &str) -> NsProcess {
    let name = format!("rs0{}", i + 1);
    let mut c = lab.rs[i].command(&crate::bin_dir().join("conn-harness").to_string_lossy());
    c.args(["echo", &name, &ECHO_PORT.to_string()]);
    let p = NsProcess::spawn(c, lab.dir.path().join(format!("echo{i}.log")));
    crate::wait_for(Duration::from_secs(5), "echo service up", || {
        let o = lab.rs[i]
            .command("bash")
            .args([
                "-c",
                &format!("exec 3<>/dev/tcp/{addr}/{ECHO_PORT} && head -n1 <&3"),
            ])
            .output()
            .ok()?;
        String::from_utf8_lossy(&o.stdout)
            .starts_with(&name)
            .then_some(())
    });
    p
}

/// The client side: `count` connections to `target` from `sources` (addresses of
/// `client`'s interface; added to it here if missing).
pub struct Clients {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Clients {
    pub fn start(client: &Netns, ifname: &str, sources: &[String], target: &str, count: usize) -> Clients {
        for a in sources {
            if !client.has_addr(a) {
                client.must(&["addr", "add", &format!("{a}/24"), "dev", ifname]);
            }
        }
        let mut c = client.command(&crate::bin_dir().join("conn-harness").to_string_lossy());
        c.args(["clients", target, &count.to_string(), &sources.join(",")])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        crate::die_with_parent(&mut c);
        let mut child = c.spawn().expect("conn-harness clients");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        Clients { child, stdin, stdout }
    }

    fn ask(&mut self, command: &str) -> serde_json::Value {
        writeln!(self.stdin, "{command}").expect("conn-harness command");
        self.stdin.flush().expect("conn-harness command");
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("conn-harness answer");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("conn-harness answered {line:?}: {e}"))
    }

    /// Waits until every connection slot has had `echoes` echoes in this phase.
    pub fn settle(&mut self, echoes: u64, within: Duration) -> bool {
        let v = self.ask(&format!("settle {echoes} {}", within.as_secs().max(1)));
        v["settled"].as_bool().unwrap_or(false)
    }

    /// Ends the current phase (its report) and begins `next`.
    pub fn phase(&mut self, next: &str) -> PhaseReport {
        let v = self.ask(&format!("phase {next}"));
        serde_json::from_value(v).expect("phase report")
    }
}

impl Drop for Clients {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

//! UDP_CHECK, PING_CHECK, DNS_CHECK and SMTP_CHECK against real servers in namespaces
//! (issue 24): up; down when
//! the server stops (ICMP port unreachable), answers wrong, or is filtered; back up; and
//! keepalived's rule that a UDP server that stays silent is up unless `require_reply`.
//! The checkers run in `checker-watch` in the director's namespace; each transition is
//! read from its output, timed from the change the test made, against keepalived's
//! bound: the next probe within `delay_loop`, then `retry` more attempts each after
//! `delay_before_retry`, each attempt taking up to `connect_timeout`.

use e2e::netns::{link, Netns, NsProcess};
use e2e::*;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const RS: &str = "198.18.30.2";

/// delay_loop 1, connect_timeout 1, retry 1, delay_before_retry 1.
const TIMING: &str = "connect_timeout 1\n   retry 1\n   delay_before_retry 1\n   delay_loop 1";

/// keepalived's bound for a failure to be noticed: delay_loop + retry x delay_before_retry
/// + (retry + 1) x connect_timeout.
const DOWN_BOUND: Duration = Duration::from_secs(4);
/// And for a recovery: delay_before_retry (the failed checker's probes) + connect_timeout.
const UP_BOUND: Duration = Duration::from_secs(2);
/// What the machine may add (two cores shared with the rest of the suite).
const SLACK: Duration = Duration::from_secs(3);

struct Lab {
    dir: Netns,
    rs: Netns,
    work: tempfile::TempDir,
    watches: usize,
}

impl Lab {
    fn new(tag: &str) -> Lab {
        let dir = Netns::new(&format!("{tag}d"));
        let rs = Netns::new(&format!("{tag}r"));
        link(&dir, "198.18.30.1/24", &rs, &format!("{RS}/24"), "ens33");
        Lab {
            dir,
            rs,
            work: tempfile::tempdir().expect("tempdir"),
            watches: 0,
        }
    }

    fn udp_server(&self, port: u16, reply: Option<&str>) -> NsProcess {
        let mut c = self.rs.command(&bin_dir().join("udp-echo").to_string_lossy());
        c.arg(format!("{RS}:{port}"));
        c.args(reply);
        let p = NsProcess::spawn(c, self.work.path().join(format!("udp-{port}.log")));
        wait_for(Duration::from_secs(5), "udp-echo listening", || {
            p.log_text().contains("listening").then_some(())
        });
        p
    }

    /// `checker-watch` of `conf` in the director's namespace (its own log each time).
    fn watch(&mut self, conf: &str) -> NsProcess {
        self.watches += 1;
        let file = self.work.path().join(format!("checks-{}.conf", self.watches));
        std::fs::write(&file, conf).expect("write conf");
        let mut c = self
            .dir
            .command(&bin_dir().join("checker-watch").to_string_lossy());
        c.arg(&file);
        NsProcess::spawn(c, self.work.path().join(format!("watch-{}.log", self.watches)))
    }
}

/// Waits for a line of `w`'s output, after the first `from` bytes, holding every part of
/// `want`; the time from `since` to when it was seen.
fn saw(w: &NsProcess, from: usize, want: &[&str], since: SystemTime, within: Duration) -> Duration {
    let deadline = Instant::now() + within;
    let since_ms = since
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    loop {
        let text = w.log_text();
        // The line's own time (when the checker decided), not when it was read here.
        let found = text
            .get(from..)
            .and_then(|t| t.lines().find(|l| want.iter().all(|p| l.contains(p))))
            .and_then(|l| l.split_whitespace().next()?.parse::<u128>().ok());
        if let Some(at_ms) = found {
            let now_ms = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis())
                .unwrap_or(0);
            assert!(
                at_ms + 60_000 >= since_ms && at_ms <= now_ms + 1_000,
                "{at_ms} is not when the line was written (since {since_ms}, now {now_ms})"
            );
            // A transition decided while the change was being made counts as at once.
            return Duration::from_millis(at_ms.saturating_sub(since_ms) as u64);
        }
        assert!(
            Instant::now() < deadline,
            "no line with {want:?} within {within:?}; checker-watch said:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn check_bound(what: &str, took: Duration, bound: Duration) {
    eprintln!("{what}: {took:?} (keepalived's bound {bound:?})");
    assert!(
        took <= bound + SLACK,
        "{what} took {took:?}, keepalived's bound is {bound:?}"
    );
}

/// Does `act` (a server stopped, or started and answering; a filter loaded), then waits
/// for a line of `w`'s output written since, holding every part of `want`, and checks the
/// time from the end of `act` against keepalived's `bound`. Returns where the output was
/// before `act` and when `act` ended, for other lines the same change brings.
fn after(
    w: &NsProcess,
    what: &str,
    bound: Duration,
    act: impl FnOnce(),
    want: &[&str],
) -> (usize, SystemTime) {
    let mark = w.log_text().len();
    act();
    let t = SystemTime::now();
    check_bound(what, saw(w, mark, want, t, bound + SLACK), bound);
    (mark, t)
}

/// Loads an nftables table into `ns` that drops what `rule` matches on input.
fn filter(ns: &Netns, table: &str, rule: &str) {
    ns.nft(&format!(
        "table inet {table} {{\n chain in {{\n  type filter hook input priority 0;\n  {rule} drop\n }}\n}}\n"
    ));
}

#[test]
fn udp_check_up_down_wrong_answer_filtered_and_back() {
    let mut lab = Lab::new("ckudp");
    let pong = lab.udp_server(5353, Some("pong"));
    let _nope = lab.udp_server(5356, Some("nope"));
    let conf = format!(
        "virtual_server 198.18.116.134 53 {{\n protocol UDP\n lb_kind NAT\n\
         real_server {RS} 5353 {{\n  UDP_CHECK {{\n   {TIMING}\n   require_reply 706f6e67\n  }}\n }}\n\
         real_server {RS} 5354 {{\n  UDP_CHECK {{\n   {TIMING}\n  }}\n }}\n\
         real_server {RS} 5356 {{\n  UDP_CHECK {{\n   {TIMING}\n   require_reply 706f6e67\n  }}\n }}\n}}\n"
    );
    let start = SystemTime::now();
    let w = lab.watch(&conf);
    let long = Duration::from_secs(20);
    // First results: the answering server up, the closed port and the wrong answer down.
    saw(&w, 0, &[":5353 UDP_CHECK#0", "UP->UP", "matches"], start, long);
    saw(
        &w,
        0,
        &[":5354 UDP_CHECK#0", "->DOWN", "ICMP port unreachable"],
        start,
        long,
    );
    saw(
        &w,
        0,
        &[":5356 UDP_CHECK#0", "->DOWN", "does not match"],
        start,
        long,
    );

    // The server stops: the port is closed, ICMP says so; then back.
    after(
        &w,
        "UDP_CHECK, server stopped -> DOWN",
        DOWN_BOUND,
        || drop(pong),
        &[":5353", "UP->DOWN", "ICMP port unreachable"],
    );
    let mut _pong = None;
    after(
        &w,
        "UDP_CHECK, server back -> UP",
        UP_BOUND,
        || _pong = Some(lab.udp_server(5353, Some("pong"))),
        &[":5353", "DOWN->UP"],
    );

    // Filtered: no answer and no ICMP error. Down where a reply is required; up where it
    // is not (keepalived counts silence as success).
    let (mark, t) = after(
        &w,
        "UDP_CHECK require_reply, filtered -> DOWN",
        DOWN_BOUND,
        || filter(&lab.rs, "ckf", "udp dport { 5353, 5354 }"),
        &[":5353", "UP->DOWN", "no reply within 1 s"],
    );
    check_bound(
        "UDP_CHECK, filtered, no reply required -> UP",
        saw(
            &w,
            mark,
            &[":5354", "DOWN->UP", "no ICMP error within 1 s"],
            t,
            UP_BOUND + SLACK,
        ),
        UP_BOUND,
    );
    let (mark, t) = after(
        &w,
        "UDP_CHECK require_reply, filter gone -> UP",
        UP_BOUND,
        || lab.rs.nft("delete table inet ckf\n"),
        &[":5353", "DOWN->UP", "matches"],
    );
    saw(
        &w,
        mark,
        &[":5354", "UP->DOWN", "ICMP port unreachable"],
        t,
        DOWN_BOUND + SLACK,
    );
}

#[test]
fn ping_check_by_raw_and_ping_sockets() {
    let mut lab = Lab::new("ckping");
    let conf = format!(
        "virtual_server 198.18.116.134 80 {{\n lb_kind DR\n\
         real_server {RS} 80 {{\n  PING_CHECK {{\n   {TIMING}\n  }}\n }}\n}}\n"
    );
    // A fresh namespace admits no group to ping sockets: the raw socket (we are root).
    let start = SystemTime::now();
    let w = lab.watch(&conf);
    saw(
        &w,
        0,
        &["PING_CHECK#0", "UP->UP", "echo reply (raw socket)"],
        start,
        Duration::from_secs(20),
    );
    after(
        &w,
        "PING_CHECK, echo filtered -> DOWN",
        DOWN_BOUND,
        || filter(&lab.rs, "ckp", "icmp type echo-request"),
        &["PING_CHECK#0", "UP->DOWN", "no echo reply within 1 s"],
    );
    after(
        &w,
        "PING_CHECK, echo answered again -> UP",
        UP_BOUND,
        || lab.rs.nft("delete table inet ckp\n"),
        &["PING_CHECK#0", "DOWN->UP", "echo reply"],
    );
    drop(w);

    // Where ping_group_range admits root's group, keepalived's way: a ping socket.
    let ok = lab
        .dir
        .command("sysctl")
        .args(["-qw", "net.ipv4.ping_group_range=0 2147483647"])
        .status()
        .expect("sysctl");
    assert!(ok.success());
    let start = SystemTime::now();
    let w = lab.watch(&conf);
    saw(
        &w,
        0,
        &["PING_CHECK#0", "UP->UP", "echo reply (ping socket)"],
        start,
        Duration::from_secs(20),
    );
    // The server's address gone: nothing answers (neighbour resolution fails).
    after(
        &w,
        "PING_CHECK, address gone -> DOWN",
        DOWN_BOUND,
        || lab.rs.must(&["addr", "del", &format!("{RS}/24"), "dev", "ens33"]),
        &["PING_CHECK#0", "UP->DOWN", "(ping socket)"],
    );
}

/// dnsmasq (Debian's `dnsmasq-base`) in the real server's namespace: `www.example.test`
/// answers, `bad.test` is NXDOMAIN; its log to stderr.
fn dnsmasq(lab: &Lab, n: usize) -> NsProcess {
    let mut c = lab.rs.command("dnsmasq");
    c.args([
        "--keep-in-foreground",
        "--conf-file=/dev/null",
        "--no-resolv",
        "--no-hosts",
        "--pid-file=",
        "--bind-interfaces",
        "--log-facility=-",
        "--log-queries",
        "--address=/www.example.test/198.18.30.9",
        "--address=/bad.test/",
    ]);
    c.arg(format!("--listen-address={RS}"));
    let p = NsProcess::spawn(c, lab.work.path().join(format!("dnsmasq-{n}.log")));
    wait_for(Duration::from_secs(10), "dnsmasq started", || {
        p.log_text().contains("started").then_some(())
    });
    p
}

#[test]
fn dns_check_answer_error_rcode_stopped_and_back() {
    let mut lab = Lab::new("ckdns");
    let server = dnsmasq(&lab, 1);
    let conf = format!(
        "virtual_server 198.18.116.134 53 {{\n protocol UDP\n lb_kind DR\n\
         real_server {RS} 53 {{\n  DNS_CHECK {{\n   {TIMING}\n   type A\n   name www.example.test\n  }}\n\
         DNS_CHECK {{\n   {TIMING}\n   type A\n   name bad.test\n  }}\n }}\n}}\n"
    );
    let start = SystemTime::now();
    let w = lab.watch(&conf);
    let long = Duration::from_secs(20);
    saw(
        &w,
        0,
        &["DNS_CHECK#0", "UP->UP", "A www.example.test: NOERROR"],
        start,
        long,
    );
    saw(
        &w,
        0,
        &["DNS_CHECK#1", "->DOWN", "A bad.test: NXDOMAIN"],
        start,
        long,
    );

    after(
        &w,
        "DNS_CHECK, server stopped -> DOWN",
        DOWN_BOUND,
        || drop(server),
        &["DNS_CHECK#0", "UP->DOWN", "ICMP port unreachable"],
    );
    let mut _server = None;
    after(
        &w,
        "DNS_CHECK, server back -> UP",
        UP_BOUND,
        || _server = Some(dnsmasq(&lab, 2)),
        &["DNS_CHECK#0", "DOWN->UP", "NOERROR"],
    );
    // Filtered: no answer within connect_timeout.
    after(
        &w,
        "DNS_CHECK, filtered -> DOWN",
        DOWN_BOUND,
        || filter(&lab.rs, "ckd", "udp dport 53"),
        &[
            "DNS_CHECK#0",
            "UP->DOWN",
            "no answer to A www.example.test within 1 s",
        ],
    );
}

/// aiosmtpd (Debian's `python3-aiosmtpd`, a real SMTP server) in the real server's
/// namespace on port 25.
fn aiosmtpd(lab: &Lab, n: usize) -> NsProcess {
    let mut c = lab.rs.command("/usr/bin/python3");
    c.args(["-m", "aiosmtpd", "-n", "-l", &format!("{RS}:25")]);
    let p = NsProcess::spawn(c, lab.work.path().join(format!("smtpd-{n}.log")));
    // Listening once a connection is greeted.
    wait_for(Duration::from_secs(20), "aiosmtpd listening", || {
        lab.rs
            .command("bash")
            .args(["-c", &format!("exec 3<>/dev/tcp/{RS}/25 && head -c3 <&3")])
            .output()
            .ok()
            .filter(|o| o.stdout.starts_with(b"220"))
    });
    p
}

#[test]
fn smtp_check_greeting_helo_refusal_stopped_and_back() {
    let mut lab = Lab::new("cksmtp");
    let server = aiosmtpd(&lab, 1);
    let mut refuser = lab.rs.command(&bin_dir().join("tcp-banner").to_string_lossy());
    refuser.args([&format!("{RS}:2525"), "554 5.3.2 not accepting mail"]);
    let refuser = NsProcess::spawn(refuser, lab.work.path().join("refuser.log"));
    wait_for(Duration::from_secs(5), "tcp-banner listening", || {
        refuser.log_text().contains("listening").then_some(())
    });
    let conf = format!(
        "virtual_server 198.18.116.134 25 {{\n lb_kind DR\n\
         real_server {RS} 25 {{\n  SMTP_CHECK {{\n   {TIMING}\n   helo_name checker.example.test\n  }}\n\
         SMTP_CHECK {{\n   {TIMING}\n   connect_port 2525\n  }}\n }}\n}}\n"
    );
    let start = SystemTime::now();
    let w = lab.watch(&conf);
    let long = Duration::from_secs(20);
    saw(
        &w,
        0,
        &["SMTP_CHECK#0", "UP->UP", "SMTP 220, HELO 250, QUIT 221"],
        start,
        long,
    );
    saw(
        &w,
        0,
        &["SMTP_CHECK#1", "->DOWN", "greeting 554, not 220"],
        start,
        long,
    );

    after(
        &w,
        "SMTP_CHECK, server stopped -> DOWN",
        DOWN_BOUND,
        || drop(server),
        &["SMTP_CHECK#0", "UP->DOWN", "connection refused"],
    );
    let mut _server = None;
    after(
        &w,
        "SMTP_CHECK, server back -> UP",
        UP_BOUND,
        || _server = Some(aiosmtpd(&lab, 2)),
        &["SMTP_CHECK#0", "DOWN->UP"],
    );
}

#[test]
fn file_check_follows_the_file_when_it_changes() {
    // keepalived reads a track_file when inotify says it changed, not on a schedule
    // (FILE_CHECK has no delay_loop): the bound is "at once"; a periodic read would take
    // the default delay_loop, 60 s.
    let mut lab = Lab::new("fchk");
    let maint = lab.work.path().join("maint");
    let boost = lab.work.path().join("boost");
    std::fs::write(&boost, "0\n").expect("write");
    // `init_file 0 overwrite` replaces what is there at start.
    std::fs::write(&maint, "9\n").expect("write");
    let conf = format!(
        "track_file maint {{\n file {maint}\n weight 0\n init_file 0 overwrite\n}}\n\
         track_file boost {{\n file {boost}\n}}\n\
         virtual_server {RS} 80 {{\n lb_kind DR\n protocol TCP\n\
          real_server {RS} 80 {{\n  weight 5\n  FILE_CHECK {{\n   track_file maint\n  }}\n  FILE_CHECK {{\n   track_file boost\n   weight 2\n  }}\n }}\n}}\n",
        maint = maint.display(),
        boost = boost.display(),
    );
    let w = lab.watch(&conf);
    // Known at once: down (alpha) until the first reading, which says up.
    saw(
        &w,
        0,
        &["FILE_CHECK#0", "DOWN->UP", "file value 0"],
        SystemTime::now(),
        SLACK,
    );
    saw(
        &w,
        0,
        &["FILE_CHECK#1", "DOWN->UP", "file value 0: weight 5"],
        SystemTime::now(),
        SLACK,
    );
    let at_once = Duration::ZERO;
    after(
        &w,
        "maintenance flag set",
        at_once,
        || std::fs::write(&maint, "1\n").expect("write"),
        &["FILE_CHECK#0", "UP->DOWN", "file value 1"],
    );
    after(
        &w,
        "maintenance flag cleared",
        at_once,
        || std::fs::write(&maint, "0\n").expect("write"),
        &["FILE_CHECK#0", "DOWN->UP", "file value 0"],
    );
    // Weighted: 5 + 3 x 2; a value driving it below 0 leaves it up with weight 0.
    after(
        &w,
        "weight raised",
        at_once,
        || std::fs::write(&boost, "3\n").expect("write"),
        &["FILE_CHECK#1", "UP->UP", "weight 11"],
    );
    after(
        &w,
        "weight lowered",
        at_once,
        || std::fs::write(&boost, "-4\n").expect("write"),
        &["FILE_CHECK#1", "UP->UP", "weight 0"],
    );
    // A file moved into place (how tools update files atomically), then deleted (0).
    let tmp = lab.work.path().join("maint.new");
    after(
        &w,
        "flag moved into place",
        at_once,
        || {
            std::fs::write(&tmp, "7\n").expect("write");
            std::fs::rename(&tmp, &maint).expect("rename");
        },
        &["FILE_CHECK#0", "UP->DOWN", "file value 7"],
    );
    after(
        &w,
        "flag deleted",
        at_once,
        || std::fs::remove_file(&maint).expect("rm"),
        &["FILE_CHECK#0", "DOWN->UP", "file value 0"],
    );
}

/// One real server's transitions in order, from keepalived's log (`Adding service [IP]`:
/// up, `Removing service [IP]`: down) and from checker-watch's (`... IP:PORT ... ->UP`).
fn phases(log: &str, rs: &str, keepalived: bool) -> Vec<&'static str> {
    log.lines()
        .filter_map(|l| {
            if keepalived {
                if l.contains(&format!("Adding service [{rs}]")) {
                    Some("up")
                } else if l.contains(&format!("Removing service [{rs}]")) {
                    Some("down")
                } else {
                    None
                }
            } else {
                let w: Vec<&str> = l.split_whitespace().collect();
                if !w.iter().any(|x| x.starts_with(&format!("{rs}:"))) {
                    return None;
                }
                w.iter().find_map(|x| match *x {
                    "DOWN->UP" => Some("up"),
                    "UP->DOWN" => Some("down"),
                    _ => None,
                })
            }
        })
        .collect()
}

/// keepalived beside us (issue 24): in the IPVS VM (keepalived's checkers need IPVS),
/// keepalived and checker-watch run the same UDP_CHECK, TCP_CHECK, PING_CHECK, DNS_CHECK
/// and SMTP_CHECK against the same servers (udp-echo, tcp-banner, the VM's own address, a
/// real dnsmasq, tcp-banner speaking SMTP); the servers answer wrong, right again, go
/// away and come back; each real server must change state in the
/// same phases in both logs.
#[test]
fn checkers_change_state_in_the_same_phases_as_keepalived() {
    if let Some(why) = e2e::vm::unavailable() {
        eprintln!("SKIPPED: {why}");
        return;
    }
    let timing = "connect_timeout 1\n   retry 1\n   delay_before_retry 1\n   alpha";
    let conf = format!(
        "global_defs {{\n router_id VM\n}}\n\
virtual_server 198.18.3.1 7 {{\n protocol UDP\n lb_kind DR\n delay_loop 1\n real_server 198.18.2.1 7 {{\n  UDP_CHECK {{\n   {timing}\n   require_reply 706f6e67\n  }}\n }}\n}}\n\
virtual_server 198.18.3.2 25 {{\n protocol TCP\n lb_kind DR\n delay_loop 1\n real_server 198.18.2.2 25 {{\n  TCP_CHECK {{\n   {timing}\n  }}\n }}\n}}\n\
virtual_server 198.18.3.3 80 {{\n protocol TCP\n lb_kind DR\n delay_loop 1\n real_server 198.18.2.3 80 {{\n  PING_CHECK {{\n   {timing}\n  }}\n }}\n}}\n\
virtual_server 198.18.3.4 53 {{\n protocol UDP\n lb_kind DR\n delay_loop 1\n real_server 198.18.2.4 53 {{\n  DNS_CHECK {{\n   {timing}\n   type A\n   name www.example.test\n  }}\n }}\n}}\n\
virtual_server 198.18.3.5 25 {{\n protocol TCP\n lb_kind DR\n delay_loop 1\n real_server 198.18.2.5 25 {{\n  SMTP_CHECK {{\n   {timing}\n  }}\n }}\n}}\n"
    );
    let script = r#"
mkdir -p /var/run /run /etc
echo "root:x:0:0:root:/root:/bin/sh" > /etc/passwd
echo "root:x:0:" > /etc/group
for a in 1 2 3 4 5; do ip addr add 198.18.2.$a/32 dev dummy0; done
# The servers answering right ("") or wrong ("wrong": another UDP reply, no such DNS
# name, an SMTP server refusing service).
servers() {
  if [ "$1" = wrong ]; then reply=nope; dns=/www.example.test/; banner="554 not accepting mail"; smtp=
  else reply=pong; dns=/www.example.test/198.18.9.9; banner="220 smtp ready"; smtp=--smtp; fi
  udp-echo 198.18.2.1:7 $reply > /tmp/udp.log 2>&1 & echo $! > /tmp/udp.pid
  tcp-banner 198.18.2.2:25 "220 ready" > /tmp/tcp.log 2>&1 & echo $! > /tmp/tcp.pid
  tcp-banner 198.18.2.5:25 "$banner" $smtp > /tmp/smtp.log 2>&1 & echo $! > /tmp/smtp.pid
  /usr/sbin/dnsmasq --keep-in-foreground --conf-file=/dev/null --no-resolv --no-hosts --pid-file= \
    --bind-interfaces --user=root --listen-address=198.18.2.4 --address=$dns \
    > /tmp/dns.log 2>&1 & echo $! > /tmp/dns.pid
}
stop_servers() {
  kill $(cat /tmp/udp.pid) $(cat /tmp/tcp.pid) $(cat /tmp/dns.pid) $(cat /tmp/smtp.pid)
  sleep 0.2
}
# Waits (up to 60 s) until keepalived's log has $1 lines with $2 and ours $1 with $3.
both() {
  i=0
  while [ $i -lt 300 ]; do
    k=$(grep -c "$2" /tmp/ka.log); o=$(grep -c -- "$3" /tmp/ours.log)
    [ "$k" -ge "$1" ] && [ "$o" -ge "$1" ] && return 0
    sleep 0.2; i=$((i+1))
  done
  echo "@@TIMEOUT $1 $2 $3 ka=$k ours=$o"
}
servers
/usr/sbin/keepalived -n -l -D -C -f /t/checks.conf -p /tmp/ka.pid -c /tmp/ka-c.pid > /tmp/ka.log 2>&1 &
checker-watch /t/checks.conf > /tmp/ours.log 2>&1 &
both 5 "Adding service" "DOWN->UP"
echo "@@PHASE wrong"
stop_servers; servers wrong
both 3 "Removing service" "UP->DOWN"
echo "@@PHASE right"
stop_servers; servers
both 8 "Adding service" "DOWN->UP"
echo "@@PHASE down"
stop_servers
ip addr del 198.18.2.3/32 dev dummy0
both 8 "Removing service" "UP->DOWN"
echo "@@PHASE up"
ip addr add 198.18.2.3/32 dev dummy0
servers
both 13 "Adding service" "DOWN->UP"
echo "@@STEP keepalived"; cat /tmp/ka.log
echo "@@STEP ours"; cat /tmp/ours.log
echo "@@STEP end"
"#;
    let files = vec![("checks.conf", conf.into_bytes())];
    let out = e2e::vm::run_with(
        script,
        &e2e::vm::Payload {
            files: &files,
            bins: &["checker-watch", "udp-echo", "tcp-banner"],
            system: &["/usr/sbin/keepalived", "/usr/sbin/dnsmasq"],
            ..Default::default()
        },
        Duration::from_secs(400),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(!out.contains("@@TIMEOUT"), "{out}");
    let part = |name: &str| {
        let start = out
            .find(&format!("@@STEP {name}\n"))
            .unwrap_or_else(|| panic!("{out}"));
        let rest = &out[start..];
        rest[..rest.find("@@STEP end").unwrap_or(rest.len())].to_string()
    };
    let (ka, ours) = (part("keepalived"), part("ours"));
    // A wrong answer (UDP reply, DNS name, SMTP refusal) is down; TCP_CHECK and PING_CHECK
    // do not read answers. Then every server stops.
    for (rs, want) in [
        ("198.18.2.1", &["up", "down", "up", "down", "up"][..]),
        ("198.18.2.2", &["up", "down", "up"][..]),
        ("198.18.2.3", &["up", "down", "up"][..]),
        ("198.18.2.4", &["up", "down", "up", "down", "up"][..]),
        ("198.18.2.5", &["up", "down", "up", "down", "up"][..]),
    ] {
        let k = phases(&ka, rs, true);
        let o = phases(&ours, rs, false);
        eprintln!("{rs}: keepalived {k:?}, ours {o:?}");
        assert_eq!(k, want, "keepalived, {rs}:\n{ka}");
        assert_eq!(o, k, "ours against keepalived, {rs}:\n{ours}\n{ka}");
    }
}

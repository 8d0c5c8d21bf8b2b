//! Commands that talk to the cluster: propose, config show, status, history, cluster.

use crate::remote::{Answer, Refused, Remote};
use crate::Format;
use anyhow::{anyhow, Result};
use ha_config::api::*;
use ha_config::keyed::{self, Key, KeyedCluster, Slot};
use ha_config::{bundle, diff as semdiff, ClusterConfig};
use hyper::Method;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// How long a write keeps retrying while there is no leader.
const WRITE_PATIENCE: Duration = Duration::from_secs(30);
const READ_PATIENCE: Duration = Duration::from_secs(5);

fn refused(r: &Refused) -> ExitCode {
    eprintln!(
        "hactl: refused by {} ({}, {}): {}",
        r.endpoint, r.status, r.error.kind, r.error.message
    );
    for d in &r.error.diagnostics {
        eprintln!("{d}");
    }
    ExitCode::from(1)
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// 128 random bits, hex: a proposal id no other client will pick.
fn random_id() -> String {
    let mut b = [0u8; 16];
    let ok = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b));
    if ok.is_err() {
        let t = now_ms() as u128 ^ ((std::process::id() as u128) << 64);
        b = t.to_be_bytes();
    }
    hex::encode(b)
}

pub fn default_author() -> String {
    if let Ok(a) = std::env::var("HACTL_AUTHOR") {
        if !a.is_empty() {
            return a;
        }
    }
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    if host.is_empty() {
        user
    } else {
        format!("{user}@{host}")
    }
}

pub struct ProposeArgs<'a> {
    pub file: &'a Path,
    pub reason: &'a str,
    pub author: &'a str,
    pub dry_run: bool,
    pub base_version: Option<u64>,
    pub allow_no_change: bool,
    /// List every change, however many.
    pub full: bool,
    /// After the commit, wait this long at most for every director to apply it.
    pub wait: Option<Duration>,
}

/// Changes listed one by one up to this many; beyond, counts and the first ones.
const LISTED_CHANGES: usize = 50;

pub fn propose(remote: &Remote, a: ProposeArgs<'_>) -> Result<ExitCode> {
    let (parsed, loaded, files) = bundle::load_file_recorded(a.file);
    for d in loaded.diags.clone().sorted().iter() {
        eprintln!("{}", d.render(&parsed.sources));
    }
    if loaded.diags.has_errors() {
        eprintln!("hactl: {} has errors; nothing was proposed", a.file.display());
        return Ok(ExitCode::from(1));
    }
    let mine = KeyedCluster::from_cluster(&loaded.cluster);
    let hash = mine.hash();
    let current = match against_committed(remote, &mine, &loaded.cluster)? {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let changes = semdiff::diff(&current.theirs, &current.ours);
    println!("against version {} ({}):", current.version, short(&current.hash));
    if changes.is_empty() {
        println!("  no change");
    }
    let lines: Vec<String> = changes.iter().map(|c| c.to_string()).collect();
    for line in semdiff::listing(&lines, LISTED_CHANGES, a.full) {
        println!("  {line}");
    }
    if current.version > 0 && hash == current.hash && !a.allow_no_change {
        println!(
            "the cluster already runs this configuration (version {}); nothing to commit",
            current.version
        );
        return Ok(ExitCode::SUCCESS);
    }
    if a.dry_run {
        println!("dry run: nothing committed");
        return Ok(ExitCode::SUCCESS);
    }
    // The change travels as the blocks it changes (printed back as a patch, checked to read
    // back as them) with the whole file's hash, which the leader checks: it parses and
    // validates O(change), not the file. The whole file goes when a patch cannot say it.
    let mut compared = current;
    for attempt in 0..4 {
        let rendered = compared
            .slots
            .as_ref()
            .and_then(|(theirs, ours)| ha_config::patch::render(theirs, ours));
        let (patch, req_files) = match rendered {
            // An empty patch (`--allow-no-change` of an unchanged file) goes as the whole
            // file, which commits a new version.
            Some(text) if compared.version > 0 && !text.is_empty() => {
                let blocks = compared.slots.as_ref().map_or(0, |(theirs, ours)| {
                    let written = ours.iter().filter(|(k, s)| theirs.get(*k) != Some(*s)).count();
                    written + theirs.keys().filter(|k| !ours.contains_key(*k)).count()
                });
                println!("sending the {blocks} changed block(s); the leader checks the whole file's hash");
                let name = format!("{} (changed blocks)", a.file.display());
                (true, BTreeMap::from([(name, text)]))
            }
            _ => {
                println!("sending the whole file");
                (false, files.clone())
            }
        };
        let req = ProposeRequest {
            main: req_files.keys().next().cloned().unwrap_or_default(),
            files: req_files,
            hash: hash.clone(),
            author: a.author.to_string(),
            reason: a.reason.to_string(),
            base_version: a.base_version,
            proposal_id: random_id(),
            client_time_ms: now_ms(),
            patch,
            dry_run: false,
        };
        let body = serde_json::to_vec(&req)?;
        match remote.call::<ProposeResponse>(Method::POST, "/v1/proposals", Some(body), WRITE_PATIENCE)? {
            (ep, Answer::Ok(r)) => {
                print_committed(&ep, &r);
                return wait_applied(remote, &ep, r.version, a.wait);
            }
            // Another change committed between the comparison and the proposal: the
            // changed blocks no longer give the file; compare again.
            (_, Answer::Refused(r)) if patch && r.error.kind == "conflict" && attempt < 2 => {
                compared = match against_committed(remote, &mine, &loaded.cluster)? {
                    Ok(c) => c,
                    Err(code) => return Ok(code),
                };
            }
            // The leader judged the changed blocks alone differently from the whole file
            // (this hactl validated the file): the whole file decides.
            (_, Answer::Refused(r)) if patch && r.error.kind == "invalid_config" => {
                eprintln!(
                    "hactl: the leader refused the changed blocks ({}); sending the whole file",
                    r.error.message
                );
                compared.slots = None;
            }
            (_, Answer::Refused(r)) => return Ok(refused(&r)),
        }
    }
    Err(anyhow!(
        "the configuration kept changing while proposing; propose again"
    ))
}

/// With `--wait`: asks each director (the members the committing one knows) to answer
/// once it has applied `version` (`GET /v1/status?wait_version=`), all within `limit`.
/// Prints `applied: version N on A, B, C in T ms`, or which directors did not and where
/// they are (exit 3).
fn wait_applied(remote: &Remote, ep: &str, version: u64, limit: Option<Duration>) -> Result<ExitCode> {
    let Some(limit) = limit else {
        return Ok(ExitCode::SUCCESS);
    };
    let start = Instant::now();
    let status = |endpoint: &str, wait: Option<Duration>| -> Result<StatusResponse> {
        let path = match wait {
            Some(w) => format!("/v1/status?wait_version={version}&wait_ms={}", w.as_millis()),
            None => "/v1/status".to_string(),
        };
        let timeout = wait.unwrap_or_default() + Duration::from_secs(5);
        let (code, body) = remote.send_to(endpoint, Method::GET, &path, None, timeout)?;
        if !code.is_success() {
            return Err(anyhow!("{endpoint}: {code}: {}", String::from_utf8_lossy(&body)));
        }
        serde_json::from_slice(&body).map_err(|e| anyhow!("{endpoint}: unexpected status answer: {e}"))
    };
    let members = status(ep, None)?.members;
    // Every director asked at once: a slow one does not delay asking the others, and the
    // time printed is when the last one applied.
    let left = limit.saturating_sub(start.elapsed());
    let answers: Vec<Result<StatusResponse>> = std::thread::scope(|scope| {
        let asks: Vec<_> = members
            .iter()
            .map(|m| scope.spawn(|| status(&m.addr, Some(left))))
            .collect();
        asks.into_iter()
            .map(|a| a.join().unwrap_or_else(|_| Err(anyhow!("asking it failed"))))
            .collect()
    });
    let mut applied = Vec::new();
    let mut behind = Vec::new();
    for (m, answer) in members.iter().zip(answers) {
        match answer {
            Ok(s) if s.version >= version => applied.push(m.name.clone()),
            Ok(s) => behind.push(format!("{} (at version {})", m.name, s.version)),
            Err(e) => behind.push(format!("{} ({e:#})", m.name)),
        }
    }
    let took = start.elapsed().as_millis();
    if behind.is_empty() {
        println!(
            "applied: version {version} on {} in {took} ms",
            applied.join(", ")
        );
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "hactl: version {version} not applied within {} s on: {}{}",
            limit.as_secs(),
            behind.join(", "),
            if applied.is_empty() {
                String::new()
            } else {
                format!(" (applied on {})", applied.join(", "))
            }
        );
        Ok(ExitCode::from(3))
    }
}

/// The line scripts and tests read: `committed: version N hash H (...)`.
fn print_committed(ep: &str, r: &ProposeResponse) {
    println!(
        "committed: version {} hash {} (log index {}, via {ep}){}",
        r.version,
        r.hash,
        r.log_index,
        if r.duplicate {
            " [already committed by an earlier try]"
        } else {
            ""
        }
    );
}

/// `hactl propose --patch FILE`: the leader applies the patch's blocks and `delete` lines
/// to the committed configuration, validates the result and commits the change.
pub fn propose_patch(remote: &Remote, a: ProposeArgs<'_>) -> Result<ExitCode> {
    let (parsed, files) = bundle::parse_file_recorded(a.file);
    for d in parsed.diags.iter() {
        eprintln!("{}", d.render(&parsed.sources));
    }
    if parsed.diags.has_errors() {
        eprintln!("hactl: {} has errors; nothing was proposed", a.file.display());
        return Ok(ExitCode::from(1));
    }
    let req = ProposeRequest {
        main: a.file.to_string_lossy().into_owned(),
        files,
        hash: String::new(),
        author: a.author.to_string(),
        reason: a.reason.to_string(),
        base_version: a.base_version,
        proposal_id: random_id(),
        client_time_ms: now_ms(),
        patch: true,
        dry_run: a.dry_run,
    };
    let body = serde_json::to_vec(&req)?;
    match remote.call::<ProposeResponse>(Method::POST, "/v1/proposals", Some(body), WRITE_PATIENCE)? {
        (ep, Answer::Ok(r)) => {
            for w in &r.warnings {
                eprintln!("{w}");
            }
            if r.dry_run {
                println!("against version {}:", r.version);
            }
            if r.changes.is_empty() {
                println!("  no change");
            }
            for line in semdiff::listing(&r.changes, LISTED_CHANGES, a.full) {
                println!("  {line}");
            }
            if r.dry_run {
                println!(
                    "dry run: nothing committed (the result would hash to {})",
                    short(&r.hash)
                );
                Ok(ExitCode::SUCCESS)
            } else {
                print_committed(&ep, &r);
                wait_applied(remote, &ep, r.version, a.wait)
            }
        }
        (_, Answer::Refused(r)) if r.error.kind == "no_change" => {
            println!("  no change\n{}", r.error.message);
            Ok(ExitCode::SUCCESS)
        }
        (_, Answer::Refused(r)) => Ok(refused(&r)),
    }
}

/// The committed configuration's part that a proposal changes, and the proposal's.
struct Compared {
    version: u64,
    hash: String,
    theirs: ClusterConfig,
    ours: ClusterConfig,
    /// The committed slots and the file's in the buckets that differ (read through the tree).
    slots: Option<(BTreeMap<Key, Slot>, BTreeMap<Key, Slot>)>,
}

/// Compares `mine` with the committed configuration through its hash tree: only the
/// buckets that differ are read (O(change)); the whole configuration is read when many
/// differ, when the cluster has none yet, or from a director without the tree.
fn against_committed(
    remote: &Remote,
    mine: &KeyedCluster,
    whole: &ClusterConfig,
) -> Result<std::result::Result<Compared, ExitCode>> {
    for _ in 0..3 {
        let tree: ConfigTree = match remote.call(Method::GET, "/v1/config/tree", None, READ_PATIENCE)? {
            (_, Answer::Ok(t)) => t,
            (_, Answer::Refused(r)) if r.status == hyper::StatusCode::NOT_FOUND => break,
            (_, Answer::Refused(r)) => return Ok(Err(refused(&r))),
        };
        let differing = mine.differing_buckets(&tree.buckets);
        if tree.version == 0 || differing.len() > MAX_SLOT_BUCKETS {
            break;
        }
        let list: Vec<String> = differing.iter().map(|b| b.to_string()).collect();
        let path = format!(
            "/v1/config/slots?version={}&buckets={}",
            tree.version,
            list.join(",")
        );
        match remote.call::<ConfigSlots>(Method::GET, &path, None, READ_PATIENCE)? {
            (_, Answer::Ok(s)) => {
                let theirs: BTreeMap<Key, Slot> = s.slots.into_iter().collect();
                let ours: BTreeMap<Key, Slot> = mine.bucket_slots(&differing).into_iter().collect();
                return Ok(Ok(Compared {
                    version: s.version,
                    hash: s.hash,
                    theirs: keyed::cluster_of(&theirs),
                    ours: keyed::cluster_of(&ours),
                    slots: Some((theirs, ours)),
                }));
            }
            // Another proposal committed in between: read the tree again.
            (_, Answer::Refused(r)) if r.error.kind == "conflict" => continue,
            (_, Answer::Refused(r)) => return Ok(Err(refused(&r))),
        }
    }
    match remote.call::<ConfigResponse>(Method::GET, "/v1/config", None, READ_PATIENCE)? {
        (_, Answer::Ok(c)) => Ok(Ok(Compared {
            version: c.version,
            hash: c.hash,
            theirs: c.config,
            ours: whole.clone(),
            slots: None,
        })),
        (_, Answer::Refused(r)) => Ok(Err(refused(&r))),
    }
}

fn short(hash: &str) -> &str {
    if hash.is_empty() {
        "empty"
    } else {
        &hash[..hash.len().min(12)]
    }
}

pub fn config_show(remote: &Remote, version: Option<u64>, format: Format) -> Result<ExitCode> {
    let path = match version {
        Some(v) => format!("/v1/config?version={v}"),
        None => "/v1/config".into(),
    };
    match remote.call::<ConfigResponse>(Method::GET, &path, None, READ_PATIENCE)? {
        (_, Answer::Ok(c)) => {
            match format {
                Format::Text => {
                    println!("# version {} hash {}", c.version, c.hash);
                    print!("{}", c.text);
                }
                Format::Json => println!("{}", serde_json::to_string_pretty(&c)?),
            }
            Ok(ExitCode::SUCCESS)
        }
        (_, Answer::Refused(r)) => Ok(refused(&r)),
    }
}

pub fn status(remote: &Remote, format: Format) -> Result<ExitCode> {
    // Every endpoint given, plus every member any of them knows.
    let mut targets: Vec<String> = remote.endpoints.clone();
    let mut rows: Vec<(String, Result<StatusResponse, String>)> = Vec::new();
    let mut i = 0;
    while i < targets.len() {
        let ep = targets[i].clone();
        i += 1;
        let r = remote
            .send_to(&ep, Method::GET, "/v1/status", None, Duration::from_secs(3))
            .and_then(|(s, b)| {
                if s.is_success() {
                    serde_json::from_slice::<StatusResponse>(&b).map_err(|e| anyhow!("{e}"))
                } else {
                    Err(anyhow!("{s}"))
                }
            });
        match r {
            Ok(st) => {
                for m in &st.members {
                    if !targets.contains(&m.addr) {
                        targets.push(m.addr.clone());
                    }
                }
                rows.push((ep, Ok(st)));
            }
            Err(e) => rows.push((ep, Err(e.to_string()))),
        }
    }
    if format == Format::Json {
        let v: Vec<serde_json::Value> = rows
            .iter()
            .map(|(ep, r)| match r {
                Ok(s) => serde_json::json!({"endpoint": ep, "status": s}),
                Err(e) => serde_json::json!({"endpoint": ep, "error": e}),
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    let leader_applied = rows
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok())
        .find(|s| s.role == "leader")
        .and_then(|s| s.applied_index);
    println!(
        "{:<12} {:<22} {:<10} {:>5} {:<12} {:>8} {:>8} {:<12} {:>5}",
        "NAME", "ADDRESS", "ROLE", "TERM", "LEADER", "APPLIED", "VERSION", "HASH", "LAG"
    );
    let mut all_ok = true;
    for (ep, r) in &rows {
        match r {
            Ok(s) => {
                let lag = match (leader_applied, s.applied_index) {
                    (Some(l), Some(a)) => l.saturating_sub(a).to_string(),
                    _ => "-".into(),
                };
                println!(
                    "{:<12} {:<22} {:<10} {:>5} {:<12} {:>8} {:>8} {:<12} {:>5}",
                    s.name,
                    ep,
                    s.role,
                    s.term,
                    s.leader.as_deref().unwrap_or("-"),
                    s.applied_index
                        .map(|i| i.to_string())
                        .unwrap_or_else(|| "-".into()),
                    s.version,
                    short(&s.hash),
                    lag
                );
            }
            Err(e) => {
                all_ok = false;
                println!("{:<12} {:<22} unreachable: {e}", "?", ep);
            }
        }
    }
    println!();
    for s in rows.iter().filter_map(|(_, r)| r.as_ref().ok()) {
        if let Some(cause) = &s.store_failure {
            all_ok = false;
            println!(
                "{}: STORE FAILED, raft stopped there until it takes writes again: {cause}",
                s.name
            );
        }
    }
    for s in rows.iter().filter_map(|(_, r)| r.as_ref().ok()) {
        if let Some(sec) = &s.security {
            println!("{}: {}", s.name, security_line(sec));
        }
    }
    for s in rows.iter().filter_map(|(_, r)| r.as_ref().ok()) {
        if let Some(rt) = &s.runtime {
            print_runtime(&s.name, s.version, &s.hash, rt);
        }
    }
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}

/// How a director's API is protected, in one line.
pub fn security_line(sec: &ha_config::api::SecurityStatus) -> String {
    let mut line = if sec.tls {
        format!(
            "mutual TLS, certificate {}",
            sec.cert_fingerprint.as_deref().map(short).unwrap_or("-")
        )
    } else if sec.insecure {
        "INSECURE: plain HTTP on a non-loopback address (--insecure)".to_string()
    } else {
        "plain HTTP on loopback".to_string()
    };
    if sec.cert_reloads > 0 {
        line += &format!(" ({} rotation(s) picked up)", sec.cert_reloads);
    }
    line += if sec.authentication_required {
        ", authentication required"
    } else {
        ", no authentication"
    };
    if sec.tokens > 0 {
        line += &format!(" ({} token(s))", sec.tokens);
    }
    if let Some(e) = &sec.tls_error {
        line += &format!("; TLS files changed but unusable: {e}");
    }
    if let Some(e) = &sec.tokens_error {
        line += &format!("; tokens file unusable (old tokens kept): {e}");
    }
    line
}

fn print_runtime(name: &str, version: u64, hash: &str, rt: &ha_config::api::RuntimeStatus) {
    println!();
    let dp = &rt.dataplane;
    let applied = dp
        .applied_version
        .map(|v| v.to_string())
        .unwrap_or_else(|| "-".into());
    println!(
        "{name}: config version {version} ({}), data plane {} at version {applied}{}, fence {}, quorum gate {}",
        short(hash),
        if dp.backend.is_empty() { "-" } else { &dp.backend },
        if dp.in_sync {
            " (in sync)"
        } else {
            " (not in sync)"
        },
        rt.fence,
        if rt.quorum_gate.is_empty() {
            "-"
        } else {
            &rt.quorum_gate
        }
    );
    for (op, e) in &dp.gaps {
        println!("  kernel refused: {op}: {e}");
    }
    for e in &rt.errors {
        println!("  error: {e}");
    }
    for i in &rt.instances {
        println!(
            "  vrrp {:<16} {:<7} priority {:>3}{}",
            i.name,
            i.state,
            i.priority,
            if i.held_by_fence {
                "  (claim held by the config fence)"
            } else {
                ""
            }
        );
    }
    for p in &rt.peers {
        println!(
            "  peer {:<16} {:<12} since {} (transport {}){}",
            p.name,
            p.liveness,
            fmt_time(p.since_ms),
            p.addr,
            if p.fast_takeovers > 0 {
                format!(", {} fast takeover(s) from it", p.fast_takeovers)
            } else {
                String::new()
            }
        );
    }
    for svc in &rt.services {
        let up = svc.real_servers.iter().filter(|r| r.up).count();
        println!(
            "  virtual server {}: {up}/{} real servers up{}",
            svc.name,
            svc.real_servers.len(),
            if svc.quorum_up { "" } else { ", QUORUM LOST" }
        );
        for r in &svc.real_servers {
            println!(
                "    {:<24} {:<5} {}",
                r.name,
                if r.up { "UP" } else { "DOWN" },
                r.reason
            );
        }
    }
}

/// `hactl verify`: each director's history chain, then the chains against each other.
pub fn verify(remote: &Remote, format: Format) -> Result<ExitCode> {
    use ha_config::api::{HistoryItem, MembersResponse, VerifyResponse};
    let (_, a): (String, Answer<MembersResponse>) =
        remote.call(Method::GET, "/v1/members", None, Duration::from_secs(10))?;
    let members = match a {
        Answer::Ok(m) => m.members,
        Answer::Refused(r) => return Err(anyhow!("{}: {}", r.endpoint, r.error.message)),
    };
    let mut results: Vec<(String, String, Result<VerifyResponse, String>)> = Vec::new();
    for m in &members {
        let r = remote
            .send_to(&m.addr, Method::GET, "/v1/verify", None, Duration::from_secs(60))
            .map_err(|e| format!("cannot ask it: {e}"))
            .and_then(|(status, body)| {
                if status.is_success() {
                    serde_json::from_slice::<VerifyResponse>(&body).map_err(|e| format!("bad answer: {e}"))
                } else {
                    Err(format!("answered {status}"))
                }
            });
        results.push((m.name.clone(), m.addr.clone(), r));
    }
    let mut problems: Vec<String> = Vec::new();
    for (name, _, r) in &results {
        match r {
            Err(e) => problems.push(format!("{name}: not verified ({e})")),
            Ok(v) if !v.ok => {
                let b = v.first_bad.as_ref();
                problems.push(format!(
                    "{name}: history broken at entry {}{}: {}",
                    b.map(|b| b.seq).unwrap_or(0),
                    b.and_then(|b| b.version)
                        .map(|v| format!(" (config version {v})"))
                        .unwrap_or_default(),
                    b.map(|b| b.reason.as_str()).unwrap_or("")
                ));
            }
            Ok(_) => {}
        }
    }
    // Good chains must agree: the longest ones have one head; a shorter one (a director
    // catching up) must end on the entry the longest chain has at its length.
    let good: Vec<(&String, &String, &VerifyResponse)> = results
        .iter()
        .filter_map(|(n, a, r)| r.as_ref().ok().filter(|v| v.ok).map(|v| (n, a, v)))
        .collect();
    if let Some(longest) = good.iter().max_by_key(|(_, _, v)| v.entries) {
        for (name, _, v) in &good {
            if v.entries == longest.2.entries {
                if v.head != longest.2.head {
                    problems.push(format!(
                        "{name}: its chain ends on {} but {}'s ends on {} at the same length {}",
                        short(&v.head),
                        longest.0,
                        short(&longest.2.head),
                        v.entries
                    ));
                }
            } else if v.entries > 0 {
                let path = format!("/v1/history?from={}&to={}", v.entries, v.entries);
                let theirs = remote
                    .send_to(longest.1, Method::GET, &path, None, Duration::from_secs(30))
                    .ok()
                    .and_then(|(_, body)| serde_json::from_slice::<Vec<HistoryItem>>(&body).ok())
                    .and_then(|h| h.into_iter().next());
                match theirs {
                    Some(h) if h.entry_hash == v.head => {}
                    Some(h) => problems.push(format!(
                        "{name}: entry {} is {} there but {} on {}",
                        v.entries,
                        short(&v.head),
                        short(&h.entry_hash),
                        longest.0
                    )),
                    None => problems.push(format!("{name}: could not compare with {}", longest.0)),
                }
            }
        }
    }
    if format == Format::Json {
        let rows: Vec<serde_json::Value> = results
            .iter()
            .map(|(n, a, r)| match r {
                Ok(v) => serde_json::json!({"node": n, "addr": a, "result": v}),
                Err(e) => serde_json::json!({"node": n, "addr": a, "error": e}),
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"ok": problems.is_empty(), "nodes": rows, "problems": problems})
            )?
        );
    } else {
        for (name, _, r) in &results {
            match r {
                Ok(v) if v.ok => println!(
                    "{name:<16} ok       {} entries, config version {}, head {}",
                    v.entries,
                    v.version,
                    short(&v.head)
                ),
                Ok(_) => println!("{name:<16} BROKEN"),
                Err(e) => println!("{name:<16} UNKNOWN  {e}"),
            }
        }
        if problems.is_empty() {
            println!(
                "history verified on {} directors: every chain holds and they agree",
                results.len()
            );
        } else {
            for p in &problems {
                println!("FAIL {p}");
            }
        }
    }
    Ok(if problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(5)
    })
}

/// `hactl table`: the kernel table of one director (or each), `ipvsadm -Ln` layout.
/// The admin endpoint of director `node` (from the membership), or the first --cluster
/// endpoint.
pub fn node_endpoint(remote: &Remote, node: Option<&str>) -> Result<String> {
    let Some(n) = node else {
        return remote
            .endpoints
            .first()
            .cloned()
            .ok_or_else(|| anyhow!("no --cluster endpoint"));
    };
    let (_, a): (String, Answer<ha_config::api::MembersResponse>) =
        remote.call(Method::GET, "/v1/members", None, Duration::from_secs(10))?;
    let members = match a {
        Answer::Ok(m) => m.members,
        Answer::Refused(r) => return Err(anyhow!("{}: {}", r.endpoint, r.error.message)),
    };
    members
        .iter()
        .find(|m| m.name == n)
        .map(|m| m.addr.clone())
        .ok_or_else(|| anyhow!("no director named {n:?} in the cluster"))
}

pub fn table(remote: &Remote, node: Option<&str>, format: Format) -> Result<ExitCode> {
    let targets = vec![node_endpoint(remote, node)?];
    let mut all_equal = true;
    for ep in targets {
        let (status, body) = remote.send_to(&ep, Method::GET, "/v1/table", None, Duration::from_secs(30))?;
        if !status.is_success() {
            let msg = serde_json::from_slice::<ha_config::api::ErrorBody>(&body)
                .map(|b| b.error.message)
                .unwrap_or_else(|_| String::from_utf8_lossy(&body).into_owned());
            return Err(anyhow!("{ep}: {msg}"));
        }
        let t: ha_config::api::TableResponse = serde_json::from_slice(&body)?;
        if format == Format::Json {
            println!("{}", serde_json::to_string_pretty(&t)?);
        } else {
            println!(
                "{} ({} backend, table at config version {}):",
                t.name,
                t.backend,
                t.applied_version
                    .map(|v| v.to_string())
                    .unwrap_or_else(|| "-".into())
            );
            print!("{}", t.kernel);
            if t.differences.is_empty() {
                println!("(equal to the desired table)");
            } else {
                println!("differences from the desired table (what a sync would do):");
                for d in &t.differences {
                    println!("  {d}");
                }
            }
        }
        all_equal &= t.differences.is_empty();
    }
    Ok(if all_equal {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(4)
    })
}

/// `hactl events`: every director's runtime events merged with the committed config
/// history, by time; `--follow` keeps printing new ones.
pub fn events(remote: &Remote, node: Option<&str>, follow: bool, format: Format) -> Result<ExitCode> {
    use ha_config::api::EventItem;
    let members = match remote.call::<MembersResponse>(Method::GET, "/v1/members", None, READ_PATIENCE)? {
        (_, Answer::Ok(m)) => m.members,
        (_, Answer::Refused(r)) => return Ok(refused(&r)),
    };
    let targets: Vec<(String, String)> = members
        .iter()
        .filter(|m| node.map(|n| n == m.name).unwrap_or(true))
        .map(|m| (m.name.clone(), m.addr.clone()))
        .collect();
    if let Some(n) = node {
        if targets.is_empty() {
            return Err(anyhow!("no director named {n:?} in the cluster"));
        }
    }
    let mut next_event: BTreeMap<String, u64> = BTreeMap::new();
    let mut next_history = 1u64;
    if format == Format::Text {
        println!(
            "{:<24} {:<10} {:<7} {:<40} SUMMARY",
            "TIME (UTC)", "NODE", "KIND", "SUBJECT"
        );
    }
    loop {
        // (at_ms, node, kind, subject, summary)
        let mut rows: Vec<(u64, String, String, String, String)> = Vec::new();
        for (name, addr) in &targets {
            let from = *next_event.get(name).unwrap_or(&1);
            let path = format!("/v1/events?from={from}&limit=1000");
            match remote.send_to(addr, Method::GET, &path, None, Duration::from_secs(5)) {
                Ok((st, body)) if st.is_success() => {
                    let items: Vec<EventItem> = serde_json::from_slice(&body)?;
                    if let Some(last) = items.last() {
                        next_event.insert(name.clone(), last.seq + 1);
                    }
                    rows.extend(
                        items
                            .into_iter()
                            .map(|e| (e.at_ms, e.node, e.kind, e.subject, e.summary)),
                    );
                }
                Ok((st, _)) => eprintln!("{name} ({addr}): {st}"),
                Err(e) => eprintln!("{name} ({addr}): {e}"),
            }
        }
        if node.is_none() || !follow {
            let path = format!("/v1/history?from={next_history}&limit=1000");
            if let (_, Answer::Ok(page)) =
                remote.call::<Vec<HistoryItem>>(Method::GET, &path, None, READ_PATIENCE)?
            {
                if let Some(last) = page.last() {
                    next_history = last.seq + 1;
                }
                rows.extend(page.into_iter().map(|h| {
                    let subject = format!("version {} by {}", h.version, h.author);
                    let summary = if h.reason.is_empty() {
                        h.summary
                    } else {
                        format!("{} ({})", h.summary, h.reason)
                    };
                    (h.at_ms, "cluster".to_string(), h.kind, subject, summary)
                }));
            }
        }
        rows.sort_by_key(|r| r.0);
        for (at, node, kind, subject, summary) in rows {
            match format {
                Format::Json => println!(
                    "{}",
                    serde_json::json!({"at_ms": at, "node": node, "kind": kind, "subject": subject, "summary": summary})
                ),
                Format::Text => println!(
                    "{:<24} {:<10} {:<7} {:<40} {}",
                    format!("{}.{:03}Z", fmt_time(at).trim_end_matches('Z'), at % 1000),
                    node,
                    kind,
                    subject,
                    summary
                ),
            }
        }
        if !follow {
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

pub(crate) fn fmt_time(ms: u64) -> String {
    if ms == 0 {
        return "-".into();
    }
    let secs = ms / 1000;
    let rem = secs % 86_400;
    let (y, m, d) = ha_config::time::civil_from_days((secs / 86_400) as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

fn print_members(m: &MembersResponse) {
    for x in &m.members {
        println!("{:<12} {:<22} {}", x.name, x.addr, x.role);
    }
}

pub fn cluster_add(remote: &Remote, name: &str, addr: &str, author: &str, reason: &str) -> Result<ExitCode> {
    let body = serde_json::to_vec(&AddMemberRequest {
        name: name.into(),
        addr: addr.into(),
        author: author.into(),
        reason: reason.into(),
    })?;
    match remote.call::<MembersResponse>(Method::POST, "/v1/members", Some(body), Duration::from_secs(90))? {
        (_, Answer::Ok(m)) => {
            print_members(&m);
            Ok(ExitCode::SUCCESS)
        }
        (_, Answer::Refused(r)) => Ok(refused(&r)),
    }
}

fn query_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub fn cluster_remove(remote: &Remote, name: &str, author: &str, reason: &str) -> Result<ExitCode> {
    let path = format!(
        "/v1/members/{}?author={}&reason={}",
        query_escape(name),
        query_escape(author),
        query_escape(reason)
    );
    // Unknown names are refused before anything is sent, so a 404 on the DELETE below can
    // only mean the director left meanwhile (for instance by an earlier try of ours).
    let before: MembersResponse = match remote.call(Method::GET, "/v1/members", None, READ_PATIENCE)? {
        (_, Answer::Ok(m)) => m,
        (_, Answer::Refused(r)) => return Ok(refused(&r)),
    };
    if !before.members.iter().any(|m| m.name == name) {
        let names: Vec<&str> = before.members.iter().map(|m| m.name.as_str()).collect();
        eprintln!(
            "hactl: no director named {name:?} in the cluster (members: {})",
            names.join(", ")
        );
        return Ok(ExitCode::from(1));
    }
    match remote.call::<MembersResponse>(Method::DELETE, &path, None, WRITE_PATIENCE)? {
        (_, Answer::Ok(m)) => {
            print_members(&m);
            Ok(ExitCode::SUCCESS)
        }
        (_, Answer::Refused(r)) if r.status == hyper::StatusCode::NOT_FOUND => {
            println!("{name} is no longer a member");
            Ok(ExitCode::SUCCESS)
        }
        (_, Answer::Refused(r)) => Ok(refused(&r)),
    }
}

pub fn cluster_members(remote: &Remote) -> Result<ExitCode> {
    match remote.call::<MembersResponse>(Method::GET, "/v1/members", None, READ_PATIENCE)? {
        (_, Answer::Ok(m)) => {
            print_members(&m);
            Ok(ExitCode::SUCCESS)
        }
        (_, Answer::Refused(r)) => Ok(refused(&r)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_utc_iso8601() {
        assert_eq!(fmt_time(0), "-");
        assert_eq!(fmt_time(1_700_000_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(fmt_time(951_782_400_000), "2000-02-29T00:00:00Z");
    }
}

//! Running external programs the way keepalived does, without a shell: the command line is
//! split into argv (quotes and backslashes honoured), run as the configured user, and
//! killed (its whole process group) at its timeout.
//!
//! Before a program runs, it must exist here and be executable; with keepalived's
//! `enable_script_security` it must also not be writable, nor sit in a directory
//! writable, by anyone but root (or the user it runs as): otherwise whoever can write it
//! runs code as that user. [`vet_config`] checks every script a configuration names when
//! a director applies it, so a director missing a script, or with an unsafe one, says so.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Whether `enable_script_security` is in force for this director's scripts (set from
/// the applied configuration's `global_defs`, see [`set_security`]).
static SCRIPT_SECURITY: AtomicBool = AtomicBool::new(false);

/// Turns `enable_script_security` on or off for every script run from now on.
pub fn set_security(enabled: bool) {
    SCRIPT_SECURITY.store(enabled, Ordering::SeqCst);
}

pub fn security_enabled() -> bool {
    SCRIPT_SECURITY.load(Ordering::SeqCst)
}

/// The program `argv[0]` names: itself when it has a `/`, else the first executable of
/// that name on `PATH`.
pub fn resolve_program(prog: &str) -> Result<PathBuf, String> {
    if prog.contains('/') {
        return Ok(PathBuf::from(prog));
    }
    let path = std::env::var("PATH")
        .unwrap_or_else(|_| "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    // As execvp would, but never from a relative (or empty: the current) directory.
    path.split(':')
        .filter(|d| d.starts_with('/'))
        .map(|d| Path::new(d).join(prog))
        .find(|p| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
        .ok_or_else(|| format!("{prog}: not found on PATH"))
}

/// Whether `who` (None: root) may write a file or directory with this metadata.
fn writable_by_others(m: &std::fs::Metadata, run_as: Option<RunAs>, is_dir: bool) -> Option<String> {
    let mode = m.permissions().mode();
    let allowed_uid = |uid: u32| uid == 0 || run_as.is_some_and(|u| u.uid == uid);
    let allowed_gid = |gid: u32| gid == 0 || run_as.is_some_and(|u| u.gid == gid);
    if !allowed_uid(m.uid()) {
        return Some(format!("owned by uid {}", m.uid()));
    }
    if mode & 0o020 != 0 && !allowed_gid(m.gid()) {
        return Some(format!(
            "writable by group {} (mode {:04o})",
            m.gid(),
            mode & 0o7777
        ));
    }
    // A sticky directory (like /tmp) lets others add files, not replace ours.
    if mode & 0o002 != 0 && !(is_dir && mode & 0o1000 != 0) {
        return Some(format!("writable by everyone (mode {:04o})", mode & 0o7777));
    }
    None
}

/// Whether `argv` may run as `run_as` here: the program exists and is executable, and
/// under script security nobody but root (or `run_as`) can change it, its directories,
/// or a symbolic link on the way to it. Returns the program to execute (the file
/// checked). Only the program is checked: an interpreter's script argument
/// (`/bin/sh /x.sh`) is not.
pub fn vet(argv: &[String], run_as: Option<RunAs>, secure: bool) -> Result<PathBuf, String> {
    let prog = argv.first().ok_or("empty command")?;
    let path = resolve_program(prog)?;
    let m = std::fs::metadata(&path).map_err(|e| format!("{}: {e} on this director", path.display()))?;
    if !m.is_file() {
        return Err(format!("{}: not a regular file", path.display()));
    }
    if m.permissions().mode() & 0o111 == 0 {
        return Err(format!(
            "{}: not executable (mode {:04o})",
            path.display(),
            m.permissions().mode() & 0o7777
        ));
    }
    if !secure {
        return Ok(path);
    }
    let real = std::fs::canonicalize(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let refuse = |what: String, why: String| {
        format!(
            "{}: refused under enable_script_security: {what} is {why}, so others could change what runs{}",
            path.display(),
            if run_as.is_none() { " as root" } else { "" }
        )
    };
    // The path as written (a link counts by its owner: its mode means nothing), then
    // the file it resolves to and that file's directories.
    for p in path.ancestors().filter(|p| !p.as_os_str().is_empty()) {
        let lm = std::fs::symlink_metadata(p).map_err(|e| format!("{}: {e}", p.display()))?;
        let why = if lm.file_type().is_symlink() {
            let owner_ok = lm.uid() == 0 || run_as.is_some_and(|u| u.uid == lm.uid());
            (!owner_ok).then(|| format!("a link owned by uid {}", lm.uid()))
        } else {
            writable_by_others(&lm, run_as, lm.is_dir())
        };
        if let Some(why) = why {
            let what = if p == path {
                "the script".to_string()
            } else {
                format!("{} on its path", p.display())
            };
            return Err(refuse(what, why));
        }
    }
    let mut cur: Option<&Path> = Some(&real);
    while let Some(p) = cur {
        let pm = std::fs::metadata(p).map_err(|e| format!("{}: {e}", p.display()))?;
        if let Some(why) = writable_by_others(&pm, run_as, pm.is_dir()) {
            let what = if p == real {
                "the script".to_string()
            } else {
                format!("its directory {}", p.display())
            };
            return Err(refuse(what, why));
        }
        cur = p.parent();
    }
    Ok(real)
}

/// One script a configuration names, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScriptUse {
    /// E.g. `vrrp_instance VI_1 notify_master`.
    pub place: String,
    pub cmd: String,
    pub user: Option<ha_config::model::ScriptUser>,
}

/// Every script `config` would run (notify, track and MISC_CHECK).
pub fn scripts_of(config: &ha_config::model::Config) -> Vec<ScriptUse> {
    let mut out = Vec::new();
    for i in &config.instances {
        notify_scripts(&mut out, &format!("vrrp_instance {}", i.name), &i.notify);
    }
    for g in &config.sync_groups {
        notify_scripts(&mut out, &format!("vrrp_sync_group {}", g.name), &g.notify);
    }
    for s in &config.vrrp_scripts {
        track_script(&mut out, s);
    }
    for vs in &config.virtual_servers {
        vs_scripts(&mut out, vs);
    }
    out
}

/// Every script one configuration item would run.
pub fn scripts_of_item(item: &ha_config::keyed::Item) -> Vec<ScriptUse> {
    use ha_config::keyed::Item;
    let mut out = Vec::new();
    match item {
        Item::Instance(i) => notify_scripts(&mut out, &format!("vrrp_instance {}", i.name), &i.notify),
        Item::SyncGroup(g) => notify_scripts(&mut out, &format!("vrrp_sync_group {}", g.name), &g.notify),
        Item::Script(s) => track_script(&mut out, s),
        Item::VirtualServer(vs) => vs_scripts(&mut out, vs),
        Item::Global { .. } | Item::VsGroup(_) | Item::TrackFile(_) | Item::TrackProcess(_) => {}
    }
    out
}

fn add_script(
    out: &mut Vec<ScriptUse>,
    place: impl FnOnce() -> String,
    s: &Option<ha_config::model::Script>,
) {
    if let Some(s) = s {
        out.push(ScriptUse {
            place: place(),
            cmd: s.cmd.clone(),
            user: s.user.clone(),
        });
    }
}

fn notify_scripts(out: &mut Vec<ScriptUse>, what: &str, n: &ha_config::model::Notify) {
    add_script(out, || format!("{what} notify_master"), &n.master);
    add_script(out, || format!("{what} notify_backup"), &n.backup);
    add_script(out, || format!("{what} notify_fault"), &n.fault);
    add_script(out, || format!("{what} notify_stop"), &n.stop);
    add_script(out, || format!("{what} notify"), &n.any);
}

fn track_script(out: &mut Vec<ScriptUse>, s: &ha_config::model::VrrpScript) {
    out.push(ScriptUse {
        place: format!("vrrp_script {}", s.name),
        cmd: s.script.clone(),
        user: s.user.clone(),
    });
}

/// A virtual server's quorum and notify scripts and MISC_CHECKs (its name is formatted
/// only when it has one).
fn vs_scripts(out: &mut Vec<ScriptUse>, vs: &ha_config::model::VirtualServer) {
    let name = || format!("virtual_server {}", vs.key);
    add_script(out, || format!("{} quorum_up", name()), &vs.quorum_up);
    add_script(out, || format!("{} quorum_down", name()), &vs.quorum_down);
    for rs in &vs.real_servers {
        let rname = || format!("{} real_server {}", name(), rs_label(rs));
        add_script(out, || format!("{} notify_up", rname()), &rs.notify_up);
        add_script(out, || format!("{} notify_down", rname()), &rs.notify_down);
        for c in &rs.checkers {
            if let ha_config::model::CheckKind::Misc(m) = &c.kind {
                out.push(ScriptUse {
                    place: format!("{} MISC_CHECK", rname()),
                    cmd: m.misc_path.clone(),
                    user: m.user.clone(),
                });
            }
        }
    }
}

fn rs_label(rs: &ha_config::model::RealServer) -> String {
    match (rs.ip, rs.port) {
        (std::net::IpAddr::V6(ip), Some(p)) => format!("[{ip}]:{p}"),
        (ip, Some(p)) => format!("{ip}:{p}"),
        (ip, None) => ip.to_string(),
    }
}

/// What is wrong with the scripts `config` names on this director: `PLACE: PROBLEM`, one
/// per script that could not run (missing, not executable, its user unknown, or unsafe
/// under `enable_script_security`).
pub fn vet_config(config: &ha_config::model::Config) -> Vec<String> {
    vet_uses(&config.global, scripts_of(config))
}

/// As [`vet_config`], for the scripts `uses` under global settings `global`.
pub fn vet_uses(global: &ha_config::model::GlobalDefs, uses: Vec<ScriptUse>) -> Vec<String> {
    if uses.is_empty() {
        return Vec::new();
    }
    let secure = global.enable_script_security;
    let default = default_user(global);
    uses.into_iter()
        .filter_map(|u| {
            let argv = match split_argv(&u.cmd) {
                Ok(a) => a,
                Err(e) => return Some(format!("{}: {e}", u.place)),
            };
            let run_as = match &u.user {
                Some(su) => lookup_user(&su.user, su.group.as_deref()).map(Some),
                None => default.clone(),
            };
            let run_as = match run_as {
                Ok(r) => r,
                Err(e) => return Some(format!("{}: script user: {e}", u.place)),
            };
            vet(&argv, run_as, secure)
                .err()
                .map(|e| format!("{}: {e}", u.place))
        })
        .collect()
}

/// Splits a keepalived command line into argv: whitespace separates words; `'...'` is
/// literal; `"..."` allows `\"` and `\\`; a backslash outside quotes escapes the next char.
pub fn split_argv(cmd: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = cmd.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(x) => cur.push(x),
                        None => return Err(format!("unterminated ' in {cmd:?}")),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(x @ ('"' | '\\')) => cur.push(x),
                            Some(x) => {
                                cur.push('\\');
                                cur.push(x);
                            }
                            None => return Err(format!("unterminated \" in {cmd:?}")),
                        },
                        Some(x) => cur.push(x),
                        None => return Err(format!("unterminated \" in {cmd:?}")),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(x) = chars.next() {
                    cur.push(x);
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    if out.is_empty() {
        return Err("empty command".into());
    }
    Ok(out)
}

/// A user (and group) to run as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunAs {
    pub uid: u32,
    pub gid: u32,
}

/// Looks up `user` (and `group`, default: the user's primary group).
pub fn lookup_user(user: &str, group: Option<&str>) -> Result<RunAs, String> {
    let cuser = std::ffi::CString::new(user).map_err(|_| format!("bad user name {user:?}"))?;
    // SAFETY: getpwnam returns a pointer to static storage or null; we copy out at once.
    let (uid, mut gid) = unsafe {
        let pw = libc::getpwnam(cuser.as_ptr());
        if pw.is_null() {
            return Err(format!("no user {user:?}"));
        }
        ((*pw).pw_uid, (*pw).pw_gid)
    };
    if let Some(g) = group {
        let cg = std::ffi::CString::new(g).map_err(|_| format!("bad group name {g:?}"))?;
        // SAFETY: as above, for getgrnam.
        unsafe {
            let gr = libc::getgrnam(cg.as_ptr());
            if gr.is_null() {
                return Err(format!("no group {g:?}"));
            }
            gid = (*gr).gr_gid;
        }
    }
    Ok(RunAs { uid, gid })
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Exit status 0.
    Success,
    /// Exited with this status.
    Failed(i32),
    /// Killed by this signal (not by us).
    Signaled(i32),
    /// Still running at its timeout; its process group was killed.
    TimedOut,
    /// Could not be started.
    NotStarted(String),
}

impl Outcome {
    pub fn success(&self) -> bool {
        matches!(self, Outcome::Success)
    }
}

/// Runs `argv` (as `run_as`), waiting at most `timeout`; refused (not started) when
/// [`vet`] refuses it.
pub async fn run(argv: &[String], run_as: Option<RunAs>, timeout: Duration) -> Outcome {
    let Some((prog, args)) = argv.split_first() else {
        return Outcome::NotStarted("empty command".into());
    };
    // The program run is the file checked (no second PATH lookup or link resolution).
    let program = match vet(argv, run_as, security_enabled()) {
        Ok(p) => p,
        Err(e) => return Outcome::NotStarted(e),
    };
    let mut cmd = tokio::process::Command::new(&program);
    cmd.arg0(prog);
    cmd.args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            // Own process group, so a timeout kills the script and its children.
            if libc::setpgid(0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if let Some(u) = run_as {
                if libc::setgroups(0, std::ptr::null()) != 0
                    || libc::setgid(u.gid) != 0
                    || libc::setuid(u.uid) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return Outcome::NotStarted(format!("{prog}: {e}")),
    };
    let pid = child.id();
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) => {
            use std::os::unix::process::ExitStatusExt;
            match (status.code(), status.signal()) {
                (Some(0), _) => Outcome::Success,
                (Some(c), _) => Outcome::Failed(c),
                (None, Some(s)) => Outcome::Signaled(s),
                (None, None) => Outcome::Failed(-1),
            }
        }
        Ok(Err(e)) => Outcome::NotStarted(format!("{prog}: {e}")),
        Err(_) => {
            if let Some(pid) = pid {
                // SAFETY: signalling the process group we created for the child.
                unsafe {
                    libc::kill(-(pid as i32), libc::SIGKILL);
                }
            }
            let _ = child.wait().await;
            Outcome::TimedOut
        }
    }
}

/// keepalived's default user for scripts: `script_user`, else the `keepalived_script` user
/// if it exists, else root (no change of user).
pub fn default_user(g: &ha_config::model::GlobalDefs) -> Result<Option<RunAs>, String> {
    match &g.script_user {
        Some(u) => lookup_user(&u.user, u.group.as_deref()).map(Some),
        None => Ok(lookup_user("keepalived_script", None).ok()),
    }
}

/// Longest a notify-style script (state changes, quorum, real server up/down) may run.
pub const NOTIFY_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs batches of commands one at a time, in the order they were pushed (notify scripts
/// must not overtake each other).
#[derive(Clone)]
pub struct ScriptQueue {
    tx: tokio::sync::mpsc::UnboundedSender<Vec<(Vec<String>, Option<RunAs>)>>,
}

impl ScriptQueue {
    /// Starts the runner task (on the current runtime); `owner` names it in logs.
    pub fn start(owner: String) -> ScriptQueue {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Vec<(Vec<String>, Option<RunAs>)>>();
        tokio::spawn(async move {
            while let Some(batch) = rx.recv().await {
                for (argv, run_as) in batch {
                    let outcome = run(&argv, run_as, NOTIFY_TIMEOUT).await;
                    if !outcome.success() {
                        tracing::warn!(owner = %owner, script = ?argv, ?outcome, "notify script");
                    }
                }
            }
        });
        ScriptQueue { tx }
    }

    pub fn push(&self, batch: Vec<(Vec<String>, Option<RunAs>)>) {
        if !batch.is_empty() {
            let _ = self.tx.send(batch);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv_like_keepalived() {
        assert_eq!(split_argv("/bin/true").unwrap(), vec!["/bin/true"]);
        assert_eq!(
            split_argv(r#"/usr/bin/check  "a b" 'c "d"' e\ f"#).unwrap(),
            vec!["/usr/bin/check", "a b", "c \"d\"", "e f"]
        );
        assert_eq!(split_argv(r#"x "say \"hi\"""#).unwrap(), vec!["x", "say \"hi\""]);
        assert!(split_argv("x 'open").is_err());
        assert!(split_argv("   ").is_err());
    }

    #[tokio::test]
    async fn outcomes() {
        let t = Duration::from_secs(5);
        assert_eq!(
            run(&split_argv("/bin/true").unwrap(), None, t).await,
            Outcome::Success
        );
        assert_eq!(
            run(&split_argv("/bin/false").unwrap(), None, t).await,
            Outcome::Failed(1)
        );
        assert!(matches!(
            run(&split_argv("/nonexistent/x").unwrap(), None, t).await,
            Outcome::NotStarted(_)
        ));
        let start = std::time::Instant::now();
        let r = run(
            &split_argv("/bin/sleep 30").unwrap(),
            None,
            Duration::from_millis(200),
        )
        .await;
        assert_eq!(r, Outcome::TimedOut);
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "a hung script is killed at its timeout"
        );
    }

    fn script_at(dir: &Path, name: &str, mode: u32) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, "#!/bin/sh\nexit 0\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    #[test]
    fn script_security_refuses_what_others_can_change() {
        let dir = tempfile::tempdir().unwrap();
        let argv = |p: &Path| vec![p.to_string_lossy().into_owned()];
        let safe = script_at(dir.path(), "safe.sh", 0o755);
        assert!(vet(&argv(&safe), None, true).is_ok());
        let open = script_at(dir.path(), "open.sh", 0o777);
        let e = vet(&argv(&open), None, true).unwrap_err();
        assert!(
            e.contains("open.sh")
                && e.contains("enable_script_security")
                && e.contains("writable by everyone (mode 0777)")
                && e.contains("as root"),
            "{e}"
        );
        assert_eq!(
            vet(&argv(&open), None, false),
            Ok(open.clone()),
            "without script security it runs"
        );
        // Group-writable by a group other than root's.
        let grp = script_at(dir.path(), "grp.sh", 0o775);
        std::os::unix::fs::chown(&grp, None, Some(65534)).unwrap();
        assert!(vet(&argv(&grp), None, true)
            .unwrap_err()
            .contains("writable by group 65534"));
        // Owned by another user: refused for root, fine for that user.
        let theirs = script_at(dir.path(), "theirs.sh", 0o755);
        std::os::unix::fs::chown(&theirs, Some(65534), None).unwrap();
        assert!(vet(&argv(&theirs), None, true)
            .unwrap_err()
            .contains("owned by uid 65534"));
        let nobody = RunAs {
            uid: 65534,
            gid: 65534,
        };
        // (its directory is root's and 0700, which nobody cannot even enter: still not
        // writable by others, so accepted)
        assert!(vet(&argv(&theirs), Some(nobody), true).is_ok());
        // A directory anyone can write (not sticky): its scripts are unsafe.
        let shared = dir.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        let inside = script_at(&shared, "in.sh", 0o755);
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = vet(&argv(&inside), None, true).unwrap_err();
        assert!(e.contains("on its path") && e.contains("shared"), "{e}");
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
        assert!(vet(&argv(&inside), None, true).is_ok(), "sticky like /tmp");
        // A link owned by someone else, pointing at a safe script: refused.
        let link = dir.path().join("link.sh");
        std::os::unix::fs::symlink(&safe, &link).unwrap();
        assert!(
            vet(&argv(&link), None, true).is_ok(),
            "root's link to a safe script"
        );
        std::os::unix::fs::lchown(&link, Some(65534), None).unwrap();
        let e = vet(&argv(&link), None, true).unwrap_err();
        assert!(e.contains("a link owned by uid 65534"), "{e}");
        // What runs is the file checked.
        assert_eq!(
            vet(&argv(&safe), None, true),
            Ok(std::fs::canonicalize(&safe).unwrap())
        );
        // Missing or not executable: named, whatever the security setting.
        let e = vet(&["/nonexistent/notify.sh".to_string()], None, false).unwrap_err();
        assert!(
            e.contains("/nonexistent/notify.sh") && e.contains("on this director"),
            "{e}"
        );
        let noexec = script_at(dir.path(), "noexec.sh", 0o644);
        assert!(vet(&argv(&noexec), None, false)
            .unwrap_err()
            .contains("not executable"));
        assert!(vet(&["true".to_string()], None, true).is_ok(), "found on PATH");
    }

    #[test]
    fn every_script_of_a_config_is_vetted_by_place() {
        let dir = tempfile::tempdir().unwrap();
        let open = script_at(dir.path(), "open.sh", 0o777);
        let text = format!(
            "global_defs {{\n  enable_script_security\n  script_user root\n}}\n\
             vrrp_script chk {{\n  script \"/bin/true\"\n}}\n\
             vrrp_instance VI_1 {{\n  state BACKUP\n  interface eth0\n  virtual_router_id 51\n  priority 100\n  virtual_ipaddress {{\n    198.18.0.1\n  }}\n  notify_master \"{} arg\"\n  notify_backup /nonexistent/b.sh\n}}\n",
            open.display()
        );
        let (_, loaded) = ha_config::bundle::load_bundle(
            "k.conf",
            &std::collections::BTreeMap::from([("k.conf".to_string(), text)]),
        );
        assert!(!loaded.diags.has_errors(), "{:?}", loaded.diags);
        let config = loaded.cluster.view("any");
        let places: Vec<String> = scripts_of(config).into_iter().map(|u| u.place).collect();
        assert!(
            places.contains(&"vrrp_instance VI_1 notify_master".to_string()),
            "{places:?}"
        );
        assert!(places.contains(&"vrrp_script chk".to_string()), "{places:?}");
        let problems = vet_config(config);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems[0].starts_with("vrrp_instance VI_1 notify_master: ")
                && problems[0].contains("writable by everyone"),
            "{problems:?}"
        );
        assert!(
            problems[1].starts_with("vrrp_instance VI_1 notify_backup: /nonexistent/b.sh"),
            "{problems:?}"
        );
    }

    #[tokio::test]
    async fn runs_as_another_user() {
        let nobody = lookup_user("nobody", None).unwrap();
        assert_ne!(nobody.uid, 0);
        // `test -O FILE` is true when the caller owns FILE: /proc/self is owned by the
        // process itself, so it succeeds; /root is root's, so it fails for nobody.
        let own = split_argv("/usr/bin/test -O /proc/self/status").unwrap();
        assert_eq!(
            run(&own, Some(nobody), Duration::from_secs(5)).await,
            Outcome::Success
        );
        let roots = split_argv("/usr/bin/test -O /root").unwrap();
        assert_eq!(
            run(&roots, Some(nobody), Duration::from_secs(5)).await,
            Outcome::Failed(1)
        );
        assert!(lookup_user("no-such-user-xyz", None).is_err());
    }
}

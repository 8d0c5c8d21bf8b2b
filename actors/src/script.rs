//! Running external programs the way keepalived does, without a shell: the command line is
//! split into argv (quotes and backslashes honoured), run as the configured user, and
//! killed (its whole process group) at its timeout.

use std::time::Duration;

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

/// Runs `argv` (as `run_as`), waiting at most `timeout`.
pub async fn run(argv: &[String], run_as: Option<RunAs>, timeout: Duration) -> Outcome {
    let Some((prog, args)) = argv.split_first() else {
        return Outcome::NotStarted("empty command".into());
    };
    let mut cmd = tokio::process::Command::new(prog);
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

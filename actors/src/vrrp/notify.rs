//! Notify scripts of one instance, run one at a time in transition order (keepalived may
//! run them concurrently and out of order). `notify` gets `INSTANCE name state priority`.

use super::instance::State;
use crate::script::{self, RunAs};
use ha_config::model::{Notify, Script};
use std::time::Duration;
use tokio::sync::mpsc;

/// Longest a notify script may run before it is killed.
pub const NOTIFY_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Clone)]
pub struct NotifyQueue {
    tx: mpsc::UnboundedSender<Vec<(Vec<String>, Option<RunAs>)>>,
}

/// The commands to run for `instance` entering `state` (`None`: stopping).
pub fn commands(
    n: &Notify,
    instance: &str,
    state: Option<State>,
    priority: u8,
    user: &dyn Fn(&Script) -> Option<RunAs>,
) -> Vec<(Vec<String>, Option<RunAs>)> {
    let mut out = Vec::new();
    let specific = match state {
        Some(State::Master) => n.master.as_ref(),
        Some(State::Backup) => n.backup.as_ref(),
        Some(State::Fault) => n.fault.as_ref(),
        None => n.stop.as_ref(),
        Some(State::Init) => None,
    };
    let word = match state {
        Some(State::Master) => "MASTER",
        Some(State::Backup) => "BACKUP",
        Some(State::Fault) => "FAULT",
        None => "STOP",
        Some(State::Init) => return out,
    };
    if let Some(s) = specific {
        if let Ok(argv) = script::split_argv(&s.cmd) {
            out.push((argv, user(s)));
        }
    }
    if let Some(s) = &n.any {
        if let Ok(mut argv) = script::split_argv(&s.cmd) {
            argv.extend([
                "INSTANCE".to_string(),
                instance.to_string(),
                word.to_string(),
                priority.to_string(),
            ]);
            out.push((argv, user(s)));
        }
    }
    out
}

impl NotifyQueue {
    /// Starts the runner task (on the current runtime).
    pub fn start(instance: String) -> NotifyQueue {
        let (tx, mut rx) = mpsc::unbounded_channel::<Vec<(Vec<String>, Option<RunAs>)>>();
        tokio::spawn(async move {
            while let Some(batch) = rx.recv().await {
                for (argv, run_as) in batch {
                    let outcome = script::run(&argv, run_as, NOTIFY_TIMEOUT).await;
                    if !outcome.success() {
                        tracing::warn!(instance = %instance, script = ?argv, ?outcome, "notify script");
                    }
                }
            }
        });
        NotifyQueue { tx }
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
    fn notify_arguments_like_keepalived() {
        let n = Notify {
            master: Some(Script::new("/etc/ka/master.sh arg")),
            any: Some(Script::new("/etc/ka/notify.sh")),
            ..Default::default()
        };
        let c = commands(&n, "VI_1", Some(State::Master), 100, &|_| None);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].0, vec!["/etc/ka/master.sh", "arg"]);
        assert_eq!(
            c[1].0,
            vec!["/etc/ka/notify.sh", "INSTANCE", "VI_1", "MASTER", "100"]
        );
        let c = commands(&n, "VI_1", None, 100, &|_| None);
        assert_eq!(c[0].0[3], "STOP");
    }
}

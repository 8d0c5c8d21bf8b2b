//! Notify scripts of one instance, run one at a time in transition order (keepalived may
//! run them concurrently and out of order). `notify` gets `INSTANCE name state priority`.

use super::instance::State;
use crate::script::{self, RunAs};
use ha_config::model::{Notify, Script};

pub use crate::script::ScriptQueue as NotifyQueue;

/// The commands to run for `instance` entering `state` (`None`: stopping).
pub fn commands(
    n: &Notify,
    instance: &str,
    state: Option<State>,
    priority: u8,
    user: &dyn Fn(&Script) -> Option<Option<RunAs>>,
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
    // `user` answers None when the script's user cannot be resolved: it is not run.
    if let Some(s) = specific {
        if let (Ok(argv), Some(u)) = (script::split_argv(&s.cmd), user(s)) {
            out.push((argv, u));
        }
    }
    if let Some(s) = &n.any {
        if let (Ok(mut argv), Some(u)) = (script::split_argv(&s.cmd), user(s)) {
            argv.extend([
                "INSTANCE".to_string(),
                instance.to_string(),
                word.to_string(),
                priority.to_string(),
            ]);
            out.push((argv, u));
        }
    }
    out
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
        let c = commands(&n, "VI_1", Some(State::Master), 100, &|_| Some(None));
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].0, vec!["/etc/ka/master.sh", "arg"]);
        assert_eq!(
            c[1].0,
            vec!["/etc/ka/notify.sh", "INSTANCE", "VI_1", "MASTER", "100"]
        );
        let c = commands(&n, "VI_1", None, 100, &|_| Some(None));
        assert_eq!(c[0].0[3], "STOP");
    }
}

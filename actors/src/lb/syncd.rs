//! The kernel's IPVS connection sync daemon, as keepalived's `lvs_sync_daemon` runs it
//! (pure): one daemon at a time, *master* (it multicasts this director's connections)
//! while the VRRP instance it follows is MASTER here, *backup* (it takes the master's)
//! otherwise, none once the director stops. [`steps`] turns what the kernel runs into
//! what is wanted.

pub use super::ipvs::msg::{DaemonSpec, Role};
use ha_config::model::LvsSyncDaemon;

/// The daemon wanted: its role and settings.
pub type SyncDaemon = (Role, DaemonSpec);

/// The role while the followed instance is (`master`) or is not MASTER.
pub fn role_for(master: bool) -> Role {
    if master {
        Role::Master
    } else {
        Role::Backup
    }
}

/// The daemon `lvs_sync_daemon` wants while its instance (whose `virtual_router_id` is
/// `vrid`; None: no such instance here) is, or is not, MASTER: the sync id by default
/// the instance's `virtual_router_id`, as keepalived.
pub fn wanted(l: &LvsSyncDaemon, vrid: Option<u8>, master: bool) -> Option<SyncDaemon> {
    let spec = DaemonSpec {
        interface: l.interface.clone(),
        sync_id: l.sync_id.or(vrid)?,
        maxlen: l.maxlen,
        port: l.port,
        ttl: l.ttl,
        group: l.group,
    };
    vrid.map(|_| (role_for(master), spec))
}

/// One change to the kernel's sync daemons.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    Stop(Role),
    Start(Role, DaemonSpec),
}

/// The steps from `running` (what the kernel lists: role, interface, sync id) to
/// `want`, knowing the settings `last` started (the kernel does not list them all): every
/// daemon that is not the wanted one stops (first: the kernel runs a role once), then the
/// wanted one starts unless it runs as wanted.
pub fn steps(
    running: &[(Role, String, u32)],
    want: Option<&SyncDaemon>,
    last: Option<&SyncDaemon>,
) -> Vec<Step> {
    let same = |r: &(Role, String, u32), w: &SyncDaemon| {
        r.0 == w.0 && r.1 == w.1.interface && r.2 == u32::from(w.1.sync_id) && last == Some(w)
    };
    let mut out = Vec::new();
    let mut kept = false;
    for r in running {
        match want {
            Some(w) if same(r, w) => kept = true,
            _ => out.push(Step::Stop(r.0)),
        }
    }
    if let (Some(w), false) = (want, kept) {
        out.push(Step::Start(w.0, w.1.clone()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(id: u8) -> DaemonSpec {
        DaemonSpec {
            interface: "ens33".into(),
            sync_id: id,
            ..DaemonSpec::default()
        }
    }

    #[test]
    fn the_instance_decides_the_role_and_its_vrid_the_default_sync_id() {
        let mut l = LvsSyncDaemon {
            interface: "ens33".into(),
            instance: "VI_1".into(),
            ..LvsSyncDaemon::default()
        };
        assert_eq!(wanted(&l, Some(51), true), Some((Role::Master, spec(51))));
        assert_eq!(wanted(&l, Some(51), false), Some((Role::Backup, spec(51))));
        l.sync_id = Some(9);
        l.ttl = Some(3);
        let (role, s) = wanted(&l, Some(51), false).unwrap();
        assert_eq!((role, s.sync_id, s.ttl), (Role::Backup, 9, Some(3)));
        // The instance is not there (not in this director's view): nothing runs.
        assert_eq!(wanted(&l, None, false), None);
    }

    #[test]
    fn master_and_backup_swap_and_stop_as_keepalived_does() {
        let master = (Role::Master, spec(51));
        let backup = (Role::Backup, spec(51));
        // Start: the instance is BACKUP.
        assert_eq!(
            steps(&[], Some(&backup), None),
            [Step::Start(Role::Backup, spec(51))]
        );
        let running = [(Role::Backup, "ens33".to_string(), 51)];
        // Nothing to do while it runs as wanted.
        assert_eq!(steps(&running, Some(&backup), Some(&backup)), []);
        // MASTER: the backup thread stops, then the master starts.
        assert_eq!(
            steps(&running, Some(&master), Some(&backup)),
            [Step::Stop(Role::Backup), Step::Start(Role::Master, spec(51))]
        );
        // A changed setting (sync id) restarts it; so does one the kernel does not list.
        let m = [(Role::Master, "ens33".to_string(), 51)];
        let other = (Role::Master, spec(7));
        assert_eq!(
            steps(&m, Some(&other), Some(&master)),
            [Step::Stop(Role::Master), Step::Start(Role::Master, spec(7))]
        );
        let mut ttl = master.clone();
        ttl.1.ttl = Some(4);
        assert_eq!(
            steps(&m, Some(&ttl), Some(&master)),
            [Step::Stop(Role::Master), Step::Start(Role::Master, ttl.1.clone())]
        );
        // Left by an earlier run (unknown settings): restarted as wanted.
        assert_eq!(
            steps(&m, Some(&master), None),
            [Step::Stop(Role::Master), Step::Start(Role::Master, spec(51))]
        );
        // Stopping: everything running stops.
        let both = [
            (Role::Master, "ens33".to_string(), 51),
            (Role::Backup, "ens33".to_string(), 51),
        ];
        assert_eq!(
            steps(&both, None, Some(&master)),
            [Step::Stop(Role::Master), Step::Stop(Role::Backup)]
        );
    }
}

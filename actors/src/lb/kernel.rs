//! The kernel behind a trait: the sync actor talks to [`KernelLb`]; IPVS, nftables and
//! the in-memory [`FakeKernel`] implement it.

use super::diff::Op;
use super::flows::{FlowInstall, FlowRecord};
use super::model::{Service, Table};
use super::nft::flowlog::LoggedFlow;
use super::syncd::{Role, Step, SyncDaemon};
use std::fmt;

/// An operation the kernel refused, or a failure to talk to it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KernelError {
    /// The errno the kernel answered, if it answered with one.
    pub errno: Option<i32>,
    pub message: String,
}

impl KernelError {
    pub fn errno(errno: i32, context: &str) -> Self {
        let text = std::io::Error::from_raw_os_error(errno).to_string();
        KernelError {
            errno: Some(errno),
            message: format!("{context}: {text}"),
        }
    }

    pub fn other(message: impl Into<String>) -> Self {
        KernelError {
            errno: None,
            message: message.into(),
        }
    }
}

impl fmt::Display for KernelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for KernelError {}

pub trait KernelLb: Send {
    /// `ipvs`, `nftables`, `fake`.
    fn backend(&self) -> &'static str;
    /// The table as the kernel has it now.
    fn dump(&mut self) -> Result<Table, KernelError>;
    /// Applies `ops` in order and answers one result per op: a refused op does not stop
    /// the ones after it.
    fn apply(&mut self, ops: &[Op]) -> Vec<Result<(), KernelError>>;

    /// Whether this kernel's forwarding reports the flows it pins (nftables: the DR
    /// tables' flow log) and takes flows other directors forward.
    fn syncs_flows(&self) -> bool {
        false
    }

    /// Flows the flow log reported (the client and this kernel's own mark), said in
    /// terms every director shares; those it cannot place are left out.
    fn describe_flows(&self, _logged: &[LoggedFlow]) -> Vec<FlowRecord> {
        Vec::new()
    }

    /// Pins flows another director forwards, so that packets of theirs that come here
    /// go to the same real server. `replace`: a flow pinned here to another server is
    /// re-pinned (the forwarding director's word is newer); else it is kept (a catch-up
    /// must not override what this director forwards now).
    fn install_flows(&mut self, flows: &[FlowRecord], _replace: bool) -> Result<FlowInstall, KernelError> {
        Ok(FlowInstall {
            installed: 0,
            skipped: flows.len(),
        })
    }

    /// Every flow pinned here, said as [`KernelLb::describe_flows`] says them (for a
    /// director catching up: it restarted, or was cut off).
    fn pinned_flows(&mut self) -> Result<Vec<FlowRecord>, KernelError> {
        Ok(Vec::new())
    }

    /// Runs the connection sync daemon `want` and no other (None: stops every one);
    /// answers what changed. Only IPVS has one: elsewhere, wanting one is an error.
    fn sync_daemon(&mut self, want: Option<&SyncDaemon>) -> Result<Vec<Step>, KernelError> {
        match want {
            None => Ok(Vec::new()),
            Some(_) => Err(KernelError::other(format!(
                "the {} backend has no connection sync daemon (lvs_sync_daemon is IPVS's)",
                self.backend()
            ))),
        }
    }

    /// Removes everything of ours from the kernel (by default: every service).
    fn remove_all(&mut self) -> Result<(), KernelError> {
        let table = self.dump()?;
        let ops: Vec<Op> = table.keys().map(|k| Op::DelService(*k)).collect();
        self.apply(&ops).into_iter().collect()
    }
}

/// An in-memory kernel with IPVS's rules: adding what exists fails with EEXIST, touching
/// a service that does not exist with ESRCH, a destination that does not exist with
/// ENOENT, and schedulers it was told to refuse with ENOENT (module not found).
#[derive(Default)]
pub struct FakeKernel {
    pub table: Table,
    pub refused_schedulers: Vec<String>,
    /// Every op it was asked to apply, in order.
    pub log: Vec<Op>,
    /// Fail every dump (the kernel unreachable).
    pub dump_fails: bool,
    /// The sync daemons running, with their settings.
    pub daemons: Vec<SyncDaemon>,
}

impl FakeKernel {
    fn one(&mut self, op: &Op) -> Result<(), KernelError> {
        const EEXIST: i32 = 17;
        const ESRCH: i32 = 3;
        const ENOENT: i32 = 2;
        match op {
            Op::AddService(k, s) | Op::EditService(k, s) => {
                if self.refused_schedulers.contains(&s.sched) {
                    return Err(KernelError::errno(ENOENT, &format!("scheduler {}", s.sched)));
                }
                let exists = self.table.contains_key(k);
                match (op, exists) {
                    (Op::AddService(..), true) => return Err(KernelError::errno(EEXIST, "service")),
                    (Op::EditService(..), false) => return Err(KernelError::errno(ESRCH, "service")),
                    _ => {}
                }
                self.table
                    .entry(*k)
                    .or_insert_with(|| Service {
                        spec: s.clone(),
                        dests: Default::default(),
                    })
                    .spec = s.clone();
            }
            Op::DelService(k) => {
                self.table
                    .remove(k)
                    .ok_or_else(|| KernelError::errno(ESRCH, "service"))?;
            }
            Op::AddDest(k, d, s) | Op::EditDest(k, d, s) => {
                let svc = self
                    .table
                    .get_mut(k)
                    .ok_or_else(|| KernelError::errno(ESRCH, "service"))?;
                let exists = svc.dests.contains_key(d);
                match (op, exists) {
                    (Op::AddDest(..), true) => return Err(KernelError::errno(EEXIST, "destination")),
                    (Op::EditDest(..), false) => return Err(KernelError::errno(ENOENT, "destination")),
                    _ => {}
                }
                svc.dests.insert(*d, *s);
            }
            Op::DelDest(k, d) => {
                let svc = self
                    .table
                    .get_mut(k)
                    .ok_or_else(|| KernelError::errno(ESRCH, "service"))?;
                svc.dests
                    .remove(d)
                    .ok_or_else(|| KernelError::errno(ENOENT, "destination"))?;
            }
        }
        Ok(())
    }
}

impl KernelLb for FakeKernel {
    fn backend(&self) -> &'static str {
        "fake"
    }

    fn dump(&mut self) -> Result<Table, KernelError> {
        if self.dump_fails {
            return Err(KernelError::other("fake kernel: dump refused"));
        }
        Ok(self.table.clone())
    }

    fn apply(&mut self, ops: &[Op]) -> Vec<Result<(), KernelError>> {
        ops.iter()
            .map(|op| {
                self.log.push(op.clone());
                self.one(op)
            })
            .collect()
    }

    fn sync_daemon(&mut self, want: Option<&SyncDaemon>) -> Result<Vec<Step>, KernelError> {
        let running: Vec<(Role, String, u32)> = self
            .daemons
            .iter()
            .map(|(r, s)| (*r, s.interface.clone(), u32::from(s.sync_id)))
            .collect();
        let last = self.daemons.iter().find(|d| Some(*d) == want).cloned();
        let steps = super::syncd::steps(&running, want, last.as_ref());
        for s in &steps {
            match s {
                Step::Stop(role) => self.daemons.retain(|(r, _)| r != role),
                Step::Start(role, spec) => self.daemons.push((*role, spec.clone())),
            }
        }
        Ok(steps)
    }
}

//! `(desired, actual) -> ops`: the fewest kernel operations that turn `actual` into
//! `desired`. Pure. One changed destination costs one op, whatever the table's size.
//!
//! Order: services that must go are deleted first (the kernel drops their destinations
//! with them); then, service by service in key order, the service is added or edited,
//! its unwanted destinations deleted, changed ones edited and missing ones added.

use super::model::{DestKey, DestSpec, SvcKey, SvcSpec, Table};
use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    AddService(SvcKey, SvcSpec),
    EditService(SvcKey, SvcSpec),
    DelService(SvcKey),
    AddDest(SvcKey, DestKey, DestSpec),
    EditDest(SvcKey, DestKey, DestSpec),
    DelDest(SvcKey, DestKey),
}

impl Op {
    pub fn service(&self) -> &SvcKey {
        match self {
            Op::AddService(k, _)
            | Op::EditService(k, _)
            | Op::DelService(k)
            | Op::AddDest(k, _, _)
            | Op::EditDest(k, _, _)
            | Op::DelDest(k, _) => k,
        }
    }
}

impl fmt::Display for Op {
    /// Close to the `ipvsadm` command that does the same.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::AddService(k, s) => write!(f, "add service {k} {}", s.sched),
            Op::EditService(k, s) => write!(f, "edit service {k} {}", s.sched),
            Op::DelService(k) => write!(f, "delete service {k}"),
            Op::AddDest(k, d, s) => {
                write!(f, "add {d} to {k} {} weight {}", s.fwd.name(), s.weight)
            }
            Op::EditDest(k, d, s) => {
                write!(f, "edit {d} in {k} {} weight {}", s.fwd.name(), s.weight)
            }
            Op::DelDest(k, d) => write!(f, "delete {d} from {k}"),
        }
    }
}

pub fn diff(desired: &Table, actual: &Table) -> Vec<Op> {
    let mut ops: Vec<Op> = actual
        .keys()
        .filter(|k| !desired.contains_key(k))
        .map(|k| Op::DelService(*k))
        .collect();
    for (k, want) in desired {
        match actual.get(k) {
            None => {
                ops.push(Op::AddService(*k, want.spec.clone()));
                ops.extend(want.dests.iter().map(|(d, s)| Op::AddDest(*k, *d, *s)));
            }
            Some(have) => {
                if have.spec != want.spec {
                    ops.push(Op::EditService(*k, want.spec.clone()));
                }
                ops.extend(
                    have.dests
                        .keys()
                        .filter(|d| !want.dests.contains_key(d))
                        .map(|d| Op::DelDest(*k, *d)),
                );
                for (d, s) in &want.dests {
                    match have.dests.get(d) {
                        None => ops.push(Op::AddDest(*k, *d, *s)),
                        Some(h) if h != s => ops.push(Op::EditDest(*k, *d, *s)),
                        Some(_) => {}
                    }
                }
            }
        }
    }
    ops
}

/// Applies ops to an in-memory table, as a kernel that accepts them all would.
pub fn apply(table: &mut Table, op: &Op) {
    match op {
        Op::AddService(k, s) | Op::EditService(k, s) => {
            table
                .entry(*k)
                .or_insert_with(|| super::model::Service {
                    spec: s.clone(),
                    dests: Default::default(),
                })
                .spec = s.clone();
        }
        Op::DelService(k) => {
            table.remove(k);
        }
        Op::AddDest(k, d, s) | Op::EditDest(k, d, s) => {
            if let Some(svc) = table.get_mut(k) {
                svc.dests.insert(*d, *s);
            }
        }
        Op::DelDest(k, d) => {
            if let Some(svc) = table.get_mut(k) {
                svc.dests.remove(d);
            }
        }
    }
}

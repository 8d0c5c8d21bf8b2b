//! Tracked objects that are not scripts: `track_file` (a number in a file) and
//! `vrrp_track_process` (how many copies of a process run), as keepalived 2.2.7 has them.

use super::common::{Dur, RawStmt};
use serde::{Deserialize, Serialize};

/// `track_file NAME { file PATH; weight W [reverse]; init_file [VALUE] [overwrite] }`
/// (`vrrp_track_file` is keepalived's older name for the same block). The file holds an
/// integer: with weight 0, any value but 0 is a failure (FAULT / real server down); else
/// `value * weight` moves the priority, and -254 or below is FAULT.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackFile {
    pub name: String,
    pub file: String,
    /// keepalived's default is 1.
    pub weight: i32,
    pub weight_reverse: bool,
    /// Create the file with this value at start (`overwrite`: even if it exists).
    pub init: Option<FileInit>,
    pub extra: Vec<RawStmt>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileInit {
    pub value: i32,
    pub overwrite: bool,
}

impl TrackFile {
    pub fn new(name: impl Into<String>) -> Self {
        TrackFile {
            name: name.into(),
            file: String::new(),
            weight: 1,
            weight_reverse: false,
            init: None,
            extra: Vec::new(),
        }
    }
}

/// How a process's parameters must match (`param_match`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ParamMatch {
    /// Parameters are not compared.
    None,
    /// Exactly the parameters given (the default once parameters are given).
    Exact,
    /// The command's parameters start with the ones given.
    Partial,
    /// As partial, and the last given parameter may be a prefix of the command's.
    Initial,
}

/// `vrrp_track_process NAME { process PATH [ARGS...]; param_match ...; weight W [reverse];
/// quorum N; quorum_max N; delay S; terminate_delay S; fork_delay S; full_command }`:
/// up while between `quorum` and `quorum_max` matching processes run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackProcess {
    pub name: String,
    /// The name (`comm`, at most 15 characters as the kernel keeps it) or, with
    /// `full_command`, the first word of the command line.
    pub process: String,
    /// The parameters to match (`param_match`), if any were given.
    pub params: Vec<String>,
    pub param_match: ParamMatch,
    pub full_command: bool,
    /// 0: FAULT while down; > 0 added while up; < 0 subtracted while down.
    pub weight: i32,
    pub weight_reverse: bool,
    pub quorum: u32,
    pub quorum_max: u32,
    /// Quorum gained: wait this long before counting it (cancelled if lost meanwhile).
    pub fork_delay: Dur,
    /// Quorum lost: wait this long before counting it (cancelled if regained meanwhile).
    pub terminate_delay: Dur,
    pub extra: Vec<RawStmt>,
}

impl TrackProcess {
    pub fn new(name: impl Into<String>) -> Self {
        TrackProcess {
            name: name.into(),
            process: String::new(),
            params: Vec::new(),
            param_match: ParamMatch::None,
            full_command: false,
            weight: 0,
            weight_reverse: false,
            quorum: 1,
            quorum_max: u32::MAX,
            fork_delay: Dur(0),
            terminate_delay: Dur(0),
            extra: Vec::new(),
        }
    }
}

/// What kind of object an instance tracks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum TrackedKind {
    Interface,
    Script,
    File,
    Process,
}

impl TrackedKind {
    /// The keyword of the block an instance lists them in.
    pub fn keyword(self) -> &'static str {
        match self {
            TrackedKind::Interface => "track_interface",
            TrackedKind::Script => "track_script",
            TrackedKind::File => "track_file",
            TrackedKind::Process => "track_process",
        }
    }
}

/// One object an instance tracks, with the weight in effect for it (`None`: FAULT while
/// it fails).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tracked {
    pub kind: TrackedKind,
    pub name: String,
    pub weight: Option<i32>,
    pub reverse: bool,
}

/// A tracked object keepalived leaves out (or unweights), and why: said at its line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrackingNote {
    pub kind: TrackedKind,
    pub name: String,
    pub message: String,
}

impl super::Config {
    /// The sync group `inst` is a member of.
    pub fn group_of(&self, inst: &str) -> Option<&super::SyncGroup> {
        self.sync_groups
            .iter()
            .find(|g| g.members.iter().any(|m| m == inst))
    }

    /// Everything `inst` tracks (its own lines, then its sync group's), with weights as
    /// keepalived 2.2.7 settles them: an address owner (priority 255), or a sync group
    /// member without `sync_group_tracking_weight`, drops its weighted scripts and files
    /// (a file with the default weight 1 becomes unweighted) and makes its weighted
    /// interfaces FAULT (the owner drops them); a sync group's own objects keep their
    /// weights unless a member owns its addresses. Objects whose definition is missing are
    /// left out (validation refuses them).
    pub fn tracking(&self, inst: &super::VrrpInstance) -> (Vec<Tracked>, Vec<TrackingNote>) {
        let group = self.group_of(&inst.name);
        let owner = inst.priority == 255;
        let unweighted = owner || group.is_some_and(|g| !g.tracking_weight);
        let why = if owner {
            "it owns its addresses (priority 255)".to_string()
        } else {
            format!(
                "it is in vrrp_sync_group {} without sync_group_tracking_weight",
                group.map(|g| g.name.as_str()).unwrap_or_default()
            )
        };
        let mut out = Vec::new();
        let mut notes = Vec::new();
        let mut note = |kind: TrackedKind, name: &str, what: &str| {
            notes.push(TrackingNote {
                kind,
                name: name.to_string(),
                message: format!(
                    "vrrp_instance {}: {} {name} {what}, as keepalived does, because {why}",
                    inst.name,
                    kind.keyword()
                ),
            })
        };
        for t in &inst.track_interface {
            let mut weight = t.weight.filter(|w| *w != 0);
            if unweighted && weight.is_some() {
                if owner {
                    note(TrackedKind::Interface, &t.name, "is not tracked");
                    continue;
                }
                note(
                    TrackedKind::Interface,
                    &t.name,
                    "puts it in FAULT instead of weighting it",
                );
                weight = None;
            }
            out.push(Tracked {
                kind: TrackedKind::Interface,
                name: t.name.clone(),
                weight,
                reverse: t.weight_reverse,
            });
        }
        let mut own = |kind: TrackedKind,
                       refs: &[super::TrackRef],
                       own_weight: &dyn Fn(&str) -> Option<(i32, bool)>| {
            for t in refs {
                let Some((w, r)) = own_weight(&t.name) else {
                    continue;
                };
                let (weight, reverse) = match t.weight {
                    Some(x) => (x, t.weight_reverse),
                    None => (w, r),
                };
                let mut weight = (weight != 0).then_some(weight);
                if unweighted && weight.is_some() {
                    if kind == TrackedKind::File && weight == Some(1) {
                        note(
                            kind,
                            &t.name,
                            "is unweighted (FAULT while non-zero); specify weight 0",
                        );
                        weight = None;
                    } else if kind != TrackedKind::Process {
                        note(kind, &t.name, "is not tracked (it has a weight)");
                        continue;
                    }
                }
                out.push(Tracked {
                    kind,
                    name: t.name.clone(),
                    weight,
                    reverse,
                });
            }
        };
        own(TrackedKind::Script, &inst.track_script, &|n| {
            self.vrrp_script(n).map(|s| (s.weight, s.weight_reverse))
        });
        own(TrackedKind::File, &inst.track_file, &|n| {
            self.track_file(n).map(|s| (s.weight, s.weight_reverse))
        });
        own(TrackedKind::Process, &inst.track_process, &|n| {
            self.track_process(n).map(|s| (s.weight, s.weight_reverse))
        });
        if let Some(g) = group {
            let owner_member = g
                .members
                .iter()
                .any(|m| self.instance(m).is_some_and(|i| i.priority == 255));
            let weight = |w: Option<i32>| if owner_member { None } else { w.filter(|w| *w != 0) };
            // What the instance tracks itself and its group too is tracked once: with the
            // group's weight, unless the instance's own line is unweighted (keepalived).
            let merge = |out: &mut Vec<Tracked>, t: Tracked| match out
                .iter_mut()
                .find(|o| o.kind == t.kind && o.name == t.name)
            {
                Some(own) if own.weight.is_none() => {}
                Some(own) => *own = t,
                None => out.push(t),
            };
            for t in &g.track_interface {
                merge(
                    &mut out,
                    Tracked {
                        kind: TrackedKind::Interface,
                        name: t.name.clone(),
                        weight: weight(t.weight),
                        reverse: t.weight_reverse,
                    },
                );
            }
            let mut group_refs =
                |kind: TrackedKind, refs: &[super::TrackRef], def: &dyn Fn(&str) -> Option<(i32, bool)>| {
                    for t in refs {
                        let Some((w, r)) = def(&t.name) else {
                            continue;
                        };
                        let (w, r) = match t.weight {
                            Some(x) => (x, t.weight_reverse),
                            None => (w, r),
                        };
                        merge(
                            &mut out,
                            Tracked {
                                kind,
                                name: t.name.clone(),
                                weight: weight(Some(w)),
                                reverse: r,
                            },
                        );
                    }
                };
            group_refs(TrackedKind::Script, &g.track_script, &|n| {
                self.vrrp_script(n).map(|s| (s.weight, s.weight_reverse))
            });
            group_refs(TrackedKind::File, &g.track_file, &|n| {
                self.track_file(n).map(|s| (s.weight, s.weight_reverse))
            });
            group_refs(TrackedKind::Process, &g.track_process, &|n| {
                self.track_process(n).map(|s| (s.weight, s.weight_reverse))
            });
        }
        (out, notes)
    }
}

//! `track_file` / `vrrp_track_file` and `vrrp_track_process` blocks, with keepalived
//! 2.2.7's keywords, ranges and defaults.

use super::Ctx;
use crate::model::*;
use crate::syntax::keywords::Section;
use crate::syntax::Stmt;

fn name_of(cx: &mut Ctx, s: &Stmt) -> Option<String> {
    let name = s.args().first().map(|w| w.text.clone());
    if name.is_none() {
        cx.error(s.span(), format!("`{}` needs a name", s.keyword()));
    }
    cx.max_args(s, 1);
    name
}

/// `weight W [reverse|noreverse]` inside a tracker block (W within -`limit`..`limit`).
pub(super) fn weight(cx: &mut Ctx, c: &Stmt, limit: i32) -> Option<(i32, bool)> {
    let w = cx.int(c, 0, -i64::from(limit), i64::from(limit))? as i32;
    let reverse = match c.args().get(1).map(|w| w.text.as_str()) {
        None | Some("noreverse") => false,
        Some("reverse") => true,
        Some(other) => {
            cx.error(
                c.arg_span(1),
                format!("unknown weight option `{other}` (only `reverse` or `noreverse`)"),
            );
            return None;
        }
    };
    cx.max_args(c, 2);
    Some((w, reverse))
}

pub fn track_file(cx: &mut Ctx, s: &Stmt) -> Option<TrackFile> {
    let mut t = TrackFile::new(name_of(cx, s)?);
    cx.mark(format!("track_file {}", t.name), s.span());
    if s.keyword() == "vrrp_track_file" {
        cx.warning(s.span(), "`vrrp_track_file` is deprecated; use `track_file`");
    }
    let mut have_file = false;
    for c in cx.block(s) {
        match c.keyword() {
            "file" => {
                if let Some(f) = cx.arg(c, 0, "a file path") {
                    if !f.starts_with('/') {
                        cx.error(
                            c.arg_span(0),
                            format!("track_file {}: `{f}` is not an absolute path", t.name),
                        );
                    } else {
                        t.file = f.to_string();
                        have_file = true;
                    }
                }
                cx.max_args(c, 1);
            }
            "weight" => {
                if let Some((w, r)) = weight(cx, c, 254) {
                    t.weight = w;
                    t.weight_reverse = r;
                }
            }
            "init_file" => {
                cx.no_block(c);
                let mut init = FileInit {
                    value: 0,
                    overwrite: false,
                };
                for (i, w) in c.args().iter().enumerate() {
                    if w.text == "overwrite" {
                        init.overwrite = true;
                    } else if let Some(v) = cx.int(c, i, -254, 254) {
                        init.value = v as i32;
                    }
                }
                t.init = Some(init);
            }
            _ => {
                if let Some(raw) = cx.other(Section::TrackFile, c) {
                    t.extra.push(raw);
                }
            }
        }
    }
    if !have_file {
        cx.error(s.span(), format!("track_file {} has no `file` line", t.name));
        return None;
    }
    Some(t)
}

pub fn track_process(cx: &mut Ctx, s: &Stmt) -> Option<TrackProcess> {
    let mut t = TrackProcess::new(name_of(cx, s)?);
    cx.mark(format!("vrrp_track_process {}", t.name), s.span());
    let mut quorum_span = None;
    for c in cx.block(s) {
        match c.keyword() {
            "process" => {
                cx.no_block(c);
                let Some(p) = cx.arg(c, 0, "a process name or path") else {
                    continue;
                };
                t.process = p.to_string();
                let params: Vec<String> = c.args()[1..].iter().map(|w| w.text.clone()).collect();
                if !params.is_empty() {
                    t.params = params;
                    if t.param_match == ParamMatch::None {
                        t.param_match = ParamMatch::Exact;
                    }
                    t.full_command = true;
                }
            }
            "param_match" => {
                cx.no_block(c);
                t.param_match = match c.args().first().map(|w| w.text.as_str()) {
                    None => ParamMatch::Exact,
                    Some("initial") => ParamMatch::Initial,
                    Some("partial") => ParamMatch::Partial,
                    Some(other) => {
                        cx.error(
                            c.arg_span(0),
                            format!(
                                "`param_match` is `initial`, `partial` or nothing (exact), not `{other}`"
                            ),
                        );
                        continue;
                    }
                };
                t.full_command = true;
                cx.max_args(c, 1);
            }
            "weight" => {
                if let Some((w, r)) = weight(cx, c, 254) {
                    t.weight = w;
                    t.weight_reverse = r;
                }
            }
            "quorum" => {
                if let Some(q) = cx.uint(c, 0, 1, 65_535, true) {
                    t.quorum = q as u32;
                    quorum_span = Some(c.span());
                }
            }
            "quorum_max" => {
                if let Some(q) = cx.uint(c, 0, 0, 65_535, true) {
                    if q == 0 && quorum_span.is_some() && t.quorum > 0 {
                        // keepalived refuses it: 0 means "up while none runs", which a
                        // quorum cannot mean.
                        cx.error(
                            c.span(),
                            format!(
                                "vrrp_track_process {}: quorum_max 0 with quorum {}",
                                t.name, t.quorum
                            ),
                        );
                        continue;
                    }
                    t.quorum_max = q as u32;
                    if q == 0 {
                        t.quorum = 0;
                    }
                }
            }
            "delay" | "terminate_delay" | "fork_delay" => {
                let Some(d) = cx.secs(c, 0, Dur(1), Dur::from_secs(3600), true) else {
                    continue;
                };
                if c.keyword() != "fork_delay" {
                    t.terminate_delay = d;
                }
                if c.keyword() != "terminate_delay" {
                    t.fork_delay = d;
                }
            }
            "full_command" => t.full_command = cx.flag(c),
            _ => {
                if let Some(raw) = cx.other(Section::TrackProcess, c) {
                    t.extra.push(raw);
                }
            }
        }
    }
    if t.process.is_empty() {
        cx.error(
            s.span(),
            format!("vrrp_track_process {} has no `process` line", t.name),
        );
        return None;
    }
    if t.quorum > t.quorum_max {
        cx.error(
            quorum_span.unwrap_or(s.span()),
            format!(
                "vrrp_track_process {}: quorum {} is above quorum_max {}",
                t.name, t.quorum, t.quorum_max
            ),
        );
        return None;
    }
    if !t.full_command && t.process.len() > 15 {
        cx.warning(
            s.span(),
            format!(
                "vrrp_track_process {}: `{}` is longer than the 15 characters the kernel keeps of a process name; it can only match with `full_command`",
                t.name, t.process
            ),
        );
    }
    Some(t)
}

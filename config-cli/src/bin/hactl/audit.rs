//! The audit side of `hactl`: `history` with filters (time, author, virtual server) and
//! the semantic diff of each committed version, and `export-history` (JSON Lines for a
//! SIEM: the committed history and every director's runtime events, one object a line).

use crate::cluster_cmds::fmt_time;
use crate::remote::{Answer, Remote};
use crate::Format;
use anyhow::{anyhow, Result};
use ha_config::api::{ConfigResponse, EventItem, HistoryItem, MembersResponse, ReplayResponse};
use ha_config::diff::{self, Change};
use ha_config::ClusterConfig;
use hyper::Method;
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

const PATIENCE: Duration = Duration::from_secs(30);

/// Which entries `hactl history` shows.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub since_ms: Option<u64>,
    pub until_ms: Option<u64>,
    pub author: Option<String>,
    /// `VIP:PORT` (or `fwmark N`, `group NAME`): only versions that changed it.
    pub vs: Option<String>,
}

/// A time for `--since`/`--until`: `2026-11-24T03:12:00Z` (seconds optional), `2026-11-24`
/// (midnight UTC), an age (`90s`, `30m`, `2h`, `7d`: that long before `now_ms`), or Unix
/// milliseconds.
pub fn parse_time(s: &str, now_ms: u64) -> Result<u64, String> {
    let s = s.trim();
    let bad =
        || format!("{s:?}: expected YYYY-MM-DD[THH:MM[:SS]Z], an age like 2h or 7d, or Unix milliseconds");
    if let Some(unit) = s.chars().last().filter(|c| "smhd".contains(*c)) {
        if let Ok(n) = s[..s.len() - 1].parse::<u64>() {
            let secs = match unit {
                's' => 1,
                'm' => 60,
                'h' => 3600,
                _ => 86_400,
            };
            return Ok(now_ms.saturating_sub(n.saturating_mul(secs * 1000)));
        }
    }
    if s.len() >= 11 && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().map_err(|_| bad());
    }
    let (date, time) = match s.split_once('T') {
        Some((d, t)) => (
            d,
            Some(
                t.strip_suffix('Z')
                    .ok_or_else(|| format!("{s:?}: times are UTC and end in Z"))?,
            ),
        ),
        None => (s, None),
    };
    let d: Vec<&str> = date.split('-').collect();
    let [y, m, dd] = d[..] else { return Err(bad()) };
    let (y, m, dd): (i64, u32, u32) = (
        y.parse().map_err(|_| bad())?,
        m.parse().map_err(|_| bad())?,
        dd.parse().map_err(|_| bad())?,
    );
    if !(1..=12).contains(&m) || !(1..=31).contains(&dd) || y < 1970 {
        return Err(bad());
    }
    let mut secs = ha_config::time::days_from_civil(y, m, dd) * 86_400;
    if let Some(t) = time {
        let parts: Vec<&str> = t.split(':').collect();
        let nums: Vec<u32> = parts
            .iter()
            .map(|p| p.parse::<u32>())
            .collect::<Result<_, _>>()
            .map_err(|_| bad())?;
        let (h, mi, se) = match nums[..] {
            [h, mi] => (h, mi, 0),
            [h, mi, se] => (h, mi, se),
            _ => return Err(bad()),
        };
        if h > 23 || mi > 59 || se > 60 {
            return Err(bad());
        }
        secs += i64::from(h * 3600 + mi * 60 + se);
    }
    Ok((secs as u64) * 1000)
}

/// What `hactl replay --at` names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Moment {
    Version(u64),
    TimeMs(u64),
}

/// `--at`: a config version (a number of up to 10 digits) or a time as [`parse_time`]
/// reads it (Unix milliseconds have 11 digits or more).
pub fn parse_moment(s: &str, now_ms: u64) -> Result<Moment, String> {
    let t = s.trim();
    if !t.is_empty() && t.len() < 11 && t.bytes().all(|b| b.is_ascii_digit()) {
        return t
            .parse()
            .map(Moment::Version)
            .map_err(|_| format!("{t:?}: not a version"));
    }
    parse_time(t, now_ms)
        .map(Moment::TimeMs)
        .map_err(|e| format!("{e} (or a config version)"))
}

/// `hactl replay`: a director's state at a past moment, rebuilt from the history.
pub fn replay(remote: &Remote, node: Option<&str>, moment: Moment, format: Format) -> Result<ExitCode> {
    let ep = crate::cluster_cmds::node_endpoint(remote, node)?;
    let path = match moment {
        Moment::Version(v) => format!("/v1/replay?version={v}"),
        Moment::TimeMs(t) => format!("/v1/replay?at={t}"),
    };
    let (status, body) = remote.send_to(&ep, Method::GET, &path, None, PATIENCE)?;
    if !status.is_success() {
        let msg = serde_json::from_slice::<ha_config::api::ErrorBody>(&body)
            .map(|b| b.error.message)
            .unwrap_or_else(|_| String::from_utf8_lossy(&body).into_owned());
        return Err(anyhow!("{ep}: {msg}"));
    }
    let r: ReplayResponse = serde_json::from_slice(&body)?;
    if format == Format::Json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(ExitCode::SUCCESS);
    }
    print!("{}", render_replay(&r));
    Ok(ExitCode::SUCCESS)
}

/// A replayed state in `hactl status` / `hactl table` layout.
pub fn render_replay(r: &ReplayResponse) -> String {
    use std::fmt::Write;
    let v = |o: Option<u64>| o.map(|v| v.to_string()).unwrap_or_else(|| "-".into());
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} at {} ({}), replayed from {} runtime event(s) and {} history entries:",
        r.node,
        fmt_time(r.at_ms),
        r.moment,
        r.events_folded,
        r.history_folded
    );
    let _ = writeln!(
        out,
        "  config version {} ({}; committed {}), data plane at version {}, fence {}",
        v(r.config_version),
        r.config_hash
            .as_deref()
            .map(|h| &h[..h.len().min(12)])
            .unwrap_or("-"),
        r.committed_version,
        v(r.dataplane_version),
        r.fence.as_deref().unwrap_or("-")
    );
    for w in &r.warnings {
        let _ = writeln!(out, "  warning: {w}");
    }
    for i in &r.instances {
        let _ = writeln!(
            out,
            "  vrrp {:<16} {:<7} priority {:>3}  since {} ({})",
            i.name,
            i.state,
            i.priority,
            fmt_time(i.since_ms),
            i.reason
        );
    }
    for svc in &r.services {
        let up = svc.real_servers.iter().filter(|r| r.up).count();
        let _ = writeln!(
            out,
            "  virtual server {}: {up}/{} real servers up{}",
            svc.name,
            svc.real_servers.len(),
            if svc.quorum_up { "" } else { ", QUORUM LOST" }
        );
        for rs in &svc.real_servers {
            let _ = writeln!(
                out,
                "    {:<24} {:<5} {}",
                rs.name,
                if rs.up { "UP" } else { "DOWN" },
                rs.reason
            );
        }
    }
    let _ = writeln!(out, "desired table:");
    out.push_str(&r.desired);
    out
}

/// Whether a change concerns virtual server `vs` (as written by `VsKey`'s display).
pub fn touches_vs(change: &Change, vs: &str) -> bool {
    change
        .path
        .strip_prefix("virtual_server ")
        .is_some_and(|rest| rest == vs || rest.starts_with(&format!("{vs} ")))
}

impl Filter {
    fn keeps(&self, h: &HistoryItem) -> bool {
        self.since_ms.is_none_or(|t| h.at_ms >= t)
            && self.until_ms.is_none_or(|t| h.at_ms <= t)
            && self.author.as_ref().is_none_or(|a| &h.author == a)
    }
}

/// All committed history entries with `from <= seq <= to`.
pub fn fetch_history(remote: &Remote, from: u64, to: u64) -> Result<Vec<HistoryItem>> {
    let mut items: Vec<HistoryItem> = Vec::new();
    let mut next = from.max(1);
    loop {
        let path = format!("/v1/history?from={next}&to={to}&limit=1000");
        let page: Vec<HistoryItem> = match remote.call(Method::GET, &path, None, PATIENCE)? {
            (_, Answer::Ok(p)) => p,
            (_, Answer::Refused(r)) => return Err(anyhow!("{}: {}", r.endpoint, r.error.message)),
        };
        let n = page.len();
        if let Some(last) = page.last() {
            next = last.seq + 1;
        }
        items.extend(page);
        if n < 1000 || next > to {
            return Ok(items);
        }
    }
}

/// Committed configs by version, fetched once each.
struct Configs<'a> {
    remote: &'a Remote,
    cache: BTreeMap<u64, ClusterConfig>,
}

impl Configs<'_> {
    fn get(&mut self, version: u64) -> Result<ClusterConfig> {
        if version == 0 {
            return Ok(ClusterConfig::default());
        }
        if let Some(c) = self.cache.get(&version) {
            return Ok(c.clone());
        }
        let path = format!("/v1/config?version={version}");
        let c = match self
            .remote
            .call::<ConfigResponse>(Method::GET, &path, None, PATIENCE)?
        {
            (_, Answer::Ok(c)) => c.config,
            (_, Answer::Refused(r)) => return Err(anyhow!("config version {version}: {}", r.error.message)),
        };
        self.cache.insert(version, c.clone());
        Ok(c)
    }

    /// The semantic changes version `v` made.
    fn changes(&mut self, v: u64) -> Result<Vec<Change>> {
        let old = self.get(v.saturating_sub(1))?;
        let new = self.get(v)?;
        Ok(diff::diff(&old, &new))
    }
}

/// `hactl history`.
pub fn history(
    remote: &Remote,
    from: Option<u64>,
    to: Option<u64>,
    filter: &Filter,
    with_diff: bool,
    format: Format,
) -> Result<ExitCode> {
    let items = fetch_history(remote, from.unwrap_or(1), to.unwrap_or(u64::MAX))?;
    let mut configs = Configs {
        remote,
        cache: BTreeMap::new(),
    };
    let mut rows: Vec<(HistoryItem, Option<Vec<Change>>)> = Vec::new();
    for h in items.into_iter().filter(|h| filter.keeps(h)) {
        let changes = if h.kind == "config" && (with_diff || filter.vs.is_some()) {
            Some(configs.changes(h.version)?)
        } else {
            None
        };
        if let Some(vs) = &filter.vs {
            let hit = changes
                .as_ref()
                .is_some_and(|c| c.iter().any(|c| touches_vs(c, vs)));
            if !hit {
                continue;
            }
        }
        rows.push((h, changes));
    }
    match format {
        Format::Json => {
            let out: Vec<serde_json::Value> = rows
                .iter()
                .map(|(h, c)| {
                    let mut v = serde_json::to_value(h).unwrap_or_default();
                    if let (Some(c), Some(o)) = (c, v.as_object_mut()) {
                        o.insert("changes".into(), serde_json::to_value(c).unwrap_or_default());
                    }
                    v
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        Format::Text => {
            println!(
                "{:>5} {:>7} {:<20} {:<16} {:<18} {:<24} SUMMARY",
                "SEQ", "VERSION", "TIME", "AUTHOR", "KIND", "REASON"
            );
            for (h, changes) in &rows {
                println!(
                    "{:>5} {:>7} {:<20} {:<16} {:<18} {:<24} {}",
                    h.seq,
                    h.version,
                    fmt_time(h.at_ms),
                    h.author,
                    h.kind,
                    if h.reason.is_empty() { "-" } else { &h.reason },
                    h.summary
                );
                for c in changes.iter().flatten() {
                    if with_diff || filter.vs.as_ref().is_none_or(|vs| touches_vs(c, vs)) {
                        println!("{:>14}{c}", "");
                    }
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `hactl export-history --format jsonl`: the committed history (`"source": "config"`),
/// then every director's runtime events (`"source": "runtime"`), sorted by time.
pub fn export(remote: &Remote) -> Result<ExitCode> {
    let mut lines: Vec<(u64, u8, String)> = Vec::new();
    let mut configs = Configs {
        remote,
        cache: BTreeMap::new(),
    };
    for h in fetch_history(remote, 1, u64::MAX)? {
        let changes: Vec<String> = if h.kind == "config" {
            configs
                .changes(h.version)?
                .iter()
                .map(ToString::to_string)
                .collect()
        } else {
            Vec::new()
        };
        let v = serde_json::json!({
            "schema": 1,
            "source": "config",
            "time": fmt_time(h.at_ms),
            "at_ms": h.at_ms,
            "seq": h.seq,
            "version": h.version,
            "kind": h.kind,
            "author": h.author,
            "reason": h.reason,
            "accepted_by": h.accepted_by,
            "summary": h.summary,
            "changes": changes,
            "config_hash": h.hash,
            "entry_hash": h.entry_hash,
            "prev_entry_hash": h.prev_entry_hash,
        });
        lines.push((h.at_ms, 0, v.to_string()));
    }
    let members = match remote.call::<MembersResponse>(Method::GET, "/v1/members", None, PATIENCE)? {
        (_, Answer::Ok(m)) => m.members,
        (_, Answer::Refused(r)) => return Err(anyhow!("{}: {}", r.endpoint, r.error.message)),
    };
    for m in &members {
        let mut from = 1u64;
        loop {
            let path = format!("/v1/events?from={from}&limit=1000");
            let page: Vec<EventItem> = match remote.send_to(&m.addr, Method::GET, &path, None, PATIENCE) {
                Ok((s, body)) if s.is_success() => serde_json::from_slice(&body)?,
                Ok((s, _)) => return Err(anyhow!("{}: events answered {s}", m.name)),
                Err(e) => {
                    eprintln!("hactl: {}: runtime events not exported: {e}", m.name);
                    break;
                }
            };
            for e in &page {
                let v = serde_json::json!({
                    "schema": 1,
                    "source": "runtime",
                    "time": fmt_time(e.at_ms),
                    "at_ms": e.at_ms,
                    "node": e.node,
                    "seq": e.seq,
                    "kind": e.kind,
                    "subject": e.subject,
                    "summary": e.summary,
                });
                let mut v = v;
                if let (Some(d), Some(obj)) = (&e.detail, v.as_object_mut()) {
                    obj.insert("detail".into(), serde_json::to_value(d)?);
                }
                lines.push((e.at_ms, 1, v.to_string()));
            }
            match page.last() {
                Some(last) if page.len() == 1000 => from = last.seq + 1,
                _ => break,
            }
        }
    }
    lines.sort_by_key(|(t, src, _)| (*t, *src));
    for (_, _, l) in lines {
        println!("{l}");
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_moment_is_a_version_or_a_time() {
        assert_eq!(parse_moment("12", 0), Ok(Moment::Version(12)));
        assert_eq!(
            parse_moment("2026-11-24T03:12:00Z", 0),
            Ok(Moment::TimeMs(1_795_489_920_000))
        );
        assert_eq!(
            parse_moment("1795489920000", 0),
            Ok(Moment::TimeMs(1_795_489_920_000))
        );
        assert_eq!(parse_moment("2h", 7_200_500), Ok(Moment::TimeMs(500)));
        assert!(parse_moment("yesterday", 0).is_err());
    }

    #[test]
    fn times_parse_as_utc_dates_ages_and_millis() {
        let now = 1_700_000_000_000;
        assert_eq!(parse_time("2023-11-14T22:13:20Z", now), Ok(1_700_000_000_000));
        assert_eq!(parse_time("2023-11-14T22:13Z", now), Ok(1_699_999_980_000));
        assert_eq!(parse_time("2000-02-29", now), Ok(951_782_400_000));
        assert_eq!(parse_time("2h", now), Ok(now - 7_200_000));
        assert_eq!(parse_time("7d", now), Ok(now - 7 * 86_400_000));
        assert_eq!(parse_time("1700000000000", now), Ok(1_700_000_000_000));
        for bad in [
            "yesterday",
            "2023-13-01",
            "2023-11-14T25:00Z",
            "2023-11-14T10:00",
            "5x",
        ] {
            assert!(parse_time(bad, now).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_virtual_server_filter_matches_its_own_changes_only() {
        let c = |path: &str| Change {
            path: path.into(),
            kind: diff::ChangeKind::Added,
            nodes: vec![],
        };
        let vs = "198.18.116.134:80";
        assert!(touches_vs(&c("virtual_server 198.18.116.134:80"), vs));
        assert!(touches_vs(
            &c("virtual_server 198.18.116.134:80 real_server 198.18.116.131:80"),
            vs
        ));
        assert!(!touches_vs(&c("virtual_server 198.18.116.134:8080"), vs));
        assert!(!touches_vs(&c("vrrp_instance VI_1"), vs));
    }
}

//! One actix actor per (virtual server, real server, checker): probes on the core's
//! schedule, reports every verdict change as a [`CheckEvent`] to the [`super::hub`].

use super::probe::{self, Target};
use super::schedule::{CheckerCore, Health, ProbeResult, Timing};
use crate::script::RunAs;
use actix::prelude::*;
use ha_config::model::UrlCheck;
use std::time::{Duration, SystemTime};

/// What to probe.
#[derive(Clone, Debug)]
pub enum ProbeSpec {
    Tcp(Target),
    Http {
        target: Target,
        urls: Vec<UrlCheck>,
        virtualhost: Option<String>,
    },
    Https {
        target: Target,
        urls: Vec<UrlCheck>,
        virtualhost: Option<String>,
        tls: std::sync::Arc<rustls::ClientConfig>,
    },
    Misc {
        argv: Vec<String>,
        run_as: Option<RunAs>,
        timeout: Duration,
        dynamic: bool,
    },
    Udp {
        target: Target,
        check: ha_config::model::UdpCheck,
    },
    Ping(Target),
    Dns {
        target: Target,
        check: ha_config::model::DnsCheck,
    },
    Smtp {
        target: Target,
        helo_name: String,
    },
    /// FILE_CHECK: the file's number, with the weight in effect and the real server's
    /// configured weight.
    File {
        path: std::path::PathBuf,
        weight: i32,
        reverse: bool,
        rs_weight: u32,
    },
}

/// Identifies a checker: its virtual server, real server and kind (with its index among
/// the real server's checkers).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CheckerId {
    // Shared, not copied: the runner, the hub and the checker's actor each hold the ids
    // of 10,000s of checks.
    pub vs: std::sync::Arc<str>,
    pub rs: std::sync::Arc<str>,
    pub checker: std::sync::Arc<str>,
}

impl std::fmt::Display for CheckerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} {}", self.vs, self.rs, self.checker)
    }
}

/// A checker's verdict changed (or its dynamic weight did).
#[derive(Clone, Debug, PartialEq, Eq, Message)]
#[rtype(result = "()")]
pub struct CheckEvent {
    pub id: CheckerId,
    pub from: Health,
    pub to: Health,
    pub weight: Option<u32>,
    pub reason: String,
    pub at: SystemTime,
}

pub struct CheckerActor {
    /// Every (virtual server, real server, checker) this probe stands for: identical
    /// checks of one real server in several virtual servers are probed once.
    ids: Vec<CheckerId>,
    core: CheckerCore,
    probe: std::sync::Arc<ProbeSpec>,
    sink: Recipient<CheckEvent>,
    unit: f64,
    /// When the next probe is due (for the lateness statistics).
    due: std::time::Instant,
    /// Whether a verdict was sent yet: the first result is always reported (a hub that kept
    /// an older verdict across a reconfiguration must learn the current one).
    reported: bool,
}

impl CheckerActor {
    /// `unit`: a random number in [0, 1) for the warmup delay.
    pub fn new(
        ids: Vec<CheckerId>,
        timing: Timing,
        probe: ProbeSpec,
        sink: Recipient<CheckEvent>,
        unit: f64,
    ) -> Self {
        CheckerActor {
            ids,
            core: CheckerCore::new(timing),
            probe: std::sync::Arc::new(probe),
            sink,
            unit,
            due: std::time::Instant::now(),
            reported: false,
        }
    }

    fn schedule(&mut self, delay: Duration, ctx: &mut Context<Self>) {
        self.due = std::time::Instant::now() + delay;
        ctx.run_later(delay, |act, ctx| act.run_probe(ctx, true));
    }

    /// One probe; `on_schedule`: the periodic one (which schedules the next), not one the
    /// file's change asked for.
    fn run_probe(&mut self, ctx: &mut Context<Self>, on_schedule: bool) {
        if let ProbeSpec::File { path, .. } = &*self.probe {
            // keepalived ignores a number it cannot take: the verdict stays as it was.
            if crate::track::file::read_value(path).is_none() {
                tracing::warn!(file = %path.display(), "FILE_CHECK: invalid number in the file: ignored");
                if on_schedule {
                    let next = self.core.timing().delay_loop;
                    self.schedule(next, ctx);
                }
                return;
            }
        }
        super::stats::STATS.record(self.due.elapsed());
        let timeout = self.core.timing().connect_timeout;
        let spec = self.probe.clone();
        let kind = match &*spec {
            ProbeSpec::Tcp(_) => 0,
            ProbeSpec::Http { .. } => 1,
            ProbeSpec::Https { .. } => 2,
            ProbeSpec::Misc { .. } => 3,
            ProbeSpec::Udp { .. } => 4,
            ProbeSpec::Ping(_) => 5,
            ProbeSpec::Dns { .. } => 6,
            ProbeSpec::Smtp { .. } => 7,
            ProbeSpec::File { .. } => 8,
        };
        let started = std::time::Instant::now();
        let fut = probe_future(spec, timeout);
        // `wait`: one probe at a time per checker.
        ctx.wait(fut.into_actor(self).map(move |r, act, ctx| {
            super::stats::STATS.probe_took(kind, started.elapsed());
            let (t, next) = act.core.on_result(&r);
            let t = t.or_else(|| {
                (!act.reported).then(|| super::schedule::Transition {
                    from: act.core.health(),
                    to: act.core.health(),
                    reason: r.reason.clone(),
                })
            });
            if let Some(t) = t {
                act.reported = true;
                let at = SystemTime::now();
                for id in &act.ids {
                    tracing::info!(checker = %id, from = %t.from, to = %t.to, reason = %t.reason, "check transition");
                    act.sink.do_send(CheckEvent {
                        id: id.clone(),
                        from: t.from,
                        to: t.to,
                        weight: act.core.weight(),
                        reason: t.reason.clone(),
                        at,
                    });
                }
            }
            if on_schedule {
                act.schedule(next, ctx);
            }
        }));
    }
}

/// One probe of `spec`, boxed by kind: a future holding every kind's state would be as
/// large as the largest (an HTTPS probe: about 11 KB), and a director with 40,000 TCP
/// checks waiting on unanswered connects holds that many at once.
fn probe_future(spec: std::sync::Arc<ProbeSpec>, timeout: Duration) -> ProbeFuture {
    match &*spec {
        ProbeSpec::Tcp(_) => Box::pin(async move {
            match &*spec {
                ProbeSpec::Tcp(t) => probe::tcp(t, timeout).await,
                _ => ProbeResult::down("internal: probe kind changed under the probe"),
            }
        }),
        ProbeSpec::Http { .. } => Box::pin(async move {
            match &*spec {
                ProbeSpec::Http {
                    target,
                    urls,
                    virtualhost,
                } => probe::http(target, urls, virtualhost.as_deref(), timeout).await,
                _ => ProbeResult::down("internal: probe kind changed under the probe"),
            }
        }),
        ProbeSpec::Https { .. } => Box::pin(async move {
            match &*spec {
                ProbeSpec::Https {
                    target,
                    urls,
                    virtualhost,
                    tls,
                } => probe::https(target, urls, virtualhost.as_deref(), timeout, tls.clone()).await,
                _ => ProbeResult::down("internal: probe kind changed under the probe"),
            }
        }),
        ProbeSpec::Misc { .. } => Box::pin(async move {
            match &*spec {
                ProbeSpec::Misc {
                    argv,
                    run_as,
                    timeout,
                    dynamic,
                } => probe::misc(argv, *run_as, *timeout, *dynamic).await,
                _ => ProbeResult::down("internal: probe kind changed under the probe"),
            }
        }),
        ProbeSpec::Udp { .. } => Box::pin(async move {
            match &*spec {
                ProbeSpec::Udp { target, check } => super::datagram::udp(target, check, timeout).await,
                _ => ProbeResult::down("internal: probe kind changed under the probe"),
            }
        }),
        ProbeSpec::Smtp { .. } => Box::pin(async move {
            match &*spec {
                ProbeSpec::Smtp { target, helo_name } => probe::smtp(target, helo_name, timeout).await,
                _ => ProbeResult::down("internal: probe kind changed under the probe"),
            }
        }),
        ProbeSpec::Dns { .. } => Box::pin(async move {
            match &*spec {
                ProbeSpec::Dns { target, check } => super::datagram::dns(target, check, timeout).await,
                _ => ProbeResult::down("internal: probe kind changed under the probe"),
            }
        }),
        ProbeSpec::Ping(_) => Box::pin(async move {
            match &*spec {
                ProbeSpec::Ping(target) => super::datagram::ping(target, timeout).await,
                _ => ProbeResult::down("internal: probe kind changed under the probe"),
            }
        }),
        ProbeSpec::File {
            path,
            weight,
            reverse,
            rs_weight,
        } => {
            let r = match crate::track::file::read_value(path) {
                Some(v) => probe::file(v, *weight, *reverse, *rs_weight),
                None => ProbeResult::down(format!("{}: not a number keepalived accepts", path.display())),
            };
            Box::pin(std::future::ready(r))
        }
    }
}

type ProbeFuture = std::pin::Pin<Box<dyn std::future::Future<Output = ProbeResult>>>;

/// The (virtual server, real server, checker) ids this probe now stands for.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetIds(pub Vec<CheckerId>);

/// Stop probing (the checker left the configuration).
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopChecker;

impl Handler<SetIds> for CheckerActor {
    type Result = ();

    fn handle(&mut self, SetIds(ids): SetIds, _ctx: &mut Context<Self>) {
        // Virtual servers that start sharing this probe learn its verdict now, not at its
        // next change (which may never come).
        let h = self.core.health();
        for id in ids.iter().filter(|id| !self.ids.contains(id)) {
            self.sink.do_send(CheckEvent {
                id: id.clone(),
                from: h,
                to: h,
                weight: self.core.weight(),
                reason: "reconfigured".into(),
                at: SystemTime::now(),
            });
        }
        self.ids = ids;
    }
}

impl Handler<StopChecker> for CheckerActor {
    type Result = ();

    fn handle(&mut self, _: StopChecker, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

impl CheckerActor {
    /// The current verdict (for a hub that learns of this probe after a reconfiguration).
    pub fn health(&self) -> super::schedule::Health {
        self.core.health()
    }
}

impl Actor for CheckerActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if let ProbeSpec::File { path, .. } = &*self.probe {
            // Read again whenever the kernel says the file changed (as keepalived does).
            let dir = path.parent().unwrap_or(std::path::Path::new("/"));
            let watch = inotify::Inotify::init().and_then(|i| {
                i.watches().add(
                    dir,
                    inotify::WatchMask::CLOSE_WRITE
                        | inotify::WatchMask::MOVED_TO
                        | inotify::WatchMask::MOVED_FROM
                        | inotify::WatchMask::DELETE,
                )?;
                i.into_event_stream([0u8; 1024])
            });
            match watch {
                Ok(stream) => {
                    ctx.add_stream(stream);
                }
                Err(e) => {
                    let ids: Vec<String> = self.ids.iter().map(|i| i.to_string()).collect();
                    tracing::warn!(checkers = ?ids, file = %path.display(), "cannot watch the file ({e}); read at each delay_loop");
                }
            }
        }
        let first = self.core.first_delay(self.unit);
        self.schedule(first, ctx);
    }
}

impl StreamHandler<std::io::Result<inotify::Event<std::ffi::OsString>>> for CheckerActor {
    fn handle(&mut self, ev: std::io::Result<inotify::Event<std::ffi::OsString>>, ctx: &mut Context<Self>) {
        let ProbeSpec::File { path, .. } = &*self.probe else {
            return;
        };
        let ours = match &ev {
            Ok(e) => e.name.as_deref() == path.file_name(),
            Err(_) => true, // overflowed: it may have changed unseen
        };
        if ours {
            self.run_probe(ctx, false);
        }
    }

    fn finished(&mut self, _ctx: &mut Context<Self>) {}
}

//! One actix actor per VRRP instance: the I/O shell around [`Instance`]. It reads the raw
//! socket, arms one timer at the core's deadline, and carries out the core's actions
//! (adverts, VIPs, gratuitous ARP), reporting each transition as a [`VrrpEvent`].

use super::check::{check, RxMeta};
use super::instance::{Action, Input, Instance, Reason, State};
use super::io::{Addresses, GarpSender, Iface, VrrpSocket};
use super::notify::{self, NotifyQueue};
use super::packet::Advert;
use super::setup::InstanceSpec;
use super::trackers::TrackerReading;
use super::tracking::{effective, Reading, TrackerId, Weight};
use crate::script::{lookup_user, RunAs};
use actix::prelude::*;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// A state change of an instance, for the event history and notify scripts.
#[derive(Clone, Debug, PartialEq, Eq, Message)]
#[rtype(result = "()")]
pub struct VrrpEvent {
    pub instance: String,
    pub from: State,
    pub to: State,
    pub reason: String,
    pub priority: u8,
    pub at: SystemTime,
    /// A takeover by the fast path: the master whose director process was gone.
    pub fast_path_from: Option<IpAddr>,
    /// Set when only the effective priority changed (tracking), from this value to
    /// `priority`; then `from` and `to` are both the current state.
    pub priority_was: Option<u8>,
}

/// Its sync group wants this state.
#[derive(Clone, Copy, Debug, Message)]
#[rtype(result = "()")]
pub struct ForceState(pub State);

/// Joins the instance to its sync group (sent once, at start).
#[derive(Message)]
#[rtype(result = "()")]
pub struct JoinGroup(pub Recipient<super::sync_group::MemberTransition>);

/// Graceful stop: priority-0 advert if MASTER, VIPs removed, then the actor stops.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Stop;

/// The instance's state for status displays.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceStatus {
    pub name: String,
    pub state: State,
    pub priority: u8,
    pub last_master: Option<IpAddr>,
    /// Rejected adverts by cause.
    pub rejected: BTreeMap<String, u64>,
    pub adverts_received: u64,
    pub adverts_sent: u64,
    /// A claim of MASTER waits for the config fence.
    pub held_by_fence: bool,
}

/// Holds (`true`) or lifts the config fence (see `Input::Fence`).
#[derive(Clone, Copy, Debug, Message)]
#[rtype(result = "()")]
pub struct SetFence(pub bool);

/// The quorum gate: whether this director is in contact with a majority of the cluster's
/// voters (see `Input::Quorum`).
#[derive(Clone, Copy, Debug, Message)]
#[rtype(result = "()")]
pub struct SetQuorum(pub bool);

/// The cluster transport's death signal: the director with these VRRP addresses has lost
/// its process (see `Input::PeerGone`).
#[derive(Clone, Debug, Message)]
#[rtype(result = "()")]
pub struct PeerGone(pub Vec<std::net::IpAddr>);

#[derive(Message)]
#[rtype(result = "InstanceStatus")]
pub struct GetStatus;

struct Datagram(std::io::Result<Result<super::io::Received, super::ipv4::Ipv4Error>>);

/// A tracked interface (by index) went up (`true`) or down.
#[derive(Message)]
#[rtype(result = "()")]
struct LinkState(u32, bool);

/// A tracked interface and its state.
struct TrackedIface {
    name: String,
    index: u32,
    weight: Weight,
    up: bool,
}

pub struct InstanceActor {
    spec: InstanceSpec,
    core: Instance,
    origin: Instant,
    iface: Iface,
    socket: Arc<VrrpSocket>,
    addrs: Addresses,
    garp: GarpSender,
    /// Where `smtp_alert` mails go (None: no mail set up).
    mailer: Option<Recipient<super::alert::Alert>>,
    /// Gratuitous ARP / NA senders of the other interfaces VIPs name (`dev`).
    other_garp: BTreeMap<String, GarpSender>,
    timer: Option<SpawnHandle>,
    rejected: BTreeMap<String, u64>,
    received: u64,
    sent: u64,
    events: Option<Recipient<VrrpEvent>>,
    /// Tracked scripts, files and processes: weight, reading (None until known).
    trackers: BTreeMap<TrackerId, (Weight, Option<Reading>)>,
    ifaces: Vec<TrackedIface>,
    /// Started (tracking allowed it: no FAULT-tracked script still unknown).
    running: bool,
    tracking: (u8, bool),
    notify: Option<NotifyQueue>,
    /// Scripts run as this user unless they name one (global `script_user`).
    default_user: Option<RunAs>,
    group: Option<Recipient<super::sync_group::MemberTransition>>,
    /// notify for MASTER waits until the VIPs are added (as keepalived orders them).
    master_notify: Option<u8>,
    /// Stop received: no more inputs are acted on.
    stopping: bool,
}

impl InstanceActor {
    /// Mails the change (`smtp_alert`), if the instance asks for it and mail is set up.
    fn alert(&self, state: &str) {
        if let (true, Some(m)) = (self.spec.smtp_alert, &self.mailer) {
            m.do_send(super::alert::Alert {
                source: super::alert::Source::Instance,
                name: self.spec.name.clone(),
                state: state.to_string(),
            });
        }
    }

    /// Sends `smtp_alert` mails through `mailer`.
    pub fn with_mailer(mut self, mailer: Option<Recipient<super::alert::Alert>>) -> Self {
        self.mailer = mailer;
        self
    }
}

/// The interface a VIP goes on: its own `dev`, else the instance's.
fn vip_index(v: &super::setup::VipSpec, instance: u32) -> Option<u32> {
    match &v.dev {
        Some(d) => super::io::index_of(d),
        None => Some(instance),
    }
}

impl InstanceActor {
    /// Starts with the config fence held (no claim of MASTER until it is lifted).
    pub fn fenced(mut self, held: bool) -> Self {
        let _ = self.core.handle(Duration::ZERO, Input::Fence(held));
        self
    }

    /// Starts with the quorum gate's verdict: without contact it starts in FAULT.
    pub fn in_contact(mut self, in_contact: bool) -> Self {
        let _ = self.core.handle(Duration::ZERO, Input::Quorum(in_contact));
        self
    }

    pub fn new(
        spec: InstanceSpec,
        iface: Iface,
        socket: Arc<VrrpSocket>,
        addrs: Addresses,
        garp: GarpSender,
        events: Option<Recipient<VrrpEvent>>,
        default_user: Option<RunAs>,
    ) -> Self {
        let trackers = spec
            .trackers
            .iter()
            .map(|(n, w)| (n.clone(), (*w, None)))
            .collect();
        let base = spec.params.priority;
        InstanceActor {
            trackers,
            ifaces: Vec::new(),
            running: false,
            tracking: (base, false),
            notify: None,
            group: None,
            master_notify: None,
            stopping: false,
            default_user,
            core: Instance::new(spec.params.clone()),
            spec,
            origin: Instant::now(),
            iface,
            socket,
            addrs,
            garp,
            other_garp: BTreeMap::new(),
            mailer: None,
            timer: None,
            rejected: BTreeMap::new(),
            received: 0,
            sent: 0,
            events,
        }
    }

    fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    fn feed(&mut self, input: Input, ctx: &mut Context<Self>) {
        if self.stopping {
            return;
        }
        let actions = self.core.handle(self.now(), input);
        self.carry_out(actions, ctx);
        self.rearm(ctx);
    }

    fn rearm(&mut self, ctx: &mut Context<Self>) {
        if let Some(h) = self.timer.take() {
            ctx.cancel_future(h);
        }
        if let Some(deadline) = self.core.deadline() {
            let delay = deadline.saturating_sub(self.now());
            self.timer = Some(ctx.run_later(delay, |act, ctx| {
                act.timer = None;
                act.feed(Input::Timer, ctx);
            }));
        }
    }

    fn carry_out(&mut self, actions: Vec<Action>, ctx: &mut Context<Self>) {
        let mut garp_follows_add = false;
        for a in actions {
            match a {
                Action::Send { priority } => self.send_advert(priority),
                Action::AddVips => {
                    garp_follows_add = true;
                    self.add_vips_then_garp(ctx);
                }
                Action::Garp if garp_follows_add => {}
                Action::Garp => self.send_garp(),
                Action::DelVips => self.del_vips(ctx),
                Action::Transition {
                    from,
                    to,
                    reason,
                    priority,
                } => self.transition(from, to, reason, priority),
            }
        }
    }

    fn send_advert(&mut self, priority: u8) {
        let advert = Advert {
            version: self.spec.version,
            vrid: self.spec.params.vrid,
            priority,
            interval_cs: self.spec.policy.interval_cs,
            auth: self.spec.auth,
            addrs: self
                .spec
                .vips
                .iter()
                .filter(|v| v.advertised)
                .map(|v| v.addr)
                .collect(),
            checksum: 0,
        };
        for dst in &self.spec.destinations {
            let bytes = match advert.emit(self.spec.src, *dst) {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(instance = %self.spec.name, "cannot encode advert: {e}");
                    return;
                }
            };
            match self.socket.send_to(&bytes, *dst) {
                Ok(()) => self.sent += 1,
                Err(e) => tracing::warn!(instance = %self.spec.name, %dst, "sending advert: {e}"),
            }
        }
    }

    fn add_vips_then_garp(&mut self, ctx: &mut Context<Self>) {
        let addrs = self.addrs.clone();
        let vips = self.spec.vips.clone();
        let routes = self.spec.routes.clone();
        let rules = self.spec.rules.clone();
        let index = self.iface.index;
        let name = self.spec.name.clone();
        // As keepalived: the addresses, then the routes, then the rules.
        let fut = async move {
            for v in &vips {
                let Some(i) = vip_index(v, index) else {
                    tracing::error!(instance = %name, vip = %v.addr, dev = ?v.dev, "adding VIP: no such interface");
                    continue;
                };
                if let Err(e) = addrs.add(i, v).await {
                    tracing::error!(instance = %name, vip = %v.addr, "adding VIP: {e}");
                }
            }
            let routing = addrs.routing();
            for r in &routes {
                match routing.add_route(r).await {
                    Ok(()) => {
                        tracing::info!(instance = %name, route = %ha_config::printer::route_words(r).join(" "), "virtual route added")
                    }
                    Err(e) => {
                        tracing::error!(instance = %name, route = %ha_config::printer::route_words(r).join(" "), "adding virtual route: {e}")
                    }
                }
            }
            for r in &rules {
                match routing.add_rule(r).await {
                    Ok(()) => {
                        tracing::info!(instance = %name, rule = %ha_config::printer::rule_words(r).join(" "), "virtual rule added")
                    }
                    Err(e) => {
                        tracing::error!(instance = %name, rule = %ha_config::printer::rule_words(r).join(" "), "adding virtual rule: {e}")
                    }
                }
            }
        };
        // `wait`: VIP changes apply in the order the core asked for them.
        ctx.wait(fut.into_actor(self).map(|_, act, ctx| {
            if let Some(priority) = act.master_notify.take() {
                if let Some(q) = &act.notify {
                    q.push(act.notify_commands(Some(State::Master), priority));
                }
            }
            if act.core.state() == State::Master {
                act.send_garp();
                if !act.spec.garp_delay.is_zero() {
                    ctx.run_later(act.spec.garp_delay, |act, _| {
                        if act.core.state() == State::Master {
                            act.send_garp();
                        }
                    });
                }
            }
        }));
    }

    fn del_vips(&mut self, ctx: &mut Context<Self>) {
        let fut = self.removal();
        ctx.wait(fut.into_actor(self));
    }

    /// Removes every rule, route and VIP of the instance, in that order (absent ones are
    /// fine).
    fn removal(&self) -> impl std::future::Future<Output = ()> + 'static {
        let addrs = self.addrs.clone();
        let vips = self.spec.vips.clone();
        let routes = self.spec.routes.clone();
        let rules = self.spec.rules.clone();
        let index = self.iface.index;
        let name = self.spec.name.clone();
        async move {
            let routing = addrs.routing();
            for r in &rules {
                if let Err(e) = routing.del_rule(r).await {
                    tracing::error!(instance = %name, rule = %ha_config::printer::rule_words(r).join(" "), "removing virtual rule: {e}");
                }
            }
            for r in &routes {
                if let Err(e) = routing.del_route(r).await {
                    tracing::error!(instance = %name, route = %ha_config::printer::route_words(r).join(" "), "removing virtual route: {e}");
                }
            }
            for v in &vips {
                let Some(i) = vip_index(v, index) else { continue };
                if let Err(e) = addrs.del(i, v.addr, v.prefix).await {
                    tracing::error!(instance = %name, vip = %v.addr, "removing VIP: {e}");
                }
            }
        }
    }

    fn send_garp(&mut self) {
        let n = self.spec.garp_repeat;
        self.send_garp_n(n);
    }

    fn send_garp_n(&mut self, n: u32) {
        for v in &self.spec.vips {
            let sender = match &v.dev {
                Some(d) if *d != self.spec.interface => match self.other_garp.get_mut(d) {
                    Some(s) => s,
                    None => continue, // said when the instance started
                },
                _ => &mut self.garp,
            };
            if let Err(e) = sender.send(v.addr, n) {
                tracing::warn!(instance = %self.spec.name, vip = %v.addr, "gratuitous ARP / NA: {e}");
            }
        }
    }

    /// The user a script runs as (`Some(None)`: root); `None` when its user does not
    /// exist: the script is not run (never as root instead).
    fn script_user(&self, s: &ha_config::model::Script) -> Option<Option<RunAs>> {
        match &s.user {
            Some(u) => match lookup_user(&u.user, u.group.as_deref()) {
                Ok(r) => Some(Some(r)),
                Err(e) => {
                    tracing::error!(instance = %self.spec.name, script = %s.cmd, "script user: {e}; not run");
                    None
                }
            },
            None => Some(self.default_user),
        }
    }

    fn notify_commands(&self, state: Option<State>, priority: u8) -> Vec<(Vec<String>, Option<RunAs>)> {
        notify::commands(&self.spec.notify, &self.spec.name, state, priority, &|s| {
            self.script_user(s)
        })
    }

    fn transition(&mut self, from: State, to: State, reason: Reason, priority: u8) {
        tracing::info!(instance = %self.spec.name, %from, %to, %reason, priority, "VRRP transition");
        self.alert(&to.to_string());
        if to == State::Master {
            self.master_notify = Some(priority);
        } else if to != State::Init {
            if let Some(q) = &self.notify {
                q.push(self.notify_commands(Some(to), priority));
            }
        }
        if reason != Reason::SyncGroup {
            if let Some(g) = &self.group {
                g.do_send(super::sync_group::MemberTransition {
                    member: self.spec.name.clone(),
                    to,
                    priority,
                });
            }
        }
        if let Some(r) = &self.events {
            r.do_send(VrrpEvent {
                instance: self.spec.name.clone(),
                from,
                to,
                reason: reason.to_string(),
                priority,
                at: SystemTime::now(),
                fast_path_from: match reason {
                    Reason::MasterProcessGone { master } => Some(master),
                    _ => None,
                },
                priority_was: None,
            });
        }
    }

    /// Feeds a tracking change; reports a change of the effective priority.
    fn feed_tracking(&mut self, priority: u8, fault: bool, ctx: &mut Context<Self>) {
        let was = self.core.priority();
        self.feed(Input::Tracking { priority, fault }, ctx);
        let now = self.core.priority();
        if now != was {
            tracing::info!(instance = %self.spec.name, from = was, to = now, "VRRP priority changed");
            if let Some(r) = &self.events {
                let state = self.core.state();
                r.do_send(VrrpEvent {
                    instance: self.spec.name.clone(),
                    from: state,
                    to: state,
                    reason: "tracking".into(),
                    priority: now,
                    at: SystemTime::now(),
                    fast_path_from: None,
                    priority_was: Some(was),
                });
            }
        }
    }

    fn reject(&mut self, cause: String, from: IpAddr) {
        let n = self.rejected.entry(cause.clone()).or_insert(0);
        *n += 1;
        if *n == 1 {
            // Once per cause; the counters keep the totals.
            tracing::warn!(instance = %self.spec.name, %from, %cause, "advert rejected");
        }
    }

    fn on_datagram(&mut self, d: super::io::Received, ctx: &mut Context<Self>) {
        let src = d.src;
        if src == self.spec.src {
            return; // our own advert
        }
        let advert = match Advert::parse(&d.payload, src, d.dst) {
            Ok(a) => a,
            Err(e) => return self.reject(e.to_string(), src),
        };
        if advert.vrid != self.spec.params.vrid {
            return; // another virtual router on this link
        }
        let meta = RxMeta {
            src,
            ttl: d.ttl,
            dst_multicast: d.dst.is_multicast(),
        };
        if let Err(r) = check(&self.spec.policy, &advert, &meta, self.core.last_master()) {
            return self.reject(r.to_string(), src);
        }
        self.received += 1;
        let interval = Duration::from_millis(u64::from(advert.interval_cs) * 10);
        self.feed(
            Input::Advert {
                from: src,
                priority: advert.priority,
                interval,
            },
            ctx,
        );
    }
}

impl Actor for InstanceActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let socket = self.socket.clone();
        let stream = futures::stream::unfold(socket, |s| async move {
            let r = s.recv().await;
            Some((Datagram(r), s))
        });
        ctx.add_stream(stream);
        self.notify = Some(NotifyQueue::start(self.spec.name.clone()));
        for v in &self.spec.vips {
            let Some(d) = v.dev.as_ref().filter(|d| **d != self.spec.interface) else {
                continue;
            };
            if self.other_garp.contains_key(d) {
                continue;
            }
            match super::io::iface(d).and_then(|i| GarpSender::open(&i)) {
                Ok(g) => {
                    self.other_garp.insert(d.clone(), g);
                }
                Err(e) => {
                    tracing::error!(instance = %self.spec.name, dev = %d, "no gratuitous ARP / NA for the VIPs on it: {e}")
                }
            }
        }
        if !self.spec.garp_refresh.is_zero() {
            // `garp_master_refresh`: periodic GARPs while MASTER (switch caches age out).
            ctx.run_interval(self.spec.garp_refresh, |act, _| {
                if act.core.state() == State::Master {
                    let n = act.spec.garp_refresh_repeat;
                    act.send_garp_n(n);
                }
            });
        }
        for (name, weight) in self.spec.track_interfaces.clone() {
            let index = if name == self.iface.name {
                self.iface.index
            } else {
                match super::io::iface(&name) {
                    Ok(i) => i.index,
                    Err(e) => {
                        tracing::error!(instance = %self.spec.name, "track_interface {name}: {e}");
                        continue;
                    }
                }
            };
            match super::io::link_states(index) {
                Ok(links) => {
                    ctx.add_message_stream(futures::StreamExt::map(links, move |up| LinkState(index, up)));
                }
                Err(e) => tracing::error!(instance = %self.spec.name, "cannot watch {name}: {e}"),
            }
            // Read the state after subscribing, so no change falls between the two.
            let up = super::io::iface(&name).map(|i| i.up).unwrap_or(false);
            self.ifaces.push(TrackedIface {
                name,
                index,
                weight,
                up,
            });
        }
        tracing::info!(
            instance = %self.spec.name,
            interface = %self.iface.name,
            vrid = self.spec.params.vrid,
            priority = self.spec.params.priority,
            "VRRP instance started"
        );
        self.retrack(ctx);
    }
}

impl InstanceActor {
    /// Recomputes priority and fault from everything tracked; starts the instance once
    /// every FAULT-tracked object has a reading.
    fn retrack(&mut self, ctx: &mut Context<Self>) {
        let waiting = self
            .trackers
            .values()
            .any(|(w, v)| v.is_none() && w.weight.unwrap_or(0) == 0);
        let items = self
            .ifaces
            .iter()
            .map(|i| (i.weight, Reading::Good(i.up)))
            .chain(self.trackers.values().filter_map(|(w, v)| v.map(|r| (*w, r))));
        let (priority, fault) = effective(self.spec.params.priority, items);
        if !self.running {
            if waiting {
                return;
            }
            self.running = true;
            self.tracking = (priority, fault);
            self.feed(Input::Start { fault }, ctx);
            if priority != self.spec.params.priority {
                self.feed_tracking(priority, fault, ctx);
            }
        } else if (priority, fault) != self.tracking {
            tracing::info!(instance = %self.spec.name, priority, fault, "tracking changed");
            self.tracking = (priority, fault);
            self.feed_tracking(priority, fault, ctx);
        }
    }
}

impl StreamHandler<Datagram> for InstanceActor {
    fn handle(&mut self, item: Datagram, ctx: &mut Context<Self>) {
        match item.0 {
            Ok(Ok(d)) => self.on_datagram(d, ctx),
            Ok(Err(e)) => self.reject(format!("ip: {e}"), IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)),
            Err(e) => tracing::warn!(instance = %self.spec.name, "receiving: {e}"),
        }
    }

    fn finished(&mut self, _ctx: &mut Context<Self>) {}
}

impl Handler<LinkState> for InstanceActor {
    type Result = ();

    fn handle(&mut self, LinkState(index, up): LinkState, ctx: &mut Context<Self>) {
        let mut changed = false;
        for i in self.ifaces.iter_mut().filter(|i| i.index == index && i.up != up) {
            i.up = up;
            changed = true;
            tracing::info!(instance = %self.spec.name, interface = %i.name, up, "link state");
        }
        if index == self.iface.index {
            self.iface.up = up;
        }
        if changed {
            self.retrack(ctx);
        }
    }
}

impl Handler<ForceState> for InstanceActor {
    type Result = ();

    fn handle(&mut self, ForceState(to): ForceState, ctx: &mut Context<Self>) {
        if self.running {
            self.feed(Input::Force(to), ctx);
        }
    }
}

impl Handler<JoinGroup> for InstanceActor {
    type Result = ();

    fn handle(&mut self, JoinGroup(g): JoinGroup, _ctx: &mut Context<Self>) {
        // The start happened before joining: a member already in FAULT tells the group now.
        if self.core.state() == State::Fault {
            g.do_send(super::sync_group::MemberTransition {
                member: self.spec.name.clone(),
                to: State::Fault,
                priority: self.core.priority(),
            });
        }
        self.group = Some(g);
    }
}

impl Handler<TrackerReading> for InstanceActor {
    type Result = ();

    fn handle(&mut self, v: TrackerReading, ctx: &mut Context<Self>) {
        if let Some(entry) = self.trackers.get_mut(&v.id) {
            if entry.1 != Some(v.reading) {
                tracing::debug!(instance = %self.spec.name, tracker = %v.id, reading = ?v.reading, "tracked object reading");
            }
            entry.1 = Some(v.reading);
            self.retrack(ctx);
        }
    }
}

impl Handler<Stop> for InstanceActor {
    /// Answered once the VIPs are gone, so the caller may exit right after.
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: Stop, ctx: &mut Context<Self>) -> Self::Result {
        self.stopping = true;
        if let Some(h) = self.timer.take() {
            ctx.cancel_future(h);
        }
        let actions = self.core.handle(self.now(), Input::Shutdown);
        // VIPs are removed below whatever the state (a crash may have left them).
        let actions = actions
            .into_iter()
            .filter(|a| matches!(a, Action::Send { .. } | Action::Transition { .. }))
            .collect();
        self.carry_out(actions, ctx);
        self.alert("STOP");
        let stop_scripts = self.notify_commands(None, self.core.priority());
        let removal = self.removal();
        let fut = async move {
            removal.await;
            for (argv, run_as) in stop_scripts {
                let _ = crate::script::run(&argv, run_as, std::time::Duration::from_secs(10)).await;
            }
        };
        Box::pin(fut.into_actor(self).map(|_, _, ctx| ctx.stop()))
    }
}

impl Handler<GetStatus> for InstanceActor {
    type Result = MessageResult<GetStatus>;

    fn handle(&mut self, _: GetStatus, _ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(InstanceStatus {
            name: self.spec.name.clone(),
            state: self.core.state(),
            priority: self.core.priority(),
            last_master: self.core.last_master(),
            rejected: self.rejected.clone(),
            adverts_received: self.received,
            adverts_sent: self.sent,
            held_by_fence: self.core.held_by_fence(),
        })
    }
}

impl Handler<PeerGone> for InstanceActor {
    type Result = ();

    fn handle(&mut self, PeerGone(addrs): PeerGone, ctx: &mut Context<Self>) {
        for a in addrs {
            self.feed(Input::PeerGone(a), ctx);
        }
    }
}

impl Handler<SetQuorum> for InstanceActor {
    type Result = ();

    fn handle(&mut self, SetQuorum(in_contact): SetQuorum, ctx: &mut Context<Self>) {
        self.feed(Input::Quorum(in_contact), ctx);
    }
}

impl Handler<SetFence> for InstanceActor {
    type Result = ();

    fn handle(&mut self, SetFence(held): SetFence, ctx: &mut Context<Self>) {
        self.feed(Input::Fence(held), ctx);
    }
}

//! `vrrp_sync_group`: instances that move together (keepalived semantics). When a member
//! changes state on its own, the others are forced to follow: MASTER with MASTER, BACKUP
//! with BACKUP, FAULT with FAULT. Forced changes do not force anyone in turn.

use super::actor::ForceState;
use super::instance::State;
use super::notify::{self, NotifyQueue};
use crate::script::RunAs;
use actix::prelude::*;
use ha_config::model::Notify;

/// What the other members must do after `to` happened on its own in one of them.
pub fn follow(to: State) -> Option<State> {
    match to {
        State::Master | State::Backup | State::Fault => Some(to),
        State::Init => None,
    }
}

/// A member's own (not forced) transition.
#[derive(Clone, Debug, Message)]
#[rtype(result = "()")]
pub struct MemberTransition {
    pub member: String,
    pub to: State,
    pub priority: u8,
}

pub struct SyncGroupActor {
    name: String,
    members: Vec<(String, Recipient<ForceState>)>,
    notify: Notify,
    user: Option<RunAs>,
    queue: Option<NotifyQueue>,
    state: Option<State>,
    /// Members in FAULT on their own account: the group stays in FAULT until none is.
    faulty: std::collections::BTreeSet<String>,
    /// Where the group's `smtp_alert` mails go (None: it sends none).
    mailer: Option<Recipient<super::alert::Alert>>,
}

impl SyncGroupActor {
    pub fn new(
        name: String,
        members: Vec<(String, Recipient<ForceState>)>,
        notify: Notify,
        user: Option<RunAs>,
    ) -> Self {
        SyncGroupActor {
            name,
            members,
            notify,
            user,
            queue: None,
            state: None,
            faulty: std::collections::BTreeSet::new(),
            mailer: None,
        }
    }

    /// Mails the group's state changes (`smtp_alert`) through `mailer`.
    pub fn with_mailer(mut self, mailer: Option<Recipient<super::alert::Alert>>) -> Self {
        self.mailer = mailer;
        self
    }
}

impl Actor for SyncGroupActor {
    type Context = Context<Self>;

    fn started(&mut self, _ctx: &mut Context<Self>) {
        self.queue = Some(NotifyQueue::start(format!("group {}", self.name)));
    }
}

impl Handler<MemberTransition> for SyncGroupActor {
    type Result = ();

    fn handle(&mut self, t: MemberTransition, _ctx: &mut Context<Self>) {
        let Some(to) = follow(t.to) else { return };
        if to == State::Fault {
            self.faulty.insert(t.member.clone());
        } else {
            self.faulty.remove(&t.member);
            if !self.faulty.is_empty() {
                // Another member is still faulty: this one stays in FAULT with the group.
                if let Some((_, r)) = self.members.iter().find(|(n, _)| *n == t.member) {
                    r.do_send(ForceState(State::Fault));
                }
                return;
            }
        }
        tracing::info!(group = %self.name, member = %t.member, state = %to, "sync group follows");
        for (name, r) in &self.members {
            if *name != t.member {
                r.do_send(ForceState(to));
            }
        }
        if self.state != Some(to) {
            self.state = Some(to);
            if let Some(m) = &self.mailer {
                m.do_send(super::alert::Alert {
                    source: super::alert::Source::Group,
                    name: self.name.clone(),
                    state: to.to_string(),
                });
            }
            if let Some(q) = &self.queue {
                let user = self.user;
                let mut cmds =
                    notify::commands(&self.notify, &self.name, Some(to), t.priority, &|_| Some(user));
                for c in cmds.iter_mut() {
                    // The generic `notify` of a group says GROUP, not INSTANCE.
                    if let Some(w) = c.0.iter_mut().rev().nth(3) {
                        if w == "INSTANCE" {
                            *w = "GROUP".into();
                        }
                    }
                }
                q.push(cmds);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_follow_each_other() {
        assert_eq!(follow(State::Fault), Some(State::Fault));
        assert_eq!(follow(State::Master), Some(State::Master));
        assert_eq!(follow(State::Init), None);
    }
}

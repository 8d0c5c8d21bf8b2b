//! What every tracker actor (`vrrp_script`, `track_file`, `vrrp_track_process`) speaks:
//! instances subscribe, the tracker tells them each reading that changes, and it is
//! retired when nothing tracks it any more (or its definition changed).

use super::tracking::{Reading, TrackerId};
use actix::prelude::*;

/// A tracked object's reading changed (or was first known).
#[derive(Clone, Debug, PartialEq, Eq, Message)]
#[rtype(result = "()")]
pub struct TrackerReading {
    pub id: TrackerId,
    pub reading: Reading,
}

/// One more instance tracks the object: it is told the current reading at once.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Subscribe(pub Recipient<TrackerReading>);

/// The object is no longer tracked (or its definition changed): stop.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Retire;

/// The instances tracking one object, and its last reading.
pub struct Subscribers {
    id: TrackerId,
    list: Vec<Recipient<TrackerReading>>,
    last: Option<Reading>,
}

impl Subscribers {
    pub fn new(id: TrackerId, list: Vec<Recipient<TrackerReading>>) -> Self {
        Subscribers { id, list, last: None }
    }

    pub fn id(&self) -> &TrackerId {
        &self.id
    }

    /// The last reading told.
    pub fn last(&self) -> Option<Reading> {
        self.last
    }

    /// Tells everyone a reading, if it differs from the last one told.
    pub fn tell(&mut self, reading: Reading) {
        if self.last == Some(reading) {
            return;
        }
        self.last = Some(reading);
        // Instances stopped by a reconfiguration drop out here.
        self.list.retain(|s| s.connected());
        for s in &self.list {
            s.do_send(TrackerReading {
                id: self.id.clone(),
                reading,
            });
        }
    }

    /// Adds a subscriber and tells it the last reading, if one is known.
    pub fn add(&mut self, s: Recipient<TrackerReading>) {
        if let Some(reading) = self.last {
            s.do_send(TrackerReading {
                id: self.id.clone(),
                reading,
            });
        }
        self.list.push(s);
    }
}

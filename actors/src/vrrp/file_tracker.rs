//! One actor per `track_file`: reads the number in the file at start and each time the
//! kernel says the file was written, moved or deleted (inotify on its directory, as
//! keepalived watches it), and tells the instances tracking it.

use super::trackers::{Retire, Subscribe, Subscribers, TrackerReading};
use super::tracking::{Reading, TrackerId};
use crate::track::file;
use actix::prelude::*;
use ha_config::model::{TrackFile, TrackedKind};
use inotify::{Event, Inotify, WatchMask};
use std::ffi::OsString;
use std::time::Duration;

pub struct FileTracker {
    def: TrackFile,
    path: std::path::PathBuf,
    subscribers: Subscribers,
}

impl FileTracker {
    pub fn new(def: TrackFile, subscribers: Vec<Recipient<TrackerReading>>) -> Self {
        let id = TrackerId {
            kind: TrackedKind::File,
            name: def.name.clone(),
        };
        FileTracker {
            path: file::watched_path(&def.file),
            def,
            subscribers: Subscribers::new(id, subscribers),
        }
    }

    fn read(&mut self) {
        match file::read_value(&self.path) {
            Some(v) => {
                if self.subscribers_differ(v) {
                    tracing::info!(track_file = %self.def.name, file = %self.def.file, value = v, "tracked file changed");
                }
                self.subscribers.tell(Reading::Value(v));
            }
            None => {
                tracing::warn!(track_file = %self.def.name, file = %self.def.file, "invalid number in the file: ignored")
            }
        }
    }

    fn subscribers_differ(&self, v: i64) -> bool {
        self.subscribers.last() != Some(Reading::Value(v))
    }

    fn watch(&mut self, ctx: &mut Context<Self>) -> std::io::Result<()> {
        let dir = self.path.parent().unwrap_or(std::path::Path::new("/"));
        let inotify = Inotify::init()?;
        inotify.watches().add(
            dir,
            WatchMask::CLOSE_WRITE | WatchMask::MOVED_TO | WatchMask::MOVED_FROM | WatchMask::DELETE,
        )?;
        let stream = inotify.into_event_stream([0u8; 4096])?;
        ctx.add_stream(stream);
        Ok(())
    }
}

impl Actor for FileTracker {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if let Err(e) = file::initialise(&self.def) {
            tracing::error!(track_file = %self.def.name, file = %self.def.file, "init_file: {e}");
        }
        if let Err(e) = self.watch(ctx) {
            // A directory that does not exist yet, or no inotify: read it every second.
            tracing::warn!(track_file = %self.def.name, file = %self.def.file, "cannot watch the file ({e}); reading it every second");
            ctx.run_interval(Duration::from_secs(1), |act, _| act.read());
        }
        self.read();
    }
}

impl StreamHandler<std::io::Result<Event<OsString>>> for FileTracker {
    fn handle(&mut self, ev: std::io::Result<Event<OsString>>, _ctx: &mut Context<Self>) {
        match ev {
            Ok(e) if e.name.as_deref() == self.path.file_name() => self.read(),
            Ok(_) => {}
            // Overflowed: the file may have changed unseen.
            Err(_) => self.read(),
        }
    }

    fn finished(&mut self, ctx: &mut Context<Self>) {
        tracing::warn!(track_file = %self.def.name, "file watch ended; reading it every second");
        ctx.run_interval(Duration::from_secs(1), |act, _| act.read());
    }
}

impl Handler<Subscribe> for FileTracker {
    type Result = ();

    fn handle(&mut self, Subscribe(s): Subscribe, _ctx: &mut Context<Self>) {
        self.subscribers.add(s);
    }
}

impl Handler<Retire> for FileTracker {
    type Result = ();

    fn handle(&mut self, _: Retire, ctx: &mut Context<Self>) {
        tracing::debug!(track_file = %self.def.name, "track_file retired");
        ctx.stop();
    }
}

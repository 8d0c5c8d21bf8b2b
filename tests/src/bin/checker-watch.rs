//! Runs the checkers of a keepalived.conf (the view of directors no `@` line names) and
//! prints each transition as one line, `MS VS RS CHECKER FROM->TO REASON` (`MS`: when the
//! checker decided, milliseconds since the Unix epoch), for tests that run it in a
//! namespace beside real servers.
//!
//! `checker-watch FILE`

use ::actors::check::actor::CheckEvent;
use ::actors::check::runner;
use actix::prelude::*;
use std::io::Write;
use std::time::UNIX_EPOCH;

struct Printer;

impl Actor for Printer {
    type Context = Context<Self>;
}

impl Handler<CheckEvent> for Printer {
    type Result = ();

    fn handle(&mut self, e: CheckEvent, _: &mut Context<Self>) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "{} {} {}->{} {}",
            e.at.duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis())
                .unwrap_or(0),
            e.id,
            e.from,
            e.to,
            e.reason
        );
        let _ = out.flush();
    }
}

fn main() {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: checker-watch FILE");
        std::process::exit(2);
    };
    let (parsed, loaded) = ha_config::cluster::load_file(std::path::Path::new(&path), &[]);
    if loaded.diags.has_errors() {
        eprintln!("{}", loaded.diags.render(&parsed.sources));
        std::process::exit(2);
    }
    let config = loaded.cluster.default.clone();
    System::new().block_on(async move {
        let printer = Printer.start();
        let _checks = runner::start_with(&config, 1, vec![], Some(printer.recipient()));
        std::future::pending::<()>().await;
    });
}

//! A TCP server for checker tests: greets every connection with one line, TEXT, then
//! reads until the client goes (an SMTP server that refuses service, for example). With
//! `--smtp`, it then speaks the part of SMTP (RFC 5321) a health check uses: `HELO` /
//! `EHLO` -> 250, `QUIT` -> 221 and close, `NOOP`/`RSET` -> 250, anything else -> 502.
//!
//! `tcp-banner ADDR:PORT TEXT [--smtp]`

use std::io::{BufRead, BufReader, Read, Write};

/// The reply to one SMTP command line, and whether the session ends after it.
fn smtp_reply(line: &str) -> (&'static str, bool) {
    let verb = line.split_whitespace().next().unwrap_or("").to_ascii_uppercase();
    match verb.as_str() {
        "HELO" | "EHLO" => ("250 tcp-banner\r\n", false),
        "NOOP" | "RSET" => ("250 ok\r\n", false),
        "QUIT" => ("221 bye\r\n", true),
        _ => ("502 not implemented\r\n", false),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(addr), Some(text)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: tcp-banner ADDR:PORT TEXT [--smtp]");
        std::process::exit(2);
    };
    let smtp = args.get(3).is_some_and(|a| a == "--smtp");
    let listener = match std::net::TcpListener::bind(addr) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("tcp-banner: bind {addr}: {e}");
            std::process::exit(1);
        }
    };
    println!("listening on {addr}");
    for conn in listener.incoming() {
        let Ok(mut c) = conn else { continue };
        let line = format!("{text}\r\n");
        std::thread::spawn(move || {
            if c.write_all(line.as_bytes()).is_err() {
                return;
            }
            if !smtp {
                let mut buf = [0u8; 1024];
                while matches!(c.read(&mut buf), Ok(n) if n > 0) {}
                return;
            }
            let Ok(read_half) = c.try_clone() else { return };
            for cmd in BufReader::new(read_half).lines() {
                let Ok(cmd) = cmd else { return };
                let (reply, end) = smtp_reply(&cmd);
                if c.write_all(reply.as_bytes()).is_err() || end {
                    return;
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::smtp_reply;

    #[test]
    fn the_smtp_a_health_check_speaks() {
        assert_eq!(
            smtp_reply("HELO smtpchecker.keepalived.org"),
            ("250 tcp-banner\r\n", false)
        );
        assert_eq!(smtp_reply("ehlo x"), ("250 tcp-banner\r\n", false));
        assert_eq!(smtp_reply("QUIT"), ("221 bye\r\n", true));
        assert_eq!(smtp_reply("MAIL FROM:<a@b>").0, "502 not implemented\r\n");
    }
}

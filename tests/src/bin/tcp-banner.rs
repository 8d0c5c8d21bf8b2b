//! A TCP server for checker tests: greets every connection with one line, TEXT, then
//! reads until the client goes (an SMTP server that refuses service, for example).
//!
//! `tcp-banner ADDR:PORT TEXT`

use std::io::{Read, Write};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(addr), Some(text)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: tcp-banner ADDR:PORT TEXT");
        std::process::exit(2);
    };
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
            let _ = c.write_all(line.as_bytes());
            let mut buf = [0u8; 1024];
            while matches!(c.read(&mut buf), Ok(n) if n > 0) {}
        });
    }
}

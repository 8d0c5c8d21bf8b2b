//! A real server for the lab and the tests: answers every HTTP request on ADDR:PORT with
//! BODY + "\n" (keep-alive, so one connection can carry requests over time).
//!
//! tiny-web ADDR:PORT BODY

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};

fn serve(stream: TcpStream, body: &str) {
    let Ok(mut out) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    loop {
        // Read one request head; a closed connection ends the loop.
        let mut head_len = 0;
        loop {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            head_len += line.len();
            if line == "\r\n" || line == "\n" || head_len > 64 * 1024 {
                break;
            }
        }
        let text = format!("{body}\n");
        let reply = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{text}",
            text.len()
        );
        if out.write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(addr), Some(body)) = (args.first(), args.get(1)) else {
        eprintln!("usage: tiny-web ADDR:PORT BODY");
        std::process::exit(2);
    };
    let listener = match TcpListener::bind(addr) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("tiny-web: bind {addr}: {e}");
            std::process::exit(1);
        }
    };
    for stream in listener.incoming().flatten() {
        let body = body.clone();
        std::thread::spawn(move || serve(stream, &body));
    }
}

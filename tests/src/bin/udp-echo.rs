//! A UDP server for checker tests: answers every datagram with REPLY (text), or echoes it.
//!
//! `udp-echo ADDR:PORT [REPLY]`

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(addr) = args.get(1) else {
        eprintln!("usage: udp-echo ADDR:PORT [REPLY]");
        std::process::exit(2);
    };
    let sock = match std::net::UdpSocket::bind(addr) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("udp-echo: bind {addr}: {e}");
            std::process::exit(1);
        }
    };
    println!("listening on {addr}");
    let mut buf = [0u8; 65536];
    loop {
        let Ok((n, from)) = sock.recv_from(&mut buf) else {
            continue;
        };
        let reply = match args.get(2) {
            Some(r) => r.as_bytes(),
            None => &buf[..n],
        };
        let _ = sock.send_to(reply, from);
    }
}

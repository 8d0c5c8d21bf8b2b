//! The probes against real servers on loopback.

use actors::check::probe::{self, Target};
use ha_config::model::{StatusRange, UrlCheck};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A one-line-response HTTP server; remembers the requests it got.
async fn server(status: u16, body: &'static str, hang: bool) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else { return };
            let log = log.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let n = s.read(&mut buf).await.unwrap_or(0);
                log.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&buf[..n]).into_owned());
                if hang {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    return;
                }
                let resp = format!(
                    "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    (addr, seen)
}

fn url(path: &str) -> UrlCheck {
    UrlCheck {
        path: path.into(),
        digest: None,
        status_code: vec![],
        virtualhost: None,
        extra: vec![],
    }
}

fn target(addr: SocketAddr) -> Target {
    Target { addr, bind: None }
}

const T: Duration = Duration::from_secs(2);

#[tokio::test]
async fn http_status_digest_and_virtualhost() {
    let (ok, seen) = server(200, "hello", false).await;
    let r = probe::http(&target(ok), &[url("/")], Some("www.example.test"), T).await;
    assert!(r.ok, "{r:?}");
    let req = seen.lock().unwrap()[0].clone();
    assert!(
        req.starts_with("GET / HTTP/1.0\r\n"),
        "keepalived sends HTTP/1.0: {req}"
    );
    assert!(req.contains("User-Agent: KeepAliveClient\r\n"), "{req}");
    assert!(
        req.to_ascii_lowercase().contains("host: www.example.test\r\n"),
        "{req}"
    );

    let (bad, _) = server(503, "busy", false).await;
    let r = probe::http(&target(bad), &[url("/")], None, T).await;
    assert!(!r.ok);
    assert_eq!(r.reason, "HTTP 503 for /");

    // md5("hello") = 5d41402abc4b2a76b9719d911017c592
    let mut u = url("/");
    u.digest = Some("5d41402abc4b2a76b9719d911017c592".into());
    assert!(probe::http(&target(ok), &[u.clone()], None, T).await.ok);
    u.digest = Some("00000000000000000000000000000000".into());
    let r = probe::http(&target(ok), &[u], None, T).await;
    assert!(!r.ok && r.reason.starts_with("digest mismatch"), "{r:?}");

    // status_code 200-299,302
    let (moved, _) = server(302, "", false).await;
    let mut u = url("/");
    u.status_code = vec![StatusRange { lo: 200, hi: 299 }, StatusRange { lo: 302, hi: 302 }];
    assert!(probe::http(&target(moved), &[u.clone()], None, T).await.ok);
    assert!(
        !probe::http(&target(moved), &[url("/")], None, T).await.ok,
        "302 is not 2xx"
    );
}

#[tokio::test]
async fn timeouts_and_refusals_are_down_with_their_reason() {
    let (hung, _) = server(200, "", true).await;
    let start = Instant::now();
    let r = probe::http(&target(hung), &[url("/")], None, Duration::from_millis(300)).await;
    assert!(!r.ok);
    assert_eq!(r.reason, "no answer within 0.3 s");
    assert!(start.elapsed() < Duration::from_secs(2));

    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let r = probe::http(&target(closed), &[url("/")], None, T).await;
    assert_eq!((r.ok, r.reason.as_str()), (false, "connection refused"));
    let r = probe::tcp(&target(closed), T).await;
    assert_eq!((r.ok, r.reason.as_str()), (false, "connection refused"));
    assert!(probe::tcp(&target(hung), T).await.ok);
}

#[tokio::test]
async fn misc_check_dynamic_weight_and_timeout() {
    let argv = |s: &str| actors::script::split_argv(s).unwrap();
    let r = probe::misc(&argv("/bin/true"), None, T, true).await;
    assert_eq!((r.ok, r.weight), (true, None));
    let r = probe::misc(&argv("/bin/false"), None, T, true).await;
    assert!(!r.ok, "exit 1 is down");
    // exit 7 with misc_dynamic: up with weight 5.
    let r = probe::misc(&argv("/usr/bin/env sh -c 'exit 7'"), None, T, true).await;
    assert_eq!((r.ok, r.weight), (true, Some(5)));
    let r = probe::misc(&argv("/usr/bin/env sh -c 'exit 7'"), None, T, false).await;
    assert!(!r.ok, "without misc_dynamic any non-zero exit is down");
    let start = Instant::now();
    let r = probe::misc(&argv("/bin/sleep 30"), None, Duration::from_millis(200), false).await;
    assert_eq!(r.reason, "timed out after 0.2 s; killed");
    assert!(start.elapsed() < Duration::from_secs(3));
}

/// An HTTPS server with a self-signed certificate for `name`; records the SNI it saw.
async fn tls_server(name: &str) -> (SocketAddr, Arc<Mutex<Vec<String>>>, Vec<u8>) {
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    let ck = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
    let cert_der = ck.cert.der().clone();
    let cert_pem = ck.cert.pem().into_bytes();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
    let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert_der], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let sni = Arc::new(Mutex::new(Vec::new()));
    let seen = sni.clone();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else { return };
            let acceptor = acceptor.clone();
            let seen = seen.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(s).await else {
                    return;
                };
                let name = tls.get_ref().1.server_name().unwrap_or("").to_string();
                seen.lock().unwrap().push(name);
                let mut buf = vec![0u8; 4096];
                let _ = tls.read(&mut buf).await;
                let _ = tls
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
                    .await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (addr, sni, cert_pem)
}

#[tokio::test]
async fn ssl_get_accepts_a_self_signed_certificate_like_keepalived_and_sends_sni() {
    let (addr, sni, pem) = tls_server("rs01.example.test").await;
    let any = actors::check::tls::client_accept_any();
    let r = probe::https(
        &target(addr),
        &[url("/")],
        Some("rs01.example.test"),
        T,
        any.clone(),
    )
    .await;
    assert!(r.ok, "{r:?}");
    assert_eq!(sni.lock().unwrap().as_slice(), ["rs01.example.test"]);
    // Opt-in verification: the right CA passes, a wrong name fails.
    let ca = actors::check::tls::client_with_ca(&pem).unwrap();
    assert!(
        probe::https(
            &target(addr),
            &[url("/")],
            Some("rs01.example.test"),
            T,
            ca.clone()
        )
        .await
        .ok
    );
    let r = probe::https(&target(addr), &[url("/")], Some("other.example.test"), T, ca).await;
    assert!(!r.ok && r.reason.starts_with("TLS:"), "{r:?}");
    // Plain HTTP against it is refused as a protocol error, not a hang.
    let r = probe::http(&target(addr), &[url("/")], None, T).await;
    assert!(!r.ok);
}

/// A scripted SMTP server: greets with `greeting` (lines), answers HELO with `helo` and
/// QUIT with 221; remembers the commands it got.
async fn smtp_server(greeting: &'static str, helo: &'static str) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    use tokio::io::AsyncBufReadExt;
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else { return };
            let log = log.clone();
            tokio::spawn(async move {
                let mut s = tokio::io::BufReader::new(s);
                let _ = s.get_mut().write_all(greeting.as_bytes()).await;
                let mut line = String::new();
                while s.read_line(&mut line).await.unwrap_or(0) > 0 {
                    let cmd = line.trim_end().to_string();
                    log.lock().unwrap().push(cmd.clone());
                    let answer = if cmd.starts_with("HELO") {
                        helo
                    } else {
                        "221 2.0.0 bye\r\n"
                    };
                    let _ = s.get_mut().write_all(answer.as_bytes()).await;
                    line.clear();
                }
            });
        }
    });
    (addr, seen)
}

#[tokio::test]
async fn smtp_greeting_helo_and_quit_as_keepalived() {
    // A multi-line greeting, then HELO with our name, then QUIT.
    let (ok, seen) = smtp_server("220-mx.example.test ESMTP\r\n220 ready\r\n", "250 hello\r\n").await;
    let r = probe::smtp(&target(ok), "checker.example.test", T).await;
    assert!(r.ok, "{}", r.reason);
    assert_eq!(r.reason, "SMTP 220, HELO 250, QUIT 221");
    assert_eq!(*seen.lock().unwrap(), ["HELO checker.example.test", "QUIT"]);
    // Refused service, or HELO refused: down, with the code.
    let (busy, _) = smtp_server("554 5.3.2 not now\r\n", "250 hello\r\n").await;
    let r = probe::smtp(&target(busy), "x", T).await;
    assert!(!r.ok);
    assert_eq!(r.reason, "greeting 554, not 220");
    let (picky, _) = smtp_server("220 ready\r\n", "501 5.5.4 bad HELO\r\n").await;
    let r = probe::smtp(&target(picky), "x", T).await;
    assert!(!r.ok);
    assert_eq!(r.reason, "HELO answered 501, not 250");
    // A server that never greets: down after the timeout.
    let (mute, _) = server(200, "", true).await;
    let started = Instant::now();
    let r = probe::smtp(&target(mute), "x", Duration::from_millis(300)).await;
    assert!(
        !r.ok && r.reason.starts_with("greeting: no answer within"),
        "{}",
        r.reason
    );
    assert!(started.elapsed() < Duration::from_secs(2));
}

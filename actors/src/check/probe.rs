//! The probes: one attempt each, bounded by the checker's `connect_timeout` (as in
//! keepalived, the timeout covers connecting and the answer). TCP_CHECK connects;
//! HTTP_GET sends `GET path` with the `virtualhost` as Host and checks the status and the
//! md5 digest of the body; MISC_CHECK runs a program (exit 0 up, 1 down, with
//! `misc_dynamic` 2..255 up with weight exit-2).

use super::schedule::ProbeResult;
use crate::script::{self, Outcome, RunAs};
use ha_config::model::UrlCheck;
use md5::{Digest, Md5};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::{TcpSocket, TcpStream};

/// Where to probe (`connect_ip`/`connect_port` applied) and from where (`bindto`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Target {
    pub addr: SocketAddr,
    pub bind: Option<SocketAddr>,
}

/// A duration for a reason: `2 s`, `0.5 s`.
pub(super) fn secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{s:.0} s")
    } else {
        format!("{s:.1} s")
    }
}

async fn connect(t: &Target) -> std::io::Result<TcpStream> {
    let sock = if t.addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(b) = t.bind {
        if b.port() != 0 {
            // A fixed source port is reused while the previous connection is in TIME_WAIT.
            sock.set_reuseaddr(true)?;
        }
        sock.bind(b)?;
    }
    sock.set_nodelay(true)?;
    sock.connect(t.addr).await
}

fn connect_failure(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
        _ => format!("connect: {e}"),
    }
}

/// TCP_CHECK: the connection opens within the timeout.
pub async fn tcp(t: &Target, timeout: Duration) -> ProbeResult {
    match tokio::time::timeout(timeout, connect(t)).await {
        Err(_) => ProbeResult::down(format!("connect timeout after {}", secs(timeout))),
        Ok(Err(e)) => ProbeResult::down(connect_failure(&e)),
        Ok(Ok(_)) => ProbeResult::up("connected"),
    }
}

/// HTTP_GET: every `url` must answer an accepted status (and digest, when given).
pub async fn http(
    t: &Target,
    urls: &[UrlCheck],
    virtualhost: Option<&str>,
    timeout: Duration,
) -> ProbeResult {
    // As keepalived: each url gets its own `connect_timeout`.
    for u in urls {
        let one = http_one(t, u, u.virtualhost.as_deref().or(virtualhost));
        let r = match tokio::time::timeout(timeout, one).await {
            Ok(r) => r,
            Err(_) => ProbeResult::down(format!("no answer within {}", secs(timeout))),
        };
        if !r.ok {
            return r;
        }
    }
    ProbeResult::up("HTTP ok")
}

async fn http_one(t: &Target, u: &UrlCheck, host: Option<&str>) -> ProbeResult {
    let stream = match connect(t).await {
        Ok(s) => s,
        Err(e) => return ProbeResult::down(connect_failure(&e)),
    };
    get(stream, t, u, host).await
}

/// SSL_GET: as HTTP_GET over TLS (`tls`: see [`super::tls`]); the `virtualhost` is also
/// the SNI name.
pub async fn https(
    t: &Target,
    urls: &[UrlCheck],
    virtualhost: Option<&str>,
    timeout: Duration,
    tls: std::sync::Arc<rustls::ClientConfig>,
) -> ProbeResult {
    let attempt = async {
        for u in urls {
            let host = u.virtualhost.as_deref().or(virtualhost);
            let stream = match connect(t).await {
                Ok(s) => s,
                Err(e) => return ProbeResult::down(connect_failure(&e)),
            };
            let name = host
                .and_then(|h| rustls::pki_types::ServerName::try_from(h.to_string()).ok())
                .unwrap_or_else(|| rustls::pki_types::ServerName::IpAddress(t.addr.ip().into()));
            let tls_stream = match tokio_rustls::TlsConnector::from(tls.clone())
                .connect(name, stream)
                .await
            {
                Ok(s) => s,
                Err(e) => return ProbeResult::down(format!("TLS: {e}")),
            };
            let r = get(tls_stream, t, u, host).await;
            if !r.ok {
                return r;
            }
        }
        ProbeResult::up("HTTPS ok")
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(r) => r,
        Err(_) => ProbeResult::down(format!("no answer within {}", secs(timeout))),
    }
}

/// Largest response read (status line, headers and body) before giving up.
const MAX_RESPONSE: usize = 4 * 1024 * 1024;

/// One GET as keepalived sends it (HTTP/1.0, `Connection: close`, `User-Agent:
/// KeepAliveClient`), the whole response read until the server closes: status from the
/// status line, md5 over the body.
async fn get<IO>(mut io: IO, t: &Target, u: &UrlCheck, host: Option<&str>) -> ProbeResult
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    if u.path
        .bytes()
        .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return ProbeResult::down(format!("bad url path {:?}", u.path));
    }
    let host = match host {
        Some(h) => h.to_string(),
        None => t.addr.to_string(),
    };
    let req = format!(
        "GET {} HTTP/1.0\r\nUser-Agent: KeepAliveClient\r\nHost: {host}\r\nConnection: close\r\n\r\n",
        u.path
    );
    if let Err(e) = io.write_all(req.as_bytes()).await {
        return ProbeResult::down(format!("sending the request: {e}"));
    }
    let mut resp = Vec::with_capacity(1024);
    let mut chunk = [0u8; 8192];
    loop {
        match io.read(&mut chunk).await {
            Ok(0) => break,
            Ok(n) => {
                resp.extend_from_slice(&chunk[..n]);
                if resp.len() > MAX_RESPONSE {
                    return ProbeResult::down(format!("response larger than {MAX_RESPONSE} bytes"));
                }
                // Without a digest the status line is all we need.
                if u.digest.is_none() && resp.contains(&b'\n') {
                    break;
                }
            }
            // Some servers reset after answering; what was read still counts.
            Err(_) if !resp.is_empty() => break,
            Err(e) => return ProbeResult::down(format!("reading the response: {e}")),
        }
    }
    let Some(status) = status_code(&resp) else {
        return ProbeResult::down("not an HTTP response".to_string());
    };
    if !u.accepts(status) {
        return ProbeResult::down(format!("HTTP {status} for {}", u.path));
    }
    if let Some(want) = &u.digest {
        let body = match resp.windows(4).position(|w| w == b"\r\n\r\n") {
            Some(p) => &resp[p + 4..],
            None => match resp.windows(2).position(|w| w == b"\n\n") {
                Some(p) => &resp[p + 2..],
                None => return ProbeResult::down("response without a body".to_string()),
            },
        };
        let got = hex_lower(&Md5::digest(body));
        if !got.eq_ignore_ascii_case(want) {
            return ProbeResult::down(format!("digest mismatch for {} (got {got})", u.path));
        }
    }
    ProbeResult::up(format!("HTTP {status}"))
}

/// `HTTP/1.x NNN ...` -> NNN.
fn status_code(resp: &[u8]) -> Option<u16> {
    let line_end = resp.iter().position(|&b| b == b'\n').unwrap_or(resp.len());
    let line = std::str::from_utf8(&resp[..line_end]).ok()?;
    let mut w = line.split_whitespace();
    if !w.next()?.starts_with("HTTP/") {
        return None;
    }
    w.next()?.parse().ok()
}

fn hex_lower(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The longest SMTP reply read (keepalived reads 512 bytes).
const SMTP_REPLY_MAX: usize = 4096;

/// One SMTP reply: its lines until the last (`NNN text`, not `NNN-text`); its code.
async fn smtp_reply<R: tokio::io::AsyncBufRead + Unpin>(r: &mut R) -> Result<u16, String> {
    use tokio::io::AsyncBufReadExt;
    let mut read = 0;
    loop {
        let mut line = String::new();
        let n = r
            .read_line(&mut line)
            .await
            .map_err(|e| format!("reading: {e}"))?;
        if n == 0 {
            return Err("connection closed".into());
        }
        read += n;
        if read > SMTP_REPLY_MAX {
            return Err(format!("reply longer than {SMTP_REPLY_MAX} bytes"));
        }
        let code = line
            .get(..3)
            .and_then(|c| c.parse::<u16>().ok())
            .ok_or_else(|| format!("not an SMTP reply: {:?}", line.trim_end()))?;
        if line.as_bytes().get(3) != Some(&b'-') {
            return Ok(code);
        }
    }
}

/// SMTP_CHECK as keepalived 2.2.7: the greeting must be 220, the answer to `HELO
/// helo_name` 250, then `QUIT` and its answer (whatever it is); each step within
/// `timeout`.
pub async fn smtp(t: &Target, helo_name: &str, timeout: Duration) -> ProbeResult {
    let stream = match tokio::time::timeout(timeout, connect(t)).await {
        Err(_) => return ProbeResult::down(format!("connect timeout after {}", secs(timeout))),
        Ok(Err(e)) => return ProbeResult::down(connect_failure(&e)),
        Ok(Ok(s)) => s,
    };
    let mut io = tokio::io::BufReader::new(stream);
    let exchange = async {
        let greeting = smtp_step(&mut io, None, "greeting", timeout).await?;
        if greeting != 220 {
            return Err(format!("greeting {greeting}, not 220"));
        }
        let helo = format!("HELO {helo_name}\r\n");
        let hello = smtp_step(&mut io, Some(&helo), "HELO", timeout).await?;
        if hello != 250 {
            return Err(format!("HELO answered {hello}, not 250"));
        }
        smtp_step(&mut io, Some("QUIT\r\n"), "QUIT", timeout).await
    };
    match exchange.await {
        Ok(bye) => ProbeResult::up(format!("SMTP 220, HELO 250, QUIT {bye}")),
        Err(why) => ProbeResult::down(why),
    }
}

/// One step of the SMTP exchange: `command` sent (if any), then the reply's code, each
/// within `timeout`.
async fn smtp_step(
    io: &mut tokio::io::BufReader<TcpStream>,
    command: Option<&str>,
    what: &str,
    timeout: Duration,
) -> Result<u16, String> {
    use tokio::io::AsyncWriteExt;
    let late = |_| format!("{what}: no answer within {}", secs(timeout));
    if let Some(c) = command {
        tokio::time::timeout(timeout, io.get_mut().write_all(c.as_bytes()))
            .await
            .map_err(late)?
            .map_err(|e| format!("sending {what}: {e}"))?;
    }
    tokio::time::timeout(timeout, smtp_reply(io))
        .await
        .map_err(late)?
}

/// FILE_CHECK on a reading `value` of its file, as keepalived 2.2.7: with weight 0, any
/// value but 0 is down (with `reverse`, 0 is); otherwise `value * weight` (negated by
/// `reverse`) is added to the real server's configured weight (at least 0), and only a
/// product at or below i32's minimum is down.
pub fn file(value: i64, weight: i32, reverse: bool, rs_weight: u32) -> ProbeResult {
    if weight == 0 {
        return if (value != 0) != reverse {
            ProbeResult::down(format!("file value {value}"))
        } else {
            ProbeResult::up(format!("file value {value}"))
        };
    }
    let mult = if reverse { -1 } else { 1 };
    let status = value
        .saturating_mul(i64::from(weight))
        .saturating_mul(mult)
        .clamp(i64::from(i32::MIN), i64::from(i32::MAX));
    if status == i64::from(i32::MIN) {
        return ProbeResult::down(format!("file value {value} x weight {weight}: fault"));
    }
    let w = (i64::from(rs_weight) + status).clamp(0, i64::from(i32::MAX)) as u32;
    ProbeResult {
        ok: true,
        reason: format!("file value {value}: weight {w}"),
        weight: Some(w),
    }
}

/// MISC_CHECK: exit 0 up, 1 down; with `dynamic`, 2..=255 up with weight exit-2.
pub async fn misc(argv: &[String], run_as: Option<RunAs>, timeout: Duration, dynamic: bool) -> ProbeResult {
    match script::run(argv, run_as, timeout).await {
        Outcome::Success => ProbeResult::up("exit 0"),
        Outcome::Failed(c) if dynamic && (2..=255).contains(&c) => ProbeResult {
            ok: true,
            reason: format!("exit {c}"),
            weight: Some((c - 2) as u32),
        },
        Outcome::Failed(c) => ProbeResult::down(format!("exit {c}")),
        Outcome::Signaled(s) => ProbeResult::down(format!("killed by signal {s}")),
        Outcome::TimedOut => ProbeResult::down(format!("timed out after {}; killed", secs(timeout))),
        Outcome::NotStarted(e) => ProbeResult::down(format!("not started: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_check_readings_as_keepalived() {
        assert!(file(0, 0, false, 5).ok, "unweighted: 0 is up");
        assert!(!file(2, 0, false, 5).ok, "unweighted: non-zero is down");
        assert!(!file(0, 0, true, 5).ok, "reverse: 0 is down");
        assert_eq!(
            file(0, 0, false, 5).weight,
            None,
            "unweighted: the configured weight"
        );
        assert_eq!(file(3, 2, false, 5).weight, Some(11), "5 + 3 x 2");
        assert_eq!(file(3, 2, true, 5).weight, Some(0), "5 - 6: at least 0, still up");
        assert!(file(3, 2, true, 5).ok);
        assert_eq!(file(-1, 1, false, 1).weight, Some(0));
        let fault = file(i64::from(i32::MIN), 1, false, 5);
        assert!(!fault.ok, "at i32's minimum: down");
        assert_eq!(
            file(i64::from(i32::MAX) + 1, 2, false, 1).weight,
            Some(i32::MAX as u32)
        );
    }
}

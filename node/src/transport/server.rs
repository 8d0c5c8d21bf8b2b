//! The accept loop: one HTTP/1.1 connection task per peer or client, over TLS when the
//! director has certificates. Before a request's body is read, the [`Routes`] decide who
//! the caller is and whether the route is theirs; bodies are then read whole under a cap
//! chosen per route.
//!
//! Limits, so that no client can starve the others (Raft heartbeats share this listener):
//! at most [`Limits::connections`] connections (default [`MAX_CONNECTIONS`]),
//! [`Limits::per_address`] from one address (default [`MAX_PER_IP`]; more are closed at once); a TLS handshake must finish within [`HANDSHAKE_TIMEOUT`], request
//! headers arrive within [`HEADER_READ_TIMEOUT`] (also the limit on an idle keep-alive
//! connection), a body within [`BODY_READ_TIMEOUT`]. Plain HTTP sent to a TLS port gets a
//! plain-text 400 naming the problem.

use super::tls::Tls;
use bytes::Bytes;
use ha_config::access::{Identity, Proof};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub const MAX_CONNECTIONS: usize = 1024;
pub const MAX_PER_IP: usize = 64;
/// Connection caps of one listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Connections open at once.
    pub connections: usize,
    /// Connections open at once from one address.
    pub per_address: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            connections: MAX_CONNECTIONS,
            per_address: MAX_PER_IP,
        }
    }
}

pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Who is at the other end of a connection.
#[derive(Clone, Debug)]
pub struct Peer {
    pub addr: SocketAddr,
    /// The connection is TLS.
    pub tls: bool,
    /// The identity of the verified client certificate, if one was presented.
    pub cert: Option<Identity>,
}

/// A request with its body already read.
pub struct Req {
    pub method: hyper::Method,
    pub path: String,
    pub query: String,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
    /// The caller, as [`Routes::admit`] established.
    pub who: Identity,
    pub peer: SocketAddr,
}

/// Why a body was not read.
pub enum BodyError {
    TooLarge { limit: usize },
    Io(String),
}

pub trait Routes: Send + Sync + 'static {
    /// Who the caller is and whether it may call this route; refused before the body is
    /// read (the `Err` is the finished refusal).
    #[allow(clippy::result_large_err)]
    fn admit(
        &self,
        parts: &hyper::http::request::Parts,
        peer: &Peer,
    ) -> Result<Identity, Response<Full<Bytes>>>;
    /// The largest body accepted for this method and path.
    fn body_limit(&self, method: &hyper::Method, path: &str) -> usize;
    /// Answers a request whose body exceeded the limit or could not be read.
    fn body_error(&self, path: &str, err: BodyError) -> Response<Full<Bytes>>;
    fn handle(&self, req: Req) -> impl Future<Output = Response<Full<Bytes>>> + Send;
    /// A connection was refused before any request (TLS handshake, plain HTTP on the TLS
    /// port, too many connections).
    fn connection_refused(&self, peer: SocketAddr, reason: &str);
}

/// Connections open, in total and per address.
#[derive(Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// Releases a connection's place when the connection ends.
struct Slot {
    counts: Arc<Mutex<Counts>>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = match self.counts.lock() {
            Ok(c) => c,
            Err(p) => p.into_inner(),
        };
        c.total = c.total.saturating_sub(1);
        if let Some(n) = c.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                c.per_ip.remove(&self.ip);
            }
        }
    }
}

fn take_slot(counts: &Arc<Mutex<Counts>>, limits: Limits, ip: IpAddr) -> Result<Slot, String> {
    let mut c = match counts.lock() {
        Ok(c) => c,
        Err(p) => p.into_inner(),
    };
    if c.total >= limits.connections {
        return Err(format!(
            "{} connections open (max_connections): closing a new one",
            limits.connections
        ));
    }
    let n = c.per_ip.entry(ip).or_insert(0);
    if *n >= limits.per_address {
        return Err(format!(
            "{} connections open from {ip} (max_connections_per_address): closing a new one",
            limits.per_address
        ));
    }
    *n += 1;
    c.total += 1;
    Ok(Slot {
        counts: counts.clone(),
        ip,
    })
}

/// Serves `routes` on `listener` until the task is dropped; TLS when `tls` is given.
pub async fn serve<R: Routes>(listener: TcpListener, routes: Arc<R>, tls: Option<Arc<Tls>>, limits: Limits) {
    let acceptor = tls.map(|t| tokio_rustls::TlsAcceptor::from(t.server_config()));
    let counts = Arc::new(Mutex::new(Counts::default()));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let slot = match take_slot(&counts, limits, peer.ip()) {
            Ok(s) => s,
            Err(reason) => {
                drop(stream);
                routes.connection_refused(peer, &reason);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let routes = routes.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let _slot = slot;
            match acceptor {
                None => {
                    let p = Peer {
                        addr: peer,
                        tls: false,
                        cert: None,
                    };
                    connection(stream, p, routes).await
                }
                Some(acceptor) => {
                    if let Some((stream, p)) = handshake(stream, peer, &acceptor, &*routes).await {
                        connection(stream, p, routes).await
                    }
                }
            }
        });
    }
}

/// Reads and discards up to `limit` bytes, until the peer closes.
async fn drain(stream: &mut TcpStream, limit: usize) {
    let mut buf = [0u8; 4096];
    let mut seen = 0;
    while seen < limit {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => seen += n,
        }
    }
}

/// The TLS handshake, within its deadline; a client that speaks plain HTTP is told so.
async fn handshake<R: Routes>(
    mut stream: TcpStream,
    peer: SocketAddr,
    acceptor: &tokio_rustls::TlsAcceptor,
    routes: &R,
) -> Option<(tokio_rustls::server::TlsStream<TcpStream>, Peer)> {
    let mut first = [0u8; 1];
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, stream.peek(&mut first)).await {
        Ok(Ok(1)) => {}
        Ok(_) => return None,
        Err(_) => {
            // Not a refusal worth an audit event: the peers' liveness watch holds such
            // idle connections on purpose; the deadline is the protection.
            tracing::debug!(%peer, "closing a connection that sent nothing within the TLS handshake timeout");
            return None;
        }
    }
    // A TLS record starts with 22 (handshake); anything else is not TLS.
    if first[0] != 22 {
        let msg = "this port speaks TLS only: use https:// (with the cluster's CA)\n";
        let reply = format!(
            "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{msg}",
            msg.len()
        );
        let _ = tokio::time::timeout(Duration::from_secs(2), stream.write_all(reply.as_bytes())).await;
        let _ = stream.shutdown().await;
        // Read what the client still sends (its request) before closing: closing with
        // unread input resets the connection, and the client would lose the answer.
        let _ = tokio::time::timeout(Duration::from_secs(1), drain(&mut stream, 64 * 1024)).await;
        routes.connection_refused(peer, "plain HTTP (or not TLS) sent to the TLS port");
        return None;
    }
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            routes.connection_refused(peer, &format!("TLS handshake refused: {e}"));
            return None;
        }
        Err(_) => {
            routes.connection_refused(peer, "TLS handshake not finished within the timeout");
            return None;
        }
    };
    let cert = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|der| ha_config::tls::cert_identity(der));
    let cert = match cert {
        None => None,
        Some(Ok((name, role))) => Some(Identity {
            name,
            role,
            proof: Proof::Certificate,
        }),
        Some(Err(e)) => {
            routes.connection_refused(peer, &format!("client certificate from the CA, but {e}"));
            return None;
        }
    };
    Some((
        tls,
        Peer {
            addr: peer,
            tls: true,
            cert,
        },
    ))
}

async fn connection<S, R>(stream: S, peer: Peer, routes: Arc<R>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    R: Routes,
{
    let addr = peer.addr;
    let peer = Arc::new(peer);
    let svc = service_fn(move |req| {
        let routes = routes.clone();
        let peer = peer.clone();
        async move { Ok::<_, std::convert::Infallible>(dispatch(&*routes, req, &peer).await) }
    });
    if let Err(e) = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(TokioIo::new(stream), svc)
        .await
    {
        tracing::debug!(peer = %addr, error = %e, "connection ended");
    }
}

async fn dispatch<R: Routes>(routes: &R, req: Request<Incoming>, peer: &Peer) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let who = match routes.admit(&parts, peer) {
        Ok(who) => who,
        Err(reply) => return reply,
    };
    let path = parts.uri.path().to_string();
    let query = parts.uri.query().unwrap_or("").to_string();
    let limit = routes.body_limit(&parts.method, &path);
    let declared = parts
        .headers
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return routes.body_error(&path, BodyError::TooLarge { limit });
    }
    let read = tokio::time::timeout(BODY_READ_TIMEOUT, Limited::new(body, limit).collect()).await;
    let Ok(read) = read else {
        return routes.body_error(&path, BodyError::Io("body not received within 60 s".into()));
    };
    let body = match read {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            let err = if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
                BodyError::TooLarge { limit }
            } else {
                BodyError::Io(e.to_string())
            };
            return routes.body_error(&path, err);
        }
    };
    routes
        .handle(Req {
            method: parts.method,
            path,
            query,
            headers: parts.headers,
            body,
            who,
            peer: peer.addr,
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_capped_per_address_and_released() {
        let counts = Arc::new(Mutex::new(Counts::default()));
        let a: IpAddr = "198.18.0.1".parse().unwrap();
        let b: IpAddr = "198.18.0.2".parse().unwrap();
        let l = Limits::default();
        let held: Vec<Slot> = (0..MAX_PER_IP)
            .map(|_| take_slot(&counts, l, a).unwrap())
            .collect();
        assert!(take_slot(&counts, l, a)
            .err()
            .is_some_and(|e| e.contains("from 198.18.0.1")));
        let other = take_slot(&counts, l, b).expect("another address still gets in");
        drop(held);
        assert!(take_slot(&counts, l, a).is_ok());
        drop(other);
        let c = counts.lock().unwrap();
        assert_eq!(c.total, 0);
        assert!(c.per_ip.is_empty());
    }

    #[test]
    fn configured_limits_apply() {
        let counts = Arc::new(Mutex::new(Counts::default()));
        let l = Limits {
            connections: 3,
            per_address: 2,
        };
        let a: IpAddr = "198.18.0.1".parse().unwrap();
        let b: IpAddr = "198.18.0.2".parse().unwrap();
        let _a1 = take_slot(&counts, l, a).unwrap();
        let _a2 = take_slot(&counts, l, a).unwrap();
        assert!(take_slot(&counts, l, a).is_err(), "third from one address");
        let _b1 = take_slot(&counts, l, b).unwrap();
        let e = take_slot(&counts, l, b).err().expect("fourth in all");
        assert!(e.contains("max_connections"), "{e}");
    }
}

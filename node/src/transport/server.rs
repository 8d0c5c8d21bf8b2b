//! The accept loop: one HTTP/1.1 connection task per peer or client, bodies read whole
//! under a size cap chosen per route by the [`Routes`] implementation.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

/// A client that has not sent its request headers by then is disconnected.
const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// A body not received completely by then is refused.
const BODY_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// A request with its body already read.
pub struct Req {
    pub method: hyper::Method,
    pub path: String,
    pub query: String,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

/// Why a body was not read.
pub enum BodyError {
    TooLarge { limit: usize },
    Io(String),
}

pub trait Routes: Send + Sync + 'static {
    /// The largest body accepted for this method and path.
    fn body_limit(&self, method: &hyper::Method, path: &str) -> usize;
    /// Answers a request whose body exceeded the limit or could not be read.
    fn body_error(&self, path: &str, err: BodyError) -> Response<Full<Bytes>>;
    fn handle(&self, req: Req) -> impl Future<Output = Response<Full<Bytes>>> + Send;
}

/// Serves `routes` on `listener` until the task is dropped.
pub async fn serve<R: Routes>(listener: TcpListener, routes: Arc<R>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let routes = routes.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let routes = routes.clone();
                async move { Ok::<_, std::convert::Infallible>(dispatch(&*routes, req, peer).await) }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), svc)
                .await
            {
                tracing::debug!(%peer, error = %e, "connection ended");
            }
        });
    }
}

async fn dispatch<R: Routes>(routes: &R, req: Request<Incoming>, _peer: SocketAddr) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
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
        })
        .await
}

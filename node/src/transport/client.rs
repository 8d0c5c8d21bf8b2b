//! Outgoing HTTP requests with a connection pool, `TCP_NODELAY` and a per-request deadline;
//! over TLS (presenting this director's certificate, checking the peer's against the
//! cluster's CA and the address called) when the director has certificates.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::time::Duration;

#[derive(Clone)]
pub struct HttpClient {
    inner: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    scheme: &'static str,
}

/// One request: `METHOD http://ADDR/PATH` with a body, answered within `timeout`.
pub struct Call<'a> {
    pub method: Method,
    pub addr: &'a str,
    pub path: &'a str,
    pub content_type: &'a str,
    pub headers: &'a [(&'a str, &'a str)],
    pub body: Vec<u8>,
    pub timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing listens there, or the connection could not be made in time.
    #[error("cannot connect to {addr}: {msg}")]
    Connect { addr: String, msg: String },
    #[error("no answer from {addr} within {timeout:?}")]
    Timeout { addr: String, timeout: Duration },
    #[error("request to {addr} failed: {msg}")]
    Io { addr: String, msg: String },
    #[error("bad address {0:?}")]
    BadAddr(String),
}

impl ClientError {
    /// The peer is down (as opposed to answering badly): callers back off.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, ClientError::Connect { .. })
    }
}

impl HttpClient {
    /// Plain HTTP, or TLS with `tls`.
    pub fn new(tls: Option<&std::sync::Arc<super::tls::Tls>>) -> Self {
        let mut conn = HttpConnector::new();
        conn.set_nodelay(true);
        conn.set_connect_timeout(Some(Duration::from_secs(1)));
        conn.enforce_http(false);
        let (config, scheme) = match tls {
            Some(t) => (t.client_config(), "https"),
            None => (
                rustls::ClientConfig::builder_with_provider(ha_config::tls::provider())
                    .with_safe_default_protocol_versions()
                    .expect("the ring provider supports the default protocol versions")
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth(),
                "http",
            ),
        };
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(config)
            .https_or_http()
            .enable_http1()
            .wrap_connector(conn);
        let inner = Client::builder(TokioExecutor::new())
            // Below the server's idle limit (its header read timeout), so a pooled
            // connection is not reused just as the server closes it.
            .pool_idle_timeout(Duration::from_secs(8))
            .pool_max_idle_per_host(8)
            .build(https);
        HttpClient { inner, scheme }
    }

    /// Sends `body` to `http(s)://ADDR/PATH` and returns the status and the whole response body.
    pub async fn send(&self, call: Call<'_>) -> Result<(StatusCode, Bytes), ClientError> {
        let Call {
            method,
            addr,
            path,
            content_type,
            headers,
            body,
            timeout,
        } = call;
        let uri: hyper::Uri = format!("{}://{addr}{path}", self.scheme)
            .parse()
            .map_err(|_| ClientError::BadAddr(addr.to_string()))?;
        let mut req = Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", content_type);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| ClientError::Io {
                addr: addr.to_string(),
                msg: e.to_string(),
            })?;
        let exchange = async {
            let resp = self.inner.request(req).await.map_err(|e| {
                if e.is_connect() {
                    ClientError::Connect {
                        addr: addr.to_string(),
                        msg: root_cause(&e),
                    }
                } else {
                    ClientError::Io {
                        addr: addr.to_string(),
                        msg: root_cause(&e),
                    }
                }
            })?;
            let status = resp.status();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| ClientError::Io {
                    addr: addr.to_string(),
                    msg: e.to_string(),
                })?
                .to_bytes();
            Ok((status, body))
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| ClientError::Timeout {
                addr: addr.to_string(),
                timeout,
            })?
    }
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    let mut msg = e.to_string();
    while let Some(next) = cur.source() {
        msg = next.to_string();
        cur = next;
    }
    msg
}

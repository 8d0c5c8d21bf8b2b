//! Talking to the directors: a list of endpoints tried in turn, and retries while the
//! cluster has no leader (a proposal carries its id, so a retry commits it once).

use anyhow::{anyhow, Result};
use bytes::Bytes;
use ha_config::api::{ApiError, ErrorBody};
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;
use std::time::{Duration, Instant};

pub struct Remote {
    pub endpoints: Vec<String>,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    rt: tokio::runtime::Runtime,
    scheme: &'static str,
    /// `Bearer TOKEN`, when a token was given.
    authorization: Option<String>,
    /// How long to keep trying while every director answers "unavailable" (`--patience`;
    /// None: the command's own default).
    patience: Option<Duration>,
}

/// How hactl proves who it is and checks the directors (all optional: a director on
/// loopback without TLS needs none).
#[derive(Default)]
pub struct ClientAuth {
    /// The cluster's CA: talk TLS and check the directors' certificates against it.
    pub ca: Option<std::path::PathBuf>,
    /// A client certificate and key (`hactl cert issue --client NAME --role ROLE`).
    pub cert: Option<std::path::PathBuf>,
    pub key: Option<std::path::PathBuf>,
    pub token: Option<String>,
    /// `--patience SECS`.
    pub patience: Option<Duration>,
}

/// A refusal by the cluster (as opposed to not reaching it).
#[derive(Debug)]
pub struct Refused {
    pub status: StatusCode,
    pub error: ApiError,
    pub endpoint: String,
}

pub enum Answer<T> {
    Ok(T),
    Refused(Refused),
}

impl Remote {
    /// `spec`: comma-separated `HOST:PORT` list (from `--cluster` or `HACTL_CLUSTER`).
    pub fn new(spec: &str, auth: &ClientAuth) -> Result<Self> {
        let https_named = spec.contains("https://");
        let endpoints: Vec<String> = spec
            .split(',')
            .map(|s| {
                s.trim()
                    .trim_start_matches("http://")
                    .trim_start_matches("https://")
                    .trim_end_matches('/')
                    .to_string()
            })
            .filter(|s| !s.is_empty())
            .collect();
        if endpoints.is_empty() {
            return Err(anyhow!(
                "no directors to talk to: pass --cluster HOST:PORT[,HOST:PORT...] or set HACTL_CLUSTER"
            ));
        }
        let identity = match (&auth.cert, &auth.key) {
            (Some(c), Some(k)) => Some((c.as_path(), k.as_path())),
            (None, None) => None,
            _ => return Err(anyhow!("--cert and --key go together (HACTL_CERT, HACTL_KEY)")),
        };
        let (tls, scheme) = match &auth.ca {
            Some(ca) => (
                ha_config::tls::client_config(ca, identity).map_err(|e| anyhow!(e))?,
                "https",
            ),
            None if https_named || identity.is_some() => {
                return Err(anyhow!(
                    "TLS needs the cluster's CA to check the directors: pass --ca FILE (or HACTL_CA)"
                ))
            }
            None => (
                rustls::ClientConfig::builder_with_provider(ha_config::tls::provider())
                    .with_safe_default_protocol_versions()?
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth(),
                "http",
            ),
        };
        let mut conn = HttpConnector::new();
        conn.set_nodelay(true);
        conn.set_connect_timeout(Some(Duration::from_secs(1)));
        conn.enforce_http(false);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(conn);
        let client = Client::builder(TokioExecutor::new()).build(https);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let authorization = match &auth.token {
            Some(t) if t.trim().is_empty() => None,
            Some(t) => Some(format!("Bearer {}", t.trim())),
            None => None,
        };
        Ok(Remote {
            endpoints,
            client,
            rt,
            scheme,
            authorization,
            patience: auth.patience,
        })
    }

    /// One request to one endpoint: status and body.
    pub fn send_to(
        &self,
        endpoint: &str,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        timeout: Duration,
    ) -> Result<(StatusCode, Bytes)> {
        let uri: hyper::Uri = format!("{}://{endpoint}{path}", self.scheme)
            .parse()
            .map_err(|e| anyhow!("bad endpoint {endpoint:?}: {e}"))?;
        let mut req = Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", "application/json");
        if let Some(a) = &self.authorization {
            req = req.header("authorization", a);
        }
        let req = req.body(Full::new(Bytes::from(body.unwrap_or_default())))?;
        self.rt.block_on(async {
            let exchange = async {
                let resp = self.client.request(req).await.map_err(|e| {
                    let mut msg = e.to_string();
                    let mut cur: &dyn std::error::Error = &e;
                    while let Some(next) = cur.source() {
                        msg = next.to_string();
                        cur = next;
                    }
                    anyhow!("{endpoint}: {msg}")
                })?;
                let status = resp.status();
                let body = resp.into_body().collect().await?.to_bytes();
                Ok::<_, anyhow::Error>((status, body))
            };
            tokio::time::timeout(timeout, exchange)
                .await
                .map_err(|_| anyhow!("{endpoint}: no answer within {timeout:?}"))?
        })
    }

    /// Tries the endpoints in turn until one answers something other than "unavailable";
    /// keeps going round for `patience`. Returns the endpoint that answered.
    pub fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        patience: Duration,
    ) -> Result<(String, Answer<T>)> {
        let patience = self.patience.unwrap_or(patience);
        let start = Instant::now();
        let mut last_problem = String::new();
        loop {
            for ep in &self.endpoints {
                match self.send_to(ep, method.clone(), path, body.clone(), Duration::from_secs(60)) {
                    Err(e) => last_problem = e.to_string(),
                    Ok((status, bytes)) => {
                        if status.is_success() {
                            let v = serde_json::from_slice(&bytes)
                                .map_err(|e| anyhow!("{ep}: unexpected answer to {path}: {e}"))?;
                            return Ok((ep.clone(), Answer::Ok(v)));
                        }
                        let error = match serde_json::from_slice::<ErrorBody>(&bytes) {
                            Ok(b) => b.error,
                            Err(_) => ApiError {
                                kind: "http".into(),
                                message: format!("{status}: {}", String::from_utf8_lossy(&bytes)),
                                diagnostics: Vec::new(),
                                current_version: None,
                            },
                        };
                        if status == StatusCode::SERVICE_UNAVAILABLE {
                            last_problem = format!("{ep}: {}", error.message);
                            continue;
                        }
                        return Ok((
                            ep.clone(),
                            Answer::Refused(Refused {
                                status,
                                error,
                                endpoint: ep.clone(),
                            }),
                        ));
                    }
                }
            }
            if start.elapsed() >= patience {
                return Err(anyhow!("no director could serve {path}: {last_problem}"));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

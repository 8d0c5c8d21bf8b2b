//! What protects a director's listener (TLS material, the tokens file, `--insecure`) and
//! the audit trail of who asked for what: every mutating request, accepted or refused, and
//! every refused connection is a journal event of kind `audit` naming the identity.
//! Refusals of the same kind from the same source are recorded at most once per
//! [`REFUSAL_QUIET`] (a misconfigured peer retries many times a second).

use crate::auth::Tokens;
use crate::journal::JournalWriter;
use crate::transport::tls::Tls;
use ha_config::access::Identity;
use ha_config::api::SecurityStatus;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const REFUSAL_QUIET: Duration = Duration::from_secs(30);

pub struct Security {
    pub tls: Option<Arc<Tls>>,
    pub tokens: Option<Arc<Tokens>>,
    pub insecure: bool,
    /// When each (source, reason) refusal was last recorded.
    refusals: Mutex<HashMap<String, Instant>>,
}

impl Security {
    pub fn new(tls: Option<Arc<Tls>>, tokens: Option<Arc<Tokens>>, insecure: bool) -> Security {
        Security {
            tls,
            tokens,
            insecure,
            refusals: Mutex::new(HashMap::new()),
        }
    }

    /// Callers of the admin API must prove who they are: the listener speaks TLS or has
    /// tokens.
    pub fn required(&self) -> bool {
        self.tls.is_some() || self.tokens.is_some()
    }

    pub fn describe(&self) -> String {
        let transport = match (&self.tls, self.insecure) {
            (Some(_), _) => "mutual TLS",
            (None, true) => "plain HTTP (--insecure)",
            (None, false) => "plain HTTP on loopback",
        };
        let auth = match (&self.tls, &self.tokens) {
            (Some(_), Some(_)) => "client certificates or tokens",
            (Some(_), None) => "client certificates",
            (None, Some(_)) => "tokens for the admin API (Raft RPC is unauthenticated without TLS)",
            (None, None) => "none",
        };
        format!("{transport}, authentication: {auth}")
    }

    pub fn status(&self) -> SecurityStatus {
        let info = self.tls.as_ref().map(|t| t.info());
        SecurityStatus {
            tls: self.tls.is_some(),
            insecure: self.insecure && self.tls.is_none(),
            authentication_required: self.required(),
            cert_fingerprint: info.as_ref().map(|i| i.fingerprint.clone()),
            cert_reloads: info.as_ref().map(|i| i.reloads).unwrap_or(0),
            tls_error: info.and_then(|i| i.last_error),
            tokens: self.tokens.as_ref().map(|t| t.entries().len()).unwrap_or(0),
            tokens_error: self.tokens.as_ref().and_then(|t| t.last_error()),
        }
    }

    /// Re-reads the TLS files and the tokens file when they change.
    pub fn spawn_reloader(&self, every: Duration) {
        if let Some(t) = &self.tls {
            t.spawn_reloader(every);
        }
        if let Some(tokens) = self.tokens.clone() {
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                loop {
                    tick.tick().await;
                    let t = tokens.clone();
                    let _ = tokio::task::spawn_blocking(move || t.reload_if_changed()).await;
                }
            });
        }
    }

    /// Whether a refusal `key` should be recorded now (not recorded within the quiet time).
    pub fn refusal_due(&self, key: &str) -> bool {
        let now = Instant::now();
        let mut m = match self.refusals.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        if m.len() > 4096 {
            m.retain(|_, at| now.duration_since(*at) < REFUSAL_QUIET);
        }
        match m.get(key) {
            Some(at) if now.duration_since(*at) < REFUSAL_QUIET => false,
            _ => {
                m.insert(key.to_string(), now);
                true
            }
        }
    }
}

/// Records one audit event: `subject` is the identity's name (or the peer address when
/// there is none).
pub fn audit(events: &JournalWriter, director: &str, subject: &str, summary: &str) {
    tracing::info!(director, who = subject, "audit: {summary}");
    events.record("audit", subject, summary, None);
}

/// The summary of a request's outcome.
pub fn request_summary(
    who: &Identity,
    method: &str,
    path: &str,
    peer: &str,
    status: u16,
    outcome: &str,
) -> String {
    format!("{method} {path} by {who} from {peer}: {status} {outcome}")
}

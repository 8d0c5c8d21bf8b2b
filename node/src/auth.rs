//! Who is calling and whether they may: the identity a request proves (a client
//! certificate checked by [`crate::transport::tls`], or a bearer token from the tokens
//! file) and what each route needs.
//!
//! Authentication is required when the director serves TLS or has a tokens file; a
//! director with neither (loopback, or `--insecure`) treats every caller as an operator
//! and says so in its status.

use ha_config::access::{find_token, parse_tokens, Identity, Proof, Role, TokenEntry};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// Set by a director that forwards a request to the leader: the identity it authenticated
/// (`NAME ROLE PROOF`). Trusted only from a connection that proved to be a director.
pub const FORWARDED_IDENTITY: &str = "x-ha-forwarded-identity";

/// What a route needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// Raft RPC: a director's certificate.
    Director,
    /// A change: operator (or director).
    Change,
    /// Reading: any authenticated identity.
    Read,
}

/// What a route needs, by method and path.
pub fn need(method: &hyper::Method, path: &str) -> Need {
    if path.starts_with("/raft/") || path.starts_with("/cluster/") {
        Need::Director
    } else if method == hyper::Method::GET || method == hyper::Method::HEAD {
        Need::Read
    } else {
        Need::Change
    }
}

/// Why a request was refused: 401 (who are you?) or 403 (not allowed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    Unauthenticated(String),
    Forbidden(String),
}

/// The tokens file, re-read when it changes.
pub struct Tokens {
    path: PathBuf,
    state: Mutex<(Vec<u8>, Arc<Vec<TokenEntry>>)>,
    /// Why the file as it is now cannot be used (unreadable, or does not parse).
    last_error: Mutex<Option<String>>,
}

impl Tokens {
    /// Reads the file; an error names FILE:LINE:COL.
    pub fn load(path: PathBuf) -> Result<Tokens, String> {
        let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let entries = parse_bytes(&bytes, &path)?;
        check_mode(&path);
        Ok(Tokens {
            path,
            state: Mutex::new((bytes, Arc::new(entries))),
            last_error: Mutex::new(None),
        })
    }

    /// Why the tokens file cannot be used as it is now; the tokens in use stay meanwhile.
    pub fn last_error(&self) -> Option<String> {
        match self.last_error.lock() {
            Ok(e) => e.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Records the outcome of a reload; a new error is logged once.
    fn note(&self, error: Option<&str>) {
        let mut last = match self.last_error.lock() {
            Ok(e) => e,
            Err(p) => p.into_inner(),
        };
        if let Some(e) = error {
            if last.as_deref() != Some(e) {
                tracing::error!("tokens file cannot be used, keeping the tokens in use: {e}");
            }
        } else if last.is_some() {
            tracing::info!(file = %self.path.display(), "tokens file usable again");
        }
        *last = error.map(str::to_string);
    }

    /// Tokens held in memory only (never reloaded): for decoding tests and fuzzing.
    pub fn fixed(entries: Vec<TokenEntry>) -> Tokens {
        Tokens {
            path: PathBuf::from("(memory)"),
            state: Mutex::new((Vec::new(), Arc::new(entries))),
            last_error: Mutex::new(None),
        }
    }

    pub fn entries(&self) -> Arc<Vec<TokenEntry>> {
        match self.state.lock() {
            Ok(s) => s.1.clone(),
            Err(p) => p.into_inner().1.clone(),
        }
    }

    /// Re-reads the file if it changed; a file that no longer parses keeps the tokens in use.
    pub fn reload_if_changed(&self) -> Result<bool, String> {
        let outcome = self.reload();
        self.note(outcome.as_ref().err().map(String::as_str));
        outcome
    }

    fn reload(&self) -> Result<bool, String> {
        let bytes = std::fs::read(&self.path).map_err(|e| format!("{}: {e}", self.path.display()))?;
        let mut g = match self.state.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if g.0 == bytes {
            return Ok(false);
        }
        let entries = parse_bytes(&bytes, &self.path)?;
        tracing::info!(file = %self.path.display(), tokens = entries.len(), "tokens file reloaded");
        *g = (bytes, Arc::new(entries));
        Ok(true)
    }
}

fn parse_bytes(bytes: &[u8], path: &std::path::Path) -> Result<Vec<TokenEntry>, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| format!("{}: not UTF-8: {e}", path.display()))?;
    parse_tokens(text, &path.display().to_string())
}

fn check_mode(path: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(m) = std::fs::metadata(path) {
        if m.permissions().mode() & 0o077 != 0 {
            tracing::warn!(file = %path.display(), "tokens file is readable by others (it holds hashes only, but chmod 600 is advised)");
        }
    }
}

/// The identity a request proves. `cert`: the verified client certificate's identity
/// (None without one, or on plain HTTP); `bearer`: the `Authorization` header.
pub fn authenticate(
    required: bool,
    cert: Option<&Identity>,
    bearer: Option<&str>,
    tokens: Option<&Tokens>,
) -> Result<Identity, Refusal> {
    if let Some(c) = cert {
        return Ok(c.clone());
    }
    if let Some(h) = bearer {
        let token = h
            .strip_prefix("Bearer ")
            .or_else(|| h.strip_prefix("bearer "))
            .map(str::trim)
            .ok_or_else(|| Refusal::Unauthenticated("Authorization: expected `Bearer TOKEN`".into()))?;
        let Some(tokens) = tokens else {
            return Err(Refusal::Unauthenticated(
                "a bearer token was sent but this director has no tokens file".into(),
            ));
        };
        let entries = tokens.entries();
        return match find_token(&entries, token) {
            Some(e) => Ok(Identity {
                name: e.name.clone(),
                role: e.role,
                proof: Proof::Token,
            }),
            None => Err(Refusal::Unauthenticated("unknown bearer token".into())),
        };
    }
    if required {
        return Err(Refusal::Unauthenticated(
            "authentication required: present a client certificate from the cluster's CA or `Authorization: Bearer TOKEN`"
                .into(),
        ));
    }
    Ok(Identity {
        name: "anonymous".into(),
        role: Role::Operator,
        proof: Proof::Unauthenticated,
    })
}

/// Whether a route needs the caller to authenticate: Raft RPC when the director speaks
/// TLS (directors have no other proof), everything else also when it has tokens.
pub fn required(need: Need, tls: bool, tokens: bool) -> bool {
    match need {
        Need::Director => tls,
        Need::Change | Need::Read => tls || tokens,
    }
}

/// Whether `who` may call a route that needs `need`.
pub fn authorize(who: &Identity, need: Need) -> Result<(), Refusal> {
    let ok = match need {
        Need::Director => who.role == Role::Director || who.proof == Proof::Unauthenticated,
        Need::Change => who.role.may_change(),
        Need::Read => true,
    };
    if ok {
        return Ok(());
    }
    Err(Refusal::Forbidden(match need {
        Need::Director => format!("{who} is not a director: Raft RPC needs a director's certificate"),
        Need::Change => format!("{who} may only read: changes need the operator role"),
        Need::Read => unreachable!("reading is allowed to every identity"),
    }))
}

/// The identity a director forwarded, when `via` is a director's certificate; else `via`
/// itself (without TLS a follower forwards the caller's token instead, and an
/// unauthenticated caller's claim is not taken).
pub fn forwarded(via: Identity, header: Option<&str>) -> Result<Identity, Refusal> {
    let Some(h) = header else { return Ok(via) };
    if via.proof == Proof::Unauthenticated {
        return Ok(via);
    }
    if via.role != Role::Director || via.proof != Proof::Certificate {
        return Err(Refusal::Forbidden(format!(
            "{via} sent {FORWARDED_IDENTITY}, which only directors may send"
        )));
    }
    let mut f = h.split(' ');
    let (Some(name), Some(role), Some(proof), None) = (f.next(), f.next(), f.next(), f.next()) else {
        return Err(Refusal::Unauthenticated(format!(
            "{FORWARDED_IDENTITY}: expected `NAME ROLE PROOF`"
        )));
    };
    let role: Role = role
        .parse()
        .map_err(|e| Refusal::Unauthenticated(format!("{FORWARDED_IDENTITY}: {e}")))?;
    // A director forwards what its caller proved; it cannot lend its own powers, nor
    // another director's, nor vouch for a caller that proved nothing.
    if role == Role::Director && name != via.name {
        return Err(Refusal::Forbidden(format!(
            "{via} forwarded the identity of another director ({name:?})"
        )));
    }
    let proof = match proof {
        "certificate" => Proof::Certificate,
        "token" => Proof::Token,
        "unauthenticated" => {
            return Err(Refusal::Forbidden(format!(
                "{via} forwarded an unauthenticated caller"
            )))
        }
        other => {
            return Err(Refusal::Unauthenticated(format!(
                "{FORWARDED_IDENTITY}: unknown proof {other:?}"
            )))
        }
    };
    Ok(Identity {
        name: name.to_string(),
        role,
        proof,
    })
}

/// The header value a forwarding director sends for `who`.
pub fn forwarded_header(who: &Identity) -> String {
    format!("{} {} {}", who.name, who.role, who.proof.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ha_config::access::hash_token;

    fn tokens(dir: &std::path::Path, text: &str) -> Tokens {
        let p = dir.join("tokens");
        std::fs::write(&p, text).unwrap();
        Tokens::load(p).unwrap()
    }

    #[test]
    fn certificates_and_tokens_give_identities_and_roles_decide() {
        let dir = tempfile::tempdir().unwrap();
        let t = tokens(
            dir.path(),
            &format!(
                "alice operator {}\naudit read-only {}\n",
                hash_token("hat_a"),
                hash_token("hat_r")
            ),
        );
        let alice = authenticate(true, None, Some("Bearer hat_a"), Some(&t)).unwrap();
        assert_eq!(
            (alice.name.as_str(), alice.role, alice.proof),
            ("alice", Role::Operator, Proof::Token)
        );
        let audit = authenticate(true, None, Some("Bearer hat_r"), Some(&t)).unwrap();
        assert!(authorize(&audit, Need::Read).is_ok());
        assert!(matches!(
            authorize(&audit, Need::Change),
            Err(Refusal::Forbidden(_))
        ));
        assert!(authorize(&alice, Need::Change).is_ok());
        assert!(matches!(
            authorize(&alice, Need::Director),
            Err(Refusal::Forbidden(_))
        ));
        assert!(matches!(
            authenticate(true, None, Some("Bearer hat_x"), Some(&t)),
            Err(Refusal::Unauthenticated(_))
        ));
        assert!(matches!(
            authenticate(true, None, Some("Basic abc"), Some(&t)),
            Err(Refusal::Unauthenticated(_))
        ));
        assert!(matches!(
            authenticate(true, None, None, Some(&t)),
            Err(Refusal::Unauthenticated(_))
        ));
        // Without TLS or tokens: everyone is an (unauthenticated) operator.
        let anon = authenticate(false, None, None, None).unwrap();
        assert!(authorize(&anon, Need::Change).is_ok() && authorize(&anon, Need::Director).is_ok());
        let dir_cert = Identity {
            name: "lvs02".into(),
            role: Role::Director,
            proof: Proof::Certificate,
        };
        assert_eq!(
            authenticate(true, Some(&dir_cert), Some("Bearer hat_r"), Some(&t)).unwrap(),
            dir_cert
        );
    }

    #[test]
    fn only_directors_may_forward_an_identity() {
        let director = Identity {
            name: "lvs02".into(),
            role: Role::Director,
            proof: Proof::Certificate,
        };
        let audit = Identity {
            name: "audit".into(),
            role: Role::ReadOnly,
            proof: Proof::Token,
        };
        let h = forwarded_header(&audit);
        assert_eq!(forwarded(director.clone(), Some(&h)).unwrap(), audit);
        assert_eq!(forwarded(director.clone(), None).unwrap(), director);
        let alice = Identity {
            name: "alice".into(),
            role: Role::Operator,
            proof: Proof::Token,
        };
        assert!(matches!(
            forwarded(alice, Some("x director certificate")),
            Err(Refusal::Forbidden(_))
        ));
        assert!(forwarded(director.clone(), Some("x root token")).is_err());
        assert!(matches!(
            forwarded(director.clone(), Some("x operator unauthenticated")),
            Err(Refusal::Forbidden(_))
        ));
        assert!(matches!(
            forwarded(director.clone(), Some("lvs05 director certificate")),
            Err(Refusal::Forbidden(_))
        ));
        assert!(forwarded(director.clone(), Some("lvs02 director certificate")).is_ok());
        let anon = authenticate(false, None, None, None).unwrap();
        assert_eq!(
            forwarded(anon.clone(), Some("alice operator certificate")).unwrap(),
            anon
        );
        assert!(required(Need::Director, true, false) && !required(Need::Director, false, true));
        assert!(required(Need::Read, false, true) && !required(Need::Change, false, false));
    }

    #[test]
    fn a_changed_tokens_file_is_reloaded_and_a_broken_one_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let t = tokens(dir.path(), &format!("alice operator {}\n", hash_token("hat_a")));
        assert_eq!(t.reload_if_changed(), Ok(false));
        std::fs::write(
            dir.path().join("tokens"),
            format!("bob operator {}\n", hash_token("hat_b")),
        )
        .unwrap();
        assert_eq!(t.reload_if_changed(), Ok(true));
        assert!(authenticate(true, None, Some("Bearer hat_a"), Some(&t)).is_err());
        assert!(authenticate(true, None, Some("Bearer hat_b"), Some(&t)).is_ok());
        std::fs::write(dir.path().join("tokens"), "bob operator nothash\n").unwrap();
        let e = t.reload_if_changed().unwrap_err();
        assert!(e.contains("tokens:1:14"), "{e}");
        assert!(authenticate(true, None, Some("Bearer hat_b"), Some(&t)).is_ok());
        assert!(t.last_error().is_some_and(|e| e.contains("tokens:1:14")));
        // A removed file is reported too, and the tokens in use stay.
        std::fs::remove_file(dir.path().join("tokens")).unwrap();
        assert!(t.reload_if_changed().is_err());
        assert!(
            t.last_error().is_some_and(|e| e.contains("No such file")),
            "{:?}",
            t.last_error()
        );
        assert!(authenticate(true, None, Some("Bearer hat_b"), Some(&t)).is_ok());
        // Fixed: the report clears.
        std::fs::write(
            dir.path().join("tokens"),
            format!("bob operator {}\n", hash_token("hat_b")),
        )
        .unwrap();
        assert_eq!(t.reload_if_changed(), Ok(false));
        assert_eq!(t.last_error(), None);
    }
}

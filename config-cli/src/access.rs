//! Who may do what on a director's API: roles, the identities certificates and tokens
//! carry, and the tokens file (hashes only; the tokens themselves are shown once, when
//! `hactl token new` makes them).
//!
//! A certificate names its holder in the subject's common name and its role in the
//! organisational unit (`hactl cert issue` writes both). Directors' certificates also carry
//! their name as a DNS name and their addresses as IP names, so `curl --cacert` and peers
//! can check them like any server certificate.

use sha2::{Digest, Sha256};
use std::fmt;
use std::str::FromStr;

/// Director names: what keepalived's `@NAME` accepts, certificates carry and ids hash.
pub fn check_director_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 64 {
        return Err(format!("director name must be 1 to 64 characters, got {name:?}"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(format!(
            "director name {name:?} may only contain letters, digits, '-', '_' and '.'"
        ));
    }
    Ok(())
}

/// What an identity may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Status, history, events, replay, table, config, metrics.
    ReadOnly,
    /// Also proposals and membership changes.
    Operator,
    /// A director of the cluster: Raft RPC, joining under its own name, and what an
    /// operator may do (a follower forwards writes to the leader).
    Director,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::ReadOnly => "read-only",
            Role::Operator => "operator",
            Role::Director => "director",
        }
    }

    /// Whether this role may make changes (propose, add or remove members).
    pub fn may_change(self) -> bool {
        matches!(self, Role::Operator | Role::Director)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "read-only" | "readonly" | "read_only" => Ok(Role::ReadOnly),
            "operator" => Ok(Role::Operator),
            "director" => Ok(Role::Director),
            other => Err(format!(
                "unknown role {other:?}: expected read-only, operator or director"
            )),
        }
    }
}

/// How a caller proved who it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proof {
    /// A client certificate from the cluster's CA.
    Certificate,
    /// A bearer token from the tokens file.
    Token,
    /// Nothing: the API runs without authentication (loopback or `--insecure`).
    Unauthenticated,
}

impl Proof {
    pub fn as_str(self) -> &'static str {
        match self {
            Proof::Certificate => "certificate",
            Proof::Token => "token",
            Proof::Unauthenticated => "unauthenticated",
        }
    }
}

/// An authenticated caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub name: String,
    pub role: Role,
    pub proof: Proof,
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}, {})", self.name, self.role, self.proof.as_str())
    }
}

/// Tokens `hactl token new` makes start with this, so they are easy to spot in a leak.
pub const TOKEN_PREFIX: &str = "hat_";

/// The stored form of a token: `sha256:` and the hex digest. Tokens are 256 random bits,
/// so one fast hash is enough (no password stretching needed).
pub fn hash_token(token: &str) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(token.as_bytes())))
}

/// One line of the tokens file: `NAME ROLE sha256:HEX`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenEntry {
    pub name: String,
    pub role: Role,
    /// `sha256:` + 64 hex digits.
    pub hash: String,
}

impl TokenEntry {
    pub fn line(&self) -> String {
        format!("{} {} {}", self.name, self.role, self.hash)
    }
}

/// The tokens file: `NAME ROLE sha256:HEX` per line; `#` comments and blank lines
/// ignored. Errors name `FILE:LINE:COL`.
pub fn parse_tokens(text: &str, file: &str) -> Result<Vec<TokenEntry>, String> {
    let mut out: Vec<TokenEntry> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = raw.split('#').next().unwrap_or("");
        if line.trim().is_empty() {
            continue;
        }
        let mut fields = Vec::new();
        let mut col = 0usize;
        for part in line.split([' ', '\t']) {
            if !part.is_empty() {
                fields.push((col + 1, part));
            }
            col += part.len() + 1;
        }
        let at = |c: usize| format!("{file}:{line_no}:{c}");
        if fields.len() != 3 {
            return Err(format!(
                "{}: expected `NAME ROLE sha256:HEX`, got {} field(s)",
                at(fields.first().map(|f| f.0).unwrap_or(1)),
                fields.len()
            ));
        }
        let (nc, name) = fields[0];
        let (rc, role) = fields[1];
        let (hc, hash) = fields[2];
        if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'))
            || name.len() > 128
        {
            return Err(format!(
                "{}: token name {name:?} may only contain letters, digits, '-', '_', '.' and '@'",
                at(nc)
            ));
        }
        let role: Role = role.parse().map_err(|e| format!("{}: {e}", at(rc)))?;
        if role == Role::Director {
            return Err(format!(
                "{}: a token cannot have the director role (directors authenticate with their certificates)",
                at(rc)
            ));
        }
        let digest = hash.strip_prefix("sha256:").unwrap_or("");
        if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!(
                "{}: expected sha256: and 64 hex digits (from `hactl token new`), got {hash:?}{}",
                at(hc),
                if hash.starts_with(TOKEN_PREFIX) {
                    " - this looks like the token itself; store only its hash"
                } else {
                    ""
                }
            ));
        }
        if let Some(prev) = out.iter().find(|e| e.name == name) {
            return Err(format!(
                "{}: token name {name:?} appears twice (first with role {})",
                at(nc),
                prev.role
            ));
        }
        out.push(TokenEntry {
            name: name.to_string(),
            role,
            hash: format!("sha256:{}", digest.to_ascii_lowercase()),
        });
    }
    Ok(out)
}

/// Finds the entry whose hash matches `token`, comparing every entry in full (the time
/// taken does not depend on where, or whether, a match is).
pub fn find_token<'a>(entries: &'a [TokenEntry], token: &str) -> Option<&'a TokenEntry> {
    let want = hash_token(token);
    let mut found = None;
    for e in entries {
        let same = e.hash.len() == want.len()
            && e.hash
                .bytes()
                .zip(want.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        if same && found.is_none() {
            found = Some(e);
        }
    }
    found
}

/// A new token: the prefix and 32 bytes from the kernel's random source, in hex.
pub fn new_token() -> std::io::Result<String> {
    use std::io::Read;
    let mut buf = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok(format!("{TOKEN_PREFIX}{}", hex::encode(buf)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_matched_by_hash_and_never_stored_in_clear() {
        let t = new_token().unwrap();
        assert!(t.starts_with(TOKEN_PREFIX) && t.len() == TOKEN_PREFIX.len() + 64);
        assert_ne!(new_token().unwrap(), t);
        let file = format!(
            "# who may call the admin API\nalice operator {}\n\nbob\tread-only  {} # auditor\n",
            hash_token(&t),
            hash_token("hat_other")
        );
        let entries = parse_tokens(&file, "tokens").unwrap();
        assert_eq!(entries.len(), 2);
        assert!(!file.contains(&t));
        assert_eq!(
            find_token(&entries, &t).map(|e| (e.name.as_str(), e.role)),
            Some(("alice", Role::Operator))
        );
        assert_eq!(
            find_token(&entries, "hat_other").map(|e| e.role),
            Some(Role::ReadOnly)
        );
        assert!(find_token(&entries, "hat_wrong").is_none());
        assert!(find_token(&entries, "").is_none());
        assert_eq!(parse_tokens(&entries[0].line(), "t").unwrap()[0], entries[0]);
    }

    #[test]
    fn a_bad_tokens_file_is_refused_with_its_position() {
        let h = hash_token("x");
        let cases = [
            ("alice operator\n".to_string(), "tokens:1:1", "field(s)"),
            (format!("\nalice admin {h}\n"), "tokens:2:7", "unknown role"),
            ("alice operator sha256:12\n".to_string(), "tokens:1:16", "64 hex"),
            (
                "alice operator hat_abc\n".to_string(),
                "tokens:1:16",
                "token itself",
            ),
            (
                format!("alice operator {h}\nalice read-only {h}\n"),
                "tokens:2:1",
                "twice",
            ),
            (format!("al ice operator {h}\n"), "tokens:1:1", "field(s)"),
            (format!("a/b operator {h}\n"), "tokens:1:1", "may only contain"),
            (format!("n1 director {h}\n"), "tokens:1:4", "director role"),
        ];
        for (text, at, what) in cases {
            let e = parse_tokens(&text, "tokens").unwrap_err();
            assert!(e.starts_with(at) && e.contains(what), "{text:?}: {e}");
        }
    }

    #[test]
    fn roles_parse_and_only_operators_and_directors_change_things() {
        for r in [Role::ReadOnly, Role::Operator, Role::Director] {
            assert_eq!(r.as_str().parse::<Role>(), Ok(r));
        }
        assert!("root".parse::<Role>().is_err());
        assert!(!Role::ReadOnly.may_change());
        assert!(Role::Operator.may_change() && Role::Director.may_change());
    }
}

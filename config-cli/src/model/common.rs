use serde::{Deserialize, Serialize};
use std::fmt;

/// A duration as keepalived reads it: decimal seconds with microsecond resolution.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Dur(pub u64);

impl Dur {
    pub const fn from_secs(s: u64) -> Self {
        Dur(s * 1_000_000)
    }

    pub const fn from_millis(ms: u64) -> Self {
        Dur(ms * 1_000)
    }

    pub fn as_micros(self) -> u64 {
        self.0
    }

    pub fn as_std(self) -> std::time::Duration {
        std::time::Duration::from_micros(self.0)
    }

    /// Parses `"1"`, `"0.5"`, `"3.000001"` (seconds). None if not a number or too precise.
    pub fn parse_secs(s: &str) -> Option<Dur> {
        let (int, frac) = match s.split_once('.') {
            Some((i, f)) => (i, f),
            None => (s, ""),
        };
        if int.is_empty() && frac.is_empty() {
            return None;
        }
        if !int.chars().all(|c| c.is_ascii_digit()) || !frac.chars().all(|c| c.is_ascii_digit()) {
            return None;
        }
        if frac.len() > 6 {
            return None;
        }
        let whole: u64 = if int.is_empty() { 0 } else { int.parse().ok()? };
        let mut micros: u64 = 0;
        for (i, c) in frac.chars().enumerate() {
            micros += (c as u64 - '0' as u64) * 10u64.pow(5 - i as u32);
        }
        whole.checked_mul(1_000_000)?.checked_add(micros).map(Dur)
    }
}

impl fmt::Display for Dur {
    /// Seconds, without trailing zeros: `1`, `0.5`, `3.000001`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0 / 1_000_000;
        let micros = self.0 % 1_000_000;
        if micros == 0 {
            write!(f, "{secs}")
        } else {
            let frac = format!("{micros:06}");
            write!(f, "{secs}.{}", frac.trim_end_matches('0'))
        }
    }
}

/// A user (and optional group) that scripts run as.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ScriptUser {
    pub user: String,
    pub group: Option<String>,
}

/// An external program as written in the config: one command line (keepalived splits it
/// into argv itself, honouring quotes), optionally run as another user.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Script {
    pub cmd: String,
    pub user: Option<ScriptUser>,
}

impl Script {
    pub fn new(cmd: impl Into<String>) -> Self {
        Script {
            cmd: cmd.into(),
            user: None,
        }
    }

    /// argv as keepalived builds it: blanks separate, single and double quotes group,
    /// a backslash escapes the next character. No shell is involved.
    pub fn argv(&self) -> Vec<String> {
        split_command(&self.cmd)
    }
}

pub fn split_command(cmd: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = cmd.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), '\\') | (None, '\\') => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
                in_word = true;
            }
            (Some(_), c) => cur.push(c),
            (None, '"') | (None, '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (None, c) => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    out
}

/// A statement keepalived knows but we do not model, kept verbatim for export.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RawStmt {
    pub words: Vec<String>,
    pub block: Option<Vec<RawStmt>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_print() {
        assert_eq!(Dur::parse_secs("1"), Some(Dur(1_000_000)));
        assert_eq!(Dur::parse_secs("0.5"), Some(Dur(500_000)));
        assert_eq!(Dur::parse_secs(".25"), Some(Dur(250_000)));
        assert_eq!(Dur::parse_secs("3.000001"), Some(Dur(3_000_001)));
        assert_eq!(Dur::parse_secs("1.0000001"), None);
        assert_eq!(Dur::parse_secs("-1"), None);
        assert_eq!(Dur::parse_secs("1e3"), None);
        assert_eq!(Dur::parse_secs(""), None);
        assert_eq!(Dur::parse_secs("99999999999999999999"), None);
        for s in ["1", "0.5", "3.000001", "0"] {
            assert_eq!(Dur::parse_secs(s).unwrap().to_string(), s);
        }
    }

    #[test]
    fn commands_split_like_keepalived() {
        assert_eq!(
            split_command(r#"/usr/bin/check "a b" 'c d' e\ f"#),
            ["/usr/bin/check", "a b", "c d", "e f"]
        );
        assert_eq!(split_command("  x  "), ["x"]);
        assert_eq!(split_command(r#""""#), [""]);
    }
}

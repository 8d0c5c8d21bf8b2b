//! `hactl cert init|issue` and `hactl token new`: files written with mode 0600 (keys) and
//! never over an existing one.

use anyhow::{anyhow, bail, Context, Result};
use clap::Subcommand;
use ha_config::access::{hash_token, new_token, parse_tokens, Role, TokenEntry};
use ha_config::pki;
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum CertCmd {
    /// Make a CA: DIR/ca.pem (give it to every director and operator) and DIR/ca.key
    /// (keep it off the directors).
    Init {
        /// Where ca.pem and ca.key are written (created if missing).
        #[arg(long)]
        dir: PathBuf,
        /// The CA's common name.
        #[arg(long, default_value = "ha-directors CA")]
        name: String,
        /// Days the CA certificate is valid.
        #[arg(long, default_value_t = 3650)]
        days: u32,
    },
    /// Issue DIR/NAME.pem and DIR/NAME.key, signed by DIR/ca.pem and DIR/ca.key: for a
    /// director (`--node NAME --ip ADDR...`) or a person or tool (`--client NAME --role
    /// operator|read-only`).
    Issue {
        /// The CA's directory (ca.pem, ca.key); the certificate and key are written there.
        #[arg(long)]
        dir: PathBuf,
        /// A director, by its name in the cluster.
        #[arg(long, conflicts_with_all = ["client", "role"], required_unless_present = "client")]
        node: Option<String>,
        /// An address the director serves on (its --advertise address); repeat.
        #[arg(long = "ip", requires = "node")]
        ips: Vec<IpAddr>,
        /// An operator or auditor.
        #[arg(long, requires = "role")]
        client: Option<String>,
        /// operator or read-only.
        #[arg(long)]
        role: Option<Role>,
        /// Days the certificate is valid.
        #[arg(long, default_value_t = 365)]
        days: u32,
    },
}

#[derive(Subcommand)]
pub enum TokenCmd {
    /// Make a token for NAME: prints it once, stores only its hash in the tokens file
    /// (give the same file to every director: `hanode --tokens-file`).
    New {
        /// Who the token is for (named in the audit events of its requests).
        name: String,
        /// operator or read-only.
        #[arg(long)]
        role: Role,
        /// The tokens file to add to (created mode 0600).
        #[arg(long)]
        file: PathBuf,
    },
}

/// Writes a new file (refusing to replace one).
fn create(path: &Path, content: &str, mode: u32) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("{} (not replaced if it exists)", path.display()))?;
    f.write_all(content.as_bytes())
        .with_context(|| path.display().to_string())?;
    Ok(())
}

/// Writes a key and its certificate, both or neither: nothing is written if either exists.
fn create_pair(key: (&Path, &str), cert: (&Path, &str)) -> Result<()> {
    for p in [key.0, cert.0] {
        if p.exists() {
            bail!("{} exists (not replaced; nothing written)", p.display());
        }
    }
    create(key.0, key.1, 0o600)?;
    if let Err(e) = create(cert.0, cert.1, 0o644) {
        let _ = std::fs::remove_file(key.0);
        return Err(e);
    }
    Ok(())
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| path.display().to_string())
}

pub fn cert(cmd: CertCmd) -> Result<ExitCode> {
    match cmd {
        CertCmd::Init { dir, name, days } => {
            std::fs::create_dir_all(&dir).with_context(|| dir.display().to_string())?;
            let ca = pki::new_ca(&name, days).map_err(|e| anyhow!(e))?;
            create_pair(
                (&dir.join("ca.key"), &ca.key_pem),
                (&dir.join("ca.pem"), &ca.cert_pem),
            )?;
            println!("{}: CA certificate ({days} days)", dir.join("ca.pem").display());
            println!(
                "{}: CA key - keep it off the directors",
                dir.join("ca.key").display()
            );
        }
        CertCmd::Issue {
            dir,
            node,
            ips,
            client,
            role,
            days,
        } => {
            let (name, role) = match (node, client, role) {
                (Some(n), None, None) => {
                    ha_config::access::check_director_name(&n).map_err(|e| anyhow!("--node: {e}"))?;
                    (n, Role::Director)
                }
                (None, Some(c), Some(r)) => {
                    let ok = !c.is_empty()
                        && c.len() <= 128
                        && c.chars()
                            .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_' | '.' | '@'))
                        && !c.starts_with('.');
                    if !ok {
                        bail!("--client {c:?}: use letters, digits, '-', '_', '.' and '@' (it names the files and the identity)");
                    }
                    if r == Role::Director {
                        bail!("--role director: use --node NAME for a director's certificate");
                    }
                    (c, r)
                }
                _ => bail!("give --node NAME [--ip ADDR...], or --client NAME --role operator|read-only"),
            };
            let issued = pki::issue(
                &read(&dir.join("ca.pem"))?,
                &read(&dir.join("ca.key"))?,
                &pki::Subject {
                    name: &name,
                    role,
                    ips: &ips,
                    days,
                },
            )
            .map_err(|e| anyhow!(e))?;
            create_pair(
                (&dir.join(format!("{name}.key")), &issued.key_pem),
                (&dir.join(format!("{name}.pem")), &issued.cert_pem),
            )?;
            println!(
                "{}: certificate for {name} ({role}, {days} days){}",
                dir.join(format!("{name}.pem")).display(),
                if ips.is_empty() {
                    String::new()
                } else {
                    format!(
                        ", addresses {}",
                        ips.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(" ")
                    )
                }
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn token(cmd: TokenCmd) -> Result<ExitCode> {
    let TokenCmd::New { name, role, file } = cmd;
    if role == Role::Director {
        bail!("--role director: directors authenticate with their certificates");
    }
    let existing = match std::fs::read_to_string(&file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(anyhow!("{}: {e}", file.display())),
    };
    let mut entries = parse_tokens(&existing, &file.display().to_string()).map_err(|e| anyhow!(e))?;
    if entries.iter().any(|e| e.name == name) {
        bail!(
            "{}: {name:?} already has a token; remove its line first",
            file.display()
        );
    }
    let token = new_token().context("reading /dev/urandom")?;
    let entry = TokenEntry {
        name: name.clone(),
        role,
        hash: hash_token(&token),
    };
    // Check the line we add parses (the name's characters).
    parse_tokens(&entry.line(), "new entry").map_err(|e| anyhow!("{name:?}: {e}"))?;
    entries.push(entry.clone());
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(&file)
        .with_context(|| file.display().to_string())?;
    // An existing file readable by others is tightened: it now holds one more hash.
    let mode = f
        .metadata()
        .with_context(|| file.display().to_string())?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        f.set_permissions(std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("{}: chmod 600", file.display()))?;
        eprintln!("{}: mode {:o} tightened to 600", file.display(), mode & 0o777);
    }
    let sep = if existing.is_empty() || existing.ends_with('\n') {
        ""
    } else {
        "\n"
    };
    writeln!(f, "{sep}{}", entry.line()).with_context(|| file.display().to_string())?;
    eprintln!(
        "added {name} ({role}) to {}; the token is shown once, here:",
        file.display()
    );
    println!("{token}");
    Ok(ExitCode::SUCCESS)
}

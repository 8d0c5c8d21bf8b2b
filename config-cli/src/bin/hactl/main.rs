//! `hactl`: the operator's command line for the director cluster.
//!
//! Offline commands work on files (check, import, export, hash, diff, fmt); cluster
//! commands (propose, config, status, history, cluster) talk to `hanode`.

mod audit;
mod cluster_cmds;
mod offline;
mod pki_cmds;
mod remote;

use clap::{Parser, Subcommand, ValueEnum};

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "hactl",
    version,
    about = "Operate a keepalived-compatible director cluster"
)]
struct Cli {
    /// Directors to talk to: HOST:PORT[,HOST:PORT...], tried in turn.
    #[arg(long, env = "HACTL_CLUSTER", global = true, help_heading = CONNECTION)]
    cluster: Option<String>,
    /// The cluster's CA certificate: talk TLS and check the directors against it.
    #[arg(long, env = "HACTL_CA", global = true, help_heading = CONNECTION)]
    ca: Option<PathBuf>,
    /// Client certificate (`hactl cert issue --client NAME --role ROLE`).
    #[arg(long, env = "HACTL_CERT", global = true, requires = "key", help_heading = CONNECTION)]
    cert: Option<PathBuf>,
    /// The client certificate's private key.
    #[arg(long, env = "HACTL_KEY", global = true, requires = "cert", help_heading = CONNECTION)]
    key: Option<PathBuf>,
    /// Bearer token (`hactl token new`); prefer HACTL_TOKEN (the command line is visible
    /// to other users in `ps`).
    #[arg(
        long,
        env = "HACTL_TOKEN",
        global = true,
        hide_env_values = true,
        help_heading = CONNECTION
    )]
    token: Option<String>,
    /// While every director answers "unavailable" (an election, a director whose store
    /// failed), keep trying for SECS seconds before giving up (default: 30 for changes,
    /// 5 for reads).
    #[arg(long, env = "HACTL_PATIENCE", global = true, value_name = "SECS", help_heading = CONNECTION)]
    patience: Option<u64>,
    #[command(subcommand)]
    cmd: Cmd,
}

/// The heading the options of every cluster command are listed under, apart from a
/// subcommand's own.
const CONNECTION: &str = "Cluster connection (every command that talks to the directors)";

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    Jsonl,
}

#[derive(Subcommand)]
enum Cmd {
    /// Check configuration files: `FILE:LINE:COL: error|warning: message`; exit 1 on errors.
    Check {
        /// The files (a cluster file, or one director's keepalived.conf).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Also check the view of these directors (beyond those named in `@` lines).
        #[arg(long = "node")]
        nodes: Vec<String>,
        /// Output: text for people, json for scripts.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Merge per-director keepalived.conf files into one cluster file.
    Import {
        /// NAME=FILE, once per director.
        #[arg(long = "node", required = true, value_parser = offline::parse_node_file)]
        nodes: Vec<(String, PathBuf)>,
        /// Write here instead of standard output.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Write the plain keepalived.conf one director would run (no `@` lines).
    Export {
        /// The cluster file.
        file: PathBuf,
        /// The director whose view is written.
        #[arg(long)]
        node: String,
        /// Write here instead of standard output.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Print the sha256 of the configuration's canonical form.
    Hash {
        /// The cluster file.
        file: PathBuf,
    },
    /// Show the semantic difference between two configurations.
    Diff {
        /// The configuration before.
        old: PathBuf,
        /// The configuration after.
        new: PathBuf,
        /// Output: text for people, json for scripts.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Print the configuration in canonical form.
    Fmt {
        /// The cluster file.
        file: PathBuf,
    },
    /// Validate, show the change against the committed config, commit through Raft.
    Propose {
        /// The whole cluster file.
        #[arg(
            short = 'f',
            long = "file",
            required_unless_present = "patch",
            conflicts_with = "patch"
        )]
        file: Option<PathBuf>,
        /// A patch instead: whole blocks that replace the committed ones (or are added)
        /// and `delete BLOCK NAME` lines, applied and validated by the leader.
        #[arg(long, value_name = "FILE")]
        patch: Option<PathBuf>,
        /// Why (kept in the history).
        #[arg(long, default_value = "")]
        reason: String,
        /// Who (default: $HACTL_AUTHOR, else USER@HOST).
        #[arg(long)]
        author: Option<String>,
        /// Show the change, commit nothing.
        #[arg(long)]
        dry_run: bool,
        /// Refuse unless the cluster is still at this version (optimistic concurrency).
        #[arg(long)]
        base_version: Option<u64>,
        /// Commit even if the cluster already runs this exact configuration.
        #[arg(long)]
        allow_no_change: bool,
        /// List every change (by default, more than 50 are summed up by kind).
        #[arg(long)]
        full: bool,
        /// After the commit, wait until every director reports the new version applied
        /// (its checkers and data plane on it), at most SECS seconds (default 30); exit 3
        /// if one did not.
        #[arg(long, value_name = "SECS", num_args = 0..=1, default_missing_value = "30")]
        wait: Option<u64>,
    },
    /// The committed configuration.
    Config {
        #[command(subcommand)]
        cmd: ConfigCmd,
    },
    /// One row per director: role, term, leader, applied index, version, hash, lag.
    Status {
        /// Output: text for people, json for scripts.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// The live kernel table of a director in `ipvsadm -Ln` layout, and how it differs
    /// from the desired one (exit 4 if it does).
    Table {
        /// Which director (default: the first --cluster endpoint).
        #[arg(long)]
        node: Option<String>,
        /// Output: text for people, json for scripts.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Checks every director's stored history as a hash chain (each entry linked to the
    /// previous one's hash, config hashes re-checked) and compares the chains across
    /// directors; names the first bad entry (exit 5 on any failure).
    Verify {
        /// Output: text for people, json for scripts.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Runtime events of the directors (VRRP, checkers, table syncs, config fence), merged
    /// by time with the committed config history.
    Events {
        /// Only this director's events.
        #[arg(long)]
        node: Option<String>,
        /// Keep printing new events.
        #[arg(long)]
        follow: bool,
        /// Output: text for people, json for scripts.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Committed changes: version, time, author, reason, what changed.
    History {
        /// First history entry (sequence number).
        #[arg(long)]
        from: Option<u64>,
        /// Last history entry (sequence number).
        #[arg(long)]
        to: Option<u64>,
        /// Only entries at or after this time: `2026-11-24T03:12:00Z`, `2026-11-24`, an age
        /// (`2h`, `7d`), or Unix milliseconds.
        #[arg(long)]
        since: Option<String>,
        /// Only entries at or before this time (same forms as --since).
        #[arg(long)]
        until: Option<String>,
        /// Only entries by this author.
        #[arg(long)]
        author: Option<String>,
        /// Only config versions that changed this virtual server (`VIP:PORT`), with the
        /// changes to it.
        #[arg(long)]
        vs: Option<String>,
        /// Print each config version's semantic diff under it.
        #[arg(long)]
        diff: bool,
        /// Output: text for people, json for scripts.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// One director's desired table, real-server verdicts and VRRP states at a past
    /// moment, rebuilt from the committed history and its runtime events alone.
    Replay {
        /// A config version (`12`: when its table reached the kernel), or a time:
        /// `2026-11-24T03:12:00Z`, `2026-11-24`, an age (`2h`), or Unix milliseconds.
        #[arg(long)]
        at: String,
        /// Which director (default: the first --cluster endpoint).
        #[arg(long)]
        node: Option<String>,
        /// Output: text for people, json for scripts.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// The committed history and every director's runtime events, one JSON object a line
    /// (schema in the README), for a SIEM.
    ExportHistory {
        /// Output format (one JSON object a line).
        #[arg(long, value_enum, default_value_t = ExportFormat::Jsonl)]
        format: ExportFormat,
    },
    /// Raft membership of the directors.
    Cluster {
        #[command(subcommand)]
        cmd: ClusterCmd,
    },
    /// A small CA and certificates for directors and operators (labs, small sites).
    Cert {
        #[command(subcommand)]
        cmd: pki_cmds::CertCmd,
    },
    /// Bearer tokens for the admin API.
    Token {
        #[command(subcommand)]
        cmd: pki_cmds::TokenCmd,
    },
    /// Print the completion script for a shell: bash (`hactl completions bash >
    /// /usr/share/bash-completion/completions/hactl`), zsh (a file `_hactl` in $fpath) or
    /// fish (`~/.config/fish/completions/hactl.fish`).
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: Shell,
    },
    /// Write the man pages (hactl.1, and hactl-SUBCOMMAND.1 for each subcommand) into DIR.
    Man {
        /// The directory to write them to (created if missing).
        #[arg(long, value_name = "DIR", default_value = ".")]
        out: PathBuf,
    },
}

/// The shells `hactl completions` writes for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Shell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Subcommand)]
enum ConfigCmd {
    /// Print the committed cluster file (or the one committed as --version N).
    Show {
        /// That config version instead of the latest.
        #[arg(long)]
        version: Option<u64>,
        /// Output: text for people, json for scripts.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
}

#[derive(Subcommand)]
enum ClusterCmd {
    /// Add director NAME reachable at ADDR (its hanode must be running).
    Add {
        /// The director's name (its hanode --name).
        name: String,
        /// Where its hanode listens: HOST:PORT.
        addr: String,
        /// Why (kept in the history).
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Remove director NAME.
    Remove {
        /// The director's name.
        name: String,
        /// Why (kept in the history).
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// List the members.
    Members,
}

/// A reader that goes away (`hactl check big.conf | head`) ends hactl quietly, as it ends
/// other Unix tools: SIGPIPE back to its default. Rust starts with it ignored, and
/// `println!` then panics on the EPIPE ("failed printing to stdout").
fn quiet_on_closed_pipe() {
    // SAFETY: sets one signal's disposition to the default, before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn main() -> ExitCode {
    quiet_on_closed_pipe();
    let cli = Cli::parse();
    let auth = remote::ClientAuth {
        ca: cli.ca.clone(),
        cert: cli.cert.clone(),
        key: cli.key.clone(),
        token: cli.token.clone(),
        patience: cli.patience.map(std::time::Duration::from_secs),
    };
    let remote = |spec: &Option<String>| remote::Remote::new(spec.as_deref().unwrap_or(""), &auth);
    let result = match cli.cmd {
        Cmd::Check { files, nodes, format } => offline::check(&files, &nodes, format),
        Cmd::Import { nodes, output } => offline::import(&nodes, output.as_deref()),
        Cmd::Export { file, node, output } => offline::export(&file, &node, output.as_deref()),
        Cmd::Hash { file } => offline::hash(&file),
        Cmd::Diff { old, new, format } => offline::diff(&old, &new, format),
        Cmd::Fmt { file } => offline::fmt(&file),
        Cmd::Completions { shell } => {
            let shell = match shell {
                Shell::Bash => clap_complete::Shell::Bash,
                Shell::Zsh => clap_complete::Shell::Zsh,
                Shell::Fish => clap_complete::Shell::Fish,
            };
            clap_complete::generate(
                shell,
                &mut <Cli as clap::CommandFactory>::command(),
                "hactl",
                &mut std::io::stdout(),
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Man { out } => {
            match ha_config::manpages::write_pages(<Cli as clap::CommandFactory>::command(), "1", &out) {
                Ok(pages) => {
                    for p in pages {
                        println!("{}", p.display());
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => Err(anyhow::anyhow!("writing man pages into {}: {e}", out.display())),
            }
        }
        Cmd::Propose {
            file,
            patch,
            reason,
            author,
            dry_run,
            base_version,
            allow_no_change,
            full,
            wait,
        } => remote(&cli.cluster).and_then(|r| {
            let author = author.unwrap_or_else(cluster_cmds::default_author);
            let (path, is_patch) = match (&file, &patch) {
                (_, Some(p)) => (p, true),
                (Some(f), None) => (f, false),
                (None, None) => return Err(anyhow::anyhow!("give -f FILE or --patch FILE")),
            };
            let args = cluster_cmds::ProposeArgs {
                file: path,
                reason: &reason,
                author: &author,
                dry_run,
                base_version,
                allow_no_change,
                full,
                wait: wait.map(std::time::Duration::from_secs),
            };
            if is_patch {
                cluster_cmds::propose_patch(&r, args)
            } else {
                cluster_cmds::propose(&r, args)
            }
        }),
        Cmd::Config {
            cmd: ConfigCmd::Show { version, format },
        } => remote(&cli.cluster).and_then(|r| cluster_cmds::config_show(&r, version, format)),
        Cmd::Status { format } => remote(&cli.cluster).and_then(|r| cluster_cmds::status(&r, format)),
        Cmd::Events { node, follow, format } => {
            remote(&cli.cluster).and_then(|r| cluster_cmds::events(&r, node.as_deref(), follow, format))
        }
        Cmd::Verify { format } => remote(&cli.cluster).and_then(|r| cluster_cmds::verify(&r, format)),
        Cmd::Table { node, format } => {
            remote(&cli.cluster).and_then(|r| cluster_cmds::table(&r, node.as_deref(), format))
        }
        Cmd::History {
            from,
            to,
            since,
            until,
            author,
            vs,
            diff,
            format,
        } => (|| {
            let now = cluster_cmds::now_ms();
            let time = |t: Option<String>, flag: &str| {
                t.map(|t| audit::parse_time(&t, now).map_err(|e| anyhow::anyhow!("{flag}: {e}")))
                    .transpose()
            };
            let filter = audit::Filter {
                since_ms: time(since, "--since")?,
                until_ms: time(until, "--until")?,
                author,
                vs,
            };
            let r = remote(&cli.cluster)?;
            audit::history(&r, from, to, &filter, diff, format)
        })(),
        Cmd::Replay { at, node, format } => (|| {
            let moment =
                audit::parse_moment(&at, cluster_cmds::now_ms()).map_err(|e| anyhow::anyhow!("--at: {e}"))?;
            let r = remote(&cli.cluster)?;
            audit::replay(&r, node.as_deref(), moment, format)
        })(),
        Cmd::ExportHistory {
            format: ExportFormat::Jsonl,
        } => remote(&cli.cluster).and_then(|r| audit::export(&r)),
        Cmd::Cluster { cmd } => remote(&cli.cluster).and_then(|r| {
            let author = cluster_cmds::default_author();
            match cmd {
                ClusterCmd::Add { name, addr, reason } => {
                    cluster_cmds::cluster_add(&r, &name, &addr, &author, &reason)
                }
                ClusterCmd::Remove { name, reason } => {
                    cluster_cmds::cluster_remove(&r, &name, &author, &reason)
                }
                ClusterCmd::Members => cluster_cmds::cluster_members(&r),
            }
        }),
        Cmd::Cert { cmd } => pki_cmds::cert(cmd),
        Cmd::Token { cmd } => pki_cmds::token(cmd),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("hactl: {e:#}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Every argument of every subcommand, with the path of subcommands leading to it.
    fn args(cmd: &clap::Command, path: &str, out: &mut Vec<(String, clap::Arg)>) {
        for a in cmd.get_arguments() {
            out.push((path.to_string(), a.clone()));
        }
        for sub in cmd.get_subcommands() {
            args(sub, &format!("{path} {}", sub.get_name()), out);
        }
    }

    #[test]
    fn every_option_has_a_one_line_help() {
        let mut all = Vec::new();
        args(&Cli::command(), "hactl", &mut all);
        let missing: Vec<String> = all
            .iter()
            .filter(|(_, a)| !matches!(a.get_id().as_str(), "help" | "version"))
            .filter(|(_, a)| a.get_help().is_none_or(|h| h.to_string().trim().is_empty()))
            .map(|(p, a)| format!("{p} {}", a.get_id()))
            .collect();
        assert!(missing.is_empty(), "options without help: {missing:#?}");
    }

    #[test]
    fn global_options_are_listed_apart_from_a_subcommands_own() {
        let cmd = Cli::command();
        for a in cmd.get_arguments().filter(|a| a.is_global_set()) {
            assert_eq!(
                a.get_help_heading(),
                Some(CONNECTION),
                "--{} is a global option: under its own heading",
                a.get_id()
            );
        }
        let mut cmd = Cli::command();
        cmd.build();
        let propose = cmd.find_subcommand_mut("propose").expect("propose");
        let help = propose.render_help().to_string();
        let own = help.find("--dry-run").expect("propose's own option");
        let heading = help
            .find(&format!("{CONNECTION}:"))
            .expect("the global options' heading");
        let global = help.find("--cluster").expect("a global option");
        assert!(own < heading && heading < global, "{help}");
    }
}

//! `hactl`: the operator's command line for the director cluster.
//!
//! Offline commands work on files (check, import, export, hash, diff, fmt); cluster
//! commands talk to `hanode` (added with the director daemon).

mod offline;

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "hactl",
    version,
    about = "Operate a keepalived-compatible director cluster"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Cmd {
    /// Check configuration files: `FILE:LINE:COL: error|warning: message`; exit 1 on errors.
    Check {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Also check the view of these directors (beyond those named in `@` lines).
        #[arg(long = "node")]
        nodes: Vec<String>,
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
        file: PathBuf,
        #[arg(long)]
        node: String,
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Print the sha256 of the configuration's canonical form.
    Hash { file: PathBuf },
    /// Show the semantic difference between two configurations.
    Diff {
        old: PathBuf,
        new: PathBuf,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Print the configuration in canonical form.
    Fmt { file: PathBuf },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Check { files, nodes, format } => offline::check(&files, &nodes, format),
        Cmd::Import { nodes, output } => offline::import(&nodes, output.as_deref()),
        Cmd::Export { file, node, output } => offline::export(&file, &node, output.as_deref()),
        Cmd::Hash { file } => offline::hash(&file),
        Cmd::Diff { old, new, format } => offline::diff(&old, &new, format),
        Cmd::Fmt { file } => offline::fmt(&file),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("hactl: {e:#}");
            ExitCode::from(2)
        }
    }
}

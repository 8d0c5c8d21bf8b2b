//! `hanode`: the director daemon.

use anyhow::{Context, Result};

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;
use clap::Parser;
use hanode::admin::Api;
use hanode::director::DirectorNode;
use hanode::settings::{FileSettings, Settings};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Parser, Debug)]
#[command(
    name = "hanode",
    version,
    about = "A director of the replicated load-balancer cluster"
)]
struct Cli {
    #[command(subcommand)]
    mode: Option<Mode>,
    /// Settings file (TOML: name, data_dir, listen, advertise, bootstrap, join, [raft]).
    #[arg(long)]
    config: Option<PathBuf>,
    /// This director's name (as in the config's `@NAME` lines).
    #[arg(long)]
    name: Option<String>,
    /// Where the Raft log, the committed history and the runtime journal are kept.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Address for Raft RPC and the admin API, e.g. 127.0.0.1:7101.
    #[arg(long)]
    listen: Option<String>,
    /// Address others use to reach this director (default: --listen).
    #[arg(long)]
    advertise: Option<String>,
    /// Start a new cluster with this director as its only member (ignored once it has data).
    #[arg(long)]
    bootstrap: bool,
    /// Ask this director (any member) to add us; repeat for fallbacks.
    #[arg(long)]
    join: Vec<String>,
    /// Log format: text or json (filter with RUST_LOG).
    #[arg(long)]
    log_format: Option<String>,
    /// Raft and the admin API only: no VRRP, checkers or kernel table (a witness).
    #[arg(long)]
    control_plane_only: bool,
    /// Kernel table backend: auto (IPVS when available, else nftables), ipvs, nftables.
    #[arg(long)]
    dataplane: Option<String>,
    /// The quorum gate (split-brain guard): a director that cannot reach a majority of the
    /// cluster's voters puts its VRRP instances in FAULT (releases its VIPs) until it can.
    /// `auto`: on with three voters or more (keepalived's behaviour with two); `on`; `off`.
    #[arg(long, value_parser = ["auto", "on", "off"])]
    quorum_gate: Option<String>,
    /// A device DR traffic arrives on (nftables); repeat for more.
    #[arg(long)]
    ingress: Vec<String>,
    /// Runtime events kept in the journal (older ones are folded into a checkpoint).
    #[arg(long)]
    journal_max_events: Option<u64>,
    /// The cluster's CA certificate (PEM): turns on TLS, with --tls-cert and --tls-key.
    #[arg(long, requires_all = ["tls_cert", "tls_key"])]
    tls_ca: Option<PathBuf>,
    /// This director's certificate (PEM; `hactl cert issue --node NAME`).
    #[arg(long, requires_all = ["tls_ca", "tls_key"])]
    tls_cert: Option<PathBuf>,
    /// This director's private key (PEM, mode 0600).
    #[arg(long, requires_all = ["tls_ca", "tls_cert"])]
    tls_key: Option<PathBuf>,
    /// Bearer tokens for the admin API: `NAME ROLE sha256:HEX` lines (`hactl token new`).
    #[arg(long)]
    tokens_file: Option<PathBuf>,
    /// With --join, in a cluster that authenticates with bearer tokens: a file holding an
    /// operator token (`hactl token new ... --role operator`), sent with the join request.
    #[arg(long)]
    join_token_file: Option<PathBuf>,
    /// Serve plain HTTP on a non-loopback --listen address: anyone who reaches it can
    /// change the cluster (shown in status and logged).
    #[arg(long)]
    insecure: bool,
    /// Serve test hooks under /v1/debug (never in production).
    #[arg(long, hide = true)]
    test_hooks: bool,
    /// Test hook: start with the data plane held at this config version.
    #[arg(long, hide = true, requires = "test_hooks")]
    test_hold_table: Option<u64>,
}

#[derive(clap::Subcommand, Debug)]
enum Mode {
    /// Run only the VRRP instances of one director from a cluster file (no Raft): the
    /// standalone engine, for testing and for migrating one box at a time.
    Vrrp {
        /// The cluster file (keepalived.conf, `@NAME` lines allowed).
        #[arg(long = "config")]
        file: PathBuf,
        /// Which director's view to run.
        #[arg(long)]
        node: String,
        /// Log lines as text or json.
        #[arg(long, default_value = "text")]
        log_format: String,
    },
    /// Write the man pages (hanode.8, hanode-vrrp.8) into DIR.
    Man {
        /// The directory to write them to (created if missing).
        #[arg(long, value_name = "DIR", default_value = ".")]
        out: PathBuf,
    },
    /// Test tooling: flip one byte of a stored history entry of a stopped director, to
    /// show that `hactl verify` names it.
    #[command(hide = true)]
    TamperHistory {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long)]
        seq: u64,
    },
}

fn run_vrrp(file: &std::path::Path, node: &str) -> Result<()> {
    let (parsed, loaded) = ha_config::cluster::load_file(file, &[node.to_string()]);
    for d in loaded.diags.iter() {
        eprintln!("{}", d.render(&parsed.sources));
    }
    if loaded.diags.has_errors() {
        anyhow::bail!("{} has errors", file.display());
    }
    let config = loaded.cluster.view(node).clone();
    if config.instances.is_empty() {
        anyhow::bail!("{}: no vrrp_instance for {node}", file.display());
    }
    actors::script::set_security(config.global.enable_script_security);
    for p in actors::script::vet_config(&config) {
        tracing::error!(director = %node, "script: {p}");
    }
    actix_rt::System::new().block_on(async move {
        let actors = actors::vrrp::runner::start(&config)?;
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!(director = %node, "stopping VRRP instances");
        actors::vrrp::runner::stop(&actors).await;
        Ok(())
    })
}

fn settings(cli: Cli) -> Result<(Settings, String)> {
    let file = match &cli.config {
        Some(p) => FileSettings::read(p)?,
        None => FileSettings::default(),
    };
    let name = cli
        .name
        .or(file.name)
        .context("--name (or `name` in --config) is required")?;
    let data_dir = cli
        .data_dir
        .or(file.data_dir)
        .context("--data-dir (or `data_dir` in --config) is required")?;
    let listen_s = cli
        .listen
        .or(file.listen)
        .unwrap_or_else(|| "127.0.0.1:7101".into());
    let listen: SocketAddr = listen_s
        .parse()
        .with_context(|| format!("--listen: expected IP:PORT, got {listen_s:?}"))?;
    let advertise = cli
        .advertise
        .or(file.advertise)
        .unwrap_or_else(|| listen.to_string());
    let mut join = cli.join;
    if join.is_empty() {
        join = file.join;
    }
    let runtime = if cli.control_plane_only || file.control_plane_only {
        None
    } else {
        let backend = cli
            .dataplane
            .or(file.dataplane)
            .unwrap_or_else(|| "auto".into())
            .parse::<actors::lb::backend::Choice>()
            .map_err(|e| anyhow::anyhow!("--dataplane: {e}"))?;
        let quorum_gate = match cli.quorum_gate.or(file.quorum_gate).as_deref() {
            None | Some("auto") => None,
            Some("on") => Some(true),
            Some("off") => Some(false),
            Some(other) => anyhow::bail!("quorum_gate: expected auto, on or off, got {other:?}"),
        };
        let mut ingress: std::collections::BTreeSet<String> = file.ingress.into_iter().collect();
        ingress.extend(cli.ingress);
        Some(hanode::runtime::RuntimeOptions {
            backend,
            ingress,
            hold: cli.test_hold_table,
            quorum_gate,
            ..Default::default()
        })
    };
    let tls = match (cli.tls_ca, cli.tls_cert, cli.tls_key) {
        (Some(ca), Some(cert), Some(key)) => Some(hanode::transport::tls::TlsFiles { ca, cert, key }),
        _ => file.tls.map(|t| hanode::transport::tls::TlsFiles {
            ca: t.ca,
            cert: t.cert,
            key: t.key,
        }),
    };
    let s = Settings {
        name,
        data_dir,
        listen,
        advertise,
        bootstrap: cli.bootstrap || file.bootstrap,
        join,
        max_request_bytes: file
            .max_request_bytes
            .unwrap_or(ha_config::api::DEFAULT_MAX_REQUEST_BYTES),
        max_proposal_bytes: file
            .max_proposal_bytes
            .unwrap_or(ha_config::api::DEFAULT_MAX_PROPOSAL_BYTES),
        limits: hanode::transport::server::Limits {
            connections: file
                .max_connections
                .unwrap_or(hanode::transport::server::MAX_CONNECTIONS),
            per_address: file
                .max_connections_per_address
                .unwrap_or(hanode::transport::server::MAX_PER_IP),
        },
        raft: file.raft,
        journal_max_events: cli.journal_max_events.unwrap_or(file.journal.max_events),
        runtime,
        test_hooks: cli.test_hooks,
        tls,
        tokens_file: cli.tokens_file.or(file.tokens_file),
        join_token_file: cli.join_token_file.or(file.join_token_file),
        insecure: cli.insecure || file.insecure,
    };
    s.validate()?;
    let log_format = cli
        .log_format
        .or(file.log_format)
        .unwrap_or_else(|| "text".into());
    Ok((s, log_format))
}

fn init_logging(format: &str) -> Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        "json" => builder.json().init(),
        "text" => builder.init(),
        other => anyhow::bail!("--log-format: expected text or json, got {other:?}"),
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    let result = (|| -> Result<()> {
        let mut cli = Cli::parse();
        if let Some(Mode::Man { out }) = &cli.mode {
            let pages = ha_config::manpages::write_pages(<Cli as clap::CommandFactory>::command(), "8", out)
                .with_context(|| format!("writing man pages into {}", out.display()))?;
            for p in pages {
                println!("{}", p.display());
            }
            return Ok(());
        }
        if let Some(Mode::TamperHistory { data_dir, seq }) = &cli.mode {
            let (db, _, _) = raft_store::open(&data_dir.join("raft"))?;
            let version =
                raft_store::state_machine::flip_history_byte(&db, *seq).map_err(|e| anyhow::anyhow!(e))?;
            println!("flipped one byte of history entry {seq} (config version {version})");
            return Ok(());
        }
        if let Some(Mode::Vrrp {
            file,
            node,
            log_format,
        }) = cli.mode.take()
        {
            init_logging(&log_format)?;
            return run_vrrp(&file, &node);
        }
        let (settings, log_format) = settings(cli)?;
        init_logging(&log_format)?;
        // The control plane (Raft, HTTP) runs on its own multi-thread runtime, so a slow
        // fsync never stalls heartbeats; the actors (issue 8) talk to it through handles.
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("hanode-ctl")
            .enable_all()
            .build()?;
        rt.block_on(run(settings))
    })();
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hanode: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

async fn run(settings: Settings) -> Result<()> {
    let tls = match &settings.tls {
        Some(files) => Some(
            hanode::transport::tls::Tls::load(files.clone(), &settings.name)
                .map_err(|e| anyhow::anyhow!("TLS: {e}"))?,
        ),
        None => None,
    };
    let tokens = match &settings.tokens_file {
        Some(p) => Some(Arc::new(
            hanode::auth::Tokens::load(p.clone()).map_err(|e| anyhow::anyhow!("tokens file: {e}"))?,
        )),
        None => None,
    };
    let join_token = match &settings.join_token_file {
        Some(p) => Some(read_join_token(p)?),
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("listening on {}", settings.listen))?;
    let node = DirectorNode::start(&settings, tls.clone()).await?;
    hanode::store_recovery::spawn(node.clone());
    let security = hanode::security::Security::new(tls.clone(), tokens, settings.insecure);
    security.spawn_reloader(std::time::Duration::from_secs(2));
    if settings.insecure && tls.is_none() {
        tracing::warn!(director = %node.name, listen = %settings.listen, "INSECURE: plain HTTP without TLS on a non-loopback address (--insecure): anyone who reaches it can change the cluster");
    }
    tracing::info!(director = %node.name, id = node.id, listen = %settings.listen, security = %security.describe(), "hanode started");
    let runtime = match &settings.runtime {
        Some(opts) => Some(hanode::runtime::Runtime::start(&node, opts.clone())?),
        None => None,
    };
    let api = Api::new(node.clone(), security).with_runtime(runtime.clone(), settings.test_hooks);
    let server = tokio::spawn(hanode::transport::server::serve(
        listener,
        Arc::new(api),
        tls,
        settings.limits,
    ));
    node.spawn_join(settings.join.clone(), join_token);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!(director = %node.name, "shutting down");
    if let Some(rt) = &runtime {
        rt.shutdown().await;
    }
    server.abort();
    if let Err(e) = node.raft().shutdown().await {
        tracing::warn!("raft shutdown: {e}");
    }
    Ok(())
}

/// The operator token in `path` (one line; surrounding whitespace ignored).
fn read_join_token(path: &std::path::Path) -> anyhow::Result<String> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("--join-token-file {}", path.display()))?;
    let token = text.trim();
    if token.is_empty() || token.contains(char::is_whitespace) {
        anyhow::bail!(
            "--join-token-file {}: expected one token on one line (the output of `hactl token new`)",
            path.display()
        );
    }
    Ok(token.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn missing(cmd: &clap::Command, path: &str, out: &mut Vec<String>) {
        for a in cmd.get_arguments() {
            let id = a.get_id().as_str();
            if !matches!(id, "help" | "version") && !a.is_hide_set() && a.get_help().is_none() {
                out.push(format!("{path} --{id}"));
            }
        }
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            missing(sub, &format!("{path} {}", sub.get_name()), out);
        }
    }

    #[test]
    fn every_option_has_a_one_line_help() {
        let mut out = Vec::new();
        missing(&Cli::command(), "hanode", &mut out);
        assert!(out.is_empty(), "options without help: {out:#?}");
    }

    #[test]
    fn man_pages_are_written_for_hanode_and_its_modes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pages = ha_config::manpages::write_pages(Cli::command(), "8", dir.path()).expect("pages");
        let names: Vec<String> = pages
            .iter()
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        assert!(names.contains(&"hanode.8".to_string()), "{names:?}");
        assert!(names.contains(&"hanode-vrrp.8".to_string()), "{names:?}");
        assert!(
            !names.iter().any(|n| n.contains("tamper")),
            "hidden test tooling has no page: {names:?}"
        );
        let text = std::fs::read_to_string(dir.path().join("hanode.8")).expect("hanode.8");
        assert!(
            text.contains("--data-dir") || text.contains("data\\-dir"),
            "{text}"
        );
    }
}

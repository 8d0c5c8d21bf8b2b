//! Commands that work on configuration files only.

use crate::Format;
use anyhow::{bail, Context, Result};
use ha_config::cluster::{self, ClusterConfig, Loaded, NodeInput};
use ha_config::syntax::Parsed;
use ha_config::{canon, diff as semdiff, printer};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub fn parse_node_file(s: &str) -> Result<(String, PathBuf), String> {
    match s.split_once('=') {
        Some((n, f)) if !n.is_empty() && !f.is_empty() => Ok((n.to_string(), PathBuf::from(f))),
        _ => Err(format!("expected NAME=FILE, got `{s}`")),
    }
}

fn write_out(output: Option<&Path>, text: &str) -> Result<()> {
    match output {
        Some(p) => std::fs::write(p, text).with_context(|| format!("writing {}", p.display())),
        None => {
            std::io::stdout().write_all(text.as_bytes())?;
            Ok(())
        }
    }
}

fn print_diags(parsed: &Parsed, loaded: &Loaded) {
    for d in loaded.diags.iter() {
        eprintln!("{}", d.render(&parsed.sources));
    }
}

/// Loads a file that must be free of errors (for commands other than `check`).
fn load_clean(file: &Path) -> Result<ClusterConfig> {
    let (parsed, loaded) = cluster::load_file(file, &[]);
    if loaded.diags.has_errors() {
        print_diags(&parsed, &loaded);
        bail!(
            "{} has errors (see `hactl check {}`)",
            file.display(),
            file.display()
        );
    }
    Ok(loaded.cluster)
}

pub fn check(files: &[PathBuf], nodes: &[String], format: Format) -> Result<ExitCode> {
    let mut errors = false;
    let mut json = Vec::new();
    for f in files {
        // One pass over the file, each statement checked and dropped as it is parsed.
        let checked = ha_config::file_check::check_file(f, &ha_config::syntax::FsLoader, nodes);
        errors |= checked.diags.has_errors();
        match format {
            Format::Text => {
                let mut out = std::io::BufWriter::new(std::io::stdout().lock());
                for d in checked.diags.iter() {
                    writeln!(out, "{}", d.render(&checked.sources))?;
                }
                out.flush()?;
            }
            Format::Json => json.extend(checked.diags.iter().map(|d| d.to_json(&checked.sources))),
        }
    }
    if format == Format::Json {
        println!("{}", serde_json::to_string_pretty(&json)?);
    }
    Ok(if errors {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

pub fn import(nodes: &[(String, PathBuf)], output: Option<&Path>) -> Result<ExitCode> {
    let mut loaded = Vec::new();
    for (name, file) in nodes {
        let (parsed, l) = cluster::load_file(file, &[]);
        if !l.cluster.nodes.is_empty() {
            bail!(
                "{} already has `@` lines: import takes one plain keepalived.conf per director",
                file.display()
            );
        }
        if l.diags.has_errors() {
            print_diags(&parsed, &l);
            bail!("{} has errors; fix them before importing", file.display());
        }
        for d in l.diags.iter() {
            eprintln!("{}", d.render(&parsed.sources));
        }
        loaded.push((name.clone(), file.clone(), parsed, l));
    }
    let locators: Vec<Box<dyn Fn(ha_config::syntax::Span) -> String>> = loaded
        .iter()
        .map(|(_, _, p, _)| {
            let sources = p.sources.clone();
            Box::new(move |s| sources.locate(s)) as Box<dyn Fn(_) -> String>
        })
        .collect();
    let inputs: Vec<NodeInput<'_>> = loaded
        .iter()
        .zip(&locators)
        .map(|((name, file, _, l), loc)| NodeInput {
            name: name.clone(),
            config: l.cluster.default.clone(),
            spans: l.spans.get(&None).expect("default view is always lowered"),
            locate: loc.as_ref(),
            file: file.display().to_string(),
        })
        .collect();
    match cluster::merge(&inputs) {
        Ok((_, text)) => {
            let header = format!(
                "! Cluster configuration imported by hactl from {}\n\n",
                nodes
                    .iter()
                    .map(|(n, f)| format!("{n}={}", f.display()))
                    .collect::<Vec<_>>()
                    .join(" ")
            );
            write_out(output, &(header + &text))?;
            Ok(ExitCode::SUCCESS)
        }
        Err(d) => {
            eprintln!("error: {}", d.message);
            Ok(ExitCode::from(1))
        }
    }
}

pub fn export(file: &Path, node: &str, output: Option<&Path>) -> Result<ExitCode> {
    let cluster = load_clean(file)?;
    let text = printer::print(cluster.view(node));
    write_out(
        output,
        &format!(
            "! keepalived.conf for director {node}, exported by hactl from {}\n\n{text}",
            file.display()
        ),
    )?;
    Ok(ExitCode::SUCCESS)
}

pub fn hash(file: &Path) -> Result<ExitCode> {
    let cluster = load_clean(file)?;
    println!("{}", canon::hash(&cluster));
    Ok(ExitCode::SUCCESS)
}

pub fn diff(old: &Path, new: &Path, format: Format) -> Result<ExitCode> {
    let o = load_clean(old)?;
    let n = load_clean(new)?;
    let changes = semdiff::diff(&o, &n);
    match format {
        Format::Text => {
            for c in &changes {
                println!("{c}");
            }
            println!("{}", semdiff::summary(&changes));
        }
        Format::Json => println!("{}", serde_json::to_string_pretty(&changes)?),
    }
    Ok(ExitCode::SUCCESS)
}

pub fn fmt(file: &Path) -> Result<ExitCode> {
    let cluster = canon::canonical(&load_clean(file)?);
    match cluster.print() {
        Ok(text) => {
            print!("{text}");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => bail!("{e}"),
    }
}

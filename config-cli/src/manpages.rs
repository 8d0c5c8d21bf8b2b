//! Man pages from the clap definitions (`clap_mangen`): one page for a command and one
//! for each of its subcommands (`hactl-propose.1`, `hactl-config-show.1`), as git and
//! cargo ship theirs.

use std::path::{Path, PathBuf};

/// Writes the pages of `cmd` and its subcommands into `dir` (created if missing), in
/// man section `section`; returns the files written.
pub fn write_pages(cmd: clap::Command, section: &str, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut cmd = cmd;
    cmd.build();
    let mut written = Vec::new();
    page(&cmd, cmd.get_name().to_string(), section, dir, &mut written)?;
    Ok(written)
}

fn page(
    cmd: &clap::Command,
    name: String,
    section: &str,
    dir: &Path,
    out: &mut Vec<PathBuf>,
) -> std::io::Result<()> {
    let named = cmd.clone().name(name.clone());
    let path = dir.join(format!("{name}.{section}"));
    let mut bytes = Vec::new();
    clap_mangen::Man::new(named).section(section).render(&mut bytes)?;
    std::fs::write(&path, bytes)?;
    out.push(path);
    for sub in cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        page(sub, format!("{name}-{}", sub.get_name()), section, dir, out)?;
    }
    Ok(())
}

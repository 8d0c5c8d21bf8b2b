//! Issue 10 item 7: the shipped systemd unit is valid and hardened. `systemd-analyze
//! verify` must accept it without a warning (an unknown or misspelt directive is only a
//! warning to systemd, and would silently leave the service unhardened), and
//! `systemd-analyze security --offline` must rate its exposure 3.0 or lower (systemd's
//! "OK"; the unit as first shipped rated 7.4, "MEDIUM"). Needs systemd-analyze (the
//! `systemd` package, which tests/run.sh installs).

use std::path::{Path, PathBuf};
use std::process::Command;

fn unit_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/systemd/hanode.service")
}

fn unit_text() -> String {
    std::fs::read_to_string(unit_path()).expect("deploy/systemd/hanode.service")
}

/// The unit with its ExecStart pointed at the built hanode (verify checks the binary).
fn unit_copy(dir: &Path) -> PathBuf {
    let hanode = e2e::bin_dir().join("hanode");
    let text = unit_text().replace(
        "/usr/bin/hanode --config",
        &format!("{} --config", hanode.display()),
    );
    let p = dir.join("hanode.service");
    std::fs::write(&p, text).expect("unit copy");
    p
}

#[test]
fn the_unit_verifies_without_a_warning() {
    let dir = tempfile::tempdir().expect("tempdir");
    let unit = unit_copy(dir.path());
    let o = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
        .expect("systemd-analyze (package systemd)");
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let mine: Vec<&str> = out.lines().filter(|l| l.contains("hanode.service")).collect();
    assert!(
        o.status.success() && mine.is_empty(),
        "systemd-analyze verify:\n{out}"
    );
}

#[test]
fn the_unit_is_hardened() {
    let text = unit_text();
    for line in [
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "StateDirectoryMode=0700",
        "UMask=0077",
        "PrivateTmp=yes",
        "ProtectKernelModules=yes",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_NETLINK AF_UNIX AF_PACKET",
        "SystemCallFilter=@system-service",
    ] {
        assert!(text.lines().any(|l| l.trim() == line), "missing `{line}`");
    }
    // Only the capabilities hanode needs: networking, and dropping to a script_user.
    let bounding: Vec<&str> = text
        .lines()
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .expect("CapabilityBoundingSet")
        .split_whitespace()
        .collect();
    assert_eq!(
        bounding,
        ["CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_SETUID", "CAP_SETGID"]
    );

    let o = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(unit_path())
        .output()
        .expect("systemd-analyze (package systemd)");
    let out = String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
    let level: f64 = out
        .lines()
        .find_map(|l| l.split("Overall exposure level for hanode.service: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{out}"));
    assert!(
        level <= 3.0,
        "exposure {level} (systemd's OK is 3.0 or lower):\n{out}"
    );
}

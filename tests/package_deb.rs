//! Issue 25 item 1: the Debian package. `deploy/package.sh dev` packages the built
//! binaries with cargo-deb; the package holds hanode and hactl, the hardened unit, a
//! working configuration (a conffile), the example, man pages and completions; installed
//! with dpkg, its hanode answers `hactl status`, its unit verifies, its man pages render;
//! purged, nothing of it is left. Installs on this machine (the suite's own): refuses to
//! run where a hanode package or binary is already installed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn run(cmd: &mut Command) -> String {
    let o = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "{cmd:?} failed:\n{text}");
    text
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Purges the package when the test ends, however it ends.
struct Installed;

/// The installed hanode, killed when the test ends, however it ends.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = Command::new("dpkg").args(["--purge", "hanode"]).output();
    }
}

const FILES: &[&str] = &[
    "./usr/bin/hanode",
    "./usr/bin/hactl",
    "./etc/hanode/hanode.toml",
    "./usr/share/doc/hanode/examples/hanode.toml",
    "./usr/share/doc/hanode/README.md",
    "./usr/share/bash-completion/completions/hactl",
    "./usr/share/zsh/vendor-completions/_hactl",
    "./usr/share/fish/vendor_completions.d/hactl.fish",
];

#[test]
fn the_package_installs_runs_and_purges_cleanly() {
    let installed = Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", "hanode"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        .unwrap_or(false);
    assert!(
        !installed && !Path::new("/usr/bin/hanode").exists(),
        "a hanode package or /usr/bin/hanode is already installed here: this test installs and purges its own"
    );
    run(Command::new(repo().join("deploy/package.sh")).arg("dev"));
    let debs: Vec<PathBuf> = std::fs::read_dir(e2e::bin_dir().join("../debian"))
        .expect("target/debian")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "deb") && p.to_string_lossy().contains("hanode_"))
        .collect();
    assert_eq!(debs.len(), 1, "{debs:?}");
    let deb = &debs[0];

    // Contents and control data.
    let list = run(Command::new("dpkg-deb").arg("-c").arg(deb));
    let paths: Vec<&str> = list.lines().filter_map(|l| l.split_whitespace().nth(5)).collect();
    for f in FILES {
        assert!(paths.contains(f), "no {f} in the package:\n{list}");
    }
    let unit = [
        "./lib/systemd/system/hanode.service",
        "./usr/lib/systemd/system/hanode.service",
    ]
    .into_iter()
    .find(|u| paths.contains(u))
    .unwrap_or_else(|| panic!("no unit in the package:\n{list}"));
    let page = |name: &str| {
        paths
            .iter()
            .find(|p| p.contains(&format!("/man/{name}")))
            .map(|p| p.trim_start_matches('.').to_string())
            .unwrap_or_else(|| panic!("no man page {name} in the package:\n{list}"))
    };
    let (hactl_1, hanode_8) = (page("man1/hactl.1"), page("man8/hanode.8"));
    page("man1/hactl-propose.1");
    let info = run(Command::new("dpkg-deb").arg("-I").arg(deb));
    assert!(
        info.contains("Package: hanode") && info.contains("Depends:") && info.contains("libc6"),
        "{info}"
    );

    // Installed.
    let guard = Installed;
    run(Command::new("dpkg").arg("-i").arg(deb));
    let version = run(Command::new("/usr/bin/hanode").arg("--version"));
    assert!(version.contains(env!("CARGO_PKG_VERSION")), "{version}");
    run(Command::new("/usr/bin/hactl").arg("--version"));
    let status = run(Command::new("dpkg-query").args(["-W", "-f=${Conffiles}", "hanode"]));
    assert!(status.contains("/etc/hanode/hanode.toml"), "a conffile: {status}");
    let unit_path = unit.trim_start_matches('.');
    let verify = Command::new("systemd-analyze")
        .arg("verify")
        .arg(unit_path)
        .output()
        .expect("systemd-analyze");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
    assert!(
        verify.status.success() && !said.lines().any(|l| l.contains("hanode.service")),
        "systemd-analyze verify {unit_path}:\n{said}"
    );
    for (p, want) in [(&hactl_1, "hactl"), (&hanode_8, "hanode")] {
        let text = run(Command::new("man")
            .args(["-l", "-P", "cat"])
            .arg(p)
            .env("MANWIDTH", "80"));
        assert!(
            text.contains(want) && text.contains("NAME"),
            "man -l {p}:\n{text}"
        );
    }
    let bash = std::fs::read_to_string("/usr/share/bash-completion/completions/hactl").expect("completion");
    assert!(bash.contains("propose"), "{bash}");

    // The installed configuration starts a director as is (its data and port moved aside,
    // the control plane only: no kernel table on this machine) and hactl reaches it.
    let data = tempfile::tempdir().expect("tempdir");
    let port = e2e::free_port();
    let listen = format!("127.0.0.1:{port}");
    let node = Command::new("/usr/bin/hanode")
        .args([
            "--config",
            "/etc/hanode/hanode.toml",
            "--control-plane-only",
            "--listen",
            &listen,
        ])
        .arg("--data-dir")
        .arg(data.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("installed hanode");
    let node = Running(node);
    let answered = e2e::wait_for(
        Duration::from_secs(30),
        "the installed hanode to lead its cluster",
        || {
            let o = Command::new("/usr/bin/hactl")
                .args(["--cluster", &listen, "status"])
                .output()
                .ok()?;
            let text = String::from_utf8_lossy(&o.stdout).into_owned();
            (o.status.success() && text.contains(" leader ")).then_some(text)
        },
    );
    drop(node);
    assert!(
        answered.contains("director") && answered.contains("leader"),
        "{answered}"
    );

    // Purged: nothing left.
    drop(guard);
    for f in FILES.iter().map(|f| f.trim_start_matches('.')).chain([
        unit_path,
        hactl_1.as_str(),
        hanode_8.as_str(),
    ]) {
        assert!(!Path::new(f).exists(), "{f} left after dpkg --purge");
    }
}

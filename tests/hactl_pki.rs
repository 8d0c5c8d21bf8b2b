//! `hactl cert` and `hactl token` on disk: keys are private, nothing is replaced, a failed
//! issue leaves no half pair, and a tokens file readable by others is tightened.

use e2e::{bin_dir, text};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

fn hactl(args: &[&str]) -> Output {
    Command::new(bin_dir().join("hactl"))
        .args(args)
        .output()
        .expect("run hactl")
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn cert_files_are_private_never_replaced_and_never_half_written() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let o = hactl(&["cert", "init", "--dir", d]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(mode(&dir.path().join("ca.key")), 0o600);
    let ca = std::fs::read(dir.path().join("ca.pem")).unwrap();
    // A second init does not replace the CA.
    let o = hactl(&["cert", "init", "--dir", d]);
    assert!(!o.status.success());
    assert!(text(&o).contains("ca.key exists"), "{}", text(&o));
    assert_eq!(std::fs::read(dir.path().join("ca.pem")).unwrap(), ca);

    let o = hactl(&[
        "cert",
        "issue",
        "--dir",
        d,
        "--node",
        "lvs01",
        "--ip",
        "127.0.0.1",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(mode(&dir.path().join("lvs01.key")), 0o600);
    // A stray certificate without its key: issuing writes nothing (no key without a cert).
    std::fs::write(dir.path().join("lvs02.pem"), "stray").unwrap();
    let o = hactl(&["cert", "issue", "--dir", d, "--node", "lvs02"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("lvs02.pem exists"), "{}", text(&o));
    assert!(!dir.path().join("lvs02.key").exists(), "half a pair written");
    // A client name that would escape the directory is refused.
    let o = hactl(&[
        "cert", "issue", "--dir", d, "--client", "../x", "--role", "operator",
    ]);
    assert!(!o.status.success());
    assert!(text(&o).contains("--client"), "{}", text(&o));
    assert!(!dir.path().parent().unwrap().join("x.key").exists());
}

#[test]
fn token_new_tightens_a_tokens_file_readable_by_others() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens");
    let f = file.to_str().unwrap();
    let o = hactl(&["token", "new", "dashboard", "--role", "read-only", "--file", f]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(mode(&file), 0o600);
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = hactl(&["token", "new", "deployer", "--role", "operator", "--file", f]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(mode(&file), 0o600, "{}", text(&o));
    assert!(text(&o).contains("tightened"), "{}", text(&o));
    // The same name twice is refused and the file keeps its two lines.
    let o = hactl(&["token", "new", "deployer", "--role", "operator", "--file", f]);
    assert!(!o.status.success());
    assert_eq!(std::fs::read_to_string(&file).unwrap().lines().count(), 2);
}

//! The seed lab end to end: `deploy/lab/run.sh --acceptance` (the README's main command)
//! must pass all its steps, and leave no namespace or process behind, even when
//! interrupted.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// The two tests share the names they look for: one at a time.
static ONE_LAB: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/lab/run.sh")
}

fn lab_namespaces() -> Vec<String> {
    let o = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns");
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with("halab"))
        .map(str::to_string)
        .collect()
}

fn our_processes(bin: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(exe) = std::fs::read_link(e.path().join("exe")) else {
            continue;
        };
        let name = exe
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        if exe.starts_with(bin) && (name == "tiny-web" || name.starts_with("hanode")) {
            out.push(format!("{} {}", e.file_name().to_string_lossy(), exe.display()));
        }
    }
    out
}

#[test]
fn seed_lab_passes_every_step_and_leaves_nothing() {
    let _one = ONE_LAB.lock().unwrap_or_else(|e| e.into_inner());
    let bin = e2e::bin_dir();
    let o = Command::new("bash")
        .arg(script())
        .arg("--bin-dir")
        .arg(&bin)
        .arg("--acceptance")
        .output()
        .expect("run the lab");
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    for step in 1..=10 {
        let row = out
            .lines()
            .find(|l| l.starts_with(&format!("{step:<4} ")))
            .unwrap_or_else(|| panic!("no row for step {step}:\n{out}\n{err}"));
        assert!(row.contains(" PASS "), "step {step} failed: {row}\n{out}\n{err}");
    }
    assert!(o.status.success(), "{out}\n{err}");
    assert!(out.contains("ALL STEPS PASS"));
    // The event journal, merged with the config history, tells the story.
    let events = &out[out.find("events (hactl events").expect("events printed")..];
    for needle in ["cluster    config", "vrrp", "-> MASTER", "sync", "fence"] {
        assert!(events.contains(needle), "no {needle:?} in the events:\n{events}");
    }
    assert!(
        lab_namespaces().is_empty(),
        "namespaces left: {:?}",
        lab_namespaces()
    );
    assert!(
        our_processes(&bin).is_empty(),
        "processes left: {:?}",
        our_processes(&bin)
    );
}

#[test]
fn an_interrupted_lab_tears_down() {
    let _one = ONE_LAB.lock().unwrap_or_else(|e| e.into_inner());
    let bin = e2e::bin_dir();
    let mut child = Command::new("bash")
        .arg(script())
        .arg("--bin-dir")
        .arg(&bin)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("run the lab");
    let start = Instant::now();
    while lab_namespaces().len() < 7 && start.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(lab_namespaces().len(), 7, "the lab did not come up");
    std::thread::sleep(Duration::from_secs(2));
    // Ctrl-C.
    // SAFETY: kill(2) on our own child.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let status = child.wait().expect("wait");
    assert!(!status.success());
    assert!(
        lab_namespaces().is_empty(),
        "namespaces left: {:?}",
        lab_namespaces()
    );
    assert!(
        our_processes(&bin).is_empty(),
        "processes left: {:?}",
        our_processes(&bin)
    );
}

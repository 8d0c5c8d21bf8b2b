//! `hactl completions` and `hactl man` (issue 25): the scripts load in their shell and
//! complete subcommands, the pages render with man(1).

use std::process::Command;

fn hactl(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_hactl"))
        .args(args)
        .output()
        .expect("hactl")
}

#[test]
fn bash_completion_loads_and_completes_subcommands_and_options() {
    let o = hactl(&["completions", "bash"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("hactl.bash");
    std::fs::write(&script, &o.stdout).expect("write");
    // What bash does on `hactl pro<TAB>` and `hactl propose --dry<TAB>`.
    let probe = format!(
        "source {}; complete -p hactl >/dev/null || exit 9; \
         COMP_WORDS=(hactl pro); COMP_CWORD=1; COMP_LINE='hactl pro'; COMP_POINT=9; _hactl hactl pro hactl; echo \"1:${{COMPREPLY[*]}}\"; \
         COMP_WORDS=(hactl propose --dry); COMP_CWORD=2; COMP_LINE='hactl propose --dry'; COMP_POINT=19; _hactl hactl --dry propose; echo \"2:${{COMPREPLY[*]}}\"",
        script.display()
    );
    let o = Command::new("bash").args(["-c", &probe]).output().expect("bash");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{out}{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.contains("1:propose"), "{out}");
    assert!(out.contains("2:--dry-run"), "{out}");
}

#[test]
fn zsh_and_fish_completions_name_every_subcommand() {
    for shell in ["zsh", "fish"] {
        let o = hactl(&["completions", shell]);
        assert!(
            o.status.success(),
            "{shell}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let text = String::from_utf8_lossy(&o.stdout);
        for sub in ["check", "propose", "history", "replay", "verify", "completions"] {
            assert!(text.contains(sub), "{shell} completion without {sub}");
        }
    }
    let o = hactl(&["completions", "tcsh"]);
    assert_eq!(o.status.code(), Some(2), "an unknown shell is a usage error");
}

#[test]
fn man_pages_render_for_hactl_and_each_subcommand() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("man1");
    let o = hactl(&["man", "--out", &out.to_string_lossy()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let listed: Vec<String> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(String::from)
        .collect();
    for page in [
        "hactl.1",
        "hactl-propose.1",
        "hactl-config-show.1",
        "hactl-cluster-add.1",
        "hactl-cert-issue.1",
    ] {
        let path = out.join(page);
        assert!(
            listed.contains(&path.display().to_string()),
            "{page} not written: {listed:?}"
        );
        let o = Command::new("man")
            .args(["-P", "cat", "-l"])
            .arg(&path)
            .env("MANWIDTH", "100")
            .output()
            .expect("man");
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success(),
            "man -l {page}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let name = page.trim_end_matches(".1");
        assert!(text.contains("NAME") && text.contains(name), "{page}:\n{text}");
    }
    let top = std::fs::read_to_string(out.join("hactl.1")).expect("hactl.1");
    assert!(top.contains("propose"), "hactl.1 lists the subcommands");
}

//! Shell completions (clap_complete) and man pages (clap_mangen): generated for every
//! command, syntactically valid for their shells, and rendered by groff without warnings.

mod common;
use common::*;
use std::fs;
use std::process::Command;

const COMMANDS: &[&str] = &[
    "list",
    "listkeys",
    "add",
    "remove",
    "string-to-key",
    "authdb",
    "rotate",
    "status",
    "check",
    "prune",
    "servers",
    "push",
    "verify",
    "keytab",
    "completions",
    "man",
];

#[test]
fn completion_scripts_parse_and_know_every_command() {
    let d = tempfile::tempdir().unwrap();
    for (shell, checker) in [("bash", "bash"), ("zsh", "zsh"), ("fish", "fish")] {
        if !have(&[checker]) {
            continue;
        }
        let script = ok(run(d.path(), &["completions", shell], b""));
        for c in COMMANDS {
            assert!(script.contains(c), "{shell} completion lacks {c}");
        }
        let f = d.path().join(format!("afskeys.{shell}"));
        fs::write(&f, &script).unwrap();
        let o = Command::new(checker).arg("-n").arg(&f).output().unwrap();
        assert!(
            o.status.success(),
            "{shell}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

#[test]
fn a_man_page_for_every_command_renders_cleanly() {
    if !have(&["groff"]) {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let listed = ok(run(
        d.path(),
        &["man", "--dir", d.path().to_str().unwrap()],
        b"",
    ));
    let mut pages = vec!["afskeys".to_string()];
    pages.extend(COMMANDS.iter().map(|c| format!("afskeys-{c}")));
    pages.extend(
        ["init", "show", "set"]
            .iter()
            .map(|c| format!("afskeys-authdb-{c}")),
    );
    pages.extend(
        ["convert", "export"]
            .iter()
            .map(|c| format!("afskeys-keytab-{c}")),
    );
    for p in &pages {
        let f = d.path().join(format!("{p}.1"));
        assert!(listed.contains(&f.display().to_string()), "{p} not listed");
        let o = Command::new("groff")
            .args(["-man", "-Tutf8", "-ww", "-z"])
            .arg(&f)
            .output()
            .unwrap();
        assert!(
            o.status.success() && o.stderr.is_empty(),
            "{p}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let rotate = fs::read_to_string(d.path().join("afskeys-rotate.1")).unwrap();
    assert!(rotate.contains("resume"), "{rotate}");
}

//! `[distribution] state_dir` in Update Server cells: afskeys creates it when missing (mode
//! 0700, owned by the invoking user), refuses to create it in a parent others can write to,
//! and refuses an existing one that others could tamper with, naming it.

mod common;

use common::*;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

/// An Update Server cell whose state dir is `state`.
fn cell(state: &Path) -> (tempfile::TempDir, std::path::PathBuf) {
    let d = confdir("state.example.com");
    let cfg = d.path().join("afskeys.toml");
    fs::write(
        &cfg,
        format!(
            "[distribution]\nmethod = \"upserver\"\nbos = \"/bin/false\"\nstate_dir = \"{}\"\n\
             [[distribution.upclients]]\nname = \"fs1\"\nhost = \"10.0.0.1\"\n",
            state.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&cfg, fs::Permissions::from_mode(0o600)).unwrap();
    (d, cfg)
}

fn afskeys_in(d: &Path, cfg: &Path, args: &[&str]) -> std::process::Output {
    let mut c = afskeys();
    c.arg("--confdir")
        .arg(d)
        .arg("--config")
        .arg(cfg)
        .args(args);
    pipe(c, b"")
}

/// Proves: a missing state dir is created 0700, owned by the invoking user, and the journal
/// and audit log of an `add` land in it (not in the conf dir).
#[test]
fn a_missing_state_dir_is_created_private() {
    let top = tempfile::tempdir().unwrap();
    let state = top.path().join("afskeys");
    let (d, cfg) = cell(&state);
    let o = afskeys_in(
        d.path(),
        &cfg,
        &["add", "--kvno", "3", "--type", "rxkad_krb5", "--random"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let md = fs::metadata(&state).unwrap();
    assert!(md.is_dir());
    assert_eq!(md.mode() & 0o7777, 0o700);
    assert_eq!(md.uid(), unsafe { libc::geteuid() });
    assert!(state.join("afskeys-audit.log").exists());
    assert!(!d.path().join("afskeys-audit.log").exists());
}

/// Proves: a state dir writable by others, a symlink, a file, or a missing one under a
/// parent others can write to is refused, naming the path and the problem; nothing is
/// created or written.
#[test]
fn a_state_dir_others_could_tamper_with_is_refused() {
    let top = tempfile::tempdir().unwrap();
    let open = top.path().join("open");
    fs::create_dir(&open).unwrap();
    fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
    let link = top.path().join("link");
    std::os::unix::fs::symlink(&open, &link).unwrap();
    let file = top.path().join("file");
    fs::write(&file, "").unwrap();
    let under_open = open.join("afskeys");
    let cases: [(&Path, &str); 4] = [
        (&open, "writable by group or others (mode 777)"),
        (&link, "is a symbolic link"),
        (&file, "is not a directory"),
        (&under_open, "has mode 0777: other users could replace"),
    ];
    for (state, problem) in cases {
        let (d, cfg) = cell(state);
        let o = afskeys_in(d.path(), &cfg, &["authdb", "show"]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{}: {err}", state.display());
        assert!(
            err.contains(&format!("state_dir {}: ", state.display())) && err.contains(problem),
            "{}: {err}",
            state.display()
        );
    }
    assert!(!under_open.exists());
    assert_eq!(fs::read_dir(&open).unwrap().count(), 0);
}

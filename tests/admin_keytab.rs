//! The admin keytab (afskeys/admin, often every privilege on the KDC) gets the checked open
//! of every secret before kadmin or kinit is given its path (issue "Races, hangs and lies",
//! item 6): readable by others, owned by another user, reached through a symlink (here in a
//! 1777 directory), or a FIFO, it is refused by name, fast, and kadmin never runs.

mod common;
use common::*;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const CELL: &str = "keytab.example.com";

/// A cell whose auth DB is kadmind through a stand-in kadmin that records that it ran.
fn cell(keytab: &Path) -> (tempfile::TempDir, PathBuf) {
    let d = confdir(CELL);
    let ran = d.path().join("kadmin-ran");
    let script = d.path().join("kadmin");
    fs::write(&script, format!("#!/bin/sh\ntouch {}\n", ran.display())).unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    let toml = format!(
        "[authdb]\nbackend = \"kadmin\"\nprincipal = \"afs/{CELL}@KT\"\nkadmin = \"{}\"\n\
         server = \"127.0.0.1:1\"\nadmin_principal = \"afskeys/admin@KT\"\n\
         admin_keytab = \"{}\"\ntimeout = \"5s\"\n",
        script.display(),
        keytab.display()
    );
    fs::write(d.path().join("afskeys.toml"), toml).unwrap();
    (d, ran)
}

fn refused(keytab: &Path, problem: &str) {
    let (d, ran) = cell(keytab);
    for args in [
        &["status"][..],
        &["check"],
        &["verify", "--kdc"],
        &["rotate"],
    ] {
        let t = Instant::now();
        let o = run(d.path(), args, b"");
        let took = t.elapsed();
        let text = format!("{}{}", stdout(&o), stderr(&o));
        assert!(
            text.contains(&format!("{}: {problem}", keytab.display())),
            "{args:?}: {text}"
        );
        assert!(took < Duration::from_secs(3), "{args:?} took {took:?}");
        assert!(!ran.exists(), "{args:?}: kadmin ran with that keytab");
    }
}

#[test]
fn a_keytab_others_can_read_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let kt = d.path().join("admin.keytab");
    fs::write(&kt, b"\x05\x02").unwrap();
    fs::set_permissions(&kt, fs::Permissions::from_mode(0o644)).unwrap();
    refused(&kt, "has mode 0644: other users can read the secret in it");
}

#[test]
fn a_keytab_owned_by_another_user_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let kt = d.path().join("admin.keytab");
    fs::write(&kt, b"\x05\x02").unwrap();
    fs::set_permissions(&kt, fs::Permissions::from_mode(0o600)).unwrap();
    if std::os::unix::fs::chown(&kt, Some(65534), None).is_err() {
        return; // not root: cannot give the file away
    }
    refused(&kt, "is owned by uid 65534");
}

#[test]
fn a_keytab_reached_through_a_symlink_in_a_sticky_world_writable_dir_is_refused() {
    let real = tempfile::tempdir().unwrap();
    let kt = real.path().join("admin.keytab");
    fs::write(&kt, b"\x05\x02").unwrap();
    fs::set_permissions(&kt, fs::Permissions::from_mode(0o600)).unwrap();
    let shared = tempfile::tempdir().unwrap();
    fs::set_permissions(shared.path(), fs::Permissions::from_mode(0o1777)).unwrap();
    let link = shared.path().join("admin.keytab");
    std::os::unix::fs::symlink(&kt, &link).unwrap();
    refused(&link, "is a symbolic link");
}

#[test]
fn a_fifo_keytab_is_refused_at_once() {
    let d = tempfile::tempdir().unwrap();
    let kt = d.path().join("admin.keytab");
    let c = std::ffi::CString::new(kt.as_os_str().as_encoded_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    refused(&kt, "is not a regular file (it is a FIFO)");
}

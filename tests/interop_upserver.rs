//! Rotation in a cell whose servers pull the control machine's conf dir through the Update
//! Server, against the real OpenAFS 1.8.9 upserver, upclient and bosserver, each machine in
//! its own namespaces (see `upserver/mod.rs`). No SSH anywhere: afskeys learns each fetch from
//! `bos getdate -noauth`.

mod common;
mod upserver;

use common::*;
use std::fs;
use std::time::Duration;
use upserver::*;

fn audit(c: &UpCell) -> String {
    fs::read_to_string(c.control.root.path().join("lib/afskeys/afskeys-audit.log")).unwrap()
}

fn entry_kvno(c: &UpCell) -> Option<i64> {
    let v: serde_json::Value = serde_json::from_str(&c.afskeys_ok(&["--json", "status"])).unwrap();
    v["afs_entry"]["kvno"].as_i64()
}

/// Proves: rotate adds the key on the control machine only, waits until all three upclients
/// have fetched it (their `bos getdate` dates equal the control machine's), and only then
/// sets the afs entry; afterwards every server's KeyFile and KeyFileExt equal the control
/// machine's byte for byte, and afskeys' journal and audit log never reached the servers.
#[test]
fn rotate_waits_for_every_upclient_before_the_afs_entry_moves() {
    if !have_all() {
        return;
    }
    let c = UpCell::new(3);
    c.wait_equal(Duration::from_secs(30));
    let out = c.afskeys_ok(&["rotate"]);
    assert!(out.contains("kvno 2"), "{out}");
    for s in &c.servers {
        assert!(c.same_files(s), "{} differs", s.ip);
        let names: Vec<String> = fs::read_dir(s.confdir())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            !names.iter().any(|n| n.starts_with("afskeys-")),
            "afskeys state travelled: {names:?}"
        );
    }
    let log = audit(&c);
    let fetched = log
        .find("fetched through the Update Server")
        .unwrap_or_else(|| panic!("{log}"));
    let set = log.find("afs entry set to kvno 2").unwrap();
    assert!(fetched < set, "{log}");
    assert!(
        log.contains("fs1 (KeyFile and KeyFileExt dates equal"),
        "{log}"
    );
    assert!(log.contains("bytes not compared (no SSH)"), "{log}");
    assert_eq!(entry_kvno(&c), Some(2));
}

/// Proves: with one upclient stopped (through its bosserver) the rotation stops at step
/// `added` when the deadline passes, names that server as behind, and leaves the afs entry
/// where it was although the other servers fetched; `--resume` once the upclient runs again
/// sees its fetch and completes.
#[test]
fn a_stopped_upclient_holds_the_afs_entry_back_until_resume() {
    if !have_all() {
        return;
    }
    let c = UpCell::new(3);
    c.wait_equal(Duration::from_secs(30));
    c.afskeys_ok(&["rotate"]);
    assert_eq!(entry_kvno(&c), Some(2));
    c.write_config("6s");
    c.upclient(1, false);
    let o = c.afskeys(&["rotate"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains(
            "servers have not fetched kvno 3 from the control machine within 6s: fs2 (behind since"
        ),
        "{err}"
    );
    assert!(!err.contains("fs1 ("), "{err}");
    assert!(err.contains("the afs entry is at kvno 2"), "{err}");
    assert_eq!(entry_kvno(&c), Some(2));
    assert!(c.same_files(&c.servers[0]));
    assert!(!c.same_files(&c.servers[1]));
    let st: serde_json::Value = serde_json::from_str(&c.afskeys_ok(&["--json", "status"])).unwrap();
    assert_eq!(st["rotation"]["step"], "added", "{st}");

    c.upclient(1, true);
    c.wait_equal(Duration::from_secs(30));
    c.afskeys_ok(&["rotate", "--resume"]);
    assert_eq!(entry_kvno(&c), Some(3));
    for s in &c.servers {
        assert!(c.same_files(s));
    }
}

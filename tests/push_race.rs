//! A push never undoes a rotation (issue "Races, hangs and lies", item 1): `push`, and the
//! push after `add`, read the control machine's files and commit them on every server under
//! the cell lock. Each test pauses the push right after its read (the `test-hooks` pause
//! point), runs a whole `rotate` meanwhile, then lets the push go on: on the old code the
//! rotation finished during the pause and the push then put the older files back on every
//! server (fs1 at kvno 1 while the afs entry was at 2); now the rotation waits for the push.

mod common;
use common::*;
use std::fs;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

const CELL: &str = "race.example.com";

/// A control machine and two directory servers, rotated once (kvno 1 everywhere).
fn cell() -> Vec<tempfile::TempDir> {
    let v = dir_cell(CELL, 2, "token_lifetime = \"25h\"\n");
    ok(run(v[0].path(), &["rotate"], b""));
    v
}

fn spawn(dir: &Path, args: &[&str], pause: Option<(&str, &Path)>) -> Child {
    let mut c = afskeys();
    c.arg("--confdir").arg(dir).args(args);
    if let Some((at, file)) = pause {
        c.env("AFSKEYS_PAUSE_AT", at)
            .env("AFSKEYS_PAUSE_FILE", file);
    }
    c.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn wait_for(p: &Path) {
    let t = Instant::now();
    while !p.exists() {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "{} never came",
            p.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Pause `first` after its read, run a whole `rotate` meanwhile (it must wait for the cell
/// lock: still running a second later), release the pause; then every server holds the afs
/// entry's kvno.
fn race(first: &[&str], point: &str) {
    let dirs = cell();
    let (control, fs1) = (dirs[0].path(), dirs[1].path());
    let gate = tempfile::tempdir().unwrap();
    let release = gate.path().join("go");
    let first = spawn(control, first, Some((point, &release)));
    wait_for(&gate.path().join("go.reached"));
    let mut rotate = spawn(control, &["rotate"], None);
    std::thread::sleep(Duration::from_secs(1));
    let rotated_during_the_pause = rotate.try_wait().unwrap().is_some();
    fs::write(&release, b"").unwrap();
    let first = first.wait_with_output().unwrap();
    let rotate = rotate.wait_with_output().unwrap();
    assert!(first.status.success(), "{}", stderr(&first));
    assert!(rotate.status.success(), "{}", stderr(&rotate));
    let v: serde_json::Value =
        serde_json::from_str(&ok(run(control, &["--json", "status"], b""))).unwrap();
    let entry = v["afs_entry"]["kvno"].as_i64().unwrap();
    assert!(
        stdout(&rotate).starts_with(&format!("kvno {entry} is on every server")),
        "{}",
        stdout(&rotate)
    );
    assert!(
        kvnos_of(fs1).contains(&entry),
        "fs1 holds {:?} while the afs entry is at {entry} (rotation ran during the pause: \
         {rotated_during_the_pause})",
        kvnos_of(fs1)
    );
    assert!(
        !rotated_during_the_pause,
        "rotate finished while the push held what it read"
    );
    let check = run(control, &["check"], b"");
    assert!(!stdout(&check).contains("CRITICAL"), "{}", stdout(&check));
}

#[test]
fn a_push_paused_after_its_read_does_not_undo_a_rotation() {
    race(&["push"], "push:read");
}

#[test]
fn the_push_after_add_does_not_undo_a_rotation() {
    race(&["add", "--random", "--kvno", "9"], "sync:read");
}

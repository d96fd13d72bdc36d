//! Every commit on a server is a compare-and-swap against what the command read there
//! (issue "Races, hangs and lies", item 1, second half): a server whose key files change
//! behind the command's back (a hand edit, another control machine) between the command's
//! read and its commit is refused, named, and left as that other change made it, and no
//! other server is changed. Each test pauses the command at a `test-hooks` pause point,
//! changes fs1 from outside meanwhile (afskeys run on fs1's conf dir alone, as another
//! control machine or an administrator there would), then lets the command go on. On the old
//! code each command overwrote fs1's change and exited 0.

mod common;
use common::*;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

const CELL: &str = "cas.example.com";

/// A control machine and two directory servers, rotated once (kvno 1 everywhere).
fn cell() -> Vec<tempfile::TempDir> {
    let v = dir_cell(CELL, 2, "token_lifetime = \"25h\"\n");
    ok(run(v[0].path(), &["rotate"], b""));
    v
}

/// afskeys on `dir` alone (a configuration with no servers): a change made there by hand.
fn by_hand(dir: &Path, args: &[&str]) {
    let alone = tempfile::tempdir().unwrap();
    let toml = alone.path().join("alone.toml");
    fs::write(&toml, "token_lifetime = \"25h\"\n").unwrap();
    let mut c = afskeys();
    c.arg("--confdir")
        .arg(dir)
        .arg("--config")
        .arg(&toml)
        .args(args);
    ok(pipe(c, b""));
}

fn spawn_paused(dir: &Path, args: &[&str], at: &str, gate: &Path) -> Child {
    let mut c = afskeys();
    c.arg("--confdir").arg(dir).args(args);
    no_vldb(&mut c);
    c.env("AFSKEYS_SKIP_RUNNING_PROOF", "1")
        .env("AFSKEYS_PAUSE_AT", at)
        .env("AFSKEYS_PAUSE_FILE", gate);
    c.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Run `args` on the control machine, paused at `at`; meanwhile `meanwhile`; then go on.
fn paused(control: &Path, args: &[&str], at: &str, meanwhile: impl FnOnce()) -> Output {
    let gate = tempfile::tempdir().unwrap();
    let release = gate.path().join("go");
    let child = spawn_paused(control, args, at, &release);
    let reached = PathBuf::from(format!("{}.reached", release.display()));
    let t = Instant::now();
    while !reached.exists() {
        assert!(t.elapsed() < Duration::from_secs(30), "{at} never reached");
        std::thread::sleep(Duration::from_millis(20));
    }
    meanwhile();
    fs::write(&release, b"").unwrap();
    child.wait_with_output().unwrap()
}

/// A conf dir's KeyFile and KeyFileExt bytes.
fn files(dir: &Path) -> (Vec<u8>, Vec<u8>) {
    (
        fs::read(dir.join("KeyFile")).unwrap_or_default(),
        fs::read(dir.join("KeyFileExt")).unwrap_or_default(),
    )
}

fn said(o: &Output) -> String {
    format!("{}{}", stdout(o), stderr(o))
}

#[test]
fn a_server_changed_between_a_push_stage_and_its_commit_is_refused_and_named() {
    let dirs = cell();
    let (control, fs1, fs2) = (dirs[0].path(), dirs[1].path(), dirs[2].path());
    // The control machine gets kvno 5, so the push has something to write.
    by_hand(control, &["add", "--random", "--kvno", "5"]);
    let fs2_before = files(fs2);
    let mut fs1_edited = None;
    let o = paused(control, &["push"], "push:staged", || {
        by_hand(fs1, &["add", "--random", "--kvno", "7"]);
        fs1_edited = Some(files(fs1));
    });
    assert!(
        !o.status.success(),
        "push overwrote a hand edit: {}",
        said(&o)
    );
    let s = said(&o);
    assert!(
        s.contains("fs1") && s.contains("KeyFile changed on the server"),
        "{s}"
    );
    assert_eq!(
        files(fs1),
        fs1_edited.unwrap(),
        "fs1's hand edit was overwritten"
    );
    assert_eq!(kvnos_of(fs1), vec![1, 7]);
    assert_eq!(
        files(fs2),
        fs2_before,
        "fs2 was changed although the push was refused"
    );
    // Once that change is done, a push goes through.
    ok(run(control, &["push"], b""));
    assert_eq!(kvnos_of(fs1), vec![1, 5]);
    assert_eq!(files(fs2), files(control));
}

#[test]
fn a_rotation_refuses_a_server_changed_after_its_read() {
    let dirs = cell();
    let (control, fs1, fs2) = (dirs[0].path(), dirs[1].path(), dirs[2].path());
    let mut fs1_edited = None;
    let o = paused(control, &["rotate"], "distribute:read", || {
        by_hand(fs1, &["add", "--random", "--kvno", "7"]);
        fs1_edited = Some(files(fs1));
    });
    assert!(!o.status.success(), "{}", said(&o));
    let s = said(&o);
    assert!(s.contains("fs1 (its keys changed on the server"), "{s}");
    assert_eq!(
        files(fs1),
        fs1_edited.unwrap(),
        "fs1's hand edit was overwritten"
    );
    assert_eq!(
        kvnos_of(fs2),
        vec![1],
        "fs2 got the new key although the push was refused"
    );
    // The rotation goes on from where it stopped, once that change is done.
    let o = run(control, &["rotate", "--resume"], b"");
    assert!(o.status.success(), "{}", said(&o));
    assert!(kvnos_of(fs2).contains(&2) && kvnos_of(fs1).contains(&2));
}

#[test]
fn an_emergency_edit_refuses_a_server_changed_after_its_read() {
    let dirs = cell();
    let (control, fs1) = (dirs[0].path(), dirs[1].path());
    let o = paused(
        control,
        &["add", "--server", "fs1", "--random", "--kvno", "8"],
        "edit:read",
        || by_hand(fs1, &["add", "--random", "--kvno", "7"]),
    );
    assert!(!o.status.success(), "{}", said(&o));
    assert!(
        said(&o).contains("its keys changed on the server"),
        "{}",
        said(&o)
    );
    assert_eq!(
        kvnos_of(fs1),
        vec![1, 7],
        "the edit overwrote fs1's other change"
    );
}

//! The running-server proof as the binary reports it, on cells with no OpenAFS daemons (the
//! live cell, `tests/live_cell.rs`, proves what the daemons answer): a control machine whose
//! conf dir `bos -localauth` does not read refuses a rotation before anything changes, and
//! says so in the plan, `verify` and `check`; what is not asked is said in each output.

mod common;
use common::*;
use std::fs;
use std::path::Path;
use std::process::Output;

const CELL: &str = "run.example.com";

/// A control machine and two directory servers, the second with its proof turned off.
fn cell() -> (tempfile::TempDir, tempfile::TempDir, tempfile::TempDir) {
    let control = confdir(CELL);
    let (fs1, fs2) = (confdir(CELL), confdir(CELL));
    let toml = format!(
        "token_lifetime = \"25h\"\n[[servers]]\nname = \"fs1\"\nconfdir = \"{}\"\n\
         [[servers]]\nname = \"fs2\"\nconfdir = \"{}\"\nrunning_proof = false\n",
        fs1.path().display(),
        fs2.path().display()
    );
    fs::write(control.path().join("afskeys.toml"), toml).unwrap();
    (control, fs1, fs2)
}

/// afskeys with the proof on (`skip` false) or off for the command.
fn run(dir: &Path, skip: bool, args: &[&str]) -> Output {
    let mut c = afskeys();
    c.env("AFSKEYS_SKIP_RUNNING_PROOF", if skip { "1" } else { "0" })
        .arg("--confdir")
        .arg(dir)
        .args(args);
    pipe(c, b"")
}

/// Proves a rotation from a conf dir bos does not read is refused before it changes
/// anything (exit 3, every file byte for byte the same), and that its plan, `verify` and
/// `check` say why the running servers cannot be asked; with the proof turned off for the
/// command the rotation runs and its output and `check` say what was not asked.
#[test]
fn a_conf_dir_bos_does_not_read_refuses_the_rotation_before_any_change() {
    let (control, fs1, _fs2) = cell();
    let dir = control.path();
    ok(run(dir, true, &["rotate"]));
    let before = snapshot(dir);
    let fs1_before = snapshot(fs1.path());
    let why = format!(
        "the running servers cannot be asked: `bos -localauth` takes its key from \
         /usr/afs/etc or /etc/openafs/server, not from {}",
        dir.display()
    );
    let o = run(dir, false, &["rotate"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains(&why), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("--skip-running-proof"),
        "{}",
        stderr(&o)
    );
    assert_eq!(snapshot(dir), before, "the control machine changed");
    assert_eq!(snapshot(fs1.path()), fs1_before, "fs1 changed");

    let o = run(dir, false, &["rotate", "--dry-run"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains(&why), "{}", stderr(&o));
    let plan = stdout(&o);
    assert!(
        plan.contains(
            "  4. ask the running servers to accept kvno 2 (not asked: fs1 (a directory \
             server without afs_host), fs2 (running_proof = false in afskeys.toml)), then set \
             the afs entry"
        ),
        "{plan}"
    );

    let v = run(dir, false, &["verify"]);
    assert_eq!(v.status.code(), Some(0), "{}", stderr(&v));
    let not_asked = format!(
        "running servers not asked: `bos -localauth` takes its key from /usr/afs/etc or \
         /etc/openafs/server, not from {}\n",
        dir.display()
    );
    assert!(stdout(&v).ends_with(&not_asked), "{}", stdout(&v));
    let check = run(dir, false, &["check"]);
    assert_eq!(check.status.code(), Some(1), "{}", stdout(&check));
    assert!(
        stdout(&check).starts_with("AFSKEYS WARNING - running servers not checked: `bos"),
        "{}",
        stdout(&check)
    );

    // Off for the command: it runs, and says what it did not ask.
    let o = ok(run(dir, true, &["rotate"]));
    assert!(
        o.contains(
            "running servers not asked to accept kvno 2 (their key files hold it): every \
             server (--skip-running-proof)\n"
        ),
        "{o}"
    );
    let check = ok(run(dir, true, &["check"]));
    assert!(
        check.trim_end().ends_with("; running servers not asked"),
        "{check}"
    );
    let v = ok(run(dir, true, &["verify"]));
    assert!(
        v.ends_with("running servers not asked: --skip-running-proof\n"),
        "{v}"
    );
}

/// Every file in a dir with its bytes, to prove nothing changed.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, fs::read(&p).unwrap())
        })
        .collect();
    v.sort();
    v
}

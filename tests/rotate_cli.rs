//! rotate, status, check, prune and the grace policy through the real binary: a control
//! machine and three other servers (local conf dirs named in afskeys.toml), a process killed
//! (SIGKILL) after each step, a server gone, and the clock moved with libfaketime.

mod common;
use common::*;
use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const CELL: &str = "rot.example.com";

struct Cell {
    control: tempfile::TempDir,
    servers: Vec<tempfile::TempDir>,
}

impl Cell {
    fn new() -> Cell {
        let mut v = dir_cell(
            CELL,
            3,
            "token_lifetime = \"25h\"\nrotation_interval = \"30d\"\n",
        );
        let control = v.remove(0);
        Cell {
            control,
            servers: v,
        }
    }

    fn dir(&self) -> &Path {
        self.control.path()
    }

    fn run(&self, args: &[&str]) -> Output {
        run(self.dir(), args, b"")
    }

    /// Run with the clock moved by `offset` (libfaketime, e.g. "+26h").
    fn at(&self, offset: &str, args: &[&str]) -> Output {
        let mut c = Command::new("faketime");
        c.args(["-f", offset, env!("CARGO_BIN_EXE_afskeys"), "--confdir"])
            .arg(self.dir())
            .args(args);
        pipe(c, b"")
    }

    fn status(&self) -> Value {
        serde_json::from_str(&ok(self.run(&["--json", "status"]))).unwrap()
    }

    fn entry_kvno(&self) -> Option<i64> {
        self.status()["afs_entry"]["kvno"].as_i64()
    }

    /// The servers (not the control machine) still hold the afs entry's keys.
    #[track_caller]
    fn assert_invariant_on_servers(&self) {
        let entry: Value =
            serde_json::from_str(&ok(self.run(&["--json", "authdb", "show"]))).unwrap();
        for s in &self.servers {
            let v: Value =
                serde_json::from_str(&ok(run(s.path(), &["--json", "list"], b""))).unwrap();
            for k in entry["keys"].as_array().unwrap() {
                assert!(
                    v["keys"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|h| h["kvno"] == k["kvno"] && h["cksum"] == k["cksum"]),
                    "{} lost the afs entry's key",
                    s.path().display()
                );
            }
        }
    }

    /// The invariant, checked by reading every conf dir directly.
    #[track_caller]
    fn assert_invariant(&self) {
        let Some(kvno) = self.entry_kvno() else {
            return;
        };
        let entry: Value =
            serde_json::from_str(&ok(self.run(&["--json", "authdb", "show"]))).unwrap();
        let want: Vec<(i64, u64)> = entry["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| {
                (
                    k["enctype"].as_i64().unwrap_or(0),
                    k["cksum"].as_u64().unwrap(),
                )
            })
            .collect();
        let mut dirs: Vec<PathBuf> = vec![self.dir().to_path_buf()];
        dirs.extend(self.servers.iter().map(|s| s.path().to_path_buf()));
        for d in dirs {
            let v: Value = serde_json::from_str(&ok(run(&d, &["--json", "list"], b""))).unwrap();
            for (enctype, cksum) in &want {
                let found = v["keys"].as_array().unwrap().iter().any(|k| {
                    k["kvno"] == kvno
                        && k["enctype"].as_i64().unwrap_or(0) == *enctype
                        && k["cksum"] == *cksum
                });
                assert!(found, "{} lacks the afs entry's kvno {kvno}", d.display());
            }
        }
    }
}

#[test]
fn rotation_reaches_every_server_and_the_grace_is_enforced() {
    if !have(&["faketime"]) {
        return;
    }
    let c = Cell::new();
    let out = ok(c.run(&["rotate", "--dry-run"]));
    assert!(out.contains("choose kvno 1"), "{out}");
    assert!(out.contains("control, fs1, fs2, fs3"), "{out}");
    assert!(c.entry_kvno().is_none(), "dry run changed the auth DB");
    ok(c.run(&["rotate"]));
    c.assert_invariant();
    let out = ok(c.run(&["rotate"]));
    assert!(out.contains("kvno 1 is retiring: removable after"), "{out}");
    c.assert_invariant();
    assert_eq!(c.entry_kvno(), Some(2));
    for s in &c.servers {
        let l = ok(run(
            s.path(),
            &["list", "--format", "asetkey", "--showkey"],
            b"",
        ));
        assert_eq!(l.lines().count(), 5, "{l}"); // kvno 1 and 2, two enctypes each, All done.
    }

    // The old key is retiring: remove and prune refuse, and say when.
    let o = c.run(&["remove", "--kvno", "1"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("kvno 1 is retiring"), "{}", stderr(&o));
    assert!(stderr(&o).contains("removable then"), "{}", stderr(&o));
    let o = c.run(&["remove", "--kvno", "2"]);
    assert_eq!(o.status.code(), Some(3));
    assert!(stderr(&o).contains("current key"), "{}", stderr(&o));
    assert!(ok(c.run(&["prune"])).contains("nothing to prune"));
    // 24 h later: still retiring; 26 h later: prune takes it.
    let o = c.at("+24h", &["remove", "--kvno", "1"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let out = ok(c.at("+26h", &["prune", "--dry-run"]));
    assert!(out.contains("would remove rxkad_krb5 kvno 1"), "{out}");
    let out = ok(c.at("+26h", &["prune"]));
    assert!(
        out.contains("removed rxkad_krb5 kvno 1 enctype 17"),
        "{out}"
    );
    assert!(
        out.contains("removed rxkad_krb5 kvno 1 enctype 18"),
        "{out}"
    );
    let keys: Value = serde_json::from_str(&ok(c.run(&["--json", "list"]))).unwrap();
    assert!(keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .all(|k| k["kvno"] == 2));
    // audit log: every mutation, no key material
    let log = fs::read_to_string(c.dir().join("afskeys-audit.log")).unwrap();
    assert!(log.contains("rotate: done: kvno 2 current"), "{log}");
    assert!(log.contains("prune: removed"), "{log}");
}

#[test]
fn emergency_removal_overrides_and_is_logged() {
    let c = Cell::new();
    ok(c.run(&["rotate"]));
    ok(c.run(&["rotate"]));
    let o = c.run(&["remove", "--kvno", "1", "--emergency"]);
    assert_eq!(o.status.code(), Some(2), "--emergency needs --reason");
    let o = c.run(&[
        "remove",
        "--kvno",
        "1",
        "--emergency",
        "--reason",
        "key leaked in a backup",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("EMERGENCY removal (logged)"),
        "{}",
        stderr(&o)
    );
    let log = fs::read_to_string(c.dir().join("afskeys-audit.log")).unwrap();
    assert!(
        log.contains("remove --emergency: removed rxkad_krb5 kvno 1"),
        "{log}"
    );
    assert!(log.contains("reason: key leaked in a backup"), "{log}");
}

#[test]
#[cfg(feature = "test-hooks")] // AFSKEYS_CRASH_AT stops a rotation part way
fn a_process_killed_after_each_step_is_resumed() {
    for step in ["planned", "added", "distributed", "activated"] {
        let c = Cell::new();
        ok(c.run(&["rotate"]));
        let mut cmd = afskeys();
        cmd.env("AFSKEYS_CRASH_AT", step)
            .arg("--confdir")
            .arg(c.dir())
            .arg("rotate");
        let o = pipe(cmd, b"");
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            o.status.signal(),
            Some(9),
            "{step}: not killed: {}",
            stderr(&o)
        );
        c.assert_invariant();
        let st = c.status();
        assert_eq!(st["rotation"]["step"], step, "{step}");
        assert_eq!(st["rotation"]["kvno"], 2);
        // A new rotate is refused while this one is unfinished; it says how to go on.
        let o = c.run(&["rotate"]);
        assert_eq!(o.status.code(), Some(3), "{step}");
        assert!(stderr(&o).contains("--resume"), "{}", stderr(&o));
        ok(c.run(&["rotate", "--resume"]));
        c.assert_invariant();
        assert_eq!(c.entry_kvno(), Some(2), "{step}");
        assert!(c.status()["rotation"].is_null());
    }
}

#[test]
fn a_missing_server_holds_the_auth_db_back_until_resume() {
    let c = Cell::new();
    ok(c.run(&["rotate"]));
    let fs2 = c.servers[1].path().to_path_buf();
    let parked = fs2.with_extension("away");
    fs::rename(&fs2, &parked).unwrap();
    let o = c.run(&["rotate"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("servers lack kvno 2: fs2"),
        "{}",
        stderr(&o)
    );
    assert!(
        stderr(&o).contains("afskeys rotate --resume"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        c.entry_kvno(),
        Some(1),
        "the afs entry moved while fs2 lacked the key"
    );
    let st = c.status();
    assert_eq!(st["rotation"]["missing"][0][0], "fs2");
    let text = ok(c.run(&["status"]));
    assert!(text.contains("waiting for fs2"), "{text}");
    let o = c.run(&["check"]);
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    assert!(
        stdout(&o).starts_with("AFSKEYS CRITICAL - fs2: KeyFile unreadable"),
        "{}",
        stdout(&o)
    );
    fs::rename(&parked, &fs2).unwrap();
    ok(c.run(&["rotate", "--resume"]));
    c.assert_invariant();
    assert_eq!(c.entry_kvno(), Some(2));
}

#[test]
#[cfg(feature = "test-hooks")] // AFSKEYS_CRASH_AT stops a rotation part way
fn abort_undoes_an_unfinished_rotation() {
    let c = Cell::new();
    ok(c.run(&["rotate"]));
    let mut cmd = afskeys();
    cmd.env("AFSKEYS_CRASH_AT", "distributed")
        .arg("--confdir")
        .arg(c.dir())
        .arg("rotate");
    let _ = pipe(cmd, b"");
    ok(c.run(&["rotate", "--abort"]));
    for d in std::iter::once(c.dir()).chain(c.servers.iter().map(|s| s.path())) {
        let v: Value = serde_json::from_str(&ok(run(d, &["--json", "list"], b""))).unwrap();
        assert!(
            v["keys"].as_array().unwrap().iter().all(|k| k["kvno"] == 1),
            "{}",
            d.display()
        );
    }
    assert_eq!(c.entry_kvno(), Some(1));
    // past activation abort is refused
    let mut cmd = afskeys();
    cmd.env("AFSKEYS_CRASH_AT", "activated")
        .arg("--confdir")
        .arg(c.dir())
        .arg("rotate");
    let _ = pipe(cmd, b"");
    let o = c.run(&["rotate", "--abort"]);
    assert_eq!(o.status.code(), Some(3));
    assert!(stderr(&o).contains("already uses kvno"), "{}", stderr(&o));
    ok(c.run(&["rotate", "--resume"]));
}

fn check(c: &Cell, offset: Option<&str>) -> (i32, String) {
    let o = match offset {
        Some(off) => c.at(off, &["check"]),
        None => c.run(&["check"]),
    };
    (o.status.code().unwrap(), stdout(&o))
}

#[test]
#[cfg(feature = "test-hooks")] // AFSKEYS_CRASH_AT stops a rotation part way
fn check_lines_and_exit_codes() {
    if !have(&["faketime"]) {
        return;
    }
    let c = Cell::new();
    // UNKNOWN: no afs entry yet
    let (code, line) = check(&c, None);
    assert_eq!(code, 3, "{line}");
    assert!(line.starts_with("AFSKEYS UNKNOWN - file "), "{line}");
    ok(c.run(&["rotate"]));
    // OK, and --quiet prints nothing
    let (code, line) = check(&c, None);
    assert_eq!(code, 0, "{line}");
    assert!(
        line.starts_with("AFSKEYS OK - kvno 1 current since "),
        "{line}"
    );
    assert!(line.contains("4 server(s) agree"), "{line}");
    let o = c.run(&["check", "--quiet"]);
    assert_eq!((o.status.code(), stdout(&o)), (Some(0), String::new()));
    // WARNING: the current key is older than the interval
    let (code, line) = check(&c, Some("+31d"));
    assert_eq!(code, 1, "{line}");
    assert!(
        line.contains("current key kvno 1 is older than the rotation interval"),
        "{line}"
    );
    ok(c.run(&["rotate"]));
    // WARNING: removable keys waiting (26 h after kvno 1 retired)
    let (code, line) = check(&c, Some("+26h"));
    assert_eq!(code, 1, "{line}");
    assert_eq!(
        line,
        "AFSKEYS WARNING - removable keys waiting: kvno 1 (run `afskeys prune`)\n"
    );
    // WARNING: a rotation stuck for over an hour
    let mut cmd = afskeys();
    cmd.env("AFSKEYS_CRASH_AT", "added")
        .arg("--confdir")
        .arg(c.dir())
        .arg("rotate");
    let _ = pipe(cmd, b"");
    // WARNING at once: no process runs it (killed), so it is stopped.
    let (code, line) = check(&c, None);
    assert_eq!(code, 1, "{line}");
    assert!(
        line.contains("rotation to kvno 3 stopped at step added since"),
        "{line}"
    );
    // Running (a process holds the rotation lock): fine while fresh, stuck after an hour.
    let lock = c.dir().join("afskeys-state.json.rotate.lock");
    // flock -o: the lock stays with flock itself, so killing it releases the lock.
    let mut holder = std::process::Command::new("flock")
        .arg("-o")
        .arg(&lock)
        .args(["sleep", "30"])
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let (code, line) = check(&c, None);
    assert_eq!(code, 0, "a fresh rotation that runs is fine: {line}");
    let (code, line) = check(&c, Some("+2h"));
    assert_eq!(code, 1, "{line}");
    assert!(
        line.contains("rotation to kvno 3 stuck at step added since"),
        "{line}"
    );
    holder.kill().unwrap();
    holder.wait().unwrap();
    ok(c.run(&["rotate", "--resume"]));
    // CRITICAL: a server lacks the afs entry's kvno (an operator edited it directly)
    let fs1 = c.servers[0].path();
    ok(run(fs1, &["remove", "--kvno", "3"], b""));
    let (code, line) = check(&c, None);
    assert_eq!(code, 2, "{line}");
    assert!(line.contains("fs1 lacks the afs entry's kvno 3"), "{line}");
    assert!(
        line.contains("fs1 disagrees with the control machine's keys"),
        "{line}"
    );
    ok(c.run(&["rotate"])); // pushes the full set to fs1 again
    let (code, line) = check(&c, None);
    assert_eq!(code, 0, "{line}");
    // CRITICAL: a KeyFile unreadable
    fs::write(c.servers[2].path().join("KeyFile"), b"\x00\x00\x00\x09").unwrap();
    let (code, line) = check(&c, None);
    assert_eq!(code, 2, "{line}");
    assert!(line.contains("fs3: KeyFile unreadable:"), "{line}");
    assert!(line.contains("key count 9 is too large"), "{line}");
    // UNKNOWN: a configuration error
    fs::write(c.dir().join("afskeys.toml"), "token_lifetime = \"soon\"\n").unwrap();
    let (code, line) = check(&c, None);
    assert_eq!(code, 3, "{line}");
    assert!(line.starts_with("AFSKEYS UNKNOWN - "), "{line}");
    assert!(line.contains("not a duration"), "{line}");
}

#[test]
fn a_legacy_des_cell_rotates_and_is_warned_about() {
    let c = Cell::new();
    ok(c.run(&["rotate", "--type", "rxkad"]));
    let text = ok(c.run(&["listkeys"]));
    assert!(text.starts_with("key 1 has cksum "), "{text}");
    let (code, line) = check(&c, None);
    assert_eq!(code, 1, "{line}");
    assert!(line.contains("single-DES key"), "{line}");
    for s in &c.servers {
        assert_eq!(ok(run(s.path(), &["listkeys"], b"")), text);
    }
}

#[test]
fn authdb_init_adopts_an_existing_key_servers_first() {
    let c = Cell::new();
    // A cell whose control machine has a key the others lack (made elsewhere, copied in).
    let scratch = confdir(CELL);
    ok(run(
        scratch.path(),
        &["add", "--kvno", "4", "--type", "rxkad_krb5", "--random"],
        b"",
    ));
    for f in ["KeyFile", "KeyFileExt"] {
        fs::copy(scratch.path().join(f), c.dir().join(f)).unwrap();
    }
    // fs1..3 lack kvno 4: init is refused
    let o = c.run(&["authdb", "init"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("servers first: fs1"), "{}", stderr(&o));
    let out = ok(c.run(&["push"]));
    assert!(out.contains("pushed to 3 server(s)"), "{out}");
    ok(c.run(&["verify"]));
    let out = ok(c.run(&["authdb", "init"]));
    assert!(
        out.starts_with("afs entry afs/rot.example.com@ROT.EXAMPLE.COM: kvno 4"),
        "{out}"
    );
    let o = c.run(&["authdb", "init"]);
    assert_eq!(o.status.code(), Some(3));
    ok(c.run(&["rotate"]));
    assert_eq!(c.entry_kvno(), Some(5));
}

#[test]
fn cron_wrapper_is_silent_when_ok_and_mails_status_on_trouble() {
    if !have(&["faketime"]) {
        return;
    }
    let c = Cell::new();
    ok(c.run(&["rotate"]));
    let cron = concat!(env!("CARGO_MANIFEST_DIR"), "/bin/afskeys-cron");
    let mut cmd = Command::new(cron);
    cmd.env("AFSKEYS", env!("CARGO_BIN_EXE_afskeys"))
        .arg(c.dir());
    let o = pipe(cmd, b"");
    assert_eq!(o.status.code(), Some(0));
    assert!(o.stdout.is_empty() && o.stderr.is_empty(), "{}", stdout(&o));
    // 31 days later the key is due: a warning and the status, exit 1
    let mut cmd = Command::new("faketime");
    cmd.args(["-f", "+31d", cron])
        .env("AFSKEYS", env!("CARGO_BIN_EXE_afskeys"))
        .arg(c.dir());
    let o = pipe(cmd, b"");
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let out = stdout(&o);
    assert!(
        out.starts_with("AFSKEYS WARNING - current key kvno 1 is older"),
        "{out}"
    );
    assert!(out.contains("keys on the control machine:"), "{out}");
}

#[test]
fn replacing_a_key_in_use_is_a_removal_and_the_policy_applies() {
    let c = Cell::new();
    ok(c.run(&["rotate"]));
    ok(c.run(&["rotate"]));
    let before: Vec<_> = std::iter::once(c.dir())
        .chain(c.servers.iter().map(|s| s.path()))
        .map(snapshot)
        .collect();
    for kvno in ["2", "1"] {
        // the current key, and the retiring one
        let o = c.run(&[
            "add",
            "--kvno",
            kvno,
            "--type",
            "rxkad_krb5",
            "--random",
            "--replace",
        ]);
        assert_eq!(o.status.code(), Some(3), "kvno {kvno}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("replacing a key removes the old one"),
            "{}",
            stderr(&o)
        );
    }
    let after: Vec<_> = std::iter::once(c.dir())
        .chain(c.servers.iter().map(|s| s.path()))
        .map(snapshot)
        .collect();
    assert_eq!(before, after, "a refused replacement changed something");
    // A key staged above the current one, and the kvno 999 entry: never pruned.
    ok(c.run(&["add", "--kvno", "7", "--type", "rxkad_krb5", "--random"]));
    ok(c.run(&["add", "--kvno", "999", "--random"]));
    let out = ok(c.at("+30h", &["prune"]));
    assert!(
        !out.contains("kvno 7") && !out.contains("kvno 999"),
        "{out}"
    );
    assert!(out.contains("removed rxkad_krb5 kvno 1"), "{out}");
    // replacing the unused kvno 7 is fine; the current key never, not even with --if-cksum
    ok(c.run(&[
        "add",
        "--kvno",
        "7",
        "--type",
        "rxkad_krb5",
        "--random",
        "--replace",
    ]));
    let v: Value = serde_json::from_str(&ok(c.run(&["--json", "authdb", "show"]))).unwrap();
    let cksums: Vec<String> = v["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["cksum"].to_string())
        .collect();
    let o = c.run(&[
        "add",
        "--kvno",
        "2",
        "--type",
        "rxkad_krb5",
        "--random",
        "--if-cksum",
        &cksums.join(","),
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("is the afs entry's current key"),
        "{}",
        stderr(&o)
    );
    c.assert_invariant();
}

#[test]
fn push_refuses_to_take_the_afs_entrys_key_off_the_servers() {
    let c = Cell::new();
    ok(c.run(&["rotate"]));
    // the control machine loses kvno 1 behind afskeys' back
    let scratch = confdir(CELL);
    for f in ["KeyFile", "KeyFileExt"] {
        let _ = fs::remove_file(scratch.path().join(f));
    }
    ok(run(
        scratch.path(),
        &["add", "--kvno", "5", "--random"],
        b"",
    ));
    for f in ["KeyFile", "KeyFileExt"] {
        fs::copy(scratch.path().join(f), c.dir().join(f)).unwrap();
    }
    let o = c.run(&["push"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("lacks the afs entry's kvno 1"),
        "{}",
        stderr(&o)
    );
    c.assert_invariant_on_servers();
}

#[test]
fn absurd_lifetimes_are_configuration_errors() {
    let c = Cell::new();
    fs::write(
        c.dir().join("afskeys.toml"),
        "token_lifetime = \"1000000000d\"\n",
    )
    .unwrap();
    let o = c.run(&["remove", "--kvno", "1"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("at most 36500d"), "{}", stderr(&o));
}

//! Hostile conditions (issue 11), table-driven: every file afskeys trusts replaced by a FIFO,
//! a directory and a symlink, given another owner (`nobody`) or a writable mode; bad input on
//! stdin and on the command line. Each case asserts the exit code, a message naming the file
//! and the problem, a bounded time (the child is killed after `LIMIT`), and that nothing in
//! the conf dir changed (names, kinds, modes, owners and bytes before and after).

mod common;
use common::*;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

const CELL: &str = "hostile.example.com";
/// Every case must finish well within this (a FIFO once blocked forever).
const LIMIT: Duration = Duration::from_secs(20);
/// `nobody` on Debian: a real uid that is neither root nor us.
const NOBODY: u32 = 65534;

/// Run afskeys on `dir` with `stdin` from a file (or /dev/null), killed after `LIMIT`.
fn bounded(dir: &Path, args: &[&str], stdin: Stdio) -> (Output, Duration) {
    let start = Instant::now();
    let mut child = afskeys()
        .arg("--confdir")
        .arg(dir)
        .args(args)
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if start.elapsed() > LIMIT {
            child.kill().unwrap();
            let o = child.wait_with_output().unwrap();
            panic!("afskeys {args:?} hung; stderr: {}", stderr(&o));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    (child.wait_with_output().unwrap(), start.elapsed())
}

/// Every entry of a dir (recursively into the backup dir): name, kind, mode, owner, bytes.
fn listing(dir: &Path) -> Vec<(String, u32, u32, Vec<u8>)> {
    let mut v = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let md = fs::symlink_metadata(e.path()).unwrap();
        let name = e.file_name().into_string().unwrap();
        let bytes = if md.file_type().is_file() {
            fs::read(e.path()).unwrap()
        } else if md.file_type().is_dir() {
            listing(&e.path())
                .into_iter()
                .flat_map(|(n, m, u, b)| {
                    let mut x = n.into_bytes();
                    x.extend(m.to_be_bytes());
                    x.extend(u.to_be_bytes());
                    x.extend(b);
                    x
                })
                .collect()
        } else {
            vec![]
        };
        v.push((name, md.mode(), md.uid(), bytes));
    }
    v.sort();
    v
}

/// A control machine after one rotation: key files, journal, auth DB, audit log, locks and
/// a config file all exist.
fn cell() -> tempfile::TempDir {
    let d = confdir(CELL);
    fs::write(d.path().join("afskeys.toml"), "token_lifetime = \"25h\"\n").unwrap();
    ok(run(d.path(), &["rotate"], b""));
    ok(run(d.path(), &["servers"], b""));
    d
}

#[derive(Debug, Clone, Copy)]
enum Bad {
    Fifo,
    Dir,
    Symlink,
    Owner,
    GroupWritable,
    WorldWritable,
}

impl Bad {
    const ALL: [Bad; 6] = [
        Bad::Fifo,
        Bad::Dir,
        Bad::Symlink,
        Bad::Owner,
        Bad::GroupWritable,
        Bad::WorldWritable,
    ];

    /// Make `path` bad this way; `elsewhere` holds a symlink's target.
    fn apply(self, path: &Path, elsewhere: &Path) {
        let keep = fs::read(path).unwrap_or_default();
        match self {
            Bad::Fifo | Bad::Dir | Bad::Symlink => {
                let _ = fs::remove_file(path);
            }
            _ => {
                if !path.exists() {
                    fs::write(path, b"").unwrap();
                    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).unwrap();
                }
            }
        }
        match self {
            Bad::Fifo => {
                let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
                // SAFETY: a valid NUL-terminated path.
                assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
            }
            Bad::Dir => fs::create_dir(path).unwrap(),
            Bad::Symlink => {
                let target = elsewhere.join("target");
                fs::write(&target, keep).unwrap();
                std::os::unix::fs::symlink(&target, path).unwrap();
            }
            Bad::Owner => std::os::unix::fs::chown(path, Some(NOBODY), None).unwrap(),
            Bad::GroupWritable => {
                fs::set_permissions(path, fs::Permissions::from_mode(0o620)).unwrap()
            }
            Bad::WorldWritable => {
                fs::set_permissions(path, fs::Permissions::from_mode(0o666)).unwrap()
            }
        }
    }

    /// What the message says.
    fn problem(self) -> &'static str {
        match self {
            Bad::Fifo | Bad::Dir => "is not a regular file",
            Bad::Symlink => "is a symbolic link",
            Bad::Owner => "is owned by uid 65534, not root or you",
            Bad::GroupWritable => "has mode 0620: other users could change it",
            Bad::WorldWritable => "has mode 0666: other users could change it",
        }
    }
}

/// The files a rotation reads keys or decisions from, or writes secrets into.
const FILES: &[&str] = &[
    "KeyFile",
    "KeyFileExt",
    "afskeys-state.json",
    "afskeys-authdb.json",
    "afskeys.toml",
    "afskeys-audit.log",
    ".afskeys.lock",
    "afskeys-state.json.lock",
    "afskeys-state.json.rotate.lock",
];

fn running_as_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

#[test]
fn every_trusted_file_made_hostile_is_refused_before_anything_is_written() {
    for file in FILES {
        for bad in Bad::ALL {
            if matches!(bad, Bad::Owner) && !running_as_root() {
                continue;
            }
            let d = cell();
            let elsewhere = tempfile::tempdir().unwrap();
            let path = d.path().join(file);
            bad.apply(&path, elsewhere.path());
            let before = listing(d.path());
            let (o, took) = bounded(d.path(), &["rotate"], Stdio::null());
            let err = stderr(&o);
            assert_eq!(o.status.code(), Some(1), "{file} {bad:?}: {err}");
            assert!(
                err.contains(&format!("{}: {}", path.display(), bad.problem())),
                "{file} {bad:?}: {err}"
            );
            assert!(took < LIMIT, "{file} {bad:?} took {took:?}");
            assert_eq!(listing(d.path()), before, "{file} {bad:?} changed the dir");
        }
    }
}

#[test]
fn read_only_commands_never_block_on_special_files() {
    for file in [
        "KeyFile",
        "KeyFileExt",
        "afskeys-state.json",
        "afskeys-authdb.json",
        "afskeys.toml",
        "afskeys-servers.json",
    ] {
        for bad in [Bad::Fifo, Bad::Symlink, Bad::WorldWritable] {
            let d = cell();
            let elsewhere = tempfile::tempdir().unwrap();
            let path = d.path().join(file);
            bad.apply(&path, elsewhere.path());
            let before = listing(d.path());
            let cmds: &[&[&str]] = match file {
                "afskeys-servers.json" => &[&["servers"]],
                "KeyFile" | "KeyFileExt" => &[&["check"], &["status"], &["list"]],
                _ => &[&["check"], &["status"]],
            };
            for cmd in cmds {
                let (o, took) = bounded(d.path(), cmd, Stdio::null());
                let out = stdout(&o) + &stderr(&o);
                // `status` shows an unreadable server in its table; the others fail.
                if cmd[0] != "status" {
                    assert_ne!(o.status.code(), Some(0), "{file} {bad:?} {cmd:?}: {out}");
                }
                assert!(
                    out.contains(&format!("{}: {}", path.display(), bad.problem())),
                    "{file} {bad:?} {cmd:?}: {out}"
                );
                assert!(took < LIMIT);
                assert_eq!(listing(d.path()), before, "{file} {bad:?} {cmd:?}");
            }
        }
    }
}

#[test]
fn a_huge_sparse_key_file_fails_fast() {
    let d = cell();
    let p = d.path().join("KeyFile");
    fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .unwrap()
        .set_len(4 << 30)
        .unwrap();
    let (o, took) = bounded(d.path(), &["list"], Stdio::null());
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains(&format!(
            "{}: is 4294967296 bytes, more than a KeyFile can be",
            p.display()
        )),
        "{}",
        stderr(&o)
    );
    assert!(took < Duration::from_secs(5), "{took:?}");
}

#[test]
fn a_group_writable_conf_dir_gets_no_journal_and_no_audit_line() {
    let d = confdir(CELL);
    fs::set_permissions(d.path(), fs::Permissions::from_mode(0o770)).unwrap();
    let before = listing(d.path());
    let (o, _) = bounded(d.path(), &["rotate"], Stdio::null());
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("conf dir has mode 0770"),
        "{}",
        stderr(&o)
    );
    assert_eq!(listing(d.path()), before);
    assert!(!d.path().join("afskeys-state.json").exists());
    assert!(!d.path().join("afskeys-audit.log").exists());
}

#[test]
fn cellservdb_that_cannot_be_bumped_is_found_before_any_key_is_written() {
    for bad in [Bad::Dir, Bad::Symlink] {
        let d = confdir(CELL);
        let elsewhere = tempfile::tempdir().unwrap();
        let p = d.path().join("CellServDB");
        bad.apply(&p, elsewhere.path());
        let before = listing(d.path());
        for args in [&["add", "--kvno", "1", "--random"][..], &["rotate"][..]] {
            let (o, _) = bounded(d.path(), args, Stdio::null());
            assert_eq!(o.status.code(), Some(1), "{bad:?} {args:?}");
            assert!(
                stderr(&o).contains(&format!("{}: is not a regular file (mode", p.display())),
                "{bad:?} {args:?}: {}",
                stderr(&o)
            );
            assert_eq!(listing(d.path()), before, "{bad:?} {args:?}");
        }
    }
}

/// Bad input: (args, stdin, exit code, message).
const INPUTS: &[(&[&str], &[u8], i32, &str)] = &[
    (
        &["rotate", "--password-stdin"],
        b"\n",
        1,
        "the password on stdin is empty",
    ),
    (
        &["add", "--kvno", "7", "--password-stdin"],
        b"\r\n",
        3,
        "the password holds a line break (CR or LF)",
    ),
    (
        &["rotate", "--kvno", "2147483647"],
        b"",
        3,
        "kvno 2147483647 is outside 1-65534",
    ),
    (
        &["string-to-key", "--cell", "evil\u{1b}[2Jcell"],
        b"pw\n",
        1,
        "is not a cell name",
    ),
    (
        &["rotate", "--kvno", "65535"],
        b"",
        3,
        "kvno 65535 is outside 1-65534",
    ),
    // --enctype lists: an enctype afskeys cannot name (its key length is unknown), single
    // DES in KeyFileExt, duplicates
    (
        &[
            "add",
            "--kvno",
            "7",
            "--type",
            "rxkad_krb5",
            "--enctype",
            "4242",
            "--key-hex-stdin",
        ],
        b"00112233445566778899aabbccddeeff\n",
        1,
        "--enctype 4242: afskeys knows no such enctype",
    ),
    (
        &[
            "add",
            "--kvno",
            "7",
            "--type",
            "rxkad_krb5",
            "--enctype",
            "0",
            "--random",
        ],
        b"",
        1,
        "--enctype 0: afskeys knows no such enctype",
    ),
    (
        &[
            "add",
            "--kvno",
            "7",
            "--type",
            "rxgk",
            "--enctype",
            "des-cbc-md5",
            "--random",
        ],
        b"",
        1,
        "--enctype 3 (des-cbc-md5) is single DES",
    ),
    (
        &[
            "add",
            "--kvno",
            "7",
            "--type",
            "rxkad_krb5",
            "--enctype",
            "18,17,aes256",
            "--random",
        ],
        b"",
        1,
        "--enctype lists 18 (aes256-cts-hmac-sha1-96) twice",
    ),
    // --reason reaches the audit log: one line of plain text, not empty, bounded
    (
        &["remove", "--kvno", "1", "--emergency", "--reason", ""],
        b"",
        2,
        "--reason is empty",
    ),
    (
        &[
            "remove",
            "--kvno",
            "1",
            "--emergency",
            "--reason",
            "ok\n2026-01-01 user=root uid=0 add: forged",
        ],
        b"",
        2,
        "--reason contains the character U+000A",
    ),
    (
        &[
            "remove",
            "--kvno",
            "1",
            "--emergency",
            "--reason",
            "lost \u{202e}yek",
        ],
        b"",
        2,
        "--reason contains the character U+202E",
    ),
];

#[test]
fn an_overlong_reason_is_refused_and_changes_nothing() {
    let d = cell();
    let before = listing(d.path());
    let long = "x".repeat(100_000);
    let o = run(
        d.path(),
        &["remove", "--kvno", "1", "--emergency", "--reason", &long],
        b"",
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("--reason is 100000 bytes; at most 1024"),
        "{}",
        stderr(&o)
    );
    assert_eq!(listing(d.path()), before);
}

#[test]
fn bad_input_is_refused_and_changes_nothing() {
    for (args, input, code, message) in INPUTS {
        let d = cell();
        let before = listing(d.path());
        let o = run(d.path(), args, input);
        assert_eq!(o.status.code(), Some(*code), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(message), "{args:?}: {}", stderr(&o));
        assert_eq!(listing(d.path()), before, "{args:?}");
    }
    // a password line longer than the cap, and stdin that never ends
    let d = cell();
    let before = listing(d.path());
    let long = tempfile::NamedTempFile::new().unwrap();
    long.as_file().write_all(&[b'a'; 5000]).unwrap();
    for stdin in [
        Stdio::from(fs::File::open(long.path()).unwrap()),
        Stdio::from(fs::File::open("/dev/zero").unwrap()),
    ] {
        let (o, took) = bounded(d.path(), &["rotate", "--password-stdin"], stdin);
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        assert!(
            stderr(&o).contains("the password on stdin is longer than 1024 bytes"),
            "{}",
            stderr(&o)
        );
        assert!(took < Duration::from_secs(5));
        assert_eq!(listing(d.path()), before);
    }
}

#[test]
fn a_missing_auth_db_is_an_error_once_the_cell_has_an_entry() {
    let d = cell();
    let kvno = "1";
    // a typo in [authdb] path: the journal knows the cell has an afs entry
    fs::write(
        d.path().join("afskeys.toml"),
        "token_lifetime = \"25h\"\n[authdb]\npath = \"afskeys-authdb.jsno\"\n",
    )
    .unwrap();
    let before = listing(d.path());
    for args in [
        &["remove", "--kvno", kvno][..],
        &["prune"][..],
        &["rotate"][..],
        &["add", "--kvno", "9", "--random"][..],
    ] {
        let (o, _) = bounded(d.path(), args, Stdio::null());
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("has no afs entry, but the journal says the cell has one"),
            "{args:?}: {}",
            stderr(&o)
        );
        assert_eq!(listing(d.path()), before, "{args:?}");
    }
}

/// Run afskeys with the clock moved by `offset` (libfaketime).
fn at(dir: &Path, offset: &str, args: &[&str]) -> Output {
    let mut c = std::process::Command::new("faketime");
    c.args(["-f", offset, env!("CARGO_BIN_EXE_afskeys"), "--confdir"])
        .arg(dir)
        .args(args);
    pipe(c, b"")
}

#[test]
fn a_clock_that_is_behind_dates_nothing_into_the_past() {
    if !have(&["faketime"]) {
        return;
    }
    let d = cell();
    // check warns; rotate is refused before anything changes
    let o = at(d.path(), "-365d", &["check"]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(
        stdout(&o).contains("is behind a time afskeys recorded"),
        "{}",
        stdout(&o)
    );
    let before = listing(d.path());
    let o = at(d.path(), "-365d", &["rotate"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("would shorten the old key's grace"),
        "{}",
        stderr(&o)
    );
    assert_eq!(listing(d.path()), before);
    // backup trimming keeps the backup just made, whatever the clock says
    for kvno in 10..22 {
        let kvno = kvno.to_string();
        let args = ["add", "--kvno", &kvno, "--type", "rxkad_krb5", "--random"];
        ok(run(d.path(), &args, b""));
    }
    let last = fs::read(d.path().join("KeyFileExt")).unwrap();
    let args = ["add", "--kvno", "30", "--type", "rxkad_krb5", "--random"];
    ok(at(d.path(), "-365d", &args));
    let bdir = d.path().join(".afskeys-backup");
    let mut names: Vec<String> = fs::read_dir(&bdir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("KeyFileExt."))
        .collect();
    names.sort();
    assert_eq!(fs::read(bdir.join(names.last().unwrap())).unwrap(), last);
}

#[test]
fn resume_re_establishes_what_the_journal_claims() {
    let d = cell();
    // A journal at step "activated" whose keys are on no machine and not in the auth DB.
    let now = "2026-01-01T00:00:00Z";
    let journal = format!(
        r#"{{"version":1,"rotation":{{"started":"{now}","updated":"{now}","step":"activated",
        "kvno":2,"type":"rxkad_krb5","keys":[{{"enctype":18,"key":"{}"}},
        {{"enctype":17,"key":"{}"}}],"passphrase":null,"old_kvno":1,"confirmed":[],
        "missing":[],"activated":"{now}"}},"retired":[],"last_rotation":null}}"#,
        "11".repeat(32),
        "22".repeat(16)
    );
    let p = d.path().join("afskeys-state.json");
    fs::write(&p, journal).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
    ok(run(d.path(), &["rotate", "--resume"], b""));
    let s: serde_json::Value =
        serde_json::from_str(&ok(run(d.path(), &["--json", "status"], b""))).unwrap();
    assert_eq!(s["afs_entry"]["kvno"], 2, "{s}");
    let listed = ok(run(d.path(), &["list"], b""));
    assert!(listed.lines().any(|l| l.contains(" 2 ")), "{listed}");
    let log = fs::read_to_string(d.path().join("afskeys-audit.log")).unwrap();
    assert!(
        log.contains("the journal says step activated, but the control machine lacks"),
        "{log}"
    );
}

#[test]
fn leftover_temp_files_of_state_files_are_cleaned() {
    let d = cell();
    let old = std::time::SystemTime::now() - Duration::from_secs(3600);
    let names = [
        ".afskeys-state.json.abc123.tmp",
        ".afskeys-authdb.json.abc123.tmp",
        ".afskeys-servers.json.abc123.tmp",
    ];
    for n in names {
        let p = d.path().join(n);
        fs::write(&p, b"secret").unwrap();
        fs::File::options()
            .write(true)
            .open(&p)
            .unwrap()
            .set_modified(old)
            .unwrap();
    }
    ok(run(d.path(), &["rotate"], b""));
    ok(run(d.path(), &["servers"], b""));
    for n in names {
        assert!(!d.path().join(n).exists(), "{n} left behind");
    }
}

/// A ThisCell holding a path or principal separator is refused, naming the file.
#[test]
fn a_this_cell_that_holds_no_cell_name_is_refused() {
    for bad in ["a/b", "a@B", "../etc"] {
        let d = confdir(CELL);
        fs::write(d.path().join("ThisCell"), format!("{bad}\n")).unwrap();
        let (o, _) = bounded(d.path(), &["status"], Stdio::null());
        assert_eq!(o.status.code(), Some(1), "{bad}: {}", stderr(&o));
        assert!(
            stderr(&o).contains(&format!(
                "{}: does not hold a cell name",
                d.path().join("ThisCell").display()
            )),
            "{bad}: {}",
            stderr(&o)
        );
    }
}

#[test]
fn hostile_config_values_are_refused() {
    for (toml, message) in [
        (
            "[[servers]]\nname = \"fs1\"\nhost = \"-oProxyCommand=touch /tmp/x\"\n",
            "its host must be one plain word",
        ),
        (
            "[[servers]]\nname = \"fs1\\nforged\"\nconfdir = \"/nonexistent\"\n",
            "its name must be one plain word",
        ),
        ("cell = \"bad cell\"\n", "is not a cell name"),
        (
            "[[servers]]\nname = \"fs1\"\nhost = \"$(id)\"\n",
            "its host \"$(id)\" holds characters a shell or ssh would interpret",
        ),
        (
            "[[servers]]\nname = \"fs1\"\nhost = \"fs1;id\"\n",
            "its host \"fs1;id\" holds characters a shell or ssh would interpret",
        ),
        (
            "[[servers]]\nname = \"fs1\"\nhost = \"fs1\"\nuser = \"${IFS}root\"\n",
            "its user \"${IFS}root\" holds characters a shell or ssh would interpret",
        ),
        (
            "[[servers]]\nname = \"control\"\nconfdir = \"/nonexistent\"\n",
            "server \"control\": afskeys calls the control machine that",
        ),
        (
            "[[servers]]\nname = \"LOCALHOST\"\nconfdir = \"/nonexistent\"\n",
            "server \"LOCALHOST\": afskeys calls the control machine that",
        ),
        (
            "[inventory]\nalso = [\"db9;id\"]\n",
            "inventory: host \"db9;id\" must be one plain word",
        ),
    ] {
        let d = confdir(CELL);
        fs::write(d.path().join("afskeys.toml"), toml).unwrap();
        let before = listing(d.path());
        let (o, _) = bounded(d.path(), &["status"], Stdio::null());
        assert_ne!(o.status.code(), Some(0), "{toml}");
        assert!(stderr(&o).contains(message), "{toml}: {}", stderr(&o));
        assert_eq!(listing(d.path()), before);
    }
}

/// Kills inside writes (`test-hooks` builds): between the key files' rename and the
/// CellServDB bump, and inside the journal's and the auth DB's writes. After each, every file
/// parses, `rotate --resume` (when a rotation is in progress) finishes, the afs entry's keys
/// are on the control machine, and CellServDB has been bumped.
#[cfg(feature = "test-hooks")]
#[test]
fn kills_inside_writes_are_finished_by_resume() {
    for point in [
        "before-bump",
        "write:afskeys-state.json",
        "write:afskeys-authdb.json",
    ] {
        let d = cell();
        let csdb = d.path().join("CellServDB");
        let old = std::time::SystemTime::now() - Duration::from_secs(3600);
        fs::File::options()
            .write(true)
            .open(&csdb)
            .unwrap()
            .set_modified(old)
            .unwrap();
        let mut c = afskeys();
        c.arg("--confdir").arg(d.path()).arg("rotate");
        c.env("AFSKEYS_CRASH_AT", point);
        let o = pipe(c, b"");
        assert_eq!(o.status.code(), None, "{point}: not killed: {}", stderr(&o));
        let s: serde_json::Value =
            serde_json::from_str(&ok(run(d.path(), &["--json", "status"], b""))).unwrap();
        if !s["rotation"].is_null() {
            ok(run(d.path(), &["rotate", "--resume"], b""));
        }
        let s: serde_json::Value =
            serde_json::from_str(&ok(run(d.path(), &["--json", "status"], b""))).unwrap();
        assert!(s["rotation"].is_null(), "{point}: {s}");
        let o = run(d.path(), &["check"], b"");
        assert!(
            stdout(&o).starts_with("AFSKEYS OK"),
            "{point}: {}",
            stdout(&o)
        );
        let mtime = fs::metadata(&csdb).unwrap().modified().unwrap();
        if point != "write:afskeys-state.json" {
            assert!(mtime > old, "{point}: CellServDB was never bumped");
        }
        ok(run(d.path(), &["list"], b""));
    }
}

/// Every path a command will write is checked before it writes anything: a file auth DB
/// (`[authdb] path`, not there yet) in a directory others can write refuses `rotate` before
/// the key files or the journal change (before, both had changed when the auth DB write was
/// refused).
#[test]
fn an_auth_db_in_a_directory_others_can_write_refuses_before_any_change() {
    let d = confdir(CELL);
    let open = tempfile::tempdir().unwrap();
    fs::set_permissions(open.path(), fs::Permissions::from_mode(0o777)).unwrap();
    let db = open.path().join("authdb.json");
    fs::write(
        d.path().join("afskeys.toml"),
        format!(
            "token_lifetime = \"25h\"\n[authdb]\npath = \"{}\"\n",
            db.display()
        ),
    )
    .unwrap();
    let before = listing(d.path());
    let (o, _) = bounded(d.path(), &["rotate"], Stdio::null());
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!(
            "{}: its directory {} has mode 0777",
            db.display(),
            open.path().display()
        )),
        "{}",
        stderr(&o)
    );
    assert_eq!(listing(d.path()), before, "the control machine changed");
    assert!(!db.exists());
}

/// A keytab export never goes into a directory others can write, unless it is sticky; there
/// it is created exclusively (mode 0600), and never over a name already taken.
#[test]
fn a_keytab_export_goes_only_where_others_cannot_replace_it() {
    let d = cell();
    let open = tempfile::tempdir().unwrap();
    fs::set_permissions(open.path(), fs::Permissions::from_mode(0o777)).unwrap();
    let kt = open.path().join("afs.keytab");
    let kt_arg = kt.display().to_string();
    let o = run(d.path(), &["keytab", "export", "--keytab", &kt_arg], b"");
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("has mode 0777: other users could replace the file"),
        "{}",
        stderr(&o)
    );
    assert!(!kt.exists());
    fs::set_permissions(open.path(), fs::Permissions::from_mode(0o1777)).unwrap();
    ok(run(
        d.path(),
        &["keytab", "export", "--keytab", &kt_arg],
        b"",
    ));
    assert_eq!(
        fs::metadata(&kt).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let o = run(d.path(), &["keytab", "export", "--keytab", &kt_arg], b"");
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("already exists"), "{}", stderr(&o));
}

/// A kvno's range depends on its type and on what must follow it: `add` refuses an afs key
/// (rxkad_krb5 here) at a kvno no rotation could go above, and accepts one below; an rxgk key
/// at a high kvno does not push the next rxkad_krb5 rotation's kvno above it.
#[test]
fn kvnos_leave_room_for_the_next_rotation_and_rxgk_numbers_apart() {
    let d = cell(); // kvno 1, rotated
    let before = listing(d.path());
    let o = run(
        d.path(),
        &["add", "--kvno", "65534", "--type", "rxkad_krb5", "--random"],
        b"",
    );
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("kvno 65534 would leave no kvno for the next rotation"),
        "{}",
        stderr(&o)
    );
    assert_eq!(listing(d.path()), before);
    ok(run(
        d.path(),
        &["add", "--kvno", "60000", "--type", "rxgk", "--random"],
        b"",
    ));
    let out = ok(run(d.path(), &["rotate"], b""));
    assert!(out.starts_with("kvno 2 is on every server"), "{out}");
}

/// When ssh never runs, or dies before it writes its log, the operator gets ssh's situation,
/// not "No such file or directory (os error 2)" (the openssh transport's missing log or
/// control socket): with no ssh in PATH, and with an ssh that prints to stderr and exits.
#[test]
fn an_ssh_that_never_ran_or_died_early_is_said_as_such() {
    let d = confdir(CELL);
    fs::write(
        d.path().join("afskeys.toml"),
        "[ssh]\ntransport = \"openssh\"\ntimeout = \"5s\"\n\
         [[servers]]\nname = \"fs1\"\nhost = \"127.0.0.1\"\nconfdir = \"/x\"\n",
    )
    .unwrap();
    let bin = tempfile::tempdir().unwrap();
    let fake = bin.path().join("ssh");
    fs::write(&fake, "#!/bin/sh\necho 'ssh: early death' >&2\nexit 255\n").unwrap();
    fs::set_permissions(&fake, fs::Permissions::from_mode(0o755)).unwrap();
    let with_fake = format!("{}:/usr/bin:/bin", bin.path().display());
    for (path, want) in [
        ("/nonexistent", "ssh (OpenSSH's client) is not in PATH"),
        (with_fake.as_str(), "ssh exited before it said why"),
    ] {
        let mut c = afskeys();
        c.env("PATH", path)
            .arg("--confdir")
            .arg(d.path())
            .arg("verify");
        let o = pipe(c, b"");
        let out = stdout(&o);
        assert_eq!(o.status.code(), Some(1), "{out}{}", stderr(&o));
        assert!(out.contains(want), "{path}: {out}");
        assert!(!out.contains("connect: No such file"), "{out}");
    }
}

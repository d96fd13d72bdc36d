//! Issue 11 over SSH, both transports (`ssh2` and `openssh`): a server's live KeyFile and
//! KeyFileExt pass the local store's rules (`store::rules`) — a regular file, not writable
//! by group or others (0644 is accepted, 0620 and 0666 refused), owned by root or the login
//! user, in a conf dir owned by them — and each refusal names the server and the file while
//! no server changes. And backups made with the clock behind are named after the newest one,
//! so trimming never removes the one just made.

mod common;
mod sshd;
use common::*;
use std::fs;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

const CELL: &str = "trust.example.com";
const NOBODY: u32 = 65534;

struct Fleet {
    _sshds: sshd::Sshds,
    control: tempfile::TempDir,
    dirs: Vec<tempfile::TempDir>,
}

impl Fleet {
    fn start(transport: &str) -> Option<Fleet> {
        let sshds = sshd::Sshds::start(2)?;
        let control = confdir(CELL);
        let dirs: Vec<tempfile::TempDir> = (0..2).map(|_| confdir(CELL)).collect();
        let paths: Vec<&Path> = dirs.iter().map(|d| d.path()).collect();
        let toml = sshds.cell_toml("token_lifetime = \"25h\"\n", "", transport, &paths);
        fs::write(control.path().join("afskeys.toml"), toml).unwrap();
        Some(Fleet {
            _sshds: sshds,
            control,
            dirs,
        })
    }

    fn dir(&self, i: usize) -> &Path {
        self.dirs[i].path()
    }

    /// Every server's files (names and bytes, the backup dir included).
    fn files(&self) -> Vec<Vec<(String, Vec<u8>)>> {
        self.dirs.iter().map(|d| tree(d.path())).collect()
    }
}

fn tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(".lock") {
            continue;
        }
        let md = fs::symlink_metadata(&p).unwrap();
        if md.is_dir() {
            v.extend(
                tree(&p)
                    .into_iter()
                    .map(|(n, b)| (format!("{name}/{n}"), b)),
            );
        } else if md.is_file() {
            v.push((name, fs::read(&p).unwrap_or_default()));
        } else {
            // a FIFO (never read: that would block)
            v.push((name, b"(not a regular file)".to_vec()));
        }
    }
    v.sort();
    v
}

fn chown(p: &Path, uid: u32) {
    std::os::unix::fs::lchown(p, Some(uid), None).unwrap();
}

/// (what is made hostile on fs1, how, the problem the message must give)
type Case = (&'static str, fn(&Path), &'static str);

const CASES: &[Case] = &[
    (
        "KeyFile",
        |p| fs::set_permissions(p, fs::Permissions::from_mode(0o666)).unwrap(),
        "has mode 0666: other users could change it",
    ),
    (
        "KeyFileExt",
        |p| fs::set_permissions(p, fs::Permissions::from_mode(0o620)).unwrap(),
        "has mode 0620: other users could change it",
    ),
    (
        "KeyFile",
        |p| chown(p, NOBODY),
        "is owned by uid 65534, not root or the login user (uid 0)",
    ),
    (
        "KeyFileExt",
        |p| chown(p, NOBODY),
        "is owned by uid 65534, not root or the login user (uid 0)",
    ),
    ("", |p| chown(p, NOBODY), "is owned by uid 65534, not root"),
];

fn hostile_server_files_are_refused(transport: &str) {
    let Some(f) = Fleet::start(transport) else {
        return;
    };
    ok(run(f.control.path(), &["rotate"], b""));
    for (i, (file, make, problem)) in CASES.iter().enumerate() {
        let target: PathBuf = f.dir(1).join(file);
        make(&target);
        let before = f.files();
        let kvno = (10 + i).to_string();
        let o = run(f.control.path(), &["add", "--kvno", &kvno, "--random"], b"");
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{file}: {err}");
        assert!(err.contains("fs1"), "{file}: {err}");
        assert!(err.contains("none of them was changed"), "{file}: {err}");
        let named = match *file {
            "" => format!("conf dir {}", f.dir(1).display()),
            _ => target.display().to_string(),
        };
        assert!(err.contains(&format!("{named} {problem}")), "{file}: {err}");
        assert_eq!(f.files(), before, "{transport} {file}: a server changed");
        // put it right again: the next push reaches both servers
        chown(&target, 0);
        fs::set_permissions(
            &target,
            fs::Permissions::from_mode(if file.is_empty() { 0o700 } else { 0o600 }),
        )
        .unwrap();
        ok(run(f.control.path(), &["push"], b""));
    }
    // 0644 is read, as on the control machine: the push goes ahead
    fs::set_permissions(f.dir(1).join("KeyFile"), fs::Permissions::from_mode(0o644)).unwrap();
    ok(run(
        f.control.path(),
        &["add", "--kvno", "30", "--random"],
        b"",
    ));
    assert_eq!(
        fs::read(f.dir(1).join("KeyFile")).unwrap(),
        fs::read(f.control.path().join("KeyFile")).unwrap()
    );
}

#[test]
fn hostile_server_files_are_refused_over_ssh2() {
    hostile_server_files_are_refused("ssh2");
}

#[test]
fn hostile_server_files_are_refused_over_openssh() {
    hostile_server_files_are_refused("openssh");
}

/// The backups of KeyFile on server `i`, oldest name first.
fn keyfile_backups(f: &Fleet, i: usize) -> Vec<(String, Vec<u8>)> {
    let b = f.dir(i).join(".afskeys-backup");
    let mut v: Vec<(String, Vec<u8>)> = fs::read_dir(&b)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.starts_with("KeyFile.") && !n.starts_with("KeyFileExt")
        })
        .map(|p| {
            let n = p.file_name().unwrap().to_string_lossy().into_owned();
            (n, fs::read(&p).unwrap())
        })
        .collect();
    v.sort();
    v
}

fn backups_made_with_the_clock_behind_survive_trimming(transport: &str) {
    let Some(f) = Fleet::start(transport) else {
        return;
    };
    // more than MAX_BACKUPS (10) backups of KeyFile on every server
    for k in 1..=8 {
        ok(run(
            f.control.path(),
            &["add", "--kvno", &k.to_string(), "--random"],
            b"",
        ));
    }
    for k in 1..=4 {
        ok(run(
            f.control.path(),
            &["remove", "--kvno", &k.to_string()],
            b"",
        ));
    }
    // (10 kept; ssh2 sends the last command's trim without waiting, so one more may remain)
    let n = keyfile_backups(&f, 0).len();
    assert!((10..=11).contains(&n), "{n} backups");
    let replaced = fs::read(f.dir(0).join("KeyFile")).unwrap();
    // the clock a year behind: the backup of `replaced` must still exist afterwards
    let mut c = std::process::Command::new("faketime");
    // the wall clock only: a monotonic clock a year back would cut the SSH timeouts
    c.env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
    c.args(["-f", "-365d", env!("CARGO_BIN_EXE_afskeys"), "--confdir"])
        .arg(f.control.path())
        .args(["add", "--kvno", "13", "--random"]);
    ok(pipe(c, b""));
    assert_ne!(fs::read(f.dir(0).join("KeyFile")).unwrap(), replaced);
    // one more change with the clock right: its tidying trims again (ssh2 trims what a
    // commit left on the connection's next use, so the last command's trim may be pending)
    ok(run(
        f.control.path(),
        &["add", "--kvno", "14", "--random"],
        b"",
    ));
    for i in 0..2 {
        let b = keyfile_backups(&f, i);
        assert!(b.len() <= 11, "{transport} fs{i}: {:?}", names(&b));
        assert!(
            b.iter().any(|(_, bytes)| bytes == &replaced),
            "{transport} fs{i}: the KeyFile replaced with the clock behind is in no backup: {:?}",
            names(&b)
        );
    }
}

fn names(b: &[(String, Vec<u8>)]) -> Vec<&str> {
    b.iter().map(|(n, _)| n.as_str()).collect()
}

#[test]
fn backups_made_with_the_clock_behind_survive_trimming_over_ssh2() {
    backups_made_with_the_clock_behind_survive_trimming("ssh2");
}

#[test]
fn backups_made_with_the_clock_behind_survive_trimming_over_openssh() {
    backups_made_with_the_clock_behind_survive_trimming("openssh");
}

/// A server's KeyFile replaced by a FIFO. There is no non-blocking open over SFTP: the
/// server's sftp-server would block opening it. So afskeys LSTATs each live file ahead of
/// its OPEN in the same exchange and refuses at once, naming the file, before the server
/// made anything (the OPENs of live files come before the stage dir's MKDIR); `verify`'s
/// read the same. Nothing changes on any server; the sftp-server left blocked on fs1 is
/// released here by opening the FIFO for writing.
fn a_fifo_key_file_on_a_server_is_refused_at_once(transport: &str) {
    let Some(f) = Fleet::start(transport) else {
        return;
    };
    ok(run(f.control.path(), &["rotate"], b""));
    let fifo = f.dir(1).join("KeyFile");
    fs::remove_file(&fifo).unwrap();
    let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let before = f.files();
    let release = || {
        // a writer that opens and closes: the blocked open on fs1 (if any) returns
        let _ = fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo);
    };
    for args in [&["add", "--kvno", "10", "--random"][..], &["verify"]] {
        let started = std::time::Instant::now();
        let o = run(f.control.path(), args, b"");
        let took = started.elapsed();
        release();
        let err = format!("{}{}", stdout(&o), stderr(&o));
        assert_ne!(o.status.code(), Some(0), "{args:?}: {err}");
        assert!(err.contains("fs1"), "{args:?}: {err}");
        assert!(
            err.contains(&format!("{} is not a regular file", fifo.display())),
            "{args:?}: {err}"
        );
        // well below the default 10 s [ssh] timeout: refused, not timed out
        assert!(
            took < std::time::Duration::from_secs(5),
            "{args:?} took {took:?}"
        );
        assert_eq!(f.files(), before, "{args:?}: a server changed: {err}");
    }
}

#[test]
fn a_fifo_key_file_on_a_server_is_refused_at_once_over_ssh2() {
    a_fifo_key_file_on_a_server_is_refused_at_once("ssh2");
}

#[test]
fn a_fifo_key_file_on_a_server_is_refused_at_once_over_openssh() {
    a_fifo_key_file_on_a_server_is_refused_at_once("openssh");
}

/// A server's key file that would be endless over SFTP: a symlink to /dev/zero (KeyFile),
/// then a 3 GB sparse file (KeyFileExt). `verify` is refused naming the server, the file and
/// the cap (`store::trust`'s, as for a local file), within seconds and in bounded memory (the
/// openssh transport read both to the end before: 1.9 GB and 1.3 GB resident).
fn endless_server_key_files_cost_a_bounded_read(transport: &str) {
    let Some(f) = Fleet::start(transport) else {
        return;
    };
    ok(run(f.control.path(), &["rotate"], b""));
    let kf = f.dir(1).join("KeyFile");
    let kx = f.dir(1).join("KeyFileExt");
    fs::remove_file(&kf).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &kf).unwrap();
    let saved = fs::read(&kx).unwrap();
    for what in ["KeyFile", "KeyFileExt"] {
        let path = if what == "KeyFile" { &kf } else { &kx };
        if what == "KeyFileExt" {
            fs::remove_file(&kf).unwrap();
            fs::write(&kf, b"\0\0\0\0").unwrap();
            let sparse = fs::OpenOptions::new().write(true).open(&kx).unwrap();
            sparse.set_len(3 << 30).unwrap();
        }
        let rss = tempfile::NamedTempFile::new().unwrap();
        let started = std::time::Instant::now();
        let mut c = std::process::Command::new("/usr/bin/time");
        c.arg("-f")
            .arg("%M")
            .arg("-o")
            .arg(rss.path())
            .arg(env!("CARGO_BIN_EXE_afskeys"))
            .arg("--confdir")
            .arg(f.control.path())
            .arg("verify");
        let o = pipe(c, b"");
        let took = started.elapsed();
        let kib: u64 = fs::read_to_string(rss.path())
            .unwrap()
            .lines()
            .last()
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let err = format!("{}{}", stdout(&o), stderr(&o));
        eprintln!(
            "{transport} {what}: exit {:?}, {took:.2?}, peak {kib} KiB",
            o.status.code()
        );
        assert_ne!(o.status.code(), Some(0), "{err}");
        assert!(err.contains("fs1"), "{err}");
        assert!(err.contains(&format!("more than a {what} can be")), "{err}");
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(took < std::time::Duration::from_secs(10), "{took:?}");
        assert!(kib < 100 * 1024, "peak {kib} KiB");
    }
    fs::write(&kx, saved).unwrap();
}

#[test]
fn endless_server_key_files_cost_a_bounded_read_over_ssh2() {
    endless_server_key_files_cost_a_bounded_read("ssh2");
}

#[test]
fn endless_server_key_files_cost_a_bounded_read_over_openssh() {
    endless_server_key_files_cost_a_bounded_read("openssh");
}

/// A symlink named like an abandoned stage dir, pointing at another conf dir: tidying after a
/// push removes the real stale stage dir beside it (proving the tidy ran) and never follows
/// the link (the other conf dir's KeyFile and KeyFileExt stay; before, both were deleted).
fn tidying_never_follows_a_symlinked_stage_dir(transport: &str) {
    let Some(f) = Fleet::start(transport) else {
        return;
    };
    ok(run(f.control.path(), &["rotate"], b""));
    let victim = confdir(CELL);
    fs::write(victim.path().join("KeyFile"), b"victim-kf").unwrap();
    fs::write(victim.path().join("KeyFileExt"), b"victim-kx").unwrap();
    let link = f.dir(1).join(".afskeys-stage.0123456789abcdef");
    std::os::unix::fs::symlink(victim.path(), &link).unwrap();
    let real = f.dir(1).join(".afskeys-stage.fedcba9876543210");
    fs::create_dir(&real).unwrap();
    fs::set_permissions(&real, fs::Permissions::from_mode(0o700)).unwrap();
    fs::write(real.join("KeyFile"), b"x").unwrap();
    for p in [&link, &real] {
        let o = std::process::Command::new("touch")
            .args(["-h", "-d", "3 days ago"])
            .arg(p)
            .output()
            .unwrap();
        assert!(o.status.success());
    }
    ok(run(
        f.control.path(),
        &["add", "--kvno", "11", "--random"],
        b"",
    ));
    // The tidying rides after the commit; it is done when the command ends (settle).
    assert!(
        !real.exists(),
        "the real stale stage dir was not removed: the tidy did not run"
    );
    assert_eq!(
        fs::read(victim.path().join("KeyFile")).unwrap(),
        b"victim-kf"
    );
    assert_eq!(
        fs::read(victim.path().join("KeyFileExt")).unwrap(),
        b"victim-kx"
    );
    assert!(
        fs::symlink_metadata(&link).is_ok(),
        "the link itself is left"
    );
}

#[test]
fn tidying_never_follows_a_symlinked_stage_dir_over_ssh2() {
    tidying_never_follows_a_symlinked_stage_dir("ssh2");
}

#[test]
fn tidying_never_follows_a_symlinked_stage_dir_over_openssh() {
    tidying_never_follows_a_symlinked_stage_dir("openssh");
}

/// Directory listings stop past `MAX_NAMES` (10,000) names, over both transports: a
/// server's conf dir holding 10,050 other names and a stage dir abandoned three days ago.
/// The push still goes through, and the tidy that lists the conf dir gives up past the cap
/// instead of reading on, so the abandoned stage dir stays; with the extra names gone, the
/// next push's tidy removes it. (A real directory is finite; the cap is what stops a server
/// that keeps sending names, and it is the same count.)
fn a_listing_stops_past_the_cap(transport: &str) {
    let Some(f) = Fleet::start(transport) else {
        return;
    };
    ok(run(f.control.path(), &["rotate"], b""));
    let stale = f.dir(1).join(".afskeys-stage.0123456789abcdef");
    fs::create_dir(&stale).unwrap();
    fs::set_permissions(&stale, fs::Permissions::from_mode(0o700)).unwrap();
    let o = std::process::Command::new("touch")
        .args(["-d", "3 days ago"])
        .arg(&stale)
        .output()
        .unwrap();
    assert!(o.status.success());
    for i in 0..10_050 {
        fs::write(f.dir(1).join(format!("crowd.{i:05}")), b"").unwrap();
    }
    let t = std::time::Instant::now();
    ok(run(
        f.control.path(),
        &["add", "--kvno", "12", "--random"],
        b"",
    ));
    eprintln!(
        "{transport}: push past a 10,050-name conf dir: {:.2} s",
        t.elapsed().as_secs_f64()
    );
    assert!(
        stale.exists(),
        "the tidy read the whole 10,050-name listing and removed the stale stage dir"
    );
    for i in 0..10_050 {
        fs::remove_file(f.dir(1).join(format!("crowd.{i:05}"))).unwrap();
    }
    ok(run(
        f.control.path(),
        &["add", "--kvno", "13", "--random"],
        b"",
    ));
    assert!(!stale.exists(), "with the names gone, the tidy did not run");
}

#[test]
fn a_listing_stops_past_the_cap_over_ssh2() {
    a_listing_stops_past_the_cap("ssh2");
}

#[test]
fn a_listing_stops_past_the_cap_over_openssh() {
    a_listing_stops_past_the_cap("openssh");
}

//! The latency bench (ignored; `bin/bench-fleet --rtt` runs it): real sshds on loopback, each
//! behind a delaying TCP proxy (`sshd::proxy`) that adds half the round trip each way, and a
//! cell whose `[[servers]]` reach them through it. For every round trip asked
//! (`AFSKEYS_BENCH_RTT_MS`, default "0 50"; 0 means no proxy) and every N
//! (`AFSKEYS_BENCH_N`, default "1 8 64") it prints:
//! - the floor: N `SshServer`s of this library at once, each connect, handshake, auth, SFTP
//!   start and one stat (median of 3);
//! - `verify`, `push`, `add --type rxkad_krb5 --random` (its automatic push) and `rotate`,
//!   run by the release binary (median wall time of 3, from spawn to exit), each with its
//!   ratio to the floor and its SFTP round trips per server (the library's counter, from one
//!   more run of the same command in-process);
//! - the binary's peak RSS over those runs (`/usr/bin/time -f %M`).
//!
//! Never a timing assertion: the figures are printed, the goals are judged in the text.

mod common;
mod sshd;

use afskeys::cli::args::Cli;
use afskeys::fleet::ssh::{sftp_round_trips, SshServer, SshTarget};
use afskeys::fleet::Server;
use clap::Parser;
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The sshds and, per round trip, the ports the cell's servers are reached on.
struct Bench {
    sshds: sshd::Sshds,
}

impl Bench {
    /// Server i's port for this round trip: sshd i itself, or a proxy in front of it (whose
    /// `[127.0.0.1]:port` known_hosts entry names sshd i's host key).
    fn ports(&self, n: usize, rtt: Duration) -> Vec<u16> {
        let mut known = fs::read_to_string(&self.sshds.known_hosts).unwrap();
        let ports = (0..n)
            .map(|i| {
                let s = &self.sshds.sshds[i];
                if rtt.is_zero() {
                    return s.port;
                }
                let p = sshd::proxy::DelayProxy::start(s.port, rtt / 2).port;
                let line = s.known_hosts_line();
                let key = line.split_once(' ').unwrap().1;
                known.push_str(&format!("[127.0.0.1]:{p} {key}\n"));
                p
            })
            .collect();
        fs::write(&self.sshds.known_hosts, known).unwrap();
        ports
    }
}

/// A cell of N servers: the control conf dir (with `afskeys.toml`) and each server's.
struct Fleet {
    control: tempfile::TempDir,
    _dirs: Vec<tempfile::TempDir>,
    targets: Vec<SshTarget>,
}

fn fleet(b: &Bench, ports: &[u16]) -> Fleet {
    let n = ports.len();
    let control = common::confdir("bench.example.com");
    let dirs: Vec<tempfile::TempDir> = (0..n)
        .map(|_| common::confdir("bench.example.com"))
        .collect();
    let mut toml = format!(
        "[ssh]\nidentity = \"{}\"\nknown_hosts = \"{}\"\nparallel = {}\ntimeout = \"30s\"\n",
        b.sshds.identity.display(),
        b.sshds.known_hosts.display(),
        n.max(1)
    );
    let mut targets = Vec::new();
    for (i, d) in dirs.iter().enumerate() {
        toml.push_str(&format!(
            "[[servers]]\nname = \"fs{i}\"\nhost = \"127.0.0.1\"\nport = {}\nuser = \"{}\"\nconfdir = \"{}\"\n",
            ports[i],
            sshd::user(),
            d.path().display()
        ));
        targets.push(SshTarget {
            name: format!("fs{i}"),
            host: "127.0.0.1".into(),
            port: ports[i],
            user: sshd::user(),
            confdir: d.path().to_path_buf(),
            identity: Some(b.sshds.identity.clone()),
            known_hosts: Some(b.sshds.known_hosts.clone()),
            timeout: Duration::from_secs(30),
        });
    }
    fs::write(control.path().join("afskeys.toml"), toml).unwrap();
    Fleet {
        control,
        _dirs: dirs,
        targets,
    }
}

/// The floor: every server at once, connect + handshake + auth + SFTP + one stat.
fn floor(f: &Fleet) -> Duration {
    let t = Instant::now();
    std::thread::scope(|s| {
        for target in &f.targets {
            s.spawn(move || {
                let server = SshServer::new(target.clone());
                assert!(server.keyfile_mtime().is_some(), "floor: {}", target.name);
            });
        }
    });
    t.elapsed()
}

/// The release binary on the control conf dir: wall time and peak RSS (KiB), the latter
/// from `/usr/bin/time` (a child spawned straight from this process would report this
/// process's RSS as its own peak: Linux keeps the parent's high-water mark across
/// vfork + exec).
fn timed(dir: &Path, args: &[&str]) -> (Duration, i64) {
    let rss_file = tempfile::NamedTempFile::new().unwrap();
    let t = Instant::now();
    let out = Command::new("/usr/bin/time")
        .env("AFSKEYS_NO_VLDB", "1")
        .env("AFSKEYS_SKIP_RUNNING_PROOF", "1")
        .arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(rss_file.path())
        .arg(env!("CARGO_BIN_EXE_afskeys"))
        .arg("--confdir")
        .arg(dir)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let wall = t.elapsed();
    assert!(
        out.status.success(),
        "afskeys {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rss = fs::read_to_string(rss_file.path()).unwrap();
    let rss = rss
        .lines()
        .last()
        .unwrap_or("0")
        .trim()
        .parse()
        .unwrap_or(0);
    (wall, rss)
}

/// The round-trip counter is the process's: tests that read it run one at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The same command in this process: SFTP round trips per server.
fn round_trips(dir: &Path, args: &[&str], n: usize) -> f64 {
    // No VLDB here to ask for the cell's file servers.
    let mut argv = vec![
        "afskeys",
        "--no-vldb",
        "--skip-running-proof",
        "--confdir",
        dir.to_str().unwrap(),
    ];
    argv.extend_from_slice(args);
    let cli = Cli::try_parse_from(argv).unwrap();
    let before = sftp_round_trips();
    if afskeys::cli::run(&cli).is_err() {
        panic!("in-process afskeys {args:?} failed");
    }
    (sftp_round_trips() - before) as f64 / n as f64
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn list(var: &str, default: &str) -> Vec<u64> {
    std::env::var(var)
        .unwrap_or_else(|_| default.into())
        .split_whitespace()
        .map(|s| s.parse().expect("numbers"))
        .collect()
}

/// One command: median wall time of 3 binary runs, peak RSS, round trips per server.
fn measure(f: &Fleet, n: usize, cmd: &[&str], next_kvno: &mut u32) -> (Duration, i64, f64) {
    let mut walls = Vec::new();
    let mut rss = 0;
    let args = |k: &mut u32| -> Vec<String> {
        let mut a: Vec<String> = cmd.iter().map(|s| s.to_string()).collect();
        if cmd[0] == "add" {
            *k += 1;
            a.extend(["--kvno".into(), k.to_string()]);
        }
        a
    };
    for _ in 0..3 {
        let a = args(next_kvno);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        let (w, r) = timed(f.control.path(), &a);
        walls.push(w);
        rss = rss.max(r);
    }
    let a = args(next_kvno);
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let rt = round_trips(f.control.path(), &a, n);
    (median(walls), rss, rt)
}

#[test]
#[ignore]
fn bench_latency() {
    let ns = list("AFSKEYS_BENCH_N", "1 8 64");
    let rtts = list("AFSKEYS_BENCH_RTT_MS", "0 50");
    let max = *ns.iter().max().unwrap() as usize;
    let Some(sshds) = sshd::Sshds::start(max) else {
        return;
    };
    let b = Bench { sshds };
    let mut table = Vec::new();
    let cmds: [(&str, &[&str]); 4] = [
        ("verify", &["verify"]),
        ("push", &["push"]),
        ("add+push", &["add", "--type", "rxkad_krb5", "--random"]),
        ("rotate", &["rotate"]),
    ];
    for &rtt_ms in &rtts {
        let rtt = Duration::from_millis(rtt_ms);
        for &n in &ns {
            let n = n as usize;
            let f = fleet(&b, &b.ports(n, rtt));
            // The cell's first key on every server (not measured).
            timed(f.control.path(), &["rotate"]);
            let fl = median((0..3).map(|_| floor(&f)).collect());
            let mut row = format!(
                "rtt {rtt_ms:>3} ms N={n:<3} floor {:5.2} s",
                fl.as_secs_f64()
            );
            let mut peak = 0;
            let mut kvno = 100;
            for (name, cmd) in cmds {
                let (w, rss, rt) = measure(&f, n, cmd, &mut kvno);
                peak = peak.max(rss);
                row.push_str(&format!(
                    " | {name} {:5.2} s {:4.2}x {:4.1} rt",
                    w.as_secs_f64(),
                    w.as_secs_f64() / fl.as_secs_f64().max(f64::MIN_POSITIVE),
                    rt
                ));
            }
            row.push_str(&format!(" | peak RSS {:.1} MiB", peak as f64 / 1024.0));
            eprintln!("{row}");
            table.push(row);
        }
    }
    eprintln!(
        "\nbench-fleet --rtt: one sshd per server on 127.0.0.1 behind a proxy adding rtt/2 each \
         way; floor = N library sessions at once (connect, auth, SFTP, one stat), median of 3; \
         commands = release binary, median of 3; rt = SFTP round trips per server; parallel = N"
    );
    for r in &table {
        eprintln!("{r}");
    }
}

/// Not a bench: `rotate` reads each server's keys once per command (the kvno survey,
/// distribute, the activation guard and the proof share it; the confirmation after the
/// commit rides with it), so its SFTP round trips per server stay at 8 or fewer (it was 18
/// when each step read again, 13 without the memo, 9 before the stage's survey rode with
/// its opens and its backups with its writes): SFTP start 1, the read 2, stage 2, the
/// compare-and-swap's recheck 1 (since issue "Races, hangs and lies"), commit with the
/// read-back and the tidying 2.
#[test]
fn rotate_reads_each_server_once_per_command() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Some(sshds) = sshd::Sshds::start(2) else {
        return;
    };
    let b = Bench { sshds };
    let f = fleet(&b, &b.ports(2, Duration::ZERO));
    let first = round_trips(f.control.path(), &["rotate"], 2);
    let again = round_trips(f.control.path(), &["rotate"], 2);
    eprintln!("rotate: first {first}, again {again} SFTP round trips per server");
    // A counter that read 0 would pass every upper bound: a rotate does at least SFTP start,
    // a read, a stage and a commit on each server.
    assert!(
        (4.0..=8.0).contains(&first),
        "the first rotate: {first} round trips per server"
    );
    assert!(
        (4.0..=8.0).contains(&again),
        "a second rotate: {again} round trips per server"
    );
    let verify = round_trips(f.control.path(), &["verify"], 2);
    assert!(
        (2.0..=3.0).contains(&verify),
        "verify: {verify} round trips per server"
    );
}

/// Not a bench: the ssh2 stage surveys the conf dir and opens the stage in one exchange,
/// then writes, reads and backs up in the next, so a push that changes nothing costs 5 SFTP
/// round trips per server (SFTP start 1, stage 2, commit 1, tidy 2 — was 7); one that
/// changes files 6, as does `add` with its automatic push: the compare-and-swap rereads the
/// live files through the stage's open handles in one round trip before the renames.
#[test]
fn push_and_add_round_trips_per_server() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Some(sshds) = sshd::Sshds::start(2) else {
        return;
    };
    let b = Bench { sshds };
    let f = fleet(&b, &b.ports(2, Duration::ZERO));
    round_trips(f.control.path(), &["rotate"], 2);
    let old: Vec<Vec<u8>> = f
        ._dirs
        .iter()
        .map(|d| fs::read(d.path().join("KeyFileExt")).unwrap())
        .collect();
    let add = round_trips(
        f.control.path(),
        &["add", "--type", "rxkad_krb5", "--random", "--kvno", "77"],
        2,
    );
    let same = round_trips(f.control.path(), &["push"], 2);
    eprintln!("add + push {add}, push of the same keys {same} SFTP round trips per server");
    assert!(
        (3.0..=6.0).contains(&add),
        "add with its push: {add} round trips per server"
    );
    assert!(
        (2.0..=5.0).contains(&same),
        "a push that changes nothing: {same} round trips per server"
    );
    // A push that changes a file (and backs it up): the servers get their old KeyFileExt back.
    for (d, old) in f._dirs.iter().zip(&old) {
        fs::write(d.path().join("KeyFileExt"), old).unwrap();
    }
    let before: Vec<[usize; 2]> = f._dirs.iter().map(|d| backup_counts(d.path())).collect();
    let push = round_trips(f.control.path(), &["push"], 2);
    eprintln!("push that changes KeyFileExt: {push} SFTP round trips per server");
    assert!(
        (3.0..=6.0).contains(&push),
        "a push that changes files: {push} round trips per server"
    );
    for d in &f._dirs {
        let got = fs::read(d.path().join("KeyFileExt")).unwrap();
        let want = fs::read(f.control.path().join("KeyFileExt")).unwrap();
        assert_eq!(
            got,
            want,
            "{} holds the pushed KeyFileExt",
            d.path().display()
        );
    }
    // Backed up: the KeyFileExt replaced, not the KeyFile that stayed (its early backup was
    // removed again).
    for (d, [ext, kf]) in f._dirs.iter().zip(&before) {
        let b = backup_counts(d.path());
        assert_eq!(b, [ext + 1, *kf], "{} backups", d.path().display());
    }
    // Nothing to change and no backup dir: none is left made.
    for d in &f._dirs {
        fs::remove_dir_all(d.path().join(".afskeys-backup")).unwrap();
    }
    let same = round_trips(f.control.path(), &["push"], 2);
    assert!(
        same <= 5.0,
        "a push that changes nothing: {same} round trips per server"
    );
    for d in &f._dirs {
        let b = d.path().join(".afskeys-backup");
        assert!(
            !b.exists(),
            "{} made by a push that changed nothing",
            b.display()
        );
    }
}

/// [KeyFileExt, KeyFile]: how many backups of each the conf dir `d` holds.
fn backup_counts(d: &Path) -> [usize; 2] {
    let names: Vec<String> = match fs::read_dir(d.join(".afskeys-backup")) {
        Ok(rd) => rd
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    };
    ["KeyFileExt.", "KeyFile."].map(|p| names.iter().filter(|n| n.starts_with(p)).count())
}

/// A server whose backup dir holds a backup named after afskeys' clock (the server's clock
/// was ahead): the backup made is still named to sort last, one round trip later.
#[test]
fn backup_named_after_a_backup_from_the_future() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Some(sshds) = sshd::Sshds::start(1) else {
        return;
    };
    let b = Bench { sshds };
    let f = fleet(&b, &b.ports(1, Duration::ZERO));
    round_trips(f.control.path(), &["rotate"], 1);
    let bdir = f._dirs[0].path().join(".afskeys-backup");
    let future = "KeyFileExt.29991231T235959.000000000Z";
    fs::create_dir_all(&bdir).unwrap();
    fs::set_permissions(&bdir, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    fs::write(bdir.join(future), b"old").unwrap();
    let add = round_trips(
        f.control.path(),
        &["add", "--type", "rxkad_krb5", "--random", "--kvno", "79"],
        1,
    );
    assert!(
        (3.0..=7.0).contains(&add),
        "add with its push: {add} round trips"
    );
    let mut ext: Vec<String> = fs::read_dir(&bdir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("KeyFileExt."))
        .collect();
    ext.sort();
    assert_eq!(ext.len(), 2, "backups of KeyFileExt: {ext:?}");
    assert_eq!(ext[0], future, "{ext:?}");
    assert_eq!(ext[1], "KeyFileExt.29991231T235959.000000001Z", "{ext:?}");
    assert_ne!(
        fs::read(bdir.join(&ext[1])).unwrap(),
        fs::read(f._dirs[0].path().join("KeyFileExt")).unwrap(),
        "the backup is the replaced file"
    );
}

//! The SSH fleet against real OpenSSH servers: each "server machine" is a conf dir on this
//! machine reached through its own sshd on 127.0.0.1 (its own port and host key), so every
//! byte goes through SSH, SFTP and the remote shell exactly as it would to another machine.
//!
//! Needs `/usr/sbin/sshd` (openssh-server) and root; skips without them unless
//! `AFSKEYS_REQUIRE_INTEROP` is set. `bench_fleet` (ignored; `bin/bench-fleet` runs it) times
//! push + verify against the scp/ssh loop and bare parallel logins.

mod sshd;

use afskeys::config::{ServerConfig, SshConfig};
use afskeys::fleet::fanout::{self, Agreement, PushReport};
use afskeys::fleet::ssh::{ReplaceMethod, SshServer, SshTarget, STAGE_PREFIX};
use afskeys::fleet::{KeyFiles, NoProgress, Server};
use afskeys::keys::{Key, KeyId, KeySet, KeyType};
use sshd::Sshds;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use zeroize::Zeroizing;

fn des(kvno: i32, seed: u8) -> Key {
    // odd parity in every byte, never weak
    let mut b = [0u8; 8];
    for (i, x) in b.iter_mut().enumerate() {
        let v = seed.wrapping_mul(37).wrapping_add(i as u8 * 29) & 0xfe;
        *x = if v.count_ones().is_multiple_of(2) {
            v | 1
        } else {
            v
        };
    }
    Key::rxkad(kvno, &b)
}

fn aes(kvno: i32, enctype: i32, seed: u8) -> Key {
    let len = if enctype == 18 { 32 } else { 16 };
    Key::new(
        KeyId {
            key_type: KeyType::RxkadKrb5,
            kvno,
            subtype: enctype,
        },
        Zeroizing::new((0..len).map(|i| seed ^ (i as u8 * 7)).collect()),
    )
}

/// The keys every test starts from, and the keys a rotation adds.
fn old_set() -> KeySet {
    let mut s = KeySet::new();
    s.insert(des(3, 1)).unwrap();
    s.insert(aes(4, 18, 2)).unwrap();
    s
}

fn new_set(seed: u8) -> KeySet {
    let mut s = old_set();
    s.insert(des(6, seed)).unwrap();
    s.insert(aes(5, 18, seed)).unwrap();
    s.insert(aes(5, 17, seed.wrapping_add(1))).unwrap();
    s
}

/// A cell of `n` servers spread over the sshds: server i uses sshd i % sshds.
struct Cell {
    sshds: Sshds,
    dirs: Vec<tempfile::TempDir>,
    ssh: SshConfig,
}

const OLD_CELLSERVDB_MTIME: i64 = 1_600_000_000;

impl Cell {
    fn new(n_sshd: usize, n_servers: usize) -> Option<Cell> {
        let sshds = Sshds::start(n_sshd)?;
        let files = KeyFiles::of(&old_set());
        let dirs = (0..n_servers)
            .map(|i| {
                let d = tempfile::Builder::new()
                    .prefix(&format!("afskeys-fs{i}."))
                    .tempdir()
                    .unwrap();
                write_0600(&d.path().join("KeyFile"), &files.keyfile);
                write_0600(&d.path().join("KeyFileExt"), &files.keyfileext);
                fs::write(d.path().join("ThisCell"), "example.com\n").unwrap();
                let csdb = d.path().join("CellServDB");
                fs::write(&csdb, ">example.com\n127.0.0.1 #localhost\n").unwrap();
                set_mtime(&csdb, OLD_CELLSERVDB_MTIME);
                d
            })
            .collect();
        let ssh = SshConfig {
            identity: Some(sshds.identity.clone()),
            known_hosts: Some(sshds.known_hosts.clone()),
            parallel: 8,
            timeout: Duration::from_secs(30),
            ..SshConfig::default()
        };
        Some(Cell { sshds, dirs, ssh })
    }

    fn config(&self, i: usize) -> ServerConfig {
        ServerConfig {
            name: format!("fs{i}"),
            host: Some("127.0.0.1".into()),
            port: self.sshds.sshds[i % self.sshds.sshds.len()].port,
            user: sshd::user(),
            confdir: self.dirs[i].path().to_path_buf(),
            afs_host: None,
            running_proof: true,
        }
    }

    fn servers(&self) -> Vec<SshServer> {
        self.servers_with(&self.ssh)
    }

    fn servers_with(&self, ssh: &SshConfig) -> Vec<SshServer> {
        (0..self.dirs.len())
            .map(|i| ssh_server(&self.config(i), ssh))
            .collect()
    }

    fn dir(&self, i: usize) -> &Path {
        self.dirs[i].path()
    }

    fn read(&self, i: usize, f: &str) -> Vec<u8> {
        fs::read(self.dir(i).join(f)).unwrap()
    }

    /// Every server's files are exactly `files`.
    #[track_caller]
    fn assert_all(&self, files: &KeyFiles, what: &str) {
        for i in 0..self.dirs.len() {
            assert_eq!(
                self.read(i, "KeyFile"),
                files.keyfile,
                "fs{i} KeyFile: {what}"
            );
            assert_eq!(
                self.read(i, "KeyFileExt"),
                &files.keyfileext[..],
                "fs{i} KeyFileExt: {what}"
            );
        }
    }

    /// Nothing staged is left in any conf dir.
    #[track_caller]
    fn assert_no_stage_left(&self) {
        for i in 0..self.dirs.len() {
            let left: Vec<String> = fs::read_dir(self.dir(i))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(STAGE_PREFIX))
                .collect();
            assert!(left.is_empty(), "fs{i}: staged files left: {left:?}");
        }
    }
}

fn write_0600(p: &Path, bytes: &[u8]) {
    fs::write(p, bytes).unwrap();
    fs::set_permissions(p, fs::Permissions::from_mode(0o600)).unwrap();
}

fn set_mtime(p: &Path, secs: i64) {
    let f = fs::File::options().write(true).open(p).unwrap();
    f.set_modified(UNIX_EPOCH + Duration::from_secs(secs as u64))
        .unwrap();
}

fn mtime(p: &Path) -> i64 {
    fs::metadata(p).unwrap().mtime()
}

/// The server `cell.rs` would build from this `[[servers]]` entry and `[ssh]`.
fn ssh_server(s: &ServerConfig, ssh: &SshConfig) -> SshServer {
    SshServer::new(SshTarget {
        name: s.name.clone(),
        host: s.host.clone().unwrap_or_else(|| s.name.clone()),
        port: s.port,
        user: s.user.clone(),
        confdir: s.confdir.clone(),
        identity: ssh.identity.clone(),
        known_hosts: ssh.known_hosts.clone(),
        timeout: ssh.timeout,
    })
}

fn refs(s: &[SshServer]) -> Vec<&dyn Server> {
    s.iter().map(|s| s as &dyn Server).collect()
}

fn backups(dir: &Path, name: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = match fs::read_dir(dir.join(".afskeys-backup")) {
        Ok(rd) => rd
            .map(|e| e.unwrap().path())
            .filter(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .strip_prefix(&format!("{name}."))
                    .is_some_and(|r| r.starts_with(|c: char| c.is_ascii_digit()))
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}

fn failures(r: &PushReport) -> String {
    r.failures()
        .iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// How many logins each sshd has accepted so far (from its log).
fn logins(cell: &Cell, sshd: usize) -> usize {
    cell.sshds.sshds[sshd]
        .log()
        .lines()
        .filter(|l| l.contains("Accepted publickey"))
        .count()
}

#[test]
fn push_then_verify_reaches_every_server() {
    let Some(cell) = Cell::new(8, 8) else { return };
    let servers = cell.servers();
    let new = new_set(9);
    let files = KeyFiles::of(&new);
    let before = SystemTime::now();
    let r = fanout::push(&refs(&servers), &files, 8, &NoProgress);
    assert!(r.ok(), "{}\n{}", failures(&r), cell.sshds.logs());
    let skew = r.skew.expect("skew measured");
    eprintln!(
        "push to 8 servers over 8 sshds: {:?} total, stage phase {:?}, commit skew {:?}",
        r.total, r.stage_phase, skew
    );
    let v = fanout::verify(&refs(&servers), &new, 8);
    assert!(v.all_agree(), "{:?}", v.disagreeing());
    for s in &v.servers {
        assert_eq!(s.checksums.len(), 5);
    }
    // One connection per server served stage, commit and verify.
    for i in 0..8 {
        assert_eq!(
            logins(&cell, i),
            1,
            "sshd{i} logins:\n{}",
            cell.sshds.logs()
        );
    }
    drop(servers); // waits for the servers' shells to finish tidying up
    cell.assert_all(&files, "after push");
    cell.assert_no_stage_left();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let since = before.duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    for i in 0..8 {
        let d = cell.dir(i);
        for f in ["KeyFile", "KeyFileExt"] {
            let mode = fs::metadata(d.join(f)).unwrap().mode() & 0o777;
            assert_eq!(mode, 0o600, "fs{i} {f} mode {mode:o}");
            let b = backups(d, f);
            assert_eq!(
                b.len(),
                1,
                "fs{i} {f} backups {b:?}: {}",
                String::from_utf8_lossy(
                    &std::process::Command::new("ls")
                        .arg("-laR")
                        .arg(d)
                        .output()
                        .unwrap()
                        .stdout
                )
            );
            assert_eq!(
                fs::read(&b[0]).unwrap(),
                if f == "KeyFile" {
                    KeyFiles::of(&old_set()).keyfile
                } else {
                    KeyFiles::of(&old_set()).keyfileext.to_vec()
                }
            );
            assert_eq!(fs::metadata(&b[0]).unwrap().mode() & 0o777, 0o600);
        }
        let m = mtime(&d.join("CellServDB"));
        assert!(
            m >= since && m <= now + 1,
            "fs{i} CellServDB mtime {m}, push at {since}..{now}"
        );
    }

    // Again at once, with other keys: CellServDB must move to yet another whole second.
    let first: Vec<i64> = (0..8)
        .map(|i| mtime(&cell.dir(i).join("CellServDB")))
        .collect();
    let servers = cell.servers();
    let files2 = KeyFiles::of(&new_set(21));
    let r = fanout::push(&refs(&servers), &files2, 8, &NoProgress);
    assert!(r.ok(), "{}", failures(&r));
    drop(servers);
    cell.assert_all(&files2, "after the second push");
    for (i, m0) in first.iter().enumerate() {
        let m = mtime(&cell.dir(i).join("CellServDB"));
        assert!(m > *m0, "fs{i}: CellServDB mtime {m} not past {m0}");
        assert_eq!(backups(cell.dir(i), "KeyFile").len(), 2);
    }

    // The same files once more: nothing to change, so no backup and no touch.
    let servers = cell.servers();
    let second: Vec<i64> = (0..8)
        .map(|i| mtime(&cell.dir(i).join("CellServDB")))
        .collect();
    let r = fanout::push(&refs(&servers), &files2, 8, &NoProgress);
    assert!(r.ok(), "{}", failures(&r));
    drop(servers);
    for (i, m0) in second.iter().enumerate() {
        assert_eq!(mtime(&cell.dir(i).join("CellServDB")), *m0, "fs{i}");
        assert_eq!(backups(cell.dir(i), "KeyFile").len(), 2, "fs{i}");
    }
    cell.assert_no_stage_left();
}

/// Files, backups and CellServDB exactly as `Cell::new` left them, on every server.
#[track_caller]
fn assert_untouched(cell: &Cell) {
    cell.assert_all(&KeyFiles::of(&old_set()), "must be unchanged");
    cell.assert_no_stage_left();
    for i in 0..cell.dirs.len() {
        assert!(
            backups(cell.dir(i), "KeyFile").is_empty(),
            "fs{i} backup made"
        );
        assert!(
            backups(cell.dir(i), "KeyFileExt").is_empty(),
            "fs{i} backup made"
        );
        assert_eq!(
            mtime(&cell.dir(i).join("CellServDB")),
            OLD_CELLSERVDB_MTIME,
            "fs{i} CellServDB touched"
        );
    }
}

#[test]
fn changed_host_key_is_refused_and_nothing_is_written() {
    let Some(mut cell) = Cell::new(8, 8) else {
        return;
    };
    cell.sshds.sshds[3].restart_with_new_host_key();
    let fp = cell.sshds.sshds[3].fingerprint();
    let port = cell.sshds.sshds[3].port;
    let servers = cell.servers();
    let r = fanout::push(&refs(&servers), &KeyFiles::of(&new_set(9)), 8, &NoProgress);
    assert!(!r.committed && !r.ok());
    let fails = r.failures();
    assert_eq!(fails.len(), 1, "{}", failures(&r));
    let e = fails[0].to_string();
    eprintln!("changed host key: {e}");
    assert_eq!(fails[0].server, "fs3");
    for want in [
        "HOST KEY CHANGED",
        &format!("[127.0.0.1]:{port}"),
        &fp,
        "refusing",
    ] {
        assert!(e.contains(want), "{want:?} not in: {e}");
    }
    // the other seven had staged: all discarded, none committed
    for (i, s) in r.servers.iter().enumerate() {
        assert_eq!(s.staged.is_ok(), i != 3, "fs{i}");
        assert!(s.committed.is_none(), "fs{i}");
    }
    drop(servers);
    assert_untouched(&cell);
    // reading is refused the same way
    let e = cell.servers()[3].read_keys().unwrap_err().to_string();
    assert!(e.contains("HOST KEY CHANGED") && e.contains(&fp), "{e}");
}

#[test]
fn unknown_hosts_are_refused_even_with_a_bare_host_entry() {
    let Some(cell) = Cell::new(8, 8) else { return };
    let kh = cell.sshds.dir.path().join("known_hosts.missing2");
    cell.sshds.write_known_hosts(&kh, &[2]);
    let ssh = SshConfig {
        known_hosts: Some(kh.clone()),
        ..cell.ssh.clone()
    };
    let servers = cell.servers_with(&ssh);
    let r = fanout::push(&refs(&servers), &KeyFiles::of(&new_set(9)), 8, &NoProgress);
    assert!(!r.committed);
    let fails = r.failures();
    assert_eq!(fails.len(), 1, "{}", failures(&r));
    assert_eq!(fails[0].server, "fs2");
    let e = fails[0].to_string();
    eprintln!("unknown host: {e}");
    let port = cell.sshds.sshds[2].port;
    for want in [
        "UNKNOWN HOST",
        &format!("[127.0.0.1]:{port}"),
        &cell.sshds.sshds[2].fingerprint(),
    ] {
        assert!(e.contains(want), "{want:?} not in: {e}");
    }
    drop(servers);
    assert_untouched(&cell);

    // A bare `127.0.0.1` entry with the right key does not vouch for another port
    // (libssh2's check_port would accept it; OpenSSH does not, nor do we).
    let line = cell.sshds.sshds[2].host_key_line();
    let key: Vec<&str> = line.split_whitespace().take(2).collect();
    fs::write(&kh, format!("127.0.0.1 {}\n", key.join(" "))).unwrap();
    let e = ssh_server(&cell.config(2), &ssh)
        .read_keys()
        .unwrap_err()
        .to_string();
    assert!(e.contains("UNKNOWN HOST"), "{e}");
    // No known_hosts file at all: every host is unknown.
    let none = SshConfig {
        known_hosts: Some(cell.sshds.dir.path().join("no-such-file")),
        ..cell.ssh.clone()
    };
    let e = ssh_server(&cell.config(0), &none)
        .read_keys()
        .unwrap_err()
        .to_string();
    assert!(e.contains("UNKNOWN HOST"), "{e}");

    // Hashed entries (HashKnownHosts yes, Debian's default) are matched.
    let hashed = cell.sshds.dir.path().join("known_hosts.hashed");
    cell.sshds.write_known_hosts(&hashed, &[]);
    Sshds::hash_known_hosts(&hashed);
    assert!(fs::read_to_string(&hashed).unwrap().starts_with("|1|"));
    let ssh = SshConfig {
        known_hosts: Some(hashed),
        ..cell.ssh.clone()
    };
    let servers = cell.servers_with(&ssh);
    for (name, r) in fanout::read_all(&refs(&servers), 8) {
        assert_eq!(r.unwrap(), old_set(), "{name}");
    }
}

#[test]
fn a_stopped_sshd_means_no_change_anywhere() {
    let Some(mut cell) = Cell::new(8, 8) else {
        return;
    };
    cell.sshds.sshds[5].stop();
    let servers = cell.servers();
    let r = fanout::push(&refs(&servers), &KeyFiles::of(&new_set(9)), 8, &NoProgress);
    assert!(!r.committed);
    let fails = r.failures();
    assert_eq!(fails.len(), 1, "{}", failures(&r));
    assert_eq!(fails[0].server, "fs5");
    let e = fails[0].to_string();
    eprintln!("stopped sshd: {e}");
    assert!(e.contains("cannot connect"), "{e}");
    let v = fanout::verify(&refs(&servers), &old_set(), 8);
    assert_eq!(v.disagreeing().len(), 1);
    assert!(matches!(v.servers[5].agreement, Agreement::Unreachable(_)));
    drop(servers);
    assert_untouched(&cell);
    // back up: the same push now goes through
    assert!(cell.sshds.sshds[5].start());
    let servers = cell.servers();
    let files = KeyFiles::of(&new_set(9));
    let r = fanout::push(&refs(&servers), &files, 8, &NoProgress);
    assert!(r.ok(), "{}", failures(&r));
    drop(servers);
    cell.assert_all(&files, "after the sshd came back");
}

#[test]
fn cut_between_stage_and_commit_leaves_old_or_new() {
    let Some(mut cell) = Cell::new(8, 8) else {
        return;
    };
    let servers = cell.servers();
    let files = KeyFiles::of(&new_set(9));
    let staged: Vec<_> = servers.iter().map(|s| s.stage(&files).unwrap()).collect();
    // server 6 goes down with its connection while the others wait to commit
    cell.sshds.sshds[6].stop();
    let results: Vec<_> = staged.into_iter().map(|st| st.commit()).collect();
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r.is_ok(), i != 6, "fs{i}: {r:?}");
    }
    let e = results[6].as_ref().unwrap_err().to_string();
    eprintln!("cut before commit: {e}");
    drop(servers);
    let old = KeyFiles::of(&old_set());
    for i in 0..8 {
        let want = if i == 6 { &old } else { &files };
        assert_eq!(cell.read(i, "KeyFile"), want.keyfile, "fs{i}");
        assert_eq!(cell.read(i, "KeyFileExt"), &want.keyfileext[..], "fs{i}");
    }
    // it comes back, and the next connection works (a new one: the kept one died)
    assert!(cell.sshds.sshds[6].start());
    let s6 = ssh_server(&cell.config(6), &cell.ssh);
    assert_eq!(s6.read_keys().unwrap(), old_set());
}

#[test]
fn a_kept_connection_that_died_is_replaced() {
    let Some(mut cell) = Cell::new(1, 1) else {
        return;
    };
    let s = ssh_server(&cell.config(0), &cell.ssh);
    assert_eq!(s.read_keys().unwrap(), old_set());
    cell.sshds.sshds[0].stop();
    assert!(cell.sshds.sshds[0].start());
    assert_eq!(s.read_keys().unwrap(), old_set());
    let files = KeyFiles::of(&new_set(3));
    s.install(&files).unwrap();
    assert_eq!(s.read_keys().unwrap(), new_set(3));
    assert_eq!(logins(&cell, 0), 2);
}

#[test]
fn connections_cut_at_any_moment_never_tear_a_keyfile() {
    let Some(cell) = Cell::new(1, 1) else { return };
    let sshd = &cell.sshds.sshds[0];
    let (mut olds, mut news, mut landed) = (0, 0, 0);
    // Time a whole install first, then cut at moments spread over it (and past it).
    let t = std::time::Instant::now();
    let s = ssh_server(&cell.config(0), &cell.ssh);
    let mut prev = KeyFiles::of(&new_set(100));
    s.install(&prev).unwrap();
    drop(s);
    let whole = t.elapsed();
    for trial in 0..12u32 {
        let files = KeyFiles::of(&new_set(trial as u8));
        let delay = whole * trial / 10;
        let s = ssh_server(&cell.config(0), &cell.ssh);
        let (outcome, killed) = std::thread::scope(|sc| {
            let h = sc.spawn(|| s.install(&files));
            std::thread::sleep(delay);
            let killed = sshd.cut_connections();
            (h.join().unwrap(), killed)
        });
        // A cut that killed the install's session while it ran, and made it fail.
        if killed > 0 && outcome.is_err() {
            landed += 1;
        }
        drop(s);
        let kf = cell.read(0, "KeyFile");
        let kx = cell.read(0, "KeyFileExt");
        let is_new = kf == files.keyfile;
        assert!(is_new || kf == prev.keyfile, "trial {trial}: KeyFile torn");
        assert!(
            kx == files.keyfileext[..] || kx == prev.keyfileext[..],
            "trial {trial}: KeyFileExt torn"
        );
        if outcome.is_ok() {
            assert!(is_new, "trial {trial}: install said ok but the file is old");
        }
        if is_new {
            news += 1;
            prev = files;
        } else {
            olds += 1;
        }
    }
    eprintln!(
        "cut at 12 moments over {whole:?}: {olds} left the old KeyFile, {news} the new; \
         {landed} cuts landed mid-install"
    );
    assert!(
        landed > 0,
        "no cut landed while an install ran: nothing was tested"
    );
}

#[test]
fn the_replace_overwrites_where_sftp_rename_cannot() {
    let Some(cell) = Cell::new(1, 1) else { return };
    let d = cell.dir(0);
    // The SFTP fact: OpenSSH's rename never replaces an existing file, whatever the flags.
    let tcp = std::net::TcpStream::connect(("127.0.0.1", cell.sshds.sshds[0].port)).unwrap();
    let mut sess = ssh2::Session::new().unwrap();
    sess.set_tcp_stream(tcp);
    sess.handshake().unwrap();
    sess.userauth_pubkey_file(&sshd::user(), None, &cell.sshds.identity, None)
        .unwrap();
    let sftp = sess.sftp().unwrap();
    fs::write(d.join("a"), b"a").unwrap();
    fs::write(d.join("b"), b"b").unwrap();
    let r = sftp.rename(&d.join("a"), &d.join("b"), None);
    assert!(r.is_err(), "SFTP rename replaced an existing file");
    assert_eq!(fs::read(d.join("b")).unwrap(), b"b");
    drop(sftp);
    drop(sess);

    // afskeys' install does replace the live file, by rename (a new inode, never rewritten
    // in place).
    let ino = fs::metadata(d.join("KeyFile")).unwrap().ino();
    let s = ssh_server(&cell.config(0), &cell.ssh);
    let files = KeyFiles::of(&new_set(7));
    s.install(&files).unwrap();
    drop(s);
    assert_eq!(cell.read(0, "KeyFile"), files.keyfile);
    assert_eq!(cell.read(0, "KeyFileExt"), &files.keyfileext[..]);
    assert_ne!(fs::metadata(d.join("KeyFile")).unwrap().ino(), ino);
    // and so does the `mv -f` fallback
    let ino = fs::metadata(d.join("KeyFile")).unwrap().ino();
    let s = ssh_server(&cell.config(0), &cell.ssh).with_replace_method(ReplaceMethod::ShellMv);
    let files = KeyFiles::of(&new_set(8));
    s.install(&files).unwrap();
    drop(s);
    assert_eq!(cell.read(0, "KeyFile"), files.keyfile);
    assert_eq!(cell.read(0, "KeyFileExt"), &files.keyfileext[..]);
    assert_ne!(fs::metadata(d.join("KeyFile")).unwrap().ino(), ino);
}

#[test]
fn backups_are_bounded_and_abandoned_stages_are_cleaned() {
    let Some(cell) = Cell::new(1, 1) else { return };
    let d = cell.dir(0);
    // a stage dir a cut connection left behind two days ago
    let stale = d.join(format!("{STAGE_PREFIX}0000000000000000"));
    fs::create_dir(&stale).unwrap();
    fs::write(stale.join("KeyFile"), b"x").unwrap();
    let two_days_ago = SystemTime::now() - Duration::from_secs(2 * 86400);
    fs::File::open(&stale)
        .unwrap()
        .set_modified(two_days_ago)
        .unwrap();
    // and one from a push still in flight elsewhere: kept
    let fresh = d.join(format!("{STAGE_PREFIX}1111111111111111"));
    fs::create_dir(&fresh).unwrap();
    let s = ssh_server(&cell.config(0), &cell.ssh);
    for i in 0..13u8 {
        s.install(&KeyFiles::of(&new_set(i))).unwrap();
    }
    let t = s.keyfile_mtime().unwrap();
    let secs = t.duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    assert_eq!(secs, mtime(&d.join("KeyFile")));
    drop(s);
    for f in ["KeyFile", "KeyFileExt"] {
        let b = backups(d, f);
        assert_eq!(b.len(), 10, "{f}: {b:?}");
        // the newest survive: the last one holds the keys of push 11
        let want = KeyFiles::of(&new_set(11));
        let want = if f == "KeyFile" {
            want.keyfile
        } else {
            want.keyfileext.to_vec()
        };
        assert_eq!(fs::read(b.last().unwrap()).unwrap(), want);
    }
    assert!(!stale.exists(), "the abandoned stage dir is still there");
    assert!(fresh.exists());
}

#[test]
fn odd_conf_dir_names_are_quoted() {
    let Some(cell) = Cell::new(1, 1) else { return };
    let odd = cell.dir(0).join("it's a $(dir) `x`;\n");
    fs::create_dir(&odd).unwrap();
    fs::set_permissions(&odd, fs::Permissions::from_mode(0o700)).unwrap();
    fs::write(odd.join("CellServDB"), "").unwrap();
    let mut cfg = cell.config(0);
    cfg.confdir = odd.clone();
    let s = ssh_server(&cfg, &cell.ssh);
    assert!(
        s.read_keys().unwrap().is_empty(),
        "absent files are an empty set"
    );
    let files = KeyFiles::of(&new_set(5));
    s.install(&files).unwrap();
    drop(s);
    assert_eq!(fs::read(odd.join("KeyFile")).unwrap(), files.keyfile);
    // The fallback for servers without posix-rename runs `mv -f` in the login shell: the
    // path must reach it as one word, whatever it holds.
    let s = ssh_server(&cfg, &cell.ssh).with_replace_method(ReplaceMethod::ShellMv);
    let files = KeyFiles::of(&new_set(6));
    s.install(&files).unwrap();
    assert_eq!(s.read_keys().unwrap(), new_set(6));
    drop(s);
    assert_eq!(fs::read(odd.join("KeyFile")).unwrap(), files.keyfile);
    assert_eq!(
        fs::read(odd.join("KeyFileExt")).unwrap(),
        &files.keyfileext[..]
    );
    assert_eq!(backups(&odd, "KeyFile").len(), 1);
    // a conf dir others can write to is refused, as locally
    fs::set_permissions(&odd, fs::Permissions::from_mode(0o777)).unwrap();
    let s = ssh_server(&cfg, &cell.ssh);
    let e = s
        .install(&KeyFiles::of(&old_set()))
        .unwrap_err()
        .to_string();
    assert!(e.contains("chmod go-w"), "{e}");
}

/// `bin/bench-fleet` runs this (release build): push + verify to N servers, against the loop
/// an administrator writes today (for each server in turn: `scp` both files, then `ssh …
/// sha1sum` them) and against the floor (N bare `ssh … true` logins started at once).
/// N from `AFSKEYS_BENCH_N` (default "1 8 32 64"); one sshd per server unless
/// `AFSKEYS_BENCH_SSHDS` says fewer (servers then share sshds, each with its own conf dir);
/// `parallel` = N unless `AFSKEYS_BENCH_PARALLEL` is set.
#[test]
#[ignore]
fn bench_fleet() {
    use std::process::Stdio;
    use std::time::Instant;
    let ns: Vec<usize> = std::env::var("AFSKEYS_BENCH_N")
        .unwrap_or_else(|_| "1 8 32 64".into())
        .split_whitespace()
        .map(|s| s.parse().expect("AFSKEYS_BENCH_N: numbers"))
        .collect();
    let max = *ns.iter().max().unwrap();
    let n_sshd: usize = std::env::var("AFSKEYS_BENCH_SSHDS")
        .ok()
        .map(|s| s.parse().unwrap())
        .unwrap_or(max)
        .clamp(1, max);
    let t = Instant::now();
    let Some(cell) = Cell::new(n_sshd, max) else {
        return;
    };
    eprintln!(
        "{max} conf dirs behind {n_sshd} sshds on 127.0.0.1, started in {:?}",
        t.elapsed()
    );
    let local = tempfile::tempdir().unwrap();
    let secs = |d: Duration| d.as_secs_f64();
    let mut rows = Vec::new();
    let mut goals = Vec::new();
    for (round, &n) in ns.iter().enumerate() {
        let parallel: usize = std::env::var("AFSKEYS_BENCH_PARALLEL")
            .ok()
            .map(|s| s.parse().unwrap())
            .unwrap_or(n);
        let ssh = SshConfig {
            parallel,
            ..cell.ssh.clone()
        };
        // (c) afskeys: push + verify, fresh servers (no connection yet)
        let set = new_set(round as u8 * 2 + 1);
        let files = KeyFiles::of(&set);
        let servers: Vec<SshServer> = (0..n).map(|i| ssh_server(&cell.config(i), &ssh)).collect();
        let t = Instant::now();
        let r = fanout::push(&refs(&servers), &files, parallel, &NoProgress);
        let pushed = t.elapsed();
        assert!(r.ok(), "{}", failures(&r));
        let v = fanout::verify(&refs(&servers), &set, parallel);
        let ours = t.elapsed();
        assert!(v.all_agree(), "{:?}", v.disagreeing());
        let skew = r.skew.unwrap();
        drop(servers);

        // (b) the floor: n bare logins at once
        let t = Instant::now();
        let kids: Vec<_> = (0..n)
            .map(|i| {
                cell.sshds
                    .ssh(i % n_sshd)
                    .arg("true")
                    .stdin(Stdio::null())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for mut k in kids {
            assert!(k.wait().unwrap().success(), "ssh true failed");
        }
        let floor = t.elapsed();
        // the same, with the key exchange libssh2 uses (OpenSSH 9.x defaults to the heavier
        // sntrup761x25519 hybrid)
        let t = Instant::now();
        let kids: Vec<_> = (0..n)
            .map(|i| {
                cell.sshds
                    .ssh(i % n_sshd)
                    .arg("-o")
                    .arg("KexAlgorithms=curve25519-sha256")
                    .arg("true")
                    .stdin(Stdio::null())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for mut k in kids {
            assert!(k.wait().unwrap().success(), "ssh true failed");
        }
        let floor_c = t.elapsed();

        // (a) the loop: scp both files, then checksum them, one server after another
        let files = KeyFiles::of(&new_set(round as u8 * 2 + 2));
        fs::write(local.path().join("KeyFile"), &files.keyfile).unwrap();
        fs::write(local.path().join("KeyFileExt"), &files.keyfileext[..]).unwrap();
        let t = Instant::now();
        for i in 0..n {
            let dir = cell.dir(i).display().to_string();
            let st = cell
                .sshds
                .scp(i % n_sshd)
                .arg(local.path().join("KeyFile"))
                .arg(local.path().join("KeyFileExt"))
                .arg(format!("{}@127.0.0.1:{dir}/", sshd::user()))
                .status()
                .unwrap();
            assert!(st.success(), "scp to fs{i} failed");
            let out = cell
                .sshds
                .ssh(i % n_sshd)
                .arg(format!("sha1sum {dir}/KeyFile {dir}/KeyFileExt"))
                .output()
                .unwrap();
            assert!(out.status.success(), "ssh sha1sum on fs{i} failed");
            assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 2);
        }
        let looped = t.elapsed();
        let row = format!(
            "N={n:<3} afskeys push+verify {:6.2} s (push {:5.2} s, skew {:5.1} ms) | \
             loop {:6.2} s | floor {:6.2} s (curve25519: {:5.2} s) | \
             loop/afskeys {:5.1}x | afskeys/floor {:4.2}x (curve25519: {:4.2}x)",
            secs(ours),
            secs(pushed),
            skew.as_secs_f64() * 1000.0,
            secs(looped),
            secs(floor),
            secs(floor_c),
            secs(looped) / secs(ours),
            secs(ours) / secs(floor),
            secs(ours) / secs(floor_c),
        );
        eprintln!("{row}");
        rows.push(row);
        if n == max {
            let speedup = secs(looped) / secs(ours);
            let vs_floor = secs(ours) / secs(floor);
            let ok = |b: bool| if b { "met" } else { "MISSED" };
            goals = vec![
                format!(
                    "goal at N={n}: >= 3.5x faster than the loop: {speedup:.1}x, {}",
                    ok(speedup >= 3.5)
                ),
                format!(
                    "goal at N={n}: within 1.3x of the parallel-login floor: {vs_floor:.2}x, {}",
                    ok(vs_floor <= 1.3)
                ),
                format!(
                    "goal at N={n}: skew under 100 ms: {:.1} ms, {}",
                    skew.as_secs_f64() * 1000.0,
                    ok(skew < Duration::from_millis(100))
                ),
            ];
        }
    }
    eprintln!(
        "\nbench-fleet: {n_sshd} sshds, one conf dir per server, parallel = N, release build; \
         loop = per server scp KeyFile KeyFileExt + ssh sha1sum; floor = N x `ssh true` at once"
    );
    for r in rows.iter().chain(&goals) {
        eprintln!("{r}");
    }
}

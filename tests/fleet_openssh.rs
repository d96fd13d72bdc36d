//! The fleet over the OpenSSH transport (`[ssh] transport = "openssh"`) against real sshds
//! on 127.0.0.1: push and verify to several servers, refused host keys (changed, unknown)
//! with nothing written anywhere, connections cut between stage and commit and during an
//! install, servers reached through an ssh_config alias and `ProxyJump` through a bastion
//! sshd, agent-only login over both transports, and a host key signed by an SSH CA trusted
//! through `@cert-authority`.
//!
//! Needs `/usr/sbin/sshd`, `ssh`, `ssh-keygen`, `ssh-agent`, `ssh-add` and root; fails
//! without them when `AFSKEYS_REQUIRE_INTEROP` is set, else skips.

mod sshd;

use afskeys::fleet::fanout::{self, Agreement};
use afskeys::fleet::openssh::{OpensshServer, OpensshTarget};
use afskeys::fleet::ssh::{SshServer, SshTarget, STAGE_PREFIX};
use afskeys::fleet::{KeyFiles, NoProgress, Server};
use afskeys::keys::{Key, KeyId, KeySet, KeyType};
use sshd::Sshds;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use zeroize::Zeroizing;

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

fn set(seeds: &[(i32, u8)]) -> KeySet {
    let mut s = KeySet::new();
    for (kvno, seed) in seeds {
        s.insert(aes(*kvno, 18, *seed)).unwrap();
        s.insert(aes(*kvno, 17, seed.wrapping_add(1))).unwrap();
    }
    s
}

fn old_files() -> KeyFiles {
    KeyFiles::of(&set(&[(1, 1)]))
}

fn new_files() -> KeyFiles {
    KeyFiles::of(&set(&[(1, 1), (2, 9)]))
}

const OLD_CELLSERVDB_MTIME: u64 = 1_600_000_000;

/// `n` conf dirs, one behind each of `n` sshds, and an ssh_config for them.
struct Cell {
    sshds: Sshds,
    dirs: Vec<tempfile::TempDir>,
    ssh_config: PathBuf,
}

impl Cell {
    fn new(n: usize) -> Option<Cell> {
        let sshds = Sshds::start(n)?;
        let files = old_files();
        let dirs = (0..n)
            .map(|i| {
                let d = tempfile::Builder::new()
                    .prefix(&format!("afskeys-ofs{i}."))
                    .tempdir()
                    .unwrap();
                write_0600(&d.path().join("KeyFile"), &files.keyfile);
                write_0600(&d.path().join("KeyFileExt"), &files.keyfileext);
                let csdb = d.path().join("CellServDB");
                fs::write(&csdb, ">example.com\n127.0.0.1 #localhost\n").unwrap();
                let f = fs::File::options().write(true).open(&csdb).unwrap();
                f.set_modified(std::time::UNIX_EPOCH + Duration::from_secs(OLD_CELLSERVDB_MTIME))
                    .unwrap();
                d
            })
            .collect();
        let ssh_config = sshds.dir.path().join("ssh_config");
        fs::write(&ssh_config, sshd::TEST_SSH_CONFIG).unwrap();
        Some(Cell {
            sshds,
            dirs,
            ssh_config,
        })
    }

    /// Server `i` as `cell.rs` builds it for `host = "127.0.0.1"`, `port = <its sshd>`.
    fn target(&self, i: usize) -> OpensshTarget {
        OpensshTarget {
            name: format!("fs{i}"),
            host: "127.0.0.1".into(),
            port: Some(self.sshds.sshds[i].port),
            user: None,
            confdir: self.dirs[i].path().to_path_buf(),
            identity: Some(self.sshds.identity.clone()),
            known_hosts: Some(self.sshds.known_hosts.clone()),
            config: Some(self.ssh_config.clone()),
            timeout: Duration::from_secs(20),
        }
    }

    fn servers(&self) -> Vec<OpensshServer> {
        (0..self.dirs.len())
            .map(|i| OpensshServer::new(self.target(i)))
            .collect()
    }

    fn read(&self, i: usize, f: &str) -> Vec<u8> {
        fs::read(self.dirs[i].path().join(f)).unwrap()
    }

    fn holds(&self, i: usize, files: &KeyFiles) -> bool {
        self.read(i, "KeyFile") == files.keyfile && self.read(i, "KeyFileExt") == *files.keyfileext
    }

    /// Every file, backup and mtime of every conf dir, to compare before and after.
    fn snapshot(&self) -> Vec<Vec<(String, Vec<u8>, i64)>> {
        self.dirs.iter().map(|d| tree(d.path())).collect()
    }
}

fn tree(dir: &Path) -> Vec<(String, Vec<u8>, i64)> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if p.is_dir() {
            for (n, b, m) in tree(&p) {
                out.push((format!("{name}/{n}"), b, m));
            }
        } else {
            out.push((name, fs::read(&p).unwrap(), e.metadata().unwrap().mtime()));
        }
    }
    out.sort();
    out
}

fn write_0600(p: &Path, bytes: &[u8]) {
    fs::write(p, bytes).unwrap();
    fs::set_permissions(p, fs::Permissions::from_mode(0o600)).unwrap();
}

fn refs<S: Server>(s: &[S]) -> Vec<&dyn Server> {
    s.iter().map(|s| s as &dyn Server).collect()
}

fn logins(cell: &Cell, i: usize) -> usize {
    cell.sshds.sshds[i]
        .log()
        .lines()
        .filter(|l| l.contains("Accepted "))
        .count()
}

fn backups(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir.join(".afskeys-backup"))
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn no_stage_left(dir: &Path) -> bool {
    fs::read_dir(dir).unwrap().all(|e| {
        !e.unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with(STAGE_PREFIX)
    })
}

#[test]
fn push_then_verify_over_openssh() {
    let Some(cell) = Cell::new(4) else { return };
    let servers = cell.servers();
    let files = new_files();
    let r = fanout::push(&refs(&servers), &files, 4, &NoProgress);
    assert!(r.ok(), "{:?}\n{}", r.failures(), cell.sshds.logs());
    let v = fanout::verify(&refs(&servers), &set(&[(1, 1), (2, 9)]), 4);
    for (i, d) in cell.dirs.iter().enumerate() {
        assert!(cell.holds(i, &files), "fs{i}");
        for f in ["KeyFile", "KeyFileExt"] {
            let m = fs::metadata(d.path().join(f)).unwrap().mode() & 0o7777;
            assert_eq!(m, 0o600, "fs{i} {f}");
        }
        let csdb = fs::metadata(d.path().join("CellServDB")).unwrap().mtime() as u64;
        assert!(csdb > OLD_CELLSERVDB_MTIME, "fs{i}: CellServDB not bumped");
        let b = backups(d.path());
        // KeyFile (DES keys only) is unchanged: not replaced, no backup
        assert_eq!(b.len(), 1, "fs{i}: {b:?}");
        assert!(b[0].starts_with("KeyFileExt."), "fs{i}: {b:?}");
        let old = fs::read(d.path().join(".afskeys-backup").join(&b[0])).unwrap();
        assert_eq!(old, *old_files().keyfileext, "fs{i}: the KeyFileExt backup");
        let bdir = fs::metadata(d.path().join(".afskeys-backup")).unwrap();
        assert_eq!(bdir.mode() & 0o777, 0o700);
        assert!(no_stage_left(d.path()), "fs{i}");
    }
    assert!(
        v.servers
            .iter()
            .all(|x| matches!(x.agreement, Agreement::Agree)),
        "{v:?}"
    );
    // one master connection per server for push and verify
    for i in 0..4 {
        assert_eq!(
            logins(&cell, i),
            1,
            "sshd{i}:\n{}",
            cell.sshds.sshds[i].log()
        );
    }
    // the same push again changes nothing
    let before = cell.snapshot();
    let r = fanout::push(&refs(&servers), &files, 4, &NoProgress);
    assert!(r.ok(), "{:?}", r.failures());
    assert_eq!(
        cell.snapshot(),
        before,
        "an identical push changed something"
    );
    // the control sockets are in private dirs, and gone when the servers are dropped
    let ctl: Vec<PathBuf> = servers
        .iter()
        .map(|s| s.control_dir().expect("made").to_path_buf())
        .collect();
    for c in &ctl {
        assert_eq!(
            fs::metadata(c).unwrap().mode() & 0o777,
            0o700,
            "{}",
            c.display()
        );
        let socket = fs::read_dir(c).unwrap().count();
        assert_eq!(socket, 1, "{}: one master's directory", c.display());
    }
    drop(servers);
    for c in &ctl {
        assert!(!c.exists(), "{} left behind", c.display());
    }
    for i in 0..4 {
        assert_eq!(logins(&cell, i), 1);
    }
}

#[test]
fn changed_and_unknown_host_keys_are_refused_with_nothing_written() {
    let Some(mut cell) = Cell::new(3) else { return };
    cell.sshds.sshds[2].restart_with_new_host_key();
    let new_fp = cell.sshds.sshds[2].fingerprint();
    let before = cell.snapshot();
    let servers = cell.servers();
    let r = fanout::push(&refs(&servers), &new_files(), 3, &NoProgress);
    assert!(!r.ok());
    let msg = r
        .failures()
        .iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        msg.contains("fs2") && msg.contains("HOST KEY CHANGED"),
        "{msg}"
    );
    assert!(msg.contains(&new_fp), "{msg}");
    drop(servers);
    assert_eq!(
        cell.snapshot(),
        before,
        "written while a host key was wrong"
    );

    // unknown: known_hosts without sshd 1
    let kh = cell.sshds.dir.path().join("known_hosts_partial");
    cell.sshds.write_known_hosts(&kh, &[1, 2]);
    let servers: Vec<OpensshServer> = (0..2)
        .map(|i| {
            OpensshServer::new(OpensshTarget {
                known_hosts: Some(kh.clone()),
                ..cell.target(i)
            })
        })
        .collect();
    let r = fanout::push(&refs(&servers), &new_files(), 2, &NoProgress);
    assert!(!r.ok());
    let msg = format!("{:?}", r.failures());
    assert!(msg.contains("fs1") && msg.contains("UNKNOWN HOST"), "{msg}");
    drop(servers);
    assert_eq!(cell.snapshot(), before, "written to an unknown host");
    // the user's config saying StrictHostKeyChecking no changes nothing
    fs::write(
        &cell.ssh_config,
        format!("{}StrictHostKeyChecking no\n", sshd::TEST_SSH_CONFIG),
    )
    .unwrap();
    let s = OpensshServer::new(OpensshTarget {
        known_hosts: Some(kh.clone()),
        ..cell.target(1)
    });
    let e = s.install(&new_files()).unwrap_err().to_string();
    assert!(e.contains("UNKNOWN HOST"), "{e}");
    assert_eq!(
        fs::read_to_string(&kh).unwrap().lines().count(),
        1,
        "a key was added"
    );
    drop(s);
    assert_eq!(cell.snapshot(), before);
}

#[test]
fn a_connection_cut_leaves_the_old_files_or_the_new_ones() {
    let Some(cell) = Cell::new(2) else { return };
    let servers = cell.servers();
    let files = new_files();
    // cut between stage and commit: that server keeps the old files, exactly
    let staged: Vec<_> = servers.iter().map(|s| s.stage(&files).unwrap()).collect();
    assert!(cell.sshds.sshds[1].cut_connections() > 0);
    let mut results = Vec::new();
    for st in staged {
        results.push(st.commit());
    }
    assert!(results[0].is_ok(), "{:?}", results[0]);
    assert!(results[1].is_err());
    assert!(cell.holds(0, &files));
    assert!(
        cell.holds(1, &old_files()),
        "fs1 changed although its commit was cut"
    );
    // cuts at several moments during an install: every file is old or new, never torn
    let newer = KeyFiles::of(&set(&[(1, 1), (2, 9), (3, 4)]));
    let mut landed = 0;
    for (round, delay_ms) in [0u64, 5, 15, 30, 60, 120].into_iter().enumerate() {
        let target = if round % 2 == 0 { &files } else { &newer };
        let other = if round % 2 == 0 { &newer } else { &files };
        let s = OpensshServer::new(cell.target(1));
        let sshd = &cell.sshds.sshds[1];
        let (killed, outcome) = std::thread::scope(|sc| {
            let cut = sc.spawn(|| {
                std::thread::sleep(Duration::from_millis(delay_ms));
                sshd.cut_connections()
            });
            let outcome = s.install(target);
            (cut.join().unwrap(), outcome)
        });
        // A cut that killed the install's session while it ran, and made it fail.
        if killed > 0 && outcome.is_err() {
            landed += 1;
        }
        let kf = cell.read(1, "KeyFile");
        let kx = cell.read(1, "KeyFileExt");
        let fine = [target, other, &old_files()]
            .iter()
            .any(|f| f.keyfile == kf)
            && [target, other, &old_files()]
                .iter()
                .any(|f| *f.keyfileext == kx);
        assert!(fine, "round {round}: a torn or foreign key file");
    }
    assert!(
        landed > 0,
        "no cut landed while an install ran: nothing was tested"
    );
}

/// An ssh_config with a bastion (sshd 0) and a server alias behind it (sshd 1).
#[test]
fn an_ssh_config_alias_through_a_proxyjump_bastion() {
    let Some(cell) = Cell::new(2) else { return };
    let cfg = format!(
        "Host bastion\n  HostName 127.0.0.1\n  Port {p0}\n\
         Host fs-behind\n  HostName 127.0.0.1\n  Port {p1}\n  ProxyJump bastion\n\
         Host *\n  User root\n  IdentityFile {id}\n  IdentitiesOnly yes\n\
         \x20 UserKnownHostsFile {kh}\n  GlobalKnownHostsFile /dev/null\n\
         \x20 StrictHostKeyChecking yes\n  LogLevel ERROR\n",
        p0 = cell.sshds.sshds[0].port,
        p1 = cell.sshds.sshds[1].port,
        id = cell.sshds.identity.display(),
        kh = cell.sshds.known_hosts.display(),
    );
    fs::write(&cell.ssh_config, cfg).unwrap();
    // port, user, identity and known_hosts all come from the ssh_config
    let s = OpensshServer::new(OpensshTarget {
        host: "fs-behind".into(),
        port: None,
        identity: None,
        known_hosts: None,
        ..cell.target(1)
    });
    s.install(&new_files()).unwrap();
    assert_eq!(s.read_keys().unwrap(), set(&[(1, 1), (2, 9)]));
    assert!(cell.holds(1, &new_files()));
    assert!(
        cell.holds(0, &old_files()),
        "the bastion's own conf dir was touched"
    );
    assert_eq!(
        logins(&cell, 0),
        1,
        "not through the bastion:\n{}",
        cell.sshds.logs()
    );
    assert_eq!(logins(&cell, 1), 1);
}

/// `ssh-agent -D -a SOCK`, killed on drop.
struct Agent {
    child: Child,
    sock: PathBuf,
}

impl Agent {
    fn start(dir: &Path, key: &Path) -> Agent {
        let sock = dir.join("agent.sock");
        let child = Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&sock)
            .stdout(Stdio::null())
            .spawn()
            .expect("ssh-agent (openssh-client) is needed");
        for _ in 0..200 {
            if sock.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let st = Command::new("ssh-add")
            .arg(key)
            .env("SSH_AUTH_SOCK", &sock)
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success(), "ssh-add failed");
        Agent { child, sock }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn agent_only_login_over_both_transports() {
    let Some(cell) = Cell::new(2) else { return };
    let agent = Agent::start(cell.sshds.dir.path(), &cell.sshds.identity);
    // the only test in this binary that logs in without an identity
    std::env::set_var("SSH_AUTH_SOCK", &agent.sock);
    let o = OpensshServer::new(OpensshTarget {
        identity: None,
        ..cell.target(0)
    });
    o.install(&new_files()).unwrap();
    assert!(cell.holds(0, &new_files()));
    let s = SshServer::new(SshTarget {
        name: "fs1".into(),
        host: "127.0.0.1".into(),
        port: cell.sshds.sshds[1].port,
        user: sshd::user(),
        confdir: cell.dirs[1].path().to_path_buf(),
        identity: None,
        known_hosts: Some(cell.sshds.known_hosts.clone()),
        timeout: Duration::from_secs(20),
    });
    s.install(&new_files()).unwrap();
    assert!(cell.holds(1, &new_files()));
    drop((o, s));
    drop(agent);
}

#[test]
fn a_host_key_signed_by_an_ssh_ca_is_trusted_through_cert_authority() {
    let Some(mut cell) = Cell::new(1) else { return };
    let dir = cell.sshds.dir.path().to_path_buf();
    let ca = dir.join("host_ca");
    let ca_pub = sshd::keygen(&ca, "afskeys-test-host-ca");
    let sshd0 = &mut cell.sshds.sshds[0];
    let st = Command::new("ssh-keygen")
        .args(["-q", "-s"])
        .arg(&ca)
        .args(["-I", "fs0", "-h", "-n", "127.0.0.1"])
        .arg(sshd0.host_key_pub())
        .status()
        .unwrap();
    assert!(st.success(), "ssh-keygen -s failed");
    sshd0.extra_config = format!(
        "HostCertificate {}/host_ed25519-cert.pub\n",
        sshd0.dir.display()
    );
    sshd0.stop();
    assert!(sshd0.start());
    // known_hosts holds only the CA
    let kh = dir.join("known_hosts_ca");
    fs::write(&kh, format!("@cert-authority * {ca_pub}\n")).unwrap();
    let s = OpensshServer::new(OpensshTarget {
        known_hosts: Some(kh.clone()),
        ..cell.target(0)
    });
    if let Err(e) = s.install(&new_files()) {
        panic!("{e}\n{}", cell.sshds.logs());
    }
    assert!(cell.holds(0, &new_files()));
    drop(s);
    // a CA that did not sign it is refused
    let other = sshd::keygen(&dir.join("other_ca"), "other-ca");
    fs::write(&kh, format!("@cert-authority * {other}\n")).unwrap();
    let s = OpensshServer::new(OpensshTarget {
        known_hosts: Some(kh),
        ..cell.target(0)
    });
    let e = s.install(&old_files()).unwrap_err().to_string();
    assert!(e.contains("fs0") && e.contains("UNKNOWN HOST"), "{e}");
    assert!(cell.holds(0, &new_files()));
}

/// `bin/bench-fleet`'s OpenSSH rows: push + verify over the openssh transport to N servers
/// (one sshd each), fresh connections, parallel = N. Ignored: run by `bin/bench-fleet`.
#[test]
#[ignore]
fn bench_fleet_openssh() {
    use std::time::Instant;
    let ns: Vec<usize> = std::env::var("AFSKEYS_BENCH_N")
        .unwrap_or_else(|_| "1 8 32 64".into())
        .split_whitespace()
        .map(|s| s.parse().expect("AFSKEYS_BENCH_N: numbers"))
        .collect();
    let max = *ns.iter().max().unwrap();
    let Some(cell) = Cell::new(max) else { return };
    for (round, &n) in ns.iter().enumerate() {
        let set = set(&[(1, 1), (2, round as u8 * 2 + 3)]);
        let files = KeyFiles::of(&set);
        let servers: Vec<OpensshServer> =
            (0..n).map(|i| OpensshServer::new(cell.target(i))).collect();
        let t = Instant::now();
        let r = fanout::push(&refs(&servers), &files, n, &NoProgress);
        let pushed = t.elapsed();
        assert!(r.ok(), "{:?}", r.failures());
        let v = fanout::verify(&refs(&servers), &set, n);
        let ours = t.elapsed();
        assert!(v.all_agree(), "{:?}", v.disagreeing());
        drop(servers);
        eprintln!(
            "N={n:<3} openssh transport push+verify {:6.2} s (push {:5.2} s, skew {:5.1} ms)",
            ours.as_secs_f64(),
            pushed.as_secs_f64(),
            r.skew.unwrap_or_default().as_secs_f64() * 1000.0
        );
    }
}

#[test]
fn backups_are_trimmed_and_abandoned_stage_dirs_removed() {
    let Some(cell) = Cell::new(1) else { return };
    let dir = cell.dirs[0].path();
    let stale = dir.join(format!("{STAGE_PREFIX}0123456789abcdef"));
    let fresh = dir.join(format!("{STAGE_PREFIX}fedcba9876543210"));
    for d in [&stale, &fresh] {
        fs::create_dir(d).unwrap();
        fs::write(d.join("KeyFile"), b"left by a cut").unwrap();
    }
    let two_days_ago = std::time::SystemTime::now() - Duration::from_secs(2 * 86400);
    fs::File::open(&stale)
        .unwrap()
        .set_modified(two_days_ago)
        .unwrap();
    let s = OpensshServer::new(cell.target(0));
    for round in 0..12u8 {
        s.install(&KeyFiles::of(&set(&[(1, 1), (2, round + 10)])))
            .unwrap();
    }
    drop(s);
    assert!(!stale.exists(), "an abandoned stage dir was kept");
    assert!(fresh.exists(), "a fresh stage dir was removed");
    let b = backups(dir);
    assert_eq!(b.len(), 10, "{b:?}");
    assert!(b.iter().all(|n| n.starts_with("KeyFileExt.")), "{b:?}");
}

/// The compare-and-swap of a commit, over both transports: a stage says what it found; a
/// key file changed in place after the stage (as asetkey and bos addkey write: O_TRUNC, no
/// rename) or replaced by a rename (as another control machine's afskeys does) makes the
/// recheck before the commit refuse, and the discard leaves that change as it is; an
/// install over keys the caller read earlier is refused when the server no longer holds
/// them.
fn a_changed_server_is_refused(s: &dyn Server, dir: &Path) {
    let write = |name: &str, bytes: &[u8], in_place: bool| {
        let p = dir.join(name);
        if in_place {
            fs::OpenOptions::new()
                .write(true)
                .truncate(true)
                .open(&p)
                .and_then(|mut f| std::io::Write::write_all(&mut f, bytes))
                .unwrap();
        } else {
            let tmp = dir.join(format!("{name}.new"));
            write_0600(&tmp, bytes);
            fs::rename(&tmp, &p).unwrap();
        }
    };
    let by_hand = KeyFiles::of(&set(&[(1, 1), (7, 7)]));
    for (i, in_place) in [true, false].into_iter().enumerate() {
        write("KeyFileExt", &old_files().keyfileext, true);
        let st = s.stage(&new_files()).unwrap();
        assert_eq!(
            st.found().and_then(|f| f.keys()),
            Some(set(&[(1, 1)])),
            "{}: the stage did not say what it found",
            s.name()
        );
        assert!(st.recheck().is_ok(), "{}: nothing changed yet", s.name());
        write("KeyFileExt", &by_hand.keyfileext, in_place);
        let e = st.recheck().unwrap_err().to_string();
        assert!(
            e.contains("KeyFileExt changed on the server") && e.contains(s.name()),
            "{} (trial {i}): {e}",
            s.name()
        );
        st.discard();
        assert_eq!(
            fs::read(dir.join("KeyFileExt")).unwrap(),
            *by_hand.keyfileext
        );
        assert!(no_stage_left(dir), "{}: a stage dir left", s.name());
    }
    let e = s
        .install_over(&new_files(), &set(&[(1, 1)]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("its keys changed on the server"), "{e}");
    assert_eq!(
        fs::read(dir.join("KeyFileExt")).unwrap(),
        *by_hand.keyfileext
    );
    s.install_over(&new_files(), &set(&[(1, 1), (7, 7)]))
        .unwrap();
    assert_eq!(
        fs::read(dir.join("KeyFileExt")).unwrap(),
        *new_files().keyfileext
    );
}

#[test]
fn a_server_changed_after_its_stage_is_refused_over_both_transports() {
    let Some(cell) = Cell::new(2) else { return };
    let o = OpensshServer::new(cell.target(0));
    a_changed_server_is_refused(&o, cell.dirs[0].path());
    let s = SshServer::new(SshTarget {
        name: "fs1".into(),
        host: "127.0.0.1".into(),
        port: cell.sshds.sshds[1].port,
        user: sshd::user(),
        confdir: cell.dirs[1].path().to_path_buf(),
        identity: Some(cell.sshds.identity.clone()),
        known_hosts: Some(cell.sshds.known_hosts.clone()),
        timeout: Duration::from_secs(20),
    });
    a_changed_server_is_refused(&s, cell.dirs[1].path());
}

//! Real OpenSSH servers for tests: N `sshd`s on 127.0.0.1, each on its own free high port
//! with its own ed25519 host key, sharing one authorized key made for the test. The harness
//! writes a client identity and a known_hosts file with the exact `[127.0.0.1]:port` entries,
//! and kills every sshd (and the per-connection processes it forked) on drop.
//!
//! Sessions get `SHLVL=1` (sshd's `SetEnv`), so root's bash, started by sshd for every
//! session, does not source `~/.bashrc`: on the build machines that file runs `pyenv init`
//! (0.2 s of CPU per session, and a lock that a session killed mid-test leaves behind, which
//! then hangs every later login). A real AFS server's root has no such rc file; the tests
//! measure SSH, not it.
//!
//! Needs `/usr/sbin/sshd` (Debian `openssh-server`), `ssh-keygen` and root (sshd must run as
//! root to log a user in). Missing tools fail the test when `AFSKEYS_REQUIRE_INTEROP` is set
//! (as `bin/test` and CI set it) and skip it with a message otherwise.
#![allow(dead_code)]

pub mod proxy;

use std::fs;
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const SSHD: &str = "/usr/sbin/sshd";
pub const SFTP_SERVER: &str = "/usr/lib/openssh/sftp-server";

/// The ssh_config the OpenSSH-transport tests give `ssh -F`: no system or user config, no
/// global known_hosts, quiet.
pub const TEST_SSH_CONFIG: &str = "GlobalKnownHostsFile /dev/null\nLogLevel ERROR\n";

/// Is a real sshd usable here? When not: panics if `AFSKEYS_REQUIRE_INTEROP` is set, else
/// prints why the calling test is skipped and returns false.
pub fn available() -> bool {
    let mut missing = Vec::new();
    for tool in [SSHD, SFTP_SERVER] {
        if !Path::new(tool).exists() {
            missing.push(tool.to_string());
        }
    }
    if Command::new("ssh-keygen")
        .arg("-?")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_err()
    {
        missing.push("ssh-keygen".into());
    }
    if unsafe { libc::geteuid() } != 0 {
        missing.push("root (sshd must run as root)".into());
    }
    if missing.is_empty() {
        return true;
    }
    if std::env::var_os("AFSKEYS_REQUIRE_INTEROP").is_some() {
        panic!(
            "missing {missing:?} with AFSKEYS_REQUIRE_INTEROP set \
             (apt-get install -y --no-install-recommends openssh-server)"
        );
    }
    eprintln!(
        "SKIPPED: missing {missing:?}; install openssh-server, or set \
         AFSKEYS_REQUIRE_INTEROP=1 to make this fail"
    );
    false
}

/// The user the sshds let in: whoever runs the tests (root).
pub fn user() -> String {
    std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "root".into())
}

/// Make an ed25519 key pair at `path` (private) and `path.pub`; returns the public line.
pub fn keygen(path: &Path, comment: &str) -> String {
    let _ = fs::remove_file(path);
    let _ = fs::remove_file(path.with_extension("pub"));
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .expect("cannot run ssh-keygen");
    assert!(
        out.status.success(),
        "ssh-keygen failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    fs::read_to_string(pub_path(path))
        .unwrap()
        .trim()
        .to_string()
}

fn pub_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".pub");
    PathBuf::from(p)
}

/// The SHA256 fingerprint of a public key file, as `ssh-keygen -l` prints it.
pub fn fingerprint(pub_file: &Path) -> String {
    let out = Command::new("ssh-keygen")
        .arg("-l")
        .arg("-E")
        .arg("sha256")
        .arg("-f")
        .arg(pub_file)
        .output()
        .expect("cannot run ssh-keygen -l");
    let s = String::from_utf8_lossy(&out.stdout);
    s.split_whitespace()
        .nth(1)
        .unwrap_or_else(|| panic!("no fingerprint in {s:?}"))
        .to_string()
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One sshd: its dir (config, host key, pid file, log), port and process.
pub struct Sshd {
    pub port: u16,
    pub dir: PathBuf,
    /// Lines appended to its sshd_config (e.g. `HostCertificate`, `GSSAPIAuthentication`);
    /// applied by the next `start`.
    pub extra_config: String,
    authorized_keys: PathBuf,
    child: Option<Child>,
}

impl Sshd {
    pub fn host_key(&self) -> PathBuf {
        self.dir.join("host_ed25519")
    }

    pub fn host_key_pub(&self) -> PathBuf {
        pub_path(&self.host_key())
    }

    /// The public host key line (`ssh-ed25519 AAAA… comment`).
    pub fn host_key_line(&self) -> String {
        fs::read_to_string(self.host_key_pub())
            .unwrap()
            .trim()
            .to_string()
    }

    /// Its SHA256 host key fingerprint.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.host_key_pub())
    }

    /// The known_hosts line for it: `[127.0.0.1]:port ssh-ed25519 AAAA…`.
    pub fn known_hosts_line(&self) -> String {
        let mut parts = self.host_key_line();
        // drop the comment
        let fields: Vec<&str> = parts.split_whitespace().take(2).collect();
        parts = fields.join(" ");
        format!("[127.0.0.1]:{} {}", self.port, parts)
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("sshd.log")).unwrap_or_default()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    fn write_config(&self) {
        let cfg = format!(
            "Port {port}\n\
             ListenAddress 127.0.0.1\n\
             HostKey {hk}\n\
             PidFile {dir}/sshd.pid\n\
             AuthorizedKeysFile {ak}\n\
             UsePAM no\n\
             StrictModes no\n\
             PermitRootLogin prohibit-password\n\
             PasswordAuthentication no\n\
             KbdInteractiveAuthentication no\n\
             PubkeyAuthentication yes\n\
             MaxStartups 200\n\
             MaxSessions 100\n\
             UseDNS no\n\
             PrintMotd no\n\
             LogLevel INFO\n\
             SetEnv SHLVL=1\n\
             Subsystem sftp {sftp}\n\
             {extra}",
            port = self.port,
            hk = self.host_key().display(),
            dir = self.dir.display(),
            ak = self.authorized_keys.display(),
            sftp = SFTP_SERVER,
            extra = self.extra_config,
        );
        fs::write(self.dir.join("sshd_config"), cfg).unwrap();
    }

    /// Start (or restart) it on its port with its current host key; waits until it answers
    /// with an SSH banner. Returns false when it could not bind the port.
    pub fn start(&mut self) -> bool {
        assert!(
            self.child.is_none(),
            "sshd on {} already running",
            self.port
        );
        fs::create_dir_all("/run/sshd").unwrap();
        self.write_config();
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("sshd.log"))
            .unwrap();
        let mut child = Command::new(SSHD)
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(self.dir.join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("cannot start sshd");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                return false;
            }
            if banner(self.port) {
                self.child = Some(child);
                return true;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "sshd on port {} did not answer within 10 s; log:\n{}",
                    self.port,
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stop it: the listener and every connection it is serving, as a machine going down
    /// would (established sessions die too). The port and host key are kept for `start`.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let pid = c.id();
            let below = descendants(pid);
            unsafe {
                libc::kill(pid as i32, libc::SIGKILL);
            }
            for p in below {
                unsafe {
                    libc::kill(p as i32, libc::SIGKILL);
                }
            }
            let _ = c.wait();
        }
    }

    /// Kill the processes serving established connections, leaving the listener up:
    /// every client connected now sees its connection cut.
    pub fn cut_connections(&self) -> usize {
        let Some(pid) = self.pid() else { return 0 };
        let below = descendants(pid);
        for p in &below {
            unsafe {
                libc::kill(*p as i32, libc::SIGKILL);
            }
        }
        below.len()
    }

    /// Stop it, give it a new host key, and start it again on the same port: the
    /// known_hosts entry the harness wrote now names the wrong key.
    pub fn restart_with_new_host_key(&mut self) {
        self.stop();
        keygen(&self.host_key(), "changed-host-key");
        assert!(self.start(), "sshd could not rebind port {}", self.port);
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Does something on `port` answer with an SSH banner?
fn banner(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let mut buf = [0u8; 8];
    let mut got = 0;
    while got < 8 {
        match s.read(&mut buf[got..]) {
            Ok(0) | Err(_) => return false,
            Ok(n) => got += n,
        }
    }
    &buf == b"SSH-2.0-"
}

/// Every process below `pid` (children, grandchildren…), from /proc.
pub fn descendants(pid: u32) -> Vec<u32> {
    let mut parent_of: Vec<(u32, u32)> = Vec::new();
    if let Ok(rd) = fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let Ok(stat) = fs::read_to_string(format!("/proc/{p}/stat")) else {
                continue;
            };
            // pid (comm) state ppid …: comm may hold spaces, so split after the last ')'
            let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
                continue;
            };
            if let Some(pp) = rest.split_whitespace().nth(1).and_then(|s| s.parse().ok()) {
                parent_of.push((p, pp));
            }
        }
    }
    let mut out = Vec::new();
    let mut frontier = vec![pid];
    while let Some(p) = frontier.pop() {
        for &(c, pp) in &parent_of {
            if pp == p && !out.contains(&c) {
                out.push(c);
                frontier.push(c);
            }
        }
    }
    out
}

/// N sshds with one client identity and one known_hosts naming them all.
pub struct Sshds {
    pub dir: tempfile::TempDir,
    /// The client's private key (its public half is in every sshd's authorized_keys).
    pub identity: PathBuf,
    /// `[127.0.0.1]:port` entries for every sshd, as started.
    pub known_hosts: PathBuf,
    pub sshds: Vec<Sshd>,
}

impl Sshds {
    /// Start `n` sshds, or `None` (after printing why) when sshd is not available and
    /// `AFSKEYS_REQUIRE_INTEROP` is unset.
    pub fn start(n: usize) -> Option<Sshds> {
        if !available() {
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("afskeys-sshd.")
            .tempdir()
            .unwrap();
        let identity = dir.path().join("id_ed25519");
        let client_pub = keygen(&identity, "afskeys-test-client");
        let authorized_keys = dir.path().join("authorized_keys");
        fs::write(&authorized_keys, format!("{client_pub}\n")).unwrap();
        let mut sshds = Vec::with_capacity(n);
        for i in 0..n {
            let sdir = dir.path().join(format!("sshd{i}"));
            fs::create_dir(&sdir).unwrap();
            keygen(&sdir.join("host_ed25519"), &format!("sshd{i}"));
            let mut tries = 0;
            loop {
                let mut s = Sshd {
                    port: free_port(),
                    dir: sdir.clone(),
                    extra_config: String::new(),
                    authorized_keys: authorized_keys.clone(),
                    child: None,
                };
                if s.start() {
                    sshds.push(s);
                    break;
                }
                tries += 1;
                assert!(tries < 5, "sshd{i} could not bind a port:\n{}", s.log());
            }
        }
        let known_hosts = dir.path().join("known_hosts");
        let me = Sshds {
            dir,
            identity,
            known_hosts,
            sshds,
        };
        me.write_known_hosts(&me.known_hosts, &[]);
        Some(me)
    }

    /// An afskeys.toml for a cell whose servers are `dirs`, the i-th behind the i-th sshd:
    /// `top` (top-level keys), the `[ssh]` table with the identity, known_hosts and `ssh`
    /// (more of its options), and for the `openssh` transport a private ssh_config.
    #[allow(dead_code)]
    pub fn cell_toml(&self, top: &str, ssh: &str, transport: &str, dirs: &[&Path]) -> String {
        let mut toml = format!(
            "{top}[ssh]\nidentity = \"{}\"\nknown_hosts = \"{}\"\n{ssh}",
            self.identity.display(),
            self.known_hosts.display()
        );
        if transport == "openssh" {
            let cfg = self.dir.path().join("ssh_config");
            fs::write(&cfg, TEST_SSH_CONFIG).unwrap();
            toml.push_str(&format!(
                "transport = \"openssh\"\nconfig = \"{}\"\n",
                cfg.display()
            ));
        }
        for (i, d) in dirs.iter().enumerate() {
            toml.push_str(&format!(
                "[[servers]]\nname = \"fs{i}\"\nhost = \"127.0.0.1\"\nport = {}\nuser = \"{}\"\nconfdir = \"{}\"\n",
                self.sshds[i].port,
                user(),
                d.display()
            ));
        }
        toml
    }

    /// Write a known_hosts file with the entries of every sshd except those in `skip`.
    pub fn write_known_hosts(&self, path: &Path, skip: &[usize]) {
        let mut text = String::new();
        for (i, s) in self.sshds.iter().enumerate() {
            if !skip.contains(&i) {
                text.push_str(&s.known_hosts_line());
                text.push('\n');
            }
        }
        fs::write(path, text).unwrap();
    }

    /// Hash a known_hosts file in place, as `HashKnownHosts yes` (Debian's default) does.
    pub fn hash_known_hosts(path: &Path) {
        let out = Command::new("ssh-keygen")
            .arg("-H")
            .arg("-f")
            .arg(path)
            .output()
            .unwrap();
        assert!(out.status.success(), "ssh-keygen -H failed");
        let _ = fs::remove_file(format!("{}.old", path.display()));
    }

    /// An `ssh` client command for sshd `i`, with the test identity and known_hosts and no
    /// system or user config; append the remote command.
    pub fn ssh(&self, i: usize) -> Command {
        let mut c = Command::new("ssh");
        c.args(self.client_opts())
            .arg("-p")
            .arg(self.sshds[i].port.to_string())
            .arg(format!("{}@127.0.0.1", user()));
        c
    }

    /// `scp` with the same options, port of sshd `i`.
    pub fn scp(&self, i: usize) -> Command {
        let mut c = Command::new("scp");
        c.args(self.client_opts())
            .arg("-q")
            .arg("-P")
            .arg(self.sshds[i].port.to_string());
        c
    }

    fn client_opts(&self) -> Vec<String> {
        vec![
            "-F".into(),
            "/dev/null".into(),
            "-i".into(),
            self.identity.display().to_string(),
            "-o".into(),
            format!("UserKnownHostsFile={}", self.known_hosts.display()),
            "-o".into(),
            "GlobalKnownHostsFile=/dev/null".into(),
            "-o".into(),
            "StrictHostKeyChecking=yes".into(),
            "-o".into(),
            "BatchMode=yes".into(),
            "-o".into(),
            "IdentitiesOnly=yes".into(),
            "-o".into(),
            "LogLevel=ERROR".into(),
        ]
    }

    /// The sshd's logs, for a failing test's message.
    pub fn logs(&self) -> String {
        let mut s = String::new();
        for (i, d) in self.sshds.iter().enumerate() {
            let l = d.log();
            let tail: Vec<&str> = l.lines().rev().take(20).collect();
            s.push_str(&format!("--- sshd{i} (port {}) ---\n", d.port));
            for line in tail.into_iter().rev() {
                s.push_str(line);
                s.push('\n');
            }
        }
        s
    }
}

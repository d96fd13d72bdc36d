//! Machines for interop tests: each one its own network, mount and PID namespace (and, when it
//! has a host name, its own UTS namespace), with its own `/etc/openafs`, `/var/log/openafs`,
//! `/var/lib/openafs` and `/tmp` bound from a directory under /var/tmp (not under /tmp, which
//! every machine replaces with its own, so a test sees each machine's files by their outside
//! paths), optionally its own `/etc/hosts` and `/vicepa`. Machines are joined by veth pairs to
//! a bridge in one machine's network namespace ([`wire`]); commands run inside with nsenter.
//!
//! The namespaces die with the test binary, even when no destructor runs (a machine kept in a
//! `static`): the holder (`unshare --kill-child`) gets SIGKILL when the thread that spawned it
//! ends, and all holders are spawned by one thread that lives as long as the test binary; its
//! death kills the namespace's init, and with it every process inside.
//!
//! `/vicepa`: a machine that asks for its own binds its directory over `/vicepa` inside its
//! mount namespace. The host needs that mount point: when `/vicepa` is missing on the host, an
//! empty directory is made there (and left: it has no `AlwaysAttach` file and is no mount
//! point, so it is no partition for a file server on the host).
#![allow(dead_code)]

use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Mutex, OnceLock};

/// What a machine has beyond its own namespaces and OpenAFS directories.
#[derive(Default)]
pub struct Extras<'a> {
    /// Its own UTS namespace with this host name.
    pub hostname: Option<&'a str>,
    /// Its own /etc/hosts with this text.
    pub hosts: Option<String>,
    /// Its own /vicepa.
    pub vicepa: bool,
}

/// One machine: its directories and the first process of its namespaces.
pub struct Machine {
    pub root: tempfile::TempDir,
    holder: Child,
    /// PID (in our namespace) of the namespace's init.
    pub pid: u32,
    pub ip: String,
    /// Its host name (its address when it has no UTS namespace of its own).
    pub name: String,
    uts: bool,
}

impl Machine {
    /// A machine at `ip` with nothing extra.
    pub fn new(ip: &str) -> Machine {
        Machine::with(ip, &Extras::default())
    }

    pub fn with(ip: &str, x: &Extras) -> Machine {
        let root = tempfile::tempdir_in("/var/tmp").unwrap();
        let r = root.path();
        for d in ["etc/server", "log", "lib/db", "lib/local", "tmp", "vicepa"] {
            fs::create_dir_all(r.join(d)).unwrap();
        }
        fs::set_permissions(r.join("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
        for d in ["lib/db", "lib/local"] {
            fs::set_permissions(r.join(d), fs::Permissions::from_mode(0o700)).unwrap();
        }
        let mut extra = String::new();
        if let Some(h) = x.hostname {
            extra.push_str(&format!("hostname {h}; "));
        }
        if let Some(hosts) = &x.hosts {
            fs::write(r.join("hosts"), hosts).unwrap();
            extra.push_str(&format!("mount --bind {}/hosts /etc/hosts; ", r.display()));
        }
        if x.vicepa {
            fs::create_dir_all("/vicepa").unwrap();
            extra.push_str(&format!("mount --bind {}/vicepa /vicepa; ", r.display()));
        }
        // /tmp last: the others are bound from under the old /tmp.
        let script = format!(
            "set -e; ip link set lo up; {extra}\
             mount --bind {r}/etc /etc/openafs; \
             mount --bind {r}/log /var/log/openafs; \
             mount --bind {r}/lib /var/lib/openafs; \
             mount --bind {r}/tmp /tmp; \
             mount -t proc proc /proc; \
             echo ready; exec sleep infinity",
            r = r.display()
        );
        let mut c = Command::new("unshare");
        c.args([
            "-m",
            "-n",
            "-p",
            "-f",
            "--kill-child",
            "--propagation",
            "private",
        ]);
        if x.hostname.is_some() {
            c.arg("-u");
        }
        c.args(["sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut holder = spawn_held(c);
        let mut line = String::new();
        BufReader::new(holder.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready", "could not set up a machine");
        let children =
            fs::read_to_string(format!("/proc/{id}/task/{id}/children", id = holder.id())).unwrap();
        let pid = children.split_whitespace().next().unwrap().parse().unwrap();
        Machine {
            root,
            holder,
            pid,
            ip: ip.to_string(),
            name: x.hostname.unwrap_or(ip).to_string(),
            uts: x.hostname.is_some(),
        }
    }

    /// The conf dir, as seen from outside.
    pub fn confdir(&self) -> PathBuf {
        self.root.path().join("etc/server")
    }

    /// The outside path of a path inside: `/etc/openafs/…`, `/var/log/openafs/…`,
    /// `/var/lib/openafs/…`, `/tmp/…` or `/vicepa/…`.
    pub fn outside(&self, inside: &str) -> PathBuf {
        let map = [
            ("/etc/openafs", "etc"),
            ("/var/log/openafs", "log"),
            ("/var/lib/openafs", "lib"),
            ("/tmp", "tmp"),
            ("/vicepa", "vicepa"),
        ];
        for (pre, dir) in map {
            if let Some(rest) = inside.strip_prefix(pre) {
                return self
                    .root
                    .path()
                    .join(dir)
                    .join(rest.trim_start_matches('/'));
            }
        }
        panic!("{inside} is not a machine's own path");
    }

    /// nsenter into every namespace of this machine.
    pub fn enter(&self) -> Command {
        let mut c = Command::new("nsenter");
        c.arg("-t")
            .arg(self.pid.to_string())
            .args(["-m", "-n", "-p"]);
        if self.uts {
            c.arg("-u");
        }
        c
    }

    /// Run a shell script inside.
    pub fn sh(&self, script: &str) -> Output {
        let mut c = self.enter();
        c.args(["sh", "-c", script]);
        crate::common::pipe(c, b"")
    }

    /// Run a shell script in this machine's network namespace only (PIDs are ours).
    #[track_caller]
    pub fn net(&self, script: &str) -> String {
        let mut c = Command::new("nsenter");
        c.arg("-t")
            .arg(self.pid.to_string())
            .args(["-n", "sh", "-c", script]);
        crate::common::ok(crate::common::pipe(c, b""))
    }

    /// `sh`, which must succeed.
    #[track_caller]
    pub fn must(&self, script: &str) -> String {
        crate::common::ok(self.sh(script))
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        // The namespace's init dies, and with it every process inside.
        let _ = Command::new("kill")
            .args(["-9", &self.pid.to_string()])
            .status();
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// A bridge `br0` in `hub`'s network namespace holding `hub.ip/24`, and a veth pair from it to
/// each of `others` (their `eth0`, holding their address /24).
pub fn wire(hub: &Machine, others: &[&Machine]) {
    hub.must(&format!(
        "ip link add br0 type bridge && ip addr add {}/24 dev br0 && ip link set br0 up",
        hub.ip
    ));
    for (i, s) in others.iter().enumerate() {
        hub.net(&format!(
            "ip link add v{i} type veth peer name eth0 netns {pid} && \
             ip link set v{i} master br0 && ip link set v{i} up",
            pid = s.pid
        ));
        s.must(&format!(
            "ip addr add {}/24 dev eth0 && ip link set eth0 up",
            s.ip
        ));
    }
}

/// Spawn `c` from a thread that lives as long as the test binary, the child getting SIGKILL
/// when that thread ends (PR_SET_PDEATHSIG follows the spawning *thread*, and a test's thread
/// ends with the test).
fn spawn_held(mut c: Command) -> Child {
    type Job = (Command, Sender<std::io::Result<Child>>);
    static SPAWNER: OnceLock<Mutex<Sender<Job>>> = OnceLock::new();
    let tx = SPAWNER.get_or_init(|| {
        let (tx, rx) = channel::<Job>();
        std::thread::spawn(move || {
            for (mut c, back) in rx {
                let _ = back.send(c.spawn());
            }
            // The senders live in a static: never reached.
            loop {
                std::thread::park();
            }
        });
        Mutex::new(tx)
    });
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        c.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let (back, answer) = channel();
    let prog = format!("{c:?}");
    tx.lock()
        .unwrap_or_else(|e| e.into_inner())
        .send((c, back))
        .unwrap();
    answer
        .recv()
        .unwrap()
        .unwrap_or_else(|e| panic!("cannot run {prog}: {e}"))
}

/// Remove these directories once the test binary has exited (for machines kept in a `static`,
/// whose destructors never run): a process outside waits for the returned pipe to close, which
/// happens when the binary exits, gives the namespaces' processes a moment to die, and removes
/// them. Keep the returned handle as long as the directories are in use.
pub fn remove_at_exit(dirs: &[&Path]) -> ChildStdin {
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg("cat >/dev/null; sleep 2; rm -rf \"$@\"")
        .arg("remove_at_exit")
        .args(dirs)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c.spawn().expect("sh").stdin.take().unwrap()
}

/// Are these daemons (full paths) and tools (on PATH) here? Missing ones fail the tests of
/// `what` when AFSKEYS_REQUIRE_INTEROP is set, and skip them otherwise.
pub fn have_all(daemons: &[&str], tools: &[&str], what: &str) -> bool {
    let missing: Vec<&str> = daemons
        .iter()
        .copied()
        .filter(|p| !Path::new(p).exists())
        .collect();
    if !missing.is_empty() {
        if std::env::var_os("AFSKEYS_REQUIRE_INTEROP").is_some() {
            panic!("missing for {what}: {missing:?}");
        }
        eprintln!("skipping: missing {missing:?}");
        return false;
    }
    crate::common::have(tools)
}

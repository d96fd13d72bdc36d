//! A live OpenAFS 1.8.9 cell of real daemons, each machine its own network, mount, PID and
//! UTS namespace (see `netns/mod.rs`) with its own host name, `/etc/hosts` (naming every
//! machine of the cell), `/etc/openafs`, `/var/log/openafs`, `/var/lib/openafs`, `/tmp` and
//! `/vicepa`, all on the bridge 10.78.0.0/24 that lives in db1's network namespace:
//!
//! - `db1` (10.78.0.1), the system control machine, where afskeys runs: bosserver, ptserver,
//!   vlserver;
//! - `db2` (10.78.0.2), `db3` (10.78.0.3): bosserver, ptserver, vlserver;
//! - `fs1` (10.78.0.11): bosserver and an `fs` instance (fileserver, volserver, salvager) on
//!   `/vicepa` (a directory with `AlwaysAttach`); not a database server;
//! - `client` (10.78.0.21): no daemons; a client conf dir and a copy of the server conf dir
//!   with the cell's keys, for `vos`/`pts … -localauth`.
//!
//! Every bosserver runs with authentication; the harness talks to them with `-localauth`.
//! All machines start with the same key, kvno 1 (rxkad_krb5, enctypes 18 and 17), made by
//! afskeys on db1 and copied (KeyFile and KeyFileExt) to every other machine.
//!
//! ubik holds its first election only after about 75 s, so a cell takes minutes to come up:
//! [`shared`] starts one per test binary, shared by all its tests; tests that change keys or
//! restart daemons take [`lock`] first. The cell dies with the test binary.
//!
//! A server whose bosserver reads another conf dir than the one afskeys is given: every
//! machine's conf dir is reachable from outside ([`Machine::confdir`]), so a test can copy it
//! and point afskeys (a `[[servers]] confdir`) at the copy.
//!
//! `/vicepa`: the host gets an empty `/vicepa` directory when it has none (the mount point for
//! each machine's own; see `netns/mod.rs`).
//!
//! What the daemons did (OpenAFS 1.8.9, verified here; `fixtures/livecell/README.md` has the
//! tools' outputs, exit codes and timings):
//! - Start-up: the machines take under 1 s; both ubik quorums are settled (one sync site named
//!   by all three, `Recovery state 1f`) about 93 s after the daemons start (db1, the lowest
//!   address, became sync site both times); the whole cell is up in about 95 s.
//! - A new PRDB is empty: `pts examine system:administrators` answers `User or group doesn't
//!   exist` (PRNOENT, 267268) until the ptserver *sync site* has served a call, which creates
//!   the initial entries; a non-sync site answers from the empty database. So the harness asks
//!   the sync site itself once (`-config` with a CellServDB listing only it).
//! - A fileserver started before that loops on `Couldn't get CPS for AnyUser, will try again in
//!   30 seconds` (code 5376 before the quorum, 267268 after) and does not register in the
//!   VLDB meanwhile (`VL_RegisterAddrs rpc failed; will retry periodically (code=5376)`);
//!   `bos restart` of it then kills it by SIGQUIT before its handler is set: `fs:file exited
//!   on signal 3 (core dumped)`, a 30 MB `/var/log/openafs/corevol.fs`, and `bos status`
//!   says `Instance fs, has core file, currently running normally.` from then on. Started
//!   after the PRDB answers, it registers within about 1 s, with no restart.
//! - With a key (kvno) that a server lacks, `vos`/`pts -localauth` are refused or not
//!   depending on which database server the ubik client asks first: the refusal does not make
//!   it try the next one.
#![allow(dead_code)]

pub use crate::netns::Machine;
use crate::netns::{remove_at_exit, wire, Extras};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Output};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

pub const CELL: &str = "live.example.com";
/// Inside every machine.
pub const CONFDIR: &str = "/etc/openafs/server";
pub const CONFIG: &str = "/etc/openafs/afskeys.toml";
pub const PTSERVER: u16 = 7002;
pub const VLSERVER: u16 = 7003;
pub const TOOLS: &[&str] = &[
    "unshare",
    "nsenter",
    "ip",
    "hostname",
    "bos",
    "vos",
    "pts",
    "udebug",
    "bosserver",
];
pub const DAEMONS: &[&str] = &[
    "/usr/lib/openafs/ptserver",
    "/usr/lib/openafs/vlserver",
    "/usr/lib/openafs/fileserver",
    "/usr/lib/openafs/volserver",
    "/usr/lib/openafs/salvager",
];
/// The machines: name, address.
pub const MACHINES: [(&str, &str); 5] = [
    ("db1", "10.78.0.1"),
    ("db2", "10.78.0.2"),
    ("db3", "10.78.0.3"),
    ("fs1", "10.78.0.11"),
    ("client", "10.78.0.21"),
];
/// An address on the cell's network where nothing answers.
pub const NOBODY: &str = "10.78.0.99";

/// Are the tools here? Missing ones fail when AFSKEYS_REQUIRE_INTEROP is set.
pub fn have_all() -> bool {
    crate::netns::have_all(DAEMONS, TOOLS, "the live-cell tests")
}

/// The cell of this test binary, started at the first call (minutes) and shared; a start that
/// failed fails every later call at once with the same message.
pub fn shared() -> &'static LiveCell {
    static CELL: OnceLock<Result<LiveCell, String>> = OnceLock::new();
    let cell = CELL.get_or_init(|| {
        std::panic::catch_unwind(LiveCell::start).map_err(|e| {
            e.downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default()
        })
    });
    match cell {
        Ok(c) => c,
        Err(e) => panic!("the live cell did not start: {e}"),
    }
}

/// Serializes the tests that change the cell (keys, daemons). A failed test does not poison it.
pub fn lock() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// One ubik service as one server sees it (`udebug ADDR PORT`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct View {
    /// udebug got an answer.
    pub up: bool,
    /// The sync site it names (itself when it is the sync site); None when it knows none.
    pub sync: Option<String>,
    /// "Recovery state" (the sync site shows it): 0x1f when the database is recovered.
    pub recovery: Option<u32>,
}

impl View {
    /// Parse `udebug` output; `ip` is the address asked.
    pub fn parse(text: &str, ip: &str) -> View {
        let mut v = View {
            up: text.contains("Host's addresses are"),
            ..View::default()
        };
        for l in text.lines().map(str::trim) {
            if l.starts_with("I am sync site") {
                v.sync = Some(ip.to_string());
            } else if let Some(rest) = l.strip_prefix("Sync host ") {
                let host = rest.split_whitespace().next().unwrap_or("");
                if host != "0.0.0.0" && v.sync.is_none() {
                    v.sync = Some(host.to_string());
                }
            } else if let Some(rest) = l.strip_prefix("Recovery state ") {
                v.recovery = u32::from_str_radix(rest.trim(), 16).ok();
            }
        }
        v
    }
}

/// A ubik service (port) as each database server sees it.
#[derive(Debug, Clone)]
pub struct Service {
    pub port: u16,
    /// (server name, its view), db1..db3.
    pub views: Vec<(String, View)>,
}

impl Service {
    /// The sync site every server names, when they all answer and agree.
    pub fn agreed(&self) -> Option<&str> {
        let first = self.views.first()?.1.sync.as_deref()?;
        self.views
            .iter()
            .all(|(_, v)| v.up && v.sync.as_deref() == Some(first))
            .then_some(first)
    }

    /// Every server agrees on the sync site and it has recovered the database (state 0x1f).
    pub fn settled(&self) -> bool {
        let Some(sync) = self.agreed() else {
            return false;
        };
        let ip_of = |name: &str| MACHINES.iter().find(|m| m.0 == name).map(|m| m.1);
        self.views
            .iter()
            .any(|(n, v)| ip_of(n) == Some(sync) && v.recovery.is_some_and(|r| r & 0x1f == 0x1f))
    }
}

/// How long each part of the start took.
#[derive(Debug, Clone, Copy, Default)]
pub struct Startup {
    pub machines: Duration,
    pub quorum: Duration,
    pub fileserver: Duration,
    /// Restarted the fs instance because its registration had not come.
    pub fs_restarted: bool,
}

impl Startup {
    pub fn total(&self) -> Duration {
        self.machines + self.quorum + self.fileserver
    }
}

pub struct LiveCell {
    pub db1: Machine,
    pub db2: Machine,
    pub db3: Machine,
    pub fs1: Machine,
    pub client: Machine,
    pub startup: Startup,
    _remove: Option<ChildStdin>,
}

impl LiveCell {
    /// Start a cell: machines, keys, daemons; wait for both quorums and the file server's
    /// registration. Panics (with the daemons' logs) when it does not come up.
    pub fn start() -> LiveCell {
        let t = Instant::now();
        let mut cell = LiveCell::machines();
        // The first key goes on db1 only (copied to the others below, before any daemon
        // starts): the other machines are left out of this first command.
        cell.write_config(&format!(
            "cell = \"{CELL}\"\n[audit]\npath = \"/var/lib/openafs/afskeys-audit.log\"\n\
             [[inventory.left_out]]\nhost = \"db2\"\nreason = \"harness start\"\n\
             [[inventory.left_out]]\nhost = \"db3\"\nreason = \"harness start\"\n"
        ));
        cell.afskeys_ok(&["add", "--kvno", "1", "--type", "rxkad_krb5", "--random"]);
        for m in cell.all().into_iter().skip(1) {
            cell.copy_keys(&cell.db1, m);
        }
        cell.start_daemons();
        cell.startup.machines = t.elapsed();
        let t = Instant::now();
        cell.wait_quorum(Duration::from_secs(300));
        cell.init_prdb();
        cell.startup.quorum = t.elapsed();
        let t = Instant::now();
        cell.start_fileserver();
        cell.startup.fs_restarted = cell.wait_fileserver();
        cell.wait_volserver();
        cell.startup.fileserver = t.elapsed();
        eprintln!("the live cell is up: {:?}", cell.startup);
        cell
    }

    /// The five machines on their network, conf files written, no keys, no daemons.
    fn machines() -> LiveCell {
        let hosts: String = std::iter::once("127.0.0.1 localhost\n".to_string())
            .chain(MACHINES.iter().map(|(n, ip)| format!("{ip} {n}\n")))
            .collect();
        let mut ms = MACHINES.iter().map(|(name, ip)| {
            let x = Extras {
                hostname: Some(name),
                hosts: Some(hosts.clone()),
                vicepa: true,
            };
            let m = Machine::with(ip, &x);
            write_cell_files(&m);
            m
        });
        let mut next = || ms.next().unwrap();
        let (db1, db2, db3, fs1, client) = (next(), next(), next(), next(), next());
        wire(&db1, &[&db2, &db3, &fs1, &client]);
        let roots: Vec<&Path> = [&db1, &db2, &db3, &fs1, &client]
            .iter()
            .map(|m| m.root.path())
            .collect();
        let remove = Some(remove_at_exit(&roots));
        LiveCell {
            db1,
            db2,
            db3,
            fs1,
            client,
            startup: Startup::default(),
            _remove: remove,
        }
    }

    /// db1, db2, db3, fs1, client.
    pub fn all(&self) -> [&Machine; 5] {
        [&self.db1, &self.db2, &self.db3, &self.fs1, &self.client]
    }

    /// The machines running a bosserver: db1, db2, db3, fs1.
    pub fn servers(&self) -> [&Machine; 4] {
        [&self.db1, &self.db2, &self.db3, &self.fs1]
    }

    pub fn dbs(&self) -> [&Machine; 3] {
        [&self.db1, &self.db2, &self.db3]
    }

    /// The machine of this name.
    pub fn machine(&self, name: &str) -> &Machine {
        self.all()
            .into_iter()
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("no machine {name}"))
    }

    /// Copy KeyFile and KeyFileExt (`cp -a`: mode and dates too) from one machine's conf dir
    /// to another's.
    pub fn copy_keys(&self, from: &Machine, to: &Machine) {
        for f in ["KeyFile", "KeyFileExt"] {
            let out = std::process::Command::new("cp")
                .arg("-a")
                .arg(from.confdir().join(f))
                .arg(to.confdir().join(f))
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
        }
    }

    fn start_daemons(&self) {
        for m in self.servers() {
            start_bosserver(m);
        }
        for m in self.dbs() {
            for d in ["ptserver", "vlserver"] {
                bos_ok(
                    m,
                    &format!("create -server localhost -instance {d} -type simple -cmd /usr/lib/openafs/{d}"),
                );
            }
        }
    }

    /// The fs instance on fs1. Started only once the PRDB answers: a fileserver that cannot
    /// get the CPS of system:anyuser waits (retrying every 30 s) before it registers, and
    /// dumps core when bosserver stops it meanwhile.
    fn start_fileserver(&self) {
        self.fs1.must("touch /vicepa/AlwaysAttach");
        bos_ok(
            &self.fs1,
            "create -server localhost -instance fs -type fs -cmd /usr/lib/openafs/fileserver \
             -cmd /usr/lib/openafs/volserver -cmd /usr/lib/openafs/salvager",
        );
    }

    /// Make the ptserver sync site create the PRDB's initial entries: a new PRDB is empty
    /// (system:anyuser, system:administrators… do not exist: PRNOENT, 267268) until the sync
    /// site serves a call; a non-sync site answers from the empty database. So ask the sync
    /// site itself (a conf dir on db1 whose CellServDB lists only it), then wait until the
    /// client's view has the entries.
    fn init_prdb(&self) {
        let sync = self.quorum()[0].agreed().expect("a sync site").to_string();
        self.db1.must(&format!(
            "rm -rf /tmp/sync && mkdir /tmp/sync && cp -a {CONFDIR}/KeyFile {CONFDIR}/KeyFileExt \
             {CONFDIR}/ThisCell /tmp/sync && printf '>{CELL}\\n{sync} #sync\\n' >/tmp/sync/CellServDB"
        ));
        let start = Instant::now();
        for (m, extra) in [(&self.db1, "-config /tmp/sync"), (&self.client, "")] {
            let cmd = format!("pts examine system:anyuser -localauth {extra} 2>&1");
            loop {
                let o = m.sh(&cmd);
                if o.status.success() {
                    break;
                }
                assert!(
                    start.elapsed() < Duration::from_secs(60),
                    "the PRDB was never initialized: {}{}",
                    crate::common::stdout(&o),
                    self.logs()
                );
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    }

    /// afskeys.toml on db1 (`CONFIG` inside), mode 0600.
    pub fn write_config(&self, toml: &str) {
        let p = self.db1.outside(CONFIG);
        fs::write(&p, toml).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
    }

    /// Run afskeys on db1 with `--confdir CONFDIR --config CONFIG` and `args`.
    pub fn afskeys(&self, args: &[&str]) -> Output {
        let mut c = self.db1.enter();
        c.arg(self.afskeys_inside())
            .args(["--confdir", CONFDIR, "--config", CONFIG])
            .args(args);
        crate::common::pipe(c, b"")
    }

    /// Undo what a failed test may have left: a rotation stopped before the afs entry moved
    /// (its new key is taken back off every machine).
    pub fn tidy(&self) {
        self.write_config(&self.cell_toml(&[], &[]));
        let _ = self.afskeys(&["rotate", "--abort"]);
    }

    /// `afskeys` as on a production cell: the VLDB asked, the running servers proven.
    pub fn afskeys_live(&self, args: &[&str]) -> Output {
        let mut c = self.db1.enter();
        c.env("AFSKEYS_NO_VLDB", "0")
            .env("AFSKEYS_SKIP_RUNNING_PROOF", "0")
            .arg(self.afskeys_inside())
            .args(["--confdir", CONFDIR, "--config", CONFIG])
            .args(args);
        crate::common::pipe(c, b"")
    }

    /// afskeys.toml for the whole cell: db1 is the control machine, db2, db3 and fs1 are
    /// directory servers (their conf dirs as seen from db1) known to the cell by address;
    /// `moved` replaces a machine's conf dir (with one its bosserver does not read); `skip`
    /// leaves those machines out of the file altogether.
    pub fn cell_toml(&self, moved: &[(&str, &Path)], skip: &[&str]) -> String {
        let mut t = format!(
            "cell = \"{CELL}\"\ntoken_lifetime = \"1s\"\n[audit]\n\
             path = \"/var/lib/openafs/afskeys-audit.log\"\n"
        );
        for m in [&self.db2, &self.db3, &self.fs1] {
            if skip.contains(&m.name.as_str()) {
                continue;
            }
            let dir = match moved.iter().find(|(n, _)| *n == m.name) {
                Some((_, d)) => d.to_path_buf(),
                None => m.confdir(),
            };
            t.push_str(&format!(
                "[[servers]]\nname = \"{}\"\nconfdir = \"{}\"\nafs_host = \"{}\"\n",
                m.name,
                dir.display(),
                m.ip
            ));
        }
        t
    }

    #[track_caller]
    pub fn afskeys_ok(&self, args: &[&str]) -> String {
        crate::common::ok(self.afskeys(args))
    }

    /// The binary under test, copied where db1 can see it (the checkout may be under /tmp,
    /// which every machine replaces with its own).
    pub fn afskeys_inside(&self) -> PathBuf {
        let bin = self.db1.root.path().join("bin/afskeys");
        if !bin.exists() {
            fs::create_dir_all(bin.parent().unwrap()).unwrap();
            fs::copy(env!("CARGO_BIN_EXE_afskeys"), &bin).unwrap();
            fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).unwrap();
        }
        bin
    }

    /// `udebug ip port`, asked from the client machine.
    pub fn udebug(&self, ip: &str, port: u16) -> View {
        let o = self.client.sh(&format!("udebug {ip} {port} 2>&1"));
        View::parse(&crate::common::stdout(&o), ip)
    }

    /// The ptserver and vlserver services as each database server sees them.
    pub fn quorum(&self) -> [Service; 2] {
        [PTSERVER, VLSERVER].map(|port| Service {
            port,
            views: self
                .dbs()
                .iter()
                .map(|m| (m.name.clone(), self.udebug(&m.ip, port)))
                .collect(),
        })
    }

    /// Wait until both services are settled (one sync site named by all, database
    /// recovered); panics with the logs past `within`. Returns the time it took.
    pub fn wait_quorum(&self, within: Duration) -> Duration {
        let start = Instant::now();
        loop {
            let q = self.quorum();
            if q.iter().all(Service::settled) {
                return start.elapsed();
            }
            if start.elapsed() > within {
                panic!("no quorum within {within:?}: {q:#?}\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    /// The file servers' addresses the VLDB lists (`vos listaddrs -noauth`, from the client).
    pub fn vldb_addrs(&self) -> Vec<String> {
        let o = self.client.sh("vos listaddrs -noauth -noresolve");
        crate::common::stdout(&o)
            .lines()
            .map(str::trim)
            .filter(|l| l.parse::<std::net::Ipv4Addr>().is_ok())
            .map(str::to_string)
            .collect()
    }

    /// Wait until the VLDB lists fs1, restarting its fs instance once when it has not
    /// registered after 30 s (its first registration may fail, and it retries only after
    /// minutes). Returns whether it was restarted.
    fn wait_fileserver(&self) -> bool {
        let start = Instant::now();
        let mut restarted = false;
        while !self.vldb_addrs().contains(&self.fs1.ip) {
            if !restarted && start.elapsed() > Duration::from_secs(30) {
                eprintln!("fs1 not registered after 30 s: restarting its fs instance");
                bos_ok(&self.fs1, "restart -server localhost -instance fs");
                restarted = true;
            }
            if start.elapsed() > Duration::from_secs(300) {
                panic!("fs1 never registered\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        restarted
    }

    /// Wait until fs1's volserver answers (`vos partinfo -localauth` from the client): it
    /// does some seconds after the file server registers.
    fn wait_volserver(&self) {
        let start = Instant::now();
        let ask = format!("vos partinfo -server {} -localauth", self.fs1.ip);
        while !self.client.sh(&ask).status.success() {
            if start.elapsed() > Duration::from_secs(180) {
                panic!("fs1's volserver never answered\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    /// Restart every instance of a server (`bos restart -all`, asked on that server).
    pub fn restart(&self, m: &Machine) {
        bos_ok(m, "restart -server localhost -all");
    }

    /// Restart one instance of a server, asked on that server.
    pub fn restart_instance(&self, m: &Machine, instance: &str) {
        bos_ok(
            m,
            &format!("restart -server localhost -instance {instance}"),
        );
    }

    /// Every server's log files, for a failure message.
    pub fn logs(&self) -> String {
        self.servers()
            .iter()
            .map(|m| {
                let o = m.sh("for f in /var/log/openafs/*; do echo \"== $f\"; tail -n 30 $f; done");
                format!("##### {}\n{}", m.name, crate::common::stdout(&o))
            })
            .collect()
    }
}

/// ThisCell and CellServDB (db1, db2, db3) in the client and server conf dirs, and an empty
/// UserList (`-localauth` is allowed without it).
fn write_cell_files(m: &Machine) {
    let r = m.root.path();
    let mut csdb = format!(">{CELL}\t#Live test cell\n");
    for (name, ip) in &MACHINES[..3] {
        csdb.push_str(&format!("{ip}\t#{name}\n"));
    }
    for dir in [r.join("etc"), r.join("etc/server")] {
        fs::write(dir.join("ThisCell"), format!("{CELL}\n")).unwrap();
        fs::write(dir.join("CellServDB"), &csdb).unwrap();
    }
    fs::write(r.join("etc/server/UserList"), "").unwrap();
}

/// `bos ARGS -localauth` on `m`, which must print no error: bos exits 0 even when refused.
#[track_caller]
pub fn bos_ok(m: &Machine, args: &str) -> String {
    let o = m.sh(&format!("bos {args} -localauth"));
    let (out, err) = (crate::common::stdout(&o), crate::common::stderr(&o));
    assert!(
        o.status.success() && !out.contains("bos:") && !err.contains("bos:"),
        "bos {args} on {}: exit {:?}\n{out}{err}",
        m.name,
        o.status.code()
    );
    out
}

/// Start bosserver (with authentication) and wait until it answers `-localauth`.
fn start_bosserver(m: &Machine) {
    m.must("/usr/sbin/bosserver -nofork </dev/null >/var/log/openafs/bos.out 2>&1 &");
    let start = Instant::now();
    loop {
        let o = m.sh("bos listkeys -server localhost -localauth 2>&1");
        if crate::common::stdout(&o).contains("All done.") {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "bosserver on {} did not answer: {}",
            m.name,
            crate::common::stdout(&o)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

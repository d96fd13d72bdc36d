//! A cell that distributes by the Update Server, on real OpenAFS 1.8.9 daemons: a control
//! machine running `upserver -crypt` for its conf dir and servers running bosserver with an
//! `upclientetc` instance (`upclient CONTROL -crypt -t SECS`). Each machine has its own network,
//! mount and PID namespace and its own /tmp (upserver and upclient use fixed scratch files
//! there), with /etc/openafs, /var/log/openafs and /var/lib/openafs bound to its own
//! directories; the servers reach the control machine through veth pairs on a bridge that
//! lives in the control machine's namespace. afskeys runs on the control machine.

pub use crate::netns::Machine;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

pub const CELL: &str = "up.example.com";
pub const CONTROL_IP: &str = "10.77.0.1";
/// upclient's `-t` in these tests, seconds.
pub const INTERVAL: u64 = 2;
/// Inside every machine.
pub const CONFDIR: &str = "/etc/openafs/server";
pub const CONFIG: &str = "/etc/openafs/afskeys.toml";
pub const STATE_DIR: &str = "/var/lib/openafs/afskeys";
pub const TOOLS: &[&str] = &["unshare", "nsenter", "ip", "bos", "bosserver"];
pub const DAEMONS: &[&str] = &["/usr/lib/openafs/upserver", "/usr/lib/openafs/upclient"];

/// Are the tools here? Missing ones fail when AFSKEYS_REQUIRE_INTEROP is set.
pub fn have_all() -> bool {
    crate::netns::have_all(DAEMONS, TOOLS, "the Update Server tests")
}

/// ThisCell and CellServDB (the control machine only) in the client and server conf dirs,
/// and an empty UserList.
fn write_cell_files(m: &Machine) {
    let r = m.root.path();
    for dir in [r.join("etc"), r.join("etc/server")] {
        fs::write(dir.join("ThisCell"), format!("{CELL}\n")).unwrap();
        fs::write(
            dir.join("CellServDB"),
            format!(">{CELL}\n{CONTROL_IP} #control\n"),
        )
        .unwrap();
    }
    fs::write(r.join("etc/server/UserList"), "").unwrap();
}

/// The control machine and its servers.
pub struct UpCell {
    pub control: Machine,
    pub servers: Vec<Machine>,
}

impl UpCell {
    /// A control machine holding kvno 1 and `n` servers with a copy of its conf dir, the
    /// servers' upclients started, afskeys configured for the Update Server.
    pub fn new(n: usize) -> UpCell {
        let control = Machine::new(CONTROL_IP);
        let servers: Vec<Machine> = (0..n)
            .map(|i| Machine::new(&format!("10.77.0.{}", 11 + i)))
            .collect();
        for m in std::iter::once(&control).chain(&servers) {
            write_cell_files(m);
        }
        crate::netns::wire(&control, &servers.iter().collect::<Vec<_>>());
        let cell = UpCell { control, servers };
        cell.write_config("20s", &[]);
        // The state dir is not made here: afskeys creates it (0700) at its first command.
        cell.afskeys_ok(&["add", "--kvno", "1", "--type", "rxkad_krb5", "--random"]);
        for s in &cell.servers {
            let out = Command::new("cp")
                .arg("-a")
                .arg(format!("{}/.", cell.control.confdir().display()))
                .arg(s.confdir())
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
        }
        cell.control.must(
            "/usr/lib/openafs/upserver -crypt /etc/openafs/server \
             </dev/null >/var/log/openafs/upserver.out 2>&1 &",
        );
        for s in &cell.servers {
            start_bosserver(s);
            s.must(&format!(
                "bos create -server localhost -instance upclientetc -type simple -cmd \
                 '/usr/lib/openafs/upclient {CONTROL_IP} -crypt -t {INTERVAL} /etc/openafs/server' \
                 -noauth"
            ));
        }
        cell
    }

    /// afskeys.toml (outside the distributed conf dir) with this deadline; the servers at
    /// `local` (indexes) also get a `[[servers]]` entry: their conf dir, read and written
    /// directly (as SSH would).
    pub fn write_config(&self, deadline: &str, local: &[usize]) {
        self.write_config_lifetime(deadline, local, "25h")
    }

    /// `write_config` with this `token_lifetime` (the grace before `prune` removes a key).
    /// A cell of `n` upclient-fed servers, rotated once (kvno 1 → 2) with a 1 s token
    /// lifetime so the old key's grace is short, every server having fetched the result.
    #[allow(dead_code)]
    pub fn rotated_once(n: usize) -> UpCell {
        let c = UpCell::new(n);
        c.wait_equal(Duration::from_secs(30));
        c.write_config_lifetime("20s", &[], "1s");
        c.afskeys_ok(&["rotate"]);
        c.wait_equal(Duration::from_secs(30));
        c
    }

    pub fn write_config_lifetime(&self, deadline: &str, local: &[usize], lifetime: &str) {
        let mut toml = format!(
            "cell = \"{CELL}\"\ntoken_lifetime = \"{lifetime}\"\n\n[distribution]\n\
             method = \"upserver\"\ninterval = \"{INTERVAL}s\"\ndeadline = \"{deadline}\"\n\
             poll = \"1s\"\ndir = \"{CONFDIR}\"\nstate_dir = \"{STATE_DIR}\"\n"
        );
        for (i, s) in self.servers.iter().enumerate() {
            toml.push_str(&format!(
                "[[distribution.upclients]]\nname = \"fs{}\"\nhost = \"{}\"\n",
                i + 1,
                s.ip
            ));
        }
        for &i in local {
            toml.push_str(&format!(
                "[[servers]]\nname = \"fs{}\"\nconfdir = \"{}\"\n",
                i + 1,
                self.servers[i].confdir().display()
            ));
        }
        let p = self.control.root.path().join("etc/afskeys.toml");
        fs::write(&p, toml).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
    }

    /// Run afskeys on the control machine.
    pub fn afskeys(&self, args: &[&str]) -> Output {
        let mut c = self.control.enter();
        // This cell's control machine runs upserver without a bosserver, so the restarts
        // before a removal cannot be run here (the live cell's tests run them): they are
        // printed instead, as for a site that restarts by other means.
        c.env("AFSKEYS_NO_RESTART", "1");
        c.arg(self.afskeys_inside())
            .args(["--confdir", CONFDIR, "--config", CONFIG])
            .args(args);
        crate::common::pipe(c, b"")
    }

    /// The binary under test, copied where the control machine can see it: the checkout may
    /// itself be under /tmp (a CI clone), which every machine replaces with its own.
    fn afskeys_inside(&self) -> PathBuf {
        let bin = self.control.root.path().join("bin/afskeys");
        if !bin.exists() {
            fs::create_dir_all(bin.parent().unwrap()).unwrap();
            fs::copy(env!("CARGO_BIN_EXE_afskeys"), &bin).unwrap();
            fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).unwrap();
        }
        bin
    }

    #[track_caller]
    pub fn afskeys_ok(&self, args: &[&str]) -> String {
        crate::common::ok(self.afskeys(args))
    }

    /// Kill the control machine's upserver and start it again (it reads the keys anew).
    pub fn restart_upserver(&self) {
        self.control.must(
            "kill $(pidof upserver); while pidof upserver >/dev/null; do sleep 0.1; done; \
             /usr/lib/openafs/upserver -crypt /etc/openafs/server \
             </dev/null >>/var/log/openafs/upserver.out 2>&1 &",
        );
    }

    /// Stop or start a server's upclient through its bosserver.
    pub fn upclient(&self, i: usize, run: bool) {
        let verb = if run { "start" } else { "stop -wait" };
        self.servers[i].must(&format!(
            "bos {verb} -server localhost -instance upclientetc -noauth"
        ));
    }

    /// `bos status` of a server's upclientetc, asked on that server.
    pub fn upclient_status(&self, i: usize) -> String {
        self.servers[i].must("bos status -server localhost -instance upclientetc -noauth")
    }

    /// Wait until every server's KeyFile and KeyFileExt equal the control machine's.
    pub fn wait_equal(&self, within: Duration) {
        let start = Instant::now();
        while !self.servers.iter().all(|s| self.same_files(s)) {
            if start.elapsed() > within {
                let diag: Vec<String> = self
                    .servers
                    .iter()
                    .map(|s| {
                        s.sh(
                            "ls -la --time-style=full-iso /etc/openafs/server; bos status \
                              -server localhost -long -noauth; cat /var/log/openafs/*",
                        )
                    })
                    .map(|o| crate::common::stdout(&o))
                    .collect();
                let mine = self
                    .control
                    .sh("ls -la --time-style=full-iso /etc/openafs/server");
                panic!(
                    "the servers never fetched:\ncontrol:\n{}\n{}",
                    crate::common::stdout(&mine),
                    diag.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Does this server hold the control machine's KeyFile and KeyFileExt, byte for byte?
    pub fn same_files(&self, s: &Machine) -> bool {
        ["KeyFile", "KeyFileExt"].iter().all(|f| {
            fs::read(self.control.confdir().join(f)).ok() == fs::read(s.confdir().join(f)).ok()
        })
    }
}

fn start_bosserver(m: &Machine) {
    m.must("/usr/sbin/bosserver -noauth -nofork </dev/null >/var/log/openafs/bos.out 2>&1 &");
    let start = Instant::now();
    loop {
        let o = m.sh("bos listkeys -server localhost -noauth 2>&1");
        if crate::common::stdout(&o).contains("All done.") {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "bosserver did not answer: {}",
            crate::common::stdout(&o)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

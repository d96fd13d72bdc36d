//! Shared test support: the built binary, required-tool checks (fail in CI, skip elsewhere),
//! and a private OpenAFS sandbox (its own mount and network namespaces) so interop tests can
//! run real `asetkey`, `bosserver` and `bos` side by side without touching the machine's
//! `/etc/openafs` or UDP 7007.
#![allow(dead_code)]

pub mod kdc_keys;

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The afskeys binary cargo built for these tests.
pub fn afskeys() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_afskeys"));
    no_vldb(&mut c);
    c
}

/// `AFSKEYS_NO_VLDB=1` and `AFSKEYS_SKIP_RUNNING_PROOF=1` unless the command sets them
/// already (see `pipe`): these cells have no VLDB and no bosserver to ask.
pub fn no_vldb(c: &mut Command) {
    for var in ["AFSKEYS_NO_VLDB", "AFSKEYS_SKIP_RUNNING_PROOF"] {
        if !c.get_envs().any(|(k, _)| k == var) {
            c.env(var, "1");
        }
    }
}

/// Run afskeys on `confdir` with `args`, feeding `stdin`.
pub fn run(confdir: &Path, args: &[&str], stdin: &[u8]) -> Output {
    let mut c = afskeys();
    c.arg("--confdir").arg(confdir).args(args);
    pipe(c, stdin)
}

/// Run a command with `stdin` piped in, capturing output. Tests here have no VLDB and no
/// bosserver to ask: afskeys runs with `--no-vldb` and `--skip-running-proof` (their
/// environment variables) unless the test set them itself (the live-cell tests set `0`).
pub fn pipe(mut c: Command, stdin: &[u8]) -> Output {
    no_vldb(&mut c);
    let mut child = c
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {c:?}: {e}"));
    // The child may exit without reading its input (an error found first): that is fine.
    if let Err(e) = child.stdin.take().unwrap().write_all(stdin) {
        assert_eq!(
            e.kind(),
            std::io::ErrorKind::BrokenPipe,
            "writing stdin: {e}"
        );
    }
    child.wait_with_output().unwrap()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Assert success and return stdout.
#[track_caller]
pub fn ok(o: Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

/// True when every tool is on this machine. When `AFSKEYS_REQUIRE_INTEROP` is set (as
/// `bin/test` and CI set it) a missing tool fails the test instead of skipping it.
pub fn have(tools: &[&str]) -> bool {
    let missing: Vec<&&str> = tools.iter().filter(|t| which(t).is_none()).collect();
    if missing.is_empty() {
        return true;
    }
    if std::env::var_os("AFSKEYS_REQUIRE_INTEROP").is_some() {
        panic!("required tool(s) missing: {missing:?} (bin/test installs them)");
    }
    eprintln!("SKIPPED: missing {missing:?}; set AFSKEYS_REQUIRE_INTEROP=1 to make this fail");
    false
}

pub fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].iter().map(PathBuf::from))
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

/// A control machine and `n` directory servers fs1…fsN of `cell`, with afskeys.toml
/// (`head` first, then a `[[servers]]` entry each): control first, then the servers.
#[allow(dead_code)]
pub fn dir_cell(cell: &str, n: usize, head: &str) -> Vec<tempfile::TempDir> {
    let control = confdir(cell);
    let servers: Vec<_> = (0..n).map(|_| confdir(cell)).collect();
    let mut toml = String::from(head);
    for (i, s) in servers.iter().enumerate() {
        toml.push_str(&format!(
            "[[servers]]\nname = \"fs{}\"\nconfdir = \"{}\"\n",
            i + 1,
            s.path().display()
        ));
    }
    fs::write(control.path().join("afskeys.toml"), toml).unwrap();
    let mut v = vec![control];
    v.extend(servers);
    v
}

/// The kvnos a conf dir's KeyFile and KeyFileExt hold (`afskeys list --json`), ascending,
/// each once.
#[allow(dead_code)]
pub fn kvnos_of(dir: &Path) -> Vec<i64> {
    let mut c = afskeys();
    c.arg("--confdir").arg(dir).args(["--json", "list"]);
    let v: serde_json::Value = serde_json::from_str(&ok(pipe(c, b""))).unwrap();
    let mut k: Vec<i64> = (v["keys"].as_array().unwrap().iter())
        .map(|k| k["kvno"].as_i64().unwrap())
        .collect();
    k.sort_unstable();
    k.dedup();
    k
}

/// A conf dir of our own: ThisCell and CellServDB for `cell`, mode 0700.
pub fn confdir(cell: &str) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    write_cell_files(d.path(), cell);
    d
}

pub fn write_cell_files(dir: &Path, cell: &str) {
    fs::write(dir.join("ThisCell"), format!("{cell}\n")).unwrap();
    fs::write(
        dir.join("CellServDB"),
        format!(">{cell}\t#test cell\n127.0.0.1\t#localhost\n"),
    )
    .unwrap();
}

/// Every file in a dir (name, bytes, mode) but the empty lock files, to prove nothing changed.
pub fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>, u32)> {
    let mut v: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_file())
        .filter(|e| !e.file_name().to_string_lossy().ends_with(".lock"))
        .map(|e| {
            let md = e.metadata().unwrap();
            (
                e.file_name().into_string().unwrap(),
                fs::read(e.path()).unwrap(),
                md.permissions().mode(),
            )
        })
        .collect();
    v.sort();
    v
}

/// A private OpenAFS world: a temp tree bind-mounted over `/etc/openafs`,
/// `/var/log/openafs` and `/var/lib/openafs` in fresh mount and network namespaces
/// held open by a sleeping process; commands enter it with nsenter.
pub struct AfsSandbox {
    pub root: tempfile::TempDir,
    holder: Child,
    bosserver: Option<u32>,
}

impl AfsSandbox {
    pub fn new(cell: &str) -> AfsSandbox {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        for d in ["etc/server", "log", "lib"] {
            fs::create_dir_all(r.join(d)).unwrap();
        }
        fs::set_permissions(r.join("etc/server"), fs::Permissions::from_mode(0o755)).unwrap();
        // The client side: CellServDB listing the cell (bos addkey -cell looks it up there).
        write_cell_files(&r.join("etc"), cell);
        write_cell_files(&r.join("etc/server"), cell);
        let script = format!(
            "set -e; ip link set lo up; \
             mount --bind {r}/etc /etc/openafs; \
             mount --bind {r}/log /var/log/openafs; \
             mount --bind {r}/lib /var/lib/openafs; \
             echo ready; exec sleep 100000",
            r = r.display()
        );
        let mut holder = Command::new("unshare")
            .args(["-m", "-n", "sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("unshare");
        let mut line = String::new();
        BufReader::new(holder.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready", "could not set up the OpenAFS sandbox");
        AfsSandbox {
            root,
            holder,
            bosserver: None,
        }
    }

    /// The server conf dir, as seen from outside (it is `/etc/openafs/server` inside).
    pub fn server_dir(&self) -> PathBuf {
        self.root.path().join("etc/server")
    }

    /// Run a shell script inside the sandbox.
    pub fn sh(&self, script: &str) -> Output {
        self.sh_in(script, b"")
    }

    pub fn sh_in(&self, script: &str, stdin: &[u8]) -> Output {
        let mut c = Command::new("nsenter");
        c.arg("-t")
            .arg(self.holder.id().to_string())
            .args(["-m", "-n", "sh", "-c", script]);
        pipe(c, stdin)
    }

    /// Start `bosserver -noauth -nofork` inside and wait until `bos listkeys` answers.
    pub fn start_bosserver(&mut self) {
        let o = self.sh(
            "/usr/sbin/bosserver -noauth -nofork </dev/null >/var/log/openafs/bos.out 2>&1 & echo $!",
        );
        let pid: u32 = stdout(&o).trim().parse().expect("bosserver pid");
        self.bosserver = Some(pid);
        let start = Instant::now();
        loop {
            let o = self.sh("bos listkeys -server localhost -noauth 2>&1");
            if stdout(&o).contains("All done.") {
                return;
            }
            if start.elapsed() > Duration::from_secs(20) {
                panic!("bosserver did not answer: {}", stdout(&o));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for AfsSandbox {
    fn drop(&mut self) {
        if let Some(pid) = self.bosserver {
            let _ = Command::new("kill").arg(pid.to_string()).status();
            // bosserver may leave children in the namespace; they die with the namespace
            // holder only if signalled, so kill everything still inside it.
        }
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

//! The restarts before a removal as the binary runs them, against stand-ins for `bos` and
//! `udebug` (the live cell, `tests/live_cell.rs`, proves what the real daemons do): one
//! machine of its own (mount, network and PID namespaces, so its conf dir is
//! `/etc/openafs/server`, one `bos -localauth` reads) is the control machine and a database
//! server; db2 is another database server, fs9 a file server. The stand-in bos keeps each
//! host's count of process starts in a file and logs every restart; the stand-in udebug
//! names the control machine the sync site, with every server voting yes.
//!
//! Proves: the order (db2, then the sync site, then fs9), each restart made before anything
//! is removed; a database server that does not come back stops the sequence with nothing
//! removed anywhere, naming it and what was seen; the machines restarted since the newest
//! kvno arrived are not restarted again; `remove --server` restarts only that server;
//! `--no-restart` restarts nothing and prints the plan; a machine bos cannot reach refuses
//! the removal.

mod common;
mod netns;
use common::*;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;

const CELL: &str = "restart.example.com";
const IP: &str = "10.79.0.1";

/// The stand-in bos: `status -server H -long -localauth` and `restart -server H -all
/// -localauth`. A host with a `H.stuck` file does not start again; a host with `H.started`
/// shows that date as its processes' start.
const BOS: &str = r#"#!/bin/sh
d=/etc/openafs/fake; cmd=$1; h=$3
n=$(cat "$d/$h.starts" 2>/dev/null || echo 1)
when=$(cat "$d/$h.started" 2>/dev/null || echo "Mon Dec  7 19:32:05 2020")
case "$cmd" in
status)
  for i in $(cat "$d/$h.instances" 2>/dev/null || echo ptserver vlserver); do
    echo "Instance $i, (type is simple) currently running normally."
    echo "    Process last started at $when ($n proc starts)"
  done ;;
restart)
  echo "$h" >> "$d/restarts"
  [ -e "$d/$h.stuck" ] || echo $((n + 1)) > "$d/$h.starts" ;;
esac
"#;

/// The stand-in udebug: 127.0.0.1 is the sync site, recovered, every server voting yes now.
const UDEBUG: &str = r#"#!/bin/sh
if [ "$1" = 127.0.0.1 ]; then
  echo "Host's addresses are: 127.0.0.1"
  echo "I am sync site until 57 secs from now (at Mon Dec  7 19:33:04 2026) (2 servers)"
  echo "Recovery state 1f"
  echo ""
  echo "Server (10.79.0.2): (db 1796671909.2)"
  echo "    last vote rcvd 0 secs ago (at Mon Dec  7 19:32:04 2026),"
  echo "    last beacon sent 0 secs ago (at Mon Dec  7 19:32:04 2026), last vote was yes"
  echo "    dbcurrent=1, up=1 beaconSince=1"
else
  echo "Host's addresses are: $1"
  echo "Sync host 127.0.0.1 was set 3 secs ago"
fi
"#;

struct Cell {
    m: netns::Machine,
}

impl Cell {
    /// The machine, its cell (control + db2 + fs9 as directory servers), rotated twice (kvno
    /// 1, then 2); kvno 1's 1 s grace over.
    fn new(extra_server: &str) -> Cell {
        let m = netns::Machine::new(IP);
        let etc = m.outside("/etc/openafs");
        write_cell_files(&m.confdir(), CELL);
        fs::write(
            m.confdir().join("CellServDB"),
            format!(">{CELL}\n127.0.0.1 #control\n10.79.0.2 #db2\n"),
        )
        .unwrap();
        for d in ["db2", "fs9", "fs8", "fake"] {
            fs::create_dir_all(etc.join(d)).unwrap();
        }
        for d in ["db2", "fs9", "fs8"] {
            write_cell_files(&etc.join(d), CELL);
        }
        fs::write(etc.join("fake/fs9.instances"), "fs\n").unwrap();
        for (name, text) in [("bos", BOS), ("udebug", UDEBUG)] {
            fs::write(etc.join(name), text).unwrap();
            fs::set_permissions(etc.join(name), fs::Permissions::from_mode(0o755)).unwrap();
        }
        fs::copy(env!("CARGO_BIN_EXE_afskeys"), etc.join("afskeys")).unwrap();
        let toml = format!(
            "token_lifetime = \"1s\"\n\
             [running_proof]\nbos = \"/etc/openafs/bos\"\nudebug = \"/etc/openafs/udebug\"\n\
             restart_wait = \"4s\"\n\
             [[servers]]\nname = \"db2\"\nconfdir = \"/etc/openafs/db2\"\nafs_host = \"10.79.0.2\"\n\
             [[servers]]\nname = \"fs9\"\nconfdir = \"/etc/openafs/fs9\"\nafs_host = \"10.79.0.9\"\n\
             {extra_server}"
        );
        fs::write(etc.join("afskeys.toml"), toml).unwrap();
        let c = Cell { m };
        ok(c.afskeys(&["rotate"]));
        ok(c.afskeys(&["rotate"]));
        std::thread::sleep(std::time::Duration::from_secs(2));
        c
    }

    fn afskeys(&self, args: &[&str]) -> Output {
        let mut c = self.m.enter();
        c.args([
            "/etc/openafs/afskeys",
            "--confdir",
            "/etc/openafs/server",
            "--config",
            "/etc/openafs/afskeys.toml",
        ])
        .args(args);
        pipe(c, b"")
    }

    fn fake(&self, name: &str) -> std::path::PathBuf {
        self.m.outside("/etc/openafs/fake").join(name)
    }

    /// The hosts restarted, in order.
    fn restarts(&self) -> Vec<String> {
        let t = fs::read_to_string(self.fake("restarts")).unwrap_or_default();
        t.lines().map(str::to_string).collect()
    }

    /// Every key file of the cell, to compare before and after.
    fn keys(&self) -> Vec<Vec<u8>> {
        let etc = self.m.outside("/etc/openafs");
        ["server", "db2", "fs9"]
            .iter()
            .flat_map(|d| ["KeyFile", "KeyFileExt"].map(|f| etc.join(d).join(f)))
            .map(|p| fs::read(p).unwrap_or_default())
            .collect()
    }
}

fn have() -> bool {
    netns::have_all(
        &[],
        &["unshare", "nsenter", "ip"],
        "the restarts' stand-in machine",
    )
}

fn said(o: &Output) -> String {
    format!("{}{}", stdout(o), stderr(o))
}

#[test]
fn prune_restarts_each_machine_in_order_before_removing() {
    if !have() {
        return;
    }
    let c = Cell::new("");
    let plan = c.afskeys(&["prune", "--dry-run"]);
    assert!(plan.status.success(), "{}", said(&plan));
    assert!(
        c.restarts().is_empty(),
        "a dry run restarted {:?}",
        c.restarts()
    );
    assert!(
        stdout(&plan).ends_with(
            "would first restart, one at a time, each waited for:\n  \
             bos restart -server 10.79.0.2 -all -localauth\n  \
             bos restart -server localhost -all -localauth\n  \
             bos restart -server 10.79.0.9 -all -localauth\n"
        ),
        "{}",
        stdout(&plan)
    );
    let o = c.afskeys(&["--json", "prune"]);
    assert!(o.status.success(), "{}", said(&o));
    assert_eq!(c.restarts(), ["10.79.0.2", "localhost", "10.79.0.9"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let done: Vec<&str> = (v["restarts"]["done"].as_array().unwrap().iter())
        .map(|d| d["server"].as_str().unwrap())
        .collect();
    assert_eq!(done, ["db2", "control", "fs9"], "{v}");
    assert_eq!(v["removed"][0]["kvno"], 1, "{v}");
}

#[test]
fn a_server_that_does_not_come_back_stops_the_removal_then_is_not_restarted_twice() {
    if !have() {
        return;
    }
    let c = Cell::new("");
    let before = c.keys();
    fs::write(c.fake("localhost.stuck"), "").unwrap();
    let o = c.afskeys(&["prune"]);
    assert_eq!(o.status.code(), Some(1), "{}", said(&o));
    let err = stderr(&o);
    assert!(
        err.contains(
            "the restarts before removing kvno 1 stopped at control: not back within 4 s of \
             its restart: ptserver not restarted yet; nothing was removed; restarted before \
             it: db2"
        ),
        "{err}"
    );
    assert_eq!(c.keys(), before, "a key file changed");
    assert_eq!(c.restarts(), ["10.79.0.2", "localhost"]);
    // It comes back; db2's processes now started after the newest kvno arrived.
    fs::remove_file(c.fake("localhost.stuck")).unwrap();
    fs::write(c.fake("10.79.0.2.started"), "Fri Jan  1 00:00:00 2100").unwrap();
    let o = c.afskeys(&["--json", "prune"]);
    assert!(o.status.success(), "{}", said(&o));
    assert_eq!(
        c.restarts(),
        ["10.79.0.2", "localhost", "localhost", "10.79.0.9"]
    );
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let db2 = &v["restarts"]["done"][0];
    assert_eq!(db2["server"], "db2", "{v}");
    assert!(
        db2["skipped"]
            .as_str()
            .unwrap()
            .starts_with("every process started after "),
        "{v}"
    );
    assert_ne!(c.keys(), before);
}

#[test]
fn remove_on_one_server_restarts_only_it_and_no_restart_restarts_none() {
    if !have() {
        return;
    }
    let c = Cell::new("");
    let o = c.afskeys(&["remove", "--server", "db2", "--kvno", "1"]);
    assert!(o.status.success(), "{}", said(&o));
    assert_eq!(c.restarts(), ["10.79.0.2"]);
    let o = c.afskeys(&["prune", "--no-restart"]);
    assert!(o.status.success(), "{}", said(&o));
    assert_eq!(c.restarts(), ["10.79.0.2"], "--no-restart restarted");
    let err = stderr(&o);
    assert!(
        err.contains(
            "(afskeys does not run them: --no-restart); unless already done:\n  \
             bos restart -server localhost -all -localauth\n  \
             bos restart -server 10.79.0.2 -all -localauth\n  \
             bos restart -server 10.79.0.9 -all -localauth"
        ),
        "{err}"
    );
}

#[test]
fn a_machine_bos_cannot_reach_refuses_the_removal() {
    if !have() {
        return;
    }
    let c = Cell::new("[[servers]]\nname = \"fs8\"\nconfdir = \"/etc/openafs/fs8\"\n");
    let before = c.keys();
    let o = c.afskeys(&["prune"]);
    assert_eq!(o.status.code(), Some(3), "{}", said(&o));
    assert!(
        stderr(&o).contains(
            "cannot restart fs8 (a directory server without afs_host) through bos; restart \
             its OpenAFS server processes by other means while both keys are present, then \
             run again with --no-restart"
        ),
        "{}",
        stderr(&o)
    );
    assert!(c.restarts().is_empty());
    assert_eq!(c.keys(), before);
}

fn write_cell_files(dir: &Path, cell: &str) {
    common::write_cell_files(dir, cell);
}

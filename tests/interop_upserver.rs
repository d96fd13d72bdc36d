//! Rotation in a cell whose servers pull the control machine's conf dir through the Update
//! Server, against the real OpenAFS 1.8.9 upserver, upclient and bosserver, each machine in
//! its own namespaces (see `upserver/mod.rs`). No SSH anywhere: afskeys learns each fetch from
//! `bos getdate -noauth`.

mod common;
mod netns;
mod sshd;
mod upserver;

use common::*;
use std::fs;
use std::process::Command;
use std::time::Duration;
use upserver::*;

fn audit(c: &UpCell) -> String {
    fs::read_to_string(c.control.root.path().join("lib/afskeys/afskeys-audit.log")).unwrap()
}

/// `status --json` matches its schema in docs/json.md (with the `fetch` part only these cells
/// have).
fn assert_status_schema(v: &serde_json::Value) {
    assert_schema("status", v)
}

/// `--json` output of `section` matches its schema in docs/json.md.
fn assert_schema(section: &str, v: &serde_json::Value) {
    let md = fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/json.md")).unwrap();
    let sec = &md[md.find(&format!("## {section}\n")).unwrap()..];
    let start = sec.find("```json\n").unwrap() + 8;
    let end = start + sec[start..].find("\n```").unwrap();
    let schema: serde_json::Value = serde_json::from_str(&sec[start..end]).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator.iter_errors(v).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{errors:?}\n{v}");
}

/// The line of a per-server listing that starts with this server's name.
fn line_of<'a>(text: &'a str, name: &str) -> &'a str {
    text.lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .unwrap_or_default()
}

fn entry_kvno(c: &UpCell) -> Option<i64> {
    let v: serde_json::Value = serde_json::from_str(&c.afskeys_ok(&["--json", "status"])).unwrap();
    v["afs_entry"]["kvno"].as_i64()
}

/// Proves: rotate adds the key on the control machine only, waits until all three upclients
/// have fetched it (their `bos getdate` dates equal the control machine's), and only then
/// sets the afs entry; afterwards every server's KeyFile and KeyFileExt equal the control
/// machine's byte for byte, and afskeys' journal and audit log never reached the servers.
#[test]
fn rotate_waits_for_every_upclient_before_the_afs_entry_moves() {
    if !have_all() {
        return;
    }
    let c = UpCell::new(3);
    c.wait_equal(Duration::from_secs(30));
    // The plan names the wait, its timing, the servers and what will confirm each fetch.
    let plan = c.afskeys_ok(&["rotate", "--dry-run"]);
    assert!(
        plan.contains(
            "3. wait until every upclient has fetched it from the control machine (upclientetc \
             every 2s, asked by bos getdate every 1s; past 20s the rotation stops, resumably): \
             fs1, fs2, fs3; confirmed by their KeyFile and KeyFileExt dates, bytes not compared \
             (no SSH)"
        ),
        "{plan}"
    );
    let v: serde_json::Value =
        serde_json::from_str(&c.afskeys_ok(&["--json", "rotate", "--dry-run"])).unwrap();
    assert_schema("rotate-dry-run", &v);
    assert_eq!(
        v["servers"],
        serde_json::json!(["control", "fs1", "fs2", "fs3"]),
        "{v}"
    );
    let out = c.afskeys_ok(&["rotate"]);
    assert!(
        out.contains("kvno 2 is on every server (control, fs1, fs2, fs3)"),
        "{out}"
    );
    // This cell runs with the running-server proof off: the output says that the fetches
    // were then confirmed by unauthenticated dates only.
    assert!(
        out.contains(
            "running servers not asked to accept kvno 2 (their key files hold it): every \
             server (--skip-running-proof; the Update Server fetches are confirmed only by \
             unauthenticated bos getdate dates)"
        ),
        "{out}"
    );
    for s in &c.servers {
        assert!(c.same_files(s), "{} differs", s.ip);
        let names: Vec<String> = fs::read_dir(s.confdir())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            !names.iter().any(|n| n.starts_with("afskeys-")),
            "afskeys state travelled: {names:?}"
        );
    }
    let log = audit(&c);
    let fetched = log
        .find("fetched through the Update Server")
        .unwrap_or_else(|| panic!("{log}"));
    let set = log.find("afs entry set to kvno 2").unwrap();
    assert!(fetched < set, "{log}");
    assert!(
        log.contains("fs1 (KeyFile and KeyFileExt dates equal"),
        "{log}"
    );
    assert!(log.contains("bytes not compared (no SSH)"), "{log}");
    assert!(
        log.contains("(unauthenticated bos getdate -noauth;"),
        "{log}"
    );
    assert!(
        log.contains("running servers not asked before kvno 2 was set (--skip-running-proof)"),
        "{log}"
    );
    assert_eq!(entry_kvno(&c), Some(2));
    // verify and servers account for the upclient-fed servers, by their fetch state.
    let o = c.afskeys(&["verify"]);
    let text = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{text}{}", stderr(&o));
    for i in 1..=3 {
        assert!(
            line_of(&text, &format!("fs{i}"))
                .contains("agrees with the control machine by KeyFile and KeyFileExt dates"),
            "{text}"
        );
    }
    let v: serde_json::Value = serde_json::from_str(&c.afskeys_ok(&["--json", "verify"])).unwrap();
    assert_schema("verify", &v);
    assert_eq!(v["servers"][2]["fetch"]["state"], "fetched", "{v}");
    let v: serde_json::Value = serde_json::from_str(&c.afskeys_ok(&["--json", "servers"])).unwrap();
    assert_schema("servers", &v);
    assert_eq!(v["servers"][0]["distribution"], "control", "{v}");
    assert_eq!(v["servers"][3]["name"], "fs3", "{v}");
    assert_eq!(v["servers"][3]["distribution"], "upserver", "{v}");
    assert_eq!(v["servers"][3]["fetch"]["state"], "fetched", "{v}");
    let text = c.afskeys_ok(&["servers"]);
    assert!(text.contains("  distribution upserver: fetched"), "{text}");
}

/// Proves: with one upclient stopped (through its bosserver) the rotation stops at step
/// `added` when the deadline passes, names that server as behind, and leaves the afs entry
/// where it was although the other servers fetched; `--resume` once the upclient runs again
/// sees its fetch and completes.
#[test]
fn a_stopped_upclient_holds_the_afs_entry_back_until_resume() {
    if !have_all() {
        return;
    }
    let c = UpCell::new(3);
    c.wait_equal(Duration::from_secs(30));
    c.afskeys_ok(&["rotate"]);
    assert_eq!(entry_kvno(&c), Some(2));
    c.write_config("6s", &[]);
    c.upclient(1, false);
    let o = c.afskeys(&["rotate"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains(
            "servers have not fetched kvno 3 from the control machine within 6s: fs2 (behind since"
        ),
        "{err}"
    );
    assert!(!err.contains("fs1 ("), "{err}");
    assert!(err.contains("the afs entry is at kvno 2"), "{err}");
    assert_eq!(entry_kvno(&c), Some(2));
    assert!(c.same_files(&c.servers[0]));
    assert!(!c.same_files(&c.servers[1]));
    // verify: the server that has not fetched differs (exit 2, as an SSH server would).
    let o = c.afskeys(&["verify"]);
    let text = stdout(&o);
    assert_eq!(o.status.code(), Some(2), "{text}{}", stderr(&o));
    assert!(
        line_of(&text, "fs2")
            .contains("DIFFERS: not fetched through the Update Server: behind since"),
        "{text}"
    );
    let st: serde_json::Value = serde_json::from_str(&c.afskeys_ok(&["--json", "status"])).unwrap();
    assert_eq!(st["rotation"]["step"], "added", "{st}");

    c.upclient(1, true);
    c.wait_equal(Duration::from_secs(30));
    c.afskeys_ok(&["rotate", "--resume"]);
    assert_eq!(entry_kvno(&c), Some(3));
    for s in &c.servers {
        assert!(c.same_files(s));
    }
}

/// Proves: `check` warns about upclients started before the current kvno (they would be
/// locked out once the older key goes) until they are restarted; and `check` and `status`
/// read each server's fetch state by `bos getdate`: a server
/// whose upclient is stopped shows as behind since the control machine's change, and once
/// that is older than two intervals `check` warns naming it (and how to restart it), while
/// the others show as fetched.
#[test]
fn check_flags_a_server_that_is_behind() {
    if !have_all() {
        return;
    }
    let c = UpCell::new(3);
    c.wait_equal(Duration::from_secs(30));
    c.afskeys_ok(&["rotate"]);
    // The upclients started before kvno 2 arrived: they still authenticate with kvno 1, and
    // check says so (and how to restart them) while kvno 1 is still there to prune.
    let o = c.afskeys(&["check"]);
    let line = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{line}{}", stderr(&o));
    for (i, s) in c.servers.iter().enumerate() {
        assert!(
            line.contains(&format!("fs{}'s upclientetc started", i + 1)),
            "{line}"
        );
        assert!(
            line.contains(&format!("bos restart -server {}", s.ip)),
            "{line}"
        );
    }
    assert!(line.contains("before kvno 2 became current"), "{line}");
    std::thread::sleep(Duration::from_secs(1));
    for s in &c.servers {
        s.must("bos restart -server localhost -instance upclientetc -noauth");
    }
    let o = c.afskeys(&["check"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    c.upclient(2, false);
    c.afskeys_ok(&["add", "--kvno", "7", "--type", "rxkad_krb5", "--random"]);
    // Until fs3 has been behind for two intervals (check's threshold), asked, not slept on.
    let start = std::time::Instant::now();
    let o = loop {
        let o = c.afskeys(&["check"]);
        if stdout(&o).contains("fs3 has not fetched") || start.elapsed() > Duration::from_secs(30) {
            break o;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let line = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{line}{}", stderr(&o));
    assert!(
        line.contains("fs3 has not fetched the control machine's KeyFiles since"),
        "{line}"
    );
    assert!(
        line.contains("bos restart -server 10.77.0.13 -instance upclientetc"),
        "{line}"
    );
    assert!(!line.contains("fs1"), "{line}");
    let st: serde_json::Value = serde_json::from_str(&c.afskeys_ok(&["--json", "status"])).unwrap();
    assert_status_schema(&st);
    let fetch = st["fetch"].as_array().unwrap();
    assert_eq!(fetch[0]["state"], "fetched", "{st}");
    assert_eq!(fetch[1]["state"], "fetched", "{st}");
    assert_eq!(fetch[2]["state"], "behind", "{st}");
    let text = c.afskeys_ok(&["status"]);
    assert!(
        text.contains("fetched through the Update Server (bos getdate):"),
        "{text}"
    );
    assert!(
        text.contains("fs3") && text.contains("behind since"),
        "{text}"
    );
    // The order guard of `authdb set`: the entry does not move to kvno 7 while fs3 has not
    // fetched it; once it has, it does.
    let o = c.afskeys(&["authdb", "set", "--kvno", "7"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(
        err.contains("refused: servers first: fs3 (behind since"),
        "{err}"
    );
    assert!(err.contains("may lack kvno 7"), "{err}");
    assert!(!err.contains("fs1"), "{err}");
    assert_eq!(entry_kvno(&c), Some(2));
    c.upclient(2, true);
    c.wait_equal(Duration::from_secs(30));
    c.afskeys_ok(&["authdb", "set", "--kvno", "7"]);
    assert_eq!(entry_kvno(&c), Some(7));
}

/// Proves: an emergency edit on an upclient-fed server warns that upclientetc will replace
/// it; with --upclient-pause afskeys stops that server's upclientetc through bos first, so
/// the edit survives several intervals; an edit with --upclient-resume starts it again, and
/// the server then fetches the control machine's files back.
#[test]
fn an_emergency_edit_warns_and_can_pause_the_upclient() {
    if !have_all() {
        return;
    }
    let c = UpCell::new(3);
    c.wait_equal(Duration::from_secs(30));
    c.write_config("20s", &[1]);
    let o = c.afskeys(&[
        "--server",
        "fs2",
        "--upclient-pause",
        "add",
        "--kvno",
        "9",
        "--type",
        "rxkad_krb5",
        "--random",
    ]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("stopped fs2's upclientetc through bos"),
        "{err}"
    );
    let s = c.upclient_status(1);
    assert!(s.contains("disabled"), "{s}");
    std::thread::sleep(Duration::from_secs(2 * INTERVAL + 1));
    let l = c.afskeys_ok(&["--server", "fs2", "--json", "list"]);
    let v: serde_json::Value = serde_json::from_str(&l).unwrap();
    let kvnos: Vec<i64> = v["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kvno"].as_i64().unwrap())
        .collect();
    assert!(kvnos.contains(&9), "{l}");
    assert!(
        !c.same_files(&c.servers[1]),
        "the emergency edit was overwritten"
    );

    // Without a flag: only the warning.
    let o = c.afskeys(&[
        "--server",
        "fs2",
        "add",
        "--kvno",
        "10",
        "--type",
        "rxkad_krb5",
        "--random",
    ]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("fs2 is fed by the Update Server"), "{err}");
    assert!(err.contains("--upclient-pause"), "{err}");

    let o = c.afskeys(&[
        "--server",
        "fs2",
        "--upclient-resume",
        "remove",
        "--kvno",
        "10",
    ]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("started fs2's upclientetc again through bos"),
        "{err}"
    );
    // Verified here: an upclient authenticates with its own server's newest key; one the
    // control machine lacks (kvno 9, still on fs2) locks it out, and afskeys says so.
    assert!(
        err.contains("fs2's newest key, kvno 9, is not on the control machine"),
        "{err}"
    );
    std::thread::sleep(Duration::from_secs(2 * INTERVAL + 1));
    assert!(
        !c.same_files(&c.servers[1]),
        "a locked-out upclient fetched"
    );
    let log = fs::read_to_string(c.servers[1].root.path().join("log/bos.out")).unwrap();
    assert!(
        log.contains("Operation not permitted calling FetchFile"),
        "{log}"
    );
    // Back to keys the control machine holds: the restarted upclient fetches again.
    let o = c.afskeys(&[
        "--server",
        "fs2",
        "--upclient-resume",
        "remove",
        "--kvno",
        "9",
    ]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(!err.contains("is not on the control machine"), "{err}");
    c.wait_equal(Duration::from_secs(30));
}

/// The servers' upclient logs (BosLog of each server), for messages.
fn server_logs(c: &UpCell) -> Vec<String> {
    c.servers
        .iter()
        .map(|s| fs::read_to_string(s.root.path().join("log/bos.out")).unwrap_or_default())
        .collect()
}

/// Proves the lockout and `prune`'s answer to it, against the real daemons: the upclients
/// started before kvno 2 arrived keep credentials sealed with kvno 1; once upserver restarts
/// they no longer fetch (the message they log is asserted); `prune` refuses to remove kvno 1,
/// naming each server, why (started before kvno 2 became current; fs3, its upclient stopped,
/// behind), and its `bos restart` line, and removes nothing; `prune --restart-upclients`
/// restarts fs1 and fs2 through bos but cannot restart fs3 while it is behind (its bosserver
/// lacks the key `-localauth` uses), so past the deadline it refuses naming fs3 only and
/// removes nothing; once fs3's upclient runs again and has fetched, the prune goes through,
/// and after upserver restarts without kvno 1 every server still fetches.
#[test]
fn prune_refuses_to_lock_out_upclients_and_restarts_them_on_request() {
    if !have_all() {
        return;
    }
    let c = UpCell::new(3);
    c.wait_equal(Duration::from_secs(30));
    c.write_config_lifetime("20s", &[], "1s");
    c.afskeys_ok(&["rotate"]);
    assert_eq!(entry_kvno(&c), Some(2));
    c.wait_equal(Duration::from_secs(30));
    c.restart_upserver();
    // fs3 falls behind: its upclient stopped, a key added on the control machine.
    c.upclient(2, false);
    c.afskeys_ok(&["add", "--kvno", "7", "--type", "rxkad_krb5", "--random"]);
    // kvno 1's grace (1 s) ends.
    std::thread::sleep(Duration::from_secs(2));
    let before = fs::read(c.control.confdir().join("KeyFileExt")).unwrap();
    let o = c.afskeys(&["prune"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(
        err.contains("refused: removing kvno 1 would lock out upclients that still need it"),
        "{err}"
    );
    for (i, s) in c.servers.iter().enumerate() {
        assert!(err.contains(&format!("fs{} (", i + 1)), "{err}");
        assert!(
            err.contains(&format!(
                "`bos restart -server {} -instance upclientetc -localauth`",
                s.ip
            )),
            "{err}"
        );
    }
    assert!(err.contains("--restart-upclients"), "{err}");
    assert!(
        err.contains("fs3 (behind since")
            && err.contains("its server lacks the control machine's current KeyFiles"),
        "{err}"
    );
    assert!(
        err.contains("before kvno 2 became current: it still authenticates with an older key"),
        "{err}"
    );
    assert_eq!(
        fs::read(c.control.confdir().join("KeyFileExt")).unwrap(),
        before,
        "prune removed something although it refused"
    );

    // The restart flag restarts fs1 and fs2 through bos, but not fs3: `bos -localauth`
    // authenticates with the control machine's newest key (kvno 7), which fs3's bosserver
    // lacks while it is behind. Past the deadline fs3 is still behind: refused, nothing removed.
    c.write_config_lifetime("6s", &[], "1s");
    let o = c.afskeys(&["prune", "--restart-upclients"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(3), "{err}");
    for (i, times) in [(1, 1), (2, 1), (3, 0)] {
        assert_eq!(
            err.matches(&format!("restarted fs{i}'s upclientetc through bos"))
                .count(),
            times,
            "{err}"
        );
    }
    assert!(
        err.contains("would lock out upclients that still need it: fs3 (behind since"),
        "{err}"
    );
    assert!(!err.contains("fs1 (") && !err.contains("fs2 ("), "{err}");
    assert_eq!(
        fs::read(c.control.confdir().join("KeyFileExt")).unwrap(),
        before,
        "prune removed something although it refused"
    );
    // fs3's upclient started again (on fs3): it fetches, started after kvno 2 became current,
    // so nothing is locked out and the prune goes through.
    c.upclient(2, true);
    c.wait_equal(Duration::from_secs(30));
    let o = c.afskeys(&["--json", "prune", "--restart-upclients"]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_schema("prune", &v);
    assert_eq!(v.get("restarted"), None, "{v}");
    assert_eq!(v["removed"][0]["kvno"], 1, "{v}");
    c.wait_equal(Duration::from_secs(30));
    let l = c.afskeys_ok(&["--json", "list"]);
    assert!(!l.contains("\"kvno\":1,"), "{l}");
    // The restarted upclients hold kvno 2 credentials: after upserver restarts without
    // kvno 1 they still fetch every change, and none logged a refusal.
    c.restart_upserver();
    std::thread::sleep(Duration::from_secs(1));
    c.control.must("touch /etc/openafs/server/UserList");
    wait_until(Duration::from_secs(30), "every server fetches", || {
        c.servers.iter().all(|s| same_mtime(&c, s, "UserList"))
    });
    for log in server_logs(&c) {
        assert!(!log.contains("Operation not permitted"), "{log}");
    }
    let o = c.afskeys(&["check"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
}

/// Does this server hold the control machine's file `f` with the same mtime (whole seconds,
/// as upclient copies it)?
fn same_mtime(c: &UpCell, s: &Machine, f: &str) -> bool {
    use std::os::unix::fs::MetadataExt;
    let m = |p: std::path::PathBuf| fs::metadata(p).map(|m| m.mtime()).ok();
    m(c.control.confdir().join(f)) == m(s.confdir().join(f))
}

/// Wait until `f` holds, up to `within`.
fn wait_until(within: Duration, what: &str, f: impl Fn() -> bool) {
    let start = std::time::Instant::now();
    while !f() {
        assert!(start.elapsed() < within, "never: {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Proves the lockout `prune` and `remove` guard against, on the real daemons: an upclient
/// started while its server's newest key was kvno 1 keeps its credentials; after kvno 1 is
/// removed on the control machine (by `remove --emergency`, which overrides the guard and
/// logs that it did) it still fetches that change, but once upserver restarts it fetches
/// nothing more and logs `Operation not permitted calling FetchFile`; restarting the upclient
/// through bos cures it.
#[test]
fn an_upclient_started_before_the_new_key_is_locked_out_once_the_old_key_goes() {
    if !have_all() {
        return;
    }
    let c = UpCell::rotated_once(1);
    std::thread::sleep(Duration::from_secs(2));
    let o = c.afskeys(&[
        "remove",
        "--kvno",
        "1",
        "--emergency",
        "--reason",
        "lockout test",
    ]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("EMERGENCY removal (logged): removing kvno 1 would lock out upclients"),
        "{err}"
    );
    let log = audit(&c);
    assert!(
        log.contains(" remove --emergency: removed rxkad_krb5 kvno 1")
            && log.contains(
                "despite: removing kvno 1 would lock out upclients that still need it: fs1 ("
            )
            && log.contains("reason: lockout test"),
        "{log}"
    );
    c.wait_equal(Duration::from_secs(30));
    assert!(server_logs(&c)[0].is_empty(), "{:?}", server_logs(&c));
    c.restart_upserver();
    std::thread::sleep(Duration::from_secs(1));
    c.control.must("touch /etc/openafs/server/UserList");
    std::thread::sleep(Duration::from_secs(4 * INTERVAL + 1));
    assert!(
        !same_mtime(&c, &c.servers[0], "UserList"),
        "a locked-out upclient fetched"
    );
    let log = &server_logs(&c)[0];
    assert!(
        log.contains("upclient: Operation not permitted calling FetchFile"),
        "{log}"
    );
    c.servers[0].must("bos restart -server localhost -instance upclientetc -noauth");
    wait_until(
        Duration::from_secs(30),
        "the restarted upclient fetches",
        || same_mtime(&c, &c.servers[0], "UserList"),
    );
}

/// Proves `remove` on the control machine guards like `prune`, on the real daemons: with both
/// upclients started before kvno 2 became current, `remove --kvno 1` refuses (exit 3) naming
/// each server, why, and its `bos restart` line, points to `prune --restart-upclients` and
/// `--emergency`, and leaves the control machine's KeyFiles as they were; once the restart
/// lines it printed are run (as printed, on the control machine), the same `remove` goes
/// through, and after upserver restarts without kvno 1 every server still fetches.
#[test]
fn remove_refuses_to_lock_out_upclients_until_they_are_restarted() {
    if !have_all() {
        return;
    }
    let c = UpCell::rotated_once(2);
    std::thread::sleep(Duration::from_secs(2));
    let files =
        || ["KeyFile", "KeyFileExt"].map(|f| fs::read(c.control.confdir().join(f)).unwrap());
    let before = files();
    let o = c.afskeys(&["remove", "--kvno", "1"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(
        err.contains("refused: removing kvno 1 would lock out upclients that still need it: fs1 ("),
        "{err}"
    );
    for (i, s) in c.servers.iter().enumerate() {
        assert!(
            err.contains(&format!("fs{} (its upclientetc started ", i + 1)),
            "{err}"
        );
        assert!(
            err.contains(&format!(
                "`bos restart -server {} -instance upclientetc -localauth`",
                s.ip
            )),
            "{err}"
        );
    }
    assert!(
        err.contains("before kvno 2 became current: it still authenticates with an older key"),
        "{err}"
    );
    assert!(err.contains("`afskeys prune --restart-upclients`"), "{err}");
    assert!(
        err.contains("To remove it anyway: --emergency --reason"),
        "{err}"
    );
    assert_eq!(
        files(),
        before,
        "remove removed something although it refused"
    );
    assert!(!audit(&c).contains(" remove: "), "{}", audit(&c));

    // Follow the restart lines as printed, on the control machine: the same remove goes through.
    let lines: Vec<&str> = err
        .split('`')
        .filter(|p| p.starts_with("bos restart -server "))
        .collect();
    assert_eq!(lines.len(), 2, "{err}");
    for line in lines {
        c.control.must(line);
    }
    let o = c.afskeys(&["remove", "--kvno", "1"]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        stdout(&o).contains("removed rxkad_krb5 kvno 1"),
        "{}",
        stdout(&o)
    );
    assert!(
        !err.contains("EMERGENCY") && !err.contains("lock out"),
        "{err}"
    );
    assert_ne!(files(), before);
    let l = c.afskeys_ok(&["--json", "list"]);
    assert!(!l.contains("\"kvno\":1,"), "{l}");
    // The restarted upclients hold kvno 2 credentials: after upserver restarts without kvno 1
    // they still fetch every change, and none logged a refusal.
    c.wait_equal(Duration::from_secs(30));
    c.restart_upserver();
    std::thread::sleep(Duration::from_secs(1));
    c.control.must("touch /etc/openafs/server/UserList");
    wait_until(Duration::from_secs(30), "every server fetches", || {
        c.servers.iter().all(|s| same_mtime(&c, s, "UserList"))
    });
    for log in server_logs(&c) {
        assert!(!log.contains("Operation not permitted"), "{log}");
    }
}

/// A real sshd inside this server's namespaces on its bridge address, port 2222, serving its
/// own /etc/openafs/server; returns the `[ssh]` and `[[servers]]` text that reaches it from
/// the control machine (identity and known_hosts under the control machine's root).
fn sshd_on(c: &UpCell, i: usize) -> String {
    let s = &c.servers[i];
    let dir = s.root.path().join("ssh");
    let mine = c.control.root.path().join("ssh");
    fs::create_dir_all(&dir).unwrap();
    fs::create_dir_all(&mine).unwrap();
    let host_pub = sshd::keygen(&dir.join("host_ed25519"), "fs-host");
    let client_pub = sshd::keygen(&mine.join("id_ed25519"), "afskeys-control");
    fs::write(dir.join("authorized_keys"), format!("{client_pub}\n")).unwrap();
    let key: Vec<&str> = host_pub.split_whitespace().take(2).collect();
    fs::write(
        mine.join("known_hosts"),
        format!("[{}]:2222 {}\n", s.ip, key.join(" ")),
    )
    .unwrap();
    fs::write(
        dir.join("sshd_config"),
        format!(
            "Port 2222\nListenAddress {ip}\nHostKey {d}/host_ed25519\nPidFile {d}/sshd.pid\n\
             AuthorizedKeysFile {d}/authorized_keys\nUsePAM no\nStrictModes no\n\
             PermitRootLogin prohibit-password\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nUseDNS no\nPrintMotd no\nSetEnv SHLVL=1\n\
             Subsystem sftp {sftp}\n",
            ip = s.ip,
            d = dir.display(),
            sftp = sshd::SFTP_SERVER
        ),
    )
    .unwrap();
    s.must(&format!(
        "mkdir -p /run/sshd; {} -D -e -f {d}/sshd_config </dev/null >{d}/sshd.log 2>&1 &",
        sshd::SSHD,
        d = dir.display()
    ));
    let start = std::time::Instant::now();
    while !crate::common::stdout(&c.control.sh(&format!(
        "timeout 2 bash -c 'exec 3<>/dev/tcp/{}/2222 && head -c 4 <&3'",
        s.ip
    )))
    .starts_with("SSH-")
    {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "sshd in fs{} did not answer: {}",
            i + 1,
            fs::read_to_string(dir.join("sshd.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    format!(
        "[ssh]\nidentity = \"{m}/id_ed25519\"\nknown_hosts = \"{m}/known_hosts\"\n\
         [[servers]]\nname = \"fs{n}\"\nhost = \"{ip}\"\nport = 2222\nuser = \"root\"\n\
         confdir = \"{CONFDIR}\"\n",
        m = mine.display(),
        n = i + 1,
        ip = s.ip
    )
}

/// Proves the confirmation by checksum over real SSH where a server is fed by upclient and
/// also reachable over SSH (an sshd inside its namespaces, reached from the control
/// machine's): the plan says so; the rotation records that fs1's checksums were confirmed
/// over SSH and fs2's bytes were not compared; `verify` shows fs1's checksum verdict beside
/// its fetch state; fs1 holding its old bytes under the control machine's dates (its upclient
/// stopped, the dates copied: what a same-size rewrite with the old mtime looks like) stops
/// `rotate --resume` before the afs entry moves, naming it, until the files really arrive.
#[test]
fn over_real_ssh_an_upclient_fed_server_is_confirmed_by_checksum() {
    if !have_all() || !sshd::available() {
        return;
    }
    let c = UpCell::new(2);
    c.wait_equal(Duration::from_secs(30));
    let ssh = sshd_on(&c, 0);
    let config = c.control.root.path().join("etc/afskeys.toml");
    let with_ssh = |deadline: &str| {
        c.write_config(deadline, &[]);
        let mut t = fs::read_to_string(&config).unwrap();
        t.push_str(&ssh);
        fs::write(&config, t).unwrap();
    };
    with_ssh("20s");
    let plan = c.afskeys_ok(&["rotate", "--dry-run"]);
    assert!(
        plan.contains("fs1, fs2; confirmed by their KeyFile and KeyFileExt dates, checksums compared over SSH for fs1"),
        "{plan}"
    );
    c.afskeys_ok(&["rotate"]);
    let log = audit(&c);
    assert!(
        log.contains("fs1 (KeyFile and KeyFileExt dates equal the control machine's; checksums confirmed over SSH)"),
        "{log}"
    );
    let text = c.afskeys_ok(&["verify"]);
    assert!(
        line_of(&text, "fs1").contains("agrees with the control machine; Update Server: fetched"),
        "{text}"
    );
    assert!(
        line_of(&text, "fs2").contains("by KeyFile and KeyFileExt dates"),
        "{text}"
    );
    assert!(
        log.contains(
            "fs2 (KeyFile and KeyFileExt dates equal the control machine's (unauthenticated bos \
             getdate -noauth; the running-server proof, when on, then asks it with the new \
             kvno); bytes not compared (no SSH))"
        ),
        "{log}"
    );
    with_ssh("6s");
    c.upclient(0, false);
    let o = c.afskeys(&["rotate"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    for f in ["KeyFile", "KeyFileExt"] {
        let st = Command::new("touch")
            .arg("-r")
            .arg(c.control.confdir().join(f))
            .arg(c.servers[0].confdir().join(f))
            .status()
            .unwrap();
        assert!(st.success());
    }
    let o = c.afskeys(&["rotate", "--resume"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("the dates say fetched, but over SSH fs1 (") && err.contains("lack kvno 3"),
        "{err}"
    );
    assert!(err.contains("the afs entry is at kvno 2"), "{err}");
    assert_eq!(entry_kvno(&c), Some(2));
    c.upclient(0, true);
    // Equal dates: the restarted upclient fetches nothing; a fresh change on the control
    // machine is what brings the files over.
    c.control
        .must("touch /etc/openafs/server/KeyFile /etc/openafs/server/KeyFileExt");
    c.wait_equal(Duration::from_secs(30));
    c.afskeys_ok(&["rotate", "--resume"]);
    assert_eq!(entry_kvno(&c), Some(3));
    let sshd_log = fs::read_to_string(c.servers[0].root.path().join("ssh/sshd.log")).unwrap();
    assert!(
        sshd_log.contains("Accepted publickey for root"),
        "{sshd_log}"
    );
}

//! A live OpenAFS 1.8.9 cell of real daemons (three database servers, a file server and a
//! client, each in its own namespaces: see `livecell/mod.rs`), started once for this test
//! binary and shared by its tests.

mod common;
mod livecell;
mod netns;

use common::*;
use livecell::*;
use std::path::{Path, PathBuf};

/// Proves the harness: both ubik services have one sync site that every database server
/// names, the VLDB lists the file server, every bosserver answers `-localauth` from db1 with
/// its instances running, and the client machine reaches the VLDB and the PRDB with
/// `-localauth`.
#[test]
fn the_live_cell_runs_and_answers() {
    if !have_all() {
        return;
    }
    let _g = lock();
    let c = shared();
    c.tidy();
    eprintln!("started in {:?}", c.startup);
    for s in c.quorum() {
        let sync = s.agreed();
        assert!(sync.is_some(), "no agreed sync site: {s:?}");
        assert!(s.settled(), "{s:?}");
    }
    assert!(c.vldb_addrs().contains(&c.fs1.ip), "{:?}", c.vldb_addrs());
    for m in c.servers() {
        let out = bos_ok(&c.db1, &format!("status -server {}", m.ip));
        let instances: &[&str] = if m.name == "fs1" {
            &["fs"]
        } else {
            &["ptserver", "vlserver"]
        };
        // "Instance fs, has core file, currently running normally." after a crash.
        for i in instances {
            assert!(
                out.lines().any(|l| l.starts_with(&format!("Instance {i},"))
                    && l.ends_with("currently running normally.")),
                "{}: {out}",
                m.name
            );
        }
    }
    let vldb = c.client.must("vos listvldb -localauth 2>&1");
    assert!(vldb.contains("Total entries: 0"), "{vldb}");
    let pts = c
        .client
        .must("pts examine system:administrators -localauth 2>&1");
    assert!(
        pts.contains("Name: system:administrators, id: -204"),
        "{pts}"
    );
}

/// Proves issue 22's inventory on the real cell: with db3 (in CellServDB only) and fs1 (in
/// the VLDB only) missing from afskeys.toml, `rotate` and `rotate --dry-run` are refused (exit
/// 3), naming each machine and where the cell names it, and nothing changes; with every
/// machine accounted for, `rotate` asks each running bosserver and ubik service with the new
/// kvno before the entry moves (the audit log records each answer), while a client machine
/// calls `vos listvldb` and `pts examine` with `-localauth` in a loop and no call fails.
#[test]
fn the_inventory_refuses_then_a_rotation_proven_by_the_running_servers() {
    if !have_all() {
        return;
    }
    let _g = lock();
    let c = shared();
    c.tidy();
    c.write_config(&c.cell_toml(&[], &["db3", "fs1"]));
    let before = std::fs::read(c.db1.confdir().join("KeyFileExt")).unwrap();
    for args in [&["rotate"][..], &["rotate", "--dry-run"]] {
        let o = c.afskeys_live(args);
        let err = stderr(&o);
        eprintln!("{args:?}: exit {:?}\n{}{err}", o.status.code(), stdout(&o));
        assert_eq!(o.status.code(), Some(3), "{err}");
        assert!(
            err.contains(
                "the cell names 2 machines that afskeys.toml does not account for: \
                 db3 (CellServDB line 4); 10.78.0.11 (VLDB entry "
            ),
            "{err}"
        );
        assert!(err.contains("host = \"10.78.0.11\""), "{err}");
    }
    let plan = stdout(&c.afskeys_live(&["rotate", "--dry-run"]));
    assert!(
        plan.contains("  db3 [10.78.0.3]: unaccounted; found in CellServDB line 4"),
        "{plan}"
    );
    assert_eq!(
        std::fs::read(c.db1.confdir().join("KeyFileExt")).unwrap(),
        before
    );
    let check = c.afskeys_live(&["check"]);
    assert_eq!(check.status.code(), Some(2), "{}", stdout(&check));
    assert!(stdout(&check).starts_with("AFSKEYS CRITICAL - not in afskeys.toml: db3"));

    c.write_config(&c.cell_toml(&[], &[]));
    let servers = ok(c.afskeys_live(&["servers"]));
    assert!(
        servers.contains("  10.78.0.11 [10.78.0.11]: configured as fs1; found in VLDB"),
        "{servers}"
    );
    let calls = client_loop(c);
    let t = std::time::Instant::now();
    let o = c.afskeys_live(&["rotate"]);
    let secs = t.elapsed().as_secs_f64();
    let (total, failed) = calls.stop();
    eprintln!(
        "rotate ({secs:.2} s): {}{}; client calls {total}, failed {failed}",
        stdout(&o),
        stderr(&o)
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(total >= 4, "the client loop made {total} calls");
    assert_eq!(failed, 0, "client calls failed during the rotation");
    let audit = c.db1.must("cat /var/lib/openafs/afskeys-audit.log");
    let asked = audit
        .lines()
        .rev()
        .find(|l| l.contains("running servers asked"))
        .unwrap();
    for want in [
        "control: bosserver on localhost accepted kvno",
        "ptserver has sync site 10.78.0.1",
        "db2: bosserver on 10.78.0.2 accepted kvno",
        "ptserver on 10.78.0.2 accepted kvno",
        "vlserver on 10.78.0.2 accepted kvno",
        "db3: bosserver on 10.78.0.3 accepted kvno",
        "vlserver on 10.78.0.3 accepted kvno",
        "fs1: bosserver on 10.78.0.11 accepted kvno",
        "volserver on 10.78.0.11 accepted kvno",
    ] {
        assert!(asked.contains(want), "{want}: {asked}");
    }
    assert!(!asked.contains("ptserver on 10.78.0.11"), "{asked}");
    // verify and check ask the same with the newest kvno, now the afs entry's.
    let t = std::time::Instant::now();
    let verify = ok(c.afskeys_live(&["verify"]));
    eprintln!("verify ({:.2} s):\n{verify}", t.elapsed().as_secs_f64());
    let kvno = asked.split("asked with kvno ").nth(1).unwrap();
    let kvno = kvno.split(':').next().unwrap();
    for want in [
        format!(
            "db2              running: kvno {kvno} accepted by bosserver, ptserver, vlserver\n"
        ),
        format!("fs1              running: kvno {kvno} accepted by bosserver, volserver\n"),
        format!(
            "control          running: kvno {kvno} accepted by bosserver, ptserver, vlserver\n"
        ),
    ] {
        assert!(verify.contains(&want), "{want}: {verify}");
    }
    let v: serde_json::Value =
        serde_json::from_str(&ok(c.afskeys_live(&["--json", "verify"]))).unwrap();
    assert_eq!(v["running"]["kvno"].to_string(), kvno, "{v}");
    let fs1 = &v["running"]["servers"][3];
    assert_eq!(fs1["server"], "fs1", "{v}");
    assert_eq!(fs1["failed"], serde_json::json!([]), "{v}");
    assert_eq!(
        fs1["proven"][1],
        format!("volserver on 10.78.0.11 accepted kvno {kvno}"),
        "{v}"
    );
    // check shows only the worst level's problems: OK, or the old key waiting for `prune`
    // (token_lifetime is 1 s here), with nothing said of the running servers at either level.
    let check = stdout(&c.afskeys_live(&["check"]));
    assert!(
        check.starts_with("AFSKEYS OK - kvno")
            || check.starts_with("AFSKEYS WARNING - removable keys waiting: kvno "),
        "{check}"
    );
    assert!(!check.contains("running"), "{check}");
}

/// Proves the running-server proof catches a file that is right under a process that is not:
/// afskeys is told that db2's and fs1's conf dirs are copies their daemons never read, so
/// every file afskeys checks holds the new kvno, yet db2's bosserver, ptserver and vlserver
/// and fs1's bosserver and volserver refuse it; the rotation stops at step "distributed"
/// naming each server, process and error, with the afs entry unmoved; `verify` says the same
/// (exit 2) and `check` warns; with the real conf dirs configured, one `rotate --resume`
/// copies the key there, proves it and finishes.
#[test]
fn daemons_reading_another_conf_dir_stop_the_rotation_before_the_entry_moves() {
    if !have_all() {
        return;
    }
    let _g = lock();
    let c = shared();
    c.tidy();
    let copies: Vec<(&str, PathBuf)> = [&c.db2, &c.fs1]
        .into_iter()
        .map(|m| {
            let copy = m.root.path().join("etc/server-copy");
            m.must(&format!(
                "rm -rf {0}; cp -a /etc/openafs/server/. {0}",
                copy.display()
            ));
            (m.name.as_str(), copy)
        })
        .collect();
    let moved: Vec<(&str, &Path)> = copies.iter().map(|(n, p)| (*n, p.as_path())).collect();
    c.write_config(&c.cell_toml(&moved, &[]));
    let entry = |c: &LiveCell| {
        let v: serde_json::Value =
            serde_json::from_str(&ok(c.afskeys(&["--json", "status"]))).unwrap();
        v["afs_entry"]["kvno"].as_i64()
    };
    // An afs entry to judge against (the first rotation of this cell may still be ahead).
    if entry(c).is_none() {
        ok(c.afskeys(&["authdb", "init"]));
    }
    let was = entry(c);
    let t = std::time::Instant::now();
    let o = c.afskeys_live(&["rotate"]);
    let err = stderr(&o);
    let secs = t.elapsed().as_secs_f64();
    eprintln!("rotate ({secs:.2} s): exit {:?}: {err}", o.status.code());
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("stopped after step \"distributed\""), "{err}");
    let unknown = "(ticket contained unknown key version number)";
    for want in [
        format!("fs1 (bosserver on 10.78.0.11: bos: failed to contact host's bosserver {unknown}.; volserver on 10.78.0.11: "),
        format!("db2 (bosserver on 10.78.0.2: bos: failed to contact host's bosserver {unknown}.; "),
        "ptserver on 10.78.0.2: pts: ticket contained unknown key version number".to_string(),
        "vlserver on 10.78.0.2: ".to_string(),
    ] {
        assert!(err.contains(&want), "{want}: {err}");
    }
    assert!(!err.contains("db3 ("), "{err}");
    assert_eq!(entry(c), was, "the afs entry moved");
    let v = c.afskeys_live(&["verify"]);
    eprintln!(
        "verify: exit {:?}\n{}{}",
        v.status.code(),
        stdout(&v),
        stderr(&v)
    );
    assert_eq!(v.status.code(), Some(2));
    assert!(stdout(&v).contains("fs1              RUNNING: REFUSED: bosserver on 10.78.0.11"));
    assert!(
        stderr(&v).contains("running servers refuse the control machine's newest kvno: db2, fs1")
    );
    // Not the afs entry's kvno yet: a warning, naming each refusing server.
    let check = stdout(&c.afskeys_live(&["check"]));
    eprintln!("check: {check}");
    assert!(check.starts_with("AFSKEYS WARNING - "), "{check}");
    assert!(check.contains("fs1 running: refuses kvno "), "{check}");
    assert!(check.contains("db2 running: refuses kvno "), "{check}");
    // With the real conf dirs configured, one resume finds them lacking the key (the copies
    // got it), copies it there, proves it, and moves the entry.
    c.write_config(&c.cell_toml(&[], &[]));
    let o = c.afskeys_live(&["rotate", "--resume"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_ne!(entry(c), was);
    let audit = c.db1.must("cat /var/lib/openafs/afskeys-audit.log");
    assert!(
        audit.contains("the journal says step distributed, but a server lacks the new keys; going on from step added"),
        "{audit}"
    );
    for (_, copy) in copies {
        let _ = std::fs::remove_dir_all(copy);
    }
}

/// A client machine calling `vos listvldb -localauth` and `pts examine -localauth` in a loop
/// (its own conf dir: the key it was given at the start, or the one `rotate_whole_cell`
/// copied).
fn client_loop(c: &LiveCell) -> ClientLoop<'_> {
    let script = "n=0; f=0; while [ ! -e /tmp/stop ]; do \
                  vos listvldb -localauth >/dev/null 2>&1 || \
                  { f=$((f+1)); echo \"$(date +%s) vos\" >> /tmp/failed; }; \
                  pts examine system:administrators -localauth >/dev/null 2>&1 || \
                  { f=$((f+1)); echo \"$(date +%s) pts\" >> /tmp/failed; }; \
                  n=$((n+2)); echo \"$n $f\" > /tmp/calls; sleep 0.2; done";
    c.client.must("rm -f /tmp/stop /tmp/calls /tmp/failed");
    c.client
        .must(&format!("sh -c '{script}' >/dev/null 2>&1 &"));
    std::thread::sleep(std::time::Duration::from_secs(1));
    ClientLoop { m: &c.client }
}

struct ClientLoop<'a> {
    m: &'a netns::Machine,
}

impl ClientLoop<'_> {
    /// Stop it; (calls made, calls failed).
    fn stop(self) -> (u64, u64) {
        self.m.must("touch /tmp/stop; sleep 1");
        let t = self.m.must("cat /tmp/calls");
        let mut it = t.split_whitespace().map(|x| x.parse::<u64>().unwrap());
        (it.next().unwrap(), it.next().unwrap())
    }

    /// Stop it; (calls made, each failed call's time in Unix seconds and its command).
    fn stop_with_times(self) -> (u64, Vec<(u64, String)>) {
        let m = self.m;
        let (total, _) = self.stop();
        let failed = m.sh("cat /tmp/failed 2>/dev/null");
        let failed = common::stdout(&failed)
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(t, c)| (t.parse().unwrap(), c.to_string()))
            .collect();
        (total, failed)
    }
}

/// Proves what a server that lacks the newest kvno does: db1 gets kvno 2 (afskeys add, which
/// makes db1's own daemons reload), and db1's `bos status -localauth` against db2 is refused
/// with the unknown-key error (exit 0 all the same); with kvno 2 removed again it answers.
#[test]
fn a_server_lacking_the_newest_kvno_refuses_bos_localauth() {
    if !have_all() {
        return;
    }
    let _g = lock();
    let c = shared();
    c.tidy();
    let status = format!("bos status -server {} -localauth 2>&1", c.db2.ip);
    // db1 alone gets the key: the others are left out of this command.
    c.write_config(&format!(
        "cell = \"{CELL}\"\n[[inventory.left_out]]\nhost = \"db2\"\nreason = \"t\"\n\
         [[inventory.left_out]]\nhost = \"db3\"\nreason = \"t\"\n"
    ));
    c.afskeys_ok(&["add", "--kvno", "200", "--type", "rxkad_krb5", "--random"]);
    let o = c.db1.sh(&status);
    let out = stdout(&o);
    eprintln!("refused: exit {:?}: {out}", o.status.code());
    assert!(
        out.contains(
            "bos: failed to contact host's bosserver (ticket contained unknown key version number)"
        ),
        "{out}"
    );
    assert_eq!(o.status.code(), Some(0), "{out}");
    c.afskeys_ok(&["remove", "--kvno", "200", "--emergency", "--reason", "test"]);
    let out = c.db1.must(&status);
    assert!(
        out.contains("Instance ptserver, currently running normally."),
        "{out}"
    );
}

/// What the real tools print, recorded into fixtures/livecell/ for the parsers' unit tests:
/// `NAME.stdout`, `NAME.stderr` and a line of `runs.tsv` (name, machine, command, exit code,
/// seconds) per command. Run by hand: `cargo test --features test-hooks --test live_cell --
/// --ignored record_fixtures`.
#[test]
#[ignore]
fn record_fixtures() {
    if !have_all() {
        return;
    }
    let _g = lock();
    let c = shared();
    c.tidy();
    let mut r = Recorder::new();
    record_answers(c, &mut r);
    record_unreachable(c, &mut r);
    record_refusals(c, &mut r);
    r.finish();
}

struct Recorder {
    dir: std::path::PathBuf,
    runs: String,
}

impl Recorder {
    fn new() -> Recorder {
        let dir =
            std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/livecell"));
        std::fs::create_dir_all(&dir).unwrap();
        Recorder {
            dir,
            runs: "name\tmachine\tcommand\texit\tseconds\n".to_string(),
        }
    }

    /// Run `cmd` on `m`, keep its output, return stdout.
    fn run(&mut self, name: &str, m: &netns::Machine, cmd: &str) -> String {
        let t = std::time::Instant::now();
        let o = m.sh(cmd);
        let secs = t.elapsed().as_secs_f64();
        std::fs::write(self.dir.join(format!("{name}.stdout")), &o.stdout).unwrap();
        std::fs::write(self.dir.join(format!("{name}.stderr")), &o.stderr).unwrap();
        let exit = o.status.code().map_or("signal".into(), |c| c.to_string());
        self.runs
            .push_str(&format!("{name}\t{}\t{cmd}\t{exit}\t{secs:.2}\n", m.name));
        eprintln!("{name}: exit {exit}, {secs:.2} s");
        stdout(&o)
    }

    fn finish(self) {
        std::fs::write(self.dir.join("runs.tsv"), self.runs).unwrap();
    }
}

/// Answers of a working cell: bos status, udebug of a sync and a non-sync site, vos listaddrs.
fn record_answers(c: &LiveCell, r: &mut Recorder) {
    let db2 = &c.db2.ip;
    r.run(
        "bos_status_ok",
        &c.db1,
        &format!("bos status -server {db2} -localauth"),
    );
    r.run(
        "bos_status_long_fs",
        &c.db1,
        &format!("bos status -server {} -long -localauth", c.fs1.ip),
    );
    let [pt, _] = c.quorum();
    let sync = pt.agreed().expect("a sync site").to_string();
    let other = c
        .dbs()
        .iter()
        .map(|m| m.ip.clone())
        .find(|ip| *ip != sync)
        .unwrap();
    r.run(
        "udebug_sync_7002",
        &c.client,
        &format!("udebug {sync} 7002"),
    );
    r.run(
        "udebug_nonsync_7002",
        &c.client,
        &format!("udebug {other} 7002"),
    );
    r.run(
        "udebug_sync_7003",
        &c.client,
        &format!("udebug {sync} 7003"),
    );
    r.run(
        "udebug_long_sync_7003",
        &c.client,
        &format!("udebug {sync} 7003 -long"),
    );
    r.run("vos_listaddrs", &c.client, "vos listaddrs -noauth");
    r.run(
        "vos_listaddrs_printuuid",
        &c.client,
        "vos listaddrs -noauth -printuuid",
    );
    r.run(
        "vos_listaddrs_nore",
        &c.client,
        "vos listaddrs -noauth -nore",
    );
    r.run("vos_listvldb_ok", &c.client, "vos listvldb -localauth");
    r.run(
        "pts_examine_ok",
        &c.client,
        "pts examine system:administrators -localauth",
    );
}

/// Nobody there (NOBODY: no host answers ARP), or a host with nothing on the port (fs1 runs
/// no ptserver or vlserver).
fn record_unreachable(c: &LiveCell, r: &mut Recorder) {
    let fs1 = &c.fs1.ip;
    r.run(
        "bos_status_unreachable",
        &c.db1,
        &format!("bos status -server {NOBODY} -localauth"),
    );
    r.run(
        "udebug_unreachable",
        &c.client,
        &format!("udebug {NOBODY} 7002"),
    );
    r.run(
        "udebug_no_server_on_port",
        &c.client,
        &format!("udebug {fs1} 7002"),
    );
    for (name, ip) in [
        ("unreachable", NOBODY),
        ("no_vlserver_on_port", fs1.as_str()),
    ] {
        c.client.must(&format!(
            "mkdir -p /tmp/{name} && echo {CELL} >/tmp/{name}/ThisCell && \
             printf '>{CELL} #nobody\\n{ip} #nobody\\n' >/tmp/{name}/CellServDB"
        ));
        r.run(
            &format!("vos_listaddrs_{name}"),
            &c.client,
            &format!("vos listaddrs -noauth -config /tmp/{name}"),
        );
    }
}

/// The client gets kvno 9, which no server has: bos, vos and pts -localauth from it are
/// refused; then db1 gets kvno 2 (its own daemons reload) and asks db2 and the cell.
fn record_refusals(c: &LiveCell, r: &mut Recorder) {
    let confdir = c.client.confdir();
    let add = ["add", "--kvno", "9", "--type", "rxkad_krb5", "--random"];
    ok(run(&confdir, &add, b""));
    let db2 = &c.db2.ip;
    r.run(
        "bos_status_unknown_kvno",
        &c.client,
        &format!("bos status -server {db2} -localauth"),
    );
    r.run(
        "vos_listvldb_unknown_kvno",
        &c.client,
        "vos listvldb -localauth",
    );
    r.run(
        "pts_examine_unknown_kvno",
        &c.client,
        "pts examine system:administrators -localauth",
    );
    let rm = [
        "remove",
        "--kvno",
        "9",
        "--emergency",
        "--reason",
        "fixtures",
    ];
    ok(run(&confdir, &rm, b""));
    c.afskeys_ok(&["add", "--kvno", "2", "--type", "rxkad_krb5", "--random"]);
    r.run(
        "db1_kvno2_bos_status_db2",
        &c.db1,
        &format!("bos status -server {db2} -localauth"),
    );
    r.run("db1_kvno2_vos_listvldb", &c.db1, "vos listvldb -localauth");
    r.run(
        "db1_kvno2_pts_examine",
        &c.db1,
        "pts examine system:administrators -localauth",
    );
    c.afskeys_ok(&[
        "remove",
        "--kvno",
        "2",
        "--emergency",
        "--reason",
        "fixtures",
    ]);
    let out = bos_ok(&c.db1, &format!("status -server {db2}"));
    assert!(out.contains("currently running normally"), "{out}");
}

/// Rotate the whole cell once more and give the client machine the new keys (the loop's
/// `-localauth` then uses the kvno that stays); wait out the 1 s grace. The new kvno.
/// Wait until the sync site of both ubik services counts a fresh yes vote of every other
/// database server (what `prune`'s restarts require before they start): a restarted ubik
/// server names the sync site some time before its vote counts.
fn wait_votes(c: &LiveCell) {
    let t = std::time::Instant::now();
    loop {
        let q = c.quorum();
        let counted = q.iter().all(|svc| {
            let Some(sync) = svc.agreed() else {
                return false;
            };
            let text = stdout(&c.client.sh(&format!("udebug {sync} {}", svc.port)));
            (c.dbs().iter())
                .filter(|m| m.ip != sync)
                .all(|m| afskeys::restarts::quorum(&text, Some(&m.ip), 60).is_ok())
        });
        if counted {
            eprintln!(
                "every vote counted after {:.0} s",
                t.elapsed().as_secs_f64()
            );
            return;
        }
        assert!(t.elapsed().as_secs() < 300, "votes never counted: {q:?}");
        std::thread::sleep(std::time::Duration::from_secs(3));
    }
}

/// Wait until fs1's volserver answers: it does a little after the file server starts (or
/// registers, in a new cell).
fn volserver_answers(c: &LiveCell) {
    let t = std::time::Instant::now();
    while !c
        .client
        .sh("vos partinfo -server 10.78.0.11 -localauth")
        .status
        .success()
    {
        assert!(
            t.elapsed().as_secs() < 180,
            "fs1's volserver never answered"
        );
        std::thread::sleep(std::time::Duration::from_secs(2));
    }
    eprintln!(
        "fs1's volserver answered after {:.0} s",
        t.elapsed().as_secs_f64()
    );
}

fn rotate_whole_cell(c: &LiveCell) -> i64 {
    c.tidy();
    wait_votes(c);
    volserver_answers(c);
    c.write_config(&c.cell_toml(&[], &[]));
    let o = c.afskeys_live(&["rotate"]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    c.copy_keys(&c.db1, &c.client);
    std::thread::sleep(std::time::Duration::from_secs(2));
    let v: serde_json::Value =
        serde_json::from_str(&ok(c.afskeys_live(&["--json", "status"]))).unwrap();
    v["afs_entry"]["kvno"].as_i64().unwrap()
}

/// Proves issue 23's restarts on the real cell: `prune --dry-run` shows the restart plan and
/// changes nothing; `prune` restarts db2, db3, then the ptserver's sync site, then fs1, one at
/// a time, each waited for until its instances ran again and (a database server) both
/// quorums counted its vote, and only then removes the old kvnos; meanwhile a client machine
/// calls `vos listvldb` and `pts examine` with `-localauth` in a loop, and no call fails
/// outside a restart's window; afterwards both quorums are settled and the VLDB still lists
/// fs1.
#[test]
fn prune_restarts_every_server_keeping_quorum_before_the_old_key_goes() {
    if !have_all() {
        return;
    }
    let _g = lock();
    let c = shared();
    let kvno = rotate_whole_cell(c);
    let sync = c.quorum()[0].agreed().map(str::to_string);
    let before = std::fs::read(c.db1.confdir().join("KeyFileExt")).unwrap();
    let plan = c.afskeys_live(&["prune", "--dry-run"]);
    let text = stdout(&plan);
    eprintln!("prune --dry-run:\n{text}{}", stderr(&plan));
    assert!(plan.status.success(), "{}", stderr(&plan));
    assert!(
        text.contains("would first restart, one at a time, each waited for:\n"),
        "{text}"
    );
    for host in ["10.78.0.2", "10.78.0.3", "localhost", "10.78.0.11"] {
        let line = format!("  bos restart -server {host} -all -localauth\n");
        assert!(text.contains(&line), "{line}: {text}");
    }
    assert!(
        text.trim_end()
            .ends_with("bos restart -server 10.78.0.11 -all -localauth"),
        "the file server goes last: {text}"
    );
    assert_eq!(
        std::fs::read(c.db1.confdir().join("KeyFileExt")).unwrap(),
        before
    );

    let calls = client_loop(c);
    let o = c.afskeys_live(&["--json", "prune"]);
    let (total, failed) = calls.stop_with_times();
    eprintln!("prune: {}{}", stdout(&o), stderr(&o));
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let r = &v["restarts"];
    assert_eq!(r["run"], true, "{v}");
    let done = r["done"].as_array().unwrap();
    let names: Vec<&str> = done.iter().map(|d| d["server"].as_str().unwrap()).collect();
    eprintln!("restarted in order {names:?}; sync site was {sync:?}");
    assert_eq!(names.len(), 4, "{v}");
    assert_eq!(names[3], "fs1", "{v}");
    let sync_name = match sync.as_deref() {
        Some("10.78.0.1") => "control",
        Some("10.78.0.2") => "db2",
        Some("10.78.0.3") => "db3",
        other => panic!("sync site {other:?}"),
    };
    assert_eq!(
        names[2], sync_name,
        "the sync site goes last of the database servers"
    );
    let mut windows = Vec::new();
    for d in done {
        let secs = d["seconds"]
            .as_f64()
            .unwrap_or_else(|| panic!("not restarted: {d}"));
        let at = chrono::DateTime::parse_from_rfc3339(d["at"].as_str().unwrap()).unwrap();
        let at = at.timestamp() as u64;
        eprintln!("  {}: {secs:.1} s from {at}", d["server"]);
        windows.push((at, at + secs.ceil() as u64 + 1));
    }
    // Every old kvno is gone from every machine, and only after the restarts.
    for m in c.servers() {
        assert_eq!(kvnos_of(&m.confdir()), vec![kvno], "{}", m.name);
    }
    let outside: Vec<&(u64, String)> = (failed.iter())
        .filter(|(t, _)| !windows.iter().any(|(a, b)| a <= t && t <= b))
        .collect();
    eprintln!(
        "client calls {total}, failed {} (all within a restart's window: {})",
        failed.len(),
        outside.is_empty()
    );
    assert!(total >= 20, "the client loop made {total} calls");
    assert!(
        outside.is_empty(),
        "calls failed outside the restarts: {outside:?}"
    );
    c.wait_quorum(std::time::Duration::from_secs(5));
    assert!(c.vldb_addrs().contains(&c.fs1.ip), "fs1 left the VLDB");
    let answered = c.client.sh("vos partinfo -server 10.78.0.11 -localauth");
    assert!(
        answered.status.success(),
        "afskeys called fs1 back before its volserver answered"
    );
    // A second prune has nothing to remove and restarts nothing.
    let again = ok(c.afskeys_live(&["prune"]));
    assert_eq!(again, "nothing to prune: no key's grace has ended\n");
}

/// Proves the hazard the restarts prevent, as the issue observed it: after the old kvno is
/// removed with no restart (`prune --no-restart`, which prints the restarts before removing),
/// the quorum still holds; then one database server that is not the sync site is restarted,
/// and it never rejoins: for a minute the sync site never counts a vote of it (its peers
/// cannot open its new tickets' replies with the removed kvno: RXKADUNKNOWNKEY, 19270408).
/// Restarting the other database servers and the file server, one at a time, heals the cell.
#[test]
fn a_database_server_restarted_after_the_removal_stays_out_of_the_quorum() {
    if !have_all() {
        return;
    }
    let _g = lock();
    let c = shared();
    rotate_whole_cell(c);
    let o = c.afskeys_live(&["prune", "--no-restart"]);
    let err = stderr(&o);
    eprintln!("prune --no-restart: {}{err}", stdout(&o));
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("(afskeys does not run them: --no-restart)"),
        "{err}"
    );
    assert!(
        c.quorum().iter().all(|s| s.settled()),
        "quorum lost at the removal itself"
    );
    let sync = c.quorum()[0].agreed().unwrap().to_string();
    let victim = (c.dbs().into_iter()).find(|m| m.ip != sync).unwrap();
    eprintln!(
        "restarting {} ({}); sync site {sync}",
        victim.name, victim.ip
    );
    c.restart(victim);
    let t = std::time::Instant::now();
    let mut seen = String::new();
    while t.elapsed() < std::time::Duration::from_secs(60) {
        let o = c.client.sh(&format!("udebug {sync} 7002"));
        let since = t.elapsed().as_secs();
        match afskeys::restarts::quorum(&stdout(&o), Some(&victim.ip), since) {
            Ok(()) => panic!(
                "{} rejoined the quorum {since} s after its restart:\n{}",
                victim.name,
                stdout(&o)
            ),
            Err(e) => seen = e,
        }
        std::thread::sleep(std::time::Duration::from_secs(3));
    }
    let sync_m = c.dbs().into_iter().find(|m| m.ip == sync).unwrap();
    let log = stdout(&sync_m.sh("cat /var/log/openafs/PtLog /var/log/openafs/VLLog 2>&1"));
    let distant: Vec<&str> = log.lines().filter(|l| l.contains("19270408")).collect();
    eprintln!(
        "after 60 s: {seen}; sync site's log lines naming 19270408: {}\n{}",
        distant.len(),
        distant
            .iter()
            .rev()
            .take(2)
            .copied()
            .collect::<Vec<_>>()
            .join("\n")
    );
    // Heal: every other database server, then the file server, each restarted.
    let t = std::time::Instant::now();
    for m in c.dbs().into_iter().filter(|m| m.ip != victim.ip) {
        c.restart(m);
        std::thread::sleep(std::time::Duration::from_secs(2));
    }
    c.restart(&c.fs1);
    let took = c.wait_quorum(std::time::Duration::from_secs(300));
    wait_votes(c);
    volserver_answers(c);
    eprintln!(
        "healed: quorum back {:.0} s after the other restarts",
        t.elapsed().as_secs_f64()
    );
    let _ = took;
    let t = std::time::Instant::now();
    while !c.vldb_addrs().contains(&c.fs1.ip) {
        assert!(t.elapsed().as_secs() < 120, "fs1 never registered again");
        std::thread::sleep(std::time::Duration::from_secs(2));
    }
}

/// Proves a database server already out of the quorum stops the restarts before any, with
/// nothing removed, on the real cell. (Found here: with db3's ptserver down, restarting db2
/// left the ptserver with no quorum at all: the sync site lost its status.) db3's ptserver
/// instance is made to run a program that exits at once (`bos delete`, then `bos create -cmd
/// /bin/false`); once the sync site no longer counts db3, `prune` exits 1 naming db3, no
/// machine was restarted (db2's process starts are as they were) and every key file is byte
/// for byte the same. With db3's ptserver put back and the quorum whole, `prune` finishes.
#[test]
fn a_database_server_out_of_the_quorum_stops_the_removal_before_any_restart() {
    if !have_all() {
        return;
    }
    let _g = lock();
    let c = shared();
    let kvno = rotate_whole_cell(c);
    let ptserver = |cmd: &str| {
        bos_ok(&c.db3, "stop -server localhost -instance ptserver -wait");
        bos_ok(&c.db3, "delete -server localhost -instance ptserver");
        bos_ok(
            &c.db3,
            &format!("create -server localhost -instance ptserver -type simple -cmd {cmd}"),
        );
    };
    ptserver("/bin/false");
    let sync = c.quorum()[0].agreed().unwrap_or("10.78.0.1").to_string();
    let t = std::time::Instant::now();
    loop {
        let o = c.client.sh(&format!("udebug {sync} 7002"));
        if afskeys::restarts::quorum(&stdout(&o), Some(&c.db3.ip), 60).is_err() {
            break;
        }
        assert!(
            t.elapsed().as_secs() < 180,
            "the sync site still counts db3"
        );
        std::thread::sleep(std::time::Duration::from_secs(3));
    }
    let files = || -> Vec<Vec<u8>> {
        (c.servers().iter())
            .flat_map(|m| ["KeyFile", "KeyFileExt"].map(|f| m.confdir().join(f)))
            .map(|p| std::fs::read(p).unwrap())
            .collect()
    };
    let starts = || bos_ok(&c.db2, "status -server localhost -long");
    let (before, db2_before) = (files(), starts());
    c.write_config(&c.cell_toml(&[], &[]));
    let o = c.afskeys_live(&["prune"]);
    let (after, db2_after) = (files(), starts());
    // The cell is healed before anything is judged: the tests after this one share it.
    ptserver("/usr/lib/openafs/ptserver");
    c.wait_quorum(std::time::Duration::from_secs(300));
    wait_votes(c);
    let err = stderr(&o);
    eprintln!(
        "prune with db3's ptserver down: exit {:?}\n{err}",
        o.status.code()
    );
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("stopped at db3: out of the quorum before any restart (ptserver ")
            && err.contains("; nothing was removed; restarted before it: none"),
        "{err}"
    );
    assert_eq!(after, before, "a key file changed");
    assert_eq!(db2_after, db2_before, "db2 was restarted");
    let o = c.afskeys_live(&["prune"]);
    assert!(o.status.success(), "{}", stderr(&o));
    for m in c.servers() {
        assert_eq!(kvnos_of(&m.confdir()), vec![kvno], "{}", m.name);
    }
}

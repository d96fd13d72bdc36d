//! Concurrency: 8 processes each making 50 changes at once on one conf dir lose no update,
//! and in `--if-cksum` races on one kvno exactly one process wins each round while every
//! loser is told so (exit 3).

mod common;
use common::*;
use serde_json::Value;
use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};

const CELL: &str = "conc.example.com";
const PROCS: usize = 8;
const EACH: usize = 50;

fn spawn(dir: &std::path::Path, script: &str) -> Child {
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .env("B", env!("CARGO_BIN_EXE_afskeys"))
        .env("AFSKEYS_NO_VLDB", "1")
        .env("AFSKEYS_SKIP_RUNNING_PROOF", "1")
        .env("D", dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn kvnos(dir: &std::path::Path) -> BTreeSet<i64> {
    let v: Value = serde_json::from_str(&ok(run(dir, &["--json", "list"], b""))).unwrap();
    v["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kvno"].as_i64().unwrap())
        .collect()
}

#[test]
fn eight_writers_fifty_changes_each_lose_nothing() {
    let d = confdir(CELL);
    let dir = d.path();
    // Each process adds its 50 kvnos and removes every third one it added.
    let children: Vec<Child> = (0..PROCS)
        .map(|p| {
            let base = 1000 + p * 100;
            spawn(
                dir,
                &format!(
                    "set -e; for i in $(seq 0 {last}); do k=$(({base} + i)); \
                     \"$B\" --confdir \"$D\" add --kvno $k --type rxkad_krb5 --enctype 17 --random >/dev/null; \
                     if [ $((i % 3)) -eq 2 ]; then \"$B\" --confdir \"$D\" remove --kvno $((k - 1)) >/dev/null; fi; done",
                    last = EACH - 1
                ),
            )
        })
        .collect();
    for c in children {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let mut expected = BTreeSet::new();
    for p in 0..PROCS {
        let base = 1000 + (p * 100) as i64;
        for i in 0..EACH as i64 {
            expected.insert(base + i);
        }
        for i in (0..EACH as i64).filter(|i| i % 3 == 2) {
            expected.remove(&(base + i - 1));
        }
    }
    assert_eq!(kvnos(dir), expected);
    let audit = std::fs::read_to_string(dir.join("afskeys-audit.log")).unwrap();
    let changes = PROCS * (EACH + EACH / 3);
    // (each change also records that the VLDB was not asked: there is none here)
    let lines = audit.lines().filter(|l| !l.contains(": inventory: "));
    assert_eq!(lines.count(), changes, "one audit line per change");
    let noted = audit
        .lines()
        .filter(|l| l.contains("VLDB not asked"))
        .count();
    assert_eq!(noted, PROCS * EACH, "--no-vldb recorded with every add");
}

#[test]
fn if_cksum_races_have_exactly_one_winner() {
    let d = confdir(CELL);
    let dir = d.path();
    ok(run(dir, &["add", "--kvno", "5", "--random"], b""));
    let cksum = |dir: &std::path::Path| -> u64 {
        let v: Value = serde_json::from_str(&ok(run(dir, &["--json", "list"], b""))).unwrap();
        v["keys"][0]["cksum"].as_u64().unwrap()
    };
    let mut losers = 0;
    for round in 0..EACH {
        let before = cksum(dir);
        let children: Vec<Child> = (0..PROCS)
            .map(|_| {
                spawn(
                    dir,
                    &format!("exec \"$B\" --json --confdir \"$D\" add --kvno 5 --random --if-cksum {before}"),
                )
            })
            .collect();
        let mut winners = vec![];
        for c in children {
            let o = c.wait_with_output().unwrap();
            match o.status.code() {
                Some(0) => winners.push(String::from_utf8_lossy(&o.stdout).into_owned()),
                Some(3) => {
                    losers += 1;
                    let e = String::from_utf8_lossy(&o.stderr);
                    assert!(e.contains("someone changed it since you looked"), "{e}");
                }
                other => panic!(
                    "round {round}: exit {other:?}: {}",
                    String::from_utf8_lossy(&o.stderr)
                ),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: {winners:?}");
        let w: Value = serde_json::from_str(&winners[0]).unwrap();
        assert_eq!(w["replaced"][0]["cksum"], before);
        assert_eq!(
            w["added"][0]["cksum"].as_u64().unwrap(),
            cksum(dir),
            "the winner's key is the one kept"
        );
    }
    assert_eq!(losers, EACH * (PROCS - 1));
}

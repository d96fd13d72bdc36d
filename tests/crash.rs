//! Crash consistency: run add, remove and rotate as real processes and SIGKILL them at random
//! moments. After every kill: KeyFile, KeyFileExt, the auth DB file and the journal all parse;
//! each key set equals the state before or after the interrupted operation; the afs entry's
//! key is on every server; and an interrupted rotation is finished by `rotate --resume`.
//! `AFSKEYS_CRASH_KILLS` sets the number of kills (default 60 here; bin/crash-test runs 1000).

mod common;
use afskeys::authdb::file::FileAuthDb;
use afskeys::authdb::AuthDb;
use afskeys::journal::StateFile;
use afskeys::keys::KeyId;
use afskeys::store::ConfDir;
use common::*;
use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

const CELL: &str = "crash.example.com";

/// A small xorshift RNG: no crate needed, reproducible from the printed seed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// (id, bytes) of every key in a conf dir, panicking if either file does not parse.
fn keys(dir: &Path) -> BTreeMap<KeyId, Vec<u8>> {
    let snap = ConfDir::new(dir)
        .read()
        .unwrap_or_else(|e| panic!("a key file does not parse after a kill: {e}"));
    snap.keys
        .iter()
        .map(|k| (k.id, k.bytes().to_vec()))
        .collect()
}

#[derive(Debug, Default)]
struct Tally {
    kills: u32,
    completed: u32,
    resumed: u32,
}

#[test]
fn sigkill_at_random_moments_never_tears_or_loses_anything() {
    let kills: u32 = std::env::var("AFSKEYS_CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("crash test: {kills} kills, seed {seed}");
    let mut rng = Rng(seed);
    let control = confdir(CELL);
    let others: Vec<_> = (0..2).map(|_| confdir(CELL)).collect();
    // A one-second token lifetime, so removals of retired keys are exercised too.
    let mut toml = String::from("token_lifetime = \"1s\"\n");
    for (i, s) in others.iter().enumerate() {
        toml.push_str(&format!(
            "[[servers]]\nname = \"fs{i}\"\nconfdir = \"{}\"\n",
            s.path().display()
        ));
    }
    fs::write(control.path().join("afskeys.toml"), toml).unwrap();
    let dir = control.path();
    ok(run(dir, &["rotate"], b""));
    let db = FileAuthDb::new(dir.join("afskeys-authdb.json"), "afs");
    let journal = StateFile::new(dir.join("afskeys-state.json"));
    let mut tally = Tally::default();
    let mut next_kvno = 1000;
    let mut added: Vec<i32> = vec![];
    let started = Instant::now();

    while tally.kills < kills {
        let before = keys(dir);
        let entry_before = db.get().unwrap().map(|e| e.kvno);
        // Pick an operation.
        let op = rng.below(3);
        let args: Vec<String> = match op {
            0 => {
                next_kvno += 1;
                vec![
                    "add".into(),
                    "--kvno".into(),
                    next_kvno.to_string(),
                    "--type".into(),
                    "rxkad_krb5".into(),
                    "--enctype".into(),
                    "17".into(),
                    "--random".into(),
                ]
            }
            1 if !added.is_empty() => {
                let k = added.remove(rng.below(added.len() as u64) as usize);
                vec!["remove".into(), "--kvno".into(), k.to_string()]
            }
            _ => vec!["rotate".into()],
        };
        let mut child = afskeys()
            .arg("--confdir")
            .arg(dir)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Kill somewhere in the first few milliseconds (an edit takes about that long).
        let delay =
            Duration::from_micros(rng.below(if args[0] == "rotate" { 12_000 } else { 6_000 }));
        let t = Instant::now();
        while t.elapsed() < delay {
            std::hint::spin_loop();
        }
        let killed = child.kill().is_ok();
        let status = child.wait().unwrap();
        let was_killed = killed && status.code().is_none();
        if was_killed {
            tally.kills += 1;
        } else {
            tally.completed += 1;
        }

        // Every file parses; each key set is the state before or after the operation.
        let after = keys(dir);
        let state = journal
            .load()
            .unwrap_or_else(|e| panic!("journal does not parse: {e}"));
        let entry = db
            .get()
            .unwrap_or_else(|e| panic!("auth DB does not parse: {e}"));
        match args[0].as_str() {
            "add" => {
                let mut grown: Vec<_> =
                    after.keys().filter(|id| !before.contains_key(id)).collect();
                let unchanged = before.iter().all(|(id, b)| after.get(id) == Some(b));
                assert!(unchanged, "add {} changed existing keys", args[2]);
                assert!(grown.len() <= 1, "add made {grown:?}");
                if let Some(id) = grown.pop() {
                    assert_eq!(id.kvno.to_string(), args[2]);
                    added.push(id.kvno);
                }
            }
            "remove" => {
                let k: i32 = args[2].parse().unwrap();
                let rest: BTreeMap<_, _> = before
                    .iter()
                    .filter(|(id, _)| id.kvno != k)
                    .map(|(a, b)| (*a, b.clone()))
                    .collect();
                assert!(
                    after == before || after == rest,
                    "remove {k} left a third state"
                );
                if after == before {
                    added.push(k); // not removed: may be tried again
                }
            }
            _ => {
                // A rotation may have stopped anywhere; the journal says where. Finish it.
                assert!(
                    entry.as_ref().map(|e| e.kvno) >= entry_before,
                    "the afs entry went back"
                );
                if state.rotation.is_some() {
                    ok(run(dir, &["rotate", "--resume"], b""));
                    tally.resumed += 1;
                }
            }
        }
        // The invariant: the afs entry's keys are on every server.
        if let Some(e) = db.get().unwrap() {
            for d in std::iter::once(dir).chain(others.iter().map(|o| o.path())) {
                let held = keys(d);
                for k in &e.keys {
                    assert_eq!(
                        held.get(&k.id).map(|b| &b[..]),
                        Some(k.bytes()),
                        "{} lacks the afs entry's {}",
                        d.display(),
                        k.id
                    );
                }
            }
        }
        // Keep KeyFileExt from growing without bound: prune what the policy allows.
        if added.len() > 40 {
            for k in added.drain(..20) {
                let _ = run(dir, &["remove", "--kvno", &k.to_string()], b"");
            }
        }
    }
    let leftovers = fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".tmp")
        })
        .count();
    eprintln!(
        "crash test: {} kills survived, {} operations completed before the kill, {} rotations resumed, \
         {leftovers} temp files left by killed processes, {:.1} s",
        tally.kills,
        tally.completed,
        tally.resumed,
        started.elapsed().as_secs_f64()
    );
    // The cell still works.
    ok(run(dir, &["rotate"], b""));
    let o = afskeys()
        .arg("--confdir")
        .arg(dir)
        .arg("check")
        .output()
        .unwrap();
    // Nothing CRITICAL or UNKNOWN, and no rotation left stopped: OK, or only old keys
    // waiting for `prune`.
    let line = String::from_utf8_lossy(&o.stdout).into_owned();
    match o.status.code() {
        Some(0) => assert!(line.starts_with("AFSKEYS OK - "), "{line}"),
        Some(1) => assert!(
            line.starts_with("AFSKEYS WARNING - removable keys waiting"),
            "{line}"
        ),
        c => panic!("check exited {c:?}: {line}"),
    }
}

//! The rotation state machine driven through the library, with failure injected at every
//! step: a server that is down, an auth DB that fails, and a crash (a panic in the step hook,
//! leaving the disk as a killed process would) after each saved step. After every step of
//! every scenario the invariant is asserted: the afs entry's kvno is on every server.

mod common;
use afskeys::authdb::file::FileAuthDb;
use afskeys::authdb::{AfsEntry, AuthDb, AuthDbError, KeyMaterial};
use afskeys::cell::Cell;
use afskeys::config::{Config, ServerConfig};
use afskeys::fleet::{FleetError, KeyFiles, Server, Staged};
use afskeys::journal::Step;
use afskeys::keys::{Key, KeySet};
use afskeys::rotation::{self, RotateError, RotateOptions};
use afskeys::store::ConfDir;
use chrono::{DateTime, Utc};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A server that can be switched off.
struct Flaky {
    inner: Box<dyn Server>,
    down: Arc<AtomicBool>,
}

impl Server for Flaky {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn read_keys(&self) -> Result<KeySet, FleetError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(FleetError::new(self.name(), "connection refused"));
        }
        self.inner.read_keys()
    }
    fn stage(&self, f: &KeyFiles) -> Result<Box<dyn Staged + '_>, FleetError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(FleetError::new(self.name(), "connection refused"));
        }
        self.inner.stage(f)
    }
}

/// An auth DB whose `set` can be made to fail.
struct FlakyDb {
    inner: FileAuthDb,
    fail: Arc<AtomicBool>,
}

impl AuthDb for FlakyDb {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn get(&self) -> Result<Option<AfsEntry>, AuthDbError> {
        self.inner.get()
    }
    fn key_material(&self) -> KeyMaterial {
        KeyMaterial::Raw
    }
    fn set(
        &self,
        kvno: i32,
        keys: &[Key],
        p: Option<&[u8]>,
        now: DateTime<Utc>,
    ) -> Result<AfsEntry, AuthDbError> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(AuthDbError::Backend(
                "kadmin: Cannot contact any KDC".into(),
            ));
        }
        self.inner.set(kvno, keys, p, now)
    }
}

struct World {
    _dirs: Vec<tempfile::TempDir>,
    cell: Cell,
    down: Arc<AtomicBool>,
    db_fails: Arc<AtomicBool>,
}

/// A control machine and three other servers (the third one flaky), file auth DB.
fn world() -> World {
    let control = common::confdir("steps.example.com");
    let others: Vec<_> = (0..3)
        .map(|_| common::confdir("steps.example.com"))
        .collect();
    let config = Config {
        servers: others
            .iter()
            .enumerate()
            .map(|(i, d)| ServerConfig {
                name: format!("fs{}", i + 1),
                host: None,
                port: 22,
                user: "root".into(),
                confdir: d.path().to_path_buf(),
                afs_host: None,
                running_proof: true,
            })
            .collect(),
        ..Config::default()
    };
    let mut cell = Cell::open(ConfDir::new(control.path()), &config).unwrap();
    // No VLDB here to ask for the cell's file servers.
    cell.inventory.vldb = afskeys::inventory::VldbAsk::NotAsked("test".into());
    cell.running.skipped = Some("test: no bosserver".into());
    let down = Arc::new(AtomicBool::new(false));
    let db_fails = Arc::new(AtomicBool::new(false));
    let last = cell.servers.pop().unwrap();
    cell.servers.push(Box::new(Flaky {
        inner: last,
        down: down.clone(),
    }));
    cell.authdb = Box::new(FlakyDb {
        inner: FileAuthDb::new(control.path().join("afskeys-authdb.json"), "afs/steps"),
        fail: db_fails.clone(),
    });
    let mut dirs = vec![control];
    dirs.extend(others);
    World {
        _dirs: dirs,
        cell,
        down,
        db_fails,
    }
}

/// The afs entry's keys are on every server that can be read (a down server cannot be
/// checked, but the rotation never sets the entry while one is down).
#[track_caller]
fn assert_invariant(w: &World) {
    let was_down = w.down.swap(false, Ordering::SeqCst);
    let v = rotation::invariant_violations(&w.cell).unwrap();
    w.down.store(was_down, Ordering::SeqCst);
    assert!(v.is_empty(), "invariant broken: {v:?}");
}

fn entry_kvno(w: &World) -> Option<i32> {
    w.cell.authdb.get().unwrap().map(|e| e.kvno)
}

#[test]
fn clean_rotations_keep_the_invariant_at_every_step() {
    let w = world();
    let mut steps = vec![];
    for _ in 0..3 {
        let r = rotation::rotate(&w.cell, &RotateOptions::default(), &mut |s| {
            assert_invariant(&w);
            steps.push(s);
        })
        .unwrap();
        assert_eq!(entry_kvno(&w), Some(r.kvno));
        assert_invariant(&w);
    }
    assert_eq!(steps.len(), 12);
    assert_eq!(
        &steps[..4],
        &[
            Step::Planned,
            Step::Added,
            Step::Distributed,
            Step::Activated
        ]
    );
    assert_eq!(entry_kvno(&w), Some(3));
    let st = w.cell.state.load().unwrap();
    assert!(st.rotation.is_none());
    assert_eq!(
        st.retired.iter().map(|r| r.kvno).collect::<Vec<_>>(),
        vec![1, 2]
    );
}

#[test]
fn a_server_down_stops_before_the_auth_db_and_resume_finishes() {
    let w = world();
    rotation::rotate(&w.cell, &RotateOptions::default(), &mut |_| {}).unwrap();
    w.down.store(true, Ordering::SeqCst);
    let e = rotation::rotate(&w.cell, &RotateOptions::default(), &mut |_| {
        assert_invariant(&w)
    })
    .unwrap_err();
    assert!(matches!(e, RotateError::Stopped(_)), "{e}");
    assert!(e.to_string().contains("fs3 (connection refused)"), "{e}");
    assert_eq!(
        entry_kvno(&w),
        Some(1),
        "the afs entry moved while fs3 lacked the key"
    );
    let st = w.cell.state.load().unwrap();
    let r = st.rotation.as_ref().unwrap();
    assert_eq!(r.step, Step::Added);
    assert_eq!(r.missing[0].0, "fs3");
    // a second rotate is refused while this one is unfinished
    let e = rotation::rotate(&w.cell, &RotateOptions::default(), &mut |_| {}).unwrap_err();
    assert!(matches!(e, RotateError::Refused(_)), "{e}");
    // still down: resume stops again, nothing set
    assert!(rotation::resume(&w.cell, &mut |_| {}).is_err());
    assert_eq!(entry_kvno(&w), Some(1));
    w.down.store(false, Ordering::SeqCst);
    let r = rotation::resume(&w.cell, &mut |_| assert_invariant(&w)).unwrap();
    assert_eq!(r.kvno, 2);
    assert_eq!(entry_kvno(&w), Some(2));
    assert_invariant(&w);
}

/// Proves the inventory is asked again at the moment the afs entry would move: a database
/// server added to the CellServDB while the key was being distributed (after the check at
/// the start) stops the rotation at step "distributed", naming it, with the entry unmoved;
/// once afskeys.toml accounts for it, `--resume` finishes.
#[test]
fn a_machine_that_joins_the_cell_during_a_rotation_stops_it_before_the_entry_moves() {
    use afskeys::inventory::{Accounted, How};
    let mut w = world();
    rotation::rotate(&w.cell, &RotateOptions::default(), &mut |_| {}).unwrap();
    let csdb = w.cell.control.path().join("CellServDB");
    let e = rotation::rotate(&w.cell, &RotateOptions::default(), &mut |s| {
        if s == Step::Distributed {
            let mut t = std::fs::read_to_string(&csdb).unwrap();
            t.push_str("203.0.113.7\t#db9\n");
            std::fs::write(&csdb, t).unwrap();
        }
    })
    .unwrap_err();
    assert!(matches!(e, RotateError::Stopped(_)), "{e}");
    let e = e.to_string();
    assert!(
        e.contains(
            "stopped after step \"distributed\": refusing to set the afs entry: the cell names \
             1 machine that afskeys.toml does not account for: db9 (CellServDB line 3)."
        ),
        "{e}"
    );
    assert_eq!(entry_kvno(&w), Some(1), "the afs entry moved");
    assert_eq!(
        w.cell.state.load().unwrap().rotation.unwrap().step,
        Step::Distributed
    );
    w.cell.inventory.accounted.push(Accounted {
        label: "203.0.113.7".into(),
        how: How::LeftOut("test: no key files".into()),
        hosts: vec!["203.0.113.7".into()],
    });
    let r = rotation::resume(&w.cell, &mut |_| assert_invariant(&w)).unwrap();
    assert_eq!((r.kvno, entry_kvno(&w)), (2, Some(2)));
}

#[test]
fn a_failing_auth_db_leaves_it_unchanged_and_resume_finishes() {
    let w = world();
    rotation::rotate(&w.cell, &RotateOptions::default(), &mut |_| {}).unwrap();
    w.db_fails.store(true, Ordering::SeqCst);
    let e = rotation::rotate(&w.cell, &RotateOptions::default(), &mut |_| {
        assert_invariant(&w)
    })
    .unwrap_err();
    assert!(e.to_string().contains("Cannot contact any KDC"), "{e}");
    assert_eq!(entry_kvno(&w), Some(1));
    assert_eq!(
        w.cell.state.load().unwrap().rotation.unwrap().step,
        Step::Distributed
    );
    w.db_fails.store(false, Ordering::SeqCst);
    rotation::resume(&w.cell, &mut |_| assert_invariant(&w)).unwrap();
    assert_eq!(entry_kvno(&w), Some(2));
}

#[test]
fn a_crash_after_any_step_is_finished_by_resume_or_undone_by_abort() {
    for crash_at in [
        Step::Planned,
        Step::Added,
        Step::Distributed,
        Step::Activated,
    ] {
        for undo in [false, true] {
            let w = world();
            rotation::rotate(&w.cell, &RotateOptions::default(), &mut |_| {}).unwrap();
            let crashed = catch_unwind(AssertUnwindSafe(|| {
                rotation::rotate(&w.cell, &RotateOptions::default(), &mut |s| {
                    assert_invariant(&w);
                    if s == crash_at {
                        panic!("simulated crash after {s:?}");
                    }
                })
            }));
            assert!(crashed.is_err(), "{crash_at:?}: no crash");
            assert_invariant(&w);
            let st = w.cell.state.load().unwrap();
            assert_eq!(st.rotation.as_ref().unwrap().step, crash_at);
            if undo && crash_at < Step::Activated {
                let warnings = rotation::abort(&w.cell).unwrap();
                assert!(warnings.is_empty(), "{warnings:?}");
                assert_eq!(entry_kvno(&w), Some(1));
                for s in w.cell.all_servers() {
                    assert_eq!(
                        s.read_keys().unwrap().max_kvno(),
                        Some(1),
                        "{} kept kvno 2",
                        s.name()
                    );
                }
                assert!(w.cell.state.load().unwrap().rotation.is_none());
                // and a fresh rotation then works
                rotation::rotate(&w.cell, &RotateOptions::default(), &mut |_| {
                    assert_invariant(&w)
                })
                .unwrap();
            } else if undo {
                // past the auth DB: abort is refused, resume is the only way
                let e = rotation::abort(&w.cell).unwrap_err();
                assert!(matches!(e, RotateError::Refused(_)), "{e}");
                rotation::resume(&w.cell, &mut |_| assert_invariant(&w)).unwrap();
            } else {
                rotation::resume(&w.cell, &mut |_| assert_invariant(&w)).unwrap();
            }
            assert_eq!(entry_kvno(&w), Some(2), "{crash_at:?} undo={undo}");
            assert_invariant(&w);
            assert!(w.cell.state.load().unwrap().rotation.is_none());
        }
    }
}

#[test]
fn crash_between_setting_the_auth_db_and_saving_the_journal() {
    // The auth DB already has the new kvno but the journal still says "distributed":
    // resume must notice and not set it twice; abort must refuse.
    let w = world();
    rotation::rotate(&w.cell, &RotateOptions::default(), &mut |_| {}).unwrap();
    let _ = catch_unwind(AssertUnwindSafe(|| {
        rotation::rotate(&w.cell, &RotateOptions::default(), &mut |s| {
            if s == Step::Distributed {
                panic!("crash")
            }
        })
    }));
    let st = w.cell.state.load().unwrap();
    let r = st.rotation.as_ref().unwrap();
    let keys = r.keys().unwrap();
    w.cell.authdb.set(r.kvno, &keys, None, Utc::now()).unwrap();
    assert!(matches!(
        rotation::abort(&w.cell),
        Err(RotateError::Refused(_))
    ));
    rotation::resume(&w.cell, &mut |_| assert_invariant(&w)).unwrap();
    assert_eq!(entry_kvno(&w), Some(2));
}

#[test]
fn kvno_choice_and_refusals() {
    let w = world();
    let opts = |k| RotateOptions {
        kvno: Some(k),
        ..Default::default()
    };
    rotation::rotate(&w.cell, &opts(10), &mut |_| {}).unwrap();
    // a server holding a higher kvno pushes the next choice above it
    let e = rotation::rotate(&w.cell, &opts(10), &mut |_| {}).unwrap_err();
    assert!(matches!(e, RotateError::Refused(_)), "{e}");
    let (plan, _, _) = rotation::dry_run(&w.cell, &RotateOptions::default()).unwrap();
    assert_eq!(plan.kvno, 11);
    assert_eq!(plan.servers, vec!["control", "fs1", "fs2", "fs3"]);
    // dry run changed nothing
    assert!(w.cell.state.load().unwrap().rotation.is_none());
    assert_eq!(entry_kvno(&w), Some(10));
}

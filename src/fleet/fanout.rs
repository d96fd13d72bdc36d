//! Fan-out over many servers at once: read every server's keys, push the control machine's
//! files to all of them in two phases, and verify that they agree.
//!
//! Reads and stages run on at most `parallel` threads (the `[ssh] parallel` setting: how
//! many connections are opened at once). A push commits only when every server staged: the
//! commits then start together, one thread per server released by a barrier, so the window
//! in which some servers hold the new files and others the old ones (the skew) is as short as
//! the slowest commit, not the length of the fleet. Commits are not bounded by `parallel`:
//! each is one short command on a connection staging already opened.

use super::progress::Progress;
use super::server::{FleetError, Found, KeyFiles, Server, Staged};
use crate::checksum::key_checksum;
use crate::keys::{KeyId, KeySet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

/// Run `f(i)` for every `i < n` on at most `parallel` threads; results in index order.
fn bounded<T: Send>(n: usize, parallel: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let slots: Vec<Mutex<Option<T>>> = (0..n).map(|_| Mutex::new(None)).collect();
    let next = AtomicUsize::new(0);
    let workers = parallel.max(1).min(n);
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let r = f(i);
                *slots[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
            });
        }
    });
    slots
        .into_iter()
        .map(|m| {
            m.into_inner()
                .unwrap_or_else(|e| e.into_inner())
                .expect("every index ran")
        })
        .collect()
}

/// A commit's result (with the keys read back, if any) and the instant its renames finished.
type Commit = (Result<Option<KeySet>, FleetError>, Instant);

/// Every server's keys, in input order.
pub fn read_all(
    servers: &[&dyn Server],
    parallel: usize,
) -> Vec<(String, Result<KeySet, FleetError>)> {
    bounded(servers.len(), parallel, |i| {
        (servers[i].name().to_string(), servers[i].read_keys())
    })
}

/// Bump CellServDB on every server at once (`Server::bump_cellservdb`), in input order.
pub fn bump_all(servers: &[&dyn Server], parallel: usize) -> Vec<(String, Result<(), FleetError>)> {
    bounded(servers.len(), parallel, |i| {
        (servers[i].name().to_string(), servers[i].bump_cellservdb())
    })
}

/// Install `files` on each server independently (`Server::install`, not a two-phase push:
/// each one that can be changed is) if it still holds what `read` says this command read
/// there (one per server), at most `parallel` at once, in input order.
pub fn install_each(
    servers: &[&dyn Server],
    files: &KeyFiles,
    read: &[KeySet],
    parallel: usize,
) -> Vec<(String, Result<(), FleetError>)> {
    let r = bounded(servers.len(), parallel, |i| {
        (
            servers[i].name().to_string(),
            servers[i].install_over(files, &read[i]),
        )
    });
    bounded(servers.len(), parallel, |i| servers[i].settle());
    r
}

/// What a push did on one server.
#[derive(Debug)]
pub struct ServerPush {
    pub name: String,
    /// Phase one: the files uploaded beside the live ones.
    pub staged: Result<(), FleetError>,
    /// How long staging took (connecting included).
    pub stage_time: Duration,
    /// Phase two; `None` when it did not run (some server failed to stage, so every staged
    /// upload was discarded and nothing changed).
    pub committed: Option<Result<(), FleetError>>,
    /// When this server's commit finished.
    pub commit_done: Option<Instant>,
    /// The keys read back right after the commit (`push_confirming` on a transport that
    /// reads back in its commit).
    pub read_back: Option<KeySet>,
}

/// What a push did on every server.
#[derive(Debug)]
pub struct PushReport {
    /// In input order.
    pub servers: Vec<ServerPush>,
    /// Did phase two run (every server staged)?
    pub committed: bool,
    /// From the first commit done to the last one done: the window in which some servers
    /// had the new files and others the old. `None` when nothing was committed.
    pub skew: Option<Duration>,
    /// The whole push.
    pub total: Duration,
    /// Phase one (every stage, or up to the discard of all of them).
    pub stage_phase: Duration,
}

impl PushReport {
    /// Every server staged and committed.
    pub fn ok(&self) -> bool {
        self.committed
            && self
                .servers
                .iter()
                .all(|s| matches!(s.committed, Some(Ok(()))))
    }

    /// Every error, stage or commit, in input order.
    pub fn failures(&self) -> Vec<&FleetError> {
        let mut v = Vec::new();
        for s in &self.servers {
            if let Err(e) = &s.staged {
                v.push(e);
            }
            if let Some(Err(e)) = &s.committed {
                v.push(e);
            }
        }
        v
    }

    /// Servers that now hold the pushed files.
    pub fn committed_servers(&self) -> Vec<&str> {
        self.servers
            .iter()
            .filter(|s| matches!(s.committed, Some(Ok(()))))
            .map(|s| s.name.as_str())
            .collect()
    }
}

/// Copy `files` to every server in two phases. Phase one stages them on every server (at
/// most `parallel` at once). Only when every server staged, phase two commits on all of them
/// together; otherwise every staged upload is discarded and no server changes. `progress`
/// is told of each server staged and of each phase.
pub fn push(
    servers: &[&dyn Server],
    files: &KeyFiles,
    parallel: usize,
    progress: &dyn Progress,
) -> PushReport {
    push_with(servers, files, parallel, progress, None)
}

/// `push`, each commit reading the server's keys back on its connection right after the
/// renames (`Staged::commit_with`, `ServerPush::read_back`): a confirmation that costs
/// no round trip of its own where the transport can. `read` holds the keys this command
/// read on each server before (one per server): a server whose stage finds other keys is
/// refused, and no server is changed.
pub fn push_confirming(
    servers: &[&dyn Server],
    files: &KeyFiles,
    parallel: usize,
    progress: &dyn Progress,
    read: &[KeySet],
) -> PushReport {
    push_with(servers, files, parallel, progress, Some(read))
}

fn push_with(
    servers: &[&dyn Server],
    files: &KeyFiles,
    parallel: usize,
    progress: &dyn Progress,
    read: Option<&[KeySet]>,
) -> PushReport {
    let start = Instant::now();
    let n = servers.len();
    let read_back = read.is_some();
    progress.start(n);
    let (mut stage_results, mut staged) = stage_all(servers, files, parallel, progress);
    if stage_results.iter().all(|(r, _)| r.is_ok()) {
        crate::store::atomic::pause_point("push:staged");
        let (changed, back) = recheck_all(servers, staged, read, parallel);
        staged = back;
        for (i, r) in changed {
            stage_results[i].0 = Err(r);
        }
    }
    let all_staged = stage_results.iter().all(|(r, _)| r.is_ok());
    let stage_phase = start.elapsed();
    let commits: Vec<Option<Commit>> = if !all_staged {
        progress.phase("discarding");
        discard_all(staged, parallel);
        (0..n).map(|_| None).collect()
    } else if n > 0 {
        progress.phase("committing");
        let c = commit_all(staged, read_back);
        bounded(n, parallel, |i| servers[i].settle());
        c
    } else {
        Vec::new()
    };
    progress.finish();
    let skew = skew_of(&commits);
    let servers = servers
        .iter()
        .zip(stage_results)
        .zip(commits.into_iter().chain(std::iter::repeat_with(|| None)))
        .map(|((s, (staged, stage_time)), c)| server_push(s.name(), staged, stage_time, c))
        .collect();
    PushReport {
        servers,
        committed: all_staged && n > 0,
        skew,
        total: start.elapsed(),
        stage_phase,
    }
}

/// Staged uploads, one slot per server (empty where staging failed).
type StagedAll<'a> = Vec<Option<Box<dyn Staged + 'a>>>;
/// One server's staging result and how long it took.
type StageResult = (Result<(), FleetError>, Duration);

/// Phase one: stage `files` on every server, at most `parallel` at once.
fn stage_all<'a>(
    servers: &[&'a dyn Server],
    files: &KeyFiles,
    parallel: usize,
    progress: &dyn Progress,
) -> (Vec<StageResult>, StagedAll<'a>) {
    let slots: Vec<Mutex<Option<Box<dyn Staged + 'a>>>> =
        (0..servers.len()).map(|_| Mutex::new(None)).collect();
    let results = bounded(servers.len(), parallel, |i| {
        let t = Instant::now();
        let r = servers[i].stage(files).map(|st| {
            *slots[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(st);
        });
        progress.done(servers[i].name(), r.is_ok());
        (r, t.elapsed())
    });
    let staged = slots
        .into_iter()
        .map(|m| m.into_inner().unwrap_or_else(|e| e.into_inner()))
        .collect();
    (results, staged)
}

/// The compare-and-swap's compare, just before the commit: each staged server's live files
/// still what its stage found (`Staged::recheck`, at most `parallel` at once), and what the
/// stage found the keys this command read there before (`read`). The servers that fail,
/// by index.
fn recheck_all<'a>(
    servers: &[&dyn Server],
    staged: StagedAll<'a>,
    read: Option<&[KeySet]>,
    parallel: usize,
) -> (Vec<(usize, FleetError)>, StagedAll<'a>) {
    let n = staged.len();
    let boxes: Vec<Mutex<Option<Box<dyn Staged + 'a>>>> =
        staged.into_iter().map(Mutex::new).collect();
    let results = bounded(n, parallel, |i| {
        let guard = boxes[i].lock().unwrap_or_else(|e| e.into_inner());
        let Some(st) = guard.as_ref() else {
            return Ok(());
        };
        if let (Some(read), Some(found)) = (read.and_then(|r| r.get(i)), st.found()) {
            if found.keys().as_ref() != Some(read) {
                return Err(Found::refusal(servers[i].name(), "its keys changed"));
            }
        }
        st.recheck()
    });
    let failed = results
        .into_iter()
        .enumerate()
        .filter_map(|(i, r)| r.err().map(|e| (i, e)))
        .collect();
    let staged = boxes
        .into_iter()
        .map(|m| m.into_inner().unwrap_or_else(|e| e.into_inner()))
        .collect();
    (failed, staged)
}

/// Some server failed to stage: remove every staged upload (at most `parallel` at once).
fn discard_all(staged: StagedAll<'_>, parallel: usize) {
    let n = staged.len();
    let boxes: Vec<Mutex<Option<Box<dyn Staged + '_>>>> =
        staged.into_iter().map(Mutex::new).collect();
    bounded(n, parallel, |i| {
        if let Some(st) = boxes[i].lock().unwrap_or_else(|e| e.into_inner()).take() {
            st.discard();
        }
    });
}

/// Phase two: one thread per server, released together by a barrier, each committing.
fn commit_all(staged: StagedAll<'_>, read_back: bool) -> Vec<Option<Commit>> {
    let n = staged.len();
    let barrier = Barrier::new(n);
    let results: Vec<Mutex<Option<Commit>>> = (0..n).map(|_| Mutex::new(None)).collect();
    std::thread::scope(|s| {
        for (i, st) in staged.into_iter().enumerate() {
            let st = st.expect("every server staged");
            let barrier = &barrier;
            let slot = &results[i];
            s.spawn(move || {
                barrier.wait();
                let done = Mutex::new(None);
                let renamed =
                    || *done.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
                let r = st.commit_with(read_back, &renamed);
                let done = done.into_inner().unwrap_or_else(|e| e.into_inner());
                let done = done.unwrap_or_else(Instant::now);
                *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some((r, done));
            });
        }
    });
    results
        .into_iter()
        .map(|m| m.into_inner().unwrap_or_else(|e| e.into_inner()))
        .collect()
}

/// From the first successful commit done to the last.
fn skew_of(commits: &[Option<Commit>]) -> Option<Duration> {
    let done: Vec<Instant> = commits
        .iter()
        .flatten()
        .filter(|(r, _)| r.is_ok())
        .map(|(_, t)| *t)
        .collect();
    match (done.iter().min(), done.iter().max()) {
        (Some(a), Some(b)) => Some(b.duration_since(*a)),
        _ => None,
    }
}

fn server_push(
    name: &str,
    staged: Result<(), FleetError>,
    stage_time: Duration,
    commit: Option<Commit>,
) -> ServerPush {
    let (committed, commit_done, read_back) = match commit {
        Some((Ok(k), t)) => (Some(Ok(())), Some(t), k),
        Some((Err(e), _)) => (Some(Err(e)), None, None),
        None => (None, None, None),
    };
    ServerPush {
        name: name.to_string(),
        staged,
        stage_time,
        committed,
        commit_done,
        read_back,
    }
}

/// How one server's keys compare with the reference.
#[derive(Debug)]
pub enum Agreement {
    /// Same key ids, same checksums.
    Agree,
    /// Key ids the server lacks, holds beyond the reference, or holds with another key.
    Differ {
        missing: Vec<KeyId>,
        extra: Vec<KeyId>,
        changed: Vec<KeyId>,
    },
    /// Its keys could not be read.
    Unreachable(FleetError),
}

/// One server's verify result.
#[derive(Debug)]
pub struct ServerVerify {
    pub name: String,
    pub agreement: Agreement,
    /// The server's keys with their checksums (empty when unreachable); never key bytes.
    pub checksums: Vec<(KeyId, Option<u32>)>,
}

/// Every server compared with the reference.
#[derive(Debug)]
pub struct VerifyReport {
    /// In input order.
    pub servers: Vec<ServerVerify>,
    pub total: Duration,
}

impl VerifyReport {
    pub fn all_agree(&self) -> bool {
        self.servers
            .iter()
            .all(|s| matches!(s.agreement, Agreement::Agree))
    }

    /// The servers that differ or could not be read.
    pub fn disagreeing(&self) -> Vec<&ServerVerify> {
        self.servers
            .iter()
            .filter(|s| !matches!(s.agreement, Agreement::Agree))
            .collect()
    }
}

/// Compare one key set with the reference by key id and checksum. Keys without a checksum
/// (weak or bad-parity DES keys) are compared by their bytes.
pub fn compare(reference: &KeySet, got: &KeySet) -> Agreement {
    let mut missing = Vec::new();
    let mut changed = Vec::new();
    for r in reference.iter() {
        match got.get(&r.id) {
            None => missing.push(r.id),
            Some(g) => {
                let (a, b) = (key_checksum(r), key_checksum(g));
                let same = match (a, b) {
                    (Some(a), Some(b)) => a == b && r.bytes().len() == g.bytes().len(),
                    _ => r.bytes() == g.bytes(),
                };
                if !same {
                    changed.push(r.id);
                }
            }
        }
    }
    let extra: Vec<KeyId> = got
        .iter()
        .filter(|g| reference.get(&g.id).is_none())
        .map(|g| g.id)
        .collect();
    if missing.is_empty() && extra.is_empty() && changed.is_empty() {
        Agreement::Agree
    } else {
        Agreement::Differ {
            missing,
            extra,
            changed,
        }
    }
}

/// Read every server (at most `parallel` at once) and compare its keys with `reference`.
pub fn verify(servers: &[&dyn Server], reference: &KeySet, parallel: usize) -> VerifyReport {
    let start = Instant::now();
    let servers = read_all(servers, parallel)
        .into_iter()
        .map(|(name, r)| match r {
            Ok(set) => ServerVerify {
                name,
                agreement: compare(reference, &set),
                checksums: set.iter().map(|k| (k.id, key_checksum(k))).collect(),
            },
            Err(e) => ServerVerify {
                name,
                agreement: Agreement::Unreachable(e),
                checksums: Vec::new(),
            },
        })
        .collect();
    VerifyReport {
        servers,
        total: start.elapsed(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::progress::NoProgress;
    use crate::format::read_keyfile;
    use crate::keys::{Key, KeyType};
    use std::sync::Arc;
    use zeroize::Zeroizing;

    /// Counts calls in flight and the most seen at once.
    #[derive(Default)]
    struct Gauge {
        now: AtomicUsize,
        max: AtomicUsize,
    }

    impl Gauge {
        fn enter(&self) {
            let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
            self.max.fetch_max(n, Ordering::SeqCst);
        }
        fn leave(&self) {
            self.now.fetch_sub(1, Ordering::SeqCst);
        }
        fn max(&self) -> usize {
            self.max.load(Ordering::SeqCst)
        }
    }

    /// An in-memory server: its keys behind a Mutex, switches to fail, a delay per call.
    struct Fake {
        name: String,
        keys: Mutex<KeySet>,
        fail_read: bool,
        fail_stage: bool,
        fail_commit: bool,
        delay: Duration,
        busy: Arc<Gauge>,
        committing: Arc<Gauge>,
        staged: AtomicUsize,
        discarded: AtomicUsize,
        committed: AtomicUsize,
    }

    impl Fake {
        fn new(i: usize, keys: KeySet, delay_ms: u64, busy: &Arc<Gauge>) -> Fake {
            Fake {
                name: format!("fs{i}"),
                keys: Mutex::new(keys),
                fail_read: false,
                fail_stage: false,
                fail_commit: false,
                delay: Duration::from_millis(delay_ms),
                busy: busy.clone(),
                committing: Arc::new(Gauge::default()),
                staged: AtomicUsize::new(0),
                discarded: AtomicUsize::new(0),
                committed: AtomicUsize::new(0),
            }
        }
        fn keys(&self) -> KeySet {
            self.keys.lock().unwrap().clone()
        }
    }

    impl Server for Fake {
        fn name(&self) -> &str {
            &self.name
        }
        fn read_keys(&self) -> Result<KeySet, FleetError> {
            self.busy.enter();
            std::thread::sleep(self.delay);
            self.busy.leave();
            if self.fail_read {
                return Err(FleetError::new(&self.name, "connection refused"));
            }
            Ok(self.keys())
        }
        fn stage(&self, files: &KeyFiles) -> Result<Box<dyn Staged + '_>, FleetError> {
            self.busy.enter();
            std::thread::sleep(self.delay);
            self.busy.leave();
            if self.fail_stage {
                return Err(FleetError::new(&self.name, "cannot connect"));
            }
            let mut set = read_keyfile(&files.keyfile).unwrap();
            for k in crate::format::read_keyfileext(&files.keyfileext)
                .unwrap()
                .iter()
            {
                set.insert(k.clone()).unwrap();
            }
            self.staged.fetch_add(1, Ordering::SeqCst);
            Ok(Box::new(FakeStaged { fake: self, set }))
        }
    }

    struct FakeStaged<'a> {
        fake: &'a Fake,
        set: KeySet,
    }

    impl Staged for FakeStaged<'_> {
        fn commit(self: Box<Self>) -> Result<(), FleetError> {
            self.fake.committing.enter();
            std::thread::sleep(self.fake.delay);
            self.fake.committing.leave();
            if self.fake.fail_commit {
                return Err(FleetError::new(&self.fake.name, "connection lost"));
            }
            *self.fake.keys.lock().unwrap() = self.set;
            self.fake.committed.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
        fn discard(self: Box<Self>) {
            self.fake.discarded.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn old_set() -> KeySet {
        let mut s = KeySet::new();
        s.insert(Key::rxkad(
            3,
            &[0x80, 0xb6, 0xa7, 0xcd, 0x7a, 0x9d, 0xad, 0xb6],
        ))
        .unwrap();
        s
    }

    fn new_set() -> KeySet {
        let mut s = old_set();
        s.insert(Key::new(
            KeyId {
                key_type: KeyType::RxkadKrb5,
                kvno: 4,
                subtype: 18,
            },
            Zeroizing::new(vec![0x42; 32]),
        ))
        .unwrap();
        s
    }

    fn fleet(n: usize, delay_ms: u64) -> (Vec<Fake>, Arc<Gauge>) {
        let g = Arc::new(Gauge::default());
        (
            (0..n)
                .map(|i| Fake::new(i, old_set(), delay_ms, &g))
                .collect(),
            g,
        )
    }

    fn refs(f: &[Fake]) -> Vec<&dyn Server> {
        f.iter().map(|s| s as &dyn Server).collect()
    }

    #[test]
    fn push_reaches_every_server_and_commits_together() {
        let (f, busy) = fleet(12, 20);
        let commit_gauge = Arc::new(Gauge::default());
        let f: Vec<Fake> = f
            .into_iter()
            .map(|mut s| {
                s.committing = commit_gauge.clone();
                s
            })
            .collect();
        let r = push(&refs(&f), &KeyFiles::of(&new_set()), 3, &NoProgress);
        assert!(r.ok(), "{:?}", r.failures());
        assert!(r.committed);
        for s in &f {
            assert_eq!(s.keys(), new_set(), "{}", s.name);
            assert_eq!(s.discarded.load(Ordering::SeqCst), 0);
        }
        assert!(busy.max() <= 3, "stages at once: {}", busy.max());
        // commits are not bounded by `parallel`: all 12 ran at once
        assert_eq!(commit_gauge.max(), 12);
        assert!(r.skew.unwrap() < Duration::from_millis(500), "{:?}", r.skew);
        assert!(r.servers.iter().all(|s| s.commit_done.is_some()));
        let v = verify(&refs(&f), &new_set(), 4);
        assert!(v.all_agree());
    }

    #[test]
    fn one_failed_stage_changes_nothing_anywhere() {
        let (mut f, _) = fleet(8, 5);
        f[5].fail_stage = true;
        let r = push(&refs(&f), &KeyFiles::of(&new_set()), 4, &NoProgress);
        assert!(!r.ok());
        assert!(!r.committed);
        assert!(r.skew.is_none());
        for (i, s) in f.iter().enumerate() {
            assert_eq!(s.keys(), old_set(), "{} changed", s.name);
            assert_eq!(s.committed.load(Ordering::SeqCst), 0);
            // every upload that was staged was discarded
            assert_eq!(
                s.discarded.load(Ordering::SeqCst),
                s.staged.load(Ordering::SeqCst)
            );
            assert_eq!(s.staged.load(Ordering::SeqCst), usize::from(i != 5));
            assert!(r.servers[i].committed.is_none());
        }
        let fails = r.failures();
        assert_eq!(fails.len(), 1);
        assert_eq!(fails[0].server, "fs5");
        assert!(r.servers[5].staged.is_err());
    }

    #[test]
    fn a_failed_commit_is_reported_and_others_commit() {
        let (mut f, _) = fleet(4, 1);
        f[2].fail_commit = true;
        let r = push(&refs(&f), &KeyFiles::of(&new_set()), 4, &NoProgress);
        assert!(r.committed && !r.ok());
        assert_eq!(r.committed_servers(), vec!["fs0", "fs1", "fs3"]);
        assert!(matches!(r.servers[2].committed, Some(Err(_))));
        assert!(r.servers[2].commit_done.is_none());
        let v = verify(&refs(&f), &new_set(), 2);
        assert!(!v.all_agree());
        let d = v.disagreeing();
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].name, "fs2");
        match &d[0].agreement {
            Agreement::Differ {
                missing,
                extra,
                changed,
            } => {
                assert_eq!(missing.len(), 1);
                assert_eq!(missing[0].kvno, 4);
                assert!(extra.is_empty() && changed.is_empty());
            }
            a => panic!("{a:?}"),
        }
    }

    /// Records every progress call, in order.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<String>>);

    impl Progress for Recorder {
        fn start(&self, total: usize) {
            self.0.lock().unwrap().push(format!("start {total}"));
        }
        fn phase(&self, name: &str) {
            self.0.lock().unwrap().push(name.to_string());
        }
        fn done(&self, server: &str, ok: bool) {
            self.0.lock().unwrap().push(format!("done {server} {ok}"));
        }
        fn finish(&self) {
            self.0.lock().unwrap().push("finish".into());
        }
    }

    #[test]
    fn push_reports_its_progress() {
        let (mut f, _) = fleet(3, 0);
        let rec = Recorder::default();
        push(&refs(&f), &KeyFiles::of(&new_set()), 1, &rec);
        let calls = rec.0.lock().unwrap().clone();
        assert_eq!(
            calls,
            [
                "start 3",
                "done fs0 true",
                "done fs1 true",
                "done fs2 true",
                "committing",
                "finish"
            ]
        );
        f[1].fail_stage = true;
        let rec = Recorder::default();
        push(&refs(&f), &KeyFiles::of(&new_set()), 1, &rec);
        let calls = rec.0.lock().unwrap().clone();
        assert_eq!(calls[2], "done fs1 false");
        assert_eq!(calls[4..], ["discarding", "finish"]);
    }

    #[test]
    fn parallel_bound_is_respected_and_used() {
        let (f, busy) = fleet(16, 40);
        let t = Instant::now();
        let r = read_all(&refs(&f), 4);
        let took = t.elapsed();
        assert_eq!(busy.max(), 4, "at most 4 and really 4 at once");
        // 16 calls of 40 ms on 4 threads: about 160 ms, far from the 640 ms of a loop
        assert!(took < Duration::from_millis(480), "{took:?}");
        // input order kept
        let names: Vec<_> = r.iter().map(|(n, _)| n.clone()).collect();
        assert_eq!(names, (0..16).map(|i| format!("fs{i}")).collect::<Vec<_>>());
        let (f, busy) = fleet(5, 10);
        verify(&refs(&f), &old_set(), 1);
        assert_eq!(busy.max(), 1);
        let (f, busy) = fleet(5, 10);
        push(&refs(&f), &KeyFiles::of(&new_set()), 2, &NoProgress);
        assert_eq!(busy.max(), 2);
    }

    #[test]
    fn verify_names_what_differs() {
        let (mut f, _) = fleet(3, 0);
        f[1].fail_read = true;
        *f[2].keys.lock().unwrap() = {
            let mut s = KeySet::new();
            s.insert(Key::rxkad(
                3,
                &[0x01, 0x02, 0x04, 0x07, 0x08, 0x0b, 0x0d, 0x0e],
            ))
            .unwrap();
            s.insert(Key::rxkad(
                9,
                &[0x80, 0xb6, 0xa7, 0xcd, 0x7a, 0x9d, 0xad, 0xb6],
            ))
            .unwrap();
            s
        };
        let v = verify(&refs(&f), &old_set(), 3);
        assert!(matches!(v.servers[0].agreement, Agreement::Agree));
        assert!(matches!(v.servers[1].agreement, Agreement::Unreachable(_)));
        match &v.servers[2].agreement {
            Agreement::Differ {
                missing,
                extra,
                changed,
            } => {
                assert!(missing.is_empty());
                assert_eq!(extra.iter().map(|k| k.kvno).collect::<Vec<_>>(), [9]);
                assert_eq!(changed.iter().map(|k| k.kvno).collect::<Vec<_>>(), [3]);
            }
            a => panic!("{a:?}"),
        }
        assert_eq!(v.servers[2].checksums.len(), 2);
    }

    #[test]
    fn empty_fleet() {
        let r = push(&[], &KeyFiles::of(&new_set()), 4, &NoProgress);
        assert!(!r.committed && r.skew.is_none() && r.servers.is_empty());
        assert!(read_all(&[], 4).is_empty());
        assert!(verify(&[], &new_set(), 4).all_agree());
    }
}

//! One read per server per command: `Remembered` wraps a server for the length of one
//! command and remembers the last keys read from it, so that the steps of that command which
//! each need "what does this server hold?" (rotate's kvno survey, distribute's check and
//! confirmation, the activation guard, the ticket proof) cost one SFTP exchange between them
//! instead of one each.
//!
//! What is remembered, and why it keeps the guarantees the repeated reads gave:
//! - A successful read is remembered; a failed read forgets (the next read is real), so an
//!   unreachable server is never taken for one that holds anything.
//! - Staging (and so any install) forgets before it changes anything: the read that follows
//!   a commit — distribute's confirmation, on the same connection, sent right behind the
//!   renames (`Staged::commit_with`) or after them — is real, and is the server's state
//!   after this process's own rename; it is what is remembered next. Nothing this process
//!   does to the server goes past the memo.
//! - The activation guard ("every machine holds the key at the moment the entry moves") then
//!   uses that confirmation, taken moments before by this process, which holds the cell's
//!   lock (so no `add`, `remove`, `prune` or other rotation runs meanwhile). What the lock
//!   does not hold off — a hand edit on a server, an `afskeys push` of the control
//!   machine's files (which hold the new key from step `added` on) — was never excluded by
//!   a second read either: a read and the auth DB's change are not atomic, so a later read
//!   only narrowed that window by milliseconds. `afskeys check` and `verify` read afresh.
//! - The memo lives for one command only: every command builds its own, so `rotate
//!   --resume` (a new process) reads every server for real, as does each new call of the
//!   library. The control machine is not wrapped (it is changed through its `ConfDir`, not
//!   through `Server`, and its reads cost no round trip), nor are the servers of an Update
//!   Server cell (their upclients change them on their own).

use super::{FleetError, Found, KeyFiles, Server, Staged};
use crate::keys::KeySet;
use std::sync::{Mutex, MutexGuard};

/// A server whose last read is remembered for the rest of one command.
pub struct Remembered<'a> {
    inner: &'a dyn Server,
    keys: Mutex<Option<KeySet>>,
}

impl<'a> Remembered<'a> {
    pub fn new(inner: &'a dyn Server) -> Remembered<'a> {
        Remembered {
            inner,
            keys: Mutex::new(None),
        }
    }

    /// Each of `servers`, wrapped.
    pub fn all(servers: &[&'a dyn Server]) -> Vec<Remembered<'a>> {
        servers.iter().map(|s| Remembered::new(*s)).collect()
    }

    fn memo(&self) -> MutexGuard<'_, Option<KeySet>> {
        self.keys.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Forget what was read: the next read goes to the server.
    pub fn forget(&self) {
        *self.memo() = None;
    }
}

impl Server for Remembered<'_> {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn read_keys(&self) -> Result<KeySet, FleetError> {
        if let Some(k) = self.memo().as_ref() {
            return Ok(k.clone());
        }
        let r = self.inner.read_keys();
        *self.memo() = r.as_ref().ok().cloned();
        r
    }

    fn keyfile_mtime(&self) -> Option<std::time::SystemTime> {
        self.inner.keyfile_mtime()
    }

    fn settle(&self) {
        self.inner.settle()
    }

    fn stage(&self, files: &KeyFiles) -> Result<Box<dyn Staged + '_>, FleetError> {
        // Whatever happens next (commit, discard, a cut), the server may change: read again,
        // unless the commit reads the keys back itself.
        self.forget();
        Ok(Box::new(RememberedStaged {
            inner: self.inner.stage(files)?,
            memo: &self.keys,
        }))
    }

    fn bump_cellservdb(&self) -> Result<(), FleetError> {
        self.inner.bump_cellservdb()
    }
}

/// A push staged through the memo: a commit that reads the keys back remembers them.
struct RememberedStaged<'b> {
    inner: Box<dyn Staged + 'b>,
    memo: &'b Mutex<Option<KeySet>>,
}

impl Staged for RememberedStaged<'_> {
    fn commit(self: Box<Self>) -> Result<(), FleetError> {
        self.inner.commit()
    }

    fn commit_with(
        self: Box<Self>,
        read_back: bool,
        committed: &dyn Fn(),
    ) -> Result<Option<KeySet>, FleetError> {
        let r = self.inner.commit_with(read_back, committed);
        if let Ok(Some(k)) = &r {
            *self.memo.lock().unwrap_or_else(|e| e.into_inner()) = Some(k.clone());
        }
        r
    }

    fn discard(self: Box<Self>) {
        self.inner.discard()
    }

    fn found(&self) -> Option<&Found> {
        self.inner.found()
    }

    fn recheck(&self) -> Result<(), FleetError> {
        self.inner.recheck()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::Key;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A server that counts its reads and holds whatever was last installed.
    struct Counting {
        reads: AtomicUsize,
        keys: Mutex<KeySet>,
        down: std::sync::atomic::AtomicBool,
    }

    struct Now<'a>(&'a Counting, KeySet);

    impl Staged for Now<'_> {
        fn commit(self: Box<Self>) -> Result<(), FleetError> {
            *self.0.keys.lock().unwrap() = self.1.clone();
            Ok(())
        }
        fn discard(self: Box<Self>) {}
    }

    impl Server for Counting {
        fn name(&self) -> &str {
            "fs1"
        }
        fn read_keys(&self) -> Result<KeySet, FleetError> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            if self.down.load(Ordering::SeqCst) {
                return Err(FleetError::new("fs1", "connection refused"));
            }
            Ok(self.keys.lock().unwrap().clone())
        }
        fn stage(&self, files: &KeyFiles) -> Result<Box<dyn Staged + '_>, FleetError> {
            let set =
                crate::store::rules::merge(Some(&files.keyfile), Some(&files.keyfileext)).unwrap();
            Ok(Box::new(Now(self, set)))
        }
    }

    fn set(kvno: i32) -> KeySet {
        let mut s = KeySet::new();
        s.insert(Key::rxkad(
            kvno,
            &[0x80, 0xb6, 0xa7, 0xcd, 0x7a, 0x9d, 0xad, 0xb6],
        ))
        .unwrap();
        s
    }

    #[test]
    fn reads_once_forgets_on_stage_and_on_failure() {
        let c = Counting {
            reads: AtomicUsize::new(0),
            keys: Mutex::new(set(1)),
            down: false.into(),
        };
        let m = Remembered::new(&c);
        assert_eq!(m.read_keys().unwrap(), set(1));
        assert_eq!(m.read_keys().unwrap(), set(1));
        assert_eq!(
            c.reads.load(Ordering::SeqCst),
            1,
            "the second read was remembered"
        );
        // an install through the memo: the next read is real and sees the new keys
        m.install(&KeyFiles::of(&set(2))).unwrap();
        assert_eq!(m.read_keys().unwrap(), set(2));
        assert_eq!(c.reads.load(Ordering::SeqCst), 2);
        // a failed read is not remembered
        m.forget();
        c.down.store(true, Ordering::SeqCst);
        assert!(m.read_keys().is_err());
        c.down.store(false, Ordering::SeqCst);
        assert_eq!(m.read_keys().unwrap(), set(2));
        assert_eq!(c.reads.load(Ordering::SeqCst), 4);
    }
}

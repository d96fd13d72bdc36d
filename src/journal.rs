//! The rotation journal and grace records: one JSON file (mode 0600, written atomically)
//! holding the rotation in progress (each step as it completes, and the new key material so a
//! crash can be finished by `--resume`), and when each old kvno stopped being current; and
//! the cell lock beside it, which rotations take to exclude each other and removals take to
//! wait for a running rotation.

use crate::keys::{Key, KeyId, KeyType, ParseError};
use crate::store::trust::{self, TrustError};
use crate::store::{atomic, StoreError};
use chrono::{DateTime, Utc};
use fs2::FileExt;
use serde::{Deserialize, Serialize};
use std::fs;
use std::path::{Path, PathBuf};
use zeroize::{Zeroize, Zeroizing};

pub const STATE_FILE: &str = "afskeys-state.json";

/// Why the journal could not be read, written or locked.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// Not a file afskeys may trust (a symlink, a FIFO, another user's, too big…).
    #[error(transparent)]
    Trust(#[from] TrustError),
    #[error("{}: {op}: {source}", path.display())]
    Io {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: corrupt: {source}", path.display())]
    Corrupt {
        path: PathBuf,
        #[source]
        source: Box<JournalError>,
    },
    #[error("{0}")]
    Json(#[source] serde_json::Error),
    #[error("version {0} (this afskeys reads version 1)")]
    Version(u32),
    #[error("journal: kvno {kvno} key is not hex")]
    KeyNotHex { kvno: i32 },
    #[error(transparent)]
    KeyType(#[from] ParseError),
    #[error(transparent)]
    Write(#[from] StoreError),
    /// The auth DB has no afs entry, but the journal knows the cell had one.
    #[error(
        "{db} has no afs entry, but the journal says the cell has one ({why}): the auth DB \
         is missing, unreadable or misnamed (check [authdb] path); refusing to guess which \
         key is current"
    )]
    EntryMissing { db: String, why: String },
    /// Another rotation holds the cell lock (only when not waiting for it).
    #[error("another afskeys rotate is running on this cell")]
    Busy,
}

impl crate::error::Kinded for JournalError {
    fn kind(&self) -> crate::error::Kind {
        match self {
            JournalError::Busy => crate::error::Kind::Refused,
            _ => crate::error::Kind::Failed,
        }
    }
}

impl JournalError {
    fn corrupt(path: &Path, e: JournalError) -> JournalError {
        JournalError::Corrupt {
            path: path.to_path_buf(),
            source: Box::new(e),
        }
    }

    fn io(path: &Path, op: &'static str, source: std::io::Error) -> JournalError {
        JournalError::Io {
            path: path.to_path_buf(),
            op,
            source,
        }
    }
}

/// The steps of a rotation, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Step {
    /// kvno and key chosen, nothing changed yet.
    Planned,
    /// The new key is on the control machine.
    Added,
    /// Every configured server holds it (checksums confirmed).
    Distributed,
    /// The auth DB's afs entry uses it.
    Activated,
}

impl Step {
    pub fn name(self) -> &'static str {
        match self {
            Step::Planned => "planned",
            Step::Added => "added",
            Step::Distributed => "distributed",
            Step::Activated => "activated",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JournalKey {
    pub enctype: i32,
    pub key: String,
}

/// A rotation in progress.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rotation {
    pub started: DateTime<Utc>,
    pub updated: DateTime<Utc>,
    pub step: Step,
    pub kvno: i32,
    #[serde(rename = "type")]
    pub key_type: String,
    /// The new keys (hex): the auth DB must get exactly these, so a resume needs them.
    pub keys: Vec<JournalKey>,
    /// The passphrase a KDC derives the keys from (kadmin backend only).
    pub passphrase: Option<String>,
    /// The afs entry's kvno before the rotation.
    pub old_kvno: Option<i32>,
    /// Servers confirmed to hold the new key.
    #[serde(default)]
    pub confirmed: Vec<String>,
    /// Servers that lacked it at the last attempt, with why.
    #[serde(default)]
    pub missing: Vec<(String, String)>,
    pub activated: Option<DateTime<Utc>>,
}

impl Drop for Rotation {
    fn drop(&mut self) {
        for k in &mut self.keys {
            k.key.zeroize();
        }
        if let Some(p) = &mut self.passphrase {
            p.zeroize();
        }
    }
}

impl Rotation {
    pub fn key_type(&self) -> Result<KeyType, JournalError> {
        self.key_type.parse().map_err(JournalError::KeyType)
    }

    /// The new keys as keys.
    pub fn keys(&self) -> Result<Vec<Key>, JournalError> {
        let t = self.key_type()?;
        self.keys
            .iter()
            .map(|k| {
                let bytes = Zeroizing::new(
                    hex::decode(&k.key).map_err(|_| JournalError::KeyNotHex { kvno: self.kvno })?,
                );
                Ok(Key::new(
                    KeyId {
                        key_type: t,
                        kvno: self.kvno,
                        subtype: k.enctype,
                    },
                    bytes,
                ))
            })
            .collect()
    }

    pub fn journal_keys(keys: &[Key]) -> Vec<JournalKey> {
        keys.iter()
            .map(|k| JournalKey {
                enctype: k.id.subtype,
                key: hex::encode(k.bytes()),
            })
            .collect()
    }
}

/// When the afs entry moved off a kvno: its grace started then.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retired {
    pub kvno: i32,
    pub since: DateTime<Utc>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    pub version: u32,
    pub rotation: Option<Rotation>,
    #[serde(default)]
    pub retired: Vec<Retired>,
    pub last_rotation: Option<DateTime<Utc>>,
    /// When `authdb init` or `authdb set` created the afs entry outside a rotation: from then
    /// on the cell has an entry even if it never rotates (absent from older journals).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adopted: Option<DateTime<Utc>>,
}

impl State {
    /// Parse the state file's bytes; `path` names it in errors.
    pub fn parse(bytes: &[u8], path: &Path) -> Result<State, JournalError> {
        let s: State = serde_json::from_slice(bytes)
            .map_err(|e| JournalError::corrupt(path, JournalError::Json(e)))?;
        if s.version != 1 {
            return Err(JournalError::corrupt(
                path,
                JournalError::Version(s.version),
            ));
        }
        if let Some(r) = &s.rotation {
            r.keys().map_err(|e| JournalError::corrupt(path, e))?;
        }
        Ok(s)
    }

    /// When kvno's grace started, if recorded.
    pub fn retired_since(&self, kvno: i32) -> Option<DateTime<Utc>> {
        self.retired
            .iter()
            .find(|r| r.kvno == kvno)
            .map(|r| r.since)
    }

    /// The latest time the journal records (a rotation's times, grace starts, the last
    /// rotation): afskeys never records a time before it.
    pub fn latest_recorded(&self) -> Option<DateTime<Utc>> {
        let r = self.rotation.iter().flat_map(|r| {
            [Some(r.started), Some(r.updated), r.activated]
                .into_iter()
                .flatten()
        });
        r.chain(self.retired.iter().map(|x| x.since))
            .chain(self.last_rotation)
            .chain(self.adopted)
            .max()
    }

    /// What the journal knows of an afs entry, if anything: a finished rotation, a retired
    /// kvno, or a rotation that had an old kvno or already set the entry. Once it knows one,
    /// an auth DB with no entry is missing or misnamed, never "no entry yet".
    pub fn known_entry(&self) -> Option<String> {
        if let Some(r) = &self.rotation {
            if r.step >= Step::Activated {
                return Some(format!("a rotation set it to kvno {}", r.kvno));
            }
            if let Some(old) = r.old_kvno {
                return Some(format!("it was at kvno {old} when a rotation started"));
            }
        }
        if let Some(r) = self.retired.last() {
            return Some(format!("kvno {} was retired from it", r.kvno));
        }
        if let Some(t) = self.last_rotation {
            return Some(format!("a rotation set it at {}", crate::time::fmt_time(t)));
        }
        self.adopted.map(|t| {
            format!(
                "`afskeys authdb` created it at {}",
                crate::time::fmt_time(t)
            )
        })
    }

    /// Refuse to act on "no afs entry" when the journal knows the cell has one (`db` names
    /// the auth DB in the message).
    pub fn check_entry_missing(&self, db: &str) -> Result<(), JournalError> {
        match self.known_entry() {
            Some(why) => Err(JournalError::EntryMissing {
                db: db.to_string(),
                why,
            }),
            None => Ok(()),
        }
    }

    pub fn retire(&mut self, kvno: i32, since: DateTime<Utc>) {
        self.retired.retain(|r| r.kvno != kvno);
        self.retired.push(Retired { kvno, since });
        self.retired.sort_by_key(|r| r.kvno);
    }
}

/// The state file of a conf dir.
#[derive(Debug, Clone)]
pub struct StateFile {
    path: PathBuf,
}

impl StateFile {
    pub fn new(path: impl Into<PathBuf>) -> StateFile {
        StateFile { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Read through the one checked open (`store::trust`): a journal another user could
    /// have written is refused, never believed. Absent is an empty state.
    pub fn load(&self) -> Result<State, JournalError> {
        match trust::read(&self.path, trust::JOURNAL)? {
            Some(bytes) => State::parse(&bytes, &self.path),
            None => Ok(State {
                version: 1,
                ..Default::default()
            }),
        }
    }

    /// Check, before anything is written, that the journal, its lock and its dir pass the
    /// checks a save and a lock will need.
    pub fn check_writable(&self) -> Result<(), JournalError> {
        trust::check_writable_path(&self.path)?;
        trust::check_existing(&atomic::lock_path_for(&self.path))?;
        trust::check_existing(&self.rotation_lock_path())?;
        Ok(())
    }

    /// Write atomically (temp file, fsync, rename, fsync dir).
    pub fn save(&self, s: &State) -> Result<(), JournalError> {
        let mut bytes = Zeroizing::new(serde_json::to_vec_pretty(s).expect("serializable"));
        bytes.push(b'\n');
        atomic::replace_file_cleaning(&self.path, &bytes)?;
        if let Some(d) = self.path.parent() {
            atomic::fsync_dir(d)?;
        }
        Ok(())
    }

    /// Take the cell lock (a lock file beside the journal): `wait` blocks until the holder
    /// (a running rotation) lets go; otherwise a held lock is `JournalError::Busy`.
    pub fn lock(&self, wait: bool) -> Result<CellLock, JournalError> {
        let p = atomic::lock_path_for(&self.path);
        let f = atomic::open_lock_file(&p)?;
        if wait {
            f.lock_exclusive()
                .map_err(|e| JournalError::io(&p, "cannot lock", e))?;
        } else {
            f.try_lock_exclusive().map_err(|_| JournalError::Busy)?;
        }
        Ok(CellLock(vec![f]))
    }

    /// The locks a rotation holds for its whole run: the rotation lock (`<journal>.rotate.lock`,
    /// never waited for: a second rotation is `JournalError::Busy`), then the cell lock,
    /// waited for (an add, remove or prune holds it only for a moment, and is not a
    /// rotation).
    pub fn lock_for_rotation(&self) -> Result<CellLock, JournalError> {
        let p = self.rotation_lock_path();
        let f = atomic::open_lock_file(&p)?;
        f.try_lock_exclusive().map_err(|_| JournalError::Busy)?;
        let CellLock(mut held) = self.lock(true)?;
        held.insert(0, f);
        Ok(CellLock(held))
    }

    /// A rotation's process is running now (it holds the rotation lock). False when no
    /// rotation ever ran here (no lock file) or the lock cannot be looked at.
    pub fn rotation_running(&self) -> bool {
        let p = self.rotation_lock_path();
        if !p.exists() {
            return false;
        }
        match atomic::open_lock_file(&p) {
            Ok(f) => f.try_lock_exclusive().is_err(),
            Err(_) => false,
        }
    }

    fn rotation_lock_path(&self) -> PathBuf {
        let mut p = self.path.as_os_str().to_owned();
        p.push(".rotate.lock");
        p.into()
    }
}

/// Holds the cell lock until dropped: a second rotate while one runs is refused, and
/// removals wait for a running rotation so the policy they check cannot change under them.
pub struct CellLock(#[allow(dead_code)] Vec<fs::File>);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_corruption() {
        let d = tempfile::tempdir().unwrap();
        let f = StateFile::new(d.path().join(STATE_FILE));
        let mut s = f.load().unwrap();
        assert!(s.rotation.is_none());
        let now = Utc::now();
        s.retire(4, now);
        s.rotation = Some(Rotation {
            started: now,
            updated: now,
            step: Step::Added,
            kvno: 5,
            key_type: "rxkad_krb5".into(),
            keys: vec![JournalKey {
                enctype: 17,
                key: "00".repeat(16),
            }],
            passphrase: None,
            old_kvno: Some(4),
            confirmed: vec![],
            missing: vec![("fs2".into(), "down".into())],
            activated: None,
        });
        f.save(&s).unwrap();
        let back = f.load().unwrap();
        assert_eq!(back.retired_since(4), Some(now));
        assert_eq!(back.rotation.as_ref().unwrap().step, Step::Added);
        assert_eq!(
            back.rotation.as_ref().unwrap().keys().unwrap()[0].bytes(),
            &[0; 16]
        );
        fs::write(
            f.path(),
            b"{\"version\":1,\"rotation\":null,\"retired\":[],\"last_rotation\":null,\"x\":1}",
        )
        .unwrap();
        let e = f.load().unwrap_err().to_string();
        assert!(e.contains("corrupt") && e.contains("unknown field"), "{e}");
    }

    #[test]
    fn the_cell_lock_refuses_a_second_holder_unless_waiting() {
        let d = tempfile::tempdir().unwrap();
        let f = StateFile::new(d.path().join(STATE_FILE));
        let held = f.lock(false).unwrap();
        let e = f.lock(false).err().expect("a second holder is refused");
        assert!(matches!(e, JournalError::Busy));
        assert_eq!(
            e.to_string(),
            "another afskeys rotate is running on this cell"
        );
        drop(held);
        let _again = f.lock(true).unwrap();
    }

    #[test]
    fn a_rotation_waits_for_an_edit_but_refuses_a_rotation() {
        let d = tempfile::tempdir().unwrap();
        let f = StateFile::new(d.path().join(STATE_FILE));
        let rot = f.lock_for_rotation().unwrap();
        assert!(matches!(f.lock_for_rotation(), Err(JournalError::Busy)));
        drop(rot);
        // an edit (add, remove, prune) holds the cell lock for a moment
        let edit = f.lock(true).unwrap();
        let t = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(200));
            drop(edit);
        });
        let _rot = f.lock_for_rotation().unwrap();
        t.join().unwrap();
    }
}

//! The embedded auth DB: one JSON file (mode 0600) holding the afs entry, kept with the same
//! lock / temp file / fsync / rename discipline as the KeyFile. Needs no configuration.

use super::{verify_entry, AfsEntry, AuthDb, AuthDbError, KeyMaterial};
use crate::journal::StateFile;
use crate::keys::{Key, KeyId, KeyType, ParseError};
use crate::store::{atomic, trust, ConfDir};
use chrono::{DateTime, Utc};
use fs2::FileExt;
use serde::{Deserialize, Serialize};
use std::fs;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

pub const DEFAULT_NAME: &str = "afskeys-authdb.json";

/// The file auth DB at `path`.
#[derive(Debug, Clone)]
pub struct FileAuthDb {
    path: PathBuf,
    principal: String,
    /// The control machine's conf dir and the cell's journal: a missing file is "no entry
    /// yet" only while the key files hold no key (see [`FileAuthDb::guarded_by`]).
    guard: Option<(ConfDir, StateFile)>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct OnDisk {
    version: u32,
    principal: String,
    kvno: i32,
    changed: DateTime<Utc>,
    keys: Vec<DiskKey>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct DiskKey {
    #[serde(rename = "type")]
    key_type: String,
    enctype: i32,
    key: String,
}

impl FileAuthDb {
    pub fn new(path: impl Into<PathBuf>, principal: impl Into<String>) -> FileAuthDb {
        FileAuthDb {
            path: path.into(),
            principal: principal.into(),
            guard: None,
        }
    }

    /// Judge a missing file that `[authdb] path` names by the control machine's key files:
    /// a cell whose KeyFile or KeyFileExt holds a key has an afs entry, so a missing file
    /// there is a misnamed or lost auth DB (an error), never "no entry yet". The one exception
    /// is the keys of the cell's first rotation, under way. `init` (adoption) and `set` still
    /// see a missing file as empty. (A cell whose journal knows of an entry is refused by
    /// the callers' `State::check_entry_missing`, with the journal's reason.)
    pub fn guarded_by(mut self, control: ConfDir, journal: StateFile) -> FileAuthDb {
        self.guard = Some((control, journal));
        self
    }

    /// The file is missing: "no entry" only when the cell plainly has none yet.
    fn missing(&self) -> Result<Option<AfsEntry>, AuthDbError> {
        let Some((control, journal)) = &self.guard else {
            return Ok(None);
        };
        let unknown = |e: Box<dyn std::error::Error + Send + Sync>| AuthDbError::AbsentUnknown {
            path: self.path.clone(),
            confdir: control.path().to_path_buf(),
            source: e,
        };
        let snap = control.read().map_err(|e| unknown(Box::new(e)))?;
        let mut kvnos: Vec<i32> = snap.keys.iter().map(|k| k.kvno()).collect();
        kvnos.sort_unstable();
        kvnos.dedup();
        if kvnos.is_empty() {
            return Ok(None);
        }
        let state = journal.load().map_err(|e| unknown(Box::new(e)))?;
        if state.known_entry().is_some() {
            return Ok(None);
        }
        let first = state.rotation.as_ref().filter(|r| r.old_kvno.is_none());
        if first.is_some_and(|r| kvnos == [r.kvno]) {
            return Ok(None);
        }
        Err(AuthDbError::Absent {
            path: self.path.clone(),
            confdir: control.path().to_path_buf(),
            kvnos: kvnos
                .iter()
                .map(|k| k.to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn corrupt(&self, message: impl Into<String>) -> AuthDbError {
        AuthDbError::Corrupt {
            path: self.path.clone(),
            message: message.into(),
        }
    }

    /// Parse the file's bytes (exposed for fuzzing and tests).
    pub fn parse(&self, bytes: &[u8]) -> Result<AfsEntry, AuthDbError> {
        let d: OnDisk = serde_json::from_slice(bytes).map_err(|e| self.corrupt(e.to_string()))?;
        if d.version != 1 {
            return Err(self.corrupt(format!(
                "version {} (this afskeys reads version 1)",
                d.version
            )));
        }
        if d.keys.is_empty() {
            return Err(self.corrupt("the afs entry has no keys"));
        }
        let mut keys = Vec::new();
        for k in &d.keys {
            let key_type: KeyType = k
                .key_type
                .parse()
                .map_err(|e: ParseError| self.corrupt(e.to_string()))?;
            let bytes = Zeroizing::new(
                hex::decode(&k.key)
                    .map_err(|_| self.corrupt(format!("kvno {}: key is not hex", d.kvno)))?,
            );
            let key = Key::new(
                KeyId {
                    key_type,
                    kvno: d.kvno,
                    subtype: k.enctype,
                },
                bytes,
            );
            crate::keys::KeySet::validate_key(&key).map_err(|e| self.corrupt(e.to_string()))?;
            keys.push(key);
        }
        Ok(AfsEntry {
            principal: d.principal,
            kvno: d.kvno,
            keys,
            changed: d.changed,
            kdc: None,
        })
    }

    fn encode(&self, e: &AfsEntry) -> Zeroizing<Vec<u8>> {
        let d = OnDisk {
            version: 1,
            principal: e.principal.clone(),
            kvno: e.kvno,
            changed: e.changed,
            keys: e
                .keys
                .iter()
                .map(|k| DiskKey {
                    key_type: k.key_type().name().to_string(),
                    enctype: k.id.subtype,
                    key: hex::encode(k.bytes()),
                })
                .collect(),
        };
        let mut v = Zeroizing::new(serde_json::to_vec_pretty(&d).expect("serializable"));
        v.push(b'\n');
        for k in d.keys {
            let mut s = k.key;
            zeroize::Zeroize::zeroize(&mut s);
        }
        v
    }

    fn read(&self) -> Result<Option<AfsEntry>, AuthDbError> {
        match trust::read(&self.path, trust::AUTHDB)? {
            Some(bytes) => self.parse(&bytes).map(Some),
            None => Ok(None),
        }
    }

    /// Create the entry (the first key of a cell, or adoption of an existing KeyFile's key).
    /// Refused when the entry exists.
    fn create(&self, kvno: i32, keys: &[Key], now: DateTime<Utc>) -> Result<AfsEntry, AuthDbError> {
        let _lock = self.lock()?;
        if let Some(e) = self.read()? {
            return Err(AuthDbError::Refused(format!(
                "{} already holds the afs entry (kvno {}); use rotate or authdb set",
                self.path.display(),
                e.kvno
            )));
        }
        self.write_entry(kvno, keys, now)
    }

    fn write_entry(
        &self,
        kvno: i32,
        keys: &[Key],
        now: DateTime<Utc>,
    ) -> Result<AfsEntry, AuthDbError> {
        let entry = AfsEntry {
            principal: self.principal.clone(),
            kvno,
            keys: keys.to_vec(),
            changed: now,
            kdc: None,
        };
        let bytes = self.encode(&entry);
        atomic::replace_file_cleaning(&self.path, &bytes)
            .map_err(|e| AuthDbError::Backend(e.to_string()))?;
        if let Some(dir) = self.path.parent() {
            atomic::fsync_dir(dir).map_err(|e| AuthDbError::Backend(e.to_string()))?;
        }
        let back = self
            .read()?
            .ok_or_else(|| AuthDbError::Mismatch("the entry vanished after writing".into()))?;
        verify_entry(&back, kvno, keys)?;
        Ok(back)
    }

    fn lock(&self) -> Result<fs::File, AuthDbError> {
        let p = atomic::lock_path_for(&self.path);
        let f = atomic::open_lock_file(&p)?;
        f.lock_exclusive().map_err(|source| AuthDbError::Io {
            path: p,
            op: "cannot lock",
            source,
        })?;
        Ok(f)
    }
}

impl AuthDb for FileAuthDb {
    fn describe(&self) -> String {
        format!("file {}", self.path.display())
    }

    fn check_writable(&self) -> Result<(), AuthDbError> {
        crate::store::trust::check_writable_path(&self.path)?;
        Ok(())
    }

    fn get(&self) -> Result<Option<AfsEntry>, AuthDbError> {
        match self.read()? {
            Some(e) => Ok(Some(e)),
            None => self.missing(),
        }
    }

    fn key_material(&self) -> KeyMaterial {
        KeyMaterial::Raw
    }

    fn set(
        &self,
        kvno: i32,
        keys: &[Key],
        _passphrase: Option<&[u8]>,
        now: DateTime<Utc>,
    ) -> Result<AfsEntry, AuthDbError> {
        let _lock = self.lock()?;
        let cur = self.read()?;
        if let Some(c) = &cur {
            if kvno <= c.kvno {
                return Err(AuthDbError::Refused(format!(
                    "the afs entry is at kvno {}; a new key needs a higher kvno than {kvno}",
                    c.kvno
                )));
            }
        }
        if keys.is_empty() || keys.iter().any(|k| k.kvno() != kvno) {
            return Err(AuthDbError::Refused(format!(
                "no keys at kvno {kvno} to set"
            )));
        }
        self.write_entry(kvno, keys, now)
    }

    fn init(&self, kvno: i32, keys: &[Key], now: DateTime<Utc>) -> Result<AfsEntry, AuthDbError> {
        self.create(kvno, keys, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn typed(kvno: i32, e: i32, b: u8) -> Key {
        let len = if e == 18 { 32 } else { 16 };
        Key::new(
            KeyId {
                key_type: KeyType::RxkadKrb5,
                kvno,
                subtype: e,
            },
            Zeroizing::new(vec![b; len]),
        )
    }

    #[test]
    fn init_set_get_and_monotonic_kvno() {
        let d = tempfile::tempdir().unwrap();
        let db = FileAuthDb::new(d.path().join(DEFAULT_NAME), "afs/x@X");
        assert!(db.get().unwrap().is_none());
        let t0 = Utc::now();
        db.init(3, &[typed(3, 18, 1), typed(3, 17, 2)], t0).unwrap();
        assert!(matches!(
            db.create(4, &[typed(4, 18, 1)], t0),
            Err(AuthDbError::Refused(_))
        ));
        let e = db.get().unwrap().unwrap();
        assert_eq!((e.kvno, e.keys.len()), (3, 2));
        assert!(matches!(
            db.set(3, &[typed(3, 18, 9)], None, t0),
            Err(AuthDbError::Refused(_))
        ));
        let e = db.set(5, &[typed(5, 18, 9)], None, t0).unwrap();
        assert_eq!(e.kvno, 5);
        assert_eq!(e.keys[0].bytes(), &[9; 32]);
        let m = fs::metadata(db.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(m, 0o600);
    }

    #[test]
    fn corrupt_files_are_named() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join(DEFAULT_NAME);
        let db = FileAuthDb::new(&p, "afs");
        for (text, needle) in [
            ("", "EOF"),
            ("{\"version\":2,\"principal\":\"a\",\"kvno\":1,\"changed\":\"2026-01-01T00:00:00Z\",\"keys\":[]}", "version 2"),
            ("{\"version\":1,\"principal\":\"a\",\"kvno\":1,\"changed\":\"2026-01-01T00:00:00Z\",\"keys\":[]}", "no keys"),
            ("{\"version\":1,\"principal\":\"a\",\"kvno\":1,\"changed\":\"2026-01-01T00:00:00Z\",\"keys\":[{\"type\":\"rxkad_krb5\",\"enctype\":18,\"key\":\"00\"}]}", "32 expected"),
        ] {
            fs::write(&p, text).unwrap();
            let e = db.get().unwrap_err().to_string();
            assert!(e.starts_with(&format!("auth DB {}: corrupt: ", p.display())), "{e}");
            assert!(e.contains(needle), "{e}");
        }
    }
}

//! Locked, atomic read-modify-write of one conf dir's KeyFile and KeyFileExt.
//!
//! An edit takes an exclusive lock on `.afskeys.lock` in the dir, reads both files, applies
//! the change, and for each file whose bytes change: keeps a backup of the old one, writes
//! the new one to a temp file in the same dir (mode 0600), fsyncs it, renames it over the old
//! one and fsyncs the dir. Then it bumps `CellServDB`'s mtime so running servers reload.
//! What the names, checks and backups are is decided in `rules`, which the SSH server shares;
//! this module and its children do the local I/O.

pub mod atomic;
mod backup;
mod error;
pub mod ops;
pub mod rules;
pub mod trust;

pub use error::StoreError;
pub use rules::{BACKUP_DIR, KEYFILE, KEYFILEEXT, LOCKFILE, MAX_BACKUPS};

use crate::format::FormatError;
use crate::keys::KeySet;
use rules::{DirProblem, KeyFilesError};
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// A cell name as afskeys accepts it: what reaches salts, principals, messages and the audit
/// log is letters, digits, '.', '-' and '_', not starting with '-' or '.'.
pub fn is_cell_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with(['-', '.'])
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

/// One server conf dir (`/usr/afs/etc`, `/etc/openafs/server`, or a test's own dir).
#[derive(Debug, Clone)]
pub struct ConfDir {
    path: PathBuf,
}

/// The keys of a conf dir as read, with what a listing needs besides.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub keys: KeySet,
    /// The KeyFile's mtime (what `bos listkeys` prints as "Keys last changed"), if present.
    pub keyfile_mtime: Option<SystemTime>,
    /// Problems worth telling the operator that do not stop the read.
    pub warnings: Vec<String>,
}

/// What an edit did.
#[derive(Debug, Clone, Default)]
pub struct EditReport {
    /// Files rewritten.
    pub written: Vec<PathBuf>,
    /// Backups made of their previous versions.
    pub backups: Vec<PathBuf>,
    pub warnings: Vec<String>,
}

/// The bytes of one file as read, `None` when absent.
struct Raw {
    path: PathBuf,
    bytes: Option<zeroize::Zeroizing<Vec<u8>>>,
    mode: Option<u32>,
    mtime: Option<SystemTime>,
}

impl Raw {
    fn bytes(&self) -> Option<&[u8]> {
        self.bytes.as_ref().map(|b| &b[..])
    }
}

impl ConfDir {
    pub fn new(path: impl Into<PathBuf>) -> ConfDir {
        ConfDir { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn keyfile_path(&self) -> PathBuf {
        self.path.join(KEYFILE)
    }

    pub fn keyfileext_path(&self) -> PathBuf {
        self.path.join(KEYFILEEXT)
    }

    /// The cell this server belongs to, from `ThisCell` in the conf dir.
    pub fn this_cell(&self) -> Result<String, StoreError> {
        let p = self.path.join("ThisCell");
        let kind = trust::Kind {
            what: "ThisCell",
            max: 4096,
        };
        let bytes = trust::read(&p, kind)?.ok_or_else(|| {
            StoreError::io(&p, "cannot read", io::Error::from(io::ErrorKind::NotFound))
        })?;
        let s = String::from_utf8_lossy(&bytes);
        let cell = s.split_whitespace().next().unwrap_or("").to_string();
        if cell.is_empty() {
            return Err(StoreError::Invalid {
                path: p,
                problem: "is empty; it should hold the cell name".into(),
            });
        }
        if !is_cell_name(&cell) {
            return Err(StoreError::Invalid {
                path: p,
                problem: "does not hold a cell name (letters, digits, '.', '-' and '_'; not \
                          starting with '-' or '.')"
                    .into(),
            });
        }
        Ok(cell)
    }

    /// Read both key files (no lock needed: writers replace files atomically).
    pub fn read(&self) -> Result<Snapshot, StoreError> {
        self.check_dir(false)?;
        let (snap, _, _) = self.read_raw()?;
        Ok(snap)
    }

    fn read_raw(&self) -> Result<(Snapshot, Raw, Raw), StoreError> {
        let kf = read_file(&self.keyfile_path(), trust::KEYFILE)?;
        let kx = read_file(&self.keyfileext_path(), trust::KEYFILEEXT)?;
        let mut warnings = Vec::new();
        let keys = rules::merge(kf.bytes(), kx.bytes()).map_err(|e| match e {
            KeyFilesError::Format { file, source } => {
                StoreError::corrupt(if file == KEYFILE { &kf.path } else { &kx.path }, source)
            }
            // Typed keys never collide with rxkad ones; this cannot happen.
            KeyFilesError::Key { source, .. } => {
                StoreError::corrupt(&kx.path, FormatError::Key { offset: 0, source })
            }
        })?;
        for raw in [&kf, &kx] {
            if let Some(w) = raw.mode.and_then(rules::key_file_mode_warning) {
                warnings.push(format!("{}: {w}", raw.path.display()));
            }
        }
        for k in keys.of_type(crate::keys::KeyType::Rxkad) {
            if let Some(b) = k.des_bytes() {
                if k.kvno() != crate::keys::BCRYPT_KVNO
                    && (crate::crypto::is_weak(&b) || !crate::crypto::has_odd_parity(&b))
                {
                    warnings.push(format!(
                        "{}: rxkad kvno {} is a weak or bad-parity DES key",
                        kf.path.display(),
                        k.kvno()
                    ));
                }
            }
        }
        let keyfile_mtime = kf.mtime;
        Ok((
            Snapshot {
                keys,
                keyfile_mtime,
                warnings,
            },
            kf,
            kx,
        ))
    }

    /// Everything an edit will touch, checked before anything is written anywhere: the conf
    /// dir (for writing), both key files, the lock file and CellServDB.
    pub fn check_writable(&self) -> Result<(), StoreError> {
        self.check_dir(true)?;
        for p in [
            self.keyfile_path(),
            self.keyfileext_path(),
            self.path.join(LOCKFILE),
        ] {
            trust::check_existing(&p)?;
        }
        atomic::check_cellservdb(&self.path)
    }

    /// The conf dir must be a real directory; for writing, not writable by group or others.
    fn check_dir(&self, for_write: bool) -> Result<(), StoreError> {
        let md = fs::metadata(&self.path)
            .map_err(|e| StoreError::io(&self.path, "cannot open conf dir", e))?;
        // SAFETY: geteuid has no preconditions and cannot fail.
        let me = unsafe { libc::geteuid() };
        rules::check_conf_dir(md.mode(), md.uid(), for_write, Some(me)).map_err(|p| {
            let (path, problem) = (self.path.clone(), p.to_string());
            match p {
                DirProblem::NotDir => StoreError::Invalid { path, problem },
                DirProblem::Writable(_) | DirProblem::Owner(_) => {
                    StoreError::Unsafe { path, problem }
                }
            }
        })
    }

    /// Phase one of a two-phase replace: check that the bytes are valid key files and write
    /// them as fsynced temp files beside the live ones. Nothing a server reads changes until
    /// `Staged::commit`; dropping the `Staged` removes the temp files.
    pub fn stage(&self, keyfile: &[u8], keyfileext: &[u8]) -> Result<Staged, StoreError> {
        self.check_writable()?;
        rules::check_install(keyfile, keyfileext).map_err(|e| StoreError::Invalid {
            path: self.path.clone(),
            problem: e.to_string(),
        })?;
        let found = [
            read_file(&self.keyfileext_path(), trust::KEYFILEEXT)?.bytes,
            read_file(&self.keyfile_path(), trust::KEYFILE)?.bytes,
        ];
        Ok(Staged {
            dir: self.clone(),
            found,
            keyfileext: (
                atomic::stage_file(&self.keyfileext_path(), keyfileext)?,
                keyfileext.to_vec().into(),
            ),
            keyfile: (
                atomic::stage_file(&self.keyfile_path(), keyfile)?,
                keyfile.to_vec().into(),
            ),
        })
    }

    /// Lock, read, apply `change`, write what changed atomically, bump CellServDB.
    /// `change` returns an error to abandon the edit with nothing written.
    pub fn edit<T>(
        &self,
        change: impl FnOnce(&mut KeySet) -> Result<T, StoreError>,
    ) -> Result<(T, EditReport), StoreError> {
        self.check_writable()?;
        let _lock = atomic::lock_dir(&self.path)?;
        atomic::remove_stale_temps(&self.path, &[KEYFILE, KEYFILEEXT]);
        let (snap, kf, kx) = self.read_raw()?;
        let mut keys = snap.keys.clone();
        let out = change(&mut keys)?;
        let mut report = EditReport {
            warnings: snap.warnings,
            ..Default::default()
        };
        let (new_kf, new_kx) = rules::split(&keys);
        let kf_changed = kf.bytes() != Some(&new_kf[..]);
        let kx_changed = kx.bytes() != Some(&new_kx[..]);
        if !kf_changed && !kx_changed {
            return Ok((out, report));
        }
        for (raw, bytes) in [(&kf, &new_kf[..]), (&kx, &new_kx[..])] {
            if raw.bytes() == Some(bytes) {
                continue;
            }
            if let Some(old) = &raw.bytes {
                report
                    .backups
                    .push(backup::keep(&self.path, &raw.path, old)?);
            }
            atomic::commit_key_file(atomic::stage_file(&raw.path, bytes)?, &raw.path)?;
            report.written.push(raw.path.clone());
        }
        atomic::fsync_dir(&self.path)?;
        atomic::crash_point("before-bump");
        atomic::bump_cellservdb(&self.path)?;
        Ok((out, report))
    }
}

/// Key files staged beside the live ones (see `ConfDir::stage`).
pub struct Staged {
    dir: ConfDir,
    /// [KeyFileExt, KeyFile] as the stage found them (`None`: absent): the commit refuses
    /// if they are no longer so.
    found: [Option<zeroize::Zeroizing<Vec<u8>>>; 2],
    keyfile: (tempfile::NamedTempFile, zeroize::Zeroizing<Vec<u8>>),
    keyfileext: (tempfile::NamedTempFile, zeroize::Zeroizing<Vec<u8>>),
}

impl Staged {
    /// Phase two: under the dir lock, back up the live files and rename the staged ones over
    /// them (KeyFileExt, then KeyFile), fsync the dir, then bump CellServDB so a running
    /// server reloads both at once. Files whose bytes are unchanged are left alone.
    pub fn commit(self) -> Result<EditReport, StoreError> {
        let d = &self.dir;
        let _lock = atomic::lock_dir(&d.path)?;
        let live = self.live()?;
        if let Some(path) = self.changed(&live) {
            return Err(StoreError::Refused(format!(
                "{} changed while this command was replacing it (a hand edit, or another \
                 control machine?): not replaced",
                path.display()
            )));
        }
        let mut report = EditReport::default();
        for (((tmp, bytes), path), raw) in [
            (self.keyfileext, d.keyfileext_path()),
            (self.keyfile, d.keyfile_path()),
        ]
        .into_iter()
        .zip(live)
        {
            if raw.bytes() == Some(&bytes[..]) {
                continue;
            }
            if let Some(old) = &raw.bytes {
                report.backups.push(backup::keep(&d.path, &path, old)?);
            }
            atomic::commit_key_file(tmp, &path)?;
            report.written.push(path);
        }
        if !report.written.is_empty() {
            atomic::fsync_dir(&d.path)?;
            atomic::bump_cellservdb(&d.path)?;
        }
        Ok(report)
    }

    /// Remove the staged files; the conf dir is as it was.
    pub fn discard(self) {}

    /// [KeyFileExt, KeyFile] as the stage found them (`None`: absent).
    pub fn found(&self) -> [Option<&[u8]>; 2] {
        self.found.each_ref().map(|b| b.as_ref().map(|b| &b[..]))
    }

    /// The live files read again: [KeyFileExt, KeyFile].
    fn live(&self) -> Result<[Raw; 2], StoreError> {
        let d = &self.dir;
        Ok([
            read_file(&d.keyfileext_path(), trust::KEYFILEEXT)?,
            read_file(&d.keyfile_path(), trust::KEYFILE)?,
        ])
    }

    /// The first live file no longer as the stage found it.
    fn changed<'r>(&self, live: &'r [Raw; 2]) -> Option<&'r Path> {
        live.iter()
            .zip(self.found())
            .find(|(raw, found)| raw.bytes() != *found)
            .map(|(raw, _)| raw.path.as_path())
    }

    /// Are the live files still as the stage found them? `Some(path)` of one that is not.
    pub fn recheck(&self) -> Result<Option<PathBuf>, StoreError> {
        let live = self.live()?;
        Ok(self.changed(&live).map(Path::to_path_buf))
    }
}

/// Read a key file through the one checked open (never through a symlink, never blocking on
/// a FIFO, capped at what the format allows); absent is `None`.
fn read_file(path: &Path, kind: trust::Kind) -> Result<Raw, StoreError> {
    let (bytes, md) = match trust::read_meta(path, kind)? {
        Some((b, md)) => (Some(b), Some(md)),
        None => (None, None),
    };
    Ok(Raw {
        path: path.to_path_buf(),
        bytes,
        mode: md.as_ref().map(|m| m.mode()),
        mtime: md.and_then(|m| m.modified().ok()),
    })
}

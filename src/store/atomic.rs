//! The primitives of a crash-safe edit: the dir lock, temp-file + fsync + rename, dir fsync,
//! and the CellServDB touch that makes running servers reload their keys.

use super::rules::{cellservdb_mtime, FileKind, CELLSERVDB};
use super::trust::TrustError;
use super::{StoreError, LOCKFILE};
use fs2::FileExt;
use std::fs::{self, File, FileTimes, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Holds the exclusive lock on the conf dir until dropped.
pub struct DirLock {
    file: File,
}

impl Drop for DirLock {
    fn drop(&mut self) {
        let _ = FileExt::unlock(&self.file);
    }
}

/// Open (creating it 0600) a lock file through the one checked open (never through a
/// symlink, never a FIFO, owned by root or us); lock it with fs2.
pub fn open_lock_file(path: &Path) -> Result<File, TrustError> {
    super::trust::open_rw(path, false)
}

/// The lock file that guards `path`: `<path>.lock`.
pub fn lock_path_for(path: &Path) -> std::path::PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".lock");
    p.into()
}

/// Take the exclusive lock on `<dir>/.afskeys.lock`, waiting for another editor to finish.
pub fn lock_dir(dir: &Path) -> Result<DirLock, StoreError> {
    let p = dir.join(LOCKFILE);
    let file = open_lock_file(&p)?;
    file.lock_exclusive()
        .map_err(|e| StoreError::io(&p, "cannot lock", e))?;
    Ok(DirLock { file })
}

/// `replace_file`, after removing the stale temp files a killed writer of `path` left
/// beside it (the journal, the auth DB, the servers cache). The crash point
/// `write:<file name>` lies between the fsynced temp file and the rename.
pub fn replace_file_cleaning(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    if let Some(dir) = path.parent() {
        remove_stale_temps(dir, &[name]);
    }
    let tmp = stage_file(path, bytes)?;
    crash_point(&format!("write:{name}"));
    commit_file(tmp, path)
}

/// The test hook (`test-hooks` builds only): `AFSKEYS_CRASH_AT=<point>` SIGKILLs the process
/// at that point inside a write (`before-bump`: key files renamed, CellServDB not yet
/// bumped; `write:<file>`: a state file's temp file written, not yet renamed).
#[cfg(feature = "test-hooks")]
pub fn crash_point(point: &str) {
    if std::env::var("AFSKEYS_CRASH_AT").is_ok_and(|at| at == point) {
        // SAFETY: kill(getpid(), SIGKILL) has no preconditions; it does not return.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
}

/// Without `test-hooks`, nothing happens at a crash point.
#[cfg(not(feature = "test-hooks"))]
pub fn crash_point(_point: &str) {}

/// The test hook (`test-hooks` builds only): with `AFSKEYS_PAUSE_AT=<point>` and
/// `AFSKEYS_PAUSE_FILE=<path>`, the process creates `<path>.reached` at that point and waits
/// (at most a minute) until `<path>` exists, so tests can run another command in between
/// (`push:read`, `sync:read`: the control machine's files read and checked for a push, not yet
/// staged).
#[cfg(feature = "test-hooks")]
pub fn pause_point(point: &str) {
    let (Ok(at), Ok(file)) = (
        std::env::var("AFSKEYS_PAUSE_AT"),
        std::env::var("AFSKEYS_PAUSE_FILE"),
    ) else {
        return;
    };
    if at != point {
        return;
    }
    let _ = fs::write(format!("{file}.reached"), b"");
    let start = std::time::Instant::now();
    while !Path::new(&file).exists() && start.elapsed() < std::time::Duration::from_secs(60) {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Without `test-hooks`, nothing happens at a pause point.
#[cfg(not(feature = "test-hooks"))]
pub fn pause_point(_point: &str) {}

/// Create `path` holding `bytes` (0600), only if nothing is there (not even a symlink), and
/// fsync it and its directory: the way to write into a sticky directory others can write
/// (/tmp), where a rename could land on a name someone else chose.
pub fn create_exclusive(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| StoreError::io(path, "cannot create", e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| StoreError::io(path, "cannot write", e))?;
    fsync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// Replace `path` with `bytes`: temp file in the same dir (0600), fsync, rename over.
pub fn replace_file(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    commit_file(stage_file(path, bytes)?, path)
}

/// Write `bytes` to a temp file (0600) beside `path` and fsync it; nothing reads it yet.
/// Dropping the result removes it.
pub fn stage_file(path: &Path, bytes: &[u8]) -> Result<tempfile::NamedTempFile, StoreError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(|e| StoreError::io(dir, "cannot create a temp file", e))?;
    tmp.as_file()
        .set_permissions(fs::Permissions::from_mode(0o600))
        .map_err(|e| StoreError::io(tmp.path(), "cannot chmod temp file", e))?;
    tmp.write_all(bytes)
        .and_then(|_| tmp.as_file().sync_all())
        .map_err(|e| StoreError::io(tmp.path(), "cannot write temp file", e))?;
    Ok(tmp)
}

/// Rename a staged temp file over `path` (atomic on one filesystem).
pub fn commit_file(tmp: tempfile::NamedTempFile, path: &Path) -> Result<(), StoreError> {
    tmp.persist(path)
        .map_err(|e| StoreError::io(path, "cannot rename temp file over", e.error))?;
    Ok(())
}

/// `commit_file` for KeyFile and KeyFileExt: the new file's mtime lands in a later whole
/// second than the old one's (now, or the old second + 1 within the same second). upclient
/// fetches only when the mtime or size differs, compared in whole seconds, so a same-size
/// rewrite within one second would otherwise never reach the servers.
pub fn commit_key_file(tmp: tempfile::NamedTempFile, path: &Path) -> Result<(), StoreError> {
    if let Ok(old) = fs::symlink_metadata(path).and_then(|m| m.modified()) {
        let secs = |t: SystemTime| {
            t.duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
        };
        let now = SystemTime::now();
        if secs(now) <= secs(old) {
            let new = UNIX_EPOCH + Duration::from_secs(cellservdb_mtime(secs(old), secs(now)));
            tmp.as_file()
                .set_times(FileTimes::new().set_modified(new).set_accessed(now))
                .map_err(|e| StoreError::io(tmp.path(), "cannot set mtime", e))?;
        }
    }
    commit_file(tmp, path)
}

/// How old a temp file must be before an edit takes it for the leftover of a killed process
/// (a two-phase push keeps its staged files for seconds, never this long).
pub const STALE_TEMP: Duration = Duration::from_secs(600);

/// Remove `.<name>.*.tmp` files older than `STALE_TEMP` for each of `names`: what a process
/// killed between creating and renaming its temp file leaves behind. Best effort.
pub fn remove_stale_temps(dir: &Path, names: &[&str]) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let n = e.file_name();
        let n = n.to_string_lossy();
        let ours = names
            .iter()
            .any(|base| n.starts_with(&format!(".{base}.")) && n.ends_with(".tmp"));
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > STALE_TEMP);
        if ours && old && e.file_type().is_ok_and(|t| t.is_file()) {
            let _ = fs::remove_file(e.path());
        }
    }
}

/// fsync the directory so the renames in it are durable.
pub fn fsync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io(dir, "cannot fsync conf dir", e))
}

/// CellServDB, which the bump after a change must reach, is absent or a regular file: checked
/// before anything is written, so a key is never installed that servers are not told about.
pub fn check_cellservdb(dir: &Path) -> Result<(), StoreError> {
    let p = dir.join(CELLSERVDB);
    match fs::symlink_metadata(&p) {
        Ok(md) if FileKind::of_mode(md.mode()) == FileKind::Regular => Ok(()),
        Ok(md) => Err(StoreError::Invalid {
            problem: format!(
                "is not a regular file (mode {:06o}): afskeys could not tell running servers \
                 to reload their keys (their signal is its mtime); nothing was changed \
                 (replace it with the file itself)",
                md.mode()
            ),
            path: p,
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StoreError::io(&p, "cannot stat", e)),
    }
}

/// Move CellServDB's mtime forward to a different whole second (servers compare whole
/// seconds, at most once a second); absent CellServDB is left absent.
pub fn bump_cellservdb(dir: &Path) -> Result<(), StoreError> {
    let p = dir.join(CELLSERVDB);
    let f = match OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&p)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(StoreError::io(&p, "cannot open to update its mtime", e)),
    };
    let old = f
        .metadata()
        .and_then(|m| m.modified())
        .map_err(|e| StoreError::io(&p, "cannot stat", e))?;
    let secs = |t: SystemTime| {
        t.duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    };
    let now = SystemTime::now();
    let new_secs = cellservdb_mtime(secs(old), secs(now));
    let new = UNIX_EPOCH + Duration::from_secs(new_secs);
    f.set_times(FileTimes::new().set_modified(new).set_accessed(now))
        .map_err(|e| StoreError::io(&p, "cannot set mtime", e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn replace_is_0600_whatever_the_umask() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("KeyFile");
        fs::write(&p, b"old").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        replace_file(&p, b"new").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"new");
        assert_eq!(fs::metadata(&p).unwrap().mode() & 0o777, 0o600);
        // no temp file left behind
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 1);
    }

    #[test]
    fn only_stale_temps_of_our_files_are_removed() {
        let d = tempfile::tempdir().unwrap();
        let old = SystemTime::now() - STALE_TEMP - Duration::from_secs(5);
        for n in [
            ".KeyFile.abc.tmp",
            ".KeyFileExt.x.tmp",
            ".other.abc.tmp",
            ".KeyFile.new.tmp",
        ] {
            fs::write(d.path().join(n), b"x").unwrap();
        }
        for n in [".KeyFile.abc.tmp", ".KeyFileExt.x.tmp", ".other.abc.tmp"] {
            let f = File::options().write(true).open(d.path().join(n)).unwrap();
            f.set_modified(old).unwrap();
        }
        remove_stale_temps(d.path(), &["KeyFile", "KeyFileExt"]);
        let mut left: Vec<String> = fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, vec![".KeyFile.new.tmp", ".other.abc.tmp"]);
    }

    #[test]
    fn a_key_file_rewritten_in_the_same_second_moves_to_a_new_second() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("KeyFile");
        let mut last = None;
        // Same size every time, as fast as possible: each write lands in a new second.
        for i in 0..5u8 {
            commit_key_file(stage_file(&p, &[i; 16]).unwrap(), &p).unwrap();
            let m = fs::metadata(&p).unwrap().mtime();
            if let Some(l) = last {
                assert!(m > l, "mtime {m} did not move past {l}");
            }
            last = Some(m);
        }
    }

    #[test]
    fn cellservdb_moves_to_a_new_second() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("CellServDB");
        fs::write(&p, b">x\n").unwrap();
        let before = fs::metadata(&p).unwrap().mtime();
        bump_cellservdb(d.path()).unwrap();
        let mid = fs::metadata(&p).unwrap().mtime();
        bump_cellservdb(d.path()).unwrap();
        let after = fs::metadata(&p).unwrap().mtime();
        assert!(mid > before && after > mid, "{before} {mid} {after}");
        // absent CellServDB is fine and stays absent
        fs::remove_file(&p).unwrap();
        bump_cellservdb(d.path()).unwrap();
        assert!(!p.exists());
    }
}

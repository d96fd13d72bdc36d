//! The conf-dir rules every transport shares, with no I/O: the file names, what a backup is
//! called and which backups to trim, the verdict on a stat of the conf dir, a key file or the
//! backup dir, the CellServDB mtime bump, and KeyFile + KeyFileExt read as one key set (and
//! checked before an install). The local store (`store/`) and the SSH server
//! (`fleet/ssh/`) each stat, read and write in their own way and ask these functions what
//! it means.

use crate::format::{read_keyfile, read_keyfileext, write_keyfile, write_keyfileext, FormatError};
use crate::keys::{KeySet, KeySetError};
use std::time::Duration;

pub const KEYFILE: &str = "KeyFile";
pub const KEYFILEEXT: &str = "KeyFileExt";
/// The lock file an editor holds while it reads, changes and writes the key files.
pub const LOCKFILE: &str = ".afskeys.lock";
/// Touched (mtime to a new second) after a change, so running servers reload their keys.
pub const CELLSERVDB: &str = "CellServDB";
/// Where the previous versions of the key files are kept, inside the conf dir.
/// The most names a server's directory listing is read for (its conf dir, the backup dir):
/// a listing past it is refused, so a server that keeps sending names costs a bounded amount.
pub const MAX_NAMES: usize = 10_000;

pub const BACKUP_DIR: &str = ".afskeys-backup";
/// Backups kept per key file; the oldest beyond this are removed.
pub const MAX_BACKUPS: usize = 10;
/// The prefix of the private dir a push over SSH stages its files in, inside the conf dir.
pub const STAGE_PREFIX: &str = ".afskeys-stage.";
/// Stage dirs older than this were left by a connection cut before commit or discard.
pub const STALE_STAGE: Duration = Duration::from_secs(24 * 3600);

const S_IFMT: u32 = 0o170000;
const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;

/// What kind of file a `st_mode` (type bits included) names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Regular,
    Dir,
    Symlink,
    Other,
}

impl FileKind {
    pub fn of_mode(mode: u32) -> FileKind {
        match mode & S_IFMT {
            S_IFREG => FileKind::Regular,
            S_IFDIR => FileKind::Dir,
            S_IFLNK => FileKind::Symlink,
            _ => FileKind::Other,
        }
    }
}

/// The refusal for a key file on a server whose open could block there (a FIFO, a device,
/// a socket: `FileKind::Other`), which afskeys never opens.
pub fn may_block(path: &std::path::Path) -> String {
    format!(
        "{} is not a regular file (a FIFO, a device or a socket): refusing to open it; \
         replace it with the key file itself",
        path.display()
    )
}

/// Why a conf dir may not be used (the messages follow its path).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DirProblem {
    #[error("is not a directory")]
    NotDir,
    #[error(
        "conf dir has mode {:04o}: other users could replace the key files; refusing to \
         write (chmod go-w it)",
        .0 & 0o7777
    )]
    Writable(u32),
    #[error(
        "conf dir is owned by uid {0}, not root: that user could replace the key files; \
         refusing to write (chown root it)"
    )]
    Owner(u32),
}

/// The verdict on a stat of the conf dir: it must be a directory; for writing, not writable
/// by group or others, and (when `me`, the writer's euid, is known) owned by root or `me`.
pub fn check_conf_dir(
    mode: u32,
    owner: u32,
    for_write: bool,
    me: Option<u32>,
) -> Result<(), DirProblem> {
    if FileKind::of_mode(mode) != FileKind::Dir {
        return Err(DirProblem::NotDir);
    }
    if !for_write {
        return Ok(());
    }
    if mode & 0o022 != 0 {
        return Err(DirProblem::Writable(mode));
    }
    match me {
        Some(me) if owner != 0 && owner != me => Err(DirProblem::Owner(owner)),
        _ => Ok(()),
    }
}

/// Why a live key file may not be read or replaced in place. The same rules as the local
/// store's checked open (`store::trust`): a regular file, not writable by group or others
/// (0644 is read, with a warning; 0620 and 0666 are refused), owned by root or the user
/// afskeys runs as there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyFileProblem {
    #[error(
        "is a symbolic link; afskeys reads and writes key files only in place (replace the \
         link with the file itself)"
    )]
    Symlink,
    #[error("is not a regular file")]
    NotRegular,
    #[error(
        "has mode {:04o}: other users could change it; refusing it (chmod go-w it, after \
         checking its content)",
        .0 & 0o7777
    )]
    Writable(u32),
    #[error(
        "is owned by uid {owner}, not root or the login user (uid {me}): that user could \
         choose the keys; refusing it (chown root it, after checking its content)"
    )]
    Owner { owner: u32, me: u32 },
}

/// The verdict on an lstat of a key file (never followed through a symlink): its kind and
/// its mode.
pub fn check_key_file(mode: u32) -> Result<(), KeyFileProblem> {
    match FileKind::of_mode(mode) {
        FileKind::Regular if mode & 0o022 != 0 => Err(KeyFileProblem::Writable(mode)),
        FileKind::Regular => Ok(()),
        FileKind::Symlink => Err(KeyFileProblem::Symlink),
        _ => Err(KeyFileProblem::NotRegular),
    }
}

/// The verdict on a key file's owner: root or `me`, the user afskeys writes as.
pub fn check_key_file_owner(owner: u32, me: u32) -> Result<(), KeyFileProblem> {
    match owner {
        0 => Ok(()),
        o if o == me => Ok(()),
        owner => Err(KeyFileProblem::Owner { owner, me }),
    }
}

/// A key file readable by group or others: the warning a read gives (after its path).
pub fn key_file_mode_warning(mode: u32) -> Option<String> {
    (mode & 0o077 != 0).then(|| {
        format!(
            "mode {:04o} lets other users read the keys (afskeys writes 0600)",
            mode & 0o7777
        )
    })
}

/// Why the backup dir cannot take backups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BackupDirProblem {
    #[error("is not a directory (refusing to put key backups there)")]
    NotDir,
}

/// The verdict on an lstat of an existing backup dir: `Ok(true)` when it must be made
/// private (chmod 0700) before backups go in.
pub fn check_backup_dir(mode: u32) -> Result<bool, BackupDirProblem> {
    match FileKind::of_mode(mode) {
        FileKind::Dir => Ok(mode & 0o077 != 0),
        _ => Err(BackupDirProblem::NotDir),
    }
}

/// The name of the backup of `file` made at `now`: `<file>.<UTC stamp>`, which sorts as text
/// in time order.
pub fn backup_name(file: &str, now: chrono::DateTime<chrono::Utc>) -> String {
    format!("{file}.{}", now.format("%Y%m%dT%H%M%S%.9fZ"))
}

/// The time to name a new backup of `file` by: `now`, or just after the newest backup among
/// `names` when the clock is behind it, so the backup just made always sorts last and is
/// never the one trimmed.
pub fn backup_time<'a>(
    names: impl IntoIterator<Item = &'a str>,
    file: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> chrono::DateTime<chrono::Utc> {
    let prefix = format!("{file}.");
    names
        .into_iter()
        .filter_map(|n| n.strip_prefix(&prefix))
        .filter_map(|rest| chrono::NaiveDateTime::parse_from_str(rest, "%Y%m%dT%H%M%S%.9fZ").ok())
        .map(|t| t.and_utc() + chrono::Duration::nanoseconds(1))
        .fold(now, |a, b| a.max(b))
}

/// Of the names in the backup dir, the backups of `file` to remove: the oldest beyond
/// `MAX_BACKUPS`. Other names are never picked.
pub fn backups_to_trim<'a>(names: impl IntoIterator<Item = &'a str>, file: &str) -> Vec<&'a str> {
    let prefix = format!("{file}.");
    let mut found: Vec<&str> = names
        .into_iter()
        .filter(|n| {
            n.strip_prefix(&prefix)
                .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
        })
        .collect();
    found.sort_unstable();
    let extra = found.len().saturating_sub(MAX_BACKUPS);
    found.truncate(extra);
    found
}

/// Is `name` (in the conf dir, with mtime `mtime`) a stage dir abandoned long before `now`?
/// Only a real directory (by its lstat `mode`): a symlink named like a stage dir is never
/// followed into, so tidying cannot remove another directory's key files.
pub fn is_stale_stage(name: &str, mode: Option<u32>, mtime: Option<u64>, now: u64) -> bool {
    name.starts_with(STAGE_PREFIX)
        && mode.is_some_and(|m| FileKind::of_mode(m) == FileKind::Dir)
        && mtime.is_some_and(|m| m + STALE_STAGE.as_secs() < now)
}

/// CellServDB's new mtime (seconds): a whole second later than `old` (servers compare whole
/// seconds), and at least `now`.
pub fn cellservdb_mtime(old: u64, now: u64) -> u64 {
    now.max(old + 1)
}

/// Which key file a problem is in.
#[derive(Debug, thiserror::Error)]
pub enum KeyFilesError {
    #[error("{}: {source}", .file)]
    Format {
        file: &'static str,
        #[source]
        source: FormatError,
    },
    /// A KeyFileExt key that collides with one already read (cannot happen with typed keys).
    #[error("{}: {source}", .file)]
    Key {
        file: &'static str,
        #[source]
        source: KeySetError,
    },
}

impl KeyFilesError {
    /// The message with the file named by its path in `dir` (a server's conf dir):
    /// "<dir>/KeyFileExt: <what is wrong>".
    pub fn at(&self, dir: &std::path::Path) -> String {
        let (file, e): (_, &dyn std::fmt::Display) = match self {
            KeyFilesError::Format { file, source } => (file, source),
            KeyFilesError::Key { file, source } => (file, source),
        };
        format!("{}: {e}", dir.join(file).display())
    }
}

/// KeyFile and KeyFileExt (absent: `None`) read as the one key set a server holds.
pub fn merge(keyfile: Option<&[u8]>, keyfileext: Option<&[u8]>) -> Result<KeySet, KeyFilesError> {
    let mut keys = match keyfile {
        Some(b) => read_keyfile(b).map_err(|source| KeyFilesError::Format {
            file: KEYFILE,
            source,
        })?,
        None => KeySet::new(),
    };
    if let Some(b) = keyfileext {
        let ext = read_keyfileext(b).map_err(|source| KeyFilesError::Format {
            file: KEYFILEEXT,
            source,
        })?;
        for k in ext.iter() {
            keys.insert(k.clone())
                .map_err(|source| KeyFilesError::Key {
                    file: KEYFILEEXT,
                    source,
                })?;
        }
    }
    Ok(keys)
}

/// A key set as the two files that hold it: (KeyFile, KeyFileExt). KeyFileExt is written
/// whenever KeyFile is, as OpenAFS does, so both always exist.
pub fn split(set: &KeySet) -> (Vec<u8>, zeroize::Zeroizing<Vec<u8>>) {
    (write_keyfile(set), write_keyfileext(set))
}

/// A file to install that is not a key file of its kind.
#[derive(Debug, thiserror::Error)]
#[error("the {file} to install is not valid: {source}")]
pub struct InstallError {
    pub file: &'static str,
    #[source]
    pub source: FormatError,
}

/// Check, before anything is written, that the bytes to install are a KeyFile and a
/// KeyFileExt.
pub fn check_install(keyfile: &[u8], keyfileext: &[u8]) -> Result<(), InstallError> {
    read_keyfile(keyfile).map_err(|source| InstallError {
        file: KEYFILE,
        source,
    })?;
    read_keyfileext(keyfileext).map_err(|source| InstallError {
        file: KEYFILEEXT,
        source,
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conf_dir_verdicts() {
        let dir = 0o040755;
        assert_eq!(check_conf_dir(dir, 0, true, Some(0)), Ok(()));
        assert_eq!(
            check_conf_dir(0o100644, 0, false, None),
            Err(DirProblem::NotDir)
        );
        assert_eq!(check_conf_dir(0o040777, 0, false, None), Ok(()));
        let e = check_conf_dir(0o040777, 0, true, None).unwrap_err();
        assert!(
            e.to_string().starts_with("conf dir has mode 0777: other"),
            "{e}"
        );
        assert_eq!(
            check_conf_dir(dir, 1000, true, Some(0)),
            Err(DirProblem::Owner(1000))
        );
        assert_eq!(check_conf_dir(dir, 1000, true, Some(1000)), Ok(()));
        assert_eq!(check_conf_dir(dir, 1000, true, None), Ok(()));
    }

    #[test]
    fn key_file_and_backup_dir_verdicts() {
        assert_eq!(check_key_file(0o100600), Ok(()));
        assert_eq!(check_key_file(0o120777), Err(KeyFileProblem::Symlink));
        assert_eq!(check_key_file(0o040700), Err(KeyFileProblem::NotRegular));
        // as the local store's checked open: 0644 is read, group/other-writable refused
        assert_eq!(check_key_file(0o100644), Ok(()));
        for m in [0o100666, 0o100620, 0o100602] {
            assert_eq!(check_key_file(m), Err(KeyFileProblem::Writable(m)));
        }
        assert_eq!(check_key_file_owner(0, 1000), Ok(()));
        assert_eq!(check_key_file_owner(1000, 1000), Ok(()));
        assert_eq!(
            check_key_file_owner(65534, 1000),
            Err(KeyFileProblem::Owner {
                owner: 65534,
                me: 1000
            })
        );
        assert_eq!(check_backup_dir(0o040700), Ok(false));
        assert_eq!(check_backup_dir(0o040755), Ok(true));
        assert_eq!(check_backup_dir(0o100600), Err(BackupDirProblem::NotDir));
        assert!(key_file_mode_warning(0o100600).is_none());
        assert!(key_file_mode_warning(0o100644)
            .unwrap()
            .starts_with("mode 0644"));
    }

    #[test]
    fn backups_are_named_in_time_order_and_trimmed_oldest_first() {
        use chrono::TimeZone;
        let t = chrono::Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap();
        assert_eq!(
            backup_name(KEYFILE, t),
            "KeyFile.20260102T030405.000000000Z"
        );
        let mut names: Vec<String> = (0..MAX_BACKUPS + 2)
            .map(|i| backup_name(KEYFILE, t + chrono::Duration::seconds(i as i64)))
            .collect();
        names.push("KeyFileExt.20200101T000000.000000000Z".into());
        names.push("KeyFile.notes".into());
        names.reverse();
        let trim = backups_to_trim(names.iter().map(String::as_str), KEYFILE);
        assert_eq!(
            trim,
            vec![
                "KeyFile.20260102T030405.000000000Z",
                "KeyFile.20260102T030406.000000000Z"
            ]
        );
        assert!(backups_to_trim(names.iter().map(String::as_str), KEYFILEEXT).is_empty());
        // a clock behind the newest backup: the new one still sorts last
        let behind = t - chrono::Duration::days(365);
        let next = backup_time(names.iter().map(String::as_str), KEYFILE, behind);
        assert_eq!(
            backup_name(KEYFILE, next),
            "KeyFile.20260102T030416.000000001Z"
        );
        assert_eq!(backup_time(["x"], KEYFILE, behind), behind);
    }

    #[test]
    fn cellservdb_and_stale_stages() {
        assert_eq!(cellservdb_mtime(100, 50), 101);
        assert_eq!(cellservdb_mtime(100, 500), 500);
        let day = STALE_STAGE.as_secs();
        let dir = Some(S_IFDIR | 0o700);
        assert!(is_stale_stage(".afskeys-stage.00", dir, Some(1), day + 2));
        assert!(!is_stale_stage(".afskeys-stage.00", dir, Some(1), day));
        assert!(!is_stale_stage(".afskeys-stage.00", dir, None, day * 9));
        assert!(!is_stale_stage("other", dir, Some(1), day * 9));
        let link = Some(S_IFLNK | 0o777);
        assert!(!is_stale_stage(".afskeys-stage.00", link, Some(1), day + 2));
        assert!(!is_stale_stage(".afskeys-stage.00", None, Some(1), day + 2));
    }

    #[test]
    fn key_files_merge_into_one_set() {
        use crate::keys::Key;
        let mut set = KeySet::new();
        set.insert(Key::rxkad(
            3,
            &[0x01, 0x02, 0x04, 0x07, 0x08, 0x0b, 0x0d, 0x0e],
        ))
        .unwrap();
        let (kf, kx) = split(&set);
        assert_eq!((&kf, &kx), (&write_keyfile(&set), &write_keyfileext(&set)));
        assert_eq!(merge(Some(&kf), Some(&kx)).unwrap(), set);
        assert_eq!(merge(None, None).unwrap(), KeySet::new());
        let e = merge(Some(&kf[..3]), None).unwrap_err();
        assert!(e.to_string().starts_with("KeyFile: "), "{e}");
        check_install(&kf, &kx).unwrap();
        let e = check_install(&kf, &kf[..2]).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("the KeyFileExt to install is not valid: "),
            "{e}"
        );
    }
}

//! The one checked open every file afskeys trusts goes through: the KeyFile and KeyFileExt,
//! the journal, the file auth DB, the servers cache, the config, the audit log and the lock
//! files. A file is trusted when it is a regular file (opened `O_NOFOLLOW | O_NONBLOCK`, then
//! `fstat`, so neither a symlink is followed nor a FIFO blocks), owned by root or the
//! invoking user, not writable by group or others, in a directory others cannot write to
//! (unless it is sticky), and no larger than its format allows. Every refusal names the file,
//! says what is wrong and how to fix it.

use std::fs::{File, Metadata, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// What a file is, for messages, and the most bytes its format allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kind {
    pub what: &'static str,
    pub max: u64,
}

/// A KeyFile: a count and at most 8 records of 12 bytes (100 bytes). The cap leaves room
/// so a file a little too long gets the format's precise message (a count of 9, trailing
/// data) instead of this one.
pub const KEYFILE: Kind = Kind {
    what: "KeyFile",
    max: 4096,
};
/// A KeyFileExt: far more room than any cell's typed keys need (a record is under 64 bytes).
pub const KEYFILEEXT: Kind = Kind {
    what: "KeyFileExt",
    max: 64 * 1024,
};
/// The cap of a key file read from a server, by its name (KeyFile, else KeyFileExt).
pub fn key_file_kind(path: &Path) -> Kind {
    match path.file_name().is_some_and(|n| n == "KeyFile") {
        true => KEYFILE,
        false => KEYFILEEXT,
    }
}

/// A server's key file longer than its format allows, found after reading at most a little
/// past the cap (its whole size is not known: the read stopped).
pub fn too_long(path: &Path, kind: Kind) -> String {
    format!(
        "{}: is more than {} bytes, more than a {} can be; refusing to read it",
        path.display(),
        kind.max,
        kind.what
    )
}

/// The rotation journal and grace records.
pub const JOURNAL: Kind = Kind {
    what: "journal",
    max: 1 << 20,
};
/// The file auth DB (one afs entry).
pub const AUTHDB: Kind = Kind {
    what: "auth DB",
    max: 1 << 20,
};
/// The servers cache (checksums of what each server held).
pub const SERVERS_CACHE: Kind = Kind {
    what: "servers cache",
    max: 16 << 20,
};
/// The configuration file.
pub const CONFIG: Kind = Kind {
    what: "config file",
    max: 1 << 20,
};
/// The control machine's CellServDB: the cell's database servers (the inventory).
pub const CELLSERVDB: Kind = Kind {
    what: "CellServDB",
    max: 1 << 20,
};
/// A lock file or the audit log: opened, never read whole.
pub const OPENED: Kind = Kind {
    what: "file",
    max: u64::MAX,
};

/// Why a file may not be trusted.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error(
        "{}: is a symbolic link; afskeys never follows links to the files it trusts \
         (replace the link with the file itself)",
        path.display()
    )]
    Symlink { path: PathBuf },
    #[error(
        "{}: is not a regular file (it is a {kind}); afskeys cannot open it safely (put \
         the file itself there)",
        path.display()
    )]
    NotRegular { path: PathBuf, kind: &'static str },
    #[error(
        "{}: is owned by uid {owner}, not root or you (uid {me}): that user could choose \
         what afskeys reads; refusing it (chown root it, after checking its content)",
        path.display()
    )]
    Owner { path: PathBuf, owner: u32, me: u32 },
    #[error(
        "{}: has mode {:04o}: other users could change it; refusing it (chmod go-w it, \
         after checking its content)",
        path.display(), mode & 0o7777
    )]
    Writable { path: PathBuf, mode: u32 },
    #[error(
        "{}: has mode {:04o}: other users can read the secret in it; refusing it (chmod \
         go= it, and change that secret: it may have been read)",
        path.display(), mode & 0o7777
    )]
    Readable { path: PathBuf, mode: u32 },
    #[error(
        "{}: its directory {} has mode {:04o}: other users could replace the file; \
         refusing it (chmod o-w the directory)",
        path.display(), dir.display(), mode & 0o7777
    )]
    DirWritable {
        path: PathBuf,
        dir: PathBuf,
        mode: u32,
    },
    #[error(
        "{}: is {size} bytes, more than a {what} can be ({max} bytes at most); refusing \
         to read it",
        path.display()
    )]
    TooBig {
        path: PathBuf,
        what: &'static str,
        size: u64,
        max: u64,
    },
    #[error("{}: {op}: {source}", path.display())]
    Io {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
}

impl TrustError {
    /// The file the problem is in.
    pub fn path(&self) -> &Path {
        match self {
            TrustError::Symlink { path }
            | TrustError::NotRegular { path, .. }
            | TrustError::Owner { path, .. }
            | TrustError::Writable { path, .. }
            | TrustError::Readable { path, .. }
            | TrustError::DirWritable { path, .. }
            | TrustError::TooBig { path, .. }
            | TrustError::Io { path, .. } => path,
        }
    }

    fn io(path: &Path, op: &'static str, source: std::io::Error) -> TrustError {
        TrustError::Io {
            path: path.to_path_buf(),
            op,
            source,
        }
    }
}

/// The effective uid: files it owns (or root owns) are trusted.
pub fn me() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

fn kind_name(md: &Metadata) -> &'static str {
    let t = md.file_type();
    use std::os::unix::fs::FileTypeExt;
    if t.is_dir() {
        "directory"
    } else if t.is_fifo() {
        "FIFO"
    } else if t.is_socket() {
        "socket"
    } else if t.is_char_device() || t.is_block_device() {
        "device"
    } else if t.is_symlink() {
        "symbolic link"
    } else {
        "special file"
    }
}

/// The verdict on the metadata of an open file (or an lstat): regular, owned by root or
/// `me`, not writable by group or others.
pub fn check_meta(path: &Path, md: &Metadata, me: u32) -> Result<(), TrustError> {
    if md.file_type().is_symlink() {
        return Err(TrustError::Symlink {
            path: path.to_path_buf(),
        });
    }
    if !md.file_type().is_file() {
        return Err(TrustError::NotRegular {
            path: path.to_path_buf(),
            kind: kind_name(md),
        });
    }
    if md.uid() != 0 && md.uid() != me {
        return Err(TrustError::Owner {
            path: path.to_path_buf(),
            owner: md.uid(),
            me,
        });
    }
    if md.mode() & 0o022 != 0 {
        return Err(TrustError::Writable {
            path: path.to_path_buf(),
            mode: md.mode(),
        });
    }
    Ok(())
}

/// The file's directory must not be writable by others, unless sticky (like /tmp: others
/// cannot replace a file they do not own there).
pub fn check_parent(path: &Path) -> Result<(), TrustError> {
    let dir = dir_of(path);
    let md = std::fs::metadata(dir).map_err(|e| TrustError::io(dir, "cannot stat", e))?;
    let mode = md.mode();
    if mode & 0o002 != 0 && mode & 0o1000 == 0 {
        return Err(TrustError::DirWritable {
            path: path.to_path_buf(),
            dir: dir.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

/// The directory `path` is in ("." for a bare name).
fn dir_of(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// `path`'s directory is one others can write, but sticky (like /tmp): `check_parent` lets
/// it pass, and a file is created there exclusively rather than renamed into place.
pub fn in_shared_sticky_dir(path: &Path) -> bool {
    std::fs::metadata(dir_of(path)).is_ok_and(|m| m.mode() & 0o002 != 0 && m.mode() & 0o1000 != 0)
}

/// Map an open's failure: a symlink met by `O_NOFOLLOW` (ELOOP) is named as one, and so is
/// whatever else an lstat shows is wrong with the file (a FIFO with no reader gives ENXIO).
fn open_error(path: &Path, op: &'static str, e: std::io::Error) -> TrustError {
    if e.raw_os_error() == Some(libc::ELOOP) {
        return TrustError::Symlink {
            path: path.to_path_buf(),
        };
    }
    match std::fs::symlink_metadata(path) {
        Ok(md) => check_meta(path, &md, me())
            .err()
            .unwrap_or_else(|| TrustError::io(path, op, e)),
        Err(_) => TrustError::io(path, op, e),
    }
}

/// Open `path` for reading after the checks; absent is `None`.
pub fn open(path: &Path) -> Result<Option<(File, Metadata)>, TrustError> {
    let f = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(open_error(path, "cannot open", e)),
    };
    let md = f
        .metadata()
        .map_err(|e| TrustError::io(path, "cannot stat", e))?;
    check_meta(path, &md, me())?;
    check_parent(path)?;
    Ok(Some((f, md)))
}

/// Read the whole of `path` (at most `kind.max` bytes) after the checks; absent is `None`.
pub fn read(path: &Path, kind: Kind) -> Result<Option<Zeroizing<Vec<u8>>>, TrustError> {
    Ok(read_meta(path, kind)?.map(|(b, _)| b))
}

/// A file's bytes and its metadata, as read.
pub type FileRead = (Zeroizing<Vec<u8>>, Metadata);

/// `read`, with the metadata of the file read.
pub fn read_meta(path: &Path, kind: Kind) -> Result<Option<FileRead>, TrustError> {
    let Some((f, md)) = open(path)? else {
        return Ok(None);
    };
    let too_big = |size| TrustError::TooBig {
        path: path.to_path_buf(),
        what: kind.what,
        size,
        max: kind.max,
    };
    if md.len() > kind.max {
        return Err(too_big(md.len()));
    }
    let mut bytes = Zeroizing::new(Vec::with_capacity(md.len() as usize));
    f.take(kind.max.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| TrustError::io(path, "cannot read", e))?;
    if bytes.len() as u64 > kind.max {
        return Err(too_big(bytes.len() as u64));
    }
    Ok(Some((bytes, md)))
}

/// A secret another program will read by its path (the admin keytab kadmin and kinit use):
/// it must exist, and pass `open`'s checks — a regular file reached without a symlink (a
/// FIFO is refused, never waited on), owned by root or us, in a directory others cannot
/// replace it in — and no one else may read it.
pub fn check_secret(path: &Path) -> Result<(), TrustError> {
    let Some((_f, md)) = open(path)? else {
        return Err(TrustError::io(
            path,
            "cannot open",
            std::io::Error::from(std::io::ErrorKind::NotFound),
        ));
    };
    if md.mode() & 0o077 != 0 {
        return Err(TrustError::Readable {
            path: path.to_path_buf(),
            mode: md.mode(),
        });
    }
    Ok(())
}

/// Check, without opening it, a file that is about to be read or replaced: absent is fine;
/// present must pass the same checks as `open`. Used before anything is written.
pub fn check_existing(path: &Path) -> Result<(), TrustError> {
    match std::fs::symlink_metadata(path) {
        Ok(md) => {
            check_meta(path, &md, me())?;
            check_parent(path)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(TrustError::io(path, "cannot stat", e)),
    }
}

/// A file about to be written (replaced, or created when absent): what is there passes
/// `open`'s checks, and so does its directory even when the file is absent (a first write
/// into a directory others can write is refused before the command changes anything).
pub fn check_writable_path(path: &Path) -> Result<(), TrustError> {
    check_existing(path)?;
    check_parent(path)
}

/// Open (creating it 0600 when absent) a file afskeys appends to or locks: never through a
/// symlink, never blocking on a FIFO, then checked as `open` checks.
pub fn open_rw(path: &Path, append: bool) -> Result<File, TrustError> {
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(!append)
        .write(!append)
        .append(append)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| open_error(path, "cannot open", e))?;
    let md = f
        .metadata()
        .map_err(|e| TrustError::io(path, "cannot stat", e))?;
    check_meta(path, &md, me())?;
    check_parent(path)?;
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn regular_private_files_are_read_and_capped() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("KeyFile");
        assert!(read(&p, KEYFILE).unwrap().is_none());
        fs::write(&p, [0u8; 4]).unwrap();
        assert_eq!(&read(&p, KEYFILE).unwrap().unwrap()[..], &[0; 4]);
        fs::write(&p, [0u8; 4097]).unwrap();
        let e = read(&p, KEYFILE).unwrap_err().to_string();
        assert!(
            e.contains("is 4097 bytes, more than a KeyFile can be (4096"),
            "{e}"
        );
    }

    #[test]
    fn links_fifos_dirs_and_writable_files_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        std::os::unix::fs::symlink("/etc/hostname", &p).unwrap();
        assert!(matches!(read(&p, JOURNAL), Err(TrustError::Symlink { .. })));
        assert!(matches!(open_rw(&p, true), Err(TrustError::Symlink { .. })));
        fs::remove_file(&p).unwrap();
        let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = read(&p, JOURNAL).unwrap_err().to_string();
        assert!(e.contains("is not a regular file (it is a FIFO)"), "{e}");
        let e = open_rw(&p, false).unwrap_err().to_string();
        assert!(e.contains("(it is a FIFO)"), "{e}");
        fs::remove_file(&p).unwrap();
        fs::create_dir(&p).unwrap();
        assert!(read(&p, JOURNAL).is_err());
        fs::remove_dir(&p).unwrap();
        fs::write(&p, b"{}").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o666)).unwrap();
        let e = read(&p, JOURNAL).unwrap_err().to_string();
        assert!(e.contains("has mode 0666"), "{e}");
        assert!(check_existing(&p).is_err());
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        check_existing(&p).unwrap();
        fs::set_permissions(d.path(), fs::Permissions::from_mode(0o777)).unwrap();
        let e = read(&p, JOURNAL).unwrap_err().to_string();
        assert!(
            e.contains("has mode 0777: other users could replace"),
            "{e}"
        );
        fs::set_permissions(d.path(), fs::Permissions::from_mode(0o1777)).unwrap();
        read(&p, JOURNAL).unwrap();
    }
}

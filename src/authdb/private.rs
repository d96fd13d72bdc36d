//! A private temporary directory (mode 0700) for files that hold key material for a moment
//! (a keytab `ktadd -norandkey` exported, a credential cache `kinit` filled). On drop every
//! regular file in it is overwritten with zeros, then the directory is removed.

use super::AuthDbError;
use std::io::Write;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// A private directory (mode 0700). On drop each regular file in it is overwritten with
/// zeros, then the directory and everything in it is removed.
pub(crate) struct PrivateDir {
    // Dropped after `Drop::drop` ran: removes the directory.
    dir: tempfile::TempDir,
}

impl PrivateDir {
    /// A new directory `<TMPDIR>/<prefix>XXXXXX`; `what` says what it is for, in errors.
    pub(crate) fn new(prefix: &str, what: &'static str) -> Result<PrivateDir, AuthDbError> {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir()
            .map_err(|source| AuthDbError::Io {
                path: std::env::temp_dir(),
                op: what,
                source,
            })?;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).map_err(
            |source| AuthDbError::Io {
                path: dir.path().to_path_buf(),
                op: "cannot make the temporary directory private",
                source,
            },
        )?;
        Ok(PrivateDir { dir })
    }

    #[cfg(test)]
    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `name` in the directory, as one token a command line or a query can carry (no
    /// spaces or quotes: kadmin's query parser has no quoting).
    pub(crate) fn file(&self, name: &str) -> Result<(PathBuf, String), AuthDbError> {
        let path = self.dir.path().join(name);
        match path.to_str() {
            Some(s)
                if !s
                    .chars()
                    .any(|c| c.is_whitespace() || c == '"' || c == '\'') =>
            {
                let s = s.to_string();
                Ok((path, s))
            }
            _ => Err(AuthDbError::Backend(format!(
                "temporary directory {}: its path cannot be passed to kadmin.local (set \
                 TMPDIR to a path without spaces or quotes)",
                path.display()
            ))),
        }
    }

    /// The bytes of `path`, `None` when no file was written there.
    pub(crate) fn read(
        &self,
        path: &Path,
        op: &'static str,
    ) -> Result<Option<Zeroizing<Vec<u8>>>, AuthDbError> {
        match std::fs::read(path) {
            Ok(b) => Ok(Some(Zeroizing::new(b))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(AuthDbError::Io {
                path: path.to_path_buf(),
                op,
                source,
            }),
        }
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let Ok(entries) = std::fs::read_dir(self.dir.path()) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if let Ok(m) = std::fs::symlink_metadata(&p) {
                if m.is_file() {
                    if let Ok(mut f) = std::fs::OpenOptions::new().write(true).open(&p) {
                        let _ = f.write_all(&vec![0u8; m.len() as usize]);
                        let _ = f.sync_all();
                    }
                }
                let _ = std::fs::remove_file(&p);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_dir_is_private_and_removed() {
        use std::os::unix::fs::PermissionsExt;
        let t = PrivateDir::new("afskeys-test-", "test").unwrap();
        let dir = t.path().to_path_buf();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        let (p, s) = t.file("afs.keytab").unwrap();
        assert_eq!(Path::new(&s), p);
        assert!(t.read(&p, "read").unwrap().is_none());
        std::fs::write(&p, [0xaa; 40]).unwrap();
        assert_eq!(t.read(&p, "read").unwrap().unwrap().len(), 40);
        std::fs::write(dir.join("cc"), [0xbb; 4]).unwrap();
        drop(t);
        assert!(!dir.exists());
    }
}

//! Backups of the previous version of each key file: `<dir>/.afskeys-backup/<name>.<UTC time>`,
//! mode 0600 in a 0700 dir, at most `MAX_BACKUPS` per file (the oldest are removed).

use super::{atomic, StoreError};
use std::fs;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

pub const MAX_BACKUPS: usize = 10;
pub const BACKUP_DIR: &str = ".afskeys-backup";

/// Save `old` (the bytes of `file` before the edit) and trim the oldest backups.
pub fn keep(dir: &Path, file: &Path, old: &[u8]) -> Result<PathBuf, StoreError> {
    let bdir = dir.join(BACKUP_DIR);
    match fs::DirBuilder::new().mode(0o700).create(&bdir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(StoreError::io(&bdir, "cannot create backup dir", e)),
    }
    let md = fs::symlink_metadata(&bdir).map_err(|e| StoreError::io(&bdir, "cannot stat", e))?;
    if !md.is_dir() {
        return Err(StoreError::Unsafe {
            path: bdir,
            problem: "is not a directory (refusing to put key backups there)".into(),
        });
    }
    if md.permissions().mode() & 0o077 != 0 {
        fs::set_permissions(&bdir, fs::Permissions::from_mode(0o700))
            .map_err(|e| StoreError::io(&bdir, "cannot chmod backup dir", e))?;
    }
    let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.9fZ");
    let dest = bdir.join(format!("{name}.{stamp}"));
    atomic::replace_file(&dest, old)?;
    trim(&bdir, name)?;
    Ok(dest)
}

fn trim(bdir: &Path, name: &str) -> Result<(), StoreError> {
    let prefix = format!("{name}.");
    let mut found: Vec<String> = fs::read_dir(bdir)
        .map_err(|e| StoreError::io(bdir, "cannot list backup dir", e))?
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| {
            n.strip_prefix(&prefix)
                .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
        })
        .collect();
    // The UTC stamps sort as text in time order.
    found.sort();
    while found.len() > MAX_BACKUPS {
        let old = bdir.join(found.remove(0));
        fs::remove_file(&old).map_err(|e| StoreError::io(&old, "cannot remove old backup", e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_private() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("KeyFile");
        for i in 0..(MAX_BACKUPS + 3) {
            let p = keep(d.path(), &f, &[i as u8]).unwrap();
            assert_eq!(
                fs::metadata(&p).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        let b = d.path().join(BACKUP_DIR);
        let mut names: Vec<_> = fs::read_dir(&b)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names.len(), MAX_BACKUPS);
        // the newest survive
        assert_eq!(
            fs::read(b.join(names.last().unwrap())).unwrap(),
            vec![(MAX_BACKUPS + 2) as u8]
        );
        assert_eq!(fs::read(b.join(&names[0])).unwrap(), vec![3u8]);
        assert_eq!(
            fs::metadata(&b).unwrap().permissions().mode() & 0o777,
            0o700
        );
    }
}

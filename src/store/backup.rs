//! Backups of the previous version of each key file: `<dir>/.afskeys-backup/<name>.<UTC time>`,
//! mode 0600 in a 0700 dir, at most `MAX_BACKUPS` per file (the oldest are removed).

use super::rules::{self, BACKUP_DIR};
use super::{atomic, StoreError};
use std::fs;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Save `old` (the bytes of `file` before the edit) and trim the oldest backups.
pub fn keep(dir: &Path, file: &Path, old: &[u8]) -> Result<PathBuf, StoreError> {
    let bdir = dir.join(BACKUP_DIR);
    match fs::DirBuilder::new().mode(0o700).create(&bdir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(StoreError::io(&bdir, "cannot create backup dir", e)),
    }
    let md = fs::symlink_metadata(&bdir).map_err(|e| StoreError::io(&bdir, "cannot stat", e))?;
    let make_private =
        rules::check_backup_dir(md.permissions().mode()).map_err(|p| StoreError::Unsafe {
            path: bdir.clone(),
            problem: p.to_string(),
        })?;
    if make_private {
        fs::set_permissions(&bdir, fs::Permissions::from_mode(0o700))
            .map_err(|e| StoreError::io(&bdir, "cannot chmod backup dir", e))?;
    }
    let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    atomic::remove_stale_temps(&bdir, &[name]);
    let existing = list(&bdir)?;
    let when = rules::backup_time(
        existing.iter().map(String::as_str),
        name,
        chrono::Utc::now(),
    );
    let dest = bdir.join(rules::backup_name(name, when));
    atomic::replace_file(&dest, old)?;
    trim(&bdir, name)?;
    Ok(dest)
}

fn list(bdir: &Path) -> Result<Vec<String>, StoreError> {
    Ok(fs::read_dir(bdir)
        .map_err(|e| StoreError::io(bdir, "cannot list backup dir", e))?
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect())
}

fn trim(bdir: &Path, name: &str) -> Result<(), StoreError> {
    let names = list(bdir)?;
    for old in rules::backups_to_trim(names.iter().map(String::as_str), name) {
        let old = bdir.join(old);
        fs::remove_file(&old).map_err(|e| StoreError::io(&old, "cannot remove old backup", e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MAX_BACKUPS;

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

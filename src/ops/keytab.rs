//! `keytab convert` (as akeyconvert: a keytab's non-DES keys into KeyFileExt, skipping keys
//! already present with the same bytes) and `keytab export` (rxkad_krb5 keys into a new
//! keytab, mode 0600, logged).

use super::edit::{add_keys, Target};
use super::{CellPaths, KeyView};
use crate::error::Error;
use crate::keys::{Key, KeyType};
use chrono::Utc;
use serde::Serialize;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// `keytab convert`: what the operator asked for.
pub struct ConvertOptions {
    /// [default: rxkad.keytab in the conf dir]
    pub keytab: Option<PathBuf>,
    /// Only this principal's keys [default: every principal].
    pub principal: Option<String>,
    /// Every kvno, not only the highest.
    pub all: bool,
    /// Replace keys present with other bytes.
    pub replace: bool,
}

#[derive(Debug, Serialize)]
pub struct Converted {
    pub added: Vec<KeyView>,
    pub skipped_des: Vec<SkippedDes>,
}

/// A single-DES keytab entry left out: KeyFileExt holds no single-DES keys.
#[derive(Debug, Serialize)]
pub struct SkippedDes {
    pub kvno: u32,
    pub enctype: u16,
}

fn read_keytab(path: &Path) -> Result<Zeroizing<Vec<u8>>, Error> {
    std::fs::read(path)
        .map(Zeroizing::new)
        .map_err(|e| Error::failed(format!("{}: cannot read: {e}", path.display())).with_source(e))
}

/// `keytab convert`.
pub fn convert(paths: &CellPaths, o: &ConvertOptions) -> Result<Converted, Error> {
    let cell = paths.open()?;
    let keytab = o
        .keytab
        .clone()
        .unwrap_or_else(|| cell.control.path().join("rxkad.keytab"));
    let bytes = read_keytab(&keytab)?;
    let name = keytab.display().to_string();
    let (keys, skipped) = crate::keytabs::convert(&bytes, &name, o.principal.as_deref(), o.all)?;
    // Keys already present with the same bytes are not added twice.
    let have = cell.control.read()?.keys;
    let new: Vec<Key> = keys
        .into_iter()
        .filter(|k| have.get(&k.id).is_none_or(|h| h.bytes() != k.bytes()))
        .collect();
    let added = KeyView::all(&new);
    if !new.is_empty() {
        add_keys(&cell, &Target::Control, new, o.replace, None, Utc::now())?;
    }
    Ok(Converted {
        added,
        skipped_des: skipped
            .into_iter()
            .map(|(kvno, enctype)| SkippedDes { kvno, enctype })
            .collect(),
    })
}

#[derive(Debug, Serialize)]
pub struct Exported {
    pub keytab: String,
    pub principal: String,
    pub keys: Vec<KeyView>,
}

/// `keytab export`: the control machine's rxkad_krb5 keys (of `kvno` only, when given)
/// under `principal` (default: the cell's afs principal) into a new file.
pub fn export(
    paths: &CellPaths,
    keytab: &Path,
    kvno: Option<i32>,
    principal: Option<&str>,
) -> Result<Exported, Error> {
    let cell = paths.open()?;
    let p = principal.map_or_else(|| cell.principal.clone(), str::to_string);
    if std::fs::symlink_metadata(keytab).is_ok() {
        return Err(Error::failed(format!(
            "{}: already exists; afskeys writes a new keytab only (remove it or choose another name)",
            keytab.display()
        )));
    }
    // Never into a directory others can write unless it is sticky (then created exclusively,
    // below): checked before anything is read or written.
    crate::store::trust::check_parent(keytab).map_err(crate::store::StoreError::from)?;
    cell.audit.preflight().map_err(Error::failed_by)?;
    let snap = cell.control.read()?;
    let keys: Vec<&Key> = snap
        .keys
        .of_type(KeyType::RxkadKrb5)
        .filter(|k| kvno.is_none_or(|n| n == k.kvno()))
        .collect();
    if keys.is_empty() {
        return Err(Error::failed(format!(
            "{}: no rxkad_krb5 keys{} to export",
            cell.control.path().display(),
            kvno.map(|k| format!(" at kvno {k}")).unwrap_or_default()
        )));
    }
    let now = u32::try_from(Utc::now().timestamp()).unwrap_or(u32::MAX);
    let bytes = crate::keytabs::export(&keys, &p, now)?;
    if crate::store::trust::in_shared_sticky_dir(keytab) {
        crate::store::atomic::create_exclusive(keytab, &bytes)?;
    } else {
        crate::store::atomic::replace_file(keytab, &bytes)?;
    }
    cell.audit
        .record(
            "keytab export",
            &format!("{} key(s) under {p} to {}", keys.len(), keytab.display()),
        )
        .map_err(Error::failed_by)?;
    Ok(Exported {
        keytab: keytab.display().to_string(),
        principal: p,
        keys: keys.into_iter().map(|k| KeyView::of(k, false)).collect(),
    })
}

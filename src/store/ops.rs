//! The edits an operator makes, on top of `ConfDir::edit`: add (refusing an existing key
//! unless replacing) and remove, each with the `--if-cksum` compare-and-swap.

use super::{ConfDir, EditReport, StoreError, KEYFILE, KEYFILEEXT};
use crate::checksum::key_checksum;
use crate::keys::{Key, KeySet, KeyType};
use std::path::PathBuf;

/// Which keys a removal takes: every key at `kvno`, narrowed by type and enctype.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Selector {
    pub kvno: i32,
    pub key_type: Option<KeyType>,
    pub enctype: Option<i32>,
}

impl Selector {
    pub fn matches(&self, k: &Key) -> bool {
        k.kvno() == self.kvno
            && self.key_type.is_none_or(|t| t == k.key_type())
            && self.enctype.is_none_or(|e| e == k.id.subtype)
    }
}

/// Refuse (exit 3) unless every key in `victims` has one of the expected checksums.
fn check_cksum(expected: Option<&[u32]>, victims: &[&Key], verb: &str) -> Result<(), StoreError> {
    let Some(expected) = expected else {
        return Ok(());
    };
    if victims.is_empty() {
        return Err(StoreError::Refused(format!(
            "--if-cksum given but there is no existing key to {verb}"
        )));
    }
    for k in victims {
        match key_checksum(k) {
            Some(c) if expected.contains(&c) => {}
            Some(c) => {
                return Err(StoreError::Refused(format!(
                "{} has cksum {c}, not {}: someone changed it since you looked; nothing changed",
                k.id,
                list(expected)
            )))
            }
            None => {
                return Err(StoreError::Refused(format!(
                    "{} has no checksum (weak or bad-parity key), so it cannot match --if-cksum {}",
                    k.id,
                    list(expected)
                )))
            }
        }
    }
    Ok(())
}

fn list(v: &[u32]) -> String {
    v.iter()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// Add `keys` to `set`. A key whose (type, kvno, enctype) exists is refused unless
/// `replace` (as `bos addkey` refuses a kvno in use); `if_cksum` implies replace and must
/// match every key being replaced. Returns the keys replaced. `place` names the conf dir or
/// server in messages.
pub fn apply_add(
    set: &mut KeySet,
    keys: Vec<Key>,
    replace: bool,
    if_cksum: Option<&[u32]>,
    place: &str,
) -> Result<Vec<Key>, StoreError> {
    let replace = replace || if_cksum.is_some();
    let existing: Vec<&Key> = keys.iter().filter_map(|k| set.get(&k.id)).collect();
    if !existing.is_empty() && !replace {
        return Err(StoreError::Failed(format!(
            "{place}: {} already present; remove it first or give --replace",
            existing
                .iter()
                .map(|k| k.id.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    check_cksum(if_cksum, &existing, "replace")?;
    let mut replaced = Vec::new();
    for k in keys {
        let file = if k.key_type().is_typed() {
            KEYFILEEXT
        } else {
            KEYFILE
        };
        if let Some(old) = set.upsert(k).map_err(|source| StoreError::Key {
            path: PathBuf::from(format!("{place}/{file}")),
            source,
        })? {
            replaced.push(old);
        }
    }
    Ok(replaced)
}

/// Remove the keys `sel` picks from `set`; none found is an error. Returns them.
pub fn apply_remove(
    set: &mut KeySet,
    sel: Selector,
    if_cksum: Option<&[u32]>,
    place: &str,
) -> Result<Vec<Key>, StoreError> {
    let victims: Vec<&Key> = set.iter().filter(|k| sel.matches(k)).collect();
    if victims.is_empty() {
        return Err(StoreError::Failed(format!(
            "{place}: no key with kvno {}{}{}",
            sel.kvno,
            sel.key_type
                .map(|t| format!(" of type {t}"))
                .unwrap_or_default(),
            sel.enctype
                .map(|e| format!(" enctype {e}"))
                .unwrap_or_default()
        )));
    }
    check_cksum(if_cksum, &victims, "remove")?;
    Ok(set.remove_where(|k| sel.matches(k)))
}

/// `apply_add` on a conf dir, under its lock.
pub fn add_keys(
    dir: &ConfDir,
    keys: Vec<Key>,
    replace: bool,
    if_cksum: Option<&[u32]>,
) -> Result<(Vec<Key>, EditReport), StoreError> {
    let place = dir.path().display().to_string();
    dir.edit(move |set| apply_add(set, keys, replace, if_cksum, &place))
}

/// `apply_remove` on a conf dir, under its lock.
pub fn remove_keys(
    dir: &ConfDir,
    sel: Selector,
    if_cksum: Option<&[u32]>,
) -> Result<(Vec<Key>, EditReport), StoreError> {
    let place = dir.path().display().to_string();
    dir.edit(move |set| apply_remove(set, sel, if_cksum, &place))
}

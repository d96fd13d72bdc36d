//! The cell-aware edits behind the CLI: add and remove with the audit log and the grace
//! policy, prune, and setting the afs entry by hand under the same servers-first guard
//! that `rotate` uses.

use crate::authdb::{AfsEntry, AuthDbError, KeyMaterial};
use crate::cell::Cell;
use crate::checksum::key_checksum;
use crate::fleet::{self, KeyFiles, Server};
use crate::keys::{Key, KeySet, KeyType};
use crate::policy::{removal_refusal, role, Role};
use crate::rotation::RotateError;
use crate::store::ops::{self, Selector};
use crate::store::{EditReport, StoreError};
use chrono::{DateTime, Utc};

/// A failure with its exit code (1 failed, 3 refused by policy).
#[derive(Debug)]
pub struct AdminError {
    pub code: i32,
    pub message: String,
}

impl AdminError {
    pub fn failed(m: impl Into<String>) -> AdminError {
        AdminError {
            code: 1,
            message: m.into(),
        }
    }
    pub fn refused(m: impl Into<String>) -> AdminError {
        AdminError {
            code: 3,
            message: format!("refused: {}", m.into()),
        }
    }
}

impl From<StoreError> for AdminError {
    fn from(e: StoreError) -> Self {
        AdminError {
            code: e.exit_code(),
            message: e.to_string(),
        }
    }
}

impl From<RotateError> for AdminError {
    fn from(e: RotateError) -> Self {
        AdminError {
            code: e.exit_code(),
            message: e.to_string(),
        }
    }
}

impl From<AuthDbError> for AdminError {
    fn from(e: AuthDbError) -> Self {
        AdminError {
            code: e.exit_code(),
            message: e.to_string(),
        }
    }
}

fn describe(keys: &[Key]) -> String {
    keys.iter()
        .map(|k| {
            format!(
                "{} cksum {}",
                k.id,
                key_checksum(k)
                    .map(|c| c.to_string())
                    .unwrap_or_else(|| "-".into())
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Record a change made; a failure here says the change was made all the same.
fn audit(cell: &Cell, command: &str, detail: &str) -> Result<(), AdminError> {
    cell.audit.record(command, detail).map_err(|e| {
        AdminError::failed(format!(
            "the change was made ({command}: {detail}), but it could not be logged: {e}"
        ))
    })
}

/// Before a change: the audit log must be writable, or nothing is done.
fn preflight(cell: &Cell) -> Result<(), AdminError> {
    cell.audit.preflight().map_err(AdminError::failed)
}

/// Where an edit happens: the control machine's conf dir (locked edit), or one server's own
/// files (an emergency edit: read, change, install).
pub enum Target<'a> {
    Control,
    Server(&'a dyn Server),
}

impl Target<'_> {
    fn edit<T>(
        &self,
        cell: &Cell,
        change: impl FnOnce(&mut KeySet, &str) -> Result<T, StoreError>,
    ) -> Result<(T, EditReport), AdminError> {
        match self {
            Target::Control => {
                let place = cell.control.path().display().to_string();
                Ok(cell.control.edit(|set| change(set, &place))?)
            }
            Target::Server(s) => {
                let mut set = s
                    .read_keys()
                    .map_err(|e| AdminError::failed(e.to_string()))?;
                let out = change(&mut set, &format!("server {}", s.name()))?;
                s.install(&KeyFiles::of(&set))
                    .map_err(|e| AdminError::failed(e.to_string()))?;
                Ok((out, EditReport::default()))
            }
        }
    }

    fn label(&self) -> String {
        match self {
            Target::Control => String::new(),
            Target::Server(s) => format!(" --server {}", s.name()),
        }
    }
}

/// Add keys (see `store::ops::apply_add`), logged.
/// Add keys (see `store::ops::apply_add`), logged. Replacing a key removes the old one, so a
/// key in use — the afs entry's current key, a rotation's incoming key, a retiring key — is
/// never replaced: a new key takes a new kvno (`rotate`), an old one leaves with `remove`.
pub fn add(
    cell: &Cell,
    target: &Target,
    keys: Vec<Key>,
    replace: bool,
    if_cksum: Option<&[u32]>,
    now: DateTime<Utc>,
) -> Result<(Vec<Key>, EditReport), AdminError> {
    preflight(cell)?;
    let _lock = cell
        .state
        .lock(true)
        .map_err(|e| AdminError::failed(e.to_string()))?;
    let entry = cell.authdb.get()?;
    let state = cell
        .state
        .load()
        .map_err(|e| AdminError::failed(e.to_string()))?;
    let what = describe(&keys);
    let (replaced, report) = target.edit(cell, |set, place| {
        let mut kvnos: Vec<i32> = keys
            .iter()
            .filter(|k| set.get(&k.id).is_some())
            .map(|k| k.kvno())
            .collect();
        kvnos.dedup();
        let refusals: Vec<String> = kvnos
            .iter()
            .filter_map(|&k| removal_refusal(k, entry.as_ref(), &state, &cell.policy, now))
            .collect();
        if !refusals.is_empty() {
            return Err(StoreError::Refused(format!(
                "replacing a key removes the old one, and {}. A new key takes a new kvno \
                 (`afskeys rotate`); an old one leaves with `afskeys remove`",
                refusals.join("; ")
            )));
        }
        ops::apply_add(set, keys, replace, if_cksum, place)
    })?;
    let mut detail = format!("added {what}");
    if !replaced.is_empty() {
        detail.push_str(&format!(" replacing {}", describe(&replaced)));
    }
    audit(cell, &format!("add{}", target.label()), &detail)?;
    Ok((replaced, report))
}

/// Remove the keys each selector picks — all or none — unless the grace policy forbids
/// one of them. `emergency` (the reason) overrides the policy and is logged.
pub fn remove(
    cell: &Cell,
    target: &Target,
    sels: &[Selector],
    if_cksum: Option<&[u32]>,
    emergency: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(Vec<Key>, EditReport, Vec<String>), AdminError> {
    preflight(cell)?;
    let _lock = cell
        .state
        .lock(true)
        .map_err(|e| AdminError::failed(e.to_string()))?;
    let entry = cell.authdb.get()?;
    let state = cell
        .state
        .load()
        .map_err(|e| AdminError::failed(e.to_string()))?;
    let refusals: Vec<String> = sels
        .iter()
        .filter_map(|s| removal_refusal(s.kvno, entry.as_ref(), &state, &cell.policy, now))
        .collect();
    if !refusals.is_empty() && emergency.is_none() {
        return Err(AdminError::refused(format!(
            "{}. To remove it anyway: --emergency --reason \"...\"",
            refusals.join("; ")
        )));
    }
    let (removed, report) = target.edit(cell, |set, place| {
        let mut all = Vec::new();
        for s in sels {
            all.extend(ops::apply_remove(set, *s, if_cksum, place)?);
        }
        Ok(all)
    })?;
    match emergency {
        Some(reason) if !refusals.is_empty() => audit(
            cell,
            &format!("remove{} --emergency", target.label()),
            &format!(
                "removed {} despite: {}; reason: {reason}",
                describe(&removed),
                refusals.join("; ")
            ),
        )?,
        _ => audit(
            cell,
            &format!("remove{}", target.label()),
            &format!("removed {}", describe(&removed)),
        )?,
    }
    Ok((removed, report, refusals))
}

/// Remove every key whose grace has ended (never the current or incoming key, never a key of
/// unknown role). With `dry_run`, only says which.
pub fn prune(cell: &Cell, now: DateTime<Utc>, dry_run: bool) -> Result<Vec<Key>, AdminError> {
    if !dry_run {
        preflight(cell)?;
    }
    let _lock = cell
        .state
        .lock(true)
        .map_err(|e| AdminError::failed(e.to_string()))?;
    let entry = cell.authdb.get()?;
    let state = cell
        .state
        .load()
        .map_err(|e| AdminError::failed(e.to_string()))?;
    if entry.is_none() {
        return Err(AdminError::refused(format!(
            "{} has no afs entry, so no key is known to be out of use (run `afskeys authdb init`)",
            cell.authdb.describe()
        )));
    }
    let snap = cell.control.read()?;
    let doomed: Vec<Key> = snap
        .keys
        .iter()
        .filter(|k| role(k.kvno(), entry.as_ref(), &state, &cell.policy, now) == Role::Removable)
        .cloned()
        .collect();
    if dry_run || doomed.is_empty() {
        return Ok(doomed);
    }
    let ids: Vec<_> = doomed.iter().map(|k| k.id).collect();
    let (removed, _) = cell.control.edit(|set| {
        Ok(ids
            .iter()
            .filter_map(|id| set.remove(id))
            .collect::<Vec<_>>())
    })?;
    audit(cell, "prune", &format!("removed {}", describe(&removed)))?;
    Ok(removed)
}

/// The control machine's keys at `kvno` that the afs entry would use (rxkad_krb5 first).
fn keys_at(cell: &Cell, kvno: Option<i32>) -> Result<Vec<Key>, AdminError> {
    let snap = cell.control.read()?;
    let kvno = match kvno {
        Some(k) => k,
        None => snap.keys.max_kvno().ok_or_else(|| {
            AdminError::failed(format!("{}: no keys to use", cell.control.path().display()))
        })?,
    };
    let at = |t: KeyType| -> Vec<Key> {
        snap.keys
            .of_type(t)
            .filter(|k| k.kvno() == kvno)
            .cloned()
            .collect()
    };
    let typed = at(KeyType::RxkadKrb5);
    if !typed.is_empty() {
        return Ok(typed);
    }
    let des = at(KeyType::Rxkad);
    if des.is_empty() {
        return Err(AdminError::failed(format!(
            "{}: no rxkad_krb5 or rxkad key at kvno {kvno}",
            cell.control.path().display()
        )));
    }
    Ok(des)
}

/// The servers-first guard: every machine must hold `keys` before the afs entry may use them.
fn guard(cell: &Cell, keys: &[Key]) -> Result<(), AdminError> {
    let lacking = fleet::lacking(&cell.all_servers(), keys);
    if lacking.is_empty() {
        return Ok(());
    }
    let names: Vec<String> = lacking.iter().map(|(n, w)| format!("{n} ({w})")).collect();
    Err(AdminError::refused(format!(
        "servers first: {} lack kvno {}; push the key to them before the afs entry uses it",
        names.join("; "),
        keys[0].kvno()
    )))
}

fn raw_backend(cell: &Cell) -> Result<(), AdminError> {
    match cell.authdb.key_material() {
        KeyMaterial::Raw => Ok(()),
        KeyMaterial::Passphrase { .. } => Err(AdminError::refused(format!(
            "{} takes keys only from a passphrase: use `afskeys rotate`",
            cell.authdb.describe()
        ))),
    }
}

/// Create the auth DB's afs entry from the control machine's keys at `kvno` (default:
/// the highest), once every server holds them.
pub fn authdb_init(
    cell: &Cell,
    kvno: Option<i32>,
    now: DateTime<Utc>,
) -> Result<AfsEntry, AdminError> {
    raw_backend(cell)?;
    preflight(cell)?;
    let _lock = cell
        .state
        .lock(true)
        .map_err(|e| AdminError::failed(e.to_string()))?;
    let keys = keys_at(cell, kvno)?;
    guard(cell, &keys)?;
    let e = cell.authdb.init(keys[0].kvno(), &keys, now)?;
    audit(
        cell,
        "authdb init",
        &format!("afs entry at kvno {}: {}", e.kvno, describe(&keys)),
    )?;
    Ok(e)
}

/// Move the afs entry to the control machine's keys at `kvno` by hand (what step 4 of a
/// rotation does), refused unless every server holds them; the old kvno's grace starts now.
pub fn authdb_set(cell: &Cell, kvno: i32, now: DateTime<Utc>) -> Result<AfsEntry, AdminError> {
    raw_backend(cell)?;
    preflight(cell)?;
    let _lock = cell
        .state
        .lock(true)
        .map_err(|e| AdminError::failed(e.to_string()))?;
    let mut state = cell
        .state
        .load()
        .map_err(|e| AdminError::failed(e.to_string()))?;
    if let Some(r) = &state.rotation {
        return Err(AdminError::refused(format!(
            "a rotation to kvno {} is in progress; finish or abort it first",
            r.kvno
        )));
    }
    let keys = keys_at(cell, Some(kvno))?;
    guard(cell, &keys)?;
    let old = cell.authdb.get()?;
    let e = cell.authdb.set(kvno, &keys, None, now)?;
    if let Some(o) = old {
        state.retire(o.kvno, now);
        cell.state
            .save(&state)
            .map_err(|e| AdminError::failed(e.to_string()))?;
    }
    audit(
        cell,
        "authdb set",
        &format!("afs entry at kvno {}: {}", e.kvno, describe(&keys)),
    )?;
    Ok(e)
}

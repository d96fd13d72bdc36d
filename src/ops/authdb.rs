//! `authdb init|show|set`: the auth DB's afs entry. Setting it by hand obeys the same
//! servers-first guard as `rotate`: every server must hold the keys before the entry uses them.

use super::edit::{audit, describe, preflight};
use super::{CellPaths, KeyView};
use crate::authdb::{AfsEntry, KeyMaterial};
use crate::cell::Cell;
use crate::error::Error;
use crate::fleet;
use crate::fleet::upserver::FetchState;
use crate::keys::{Key, KeyType};
use crate::time::fmt_time;
use chrono::{DateTime, Utc};
use serde::Serialize;

/// The afs entry as reports show it.
#[derive(Debug, Serialize)]
pub struct EntryView {
    pub principal: String,
    pub kvno: i32,
    /// When it last changed (RFC 3339).
    pub changed: String,
    /// A KDC backend: every kvno the KDC holds keys of for the principal, highest first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kdc_kvnos: Option<Vec<i32>>,
    pub keys: Vec<KeyView>,
}

impl EntryView {
    pub fn of(e: &AfsEntry) -> EntryView {
        EntryView {
            principal: e.principal.clone(),
            kvno: e.kvno,
            changed: fmt_time(e.changed),
            kdc_kvnos: e.kdc.as_ref().map(|k| k.kvnos.clone()),
            keys: KeyView::all(&e.keys),
        }
    }
}

/// What `authdb` should do.
pub enum AuthdbAction {
    Show,
    /// Create the entry from the control machine's keys at this kvno (default: the highest).
    Init(Option<i32>),
    /// Move the entry to the control machine's keys at this kvno.
    Set(i32),
}

/// `authdb show|init|set`: the entry as it is (after the change, if any).
pub fn authdb(paths: &CellPaths, action: &AuthdbAction) -> Result<EntryView, Error> {
    let cell = paths.open()?;
    let e = match action {
        AuthdbAction::Show => cell
            .authdb
            .get()
            .map_err(Error::failed_by)?
            .ok_or_else(|| {
                Error::failed(format!(
                    "{} has no afs entry (run `afskeys authdb init` or `afskeys rotate`)",
                    cell.authdb.describe()
                ))
            })?,
        AuthdbAction::Init(kvno) => init(&cell, *kvno, Utc::now())?,
        AuthdbAction::Set(kvno) => set(&cell, *kvno, Utc::now())?,
    };
    Ok(EntryView::of(&e))
}

/// The control machine's keys at `kvno` that the afs entry would use (rxkad_krb5 first).
fn keys_at(cell: &Cell, kvno: Option<i32>) -> Result<Vec<Key>, Error> {
    let snap = cell.control.read()?;
    let kvno = match kvno {
        Some(k) => k,
        None => snap.keys.max_afs_kvno().ok_or_else(|| {
            Error::failed(format!("{}: no keys to use", cell.control.path().display()))
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
        return Err(Error::failed(format!(
            "{}: no rxkad_krb5 or rxkad key at kvno {kvno}",
            cell.control.path().display()
        )));
    }
    Ok(des)
}

/// The servers-first guard: every machine must hold `keys` before the afs entry may use them.
fn guard(cell: &Cell, keys: &[Key]) -> Result<(), Error> {
    let lacking = fleet::lacking(&cell.all_servers(), keys);
    if !lacking.is_empty() {
        let names: Vec<String> = lacking.iter().map(|(n, w)| format!("{n} ({w})")).collect();
        return Err(Error::refused(format!(
            "servers first: {} lack kvno {}; push the key to them before the afs entry uses it",
            names.join("; "),
            keys[0].kvno()
        )));
    }
    fetched_guard(cell, keys[0].kvno())
}

/// In Update Server cells, the servers-first guard for the upclient-fed servers: each must
/// have fetched the control machine's KeyFile and KeyFileExt (their `bos getdate` dates equal
/// the control machine's), or the entry would move to a kvno they lack.
fn fetched_guard(cell: &Cell, kvno: i32) -> Result<(), Error> {
    let Some(up) = &cell.upserver else {
        return Ok(());
    };
    let behind: Vec<String> = up
        .fetch_states(cell.control.path())
        .into_iter()
        .filter(|(_, s)| *s != FetchState::Fetched)
        .map(|(n, s)| format!("{n} ({})", s.describe()))
        .collect();
    if behind.is_empty() {
        return Ok(());
    }
    Err(Error::refused(format!(
        "servers first: {} have not fetched the control machine's KeyFiles through the Update \
         Server, so they may lack kvno {kvno}; wait for their upclientetc (`afskeys status` \
         shows each fetch) before the afs entry uses it",
        behind.join("; ")
    )))
}

fn raw_backend(cell: &Cell) -> Result<(), Error> {
    match cell.authdb.key_material() {
        KeyMaterial::Raw => Ok(()),
        KeyMaterial::Passphrase { .. } => Err(Error::refused(format!(
            "{} takes keys only from a passphrase: use `afskeys rotate`",
            cell.authdb.describe()
        ))),
    }
}

/// Create the auth DB's afs entry from the control machine's keys at `kvno` (default:
/// the highest), once every server holds them.
pub fn init(cell: &Cell, kvno: Option<i32>, now: DateTime<Utc>) -> Result<AfsEntry, Error> {
    raw_backend(cell)?;
    preflight(cell)?;
    cell.authdb.check_writable()?;
    let _lock = cell.state.lock(true)?;
    cell.inventory_for_change("authdb init")?;
    let keys = keys_at(cell, kvno)?;
    guard(cell, &keys)?;
    let e = cell.authdb.init(keys[0].kvno(), &keys, now)?;
    record_adoption(cell, e.changed)?;
    audit(
        cell,
        "authdb init",
        &format!("afs entry at kvno {}: {}", e.kvno, describe(&keys)),
    )?;
    Ok(e)
}

/// Record in the journal that the cell now has an afs entry, so a missing or misnamed auth
/// DB is never again read as "no entry" (`State::known_entry`).
fn record_adoption(cell: &Cell, at: DateTime<Utc>) -> Result<(), Error> {
    let mut state = cell.state.load()?;
    state.adopted = Some(at);
    cell.state.save(&state)?;
    Ok(())
}

/// Move the afs entry to the control machine's keys at `kvno` by hand (what step 4 of a
/// rotation does), refused unless every server holds them; the old kvno's grace starts now.
pub fn set(cell: &Cell, kvno: i32, now: DateTime<Utc>) -> Result<AfsEntry, Error> {
    raw_backend(cell)?;
    preflight(cell)?;
    cell.authdb.check_writable()?;
    let _lock = cell.state.lock(true)?;
    cell.inventory_for_change("authdb set")?;
    let mut state = cell.state.load()?;
    if let Some(r) = &state.rotation {
        return Err(Error::refused(format!(
            "a rotation to kvno {} is in progress; finish or abort it first",
            r.kvno
        )));
    }
    let keys = keys_at(cell, Some(kvno))?;
    guard(cell, &keys)?;
    let old = cell.authdb.get()?;
    let latest = state.latest_recorded().max(old.as_ref().map(|o| o.changed));
    let now = crate::policy::recorded_now(now, latest);
    let e = cell.authdb.set(kvno, &keys, None, now)?;
    match old {
        Some(o) => state.retire(o.kvno, now),
        None => state.adopted = Some(e.changed),
    }
    cell.state.save(&state)?;
    audit(
        cell,
        "authdb set",
        &format!("afs entry at kvno {}: {}", e.kvno, describe(&keys)),
    )?;
    Ok(e)
}

//! `prune`: remove every key whose grace has ended (never the current or incoming key, never
//! a key of unknown role), logged, then copied to the other servers.

use super::edit::{audit, describe, preflight, sync_after_edit, Target};
use super::{CellPaths, KeyView};
use crate::cell::Cell;
use crate::error::Error;
use crate::keys::Key;
use crate::policy::{role, Role};
use chrono::{DateTime, Utc};
use serde::Serialize;

/// What `prune` removed (or, in a dry run, would remove).
#[derive(Debug, Serialize)]
pub struct PruneReport {
    pub dry_run: bool,
    pub removed: Vec<KeyView>,
    pub pushed_to: Vec<String>,
}

/// The removable keys, removed unless `dry_run`.
pub fn prune_keys(cell: &Cell, now: DateTime<Utc>, dry_run: bool) -> Result<Vec<Key>, Error> {
    if !dry_run {
        preflight(cell)?;
    }
    let _lock = cell.state.lock(true)?;
    let entry = cell.authdb.get()?;
    let state = cell.state.load()?;
    if entry.is_none() {
        state.check_entry_missing(&cell.authdb.describe())?;
        return Err(Error::refused(format!(
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

/// `prune [--dry-run]`.
pub fn prune(paths: &CellPaths, dry_run: bool) -> Result<PruneReport, Error> {
    let cell = paths.open()?;
    let keys = prune_keys(&cell, Utc::now(), dry_run)?;
    let pushed_to = if dry_run || keys.is_empty() {
        vec![]
    } else {
        sync_after_edit(&cell, &Target::Control)?
    };
    Ok(PruneReport {
        dry_run,
        removed: KeyView::all(&keys),
        pushed_to,
    })
}

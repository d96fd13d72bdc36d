//! `prune`: remove every key whose grace has ended (never the current or incoming key, never
//! a key of unknown role), logged, then copied to the other servers.

use super::edit::{audit, describe, preflight, sync_after_edit, Target};
use super::restart::{before_removal, RestartReport, Restarts};
use super::upclient::{removal_lockouts, restart_locked};
use super::{CellPaths, KeyView, Warn};
use crate::authdb::AfsEntry;
use crate::cell::Cell;
use crate::error::Error;
use crate::keys::Key;
use crate::policy::{lifetime_conflict, role, Role};
use chrono::{DateTime, Utc};
use serde::Serialize;

/// What `prune` removed (or, in a dry run, would remove).
#[derive(Debug, Serialize)]
pub struct PruneReport {
    pub dry_run: bool,
    pub removed: Vec<KeyView>,
    pub pushed_to: Vec<String>,
    /// `--restart-upclients`: the servers whose upclientetc was restarted through bos first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub restarted: Vec<String>,
    /// The restarts made (or planned, or left to the operator) before the removal, when a
    /// removed kvno was below a kvno still held.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restarts: Option<RestartReport>,
    /// The KDC's old keys no server holds any more: purged last (or, in a dry run, to be).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kdc: Option<super::purge::KdcPurge>,
}

/// How `prune` runs.
pub struct PruneOptions<'a> {
    /// Say what would be removed, change nothing.
    pub dry_run: bool,
    /// In an Update Server cell, restart the upclients the removal would lock out (and wait
    /// until they have fetched) instead of refusing.
    pub restart_upclients: bool,
    /// Run the restarts a removal needs (or only print them, `--no-restart`).
    pub restarts: Restarts,
    pub warn: Warn<'a>,
}

/// What `prune_keys` removed (or would), and what it restarted first.
pub struct Pruned {
    /// The afs entry the prune judged by (a prune never changes it).
    pub entry: AfsEntry,
    pub keys: Vec<Key>,
    pub upclients: Vec<String>,
    pub restarts: Option<RestartReport>,
}

/// The removable keys, removed unless `dry_run`; with the upclients restarted first, and
/// the servers' processes restarted first where the removal needs it.
pub fn prune_keys(cell: &Cell, now: DateTime<Utc>, o: &mut PruneOptions) -> Result<Pruned, Error> {
    if !o.dry_run {
        preflight(cell)?;
    }
    let _lock = cell.state.lock(true)?;
    let inv = match o.dry_run {
        false => cell.inventory_for_change("prune")?,
        true => crate::inventory::gather(&cell.inventory),
    };
    let entry = cell.authdb.get()?;
    let state = cell.state.load()?;
    let Some(entry) = entry else {
        state.check_entry_missing(&cell.authdb.describe())?;
        return Err(Error::refused(format!(
            "{} has no afs entry, so no key is known to be out of use (run `afskeys authdb init`)",
            cell.authdb.describe()
        )));
    };
    if let Some(c) = lifetime_conflict(&cell.policy, Some(&entry)) {
        return Err(Error::refused(c));
    }
    let snap = cell.control.read()?;
    let doomed: Vec<Key> = snap
        .keys
        .iter()
        .filter(|k| role(k.kvno(), Some(&entry), &state, &cell.policy, now) == Role::Removable)
        .cloned()
        .collect();
    let kvnos: Vec<i32> = doomed.iter().map(|k| k.kvno()).collect();
    let since = (entry.kvno, entry.changed);
    let restarted = match removal_lockouts(cell, &kvnos, since) {
        None => vec![],
        Some(l) if o.dry_run => {
            (o.warn)(&l.refusal().to_string());
            vec![]
        }
        Some(l) if !o.restart_upclients => return Err(l.refusal()),
        Some(l) => restart_locked(cell, l.up, &l.locked, since, &l.kvnos, o.warn)?,
    };
    let left: Vec<i32> = (snap.keys.iter().map(|k| k.kvno()))
        .filter(|k| !kvnos.contains(k))
        .collect();
    let restarts = match doomed.is_empty() {
        true => None,
        false => before_removal(
            cell,
            Some(&inv),
            &kvnos,
            &left,
            None,
            Some(entry.changed),
            o.dry_run,
            o.restarts,
            o.warn,
        )?,
    };
    let pruned = |keys| Pruned {
        entry: entry.clone(),
        keys,
        upclients: restarted.clone(),
        restarts: restarts.clone(),
    };
    if o.dry_run || doomed.is_empty() {
        return Ok(pruned(doomed));
    }
    let ids: Vec<_> = doomed.iter().map(|k| k.id).collect();
    let (removed, _) = cell.control.edit(|set| {
        Ok(ids
            .iter()
            .filter_map(|id| set.remove(id))
            .collect::<Vec<_>>())
    })?;
    audit(cell, "prune", &format!("removed {}", describe(&removed)))?;
    Ok(pruned(removed))
}

/// `prune [--dry-run] [--restart-upclients]`.
pub fn prune(paths: &CellPaths, mut o: PruneOptions) -> Result<PruneReport, Error> {
    let cell = paths.open()?;
    let dry_run = o.dry_run;
    let now = Utc::now();
    let p = prune_keys(&cell, now, &mut o)?;
    let pushed_to = if dry_run || p.keys.is_empty() {
        vec![]
    } else {
        sync_after_edit(&cell, &Target::Control)?
    };
    // Last, once every server has lost them: the KDC's old keys (also what an earlier
    // prune cut short left).
    let kdc = {
        let _lock = cell.state.lock(true)?;
        let leaving: Vec<i32> = p.keys.iter().map(|k| k.kvno()).collect();
        super::purge::old_kdc_keys(&cell, &p.entry, &leaving, dry_run, now, o.warn)?
    };
    Ok(PruneReport {
        dry_run,
        removed: KeyView::all(&p.keys),
        pushed_to,
        restarted: p.upclients,
        restarts: p.restarts,
        kdc,
    })
}

/// The kvnos the control machine holds now (none when unreadable).
pub fn control_kvnos(cell: &Cell) -> Vec<i32> {
    cell.control
        .read()
        .map(|s| s.keys.iter().map(|k| k.kvno()).collect())
        .unwrap_or_default()
}

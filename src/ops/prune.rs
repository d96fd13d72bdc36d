//! `prune`: remove every key whose grace has ended (never the current or incoming key, never
//! a key of unknown role), logged, then copied to the other servers.

use super::edit::{audit, describe, preflight, sync_after_edit, Target};
use super::upclient::{removal_lockouts, restart_locked};
use super::{CellPaths, KeyView, Warn};
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
    /// What the operator must do next, when a removed kvno was below a kvno still held.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after_removal: Option<AfterRemoval>,
}

/// After removing a kvno that a newer kvno replaced: OpenAFS server processes started before
/// the newer kvno arrived made their own server-to-server tickets (ubik between database
/// servers, the fileserver's vlserver registration, upclient) once, at start, with the
/// highest kvno they had then, and never make new ones; their next new authentication with
/// the removed kvno fails ("ticket contained unknown key version number") until they are
/// restarted. See docs/rotation.md, "After a removal".
#[derive(Debug, Clone, Serialize)]
pub struct AfterRemoval {
    /// The kvnos removed below the newest kvno held.
    pub removed_kvnos: Vec<i32>,
    /// The newest kvno still held.
    pub newest_kvno: i32,
    /// One `bos restart` per server machine (database servers one at a time).
    pub restart: Vec<String>,
    /// The advice in words.
    pub note: String,
}

/// What to do after `removed` left a machine whose kvnos are now `left`; `None` when no
/// removed kvno is below a kvno still held (no newer kvno replaced it).
pub fn after_removal(cell: &Cell, removed: &[Key], left: &[i32]) -> Option<AfterRemoval> {
    let newest = left.iter().copied().max()?;
    let mut kvnos: Vec<i32> = removed
        .iter()
        .map(|k| k.kvno())
        .filter(|&k| k < newest)
        .collect();
    kvnos.dedup();
    if kvnos.is_empty() {
        return None;
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host = match host.trim() {
        "" => crate::cell::CONTROL.to_string(),
        h => h.to_string(),
    };
    let restart = std::iter::once(host)
        .chain(cell.servers.iter().map(|s| s.name().to_string()))
        .map(|h| format!("bos restart {h} -all -localauth"))
        .collect();
    let list = kvnos
        .iter()
        .map(|k| k.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let note = format!(
        "kvno {list} removed: restart the OpenAFS server processes that started before kvno \
         {newest} was on every server (they make their own server-to-server tickets once, at \
         start, with the newest kvno they had then; with it gone their next new connection \
         fails with \"ticket contained unknown key version number\"); run on each server, \
         database servers one at a time, checking quorum with `udebug <server> 7002` (ptserver) \
         and 7003 (vlserver) in between:"
    );
    Some(AfterRemoval {
        removed_kvnos: kvnos,
        newest_kvno: newest,
        restart,
        note,
    })
}

/// How `prune` runs.
pub struct PruneOptions<'a> {
    /// Say what would be removed, change nothing.
    pub dry_run: bool,
    /// In an Update Server cell, restart the upclients the removal would lock out (and wait
    /// until they have fetched) instead of refusing.
    pub restart_upclients: bool,
    pub warn: Warn<'a>,
}

/// The removable keys, removed unless `dry_run`; with the upclients restarted first.
pub fn prune_keys(
    cell: &Cell,
    now: DateTime<Utc>,
    o: &mut PruneOptions,
) -> Result<(Vec<Key>, Vec<String>), Error> {
    if !o.dry_run {
        preflight(cell)?;
    }
    let _lock = cell.state.lock(true)?;
    if !o.dry_run {
        cell.inventory_for_change("prune")?;
    }
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
    if o.dry_run || doomed.is_empty() {
        return Ok((doomed, restarted));
    }
    let ids: Vec<_> = doomed.iter().map(|k| k.id).collect();
    let (removed, _) = cell.control.edit(|set| {
        Ok(ids
            .iter()
            .filter_map(|id| set.remove(id))
            .collect::<Vec<_>>())
    })?;
    audit(cell, "prune", &format!("removed {}", describe(&removed)))?;
    Ok((removed, restarted))
}

/// `prune [--dry-run] [--restart-upclients]`.
pub fn prune(paths: &CellPaths, mut o: PruneOptions) -> Result<PruneReport, Error> {
    let cell = paths.open()?;
    let dry_run = o.dry_run;
    let (keys, restarted) = prune_keys(&cell, Utc::now(), &mut o)?;
    let pushed_to = if dry_run || keys.is_empty() {
        vec![]
    } else {
        sync_after_edit(&cell, &Target::Control)?
    };
    let after = match dry_run {
        true => None,
        false => after_removal(&cell, &keys, &control_kvnos(&cell)),
    };
    Ok(PruneReport {
        dry_run,
        removed: KeyView::all(&keys),
        pushed_to,
        restarted,
        after_removal: after,
    })
}

/// The kvnos the control machine holds now (none when unreadable).
pub fn control_kvnos(cell: &Cell) -> Vec<i32> {
    cell.control
        .read()
        .map(|s| s.keys.iter().map(|k| k.kvno()).collect())
        .unwrap_or_default()
}

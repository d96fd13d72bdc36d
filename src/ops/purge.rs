//! The end of a key's life in the KDC: `cpw -keepold` keeps every old key of the afs
//! principal, so once no server holds a kvno any more (and its grace has ended), `prune`
//! purges it from the KDC, last, after the servers (MIT: `purgekeys -keepkvno`). The next
//! `prune` finishes a purge a crash left undone: what to purge is worked out afresh each
//! time from what the KDC and the servers hold. Never the current kvno, never one a server
//! holds, never one whose grace has not ended. Heimdal 7.8 cannot drop some kvnos and keep
//! the others: `prune` says so, naming the kvnos the KDC keeps.

use super::Warn;
use crate::authdb::AfsEntry;
use crate::cell::Cell;
use crate::error::Error;
use crate::policy::{role, Role};
use chrono::{DateTime, Utc};
use serde::Serialize;

/// What `prune` did with the KDC's old keys.
#[derive(Debug, Clone, Serialize)]
pub struct KdcPurge {
    /// The kvnos the KDC held below the oldest kvno still in use, with their grace over.
    pub kvnos: Vec<i32>,
    /// Purged now (false in a dry run, and where the KDC cannot).
    pub purged: bool,
    /// The kvnos the KDC holds afterwards, highest first.
    pub kdc_holds: Vec<i32>,
    /// Not purged, and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why_not: Option<String>,
}

/// The KDC's kvnos that no server holds and whose grace is over: purged unless `dry_run`.
/// `entry`: the afs entry as the prune read it (a prune never changes it). `leaving`: kvnos
/// this prune removes from the servers (a dry run counts them as gone). `None`: the backend
/// has no KDC, or nothing to purge. The other servers are read only when the control
/// machine's own kvnos leave something to purge (they can only hold more).
pub fn old_kdc_keys(
    cell: &Cell,
    entry: &AfsEntry,
    leaving: &[i32],
    dry_run: bool,
    now: DateTime<Utc>,
    warn: Warn,
) -> Result<Option<KdcPurge>, Error> {
    let Some(kdc) = &entry.kdc else {
        return Ok(None);
    };
    let below = |oldest: i32| -> Vec<i32> {
        let mut v: Vec<i32> = kdc.kvnos.iter().copied().filter(|k| *k < oldest).collect();
        v.sort_unstable();
        v
    };
    let oldest = |held: Vec<i32>| -> i32 {
        (held.into_iter())
            .filter(|k| !leaving.contains(k))
            .chain([entry.kvno])
            .min()
            .unwrap_or(entry.kvno)
    };
    let here = oldest(afs_kvnos(&cell.control.read()?.keys));
    if below(here).is_empty() {
        return Ok(None);
    }
    let oldest_in_use = match server_kvnos(cell) {
        Ok(v) => oldest(v).min(here),
        Err(why) => {
            return Ok(Some(KdcPurge {
                kvnos: below(here),
                purged: false,
                kdc_holds: kdc.kvnos.clone(),
                why_not: Some(why),
            }))
        }
    };
    let state = cell.state.load()?;
    // Below the oldest kvno in use, and removable (grace over) by the policy.
    let not_done = kdc
        .kvnos
        .iter()
        .copied()
        .filter(|k| *k < oldest_in_use)
        .find(|k| role(*k, Some(entry), &state, &cell.policy, now) != Role::Removable);
    let keep_from = not_done.map_or(oldest_in_use, |k| k.min(oldest_in_use));
    let old = below(keep_from);
    if old.is_empty() {
        return Ok(None);
    }
    let p = KdcPurge {
        kvnos: old,
        purged: false,
        kdc_holds: kdc.kvnos.clone(),
        why_not: None,
    };
    if dry_run {
        return Ok(Some(p));
    }
    purge_now(cell, p, keep_from, warn).map(Some)
}

/// Purge below `keep_from` (what `p` names), logged; or say why the KDC cannot.
fn purge_now(cell: &Cell, mut p: KdcPurge, keep_from: i32, warn: Warn) -> Result<KdcPurge, Error> {
    match cell.authdb.purge_below(keep_from)? {
        crate::authdb::Purge::Done(held) => {
            p.purged = true;
            p.kdc_holds = held;
            super::edit::audit(
                cell,
                "prune",
                &format!(
                    "purged kvno {} from {} (it holds kvno {} now)",
                    list(&p.kvnos),
                    cell.authdb.describe(),
                    list(&p.kdc_holds)
                ),
            )?;
        }
        crate::authdb::Purge::Cannot(why) => {
            warn(&format!(
                "{} still holds kvno {}, which no server holds: {why}",
                cell.authdb.describe(),
                list(&p.kvnos)
            ));
            p.why_not = Some(why);
        }
    }
    Ok(p)
}

/// The afs kvnos of a key set (not rxgk's, not the kvno 999 password entry).
fn afs_kvnos(set: &crate::keys::KeySet) -> Vec<i32> {
    set.iter()
        .filter(|k| k.key_type() != crate::keys::KeyType::Rxgk)
        .map(|k| k.kvno())
        .filter(|k| *k != crate::keys::BCRYPT_KVNO)
        .collect()
}

/// Every afs kvno the other servers hold; `Err`: why that cannot be known (a server
/// unreadable, or servers fed by the Update Server, not read here).
fn server_kvnos(cell: &Cell) -> Result<Vec<i32>, String> {
    if cell.upserver.is_some() {
        return Err(
            "in an Update Server cell afskeys does not read the upclients' keys, \
                    so it cannot know that none still holds them"
                .into(),
        );
    }
    let servers = cell.other_servers();
    let mut v = Vec::new();
    for (name, r) in crate::fleet::fanout::read_all(&servers, cell.parallel) {
        match r {
            Ok(set) => v.extend(afs_kvnos(&set)),
            Err(e) => return Err(format!("{name} could not be read ({})", e.message)),
        }
    }
    Ok(v)
}

fn list(v: &[i32]) -> String {
    v.iter()
        .map(|k| k.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

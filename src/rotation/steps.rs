//! The steps of a rotation after its plan, walked from wherever the journal says it stopped:
//! add the new key on the control machine → make every server hold it → set the afs entry
//! (only when every machine holds it) → start the old key's grace. Each step saves the
//! journal before the next begins; a failure saves where it stopped and says how to go on.

use super::error::{audit, entry, save, RotateError};
use super::Machines;
use crate::cell::Cell;
use crate::checksum::{checksums_text, key_checksum};
use crate::fleet::{self, KeyFiles};
use crate::journal::{Rotation, State, Step};
use crate::keys::Key;
use crate::store::{ops, StoreError};
use crate::time::fmt_time;
use chrono::{DateTime, Utc};
use zeroize::Zeroizing;

/// What a finished rotation did.
#[derive(Debug, Clone)]
pub struct Report {
    pub kvno: i32,
    pub old_kvno: Option<i32>,
    pub checksums: Vec<(i32, Option<u32>)>,
    pub servers: Vec<String>,
    pub activated: DateTime<Utc>,
}

/// Called after each step is saved (tests use it to crash or fail between steps).
pub type Hook<'a> = &'a mut dyn FnMut(Step);

/// Walk the remaining steps, reading the servers through `m` (one read each per command).
pub(super) fn run(
    cell: &Cell,
    m: &Machines,
    mut st: State,
    hook: Hook,
) -> Result<Report, RotateError> {
    let r = st.rotation.as_ref().expect("rotation in progress").clone();
    let keys = r.keys()?;
    let mut step = reestablish(cell, m, &r, &keys).map_err(|e| interrupted(e, &r, r.step))?;
    loop {
        step = match step {
            Step::Planned => add(cell, &mut st, &keys),
            Step::Added => match &cell.upserver {
                Some(up) => super::fetch::distribute(cell, &mut st, &keys, up),
                None => distribute(cell, m, &mut st, &keys),
            },
            Step::Distributed => activate(cell, m, &mut st, &r, &keys),
            Step::Activated => {
                // The proof's own message says the entry moved and what to do.
                super::proof::after_activation(cell, &m.all(), &mut st, r.kvno)?;
                return finish(cell, &mut st, &keys).map_err(|e| interrupted(e, &r, step));
            }
        }
        .map_err(|e| interrupted(e, &r, step))?;
        hook(step);
    }
}

/// A failure inside a step says that a rotation is now in progress, where its journal is,
/// and whether the afs entry already moved (a stop the steps explain themselves is kept).
fn interrupted(e: RotateError, r: &Rotation, step: Step) -> RotateError {
    if matches!(e, RotateError::Stopped(_) | RotateError::Refused(_)) {
        return e;
    }
    let moved = step >= Step::Activated;
    RotateError::Interrupted {
        kvno: r.kvno,
        step: step.name(),
        moved: if moved {
            ", and the afs entry already uses it"
        } else {
            ""
        },
        undo: if moved {
            ""
        } else {
            ", or `afskeys rotate --abort` to undo it"
        },
        source: Box::new(e),
    }
}

/// Before acting on the journal, re-establish every fact its step claims, and return the
/// step to go on from: the control machine holds the new keys (else redo the add); at
/// "distributed", every server still holds them (else distribute again: a server whose conf
/// dir was corrected after a stop); after activation, the afs entry is at the new kvno (else
/// redo the activation, whose guard checks every server again). The add step, redone on keys
/// already there, bumps CellServDB again, so a crash between the rename and the bump still
/// reaches running servers.
fn reestablish(cell: &Cell, m: &Machines, r: &Rotation, keys: &[Key]) -> Result<Step, RotateError> {
    let mut step = r.step;
    if step >= Step::Added && !fleet::holds(&cell.control.read()?.keys, keys) {
        step = Step::Planned;
    }
    if step == Step::Distributed && !fleet::lacking(&m.others(), keys).is_empty() {
        step = Step::Added;
    }
    if step == Step::Activated && entry(cell)?.is_none_or(|e| e.kvno != r.kvno) {
        step = Step::Distributed;
    }
    if step != r.step {
        audit(
            cell,
            "rotate --resume",
            &format!(
                "the journal says step {}, but {}; going on from step {}",
                r.step.name(),
                match step {
                    Step::Planned => "the control machine lacks the new keys",
                    Step::Added => "a server lacks the new keys",
                    _ => "the afs entry is not at the new kvno",
                },
                step.name()
            ),
        )?;
    }
    Ok(step)
}

/// Step 2: the new keys on the control machine.
fn add(cell: &Cell, st: &mut State, keys: &[Key]) -> Result<Step, RotateError> {
    add_to_control(cell, keys)?;
    advance(cell, st, Step::Added, |_| {})
}

/// Step 3: every other server holds the new keys, confirmed by reading them back. A server
/// that holds them without the journal recording it confirmed gets CellServDB bumped (a
/// process cut between its rename and its bump, resumed).
fn distribute(
    cell: &Cell,
    m: &Machines,
    st: &mut State,
    keys: &[Key],
) -> Result<Step, RotateError> {
    let r = st.rotation.as_ref().expect("rotation in progress");
    let (kvno, confirmed) = (r.kvno, r.confirmed.clone());
    let control = cell.control.read()?;
    let files = KeyFiles::of(&control.keys);
    let d = fleet::distribute(
        &m.others(),
        &files,
        keys,
        &confirmed,
        cell.parallel,
        cell.progress.as_ref(),
    );
    if !d.missing.is_empty() {
        let why = format!("servers lack kvno {kvno}: {}", names(&d.missing));
        return Err(stopped(cell, st, Step::Added, d.missing, why));
    }
    advance(cell, st, Step::Distributed, |r| {
        r.confirmed = d.confirmed.clone();
        r.missing.clear();
    })
}

/// Step 4: the afs entry set to the new keys — only when every machine holds them.
fn activate(
    cell: &Cell,
    m: &Machines,
    st: &mut State,
    r: &Rotation,
    keys: &[Key],
) -> Result<Step, RotateError> {
    let kvno = r.kvno;
    // The order's guard, checked at the moment it matters: every machine holds it. Within
    // one command a server's keys are those distribute confirmed moments before on the same
    // connection (`fleet::memo` says why that is the same guarantee); after a resume, a
    // fresh read.
    let mut lacking = fleet::lacking(&m.all(), keys);
    if let Some(up) = &cell.upserver {
        lacking.extend(super::fetch::not_fetched(cell, up));
    }
    if !lacking.is_empty() {
        let why = format!(
            "refusing to set the afs entry: {} lack kvno {kvno}",
            names(&lacking)
        );
        return Err(stopped(cell, st, Step::Added, lacking, why));
    }
    // The cell's machines again, at the moment it matters: one that joined the CellServDB
    // or the VLDB since the rotation began lacks the new key as surely as a configured one.
    let inv = crate::inventory::gather(&cell.inventory);
    if let Some(refusal) = inv.refusal() {
        let why = format!("refusing to set the afs entry: {refusal}");
        return Err(stopped(cell, st, Step::Distributed, vec![], why));
    }
    // Then the running servers: each process takes a token of the new kvno.
    let refused = super::alive::failures(&super::alive::prove(cell, &inv, kvno)?);
    if !refused.is_empty() {
        let why = format!(
            "refusing to set the afs entry: running servers refused kvno {kvno}: {}",
            names(&refused)
        );
        return Err(stopped(cell, st, Step::Distributed, refused, why));
    }
    let cur = entry(cell)?;
    let already = match &cur {
        Some(e) if e.kvno == kvno => entry_holds(cell, e, keys),
        _ => false,
    };
    let now = recorded_now(st, cur.as_ref());
    if !already {
        let pp = r
            .passphrase
            .as_ref()
            .map(|p| Zeroizing::new(p.clone().into_bytes()));
        if let Err(e) = cell
            .authdb
            .set(kvno, keys, pp.as_ref().map(|p| p.as_slice()), now)
        {
            let why = format!("setting the afs entry failed: {e}");
            return Err(stopped(cell, st, Step::Distributed, vec![], why));
        }
        crate::store::atomic::crash_point("after-authdb-set");
    }
    audit(
        cell,
        "rotate",
        &format!(
            "afs entry set to kvno {kvno} cksum {}",
            checksums_text(keys)
        ),
    )?;
    advance(cell, st, Step::Activated, |r| {
        r.activated = Some(now);
        r.passphrase = None;
    })
}

/// The afs entry, already at this rotation's kvno, holds the rotation's keys: read back where
/// the backend gives key bytes; where it gives none (a KDC over kadmind), proven by a ticket
/// the KDC seals now, opened with them. A change the KDC applied while afskeys did not record
/// it (killed, or kadmin failing after the change) is then done, not a dead end: setting it
/// again would need the next kvno. Anything unproven is not ours: the set goes ahead and the
/// KDC refuses it, saying why.
fn entry_holds(cell: &Cell, e: &crate::authdb::AfsEntry, keys: &[Key]) -> bool {
    if crate::authdb::verify_entry(e, e.kvno, keys).is_ok() {
        return true;
    }
    if !e.keys.is_empty() {
        return false;
    }
    matches!(
        cell.authdb.prove_tickets(&[("the rotation's keys", keys)]),
        Ok(Some(p)) if p.kvno == e.kvno && p.all_opened()
    )
}

/// Now, or the latest time the journal or the afs entry records if the clock is behind it:
/// the activation (where the old key's grace starts) is never dated into the past.
fn recorded_now(st: &State, cur: Option<&crate::authdb::AfsEntry>) -> chrono::DateTime<Utc> {
    let latest = st.latest_recorded().max(cur.map(|e| e.changed));
    crate::policy::recorded_now(Utc::now(), latest)
}

/// Step 5: the old key's grace starts; the journal forgets the rotation.
fn finish(cell: &Cell, st: &mut State, keys: &[Key]) -> Result<Report, RotateError> {
    let r = st.rotation.take().expect("rotation in progress");
    let kvno = r.kvno;
    let activated = r.activated.unwrap_or_else(Utc::now);
    if let Some(old) = r.old_kvno {
        if old != kvno {
            st.retire(old, activated);
        }
    }
    st.last_rotation = Some(activated);
    save(cell, st)?;
    let old = match r.old_kvno {
        Some(o) => format!("kvno {o} retiring from {}", fmt_time(activated)),
        None => "no old key".into(),
    };
    audit(cell, "rotate", &format!("done: kvno {kvno} current; {old}"))?;
    Ok(Report {
        kvno,
        old_kvno: r.old_kvno,
        checksums: keys
            .iter()
            .map(|k| (k.id.subtype, key_checksum(k)))
            .collect(),
        servers: super::fetch::every_server(cell),
        activated,
    })
}

/// "name (why); name (why)".
pub(super) fn names(v: &[(String, String)]) -> String {
    fleet::group_by_reason(v)
}

/// Save that the rotation stopped after `step` (with the servers that lack the key) and say
/// how to go on.
pub(super) fn stopped(
    cell: &Cell,
    st: &mut State,
    step: Step,
    missing: Vec<(String, String)>,
    why: String,
) -> RotateError {
    let r = st.rotation.as_mut().expect("rotation in progress");
    r.step = step;
    r.missing = missing;
    r.updated = Utc::now();
    let kvno = r.kvno;
    let saved = save(cell, st);
    let _ = audit(
        cell,
        "rotate",
        &format!("stopped at kvno {kvno} step {}: {why}", step.name()),
    );
    let now_at = match cell.authdb.get() {
        Ok(Some(e)) => format!("the afs entry is at kvno {}", e.kvno),
        Ok(None) => "the afs entry does not exist yet".to_string(),
        Err(e) => format!("the afs entry could not be read back ({e})"),
    };
    match saved {
        Err(e) => e,
        Ok(()) => RotateError::Stopped(format!(
            "rotation to kvno {kvno} stopped after step \"{}\": {why}; {now_at}. Fix it and \
             run `afskeys rotate --resume` (or `--abort` to undo)",
            step.name()
        )),
    }
}

/// Save the journal at `next` (after `edit`), returning `next`.
pub(super) fn advance(
    cell: &Cell,
    st: &mut State,
    next: Step,
    edit: impl FnOnce(&mut Rotation),
) -> Result<Step, RotateError> {
    let r = st.rotation.as_mut().expect("rotation in progress");
    r.step = next;
    r.updated = Utc::now();
    edit(r);
    save(cell, st)?;
    Ok(next)
}

/// Put the new keys on the control machine; already there (a resumed step) is fine.
fn add_to_control(cell: &Cell, keys: &[Key]) -> Result<(), RotateError> {
    let snap = cell.control.read()?;
    if fleet::holds(&snap.keys, keys) {
        // A resumed step: the process that added them may have died before the bump.
        crate::store::atomic::bump_cellservdb(cell.control.path())?;
        return Ok(());
    }
    match ops::add_keys(&cell.control, keys.to_vec(), false, None) {
        Ok(_) => Ok(()),
        Err(StoreError::Failed(m)) => Err(RotateError::Stopped(format!(
            "{m}: the control machine holds a different key at that kvno; \
             `afskeys rotate --abort` and start again"
        ))),
        Err(e) => Err(RotateError::Store(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_inside_a_step_says_a_rotation_is_in_progress() {
        let now = Utc::now();
        let r = Rotation {
            started: now,
            updated: now,
            step: Step::Added,
            kvno: 7,
            key_type: "rxkad_krb5".into(),
            keys: vec![],
            passphrase: None,
            old_kvno: Some(6),
            confirmed: vec![],
            missing: vec![],
            activated: None,
        };
        let e = interrupted(RotateError::Failed("disk full".into()), &r, Step::Added);
        assert_eq!(
            e.to_string(),
            "disk full; a rotation to kvno 7 is now in progress (its journal is at step \
             added): fix the cause and run `afskeys rotate --resume`, or `afskeys rotate \
             --abort` to undo it"
        );
        let e = interrupted(RotateError::Failed("x".into()), &r, Step::Activated);
        assert!(e
            .to_string()
            .contains("at step activated, and the afs entry already uses it)"));
        assert!(!e.to_string().contains("--abort"));
        let e = interrupted(RotateError::Stopped("s".into()), &r, Step::Added);
        assert_eq!(e.to_string(), "s");
    }
}

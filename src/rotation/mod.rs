//! The ordered key change. `rotate` walks: choose the next kvno and a new key (`plan`) → add
//! it on the control machine → make every configured server hold it (checksums confirmed) →
//! only then set the afs entry → start the old key's grace (`steps`). Each completed step is
//! saved in the journal (`crate::journal`) before the next begins, so a crash or failure is
//! finished by `resume` or undone by `abort`. The auth DB is never set while any server
//! lacks the new key.

pub mod alive;
mod error;
mod fetch;
mod machines;
mod plan;
pub mod proof;
pub mod status;
mod steps;

pub use error::RotateError;
pub(crate) use machines::Machines;
pub use plan::{Plan, RotateOptions, MAX_ROTATION_KVNO};
pub use steps::{Hook, Report};

use crate::cell::Cell;
use crate::checksum::checksums_text;
use crate::fleet::{self, fanout, KeyFiles};
use crate::journal::{Rotation, Step};
use crate::keys::Key;
use crate::time::fmt_time;
use error::{audit, entry, load, lock, preflight, save};

/// `--dry-run`: the plan, the inventory a rotation would be judged by, and why the rotation
/// would be refused (an unaccounted machine, a running-server proof that cannot be made);
/// nothing changed.
pub fn dry_run(cell: &Cell, opts: &RotateOptions) -> Result<DryRun, RotateError> {
    if let Some(r) = load(cell)?.rotation {
        return Err(in_progress(&r));
    }
    let plan = plan::plan(cell, &cell.all_servers(), opts).map(|(p, _)| p)?;
    let inventory = crate::inventory::gather(&cell.inventory);
    let refused = inventory.refusal().or_else(|| alive::cannot_ask(cell));
    Ok((plan, inventory, refused))
}

/// The plan, the inventory, and why a rotation would be refused.
pub type DryRun = (Plan, crate::inventory::Inventory, Option<String>);

/// The running-server proof can be made from here (or was turned off), before a rotation
/// changes anything.
fn proof_possible(cell: &Cell) -> Result<(), RotateError> {
    alive::cannot_ask(cell).map_or(Ok(()), |why| Err(RotateError::Refused(why)))
}

/// Every machine the cell names accounted for, before the rotation changes anything (see
/// `Cell::inventory_for_change`).
fn inventory(cell: &Cell, command: &str) -> Result<crate::inventory::Inventory, RotateError> {
    cell.inventory_for_change(command).map_err(|e| match e {
        crate::cell::CellError::Inventory(why) => RotateError::Refused(why),
        e => RotateError::Failed(e.to_string()),
    })
}

fn in_progress(r: &Rotation) -> RotateError {
    RotateError::Refused(format!(
        "a rotation to kvno {} is in progress (step {} since {}): finish it with \
         `afskeys rotate --resume` or undo it with `afskeys rotate --abort`",
        r.kvno,
        r.step.name(),
        fmt_time(r.updated)
    ))
}

/// Start and run a new rotation.
pub fn rotate(cell: &Cell, opts: &RotateOptions, hook: Hook) -> Result<Report, RotateError> {
    preflight(cell)?;
    let _lock = lock(cell)?;
    let mut st = load(cell)?;
    if let Some(r) = &st.rotation {
        return Err(in_progress(r));
    }
    inventory(cell, "rotate")?;
    proof_possible(cell)?;
    // One read of each server for the whole command (see `fleet::memo`).
    let machines = Machines::of(cell);
    let (plan, rotation) = plan::plan(cell, &machines.all(), opts)?;
    let keys = rotation.keys()?;
    st.rotation = Some(rotation);
    save(cell, &st)?;
    audit(
        cell,
        "rotate",
        &format!(
            "planned kvno {} ({}) cksum {}",
            plan.kvno,
            plan.key_type,
            checksums_text(&keys)
        ),
    )?;
    hook(Step::Planned);
    steps::run(cell, &machines, st, hook)
}

/// Finish the rotation in progress from the step its journal reached.
pub fn resume(cell: &Cell, hook: Hook) -> Result<Report, RotateError> {
    preflight(cell)?;
    let _lock = lock(cell)?;
    let st = load(cell)?;
    let Some(r) = &st.rotation else {
        return Err(RotateError::Failed(
            "no rotation in progress to resume".into(),
        ));
    };
    if r.step < Step::Activated {
        inventory(cell, "rotate --resume")?;
        proof_possible(cell)?;
    }
    audit(
        cell,
        "rotate --resume",
        &format!("kvno {} from step {}", r.kvno, r.step.name()),
    )?;
    // A new process: the first read of every server is real.
    steps::run(cell, &Machines::of(cell), st, hook)
}

/// Undo a rotation that has not set the afs entry: take the new key off the control machine
/// and off every server that got it. Returns warnings for servers that could not be cleaned
/// (they keep a key no token uses).
pub fn abort(cell: &Cell) -> Result<Vec<String>, RotateError> {
    preflight(cell)?;
    let _lock = lock(cell)?;
    let mut st = load(cell)?;
    let Some(r) = st.rotation.clone() else {
        return Err(RotateError::Failed(
            "no rotation in progress to abort".into(),
        ));
    };
    let keys = r.keys()?;
    let cur = entry(cell)?;
    if r.step >= Step::Activated || cur.as_ref().is_some_and(|e| e.kvno == r.kvno) {
        return Err(RotateError::Refused(format!(
            "the afs entry already uses kvno {}: tokens are being sealed with it, so it cannot \
             be undone; finish with `afskeys rotate --resume`",
            r.kvno
        )));
    }
    remove_from_control(cell, &keys)?;
    let warnings = remove_from_servers(cell, &keys, r.kvno)?;
    st.rotation = None;
    save(cell, &st)?;
    audit(
        cell,
        "rotate --abort",
        &format!("kvno {} undone at step {}", r.kvno, r.step.name()),
    )?;
    Ok(warnings)
}

/// Abort, part one: the new keys off the control machine, if there.
fn remove_from_control(cell: &Cell, keys: &[Key]) -> Result<(), RotateError> {
    let snap = cell.control.read()?;
    if fleet::holds(&snap.keys, keys) {
        cell.control.edit(|set| {
            for k in keys {
                set.remove(&k.id);
            }
            Ok(())
        })?;
    }
    Ok(())
}

/// Abort, part two: every server holding a new key gets the control machine's files back
/// (every server read at once, then those installed at once, each on its own). Returns a
/// warning for each server that could not be cleaned or read, in server order.
fn remove_from_servers(cell: &Cell, keys: &[Key], kvno: i32) -> Result<Vec<String>, RotateError> {
    let control = cell.control.read()?;
    let files = KeyFiles::of(&control.keys);
    let others = cell.other_servers();
    // (server index, warning): reported in server order, as when done one after another.
    let mut warnings = Vec::new();
    let mut holders = Vec::new();
    let mut held = Vec::new();
    let mut at = Vec::new();
    let read = fanout::read_all(&others, cell.parallel);
    for (i, (s, (name, r))) in others.iter().zip(read).enumerate() {
        match r {
            Ok(set)
                if keys
                    .iter()
                    .any(|k| set.get(&k.id).is_some_and(|h| h.bytes() == k.bytes())) =>
            {
                holders.push(*s);
                held.push(set);
                at.push(i);
            }
            Ok(_) => {}
            Err(e) => warnings.push((
                i,
                format!(
                    "{name}: could not be read ({}); if it got kvno {kvno}, that key is unused",
                    e.message,
                ),
            )),
        }
    }
    let installed = fanout::install_each(&holders, &files, &held, cell.parallel);
    for (i, (name, r)) in at.into_iter().zip(installed) {
        if let Err(e) = r {
            warnings.push((i, format!("{name}: still holds kvno {kvno}: {}", e.message)));
        }
    }
    warnings.sort_by_key(|(i, _)| *i);
    Ok(warnings.into_iter().map(|(_, w)| w).collect())
}

/// The invariant: the afs entry's kvno and keys are on every server. Returns the violations.
pub fn invariant_violations(cell: &Cell) -> Result<Vec<(String, String)>, RotateError> {
    match entry(cell)? {
        None => Ok(vec![]),
        // `held_by`: the same bytes, or (when kadmind hides them) every enctype the KDC
        // holds at the entry's kvno.
        Some(e) => Ok(fleet::lacking_by(&cell.all_servers(), |set| e.held_by(set))),
    }
}

//! The rotation's proof from the running servers (`crate::running`), run once every
//! machine holds the new kvno and before the afs entry moves (and by `verify` and `check`
//! with the control machine's newest kvno): the database servers are the configured ones the
//! cell's CellServDB names, the file servers those the VLDB lists. A refusal stops the
//! rotation at step "distributed", resumably, naming the server, the process and what it
//! printed.

use super::error::{audit, RotateError};
use crate::cell::Cell;
use crate::inventory::Inventory;
use crate::running::{self, Proven};

/// The directories OpenAFS's own `bos -localauth` reads its keys from (Transarc, Debian).
const BOS_CONFDIRS: [&str; 2] = ["/usr/afs/etc", "/etc/openafs/server"];

/// Every target's result, audited; `Err` names what refused, for the stop message.
pub(super) fn prove(cell: &Cell, inv: &Inventory, kvno: i32) -> Result<Vec<Proven>, RotateError> {
    if let Some(why) = &cell.running.skipped {
        audit(
            cell,
            "rotate",
            &format!("running servers not asked before kvno {kvno} was set ({why})"),
        )?;
        return Ok(vec![]);
    }
    let spec = marked(cell, inv).map_err(|why| RotateError::Refused(refusal(&why)))?;
    let results = running::prove(&spec, kvno);
    audit(cell, "rotate", &summary(&results, kvno))?;
    Ok(results)
}

/// Why a rotation cannot make the proof from here (checked before it changes anything); none
/// when the operator turned the proof off.
pub(super) fn cannot_ask(cell: &Cell) -> Option<String> {
    if cell.running.skipped.is_some() {
        return None;
    }
    not_bos_confdir(cell).map(|why| refusal(&why))
}

fn refusal(why: &str) -> String {
    format!(
        "the running servers cannot be asked: {why}; run afskeys with that conf dir, or go on \
         without this proof with --skip-running-proof (recorded in the audit log)"
    )
}

/// The control machine's conf dir is not one `bos -localauth` reads: why.
fn not_bos_confdir(cell: &Cell) -> Option<String> {
    let mine = std::fs::canonicalize(cell.control.path()).unwrap_or_default();
    if BOS_CONFDIRS.iter().any(|d| std::path::Path::new(d) == mine) {
        return None;
    }
    Some(format!(
        "`bos -localauth` takes its key from {} or {}, not from {}",
        BOS_CONFDIRS[0],
        BOS_CONFDIRS[1],
        cell.control.path().display()
    ))
}

/// Whom to ask and what each machine runs, from the cell's inventory: a configured machine
/// its CellServDB lists is a database server (asked at that address), one the VLDB lists a
/// file server. `Err`: the proof cannot be made from this control machine, and why.
pub(crate) fn marked(cell: &Cell, inv: &Inventory) -> Result<running::Spec, String> {
    if let Some(why) = not_bos_confdir(cell) {
        return Err(why);
    }
    let mut spec = cell.running.clone();
    for t in &mut spec.targets {
        let mine = inv
            .machines
            .iter()
            .filter(|m| m.by.as_deref() == Some(&t.name));
        for m in mine {
            let listed = |what: &str| m.found_in.iter().any(|f| f.starts_with(what));
            if listed("CellServDB") && t.db.is_none() {
                t.db = m.addrs.first().cloned();
            }
            t.fs |= listed("VLDB");
        }
    }
    Ok(spec)
}

/// One audit line: what each server proved, what failed, what was not asked.
pub(super) fn summary(results: &[Proven], kvno: i32) -> String {
    let parts: Vec<String> = results
        .iter()
        .map(|p| match (&p.not_asked, p.failed.is_empty()) {
            (Some(why), _) => format!("{}: not asked ({why})", p.server),
            (None, true) => format!("{}: {}", p.server, p.proven.join(", ")),
            (None, false) => format!("{}: FAILED {}", p.server, p.failed.join(", ")),
        })
        .collect();
    format!(
        "running servers asked with kvno {kvno}: {}",
        parts.join("; ")
    )
}

/// (server, what failed) for each server that did not prove it.
pub(super) fn failures(results: &[Proven]) -> Vec<(String, String)> {
    results
        .iter()
        .filter(|p| !p.failed.is_empty())
        .map(|p| (p.server.clone(), p.failed.join("; ")))
        .collect()
}

/// The running servers asked with the control machine's newest kvno (`verify`, `check`).
#[derive(Debug, Clone)]
pub enum Running {
    Asked {
        kvno: i32,
        results: Vec<Proven>,
    },
    /// The operator chose not to ask (`--skip-running-proof`).
    Skipped(String),
    /// They cannot be asked from here, and why.
    Cannot(String),
}

/// Ask every running server to accept the control machine's newest kvno, which is the one
/// `-localauth` seals with: the afs entry's kvno, except during a rotation.
pub fn ask_newest(cell: &Cell, inv: &Inventory) -> Running {
    if let Some(why) = &cell.running.skipped {
        return Running::Skipped(why.clone());
    }
    let spec = match marked(cell, inv) {
        Ok(s) => s,
        Err(why) => return Running::Cannot(why),
    };
    let newest = cell
        .control
        .read()
        .map_err(|e| e.to_string())
        .and_then(|s| {
            s.keys
                .max_afs_kvno()
                .ok_or_else(|| "the control machine holds no rxkad or rxkad_krb5 key".into())
        });
    match newest {
        Ok(kvno) => Running::Asked {
            kvno,
            results: running::prove(&spec, kvno),
        },
        Err(e) => Running::Cannot(format!("the newest kvno is unknown: {e}")),
    }
}

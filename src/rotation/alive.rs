//! The rotation's proof from the running servers (`crate::running`), run once every
//! machine holds the new kvno and before the afs entry moves: the database servers are the
//! configured ones the cell's CellServDB names. A refusal stops the rotation at step
//! "distributed", resumably, naming the server, the process and what it printed.

use super::error::{audit, RotateError};
use crate::cell::Cell;
use crate::running::{self, Proven};

/// The directories OpenAFS's own `bos -localauth` reads its keys from (Transarc, Debian).
const BOS_CONFDIRS: [&str; 2] = ["/usr/afs/etc", "/etc/openafs/server"];

/// Every target's result, audited; `Err` names what refused, for the stop message.
pub(super) fn prove(cell: &Cell, kvno: i32) -> Result<Vec<Proven>, RotateError> {
    if let Some(why) = &cell.running.skipped {
        audit(
            cell,
            "rotate",
            &format!("running servers not asked before kvno {kvno} was set ({why})"),
        )?;
        return Ok(vec![]);
    }
    let mine = std::fs::canonicalize(cell.control.path()).unwrap_or_default();
    if !BOS_CONFDIRS.iter().any(|d| std::path::Path::new(d) == mine) {
        return Err(RotateError::Refused(format!(
            "the running servers cannot be asked: `bos -localauth` takes its key from {} \
             or {}, not from {}; run afskeys with that conf dir, or go on without this proof \
             with --skip-running-proof (recorded in the audit log)",
            BOS_CONFDIRS[0],
            BOS_CONFDIRS[1],
            cell.control.path().display()
        )));
    }
    let mut spec = cell.running.clone();
    let db = db_servers(cell);
    for t in &mut spec.targets {
        t.db = db.contains(&t.name);
    }
    let results = running::prove(&spec, kvno);
    audit(cell, "rotate", &summary(&results, kvno))?;
    Ok(results)
}

/// The labels of the configured machines the cell's CellServDB lists.
fn db_servers(cell: &Cell) -> Vec<String> {
    let mut spec = cell.inventory.clone();
    spec.vldb = crate::inventory::VldbAsk::NotAsked("the database servers only".into());
    crate::inventory::gather(&spec)
        .machines
        .into_iter()
        .filter(|m| m.found_in.iter().any(|f| f.starts_with("CellServDB")))
        .filter_map(|m| m.by)
        .collect()
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

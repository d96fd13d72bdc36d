//! The restarts a removal needs (`crate::restarts`), planned, shown and run before `prune`
//! and `remove` take a kvno that a newer kvno replaced, while both keys are still present.
//! Run by afskeys where the control machine's `bos -localauth` can reach every machine;
//! with `--no-restart` (sites that restart by other means), or where bos cannot be used from
//! this conf dir, the plan is printed before the removal, never after it.

use super::Warn;
use crate::cell::Cell;
use crate::error::Error;
use crate::inventory::Inventory;
use crate::restarts::{self, Machine, Planned, Restarted};
use chrono::{DateTime, Utc};
use serde::Serialize;

/// Whether afskeys runs the restarts (`--no-restart` says no).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restarts {
    Run,
    Print,
}

/// The restarts of one removal.
#[derive(Debug, Clone, Serialize)]
pub struct RestartReport {
    /// The kvnos removed below the newest kvno held.
    pub for_kvnos: Vec<i32>,
    /// The newest kvno still held: restarted processes make their tickets with it.
    pub newest_kvno: i32,
    /// Did (or, in a dry run, would) afskeys run them? When not, `why_not` says why, and
    /// the operator must have made them before the removal.
    pub run: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why_not: Option<String>,
    pub plan: Vec<Planned>,
    /// What each restart did (empty in a dry run, or when not run).
    pub done: Vec<Restarted>,
}

/// The kvnos of `removing` below the newest of `left` (the kvnos held once they are gone),
/// and that newest; `None`: no newer kvno replaced them, so no restart is needed.
pub fn needed(removing: &[i32], left: &[i32]) -> Option<(Vec<i32>, i32)> {
    let newest = left.iter().copied().max()?;
    let mut below: Vec<i32> = removing.iter().copied().filter(|&k| k < newest).collect();
    below.sort_unstable();
    below.dedup();
    (!below.is_empty()).then_some((below, newest))
}

/// What a removal of `removing` (leaving `left`) on `only` (one server) or every machine
/// needs, run now unless `dry_run` or `how` is `Print`; `inv`: the cell's inventory when the
/// caller has it (gathered here when a restart is needed). `since`: when the newest kvno was on
/// every server (processes started after it need no restart). `Err`: a restart that stopped
/// the sequence, or a machine bos cannot reach; nothing has been removed.
#[allow(clippy::too_many_arguments)]
pub fn before_removal(
    cell: &Cell,
    inv: Option<&Inventory>,
    removing: &[i32],
    left: &[i32],
    only: Option<&str>,
    since: Option<DateTime<Utc>>,
    dry_run: bool,
    how: Restarts,
    warn: Warn,
) -> Result<Option<RestartReport>, Error> {
    let Some((for_kvnos, newest_kvno)) = needed(removing, left) else {
        return Ok(None);
    };
    let gathered;
    let inv = match inv {
        Some(i) => i,
        None => {
            gathered = crate::inventory::gather(&cell.inventory);
            &gathered
        }
    };
    let spec = restarts::Spec {
        bos: cell.running.bos.clone(),
        udebug: cell.running.udebug.clone(),
        deadline: cell.running.deadline,
        wait: cell.running.restart_wait,
        vos: cell.running.clone(),
    };
    let (ordered, why_not) = match (how, machines(cell, inv, only)) {
        (Restarts::Print, Ok(m) | Err((m, _))) => (
            restarts::order_offline(&m),
            Some("--no-restart".to_string()),
        ),
        (Restarts::Run, Ok(m)) => (restarts::order(&spec, &m), None),
        (Restarts::Run, Err((m, Why::NoBos(why)))) => (restarts::order_offline(&m), Some(why)),
        (Restarts::Run, Err((_, Why::Unreachable(why)))) => return Err(Error::refused(why)),
    };
    let report = RestartReport {
        for_kvnos,
        newest_kvno,
        run: why_not.is_none(),
        why_not,
        plan: restarts::plan(&ordered),
        done: vec![],
    };
    if let Some(why) = &report.why_not {
        // Printed before the removal; a dry run shows the plan in its own output.
        if !dry_run {
            warn(&printed(&report, why));
        }
        return Ok(Some(report));
    }
    if dry_run {
        return Ok(Some(report));
    }
    let since = since.unwrap_or(DateTime::<Utc>::MIN_UTC);
    run_plan(&spec, &ordered, since, report, warn).map(Some)
}

/// Run the restarts of `report`'s plan (machines `ordered`); `Err` names where they stopped.
fn run_plan(
    spec: &restarts::Spec,
    ordered: &[Machine],
    since: DateTime<Utc>,
    mut report: RestartReport,
    warn: Warn,
) -> Result<RestartReport, Error> {
    let warn = std::cell::RefCell::new(warn);
    let said = |s: &str| (warn.borrow_mut())(s);
    match restarts::run(spec, ordered, since, &said) {
        Ok(done) => {
            report.done = done;
            Ok(report)
        }
        Err(stop) => {
            let before: Vec<String> = (stop.done.iter())
                .filter(|d| d.seconds.is_some())
                .map(|d| d.server.clone())
                .collect();
            Err(Error::failed(format!(
                "the restarts before removing kvno {} stopped at {}: {}; restarted before \
                 it: {}",
                list(&report.for_kvnos),
                stop.server,
                stop.seen,
                if before.is_empty() {
                    "none".to_string()
                } else {
                    before.join(", ")
                },
            )))
        }
    }
}

/// Why the machines cannot all be restarted from here.
enum Why {
    /// This conf dir is not one `bos -localauth` reads: nothing can be restarted.
    NoBos(String),
    /// These machines have no host bos reaches.
    Unreachable(String),
}

/// The machines to restart: every machine bos can reach (the control machine, each
/// `[[servers]]` entry, each upclient), database servers marked by the inventory; or only
/// `only`. `Err((all, why))`: they cannot all be restarted from here, and why.
fn machines(
    cell: &Cell,
    inv: &Inventory,
    only: Option<&str>,
) -> Result<Vec<Machine>, (Vec<Machine>, Why)> {
    let (spec, bos_here) = match crate::rotation::alive::marked(cell, inv) {
        Ok(s) => (s, None),
        Err(why) => (cell.running.clone(), Some(why)),
    };
    let mut all = Vec::new();
    let mut unreachable = Vec::new();
    for t in spec
        .targets
        .iter()
        .filter(|t| only.is_none_or(|o| o == t.name))
    {
        let host = match &t.ask {
            Ok(h) => h.clone(),
            Err(why) => {
                unreachable.push(format!("{} ({why})", t.name));
                t.name.clone()
            }
        };
        all.push(Machine {
            name: t.name.clone(),
            host,
            db: t.db.clone(),
            fs: t.fs,
        });
    }
    if let Some(why) = bos_here {
        return Err((
            all,
            Why::NoBos(format!("bos cannot be used from here: {why}")),
        ));
    }
    if !unreachable.is_empty() {
        let why = format!(
            "cannot restart {} through bos; restart its OpenAFS server processes by other \
             means while both keys are present, then run again with --no-restart",
            unreachable.join(", ")
        );
        return Err((all, Why::Unreachable(why)));
    }
    Ok(all)
}

/// The plan as a warning, before the removal.
fn printed(r: &RestartReport, why: &str) -> String {
    let mut s = format!(
        "before kvno {} goes, the OpenAFS server processes that started before kvno {} was on \
         every server must be restarted, database servers one at a time with their quorum \
         checked in between (afskeys does not run them: {why}); unless already done:",
        list(&r.for_kvnos),
        r.newest_kvno
    );
    for p in &r.plan {
        s.push_str(&format!("\n  {}", p.command));
    }
    s
}

fn list(v: &[i32]) -> String {
    v.iter()
        .map(|k| k.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_kvno_below_one_still_held_needs_restarts() {
        assert_eq!(needed(&[1], &[2]), Some((vec![1], 2)));
        assert_eq!(needed(&[3, 1, 1], &[2]), Some((vec![1], 2)));
        assert_eq!(
            needed(&[3], &[2]),
            None,
            "the newest removed: nothing replaced it"
        );
        assert_eq!(needed(&[1], &[]), None);
    }
}

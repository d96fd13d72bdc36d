//! `push`: the control machine's KeyFile and KeyFileExt to every server (or one), staged
//! everywhere first, then renamed on all at once; refused when the files lack the afs entry's
//! key. It holds the cell lock from its read of the control machine to its last commit. A
//! full push is logged and remembered as what each server now holds.

use super::edit::entry_kept;
use super::servers::seen_record;
use super::CellPaths;
use crate::error::Error;
use crate::fleet::{self, KeyFiles, Server};
use serde::Serialize;

/// What a push did. The CLI reports failure when `ok` is false.
#[derive(Debug, Serialize)]
pub struct PushDone {
    /// Did phase two run (every server staged)?
    pub committed: bool,
    pub servers: Vec<PushedServer>,
    /// From the first rename to the last, in milliseconds.
    pub skew_ms: Option<f64>,
    pub seconds: f64,
    /// Every server staged and committed.
    #[serde(skip)]
    pub ok: bool,
}

#[derive(Debug, Serialize)]
pub struct PushedServer {
    pub name: String,
    pub ok: bool,
    pub error: Option<String>,
}

/// `push`: `None` when no other server is configured.
pub fn push(
    paths: &CellPaths,
    server: Option<&str>,
    progress: bool,
) -> Result<Option<PushDone>, Error> {
    let cell = paths.open()?;
    let targets: Vec<&dyn Server> = match server {
        Some(n) => vec![cell.find_server(n)?],
        None => cell.other_servers(),
    };
    if targets.is_empty() {
        return Ok(None);
    }
    cell.audit.preflight().map_err(Error::failed_by)?;
    // The cell lock from the read of the control machine's files to the last commit: no
    // rotation or edit can finish in between and be undone by this older copy.
    let _lock = cell.state.lock(true)?;
    let snap = cell.control.read()?;
    entry_kept(&cell, &snap.keys)?;
    let files = KeyFiles::of(&snap.keys);
    crate::store::atomic::pause_point("push:read");
    let report = fleet::fanout::push(
        &targets,
        &files,
        cell.parallel,
        (paths.progress)(progress).as_ref(),
    );
    let names: Vec<String> = report.servers.iter().map(|p| p.name.clone()).collect();
    let ok = report.ok();
    if ok {
        cell.audit
            .record("push", &format!("KeyFiles to {}", names.join(", ")))
            .map_err(Error::failed_by)?;
        // Every server now holds exactly what was pushed: no need to read them back.
        let held = fleet::seen::summary(&snap.keys);
        seen_record(
            &cell,
            names.iter().map(|n| (n.clone(), held.clone())).collect(),
        );
    }
    let servers = report
        .servers
        .iter()
        .map(|p| {
            let error = match (&p.staged, &p.committed) {
                (Err(e), _) | (Ok(()), Some(Err(e))) => Some(e.message.clone()),
                _ => None,
            };
            PushedServer {
                name: p.name.clone(),
                ok: error.is_none() && ok,
                error,
            }
        })
        .collect();
    Ok(Some(PushDone {
        committed: report.committed,
        servers,
        skew_ms: report.skew.map(|d| d.as_secs_f64() * 1000.0),
        seconds: report.total.as_secs_f64(),
        ok,
    }))
}

//! Proof by tickets for the whole cell: every machine's keys read, a real service ticket for
//! the afs principal opened with each (`AuthDb::prove_tickets`), and the enctypes the KDC
//! holds at the ticket's kvno compared with each server's. `verify --kdc` shows it, `check`
//! judges it, and `rotate` runs it after setting the afs entry and before it reports success.

use super::error::{audit, save, RotateError};
use crate::authdb::ticket::{Opening, TicketError, TicketProof};
use crate::authdb::AuthDbError;
use crate::cell::Cell;
use crate::fleet::{fanout, Server};
use crate::journal::State;
use crate::keys::{Enctype, Key, KeySet};
use chrono::Utc;
use serde::Serialize;

/// The cell's proof: the ticket's verdict on every machine that could be read, and the
/// machines that could not.
#[derive(Debug, Clone, Serialize)]
pub struct CellProof {
    #[serde(flatten)]
    pub proof: TicketProof,
    /// Machines whose keys could not be read (name, why): not proven.
    pub unreadable: Vec<(String, String)>,
}

impl CellProof {
    /// True when every machine was read, opened the ticket, and holds the KDC's enctypes.
    pub fn ok(&self) -> bool {
        self.problems().is_empty()
    }

    /// Each thing wrong, naming the server and the enctype (see [`Self::ticket_problems`]),
    /// then the machines that could not be read.
    pub fn problems(&self) -> Vec<String> {
        let mut out = self.ticket_problems();
        for (name, why) in &self.unreadable {
            out.push(format!("{name}: keys unreadable, not proven: {why}"));
        }
        out
    }

    /// On the machines read: a ticket that does not open, an enctype the KDC holds at the
    /// kvno that a server lacks, or one a server holds that the KDC lacks.
    pub fn ticket_problems(&self) -> Vec<String> {
        let p = &self.proof;
        let mut out = Vec::new();
        for s in &p.servers {
            if s.opening != Opening::Opened {
                out.push(format!(
                    "{}: the KDC's ticket (kvno {}, enctype {}) {}",
                    s.server,
                    p.kvno,
                    Enctype(p.enctype),
                    s.opening.describe()
                ));
            }
            if p.kdc_enctypes.is_empty() {
                continue;
            }
            let lacks: Vec<i32> = diff(&p.kdc_enctypes, &s.enctypes_held);
            if !lacks.is_empty() {
                out.push(format!(
                    "{}: lacks enctype {} at kvno {}, which the KDC holds",
                    s.server,
                    list(&lacks),
                    p.kvno
                ));
            }
            let extra: Vec<i32> = diff(&s.enctypes_held, &p.kdc_enctypes);
            if !extra.is_empty() {
                out.push(format!(
                    "{}: holds enctype {} at kvno {}, which the KDC lacks",
                    s.server,
                    list(&extra),
                    p.kvno
                ));
            }
        }
        out
    }
}

fn diff(a: &[i32], b: &[i32]) -> Vec<i32> {
    a.iter().filter(|e| !b.contains(e)).copied().collect()
}

fn list(v: &[i32]) -> String {
    v.iter()
        .map(|&e| Enctype(e).to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The proof for every machine of the cell (the control machine first). `Ok(None)` when the
/// backend cannot prove: it has no KDC (the file backend), or no admin keytab to get a
/// ticket with (`kadmin.local` alone; its key bytes are then compared directly).
pub fn prove(cell: &Cell) -> Result<Option<CellProof>, AuthDbError> {
    prove_on(cell, &cell.all_servers())
}

/// [`prove`] on these machines (as the calling command reads them).
fn prove_on(cell: &Cell, servers: &[&dyn Server]) -> Result<Option<CellProof>, AuthDbError> {
    let sets: Vec<(String, Result<KeySet, String>)> = fanout::read_all(servers, cell.parallel)
        .into_iter()
        .map(|(n, r)| (n, r.map_err(|e| e.message)))
        .collect();
    prove_sets(cell, &sets)
}

/// [`prove`] with every machine's keys already read (`(name, keys or why not)`).
pub fn prove_sets(
    cell: &Cell,
    sets: &[(String, Result<KeySet, String>)],
) -> Result<Option<CellProof>, AuthDbError> {
    let mut read: Vec<(&str, Vec<Key>)> = Vec::new();
    let mut unreadable = Vec::new();
    for (name, r) in sets {
        match r {
            Ok(set) => read.push((name, set.iter().cloned().collect())),
            Err(e) => unreadable.push((name.clone(), e.clone())),
        }
    }
    let servers: Vec<(&str, &[Key])> = read.iter().map(|(n, k)| (*n, k.as_slice())).collect();
    match cell.authdb.prove_tickets(&servers) {
        Ok(Some(proof)) => Ok(Some(CellProof { proof, unreadable })),
        Ok(None) | Err(AuthDbError::Ticket(TicketError::NoClient(_))) => Ok(None),
        Err(e) => Err(e),
    }
}

/// After the afs entry moved to `kvno` (the journal at "activated"): prove that every server
/// opens the KDC's ticket and holds the KDC's enctypes. A failed proof leaves the rotation in
/// progress at "activated" (the entry has moved and is not moved back: moving it again
/// would be a second unproven change), records the problems in the journal and the audit
/// log, and tells the operator what to do; `rotate --resume` proves again and finishes.
/// Within one command the servers' keys are those distribute confirmed (`fleet::memo`): the
/// proof tests the keys on each machine against the KDC's ticket, and no key was written
/// between that read and the proof.
pub(super) fn after_activation(
    cell: &Cell,
    servers: &[&dyn Server],
    st: &mut State,
    kvno: i32,
) -> Result<(), RotateError> {
    let problems = match prove_on(cell, servers) {
        Ok(None) => return Ok(()),
        Ok(Some(p)) if p.ok() => {
            audit(
                cell,
                "rotate",
                &format!(
                    "ticket proof: kvno {} enctype {} opened on {}",
                    p.proof.kvno,
                    p.proof.enctype,
                    p.proof
                        .servers
                        .iter()
                        .map(|s| s.server.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )?;
            return Ok(());
        }
        Ok(Some(p)) => p.problems(),
        Err(e) => vec![format!("no ticket could be had: {e}")],
    };
    let why = problems.join("; ");
    if let Some(r) = st.rotation.as_mut() {
        r.missing = problems
            .iter()
            .map(|m| match m.split_once(": ") {
                Some((n, w)) => (n.to_string(), w.to_string()),
                None => (String::new(), m.clone()),
            })
            .collect();
        r.updated = Utc::now();
    }
    save(cell, st)?;
    let _ = audit(
        cell,
        "rotate",
        &format!("ticket proof FAILED after the afs entry moved to kvno {kvno}: {why}"),
    );
    Err(RotateError::Stopped(format!(
        "rotation to kvno {kvno}: the afs entry is set, but the ticket proof failed: {why}. \
         Those servers may refuse new tokens: remove no key, put the servers and the KDC in \
         step until `afskeys verify --kdc` exits 0, then run `afskeys rotate --resume`"
    )))
}

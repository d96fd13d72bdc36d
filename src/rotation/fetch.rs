//! The distribute step in cells fed by the Update Server: afskeys pushes nothing; it waits
//! until every upclient has fetched the control machine's KeyFile and KeyFileExt (their
//! `bos getdate` dates equal the control machine's), up to the deadline, and confirms by
//! checksum over SSH the servers that also have a `[[servers]]` entry. Past the deadline the
//! rotation stops at step `added`, naming the servers that have not fetched.

use super::error::{audit, RotateError};
use super::steps::{advance, names, stopped};
use crate::cell::Cell;
use crate::fleet::upserver::{FetchState, Upserver};
use crate::fleet::{self};
use crate::journal::{State, Step};
use crate::keys::Key;

/// Step 3, Update Server variant.
pub(super) fn distribute(
    cell: &Cell,
    st: &mut State,
    keys: &[Key],
    up: &Upserver,
) -> Result<Step, RotateError> {
    let kvno = st.rotation.as_ref().expect("rotation in progress").kvno;
    let behind = up.wait_fetched(cell.control.path());
    if !behind.is_empty() {
        let why = format!(
            "servers have not fetched kvno {kvno} from the control machine within {}: {}",
            humantime::format_duration(up.deadline),
            names(&behind)
        );
        return Err(stopped(cell, st, Step::Added, behind, why));
    }
    let by_ssh = cell.other_servers();
    let lacking = fleet::lacking(&by_ssh, keys);
    if !lacking.is_empty() {
        let why = format!(
            "the dates say fetched, but over SSH {} lack kvno {kvno}",
            names(&lacking)
        );
        return Err(stopped(cell, st, Step::Added, lacking, why));
    }
    audit(
        cell,
        "rotate",
        &format!(
            "kvno {kvno} fetched through the Update Server: {}",
            confirmed(cell, up)
        ),
    )?;
    let all = up
        .clients
        .iter()
        .map(|c| c.name.clone())
        .collect::<Vec<_>>();
    advance(cell, st, Step::Distributed, |r| {
        r.confirmed = all;
        r.missing.clear();
    })
}

/// What was confirmed of each server: dates only, or dates and checksums over SSH.
fn confirmed(cell: &Cell, up: &Upserver) -> String {
    up.clients
        .iter()
        .map(|c| {
            let ssh = cell.servers.iter().any(|s| s.name() == c.name);
            format!(
                "{} ({})",
                c.name,
                if ssh {
                    "KeyFile and KeyFileExt dates equal the control machine's; checksums \
                     confirmed over SSH"
                } else {
                    "KeyFile and KeyFileExt dates equal the control machine's (unauthenticated \
                     bos getdate -noauth; the running-server proof, when on, then asks it with \
                     the new kvno); bytes not compared (no SSH)"
                }
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The activation's guard in such cells: the servers whose fetch state is not `fetched`.
pub(super) fn not_fetched(cell: &Cell, up: &Upserver) -> Vec<(String, String)> {
    up.fetch_states(cell.control.path())
        .into_iter()
        .filter(|(_, s)| *s != FetchState::Fetched)
        .map(|(n, s)| (n, s.describe()))
        .collect()
}

/// Step 3 of the plan (`rotate --dry-run`) in Update Server cells: the wait, its timing,
/// the servers, and what will confirm each fetch.
pub(super) fn plan_step(cell: &Cell) -> Option<String> {
    let up = cell.upserver.as_ref()?;
    let names: Vec<&str> = up.clients.iter().map(|c| c.name.as_str()).collect();
    let by_ssh: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| cell.servers.iter().any(|s| s.name() == *n))
        .collect();
    let how = match by_ssh.is_empty() {
        true => "bytes not compared (no SSH)".to_string(),
        false => format!("checksums compared over SSH for {}", by_ssh.join(", ")),
    };
    let step = format!(
        "3. wait until every upclient has fetched it from the control machine (upclientetc \
         every {}, asked by bos getdate every {}; past {} the rotation stops, resumably): {}; \
         confirmed by their KeyFile and KeyFileExt dates, {how}",
        humantime::format_duration(up.interval),
        humantime::format_duration(up.poll),
        humantime::format_duration(up.deadline),
        names.join(", ")
    );
    Some(step)
}

/// Every machine that holds the new key: the configured servers, then (in Update Server
/// cells) the upclient-fed ones not already among them.
pub(super) fn every_server(cell: &Cell) -> Vec<String> {
    let mut v: Vec<String> = cell
        .all_servers()
        .iter()
        .map(|s| s.name().to_string())
        .collect();
    for c in cell.upserver.iter().flat_map(|up| &up.clients) {
        if !v.contains(&c.name) {
            v.push(c.name.clone());
        }
    }
    v
}

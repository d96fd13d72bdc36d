//! `servers`: every configured server, reachable or not, with what it holds now or held when
//! last seen (`afskeys-servers.json`, a cache of checksums).

use super::status::{fetch_view, FetchView};
use super::CellPaths;
use crate::cell::Cell;
use crate::error::Error;
use crate::fleet::seen::{self, SeenFile, SeenKey};
use crate::fleet::upserver::FetchState;
use crate::time::fmt_time;
use chrono::Utc;
use serde::Serialize;

/// Remember what servers held when seen. The record is a cache: failing to write it is not
/// worth failing the command.
pub(crate) fn seen_record(cell: &Cell, held: Vec<(String, Vec<SeenKey>)>) {
    let _ = SeenFile::new(cell.control.path()).record(held, Utc::now());
}

#[derive(Debug, Serialize)]
pub struct ServersReport {
    pub servers: Vec<ServerRow>,
    /// The machines the cell names (CellServDB, the VLDB), each with its state:
    /// `control`, `configured`, `upclient`, `left out` (and why) or `unaccounted`.
    pub inventory: crate::inventory::Inventory,
}

/// One server: reachable now or not, and what it held when last seen.
#[derive(Debug, Serialize)]
pub struct ServerRow {
    pub name: String,
    pub reachable: bool,
    pub error: Option<String>,
    pub last_seen: Option<String>,
    pub keys: Vec<SeenKey>,
    /// Update Server cells only: how the server gets the control machine's KeyFiles —
    /// `control` (the control machine itself), `upserver` (its upclientetc fetches them),
    /// `upserver+ssh` (fetched, and read over SSH too), or `ssh` (afskeys pushes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub distribution: Option<&'static str>,
    /// For upclient-fed servers: the fetch state by `bos getdate`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fetch: Option<FetchView>,
}

/// `servers`.
pub fn servers(paths: &CellPaths) -> Result<ServersReport, Error> {
    let cell = paths.open()?;
    let all = cell.all_servers();
    let reads = crate::fleet::fanout::read_all(&all, cell.parallel);
    seen_record(
        &cell,
        reads
            .iter()
            .filter_map(|(n, r)| r.as_ref().ok().map(|k| (n.clone(), seen::summary(k))))
            .collect(),
    );
    let last = SeenFile::new(cell.control.path()).load()?;
    let servers = reads
        .iter()
        .map(|(name, r)| {
            let last = last.get(name);
            ServerRow {
                name: name.clone(),
                reachable: r.is_ok(),
                error: r.as_ref().err().map(|e| e.message.clone()),
                last_seen: last.map(|s| fmt_time(s.last_seen)),
                keys: last.map(|s| s.keys.clone()).unwrap_or_default(),
                distribution: None,
                fetch: None,
            }
        })
        .collect();
    let mut report = ServersReport {
        servers,
        inventory: crate::inventory::gather(&cell.inventory),
    };
    add_upclients(&cell, &mut report, &last);
    Ok(report)
}

/// The distribution method of a server fed by upclient alone.
const FED: &str = "upserver";

/// In Update Server cells: every row's distribution method, each upclient-fed server's
/// fetch state, and a row for each one afskeys does not read directly (reachable when bos
/// answered).
fn add_upclients(
    cell: &Cell,
    report: &mut ServersReport,
    last: &std::collections::BTreeMap<String, seen::Seen>,
) {
    let Some(up) = &cell.upserver else {
        return;
    };
    for row in report.servers.iter_mut() {
        row.distribution = Some(match row.name.as_str() {
            crate::cell::CONTROL => "control",
            n if up.client(n).is_some() => "upserver+ssh",
            _ => "ssh",
        });
    }
    for (name, state) in up.fetch_states(cell.control.path()) {
        let view = fetch_view(&name, &state);
        if let Some(row) = report.servers.iter_mut().find(|r| r.name == name) {
            row.fetch = Some(view);
            continue;
        }
        let seen = last.get(&name);
        report.servers.push(ServerRow {
            reachable: !matches!(state, FetchState::Unreachable(_)),
            error: match state {
                FetchState::Unreachable(e) => Some(e),
                _ => None,
            },
            last_seen: seen.map(|s| fmt_time(s.last_seen)),
            keys: seen.map(|s| s.keys.clone()).unwrap_or_default(),
            distribution: Some(FED),
            fetch: Some(view),
            name,
        });
    }
}

//! `servers`: every configured server, reachable or not, with what it holds now or held when
//! last seen (`afskeys-servers.json`, a cache of checksums).

use super::CellPaths;
use crate::cell::Cell;
use crate::error::Error;
use crate::fleet::seen::{self, SeenFile, SeenKey};
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
}

/// One server: reachable now or not, and what it held when last seen.
#[derive(Debug, Serialize)]
pub struct ServerRow {
    pub name: String,
    pub reachable: bool,
    pub error: Option<String>,
    pub last_seen: Option<String>,
    pub keys: Vec<SeenKey>,
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
            }
        })
        .collect();
    Ok(ServersReport { servers })
}

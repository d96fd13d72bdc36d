//! `status` and `check`: gather the cell's state (keys with their roles, the afs entry, every
//! server, the rotation in progress) and judge it for cron and Nagios.

use super::alive::Running;
use super::proof::{prove_sets, CellProof};
use crate::authdb::{AfsEntry, AuthDbError};
use crate::cell::Cell;
use crate::checksum::key_checksum;
use crate::fleet::fanout;
use crate::fleet::upserver::FetchState;
use crate::journal::{JournalError, Rotation, State};
use crate::keys::{Key, KeyId, KeySet, KeyType};
use crate::policy::{lifetime_conflict, role, Role};
use crate::time::fmt_time;
use chrono::{DateTime, Duration, Utc};

/// One server's view.
pub struct ServerState {
    pub name: String,
    /// (key id, checksum) of every key it holds, or why it could not be read.
    pub keys: Result<Vec<(KeyId, Option<u32>)>, String>,
}

/// One upclient-fed server: its fetch state, and when its upclient last started.
pub struct FetchRow {
    pub name: String,
    pub host: String,
    pub state: FetchState,
    pub started: Option<DateTime<Utc>>,
}

/// Each upclient-fed server, and upclient's interval.
pub type Fetch = (Vec<FetchRow>, std::time::Duration);

pub struct Status {
    pub cell: String,
    pub authdb: String,
    pub entry: Result<Option<AfsEntry>, AuthDbError>,
    /// The control machine's keys and their roles (empty when unreadable: see servers[0]).
    pub keys: Vec<(Key, Role)>,
    pub servers: Vec<ServerState>,
    pub state: Result<State, JournalError>,
    pub now: DateTime<Utc>,
    pub interval: Duration,
    /// The ticket proof, when the backend can give one and the afs entry exists (`Err`: no
    /// ticket could be had, with why).
    pub proof: Option<Result<CellProof, String>>,
    /// afskeys.toml's `token_lifetime` is below the KDC's maximum ticket life (why).
    pub lifetime_conflict: Option<String>,
    /// In cells fed by the Update Server: each server's name, host and fetch state, and
    /// upclient's interval.
    pub fetch: Option<Fetch>,
    /// The machines the cell names, and how each is accounted for.
    pub inventory: crate::inventory::Inventory,
    /// The running servers asked with the control machine's newest kvno.
    pub running: Running,
    /// A rotation's process holds the rotation lock now (one in progress is running, not
    /// stopped).
    pub rotation_running: bool,
}

fn summary(keys: &crate::keys::KeySet) -> Vec<(KeyId, Option<u32>)> {
    keys.iter().map(|k| (k.id, key_checksum(k))).collect()
}

/// Read everything `status` shows. Never fails: what cannot be read is recorded as such.
pub fn gather(cell: &Cell, now: DateTime<Utc>) -> Status {
    let entry = cell.authdb.get();
    let state = cell.state.load();
    let empty = State::default();
    let st = state.as_ref().unwrap_or(&empty);
    let keys = match cell.control.read() {
        Ok(snap) => snap
            .keys
            .iter()
            .map(|k| {
                let r = role(
                    k.kvno(),
                    entry.as_ref().ok().and_then(|e| e.as_ref()),
                    st,
                    &cell.policy,
                    now,
                );
                (k.clone(), r)
            })
            .collect(),
        Err(_) => vec![],
    };
    // Every machine read once (in parallel): the checksums shown, and the ticket proof.
    let sets: Vec<(String, Result<KeySet, String>)> =
        fanout::read_all(&cell.all_servers(), cell.parallel)
            .into_iter()
            .map(|(n, r)| (n, r.map_err(|e| e.message)))
            .collect();
    let servers = sets
        .iter()
        .map(|(name, r)| ServerState {
            name: name.clone(),
            keys: r.as_ref().map(summary).map_err(|e| e.clone()),
        })
        .collect();
    let proof = match &entry {
        Ok(Some(_)) => prove_sets(cell, &sets)
            .map_err(|e| e.to_string())
            .transpose(),
        _ => None,
    };
    let lifetime_conflict =
        lifetime_conflict(&cell.policy, entry.as_ref().ok().and_then(|e| e.as_ref()));
    let inventory = crate::inventory::gather(&cell.inventory);
    Status {
        rotation_running: cell.state.rotation_running(),
        running: super::alive::ask_newest(cell, &inventory),
        inventory,
        fetch: gather_fetch(cell),
        proof,
        lifetime_conflict,
        cell: cell.name.clone(),
        authdb: cell.authdb.describe(),
        entry,
        keys,
        servers,
        state,
        now,
        interval: cell.policy.rotation_interval,
    }
}

/// Each upclient-fed server's fetch state (by `bos getdate`), when the cell has them.
fn gather_fetch(cell: &Cell) -> Option<Fetch> {
    let up = cell.upserver.as_ref()?;
    let states = up
        .fetch_states(cell.control.path())
        .into_iter()
        .zip(&up.clients)
        .zip(up.started_all())
        .map(|(((name, state), c), started)| FetchRow {
            name,
            host: c.host.clone(),
            state,
            started,
        })
        .collect();
    Some((states, up.interval))
}

impl Status {
    pub fn rotation(&self) -> Option<&Rotation> {
        self.state.as_ref().ok().and_then(|s| s.rotation.as_ref())
    }

    pub fn current(&self) -> Option<&AfsEntry> {
        self.entry.as_ref().ok().and_then(|e| e.as_ref())
    }

    /// When the next rotation is due (the current key's age reaches the interval).
    pub fn next_due(&self) -> Option<DateTime<Utc>> {
        self.current().map(|e| e.changed + self.interval)
    }

    /// The control machine's view, to compare the others against.
    fn control_keys(&self) -> Option<&Vec<(KeyId, Option<u32>)>> {
        self.servers.first().and_then(|s| s.keys.as_ref().ok())
    }

    /// Does `name`'s key set differ from the control machine's, beyond the incoming kvno?
    pub fn disagrees(&self, s: &ServerState) -> bool {
        let (Some(control), Ok(theirs)) = (self.control_keys(), &s.keys) else {
            return false;
        };
        let incoming = self.rotation().map(|r| r.kvno);
        let strip = |v: &Vec<(KeyId, Option<u32>)>| -> Vec<(KeyId, Option<u32>)> {
            v.iter()
                .filter(|(id, _)| Some(id.kvno) != incoming)
                .cloned()
                .collect()
        };
        strip(control) != strip(theirs)
    }
}

/// The Nagios levels, with their exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Ok = 0,
    Warning = 1,
    Critical = 2,
    Unknown = 3,
}

impl Level {
    /// How bad: CRITICAL outranks UNKNOWN (a known breakage is reported before a doubt).
    pub fn severity(self) -> u8 {
        match self {
            Level::Ok => 0,
            Level::Warning => 1,
            Level::Unknown => 2,
            Level::Critical => 3,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Level::Ok => "OK",
            Level::Warning => "WARNING",
            Level::Critical => "CRITICAL",
            Level::Unknown => "UNKNOWN",
        }
    }
}

/// The verdict: the worst level found and every problem, worst first.
pub struct Verdict {
    pub level: Level,
    pub problems: Vec<(Level, String)>,
    pub summary: String,
}

impl Verdict {
    /// `AFSKEYS <LEVEL> - <what>`: one line.
    pub fn line(&self) -> String {
        let what = if self.problems.is_empty() {
            self.summary.clone()
        } else {
            self.problems
                .iter()
                .map(|(_, m)| m.as_str())
                .collect::<Vec<_>>()
                .join("; ")
        };
        format!("AFSKEYS {} - {what}", self.level.name())
    }
}

/// How long a rotation may sit unfinished before `check` warns.
pub fn stuck_after() -> Duration {
    Duration::hours(1)
}

/// Judge the cell.
pub fn judge(s: &Status) -> Verdict {
    let mut p: Vec<(Level, String)> = Vec::new();
    let entry = judge_entry(s, &mut p);
    if let Err(e) = &s.state {
        p.push((Level::Unknown, format!("rotation state unreadable: {e}")));
    }
    for srv in &s.servers {
        judge_server(s, srv, entry, &mut p);
    }
    if let Some(e) = entry {
        judge_current_key(s, e, &mut p);
    }
    judge_removable(s, &mut p);
    if let Some(e) = entry {
        judge_kdc_keys(s, e, &mut p);
    }
    judge_rotation(s, &mut p);
    judge_proof(s, &mut p);
    judge_clock(s, &mut p);
    judge_fetch(s, &mut p);
    judge_inventory(&s.inventory, &mut p);
    judge_running(s.current().map(|e| e.kvno), &s.running, &mut p);
    p.sort_by_key(|x| std::cmp::Reverse(x.0.severity()));
    let level = p.first().map(|x| x.0).unwrap_or(Level::Ok);
    // Report only the problems at the worst level in the one line; status shows all.
    let worst: Vec<(Level, String)> = p.iter().filter(|x| x.0 == level).cloned().collect();
    let mut summary = match entry {
        Some(e) => format!(
            "kvno {} current since {}, {} server(s) agree, next rotation due {}",
            e.kvno,
            fmt_time(e.changed),
            s.servers.len(),
            fmt_time(e.changed + s.interval)
        ),
        None => String::new(),
    };
    // What the operator chose not to check is said even when all is well.
    if s.inventory.vldb == crate::inventory::NOT_ASKED && !summary.is_empty() {
        summary.push_str("; file servers not checked (VLDB not asked)");
    }
    if matches!(s.running, Running::Skipped(_)) && !summary.is_empty() {
        summary.push_str("; running servers not asked");
    }
    Verdict {
        level,
        problems: if level == Level::Ok { vec![] } else { worst },
        summary,
    }
}

/// A machine the cell names that afskeys.toml does not account for (CRITICAL: a rotation
/// would leave it without the new key), or a part of the cell that could not be checked
/// (WARNING; a VLDB the operator chose not to ask is said in the summary instead).
fn judge_inventory(inv: &crate::inventory::Inventory, p: &mut Vec<(Level, String)>) {
    let missing = inv.unaccounted();
    if !missing.is_empty() {
        p.push((
            Level::Critical,
            format!(
                "not in afskeys.toml: {} (`afskeys servers` lists the cell's machines)",
                missing
                    .iter()
                    .map(|m| format!("{} ({})", m.name, m.found_in.join(", ")))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    for u in inv.problems() {
        p.push((Level::Warning, format!("not checked: {u}")));
    }
}

/// The running servers: a process refusing the afs entry's kvno is CRITICAL (it refuses
/// every new token); refusing a newer kvno (a rotation under way), not answering, no sync
/// site, or no way to ask from here is WARNING. Servers whose proof is off are not judged.
fn judge_running(entry: Option<i32>, running: &Running, p: &mut Vec<(Level, String)>) {
    match running {
        Running::Skipped(_) => {}
        Running::Cannot(why) => p.push((
            Level::Warning,
            format!("running servers not checked: {why}"),
        )),
        Running::Asked { kvno, results } => {
            let current = entry == Some(*kvno);
            for r in results.iter().filter(|r| !r.failed.is_empty()) {
                let level = match r.refused() && current {
                    true => Level::Critical,
                    false => Level::Warning,
                };
                let what = match (r.refused(), current) {
                    (true, true) => format!("refuses kvno {kvno}, the afs entry's"),
                    (true, false) => format!("refuses kvno {kvno}, the newest key"),
                    (false, _) => "not proven".to_string(),
                };
                let line = format!("{} running: {what}: {}", r.server, r.failed.join("; "));
                p.push((level, line));
            }
        }
    }
}

/// The afs entry, or the problem of having none (UNKNOWN).
fn judge_entry<'a>(s: &'a Status, p: &mut Vec<(Level, String)>) -> Option<&'a AfsEntry> {
    match &s.entry {
        Err(e) => {
            p.push((Level::Unknown, format!("auth DB unreadable: {e}")));
            None
        }
        Ok(None) => {
            p.push((
                Level::Unknown,
                format!(
                    "{} has no afs entry (run `afskeys authdb init` or `afskeys rotate`)",
                    s.authdb
                ),
            ));
            None
        }
        Ok(Some(e)) => Some(e),
    }
}

/// One server: unreadable, lacking the afs entry's key, or disagreeing (all CRITICAL).
fn judge_server(
    s: &Status,
    srv: &ServerState,
    entry: Option<&AfsEntry>,
    p: &mut Vec<(Level, String)>,
) {
    let keys = match &srv.keys {
        Err(e) => {
            p.push((
                Level::Critical,
                format!("{}: KeyFile unreadable: {e}", srv.name),
            ));
            return;
        }
        Ok(keys) => keys,
    };
    if let Some(e) = entry {
        let missing = e.keys.iter().any(|k| {
            !keys
                .iter()
                .any(|(id, c)| *id == k.id && *c == key_checksum(k))
        });
        if missing {
            p.push((
                Level::Critical,
                format!("{} lacks the afs entry's kvno {}", srv.name, e.kvno),
            ));
        }
    }
    if s.disagrees(srv) {
        p.push((
            Level::Critical,
            format!("{} disagrees with the control machine's keys", srv.name),
        ));
    }
}

/// The current key: older than the interval, or single DES (WARNING).
fn judge_current_key(s: &Status, e: &AfsEntry, p: &mut Vec<(Level, String)>) {
    if s.now > e.changed + s.interval {
        p.push((
            Level::Warning,
            format!(
                "current key kvno {} is older than the rotation interval (set {})",
                e.kvno,
                fmt_time(e.changed)
            ),
        ));
    }
    if e.key_type() == Some(KeyType::Rxkad) {
        p.push((
            Level::Warning,
            format!(
                "the afs entry uses a single-DES key (kvno {}): rotate to rxkad_krb5",
                e.kvno
            ),
        ));
    }
}

/// Old keys the KDC still holds that no server holds (WARNING): `prune` purges them.
fn judge_kdc_keys(s: &Status, e: &AfsEntry, p: &mut Vec<(Level, String)>) {
    let Some(kdc) = &e.kdc else { return };
    let mut held: Vec<i32> = s.keys.iter().map(|(k, _)| k.kvno()).collect();
    for srv in &s.servers {
        match &srv.keys {
            Ok(v) => held.extend(v.iter().map(|(id, _)| id.kvno)),
            Err(_) => return, // not known: say nothing rather than guess
        }
    }
    held.push(e.kvno);
    let oldest = held.iter().copied().min().unwrap_or(e.kvno);
    let mut old: Vec<String> = (kdc.kvnos.iter().rev())
        .filter(|k| **k < oldest)
        .map(|k| k.to_string())
        .collect();
    old.dedup();
    if !old.is_empty() {
        p.push((
            Level::Warning,
            format!(
                "the KDC still holds kvno {}, which no server holds (run `afskeys prune`)",
                old.join(", ")
            ),
        ));
    }
}

/// Keys whose grace has ended and that are still there (WARNING).
fn judge_removable(s: &Status, p: &mut Vec<(Level, String)>) {
    let mut removable: Vec<i32> = s
        .keys
        .iter()
        .filter(|(_, r)| *r == Role::Removable)
        .map(|(k, _)| k.kvno())
        .collect();
    removable.dedup();
    if !removable.is_empty() {
        p.push((
            Level::Warning,
            format!(
                "removable keys waiting: kvno {} (run `afskeys prune`)",
                removable
                    .iter()
                    .map(|k| k.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
}

/// Servers fed by the Update Server: behind for longer than two upclient intervals, or
/// unreachable through bos (WARNING). An upclient builds its credentials once, at start: one
/// that lags this long may be stopped, or locked out (started before the key it needs
/// arrived, after upserver restarted), so restarting it is the cure.
fn judge_fetch(s: &Status, p: &mut Vec<(Level, String)>) {
    let Some((states, interval)) = &s.fetch else {
        return;
    };
    let limit = Duration::from_std(*interval * 2).unwrap_or(Duration::MAX);
    for row in states {
        judge_upclient_start(s, row, p);
        let (name, host) = (&row.name, &row.host);
        match &row.state {
            FetchState::Fetched => {}
            FetchState::Behind { since } if s.now - *since > limit => p.push((
                Level::Warning,
                format!(
                    "{name} has not fetched the control machine's KeyFiles since {} (more than \
                     two upclient intervals): restart its upclientetc through bos (`bos \
                     restart -server {host} -instance upclientetc -localauth`)",
                    fmt_time(*since)
                ),
            )),
            FetchState::Behind { .. } => {}
            FetchState::Unreachable(why) => p.push((
                Level::Warning,
                format!("{name}: fetch state unknown, bos getdate failed: {why}"),
            )),
        }
    }
}

/// An upclient started before the current kvno became current still authenticates with an
/// older key (it builds its credentials once, at start, from its server's newest key): once
/// that key leaves the control machine (`prune`), or upserver restarts, it is locked out
/// (WARNING while older keys remain, so before a prune).
fn judge_upclient_start(s: &Status, row: &FetchRow, p: &mut Vec<(Level, String)>) {
    let (Some(e), Some(started)) = (s.current(), row.started) else {
        return;
    };
    let older_held = s.keys.iter().any(|(k, _)| k.kvno() < e.kvno);
    if started < e.changed && older_held {
        p.push((
            Level::Warning,
            format!(
                "{}'s upclientetc started {}, before kvno {} became current: it still \
                 authenticates with an older key and is locked out once that key leaves the \
                 control machine; restart it before `afskeys prune` (`bos restart -server {} \
                 -instance upclientetc -localauth`)",
                row.name,
                fmt_time(started),
                e.kvno,
                row.host
            ),
        ));
    }
}

/// The clock behind a time afskeys recorded (WARNING).
fn judge_clock(s: &Status, p: &mut Vec<(Level, String)>) {
    let journal = s.state.as_ref().ok().and_then(State::latest_recorded);
    let entry = s
        .entry
        .as_ref()
        .ok()
        .and_then(|e| e.as_ref())
        .map(|e| e.changed);
    if let Some(w) = crate::policy::clock_behind(s.now, journal.max(entry)) {
        p.push((Level::Warning, w));
    }
}

/// A rotation left unfinished for too long (WARNING).
fn judge_rotation(s: &Status, p: &mut Vec<(Level, String)>) {
    let Some(r) = s.rotation() else {
        return;
    };
    // Stopped (no process runs it): said at once. Running: only when it runs for too long.
    let how = match (s.rotation_running, s.now > r.updated + stuck_after()) {
        (false, _) => "stopped",
        (true, true) => "stuck",
        (true, false) => return,
    };
    p.push((
        Level::Warning,
        format!(
            "rotation to kvno {} {how} at step {} since {} (run `afskeys rotate --resume`)",
            r.kvno,
            r.step.name(),
            fmt_time(r.updated)
        ),
    ));
}

/// The ticket proof: a ticket that does not open, or enctype sets that disagree, is CRITICAL
/// (new tokens would be refused); no ticket to be had is UNKNOWN.
fn judge_proof(s: &Status, p: &mut Vec<(Level, String)>) {
    match &s.proof {
        None => {}
        Some(Err(e)) => p.push((Level::Unknown, format!("ticket proof: {e}"))),
        Some(Ok(proof)) => p.extend(
            proof
                .ticket_problems()
                .into_iter()
                .map(|m| (Level::Critical, format!("ticket proof: {m}"))),
        ),
    }
    if let Some(c) = &s.lifetime_conflict {
        p.push((Level::Warning, format!("grace: {c}")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::running::Proven;

    fn proven(server: &str, failed: &[&str]) -> Proven {
        Proven {
            server: server.into(),
            proven: vec![],
            failed: failed.iter().map(|f| f.to_string()).collect(),
            not_asked: None,
        }
    }

    #[test]
    fn a_running_server_refusing_the_entrys_kvno_is_critical_and_anything_else_a_warning() {
        let refused = "bosserver on fs1: bos: failed to contact host's bosserver (ticket \
                       contained unknown key version number).";
        let running = Running::Asked {
            kvno: 3,
            results: vec![
                proven("fs1", &[refused]),
                proven("db2", &["ptserver: no sync site"]),
                proven("db3", &[]),
            ],
        };
        let mut p = vec![];
        judge_running(Some(3), &running, &mut p);
        assert_eq!(p.len(), 2, "{p:?}");
        assert_eq!(p[0].0, Level::Critical);
        assert_eq!(
            p[0].1,
            format!("fs1 running: refuses kvno 3, the afs entry's: {refused}")
        );
        assert_eq!(p[1].0, Level::Warning);
        assert_eq!(p[1].1, "db2 running: not proven: ptserver: no sync site");
        // A newer kvno than the entry's (a rotation under way): a warning.
        let mut p = vec![];
        judge_running(Some(2), &running, &mut p);
        assert_eq!(p[0].0, Level::Warning);
        assert!(p[0]
            .1
            .starts_with("fs1 running: refuses kvno 3, the newest key"));
        let mut p = vec![];
        judge_running(
            Some(3),
            &Running::Skipped("--skip-running-proof".into()),
            &mut p,
        );
        assert!(p.is_empty());
        judge_running(Some(3), &Running::Cannot("no bos conf dir".into()), &mut p);
        assert_eq!(
            p,
            vec![(
                Level::Warning,
                "running servers not checked: no bos conf dir".into()
            )]
        );
    }
}

//! Restarts that keep ubik quorum, run before a removal (docs/rotation.md, "After a removal").
//!
//! OpenAFS server processes make their server-to-server tickets (ubik votes and beacons, the
//! file server's registration) once, when they start, with the newest kvno they hold, and
//! never make new ones. A removal of a kvno that a newer one replaced therefore needs every
//! process that started before the newer kvno was everywhere restarted first, while both
//! keys are still present: a database server restarted after the removal is refused by its
//! peers (RXKADUNKNOWNKEY) and stays out of the quorum.
//!
//! The sequence, each machine through its bosserver with `-localauth` (the control machine's
//! newest key), once every database server is in both quorums (one already out refuses the
//! sequence before any restart: restarting another could leave no quorum):
//! - **Database servers, one at a time**, the sync site last (one election instead of two):
//!   `bos restart HOST -all`; then wait until bos shows every instance started again (its
//!   `proc starts` count went up: no clock is compared) and, for ptserver (7002) and vlserver
//!   (7003), `udebug` at the sync site shows a recovered database (`Recovery state 1f`) and
//!   the restarted server voting yes with a current database, its vote newer than its
//!   restart.
//! - **Then the file servers and any other server**, each waited for until bos shows every
//!   instance running again.
//! - A machine whose every instance started after `since` (the moment the newer kvno was on
//!   every server) is not restarted again; one with no instance has nothing to restart.
//! - A machine that does not come back within the bound stops the sequence: the error names
//!   it and what was seen last, and the caller removes nothing.

use crate::child;
use crate::running;
use serde::Serialize;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// One machine that may need its processes restarted.
#[derive(Debug, Clone)]
pub struct Machine {
    pub name: String,
    /// The host bos reaches.
    pub host: String,
    /// A database server: its address in the CellServDB (where udebug asks).
    pub db: Option<String>,
    /// A file server the VLDB lists: back once its volserver answers too.
    pub fs: bool,
}

/// The tools and bounds.
#[derive(Debug, Clone)]
pub struct Spec {
    pub bos: PathBuf,
    pub udebug: PathBuf,
    /// Each bos or udebug call.
    pub deadline: Duration,
    /// How long one machine may take to come back (quorum included).
    pub wait: Duration,
    /// How `vos` asks a file server's volserver (the running-server proof's own way).
    pub vos: running::Spec,
}

/// One restart in the plan, in order.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Planned {
    pub server: String,
    pub command: String,
    /// What the sequence waits for after it.
    pub waits_for: String,
}

/// What happened on one machine.
#[derive(Debug, Clone, Serialize)]
pub struct Restarted {
    pub server: String,
    /// When its restart was asked (RFC 3339); none when not restarted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    /// From the restart to the machine back (quorum included); none when not restarted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seconds: Option<f64>,
    /// Not restarted, and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
}

/// The sequence stopped at `server`: what was seen, and what was done before.
#[derive(Debug, Clone)]
pub struct Stopped {
    pub server: String,
    pub seen: String,
    pub done: Vec<Restarted>,
}

/// The ubik services of a database server, with their ports.
const UBIK: [(&str, &str); 2] = [("ptserver", "7002"), ("vlserver", "7003")];

/// How often a wait asks again.
const POLL: Duration = Duration::from_secs(2);

/// The order: database servers (the sync site of the ptserver last), then the others.
pub fn order(spec: &Spec, machines: &[Machine]) -> Vec<Machine> {
    let sync = machines
        .iter()
        .filter_map(|m| m.db.as_deref())
        .find_map(|a| running::sync_site(&spec.udebug, a, UBIK[0].1, spec.deadline).ok());
    let is_sync = |m: &Machine| m.db.is_some() && m.db == sync;
    let mut v: Vec<Machine> = machines
        .iter()
        .filter(|m| m.db.is_some() && !is_sync(m))
        .cloned()
        .collect();
    v.extend(machines.iter().filter(|m| is_sync(m)).cloned());
    v.extend(machines.iter().filter(|m| m.db.is_none()).cloned());
    v
}

/// The order without asking anyone: database servers first, then the others.
pub fn order_offline(machines: &[Machine]) -> Vec<Machine> {
    let (mut v, rest): (Vec<Machine>, Vec<Machine>) =
        machines.iter().cloned().partition(|m| m.db.is_some());
    v.extend(rest);
    v
}

/// The plan for machines in `order`.
pub fn plan(ordered: &[Machine]) -> Vec<Planned> {
    ordered
        .iter()
        .map(|m| Planned {
            server: m.name.clone(),
            command: format!("bos restart -server {} -all -localauth", m.host),
            waits_for: match &m.db {
                Some(a) => format!(
                    "every instance started again; ptserver and vlserver quorum with {a} \
                     voting yes (udebug {a} 7002, 7003)"
                ),
                None if m.fs => format!(
                    "every instance started again and running; its volserver answers (vos \
                     partinfo -server {})",
                    m.host
                ),
                None => "every instance started again and running".into(),
            },
        })
        .collect()
}

/// Restart every machine of `ordered` in turn, each waited for; `since`: processes started
/// after it need no restart.
pub fn run(
    spec: &Spec,
    ordered: &[Machine],
    since: chrono::DateTime<chrono::Utc>,
    said: &dyn Fn(&str),
) -> Result<Vec<Restarted>, Stopped> {
    quorum_whole(spec, ordered)?;
    let mut done = Vec::new();
    for m in ordered {
        let stop = |seen: String, done: &Vec<Restarted>| Stopped {
            server: m.name.clone(),
            seen,
            done: done.clone(),
        };
        let before = match status(spec, &m.host) {
            Ok(s) => s,
            Err(e) => return Err(stop(e, &done)),
        };
        if let Some(why) = no_restart_needed(&before, since) {
            done.push(Restarted {
                server: m.name.clone(),
                at: None,
                seconds: None,
                skipped: Some(why),
            });
            continue;
        }
        said(&format!(
            "restarting {} ({})…",
            m.name,
            plan(std::slice::from_ref(m))[0].command
        ));
        let (t, at) = (Instant::now(), crate::time::now_string());
        if let Err(e) = restart(spec, &m.host) {
            return Err(stop(e, &done));
        }
        if let Err(e) = wait_back(spec, m, &before, t) {
            return Err(stop(e, &done));
        }
        done.push(Restarted {
            server: m.name.clone(),
            at: Some(at),
            seconds: Some(t.elapsed().as_secs_f64()),
            skipped: None,
        });
    }
    Ok(done)
}

/// How old a database server's last vote may be for it to count as in the quorum (the sync
/// site asks every server for its vote every few seconds).
const VOTE_AGE: u64 = 60;

/// Before any restart: every database server in both quorums. Restarting one while another
/// is already out could leave a service with no quorum at all (seen on the live cell).
fn quorum_whole(spec: &Spec, ordered: &[Machine]) -> Result<(), Stopped> {
    for m in ordered {
        if let Some(addr) = &m.db {
            quorum_all(spec, addr, VOTE_AGE).map_err(|e| Stopped {
                server: m.name.clone(),
                seen: format!(
                    "out of the quorum before any restart ({e}); restarting another database \
                     server now could leave no quorum: bring it back first; nothing was \
                     removed"
                ),
                done: vec![],
            })?;
        }
    }
    Ok(())
}

/// One bosserver instance as `bos status -long` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    pub name: String,
    pub running: bool,
    /// `Process last started at …`, read in this machine's time zone as bos prints it.
    pub started: Option<chrono::DateTime<chrono::Utc>>,
    /// `(N proc starts)`.
    pub starts: Option<u64>,
}

/// `bos status -server HOST -long -localauth`, parsed; `Err`: a refusal or no answer.
pub fn status(spec: &Spec, host: &str) -> Result<Vec<Instance>, String> {
    let args = ["status", "-server", host, "-long", "-localauth"];
    let f =
        child::run(&spec.bos, &args, &[], spec.deadline, 1024 * 1024).map_err(|e| e.to_string())?;
    let text = format!("{}{}", f.stdout, f.stderr);
    running::judge_bos(&text, f.status.success())?;
    Ok(parse_status(&f.stdout))
}

/// The instances of a `bos status -long` answer.
pub fn parse_status(text: &str) -> Vec<Instance> {
    let mut v: Vec<Instance> = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("Instance ") {
            let name = rest.split(',').next().unwrap_or_default().to_string();
            v.push(Instance {
                name,
                running: rest.contains("currently running normally"),
                started: None,
                starts: None,
            });
        } else if let (Some(i), Some(aux)) = (
            v.last_mut(),
            line.trim().strip_prefix("Auxiliary status is: "),
        ) {
            // A file server instance runs normally while it still salvages or starts: it
            // is back when its fileserver says so.
            if !aux.starts_with("file server running") {
                i.running = false;
            }
        } else if let (Some(i), Some(rest)) = (
            v.last_mut(),
            line.trim().strip_prefix("Process last started at "),
        ) {
            let (date, count) = rest.split_once(" (").unwrap_or((rest, ""));
            i.started = bos_date(date);
            i.starts = count.split_whitespace().next().and_then(|n| n.parse().ok());
        }
    }
    v
}

/// A date as bos prints it (ctime in the local time zone: `Mon Dec  7 19:32:05 2026`).
fn bos_date(s: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    use chrono::TimeZone;
    let s = s.split_whitespace().collect::<Vec<_>>().join(" ");
    let naive = chrono::NaiveDateTime::parse_from_str(&s, "%a %b %d %H:%M:%S %Y").ok()?;
    chrono::Local
        .from_local_datetime(&naive)
        .earliest()
        .map(|d| d.with_timezone(&chrono::Utc))
}

/// Why a machine needs no restart (none when it does).
fn no_restart_needed(v: &[Instance], since: chrono::DateTime<chrono::Utc>) -> Option<String> {
    if v.is_empty() {
        return Some("runs no process under its bosserver".into());
    }
    let all_after = v.iter().all(|i| i.started.is_some_and(|t| t > since));
    all_after.then(|| {
        format!(
            "every process started after {} (already restarted)",
            crate::time::fmt_time(since)
        )
    })
}

fn restart(spec: &Spec, host: &str) -> Result<(), String> {
    let args = ["restart", "-server", host, "-all", "-localauth"];
    let f =
        child::run(&spec.bos, &args, &[], spec.deadline, 1024 * 1024).map_err(|e| e.to_string())?;
    running::judge_bos(&format!("{}{}", f.stdout, f.stderr), f.status.success())
}

/// Wait (up to `spec.wait` from `t`) until `m` is back: its instances started again and
/// running; a database server's quorum whole again with it voting.
fn wait_back(spec: &Spec, m: &Machine, before: &[Instance], t: Instant) -> Result<(), String> {
    let mut seen = String::from("nothing yet");
    let mut up_at: Option<Instant> = None;
    while t.elapsed() < spec.wait {
        match (up_at, status(spec, &m.host)) {
            (None, Ok(now)) => match started_again(before, &now) {
                Ok(()) => up_at = Some(Instant::now()),
                Err(e) => seen = e,
            },
            (None, Err(e)) => seen = format!("bos: {e}"),
            (Some(_), _) => {}
        }
        if let Some(up) = up_at {
            match back(spec, m, up) {
                Ok(()) => return Ok(()),
                Err(e) => seen = e,
            }
        }
        std::thread::sleep(POLL);
    }
    Err(format!(
        "not back within {} s of its restart: {seen}; nothing was removed",
        spec.wait.as_secs()
    ))
}

/// Once its processes run again (since `up`): a database server's quorum whole with it, a
/// file server's volserver answering.
fn back(spec: &Spec, m: &Machine, up: Instant) -> Result<(), String> {
    if let Some(addr) = &m.db {
        quorum_all(spec, addr, up.elapsed().as_secs() + 1)?;
    }
    if m.fs {
        running::volserver_answers(&spec.vos, &m.host).map_err(|e| format!("volserver: {e}"))?;
    }
    Ok(())
}

/// Every instance of `before` started again (its count of starts went up) and is running.
pub fn started_again(before: &[Instance], now: &[Instance]) -> Result<(), String> {
    for b in before {
        let n = now.iter().find(|n| n.name == b.name);
        match n {
            None => return Err(format!("{} is gone from bos status", b.name)),
            Some(n) if n.starts <= b.starts && n.started == b.started => {
                return Err(format!("{} not restarted yet", b.name))
            }
            Some(n) if !n.running => return Err(format!("{} not running", n.name)),
            Some(_) => {}
        }
    }
    Ok(())
}

/// Both ubik services of the database server at `addr` have a recovered sync site that
/// counts `addr`'s vote, cast within the last `since` seconds.
fn quorum_all(spec: &Spec, addr: &str, since: u64) -> Result<(), String> {
    for (service, port) in UBIK {
        let sync = running::sync_site(&spec.udebug, addr, port, spec.deadline)
            .map_err(|e| format!("{service} at {addr}: {e}"))?;
        let f = child::run(&spec.udebug, &[&sync, port], &[], spec.deadline, 64 * 1024)
            .map_err(|e| format!("{service} sync site {sync}: {e}"))?;
        let me = (sync != addr).then_some(addr);
        quorum(&f.stdout, me, since).map_err(|e| format!("{service} sync site {sync}: {e}"))?;
    }
    Ok(())
}

/// A sync site's udebug answer: recovered, and (unless `addr` is the sync site itself)
/// `addr` voting yes with a current database, its last vote at most `since` seconds old.
pub fn quorum(text: &str, addr: Option<&str>, since: u64) -> Result<(), String> {
    if !text.lines().any(|l| l.trim().starts_with("I am sync site")) {
        return Err("no longer the sync site".into());
    }
    match text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Recovery state "))
    {
        Some(s) if s.trim() == "1f" => {}
        Some(s) => return Err(format!("recovery state {} (not 1f yet)", s.trim())),
        None => return Err("no recovery state".into()),
    }
    let Some(addr) = addr else { return Ok(()) };
    let head = format!("Server ({addr}):");
    let block: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with(&head))
        .take_while(|l| l.starts_with(&head) || l.starts_with(' '))
        .collect();
    if block.is_empty() {
        return Err(format!("{addr} not among its servers"));
    }
    let block = block.join(" ");
    let age = block
        .split("last vote rcvd ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse::<u64>().ok());
    match age {
        Some(a) if a <= since => {}
        Some(a) => {
            return Err(format!(
                "{addr}'s last vote is {a} s old (before its restart)"
            ))
        }
        None => return Err(format!("no vote from {addr} yet")),
    }
    if !block.contains("last vote was yes") {
        return Err(format!("{addr} does not vote yes"));
    }
    if !block.contains("dbcurrent=1") {
        return Err(format!("{addr}'s database is not current yet"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::running::fixture;

    #[test]
    fn bos_status_long_from_the_live_cell() {
        let v = parse_status(&fixture("bos_status_long_fs.stdout"));
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].name, "fs");
        assert!(v[0].running);
        assert_eq!(v[0].starts, Some(2));
        assert!(v[0].started.is_some());
        let later = [Instance {
            starts: Some(3),
            ..v[0].clone()
        }];
        assert_eq!(started_again(&v, &later), Ok(()));
        assert!(started_again(&v, &v)
            .unwrap_err()
            .contains("not restarted yet"));
        let salvaging = fixture("bos_status_long_fs.stdout")
            .replace("file server running.", "salvaging file system.");
        let s = parse_status(&salvaging);
        assert!(!s[0].running, "{s:?}");
        let later = [Instance {
            starts: Some(3),
            ..s[0].clone()
        }];
        assert!(started_again(&v, &later)
            .unwrap_err()
            .contains("not running"));
        let since = v[0].started.unwrap() - chrono::Duration::seconds(1);
        assert!(no_restart_needed(&v, since).is_some());
        assert_eq!(
            no_restart_needed(&v, since + chrono::Duration::seconds(2)),
            None
        );
        assert!(no_restart_needed(&[], since).is_some());
    }

    #[test]
    fn quorum_from_the_live_cells_sync_site() {
        let sync = fixture("udebug_sync_7002.stdout");
        assert_eq!(quorum(&sync, None, 10), Ok(()));
        assert_eq!(quorum(&sync, Some("10.78.0.2"), 10), Ok(()));
        // the vote was 3 s old: older than a restart 2 s ago
        assert!(quorum(&sync, Some("10.78.0.2"), 2)
            .unwrap_err()
            .contains("before its restart"));
        assert!(quorum(&sync, Some("10.78.0.9"), 10)
            .unwrap_err()
            .contains("not among"));
        let nonsync = fixture("udebug_nonsync_7002.stdout");
        assert!(quorum(&nonsync, None, 10).is_err());
        let recovering = sync.replace("Recovery state 1f", "Recovery state 7");
        assert!(quorum(&recovering, None, 10)
            .unwrap_err()
            .contains("not 1f"));
        let no = sync.replacen("last vote was yes", "last vote was no", 2);
        assert!(quorum(&no, Some("10.78.0.2"), 10)
            .unwrap_err()
            .contains("does not vote yes"));
    }

    #[test]
    fn the_plan_names_each_command() {
        let m = [Machine {
            name: "db2".into(),
            host: "10.78.0.2".into(),
            db: Some("10.78.0.2".into()),
            fs: false,
        }];
        let p = plan(&m);
        assert_eq!(
            p[0].command,
            "bos restart -server 10.78.0.2 -all -localauth"
        );
        assert!(p[0].waits_for.contains("udebug 10.78.0.2 7002"));
    }
}

//! Cells whose servers pull the control machine's conf dir through the Update Server
//! (`upserver` on the control machine, `upclientetc` on every other server). afskeys never
//! writes to such servers: it learns whether each one has fetched the control machine's
//! KeyFile and KeyFileExt from `bos getdate -noauth` (whole seconds, no size; upclient copies
//! each file's mtime, so after a fetch the dates are equal), and pauses or resumes a server's
//! upclient through `bos stop`/`bos start -localauth` for emergency edits.

use super::FleetError;
use chrono::{DateTime, NaiveDateTime, Utc};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The files upclient must have fetched before the afs entry may move.
pub const FETCHED_FILES: [&str; 2] = ["KeyFile", "KeyFileExt"];

/// A server fed by upclient.
#[derive(Debug, Clone)]
pub struct Upclient {
    pub name: String,
    /// The host `bos -server` reaches.
    pub host: String,
}

/// The Update Server as afskeys sees it.
#[derive(Debug, Clone)]
pub struct Upserver {
    /// upclient's `-t`.
    pub interval: Duration,
    /// How long a rotation waits for every server to fetch.
    pub deadline: Duration,
    /// How often the fetch state is polled while waiting.
    pub poll: Duration,
    /// The servers' conf dir (`bos getdate -dir`).
    pub dir: PathBuf,
    pub bos: PathBuf,
    /// The bos instance running upclient for the conf dir (`upclientetc`).
    pub instance: String,
    pub clients: Vec<Upclient>,
}

/// What one server holds of the control machine's files, by date.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchState {
    /// Both files carry the control machine's dates (whole seconds).
    Fetched,
    /// A date differs: the server has not fetched the change made at `since` (the control
    /// machine's newest file date), or was edited by hand.
    Behind { since: DateTime<Utc> },
    /// bos did not answer.
    Unreachable(String),
}

impl FetchState {
    /// `fetched`, `behind since T`, `unreachable (why)`.
    pub fn describe(&self) -> String {
        match self {
            FetchState::Fetched => "fetched".into(),
            FetchState::Behind { since } => {
                format!("behind since {}", crate::time::fmt_time(*since))
            }
            FetchState::Unreachable(why) => format!("unreachable ({why})"),
        }
    }
}

/// A file's mtime in whole seconds since the epoch, absent as None.
fn secs_of(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The control machine's dates of `FETCHED_FILES` (whole seconds; None: absent).
pub fn control_dates(confdir: &Path) -> [Option<i64>; 2] {
    FETCHED_FILES.map(|f| {
        std::fs::metadata(confdir.join(f))
            .and_then(|m| m.modified())
            .ok()
            .map(secs_of)
    })
}

/// Parse `bos getdate` output (run with TZ=UTC): one line per file,
/// `File DIR/NAME dated Tue Dec  1 23:50:35 2026, no .BAK file, no .OLD file.` or
/// `File DIR/NAME does not exist, …`.
pub fn parse_getdate(out: &str) -> [Option<i64>; 2] {
    let mut dates = [None, None];
    for line in out.lines() {
        let Some(rest) = line.strip_prefix("File ") else {
            continue;
        };
        let Some((path, tail)) = rest.split_once(' ') else {
            continue;
        };
        let Some(i) = FETCHED_FILES
            .iter()
            .position(|f| path.rsplit('/').next() == Some(*f))
        else {
            continue;
        };
        let Some(date) = tail.strip_prefix("dated ") else {
            continue;
        };
        let date = date.split(',').next().unwrap_or("");
        let date = date.split_whitespace().collect::<Vec<_>>().join(" ");
        dates[i] = NaiveDateTime::parse_from_str(&date, "%a %b %e %H:%M:%S %Y")
            .ok()
            .map(|d| d.and_utc().timestamp());
    }
    dates
}

/// `Process last started at Wed Dec  2 00:09:44 2026 (1 proc starts)` (TZ=UTC).
pub fn parse_started(out: &str) -> Option<DateTime<Utc>> {
    let rest = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("Process last started at "))?;
    let date = rest.split(" (").next()?;
    let date = date.split_whitespace().collect::<Vec<_>>().join(" ");
    NaiveDateTime::parse_from_str(&date, "%a %b %e %H:%M:%S %Y")
        .ok()
        .map(|d| d.and_utc())
}

/// Compare a server's dates with the control machine's.
pub fn judge(control: [Option<i64>; 2], server: [Option<i64>; 2]) -> FetchState {
    if control == server {
        return FetchState::Fetched;
    }
    let newest = control.iter().flatten().max().copied().unwrap_or(0);
    FetchState::Behind {
        since: DateTime::from_timestamp(newest, 0).unwrap_or_default(),
    }
}

/// Why a bos command gave no answer (the text goes into a `FleetError` naming the server).
#[derive(Debug, thiserror::Error)]
enum BosError {
    #[error("cannot run {}: {source}", path.display())]
    Spawn {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Wait(#[source] std::io::Error),
    #[error("bos did not answer within 60 s")]
    Timeout,
    #[error("bos exited with {0}")]
    Status(std::process::ExitStatus),
    /// The first line bos wrote to stderr.
    #[error("{0}")]
    Said(String),
}

impl Upserver {
    /// Run bos with `args`, TZ=UTC (its dates are local time), killed after 60 s (with
    /// `child::run`: its output drained while it runs, and capped).
    fn bos(&self, args: &[&str]) -> Result<String, BosError> {
        use crate::child::{self, ChildError};
        let out = child::run(
            &self.bos,
            args,
            &[("TZ", "UTC")],
            Duration::from_secs(60),
            child::OUTPUT_CAP,
        )
        .map_err(|e| match e {
            ChildError::Spawn { program, source } => BosError::Spawn {
                path: program,
                source,
            },
            ChildError::Timeout { .. } => BosError::Timeout,
            ChildError::Wait { source, .. } => BosError::Wait(source),
        })?;
        if !out.status.success() {
            let err = out.stderr.lines().next().unwrap_or("").trim();
            return Err(if err.is_empty() {
                BosError::Status(out.status)
            } else {
                BosError::Said(err.to_string())
            });
        }
        Ok(out.stdout)
    }

    /// One server's dates of `FETCHED_FILES`, by `bos getdate -noauth`.
    pub fn server_dates(&self, c: &Upclient) -> Result<[Option<i64>; 2], FleetError> {
        let dir = self.dir.to_string_lossy();
        let mut args = vec!["getdate", "-server", &c.host, "-dir", &dir, "-file"];
        args.extend(FETCHED_FILES);
        args.push("-noauth");
        let out = self
            .bos(&args)
            .map_err(|e| FleetError::new(&c.name, e.to_string()))?;
        Ok(parse_getdate(&out))
    }

    /// Every server's fetch state against the control machine's conf dir, asked at once.
    pub fn fetch_states(&self, control: &Path) -> Vec<(String, FetchState)> {
        let mine = control_dates(control);
        std::thread::scope(|s| {
            let handles: Vec<_> = self
                .clients
                .iter()
                .map(|c| s.spawn(move || self.server_dates(c)))
                .collect();
            self.clients
                .iter()
                .zip(handles)
                .map(|(c, h)| {
                    let state = match h.join() {
                        Ok(Ok(theirs)) => judge(mine, theirs),
                        Ok(Err(e)) => FetchState::Unreachable(e.message),
                        Err(_) => FetchState::Unreachable("bos getdate panicked".into()),
                    };
                    (c.name.clone(), state)
                })
                .collect()
        })
    }

    /// Wait until every server has fetched the control machine's files, polling, or the
    /// deadline passes. Returns the servers that have not, with why.
    pub fn wait_fetched(&self, control: &Path) -> Vec<(String, String)> {
        let start = Instant::now();
        loop {
            let states = self.fetch_states(control);
            let behind: Vec<(String, String)> = states
                .into_iter()
                .filter(|(_, s)| *s != FetchState::Fetched)
                .map(|(n, s)| (n, s.describe()))
                .collect();
            if behind.is_empty() || start.elapsed() + self.poll > self.deadline {
                return behind;
            }
            std::thread::sleep(self.poll);
        }
    }

    /// When each server's upclient instance last started (`bos status -long -noauth`), in
    /// the order of `clients`; None where bos did not say.
    pub fn started_all(&self) -> Vec<Option<DateTime<Utc>>> {
        std::thread::scope(|s| {
            let handles: Vec<_> = self
                .clients
                .iter()
                .map(|c| {
                    s.spawn(move || {
                        let args = [
                            "status",
                            "-server",
                            &c.host,
                            "-instance",
                            &self.instance,
                            "-long",
                            "-noauth",
                        ];
                        self.bos(&args).ok().and_then(|o| parse_started(&o))
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().ok().flatten())
                .collect()
        })
    }

    /// The server of this name, if upclient feeds it.
    pub fn client(&self, name: &str) -> Option<&Upclient> {
        self.clients.iter().find(|c| c.name == name)
    }

    /// Stop (`false`) or start (`true`) a server's upclient instance through bos, with the
    /// control machine's own keys (`-localauth`). Starting also restarts it: upclient builds
    /// its credentials once, when it starts, so a running one keeps stale ones.
    pub fn set_running(&self, c: &Upclient, run: bool) -> Result<(), FleetError> {
        let verbs: &[&str] = if run {
            &["start", "restart"]
        } else {
            &["stop"]
        };
        for verb in verbs {
            let mut args = vec![*verb, "-server", &c.host, "-instance", &self.instance];
            if !run {
                args.push("-wait");
            }
            args.push("-localauth");
            self.bos(&args).map_err(|e| {
                FleetError::new(&c.name, format!("bos {verb} {}: {e}", self.instance))
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn getdate_output_is_read_in_whole_seconds() {
        let out = "File /etc/openafs/server/KeyFile dated Tue Dec  1 23:50:35 2026, no .BAK \
                   file, no .OLD file.\nFile /etc/openafs/server/KeyFileExt dated Tue Dec 15 \
                   01:02:03 2026, no .BAK file, no .OLD file.\n";
        let d = parse_getdate(out);
        assert_eq!(
            d[0],
            Some(
                NaiveDateTime::parse_from_str("2026-12-01 23:50:35", "%Y-%m-%d %H:%M:%S")
                    .unwrap()
                    .and_utc()
                    .timestamp()
            )
        );
        assert!(d[1].is_some());
        let missing = parse_getdate(
            "File /x/KeyFile does not exist, no .BAK file, no .OLD file.\n\
             File /x/KeyFileExt dated Tue Dec  1 23:50:35 2026, no .BAK file, no .OLD file.\n",
        );
        assert_eq!(missing[0], None);
        assert_eq!(missing[1], d[0]);
    }

    #[test]
    fn the_upclient_start_is_read_from_bos_status() {
        let out = "Instance upclientetc, (type is simple) currently running normally.\n    \
                   Process last started at Wed Dec  2 00:09:44 2026 (1 proc starts)\n    \
                   Command 1 is '/usr/lib/openafs/upclient 10.77.0.1 -crypt -t 3 /x'\n";
        let t = parse_started(out).unwrap();
        assert_eq!(t.to_rfc3339(), "2026-12-02T00:09:44+00:00");
        assert_eq!(parse_started("Instance upclientetc, disabled"), None);
    }

    #[test]
    fn equal_dates_are_fetched_and_others_behind_since_the_newest() {
        assert_eq!(
            judge([Some(5), Some(9)], [Some(5), Some(9)]),
            FetchState::Fetched
        );
        let b = judge([Some(5), Some(9)], [Some(5), Some(7)]);
        assert_eq!(
            b,
            FetchState::Behind {
                since: DateTime::from_timestamp(9, 0).unwrap()
            }
        );
        assert!(judge([Some(5), Some(9)], [None, None]) != FetchState::Fetched);
    }
}

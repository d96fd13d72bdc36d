//! `status` and `check`: the cell's state (keys with their roles, the afs entry, every
//! server, the rotation in progress) and its verdict for cron and Nagios.

use super::authdb::EntryView;
use super::{CellPaths, KeyView};
use crate::error::Error;
use crate::fleet::upserver::FetchState;
use crate::keys::KeyId;
use crate::policy::{grace_for, Grace, GraceSource, Role};
use crate::rotation::status::{gather, judge, Level, ServerState, Status};
use crate::time::fmt_time;
use chrono::Utc;
use serde::Serialize;

/// Everything `status` shows.
#[derive(Debug, Serialize)]
pub struct StatusReport {
    pub cell: String,
    pub authdb: String,
    /// The entry, `null` when there is none yet, or `{"error": …}` when unreadable.
    pub afs_entry: Option<EntryState>,
    pub keys: Vec<RoleKey>,
    pub servers: Vec<ServerView>,
    pub rotation: Option<RotationView>,
    pub next_rotation_due: Option<String>,
    /// The grace retiring keys keep, and where it comes from.
    pub grace: GraceView,
    /// Cells fed by the Update Server: what each server has fetched (by `bos getdate`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fetch: Option<Vec<FetchView>>,
    /// The machines the cell names (CellServDB, the VLDB) and how each is accounted for.
    pub inventory: crate::inventory::Inventory,
    pub check: CheckReport,
}

/// One upclient-fed server's fetch state.
#[derive(Debug, Serialize)]
pub struct FetchView {
    pub name: String,
    /// `fetched`, `behind` or `unreachable`.
    pub state: &'static str,
    /// For `behind`: the change it has not fetched (the control machine's file date).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// In words: `fetched`, `behind since T`, `unreachable (why)`.
    #[serde(skip)]
    pub text: String,
}

pub(crate) fn fetch_view(name: &str, f: &FetchState) -> FetchView {
    let (state, since, error) = match f {
        FetchState::Fetched => ("fetched", None, None),
        FetchState::Behind { since } => ("behind", Some(fmt_time(*since)), None),
        FetchState::Unreachable(e) => ("unreachable", None, Some(e.clone())),
    };
    FetchView {
        name: name.to_string(),
        state,
        since,
        error,
        text: f.describe(),
    }
}

/// The grace before a retiring key becomes removable.
#[derive(Debug, Serialize)]
pub struct GraceView {
    /// `None` when the grace is unknown (it does not end until token_lifetime is set).
    pub seconds: Option<i64>,
    /// `config` (token_lifetime in afskeys.toml), `default`, `kdc`, or `unknown` (a KDC that
    /// sets no maximum ticket life of the afs principal's own).
    pub source: &'static str,
    /// The KDC's principal, maximum ticket life and clock skew (seconds), for `kdc`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_ticket_life: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clock_skew: Option<i64>,
    /// In words: `10h5m (max ticket life 10h of afs/… in the KDC, plus 5m clock skew)`.
    pub text: String,
}

impl GraceView {
    fn of(g: &Grace) -> GraceView {
        let (source, principal, max, skew) = match &g.source {
            GraceSource::Config => ("config", None, None, None),
            GraceSource::Default => ("default", None, None, None),
            GraceSource::Kdc {
                principal,
                max_ticket_life,
                clock_skew,
            } => (
                "kdc",
                Some(principal.clone()),
                Some(max_ticket_life.num_seconds()),
                Some(clock_skew.num_seconds()),
            ),
            GraceSource::Unknown { principal } => ("unknown", Some(principal.clone()), None, None),
        };
        GraceView {
            seconds: (source != "unknown").then(|| g.duration.num_seconds()),
            source,
            principal,
            max_ticket_life: max,
            clock_skew: skew,
            text: g.describe(),
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum EntryState {
    Entry(EntryView),
    Unreadable { error: String },
}

/// A control-machine key and what it is to the cell.
#[derive(Debug, Serialize)]
pub struct RoleKey {
    #[serde(flatten)]
    pub key: KeyView,
    /// current, incoming, retiring, removable, unused, unknown.
    pub role: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub removable_after: Option<String>,
    /// The role in words (`retiring until …`).
    #[serde(skip)]
    pub role_text: String,
}

/// One server's keys (checksums only), or why they could not be read.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum ServerView {
    Read {
        name: String,
        ok: bool,
        /// Holds other keys than the control machine (the incoming kvno aside).
        disagrees: bool,
        keys: Vec<ServerKey>,
    },
    Unreadable {
        name: String,
        ok: bool,
        error: String,
    },
}

#[derive(Debug, Serialize)]
pub struct ServerKey {
    pub kvno: i32,
    #[serde(rename = "type")]
    pub key_type: &'static str,
    pub enctype: Option<i32>,
    pub cksum: Option<u32>,
}

#[derive(Debug, Serialize)]
pub struct RotationView {
    pub kvno: i32,
    pub step: &'static str,
    pub started: String,
    pub updated: String,
    /// Servers that lacked the new key at the last attempt, with why.
    pub missing: Vec<(String, String)>,
}

/// The one-line verdict: `AFSKEYS <LEVEL> - <what>`.
#[derive(Debug, Serialize)]
pub struct CheckReport {
    #[serde(rename = "level")]
    pub level_name: &'static str,
    pub line: String,
    #[serde(skip)]
    pub level: Level,
}

fn server_view(s: &Status, srv: &ServerState) -> ServerView {
    let key = |(id, cksum): &(KeyId, Option<u32>)| ServerKey {
        kvno: id.kvno,
        key_type: id.key_type.name(),
        enctype: id.key_type.is_typed().then_some(id.subtype),
        cksum: *cksum,
    };
    match &srv.keys {
        Ok(keys) => ServerView::Read {
            name: srv.name.clone(),
            ok: true,
            disagrees: s.disagrees(srv),
            keys: keys.iter().map(key).collect(),
        },
        Err(e) => ServerView::Unreadable {
            name: srv.name.clone(),
            ok: false,
            error: e.clone(),
        },
    }
}

fn role_key(k: &crate::keys::Key, r: &Role) -> RoleKey {
    RoleKey {
        key: KeyView::of(k, false),
        role: r.name(),
        removable_after: match r {
            Role::Retiring { until } if *until < chrono::DateTime::<chrono::Utc>::MAX_UTC => {
                Some(fmt_time(*until))
            }
            _ => None,
        },
        role_text: r.describe(),
    }
}

/// `status`.
pub fn status(paths: &CellPaths) -> Result<StatusReport, Error> {
    let cell = paths.open()?;
    let s = gather(&cell, Utc::now());
    let v = judge(&s);
    Ok(StatusReport {
        cell: s.cell.clone(),
        authdb: s.authdb.clone(),
        afs_entry: match &s.entry {
            Ok(Some(e)) => Some(EntryState::Entry(EntryView::of(e))),
            Ok(None) => None,
            Err(e) => Some(EntryState::Unreadable {
                error: e.to_string(),
            }),
        },
        keys: s.keys.iter().map(|(k, r)| role_key(k, r)).collect(),
        servers: s.servers.iter().map(|srv| server_view(&s, srv)).collect(),
        rotation: s.rotation().map(|r| RotationView {
            kvno: r.kvno,
            step: r.step.name(),
            started: fmt_time(r.started),
            updated: fmt_time(r.updated),
            missing: r.missing.clone(),
        }),
        next_rotation_due: s.next_due().map(fmt_time),
        grace: GraceView::of(&grace_for(&cell.policy, s.current())),
        fetch: s
            .fetch
            .as_ref()
            .map(|(v, _)| v.iter().map(|r| fetch_view(&r.name, &r.state)).collect()),
        inventory: s.inventory.clone(),
        check: CheckReport {
            level_name: v.level.name(),
            line: v.line(),
            level: v.level,
        },
    })
}

/// `check`: never fails; a cell that cannot be opened is UNKNOWN.
pub fn check(paths: &CellPaths) -> CheckReport {
    let (level, line) = match paths.open() {
        Err(e) => (Level::Unknown, format!("AFSKEYS UNKNOWN - {e}")),
        Ok(cell) => {
            let v = judge(&gather(&cell, Utc::now()));
            (v.level, v.line())
        }
    };
    CheckReport {
        level_name: level.name(),
        line,
        level,
    }
}

//! Emergency edits on a server fed by the Update Server: its upclientetc overwrites the
//! server's KeyFiles from the control machine at its next fetch, so afskeys warns, and on
//! request stops that instance through bos before the edit (`--upclient-pause`, left stopped
//! until the control machine holds what the server should) or starts it again after the edit
//! (`--upclient-resume`). Also the guard `prune` and `remove` share: the upclients that
//! removing an older key would lock out (they build their credentials once, at start), and
//! (`prune --restart-upclients`) restarting them.

use super::edit::Target;
use super::Warn;
use crate::cell::Cell;
use crate::error::Error;
use crate::fleet::upserver::{FetchState, Upclient, Upserver};

/// What to do with the edited server's upclientetc.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum UpclientAction {
    /// Leave it as it is (warned about when it feeds the server).
    #[default]
    Leave,
    /// Stop it through bos before the edit, and leave it stopped.
    Pause,
    /// Start it through bos after the edit.
    Resume,
}

/// An upclient this edit acts on: restarted if the edit fails after a pause, or started
/// after a successful edit with `Resume`.
pub struct Acting<'a> {
    up: &'a Upserver,
    client: &'a Upclient,
    action: UpclientAction,
}

/// Before an emergency edit on `target`: warn when upclient feeds it, stop it if asked.
pub fn before_edit<'a>(
    cell: &'a Cell,
    target: &Target,
    action: UpclientAction,
    warn: Warn,
) -> Result<Option<Acting<'a>>, Error> {
    let Target::Server(s) = target else {
        return Ok(None);
    };
    let Some((up, client)) = cell
        .upserver
        .as_ref()
        .and_then(|up| up.client(s.name()).map(|c| (up, c)))
    else {
        return Ok(None);
    };
    match action {
        UpclientAction::Leave => {
            warn(&format!(
                "{} is fed by the Update Server ([distribution] in afskeys.toml): its \
                 upclientetc replaces this edit within {} unless stopped; \
                 --upclient-pause stops it through bos first",
                client.name,
                humantime::format_duration(up.interval)
            ));
            return Ok(None);
        }
        UpclientAction::Pause => {
            up.set_running(client, false).map_err(Error::failed_by)?;
            warn(&format!(
                "stopped {}'s upclientetc through bos; it stays stopped: once the control \
                 machine holds the keys this server should hold, start it again (an edit with \
                 --upclient-resume, or `bos start -server {} -instance {} -localauth`)",
                client.name, client.host, up.instance
            ));
        }
        UpclientAction::Resume => {}
    }
    Ok(Some(Acting { up, client, action }))
}

/// After the edit: start the upclient again when asked, or when the edit failed after a
/// pause (the server is unchanged, so nothing needs protecting).
pub fn after_edit(
    cell: &Cell,
    target: &Target,
    acting: Option<Acting>,
    edited: bool,
    warn: Warn,
) -> Result<(), Error> {
    let Some(a) = acting else {
        return Ok(());
    };
    if a.action == UpclientAction::Resume || !edited {
        if let (Target::Server(s), Some(kvno)) = (target, newest_unknown(cell, target)) {
            warn(&format!(
                "{}'s newest key, kvno {kvno}, is not on the control machine: its upclient \
                 authenticates with it and upserver refuses it (upclient logs `Operation not \
                 permitted calling FetchFile`) until that server's newest key is one the \
                 control machine holds",
                s.name()
            ));
        }
        a.up.set_running(a.client, true).map_err(Error::failed_by)?;
        warn(&format!(
            "started {}'s upclientetc again through bos: it fetches the control machine's \
             conf dir within {}",
            a.client.name,
            humantime::format_duration(a.up.interval)
        ));
    }
    Ok(())
}

/// The target server's newest kvno when the control machine lacks any of its keys there (an
/// upclient started on that server is locked out), else None.
fn newest_unknown(cell: &Cell, target: &Target) -> Option<i32> {
    let Target::Server(s) = target else {
        return None;
    };
    let theirs = s.read_keys().ok()?;
    let mine = cell.control.read().ok()?.keys;
    // The kvno its upclient authenticates with: the newest of the afs key types.
    let top = theirs.max_afs_kvno()?;
    let newest: Vec<_> = theirs
        .iter()
        .filter(|k| k.kvno() == top && k.key_type() != crate::keys::KeyType::Rxgk)
        .cloned()
        .collect();
    (!crate::fleet::holds(&mine, &newest)).then_some(top)
}

/// An upclient that removing older keys from the control machine would lock out, and why.
#[derive(Debug, Clone)]
pub struct Lockout {
    pub name: String,
    pub host: String,
    pub why: String,
    /// Not fetched (or unknown): `bos -localauth` cannot restart it before it has fetched
    /// (its bosserver lacks the control machine's newest key), and a restart before then
    /// would build its credentials from the old keys again.
    pub behind: bool,
}

/// The upclients that still need a key older than the current kvno `current` (which became
/// current at `since`): started before then (their credentials hold an older key), behind
/// (their server lacks the current keys) or unreachable through bos (unknown).
pub fn lockouts(
    cell: &Cell,
    up: &Upserver,
    current: i32,
    since: chrono::DateTime<chrono::Utc>,
) -> Vec<Lockout> {
    let states = up.fetch_states(cell.control.path());
    let started = up.started_all();
    up.clients
        .iter()
        .zip(states)
        .zip(started)
        .filter_map(|((c, (_, state)), started)| {
            let (why, behind) = lockout(&state, started, &up.instance, current, since)?;
            Some(Lockout {
                name: c.name.clone(),
                host: c.host.clone(),
                why,
                behind,
            })
        })
        .collect()
}

/// Why one upclient would be locked out (and whether its server is behind), from its fetch
/// state and when its `instance` last started; None when it is safe: fetched, and started
/// after kvno `current` became current at `since`.
fn lockout(
    state: &FetchState,
    started: Option<chrono::DateTime<chrono::Utc>>,
    instance: &str,
    current: i32,
    since: chrono::DateTime<chrono::Utc>,
) -> Option<(String, bool)> {
    Some(match (state, started) {
        (FetchState::Unreachable(e), _) => (format!("fetch state unknown: {e}"), true),
        (FetchState::Behind { .. }, _) => (
            format!(
                "{}: its server lacks the control machine's current KeyFiles",
                state.describe()
            ),
            true,
        ),
        (FetchState::Fetched, None) => (
            format!("the start time of its {instance} is unknown (bos status -long gave none)"),
            false,
        ),
        (FetchState::Fetched, Some(t)) if t < since => (
            format!(
                "its {instance} started {}, before kvno {current} became current: it still \
                 authenticates with an older key",
                crate::time::fmt_time(t)
            ),
            false,
        ),
        (FetchState::Fetched, Some(_)) => return None,
    })
}

/// The guard `prune` and `remove` share: what removing kvnos from the control machine would
/// do to the upclients. One judgement for both commands.
pub struct LockedOut<'a> {
    pub up: &'a Upserver,
    /// The upclients locked out, each with why (see [`lockouts`]).
    pub locked: Vec<Lockout>,
    /// The kvnos at stake, as the message names them (`1, 3`).
    pub kvnos: String,
}

/// The kvnos of `kvnos` an upclient may still authenticate with: those below the current
/// kvno (an upclient started before `current` became current, or on a server that is behind,
/// built its credentials from an older key), sorted, each once, as the message names them;
/// None when there are none.
fn at_stake(kvnos: &[i32], current: i32) -> Option<String> {
    let mut v: Vec<i32> = kvnos.iter().copied().filter(|&k| k < current).collect();
    v.sort_unstable();
    v.dedup();
    (!v.is_empty()).then(|| {
        v.iter()
            .map(|k| k.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    })
}

/// Would removing `kvnos` from the control machine lock out an upclient? In an Update Server
/// cell with an afs entry (current kvno `current` since `since`), when some of `kvnos` are
/// below the current kvno: the upclients [`lockouts`] names (started before then, behind, or
/// unknown). None when nothing is at stake or no upclient would be locked out.
pub fn removal_lockouts<'a>(
    cell: &'a Cell,
    kvnos: &[i32],
    (current, since): (i32, chrono::DateTime<chrono::Utc>),
) -> Option<LockedOut<'a>> {
    let up = cell.upserver.as_ref()?;
    let kvnos = at_stake(kvnos, current)?;
    let locked = lockouts(cell, up, current, since);
    (!locked.is_empty()).then_some(LockedOut { up, locked, kvnos })
}

/// Why removing kvnos would lock out upclients, naming each with its `bos restart` line.
#[derive(Debug, thiserror::Error)]
#[error(
    "removing kvno {kvnos} would lock out upclients that still need it: {each}; restart \
     them through bos first, or run `afskeys prune --restart-upclients`, which restarts \
     them and waits until each has fetched"
)]
pub struct LockoutReason {
    kvnos: String,
    each: String,
}

impl LockedOut<'_> {
    /// Why, as `prune` and `remove` say it.
    pub fn reason(&self) -> LockoutReason {
        lockout_reason(self.up, &self.locked, &self.kvnos)
    }

    /// The refusal (`refused: ` and the reason).
    pub fn refusal(&self) -> Error {
        Error::refused(self.reason().to_string())
    }
}

fn lockout_reason(up: &Upserver, locked: &[Lockout], kvnos: &str) -> LockoutReason {
    let each = locked
        .iter()
        .map(|l| {
            format!(
                "{} ({}; `bos restart -server {} -instance {} -localauth`)",
                l.name, l.why, l.host, up.instance
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    LockoutReason {
        kvnos: kvnos.to_string(),
        each,
    }
}

/// `prune --restart-upclients`: restart through bos each locked-out upclient whose server
/// has fetched; wait until the servers that are behind have fetched, then restart those (not
/// before: `bos -localauth` authenticates with the control machine's newest key, which a
/// server that is behind lacks, and its bosserver refuses it with "ticket contained unknown
/// key version number"); then look again. Returns the names restarted; what is still locked
/// out is refused.
pub fn restart_locked(
    cell: &Cell,
    up: &Upserver,
    locked: &[Lockout],
    (current, since): (i32, chrono::DateTime<chrono::Utc>),
    kvnos: &str,
    warn: Warn,
) -> Result<Vec<String>, Error> {
    let mut done = vec![];
    let mut restart = |names: Vec<&str>| -> Result<(), Error> {
        for c in names.iter().filter_map(|n| up.client(n)) {
            up.set_running(c, true).map_err(Error::failed_by)?;
            warn(&format!(
                "restarted {}'s {} through bos",
                c.name, up.instance
            ));
            done.push(c.name.clone());
        }
        Ok(())
    };
    restart(
        locked
            .iter()
            .filter(|l| !l.behind)
            .map(|l| l.name.as_str())
            .collect(),
    )?;
    if locked.iter().any(|l| l.behind) {
        let not = up.wait_fetched(cell.control.path());
        restart(
            locked
                .iter()
                .filter(|l| l.behind && !not.iter().any(|(n, _)| *n == l.name))
                .map(|l| l.name.as_str())
                .collect(),
        )?;
    }
    let left = lockouts(cell, up, current, since);
    if left.is_empty() {
        return Ok(done);
    }
    Err(Error::refused(lockout_reason(up, &left, kvnos).to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(s, 0).unwrap()
    }

    #[test]
    fn an_upclient_is_safe_only_when_fetched_and_started_after_the_current_kvno() {
        let since = at(1_000);
        let f = FetchState::Fetched;
        assert_eq!(lockout(&f, Some(at(1_000)), "upclientetc", 2, since), None);
        assert_eq!(lockout(&f, Some(at(2_000)), "upclientetc", 2, since), None);
        let (why, behind) = lockout(&f, Some(at(999)), "upclientetc", 2, since).unwrap();
        assert!(!behind);
        assert!(
            why.contains("started 1970-01-01T00:16:39Z, before kvno 2 became current"),
            "{why}"
        );
        let (why, behind) = lockout(&f, None, "upclientetc", 2, since).unwrap();
        assert!(!behind && why.contains("start time of its upclientetc is unknown"));
        let b = FetchState::Behind { since: at(5) };
        let (why, behind) = lockout(&b, Some(at(2_000)), "upclientetc", 2, since).unwrap();
        assert!(behind && why.starts_with("behind since"), "{why}");
        let u = FetchState::Unreachable("no route".into());
        let (why, behind) = lockout(&u, Some(at(2_000)), "upclientetc", 2, since).unwrap();
        assert!(behind && why == "fetch state unknown: no route", "{why}");
    }

    #[test]
    fn only_kvnos_below_the_current_one_are_at_stake_named_once_in_order() {
        // prune's removable keys and remove's --kvno list go through the same judgement.
        assert_eq!(at_stake(&[], 2), None);
        assert_eq!(
            at_stake(&[2], 2),
            None,
            "the current kvno is the policy's refusal"
        );
        assert_eq!(
            at_stake(&[3, 7], 2),
            None,
            "keys above the current one are unused"
        );
        assert_eq!(at_stake(&[1], 2).as_deref(), Some("1"));
        assert_eq!(at_stake(&[4, 1, 4, 7, 5], 6).as_deref(), Some("1, 4, 5"));
    }

    #[test]
    fn the_reason_names_each_server_why_and_its_bos_restart_line() {
        let up = Upserver {
            interval: std::time::Duration::from_secs(300),
            deadline: std::time::Duration::from_secs(900),
            poll: std::time::Duration::from_secs(30),
            dir: "/usr/afs/etc".into(),
            bos: "bos".into(),
            instance: "upclientetc".into(),
            clients: vec![],
        };
        let l = |n: &str, h: &str| Lockout {
            name: n.into(),
            host: h.into(),
            why: format!("why {n}"),
            behind: false,
        };
        let r = lockout_reason(&up, &[l("fs1", "10.0.0.1"), l("fs2", "10.0.0.2")], "1, 3");
        assert_eq!(
            r.to_string(),
            "removing kvno 1, 3 would lock out upclients that still need it: fs1 (why fs1; \
             `bos restart -server 10.0.0.1 -instance upclientetc -localauth`); fs2 (why fs2; \
             `bos restart -server 10.0.0.2 -instance upclientetc -localauth`); restart them \
             through bos first, or run `afskeys prune --restart-upclients`, which restarts \
             them and waits until each has fetched"
        );
    }
}

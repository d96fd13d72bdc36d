//! `add` and `remove`: one edit of the keys, on the control machine (locked, backed up) or,
//! as an emergency, on one server's own files; checked against the grace policy, logged in
//! the audit log, then copied to every other server (as the Update Server would), never
//! taking the afs entry's key off them.

pub use super::upclient::UpclientAction;
use super::{shown, CellPaths, KeyView, Secret, Warn};
use crate::authdb::AuthDbError;
use crate::cell::Cell;
use crate::checksum::checksum_text;
use crate::error::Error;
use crate::fleet::{KeyFiles, Server};
use crate::keygen::{self, Material};
use crate::keys::{Enctype, Key, KeySet, KeyType};
use crate::policy::removal_refusal;
use crate::store::ops::{self, Selector};
use crate::store::{EditReport, StoreError};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::path::PathBuf;

/// `id cksum N; …` for the audit log.
pub(crate) fn describe(keys: &[Key]) -> String {
    keys.iter()
        .map(|k| format!("{} cksum {}", k.id, checksum_text(k)))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Record a change made; a failure here says the change was made all the same.
pub(crate) fn audit(cell: &Cell, command: &str, detail: &str) -> Result<(), Error> {
    cell.audit.record(command, detail).map_err(|e| {
        Error::failed(format!(
            "the change was made ({command}: {detail}), but it could not be logged: {e}"
        ))
    })
}

/// Before a change, everything it may write is checked, or nothing is done: the control
/// machine's conf dir, key files and CellServDB, the journal and its lock, the audit log.
pub(crate) fn preflight(cell: &Cell) -> Result<(), Error> {
    cell.control.check_writable()?;
    cell.state.check_writable()?;
    cell.audit.preflight().map_err(Error::failed_by)
}

/// Where an edit happens: the control machine's conf dir (locked edit), or one server's own
/// files (an emergency edit: read, change, install).
pub enum Target<'a> {
    Control,
    Server(&'a dyn Server),
}

impl<'a> Target<'a> {
    /// `--server NAME` (none: the control machine). Another server is an emergency edit,
    /// and the operator is warned why.
    pub fn named(cell: &'a Cell, name: Option<&str>, warn: Warn) -> Result<Target<'a>, Error> {
        let Some(name) = name else {
            return Ok(Target::Control);
        };
        let s = cell.find_server(name)?;
        if s.name() == crate::cell::CONTROL {
            return Ok(Target::Control);
        }
        warn(&format!(
            "editing {}'s own KeyFiles (an emergency edit): its Update Server client \
             (upclientetc) overwrites them from the control machine unless it is stopped there, \
             and the next push or rotate replaces them",
            s.name()
        ));
        Ok(Target::Server(s))
    }

    fn edit<T>(
        &self,
        cell: &Cell,
        change: impl FnOnce(&mut KeySet, &str) -> Result<T, StoreError>,
    ) -> Result<(T, EditReport), Error> {
        match self {
            Target::Control => {
                let place = cell.control.path().display().to_string();
                Ok(cell.control.edit(|set| change(set, &place))?)
            }
            Target::Server(s) => {
                let read = s.read_keys()?;
                let mut set = read.clone();
                let out = change(&mut set, &format!("server {}", s.name()))?;
                crate::store::atomic::pause_point("edit:read");
                s.install_over(&KeyFiles::of(&set), &read)?;
                Ok((out, EditReport::default()))
            }
        }
    }

    fn label(&self) -> String {
        match self {
            Target::Control => String::new(),
            Target::Server(s) => format!(" --server {}", s.name()),
        }
    }
}

/// Add keys (see `store::ops::apply_add`), logged. Replacing a key removes the old one, so a
/// key in use — the afs entry's current key, a rotation's incoming key, a retiring key — is
/// never replaced: a new key takes a new kvno (`rotate`), an old one leaves with `remove`.
pub fn add_keys(
    cell: &Cell,
    target: &Target,
    keys: Vec<Key>,
    replace: bool,
    if_cksum: Option<&[u32]>,
    now: DateTime<Utc>,
) -> Result<(Vec<Key>, EditReport), Error> {
    preflight(cell)?;
    past_the_last_rotation(&keys)?;
    let _lock = cell.state.lock(true)?;
    // A key the cell's machines must all get: every machine the cell names accounted for.
    // (An emergency edit of one server's own files is exempt: it changes only that server.)
    if matches!(target, Target::Control) {
        cell.inventory_for_change("add")?;
    }
    // Adding a key at a new kvno needs no afs entry; replacing one does (below). A missing
    // auth DB in a cell with keys is therefore an error only when a key is replaced.
    let (entry, absent) = match cell.authdb.get() {
        Ok(e) => (e, None),
        Err(e @ (AuthDbError::Absent { .. } | AuthDbError::AbsentUnknown { .. })) => {
            (None, Some(e))
        }
        Err(e) => return Err(e.into()),
    };
    let state = cell.state.load()?;
    if entry.is_none() {
        state.check_entry_missing(&cell.authdb.describe())?;
    }
    let what = describe(&keys);
    let (replaced, report) = target.edit(cell, |set, place| {
        let mut kvnos: Vec<i32> = keys
            .iter()
            .filter(|k| set.get(&k.id).is_some())
            .map(|k| k.kvno())
            .collect();
        kvnos.dedup();
        // (without --replace, apply_add refuses a present key with its own message)
        let replacing = !kvnos.is_empty() && (replace || if_cksum.is_some());
        if let (Some(e), true) = (&absent, replacing) {
            return Err(StoreError::Failed(e.to_string()));
        }
        let refusals: Vec<String> = kvnos
            .iter()
            .filter_map(|&k| removal_refusal(k, entry.as_ref(), &state, &cell.policy, now))
            .collect();
        if !refusals.is_empty() {
            return Err(StoreError::Refused(format!(
                "replacing a key removes the old one, and {}. A new key takes a new kvno \
                 (`afskeys rotate`); an old one leaves with `afskeys remove`",
                refusals.join("; ")
            )));
        }
        ops::apply_add(set, keys, replace, if_cksum, place)
    })?;
    let mut detail = format!("added {what}");
    if !replaced.is_empty() {
        detail.push_str(&format!(" replacing {}", describe(&replaced)));
    }
    audit(cell, &format!("add{}", target.label()), &detail)?;
    Ok((replaced, report))
}

/// Remove the keys each selector picks — all or none — unless the grace policy forbids
/// one of them, or (on the control machine of an Update Server cell) an upclient may still
/// authenticate with one (`prune`'s judgement, [`super::upclient::removal_lockouts`]).
/// `emergency` (the reason) overrides both and is logged. Returns the keys removed, the
/// edit, and the refusals overridden.
pub fn remove_keys(
    cell: &Cell,
    target: &Target,
    sels: &[Selector],
    how: &Removal,
    now: DateTime<Utc>,
    warn: Warn,
) -> Result<Removed, Error> {
    let (if_cksum, emergency) = (how.if_cksum, how.emergency);
    preflight(cell)?;
    let _lock = cell.state.lock(true)?;
    let entry = cell.authdb.get()?;
    let state = cell.state.load()?;
    if entry.is_none() {
        state.check_entry_missing(&cell.authdb.describe())?;
    }
    let mut refusals: Vec<String> = sels
        .iter()
        .filter_map(|s| removal_refusal(s.kvno, entry.as_ref(), &state, &cell.policy, now))
        .collect();
    // On the control machine of an Update Server cell, `prune`'s guard: an upclient that
    // still authenticates with a removed kvno would be locked out (an emergency `--server`
    // edit has its own warnings).
    if let (Target::Control, Some(e)) = (target, &entry) {
        let kvnos: Vec<i32> = sels.iter().map(|s| s.kvno).collect();
        if let Some(l) = super::upclient::removal_lockouts(cell, &kvnos, (e.kvno, e.changed)) {
            refusals.push(l.reason().to_string());
        }
    }
    if !refusals.is_empty() && emergency.is_none() {
        return Err(Error::refused(format!(
            "{}. To remove it anyway: --emergency --reason \"...\"",
            refusals.join("; ")
        )));
    }
    let since = entry.as_ref().map(|e| e.changed);
    let restarts = restarts_before(cell, target, sels, since, how.restarts, warn)?;
    let (removed, report) = target.edit(cell, |set, place| {
        let mut all = Vec::new();
        for s in sels {
            all.extend(ops::apply_remove(set, *s, if_cksum, place)?);
        }
        Ok(all)
    })?;
    let (command, detail) = match emergency {
        Some(reason) if !refusals.is_empty() => (
            format!("remove{} --emergency", target.label()),
            format!(
                "removed {} despite: {}; reason: {reason}",
                describe(&removed),
                refusals.join("; ")
            ),
        ),
        _ => (
            format!("remove{}", target.label()),
            format!("removed {}", describe(&removed)),
        ),
    };
    audit(cell, &command, &detail)?;
    Ok((removed, report, refusals, restarts))
}

/// The restarts a removal of `sels` from `target` needs, made while both keys are still
/// present (see [`super::restart`]).
fn restarts_before(
    cell: &Cell,
    target: &Target,
    sels: &[Selector],
    since: Option<DateTime<Utc>>,
    how: super::restart::Restarts,
    warn: Warn,
) -> Result<Option<super::restart::RestartReport>, Error> {
    let held = target_kvnos(cell, target);
    let removing: Vec<i32> = (sels.iter().map(|s| s.kvno))
        .filter(|k| held.contains(k))
        .collect();
    let left: Vec<i32> = held.into_iter().filter(|k| !removing.contains(k)).collect();
    let only = match target {
        Target::Server(s) => Some(s.name()),
        Target::Control => None,
    };
    super::restart::before_removal(cell, None, &removing, &left, only, since, false, how, warn)
}

/// How `remove_keys` removes.
pub struct Removal<'a> {
    /// `--if-cksum`: the checksums the keys must still have.
    pub if_cksum: Option<&'a [u32]>,
    /// `--emergency --reason R`: overrides the refusals, logged.
    pub emergency: Option<&'a str>,
    pub restarts: super::restart::Restarts,
}

/// What `remove_keys` did: the keys removed, the edit, the refusals overridden, the restarts.
pub type Removed = (
    Vec<Key>,
    EditReport,
    Vec<String>,
    Option<super::restart::RestartReport>,
);

/// An afs key (rxkad, rxkad_krb5) at a kvno no rotation could go above is refused: the next
/// rotation needs a higher kvno, and a KDC keeps kvnos in 16 bits. rxgk keys number their
/// kvnos apart.
fn past_the_last_rotation(keys: &[Key]) -> Result<(), Error> {
    use crate::rotation::MAX_ROTATION_KVNO;
    let last = keys
        .iter()
        .find(|k| k.key_type() != crate::keys::KeyType::Rxgk && k.kvno() >= MAX_ROTATION_KVNO);
    match last {
        Some(k) => Err(Error::refused(format!(
            "kvno {} would leave no kvno for the next rotation: a rotation needs one above \
             every rxkad and rxkad_krb5 kvno in use, and a KDC keeps kvnos in 16 bits (a \
             rotation may use at most {MAX_ROTATION_KVNO}); add the key at a lower kvno",
            k.kvno()
        ))),
        None => Ok(()),
    }
}

/// After a change on the control machine, copy its files to every other server (one
/// two-phase push), as the Update Server would. Returns the servers it reached.
pub fn sync_after_edit(cell: &Cell, target: &Target) -> Result<Vec<String>, Error> {
    if !matches!(target, Target::Control) || cell.servers.is_empty() {
        return Ok(vec![]);
    }
    // Under the cell lock from the read to the last commit (as `push`): a rotation that ran
    // between the edit and this push is pushed too, never undone.
    let _lock = cell.state.lock(true)?;
    let snap = cell.control.read()?;
    entry_kept(cell, &snap.keys)?;
    let files = KeyFiles::of(&snap.keys);
    crate::store::atomic::pause_point("sync:read");
    let report = crate::fleet::fanout::push(
        &cell.other_servers(),
        &files,
        cell.parallel,
        cell.progress.as_ref(),
    );
    if report.ok() {
        return Ok(report.servers.iter().map(|p| p.name.clone()).collect());
    }
    let np = NotPushed {
        failures: report.failures().iter().map(|e| e.to_string()).collect(),
        servers: report
            .servers
            .iter()
            .map(|p| {
                let why = match (&p.staged, &p.committed) {
                    (Err(e), _) | (Ok(()), Some(Err(e))) => e.message.clone(),
                    (Ok(()), Some(Ok(()))) => "changed".into(),
                    _ => "not changed: the push failed elsewhere, so no server was changed".into(),
                };
                (p.name.clone(), why)
            })
            .collect(),
    };
    Err(Error::failed(np.message(false)).with_source(np))
}

/// Why the push after an edit did not reach the other servers: every server with what
/// happened there. The message names the failures; past `FULL_LIST` servers it groups
/// them by reason unless asked for the whole list (`--verbose`, `--json`).
#[derive(Debug)]
pub struct NotPushed {
    /// Each failure as `FleetError` prints it ("server fs1: why").
    pub failures: Vec<String>,
    /// Every server pushed to, with what happened there.
    pub servers: Vec<(String, String)>,
}

impl std::fmt::Display for NotPushed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message(true))
    }
}

impl std::error::Error for NotPushed {}

impl NotPushed {
    /// The operator's message; `whole`: every server, even past `FULL_LIST`.
    pub fn message(&self, whole: bool) -> String {
        let list = if self.servers.len() <= crate::fleet::FULL_LIST {
            self.failures.join("; ")
        } else if whole {
            self.servers
                .iter()
                .map(|(n, w)| format!("{n} ({w})"))
                .collect::<Vec<_>>()
                .join("; ")
        } else {
            // The failures first, then the servers they held back.
            let (mut v, rest): (Vec<_>, Vec<_>) = self
                .servers
                .iter()
                .cloned()
                .partition(|(_, w)| !w.starts_with("not changed: "));
            v.extend(rest);
            format!(
                "{} (--verbose lists them)",
                crate::fleet::group_by_reason(&v)
            )
        };
        format!(
            "the change is made on the control machine, but not yet on the other servers \
             (none of them was changed): {list}. Run `afskeys push` once they are reachable"
        )
    }
}

/// Refuse to push a key set without the afs entry's keys: that would take the key every new
/// token is sealed with off every server.
pub(crate) fn entry_kept(cell: &Cell, keys: &KeySet) -> Result<(), Error> {
    if let Ok(Some(e)) = cell.authdb.get() {
        if !e.held_by(keys) {
            return Err(Error::refused(format!(
                "the control machine lacks the afs entry's kvno {} (or holds \
                 other bytes for it); pushing its files would take that key from every \
                 server. Restore it from .afskeys-backup/ first",
                e.kvno
            )));
        }
    }
    Ok(())
}

/// Where an added key comes from.
pub enum AddSource<'a> {
    /// The operating system's RNG.
    Random,
    /// The key bytes themselves.
    Raw(Secret<'a>),
    /// A password to derive the key from (the cell or the principal salts it).
    Password(Secret<'a>),
    /// A Kerberos keytab's entry for the principal at the kvno (as `asetkey add`).
    Keytab(PathBuf),
}

/// `add`: what the operator asked for.
pub struct AddOptions<'a> {
    pub kvno: i32,
    pub key_type: KeyType,
    pub enctypes: Vec<Enctype>,
    pub source: AddSource<'a>,
    /// Salts an rxkad password [default: ThisCell].
    pub cell: Option<String>,
    /// Salts typed keys [default: afs/<cell>@<CELL>].
    pub principal: Option<String>,
    pub replace: bool,
    pub if_cksum: Option<Vec<u32>>,
    /// `--server NAME`: an emergency edit of that server's own files.
    pub server: Option<String>,
    /// What to do with that server's upclientetc, when the Update Server feeds it.
    pub upclient: UpclientAction,
}

/// What an `add` or `remove` did.
#[derive(Debug, Serialize)]
pub struct EditDone {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub added: Option<Vec<KeyView>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replaced: Option<Vec<KeyView>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub removed: Option<Vec<KeyView>>,
    pub written: Vec<String>,
    pub backups: Vec<String>,
    /// The other servers the change was copied to.
    pub pushed_to: Vec<String>,
    /// `remove`: the restarts made (or left to the operator) before the removal, when a
    /// removed kvno was below a kvno still held (see [`super::restart`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restarts: Option<super::restart::RestartReport>,
}

/// The keys an `add` stores, made before the cell is opened.
fn make_keys<'a>(
    paths: &CellPaths,
    o: AddOptions<'a>,
) -> Result<(Vec<Key>, AddOptions<'a>), Error> {
    let derives = matches!(o.source, AddSource::Password(_) | AddSource::Keytab(_));
    let cell = if derives {
        paths.cell_name(&o.cell)?
    } else {
        o.cell.clone().unwrap_or_default()
    };
    let principal = o
        .principal
        .clone()
        .unwrap_or_else(|| crate::keys::default_principal(&cell));
    let mut o = o;
    let source = std::mem::replace(&mut o.source, AddSource::Random);
    let keys = match source {
        AddSource::Keytab(path) => from_keytab(&path, &principal, &o)?,
        AddSource::Random => keygen::make_keys(
            o.kvno,
            o.key_type,
            &o.enctypes,
            Material::Random,
            &cell,
            &principal,
        )?,
        AddSource::Raw(secret) => {
            let raw = secret()?;
            let m = Material::Raw(&raw);
            keygen::make_keys(o.kvno, o.key_type, &o.enctypes, m, &cell, &principal)?
        }
        AddSource::Password(secret) => {
            let pw = super::passphrase(secret)?;
            let m = Material::Password(&pw);
            keygen::make_keys(o.kvno, o.key_type, &o.enctypes, m, &cell, &principal)?
        }
    };
    Ok((keys, o))
}

fn from_keytab(path: &PathBuf, principal: &str, o: &AddOptions) -> Result<Vec<Key>, Error> {
    let bytes = zeroize::Zeroizing::new(std::fs::read(path).map_err(|e| {
        Error::failed(format!("{}: cannot read: {e}", path.display())).with_source(e)
    })?);
    let name = path.display().to_string();
    let keys = crate::keytabs::take(&bytes, &name, principal, o.kvno, o.key_type, &o.enctypes)?;
    for k in &keys {
        KeySet::validate_key(k).map_err(Error::failed_by)?;
    }
    Ok(keys)
}

/// `add`: make the keys, add them where asked, and copy the result to the other servers.
pub fn add(paths: &CellPaths, o: AddOptions, warn: Warn) -> Result<EditDone, Error> {
    let (keys, o) = make_keys(paths, o)?;
    let added = KeyView::all(&keys);
    let cell = paths.open()?;
    let target = Target::named(&cell, o.server.as_deref(), warn)?;
    let paused = super::upclient::before_edit(&cell, &target, o.upclient, warn)?;
    let done = add_keys(
        &cell,
        &target,
        keys,
        o.replace,
        o.if_cksum.as_deref(),
        Utc::now(),
    );
    super::upclient::after_edit(&cell, &target, paused, done.is_ok(), warn)?;
    let (replaced, report) = done?;
    report.warnings.iter().for_each(|w| warn(w));
    let pushed_to = sync_after_edit(&cell, &target)?;
    Ok(EditDone {
        added: Some(added),
        replaced: Some(KeyView::all(&replaced)),
        removed: None,
        written: shown(&report.written),
        backups: shown(&report.backups),
        pushed_to,
        restarts: None,
    })
}

/// The kvnos `target` holds now (none when unreadable).
fn target_kvnos(cell: &Cell, target: &Target) -> Vec<i32> {
    match target {
        Target::Server(s) => s
            .read_keys()
            .map(|k| k.iter().map(|k| k.kvno()).collect())
            .unwrap_or_default(),
        Target::Control => super::prune::control_kvnos(cell),
    }
}

/// `remove`: what the operator asked for.
pub struct RemoveOptions {
    pub kvnos: Vec<i32>,
    pub key_type: Option<KeyType>,
    pub enctype: Option<i32>,
    pub if_cksum: Option<Vec<u32>>,
    /// `--emergency --reason R`: remove even a key the policy protects, or one an upclient
    /// still needs (logged).
    pub reason: Option<String>,
    pub server: Option<String>,
    /// What to do with that server's upclientetc, when the Update Server feeds it.
    pub upclient: UpclientAction,
    /// Run the restarts the removal needs (or only print them, `--no-restart`).
    pub restarts: super::restart::Restarts,
}

/// `remove`: the keys at each kvno, where asked, then copied to the other servers.
pub fn remove(paths: &CellPaths, o: &RemoveOptions, warn: Warn) -> Result<EditDone, Error> {
    let sels: Vec<Selector> = o
        .kvnos
        .iter()
        .map(|&kvno| Selector {
            kvno,
            key_type: o.key_type,
            enctype: o.enctype,
        })
        .collect();
    let cell = paths.open()?;
    let target = Target::named(&cell, o.server.as_deref(), warn)?;
    let paused = super::upclient::before_edit(&cell, &target, o.upclient, warn)?;
    let how = Removal {
        if_cksum: o.if_cksum.as_deref(),
        emergency: o.reason.as_deref(),
        restarts: o.restarts,
    };
    let done = remove_keys(&cell, &target, &sels, &how, Utc::now(), warn);
    super::upclient::after_edit(&cell, &target, paused, done.is_ok(), warn)?;
    let (removed, report, overridden, restarts) = done?;
    report.warnings.iter().for_each(|w| warn(w));
    for why in &overridden {
        warn(&format!("EMERGENCY removal (logged): {why}"));
    }
    let pushed_to = sync_after_edit(&cell, &target)?;
    Ok(EditDone {
        added: None,
        replaced: None,
        restarts,
        removed: Some(KeyView::all(&removed)),
        written: shown(&report.written),
        backups: shown(&report.backups),
        pushed_to,
    })
}

#[cfg(test)]
mod tests {
    use super::NotPushed;

    fn not_pushed(n: usize) -> NotPushed {
        NotPushed {
            failures: vec!["server fs1: connection refused".into()],
            servers: (0..n)
                .map(|i| {
                    let why = match i {
                        1 => "connection refused",
                        _ => "not changed: the push failed elsewhere, so no server was changed",
                    };
                    (format!("fs{i}"), why.to_string())
                })
                .collect(),
        }
    }

    #[test]
    fn up_to_eight_servers_the_message_is_as_it_was() {
        let m = "the change is made on the control machine, but not yet on the other servers \
                 (none of them was changed): server fs1: connection refused. Run `afskeys \
                 push` once they are reachable";
        assert_eq!(not_pushed(8).message(false), m);
        assert_eq!(not_pushed(8).message(true), m);
    }

    #[test]
    fn past_eight_the_failures_come_first_and_the_rest_are_counted() {
        let m = not_pushed(9).message(false);
        assert!(
            m.contains(
                "changed): fs1 (connection refused); fs0 and the 7 others (not changed: the \
                 push failed elsewhere, so no server was changed) (--verbose lists them). Run"
            ),
            "{m}"
        );
        let whole = not_pushed(9).message(true);
        assert!(whole.contains("changed): fs0 (not changed"), "{whole}");
        assert!(whole.contains("; fs8 (not changed"), "{whole}");
    }
}

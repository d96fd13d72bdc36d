//! The ordered key change. `rotate` walks: choose the next kvno and a new key → add it on the
//! control machine → make every configured server hold it (checksums confirmed) → only then
//! set the afs entry → start the old key's grace. Each completed step is saved in the journal
//! before the next begins, so a crash or failure is finished by `resume` or undone by `abort`.
//! The auth DB is never set while any server lacks the new key.

pub mod policy;
pub mod state;
pub mod status;

use crate::authdb::{AfsEntry, KeyMaterial};
use crate::cell::Cell;
use crate::checksum::key_checksum;
use crate::fleet::{self, KeyFiles};
use crate::keygen::{self, Material};
use crate::keys::{Enctype, Key, KeyType, BCRYPT_KVNO, MAX_RXKAD_KEYS};
use crate::store::{ops, StoreError};
use chrono::{DateTime, Utc};
use fs2::FileExt;
use state::{Rotation, State, Step};
use zeroize::Zeroizing;

/// Why a rotation did not complete.
#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    /// Refused by policy or order (exit 3): another rotation, a kvno too low, an abort too late.
    #[error("refused: {0}")]
    Refused(String),
    /// Stopped part way; the journal holds the step reached (exit 1).
    #[error("{0}")]
    Stopped(String),
    /// Failed before changing anything (exit 1).
    #[error("{0}")]
    Failed(String),
}

impl crate::error::Kinded for RotateError {
    fn kind(&self) -> crate::error::Kind {
        match self {
            RotateError::Refused(_) => crate::error::Kind::Refused,
            _ => crate::error::Kind::Failed,
        }
    }
}

/// What the operator asked for.
#[derive(Default)]
pub struct RotateOptions {
    /// The new kvno [default: one above every kvno in use].
    pub kvno: Option<i32>,
    /// rxkad_krb5 (default, enctypes 18 and 17) or rxkad (a legacy DES-only cell).
    pub key_type: Option<KeyType>,
    /// Derive from this password instead of random material.
    pub password: Option<Zeroizing<Vec<u8>>>,
}

/// The plan of a rotation (what `--dry-run` prints).
#[derive(Debug, Clone)]
pub struct Plan {
    pub kvno: i32,
    pub key_type: KeyType,
    pub enctypes: Vec<i32>,
    pub old_kvno: Option<i32>,
    pub servers: Vec<String>,
    pub authdb: String,
    pub from_passphrase: bool,
}

impl Plan {
    pub fn steps(&self) -> Vec<String> {
        let what = if self.key_type == KeyType::Rxkad {
            "rxkad (single DES)".to_string()
        } else {
            format!(
                "{} enctypes {}",
                self.key_type,
                self.enctypes
                    .iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            )
        };
        vec![
            format!("1. choose kvno {} and a new {what} key", self.kvno),
            "2. add it to the control machine's KeyFiles".to_string(),
            format!(
                "3. copy to and confirm on every server: {}",
                self.servers.join(", ")
            ),
            format!(
                "4. set the afs entry ({}) to kvno {}{}",
                self.authdb,
                self.kvno,
                if self.from_passphrase {
                    " from a generated passphrase"
                } else {
                    ""
                }
            ),
            match self.old_kvno {
                Some(k) => format!(
                    "5. start kvno {k}'s grace (it stays until the token lifetime has passed)"
                ),
                None => "5. (no old key: the afs entry is new)".to_string(),
            },
        ]
    }
}

/// What a finished rotation did.
#[derive(Debug, Clone)]
pub struct Report {
    pub kvno: i32,
    pub old_kvno: Option<i32>,
    pub checksums: Vec<(i32, Option<u32>)>,
    pub servers: Vec<String>,
    pub activated: DateTime<Utc>,
}

/// Called after each step is saved (tests use it to crash or fail between steps).
pub type Hook<'a> = &'a mut dyn FnMut(Step);

/// Holds the cell's rotation lock: a second rotate while one runs is refused, and removals
/// wait for a running rotation so the policy they check cannot change under them.
pub struct RotationLock(#[allow(dead_code)] std::fs::File);

fn lock(cell: &Cell) -> Result<RotationLock, RotateError> {
    lock_cell(cell, false)
}

/// Take the rotation lock; `wait` blocks until a running rotation finishes, else refuse.
pub fn lock_cell(cell: &Cell, wait: bool) -> Result<RotationLock, RotateError> {
    let p = crate::store::atomic::lock_path_for(cell.state.path());
    let f = crate::store::atomic::open_lock_file(&p)
        .map_err(|e| RotateError::Failed(format!("{}: cannot open: {e}", p.display())))?;
    if wait {
        f.lock_exclusive()
            .map_err(|e| RotateError::Failed(format!("{}: cannot lock: {e}", p.display())))?;
    } else {
        f.try_lock_exclusive().map_err(|_| {
            RotateError::Refused("another afskeys rotate is running on this cell".into())
        })?;
    }
    Ok(RotationLock(f))
}

fn load(cell: &Cell) -> Result<State, RotateError> {
    cell.state.load().map_err(RotateError::Failed)
}

fn save(cell: &Cell, st: &State) -> Result<(), RotateError> {
    cell.state.save(st).map_err(RotateError::Failed)
}

fn entry(cell: &Cell) -> Result<Option<AfsEntry>, RotateError> {
    cell.authdb
        .get()
        .map_err(|e| RotateError::Failed(format!("{}: {e}", cell.authdb.describe())))
}

fn audit(cell: &Cell, command: &str, detail: &str) -> Result<(), RotateError> {
    cell.audit
        .record(command, detail)
        .map_err(RotateError::Failed)
}

fn cksums(keys: &[Key]) -> String {
    keys.iter()
        .map(|k| {
            key_checksum(k)
                .map(|c| c.to_string())
                .unwrap_or_else(|| "-".into())
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Choose the kvno and key of a new rotation (changes nothing).
fn plan(cell: &Cell, opts: &RotateOptions) -> Result<(Plan, Rotation), RotateError> {
    let cur = entry(cell)?;
    let key_type = opts.key_type.unwrap_or(KeyType::RxkadKrb5);
    let material = cell.authdb.key_material();
    if key_type == KeyType::Rxkad && material != KeyMaterial::Raw {
        return Err(RotateError::Refused(format!(
            "{} takes only passphrase-derived Kerberos keys; rotate rxkad_krb5 keys there",
            cell.authdb.describe()
        )));
    }
    if key_type == KeyType::Rxgk {
        return Err(RotateError::Refused(
            "rxgk keys are not what the afs entry seals tokens with; rotate rxkad_krb5".into(),
        ));
    }
    // Above every kvno in use anywhere we can see.
    let mut highest = cur.as_ref().map(|e| e.kvno);
    let control = cell
        .control
        .read()
        .map_err(|e| RotateError::Failed(e.to_string()))?;
    if key_type == KeyType::Rxkad && control.keys.count(KeyType::Rxkad) >= MAX_RXKAD_KEYS {
        return Err(RotateError::Refused(format!(
            "the control machine's KeyFile holds {MAX_RXKAD_KEYS} rxkad keys already; prune first"
        )));
    }
    for s in cell.all_servers() {
        if let Ok(set) = s.read_keys() {
            highest = highest.max(set.max_kvno());
        }
    }
    let mut next = highest.map(|h| h + 1).unwrap_or(1);
    // A KDC moves the kvno by one per change: the rotation must land exactly there.
    let forced = cell
        .authdb
        .next_kvno()
        .map_err(|e| RotateError::Failed(format!("{}: {e}", cell.authdb.describe())))?;
    if let Some(n) = forced {
        if next > n || opts.kvno.is_some_and(|k| k != n) {
            return Err(RotateError::Refused(format!(
                "{} can only move the afs entry to kvno {n}, but {} (remove the stray keys \
                 at kvno {n} and above, or rotate to kvno {n})",
                cell.authdb.describe(),
                match opts.kvno {
                    Some(k) if k != n => format!("kvno {k} was asked for"),
                    _ => format!("kvno {} is already in use on a server", next - 1),
                }
            )));
        }
        next = n;
    }
    let kvno = match opts.kvno {
        Some(k) if k < next => {
            return Err(RotateError::Refused(format!(
                "kvno {k} is not above every kvno in use (the next free one is {next})"
            )))
        }
        Some(k) => k,
        None => next,
    };
    if kvno == BCRYPT_KVNO || (key_type == KeyType::Rxkad && kvno > 255) {
        return Err(RotateError::Refused(format!(
            "kvno {kvno} cannot be used for an rxkad key (0-255, not 999)"
        )));
    }
    let enctypes: Vec<Enctype> = if key_type == KeyType::Rxkad {
        vec![]
    } else {
        keygen::default_enctypes()
    };
    let mut passphrase: Option<Zeroizing<Vec<u8>>> = None;
    let keys = match (&material, &opts.password) {
        (KeyMaterial::Raw, None) => keygen::make_keys(
            kvno,
            key_type,
            &enctypes,
            Material::Random,
            &cell.name,
            &cell.principal,
        ),
        (KeyMaterial::Raw, Some(pw)) => keygen::make_keys(
            kvno,
            key_type,
            &enctypes,
            Material::Password(pw),
            &cell.name,
            &cell.principal,
        ),
        (KeyMaterial::Passphrase { principal }, given) => {
            let pp = match given {
                Some(pw) => pw.clone(),
                None => {
                    let raw = crate::crypto::random_bytes(32)
                        .map_err(|e| RotateError::Failed(e.to_string()))?;
                    Zeroizing::new(hex::encode(&*raw).into_bytes())
                }
            };
            let k = keygen::make_keys(
                kvno,
                key_type,
                &enctypes,
                Material::Password(&pp),
                &cell.name,
                principal,
            );
            passphrase = Some(pp);
            k
        }
    }
    .map_err(|e| RotateError::Failed(e.to_string()))?;
    let now = Utc::now();
    let plan = Plan {
        kvno,
        key_type,
        enctypes: enctypes.iter().map(|e| e.0).collect(),
        old_kvno: cur.as_ref().map(|e| e.kvno),
        servers: cell
            .all_servers()
            .iter()
            .map(|s| s.name().to_string())
            .collect(),
        authdb: cell.authdb.describe(),
        from_passphrase: passphrase.is_some(),
    };
    let rotation = Rotation {
        started: now,
        updated: now,
        step: Step::Planned,
        kvno,
        key_type: key_type.name().to_string(),
        keys: Rotation::journal_keys(&keys),
        passphrase: passphrase
            .as_ref()
            .map(|p| String::from_utf8_lossy(p).into_owned()),
        old_kvno: plan.old_kvno,
        confirmed: vec![],
        missing: vec![],
        activated: None,
    };
    Ok((plan, rotation))
}

/// `--dry-run`: the plan, nothing changed.
pub fn dry_run(cell: &Cell, opts: &RotateOptions) -> Result<Plan, RotateError> {
    if let Some(r) = load(cell)?.rotation {
        return Err(in_progress(&r));
    }
    plan(cell, opts).map(|(p, _)| p)
}

fn in_progress(r: &Rotation) -> RotateError {
    RotateError::Refused(format!(
        "a rotation to kvno {} is in progress (step {} since {}): finish it with \
         `afskeys rotate --resume` or undo it with `afskeys rotate --abort`",
        r.kvno,
        r.step.name(),
        policy::fmt_time(r.updated)
    ))
}

/// Start and run a new rotation.
pub fn rotate(cell: &Cell, opts: &RotateOptions, hook: Hook) -> Result<Report, RotateError> {
    cell.audit.preflight().map_err(RotateError::Failed)?;
    let _lock = lock(cell)?;
    let mut st = load(cell)?;
    if let Some(r) = &st.rotation {
        return Err(in_progress(r));
    }
    let (plan, rotation) = plan(cell, opts)?;
    let keys = rotation.keys().map_err(RotateError::Failed)?;
    st.rotation = Some(rotation);
    save(cell, &st)?;
    audit(
        cell,
        "rotate",
        &format!(
            "planned kvno {} ({}) cksum {}",
            plan.kvno,
            plan.key_type,
            cksums(&keys)
        ),
    )?;
    hook(Step::Planned);
    run(cell, st, hook)
}

/// Finish the rotation in progress from the step its journal reached.
pub fn resume(cell: &Cell, hook: Hook) -> Result<Report, RotateError> {
    cell.audit.preflight().map_err(RotateError::Failed)?;
    let _lock = lock(cell)?;
    let st = load(cell)?;
    let Some(r) = &st.rotation else {
        return Err(RotateError::Failed(
            "no rotation in progress to resume".into(),
        ));
    };
    audit(
        cell,
        "rotate --resume",
        &format!("kvno {} from step {}", r.kvno, r.step.name()),
    )?;
    run(cell, st, hook)
}

fn stopped(
    cell: &Cell,
    st: &mut State,
    step: Step,
    missing: Vec<(String, String)>,
    why: String,
) -> RotateError {
    let r = st.rotation.as_mut().expect("rotation in progress");
    r.step = step;
    r.missing = missing;
    r.updated = Utc::now();
    let kvno = r.kvno;
    let saved = save(cell, st);
    let _ = audit(
        cell,
        "rotate",
        &format!("stopped at kvno {kvno} step {}: {why}", step.name()),
    );
    let now_at = match cell.authdb.get() {
        Ok(Some(e)) => format!("the afs entry is at kvno {}", e.kvno),
        Ok(None) => "the afs entry does not exist yet".to_string(),
        Err(e) => format!("the afs entry could not be read back ({e})"),
    };
    match saved {
        Err(e) => e,
        Ok(()) => RotateError::Stopped(format!(
            "rotation to kvno {kvno} stopped after step \"{}\": {why}; {now_at}. Fix it and \
             run `afskeys rotate --resume` (or `--abort` to undo)",
            step.name()
        )),
    }
}

/// Walk the remaining steps.
fn run(cell: &Cell, mut st: State, hook: Hook) -> Result<Report, RotateError> {
    let r = st.rotation.as_ref().expect("rotation in progress").clone();
    let keys = r.keys().map_err(RotateError::Failed)?;
    let kvno = r.kvno;
    let mut step = r.step;
    loop {
        match step {
            Step::Planned => {
                add_to_control(cell, &keys)?;
                step = advance(cell, &mut st, Step::Added, |_| {})?;
                hook(step);
            }
            Step::Added => {
                let control = cell
                    .control
                    .read()
                    .map_err(|e| RotateError::Failed(e.to_string()))?;
                let files = KeyFiles::of(&control.keys);
                let d = fleet::distribute(
                    &cell.other_servers(),
                    &files,
                    &keys,
                    cell.parallel,
                    cell.progress,
                );
                if !d.missing.is_empty() {
                    let names: Vec<String> = d
                        .missing
                        .iter()
                        .map(|(n, w)| format!("{n} ({w})"))
                        .collect();
                    return Err(stopped(
                        cell,
                        &mut st,
                        Step::Added,
                        d.missing,
                        format!("servers lack kvno {kvno}: {}", names.join("; ")),
                    ));
                }
                step = advance(cell, &mut st, Step::Distributed, |r| {
                    r.confirmed = d.confirmed.clone();
                    r.missing.clear();
                })?;
                hook(step);
            }
            Step::Distributed => {
                // The order's guard, checked at the moment it matters: every machine holds it.
                let lacking = fleet::lacking(&cell.all_servers(), &keys);
                if !lacking.is_empty() {
                    let names: Vec<String> =
                        lacking.iter().map(|(n, w)| format!("{n} ({w})")).collect();
                    return Err(stopped(
                        cell,
                        &mut st,
                        Step::Added,
                        lacking,
                        format!(
                            "refusing to set the afs entry: {} lack kvno {kvno}",
                            names.join("; ")
                        ),
                    ));
                }
                let cur = entry(cell)?;
                let already = cur.as_ref().is_some_and(|e| {
                    e.kvno == kvno && crate::authdb::verify_entry(e, kvno, &keys).is_ok()
                });
                let now = Utc::now();
                if !already {
                    let pp = r
                        .passphrase
                        .as_ref()
                        .map(|p| Zeroizing::new(p.clone().into_bytes()));
                    if let Err(e) =
                        cell.authdb
                            .set(kvno, &keys, pp.as_ref().map(|p| p.as_slice()), now)
                    {
                        return Err(stopped(
                            cell,
                            &mut st,
                            Step::Distributed,
                            vec![],
                            format!("setting the afs entry failed: {e}"),
                        ));
                    }
                }
                audit(
                    cell,
                    "rotate",
                    &format!("afs entry set to kvno {kvno} cksum {}", cksums(&keys)),
                )?;
                step = advance(cell, &mut st, Step::Activated, |r| {
                    r.activated = Some(now);
                    r.passphrase = None;
                })?;
                hook(step);
            }
            Step::Activated => {
                let r = st.rotation.take().expect("rotation in progress");
                let activated = r.activated.unwrap_or_else(Utc::now);
                if let Some(old) = r.old_kvno {
                    if old != kvno {
                        st.retire(old, activated);
                    }
                }
                st.last_rotation = Some(activated);
                save(cell, &st)?;
                audit(
                    cell,
                    "rotate",
                    &format!(
                        "done: kvno {kvno} current; {}",
                        match r.old_kvno {
                            Some(o) =>
                                format!("kvno {o} retiring from {}", policy::fmt_time(activated)),
                            None => "no old key".into(),
                        }
                    ),
                )?;
                return Ok(Report {
                    kvno,
                    old_kvno: r.old_kvno,
                    checksums: keys
                        .iter()
                        .map(|k| (k.id.subtype, key_checksum(k)))
                        .collect(),
                    servers: cell
                        .all_servers()
                        .iter()
                        .map(|s| s.name().to_string())
                        .collect(),
                    activated,
                });
            }
        }
    }
}

/// Save the journal at `next` (after `edit`), returning `next`.
fn advance(
    cell: &Cell,
    st: &mut State,
    next: Step,
    edit: impl FnOnce(&mut Rotation),
) -> Result<Step, RotateError> {
    let r = st.rotation.as_mut().expect("rotation in progress");
    r.step = next;
    r.updated = Utc::now();
    edit(r);
    save(cell, st)?;
    Ok(next)
}

/// Put the new keys on the control machine; already there (a resumed step) is fine.
fn add_to_control(cell: &Cell, keys: &[Key]) -> Result<(), RotateError> {
    let snap = cell
        .control
        .read()
        .map_err(|e| RotateError::Failed(e.to_string()))?;
    if fleet::holds(&snap.keys, keys) {
        return Ok(());
    }
    match ops::add_keys(&cell.control, keys.to_vec(), false, None) {
        Ok(_) => Ok(()),
        Err(StoreError::Failed(m)) => Err(RotateError::Stopped(format!(
            "{m}: the control machine holds a different key at that kvno; \
             `afskeys rotate --abort` and start again"
        ))),
        Err(e) => Err(RotateError::Stopped(e.to_string())),
    }
}

/// Undo a rotation that has not set the afs entry: take the new key off the control machine
/// and off every server that got it. Returns warnings for servers that could not be cleaned
/// (they keep a key no token uses).
pub fn abort(cell: &Cell) -> Result<Vec<String>, RotateError> {
    cell.audit.preflight().map_err(RotateError::Failed)?;
    let _lock = lock(cell)?;
    let mut st = load(cell)?;
    let Some(r) = st.rotation.clone() else {
        return Err(RotateError::Failed(
            "no rotation in progress to abort".into(),
        ));
    };
    let keys = r.keys().map_err(RotateError::Failed)?;
    let cur = entry(cell)?;
    if r.step >= Step::Activated || cur.as_ref().is_some_and(|e| e.kvno == r.kvno) {
        return Err(RotateError::Refused(format!(
            "the afs entry already uses kvno {}: tokens are being sealed with it, so it cannot \
             be undone; finish with `afskeys rotate --resume`",
            r.kvno
        )));
    }
    let mut warnings = Vec::new();
    let snap = cell
        .control
        .read()
        .map_err(|e| RotateError::Failed(e.to_string()))?;
    if fleet::holds(&snap.keys, &keys) {
        cell.control
            .edit(|set| {
                for k in &keys {
                    set.remove(&k.id);
                }
                Ok(())
            })
            .map_err(|e| RotateError::Failed(e.to_string()))?;
    }
    let control = cell
        .control
        .read()
        .map_err(|e| RotateError::Failed(e.to_string()))?;
    let files = KeyFiles::of(&control.keys);
    for s in cell.other_servers() {
        match s.read_keys() {
            Ok(set)
                if keys
                    .iter()
                    .any(|k| set.get(&k.id).is_some_and(|h| h.bytes() == k.bytes())) =>
            {
                if let Err(e) = s.install(&files) {
                    warnings.push(format!(
                        "{}: still holds kvno {}: {}",
                        s.name(),
                        r.kvno,
                        e.message
                    ));
                }
            }
            Ok(_) => {}
            Err(e) => warnings.push(format!(
                "{}: could not be read ({}); if it got kvno {}, that key is unused",
                s.name(),
                e.message,
                r.kvno
            )),
        }
    }
    st.rotation = None;
    save(cell, &st)?;
    audit(
        cell,
        "rotate --abort",
        &format!("kvno {} undone at step {}", r.kvno, r.step.name()),
    )?;
    Ok(warnings)
}

/// The invariant: the afs entry's kvno and keys are on every server. Returns the violations.
pub fn invariant_violations(cell: &Cell) -> Result<Vec<(String, String)>, RotateError> {
    match entry(cell)? {
        None => Ok(vec![]),
        Some(e) => Ok(fleet::lacking(&cell.all_servers(), &e.keys)),
    }
}

//! Step zero of a rotation, which changes nothing: check the key type the auth DB can take,
//! choose the next kvno (above every kvno in use; exactly the KDC's next one when it decides),
//! make the new keys, and write down the plan (what `--dry-run` prints) and the journal entry.

use super::error::{entry, load, RotateError};
use crate::authdb::{AfsEntry, KeyMaterial};
use crate::cell::Cell;
use crate::fleet::Server;
use crate::journal::{Rotation, Step};
use crate::keygen::{self, Material};
use crate::keys::{Enctype, Key, KeyType, BCRYPT_KVNO, MAX_RXKAD_KEYS};
use chrono::Utc;
use zeroize::Zeroizing;

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
    /// Update Server cells: step 3 is a wait for the upclients' fetch (its text).
    pub fetch_step: Option<String>,
    /// What the running-server proof will not ask (every server and why, or each machine
    /// whose proof is off).
    pub not_asked: crate::running::NotAsked,
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
            self.fetch_step.clone().unwrap_or_else(|| {
                format!(
                    "3. copy to and confirm on every server: {}",
                    self.servers.join(", ")
                )
            }),
            self.set_step(),
            match self.old_kvno {
                Some(k) => format!(
                    "5. start kvno {k}'s grace (it stays until the token lifetime has passed)"
                ),
                None => "5. (no old key: the afs entry is new)".to_string(),
            },
        ]
    }
}

impl Plan {
    /// Step 4: the running servers asked (or what is not), then the afs entry set.
    fn set_step(&self) -> String {
        let set = format!(
            "set the afs entry ({}) to kvno {}{}",
            self.authdb,
            self.kvno,
            if self.from_passphrase {
                " from a generated passphrase"
            } else {
                ""
            }
        );
        let ask = format!("ask the running servers to accept kvno {}", self.kvno);
        use crate::running::NotAsked;
        match &self.not_asked {
            NotAsked::Every(why) => format!("4. {set}, without asking the running servers ({why})"),
            NotAsked::These(none) if none.is_empty() => format!("4. {ask}, then {set}"),
            NotAsked::These(some) => {
                format!("4. {ask} (not asked: {}), then {set}", some.join(", "))
            }
        }
    }
}

/// Choose the kvno and key of a new rotation (changes nothing). `servers`: every machine
/// (the control machine first), as this command reads them.
pub fn plan(
    cell: &Cell,
    servers: &[&dyn Server],
    opts: &RotateOptions,
) -> Result<(Plan, Rotation), RotateError> {
    let cur = entry(cell)?;
    let st = load(cell)?;
    if cur.is_none() {
        st.check_entry_missing(&cell.authdb.describe())?;
    }
    let key_type = opts.key_type.unwrap_or(KeyType::RxkadKrb5);
    let material = cell.authdb.key_material();
    check_key_type(cell, key_type, &material)?;
    let kvno = choose_kvno(cell, servers, opts, key_type, cur.as_ref())?;
    let enctypes: Vec<Enctype> = if key_type == KeyType::Rxkad {
        vec![]
    } else {
        keygen::default_enctypes()
    };
    let (keys, passphrase) = make_keys(cell, opts, kvno, key_type, &enctypes, &material)?;
    let latest = st.latest_recorded().max(cur.as_ref().map(|e| e.changed));
    if let Some(why) = crate::policy::clock_behind(Utc::now(), latest) {
        return Err(RotateError::Refused(format!(
            "{why}; a rotation dated by a clock that is behind would shorten the old key's grace"
        )));
    }
    let now = crate::policy::recorded_now(Utc::now(), latest);
    let plan = Plan {
        kvno,
        key_type,
        enctypes: enctypes.iter().map(|e| e.0).collect(),
        old_kvno: cur.as_ref().map(|e| e.kvno),
        servers: super::fetch::every_server(cell),
        authdb: cell.authdb.describe(),
        from_passphrase: passphrase.is_some(),
        fetch_step: super::fetch::plan_step(cell),
        not_asked: cell.running.not_asked(),
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

/// Refuse a key type the auth DB cannot seal tokens with.
fn check_key_type(
    cell: &Cell,
    key_type: KeyType,
    material: &KeyMaterial,
) -> Result<(), RotateError> {
    if key_type == KeyType::Rxkad && *material != KeyMaterial::Raw {
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
    Ok(())
}

/// The highest kvno in use anywhere we can see (the afs entry, every readable server).
fn highest_in_use(
    cell: &Cell,
    servers: &[&dyn Server],
    key_type: KeyType,
    cur: Option<&AfsEntry>,
) -> Result<Option<i32>, RotateError> {
    let mut highest = cur.map(|e| e.kvno);
    let control = cell.control.read()?;
    if key_type == KeyType::Rxkad && control.keys.count(KeyType::Rxkad) >= MAX_RXKAD_KEYS {
        return Err(RotateError::Refused(format!(
            "the control machine's KeyFile holds {MAX_RXKAD_KEYS} rxkad keys already; prune first"
        )));
    }
    for (_, r) in crate::fleet::fanout::read_all(servers, cell.parallel) {
        if let Ok(set) = r {
            highest = highest.max(set.max_afs_kvno());
        }
    }
    Ok(highest)
}

/// The new kvno: above every kvno in use, the one the KDC will take if it decides, the one
/// asked for if that fits, and one an rxkad key can have.
fn choose_kvno(
    cell: &Cell,
    servers: &[&dyn Server],
    opts: &RotateOptions,
    key_type: KeyType,
    cur: Option<&AfsEntry>,
) -> Result<i32, RotateError> {
    let mut next = highest_in_use(cell, servers, key_type, cur)?
        .map(|h| h.saturating_add(1))
        .unwrap_or(1);
    if next == BCRYPT_KVNO && opts.kvno.is_none() {
        // 999 is the bcrypt key's slot in KeyFile: skip it.
        next += 1;
    }
    // A KDC moves the kvno by one per change: the rotation must land exactly there.
    let forced = cell
        .authdb
        .next_kvno()
        .map_err(|e| RotateError::authdb(cell, e))?;
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
    check_kvno_range(kvno)?;
    Ok(kvno)
}

/// The highest kvno a rotation may choose: a KDC keeps kvnos in 16 bits (MIT wraps above
/// 65535), and the next rotation needs one above it.
pub const MAX_ROTATION_KVNO: i32 = 65534;

/// Refuse, before anything changes, a kvno the KDC cannot hold or after which no rotation
/// could follow.
fn check_kvno_range(kvno: i32) -> Result<(), RotateError> {
    if !(1..=MAX_ROTATION_KVNO).contains(&kvno) {
        return Err(RotateError::Refused(format!(
            "kvno {kvno} is outside 1-{MAX_ROTATION_KVNO}: a KDC keeps kvnos in 16 bits (at most \
             65535) and the next rotation needs one above it"
        )));
    }
    Ok(())
}

/// A passphrase a KDC derives keys from (wiped when dropped).
type Passphrase = Zeroizing<Vec<u8>>;

/// The new keys, and the passphrase a KDC derives them from (when it takes one).
fn make_keys(
    cell: &Cell,
    opts: &RotateOptions,
    kvno: i32,
    key_type: KeyType,
    enctypes: &[Enctype],
    material: &KeyMaterial,
) -> Result<(Vec<Key>, Option<Passphrase>), RotateError> {
    let make = |m: Material<'_>, principal: &str| {
        keygen::make_keys(kvno, key_type, enctypes, m, &cell.name, principal)
    };
    match (material, &opts.password) {
        (KeyMaterial::Raw, None) => Ok((make(Material::Random, &cell.principal)?, None)),
        (KeyMaterial::Raw, Some(pw)) => Ok((make(Material::Password(pw), &cell.principal)?, None)),
        (KeyMaterial::Passphrase { principal }, given) => {
            let pp = match given {
                Some(pw) => pw.clone(),
                None => {
                    let raw = crate::crypto::random_bytes(32)?;
                    Zeroizing::new(hex::encode(&*raw).into_bytes())
                }
            };
            let keys = make(Material::Password(&pp), principal)?;
            Ok((keys, Some(pp)))
        }
    }
}

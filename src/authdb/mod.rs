//! The Authentication Database's `afs` entry: the key the ticket service seals new tokens
//! with. A trait with three backends: an embedded file (the default), a real MIT Kerberos
//! database driven through `kadmin.local`, or through `kadmin` and kadmind over the network,
//! and a Heimdal KDC ([`heimdal`], `kadmin -l` or kadmind); and the proof by tickets
//! ([`ticket`]): a real service ticket opened with the servers' keys.

pub mod ccache;
pub mod file;
pub mod getprinc;
pub mod heimdal;
pub mod heimdal_get;
pub mod kadmin;
pub mod mit_remote;
mod private;
pub mod ticket;

/// How long one kadmin, kinit or kvno run may take by default (`[authdb] timeout`).
pub const DEFAULT_DEADLINE: std::time::Duration = std::time::Duration::from_secs(60);

use crate::keys::{Key, KeyId, KeySet, KeyType};
use chrono::{DateTime, Utc};
use std::path::PathBuf;

/// The afs entry as the auth DB holds it now.
#[derive(Debug, Clone)]
pub struct AfsEntry {
    /// The principal (`afs/<cell>@<REALM>`) or, for the file backend, what it stands for.
    pub principal: String,
    /// The current kvno: what new tokens carry.
    pub kvno: i32,
    /// The keys at that kvno (one rxkad key, or rxkad_krb5 keys of several enctypes).
    pub keys: Vec<Key>,
    /// When the entry last changed.
    pub changed: DateTime<Utc>,
    /// What a KDC says beside the keys; `None` for the file backend.
    pub kdc: Option<KdcFacts>,
}

/// What a KDC backend knows about the afs entry besides key bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KdcFacts {
    /// The enctypes the KDC holds at the current kvno.
    pub enctypes: Vec<i32>,
    /// The principal's maximum ticket life (`None`: no limit of its own, the realm's
    /// applies). Tokens live no longer: the grace before an old key may go.
    pub max_ticket_life: Option<std::time::Duration>,
    /// True when `keys` are the KDC's key bytes as read from it (`ktadd -norandkey`); false
    /// over kadmind, which never hands out key bytes: `keys` are then empty after `get`, and
    /// after `set` the keys given, confirmed by a ticket ([`ticket`]).
    pub keys_read: bool,
    /// Every kvno the KDC holds keys of for the principal, highest first (the current one
    /// and the older ones `cpw -keepold` kept).
    pub kvnos: Vec<i32>,
}

/// What a purge of old kvnos from the KDC did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Purge {
    /// Purged; the kvnos the KDC holds now, highest first.
    Done(Vec<i32>),
    /// This KDC cannot drop some kvnos and keep the others, and why (what it keeps).
    Cannot(String),
}

impl AfsEntry {
    /// The key type of the entry's keys (rxkad or rxkad_krb5).
    pub fn key_type(&self) -> Option<KeyType> {
        self.keys.first().map(|k| k.key_type())
    }

    /// True when `set` (one server's keys) holds the entry's keys: the same bytes for each
    /// key known; when the key bytes cannot be read (a KDC over kadmind), a rxkad_krb5 key at
    /// the entry's kvno for each enctype the KDC holds there — the bytes are then proven only
    /// by a ticket ([`AuthDb::prove_tickets`]).
    pub fn held_by(&self, set: &KeySet) -> bool {
        let bytes_ok = self
            .keys
            .iter()
            .all(|k| set.get(&k.id).is_some_and(|h| h.bytes() == k.bytes()));
        let enctypes_ok = match &self.kdc {
            Some(f) if !f.keys_read && self.keys.is_empty() => f.enctypes.iter().all(|&e| {
                set.get(&KeyId {
                    key_type: KeyType::RxkadKrb5,
                    kvno: self.kvno,
                    subtype: e,
                })
                .is_some()
            }),
            _ => true,
        };
        bytes_ok && enctypes_ok
    }
}

/// How a backend takes a new key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyMaterial {
    /// Raw key bytes (the file backend).
    Raw,
    /// Only a passphrase, from which the backend derives keys with this principal's default
    /// salt (a KDC: `cpw` has no way to set raw key bytes).
    Passphrase { principal: String },
}

#[derive(Debug, thiserror::Error)]
pub enum AuthDbError {
    #[error("auth DB {}: {op}: {source}", path.display())]
    Io {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("auth DB {}: corrupt: {message}", path.display())]
    Corrupt { path: PathBuf, message: String },
    /// The afs entry does not exist yet.
    #[error("{0}")]
    Missing(String),
    /// The file auth DB does not exist, but the control machine's key files hold keys: the
    /// cell has an afs entry somewhere, so this is a misnamed or lost file, not "no entry".
    #[error(
        "the auth DB {} does not exist, but the key files in {} hold kvno {kvnos}: a cell \
         with keys has an afs entry; check `[authdb] path`, or adopt the entry with \
         `afskeys authdb init`",
        path.display(),
        confdir.display()
    )]
    Absent {
        path: PathBuf,
        confdir: PathBuf,
        kvnos: String,
    },
    /// The file auth DB does not exist, and the key files cannot be read to tell whether the
    /// cell has keys (so whether it has an afs entry).
    #[error(
        "the auth DB {} does not exist, and the key files in {} cannot be read to tell \
         whether the cell has an afs entry: {source}",
        path.display(),
        confdir.display()
    )]
    AbsentUnknown {
        path: PathBuf,
        confdir: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The backend's tool failed; the message carries what it said.
    #[error("{0}")]
    Backend(String),
    /// After a change, reading back gave something else: the change is not trusted.
    #[error("auth DB verification failed: {0}")]
    Mismatch(String),
    /// Refused: the change would break an invariant (exit 3).
    #[error("refused: {0}")]
    Refused(String),
    /// The auth DB file (or its lock) is not one afskeys may trust (`store::trust`).
    #[error("auth DB not trusted: {0}")]
    Unsafe(#[source] crate::store::trust::TrustError),
    /// Getting or reading a real ticket failed.
    #[error("ticket proof: {0}")]
    Ticket(#[from] ticket::TicketError),
}

/// An I/O failure stays an I/O failure of the auth DB; anything else makes it untrusted.
impl From<crate::store::trust::TrustError> for AuthDbError {
    fn from(e: crate::store::trust::TrustError) -> AuthDbError {
        match e {
            crate::store::trust::TrustError::Io { path, op, source } => {
                AuthDbError::Io { path, op, source }
            }
            e => AuthDbError::Unsafe(e),
        }
    }
}

impl crate::error::Kinded for AuthDbError {
    fn kind(&self) -> crate::error::Kind {
        match self {
            AuthDbError::Refused(_) => crate::error::Kind::Refused,
            _ => crate::error::Kind::Failed,
        }
    }
}

/// The afs entry of one Authentication Database.
pub trait AuthDb: Send + Sync {
    /// What and where, for messages: `file /usr/afs/etc/afskeys-authdb.json`.
    fn describe(&self) -> String;

    /// The afs entry, or `None` when it does not exist yet.
    fn get(&self) -> Result<Option<AfsEntry>, AuthDbError>;

    /// How this backend takes new keys.
    fn key_material(&self) -> KeyMaterial;

    /// Make `keys` at `kvno` the current key of the afs entry. When `key_material()` is
    /// `Passphrase`, `passphrase` is what derives `keys`. `kvno` must be above the current
    /// one. Reads the entry back and checks kvno and keys; a mismatch is an error.
    fn set(
        &self,
        kvno: i32,
        keys: &[Key],
        passphrase: Option<&[u8]>,
        now: DateTime<Utc>,
    ) -> Result<AfsEntry, AuthDbError>;

    /// Before a command changes anything: the files `set` or `init` would write pass the
    /// checked open (the file backend's entry and its directory). KDC backends write no file.
    fn check_writable(&self) -> Result<(), AuthDbError> {
        Ok(())
    }

    /// The only kvno the next `set` can use, when the backend decides it (a KDC bumps the
    /// kvno by one per change); `None` when any kvno above the current one will do.
    fn next_kvno(&self) -> Result<Option<i32>, AuthDbError> {
        Ok(None)
    }

    /// Proof by tickets: a real service ticket for the afs principal from the KDC, opened
    /// with each server's keys (`(name, keys)`). `None` when the backend has no KDC to ask
    /// (the file backend).
    fn prove_tickets(
        &self,
        servers: &[(&str, &[Key])],
    ) -> Result<Option<ticket::TicketProof>, AuthDbError> {
        let _ = servers;
        Ok(None)
    }

    /// Drop every key of the afs principal below kvno `keep_from` from the KDC, keeping
    /// `keep_from` and above (never the current kvno: `keep_from` must not exceed it). Read
    /// back: the KDC must no longer hold any of them. A backend with no KDC has nothing to
    /// purge.
    fn purge_below(&self, keep_from: i32) -> Result<Purge, AuthDbError> {
        let _ = keep_from;
        Ok(Purge::Cannot(format!(
            "{} keeps no old keys",
            self.describe()
        )))
    }

    /// Create the afs entry from keys already on every server (adopting a cell's existing
    /// key). Only backends that take raw keys can; a KDC holds its own entry.
    fn init(&self, kvno: i32, keys: &[Key], now: DateTime<Utc>) -> Result<AfsEntry, AuthDbError> {
        let _ = (kvno, keys, now);
        Err(AuthDbError::Refused(format!(
            "{} keeps its own afs entry; there is nothing to initialize (use `afskeys rotate`)",
            self.describe()
        )))
    }
}

/// A key a KDC exported for the afs principal (an rxkad_krb5 key of `kvno` and `enctype`),
/// refused when its length does not fit its enctype. `db` names the backend in the message.
pub(crate) fn kdc_key(
    db: &str,
    kvno: i32,
    enctype: i32,
    bytes: zeroize::Zeroizing<Vec<u8>>,
) -> Result<Key, AuthDbError> {
    let key = Key::new(
        crate::keys::KeyId {
            key_type: KeyType::RxkadKrb5,
            kvno,
            subtype: enctype,
        },
        bytes,
    );
    crate::keys::KeySet::validate_key(&key).map_err(|err| {
        AuthDbError::Backend(format!("{db}: the KDC holds an unusable key: {err}"))
    })?;
    Ok(key)
}

/// Check that an entry read back holds exactly `keys` at `kvno`.
pub fn verify_entry(entry: &AfsEntry, kvno: i32, keys: &[Key]) -> Result<(), AuthDbError> {
    if entry.kvno != kvno {
        return Err(AuthDbError::Mismatch(format!(
            "{}: kvno is {} after setting {kvno}",
            entry.principal, entry.kvno
        )));
    }
    for k in keys {
        let found = entry
            .keys
            .iter()
            .find(|e| e.id.subtype == k.id.subtype && e.key_type() == k.key_type());
        match found {
            Some(e) if e.bytes() == k.bytes() => {}
            Some(_) => {
                return Err(AuthDbError::Mismatch(format!(
                    "{}: the key read back for {} differs from the one set",
                    entry.principal, k.id
                )))
            }
            None => {
                return Err(AuthDbError::Mismatch(format!(
                    "{}: no key for {} after setting it",
                    entry.principal, k.id
                )))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use zeroize::Zeroizing;

    fn key(kvno: i32, e: i32, b: u8) -> Key {
        Key::new(
            KeyId {
                key_type: KeyType::RxkadKrb5,
                kvno,
                subtype: e,
            },
            Zeroizing::new(vec![b; if e == 17 { 16 } else { 32 }]),
        )
    }

    #[test]
    fn held_by_compares_bytes_or_only_enctypes_when_unreadable() {
        let mut set = KeySet::new();
        set.insert(key(3, 18, 1)).unwrap();
        set.insert(key(3, 17, 1)).unwrap();
        let mut e = AfsEntry {
            principal: "afs/c@R".into(),
            kvno: 3,
            keys: vec![key(3, 18, 1)],
            changed: Utc::now(),
            kdc: None,
        };
        assert!(e.held_by(&set));
        e.keys = vec![key(3, 18, 2)];
        assert!(!e.held_by(&set));
        // Over kadmind: no bytes, the enctypes the KDC holds at the kvno.
        e.keys.clear();
        e.kdc = Some(KdcFacts {
            enctypes: vec![18, 17],
            max_ticket_life: None,
            keys_read: false,
            kvnos: vec![3],
        });
        assert!(e.held_by(&set));
        e.kdc.as_mut().unwrap().enctypes.push(16);
        assert!(!e.held_by(&set));
        e.kvno = 4;
        e.kdc.as_mut().unwrap().enctypes = vec![18];
        assert!(!e.held_by(&set));
    }
}

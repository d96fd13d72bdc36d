//! Keys in and out of Kerberos keytabs: take one kvno's keys for a principal (as `asetkey add`
//! does), convert every key of the afs principal (as `akeyconvert` does), and export
//! rxkad_krb5 keys as a keytab that MIT tools and `asetkey` read.

use crate::format::keytab::{self, Entry};
use crate::keys::{Enctype, Key, KeyId, KeyType};
use zeroize::Zeroizing;

/// Why keys could not be taken from or put in a keytab.
#[derive(Debug, thiserror::Error)]
pub enum KeytabError {
    /// The file is not a keytab afskeys can read.
    #[error("keytab {name}: {source}")]
    Parse {
        name: String,
        #[source]
        source: keytab::KeytabFormatError,
    },
    /// The keytab lacks the keys asked for; the message says what it holds.
    #[error("{0}")]
    Missing(String),
    #[error("keytab {name}: kvno {kvno} is too large")]
    KvnoTooLarge { name: String, kvno: u32 },
    /// The principal to export under is malformed.
    #[error("{0}")]
    Principal(String),
    #[error("{0}: enctype does not fit a keytab")]
    Enctype(KeyId),
    #[error("{0}: negative kvno")]
    NegativeKvno(KeyId),
}

impl crate::error::Kinded for KeytabError {
    fn kind(&self) -> crate::error::Kind {
        crate::error::Kind::Failed
    }
}

/// The enctypes `akeyconvert` treats as single DES (rxkad keys for KeyFile, never
/// KeyFileExt): see [`Enctype::is_akeyconvert_des`].
fn is_des(enctype: u16) -> bool {
    Enctype(i32::from(enctype)).is_akeyconvert_des()
}

fn describe(entries: &[Entry]) -> String {
    if entries.is_empty() {
        return "it holds no keys".into();
    }
    let mut v: Vec<String> = entries
        .iter()
        .map(|e| format!("{} kvno {} enctype {}", e.principal(), e.kvno, e.enctype))
        .collect();
    v.sort();
    v.dedup();
    format!("it holds: {}", v.join("; "))
}

fn parse(bytes: &[u8], name: &str) -> Result<Vec<Entry>, KeytabError> {
    keytab::parse(bytes).map_err(|source| KeytabError::Parse {
        name: name.to_string(),
        source,
    })
}

/// The keys of `principal` at `kvno` in a keytab, stored as `key_type`: an rxkad key from a
/// single-DES entry, or rxkad_krb5/rxgk keys of `enctypes` (all non-DES ones when empty).
pub fn take(
    bytes: &[u8],
    name: &str,
    principal: &str,
    kvno: i32,
    key_type: KeyType,
    enctypes: &[Enctype],
) -> Result<Vec<Key>, KeytabError> {
    let entries = parse(bytes, name)?;
    let mine: Vec<&Entry> = entries
        .iter()
        .filter(|e| e.principal() == principal && i64::from(e.kvno) == i64::from(kvno))
        .collect();
    let keys: Vec<Key> = match key_type {
        KeyType::Rxkad => mine
            .iter()
            .find(|e| is_des(e.enctype) && e.key.len() == 8)
            .map(|e| {
                vec![Key::new(
                    KeyId {
                        key_type,
                        kvno,
                        subtype: 0,
                    },
                    Zeroizing::new(e.key.to_vec()),
                )]
            })
            .unwrap_or_default(),
        _ => mine
            .iter()
            .filter(|e| !is_des(e.enctype))
            .filter(|e| enctypes.is_empty() || enctypes.contains(&Enctype(i32::from(e.enctype))))
            .map(|e| {
                Key::new(
                    KeyId {
                        key_type,
                        kvno,
                        subtype: i32::from(e.enctype),
                    },
                    Zeroizing::new(e.key.to_vec()),
                )
            })
            .collect(),
    };
    if keys.is_empty() {
        let want = match key_type {
            KeyType::Rxkad => "single-DES key".to_string(),
            _ if enctypes.is_empty() => "non-DES key".to_string(),
            _ => format!(
                "key of enctype {}",
                enctypes
                    .iter()
                    .map(|e| e.0.to_string())
                    .collect::<Vec<_>>()
                    .join(" or ")
            ),
        };
        return Err(KeytabError::Missing(format!(
            "keytab {name} has no {want} for {principal} at kvno {kvno}; {}",
            describe(&entries)
        )));
    }
    Ok(keys)
}

/// A single-DES keytab entry `convert` left out: (kvno, enctype).
pub type Skipped = (u32, u16);

/// The non-DES keys in a keytab as rxkad_krb5 keys, as `akeyconvert` does: of `principal`
/// only when given (else every principal, as akeyconvert takes its `rxkad.keytab` whole), of
/// the highest kvno only unless `all`. Single-DES entries are skipped and returned as
/// (kvno, enctype).
pub fn convert(
    bytes: &[u8],
    name: &str,
    principal: Option<&str>,
    all: bool,
) -> Result<(Vec<Key>, Vec<Skipped>), KeytabError> {
    let entries = parse(bytes, name)?;
    let chosen: Vec<&Entry> = entries
        .iter()
        .filter(|e| principal.is_none_or(|p| e.principal() == p))
        .collect();
    let newest = chosen.iter().map(|e| e.kvno).max();
    let mut keys = Vec::new();
    let mut skipped = Vec::new();
    for e in chosen.into_iter().filter(|e| all || Some(e.kvno) == newest) {
        if is_des(e.enctype) {
            skipped.push((e.kvno, e.enctype));
            continue;
        }
        let kvno = i32::try_from(e.kvno).map_err(|_| KeytabError::KvnoTooLarge {
            name: name.to_string(),
            kvno: e.kvno,
        })?;
        let key = Key::new(
            KeyId {
                key_type: KeyType::RxkadKrb5,
                kvno,
                subtype: i32::from(e.enctype),
            },
            Zeroizing::new(e.key.to_vec()),
        );
        // A keytab may list the same key twice (two principals): keep the first.
        if !keys.iter().any(|k: &Key| k.id == key.id) {
            keys.push(key);
        }
    }
    if keys.is_empty() {
        return Err(KeytabError::Missing(format!(
            "keytab {name} has no non-DES key{}; {}",
            principal.map(|p| format!(" for {p}")).unwrap_or_default(),
            describe(&entries)
        )));
    }
    Ok((keys, skipped))
}

/// A keytab holding `keys` (rxkad_krb5) under `principal`.
pub fn export(
    keys: &[&Key],
    principal: &str,
    timestamp: u32,
) -> Result<Zeroizing<Vec<u8>>, KeytabError> {
    let (components, realm) =
        keytab::split_principal(principal).map_err(|e| KeytabError::Principal(e.to_string()))?;
    let mut entries = Vec::new();
    for k in keys {
        let enctype = u16::try_from(k.id.subtype).map_err(|_| KeytabError::Enctype(k.id))?;
        let kvno = u32::try_from(k.kvno()).map_err(|_| KeytabError::NegativeKvno(k.id))?;
        entries.push(Entry {
            realm: realm.clone(),
            components: components.clone(),
            kvno,
            enctype,
            key: Zeroizing::new(k.bytes().to_vec()),
        });
    }
    Ok(keytab::write(&entries, timestamp))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kt() -> Zeroizing<Vec<u8>> {
        let k = |kvno, e: i32, b: u8, len| {
            Key::new(
                KeyId {
                    key_type: KeyType::RxkadKrb5,
                    kvno,
                    subtype: e,
                },
                Zeroizing::new(vec![b; len]),
            )
        };
        let keys = [
            k(5, 18, 1, 32),
            k(5, 17, 2, 16),
            k(5, 3, 3, 8),
            k(6, 18, 4, 32),
        ];
        export(&keys.iter().collect::<Vec<_>>(), "afs/x.org@X.ORG", 0).unwrap()
    }

    #[test]
    fn take_picks_kvno_and_enctypes() {
        let b = kt();
        let keys = take(&b, "t", "afs/x.org@X.ORG", 5, KeyType::RxkadKrb5, &[]).unwrap();
        assert_eq!(
            keys.iter().map(|k| k.id.subtype).collect::<Vec<_>>(),
            vec![18, 17]
        );
        let keys = take(
            &b,
            "t",
            "afs/x.org@X.ORG",
            5,
            KeyType::RxkadKrb5,
            &[Enctype(17)],
        )
        .unwrap();
        assert_eq!(keys[0].bytes(), &[2; 16]);
        let des = take(&b, "t", "afs/x.org@X.ORG", 5, KeyType::Rxkad, &[]).unwrap();
        assert_eq!((des[0].id.subtype, des[0].bytes()), (0, &[3u8; 8][..]));
        let e = take(&b, "t", "afs/x.org@X.ORG", 7, KeyType::RxkadKrb5, &[])
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("keytab t has no non-DES key for afs/x.org@X.ORG at kvno 7"),
            "{e}"
        );
        assert!(e.contains("afs/x.org@X.ORG kvno 6 enctype 18"), "{e}");
    }

    #[test]
    fn convert_skips_des() {
        let (keys, skipped) = convert(&kt(), "t", Some("afs/x.org@X.ORG"), true).unwrap();
        assert_eq!(keys.len(), 3);
        assert_eq!(skipped, vec![(5, 3)]);
        let (current, skipped) = convert(&kt(), "t", None, false).unwrap();
        assert_eq!(
            current.iter().map(|k| k.kvno()).collect::<Vec<_>>(),
            vec![6]
        );
        assert!(skipped.is_empty());
        assert!(convert(&kt(), "t", Some("afs/y.org@Y.ORG"), true).is_err());
    }
}

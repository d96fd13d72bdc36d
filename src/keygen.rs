//! Make the keys an `add` stores: derived from a password (AFS string-to-key for rxkad,
//! RFC 3962 with the principal's default salt for typed keys), drawn at random, or given as
//! raw bytes, which are checked (DES parity, weak keys, length for the enctype).

use crate::crypto;
use crate::keys::{Enctype, Key, KeyId, KeySet, KeySetError, KeyType};
use zeroize::Zeroizing;

/// The RFC 3962 iteration count when the principal says nothing else.
pub const DEFAULT_ITERATIONS: u32 = 4096;

#[derive(Debug, thiserror::Error)]
pub enum KeygenError {
    #[error("an rxkad key is single DES; --enctype applies only to rxkad_krb5 and rxgk keys")]
    EnctypeForRxkad,
    #[error("raw key bytes need exactly one --enctype")]
    OneEnctypeForRaw,
    #[error("an rxkad key is 8 bytes (16 hex digits), {0} given")]
    DesLength(usize),
    #[error("the DES key has bad parity (each byte needs an odd number of one bits); refusing it")]
    BadParity,
    #[error("the DES key is weak or semi-weak; refusing it")]
    Weak,
    #[error("enctype {enctype} takes a {need}-byte key, {got} bytes given")]
    Length {
        enctype: Enctype,
        need: usize,
        got: usize,
    },
    #[error("cannot derive a key of enctype {0} from a password (afskeys derives 17 and 18)")]
    CannotDerive(Enctype),
    #[error("enctype {0} has no known key length, so a random key cannot be made for it")]
    UnknownLength(Enctype),
    #[error(
        "the password is empty; an empty password makes a key anyone can derive (give a real one)"
    )]
    EmptyPassword,
    #[error(
        "--enctype {0}: afskeys knows no such enctype, so it cannot check the key's length \
         (known: {known})",
        known = crate::keys::Enctype::known_list()
    )]
    UnknownEnctype(Enctype),
    #[error(
        "--enctype {0} is single DES: such a key is an rxkad key in KeyFile (--type rxkad), \
         never a KeyFileExt key"
    )]
    SingleDesEnctype(Enctype),
    #[error("--enctype lists {0} twice")]
    DuplicateEnctype(Enctype),
    #[error(transparent)]
    Crypto(#[from] crypto::CryptoError),
    #[error(transparent)]
    Key(#[from] KeySetError),
}

impl crate::error::Kinded for KeygenError {
    fn kind(&self) -> crate::error::Kind {
        crate::error::Kind::Failed
    }
}

/// Where the key material comes from.
pub enum Material<'a> {
    Password(&'a [u8]),
    Random,
    Raw(&'a [u8]),
}

/// Why a passphrase would be read differently by other tools than by afskeys, if it would:
/// kadmin, kinit and every C tool stop at a NUL; kadmin reads a passphrase as one line, so a
/// CR or LF splits or changes it; a terminal acts on other control characters (erase,
/// interrupt) rather than typing them; and a terminal types UTF-8 only.
pub fn passphrase_problem(pw: &[u8]) -> Option<String> {
    if pw.contains(&0) {
        return Some(
            "holds a NUL byte: kadmin, kinit and every C tool would read only what comes \
             before it"
                .into(),
        );
    }
    if pw.iter().any(|&b| b == b'\r' || b == b'\n') {
        return Some(
            "holds a line break (CR or LF): kadmin reads a password as one line and would \
             read another one"
                .into(),
        );
    }
    if let Some(&b) = pw.iter().find(|&&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Some(format!(
            "holds the control character 0x{b:02x}: a terminal would act on it (erase, \
             interrupt) instead of typing it"
        ));
    }
    if std::str::from_utf8(pw).is_err() {
        return Some("is not UTF-8: a terminal could not type it".into());
    }
    None
}

/// The default enctypes of a typed key: what the afs principal gets in the KDC.
pub fn default_enctypes() -> Vec<Enctype> {
    vec![Enctype::AES256_SHA1, Enctype::AES128_SHA1]
}

/// Refuse a DES key given as bytes (not derived) with bad parity or that is weak.
pub fn check_des(key: &[u8; 8]) -> Result<(), KeygenError> {
    if !crypto::has_odd_parity(key) {
        return Err(KeygenError::BadParity);
    }
    if crypto::is_weak(key) {
        return Err(KeygenError::Weak);
    }
    Ok(())
}

/// The `--enctype` list of a typed key: each a known enctype (its key length is what
/// checks a given key, and what a random key is made to), none single DES (those are rxkad
/// keys, in KeyFile), none twice.
pub fn check_enctypes(enctypes: &[Enctype]) -> Result<(), KeygenError> {
    for (i, e) in enctypes.iter().enumerate() {
        if e.name().is_none() {
            return Err(KeygenError::UnknownEnctype(*e));
        }
        if e.is_single_des() {
            return Err(KeygenError::SingleDesEnctype(*e));
        }
        if enctypes[..i].contains(e) {
            return Err(KeygenError::DuplicateEnctype(*e));
        }
    }
    Ok(())
}

/// Make the keys for one add. `cell` salts rxkad passwords; `principal` salts typed ones.
pub fn make_keys(
    kvno: i32,
    key_type: KeyType,
    enctypes: &[Enctype],
    material: Material<'_>,
    cell: &str,
    principal: &str,
) -> Result<Vec<Key>, KeygenError> {
    if matches!(material, Material::Password(pw) if pw.is_empty()) {
        return Err(KeygenError::EmptyPassword);
    }
    let keys = match key_type {
        KeyType::Rxkad => {
            if !enctypes.is_empty() {
                return Err(KeygenError::EnctypeForRxkad);
            }
            vec![Key::rxkad(kvno, &des_key(&material, cell)?)]
        }
        KeyType::Rxgk | KeyType::RxkadKrb5 => {
            let enctypes = if enctypes.is_empty() {
                default_enctypes()
            } else {
                check_enctypes(enctypes)?;
                enctypes.to_vec()
            };
            if matches!(material, Material::Raw(_)) && enctypes.len() != 1 {
                return Err(KeygenError::OneEnctypeForRaw);
            }
            let mut out = Vec::new();
            for e in enctypes {
                let id = KeyId {
                    key_type,
                    kvno,
                    subtype: e.0,
                };
                out.push(Key::new(id, typed_bytes(e, &material, principal)?));
            }
            out
        }
    };
    for k in &keys {
        KeySet::validate_key(k)?;
    }
    Ok(keys)
}

/// An rxkad (single DES) key: derived with the cell as salt, random, or given (and checked).
fn des_key(material: &Material, cell: &str) -> Result<[u8; 8], KeygenError> {
    let des = match material {
        Material::Password(pw) => crypto::afs_string_to_key(pw, cell),
        Material::Random => crypto::random_des_key()?,
        Material::Raw(b) => {
            let arr: [u8; 8] = (*b)
                .try_into()
                .map_err(|_| KeygenError::DesLength(b.len()))?;
            check_des(&arr)?;
            arr
        }
    };
    if crypto::is_weak(&des) {
        return Err(KeygenError::Weak);
    }
    Ok(des)
}

/// The bytes of a typed key of enctype `e`: derived with the principal's default salt,
/// random, or given (and checked for the enctype's length).
fn typed_bytes(
    e: Enctype,
    material: &Material,
    principal: &str,
) -> Result<Zeroizing<Vec<u8>>, KeygenError> {
    Ok(match material {
        Material::Password(pw) => {
            let len = e
                .key_len()
                .filter(|_| e.is_rfc3962())
                .ok_or(KeygenError::CannotDerive(e))?;
            let salt = crypto::default_salt(principal)?;
            crypto::aes_string_to_key(pw, &salt, DEFAULT_ITERATIONS, len)
        }
        Material::Random => {
            let n = e.key_len().ok_or(KeygenError::UnknownLength(e))?;
            crypto::random_bytes(n)?
        }
        Material::Raw(b) => {
            if let Some(need) = e.key_len() {
                if b.len() != need {
                    return Err(KeygenError::Length {
                        enctype: e,
                        need,
                        got: b.len(),
                    });
                }
            }
            Zeroizing::new(b.to_vec())
        }
    })
}

/// The key a password derives to, even a weak DES key: what `string-to-key` shows (it
/// refuses nothing). No enctype: an rxkad key salted with `cell`; else a key of that enctype
/// salted with `principal`.
pub fn derive_unchecked(
    enctype: Option<Enctype>,
    password: &[u8],
    cell: &str,
    principal: &str,
) -> Result<Key, KeygenError> {
    let Some(e) = enctype else {
        return Ok(Key::rxkad(0, &crypto::afs_string_to_key(password, cell)));
    };
    let mut keys = make_keys(
        0,
        KeyType::RxkadKrb5,
        &[e],
        Material::Password(password),
        cell,
        principal,
    )?;
    Ok(keys.remove(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enctype_lists_are_checked() {
        assert!(check_enctypes(&[Enctype(18), Enctype(17), Enctype(23)]).is_ok());
        for (list, want) in [
            (
                vec![Enctype(4242)],
                "--enctype 4242: afskeys knows no such enctype",
            ),
            (
                vec![Enctype(18), Enctype(0)],
                "--enctype 0: afskeys knows no such",
            ),
            (vec![Enctype(-1)], "--enctype -1: afskeys knows no such"),
            (vec![Enctype(1)], "--enctype 1 (des-cbc-crc) is single DES"),
            (
                vec![Enctype(18), Enctype(17), Enctype(18)],
                "lists 18 (aes256-cts-hmac-sha1-96) twice",
            ),
        ] {
            let e = check_enctypes(&list).unwrap_err().to_string();
            assert!(e.contains(want), "{list:?}: {e}");
        }
        let r = make_keys(
            5,
            KeyType::RxkadKrb5,
            &[Enctype(17), Enctype(17)],
            Material::Random,
            "c",
            "p",
        );
        assert!(matches!(r, Err(KeygenError::DuplicateEnctype(Enctype(17)))));
        // the default list (no --enctype) is not affected
        assert_eq!(
            make_keys(5, KeyType::Rxgk, &[], Material::Random, "c", "p")
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn typed_password_keys_use_the_principal_salt() {
        let keys = make_keys(
            5,
            KeyType::RxkadKrb5,
            &[],
            Material::Password(b"secret"),
            "example.com",
            "afs/example.com@EXAMPLE.COM",
        )
        .unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0].id.subtype, 18);
        assert_eq!(keys[0].bytes().len(), 32);
        let salt = b"EXAMPLE.COMafsexample.com";
        assert_eq!(
            keys[1].bytes(),
            &crypto::aes_string_to_key(b"secret", salt, 4096, 16)[..]
        );
    }

    #[test]
    fn raw_des_checks() {
        let mk = |b: &[u8]| make_keys(1, KeyType::Rxkad, &[], Material::Raw(b), "c", "p@R");
        assert!(matches!(
            mk(&[1; 7]).unwrap_err(),
            KeygenError::DesLength(7)
        ));
        assert!(matches!(mk(&[1; 8]).unwrap_err(), KeygenError::Weak));
        assert!(matches!(mk(&[0; 8]).unwrap_err(), KeygenError::BadParity));
        let good = [0x80, 0xb6, 0xa7, 0xcd, 0x7a, 0x9d, 0xad, 0xb6];
        assert_eq!(mk(&good).unwrap()[0].bytes(), &good);
        assert!(matches!(
            make_keys(
                1,
                KeyType::Rxkad,
                &[Enctype(18)],
                Material::Random,
                "c",
                "p@R"
            )
            .unwrap_err(),
            KeygenError::EnctypeForRxkad
        ));
    }

    #[test]
    fn raw_typed_needs_one_enctype_and_its_length() {
        let r = make_keys(
            1,
            KeyType::RxkadKrb5,
            &[],
            Material::Raw(&[1; 32]),
            "c",
            "p@R",
        );
        assert!(matches!(r.unwrap_err(), KeygenError::OneEnctypeForRaw));
        let r = make_keys(
            1,
            KeyType::RxkadKrb5,
            &[Enctype(17)],
            Material::Raw(&[1; 32]),
            "c",
            "p@R",
        );
        assert!(matches!(
            r.unwrap_err(),
            KeygenError::Length {
                need: 16,
                got: 32,
                ..
            }
        ));
        let r = make_keys(
            1,
            KeyType::RxkadKrb5,
            &[Enctype(20)],
            Material::Password(b"x"),
            "c",
            "p@R",
        );
        assert!(matches!(
            make_keys(1, KeyType::Rxkad, &[], Material::Password(b""), "c", "p@R"),
            Err(KeygenError::EmptyPassword)
        ));
        assert!(matches!(
            r.unwrap_err(),
            KeygenError::CannotDerive(Enctype(20))
        ));
    }

    #[test]
    fn random_keys_differ_and_are_sound() {
        let a = make_keys(1, KeyType::Rxkad, &[], Material::Random, "c", "p@R").unwrap();
        let b = make_keys(1, KeyType::Rxkad, &[], Material::Random, "c", "p@R").unwrap();
        assert_ne!(a[0].bytes(), b[0].bytes());
        let d = a[0].des_bytes().unwrap();
        assert!(crypto::has_odd_parity(&d) && !crypto::is_weak(&d));
    }
}

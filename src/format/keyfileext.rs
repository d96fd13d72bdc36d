//! OpenAFS 1.8's KeyFileExt: int32 count, then records of (meta length ≥ 16, type, kvno,
//! subtype, meta length − 16 skipped bytes, key length, key). Written sorted by
//! (type, kvno, subtype) with meta length 16, as OpenAFS does.

use super::{be32, check_trailing, FormatError};
use crate::keys::{Key, KeyId, KeySet, KeyType};
use zeroize::Zeroizing;

/// Parse KeyFileExt bytes into a set of typed keys.
pub fn read_keyfileext(b: &[u8]) -> Result<KeySet, FormatError> {
    if b.is_empty() {
        return Err(FormatError::Empty);
    }
    let n = be32(b, 0, "the key count")?;
    if n < 0 {
        return Err(FormatError::NegativeCount(n));
    }
    // Each record is at least 20 bytes (meta 16 + key length 4).
    if (n as usize).saturating_mul(20) > b.len() - 4 {
        return Err(FormatError::CountTooLarge {
            count: n,
            len: b.len(),
        });
    }
    let mut set = KeySet::new();
    let mut off = 4usize;
    for _ in 0..n {
        let start = off;
        let meta_len = be32(b, off, "a meta length")?;
        if meta_len < 16 {
            return Err(FormatError::MetaLength {
                offset: start,
                meta_len,
            });
        }
        let t = be32(b, off + 4, "a key type")?;
        let kvno = be32(b, off + 8, "a kvno")?;
        let subtype = be32(b, off + 12, "a subtype")?;
        off = off
            .checked_add(meta_len as usize)
            .ok_or(FormatError::MetaLength {
                offset: start,
                meta_len,
            })?;
        let key_len = be32(b, off, "a key length")?;
        if key_len < 0 {
            return Err(FormatError::NegativeKeyLength {
                offset: start,
                key_len,
            });
        }
        off += 4;
        let end = off + key_len as usize;
        if end > b.len() {
            return Err(FormatError::Truncated {
                what: "key bytes",
                offset: off,
                need: key_len as usize,
                len: b.len(),
            });
        }
        let key_type = match KeyType::from_number(t) {
            Some(KeyType::Rxkad) => return Err(FormatError::RxkadInExt { offset: start }),
            Some(kt) => kt,
            None => {
                return Err(FormatError::UnknownType {
                    offset: start,
                    key_type: t,
                })
            }
        };
        let id = KeyId {
            key_type,
            kvno,
            subtype,
        };
        set.insert(Key::new(id, Zeroizing::new(b[off..end].to_vec())))
            .map_err(|e| FormatError::key(start, e))?;
        off = end;
    }
    check_trailing(b, off)?;
    Ok(set)
}

/// KeyFileExt bytes for the typed keys of `set` (the 4 bytes `00 00 00 00` when none).
pub fn write_keyfileext(set: &KeySet) -> Zeroizing<Vec<u8>> {
    let keys: Vec<&Key> = set.typed().collect();
    let mut out = Zeroizing::new(Vec::new());
    out.extend_from_slice(&(keys.len() as i32).to_be_bytes());
    for k in keys {
        out.extend_from_slice(&16i32.to_be_bytes());
        out.extend_from_slice(&k.id.key_type.number().to_be_bytes());
        out.extend_from_slice(&k.kvno().to_be_bytes());
        out.extend_from_slice(&k.id.subtype.to_be_bytes());
        out.extend_from_slice(&(k.bytes().len() as i32).to_be_bytes());
        out.extend_from_slice(k.bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::KeySetError;

    fn rec(meta: i32, t: i32, kvno: i32, sub: i32, extra: &[u8], key: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        for x in [meta, t, kvno, sub] {
            v.extend_from_slice(&x.to_be_bytes());
        }
        v.extend_from_slice(extra);
        v.extend_from_slice(&(key.len() as i32).to_be_bytes());
        v.extend_from_slice(key);
        v
    }

    fn file(n: i32, recs: &[Vec<u8>]) -> Vec<u8> {
        let mut v = n.to_be_bytes().to_vec();
        for r in recs {
            v.extend_from_slice(r);
        }
        v
    }

    #[test]
    fn round_trip_sorted() {
        let b = file(
            2,
            &[
                rec(16, 2, 5, 18, &[], &[1; 32]),
                rec(16, 2, 5, 17, &[], &[2; 16]),
            ],
        );
        let set = read_keyfileext(&b).unwrap();
        let out = write_keyfileext(&set);
        assert_eq!(
            *out,
            file(
                2,
                &[
                    rec(16, 2, 5, 17, &[], &[2; 16]),
                    rec(16, 2, 5, 18, &[], &[1; 32])
                ]
            )
        );
        assert_eq!(*write_keyfileext(&KeySet::new()), vec![0, 0, 0, 0]);
    }

    /// What the real `asetkey add rxkad_krb5 <kvno> <enctype> <keytab> <princ>` (OpenAFS
    /// 1.8.9) writes from keytab entries stays readable: an enctype afskeys cannot name
    /// (4242), enctype 0 (what asetkey stores for an enctype given by name), and a single-DES
    /// enctype in KeyFileExt. (A key whose length does not match its known enctype — asetkey
    /// also stores enctype 18 with 16 bytes — is refused as corrupt, see `errors`.)
    #[test]
    fn what_asetkey_writes_stays_readable() {
        let b = file(
            3,
            &[
                rec(16, 2, 6, 4242, &[], &[1; 16]),
                rec(16, 2, 8, 3, &[], &[1; 8]),
                rec(16, 2, 9, 0, &[], &[3; 32]),
            ],
        );
        let set = read_keyfileext(&b).unwrap();
        let ids: Vec<(i32, i32, usize)> = set
            .iter()
            .map(|k| (k.kvno(), k.id.subtype, k.bytes().len()))
            .collect();
        assert_eq!(ids, [(6, 4242, 16), (8, 3, 8), (9, 0, 32)]);
        assert_eq!(*write_keyfileext(&set), b);
    }

    #[test]
    fn longer_meta_is_skipped() {
        let b = file(1, &[rec(20, 2, 5, 17, &[9, 9, 9, 9], &[2; 16])]);
        let set = read_keyfileext(&b).unwrap();
        assert_eq!(set.iter().next().unwrap().bytes(), &[2; 16]);
    }

    #[test]
    fn errors() {
        assert_eq!(read_keyfileext(&[]), Err(FormatError::Empty));
        assert_eq!(
            read_keyfileext(&(-2i32).to_be_bytes()),
            Err(FormatError::NegativeCount(-2))
        );
        assert!(matches!(
            read_keyfileext(&file(3, &[rec(16, 2, 5, 17, &[], &[2; 16])])),
            Err(FormatError::CountTooLarge { count: 3, .. })
        ));
        assert_eq!(
            read_keyfileext(&file(1, &[rec(12, 2, 5, 17, &[], &[2; 16])])),
            Err(FormatError::MetaLength {
                offset: 4,
                meta_len: 12
            })
        );
        assert!(matches!(
            read_keyfileext(&file(1, &[rec(16, 2, 5, 18, &[], &[2; 16])])),
            Err(FormatError::Key {
                offset: 4,
                source: KeySetError::KeyLength {
                    got: 16,
                    enctype_len: 32,
                    ..
                }
            })
        ));
        let mut b = file(1, &[rec(16, 2, 5, 17, &[], &[2; 16])]);
        b.truncate(b.len() - 1);
        assert!(matches!(
            read_keyfileext(&b),
            Err(FormatError::Truncated {
                what: "key bytes",
                ..
            })
        ));
        let b = file(
            2,
            &[
                rec(16, 2, 5, 17, &[], &[2; 16]),
                rec(16, 2, 5, 17, &[], &[3; 16]),
            ],
        );
        assert!(matches!(
            read_keyfileext(&b),
            Err(FormatError::Duplicate { offset: 40, .. })
        ));
        assert_eq!(
            read_keyfileext(&file(1, &[rec(16, 0, 5, 0, &[], &[2; 8])])),
            Err(FormatError::RxkadInExt { offset: 4 })
        );
        assert_eq!(
            read_keyfileext(&file(1, &[rec(16, 7, 5, 0, &[], &[2; 8])])),
            Err(FormatError::UnknownType {
                offset: 4,
                key_type: 7
            })
        );
        let mut b = file(1, &[rec(16, 2, 5, 17, &[], &[2; 16])]);
        b.push(1);
        assert!(matches!(
            read_keyfileext(&b),
            Err(FormatError::TrailingBytes { .. })
        ));
        // A key length that runs past the end of the file.
        let mut b = file(1, &[rec(16, 2, 5, 4242, &[], &[2; 4])]);
        let kl = b.len() - 8;
        b[kl..kl + 4].copy_from_slice(&i32::MAX.to_be_bytes());
        assert!(matches!(
            read_keyfileext(&b),
            Err(FormatError::Truncated { .. })
        ));
    }
}

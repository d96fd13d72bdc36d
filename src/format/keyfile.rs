//! The classic KeyFile: int32 count, then (int32 kvno, 8-byte DES key) records, big-endian.
//! We read the compact 1.8 layout and the old 100-byte fixed layout; we write the compact one,
//! sorted by kvno, exactly as OpenAFS 1.8 does.

use super::{be32, check_trailing, FormatError};
use crate::keys::{Key, KeySet, KeyType, MAX_RXKAD_KEYS};

const RECORD: usize = 12;

/// Parse KeyFile bytes. Stricter than OpenAFS: duplicates and non-zero trailing bytes are
/// corruption, because an editor that guesses which record wins can lose a key.
pub fn read_keyfile(b: &[u8]) -> Result<KeySet, FormatError> {
    if b.is_empty() {
        return Err(FormatError::Empty);
    }
    let n = be32(b, 0, "the key count")?;
    if n < 0 {
        return Err(FormatError::NegativeCount(n));
    }
    if n as usize > MAX_RXKAD_KEYS {
        return Err(FormatError::TooManyKeys(n));
    }
    let n = n as usize;
    let mut set = KeySet::new();
    for i in 0..n {
        let off = 4 + i * RECORD;
        if b.len() < off + RECORD {
            return Err(FormatError::Truncated {
                what: "a key record",
                offset: off,
                need: RECORD,
                len: b.len(),
            });
        }
        let kvno = be32(b, off, "a kvno")?;
        let key: [u8; 8] = b[off + 4..off + RECORD].try_into().unwrap();
        set.insert(Key::rxkad(kvno, &key))
            .map_err(|e| FormatError::key(off, e))?;
    }
    check_trailing(b, 4 + n * RECORD)?;
    Ok(set)
}

/// The compact KeyFile for the rxkad keys of `set`: `4 + 12 × n` bytes, ascending kvno.
pub fn write_keyfile(set: &KeySet) -> Vec<u8> {
    let keys: Vec<&Key> = set.of_type(KeyType::Rxkad).collect();
    let mut out = Vec::with_capacity(4 + RECORD * keys.len());
    out.extend_from_slice(&(keys.len() as i32).to_be_bytes());
    for k in keys {
        out.extend_from_slice(&k.kvno().to_be_bytes());
        // The kvno 999 entry may hold a password longer or shorter than 8 bytes; the
        // record has room for 8 (OpenAFS truncates or zero-pads the same way).
        let mut raw = [0u8; 8];
        let n = k.bytes().len().min(8);
        raw[..n].copy_from_slice(&k.bytes()[..n]);
        out.extend_from_slice(&raw);
        zeroize::Zeroize::zeroize(&mut raw);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::KeySetError;

    fn file(records: &[(i32, [u8; 8])]) -> Vec<u8> {
        let mut v = (records.len() as i32).to_be_bytes().to_vec();
        for (kvno, key) in records {
            v.extend_from_slice(&kvno.to_be_bytes());
            v.extend_from_slice(key);
        }
        v
    }

    const K: [u8; 8] = [0x80, 0xb6, 0xa7, 0xcd, 0x7a, 0x9d, 0xad, 0xb6];

    #[test]
    fn round_trip_sorted_compact() {
        let b = file(&[(7, K), (3, [1; 8])]);
        let set = read_keyfile(&b).unwrap();
        let out = write_keyfile(&set);
        assert_eq!(out, file(&[(3, [1; 8]), (7, K)]));
        assert_eq!(out.len(), 4 + 24);
    }

    #[test]
    fn old_fixed_layout_is_read() {
        let mut b = file(&[(3, K)]);
        b.resize(100, 0);
        let set = read_keyfile(&b).unwrap();
        assert_eq!(set.len(), 1);
        assert_eq!(write_keyfile(&set), file(&[(3, K)]));
    }

    #[test]
    fn empty_set_is_four_zero_bytes() {
        assert_eq!(write_keyfile(&KeySet::new()), vec![0, 0, 0, 0]);
        assert!(read_keyfile(&[0, 0, 0, 0]).unwrap().is_empty());
    }

    #[test]
    fn errors() {
        assert_eq!(read_keyfile(&[]), Err(FormatError::Empty));
        assert!(matches!(
            read_keyfile(&[0, 0]),
            Err(FormatError::Truncated { offset: 0, .. })
        ));
        assert_eq!(
            read_keyfile(&(-1i32).to_be_bytes()),
            Err(FormatError::NegativeCount(-1))
        );
        assert_eq!(
            read_keyfile(&9i32.to_be_bytes()),
            Err(FormatError::TooManyKeys(9))
        );
        let mut b = file(&[(1, K), (2, K)]);
        b.truncate(20);
        assert!(matches!(
            read_keyfile(&b),
            Err(FormatError::Truncated {
                offset: 16,
                need: 12,
                len: 20,
                ..
            })
        ));
        let b = file(&[(1, K), (1, [1; 8])]);
        assert!(matches!(
            read_keyfile(&b),
            Err(FormatError::Duplicate { offset: 16, .. })
        ));
        let b = file(&[(256, K)]);
        assert!(matches!(
            read_keyfile(&b),
            Err(FormatError::Key {
                source: KeySetError::RxkadKvnoRange(256),
                ..
            })
        ));
        let mut b = file(&[(1, K)]);
        b.extend_from_slice(&[0, 0, 5]);
        assert_eq!(
            read_keyfile(&b),
            Err(FormatError::TrailingBytes {
                offset: 18,
                len: 19
            })
        );
    }

    #[test]
    fn kvno_999_and_weak_keys_are_read() {
        let b = file(&[(0, [0; 8]), (999, *b"password")]);
        let set = read_keyfile(&b).unwrap();
        assert_eq!(set.len(), 2);
        assert_eq!(write_keyfile(&set), b);
    }
}

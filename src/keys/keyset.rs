//! The keys of one conf dir (KeyFile + KeyFileExt together), kept sorted as OpenAFS
//! writes them (type, kvno, subtype), with the invariants checked on every insert.

use super::enctype::Enctype;
use super::key::{Key, KeyId, KeyType, BCRYPT_KVNO, MAX_RXKAD_KEYS};

/// Why a key cannot join a set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeySetError {
    #[error("{0} is already present")]
    Duplicate(KeyId),
    #[error("{count} rxkad keys, at most {MAX_RXKAD_KEYS} allowed", count = .0)]
    TooManyRxkad(usize),
    #[error("rxkad kvno {0} is outside 0-255 (an rxkad ticket carries its kvno in one byte)")]
    RxkadKvnoRange(i32),
    #[error("kvno {0} is negative")]
    NegativeKvno(i32),
    #[error("{id}: key is {got} bytes, {enctype_len} expected for its enctype")]
    KeyLength {
        id: KeyId,
        got: usize,
        enctype_len: usize,
    },
    #[error("{0}: an rxkad key must be 8 bytes")]
    RxkadLength(KeyId),
    #[error("{0}: rxkad keys have subtype 0")]
    RxkadSubtype(KeyId),
}

/// A set of keys with unique ids, sorted by (type, kvno, subtype).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeySet {
    keys: Vec<Key>,
}

impl KeySet {
    pub fn new() -> KeySet {
        KeySet::default()
    }

    /// Check one key on its own (range of kvno, length for its enctype).
    pub fn validate_key(key: &Key) -> Result<(), KeySetError> {
        let id = key.id;
        match id.key_type {
            KeyType::Rxkad => {
                if !(0..=255).contains(&id.kvno) && id.kvno != BCRYPT_KVNO {
                    return Err(KeySetError::RxkadKvnoRange(id.kvno));
                }
                if id.subtype != 0 {
                    return Err(KeySetError::RxkadSubtype(id));
                }
                // The kvno 999 entry holds the raw password bytes, any length.
                if id.kvno != BCRYPT_KVNO && key.bytes().len() != 8 {
                    return Err(KeySetError::RxkadLength(id));
                }
            }
            KeyType::Rxgk | KeyType::RxkadKrb5 => {
                if id.kvno < 0 {
                    return Err(KeySetError::NegativeKvno(id.kvno));
                }
                if let Some(len) = Enctype(id.subtype).key_len() {
                    if key.bytes().len() != len {
                        return Err(KeySetError::KeyLength {
                            id,
                            got: key.bytes().len(),
                            enctype_len: len,
                        });
                    }
                }
            }
        }
        Ok(())
    }

    /// Add a key that is not yet present.
    pub fn insert(&mut self, key: Key) -> Result<(), KeySetError> {
        Self::validate_key(&key)?;
        match self.keys.binary_search_by(|k| k.id.cmp(&key.id)) {
            Ok(_) => Err(KeySetError::Duplicate(key.id)),
            Err(pos) => {
                if key.id.key_type == KeyType::Rxkad {
                    let n = self.count(KeyType::Rxkad) + 1;
                    if n > MAX_RXKAD_KEYS {
                        return Err(KeySetError::TooManyRxkad(n));
                    }
                }
                self.keys.insert(pos, key);
                Ok(())
            }
        }
    }

    /// Add a key, replacing one with the same id; returns the replaced key.
    pub fn upsert(&mut self, key: Key) -> Result<Option<Key>, KeySetError> {
        let old = self.remove(&key.id);
        match self.insert(key) {
            Ok(()) => Ok(old),
            Err(e) => {
                if let Some(o) = old {
                    self.insert(o).expect("re-inserting a key that was present");
                }
                Err(e)
            }
        }
    }

    pub fn get(&self, id: &KeyId) -> Option<&Key> {
        self.keys
            .binary_search_by(|k| k.id.cmp(id))
            .ok()
            .map(|i| &self.keys[i])
    }

    pub fn remove(&mut self, id: &KeyId) -> Option<Key> {
        match self.keys.binary_search_by(|k| k.id.cmp(id)) {
            Ok(i) => Some(self.keys.remove(i)),
            Err(_) => None,
        }
    }

    /// Remove every key matching the predicate; returns them.
    pub fn remove_where(&mut self, mut pred: impl FnMut(&Key) -> bool) -> Vec<Key> {
        let mut removed = Vec::new();
        let mut kept = Vec::with_capacity(self.keys.len());
        for k in self.keys.drain(..) {
            if pred(&k) {
                removed.push(k);
            } else {
                kept.push(k);
            }
        }
        self.keys = kept;
        removed
    }

    pub fn iter(&self) -> impl Iterator<Item = &Key> {
        self.keys.iter()
    }

    pub fn of_type(&self, t: KeyType) -> impl Iterator<Item = &Key> {
        self.keys.iter().filter(move |k| k.id.key_type == t)
    }

    /// The typed keys (those that live in KeyFileExt).
    pub fn typed(&self) -> impl Iterator<Item = &Key> {
        self.keys.iter().filter(|k| k.id.key_type.is_typed())
    }

    pub fn count(&self, t: KeyType) -> usize {
        self.of_type(t).count()
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The highest kvno of the afs principal's key types, rxkad and rxkad_krb5 (excluding the
    /// kvno 999 password entry): what a rotation must go above. An rxgk key numbers its
    /// kvnos apart and does not count.
    pub fn max_afs_kvno(&self) -> Option<i32> {
        self.keys
            .iter()
            .filter(|k| k.id.key_type != KeyType::Rxgk)
            .filter(|k| !(k.id.key_type == KeyType::Rxkad && k.id.kvno == BCRYPT_KVNO))
            .map(|k| k.id.kvno)
            .max()
    }

    /// The highest kvno of any type (excluding the kvno 999 password entry).
    pub fn max_kvno(&self) -> Option<i32> {
        self.keys
            .iter()
            .filter(|k| !(k.id.key_type == KeyType::Rxkad && k.id.kvno == BCRYPT_KVNO))
            .map(|k| k.id.kvno)
            .max()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zeroize::Zeroizing;

    fn typed(kvno: i32, enctype: i32, len: usize) -> Key {
        Key::new(
            KeyId {
                key_type: KeyType::RxkadKrb5,
                kvno,
                subtype: enctype,
            },
            Zeroizing::new(vec![7u8; len]),
        )
    }

    #[test]
    fn sorted_by_type_kvno_subtype() {
        let mut s = KeySet::new();
        s.insert(typed(5, 18, 32)).unwrap();
        s.insert(Key::rxkad(9, &[1; 8])).unwrap();
        s.insert(typed(5, 17, 16)).unwrap();
        s.insert(Key::rxkad(2, &[1; 8])).unwrap();
        let ids: Vec<(i32, i32)> = s.iter().map(|k| (k.kvno(), k.id.subtype)).collect();
        assert_eq!(ids, vec![(2, 0), (9, 0), (5, 17), (5, 18)]);
        assert_eq!(s.max_kvno(), Some(9));
    }

    #[test]
    fn the_afs_kvno_leaves_out_rxgk_keys_and_the_bcrypt_slot() {
        let mut s = KeySet::new();
        s.insert(typed(5, 18, 32)).unwrap();
        s.insert(Key::rxkad(BCRYPT_KVNO, &[1; 8])).unwrap();
        let rxgk = KeyId {
            key_type: KeyType::Rxgk,
            kvno: 60000,
            subtype: 18,
        };
        s.insert(Key::new(rxgk, Zeroizing::new(vec![7u8; 32])))
            .unwrap();
        assert_eq!(s.max_kvno(), Some(60000));
        assert_eq!(s.max_afs_kvno(), Some(5));
    }

    #[test]
    fn ninth_rxkad_key_refused() {
        let mut s = KeySet::new();
        for kvno in 0..8 {
            s.insert(Key::rxkad(kvno, &[1; 8])).unwrap();
        }
        assert_eq!(
            s.insert(Key::rxkad(8, &[1; 8])),
            Err(KeySetError::TooManyRxkad(9))
        );
        // typed keys do not count against the rxkad limit
        s.insert(typed(8, 18, 32)).unwrap();
    }

    #[test]
    fn duplicate_refused_and_upsert_replaces() {
        let mut s = KeySet::new();
        s.insert(Key::rxkad(3, &[1; 8])).unwrap();
        assert!(matches!(
            s.insert(Key::rxkad(3, &[2; 8])),
            Err(KeySetError::Duplicate(_))
        ));
        let old = s.upsert(Key::rxkad(3, &[2; 8])).unwrap().unwrap();
        assert_eq!(old.bytes(), &[1; 8]);
        assert_eq!(s.iter().next().unwrap().bytes(), &[2; 8]);
    }

    #[test]
    fn ranges_and_lengths() {
        let mut s = KeySet::new();
        assert_eq!(
            s.insert(Key::rxkad(256, &[1; 8])),
            Err(KeySetError::RxkadKvnoRange(256))
        );
        assert_eq!(
            s.insert(Key::rxkad(-1, &[1; 8])),
            Err(KeySetError::RxkadKvnoRange(-1))
        );
        s.insert(Key::rxkad(999, &[1; 8])).unwrap();
        assert!(matches!(
            s.insert(typed(4, 18, 16)),
            Err(KeySetError::KeyLength {
                got: 16,
                enctype_len: 32,
                ..
            })
        ));
        // unknown enctype: any length
        s.insert(typed(4, 4242, 5)).unwrap();
        assert_eq!(s.max_kvno(), Some(4));
    }

    #[test]
    fn debug_hides_material() {
        let k = Key::rxkad(1, &[0xab; 8]);
        let d = format!("{k:?}");
        assert!(!d.contains("ab") && !d.contains("171"), "{d}");
    }
}

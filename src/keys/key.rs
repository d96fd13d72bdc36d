//! One key and what names it: the key type (rxkad, rxgk, rxkad_krb5), the key id (type,
//! kvno, enctype) and the key bytes, wiped from memory on drop.

use super::enctype::{Enctype, ParseError};
use std::fmt;
use std::str::FromStr;
use zeroize::Zeroizing;

/// At most this many rxkad (DES) keys fit in a KeyFile.
pub const MAX_RXKAD_KEYS: usize = 8;

/// The kvno that `bos addkey -kvno 999` uses for the raw-password "bcrypt" entry.
pub const BCRYPT_KVNO: i32 = 999;

/// The type of a key, as numbered in KeyFileExt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KeyType {
    /// Single-DES rxkad key; lives in KeyFile.
    Rxkad,
    /// rxgk key; lives in KeyFileExt.
    Rxgk,
    /// rxkad-k5 key (a Kerberos enctype); lives in KeyFileExt.
    RxkadKrb5,
}

impl KeyType {
    /// The number stored in KeyFileExt.
    pub fn number(self) -> i32 {
        match self {
            KeyType::Rxkad => 0,
            KeyType::Rxgk => 1,
            KeyType::RxkadKrb5 => 2,
        }
    }

    pub fn from_number(n: i32) -> Option<KeyType> {
        match n {
            0 => Some(KeyType::Rxkad),
            1 => Some(KeyType::Rxgk),
            2 => Some(KeyType::RxkadKrb5),
            _ => None,
        }
    }

    /// The name OpenAFS's `asetkey` uses.
    pub fn name(self) -> &'static str {
        match self {
            KeyType::Rxkad => "rxkad",
            KeyType::Rxgk => "rxgk",
            KeyType::RxkadKrb5 => "rxkad_krb5",
        }
    }

    /// Typed keys carry an enctype; rxkad keys are always single DES.
    pub fn is_typed(self) -> bool {
        self != KeyType::Rxkad
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for KeyType {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        match s.to_ascii_lowercase().as_str() {
            "rxkad" | "0" => Ok(KeyType::Rxkad),
            "rxgk" | "1" => Ok(KeyType::Rxgk),
            "rxkad_krb5" | "rxkad-krb5" | "rxkad_k5" | "2" => Ok(KeyType::RxkadKrb5),
            _ => Err(ParseError::KeyType(s.to_string())),
        }
    }
}

/// Where a key is identified: (type, kvno, subtype). For rxkad the subtype is 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyId {
    pub key_type: KeyType,
    pub kvno: i32,
    /// The Kerberos enctype number for typed keys, 0 for rxkad.
    pub subtype: i32,
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key_type.is_typed() {
            write!(
                f,
                "{} kvno {} enctype {}",
                self.key_type,
                self.kvno,
                Enctype(self.subtype)
            )
        } else {
            write!(f, "{} kvno {}", self.key_type, self.kvno)
        }
    }
}

/// One key. The bytes are wiped from memory when the key is dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct Key {
    pub id: KeyId,
    bytes: Zeroizing<Vec<u8>>,
}

impl Key {
    pub fn new(id: KeyId, bytes: Zeroizing<Vec<u8>>) -> Key {
        Key { id, bytes }
    }

    /// A single-DES rxkad key.
    pub fn rxkad(kvno: i32, bytes: &[u8; 8]) -> Key {
        Key::new(
            KeyId {
                key_type: KeyType::Rxkad,
                kvno,
                subtype: 0,
            },
            Zeroizing::new(bytes.to_vec()),
        )
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The 8 bytes of a DES key, when this key is 8 bytes long.
    pub fn des_bytes(&self) -> Option<[u8; 8]> {
        self.bytes.as_slice().try_into().ok()
    }

    pub fn key_type(&self) -> KeyType {
        self.id.key_type
    }

    pub fn kvno(&self) -> i32 {
        self.id.kvno
    }
}

impl fmt::Debug for Key {
    /// Never prints key material.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({}, {} bytes)", self.id, self.bytes.len())
    }
}

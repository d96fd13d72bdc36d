//! Kerberos enctype numbers and names, the key length each one requires, which are single
//! DES, and the error for a key type or enctype name afskeys does not know.

use std::fmt;
use std::str::FromStr;

/// A key type or enctype name afskeys does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("unknown key type {0:?} (expected rxkad, rxkad_krb5 or rxgk)")]
    KeyType(String),
    #[error("unknown enctype {0:?} (give a number or a name such as aes256-cts-hmac-sha1-96)")]
    Enctype(String),
}

/// A Kerberos enctype number (the subtype of a typed key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Enctype(pub i32);

const TABLE: &[(i32, &str, Option<usize>)] = &[
    (1, "des-cbc-crc", Some(8)),
    (2, "des-cbc-md4", Some(8)),
    (3, "des-cbc-md5", Some(8)),
    (16, "des3-cbc-sha1", Some(24)),
    (17, "aes128-cts-hmac-sha1-96", Some(16)),
    (18, "aes256-cts-hmac-sha1-96", Some(32)),
    (19, "aes128-cts-hmac-sha256-128", Some(16)),
    (20, "aes256-cts-hmac-sha384-192", Some(32)),
    (23, "arcfour-hmac", Some(16)),
    (25, "camellia128-cts-cmac", Some(16)),
    (26, "camellia256-cts-cmac", Some(32)),
];

impl Enctype {
    pub const AES128_SHA1: Enctype = Enctype(17);
    pub const AES256_SHA1: Enctype = Enctype(18);

    /// The canonical name, when the number is a known enctype.
    pub fn name(self) -> Option<&'static str> {
        TABLE.iter().find(|e| e.0 == self.0).map(|e| e.1)
    }

    /// The enctypes afskeys knows, for messages: `16 (des3-cbc-sha1), 17 (…), …`.
    pub fn known_list() -> String {
        TABLE
            .iter()
            .map(|e| Enctype(e.0).to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The key length this enctype requires, when known.
    pub fn key_len(self) -> Option<usize> {
        TABLE.iter().find(|e| e.0 == self.0).and_then(|e| e.2)
    }

    /// Single DES: 1 des-cbc-crc, 2 des-cbc-md4, 3 des-cbc-md5, 4 des-cbc-raw and
    /// 8 des-hmac-sha1 — every enctype whose key is one 8-byte DES key. Such keys are
    /// rxkad keys (KeyFile), never KeyFileExt keys, and are kept out of the afs entry.
    pub fn is_single_des(self) -> bool {
        matches!(self.0, 1..=4 | 8)
    }

    /// The single-DES enctypes OpenAFS's `akeyconvert` recognises as such (1-3; it has no
    /// case for 4 or 8 and would store those as rxkad_krb5 keys). `keytab convert` follows
    /// it to stay byte-identical; every other check uses `is_single_des`.
    pub fn is_akeyconvert_des(self) -> bool {
        matches!(self.0, 1..=3)
    }

    /// True for the two enctypes afskeys can derive from a password (RFC 3962).
    pub fn is_rfc3962(self) -> bool {
        self == Enctype::AES128_SHA1 || self == Enctype::AES256_SHA1
    }
}

impl fmt::Display for Enctype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => write!(f, "{} ({})", self.0, n),
            None => write!(f, "{}", self.0),
        }
    }
}

impl FromStr for Enctype {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        if let Ok(n) = s.parse::<i32>() {
            return Ok(Enctype(n));
        }
        let l = s.to_ascii_lowercase();
        let alias = match l.as_str() {
            "aes256" | "aes256-cts" => "aes256-cts-hmac-sha1-96",
            "aes128" | "aes128-cts" => "aes128-cts-hmac-sha1-96",
            "rc4-hmac" => "arcfour-hmac",
            other => other,
        };
        TABLE
            .iter()
            .find(|e| e.1 == alias)
            .map(|e| Enctype(e.0))
            .ok_or_else(|| ParseError::Enctype(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers_parse() {
        assert_eq!("18".parse::<Enctype>().unwrap(), Enctype(18));
        assert_eq!(
            "aes128-cts-hmac-sha1-96".parse::<Enctype>().unwrap(),
            Enctype(17)
        );
        assert_eq!("AES256".parse::<Enctype>().unwrap(), Enctype(18));
        assert!("aes512".parse::<Enctype>().is_err());
    }

    #[test]
    fn single_des_sets() {
        for e in [1, 2, 3, 4, 8] {
            assert!(Enctype(e).is_single_des(), "{e}");
        }
        for e in [0, 5, 6, 7, 16, 17, 18, 23] {
            assert!(!Enctype(e).is_single_des(), "{e}");
        }
        let akc: Vec<i32> = (0..30)
            .filter(|&e| Enctype(e).is_akeyconvert_des())
            .collect();
        assert_eq!(akc, [1, 2, 3]);
    }

    #[test]
    fn key_lengths() {
        assert_eq!(Enctype(17).key_len(), Some(16));
        assert_eq!(Enctype(18).key_len(), Some(32));
        assert_eq!(Enctype(999).key_len(), None);
        assert_eq!(Enctype(18).to_string(), "18 (aes256-cts-hmac-sha1-96)");
    }
}

//! The checksum operators compare across servers and give to `--if-cksum`: for rxkad keys the
//! one `bos listkeys` prints; for typed keys (which OpenAFS never checksums) the first four
//! bytes of SHA-1 over the key, as a big-endian unsigned integer. Neither reveals the key.
//! Shown to people as the decimal number, or `-` when there is none.

use crate::crypto::bos_checksum;
use crate::keys::{Key, KeyType};
use sha1::{Digest, Sha1};

/// `None` for a DES key `bos listkeys` would print no checksum for (weak or bad parity).
pub fn key_checksum(key: &Key) -> Option<u32> {
    match key.key_type() {
        KeyType::Rxkad => key.des_bytes().and_then(|b| bos_checksum(&b)),
        KeyType::Rxgk | KeyType::RxkadKrb5 => {
            let d = Sha1::digest(key.bytes());
            Some(u32::from_be_bytes([d[0], d[1], d[2], d[3]]))
        }
    }
}

/// A checksum as people see it: the decimal number, or `-` for none.
pub fn show_checksum(cksum: Option<u32>) -> String {
    cksum.map_or_else(|| "-".to_string(), |c| c.to_string())
}

/// `key`'s checksum as people see it.
pub fn checksum_text(key: &Key) -> String {
    show_checksum(key_checksum(key))
}

/// The checksums of `keys` as people see them, comma-separated.
pub fn checksums_text(keys: &[Key]) -> String {
    keys.iter().map(checksum_text).collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::KeyId;
    use zeroize::Zeroizing;

    #[test]
    fn typed_checksum_is_sha1_prefix() {
        // SHA-1("abc") = a9993e36 4706816a ba3e2571 7850c26c 9cd0d89d (FIPS 180 example)
        let k = Key::new(
            KeyId {
                key_type: KeyType::RxkadKrb5,
                kvno: 1,
                subtype: 4242,
            },
            Zeroizing::new(b"abc".to_vec()),
        );
        assert_eq!(key_checksum(&k), Some(0xa9993e36));
        assert_eq!(checksum_text(&k), "2845392438");
        assert_eq!(show_checksum(None), "-");
    }
}

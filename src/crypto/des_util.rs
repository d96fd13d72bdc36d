//! Single-DES helpers: parity, weak keys, the `bos listkeys` checksum and
//! the DES CBC checksum (`DES_cbc_cksum`) used by the AFS string-to-key.

use des::cipher::{Array, BlockCipherEncrypt, KeyInit};
use des::Des;
use zeroize::Zeroizing;

/// The 4 weak and 12 semi-weak DES keys (FIPS 74), with odd parity, in the
/// order OpenAFS's bundled hcrypto (`DES_is_weak_key`) lists them.
pub const WEAK_KEYS: [[u8; 8]; 16] = [
    // weak
    [0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01],
    [0xFE, 0xFE, 0xFE, 0xFE, 0xFE, 0xFE, 0xFE, 0xFE],
    [0x1F, 0x1F, 0x1F, 0x1F, 0x0E, 0x0E, 0x0E, 0x0E],
    [0xE0, 0xE0, 0xE0, 0xE0, 0xF1, 0xF1, 0xF1, 0xF1],
    // semi-weak
    [0x01, 0xFE, 0x01, 0xFE, 0x01, 0xFE, 0x01, 0xFE],
    [0xFE, 0x01, 0xFE, 0x01, 0xFE, 0x01, 0xFE, 0x01],
    [0x1F, 0xE0, 0x1F, 0xE0, 0x0E, 0xF1, 0x0E, 0xF1],
    [0xE0, 0x1F, 0xE0, 0x1F, 0xF1, 0x0E, 0xF1, 0x0E],
    [0x01, 0xE0, 0x01, 0xE0, 0x01, 0xF1, 0x01, 0xF1],
    [0xE0, 0x01, 0xE0, 0x01, 0xF1, 0x01, 0xF1, 0x01],
    [0x1F, 0xFE, 0x1F, 0xFE, 0x0E, 0xFE, 0x0E, 0xFE],
    [0xFE, 0x1F, 0xFE, 0x1F, 0xFE, 0x0E, 0xFE, 0x0E],
    [0x01, 0x1F, 0x01, 0x1F, 0x01, 0x0E, 0x01, 0x0E],
    [0x1F, 0x01, 0x1F, 0x01, 0x0E, 0x01, 0x0E, 0x01],
    [0xE0, 0xFE, 0xE0, 0xFE, 0xF1, 0xFE, 0xF1, 0xFE],
    [0xFE, 0xE0, 0xFE, 0xE0, 0xFE, 0xF1, 0xFE, 0xF1],
];

/// `b` with its low bit set so that the byte has an odd number of one bits.
fn odd_parity_byte(b: u8) -> u8 {
    let high = b & 0xFE;
    if high.count_ones().is_multiple_of(2) {
        high | 1
    } else {
        high
    }
}

/// Set the low bit of every byte so each byte has an odd number of one bits.
pub fn fix_parity(key: &mut [u8; 8]) {
    for b in key.iter_mut() {
        *b = odd_parity_byte(*b);
    }
}

/// True when every byte of the key has odd parity.
pub fn has_odd_parity(key: &[u8; 8]) -> bool {
    key.iter().all(|b| b.count_ones() % 2 == 1)
}

/// True for the 4 weak and 12 semi-weak DES keys (compared with parity fixed).
pub fn is_weak(key: &[u8; 8]) -> bool {
    let mut fixed = Zeroizing::new(*key);
    fix_parity(&mut fixed);
    WEAK_KEYS.iter().any(|w| w == &*fixed)
}

/// A DES cipher for `key`, exactly as given: no parity or weak-key check
/// (`des` 0.9's `KeyInit::new` checks neither; the parity bits are ignored
/// by the key schedule).
pub(crate) fn des_cipher(key: &[u8; 8]) -> Des {
    Des::new(&Array::from(*key))
}

/// Encrypt one 8-byte block with DES in ECB mode.
pub fn des_ecb_encrypt(key: &[u8; 8], block: &[u8; 8]) -> [u8; 8] {
    let cipher = des_cipher(key);
    let mut b = Array::from(*block);
    cipher.encrypt_block(&mut b);
    b.into()
}

/// The DES CBC checksum (`DES_cbc_cksum` of OpenAFS's hcrypto): DES in CBC
/// mode over `data` zero-padded to a multiple of 8 bytes, starting from
/// `iv`; the result is the last ciphertext block. Empty data gives all
/// zeros, as in hcrypto. The key is used as given (no checks).
pub fn des_cbc_checksum(data: &[u8], key: &[u8; 8], iv: &[u8; 8]) -> [u8; 8] {
    let cipher = des_cipher(key);
    cbc_checksum_with(&cipher, data, iv)
}

pub(crate) fn cbc_checksum_with(cipher: &Des, data: &[u8], iv: &[u8; 8]) -> [u8; 8] {
    if data.is_empty() {
        return [0u8; 8];
    }
    let mut chain = Zeroizing::new(*iv);
    for chunk in data.chunks(8) {
        for (c, d) in chain.iter_mut().zip(chunk) {
            *c ^= d;
        }
        // A short last chunk is zero padded: XOR with zero leaves `chain`.
        cipher.encrypt_block((&mut *chain).into());
    }
    *chain
}

/// The checksum `bos listkeys` prints; `None` for a weak/semi-weak/bad-parity key.
///
/// OpenAFS (`ka_KeyCheckSum`) encrypts 8 zero bytes with the key and reads
/// the first 4 bytes of the result as a big-endian integer; its key schedule
/// (`DES_key_sched`, which checks parity and weak keys) refuses the key
/// otherwise and the checksum is 0. `bos` prints `key version is N` for a
/// checksum of 0, so a (2^-32 unlikely) genuine 0 checksum is `None` too.
pub fn bos_checksum(key: &[u8; 8]) -> Option<u32> {
    if !has_odd_parity(key) || WEAK_KEYS.contains(key) {
        return None;
    }
    let block = des_ecb_encrypt(key, &[0u8; 8]);
    let sum = u32::from_be_bytes([block[0], block[1], block[2], block[3]]);
    (sum != 0).then_some(sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h8(s: &str) -> [u8; 8] {
        hex::decode(s).unwrap().try_into().unwrap()
    }

    #[test]
    fn parity_fix_and_check() {
        let mut k = [0u8, 1, 2, 3, 0xFE, 0xFF, 0x80, 0x7F];
        assert!(!has_odd_parity(&k));
        fix_parity(&mut k);
        assert_eq!(k, [0x01, 0x01, 0x02, 0x02, 0xFE, 0xFE, 0x80, 0x7F]);
        assert!(has_odd_parity(&k));
        // Every byte value: the fixed byte keeps its top 7 bits and is odd.
        for b in 0..=255u8 {
            let f = odd_parity_byte(b);
            assert_eq!(f & 0xFE, b & 0xFE);
            assert_eq!(f.count_ones() % 2, 1);
        }
        assert!(has_odd_parity(&h8("80b6a7cd7a9dadb6")));
        assert!(!has_odd_parity(&h8("80b6a7cd7a9dadb7")));
    }

    #[test]
    fn weak_keys_are_weak_with_or_without_parity() {
        for w in WEAK_KEYS {
            assert!(is_weak(&w), "{w:02x?}");
            // Same key with every parity bit flipped is still weak.
            let flipped = w.map(|b| b ^ 1);
            assert!(is_weak(&flipped), "{flipped:02x?}");
            assert_eq!(bos_checksum(&w), None);
        }
        assert!(is_weak(&[0u8; 8]));
        assert!(is_weak(&[0xFF; 8]));
        assert!(!is_weak(&h8("80b6a7cd7a9dadb6")));
        assert!(!is_weak(&h8("0123456789abcdef")));
        // The `des` crate's own list (weak, semi-weak and the 48 "possibly
        // weak" keys) has all 16 of ours; the possibly weak ones are not
        // ours, as in OpenAFS's DES_is_weak_key (e.g. 01011F1F01010E0E).
        for w in WEAK_KEYS {
            assert!(des::weak_key_test(&w).is_err(), "{w:02x?}");
        }
        assert!(des::weak_key_test(&h8("01011f1f01010e0e")).is_err());
        assert!(!is_weak(&h8("01011f1f01010e0e")));
        // Weak keys really are weak: encrypting twice gives the plaintext back.
        for w in &WEAK_KEYS[..4] {
            let p = *b"afskeys!";
            assert_eq!(des_ecb_encrypt(w, &des_ecb_encrypt(w, &p)), p);
        }
    }

    #[test]
    fn des_known_answer() {
        // The classic DES example (FIPS 81 / Stallings): key 133457799BBCDFF1,
        // plaintext 0123456789ABCDEF -> 85E813540F0AB405.
        assert_eq!(
            des_ecb_encrypt(&h8("133457799bbcdff1"), &h8("0123456789abcdef")),
            h8("85e813540f0ab405")
        );
    }

    #[test]
    fn cbc_checksum_pads_and_chains() {
        let key = h8("0123456789abcdef");
        let iv = h8("1234567890abcdef");
        // One full block: E(iv ^ block).
        let block = *b"Now is t";
        let x: Vec<u8> = block.iter().zip(iv).map(|(a, b)| a ^ b).collect();
        let expect = des_ecb_encrypt(&key, &x.try_into().unwrap());
        assert_eq!(des_cbc_checksum(&block, &key, &iv), expect);
        // A partial block is zero padded.
        assert_eq!(
            des_cbc_checksum(b"Now is the time", &key, &iv),
            des_cbc_checksum(b"Now is the time\0", &key, &iv)
        );
        assert_ne!(
            des_cbc_checksum(b"Now is the time", &key, &iv),
            des_cbc_checksum(b"Now is the timf", &key, &iv)
        );
        assert_eq!(des_cbc_checksum(b"", &key, &iv), [0u8; 8]);
        // MIT krb5's DES tests (src/lib/crypto/builtin/des/t_verify.c):
        // key 0123456789abcdef, iv 1234567890abcdef, the 28 bytes
        // "7654321 Now is the time for " -> CBC checksum 58d2e77e86062733.
        assert_eq!(
            des_cbc_checksum(b"7654321 Now is the time for ", &key, &iv),
            h8("58d2e77e86062733")
        );
        // Same file, ECB: "Now is t" under 0123456789abcdef -> 3fa40e8a984d4815.
        assert_eq!(des_ecb_encrypt(&key, b"Now is t"), h8("3fa40e8a984d4815"));
    }

    /// Observed from OpenAFS 1.8.9 (Debian 1.8.9-1+deb12u1): keys stored with
    /// `asetkey add <kvno> <hex>`, then `bos listkeys -server localhost
    /// -noauth` against `bosserver -noauth`.
    #[test]
    fn bos_checksum_openafs_observed() {
        assert_eq!(bos_checksum(&h8("80b6a7cd7a9dadb6")), Some(1692570754));
        assert_eq!(bos_checksum(&h8("0123456789abcdef")), Some(3587461111));
        // `key version is N`: weak, semi-weak, bad parity, all zeros.
        for k in [
            "0101010101010101",
            "1f1f1f1f0e0e0e0e",
            "01fe01fe01fe01fe",
            "80b6a7cd7a9dadb7",
            "0000000000000000",
        ] {
            assert_eq!(bos_checksum(&h8(k)), None, "{k}");
        }
    }

    #[test]
    fn bos_checksum_rejects_bad_parity() {
        let good = h8("80b6a7cd7a9dadb6");
        assert!(bos_checksum(&good).is_some());
        let mut bad = good;
        bad[7] ^= 1;
        assert_eq!(bos_checksum(&bad), None);
    }
}

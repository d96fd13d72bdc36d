//! Random keys from the operating system's RNG.

use zeroize::Zeroizing;

use super::des_util::{fix_parity, is_weak};
use super::CryptoError;

/// `n` random bytes from the OS RNG.
pub fn random_bytes(n: usize) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let mut buf = Zeroizing::new(vec![0u8; n]);
    getrandom::fill(&mut buf).map_err(|e| CryptoError::Rng(e.to_string()))?;
    Ok(buf)
}

/// A random DES key with odd parity that is neither weak nor semi-weak.
pub fn random_des_key() -> Result<[u8; 8], CryptoError> {
    loop {
        let mut key = Zeroizing::new([0u8; 8]);
        getrandom::fill(&mut key[..]).map_err(|e| CryptoError::Rng(e.to_string()))?;
        fix_parity(&mut key);
        if !is_weak(&key) {
            return Ok(*key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::des_util::{bos_checksum, has_odd_parity};

    #[test]
    fn random_bytes_have_the_length_asked_and_differ() {
        assert!(random_bytes(0).unwrap().is_empty());
        let a = random_bytes(32).unwrap();
        let b = random_bytes(32).unwrap();
        assert_eq!(a.len(), 32);
        assert_ne!(*a, *b, "two 256-bit draws were equal");
        assert_ne!(*a, vec![0u8; 32]);
    }

    #[test]
    fn random_des_keys_are_usable() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            let k = random_des_key().unwrap();
            assert!(has_odd_parity(&k), "{k:02x?}");
            assert!(!is_weak(&k), "{k:02x?}");
            assert!(bos_checksum(&k).is_some(), "{k:02x?}");
            seen.insert(k);
        }
        assert_eq!(seen.len(), 200, "repeated random keys");
    }
}

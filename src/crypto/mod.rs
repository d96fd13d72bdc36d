//! Key algorithms: AFS and RFC 3962 string-to-key, the `bos listkeys` checksum,
//! DES parity and weak-key checks, random keys from the OS RNG.
//!
//! - [`afs_string_to_key`]: the rxkad DES key OpenAFS's `bos addkey` derives
//!   from a password and a cell (`ka_StringToKey`).
//! - [`aes_string_to_key`]: RFC 3962 (PBKDF2-HMAC-SHA1, then DK with
//!   "kerberos"), with [`n_fold`], [`aes_dk`] and [`default_salt`].
//! - [`bos_checksum`]: what `bos listkeys` prints for a key.
//! - [`fix_parity`], [`has_odd_parity`], [`is_weak`]: DES key hygiene.
//! - [`random_des_key`], [`random_bytes`]: from the OS RNG (getrandom).

mod aes_s2k;
mod afs_s2k;
mod des_util;
mod random;

pub use aes_s2k::{
    aes_dk, aes_key_len, aes_string_to_key, default_salt, n_fold, pbkdf2_sha1,
    DEFAULT_AES_ITERATIONS, ENCTYPE_AES128_CTS_HMAC_SHA1_96, ENCTYPE_AES256_CTS_HMAC_SHA1_96,
};
pub use afs_s2k::{afs_string_to_key, afs_string_to_key_salt};
pub use des_util::{
    bos_checksum, des_cbc_checksum, des_ecb_encrypt, fix_parity, has_odd_parity, is_weak, WEAK_KEYS,
};
pub use random::{random_bytes, random_des_key};

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("principal {0:?} has no realm (expected name/instance@REALM)")]
    NoRealm(String),
    #[error("the operating system's random number generator failed: {0}")]
    Rng(String),
}

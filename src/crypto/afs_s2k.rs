//! AFS string-to-key: the rxkad DES key that `bos addkey` (OpenAFS
//! `ka_StringToKey`) derives from a password and a cell name.

use zeroize::Zeroizing;

use super::des_util::{cbc_checksum_with, des_cipher, fix_parity, WEAK_KEYS};

/// Passwords longer than this take the CBC-checksum branch.
const SHORT_MAX: usize = 8;

/// OpenAFS builds password ‖ cell in a `char[BUFSIZ]` (8192 on glibc) and
/// hashes at most what fits before the terminating NUL.
const LONG_DATA_MAX: usize = 8191;

/// AFS string-to-key (rxkad DES key). `cell` is lower-cased here.
///
/// This is OpenAFS's `ka_StringToKey` after it has found the cell in the
/// client CellServDB: the salt is the cell's name in lower case (ASCII).
/// Passwords of 8 bytes or fewer use the crypt(3)-based branch, longer ones
/// the double DES CBC checksum branch. As in the C code, which works on
/// NUL-terminated strings, the password and the cell end at a NUL byte.
pub fn afs_string_to_key(password: &[u8], cell: &str) -> [u8; 8] {
    let cell = Zeroizing::new(cell.to_ascii_lowercase());
    afs_string_to_key_salt(password, cell.as_bytes())
}

/// AFS string-to-key with the salt used exactly as given (no lower-casing).
///
/// OpenAFS does this when `ka_StringToKey` cannot find the cell in the
/// client CellServDB: it then salts with the name it was handed, which for
/// `bos addkey -cell testcell` is `TESTCEL` (bos upper-cases the name and
/// drops its last character).
pub fn afs_string_to_key_salt(password: &[u8], salt: &[u8]) -> [u8; 8] {
    let password = until_nul(password);
    let salt = until_nul(salt);
    if password.len() <= SHORT_MAX {
        short_string_to_key(password, salt)
    } else {
        long_string_to_key(password, salt)
    }
}

fn until_nul(s: &[u8]) -> &[u8] {
    match s.iter().position(|&b| b == 0) {
        Some(n) => &s[..n],
        None => s,
    }
}

/// `Andrew_StringToKey`: crypt(3) with salt "p1" over the first 8 bytes of
/// the cell XOR the password, zero bytes replaced by 'X'.
fn short_string_to_key(password: &[u8], cell: &[u8]) -> [u8; 8] {
    let mut buf = Zeroizing::new([0u8; 8]);
    for (b, c) in buf.iter_mut().zip(cell) {
        *b = *c;
    }
    for (b, p) in buf.iter_mut().zip(password) {
        *b ^= *p;
    }
    for b in buf.iter_mut() {
        if *b == 0 {
            *b = b'X';
        }
    }
    // Traditional DES crypt(3): uses the low 7 bits of each of the 8 bytes,
    // like glibc's (no byte is zero here, so nothing is cut short).
    #[allow(deprecated)]
    let hashed = Zeroizing::new(
        pwhash::unix_crypt::hash_with("p1", &buf[..])
            .expect("\"p1\" is a valid traditional crypt salt"),
    );
    let out = &hashed.as_bytes()[2..10];
    let mut key = [0u8; 8];
    for (k, c) in key.iter_mut().zip(out) {
        *k = c << 1;
    }
    fix_parity(&mut key);
    key
}

/// `StringToKey`: two DES CBC checksums over password ‖ cell.
fn long_string_to_key(password: &[u8], cell: &[u8]) -> [u8; 8] {
    let mut data = Zeroizing::new(Vec::with_capacity(password.len() + cell.len()));
    data.extend_from_slice(password);
    data.extend_from_slice(cell);
    data.truncate(LONG_DATA_MAX);

    let mut k0 = *b"kerberos";
    fix_parity(&mut k0);
    let c1 = Zeroizing::new(cbc_checksum_with(&des_cipher(&k0), &data, b"kerberos"));

    let mut k1 = Zeroizing::new(*c1);
    fix_parity(&mut k1);
    // OpenAFS schedules K1 with the checking DES_key_sched: for a weak key
    // it zeroes the schedule and carries on, which is the schedule of the
    // all-zero key. (Odds 2^-52; kept for exactness.)
    if WEAK_KEYS.contains(&*k1) {
        *k1 = [0u8; 8];
    }
    let mut key = cbc_checksum_with(&des_cipher(&k1), &data, &c1);
    fix_parity(&mut key);
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::des_util::{bos_checksum, des_cbc_checksum, has_odd_parity};

    fn h8(s: &str) -> [u8; 8] {
        hex::decode(s).unwrap().try_into().unwrap()
    }

    /// MIT krb5's AFS string-to-key vectors (src/lib/crypto/crypto_tests/
    /// t_str2key.c before single DES was removed, from the older t_afss2k.c).
    /// MIT passes the cell "Sodium Chloride" / "NaCl" and lower-cases it.
    const MIT_VECTORS: &[(&str, &str, &str)] = &[
        ("", "Sodium Chloride", "a4d0d09b8692b0c2"),
        ("M", "Sodium Chloride", "f1f29eabd0efdf73"),
        ("My", "Sodium Chloride", "d68561c4f294f4a1"),
        ("My ", "Sodium Chloride", "d0e3a7839461e0d0"),
        ("My P", "Sodium Chloride", "d562cd9461cb97df"),
        ("My Pa", "Sodium Chloride", "9ea2a2eca88c6b8f"),
        ("My Pas", "Sodium Chloride", "e3916dd385f167c4"),
        ("My Pass", "Sodium Chloride", "f4c473c88ae9946d"),
        ("My Passw", "Sodium Chloride", "a19eb3ad6be3abd9"),
        ("My Passwo", "Sodium Chloride", "ada1ce103783a78c"),
        ("My Passwor", "Sodium Chloride", "d301d0f73e7a490b"),
        ("My Password", "Sodium Chloride", "b62a4aec9d4c68df"),
        ("", "NaCl", "61efe683e58a6b98"),
        ("M", "NaCl", "68cd68adc486cde5"),
        ("My", "NaCl", "83a1c8868f67d062"),
        ("My ", "NaCl", "9ec78fa4a4b3e0d5"),
        ("My P", "NaCl", "d992868f9d8c85e6"),
        ("My Pa", "NaCl", "daf29283f49ba7ad"),
        ("My Pas", "NaCl", "91cdadef86dfd3a2"),
        ("My Pass", "NaCl", "73d367688f6ee373"),
        ("My Passw", "NaCl", "c461859dadf4dcb0"),
        ("My Passwo", "NaCl", "e90283162cece008"),
        ("My Passwor", "NaCl", "61c82629d9736eb6"),
        ("My Password", "NaCl", "8ca89ec4a8dc3173"),
    ];

    #[test]
    fn mit_krb5_afs_vectors() {
        for (pw, cell, key) in MIT_VECTORS {
            assert_eq!(
                hex::encode(afs_string_to_key(pw.as_bytes(), cell)),
                *key,
                "password {pw:?} cell {cell:?}"
            );
        }
    }

    /// Observed from OpenAFS 1.8.9 (Debian 1.8.9-1+deb12u1): `bos addkey
    /// -server localhost -noauth -kvno N -key <password> -cell <cell>`
    /// against `bosserver -noauth`, the cell listed in the client
    /// CellServDB, then `bos listkeys -showkey` (key) and `bos listkeys`
    /// (checksum): (password, cell, key, checksum).
    const OPENAFS_OBSERVED: &[(&str, &str, &str, u32)] = &[
        (
            "secret",
            "CryptoCheck.Example.COM",
            "64626dced98cb5ec",
            555886669,
        ),
        (
            "a-longer-password",
            "CryptoCheck.Example.COM",
            "a110c82a526b0eba",
            738776190,
        ),
        (
            "12345678",
            "cryptocheck.example.com",
            "8fcbce988c83ced9",
            1357345960,
        ),
        (
            "123456789",
            "cryptocheck.example.com",
            "ce7fe5fbbfa73df4",
            1792662413,
        ),
        ("My Password", "NaCl", "8ca89ec4a8dc3173", 647443684),
        ("My Pass", "NaCl", "73d367688f6ee373", 830790343),
        (
            "Tr0ub4dor&3 is long",
            "grand.central.org",
            "5404ef89571302ce",
            747143655,
        ),
        (
            "",
            "cryptocheck.example.com",
            "868cd9a1ef6189cb",
            3781540939,
        ),
        // XOR with the cell gives zero bytes, replaced by 'X'.
        (
            "crypto",
            "cryptocheck.example.com",
            "d9b0aec7ea859785",
            2693025597,
        ),
        (
            "cryptoch",
            "cryptocheck.example.com",
            "a8dc8aeaa2c48a97",
            2651715259,
        ),
        // Non-ASCII (UTF-8) passwords: 6 bytes (crypt branch, high bits),
        // 10 bytes (checksum branch).
        (
            "äöü",
            "cryptocheck.example.com",
            "c2dfc49dece35df1",
            4138817913,
        ),
        (
            "pässwörd",
            "cryptocheck.example.com",
            "2345ae3d8fd6fde5",
            2657728573,
        ),
        ("a", "nacl", "d6a7ece99eef6dea", 3633911665),
    ];

    /// Same tools, a cell missing from the client CellServDB: bos salts with
    /// the upper-cased name less its last character, not lower-cased:
    /// (password, `-cell` given, salt used, key, checksum).
    const OPENAFS_OBSERVED_UNLISTED: &[(&str, &str, &str, &str, u32)] = &[
        ("x", "testcell", "TESTCEL", "8faee9a8a1f261d0", 1853549802),
        ("x", "TESTCEL", "TESTCE", "9b86a7c2df6e9eec", 3297206466),
        (
            "longer than eight",
            "testcell",
            "TESTCEL",
            "8908f13279f7c404",
            2462192863,
        ),
    ];

    #[test]
    fn openafs_observed_vectors() {
        for (pw, cell, key, sum) in OPENAFS_OBSERVED {
            let k = afs_string_to_key(pw.as_bytes(), cell);
            assert_eq!(hex::encode(k), *key, "password {pw:?} cell {cell:?}");
            assert_eq!(bos_checksum(&k), Some(*sum), "password {pw:?}");
        }
        for (pw, _given, salt, key, sum) in OPENAFS_OBSERVED_UNLISTED {
            let k = afs_string_to_key_salt(pw.as_bytes(), salt.as_bytes());
            assert_eq!(hex::encode(k), *key, "password {pw:?} salt {salt:?}");
            assert_eq!(bos_checksum(&k), Some(*sum), "password {pw:?}");
            // Lower-casing that salt would give another key.
            assert_ne!(afs_string_to_key(pw.as_bytes(), salt), k);
        }
    }

    #[test]
    fn results_have_odd_parity_and_cell_case_does_not_matter() {
        for pw in [
            "",
            "a",
            "12345678",
            "123456789",
            "a much longer password here",
        ] {
            let k = afs_string_to_key(pw.as_bytes(), "Example.COM");
            assert!(has_odd_parity(&k));
            assert_eq!(k, afs_string_to_key(pw.as_bytes(), "example.com"));
        }
    }

    #[test]
    fn branches_split_at_eight_bytes() {
        // 8 bytes: crypt branch, which only sees the first 8 bytes of the
        // cell; 9 bytes: checksum branch, which sees the whole cell.
        let cell_a = "abcdefgh.one";
        let cell_b = "abcdefgh.two";
        assert_eq!(
            afs_string_to_key(b"12345678", cell_a),
            afs_string_to_key(b"12345678", cell_b)
        );
        assert_ne!(
            afs_string_to_key(b"123456789", cell_a),
            afs_string_to_key(b"123456789", cell_b)
        );
    }

    #[test]
    fn long_branch_matches_its_definition() {
        // Recompute the >8 branch from formats.md's description with the
        // public CBC checksum, to pin the iv of the second pass (C1 before
        // parity fixing).
        let pw = b"My Password";
        let data = [&pw[..], b"nacl"].concat();
        let mut k0 = *b"kerberos";
        fix_parity(&mut k0);
        let c1 = des_cbc_checksum(&data, &k0, b"kerberos");
        let mut k1 = c1;
        fix_parity(&mut k1);
        let mut key = des_cbc_checksum(&data, &k1, &c1);
        fix_parity(&mut key);
        assert_eq!(afs_string_to_key(pw, "NaCl"), key);
        assert_eq!(key, h8("8ca89ec4a8dc3173"));
    }

    #[test]
    fn password_ends_at_nul_like_the_c_code() {
        assert_eq!(
            afs_string_to_key(b"My Pa\0ssword", "NaCl"),
            afs_string_to_key(b"My Pa", "NaCl")
        );
    }
}

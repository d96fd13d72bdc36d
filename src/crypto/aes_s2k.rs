//! Kerberos 5 string-to-key for the AES enctypes (RFC 3962), with the
//! RFC 3961 n-fold and DK it needs, and the default salt of a principal.

use aes::cipher::{BlockCipherEncrypt, KeyInit};
use aes::{Aes128, Aes256};
use zeroize::Zeroizing;

use super::CryptoError;

/// Kerberos enctype number of aes128-cts-hmac-sha1-96 (16-byte key).
pub const ENCTYPE_AES128_CTS_HMAC_SHA1_96: i32 = 17;
/// Kerberos enctype number of aes256-cts-hmac-sha1-96 (32-byte key).
pub const ENCTYPE_AES256_CTS_HMAC_SHA1_96: i32 = 18;
/// The default PBKDF2 iteration count of RFC 3962 (s2kparams absent).
pub const DEFAULT_AES_ITERATIONS: u32 = 4096;

/// Key length in bytes of an RFC 3962 enctype (17 -> 16, 18 -> 32).
pub fn aes_key_len(enctype: i32) -> Option<usize> {
    match enctype {
        ENCTYPE_AES128_CTS_HMAC_SHA1_96 => Some(16),
        ENCTYPE_AES256_CTS_HMAC_SHA1_96 => Some(32),
        _ => None,
    }
}

/// RFC 3961 n-fold: stretch or shrink `input` to `out_len` bytes.
///
/// The output is the ones'-complement sum of copies of the input, each
/// rotated right by 13 bits more than the previous one, enough copies to
/// fill the least common multiple of the input and output lengths.
/// An empty input gives zeros.
pub fn n_fold(input: &[u8], out_len: usize) -> Vec<u8> {
    let in_len = input.len();
    let mut out = vec![0u8; out_len];
    if in_len == 0 || out_len == 0 {
        return out;
    }
    let lcm = in_len / gcd(in_len, out_len) * out_len;
    let in_bits = in_len * 8;
    let mut carry: u32 = 0;
    // Walk the lcm-byte concatenation from its last byte to its first,
    // adding byte i into out[i % out_len] with end-around carry.
    for i in (0..lcm).rev() {
        // Copy number i / in_len is rotated right by 13 * (i / in_len) bits.
        let copy = i / in_len;
        let rot = (13 * copy) % in_bits;
        // Bit position (from the left) in the unrotated input of the
        // first bit of byte (i % in_len) of the rotated copy.
        let start = ((i % in_len) * 8 + in_bits - rot) % in_bits;
        let mut byte: u32 = 0;
        for b in 0..8 {
            let pos = (start + b) % in_bits;
            let bit = (input[pos / 8] >> (7 - pos % 8)) & 1;
            byte = (byte << 1) | u32::from(bit);
        }
        let o = i % out_len;
        let sum = u32::from(out[o]) + byte + carry;
        out[o] = (sum & 0xFF) as u8;
        carry = sum >> 8;
    }
    // End-around carry: add it back in once from the last byte, as MIT
    // krb5's krb5int_nfold does.
    for b in out.iter_mut().rev() {
        if carry == 0 {
            break;
        }
        let sum = u32::from(*b) + carry;
        *b = (sum & 0xFF) as u8;
        carry = sum >> 8;
    }
    out
}

fn gcd(mut a: usize, mut b: usize) -> usize {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// PBKDF2-HMAC-SHA1 of the password (the RFC 3962 "tkey").
pub fn pbkdf2_sha1(
    password: &[u8],
    salt: &[u8],
    iterations: u32,
    out_len: usize,
) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(vec![0u8; out_len]);
    pbkdf2::pbkdf2_hmac::<sha1::Sha1>(password, salt, iterations, &mut out);
    out
}

/// RFC 3961 DK for AES (random-to-key is the identity): encrypt the 128-bit
/// n-fold of `constant` with `key`, then each output block again, until
/// `key.len()` bytes exist.
///
/// # Panics
/// If `key` is not 16 or 32 bytes long.
pub fn aes_dk(key: &[u8], constant: &[u8]) -> Zeroizing<Vec<u8>> {
    let mut block =
        Zeroizing::new(<[u8; 16]>::try_from(n_fold(constant, 16)).expect("n_fold gives 16 bytes"));
    let mut out = Zeroizing::new(Vec::with_capacity(key.len()));
    match key.len() {
        16 => {
            let cipher = Aes128::new_from_slice(key).expect("16-byte key");
            while out.len() < key.len() {
                cipher.encrypt_block((&mut *block).into());
                out.extend_from_slice(&block[..]);
            }
        }
        32 => {
            let cipher = Aes256::new_from_slice(key).expect("32-byte key");
            while out.len() < key.len() {
                cipher.encrypt_block((&mut *block).into());
                out.extend_from_slice(&block[..]);
            }
        }
        n => panic!("AES key length must be 16 or 32 bytes, not {n}"),
    }
    out.truncate(key.len());
    out
}

/// RFC 3962 string-to-key for enctype 17 (16-byte key) or 18 (32-byte key).
///
/// `DK(PBKDF2-HMAC-SHA1(password, salt, iterations, key_len), "kerberos")`.
///
/// # Panics
/// If `key_len` is not 16 or 32.
pub fn aes_string_to_key(
    password: &[u8],
    salt: &[u8],
    iterations: u32,
    key_len: usize,
) -> Zeroizing<Vec<u8>> {
    assert!(
        key_len == 16 || key_len == 32,
        "AES key length must be 16 or 32 bytes, not {key_len}"
    );
    let tkey = pbkdf2_sha1(password, salt, iterations, key_len);
    aes_dk(&tkey, b"kerberos")
}

/// Default Kerberos salt of a principal `a/b@REALM` -> `REALMab`.
///
/// The realm is what follows the last unescaped `@`; the components are
/// separated by unescaped `/`. Backslash escapes (`\/`, `\@`, `\\`, `\n`,
/// `\t`, `\b`, `\0`) are undone as in `krb5_parse_name`.
pub fn default_salt(principal: &str) -> Result<Vec<u8>, CryptoError> {
    let no_realm = || CryptoError::NoRealm(principal.to_string());
    let mut components: Vec<Vec<u8>> = vec![Vec::new()];
    let mut realm: Option<Vec<u8>> = None;
    let mut bytes = principal.bytes();
    while let Some(b) = bytes.next() {
        let byte = match b {
            b'\\' => match bytes.next().ok_or_else(no_realm)? {
                b'n' => b'\n',
                b't' => b'\t',
                b'b' => 0x08,
                b'0' => 0,
                other => other,
            },
            b'/' if realm.is_none() => {
                components.push(Vec::new());
                continue;
            }
            b'@' if realm.is_none() => {
                realm = Some(Vec::new());
                continue;
            }
            // A second unescaped '@' is not a valid principal name.
            b'@' => return Err(no_realm()),
            other => other,
        };
        match realm.as_mut() {
            Some(r) => r.push(byte),
            None => components.last_mut().expect("never empty").push(byte),
        }
    }
    let realm = realm.filter(|r| !r.is_empty()).ok_or_else(no_realm)?;
    let mut salt = realm;
    for c in components {
        salt.extend_from_slice(&c);
    }
    Ok(salt)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        hex::decode(s.replace([' ', '\n'], "")).unwrap()
    }

    /// RFC 3961 appendix A.1.
    #[test]
    fn rfc3961_n_fold_vectors() {
        let cases: &[(&[u8], usize, &str)] = &[
            (b"012345", 64, "be072631276b1955"),
            (b"password", 56, "78a07b6caf85fa"),
            (b"Rough Consensus, and Running Code", 64, "bb6ed30870b7f0e0"),
            (
                b"password",
                168,
                "59e4a8ca7c0385c3c37b3f6d2000247cb6e6bd5b3e",
            ),
            (
                b"MASSACHVSETTS INSTITVTE OF TECHNOLOGY",
                192,
                "db3b0d8f0b061e603282b308a50841229ad798fab9540c1b",
            ),
            (b"Q", 168, "518a54a2 15a8452a 518a54a2 15a8452a 518a54a2 15"),
            (
                b"ba",
                168,
                "fb25d531 ae897449 9f52fd92 ea9857c4 ba24cf29 7e",
            ),
            (b"kerberos", 64, "6b657262 65726f73"),
            (b"kerberos", 128, "6b657262 65726f73 7b9b5b2b 93132b93"),
            (
                b"kerberos",
                168,
                "8372c236 344e5f15 50cd0747 e15d62ca 7a5a3bce a4",
            ),
            (
                b"kerberos",
                256,
                "6b657262 65726f73 7b9b5b2b 93132b93 5c9bdcda d95c9899 c4cae4de e6d6cae4",
            ),
        ];
        for (input, bits, expect) in cases {
            assert_eq!(
                n_fold(input, bits / 8),
                unhex(expect),
                "{bits}-fold({:?})",
                String::from_utf8_lossy(input)
            );
        }
    }

    /// MIT krb5 t_nfold.c: 192-fold of "basch", "eichin", "sommerfeld".
    #[test]
    fn mit_n_fold_vectors() {
        let cases: &[(&[u8], &str)] = &[
            (b"basch", "1aab6b42964b98b21f8cde2d2448ba3455d7862c9731643f"),
            (
                b"eichin",
                "65696368696e4b732b4b1b43da1a5b995a58d2c6d0d2dcca",
            ),
            (
                b"sommerfeld",
                "2f7a98557c6ee4abadf4e71192dd442bd4ff5325a5def75c",
            ),
        ];
        for (input, expect) in cases {
            assert_eq!(n_fold(input, 24), unhex(expect));
        }
    }

    struct Vector {
        iterations: u32,
        password: &'static [u8],
        salt: &'static [u8],
        pbkdf2_256: &'static str,
        key128: &'static str,
        key256: &'static str,
    }

    /// RFC 3962 appendix B, all of them (also in MIT krb5's t_str2key.c).
    const RFC3962: &[Vector] = &[
        Vector {
            iterations: 1,
            password: b"password",
            salt: b"ATHENA.MIT.EDUraeburn",
            pbkdf2_256: "cd ed b5 28 1b b2 f8 01 56 5a 11 22 b2 56 35 15
                         0a d1 f7 a0 4b b9 f3 a3 33 ec c0 e2 e1 f7 08 37",
            key128: "42 26 3c 6e 89 f4 fc 28 b8 df 68 ee 09 79 9f 15",
            key256: "fe 69 7b 52 bc 0d 3c e1 44 32 ba 03 6a 92 e6 5b
                     bb 52 28 09 90 a2 fa 27 88 39 98 d7 2a f3 01 61",
        },
        Vector {
            iterations: 2,
            password: b"password",
            salt: b"ATHENA.MIT.EDUraeburn",
            pbkdf2_256: "01 db ee 7f 4a 9e 24 3e 98 8b 62 c7 3c da 93 5d
                         a0 53 78 b9 32 44 ec 8f 48 a9 9e 61 ad 79 9d 86",
            key128: "c6 51 bf 29 e2 30 0a c2 7f a4 69 d6 93 bd da 13",
            key256: "a2 e1 6d 16 b3 60 69 c1 35 d5 e9 d2 e2 5f 89 61
                     02 68 56 18 b9 59 14 b4 67 c6 76 22 22 58 24 ff",
        },
        Vector {
            iterations: 1200,
            password: b"password",
            salt: b"ATHENA.MIT.EDUraeburn",
            pbkdf2_256: "5c 08 eb 61 fd f7 1e 4e 4e c3 cf 6b a1 f5 51 2b
                         a7 e5 2d db c5 e5 14 2f 70 8a 31 e2 e6 2b 1e 13",
            key128: "4c 01 cd 46 d6 32 d0 1e 6d be 23 0a 01 ed 64 2a",
            key256: "55 a6 ac 74 0a d1 7b 48 46 94 10 51 e1 e8 b0 a7
                     54 8d 93 b0 ab 30 a8 bc 3f f1 62 80 38 2b 8c 2a",
        },
        Vector {
            iterations: 5,
            password: b"password",
            salt: &[0x12, 0x34, 0x56, 0x78, 0x78, 0x56, 0x34, 0x12],
            pbkdf2_256: "d1 da a7 86 15 f2 87 e6 a1 c8 b1 20 d7 06 2a 49
                         3f 98 d2 03 e6 be 49 a6 ad f4 fa 57 4b 6e 64 ee",
            key128: "e9 b2 3d 52 27 37 47 dd 5c 35 cb 55 be 61 9d 8e",
            key256: "97 a4 e7 86 be 20 d8 1a 38 2d 5e bc 96 d5 90 9c
                     ab cd ad c8 7c a4 8f 57 45 04 15 9f 16 c3 6e 31",
        },
        Vector {
            iterations: 1200,
            password: b"XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX",
            salt: b"pass phrase equals block size",
            pbkdf2_256: "13 9c 30 c0 96 6b c3 2b a5 5f db f2 12 53 0a c9
                         c5 ec 59 f1 a4 52 f5 cc 9a d9 40 fe a0 59 8e d1",
            key128: "59 d1 bb 78 9a 82 8b 1a a5 4e f9 c2 88 3f 69 ed",
            key256: "89 ad ee 36 08 db 8b c7 1f 1b fb fe 45 94 86 b0
                     56 18 b7 0c ba e2 20 92 53 4e 56 c5 53 ba 4b 34",
        },
        Vector {
            iterations: 1200,
            password: b"XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX",
            salt: b"pass phrase exceeds block size",
            pbkdf2_256: "9c ca d6 d4 68 77 0c d5 1b 10 e6 a6 87 21 be 61
                         1a 8b 4d 28 26 01 db 3b 36 be 92 46 91 5e c8 2a",
            key128: "cb 80 05 dc 5f 90 17 9a 7f 02 10 4c 00 18 75 1d",
            key256: "d7 8c 5c 9c b8 72 a8 c9 da d4 69 7f 0b b5 b2 d2
                     14 96 c8 2b eb 2c ae da 21 12 fc ee a0 57 40 1b",
        },
        Vector {
            iterations: 50,
            password: &[0xf0, 0x9d, 0x84, 0x9e], // g-clef, U+1D11E
            salt: b"EXAMPLE.COMpianist",
            pbkdf2_256: "6b 9c f2 6d 45 45 5a 43 a5 b8 bb 27 6a 40 3b 39
                         e7 fe 37 a0 c4 1e 02 c2 81 ff 30 69 e1 e9 4f 52",
            key128: "f1 49 c1 f2 e1 54 a7 34 52 d4 3e 7f e6 2a 56 e5",
            key256: "4b 6d 98 39 f8 44 06 df 1f 09 cc 16 6d b4 b8 3c
                     57 18 48 b7 84 a3 d6 bd c3 46 58 9a 3e 39 3f 9e",
        },
    ];

    #[test]
    fn rfc3962_vectors() {
        assert_eq!(RFC3962.len(), 7);
        assert_eq!(RFC3962[4].password.len(), 64);
        assert_eq!(RFC3962[5].password.len(), 65);
        for v in RFC3962 {
            let p256 = unhex(v.pbkdf2_256);
            assert_eq!(
                *pbkdf2_sha1(v.password, v.salt, v.iterations, 32),
                p256,
                "pbkdf2 256, iterations {}",
                v.iterations
            );
            assert_eq!(
                *pbkdf2_sha1(v.password, v.salt, v.iterations, 16),
                p256[..16],
                "pbkdf2 128, iterations {}",
                v.iterations
            );
            assert_eq!(
                *aes_string_to_key(v.password, v.salt, v.iterations, 16),
                unhex(v.key128),
                "aes128, iterations {}",
                v.iterations
            );
            assert_eq!(
                *aes_string_to_key(v.password, v.salt, v.iterations, 32),
                unhex(v.key256),
                "aes256, iterations {}",
                v.iterations
            );
        }
    }

    #[test]
    #[should_panic(expected = "16 or 32")]
    fn aes_string_to_key_rejects_other_lengths() {
        let _ = aes_string_to_key(b"password", b"salt", 1, 24);
    }

    #[test]
    fn enctype_key_lengths() {
        assert_eq!(aes_key_len(17), Some(16));
        assert_eq!(aes_key_len(18), Some(32));
        assert_eq!(aes_key_len(19), None);
        assert_eq!(aes_key_len(1), None);
    }

    #[test]
    fn default_salt_of_principals() {
        assert_eq!(
            default_salt("afs/example.com@EXAMPLE.COM").unwrap(),
            b"EXAMPLE.COMafsexample.com"
        );
        assert_eq!(default_salt("afs@EXAMPLE.COM").unwrap(), b"EXAMPLE.COMafs");
        // RFC 3961's own example salt.
        assert_eq!(
            default_salt("raeburn@ATHENA.MIT.EDU").unwrap(),
            b"ATHENA.MIT.EDUraeburn"
        );
        assert_eq!(default_salt("a/b/c@R").unwrap(), b"Rabc");
        assert_eq!(default_salt(r"we\/ird\@x@R").unwrap(), b"Rwe/ird@x");
        for bad in ["afs/example.com", "afs/example.com@", "", "a@b@c", "x\\"] {
            match default_salt(bad) {
                Err(CryptoError::NoRealm(p)) => assert_eq!(p, bad),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }
}

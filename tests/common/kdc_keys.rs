//! Keys and keytabs for the KDC tests (MIT and Heimdal alike): keys derived from a passphrase,
//! a keytab written by afskeys' own writer, a recording wrapper for child programs, the keys
//! a conf dir holds, and the check that none of them leaked.

use afskeys::crypto::{aes_string_to_key, default_salt};
use afskeys::format::keytab;
use afskeys::keys::{Key, KeyId, KeyType};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// The aes256 and aes128 keys `pw` derives for `principal` (default salt), at `kvno`.
pub fn derive(principal: &str, kvno: i32, pw: &str) -> Vec<Key> {
    let salt = default_salt(principal).unwrap();
    [(18, 32), (17, 16)]
        .into_iter()
        .map(|(e, len)| {
            Key::new(
                KeyId {
                    key_type: KeyType::RxkadKrb5,
                    kvno,
                    subtype: e,
                },
                aes_string_to_key(pw.as_bytes(), &salt, 4096, len),
            )
        })
        .collect()
}

/// A keytab holding `keys` for `principal`, written by afskeys' own writer.
pub fn keytab_of(dir: &Path, principal: &str, keys: &[Key]) -> PathBuf {
    let (components, realm) = keytab::split_principal(principal).unwrap();
    let entries: Vec<keytab::Entry> = keys
        .iter()
        .map(|k| keytab::Entry {
            realm: realm.clone(),
            components: components.clone(),
            kvno: k.kvno() as u32,
            enctype: k.id.subtype as u16,
            key: Zeroizing::new(k.bytes().to_vec()),
        })
        .collect();
    let p = dir.join(format!("server-kvno{}.keytab", keys[0].kvno()));
    fs::write(&p, keytab::write(&entries, 0)).unwrap();
    p
}

/// A shell wrapper that appends its argv and environment to `log`, then runs `real`.
pub fn recording_wrapper(dir: &Path, name: &str, real: &str, log: &Path) -> String {
    let w = dir.join(format!("{name}-wrapper"));
    fs::write(
        &w,
        format!(
            "#!/bin/sh\n{{ tr '\\0' ' ' < /proc/$$/cmdline; echo; tr '\\0' '\\n' < /proc/$$/environ; \
             echo; }} >> {log}\nexec {real} \"$@\"\n",
            log = log.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&w, fs::Permissions::from_mode(0o755)).unwrap();
    w.to_str().unwrap().to_string()
}

/// The keys of `kvno` in `dir`'s KeyFileExt, as `afskeys list --json --showkey` shows them.
pub fn keys_in(dir: &Path, kvno: i32) -> Vec<Key> {
    let out = super::ok(super::run(dir, &["--json", "list", "--showkey"], b""));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let list = v["keys"].as_array().or(v.as_array()).expect("a key list");
    list.iter()
        .filter(|k| k["kvno"] == kvno && k["type"] == "rxkad_krb5")
        .map(|k| {
            Key::new(
                KeyId {
                    key_type: KeyType::RxkadKrb5,
                    kvno,
                    subtype: k["enctype"].as_i64().unwrap() as i32,
                },
                Zeroizing::new(hex::decode(k["key"].as_str().unwrap()).unwrap()),
            )
        })
        .collect()
}

/// What must never be seen outside afskeys after setting `keys` from `pw`: the passphrase,
/// and each key as hex and as raw bytes.
#[allow(dead_code)]
pub fn secrets_of(pw: &str, keys: &[Key]) -> Vec<Vec<u8>> {
    let mut v = vec![pw.as_bytes().to_vec()];
    for k in keys {
        v.push(hex::encode(k.bytes()).into_bytes());
        v.push(k.bytes().to_vec());
    }
    v
}

/// Panics naming `what` when `text` holds any of `secrets`.
#[allow(dead_code)]
pub fn assert_no_secret(what: &str, text: &[u8], secrets: &[Vec<u8>]) {
    for s in secrets {
        assert!(
            !text.windows(s.len()).any(|w| w == s.as_slice()),
            "a secret is in {what}"
        );
    }
}

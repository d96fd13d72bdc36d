//! The file auth DB's parser. No input may panic it; every error is `Corrupt` naming the file;
//! an accepted entry has keys, all at the entry's kvno and each valid, and encoding it again in
//! the file's JSON shape parses back to the same entry.
#![no_main]

use afskeys::authdb::file::FileAuthDb;
use afskeys::authdb::AuthDbError;
use afskeys::keys::KeySet;
use libfuzzer_sys::fuzz_target;
use serde_json::json;
use std::path::Path;

const PATH: &str = "/nonexistent/afskeys-authdb.json";

fuzz_target!(|data: &[u8]| {
    let db = FileAuthDb::new(PATH, "afs/example.com@EXAMPLE.COM");
    let e = match db.parse(data) {
        Ok(e) => e,
        Err(AuthDbError::Corrupt { path, .. }) => {
            assert_eq!(path, Path::new(PATH));
            return;
        }
        Err(other) => panic!("parse failed with a non-Corrupt error: {other}"),
    };
    assert!(!e.keys.is_empty());
    for k in &e.keys {
        assert_eq!(k.kvno(), e.kvno);
        KeySet::validate_key(k).expect("an accepted key must be valid");
    }

    let keys: Vec<_> = e
        .keys
        .iter()
        .map(|k| {
            json!({
                "type": k.key_type().name(),
                "enctype": k.id.subtype,
                "key": hex::encode(k.bytes()),
            })
        })
        .collect();
    let v = json!({
        "version": 1,
        "principal": e.principal,
        "kvno": e.kvno,
        "changed": e.changed,
        "keys": keys,
    });
    let bytes = serde_json::to_vec_pretty(&v).unwrap();
    let back = db.parse(&bytes).unwrap_or_else(|err| {
        panic!(
            "re-encoded entry does not parse: {err}\n{}",
            String::from_utf8_lossy(&bytes)
        )
    });
    assert_eq!(back.principal, e.principal);
    assert_eq!(back.kvno, e.kvno);
    assert_eq!(back.changed, e.changed);
    assert_eq!(back.keys, e.keys);
});

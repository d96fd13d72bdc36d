//! `afskeys rotate` with the afs entry in a real MIT Kerberos database (kadmin.local on a
//! realm the test creates): after each rotation the keys `ktadd -norandkey` extracts for the
//! current kvno equal KeyFileExt's under the same kvno, and the real `asetkey list` shows them.

mod common;
mod kdc;
use common::*;
use serde_json::Value;
use std::fs;

const CELL: &str = "kdc.example.com";

#[test]
fn rotate_sets_the_kdc_to_the_keys_the_servers_hold() {
    if !have(&["asetkey", "unshare", "nsenter"]) {
        return;
    }
    let Some(realm) = kdc::Realm::create("KDC.EXAMPLE.COM") else {
        return;
    };
    let principal = format!("afs/{CELL}@{}", realm.name());
    // The control machine is the OpenAFS sandbox's /etc/openafs/server, so asetkey reads it.
    let sb = AfsSandbox::new(CELL);
    let dir = sb.server_dir();
    let other = confdir(CELL);
    fs::write(
        dir.join("afskeys.toml"),
        format!(
            "[authdb]\nbackend = \"kadmin\"\nprincipal = \"{principal}\"\nkadmin = \"{}\"\n\n\
             [[servers]]\nname = \"fs1\"\nconfdir = \"{}\"\n",
            realm.kadmin_local().display(),
            other.path().display()
        ),
    )
    .unwrap();
    let afskeys_in_realm = |args: &[&str]| {
        let mut c = afskeys();
        c.envs(realm.env()).arg("--confdir").arg(&dir).args(args);
        pipe(c, b"")
    };
    // No principal yet: the first rotation creates it at kvno 1.
    let plan = ok(afskeys_in_realm(&["rotate", "--dry-run"]));
    assert!(plan.contains("from a generated passphrase"), "{plan}");
    for expected_kvno in [1, 2, 3] {
        let o = afskeys_in_realm(&["rotate"]);
        let out = ok(o);
        assert!(
            out.starts_with(&format!("kvno {expected_kvno} is on every server")),
            "{out}"
        );
        assert_eq!(realm.kvno(&principal), Some(expected_kvno));

        // KDC keys at the current kvno == KeyFileExt keys at that kvno, on both servers.
        let held = realm.keytab(&principal);
        let kdc_keys: Vec<(String, String)> = {
            let mut v: Vec<(String, String)> = held
                .iter()
                .filter(|k| k.kvno == expected_kvno)
                .map(|k| (k.enctype.clone(), hex::encode(&k.key)))
                .collect();
            v.sort();
            v
        };
        assert_eq!(kdc_keys.len(), 2, "{kdc_keys:?}");
        for d in [dir.clone(), other.path().to_path_buf()] {
            let v: Value =
                serde_json::from_str(&ok(run(&d, &["--json", "list", "--showkey"], b""))).unwrap();
            let mut ours: Vec<(String, String)> = v["keys"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|k| k["kvno"] == expected_kvno)
                .map(|k| {
                    (
                        k["enctype_name"].as_str().unwrap().to_string(),
                        k["key"].as_str().unwrap().to_string(),
                    )
                })
                .collect();
            ours.sort();
            assert_eq!(
                ours,
                kdc_keys,
                "{} vs the KDC at kvno {expected_kvno}",
                d.display()
            );
        }
        // The real asetkey lists the same keys.
        let listing = ok(sb.sh("asetkey list"));
        for (enctype, hex) in &kdc_keys {
            let num = if enctype.starts_with("aes256") {
                18
            } else {
                17
            };
            let line = format!("rxkad_krb5\tkvno {expected_kvno:4} enctype {num}; key is: {hex}");
            assert!(listing.contains(&line), "{listing}\nmissing: {line}");
        }
    }
    // -keepold: the KDC still has the retiring kvno 2 (tokens sealed with it stay valid).
    assert!(realm.keytab(&principal).iter().any(|k| k.kvno == 2));
    let status: Value = serde_json::from_str(&ok(afskeys_in_realm(&["--json", "status"]))).unwrap();
    assert_eq!(status["afs_entry"]["kvno"], 3);
    assert_eq!(status["check"]["level"], "OK", "{status}");

    // A stray higher kvno on a server: the KDC can only go to 4, so rotate refuses.
    ok(run(
        other.path(),
        &["add", "--kvno", "9", "--type", "rxkad_krb5", "--random"],
        b"",
    ));
    let o = afskeys_in_realm(&["rotate"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("can only move the afs entry to kvno 4"),
        "{}",
        stderr(&o)
    );
    assert_eq!(realm.kvno(&principal), Some(3));

    // The passphrase never reaches the audit log or the journal after activation.
    let state = fs::read_to_string(dir.join("afskeys-state.json")).unwrap();
    assert!(state.contains("\"rotation\": null"), "{state}");
}

//! The kadmin auth DB backend against a real MIT Kerberos 1.20 database (`kdb5_util`,
//! `kadmin.local`, `klist`; no daemon). Each test makes its own private realm
//! ([`kdc::Realm`]), so they run in parallel; the library is pointed at it with
//! `KadminAuthDb::with_envs(realm.env())`, never by changing this process's environment.
//!
//! Missing tools: these tests fail when `AFSKEYS_REQUIRE_INTEROP` is set, else they skip.

mod kdc;

use afskeys::authdb::kadmin::KadminAuthDb;
use afskeys::authdb::{AuthDb, AuthDbError};
use afskeys::error::{Kind, Kinded};
use afskeys::keygen::{make_keys, Material};
use afskeys::keys::{Key, KeyType};
use chrono::Utc;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

const REALM: &str = "TEST.REALM";
const P: &str = "afs/test.realm@TEST.REALM";

fn db(realm: &kdc::Realm, principal: &str) -> KadminAuthDb {
    db_with(realm, principal, realm.kadmin_local())
}

fn db_with(realm: &kdc::Realm, principal: &str, cmd: &Path) -> KadminAuthDb {
    KadminAuthDb::new(principal.to_string(), cmd.to_str().unwrap().to_string())
        .with_envs(realm.env())
}

/// The keys `afskeys add --password-stdin` / `rotate` make for the principal.
fn keys(kvno: i32, pw: &[u8], principal: &str) -> Vec<Key> {
    make_keys(
        kvno,
        KeyType::RxkadKrb5,
        &[],
        Material::Password(pw),
        "test.realm",
        principal,
    )
    .unwrap()
}

/// (kvno, enctype, bytes), sorted, to compare key lists whatever their order.
fn flat(keys: &[Key]) -> Vec<(i32, KeyType, i32, Vec<u8>)> {
    let mut v: Vec<_> = keys
        .iter()
        .map(|k| (k.kvno(), k.key_type(), k.id.subtype, k.bytes().to_vec()))
        .collect();
    v.sort();
    v
}

/// The keys the KDC holds at `kvno`, by enctype name, from `ktadd -norandkey` + `klist -K`.
fn held(realm: &kdc::Realm, principal: &str, kvno: i32) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<_> = realm
        .keytab(principal)
        .into_iter()
        .filter(|k| k.kvno == kvno)
        .map(|k| (k.enctype, k.key))
        .collect();
    v.sort();
    v
}

fn by_name(keys: &[Key]) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<_> = keys
        .iter()
        .map(|k| {
            let name = match k.id.subtype {
                17 => "aes128-cts-hmac-sha1-96",
                18 => "aes256-cts-hmac-sha1-96",
                e => panic!("unexpected enctype {e}"),
            };
            (name.to_string(), k.bytes().to_vec())
        })
        .collect();
    v.sort();
    v
}

fn err_of<T: std::fmt::Debug>(r: Result<T, AuthDbError>) -> AuthDbError {
    r.expect_err("expected an error")
}

#[test]
fn missing_principal_reads_as_none() {
    let Some(realm) = kdc::Realm::create(REALM) else {
        return;
    };
    let db = db(&realm, P);
    assert!(db.get().unwrap().is_none());
    assert!(db.principal_info().unwrap().is_none());
    assert_eq!(db.next_kvno().unwrap(), None);
}

#[test]
fn create_at_kvno_1_then_change_keeps_the_old_kvno() {
    let Some(realm) = kdc::Realm::create(REALM) else {
        return;
    };
    let db = db(&realm, P);
    let pw1 = b"first afs passphrase".as_slice();
    let k1 = keys(1, pw1, P);

    let before = Utc::now();
    let e = db.set(1, &k1, Some(pw1), Utc::now()).unwrap();
    assert_eq!((e.kvno, e.principal.as_str()), (1, P));
    let e = db.get().unwrap().unwrap();
    assert_eq!(e.kvno, 1);
    assert_eq!(e.key_type(), Some(KeyType::RxkadKrb5));
    assert_eq!(
        flat(&e.keys),
        flat(&k1),
        "get() returns exactly the derived keys"
    );
    let skew = (e.changed - before).num_seconds();
    assert!(
        (-2..120).contains(&skew),
        "changed {} vs {before}",
        e.changed
    );
    // Independent check (klist, not our keytab parser).
    assert_eq!(held(&realm, P, 1), by_name(&k1));
    // Created the plain way: tickets allowed (attributes 0), kvno 1.
    let f = realm.getprinc_terse(P).unwrap();
    assert_eq!((f[7].as_str(), f[8].as_str()), ("0", "1"));
    assert_eq!(db.next_kvno().unwrap(), Some(2));

    let pw2 = b"second afs passphrase".as_slice();
    let k2 = keys(2, pw2, P);
    let e = db.set(2, &k2, Some(pw2), Utc::now()).unwrap();
    assert_eq!(e.kvno, 2);
    let e = db.get().unwrap().unwrap();
    assert_eq!(e.kvno, 2);
    assert_eq!(flat(&e.keys), flat(&k2));
    // -keepold: kvno 1 is still held, unchanged.
    assert_eq!(held(&realm, P, 1), by_name(&k1));
    assert_eq!(held(&realm, P, 2), by_name(&k2));
    assert_eq!(
        db.principal_info().unwrap().unwrap().kvnos_held(),
        vec![2, 1]
    );
    let f = realm.getprinc_terse(P).unwrap();
    assert_eq!((f[8].as_str(), f[15].as_str()), ("2", "4"));
}

#[test]
fn kvno_rules_refusals_and_creation_at_any_kvno() {
    let Some(realm) = kdc::Realm::create(REALM) else {
        return;
    };
    let db = db(&realm, P);
    let pw = b"the afs passphrase".as_slice();
    db.set(1, &keys(1, pw, P), Some(pw), Utc::now()).unwrap();
    let before = realm.keytab(P);

    // Not above the current kvno.
    match err_of(db.set(1, &keys(1, pw, P), Some(pw), Utc::now())) {
        AuthDbError::Refused(m) => assert!(m.contains("higher kvno"), "{m}"),
        e => panic!("{e:?}"),
    }
    // A jump on an existing principal: MIT's modprinc -kvno would relabel kept keys.
    let pw7 = b"seventh".as_slice();
    match err_of(db.set(7, &keys(7, pw7, P), Some(pw7), Utc::now())) {
        AuthDbError::Refused(m) => {
            eprintln!("jump refused: {m}");
            assert!(m.contains("next kvno is 2, not 7"), "{m}");
            assert!(!m.contains("seventh"));
        }
        e => panic!("{e:?}"),
    }
    assert_eq!(
        realm.keytab(P),
        before,
        "a refusal leaves the KDC untouched"
    );
    assert_eq!(
        err_of(db.set(7, &keys(7, pw7, P), Some(pw7), Utc::now())).kind(),
        Kind::Refused // exit 3
    );

    // A new principal can start at any kvno: created with tickets disallowed, then moved.
    let p7 = "afs/seven.cell@TEST.REALM";
    let db7 = db_with(&realm, p7, realm.kadmin_local());
    let k7 = keys(7, pw7, p7);
    db7.set(7, &k7, Some(pw7), Utc::now()).unwrap();
    let e = db7.get().unwrap().unwrap();
    assert_eq!(e.kvno, 7);
    assert_eq!(flat(&e.keys), flat(&k7));
    let f = realm.getprinc_terse(p7).unwrap();
    assert_eq!(f[7], "0", "tickets are allowed again (attributes {})", f[7]);
    assert!(realm.keytab(p7).iter().all(|k| k.kvno == 7));

    // Above 255: the keytab's 32-bit kvno, as MIT writes it, is honoured.
    let p300 = "afs/big.cell@TEST.REALM";
    let db300 = db_with(&realm, p300, realm.kadmin_local());
    let k300 = keys(300, pw, p300);
    db300.set(300, &k300, Some(pw), Utc::now()).unwrap();
    let e = db300.get().unwrap().unwrap();
    assert_eq!(e.kvno, 300);
    assert_eq!(flat(&e.keys), flat(&k300));
    assert_eq!(held(&realm, p300, 300), by_name(&k300));

    // A principal with no keys at all (addprinc -nokey): kvno 0, then cpw makes kvno 1.
    let pn = "afs/nokey.cell@TEST.REALM";
    let out = realm.kadmin(&format!("addprinc -nokey {pn}"));
    assert!(String::from_utf8_lossy(&out.stdout).contains("created"));
    let dbn = db_with(&realm, pn, realm.kadmin_local());
    let e = dbn.get().unwrap().unwrap();
    assert_eq!((e.kvno, e.keys.len()), (0, 0));
    let kn = keys(1, pw, pn);
    dbn.set(1, &kn, Some(pw), Utc::now()).unwrap();
    assert_eq!(flat(&dbn.get().unwrap().unwrap().keys), flat(&kn));
}

#[test]
fn keys_not_derived_from_the_passphrase_never_reach_the_kdc() {
    let Some(realm) = kdc::Realm::create(REALM) else {
        return;
    };
    let db = db(&realm, P);
    let right = b"the right passphrase".as_slice();
    let wrong = b"a wrong passphrase".as_slice();

    // Missing principal: not created.
    match err_of(db.set(1, &keys(1, right, P), Some(wrong), Utc::now())) {
        AuthDbError::Mismatch(m) => {
            eprintln!("pre-check: {m}");
            assert!(m.contains("was not changed"), "{m}");
            assert!(
                !m.contains("wrong passphrase") && !m.contains("right passphrase"),
                "{m}"
            );
        }
        e => panic!("{e:?}"),
    }
    assert!(realm.getprinc_terse(P).is_none(), "nothing was created");

    // Existing principal: kvno and keys unchanged.
    db.set(1, &keys(1, right, P), Some(right), Utc::now())
        .unwrap();
    let before = realm.keytab(P);
    let e = err_of(db.set(2, &keys(2, right, P), Some(wrong), Utc::now()));
    assert!(matches!(e, AuthDbError::Mismatch(_)), "{e:?}");
    let m = e.to_string();
    assert!(!m.contains("a wrong passphrase") && !m.contains("the right passphrase"));
    assert_eq!(realm.kvno(P), Some(1));
    assert_eq!(realm.keytab(P), before);
}

/// A kadmin that derives from another passphrase than the one given (as a KDC with an
/// unexpected salt would): the change happens, read-back catches it, and the error says the
/// KDC was changed.
#[test]
fn read_back_mismatch_after_a_change_is_an_error() {
    let Some(realm) = kdc::Realm::create(REALM) else {
        return;
    };
    let pw = b"given passphrase".as_slice();
    db(&realm, P)
        .set(1, &keys(1, pw, P), Some(pw), Utc::now())
        .unwrap();
    let wrapper = realm.dir().join("swap-password.sh");
    fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\ncase \"$2\" in\n cpw*|addprinc*) cat >/dev/null; printf 'other\\nother\\n' | {k} \"$@\" ;;\n *) exec {k} \"$@\" ;;\nesac\n",
            k = realm.kadmin_local().display()
        ),
    )
    .unwrap();
    fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755)).unwrap();
    let db = db_with(&realm, P, &wrapper);
    match err_of(db.set(2, &keys(2, pw, P), Some(pw), Utc::now())) {
        AuthDbError::Mismatch(m) => {
            eprintln!("read-back: {m}");
            assert!(m.contains("the KDC was changed"), "{m}");
            assert!(m.contains("kvno 2"), "{m}");
        }
        e => panic!("{e:?}"),
    }
    // Documented state: the KDC moved to kvno 2 with the other keys and kept kvno 1.
    assert_eq!(realm.kvno(P), Some(2));
    assert_eq!(held(&realm, P, 1), by_name(&keys(1, pw, P)));
    assert_eq!(held(&realm, P, 2), by_name(&keys(2, b"other", P)));
}

/// kadmin.local exits 0 when the query fails; the failure must still surface, with kadmin's
/// own words and without the passphrase.
#[test]
fn kadmin_failures_are_errors_with_its_message() {
    let Some(realm) = kdc::Realm::create(REALM) else {
        return;
    };
    let db = db(&realm, P);
    let long = b"a long enough passphrase".as_slice();
    db.set(1, &keys(1, long, P), Some(long), Utc::now())
        .unwrap();
    realm.kadmin("addpol -minlength 40 strict");
    realm.kadmin(&format!("modprinc -policy strict {P}"));
    assert_eq!(realm.getprinc_terse(P).unwrap()[10], "\"strict\"");
    let short = b"too short passphrase".as_slice();
    match err_of(db.set(2, &keys(2, short, P), Some(short), Utc::now())) {
        AuthDbError::Backend(m) => {
            eprintln!("kadmin failure: {m}");
            assert!(m.contains("too short"), "{m}");
            assert!(m.contains("cpw -e aes256-cts-hmac-sha1-96:normal"), "{m}");
            assert!(!m.contains("too short passphrase"), "{m}");
        }
        e => panic!("{e:?}"),
    }
    assert_eq!(realm.kvno(P), Some(1));
}

/// Records every kadmin.local invocation: argv (what /proc/<pid>/cmdline shows) one
/// argument per line, stdin, and the environment it got.
#[test]
fn the_passphrase_goes_only_to_stdin_and_the_keytab_is_removed() {
    let Some(realm) = kdc::Realm::create(REALM) else {
        return;
    };
    let log = realm.dir().join("log");
    fs::create_dir(&log).unwrap();
    let wrapper = realm.dir().join("record-kadmin.sh");
    fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\n\
             {{ for a in \"$@\"; do printf '%s\\n' \"$a\"; done; echo ----; }} >> {l}/argv\n\
             echo \"LC_ALL=$LC_ALL KRB5_CONFIG=$KRB5_CONFIG\" >> {l}/env\n\
             tee -a {l}/stdin | {k} \"$@\"\n",
            l = log.display(),
            k = realm.kadmin_local().display()
        ),
    )
    .unwrap();
    fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755)).unwrap();

    let pw1 = b"S3cret-one passphrase".as_slice();
    let pw2 = b"S3cret-two passphrase".as_slice();
    let pw5 = b"S3cret-five passphrase".as_slice();
    let db = db_with(&realm, P, &wrapper);
    db.set(1, &keys(1, pw1, P), Some(pw1), Utc::now()).unwrap(); // addprinc
    db.set(2, &keys(2, pw2, P), Some(pw2), Utc::now()).unwrap(); // cpw
    let p5 = "afs/five.cell@TEST.REALM";
    let db5 = db_with(&realm, p5, &wrapper);
    db5.set(5, &keys(5, pw5, p5), Some(pw5), Utc::now())
        .unwrap(); // addprinc + modprinc
    assert_eq!(db.get().unwrap().unwrap().kvno, 2);

    let argv = fs::read_to_string(log.join("argv")).unwrap();
    for pw in [pw1, pw2, pw5] {
        assert!(!argv.contains(std::str::from_utf8(pw).unwrap()), "{argv}");
    }
    assert!(!argv.contains("S3cret"), "{argv}");
    assert!(!argv.contains("-pw"), "{argv}");
    let calls: Vec<Vec<&str>> = argv
        .split("----\n")
        .filter(|c| !c.is_empty())
        .map(|c| c.lines().collect())
        .collect();
    for c in &calls {
        assert_eq!(c.len(), 2, "only -q QUERY: {c:?}");
        assert_eq!(c[0], "-q");
    }
    let queries: Vec<&str> = calls.iter().map(|c| c[1]).collect();
    let enc = "-e aes256-cts-hmac-sha1-96:normal,aes128-cts-hmac-sha1-96:normal";
    assert!(
        queries.contains(&format!("addprinc {enc} {P}").as_str()),
        "{queries:?}"
    );
    assert!(
        queries.contains(&format!("cpw {enc} -keepold {P}").as_str()),
        "{queries:?}"
    );
    assert!(
        queries.contains(&format!("addprinc -allow_tix {enc} {p5}").as_str()),
        "{queries:?}"
    );
    assert!(
        queries.contains(&format!("modprinc -kvno 5 +allow_tix {p5}").as_str()),
        "{queries:?}"
    );

    // Exactly the two password lines of each password-taking command, nothing else.
    let stdin = fs::read(log.join("stdin")).unwrap();
    let mut expect = Vec::new();
    for pw in [pw1, pw2, pw5] {
        for _ in 0..2 {
            expect.extend_from_slice(pw);
            expect.push(b'\n');
        }
    }
    assert_eq!(stdin, expect);

    // The environment reached the child without touching this process's own.
    let env = fs::read_to_string(log.join("env")).unwrap();
    let conf = &realm.env()[0].1;
    assert!(
        env.lines()
            .all(|l| l == format!("LC_ALL=C KRB5_CONFIG={conf}")),
        "{env}"
    );
    assert_ne!(std::env::var("KRB5_CONFIG").ok().as_ref(), Some(conf));

    // Every ktadd went to a private temporary keytab that no longer exists.
    let exports: Vec<&str> = queries
        .iter()
        .filter_map(|q| q.strip_prefix("ktadd -norandkey -k WRFILE:"))
        .map(|rest| rest.split(' ').next().unwrap())
        .collect();
    assert!(!exports.is_empty());
    for kt in exports {
        let kt = Path::new(kt);
        assert!(!kt.exists(), "{} left behind", kt.display());
        assert!(
            !kt.parent().unwrap().exists(),
            "{} left behind",
            kt.display()
        );
    }
}

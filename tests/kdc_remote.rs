//! The afs entry in a KDC reached over the network: a real `krb5kdc` and `kadmind` on
//! loopback (started by the test), the MIT backend driving remote `kadmin` with an admin
//! keytab whose ACL lacks the extract-keys privilege, and the ticket proof opening the real
//! KDC's tickets with the keys set — checked against the real tools (`kvno -k KEYTAB`), and
//! catching a key changed behind afskeys' back at the same kvno.

mod common;
mod kdc;

use afskeys::authdb::kadmin::{KadminAuthDb, RemoteKdc, KEYSALT_LIST};
use afskeys::authdb::ticket::Opening;
use afskeys::authdb::{AuthDb, AuthDbError};
use afskeys::keys::Key;
use chrono::Utc;
use common::kdc_keys::{
    assert_no_secret, derive, keys_in, keytab_of, recording_wrapper, secrets_of,
};
use std::fs;
use std::time::Duration;

/// The backend as `[authdb] backend = "kadmin"`, `server`, `admin_principal`, `admin_keytab`
/// build it, seeing only this realm.
fn remote_db(realm: &kdc::Realm, principal: &str, kadmin: &str) -> KadminAuthDb {
    KadminAuthDb::new(principal.into(), kadmin.into())
        .with_remote(RemoteKdc::new(
            Some(realm.kadmind_addr()),
            realm.admin_principal(),
            realm.admin_keytab(),
        ))
        .with_envs(realm.env())
}

fn passphrase(kvno: i32) -> String {
    let mut r = [0u8; 12];
    getrandom::fill(&mut r).unwrap();
    format!("remote-{kvno}-{}", hex::encode(r))
}

#[test]
fn remote_sets_are_proven_by_real_tickets_and_need_no_extract_privilege() {
    let Some(realm) = kdc::Realm::serve("REMOTE.TEST") else {
        return;
    };
    let principal = format!("afs/remote.test@{}", realm.name());
    let db = remote_db(&realm, &principal, "kadmin");
    assert!(db.get().unwrap().is_none());
    assert!(db
        .describe()
        .contains(&format!("-s {}", realm.kadmind_addr())));
    let mut previous: Vec<Key> = Vec::new();
    for kvno in 1..=3 {
        let pw = passphrase(kvno);
        let keys = derive(&principal, kvno, &pw);
        let e = db
            .set(kvno, &keys, Some(pw.as_bytes()), Utc::now())
            .unwrap();
        assert_eq!(e.kvno, kvno);
        assert_eq!(e.keys, keys);
        let facts = e.kdc.clone().unwrap();
        assert_eq!(facts.enctypes, vec![18, 17]);
        assert_eq!(facts.max_ticket_life, Some(Duration::from_secs(86400)));
        assert!(!facts.keys_read);
        assert_eq!(realm.kvno(&principal), Some(kvno));

        // get over kadmind: kvno, enctypes and the change time, no key bytes.
        let got = db.get().unwrap().unwrap();
        assert_eq!((got.kvno, got.keys.len()), (kvno, 0));
        assert_eq!(got.kdc.unwrap().enctypes, vec![18, 17]);
        assert!((Utc::now() - got.changed).num_seconds().abs() < 120);

        // The ticket proof opens the real KDC's ticket with the keys set, and says the
        // server still on the previous kvno has no key of the ticket's kvno.
        let proof = db
            .ticket_proof(&[("fs1", &keys), ("stale", &previous)])
            .unwrap();
        assert_eq!((proof.kvno, proof.enctype), (kvno, 18));
        assert_eq!(proof.principal, principal);
        assert_eq!(proof.kdc_enctypes, vec![18, 17]);
        assert_eq!(proof.servers[0].opening, Opening::Opened);
        assert_eq!(proof.servers[0].enctypes_held, vec![18, 17]);
        assert_eq!(proof.servers[1].opening, Opening::NoKey);
        assert!(!proof.all_opened());
        // Through the trait, as `verify --kdc` will call it.
        let via_trait = AuthDb::prove_tickets(&db, &[("fs1", &keys)])
            .unwrap()
            .unwrap();
        assert!(via_trait.all_opened());

        // The real tools agree.
        let kt = keytab_of(realm.dir(), &principal, &keys);
        let out = realm.kvno_with_keytab(&principal, &kt);
        let so = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && so.contains("keytab entry valid"),
            "kvno -k: {out:?}"
        );
        previous = keys;
    }

    // The changes arrived over the network, through kadmind.
    let log = realm.kadmind_log();
    let created = format!("kadm5_create_principal, {principal}, success");
    let changed = format!("kadm5_chpass_principal, {principal}, success");
    assert!(log.contains(&created), "{log}");
    assert_eq!(log.matches(&changed).count(), 2, "{log}");
    assert!(log.lines().filter(|l| l.contains(&changed)).all(|l| l
        .contains(&format!("client={}", realm.admin_principal()))
        && l.contains("addr=127.0.0.1")));

    // Remote `ktadd -norandkey` is refused by the ACL: nothing above depended on it.
    let kt = realm.dir().join("extracted.keytab");
    let out = realm.remote_kadmin(&format!(
        "ktadd -norandkey -k WRFILE:{} {principal}",
        kt.display()
    ));
    let se = String::from_utf8_lossy(&out.stderr);
    assert!(se.contains("extract-keys"), "{out:?}");
    assert!(!kt.exists());
}

#[test]
fn a_key_changed_behind_afskeys_back_at_the_same_kvno_does_not_open() {
    let Some(realm) = kdc::Realm::serve("SABOTAGE.TEST") else {
        return;
    };
    let principal = format!("afs/sabotage.test@{}", realm.name());
    let db = remote_db(&realm, &principal, "kadmin");
    let mut keys = Vec::new();
    for kvno in 1..=2 {
        let pw = passphrase(kvno);
        keys = derive(&principal, kvno, &pw);
        db.set(kvno, &keys, Some(pw.as_bytes()), Utc::now())
            .unwrap();
    }
    assert!(db.ticket_proof(&[("fs1", &keys)]).unwrap().all_opened());

    // Behind afskeys' back: a random key, then the kvno moved back to 2.
    let out = realm.kadmin(&format!("cpw -randkey -e {KEYSALT_LIST} {principal}"));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("randomized"),
        "{out:?}"
    );
    let out = realm.kadmin(&format!("modprinc -kvno 2 {principal}"));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("modified"),
        "{out:?}"
    );
    // kvno and enctypes look the same as before: no comparison of those can tell.
    let e = db.get().unwrap().unwrap();
    assert_eq!((e.kvno, e.kdc.unwrap().enctypes), (2, vec![18, 17]));

    let proof = db.ticket_proof(&[("fs1", &keys)]).unwrap();
    assert_eq!((proof.kvno, proof.enctype), (2, 18));
    assert_eq!(proof.servers[0].opening, Opening::DidNotOpen);
    assert_eq!(proof.servers[0].opening.describe(), "does not open");
    // The real tools agree.
    let kt = keytab_of(realm.dir(), &principal, &keys);
    let out = realm.kvno_with_keytab(&principal, &kt);
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("keytab entry valid"),
        "{out:?}"
    );
    // Refused for the key itself, not for any other reason (a KDC down would also fail).
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("keytab entry invalid"), "{said}");
}

#[test]
fn no_secret_on_any_argv_environment_log_or_message() {
    let Some(realm) = kdc::Realm::serve("SECRETS.TEST") else {
        return;
    };
    let principal = format!("afs/secrets.test@{}", realm.name());
    let tools = tempfile::tempdir().unwrap();
    let log = tools.path().join("children.log");
    let find = |t: &str| kdc::find_tool(t).unwrap().display().to_string();
    let mut remote = RemoteKdc::new(
        Some(realm.kadmind_addr()),
        realm.admin_principal(),
        realm.admin_keytab(),
    );
    remote.kinit = recording_wrapper(tools.path(), "kinit", &find("kinit"), &log);
    remote.kvno = recording_wrapper(tools.path(), "kvno", &find("kvno"), &log);
    let kadmin = recording_wrapper(tools.path(), "kadmin", &find("kadmin"), &log);
    let db = KadminAuthDb::new(principal.clone(), kadmin)
        .with_remote(remote)
        .with_envs(realm.env());
    let mut secrets: Vec<Vec<u8>> = Vec::new();
    for kvno in 1..=2 {
        let pw = passphrase(kvno);
        let keys = derive(&principal, kvno, &pw);
        db.set(kvno, &keys, Some(pw.as_bytes()), Utc::now())
            .unwrap();
        secrets.extend(secrets_of(&pw, &keys));
    }
    // A refused change: the passphrase does not derive the keys given.
    let pw = passphrase(3);
    let wrong = derive(&principal, 3, "something else");
    let e = db
        .set(3, &wrong, Some(pw.as_bytes()), Utc::now())
        .unwrap_err();
    assert!(matches!(e, AuthDbError::Mismatch(_)), "{e:?}");
    let messages = format!("{e} {e:?}");
    secrets.push(pw.into_bytes());

    let children = fs::read(&log).unwrap();
    let argv_lines = String::from_utf8_lossy(&children);
    assert!(argv_lines.contains(" -k -t "), "{argv_lines}");
    assert!(argv_lines.contains("cpw -e "), "{argv_lines}");
    for (what, text) in [
        ("children's argv and environment", children),
        ("the KDC's log", realm.kdc_log().into_bytes()),
        ("kadmind's log", realm.kadmind_log().into_bytes()),
        ("the error message", messages.into_bytes()),
    ] {
        // A scan of nothing proves nothing: each text holds what was logged.
        assert!(!text.is_empty(), "{what} is empty: nothing to scan");
        assert_no_secret(what, &text, &secrets);
    }
    // The daemons themselves never saw a secret on their command line either.
    for pid in realm.daemon_pids() {
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap();
        assert_no_secret("a daemon's command line", &cmdline, &secrets);
    }
}

#[test]
fn afskeys_rotate_through_kadmind() {
    let Some(realm) = kdc::Realm::serve("ROTATE.TEST") else {
        return;
    };
    const CELL: &str = "rotate.test";
    let principal = format!("afs/{CELL}@{}", realm.name());
    let control = common::confdir(CELL);
    let fs1 = common::confdir(CELL);
    let dir = control.path();
    fs::write(
        dir.join("afskeys.toml"),
        realm.remote_cell_config(&principal, fs1.path()),
    )
    .unwrap();
    let db = remote_db(&realm, &principal, "kadmin");
    for kvno in 1..=3 {
        let mut c = common::afskeys();
        c.envs(realm.env()).arg("--confdir").arg(dir).arg("rotate");
        let out = common::ok(common::pipe(c, b""));
        assert!(
            out.starts_with(&format!("kvno {kvno} is on every server")),
            "{out}"
        );
        assert_eq!(realm.kvno(&principal), Some(kvno));
        let control_keys = keys_in(dir, kvno);
        let fs1_keys = keys_in(fs1.path(), kvno);
        assert_eq!(control_keys.len(), 2);
        let proof = db
            .ticket_proof(&[("control", &control_keys), ("fs1", &fs1_keys)])
            .unwrap();
        assert!(proof.all_opened(), "{proof:?}");
    }
    assert_eq!(
        realm
            .kadmind_log()
            .matches(&format!("kadm5_chpass_principal, {principal}, success"))
            .count(),
        2
    );
    // The read-only commands work over kadmind too (no key bytes needed).
    let run = |args: &[&str]| {
        let mut c = common::afskeys();
        c.envs(realm.env()).arg("--confdir").arg(dir).args(args);
        common::ok(common::pipe(c, b""))
    };
    let show = run(&["authdb", "show"]);
    assert!(
        show.starts_with(&format!("afs entry {principal}: kvno 3 ")),
        "{show}"
    );
    let status = run(&["status"]);
    assert!(
        status.contains(&format!("(kadmin -s {})", realm.kadmind_addr())),
        "{status}"
    );
    assert!(run(&["check"]).starts_with("AFSKEYS OK - kvno 3 current"));

    // The KDC applies the change and afskeys dies before it records it (killed right after
    // kadmin's cpw): the resume finds the afs entry at the journal's kvno, proves with a
    // ticket that the KDC seals with the journal's keys, and finishes, where it used to ask
    // for kvno 4 again forever ("a new key needs a higher kvno") with --abort refused.
    let mut c = common::afskeys();
    c.envs(realm.env())
        .env("AFSKEYS_CRASH_AT", "after-authdb-set")
        .arg("--confdir")
        .arg(dir)
        .arg("rotate");
    let o = common::pipe(c, b"");
    assert_eq!(o.status.code(), None, "not killed: {}", common::stderr(&o));
    assert_eq!(realm.kvno(&principal), Some(4), "the KDC did not apply it");
    let journal = fs::read_to_string(dir.join("afskeys-state.json")).unwrap();
    assert!(journal.contains("\"step\": \"distributed\""), "{journal}");
    let out = run(&["rotate", "--resume"]);
    assert!(out.starts_with("kvno 4 is on every server"), "{out}");
    assert_eq!(realm.kvno(&principal), Some(4), "the KDC was changed again");
    let journal = fs::read_to_string(dir.join("afskeys-state.json")).unwrap();
    assert!(!journal.contains("passphrase"), "{journal}");
    assert!(run(&["check"]).starts_with("AFSKEYS OK - kvno 4 current"));
}

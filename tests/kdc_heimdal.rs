//! The afs entry in a real Heimdal KDC (Heimdal 7.8, unpacked from Debian's debs by
//! `tests/heimdal`): the Heimdal backend through `kadmin -l`, the KDC's tickets opened with
//! every server's keys, the enctypes the KDC holds at the new kvno exactly those on the
//! servers, a ticket in the weaker enctype (a copy of the database keeping only aes128)
//! opening too, a key changed behind afskeys' back caught, no secret on any child's argv or
//! environment or in the KDC's log, and `afskeys rotate` driven by afskeys.toml.

mod common;
mod heimdal;

use afskeys::authdb::heimdal::{HeimdalAuthDb, DEFAULT_KEYS};
use afskeys::authdb::kadmin::RemoteKdc;
use afskeys::authdb::ticket::Opening;
use afskeys::authdb::{AuthDb, AuthDbError};
use afskeys::keys::Key;
use chrono::Utc;
use common::kdc_keys::{
    assert_no_secret, derive, keys_in, keytab_of, recording_wrapper, secrets_of,
};
use std::fs;
use std::path::Path;
use std::time::Duration;

/// The backend as `[authdb] backend = "heimdal"` with `admin_principal` and `admin_keytab`
/// (no server: `kadmin -l`) builds it, seeing only this realm.
fn local_db(realm: &heimdal::Realm, principal: &str, kadmin: &str) -> HeimdalAuthDb {
    HeimdalAuthDb::new(principal.into(), kadmin.into())
        .with_remote(RemoteKdc::new(
            None,
            realm.admin_principal(),
            realm.admin_keytab(),
        ))
        .with_envs(realm.env())
}

/// The backend with `server` set: Heimdal's kadmin through kadmind, `-a -p -K`.
fn remote_db(realm: &heimdal::Realm, principal: &str) -> HeimdalAuthDb {
    HeimdalAuthDb::new(principal.into(), realm.kadmin_path().display().to_string())
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
    format!("heimdal-{kvno}-{}", hex::encode(r))
}

#[test]
fn heimdal_sets_are_read_back_and_proven_by_real_tickets() {
    let Some(realm) = heimdal::Realm::serve("HEIMDAL.TEST") else {
        return;
    };
    let principal = format!("afs/heimdal.test@{}", realm.name());
    let kadmin = realm.kadmin_path().display().to_string();
    let db = local_db(&realm, &principal, &kadmin);
    assert!(db.get().unwrap().is_none());
    assert_eq!(db.next_kvno().unwrap(), None);
    let mut previous: Vec<Key> = Vec::new();
    for kvno in 1..=3 {
        let pw = passphrase(kvno);
        let keys = derive(&principal, kvno, &pw);
        let e = db
            .set(kvno, &keys, Some(pw.as_bytes()), Utc::now())
            .unwrap();
        assert_eq!((e.kvno, &e.keys), (kvno, &keys));
        let facts = e.kdc.clone().unwrap();
        assert_eq!(facts.enctypes, vec![18, 17]);
        assert!(facts.keys_read);
        assert_eq!(realm.kvno(&principal), Some(kvno));
        assert_eq!(db.next_kvno().unwrap(), Some(kvno + 1));
        // Exactly the enctypes placed on the servers at the new kvno, none of Heimdal's
        // defaults (des3, arcfour); older kvnos kept (--keepold).
        let held = realm.keytypes(&principal);
        let at: Vec<&str> = held
            .iter()
            .filter(|(_, k)| *k == kvno)
            .map(|(n, _)| n.as_str())
            .collect();
        assert_eq!(at, ["aes256-cts-hmac-sha1-96", "aes128-cts-hmac-sha1-96"]);
        assert!(held.iter().any(|(_, k)| *k == kvno - 1) || kvno == 1);

        let got = db.get().unwrap().unwrap();
        assert_eq!((got.kvno, &got.keys), (kvno, &keys));
        assert!((Utc::now() - got.changed).num_seconds().abs() < 120);

        let proof = db
            .ticket_proof(&[("fs1", &keys), ("stale", &previous)])
            .unwrap();
        assert_eq!((proof.kvno, proof.enctype), (kvno, 18));
        assert_eq!(proof.principal, principal);
        assert_eq!(proof.kdc_enctypes, vec![18, 17]);
        assert_eq!(proof.servers[0].opening, Opening::Opened);
        assert_eq!(proof.servers[0].enctypes_held, vec![18, 17]);
        assert_eq!(proof.servers[1].opening, Opening::NoKey);
        let via_trait = AuthDb::prove_tickets(&db, &[("fs1", &keys)])
            .unwrap()
            .unwrap();
        assert!(via_trait.all_opened());

        // MIT's own tools agree, against the Heimdal KDC.
        let kt = keytab_of(realm.dir(), &principal, &keys);
        let out = realm.kvno_with_keytab(&principal, &kt);
        assert!(
            out.status.success()
                && String::from_utf8_lossy(&out.stdout).contains("keytab entry valid"),
            "kvno -k: {out:?}"
        );
        previous = keys;
    }

    // The weaker enctype: a copy of the database keeping only aes128 serves a ticket sealed
    // with it, which opens with the servers' aes128 key.
    let copy = realm.copy_with_only(&principal, "aes128-cts-hmac-sha1-96");
    let copy_db = local_db(&copy, &principal, &kadmin);
    assert_eq!(
        copy_db.get().unwrap().unwrap().kdc.unwrap().enctypes,
        vec![17]
    );
    // del_enctype took the others from every kvno, the older ones too: why the backend
    // never uses it on a live entry (the retiring key would lose enctypes).
    let left = copy.keytypes(&principal);
    assert!(left.iter().any(|(_, k)| *k < 3), "{left:?}");
    assert!(
        left.iter().all(|(n, _)| n == "aes128-cts-hmac-sha1-96"),
        "{left:?}"
    );
    let proof = copy_db.ticket_proof(&[("fs1", &previous)]).unwrap();
    assert_eq!((proof.kvno, proof.enctype), (3, 17));
    assert!(proof.all_opened(), "{proof:?}");
    drop(copy);

    // The grace the KDC allows: the max ticket life as Heimdal reports it.
    realm.ok(&["modify", "--max-ticket-life=10 hours", &principal]);
    let facts = db.get().unwrap().unwrap().kdc.unwrap();
    assert_eq!(facts.max_ticket_life, Some(Duration::from_secs(36000)));

    // A kvno other than the next one is refused before anything changes.
    let pw = passphrase(5);
    let e = db
        .set(
            5,
            &derive(&principal, 5, &pw),
            Some(pw.as_bytes()),
            Utc::now(),
        )
        .unwrap_err();
    assert!(matches!(e, AuthDbError::Refused(_)), "{e}");
    assert_eq!(realm.kvno(&principal), Some(3));
}

#[test]
fn a_first_key_above_kvno_1_and_a_key_changed_behind_afskeys_back() {
    let Some(realm) = heimdal::Realm::serve("SABOTAGE.HEIMDAL") else {
        return;
    };
    let principal = format!("afs/sabotage.heimdal@{}", realm.name());
    let kadmin = realm.kadmin_path().display().to_string();
    let db = local_db(&realm, &principal, &kadmin);
    // Created at kvno 4 directly (servers already at kvno 4): never a ticket at kvno 1.
    let pw = passphrase(4);
    let keys = derive(&principal, 4, &pw);
    let e = db.set(4, &keys, Some(pw.as_bytes()), Utc::now()).unwrap();
    assert_eq!(e.kvno, 4);
    let get = String::from_utf8_lossy(&realm.ok(&["get", &principal]).stdout).into_owned();
    assert!(!get.contains("disallow-all-tix"), "{get}");
    assert!(db.ticket_proof(&[("fs1", &keys)]).unwrap().all_opened());

    // Behind afskeys' back: a random key, then the kvno moved back to 4.
    realm.ok(&["cpw", "--random-key", &principal]);
    realm.ok(&["modify", "--kvno=4", &principal]);
    let e = db.get().unwrap().unwrap();
    assert_eq!(e.kvno, 4);
    let proof = db.ticket_proof(&[("fs1", &keys), ("fs2", &keys)]).unwrap();
    assert_eq!(proof.kvno, 4);
    assert!(proof
        .servers
        .iter()
        .all(|s| s.opening == Opening::DidNotOpen));
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
    let Some(realm) = heimdal::Realm::serve("SECRETS.HEIMDAL") else {
        return;
    };
    let principal = format!("afs/secrets.heimdal@{}", realm.name());
    let tools = tempfile::tempdir().unwrap();
    let log = tools.path().join("children.log");
    let find = |t: &str| heimdal::which(t).unwrap().display().to_string();
    let mut remote = RemoteKdc::new(None, realm.admin_principal(), realm.admin_keytab());
    remote.kinit = recording_wrapper(tools.path(), "kinit", &find("kinit"), &log);
    remote.kvno = recording_wrapper(tools.path(), "kvno", &find("kvno"), &log);
    let real = realm.kadmin_path().display().to_string();
    let kadmin = recording_wrapper(tools.path(), "kadmin", &real, &log);
    let db = HeimdalAuthDb::new(principal.clone(), kadmin)
        .with_remote(remote)
        .with_envs(realm.env());
    let mut secrets: Vec<Vec<u8>> = Vec::new();
    for kvno in 1..=2 {
        let pw = passphrase(kvno);
        let keys = derive(&principal, kvno, &pw);
        db.set(kvno, &keys, Some(pw.as_bytes()), Utc::now())
            .unwrap();
        assert!(db.ticket_proof(&[("fs1", &keys)]).unwrap().all_opened());
        secrets.extend(secrets_of(&pw, &keys));
    }
    let pw = passphrase(3);
    let wrong = derive(&principal, 3, "something else");
    let e = db
        .set(3, &wrong, Some(pw.as_bytes()), Utc::now())
        .unwrap_err();
    assert!(matches!(e, AuthDbError::Mismatch(_)), "{e:?}");
    let messages = format!("{e} {e:?}");
    secrets.push(pw.into_bytes());

    let children = fs::read(&log).unwrap();
    let argv = String::from_utf8_lossy(&children);
    assert!(argv.contains("-l cpw --keepold "), "{argv}");
    assert!(argv.contains("kinit-wrapper -k -t "), "{argv}");
    for (what, text) in [
        ("children's argv and environment", children),
        ("the KDC's log", realm.kdc_log().into_bytes()),
        ("the error message", messages.into_bytes()),
    ] {
        // A scan of nothing proves nothing: each text holds what was logged.
        assert!(!text.is_empty(), "{what} is empty: nothing to scan");
        assert_no_secret(what, &text, &secrets);
    }
    let pid = realm.kdc_pid().unwrap();
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    assert_no_secret("the KDC's command line", &cmdline, &secrets);
}

#[test]
fn afskeys_rotate_with_a_heimdal_kdc() {
    let Some(realm) = heimdal::Realm::serve("ROTATE.HEIMDAL") else {
        return;
    };
    const CELL: &str = "rotate.heimdal";
    let principal = format!("afs/{CELL}@{}", realm.name());
    let control = common::confdir(CELL);
    let fs1 = common::confdir(CELL);
    let dir = control.path();
    fs::write(
        dir.join("afskeys.toml"),
        format!(
            "[authdb]\nbackend = \"heimdal\"\nprincipal = \"{principal}\"\nkadmin = \"{}\"\n\
             admin_principal = \"{}\"\nadmin_keytab = \"{}\"\n\n\
             [[servers]]\nname = \"fs1\"\nconfdir = \"{}\"\n",
            realm.kadmin_path().display(),
            realm.admin_principal(),
            realm.admin_keytab().display(),
            fs1.path().display()
        ),
    )
    .unwrap();
    let kadmin = realm.kadmin_path().display().to_string();
    let db = local_db(&realm, &principal, &kadmin);
    for kvno in 1..=2 {
        let mut c = common::afskeys();
        c.envs(realm.env()).arg("--confdir").arg(dir).arg("rotate");
        let out = common::ok(common::pipe(c, b""));
        assert!(
            out.starts_with(&format!("kvno {kvno} is on every server")),
            "{out}"
        );
        assert_eq!(realm.kvno(&principal), Some(kvno));
        let mut control_keys = keys_in(dir, kvno);
        let mut fs1_keys = keys_in(fs1.path(), kvno);
        control_keys.sort_by_key(|k| -k.id.subtype);
        fs1_keys.sort_by_key(|k| -k.id.subtype);
        assert_eq!(control_keys.len(), 2);
        assert_eq!(control_keys, fs1_keys);
        for k in &control_keys {
            assert!(
                !out.contains(&hex::encode(k.bytes())),
                "a key in rotate's output"
            );
        }
        // The KDC's enctypes at the new kvno are exactly the servers'.
        let entry = db.get().unwrap().unwrap();
        let mut kdc = entry.kdc.unwrap().enctypes;
        let mut servers: Vec<i32> = fs1_keys.iter().map(|k| k.id.subtype).collect();
        kdc.sort_unstable();
        servers.sort_unstable();
        assert_eq!(kdc, servers);
        assert_eq!(entry.keys, control_keys);
        let proof = db
            .ticket_proof(&[("control", &control_keys), ("fs1", &fs1_keys)])
            .unwrap();
        assert!(proof.all_opened(), "{proof:?}");
    }
    let run = |args: &[&str]| {
        let mut c = common::afskeys();
        c.envs(realm.env()).arg("--confdir").arg(dir).args(args);
        common::ok(common::pipe(c, b""))
    };
    let show = run(&["authdb", "show"]);
    assert!(
        show.starts_with(&format!("afs entry {principal}: kvno 2 ")),
        "{show}"
    );
    let status = run(&["status"]);
    assert!(status.contains("heimdal "), "{status}");
    assert!(run(&["check"]).starts_with("AFSKEYS OK - kvno 2 current"));
}

#[test]
fn through_kadmind_without_the_get_keys_privilege() {
    let Some(mut realm) = heimdal::Realm::serve_with("REMOTE.HEIMDAL", Some(DEFAULT_KEYS)) else {
        return;
    };
    realm.start_kadmind();
    let principal = format!("afs/remote.heimdal@{}", realm.name());
    let db = remote_db(&realm, &principal);
    assert!(db.is_remote());
    assert!(db.get().unwrap().is_none());
    let mut secrets: Vec<String> = Vec::new();
    for kvno in 1..=2 {
        let pw = passphrase(kvno);
        secrets.push(pw.clone());
        let keys = derive(&principal, kvno, &pw);
        let e = db
            .set(kvno, &keys, Some(pw.as_bytes()), Utc::now())
            .unwrap();
        assert_eq!((e.kvno, &e.keys), (kvno, &keys));
        let facts = e.kdc.unwrap();
        assert_eq!(facts.enctypes, vec![18, 17]);
        assert!(!facts.keys_read);
        assert_eq!(realm.kvno(&principal), Some(kvno));
        let got = db.get().unwrap().unwrap();
        assert_eq!((got.kvno, got.keys.len()), (kvno, 0));
        assert!(db.ticket_proof(&[("fs1", &keys)]).unwrap().all_opened());
    }
    // The changes went through kadmind, as the admin principal.
    let log = realm.kadmind_log();
    let by_admin = |op: &str| format!("{}: {op} {principal}", realm.admin_principal());
    assert_eq!(log.matches(&by_admin("CREATE")).count(), 1, "{log}");
    assert_eq!(log.matches(&by_admin("CHPASS")).count(), 1, "{log}");
    assert!(log.contains("connection from IPv4:127.0.0.1"), "{log}");
    for s in &secrets {
        assert!(!log.contains(s.as_str()), "a secret is in kadmind's log");
    }
    // Key bytes are not handed out over kadmind ("all" lacks get-keys): nothing above
    // needed them.
    let out = std::process::Command::new(realm.kadmin_path())
        .args([
            "-a",
            &realm.kadmind_addr(),
            "-p",
            &realm.admin_principal(),
            "-K",
        ])
        .arg(realm.admin_keytab())
        .args(["ext_keytab", "-k", "FILE:/dev/null", &principal])
        .envs(realm.env())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("get-keys"),
        "{out:?}"
    );
}

#[test]
fn kadmind_making_other_enctypes_than_the_servers_hold_is_reported() {
    // Debian's default_keys: aes256, des3-cbc-sha1, arcfour-hmac-md5.
    let Some(mut realm) = heimdal::Realm::serve("DEFAULTS.HEIMDAL") else {
        return;
    };
    realm.start_kadmind();
    let principal = format!("afs/defaults.heimdal@{}", realm.name());
    let db = remote_db(&realm, &principal);
    let pw = passphrase(1);
    let keys = derive(&principal, 1, &pw);
    let e = db
        .set(1, &keys, Some(pw.as_bytes()), Utc::now())
        .unwrap_err();
    let m = e.to_string();
    assert!(matches!(e, AuthDbError::Mismatch(_)), "{m}");
    assert!(
        m.contains("[16, 18, 23]") && m.contains("default_keys"),
        "{m}"
    );
    // `-l` is not fooled by the realm's defaults: its private default_keys comes first.
    let local = local_db(
        &realm,
        &principal,
        &realm.kadmin_path().display().to_string(),
    );
    let pw = passphrase(2);
    let keys = derive(&principal, 2, &pw);
    let e = local
        .set(2, &keys, Some(pw.as_bytes()), Utc::now())
        .unwrap();
    assert_eq!(e.kdc.unwrap().enctypes, vec![18, 17]);
}

#[test]
fn heimdal_settings_in_afskeys_toml() {
    use afskeys::config::{Backend, Config};
    let p = Path::new("afskeys.toml");
    let local = "[authdb]\nbackend = \"heimdal\"\nadmin_principal = \"a/admin@R\"\n\
                 admin_keytab = \"/k\"\n";
    let c = Config::parse(local, p).unwrap();
    assert_eq!(c.authdb.backend, Backend::Heimdal);
    assert!(c.authdb.server.is_none());
    let remote =
        format!("{local}server = \"kdc1.example.com:749\"\nkadmin = \"/usr/bin/kadmin.heimdal\"\n");
    let c = Config::parse(&remote, p).unwrap();
    assert_eq!(c.authdb.server.as_deref(), Some("kdc1.example.com:749"));
    let no_keytab = "[authdb]\nbackend = \"heimdal\"\nserver = \"kdc1\"\n";
    let e = Config::parse(no_keytab, p).unwrap_err().to_string();
    assert!(e.contains("needs admin_principal and admin_keytab"), "{e}");
    let file = "[authdb]\nadmin_principal = \"a@R\"\nadmin_keytab = \"/k\"\n";
    let e = Config::parse(file, p).unwrap_err().to_string();
    assert!(
        e.contains("need backend = \"kadmin\" or \"heimdal\""),
        "{e}"
    );
}

/// What Heimdal's `get` prints, for the parser property below.
const GET_SAMPLE: &str = "            Principal: afs/h.test@H.TEST
 Last password change: 2026-12-01 23:19:56 UTC
      Max ticket life: 1 week 2 days 10 hours
                 Kvno: 3
        Last modified: 2026-12-01 23:20:00 UTC
             Keytypes: aes256-cts-hmac-sha1-96(pw-salt)[3], aes128-cts-hmac-sha1-96(pw-salt)[3], des3-cbc-sha1(pw-salt)[2]
";

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2048))]

    /// The `get` parser never panics: on any text, and on the real record cut or with one
    /// byte changed anywhere; whatever it accepts has a kvno and key data it read.
    #[test]
    fn heimdal_get_parser_never_panics(
        junk in ".{0,300}",
        cut in 0usize..400,
        at in 0usize..400,
        byte in proptest::prelude::any::<u8>(),
    ) {
        use afskeys::authdb::heimdal_get::{parse_get, parse_life};
        let _ = parse_get(&junk);
        let _ = parse_life(&junk);
        let sample = GET_SAMPLE.as_bytes();
        let cut = &sample[..cut.min(sample.len())];
        let _ = parse_get(&String::from_utf8_lossy(cut));
        let mut changed = sample.to_vec();
        let i = at % changed.len();
        changed[i] = byte;
        if let Ok(info) = parse_get(&String::from_utf8_lossy(&changed)) {
            proptest::prop_assert!(info.keys.len() <= 3);
        }
    }
}

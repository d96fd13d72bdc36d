//! Secret hygiene: every key used is searched for, as hex and as raw bytes, in everything
//! afskeys writes besides the key files and the auth DB itself — stdout without --showkey,
//! stderr, the audit log, the journal once a rotation is done, backups' modes — and in the
//! argv of every child it starts (kadmin.local, through a recording wrapper). None is found.

mod common;
mod kdc;
use common::*;
use serde_json::Value;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

const CELL: &str = "secret.example.com";

/// Every key in a conf dir, as raw bytes.
fn all_keys(dir: &Path) -> Vec<Vec<u8>> {
    let v: Value =
        serde_json::from_str(&ok(run(dir, &["--json", "list", "--showkey"], b""))).unwrap();
    v["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| hex::decode(k["key"].as_str().unwrap()).unwrap())
        .collect()
}

#[track_caller]
fn assert_clean(what: &str, haystack: &[u8], keys: &[Vec<u8>], words: &[&str]) {
    let text = String::from_utf8_lossy(haystack).to_ascii_lowercase();
    for k in keys {
        assert!(!text.contains(&hex::encode(k)), "{what} holds a key as hex");
        assert!(
            !haystack.windows(k.len()).any(|w| w == &k[..]),
            "{what} holds a key's raw bytes"
        );
    }
    for w in words {
        assert!(
            !text.contains(&w.to_ascii_lowercase()),
            "{what} holds the secret {w:?}"
        );
    }
}

#[test]
fn no_key_or_password_outside_the_key_files() {
    let d = confdir(CELL);
    let dir = d.path();
    let password = "Tr0ub4dor&3 horse";
    let mut outputs: Vec<(String, Vec<u8>)> = vec![];
    let mut record = |name: &str, o: std::process::Output| {
        let mut b = o.stdout.clone();
        b.extend_from_slice(&o.stderr);
        outputs.push((name.to_string(), b));
    };
    record("rotate", run(dir, &["rotate"], b""));
    record(
        "rotate pw",
        run(
            dir,
            &["rotate", "--password-stdin"],
            format!("{password}\n").as_bytes(),
        ),
    );
    record(
        "add pw",
        run(
            dir,
            &["add", "--kvno", "20", "--password-stdin"],
            format!("{password}\n").as_bytes(),
        ),
    );
    record(
        "add hex",
        run(
            dir,
            &["add", "--kvno", "21", "--key-hex-stdin"],
            b"80b6a7cd7a9dadb6\n",
        ),
    );
    record(
        "add typed pw",
        run(
            dir,
            &[
                "add",
                "--kvno",
                "22",
                "--type",
                "rxkad_krb5",
                "--password-stdin",
            ],
            format!("{password}\n").as_bytes(),
        ),
    );
    record(
        "add dup",
        run(
            dir,
            &["add", "--kvno", "21", "--key-hex-stdin"],
            b"80b6a7cd7a9dadb6\n",
        ),
    );
    let keys = all_keys(dir);
    assert_eq!(keys.len(), 4 + 1 + 1 + 2);
    for args in [
        vec!["list"],
        vec!["list", "--format", "bos"],
        vec!["--json", "list"],
        vec!["listkeys"],
        vec!["status"],
        vec!["--json", "status"],
        vec!["check"],
        vec!["authdb", "show"],
        vec!["--json", "authdb", "show"],
        vec!["rotate", "--dry-run"],
        vec!["remove", "--kvno", "1"],
        vec!["remove", "--kvno", "21"],
        vec!["prune"],
    ] {
        record(&args.join(" "), run(dir, &args, b""));
    }
    for (name, out) in &outputs {
        assert_clean(name, out, &keys, &[password]);
    }
    // The audit log and the finished journal hold no key material.
    for f in ["afskeys-audit.log", "afskeys-state.json"] {
        let b = fs::read(dir.join(f)).unwrap();
        assert_clean(f, &b, &keys, &[password]);
        assert_eq!(
            fs::metadata(dir.join(f)).unwrap().permissions().mode() & 0o777,
            0o600,
            "{f}"
        );
    }
    // Everything that does hold keys is private.
    for f in ["KeyFile", "KeyFileExt", "afskeys-authdb.json"] {
        assert_eq!(
            fs::metadata(dir.join(f)).unwrap().permissions().mode() & 0o777,
            0o600,
            "{f}"
        );
    }
    let b = dir.join(".afskeys-backup");
    assert_eq!(
        fs::metadata(&b).unwrap().permissions().mode() & 0o777,
        0o700
    );
    for e in fs::read_dir(&b).unwrap() {
        let p = e.unwrap().path();
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600,
            "{}",
            p.display()
        );
    }
}

#[test]
#[cfg(feature = "test-hooks")] // AFSKEYS_CRASH_AT stops a rotation part way
fn kadmin_never_sees_the_passphrase_on_argv() {
    let Some(realm) = kdc::Realm::create("SECRET.EXAMPLE.COM") else {
        return;
    };
    let d = confdir(CELL);
    let dir = d.path();
    // A wrapper that records each kadmin.local's argv (and its own /proc cmdline) and runs it.
    let log = dir.join("argv.log");
    let wrapper = d.path().join("kadmin-wrapper");
    fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\ntr '\\0' ' ' < /proc/$$/cmdline >> {log}\necho >> {log}\nexec {real} \"$@\"\n",
            log = log.display(),
            real = realm.kadmin_local().display()
        ),
    )
    .unwrap();
    fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755)).unwrap();
    let principal = format!("afs/{CELL}@{}", realm.name());
    fs::write(
        dir.join("afskeys.toml"),
        format!(
            "[authdb]\nbackend = \"kadmin\"\nprincipal = \"{principal}\"\nkadmin = \"{}\"\n",
            wrapper.display()
        ),
    )
    .unwrap();
    let rotate = |env: Option<&str>| {
        let mut c = afskeys();
        c.envs(realm.env()).arg("--confdir").arg(dir).arg("rotate");
        if let Some(step) = env {
            c.env("AFSKEYS_CRASH_AT", step);
        }
        pipe(c, b"")
    };
    ok(rotate(None));
    // Stop a rotation after distribution to read the passphrase the journal keeps for resume.
    let _ = rotate(Some("distributed"));
    let state: Value =
        serde_json::from_str(&fs::read_to_string(dir.join("afskeys-state.json")).unwrap()).unwrap();
    let passphrase = state["rotation"]["passphrase"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(passphrase.len() >= 32);
    // Its temp dir (where the exported keytab goes) is private to this run, to check it after.
    let tmp = tempfile::tempdir().unwrap();
    let mut c = afskeys();
    c.envs(realm.env())
        .env("TMPDIR", tmp.path())
        .arg("--confdir")
        .arg(dir)
        .args(["rotate", "--resume"]);
    let o = pipe(c, b"");
    assert!(o.status.success(), "{}", stderr(&o));
    let argv = fs::read(&log).unwrap();
    assert!(
        String::from_utf8_lossy(&argv).contains("cpw"),
        "the wrapper saw no cpw"
    );
    let keys = all_keys(dir);
    assert_clean("kadmin argv", &argv, &keys, &[&passphrase]);
    assert_clean(
        "resume output",
        &[o.stdout, o.stderr].concat(),
        &keys,
        &[&passphrase],
    );
    // After activation the journal no longer holds the passphrase.
    let after = fs::read(dir.join("afskeys-state.json")).unwrap();
    assert_clean("journal after resume", &after, &keys, &[&passphrase]);
    // The exported keytabs (ktadd -norandkey, to verify the KDC) were all removed.
    let left: Vec<_> = fs::read_dir(tmp.path()).unwrap().collect();
    assert!(left.is_empty(), "left in TMPDIR: {left:?}");
}

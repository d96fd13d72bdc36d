//! The grace the KDC really allows: with no `token_lifetime` in afskeys.toml and the afs
//! entry in a real MIT database, the grace is the afs principal's maximum ticket life (set
//! to 10 hours with `modprinc -maxlife`) plus the 5-minute clock skew. `status` says so and
//! when the retiring key becomes removable; `remove` is refused before and allowed after (the
//! clock moved with libfaketime: kadmin.local makes no KDC exchange, so nothing breaks). An
//! explicit `token_lifetime` below the KDC's value is refused, naming both.

mod common;
mod kdc;

use chrono::{DateTime, Utc};
use common::*;
use serde_json::Value;
use std::fs;
use std::process::{Command, Output};

const CELL: &str = "grace.test";

/// A conf dir whose auth DB is the realm's afs principal through kadmin.local: (principal,
/// conf dir, afskeys.toml's text).
fn cell(realm: &kdc::Realm) -> (String, tempfile::TempDir, String) {
    let principal = format!("afs/{CELL}@{}", realm.name());
    let d = confdir(CELL);
    let toml = format!(
        "[authdb]\nbackend = \"kadmin\"\nprincipal = \"{principal}\"\nkadmin = \"{}\"\n",
        realm.kadmin_local().display()
    );
    fs::write(d.path().join("afskeys.toml"), &toml).unwrap();
    (principal, d, toml)
}

/// afskeys on `dir` with the realm's environment, the clock moved by `offset` (libfaketime).
fn at(realm: &kdc::Realm, dir: &std::path::Path, offset: Option<&str>, args: &[&str]) -> Output {
    let mut c = match offset {
        Some(o) => {
            let mut c = Command::new("faketime");
            c.args(["-f", o, env!("CARGO_BIN_EXE_afskeys")]);
            c
        }
        None => afskeys(),
    };
    c.envs(realm.env()).arg("--confdir").arg(dir).args(args);
    pipe(c, b"")
}

#[test]
fn the_kdc_max_ticket_life_plus_skew_is_the_grace() {
    if !have(&["faketime"]) {
        return;
    }
    let Some(realm) = kdc::Realm::create("GRACE.TEST") else {
        return;
    };
    let (principal, d, toml) = cell(&realm);
    let dir = d.path();
    let afskeys_at = |offset: Option<&str>, args: &[&str]| at(&realm, dir, offset, args);
    ok(afskeys_at(None, &["rotate"]));
    ok(afskeys_at(None, &["rotate"]));
    let o = realm.kadmin(&format!("modprinc -maxlife \"10 hours\" {principal}"));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("modified"),
        "{o:?}"
    );

    let v: Value = serde_json::from_str(&ok(afskeys_at(None, &["--json", "status"]))).unwrap();
    assert_eq!(v["grace"]["source"], "kdc", "{v}");
    assert_eq!(v["grace"]["seconds"], 10 * 3600 + 300);
    assert_eq!(v["grace"]["max_ticket_life"], 10 * 3600);
    assert_eq!(v["grace"]["clock_skew"], 300);
    assert_eq!(v["grace"]["principal"], principal.as_str());
    let retiring: Vec<&Value> = v["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["kvno"] == 1)
        .collect();
    assert_eq!(retiring.len(), 2);
    let until: DateTime<Utc> = retiring[0]["removable_after"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let left = (until - Utc::now()).num_seconds();
    assert!(
        (10 * 3600 + 300 - 120..=10 * 3600 + 300).contains(&left),
        "{left}"
    );
    let text = ok(afskeys_at(None, &["status"]));
    assert!(
        text.contains(&format!(
            "grace for retiring keys: 10h5m (max ticket life 10h of {principal} in the KDC, \
             plus 5m clock skew)"
        )),
        "{text}"
    );

    // Refused before the grace ends, allowed after.
    for offset in [None, Some("+10h")] {
        let o = afskeys_at(offset, &["remove", "--kvno", "1"]);
        assert_eq!(o.status.code(), Some(3), "{offset:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("(grace 10h5m (max ticket life 10h of"),
            "{}",
            stderr(&o)
        );
    }
    let o = afskeys_at(Some("+607m"), &["remove", "--kvno", "1"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // The restarts kvno 1's removal needs, printed before it (this conf dir is not one bos
    // reads, so afskeys cannot run them).
    let err = stderr(&o);
    assert!(
        err.contains(
            "before kvno 1 goes, the OpenAFS server processes that started before kvno 2 was \
             on every server must be restarted"
        ),
        "{err}"
    );
    assert!(
        err.lines()
            .any(|l| l.starts_with("  bos restart ") && l.ends_with(" -all -localauth")),
        "{err}"
    );

    // An explicit token_lifetime below the KDC's max life: refused, naming both values.
    fs::write(
        dir.join("afskeys.toml"),
        format!("token_lifetime = \"5h\"\n{toml}"),
    )
    .unwrap();
    ok(afskeys_at(None, &["rotate"]));
    let o = afskeys_at(None, &["check"]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(
        stdout(&o).contains("grace: token_lifetime 5h in afskeys.toml is below"),
        "{}",
        stdout(&o)
    );
    let o = afskeys_at(Some("+6h"), &["prune"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(
            "token_lifetime 5h in afskeys.toml is below the maximum ticket life 10h the KDC gives"
        ),
        "{}",
        stderr(&o)
    );
    let o = afskeys_at(Some("+6h"), &["remove", "--kvno", "2"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("token_lifetime 5h"), "{}", stderr(&o));
}

/// Never guess short: with the afs principal's maximum ticket life at 0 (MIT falls back to
/// the realm's limit, which can be days and which kadmin does not show) and no
/// `token_lifetime`, the grace is unknown: `status` says so, `check` warns, and `prune` and
/// `remove` of the old key are refused even 30 days on, naming what to set. Before, the
/// built-in 25 h was used (a realm with a 7-day limit gave 7-day tokens while afskeys let
/// the key go after 25 h). With `token_lifetime` set, the key goes after it.
#[test]
fn a_kdc_with_no_max_life_of_the_principals_own_never_has_its_grace_guessed() {
    if !have(&["faketime"]) {
        return;
    }
    let Some(realm) = kdc::Realm::create("NOLIFE.TEST") else {
        return;
    };
    let (principal, d, toml) = cell(&realm);
    let dir = d.path();
    let afskeys_at = |offset: Option<&str>, args: &[&str]| at(&realm, dir, offset, args);
    ok(afskeys_at(None, &["rotate"]));
    ok(afskeys_at(None, &["rotate"]));
    let o = realm.kadmin(&format!("modprinc -maxlife 0 {principal}"));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("modified"),
        "{o:?}"
    );
    let v: Value = serde_json::from_str(&ok(afskeys_at(None, &["--json", "status"]))).unwrap();
    assert_eq!(v["grace"]["source"], "unknown", "{v}");
    assert_eq!(v["grace"]["seconds"], Value::Null, "{v}");
    let text = ok(afskeys_at(None, &["status"]));
    assert!(
        text.contains(&format!(
            "unknown: the KDC gives {principal} no maximum ticket life of its own"
        )),
        "{text}"
    );
    let o = afskeys_at(None, &["check"]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(
        stdout(&o).contains("grace: the grace is unknown"),
        "{}",
        stdout(&o)
    );
    for args in [&["prune"][..], &["remove", "--kvno", "1"]] {
        let o = afskeys_at(Some("+30d"), args);
        assert_eq!(o.status.code(), Some(3), "{args:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("set token_lifetime in afskeys.toml"),
            "{args:?}: {}",
            stderr(&o)
        );
    }
    fs::write(
        dir.join("afskeys.toml"),
        format!("token_lifetime = \"8d\"\n{toml}"),
    )
    .unwrap();
    let o = afskeys_at(Some("+7d"), &["prune"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stdout(&o).contains("removed"), "{}", stdout(&o));
    let o = afskeys_at(Some("+9d"), &["prune"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("removed"), "{}", stdout(&o));
}

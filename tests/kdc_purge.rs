//! Old keys purged from the KDC, last (issue "The end of a key's life", part 3), against
//! real KDCs: MIT through kadmin.local and through kadmind, and Heimdal. The afs principal's
//! maximum ticket life is set to 1 s and `clock_skew` to 1 s, so a retiring key's grace ends
//! within seconds. Three rotations leave kvnos 1, 2 and 3 in the KDC (`cpw -keepold`);
//! `remove --kvno 1` takes kvno 1 off every server but leaves it in the KDC (as a prune cut
//! short after the servers would), which `check` warns about; `prune --dry-run` says what it
//! would purge; `prune` removes kvno 2 from the servers and purges 1 and 2 from the KDC (MIT:
//! the KDC then holds kvno 3 alone), logged; Heimdal 7.8 cannot (through `kadmin -l` and
//! through kadmind alike), and `prune` says so, naming the kvnos its KDC keeps.

mod common;
mod heimdal;
mod kdc;

use common::*;
use serde_json::Value;
use std::fs;
use std::path::Path;
use std::process::Output;

const CELL: &str = "purge.test";

fn run(env: &[(String, String)], dir: &Path, args: &[&str]) -> Output {
    let mut c = afskeys();
    c.envs(env.iter().cloned())
        .arg("--confdir")
        .arg(dir)
        .args(args);
    pipe(c, b"")
}

fn json(o: Output) -> Value {
    serde_json::from_str(&ok(o)).unwrap()
}

/// The flow above on a cell whose afskeys.toml is `toml` (plus `clock_skew`); `max_life_1s`
/// sets the principal's maximum ticket life to 1 s; `kdc_kvnos` reads what the KDC holds,
/// highest first. Returns what `prune --json` said of the KDC.
fn purge_flow(
    env: &[(String, String)],
    toml: &str,
    max_life_1s: &dyn Fn(),
    kdc_kvnos: &dyn Fn() -> Vec<i32>,
) -> Value {
    let control = confdir(CELL);
    let fs1 = confdir(CELL);
    let dir = control.path();
    let toml = toml.replace("@FS1@", &fs1.path().display().to_string());
    fs::write(
        dir.join("afskeys.toml"),
        format!("clock_skew = \"1s\"\n{toml}"),
    )
    .unwrap();
    for _ in 0..3 {
        ok(run(env, dir, &["rotate"]));
        max_life_1s();
    }
    assert_eq!(kdc_kvnos(), vec![3, 2, 1], "cpw -keepold kept every kvno");
    std::thread::sleep(std::time::Duration::from_secs(3));
    let status = json(run(env, dir, &["--json", "status"]));
    assert_eq!(
        status["afs_entry"]["kdc_kvnos"],
        serde_json::json!([3, 2, 1]),
        "{status}"
    );
    // kvno 1 off every server, left in the KDC: check warns.
    ok(run(env, dir, &["remove", "--kvno", "1"]));
    let check = run(env, dir, &["check"]);
    let line = stdout(&check);
    eprintln!("check: {line}");
    assert!(
        line.contains("the KDC still holds kvno 1, which no server holds (run `afskeys prune`)"),
        "{line}"
    );
    let dry = run(env, dir, &["prune", "--dry-run"]);
    eprintln!("prune --dry-run: {}{}", stdout(&dry), stderr(&dry));
    assert!(dry.status.success(), "{}", stderr(&dry));
    let said = stdout(&dry);
    assert!(
        said.contains("would purge kvno 1, 2 from the KDC\n")
            || said.contains("would not purge kvno 1, 2 from the KDC: Heimdal 7.8's kadmin"),
        "{said}"
    );
    assert_eq!(kdc_kvnos(), vec![3, 2, 1], "a dry run purged");
    let before = kdc_kvnos();
    let o = run(env, dir, &["--json", "prune"]);
    eprintln!("prune: {}{}", stdout(&o), stderr(&o));
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["removed"][0]["kvno"], 2, "{v}");
    let after = kdc_kvnos();
    eprintln!("the KDC's kvnos before the prune {before:?}, after {after:?}");
    for d in [dir, fs1.path()] {
        let l = json(run(env, d, &["--json", "list"]));
        let kvnos: Vec<i64> = (l["keys"].as_array().unwrap().iter())
            .map(|k| k["kvno"].as_i64().unwrap())
            .collect();
        assert!(kvnos.iter().all(|k| *k == 3), "{kvnos:?}");
    }
    v["kdc"].clone()
}

/// The flow on an MIT realm (kadmin.local or kadmind, as `toml` says): kvnos 1 and 2 purged,
/// the KDC left with kvno 3 alone.
fn mit_purges(realm: &kdc::Realm, principal: &str, toml: &str) {
    let max_life = || {
        ok(realm.kadmin(&format!("modprinc -maxlife \"1 second\" {principal}")));
    };
    let kvnos = || mit_kvnos(realm, principal);
    let kdc = purge_flow(&realm.env(), toml, &max_life, &kvnos);
    assert_eq!(
        kdc,
        serde_json::json!({"kvnos": [1, 2], "purged": true, "kdc_holds": [3]})
    );
    assert_eq!(kvnos(), vec![3]);
}

#[test]
fn mit_local_purges_what_no_server_holds() {
    let Some(realm) = kdc::Realm::create("PURGE.TEST") else {
        return;
    };
    let principal = format!("afs/{CELL}@{}", realm.name());
    let toml = format!(
        "[authdb]\nbackend = \"kadmin\"\nprincipal = \"{principal}\"\nkadmin = \"{}\"\n\
         [[servers]]\nname = \"fs1\"\nconfdir = \"@FS1@\"\n",
        realm.kadmin_local().display()
    );
    mit_purges(&realm, &principal, &toml);
}

#[test]
fn mit_through_kadmind_purges_what_no_server_holds() {
    let Some(realm) = kdc::Realm::serve("PURGE.REMOTE") else {
        return;
    };
    let principal = format!("afs/{CELL}@{}", realm.name());
    mit_purges(
        &realm,
        &principal,
        &realm.remote_cell_config(&principal, Path::new("@FS1@")),
    );
    let log = realm.kadmind_log();
    assert!(log.contains("purge"), "{log}");
}

/// Heimdal, through `kadmin -l` or (`remote`) its kadmind.
fn heimdal_cannot_purge(name: &str, remote: bool) {
    use afskeys::authdb::heimdal::DEFAULT_KEYS;
    let Some(mut realm) = heimdal::Realm::serve_with(name, Some(DEFAULT_KEYS)) else {
        return;
    };
    let server = if remote {
        realm.start_kadmind();
        format!("server = \"{}\"\n", realm.kadmind_addr())
    } else {
        String::new()
    };
    let principal = format!("afs/{CELL}@{}", realm.name());
    let toml = format!(
        "[authdb]\nbackend = \"heimdal\"\nprincipal = \"{principal}\"\nkadmin = \"{}\"\n\
         admin_principal = \"{}\"\nadmin_keytab = \"{}\"\n{server}\n\
         [[servers]]\nname = \"fs1\"\nconfdir = \"@FS1@\"\n",
        realm.kadmin_path().display(),
        realm.admin_principal(),
        realm.admin_keytab().display(),
    );
    let env = realm.env();
    let max_life = || {
        let o = realm.kadmin(&["modify", "--max-ticket-life=1 second", &principal], b"");
        assert!(o.status.success(), "{}", stderr(&o));
    };
    let kvnos = || heimdal_kvnos(&realm, &principal);
    let kdc = purge_flow(&env, &toml, &max_life, &kvnos);
    assert_eq!(kdc["purged"], false, "{kdc}");
    assert_eq!(kdc["kvnos"], serde_json::json!([1, 2]), "{kdc}");
    assert!(
        kdc["why_not"]
            .as_str()
            .unwrap()
            .starts_with("Heimdal 7.8's kadmin cannot drop some kvnos"),
        "{kdc}"
    );
    assert_eq!(kvnos(), vec![3, 2, 1]);
    if remote {
        let log = realm.kadmind_log();
        assert!(log.contains(&format!("CHPASS {principal}")), "{log}");
    }
}

#[test]
fn heimdal_cannot_purge_and_prune_says_which_kvnos_it_keeps() {
    heimdal_cannot_purge("PURGE.HEIMDAL", false);
}

#[test]
fn heimdal_through_kadmind_cannot_purge_either() {
    heimdal_cannot_purge("PURGE.HKADMIND", true);
}

/// The kvnos MIT's KDC holds for `principal` (getprinc's key lines), highest first.
fn mit_kvnos(realm: &kdc::Realm, principal: &str) -> Vec<i32> {
    let o = realm.kadmin(&format!("getprinc {principal}"));
    let text = stdout(&o);
    let mut v: Vec<i32> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Key: vno "))
        .filter_map(|r| r.split(',').next()?.trim().parse().ok())
        .collect();
    v.sort_unstable_by(|a, b| b.cmp(a));
    v.dedup();
    v
}

/// The kvnos Heimdal's KDC holds for `principal` (`get`'s Keytypes `…[kvno]`), highest first.
fn heimdal_kvnos(realm: &heimdal::Realm, principal: &str) -> Vec<i32> {
    let o = realm.kadmin(&["get", principal], b"");
    let text = stdout(&o);
    let line = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Keytypes:"))
        .unwrap_or_default()
        .to_string();
    let mut v: Vec<i32> = line
        .split(',')
        .filter_map(|k| k.rsplit_once('[')?.1.trim_end_matches(']').parse().ok())
        .collect();
    v.sort_unstable_by(|a, b| b.cmp(a));
    v.dedup();
    v
}

//! `afskeys verify --kdc` and `check` against a served MIT realm (krb5kdc + kadmind on
//! loopback): after each of three rotations through kadmind every machine opens the real
//! KDC's ticket (and the real `kvno -k` agrees); after the KDC's key is changed behind
//! afskeys' back at the same kvno, `verify --kdc` exits 2 naming every server and `check` is
//! CRITICAL. The `--json` output is validated against docs/json.md § verify-kdc.

mod common;
mod kdc;

use afskeys::authdb::kadmin::KEYSALT_LIST;
use afskeys::format::keytab;
use serde_json::Value;
use std::fs;
use std::path::Path;
use zeroize::Zeroizing;

const CELL: &str = "verify.test";

/// docs/json.md § `name`: the schema in the ```json block under `## name`.
fn schema(name: &str) -> Value {
    let text = fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/json.md")).unwrap();
    let start = text
        .find(&format!("\n## {name}\n"))
        .unwrap_or_else(|| panic!("no section {name}"));
    let rest = &text[start..];
    let open = rest.find("```json\n").unwrap() + 8;
    let close = open + rest[open..].find("\n```").unwrap();
    serde_json::from_str(&rest[open..close]).unwrap()
}

fn validate(name: &str, v: &Value) {
    let s = schema(name);
    let validator = jsonschema::validator_for(&s).unwrap();
    let errors: Vec<String> = validator.iter_errors(v).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{errors:?}\n{v}");
}

/// A keytab of `dir`'s rxkad_krb5 keys at `kvno`, for the real `kvno -k`.
fn server_keytab(dir: &Path, principal: &str, kvno: i32, out: &Path) {
    let o = common::ok(common::run(dir, &["--json", "list", "--showkey"], b""));
    let v: Value = serde_json::from_str(&o).unwrap();
    let (components, realm) = keytab::split_principal(principal).unwrap();
    let entries: Vec<keytab::Entry> = v["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["kvno"] == kvno && k["type"] == "rxkad_krb5")
        .map(|k| keytab::Entry {
            realm: realm.clone(),
            components: components.clone(),
            kvno: kvno as u32,
            enctype: k["enctype"].as_u64().unwrap() as u16,
            key: Zeroizing::new(hex::decode(k["key"].as_str().unwrap()).unwrap()),
        })
        .collect();
    assert_eq!(entries.len(), 2);
    fs::write(out, keytab::write(&entries, 0)).unwrap();
}

#[test]
fn verify_kdc_proves_each_rotation_and_catches_a_key_changed_behind_our_back() {
    let Some(realm) = kdc::Realm::serve("VERIFY.TEST") else {
        return;
    };
    let principal = format!("afs/{CELL}@{}", realm.name());
    let control = common::confdir(CELL);
    let fs1 = common::confdir(CELL);
    let dir = control.path();
    fs::write(
        dir.join("afskeys.toml"),
        realm.remote_cell_config(&principal, fs1.path()),
    )
    .unwrap();
    let run = |args: &[&str]| {
        let mut c = common::afskeys();
        c.envs(realm.env()).arg("--confdir").arg(dir).args(args);
        common::pipe(c, b"")
    };
    for kvno in 1..=3 {
        let out = common::ok(run(&["rotate"]));
        assert!(
            out.starts_with(&format!("kvno {kvno} is on every server")),
            "{out}"
        );
        let text = common::ok(run(&["verify", "--kdc"]));
        assert!(
            text.starts_with(&format!(
                "ticket from the KDC for {principal}: kvno {kvno}, enctype 18"
            )),
            "{text}"
        );
        for name in ["control", "fs1"] {
            assert!(
                text.lines()
                    .any(|l| l.starts_with(name) && l.contains(" opened; holds enctypes [17, 18]")),
                "{text}"
            );
        }
        let v: Value =
            serde_json::from_str(&common::ok(run(&["--json", "verify", "--kdc"]))).unwrap();
        validate("verify-kdc", &v);
        assert_eq!(v["ok"], true);
        assert_eq!(v["kvno"], kvno);
        assert_eq!(v["kdc_enctypes"], serde_json::json!([18, 17]));
        // The real tools agree: the ticket opens with a keytab of fs1's keys.
        let kt = realm.dir().join(format!("fs1-{kvno}.keytab"));
        server_keytab(fs1.path(), &principal, kvno, &kt);
        let o = realm.kvno_with_keytab(&principal, &kt);
        assert!(
            String::from_utf8_lossy(&o.stdout).contains("keytab entry valid"),
            "{o:?}"
        );
    }
    assert!(common::ok(run(&["check"])).starts_with("AFSKEYS OK - kvno 3 current"));

    // Behind afskeys' back: a random key, then the kvno moved back to 3.
    let o = realm.kadmin(&format!("cpw -randkey -e {KEYSALT_LIST} {principal}"));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("randomized"),
        "{o:?}"
    );
    let o = realm.kadmin(&format!("modprinc -kvno 3 {principal}"));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("modified"),
        "{o:?}"
    );

    let o = run(&["verify", "--kdc"]);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    let (out, err) = (common::stdout(&o), common::stderr(&o));
    for name in ["control", "fs1"] {
        assert!(
            out.lines()
                .any(|l| l.starts_with(name) && l.contains(" does not open;")),
            "{out}"
        );
        assert!(
            err.contains(&format!(
                "{name}: the KDC's ticket (kvno 3, enctype 18 (aes256-cts-hmac-sha1-96)) does not open"
            )),
            "{err}"
        );
    }
    let o = run(&["--json", "verify", "--kdc"]);
    assert_eq!(o.status.code(), Some(2));
    let v: Value = serde_json::from_str(&common::stdout(&o)).unwrap();
    validate("verify-kdc", &v);
    assert_eq!(v["ok"], false);
    assert_eq!(v["servers"][1]["opening"], "did_not_open");

    let o = run(&["check"]);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    let line = common::stdout(&o);
    assert!(
        line.starts_with("AFSKEYS CRITICAL - ticket proof: "),
        "{line}"
    );
    assert!(
        line.contains("control: ") && line.contains("fs1: "),
        "{line}"
    );

    // An enctype the KDC holds that no server has: CRITICAL too, naming it.
    let o = realm.kadmin(&format!(
        "cpw -randkey -e aes256-cts-hmac-sha1-96:normal,aes128-cts-hmac-sha1-96:normal,\
         camellia256-cts-cmac:normal {principal}"
    ));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("randomized"),
        "{o:?}"
    );
    let o = realm.kadmin(&format!("modprinc -kvno 3 {principal}"));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("modified"),
        "{o:?}"
    );
    let o = run(&["verify", "--kdc"]);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert!(
        common::stderr(&o).contains("fs1: lacks enctype 26"),
        "{}",
        common::stderr(&o)
    );
}

#[test]
fn the_file_backend_cannot_prove() {
    let d = common::confdir("file.test");
    common::ok(common::run(d.path(), &["rotate"], b""));
    let o = common::run(d.path(), &["verify", "--kdc"], b"");
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(
        common::stderr(&o).contains("gets no tickets to prove"),
        "{}",
        common::stderr(&o)
    );
}

//! Keytabs against the real tools, both directions, key for key: MIT `ktutil` makes a keytab;
//! `afskeys add --keytab` and `asetkey add` store identical KeyFileExt bytes; `afskeys keytab
//! convert` and OpenAFS's `akeyconvert` (which reads <confdir>/rxkad.keytab) store identical
//! bytes; and a keytab `afskeys keytab export` writes is read by MIT `klist -k -e -K` and by
//! `asetkey add` as the same keys.

mod common;
use common::*;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

const CELL: &str = "kt.example.com";
const PRINC: &str = "afs/kt.example.com@KT.EXAMPLE.COM";

/// A keytab from MIT ktutil: kvnos 4 and 5, aes256 and aes128, from passwords.
fn mit_keytab(path: &Path) {
    let mut script = String::new();
    for (kvno, pw) in [(4, "four-pw"), (5, "five-pw")] {
        for e in ["aes256-cts-hmac-sha1-96", "aes128-cts-hmac-sha1-96"] {
            script.push_str(&format!(
                "addent -password -p {PRINC} -k {kvno} -e {e}\n{pw}\n"
            ));
        }
    }
    script.push_str(&format!("wkt {}\nquit\n", path.display()));
    let mut c = std::process::Command::new("ktutil");
    c.env("KRB5_CONFIG", "/dev/null");
    ok(pipe(c, script.as_bytes()));
}

/// `klist -k -e -K` lines as (kvno, enctype name, hex key).
fn klist(path: &Path) -> Vec<(u32, String, String)> {
    let o = std::process::Command::new("klist")
        .env("KRB5_CONFIG", "/dev/null")
        .args(["-k", "-e", "-K"])
        .arg(path)
        .output()
        .unwrap();
    let text = ok(o);
    let mut v: Vec<(u32, String, String)> = text
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let kvno: u32 = l.split_whitespace().next()?.parse().ok()?;
            let enc = l.split('(').nth(1)?.split(')').next()?.to_string();
            let key = l.rsplit("(0x").next()?.trim_end_matches(')').to_string();
            Some((kvno, enc, key))
        })
        .collect();
    v.sort();
    v
}

#[test]
fn keytab_keys_match_asetkey_akeyconvert_and_klist() {
    if !have(&[
        "asetkey",
        "akeyconvert",
        "ktutil",
        "klist",
        "unshare",
        "nsenter",
    ]) {
        return;
    }
    let sb = AfsSandbox::new(CELL);
    let kt = sb.root.path().join("mit.keytab");
    mit_keytab(&kt);

    // asetkey add rxkad_krb5 <kvno> <enctype> <keytab> <princ>  vs  afskeys add --keytab
    for (kvno, e) in [(5, 18), (5, 17), (4, 18)] {
        ok(sb.sh(&format!(
            "asetkey add rxkad_krb5 {kvno} {e} {} {PRINC}",
            kt.display()
        )));
    }
    let ours = confdir(CELL);
    ok(run(
        ours.path(),
        &[
            "add",
            "--kvno",
            "5",
            "--type",
            "rxkad_krb5",
            "--keytab",
            kt.to_str().unwrap(),
            "--principal",
            PRINC,
        ],
        b"",
    ));
    ok(run(
        ours.path(),
        &[
            "add",
            "--kvno",
            "4",
            "--type",
            "rxkad_krb5",
            "--enctype",
            "18",
            "--keytab",
            kt.to_str().unwrap(),
            "--principal",
            PRINC,
        ],
        b"",
    ));
    let theirs = fs::read(sb.server_dir().join("KeyFileExt")).unwrap();
    assert_eq!(
        fs::read(ours.path().join("KeyFileExt")).unwrap(),
        theirs,
        "asetkey add vs afskeys add --keytab"
    );

    // akeyconvert (current kvno, then -all) vs afskeys keytab convert [--all]
    for all in [false, true] {
        let sb2 = AfsSandbox::new(CELL);
        fs::copy(&kt, sb2.server_dir().join("rxkad.keytab")).unwrap();
        ok(sb2.sh(if all {
            "akeyconvert -all"
        } else {
            "akeyconvert"
        }));
        let mine = confdir(CELL);
        fs::copy(&kt, mine.path().join("rxkad.keytab")).unwrap();
        let mut args = vec!["keytab", "convert"];
        if all {
            args.push("--all");
        }
        ok(run(mine.path(), &args, b""));
        assert_eq!(
            fs::read(mine.path().join("KeyFileExt")).unwrap(),
            fs::read(sb2.server_dir().join("KeyFileExt")).unwrap(),
            "akeyconvert{} vs afskeys keytab convert",
            if all { " -all" } else { "" }
        );
    }

    // export: klist reads back the same keys, and asetkey stores them identically.
    let exported = ours.path().join("out.keytab");
    ok(run(
        ours.path(),
        &[
            "keytab",
            "export",
            "--keytab",
            exported.to_str().unwrap(),
            "--principal",
            PRINC,
        ],
        b"",
    ));
    assert_eq!(
        fs::metadata(&exported).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // everything ktutil wrote but kvno 4's aes128 key, which was not added
    let from_ktutil: Vec<_> = klist(&kt)
        .into_iter()
        .filter(|(kvno, enc, _)| !(*kvno == 4 && enc == "aes128-cts-hmac-sha1-96"))
        .collect();
    // Two listings that are both empty would be equal: ktutil's keytab holds keys.
    assert!(from_ktutil.len() >= 2, "klist listed {from_ktutil:?}");
    assert_eq!(
        klist(&exported),
        from_ktutil,
        "klist of the exported keytab"
    );
    let sb3 = AfsSandbox::new(CELL);
    for (kvno, e) in [(5, 18), (5, 17), (4, 18)] {
        ok(sb3.sh(&format!(
            "asetkey add rxkad_krb5 {kvno} {e} {} {PRINC}",
            exported.display()
        )));
    }
    assert_eq!(
        fs::read(sb3.server_dir().join("KeyFileExt")).unwrap(),
        theirs,
        "asetkey from the exported keytab"
    );
    // export refuses to overwrite
    let o = run(
        ours.path(),
        &["keytab", "export", "--keytab", exported.to_str().unwrap()],
        b"",
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("already exists"), "{}", stderr(&o));
}

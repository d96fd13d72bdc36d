//! The built binary end to end: add, list, remove, string-to-key, exit codes, modes, backups,
//! compare-and-swap, and that no secret reaches stdout or stderr.

mod common;
use common::*;
use serde_json::Value;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::Command;

const CELL: &str = "test.example.com";

fn json(o: std::process::Output) -> Value {
    serde_json::from_str(&ok(o)).unwrap()
}

fn cksum_of(dir: &std::path::Path, kvno: i64) -> u64 {
    let v = json(run(dir, &["--json", "list"], b""));
    v["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kvno"] == kvno)
        .unwrap()["cksum"]
        .as_u64()
        .unwrap()
}

#[test]
fn add_list_remove_round_trip() {
    let d = confdir(CELL);
    let dir = d.path();
    ok(run(dir, &["add", "--kvno", "3", "--random"], b""));
    ok(run(
        dir,
        &["addkey", "--kvno", "4", "--password-stdin"],
        b"hunter2\n",
    ));
    ok(run(
        dir,
        &["add", "--kvno", "5", "--type", "rxkad_krb5", "--random"],
        b"",
    ));
    let v = json(run(dir, &["--json", "list"], b""));
    let ids: Vec<(i64, String, Value)> = v["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["kvno"].as_i64().unwrap(),
                k["type"].as_str().unwrap().into(),
                k["enctype"].clone(),
            )
        })
        .collect();
    assert_eq!(
        ids,
        vec![
            (3, "rxkad".into(), Value::Null),
            (4, "rxkad".into(), Value::Null),
            (5, "rxkad_krb5".into(), 17.into()),
            (5, "rxkad_krb5".into(), 18.into()),
        ]
    );
    // KeyFile holds exactly the two rxkad records in the compact layout.
    assert_eq!(fs::read(dir.join("KeyFile")).unwrap().len(), 4 + 2 * 12);
    // the password-derived key equals string-to-key for the cell in ThisCell
    let s2k = ok(run(dir, &["string-to-key"], b"hunter2\n"));
    let c = s2k.lines().nth(1).unwrap().strip_prefix("cksum ").unwrap();
    assert_eq!(c.parse::<u64>().unwrap(), cksum_of(dir, 4));

    ok(run(
        dir,
        &["removekey", "--kvno", "5", "--enctype", "17"],
        b"",
    ));
    ok(run(dir, &["remove", "--kvno", "3"], b""));
    let v = json(run(dir, &["--json", "list"], b""));
    assert_eq!(v["keys"].as_array().unwrap().len(), 2);
    let text = ok(run(dir, &["listkeys"], b""));
    assert!(text.starts_with("key 4 has cksum "), "{text}");
    assert!(text.ends_with(".\nAll done.\n"), "{text}");
}

#[test]
fn existing_kvno_refused_unless_replace() {
    let d = confdir(CELL);
    let dir = d.path();
    ok(run(dir, &["add", "--kvno", "3", "--random"], b""));
    let before = snapshot(dir);
    let o = run(dir, &["add", "--kvno", "3", "--random"], b"");
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("rxkad kvno 3 already present"),
        "{}",
        stderr(&o)
    );
    assert_eq!(snapshot(dir), before);
    let old = cksum_of(dir, 3);
    ok(run(
        dir,
        &["add", "--kvno", "3", "--random", "--replace"],
        b"",
    ));
    assert_ne!(cksum_of(dir, 3), old);
}

#[test]
fn if_cksum_is_compare_and_swap() {
    let d = confdir(CELL);
    let dir = d.path();
    ok(run(dir, &["add", "--kvno", "3", "--random"], b""));
    let c = cksum_of(dir, 3).to_string();
    let wrong = (cksum_of(dir, 3) ^ 1).to_string();
    let before = snapshot(dir);
    for args in [
        vec!["add", "--kvno", "3", "--random", "--if-cksum", &wrong],
        vec!["remove", "--kvno", "3", "--if-cksum", &wrong],
        vec!["add", "--kvno", "9", "--random", "--if-cksum", &c],
    ] {
        let o = run(dir, &args, b"");
        assert_eq!(o.status.code(), Some(3), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains("refused"), "{}", stderr(&o));
        assert_eq!(snapshot(dir), before, "{args:?} changed the files");
    }
    ok(run(
        dir,
        &["add", "--kvno", "3", "--random", "--if-cksum", &c],
        b"",
    ));
    let c2 = cksum_of(dir, 3).to_string();
    // the old checksum no longer matches: a second operator's stale view is refused
    let o = run(dir, &["remove", "--kvno", "3", "--if-cksum", &c], b"");
    assert_eq!(o.status.code(), Some(3));
    ok(run(dir, &["remove", "--kvno", "3", "--if-cksum", &c2], b""));
}

#[test]
fn ninth_rxkad_key_refused() {
    let d = confdir(CELL);
    let dir = d.path();
    for k in 1..=8 {
        ok(run(
            dir,
            &["add", "--kvno", &k.to_string(), "--random"],
            b"",
        ));
    }
    let before = snapshot(dir);
    let o = run(dir, &["add", "--kvno", "9", "--random"], b"");
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("9 rxkad keys, at most 8 allowed"),
        "{}",
        stderr(&o)
    );
    assert_eq!(snapshot(dir), before);
    // typed keys are not limited
    ok(run(
        dir,
        &["add", "--kvno", "9", "--type", "rxkad_krb5", "--random"],
        b"",
    ));
}

#[test]
fn files_are_0600_whatever_the_umask_and_cellservdb_is_bumped() {
    let d = confdir(CELL);
    let dir = d.path();
    let csdb = dir.join("CellServDB");
    let before = fs::metadata(&csdb).unwrap().mtime();
    let o = Command::new("sh")
        .env("AFSKEYS_NO_VLDB", "1")
        .env("AFSKEYS_SKIP_RUNNING_PROOF", "1")
        .arg("-c")
        .arg(format!(
            "umask 000; exec {} --confdir {} add --kvno 1 --random",
            env!("CARGO_BIN_EXE_afskeys"),
            dir.display()
        ))
        .output()
        .unwrap();
    ok(o);
    for f in ["KeyFile", "KeyFileExt"] {
        let m = fs::metadata(dir.join(f)).unwrap().permissions().mode() & 0o777;
        assert_eq!(m, 0o600, "{f}");
    }
    assert!(fs::metadata(&csdb).unwrap().mtime() > before);
    assert_eq!(fs::read(dir.join("KeyFileExt")).unwrap(), vec![0, 0, 0, 0]);
}

#[test]
fn backups_keep_the_previous_versions() {
    let d = confdir(CELL);
    let dir = d.path();
    ok(run(dir, &["add", "--kvno", "1", "--random"], b""));
    let first = fs::read(dir.join("KeyFile")).unwrap();
    ok(run(dir, &["add", "--kvno", "2", "--random"], b""));
    let b = dir.join(".afskeys-backup");
    let backups: Vec<_> = fs::read_dir(&b)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(backups.len(), 1, "{backups:?}");
    assert_eq!(fs::read(&backups[0]).unwrap(), first);
    assert_eq!(
        fs::metadata(&backups[0]).unwrap().permissions().mode() & 0o777,
        0o600
    );
    for k in 3..=8 {
        ok(run(
            dir,
            &["add", "--kvno", &k.to_string(), "--random"],
            b"",
        ));
    }
    for k in 1..=8 {
        ok(run(dir, &["remove", "--kvno", &k.to_string()], b""));
    }
    let kf = fs::read_dir(&b)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_str()
                .unwrap()
                .starts_with("KeyFile.")
        })
        .count();
    assert_eq!(kf, afskeys::store::MAX_BACKUPS);
}

#[test]
fn secrets_stay_off_stdout_and_stderr() {
    let d = confdir(CELL);
    let dir = d.path();
    let pw = "correct horse battery";
    for args in [
        vec!["add", "--kvno", "1", "--password-stdin"],
        vec![
            "add",
            "--kvno",
            "2",
            "--type",
            "rxkad_krb5",
            "--password-stdin",
        ],
    ] {
        let o = run(dir, &args, format!("{pw}\n").as_bytes());
        assert!(o.status.success(), "{}", stderr(&o));
        let all = format!("{}{}", stdout(&o), stderr(&o));
        assert!(!all.contains(pw));
    }
    let o = run(
        dir,
        &["add", "--kvno", "3", "--key-hex-stdin"],
        b"80b6a7cd7a9dadb6\n",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let keys = json(run(dir, &["--json", "list", "--showkey"], b""));
    let hexes: Vec<String> = keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["key"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(hexes.len(), 4);
    for args in [
        vec!["list"],
        vec!["listkeys"],
        vec!["--json", "list"],
        vec!["list", "--format", "bos"],
        vec!["remove", "--kvno", "1"],
    ] {
        let o = run(dir, &args, b"");
        let all = format!("{}{}", stdout(&o), stderr(&o));
        for h in &hexes {
            assert!(!all.contains(h.as_str()), "{args:?} printed a key");
        }
        assert!(
            !all.contains("\\200\\266"),
            "{args:?} printed octal key bytes"
        );
    }
}

#[test]
fn bad_key_input_refused() {
    let d = confdir(CELL);
    let dir = d.path();
    let cases: &[(&[&str], &[u8], &str)] = &[
        (
            &["add", "--kvno", "1", "--key-hex-stdin"],
            b"0101010101010101\n",
            "weak or semi-weak",
        ),
        (
            &["add", "--kvno", "1", "--key-hex-stdin"],
            b"0000000000000000\n",
            "bad parity",
        ),
        (
            &["add", "--kvno", "1", "--key-hex-stdin"],
            b"80b6a7cd\n",
            "8 bytes (16 hex digits), 4 given",
        ),
        (
            &["add", "--kvno", "1", "--key-hex-stdin"],
            b"zz23456789abcdef\n",
            "not hex",
        ),
        (
            &["add", "--kvno", "1", "--password-stdin"],
            b"",
            "no password on stdin",
        ),
        (&["add", "--kvno", "256", "--random"], b"", "outside 0-255"),
        (
            &[
                "add",
                "--kvno",
                "1",
                "--type",
                "rxkad_krb5",
                "--enctype",
                "18",
                "--key-hex-stdin",
            ],
            b"00112233445566778899aabbccddeeff\n",
            "takes a 32-byte key, 16 bytes given",
        ),
        (
            &[
                "add",
                "--kvno",
                "1",
                "--type",
                "rxkad_krb5",
                "--key-hex-stdin",
            ],
            b"00112233445566778899aabbccddeeff\n",
            "exactly one --enctype",
        ),
        (
            &["add", "--kvno", "1", "--enctype", "18", "--random"],
            b"",
            "single DES",
        ),
        (&["remove", "--kvno", "7"], b"", "no key with kvno 7"),
    ];
    ok(run(dir, &["add", "--kvno", "2", "--random"], b""));
    let before = snapshot(dir);
    for (args, input, msg) in cases {
        let o = run(dir, args, input);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(msg), "{args:?}: {}", stderr(&o));
        assert_eq!(snapshot(dir), before, "{args:?} changed the files");
    }
}

#[test]
fn usage_errors_exit_2() {
    let d = confdir(CELL);
    for args in [
        vec!["add", "--kvno", "1"],                         // no key source
        vec!["add", "--kvno", "1", "--random", "--prompt"], // two sources
        vec!["add", "--kvno", "1", "--key-hex", "0123"],    // no option takes key material
        vec!["add", "--kvno", "1", "--random", "--type", "des"],
        vec!["list", "--format", "xml"],
        vec!["list", "--format", "asetkey"], // prints key bytes: only with --showkey
    ] {
        let o = run(d.path(), &args, b"");
        assert_eq!(o.status.code(), Some(2), "{args:?}");
    }
}

#[test]
fn missing_cell_is_explained() {
    let d = tempfile::tempdir().unwrap();
    let o = run(
        d.path(),
        &["add", "--kvno", "1", "--password-stdin"],
        b"pw\n",
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("ThisCell"), "{}", stderr(&o));
    assert!(stderr(&o).contains("--cell"), "{}", stderr(&o));
    // an empty conf dir lists as no keys
    let t = ok(run(d.path(), &["listkeys"], b""));
    assert_eq!(t, "All done.\n");
}

/// `--prompt` reads the terminal (a pty made by `script`), asks twice, and refuses a mismatch.
#[test]
fn prompt_asks_twice_on_the_terminal() {
    if !have(&["script"]) {
        return;
    }
    let d = confdir(CELL);
    let dir = d.path();
    let on_tty = |kvno: &str, input: &[u8]| {
        let mut c = Command::new("script");
        c.args(["-qec"])
            .arg(format!(
                "{} --confdir {} add --kvno {kvno} --prompt",
                env!("CARGO_BIN_EXE_afskeys"),
                dir.display()
            ))
            .arg("/dev/null");
        pipe(c, input)
    };
    let o = on_tty("1", b"sekrit\nsekrit\n");
    assert!(o.status.success(), "{}", stdout(&o));
    assert!(
        stdout(&o).contains("Retype new password:"),
        "{}",
        stdout(&o)
    );
    let o = on_tty("2", b"sekrit\nother\n");
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains("the two passwords differ"),
        "{}",
        stdout(&o)
    );
    let s2k = ok(run(dir, &["string-to-key"], b"sekrit\n"));
    let c: u64 = s2k.lines().nth(1).unwrap()["cksum ".len()..]
        .parse()
        .unwrap();
    assert_eq!(c, cksum_of(dir, 1));
    assert!(ok(run(dir, &["listkeys"], b"")).starts_with("key 1 has cksum"));
}

#[test]
fn an_unwritable_audit_log_stops_the_change_before_it_is_made() {
    let d = confdir(CELL);
    let dir = d.path();
    let logdir = dir.join("audit-is-a-dir");
    fs::create_dir(&logdir).unwrap();
    fs::write(
        dir.join("afskeys.toml"),
        format!("[audit]\npath = \"{}\"\n", logdir.display()),
    )
    .unwrap();
    let before = snapshot(dir);
    for args in [vec!["add", "--kvno", "9", "--random"], vec!["rotate"]] {
        let o = run(dir, &args, b"");
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        assert!(stderr(&o).contains("cannot open"), "{}", stderr(&o));
        assert!(stderr(&o).contains("nothing was changed"), "{}", stderr(&o));
        assert_eq!(snapshot(dir), before, "{args:?} changed the files");
    }
}

//! Issue 11, class 1 at its root: a file auth DB that is missing is "no entry" only in a cell
//! that plainly has none yet. A cell adopted with `authdb init` only (nothing rotated, so no
//! rotation in the journal), or one whose `[authdb] path` names a missing file while the
//! KeyFile holds keys, has an afs entry somewhere: every command that needs the entry stops,
//! naming the file and why, and nothing on disk changes.

mod common;
use common::*;
use std::fs;
use std::path::Path;

const CELL: &str = "authdb.example.com";

/// Every file of a dir but the lock files: name and bytes.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_file())
        .map(|e| {
            (
                e.file_name().into_string().unwrap(),
                fs::read(e.path()).unwrap(),
            )
        })
        .filter(|(n, _)| !n.ends_with(".lock"))
        .collect();
    v.sort();
    v
}

/// Keys 3 and 4 added by hand (as after `asetkey`), `[authdb] path` set to `db`.
fn keyed_cell(db: &str) -> tempfile::TempDir {
    let d = confdir(CELL);
    let conf = format!("token_lifetime = \"25h\"\n[authdb]\npath = \"{db}\"\n");
    fs::write(d.path().join("afskeys.toml"), conf).unwrap();
    for k in ["3", "4"] {
        ok(run(
            d.path(),
            &["add", "--kvno", k, "--type", "rxkad_krb5", "--random"],
            b"",
        ));
    }
    d
}

/// The commands that need the afs entry, each with the exit code it must give.
const NEEDY: &[(&[&str], i32)] = &[
    (&["remove", "--kvno", "4"], 1),
    (&["remove", "--kvno", "3"], 1),
    (&["prune"], 1),
    (&["rotate"], 1),
    (&["authdb", "show"], 1),
    (&["authdb", "set", "--kvno", "4"], 1),
    (
        &[
            "add",
            "--kvno",
            "4",
            "--type",
            "rxkad_krb5",
            "--random",
            "--replace",
        ],
        1,
    ),
    (&["check"], 3),
];

#[test]
fn a_named_auth_db_that_is_missing_in_a_cell_with_keys_is_an_error() {
    let d = keyed_cell("afskeys-authdb.jsno");
    let path = d.path().join("afskeys-authdb.jsno");
    let before = files(d.path());
    for (args, code) in NEEDY {
        let o = run(d.path(), args, b"");
        let out = format!("{}{}", stdout(&o), stderr(&o));
        assert_eq!(o.status.code(), Some(*code), "{args:?}: {out}");
        assert!(
            out.contains(&format!(
                "the auth DB {} does not exist, but the key files in {} hold kvno 3, 4",
                path.display(),
                d.path().display()
            )),
            "{args:?}: {out}"
        );
        assert!(out.contains("check `[authdb] path`"), "{args:?}: {out}");
        assert_eq!(files(d.path()), before, "{args:?}");
    }
    // without --replace, a present key is refused for what it is
    let o = run(
        d.path(),
        &["add", "--kvno", "4", "--type", "rxkad_krb5", "--random"],
        b"",
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("already present"), "{}", stderr(&o));
    assert_eq!(files(d.path()), before);
    // a new kvno needs no entry: adding it still works
    ok(run(d.path(), &["add", "--kvno", "5", "--random"], b""));
    // adoption is the way out, and then the current key is protected
    fs::remove_file(d.path().join("KeyFile")).unwrap();
    ok(run(d.path(), &["authdb", "init", "--kvno", "4"], b""));
    assert!(path.exists());
    let o = run(d.path(), &["remove", "--kvno", "4"], b"");
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("kvno 4 is the afs entry's current key"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn an_unreadable_key_file_leaves_a_missing_auth_db_undecided() {
    let d = keyed_cell("afskeys-authdb.jsno");
    fs::write(d.path().join("KeyFileExt"), b"garbage").unwrap();
    let o = run(d.path(), &["authdb", "show"], b"");
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("does not exist, and the key files in"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_cell_adopted_with_authdb_init_only_never_reads_a_lost_auth_db_as_no_entry() {
    // default path, no `[authdb]` section: the journal records the adoption
    let d = confdir(CELL);
    fs::write(d.path().join("afskeys.toml"), "token_lifetime = \"25h\"\n").unwrap();
    for k in ["3", "4"] {
        ok(run(
            d.path(),
            &["add", "--kvno", k, "--type", "rxkad_krb5", "--random"],
            b"",
        ));
    }
    ok(run(d.path(), &["authdb", "init"], b""));
    let journal = fs::read_to_string(d.path().join("afskeys-state.json")).unwrap();
    assert!(journal.contains("\"adopted\""), "{journal}");
    fs::remove_file(d.path().join("afskeys-authdb.json")).unwrap();
    let before = files(d.path());
    for (args, _) in &NEEDY[..4] {
        let o = run(d.path(), args, b"");
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains(
                "has no afs entry, but the journal says the cell has one (`afskeys authdb` \
                 created it at"
            ),
            "{args:?}: {}",
            stderr(&o)
        );
        assert_eq!(files(d.path()), before, "{args:?}");
    }
}

#[test]
fn a_new_cell_and_its_first_rotation_still_see_no_entry() {
    // no keys at all: a named file that is missing is "no entry yet"
    let d = confdir(CELL);
    let conf = "token_lifetime = \"25h\"\n[authdb]\npath = \"db.json\"\n";
    fs::write(d.path().join("afskeys.toml"), conf).unwrap();
    let o = run(d.path(), &["authdb", "show"], b"");
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("has no afs entry (run `afskeys authdb init`"),
        "{}",
        stderr(&o)
    );
    // a first rotation stopped after adding its key: its key is the only one, and resume
    // (and status) still see a cell without an entry yet
    let fs1 = d.path().join("../fs1-authdb-first");
    let _ = fs::remove_dir_all(&fs1);
    fs::create_dir(&fs1).unwrap();
    fs::set_permissions(&fs1, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let conf = format!(
        "{conf}[[servers]]\nname = \"fs1\"\nconfdir = \"{}\"\n",
        fs1.display()
    );
    fs::write(d.path().join("afskeys.toml"), conf).unwrap();
    let o = run(d.path(), &["rotate"], b"");
    assert_ne!(o.status.code(), Some(0), "{}", stderr(&o));
    fs::set_permissions(&fs1, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    ok(run(d.path(), &["status"], b""));
    ok(run(d.path(), &["rotate", "--resume"], b""));
    assert!(d.path().join("db.json").exists());
    fs::remove_dir_all(&fs1).unwrap();
}

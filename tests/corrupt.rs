//! Every class of corrupt key file in fixtures/corrupt/: each command that reads the conf
//! dir fails with exit 1 and the exact error line naming the file, and nothing changes.

mod common;
use common::*;
use std::fs;
use std::path::Path;

/// (fixture, the problem as printed after "<path>: corrupt: ")
const CASES: &[(&str, &str)] = &[
    ("KeyFile.empty", "empty file (0 bytes); a key file with no keys is the 4 bytes 00 00 00 00"),
    ("KeyFile.truncated-count", "truncated: 4 bytes needed for the key count at offset 0, file is 2 bytes"),
    ("KeyFile.truncated-record", "truncated: 12 bytes needed for a key record at offset 16, file is 22 bytes"),
    ("KeyFile.count-negative", "key count -1 is negative"),
    ("KeyFile.count-too-large", "key count 9 is too large: 8 keys at most"),
    ("KeyFile.duplicate-kvno", "record at offset 16: duplicate rxkad kvno 3 (it appears twice)"),
    ("KeyFile.kvno-out-of-range", "record at offset 4: rxkad kvno 256 is outside 0-255 (an rxkad ticket carries its kvno in one byte)"),
    ("KeyFile.trailing-garbage", "trailing data after the last key: a non-zero byte at offset 18, file is 22 bytes"),
    ("KeyFileExt.empty", "empty file (0 bytes); a key file with no keys is the 4 bytes 00 00 00 00"),
    ("KeyFileExt.count-negative", "key count -5 is negative"),
    ("KeyFileExt.count-too-large", "key count 1000 is too large for a file of 40 bytes"),
    ("KeyFileExt.meta-length-short", "record at offset 4: meta length 12 is below 16"),
    ("KeyFileExt.key-length-wrong", "record at offset 4: rxkad_krb5 kvno 5 enctype 18 (aes256-cts-hmac-sha1-96): key is 16 bytes, 32 expected for its enctype"),
    ("KeyFileExt.truncated-key", "truncated: 32 bytes needed for key bytes at offset 24, file is 49 bytes"),
    ("KeyFileExt.duplicate", "record at offset 40: duplicate rxkad_krb5 kvno 5 enctype 17 (aes128-cts-hmac-sha1-96) (it appears twice)"),
    ("KeyFileExt.rxkad-in-ext", "record at offset 4: an rxkad key in KeyFileExt (rxkad keys belong in KeyFile)"),
    ("KeyFileExt.unknown-type", "record at offset 4: unknown key type 9"),
    ("KeyFileExt.negative-key-length", "record at offset 4: key length -1 is negative"),
    ("KeyFileExt.trailing-garbage", "trailing data after the last key: a non-zero byte at offset 40, file is 41 bytes"),
];

fn fixtures() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/corrupt"))
}

#[test]
fn every_fixture_has_a_case() {
    let mut names: Vec<String> = fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("KeyFile"))
        .collect();
    names.sort();
    let mut cased: Vec<String> = CASES.iter().map(|c| c.0.to_string()).collect();
    cased.sort();
    assert_eq!(names, cased);
}

#[test]
fn corrupt_files_are_refused_by_name_and_left_alone() {
    for (fixture, problem) in CASES {
        let d = confdir("corrupt.example.com");
        let dir = d.path();
        // A good KeyFile beside a corrupt KeyFileExt, and the reverse.
        ok(run(dir, &["add", "--kvno", "1", "--random"], b""));
        let target = fixture.split('.').next().unwrap();
        fs::copy(fixtures().join(fixture), dir.join(target)).unwrap();
        let before = snapshot(dir);
        let expected = format!(
            "afskeys: {}: corrupt: {problem}\n",
            dir.join(target).display()
        );
        for args in [
            vec!["list"],
            vec!["listkeys"],
            vec!["--json", "list"],
            vec!["add", "--kvno", "2", "--random"],
            vec!["add", "--kvno", "1", "--random", "--replace"],
            vec!["remove", "--kvno", "1"],
        ] {
            let o = run(dir, &args, b"");
            assert_eq!(o.status.code(), Some(1), "{fixture} {args:?}");
            assert_eq!(stderr(&o), expected, "{fixture} {args:?}");
            assert!(o.stdout.is_empty(), "{fixture} {args:?}");
            assert_eq!(snapshot(dir), before, "{fixture} {args:?} changed the dir");
        }
    }
}

#[test]
fn old_fixed_layout_is_read_and_rewritten_compact() {
    let d = confdir("old.example.com");
    let dir = d.path();
    let mut old = vec![0, 0, 0, 1, 0, 0, 0, 3];
    old.extend_from_slice(&[0x80, 0xb6, 0xa7, 0xcd, 0x7a, 0x9d, 0xad, 0xb6]);
    old.resize(100, 0);
    fs::write(dir.join("KeyFile"), &old).unwrap();
    assert_eq!(
        ok(run(dir, &["listkeys"], b"")).lines().next(),
        Some("key 3 has cksum 1692570754")
    );
    ok(run(dir, &["add", "--kvno", "4", "--random"], b""));
    assert_eq!(fs::read(dir.join("KeyFile")).unwrap().len(), 4 + 2 * 12);
}

#[test]
fn unsafe_places_are_refused() {
    use std::os::unix::fs::{symlink, PermissionsExt};
    // a KeyFile that is a symlink
    let d = confdir("unsafe.example.com");
    let dir = d.path();
    let elsewhere = tempfile::tempdir().unwrap();
    fs::write(elsewhere.path().join("target"), [0, 0, 0, 0]).unwrap();
    symlink(elsewhere.path().join("target"), dir.join("KeyFile")).unwrap();
    let o = run(dir, &["add", "--kvno", "1", "--random"], b"");
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("KeyFile: is a symbolic link"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        fs::read(elsewhere.path().join("target")).unwrap(),
        [0, 0, 0, 0]
    );
    fs::remove_file(dir.join("KeyFile")).unwrap();

    // a directory where the KeyFile should be
    fs::create_dir(dir.join("KeyFile")).unwrap();
    let o = run(dir, &["list"], b"");
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("KeyFile: is not a regular file"),
        "{}",
        stderr(&o)
    );
    fs::remove_dir(dir.join("KeyFile")).unwrap();

    // a conf dir others can write to
    fs::set_permissions(dir, fs::Permissions::from_mode(0o777)).unwrap();
    let before = snapshot(dir);
    let o = run(dir, &["add", "--kvno", "1", "--random"], b"");
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("conf dir has mode 0777"),
        "{}",
        stderr(&o)
    );
    assert_eq!(snapshot(dir), before);
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).unwrap();

    // a conf dir owned by another (non-root) user, when we are root
    if running_as_root() {
        std::os::unix::fs::chown(dir, Some(4242), None).unwrap();
        let o = run(dir, &["add", "--kvno", "1", "--random"], b"");
        assert_eq!(o.status.code(), Some(1));
        assert!(
            stderr(&o).contains("conf dir is owned by uid 4242, not root"),
            "{}",
            stderr(&o)
        );
        assert_eq!(snapshot(dir), before);
        std::os::unix::fs::chown(dir, Some(0), None).unwrap();
    }

    // a KeyFile readable by others: read with a warning, rewritten 0600
    ok(run(dir, &["add", "--kvno", "1", "--random"], b""));
    fs::set_permissions(dir.join("KeyFile"), fs::Permissions::from_mode(0o644)).unwrap();
    let o = run(dir, &["list"], b"");
    assert!(o.status.success());
    assert!(
        stderr(&o).contains("mode 0644 lets other users read the keys"),
        "{}",
        stderr(&o)
    );
    ok(run(dir, &["add", "--kvno", "2", "--random"], b""));
    let m = fs::metadata(dir.join("KeyFile"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(m & 0o777, 0o600);
}

/// Root can chown; the test of a conf dir owned by someone else needs it.
fn running_as_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}

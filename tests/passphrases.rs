//! A passphrase that other tools would read differently from afskeys is refused at every
//! way in (issue "Races, hangs and lies", item 11): stdin for `add`, `rotate` and
//! `string-to-key` (the terminal and the kernel keyring go through the same check in
//! `ops::passphrase`), naming the problem, exit 3, and nothing changed.

mod common;
use common::*;
use std::fs;

const CELL: &str = "pw.example.com";

/// Every file of a dir but the lock files, with its bytes.
fn files(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file() && !p.to_string_lossy().ends_with(".lock"))
        .map(|p| (p.display().to_string(), fs::read(&p).unwrap()))
        .collect();
    v.sort();
    v
}

#[test]
fn passphrases_other_tools_would_read_differently_are_refused() {
    let d = confdir(CELL);
    fs::write(d.path().join("afskeys.toml"), "token_lifetime = \"25h\"\n").unwrap();
    ok(run(d.path(), &["rotate"], b""));
    let before = files(d.path());
    let cases: [(&[u8], &str); 5] = [
        (b"ab\0cd\n", "holds a NUL byte"),
        (b"secret\r\n", "holds a line break (CR or LF)"),
        (b"se\x7fcret\n", "holds the control character 0x7f"),
        (b"se\x1bcret\n", "holds the control character 0x1b"),
        (b"caf\xe9\n", "is not UTF-8"),
    ];
    for (input, problem) in cases {
        for args in [
            &["add", "--kvno", "7", "--password-stdin"][..],
            &["rotate", "--password-stdin"],
            &["string-to-key", "--cell", CELL],
        ] {
            let o = run(d.path(), args, input);
            let err = stderr(&o);
            assert_eq!(o.status.code(), Some(3), "{args:?} {input:?}: {err}");
            assert!(
                err.contains(&format!("the password {problem}")),
                "{args:?} {input:?}: {err}"
            );
        }
    }
    let after = files(d.path());
    assert_eq!(before, after, "something changed");
    // A plain one (a tab and non-ASCII letters are fine) still works.
    let o = run(
        d.path(),
        &["string-to-key", "--cell", CELL],
        "pa\tsswörd\n".as_bytes(),
    );
    ok(o);
}

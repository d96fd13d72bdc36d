//! Command lines from the OpenAFS documentation (bos addkey / listkeys / removekey), typed
//! as an AFS administrator types them, run against afskeys: single-dash options, unique
//! prefixes, the positional server, -localauth/-noauth, -cell, and several kvnos at once.

mod common;
use common::*;
use std::fs;
use std::process::Command;

const CELL: &str = "example.com";

/// A control machine plus a server named as in the docs' examples.
fn cell() -> (tempfile::TempDir, tempfile::TempDir) {
    let control = confdir(CELL);
    let fs1 = confdir(CELL);
    fs::write(
        control.path().join("afskeys.toml"),
        format!(
            "[[servers]]\nname = \"fs1.example.com\"\nconfdir = \"{}\"\n",
            fs1.path().display()
        ),
    )
    .unwrap();
    (control, fs1)
}

/// Run a bos-style line with `bos` replaced by afskeys.
fn bos_line(dir: &std::path::Path, line: &str, stdin: &[u8]) -> std::process::Output {
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(words[0], "bos");
    let mut c = afskeys();
    c.env("AFSKEYS_CONFDIR", dir).args(&words[1..]);
    pipe(c, stdin)
}

#[test]
fn documented_bos_lines_work() {
    let (control, fs1) = cell();
    let dir = control.path();
    // bos addkey prompts for the key (twice) when -key is left out: here through a pty.
    let line = format!(
        "{} addkey -server fs1.example.com -kvno 2 -cell {CELL}",
        env!("CARGO_BIN_EXE_afskeys")
    );
    let mut c = Command::new("script");
    c.env("AFSKEYS_CONFDIR", dir)
        .args(["-qec", &line, "/dev/null"]);
    let o = pipe(c, b"Secret99\nSecret99\n");
    assert!(o.status.success(), "{}", stdout(&o));
    assert!(stdout(&o).contains("Retype"), "{}", stdout(&o));
    assert!(
        stdout(&o).contains("emergency edit"),
        "warned about upclientetc: {}",
        stdout(&o)
    );
    // the key is on fs1 only (an edit of that server's own KeyFile)
    let fs1_keys = ok(run(fs1.path(), &["listkeys"], b""));
    assert!(fs1_keys.starts_with("key 2 has cksum "), "{fs1_keys}");
    assert_eq!(ok(run(dir, &["listkeys"], b"")), "All done.\n");
    let s2k = ok(run(dir, &["string-to-key", "--cell", CELL], b"Secret99\n"));
    let cksum = s2k.lines().nth(1).unwrap().strip_prefix("cksum ").unwrap();
    assert!(
        fs1_keys.contains(&format!("key 2 has cksum {cksum}")),
        "{fs1_keys} vs {cksum}"
    );

    // bos listkeys -server <machine> [-showkey] [-cell] [-noauth] [-localauth]
    for line in [
        "bos listkeys -server fs1.example.com",
        "bos listkeys fs1.example.com",
        "bos listkeys -server fs1.example.com -localauth",
        "bos listkeys -server fs1.example.com -cell example.com -noauth",
        "bos listk -se fs1.example.com",
    ] {
        let o = bos_line(dir, line, b"");
        assert!(o.status.success(), "{line}: {}", stderr(&o));
        assert_eq!(stdout(&o), fs1_keys, "{line}");
    }
    let o = bos_line(dir, "bos listkeys -server fs1.example.com -localauth", b"");
    assert!(
        stderr(&o).contains("-localauth is not needed"),
        "{}",
        stderr(&o)
    );
    let o = bos_line(dir, "bos listkeys -server fs1.example.com -showkey", b"");
    assert!(stdout(&o).starts_with("key 2 is '\\"), "{}", stdout(&o));

    // bos removekey -server <machine> -kvno <key version number>+
    ok(run(fs1.path(), &["add", "--kvno", "1", "--random"], b""));
    ok(run(fs1.path(), &["add", "--kvno", "3", "--random"], b""));
    let o = bos_line(dir, "bos removekey -server fs1.example.com -kvno 1 2", b"");
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(ok(run(fs1.path(), &["listkeys"], b"")).starts_with("key 3 has cksum"));

    // An unknown server is named as such, with the configured ones.
    let o = bos_line(dir, "bos listkeys -server fs9.example.com", b"");
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("unknown server \"fs9.example.com\""),
        "{}",
        stderr(&o)
    );
    assert!(
        stderr(&o).contains("control, fs1.example.com"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn ambiguous_prefixes_and_argv_keys_are_usage_errors() {
    let (control, _fs1) = cell();
    let o = bos_line(
        control.path(),
        "bos addkey -server fs1.example.com -kvno 4 -pr",
        b"",
    );
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o),
        "afskeys: ambiguous option -pr: it could be -principal, -prompt\n"
    );
    let o = bos_line(
        control.path(),
        "bos addkey -server fs1.example.com -key s3cret -kvno 4",
        b"",
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("-key puts the key on the command line"),
        "{}",
        stderr(&o)
    );
    // and no key source with no terminal: a usage error, nothing written
    let o = bos_line(
        control.path(),
        "bos addkey -server fs1.example.com -kvno 4",
        b"",
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("where does the key come from?"),
        "{}",
        stderr(&o)
    );
}

//! Interop with the real OpenAFS 1.8.9 tools (asetkey, bosserver + bos, ktutil for keytabs),
//! each test in its own namespaced sandbox. Missing tools fail the suite when
//! AFSKEYS_REQUIRE_INTEROP is set (bin/test sets it), and skip otherwise.

mod common;
use common::*;
use std::fs;

const CELL: &str = "interop.example.com";
const OPENAFS: &[&str] = &[
    "asetkey",
    "bosserver",
    "bos",
    "unshare",
    "nsenter",
    "ktutil",
];

/// Eight rxkad keys and typed aes128/aes256 keys at several kvnos, written by afskeys.
fn populate_with_afskeys(dir: &std::path::Path) {
    for kvno in [1, 3, 4, 7, 10, 20, 100, 255] {
        ok(run(
            dir,
            &["add", "--kvno", &kvno.to_string(), "--random"],
            b"",
        ));
    }
    for kvno in [5, 6, 300] {
        ok(run(
            dir,
            &[
                "add",
                "--kvno",
                &kvno.to_string(),
                "--type",
                "rxkad_krb5",
                "--random",
            ],
            b"",
        ));
    }
    ok(run(
        dir,
        &[
            "add",
            "--kvno",
            "8",
            "--type",
            "rxkad_krb5",
            "--enctype",
            "aes128-cts-hmac-sha1-96",
            "--password-stdin",
        ],
        b"a typed password\n",
    ));
}

#[test]
fn asetkey_lists_what_afskeys_wrote() {
    if !have(OPENAFS) {
        return;
    }
    let sb = AfsSandbox::new(CELL);
    let dir = sb.server_dir();
    populate_with_afskeys(&dir);
    let theirs = ok(sb.sh("asetkey list"));
    let ours = ok(run(
        &dir,
        &["list", "--format", "asetkey", "--showkey"],
        b"",
    ));
    assert_eq!(theirs, ours);
    assert_eq!(
        theirs.lines().filter(|l| l.starts_with("rxkad\t")).count(),
        8
    );
    assert_eq!(
        theirs
            .lines()
            .filter(|l| l.starts_with("rxkad_krb5\t"))
            .count(),
        7
    );
    assert!(theirs.contains("kvno  300 enctype 18"), "{theirs}");
}

/// Add a typed key with asetkey from an MIT keytab made by ktutil from a password.
fn asetkey_add_from_keytab(sb: &AfsSandbox, kvno: u32, enctype: &str, number: u32, pw: &str) {
    let kt = sb.root.path().join(format!("k{kvno}-{number}.keytab"));
    let princ = format!("afs/{CELL}@{}", CELL.to_uppercase());
    let script = format!(
        "printf 'addent -password -p {princ} -k {kvno} -e {enctype}\\n{pw}\\nwkt {kt}\\nquit\\n' \
         | KRB5_CONFIG=/dev/null ktutil >/dev/null && asetkey add rxkad_krb5 {kvno} {number} {kt} {princ}",
        kt = kt.display()
    );
    ok(sb.sh(&script));
}

#[test]
fn afskeys_lists_what_asetkey_wrote() {
    if !have(OPENAFS) {
        return;
    }
    let sb = AfsSandbox::new(CELL);
    ok(sb.sh(
        "asetkey add 3 80b6a7cd7a9dadb6 && asetkey add 1 0123456789abcdef && \
         asetkey add 9 fedcba9876543210 && asetkey add 2 0101010101010101",
    ));
    asetkey_add_from_keytab(&sb, 5, "aes256-cts-hmac-sha1-96", 18, "pw-five");
    asetkey_add_from_keytab(&sb, 5, "aes128-cts-hmac-sha1-96", 17, "pw-five");
    asetkey_add_from_keytab(&sb, 12, "aes256-cts-hmac-sha1-96", 18, "pw-twelve");
    let dir = sb.server_dir();
    let theirs = ok(sb.sh("asetkey list"));
    let ours = ok(run(
        &dir,
        &["list", "--format", "asetkey", "--showkey"],
        b"",
    ));
    assert_eq!(theirs, ours);
    assert!(ours.contains("rxkad_krb5\tkvno   12 enctype 18"), "{ours}");

    // MIT's ktutil and afskeys derive the same RFC 3962 keys from the same password.
    let o = run(
        &dir,
        &["string-to-key", "--cell", CELL, "--enctype", "18"],
        b"pw-five\n",
    );
    let derived = ok(o);
    let hex = derived
        .lines()
        .next()
        .unwrap()
        .strip_prefix("key ")
        .unwrap()
        .to_string();
    assert!(
        ours.contains(&format!("kvno    5 enctype 18; key is: {hex}")),
        "{ours}\n{hex}"
    );
}

#[test]
fn bos_listkeys_matches_afskeys_listkeys_under_a_running_bosserver() {
    if !have(OPENAFS) {
        return;
    }
    let mut sb = AfsSandbox::new(CELL);
    let dir = sb.server_dir();
    populate_with_afskeys(&dir);
    // A weak key, as a real cell might hold one: listed as "key version is N".
    ok(run(&dir, &["remove", "--kvno", "255"], b""));
    ok(sb.sh("asetkey add 2 0101010101010101"));
    sb.start_bosserver();
    let bos = |showkey: bool| {
        ok(sb.sh(&format!(
            "bos listkeys -server localhost -noauth{}",
            if showkey { " -showkey" } else { "" }
        )))
    };
    assert_eq!(bos(false), ok(run(&dir, &["listkeys"], b"")));
    assert_eq!(bos(true), ok(run(&dir, &["listkeys", "--showkey"], b"")));
    assert!(bos(false).contains("key version is 2"));

    // Change the file under the running bosserver. A server looks at CellServDB's mtime at
    // most once a second, so it may answer from its cache for up to a second: poll.
    ok(run(&dir, &["remove", "--kvno", "1"], b""));
    ok(run(&dir, &["add", "--kvno", "11", "--random"], b""));
    let ours = ok(run(&dir, &["listkeys"], b""));
    let waited = wait_for(|| bos(false) == ours);
    assert!(
        ours.contains("key 11 has cksum") && !ours.contains("key 1 has"),
        "{ours}"
    );
    // A second change right after (same second) is noticed too: the CellServDB mtime
    // always moves to a new whole second.
    ok(run(&dir, &["remove", "--kvno", "11"], b""));
    let ours = ok(run(&dir, &["listkeys"], b""));
    let waited2 = wait_for(|| bos(false) == ours);
    eprintln!("bosserver noticed the changes after {waited:?} and {waited2:?}");
    // A change to KeyFileExt alone: "Keys last changed" still agrees.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    ok(run(
        &dir,
        &["add", "--kvno", "40", "--type", "rxkad_krb5", "--random"],
        b"",
    ));
    let ours = ok(run(&dir, &["listkeys"], b""));
    wait_for(|| bos(false) == ours);
}

/// Poll `f` for up to 5 s (a server re-reads at most once a second); panic if never true.
fn wait_for(mut f: impl FnMut() -> bool) -> std::time::Duration {
    let start = std::time::Instant::now();
    while !f() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(5),
            "bosserver never served the new keys"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    start.elapsed()
}

/// The key bytes of `key N is '\ooo...'` from `bos listkeys -showkey`, as hex.
fn showkey_hex(text: &str, kvno: u32) -> String {
    let prefix = format!("key {kvno} is '");
    let line = text
        .lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no kvno {kvno} in {text}"));
    let oct = line[prefix.len()..].trim_end_matches('\'');
    oct.split('\\')
        .filter(|s| !s.is_empty())
        .map(|o| format!("{:02x}", u8::from_str_radix(o, 8).unwrap()))
        .collect()
}

#[test]
fn bos_addkey_derives_what_string_to_key_derives() {
    if !have(OPENAFS) {
        return;
    }
    let mut sb = AfsSandbox::new(CELL);
    sb.start_bosserver();
    let dir = sb.server_dir();
    let cases: &[(u32, &str, bool)] = &[
        (1, "short", false),                  // ≤ 8 bytes, cell from ThisCell
        (2, "exactly8", false),               // 8 bytes takes the crypt branch
        (3, "a much longer password", false), // > 8 bytes: the CBC-checksum branch
        (4, "pw4", true),                     // -cell given: looked up in the client CellServDB
        (5, "longer than eight", true),
    ];
    for (kvno, pw, with_cell) in cases {
        let cell_arg = if *with_cell {
            format!(" -cell {CELL}")
        } else {
            String::new()
        };
        ok(sb.sh(&format!(
            "bos addkey -server localhost -noauth -kvno {kvno} -key '{pw}'{cell_arg}"
        )));
    }
    let listing = ok(sb.sh("bos listkeys -server localhost -noauth -showkey"));
    for (kvno, pw, _) in cases {
        let ours = ok(run(
            &dir,
            &["string-to-key", "--cell", CELL],
            format!("{pw}\n").as_bytes(),
        ));
        let hex = ours.lines().next().unwrap().strip_prefix("key ").unwrap();
        assert_eq!(
            showkey_hex(&listing, *kvno),
            hex,
            "kvno {kvno} password {pw:?}"
        );
    }
    // And the checksums agree with afskeys' own listing of the same file.
    assert_eq!(
        ok(sb.sh("bos listkeys -server localhost -noauth")),
        ok(run(&dir, &["listkeys"], b""))
    );
    let _ = fs::read(dir.join("KeyFile")).unwrap();
}

//! Every command's `--json` output validated against the JSON Schema of its section in
//! docs/json.md (so the documented shapes and the real output cannot drift apart), in the
//! states that give each optional part: a fresh cell, mid-rotation, after rotations.
//! Mid-rotation states need AFSKEYS_CRASH_AT, so this needs `--features test-hooks` (as
//! `bin/test` gives): without it the mid-rotation checks fail rather than compile to nothing.

mod common;
use common::*;
use serde_json::Value;
use std::collections::BTreeMap;

/// `## name` → the schema in the ```json block that follows it.
fn schemas() -> BTreeMap<String, Value> {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/json.md")).unwrap();
    let mut out = BTreeMap::new();
    let mut name = None;
    let mut block: Option<String> = None;
    for line in text.lines() {
        if let Some(b) = &mut block {
            if line == "```" {
                let schema: Value = serde_json::from_str(b).unwrap();
                jsonschema::meta::validate(&schema)
                    .unwrap_or_else(|e| panic!("{name:?}: bad schema: {e}"));
                out.insert(name.take().expect("schema under a heading"), schema);
                block = None;
            } else {
                b.push_str(line);
                b.push('\n');
            }
        } else if let Some(n) = line.strip_prefix("## ") {
            name = Some(n.trim().to_string());
        } else if line == "```json" {
            block = Some(String::new());
        }
    }
    out
}

#[track_caller]
fn check(
    schemas: &BTreeMap<String, Value>,
    section: &str,
    dir: &std::path::Path,
    args: &[&str],
    stdin: &[u8],
) {
    let mut full = vec!["--json"];
    full.extend_from_slice(args);
    let o = run(dir, &full, stdin);
    let out = stdout(&o);
    assert_eq!(
        out.lines().count(),
        1,
        "{args:?}: one line of JSON: {out}\n{}",
        stderr(&o)
    );
    let v: Value = serde_json::from_str(&out).unwrap();
    let schema = schemas
        .get(section)
        .unwrap_or_else(|| panic!("docs/json.md has no section {section}"));
    let validator = jsonschema::validator_for(schema).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&v)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{args:?} does not match docs/json.md § {section}:\n{}\n{out}",
        errors.join("\n")
    );
}

#[test]
fn every_command_matches_its_documented_shape() {
    let s = schemas();
    let d = confdir("json.example.com");
    let dir = d.path();
    // fresh cell: no afs entry
    check(&s, "status", dir, &["status"], b"");
    check(&s, "check", dir, &["check"], b"");
    check(&s, "list", dir, &["list"], b"");
    check(&s, "rotate-dry-run", dir, &["rotate", "--dry-run"], b"");
    check(&s, "rotate", dir, &["rotate"], b"");
    check(&s, "rotate", dir, &["rotate", "--type", "rxkad"], b"");
    check(&s, "add", dir, &["add", "--kvno", "20", "--random"], b"");
    check(
        &s,
        "add",
        dir,
        &["add", "--kvno", "20", "--random", "--replace"],
        b"",
    );
    check(
        &s,
        "add",
        dir,
        &["add", "--kvno", "21", "--type", "rxkad_krb5", "--random"],
        b"",
    );
    check(&s, "list", dir, &["list", "--showkey"], b"");
    check(&s, "list", dir, &["listkeys"], b"");
    check(&s, "remove", dir, &["remove", "--kvno", "21"], b"");
    check(&s, "string-to-key", dir, &["string-to-key"], b"pw\n");
    check(
        &s,
        "string-to-key",
        dir,
        &["string-to-key", "--enctype", "18"],
        b"pw\n",
    );
    check(&s, "authdb", dir, &["authdb", "show"], b"");
    check(&s, "prune", dir, &["prune", "--dry-run"], b"");
    check(&s, "prune", dir, &["prune"], b"");
    // mid-rotation: a rotation in progress, keys incoming
    let mut c = afskeys();
    c.env("AFSKEYS_CRASH_AT", "added")
        .arg("--confdir")
        .arg(dir)
        .arg("rotate");
    let _ = pipe(c, b"");
    check(&s, "status", dir, &["status"], b"");
    check(&s, "rotate-abort", dir, &["rotate", "--abort"], b"");
    let mut c = afskeys();
    c.env("AFSKEYS_CRASH_AT", "distributed")
        .arg("--confdir")
        .arg(dir)
        .arg("rotate");
    let _ = pipe(c, b"");
    check(&s, "rotate", dir, &["rotate", "--resume"], b"");
    check(&s, "status", dir, &["status"], b"");
    // a cell with another server (a local conf dir) for servers, push, verify and pushed_to
    let d3 = confdir("json3.example.com");
    let fs1 = confdir("json3.example.com");
    std::fs::write(
        d3.path().join("afskeys.toml"),
        format!(
            "[[servers]]\nname = \"fs1\"\nconfdir = \"{}\"\n",
            fs1.path().display()
        ),
    )
    .unwrap();
    check(&s, "rotate", d3.path(), &["rotate"], b"");
    check(
        &s,
        "add",
        d3.path(),
        &["add", "--kvno", "9", "--random"],
        b"",
    );
    check(&s, "servers", d3.path(), &["servers"], b"");
    check(&s, "push", d3.path(), &["push"], b"");
    check(&s, "verify", d3.path(), &["verify"], b"");
    ok(run(fs1.path(), &["remove", "--kvno", "9"], b""));
    check(&s, "verify", d3.path(), &["verify"], b"");
    check(&s, "remove", d3.path(), &["remove", "--kvno", "9"], b"");
    // a second cell for authdb init
    let d2 = confdir("json2.example.com");
    ok(run(d2.path(), &["add", "--kvno", "3", "--random"], b""));
    check(&s, "authdb", d2.path(), &["authdb", "init"], b"");
    ok(run(d2.path(), &["add", "--kvno", "4", "--random"], b""));
    check(
        &s,
        "authdb",
        d2.path(),
        &["authdb", "set", "--kvno", "4"],
        b"",
    );
}

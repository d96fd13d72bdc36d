//! Every example in the docs is run: in README.md and docs/*.md, each ```console block is a
//! transcript — `$ command` lines run by bash in a fresh cell per file (AFSKEYS_CONFDIR set,
//! afskeys on PATH), each followed by its expected output; a ```toml block must parse as an
//! afskeys.toml; a ```sh block must pass `bash -n`; a ```json block must parse.
//!
//! In expected output `[...]` matches any text within a line, a line `...` matches any number
//! of lines, and a last line `[exit N]` expects that exit status (else 0).

mod common;
use std::path::{Path, PathBuf};
use std::process::Command;

struct Block {
    lang: String,
    line: usize,
    text: String,
}

fn blocks(md: &str) -> Vec<Block> {
    let mut out = vec![];
    let mut cur: Option<Block> = None;
    for (i, l) in md.lines().enumerate() {
        if cur.is_some() && l.trim_start() == "```" {
            out.push(cur.take().unwrap());
            continue;
        }
        match &mut cur {
            Some(b) => {
                b.text.push_str(l);
                b.text.push('\n');
            }
            None => {
                if let Some(lang) = l.trim_start().strip_prefix("```") {
                    cur = Some(Block {
                        lang: lang.trim().to_string(),
                        line: i + 1,
                        text: String::new(),
                    });
                }
            }
        }
    }
    out
}

/// Does one expected line (with `[...]` wildcards) match an actual line?
fn line_matches(expected: &str, actual: &str) -> bool {
    let parts: Vec<&str> = expected.split("[...]").collect();
    if parts.len() == 1 {
        return expected == actual;
    }
    let mut rest = actual;
    for (i, p) in parts.iter().enumerate() {
        if i == 0 {
            match rest.strip_prefix(p) {
                Some(r) => rest = r,
                None => return false,
            }
        } else if i == parts.len() - 1 {
            return rest.ends_with(p);
        } else {
            match rest.find(p) {
                Some(at) => rest = &rest[at + p.len()..],
                None => return false,
            }
        }
    }
    true
}

/// Match expected lines (with `...` lines) against actual lines.
fn lines_match(exp: &[&str], act: &[&str]) -> bool {
    match exp.first() {
        None => act.is_empty(),
        Some(&"...") => (0..=act.len()).any(|k| lines_match(&exp[1..], &act[k..])),
        Some(e) => !act.is_empty() && line_matches(e, act[0]) && lines_match(&exp[1..], &act[1..]),
    }
}

fn bin_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_afskeys"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Run one ```console block in `home`.
fn run_console(file: &str, b: &Block, home: &Path) {
    let mut steps: Vec<(String, Vec<String>)> = vec![];
    for l in b.text.lines() {
        if let Some(cmd) = l.strip_prefix("$ ") {
            steps.push((cmd.to_string(), vec![]));
        } else if let Some(s) = steps.last_mut() {
            s.1.push(l.to_string());
        } else {
            panic!(
                "{file}:{}: a console block must start with a `$ ` line",
                b.line
            );
        }
    }
    for (cmd, mut expected) in steps {
        let mut want_code = 0;
        if let Some(last) = expected.last() {
            if let Some(n) = last
                .strip_prefix("[exit ")
                .and_then(|r| r.strip_suffix(']'))
            {
                want_code = n.parse().unwrap();
                expected.pop();
            }
        }
        let path = format!(
            "{}:{}",
            bin_dir().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let o = Command::new("bash")
            .env("AFSKEYS_NO_VLDB", "1")
            .env("AFSKEYS_SKIP_RUNNING_PROOF", "1")
            .arg("-c")
            .arg(format!("{cmd} 2>&1"))
            .current_dir(home)
            .env("HOME", home)
            .env("PATH", path)
            .env("AFSKEYS_CONFDIR", home.join("cell"))
            .env("TZ", "UTC")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&o.stdout);
        let act: Vec<&str> = out.lines().collect();
        let exp: Vec<&str> = expected.iter().map(String::as_str).collect();
        assert!(
            lines_match(&exp, &act),
            "{file}:{}: `{cmd}`\n--- expected\n{}\n--- got\n{out}",
            b.line,
            exp.join("\n")
        );
        assert_eq!(
            o.status.code(),
            Some(want_code),
            "{file}:{}: `{cmd}` exit status\n{out}",
            b.line
        );
    }
}

fn doc_files() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut v = vec![root.join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    v.extend(docs);
    v
}

#[test]
fn every_doc_example_runs() {
    let mut counted = 0;
    for f in doc_files() {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        let md = std::fs::read_to_string(&f).unwrap();
        let home = tempfile::tempdir().unwrap();
        let cell = home.path().join("cell");
        std::fs::create_dir(&cell).unwrap();
        std::fs::set_permissions(&cell, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .unwrap();
        common::write_cell_files(&cell, "example.com");
        for b in blocks(&md) {
            counted += 1;
            match b.lang.as_str() {
                "console" => run_console(&name, &b, home.path()),
                "toml" => {
                    afskeys::config::Config::parse(&b.text, Path::new(&name))
                        .unwrap_or_else(|e| panic!("{name}:{}: {e}", b.line));
                }
                "sh" | "bash" => {
                    let o = Command::new("bash")
                        .args(["-n", "-c", &b.text])
                        .output()
                        .unwrap();
                    assert!(
                        o.status.success(),
                        "{name}:{}: {}",
                        b.line,
                        String::from_utf8_lossy(&o.stderr)
                    );
                }
                "json" => {
                    serde_json::from_str::<serde_json::Value>(&b.text)
                        .unwrap_or_else(|e| panic!("{name}:{}: {e}", b.line));
                }
                "" | "text" => {}
                other => panic!(
                    "{name}:{}: unknown block language {other:?} (console, toml, sh, json or text)",
                    b.line
                ),
            }
        }
    }
    assert!(counted > 10, "only {counted} examples found");
}

#[test]
fn the_matcher_can_fail() {
    assert!(line_matches("kvno [...] since [...]", "kvno 3 since 2026"));
    assert!(!line_matches("kvno [...] since", "kvno 3 until"));
    assert!(lines_match(&["a", "...", "z"], &["a", "b", "c", "z"]));
    assert!(!lines_match(&["a", "z"], &["a", "b", "z"]));
}

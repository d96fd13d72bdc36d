//! Every error message the tool can print is explained in docs/troubleshooting.md.
//!
//! The test reads src/**/*.rs with a small scanner (no parsing crate) and collects message
//! templates from:
//! - `#[error("…")]` attributes (thiserror; the first string literal);
//! - the first string literal of a `format!(…)` — or a plain string literal — given as the
//!   argument of `Failed(`, `Refused(`, `Stopped(`, `failed(`, `refused(`, `Backend(`,
//!   `Mismatch(`, `Missing(`, `Err(` or `bad(` (config validation);
//! - `problem: "…"` / `problem: format!("…")` and `message: "…"` / `message: format!("…")`
//!   fields (StoreError::Invalid/Unsafe and usage errors built as `CliError { … }`), and
//!   the operation of an I/O error: `op: "…"`, `StoreError::io(path, "…", e)`,
//!   `self.io("…")`;
//! - `.map_err(|e| format!("…"))`, `.map_err(|_| format!("…"))`,
//!   `.ok_or_else(|| format!("…"))` and `Some(format!("…"))` (the journal, the audit log,
//!   the grace policy's refusals and the kadmin output parser build their messages so).
//!
//! Code after a file's first `#[cfg(test)]` is left out (unit tests, not messages).
//!
//! A template is split at its `{…}` placeholders into fixed runs of text. Each fixed run of
//! at least `MIN_RUN` characters (trimmed of spaces and punctuation at its ends) must appear
//! in docs/troubleshooting.md, whitespace-normalized. So the text before the first
//! placeholder is checked whenever it is long enough, and a message that starts with a path
//! placeholder (`{}: no key with kvno {}`) is checked on the text after it. Templates with no
//! run that long are purely structural (`{}: {}`: a path, then another message that is
//! itself in the catalogue) and are listed in `STRUCTURAL`, each with why; the test fails if
//! one turns up that is not listed there, so nothing is skipped silently.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The shortest fixed run of text that identifies a message.
const MIN_RUN: usize = 10;

/// Templates with no fixed run of `MIN_RUN` characters, and why each needs no entry of its
/// own. The test fails when the scanner finds a short template that is not listed here.
const STRUCTURAL: &[(&str, &str)] = &[
    (
        "volserver: {e}",
        "restarts: a file server's volserver not answering yet, then vos's own words; only \
         inside `the restarts … stopped at …`",
    ),
    (
        "{service} at {addr}: {e}",
        "restarts: which ubik service at which address, then udebug's judgement (each a \
         template of its own); only inside `the restarts … stopped at …`",
    ),
    (
        "{service} sync site {sync}: {e}",
        "restarts: the same, at the sync site; the quorum judgements are templates of their own",
    ),
    (
        "{name} appeared",
        "Found::changes: which key file changed behind a command's back; only ever the start \
         of the refusal `… on the server while this command was replacing its key files`",
    ),
    (
        "{name} changed",
        "Found::changes: the same (`KeyFile changed`), inside that refusal",
    ),
    (
        "{}: {op}: {source}",
        "StoreError::Io, JournalError::Io: a path, the operation and the OS error; each \
         operation (`cannot read`, `cannot lock`, …) is a template of its own",
    ),
    (
        "auth DB {}: {op}: {source}",
        "AuthDbError::Io: the same, for the file auth DB; the operations are their own templates",
    ),
    (
        "{}: corrupt: {source}",
        "StoreError::Corrupt: a key file's path, then one FormatError (each is a template); \
         JournalError::Corrupt: the journal's path, then serde's JSON error or a template",
    ),
    (
        "auth DB {}: corrupt: {message}",
        "AuthDbError::Corrupt: the auth DB's path, then the problem (serde's JSON error or a \
         template); documented under the file auth DB",
    ),
    (
        "{}: {problem}",
        "StoreError::Invalid/Unsafe: a path, then a `problem:` text (each is a template)",
    ),
    (
        "{}: {source}",
        "StoreError::Key: a path, then one KeySetError (each is a template)",
    ),
    (
        "{}: {message}",
        "ConfigError::Parse: the config file's path, then the problem (a template, or the \
         TOML parser's own message)",
    ),
    (
        "{path}: {e}",
        "the inventory's CellServDB path, then a CellServDB error (each is a template); \
         documented under the cell's machines",
    ),
    (
        "no answer ({})",
        "udebug's own failure line in parentheses; documented under the running-server proof",
    ),
    (
        "refused: {0}",
        "the `refused: ` prefix of every policy refusal (exit 3)",
    ),
    ("refused: {}", "the same prefix, added by Error::refused"),
    (
        "{0}",
        "a wrapper that prints the inner message unchanged (Failed, Stopped, Missing, Backend, …)",
    ),
    (
        "server {server}: {message}",
        "FleetError: a server's name, then its message; documented under configuration and servers",
    ),
    (
        "keytab {name}: {source}",
        "the keytab's name, then a keytab parse error (each is a template)",
    ),
    (
        "{} `{query}` failed: {msg}",
        "kadmin.local's own message after the query; documented under the kadmin backend (no \
         fixed run of 10 characters)",
    ),
    (
        "is empty",
        "the end of `refused: the passphrase is empty` (kadmin backend), a fragment that \
         `the passphrase {p}` completes; documented under the kadmin backend",
    ),
    (
        "keytab {name} has no {want} for {principal} at kvno {kvno}; {}",
        "every word is short or a placeholder; documented under keytabs as `keytab <path> has \
         no <what> for <principal> at kvno <kvno>`",
    ),
];

/// Source files whose messages no operator can see yet, each with the marker that says so:
/// while `marker` is in `marker_file`, the file's templates are listed but not required. The
/// SSH fleet is being written; `Cell::open` still refuses every `host` server with the marker
/// message, so nothing in these files runs. When that refusal goes, the exclusion ends by
/// itself and this test asks for their messages.
const NOT_YET_REACHABLE: &[(&str, &str, &str)] = &[
    (
        "src/fleet/ssh.rs",
        "src/cell.rs",
        "SSH servers are not supported by this build yet",
    ),
    (
        "src/fleet/fanout.rs",
        "src/cell.rs",
        "SSH servers are not supported by this build yet",
    ),
];

/// The files of `NOT_YET_REACHABLE` whose marker is still present.
fn unreachable_files() -> Vec<&'static str> {
    NOT_YET_REACHABLE
        .iter()
        .filter(|(_, marker_file, marker)| {
            std::fs::read_to_string(root().join(marker_file)).is_ok_and(|t| t.contains(marker))
        })
        .map(|(file, _, _)| *file)
        .collect()
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Template {
    file: String,
    line: usize,
    text: String,
}

/// Decode the Rust string literal whose opening quote is at `src[start]`; returns the text
/// and the index just after the closing quote. Handles `\"`, `\\`, `\n`, `\t`, `\'`, `\0`
/// and the line continuation (`\` + newline + leading whitespace is dropped).
fn string_literal(src: &[u8], start: usize) -> Option<(String, usize)> {
    if src.get(start) != Some(&b'"') {
        return None;
    }
    let mut out = Vec::new();
    let mut i = start + 1;
    while i < src.len() {
        match src[i] {
            b'"' => return Some((String::from_utf8_lossy(&out).into_owned(), i + 1)),
            b'\\' => {
                let c = *src.get(i + 1)?;
                i += 2;
                match c {
                    b'\n' => {
                        while i < src.len() && src[i].is_ascii_whitespace() {
                            i += 1;
                        }
                    }
                    b'n' => out.push(b'\n'),
                    b't' => out.push(b'\t'),
                    b'0' => out.push(0),
                    other => out.push(other),
                }
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    None
}

fn skip_ws(src: &[u8], mut i: usize) -> usize {
    while i < src.len() && src[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

/// Where the argument starting at `i` ends: the index of the `,` or `)` that closes it
/// (parentheses inside it, as in `tmp.path()`, are skipped).
fn first_argument_end(src: &[u8], i: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (k, &c) in src.iter().enumerate().skip(i) {
        match c {
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' if depth == 0 => return Some(k),
            b')' | b']' | b'}' => depth -= 1,
            b',' if depth == 0 => return Some(k),
            b'"' | b'\n' | b';' if depth == 0 => return None,
            _ => {}
        }
    }
    None
}

/// At `i` (after an opening construct): a string literal, or `format!(` then a literal.
fn literal_or_format(src: &[u8], i: usize) -> Option<String> {
    let i = skip_ws(src, i);
    if src.get(i) == Some(&b'"') {
        return string_literal(src, i).map(|(s, _)| s);
    }
    let rest = &src[i..];
    if rest.starts_with(b"format!(") {
        let j = skip_ws(src, i + "format!(".len());
        return string_literal(src, j).map(|(s, _)| s);
    }
    None
}

/// The openings after which a message template follows.
const OPENINGS: &[&str] = &[
    "Failed(",
    "Refused(",
    "Stopped(",
    "failed(",
    "refused(",
    "Backend(",
    "Mismatch(",
    "Missing(",
    "Err(",
    "bad(",
    "problem:",
    "message:",
    "op:",
    "map_err(|e| ",
    "map_err(|_| ",
    "ok_or_else(|| ",
    "Some(",
];

/// Every template in one source text (`file` names it in reports).
fn templates_in(file: &str, text: &str) -> Vec<Template> {
    let text = match text.find("#[cfg(test)]") {
        Some(at) => &text[..at],
        None => text,
    };
    let src = text.as_bytes();
    let line_of = |at: usize| text[..at].matches('\n').count() + 1;
    let mut out = Vec::new();
    let mut push = |at: usize, t: String| {
        out.push(Template {
            file: file.to_string(),
            line: line_of(at),
            text: t,
        })
    };
    let mut i = 0;
    while i < src.len() {
        // Skip line comments (doc comments quote messages too, but are not messages).
        if src[i..].starts_with(b"//") {
            while i < src.len() && src[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        // Skip char literals (`'"'`, `'\''`) and lifetimes, so a quote in one does not
        // start a string.
        if src[i] == b'\'' {
            i = if src.get(i + 1) == Some(&b'\\') {
                // An escape: the literal ends at the next quote after the escaped char.
                match src[i + 3..].iter().position(|&c| c == b'\'') {
                    Some(p) => i + 3 + p + 1,
                    None => src.len(),
                }
            } else if src.get(i + 2) == Some(&b'\'') {
                i + 3
            } else {
                i + 1
            };
            continue;
        }
        // Skip string literals that are not in a template position, so that an opening
        // inside one (`"… failed(…"`) is not taken for code.
        if src[i] == b'"' {
            match string_literal(src, i) {
                Some((_, end)) => {
                    i = end;
                    continue;
                }
                None => break,
            }
        }
        if src[i..].starts_with(b"#[error(") {
            let j = skip_ws(src, i + "#[error(".len());
            if let Some((s, end)) = string_literal(src, j) {
                push(i, s);
                i = end;
                continue;
            }
        }
        // `StoreError::io(path, "cannot read", e)` and `self.io("cannot stat")`: the
        // operation named in an I/O error.
        if src[i..].starts_with(b"io(") && i > 0 && matches!(src[i - 1], b'.' | b':') {
            let j = skip_ws(src, i + 3);
            let op = if src.get(j) == Some(&b'"') {
                string_literal(src, j).map(|(s, _)| s)
            } else {
                first_argument_end(src, j)
                    .filter(|&c| src[c] == b',')
                    .and_then(|c| literal_or_format(src, c + 1))
            };
            if let Some(t) = op {
                push(i, t);
            }
            i += 3;
            continue;
        }
        let mut matched = false;
        for o in OPENINGS {
            if src[i..].starts_with(o.as_bytes()) {
                // Only a whole word: `Failed(` but not `NotFailed(`.
                let word_start =
                    i == 0 || !(src[i - 1].is_ascii_alphanumeric() || src[i - 1] == b'_');
                if word_start {
                    if let Some(t) = literal_or_format(src, i + o.len()) {
                        push(i, t);
                    }
                }
                i += o.len();
                matched = true;
                break;
            }
        }
        if !matched {
            i += 1;
        }
    }
    out
}

/// The fixed runs of a template: the text between `{…}` placeholders (`{{` and `}}` are
/// literal braces), trimmed of whitespace and punctuation at the ends.
fn fixed_runs(t: &str) -> Vec<String> {
    let mut runs = Vec::new();
    let mut cur = String::new();
    let mut chars = t.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                cur.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                cur.push('}');
            }
            '{' => {
                for d in chars.by_ref() {
                    if d == '}' {
                        break;
                    }
                }
                runs.push(std::mem::take(&mut cur));
            }
            c => cur.push(c),
        }
    }
    runs.push(cur);
    runs.into_iter()
        .map(|r| {
            normalize(&r)
                .trim_matches(|c: char| c.is_whitespace() || ":;,.()\"'".contains(c))
                .to_string()
        })
        .filter(|r| r.chars().count() >= MIN_RUN)
        .collect()
}

/// Collapse every run of whitespace to one space.
fn normalize(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Every template in src/**/*.rs.
fn all_templates() -> Vec<Template> {
    let mut files = Vec::new();
    rust_files(&root().join("src"), &mut files);
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let name = f.strip_prefix(root()).unwrap().display().to_string();
        out.extend(templates_in(&name, &text));
    }
    out
}

/// The templates `doc` does not mention (each fixed run must appear), and the templates
/// with no fixed run long enough to check.
fn missing<'a>(templates: &'a [Template], doc: &str) -> (Vec<&'a Template>, Vec<&'a Template>) {
    let doc = normalize(doc);
    let mut absent = Vec::new();
    let mut structural = Vec::new();
    for t in templates {
        let runs = fixed_runs(&t.text);
        if runs.is_empty() {
            structural.push(t);
        } else if !runs.iter().all(|r| doc.contains(r.as_str())) {
            absent.push(t);
        }
    }
    (absent, structural)
}

#[test]
fn every_error_message_is_in_troubleshooting() {
    let templates = all_templates();
    assert!(
        templates.len() > 100,
        "the scanner found only {} templates: is it still reading src/?",
        templates.len()
    );
    let doc = std::fs::read_to_string(root().join("docs/troubleshooting.md")).unwrap();
    let skipped = unreachable_files();
    let (reachable, not_yet): (Vec<Template>, Vec<Template>) = templates
        .into_iter()
        .partition(|t| !skipped.contains(&t.file.as_str()));
    let templates = reachable;
    let (absent, structural) = missing(&templates, &doc);
    let norm = normalize(&doc);
    let mut problems = String::new();
    for t in &absent {
        let gone: Vec<String> = fixed_runs(&t.text)
            .into_iter()
            .filter(|r| !norm.contains(r.as_str()))
            .collect();
        problems.push_str(&format!(
            "  not explained: {}:{}: {:?}\n      missing text: {gone:?}\n",
            t.file, t.line, t.text
        ));
    }
    let listed: BTreeSet<&str> = STRUCTURAL.iter().map(|s| s.0).collect();
    for t in &structural {
        if !listed.contains(t.text.as_str()) {
            problems.push_str(&format!(
                "  too short to check and not in STRUCTURAL: {}:{}: {:?}\n",
                t.file, t.line, t.text
            ));
        }
    }
    let found: BTreeSet<&str> = structural.iter().map(|t| t.text.as_str()).collect();
    for (s, _) in STRUCTURAL {
        if !found.contains(s) {
            problems.push_str(&format!(
                "  listed in STRUCTURAL but no longer in src/ (remove it): {s:?}\n"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "docs/troubleshooting.md must explain every error message ({} templates):\n{problems}\n\
         Add each message there (placeholders as <path>, <kvno>, …) with what it means and \
         what to do.",
        templates.len()
    );
    eprintln!(
        "error catalogue: {} templates ({} distinct); {} checked against \
         docs/troubleshooting.md, {} structural (see STRUCTURAL); {} in files not yet \
         reachable ({})",
        templates.len(),
        templates
            .iter()
            .map(|t| &t.text)
            .collect::<BTreeSet<_>>()
            .len(),
        templates.len() - structural.len(),
        structural.len(),
        not_yet.len(),
        skipped.join(", ")
    );
}

/// The problem lines `tests/corrupt.rs` checks for each class of damaged key file: the
/// second string of each `("KeyFile…", "…")` case.
fn corrupt_cases() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(root().join("tests/corrupt.rs")).unwrap();
    let src = text.as_bytes();
    let mut out = Vec::new();
    for (at, _) in text.match_indices("(\"KeyFile") {
        let Some((fixture, end)) = string_literal(src, at + 1) else {
            continue;
        };
        let j = skip_ws(src, end);
        if src.get(j) != Some(&b',') {
            continue;
        }
        if let Some((problem, _)) = string_literal(src, skip_ws(src, j + 1)) {
            out.push((fixture, problem));
        }
    }
    out
}

#[test]
fn every_corrupt_class_is_in_troubleshooting() {
    let cases = corrupt_cases();
    assert!(
        cases.len() >= 19,
        "found only {} cases in tests/corrupt.rs",
        cases.len()
    );
    let doc = normalize(&std::fs::read_to_string(root().join("docs/troubleshooting.md")).unwrap());
    let absent: Vec<String> = cases
        .iter()
        .filter(|(_, problem)| !doc.contains(&format!("`{}`", normalize(problem))))
        .map(|(f, p)| format!("  {f}: {p:?}"))
        .collect();
    assert!(
        absent.is_empty(),
        "docs/troubleshooting.md (Corrupt key files) lacks the exact line of:\n{}",
        absent.join("\n")
    );
}

#[test]
fn the_catalogue_can_fail() {
    let src = r#"
        #[error("the frobnicator at {path} is broken beyond repair")]
        Frob { path: String },
        fn f() -> Result<(), E> {
            Err(E::Refused(format!(
                "{kvno} is not a kvno the \
                 cell knows: try another"
            )))
        }
        fn g() { let _ = failed("ok"); } // "x", Failed("in a comment")
        fn q(c: char) -> bool { matches!(c, '"' | '\'' | '\\') && NotFailed("no") }
        #[cfg(test)]
        mod tests { fn h() { Failed(format!("only in a test {x}")); } }
    "#;
    let ts = templates_in("made-up.rs", src);
    let texts: Vec<&str> = ts.iter().map(|t| t.text.as_str()).collect();
    assert_eq!(
        texts,
        [
            "the frobnicator at {path} is broken beyond repair",
            "{kvno} is not a kvno the cell knows: try another",
            "ok",
        ]
    );
    assert_eq!(
        fixed_runs(texts[0]),
        ["the frobnicator at", "is broken beyond repair"]
    );
    // A doc that lacks one run of a message reports it missing; one that has both passes.
    let doc = "## the frobnicator at `<path>`\n";
    let (absent, structural) = missing(&ts, doc);
    assert_eq!(absent.len(), 2, "{absent:?}");
    assert_eq!(absent[0].text, texts[0]);
    assert_eq!(structural.len(), 1, "\"ok\" is too short to check");
    let doc = "`the frobnicator at <path> is broken beyond repair`\n\
               `<kvno> is not a kvno the cell\n  knows: try another`";
    let (absent, _) = missing(&ts, doc);
    assert!(absent.is_empty(), "{absent:?}");
}

#[test]
fn placeholders_and_escaped_braces() {
    assert_eq!(
        fixed_runs("{}: no key with kvno {}{}{}"),
        ["no key with kvno"]
    );
    assert_eq!(
        fixed_runs("see [[servers]] in {{afskeys.toml}} for {name:?}"),
        ["see [[servers]] in {afskeys.toml} for"]
    );
    assert!(fixed_runs("{}: {op}: {source}").is_empty());
}

//! The architecture rules of issue 10, checked over `src/` so that they stay true:
//! - no top-level module imports (through any chain) one that imports it back;
//! - only the composition root (`cell.rs`) reads `Config`;
//! - no exit code is chosen outside `cli/` (no `exit_code` function in the library);
//! - no source file holds over 700 lines of code, no function over 80 lines (unit-test
//!   modules aside).
//!
//! The scan is textual (the tree is formatted by rustfmt, so `fn` items and their closing
//! braces sit at the same indentation), which is all these rules need.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

const MAX_FILE_CODE_LINES: usize = 700;
const MAX_FN_LINES: usize = 80;

fn sources() -> Vec<(PathBuf, String)> {
    fn walk(dir: &Path, out: &mut Vec<(PathBuf, String)>) {
        let mut entries: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|e| e == "rs") {
                let text = fs::read_to_string(&p).unwrap();
                out.push((p, text));
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut v = Vec::new();
    walk(&root, &mut v);
    v.into_iter()
        .map(|(p, t)| (p.strip_prefix(&root).unwrap().to_path_buf(), t))
        .collect()
}

/// The file's lines before its unit-test module (`#[cfg(test)]` followed by `mod …`).
fn non_test_lines(text: &str) -> Vec<&str> {
    let lines: Vec<&str> = text.lines().collect();
    let mut end = lines.len();
    for i in 0..lines.len() {
        if lines[i].trim() == "#[cfg(test)]"
            && lines
                .get(i + 1)
                .is_some_and(|l| l.trim_start().starts_with("mod ") && l.trim_end().ends_with('{'))
        {
            end = i;
            break;
        }
    }
    lines[..end].to_vec()
}

/// The top-level module a file belongs to: `cli/args.rs` -> `cli`, `cell.rs` -> `cell`.
fn top_module(path: &Path) -> String {
    let first = path
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_string()
}

/// Every `crate::X` a file names, X a top-level module.
fn imports(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in non_test_lines(text) {
        let line = line.trim_start();
        if line.starts_with("//") {
            continue;
        }
        let mut rest = line;
        while let Some(i) = rest.find("crate::") {
            rest = &rest[i + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.insert(name);
            }
        }
        // `use crate::{a, b::c}` groups
        if let Some(i) = line.find("crate::{") {
            let group = &line[i + "crate::{".len()..];
            for part in group.split(',') {
                let name: String = part
                    .trim()
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    out.insert(name);
                }
            }
        }
    }
    out
}

fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let files = sources();
    let modules: BTreeSet<String> = files.iter().map(|(p, _)| top_module(p)).collect();
    for (p, text) in &files {
        let from = top_module(p);
        let entry = g.entry(from.clone()).or_default();
        for to in imports(text) {
            if to != from && modules.contains(&to) {
                entry.insert(to);
            }
        }
    }
    g
}

/// The modules reachable from `start`.
fn reachable(g: &BTreeMap<String, BTreeSet<String>>, start: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut stack = vec![start.to_string()];
    while let Some(m) = stack.pop() {
        for n in g.get(&m).into_iter().flatten() {
            if seen.insert(n.clone()) {
                stack.push(n.clone());
            }
        }
    }
    seen
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let g = module_graph();
    let mut cycles = Vec::new();
    for (m, deps) in &g {
        for d in deps {
            if d != "lib" && m != "lib" && reachable(&g, d).contains(m) {
                cycles.push(format!("{m} -> {d} -> … -> {m}"));
            }
        }
    }
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}

#[test]
fn only_the_composition_root_reads_config() {
    let readers: Vec<String> = sources()
        .iter()
        .filter(|(p, t)| imports(t).contains("config") && top_module(p) != "config")
        .map(|(p, _)| p.display().to_string())
        .filter(|p| p != "cell.rs" && p != "lib.rs")
        .collect();
    assert!(
        readers.is_empty(),
        "modules reading Config besides cell.rs: {readers:?}"
    );
}

#[test]
fn exit_codes_are_chosen_only_by_the_cli() {
    let choosers: Vec<String> = sources()
        .iter()
        .filter(|(p, _)| !p.starts_with("cli") && p.as_path() != Path::new("main.rs"))
        .filter(|(_, t)| {
            non_test_lines(t)
                .iter()
                .any(|l| l.contains("fn exit_code("))
        })
        .map(|(p, _)| p.display().to_string())
        .collect();
    assert!(
        choosers.is_empty(),
        "library modules choosing exit codes: {choosers:?}"
    );
}

/// Lines of code: not blank, not only a comment.
fn code_lines(lines: &[&str]) -> usize {
    lines
        .iter()
        .filter(|l| {
            let t = l.trim();
            !t.is_empty() && !t.starts_with("//")
        })
        .count()
}

#[test]
fn no_file_over_700_lines_of_code() {
    let big: Vec<String> = sources()
        .iter()
        .map(|(p, t)| (p, code_lines(&non_test_lines(t))))
        .filter(|(_, n)| *n > MAX_FILE_CODE_LINES)
        .map(|(p, n)| format!("{}: {n} lines of code", p.display()))
        .collect();
    assert!(
        big.is_empty(),
        "files over {MAX_FILE_CODE_LINES} lines of code:\n{}",
        big.join("\n")
    );
}

/// (name, first line, length) of every function in the lines given.
fn functions(lines: &[&str]) -> Vec<(String, usize, usize)> {
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let t = line.trim_start();
        let indent = line.len() - t.len();
        let t = t
            .trim_start_matches("pub(crate) ")
            .trim_start_matches("pub(super) ")
            .trim_start_matches("pub ")
            .trim_start_matches("const ")
            .trim_start_matches("unsafe ")
            .trim_start_matches("extern \"C\" ");
        let Some(rest) = t.strip_prefix("fn ") else {
            continue;
        };
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let close = format!("{}}}", " ".repeat(indent));
        let mut opened = false;
        let mut end = None;
        for (j, l) in lines.iter().enumerate().skip(i) {
            if !opened {
                if l.trim_end().ends_with(';') && !l.contains('{') {
                    break; // a declaration without a body (trait method)
                }
                if l.contains('{') {
                    opened = true;
                    if j == i && l.trim_end().ends_with('}') {
                        end = Some(j);
                        break;
                    }
                }
                continue;
            }
            if *l == close {
                end = Some(j);
                break;
            }
        }
        if let Some(e) = end {
            out.push((name, i + 1, e - i + 1));
        }
    }
    out
}

#[test]
fn no_function_over_80_lines() {
    let mut long = Vec::new();
    for (p, t) in sources() {
        for (name, line, len) in functions(&non_test_lines(&t)) {
            if len > MAX_FN_LINES {
                long.push(format!("{}:{line}: fn {name}: {len} lines", p.display()));
            }
        }
    }
    assert!(
        long.is_empty(),
        "functions over {MAX_FN_LINES} lines:\n{}",
        long.join("\n")
    );
}

#[test]
fn the_scanner_sees_what_it_should() {
    // The checks above must be able to fail: a known cycle, a long function and the test
    // module cut are seen on made-up input.
    let text = "use crate::b::X;\nuse crate::{c, d::E};\nfn f() {\n    let a = 1;\n}\n#[cfg(test)]\nmod tests {\n    use crate::z;\n}\n";
    let i = imports(text);
    assert_eq!(i.into_iter().collect::<Vec<_>>(), ["b", "c", "d"]);
    let body: String = (0..90).map(|_| "    x();\n").collect();
    let long = format!("pub fn g() {{\n{body}}}\n");
    let lines: Vec<&str> = long.lines().collect();
    assert_eq!(functions(&lines), vec![("g".to_string(), 1, 92)]);
    let decl = "trait T {\n    fn a(&self) -> u8;\n    fn b(&self) {\n        1;\n    }\n}\n";
    let lines: Vec<&str> = decl.lines().collect();
    assert_eq!(functions(&lines), vec![("b".to_string(), 3, 3)]);
    let mut g = BTreeMap::new();
    g.insert("a".to_string(), BTreeSet::from(["b".to_string()]));
    g.insert("b".to_string(), BTreeSet::from(["a".to_string()]));
    assert!(reachable(&g, "b").contains("a"));
}

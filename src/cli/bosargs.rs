//! The AFS command-parser habits, translated to clap's: single-dash long options (`-kvno 4`),
//! unique-prefix abbreviations of commands and options (`bos listk -sh`), the positional
//! server of `bos listkeys fs1`, and `-localauth`/`-noauth`/`-cell` where afskeys needs none.
//! An ambiguous prefix is an error listing the candidates.

use clap::Command;

/// The translated arguments and notes for the operator (printed on stderr).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Normalized {
    pub args: Vec<String>,
    pub notes: Vec<String>,
}

/// An option of the command being parsed: its long name and whether it takes values.
struct Opt {
    long: String,
    takes_value: bool,
    many: bool,
}

fn options(cmd: &Command, root: &Command) -> Vec<Opt> {
    let mut v: Vec<Opt> = cmd
        .get_arguments()
        .chain(root.get_arguments().filter(|a| a.is_global_set()))
        .filter_map(|a| {
            a.get_long().map(|l| Opt {
                long: l.to_string(),
                takes_value: a.get_action().takes_values(),
                many: a.get_num_args().is_some_and(|n| n.max_values() > 1),
            })
        })
        .collect();
    for l in ["help", "version"] {
        if !v.iter().any(|o| o.long == l) {
            v.push(Opt {
                long: l.into(),
                takes_value: false,
                many: false,
            });
        }
    }
    v
}

/// Exact name, else the one name `word` is a prefix of; several is an error naming them.
fn resolve(word: &str, names: &[&str], dash: &str) -> Result<Option<String>, String> {
    if let Some(n) = names.iter().find(|n| **n == word) {
        return Ok(Some(n.to_string()));
    }
    let mut hits: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| n.starts_with(word))
        .collect();
    hits.sort();
    hits.dedup();
    match hits.len() {
        0 => Ok(None),
        1 => Ok(Some(hits[0].to_string())),
        _ => Err(format!(
            "ambiguous {} {dash}{word}: it could be {}",
            if dash.is_empty() { "command" } else { "option" },
            hits.iter()
                .map(|h| format!("{dash}{h}"))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

fn is_number(s: &str) -> bool {
    s.len() > 1 && s[1..].chars().all(|c| c.is_ascii_digit())
}

/// Translate `args` (including the program name) for `root`.
pub fn normalize(args: Vec<String>, root: &Command) -> Result<Normalized, String> {
    let mut out = Normalized::default();
    let mut it = args.into_iter();
    out.args.extend(it.next());
    let rest: Vec<String> = it.collect();
    let mut sub: Option<&Command> = None;
    let mut server_given = false;
    let mut i = 0;
    while i < rest.len() {
        let tok = &rest[i];
        i += 1;
        if tok == "--" {
            out.args.extend(rest[i - 1..].iter().cloned());
            break;
        }
        let cmd = sub.unwrap_or(root);
        let first_after_sub =
            sub.is_some() && out.args.last().map(String::as_str) == sub.map(|s| s.get_name());
        if let Some(w) = tok.strip_prefix("--") {
            // clap's own spelling: exact names only; skip the value of an option that takes one.
            out.args.push(tok.clone());
            let name = w.split_once('=').map(|(a, _)| a).unwrap_or(w);
            let takes = options(cmd, root)
                .iter()
                .any(|o| o.long == name && o.takes_value && !w.contains('='));
            if takes && i < rest.len() {
                out.args.push(rest[i].clone());
                i += 1;
            }
            continue;
        }
        let (word, inline): (Option<String>, Option<String>) =
            if tok.starts_with('-') && tok.len() > 2 && !is_number(tok) {
                (Some(tok[1..].to_string()), None)
            } else {
                (None, None)
            };
        let Some(word) = word else {
            // A positional word: a (nested) subcommand, or bos's positional server.
            if cmd.has_subcommands() && !tok.starts_with('-') {
                let names: Vec<&str> = cmd
                    .get_subcommands()
                    .flat_map(|s| std::iter::once(s.get_name()).chain(s.get_all_aliases()))
                    .collect();
                let name = resolve(tok, &names, "")?.unwrap_or(tok.clone());
                let found = cmd
                    .get_subcommands()
                    .find(|s| s.get_name() == name || s.get_all_aliases().any(|a| a == name));
                out.args
                    .push(found.map(|s| s.get_name().to_string()).unwrap_or(name));
                if found.is_some() {
                    sub = found;
                }
                continue;
            }
            let opts = options(cmd, root);
            let bos_like =
                sub.is_some_and(|s| ["list", "listkeys", "add", "remove"].contains(&s.get_name()));
            if first_after_sub
                && bos_like
                && !server_given
                && opts.iter().any(|o| o.long == "server")
                && !tok.starts_with('-')
            {
                out.args.push("--server".into());
                out.args.push(tok.clone());
                server_given = true;
                continue;
            }
            out.args.push(tok.clone());
            continue;
        };
        // bos's -key would have put the key on argv: refuse, and say why.
        if sub.is_some_and(|s| s.get_name() == "add") && (word == "key" || word == "k") {
            return Err(
                "-key puts the key on the command line, where `ps` and shell history \
                        show it; afskeys asks for it with --prompt (no echo, asked twice) or \
                        reads it with --password-stdin"
                    .into(),
            );
        }
        let opts = options(cmd, root);
        let names: Vec<&str> = opts.iter().map(|o| o.long.as_str()).collect();
        let resolved = resolve(&word, &names, "-")?;
        let Some(long) = resolved else {
            if resolve(&word, &["localauth", "noauth"], "-")?.is_some() {
                out.notes.push(format!(
                    "-{word} is not needed: afskeys reads and writes the KeyFiles itself \
                     (run it as root on the server, or name an SSH server with -server); ignored"
                ));
                continue;
            }
            if word == "cell" || (word.len() > 1 && "cell".starts_with(&word)) {
                out.notes.push(
                    "-cell is not needed here: the conf dir's own files are read; ignored".into(),
                );
                i += 1; // its value
                continue;
            }
            // Unknown: let clap say so.
            out.args.push(tok.clone());
            continue;
        };
        let opt = opts.iter().find(|o| o.long == long).expect("resolved");
        let long = long.as_str();
        if long == "server" {
            server_given = true;
        }
        match inline {
            Some(v) => out.args.push(format!("--{long}={v}")),
            None => {
                out.args.push(format!("--{long}"));
                if opt.takes_value && i < rest.len() {
                    out.args.push(rest[i].clone());
                    i += 1;
                    while opt.many
                        && i < rest.len()
                        && (!rest[i].starts_with('-') || is_number(&rest[i]))
                    {
                        out.args.push(rest[i].clone());
                        i += 1;
                    }
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn n(line: &str) -> Result<Vec<String>, String> {
        let args: Vec<String> = line.split_whitespace().map(String::from).collect();
        normalize(args, &super::super::args::Cli::command()).map(|n| n.args)
    }

    #[test]
    fn bos_lines_become_clap_lines() {
        assert_eq!(
            n("afskeys listkeys -server fs1 -showkey").unwrap(),
            ["afskeys", "listkeys", "--server", "fs1", "--showkey"]
        );
        assert_eq!(
            n("afskeys listkeys fs1 -sh").unwrap(),
            ["afskeys", "listkeys", "--server", "fs1", "--showkey"]
        );
        assert_eq!(
            n("afskeys addkey -server fs1 -kv 4 -prompt").unwrap(),
            ["afskeys", "add", "--server", "fs1", "--kvno", "4", "--prompt"]
        );
        assert_eq!(
            n("afskeys removekey -server fs1 -kvno 4 5 6 -localauth").unwrap(),
            ["afskeys", "remove", "--server", "fs1", "--kvno", "4", "5", "6"]
        );
        assert_eq!(n("afskeys listk").unwrap(), ["afskeys", "listkeys"]);
        assert_eq!(
            n("afskeys completions bash").unwrap(),
            ["afskeys", "completions", "bash"]
        );
        assert_eq!(
            n("afskeys authdb sh").unwrap(),
            ["afskeys", "authdb", "show"]
        );
        // ordinary clap lines pass through, unabbreviated
        assert_eq!(
            n("afskeys --confdir /x add --kvno=3 --random").unwrap(),
            ["afskeys", "--confdir", "/x", "add", "--kvno=3", "--random"]
        );
        assert_eq!(
            n("afskeys add --kvno 1 --key-hex 0123").unwrap(),
            ["afskeys", "add", "--kvno", "1", "--key-hex", "0123"]
        );
        assert_eq!(
            n("afskeys --server fs1 add --reason --x").unwrap(),
            ["afskeys", "--server", "fs1", "add", "--reason", "--x"]
        );
        // values that look like options stay values
        assert_eq!(
            n("afskeys remove -kvno 3 -emergency -reason -oops").unwrap(),
            [
                "afskeys",
                "remove",
                "--kvno",
                "3",
                "--emergency",
                "--reason",
                "-oops"
            ]
        );
    }

    #[test]
    fn ambiguity_and_argv_keys_are_errors() {
        let e = n("afskeys list -s").unwrap();
        assert_eq!(
            e,
            ["afskeys", "list", "-s"],
            "single letters are left to clap"
        );
        let e = n("afskeys addkey -kvno 4 -pr").unwrap_err();
        assert_eq!(e, "ambiguous option -pr: it could be -principal, -prompt");
        assert_eq!(n("afskeys addkey -kvno 4 -re").unwrap()[4], "--replace");
        let e = n("afskeys r").unwrap_err();
        assert!(e.starts_with("ambiguous command r: it could be "), "{e}");
        assert!(e.contains("remove") && e.contains("rotate"), "{e}");
        let e = n("afskeys addkey -server fs1 -key secret -kvno 4").unwrap_err();
        assert!(
            e.starts_with("-key puts the key on the command line"),
            "{e}"
        );
    }
}

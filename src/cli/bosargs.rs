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

/// A command line that cannot be translated (exit 2).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BosArgsError {
    /// A prefix of several commands or options.
    #[error("ambiguous {what} {dash}{word}: it could be {candidates}")]
    Ambiguous {
        what: &'static str,
        dash: &'static str,
        word: String,
        /// `-principal, -prompt`
        candidates: String,
    },
    /// bos's `-key`: the key would be on argv.
    #[error(
        "-key puts the key on the command line, where `ps` and shell history show it; \
         afskeys asks for it with --prompt (no echo, asked twice) or reads it with \
         --password-stdin"
    )]
    KeyOnArgv,
}

/// Exact name, else the one name `word` is a prefix of; several is an error naming them.
fn resolve(word: &str, names: &[&str], dash: &'static str) -> Result<Option<String>, BosArgsError> {
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
        _ => Err(BosArgsError::Ambiguous {
            what: if dash.is_empty() { "command" } else { "option" },
            dash,
            word: word.to_string(),
            candidates: hits
                .iter()
                .map(|h| format!("{dash}{h}"))
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

fn is_number(s: &str) -> bool {
    s.len() > 1 && s[1..].chars().all(|c| c.is_ascii_digit())
}

/// The translation in progress: the words still to read and what is known so far.
struct Translator<'a> {
    root: &'a Command,
    rest: Vec<String>,
    i: usize,
    /// The (innermost) subcommand seen so far.
    sub: Option<&'a Command>,
    server_given: bool,
    out: Normalized,
}

impl<'a> Translator<'a> {
    fn cmd(&self) -> &'a Command {
        self.sub.unwrap_or(self.root)
    }

    /// The next word, if any (an option's value).
    fn take(&mut self) -> Option<String> {
        let v = self.rest.get(self.i).cloned();
        if v.is_some() {
            self.i += 1;
        }
        v
    }

    /// Copy the next word (an option's value), if any.
    fn pass_value(&mut self) {
        if let Some(v) = self.take() {
            self.out.args.push(v);
        }
    }

    /// `--name[=value]`: clap's own spelling, exact names only; its value follows it.
    fn double_dash(&mut self, tok: &str, w: &str) {
        self.out.args.push(tok.to_string());
        let name = w.split_once('=').map(|(a, _)| a).unwrap_or(w);
        let takes = options(self.cmd(), self.root)
            .iter()
            .any(|o| o.long == name && o.takes_value && !w.contains('='));
        if takes {
            self.pass_value();
        }
    }

    /// A positional word: a (nested) subcommand, bos's positional server, or an argument.
    fn positional(&mut self, tok: &str) -> Result<(), BosArgsError> {
        let cmd = self.cmd();
        let first_after_sub = self.sub.is_some()
            && self.out.args.last().map(String::as_str) == self.sub.map(|s| s.get_name());
        if cmd.has_subcommands() && !tok.starts_with('-') {
            let names: Vec<&str> = cmd
                .get_subcommands()
                .flat_map(|s| std::iter::once(s.get_name()).chain(s.get_all_aliases()))
                .collect();
            let name = resolve(tok, &names, "")?.unwrap_or(tok.to_string());
            let found = cmd
                .get_subcommands()
                .find(|s| s.get_name() == name || s.get_all_aliases().any(|a| a == name));
            self.out
                .args
                .push(found.map(|s| s.get_name().to_string()).unwrap_or(name));
            if found.is_some() {
                self.sub = found;
            }
            return Ok(());
        }
        let bos_like = self
            .sub
            .is_some_and(|s| ["list", "listkeys", "add", "remove"].contains(&s.get_name()));
        if first_after_sub
            && bos_like
            && !self.server_given
            && options(cmd, self.root).iter().any(|o| o.long == "server")
            && !tok.starts_with('-')
        {
            self.out.args.extend(["--server".into(), tok.to_string()]);
            self.server_given = true;
            return Ok(());
        }
        self.out.args.push(tok.to_string());
        Ok(())
    }

    /// `-word`: an abbreviation of a long option, or a bos option afskeys does not need.
    fn single_dash(&mut self, tok: &str, word: &str) -> Result<(), BosArgsError> {
        // bos's -key would have put the key on argv: refuse, and say why.
        if self.sub.is_some_and(|s| s.get_name() == "add") && (word == "key" || word == "k") {
            return Err(BosArgsError::KeyOnArgv);
        }
        let opts = options(self.cmd(), self.root);
        let names: Vec<&str> = opts.iter().map(|o| o.long.as_str()).collect();
        let Some(long) = resolve(word, &names, "-")? else {
            return self.not_an_option(tok, word);
        };
        let opt = opts.iter().find(|o| o.long == long).expect("resolved");
        if long == "server" {
            self.server_given = true;
        }
        self.out.args.push(format!("--{long}"));
        if opt.takes_value {
            self.pass_value();
            while opt.many
                && self
                    .rest
                    .get(self.i)
                    .is_some_and(|v| !v.starts_with('-') || is_number(v))
            {
                self.pass_value();
            }
        }
        Ok(())
    }

    /// `-localauth`, `-noauth`, `-cell C`: noted and dropped; anything else is left to clap.
    fn not_an_option(&mut self, tok: &str, word: &str) -> Result<(), BosArgsError> {
        if resolve(word, &["localauth", "noauth"], "-")?.is_some() {
            self.out.notes.push(format!(
                "-{word} is not needed: afskeys reads and writes the KeyFiles itself \
                 (run it as root on the server, or name an SSH server with -server); ignored"
            ));
        } else if word == "cell" || (word.len() > 1 && "cell".starts_with(word)) {
            self.out.notes.push(
                "-cell is not needed here: the conf dir's own files are read; ignored".into(),
            );
            self.i += 1; // its value
        } else {
            // Unknown: let clap say so.
            self.out.args.push(tok.to_string());
        }
        Ok(())
    }
}

/// Translate `args` (including the program name) for `root`.
pub fn normalize(args: Vec<String>, root: &Command) -> Result<Normalized, BosArgsError> {
    let mut it = args.into_iter();
    let mut t = Translator {
        root,
        out: Normalized {
            args: it.next().into_iter().collect(),
            notes: vec![],
        },
        rest: it.collect(),
        i: 0,
        sub: None,
        server_given: false,
    };
    while let Some(tok) = t.take() {
        if tok == "--" {
            t.out.args.extend(t.rest[t.i - 1..].iter().cloned());
            break;
        }
        if let Some(w) = tok.strip_prefix("--") {
            t.double_dash(&tok, w);
        } else if tok.starts_with('-') && tok.len() > 2 && !is_number(&tok) {
            t.single_dash(&tok, &tok[1..])?;
        } else {
            t.positional(&tok)?;
        }
    }
    Ok(t.out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn n(line: &str) -> Result<Vec<String>, String> {
        let args: Vec<String> = line.split_whitespace().map(String::from).collect();
        normalize(args, &super::super::args::Cli::command())
            .map(|n| n.args)
            .map_err(|e| e.to_string())
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

//! The `afskeys` command: parse arguments, turn them into options, make one `ops` call,
//! render its report (text or JSON), and map failures to exit codes (0 done, 1 failed,
//! 2 usage, 3 refused by policy; `check` exits with its Nagios level). Secrets are read here
//! (stdin, the terminal, the kernel keyring) and handed to the use case.

pub mod args;
pub mod bosargs;
mod cellcmds;
mod fleetcmds;
mod keycmds;
mod progress;
pub mod render;
mod secret;

use crate::error::{Error, Kind};
use crate::ops::CellPaths;
use args::{Cli, Command};

/// Why a command did not succeed, and how the process says so.
#[derive(Debug)]
pub enum Failure {
    /// The command line is wrong (exit 2).
    Usage(String),
    /// The library failed (exit by its kind).
    Lib(Error),
    /// A report that is itself bad news: `stdout` is printed, then `message` (if any) on
    /// stderr, and the process exits with `code`.
    Report {
        stdout: String,
        message: String,
        code: i32,
    },
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        Failure::Lib(e)
    }
}

/// The exit code of a library error's kind.
pub fn exit_code(kind: Kind) -> i32 {
    match kind {
        Kind::Refused => 3,
        Kind::Failed | Kind::Config => 1,
    }
}

/// Run the command line; returns the process exit code.
pub fn main() -> i32 {
    use clap::CommandFactory;
    let raw: Vec<String> = match std::env::args_os().map(|a| a.into_string()).collect() {
        Ok(v) => v,
        Err(_) => {
            eprintln!("afskeys: arguments must be valid UTF-8");
            return 2;
        }
    };
    // The clap command is built once (building it, every subcommand and argument, is a
    // good part of a local command's start-up) and serves both the bos-style rewriting
    // and the parse.
    let command = Cli::command();
    let normalized = match bosargs::normalize(raw, &command) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("afskeys: {}", clean(&e.to_string()));
            return 2;
        }
    };
    for n in &normalized.notes {
        eprintln!("afskeys: note: {}", clean(n));
    }
    let mut matches = command.get_matches_from(normalized.args);
    let cli = <Cli as clap::FromArgMatches>::from_arg_matches_mut(&mut matches)
        .unwrap_or_else(|e| e.format(&mut Cli::command()).exit());
    match run(&cli) {
        Ok(out) => {
            print!("{}", clean(&out));
            0
        }
        Err(Failure::Usage(m)) => {
            eprintln!("afskeys: {}", clean(&m));
            2
        }
        Err(Failure::Lib(e)) => {
            eprintln!("afskeys: {}", clean(&e.to_string()));
            exit_code(e.kind())
        }
        Err(Failure::Report {
            stdout,
            message,
            code,
        }) => {
            print!("{}", clean(&stdout));
            if !message.is_empty() {
                eprintln!("afskeys: {}", clean(&message));
            }
            code
        }
    }
}

/// Everything afskeys prints passes here: text from outside (kadmin's, kinit's, bos's and
/// ssh's errors, names read from a server or the servers cache) reaches the terminal without
/// control characters (newlines and tabs kept), so it cannot write the clipboard, retitle the
/// window or clear the screen.
pub(crate) fn clean(text: &str) -> String {
    crate::child::clean(text)
}

/// A failed automatic push after an edit names every server with `--verbose` or `--json`
/// (its message groups them past eight servers otherwise).
pub(crate) fn whole_list(cli: &Cli) -> impl Fn(Error) -> Failure + '_ {
    move |e| {
        if cli.verbose || cli.json {
            let np = std::error::Error::source(&e)
                .and_then(|s| s.downcast_ref::<crate::ops::edit::NotPushed>());
            if let Some(np) = np {
                return Failure::Lib(Error::failed(np.message(true)));
            }
        }
        Failure::Lib(e)
    }
}

/// Print warnings on stderr as the use case finds them.
pub(crate) fn warnings() -> impl FnMut(&str) {
    |m: &str| eprintln!("afskeys: warning: {}", clean(m))
}

pub(crate) fn json_line<T: serde::Serialize>(report: &T) -> String {
    // Through a `Value`: its object keys come out sorted, as every JSON output has them.
    let v = serde_json::to_value(report).expect("reports serialize");
    format!("{v}\n")
}

/// Run one command and return what goes to stdout.
pub fn run(cli: &Cli) -> Result<String, Failure> {
    let mut paths = CellPaths::new(cli.confdir.clone(), cli.config.clone());
    paths.progress = progress::on_terminal;
    paths.no_vldb = cli.no_vldb;
    paths.skip_running_proof = cli.skip_running_proof;
    match &cli.command {
        Command::List(_)
        | Command::Listkeys(_)
        | Command::Add(_)
        | Command::Remove(_)
        | Command::Push
        | Command::Completions { .. }
        | Command::Man { .. } => {}
        _ if cli.server.is_some() => {
            return Err(Failure::Usage(
                "--server applies to list, listkeys, add and remove".into(),
            ))
        }
        _ => {}
    }
    match &cli.command {
        Command::List(a) => keycmds::list(cli, &paths, a),
        Command::Listkeys(a) => keycmds::listkeys(cli, &paths, a),
        Command::Add(a) => keycmds::add(cli, &paths, a),
        Command::Remove(a) => keycmds::remove(cli, &paths, a),
        Command::StringToKey(a) => keycmds::string_to_key(cli, &paths, a),
        Command::Authdb { command } => cellcmds::authdb(cli, &paths, command),
        Command::Rotate(a) => cellcmds::rotate(cli, &paths, a),
        Command::Status => cellcmds::status(cli, &paths),
        Command::Check(a) => cellcmds::check(cli, &paths, a),
        Command::Prune(a) => cellcmds::prune(cli, &paths, a),
        Command::Keytab { command } => cellcmds::keytab(cli, &paths, command),
        Command::Servers => fleetcmds::servers(cli, &paths),
        Command::Push => fleetcmds::push(cli, &paths),
        Command::Verify(a) if a.kdc => fleetcmds::verify_kdc(cli, &paths),
        Command::Verify(_) => fleetcmds::verify(cli, &paths),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let mut out = Vec::new();
            clap_complete::generate(*shell, &mut Cli::command(), "afskeys", &mut out);
            Ok(String::from_utf8_lossy(&out).into_owned())
        }
        Command::Man { dir } => keycmds::manpages(dir),
    }
}

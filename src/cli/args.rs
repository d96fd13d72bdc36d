//! The command line (clap derive). No option takes key material or a password as its value.

use crate::keys::{Enctype, KeyType};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "afskeys",
    version,
    about = "Administer the server encryption keys of an AFS cell (KeyFile, KeyFileExt)",
    long_about = None
)]
pub struct Cli {
    /// The server conf dir holding KeyFile and KeyFileExt
    /// [default: /usr/afs/etc if it exists, else /etc/openafs/server]
    #[arg(long, global = true, env = "AFSKEYS_CONFDIR", value_name = "DIR")]
    pub confdir: Option<PathBuf>,

    /// The configuration file [default: <confdir>/afskeys.toml; absent = embedded defaults]
    #[arg(long, global = true, env = "AFSKEYS_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Machine-readable output (JSON) on stdout
    #[arg(long, global = true)]
    pub json: bool,

    /// With many servers, list every one (push, verify); by default servers past eight
    /// are grouped by outcome
    #[arg(long, global = true)]
    pub verbose: bool,

    /// Act on this server's own KeyFiles (a [[servers]] name from afskeys.toml, or
    /// `control`/`localhost`): list them, or make an emergency edit there
    #[arg(long, global = true, value_name = "NAME")]
    pub server: Option<String>,

    /// With --server on a server fed by the Update Server: stop its upclientetc through bos
    /// before the edit (it stays stopped)
    #[arg(long, global = true, conflicts_with = "upclient_resume")]
    pub upclient_pause: bool,

    /// With --server on a server fed by the Update Server: start its upclientetc through bos
    /// after the edit
    #[arg(long, global = true)]
    pub upclient_resume: bool,

    /// Do not ask the VLDB for the cell's file servers (`vos listaddrs`): for when it cannot
    /// answer. The file servers are then not checked; every output says so, and each change
    /// records it in the audit log
    #[arg(long, global = true, env = "AFSKEYS_NO_VLDB", value_parser = clap::builder::FalseyValueParser::new())]
    pub no_vldb: bool,

    /// Do not ask the running servers (bos -localauth, udebug) to accept the new kvno before
    /// a rotation moves the afs entry; recorded in the audit log
    #[arg(long, global = true, env = "AFSKEYS_SKIP_RUNNING_PROOF", value_parser = clap::builder::FalseyValueParser::new())]
    pub skip_running_proof: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List the keys (kvno, type, enctype, checksum)
    List(ListArgs),
    /// List the rxkad keys exactly as `bos listkeys` prints them
    Listkeys(ListkeysArgs),
    /// Add a key (as `bos addkey`: an existing kvno is refused unless --replace)
    #[command(alias = "addkey")]
    Add(AddArgs),
    /// Remove the keys at a kvno (every type and enctype unless narrowed)
    #[command(alias = "removekey")]
    Remove(RemoveArgs),
    /// Derive a key from a password read on stdin and print it with its checksum
    StringToKey(StringToKeyArgs),
    /// The Authentication Database's afs entry
    Authdb {
        #[command(subcommand)]
        command: AuthdbCommand,
    },
    /// Change the cell's key in the one safe order (servers first, then the afs entry)
    Rotate(RotateArgs),
    /// Keys and their roles, the afs entry, every server, any rotation in progress
    Status,
    /// One line for cron and Nagios; exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN
    Check(CheckArgs),
    /// Remove every key whose grace period has ended
    Prune(PruneArgs),
    /// The configured servers: reachable or not, last seen, what they hold (checksums)
    Servers,
    /// Copy the control machine's KeyFile and KeyFileExt to every server (or --server NAME),
    /// staged everywhere first, then renamed on all at once
    Push,
    /// Compare every server's key checksums with the control machine's (exit 2 if any differ);
    /// with --kdc, open a real service ticket from the KDC with every server's keys
    Verify(VerifyArgs),
    /// Kerberos keytabs: convert one into KeyFileExt (as akeyconvert), or export keys to one
    Keytab {
        #[command(subcommand)]
        command: KeytabCommand,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write man pages (afskeys.1 and afskeys-<command>.1) into a directory
    Man {
        /// Where to write them
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuthdbCommand {
    /// Create the afs entry from the control machine's keys (every server must hold them)
    Init {
        /// The kvno to adopt [default: the highest on the control machine]
        #[arg(long)]
        kvno: Option<i32>,
    },
    /// Show the afs entry (kvno, enctypes, checksums, when it changed)
    Show,
    /// Move the afs entry to the control machine's keys at a kvno (every server must hold them)
    Set {
        #[arg(long)]
        kvno: i32,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeytabCommand {
    /// Add a keytab's non-DES keys as rxkad_krb5 keys, as akeyconvert does
    Convert {
        /// The keytab to read [default: rxkad.keytab in the conf dir, as akeyconvert]
        #[arg(long, value_name = "FILE")]
        keytab: Option<PathBuf>,
        /// Only this principal's keys [default: every principal in the keytab]
        #[arg(long)]
        principal: Option<String>,
        /// Old kvnos too, not only the highest (akeyconvert -all)
        #[arg(long)]
        all: bool,
        /// Replace keys already present with different bytes
        #[arg(long)]
        replace: bool,
    },
    /// Write rxkad_krb5 keys to a new keytab file (mode 0600)
    Export {
        /// The keytab to create (must not exist)
        #[arg(long, value_name = "FILE")]
        keytab: PathBuf,
        /// Only this kvno [default: every rxkad_krb5 key]
        #[arg(long)]
        kvno: Option<i32>,
        /// The principal to write them under [default: afs/<cell>@<CELL>]
        #[arg(long)]
        principal: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct RotateArgs {
    /// A random new key (the default)
    #[arg(long, conflicts_with_all = ["password_stdin", "resume", "abort"])]
    pub random: bool,
    /// Derive the new key from a password on the first line of stdin
    #[arg(long, conflicts_with_all = ["resume", "abort"])]
    pub password_stdin: bool,
    /// Derive the new key from a password in the kernel keyring: user:NAME
    #[arg(long, value_name = "user:NAME", conflicts_with_all = ["password_stdin", "random", "resume", "abort"])]
    pub password_from_keyring: Option<String>,
    /// The new kvno [default: one above every kvno in use]
    #[arg(long, conflicts_with_all = ["resume", "abort"])]
    pub kvno: Option<i32>,
    /// rxkad_krb5 (default: aes256 + aes128) or rxkad (a legacy DES-only cell)
    #[arg(long = "type", conflicts_with_all = ["resume", "abort"])]
    pub key_type: Option<KeyType>,
    /// Print the plan and change nothing
    #[arg(long, conflicts_with_all = ["resume", "abort"])]
    pub dry_run: bool,
    /// Finish the rotation in progress
    #[arg(long, conflicts_with = "abort")]
    pub resume: bool,
    /// Undo the rotation in progress (only before the afs entry changed)
    #[arg(long)]
    pub abort: bool,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Print nothing when OK (so cron mails only on trouble)
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Get a service ticket for the afs principal from the KDC and open it with every
    /// server's keys; compare the enctypes the KDC holds at its kvno (exit 2 if any fail)
    #[arg(long)]
    pub kdc: bool,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Say what would be removed, change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Update Server cells: restart through bos the upclients the removal would lock out,
    /// and wait until each has fetched, instead of refusing
    #[arg(long)]
    pub restart_upclients: bool,
    /// Do not restart the servers' OpenAFS processes before removing a kvno that a newer one
    /// replaced (for sites that restart them by other means): the restarts are printed
    /// before the removal instead
    #[arg(long, env = "AFSKEYS_NO_RESTART", value_parser = clap::builder::FalseyValueParser::new())]
    pub no_restart: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ListFormat {
    /// A table
    Table,
    /// `bos listkeys` text
    Bos,
    /// `asetkey list` text
    Asetkey,
    /// JSON
    Json,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Output format
    #[arg(long, value_enum, default_value_t = ListFormat::Table)]
    pub format: ListFormat,
    /// Show the key bytes too (never shown otherwise)
    #[arg(long)]
    pub showkey: bool,
}

#[derive(Debug, Args)]
pub struct ListkeysArgs {
    /// Show the key bytes as `bos listkeys -showkey` does
    #[arg(long)]
    pub showkey: bool,
}

/// Where the new key comes from: never from argv. None given: the terminal is asked (as
/// `bos addkey` asks), and without a terminal it is a usage error.
#[derive(Debug, Args)]
#[group(required = false, multiple = false)]
pub struct KeySource {
    /// Read a password from the first line of stdin and derive the key from it
    #[arg(long)]
    pub password_stdin: bool,
    /// Ask for the password on the terminal (no echo, asked twice)
    #[arg(long)]
    pub prompt: bool,
    /// A random key from the operating system's RNG
    #[arg(long)]
    pub random: bool,
    /// Read the key itself as hex from the first line of stdin
    #[arg(long)]
    pub key_hex_stdin: bool,
    /// Read the password from the kernel keyring: user:NAME (keyctl padd user NAME @u)
    #[arg(long, value_name = "user:NAME")]
    pub password_from_keyring: Option<String>,
    /// Take the key from a Kerberos keytab (the --principal's entry at --kvno), as
    /// `asetkey add` does; with --type rxkad, its single-DES entry
    #[arg(long, value_name = "FILE")]
    pub keytab: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct AddArgs {
    /// Key version number
    #[arg(long)]
    pub kvno: i32,
    /// Key type: rxkad (single DES, KeyFile), rxkad_krb5 or rxgk (KeyFileExt)
    #[arg(long = "type", default_value = "rxkad")]
    pub key_type: KeyType,
    /// Enctype(s) of a typed key, by number or name; repeat or separate with commas
    /// [default for rxkad_krb5 and rxgk: 18,17]
    #[arg(long, value_delimiter = ',')]
    pub enctype: Vec<Enctype>,
    #[command(flatten)]
    pub source: KeySource,
    /// Cell whose name salts an rxkad password [default: ThisCell in the conf dir]
    #[arg(long)]
    pub cell: Option<String>,
    /// Principal whose default salt derives typed keys from a password
    /// [default: afs/<cell>@<CELL>]
    #[arg(long)]
    pub principal: Option<String>,
    /// Replace a key already present at this (type, kvno, enctype)
    #[arg(long)]
    pub replace: bool,
    /// Only if the key being replaced has this checksum (implies --replace); exit 3 if not
    #[arg(long, value_delimiter = ',', value_name = "CKSUM")]
    pub if_cksum: Option<Vec<u32>>,
}

#[derive(Debug, Args)]
pub struct RemoveArgs {
    /// Key version number(s), as `bos removekey -kvno 4 5 6`
    #[arg(long, num_args = 1.., required = true)]
    pub kvno: Vec<i32>,
    /// Only keys of this type
    #[arg(long = "type")]
    pub key_type: Option<KeyType>,
    /// Only keys of this enctype
    #[arg(long)]
    pub enctype: Option<Enctype>,
    /// Only if every key removed has one of these checksums; exit 3 if not
    #[arg(long, value_delimiter = ',', value_name = "CKSUM")]
    pub if_cksum: Option<Vec<u32>>,
    /// Remove even a current or retiring key (tokens sealed with it stop working); logged
    #[arg(long, requires = "reason")]
    pub emergency: bool,
    /// Why the emergency removal is needed (recorded in the audit log)
    #[arg(long, requires = "emergency", value_parser = reason)]
    pub reason: Option<String>,
    /// Do not restart the servers' OpenAFS processes before removing a kvno that a newer one
    /// replaced (for sites that restart them by other means): the restarts are printed
    /// before the removal instead
    #[arg(long, env = "AFSKEYS_NO_RESTART", value_parser = clap::builder::FalseyValueParser::new())]
    pub no_restart: bool,
}

#[derive(Debug, Args)]
pub struct StringToKeyArgs {
    /// Cell whose name salts an rxkad key [default: ThisCell in the conf dir]
    #[arg(long)]
    pub cell: Option<String>,
    /// Derive a Kerberos key of this enctype (17 or 18) instead of an rxkad DES key
    #[arg(long)]
    pub enctype: Option<Enctype>,
    /// Principal whose default salt derives a Kerberos key [default: afs/<cell>@<CELL>]
    #[arg(long)]
    pub principal: Option<String>,
    /// Read the password from the kernel keyring (user:NAME) instead of stdin
    #[arg(long, value_name = "user:NAME")]
    pub password_from_keyring: Option<String>,
}

/// `--reason`: one line of plain text the audit log can record as given.
fn reason(s: &str) -> Result<String, crate::audit::ReasonError> {
    crate::audit::check_reason(s).map(|()| s.to_string())
}

//! The `afskeys` command: parse arguments, call one library function, render, map errors to
//! exit codes (0 done, 1 failed, 2 usage, 3 refused by policy).

pub mod args;
pub mod bosargs;
mod cellcmd;
mod progress;
pub mod render;
mod secret;

use crate::keygen::{self, Material};
use crate::keys::{Enctype, KeyType};
use crate::store::{ops, ConfDir, EditReport, StoreError};
use args::{AddArgs, Cli, Command, ListFormat, RemoveArgs, StringToKeyArgs};
use clap::Parser;
use serde_json::json;
use std::path::PathBuf;

/// A failure to report: the message and the exit code.
#[derive(Debug)]
pub struct CliError {
    pub code: i32,
    pub message: String,
}

impl CliError {
    pub fn failed(m: impl Into<String>) -> CliError {
        CliError {
            code: 1,
            message: m.into(),
        }
    }
}

impl From<StoreError> for CliError {
    fn from(e: StoreError) -> CliError {
        CliError {
            code: e.exit_code(),
            message: e.to_string(),
        }
    }
}

impl From<crate::admin::AdminError> for CliError {
    fn from(e: crate::admin::AdminError) -> CliError {
        CliError {
            code: e.code,
            message: e.message,
        }
    }
}

impl From<keygen::KeygenError> for CliError {
    fn from(e: keygen::KeygenError) -> CliError {
        CliError::failed(e.to_string())
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
    let normalized = match bosargs::normalize(raw, &Cli::command()) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("afskeys: {e}");
            return 2;
        }
    };
    for n in &normalized.notes {
        eprintln!("afskeys: note: {n}");
    }
    let cli = Cli::parse_from(normalized.args);
    match run(&cli) {
        Ok(out) => {
            print!("{out}");
            0
        }
        Err(e) => {
            if !e.message.is_empty() {
                eprintln!("afskeys: {}", e.message);
            }
            e.code
        }
    }
}

/// The conf dir from `--confdir`/`AFSKEYS_CONFDIR`, else `/usr/afs/etc` if it exists,
/// else Debian's `/etc/openafs/server`.
pub fn confdir(cli: &Cli) -> PathBuf {
    if let Some(d) = &cli.confdir {
        return d.clone();
    }
    let transarc = PathBuf::from("/usr/afs/etc");
    if transarc.is_dir() {
        transarc
    } else {
        PathBuf::from("/etc/openafs/server")
    }
}

pub(crate) fn warn_all(w: &[String]) {
    for m in w {
        eprintln!("afskeys: warning: {m}");
    }
}

/// Run one command and return what goes to stdout.
pub fn run(cli: &Cli) -> Result<String, CliError> {
    let dir = ConfDir::new(confdir(cli));
    match &cli.command {
        Command::List(_)
        | Command::Listkeys(_)
        | Command::Add(_)
        | Command::Remove(_)
        | Command::Push
        | Command::Completions { .. }
        | Command::Man { .. } => {}
        _ if cli.server.is_some() => {
            return Err(CliError {
                code: 2,
                message: "--server applies to list, listkeys, add and remove".into(),
            })
        }
        _ => {}
    }
    match &cli.command {
        Command::List(a) => {
            let snap = snapshot(cli, &dir)?;
            warn_all(&snap.warnings);
            let format = if cli.json { ListFormat::Json } else { a.format };
            if format == ListFormat::Asetkey && !a.showkey {
                return Err(CliError {
                    code: 2,
                    message: "`asetkey list` prints every key's bytes: add --showkey to print them"
                        .into(),
                });
            }
            Ok(match format {
                ListFormat::Table => render::table(&snap, a.showkey),
                ListFormat::Bos => render::bos(&snap, a.showkey),
                ListFormat::Asetkey => render::asetkey(&snap),
                ListFormat::Json => json_line(render::list_json(dir.path(), &snap, a.showkey)),
            })
        }
        Command::Listkeys(a) => {
            let snap = snapshot(cli, &dir)?;
            warn_all(&snap.warnings);
            Ok(if cli.json {
                json_line(render::list_json(dir.path(), &snap, a.showkey))
            } else {
                render::bos(&snap, a.showkey)
            })
        }
        Command::Add(a) => add(cli, &dir, a),
        Command::Remove(a) => remove(cli, &dir, a),
        Command::StringToKey(a) => string_to_key(cli, &dir, a),
        Command::Authdb { command } => cellcmd::authdb(cli, dir, command),
        Command::Rotate(a) => cellcmd::rotate(cli, dir, a),
        Command::Status => cellcmd::status(cli, dir),
        Command::Check(a) => cellcmd::check(cli, dir, a),
        Command::Prune(a) => cellcmd::prune(cli, dir, a),
        Command::Keytab { command } => cellcmd::keytab(cli, dir, command),
        Command::Servers => cellcmd::servers(cli, dir),
        Command::Push => cellcmd::push(cli, dir),
        Command::Verify => cellcmd::verify(cli, dir),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let mut out = Vec::new();
            clap_complete::generate(*shell, &mut Cli::command(), "afskeys", &mut out);
            Ok(String::from_utf8_lossy(&out).into_owned())
        }
        Command::Man { dir } => manpages(dir),
    }
}

/// The keys to list: the conf dir's, or with `--server` that server's.
fn snapshot(cli: &Cli, dir: &ConfDir) -> Result<crate::store::Snapshot, CliError> {
    let Some(name) = &cli.server else {
        return Ok(dir.read()?);
    };
    let cell = cellcmd::open(cli, dir.clone())?;
    let server = cell
        .find_server(name)
        .map_err(|e| CliError::failed(e.to_string()))?;
    let keys = server
        .read_keys()
        .map_err(|e| CliError::failed(e.to_string()))?;
    Ok(crate::store::Snapshot {
        keys,
        keyfile_mtime: server.keyfile_mtime(),
        warnings: vec![],
    })
}

/// With `--server NAME` (not the control machine): the emergency-edit warning.
fn target<'a>(
    cli: &Cli,
    cell: &'a crate::cell::Cell,
) -> Result<crate::admin::Target<'a>, CliError> {
    let Some(name) = &cli.server else {
        return Ok(crate::admin::Target::Control);
    };
    let s = cell
        .find_server(name)
        .map_err(|e| CliError::failed(e.to_string()))?;
    if s.name() == crate::cell::CONTROL {
        return Ok(crate::admin::Target::Control);
    }
    warn_all(&[format!(
        "editing {}'s own KeyFiles (an emergency edit): its Update Server client \
         (upclientetc) overwrites them from the control machine unless it is stopped there, \
         and the next push or rotate replaces them",
        s.name()
    )]);
    Ok(crate::admin::Target::Server(s))
}

/// Write `afskeys.1` and one `afskeys-<command>.1` per subcommand (nested ones too).
fn manpages(dir: &std::path::Path) -> Result<String, CliError> {
    use clap::CommandFactory;
    fn write(
        cmd: clap::Command,
        name: String,
        dir: &std::path::Path,
        out: &mut String,
    ) -> Result<(), CliError> {
        let cmd = cmd.name(name.clone());
        let mut buf = Vec::new();
        clap_mangen::Man::new(cmd.clone())
            .render(&mut buf)
            .map_err(|e| CliError::failed(format!("cannot render the {name} man page: {e}")))?;
        let path = dir.join(format!("{name}.1"));
        std::fs::write(&path, buf)
            .map_err(|e| CliError::failed(format!("{}: cannot write: {e}", path.display())))?;
        out.push_str(&format!("{}\n", path.display()));
        for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
            write(sub.clone(), format!("{name}-{}", sub.get_name()), dir, out)?;
        }
        Ok(())
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| CliError::failed(format!("{}: cannot create: {e}", dir.display())))?;
    let mut out = String::new();
    write(Cli::command(), "afskeys".into(), dir, &mut out)?;
    Ok(out)
}

pub(crate) fn json_line(v: serde_json::Value) -> String {
    format!("{v}\n")
}

fn cell_of(dir: &ConfDir, given: &Option<String>) -> Result<String, CliError> {
    match given {
        Some(c) => Ok(c.clone()),
        None => dir
            .this_cell()
            .map_err(|e| CliError::failed(format!("{e} (give --cell to name the cell instead)"))),
    }
}

fn add(cli: &Cli, dir: &ConfDir, a: &AddArgs) -> Result<String, CliError> {
    use std::io::IsTerminal;
    let s = &a.source;
    let none_given = !(s.password_stdin
        || s.prompt
        || s.random
        || s.key_hex_stdin
        || s.password_from_keyring.is_some()
        || s.keytab.is_some());
    if none_given && !std::io::stdin().is_terminal() {
        return Err(CliError {
            code: 2,
            message: "where does the key come from? Give --prompt, --password-stdin, \
                      --key-hex-stdin or --random"
                .into(),
        });
    }
    let prompt = s.prompt || none_given;
    // The cell and principal matter only when a password is derived.
    let derives = a.source.password_stdin
        || prompt
        || a.source.password_from_keyring.is_some()
        || a.source.keytab.is_some();
    let cell = if derives {
        cell_of(dir, &a.cell)?
    } else {
        a.cell.clone().unwrap_or_default()
    };
    let principal = a
        .principal
        .clone()
        .unwrap_or_else(|| keygen::default_principal(&cell));
    let secret;
    let material = if a.source.random || a.source.keytab.is_some() {
        Material::Random
    } else if a.source.key_hex_stdin {
        secret = secret::stdin_hex()?;
        Material::Raw(&secret)
    } else {
        secret = if let Some(spec) = &a.source.password_from_keyring {
            secret::keyring(spec)?
        } else if prompt {
            secret::prompt_twice()?
        } else {
            secret::stdin_line("password")?
        };
        Material::Password(&secret)
    };
    let keys = match &a.source.keytab {
        Some(path) => {
            let bytes =
                zeroize::Zeroizing::new(std::fs::read(path).map_err(|e| {
                    CliError::failed(format!("{}: cannot read: {e}", path.display()))
                })?);
            let keys = crate::keytabs::take(
                &bytes,
                &path.display().to_string(),
                &principal,
                a.kvno,
                a.key_type,
                &a.enctype,
            )
            .map_err(CliError::failed)?;
            for k in &keys {
                crate::keys::KeySet::validate_key(k)
                    .map_err(|e| CliError::failed(e.to_string()))?;
            }
            keys
        }
        None => keygen::make_keys(a.kvno, a.key_type, &a.enctype, material, &cell, &principal)?,
    };
    let added: Vec<serde_json::Value> = keys.iter().map(|k| render::key_json(k, false)).collect();
    let ids: Vec<String> = keys.iter().map(|k| k.id.to_string()).collect();
    let cell = cellcmd::open(cli, dir.clone())?;
    let target = target(cli, &cell)?;
    let (replaced, report) = crate::admin::add(
        &cell,
        &target,
        keys,
        a.replace,
        a.if_cksum.as_deref(),
        chrono::Utc::now(),
    )?;
    warn_all(&report.warnings);
    let synced = cellcmd::sync_after_edit(&cell, &target)?;
    if cli.json {
        return Ok(json_line(json!({
            "added": added,
            "replaced": replaced.iter().map(|k| render::key_json(k, false)).collect::<Vec<_>>(),
            "written": paths(&report),
            "backups": report.backups.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
            "pushed_to": synced,
        })));
    }
    let mut out = String::new();
    for (id, v) in ids.iter().zip(&added) {
        let verb = if replaced.iter().any(|r| r.id.to_string() == *id) {
            "replaced"
        } else {
            "added"
        };
        let cksum = v["cksum"]
            .as_u64()
            .map(|c| c.to_string())
            .unwrap_or_else(|| "-".into());
        out.push_str(&format!("{verb} {id} (cksum {cksum})\n"));
    }
    out.push_str(&cellcmd::pushed_line(&synced));
    Ok(out)
}

fn paths(r: &EditReport) -> Vec<String> {
    r.written.iter().map(|p| p.display().to_string()).collect()
}

fn remove(cli: &Cli, dir: &ConfDir, a: &RemoveArgs) -> Result<String, CliError> {
    let sels: Vec<ops::Selector> = a
        .kvno
        .iter()
        .map(|&kvno| ops::Selector {
            kvno,
            key_type: a.key_type,
            enctype: a.enctype.map(|e| e.0),
        })
        .collect();
    let cell = cellcmd::open(cli, dir.clone())?;
    let target = target(cli, &cell)?;
    let (removed, report, overridden) = crate::admin::remove(
        &cell,
        &target,
        &sels,
        a.if_cksum.as_deref(),
        a.reason.as_deref(),
        chrono::Utc::now(),
    )?;
    warn_all(&report.warnings);
    for why in &overridden {
        warn_all(&[format!("EMERGENCY removal (logged): {why}")]);
    }
    let synced = cellcmd::sync_after_edit(&cell, &target)?;
    if cli.json {
        return Ok(json_line(json!({
            "removed": removed.iter().map(|k| render::key_json(k, false)).collect::<Vec<_>>(),
            "written": paths(&report),
            "backups": report.backups.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
            "pushed_to": synced,
        })));
    }
    let mut out: String = removed
        .iter()
        .map(|k| format!("removed {}\n", k.id))
        .collect();
    out.push_str(&cellcmd::pushed_line(&synced));
    Ok(out)
}

fn string_to_key(cli: &Cli, dir: &ConfDir, a: &StringToKeyArgs) -> Result<String, CliError> {
    let cell = cell_of(dir, &a.cell)?;
    let password = match &a.password_from_keyring {
        Some(spec) => secret::keyring(spec)?,
        None => secret::stdin_line("password")?,
    };
    let (key_type, enctypes) = match a.enctype {
        None => (KeyType::Rxkad, vec![]),
        Some(e) => (KeyType::RxkadKrb5, vec![e]),
    };
    let principal = a
        .principal
        .clone()
        .unwrap_or_else(|| keygen::default_principal(&cell));
    let key = derive_unchecked(key_type, &enctypes, &password, &cell, &principal)?;
    let cksum = crate::checksum::key_checksum(&key);
    if cli.json {
        return Ok(json_line(json!({
            "cell": cell.to_ascii_lowercase(),
            "principal": if key_type.is_typed() { Some(&principal) } else { None },
            "enctype": enctypes.first().map(|e| e.0),
            "key": hex::encode(key.bytes()),
            "cksum": cksum,
        })));
    }
    Ok(format!(
        "key {}\ncksum {}\n",
        hex::encode(key.bytes()),
        cksum
            .map(|c| c.to_string())
            .unwrap_or_else(|| "none (weak key)".into())
    ))
}

/// string-to-key shows what a password derives to, even a weak DES key (it refuses nothing).
fn derive_unchecked(
    key_type: KeyType,
    enctypes: &[Enctype],
    password: &[u8],
    cell: &str,
    principal: &str,
) -> Result<crate::keys::Key, CliError> {
    if key_type == KeyType::Rxkad {
        return Ok(crate::keys::Key::rxkad(
            0,
            &crate::crypto::afs_string_to_key(password, cell),
        ));
    }
    let mut keys = keygen::make_keys(
        0,
        key_type,
        enctypes,
        Material::Password(password),
        cell,
        principal,
    )?;
    Ok(keys.remove(0))
}

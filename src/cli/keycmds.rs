//! The key commands: list, listkeys, add, remove, string-to-key, and the man pages.

use super::args::{AddArgs, Cli, ListArgs, ListFormat, ListkeysArgs, RemoveArgs, StringToKeyArgs};
use super::{json_line, render, secret, warnings, whole_list, Failure};
use crate::ops::edit::{AddOptions, AddSource, EditDone, RemoveOptions};
use crate::ops::{self, CellPaths, KeyView, Secret};
use std::fmt::Write;
use std::path::Path;

pub fn list(cli: &Cli, paths: &CellPaths, a: &ListArgs) -> Result<String, Failure> {
    let format = if cli.json { ListFormat::Json } else { a.format };
    let snap = ops::list::snapshot(paths, cli.server.as_deref())?;
    snap.warnings.iter().for_each(|w| warnings()(w));
    if format == ListFormat::Asetkey && !a.showkey {
        return Err(Failure::Usage(
            "`asetkey list` prints every key's bytes: add --showkey to print them".into(),
        ));
    }
    Ok(match format {
        ListFormat::Table => render::table(&snap, a.showkey),
        ListFormat::Bos => render::bos(&snap, a.showkey),
        ListFormat::Asetkey => render::asetkey(&snap),
        ListFormat::Json => json_line(&render::ListView::of(&paths.confdir, &snap, a.showkey)),
    })
}

pub fn listkeys(cli: &Cli, paths: &CellPaths, a: &ListkeysArgs) -> Result<String, Failure> {
    let snap = ops::list::snapshot(paths, cli.server.as_deref())?;
    snap.warnings.iter().for_each(|w| warnings()(w));
    Ok(if cli.json {
        json_line(&render::ListView::of(&paths.confdir, &snap, a.showkey))
    } else {
        render::bos(&snap, a.showkey)
    })
}

/// Where the key comes from; none given asks the terminal (a usage error without one).
fn add_source(a: &AddArgs) -> Result<AddSource<'static>, Failure> {
    use std::io::IsTerminal;
    let s = &a.source;
    let none_given = !(s.password_stdin
        || s.prompt
        || s.random
        || s.key_hex_stdin
        || s.password_from_keyring.is_some()
        || s.keytab.is_some());
    if none_given && !std::io::stdin().is_terminal() {
        return Err(Failure::Usage(
            "where does the key come from? Give --prompt, --password-stdin, \
             --key-hex-stdin or --random"
                .into(),
        ));
    }
    Ok(if let Some(path) = &s.keytab {
        AddSource::Keytab(path.clone())
    } else if s.random {
        AddSource::Random
    } else if s.key_hex_stdin {
        AddSource::Raw(Box::new(secret::stdin_hex))
    } else if let Some(spec) = s.password_from_keyring.clone() {
        AddSource::Password(Box::new(move || secret::keyring(&spec)))
    } else if s.prompt || none_given {
        AddSource::Password(Box::new(secret::prompt_twice))
    } else {
        AddSource::Password(Box::new(|| secret::stdin_line("password")))
    })
}

pub fn add(cli: &Cli, paths: &CellPaths, a: &AddArgs) -> Result<String, Failure> {
    let o = AddOptions {
        kvno: a.kvno,
        key_type: a.key_type,
        enctypes: a.enctype.clone(),
        source: add_source(a)?,
        cell: a.cell.clone(),
        principal: a.principal.clone(),
        replace: a.replace,
        if_cksum: a.if_cksum.clone(),
        server: cli.server.clone(),
        upclient: upclient_action(cli),
    };
    let done = ops::edit::add(paths, o, &mut warnings()).map_err(whole_list(cli))?;
    if cli.json {
        return Ok(json_line(&done));
    }
    let (added, replaced) = (done.added.as_deref(), done.replaced.as_deref());
    let mut out = String::new();
    for k in added.unwrap_or_default() {
        let verb = if replaced.unwrap_or_default().iter().any(|r| r.id == k.id) {
            "replaced"
        } else {
            "added"
        };
        let _ = writeln!(out, "{verb} {} (cksum {})", k.id, render::cksum(k.cksum));
    }
    out.push_str(&pushed_line(&done));
    Ok(out)
}

/// `--upclient-pause` / `--upclient-resume`.
fn upclient_action(cli: &Cli) -> ops::edit::UpclientAction {
    use ops::edit::UpclientAction;
    match (cli.upclient_pause, cli.upclient_resume) {
        (true, _) => UpclientAction::Pause,
        (_, true) => UpclientAction::Resume,
        _ => UpclientAction::Leave,
    }
}

/// "pushed to fs1, fs2" after an edit that reached the other servers.
pub(super) fn pushed_line(done: &EditDone) -> String {
    pushed_to(&done.pushed_to)
}

pub(super) fn pushed_to(servers: &[String]) -> String {
    if servers.is_empty() {
        String::new()
    } else {
        format!("pushed to {}\n", servers.join(", "))
    }
}

pub fn remove(cli: &Cli, paths: &CellPaths, a: &RemoveArgs) -> Result<String, Failure> {
    let o = RemoveOptions {
        kvnos: a.kvno.clone(),
        key_type: a.key_type,
        enctype: a.enctype.map(|e| e.0),
        if_cksum: a.if_cksum.clone(),
        reason: a.reason.clone(),
        server: cli.server.clone(),
        upclient: upclient_action(cli),
        restarts: render::restarts_wanted(a.no_restart),
    };
    let done = ops::edit::remove(paths, &o, &mut warnings()).map_err(whole_list(cli))?;
    if cli.json {
        return Ok(json_line(&done));
    }
    render::restarts_done(&done.restarts);
    let removed: &[KeyView] = done.removed.as_deref().unwrap_or_default();
    let mut out: String = removed
        .iter()
        .map(|k| format!("removed {}\n", k.id))
        .collect();
    out.push_str(&pushed_line(&done));
    Ok(out)
}

pub fn string_to_key(cli: &Cli, paths: &CellPaths, a: &StringToKeyArgs) -> Result<String, Failure> {
    let password: Secret = match a.password_from_keyring.clone() {
        Some(spec) => Box::new(move || secret::keyring(&spec)),
        None => Box::new(|| secret::stdin_line("password")),
    };
    let d = ops::list::string_to_key(paths, &a.cell, a.enctype, a.principal.as_deref(), password)?;
    if cli.json {
        return Ok(json_line(&d));
    }
    Ok(format!(
        "key {}\ncksum {}\n",
        d.key,
        d.cksum
            .map(|c| c.to_string())
            .unwrap_or_else(|| "none (weak key)".into())
    ))
}

/// Write `afskeys.1` and one `afskeys-<command>.1` per subcommand (nested ones too).
pub fn manpages(dir: &Path) -> Result<String, Failure> {
    use clap::CommandFactory;
    fn render(
        cmd: clap::Command,
        name: String,
        pages: &mut Vec<(String, Vec<u8>)>,
    ) -> Result<(), Failure> {
        let cmd = cmd.name(name.clone());
        let mut buf = Vec::new();
        clap_mangen::Man::new(cmd.clone())
            .render(&mut buf)
            .map_err(|e| {
                crate::error::Error::failed(format!("cannot render the {name} man page: {e}"))
                    .with_source(e)
            })?;
        pages.push((name.clone(), buf));
        for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
            render(sub.clone(), format!("{name}-{}", sub.get_name()), pages)?;
        }
        Ok(())
    }
    let mut pages = Vec::new();
    render(super::args::Cli::command(), "afskeys".into(), &mut pages)?;
    let written = ops::list::write_pages(dir, pages)?;
    Ok(written
        .iter()
        .map(|p| format!("{}\n", p.display()))
        .collect())
}

//! The commands that need the whole cell (config, auth DB, servers, rotation state):
//! authdb, rotate, status, check, prune, keytab — options in, one `ops` call, rendering out.

use super::args::{AuthdbCommand, CheckArgs, Cli, KeytabCommand, PruneArgs, RotateArgs};
use super::keycmds::pushed_to;
use super::{json_line, render, secret, warnings, Failure};
use crate::ops::authdb::{AuthdbAction, EntryView};
use crate::ops::rotate::{Planned, RotateAction, RotateReport};
use crate::ops::status::{EntryState, ServerView, StatusReport};
use crate::ops::{self, CellPaths, Secret};
use crate::rotation::status::Level;
use std::fmt::Write;

fn entry_text(e: &EntryView) -> String {
    let mut out = format!(
        "afs entry {}: kvno {} (set {})\n",
        e.principal, e.kvno, e.changed
    );
    for k in &e.keys {
        let _ = writeln!(out, "  {} cksum {}", k.id, render::cksum(k.cksum));
    }
    if let Some(v) = e.kdc_kvnos.as_ref().filter(|v| v.len() > 1) {
        let v: Vec<String> = v.iter().map(|k| k.to_string()).collect();
        let _ = writeln!(out, "  the KDC holds kvno {}", v.join(", "));
    }
    out
}

pub fn authdb(cli: &Cli, paths: &CellPaths, cmd: &AuthdbCommand) -> Result<String, Failure> {
    let action = match cmd {
        AuthdbCommand::Show => AuthdbAction::Show,
        AuthdbCommand::Init { kvno } => AuthdbAction::Init(*kvno),
        AuthdbCommand::Set { kvno } => AuthdbAction::Set(*kvno),
    };
    let e = ops::authdb::authdb(paths, &action)?;
    Ok(if cli.json {
        json_line(&e)
    } else {
        entry_text(&e)
    })
}

pub fn rotate(cli: &Cli, paths: &CellPaths, a: &RotateArgs) -> Result<String, Failure> {
    let action = if a.abort {
        RotateAction::Abort
    } else if a.resume {
        RotateAction::Resume
    } else {
        let password: Option<Secret> = match (&a.password_from_keyring, a.password_stdin) {
            (Some(spec), _) => {
                let spec = spec.clone();
                Some(Box::new(move || secret::keyring(&spec)))
            }
            (None, true) => Some(Box::new(|| secret::stdin_line("password"))),
            (None, false) => None,
        };
        RotateAction::Start {
            kvno: a.kvno,
            key_type: a.key_type,
            password,
            dry_run: a.dry_run,
        }
    };
    let report = ops::rotate::rotate(paths, action, &mut warnings())?;
    if let RotateReport::Planned(Planned {
        refused: Some(why), ..
    }) = &report
    {
        // The plan and the inventory are shown; the refusal decides the exit (3).
        return Err(Failure::Report {
            stdout: match cli.json {
                true => json_line(&report),
                false => planned_text(&report),
            },
            message: format!("afskeys: refused: {why}"),
            code: 3,
        });
    }
    if cli.json {
        return Ok(json_line(&report));
    }
    Ok(match report {
        RotateReport::Aborted(_) => "rotation aborted: the new key is gone from the control \
                                     machine and the servers that had it\n"
            .into(),
        RotateReport::Planned(_) => planned_text(&report),
        RotateReport::Done(done) => {
            let mut out = format!(
                "kvno {} is on every server ({}) and the afs entry uses it since {}\n",
                done.kvno,
                done.servers.join(", "),
                done.activated
            );
            if let (Some(old), Some(when)) = (done.old_kvno, &done.old_key_removable) {
                let _ = writeln!(
                    out,
                    "kvno {old} is retiring: removable after {when} (`afskeys prune`)"
                );
            }
            if !done.running_not_asked.is_empty() {
                let _ = writeln!(
                    out,
                    "running servers not asked to accept kvno {} (their key files hold it): {}",
                    done.kvno,
                    done.running_not_asked.join(", ")
                );
            }
            out
        }
    })
}

/// `rotate --dry-run`'s text: the steps, then the machines the cell names.
fn planned_text(report: &RotateReport) -> String {
    let RotateReport::Planned(plan) = report else {
        return String::new();
    };
    let mut out = String::from("dry run: nothing changed. The rotation would:\n");
    for s in &plan.steps {
        let _ = writeln!(out, "  {s}");
    }
    out.push_str(&super::render::inventory_text(&plan.inventory));
    out
}

pub fn status(cli: &Cli, paths: &CellPaths) -> Result<String, Failure> {
    let s = ops::status::status(paths)?;
    if cli.json {
        return Ok(json_line(&s));
    }
    let mut out = String::new();
    let cell = if s.cell.is_empty() {
        "(unknown)"
    } else {
        &s.cell
    };
    let _ = writeln!(out, "cell {cell}");
    let _ = writeln!(out, "auth DB {}", s.authdb);
    match &s.afs_entry {
        Some(EntryState::Entry(e)) => {
            out.push_str(&entry_text(e));
            if let Some(d) = &s.next_rotation_due {
                let _ = writeln!(out, "next rotation due {d}");
            }
        }
        None => {
            out.push_str("afs entry: none yet (run `afskeys authdb init` or `afskeys rotate`)\n")
        }
        Some(EntryState::Unreadable { error }) => {
            let _ = writeln!(out, "afs entry: unreadable: {error}");
        }
    }
    status_keys(&s, &mut out);
    if s.keys.iter().any(|k| k.role == "retiring") {
        let _ = writeln!(out, "grace for retiring keys: {}", s.grace.text);
    }
    status_servers(&s, &mut out);
    status_fetch(&s, &mut out);
    match &s.rotation {
        Some(r) => {
            let _ = writeln!(
                out,
                "rotation in progress: kvno {}, step {} (started {}, last step {})",
                r.kvno, r.step, r.started, r.updated
            );
            for (n, why) in &r.missing {
                let _ = writeln!(out, "  waiting for {n}: {why}");
            }
        }
        None => out.push_str("rotation in progress: none\n"),
    }
    out.push_str(&render::inventory_text(&s.inventory));
    let _ = writeln!(out, "{}", s.check.line);
    Ok(out)
}

fn status_keys(s: &StatusReport, out: &mut String) {
    out.push_str("keys on the control machine:\n");
    if s.keys.is_empty() {
        out.push_str("  (none)\n");
    }
    let width = s
        .keys
        .iter()
        .map(|k| k.key.id.to_string().len())
        .max()
        .unwrap_or(0);
    for k in &s.keys {
        let _ = writeln!(
            out,
            "  {:<width$} cksum {:<10} {}",
            k.key.id.to_string(),
            render::cksum(k.key.cksum),
            k.role_text
        );
    }
}

/// Cells fed by the Update Server: one line per server, what it has fetched.
fn status_fetch(s: &StatusReport, out: &mut String) {
    let Some(fetch) = &s.fetch else {
        return;
    };
    out.push_str("fetched through the Update Server (bos getdate):\n");
    for f in fetch {
        let _ = writeln!(out, "  {:<16} {}", f.name, f.text);
    }
}

fn status_servers(s: &StatusReport, out: &mut String) {
    out.push_str("servers:\n");
    for srv in &s.servers {
        match srv {
            ServerView::Read {
                name,
                disagrees,
                keys,
                ..
            } => {
                let kvnos: std::collections::BTreeSet<i32> = keys.iter().map(|k| k.kvno).collect();
                let kvnos: Vec<String> = kvnos.iter().map(|k| k.to_string()).collect();
                let _ = writeln!(
                    out,
                    "  {:<16} {} key(s), kvnos {}{}",
                    name,
                    keys.len(),
                    kvnos.join(","),
                    if *disagrees {
                        "  DISAGREES with the control machine"
                    } else {
                        ""
                    }
                );
            }
            ServerView::Unreadable { name, error, .. } => {
                let _ = writeln!(out, "  {name:<16} UNREADABLE: {error}");
            }
        }
    }
}

/// `check`: the line, and the exit code as the level.
pub fn check(cli: &Cli, paths: &CellPaths, a: &CheckArgs) -> Result<String, Failure> {
    let c = ops::status::check(paths);
    let text = if cli.json {
        json_line(&c)
    } else if a.quiet && c.level == Level::Ok {
        String::new()
    } else {
        format!("{}\n", c.line)
    };
    if c.level == Level::Ok {
        return Ok(text);
    }
    // The line goes to stdout (Nagios reads it there); the exit code carries the level.
    Err(Failure::Report {
        stdout: text,
        message: String::new(),
        code: match c.level {
            Level::Ok => 0,
            Level::Warning => 1,
            Level::Critical => 2,
            Level::Unknown => 3,
        },
    })
}

pub fn prune(cli: &Cli, paths: &CellPaths, a: &PruneArgs) -> Result<String, Failure> {
    let r = ops::prune::prune(
        paths,
        ops::prune::PruneOptions {
            dry_run: a.dry_run,
            restart_upclients: a.restart_upclients,
            restarts: render::restarts_wanted(a.no_restart),
            warn: &mut warnings(),
        },
    )
    .map_err(super::whole_list(cli))?;
    if cli.json {
        return Ok(json_line(&r));
    }
    if r.removed.is_empty() {
        let mut out = String::from("nothing to prune: no key's grace has ended\n");
        out.push_str(&render::kdc_purge(&r.kdc, a.dry_run));
        return Ok(out);
    }
    render::restarts_done(&r.restarts);
    let verb = if a.dry_run { "would remove" } else { "removed" };
    let mut out: String = r
        .removed
        .iter()
        .map(|k| format!("{verb} {}\n", k.id))
        .collect();
    if a.dry_run {
        out.push_str(&render::restart_plan(&r.restarts));
    }
    out.push_str(&pushed_to(&r.pushed_to));
    out.push_str(&render::kdc_purge(&r.kdc, a.dry_run));
    Ok(out)
}

pub fn keytab(cli: &Cli, paths: &CellPaths, cmd: &KeytabCommand) -> Result<String, Failure> {
    match cmd {
        KeytabCommand::Convert {
            keytab,
            principal,
            all,
            replace,
        } => {
            let o = ops::keytab::ConvertOptions {
                keytab: keytab.clone(),
                principal: principal.clone(),
                all: *all,
                replace: *replace,
            };
            let c = ops::keytab::convert(paths, &o)?;
            for s in &c.skipped_des {
                eprintln!(
                    "afskeys: note: kvno {} enctype {}: cannot add single-DES keys to KeyFileExt; skipped",
                    s.kvno, s.enctype
                );
            }
            Ok(if cli.json {
                json_line(&c)
            } else if c.added.is_empty() {
                "nothing to add: every key is already present\n".into()
            } else {
                c.added
                    .iter()
                    .map(|k| format!("added {}\n", k.id))
                    .collect()
            })
        }
        KeytabCommand::Export {
            keytab,
            kvno,
            principal,
        } => {
            let e = ops::keytab::export(paths, keytab, *kvno, principal.as_deref())?;
            Ok(if cli.json {
                json_line(&e)
            } else {
                format!(
                    "wrote {} key(s) for {} to {}\n",
                    e.keys.len(),
                    e.principal,
                    e.keytab
                )
            })
        }
    }
}

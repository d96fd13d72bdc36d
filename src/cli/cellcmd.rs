//! The commands that need the whole cell (config, auth DB, servers, rotation state):
//! authdb, rotate, status, check, prune — argument handling and rendering only.

use super::args::{AuthdbCommand, CheckArgs, Cli, PruneArgs, RotateArgs};
use super::{json_line, render, secret, warn_all, CliError};
use crate::admin;
use crate::authdb::AfsEntry;
use crate::cell::Cell;
use crate::checksum::key_checksum;
use crate::journal::Step;
use crate::rotation::status::{gather, judge, Level};
use crate::rotation::{self, RotateError, RotateOptions};
use crate::store::ConfDir;
use crate::time::fmt_time;
use chrono::Utc;
use serde_json::json;
use std::fmt::Write;

/// The cell (`--config` must exist when given; the default file may be absent), with a
/// progress bar for pushes on a terminal.
pub fn open(cli: &Cli, dir: ConfDir) -> Result<Cell, CliError> {
    let mut cell =
        Cell::load(dir, cli.config.as_deref()).map_err(|e| CliError::failed(e.to_string()))?;
    cell.progress = super::progress::on_terminal(true);
    Ok(cell)
}

impl From<RotateError> for CliError {
    fn from(e: RotateError) -> CliError {
        CliError {
            code: e.exit_code(),
            message: e.to_string(),
        }
    }
}

fn entry_json(e: &AfsEntry) -> serde_json::Value {
    json!({
        "principal": e.principal,
        "kvno": e.kvno,
        "changed": fmt_time(e.changed),
        "keys": e.keys.iter().map(|k| render::key_json(k, false)).collect::<Vec<_>>(),
    })
}

fn entry_text(e: &AfsEntry) -> String {
    let mut out = format!(
        "afs entry {}: kvno {} (set {})\n",
        e.principal,
        e.kvno,
        fmt_time(e.changed)
    );
    for k in &e.keys {
        let _ = writeln!(
            out,
            "  {} cksum {}",
            k.id,
            key_checksum(k)
                .map(|c| c.to_string())
                .unwrap_or_else(|| "-".into())
        );
    }
    out
}

pub fn authdb(cli: &Cli, dir: ConfDir, cmd: &AuthdbCommand) -> Result<String, CliError> {
    let cell = open(cli, dir)?;
    let e = match cmd {
        AuthdbCommand::Show => cell
            .authdb
            .get()
            .map_err(|e| CliError::failed(e.to_string()))?
            .ok_or_else(|| {
                CliError::failed(format!(
                    "{} has no afs entry (run `afskeys authdb init` or `afskeys rotate`)",
                    cell.authdb.describe()
                ))
            })?,
        AuthdbCommand::Init { kvno } => admin::authdb_init(&cell, *kvno, Utc::now())?,
        AuthdbCommand::Set { kvno } => admin::authdb_set(&cell, *kvno, Utc::now())?,
    };
    Ok(if cli.json {
        json_line(entry_json(&e))
    } else {
        entry_text(&e)
    })
}

/// A test hook: `AFSKEYS_CRASH_AT=<step>` kills the process (SIGKILL) right after that step is
/// saved, so tests can prove a crash between steps is finished by `--resume`.
fn crash_hook() -> impl FnMut(Step) {
    let at = std::env::var("AFSKEYS_CRASH_AT").ok();
    move |step: Step| {
        if at.as_deref() == Some(step.name()) {
            // SAFETY: kill(getpid(), SIGKILL) has no preconditions; it does not return.
            unsafe {
                libc::kill(libc::getpid(), libc::SIGKILL);
            }
        }
    }
}

pub fn rotate(cli: &Cli, dir: ConfDir, a: &RotateArgs) -> Result<String, CliError> {
    let cell = open(cli, dir)?;
    let mut hook = crash_hook();
    if a.abort {
        let warnings = rotation::abort(&cell)?;
        warn_all(&warnings);
        return Ok(if cli.json {
            json_line(json!({"aborted": true, "warnings": warnings}))
        } else {
            "rotation aborted: the new key is gone from the control machine and the servers that had it\n".into()
        });
    }
    let report = if a.resume {
        rotation::resume(&cell, &mut hook)?
    } else {
        let opts = RotateOptions {
            kvno: a.kvno,
            key_type: a.key_type,
            password: match (&a.password_from_keyring, a.password_stdin) {
                (Some(spec), _) => Some(secret::keyring(spec)?),
                (None, true) => Some(secret::stdin_line("password")?),
                (None, false) => None,
            },
        };
        if a.dry_run {
            let plan = rotation::dry_run(&cell, &opts)?;
            return Ok(if cli.json {
                json_line(json!({
                    "dry_run": true,
                    "kvno": plan.kvno,
                    "type": plan.key_type.name(),
                    "enctypes": plan.enctypes,
                    "old_kvno": plan.old_kvno,
                    "servers": plan.servers,
                    "authdb": plan.authdb,
                    "steps": plan.steps(),
                }))
            } else {
                let mut out = String::from("dry run: nothing changed. The rotation would:\n");
                for s in plan.steps() {
                    let _ = writeln!(out, "  {s}");
                }
                out
            });
        }
        rotation::rotate(&cell, &opts, &mut hook)?
    };
    if cli.json {
        return Ok(json_line(json!({
            "kvno": report.kvno,
            "old_kvno": report.old_kvno,
            "cksums": report.checksums.iter().map(|(e, c)| json!({"enctype": e, "cksum": c})).collect::<Vec<_>>(),
            "servers": report.servers,
            "activated": fmt_time(report.activated),
            "old_key_removable": report.old_kvno.map(|_| fmt_time(report.activated + cell.policy.token_lifetime)),
        })));
    }
    let mut out = format!(
        "kvno {} is on every server ({}) and the afs entry uses it since {}\n",
        report.kvno,
        report.servers.join(", "),
        fmt_time(report.activated)
    );
    if let Some(old) = report.old_kvno {
        let _ = writeln!(
            out,
            "kvno {old} is retiring: removable after {} (`afskeys prune`)",
            fmt_time(report.activated + cell.policy.token_lifetime)
        );
    }
    Ok(out)
}

pub fn status(cli: &Cli, dir: ConfDir) -> Result<String, CliError> {
    let cell = open(cli, dir)?;
    let s = gather(&cell, Utc::now());
    let v = judge(&s);
    if cli.json {
        return Ok(json_line(json!({
            "cell": s.cell,
            "authdb": s.authdb,
            "afs_entry": match &s.entry {
                Ok(Some(e)) => entry_json(e),
                Ok(None) => serde_json::Value::Null,
                Err(e) => json!({"error": e.to_string()}),
            },
            "keys": s.keys.iter().map(|(k, r)| {
                let mut v = render::key_json(k, false);
                v["role"] = json!(r.name());
                if let crate::policy::Role::Retiring { until } = r {
                    v["removable_after"] = json!(fmt_time(*until));
                }
                v
            }).collect::<Vec<_>>(),
            "servers": s.servers.iter().map(|srv| match &srv.keys {
                Ok(keys) => json!({"name": srv.name, "ok": true, "disagrees": s.disagrees(srv),
                    "keys": keys.iter().map(|(id, c)| json!({"kvno": id.kvno, "type": id.key_type.name(), "enctype": if id.key_type.is_typed() { Some(id.subtype) } else { None }, "cksum": c})).collect::<Vec<_>>()}),
                Err(e) => json!({"name": srv.name, "ok": false, "error": e}),
            }).collect::<Vec<_>>(),
            "rotation": s.rotation().map(|r| json!({"kvno": r.kvno, "step": r.step.name(), "started": fmt_time(r.started), "updated": fmt_time(r.updated), "missing": r.missing})),
            "next_rotation_due": s.next_due().map(fmt_time),
            "check": {"level": v.level.name(), "line": v.line()},
        })));
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "cell {}",
        if s.cell.is_empty() {
            "(unknown)"
        } else {
            &s.cell
        }
    );
    let _ = writeln!(out, "auth DB {}", s.authdb);
    match &s.entry {
        Ok(Some(e)) => {
            out.push_str(&entry_text(e));
            if let Some(d) = s.next_due() {
                let _ = writeln!(out, "next rotation due {}", fmt_time(d));
            }
        }
        Ok(None) => {
            out.push_str("afs entry: none yet (run `afskeys authdb init` or `afskeys rotate`)\n")
        }
        Err(e) => {
            let _ = writeln!(out, "afs entry: unreadable: {e}");
        }
    }
    out.push_str("keys on the control machine:\n");
    if s.keys.is_empty() {
        out.push_str("  (none)\n");
    }
    let width = s
        .keys
        .iter()
        .map(|(k, _)| k.id.to_string().len())
        .max()
        .unwrap_or(0);
    for (k, r) in &s.keys {
        let _ = writeln!(
            out,
            "  {:<width$} cksum {:<10} {}",
            k.id.to_string(),
            key_checksum(k)
                .map(|c| c.to_string())
                .unwrap_or_else(|| "-".into()),
            r.describe()
        );
    }
    out.push_str("servers:\n");
    for srv in &s.servers {
        match &srv.keys {
            Ok(keys) => {
                let kvnos: std::collections::BTreeSet<i32> =
                    keys.iter().map(|(id, _)| id.kvno).collect();
                let _ = writeln!(
                    out,
                    "  {:<16} {} key(s), kvnos {}{}",
                    srv.name,
                    keys.len(),
                    kvnos
                        .iter()
                        .map(|k| k.to_string())
                        .collect::<Vec<_>>()
                        .join(","),
                    if s.disagrees(srv) {
                        "  DISAGREES with the control machine"
                    } else {
                        ""
                    }
                );
            }
            Err(e) => {
                let _ = writeln!(out, "  {:<16} UNREADABLE: {e}", srv.name);
            }
        }
    }
    match s.rotation() {
        Some(r) => {
            let _ = writeln!(
                out,
                "rotation in progress: kvno {}, step {} (started {}, last step {})",
                r.kvno,
                r.step.name(),
                fmt_time(r.started),
                fmt_time(r.updated)
            );
            for (n, why) in &r.missing {
                let _ = writeln!(out, "  waiting for {n}: {why}");
            }
        }
        None => out.push_str("rotation in progress: none\n"),
    }
    let _ = writeln!(out, "{}", v.line());
    Ok(out)
}

/// `check`: the line, and the exit code as the level. Errors opening the cell are UNKNOWN.
pub fn check(cli: &Cli, dir: ConfDir, a: &CheckArgs) -> Result<String, CliError> {
    let (level, line) = match open(cli, dir) {
        Err(e) => (Level::Unknown, format!("AFSKEYS UNKNOWN - {}", e.message)),
        Ok(cell) => {
            let v = judge(&gather(&cell, Utc::now()));
            (v.level, v.line())
        }
    };
    let text = if cli.json {
        json_line(json!({"level": level.name(), "line": line}))
    } else if a.quiet && level == Level::Ok {
        String::new()
    } else {
        format!("{line}\n")
    };
    if level == Level::Ok {
        Ok(text)
    } else {
        // The line goes to stdout (Nagios reads it there); the exit code carries the level.
        print!("{text}");
        Err(CliError {
            code: level as i32,
            message: String::new(),
        })
    }
}

pub fn prune(cli: &Cli, dir: ConfDir, a: &PruneArgs) -> Result<String, CliError> {
    let cell = open(cli, dir)?;
    let keys = admin::prune(&cell, Utc::now(), a.dry_run)?;
    let synced = if a.dry_run || keys.is_empty() {
        vec![]
    } else {
        sync_after_edit(&cell, &admin::Target::Control)?
    };
    if cli.json {
        return Ok(json_line(json!({
            "dry_run": a.dry_run,
            "removed": keys.iter().map(|k| render::key_json(k, false)).collect::<Vec<_>>(),
            "pushed_to": synced,
        })));
    }
    if keys.is_empty() {
        return Ok("nothing to prune: no key's grace has ended\n".into());
    }
    let verb = if a.dry_run { "would remove" } else { "removed" };
    let mut out: String = keys.iter().map(|k| format!("{verb} {}\n", k.id)).collect();
    out.push_str(&pushed_line(&synced));
    Ok(out)
}

/// After a change on the control machine, copy its files to every other server (one
/// two-phase push), as the Update Server would. Returns the servers it reached.
pub fn sync_after_edit(cell: &Cell, target: &admin::Target) -> Result<Vec<String>, CliError> {
    if !matches!(target, admin::Target::Control) || cell.servers.is_empty() {
        return Ok(vec![]);
    }
    let snap = cell.control.read()?;
    entry_kept(cell, &snap.keys)?;
    let files = crate::fleet::KeyFiles::of(&snap.keys);
    let report = crate::fleet::fanout::push(
        &cell.other_servers(),
        &files,
        cell.parallel,
        super::progress::on_terminal(true).as_ref(),
    );
    if report.ok() {
        return Ok(report.servers.iter().map(|p| p.name.clone()).collect());
    }
    let failures: Vec<String> = report.failures().iter().map(|e| e.to_string()).collect();
    Err(CliError::failed(format!(
        "the change is made on the control machine, but not yet on the other servers \
         (none of them was changed): {}. Run `afskeys push` once they are reachable",
        failures.join("; ")
    )))
}

/// Refuse (exit 3) to push a key set without the afs entry's keys: that would take the key
/// every new token is sealed with off every server.
fn entry_kept(cell: &Cell, keys: &crate::keys::KeySet) -> Result<(), CliError> {
    if let Ok(Some(e)) = cell.authdb.get() {
        if !crate::fleet::holds(keys, &e.keys) {
            return Err(CliError {
                code: 3,
                message: format!(
                    "refused: the control machine lacks the afs entry's kvno {} (or holds \
                     other bytes for it); pushing its files would take that key from every \
                     server. Restore it from .afskeys-backup/ first",
                    e.kvno
                ),
            });
        }
    }
    Ok(())
}

/// "pushed to fs1, fs2" after an edit that reached the other servers.
pub fn pushed_line(servers: &[String]) -> String {
    if servers.is_empty() {
        String::new()
    } else {
        format!("pushed to {}\n", servers.join(", "))
    }
}

/// Remember what servers held when seen. The record is a cache: failing to write it is not
/// worth failing the command.
fn seen_record(cell: &Cell, seen: Vec<(String, Vec<crate::fleet::seen::SeenKey>)>) {
    let _ = crate::fleet::seen::SeenFile::new(cell.control.path()).record(seen, Utc::now());
}

/// `servers`: every configured server, reachable or not, with what it holds (or held).
pub fn servers(cli: &Cli, dir: ConfDir) -> Result<String, CliError> {
    let cell = open(cli, dir)?;
    let all = cell.all_servers();
    let reads = crate::fleet::fanout::read_all(&all, cell.parallel);
    seen_record(
        &cell,
        reads
            .iter()
            .filter_map(|(n, r)| {
                r.as_ref()
                    .ok()
                    .map(|k| (n.clone(), crate::fleet::seen::summary(k)))
            })
            .collect(),
    );
    let seen = crate::fleet::seen::SeenFile::new(cell.control.path()).load();
    let rows: Vec<serde_json::Value> = reads
        .iter()
        .map(|(name, r)| {
            let last = seen.get(name);
            json!({
                "name": name,
                "reachable": r.is_ok(),
                "error": r.as_ref().err().map(|e| e.message.clone()),
                "last_seen": last.map(|s| fmt_time(s.last_seen)),
                "keys": last.map(|s| s.keys.clone()).unwrap_or_default(),
            })
        })
        .collect();
    if cli.json {
        return Ok(json_line(json!({ "servers": rows })));
    }
    let mut out = String::new();
    for ((name, r), row) in reads.iter().zip(&rows) {
        let kvnos: std::collections::BTreeMap<i64, Vec<String>> = row["keys"]
            .as_array()
            .unwrap()
            .iter()
            .fold(Default::default(), |mut m, k| {
                m.entry(k["kvno"].as_i64().unwrap_or(0)).or_default().push(
                    k["cksum"]
                        .as_u64()
                        .map(|c| c.to_string())
                        .unwrap_or_else(|| "-".into()),
                );
                m
            });
        let held = kvnos
            .iter()
            .map(|(k, c)| format!("kvno {k} ({})", c.join(",")))
            .collect::<Vec<_>>()
            .join(" ");
        let state = match r {
            Ok(_) => "ok".to_string(),
            Err(e) => format!("UNREACHABLE ({})", e.message),
        };
        let _ = writeln!(
            out,
            "{name:<16} {state}\n  last seen {}: {}",
            row["last_seen"].as_str().unwrap_or("never"),
            if held.is_empty() {
                "no keys".into()
            } else {
                held
            }
        );
    }
    Ok(out)
}

/// `push`: the control machine's files to every server (or `--server NAME`), two-phase.
pub fn push(cli: &Cli, dir: ConfDir) -> Result<String, CliError> {
    let cell = open(cli, dir)?;
    let targets: Vec<&dyn crate::fleet::Server> = match &cli.server {
        Some(n) => vec![cell
            .find_server(n)
            .map_err(|e| CliError::failed(e.to_string()))?],
        None => cell.other_servers(),
    };
    if targets.is_empty() {
        return Ok("no other servers are configured ([[servers]] in afskeys.toml)\n".into());
    }
    cell.audit.preflight().map_err(CliError::failed)?;
    let snap = cell.control.read()?;
    entry_kept(&cell, &snap.keys)?;
    let files = crate::fleet::KeyFiles::of(&snap.keys);
    let report = crate::fleet::fanout::push(
        &targets,
        &files,
        cell.parallel,
        super::progress::on_terminal(!cli.json).as_ref(),
    );
    let names: Vec<String> = report.servers.iter().map(|p| p.name.clone()).collect();
    let skew_ms = report.skew.map(|d| d.as_secs_f64() * 1000.0);
    if report.ok() {
        cell.audit
            .record("push", &format!("KeyFiles to {}", names.join(", ")))
            .map_err(CliError::failed)?;
        // Every server now holds exactly what was pushed: no need to read them back.
        let held = crate::fleet::seen::summary(&snap.keys);
        seen_record(
            &cell,
            names.iter().map(|n| (n.clone(), held.clone())).collect(),
        );
    }
    let rows: Vec<serde_json::Value> = report
        .servers
        .iter()
        .map(|p| {
            let err = match (&p.staged, &p.committed) {
                (Err(e), _) | (Ok(()), Some(Err(e))) => Some(e.message.clone()),
                _ => None,
            };
            json!({"name": p.name, "ok": err.is_none() && report.ok(), "error": err})
        })
        .collect();
    let text = if cli.json {
        json_line(json!({
            "committed": report.committed,
            "servers": rows,
            "skew_ms": skew_ms,
            "seconds": report.total.as_secs_f64(),
        }))
    } else {
        let mut out = String::new();
        for r in &rows {
            let _ = writeln!(
                out,
                "{:<16} {}",
                r["name"].as_str().unwrap_or(""),
                match r["error"].as_str() {
                    Some(e) => format!("FAILED: {e}"),
                    None if report.ok() => "ok".into(),
                    None => "unchanged (the push failed elsewhere)".into(),
                }
            );
        }
        if report.ok() {
            let _ = writeln!(
                out,
                "pushed to {} server(s) in {:.2} s; renames within {:.1} ms of each other",
                names.len(),
                report.total.as_secs_f64(),
                skew_ms.unwrap_or(0.0)
            );
        }
        out
    };
    if report.ok() {
        Ok(text)
    } else {
        print!("{text}");
        Err(CliError::failed(
            "push failed: no server was changed (every upload was removed)",
        ))
    }
}

/// `verify`: every server's checksums against the control machine's; exit 2 on disagreement.
pub fn verify(cli: &Cli, dir: ConfDir) -> Result<String, CliError> {
    use crate::fleet::fanout::Agreement;
    let cell = open(cli, dir)?;
    let reference = cell.control.read()?.keys;
    let others = cell.other_servers();
    let report = crate::fleet::fanout::verify(&others, &reference, cell.parallel);
    seen_record(
        &cell,
        report
            .servers
            .iter()
            .filter(|v| !matches!(v.agreement, Agreement::Unreachable(_)))
            .map(|v| {
                (
                    v.name.clone(),
                    crate::fleet::seen::from_checksums(&v.checksums),
                )
            })
            .collect(),
    );
    let mut differ = false;
    let mut unreachable = false;
    let rows: Vec<serde_json::Value> = report
        .servers
        .iter()
        .map(|v| match &v.agreement {
            Agreement::Agree => json!({"name": v.name, "state": "agrees"}),
            Agreement::Differ { missing, extra, changed } => {
                differ = true;
                let ids = |v: &Vec<crate::keys::KeyId>| v.iter().map(|i| i.to_string()).collect::<Vec<_>>();
                json!({"name": v.name, "state": "differs", "missing": ids(missing), "extra": ids(extra), "changed": ids(changed)})
            }
            Agreement::Unreachable(e) => {
                unreachable = true;
                json!({"name": v.name, "state": "unreachable", "error": e.message})
            }
        })
        .collect();
    let text = if cli.json {
        json_line(json!({ "servers": rows }))
    } else {
        let mut out = String::new();
        for r in &rows {
            let name = r["name"].as_str().unwrap_or("");
            match r["state"].as_str() {
                Some("agrees") => {
                    let _ = writeln!(out, "{name:<16} agrees with the control machine");
                }
                Some("differs") => {
                    let list = |k: &str| {
                        r[k].as_array()
                            .map(|a| {
                                a.iter()
                                    .filter_map(|x| x.as_str())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            })
                            .unwrap_or_default()
                    };
                    let _ = writeln!(
                        out,
                        "{name:<16} DIFFERS: lacks [{}]; extra [{}]; other key at [{}]",
                        list("missing"),
                        list("extra"),
                        list("changed")
                    );
                }
                _ => {
                    let _ = writeln!(
                        out,
                        "{name:<16} UNREACHABLE: {}",
                        r["error"].as_str().unwrap_or("")
                    );
                }
            }
        }
        if rows.is_empty() {
            out.push_str("no other servers are configured ([[servers]] in afskeys.toml)\n");
        }
        out
    };
    if differ || unreachable {
        print!("{text}");
        return Err(CliError {
            code: if differ { 2 } else { 1 },
            message: if differ {
                "servers disagree with the control machine (`afskeys push` copies its files to them)".into()
            } else {
                "some servers could not be read".into()
            },
        });
    }
    Ok(text)
}

pub fn keytab(
    cli: &Cli,
    dir: ConfDir,
    cmd: &super::args::KeytabCommand,
) -> Result<String, CliError> {
    use super::args::KeytabCommand;
    let cell = open(cli, dir)?;
    let principal =
        |given: &Option<String>| given.clone().unwrap_or_else(|| cell.principal.clone());
    match cmd {
        KeytabCommand::Convert {
            keytab,
            principal: p,
            all,
            replace,
        } => {
            let keytab = &keytab
                .clone()
                .unwrap_or_else(|| cell.control.path().join("rxkad.keytab"));
            let bytes = zeroize::Zeroizing::new(std::fs::read(keytab).map_err(|e| {
                CliError::failed(format!("{}: cannot read: {e}", keytab.display()))
            })?);
            let (keys, skipped) =
                crate::keytabs::convert(&bytes, &keytab.display().to_string(), p.as_deref(), *all)
                    .map_err(CliError::failed)?;
            // Keys already present with the same bytes are not added twice.
            let have = cell.control.read()?.keys;
            let new: Vec<_> = keys
                .into_iter()
                .filter(|k| have.get(&k.id).is_none_or(|h| h.bytes() != k.bytes()))
                .collect();
            let added = new
                .iter()
                .map(|k| render::key_json(k, false))
                .collect::<Vec<_>>();
            let ids: Vec<String> = new.iter().map(|k| k.id.to_string()).collect();
            if !new.is_empty() {
                admin::add(
                    &cell,
                    &admin::Target::Control,
                    new,
                    *replace,
                    None,
                    Utc::now(),
                )?;
            }
            for (kvno, e) in &skipped {
                eprintln!("afskeys: note: kvno {kvno} enctype {e}: cannot add single-DES keys to KeyFileExt; skipped");
            }
            Ok(if cli.json {
                json_line(
                    json!({"added": added, "skipped_des": skipped.iter().map(|(k, e)| json!({"kvno": k, "enctype": e})).collect::<Vec<_>>()}),
                )
            } else if ids.is_empty() {
                "nothing to add: every key is already present\n".into()
            } else {
                ids.iter().map(|i| format!("added {i}\n")).collect()
            })
        }
        KeytabCommand::Export {
            keytab,
            kvno,
            principal: p,
        } => {
            let p = principal(p);
            if std::fs::symlink_metadata(keytab).is_ok() {
                return Err(CliError::failed(format!(
                    "{}: already exists; afskeys writes a new keytab only (remove it or choose another name)",
                    keytab.display()
                )));
            }
            cell.audit.preflight().map_err(CliError::failed)?;
            let snap = cell.control.read()?;
            let keys: Vec<&crate::keys::Key> = snap
                .keys
                .of_type(crate::keys::KeyType::RxkadKrb5)
                .filter(|k| kvno.is_none_or(|n| n == k.kvno()))
                .collect();
            if keys.is_empty() {
                return Err(CliError::failed(format!(
                    "{}: no rxkad_krb5 keys{} to export",
                    cell.control.path().display(),
                    kvno.map(|k| format!(" at kvno {k}")).unwrap_or_default()
                )));
            }
            let now = u32::try_from(Utc::now().timestamp()).unwrap_or(u32::MAX);
            let bytes = crate::keytabs::export(&keys, &p, now).map_err(CliError::failed)?;
            crate::store::atomic::replace_file(keytab, &bytes)?;
            cell.audit
                .record(
                    "keytab export",
                    &format!("{} key(s) under {p} to {}", keys.len(), keytab.display()),
                )
                .map_err(CliError::failed)?;
            Ok(if cli.json {
                json_line(
                    json!({"keytab": keytab.display().to_string(), "principal": p, "keys": keys.iter().map(|k| render::key_json(k, false)).collect::<Vec<_>>()}),
                )
            } else {
                format!(
                    "wrote {} key(s) for {p} to {}\n",
                    keys.len(),
                    keytab.display()
                )
            })
        }
    }
}

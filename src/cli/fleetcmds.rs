//! The fleet commands: servers, push, verify — one `ops` call each, rendered.

use super::args::Cli;
use super::{json_line, Failure};
use crate::ops::{self, CellPaths};
use std::collections::BTreeMap;
use std::fmt::Write;

const NO_SERVERS: &str = "no other servers are configured ([[servers]] in afskeys.toml)\n";

pub fn servers(cli: &Cli, paths: &CellPaths) -> Result<String, Failure> {
    let r = ops::servers::servers(paths)?;
    if cli.json {
        return Ok(json_line(&r));
    }
    let mut out = String::new();
    for row in &r.servers {
        let kvnos: BTreeMap<i32, Vec<String>> =
            row.keys.iter().fold(BTreeMap::new(), |mut m, k| {
                m.entry(k.kvno)
                    .or_default()
                    .push(super::render::cksum(k.cksum));
                m
            });
        let held = kvnos
            .iter()
            .map(|(k, c)| format!("kvno {k} ({})", c.join(",")))
            .collect::<Vec<_>>()
            .join(" ");
        let state = match &row.error {
            None => "ok".to_string(),
            Some(e) => format!("UNREACHABLE ({e})"),
        };
        let _ = writeln!(
            out,
            "{:<16} {state}\n  last seen {}: {}",
            row.name,
            row.last_seen.as_deref().unwrap_or("never"),
            if held.is_empty() {
                "no keys".into()
            } else {
                held
            }
        );
    }
    Ok(out)
}

pub fn push(cli: &Cli, paths: &CellPaths) -> Result<String, Failure> {
    let Some(r) = ops::push::push(paths, cli.server.as_deref(), !cli.json)? else {
        return Ok(NO_SERVERS.into());
    };
    let text = if cli.json {
        json_line(&r)
    } else {
        let mut out = String::new();
        for s in &r.servers {
            let state = match &s.error {
                Some(e) => format!("FAILED: {e}"),
                None if r.ok => "ok".into(),
                None => "unchanged (the push failed elsewhere)".into(),
            };
            let _ = writeln!(out, "{:<16} {state}", s.name);
        }
        if r.ok {
            let _ = writeln!(
                out,
                "pushed to {} server(s) in {:.2} s; renames within {:.1} ms of each other",
                r.servers.len(),
                r.seconds,
                r.skew_ms.unwrap_or(0.0)
            );
        }
        out
    };
    if r.ok {
        return Ok(text);
    }
    Err(Failure::Report {
        stdout: text,
        message: "push failed: no server was changed (every upload was removed)".into(),
        code: 1,
    })
}

pub fn verify(cli: &Cli, paths: &CellPaths) -> Result<String, Failure> {
    let r = ops::verify::verify(paths)?;
    let text = if cli.json {
        json_line(&r)
    } else {
        let mut out = String::new();
        for v in &r.servers {
            let name = &v.name;
            let list = |l: &Option<Vec<String>>| l.as_deref().unwrap_or_default().join(", ");
            let _ = match v.state {
                "agrees" => writeln!(out, "{name:<16} agrees with the control machine"),
                "differs" => writeln!(
                    out,
                    "{name:<16} DIFFERS: lacks [{}]; extra [{}]; other key at [{}]",
                    list(&v.missing),
                    list(&v.extra),
                    list(&v.changed)
                ),
                _ => writeln!(
                    out,
                    "{name:<16} UNREACHABLE: {}",
                    v.error.as_deref().unwrap_or("")
                ),
            };
        }
        if r.servers.is_empty() {
            out.push_str(NO_SERVERS);
        }
        out
    };
    let (differ, unreachable) = (r.differ(), r.unreachable());
    if !differ && !unreachable {
        return Ok(text);
    }
    Err(Failure::Report {
        stdout: text,
        message: if differ {
            "servers disagree with the control machine (`afskeys push` copies its files to them)"
                .into()
        } else {
            "some servers could not be read".into()
        },
        code: if differ { 2 } else { 1 },
    })
}

/// `verify --kdc`: exit 0 when every machine opens the KDC's ticket and the enctype sets
/// agree; 2 naming each server and enctype that do not; 1 when only some machine was
/// unreadable.
pub fn verify_kdc(cli: &Cli, paths: &CellPaths) -> Result<String, Failure> {
    use crate::keys::Enctype;
    let r = ops::verify::verify_kdc(paths)?;
    let p = &r.proof.proof;
    let enctypes = |v: &[i32]| {
        v.iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let text = if cli.json {
        json_line(&r)
    } else {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "ticket from the KDC for {}: kvno {}, enctype {}",
            p.principal,
            p.kvno,
            Enctype(p.enctype)
        );
        let _ = writeln!(
            out,
            "KDC enctypes at kvno {}: {}",
            p.kvno,
            enctypes(&p.kdc_enctypes)
        );
        for s in &p.servers {
            let _ = writeln!(
                out,
                "{:<16} {}; holds enctypes [{}] at kvno {}",
                s.server,
                s.opening.describe(),
                enctypes(&s.enctypes_held),
                p.kvno
            );
        }
        for (name, why) in &r.proof.unreadable {
            let _ = writeln!(out, "{name:<16} UNREACHABLE: {why}");
        }
        out
    };
    if r.ok {
        return Ok(text);
    }
    let proven_bad = r.problems.len() > r.proof.unreadable.len();
    Err(Failure::Report {
        stdout: text,
        message: format!("the ticket proof failed: {}", r.problems.join("; ")),
        code: if proven_bad { 2 } else { 1 },
    })
}

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
        if let Some(d) = row.distribution {
            let fetch = row.fetch.as_ref().map(|f| format!(": {}", f.text));
            let _ = writeln!(out, "  distribution {d}{}", fetch.unwrap_or_default());
        }
    }
    out.push_str(&super::render::inventory_text(&r.inventory));
    Ok(out)
}

/// Up to this many servers (or with `--verbose`), every server gets its line.
const FULL_LIST: usize = 8;

/// One line per server ("name state"), except that beyond `FULL_LIST` servers without
/// `--verbose`, the servers whose state is `routine` are counted by state instead of
/// listed: "the 127 others: ok". Problems are always listed one by one.
fn per_server(lines: &[(String, String)], verbose: bool, routine: impl Fn(&str) -> bool) -> String {
    let mut out = String::new();
    let group = !verbose && lines.len() > FULL_LIST;
    let mut counted: Vec<(&str, usize)> = Vec::new();
    for (name, state) in lines {
        if group && routine(state) {
            match counted.iter_mut().find(|(s, _)| s == state) {
                Some((_, k)) => *k += 1,
                None => counted.push((state, 1)),
            }
            continue;
        }
        let _ = writeln!(out, "{name:<16} {state}");
    }
    let listed = lines.len() - counted.iter().map(|(_, k)| k).sum::<usize>();
    for (state, k) in counted {
        let who = if listed == 0 { "all" } else { "the" };
        let what = if listed == 0 { "servers" } else { "others" };
        let _ = writeln!(out, "{who} {k} {what}: {state} (--verbose lists them)");
    }
    out
}

pub fn push(cli: &Cli, paths: &CellPaths) -> Result<String, Failure> {
    let Some(r) = ops::push::push(paths, cli.server.as_deref(), !cli.json)? else {
        return Ok(NO_SERVERS.into());
    };
    let text = if cli.json {
        json_line(&r)
    } else {
        let lines: Vec<(String, String)> = r
            .servers
            .iter()
            .map(|s| {
                let state = match &s.error {
                    Some(e) => format!("FAILED: {e}"),
                    None if r.ok => "ok".into(),
                    None => "unchanged (the push failed elsewhere)".into(),
                };
                (s.name.clone(), state)
            })
            .collect();
        let mut out = per_server(&lines, cli.verbose, |st| !st.starts_with("FAILED"));
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
        let list = |l: &Option<Vec<String>>| l.as_deref().unwrap_or_default().join(", ");
        let lines: Vec<(String, String)> = r
            .servers
            .iter()
            .map(|v| {
                let state = match v.state {
                    "agrees" => "agrees with the control machine".to_string(),
                    "differs" => format!(
                        "DIFFERS: lacks [{}]; extra [{}]; other key at [{}]",
                        list(&v.missing),
                        list(&v.extra),
                        list(&v.changed)
                    ),
                    _ => format!("UNREACHABLE: {}", v.error.as_deref().unwrap_or("")),
                };
                let state = match &v.fetch {
                    None => state,
                    Some(f) if v.read => format!("{state}; Update Server: {}", f.text),
                    Some(f) => fetch_verdict(v.state, &f.text),
                };
                (v.name.clone(), state)
            })
            .collect();
        let mut out = per_server(&lines, cli.verbose, |st| st.starts_with("agrees"));
        if r.servers.is_empty() {
            out.push_str(NO_SERVERS);
        }
        out + &running_text(&r.running, cli.verbose)
    };
    let (differ, refused, unproven) = (r.differ(), r.refused(), r.unproven());
    let message = if differ {
        "servers disagree with the control machine (`afskeys push` copies its files to them)"
            .to_string()
    } else if !refused.is_empty() {
        format!(
            "running servers refuse the control machine's newest kvno: {} (a server that \
             holds the key but refuses it reads another conf dir or has not reloaded)",
            refused.join(", ")
        )
    } else if r.unreachable() {
        "some servers could not be read".into()
    } else if !unproven.is_empty() {
        format!("running servers not proven: {}", unproven.join(", "))
    } else {
        return Ok(text);
    };
    let code = if differ || !refused.is_empty() { 2 } else { 1 };
    Err(Failure::Report {
        stdout: text,
        message,
        code,
    })
}

/// The running servers' part of `verify`: one line per machine (routine ones grouped past
/// eight, as the key files' lines are), or why none was asked.
fn running_text(r: &ops::verify::RunningView, verbose: bool) -> String {
    let Some(kvno) = r.kvno else {
        let why = r.not_asked.as_deref().unwrap_or("");
        return format!("running servers not asked: {why}\n");
    };
    let lines: Vec<(String, String)> = r
        .servers
        .iter()
        .map(|p| {
            let state = match (&p.not_asked, p.failed.is_empty(), p.refused()) {
                (Some(why), _, _) => format!("running: not asked ({why})"),
                (None, true, _) => {
                    let mut by: Vec<&str> = p
                        .proven
                        .iter()
                        .filter(|l| l.contains("accepted"))
                        .filter_map(|l| l.split_whitespace().next())
                        .collect();
                    by.dedup();
                    format!("running: kvno {kvno} accepted by {}", by.join(", "))
                }
                (None, false, true) => format!("RUNNING: REFUSED: {}", p.failed.join("; ")),
                (None, false, false) => format!("RUNNING: NOT PROVEN: {}", p.failed.join("; ")),
            };
            (p.server.clone(), state)
        })
        .collect();
    let head = format!("running servers, asked with kvno {kvno} (the control machine's newest):\n");
    head + &per_server(&lines, verbose, |st| st.starts_with("running: kvno"))
}

/// An upclient-fed server read by `bos getdate` only: what its dates say.
fn fetch_verdict(state: &str, fetch: &str) -> String {
    match state {
        "agrees" => "agrees with the control machine by KeyFile and KeyFileExt dates (fetched \
                     through the Update Server; bytes not compared: no SSH)"
            .to_string(),
        "differs" => format!("DIFFERS: not fetched through the Update Server: {fetch}"),
        _ => format!("UNREACHABLE: Update Server: {fetch}"),
    }
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

#[cfg(test)]
mod tests {
    use super::per_server;

    fn lines(n: usize, bad: usize) -> Vec<(String, String)> {
        (0..n)
            .map(|i| {
                let st = if i == bad {
                    "FAILED: connection refused"
                } else {
                    "ok"
                };
                (format!("fs{i}"), st.to_string())
            })
            .collect()
    }

    #[test]
    fn many_servers_are_grouped_unless_verbose() {
        let routine = |s: &str| s == "ok";
        assert_eq!(
            per_server(&lines(128, 89), false, routine),
            "fs89             FAILED: connection refused\nthe 127 others: ok (--verbose lists them)\n"
        );
        assert_eq!(
            per_server(&lines(128, 89), true, routine).lines().count(),
            128
        );
        assert_eq!(per_server(&lines(8, 9), false, routine).lines().count(), 8);
        assert_eq!(
            per_server(&lines(9, 99), false, routine),
            "all 9 servers: ok (--verbose lists them)\n"
        );
    }
}

//! Rendering keys as a table, as `bos listkeys` text, as `asetkey list` text, and as JSON.

use crate::checksum::key_checksum;
use crate::keys::{Enctype, Key, KeyType};
use crate::ops::KeyView;
use crate::store::Snapshot;
use chrono::{DateTime, Local};
use serde::Serialize;
use std::fmt::Write;
use std::time::SystemTime;

/// `bos listkeys [-showkey]` text, line for line (rxkad keys only, as bos shows).
pub fn bos(snap: &Snapshot, showkey: bool) -> String {
    let mut out = String::new();
    let mut any = false;
    for k in snap.keys.of_type(KeyType::Rxkad) {
        any = true;
        let kvno = k.kvno();
        if showkey && k.bytes().iter().any(|&b| b != 0) {
            let oct: String = k.bytes().iter().fold(String::new(), |mut s, b| {
                let _ = write!(s, "\\{b:03o}");
                s
            });
            let _ = writeln!(out, "key {kvno} is '{oct}'");
        } else if showkey {
            let _ = writeln!(out, "key version is {kvno}");
        } else {
            match key_checksum(k) {
                Some(c) => {
                    let _ = writeln!(out, "key {kvno} has cksum {c}");
                }
                None => {
                    let _ = writeln!(out, "key version is {kvno}");
                }
            }
        }
    }
    if any {
        if let Some(t) = snap.keyfile_mtime {
            let _ = writeln!(out, "Keys last changed on {}.", ctime(t));
        }
    }
    out.push_str("All done.\n");
    out
}

/// ctime(3) without its newline, in the local time zone: `Wed Nov  5 11:43:38 2026`.
pub fn ctime(t: SystemTime) -> String {
    DateTime::<Local>::from(t)
        .format("%a %b %e %H:%M:%S %Y")
        .to_string()
}

/// `asetkey list` text.
pub fn asetkey(snap: &Snapshot) -> String {
    let mut out = String::new();
    for k in snap.keys.iter() {
        let hex = hex::encode(k.bytes());
        if k.key_type().is_typed() {
            let _ = writeln!(
                out,
                "{}\tkvno {:4} enctype {}; key is: {}",
                k.key_type(),
                k.kvno(),
                k.id.subtype,
                hex
            );
        } else {
            let _ = writeln!(
                out,
                "{}\tkvno {:4}: key is: {}",
                k.key_type(),
                k.kvno(),
                hex
            );
        }
    }
    out.push_str("All done.\n");
    out
}

fn enctype_cell(k: &Key) -> String {
    if k.key_type().is_typed() {
        Enctype(k.id.subtype).to_string()
    } else {
        "des (rxkad)".to_string()
    }
}

/// A table through prettytable.
pub fn table(snap: &Snapshot, showkey: bool) -> String {
    use prettytable::{format, Cell, Row, Table};
    let mut t = Table::new();
    t.set_format(*format::consts::FORMAT_NO_LINESEP_WITH_TITLE);
    let mut title = vec!["kvno", "type", "enctype", "cksum"];
    if showkey {
        title.push("key");
    }
    t.set_titles(Row::new(title.into_iter().map(Cell::new).collect()));
    for k in snap.keys.iter() {
        let mut row = vec![
            k.kvno().to_string(),
            k.key_type().to_string(),
            enctype_cell(k),
            cksum(key_checksum(k)),
        ];
        if showkey {
            row.push(hex::encode(k.bytes()));
        }
        t.add_row(Row::new(row.iter().map(|s| Cell::new(s)).collect()));
    }
    let mut out = if snap.keys.is_empty() {
        "no keys\n".to_string()
    } else {
        t.to_string()
    };
    if let Some(m) = snap.keyfile_mtime {
        let _ = writeln!(out, "KeyFile last changed {}", rfc3339(m));
    }
    out
}

pub fn rfc3339(t: SystemTime) -> String {
    crate::time::fmt_system_time(t)
}

/// A checksum as text: `-` when the key has none.
pub fn cksum(c: Option<u32>) -> String {
    crate::checksum::show_checksum(c)
}

/// `list --json`: the conf dir and its keys.
#[derive(Serialize)]
pub struct ListView {
    pub confdir: String,
    pub keyfile_mtime: Option<String>,
    pub keys: Vec<KeyView>,
    pub warnings: Vec<String>,
}

impl ListView {
    pub fn of(confdir: &std::path::Path, snap: &Snapshot, showkey: bool) -> ListView {
        ListView {
            confdir: confdir.display().to_string(),
            keyfile_mtime: snap.keyfile_mtime.map(rfc3339),
            keys: snap.keys.iter().map(|k| KeyView::of(k, showkey)).collect(),
            warnings: snap.warnings.clone(),
        }
    }
}

/// `--no-restart`, as the use case takes it.
pub fn restarts_wanted(no_restart: bool) -> crate::ops::restart::Restarts {
    match no_restart {
        true => crate::ops::restart::Restarts::Print,
        false => crate::ops::restart::Restarts::Run,
    }
}

/// `prune` and `remove`: the restarts afskeys made before the removal, on stderr (stdout
/// stays the list). Restarts left to the operator were printed before the removal.
pub fn restarts_done(r: &Option<crate::ops::restart::RestartReport>) {
    let Some(r) = r.as_ref().filter(|r| r.run && !r.done.is_empty()) else {
        return;
    };
    let each: Vec<String> = r
        .done
        .iter()
        .map(|d| match (&d.seconds, &d.skipped) {
            (Some(s), _) => format!("{} ({s:.0} s)", d.server),
            (None, Some(why)) => format!("{} (not restarted: {why})", d.server),
            (None, None) => d.server.clone(),
        })
        .collect();
    let kvnos: Vec<String> = r.for_kvnos.iter().map(|k| k.to_string()).collect();
    eprintln!(
        "afskeys: restarted before kvno {} went, one at a time with quorum back after each: {}",
        kvnos.join(", "),
        super::clean(&each.join(", "))
    );
}

/// `prune`: the KDC's old keys purged (or to be, in a dry run); where the KDC cannot, the
/// warning said so already.
pub fn kdc_purge(p: &Option<crate::ops::purge::KdcPurge>, dry_run: bool) -> String {
    let Some(p) = p else { return String::new() };
    let list = |v: &[i32]| {
        v.iter()
            .map(|k| k.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match (dry_run, p.purged, &p.why_not) {
        (true, _, None) => format!("would purge kvno {} from the KDC\n", list(&p.kvnos)),
        (false, true, _) => format!(
            "purged kvno {} from the KDC (it holds kvno {} now)\n",
            list(&p.kvnos),
            list(&p.kdc_holds)
        ),
        (_, _, Some(why)) if dry_run => format!(
            "would not purge kvno {} from the KDC: {}\n",
            list(&p.kvnos),
            super::clean(why)
        ),
        _ => String::new(),
    }
}

/// `prune --dry-run`: the restarts the removal would run first (or leave to the operator).
pub fn restart_plan(r: &Option<crate::ops::restart::RestartReport>) -> String {
    let Some(r) = r else { return String::new() };
    let mut out = match &r.why_not {
        None => "would first restart, one at a time, each waited for:\n".to_string(),
        Some(why) => format!("would not restart ({why}); restart first, unless already done:\n"),
    };
    for p in &r.plan {
        out.push_str(&format!("  {}\n", super::clean(&p.command)));
    }
    out
}

/// The machines the cell names, one line each (name, addresses, state, where found), then
/// what could not be checked.
/// With `--no-vldb` and every machine accounted for, the text says nothing more than the
/// `check` line does ("file servers not checked"); `--json` has the whole inventory.
pub fn inventory_text(inv: &crate::inventory::Inventory) -> String {
    let quiet = inv.vldb == crate::inventory::NOT_ASKED
        && inv.unaccounted().is_empty()
        && inv.problems().is_empty();
    if quiet {
        return String::new();
    }
    let mut out = String::from("the cell's machines (CellServDB, VLDB):\n");
    if inv.machines.is_empty() {
        out.push_str("  none found\n");
    }
    for m in &inv.machines {
        let state = match (&m.by, &m.reason) {
            (Some(by), Some(why)) => format!("{} ({by}: {why})", m.state),
            (Some(by), None) if by != m.state => format!("{} as {by}", m.state),
            _ => m.state.to_string(),
        };
        let _ = writeln!(
            out,
            "  {} [{}]: {state}; found in {}",
            m.name,
            m.addrs.join(", "),
            m.found_in.join(", ")
        );
    }
    for u in &inv.unchecked {
        let _ = writeln!(out, "  not checked: {u}");
    }
    out
}

//! Proof from the running servers: before the afs entry moves, each server's running
//! bosserver must accept a token sealed with the new kvno, and each database server's ubik
//! services must have a sync site.
//!
//! `bos status -server HOST -localauth`, run on the control machine once it holds the new
//! kvno as its newest, authenticates with exactly that kvno: a bosserver that has not loaded
//! it (its KeyFileExt lacks it, or its CellServDB was never bumped, or it reads another conf
//! dir) refuses with `ticket contained unknown key version number`. bos exits 0 whatever
//! happens, so it is judged by what it prints: any `bos:` line is a refusal. `udebug HOST
//! 7002` (ptserver) and `7003` (vlserver) answer without authentication: `I am sync site`
//! or `Sync host ADDR was set …`; `return code … from VOTE_Debug` means no answer.
//! What this covers and what it does not is said in docs/rotation.md.

use crate::child;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What the configuration says (built by `cell`).
#[derive(Debug, Clone)]
pub struct Spec {
    pub bos: PathBuf,
    pub udebug: PathBuf,
    pub deadline: Duration,
    /// Off for the whole command (`--skip-running-proof`), with why.
    pub skipped: Option<String>,
    pub targets: Vec<Target>,
}

/// One machine to ask.
#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    /// The host bos reaches, or why the proof is off for it.
    pub ask: Result<String, String>,
    /// A database server (in the cell's CellServDB): its ubik services are asked too.
    pub db: bool,
}

/// One machine's result.
#[derive(Debug, Clone, Serialize)]
pub struct Proven {
    pub server: String,
    /// What accepted or answered: "bosserver accepted kvno N", "ptserver sync site …".
    pub proven: Vec<String>,
    /// What refused or did not answer (process: what it printed).
    pub failed: Vec<String>,
    /// Not asked, and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_asked: Option<String>,
}

/// The ubik services of a database server, with their ports.
const UBIK: [(&str, &str); 2] = [("ptserver", "7002"), ("vlserver", "7003")];

/// Ask every target at once; results in target order.
pub fn prove(spec: &Spec, kvno: i32) -> Vec<Proven> {
    std::thread::scope(|s| {
        let handles: Vec<_> = spec
            .targets
            .iter()
            .map(|t| s.spawn(move || prove_one(spec, t, kvno)))
            .collect();
        handles
            .into_iter()
            .zip(&spec.targets)
            .map(|(h, t)| {
                h.join().unwrap_or_else(|_| Proven {
                    server: t.name.clone(),
                    proven: vec![],
                    failed: vec!["the proof panicked".into()],
                    not_asked: None,
                })
            })
            .collect()
    })
}

fn prove_one(spec: &Spec, t: &Target, kvno: i32) -> Proven {
    let mut p = Proven {
        server: t.name.clone(),
        proven: vec![],
        failed: vec![],
        not_asked: None,
    };
    let host = match &t.ask {
        Ok(host) => host,
        Err(why) => {
            p.not_asked = Some(why.clone());
            return p;
        }
    };
    match bos_status(&spec.bos, host, spec.deadline) {
        Ok(()) => p
            .proven
            .push(format!("bosserver on {host} accepted kvno {kvno}")),
        Err(e) => p.failed.push(format!("bosserver on {host}: {e}")),
    }
    if t.db {
        for (service, port) in UBIK {
            match sync_site(&spec.udebug, host, port, spec.deadline) {
                Ok(sync) => p.proven.push(format!("{service} has sync site {sync}")),
                Err(e) => p.failed.push(format!("{service} on {host}: {e}")),
            }
        }
    }
    p
}

/// How often an unknown-key refusal is asked again: a bosserver looks at CellServDB's mtime
/// at most once a second, so one just bumped may refuse for a moment (seen on the live cell).
const RETRIES: u32 = 4;

/// `bos status -server HOST -localauth`: accepted, or the first `bos:` line it printed
/// (an unknown-key refusal asked again, a second apart, `RETRIES` times).
pub fn bos_status(bos: &Path, host: &str, deadline: Duration) -> Result<(), String> {
    let mut tries = 0;
    loop {
        let f = child::run(
            bos,
            &["status", "-server", host, "-localauth"],
            &[],
            deadline,
            64 * 1024,
        )
        .map_err(|e| e.to_string())?;
        match judge_bos(&f.text(), f.status.success()) {
            Err(e) if e.contains("unknown key version") && tries < RETRIES => {
                tries += 1;
                std::thread::sleep(Duration::from_secs(1));
            }
            r => return r,
        }
    }
}

/// bos's verdict from its output: exit 0 means nothing (it exits 0 when refused).
pub fn judge_bos(text: &str, exit_ok: bool) -> Result<(), String> {
    if let Some(l) = text.lines().find(|l| l.trim_start().starts_with("bos:")) {
        return Err(child::clean(l.trim()));
    }
    if !exit_ok {
        return Err(format!("bos failed: {}", child::clean(text.trim())));
    }
    Ok(())
}

/// The sync site one ubik server knows of (`udebug HOST PORT`).
pub fn sync_site(
    udebug: &Path,
    host: &str,
    port: &str,
    deadline: Duration,
) -> Result<String, String> {
    let f =
        child::run(udebug, &[host, port], &[], deadline, 64 * 1024).map_err(|e| e.to_string())?;
    judge_udebug(&f.stdout)
}

/// udebug's answer: `I am sync site` (this host), `Sync host ADDR was set` (another), or why
/// there is none.
pub fn judge_udebug(text: &str) -> Result<String, String> {
    if text.lines().any(|l| l.trim().starts_with("I am sync site")) {
        let me = text
            .lines()
            .find_map(|l| l.strip_prefix("Host's addresses are:"))
            .and_then(|a| a.split_whitespace().next())
            .unwrap_or("itself");
        return Ok(me.to_string());
    }
    if let Some(addr) = text.lines().find_map(|l| {
        l.trim()
            .strip_prefix("Sync host ")
            .and_then(|r| r.split_whitespace().next())
    }) {
        if addr != "0.0.0.0" {
            return Ok(addr.to_string());
        }
    }
    if let Some(l) = text.lines().find(|l| l.contains("return code")) {
        return Err(format!("no answer ({})", child::clean(l.trim())));
    }
    Err("no sync site".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        let p = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/livecell/");
        std::fs::read_to_string(format!("{p}{name}")).unwrap()
    }

    #[test]
    fn bos_is_judged_by_what_it_prints_from_the_live_cell() {
        let ok = fixture("bos_status_ok.stdout");
        assert_eq!(judge_bos(&ok, true), Ok(()));
        let refused = fixture("db1_kvno2_bos_status_db2.stderr");
        assert_eq!(
            judge_bos(&refused, true),
            Err(
                "bos: failed to contact host's bosserver (ticket contained unknown key \
                 version number)."
                    .into()
            )
        );
        let gone = fixture("bos_status_unreachable.stderr");
        assert!(judge_bos(&gone, true)
            .unwrap_err()
            .contains("communications failure"));
    }

    #[test]
    fn udebug_gives_the_sync_site_or_why_not() {
        assert_eq!(
            judge_udebug(&fixture("udebug_nonsync_7002.stdout")),
            Ok("10.78.0.1".into())
        );
        let sync = judge_udebug(&fixture("udebug_sync_7002.stdout")).unwrap();
        assert_eq!(sync, "10.78.0.1");
        let e = judge_udebug(&fixture("udebug_unreachable.stdout")).unwrap_err();
        assert!(
            e.starts_with("no answer (return code -1 from VOTE_Debug"),
            "{e}"
        );
    }
}

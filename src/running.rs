//! Proof from the running servers: before the afs entry moves, each server's running
//! bosserver must accept a token sealed with the new kvno; so must each database server's
//! ptserver and vlserver, which must also have a sync site; and each file server's volserver.
//!
//! `bos status -server HOST -localauth`, run on the control machine once it holds the new
//! kvno as its newest, authenticates with exactly that kvno: a bosserver that has not loaded
//! it (its KeyFileExt lacks it, or its CellServDB was never bumped, or it reads another conf
//! dir) refuses with `ticket contained unknown key version number`. bos exits 0 whatever
//! happens, so it is judged by what it prints: any `bos:` line is a refusal. `udebug HOST
//! 7002` (ptserver) and `7003` (vlserver) answer without authentication: `I am sync site`
//! or `Sync host ADDR was set …`; `return code … from VOTE_Debug` means no answer.
//!
//! A ubik client asks whichever database server it likes, and a refusal for an unknown key
//! does not make it try another: so `pts` and `vos` are pointed at one database server by a
//! private `-config` directory (mode 0700, removed afterwards) holding ThisCell, a CellServDB
//! naming only that server, and symlinks to the control machine's KeyFile and KeyFileExt (the
//! keys are never copied; the two small files written there hold no secret and nothing
//! afskeys decides from). `pts examine system:administrators` asks the ptserver, `vos
//! listaddrs` the vlserver, and `vos partinfo -server HOST` a file server's volserver; each
//! fails with a non-zero exit (`rxk: ticket contained unknown key version number`).
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
    pub pts: PathBuf,
    pub vos: PathBuf,
    /// The cell's name, and the control machine's conf dir (its keys are what `-localauth`
    /// seals with).
    pub cell: String,
    pub confdir: PathBuf,
    pub deadline: Duration,
    /// How long a machine restarted before a removal may take to come back (`restarts`).
    pub restart_wait: Duration,
    /// Off for the whole command (`--skip-running-proof`), with why.
    pub skipped: Option<String>,
    pub targets: Vec<Target>,
}

/// What the proof will not ask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotAsked {
    /// No server: the proof is off for the whole command, and why.
    Every(String),
    /// These machines, each with why (empty: every machine is asked).
    These(Vec<String>),
}

impl NotAsked {
    /// As reports list it: `every server (why)`, or each machine with why.
    pub fn lines(&self) -> Vec<String> {
        match self {
            NotAsked::Every(why) => vec![format!("every server ({why})")],
            NotAsked::These(v) => v.clone(),
        }
    }
}

impl Spec {
    /// What will not be asked: every server (and why), or each machine whose proof is off.
    pub fn not_asked(&self) -> NotAsked {
        const DATES: &str = "its fetch is confirmed only by unauthenticated bos getdate dates";
        if let Some(why) = &self.skipped {
            let also = match self.targets.iter().any(|t| t.upclient) {
                true => {
                    "; the Update Server fetches are confirmed only by unauthenticated bos \
                     getdate dates"
                }
                false => "",
            };
            return NotAsked::Every(format!("{why}{also}"));
        }
        let off = self
            .targets
            .iter()
            .filter_map(|t| t.ask.as_ref().err().map(|w| (t, w)));
        let these = off.map(|(t, why)| match t.upclient {
            true => format!("{} ({why}; {DATES})", t.name),
            false => format!("{} ({why})", t.name),
        });
        NotAsked::These(these.collect())
    }
}

/// One machine to ask.
#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    /// The host bos reaches, or why the proof is off for it.
    pub ask: Result<String, String>,
    /// A database server: its address in the cell's CellServDB (its ptserver and vlserver
    /// are asked too, there).
    pub db: Option<String>,
    /// A file server the VLDB lists: its volserver is asked too.
    pub fs: bool,
    /// Fed by the Update Server: whether it fetched is otherwise known only from
    /// unauthenticated `bos getdate -noauth` dates.
    pub upclient: bool,
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

impl Proven {
    /// Some process refused the kvno (as opposed to not answering).
    pub fn refused(&self) -> bool {
        self.failed.iter().any(|f| is_refusal(f))
    }
}

/// A failure that is a refusal of the token: an unknown kvno, or a ticket it could not open.
pub fn is_refusal(failed: &str) -> bool {
    failed.contains("key version") || failed.contains("ticket")
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
    let mut note = |what: String, r: Result<String, String>| match r {
        Ok(done) => p.proven.push(format!("{what} {done}")),
        Err(e) => p.failed.push(format!("{what}: {e}")),
    };
    let accepted = format!("accepted kvno {kvno}");
    let bos = bos_status(&spec.bos, host, spec.deadline);
    // A bosserver that still refused after its retries has not reloaded: its machine's
    // other processes are asked once each, not retried for as long again.
    let tries = match &bos {
        Err(e) if is_refusal(e) => 0,
        _ => RETRIES,
    };
    note(
        format!("bosserver on {host}"),
        bos.map(|()| accepted.clone()),
    );
    if let Some(addr) = &t.db {
        for (service, port) in UBIK {
            let r = sync_site(&spec.udebug, addr, port, spec.deadline);
            note(service.to_string(), r.map(|s| format!("has sync site {s}")));
        }
        for (service, r) in ask_ubik(spec, &t.name, addr, tries) {
            note(format!("{service} on {addr}"), r.map(|()| accepted.clone()));
        }
    }
    if t.fs {
        let r = volserver(spec, host, tries).map(|()| accepted.clone());
        note(format!("volserver on {host}"), r);
    }
    p
}

/// How often an unknown-key refusal is asked again: a bosserver looks at CellServDB's mtime
/// at most once a second, so one just bumped may refuse for a moment (seen on the live cell).
const RETRIES: u32 = 4;

/// `bos status -server HOST -localauth`: accepted, or the first `bos:` line it printed.
pub fn bos_status(bos: &Path, host: &str, deadline: Duration) -> Result<(), String> {
    retrying(RETRIES, || {
        let args = ["status", "-server", host, "-localauth"];
        let f = child::run(bos, &args, &[], deadline, 64 * 1024).map_err(|e| e.to_string())?;
        judge_bos(&f.text(), f.status.success())
    })
}

/// Ask again, a second apart, up to `again` times, while the answer is an unknown-key
/// refusal.
fn retrying(again: u32, mut ask: impl FnMut() -> Result<(), String>) -> Result<(), String> {
    let mut tries = 0;
    loop {
        match ask() {
            Err(e) if e.contains("unknown key version") && tries < again => {
                tries += 1;
                std::thread::sleep(Duration::from_secs(1));
            }
            r => return r,
        }
    }
}

/// A ptserver's and a vlserver's answer to an authenticated call, asked at `addr` alone.
fn ask_ubik(
    spec: &Spec,
    name: &str,
    addr: &str,
    tries: u32,
) -> Vec<(&'static str, Result<(), String>)> {
    let dir = match one_server_config(spec, name, addr) {
        Ok(d) => d,
        Err(e) => {
            let why = format!("could not make a -config directory for {addr}: {e}");
            return vec![("ptserver", Err(why.clone())), ("vlserver", Err(why))];
        }
    };
    let config = dir.path().to_string_lossy().into_owned();
    let common = ["-localauth", "-config", &config, "-cell", &spec.cell];
    let pts = [
        &["examine", "-nameorid", "system:administrators"][..],
        &common,
    ]
    .concat();
    let vos = [&["listaddrs", "-noresolve"][..], &common].concat();
    vec![
        (
            "ptserver",
            retrying(tries, || authenticated(spec, &spec.pts, &pts)),
        ),
        (
            "vlserver",
            retrying(tries, || authenticated(spec, &spec.vos, &vos)),
        ),
    ]
}

/// Does a file server's volserver answer (`vos partinfo`, asked once)? For the restarts.
pub fn volserver_answers(spec: &Spec, host: &str) -> Result<(), String> {
    volserver(spec, host, 0)
}

/// A file server's volserver: `vos partinfo -server HOST -localauth`.
fn volserver(spec: &Spec, host: &str, tries: u32) -> Result<(), String> {
    let config = spec.confdir.to_string_lossy().into_owned();
    let args = [
        "partinfo",
        "-server",
        host,
        "-localauth",
        "-noresolve",
        "-config",
        &config,
        "-cell",
        &spec.cell,
    ];
    retrying(tries, || authenticated(spec, &spec.vos, &args))
}

/// Run one pts or vos call: exit 0 is an answer; otherwise what it printed on stderr.
fn authenticated(spec: &Spec, program: &Path, args: &[&str]) -> Result<(), String> {
    let f = child::run(program, args, &[], spec.deadline, 64 * 1024).map_err(|e| e.to_string())?;
    judge_exit(&f.stderr, f.status.success())
}

/// pts's and vos's verdict: their exit status, with their stderr lines as the reason.
pub fn judge_exit(stderr: &str, exit_ok: bool) -> Result<(), String> {
    if exit_ok {
        return Ok(());
    }
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let mut why = child::clean(&lines.join("; "));
    if why.is_empty() {
        why = "failed, printing nothing on stderr".into();
    }
    if why.chars().count() > 300 {
        why = why.chars().take(300).collect::<String>() + "…";
    }
    Err(why)
}

/// A private conf dir naming one database server of the cell, for `-config`.
fn one_server_config(spec: &Spec, name: &str, addr: &str) -> std::io::Result<tempfile::TempDir> {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::Builder::new()
        .prefix("afskeys-proof")
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir()?;
    std::fs::write(dir.path().join("ThisCell"), format!("{}\n", spec.cell))?;
    let csdb = format!(">{} #\n{addr} #{name}\n", spec.cell);
    std::fs::write(dir.path().join("CellServDB"), csdb)?;
    for file in ["KeyFile", "KeyFileExt"] {
        let target = spec.confdir.join(file);
        if target.exists() {
            std::os::unix::fs::symlink(target, dir.path().join(file))?;
        }
    }
    Ok(dir)
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

/// What a real tool printed on the live cell (fixtures/livecell/), for the parsers' tests.
#[cfg(test)]
pub(crate) fn fixture(name: &str) -> String {
    let p = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/livecell/");
    std::fs::read_to_string(format!("{p}{name}")).unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn pts_and_vos_are_judged_by_exit_with_their_stderr_as_the_reason() {
        let pts = fixture("pts_examine_unknown_kvno.stderr");
        let e = judge_exit(&pts, false).unwrap_err();
        assert_eq!(
            e,
            "pts: ticket contained unknown key version number so couldn't look up names"
        );
        assert!(is_refusal(&e));
        let vos = fixture("vos_listvldb_unknown_kvno.stderr");
        let e = judge_exit(&vos, false).unwrap_err();
        assert_eq!(
            e,
            "Could not access the VLDB for attributes; rxk: ticket contained unknown key \
             version number"
        );
        let gone = fixture("vos_listaddrs_unreachable.stderr");
        let e = judge_exit(&gone, false).unwrap_err();
        assert!(!is_refusal(&e), "{e}");
        assert_eq!(judge_exit(&vos, true), Ok(()));
        assert_eq!(
            judge_exit("", false).unwrap_err(),
            "failed, printing nothing on stderr"
        );
        let long = "x".repeat(1000) + "\x1b[2J";
        assert_eq!(judge_exit(&long, false).unwrap_err().chars().count(), 301);
    }

    #[test]
    fn the_one_server_config_names_that_server_and_links_the_keys_without_copying() {
        let control = tempfile::tempdir().unwrap();
        std::fs::write(control.path().join("KeyFileExt"), b"secret").unwrap();
        let spec = Spec {
            bos: "bos".into(),
            udebug: "udebug".into(),
            pts: "pts".into(),
            vos: "vos".into(),
            cell: "example.org".into(),
            confdir: control.path().to_path_buf(),
            deadline: Duration::from_secs(1),
            restart_wait: Duration::from_secs(1),
            skipped: None,
            targets: vec![],
        };
        let dir = one_server_config(&spec, "db2", "10.0.0.2").unwrap();
        let read = |f: &str| std::fs::read_to_string(dir.path().join(f)).unwrap();
        assert_eq!(read("CellServDB"), ">example.org #\n10.0.0.2 #db2\n");
        assert_eq!(read("ThisCell"), "example.org\n");
        let link = std::fs::read_link(dir.path().join("KeyFileExt")).unwrap();
        assert_eq!(link, control.path().join("KeyFileExt"));
        assert!(!dir.path().join("KeyFile").exists(), "no KeyFile to link");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        let path = dir.path().to_path_buf();
        drop(dir);
        assert!(!path.exists(), "removed after use");
    }
}

//! `rotate`: start a rotation (or plan one with `--dry-run`), finish the one in progress
//! (`--resume`), or undo it (`--abort`). The steps themselves live in `rotation`.

use super::{CellPaths, Secret, Warn};
use crate::error::Error;
use crate::journal::Step;
use crate::keys::KeyType;
use crate::rotation::{self, RotateOptions};
use crate::time::fmt_time;
use serde::Serialize;

/// What the operator asked for.
pub enum RotateAction<'a> {
    /// Start one; `password` (none: random keys) is read only once the cell is open.
    Start {
        kvno: Option<i32>,
        key_type: Option<KeyType>,
        password: Option<Secret<'a>>,
        dry_run: bool,
    },
    Resume,
    Abort,
}

/// What `rotate` did: the JSON output is the variant's fields.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum RotateReport {
    Aborted(Aborted),
    Planned(Planned),
    Done(Done),
}

#[derive(Debug, Serialize)]
pub struct Aborted {
    pub aborted: bool,
    pub warnings: Vec<String>,
}

/// The plan `--dry-run` shows.
#[derive(Debug, Serialize)]
pub struct Planned {
    pub dry_run: bool,
    pub kvno: i32,
    #[serde(rename = "type")]
    pub key_type: &'static str,
    pub enctypes: Vec<i32>,
    pub old_kvno: Option<i32>,
    pub servers: Vec<String>,
    pub authdb: String,
    pub steps: Vec<String>,
    /// The machines the cell names and how each is accounted for.
    pub inventory: crate::inventory::Inventory,
    /// Why the rotation would be refused (an unaccounted machine, a VLDB not reached, a
    /// running-server proof that cannot be made from here).
    pub refused: Option<String>,
}

/// A finished rotation.
#[derive(Debug, Serialize)]
pub struct Done {
    pub kvno: i32,
    pub old_kvno: Option<i32>,
    pub cksums: Vec<EnctypeCksum>,
    pub servers: Vec<String>,
    pub activated: String,
    /// When the old key's grace ends.
    pub old_key_removable: Option<String>,
    /// What the running-server proof did not ask: every server (and why), or each machine
    /// whose proof is off.
    pub running_not_asked: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct EnctypeCksum {
    pub enctype: i32,
    pub cksum: Option<u32>,
}

/// The test hook (`test-hooks` builds only): `AFSKEYS_CRASH_AT=<step>` kills the process
/// (SIGKILL) right after that step is saved, so tests can prove a crash between steps is
/// finished by `--resume`.
#[cfg(feature = "test-hooks")]
fn step_hook() -> impl FnMut(Step) {
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

/// Without `test-hooks`, nothing happens between steps.
#[cfg(not(feature = "test-hooks"))]
fn step_hook() -> impl FnMut(Step) {
    |_: Step| {}
}

/// `rotate [--dry-run | --resume | --abort]`.
pub fn rotate(paths: &CellPaths, action: RotateAction, warn: Warn) -> Result<RotateReport, Error> {
    let cell = paths.open()?;
    let mut hook = step_hook();
    let report = match action {
        RotateAction::Abort => {
            let warnings = rotation::abort(&cell)?;
            warnings.iter().for_each(|w| warn(w));
            return Ok(RotateReport::Aborted(Aborted {
                aborted: true,
                warnings,
            }));
        }
        RotateAction::Resume => rotation::resume(&cell, &mut hook)?,
        RotateAction::Start {
            kvno,
            key_type,
            password,
            dry_run,
        } => {
            let opts = RotateOptions {
                kvno,
                key_type,
                password: password.map(super::passphrase).transpose()?,
            };
            if dry_run {
                let (plan, inventory, refused) = rotation::dry_run(&cell, &opts)?;
                return Ok(RotateReport::Planned(Planned {
                    refused,
                    inventory,
                    dry_run: true,
                    kvno: plan.kvno,
                    key_type: plan.key_type.name(),
                    enctypes: plan.enctypes.clone(),
                    old_kvno: plan.old_kvno,
                    servers: plan.servers.clone(),
                    authdb: plan.authdb.clone(),
                    steps: plan.steps(),
                }));
            }
            rotation::rotate(&cell, &opts, &mut hook)?
        }
    };
    // The grace as the entry now set says (a KDC's maximum ticket life, when it is the source).
    let entry = match cell.policy.lifetime_configured {
        true => None,
        false => cell.authdb.get().ok().flatten(),
    };
    let grace = crate::policy::grace_for(&cell.policy, entry.as_ref()).duration;
    let removable = report
        .activated
        .checked_add_signed(grace)
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC);
    Ok(RotateReport::Done(Done {
        kvno: report.kvno,
        old_kvno: report.old_kvno,
        cksums: report
            .checksums
            .iter()
            .map(|&(enctype, cksum)| EnctypeCksum { enctype, cksum })
            .collect(),
        servers: report.servers,
        activated: fmt_time(report.activated),
        old_key_removable: report.old_kvno.map(|_| fmt_time(removable)),
        running_not_asked: cell.running.not_asked().lines(),
    }))
}

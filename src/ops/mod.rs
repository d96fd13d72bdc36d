//! The use cases, one file each: typed options in, a typed report out. Reports derive
//! `Serialize` (the `--json` output is the report itself) and the CLI renders its text from
//! the same report. Nothing here prints to stdout or chooses an exit code; warnings go to the
//! caller's [`Warn`] sink as they arise.

pub mod authdb;
pub mod edit;
pub mod keytab;
pub mod list;
pub mod prune;
pub mod purge;
pub mod push;
pub mod restart;
pub mod rotate;
pub mod servers;
pub mod status;
mod upclient;
pub mod verify;

use crate::cell::Cell;
use crate::checksum::key_checksum;
use crate::error::Error;
use crate::fleet::{NoProgress, Progress};
use crate::keys::{Enctype, Key, KeyId};
use crate::store::ConfDir;
use serde::Serialize;
use std::path::PathBuf;
use zeroize::Zeroizing;

/// Where a warning goes as soon as it is known (the CLI prints it on stderr).
pub type Warn<'a> = &'a mut dyn FnMut(&str);

/// A secret read only when the use case needs it (after the checks that come first), from
/// wherever the caller reads secrets: stdin, the terminal, the kernel keyring.
pub type Secret<'a> = Box<dyn FnOnce() -> Result<Zeroizing<Vec<u8>>, Error> + 'a>;

/// Read a passphrase and refuse one that other tools would read differently from afskeys
/// (`keygen::passphrase_problem`): every way a passphrase comes in (stdin, the terminal, the
/// kernel keyring) goes through here.
pub(crate) fn passphrase(read: Secret) -> Result<Zeroizing<Vec<u8>>, Error> {
    let pw = read()?;
    match crate::keygen::passphrase_problem(&pw) {
        Some(why) => Err(Error::refused(format!(
            "the password {why}; refusing it (nothing changed)"
        ))),
        None => Ok(pw),
    }
}

/// The cell a command acts on: its control machine's conf dir and its configuration file.
#[derive(Clone)]
pub struct CellPaths {
    /// The control machine's conf dir.
    pub confdir: PathBuf,
    /// `--config`: must exist when given; absent means `<confdir>/afskeys.toml`, which may
    /// itself be absent (embedded defaults).
    pub config: Option<PathBuf>,
    /// Makes what pushes report their progress to (`wanted`: the command would show it);
    /// the CLI draws a bar on a terminal, the default draws nothing.
    pub progress: fn(wanted: bool) -> Box<dyn Progress>,
    /// `--no-vldb`: the inventory does not ask the VLDB for the cell's file servers (every
    /// output says so, and each change records it in the audit log).
    pub no_vldb: bool,
    /// `--skip-running-proof`: the running servers are not asked before the afs entry
    /// moves (recorded in the audit log).
    pub skip_running_proof: bool,
}

fn no_progress(_wanted: bool) -> Box<dyn Progress> {
    Box::new(NoProgress)
}

impl CellPaths {
    /// `confdir` when given, else `/usr/afs/etc` if it exists, else Debian's
    /// `/etc/openafs/server`.
    pub fn new(confdir: Option<PathBuf>, config: Option<PathBuf>) -> CellPaths {
        let confdir = confdir.unwrap_or_else(|| {
            let transarc = PathBuf::from("/usr/afs/etc");
            if transarc.is_dir() {
                transarc
            } else {
                PathBuf::from("/etc/openafs/server")
            }
        });
        CellPaths {
            confdir,
            config,
            progress: no_progress,
            no_vldb: false,
            skip_running_proof: false,
        }
    }

    pub fn dir(&self) -> ConfDir {
        ConfDir::new(self.confdir.clone())
    }

    /// The whole cell: config (an explicit `--config` must exist; the default may be
    /// absent), auth DB, servers, policy, and a progress report for its pushes.
    pub fn open(&self) -> Result<Cell, Error> {
        let mut cell = Cell::load(self.dir(), self.config.as_deref())?;
        cell.progress = (self.progress)(true);
        if self.no_vldb {
            cell.inventory.vldb = crate::inventory::VldbAsk::NotAsked("--no-vldb".into());
        }
        if self.skip_running_proof {
            cell.running.skipped = Some("--skip-running-proof".into());
        }
        Ok(cell)
    }

    /// The cell name: `given`, else ThisCell in the conf dir.
    pub fn cell_name(&self, given: &Option<String>) -> Result<String, Error> {
        match given {
            Some(c) if !crate::store::is_cell_name(c) => Err(Error::failed(format!(
                "--cell {c:?} is not a cell name (letters, digits, '.', '-' and '_'; not \
                 starting with '-' or '.')"
            ))),
            Some(c) => Ok(c.clone()),
            None => self.dir().this_cell().map_err(|e| {
                Error::failed(format!("{e} (give --cell to name the cell instead)")).with_source(e)
            }),
        }
    }
}

/// One key as reports show it: never its bytes unless asked for.
#[derive(Debug, Clone, Serialize)]
pub struct KeyView {
    #[serde(skip)]
    pub id: KeyId,
    pub kvno: i32,
    #[serde(rename = "type")]
    pub key_type: &'static str,
    pub enctype: Option<i32>,
    pub enctype_name: Option<&'static str>,
    pub cksum: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

impl KeyView {
    pub fn of(k: &Key, showkey: bool) -> KeyView {
        let typed = k.key_type().is_typed();
        KeyView {
            id: k.id,
            kvno: k.kvno(),
            key_type: k.key_type().name(),
            enctype: typed.then_some(k.id.subtype),
            enctype_name: if typed {
                Enctype(k.id.subtype).name()
            } else {
                None
            },
            cksum: key_checksum(k),
            key: showkey.then(|| hex::encode(k.bytes())),
        }
    }

    pub fn all<'a>(keys: impl IntoIterator<Item = &'a Key>) -> Vec<KeyView> {
        keys.into_iter().map(|k| KeyView::of(k, false)).collect()
    }
}

/// Paths as reports show them.
fn shown(paths: &[PathBuf]) -> Vec<String> {
    paths.iter().map(|p| p.display().to_string()).collect()
}

//! Why a rotation did not complete, with its kind, and the small wrappers the
//! steps share to reach the journal, the auth DB and the audit log.

use crate::authdb::{AfsEntry, AuthDbError};
use crate::cell::Cell;
use crate::crypto::CryptoError;
use crate::journal::{CellLock, JournalError, State};
use crate::keygen::KeygenError;
use crate::store::StoreError;

/// Why a rotation did not complete.
#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    /// Refused by policy or order (exit 3): another rotation, a kvno too low, an abort too late.
    #[error("refused: {0}")]
    Refused(String),
    /// Stopped part way; the journal holds the step reached (exit 1).
    #[error("{0}")]
    Stopped(String),
    /// Failed before changing anything (exit 1).
    #[error("{0}")]
    Failed(String),
    /// A step failed on something outside the rotation's own checks (ENOSPC, an unsafe dir,
    /// an unreachable KDC…) after the journal was written: the rotation is now in progress.
    #[error(
        "{source}; a rotation to kvno {kvno} is now in progress (its journal is at step \
         {step}{moved}): fix the cause and run `afskeys rotate --resume`{undo}"
    )]
    Interrupted {
        kvno: i32,
        step: &'static str,
        /// ", and the afs entry already uses it" once activated.
        moved: &'static str,
        /// ", or `afskeys rotate --abort` to undo it" before activation.
        undo: &'static str,
        #[source]
        source: Box<RotateError>,
    },
    /// The journal could not be read, written or locked (exit 1).
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The control machine's conf dir could not be read (exit 1).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The auth DB could not be read (exit 1).
    #[error("{}: {source}", db)]
    AuthDb {
        db: String,
        #[source]
        source: AuthDbError,
    },
    /// The audit log could not be opened or written (exit 1).
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    /// The new key could not be made (exit 1).
    #[error(transparent)]
    Keygen(#[from] KeygenError),
    /// The system's random number generator failed (exit 1).
    #[error(transparent)]
    Random(#[from] CryptoError),
}

impl crate::error::Kinded for RotateError {
    fn kind(&self) -> crate::error::Kind {
        match self {
            RotateError::Refused(_) => crate::error::Kind::Refused,
            _ => crate::error::Kind::Failed,
        }
    }
}

impl RotateError {
    /// An auth DB failure, named by the backend's description.
    pub fn authdb(cell: &Cell, source: AuthDbError) -> RotateError {
        RotateError::AuthDb {
            db: cell.authdb.describe(),
            source,
        }
    }
}

/// The rotation lock without waiting (a running rotation refuses this one), then the cell
/// lock, waiting for an add, remove or prune to finish.
pub fn lock(cell: &Cell) -> Result<CellLock, RotateError> {
    cell.state.lock_for_rotation().map_err(|e| match e {
        JournalError::Busy => RotateError::Refused(e.to_string()),
        e => RotateError::Journal(e),
    })
}

pub fn load(cell: &Cell) -> Result<State, RotateError> {
    Ok(cell.state.load()?)
}

pub fn save(cell: &Cell, st: &State) -> Result<(), RotateError> {
    Ok(cell.state.save(st)?)
}

/// The afs entry now.
pub fn entry(cell: &Cell) -> Result<Option<AfsEntry>, RotateError> {
    cell.authdb.get().map_err(|e| RotateError::authdb(cell, e))
}

/// One audit line.
pub fn audit(cell: &Cell, command: &str, detail: &str) -> Result<(), RotateError> {
    Ok(cell.audit.record(command, detail)?)
}

/// Everything a rotation will write, checked before anything changes: the audit log, the
/// journal and its lock, the control machine's conf dir, key files and CellServDB.
pub fn preflight(cell: &Cell) -> Result<(), RotateError> {
    cell.control.check_writable()?;
    cell.state.check_writable()?;
    cell.authdb
        .check_writable()
        .map_err(|e| RotateError::authdb(cell, e))?;
    cell.audit.preflight()?;
    Ok(())
}

//! The store's errors: each names the file and says what is wrong, and says its kind.

use crate::format::FormatError;
use crate::keys::KeySetError;
use std::io;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{}: {op}: {source}", path.display())]
    Io {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("{}: corrupt: {source}", path.display())]
    Corrupt {
        path: PathBuf,
        #[source]
        source: FormatError,
    },
    #[error("{}: {problem}", path.display())]
    Invalid { path: PathBuf, problem: String },
    #[error("{}: {problem}", path.display())]
    Unsafe { path: PathBuf, problem: String },
    #[error("{}: {source}", path.display())]
    Key {
        path: PathBuf,
        #[source]
        source: KeySetError,
    },
    /// A file that fails the checks every trusted file passes (`store::trust`).
    #[error(transparent)]
    Trust(#[from] super::trust::TrustError),
    /// The change was refused by policy (exit 3): `--if-cksum` mismatch and the like.
    #[error("refused: {0}")]
    Refused(String),
    /// The change makes no sense for these keys (exit 1): nothing to remove, and the like.
    #[error("{0}")]
    Failed(String),
}

impl StoreError {
    pub fn io(path: &Path, op: &'static str, source: io::Error) -> StoreError {
        StoreError::Io {
            path: path.to_path_buf(),
            op,
            source,
        }
    }

    pub fn corrupt(path: &Path, source: FormatError) -> StoreError {
        StoreError::Corrupt {
            path: path.to_path_buf(),
            source,
        }
    }
}

impl crate::error::Kinded for StoreError {
    /// Refused by policy, or failed.
    fn kind(&self) -> crate::error::Kind {
        match self {
            StoreError::Refused(_) => crate::error::Kind::Refused,
            _ => crate::error::Kind::Failed,
        }
    }
}

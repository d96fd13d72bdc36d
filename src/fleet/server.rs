//! What a server machine is to afskeys: the `Server` trait (one machine's KeyFile and
//! KeyFileExt, read, staged and committed), the bytes copied between machines, and the error
//! every transport reports.

use crate::keys::KeySet;

#[derive(Debug, thiserror::Error)]
#[error("server {server}: {message}")]
pub struct FleetError {
    pub server: String,
    pub message: String,
}

impl crate::error::Kinded for FleetError {
    fn kind(&self) -> crate::error::Kind {
        crate::error::Kind::Failed
    }
}

impl FleetError {
    pub fn new(server: &str, message: impl Into<String>) -> FleetError {
        FleetError {
            server: server.to_string(),
            message: message.into(),
        }
    }
}

/// The KeyFile and KeyFileExt bytes of a conf dir, as they are copied between machines.
#[derive(Clone)]
pub struct KeyFiles {
    pub keyfile: Vec<u8>,
    pub keyfileext: zeroize::Zeroizing<Vec<u8>>,
}

impl KeyFiles {
    pub fn of(set: &KeySet) -> KeyFiles {
        let (keyfile, keyfileext) = crate::store::rules::split(set);
        KeyFiles {
            keyfile,
            keyfileext,
        }
    }
}

/// A server's live key files as a stage found them (`None`: absent): what a commit must still
/// find there, or refuse (`Staged::recheck`).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Found {
    pub keyfile: Option<Vec<u8>>,
    pub keyfileext: Option<zeroize::Zeroizing<Vec<u8>>>,
}

impl Found {
    pub fn new(keyfile: Option<Vec<u8>>, keyfileext: Option<Vec<u8>>) -> Found {
        Found {
            keyfile,
            keyfileext: keyfileext.map(zeroize::Zeroizing::new),
        }
    }

    /// The keys these files hold (`None`: they are not key files).
    pub fn keys(&self) -> Option<KeySet> {
        let ext = self.keyfileext.as_ref().map(|v| &v[..]);
        crate::store::rules::merge(self.keyfile.as_deref(), ext).ok()
    }

    /// What differs between these files (as found) and `now` (as read again), in words:
    /// "KeyFile changed", "KeyFileExt appeared"…; `None` when both are the same.
    pub fn changes(&self, now: &Found) -> Option<String> {
        fn one(name: &str, was: Option<&[u8]>, is: Option<&[u8]>) -> Option<String> {
            match (was, is) {
                (a, b) if a == b => None,
                (None, Some(_)) => Some(format!("{name} appeared")),
                (Some(_), None) => Some(format!("{name} was removed")),
                _ => Some(format!("{name} changed")),
            }
        }
        let v: Vec<String> = [
            one(
                crate::store::KEYFILE,
                self.keyfile.as_deref(),
                now.keyfile.as_deref(),
            ),
            one(
                crate::store::KEYFILEEXT,
                self.keyfileext.as_ref().map(|v| &v[..]),
                now.keyfileext.as_ref().map(|v| &v[..]),
            ),
        ]
        .into_iter()
        .flatten()
        .collect();
        (!v.is_empty()).then(|| v.join(" and "))
    }

    /// The refusal of a server whose files changed after this command read them.
    pub fn refusal(server: &str, what: &str) -> FleetError {
        FleetError::new(
            server,
            format!(
                "{what} on the server while this command was replacing its key files (a hand \
                 edit, or another control machine?): not replaced, and no server was changed; \
                 run the command again once that change is done"
            ),
        )
    }
}

/// One server machine's keys.
pub trait Server: Send + Sync {
    /// The name reports and `--server` use.
    fn name(&self) -> &str;
    /// The keys the server holds now.
    fn read_keys(&self) -> Result<KeySet, FleetError>;
    /// When the server's KeyFile last changed (what `bos listkeys` prints), if known.
    fn keyfile_mtime(&self) -> Option<std::time::SystemTime> {
        None
    }
    /// Do now the work a commit left for later (removing the stage dir, trimming backups),
    /// so that it costs nothing at the next use or at disconnect. The fan-out calls it on
    /// every server at once after a push.
    fn settle(&self) {}
    /// Phase one of a two-phase push: put the files on the server as fsynced temp files
    /// beside the live ones, changing nothing the server reads.
    fn stage(&self, files: &KeyFiles) -> Result<Box<dyn Staged + '_>, FleetError>;
    /// Make the running servers reload the KeyFiles: CellServDB's mtime moved to a new whole
    /// second (what a commit does after its renames). `rotate --resume` calls it on servers
    /// that hold the new keys without the journal recording them confirmed: the process
    /// that renamed them may have died before its bump. A server that does not reload from
    /// CellServDB (a test's stand-in) need not implement it.
    fn bump_cellservdb(&self) -> Result<(), FleetError> {
        Ok(())
    }
    /// Replace the server's KeyFile and KeyFileExt with these, atomically, keeping a backup,
    /// unless the live files changed between the stage's read and the commit
    /// (`Staged::recheck`).
    fn install(&self, files: &KeyFiles) -> Result<(), FleetError> {
        install_if(self, files, None)
    }
    /// `install`, refused (`Found::refusal`, the server unchanged) unless the server still
    /// holds `read`, the keys the caller read there, when staged.
    fn install_over(&self, files: &KeyFiles, read: &KeySet) -> Result<(), FleetError> {
        install_if(self, files, Some(read))
    }
}

/// `Server::install` and `install_over`: stage, compare, commit or discard.
fn install_if<S: Server + ?Sized>(
    s: &S,
    files: &KeyFiles,
    read: Option<&KeySet>,
) -> Result<(), FleetError> {
    let staged = s.stage(files)?;
    let found = staged.found().map(Found::keys);
    let r = match (read, found) {
        (Some(read), Some(keys)) if keys.as_ref() != Some(read) => {
            Err(Found::refusal(s.name(), "its keys changed"))
        }
        _ => staged.recheck(),
    };
    match r {
        Ok(()) => staged.commit(),
        Err(e) => {
            staged.discard();
            Err(e)
        }
    }
}

/// Files staged on one server by `Server::stage`.
pub trait Staged: Send {
    /// Phase two: rename the staged files over the live ones (keeping backups) and make the
    /// server reload (bump CellServDB's mtime).
    fn commit(self: Box<Self>) -> Result<(), FleetError>;
    /// `commit`, calling `committed` as soon as the renames are done (the fan-out's skew:
    /// a transport may go on with the tidying the commit leaves). With `read_back`, the
    /// server's keys read back on the same connection right after the renames, in as few
    /// round trips as the transport can (ssh2: the reads ride with the tidying); `None`: not
    /// read back here, call `Server::read_keys`.
    fn commit_with(
        self: Box<Self>,
        read_back: bool,
        committed: &dyn Fn(),
    ) -> Result<Option<KeySet>, FleetError> {
        let _ = read_back;
        let r = self.commit();
        committed();
        r.map(|()| None)
    }
    /// Remove the staged files; the server is unchanged.
    fn discard(self: Box<Self>);
    /// The live key files as this stage read them (`None`: the transport does not say).
    fn found(&self) -> Option<&Found> {
        None
    }
    /// Read the live key files again: an error (`Found::refusal`) when they are no longer
    /// what the stage found. The fan-out asks every staged server just before the commit,
    /// and commits nowhere if one changed. A transport that does not read at stage (a test's
    /// stand-in) need not implement it.
    fn recheck(&self) -> Result<(), FleetError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_name_each_file_and_how() {
        let f = |kf: Option<&[u8]>, kx: Option<&[u8]>| {
            Found::new(kf.map(<[u8]>::to_vec), kx.map(<[u8]>::to_vec))
        };
        let was = f(Some(b"a"), None);
        assert_eq!(was.changes(&was.clone()), None);
        assert_eq!(
            was.changes(&f(Some(b"b"), None)).as_deref(),
            Some("KeyFile changed")
        );
        assert_eq!(
            was.changes(&f(None, Some(b"x"))).as_deref(),
            Some("KeyFile was removed and KeyFileExt appeared")
        );
        let e = Found::refusal("fs1", "KeyFile changed").to_string();
        assert!(
            e.starts_with("server fs1: KeyFile changed on the server while"),
            "{e}"
        );
    }
}

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
    /// Replace the server's KeyFile and KeyFileExt with these, atomically, keeping a backup.
    fn install(&self, files: &KeyFiles) -> Result<(), FleetError> {
        self.stage(files)?.commit()
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
}

//! A server whose conf dir is a directory on this machine (the control machine itself, or a
//! test's stand-in for another machine).

use super::{FleetError, KeyFiles, Server, Staged};
use crate::keys::KeySet;
use crate::store::ConfDir;

pub struct LocalServer {
    name: String,
    dir: ConfDir,
}

impl LocalServer {
    pub fn new(name: impl Into<String>, dir: ConfDir) -> LocalServer {
        LocalServer {
            name: name.into(),
            dir,
        }
    }
}

impl Server for LocalServer {
    fn name(&self) -> &str {
        &self.name
    }

    fn read_keys(&self) -> Result<KeySet, FleetError> {
        self.dir
            .read()
            .map(|s| s.keys)
            .map_err(|e| FleetError::new(&self.name, e.to_string()))
    }

    fn keyfile_mtime(&self) -> Option<std::time::SystemTime> {
        self.dir.read().ok().and_then(|s| s.keyfile_mtime)
    }

    fn bump_cellservdb(&self) -> Result<(), FleetError> {
        crate::store::atomic::bump_cellservdb(self.dir.path())
            .map_err(|e| FleetError::new(&self.name, e.to_string()))
    }

    fn stage(&self, files: &KeyFiles) -> Result<Box<dyn Staged + '_>, FleetError> {
        let staged = self
            .dir
            .stage(&files.keyfile, &files.keyfileext)
            .map_err(|e| FleetError::new(&self.name, e.to_string()))?;
        Ok(Box::new(LocalStaged {
            name: &self.name,
            staged,
        }))
    }
}

struct LocalStaged<'a> {
    name: &'a str,
    staged: crate::store::Staged,
}

impl Staged for LocalStaged<'_> {
    fn commit(self: Box<Self>) -> Result<(), FleetError> {
        self.staged
            .commit()
            .map(|_| ())
            .map_err(|e| FleetError::new(self.name, e.to_string()))
    }

    fn discard(self: Box<Self>) {
        self.staged.discard()
    }
}

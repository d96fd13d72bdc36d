//! A server whose conf dir is a directory on this machine (the control machine itself, or a
//! test's stand-in for another machine).

use super::{FleetError, Found, KeyFiles, Server, Staged};
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
        let [kx, kf] = staged.found();
        Ok(Box::new(LocalStaged {
            name: &self.name,
            found: Found::new(kf.map(<[u8]>::to_vec), kx.map(<[u8]>::to_vec)),
            staged,
        }))
    }
}

struct LocalStaged<'a> {
    name: &'a str,
    found: Found,
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

    fn found(&self) -> Option<&Found> {
        Some(&self.found)
    }

    fn recheck(&self) -> Result<(), FleetError> {
        match self.staged.recheck() {
            Ok(None) => Ok(()),
            Ok(Some(p)) => {
                let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
                let what = format!("{} changed", name.unwrap_or_default());
                Err(Found::refusal(self.name, &what))
            }
            Err(e) => Err(FleetError::new(self.name, e.to_string())),
        }
    }
}

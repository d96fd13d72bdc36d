//! A server whose conf dir is a directory on this machine (the control machine itself, or a
//! test's stand-in for another machine).

use super::{FleetError, KeyFiles, Server};
use crate::format::{read_keyfile, read_keyfileext};
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

    fn install(&self, files: &KeyFiles) -> Result<(), FleetError> {
        let err = |m: String| FleetError::new(&self.name, m);
        // Parse what we were given first: never install bytes we could not read back.
        let mut new =
            read_keyfile(&files.keyfile).map_err(|e| err(format!("KeyFile to install: {e}")))?;
        let ext = read_keyfileext(&files.keyfileext)
            .map_err(|e| err(format!("KeyFileExt to install: {e}")))?;
        for k in ext.iter() {
            new.insert(k.clone()).map_err(|e| err(e.to_string()))?;
        }
        self.dir
            .edit(|set| {
                *set = new;
                Ok(())
            })
            .map(|_| ())
            .map_err(|e| err(e.to_string()))
    }
}

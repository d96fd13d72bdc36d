//! Reading keys without changing anything: `list`/`listkeys` (the control machine's keys or
//! one server's), `string-to-key` (what a password derives to), and writing the man pages.

use super::{CellPaths, Secret};
use crate::error::Error;
use crate::keygen;
use crate::keys::Enctype;
use crate::store::Snapshot;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// The keys to list: the conf dir's, or with `server` that server's.
pub fn snapshot(paths: &CellPaths, server: Option<&str>) -> Result<Snapshot, Error> {
    let Some(name) = server else {
        return Ok(paths.dir().read()?);
    };
    let cell = paths.open()?;
    let server = cell.find_server(name)?;
    let keys = server.read_keys()?;
    Ok(Snapshot {
        keys,
        keyfile_mtime: server.keyfile_mtime(),
        warnings: vec![],
    })
}

/// What `string-to-key` shows: the derived key (it is the command's whole purpose).
#[derive(Serialize)]
pub struct Derived {
    pub cell: String,
    /// The salting principal of a Kerberos key; `null` for an rxkad key.
    pub principal: Option<String>,
    pub enctype: Option<i32>,
    /// Hex.
    pub key: String,
    pub cksum: Option<u32>,
}

/// `string-to-key`: the cell (given, else ThisCell) is settled before the password is read.
pub fn string_to_key(
    paths: &CellPaths,
    cell: &Option<String>,
    enctype: Option<Enctype>,
    principal: Option<&str>,
    password: Secret,
) -> Result<Derived, Error> {
    let cell = paths.cell_name(cell)?;
    let password = super::passphrase(password)?;
    let principal = principal.map_or_else(|| crate::keys::default_principal(&cell), str::to_string);
    let key = keygen::derive_unchecked(enctype, &password, &cell, &principal)?;
    Ok(Derived {
        cell: cell.to_ascii_lowercase(),
        principal: enctype.map(|_| principal),
        enctype: enctype.map(|e| e.0),
        key: hex::encode(key.bytes()),
        cksum: crate::checksum::key_checksum(&key),
    })
}

/// Write rendered man pages (`name`, troff) into `dir`, which is made if missing.
pub fn write_pages(dir: &Path, pages: Vec<(String, Vec<u8>)>) -> Result<Vec<PathBuf>, Error> {
    std::fs::create_dir_all(dir).map_err(|e| {
        Error::failed(format!("{}: cannot create: {e}", dir.display())).with_source(e)
    })?;
    let mut written = Vec::new();
    for (name, bytes) in pages {
        let path = dir.join(format!("{name}.1"));
        std::fs::write(&path, bytes).map_err(|e| {
            Error::failed(format!("{}: cannot write: {e}", path.display())).with_source(e)
        })?;
        written.push(path);
    }
    Ok(written)
}

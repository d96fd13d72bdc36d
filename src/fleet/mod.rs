//! The server machines of a cell: a `Server` is the KeyFiles of one machine. A local-directory
//! implementation lives here; SSH plugs into the same trait. The control machine's conf dir is
//! where every change starts; `distribute` copies its files to the others and confirms.

pub mod fanout;
pub mod local;
pub mod seen;
pub mod ssh;

use crate::keys::{Key, KeySet};

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
        KeyFiles {
            keyfile: crate::format::write_keyfile(set),
            keyfileext: crate::format::write_keyfileext(set),
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
    /// Phase one of a two-phase push: put the files on the server as fsynced temp files
    /// beside the live ones, changing nothing the server reads.
    fn stage(&self, files: &KeyFiles) -> Result<Box<dyn Staged + '_>, FleetError>;
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
    /// Remove the staged files; the server is unchanged.
    fn discard(self: Box<Self>);
}

/// Does `set` hold exactly these keys (same id, same bytes)?
pub fn holds(set: &KeySet, keys: &[Key]) -> bool {
    keys.iter()
        .all(|k| set.get(&k.id).is_some_and(|h| h.bytes() == k.bytes()))
}

/// What happened on each server when keys were distributed.
#[derive(Debug, Default)]
pub struct Distribution {
    /// First rename to last rename, when a push happened.
    pub skew: Option<std::time::Duration>,
    /// Servers that hold the keys (already did, or now do).
    pub confirmed: Vec<String>,
    /// Servers that do not, with why.
    pub missing: Vec<(String, String)>,
}

/// Make every server hold `keys`, all or none: servers that lack them get the control
/// machine's files by one two-phase push (staged everywhere first, then renamed on all at
/// once), and are read back. If any server cannot be read or staged, no server is changed.
pub fn distribute(
    servers: &[&dyn Server],
    files: &KeyFiles,
    keys: &[Key],
    parallel: usize,
    progress: bool,
) -> Distribution {
    let mut d = Distribution::default();
    let mut lacking: Vec<&dyn Server> = Vec::new();
    for (s, (name, r)) in servers.iter().zip(fanout::read_all(servers, parallel)) {
        match r {
            Ok(set) if holds(&set, keys) => d.confirmed.push(name),
            Ok(_) => lacking.push(*s),
            Err(e) => d.missing.push((name, e.message)),
        }
    }
    if lacking.is_empty() {
        return d;
    }
    if !d.missing.is_empty() {
        // One server is out of reach: change none, so no server starts using a kvno that
        // another lacks.
        for s in lacking {
            d.missing.push((
                s.name().to_string(),
                "not pushed yet: every server must be reachable first".into(),
            ));
        }
        return d;
    }
    let report = fanout::push(&lacking, files, parallel, progress);
    if !report.ok() {
        for p in &report.servers {
            let why = match (&p.staged, &p.committed) {
                (Err(e), _) | (Ok(()), Some(Err(e))) => e.message.clone(),
                _ => "not changed: the push failed elsewhere, so no server was changed".into(),
            };
            d.missing.push((p.name.clone(), why));
        }
        return d;
    }
    for (name, r) in fanout::read_all(&lacking, parallel) {
        match r {
            Ok(set) if holds(&set, keys) => d.confirmed.push(name),
            Ok(_) => d
                .missing
                .push((name, "still lacks the new key after the push".into())),
            Err(e) => d.missing.push((name, e.message)),
        }
    }
    d.skew = report.skew;
    d
}

/// Which servers lack `keys` (or cannot be read): the order invariant's check.
pub fn lacking(servers: &[&dyn Server], keys: &[Key]) -> Vec<(String, String)> {
    servers
        .iter()
        .filter_map(|s| match s.read_keys() {
            Ok(set) if holds(&set, keys) => None,
            Ok(_) => Some((s.name().to_string(), "lacks the key".to_string())),
            Err(e) => Some((s.name().to_string(), e.message)),
        })
        .collect()
}

//! Everything the administration of one cell touches, assembled from the conf dir and
//! `afskeys.toml`: the control machine's conf dir, the other servers, the auth DB, the
//! rotation state file, the audit log and the grace/interval policy.

use crate::audit::{Audit, AUDIT_FILE};
use crate::authdb::file::{FileAuthDb, DEFAULT_NAME};
use crate::authdb::kadmin::{KadminAuthDb, RemoteKdc, DEFAULT_KADMIN, DEFAULT_REMOTE_KADMIN};
use crate::authdb::AuthDb;
use crate::config::{Backend, Config};
use crate::fleet::local::LocalServer;
use crate::fleet::ssh::SshServer;
use crate::fleet::Server;
use crate::keygen::default_principal;
use crate::rotation::policy::Policy;
use crate::rotation::state::{StateFile, STATE_FILE};
use crate::store::ConfDir;

/// The name the control machine goes by in reports.
pub const CONTROL: &str = "control";

pub struct Cell {
    /// The cell name.
    pub name: String,
    /// The system control machine's conf dir: where every change starts.
    pub control: ConfDir,
    /// The other server machines.
    pub servers: Vec<Box<dyn Server>>,
    /// The control machine's conf dir seen as a server.
    pub control_server: LocalServer,
    pub authdb: Box<dyn AuthDb>,
    pub state: StateFile,
    pub audit: Audit,
    pub policy: Policy,
    /// The principal whose default salt derives typed keys from a password.
    pub principal: String,
    /// How many servers to work on at once (`[ssh] parallel`).
    pub parallel: usize,
    /// Draw progress bars on a terminal.
    pub progress: bool,
}

impl Cell {
    /// Assemble a cell from its conf dir and config. The cell name comes from the config or
    /// ThisCell. `[[servers]]` entries with `host` are reached over SSH; without it they are
    /// directories on this machine.
    pub fn open(control: ConfDir, config: &Config) -> Result<Cell, String> {
        // Without ThisCell or `cell`, key edits still work; only what needs the name fails.
        let name = match &config.cell {
            Some(c) => c.clone(),
            None => control.this_cell().unwrap_or_default(),
        };
        let principal = match (&config.authdb.principal, name.is_empty()) {
            (Some(p), _) => p.clone(),
            (None, false) => default_principal(&name),
            (None, true) if config.authdb.backend == Backend::Kadmin => {
                return Err(format!(
                    "{}: no ThisCell, and afskeys.toml names neither `cell` nor `authdb.principal`",
                    control.path().display()
                ))
            }
            (None, true) => "afs".to_string(),
        };
        let authdb: Box<dyn AuthDb> = match config.authdb.backend {
            Backend::File => Box::new(FileAuthDb::new(
                config
                    .authdb
                    .path
                    .clone()
                    .unwrap_or_else(|| control.path().join(DEFAULT_NAME)),
                principal.clone(),
            )),
            Backend::Kadmin => Box::new(kadmin_backend(&config.authdb, principal.clone())),
        };
        let mut servers: Vec<Box<dyn Server>> = Vec::new();
        for s in &config.servers {
            match &s.host {
                None => servers.push(Box::new(LocalServer::new(
                    s.name.clone(),
                    ConfDir::new(s.confdir.clone()),
                ))),
                Some(_) => servers.push(Box::new(SshServer::new(s, &config.ssh))),
            }
        }
        Ok(Cell {
            name,
            state: StateFile::new(control.path().join(STATE_FILE)),
            audit: Audit::new(
                config
                    .audit
                    .path
                    .clone()
                    .unwrap_or_else(|| control.path().join(AUDIT_FILE)),
            ),
            policy: Policy::from_config(config),
            control_server: LocalServer::new(CONTROL, control.clone()),
            control,
            servers,
            authdb,
            principal,
            parallel: config.ssh.parallel,
            progress: true,
        })
    }

    /// The control machine as a server, followed by the others: every machine that must hold
    /// the auth DB's key.
    pub fn all_servers(&self) -> Vec<&dyn Server> {
        let mut v: Vec<&dyn Server> = vec![&self.control_server];
        v.extend(self.servers.iter().map(|s| s.as_ref()));
        v
    }

    /// The server `--server NAME` means: a configured `[[servers]]` name, or the control
    /// machine itself (`control`, `localhost`, or this machine's host name).
    pub fn find_server(&self, name: &str) -> Result<&dyn Server, String> {
        if let Some(s) = self.servers.iter().find(|s| s.name() == name) {
            return Ok(s.as_ref());
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        let host = host.trim();
        let short = host.split('.').next().unwrap_or(host);
        if [CONTROL, "localhost", "127.0.0.1", host, short].contains(&name) {
            return Ok(&self.control_server);
        }
        let known: Vec<&str> = std::iter::once(CONTROL)
            .chain(self.servers.iter().map(|s| s.name()))
            .collect();
        Err(format!(
            "unknown server {name:?}: the configured servers are {} (see [[servers]] in afskeys.toml)",
            known.join(", ")
        ))
    }

    /// The other servers only.
    pub fn other_servers(&self) -> Vec<&dyn Server> {
        self.servers.iter().map(|s| s.as_ref()).collect()
    }
}

/// The MIT backend `[authdb]` describes: kadmin.local on the local database, or `kadmin`
/// through kadmind when `server` is set; the admin keytab (when given) also gets tickets.
fn kadmin_backend(c: &crate::config::AuthDbConfig, principal: String) -> KadminAuthDb {
    let default = if c.server.is_some() {
        DEFAULT_REMOTE_KADMIN
    } else {
        DEFAULT_KADMIN
    };
    let db = KadminAuthDb::new(
        principal,
        c.kadmin.clone().unwrap_or_else(|| default.into()),
    );
    match (&c.admin_principal, &c.admin_keytab) {
        (Some(p), Some(k)) => {
            db.with_remote(RemoteKdc::new(c.server.clone(), p.clone(), k.clone()))
        }
        _ => db,
    }
}

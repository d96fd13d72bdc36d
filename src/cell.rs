//! The composition root: everything the administration of one cell touches, assembled from
//! the conf dir and `afskeys.toml` — the control machine's conf dir, the other servers, the
//! auth DB, the journal (rotation state and cell lock), the audit log and the grace/interval
//! policy. The only module that reads `Config`; it imports no use case (`rotation`, `admin`).

use crate::audit::{Audit, AUDIT_FILE};
use crate::authdb::file::{FileAuthDb, DEFAULT_NAME};
use crate::authdb::heimdal::{HeimdalAuthDb, DEFAULT_HEIMDAL_KADMIN};
use crate::authdb::kadmin::{KadminAuthDb, RemoteKdc, DEFAULT_KADMIN, DEFAULT_REMOTE_KADMIN};
use crate::authdb::AuthDb;
use crate::config::{
    Backend, Config, ConfigError, DistributionConfig, Method, ServerConfig, Transport, CONFIG_FILE,
};
use crate::fleet::local::LocalServer;
use crate::fleet::openssh::{OpensshServer, OpensshTarget};
use crate::fleet::ssh::{SshServer, SshTarget};
use crate::fleet::upserver::{Upclient, Upserver};
use crate::fleet::{NoProgress, Progress, Server};
use crate::journal::{StateFile, STATE_FILE};
use crate::keys::{default_principal, FALLBACK_PRINCIPAL};
use crate::policy::Policy;
use crate::store::ConfDir;
use std::path::{Path, PathBuf};

/// Why a cell could not be assembled or a server found.
#[derive(Debug, thiserror::Error)]
pub enum CellError {
    #[error(
        "{}: no ThisCell, and afskeys.toml names neither `cell` nor `authdb.principal`",
        confdir.display()
    )]
    NoCellName { confdir: PathBuf },
    #[error(
        "unknown server {name:?}: the configured servers are {} (see [[servers]] in afskeys.toml)",
        known.join(", ")
    )]
    UnknownServer { name: String, known: Vec<String> },
    #[error("[distribution] state_dir {}: {problem}", path.display())]
    StateDir { path: PathBuf, problem: String },
    #[error(transparent)]
    Config(#[from] ConfigError),
}

impl crate::error::Kinded for CellError {
    fn kind(&self) -> crate::error::Kind {
        match self {
            CellError::UnknownServer { .. } => crate::error::Kind::Failed,
            _ => crate::error::Kind::Config,
        }
    }
}

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
    /// Told how a push to the servers advances (the CLI draws a bar; default: nothing).
    pub progress: Box<dyn Progress>,
    /// `[distribution] method = "upserver"`: the servers pull through the Update Server.
    pub upserver: Option<Upserver>,
}

impl Cell {
    /// Assemble a cell from its conf dir and the config file: `config` when given (it must
    /// exist), else `<confdir>/afskeys.toml` (absent = the embedded defaults).
    pub fn load(control: ConfDir, config: Option<&Path>) -> Result<Cell, CellError> {
        let (path, required) = match config {
            Some(p) => (p.to_path_buf(), true),
            None => (control.path().join(CONFIG_FILE), false),
        };
        let config = Config::load(&path, required)?;
        Cell::open(control, &config)
    }

    /// Assemble a cell from its conf dir and config. The cell name comes from the config or
    /// ThisCell. `[[servers]]` entries with `host` are reached over SSH; without it they are
    /// directories on this machine.
    pub fn open(control: ConfDir, config: &Config) -> Result<Cell, CellError> {
        // Without ThisCell or `cell`, key edits still work; only what needs the name fails.
        let name = match &config.cell {
            Some(c) => c.clone(),
            None => control.this_cell().unwrap_or_default(),
        };
        let principal = afs_principal(&control, config, &name)?;
        let upserver = upserver(&config.distribution);
        // upclient copies the whole conf dir to every server: afskeys' own state (the journal
        // holds a pending key) lives outside it in such cells.
        let state_dir = match upserver {
            Some(_) => state_dir(&config.distribution.state_dir)?,
            None => control.path().to_path_buf(),
        };
        let authdb = authdb_backend(&state_dir, &control, config, &principal);
        let servers = config.servers.iter().map(|s| server(s, config)).collect();
        Ok(Cell {
            name,
            state: StateFile::new(state_dir.join(STATE_FILE)),
            audit: Audit::new(
                config
                    .audit
                    .path
                    .clone()
                    .unwrap_or_else(|| state_dir.join(AUDIT_FILE)),
            ),
            policy: Policy::new(config.token_lifetime, config.rotation_interval)
                .with_grace_source(config.token_lifetime_set, config.clock_skew),
            control_server: LocalServer::new(CONTROL, control.clone()),
            control,
            servers,
            authdb,
            principal,
            parallel: config.ssh.parallel,
            progress: Box::new(NoProgress),
            upserver,
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
    pub fn find_server(&self, name: &str) -> Result<&dyn Server, CellError> {
        if let Some(s) = self.servers.iter().find(|s| s.name() == name) {
            return Ok(s.as_ref());
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        let host = host.trim();
        let short = host.split('.').next().unwrap_or(host);
        if [CONTROL, "localhost", "127.0.0.1", host, short].contains(&name) {
            return Ok(&self.control_server);
        }
        let known = std::iter::once(CONTROL)
            .chain(self.servers.iter().map(|s| s.name()))
            .map(str::to_string)
            .collect();
        Err(CellError::UnknownServer {
            name: name.to_string(),
            known,
        })
    }

    /// The other servers only.
    pub fn other_servers(&self) -> Vec<&dyn Server> {
        self.servers.iter().map(|s| s.as_ref()).collect()
    }
}

/// The afs principal: configured, else `afs/<cell>@<CELL>`; a KDC backend needs a cell name.
fn afs_principal(control: &ConfDir, config: &Config, name: &str) -> Result<String, CellError> {
    match (&config.authdb.principal, name.is_empty()) {
        (Some(p), _) => Ok(p.clone()),
        (None, false) => Ok(default_principal(name)),
        (None, true) if config.authdb.backend != Backend::File => Err(CellError::NoCellName {
            confdir: control.path().to_path_buf(),
        }),
        (None, true) => Ok(FALLBACK_PRINCIPAL.to_string()),
    }
}

/// `[distribution] state_dir`, created when missing (mode 0700, owned by the invoking user,
/// in a parent others cannot write to unless it is sticky); an existing one must be a
/// directory (not a symlink) owned by root or the invoking user and not writable by group or
/// others, since the journal in it holds a pending key.
fn state_dir(path: &Path) -> Result<PathBuf, CellError> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    let bad = |problem: String| CellError::StateDir {
        path: path.to_path_buf(),
        problem,
    };
    let md = match std::fs::symlink_metadata(path) {
        Ok(md) => md,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            crate::store::trust::check_parent(path).map_err(|e| bad(e.to_string()))?;
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(path)
                .and_then(|_| {
                    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
                })
                .map_err(|e| bad(format!("cannot create it: {e}")))?;
            return Ok(path.to_path_buf());
        }
        Err(e) => return Err(bad(format!("cannot stat it: {e}"))),
    };
    let me = crate::store::trust::me();
    if md.file_type().is_symlink() {
        return Err(bad(
            "is a symbolic link; name the directory itself in [distribution] state_dir".into(),
        ));
    }
    if !md.is_dir() {
        return Err(bad("is not a directory".into()));
    }
    if md.uid() != 0 && md.uid() != me {
        return Err(bad(format!(
            "owned by uid {}, not by root or you (uid {me}): the journal there holds a \
             pending key; chown it",
            md.uid()
        )));
    }
    if md.mode() & 0o022 != 0 {
        return Err(bad(format!(
            "writable by group or others (mode {:o}): the journal there holds a pending key; \
             chmod 700 it",
            md.mode() & 0o7777
        )));
    }
    Ok(path.to_path_buf())
}

/// The Update Server `[distribution]` describes, when the servers pull.
fn upserver(d: &DistributionConfig) -> Option<Upserver> {
    if d.method != Method::Upserver {
        return None;
    }
    let poll = d.poll.unwrap_or_else(|| {
        (d.interval / 10).clamp(
            std::time::Duration::from_secs(1),
            std::time::Duration::from_secs(30),
        )
    });
    Some(Upserver {
        interval: d.interval,
        deadline: d.deadline.unwrap_or(d.interval * 3),
        poll,
        dir: d.dir.clone(),
        bos: d.bos.clone(),
        instance: d.instance.clone(),
        clients: d
            .upclients
            .iter()
            .map(|u| Upclient {
                name: u.name.clone(),
                host: u.host.clone(),
            })
            .collect(),
    })
}

/// The auth DB backend `[authdb]` names; the file backend defaults into `state_dir`.
fn authdb_backend(
    state_dir: &Path,
    control: &ConfDir,
    config: &Config,
    principal: &str,
) -> Box<dyn AuthDb> {
    match config.authdb.backend {
        Backend::File => {
            let db = FileAuthDb::new(
                config
                    .authdb
                    .path
                    .clone()
                    .unwrap_or_else(|| state_dir.join(DEFAULT_NAME)),
                principal.to_string(),
            );
            // A named file can be misnamed: judge its absence by the key files (issue 11).
            match config.authdb.path {
                Some(_) => Box::new(
                    db.guarded_by(control.clone(), StateFile::new(state_dir.join(STATE_FILE))),
                ),
                None => Box::new(db),
            }
        }
        Backend::Kadmin => Box::new(kadmin_backend(&config.authdb, principal.to_string())),
        Backend::Heimdal => Box::new(heimdal_backend(&config.authdb, principal.to_string())),
    }
}

/// One `[[servers]]` entry as the transport's own target: a local directory without `host`,
/// else SSH through the `[ssh] transport`.
fn server(s: &ServerConfig, config: &Config) -> Box<dyn Server> {
    let Some(host) = &s.host else {
        return Box::new(LocalServer::new(
            s.name.clone(),
            ConfDir::new(s.confdir.clone()),
        ));
    };
    if config.ssh.transport == Transport::Openssh {
        return Box::new(OpensshServer::new(OpensshTarget {
            name: s.name.clone(),
            host: host.clone(),
            // The defaults are left to ssh_config (see fleet::openssh).
            port: (s.port != 22).then_some(s.port),
            user: (s.user != "root").then(|| s.user.clone()),
            confdir: s.confdir.clone(),
            identity: config.ssh.identity.clone(),
            known_hosts: config.ssh.known_hosts.clone(),
            config: config.ssh.config.clone(),
            timeout: config.ssh.timeout,
        }));
    }
    Box::new(SshServer::new(SshTarget {
        name: s.name.clone(),
        host: host.clone(),
        port: s.port,
        user: s.user.clone(),
        confdir: s.confdir.clone(),
        identity: config.ssh.identity.clone(),
        known_hosts: config.ssh.known_hosts.clone(),
        timeout: config.ssh.timeout,
    }))
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

/// The Heimdal backend `[authdb]` describes: `kadmin -l`, or kadmind when `server` is set;
/// the admin keytab (when given) also gets tickets.
fn heimdal_backend(c: &crate::config::AuthDbConfig, principal: String) -> HeimdalAuthDb {
    let db = HeimdalAuthDb::new(
        principal,
        c.kadmin
            .clone()
            .unwrap_or_else(|| DEFAULT_HEIMDAL_KADMIN.into()),
    );
    match (&c.admin_principal, &c.admin_keytab) {
        (Some(p), Some(k)) => {
            db.with_remote(RemoteKdc::new(c.server.clone(), p.clone(), k.clone()))
        }
        _ => db,
    }
}

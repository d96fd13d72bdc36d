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
use crate::inventory::{self, Accounted, How};
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
    /// A machine the cell names is not accounted for, or could not be checked.
    #[error("refused: {0}")]
    Inventory(String),
    #[error("{}: {problem}", path.display())]
    ThisCell { path: PathBuf, problem: String },
}

impl crate::error::Kinded for CellError {
    fn kind(&self) -> crate::error::Kind {
        match self {
            CellError::UnknownServer { .. } => crate::error::Kind::Failed,
            CellError::Inventory(_) => crate::error::Kind::Refused,
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
    /// How the machines the cell names are found and matched to this configuration.
    pub inventory: inventory::Spec,
    /// Whom the running-server proof asks, and with what.
    pub running: crate::running::Spec,
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
        // Without ThisCell the name is unknown; a ThisCell that does not hold a cell name
        // (a path or principal separator, say) is refused, naming the file.
        let name = match &config.cell {
            Some(c) => c.clone(),
            None => match control.this_cell() {
                Ok(c) => c,
                Err(crate::store::StoreError::Invalid { path, problem }) => {
                    return Err(CellError::ThisCell { path, problem })
                }
                Err(_) => String::new(),
            },
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
        let inventory = inventory_spec(&control, config, &name);
        Ok(Cell {
            running: running_spec(config, &name, control.path()),
            inventory,
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
        let host = this_host();
        let host = host.as_str();
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

    /// The inventory before a change to the cell's keys (`command` names it): refused while
    /// a machine the cell names is unaccounted for or could not be checked; what was not
    /// checked by the operator's choice (`--no-vldb`) is recorded in the audit log with the
    /// command's own record.
    pub fn inventory_for_change(&self, command: &str) -> Result<inventory::Inventory, CellError> {
        let inv = inventory::gather(&self.inventory);
        if let Some(why) = inv.refusal() {
            return Err(CellError::Inventory(why));
        }
        if !inv.unchecked.is_empty() {
            self.audit.defer(command, &inv.audit_line());
        }
        Ok(inv)
    }

    /// The other servers only.
    pub fn other_servers(&self) -> Vec<&dyn Server> {
        self.servers.iter().map(|s| s.as_ref()).collect()
    }
}

/// What the inventory matches the cell's machines to: the control machine (by its own
/// interface addresses and host name), every `[[servers]]` entry (its `host` and
/// `afs_host`), every upclient, and every machine left out.
fn inventory_spec(control: &ConfDir, config: &Config, cell: &str) -> inventory::Spec {
    let mut accounted = vec![Accounted {
        label: CONTROL.into(),
        how: How::Control,
        hosts: vec![this_host()],
    }];
    accounted.extend(config.servers.iter().map(|s| Accounted {
        label: s.name.clone(),
        how: How::Server,
        hosts: s.host.iter().chain(&s.afs_host).cloned().collect(),
    }));
    accounted.extend(config.distribution.upclients.iter().map(|u| Accounted {
        label: u.name.clone(),
        how: How::Upclient,
        hosts: vec![u.host.clone()],
    }));
    accounted.extend(config.inventory.left_out.iter().map(|l| Accounted {
        label: l.host.clone(),
        how: How::LeftOut(l.reason.clone()),
        hosts: vec![l.host.clone()],
    }));
    inventory::Spec {
        cell: cell.to_string(),
        cellservdb: control.path().join("CellServDB"),
        confdir: control.path().to_path_buf(),
        vldb: inventory::VldbAsk::Ask {
            vos: config.inventory.vos.clone(),
            deadline: config.inventory.timeout,
        },
        accounted,
        also: config.inventory.also.clone(),
        resolve_deadline: config.inventory.timeout,
    }
}

/// This machine's host name (empty when it cannot be read).
fn this_host() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    host.trim().to_string()
}

/// Whom the running-server proof asks: the control machine's own bosserver, each
/// `[[servers]]` entry at its `afs_host` or `host` (a directory server without `afs_host`
/// cannot be asked), each upclient at its host. Database servers are marked later, from
/// the CellServDB.
fn running_spec(config: &Config, cell: &str, confdir: &Path) -> crate::running::Spec {
    use crate::running::Target;
    let fed = |name: &str| config.distribution.upclients.iter().any(|u| u.name == name);
    let mut targets = vec![Target {
        name: CONTROL.into(),
        ask: Ok("localhost".into()),
        db: None,
        fs: false,
        upclient: false,
    }];
    targets.extend(config.servers.iter().map(|s| Target {
        upclient: fed(&s.name),
        name: s.name.clone(),
        ask: match (s.afs_host.as_ref().or(s.host.as_ref()), s.running_proof) {
            (_, false) => Err("running_proof = false in afskeys.toml".to_string()),
            (None, true) => Err("a directory server without afs_host".to_string()),
            (Some(h), true) => Ok(h.clone()),
        },
        db: None,
        fs: false,
    }));
    // An upclient that is also a [[servers]] entry is that entry (asked once, or not at all
    // when its proof is off there).
    let upclients = config.distribution.upclients.iter();
    targets.extend(
        upclients
            .filter(|u| !config.servers.iter().any(|s| s.name == u.name))
            .map(|u| Target {
                name: u.name.clone(),
                ask: Ok(u.host.clone()),
                db: None,
                fs: false,
                upclient: true,
            }),
    );
    crate::running::Spec {
        bos: config.running_proof.bos.clone(),
        udebug: config.running_proof.udebug.clone(),
        pts: config.running_proof.pts.clone(),
        vos: config.running_proof.vos.clone(),
        cell: cell.to_string(),
        confdir: confdir.to_path_buf(),
        deadline: config.running_proof.timeout,
        restart_wait: config.running_proof.restart_wait,
        skipped: None,
        targets,
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
    )
    .with_deadline(c.timeout.unwrap_or(crate::authdb::DEFAULT_DEADLINE));
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
    )
    .with_deadline(c.timeout.unwrap_or(crate::authdb::DEFAULT_DEADLINE));
    match (&c.admin_principal, &c.admin_keytab) {
        (Some(p), Some(k)) => {
            db.with_remote(RemoteKdc::new(c.server.clone(), p.clone(), k.clone()))
        }
        _ => db,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_upclient_with_a_servers_entry_is_asked_as_that_entry() {
        let t = "[distribution]\nmethod = \"upserver\"\n\
                 [[distribution.upclients]]\nname = \"fs1\"\nhost = \"10.0.0.1\"\n\
                 [[distribution.upclients]]\nname = \"fs2\"\nhost = \"10.0.0.2\"\n\
                 [[servers]]\nname = \"fs1\"\nhost = \"fs1.ssh\"\nrunning_proof = false\n\
                 [[servers]]\nname = \"dir\"\nconfdir = \"/x\"\n";
        let c = Config::parse(t, Path::new("afskeys.toml")).unwrap();
        let asked: Vec<(String, Result<String, String>)> =
            running_spec(&c, "example.org", Path::new("/nonexistent"))
                .targets
                .into_iter()
                .map(|t| (t.name, t.ask))
                .collect();
        assert_eq!(
            asked,
            vec![
                ("control".into(), Ok("localhost".into())),
                (
                    "fs1".into(),
                    Err("running_proof = false in afskeys.toml".into())
                ),
                (
                    "dir".into(),
                    Err("a directory server without afs_host".into())
                ),
                ("fs2".into(), Ok("10.0.0.2".into())),
            ]
        );
    }
}

//! A server machine reached over SSH: the ssh2 crate (libssh2) carries the connection, host
//! key check and login; the conf dir is read, staged and replaced over SFTP, spoken by this
//! module on an ssh2 channel so that OpenSSH's extensions are usable. What the conf-dir
//! names, checks and backups are comes from `store::rules`, shared with the local store.
//!
//! **One connection per server.** It is opened on first use and kept (behind a Mutex) for
//! every later call on the same `SshServer`: stage, commit and a verify that reads the files
//! back cost one handshake and one SFTP subsystem together, and no remote process is started
//! besides OpenSSH's own `sftp-server`. Requests are pipelined: reading both key files takes
//! two round trips, staging two (the survey rides with the stage's opens, the backups with
//! the writes; more only for backups copied where hard links are missing), a commit one, and
//! the tidying it leaves rides along (its removals and listings follow the renames: two
//! round trips for both): a push is 5 round trips per server with the SFTP start. A commit
//! that reads the keys back (`Staged::commit_with`) adds the OPENs to the first and the
//! reads to the second. Tidying still pending (a commit cut short) is done before the next
//! use or by `Server::settle`. A
//! connection is closed without waiting (SSH_MSG_DISCONNECT, then the socket shut down). A
//! connection that turns out dead when reused is replaced once.
//!
//! The parts, one file each:
//! - `connect`: TCP, handshake, the host key checked against `known_hosts`, login;
//! - `known_hosts`: OpenSSH's known_hosts matching (why not libssh2's: see there);
//! - `sftp`: the pipelined SFTP v3 client (why not libssh2's: see there), on `wire`, the
//!   packet encoding and the reply parser;
//! - `stage`: phase one of a push (survey, upload, fsync, backups by hard link);
//! - `commit`: phase two (`posix-rename` over the live files, CellServDB bump, dir fsync; or
//!   `mv -f` in the login shell), and discard;
//! - `tidy`: what a commit leaves for later (the stage dir, old backups, abandoned stages).

mod commit;
mod connect;
pub mod known_hosts;
mod sftp;
mod stage;
mod tidy;
pub mod wire;

pub use crate::store::rules::STAGE_PREFIX;
pub use crate::store::BACKUP_DIR;
pub use commit::sh_quote;
pub use known_hosts::{known_hosts_name, HostCheck, KnownHosts};
pub use sftp::round_trips as sftp_round_trips;

use super::{FleetError, KeyFiles, Server, Staged};
use crate::keys::KeySet;
use crate::store::rules;
use crate::store::rules::CELLSERVDB;
use crate::store::{KEYFILE, KEYFILEEXT};
use sftp::Sftp;
use ssh2::Session;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use wire::{Reply, Req};

/// How `commit` puts the staged files in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplaceMethod {
    /// `posix-rename@openssh.com` when the server offers it, else `ShellMv`.
    Auto,
    /// The SFTP extension: rename(2) over the live file, no process started.
    PosixRename,
    /// `mv -f` run by the login shell over an exec channel (paths single-quoted).
    ShellMv,
}

/// Where one server's conf dir is and how to log in to it (`cell.rs` builds it from
/// `[[servers]]` and `[ssh]`).
#[derive(Debug, Clone)]
pub struct SshTarget {
    /// The name reports and `--server` use.
    pub name: String,
    /// Host name or address (an IPv6 address may be in brackets).
    pub host: String,
    pub port: u16,
    pub user: String,
    /// The KeyFile directory on that machine.
    pub confdir: PathBuf,
    /// The private key to log in with; `None`: the agent, then `~/.ssh/id_*`.
    pub identity: Option<PathBuf>,
    /// `None`: `~/.ssh/known_hosts` of the user running afskeys.
    pub known_hosts: Option<PathBuf>,
    /// Bounds the TCP connect and every SSH operation.
    pub timeout: Duration,
}

/// One server machine's conf dir, reached over SSH.
pub struct SshServer {
    name: String,
    host: String,
    port: u16,
    user: String,
    confdir: PathBuf,
    identity: Option<PathBuf>,
    known_hosts: PathBuf,
    timeout: Duration,
    replace: ReplaceMethod,
    conn: Mutex<Option<Conn>>,
    /// Work left after a commit (stage dir, old backups): done before the next use.
    tidy: Mutex<Vec<tidy::Tidy>>,
}

struct Conn {
    sess: Session,
    sftp: Sftp,
    /// Which connection this is: a staged push commits only on the one that staged it.
    gen: u64,
    /// The socket under `sess`, shut down when the connection is dropped.
    tcp: Option<std::net::TcpStream>,
}

impl Drop for Conn {
    /// Close without waiting: SSH_MSG_DISCONNECT is sent (no reply is expected), then the
    /// socket is shut down, so that libssh2 freeing the SFTP channel and the session (which
    /// would wait for the server to confirm the channel's close, up to the timeout) fails
    /// at once instead.
    fn drop(&mut self) {
        self.sess.set_timeout(1000);
        let _ = self.sess.disconnect(None, "afskeys done", None);
        if let Some(t) = &self.tcp {
            let _ = t.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// Why an operation failed. Every kind but `Op` means the connection is unusable.
#[derive(Debug, thiserror::Error)]
enum Fail {
    #[error("connection lost ({what}: {source})")]
    Lost {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Wire(#[from] wire::WireError),
    #[error("{0}")]
    Broken(String),
    /// This operation failed; the connection is fine.
    #[error("{0}")]
    Op(String),
    /// This operation was refused while the server still owes replies it may never send
    /// (`Sftp::batch_checked`): the connection is dropped, and the operation not retried.
    #[error("{0}")]
    Stuck(String),
}

fn op(m: impl Into<String>) -> Fail {
    Fail::Op(m.into())
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl SshServer {
    /// A server from its target. Nothing is opened until the first call.
    pub fn new(t: SshTarget) -> SshServer {
        let host = t
            .host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .map(str::to_string)
            .unwrap_or(t.host);
        SshServer {
            name: t.name,
            host,
            port: t.port,
            user: t.user,
            confdir: t.confdir,
            identity: t.identity,
            known_hosts: t
                .known_hosts
                .unwrap_or_else(|| crate::unix_user::home_dir().join(".ssh/known_hosts")),
            timeout: t.timeout,
            replace: ReplaceMethod::Auto,
            conn: Mutex::new(None),
            tidy: Mutex::new(Vec::new()),
        }
    }

    /// Choose how commits replace the live files (default `Auto`).
    pub fn with_replace_method(mut self, m: ReplaceMethod) -> SshServer {
        self.replace = m;
        self
    }

    /// `user@host:port`, as messages name the server.
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("{}@[{}]:{}", self.user, self.host, self.port)
        } else {
            format!("{}@{}:{}", self.user, self.host, self.port)
        }
    }

    /// The name OpenSSH looks this server up by in known_hosts.
    pub fn known_hosts_name(&self) -> String {
        known_hosts_name(&self.host, self.port)
    }

    pub fn confdir(&self) -> &Path {
        &self.confdir
    }

    fn err(&self, message: impl std::fmt::Display) -> FleetError {
        FleetError::new(&self.name, format!("{}: {message}", self.address()))
    }

    fn path(&self, name: &str) -> PathBuf {
        self.confdir.join(name)
    }

    /// Finish pending tidying and close the connection (dropping the server does this too).
    pub fn disconnect(&self) {
        let mut guard = lock(&self.conn);
        if let Some(c) = guard.as_mut() {
            self.run_tidy(c);
        }
        // Dropping the connection closes it without waiting (see `Conn`'s drop).
        guard.take();
    }

    /// Open (or reuse) the connection and run `f` on it. A broken connection is dropped;
    /// when it was a kept one (the server may have closed it while idle), `f` runs once more
    /// on a new connection.
    fn with_conn<T>(&self, f: impl Fn(&mut Conn) -> Result<T, Fail>) -> Result<T, FleetError> {
        let mut guard = lock(&self.conn);
        let mut reused = guard.is_some();
        loop {
            if guard.is_none() {
                *guard = Some(self.connect()?);
            }
            let conn = guard.as_mut().expect("connected above");
            self.run_tidy(conn);
            match f(conn) {
                Ok(t) => return Ok(t),
                Err(Fail::Op(m)) => return Err(self.err(m)),
                Err(Fail::Stuck(m)) => {
                    *guard = None;
                    return Err(self.err(m));
                }
                Err(broken) => {
                    *guard = None;
                    if !reused {
                        return Err(self.err(broken));
                    }
                    reused = false;
                }
            }
        }
    }

    /// Read both key files in two round trips; absent is `None`.
    fn read_pair(&self, c: &mut Conn) -> Result<[Option<Vec<u8>>; 2], Fail> {
        let paths = [self.path(KEYFILE), self.path(KEYFILEEXT)];
        let got = c.sftp.read_files(&[&paths[0], &paths[1]])?;
        let mut it = got.into_iter();
        Ok([it.next().flatten(), it.next().flatten()])
    }

    /// CellServDB's mtime to a new whole second (at least this machine's now): a stat, then
    /// the setstat. No CellServDB: nothing to bump, as a commit does.
    fn bump_on(&self, c: &mut Conn) -> Result<(), Fail> {
        let p = self.path(CELLSERVDB);
        let r = c.sftp.batch(&[Req::Stat(p.clone())])?;
        let old = match r.first().map(sftp::optional_attrs) {
            Some(Ok(None)) => return Ok(()),
            Some(Ok(Some(a))) => a.mtime.unwrap_or(0),
            Some(Err(e)) => return Err(op(format!("cannot stat {}: {e}", p.display()))),
            None => return Err(Fail::Broken("no reply to a stat".into())),
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let t = u32::try_from(rules::cellservdb_mtime(old.into(), now))
            .map_err(|_| op(format!("{}: mtime past 2106", p.display())))?;
        let r = c
            .sftp
            .batch(&[Req::Setstat(p.clone(), wire::Attrs::times(t, t))])?;
        match r.first().map(sftp::ok) {
            Some(Ok(())) => Ok(()),
            Some(Err(e)) => Err(op(format!(
                "CellServDB's mtime could not be changed ({e}): running servers keep the old \
                 keys until it changes (touch {})",
                p.display()
            ))),
            None => Err(Fail::Broken("no reply to a setstat".into())),
        }
    }
}

impl Drop for SshServer {
    fn drop(&mut self) {
        self.disconnect();
    }
}

impl Server for SshServer {
    fn name(&self) -> &str {
        &self.name
    }

    fn read_keys(&self) -> Result<KeySet, FleetError> {
        let [kf, kx] = self.with_conn(|c| self.read_pair(c))?;
        rules::merge(kf.as_deref(), kx.as_deref()).map_err(|e| self.err(e.at(&self.confdir)))
    }

    fn keyfile_mtime(&self) -> Option<SystemTime> {
        let r = self
            .with_conn(|c| c.sftp.batch(&[Req::Stat(self.path(KEYFILE))]))
            .ok()?;
        match r.first() {
            Some(Reply::Attrs(a)) => a.mtime.map(|t| UNIX_EPOCH + Duration::from_secs(t.into())),
            _ => None,
        }
    }

    fn bump_cellservdb(&self) -> Result<(), FleetError> {
        self.with_conn(|c| self.bump_on(c))
    }

    fn settle(&self) {
        let mut guard = lock(&self.conn);
        if let Some(c) = guard.as_mut() {
            self.run_tidy(c);
        }
    }

    fn stage(&self, files: &KeyFiles) -> Result<Box<dyn Staged + '_>, FleetError> {
        // The bytes must be key files (as the local store checks); nothing else is checked
        // before the upload.
        rules::check_install(&files.keyfile, &files.keyfileext).map_err(|e| self.err(e))?;
        let st = self.with_conn(|c| self.stage_on(c, files))?;
        Ok(Box::new(st))
    }
}

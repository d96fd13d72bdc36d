//! A server machine reached through the system's OpenSSH client (`[ssh] transport =
//! "openssh"`): what libssh2 cannot do — the user's `ssh_config` (host aliases, `User`,
//! `Port`, `IdentityFile`, `ProxyJump`, `CertificateFile`), GSSAPI (Kerberos) login, host
//! certificates trusted through `@cert-authority`, keys on hardware tokens — is done by `ssh`
//! itself.
//!
//! **What it is built on, and why.** The `openssh` crate starts one multiplexed master
//! connection per server (`ssh -M -S <socket> -f -N`, `ControlPersist` until closed) with its
//! control socket in a private 0700 directory this module makes, and closes it (`ssh -O
//! exit`) when the server is dropped, i.e. when the command ends. The `openssh-sftp-client`
//! crate runs OpenSSH's `sftp-server` through that master and speaks the extensions the
//! two-phase push needs: `posix-rename@openssh.com` (the atomic replace: `Fs::rename` uses it
//! when offered), `fsync@openssh.com` (`File::sync_all`) and `hardlink@openssh.com` (the
//! backup that *is* the file a rename replaces). Both are maintained, made for exactly this,
//! and spare a second hand-written client: the ssh2 transport's SFTP client is bound to a
//! libssh2 channel. They are async (tokio); the `Server` trait stays synchronous: each server
//! owns a small current-thread runtime and every call is one `block_on`, bounded by `[ssh]
//! timeout`.
//!
//! **Host keys stay afskeys' business:** whatever the user's config says,
//! `StrictHostKeyChecking=yes` is given on the command line (which wins over any config), so
//! an unknown or changed host key is refused before anything is written; `BatchMode=yes`
//! means no prompt and no password. `[ssh] known_hosts`, when set, is the only
//! `UserKnownHostsFile`; unset, the user's config decides (and its `@cert-authority` lines).
//!
//! **Options from afskeys.toml:** `host` may be an ssh_config alias. `port` and `user` are
//! passed to `ssh` (`-p`, `-l`, which win over the config) only when they differ from the
//! defaults (22, root), so an alias's own `Port`/`User` apply unless afskeys.toml says
//! otherwise; `[ssh] identity` is passed as `-i` with `IdentitiesOnly=yes`; without it ssh
//! uses the agent and the config's `IdentityFile`s. `[ssh] config` is passed as `-F`.
//!
//! `push` (the two phases, the conf-dir checks, backups, the CellServDB bump) is `push.rs`.

mod push;

use super::{FleetError, KeyFiles, Server, Staged};
use crate::keys::KeySet;
use crate::store::rules;
use crate::store::{KEYFILE, KEYFILEEXT};
use openssh_sftp_client::{Sftp, SftpOptions};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

/// Where one server's conf dir is and how `ssh` reaches it (`cell.rs` builds it from
/// `[[servers]]` and `[ssh]`).
#[derive(Debug, Clone)]
pub struct OpensshTarget {
    /// The name reports and `--server` use.
    pub name: String,
    /// Host name, address or ssh_config alias.
    pub host: String,
    /// `None`: ssh_config (or 22).
    pub port: Option<u16>,
    /// `None`: ssh_config (or the local user name).
    pub user: Option<String>,
    /// The KeyFile directory on that machine.
    pub confdir: PathBuf,
    /// `-i` with `IdentitiesOnly=yes`; `None`: the agent and the config's identities.
    pub identity: Option<PathBuf>,
    /// The only `UserKnownHostsFile`; `None`: the config's (default `~/.ssh/known_hosts`).
    pub known_hosts: Option<PathBuf>,
    /// `-F FILE`; `None`: `~/.ssh/config` and `/etc/ssh/ssh_config`.
    pub config: Option<PathBuf>,
    /// Bounds the connect (`ConnectTimeout`) and every SFTP step.
    pub timeout: Duration,
}

/// Why this process could not prepare the transport.
#[derive(Debug, thiserror::Error)]
enum SetupError {
    #[error("openssh transport: cannot start its runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("openssh transport: cannot make its control socket directory: {0}")]
    ControlDir(#[source] std::io::Error),
}

/// Why a call failed. `Lost` and `TimedOut` mean the connection is unusable.
#[derive(Debug, thiserror::Error)]
enum Fail {
    #[error("connection lost ({what}: {source})")]
    Lost {
        what: String,
        #[source]
        source: openssh_sftp_client::Error,
    },
    #[error("connection lost (no answer within {0:?})")]
    TimedOut(Duration),
    /// The server answered this request with an error status; the connection is fine.
    #[error("{what}: SFTP status {}", status_text(source))]
    Status {
        what: String,
        #[source]
        source: openssh_sftp_client::Error,
    },
    /// This operation was refused by afskeys' own checks; the connection is fine.
    #[error("{0}")]
    Op(String),
}

impl Fail {
    fn is_lost(&self) -> bool {
        matches!(self, Fail::Lost { .. } | Fail::TimedOut(_))
    }
}

fn op(m: impl Into<String>) -> Fail {
    Fail::Op(m.into())
}

/// An SFTP status as `<kind> (<the server's message>)`.
fn status_text(e: &openssh_sftp_client::Error) -> String {
    match e {
        openssh_sftp_client::Error::SftpError(kind, msg) => format!("{kind:?} ({})", msg.get().0),
        e => e.to_string(),
    }
}

/// An SFTP error: a status reply is an operation failure, anything else a lost connection.
fn sftp_fail(what: impl std::fmt::Display, e: openssh_sftp_client::Error) -> Fail {
    let what = what.to_string();
    match e {
        e @ openssh_sftp_client::Error::SftpError(..) => Fail::Status { what, source: e },
        e => Fail::Lost { what, source: e },
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// This process's side: the runtime every call is driven by, and the private (0700)
/// directory holding the master's control socket.
struct Local {
    rt: tokio::runtime::Runtime,
    ctl_dir: tempfile::TempDir,
}

struct Conn {
    sftp: Sftp,
    /// Which connection this is: a staged push commits only on the one that staged it.
    gen: u64,
}

/// One server machine's conf dir, reached with the system's `ssh`.
pub struct OpensshServer {
    t: OpensshTarget,
    /// Made on first use (so that building a server cannot fail).
    local: std::sync::OnceLock<Result<Local, SetupError>>,
    conn: Mutex<Option<Conn>>,
    gens: std::sync::atomic::AtomicU64,
}

impl OpensshServer {
    /// A server from its target. Nothing is started until the first call.
    pub fn new(t: OpensshTarget) -> OpensshServer {
        OpensshServer {
            t,
            local: std::sync::OnceLock::new(),
            conn: Mutex::new(None),
            gens: Default::default(),
        }
    }

    /// The runtime and the control socket directory, made on first use.
    fn local(&self) -> Result<&Local, Fail> {
        let made = self.local.get_or_init(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(SetupError::Runtime)?;
            let ctl_dir = tempfile::Builder::new()
                .prefix("afskeys-ssh.")
                .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
                .tempdir()
                .map_err(SetupError::ControlDir)?;
            Ok(Local { rt, ctl_dir })
        });
        made.as_ref().map_err(|e| op(e.to_string()))
    }

    /// `user@host:port` as given (ssh_config may map it elsewhere), as messages name it.
    pub fn address(&self) -> String {
        let mut a = String::new();
        if let Some(u) = &self.t.user {
            a = format!("{u}@");
        }
        a.push_str(&self.t.host);
        if let Some(p) = self.t.port {
            a = format!("{a}:{p}");
        }
        format!("{a} (openssh)")
    }

    pub fn confdir(&self) -> &Path {
        &self.t.confdir
    }

    /// The private directory holding the master's control socket, once made.
    pub fn control_dir(&self) -> Option<&Path> {
        match self.local.get() {
            Some(Ok(l)) => Some(l.ctl_dir.path()),
            _ => None,
        }
    }

    fn err(&self, message: impl std::fmt::Display) -> FleetError {
        FleetError::new(&self.t.name, format!("{}: {message}", self.address()))
    }

    fn path(&self, name: &str) -> PathBuf {
        self.t.confdir.join(name)
    }

    /// Run `fut` on this server's runtime, bounded by the timeout.
    fn run<T>(&self, fut: impl Future<Output = Result<T, Fail>>) -> Result<T, Fail> {
        let limit = self.t.timeout;
        self.local()?
            .rt
            .block_on(async { tokio::time::timeout(limit, fut).await })
            .unwrap_or_else(|_| Err(Fail::TimedOut(limit)))
    }

    fn builder(&self, local: &Local) -> openssh::SessionBuilder {
        let mut b = openssh::SessionBuilder::default();
        // A master left behind by a killed afskeys exits once idle for a minute.
        let idle = std::num::NonZeroUsize::new(60).expect("not zero");
        b.known_hosts_check(openssh::KnownHosts::Strict)
            .control_directory(local.ctl_dir.path())
            .control_persist(openssh::ControlPersist::IdleFor(idle))
            .connect_timeout(self.t.timeout.max(Duration::from_secs(1)));
        if let Some(p) = self.t.port {
            b.port(p);
        }
        if let Some(u) = &self.t.user {
            b.user(u.clone());
        }
        if let Some(i) = &self.t.identity {
            b.keyfile(i);
        }
        if let Some(k) = &self.t.known_hosts {
            b.user_known_hosts_file(k);
        }
        if let Some(c) = &self.t.config {
            b.config_file(c);
        }
        b
    }

    /// Start the master connection and the SFTP subsystem through it.
    fn connect(&self) -> Result<Conn, FleetError> {
        let local = self.local().map_err(|e| self.err(e))?;
        let b = self.builder(local);
        let session = local
            .rt
            .block_on(async {
                let limit = self.t.timeout * 3;
                tokio::time::timeout(limit, b.connect(&self.t.host)).await
            })
            .map_err(|_| self.err("ssh did not connect in time"))?
            .map_err(|e| self.err(connect_message(&e)))?;
        let sftp = self
            .run(async {
                Sftp::from_session(session, SftpOptions::new())
                    .await
                    .map_err(|e| Fail::Lost {
                        what: "cannot start SFTP".into(),
                        source: e,
                    })
            })
            .map_err(|e| self.err(e))?;
        let gen = self.gens.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(Conn { sftp, gen })
    }

    /// Close the connection (the master exits); dropping the server does this too.
    pub fn disconnect(&self) {
        if let Some(c) = lock(&self.conn).take() {
            let _ = self.run(async { c.sftp.close().await.map_err(|e| op(e.to_string())) });
        }
    }

    /// Open (or reuse) the connection and run `f` on it. A lost connection is dropped; when
    /// it was a kept one, `f` runs once more on a new connection.
    fn with_conn<T>(&self, f: impl Fn(&mut Conn) -> Result<T, Fail>) -> Result<T, FleetError> {
        let mut guard = lock(&self.conn);
        let mut reused = guard.is_some();
        loop {
            if guard.is_none() {
                *guard = Some(self.connect()?);
            }
            let conn = guard.as_mut().expect("connected above");
            match f(conn) {
                Ok(t) => return Ok(t),
                Err(e) if !e.is_lost() => return Err(self.err(e)),
                Err(lost) => {
                    if let (Some(c), Ok(l)) = (guard.take(), self.local()) {
                        let _ = l.rt.block_on(async {
                            tokio::time::timeout(Duration::from_secs(2), c.sftp.close()).await
                        });
                    }
                    if !reused {
                        return Err(self.err(lost));
                    }
                    reused = false;
                }
            }
        }
    }

    /// Both key files, read at once (their requests interleave on the one SFTP session, so
    /// the pair costs the round trips of one); absent is `None`.
    fn read_pair(&self, c: &mut Conn) -> Result<[Option<Vec<u8>>; 2], Fail> {
        let (kf, kx) = self.run(async {
            Ok(both(
                read_optional(&c.sftp, self.path(KEYFILE)),
                read_optional(&c.sftp, self.path(KEYFILEEXT)),
            )
            .await)
        })?;
        Ok([kf?, kx?])
    }
}

/// Both futures run together; their outputs.
async fn both<A: Future, B: Future>(a: A, b: B) -> (A::Output, B::Output) {
    use std::task::Poll;
    let (mut a, mut b) = (std::pin::pin!(a), std::pin::pin!(b));
    let (mut ra, mut rb) = (None, None);
    std::future::poll_fn(|cx| {
        if ra.is_none() {
            if let Poll::Ready(v) = a.as_mut().poll(cx) {
                ra = Some(v);
            }
        }
        if rb.is_none() {
            if let Poll::Ready(v) = b.as_mut().poll(cx) {
                rb = Some(v);
            }
        }
        match (ra.take(), rb.take()) {
            (Some(x), Some(y)) => Poll::Ready((x, y)),
            (x, y) => {
                (ra, rb) = (x, y);
                Poll::Pending
            }
        }
    })
    .await
}

/// A whole remote key file, `None` when it does not exist; refused, having read at most one
/// byte past it, when it is longer than its format allows (`store::trust`'s caps, as for a
/// local file): a symlink to /dev/zero or a huge sparse file never costs more than that.
async fn read_optional(sftp: &Sftp, path: PathBuf) -> Result<Option<Vec<u8>>, Fail> {
    // A FIFO (or a device) would block the server's open: judged from its lstat first.
    match push::stat(sftp, &path, false).await? {
        None => return Ok(None),
        Some(m) if rules::FileKind::of_mode(push::mode(&m)) == rules::FileKind::Other => {
            return Err(op(rules::may_block(&path)))
        }
        Some(_) => {}
    }
    let kind = crate::store::trust::key_file_kind(&path);
    let rerr = |e| sftp_fail(format_args!("cannot read {}", path.display()), e);
    let mut f = match sftp.open(&path).await {
        Ok(f) => f,
        Err(openssh_sftp_client::Error::SftpError(
            openssh_sftp_client::error::SftpErrorKind::NoSuchFile,
            _,
        )) => return Ok(None),
        Err(e) => return Err(rerr(e)),
    };
    let mut kept: Vec<u8> = Vec::new();
    let limit = kind.max as usize + 1;
    while kept.len() < limit {
        let want = (limit - kept.len()).min(64 * 1024) as u32;
        let buf = bytes::BytesMut::with_capacity(want as usize);
        match f.read(want, buf).await.map_err(rerr)? {
            Some(b) => kept.extend_from_slice(&b),
            None => break,
        }
    }
    let _ = f.close().await;
    if kept.len() > kind.max as usize {
        return Err(op(crate::store::trust::too_long(&path, kind)));
    }
    Ok(Some(kept))
}

/// CellServDB's mtime to a new whole second (at least this machine's now): a stat, then the
/// setstat. No CellServDB: nothing to bump, as a commit does.
async fn bump(sftp: &Sftp, path: &Path) -> Result<(), Fail> {
    use openssh_sftp_client::metadata::MetaDataBuilder;
    use openssh_sftp_client::UnixTimeStamp;
    let mut fs = sftp.fs();
    let old = match fs.metadata(path).await {
        Ok(m) => m.modified().map(|t| u64::from(t.into_raw())).unwrap_or(0),
        Err(openssh_sftp_client::Error::SftpError(
            openssh_sftp_client::error::SftpErrorKind::NoSuchFile,
            _,
        )) => return Ok(()),
        Err(e) => return Err(sftp_fail(format_args!("cannot stat {}", path.display()), e)),
    };
    let now = SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let t = u32::try_from(rules::cellservdb_mtime(old, now))
        .ok()
        .and_then(UnixTimeStamp::from_raw)
        .ok_or_else(|| op(format!("{}: mtime past 2106", path.display())))?;
    let mut m = MetaDataBuilder::new();
    m.time(t, t);
    fs.set_metadata(path, m.create()).await.map_err(|e| {
        sftp_fail(
            format_args!(
                "CellServDB's mtime could not be changed: running servers keep the old keys \
                 until it changes (touch {})",
                path.display()
            ),
            e,
        )
    })
}

/// What `ssh` said when the master did not start, made readable: a refused host key is
/// named as such, with what to check.
fn connect_message(e: &openssh::Error) -> String {
    let mut said = String::new();
    let mut not_found = false;
    let mut src: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(s) = src {
        said = s.to_string();
        not_found |= s
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::NotFound);
        src = s.source();
    }
    // ssh that never ran, or ran and died before it wrote its log: the crate then reports
    // only a missing file (its log or its control socket), which names nothing.
    if not_found {
        return match ssh_in_path() {
            false => "ssh (OpenSSH's client) is not in PATH: the openssh transport runs it \
                      (install openssh-client, or set [ssh] transport = \"ssh2\")"
                .into(),
            true => format!(
                "ssh exited before it said why (it left no log or control socket: {said}); \
                 run `ssh -v` to the host by hand to see its reason"
            ),
        };
    }
    let lines: Vec<&str> = said
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("@@@") && !l.starts_with("@ "))
        .collect();
    let pick = |pat: &str| lines.iter().find(|l| l.contains(pat)).copied();
    let fingerprint = pick("SHA256:").unwrap_or("");
    if said.contains("REMOTE HOST IDENTIFICATION HAS CHANGED") {
        let offending = pick("Offending").unwrap_or("");
        return format!(
            "HOST KEY CHANGED: ssh refused the server's host key (StrictHostKeyChecking=yes); \
             it now offers {fingerprint}; {offending}; refusing to connect, nothing written \
             (check the key out of band, then fix the known_hosts entry)"
        );
    }
    if said.contains("Host key verification failed") || said.contains("host key is known") {
        return format!(
            "UNKNOWN HOST: ssh has no trusted host key for it (StrictHostKeyChecking=yes; \
             known_hosts and @cert-authority lines checked){}; refusing to connect, nothing \
             written (check the key out of band and add it to known_hosts)",
            if fingerprint.is_empty() {
                String::new()
            } else {
                format!("; it offers {fingerprint}")
            }
        );
    }
    format!("ssh could not connect: {}", lines.join(" / "))
}

/// An `ssh` program in PATH, as the openssh crate runs it.
fn ssh_in_path() -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("ssh").is_file()))
}

impl Drop for OpensshServer {
    fn drop(&mut self) {
        self.disconnect();
    }
}

impl Server for OpensshServer {
    fn name(&self) -> &str {
        &self.t.name
    }

    fn read_keys(&self) -> Result<KeySet, FleetError> {
        let [kf, kx] = self.with_conn(|c| self.read_pair(c))?;
        rules::merge(kf.as_deref(), kx.as_deref()).map_err(|e| self.err(e.at(&self.t.confdir)))
    }

    fn keyfile_mtime(&self) -> Option<SystemTime> {
        let path = self.path(KEYFILE);
        let m = self
            .with_conn(|c| {
                self.run(async {
                    c.sftp
                        .fs()
                        .metadata(&path)
                        .await
                        .map_err(|e| sftp_fail("stat", e))
                })
            })
            .ok()?;
        m.modified().map(|t| t.as_system_time())
    }

    fn bump_cellservdb(&self) -> Result<(), FleetError> {
        let path = self.path(rules::CELLSERVDB);
        self.with_conn(|c| self.run(bump(&c.sftp, &path)))
    }

    fn stage(&self, files: &KeyFiles) -> Result<Box<dyn Staged + '_>, FleetError> {
        rules::check_install(&files.keyfile, &files.keyfileext).map_err(|e| self.err(e))?;
        let st = self.with_conn(|c| self.stage_on(c, files))?;
        Ok(Box::new(st))
    }
}

#[cfg(test)]
mod tests {
    use super::connect_message;

    fn said(log: &str) -> String {
        connect_message(&openssh::Error::Connect(std::io::Error::other(
            log.to_string(),
        )))
    }

    #[test]
    fn a_changed_host_key_is_named_with_its_fingerprint_and_the_offending_line() {
        let m = said(
            "@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\n\
             @    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\n\
             @@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\n\
             IT IS POSSIBLE THAT SOMEONE IS DOING SOMETHING NASTY!\n\
             The fingerprint for the ED25519 key sent by the remote host is\n\
             SHA256:abcDEF123.\n\
             Offending ED25519 key in /root/.ssh/known_hosts:3\n\
             Host key verification failed.\n",
        );
        assert!(m.starts_with("HOST KEY CHANGED:"), "{m}");
        assert!(m.contains("SHA256:abcDEF123"), "{m}");
        assert!(m.contains("/root/.ssh/known_hosts:3"), "{m}");
    }

    #[test]
    fn a_missing_file_is_said_as_what_it_means() {
        let m = connect_message(&openssh::Error::Connect(std::io::Error::from(
            std::io::ErrorKind::NotFound,
        )));
        if super::ssh_in_path() {
            assert!(m.starts_with("ssh exited before it said why"), "{m}");
        } else {
            assert!(
                m.starts_with("ssh (OpenSSH's client) is not in PATH"),
                "{m}"
            );
        }
        assert!(!m.starts_with("ssh could not connect: No such file"), "{m}");
    }

    #[test]
    fn an_unknown_host_and_other_failures() {
        let m = said(
            "No ED25519 host key is known for [127.0.0.1]:2222 and you have requested \
             strict checking.\nHost key verification failed.\n",
        );
        assert!(m.starts_with("UNKNOWN HOST:"), "{m}");
        let m = said("ssh: connect to host 127.0.0.1 port 1: Connection refused\n");
        assert_eq!(
            m,
            "ssh could not connect: ssh: connect to host 127.0.0.1 port 1: Connection refused"
        );
    }
}

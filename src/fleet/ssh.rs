//! A server machine reached over SSH: the ssh2 crate (libssh2) carries the connection, host
//! key check and login; the conf dir is read, staged and replaced over SFTP, spoken by this
//! module on an ssh2 channel so that OpenSSH's extensions are usable.
//!
//! **One connection per server.** It is opened on first use and kept (behind a Mutex) for
//! every later call on the same `SshServer`: stage, commit and a verify that reads the files
//! back cost one handshake and one SFTP subsystem together, and no remote process is started
//! besides OpenSSH's own `sftp-server`. Requests are pipelined: reading both key files takes
//! two round trips, staging four or five, a commit one. A connection that turns out dead when
//! reused is replaced once.
//!
//! **Host keys** are checked against a known_hosts file read by this module (plain, hashed
//! `|1|…`, wildcard and negated patterns, `@revoked`), under the exact name OpenSSH looks up:
//! `host` on port 22, `[host]:port` on any other port (libssh2's own check falls back to a
//! bare `host` entry, which OpenSSH does not). An unknown or changed host key is refused with
//! its SHA256 fingerprint; nothing is ever added to known_hosts.
//!
//! **The atomic replace.** OpenSSH's SFTP (protocol 3) `rename` never replaces an existing
//! file, and the ssh2 crate does not expose the `posix-rename@openssh.com` extension that
//! does. So this module speaks SFTP itself: `stage` uploads both files (0600, fsynced with
//! `fsync@openssh.com`) into a private dir inside the conf dir (same filesystem) and keeps a
//! backup of each live file that will change (a hard link, `hardlink@openssh.com`, so the
//! backup is exactly the file the rename will replace); `commit` sends, in one round trip,
//! `posix-rename` of KeyFileExt then KeyFile over the live files (rename(2): a reader sees the
//! old file or the new one, never a mix, whenever the connection drops), the CellServDB mtime
//! bump to a new whole second, and an fsync of the conf dir. A server without `posix-rename`
//! is committed with `mv -f` over an exec channel instead (`ReplaceMethod::ShellMv`).

use super::{FleetError, KeyFiles, Server, Staged};
use crate::config::{ServerConfig, SshConfig};
use crate::format::{read_keyfile, read_keyfileext};
use crate::keys::KeySet;
use crate::store::{KEYFILE, KEYFILEEXT, MAX_BACKUPS};
use sftp::{Attrs, Reply, Req, Sftp};
use ssh2::Session;
use std::io::Read;
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The prefix of the private dir a push stages its files in, inside the conf dir.
pub const STAGE_PREFIX: &str = ".afskeys-stage.";
/// Where backups go, as the local store keeps them.
pub const BACKUP_DIR: &str = ".afskeys-backup";
/// Stage dirs older than this (left by a connection cut before commit or discard) are
/// removed after the next commit on that server.
const STALE_STAGE: Duration = Duration::from_secs(24 * 3600);

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

static GENERATION: AtomicU64 = AtomicU64::new(1);

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
    tidy: Mutex<Vec<Tidy>>,
}

struct Conn {
    sess: Session,
    sftp: Sftp,
    /// Which connection this is: a staged push commits only on the one that staged it.
    gen: u64,
}

/// Why an operation failed; `Broken` means the connection is unusable.
enum Fail {
    Broken(String),
    Op(String),
}

impl SshServer {
    /// A server from its `[[servers]]` entry and the `[ssh]` settings. Nothing is opened
    /// until the first call. A server without `host` is reached by its name.
    pub fn new(server: &ServerConfig, ssh: &SshConfig) -> SshServer {
        let host = server.host.clone().unwrap_or_else(|| server.name.clone());
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .map(str::to_string)
            .unwrap_or(host);
        SshServer {
            name: server.name.clone(),
            host,
            port: server.port,
            user: server.user.clone(),
            confdir: server.confdir.clone(),
            identity: ssh.identity.clone(),
            known_hosts: ssh
                .known_hosts
                .clone()
                .unwrap_or_else(|| home_dir().join(".ssh/known_hosts")),
            timeout: ssh.timeout,
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
        if let Some(c) = guard.take() {
            c.sess.set_timeout(1000);
            let _ = c.sess.disconnect(None, "afskeys done", None);
        }
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
                Err(Fail::Broken(m)) => {
                    *guard = None;
                    if !reused {
                        return Err(self.err(m));
                    }
                    reused = false;
                }
            }
        }
    }

    fn connect(&self) -> Result<Conn, FleetError> {
        let known = KnownHosts::load(&self.known_hosts).map_err(|m| self.err(m))?;
        let name = self.known_hosts_name();
        let entries = known.entries_for(&name);
        let addrs: Vec<_> = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|e| self.err(format!("cannot resolve host {}: {e}", self.host)))?
            .collect();
        let mut last = None;
        let mut tcp = None;
        for a in &addrs {
            match TcpStream::connect_timeout(a, self.timeout) {
                Ok(s) => {
                    tcp = Some(s);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let tcp = tcp.ok_or_else(|| {
            self.err(format!(
                "cannot connect: {}",
                last.map(|e| e.to_string())
                    .unwrap_or_else(|| "no address".into())
            ))
        })?;
        let _ = tcp.set_nodelay(true);
        let mut sess = Session::new().map_err(|e| self.err(format!("libssh2: {e}")))?;
        sess.set_timeout(self.timeout.as_millis().clamp(1, u32::MAX as u128) as u32);
        sess.set_tcp_stream(tcp);
        // Ask for a host key of a type known_hosts holds for this name, as OpenSSH does, so
        // a server with several host keys is checked against the one on file.
        let known_types = known_types(&entries);
        if !known_types.is_empty() {
            if let Ok(supported) = sess.supported_algs(ssh2::MethodType::HostKey) {
                let mut pref: Vec<&str> = Vec::new();
                for t in &known_types {
                    for alg in host_key_algs(t) {
                        if supported.contains(&alg) && !pref.contains(&alg) {
                            pref.push(alg);
                        }
                    }
                }
                for alg in &supported {
                    if !pref.contains(alg) {
                        pref.push(alg);
                    }
                }
                let _ = sess.method_pref(ssh2::MethodType::HostKey, &pref.join(","));
            }
        }
        sess.handshake()
            .map_err(|e| self.err(format!("SSH handshake failed: {}", e.message())))?;
        let (key, _) = sess
            .host_key()
            .ok_or_else(|| self.err("the server sent no host key"))?;
        let fp = sess
            .host_key_hash(ssh2::HashType::Sha256)
            .map(|h| format!("SHA256:{}", base64_encode(h, false)))
            .unwrap_or_else(|| "(no fingerprint)".into());
        let ktype = key_type_of(key).unwrap_or_else(|| "unknown".into());
        let kh = self.known_hosts.display();
        match known.check(&name, key) {
            HostCheck::Match => {}
            HostCheck::Revoked { line } => {
                return Err(self.err(format!(
                    "REVOKED HOST KEY: {name} offers {ktype} key {fp}, which {kh} line {line} \
                     marks @revoked; refusing to connect"
                )))
            }
            HostCheck::Changed { lines } => {
                let lines: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
                return Err(self.err(format!(
                    "HOST KEY CHANGED: {name} now offers {ktype} key {fp}, but {kh} (line{} {}) \
                     holds a different key for it; refusing to connect: the connection may be \
                     intercepted. If the server's key was changed on purpose, check the new \
                     fingerprint out of band and replace the entry \
                     (ssh-keygen -R '{name}' -f {kh})",
                    if lines.len() > 1 { "s" } else { "" },
                    lines.join(", "),
                )));
            }
            HostCheck::Unknown => {
                return Err(self.err(format!(
                    "UNKNOWN HOST: {name} is not in {kh}; it offers {ktype} key {fp}; refusing \
                     to connect to a host whose key is not known. Check that fingerprint out \
                     of band, then add the key to that file (e.g. ssh-keyscan -p {} {} >> {kh})",
                    self.port, self.host,
                )))
            }
        }
        self.authenticate(&sess)?;
        let sftp = Sftp::start(&sess).map_err(|f| match f {
            Fail::Broken(m) | Fail::Op(m) => self.err(format!("cannot start SFTP: {m}")),
        })?;
        Ok(Conn {
            sess,
            sftp,
            gen: GENERATION.fetch_add(1, Ordering::Relaxed),
        })
    }

    fn authenticate(&self, sess: &Session) -> Result<(), FleetError> {
        let user = self.user.as_str();
        if let Some(id) = &self.identity {
            return sess
                .userauth_pubkey_file(user, None, id, None)
                .map_err(|e| {
                    self.err(format!(
                        "the server refused the key {} for user {user} ({}); is its public half \
                     in {user}'s authorized_keys, and is the file an unencrypted private key? \
                     (for a passphrase-protected key, leave [ssh] identity out and load the \
                     key into ssh-agent)",
                        id.display(),
                        e.message()
                    ))
                });
        }
        let agent_err = match sess.userauth_agent(user) {
            Ok(()) => return Ok(()),
            Err(e) => e.message().to_string(),
        };
        // No agent, or no key it holds was accepted: the default identity files, as ssh does.
        let home = home_dir();
        let mut tried = Vec::new();
        for f in ["id_ed25519", "id_ecdsa", "id_rsa"] {
            let p = home.join(".ssh").join(f);
            if p.exists() {
                if sess.userauth_pubkey_file(user, None, &p, None).is_ok() {
                    return Ok(());
                }
                tried.push(p.display().to_string());
            }
        }
        Err(self.err(format!(
            "cannot log in as {user}: the ssh agent gave no accepted key ({agent_err}){}; \
             set [ssh] identity to a private key the server accepts",
            if tried.is_empty() {
                String::new()
            } else {
                format!(" and {} were refused", tried.join(", "))
            }
        )))
    }

    /// Read both key files in two round trips; absent is `None`.
    fn read_pair(&self, c: &mut Conn) -> Result<[Option<Vec<u8>>; 2], Fail> {
        let paths = [self.path(KEYFILE), self.path(KEYFILEEXT)];
        let got = read_files(&mut c.sftp, &[&paths[0], &paths[1]])?;
        let mut it = got.into_iter();
        Ok([it.next().flatten(), it.next().flatten()])
    }

    /// Do what commits left to do (remove the emptied stage dir, close the dir handle, trim
    /// old backups, remove stage dirs abandoned long ago). Errors are ignored: nothing here
    /// changes what a server reads.
    fn run_tidy(&self, c: &mut Conn) {
        let work: Vec<Tidy> = std::mem::take(&mut *lock(&self.tidy));
        for t in work {
            if t.gen != c.gen {
                continue;
            }
            let mut reqs = vec![Req::Rmdir(t.stage_dir.clone())];
            if let Some(h) = t.dir_handle {
                reqs.push(Req::Close(h));
            }
            if c.sftp.batch(&reqs).is_err() {
                return;
            }
            let _ = self.trim_backups(c);
            let _ = self.remove_stale_stages(c, t.remote_now);
        }
    }

    fn trim_backups(&self, c: &mut Conn) -> Result<(), Fail> {
        let bdir = self.path(BACKUP_DIR);
        let names = c.sftp.list_dir(&bdir)?;
        let mut remove = Vec::new();
        for f in [KEYFILE, KEYFILEEXT] {
            let prefix = format!("{f}.");
            let mut found: Vec<&String> = names
                .iter()
                .map(|(n, _)| n)
                .filter(|n| {
                    n.strip_prefix(&prefix)
                        .is_some_and(|r| r.starts_with(|ch: char| ch.is_ascii_digit()))
                })
                .collect();
            // The UTC stamps sort as text in time order.
            found.sort();
            while found.len() > MAX_BACKUPS {
                remove.push(Req::Remove(bdir.join(found.remove(0))));
            }
        }
        if !remove.is_empty() {
            c.sftp.batch(&remove)?;
        }
        Ok(())
    }

    fn remove_stale_stages(&self, c: &mut Conn, now: Option<u64>) -> Result<(), Fail> {
        let Some(now) = now else { return Ok(()) };
        let names = c.sftp.list_dir(&self.confdir)?;
        let mut reqs = Vec::new();
        for (n, a) in names {
            if !n.starts_with(STAGE_PREFIX) {
                continue;
            }
            let old = a
                .mtime
                .is_some_and(|m| (m as u64) + STALE_STAGE.as_secs() < now);
            if old {
                let d = self.path(&n);
                reqs.push(Req::Remove(d.join(KEYFILEEXT)));
                reqs.push(Req::Remove(d.join(KEYFILE)));
                reqs.push(Req::Rmdir(d));
            }
        }
        if !reqs.is_empty() {
            c.sftp.batch(&reqs)?;
        }
        Ok(())
    }

    /// Phase one, on the connection: see `Server::stage`.
    fn stage_on(&self, c: &mut Conn, files: &KeyFiles) -> Result<SshStaged<'_>, Fail> {
        let sftp = &mut c.sftp;
        let dir = &self.confdir;
        let kf = self.path(KEYFILE);
        let kx = self.path(KEYFILEEXT);
        let bdir = self.path(BACKUP_DIR);
        let csdb = self.path("CellServDB");
        // 1. What is there.
        let r = sftp.batch(&[
            Req::Stat(dir.clone()),
            Req::Lstat(kx.clone()),
            Req::Lstat(kf.clone()),
            Req::Stat(csdb),
            Req::Lstat(bdir.clone()),
        ])?;
        let dir_attrs = attrs(&r[0]).map_err(|e| op(format!("conf dir {}: {e}", dir.display())))?;
        let mode = dir_attrs.perm.unwrap_or(0);
        if mode & S_IFMT != S_IFDIR {
            return Err(op(format!("conf dir {} is not a directory", dir.display())));
        }
        if mode & 0o022 != 0 {
            return Err(op(format!(
                "conf dir {} has mode {:04o}: other users could replace the key files; \
                 refusing to write (chmod go-w it)",
                dir.display(),
                mode & 0o7777
            )));
        }
        let mut live_exists = [false; 2];
        for (i, (p, rep)) in [(&kx, &r[1]), (&kf, &r[2])].into_iter().enumerate() {
            match optional_attrs(rep) {
                Ok(None) => {}
                Ok(Some(a)) if a.perm.unwrap_or(0) & S_IFMT == S_IFREG => live_exists[i] = true,
                Ok(Some(_)) => {
                    return Err(op(format!(
                        "{} is not a regular file (a symbolic link?); afskeys replaces key \
                         files only in place (replace the link with the file itself)",
                        p.display()
                    )))
                }
                Err(e) => return Err(op(format!("{}: {e}", p.display()))),
            }
        }
        let cellservdb = optional_attrs(&r[3])
            .map_err(|e| op(format!("CellServDB: {e}")))?
            .and_then(|a| a.mtime.map(u64::from));
        let backup_dir_exists = match optional_attrs(&r[4]) {
            Ok(None) => false,
            Ok(Some(a)) if a.perm.unwrap_or(0) & S_IFMT == S_IFDIR => true,
            Ok(Some(_)) => {
                return Err(op(format!(
                    "{} is not a directory (refusing to put key backups there)",
                    bdir.display()
                )))
            }
            Err(e) => return Err(op(format!("{}: {e}", bdir.display()))),
        };

        // 2. The stage dir, the temp files, the live files and the dir opened.
        let stage_dir = self.path(&format!("{STAGE_PREFIX}{}", random_hex()));
        let new_paths = [stage_dir.join(KEYFILEEXT), stage_dir.join(KEYFILE)];
        let create = sftp::FXF_WRITE | sftp::FXF_CREAT | sftp::FXF_EXCL;
        let mut reqs = vec![
            Req::Mkdir(stage_dir.clone(), 0o700),
            Req::Open(new_paths[0].clone(), create, Some(0o600)),
            Req::Open(new_paths[1].clone(), create, Some(0o600)),
            Req::Open(dir.clone(), sftp::FXF_READ, None),
        ];
        for (i, p) in [&kx, &kf].into_iter().enumerate() {
            if live_exists[i] {
                reqs.push(Req::Open(p.clone(), sftp::FXF_READ, None));
            }
        }
        let r = sftp.batch(&reqs)?;
        if let Reply::Status(code, msg) = &r[0] {
            if *code != 0 {
                return Err(op(format!(
                    "cannot create {}: {}",
                    stage_dir.display(),
                    sftp::status_text(*code, msg)
                )));
            }
        }
        let staged = (|| -> Result<SshStaged<'_>, Fail> {
            let mut new_handles = Vec::new();
            for (i, rep) in r[1..3].iter().enumerate() {
                new_handles.push(
                    handle(rep).map_err(|e| {
                        op(format!("cannot create {}: {e}", new_paths[i].display()))
                    })?,
                );
            }
            let dir_handle = handle(&r[3]).ok();
            let mut live_handles = Vec::new();
            let mut k = 4;
            for (i, p) in [&kx, &kf].into_iter().enumerate() {
                if live_exists[i] {
                    let h = handle(&r[k])
                        .map_err(|e| op(format!("cannot open {}: {e}", p.display())))?;
                    live_handles.push((i, h));
                    k += 1;
                }
            }

            // 3. Write, fsync and close the new files; read the live ones.
            let bytes: [&[u8]; 2] = [&files.keyfileext, &files.keyfile];
            let mut reqs = Vec::new();
            let mut fsync_at = Vec::new();
            let mut fstat_at = 0;
            for (i, h) in new_handles.iter().enumerate() {
                for (off, chunk) in chunks(bytes[i]) {
                    reqs.push(Req::Write(h.clone(), off, chunk.to_vec()));
                }
                if sftp.has_fsync {
                    fsync_at.push(reqs.len());
                    reqs.push(Req::Fsync(h.clone()));
                }
                if i == 1 {
                    fstat_at = reqs.len();
                    reqs.push(Req::Fstat(h.clone()));
                }
                reqs.push(Req::Close(h.clone()));
            }
            let read_from = reqs.len();
            for (_, h) in &live_handles {
                reqs.push(Req::Read(h.clone(), 0, READ_CHUNK));
                reqs.push(Req::Read(h.clone(), READ_CHUNK as u64, READ_CHUNK));
                reqs.push(Req::Close(h.clone()));
            }
            let r = sftp.batch(&reqs)?;
            for (i, rep) in r[..read_from].iter().enumerate() {
                if let Reply::Status(code, msg) = rep {
                    if *code != 0 && !(fsync_at.contains(&i) && *code == sftp::FX_OP_UNSUPPORTED) {
                        return Err(op(format!(
                            "cannot write the staged files in {}: {}",
                            stage_dir.display(),
                            sftp::status_text(*code, msg)
                        )));
                    }
                }
            }
            let remote_now = match &r[fstat_at] {
                Reply::Attrs(a) => a.mtime.map(u64::from),
                _ => None,
            };
            let mut live: [Option<Vec<u8>>; 2] = [None, None];
            for (j, (i, _)) in live_handles.iter().enumerate() {
                let at = read_from + 3 * j;
                live[*i] =
                    Some(read_reply(&r[at], &r[at + 1]).map_err(|e| {
                        op(format!("cannot read {}: {e}", [&kx, &kf][*i].display()))
                    })?);
            }
            let changed = [
                live[0].as_deref() != Some(bytes[0]),
                live[1].as_deref() != Some(bytes[1]),
            ];

            // 4. Backups of the live files that will be replaced; drop unchanged stagings.
            let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.9fZ").to_string();
            let mut reqs = Vec::new();
            let mut backups = Vec::new();
            let mut copies = Vec::new();
            for (i, name) in [KEYFILEEXT, KEYFILE].into_iter().enumerate() {
                if !changed[i] {
                    reqs.push(Req::Remove(new_paths[i].clone()));
                    continue;
                }
                if !live_exists[i] {
                    continue;
                }
                if backups.is_empty() && copies.is_empty() && !backup_dir_exists {
                    reqs.push(Req::Mkdir(bdir.clone(), 0o700));
                }
                let b = bdir.join(format!("{name}.{stamp}"));
                if sftp.has_hardlink {
                    reqs.push(Req::Hardlink(self.path(name), b.clone()));
                    reqs.push(Req::Setstat(b.clone(), Attrs::perm(0o600)));
                    backups.push(b);
                } else {
                    copies.push((b, live[i].take().unwrap_or_default()));
                }
            }
            if !reqs.is_empty() {
                let r = sftp.batch(&reqs)?;
                if let Some(Reply::Status(code, msg)) = r
                    .iter()
                    .zip(&reqs)
                    .find(|(rep, q)| {
                        matches!(q, Req::Hardlink(..)) && !matches!(rep, Reply::Status(0, _))
                    })
                    .map(|(rep, _)| rep)
                {
                    return Err(op(format!(
                        "cannot back up the live key files into {}: {}",
                        bdir.display(),
                        sftp::status_text(*code, msg)
                    )));
                }
            }
            for (b, old) in copies {
                upload(sftp, &b, &old)
                    .map_err(|e| op(format!("cannot back up to {}: {e}", b.display())))?;
                backups.push(b);
            }
            Ok(SshStaged {
                server: self,
                gen: c.gen,
                stage_dir: stage_dir.clone(),
                dir_handle,
                changed,
                backups,
                cellservdb,
                remote_now: remote_now.map(|t| (t, Instant::now())),
                done: false,
            })
        })();
        if let Err(Fail::Op(_)) = &staged {
            // Best effort; a broken connection leaves a stage dir that a later commit removes
            // once it is a day old.
            let _ = sftp.batch(&[
                Req::Remove(new_paths[0].clone()),
                Req::Remove(new_paths[1].clone()),
                Req::Rmdir(stage_dir.clone()),
            ]);
        }
        staged
    }
}

impl Drop for SshServer {
    fn drop(&mut self) {
        self.disconnect();
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn op(m: impl Into<String>) -> Fail {
    Fail::Op(m.into())
}

const S_IFMT: u32 = 0o170000;
const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
/// Bytes per SFTP read request: well under OpenSSH's per-request cap (256 KiB less 1 KiB),
/// so a short read means end of file.
const READ_CHUNK: u32 = 64 * 1024;
const WRITE_CHUNK: usize = 32 * 1024;

fn chunks(b: &[u8]) -> Vec<(u64, &[u8])> {
    if b.is_empty() {
        return Vec::new();
    }
    b.chunks(WRITE_CHUNK)
        .enumerate()
        .map(|(i, c)| ((i * WRITE_CHUNK) as u64, c))
        .collect()
}

fn attrs(r: &Reply) -> Result<Attrs, String> {
    match r {
        Reply::Attrs(a) => Ok(*a),
        Reply::Status(code, msg) => Err(sftp::status_text(*code, msg)),
        other => Err(format!("unexpected SFTP reply {other:?}")),
    }
}

fn optional_attrs(r: &Reply) -> Result<Option<Attrs>, String> {
    match r {
        Reply::Status(sftp::FX_NO_SUCH_FILE, _) => Ok(None),
        r => attrs(r).map(Some),
    }
}

fn handle(r: &Reply) -> Result<Vec<u8>, String> {
    match r {
        Reply::Handle(h) => Ok(h.clone()),
        Reply::Status(code, msg) => Err(sftp::status_text(*code, msg)),
        other => Err(format!("unexpected SFTP reply {other:?}")),
    }
}

/// The file's bytes from the replies to READ@0 and READ@READ_CHUNK.
fn read_reply(first: &Reply, second: &Reply) -> Result<Vec<u8>, String> {
    let mut out = match first {
        Reply::Data(d) => d.clone(),
        Reply::Status(sftp::FX_EOF, _) => return Ok(Vec::new()),
        Reply::Status(code, msg) => return Err(sftp::status_text(*code, msg)),
        other => return Err(format!("unexpected SFTP reply {other:?}")),
    };
    if out.len() < READ_CHUNK as usize {
        return Ok(out);
    }
    match second {
        Reply::Data(d) if d.len() < READ_CHUNK as usize => {
            out.extend_from_slice(d);
            Ok(out)
        }
        Reply::Status(sftp::FX_EOF, _) => Ok(out),
        Reply::Data(_) => Err(format!(
            "larger than {} KiB: not a key file",
            2 * READ_CHUNK / 1024
        )),
        Reply::Status(code, msg) => Err(sftp::status_text(*code, msg)),
        other => Err(format!("unexpected SFTP reply {other:?}")),
    }
}

/// Read whole files (absent: `None`) in two round trips.
fn read_files(sftp: &mut Sftp, paths: &[&Path]) -> Result<Vec<Option<Vec<u8>>>, Fail> {
    let opens: Vec<Req> = paths
        .iter()
        .map(|p| Req::Open(p.to_path_buf(), sftp::FXF_READ, None))
        .collect();
    let r = sftp.batch(&opens)?;
    let mut handles = Vec::new();
    for (p, rep) in paths.iter().zip(&r) {
        match rep {
            Reply::Status(sftp::FX_NO_SUCH_FILE, _) => handles.push(None),
            rep => handles.push(Some(
                handle(rep).map_err(|e| op(format!("cannot open {}: {e}", p.display())))?,
            )),
        }
    }
    let mut reqs = Vec::new();
    for h in handles.iter().flatten() {
        reqs.push(Req::Read(h.clone(), 0, READ_CHUNK));
        reqs.push(Req::Read(h.clone(), READ_CHUNK as u64, READ_CHUNK));
        reqs.push(Req::Close(h.clone()));
    }
    let r = if reqs.is_empty() {
        Vec::new()
    } else {
        sftp.batch(&reqs)?
    };
    let mut out = Vec::new();
    let mut j = 0;
    for (p, h) in paths.iter().zip(&handles) {
        if h.is_none() {
            out.push(None);
            continue;
        }
        out.push(Some(
            read_reply(&r[j], &r[j + 1])
                .map_err(|e| op(format!("cannot read {}: {e}", p.display())))?,
        ));
        j += 3;
    }
    Ok(out)
}

/// Create a new file (0600, must not exist) holding `bytes`, fsynced where supported.
fn upload(sftp: &mut Sftp, path: &Path, bytes: &[u8]) -> Result<(), String> {
    let r = sftp
        .batch(&[Req::Open(
            path.to_path_buf(),
            sftp::FXF_WRITE | sftp::FXF_CREAT | sftp::FXF_EXCL,
            Some(0o600),
        )])
        .map_err(|f| match f {
            Fail::Broken(m) | Fail::Op(m) => m,
        })?;
    let h = handle(&r[0])?;
    let mut reqs: Vec<Req> = chunks(bytes)
        .into_iter()
        .map(|(off, c)| Req::Write(h.clone(), off, c.to_vec()))
        .collect();
    if sftp.has_fsync {
        reqs.push(Req::Fsync(h.clone()));
    }
    reqs.push(Req::Close(h));
    let r = sftp.batch(&reqs).map_err(|f| match f {
        Fail::Broken(m) | Fail::Op(m) => m,
    })?;
    for rep in r {
        if let Reply::Status(code, msg) = rep {
            if code != 0 {
                return Err(sftp::status_text(code, &msg));
            }
        }
    }
    Ok(())
}

fn home_dir() -> PathBuf {
    if let Some(h) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        return PathBuf::from(h);
    }
    // SAFETY: getpwuid returns a pointer into static storage or NULL; read at once.
    unsafe {
        let pw = libc::getpwuid(libc::getuid());
        if !pw.is_null() && !(*pw).pw_dir.is_null() {
            let s = std::ffi::CStr::from_ptr((*pw).pw_dir);
            return PathBuf::from(std::ffi::OsStr::from_bytes(s.to_bytes()));
        }
    }
    PathBuf::from("/")
}

/// 16 random hex digits for a stage dir's name.
fn random_hex() -> String {
    let mut b = [0u8; 8];
    if getrandom::fill(&mut b).is_err() {
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        b = ((t as u64) ^ ((std::process::id() as u64) << 32)).to_be_bytes();
    }
    hex::encode(b)
}

impl Server for SshServer {
    fn name(&self) -> &str {
        &self.name
    }

    fn read_keys(&self) -> Result<KeySet, FleetError> {
        let [kf, kx] = self.with_conn(|c| self.read_pair(c))?;
        let corrupt = |file: &str, e: crate::format::FormatError| {
            self.err(format!("{}: {e}", self.path(file).display()))
        };
        let mut keys = match &kf {
            Some(b) => read_keyfile(b).map_err(|e| corrupt(KEYFILE, e))?,
            None => KeySet::new(),
        };
        if let Some(b) = &kx {
            let ext = read_keyfileext(b).map_err(|e| corrupt(KEYFILEEXT, e))?;
            for k in ext.iter() {
                keys.insert(k.clone())
                    .map_err(|e| self.err(format!("{}: {e}", self.path(KEYFILEEXT).display())))?;
            }
        }
        Ok(keys)
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

    fn stage(&self, files: &KeyFiles) -> Result<Box<dyn Staged + '_>, FleetError> {
        // The bytes must be key files (as the local store checks); nothing else is checked
        // before the upload.
        read_keyfile(&files.keyfile)
            .map_err(|e| self.err(format!("the KeyFile to install is not valid: {e}")))?;
        read_keyfileext(&files.keyfileext)
            .map_err(|e| self.err(format!("the KeyFileExt to install is not valid: {e}")))?;
        let st = self.with_conn(|c| self.stage_on(c, files))?;
        Ok(Box::new(st))
    }
}

/// What a commit leaves for later.
struct Tidy {
    gen: u64,
    stage_dir: PathBuf,
    dir_handle: Option<Vec<u8>>,
    remote_now: Option<u64>,
}

/// Files staged on one SSH server.
struct SshStaged<'a> {
    server: &'a SshServer,
    /// The connection that staged them.
    gen: u64,
    stage_dir: PathBuf,
    /// An SFTP handle on the conf dir, to fsync it after the renames.
    dir_handle: Option<Vec<u8>>,
    /// [KeyFileExt, KeyFile]: does the live file change?
    changed: [bool; 2],
    /// Backups made of the live files that change.
    backups: Vec<PathBuf>,
    /// CellServDB's mtime when staged (None: absent, so not touched).
    cellservdb: Option<u64>,
    /// The server's clock at staging (a staged file's mtime) and our instant then.
    remote_now: Option<(u64, Instant)>,
    /// Committed or discarded.
    done: bool,
}

impl SshStaged<'_> {
    /// The mtime CellServDB gets: a whole second later than it had, and at least the
    /// server's present time as far as we can tell.
    fn bump(&self) -> Option<u32> {
        let old = self.cellservdb?;
        let now = match self.remote_now {
            Some((t, at)) => t + at.elapsed().as_secs(),
            None => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        };
        u32::try_from(now.max(old + 1)).ok()
    }

    fn remote_now(&self) -> Option<u64> {
        self.remote_now.map(|(t, at)| t + at.elapsed().as_secs())
    }

    fn commit_on(&self, c: &mut Conn) -> Result<(), Fail> {
        let s = self.server;
        let names = [KEYFILEEXT, KEYFILE];
        let any = self.changed.iter().any(|c| *c);
        let method = match s.replace {
            ReplaceMethod::Auto if c.sftp.has_posix_rename => ReplaceMethod::PosixRename,
            ReplaceMethod::Auto => ReplaceMethod::ShellMv,
            m => m,
        };
        let mut reqs = Vec::new();
        let mut renamed = Vec::new();
        if any && method == ReplaceMethod::ShellMv {
            shell_mv(c, &s.confdir, &self.stage_dir, self.changed)?;
        }
        for (i, name) in names.into_iter().enumerate() {
            if self.changed[i] && method == ReplaceMethod::PosixRename {
                if !c.sftp.has_posix_rename {
                    return Err(op("the server's SFTP lacks posix-rename@openssh.com"));
                }
                reqs.push(Req::PosixRename(self.stage_dir.join(name), s.path(name)));
                renamed.push(name);
            }
        }
        let renames = reqs.len();
        if any {
            if let Some(t) = self.bump() {
                reqs.push(Req::Setstat(s.path("CellServDB"), Attrs::times(t, t)));
            }
            if let (Some(h), true) = (&self.dir_handle, c.sftp.has_fsync) {
                reqs.push(Req::Fsync(h.clone()));
            }
        }
        let r = if reqs.is_empty() {
            Vec::new()
        } else {
            c.sftp.batch(&reqs)?
        };
        for (i, rep) in r.iter().enumerate().take(renames) {
            if let Reply::Status(code, msg) = rep {
                if *code != 0 {
                    return Err(op(format!(
                        "cannot rename the staged {} into place: {}",
                        renamed[i],
                        sftp::status_text(*code, msg)
                    )));
                }
            }
        }
        if let (true, Some(_)) = (any, self.bump()) {
            if let Some(Reply::Status(code, msg)) = r.get(renames) {
                if *code != 0 {
                    return Err(op(format!(
                        "the new key files are in place, but CellServDB's mtime could not be \
                         changed ({}): running servers keep the old keys until it changes \
                         (touch {})",
                        sftp::status_text(*code, msg),
                        s.path("CellServDB").display()
                    )));
                }
            }
        }
        Ok(())
    }
}

/// Commit by `mv -f` in the login shell (a server without `posix-rename@openssh.com`).
fn shell_mv(c: &mut Conn, dir: &Path, stage: &Path, changed: [bool; 2]) -> Result<(), Fail> {
    let mut cmd = b"cd -- ".to_vec();
    cmd.extend_from_slice(&sh_quote(dir.as_os_str().as_bytes()));
    for (i, name) in [KEYFILEEXT, KEYFILE].into_iter().enumerate() {
        if changed[i] {
            cmd.extend_from_slice(b" && mv -f -- ");
            cmd.extend_from_slice(&sh_quote(stage.join(name).as_os_str().as_bytes()));
            cmd.push(b' ');
            cmd.extend_from_slice(name.as_bytes());
        }
    }
    let cmd = String::from_utf8(cmd)
        .map_err(|_| op("the conf dir's path is not UTF-8: cannot pass it to mv"))?;
    let mut ch = c
        .sess
        .channel_session()
        .map_err(|e| Fail::Broken(format!("cannot open a command channel: {}", e.message())))?;
    ch.exec(&cmd)
        .map_err(|e| Fail::Broken(format!("cannot run mv: {}", e.message())))?;
    let mut out = String::new();
    let mut err = String::new();
    ch.read_to_string(&mut out)
        .map_err(|e| Fail::Broken(format!("connection lost during mv: {e}")))?;
    let _ = ch.stderr().read_to_string(&mut err);
    let _ = ch.wait_close();
    match ch.exit_status() {
        Ok(0) => Ok(()),
        Ok(n) => Err(op(format!(
            "mv -f of the staged files failed (exit {n}): {}",
            err.trim()
        ))),
        Err(e) => Err(Fail::Broken(format!("mv: {}", e.message()))),
    }
}

impl Staged for SshStaged<'_> {
    fn commit(mut self: Box<Self>) -> Result<(), FleetError> {
        self.done = true;
        let s = self.server;
        let mut guard = lock(&s.conn);
        let r = match guard.as_mut() {
            Some(c) if c.gen == self.gen => self.commit_on(c),
            _ => Err(Fail::Broken(
                "the connection that staged the files was lost".into(),
            )),
        };
        match r {
            Ok(()) => {
                lock(&s.tidy).push(Tidy {
                    gen: self.gen,
                    stage_dir: self.stage_dir.clone(),
                    dir_handle: self.dir_handle.take(),
                    remote_now: self.remote_now(),
                });
                Ok(())
            }
            Err(Fail::Op(m)) => Err(s.err(format!("commit failed: {m}"))),
            Err(Fail::Broken(m)) => {
                *guard = None;
                Err(s.err(format!(
                    "commit failed: {m}; each of the server's key files is the old one or the \
                     new one (each is replaced by one rename); verify to see which"
                )))
            }
        }
    }

    fn discard(mut self: Box<Self>) {
        self.discard_now();
    }
}

impl SshStaged<'_> {
    /// Remove the staged files and the backups made for them.
    fn discard_now(&mut self) {
        if self.done {
            return;
        }
        self.done = true;
        let s = self.server;
        let mut guard = lock(&s.conn);
        let Some(c) = guard.as_mut().filter(|c| c.gen == self.gen) else {
            return;
        };
        let mut reqs = vec![
            Req::Remove(self.stage_dir.join(KEYFILEEXT)),
            Req::Remove(self.stage_dir.join(KEYFILE)),
            Req::Rmdir(self.stage_dir.clone()),
        ];
        for b in &self.backups {
            reqs.push(Req::Remove(b.clone()));
        }
        if let Some(h) = self.dir_handle.take() {
            reqs.push(Req::Close(h));
        }
        if c.sftp.batch(&reqs).is_err() {
            *guard = None;
        }
    }
}

impl Drop for SshStaged<'_> {
    fn drop(&mut self) {
        // Neither committed nor discarded: leave the server as it was.
        self.discard_now();
    }
}

/// Quote bytes for a POSIX shell: one single-quoted word.
pub fn sh_quote(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len() + 2);
    out.push(b'\'');
    for &c in s {
        if c == b'\'' {
            out.extend_from_slice(b"'\\''");
        } else {
            out.push(c);
        }
    }
    out.push(b'\'');
    out
}

/// A small SFTP (protocol 3) client on an ssh2 channel, with pipelined requests and the
/// OpenSSH extensions the ssh2 crate does not expose.
mod sftp {
    use super::Fail;
    use std::io::{Read, Write};
    use std::os::unix::ffi::OsStrExt;
    use std::path::PathBuf;

    pub const FXF_READ: u32 = 0x01;
    pub const FXF_WRITE: u32 = 0x02;
    pub const FXF_CREAT: u32 = 0x08;
    pub const FXF_EXCL: u32 = 0x20;

    pub const FX_EOF: u32 = 1;
    pub const FX_NO_SUCH_FILE: u32 = 2;
    pub const FX_OP_UNSUPPORTED: u32 = 8;

    const INIT: u8 = 1;
    const VERSION: u8 = 2;
    const OPEN: u8 = 3;
    const CLOSE: u8 = 4;
    const READ: u8 = 5;
    const WRITE: u8 = 6;
    const LSTAT: u8 = 7;
    const FSTAT: u8 = 8;
    const SETSTAT: u8 = 9;
    const OPENDIR: u8 = 11;
    const READDIR: u8 = 12;
    const REMOVE: u8 = 13;
    const MKDIR: u8 = 14;
    const RMDIR: u8 = 15;
    const STAT: u8 = 17;
    const STATUS: u8 = 101;
    const HANDLE: u8 = 102;
    const DATA: u8 = 103;
    const NAME: u8 = 104;
    const ATTRS: u8 = 105;
    const EXTENDED: u8 = 200;
    const EXTENDED_REPLY: u8 = 201;

    const ATTR_SIZE: u32 = 0x1;
    const ATTR_UIDGID: u32 = 0x2;
    const ATTR_PERMISSIONS: u32 = 0x4;
    const ATTR_ACMODTIME: u32 = 0x8;
    const ATTR_EXTENDED: u32 = 0x8000_0000;

    /// Largest reply accepted (OpenSSH's sftp-server sends at most 256 KiB).
    const MAX_PACKET: usize = 1 << 20;

    #[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
    pub struct Attrs {
        pub size: Option<u64>,
        pub perm: Option<u32>,
        pub atime: Option<u32>,
        pub mtime: Option<u32>,
    }

    impl Attrs {
        pub fn perm(p: u32) -> Attrs {
            Attrs {
                perm: Some(p),
                ..Attrs::default()
            }
        }
        pub fn times(atime: u32, mtime: u32) -> Attrs {
            Attrs {
                atime: Some(atime),
                mtime: Some(mtime),
                ..Attrs::default()
            }
        }
    }

    /// One request.
    pub enum Req {
        Stat(PathBuf),
        Lstat(PathBuf),
        Fstat(Vec<u8>),
        /// path, pflags, permissions for a created file
        Open(PathBuf, u32, Option<u32>),
        Close(Vec<u8>),
        Read(Vec<u8>, u64, u32),
        Write(Vec<u8>, u64, Vec<u8>),
        Setstat(PathBuf, Attrs),
        Mkdir(PathBuf, u32),
        Rmdir(PathBuf),
        Remove(PathBuf),
        Opendir(PathBuf),
        Readdir(Vec<u8>),
        Fsync(Vec<u8>),
        PosixRename(PathBuf, PathBuf),
        Hardlink(PathBuf, PathBuf),
    }

    /// One reply.
    pub enum Reply {
        Status(u32, String),
        Handle(Vec<u8>),
        /// File bytes: key material. Never printed (see the Debug impl).
        Data(Vec<u8>),
        Attrs(Attrs),
        /// READDIR: names with their attributes.
        Name(Vec<(String, Attrs)>),
        Extended,
    }

    impl std::fmt::Debug for Reply {
        /// Names the kind of reply and sizes, never the bytes of a file.
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            match self {
                Reply::Status(c, m) => write!(f, "STATUS {}", status_text(*c, m)),
                Reply::Handle(h) => write!(f, "HANDLE ({} bytes)", h.len()),
                Reply::Data(d) => write!(f, "DATA ({} bytes)", d.len()),
                Reply::Attrs(_) => write!(f, "ATTRS"),
                Reply::Name(v) => write!(f, "NAME ({} entries)", v.len()),
                Reply::Extended => write!(f, "EXTENDED_REPLY"),
            }
        }
    }

    pub fn status_text(code: u32, msg: &str) -> String {
        let what = match code {
            0 => "ok",
            1 => "end of file",
            2 => "no such file or directory",
            3 => "permission denied",
            4 => "failure",
            5 => "bad message",
            6 => "no connection",
            7 => "connection lost",
            8 => "operation not supported by the server",
            _ => "error",
        };
        if msg.is_empty() || msg.eq_ignore_ascii_case(what) {
            what.to_string()
        } else {
            format!("{what} ({msg})")
        }
    }

    pub struct Sftp {
        ch: ssh2::Channel,
        next_id: u32,
        pub has_posix_rename: bool,
        pub has_fsync: bool,
        pub has_hardlink: bool,
    }

    fn put_u32(b: &mut Vec<u8>, v: u32) {
        b.extend_from_slice(&v.to_be_bytes());
    }
    fn put_u64(b: &mut Vec<u8>, v: u64) {
        b.extend_from_slice(&v.to_be_bytes());
    }
    fn put_str(b: &mut Vec<u8>, s: &[u8]) {
        put_u32(b, s.len() as u32);
        b.extend_from_slice(s);
    }
    fn put_path(b: &mut Vec<u8>, p: &std::path::Path) {
        put_str(b, p.as_os_str().as_bytes());
    }
    fn put_attrs(b: &mut Vec<u8>, a: &Attrs) {
        let mut flags = 0;
        if a.size.is_some() {
            flags |= ATTR_SIZE;
        }
        if a.perm.is_some() {
            flags |= ATTR_PERMISSIONS;
        }
        if a.atime.is_some() && a.mtime.is_some() {
            flags |= ATTR_ACMODTIME;
        }
        put_u32(b, flags);
        if let Some(s) = a.size {
            put_u64(b, s);
        }
        if let Some(p) = a.perm {
            put_u32(b, p);
        }
        if let (Some(at), Some(mt)) = (a.atime, a.mtime) {
            put_u32(b, at);
            put_u32(b, mt);
        }
    }

    /// A cursor over a reply's bytes.
    struct Cur<'a>(&'a [u8]);

    impl<'a> Cur<'a> {
        fn u32(&mut self) -> Result<u32, Fail> {
            let b = self.take(4)?;
            Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        }
        fn u64(&mut self) -> Result<u64, Fail> {
            let b = self.take(8)?;
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            Ok(u64::from_be_bytes(a))
        }
        fn take(&mut self, n: usize) -> Result<&'a [u8], Fail> {
            if self.0.len() < n {
                return Err(Fail::Broken("a malformed SFTP reply".into()));
            }
            let (a, b) = self.0.split_at(n);
            self.0 = b;
            Ok(a)
        }
        fn string(&mut self) -> Result<&'a [u8], Fail> {
            let n = self.u32()? as usize;
            self.take(n)
        }
        fn attrs(&mut self) -> Result<Attrs, Fail> {
            let flags = self.u32()?;
            let mut a = Attrs::default();
            if flags & ATTR_SIZE != 0 {
                a.size = Some(self.u64()?);
            }
            if flags & ATTR_UIDGID != 0 {
                self.u32()?;
                self.u32()?;
            }
            if flags & ATTR_PERMISSIONS != 0 {
                a.perm = Some(self.u32()?);
            }
            if flags & ATTR_ACMODTIME != 0 {
                a.atime = Some(self.u32()?);
                a.mtime = Some(self.u32()?);
            }
            if flags & ATTR_EXTENDED != 0 {
                let n = self.u32()?;
                for _ in 0..n {
                    self.string()?;
                    self.string()?;
                }
            }
            Ok(a)
        }
    }

    fn broken(what: &str, e: impl std::fmt::Display) -> Fail {
        Fail::Broken(format!("connection lost ({what}: {e})"))
    }

    impl Sftp {
        /// Open the `sftp` subsystem and agree on version 3; note the extensions offered.
        pub fn start(sess: &ssh2::Session) -> Result<Sftp, Fail> {
            let mut ch = sess
                .channel_session()
                .map_err(|e| broken("opening a channel", e.message()))?;
            ch.subsystem("sftp")
                .map_err(|e| broken("starting the sftp subsystem", e.message()))?;
            let mut s = Sftp {
                ch,
                next_id: 1,
                has_posix_rename: false,
                has_fsync: false,
                has_hardlink: false,
            };
            let mut pkt = Vec::new();
            put_u32(&mut pkt, 5);
            pkt.push(INIT);
            put_u32(&mut pkt, 3);
            s.ch.write_all(&pkt)
                .and_then(|_| s.ch.flush())
                .map_err(|e| broken("SFTP init", e))?;
            let (t, body) = s.recv()?;
            if t != VERSION {
                return Err(Fail::Broken(format!(
                    "the sftp subsystem answered {t}, not VERSION (is something printing \
                     from the login shell's rc files?)"
                )));
            }
            let mut c = Cur(&body);
            let v = c.u32()?;
            if v < 3 {
                return Err(Fail::Op(format!("SFTP version {v} is too old")));
            }
            while !c.0.is_empty() {
                let name = c.string()?;
                let _data = c.string()?;
                match name {
                    b"posix-rename@openssh.com" => s.has_posix_rename = true,
                    b"fsync@openssh.com" => s.has_fsync = true,
                    b"hardlink@openssh.com" => s.has_hardlink = true,
                    _ => {}
                }
            }
            Ok(s)
        }

        fn recv(&mut self) -> Result<(u8, Vec<u8>), Fail> {
            let mut len = [0u8; 4];
            self.ch
                .read_exact(&mut len)
                .map_err(|e| broken("reading an SFTP reply", e))?;
            let len = u32::from_be_bytes(len) as usize;
            if len == 0 || len > MAX_PACKET {
                return Err(Fail::Broken(format!("an SFTP reply of {len} bytes")));
            }
            let mut body = vec![0u8; len];
            self.ch
                .read_exact(&mut body)
                .map_err(|e| broken("reading an SFTP reply", e))?;
            let t = body.remove(0);
            Ok((t, body))
        }

        fn encode(&mut self, req: &Req, out: &mut Vec<u8>) -> u32 {
            let id = self.next_id;
            self.next_id = self.next_id.wrapping_add(1);
            let mut b = Vec::new();
            let ext = |b: &mut Vec<u8>, name: &[u8]| {
                b.push(EXTENDED);
                put_u32(b, id);
                put_str(b, name);
            };
            match req {
                Req::Stat(p) | Req::Lstat(p) | Req::Remove(p) | Req::Rmdir(p) | Req::Opendir(p) => {
                    b.push(match req {
                        Req::Stat(_) => STAT,
                        Req::Lstat(_) => LSTAT,
                        Req::Remove(_) => REMOVE,
                        Req::Rmdir(_) => RMDIR,
                        _ => OPENDIR,
                    });
                    put_u32(&mut b, id);
                    put_path(&mut b, p);
                }
                Req::Fstat(h) | Req::Close(h) | Req::Readdir(h) => {
                    b.push(match req {
                        Req::Fstat(_) => FSTAT,
                        Req::Close(_) => CLOSE,
                        _ => READDIR,
                    });
                    put_u32(&mut b, id);
                    put_str(&mut b, h);
                }
                Req::Open(p, flags, perm) => {
                    b.push(OPEN);
                    put_u32(&mut b, id);
                    put_path(&mut b, p);
                    put_u32(&mut b, *flags);
                    put_attrs(
                        &mut b,
                        &Attrs {
                            perm: *perm,
                            ..Attrs::default()
                        },
                    );
                }
                Req::Read(h, off, len) => {
                    b.push(READ);
                    put_u32(&mut b, id);
                    put_str(&mut b, h);
                    put_u64(&mut b, *off);
                    put_u32(&mut b, *len);
                }
                Req::Write(h, off, data) => {
                    b.push(WRITE);
                    put_u32(&mut b, id);
                    put_str(&mut b, h);
                    put_u64(&mut b, *off);
                    put_str(&mut b, data);
                }
                Req::Setstat(p, a) => {
                    b.push(SETSTAT);
                    put_u32(&mut b, id);
                    put_path(&mut b, p);
                    put_attrs(&mut b, a);
                }
                Req::Mkdir(p, mode) => {
                    b.push(MKDIR);
                    put_u32(&mut b, id);
                    put_path(&mut b, p);
                    put_attrs(&mut b, &Attrs::perm(*mode));
                }
                Req::Fsync(h) => {
                    ext(&mut b, b"fsync@openssh.com");
                    put_str(&mut b, h);
                }
                Req::PosixRename(from, to) => {
                    ext(&mut b, b"posix-rename@openssh.com");
                    put_path(&mut b, from);
                    put_path(&mut b, to);
                }
                Req::Hardlink(from, to) => {
                    ext(&mut b, b"hardlink@openssh.com");
                    put_path(&mut b, from);
                    put_path(&mut b, to);
                }
            }
            put_u32(out, b.len() as u32);
            out.extend_from_slice(&b);
            id
        }

        /// Send every request at once, then read their replies (in order).
        pub fn batch(&mut self, reqs: &[Req]) -> Result<Vec<Reply>, Fail> {
            let mut out = Vec::new();
            let ids: Vec<u32> = reqs.iter().map(|r| self.encode(r, &mut out)).collect();
            self.ch
                .write_all(&out)
                .and_then(|_| self.ch.flush())
                .map_err(|e| broken("sending SFTP requests", e))?;
            let mut replies = Vec::with_capacity(reqs.len());
            for id in ids {
                let (t, body) = self.recv()?;
                let mut c = Cur(&body);
                let got = c.u32()?;
                if got != id {
                    return Err(Fail::Broken(format!(
                        "SFTP reply {got} where {id} was expected"
                    )));
                }
                replies.push(match t {
                    STATUS => {
                        let code = c.u32()?;
                        let msg = c
                            .string()
                            .map(|m| String::from_utf8_lossy(m).into_owned())
                            .unwrap_or_default();
                        Reply::Status(code, msg)
                    }
                    HANDLE => Reply::Handle(c.string()?.to_vec()),
                    DATA => Reply::Data(c.string()?.to_vec()),
                    ATTRS => Reply::Attrs(c.attrs()?),
                    NAME => {
                        let n = c.u32()?;
                        let mut v = Vec::new();
                        for _ in 0..n {
                            let name = String::from_utf8_lossy(c.string()?).into_owned();
                            c.string()?; // long name
                            v.push((name, c.attrs()?));
                        }
                        Reply::Name(v)
                    }
                    EXTENDED_REPLY => Reply::Extended,
                    t => return Err(Fail::Broken(format!("an SFTP reply of type {t}"))),
                });
            }
            Ok(replies)
        }

        /// The names in a directory (without `.` and `..`) with their attributes.
        pub fn list_dir(&mut self, dir: &std::path::Path) -> Result<Vec<(String, Attrs)>, Fail> {
            let r = self.batch(&[Req::Opendir(dir.to_path_buf())])?;
            let h = match &r[0] {
                Reply::Handle(h) => h.clone(),
                Reply::Status(code, msg) => return Err(Fail::Op(status_text(*code, msg))),
                _ => return Err(Fail::Op("unexpected reply to OPENDIR".into())),
            };
            let mut names = Vec::new();
            loop {
                let r = self.batch(&[Req::Readdir(h.clone())])?;
                match r.into_iter().next() {
                    Some(Reply::Name(v)) => names.extend(v),
                    _ => break,
                }
            }
            self.batch(&[Req::Close(h)])?;
            names.retain(|(n, _)| n != "." && n != "..");
            Ok(names)
        }
    }
}

// ---------------------------------------------------------------------------------------
// known_hosts

/// The name OpenSSH looks a host up by: `host` on port 22, `[host]:port` otherwise.
pub fn known_hosts_name(host: &str, port: u16) -> String {
    let h = host.to_ascii_lowercase();
    if port == 22 {
        h
    } else {
        format!("[{h}]:{port}")
    }
}

/// The parsed entries of a known_hosts file.
#[derive(Debug, Default)]
pub struct KnownHosts {
    path: PathBuf,
    entries: Vec<KnownEntry>,
}

#[derive(Debug, Clone)]
struct KnownEntry {
    line: usize,
    revoked: bool,
    patterns: String,
    key_type: String,
    key: Vec<u8>,
}

/// What known_hosts says about a host's key.
#[derive(Debug, PartialEq, Eq)]
pub enum HostCheck {
    Match,
    /// Entries exist for the name, none with this key: the lines that name it.
    Changed {
        lines: Vec<usize>,
    },
    Unknown,
    Revoked {
        line: usize,
    },
}

impl KnownHosts {
    /// Read a known_hosts file; an absent file is empty (every host is unknown). Lines this
    /// reader does not understand (`@cert-authority`, SSH1 keys, garbage) are skipped.
    pub fn load(path: &Path) -> Result<KnownHosts, String> {
        match std::fs::read_to_string(path) {
            Ok(t) => Ok(KnownHosts::parse(&t, path)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(KnownHosts {
                path: path.to_path_buf(),
                entries: Vec::new(),
            }),
            Err(e) => Err(format!("cannot read known_hosts {}: {e}", path.display())),
        }
    }

    pub fn parse(text: &str, path: &Path) -> KnownHosts {
        let mut entries = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let l = raw.trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            let mut f = l.split_whitespace();
            let mut first = f.next().unwrap_or("");
            let mut revoked = false;
            if first.starts_with('@') {
                if first != "@revoked" {
                    continue; // @cert-authority: host certificates are not used here
                }
                revoked = true;
                first = f.next().unwrap_or("");
            }
            let (Some(kt), Some(kb)) = (f.next(), f.next()) else {
                continue;
            };
            let Some(key) = base64_decode(kb) else {
                continue;
            };
            entries.push(KnownEntry {
                line: i + 1,
                revoked,
                patterns: first.to_string(),
                key_type: kt.to_string(),
                key,
            });
        }
        KnownHosts {
            path: path.to_path_buf(),
            entries,
        }
    }

    fn entries_for(&self, name: &str) -> Vec<KnownEntry> {
        self.entries
            .iter()
            .filter(|e| host_matches(name, &e.patterns))
            .cloned()
            .collect()
    }

    /// Check `key` (the SSH wire blob) for `name` (from `known_hosts_name`).
    pub fn check(&self, name: &str, key: &[u8]) -> HostCheck {
        let found = self.entries_for(name);
        if let Some(e) = found.iter().find(|e| e.revoked && e.key == key) {
            return HostCheck::Revoked { line: e.line };
        }
        let plain: Vec<&KnownEntry> = found.iter().filter(|e| !e.revoked).collect();
        if plain.iter().any(|e| e.key == key) {
            return HostCheck::Match;
        }
        if plain.is_empty() {
            HostCheck::Unknown
        } else {
            HostCheck::Changed {
                lines: plain.iter().map(|e| e.line).collect(),
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn known_types(entries: &[KnownEntry]) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    for e in entries.iter().filter(|e| !e.revoked) {
        if !v.contains(&e.key_type) {
            v.push(e.key_type.clone());
        }
    }
    v
}

/// The host key algorithms (libssh2's names) that produce keys of a known_hosts type.
fn host_key_algs(key_type: &str) -> Vec<&'static str> {
    match key_type {
        "ssh-ed25519" => vec!["ssh-ed25519"],
        "ecdsa-sha2-nistp256" => vec!["ecdsa-sha2-nistp256"],
        "ecdsa-sha2-nistp384" => vec!["ecdsa-sha2-nistp384"],
        "ecdsa-sha2-nistp521" => vec!["ecdsa-sha2-nistp521"],
        "ssh-rsa" => vec!["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"],
        "ssh-dss" => vec!["ssh-dss"],
        _ => vec![],
    }
}

/// The key type named inside an SSH public key blob.
fn key_type_of(blob: &[u8]) -> Option<String> {
    let n = u32::from_be_bytes(blob.get(..4)?.try_into().ok()?) as usize;
    let t = blob.get(4..4 + n)?;
    Some(String::from_utf8_lossy(t).into_owned())
}

/// OpenSSH's host matching for one known_hosts host field: a hashed `|1|salt|hash` entry,
/// or comma-separated patterns with `*` and `?`, where a matching `!pattern` vetoes the line.
fn host_matches(name: &str, field: &str) -> bool {
    if let Some(rest) = field.strip_prefix("|1|") {
        let Some((salt, hash)) = rest.split_once('|') else {
            return false;
        };
        let (Some(salt), Some(hash)) = (base64_decode(salt), base64_decode(hash)) else {
            return false;
        };
        return hmac_sha1(&salt, name.as_bytes()).as_slice() == hash.as_slice();
    }
    let name = name.to_ascii_lowercase();
    let mut positive = false;
    for p in field.split(',') {
        let (neg, p) = match p.strip_prefix('!') {
            Some(p) => (true, p),
            None => (false, p),
        };
        if wildcard(name.as_bytes(), p.to_ascii_lowercase().as_bytes()) {
            if neg {
                return false;
            }
            positive = true;
        }
    }
    positive
}

/// `*` matches any run, `?` one character (OpenSSH's match_pattern).
fn wildcard(s: &[u8], p: &[u8]) -> bool {
    match p.split_first() {
        None => s.is_empty(),
        Some((b'*', rest)) => (0..=s.len()).any(|i| wildcard(&s[i..], rest)),
        Some((b'?', rest)) => !s.is_empty() && wildcard(&s[1..], rest),
        Some((c, rest)) => s.first() == Some(c) && wildcard(&s[1..], rest),
    }
}

fn hmac_sha1(key: &[u8], data: &[u8]) -> Vec<u8> {
    use hmac::{KeyInit, Mac};
    let mut m = <hmac::Hmac<sha1::Sha1> as KeyInit>::new_from_slice(key)
        .expect("HMAC takes any key length");
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64; without padding when `pad` is false (as SHA256 fingerprints print).
pub fn base64_encode(data: &[u8], pad: bool) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        let chars = chunk.len() + 1;
        for i in 0..4 {
            if i < chars {
                out.push(B64[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else if pad {
                out.push('=');
            }
        }
    }
    out
}

/// Standard base64 with or without padding; `None` on anything else.
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.bytes() {
        let v = B64.iter().position(|&x| x == c)? as u32;
        acc = acc << 6 | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    if bits >= 6 {
        return None;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_never_print_file_bytes() {
        let secret = vec![0xAB; 32];
        let s = format!("{:?}", Reply::Data(secret));
        assert_eq!(s, "DATA (32 bytes)");
        assert!(!s.contains("171") && !s.to_lowercase().contains("ab,"));
    }

    #[test]
    fn base64_round_trips() {
        for (raw, enc) in [
            (&b""[..], ""),
            (b"f", "Zg=="),
            (b"fo", "Zm8="),
            (b"foo", "Zm9v"),
            (b"foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64_encode(raw, true), enc);
            assert_eq!(base64_decode(enc).unwrap(), raw);
            assert_eq!(
                base64_decode(&base64_encode(raw, false)).unwrap(),
                raw,
                "{enc}"
            );
        }
        assert!(base64_decode("Zm9v!").is_none());
    }

    #[test]
    fn quoting_survives_any_byte() {
        assert_eq!(sh_quote(b"/usr/afs/etc"), b"'/usr/afs/etc'");
        assert_eq!(sh_quote(b"a'b"), b"'a'\\''b'");
        assert_eq!(sh_quote(b"$(rm -rf /)"), b"'$(rm -rf /)'");
        // Run the quoted word through a real sh and get the same bytes back.
        for s in [&b"a b"[..], b"it's", b"$HOME `x` \"q\" \\ \n;|&", b"-n"] {
            let mut cmd = b"printf '%s' ".to_vec();
            cmd.extend_from_slice(&sh_quote(s));
            let out = std::process::Command::new("/bin/sh")
                .arg("-c")
                .arg(std::ffi::OsStr::from_bytes(&cmd))
                .output()
                .unwrap();
            assert_eq!(out.stdout, s);
        }
    }

    fn blob(kind: &str, body: &[u8]) -> Vec<u8> {
        let mut b = (kind.len() as u32).to_be_bytes().to_vec();
        b.extend_from_slice(kind.as_bytes());
        b.extend_from_slice(body);
        b
    }

    #[test]
    fn known_hosts_match_exactly_as_openssh() {
        let k1 = blob("ssh-ed25519", &[1; 32]);
        let k2 = blob("ssh-ed25519", &[2; 32]);
        let e1 = base64_encode(&k1, true);
        let e2 = base64_encode(&k2, true);
        let text = format!(
            "# comment\n\
             127.0.0.1 ssh-ed25519 {e1}\n\
             [127.0.0.1]:2222 ssh-ed25519 {e2}\n\
             fs1.example.com,fs2.example.com ssh-ed25519 {e1}\n\
             *.cell.org,!bad.cell.org ssh-ed25519 {e1}\n\
             @revoked [old.example.com]:2200 ssh-ed25519 {e2}\n\
             @cert-authority *.example.com ssh-ed25519 {e1}\n\
             garbage\n"
        );
        let kh = KnownHosts::parse(&text, Path::new("kh"));
        // port 22 uses the bare name
        assert_eq!(
            kh.check(&known_hosts_name("127.0.0.1", 22), &k1),
            HostCheck::Match
        );
        // another port never falls back to the bare entry (libssh2's check_port does)
        assert_eq!(
            kh.check(&known_hosts_name("127.0.0.1", 2222), &k1),
            HostCheck::Changed { lines: vec![3] }
        );
        assert_eq!(
            kh.check(&known_hosts_name("127.0.0.1", 2222), &k2),
            HostCheck::Match
        );
        assert_eq!(
            kh.check(&known_hosts_name("127.0.0.1", 2223), &k1),
            HostCheck::Unknown
        );
        assert_eq!(
            kh.check(&known_hosts_name("FS2.example.com", 22), &k1),
            HostCheck::Match
        );
        assert_eq!(
            kh.check(&known_hosts_name("a.cell.org", 22), &k1),
            HostCheck::Match
        );
        assert_eq!(
            kh.check(&known_hosts_name("bad.cell.org", 22), &k1),
            HostCheck::Unknown
        );
        assert_eq!(
            kh.check(&known_hosts_name("old.example.com", 2200), &k2),
            HostCheck::Revoked { line: 6 }
        );
        // the CA line is skipped, so a CA pattern does not vouch for a plain key
        assert_eq!(
            kh.check(&known_hosts_name("x.example.com", 22), &k1),
            HostCheck::Unknown
        );
    }

    #[test]
    fn hashed_known_hosts() {
        // `ssh-keygen -H` form: |1|base64(salt)|base64(HMAC-SHA1(salt, name))
        let k = blob("ssh-ed25519", &[7; 32]);
        let salt = [9u8; 20];
        let name = "[10.0.0.1]:2022";
        let field = format!(
            "|1|{}|{}",
            base64_encode(&salt, true),
            base64_encode(&hmac_sha1(&salt, name.as_bytes()), true)
        );
        let text = format!("{field} ssh-ed25519 {}\n", base64_encode(&k, true));
        let kh = KnownHosts::parse(&text, Path::new("kh"));
        assert_eq!(kh.check(name, &k), HostCheck::Match);
        assert_eq!(kh.check("10.0.0.1", &k), HostCheck::Unknown);
        // RFC 2202 HMAC-SHA1 test case 2
        assert_eq!(
            hex::encode(hmac_sha1(b"Jefe", b"what do ya want for nothing?")),
            "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"
        );
    }
}

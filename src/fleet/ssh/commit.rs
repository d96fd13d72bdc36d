//! Phase two of a push over SSH, and its undo. `commit` sends, in one round trip,
//! `posix-rename@openssh.com` of KeyFileExt then KeyFile over the live files (rename(2): a
//! reader sees the old file or the new one, never a mix, whenever the connection drops), the
//! CellServDB mtime bump to a new whole second, and an fsync of the conf dir. A server
//! without `posix-rename` is committed with `mv -f` over an exec channel instead
//! (`ReplaceMethod::ShellMv`). The tidying the commit leaves rides in the same exchanges
//! (`SshServer::run_tidy_with`); `commit_with` also opens the live files in the first
//! and reads them back in the second. `discard` (or dropping the staged push) removes the staged
//! files and the backups made for them.

use super::stage::NAMES;
use super::tidy::Tidy;
use super::wire::{self, Attrs, Reply, Req};
use super::{lock, op, sftp, Conn, Fail, ReplaceMethod, SshServer};
use crate::fleet::{FleetError, Found, Staged};
use crate::keys::KeySet;
use crate::store::rules::{self, CELLSERVDB};
use crate::store::{KEYFILE, KEYFILEEXT};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// A commit's requests, the names it renames and CellServDB's new mtime.
type CommitReqs = (Vec<Req>, Vec<&'static str>, Option<u32>);

/// Files staged on one SSH server.
pub(super) struct SshStaged<'a> {
    pub(super) server: &'a SshServer,
    /// The connection that staged them.
    pub(super) gen: u64,
    pub(super) stage_dir: PathBuf,
    /// An SFTP handle on the conf dir, to fsync it after the renames.
    pub(super) dir_handle: Option<Vec<u8>>,
    /// [KeyFileExt, KeyFile]: does the live file change?
    pub(super) changed: [bool; 2],
    /// Backups made of the live files that change.
    pub(super) backups: Vec<PathBuf>,
    /// CellServDB's mtime when staged (None: absent, so not touched).
    pub(super) cellservdb: Option<u64>,
    /// The server's clock at staging (a staged file's mtime) and our instant then.
    pub(super) remote_now: Option<(u64, Instant)>,
    /// The live files as the stage read them.
    pub(super) found: Found,
    /// (index in `NAMES`, handle) of each live file the stage read, kept open for the
    /// recheck (closed by the commit or the discard).
    pub(super) live: Vec<(usize, Vec<u8>)>,
    /// Committed or discarded.
    pub(super) done: bool,
}

impl SshStaged<'_> {
    /// The mtime CellServDB gets: a whole second later than it had, and at least the
    /// server's present time as far as we can tell.
    fn bump(&self) -> Option<u32> {
        let old = self.cellservdb?;
        let now = self.remote_now().unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
        });
        u32::try_from(rules::cellservdb_mtime(old, now)).ok()
    }

    fn remote_now(&self) -> Option<u64> {
        self.remote_now.map(|(t, at)| t + at.elapsed().as_secs())
    }

    /// The requests of a commit: the renames (`mv -f` run first instead, where chosen),
    /// the bump and the dir fsync; with the names renamed and the bump's new mtime.
    fn commit_reqs(&self, c: &mut Conn) -> Result<CommitReqs, Fail> {
        let s = self.server;
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
        for (i, name) in NAMES.into_iter().enumerate() {
            if self.changed[i] && method == ReplaceMethod::PosixRename {
                if !c.sftp.has_posix_rename {
                    return Err(op("the server's SFTP lacks posix-rename@openssh.com"));
                }
                reqs.push(Req::PosixRename(self.stage_dir.join(name), s.path(name)));
                renamed.push(name);
            }
        }
        let bump = if any { self.bump() } else { None };
        if any {
            if let Some(t) = bump {
                reqs.push(Req::Setstat(s.path(CELLSERVDB), Attrs::times(t, t)));
            }
            if let (Some(h), true) = (&self.dir_handle, c.sftp.has_fsync) {
                reqs.push(Req::Fsync(h.clone()));
            }
        }
        Ok((reqs, renamed, bump))
    }

    /// Did the renames and the bump succeed? (`r`: the replies to `commit_reqs`.)
    fn check(&self, r: &[Reply], renamed: &[&str], bump: Option<u32>) -> Result<(), Fail> {
        let renames = renamed.len();
        for (i, rep) in r.iter().enumerate().take(renames) {
            if let Reply::Status(code, msg) = rep {
                if *code != 0 {
                    return Err(op(format!(
                        "cannot rename the staged {} into place: {}",
                        renamed[i],
                        wire::status_text(*code, msg)
                    )));
                }
            }
        }
        if let (Some(_), Some(Reply::Status(code, msg))) = (bump, r.get(renames)) {
            if *code != 0 {
                return Err(op(format!(
                    "the new key files are in place, but CellServDB's mtime could not be \
                     changed ({}): running servers keep the old keys until it changes \
                     (touch {})",
                    wire::status_text(*code, msg),
                    self.server.path(CELLSERVDB).display()
                )));
            }
        }
        Ok(())
    }

    /// The commit in one exchange (renames, bump, dir fsync), with the tidying it leaves
    /// riding along (`SshServer::run_tidy_with`: its listing's two exchanges). With
    /// `read_back`, OPENs of the live key files follow the commit's requests (the SFTP
    /// server runs requests in order, so they open the new files) and their reads ride in
    /// the second exchange: the keys after the commit, or `None` when the read-back did not
    /// come through (the caller reads again). `committed` is called when the commit's
    /// replies are in.
    fn commit_on(
        &mut self,
        c: &mut Conn,
        read_back: bool,
        committed: &dyn Fn(),
    ) -> Result<Option<KeySet>, Fail> {
        let s = self.server;
        let (mut reqs, renamed, bump) = self.commit_reqs(c)?;
        let n = reqs.len();
        let live = [s.path(KEYFILE), s.path(KEYFILEEXT)];
        let live: [&Path; 2] = [&live[0], &live[1]];
        if read_back {
            reqs.extend(sftp::open_for_reading(&live));
        }
        lock(&s.tidy).push(Tidy {
            gen: self.gen,
            stage_dir: self.stage_dir.clone(),
            dir_handle: self.dir_handle.take(),
            remote_now: self.remote_now(),
        });
        let this: &Self = self;
        let mut outcome = None;
        let r = s.run_tidy_with(c, reqs, |r| {
            committed();
            let checked = this.check(&r[..n.min(r.len())], &renamed, bump);
            let opens = r.get(n..).unwrap_or_default();
            // A read-back that cannot open is no failure of the commit: the caller reads
            // again. Whatever did open is closed.
            let handles = match (&checked, read_back) {
                (Ok(()), true) => sftp::opened(&live, opens).ok(),
                _ => None,
            };
            let next = match &handles {
                Some(h) => sftp::read_and_close(h),
                None => opens
                    .iter()
                    .filter_map(|rep| match rep {
                        Reply::Handle(h) => Some(Req::Close(h.clone())),
                        _ => None,
                    })
                    .collect(),
            };
            outcome = Some((checked, handles));
            next
        });
        match (outcome, r) {
            (None, Err(e)) => Err(e),
            (None, Ok(_)) => Err(Fail::Broken("no reply to the commit".into())),
            (Some((Err(e), _)), _) => Err(e),
            // Committed; the tidying or the read-back was cut: the caller reads again.
            (Some((Ok(()), _)), Err(_)) => Ok(None),
            (Some((Ok(()), Some(handles))), Ok((_, r2))) => {
                let got = sftp::contents(&live, &handles, &r2).ok();
                Ok(got.and_then(|g| rules::merge(g[0].as_deref(), g[1].as_deref()).ok()))
            }
            (Some((Ok(()), None)), Ok(_)) => Ok(None),
        }
    }

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
        let mut reqs: Vec<Req> = NAMES
            .iter()
            .map(|n| Req::Remove(self.stage_dir.join(n)))
            .collect();
        reqs.push(Req::Rmdir(self.stage_dir.clone()));
        for b in &self.backups {
            reqs.push(Req::Remove(b.clone()));
        }
        if let Some(h) = self.dir_handle.take() {
            reqs.push(Req::Close(h));
        }
        reqs.extend(self.live.drain(..).map(|(_, h)| Req::Close(h)));
        if c.sftp.batch(&reqs).is_err() {
            *guard = None;
        }
    }
}

/// Commit by `mv -f` in the login shell (a server without `posix-rename@openssh.com`).
fn shell_mv(c: &mut Conn, dir: &Path, stage: &Path, changed: [bool; 2]) -> Result<(), Fail> {
    let mut cmd = b"cd -- ".to_vec();
    cmd.extend_from_slice(&sh_quote(dir.as_os_str().as_bytes()));
    for (i, name) in NAMES.into_iter().enumerate() {
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

impl SshStaged<'_> {
    /// The recheck's read, in one round trip: each live file read again through the handle
    /// the stage opened (an in-place write, as asetkey's, shows in its bytes), its FSTAT and
    /// its path's LSTAT (a file renamed over it, as another afskeys commits, is another file:
    /// other size, mtime, owner or mode), and an LSTAT of a file the stage found absent.
    /// `Ok(Err(what))`: what changed.
    fn reread(&self, c: &mut Conn) -> Result<Result<(), String>, Fail> {
        let mut reqs = Vec::new();
        for (_, h) in &self.live {
            let [first, second, _close] = sftp::read_whole(h);
            reqs.extend([first, second, Req::Fstat(h.clone())]);
        }
        reqs.extend(NAMES.map(|n| Req::Lstat(self.server.path(n))));
        let r = c.sftp.batch(&reqs)?;
        let lstats = &r[3 * self.live.len()..];
        let mut now: [Option<Vec<u8>>; 2] = [None, None];
        for (i, name) in NAMES.into_iter().enumerate() {
            let path = self.server.path(name);
            let lstat = sftp::optional_attrs(&lstats[i])
                .map_err(|e| op(format!("cannot stat {}: {e}", path.display())))?;
            let Some(lstat) = lstat else { continue };
            let Some(j) = self.live.iter().position(|(k, _)| *k == i) else {
                now[i] = Some(Vec::new()); // appeared since the stage
                continue;
            };
            let at = 3 * j;
            let same_file = matches!(&r[at + 2], Reply::Attrs(a) if same_attrs(a, &lstat));
            if !same_file {
                return Ok(Err(format!("{name} changed")));
            }
            now[i] = Some(
                sftp::read_reply(&r[at], &r[at + 1])
                    .map_err(|e| op(format!("cannot read {}: {e}", path.display())))?,
            );
        }
        let [kx, kf] = now;
        Ok(self.found.changes(&Found::new(kf, kx)).map_or(Ok(()), Err))
    }

    /// Commit (see `Staged::commit_with`), reading the keys back when asked.
    fn finish(
        &mut self,
        read_back: bool,
        committed: &dyn Fn(),
    ) -> Result<Option<KeySet>, FleetError> {
        self.done = true;
        let s = self.server;
        let mut guard = lock(&s.conn);
        let r = match guard.as_mut() {
            Some(c) if c.gen == self.gen => {
                let close: Vec<Req> = self.live.drain(..).map(|(_, h)| Req::Close(h)).collect();
                match c.sftp.send_only(&close) {
                    Ok(()) => self.commit_on(c, read_back, committed),
                    Err(e) => Err(e),
                }
            }
            _ => {
                committed();
                Err(Fail::Broken(
                    "the connection that staged the files was lost".into(),
                ))
            }
        };
        match r {
            Ok(keys) => Ok(keys),
            Err(Fail::Op(m)) => Err(s.err(format!("commit failed: {m}"))),
            Err(broken) => {
                *guard = None;
                Err(s.err(format!(
                    "commit failed: {broken}; each of the server's key files is the old one or \
                     the new one (each is replaced by one rename); verify to see which"
                )))
            }
        }
    }
}

/// Do an FSTAT and an LSTAT describe the same file (as far as SFTP v3 attributes tell)?
fn same_attrs(a: &Attrs, b: &Attrs) -> bool {
    (a.size, a.perm, a.uid, a.mtime) == (b.size, b.perm, b.uid, b.mtime)
}

impl Staged for SshStaged<'_> {
    fn commit(mut self: Box<Self>) -> Result<(), FleetError> {
        self.finish(false, &|| {}).map(|_| ())
    }

    fn commit_with(
        mut self: Box<Self>,
        read_back: bool,
        committed: &dyn Fn(),
    ) -> Result<Option<KeySet>, FleetError> {
        self.finish(read_back, committed)
    }

    fn discard(mut self: Box<Self>) {
        self.discard_now();
    }

    fn found(&self) -> Option<&Found> {
        Some(&self.found)
    }

    fn recheck(&self) -> Result<(), FleetError> {
        if !self.changed.iter().any(|c| *c) {
            return Ok(()); // the commit renames nothing: nothing to compare against
        }
        let s = self.server;
        let mut guard = lock(&s.conn);
        let now = match guard.as_mut() {
            Some(c) if c.gen == self.gen => self.reread(c),
            _ => return Err(s.err("the connection that staged the files was lost")),
        };
        match now {
            Ok(Ok(())) => Ok(()),
            Ok(Err(what)) => Err(Found::refusal(&s.name, &what)),
            Err(Fail::Op(m)) => Err(s.err(format!(
                "cannot read the key files again before the commit: {m}"
            ))),
            Err(broken) => {
                *guard = None;
                Err(s.err(format!(
                    "cannot read the key files again before the commit: {broken}"
                )))
            }
        }
    }
}

impl Drop for SshStaged<'_> {
    fn drop(&mut self) {
        // Neither committed nor discarded: leave the server as it was.
        self.discard_now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}

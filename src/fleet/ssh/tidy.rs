//! What a commit leaves for later, done in the commit's own exchanges right behind its
//! renames (`run_tidy_with`), else on the same connection before its next use, when the
//! fan-out settles the servers after a push, or at disconnect, so it never delays the
//! renames: remove the emptied stage dir, close the
//! conf dir's handle, trim the oldest backups, remove stage dirs abandoned over a day ago.
//! Errors are ignored: nothing here changes what a server reads.

use super::wire::{Attrs, Reply, Req};
use super::{lock, Conn, Fail, SshServer};
use crate::store::rules::{self, BACKUP_DIR};
use crate::store::{KEYFILE, KEYFILEEXT};
use std::path::{Path, PathBuf};

/// The tidying one commit left.
pub(super) struct Tidy {
    pub(super) gen: u64,
    pub(super) stage_dir: PathBuf,
    pub(super) dir_handle: Option<Vec<u8>>,
    /// The server's clock at commit, when known (abandoned stages are judged by it).
    pub(super) remote_now: Option<u64>,
}

impl SshServer {
    /// Do what commits on this connection left to do, in two round trips: remove the stage
    /// dir and close the conf dir's handle while listing the backup dir and the conf dir,
    /// then remove the old backups and abandoned stages while closing the listings (sent
    /// without waiting for the replies). A commit runs it with its own requests riding in
    /// those two exchanges (`run_tidy_with`).
    pub(super) fn run_tidy(&self, c: &mut Conn) {
        let _ = self.run_tidy_with(c, Vec::new(), |_| Vec::new());
    }

    /// `run_tidy`, with a commit riding along: `first` at the head of the first exchange,
    /// then what `then` makes of their replies at the head of the second (see
    /// `Sftp::list_dirs`). Returns the replies to both.
    pub(super) fn run_tidy_with(
        &self,
        c: &mut Conn,
        first: Vec<Req>,
        then: impl FnOnce(&[Reply]) -> Vec<Req>,
    ) -> Result<(Vec<Reply>, Vec<Reply>), Fail> {
        let work: Vec<Tidy> = std::mem::take(&mut *lock(&self.tidy));
        let skip = first.len();
        let mut before = first;
        let mut now = None;
        for t in work {
            if t.gen != c.gen {
                continue;
            }
            before.push(Req::Rmdir(t.stage_dir.clone()));
            if let Some(h) = t.dir_handle {
                before.push(Req::Close(h));
            }
            now = now.max(t.remote_now);
        }
        if before.len() == skip {
            let r = if skip == 0 {
                Vec::new()
            } else {
                c.sftp.batch(&before)?
            };
            let next = then(&r);
            let r2 = if next.is_empty() {
                Vec::new()
            } else {
                c.sftp.batch(&next)?
            };
            return Ok((r, r2));
        }
        let bdir = self.path(BACKUP_DIR);
        let mut dirs = vec![bdir.as_path()];
        if now.is_some() {
            dirs.push(self.confdir.as_path());
        }
        let listed = c.sftp.list_dirs(before, then, &dirs, |l| {
            let mut reqs = Vec::new();
            if let Some(Ok(names)) = l.first() {
                self.trim_backups(&bdir, names, &mut reqs);
            }
            if let (Some(Ok(names)), Some(now)) = (l.get(1), now) {
                self.remove_stale_stages(names, now, &mut reqs);
            }
            reqs
        })?;
        let mut first = listed.before;
        first.truncate(skip);
        Ok((first, listed.between))
    }

    fn trim_backups(&self, bdir: &Path, names: &[(String, Attrs)], reqs: &mut Vec<Req>) {
        for f in [KEYFILE, KEYFILEEXT] {
            let old = rules::backups_to_trim(names.iter().map(|(n, _)| n.as_str()), f);
            reqs.extend(old.into_iter().map(|n| Req::Remove(bdir.join(n))));
        }
    }

    fn remove_stale_stages(&self, names: &[(String, Attrs)], now: u64, reqs: &mut Vec<Req>) {
        for (n, a) in names {
            if rules::is_stale_stage(n, a.perm, a.mtime.map(u64::from), now) {
                let d = self.path(n);
                reqs.push(Req::Remove(d.join(KEYFILEEXT)));
                reqs.push(Req::Remove(d.join(KEYFILE)));
                reqs.push(Req::Rmdir(d));
            }
        }
    }
}

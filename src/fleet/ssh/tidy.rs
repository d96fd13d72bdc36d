//! What a commit leaves for later, done on the same connection before its next use (or at
//! disconnect), so it never delays the renames: remove the emptied stage dir, close the
//! conf dir's handle, trim the oldest backups, remove stage dirs abandoned over a day ago.
//! Errors are ignored: nothing here changes what a server reads.

use super::wire::Req;
use super::{lock, Conn, Fail, SshServer};
use crate::store::rules::{self, BACKUP_DIR};
use crate::store::{KEYFILE, KEYFILEEXT};
use std::path::PathBuf;

/// The tidying one commit left.
pub(super) struct Tidy {
    pub(super) gen: u64,
    pub(super) stage_dir: PathBuf,
    pub(super) dir_handle: Option<Vec<u8>>,
    /// The server's clock at commit, when known (abandoned stages are judged by it).
    pub(super) remote_now: Option<u64>,
}

impl SshServer {
    /// Do what commits on this connection left to do.
    pub(super) fn run_tidy(&self, c: &mut Conn) {
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
            let old = rules::backups_to_trim(names.iter().map(|(n, _)| n.as_str()), f);
            remove.extend(old.into_iter().map(|n| Req::Remove(bdir.join(n))));
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
            if rules::is_stale_stage(&n, a.mtime.map(u64::from), now) {
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
}

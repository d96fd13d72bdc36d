//! The two phases of a push over the OpenSSH transport, with the conf-dir rules of
//! `store::rules` (the same checks, stage dir, backups and CellServDB bump as the ssh2
//! transport): `stage` uploads both files into a private stage dir beside the live ones,
//! fsyncs them and hard-links backups of the live files that change; `commit` renames them
//! over the live files with `posix-rename@openssh.com`, bumps CellServDB's mtime and fsyncs
//! the conf dir; `discard` removes what `stage` made.

use super::{lock, op, sftp_fail, Conn, Fail, OpensshServer};
use crate::fleet::{FleetError, Found, KeyFiles, Staged};
use crate::store::rules::{self, BACKUP_DIR, CELLSERVDB, STAGE_PREFIX};
use crate::store::{KEYFILE, KEYFILEEXT};
use openssh_sftp_client::metadata::{MetaData, MetaDataBuilder, Permissions};
use openssh_sftp_client::{Sftp, UnixTimeStamp};
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// KeyFileExt first: a server never sees a new KeyFile beside an old KeyFileExt.
const NAMES: [&str; 2] = [KEYFILEEXT, KEYFILE];

/// The mode bits (type and permissions) of an SFTP stat, as `rules` reads them.
pub(super) fn mode(m: &MetaData) -> u32 {
    let kind = match m.file_type() {
        Some(t) if t.is_dir() => 0o040000,
        Some(t) if t.is_file() => 0o100000,
        Some(t) if t.is_symlink() => 0o120000,
        _ => 0,
    };
    kind | m.permissions().map(|p| p.as_raw().bits()).unwrap_or(0) & 0o7777
}

/// `metadata`/`symlink_metadata`, `None` when there is no such file.
pub(super) async fn stat(sftp: &Sftp, path: &Path, follow: bool) -> Result<Option<MetaData>, Fail> {
    let mut fs = sftp.fs();
    let r = if follow {
        fs.metadata(path).await
    } else {
        fs.symlink_metadata(path).await
    };
    match r {
        Ok(m) => Ok(Some(m)),
        Err(openssh_sftp_client::Error::SftpError(
            openssh_sftp_client::error::SftpErrorKind::NoSuchFile,
            _,
        )) => Ok(None),
        Err(e) => Err(sftp_fail(path.display(), e)),
    }
}

fn random_hex() -> String {
    let mut b = [0u8; 8];
    let _ = getrandom::fill(&mut b);
    hex::encode(b)
}

/// What the stage found on the server before writing.
struct Survey {
    cellservdb: Option<u64>,
    backup_dir: Option<bool>,
    /// The owners of the conf dir and of each live key file, judged once the login user's
    /// uid is known (the owner of the stage dir afskeys makes).
    owners: Vec<(Option<PathBuf>, u32)>,
    /// The backup dir's names: backups are named after the newest (`rules::backup_time`).
    backup_names: Vec<String>,
}

/// Files staged on one server by `OpensshServer::stage`.
pub(super) struct OpensshStaged<'a> {
    server: &'a OpensshServer,
    gen: u64,
    stage_dir: PathBuf,
    changed: [bool; 2],
    backups: Vec<PathBuf>,
    cellservdb: Option<u64>,
    /// The server's clock (a staged file's mtime) and when it was read.
    remote_now: Option<(u64, Instant)>,
    /// The live files as the stage read them.
    found: Found,
}

impl OpensshServer {
    pub(super) fn stage_on(
        &self,
        c: &mut Conn,
        files: &KeyFiles,
    ) -> Result<OpensshStaged<'_>, Fail> {
        let survey = self.run(self.survey(&c.sftp))?;
        let stage_dir = self.path(&format!("{STAGE_PREFIX}{}", random_hex()));
        let bytes: [&[u8]; 2] = [&files.keyfileext, &files.keyfile];
        let r = self.run(self.upload(&c.sftp, &stage_dir, bytes, &survey));
        if matches!(&r, Err(e) if !e.is_lost()) {
            let _ = self.run(remove_stage(&c.sftp, &stage_dir, &[]));
        }
        let (changed, backups, remote_now, found) = r?;
        Ok(OpensshStaged {
            found,
            server: self,
            gen: c.gen,
            stage_dir,
            changed,
            backups,
            cellservdb: survey.cellservdb,
            remote_now: remote_now.map(|t| (t, Instant::now())),
        })
    }

    /// The conf dir, the live key files and the backup dir checked as `rules` says.
    async fn survey(&self, sftp: &Sftp) -> Result<Survey, Fail> {
        let dir = &self.t.confdir;
        let d = stat(sftp, dir, true)
            .await?
            .ok_or_else(|| op(format!("conf dir {}: no such directory", dir.display())))?;
        rules::check_conf_dir(mode(&d), 0, true, None).map_err(|p| self.dir_problem(p))?;
        let mut owners: Vec<(Option<PathBuf>, u32)> =
            d.uid().map(|u| (None, u)).into_iter().collect();
        for name in NAMES {
            let p = self.path(name);
            if let Some(m) = stat(sftp, &p, false).await? {
                rules::check_key_file(mode(&m)).map_err(|e| op(format!("{} {e}", p.display())))?;
                owners.extend(m.uid().map(|u| (Some(p), u)));
            }
        }
        let cellservdb = stat(sftp, &self.path(CELLSERVDB), true)
            .await?
            .and_then(|m| m.modified())
            .map(|t| u64::from(t.into_raw()));
        let bdir = self.path(BACKUP_DIR);
        let backup_dir = match stat(sftp, &bdir, false).await? {
            Some(m) => Some(
                rules::check_backup_dir(mode(&m))
                    .map_err(|p| op(format!("{} {p}", bdir.display())))?,
            ),
            None => None,
        };
        let backup_names = match backup_dir {
            Some(_) => list_dir(sftp, &bdir)
                .await
                .unwrap_or_default()
                .into_iter()
                .map(|(n, _, _)| n)
                .collect(),
            None => vec![],
        };
        Ok(Survey {
            cellservdb,
            backup_dir,
            owners,
            backup_names,
        })
    }

    /// "conf dir <path> has mode …": over SSH the path goes inside the message.
    fn dir_problem(&self, p: rules::DirProblem) -> Fail {
        let p = p.to_string();
        let rest = p.strip_prefix("conf dir ").unwrap_or(&p);
        op(format!("conf dir {} {rest}", self.t.confdir.display()))
    }

    /// The conf dir and the live key files must be owned by root or the login user, whose
    /// uid is the owner of the stage dir just made.
    async fn judge_owners(
        &self,
        sftp: &Sftp,
        stage_dir: &Path,
        survey: &Survey,
    ) -> Result<(), Fail> {
        let Some(me) = stat(sftp, stage_dir, false).await?.and_then(|m| m.uid()) else {
            return Ok(()); // a server that reports no owners: nothing to judge by
        };
        for (path, owner) in &survey.owners {
            match path {
                None => rules::check_conf_dir(0o040700, *owner, true, Some(me))
                    .map_err(|p| self.dir_problem(p))?,
                Some(p) => rules::check_key_file_owner(*owner, me)
                    .map_err(|e| op(format!("{} {e}", p.display())))?,
            }
        }
        Ok(())
    }

    /// Write both files (0600, fsynced) into a new 0700 stage dir, read the live ones, and
    /// back up those that change; unchanged ones are unstaged.
    #[allow(clippy::type_complexity)]
    async fn upload(
        &self,
        sftp: &Sftp,
        stage_dir: &Path,
        bytes: [&[u8]; 2],
        survey: &Survey,
    ) -> Result<([bool; 2], Vec<PathBuf>, Option<u64>, Found), Fail> {
        let mut fs = sftp.fs();
        fs.dir_builder()
            .permissions(Permissions::from(0o700))
            .create(stage_dir)
            .await
            .map_err(|e| sftp_fail(format_args!("cannot create {}", stage_dir.display()), e))?;
        self.judge_owners(sftp, stage_dir, survey).await?;
        let mut remote_now = None;
        let mut changed = [false; 2];
        let mut found = [None, None];
        for (i, name) in NAMES.into_iter().enumerate() {
            let staged = stage_dir.join(name);
            let werr = |e| sftp_fail(format_args!("cannot write {}", staged.display()), e);
            let mut f = sftp
                .options()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&staged)
                .await
                .map_err(werr)?;
            f.set_permissions(Permissions::from(0o600))
                .await
                .map_err(werr)?;
            f.write_all(bytes[i]).await.map_err(werr)?;
            if sftp.support_fsync() {
                f.sync_all().await.map_err(werr)?;
            }
            let m = f.metadata().await.map_err(werr)?;
            remote_now = m.modified().map(|t| u64::from(t.into_raw()));
            f.close().await.map_err(werr)?;
            let live = super::read_optional(sftp, self.path(name)).await?;
            changed[i] = live.as_deref() != Some(bytes[i]);
            if !changed[i] {
                fs.remove_file(&staged).await.map_err(werr)?;
            }
            found[i] = live;
        }
        let backups = self.back_up(sftp, survey, changed).await?;
        let [kx, kf] = found;
        Ok((changed, backups, remote_now, Found::new(kf, kx)))
    }

    /// Hard-link each live file that changes into the backup dir (a copy when the server
    /// lacks `hardlink@openssh.com`).
    async fn back_up(
        &self,
        sftp: &Sftp,
        survey: &Survey,
        changed: [bool; 2],
    ) -> Result<Vec<PathBuf>, Fail> {
        let bdir = self.path(BACKUP_DIR);
        let mut fs = sftp.fs();
        let mut backups = Vec::new();
        let now = chrono::Utc::now();
        for (i, name) in NAMES.into_iter().enumerate() {
            let live = self.path(name);
            if !changed[i] || stat(sftp, &live, false).await?.is_none() {
                continue;
            }
            let berr = |e| sftp_fail(format_args!("cannot back up to {}", bdir.display()), e);
            if backups.is_empty() {
                match survey.backup_dir {
                    None => {
                        fs.dir_builder()
                            .permissions(Permissions::from(0o700))
                            .create(&bdir)
                            .await
                            .map_err(berr)?;
                    }
                    Some(true) => fs
                        .set_permissions(&bdir, Permissions::from(0o700))
                        .await
                        .map_err(berr)?,
                    Some(false) => {}
                }
            }
            let names = survey.backup_names.iter().map(String::as_str);
            let b = bdir.join(rules::backup_name(
                name,
                rules::backup_time(names, name, now),
            ));
            if sftp.support_hardlink() {
                fs.hard_link(&live, &b).await.map_err(berr)?;
            } else {
                let old = super::read_optional(sftp, live.clone())
                    .await?
                    .unwrap_or_default();
                let mut f = sftp
                    .options()
                    .write(true)
                    .create_new(true)
                    .open(&b)
                    .await
                    .map_err(berr)?;
                f.set_permissions(Permissions::from(0o600))
                    .await
                    .map_err(berr)?;
                f.write_all(&old).await.map_err(berr)?;
                f.close().await.map_err(berr)?;
            }
            backups.push(b);
        }
        Ok(backups)
    }
}

/// Remove what a stage left: the staged files, `backups`, the stage dir.
async fn remove_stage(sftp: &Sftp, stage_dir: &Path, backups: &[PathBuf]) -> Result<(), Fail> {
    let mut fs = sftp.fs();
    for name in NAMES {
        let _ = fs.remove_file(stage_dir.join(name)).await;
    }
    for b in backups {
        let _ = fs.remove_file(b).await;
    }
    let _ = fs.remove_dir(stage_dir).await;
    Ok(())
}

impl OpensshStaged<'_> {
    /// CellServDB's new mtime: a second past the old one, and at least the server's now.
    fn bump(&self) -> Option<u32> {
        let old = self.cellservdb?;
        let now = self
            .remote_now
            .map(|(t, at)| t + at.elapsed().as_secs())
            .unwrap_or_else(|| {
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0)
            });
        u32::try_from(rules::cellservdb_mtime(old, now)).ok()
    }

    async fn commit_on(&self, sftp: &Sftp) -> Result<(), Fail> {
        let s = self.server;
        if !self.changed.iter().any(|c| *c) {
            return remove_stage(sftp, &self.stage_dir, &[]).await;
        }
        if !sftp.support_posix_rename() {
            return Err(op(
                "the server's SFTP lacks posix-rename@openssh.com: the openssh transport \
                 cannot replace the key files atomically there (use transport = \"ssh2\")",
            ));
        }
        let mut fs = sftp.fs();
        for (i, name) in NAMES.into_iter().enumerate() {
            if self.changed[i] {
                fs.rename(self.stage_dir.join(name), s.path(name))
                    .await
                    .map_err(|e| {
                        sftp_fail(
                            format_args!("cannot rename the staged {name} into place"),
                            e,
                        )
                    })?;
            }
        }
        if let Some(t) = self.bump().and_then(UnixTimeStamp::from_raw) {
            let mut m = MetaDataBuilder::new();
            m.time(t, t);
            fs.set_metadata(s.path(CELLSERVDB), m.create())
                .await
                .map_err(|e| {
                    sftp_fail(
                        format_args!(
                            "the new key files are in place, but CellServDB's mtime could not \
                             be changed: running servers keep the old keys until it changes \
                             (touch {})",
                            s.path(CELLSERVDB).display()
                        ),
                        e,
                    )
                })?;
        }
        if sftp.support_fsync() {
            if let Ok(mut d) = sftp.options().read(true).open(&s.t.confdir).await {
                let _ = d.sync_all().await;
                let _ = d.close().await;
            }
        }
        let _ = fs.remove_dir(&self.stage_dir).await;
        trim_backups(sftp, &s.path(BACKUP_DIR)).await;
        if let Some((now, at)) = self.remote_now {
            remove_stale_stages(sftp, &s.t.confdir, now + at.elapsed().as_secs()).await;
        }
        Ok(())
    }
}

/// The names in a remote directory with their mtimes and lstat modes (a symlink is a
/// symlink); `None` when it cannot be listed.
async fn list_dir(sftp: &Sftp, dir: &Path) -> Option<Vec<(String, Option<u64>, Option<u32>)>> {
    use futures_core::Stream;
    let d = sftp.fs().open_dir(dir).await.ok()?;
    let mut rd = Box::pin(d.read_dir());
    let mut entries = Vec::new();
    while let Some(e) = std::future::poll_fn(|cx| rd.as_mut().poll_next(cx)).await {
        if entries.len() > rules::MAX_NAMES {
            return None;
        }
        let e = e.ok()?;
        let mtime = e.metadata().modified().map(|t| u64::from(t.into_raw()));
        let kind = e.metadata().permissions().map(|_| mode(&e.metadata()));
        entries.push((e.filename().to_string_lossy().into_owned(), mtime, kind));
    }
    Some(entries)
}

/// Keep the newest `MAX_BACKUPS` backups of each key file.
async fn trim_backups(sftp: &Sftp, bdir: &Path) {
    let Some(entries) = list_dir(sftp, bdir).await else {
        return;
    };
    let mut fs = sftp.fs();
    for name in NAMES {
        for old in rules::backups_to_trim(entries.iter().map(|(n, _, _)| n.as_str()), name) {
            let _ = fs.remove_file(bdir.join(old)).await;
        }
    }
}

/// Remove stage dirs abandoned (by a cut connection, a killed afskeys) more than a day
/// before `now` (the server's clock); fresh ones may belong to a push under way.
async fn remove_stale_stages(sftp: &Sftp, confdir: &Path, now: u64) {
    let Some(entries) = list_dir(sftp, confdir).await else {
        return;
    };
    for (name, mtime, kind) in entries {
        if rules::is_stale_stage(&name, kind, mtime, now) {
            let _ = remove_stage(sftp, &confdir.join(name), &[]).await;
        }
    }
}

impl Staged for OpensshStaged<'_> {
    fn commit(self: Box<Self>) -> Result<(), FleetError> {
        let s = self.server;
        let mut guard = lock(&s.conn);
        let c = match guard.as_mut() {
            Some(c) if c.gen == self.gen => c,
            _ => return Err(s.err("the connection that staged the files was lost")),
        };
        match s.run(self.commit_on(&c.sftp)) {
            Ok(()) => Ok(()),
            Err(e) if !e.is_lost() => Err(s.err(e)),
            Err(lost) => {
                guard.take();
                Err(s.err(lost))
            }
        }
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
        let c = match guard.as_mut() {
            Some(c) if c.gen == self.gen => c,
            _ => return Err(s.err("the connection that staged the files was lost")),
        };
        match s.read_pair(c) {
            Ok([kf, kx]) => match self.found.changes(&Found::new(kf, kx)) {
                None => Ok(()),
                Some(what) => Err(Found::refusal(&s.t.name, &what)),
            },
            Err(e) => {
                if e.is_lost() {
                    guard.take();
                }
                Err(s.err(format_args!(
                    "cannot read the key files again before the commit: {e}"
                )))
            }
        }
    }

    fn discard(self: Box<Self>) {
        let s = self.server;
        let guard = lock(&s.conn);
        if let Some(c) = guard.as_ref().filter(|c| c.gen == self.gen) {
            let _ = s.run(remove_stage(&c.sftp, &self.stage_dir, &self.backups));
        }
    }
}

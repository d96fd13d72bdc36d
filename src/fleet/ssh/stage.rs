//! Phase one of a push over SSH (see `Server::stage`), in two round trips: the conf dir
//! surveyed and judged with the stage's opens in one (`open_stage`), then both files
//! uploaded (0600, fsynced with `fsync@openssh.com`) into a private stage dir inside the
//! conf dir (same filesystem, so the commit's rename is atomic) while the live files are
//! read and backed up — hard links (`hardlink@openssh.com`), so a backup is exactly the file
//! the rename will replace, made of both live files before it is known which change and
//! removed again (unwaited) for those that do not (`EarlyBackups`). A server without the
//! extension gets copies, in more round trips. A file whose bytes do not change is not
//! staged. Nothing the server reads changes here. The live files are opened ahead of the
//! stage dir's MKDIR, and a live file whose open would block the server (a FIFO) is refused
//! from its LSTAT the moment that reply is in (`Sftp::batch_checked`): nothing made yet.

use super::commit::SshStaged;
use super::sftp::{self, Sftp};
use super::wire::{self, Attrs, Reply, Req};
use super::{op, Conn, Fail, SshServer};
use crate::fleet::{Found, KeyFiles};
use crate::store::rules::{self, BACKUP_DIR, CELLSERVDB, STAGE_PREFIX};
use crate::store::{KEYFILE, KEYFILEEXT};
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// The order files are staged and committed in: KeyFileExt first, then KeyFile.
pub(super) const NAMES: [&str; 2] = [KEYFILEEXT, KEYFILE];

/// Where the live files' OPENs are in `open_stage`'s exchange (right after the survey,
/// ahead of anything that creates: an OPEN the server blocks on leaves nothing behind).
const LIVE_OPEN_AT: usize = 6;
/// Where the stage's requests start in `open_stage`'s exchange.
const MKDIR_AT: usize = LIVE_OPEN_AT + 2;

/// What the conf dir holds before staging.
struct Survey {
    /// [KeyFileExt, KeyFile]: is there a live file?
    live_exists: [bool; 2],
    /// CellServDB's mtime (None: absent).
    cellservdb: Option<u64>,
    /// The backup dir: None when absent, else whether it must be made private first.
    backup_dir: Option<bool>,
    /// The owners of the conf dir and of [KeyFileExt, KeyFile], judged once the login
    /// user's uid is known (from the stage dir afskeys makes).
    dir_owner: Option<u32>,
    live_owner: [Option<u32>; 2],
    /// The backup dir's handle (opened with the survey, read at step 3), when it exists.
    backup_dir_handle: Option<Vec<u8>>,
}

/// [KeyFileExt, KeyFile] as they are on the server (None: absent).
type LiveFiles = [Option<Vec<u8>>; 2];

/// What step 3 found.
struct Written {
    /// The backup dir's names (before the early backups).
    names: Vec<String>,
    /// The server's clock: the new KeyFile's mtime.
    remote_now: Option<u64>,
    live: LiveFiles,
    /// The outcomes of the early backups' requests.
    early: Vec<Result<(), sftp::ReplyError>>,
}

/// Backups made at step 3, before it is known which live files change: a hard link of each
/// live file (and the backup dir made first when absent). Those of files that do not change
/// are removed again, unwaited, once step 3's replies are in (`settle_early`).
struct EarlyBackups {
    /// The backup dir, when it is made here.
    mkdir: Option<PathBuf>,
    /// (index in `NAMES`, live path, backup path) of each live file.
    links: Vec<(usize, PathBuf, PathBuf)>,
    /// The time they are named by.
    at: chrono::DateTime<chrono::Utc>,
}

impl EarlyBackups {
    fn reqs(&self) -> Vec<Req> {
        let mut reqs: Vec<Req> = self
            .mkdir
            .iter()
            .map(|d| Req::Mkdir(d.clone(), 0o700))
            .collect();
        reqs.extend(
            self.links
                .iter()
                .map(|(_, l, b)| Req::Hardlink(l.clone(), b.clone())),
        );
        reqs
    }

    /// Remove them all: the links (a name never made answers NO_SUCH_FILE), then the dir.
    fn undo(&self) -> Vec<Req> {
        let mut reqs: Vec<Req> = self
            .links
            .iter()
            .map(|(_, _, b)| Req::Remove(b.clone()))
            .collect();
        reqs.extend(self.mkdir.iter().map(|d| Req::Rmdir(d.clone())));
        reqs
    }
}

/// The handles step 2 opened.
struct Handles {
    new: Vec<Vec<u8>>,
    dir: Option<Vec<u8>>,
    /// (index in `NAMES`, handle) of each live file.
    live: Vec<(usize, Vec<u8>)>,
}

impl SshServer {
    /// Phase one, on the connection: see `Server::stage`.
    pub(super) fn stage_on(&self, c: &mut Conn, files: &KeyFiles) -> Result<SshStaged<'_>, Fail> {
        let stage_dir = self.path(&format!("{STAGE_PREFIX}{}", random_hex()));
        let new_paths = NAMES.map(|n| stage_dir.join(n));
        let (survey, h) = self.open_stage(&mut c.sftp, &stage_dir, &new_paths)?;
        let dir_handle = h.dir.clone();
        let live_handles = h.live.clone();
        let spec = self.early_backups(&c.sftp, &survey);
        let staged = (|| {
            let bytes: [&[u8]; 2] = [&files.keyfileext, &files.keyfile];
            let bdir_handle = survey.backup_dir_handle.as_deref();
            let spec_reqs = spec.as_ref().map(EarlyBackups::reqs).unwrap_or_default();
            let w =
                self.write_and_read(&mut c.sftp, &h, &stage_dir, bytes, bdir_handle, spec_reqs)?;
            let (names, remote_now, mut live) = (w.names, w.remote_now, w.live);
            let found = Found::new(live[1].clone(), live[0].clone());
            let changed = [0, 1].map(|i| live[i].as_deref() != Some(bytes[i]));
            let settled = match &spec {
                Some(e) => {
                    self.settle_early(&mut c.sftp, e, &w.early, &names, &new_paths, changed)?
                }
                None => None,
            };
            let backups = match settled {
                Some(b) => b,
                None => {
                    self.back_up(&mut c.sftp, &names, &survey, &new_paths, changed, &mut live)?
                }
            };
            Ok(SshStaged {
                server: self,
                gen: c.gen,
                stage_dir: stage_dir.clone(),
                dir_handle: h.dir,
                changed,
                backups,
                cellservdb: survey.cellservdb,
                remote_now: remote_now.map(|t| (t, Instant::now())),
                found,
                live: h.live.clone(),
                done: false,
            })
        })();
        if let Err(Fail::Op(_)) = &staged {
            // Best effort; a broken connection leaves a stage dir that a later commit removes
            // once it is a day old.
            let mut undo = vec![
                Req::Remove(new_paths[0].clone()),
                Req::Remove(new_paths[1].clone()),
                Req::Rmdir(stage_dir),
            ];
            undo.extend(dir_handle.map(Req::Close));
            undo.extend(live_handles.into_iter().map(|(_, l)| Req::Close(l)));
            undo.extend(spec.map(|e| e.undo()).unwrap_or_default());
            let _ = c.sftp.batch(&undo);
        }
        staged
    }

    /// Steps 1 and 2 in one exchange (the SFTP server runs a channel's requests in order):
    /// stat the conf dir, the live files, CellServDB and the backup dir (and open the
    /// latter, listed at step 3, `write_and_read`); make the stage dir, create the two new
    /// files in it, open the conf dir (to fsync it at commit) and the live files (to compare
    /// and maybe copy them: a missing one answers NO_SUCH_FILE), and stat the stage dir (its
    /// owner is the login user). Everything is judged by the conf-dir rules before anything is written:
    /// on a refusal every handle is closed and the stage dir removed (`undo_open`), and
    /// nothing an OPEN of a live file reached (a symlink followed) was read.
    fn open_stage(
        &self,
        sftp: &mut Sftp,
        stage_dir: &Path,
        new_paths: &[PathBuf; 2],
    ) -> Result<(Survey, Handles), Fail> {
        let live = NAMES.map(|n| self.path(n));
        let bdir = self.path(BACKUP_DIR);
        let create = wire::FXF_WRITE | wire::FXF_CREAT | wire::FXF_EXCL;
        let reqs = [
            Req::Stat(self.confdir.clone()),
            Req::Lstat(live[0].clone()),
            Req::Lstat(live[1].clone()),
            Req::Stat(self.path(CELLSERVDB)),
            Req::Lstat(bdir.clone()),
            Req::Opendir(bdir.clone()),
            // [LIVE_OPEN_AT..]
            Req::Open(live[0].clone(), wire::FXF_READ, None),
            Req::Open(live[1].clone(), wire::FXF_READ, None),
            // [MKDIR_AT..]: the stage
            Req::Mkdir(stage_dir.to_path_buf(), 0o700),
            Req::Open(new_paths[0].clone(), create, Some(0o600)),
            Req::Open(new_paths[1].clone(), create, Some(0o600)),
            Req::Open(self.confdir.clone(), wire::FXF_READ, None),
            Req::Lstat(stage_dir.to_path_buf()),
        ];
        // A live file the server would block opening (a FIFO…) is refused as soon as its
        // LSTAT is in; the server, stuck on that OPEN, has made nothing yet.
        let paths = live.each_ref().map(|p| p.as_path());
        let r = sftp.batch_checked(&reqs, 3, |r| sftp::refuse_blocking(&paths, &r[1..3]))?;
        let judged = self
            .judge_survey(&r[..MKDIR_AT], &live, &bdir)
            .and_then(|survey| {
                if let Reply::Status(code, msg) = &r[MKDIR_AT] {
                    if *code != 0 {
                        return Err(op(format!(
                            "cannot create {}: {}",
                            stage_dir.display(),
                            wire::status_text(*code, msg)
                        )));
                    }
                }
                let h = self.handles(&r, &survey, new_paths)?;
                self.judge_owners(&survey, r.last())?;
                Ok((survey, h))
            });
        match judged {
            Ok((survey, h)) => {
                // A live file that appeared between its LSTAT and its OPEN is not read (as
                // if it were absent, as before): its handle is closed.
                let unused: Vec<Req> = (0..2)
                    .filter(|&i| !survey.live_exists[i])
                    .filter_map(|i| sftp::handle(&r[LIVE_OPEN_AT + i]).ok())
                    .map(Req::Close)
                    .collect();
                if !unused.is_empty() {
                    sftp.send_only(&unused)?;
                }
                Ok((survey, h))
            }
            Err(e) => {
                self.undo_open(sftp, &r, stage_dir, new_paths);
                Err(e)
            }
        }
    }

    /// A refusal after `open_stage`'s exchange: close every handle it opened, remove the
    /// files it created and the stage dir it made (waiting for the replies, so the server
    /// is as it was when the refusal is reported).
    fn undo_open(&self, sftp: &mut Sftp, r: &[Reply], stage_dir: &Path, new_paths: &[PathBuf; 2]) {
        let mut undo: Vec<Req> = r
            .iter()
            .filter_map(|rep| sftp::handle(rep).ok())
            .map(Req::Close)
            .collect();
        for (i, p) in new_paths.iter().enumerate() {
            if sftp::handle(&r[MKDIR_AT + 1 + i]).is_ok() {
                undo.push(Req::Remove(p.clone()));
            }
        }
        if sftp::ok(&r[MKDIR_AT]).is_ok() {
            undo.push(Req::Rmdir(stage_dir.to_path_buf()));
        }
        if !undo.is_empty() {
            let _ = sftp.batch(&undo);
        }
    }

    /// Step 1's replies judged: the conf dir, the live key files, the backup dir.
    fn judge_survey(&self, r: &[Reply], live: &[PathBuf; 2], bdir: &Path) -> Result<Survey, Fail> {
        let dir = &self.confdir;
        let dir_attrs =
            sftp::attrs(&r[0]).map_err(|e| op(format!("conf dir {}: {e}", dir.display())))?;
        // The owner is judged at step 2, once the login user's uid is known.
        rules::check_conf_dir(dir_attrs.perm.unwrap_or(0), 0, true, None).map_err(|p| {
            // Over SSH the path goes inside: "conf dir <path> has mode …".
            let p = p.to_string();
            let rest = p.strip_prefix("conf dir ").unwrap_or(&p);
            op(format!("conf dir {} {rest}", dir.display()))
        })?;
        let mut live_exists = [false; 2];
        let mut live_owner = [None; 2];
        for (i, p) in live.iter().enumerate() {
            let a =
                sftp::optional_attrs(&r[1 + i]).map_err(|e| op(format!("{}: {e}", p.display())))?;
            let Some(a) = a else { continue };
            match rules::check_key_file(a.perm.unwrap_or(0)) {
                Ok(()) => {}
                Err(e @ rules::KeyFileProblem::Writable(_)) => {
                    return Err(op(format!("{} {e}", p.display())))
                }
                Err(_) => {
                    return Err(op(format!(
                        "{} is not a regular file (a symbolic link?); afskeys replaces key \
                         files only in place (replace the link with the file itself)",
                        p.display()
                    )))
                }
            }
            live_exists[i] = true;
            live_owner[i] = a.uid;
        }
        let cellservdb = sftp::optional_attrs(&r[3])
            .map_err(|e| op(format!("CellServDB: {e}")))?
            .and_then(|a| a.mtime.map(u64::from));
        let backup_dir = sftp::optional_attrs(&r[4])
            .map_err(|e| op(format!("{}: {e}", bdir.display())))?
            .map(|a| rules::check_backup_dir(a.perm.unwrap_or(0)))
            .transpose()
            .map_err(|p| op(format!("{} {p}", bdir.display())))?;
        Ok(Survey {
            live_exists,
            cellservdb,
            backup_dir,
            dir_owner: dir_attrs.uid,
            live_owner,
            backup_dir_handle: sftp::handle(&r[5]).ok(),
        })
    }

    /// The conf dir and the live key files must be owned by root or the login user, whose
    /// uid is the owner of the stage dir just made (`stage_attrs`, step 2's last reply).
    fn judge_owners(&self, survey: &Survey, stage_attrs: Option<&Reply>) -> Result<(), Fail> {
        let Some(me) = stage_attrs
            .and_then(|r| sftp::attrs(r).ok())
            .and_then(|a| a.uid)
        else {
            return Ok(()); // a server that reports no owners: nothing to judge by
        };
        if let Some(owner) = survey.dir_owner {
            rules::check_conf_dir(0o040700, owner, true, Some(me)).map_err(|p| {
                let p = p.to_string();
                let rest = p.strip_prefix("conf dir ").unwrap_or(&p);
                op(format!("conf dir {} {rest}", self.confdir.display()))
            })?;
        }
        for (i, owner) in survey.live_owner.iter().enumerate() {
            if let Some(owner) = owner {
                rules::check_key_file_owner(*owner, me)
                    .map_err(|e| op(format!("{} {e}", self.path(NAMES[i]).display())))?;
            }
        }
        Ok(())
    }

    /// The handles in `open_stage`'s replies.
    fn handles(
        &self,
        r: &[Reply],
        survey: &Survey,
        new_paths: &[PathBuf; 2],
    ) -> Result<Handles, Fail> {
        let mut new = Vec::new();
        for (i, rep) in r[MKDIR_AT + 1..MKDIR_AT + 3].iter().enumerate() {
            new.push(
                sftp::handle(rep)
                    .map_err(|e| op(format!("cannot create {}: {e}", new_paths[i].display())))?,
            );
        }
        let mut live = Vec::new();
        for (i, name) in NAMES.into_iter().enumerate() {
            if survey.live_exists[i] {
                let h = sftp::handle(&r[LIVE_OPEN_AT + i])
                    .map_err(|e| op(format!("cannot open {}: {e}", self.path(name).display())))?;
                live.push((i, h));
            }
        }
        Ok(Handles {
            new,
            dir: sftp::handle(&r[MKDIR_AT + 3]).ok(),
            live,
        })
    }

    /// Step 3: list the backup dir (two READDIRs ahead of the rest: more only for a big
    /// dir, then its handle is closed); make the `early` backups; write, fsync and close the
    /// new files; read the live ones.
    fn write_and_read(
        &self,
        sftp: &mut Sftp,
        h: &Handles,
        stage_dir: &Path,
        bytes: [&[u8]; 2],
        bdir: Option<&[u8]>,
        early: Vec<Req>,
    ) -> Result<Written, Fail> {
        let mut reqs = Vec::new();
        if let Some(d) = bdir {
            reqs.extend([Req::Readdir(d.to_vec()), Req::Readdir(d.to_vec())]);
        }
        let listed = reqs.len();
        reqs.extend(early);
        let lead = reqs.len();
        let (fsync_at, fstat_at) = write_reqs(&mut reqs, &h.new, bytes, sftp.has_fsync);
        let read_from = reqs.len();
        for (_, h) in &h.live {
            // Read, and kept open: the recheck before the commit reads through them again.
            let [first, second, _close] = sftp::read_whole(h);
            reqs.extend([first, second]);
        }
        let r = sftp.batch(&reqs)?;
        let names = match bdir {
            Some(d) => {
                let names = read_names(sftp, d, &r[..listed]);
                close_dir(sftp, Some(d));
                names?
            }
            None => Vec::new(),
        };
        for (i, rep) in r[lead..read_from].iter().enumerate() {
            if let Reply::Status(code, msg) = rep {
                let fsync = fsync_at.contains(&(lead + i));
                if *code != 0 && !(fsync && *code == wire::FX_OP_UNSUPPORTED) {
                    return Err(op(format!(
                        "cannot write the staged files in {}: {}",
                        stage_dir.display(),
                        wire::status_text(*code, msg)
                    )));
                }
            }
        }
        let remote_now = match &r[fstat_at] {
            Reply::Attrs(a) => a.mtime.map(u64::from),
            _ => None,
        };
        let mut live: LiveFiles = [None, None];
        for (j, (i, _)) in h.live.iter().enumerate() {
            let at = read_from + 2 * j;
            live[*i] = Some(sftp::read_reply(&r[at], &r[at + 1]).map_err(|e| {
                op(format!(
                    "cannot read {}: {e}",
                    self.path(NAMES[*i]).display()
                ))
            })?);
        }
        Ok(Written {
            names,
            remote_now,
            live,
            early: r[listed..lead].iter().map(sftp::ok).collect(),
        })
    }

    /// The early backups (see `EarlyBackups`) for a server with `hardlink@openssh.com`, a
    /// live file, and a backup dir that is absent or already private (one to be made private
    /// is left as it is unless a file changes: step 4 does it).
    fn early_backups(&self, sftp: &Sftp, survey: &Survey) -> Option<EarlyBackups> {
        if !sftp.has_hardlink || survey.backup_dir == Some(true) {
            return None;
        }
        let bdir = self.path(BACKUP_DIR);
        let at = chrono::Utc::now();
        let links: Vec<_> = (0..2)
            .filter(|&i| survey.live_exists[i])
            .map(|i| {
                let b = bdir.join(rules::backup_name(NAMES[i], at));
                (i, self.path(NAMES[i]), b)
            })
            .collect();
        if links.is_empty() {
            return None;
        }
        let mkdir = survey.backup_dir.is_none().then_some(bdir);
        Some(EarlyBackups { mkdir, links, at })
    }

    /// Step 4 for early backups, without waiting: the backups of the files that change are
    /// made private (0600, as step 4 does), the others and the staged files that change
    /// nothing removed (and the backup dir, if made here and left empty). A backup of a file
    /// that changes that could not be made fails the stage (everything early undone). `None`:
    /// the names are not right after all (the server holds a backup named at or after ours:
    /// its clock is ahead), so they are undone and step 4 makes them as usual.
    fn settle_early(
        &self,
        sftp: &mut Sftp,
        e: &EarlyBackups,
        r: &[Result<(), sftp::ReplyError>],
        names: &[String],
        new_paths: &[PathBuf; 2],
        changed: [bool; 2],
    ) -> Result<Option<Vec<PathBuf>>, Fail> {
        let late = e.links.iter().any(|(i, _, _)| {
            rules::backup_time(names.iter().map(String::as_str), NAMES[*i], e.at) != e.at
        });
        if late {
            sftp.send_only(&e.undo())?;
            return Ok(None);
        }
        let linked = &r[usize::from(e.mkdir.is_some())..];
        let mut follow = Vec::new();
        let mut backups = Vec::new();
        for ((i, _, b), rep) in e.links.iter().zip(linked) {
            if !changed[*i] {
                if rep.is_ok() {
                    follow.push(Req::Remove(b.clone()));
                }
                continue;
            }
            if let Err(err) = rep {
                let _ = sftp.send_only(&e.undo());
                return Err(op(format!(
                    "cannot back up the live key files into {}: {err}",
                    self.path(BACKUP_DIR).display()
                )));
            }
            follow.push(Req::Setstat(b.clone(), Attrs::perm(0o600)));
            backups.push(b.clone());
        }
        for (i, p) in new_paths.iter().enumerate() {
            if !changed[i] {
                follow.push(Req::Remove(p.clone()));
            }
        }
        if backups.is_empty() {
            follow.extend(e.mkdir.iter().map(|d| Req::Rmdir(d.clone())));
        }
        sftp.send_only(&follow)?;
        Ok(Some(backups))
    }

    /// Step 4, where the early backups were not made or not right (`settle_early`): back up
    /// the live files that will be replaced (hard links, else copies);
    /// remove the staged files that change nothing (sent without waiting when there is no
    /// backup to make). Returns the backups made.
    fn back_up(
        &self,
        sftp: &mut Sftp,
        names: &[String],
        survey: &Survey,
        new_paths: &[PathBuf; 2],
        changed: [bool; 2],
        live: &mut LiveFiles,
    ) -> Result<Vec<PathBuf>, Fail> {
        let bdir = self.path(BACKUP_DIR);
        let now = chrono::Utc::now();
        let mut reqs = Vec::new();
        let mut backups = Vec::new();
        let mut copies = Vec::new();
        for (i, name) in NAMES.into_iter().enumerate() {
            if !changed[i] {
                reqs.push(Req::Remove(new_paths[i].clone()));
                continue;
            }
            if !survey.live_exists[i] {
                continue;
            }
            if backups.is_empty() && copies.is_empty() {
                match survey.backup_dir {
                    None => reqs.push(Req::Mkdir(bdir.clone(), 0o700)),
                    Some(true) => reqs.push(Req::Setstat(bdir.clone(), Attrs::perm(0o700))),
                    Some(false) => {}
                }
            }
            let at = rules::backup_time(names.iter().map(String::as_str), name, now);
            let b = bdir.join(rules::backup_name(name, at));
            if sftp.has_hardlink {
                reqs.push(Req::Hardlink(self.path(name), b.clone()));
                reqs.push(Req::Setstat(b.clone(), Attrs::perm(0o600)));
                backups.push(b);
            } else {
                copies.push((b, live[i].take().unwrap_or_default()));
            }
        }
        if reqs.iter().all(|q| matches!(q, Req::Remove(_))) {
            // Only staged files that change nothing to remove: their outcome changes nothing
            // the server reads (one left behind keeps its stage dir until it is a day old),
            // so they are not waited for.
            if !reqs.is_empty() {
                sftp.send_only(&reqs)?;
            }
        } else {
            let r = sftp.batch(&reqs)?;
            let must_succeed = |q: &Req| match q {
                Req::Hardlink(..) => true,
                Req::Setstat(p, _) => *p == bdir,
                _ => false,
            };
            for (rep, _) in r.iter().zip(&reqs).filter(|(_, q)| must_succeed(q)) {
                sftp::ok(rep).map_err(|e| {
                    op(format!(
                        "cannot back up the live key files into {}: {e}",
                        bdir.display()
                    ))
                })?;
            }
        }
        for (b, old) in copies {
            sftp.upload(&b, &old)
                .map_err(|e| op(format!("cannot back up to {}: {e}", b.display())))?;
            backups.push(b);
        }
        Ok(backups)
    }
}

/// Append the WRITEs, FSYNCs (where supported), the FSTAT of the new KeyFile (the server's
/// clock) and the CLOSEs of the new files to `reqs`: returns where the FSYNCs and the FSTAT
/// are.
fn write_reqs(
    reqs: &mut Vec<Req>,
    new: &[Vec<u8>],
    bytes: [&[u8]; 2],
    fsync: bool,
) -> (Vec<usize>, usize) {
    let mut fsync_at = Vec::new();
    let mut fstat_at = 0;
    for (i, h) in new.iter().enumerate() {
        for (off, chunk) in sftp::chunks(bytes[i]) {
            reqs.push(Req::Write(h.clone(), off, chunk.to_vec()));
        }
        if fsync {
            fsync_at.push(reqs.len());
            reqs.push(Req::Fsync(h.clone()));
        }
        if i == 1 {
            fstat_at = reqs.len();
            reqs.push(Req::Fstat(h.clone()));
        }
        reqs.push(Req::Close(h.clone()));
    }
    (fsync_at, fstat_at)
}

/// Close the backup dir's handle (once: a handle number is reused after its close), without
/// waiting for the reply.
fn close_dir(sftp: &mut Sftp, h: Option<&[u8]>) {
    if let Some(h) = h {
        let _ = sftp.send_only(&[Req::Close(h.to_vec())]);
    }
}

/// A directory's names from the replies to two READDIRs of `h` (`r`), and from more READDIRs
/// (one round trip each) while it has not reached its end.
fn read_names(sftp: &mut Sftp, h: &[u8], r: &[Reply]) -> Result<Vec<String>, Fail> {
    let mut names = Vec::new();
    let mut ended = false;
    for rep in r {
        match rep {
            Reply::Name(v) if !ended => names.extend(v.iter().map(|(n, _)| n.clone())),
            _ => ended = true,
        }
    }
    while !ended {
        if names.len() > rules::MAX_NAMES {
            return Err(op(sftp::too_many_names()));
        }
        match sftp.batch(&[Req::Readdir(h.to_vec())])?.pop() {
            Some(Reply::Name(v)) => names.extend(v.into_iter().map(|(n, _)| n)),
            _ => ended = true,
        }
    }
    Ok(names)
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

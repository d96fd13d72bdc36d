//! A small SFTP (protocol 3) client on an ssh2 channel: requests are pipelined (`batch` sends
//! them all, then reads every reply), and OpenSSH's extensions are usable.
//!
//! Why not libssh2's own SFTP (`ssh2::Sftp`): it has no `posix-rename@openssh.com` binding
//! (and protocol 3's RENAME never replaces an existing file, so an atomic replace of a live
//! key file is impossible with it), no `fsync@openssh.com` (a staged file could be lost in a
//! crash after the rename) and no `hardlink@openssh.com` (the backup that *is* the file the
//! rename replaces); and it sends one request per round trip, where a push needs a handful
//! of pipelined round trips per server.

use super::wire::{self, Attrs, Extensions, Reply, Req, FX_EOF, FX_NO_SUCH_FILE};
use super::Fail;
use crate::store::rules::{self, FileKind, MAX_NAMES};
use std::io::{Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// Request/reply waits (one per `batch` or version exchange) over every connection of this
/// process: what `bin/bench-fleet` reports as round trips per server.
static ROUND_TRIPS: AtomicU64 = AtomicU64::new(0);

/// How many times this process has waited for SFTP replies, over all connections.
pub fn round_trips() -> u64 {
    ROUND_TRIPS.load(Ordering::Relaxed)
}

/// Bytes per SFTP read request: well under OpenSSH's per-request cap (256 KiB less 1 KiB),
/// so a short read means end of file.
pub const READ_CHUNK: u32 = 64 * 1024;
const WRITE_CHUNK: usize = 32 * 1024;

/// A listing that went past `rules::MAX_NAMES` (a server that keeps sending names).
pub(super) fn too_many_names() -> String {
    format!(
        "more than {MAX_NAMES} names: not listed (a directory afskeys lists holds a few \
         files)"
    )
}

/// A reply that says an operation failed (the connection itself is fine).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    #[error("{0}")]
    Status(Status),
    /// The reply's kind and size (never its bytes).
    #[error("unexpected SFTP reply {0}")]
    Unexpected(String),
    #[error("larger than {} KiB: not a key file", 2 * READ_CHUNK / 1024)]
    TooLarge,
}

impl ReplyError {
    fn of(r: &Reply) -> ReplyError {
        match r {
            Reply::Status(code, msg) => ReplyError::Status(Status {
                code: *code,
                msg: msg.clone(),
            }),
            other => ReplyError::Unexpected(format!("{other:?}")),
        }
    }
}

/// An SFTP status code with the server's message: prints as `wire::status_text`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub code: u32,
    pub msg: String,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&wire::status_text(self.code, &self.msg))
    }
}

/// The status of a reply that should be `Status(0)`: `Err` for any other.
pub fn ok(r: &Reply) -> Result<(), ReplyError> {
    match r {
        Reply::Status(0, _) => Ok(()),
        r => Err(ReplyError::of(r)),
    }
}

pub fn attrs(r: &Reply) -> Result<Attrs, ReplyError> {
    match r {
        Reply::Attrs(a) => Ok(*a),
        r => Err(ReplyError::of(r)),
    }
}

/// The attributes, or `None` when there is no such file.
pub fn optional_attrs(r: &Reply) -> Result<Option<Attrs>, ReplyError> {
    match r {
        Reply::Status(FX_NO_SUCH_FILE, _) => Ok(None),
        r => attrs(r).map(Some),
    }
}

pub fn handle(r: &Reply) -> Result<Vec<u8>, ReplyError> {
    match r {
        Reply::Handle(h) => Ok(h.clone()),
        r => Err(ReplyError::of(r)),
    }
}

/// The file's bytes from the replies to READ@0 and READ@READ_CHUNK.
pub fn read_reply(first: &Reply, second: &Reply) -> Result<Vec<u8>, ReplyError> {
    let mut out = match first {
        Reply::Data(d) => d.clone(),
        Reply::Status(FX_EOF, _) => return Ok(Vec::new()),
        r => return Err(ReplyError::of(r)),
    };
    if out.len() < READ_CHUNK as usize {
        return Ok(out);
    }
    match second {
        Reply::Data(d) if d.len() < READ_CHUNK as usize => {
            out.extend_from_slice(d);
            Ok(out)
        }
        Reply::Status(FX_EOF, _) => Ok(out),
        Reply::Data(_) => Err(ReplyError::TooLarge),
        r => Err(ReplyError::of(r)),
    }
}

/// `bytes` cut into WRITE requests' (offset, chunk).
pub fn chunks(b: &[u8]) -> Vec<(u64, &[u8])> {
    b.chunks(WRITE_CHUNK)
        .enumerate()
        .map(|(i, c)| ((i * WRITE_CHUNK) as u64, c))
        .collect()
}

/// The two READs and the CLOSE that read a whole key file through `h`.
pub fn read_whole(h: &[u8]) -> [Req; 3] {
    [
        Req::Read(h.to_vec(), 0, READ_CHUNK),
        Req::Read(h.to_vec(), READ_CHUNK as u64, READ_CHUNK),
        Req::Close(h.to_vec()),
    ]
}

/// OPENs for reading `paths`, to be sent in any exchange (`opened` reads their replies).
pub fn open_for_reading(paths: &[&Path]) -> Vec<Req> {
    paths
        .iter()
        .map(|p| Req::Open(p.to_path_buf(), wire::FXF_READ, None))
        .collect()
}

/// `Fail::Stuck` when an LSTAT reply among `replies` (one per path) shows a file whose open
/// may block the server: a FIFO, a device or a socket. Symlinks and directories are
/// judged by the caller as before.
pub fn refuse_blocking(paths: &[&Path], replies: &[Reply]) -> Result<(), Fail> {
    for (p, rep) in paths.iter().zip(replies) {
        if let Reply::Attrs(a) = rep {
            if FileKind::of_mode(a.perm.unwrap_or(0)) == FileKind::Other {
                return Err(Fail::Stuck(rules::may_block(p)));
            }
        }
    }
    Ok(())
}

/// The handles the replies to `open_for_reading` gave (`None`: no such file).
pub fn opened(paths: &[&Path], replies: &[Reply]) -> Result<Vec<Option<Vec<u8>>>, Fail> {
    let mut handles = Vec::new();
    for (p, rep) in paths.iter().zip(replies) {
        match rep {
            Reply::Status(FX_NO_SUCH_FILE, _) => handles.push(None),
            rep => {
                handles.push(Some(handle(rep).map_err(|e| {
                    Fail::Op(format!("cannot open {}: {e}", p.display()))
                })?))
            }
        }
    }
    Ok(handles)
}

/// Read each opened file whole and close it (`read_whole`), to be sent in any exchange.
pub fn read_and_close(handles: &[Option<Vec<u8>>]) -> Vec<Req> {
    handles
        .iter()
        .flatten()
        .flat_map(|h| read_whole(h))
        .collect()
}

/// The files' bytes from the replies to `read_and_close` (absent files: `None`).
pub fn contents(
    paths: &[&Path],
    handles: &[Option<Vec<u8>>],
    replies: &[Reply],
) -> Result<Vec<Option<Vec<u8>>>, Fail> {
    let mut out = Vec::new();
    let mut j = 0;
    for (p, h) in paths.iter().zip(handles) {
        if h.is_none() {
            out.push(None);
            continue;
        }
        let (Some(a), Some(b)) = (replies.get(j), replies.get(j + 1)) else {
            return Err(Fail::Broken("too few replies to the reads".into()));
        };
        // A key file past its format's cap (as a local one): refused by the same words.
        let kind = crate::store::trust::key_file_kind(p);
        let too_long = || Fail::Op(crate::store::trust::too_long(p, kind));
        let bytes = read_reply(a, b).map_err(|e| match e {
            ReplyError::TooLarge => too_long(),
            e => Fail::Op(format!("cannot read {}: {e}", p.display())),
        })?;
        if bytes.len() as u64 > kind.max {
            return Err(too_long());
        }
        out.push(Some(bytes));
        j += 3;
    }
    Ok(out)
}

fn lost(what: &'static str) -> impl FnOnce(std::io::Error) -> Fail {
    move |source| Fail::Lost { what, source }
}

fn ssh_broken(what: &str) -> impl FnOnce(ssh2::Error) -> Fail + '_ {
    move |e| Fail::Broken(format!("connection lost ({what}: {})", e.message()))
}

/// One directory's names with their attributes, or why it could not be listed.
pub type Listing = Result<Vec<(String, Attrs)>, String>;

/// What `Sftp::list_dirs` got back for the requests that rode along (the listings go to its
/// `then`).
pub struct Listed {
    pub before: Vec<Reply>,
    pub between: Vec<Reply>,
}

pub struct Sftp {
    ch: ssh2::Channel,
    next_id: u32,
    /// Replies to requests sent by `send_only`, read (and dropped) before the next batch's.
    unread: usize,
    pub has_posix_rename: bool,
    pub has_fsync: bool,
    pub has_hardlink: bool,
}

impl Sftp {
    /// Open the `sftp` subsystem and agree on version 3; note the extensions offered.
    pub fn start(sess: &ssh2::Session) -> Result<Sftp, Fail> {
        let mut ch = sess
            .channel_session()
            .map_err(ssh_broken("opening a channel"))?;
        ch.subsystem("sftp")
            .map_err(ssh_broken("starting the sftp subsystem"))?;
        ch.write_all(&wire::init_packet())
            .and_then(|_| ch.flush())
            .map_err(lost("SFTP init"))?;
        let mut s = Sftp {
            ch,
            next_id: 1,
            unread: 0,
            has_posix_rename: false,
            has_fsync: false,
            has_hardlink: false,
        };
        ROUND_TRIPS.fetch_add(1, Ordering::Relaxed);
        let body = s.recv()?;
        if body[0] != wire::VERSION {
            return Err(Fail::Broken(format!(
                "the sftp subsystem answered {}, not VERSION (is something printing from the \
                 login shell's rc files?)",
                body[0]
            )));
        }
        let (
            v,
            Extensions {
                posix_rename,
                fsync,
                hardlink,
            },
        ) = wire::parse_version(&body[1..])?;
        if v < 3 {
            return Err(Fail::Op(format!("SFTP version {v} is too old")));
        }
        (s.has_posix_rename, s.has_fsync, s.has_hardlink) = (posix_rename, fsync, hardlink);
        Ok(s)
    }

    /// One packet's body (type byte first).
    fn recv(&mut self) -> Result<Vec<u8>, Fail> {
        let mut len = [0u8; 4];
        self.ch
            .read_exact(&mut len)
            .map_err(lost("reading an SFTP reply"))?;
        let len = wire::packet_len(len)?;
        let mut body = vec![0u8; len];
        self.ch
            .read_exact(&mut body)
            .map_err(lost("reading an SFTP reply"))?;
        Ok(body)
    }

    /// Send requests without waiting for their replies (which are read, and dropped, before
    /// the next batch's; a connection closed first never reads them): for work whose outcome
    /// changes nothing (tidying).
    pub fn send_only(&mut self, reqs: &[Req]) -> Result<(), Fail> {
        self.send(reqs)?;
        self.unread += reqs.len();
        Ok(())
    }

    fn send(&mut self, reqs: &[Req]) -> Result<Vec<u32>, Fail> {
        let mut out = Vec::new();
        let mut ids = Vec::with_capacity(reqs.len());
        for r in reqs {
            let id = self.next_id;
            self.next_id = self.next_id.wrapping_add(1);
            wire::encode(r, id, &mut out);
            ids.push(id);
        }
        // No `flush`: on an ssh2 channel it discards the data received but not yet read
        // (here: replies to `send_only` requests); `write_all` has sent everything.
        self.ch
            .write_all(&out)
            .map_err(lost("sending SFTP requests"))?;
        Ok(ids)
    }

    /// Send every request at once, then read their replies (in order).
    pub fn batch(&mut self, reqs: &[Req]) -> Result<Vec<Reply>, Fail> {
        self.batch_checked(reqs, 0, |_| Ok(()))
    }

    /// `batch`, with `check` run on the first `first` replies as soon as they are in: its
    /// error is returned at once, without waiting for the rest — for a later request the
    /// server may block on (an OPEN of what an earlier LSTAT shows is a FIFO). The
    /// connection then owes replies it will never read: `check` returns `Fail::Stuck`.
    pub fn batch_checked(
        &mut self,
        reqs: &[Req],
        first: usize,
        check: impl FnOnce(&[Reply]) -> Result<(), Fail>,
    ) -> Result<Vec<Reply>, Fail> {
        let ids = self.send(reqs)?;
        ROUND_TRIPS.fetch_add(1, Ordering::Relaxed);
        // The server answers in order: replies to earlier unwaited requests come first.
        while self.unread > 0 {
            wire::parse_reply(&self.recv()?)?;
            self.unread -= 1;
        }
        let mut replies = Vec::with_capacity(reqs.len());
        let mut check = Some(check);
        for id in ids {
            if replies.len() == first {
                if let Some(check) = check.take() {
                    check(&replies)?;
                }
            }
            let (got, reply) = wire::parse_reply(&self.recv()?)?;
            if got != id {
                return Err(Fail::Broken(format!(
                    "SFTP reply {got} where {id} was expected"
                )));
            }
            replies.push(reply);
        }
        Ok(replies)
    }

    /// Several directories listed together: `before` and every OPENDIR in one exchange, then
    /// two READDIRs per open directory per exchange until each reached its end, then every
    /// CLOSE with the requests `then` makes of the listings, sent without waiting (replies to
    /// `then` are not looked at). Small directories cost two round trips in all, however
    /// many there are. `between` is called with the replies to `before` as soon as they are
    /// in; the requests it makes ride at the head of the second exchange. Returns the
    /// replies to `before` and to `between`'s requests.
    pub fn list_dirs(
        &mut self,
        before: Vec<Req>,
        between: impl FnOnce(&[Reply]) -> Vec<Req>,
        dirs: &[&Path],
        then: impl FnOnce(&[Listing]) -> Vec<Req>,
    ) -> Result<Listed, Fail> {
        let skip = before.len();
        let mut opens = before;
        opens.extend(dirs.iter().map(|d| Req::Opendir(d.to_path_buf())));
        let mut before_replies = self.batch(&opens)?;
        let r = before_replies.split_off(skip.min(before_replies.len()));
        let mut riders = between(&before_replies);
        let mut rider_replies = Vec::new();
        let mut out: Vec<Listing> = Vec::new();
        let mut open: Vec<(usize, Vec<u8>)> = Vec::new();
        for (i, rep) in r.iter().enumerate() {
            match handle(rep) {
                Ok(h) => {
                    out.push(Ok(Vec::new()));
                    open.push((i, h));
                }
                Err(e) => out.push(Err(e.to_string())),
            }
        }
        if open.is_empty() && !riders.is_empty() {
            rider_replies = self.batch(&std::mem::take(&mut riders))?;
        }
        let mut reading: Vec<usize> = (0..open.len()).collect();
        while !reading.is_empty() {
            let ride = riders.len();
            let mut reqs = std::mem::take(&mut riders);
            reqs.extend(reading.iter().flat_map(|&k| {
                [
                    Req::Readdir(open[k].1.clone()),
                    Req::Readdir(open[k].1.clone()),
                ]
            }));
            let mut r = self.batch(&reqs)?;
            if ride > 0 {
                let rest = r.split_off(ride);
                rider_replies = std::mem::replace(&mut r, rest);
            }
            let mut still = Vec::new();
            for (j, &k) in reading.iter().enumerate() {
                let mut ended = false;
                for rep in &r[2 * j..2 * j + 2] {
                    match rep {
                        Reply::Name(v) if !ended => {
                            if let Ok(names) = &mut out[open[k].0] {
                                names.extend(v.iter().cloned());
                            }
                        }
                        _ => ended = true,
                    }
                }
                let slot = &mut out[open[k].0];
                if slot.as_ref().is_ok_and(|n| n.len() > MAX_NAMES) {
                    *slot = Err(too_many_names());
                    ended = true;
                }
                if !ended {
                    still.push(k);
                }
            }
            reading = still;
        }
        for names in out.iter_mut().flatten() {
            names.retain(|(n, _)| n != "." && n != "..");
        }
        let mut last: Vec<Req> = open.into_iter().map(|(_, h)| Req::Close(h)).collect();
        last.extend(then(&out));
        self.send_only(&last)?;
        Ok(Listed {
            before: before_replies,
            between: rider_replies,
        })
    }

    /// Read whole files (absent: `None`) in two round trips. Each is LSTATed ahead of its
    /// OPEN in the same exchange: one that may block an open (a FIFO, a device, a socket) is
    /// refused as soon as that reply is in (`refuse_blocking`).
    pub fn read_files(&mut self, paths: &[&Path]) -> Result<Vec<Option<Vec<u8>>>, Fail> {
        let mut reqs: Vec<Req> = paths.iter().map(|p| Req::Lstat(p.to_path_buf())).collect();
        reqs.extend(open_for_reading(paths));
        let mut r = self.batch_checked(&reqs, paths.len(), |r| refuse_blocking(paths, r))?;
        let r = r.split_off(paths.len());
        let handles = opened(paths, &r)?;
        let reqs = read_and_close(&handles);
        let r = if reqs.is_empty() {
            Vec::new()
        } else {
            self.batch(&reqs)?
        };
        contents(paths, &handles, &r)
    }

    /// Create a new file (0600, must not exist) holding `bytes`, fsynced where supported.
    pub fn upload(&mut self, path: &Path, bytes: &[u8]) -> Result<(), Fail> {
        let create = wire::FXF_WRITE | wire::FXF_CREAT | wire::FXF_EXCL;
        let r = self.batch(&[Req::Open(path.to_path_buf(), create, Some(0o600))])?;
        let h = handle(&r[0]).map_err(|e| Fail::Op(e.to_string()))?;
        let mut reqs: Vec<Req> = chunks(bytes)
            .into_iter()
            .map(|(off, c)| Req::Write(h.clone(), off, c.to_vec()))
            .collect();
        if self.has_fsync {
            reqs.push(Req::Fsync(h.clone()));
        }
        reqs.push(Req::Close(h));
        for rep in self.batch(&reqs)? {
            if let Reply::Status(..) = rep {
                ok(&rep).map_err(|e| Fail::Op(e.to_string()))?;
            }
        }
        Ok(())
    }
}

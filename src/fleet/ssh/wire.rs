//! SFTP protocol 3 on the wire (draft-ietf-secsh-filexfer-02, plus OpenSSH's
//! `fsync@openssh.com`, `posix-rename@openssh.com` and `hardlink@openssh.com`): requests
//! encoded into packets, and reply packets parsed into `Reply` values. Pure bytes, no I/O;
//! `sftp.rs` moves them over the channel. The reply parser reads what a server sends, so it
//! is fuzzed (`fuzz/fuzz_targets/sftp_reply.rs`, through `parse_reply_packet`).

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

pub const FXF_READ: u32 = 0x01;
pub const FXF_WRITE: u32 = 0x02;
pub const FXF_CREAT: u32 = 0x08;
pub const FXF_EXCL: u32 = 0x20;

pub const FX_EOF: u32 = 1;
pub const FX_NO_SUCH_FILE: u32 = 2;
pub const FX_OP_UNSUPPORTED: u32 = 8;

pub const INIT: u8 = 1;
pub const VERSION: u8 = 2;
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
pub const MAX_PACKET: usize = 1 << 20;

/// A reply this client cannot use: the connection is out of step and must be dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("a malformed SFTP reply")]
    Malformed,
    #[error("an SFTP reply of {0} bytes")]
    Length(usize),
    #[error("an SFTP reply of type {0}")]
    Type(u8),
}

/// The file attributes this client reads and sets.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Attrs {
    pub size: Option<u64>,
    /// `st_mode`, file type bits included.
    pub perm: Option<u32>,
    /// The owner's uid (read from replies; never sent).
    pub uid: Option<u32>,
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
#[derive(PartialEq, Eq)]
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

/// A status code (and the server's message, when it says more) in words.
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
fn put_path(b: &mut Vec<u8>, p: &Path) {
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

/// The INIT packet asking for version 3.
pub fn init_packet() -> Vec<u8> {
    let mut pkt = Vec::new();
    put_u32(&mut pkt, 5);
    pkt.push(INIT);
    put_u32(&mut pkt, 3);
    pkt
}

/// Append `req` as one packet with request id `id` to `out`.
pub fn encode(req: &Req, id: u32, out: &mut Vec<u8>) {
    let mut b = Vec::new();
    let head = |b: &mut Vec<u8>, t: u8| {
        b.push(t);
        put_u32(b, id);
    };
    let ext = |b: &mut Vec<u8>, name: &[u8]| {
        head(b, EXTENDED);
        put_str(b, name);
    };
    match req {
        Req::Stat(p) | Req::Lstat(p) | Req::Remove(p) | Req::Rmdir(p) | Req::Opendir(p) => {
            let t = match req {
                Req::Stat(_) => STAT,
                Req::Lstat(_) => LSTAT,
                Req::Remove(_) => REMOVE,
                Req::Rmdir(_) => RMDIR,
                _ => OPENDIR,
            };
            head(&mut b, t);
            put_path(&mut b, p);
        }
        Req::Fstat(h) | Req::Close(h) | Req::Readdir(h) => {
            let t = match req {
                Req::Fstat(_) => FSTAT,
                Req::Close(_) => CLOSE,
                _ => READDIR,
            };
            head(&mut b, t);
            put_str(&mut b, h);
        }
        Req::Open(p, flags, perm) => {
            head(&mut b, OPEN);
            put_path(&mut b, p);
            put_u32(&mut b, *flags);
            put_attrs(&mut b, &perm.map(Attrs::perm).unwrap_or_default());
        }
        Req::Read(h, off, len) => {
            head(&mut b, READ);
            put_str(&mut b, h);
            put_u64(&mut b, *off);
            put_u32(&mut b, *len);
        }
        Req::Write(h, off, data) => {
            head(&mut b, WRITE);
            put_str(&mut b, h);
            put_u64(&mut b, *off);
            put_str(&mut b, data);
        }
        Req::Setstat(p, a) => {
            head(&mut b, SETSTAT);
            put_path(&mut b, p);
            put_attrs(&mut b, a);
        }
        Req::Mkdir(p, mode) => {
            head(&mut b, MKDIR);
            put_path(&mut b, p);
            put_attrs(&mut b, &Attrs::perm(*mode));
        }
        Req::Fsync(h) => {
            ext(&mut b, b"fsync@openssh.com");
            put_str(&mut b, h);
        }
        Req::PosixRename(from, to) | Req::Hardlink(from, to) => {
            let name: &[u8] = match req {
                Req::PosixRename(..) => b"posix-rename@openssh.com",
                _ => b"hardlink@openssh.com",
            };
            ext(&mut b, name);
            put_path(&mut b, from);
            put_path(&mut b, to);
        }
    }
    put_u32(out, b.len() as u32);
    out.extend_from_slice(&b);
}

/// A cursor over a reply's bytes.
struct Cur<'a>(&'a [u8]);

impl<'a> Cur<'a> {
    fn u32(&mut self) -> Result<u32, WireError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, WireError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.0.len() < n {
            return Err(WireError::Malformed);
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn string(&mut self) -> Result<&'a [u8], WireError> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn attrs(&mut self) -> Result<Attrs, WireError> {
        let flags = self.u32()?;
        let mut a = Attrs::default();
        if flags & ATTR_SIZE != 0 {
            a.size = Some(self.u64()?);
        }
        if flags & ATTR_UIDGID != 0 {
            a.uid = Some(self.u32()?);
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

/// The length a packet announces in its first four bytes, checked against `MAX_PACKET`.
pub fn packet_len(head: [u8; 4]) -> Result<usize, WireError> {
    let len = u32::from_be_bytes(head) as usize;
    if len == 0 || len > MAX_PACKET {
        return Err(WireError::Length(len));
    }
    Ok(len)
}

/// The OpenSSH extensions a VERSION reply offers.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Extensions {
    pub posix_rename: bool,
    pub fsync: bool,
    pub hardlink: bool,
}

/// A VERSION packet's body (after the type byte): the version and the extensions offered.
pub fn parse_version(body: &[u8]) -> Result<(u32, Extensions), WireError> {
    let mut c = Cur(body);
    let v = c.u32()?;
    let mut ext = Extensions::default();
    while !c.0.is_empty() {
        let name = c.string()?;
        let _data = c.string()?;
        match name {
            b"posix-rename@openssh.com" => ext.posix_rename = true,
            b"fsync@openssh.com" => ext.fsync = true,
            b"hardlink@openssh.com" => ext.hardlink = true,
            _ => {}
        }
    }
    Ok((v, ext))
}

/// A reply packet's body (type byte first, length prefix removed): its request id and the
/// reply.
pub fn parse_reply(body: &[u8]) -> Result<(u32, Reply), WireError> {
    let (&t, rest) = body.split_first().ok_or(WireError::Malformed)?;
    let mut c = Cur(rest);
    let id = c.u32()?;
    let reply = match t {
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
        t => return Err(WireError::Type(t)),
    };
    Ok((id, reply))
}

/// A whole reply packet as it arrives (length prefix, type, body): what the fuzz target
/// feeds. Bytes after the announced length are ignored, as the next packet's.
#[doc(hidden)]
pub fn parse_reply_packet(packet: &[u8]) -> Result<(u32, Reply), WireError> {
    let head: [u8; 4] = packet
        .get(..4)
        .and_then(|h| h.try_into().ok())
        .ok_or(WireError::Malformed)?;
    let len = packet_len(head)?;
    let body = packet.get(4..4 + len).ok_or(WireError::Malformed)?;
    if body.first() == Some(&VERSION) {
        return parse_version(&body[1..]).map(|(v, _)| (v, Reply::Extended));
    }
    parse_reply(body)
}

/// A reply packet (length prefix included) as a server would send it: the reply parser's
/// normal form, for the fuzz target's round trip and for seeds. Status replies carry an empty
/// language tag, names their name as the long name.
#[doc(hidden)]
pub fn encode_reply(id: u32, reply: &Reply) -> Vec<u8> {
    let mut b = Vec::new();
    let head = |b: &mut Vec<u8>, t: u8| {
        b.push(t);
        put_u32(b, id);
    };
    match reply {
        Reply::Status(code, msg) => {
            head(&mut b, STATUS);
            put_u32(&mut b, *code);
            put_str(&mut b, msg.as_bytes());
            put_str(&mut b, b"");
        }
        Reply::Handle(h) => {
            head(&mut b, HANDLE);
            put_str(&mut b, h);
        }
        Reply::Data(d) => {
            head(&mut b, DATA);
            put_str(&mut b, d);
        }
        Reply::Attrs(a) => {
            head(&mut b, ATTRS);
            put_attrs(&mut b, a);
        }
        Reply::Name(v) => {
            head(&mut b, NAME);
            put_u32(&mut b, v.len() as u32);
            for (name, a) in v {
                put_str(&mut b, name.as_bytes());
                put_str(&mut b, name.as_bytes());
                put_attrs(&mut b, a);
            }
        }
        Reply::Extended => head(&mut b, EXTENDED_REPLY),
    }
    let mut out = Vec::with_capacity(b.len() + 4);
    put_u32(&mut out, b.len() as u32);
    out.extend_from_slice(&b);
    out
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
    fn replies_parse_and_truncations_fail() {
        let mut p = Vec::new();
        put_u32(&mut p, 0);
        p.push(NAME);
        put_u32(&mut p, 7);
        put_u32(&mut p, 1);
        put_str(&mut p, b"KeyFile");
        put_str(&mut p, b"-rw------- KeyFile");
        put_attrs(&mut p, &Attrs::perm(0o100600));
        let len = (p.len() - 4) as u32;
        p[..4].copy_from_slice(&len.to_be_bytes());
        let (id, r) = parse_reply_packet(&p).unwrap();
        assert_eq!(id, 7);
        match r {
            Reply::Name(v) => assert_eq!(v, vec![("KeyFile".into(), Attrs::perm(0o100600))]),
            other => panic!("{other:?}"),
        }
        for cut in 0..p.len() {
            assert!(parse_reply_packet(&p[..cut]).is_err(), "{cut}");
        }
        assert_eq!(
            parse_reply(&[99, 0, 0, 0, 1]).unwrap_err(),
            WireError::Type(99)
        );
        assert_eq!(
            packet_len([0, 0x20, 0, 0]).unwrap_err(),
            WireError::Length(1 << 21)
        );
    }

    #[test]
    fn encoded_replies_parse_back() {
        let full = Attrs {
            size: Some(1 << 40),
            perm: Some(0o100600),
            uid: None,
            atime: Some(1),
            mtime: Some(2),
        };
        for r in [
            Reply::Status(2, "No such file".into()),
            Reply::Handle(vec![1, 2, 3]),
            Reply::Data(vec![0; 100]),
            Reply::Attrs(full),
            Reply::Name(vec![("a".into(), full), ("b".into(), Attrs::default())]),
            Reply::Extended,
        ] {
            let (id, back) = parse_reply_packet(&encode_reply(42, &r)).unwrap();
            assert_eq!((id, &back), (42, &r));
        }
    }

    #[test]
    fn version_lists_extensions() {
        let mut b = Vec::new();
        put_u32(&mut b, 3);
        for (n, d) in [
            (&b"posix-rename@openssh.com"[..], &b"1"[..]),
            (b"fsync@openssh.com", b"1"),
        ] {
            put_str(&mut b, n);
            put_str(&mut b, d);
        }
        let (v, e) = parse_version(&b).unwrap();
        assert_eq!(v, 3);
        assert!(e.posix_rename && e.fsync && !e.hardlink);
    }
}

//! Bytes <-> key sets for the classic KeyFile and OpenAFS 1.8's KeyFileExt. Pure: no I/O.
//! Errors say what is wrong and where (byte offset), so the store can name the file.

mod keyfile;
mod keyfileext;
pub mod keytab;

pub use keyfile::{read_keyfile, write_keyfile};
pub use keyfileext::{read_keyfileext, write_keyfileext};

use crate::keys::KeySetError;

/// What is wrong with the bytes of a key file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("empty file (0 bytes); a key file with no keys is the 4 bytes 00 00 00 00")]
    Empty,
    #[error("truncated: {need} bytes needed for {what} at offset {offset}, file is {len} bytes")]
    Truncated {
        what: &'static str,
        offset: usize,
        need: usize,
        len: usize,
    },
    #[error("key count {0} is negative")]
    NegativeCount(i32),
    #[error("key count {count} is too large: {MAX} keys at most", count = .0, MAX = crate::keys::MAX_RXKAD_KEYS)]
    TooManyKeys(i32),
    #[error("key count {count} is too large for a file of {len} bytes")]
    CountTooLarge { count: i32, len: usize },
    #[error(
        "trailing data after the last key: a non-zero byte at offset {offset}, file is {len} bytes"
    )]
    TrailingBytes { offset: usize, len: usize },
    #[error("record at offset {offset}: duplicate {id} (it appears twice)")]
    Duplicate {
        offset: usize,
        id: crate::keys::KeyId,
    },
    #[error("record at offset {offset}: meta length {meta_len} is below 16")]
    MetaLength { offset: usize, meta_len: i32 },
    #[error("record at offset {offset}: key length {key_len} is negative")]
    NegativeKeyLength { offset: usize, key_len: i32 },
    #[error("record at offset {offset}: unknown key type {key_type}")]
    UnknownType { offset: usize, key_type: i32 },
    #[error(
        "record at offset {offset}: an rxkad key in KeyFileExt (rxkad keys belong in KeyFile)"
    )]
    RxkadInExt { offset: usize },
    #[error("record at offset {offset}: {source}")]
    Key {
        offset: usize,
        #[source]
        source: KeySetError,
    },
}

impl FormatError {
    /// Duplicate kvnos, counts above 8, bad lengths: the key set refused the record.
    fn key(offset: usize, source: KeySetError) -> FormatError {
        match source {
            KeySetError::Duplicate(id) => FormatError::Duplicate { offset, id },
            source => FormatError::Key { offset, source },
        }
    }
}

/// Big-endian int32 at `off`, or a truncation error naming what was being read.
fn be32(b: &[u8], off: usize, what: &'static str) -> Result<i32, FormatError> {
    match b.get(off..off + 4) {
        Some(s) => Ok(i32::from_be_bytes(s.try_into().unwrap())),
        None => Err(FormatError::Truncated {
            what,
            offset: off,
            need: 4,
            len: b.len(),
        }),
    }
}

/// Bytes after the last record must be zero (the old fixed 100-byte layout pads with zeros).
fn check_trailing(b: &[u8], end: usize) -> Result<(), FormatError> {
    let rest = &b[end..];
    match rest.iter().position(|&x| x != 0) {
        None => Ok(()),
        Some(p) => Err(FormatError::TrailingBytes {
            offset: end + p,
            len: b.len(),
        }),
    }
}

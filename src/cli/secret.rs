//! Reading secrets the safe ways: the first line of stdin, or the terminal without echo.
//! Everything read is held in zeroizing buffers.

use crate::error::Error;
use std::io::{BufRead, Read};
use zeroize::Zeroizing;

/// The longest secret line read from stdin (without its line ending).
pub const MAX_LINE: usize = 1024;

/// The first line of stdin, without its line ending. Reading stops at the first newline or
/// after `MAX_LINE` bytes (a longer line is refused: stdin from /dev/zero fails at once);
/// nothing after the line is read. An empty line is refused.
pub fn stdin_line(what: &str) -> Result<Zeroizing<Vec<u8>>, Error> {
    let mut line = Zeroizing::new(Vec::with_capacity(MAX_LINE + 2));
    let stdin = std::io::stdin();
    let lock = stdin.lock();
    let got = lock
        .take(MAX_LINE as u64 + 2)
        .read_until(b'\n', &mut line)
        .map_err(|e| {
            Error::failed(format!("cannot read the {what} from stdin: {e}")).with_source(e)
        })?;
    if got == 0 {
        return Err(Error::failed(format!(
            "no {what} on stdin (give it as the first line of standard input)"
        )));
    }
    // Only the newline ends the line: a CR before it stays, to be judged (kadmin would keep
    // it in a password; hex ignores it).
    let ended = line.last() == Some(&b'\n');
    if ended {
        line.pop();
    }
    if line.len() > MAX_LINE || (!ended && got > MAX_LINE) {
        return Err(Error::failed(format!(
            "the {what} on stdin is longer than {MAX_LINE} bytes; refusing it (give one \
             line of at most {MAX_LINE} bytes)"
        )));
    }
    if line.is_empty() {
        return Err(Error::failed(format!(
            "the {what} on stdin is empty (its first line has nothing before the newline); \
             refusing it"
        )));
    }
    Ok(line)
}

/// Ask for a password twice on the terminal, without echo.
pub fn prompt_twice() -> Result<Zeroizing<Vec<u8>>, Error> {
    let first = Zeroizing::new(rpassword::prompt_password("New password: ").map_err(|e| {
        Error::failed(format!("cannot read a password from the terminal: {e}")).with_source(e)
    })?);
    let second = Zeroizing::new(
        rpassword::prompt_password("Retype new password: ")
            .map_err(|e| Error::failed(format!("cannot read a password from the terminal: {e}")))?,
    );
    if *first != *second {
        return Err(Error::failed("the two passwords differ; nothing changed"));
    }
    if first.is_empty() {
        return Err(Error::failed(
            "the password is empty; an empty password makes a key anyone can derive",
        ));
    }
    Ok(Zeroizing::new(first.as_bytes().to_vec()))
}

/// Hex from stdin (spaces and colons ignored) decoded to bytes.
pub fn stdin_hex() -> Result<Zeroizing<Vec<u8>>, Error> {
    let line = stdin_line("hex key")?;
    let clean: Zeroizing<Vec<u8>> = Zeroizing::new(
        line.iter()
            .copied()
            .filter(|c| !c.is_ascii_whitespace() && *c != b':')
            .collect(),
    );
    let mut out = Zeroizing::new(vec![0u8; clean.len() / 2]);
    if !clean.len().is_multiple_of(2) || hex::decode_to_slice(&*clean, &mut out[..]).is_err() {
        return Err(Error::failed(
            "the key on stdin is not hex (expected an even number of 0-9a-f digits)",
        ));
    }
    Ok(out)
}

/// A password from the kernel keyring (`user:NAME`).
pub fn keyring(spec: &str) -> Result<Zeroizing<Vec<u8>>, Error> {
    Ok(crate::keyring::read(spec)?)
}

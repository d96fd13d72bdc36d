//! Reading secrets the safe ways: the first line of stdin, or the terminal without echo.
//! Everything read is held in zeroizing buffers.

use crate::error::Error;
use std::io::{BufRead, Read};
use zeroize::Zeroizing;

/// The first line of stdin, without its line ending. Reading stops at the first newline.
pub fn stdin_line(what: &str) -> Result<Zeroizing<Vec<u8>>, Error> {
    let mut line = Zeroizing::new(Vec::new());
    let stdin = std::io::stdin();
    let mut lock = stdin.lock();
    lock.read_until(b'\n', &mut line).map_err(|e| {
        Error::failed(format!("cannot read the {what} from stdin: {e}")).with_source(e)
    })?;
    if line.is_empty() {
        return Err(Error::failed(format!(
            "no {what} on stdin (give it as the first line of standard input)"
        )));
    }
    while matches!(line.last(), Some(b'\n') | Some(b'\r')) {
        line.pop();
    }
    // Drain and wipe anything after the first line so it does not linger in a buffer.
    let mut rest = Zeroizing::new(Vec::new());
    let _ = lock.read_to_end(&mut rest);
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

//! Secrets from the Linux kernel keyring (`--password-from-keyring user:NAME`), as cryptsetup
//! reads passphrases that `keyctl padd` stored: the secret never passes through a terminal,
//! a pipe or a file. Uses the request_key(2) and keyctl(2) system calls directly.

use std::ffi::CString;
use zeroize::Zeroizing;

const KEYCTL_READ: libc::c_long = 11;

#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    #[error("{0:?} is not TYPE:DESCRIPTION (for example user:afs-rotation)")]
    Spec(String),
    #[error("key type {0:?} cannot be read from user space; store the secret as a \"user\" key (keyctl padd user NAME @u)")]
    Type(String),
    #[error("no {kind} key {name:?} in the thread, process, session or user keyring ({err})")]
    NotFound {
        kind: String,
        name: String,
        #[source]
        err: std::io::Error,
    },
    #[error("cannot read key {name:?}: {err}")]
    Read {
        name: String,
        #[source]
        err: std::io::Error,
    },
}

impl crate::error::Kinded for KeyringError {
    fn kind(&self) -> crate::error::Kind {
        crate::error::Kind::Failed
    }
}

/// Read the payload of the key `TYPE:NAME` (only `user` keys hold readable secrets).
pub fn read(spec: &str) -> Result<Zeroizing<Vec<u8>>, KeyringError> {
    let (kind, name) = spec
        .split_once(':')
        .filter(|(k, n)| !k.is_empty() && !n.is_empty())
        .ok_or_else(|| KeyringError::Spec(spec.to_string()))?;
    if kind != "user" {
        return Err(KeyringError::Type(kind.to_string()));
    }
    let ckind = CString::new(kind).map_err(|_| KeyringError::Spec(spec.into()))?;
    let cname = CString::new(name).map_err(|_| KeyringError::Spec(spec.into()))?;
    // SAFETY: request_key with two valid C strings, no callout and no destination keyring.
    let serial = unsafe {
        libc::syscall(
            libc::SYS_request_key,
            ckind.as_ptr(),
            cname.as_ptr(),
            std::ptr::null::<libc::c_char>(),
            0 as libc::c_long,
        )
    };
    if serial < 0 {
        let err = std::io::Error::last_os_error();
        // The user keyring is not always linked into the session (no pam_keyinit): try it.
        return match search_user_keyring(&ckind, &cname) {
            Some(s) => read_serial(s, name),
            None => Err(KeyringError::NotFound {
                kind: kind.into(),
                name: name.into(),
                err,
            }),
        };
    }
    read_serial(serial, name)
}

fn search_user_keyring(kind: &CString, name: &CString) -> Option<libc::c_long> {
    const KEYCTL_SEARCH: libc::c_long = 10;
    const KEY_SPEC_USER_KEYRING: libc::c_long = -4;
    // SAFETY: keyctl(KEYCTL_SEARCH, keyring, type, description, dest=0) with valid C strings.
    let s = unsafe {
        libc::syscall(
            libc::SYS_keyctl,
            KEYCTL_SEARCH,
            KEY_SPEC_USER_KEYRING,
            kind.as_ptr(),
            name.as_ptr(),
            0 as libc::c_long,
        )
    };
    (s >= 0).then_some(s)
}

fn read_serial(serial: libc::c_long, name: &str) -> Result<Zeroizing<Vec<u8>>, KeyringError> {
    let mut buf = Zeroizing::new(vec![0u8; 4096]);
    loop {
        // SAFETY: keyctl(KEYCTL_READ) writes at most buf.len() bytes into buf.
        let n = unsafe {
            libc::syscall(
                libc::SYS_keyctl,
                KEYCTL_READ,
                serial,
                buf.as_mut_ptr(),
                buf.len(),
            )
        };
        if n < 0 {
            return Err(KeyringError::Read {
                name: name.into(),
                err: std::io::Error::last_os_error(),
            });
        }
        let n = n as usize;
        if n <= buf.len() {
            buf.truncate(n);
            // A trailing newline (keyctl padd from `echo`) is not part of a password.
            while matches!(buf.last(), Some(b'\n') | Some(b'\r')) {
                buf.pop();
            }
            return Ok(buf);
        }
        buf = Zeroizing::new(vec![0u8; n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_are_checked() {
        assert!(matches!(read("nocolon"), Err(KeyringError::Spec(_))));
        assert!(matches!(read("user:"), Err(KeyringError::Spec(_))));
        assert!(matches!(read("logon:x"), Err(KeyringError::Type(_))));
        assert!(matches!(
            read("user:afskeys-surely-absent-key-name"),
            Err(KeyringError::NotFound { .. })
        ));
    }
}

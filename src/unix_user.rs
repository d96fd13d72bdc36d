//! The invoking user from the password database, looked up with the thread-safe
//! `getpwuid_r` (never `getpwuid`, whose static buffer fan-out worker threads would share):
//! the login name for the audit log, the home directory for `~/.ssh`.

use std::ffi::{CStr, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

/// The password database entry of `uid`: (login name, home directory), if there is one.
fn lookup(uid: libc::uid_t) -> Option<(Vec<u8>, Vec<u8>)> {
    let mut buf = vec![0 as libc::c_char; 4096];
    loop {
        // SAFETY: all-zero is a valid `passwd` value to be filled in.
        let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
        let mut out: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: getpwuid_r writes only into `pw` and `buf` (whose length we pass), and
        // sets `out`.
        let rc = unsafe { libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr(), buf.len(), &mut out) };
        if rc == libc::ERANGE && buf.len() < (1 << 20) {
            buf.resize(buf.len() * 4, 0);
            continue;
        }
        if rc != 0 || out.is_null() {
            return None;
        }
        // SAFETY: on success the non-null fields point to NUL-terminated strings in `buf`,
        // which outlives these reads.
        let field = |p: *const libc::c_char| {
            (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_bytes().to_vec())
        };
        return Some((
            field(pw.pw_name).unwrap_or_default(),
            field(pw.pw_dir).unwrap_or_default(),
        ));
    }
}

/// The login name of `uid`, or the number when the password database has none.
pub fn user_name(uid: libc::uid_t) -> String {
    match lookup(uid) {
        Some((name, _)) if !name.is_empty() => String::from_utf8_lossy(&name).into_owned(),
        _ => uid.to_string(),
    }
}

/// `$HOME`, else the home directory of the real uid, else `/`.
pub fn home_dir() -> PathBuf {
    if let Some(h) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        return PathBuf::from(h);
    }
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    match lookup(uid) {
        Some((_, dir)) if !dir.is_empty() => PathBuf::from(OsStr::from_bytes(&dir)),
        _ => PathBuf::from("/"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_and_unknown_uids() {
        assert_eq!(user_name(0), "root");
        assert_eq!(user_name(4_000_000_123), "4000000123");
    }

    #[test]
    fn lookups_from_many_threads_agree() {
        let want = lookup(0);
        let got: Vec<_> = (0..8)
            .map(|_| std::thread::spawn(|| (0..200).map(|_| lookup(0)).collect::<Vec<_>>()))
            .collect::<Vec<_>>()
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        assert!(got.iter().all(|g| *g == want));
    }
}

//! The audit log: one line appended per mutation (time, user, command, what changed: kvnos and
//! checksums, never key material). Opened O_APPEND, mode 0600, fsynced after each line.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

pub const AUDIT_FILE: &str = "afskeys-audit.log";

#[derive(Debug, Clone)]
pub struct Audit {
    path: PathBuf,
}

impl Audit {
    pub fn new(path: impl Into<PathBuf>) -> Audit {
        Audit { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn open(&self) -> Result<std::fs::File, String> {
        OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&self.path)
            .map_err(|e| format!("audit log {}: cannot open: {e}", self.path.display()))
    }

    /// Check, before a change, that the log can be written, so a change is never made
    /// that cannot be recorded.
    pub fn preflight(&self) -> Result<(), String> {
        self.open()
            .map(|_| ())
            .map_err(|e| format!("{e}; nothing was changed"))
    }

    /// Append one line: `<UTC time> user=<name> uid=<uid> <command>: <detail>`.
    pub fn record(&self, command: &str, detail: &str) -> Result<(), String> {
        // SAFETY: getuid has no preconditions and cannot fail.
        let uid = unsafe { libc::getuid() };
        let user = std::env::var("SUDO_USER")
            .or_else(|_| std::env::var("USER"))
            .or_else(|_| std::env::var("LOGNAME"))
            .unwrap_or_else(|_| crate::unix_user::user_name(uid));
        let line = format!(
            "{} user={} uid={} {}: {}\n",
            crate::time::now_string(),
            clean(&user),
            uid,
            clean(command),
            clean(detail)
        );
        let mut f = self.open()?;
        f.write_all(line.as_bytes())
            .and_then(|_| f.sync_data())
            .map_err(|e| format!("audit log {}: cannot write: {e}", self.path.display()))
    }
}

/// One line per record: control characters become spaces.
fn clean(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn appends_private_single_lines() {
        let d = tempfile::tempdir().unwrap();
        let a = Audit::new(d.path().join(AUDIT_FILE));
        a.record("add", "rxkad kvno 3 cksum 1").unwrap();
        a.record("remove", "kvno 3\nforged line").unwrap();
        let t = std::fs::read_to_string(a.path()).unwrap();
        assert_eq!(t.lines().count(), 2, "{t}");
        assert!(t
            .lines()
            .next()
            .unwrap()
            .ends_with(" add: rxkad kvno 3 cksum 1"));
        assert!(t.contains("kvno 3 forged line"));
        let m = std::fs::metadata(a.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(m, 0o600);
    }
}

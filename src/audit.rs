//! The audit log: one line appended per mutation (time, user, command, what changed: kvnos and
//! checksums, never key material). Opened O_APPEND, mode 0600, through the one checked open
//! (`store::trust`: never a symlink, a FIFO or another user's file), fsynced after each line.
//! Every field is one line of printable text: control characters become spaces.

use crate::store::trust::{self, TrustError};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Why the audit log could not be written.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit log {}: cannot open: {source}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("audit log not trusted: {0}")]
    Untrusted(#[source] TrustError),
    #[error("{0}; nothing was changed")]
    Preflight(#[source] Box<AuditError>),
    #[error("audit log {}: cannot write: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl crate::error::Kinded for AuditError {
    fn kind(&self) -> crate::error::Kind {
        crate::error::Kind::Failed
    }
}

pub const AUDIT_FILE: &str = "afskeys-audit.log";

/// The longest `--reason` the audit log takes (bytes): one line, read by people.
pub const MAX_REASON: usize = 1024;
/// The longest user name taken from the environment (`SUDO_USER`, `USER`, `LOGNAME`); a
/// longer one is cut (the `uid=` field beside it is the kernel's word anyway).
const MAX_ENV_WORD: usize = 64;

/// Why a `--reason` is refused before anything happens.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReasonError {
    #[error("--reason is empty: say why (it is recorded in the audit log)")]
    Empty,
    #[error("--reason is {0} bytes; at most {MAX_REASON} (it is one line of the audit log)")]
    TooLong(usize),
    #[error(
        "--reason contains the character U+{:04X} (a control, invisible or direction-changing \
         character); give one line of plain text",
        *.0 as u32
    )]
    Character(char),
}

/// A `--reason` the audit log records as given: not empty or blank, at most `MAX_REASON`
/// bytes, one line, no character that could hide or reorder what a reader of the log sees.
pub fn check_reason(s: &str) -> Result<(), ReasonError> {
    if s.trim().is_empty() {
        return Err(ReasonError::Empty);
    }
    if s.len() > MAX_REASON {
        return Err(ReasonError::TooLong(s.len()));
    }
    match s.chars().find(|&c| unprintable(c)) {
        Some(c) => Err(ReasonError::Character(c)),
        None => Ok(()),
    }
}

/// Control characters, and the invisible and direction-changing ones (zero-width spaces and
/// joiners, bidi marks, embeddings, overrides and isolates, line and paragraph separators,
/// the byte-order mark): a log line holding them can show something else than it says.
fn unprintable(c: char) -> bool {
    c.is_control()
        || matches!(c as u32,
            0x061C | 0x200B..=0x200F | 0x2028..=0x202E | 0x2060..=0x2069 | 0xFEFF)
}

#[derive(Debug, Clone)]
pub struct Audit {
    path: PathBuf,
    /// Lines to write just before the next record: what a command learnt before it knew
    /// whether it would change anything (a refused command leaves the log as it was).
    deferred: std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>,
}

impl Audit {
    pub fn new(path: impl Into<PathBuf>) -> Audit {
        Audit {
            path: path.into(),
            deferred: Default::default(),
        }
    }

    /// Record this line with the command's next record, just before it (nothing, if the
    /// command records nothing).
    pub fn defer(&self, command: &str, detail: &str) {
        if let Ok(mut d) = self.deferred.lock() {
            d.push((command.to_string(), detail.to_string()));
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn open(&self) -> Result<std::fs::File, AuditError> {
        trust::open_rw(&self.path, true).map_err(|e| match e {
            TrustError::Io { path, source, .. } => AuditError::Open { path, source },
            e => AuditError::Untrusted(e),
        })
    }

    /// Check, before a change, that the log can be written, so a change is never made
    /// that cannot be recorded.
    pub fn preflight(&self) -> Result<(), AuditError> {
        self.open()
            .map(|_| ())
            .map_err(|e| AuditError::Preflight(Box::new(e)))
    }

    /// Append one line: `<UTC time> user=<name> uid=<uid> <command>: <detail>`.
    pub fn record(&self, command: &str, detail: &str) -> Result<(), AuditError> {
        let deferred: Vec<(String, String)> = match self.deferred.lock() {
            Ok(mut d) => std::mem::take(&mut *d),
            Err(_) => vec![],
        };
        for (c, d) in deferred {
            self.record_one(&c, &d)?;
        }
        self.record_one(command, detail)
    }

    fn record_one(&self, command: &str, detail: &str) -> Result<(), AuditError> {
        // SAFETY: getuid has no preconditions and cannot fail.
        let uid = unsafe { libc::getuid() };
        let user = std::env::var("SUDO_USER")
            .or_else(|_| std::env::var("USER"))
            .or_else(|_| std::env::var("LOGNAME"))
            .unwrap_or_else(|_| crate::unix_user::user_name(uid));
        let line = format!(
            "{} user={} uid={} {}: {}\n",
            crate::time::now_string(),
            word(&user),
            uid,
            clean(command),
            clean(detail)
        );
        let mut f = self.open()?;
        f.write_all(line.as_bytes())
            .and_then(|_| f.sync_data())
            .map_err(|source| AuditError::Write {
                path: self.path.clone(),
                source,
            })
    }
}

/// A field taken from the environment is one word: spaces, '=' and control characters
/// become '_', so `USER="x uid=0"` cannot forge a field.
fn word(s: &str) -> String {
    s.chars()
        .take(MAX_ENV_WORD)
        .map(|c| {
            if unprintable(c) || c.is_whitespace() || c == '=' {
                '_'
            } else {
                c
            }
        })
        .collect()
}

/// One line per record: control, invisible and direction-changing characters become spaces.
fn clean(s: &str) -> String {
    s.chars()
        .map(|c| if unprintable(c) { ' ' } else { c })
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
        assert_eq!(word("x uid=0\n"), "x_uid_0_");
        assert_eq!(word(&"u".repeat(5000)).len(), MAX_ENV_WORD);
        assert_eq!(word("root\u{202e}0=diu"), "root_0_diu");
        assert_eq!(clean("a\u{2028}b\u{200b}c"), "a b c");
        let m = std::fs::metadata(a.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(m, 0o600);
    }

    #[test]
    fn reasons_are_one_line_of_plain_text() {
        assert_eq!(check_reason("disk stolen, INC-42"), Ok(()));
        assert_eq!(check_reason("clé perdue"), Ok(()));
        assert_eq!(check_reason(""), Err(ReasonError::Empty));
        assert_eq!(check_reason(" \t "), Err(ReasonError::Empty));
        assert_eq!(
            check_reason(&"x".repeat(1025)),
            Err(ReasonError::TooLong(1025))
        );
        assert_eq!(check_reason(&"x".repeat(1024)), Ok(()));
        for c in [
            '\n', '\r', '\x1b', '\u{202e}', '\u{2028}', '\u{200b}', '\u{feff}',
        ] {
            let r = format!("lost{c}key");
            assert_eq!(check_reason(&r), Err(ReasonError::Character(c)), "{c:?}");
        }
    }
}

//! The MIT Kerberos backend: the afs principal in a real KDC database, driven through
//! `kadmin.local` (MIT krb5 1.20; no daemon needed), or through `kadmin` and kadmind over the
//! network when a server is configured ([`super::mit_remote`] says what changes then).
//!
//! How the entry is read:
//! - `getprinc -terse P`: the canonical name, the current kvno (9th field), the last
//!   password change (3rd) and the last modification (7th), the key data held.
//! - `ktadd -norandkey -k WRFILE:<tmp> P`: every key held, exported without changing
//!   anything into a keytab in a private temporary directory (mode 0700). The keytab is
//!   parsed by [`crate::format::keytab`], overwritten with zeros and deleted, on every path.
//!
//! How a new key is set: MIT has no command that takes raw key bytes, so the KDC derives
//! the keys itself from a passphrase with the principal's default salt:
//! `cpw -e aes256-cts-hmac-sha1-96:normal,aes128-cts-hmac-sha1-96:normal -keepold P`
//! (or `addprinc -e … P` the first time), the command in `-q` and only the two password
//! lines on stdin. Before touching the KDC the keys the caller gives are compared with the
//! ones the passphrase derives locally (RFC 3962), so a passphrase that does not match the
//! keys the servers already hold never reaches the KDC; after the change the entry is read
//! back and compared again.
//!
//! Facts about MIT 1.20 this relies on (verified on Debian 12, krb5 1.20.1):
//! - `kadmin.local` exits 0 when a query fails: success is a line on stdout
//!   (`Password for "P" changed.`, `Principal "P" created.`, `Principal "P" modified.`),
//!   failures are on stderr. Messages are translated, so the child runs with `LC_ALL=C`.
//! - Each `cpw` sets the kvno to the highest held + 1; `-keepold` keeps the older keys.
//! - `modprinc -kvno N` rewrites the kvno of *every* key held (old ones included) to N,
//!   so it cannot move an existing principal's kvno without mislabelling the keys kept
//!   by `-keepold`; a kvno other than current + 1 is refused for an existing principal.
//!   A new principal has no older keys: it is created with tickets disallowed, then moved
//!   to the requested kvno and allowed tickets in one `modprinc`.
//! - The password prompt reads at most 1022 bytes and silently truncates a longer line.
//! - The database keeps a key's kvno in 16 bits: above 65535 it wraps (refused here).

use super::getprinc::parse_terse;
pub use super::getprinc::{KeyData, PrincipalInfo};
pub use super::mit_remote::RemoteKdc;
use super::private::PrivateDir;
use super::ticket::TicketProof;
use super::{verify_entry, AfsEntry, AuthDb, AuthDbError, KeyMaterial, Purge};
use crate::crypto;
use crate::keys::{Enctype, Key, KeyType};
use chrono::{DateTime, Utc};
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Command;
use zeroize::Zeroizing;

/// The command run when the configuration names none.
pub const DEFAULT_KADMIN: &str = "kadmin.local";

/// The command run when the configuration names none and a kadmind server is configured.
pub const DEFAULT_REMOTE_KADMIN: &str = "kadmin";

/// The `-e` argument of every `cpw` / `addprinc`: the enctypes a rotation makes (18, 17),
/// with the principal's default salt.
pub const KEYSALT_LIST: &str = "aes256-cts-hmac-sha1-96:normal,aes128-cts-hmac-sha1-96:normal";

/// The longest passphrase MIT's password prompt reads whole (longer lines are truncated).
pub const MAX_PASSPHRASE_LEN: usize = 1022;

/// The highest kvno an MIT database stores: `key_data_kvno` is 16 bits, and
/// `modprinc -kvno 65536` reads back as 0 (a `cpw` past 65535 wraps too).
pub const MAX_KDC_KVNO: i32 = 65535;

/// Where a bare command name is looked for after `PATH` (kadmin.local lives in /usr/sbin,
/// which cron's PATH lacks).
const SBIN_DIRS: &[&str] = &["/usr/sbin", "/sbin", "/usr/local/sbin"];

/// The RFC 3962 iteration count MIT uses for aes*-cts-hmac-sha1-96 with no s2kparams.
const AES_ITERATIONS: u32 = 4096;

/// The afs entry in an MIT Kerberos database, through `kadmin.local`.
///
/// The child inherits this process's environment (`KRB5_CONFIG`, `KRB5_KDC_PROFILE`, …)
/// plus whatever [`KadminAuthDb::with_env`] adds, and always runs with `LC_ALL=C` so its
/// messages can be parsed.
#[derive(Debug, Clone)]
pub struct KadminAuthDb {
    principal: String,
    kadmin_cmd: String,
    args: Vec<String>,
    pub(super) env: Vec<(String, String)>,
    /// kadmind and how to log in to it, or how to get tickets (see [`RemoteKdc`]).
    pub(super) remote: Option<RemoteKdc>,
    /// How long one kadmin run may take before it is killed.
    pub(super) deadline: std::time::Duration,
}

/// What one kadmin.local run printed.
pub(super) struct Ran {
    pub(super) stdout: String,
    pub(super) stderr: String,
}

impl KadminAuthDb {
    /// The afs entry `principal` (`afs/<cell>@<REALM>`), edited with `kadmin_cmd`
    /// (normally [`DEFAULT_KADMIN`]; a bare name is looked up in `PATH`, then /usr/sbin and
    /// /sbin).
    pub fn new(principal: String, kadmin_cmd: String) -> KadminAuthDb {
        KadminAuthDb {
            principal,
            kadmin_cmd,
            args: Vec::new(),
            env: Vec::new(),
            remote: None,
            deadline: super::DEFAULT_DEADLINE,
        }
    }

    /// How long one kadmin (or kinit, kvno) run may take before it is killed with every
    /// process it started.
    pub fn with_deadline(mut self, deadline: std::time::Duration) -> KadminAuthDb {
        self.deadline = deadline;
        self
    }

    /// Reach the database through kadmind (when `remote.server` is set) and get tickets with
    /// the admin keytab for the ticket proof.
    pub fn with_remote(mut self, remote: RemoteKdc) -> KadminAuthDb {
        self.remote = Some(remote);
        self
    }

    /// True when queries go to kadmind over the network (no key bytes can be read).
    pub fn is_remote(&self) -> bool {
        self.remote.as_ref().is_some_and(|r| r.server.is_some())
    }

    /// Set an environment variable on every kadmin.local child (e.g. `KRB5_CONFIG`,
    /// `KRB5_KDC_PROFILE`), without touching this process's environment.
    pub fn with_env(mut self, key: impl Into<String>, value: impl Into<String>) -> KadminAuthDb {
        self.env.push((key.into(), value.into()));
        self
    }

    /// [`KadminAuthDb::with_env`] for several variables.
    pub fn with_envs<K, V>(mut self, vars: impl IntoIterator<Item = (K, V)>) -> KadminAuthDb
    where
        K: Into<String>,
        V: Into<String>,
    {
        self.env
            .extend(vars.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }

    /// Arguments put before `-q` on every run (e.g. `-r REALM`, `-d DBNAME`). Never a
    /// secret: they are visible in the process list. Not `-m` (prompting for the master key
    /// would read the first password line as the master key): the stash file is needed.
    pub fn with_args(mut self, args: Vec<String>) -> KadminAuthDb {
        self.args = args;
        self
    }

    pub fn principal(&self) -> &str {
        &self.principal
    }

    pub fn kadmin_cmd(&self) -> &str {
        &self.kadmin_cmd
    }

    /// `getprinc -terse`: the principal, or `None` when it does not exist.
    pub fn principal_info(&self) -> Result<Option<PrincipalInfo>, AuthDbError> {
        let p = checked_principal(&self.principal)?;
        let query = format!("getprinc -terse {p}");
        let ran = self.run(&query, None)?;
        match parse_terse(&ran.stdout) {
            Ok(Some(info)) => Ok(Some(info)),
            Ok(None) => {
                if ran.stderr.contains("Principal does not exist") {
                    Ok(None)
                } else {
                    Err(self.failed(&query, &ran, None))
                }
            }
            Err(e) => Err(AuthDbError::Backend(format!(
                "{}: cannot parse the output of `{query}`: {e}",
                self.describe()
            ))),
        }
    }

    /// The only kvno [`AuthDb::set`] can give the principal next: `Some(current + 1)`, or
    /// `None` when the principal does not exist yet (then any kvno from 1 up works).
    pub fn next_kvno(&self) -> Result<Option<i32>, AuthDbError> {
        Ok(self.principal_info()?.map(|i| i.kvno.saturating_add(1)))
    }

    /// The command line for one query: `<kadmin_cmd> <args…> -q <query>`, with the
    /// environment set. Secrets never go here (they go on stdin).
    fn command(&self, query: &str) -> Command {
        let mut c = Command::new(self.program());
        if let Some(r) = &self.remote {
            c.args(r.login_args());
        }
        c.args(&self.args).arg("-q").arg(query);
        c.env("LC_ALL", "C").env_remove("LANGUAGE");
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    /// The program to run: `kadmin_cmd` as given when it has a `/`, else found in `PATH`
    /// (the one given with `with_env`, if any) or in the sbin directories.
    fn program(&self) -> PathBuf {
        if self.kadmin_cmd.contains('/') {
            return PathBuf::from(&self.kadmin_cmd);
        }
        let path: Option<OsString> = self
            .env
            .iter()
            .rev()
            .find(|(k, _)| k == "PATH")
            .map(|(_, v)| OsString::from(v))
            .or_else(|| std::env::var_os("PATH"));
        let dirs = path
            .as_deref()
            .map(|p| std::env::split_paths(p).collect::<Vec<_>>())
            .unwrap_or_default();
        dirs.into_iter()
            .chain(SBIN_DIRS.iter().map(PathBuf::from))
            .map(|d| d.join(&self.kadmin_cmd))
            .find(|p| p.is_file())
            .unwrap_or_else(|| PathBuf::from(&self.kadmin_cmd))
    }

    /// Run one query. `stdin`: the password lines, or nothing (stdin is then /dev/null).
    /// A read-only query (`getprinc`) whose kadmin died by a signal is run once more: a remote
    /// kadmin was seen killed by a signal mid-`getprinc` under load in the test suite (cause
    /// not established), and reading again changes nothing. A change is never rerun.
    pub(super) fn run(&self, query: &str, stdin: Option<&[u8]>) -> Result<Ran, AuthDbError> {
        let (mut ran, mut status) = self.run_child(query, stdin)?;
        if status.code().is_none() && query.starts_with("getprinc ") {
            (ran, status) = self.run_child(query, stdin)?;
        }
        if !status.success() {
            let status = match status.code() {
                Some(c) => format!("exit {c}"),
                None => "killed by a signal".to_string(),
            };
            let mut e = self.failed(query, &ran, None);
            if let AuthDbError::Backend(m) = &mut e {
                m.push_str(&format!(" ({status})"));
            }
            return Err(e);
        }
        Ok(ran)
    }

    /// One run of kadmin: what it printed and how it ended, within the deadline.
    fn run_child(
        &self,
        query: &str,
        stdin: Option<&[u8]>,
    ) -> Result<(Ran, std::process::ExitStatus), AuthDbError> {
        if let Some(r) = self.remote.as_ref().filter(|r| r.server.is_some()) {
            r.check_keytab()?;
        }
        let c = self.command(query);
        let out = crate::child::run_command(c, stdin, self.deadline, crate::child::OUTPUT_CAP)
            .map_err(|e| match e {
                crate::child::ChildError::Spawn { source, .. } => {
                    let hint = if source.kind() == std::io::ErrorKind::NotFound {
                        " (install krb5-admin-server, or name the command with `kadmin` in \
                         [authdb])"
                    } else {
                        ""
                    };
                    AuthDbError::Backend(format!(
                        "cannot run {}: {source}{hint}",
                        self.program().display()
                    ))
                }
                e => AuthDbError::Backend(format!(
                    "no answer from kadmin for `{query}`: {e} (is kadmind, or the KDC it logs in \
                     through, reachable?)"
                )),
            })?;
        let ran = Ran {
            stdout: out.stdout,
            stderr: out.stderr,
        };
        Ok((ran, out.status))
    }

    /// A Backend error carrying kadmin's own message, withheld if it contains the
    /// passphrase (it never should: the passphrase only goes on stdin).
    pub(super) fn failed(&self, query: &str, ran: &Ran, passphrase: Option<&[u8]>) -> AuthDbError {
        let msg = kadmin_message(ran);
        let msg = match passphrase {
            Some(pw) if contains(msg.as_bytes(), pw) => {
                "(its message is withheld because it contains the passphrase)".to_string()
            }
            _ => msg,
        };
        AuthDbError::Backend(format!("{} `{query}` failed: {msg}", self.kadmin_cmd))
    }

    /// Every key of the current kvno, exported with `ktadd -norandkey` (changes nothing).
    fn current_keys(&self, info: &PrincipalInfo) -> Result<Vec<Key>, AuthDbError> {
        let p = checked_principal(&self.principal)?;
        if info.keys.is_empty() {
            return Ok(Vec::new()); // `addprinc -nokey`: nothing to export
        }
        let tmp = PrivateDir::new(
            "afskeys-kadmin-",
            "cannot make a private directory for the exported keytab",
        )?;
        let (kt, kt_str) = tmp.file("afs.keytab")?;
        let query = format!("ktadd -norandkey -k WRFILE:{kt_str} {p}");
        let ran = self.run(&query, None)?;
        let bytes = tmp.read(&kt, "cannot read the exported keytab")?;
        let Some(bytes) = bytes else {
            return Err(self.failed(&query, &ran, None));
        };
        let entries = crate::format::keytab::parse(&bytes).map_err(|e| {
            AuthDbError::Backend(format!(
                "{}: the keytab `ktadd -norandkey` wrote is unreadable: {e}",
                self.describe()
            ))
        })?;
        drop(tmp);
        let mut keys: Vec<Key> = Vec::new();
        for e in entries {
            if e.principal() != info.principal {
                return Err(AuthDbError::Backend(format!(
                    "{}: `ktadd -norandkey` exported keys of {:?}, not of {:?}",
                    self.describe(),
                    e.principal(),
                    info.principal
                )));
            }
            let kvno = i32::try_from(e.kvno).map_err(|_| {
                AuthDbError::Backend(format!(
                    "{}: kvno {} is out of range",
                    self.describe(),
                    e.kvno
                ))
            })?;
            if kvno > info.kvno {
                return Err(AuthDbError::Backend(format!(
                    "{}: the principal changed while it was read (kvno {kvno} appeared after \
                     getprinc said {}); try again",
                    self.describe(),
                    info.kvno
                )));
            }
            let enctype = i32::from(e.enctype);
            if kvno != info.kvno || Enctype(enctype).is_single_des() {
                continue;
            }
            // modprinc -kvno can leave two keys of one enctype at one kvno; the first is
            // the newest, the one the KDC seals tickets with.
            if keys.iter().any(|k| k.id.subtype == enctype) {
                continue;
            }
            keys.push(super::kdc_key(&self.describe(), kvno, enctype, e.key)?);
        }
        Ok(keys)
    }

    /// Check what `set` was given before anything runs.
    fn check_set_input(
        &self,
        kvno: i32,
        keys: &[Key],
        passphrase: Option<&[u8]>,
    ) -> Result<(), AuthDbError> {
        let Some(pw) = passphrase else {
            return Err(AuthDbError::Refused(format!(
                "{}: a KDC takes a new key only as a passphrase (it derives the keys itself); \
                 none was given",
                self.describe()
            )));
        };
        check_passphrase(pw)?;
        if kvno < 1 {
            return Err(AuthDbError::Refused(format!(
                "kvno {kvno}: a Kerberos kvno starts at 1"
            )));
        }
        if kvno > MAX_KDC_KVNO {
            return Err(AuthDbError::Refused(format!(
                "kvno {kvno}: an MIT Kerberos database stores kvnos in 16 bits (at most \
                 {MAX_KDC_KVNO})"
            )));
        }
        if keys.is_empty() {
            return Err(AuthDbError::Refused(format!(
                "no keys at kvno {kvno} to set"
            )));
        }
        for k in keys {
            if k.key_type() != KeyType::RxkadKrb5
                || k.kvno() != kvno
                || !Enctype(k.id.subtype).is_rfc3962()
            {
                return Err(AuthDbError::Refused(format!(
                    "{}: {} cannot be set: the KDC makes rxkad_krb5 keys of enctypes 18 and 17 \
                     at kvno {kvno}",
                    self.describe(),
                    k.id
                )));
            }
        }
        Ok(())
    }

    /// The keys `passphrase` derives for `principal` (default salt) must be `keys`.
    fn check_derivation(
        &self,
        principal: &str,
        kvno: i32,
        keys: &[Key],
        passphrase: &[u8],
    ) -> Result<(), AuthDbError> {
        let salt = Zeroizing::new(crypto::default_salt(principal).map_err(|e| {
            AuthDbError::Refused(format!(
                "{e}; give the afs principal with its realm (afs/<cell>@<REALM>)"
            ))
        })?);
        for k in keys {
            let len = Enctype(k.id.subtype).key_len().unwrap_or(0);
            let derived = crypto::aes_string_to_key(passphrase, &salt, AES_ITERATIONS, len);
            if derived.as_slice() != k.bytes() {
                return Err(AuthDbError::Mismatch(format!(
                    "{principal}: the key given for {} is not the one the passphrase derives \
                     with the principal's default salt; the KDC was not changed (setting it \
                     would seal new tokens with a key the servers do not have at kvno {kvno})",
                    k.id
                )));
            }
        }
        Ok(())
    }

    /// Run a password-taking query with the two password lines on stdin and expect the
    /// success line `<prefix>"P"<suffix>`.
    fn run_with_password(
        &self,
        query: &str,
        passphrase: &[u8],
        prefix: &str,
        suffix: &str,
    ) -> Result<(), AuthDbError> {
        let mut input = Zeroizing::new(Vec::with_capacity(2 * passphrase.len() + 2));
        input.extend_from_slice(passphrase);
        input.push(b'\n');
        input.extend_from_slice(passphrase);
        input.push(b'\n');
        let ran = self
            .run(query, Some(&input))
            .map_err(|e| scrub(e, passphrase))?;
        if success_line(&ran.stdout, prefix, suffix) {
            Ok(())
        } else {
            Err(self.failed(query, &ran, Some(passphrase)))
        }
    }

    fn run_expect(&self, query: &str, prefix: &str, suffix: &str) -> Result<(), AuthDbError> {
        let ran = self.run(query, None)?;
        if success_line(&ran.stdout, prefix, suffix) {
            Ok(())
        } else {
            Err(self.failed(query, &ran, None))
        }
    }
}

impl AuthDb for KadminAuthDb {
    fn describe(&self) -> String {
        match self.remote.as_ref().and_then(|r| r.server.as_deref()) {
            Some(server) => format!(
                "kadmin {} ({} -s {server})",
                self.principal, self.kadmin_cmd
            ),
            None => format!("kadmin {} ({})", self.principal, self.kadmin_cmd),
        }
    }

    fn next_kvno(&self) -> Result<Option<i32>, AuthDbError> {
        KadminAuthDb::next_kvno(self)
    }

    fn get(&self) -> Result<Option<AfsEntry>, AuthDbError> {
        let Some(info) = self.principal_info()? else {
            return Ok(None);
        };
        // Over kadmind the key bytes cannot be read (extract-keys is not granted, and nothing
        // may depend on it): the ticket proof confirms them instead.
        let keys = if self.is_remote() {
            Vec::new()
        } else {
            self.current_keys(&info)?
        };
        Ok(Some(info.entry(keys, !self.is_remote())))
    }

    fn prove_tickets(
        &self,
        servers: &[(&str, &[Key])],
    ) -> Result<Option<TicketProof>, AuthDbError> {
        self.ticket_proof(servers).map(Some)
    }

    fn purge_below(&self, keep_from: i32) -> Result<Purge, AuthDbError> {
        self.purge_keys(keep_from)
    }

    fn key_material(&self) -> KeyMaterial {
        KeyMaterial::Passphrase {
            principal: self.principal.clone(),
        }
    }

    fn set(
        &self,
        kvno: i32,
        keys: &[Key],
        passphrase: Option<&[u8]>,
        _now: DateTime<Utc>,
    ) -> Result<AfsEntry, AuthDbError> {
        self.check_set_input(kvno, keys, passphrase)?;
        let pw = passphrase.unwrap_or_default();
        let p = checked_principal(&self.principal)?;
        let cur = self.principal_info()?;
        if let Some(c) = &cur {
            check_next_kvno(c, kvno)?;
        }
        let salt_principal = cur
            .as_ref()
            .map(|c| c.principal.clone())
            .unwrap_or_else(|| self.principal.clone());
        self.check_derivation(&salt_principal, kvno, keys, pw)?;

        match &cur {
            Some(_) => {
                let q = format!("cpw -e {KEYSALT_LIST} -keepold {p}");
                self.run_with_password(&q, pw, "Password for \"", "\" changed.")?;
            }
            None if kvno == 1 => {
                let q = format!("addprinc -e {KEYSALT_LIST} {p}");
                self.run_with_password(&q, pw, "Principal \"", "\" created.")?;
            }
            None => {
                // Created with tickets disallowed, so the KDC never issues one at kvno 1,
                // then moved to `kvno` and allowed tickets in one modprinc.
                let q = format!("addprinc -allow_tix -e {KEYSALT_LIST} {p}");
                self.run_with_password(&q, pw, "Principal \"", "\" created.")?;
                let q = format!("modprinc -kvno {kvno} +allow_tix {p}");
                self.run_expect(&q, "Principal \"", "\" modified.")
                    .map_err(|e| {
                        AuthDbError::Backend(format!(
                            "{e}; {p} now exists at kvno 1 with tickets disallowed: run \
                             `{q}` or delete it"
                        ))
                    })?;
            }
        }

        if self.is_remote() {
            return self.confirm_remote(kvno, keys);
        }
        let back = self.get()?.ok_or_else(|| {
            AuthDbError::Mismatch(format!(
                "{p}: the principal is missing after {} it",
                if cur.is_some() {
                    "changing"
                } else {
                    "creating"
                }
            ))
        })?;
        verify_entry(&back, kvno, keys).map_err(|e| match e {
            AuthDbError::Mismatch(m) => AuthDbError::Mismatch(format!(
                "{m}; the KDC was changed and now seals new tokens at kvno {} with keys that \
                 differ from the ones given",
                back.kvno
            )),
            other => other,
        })?;
        Ok(back)
    }
}

impl KadminAuthDb {
    /// `purgekeys -keepkvno N P`, then `getprinc` to see what the KDC holds now.
    fn purge_keys(&self, keep_from: i32) -> Result<Purge, AuthDbError> {
        let p = checked_principal(&self.principal)?;
        let Some(cur) = self.principal_info()? else {
            return Err(AuthDbError::Backend(format!("{p}: no such principal")));
        };
        if keep_from > cur.kvno {
            return Err(AuthDbError::Refused(format!(
                "{p}: purging below kvno {keep_from} would take the current kvno {}",
                cur.kvno
            )));
        }
        let q = format!("purgekeys -keepkvno {keep_from} {p}");
        let ran = self.run(&q, None)?;
        let back = self
            .principal_info()?
            .ok_or_else(|| AuthDbError::Mismatch(format!("{p}: missing after `{q}`")))?;
        let held = back.kvnos_held();
        if held.iter().any(|k| *k < keep_from) {
            return Err(self.failed(&q, &ran, None));
        }
        Ok(Purge::Done(held))
    }
}

/// An existing principal takes exactly its current kvno + 1 (each cpw adds one).
fn check_next_kvno(c: &PrincipalInfo, kvno: i32) -> Result<(), AuthDbError> {
    if kvno <= c.kvno {
        return Err(AuthDbError::Refused(format!(
            "{} is at kvno {}; a new key needs a higher kvno than {kvno}",
            c.principal, c.kvno
        )));
    }
    if kvno != c.kvno + 1 {
        return Err(AuthDbError::Refused(format!(
            "{} is at kvno {}, so the KDC's next kvno is {}, not {kvno}: each cpw adds \
             one, and MIT's `modprinc -kvno` would relabel every key kept by -keepold; \
             choose kvno {} (servers first)",
            c.principal,
            c.kvno,
            c.kvno + 1,
            c.kvno + 1
        )));
    }
    Ok(())
}

/// The principal as it goes into a query: one token kadmin's parser keeps whole.
pub(super) fn checked_principal(p: &str) -> Result<&str, AuthDbError> {
    let bad = p.is_empty()
        || p.starts_with('-')
        || p.chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '"' | '\'' | '\\'));
    if bad {
        return Err(AuthDbError::Backend(format!(
            "principal {p:?}: afskeys passes only plain names (no spaces, quotes, backslashes \
             or leading '-') to kadmin.local"
        )));
    }
    Ok(p)
}

/// A passphrase kadmin.local reads whole from one line. Never quoted in the message.
fn check_passphrase(pw: &[u8]) -> Result<(), AuthDbError> {
    let problem = if pw.is_empty() {
        Some("is empty".to_string())
    } else if pw.iter().any(|&b| b == b'\n' || b == b'\r' || b == 0) {
        Some("contains a newline, carriage return or NUL byte".to_string())
    } else if pw.len() > MAX_PASSPHRASE_LEN {
        Some(format!(
            "is {} bytes; kadmin.local reads at most {MAX_PASSPHRASE_LEN} and would truncate it",
            pw.len()
        ))
    } else {
        None
    };
    match problem {
        Some(p) => Err(AuthDbError::Refused(format!("the passphrase {p}"))),
        None => Ok(()),
    }
}

/// Replace any error whose text contains the passphrase.
fn scrub(e: AuthDbError, pw: &[u8]) -> AuthDbError {
    if contains(e.to_string().as_bytes(), pw) {
        AuthDbError::Backend(
            "kadmin.local failed (its message is withheld because it contains the passphrase)"
                .into(),
        )
    } else {
        e
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// True when stdout has a line `<prefix><name><suffix>`.
fn success_line(stdout: &str, prefix: &str, suffix: &str) -> bool {
    stdout.lines().any(|l| {
        let l = l.trim_end();
        l.len() > prefix.len() + suffix.len() && l.starts_with(prefix) && l.ends_with(suffix)
    })
}

/// kadmin's own message: stderr without its harmless notices, else stdout's last line.
fn kadmin_message(ran: &Ran) -> String {
    let lines: Vec<&str> = ran
        .stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("No policy specified for"))
        .collect();
    if !lines.is_empty() {
        return lines.join("; ");
    }
    ran.stdout
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty() && !l.starts_with("Authenticating as principal"))
        .map(str::to_string)
        .unwrap_or_else(|| "no message, no success line".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::KeyId;

    #[test]
    fn argv_never_holds_the_secret_and_queries_are_exact() {
        let db = KadminAuthDb::new("afs/x.org@X.ORG".into(), "/bin/kadmin.local".into())
            .with_env("KRB5_CONFIG", "/tmp/k")
            .with_args(vec!["-r".into(), "X.ORG".into()]);
        let q = format!("cpw -e {KEYSALT_LIST} -keepold afs/x.org@X.ORG");
        let c = db.command(&q);
        let args: Vec<_> = c.get_args().map(|a| a.to_str().unwrap()).collect();
        assert_eq!(
            args,
            [
                "-r",
                "X.ORG",
                "-q",
                "cpw -e aes256-cts-hmac-sha1-96:normal,aes128-cts-hmac-sha1-96:normal -keepold afs/x.org@X.ORG"
            ]
        );
        assert_eq!(c.get_program(), "/bin/kadmin.local");
        let envs: Vec<_> = c.get_envs().collect();
        assert!(envs.contains(&("LC_ALL".as_ref(), Some("C".as_ref()))));
        assert!(envs.contains(&("KRB5_CONFIG".as_ref(), Some("/tmp/k".as_ref()))));
    }

    #[test]
    fn inputs_are_checked_before_anything_runs() {
        // A command that does not exist: any attempt to run it would fail differently.
        let db = KadminAuthDb::new("afs/x.org@X.ORG".into(), "/nonexistent/kadmin".into());
        let key = |kvno, e: i32, len| {
            Key::new(
                KeyId {
                    key_type: KeyType::RxkadKrb5,
                    kvno,
                    subtype: e,
                },
                Zeroizing::new(vec![1; len]),
            )
        };
        let ks = [key(2, 18, 32)];
        let now = Utc::now();
        let refused = |r: Result<AfsEntry, AuthDbError>| match r {
            Err(AuthDbError::Refused(m)) => m,
            other => panic!("{other:?}"),
        };
        assert!(refused(db.set(2, &ks, None, now)).contains("passphrase"));
        let m = refused(db.set(2, &ks, Some(b"sec\nret"), now));
        assert!(m.contains("newline") && !m.contains("sec"), "{m}");
        assert!(refused(db.set(2, &ks, Some(b""), now)).contains("empty"));
        let long = vec![b'a'; MAX_PASSPHRASE_LEN + 1];
        assert!(refused(db.set(2, &ks, Some(&long), now)).contains("truncate"));
        assert!(refused(db.set(2, &[], Some(b"pw"), now)).contains("no keys"));
        assert!(refused(db.set(3, &ks, Some(b"pw"), now)).contains("kvno 2"));
        assert!(refused(db.set(2, &[key(2, 20, 32)], Some(b"pw"), now)).contains("18 and 17"));
        assert!(refused(db.set(0, &[key(0, 18, 32)], Some(b"pw"), now)).contains("starts at 1"));
        let big = [key(65536, 18, 32)];
        assert!(refused(db.set(65536, &big, Some(b"pw"), now)).contains("16 bits"));
        // Valid input reaches the command, which is missing: a Backend error naming it.
        match db.get() {
            Err(AuthDbError::Backend(m)) => assert!(m.contains("/nonexistent/kadmin"), "{m}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            db.key_material(),
            KeyMaterial::Passphrase {
                principal: "afs/x.org@X.ORG".into()
            }
        );
    }

    #[test]
    fn odd_principals_are_refused() {
        for p in ["", "-randkey", "afs/a b@R", "afs\"@R", "a\\/b@R", "a\n@R"] {
            assert!(checked_principal(p).is_err(), "{p:?}");
        }
        assert!(checked_principal("afs/example.com@EXAMPLE.COM").is_ok());
    }

    #[test]
    fn messages_and_success_lines() {
        let ran = Ran {
            stdout: "Authenticating as principal root/admin@R with password.\nEnter password for principal \"afs@R\": \n".into(),
            stderr: "No policy specified for afs@R; defaulting to no policy\nchange_password: Password mismatch while reading password for \"afs@R\".\n".into(),
        };
        assert_eq!(
            kadmin_message(&ran),
            "change_password: Password mismatch while reading password for \"afs@R\"."
        );
        assert!(!success_line(&ran.stdout, "Password for \"", "\" changed."));
        assert!(success_line(
            "x\nPassword for \"afs@R\" changed.\n",
            "Password for \"",
            "\" changed."
        ));
        let db = KadminAuthDb::new("afs@R".into(), "kadmin.local".into());
        let leak = Ran {
            stdout: String::new(),
            stderr: "kadmin.local: Unknown request \"hunter22\".\n".into(),
        };
        let e = db.failed("cpw afs@R", &leak, Some(b"hunter22")).to_string();
        assert!(!e.contains("hunter22") && e.contains("withheld"), "{e}");
    }

    #[test]
    fn single_des_is_left_out() {
        for e in [1, 2, 3, 4, 8] {
            assert!(Enctype(e).is_single_des());
        }
        for e in [16, 17, 18, 19, 20, 23] {
            assert!(!Enctype(e).is_single_des());
        }
    }
}

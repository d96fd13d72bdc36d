//! The Heimdal backend (`[authdb] backend = "heimdal"`): the afs principal in a Heimdal KDC
//! database, driven through Heimdal's `kadmin` (Debian: `kadmin.heimdal`) — `kadmin -l` on
//! the KDC itself, or kadmind over the network (`-a SERVER -p ADMIN -K ADMIN_KEYTAB`).
//!
//! How the entry is read: `get P` (kvno, max ticket life, each key's enctype and kvno; parsed
//! by [`super::heimdal_get`]). Locally the key bytes of the current kvno are exported with
//! `ext_keytab -k FILE:<tmp> P` (changes nothing) into a private directory, parsed, zeroed and
//! removed; over kadmind no key bytes are read (nothing depends on the get-keys privilege):
//! the ticket proof confirms them.
//!
//! How a new key is set: `cpw --keepold P` (or `add --use-defaults P` the first time), the
//! command on argv and only the two passphrase lines on stdin. Heimdal's kadmin prompts on the
//! controlling terminal when it has one, so the child runs in a new session (`setsid`, no
//! controlling terminal) and reads the lines from stdin. `--password=` would put the
//! passphrase on argv: never used. Verified with Heimdal 7.8 (Debian 12): `cpw` exits 0 even
//! when it changed nothing (the two lines differ, or a line is 128 bytes or more: the prompt
//! reads into a 128-byte buffer), so every change is confirmed by reading the entry back.
//!
//! Which enctypes (issue 12 item 3, the KDC and the servers hold the same enctypes at the
//! afs entry's kvno): Heimdal's `cpw` has no enctype option; new keys get the enctypes of
//! `[kadmin] default_keys` (Debian's default adds des3-cbc-sha1 and arcfour-hmac-md5 beside
//! aes256). afskeys makes the KDC make **only the enctypes it places** (aes256 and aes128,
//! RFC 3962 from the passphrase with the default "pw-salt"), rather than placing every
//! enctype the KDC makes: afskeys cannot derive des3 or arcfour keys, the ticket proof cannot
//! open arcfour, and a weaker key kept beside aes256 only waits for an enctype policy change
//! to start sealing tickets. Locally every kadmin child runs with `KRB5_CONFIG` prefixed by a
//! private file holding `[kadmin] default_keys = aes256-cts-hmac-sha1-96:pw-salt
//! aes128-cts-hmac-sha1-96:pw-salt` (Heimdal reads the first value of a key it finds, so the
//! prefix wins). Over kadmind the KDC's own `[kadmin] default_keys` decides; it must say the
//! same. Either way, after each change the enctypes the KDC holds at the new kvno must be
//! exactly those given, else the change is reported as a mismatch. `del_enctype` is not used:
//! it removes an enctype from every kvno the principal holds, the retiring key's included
//! (verified: `del_enctype P aes128-cts-hmac-sha1-96` took it from kvnos 5 and 6 too).
//! Single DES is never made.

use super::getprinc::PrincipalInfo;
use super::heimdal_get::parse_get;
use super::mit_remote::{self, broken, RemoteKdc};
use super::private::PrivateDir;
use super::ticket::{TicketClient, TicketProof};
use super::{verify_entry, AfsEntry, AuthDb, AuthDbError, KeyMaterial, Purge};
use crate::crypto;
use crate::keys::{Enctype, Key, KeyType};
use chrono::{DateTime, Utc};
use std::os::unix::process::CommandExt;
use std::process::Command;
use zeroize::Zeroizing;

/// The command run when the configuration names none (Debian's name for Heimdal's kadmin).
pub const DEFAULT_HEIMDAL_KADMIN: &str = "kadmin.heimdal";

/// The `[kadmin] default_keys` every local kadmin child sees first: the enctypes afskeys
/// places (aes256 and aes128 with the principal's default salt).
pub const DEFAULT_KEYS: &str = "aes256-cts-hmac-sha1-96:pw-salt aes128-cts-hmac-sha1-96:pw-salt";

/// The longest passphrase Heimdal's password prompt reads whole (a 128-byte buffer with its
/// NUL; a longer line leaves the principal unchanged, and kadmin still exits 0).
pub const MAX_PASSPHRASE_LEN: usize = 127;

/// The RFC 3962 iteration count for aes*-cts-hmac-sha1-96 with no s2kparams.
const AES_ITERATIONS: u32 = 4096;

/// The afs entry in a Heimdal KDC database.
#[derive(Debug, Clone)]
pub struct HeimdalAuthDb {
    principal: String,
    kadmin_cmd: String,
    env: Vec<(String, String)>,
    /// kadmind and the admin identity (login and tickets); `server: None` = `kadmin -l`.
    remote: Option<RemoteKdc>,
    /// How long one kadmin run may take before it is killed.
    deadline: std::time::Duration,
}

/// What one kadmin run printed, and whether it exited 0.
struct Ran {
    stdout: String,
    stderr: String,
    ok: bool,
}

impl HeimdalAuthDb {
    /// The afs entry `principal`, edited with `kadmin_cmd` (normally
    /// [`DEFAULT_HEIMDAL_KADMIN`], looked up in `PATH`).
    pub fn new(principal: String, kadmin_cmd: String) -> HeimdalAuthDb {
        HeimdalAuthDb {
            principal,
            kadmin_cmd,
            env: Vec::new(),
            remote: None,
            deadline: super::DEFAULT_DEADLINE,
        }
    }

    /// How long one kadmin (or kinit, kvno) run may take before it is killed with every
    /// process it started.
    pub fn with_deadline(mut self, deadline: std::time::Duration) -> HeimdalAuthDb {
        self.deadline = deadline;
        self
    }

    /// Reach the database through kadmind (when `remote.server` is set) and get tickets with
    /// the admin keytab for the ticket proof.
    pub fn with_remote(mut self, remote: RemoteKdc) -> HeimdalAuthDb {
        self.remote = Some(remote);
        self
    }

    /// Environment variables for every child (e.g. `KRB5_CONFIG`), beside this process's.
    pub fn with_envs<K, V>(mut self, vars: impl IntoIterator<Item = (K, V)>) -> HeimdalAuthDb
    where
        K: Into<String>,
        V: Into<String>,
    {
        self.env
            .extend(vars.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }

    /// True when queries go to kadmind over the network (no key bytes are read).
    pub fn is_remote(&self) -> bool {
        self.remote.as_ref().is_some_and(|r| r.server.is_some())
    }

    pub fn principal(&self) -> &str {
        &self.principal
    }

    /// The arguments before the command: `-l`, or the kadmind login. Never a secret.
    fn login_args(&self) -> Vec<String> {
        match self
            .remote
            .as_ref()
            .and_then(|r| r.server.as_ref().map(|s| (r, s)))
        {
            None => vec!["-l".into()],
            Some((r, server)) => vec![
                "-a".into(),
                server.clone(),
                "-p".into(),
                r.admin_principal.clone(),
                "-K".into(),
                r.admin_keytab.to_string_lossy().into_owned(),
            ],
        }
    }

    /// `KRB5_CONFIG` for a local child: the private default_keys file first.
    fn config_path(&self, private: &str) -> String {
        let outer = self
            .env
            .iter()
            .rev()
            .find(|(k, _)| k == "KRB5_CONFIG")
            .map(|(_, v)| v.clone())
            .or_else(|| std::env::var("KRB5_CONFIG").ok())
            .unwrap_or_else(|| "/etc/krb5.conf".into());
        format!("{private}:{outer}")
    }

    /// The command for `words` (e.g. `["cpw", "--keepold", P]`), in a new session.
    fn command(&self, words: &[&str], private_config: Option<&str>) -> Command {
        let mut c = Command::new(&self.kadmin_cmd);
        c.args(self.login_args()).args(words);
        c.env("LC_ALL", "C").env_remove("LANGUAGE");
        for (k, v) in &self.env {
            c.env(k, v);
        }
        if let Some(p) = private_config {
            c.env("KRB5_CONFIG", self.config_path(p));
        }
        // SAFETY: setsid(2) is async-signal-safe; it only detaches the child from the
        // controlling terminal so kadmin reads the passphrase from stdin, never a tty.
        unsafe {
            c.pre_exec(|| {
                libc::setsid();
                Ok(())
            });
        }
        c
    }

    /// Run one command; `stdin`: the passphrase lines, or nothing (/dev/null).
    fn run(&self, words: &[&str], stdin: Option<&[u8]>) -> Result<Ran, AuthDbError> {
        let dir = PrivateDir::new(
            "afskeys-heimdal-",
            "cannot make a private directory for kadmin's configuration",
        )?;
        let private = if self.is_remote() {
            None
        } else {
            let (path, s) = dir.file("default_keys.conf")?;
            std::fs::write(
                &path,
                format!("[kadmin]\n\tdefault_keys = {DEFAULT_KEYS}\n"),
            )
            .map_err(|source| AuthDbError::Io {
                path,
                op: "cannot write kadmin's private configuration",
                source,
            })?;
            Some(s)
        };
        if let Some(r) = self.remote.as_ref().filter(|r| r.server.is_some()) {
            r.check_keytab()?;
        }
        let c = self.command(words, private.as_deref());
        let out = crate::child::run_command(c, stdin, self.deadline, crate::child::OUTPUT_CAP)
            .map_err(|e| match e {
                crate::child::ChildError::Spawn { source, .. } => AuthDbError::Backend(format!(
                    "cannot run {}: {source} (unpack Heimdal's kadmin, or name it with \
                     `kadmin` in [authdb])",
                    self.kadmin_cmd
                )),
                e => AuthDbError::Backend(format!(
                    "no answer from Heimdal's kadmin for `{}`: {e} (is kadmind, or the KDC it \
                     logs in through, reachable?)",
                    words.join(" ")
                )),
            })?;
        Ok(Ran {
            ok: out.status.success(),
            stdout: out.stdout,
            stderr: out.stderr,
        })
    }

    /// A Backend error with kadmin's own message (its prompts left out; withheld if it
    /// holds the passphrase, which only ever goes on stdin).
    fn failed(&self, words: &[&str], ran: &Ran, pw: Option<&[u8]>) -> AuthDbError {
        let msg: Vec<&str> = ran
            .stderr
            .lines()
            .chain(ran.stdout.lines())
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.ends_with("Password:"))
            .collect();
        let mut msg = msg.join("; ");
        if msg.is_empty() {
            msg = "no message".into();
        }
        if pw.is_some_and(|pw| !pw.is_empty() && msg.as_bytes().windows(pw.len()).any(|w| w == pw))
        {
            msg = "(its message is withheld because it contains the passphrase)".into();
        }
        let query = words.join(" ");
        AuthDbError::Backend(format!("{} `{query}` failed: {msg}", self.kadmin_cmd))
    }

    /// `get P`: the principal, or `None` when it does not exist.
    pub fn principal_info(&self) -> Result<Option<PrincipalInfo>, AuthDbError> {
        let p = checked(&self.principal)?;
        let words = ["get", p];
        let ran = self.run(&words, None)?;
        if !ran.ok {
            if ran.stderr.contains("Principal does not exist") {
                return Ok(None);
            }
            return Err(self.failed(&words, &ran, None));
        }
        parse_get(&ran.stdout).map(Some).map_err(|e| {
            AuthDbError::Backend(format!(
                "{}: cannot parse the output of `get {p}`: {e}",
                self.describe()
            ))
        })
    }

    /// The key bytes of the current kvno (`ext_keytab`, local only; changes nothing).
    fn current_keys(&self, info: &PrincipalInfo) -> Result<Vec<Key>, AuthDbError> {
        let p = checked(&self.principal)?;
        let tmp = PrivateDir::new(
            "afskeys-heimdal-kt-",
            "cannot make a private directory for the exported keytab",
        )?;
        let (kt, kt_str) = tmp.file("afs.keytab")?;
        let target = format!("FILE:{kt_str}");
        let words = ["ext_keytab", "-k", &target, p];
        let ran = self.run(&words, None)?;
        let bytes = tmp.read(&kt, "cannot read the exported keytab")?;
        let Some(bytes) = bytes.filter(|_| ran.ok) else {
            return Err(self.failed(&words, &ran, None));
        };
        let entries = crate::format::keytab::parse(&bytes).map_err(|e| {
            AuthDbError::Backend(format!(
                "{}: the keytab `ext_keytab` wrote is unreadable: {e}",
                self.describe()
            ))
        })?;
        let mut keys: Vec<Key> = Vec::new();
        for e in entries {
            let enctype = i32::from(e.enctype);
            let at_kvno = i64::from(e.kvno) == i64::from(info.kvno);
            if !at_kvno
                || Enctype(enctype).is_single_des()
                || keys.iter().any(|k| k.id.subtype == enctype)
            {
                continue;
            }
            keys.push(super::kdc_key(&self.describe(), info.kvno, enctype, e.key)?);
        }
        Ok(keys)
    }

    /// How this backend gets tickets; an error when no admin keytab is configured.
    pub fn ticket_client(&self) -> Result<TicketClient, AuthDbError> {
        mit_remote::client_of(self.remote.as_ref(), &self.env, self.deadline, checked)
    }

    /// The ticket proof (`mit_remote::ticket_proof`).
    pub fn ticket_proof(&self, servers: &[(&str, &[Key])]) -> Result<TicketProof, AuthDbError> {
        let client = self.ticket_client()?;
        mit_remote::ticket_proof(&client, &self.existing()?, checked, servers)
    }

    fn existing(&self) -> Result<PrincipalInfo, AuthDbError> {
        mit_remote::existing(self.principal_info()?, &self.principal)
    }

    /// Run a passphrase-taking command: the two lines on stdin, nothing on argv.
    fn run_with_password(&self, words: &[&str], pw: &[u8]) -> Result<(), AuthDbError> {
        let mut input = Zeroizing::new(Vec::with_capacity(2 * pw.len() + 2));
        for _ in 0..2 {
            input.extend_from_slice(pw);
            input.push(b'\n');
        }
        let ran = self.run(words, Some(&input))?;
        if ran.ok {
            Ok(())
        } else {
            Err(self.failed(words, &ran, Some(pw)))
        }
    }

    fn run_plain(&self, words: &[&str]) -> Result<(), AuthDbError> {
        let ran = self.run(words, None)?;
        if ran.ok {
            Ok(())
        } else {
            Err(self.failed(words, &ran, None))
        }
    }

    /// Create the principal at `kvno`: with tickets disallowed, so the KDC never issues one
    /// at kvno 1 when another kvno was asked for, then moved and allowed tickets at once.
    fn create(&self, p: &str, kvno: i32, pw: &[u8]) -> Result<(), AuthDbError> {
        if kvno == 1 {
            return self.run_with_password(&["add", "--use-defaults", p], pw);
        }
        let add = ["add", "--use-defaults", "--attributes=disallow-all-tix", p];
        self.run_with_password(&add, pw)?;
        let k = format!("--kvno={kvno}");
        let modify = ["modify", &k, "--attributes=-disallow-all-tix", p];
        self.run_plain(&modify).map_err(|e| {
            AuthDbError::Backend(format!(
                "{e}; {p} now exists at kvno 1 with tickets disallowed: run `{}` or delete it",
                modify.join(" ")
            ))
        })
    }

    /// After a change: the entry is at `kvno` and holds exactly the enctypes of `keys` there;
    /// locally its key bytes are `keys`, over kadmind the KDC's ticket opens with them.
    fn confirm(&self, kvno: i32, keys: &[Key]) -> Result<AfsEntry, AuthDbError> {
        let info = self.existing()?;
        let p = info.principal.clone();
        let mut held = info.enctypes_at(kvno);
        let mut given: Vec<i32> = keys.iter().map(|k| k.id.subtype).collect();
        held.sort_unstable();
        given.sort_unstable();
        if info.kvno == kvno - 1 {
            return Err(AuthDbError::Backend(format!(
                "{p}: Heimdal's kadmin exited 0 but left the principal at kvno {}: the KDC was \
                 not changed (try `kadmin cpw` by hand to see why)",
                info.kvno
            )));
        }
        if info.kvno != kvno {
            return Err(broken(format!(
                "{p}: kvno is {} after setting {kvno}",
                info.kvno
            )));
        }
        if held != given {
            return Err(broken(format!(
                "{p}: the KDC holds enctypes {held:?} at kvno {kvno}, afskeys placed {given:?} \
                 (set the KDC's [kadmin] default_keys to {DEFAULT_KEYS})"
            )));
        }
        if !self.is_remote() {
            let back = info.entry(self.current_keys(&info)?, true);
            verify_entry(&back, kvno, keys).map_err(|e| broken(e.to_string()))?;
            return Ok(back);
        }
        mit_remote::ticket_opens(&self.ticket_client()?, checked(&p)?, kvno, keys)?;
        Ok(info.entry(keys.to_vec(), false))
    }
}

impl AuthDb for HeimdalAuthDb {
    fn describe(&self) -> String {
        match self.remote.as_ref().and_then(|r| r.server.as_deref()) {
            Some(s) => format!("heimdal {} ({} -a {s})", self.principal, self.kadmin_cmd),
            None => format!("heimdal {} ({} -l)", self.principal, self.kadmin_cmd),
        }
    }

    fn get(&self) -> Result<Option<AfsEntry>, AuthDbError> {
        let Some(info) = self.principal_info()? else {
            return Ok(None);
        };
        let keys = if self.is_remote() {
            Vec::new()
        } else {
            self.current_keys(&info)?
        };
        Ok(Some(info.entry(keys, !self.is_remote())))
    }

    fn purge_below(&self, keep_from: i32) -> Result<Purge, AuthDbError> {
        let _ = keep_from;
        Ok(Purge::Cannot(
            "Heimdal 7.8's kadmin cannot drop some kvnos of a principal and keep the others \
             (it has no purgekeys or prune; `cpw` without --keepold would drop the current \
             key's predecessors too). With `prune-key-history = true` in the [kadmin] section \
             of the krb5.conf its kadmin and kadmind read, each rotation's `cpw --keepold` \
             drops the kvnos set more than the principal's maximum ticket life before the \
             newest one that old"
                .into(),
        ))
    }

    fn key_material(&self) -> KeyMaterial {
        KeyMaterial::Passphrase {
            principal: self.principal.clone(),
        }
    }

    fn next_kvno(&self) -> Result<Option<i32>, AuthDbError> {
        Ok(self.principal_info()?.map(|i| i.kvno.saturating_add(1)))
    }

    fn prove_tickets(
        &self,
        servers: &[(&str, &[Key])],
    ) -> Result<Option<TicketProof>, AuthDbError> {
        self.ticket_proof(servers).map(Some)
    }

    fn set(
        &self,
        kvno: i32,
        keys: &[Key],
        passphrase: Option<&[u8]>,
        _now: DateTime<Utc>,
    ) -> Result<AfsEntry, AuthDbError> {
        let pw = check_input(&self.describe(), kvno, keys, passphrase)?;
        let p = checked(&self.principal)?;
        let cur = self.principal_info()?;
        if let Some(c) = &cur {
            if kvno != c.kvno.saturating_add(1) {
                return Err(AuthDbError::Refused(format!(
                    "{} is at kvno {}, so the KDC's next kvno is {}, not {kvno} (each cpw adds \
                     one); choose kvno {} (servers first)",
                    c.principal,
                    c.kvno,
                    c.kvno + 1,
                    c.kvno + 1
                )));
            }
        }
        let salt_principal = cur.as_ref().map_or(p, |c| c.principal.as_str());
        check_derivation(salt_principal, kvno, keys, pw)?;
        match cur {
            Some(_) => self.run_with_password(&["cpw", "--keepold", p], pw)?,
            None => self.create(p, kvno, pw)?,
        }
        self.confirm(kvno, keys)
    }
}

/// What `set` was given, checked before anything runs; the passphrase.
fn check_input<'a>(
    what: &str,
    kvno: i32,
    keys: &[Key],
    passphrase: Option<&'a [u8]>,
) -> Result<&'a [u8], AuthDbError> {
    let refused = |m: String| Err(AuthDbError::Refused(m));
    let Some(pw) = passphrase else {
        return refused(format!(
            "{what}: a KDC takes a new key only as a passphrase (it derives the keys itself); \
             none was given"
        ));
    };
    if pw.is_empty() {
        return refused("the passphrase is empty".into());
    }
    if pw.iter().any(|&b| b == b'\n' || b == b'\r' || b == 0) {
        return refused("the passphrase contains a newline, carriage return or NUL byte".into());
    }
    if pw.len() > MAX_PASSPHRASE_LEN {
        return refused(format!(
            "the passphrase is {} bytes; Heimdal's kadmin reads at most {MAX_PASSPHRASE_LEN}",
            pw.len()
        ));
    }
    if kvno < 1 {
        return refused(format!("kvno {kvno}: a Kerberos kvno starts at 1"));
    }
    if keys.is_empty() {
        return refused(format!("no keys at kvno {kvno} to set"));
    }
    if let Some(k) = keys.iter().find(|k| {
        k.key_type() != KeyType::RxkadKrb5
            || k.kvno() != kvno
            || !Enctype(k.id.subtype).is_rfc3962()
    }) {
        return refused(format!(
            "{what}: {} cannot be set: the KDC makes rxkad_krb5 keys of enctypes 18 and 17 at \
             kvno {kvno}",
            k.id
        ));
    }
    Ok(pw)
}

/// The keys `pw` derives for `principal` (default salt) must be `keys`: a passphrase that
/// does not give the servers' keys never reaches the KDC.
fn check_derivation(
    principal: &str,
    kvno: i32,
    keys: &[Key],
    pw: &[u8],
) -> Result<(), AuthDbError> {
    let salt = Zeroizing::new(crypto::default_salt(principal).map_err(|e| {
        AuthDbError::Refused(format!(
            "{e}; give the afs principal with its realm (afs/<cell>@<REALM>)"
        ))
    })?);
    for k in keys {
        let len = Enctype(k.id.subtype).key_len().unwrap_or(0);
        if crypto::aes_string_to_key(pw, &salt, AES_ITERATIONS, len).as_slice() != k.bytes() {
            return Err(AuthDbError::Mismatch(format!(
                "{principal}: the key given for {} is not the one the passphrase derives with \
                 the principal's default salt; the KDC was not changed (kvno {kvno})",
                k.id
            )));
        }
    }
    Ok(())
}

/// The principal as one argv word kadmin takes as a name (no option, no blanks).
fn checked(p: &str) -> Result<&str, AuthDbError> {
    if p.is_empty() || p.starts_with('-') || p.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(AuthDbError::Backend(format!(
            "principal {p:?}: afskeys passes only plain names (no spaces or leading '-') to \
             Heimdal's kadmin"
        )));
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::KeyId;

    fn key(kvno: i32, e: i32) -> Key {
        Key::new(
            KeyId {
                key_type: KeyType::RxkadKrb5,
                kvno,
                subtype: e,
            },
            Zeroizing::new(vec![1; if e == 17 { 16 } else { 32 }]),
        )
    }

    #[test]
    fn argv_holds_no_secret_and_local_runs_see_default_keys_first() {
        let db = HeimdalAuthDb::new("afs/x.org@X.ORG".into(), "/bin/kadmin.heimdal".into())
            .with_envs([("KRB5_CONFIG", "/tmp/k.conf")]);
        let c = db.command(&["cpw", "--keepold", "afs/x.org@X.ORG"], Some("/p/d.conf"));
        let args: Vec<_> = c.get_args().map(|a| a.to_str().unwrap()).collect();
        assert_eq!(args, ["-l", "cpw", "--keepold", "afs/x.org@X.ORG"]);
        let envs: Vec<_> = c.get_envs().collect();
        assert!(envs.contains(&(
            "KRB5_CONFIG".as_ref(),
            Some("/p/d.conf:/tmp/k.conf".as_ref())
        )));
        assert_eq!(
            db.describe(),
            "heimdal afs/x.org@X.ORG (/bin/kadmin.heimdal -l)"
        );
        let r = RemoteKdc::new(Some("kdc1:749".into()), "a/admin@X.ORG", "/k/admin.keytab");
        let db = db.with_remote(r);
        assert!(db.is_remote());
        assert_eq!(
            db.login_args(),
            [
                "-a",
                "kdc1:749",
                "-p",
                "a/admin@X.ORG",
                "-K",
                "/k/admin.keytab"
            ]
        );
        assert!(db.describe().ends_with("(/bin/kadmin.heimdal -a kdc1:749)"));
    }

    #[test]
    fn inputs_are_checked_before_anything_runs() {
        let db = HeimdalAuthDb::new("afs/x.org@X.ORG".into(), "/nonexistent/kadmin".into());
        let ks = [key(2, 18)];
        let now = Utc::now();
        let refused = |r: Result<AfsEntry, AuthDbError>| match r {
            Err(AuthDbError::Refused(m)) => m,
            other => panic!("{other:?}"),
        };
        assert!(refused(db.set(2, &ks, None, now)).contains("passphrase"));
        let m = refused(db.set(2, &ks, Some(b"sec\nret"), now));
        assert!(m.contains("newline") && !m.contains("sec"), "{m}");
        assert!(refused(db.set(2, &ks, Some(&[b'a'; 128]), now)).contains("127"));
        assert!(refused(db.set(2, &[], Some(b"pw"), now)).contains("no keys"));
        assert!(refused(db.set(2, &[key(2, 16)], Some(b"pw"), now)).contains("18 and 17"));
        assert!(refused(db.set(0, &[key(0, 18)], Some(b"pw"), now)).contains("starts at 1"));
        match db.get() {
            Err(AuthDbError::Backend(m)) => assert!(m.contains("/nonexistent/kadmin"), "{m}"),
            other => panic!("{other:?}"),
        }
        assert!(checked("-x").is_err() && checked("a b@R").is_err());
        let e = db.ticket_client().unwrap_err().to_string();
        assert!(e.contains("admin_keytab"), "{e}");
    }

    /// A stand-in kadmin: `get` prints a record at kvno 1, `cpw` reads its input and changes
    /// nothing, exit 0 — what Heimdal's kadmin does when the two lines differ.
    #[test]
    fn a_cpw_that_changed_nothing_is_reported_as_such() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("kadmin");
        std::fs::write(
            &fake,
            "#!/bin/sh\ncase \"$2\" in\nget) printf '   Principal: afs/x.org@X.ORG\\n\
             Max ticket life: 1 day\\n   Kvno: 1\\n\
             Keytypes: aes256-cts-hmac-sha1-96(pw-salt)[1]\\n';;\n\
             *) cat >/dev/null;;\nesac\nexit 0\n",
        )
        .unwrap();
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let db = HeimdalAuthDb::new("afs/x.org@X.ORG".into(), fake.display().to_string());
        let pw = b"some passphrase";
        let salt = crypto::default_salt("afs/x.org@X.ORG").unwrap();
        let keys: Vec<Key> = [(18, 32), (17, 16)]
            .into_iter()
            .map(|(e, len)| {
                Key::new(
                    KeyId {
                        key_type: KeyType::RxkadKrb5,
                        kvno: 2,
                        subtype: e,
                    },
                    crypto::aes_string_to_key(pw, &salt, AES_ITERATIONS, len),
                )
            })
            .collect();
        let e = db.set(2, &keys, Some(pw), Utc::now()).unwrap_err();
        let m = e.to_string();
        assert!(matches!(e, AuthDbError::Backend(_)), "{m}");
        assert!(
            m.contains("left the principal at kvno 1") && m.contains("not changed"),
            "{m}"
        );
    }

    #[test]
    fn kadmin_messages_leave_out_prompts_and_never_show_the_passphrase() {
        let db = HeimdalAuthDb::new("afs@R".into(), "kadmin.heimdal".into());
        let ran = Ran {
            stdout: String::new(),
            stderr: "afs@R's Password: \nkadmin.heimdal: cpw afs@R: Principal does not exist\n"
                .into(),
            ok: false,
        };
        let e = db.failed(&["cpw", "afs@R"], &ran, Some(b"pw1")).to_string();
        assert_eq!(
            e,
            "kadmin.heimdal `cpw afs@R` failed: kadmin.heimdal: cpw afs@R: Principal does not exist"
        );
        let leak = Ran {
            stdout: "hunter22".into(),
            stderr: String::new(),
            ok: false,
        };
        let e = db.failed(&["cpw"], &leak, Some(b"hunter22")).to_string();
        assert!(!e.contains("hunter22") && e.contains("withheld"), "{e}");
    }
}

//! A private MIT Kerberos realm for tests: a database in a temporary directory, made with
//! `kdb5_util create -s`, edited with `kadmin.local`. No daemon, nothing system-wide: the
//! realm exists only for processes given [`Realm::env`] (`KRB5_CONFIG`, `KRB5_KDC_PROFILE`),
//! so tests running in parallel each get their own realm and never touch /etc/krb5.conf.
//!
//! ```ignore
//! mod kdc;
//! let Some(realm) = kdc::Realm::create("TEST.REALM") else { return }; // skipped
//! realm.add_principal("afs/test.realm@TEST.REALM", b"passphrase");
//! let out = realm.kadmin("getprinc -terse afs/test.realm@TEST.REALM");
//! let keys = realm.keytab("afs/test.realm@TEST.REALM"); // every kvno held, with key bytes
//! ```
//!
//! When `kdb5_util`, `kadmin.local` or `klist` is missing, [`Realm::create`] panics if
//! `AFSKEYS_REQUIRE_INTEROP` is set (as `bin/test` and CI set it) and otherwise prints
//! `SKIPPED: …` and returns `None`.
//!
//! [`Realm::serve`] makes the same realm and also runs it: `krb5kdc` and `kadmind` on
//! 127.0.0.1 free high ports (kdc.conf through `KRB5_KDC_PROFILE`: `kdc_listen`,
//! `kdc_tcp_listen`, `kadmind_listen`, `kpasswd_listen`; krb5.conf through `KRB5_CONFIG`
//! naming `kdc` and `admin_server` with those ports), an admin principal
//! `afskeys/admin@REALM` with a keytab, and the ACL `afskeys/admin@REALM *` (everything but
//! the extract-keys privilege). The daemons run in the foreground as children of the test
//! and are killed when the realm is dropped.
#![allow(dead_code)]

mod served;

use std::ffi::OsStr;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The master password of every test realm (it only guards the stash of a throwaway DB).
pub const MASTER_PASSWORD: &str = "afskeys-test-master";

/// One key a principal holds, as `klist -kteK` prints it from a `ktadd -norandkey` export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldKey {
    pub kvno: i32,
    /// The enctype's name, e.g. `aes256-cts-hmac-sha1-96`.
    pub enctype: String,
    pub key: Vec<u8>,
}

/// A private realm; everything is removed when it is dropped.
pub struct Realm {
    name: String,
    dir: tempfile::TempDir,
    kdb5_util: PathBuf,
    kadmin_local: PathBuf,
    klist: PathBuf,
    served: Option<Served>,
}

/// The running daemons of a served realm.
struct Served {
    kdc_port: u16,
    kadmind_port: u16,
    daemons: Vec<(String, std::process::Child)>,
}

impl Drop for Realm {
    fn drop(&mut self) {
        if let Some(s) = &mut self.served {
            for (_, d) in &mut s.daemons {
                let _ = d.kill();
                let _ = d.wait();
            }
        }
    }
}

impl Realm {
    /// Make the realm `name` (upper case, e.g. `TEST.REALM`), or `None` when the MIT tools
    /// are missing and `AFSKEYS_REQUIRE_INTEROP` is unset. Panics if creation fails.
    pub fn create(name: &str) -> Option<Realm> {
        let tools = ["kdb5_util", "kadmin.local", "klist"].map(|t| (t, find_tool(t)));
        let missing: Vec<&str> = tools
            .iter()
            .filter(|(_, p)| p.is_none())
            .map(|(t, _)| *t)
            .collect();
        if !missing.is_empty() {
            if std::env::var_os("AFSKEYS_REQUIRE_INTEROP").is_some() {
                panic!(
                    "required MIT Kerberos tool(s) missing: {missing:?} \
                     (apt-get install krb5-kdc krb5-admin-server krb5-user)"
                );
            }
            eprintln!(
                "SKIPPED: missing {missing:?}; set AFSKEYS_REQUIRE_INTEROP=1 to make this fail"
            );
            return None;
        }
        let [kdb5_util, kadmin_local, klist] = tools.map(|(_, p)| p.unwrap());
        let dir = tempfile::Builder::new()
            .prefix("afskeys-kdc-")
            .tempdir()
            .expect("temporary directory for the realm");
        let d = dir.path();
        assert!(
            !d.to_str().unwrap().contains(char::is_whitespace),
            "the realm's directory must have no spaces: {}",
            d.display()
        );
        fs::write(
            d.join("krb5.conf"),
            format!("[libdefaults]\n\tdefault_realm = {name}\n"),
        )
        .unwrap();
        fs::write(
            d.join("kdc.conf"),
            format!(
                "[realms]\n\t{name} = {{\n\t\tdatabase_name = {db}\n\t\tkey_stash_file = {stash}\n\t}}\n",
                db = d.join("principal").display(),
                stash = d.join("stash").display()
            ),
        )
        .unwrap();
        let realm = Realm {
            name: name.to_string(),
            dir,
            kdb5_util,
            kadmin_local,
            klist,
            served: None,
        };
        let out = realm
            .command(&realm.kdb5_util)
            .args(["create", "-s", "-r", name, "-P", MASTER_PASSWORD])
            .stdin(Stdio::null())
            .output()
            .expect("run kdb5_util");
        assert!(
            out.status.success() && realm.dir().join("principal").exists(),
            "kdb5_util create failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Some(realm)
    }

    /// The realm's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The directory holding the configuration and the database.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The environment a process needs to see this realm (and only it).
    pub fn env(&self) -> Vec<(String, String)> {
        let p = |f: &str| self.dir().join(f).to_str().unwrap().to_string();
        vec![
            ("KRB5_CONFIG".to_string(), p("krb5.conf")),
            ("KRB5_KDC_PROFILE".to_string(), p("kdc.conf")),
        ]
    }

    /// The full path of `kadmin.local` (it lives in /usr/sbin, often not in PATH).
    pub fn kadmin_local(&self) -> &Path {
        &self.kadmin_local
    }

    /// A command for `prog` with this realm's environment and `LC_ALL=C`.
    pub fn command(&self, prog: impl AsRef<OsStr>) -> Command {
        let mut c = Command::new(prog);
        c.envs(self.env()).env("LC_ALL", "C").env_remove("LANGUAGE");
        c
    }

    /// `kadmin.local -q QUERY` with stdin from /dev/null. Remember that kadmin.local exits 0
    /// even when the query fails: look at stdout and stderr.
    pub fn kadmin(&self, query: &str) -> Output {
        self.kadmin_with_stdin(query, b"")
    }

    /// `kadmin.local -q QUERY` with `stdin` piped in (e.g. the two password lines).
    pub fn kadmin_with_stdin(&self, query: &str, stdin: &[u8]) -> Output {
        let mut child = self
            .command(&self.kadmin_local)
            .args(["-q", query])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run kadmin.local");
        let _ = child.stdin.take().unwrap().write_all(stdin);
        child.wait_with_output().unwrap()
    }

    /// Create `principal` with keys derived from `password` (aes256 + aes128, default salt).
    /// Panics unless kadmin.local says it was created.
    pub fn add_principal(&self, principal: &str, password: &[u8]) {
        let mut input = password.to_vec();
        input.push(b'\n');
        input.extend_from_slice(password);
        input.push(b'\n');
        let out = self.kadmin_with_stdin(
            &format!(
                "addprinc -e aes256-cts-hmac-sha1-96:normal,aes128-cts-hmac-sha1-96:normal {principal}"
            ),
            &input,
        );
        let so = String::from_utf8_lossy(&out.stdout);
        assert!(
            so.contains("\" created."),
            "addprinc {principal} failed: {so}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `getprinc -terse`: the tab-separated record (quotes kept), `None` when the principal
    /// does not exist. Field 9 is the kvno, field 16 the number of keys, then 4 per key.
    pub fn getprinc_terse(&self, principal: &str) -> Option<Vec<String>> {
        let out = self.kadmin(&format!("getprinc -terse {principal}"));
        let so = String::from_utf8_lossy(&out.stdout).into_owned();
        let se = String::from_utf8_lossy(&out.stderr);
        match so.lines().find(|l| l.starts_with('"')) {
            Some(l) => Some(l.split('\t').map(str::to_string).collect()),
            None => {
                assert!(
                    se.contains("Principal does not exist"),
                    "getprinc {principal}: {so}{se}"
                );
                None
            }
        }
    }

    /// The principal's current kvno, `None` when it does not exist.
    pub fn kvno(&self, principal: &str) -> Option<i32> {
        self.getprinc_terse(principal)
            .map(|f| f[8].parse().expect("kvno field"))
    }

    /// Create `principal` with random keys and write them to the keytab `path` (e.g. a host
    /// principal for an sshd's GSSAPI, or a client's `kinit -k` keytab).
    pub fn add_keytab_principal(&self, principal: &str, path: &Path) {
        let out = self.kadmin(&format!("addprinc -randkey {principal}"));
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("created"),
            "addprinc {principal}: {out:?}"
        );
        self.kadmin(&format!("ktadd -k WRFILE:{} {principal}", path.display()));
        assert!(path.exists(), "ktadd {principal}: {out:?}");
    }

    /// Every key the principal holds (all kvnos), exported with `ktadd -norandkey` (which
    /// changes nothing) and read back with `klist -kteK` — independent of afskeys' parser.
    pub fn keytab(&self, principal: &str) -> Vec<HeldKey> {
        let kt = self.dir().join(format!(
            "export-{}.keytab",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let out = self.kadmin(&format!(
            "ktadd -norandkey -k WRFILE:{} {principal}",
            kt.display()
        ));
        assert!(
            kt.exists(),
            "ktadd -norandkey {principal}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let out = self
            .command(&self.klist)
            .args(["-k", "-t", "-e", "-K"])
            .arg(&kt)
            .output()
            .expect("run klist");
        fs::remove_file(&kt).unwrap();
        assert!(out.status.success(), "klist: {out:?}");
        parse_klist(&String::from_utf8_lossy(&out.stdout))
    }
}

/// `   2 11/25/26 11:53:45 afs/b@R (aes256-cts-hmac-sha1-96)  (0xbe37…)` → a HeldKey.
fn parse_klist(text: &str) -> Vec<HeldKey> {
    let mut v = Vec::new();
    for l in text.lines() {
        let l = l.trim();
        let Some(kvno) = l
            .split_whitespace()
            .next()
            .and_then(|w| w.parse::<i32>().ok())
        else {
            continue;
        };
        let (Some(a), Some(b)) = (l.find(" ("), l.rfind("(0x")) else {
            panic!("klist line without enctype or key: {l:?}");
        };
        let enctype = l[a + 2..].split(')').next().unwrap().to_string();
        let hex = l[b + 3..].trim_end_matches(')');
        let key = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        v.push(HeldKey { kvno, enctype, key });
    }
    v
}

/// `tool` in PATH, else in the sbin directories.
pub fn find_tool(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin"].map(PathBuf::from))
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

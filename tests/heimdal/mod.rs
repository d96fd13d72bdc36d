//! A private Heimdal realm for tests: Debian's heimdal-clients and heimdal-kdc unpacked (never
//! installed: they conflict with MIT's krb5-user, krb5-kdc and krb5-admin-server) into
//! `$CARGO_TARGET_TMPDIR/heimdal/root` — downloaded once with `apt-get download`, unpacked
//! with `dpkg -x`; the runtime libraries they link (libkdc2-heimdal, libkadm5srv8-heimdal, …)
//! are installed packages that conflict with nothing (`bin/test` installs them). The realm is
//! made with `kadmin.heimdal -l init` in a temporary directory (its `[kdc] database` names
//! dbname, realm, mkey_file, acl_file and log_file), Heimdal's `kdc` serves it on a free high
//! port on 127.0.0.1, and an admin principal `afskeys/admin` has a keytab for tickets. MIT's
//! `kinit`/`kvno` talk to that KDC through the same krb5.conf (`KRB5_CONFIG`).
//! [`Realm::start_kadmind`] also runs Heimdal's kadmind on a free port, with the ACL
//! `afskeys/admin@REALM all` (everything but get-keys); [`Realm::serve_with`] sets the
//! realm's `[kadmin] default_keys` (what kadmind makes new keys with). Everything is removed,
//! and the daemons killed, on drop.
//!
//! When a component is missing, [`Realm::serve`] panics if `AFSKEYS_REQUIRE_INTEROP` is set
//! and otherwise prints `SKIPPED: …` and returns `None`.
#![allow(dead_code)]

use std::fs;
use std::io::Write;
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The admin principal's name without the realm.
pub const ADMIN: &str = "afskeys/admin";

/// Serializes the download and unpacking between the tests of one binary.
static UNPACK: Mutex<()> = Mutex::new(());

/// The unpacked Heimdal tree (`…/root`), downloading and unpacking it the first time.
pub fn heimdal_root() -> Result<PathBuf, String> {
    let _guard = UNPACK.lock().unwrap_or_else(|e| e.into_inner());
    let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join("heimdal");
    let root = base.join("root");
    if root.join("usr/bin/kadmin.heimdal").is_file()
        && root.join("usr/lib/heimdal-servers/kdc").is_file()
    {
        return Ok(root);
    }
    let debs = base.join("debs");
    fs::create_dir_all(&debs).map_err(|e| format!("{}: {e}", debs.display()))?;
    let have_debs = |d: &Path| {
        fs::read_dir(d)
            .map(|r| {
                r.flatten()
                    .filter(|e| e.path().extension() == Some("deb".as_ref()))
                    .count()
            })
            .unwrap_or(0)
            >= 2
    };
    if !have_debs(&debs) {
        let out = Command::new("apt-get")
            .args(["download", "heimdal-clients", "heimdal-kdc"])
            .current_dir(&debs)
            .output()
            .map_err(|e| format!("apt-get: {e}"))?;
        if !out.status.success() || !have_debs(&debs) {
            return Err(format!(
                "apt-get download heimdal-clients heimdal-kdc failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    let tmp = base.join(format!("root.tmp{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    for deb in fs::read_dir(&debs).unwrap().flatten() {
        let out = Command::new("dpkg")
            .arg("-x")
            .arg(deb.path())
            .arg(&tmp)
            .output()
            .map_err(|e| format!("dpkg: {e}"))?;
        if !out.status.success() {
            return Err(format!("dpkg -x {}: {out:?}", deb.path().display()));
        }
    }
    let _ = fs::remove_dir_all(&root);
    fs::rename(&tmp, &root).map_err(|e| format!("{}: {e}", root.display()))?;
    Ok(root)
}

/// A port free for TCP and UDP on 127.0.0.1 (released before returning).
fn free_port() -> u16 {
    for _ in 0..50 {
        let t = TcpListener::bind("127.0.0.1:0").expect("bind a TCP port");
        let port = t.local_addr().unwrap().port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port on 127.0.0.1");
}

fn missing(what: &str) -> Option<Realm> {
    if std::env::var_os("AFSKEYS_REQUIRE_INTEROP").is_some() {
        panic!("Heimdal test realm: {what}");
    }
    eprintln!("SKIPPED: {what}; set AFSKEYS_REQUIRE_INTEROP=1 to make this fail");
    None
}

/// A served Heimdal realm; removed on drop.
pub struct Realm {
    name: String,
    dir: tempfile::TempDir,
    root: PathBuf,
    port: u16,
    kdc: Option<Child>,
    /// kadmind's port and process, when served.
    kadmind: Option<(u16, Child)>,
}

impl Drop for Realm {
    fn drop(&mut self) {
        // SIGTERM first: Heimdal's kdc then stops the worker processes it forked (a SIGKILL
        // would leave them writing the log into the directory being removed).
        let kadmind = self.kadmind.as_mut().map(|(_, c)| c);
        for k in self.kdc.iter_mut().chain(kadmind) {
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(k.id() as libc::pid_t, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(5);
            while matches!(k.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = k.kill();
            let _ = k.wait();
        }
    }
}

/// krb5.conf for a realm whose database is `dir/heimdal` and whose KDC listens on `port`;
/// MIT's client tools read it too.
fn config(name: &str, dir: &Path, port: u16, default_keys: Option<&str>) -> String {
    let d = dir.display();
    let kadmin = default_keys
        .map(|k| format!("[kadmin]\n\tdefault_keys = {k}\n"))
        .unwrap_or_default();
    format!(
        "[libdefaults]\n\tdefault_realm = {name}\n\tdns_lookup_kdc = false\n\
         \tdns_lookup_realm = false\n\trdns = false\n\
         [realms]\n\t{name} = {{\n\t\tkdc = 127.0.0.1:{port}\n\t}}\n\
         [kdc]\n\tdatabase = {{\n\t\tdbname = {d}/heimdal\n\t\trealm = {name}\n\
         \t\tmkey_file = {d}/m-key\n\t\tacl_file = {d}/kadmind.acl\n\
         \t\tlog_file = {d}/iprop.log\n\t}}\n\
         [logging]\n\tkdc = FILE:{d}/kdc.log\n\tkadmind = FILE:{d}/kadmind.log\n\
         \tdefault = FILE:{d}/other.log\n{kadmin}"
    )
}

impl Realm {
    /// Make the realm `name`, an admin principal with a keytab, and run its KDC.
    pub fn serve(name: &str) -> Option<Realm> {
        Realm::serve_with(name, None)
    }

    /// [`Realm::serve`], with `[kadmin] default_keys` set in the realm's configuration when
    /// given (what kadmind makes new keys with).
    pub fn serve_with(name: &str, default_keys: Option<&str>) -> Option<Realm> {
        let root = match heimdal_root() {
            Ok(r) => r,
            Err(e) => return missing(&e),
        };
        if which("kinit").is_none() || which("kvno").is_none() {
            return missing("MIT kinit/kvno missing (apt-get install krb5-user)");
        }
        let dir = tempfile::Builder::new()
            .prefix("afskeys-heimdal-")
            .tempdir()
            .unwrap();
        let port = free_port();
        let conf = config(name, dir.path(), port, default_keys);
        fs::write(dir.path().join("krb5.conf"), conf).unwrap();
        // Everything but get-keys: nothing afskeys does over kadmind may need key bytes.
        fs::write(
            dir.path().join("kadmind.acl"),
            format!("{ADMIN}@{name} all\n"),
        )
        .unwrap();
        let mut realm = Realm {
            name: name.into(),
            dir,
            root,
            port,
            kdc: None,
            kadmind: None,
        };
        realm.ok(&[
            "init",
            "--realm-max-ticket-life=unlimited",
            "--realm-max-renewable-life=unlimited",
            name,
        ]);
        let admin = realm.admin_principal();
        realm.ok(&["add", "--random-key", "--use-defaults", &admin]);
        let kt = format!("FILE:{}", realm.admin_keytab().display());
        realm.ok(&["ext_keytab", "-k", &kt, &admin]);
        realm.start_kdc();
        Some(realm)
    }

    /// A second realm serving a copy of this one's database in which `principal` keeps only
    /// `enctype` (every other one removed with `del_enctype`, on the copy only).
    pub fn copy_with_only(&self, principal: &str, enctype: &str) -> Realm {
        let dir = tempfile::Builder::new()
            .prefix("afskeys-heimdal-copy-")
            .tempdir()
            .unwrap();
        for e in fs::read_dir(self.dir()).unwrap().flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.starts_with("heimdal") || n == "admin.keytab" {
                fs::copy(e.path(), dir.path().join(&n)).unwrap();
            }
        }
        let port = free_port();
        fs::write(
            dir.path().join("krb5.conf"),
            config(&self.name, dir.path(), port, None),
        )
        .unwrap();
        fs::write(dir.path().join("kadmind.acl"), "").unwrap();
        let mut copy = Realm {
            name: self.name.clone(),
            dir,
            root: self.root.clone(),
            port,
            kdc: None,
            kadmind: None,
        };
        let mut others: Vec<String> = Vec::new();
        for (e, _) in copy.keytypes(principal) {
            if e != enctype && !others.contains(&e) {
                others.push(e);
            }
        }
        if !others.is_empty() {
            let mut args = vec!["del_enctype", principal];
            args.extend(others.iter().map(String::as_str));
            copy.ok(&args);
        }
        copy.start_kdc();
        copy
    }

    /// Run Heimdal's kadmind on a free port (it reads the database directly).
    pub fn start_kadmind(&mut self) {
        let port = free_port();
        let conf = self.dir().join("krb5.conf");
        let child = Command::new(self.root.join("usr/lib/heimdal-servers/kadmind"))
            .arg(format!("--config-file={}", conf.display()))
            .arg(format!("--ports={port}"))
            .envs(self.env())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start Heimdal's kadmind");
        self.kadmind = Some((port, child));
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(st) = self.kadmind.as_mut().unwrap().1.try_wait().unwrap() {
                panic!("Heimdal's kadmind exited ({st})");
            }
            assert!(
                Instant::now() < deadline,
                "Heimdal's kadmind does not listen"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// kadmind's `host:port`.
    pub fn kadmind_addr(&self) -> String {
        format!("127.0.0.1:{}", self.kadmind.as_ref().expect("kadmind").0)
    }

    pub fn kadmind_log(&self) -> String {
        fs::read_to_string(self.dir().join("kadmind.log")).unwrap_or_default()
    }

    /// The pids of the daemons.
    pub fn daemon_pids(&self) -> Vec<u32> {
        let kadmind = self.kadmind.as_ref().map(|(_, c)| c);
        self.kdc.iter().chain(kadmind).map(Child::id).collect()
    }

    fn start_kdc(&mut self) {
        let conf = self.dir().join("krb5.conf");
        let child = Command::new(self.root.join("usr/lib/heimdal-servers/kdc"))
            .arg(format!("--config-file={}", conf.display()))
            .arg(format!("--ports={}", self.port))
            .arg("--addresses=127.0.0.1")
            .envs(self.env())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start Heimdal's kdc");
        self.kdc = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(st) = self.kdc.as_mut().unwrap().try_wait().unwrap() {
                panic!("Heimdal's kdc exited ({st}): {}", self.kdc_log());
            }
            assert!(Instant::now() < deadline, "Heimdal's kdc does not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The unpacked `kadmin.heimdal`.
    pub fn kadmin_path(&self) -> PathBuf {
        self.root.join("usr/bin/kadmin.heimdal")
    }

    /// What every client needs: `KRB5_CONFIG` (Heimdal's kadmin and MIT's kinit alike).
    pub fn env(&self) -> Vec<(String, String)> {
        vec![(
            "KRB5_CONFIG".into(),
            self.dir().join("krb5.conf").display().to_string(),
        )]
    }

    pub fn admin_principal(&self) -> String {
        format!("{ADMIN}@{}", self.name)
    }

    pub fn admin_keytab(&self) -> PathBuf {
        self.dir().join("admin.keytab")
    }

    pub fn kdc_pid(&self) -> Option<u32> {
        self.kdc.as_ref().map(Child::id)
    }

    pub fn kdc_log(&self) -> String {
        fs::read_to_string(self.dir().join("kdc.log")).unwrap_or_default()
    }

    /// `kadmin.heimdal -l ARGS` in a new session, `stdin` fed to it.
    pub fn kadmin(&self, args: &[&str], stdin: &[u8]) -> Output {
        let mut c = Command::new(self.kadmin_path());
        c.arg("-l")
            .args(args)
            .envs(self.env())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: setsid(2) only detaches the child from the controlling terminal.
        unsafe {
            c.pre_exec(|| {
                libc::setsid();
                Ok(())
            });
        }
        let mut child = c.spawn().expect("run kadmin.heimdal");
        let _ = child.stdin.take().unwrap().write_all(stdin);
        child.wait_with_output().unwrap()
    }

    /// `kadmin -l ARGS`, which must exit 0.
    pub fn ok(&self, args: &[&str]) -> Output {
        let out = self.kadmin(args, b"");
        assert!(out.status.success(), "kadmin -l {args:?}: {out:?}");
        out
    }

    /// The current kvno of `principal`, `None` when it does not exist.
    pub fn kvno(&self, principal: &str) -> Option<i32> {
        let out = self.kadmin(&["get", principal], b"");
        let so = String::from_utf8_lossy(&out.stdout);
        so.lines()
            .find_map(|l| l.trim().strip_prefix("Kvno:"))
            .map(|k| k.trim().parse().unwrap())
    }

    /// The `Keytypes:` line of `get principal`, as `(enctype name, kvno)`.
    pub fn keytypes(&self, principal: &str) -> Vec<(String, i32)> {
        let out = self.ok(&["get", principal]);
        let so = String::from_utf8_lossy(&out.stdout).into_owned();
        let line = so
            .lines()
            .find_map(|l| l.trim().strip_prefix("Keytypes:"))
            .unwrap_or("")
            .to_string();
        line.split(',')
            .filter_map(|i| {
                let (name, rest) = i.trim().split_once('(')?;
                let kvno = rest.rsplit_once('[')?.1.strip_suffix(']')?.parse().ok()?;
                Some((name.to_string(), kvno))
            })
            .collect()
    }

    /// MIT's `kvno -k KEYTAB` against this KDC, after `kinit` with the admin keytab.
    pub fn kvno_with_keytab(&self, principal: &str, keytab: &Path) -> Output {
        let cc = format!("FILE:{}", self.dir().join("check.cc").display());
        let kinit = Command::new("kinit")
            .args(["-k", "-t"])
            .arg(self.admin_keytab())
            .args(["-c", &cc, &self.admin_principal()])
            .envs(self.env())
            .output()
            .unwrap();
        assert!(kinit.status.success(), "kinit: {kinit:?}");
        Command::new("kvno")
            .args(["-c", &cc, "-k"])
            .arg(keytab)
            .arg(principal)
            .envs(self.env())
            .output()
            .unwrap()
    }
}

pub fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

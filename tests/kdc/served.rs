//! A served realm: `krb5kdc` and `kadmind` on loopback high ports, an admin principal with a
//! keytab and a no-extract ACL; the client tools (`kadmin`, `kinit`, `kvno`) pointed at it.

use super::{find_tool, Realm, Served};
use std::fs;
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

/// The admin principal's first component and instance (`afskeys/admin@REALM`).
pub const ADMIN: &str = "afskeys/admin";

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

/// `tool`, or a panic / skip like [`Realm::create`] when it is missing.
fn tools(names: &[&str]) -> Option<Vec<PathBuf>> {
    let found: Vec<_> = names.iter().map(|t| (*t, find_tool(t))).collect();
    let missing: Vec<&str> = found
        .iter()
        .filter(|(_, p)| p.is_none())
        .map(|(t, _)| *t)
        .collect();
    if missing.is_empty() {
        return Some(found.into_iter().map(|(_, p)| p.unwrap()).collect());
    }
    if std::env::var_os("AFSKEYS_REQUIRE_INTEROP").is_some() {
        panic!(
            "required MIT Kerberos tool(s) missing: {missing:?} \
             (apt-get install krb5-kdc krb5-admin-server krb5-user)"
        );
    }
    eprintln!("SKIPPED: missing {missing:?}; set AFSKEYS_REQUIRE_INTEROP=1 to make this fail");
    None
}

impl Realm {
    /// Make the realm `name` and run it (see the module header). `None` when a tool is
    /// missing and `AFSKEYS_REQUIRE_INTEROP` is unset; panics when anything fails.
    pub fn serve(name: &str) -> Option<Realm> {
        let daemons = tools(&["krb5kdc", "kadmind", "kadmin", "kinit", "kvno"])?;
        let mut realm = Realm::create(name)?;
        let d = realm.dir().to_path_buf();
        let (kdc, kadmind, kpasswd) = (free_port(), free_port(), free_port());
        fs::write(
            d.join("kdc.conf"),
            format!(
                "[kdcdefaults]\n\tkdc_listen = 127.0.0.1:{kdc}\n\tkdc_tcp_listen = 127.0.0.1:{kdc}\n\
                 [realms]\n\t{name} = {{\n\t\tdatabase_name = {db}\n\t\tkey_stash_file = {stash}\n\
                 \t\tacl_file = {acl}\n\t\tkadmind_listen = 127.0.0.1:{kadmind}\n\
                 \t\tkpasswd_listen = 127.0.0.1:{kpasswd}\n\t\tmax_life = 1d\n\t}}\n\
                 [logging]\n\tkdc = FILE:{kdclog}\n\tadmin_server = FILE:{kadmlog}\n",
                db = d.join("principal").display(),
                stash = d.join("stash").display(),
                acl = d.join("kadm5.acl").display(),
                kdclog = d.join("kdc.log").display(),
                kadmlog = d.join("kadmind.log").display(),
            ),
        )
        .unwrap();
        fs::write(
            d.join("krb5.conf"),
            format!(
                "[libdefaults]\n\tdefault_realm = {name}\n\tdns_lookup_kdc = false\n\
                 \tdns_lookup_realm = false\n\trdns = false\n\
                 [realms]\n\t{name} = {{\n\t\tkdc = 127.0.0.1:{kdc}\n\
                 \t\tadmin_server = 127.0.0.1:{kadmind}\n\t}}\n"
            ),
        )
        .unwrap();
        fs::write(d.join("kadm5.acl"), format!("{ADMIN}@{name} *\n")).unwrap();
        let admin = realm.admin_principal();
        let out = realm.kadmin(&format!("addprinc -randkey {admin}"));
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("created"),
            "addprinc {admin}: {out:?}"
        );
        let kt = realm.admin_keytab();
        realm.kadmin(&format!("ktadd -k WRFILE:{} {admin}", kt.display()));
        assert!(kt.exists(), "the admin keytab was not written");
        let mut served = Served {
            kdc_port: kdc,
            kadmind_port: kadmind,
            daemons: Vec::new(),
        };
        for (prog, args) in [(&daemons[0], &["-n"]), (&daemons[1], &["-nofork"])] {
            let child = realm
                .command(prog)
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start a daemon");
            served.daemons.push((prog.display().to_string(), child));
        }
        realm.served = Some(served);
        realm.wait_until_listening(&[kdc, kadmind]);
        Some(realm)
    }

    fn wait_until_listening(&mut self, ports: &[u16]) {
        let deadline = Instant::now() + Duration::from_secs(20);
        for port in ports {
            loop {
                if TcpStream::connect(("127.0.0.1", *port)).is_ok() {
                    break;
                }
                let logs = format!("{}\n{}", self.kdc_log(), self.kadmind_log());
                for (name, d) in &mut self.served.as_mut().unwrap().daemons {
                    if let Ok(Some(st)) = d.try_wait() {
                        panic!("{name} exited ({st}) before listening; logs:\n{logs}");
                    }
                }
                assert!(Instant::now() < deadline, "port {port} never listened");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// `afskeys/admin@REALM`.
    pub fn admin_principal(&self) -> String {
        format!("{ADMIN}@{}", self.name())
    }

    /// The admin principal's keytab.
    pub fn admin_keytab(&self) -> PathBuf {
        self.dir().join("admin.keytab")
    }

    /// kadmind's `127.0.0.1:PORT`.
    pub fn kadmind_addr(&self) -> String {
        format!("127.0.0.1:{}", self.served().kadmind_port)
    }

    /// An afskeys.toml whose afs entry is `principal` on this realm's kadmind (the `kadmin`
    /// backend with `server`, logging in with the admin keytab) and whose one other server
    /// is the conf dir `fs1`.
    #[allow(dead_code)]
    pub fn remote_cell_config(&self, principal: &str, fs1: &std::path::Path) -> String {
        format!(
            "[authdb]\nbackend = \"kadmin\"\nprincipal = \"{principal}\"\nserver = \"{}\"\n\
             admin_principal = \"{}\"\nadmin_keytab = \"{}\"\n\n\
             [[servers]]\nname = \"fs1\"\nconfdir = \"{}\"\n",
            self.kadmind_addr(),
            self.admin_principal(),
            self.admin_keytab().display(),
            fs1.display()
        )
    }

    /// The KDC's `127.0.0.1:PORT` (UDP and TCP).
    pub fn kdc_addr(&self) -> String {
        format!("127.0.0.1:{}", self.served().kdc_port)
    }

    /// The pids of krb5kdc and kadmind.
    pub fn daemon_pids(&self) -> Vec<u32> {
        self.served().daemons.iter().map(|(_, d)| d.id()).collect()
    }

    fn served(&self) -> &Served {
        self.served
            .as_ref()
            .expect("the realm is not served (Realm::serve)")
    }

    pub fn kdc_log(&self) -> String {
        fs::read_to_string(self.dir().join("kdc.log")).unwrap_or_default()
    }

    pub fn kadmind_log(&self) -> String {
        fs::read_to_string(self.dir().join("kadmind.log")).unwrap_or_default()
    }

    /// Remote `kadmin -s KADMIND -p ADMIN -k -t ADMIN_KEYTAB -q QUERY` (stdin /dev/null).
    pub fn remote_kadmin(&self, query: &str) -> Output {
        self.command("kadmin")
            .args([
                "-s",
                &self.kadmind_addr(),
                "-p",
                &self.admin_principal(),
                "-k",
                "-t",
            ])
            .arg(self.admin_keytab())
            .args(["-q", query])
            .stdin(Stdio::null())
            .output()
            .expect("run kadmin")
    }

    /// The real tools' verdict: `kinit` with the admin keytab into a fresh cache, then
    /// `kvno -c CC -k KEYTAB PRINCIPAL` (prints `keytab entry valid` when the keytab's key
    /// opens the ticket the KDC issues).
    pub fn kvno_with_keytab(&self, principal: &str, keytab: &Path) -> Output {
        let cc = self.dir().join(format!(
            "cc-{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let cc = format!("FILE:{}", cc.display());
        let out = self
            .command("kinit")
            .args(["-k", "-t"])
            .arg(self.admin_keytab())
            .args(["-c", &cc, &self.admin_principal()])
            .output()
            .expect("run kinit");
        assert!(out.status.success(), "kinit: {out:?}");
        self.command("kvno")
            .args(["-c", &cc, "-k"])
            .arg(keytab)
            .arg(principal)
            .output()
            .expect("run kvno")
    }
}

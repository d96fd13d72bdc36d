//! Opening a connection to one server: TCP (bounded by the timeout), the SSH handshake
//! preferring a host key type known_hosts holds for the server, the host key checked by
//! `known_hosts` (an unknown, changed or revoked key is refused with its SHA256 fingerprint;
//! nothing is ever added to known_hosts), the login (the configured identity, else the agent,
//! else `~/.ssh/id_*`), and the SFTP subsystem.

use super::known_hosts::{self, HostCheck, KnownHosts};
use super::sftp::Sftp;
use super::{Conn, SshServer};
use crate::fleet::FleetError;
use ssh2::Session;
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};

static GENERATION: AtomicU64 = AtomicU64::new(1);

impl SshServer {
    pub(super) fn connect(&self) -> Result<Conn, FleetError> {
        let known = KnownHosts::load(&self.known_hosts).map_err(|e| self.err(e))?;
        let name = self.known_hosts_name();
        let mut sess = Session::new().map_err(|e| self.err(format!("libssh2: {e}")))?;
        sess.set_timeout(self.timeout.as_millis().clamp(1, u32::MAX as u128) as u32);
        let tcp = self.open_tcp()?;
        let tcp_clone = tcp.try_clone().ok();
        sess.set_tcp_stream(tcp);
        prefer_known_types(&sess, &known, &name);
        sess.handshake()
            .map_err(|e| self.err(format!("SSH handshake failed: {}", e.message())))?;
        self.check_host_key(&sess, &known, &name)?;
        self.authenticate(&sess)?;
        let sftp = Sftp::start(&sess).map_err(|f| self.err(format!("cannot start SFTP: {f}")))?;
        Ok(Conn {
            sess,
            sftp,
            gen: GENERATION.fetch_add(1, Ordering::Relaxed),
            tcp: tcp_clone,
        })
    }

    /// A TCP connection to the first address of the host that answers.
    fn open_tcp(&self) -> Result<TcpStream, FleetError> {
        let addrs: Vec<_> = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|e| self.err(format!("cannot resolve host {}: {e}", self.host)))?
            .collect();
        let mut last = None;
        for a in &addrs {
            match TcpStream::connect_timeout(a, self.timeout) {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    return Ok(s);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(self.err(format!(
            "cannot connect: {}",
            last.map(|e| e.to_string())
                .unwrap_or_else(|| "no address".into())
        )))
    }

    fn check_host_key(
        &self,
        sess: &Session,
        known: &KnownHosts,
        name: &str,
    ) -> Result<(), FleetError> {
        let (key, _) = sess
            .host_key()
            .ok_or_else(|| self.err("the server sent no host key"))?;
        let fp = sess
            .host_key_hash(ssh2::HashType::Sha256)
            .map(known_hosts::fingerprint)
            .unwrap_or_else(|| "(no fingerprint)".into());
        let ktype = known_hosts::key_type_of(key).unwrap_or_else(|| "unknown".into());
        let kh = self.known_hosts.display();
        match known.check(name, key) {
            HostCheck::Match => Ok(()),
            HostCheck::Revoked { line } => Err(self.err(format!(
                "REVOKED HOST KEY: {name} offers {ktype} key {fp}, which {kh} line {line} \
                 marks @revoked; refusing to connect"
            ))),
            HostCheck::Changed { lines } => {
                let lines: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
                Err(self.err(format!(
                    "HOST KEY CHANGED: {name} now offers {ktype} key {fp}, but {kh} (line{} {}) \
                     holds a different key for it; refusing to connect: the connection may be \
                     intercepted. If the server's key was changed on purpose, check the new \
                     fingerprint out of band and replace the entry \
                     (ssh-keygen -R '{name}' -f {kh})",
                    if lines.len() > 1 { "s" } else { "" },
                    lines.join(", "),
                )))
            }
            HostCheck::Unknown => Err(self.err(format!(
                "UNKNOWN HOST: {name} is not in {kh}; it offers {ktype} key {fp}; refusing \
                 to connect to a host whose key is not known. Check that fingerprint out \
                 of band, then add the key to that file (e.g. ssh-keyscan -p {} {} >> {kh})",
                self.port, self.host,
            ))),
        }
    }

    fn authenticate(&self, sess: &Session) -> Result<(), FleetError> {
        let user = self.user.as_str();
        if let Some(id) = &self.identity {
            return sess
                .userauth_pubkey_file(user, None, id, None)
                .map_err(|e| {
                    self.err(format!(
                        "the server refused the key {} for user {user} ({}); is its public half \
                     in {user}'s authorized_keys, and is the file an unencrypted private key? \
                     (for a passphrase-protected key, leave [ssh] identity out and load the \
                     key into ssh-agent)",
                        id.display(),
                        e.message()
                    ))
                });
        }
        let agent_err = match sess.userauth_agent(user) {
            Ok(()) => return Ok(()),
            Err(e) => e.message().to_string(),
        };
        // No agent, or no key it holds was accepted: the default identity files, as ssh does.
        let home = crate::unix_user::home_dir();
        let mut tried = Vec::new();
        for f in ["id_ed25519", "id_ecdsa", "id_rsa"] {
            let p = home.join(".ssh").join(f);
            if p.exists() {
                if sess.userauth_pubkey_file(user, None, &p, None).is_ok() {
                    return Ok(());
                }
                tried.push(p.display().to_string());
            }
        }
        Err(self.err(format!(
            "cannot log in as {user}: the ssh agent gave no accepted key ({agent_err}){}; \
             set [ssh] identity to a private key the server accepts",
            if tried.is_empty() {
                String::new()
            } else {
                format!(" and {} were refused", tried.join(", "))
            }
        )))
    }
}

/// Ask for a host key of a type known_hosts holds for this name, as OpenSSH does, so a
/// server with several host keys is checked against the one on file.
fn prefer_known_types(sess: &Session, known: &KnownHosts, name: &str) {
    let known_types = known_hosts::known_types(&known.entries_for(name));
    if known_types.is_empty() {
        return;
    }
    let Ok(supported) = sess.supported_algs(ssh2::MethodType::HostKey) else {
        return;
    };
    let mut pref: Vec<&str> = Vec::new();
    for t in &known_types {
        for alg in known_hosts::host_key_algs(t) {
            if supported.contains(alg) && !pref.contains(alg) {
                pref.push(*alg);
            }
        }
    }
    for alg in &supported {
        if !pref.contains(alg) {
            pref.push(alg);
        }
    }
    let _ = sess.method_pref(ssh2::MethodType::HostKey, &pref.join(","));
}

//! Host keys checked against a known_hosts file exactly as OpenSSH checks them: plain,
//! hashed (`|1|salt|hash`), wildcard and negated patterns, `@revoked`, under the exact name
//! OpenSSH looks up (`host` on port 22, `[host]:port` on any other port).
//!
//! Why not libssh2's knownhost API (`ssh2::KnownHosts`): its `check_port` falls back to a
//! bare `host` entry for a non-standard port (OpenSSH never does, so a key for port 22 would
//! vouch for a different sshd on 2222), it ignores `@revoked` (a revoked key would be
//! accepted), and its reader stops at the first line it cannot parse (an
//! `@cert-authority` line or an unknown key type) instead of skipping it, so one line
//! written for OpenSSH can hide every entry after it.

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use std::path::{Path, PathBuf};

/// Standard base64, padded or not (trailing `=` are trimmed before decoding).
const B64_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::RequireNone),
);

/// Standard base64 with or without padding; `None` on anything else.
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    B64_LENIENT.decode(s.trim_end_matches('=')).ok()
}

/// A SHA256 fingerprint as OpenSSH prints it: `SHA256:` and unpadded base64.
pub fn fingerprint(sha256: &[u8]) -> String {
    format!(
        "SHA256:{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(sha256)
    )
}

/// The name OpenSSH looks a host up by: `host` on port 22, `[host]:port` otherwise.
pub fn known_hosts_name(host: &str, port: u16) -> String {
    let h = host.to_ascii_lowercase();
    if port == 22 {
        h
    } else {
        format!("[{h}]:{port}")
    }
}

/// A known_hosts file that exists but cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read known_hosts {}: {source}", path.display())]
pub struct KnownHostsError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// The parsed entries of a known_hosts file.
#[derive(Debug, Default)]
pub struct KnownHosts {
    path: PathBuf,
    entries: Vec<KnownEntry>,
}

#[derive(Debug, Clone)]
pub struct KnownEntry {
    line: usize,
    revoked: bool,
    patterns: String,
    key_type: String,
    key: Vec<u8>,
}

/// What known_hosts says about a host's key.
#[derive(Debug, PartialEq, Eq)]
pub enum HostCheck {
    Match,
    /// Entries exist for the name, none with this key: the lines that name it.
    Changed {
        lines: Vec<usize>,
    },
    Unknown,
    Revoked {
        line: usize,
    },
}

impl KnownHosts {
    /// Read a known_hosts file; an absent file is empty (every host is unknown). Lines this
    /// reader does not understand (`@cert-authority`, SSH1 keys, garbage) are skipped.
    pub fn load(path: &Path) -> Result<KnownHosts, KnownHostsError> {
        match std::fs::read_to_string(path) {
            Ok(t) => Ok(KnownHosts::parse(&t, path)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(KnownHosts {
                path: path.to_path_buf(),
                entries: Vec::new(),
            }),
            Err(source) => Err(KnownHostsError {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    pub fn parse(text: &str, path: &Path) -> KnownHosts {
        let entries = text
            .lines()
            .enumerate()
            .filter_map(|(i, raw)| parse_line(i + 1, raw))
            .collect();
        KnownHosts {
            path: path.to_path_buf(),
            entries,
        }
    }

    /// The entries whose host field matches `name`.
    pub fn entries_for(&self, name: &str) -> Vec<KnownEntry> {
        self.entries
            .iter()
            .filter(|e| host_matches(name, &e.patterns))
            .cloned()
            .collect()
    }

    /// Check `key` (the SSH wire blob) for `name` (from `known_hosts_name`).
    pub fn check(&self, name: &str, key: &[u8]) -> HostCheck {
        let found = self.entries_for(name);
        if let Some(e) = found.iter().find(|e| e.revoked && e.key == key) {
            return HostCheck::Revoked { line: e.line };
        }
        let plain: Vec<&KnownEntry> = found.iter().filter(|e| !e.revoked).collect();
        if plain.iter().any(|e| e.key == key) {
            return HostCheck::Match;
        }
        if plain.is_empty() {
            HostCheck::Unknown
        } else {
            HostCheck::Changed {
                lines: plain.iter().map(|e| e.line).collect(),
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// One line: `[@revoked] patterns keytype base64 [comment]`; `None` for anything else.
fn parse_line(line: usize, raw: &str) -> Option<KnownEntry> {
    let l = raw.trim();
    if l.is_empty() || l.starts_with('#') {
        return None;
    }
    let mut f = l.split_whitespace();
    let mut first = f.next()?;
    let mut revoked = false;
    if first.starts_with('@') {
        if first != "@revoked" {
            return None; // @cert-authority: host certificates are not used here
        }
        revoked = true;
        first = f.next().unwrap_or("");
    }
    let (kt, kb) = (f.next()?, f.next()?);
    Some(KnownEntry {
        line,
        revoked,
        patterns: first.to_string(),
        key_type: kt.to_string(),
        key: base64_decode(kb)?,
    })
}

/// The key types (in file order, once each) of the entries that are not revoked.
pub fn known_types(entries: &[KnownEntry]) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    for e in entries.iter().filter(|e| !e.revoked) {
        if !v.contains(&e.key_type) {
            v.push(e.key_type.clone());
        }
    }
    v
}

/// The host key algorithms (libssh2's names) that produce keys of a known_hosts type.
pub fn host_key_algs(key_type: &str) -> &'static [&'static str] {
    match key_type {
        "ssh-ed25519" => &["ssh-ed25519"],
        "ecdsa-sha2-nistp256" => &["ecdsa-sha2-nistp256"],
        "ecdsa-sha2-nistp384" => &["ecdsa-sha2-nistp384"],
        "ecdsa-sha2-nistp521" => &["ecdsa-sha2-nistp521"],
        "ssh-rsa" => &["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"],
        "ssh-dss" => &["ssh-dss"],
        _ => &[],
    }
}

/// The key type named inside an SSH public key blob.
pub fn key_type_of(blob: &[u8]) -> Option<String> {
    let n = u32::from_be_bytes(blob.get(..4)?.try_into().ok()?) as usize;
    let t = blob.get(4..4usize.checked_add(n)?)?;
    Some(String::from_utf8_lossy(t).into_owned())
}

/// OpenSSH's host matching for one known_hosts host field: a hashed `|1|salt|hash` entry,
/// or comma-separated patterns with `*` and `?`, where a matching `!pattern` vetoes the line.
fn host_matches(name: &str, field: &str) -> bool {
    if let Some(rest) = field.strip_prefix("|1|") {
        let Some((salt, hash)) = rest.split_once('|') else {
            return false;
        };
        let (Some(salt), Some(hash)) = (base64_decode(salt), base64_decode(hash)) else {
            return false;
        };
        return hmac_sha1(&salt, name.as_bytes()).as_slice() == hash.as_slice();
    }
    let name = name.to_ascii_lowercase();
    let mut positive = false;
    for p in field.split(',') {
        let (neg, p) = match p.strip_prefix('!') {
            Some(p) => (true, p),
            None => (false, p),
        };
        if wildcard(name.as_bytes(), p.to_ascii_lowercase().as_bytes()) {
            if neg {
                return false;
            }
            positive = true;
        }
    }
    positive
}

/// `*` matches any run, `?` one character (OpenSSH's match_pattern).
fn wildcard(s: &[u8], p: &[u8]) -> bool {
    match p.split_first() {
        None => s.is_empty(),
        Some((b'*', rest)) => (0..=s.len()).any(|i| wildcard(&s[i..], rest)),
        Some((b'?', rest)) => !s.is_empty() && wildcard(&s[1..], rest),
        Some((c, rest)) => s.first() == Some(c) && wildcard(&s[1..], rest),
    }
}

fn hmac_sha1(key: &[u8], data: &[u8]) -> Vec<u8> {
    use hmac::{KeyInit, Mac};
    let mut m = <hmac::Hmac<sha1::Sha1> as KeyInit>::new_from_slice(key)
        .expect("HMAC takes any key length");
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(data: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(data)
    }

    #[test]
    fn base64_padded_or_not() {
        for (raw, enc) in [
            (&b""[..], ""),
            (b"f", "Zg=="),
            (b"fo", "Zm8="),
            (b"foo", "Zm9v"),
            (b"foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(b64(raw), enc);
            assert_eq!(base64_decode(enc).unwrap(), raw);
            assert_eq!(base64_decode(enc.trim_end_matches('=')).unwrap(), raw);
        }
        assert!(base64_decode("Zm9v!").is_none());
        assert!(base64_decode("Zm9vY").is_none());
        assert_eq!(fingerprint(b"fo"), "SHA256:Zm8");
    }

    fn blob(kind: &str, body: &[u8]) -> Vec<u8> {
        let mut b = (kind.len() as u32).to_be_bytes().to_vec();
        b.extend_from_slice(kind.as_bytes());
        b.extend_from_slice(body);
        b
    }

    #[test]
    fn known_hosts_match_exactly_as_openssh() {
        let k1 = blob("ssh-ed25519", &[1; 32]);
        let k2 = blob("ssh-ed25519", &[2; 32]);
        let e1 = b64(&k1);
        let e2 = b64(&k2);
        let text = format!(
            "# comment\n\
             127.0.0.1 ssh-ed25519 {e1}\n\
             [127.0.0.1]:2222 ssh-ed25519 {e2}\n\
             fs1.example.com,fs2.example.com ssh-ed25519 {e1}\n\
             *.cell.org,!bad.cell.org ssh-ed25519 {e1}\n\
             @revoked [old.example.com]:2200 ssh-ed25519 {e2}\n\
             @cert-authority *.example.com ssh-ed25519 {e1}\n\
             garbage\n"
        );
        let kh = KnownHosts::parse(&text, Path::new("kh"));
        // port 22 uses the bare name
        assert_eq!(
            kh.check(&known_hosts_name("127.0.0.1", 22), &k1),
            HostCheck::Match
        );
        // another port never falls back to the bare entry (libssh2's check_port does)
        assert_eq!(
            kh.check(&known_hosts_name("127.0.0.1", 2222), &k1),
            HostCheck::Changed { lines: vec![3] }
        );
        assert_eq!(
            kh.check(&known_hosts_name("127.0.0.1", 2222), &k2),
            HostCheck::Match
        );
        assert_eq!(
            kh.check(&known_hosts_name("127.0.0.1", 2223), &k1),
            HostCheck::Unknown
        );
        assert_eq!(
            kh.check(&known_hosts_name("FS2.example.com", 22), &k1),
            HostCheck::Match
        );
        assert_eq!(
            kh.check(&known_hosts_name("a.cell.org", 22), &k1),
            HostCheck::Match
        );
        assert_eq!(
            kh.check(&known_hosts_name("bad.cell.org", 22), &k1),
            HostCheck::Unknown
        );
        assert_eq!(
            kh.check(&known_hosts_name("old.example.com", 2200), &k2),
            HostCheck::Revoked { line: 6 }
        );
        // the CA line is skipped, so a CA pattern does not vouch for a plain key
        assert_eq!(
            kh.check(&known_hosts_name("x.example.com", 22), &k1),
            HostCheck::Unknown
        );
        assert_eq!(key_type_of(&k1).as_deref(), Some("ssh-ed25519"));
        assert_eq!(key_type_of(&[0xff; 6]), None);
    }

    #[test]
    fn hashed_known_hosts() {
        // `ssh-keygen -H` form: |1|base64(salt)|base64(HMAC-SHA1(salt, name))
        let k = blob("ssh-ed25519", &[7; 32]);
        let salt = [9u8; 20];
        let name = "[10.0.0.1]:2022";
        let field = format!(
            "|1|{}|{}",
            b64(&salt),
            b64(&hmac_sha1(&salt, name.as_bytes()))
        );
        let text = format!("{field} ssh-ed25519 {}\n", b64(&k));
        let kh = KnownHosts::parse(&text, Path::new("kh"));
        assert_eq!(kh.check(name, &k), HostCheck::Match);
        assert_eq!(kh.check("10.0.0.1", &k), HostCheck::Unknown);
        // RFC 2202 HMAC-SHA1 test case 2
        assert_eq!(
            hex::encode(hmac_sha1(b"Jefe", b"what do ya want for nothing?")),
            "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"
        );
    }
}

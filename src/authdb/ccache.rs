//! Reading an MIT/Heimdal FILE credential cache (versions 3 and 4, big-endian), only as far as
//! the ticket proof needs: each credential's client, server, end time, and the ticket as the
//! KDC sent it (DER, still sealed with the service's key). Session keys are skipped, never
//! copied out of the (zeroized) buffer the caller holds. Configuration entries
//! (`X-CACHECONF:` realm) are left out. Layout (krb5 docs, "Credential cache file format"):
//!
//! ```text
//! file       = u16 version (0x0503 | 0x0504) [v4: u16 header_len, header] principal cred*
//! principal  = u32 name_type, u32 count, data realm, data component * count
//! cred       = principal client, principal server,
//!              keyblock (u16 enctype [v3: u16 enctype again], data key),
//!              u32 authtime, starttime, endtime, renew_till, u8 is_skey, u32 flags,
//!              u32 n, (u16 addrtype, data) * n, u32 n, (u16 adtype, data) * n,
//!              data ticket, data second_ticket
//! data       = u32 length, bytes
//! ```

/// One credential of the cache (no session key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    /// `name/instance@REALM`.
    pub client: String,
    pub server: String,
    /// Seconds since the epoch.
    pub end_time: u32,
    /// The session key's enctype.
    pub session_enctype: u16,
    /// The DER `Ticket` as the KDC issued it.
    pub ticket: Vec<u8>,
}

/// What is wrong with a credential cache.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CcacheError {
    #[error("not a credential cache of version 3 or 4 (starts with {0:02x?})")]
    Version(Vec<u8>),
    #[error("truncated at byte {0}")]
    Truncated(usize),
    #[error("a principal with {0} components")]
    TooManyComponents(u32),
}

/// The most name components a principal may have here (real ones have 1 to 3).
const MAX_COMPONENTS: u32 = 64;

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], CcacheError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.b.len())
            .ok_or(CcacheError::Truncated(self.b.len()))?;
        let s = &self.b[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, CcacheError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, CcacheError> {
        let s = self.take(2)?;
        Ok(u16::from_be_bytes([s[0], s[1]]))
    }
    fn u32(&mut self) -> Result<u32, CcacheError> {
        let s = self.take(4)?;
        Ok(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn data(&mut self) -> Result<&'a [u8], CcacheError> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn principal(&mut self) -> Result<String, CcacheError> {
        let _name_type = self.u32()?;
        let count = self.u32()?;
        if count > MAX_COMPONENTS {
            return Err(CcacheError::TooManyComponents(count));
        }
        let realm = String::from_utf8_lossy(self.data()?).into_owned();
        let mut parts = Vec::with_capacity(count as usize);
        for _ in 0..count {
            parts.push(String::from_utf8_lossy(self.data()?).into_owned());
        }
        Ok(format!("{}@{realm}", parts.join("/")))
    }
    fn skip_counted_list(&mut self) -> Result<(), CcacheError> {
        let n = self.u32()?;
        for _ in 0..n {
            self.u16()?;
            self.data()?;
        }
        Ok(())
    }
}

/// Every credential in the cache `b`, in file order, configuration entries left out.
pub fn parse(b: &[u8]) -> Result<Vec<Credential>, CcacheError> {
    let mut r = Reader { b, pos: 0 };
    let version = match r.u16() {
        Ok(v @ (0x0503 | 0x0504)) => v,
        _ => return Err(CcacheError::Version(b.iter().take(2).copied().collect())),
    };
    if version == 0x0504 {
        let len = r.u16()? as usize;
        r.take(len)?;
    }
    let _default = r.principal()?;
    let mut creds = Vec::new();
    while r.pos < b.len() {
        let client = r.principal()?;
        let server = r.principal()?;
        let session_enctype = r.u16()?;
        if version == 0x0503 {
            r.u16()?;
        }
        r.data()?; // the session key: not copied
        let _authtime = r.u32()?;
        let _starttime = r.u32()?;
        let end_time = r.u32()?;
        let _renew_till = r.u32()?;
        let _is_skey = r.u8()?;
        let _flags = r.u32()?;
        r.skip_counted_list()?; // addresses
        r.skip_counted_list()?; // authorization data
        let ticket = r.data()?.to_vec();
        r.data()?; // second ticket
        if server.ends_with("@X-CACHECONF:") {
            continue;
        }
        creds.push(Credential {
            client,
            server,
            end_time,
            session_enctype,
            ticket,
        });
    }
    Ok(creds)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn data(v: &mut Vec<u8>, d: &[u8]) {
        v.extend_from_slice(&(d.len() as u32).to_be_bytes());
        v.extend_from_slice(d);
    }

    fn principal(v: &mut Vec<u8>, realm: &str, parts: &[&str]) {
        v.extend_from_slice(&1u32.to_be_bytes());
        v.extend_from_slice(&(parts.len() as u32).to_be_bytes());
        data(v, realm.as_bytes());
        for p in parts {
            data(v, p.as_bytes());
        }
    }

    /// A cache holding `creds` (server parts, realm, ticket), the way kinit + kvno write it.
    pub(crate) fn build(version: u16, creds: &[(&[&str], &str, &[u8])]) -> Vec<u8> {
        let mut v = version.to_be_bytes().to_vec();
        if version == 0x0504 {
            v.extend_from_slice(&12u16.to_be_bytes());
            v.extend_from_slice(&[0, 1, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0]);
        }
        principal(&mut v, "R", &["afskeys", "admin"]);
        for (server, realm, ticket) in creds {
            principal(&mut v, "R", &["afskeys", "admin"]);
            principal(&mut v, realm, server);
            v.extend_from_slice(&18u16.to_be_bytes());
            if version == 0x0503 {
                v.extend_from_slice(&18u16.to_be_bytes());
            }
            data(&mut v, &[0x55; 32]);
            for t in [1u32, 1, 1_900_000_000, 0] {
                v.extend_from_slice(&t.to_be_bytes());
            }
            v.push(0);
            v.extend_from_slice(&0x40e1_0000u32.to_be_bytes());
            v.extend_from_slice(&1u32.to_be_bytes());
            v.extend_from_slice(&2u16.to_be_bytes());
            data(&mut v, &[127, 0, 0, 1]);
            v.extend_from_slice(&0u32.to_be_bytes());
            data(&mut v, ticket);
            data(&mut v, b"");
        }
        v
    }

    #[test]
    fn reads_both_versions_and_skips_config_entries() {
        for version in [0x0503, 0x0504] {
            let b = build(
                version,
                &[
                    (&["krbtgt", "R"], "R", b"tgt"),
                    (&["krb5_ccache_conf_data", "pa_type"], "X-CACHECONF:", b"2"),
                    (&["afs", "cell"], "R", b"ticket"),
                ],
            );
            let c = parse(&b).unwrap();
            assert_eq!(c.len(), 2);
            assert_eq!(c[0].server, "krbtgt/R@R");
            assert_eq!(c[1].server, "afs/cell@R");
            assert_eq!(c[1].client, "afskeys/admin@R");
            assert_eq!(c[1].ticket, b"ticket");
            assert_eq!((c[1].end_time, c[1].session_enctype), (1_900_000_000, 18));
        }
    }

    #[test]
    fn refuses_garbage_and_truncation() {
        assert!(matches!(parse(b""), Err(CcacheError::Version(_))));
        assert!(matches!(parse(b"\x05\x02xx"), Err(CcacheError::Version(_))));
        let b = build(0x0504, &[(&["afs", "cell"], "R", b"ticket")]);
        for n in 0..b.len() {
            // A prefix ending right after the default principal is an empty cache.
            if let Ok(c) = parse(&b[..n]) {
                assert!(c.is_empty(), "prefix {n}");
            }
        }
        let mut many = b[..16].to_vec();
        many.extend_from_slice(&1u32.to_be_bytes());
        many.extend_from_slice(&1000u32.to_be_bytes());
        assert_eq!(parse(&many), Err(CcacheError::TooManyComponents(1000)));
    }

    /// A real cache: `kinit -k -t admin.keytab` then `kvno afs/seed.cell` against MIT 1.20
    /// (a throwaway realm; also the fuzzer's seed).
    #[test]
    fn reads_what_kinit_and_kvno_wrote() {
        let b = include_bytes!("../../fixtures/seeds/ccache/kinit-kvno-aes256");
        let c = parse(b).unwrap();
        let servers: Vec<&str> = c.iter().map(|c| c.server.as_str()).collect();
        assert_eq!(
            servers,
            ["krbtgt/SEED.REALM@SEED.REALM", "afs/seed.cell@SEED.REALM"]
        );
        assert!(c.iter().all(|c| c.client == "afskeys/admin@SEED.REALM"));
        let t = crate::authdb::ticket::decode_ticket(&c[1].ticket, c[1].end_time).unwrap();
        assert_eq!(
            (t.principal.as_str(), t.kvno, t.enctype),
            ("afs/seed.cell@SEED.REALM", 1, 18)
        );
        assert_eq!(t.open(&[]), crate::authdb::ticket::Opening::NoKey);
    }
}

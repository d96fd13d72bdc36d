//! MIT/Heimdal keytab files (version 0x0502): parse and write. Pure, no I/O.
//!
//! ```text
//! 05 02
//! entries of: int32 length (negative: a hole of that many bytes; 0 or end of file: the end)
//!   uint16 component count (realm not counted) · counted realm · counted components
//!   uint32 name type · uint32 timestamp · uint8 kvno · uint16 enctype
//!   uint16 key length · key · [uint32 kvno, when the entry has room; overrides if non-zero]
//! ```
//! All integers big-endian; a counted string is a uint16 length and the bytes.

use zeroize::Zeroizing;

/// Why bytes are not a keytab, or a name not a principal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeytabFormatError {
    #[error("keytab version 0x0501 (host byte order) is not supported")]
    HostByteOrder,
    #[error("not a keytab (starts {0:02x} {1:02x})")]
    NotAKeytab(u8, u8),
    #[error("not a keytab (shorter than 2 bytes)")]
    TooShort,
    #[error("offset {offset}: entry length {len} is invalid")]
    EntryLength { offset: usize, len: i32 },
    #[error("offset {offset}: entry of {n} bytes runs past the end of the file ({size} bytes)")]
    EntryPastEnd {
        offset: usize,
        n: usize,
        size: usize,
    },
    #[error("offset {offset}: {what} runs past the end of its entry")]
    FieldPastEnd { offset: usize, what: &'static str },
    #[error("{0:?} ends with a backslash")]
    TrailingBackslash(String),
    #[error("{0:?} is not a principal name/instance@REALM")]
    NotAPrincipal(String),
}

#[derive(Debug)]
pub struct Entry {
    pub realm: Vec<u8>,
    pub components: Vec<Vec<u8>>,
    pub kvno: u32,
    pub enctype: u16,
    pub key: Zeroizing<Vec<u8>>,
}

impl Entry {
    /// The name as MIT prints it: components joined by `/`, then `@` and the realm,
    /// with `/`, `@` and `\` escaped.
    pub fn principal(&self) -> String {
        fn esc(out: &mut String, b: &[u8]) {
            for c in String::from_utf8_lossy(b).chars() {
                if matches!(c, '/' | '@' | '\\') {
                    out.push('\\');
                }
                out.push(c);
            }
        }
        let mut s = String::new();
        for (i, c) in self.components.iter().enumerate() {
            if i > 0 {
                s.push('/');
            }
            esc(&mut s, c);
        }
        s.push('@');
        esc(&mut s, &self.realm);
        s
    }
}

struct Cursor<'a> {
    b: &'a [u8],
    pos: usize,
    end: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], KeytabFormatError> {
        if self.end - self.pos < n {
            return Err(KeytabFormatError::FieldPastEnd {
                offset: self.pos,
                what,
            });
        }
        let s = &self.b[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn u8(&mut self, what: &'static str) -> Result<u8, KeytabFormatError> {
        Ok(self.take(1, what)?[0])
    }
    fn u16(&mut self, what: &'static str) -> Result<u16, KeytabFormatError> {
        let s = self.take(2, what)?;
        Ok(u16::from_be_bytes([s[0], s[1]]))
    }
    fn u32(&mut self, what: &'static str) -> Result<u32, KeytabFormatError> {
        let s = self.take(4, what)?;
        Ok(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn counted(&mut self, what: &'static str) -> Result<Vec<u8>, KeytabFormatError> {
        let n = self.u16(what)? as usize;
        Ok(self.take(n, what)?.to_vec())
    }
}

pub fn parse(b: &[u8]) -> Result<Vec<Entry>, KeytabFormatError> {
    match b {
        [0x05, 0x02, ..] => {}
        [0x05, 0x01, ..] => return Err(KeytabFormatError::HostByteOrder),
        [a, c, ..] => return Err(KeytabFormatError::NotAKeytab(*a, *c)),
        _ => return Err(KeytabFormatError::TooShort),
    }
    let mut out = Vec::new();
    let mut pos = 2usize;
    while b.len() - pos >= 4 {
        let len = i32::from_be_bytes([b[pos], b[pos + 1], b[pos + 2], b[pos + 3]]);
        let start = pos + 4;
        if len == 0 {
            break;
        }
        if len == i32::MIN {
            return Err(KeytabFormatError::EntryLength { offset: pos, len });
        }
        let n = len.unsigned_abs() as usize;
        if b.len() - start < n {
            return Err(KeytabFormatError::EntryPastEnd {
                offset: pos,
                n,
                size: b.len(),
            });
        }
        pos = start + n;
        if len < 0 {
            continue; // a hole left by a deleted entry
        }
        let mut c = Cursor {
            b,
            pos: start,
            end: start + n,
        };
        let count = c.u16("component count")?;
        let realm = c.counted("realm")?;
        let mut components = Vec::with_capacity(count as usize);
        for _ in 0..count {
            components.push(c.counted("name component")?);
        }
        let _name_type = c.u32("name type")?;
        let _timestamp = c.u32("timestamp")?;
        let kvno8 = c.u8("kvno")?;
        let enctype = c.u16("enctype")?;
        let klen = c.u16("key length")? as usize;
        let key = Zeroizing::new(c.take(klen, "key")?.to_vec());
        let mut kvno = u32::from(kvno8);
        if c.end - c.pos >= 4 {
            let kvno32 = c.u32("32-bit kvno")?;
            if kvno32 != 0 {
                kvno = kvno32;
            }
        }
        out.push(Entry {
            realm,
            components,
            kvno,
            enctype,
            key,
        });
    }
    Ok(out)
}

/// Split `name/inst@REALM` (backslash escapes honoured) into components and realm.
pub fn split_principal(p: &str) -> Result<(Vec<Vec<u8>>, Vec<u8>), KeytabFormatError> {
    let mut comps = vec![Vec::new()];
    let mut realm: Option<Vec<u8>> = None;
    let mut chars = p.chars();
    while let Some(c) = chars.next() {
        let in_realm = realm.is_some();
        let (c, escaped) = match c {
            '\\' => (
                chars
                    .next()
                    .ok_or_else(|| KeytabFormatError::TrailingBackslash(p.to_string()))?,
                true,
            ),
            c => (c, false),
        };
        match c {
            '/' if !escaped && !in_realm => comps.push(Vec::new()),
            '@' if !escaped && !in_realm => realm = Some(Vec::new()),
            c => {
                let cur = match &mut realm {
                    Some(r) => r,
                    None => comps.last_mut().expect("at least one component"),
                };
                let mut b = [0u8; 4];
                cur.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
            }
        }
    }
    match realm {
        Some(r) if !r.is_empty() && comps.iter().all(|c| !c.is_empty()) => Ok((comps, r)),
        _ => Err(KeytabFormatError::NotAPrincipal(p.to_string())),
    }
}

/// A keytab (version 0x0502) holding `entries`, each with a 32-bit kvno after the key.
/// `timestamp` is the seconds since the epoch recorded in each entry.
pub fn write(entries: &[Entry], timestamp: u32) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(vec![0x05, 0x02]);
    for e in entries {
        let mut b = Zeroizing::new(Vec::new());
        b.extend_from_slice(&(e.components.len() as u16).to_be_bytes());
        b.extend_from_slice(&(e.realm.len() as u16).to_be_bytes());
        b.extend_from_slice(&e.realm);
        for c in &e.components {
            b.extend_from_slice(&(c.len() as u16).to_be_bytes());
            b.extend_from_slice(c);
        }
        b.extend_from_slice(&1u32.to_be_bytes()); // KRB5_NT_PRINCIPAL
        b.extend_from_slice(&timestamp.to_be_bytes());
        b.push(e.kvno as u8);
        b.extend_from_slice(&e.enctype.to_be_bytes());
        b.extend_from_slice(&(e.key.len() as u16).to_be_bytes());
        b.extend_from_slice(&e.key);
        b.extend_from_slice(&e.kvno.to_be_bytes());
        out.extend_from_slice(&(b.len() as i32).to_be_bytes());
        out.extend_from_slice(&b);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One keytab entry as MIT writes it; `kvno32`: the trailing 32-bit kvno, if any;
    /// `pad`: extra bytes inside the entry after it.
    fn entry(
        comps: &[&str],
        realm: &str,
        kvno8: u8,
        kvno32: Option<u32>,
        enctype: u16,
        key: &[u8],
        pad: usize,
    ) -> Vec<u8> {
        let mut e = Vec::new();
        e.extend_from_slice(&(comps.len() as u16).to_be_bytes());
        e.extend_from_slice(&(realm.len() as u16).to_be_bytes());
        e.extend_from_slice(realm.as_bytes());
        for c in comps {
            e.extend_from_slice(&(c.len() as u16).to_be_bytes());
            e.extend_from_slice(c.as_bytes());
        }
        e.extend_from_slice(&1u32.to_be_bytes()); // KRB5_NT_PRINCIPAL
        e.extend_from_slice(&0x6b06_cc49u32.to_be_bytes());
        e.push(kvno8);
        e.extend_from_slice(&enctype.to_be_bytes());
        e.extend_from_slice(&(key.len() as u16).to_be_bytes());
        e.extend_from_slice(key);
        if let Some(k) = kvno32 {
            e.extend_from_slice(&k.to_be_bytes());
        }
        e.extend(std::iter::repeat_n(0u8, pad));
        let mut out = (e.len() as i32).to_be_bytes().to_vec();
        out.extend(e);
        out
    }

    #[test]
    fn keytab_entries_holes_and_32bit_kvno() {
        let mut kt = vec![0x05, 0x02];
        // kvno 300: the 8-bit field holds 300 & 0xff, the 32-bit one the real value.
        kt.extend(entry(
            &["afs", "x.org"],
            "X.ORG",
            44,
            Some(300),
            18,
            &[7; 32],
            0,
        ));
        // A hole of 20 bytes left by a deleted entry.
        kt.extend((-20i32).to_be_bytes());
        kt.extend([0xee; 20]);
        // No 32-bit field (an old writer): the 8-bit kvno counts.
        kt.extend(entry(&["afs", "x.org"], "X.ORG", 5, None, 17, &[8; 16], 0));
        // A 32-bit field of zero does not override; trailing room inside the entry is skipped.
        kt.extend(entry(&["afs"], "X.ORG", 6, Some(0), 17, &[9; 16], 3));
        // Length 0 ends the file even with bytes after it.
        kt.extend(0i32.to_be_bytes());
        kt.extend([1, 2, 3]);

        let es = parse(&kt).unwrap();
        assert_eq!(es.len(), 3);
        assert_eq!(es[0].principal(), "afs/x.org@X.ORG");
        assert_eq!((es[0].kvno, es[0].enctype), (300, 18));
        assert_eq!(es[0].key.as_slice(), &[7; 32]);
        assert_eq!((es[1].kvno, es[1].enctype), (5, 17));
        assert_eq!(es[1].key.as_slice(), &[8; 16]);
        assert_eq!(es[2].principal(), "afs@X.ORG");
        assert_eq!(es[2].kvno, 6);
        assert_eq!(es[2].key.as_slice(), &[9; 16]);
    }

    #[test]
    fn keytab_errors() {
        assert!(parse(b"").unwrap_err().to_string().contains("shorter"));
        assert!(parse(&[5, 1, 0, 0])
            .unwrap_err()
            .to_string()
            .contains("0x0501"));
        assert!(parse(&[1, 2])
            .unwrap_err()
            .to_string()
            .contains("not a keytab"));
        // Only the version: an empty keytab.
        assert!(parse(&[5, 2]).unwrap().is_empty());
        // An entry longer than the file.
        let mut kt = vec![5, 2];
        kt.extend(entry(&["afs"], "R", 1, Some(1), 17, &[1; 16], 0));
        let cut = &kt[..kt.len() - 1];
        assert!(parse(cut)
            .unwrap_err()
            .to_string()
            .contains("past the end of the file"));
        // A hole longer than the file.
        let mut kt = vec![5, 2];
        kt.extend((-100i32).to_be_bytes());
        assert!(parse(&kt).unwrap_err().to_string().contains("past the end"));
        // A key length beyond its entry.
        let mut kt = vec![5, 2];
        let mut e = entry(&["afs"], "R", 1, None, 17, &[1; 16], 0);
        let n = e.len();
        e[n - 18] = 0x01; // key length 16 -> 0x0110
        kt.extend(e);
        assert!(parse(&kt)
            .unwrap_err()
            .to_string()
            .contains("key runs past"));
        // i32::MIN is not a hole.
        let mut kt = vec![5, 2];
        kt.extend(i32::MIN.to_be_bytes());
        assert!(parse(&kt).unwrap_err().to_string().contains("invalid"));
    }

    #[test]
    fn write_then_parse() {
        let (components, realm) = split_principal("afs/example.com@EXAMPLE.COM").unwrap();
        let es = vec![
            Entry {
                realm: realm.clone(),
                components: components.clone(),
                kvno: 300,
                enctype: 18,
                key: Zeroizing::new(vec![1; 32]),
            },
            Entry {
                realm,
                components,
                kvno: 5,
                enctype: 17,
                key: Zeroizing::new(vec![2; 16]),
            },
        ];
        let back = parse(&write(&es, 1_700_000_000)).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back[0].principal(), "afs/example.com@EXAMPLE.COM");
        assert_eq!(
            (back[0].kvno, back[0].enctype, &back[0].key[..]),
            (300, 18, &[1u8; 32][..])
        );
        assert_eq!((back[1].kvno, back[1].enctype), (5, 17));
        assert!(split_principal("afs/x").is_err());
        assert_eq!(split_principal("a\\/b@R").unwrap().0, vec![b"a/b".to_vec()]);
    }
}

//! Proof by tickets: a real service ticket for the afs principal, fetched from the KDC and
//! opened with the keys each server holds. It proves what no checksum comparison can: that
//! the KDC seals tokens with exactly the key bytes the servers have — even when the KDC's key
//! was changed at the same kvno behind afskeys' back (`cpw -randkey`, then `modprinc -kvno`).
//!
//! How (chosen among a Rust AS/TGS client, libkrb5 by FFI, and MIT's client tools):
//! - MIT's own client tools get the ticket: `kinit -k -t ADMIN_KEYTAB -c FILE:<dir>/cc ADMIN`
//!   (the AS exchange, authenticated by the admin keytab, nothing prompts), then
//!   `kvno -c FILE:<dir>/cc afs/…` (the TGS exchange). `<dir>` is a private 0700 temporary
//!   directory, its files zeroed and removed afterwards; argv carries only names and paths,
//!   never a key. They speak to an MIT or a Heimdal KDC alike, honour `KRB5_CONFIG`, and
//!   nothing is linked into afskeys: commands that never prove a ticket load no new library.
//! - The credential cache (a small documented binary format) is read by [`super::ccache`]
//!   (fuzzed: `fuzz/fuzz_targets/ccache.rs`); the Ticket's ASN.1 is decoded and its
//!   enc-part decrypted (RFC 3961/3962: key usage 2, HMAC checked) by the `picky-krb` crate
//!   (Devolutions, MIT/Apache, pure Rust; it shares `aes`, `des`, `hmac`, `sha1`, `pbkdf2` with
//!   afskeys). It opens aes256-cts-hmac-sha1-96 (18), aes128-cts-hmac-sha1-96 (17) and
//!   des3-cbc-sha1 (16); it does not open arcfour-hmac (23), which Heimdal also makes: a
//!   ticket sealed with that is an error naming the enctype, never a verdict on any server.
//! - The KDC seals the ticket with the principal's strongest permitted key, whatever the
//!   client asks: one exchange proves one (kvno, enctype), the one tokens are really made
//!   with. The enctypes the KDC holds at that kvno (from `getprinc`) are reported beside
//!   those each server holds, so a missing enctype shows even where no ticket can test it.

use super::ccache;
use super::private::PrivateDir;
use super::AuthDbError;
use crate::keys::{Key, KeyType};
use picky_krb::crypto::CipherSuite;
use picky_krb::data_types::{EncTicketPart, Ticket};
use serde::Serialize;
use std::path::PathBuf;
use std::process::Command;

/// RFC 4120 key usage of a ticket's enc-part (AS-REP / TGS-REP ticket).
pub const KEY_USAGE_TICKET: i32 = 2;

/// Where the ticket proof went wrong (the proof itself, a key not opening the ticket, is not
/// an error: it is the answer).
#[derive(Debug, thiserror::Error)]
pub enum TicketError {
    #[error("cannot run {program}: {source} (install krb5-user, or name it in [authdb])")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("getting a ticket: `{command}` failed: {message}")]
    Tool { command: String, message: String },
    #[error("the credential cache kinit and kvno filled is unreadable: {0}")]
    Ccache(#[source] ccache::CcacheError),
    #[error("the credential cache holds no ticket for {0}")]
    NoTicket(String),
    #[error("the KDC's ticket for {principal} is not a Kerberos ticket: {source}")]
    Der {
        principal: String,
        #[source]
        source: picky_asn1_der::Asn1DerError,
    },
    #[error("the KDC's ticket for {principal} has kvno {kvno}, out of range")]
    Kvno { principal: String, kvno: i64 },
    #[error(
        "the KDC sealed the ticket for {principal} with enctype {enctype}, which afskeys \
         cannot open (it opens 18, 17 and 16)"
    )]
    Enctype { principal: String, enctype: i32 },
    #[error("the admin keytab is needed for a ticket: {0}")]
    NoClient(String),
}

/// How to get tickets: the admin principal's keytab and the client programs.
#[derive(Debug, Clone)]
pub struct TicketClient {
    pub admin_principal: String,
    pub admin_keytab: PathBuf,
    /// `kinit` unless configured otherwise.
    pub kinit: String,
    /// `kvno` unless configured otherwise.
    pub kvno: String,
    /// Extra environment for the children (they also inherit this process's).
    pub env: Vec<(String, String)>,
    /// How long each of kinit and kvno may take before it is killed.
    pub deadline: std::time::Duration,
}

/// A service ticket as the KDC issued it, still sealed.
#[derive(Debug, Clone)]
pub struct ServiceTicket {
    /// The service principal, canonical (`afs/cell@REALM`).
    pub principal: String,
    /// The kvno of the key the KDC sealed it with.
    pub kvno: i32,
    /// The enctype of that key.
    pub enctype: i32,
    /// When the ticket expires (seconds since the epoch).
    pub end_time: u32,
    suite: CipherSuite,
    cipher: Vec<u8>,
}

/// What one server's keys do with the ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Opening {
    /// A key at the ticket's (kvno, enctype) opened it: the server accepts the KDC's tokens.
    Opened,
    /// The server has a key at that (kvno, enctype) and it does not open the ticket.
    DidNotOpen,
    /// The server has no key at that (kvno, enctype).
    NoKey,
}

impl Opening {
    /// The words reports use.
    pub fn describe(self) -> &'static str {
        match self {
            Opening::Opened => "opened",
            Opening::DidNotOpen => "does not open",
            Opening::NoKey => "no key of that kvno and enctype",
        }
    }
}

/// One server's part of the proof.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServerProof {
    pub server: String,
    pub opening: Opening,
    /// The enctypes of the server's rxkad_krb5 keys at the ticket's kvno.
    pub enctypes_held: Vec<i32>,
}

/// The whole proof: the ticket, the KDC's enctypes at its kvno, each server's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TicketProof {
    pub principal: String,
    pub kvno: i32,
    pub enctype: i32,
    /// Seconds since the epoch.
    pub end_time: u32,
    /// The enctypes the KDC holds at `kvno` (from getprinc); empty when not known.
    pub kdc_enctypes: Vec<i32>,
    pub servers: Vec<ServerProof>,
}

impl TicketProof {
    /// True when every server opened the ticket.
    pub fn all_opened(&self) -> bool {
        self.servers.iter().all(|s| s.opening == Opening::Opened)
    }
}

impl TicketClient {
    /// A service ticket for `service` from the KDC (AS exchange with the admin keytab, then
    /// TGS), in a private credential cache removed before this returns.
    pub fn fetch(&self, service: &str) -> Result<ServiceTicket, AuthDbError> {
        let dir = PrivateDir::new(
            "afskeys-ticket-",
            "cannot make a private directory for the credential cache",
        )?;
        let (cc_path, cc) = dir.file("cc")?;
        let cc = format!("FILE:{cc}");
        crate::store::trust::check_secret(&self.admin_keytab)?;
        let keytab = self.admin_keytab.to_string_lossy().into_owned();
        self.run(
            &self.kinit,
            &["-k", "-t", &keytab, "-c", &cc, &self.admin_principal],
        )?;
        self.run(&self.kvno, &["-c", &cc, service])?;
        let bytes = dir
            .read(&cc_path, "cannot read the credential cache")?
            .ok_or_else(|| TicketError::NoTicket(service.to_string()))?;
        let creds = ccache::parse(&bytes).map_err(TicketError::Ccache)?;
        let cred = creds
            .iter()
            .rev()
            .find(|c| same_principal(&c.server, service))
            .ok_or_else(|| TicketError::NoTicket(service.to_string()))?;
        Ok(decode_ticket(&cred.ticket, cred.end_time)?)
    }

    fn run(&self, program: &str, args: &[&str]) -> Result<(), TicketError> {
        let mut c = Command::new(program);
        c.args(args)
            .env("LC_ALL", "C")
            .env_remove("LANGUAGE")
            .env_remove("KRB5CCNAME");
        for (k, v) in &self.env {
            c.env(k, v);
        }
        let out = crate::child::run_command(c, None, self.deadline, crate::child::OUTPUT_CAP)
            .map_err(|e| match e {
                crate::child::ChildError::Spawn { source, .. } => TicketError::Spawn {
                    program: program.to_string(),
                    source,
                },
                e => TicketError::Tool {
                    command: format!("{program} {}", args.join(" ")),
                    message: e.to_string(),
                },
            })?;
        if out.status.success() {
            return Ok(());
        }
        let message = out
            .stderr
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("; ");
        Err(TicketError::Tool {
            command: format!("{program} {}", args.join(" ")),
            message: if message.is_empty() {
                format!("exit status {}", out.status)
            } else {
                message
            },
        })
    }
}

/// `afs/cell@R` names the same principal as `afs/cell` when the realm is left out.
fn same_principal(full: &str, asked: &str) -> bool {
    full == asked || (!asked.contains('@') && full.split('@').next() == Some(asked))
}

/// Does every DER element in `der` (recursively, into constructed ones) have a definite
/// length of at most 4 length bytes that fits inside its parent? picky-asn1-der 0.5 adds an
/// element's length without checking (a length of 2^64-1 overflows: found by the `ccache`
/// fuzz target), so lengths are checked here first. Nothing else of DER is interpreted.
fn der_lengths_fit(der: &[u8], depth: usize) -> bool {
    if depth > 32 {
        return false;
    }
    let mut rest = der;
    while !rest.is_empty() {
        let Some((&tag, after_tag)) = rest.split_first() else {
            return false;
        };
        if tag & 0x1f == 0x1f {
            return false; // high tag numbers: Kerberos uses none
        }
        let Some((&first, after_len)) = after_tag.split_first() else {
            return false;
        };
        let (len, body) = match first {
            0..=0x7f => (usize::from(first), after_len),
            0x81..=0x84 => {
                let n = usize::from(first & 0x7f);
                if after_len.len() < n {
                    return false;
                }
                let len = after_len[..n]
                    .iter()
                    .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
                (len, &after_len[n..])
            }
            _ => return false, // indefinite (0x80) or more than 4 length bytes
        };
        if body.len() < len {
            return false;
        }
        if tag & 0x20 != 0 && !der_lengths_fit(&body[..len], depth + 1) {
            return false;
        }
        rest = &body[len..];
    }
    true
}

/// Decode the DER Ticket `der`: who it is for, the kvno and enctype of the sealing key.
pub fn decode_ticket(der: &[u8], end_time: u32) -> Result<ServiceTicket, TicketError> {
    if !der_lengths_fit(der, 0) {
        return Err(TicketError::Der {
            principal: "the service".into(),
            source: picky_asn1_der::Asn1DerError::TruncatedData,
        });
    }
    let t: Ticket = picky_asn1_der::from_bytes(der).map_err(|source| TicketError::Der {
        principal: "the service".into(),
        source,
    })?;
    let t = &t.0;
    let names: Vec<String> = t
        .sname
        .0
        .name_string
        .0
         .0
        .iter()
        .map(|s| s.0.to_string())
        .collect();
    let principal = format!("{}@{}", names.join("/"), t.realm.0 .0);
    let enc = &t.enc_part.0;
    let enctype = int(&enc.etype.0 .0).unwrap_or(i64::MIN);
    let kvno = enc
        .kvno
        .0
        .as_ref()
        .map(|k| int(&k.0 .0).unwrap_or(-1))
        .unwrap_or(0);
    let kvno = i32::try_from(kvno)
        .ok()
        .filter(|k| *k >= 0)
        .ok_or_else(|| TicketError::Kvno {
            principal: principal.clone(),
            kvno,
        })?;
    let enctype_i32 = i32::try_from(enctype).unwrap_or(i32::MIN);
    let suite = usize::try_from(enctype)
        .ok()
        .and_then(|e| CipherSuite::try_from(e).ok())
        .ok_or_else(|| TicketError::Enctype {
            principal: principal.clone(),
            enctype: enctype_i32,
        })?;
    Ok(ServiceTicket {
        principal,
        kvno,
        enctype: enctype_i32,
        end_time,
        suite,
        cipher: enc.cipher.0 .0.clone(),
    })
}

/// A DER INTEGER's content octets as an i64 (`None` past 64 bits or empty).
fn int(be: &[u8]) -> Option<i64> {
    if be.is_empty() || be.len() > 8 {
        return None;
    }
    let neg = be[0] & 0x80 != 0;
    let mut v: i64 = if neg { -1 } else { 0 };
    for &b in be {
        v = (v << 8) | i64::from(b);
    }
    Some(v)
}

impl ServiceTicket {
    /// True when `key` opens the ticket: its HMAC checks and the plaintext is an
    /// EncTicketPart. The key must be of the ticket's enctype.
    pub fn opens_with(&self, key: &[u8]) -> bool {
        let cipher = self.suite.cipher();
        if key.len() != cipher.key_size() {
            return false;
        }
        match cipher.decrypt(key, KEY_USAGE_TICKET, &self.cipher) {
            Ok(plain) => {
                let plain = zeroize::Zeroizing::new(plain);
                picky_asn1_der::from_bytes::<EncTicketPart>(&plain).is_ok()
            }
            Err(_) => false,
        }
    }

    /// What `keys` (one server's) do with the ticket: only a key at the ticket's kvno and
    /// enctype (rxkad_krb5) is tried.
    pub fn open(&self, keys: &[Key]) -> Opening {
        let mut tried = false;
        for k in keys.iter().filter(|k| {
            k.key_type() == KeyType::RxkadKrb5
                && k.kvno() == self.kvno
                && k.id.subtype == self.enctype
        }) {
            tried = true;
            if self.opens_with(k.bytes()) {
                return Opening::Opened;
            }
        }
        if tried {
            Opening::DidNotOpen
        } else {
            Opening::NoKey
        }
    }

    /// The proof for every server (`(name, keys)`), with the KDC's enctypes at the kvno.
    pub fn prove(&self, kdc_enctypes: Vec<i32>, servers: &[(&str, &[Key])]) -> TicketProof {
        let servers = servers
            .iter()
            .map(|(name, keys)| {
                let mut held: Vec<i32> = keys
                    .iter()
                    .filter(|k| k.key_type() == KeyType::RxkadKrb5 && k.kvno() == self.kvno)
                    .map(|k| k.id.subtype)
                    .collect();
                held.dedup();
                ServerProof {
                    server: name.to_string(),
                    opening: self.open(keys),
                    enctypes_held: held,
                }
            })
            .collect();
        TicketProof {
            principal: self.principal.clone(),
            kvno: self.kvno,
            enctype: self.enctype,
            end_time: self.end_time,
            kdc_enctypes,
            servers,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_lengths_that_do_not_fit_are_refused_before_decoding() {
        // Found by the ccache fuzz target: [APPLICATION 1] with an 8-byte length 2^64-1.
        let mut der = vec![0x61, 0x88];
        der.extend([0xff; 8]);
        der.extend([0x30, 0x00]);
        assert!(!der_lengths_fit(&der, 0));
        assert!(decode_ticket(&der, 0).is_err());
        assert!(der_lengths_fit(&[0x61, 0x04, 0x30, 0x02, 0x02, 0x00], 0));
        assert!(!der_lengths_fit(&[0x61, 0x05, 0x30, 0x02, 0x02, 0x00], 0));
        assert!(!der_lengths_fit(&[0x30, 0x80, 0x00, 0x00], 0));
    }
    use crate::keys::KeyId;
    use picky_asn1::restricted_string::Ia5String;
    use picky_asn1::wrapper::*;
    use picky_krb::data_types::*;
    use zeroize::Zeroizing;

    fn key(kvno: i32, enctype: i32, b: u8) -> Key {
        Key::new(
            KeyId {
                key_type: KeyType::RxkadKrb5,
                kvno,
                subtype: enctype,
            },
            Zeroizing::new(vec![
                b;
                match enctype {
                    17 => 16,
                    16 => 24,
                    _ => 32,
                }
            ]),
        )
    }

    fn gs(s: &str) -> GeneralStringAsn1 {
        GeneralStringAsn1::from(Ia5String::from_string(s.into()).unwrap())
    }

    /// A real-shaped ticket for afs/cell@R sealed with `k` (a minimal EncTicketPart).
    pub(crate) fn sealed_ticket(k: &Key) -> Vec<u8> {
        let part = EncTicketPart::from(EncTicketPartInner {
            flags: ExplicitContextTag0::from(KerberosFlags::from(
                picky_asn1::bit_string::BitString::with_len(32),
            )),
            key: ExplicitContextTag1::from(EncryptionKey {
                key_type: ExplicitContextTag0::from(IntegerAsn1::from(vec![18])),
                key_value: ExplicitContextTag1::from(OctetStringAsn1::from(vec![7; 32])),
            }),
            crealm: ExplicitContextTag2::from(gs("R")),
            cname: ExplicitContextTag3::from(PrincipalName {
                name_type: ExplicitContextTag0::from(IntegerAsn1::from(vec![1])),
                name_string: ExplicitContextTag1::from(Asn1SequenceOf::from(vec![gs("a")])),
            }),
            transited: ExplicitContextTag4::from(TransitedEncoding {
                tr_type: ExplicitContextTag0::from(IntegerAsn1::from(vec![1])),
                contents: ExplicitContextTag1::from(OctetStringAsn1::from(vec![])),
            }),
            auth_time: ExplicitContextTag5::from(GeneralizedTimeAsn1::from(
                picky_asn1::date::GeneralizedTime::new(2026, 12, 1, 0, 0, 0).unwrap(),
            )),
            starttime: Optional::from(None),
            endtime: ExplicitContextTag7::from(GeneralizedTimeAsn1::from(
                picky_asn1::date::GeneralizedTime::new(2026, 12, 2, 0, 0, 0).unwrap(),
            )),
            renew_till: Optional::from(None),
            caddr: Optional::from(None),
            authorization_data: Optional::from(None),
        });
        let plain = picky_asn1_der::to_vec(&part).unwrap();
        let suite = CipherSuite::try_from(k.id.subtype as usize).unwrap();
        let cipher = suite
            .cipher()
            .encrypt(k.bytes(), KEY_USAGE_TICKET, &plain)
            .unwrap();
        let t = Ticket::from(TicketInner {
            tkt_vno: ExplicitContextTag0::from(IntegerAsn1::from(vec![5])),
            realm: ExplicitContextTag1::from(gs("R")),
            sname: ExplicitContextTag2::from(PrincipalName {
                name_type: ExplicitContextTag0::from(IntegerAsn1::from(vec![2])),
                name_string: ExplicitContextTag1::from(Asn1SequenceOf::from(vec![
                    gs("afs"),
                    gs("cell"),
                ])),
            }),
            enc_part: ExplicitContextTag3::from(EncryptedData {
                etype: ExplicitContextTag0::from(IntegerAsn1::from(vec![k.id.subtype as u8])),
                kvno: Optional::from(Some(ExplicitContextTag1::from(IntegerAsn1::from(vec![
                    k.kvno() as u8,
                ])))),
                cipher: ExplicitContextTag2::from(OctetStringAsn1::from(cipher)),
            }),
        });
        picky_asn1_der::to_vec(&t).unwrap()
    }

    #[test]
    fn opens_with_the_sealing_key_only() {
        let good = key(3, 18, 0x11);
        let t = decode_ticket(&sealed_ticket(&good), 99).unwrap();
        assert_eq!(
            (t.principal.as_str(), t.kvno, t.enctype, t.end_time),
            ("afs/cell@R", 3, 18, 99)
        );
        let other = key(3, 18, 0x12);
        let aes128 = key(3, 17, 0x11);
        let old = key(2, 18, 0x11);
        assert_eq!(t.open(std::slice::from_ref(&good)), Opening::Opened);
        assert_eq!(t.open(std::slice::from_ref(&other)), Opening::DidNotOpen);
        assert_eq!(t.open(&[aes128.clone(), old.clone()]), Opening::NoKey);
        let fs1 = [good.clone(), aes128.clone()];
        let fs2 = [other, aes128];
        let p = t.prove(
            vec![18, 17],
            &[("fs1", &fs1), ("fs2", &fs2), ("fs3", &[old])],
        );
        assert!(!p.all_opened());
        let got: Vec<_> = p
            .servers
            .iter()
            .map(|s| (s.server.as_str(), s.opening, s.enctypes_held.clone()))
            .collect();
        assert_eq!(
            got,
            [
                ("fs1", Opening::Opened, vec![18, 17]),
                ("fs2", Opening::DidNotOpen, vec![18, 17]),
                ("fs3", Opening::NoKey, vec![])
            ]
        );
        assert_eq!(
            serde_json::to_value(&p.servers[1]).unwrap()["opening"],
            "did_not_open"
        );
        // aes128 tickets open too.
        let k17 = key(5, 17, 0x33);
        let t = decode_ticket(&sealed_ticket(&k17), 0).unwrap();
        assert_eq!(t.open(&[k17]), Opening::Opened);
        // And des3-cbc-sha1 (Heimdal's second default enctype).
        let k16 = key(6, 16, 0x45);
        let t = decode_ticket(&sealed_ticket(&k16), 0).unwrap();
        assert_eq!(t.open(std::slice::from_ref(&k16)), Opening::Opened);
        assert_eq!(t.open(&[key(6, 16, 0x46)]), Opening::DidNotOpen);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(matches!(
            decode_ticket(b"\x61\x03\x02\x01\x05", 0),
            Err(TicketError::Der { .. })
        ));
        assert!(decode_ticket(b"", 0).is_err());
        let mut t = sealed_ticket(&key(3, 18, 1));
        let n = t.len();
        t[n - 1] ^= 1; // the cipher text: still decodes, no longer opens
        let t = decode_ticket(&t, 0).unwrap();
        assert_eq!(t.open(&[key(3, 18, 1)]), Opening::DidNotOpen);
        // An arcfour-hmac (23) ticket is an error naming the enctype, not a verdict.
        let mut rc4 = sealed_ticket(&key(3, 18, 1));
        let at = rc4
            .windows(5)
            .position(|w| w == [0xa0, 3, 2, 1, 18])
            .unwrap();
        rc4[at + 4] = 23;
        match decode_ticket(&rc4, 0) {
            Err(e @ TicketError::Enctype { enctype: 23, .. }) => {
                assert!(e.to_string().contains("enctype 23"), "{e}")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(int(&[0xff]), Some(-1));
        assert_eq!(int(&[0x00, 0x80]), Some(128));
        assert_eq!(int(&[]), None);
        assert!(same_principal("afs/c@R", "afs/c"));
        assert!(same_principal("afs/c@R", "afs/c@R"));
        assert!(!same_principal("afs/c@R", "afs/d"));
    }
}

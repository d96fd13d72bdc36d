//! What `getprinc -terse` says about a principal, parsed: the same record whether
//! `kadmin.local` prints it or remote `kadmin` (through kadmind) does — remotely the key data
//! lines still list each key's kvno, enctype and salt type (never its bytes), and field 5 is
//! the maximum ticket life in seconds (`Maximum ticket life: 1 day 00:00:00` in the long form).

use chrono::{DateTime, Utc};

/// `getprinc -terse` printed something this parser does not recognize.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TerseError(String);

/// One key held by a principal, as `getprinc -terse` lists it (no key bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyData {
    pub kvno: i32,
    pub enctype: i32,
    pub salt_type: i32,
}

/// What `getprinc -terse` says about a principal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrincipalInfo {
    /// The canonical name (with its realm).
    pub principal: String,
    /// The current kvno: the highest kvno of the keys held (0 when none).
    pub kvno: i32,
    /// Seconds since the epoch; 0 = never.
    pub last_pwd_change: i64,
    /// Seconds since the epoch.
    pub mod_date: i64,
    /// The principal's attribute flags (`DISALLOW_ALL_TIX` is 0x40).
    pub attributes: u32,
    /// The maximum ticket life in seconds (field 5; 0 = the realm's limit alone).
    pub max_life: i64,
    /// Every key held, newest first, as the KDC stores them.
    pub keys: Vec<KeyData>,
}

impl PrincipalInfo {
    /// When the key last changed: the last password change, else the last modification.
    pub fn changed(&self) -> DateTime<Utc> {
        let t = if self.last_pwd_change > 0 {
            self.last_pwd_change
        } else {
            self.mod_date
        };
        DateTime::from_timestamp(t, 0).unwrap_or_default()
    }

    /// The enctypes of the keys held at `kvno`, in the KDC's order, each once.
    pub fn enctypes_at(&self, kvno: i32) -> Vec<i32> {
        let mut v: Vec<i32> = Vec::new();
        for k in self.keys.iter().filter(|k| k.kvno == kvno) {
            if !v.contains(&k.enctype) {
                v.push(k.enctype);
            }
        }
        v
    }

    /// The afs entry this principal is, holding `keys` (`keys_read`: whether they were read
    /// from the KDC, not just given).
    pub fn entry(&self, keys: Vec<crate::keys::Key>, keys_read: bool) -> super::AfsEntry {
        super::AfsEntry {
            principal: self.principal.clone(),
            kvno: self.kvno,
            keys,
            changed: self.changed(),
            kdc: Some(super::KdcFacts {
                enctypes: self.enctypes_at(self.kvno),
                max_ticket_life: u64::try_from(self.max_life)
                    .ok()
                    .filter(|s| *s > 0)
                    .map(std::time::Duration::from_secs),
                keys_read,
                kvnos: self.kvnos_held(),
            }),
        }
    }

    /// The kvnos the KDC still holds keys for, highest first.
    pub fn kvnos_held(&self) -> Vec<i32> {
        let mut v: Vec<i32> = self.keys.iter().map(|k| k.kvno).collect();
        v.sort_unstable_by(|a, b| b.cmp(a));
        v.dedup();
        v
    }
}

/// Parse `getprinc -terse` output: `Ok(None)` when there is no record line.
///
/// Fields (tab-separated): 1 "name", 2 expiration, 3 last password change, 4 password
/// expiration, 5 max life, 6 "modified by", 7 modification date, 8 attributes, 9 kvno,
/// 10 master kvno, 11 "policy", 12 max renewable life, 13 last success, 14 last failure,
/// 15 failed count, 16 number of keys, then 4 per key: version, kvno, enctype, salt type.
pub fn parse_terse(stdout: &str) -> Result<Option<PrincipalInfo>, TerseError> {
    let Some(line) = stdout
        .lines()
        .find(|l| l.starts_with('"') && l.contains('\t'))
    else {
        return Ok(None);
    };
    let f: Vec<&str> = line.trim_end_matches(['\r', '\n']).split('\t').collect();
    if f.len() < 16 {
        return Err(TerseError(format!(
            "{} fields, at least 16 expected",
            f.len()
        )));
    }
    let unquote = |s: &str| -> Result<String, TerseError> {
        s.strip_prefix('"')
            .and_then(|s| s.strip_suffix('"'))
            .map(str::to_string)
            .ok_or_else(|| TerseError(format!("{s:?} is not a quoted name")))
    };
    fn num<T: std::str::FromStr>(f: &[&str], i: usize, what: &str) -> Result<T, TerseError> {
        f[i - 1].parse().map_err(|_| {
            TerseError(format!(
                "field {i} ({what}) is {:?}, not a number",
                f[i - 1]
            ))
        })
    }
    let n_keys: usize = num(&f, 16, "number of keys")?;
    // Checked: a count near usize::MAX must not wrap into a match (or a huge allocation).
    let expected = n_keys.checked_mul(4).and_then(|n| n.checked_add(16));
    if expected != Some(f.len()) {
        return Err(TerseError(format!(
            "{} fields for {n_keys} keys, {} expected",
            f.len(),
            expected.map_or_else(|| "more than can exist".to_string(), |n| n.to_string())
        )));
    }
    let mut keys = Vec::with_capacity(n_keys);
    for k in 0..n_keys {
        let base = 16 + 4 * k;
        keys.push(KeyData {
            kvno: num(&f, base + 2, "key kvno")?,
            enctype: num(&f, base + 3, "key enctype")?,
            salt_type: num(&f, base + 4, "key salt type")?,
        });
    }
    let attributes: i64 = num(&f, 8, "attributes")?;
    let max_life: i64 = num(&f, 5, "max life")?;
    if max_life < 0 {
        return Err(TerseError(format!(
            "field 5 (max life) is {max_life}, a negative life"
        )));
    }
    Ok(Some(PrincipalInfo {
        principal: unquote(f[0])?,
        last_pwd_change: num(&f, 3, "last password change")?,
        mod_date: num(&f, 7, "modification date")?,
        attributes: attributes as u32,
        max_life,
        kvno: num(&f, 9, "kvno")?,
        keys,
    }))
}
#[cfg(test)]
mod tests {
    use super::*;

    /// Real MIT 1.20 output (kadmin.local -q 'getprinc -terse P').
    const TERSE: &str = "Authenticating as principal root/admin@TEST.REALM with password.\n\
        \"afs/b@TEST.REALM\"\t0\t1795607625\t0\t86400\t\"root/admin@TEST.REALM\"\t1795607630\t0\t2\t1\t\"[none]\"\t0\t0\t0\t0\t4\t1\t2\t18\t0\t1\t2\t17\t0\t1\t1\t18\t0\t1\t1\t17\t0\n";

    #[test]
    fn a_huge_key_count_is_an_error_not_a_panic() {
        // Found by the kadmin_output fuzz target: 16 + 4 * n overflowed.
        let line = format!("\"a@R\"{}\t{}\n", "\t0".repeat(14), usize::MAX / 2);
        let e = parse_terse(&line).unwrap_err().to_string();
        assert!(e.contains("more than can exist"), "{e}");
    }

    #[test]
    fn terse_fields() {
        let i = parse_terse(TERSE).unwrap().unwrap();
        assert_eq!(i.principal, "afs/b@TEST.REALM");
        assert_eq!(i.kvno, 2);
        assert_eq!(i.last_pwd_change, 1795607625);
        assert_eq!(i.mod_date, 1795607630);
        assert_eq!(i.attributes, 0);
        assert_eq!(i.keys.len(), 4);
        assert_eq!(
            i.keys[2],
            KeyData {
                kvno: 1,
                enctype: 18,
                salt_type: 0
            }
        );
        assert_eq!(i.kvnos_held(), vec![2, 1]);
        assert_eq!(i.enctypes_at(1), vec![18, 17]);
        assert!(i.enctypes_at(3).is_empty());
        assert_eq!(i.max_life, 86400);
        assert_eq!(i.changed().timestamp(), 1795607625);
    }

    #[test]
    fn terse_no_keys_missing_and_garbage() {
        let none = "\"afs/d@R\"\t0\t0\t0\t86400\t\"root/admin@R\"\t1795607632\t64\t0\t1\t\"[none]\"\t0\t0\t0\t0\t0\n";
        let i = parse_terse(none).unwrap().unwrap();
        assert_eq!((i.kvno, i.attributes, i.keys.len()), (0, 64, 0));
        // Never changed its password: the modification date stands in.
        assert_eq!(i.changed().timestamp(), 1795607632);
        assert!(
            parse_terse("Authenticating as principal root/admin@R with password.\n")
                .unwrap()
                .is_none()
        );
        let short = "\"a@R\"\t0\t0\n";
        assert!(parse_terse(short)
            .unwrap_err()
            .to_string()
            .contains("at least 16"));
        let wrong_count = none.replace("\t0\n", "\t1\n");
        assert!(parse_terse(&wrong_count)
            .unwrap_err()
            .to_string()
            .contains("expected"));
        let bad_kvno = none.replace("\t64\t0\t", "\t64\tx\t");
        assert!(parse_terse(&bad_kvno)
            .unwrap_err()
            .to_string()
            .contains("field 9 (kvno)"));
    }

    /// Real remote output (`kadmin -s 127.0.0.1:PORT -p afskeys/admin@R -k -t KT -q
    /// 'getprinc -terse P'` against kadmind 1.20): the same record as kadmin.local's.
    const REMOTE: &str = "Authenticating as principal afskeys/admin@EXP.REALM with keytab /tmp/kdcexp/admin.keytab.\n\
        \"afs/c@EXP.REALM\"\t0\t1796164426\t0\t86400\t\"root/admin@EXP.REALM\"\t1796164426\t0\t1\t1\t\"[none]\"\t0\t0\t0\t0\t2\t1\t1\t18\t0\t1\t1\t17\t0\n";

    #[test]
    fn remote_terse_fields() {
        let i = parse_terse(REMOTE).unwrap().unwrap();
        assert_eq!(i.principal, "afs/c@EXP.REALM");
        assert_eq!((i.kvno, i.max_life), (1, 86400));
        assert_eq!(i.enctypes_at(1), vec![18, 17]);
        let huge = REMOTE.replace("\t86400\t", "\t99999999999999999999\t");
        assert!(parse_terse(&huge)
            .unwrap_err()
            .to_string()
            .contains("field 5 (max life)"));
    }
}

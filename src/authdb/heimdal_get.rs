//! What Heimdal's `kadmin get P` says about a principal, parsed (Heimdal 7.8): the
//! `Principal`, `Kvno`, `Max ticket life`, `Last password change`, `Last modified` lines and
//! `Keytypes: aes256-cts-hmac-sha1-96(pw-salt)[3], des3-cbc-sha1(pw-salt)[3], …` — each key's
//! enctype name, salt and kvno, never its bytes (local and through kadmind alike).

use super::getprinc::{KeyData, PrincipalInfo};
use chrono::NaiveDateTime;

/// `get` printed something this parser does not recognize.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct GetError(String);

/// The enctype names Heimdal prints, with their numbers.
const NAMES: &[(&str, i32)] = &[
    ("des-cbc-crc", 1),
    ("des-cbc-md4", 2),
    ("des-cbc-md5", 3),
    ("des3-cbc-sha1", 16),
    ("aes128-cts-hmac-sha1-96", 17),
    ("aes256-cts-hmac-sha1-96", 18),
    ("aes128-cts-hmac-sha256-128", 19),
    ("aes256-cts-hmac-sha384-192", 20),
    ("arcfour-hmac-md5", 23),
    ("camellia128-cts-cmac", 25),
    ("camellia256-cts-cmac", 26),
];

/// The number of an enctype name as Heimdal prints it.
pub fn enctype_number(name: &str) -> Option<i32> {
    NAMES.iter().find(|(n, _)| *n == name).map(|(_, e)| *e)
}

/// The record `get P` printed, as the MIT parser's [`PrincipalInfo`] (so both backends
/// share the entry building); `attributes` is always 0.
pub fn parse_get(stdout: &str) -> Result<PrincipalInfo, GetError> {
    let field = |name: &str| -> Option<&str> {
        stdout.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == name).then(|| v.trim())
        })
    };
    let need = |name: &str| field(name).ok_or_else(|| GetError(format!("no `{name}:` line")));
    let principal = need("Principal")?.to_string();
    let kvno: i32 = need("Kvno")?
        .parse()
        .map_err(|_| GetError(format!("Kvno {:?} is not a number", field("Kvno"))))?;
    let max_life = parse_life(need("Max ticket life")?)?;
    let time = |name: &str| field(name).and_then(parse_time).unwrap_or(0);
    let keys = match field("Keytypes") {
        Some(v) => parse_keytypes(v)?,
        None => Vec::new(),
    };
    Ok(PrincipalInfo {
        principal,
        kvno,
        last_pwd_change: time("Last password change"),
        mod_date: time("Last modified"),
        attributes: 0,
        max_life,
        keys,
    })
}

/// `2026-12-01 23:19:56 UTC` as seconds since the epoch (`None` for `never`).
fn parse_time(v: &str) -> Option<i64> {
    let v = v.strip_suffix(" UTC")?;
    NaiveDateTime::parse_from_str(v, "%Y-%m-%d %H:%M:%S")
        .ok()
        .map(|t| t.and_utc().timestamp())
}

/// `1 day`, `10 hours`, `1 week 2 days 3 hours 4 minutes 5 seconds` in seconds; `unlimited`
/// (no limit of the principal's own) is 0, as MIT's field 5 says it.
pub fn parse_life(v: &str) -> Result<i64, GetError> {
    if v == "unlimited" || v == "0" {
        return Ok(0);
    }
    let words: Vec<&str> = v.split_whitespace().collect();
    if words.is_empty() || !words.len().is_multiple_of(2) {
        return Err(GetError(format!("ticket life {v:?}: not `<n> <unit>…`")));
    }
    let mut total: i64 = 0;
    for pair in words.chunks(2) {
        // Unsigned: a negative life would shorten the grace below what live tokens need.
        let n: u32 = pair[0]
            .parse()
            .map_err(|_| GetError(format!("ticket life {v:?}: {:?} is no number", pair[0])))?;
        let n = i64::from(n);
        let unit = match pair[1].trim_end_matches('s') {
            "year" => 365 * 86400,
            "month" => 30 * 86400,
            "week" => 7 * 86400,
            "day" => 86400,
            "hour" => 3600,
            "minute" => 60,
            "second" => 1,
            u => return Err(GetError(format!("ticket life {v:?}: unknown unit {u:?}"))),
        };
        total = total.saturating_add(n.saturating_mul(unit));
    }
    Ok(total)
}

/// `aes256-cts-hmac-sha1-96(pw-salt)[3], …`: each key's enctype and kvno.
fn parse_keytypes(v: &str) -> Result<Vec<KeyData>, GetError> {
    let mut keys = Vec::new();
    for item in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let bad = || {
            GetError(format!(
                "Keytypes entry {item:?} is not `enctype(salt)[kvno]`"
            ))
        };
        let (name, rest) = item.split_once('(').ok_or_else(bad)?;
        let (_, kvno) = rest.rsplit_once('[').ok_or_else(bad)?;
        let kvno: i32 = kvno
            .strip_suffix(']')
            .and_then(|k| k.parse().ok())
            .ok_or_else(bad)?;
        let enctype = enctype_number(name)
            .ok_or_else(|| GetError(format!("Keytypes: unknown enctype {name:?}")))?;
        keys.push(KeyData {
            kvno,
            enctype,
            salt_type: 0,
        });
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GET: &str = "            Principal: afs/h.test@H.TEST
    Principal expires: never
     Password expires: never
 Last password change: 2026-12-01 23:19:56 UTC
      Max ticket life: 10 hours
   Max renewable life: 1 week
                 Kvno: 3
                Mkvno: unknown
Last successful login: never
        Last modified: 2026-12-01 23:20:00 UTC
             Modifier: kadmin/admin@H.TEST
           Attributes: 
             Keytypes: aes256-cts-hmac-sha1-96(pw-salt)[3], aes128-cts-hmac-sha1-96(pw-salt)[3], aes256-cts-hmac-sha1-96(pw-salt)[1], des3-cbc-sha1(pw-salt)[1], arcfour-hmac-md5(pw-salt)[1]
          PK-INIT ACL: 
              Aliases: 
";

    #[test]
    fn get_is_parsed() {
        let i = parse_get(GET).unwrap();
        assert_eq!(i.principal, "afs/h.test@H.TEST");
        assert_eq!(i.kvno, 3);
        assert_eq!(i.max_life, 36000);
        assert_eq!(i.enctypes_at(3), vec![18, 17]);
        assert_eq!(i.enctypes_at(1), vec![18, 16, 23]);
        assert_eq!(i.changed().to_rfc3339(), "2026-12-01T23:19:56+00:00");
        assert_eq!(i.mod_date - i.last_pwd_change, 4);
        assert!(parse_get("Principal: x\n").is_err());
        // Found by the kadmin_output fuzz target: a negative life was accepted.
        assert!(parse_life("-10 hours").is_err());
        assert!(parse_get(&GET.replace("[3],", "[x],")).is_err());
        assert!(parse_get(&GET.replace("des3-cbc-sha1", "des9")).is_err());
    }

    #[test]
    fn lives_are_parsed() {
        assert_eq!(parse_life("1 day").unwrap(), 86400);
        assert_eq!(parse_life("unlimited").unwrap(), 0);
        assert_eq!(
            parse_life("1 week 2 days 3 hours 4 minutes 5 seconds").unwrap(),
            9 * 86400 + 3 * 3600 + 4 * 60 + 5
        );
        assert!(parse_life("1 fortnight").is_err());
        assert!(parse_life("day").is_err());
    }
}

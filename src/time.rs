//! Time as afskeys writes it for people and logs: RFC 3339 in UTC, whole seconds, `Z`
//! (`2026-12-01T22:55:00Z`), the form of the audit log and of every time `status` prints.
//! (The journal's JSON keeps serde's own chrono form.)

use chrono::{DateTime, SecondsFormat, Utc};

/// `2026-12-01T22:55:00Z`.
pub fn fmt_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A file time (mtime) the same way.
pub fn fmt_system_time(t: std::time::SystemTime) -> String {
    fmt_time(DateTime::<Utc>::from(t))
}

/// The current time the same way.
pub fn now_string() -> String {
    fmt_time(Utc::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_time(s: &str) -> Result<DateTime<Utc>, chrono::ParseError> {
        DateTime::parse_from_rfc3339(s).map(|t| t.with_timezone(&Utc))
    }

    #[test]
    fn round_trip() {
        let t = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        assert_eq!(fmt_time(t), "2027-01-15T08:00:00Z");
        assert_eq!(parse_time(&fmt_time(t)).unwrap(), t);
        assert_eq!(parse_time("2027-01-15T09:00:00+01:00").unwrap(), t);
        assert!(parse_time("yesterday").is_err());
    }
}

//! The grace and interval policy (chrono, UTC): which role each kvno plays — current, new in a
//! rotation, retiring until the token lifetime has passed since the afs entry moved off it,
//! or removable — and whether a removal is allowed. Built from plain values (`cell.rs` reads
//! them from `afskeys.toml`); this module knows nothing of the config file.

use crate::authdb::AfsEntry;
use crate::journal::State;
use crate::time::fmt_time;
use chrono::{DateTime, Duration, Utc};

/// The max token lifetime when nothing else says: 25 hours.
pub const DEFAULT_TOKEN_LIFETIME: std::time::Duration = std::time::Duration::from_secs(25 * 3600);
/// How often keys should change when nothing else says: 30 days.
pub const DEFAULT_ROTATION_INTERVAL: std::time::Duration =
    std::time::Duration::from_secs(30 * 86400);

#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Max token lifetime: the grace an old key keeps after the afs entry moves off it.
    pub token_lifetime: Duration,
    /// How often keys should change.
    pub rotation_interval: Duration,
}

impl Policy {
    /// A lifetime or interval too long for chrono is one that never ends.
    pub fn new(
        token_lifetime: std::time::Duration,
        rotation_interval: std::time::Duration,
    ) -> Policy {
        Policy {
            token_lifetime: Duration::from_std(token_lifetime).unwrap_or(Duration::MAX),
            rotation_interval: Duration::from_std(rotation_interval).unwrap_or(Duration::MAX),
        }
    }
}

impl Default for Policy {
    fn default() -> Self {
        Policy::new(DEFAULT_TOKEN_LIFETIME, DEFAULT_ROTATION_INTERVAL)
    }
}

/// The time to record for a change made `now`: never earlier than `latest`, the latest time
/// already recorded, so a clock that is behind cannot date a change into the past (and so
/// shorten a grace that starts at it).
pub fn recorded_now(now: DateTime<Utc>, latest: Option<DateTime<Utc>>) -> DateTime<Utc> {
    latest.map_or(now, |l| now.max(l))
}

/// How far the clock may be behind a recorded time before `check` warns.
pub fn clock_slack() -> Duration {
    Duration::minutes(5)
}

/// `check`'s warning when the clock is behind a time afskeys recorded (`latest`).
pub fn clock_behind(now: DateTime<Utc>, latest: Option<DateTime<Utc>>) -> Option<String> {
    let l = latest?;
    (l > now + clock_slack()).then(|| {
        format!(
            "the clock ({}) is behind a time afskeys recorded ({}): fix the clock (NTP) \
             before rotating or pruning; changes are dated no earlier than {}",
            fmt_time(now),
            fmt_time(l),
            fmt_time(l)
        )
    })
}

/// What a kvno is to the cell right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The afs entry's key: new tokens are sealed with it.
    Current,
    /// The new key of the rotation in progress, not yet current.
    Incoming,
    /// Tokens sealed with it may still be alive until then.
    Retiring { until: DateTime<Utc> },
    /// No live token can need it.
    Removable,
    /// Above the current kvno and never current (a key staged for a later change): no token
    /// needs it, so `remove` may take it, but `prune` leaves it and `check` does not nag.
    Unused,
    /// There is no afs entry, so nothing is known to depend on it.
    Unknown,
}

impl Role {
    pub fn describe(&self) -> String {
        match self {
            Role::Current => "current".into(),
            Role::Incoming => "incoming (rotation in progress)".into(),
            Role::Retiring { until } => format!("retiring until {}", fmt_time(*until)),
            Role::Removable => "removable".into(),
            Role::Unused => "not yet used (above the current kvno)".into(),
            Role::Unknown => "unknown (no afs entry)".into(),
        }
    }

    /// A short machine name: current, incoming, retiring, removable, unused, unknown.
    pub fn name(&self) -> &'static str {
        match self {
            Role::Current => "current",
            Role::Incoming => "incoming",
            Role::Retiring { .. } => "retiring",
            Role::Removable => "removable",
            Role::Unused => "unused",
            Role::Unknown => "unknown",
        }
    }
}

/// The role of `kvno`. A kvno below the current one with no grace record is taken to have
/// been retired when the afs entry last changed (the latest it can have been); a kvno above
/// the current one that no rotation is bringing in was never current, so no token needs it.
pub fn role(
    kvno: i32,
    entry: Option<&AfsEntry>,
    state: &State,
    policy: &Policy,
    now: DateTime<Utc>,
) -> Role {
    if let Some(r) = &state.rotation {
        if r.kvno == kvno && entry.is_none_or(|e| e.kvno != kvno) {
            return Role::Incoming;
        }
    }
    let Some(e) = entry else {
        return match state.retired_since(kvno) {
            Some(since) => grace(since, policy, now),
            None => Role::Unknown,
        };
    };
    if kvno == e.kvno {
        return Role::Current;
    }
    let since = match state.retired_since(kvno) {
        Some(s) => Some(s),
        None if kvno < e.kvno => Some(e.changed),
        None => None,
    };
    match since {
        Some(s) => grace(s, policy, now),
        None => Role::Unused,
    }
}

fn grace(since: DateTime<Utc>, policy: &Policy, now: DateTime<Utc>) -> Role {
    // A lifetime too long to add is a grace that never ends.
    let until = since
        .checked_add_signed(policy.token_lifetime)
        .unwrap_or(DateTime::<Utc>::MAX_UTC);
    if now < until {
        Role::Retiring { until }
    } else {
        Role::Removable
    }
}

/// Why `kvno` may not be removed now, or `None` when it may.
pub fn removal_refusal(
    kvno: i32,
    entry: Option<&AfsEntry>,
    state: &State,
    policy: &Policy,
    now: DateTime<Utc>,
) -> Option<String> {
    match role(kvno, entry, state, policy, now) {
        Role::Current => Some(format!(
            "kvno {kvno} is the afs entry's current key: every new token is sealed with it"
        )),
        Role::Incoming => Some(format!(
            "kvno {kvno} is the new key of the rotation in progress (finish or abort it first)"
        )),
        Role::Retiring { until } => Some(format!(
            "kvno {kvno} is retiring: tokens sealed with it may be alive until {} \
             (token lifetime {} after the afs entry moved off it); removable then",
            fmt_time(until),
            fmt_duration(policy.token_lifetime)
        )),
        Role::Removable | Role::Unused | Role::Unknown => None,
    }
}

/// As the config writes durations: "25h", "30d", "90m", "45s".
pub fn fmt_duration(d: Duration) -> String {
    let s = d.num_seconds();
    for (unit, n) in [("d", 86400), ("h", 3600), ("m", 60)] {
        if s != 0 && s % n == 0 {
            return format!("{}{unit}", s / n);
        }
    }
    format!("{s}s")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::{Retired, State};

    fn entry(kvno: i32, changed: DateTime<Utc>) -> AfsEntry {
        AfsEntry {
            principal: "afs".into(),
            kvno,
            keys: vec![],
            changed,
            kdc: None,
        }
    }

    fn t(h: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap() + Duration::hours(h)
    }

    #[test]
    fn grace_runs_from_when_the_entry_moved_off() {
        let p = Policy::default(); // 25 h
        let mut s = State::default();
        s.retired.push(Retired {
            kvno: 4,
            since: t(0),
        });
        let e = entry(5, t(0));
        assert_eq!(role(5, Some(&e), &s, &p, t(1)), Role::Current);
        assert_eq!(
            role(4, Some(&e), &s, &p, t(24)),
            Role::Retiring { until: t(25) }
        );
        assert!(removal_refusal(4, Some(&e), &s, &p, t(24))
            .unwrap()
            .contains("until"));
        assert_eq!(role(4, Some(&e), &s, &p, t(25)), Role::Removable);
        assert!(removal_refusal(4, Some(&e), &s, &p, t(25)).is_none());
        // no record: the entry's change time bounds it
        assert_eq!(
            role(3, Some(&e), &s, &p, t(2)),
            Role::Retiring { until: t(25) }
        );
        // above the current and not incoming: never current, removable by hand, not pruned
        assert_eq!(role(9, Some(&e), &s, &p, t(2)), Role::Unused);
        assert!(removal_refusal(9, Some(&e), &s, &p, t(2)).is_none());
        assert!(removal_refusal(5, Some(&e), &s, &p, t(100))
            .unwrap()
            .contains("current key"));
    }

    #[test]
    fn no_entry_means_unknown() {
        let p = Policy::default();
        let s = State::default();
        assert_eq!(role(1, None, &s, &p, t(0)), Role::Unknown);
        assert!(removal_refusal(1, None, &s, &p, t(0)).is_none());
    }
}

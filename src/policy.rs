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

/// The clock skew a KDC allows when nothing else says: MIT's default, 300 s.
pub const DEFAULT_CLOCK_SKEW: std::time::Duration = std::time::Duration::from_secs(300);

#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Max token lifetime: the grace an old key keeps after the afs entry moves off it
    /// (afskeys.toml's `token_lifetime`, or the default; see [`grace_for`] for the KDC's).
    pub token_lifetime: Duration,
    /// How often keys should change.
    pub rotation_interval: Duration,
    /// True when afskeys.toml sets `token_lifetime`; false: a KDC's maximum ticket life for
    /// the afs principal, plus `clock_skew`, is the grace when the KDC reports one.
    pub lifetime_configured: bool,
    /// The clock skew the KDC allows (`clock_skew` in afskeys.toml).
    pub clock_skew: Duration,
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
            lifetime_configured: false,
            clock_skew: Duration::from_std(DEFAULT_CLOCK_SKEW).unwrap_or(Duration::MAX),
        }
    }

    /// Where the grace comes from: `configured` when afskeys.toml sets `token_lifetime`;
    /// `clock_skew` is added to a KDC's maximum ticket life.
    pub fn with_grace_source(mut self, configured: bool, clock_skew: std::time::Duration) -> Self {
        self.lifetime_configured = configured;
        self.clock_skew = Duration::from_std(clock_skew).unwrap_or(Duration::MAX);
        self
    }
}

/// Where a grace period comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GraceSource {
    /// `token_lifetime` in afskeys.toml.
    Config,
    /// Nothing set it and no KDC reports a maximum ticket life: the built-in 25 h.
    Default,
    /// The afs principal's maximum ticket life as the KDC reports it, plus the clock skew.
    Kdc {
        principal: String,
        max_ticket_life: Duration,
        clock_skew: Duration,
    },
    /// A KDC that sets no maximum ticket life of the afs principal's own (MIT's 0, Heimdal's
    /// unlimited): the realm's limit applies, which afskeys cannot read. Never guessed: the
    /// grace does not end until `token_lifetime` is set.
    Unknown { principal: String },
}

/// The grace an old key keeps after the afs entry moves off it, and where it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grace {
    pub duration: Duration,
    pub source: GraceSource,
}

impl Grace {
    /// `25h (token_lifetime in afskeys.toml)`, `10h5m (max ticket life 10h of afs/… in the
    /// KDC, plus 5m clock skew)`.
    pub fn describe(&self) -> String {
        let why = match &self.source {
            GraceSource::Config => "token_lifetime in afskeys.toml".to_string(),
            GraceSource::Default => {
                "the default token lifetime: afskeys.toml sets no token_lifetime".to_string()
            }
            GraceSource::Kdc {
                principal,
                max_ticket_life,
                clock_skew,
            } => format!(
                "max ticket life {} of {principal} in the KDC, plus {} clock skew",
                fmt_hms(*max_ticket_life),
                fmt_hms(*clock_skew)
            ),
            GraceSource::Unknown { principal } => return unknown_grace(principal),
        };
        format!("{} ({why})", fmt_hms(self.duration))
    }
}

/// Why the grace cannot be known (`GraceSource::Unknown`), and what to do.
fn unknown_grace(principal: &str) -> String {
    format!(
        "unknown: the KDC gives {principal} no maximum ticket life of its own (0 or \
         unlimited), so the realm's limit applies, which afskeys cannot read; set \
         token_lifetime in afskeys.toml to the longest token life your realm gives"
    )
}

/// Hours, minutes and seconds: "25h", "10h5m", "90s" (a grace, as `status` shows it).
pub fn fmt_hms(d: Duration) -> String {
    let s = d.num_seconds();
    let mut out = String::new();
    for (unit, n, m) in [("h", 3600, i64::MAX), ("m", 60, 60), ("s", 1, 60)] {
        let v = (s / n) % m;
        if v != 0 {
            out.push_str(&format!("{v}{unit}"));
        }
    }
    if out.is_empty() {
        out.push_str("0s");
    }
    out
}

/// The afs principal's maximum ticket life as the KDC reports it, if any.
fn kdc_max_life(entry: Option<&AfsEntry>) -> Option<Duration> {
    entry
        .and_then(|e| e.kdc.as_ref())
        .and_then(|k| k.max_ticket_life)
        .map(|d| Duration::from_std(d).unwrap_or(Duration::MAX))
}

/// The grace for the cell whose afs entry is `entry`: `token_lifetime` when afskeys.toml
/// sets it; else the KDC's maximum ticket life for the afs principal plus the clock skew,
/// when the KDC reports one; else the default.
pub fn grace_for(policy: &Policy, entry: Option<&AfsEntry>) -> Grace {
    match (policy.lifetime_configured, kdc_max_life(entry), entry) {
        (true, _, _) => Grace {
            duration: policy.token_lifetime,
            source: GraceSource::Config,
        },
        (false, Some(max), Some(e)) => Grace {
            duration: max.checked_add(&policy.clock_skew).unwrap_or(Duration::MAX),
            source: GraceSource::Kdc {
                principal: e.principal.clone(),
                max_ticket_life: max,
                clock_skew: policy.clock_skew,
            },
        },
        (false, None, Some(e)) if e.kdc.is_some() => Grace {
            duration: Duration::MAX,
            source: GraceSource::Unknown {
                principal: e.principal.clone(),
            },
        },
        _ => Grace {
            duration: policy.token_lifetime,
            source: GraceSource::Default,
        },
    }
}

/// Why afskeys.toml's `token_lifetime` cannot be used: it is below the maximum ticket life
/// the KDC gives the afs principal, so keys would go while tokens sealed with them live.
pub fn lifetime_conflict(policy: &Policy, entry: Option<&AfsEntry>) -> Option<String> {
    if let GraceSource::Unknown { principal } = grace_for(policy, entry).source {
        return Some(format!("the grace is {}", unknown_grace(&principal)));
    }
    let max = kdc_max_life(entry)?;
    if !policy.lifetime_configured || policy.token_lifetime >= max {
        return None;
    }
    Some(format!(
        "token_lifetime {} in afskeys.toml is below the maximum ticket life {} the KDC gives          {}: keys would be removed while tokens sealed with them are still alive; raise          token_lifetime to at least {} or remove it (the grace is then the KDC's value plus          the clock skew)",
        fmt_duration(policy.token_lifetime),
        fmt_duration(max),
        entry.map(|e| e.principal.as_str()).unwrap_or_default(),
        fmt_duration(max)
    ))
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
            Role::Retiring { until } if *until == DateTime::<Utc>::MAX_UTC => {
                "retiring (until token_lifetime is set: the grace is unknown)".into()
            }
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
    let lifetime = grace_for(policy, entry).duration;
    let Some(e) = entry else {
        return match state.retired_since(kvno) {
            Some(since) => grace(since, lifetime, now),
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
        Some(s) => grace(s, lifetime, now),
        None => Role::Unused,
    }
}

fn grace(since: DateTime<Utc>, lifetime: Duration, now: DateTime<Utc>) -> Role {
    // A lifetime too long to add is a grace that never ends.
    let until = since
        .checked_add_signed(lifetime)
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
        Role::Retiring { until } => Some(retiring_refusal(kvno, until, policy, entry)),
        Role::Removable => lifetime_conflict(policy, entry),
        Role::Unused | Role::Unknown => None,
    }
}

/// The refusal for a retiring key: until when, and the grace behind it.
fn retiring_refusal(
    kvno: i32,
    until: DateTime<Utc>,
    policy: &Policy,
    entry: Option<&AfsEntry>,
) -> String {
    let g = grace_for(policy, entry);
    let grace = match g.source {
        GraceSource::Kdc { .. } => format!("grace {}", g.describe()),
        _ => format!("token lifetime {}", fmt_duration(g.duration)),
    };
    let mut m = format!(
        "kvno {kvno} is retiring: tokens sealed with it may be alive until {} \
         ({grace} after the afs entry moved off it); removable then",
        fmt_time(until)
    );
    if let Some(c) = lifetime_conflict(policy, entry) {
        m = format!("{m}; besides, {c}");
    }
    m
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
    fn kdc_entry(kvno: i32, changed: DateTime<Utc>, max_hours: u64) -> AfsEntry {
        let mut e = entry(kvno, changed);
        e.principal = "afs/c@R".into();
        e.kdc = Some(crate::authdb::KdcFacts {
            enctypes: vec![18, 17],
            max_ticket_life: Some(std::time::Duration::from_secs(max_hours * 3600)),
            keys_read: false,
            kvnos: vec![kvno],
        });
        e
    }

    #[test]
    fn the_kdc_max_ticket_life_plus_skew_is_the_grace_when_none_is_configured() {
        let p = Policy::default(); // no token_lifetime set, skew 300 s
        let s = State::default();
        let e = kdc_entry(5, t(0), 10);
        let g = grace_for(&p, Some(&e));
        assert_eq!(g.duration, Duration::hours(10) + Duration::minutes(5));
        assert_eq!(
            g.describe(),
            "10h5m (max ticket life 10h of afs/c@R in the KDC, plus 5m clock skew)"
        );
        let until = t(10) + Duration::minutes(5);
        assert_eq!(role(4, Some(&e), &s, &p, t(10)), Role::Retiring { until });
        let m = removal_refusal(4, Some(&e), &s, &p, t(10)).unwrap();
        assert!(m.contains("(grace 10h5m (max ticket life 10h"), "{m}");
        assert_eq!(role(4, Some(&e), &s, &p, until), Role::Removable);
        assert!(removal_refusal(4, Some(&e), &s, &p, until).is_none());
        // The file backend (no KDC facts): the default, as before.
        let f = entry(5, t(0));
        assert_eq!(grace_for(&p, Some(&f)).source, GraceSource::Default);
        assert_eq!(
            role(4, Some(&f), &s, &p, until),
            Role::Retiring { until: t(25) }
        );
    }

    #[test]
    fn a_configured_lifetime_below_the_kdc_max_life_is_refused() {
        let s = State::default();
        let e = kdc_entry(5, t(0), 10);
        let p = Policy::new(
            std::time::Duration::from_secs(5 * 3600),
            DEFAULT_ROTATION_INTERVAL,
        )
        .with_grace_source(true, DEFAULT_CLOCK_SKEW);
        assert_eq!(grace_for(&p, Some(&e)).source, GraceSource::Config);
        let c = lifetime_conflict(&p, Some(&e)).unwrap();
        assert!(c.contains("token_lifetime 5h") && c.contains("maximum ticket life 10h"));
        assert_eq!(role(4, Some(&e), &s, &p, t(6)), Role::Removable);
        assert_eq!(removal_refusal(4, Some(&e), &s, &p, t(6)), Some(c));
        // At or above the KDC's value: used as it is.
        let p = p.with_grace_source(true, DEFAULT_CLOCK_SKEW);
        let p = Policy {
            token_lifetime: Duration::hours(12),
            ..p
        };
        assert!(lifetime_conflict(&p, Some(&e)).is_none());
        assert_eq!(grace_for(&p, Some(&e)).duration, Duration::hours(12));
    }
}

//! The server machines of a cell: a `Server` is the KeyFiles of one machine (`server`); a
//! local directory (`local`), SSH through libssh2 (`ssh`) and the system's OpenSSH client
//! (`openssh`) implement it. The control machine's conf dir is where every change starts;
//! `distribute` copies its files to the others and confirms, using the parallel fan-out
//! (`fanout`), which reports its advance through `progress`. In cells fed by the Update
//! Server (`upserver`), the servers pull instead and afskeys only watches their fetch.

pub mod fanout;
pub mod local;
pub mod memo;
pub mod openssh;
pub mod progress;
pub mod seen;
mod server;
pub mod ssh;
pub mod upserver;

pub use memo::Remembered;
pub use progress::{NoProgress, Progress};
pub use server::{FleetError, Found, KeyFiles, Server, Staged};

use crate::keys::{Key, KeySet};

/// Does `set` hold exactly these keys (same id, same bytes)?
pub fn holds(set: &KeySet, keys: &[Key]) -> bool {
    keys.iter()
        .all(|k| set.get(&k.id).is_some_and(|h| h.bytes() == k.bytes()))
}

/// What happened on each server when keys were distributed.
#[derive(Debug, Default)]
pub struct Distribution {
    /// First rename to last rename, when a push happened.
    pub skew: Option<std::time::Duration>,
    /// Servers that hold the keys (already did, or now do).
    pub confirmed: Vec<String>,
    /// Servers that do not, with why.
    pub missing: Vec<(String, String)>,
}

/// Make every server hold `keys`, all or none: servers that lack them get the control
/// machine's files by one two-phase push (staged everywhere first, then renamed on all at
/// once), and are read back. If any server cannot be read or staged, no server is changed.
///
/// A server that already holds the keys but is not in `confirmed` (what an earlier run
/// confirmed) may have been cut between its rename and its CellServDB bump: it is bumped
/// again, so that its running servers load the keys (`rotate --resume`).
pub fn distribute(
    servers: &[&dyn Server],
    files: &KeyFiles,
    keys: &[Key],
    confirmed: &[String],
    parallel: usize,
    progress: &dyn Progress,
) -> Distribution {
    let mut d = Distribution::default();
    let mut lacking: Vec<&dyn Server> = Vec::new();
    let mut read: Vec<KeySet> = Vec::new();
    let mut unconfirmed: Vec<&dyn Server> = Vec::new();
    for (s, (name, r)) in servers.iter().zip(fanout::read_all(servers, parallel)) {
        match r {
            Ok(set) if holds(&set, keys) && confirmed.contains(&name) => d.confirmed.push(name),
            Ok(set) if holds(&set, keys) => unconfirmed.push(*s),
            Ok(set) => {
                lacking.push(*s);
                read.push(set);
            }
            Err(e) => d.missing.push((name, e.message)),
        }
    }
    for (name, r) in fanout::bump_all(&unconfirmed, parallel) {
        match r {
            Ok(()) => d.confirmed.push(name),
            Err(e) => d.missing.push((name, e.message)),
        }
    }
    if lacking.is_empty() {
        return d;
    }
    if !d.missing.is_empty() {
        // One server is out of reach: change none, so no server starts using a kvno that
        // another lacks.
        for s in lacking {
            d.missing.push((
                s.name().to_string(),
                "not pushed yet: every server must be reachable first".into(),
            ));
        }
        return d;
    }
    crate::store::atomic::pause_point("distribute:read");
    let report = fanout::push_confirming(&lacking, files, parallel, progress, &read);
    if !report.ok() {
        for p in &report.servers {
            let why = match (&p.staged, &p.committed) {
                (Err(e), _) | (Ok(()), Some(Err(e))) => e.message.clone(),
                _ => "not changed: the push failed elsewhere, so no server was changed".into(),
            };
            d.missing.push((p.name.clone(), why));
        }
        return d;
    }
    // The confirmation: the keys each commit read back, else a read now.
    let unread: Vec<&dyn Server> = lacking
        .iter()
        .zip(&report.servers)
        .filter(|(_, p)| p.read_back.is_none())
        .map(|(s, _)| *s)
        .collect();
    let mut reads = fanout::read_all(&unread, parallel).into_iter();
    for p in &report.servers {
        let r = match &p.read_back {
            Some(k) => (p.name.clone(), Ok(k.clone())),
            None => reads.next().expect("one read per server not read back"),
        };
        match r {
            (name, Ok(set)) if holds(&set, keys) => d.confirmed.push(name),
            (name, Ok(_)) => d
                .missing
                .push((name, "still lacks the new key after the push".into())),
            (name, Err(e)) => d.missing.push((name, e.message)),
        }
    }
    d.skew = report.skew;
    d
}

/// Up to this many servers, messages name every one with its reason.
pub const FULL_LIST: usize = 8;

/// Servers with their reasons, for a message that scales to hundreds of servers: up to
/// `FULL_LIST` servers, "fs1 (why); fs2 (why)"; beyond, servers are grouped by reason (in
/// order of first appearance), a group of more than three named by its first server and
/// counted: "fs89 (connection refused); fs0 and the 126 others (not pushed yet: …)". The
/// whole list stays in `--json` and the journal.
pub fn group_by_reason(v: &[(String, String)]) -> String {
    if v.len() <= FULL_LIST {
        return v
            .iter()
            .map(|(n, w)| format!("{n} ({w})"))
            .collect::<Vec<_>>()
            .join("; ");
    }
    let mut groups: Vec<(&str, Vec<&str>)> = Vec::new();
    for (n, w) in v {
        match groups.iter_mut().find(|(r, _)| r == w) {
            Some((_, names)) => names.push(n),
            None => groups.push((w, vec![n])),
        }
    }
    groups
        .iter()
        .map(|(why, names)| match names.len() {
            0..=3 => format!("{} ({why})", names.join(", ")),
            k => format!("{} and the {} others ({why})", names[0], k - 1),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Which servers lack `keys` (or cannot be read): the order invariant's check.
pub fn lacking(servers: &[&dyn Server], keys: &[Key]) -> Vec<(String, String)> {
    lacking_by(servers, |set| holds(set, keys))
}

/// Which servers hold a key set that `has_it` rejects (or cannot be read). Every server is
/// read at once (up to `LACKING_PARALLEL`), as the fan-out reads.
pub fn lacking_by(
    servers: &[&dyn Server],
    has_it: impl Fn(&KeySet) -> bool,
) -> Vec<(String, String)> {
    fanout::read_all(servers, LACKING_PARALLEL)
        .into_iter()
        .filter_map(|(name, r)| match r {
            Ok(set) if has_it(&set) => None,
            Ok(_) => Some((name, "lacks the key".to_string())),
            Err(e) => Some((name, e.message)),
        })
        .collect()
}

/// How many servers `lacking_by` reads at once (its callers do not pass `[ssh] parallel`).
const LACKING_PARALLEL: usize = 64;

#[cfg(test)]
mod tests {
    use super::group_by_reason;

    fn fleet(n: usize, down: usize) -> Vec<(String, String)> {
        (0..n)
            .map(|i| {
                let why = if i == down {
                    "connection refused"
                } else {
                    "not pushed yet: every server must be reachable first"
                };
                (format!("fs{i}"), why.to_string())
            })
            .collect()
    }

    #[test]
    fn short_lists_name_every_server() {
        assert_eq!(
            group_by_reason(&fleet(3, 1)),
            "fs0 (not pushed yet: every server must be reachable first); fs1 (connection \
             refused); fs2 (not pushed yet: every server must be reachable first)"
        );
    }

    #[test]
    fn long_lists_are_grouped_by_reason() {
        assert_eq!(
            group_by_reason(&fleet(128, 89)),
            "fs0 and the 126 others (not pushed yet: every server must be reachable first); \
             fs89 (connection refused)"
        );
    }
}

//! The cell's own inventory: the machines the cell itself names, and how afskeys.toml
//! accounts for each. The cell names its database servers in the control machine's
//! CellServDB (its own section) and its file servers in the VLDB (`vos listaddrs -noauth`);
//! the operator may add more (`[inventory] also`). Each must be the control machine, a
//! configured server (`[[servers]]`, matched by its `host` or `afs_host`), an upclient-fed
//! server (`[distribution] upclients`), or left out with a reason (`[[inventory.left_out]]`).
//! Matching is by address (every configured name is resolved; a multi-homed file server is
//! one VLDB entry with several addresses) and by name (a CellServDB comment).
//!
//! A machine nobody accounted for, or a VLDB that could not be asked, is what makes the
//! commands that change keys refuse (`refusal`), `check` go CRITICAL and `servers` list it.

mod addr;
pub mod cellservdb;
pub mod vldb;

use serde::Serialize;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

/// What the configuration says; `cell` builds it from afskeys.toml.
#[derive(Debug, Clone)]
pub struct Spec {
    pub cell: String,
    /// The control machine's CellServDB.
    pub cellservdb: PathBuf,
    /// The conf dir `vos -config` reads (the control machine's).
    pub confdir: PathBuf,
    pub vldb: VldbAsk,
    /// Every machine afskeys.toml accounts for, the control machine first.
    pub accounted: Vec<Accounted>,
    /// Machines the operator adds to the cell's own list.
    pub also: Vec<String>,
    /// How long name resolution may take, all names at once.
    pub resolve_deadline: Duration,
}

/// Whether and how the VLDB is asked.
#[derive(Debug, Clone)]
pub enum VldbAsk {
    Ask {
        vos: PathBuf,
        deadline: Duration,
    },
    /// Not asked, and why (`--no-vldb`): every output says so.
    NotAsked(String),
}

/// One way afskeys.toml accounts for a machine.
#[derive(Debug, Clone)]
pub struct Accounted {
    /// What reports call it: the server's name, `control`, or the left-out host.
    pub label: String,
    pub how: How,
    /// Names and addresses it goes by (host, afs_host).
    pub hosts: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum How {
    Control,
    Server,
    Upclient,
    LeftOut(String),
}

/// One machine the cell names, and how it is accounted for.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// Its host name where the cell gives one, else its first address.
    pub name: String,
    pub addrs: Vec<String>,
    /// Where the cell names it: "CellServDB line 3", "VLDB entry <uuid>", "[inventory] also".
    pub found_in: Vec<String>,
    /// `control`, `configured`, `upclient`, `left out` or `unaccounted`.
    pub state: &'static str,
    /// The afskeys.toml entry that accounts for it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// Left out: why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The inventory as gathered now.
#[derive(Debug, Clone, Serialize)]
pub struct Inventory {
    pub machines: Vec<Machine>,
    /// The VLDB's part: `listed` (asked, answered), `unreachable` or `not asked`.
    pub vldb: &'static str,
    /// What could not be checked, in words (an unreadable CellServDB, an unreachable VLDB,
    /// a VLDB not asked).
    pub unchecked: Vec<String>,
    /// Why the CellServDB's part could not be checked (no flag goes past that).
    #[serde(skip)]
    cellservdb_problem: Option<String>,
    /// Why the VLDB, asked, did not answer (`--no-vldb` goes past that, by not asking).
    #[serde(skip)]
    vldb_problem: Option<String>,
}

impl Inventory {
    /// The machines nobody accounted for.
    pub fn unaccounted(&self) -> Vec<&Machine> {
        self.machines
            .iter()
            .filter(|m| m.state == UNACCOUNTED)
            .collect()
    }

    /// What could not be checked and was not the operator's choice (an unread CellServDB,
    /// a VLDB that did not answer); a VLDB not asked (`--no-vldb`) is not among them.
    pub fn problems(&self) -> Vec<&str> {
        [&self.cellservdb_problem, &self.vldb_problem]
            .into_iter()
            .flatten()
            .map(String::as_str)
            .collect()
    }

    /// Why a command that changes keys must not go on, naming each machine, where the cell
    /// names it, and the afskeys.toml lines that account for it; `None` when it may.
    pub fn refusal(&self) -> Option<String> {
        let missing = self.unaccounted();
        if missing.is_empty() && self.problems().is_empty() {
            return None;
        }
        let mut out = String::new();
        if !missing.is_empty() {
            out.push_str(&format!(
                "the cell names {} machine{} that afskeys.toml does not account for: {}. \
                 Until every machine that may hold the cell's keys is accounted for, a new key \
                 could reach the afs entry before it reaches them. Add each to afskeys.toml as \
                 a server afskeys reaches, or leave it out with a reason:\n{}",
                missing.len(),
                if missing.len() == 1 { "" } else { "s" },
                missing
                    .iter()
                    .map(|m| format!("{} ({})", m.name, m.found_in.join(", ")))
                    .collect::<Vec<_>>()
                    .join("; "),
                missing
                    .iter()
                    .map(|m| lines_to_add(m))
                    .collect::<Vec<_>>()
                    .join("\n")
            ));
        }
        let mut lines: Vec<String> = Vec::new();
        if let Some(u) = &self.cellservdb_problem {
            lines.push(format!(
                "{u}: fix it so the cell's database servers can be checked"
            ));
        }
        if let Some(u) = &self.vldb_problem {
            lines.push(format!(
                "{u}: the cell's file servers are not known, so they cannot be checked. Make \
                 the VLDB answer, or go on without it with --no-vldb (recorded in the audit log)"
            ));
        }
        for l in lines {
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(&l);
        }
        Some(out)
    }

    /// One line for the audit log: what was checked, and what was not.
    pub fn audit_line(&self) -> String {
        let counted = |s: &str| self.machines.iter().filter(|m| m.state == s).count();
        let mut line = format!(
            "inventory: {} machines ({} control, {} configured, {} upclient, {} left out, {} \
             unaccounted); VLDB {}",
            self.machines.len(),
            counted(CONTROL),
            counted(CONFIGURED),
            counted(UPCLIENT),
            counted(LEFT_OUT),
            counted(UNACCOUNTED),
            self.vldb
        );
        for u in &self.unchecked {
            line.push_str(&format!("; not checked: {u}"));
        }
        line
    }
}

/// The afskeys.toml lines that account for `m`: as a server reached over SSH, or left out.
fn lines_to_add(m: &Machine) -> String {
    let host = m.addrs.first().cloned().unwrap_or_else(|| m.name.clone());
    let short = m.name.split('.').next().unwrap_or(&m.name);
    let name = if short.parse::<IpAddr>().is_ok() || m.name.parse::<IpAddr>().is_ok() {
        format!("afs-{}", host.replace([':', '.'], "-"))
    } else {
        short.to_string()
    };
    format!(
        "  [[servers]]\n  name = \"{name}\"\n  host = \"{host}\"\n  \
         or\n  [[inventory.left_out]]\n  host = \"{host}\"\n  reason = \"why it holds no keys\""
    )
}

pub const CONTROL: &str = "control";
pub const CONFIGURED: &str = "configured";
pub const UPCLIENT: &str = "upclient";
pub const LEFT_OUT: &str = "left out";
pub const UNACCOUNTED: &str = "unaccounted";
const LISTED: &str = "listed";
const UNREACHABLE: &str = "unreachable";
pub const NOT_ASKED: &str = "not asked";

/// A machine as found, before it is matched.
struct Found {
    name: Option<String>,
    addrs: Vec<IpAddr>,
    found_in: Vec<String>,
}

/// Gather the inventory: CellServDB read, the VLDB asked, every name resolved, each machine
/// matched. Nothing here fails: what could not be checked is said in `unchecked`.
pub fn gather(spec: &Spec) -> Inventory {
    let (mut found, cellservdb_problem) = match from_cellservdb(spec) {
        Ok(found) => (found, None),
        Err(why) => (vec![], Some(why)),
    };
    let mut unchecked: Vec<String> = cellservdb_problem.iter().cloned().collect();
    let mut vldb_problem = None;
    let vldb = match &spec.vldb {
        VldbAsk::NotAsked(why) => {
            unchecked.push(format!("the VLDB was not asked ({why})"));
            NOT_ASKED
        }
        VldbAsk::Ask { vos, deadline } => {
            match vldb::list(vos, &spec.confdir, &spec.cell, *deadline) {
                Ok(entries) => {
                    for e in entries {
                        let at = match &e.uuid {
                            Some(u) => format!("VLDB entry {u}"),
                            None => "VLDB entry".to_string(),
                        };
                        merge(&mut found, None, e.addrs, at);
                    }
                    LISTED
                }
                Err(e) => {
                    let why = format!("the VLDB could not be asked ({e})");
                    unchecked.push(why.clone());
                    vldb_problem = Some(why);
                    UNREACHABLE
                }
            }
        }
    };
    let mut names: Vec<String> = spec.also.clone();
    names.extend(spec.accounted.iter().flat_map(|a| a.hosts.iter().cloned()));
    let resolved = addr::resolve_all(&names, spec.resolve_deadline);
    for a in &spec.also {
        let addrs = resolved.get(a).cloned().unwrap_or_default();
        merge(
            &mut found,
            Some(a.clone()),
            addrs,
            "[inventory] also".into(),
        );
    }
    let local = addr::local_addrs();
    let machines = found
        .into_iter()
        .map(|f| account(f, spec, &resolved, &local))
        .collect();
    Inventory {
        machines,
        vldb,
        unchecked,
        cellservdb_problem,
        vldb_problem,
    }
}

/// The cell's section of CellServDB, each line a machine; `Err` says why it cannot be read.
fn from_cellservdb(spec: &Spec) -> Result<Vec<Found>, String> {
    use crate::store::trust;
    let path = spec.cellservdb.display();
    let text = match trust::read(&spec.cellservdb, trust::CELLSERVDB) {
        Ok(Some(b)) => String::from_utf8_lossy(&b).into_owned(),
        Ok(None) => {
            return Err(format!(
                "{path}: missing, so the database servers are unknown"
            ))
        }
        Err(e) => return Err(e.to_string()),
    };
    let lines = cellservdb::db_servers(&text, &spec.cell).map_err(|e| format!("{path}: {e}"))?;
    Ok(lines
        .into_iter()
        .map(|l| Found {
            name: l.name,
            addrs: vec![l.addr],
            found_in: vec![format!("CellServDB line {}", l.line)],
        })
        .collect())
}

/// Add a machine, or what is new of it to the machine already found at one of its addresses
/// (a database server that is also a file server is one machine).
fn merge(found: &mut Vec<Found>, name: Option<String>, addrs: Vec<IpAddr>, at: String) {
    let same = found.iter_mut().find(|f| {
        f.addrs.iter().any(|a| addrs.contains(a))
            || (name.is_some()
                && f.name.as_deref().map(str::to_lowercase)
                    == name.as_deref().map(str::to_lowercase))
    });
    match same {
        Some(f) => {
            for a in addrs {
                if !f.addrs.contains(&a) {
                    f.addrs.push(a);
                }
            }
            f.name = f.name.take().or(name);
            f.found_in.push(at);
        }
        None => found.push(Found {
            name,
            addrs,
            found_in: vec![at],
        }),
    }
}

/// Match one found machine to the first afskeys.toml entry that goes by one of its names or
/// addresses (the control machine also by its interface addresses).
fn account(
    f: Found,
    spec: &Spec,
    resolved: &std::collections::BTreeMap<String, Vec<IpAddr>>,
    local: &[IpAddr],
) -> Machine {
    let named = |h: &String| {
        f.name.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(h))
            || resolved
                .get(h)
                .is_some_and(|v| v.iter().any(|a| f.addrs.contains(a)))
    };
    let hit = spec.accounted.iter().find(|a| {
        a.hosts.iter().any(named)
            || (a.how == How::Control && f.addrs.iter().any(|x| local.contains(x)))
    });
    let (state, by, reason) = match hit {
        None => (UNACCOUNTED, None, None),
        Some(a) => match &a.how {
            How::Control => (CONTROL, Some(a.label.clone()), None),
            How::Server => (CONFIGURED, Some(a.label.clone()), None),
            How::Upclient => (UPCLIENT, Some(a.label.clone()), None),
            How::LeftOut(why) => (LEFT_OUT, Some(a.label.clone()), Some(why.clone())),
        },
    };
    let addrs: Vec<String> = f.addrs.iter().map(|a| a.to_string()).collect();
    Machine {
        name: f
            .name
            .unwrap_or_else(|| addrs.first().cloned().unwrap_or_default()),
        addrs,
        found_in: f.found_in,
        state,
        by,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A conf dir with this CellServDB and a `vos` that prints `vldb` (or fails when `None`).
    fn setup(csdb: &str, vldb: Option<&str>) -> (tempfile::TempDir, Spec) {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("CellServDB"), csdb).unwrap();
        let vos = d.path().join("vos");
        let body = match vldb {
            Some(out) => format!("#!/bin/sh\ncat <<'EOF'\n{out}EOF\n"),
            None => "#!/bin/sh\necho 'vos: could not list the server addresses' >&2\nexit 255\n"
                .to_string(),
        };
        std::fs::write(&vos, body).unwrap();
        std::fs::set_permissions(&vos, std::fs::Permissions::from_mode(0o755)).unwrap();
        let spec = Spec {
            cell: "example.com".into(),
            cellservdb: d.path().join("CellServDB"),
            confdir: d.path().to_path_buf(),
            vldb: VldbAsk::Ask {
                vos,
                deadline: Duration::from_secs(10),
            },
            accounted: vec![Accounted {
                label: "control".into(),
                how: How::Control,
                hosts: vec![],
            }],
            also: vec![],
            resolve_deadline: Duration::from_secs(5),
        };
        (d, spec)
    }

    const CSDB: &str = ">example.com #Example\n127.0.0.1 #db1.example.com\n\
                        203.0.113.2 #db2.example.com\n203.0.113.3 #db3.example.com\n";
    const VLDB: &str = "UUID: aa\n203.0.113.3\n\nUUID: bb\n203.0.113.4\n198.51.100.4\n\n";

    fn state<'a>(inv: &'a Inventory, name: &str) -> &'a Machine {
        inv.machines
            .iter()
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("{name} not in {inv:?}"))
    }

    #[test]
    fn every_machine_the_cell_names_is_found_once_and_matched() {
        let (_d, mut spec) = setup(CSDB, Some(VLDB));
        spec.accounted.push(Accounted {
            label: "db2".into(),
            how: How::Server,
            hosts: vec!["db2.example.com".into()],
        });
        // The multi-homed file server, known here by its second address.
        spec.accounted.push(Accounted {
            label: "fs1".into(),
            how: How::Upclient,
            hosts: vec!["198.51.100.4".into()],
        });
        let inv = gather(&spec);
        assert_eq!(inv.vldb, "listed");
        assert!(inv.unchecked.is_empty(), "{:?}", inv.unchecked);
        assert_eq!(inv.machines.len(), 4, "{inv:?}");
        assert_eq!(state(&inv, "db1.example.com").state, CONTROL);
        assert_eq!(state(&inv, "db2.example.com").state, CONFIGURED);
        let db3 = state(&inv, "db3.example.com");
        assert_eq!(db3.state, UNACCOUNTED);
        // A database server that is also a file server: one machine, named in both places.
        assert_eq!(db3.found_in, vec!["CellServDB line 4", "VLDB entry aa"]);
        let fs = state(&inv, "203.0.113.4");
        assert_eq!((fs.state, fs.by.as_deref()), (UPCLIENT, Some("fs1")));
        let why = inv.refusal().unwrap();
        assert!(
            why.starts_with(
                "the cell names 1 machine that afskeys.toml does not account for: \
                 db3.example.com (CellServDB line 4, VLDB entry aa)."
            ),
            "{why}"
        );
        assert!(
            why.contains("  [[servers]]\n  name = \"db3\"\n  host = \"203.0.113.3\"\n"),
            "{why}"
        );
        assert!(
            why.contains("[[inventory.left_out]]\n  host = \"203.0.113.3\""),
            "{why}"
        );
    }

    #[test]
    fn left_out_machines_are_accounted_for_with_their_reason() {
        let (_d, mut spec) = setup(CSDB, Some(VLDB));
        for (h, why) in [
            ("db2.example.com", "a"),
            ("203.0.113.3", "b"),
            ("203.0.113.4", "retired"),
        ] {
            spec.accounted.push(Accounted {
                label: h.into(),
                how: How::LeftOut(why.into()),
                hosts: vec![h.into()],
            });
        }
        let inv = gather(&spec);
        assert_eq!(inv.refusal(), None);
        let fs = state(&inv, "203.0.113.4");
        assert_eq!(
            (fs.state, fs.reason.as_deref()),
            (LEFT_OUT, Some("retired"))
        );
        assert!(inv
            .audit_line()
            .contains("3 left out, 0 unaccounted); VLDB listed"));
    }

    #[test]
    fn an_unreachable_vldb_refuses_unless_it_was_not_asked() {
        let (_d, mut spec) = setup(">example.com\n127.0.0.1 #db1\n", None);
        let inv = gather(&spec);
        assert_eq!(inv.vldb, "unreachable");
        let why = inv.refusal().unwrap();
        assert!(
            why.starts_with(
                "the VLDB could not be asked (vos listaddrs: vos: could not list the server \
                 addresses): the cell's file servers are not known"
            ),
            "{why}"
        );
        assert!(why.contains("--no-vldb"), "{why}");
        spec.vldb = VldbAsk::NotAsked("--no-vldb".into());
        let inv = gather(&spec);
        assert_eq!(inv.refusal(), None);
        assert_eq!(inv.unchecked, vec!["the VLDB was not asked (--no-vldb)"]);
        assert!(inv
            .audit_line()
            .ends_with("VLDB not asked; not checked: the VLDB was not asked (--no-vldb)"));
    }

    #[test]
    fn a_cellservdb_without_the_cell_is_said_and_refuses() {
        let (_d, spec) = setup(">other.org\n10.0.0.1 #x\n", Some(""));
        let inv = gather(&spec);
        assert_eq!(inv.unchecked.len(), 1);
        assert!(
            inv.unchecked[0].ends_with(
                "CellServDB: has no section for cell example.com (a line \">example.com\")"
            ),
            "{:?}",
            inv.unchecked
        );
        assert!(inv.refusal().is_some());
    }
}

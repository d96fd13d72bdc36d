//! `verify`: every other server's key checksums against the control machine's (never the
//! keys themselves); what each was seen to hold is remembered. Then the running servers are
//! asked to accept the control machine's newest kvno (`crate::running`).

use super::servers::seen_record;
use super::status::{fetch_view, FetchView};
use super::CellPaths;
use crate::cell::Cell;
use crate::error::Error;
use crate::fleet::fanout::{self, Agreement};
use crate::fleet::upserver::FetchState;
use crate::keys::KeyId;
use crate::rotation::alive::Running;
use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct VerifyReport {
    pub servers: Vec<Verdict>,
    /// The running servers, asked to accept the control machine's newest kvno.
    pub running: RunningView,
}

/// What the running servers said: each machine's proof, or why none was asked.
#[derive(Debug, Serialize)]
pub struct RunningView {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kvno: Option<i32>,
    pub servers: Vec<crate::running::Proven>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_asked: Option<String>,
}

impl RunningView {
    fn of(r: Running) -> RunningView {
        let (kvno, servers, not_asked) = match r {
            Running::Asked { kvno, results } => (Some(kvno), results, None),
            Running::Skipped(why) | Running::Cannot(why) => (None, vec![], Some(why)),
        };
        RunningView {
            kvno,
            servers,
            not_asked,
        }
    }
}

impl VerifyReport {
    /// Some server holds other keys than the control machine.
    pub fn differ(&self) -> bool {
        self.servers.iter().any(|v| v.state == "differs")
    }

    /// Some server could not be read.
    pub fn unreachable(&self) -> bool {
        self.servers.iter().any(|v| v.state == "unreachable")
    }

    /// The running servers that refused the kvno.
    pub fn refused(&self) -> Vec<&str> {
        let r = self.running.servers.iter().filter(|p| p.refused());
        r.map(|p| p.server.as_str()).collect()
    }

    /// The running servers that proved nothing for another reason (no answer, no sync site).
    pub fn unproven(&self) -> Vec<&str> {
        let r = self.running.servers.iter();
        let r = r.filter(|p| !p.failed.is_empty() && !p.refused());
        r.map(|p| p.server.as_str()).collect()
    }
}

/// One server: `agrees`, `differs` (with the key ids), or `unreachable` (with why).
#[derive(Debug, Serialize)]
pub struct Verdict {
    pub name: String,
    pub state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub missing: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extra: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changed: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Update Server cells: the server's fetch state by `bos getdate` (a server with no SSH
    /// is judged by it alone: fetched agrees, behind differs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fetch: Option<FetchView>,
    /// Read directly (over SSH, or a local conf dir): false for a server known only by its
    /// fetch state.
    #[serde(skip)]
    pub read: bool,
}

fn ids(v: &[KeyId]) -> Option<Vec<String>> {
    Some(v.iter().map(|i| i.to_string()).collect())
}

/// `verify`.
pub fn verify(paths: &CellPaths) -> Result<VerifyReport, Error> {
    let cell = paths.open()?;
    let reference = cell.control.read()?.keys;
    let others = cell.other_servers();
    let report = fanout::verify(&others, &reference, cell.parallel);
    seen_record(
        &cell,
        report
            .servers
            .iter()
            .filter(|v| !matches!(v.agreement, Agreement::Unreachable(_)))
            .map(|v| {
                (
                    v.name.clone(),
                    crate::fleet::seen::from_checksums(&v.checksums),
                )
            })
            .collect(),
    );
    let servers = report
        .servers
        .iter()
        .map(|v| {
            let mut row = Verdict {
                name: v.name.clone(),
                state: "agrees",
                missing: None,
                extra: None,
                changed: None,
                error: None,
                fetch: None,
                read: true,
            };
            match &v.agreement {
                Agreement::Agree => {}
                Agreement::Differ {
                    missing,
                    extra,
                    changed,
                } => {
                    row.state = "differs";
                    (row.missing, row.extra, row.changed) =
                        (ids(missing), ids(extra), ids(changed));
                }
                Agreement::Unreachable(e) => {
                    row.state = "unreachable";
                    row.error = Some(e.message.clone());
                }
            }
            row
        })
        .collect();
    let inventory = crate::inventory::gather(&cell.inventory);
    let running = RunningView::of(crate::rotation::alive::ask_newest(&cell, &inventory));
    let mut report = VerifyReport { servers, running };
    add_fetched(&cell, &mut report);
    Ok(report)
}

/// In Update Server cells: each upclient-fed server's fetch state beside its SSH verdict, or
/// (without SSH) as its verdict: dates equal the control machine's (agrees; bytes not
/// compared), behind (differs), or bos could not ask (unreachable).
fn add_fetched(cell: &Cell, report: &mut VerifyReport) {
    let Some(up) = &cell.upserver else {
        return;
    };
    for (name, state) in up.fetch_states(cell.control.path()) {
        let view = fetch_view(&name, &state);
        if let Some(row) = report.servers.iter_mut().find(|v| v.name == name) {
            row.fetch = Some(view);
            continue;
        }
        let (verdict, error) = match &state {
            FetchState::Fetched => ("agrees", None),
            FetchState::Behind { .. } => ("differs", None),
            FetchState::Unreachable(e) => ("unreachable", Some(e.clone())),
        };
        report.servers.push(Verdict {
            name,
            state: verdict,
            missing: None,
            extra: None,
            changed: None,
            error,
            fetch: Some(view),
            read: false,
        });
    }
}

/// What `verify --kdc` found: the ticket, each machine's verdict, and every problem.
#[derive(Debug, Serialize)]
pub struct KdcVerifyReport {
    #[serde(flatten)]
    pub proof: crate::rotation::proof::CellProof,
    /// True when every machine opened the ticket and the enctype sets agree.
    pub ok: bool,
    /// Each problem, naming the server and the enctype.
    pub problems: Vec<String>,
}

/// `verify --kdc`: a real service ticket for the afs principal, opened with every machine's
/// keys (the control machine first). A backend with no KDC to ask (the file backend), or
/// without the admin keytab that gets a ticket, cannot prove: that is a configuration error.
pub fn verify_kdc(paths: &CellPaths) -> Result<KdcVerifyReport, Error> {
    let cell = paths.open()?;
    let proof = crate::rotation::proof::prove(&cell)
        .map_err(|e| Error::failed(format!("verify --kdc: {e}")).with_source(e))?
        .ok_or_else(|| {
            Error::config(format!(
                "verify --kdc: {} gets no tickets to prove (it needs [authdb] backend = \
                 \"kadmin\" with admin_principal and admin_keytab)",
                cell.authdb.describe()
            ))
        })?;
    let problems = proof.problems();
    Ok(KdcVerifyReport {
        ok: problems.is_empty(),
        problems,
        proof,
    })
}

//! `verify`: every other server's key checksums against the control machine's (never the
//! keys themselves); what each was seen to hold is remembered.

use super::servers::seen_record;
use super::CellPaths;
use crate::error::Error;
use crate::fleet::fanout::{self, Agreement};
use crate::keys::KeyId;
use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct VerifyReport {
    pub servers: Vec<Verdict>,
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
    Ok(VerifyReport { servers })
}

//! Remote MIT: the afs entry through kadmind, and the ticket proof against the KDC.
//!
//! With `[authdb] server = "host[:port]"`, every query runs as
//! `kadmin -s SERVER -p ADMIN -k -t ADMIN_KEYTAB -q '…'`: kadmin logs in with the admin
//! keytab, nothing prompts, and the passphrase of `cpw` goes on stdin only (as with
//! kadmin.local). Remote `getprinc -terse` prints the same record as kadmin.local's (kvno,
//! key data without bytes, max ticket life) and fails the same way (exit 0, message on
//! stderr). What differs: kadmind hands out key bytes only with the extract-keys privilege,
//! which the usual `*` ACL does not grant — so nothing here uses `ktadd -norandkey`. After a
//! `cpw` the new key is confirmed by a real ticket instead ([`super::ticket`]): the KDC's
//! ticket at the new kvno must open with the keys the caller gave.
//!
//! Without `server` the admin keytab still serves the ticket proof (the database itself is
//! then edited with kadmin.local). `KRB5_CONFIG` in the environment is honoured: children
//! inherit it.

use super::getprinc::PrincipalInfo;
use super::kadmin::{checked_principal, KadminAuthDb};
use super::ticket::{Opening, TicketClient, TicketProof};
use super::{AfsEntry, AuthDbError};
use crate::keys::{Enctype, Key};
use std::path::PathBuf;

/// The default ticket programs (MIT's krb5-user).
pub const DEFAULT_KINIT: &str = "kinit";
pub const DEFAULT_KVNO: &str = "kvno";

/// kadmind and the admin identity used to reach it and to get tickets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteKdc {
    /// kadmind's `host[:port]`; `None`: the database is local (kadmin.local) and the admin
    /// keytab serves only the ticket proof.
    pub server: Option<String>,
    /// E.g. `afskeys/admin@EXAMPLE.COM`.
    pub admin_principal: String,
    /// The admin principal's keytab (readable by afskeys' user only).
    pub admin_keytab: PathBuf,
    /// The programs that get a ticket ([`DEFAULT_KINIT`], [`DEFAULT_KVNO`]).
    pub kinit: String,
    pub kvno: String,
}

impl RemoteKdc {
    /// kadmind at `server` (or none), logged in to as `admin_principal` with `admin_keytab`.
    pub fn new(
        server: Option<String>,
        admin_principal: impl Into<String>,
        admin_keytab: impl Into<PathBuf>,
    ) -> RemoteKdc {
        RemoteKdc {
            server,
            admin_principal: admin_principal.into(),
            admin_keytab: admin_keytab.into(),
            kinit: DEFAULT_KINIT.into(),
            kvno: DEFAULT_KVNO.into(),
        }
    }

    /// The arguments before `-q` that make kadmin log in to kadmind with the keytab (none
    /// without a server). Names and paths only, never a secret.
    /// The admin keytab, checked as every secret afskeys hands on (`trust::check_secret`)
    /// before kadmin or kinit is given its path.
    pub(super) fn check_keytab(&self) -> Result<(), AuthDbError> {
        Ok(crate::store::trust::check_secret(&self.admin_keytab)?)
    }

    pub(super) fn login_args(&self) -> Vec<std::ffi::OsString> {
        match &self.server {
            None => Vec::new(),
            Some(server) => vec![
                "-s".into(),
                server.into(),
                "-p".into(),
                self.admin_principal.clone().into(),
                "-k".into(),
                "-t".into(),
                self.admin_keytab.clone().into_os_string(),
            ],
        }
    }

    /// The ticket client this admin identity makes, with the backend's environment.
    pub(super) fn ticket_client(
        &self,
        env: &[(String, String)],
        deadline: std::time::Duration,
    ) -> TicketClient {
        TicketClient {
            deadline,
            admin_principal: self.admin_principal.clone(),
            admin_keytab: self.admin_keytab.clone(),
            kinit: self.kinit.clone(),
            kvno: self.kvno.clone(),
            env: env.to_vec(),
        }
    }
}

/// A backend's check of a principal before it reaches a KDC tool (MIT's also refuses quotes).
pub(super) type PrincipalCheck = fn(&str) -> Result<&str, AuthDbError>;

/// The ticket client of a backend whose admin identity is `remote`; an error when none is
/// configured. Shared by the MIT and Heimdal backends.
pub(super) fn client_of(
    remote: Option<&RemoteKdc>,
    env: &[(String, String)],
    deadline: std::time::Duration,
    check: PrincipalCheck,
) -> Result<TicketClient, AuthDbError> {
    let Some(r) = remote else {
        return Err(super::ticket::TicketError::NoClient(
            "set admin_principal and admin_keytab in [authdb]".into(),
        )
        .into());
    };
    check(&r.admin_principal)?;
    Ok(r.ticket_client(env, deadline))
}

/// The afs principal as the KDC holds it; an error naming `principal` when it does not exist.
pub(super) fn existing(
    info: Option<PrincipalInfo>,
    principal: &str,
) -> Result<PrincipalInfo, AuthDbError> {
    info.ok_or_else(|| {
        AuthDbError::Missing(format!(
            "{principal} does not exist in the KDC yet (run `afskeys rotate`)"
        ))
    })
}

/// The ticket proof: a real ticket for `info`'s principal opened with each server's keys,
/// beside the enctypes the KDC holds at the ticket's kvno.
pub(super) fn ticket_proof(
    client: &TicketClient,
    info: &PrincipalInfo,
    check: PrincipalCheck,
    servers: &[(&str, &[Key])],
) -> Result<TicketProof, AuthDbError> {
    let ticket = client.fetch(check(&info.principal)?)?;
    Ok(ticket.prove(info.enctypes_at(ticket.kvno), servers))
}

/// A change the KDC made, but not as asked.
pub(super) fn broken(m: String) -> AuthDbError {
    AuthDbError::Mismatch(format!(
        "{m}; the KDC was changed and may now seal new tokens with a key the servers do not have"
    ))
}

/// After a change over kadmind: the KDC's ticket for `principal` (checked) is at `kvno` and
/// opens with `keys`.
pub(super) fn ticket_opens(
    client: &TicketClient,
    principal: &str,
    kvno: i32,
    keys: &[Key],
) -> Result<(), AuthDbError> {
    let ticket = client.fetch(principal)?;
    let opening = if ticket.kvno == kvno {
        ticket.open(keys)
    } else {
        Opening::NoKey
    };
    if opening != Opening::Opened {
        return Err(broken(format!(
            "{principal}: the KDC's ticket (kvno {}, {}) {} with the keys given at kvno {kvno}",
            ticket.kvno,
            Enctype(ticket.enctype),
            opening.describe()
        )));
    }
    Ok(())
}

impl KadminAuthDb {
    /// How this backend gets tickets; an error when no admin keytab is configured.
    pub fn ticket_client(&self) -> Result<TicketClient, AuthDbError> {
        client_of(
            self.remote.as_ref(),
            &self.env,
            self.deadline,
            checked_principal,
        )
    }

    /// The ticket proof (`ticket_proof` above).
    pub fn ticket_proof(&self, servers: &[(&str, &[Key])]) -> Result<TicketProof, AuthDbError> {
        let client = self.ticket_client()?;
        ticket_proof(&client, &self.existing()?, checked_principal, servers)
    }

    fn existing(&self) -> Result<PrincipalInfo, AuthDbError> {
        existing(self.principal_info()?, self.principal())
    }

    /// After a remote `cpw`/`addprinc`: the principal is at `kvno`, holds every enctype of
    /// `keys` there, and the KDC's ticket opens with `keys`.
    pub(super) fn confirm_remote(&self, kvno: i32, keys: &[Key]) -> Result<AfsEntry, AuthDbError> {
        let info = self.existing()?;
        let p = &info.principal;
        if info.kvno != kvno {
            return Err(broken(format!(
                "{p}: kvno is {} after setting {kvno}",
                info.kvno
            )));
        }
        let held = info.enctypes_at(kvno);
        if let Some(k) = keys.iter().find(|k| !held.contains(&k.id.subtype)) {
            return Err(broken(format!("{p}: no key for {} after setting it", k.id)));
        }
        ticket_opens(&self.ticket_client()?, checked_principal(p)?, kvno, keys)?;
        Ok(info.entry(keys.to_vec(), false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authdb::AuthDb;

    #[test]
    fn remote_queries_log_in_with_the_keytab_and_name_the_server() {
        let r = RemoteKdc::new(
            Some("kdc1.example.com:749".into()),
            "afskeys/admin@X.ORG",
            "/etc/afskeys/admin.keytab",
        );
        let db = KadminAuthDb::new("afs/x.org@X.ORG".into(), "kadmin".into()).with_remote(r);
        assert!(db.is_remote());
        assert_eq!(
            db.describe(),
            "kadmin afs/x.org@X.ORG (kadmin -s kdc1.example.com:749)"
        );
        let args: Vec<String> = db
            .remote
            .as_ref()
            .unwrap()
            .login_args()
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect();
        assert_eq!(
            args,
            [
                "-s",
                "kdc1.example.com:749",
                "-p",
                "afskeys/admin@X.ORG",
                "-k",
                "-t",
                "/etc/afskeys/admin.keytab"
            ]
        );
        let local = RemoteKdc::new(None, "afskeys/admin@X.ORG", "/k");
        assert!(local.login_args().is_empty());
        let db =
            KadminAuthDb::new("afs/x.org@X.ORG".into(), "kadmin.local".into()).with_remote(local);
        assert!(!db.is_remote());
        assert_eq!(db.describe(), "kadmin afs/x.org@X.ORG (kadmin.local)");
    }

    #[test]
    fn a_ticket_needs_an_admin_keytab() {
        let db = KadminAuthDb::new("afs/x.org@X.ORG".into(), "/nonexistent/kadmin".into());
        let e = db.ticket_client().unwrap_err().to_string();
        assert!(e.contains("admin_keytab"), "{e}");
        let bad = RemoteKdc::new(None, "-x", "/k");
        let db = db.with_remote(bad);
        assert!(db.ticket_client().is_err());
    }
}

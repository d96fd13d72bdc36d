//! The ticket proof inside `rotate`: after the afs entry is set, a proof that fails (a server
//! whose key does not open the KDC's ticket) stops the rotation at step "activated" — the
//! entry has moved, the journal and the audit log say so, abort is refused — and
//! `rotate --resume` proves again and finishes once the proof passes. The KDC is stood in for
//! by an auth DB whose `prove_tickets` answers as told (the real KDC: tests/kdc_verify.rs).

mod common;
use afskeys::authdb::file::FileAuthDb;
use afskeys::authdb::ticket::{Opening, ServerProof, TicketProof};
use afskeys::authdb::{AfsEntry, AuthDb, AuthDbError, KeyMaterial};
use afskeys::cell::Cell;
use afskeys::config::{Config, ServerConfig};
use afskeys::journal::Step;
use afskeys::keys::Key;
use afskeys::rotation::{self, RotateError, RotateOptions};
use afskeys::store::ConfDir;
use chrono::{DateTime, Utc};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A file auth DB that "proves" tickets: every server opens, unless `sabotaged` (then fs1's
/// key does not open the ticket).
struct ProvingDb {
    inner: FileAuthDb,
    sabotaged: Arc<AtomicBool>,
}

impl AuthDb for ProvingDb {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn get(&self) -> Result<Option<AfsEntry>, AuthDbError> {
        self.inner.get()
    }
    fn key_material(&self) -> KeyMaterial {
        KeyMaterial::Raw
    }
    fn set(
        &self,
        kvno: i32,
        keys: &[Key],
        p: Option<&[u8]>,
        now: DateTime<Utc>,
    ) -> Result<AfsEntry, AuthDbError> {
        self.inner.set(kvno, keys, p, now)
    }
    fn prove_tickets(
        &self,
        servers: &[(&str, &[Key])],
    ) -> Result<Option<TicketProof>, AuthDbError> {
        let e = self.inner.get()?.expect("an entry to prove");
        let bad = self.sabotaged.load(Ordering::SeqCst);
        Ok(Some(TicketProof {
            principal: e.principal.clone(),
            kvno: e.kvno,
            enctype: 18,
            end_time: 0,
            kdc_enctypes: vec![18, 17],
            servers: servers
                .iter()
                .map(|(name, _)| ServerProof {
                    server: name.to_string(),
                    opening: if bad && *name == "fs1" {
                        Opening::DidNotOpen
                    } else {
                        Opening::Opened
                    },
                    enctypes_held: vec![18, 17],
                })
                .collect(),
        }))
    }
}

#[test]
fn a_failed_proof_stops_at_activated_and_resume_finishes_once_it_passes() {
    let control = common::confdir("proof.example.com");
    let fs1 = common::confdir("proof.example.com");
    let config = Config {
        servers: vec![ServerConfig {
            name: "fs1".into(),
            host: None,
            port: 22,
            user: "root".into(),
            confdir: fs1.path().to_path_buf(),
            afs_host: None,
            running_proof: true,
        }],
        ..Config::default()
    };
    let mut cell = Cell::open(ConfDir::new(control.path()), &config).unwrap();
    // No VLDB here to ask for the cell's file servers.
    cell.inventory.vldb = afskeys::inventory::VldbAsk::NotAsked("test".into());
    cell.running.skipped = Some("test: no bosserver".into());
    let sabotaged = Arc::new(AtomicBool::new(false));
    cell.authdb = Box::new(ProvingDb {
        inner: FileAuthDb::new(control.path().join("afskeys-authdb.json"), "afs/proof"),
        sabotaged: sabotaged.clone(),
    });
    let opts = RotateOptions {
        kvno: None,
        key_type: None,
        password: None,
    };
    let r = rotation::rotate(&cell, &opts, &mut |_| {}).unwrap();
    assert_eq!(r.kvno, 1);

    sabotaged.store(true, Ordering::SeqCst);
    let e = rotation::rotate(&cell, &opts, &mut |_| {}).unwrap_err();
    let m = e.to_string();
    assert!(matches!(e, RotateError::Stopped(_)), "{e:?}");
    assert!(
        m.contains("rotation to kvno 2: the afs entry is set, but the ticket proof failed: fs1: the KDC's ticket (kvno 2, enctype 18 (aes256-cts-hmac-sha1-96)) does not open"),
        "{m}"
    );
    assert!(m.contains("`afskeys rotate --resume`"), "{m}");
    // The entry moved; the journal holds the rotation at "activated", with the problem.
    assert_eq!(cell.authdb.get().unwrap().unwrap().kvno, 2);
    let st = cell.state.load().unwrap();
    let r = st.rotation.as_ref().expect("still in progress");
    assert_eq!((r.kvno, r.step), (2, Step::Activated));
    assert_eq!(r.missing[0].0, "fs1");
    let audit = std::fs::read_to_string(control.path().join("afskeys-audit.log")).unwrap();
    assert!(audit.contains("ticket proof FAILED"), "{audit}");
    assert!(matches!(
        rotation::abort(&cell).unwrap_err(),
        RotateError::Refused(_)
    ));
    // Still failing: resume stops again, changing nothing.
    assert!(matches!(
        rotation::resume(&cell, &mut |_| {}).unwrap_err(),
        RotateError::Stopped(_)
    ));
    sabotaged.store(false, Ordering::SeqCst);
    let done = rotation::resume(&cell, &mut |_| {}).unwrap();
    assert_eq!((done.kvno, done.old_kvno), (2, Some(1)));
    assert!(cell.state.load().unwrap().rotation.is_none());
    let audit = std::fs::read_to_string(control.path().join("afskeys-audit.log")).unwrap();
    assert!(audit.contains("ticket proof: kvno 2 enctype 18 opened on control, fs1"));
}

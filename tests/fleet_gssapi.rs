//! GSSAPI (Kerberos) login over the OpenSSH transport, with no SSH key at all: an MIT KDC the
//! test runs (krb5kdc on a high port, its own krb5.conf), an sshd with `GSSAPIAuthentication
//! yes` and a host keytab from that KDC, and the client holding a ticket from `kinit -k`.
//! `push` and `verify` (the fan-out the CLI runs) log in through it; a push without a ticket
//! is refused with nothing written.
//!
//! Its own test binary: the Kerberos environment (`KRB5_CONFIG`, `KRB5_KTNAME`,
//! `KRB5CCNAME`) is set for the whole process, which the sshd and ssh it starts inherit.
//! Needs sshd, ssh, krb5kdc, kadmind, kinit and root; fails without them when
//! `AFSKEYS_REQUIRE_INTEROP` is set, else skips.

mod kdc;
mod sshd;

use afskeys::fleet::fanout::{self, Agreement};
use afskeys::fleet::openssh::{OpensshServer, OpensshTarget};
use afskeys::fleet::{KeyFiles, NoProgress, Server};
use afskeys::keys::{Key, KeyId, KeySet, KeyType};
use std::fs;
use std::time::Duration;
use zeroize::Zeroizing;

fn keys(kvnos: &[i32]) -> KeySet {
    let mut s = KeySet::new();
    for &kvno in kvnos {
        s.insert(Key::new(
            KeyId {
                key_type: KeyType::RxkadKrb5,
                kvno,
                subtype: 18,
            },
            Zeroizing::new((0..32).map(|i| (kvno as u8) ^ (i as u8 * 3)).collect()),
        ))
        .unwrap();
    }
    s
}

#[test]
fn push_and_verify_log_in_with_a_kerberos_ticket_and_no_ssh_key() {
    if !sshd::available() {
        return;
    }
    let Some(realm) = kdc::Realm::serve("GSS.AFSKEYS.TEST") else {
        return;
    };
    let d = realm.dir().to_path_buf();
    let host_kt = d.join("host.keytab");
    realm.add_keytab_principal(&format!("host/127.0.0.1@{}", realm.name()), &host_kt);
    let client_kt = d.join("client.keytab");
    let client = format!("{}@{}", sshd::user(), realm.name());
    realm.add_keytab_principal(&client, &client_kt);
    // the whole process (and so the sshd and ssh it starts) sees only this realm
    for (k, v) in realm.env() {
        std::env::set_var(k, v);
    }
    std::env::set_var("KRB5_KTNAME", format!("FILE:{}", host_kt.display()));
    std::env::set_var("KRB5CCNAME", format!("FILE:{}", d.join("ccache").display()));
    std::env::remove_var("SSH_AUTH_SOCK");

    let Some(mut sshds) = sshd::Sshds::start(1) else {
        return;
    };
    let s0 = &mut sshds.sshds[0];
    s0.extra_config = "GSSAPIAuthentication yes\nGSSAPIStrictAcceptorCheck no\n".into();
    s0.stop();
    assert!(s0.start());
    let confdir = tempfile::Builder::new()
        .prefix("afskeys-gss.")
        .tempdir()
        .unwrap();
    let old = KeyFiles::of(&keys(&[1]));
    fs::write(confdir.path().join("KeyFile"), &old.keyfile).unwrap();
    fs::write(confdir.path().join("KeyFileExt"), &old.keyfileext).unwrap();
    let cfg = sshds.dir.path().join("ssh_config");
    fs::write(
        &cfg,
        format!(
            "Host fs-krb\n  HostName 127.0.0.1\n  Port {}\n\
             Host *\n  GSSAPIAuthentication yes\n  PubkeyAuthentication no\n\
             \x20 PreferredAuthentications gssapi-with-mic\n  GlobalKnownHostsFile /dev/null\n\
             \x20 LogLevel ERROR\n",
            sshds.sshds[0].port
        ),
    )
    .unwrap();
    let server = || {
        OpensshServer::new(OpensshTarget {
            name: "fs-krb".into(),
            host: "fs-krb".into(),
            port: None,
            user: None,
            confdir: confdir.path().to_path_buf(),
            identity: None,
            known_hosts: Some(sshds.known_hosts.clone()),
            config: Some(cfg.clone()),
            timeout: Duration::from_secs(20),
        })
    };
    let new = KeyFiles::of(&keys(&[1, 2]));

    // no ticket yet: refused, nothing written
    let s = server();
    let r = fanout::push(&[&s as &dyn Server], &new, 1, &NoProgress);
    assert!(!r.ok(), "pushed without a ticket");
    drop(s);
    assert_eq!(
        fs::read(confdir.path().join("KeyFileExt")).unwrap(),
        *old.keyfileext
    );

    let out = realm
        .command("kinit")
        .args(["-k", "-t"])
        .arg(&client_kt)
        .arg(&client)
        .output()
        .unwrap();
    assert!(out.status.success(), "kinit -k: {out:?}");
    let s = server();
    let r = fanout::push(&[&s as &dyn Server], &new, 1, &NoProgress);
    assert!(r.ok(), "{:?}\n{}", r.failures(), sshds.logs());
    let v = fanout::verify(&[&s as &dyn Server], &keys(&[1, 2]), 1);
    assert!(matches!(v.servers[0].agreement, Agreement::Agree), "{v:?}");
    assert_eq!(
        fs::read(confdir.path().join("KeyFileExt")).unwrap(),
        *new.keyfileext
    );
    drop(s);
    let log = sshds.sshds[0].log();
    assert!(log.contains("Accepted gssapi-with-mic"), "{log}");
    assert!(!log.contains("Accepted publickey"), "{log}");
}

//! A live OpenAFS 1.8.9 cell of real daemons (three database servers, a file server and a
//! client, each in its own namespaces: see `livecell/mod.rs`), started once for this test
//! binary and shared by its tests.

mod common;
mod livecell;
mod netns;

use common::*;
use livecell::*;

/// Proves the harness: both ubik services have one sync site that every database server
/// names, the VLDB lists the file server, every bosserver answers `-localauth` from db1 with
/// its instances running, and the client machine reaches the VLDB and the PRDB with
/// `-localauth`.
#[test]
fn the_live_cell_runs_and_answers() {
    if !have_all() {
        return;
    }
    let _g = lock();
    let c = shared();
    eprintln!("started in {:?}", c.startup);
    for s in c.quorum() {
        let sync = s.agreed();
        assert!(sync.is_some(), "no agreed sync site: {s:?}");
        assert!(s.settled(), "{s:?}");
    }
    assert!(c.vldb_addrs().contains(&c.fs1.ip), "{:?}", c.vldb_addrs());
    for m in c.servers() {
        let out = bos_ok(&c.db1, &format!("status -server {}", m.ip));
        let instances: &[&str] = if m.name == "fs1" {
            &["fs"]
        } else {
            &["ptserver", "vlserver"]
        };
        for i in instances {
            assert!(
                out.contains(&format!("Instance {i}, currently running normally.")),
                "{}: {out}",
                m.name
            );
        }
    }
    let vldb = c.client.must("vos listvldb -localauth 2>&1");
    assert!(vldb.contains("Total entries: 0"), "{vldb}");
    let pts = c
        .client
        .must("pts examine system:administrators -localauth 2>&1");
    assert!(
        pts.contains("Name: system:administrators, id: -204"),
        "{pts}"
    );
}

/// Proves what a server that lacks the newest kvno does: db1 gets kvno 2 (afskeys add, which
/// makes db1's own daemons reload), and db1's `bos status -localauth` against db2 is refused
/// with the unknown-key error (exit 0 all the same); with kvno 2 removed again it answers.
#[test]
fn a_server_lacking_the_newest_kvno_refuses_bos_localauth() {
    if !have_all() {
        return;
    }
    let _g = lock();
    let c = shared();
    let status = format!("bos status -server {} -localauth 2>&1", c.db2.ip);
    c.afskeys_ok(&["add", "--kvno", "2", "--type", "rxkad_krb5", "--random"]);
    let o = c.db1.sh(&status);
    let out = stdout(&o);
    eprintln!("refused: exit {:?}: {out}", o.status.code());
    assert!(
        out.contains(
            "bos: failed to contact host's bosserver (ticket contained unknown key version number)"
        ),
        "{out}"
    );
    assert_eq!(o.status.code(), Some(0), "{out}");
    c.afskeys_ok(&["remove", "--kvno", "2", "--emergency", "--reason", "test"]);
    let out = c.db1.must(&status);
    assert!(
        out.contains("Instance ptserver, currently running normally."),
        "{out}"
    );
}

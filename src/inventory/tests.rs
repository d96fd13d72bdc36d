use super::*;
use std::os::unix::fs::PermissionsExt;

/// A conf dir with this CellServDB and a `vos` that prints `vldb` (or fails when `None`).
fn setup(csdb: &str, vldb: Option<&str>) -> (tempfile::TempDir, Spec) {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("CellServDB"), csdb).unwrap();
    let vos = d.path().join("vos");
    let body = match vldb {
        Some(out) => format!("#!/bin/sh\ncat <<'EOF'\n{out}EOF\n"),
        None => {
            "#!/bin/sh\necho 'vos: could not list the server addresses' >&2\nexit 255\n".to_string()
        }
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
        inv.unchecked[0]
            .ends_with("CellServDB: has no section for cell example.com (a line \">example.com\")"),
        "{:?}",
        inv.unchecked
    );
    assert!(inv.refusal().is_some());
}

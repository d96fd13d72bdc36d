//! Write the valid seeds of fixtures/seeds/<target>/ with the afskeys library itself:
//! `cargo run --manifest-path fuzz/seedgen/Cargo.toml -- fixtures/seeds` (bin/fuzz --seeds).
//! The corrupt seeds are copies of fixtures/corrupt/; the seeds written by hand (the old
//! 100-byte KeyFile, a KeyFileExt with a longer meta) are written here too, and so are the
//! SFTP reply packets (valid ones from `wire::encode_reply`, plus the forms it never writes:
//! VERSION, a STATUS without message, attributes with uid/gid and extensions; corrupt ones:
//! truncated, bad length, unknown type).

use afskeys::authdb::file::FileAuthDb;
use afskeys::authdb::AuthDb;
use afskeys::fleet::ssh::wire::{encode_reply, Attrs, Reply};
use afskeys::format::{write_keyfile, write_keyfileext};
use afskeys::keys::{Key, KeyId, KeySet, KeyType};
use afskeys::journal::{JournalKey, Retired, Rotation, State, StateFile, Step};
use chrono::{TimeZone, Utc};
use std::fs;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

fn typed(t: KeyType, kvno: i32, enctype: i32, bytes: Vec<u8>) -> Key {
    Key::new(
        KeyId {
            key_type: t,
            kvno,
            subtype: enctype,
        },
        Zeroizing::new(bytes),
    )
}

fn set(keys: Vec<Key>) -> KeySet {
    let mut s = KeySet::new();
    for k in keys {
        s.insert(k).expect("seed keys are valid");
    }
    s
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    fs::create_dir_all(dir).unwrap();
    fs::write(dir.join(name), bytes).unwrap();
    println!("{}", dir.join(name).display());
}

fn seq(len: usize, start: u8) -> Vec<u8> {
    (0..len).map(|i| start.wrapping_add(i as u8 * 7)).collect()
}

fn main() {
    let out = PathBuf::from(std::env::args().nth(1).unwrap_or("fixtures/seeds".into()));
    let k = [0x80, 0xb6, 0xa7, 0xcd, 0x7a, 0x9d, 0xad, 0xb6];
    let weak: [[u8; 8]; 4] = [
        [0x01; 8],
        [0xfe; 8],
        [0x1f, 0x1f, 0x1f, 0x1f, 0x0e, 0x0e, 0x0e, 0x0e],
        [0xe0, 0xe0, 0xe0, 0xe0, 0xf1, 0xf1, 0xf1, 0xf1],
    ];

    // KeyFile
    let d = out.join("keyfile");
    write(&d, "valid.empty", &write_keyfile(&KeySet::new()));
    let one = set(vec![Key::rxkad(3, &k)]);
    write(&d, "valid.one", &write_keyfile(&one));
    let mut full: Vec<Key> = (0..4)
        .map(|i| Key::rxkad(i * 60, &weak[i as usize]))
        .collect();
    full.extend((0..3).map(|i| Key::rxkad(250 + i, &[i as u8; 8])));
    full.push(Key::rxkad(255, &k));
    write(&d, "valid.eight-weak", &write_keyfile(&set(full)));
    let pw = set(vec![
        Key::rxkad(0, &[0; 8]),
        Key::new(
            KeyId {
                key_type: KeyType::Rxkad,
                kvno: 999,
                subtype: 0,
            },
            Zeroizing::new(b"password".to_vec()),
        ),
    ]);
    write(&d, "valid.kvno999", &write_keyfile(&pw));
    let mut old = write_keyfile(&one);
    old.resize(100, 0); // the pre-1.8 fixed layout
    write(&d, "valid.old-100-byte", &old);

    // KeyFileExt
    let d = out.join("keyfileext");
    write(&d, "valid.empty", &write_keyfileext(&KeySet::new()));
    let aes = set(vec![typed(KeyType::RxkadKrb5, 5, 18, seq(32, 1))]);
    write(&d, "valid.aes256", &write_keyfileext(&aes));
    let mixed = set(vec![
        typed(KeyType::RxkadKrb5, 5, 17, seq(16, 2)),
        typed(KeyType::RxkadKrb5, 5, 18, seq(32, 3)),
        typed(KeyType::Rxgk, 1, 18, seq(32, 4)),
        typed(KeyType::Rxgk, 7, 4242, seq(5, 5)),
        typed(KeyType::RxkadKrb5, i32::MAX, -9, Vec::new()),
        typed(KeyType::RxkadKrb5, 6, 16, seq(24, 6)),
    ]);
    write(&d, "valid.mixed", &write_keyfileext(&mixed));
    // Hand-made: a meta length of 20 (4 extra bytes the reader skips).
    let mut b = 1i32.to_be_bytes().to_vec();
    for x in [20i32, 2, 5, 17, 0x0909_0909, 16] {
        b.extend_from_slice(&x.to_be_bytes());
    }
    b.extend_from_slice(&seq(16, 8));
    write(&d, "valid.long-meta", &b);

    // Auth DB, written by the file backend itself.
    let d = out.join("authdb");
    let t = Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    for (name, kvno, keys) in [
        (
            "valid.rxkad_krb5",
            7,
            vec![
                typed(KeyType::RxkadKrb5, 7, 18, seq(32, 9)),
                typed(KeyType::RxkadKrb5, 7, 17, seq(16, 10)),
            ],
        ),
        ("valid.rxkad", 3, vec![Key::rxkad(3, &k)]),
    ] {
        let p = tmp.path().join(name);
        FileAuthDb::new(&p, "afs/example.com@EXAMPLE.COM")
            .init(kvno, &keys, t)
            .unwrap();
        write(&d, name, &fs::read(&p).unwrap());
    }

    // Rotation state, written by StateFile::save.
    let d = out.join("state");
    let empty = State {
        version: 1,
        ..Default::default()
    };
    let mut busy = State {
        version: 1,
        last_rotation: Some(t),
        ..Default::default()
    };
    busy.retire(4, t);
    busy.retire(5, t);
    busy.rotation = Some(Rotation {
        started: t,
        updated: t,
        step: Step::Distributed,
        kvno: 6,
        key_type: "rxkad_krb5".into(),
        keys: vec![
            JournalKey {
                enctype: 18,
                key: "ab".repeat(32),
            },
            JournalKey {
                enctype: 17,
                key: "cd".repeat(16),
            },
        ],
        passphrase: None,
        old_kvno: Some(5),
        confirmed: vec!["fs1".into()],
        missing: vec![("fs2".into(), "ssh: connection refused".into())],
        activated: None,
    });
    let mut kdc = State {
        version: 1,
        retired: vec![Retired { kvno: 1, since: t }],
        ..Default::default()
    };
    kdc.rotation = Some(Rotation {
        started: t,
        updated: t,
        step: Step::Activated,
        kvno: 2,
        key_type: "rxkad".into(),
        keys: vec![JournalKey {
            enctype: 0,
            key: "0102030405060708".into(),
        }],
        passphrase: Some("correct horse".into()),
        old_kvno: None,
        confirmed: vec![],
        missing: vec![],
        activated: Some(t),
    });
    for (name, s) in [
        ("valid.empty", &empty),
        ("valid.rotating", &busy),
        ("valid.passphrase", &kdc),
    ] {
        let p = tmp.path().join(name);
        StateFile::new(&p).save(s).unwrap();
        write(&d, name, &fs::read(&p).unwrap());
    }

    // afskeys.toml: the documented shape (src/config.rs) and smaller ones; each must parse.
    let d = out.join("config");
    for (name, text) in [
        ("valid.empty", ""),
        (
            "valid.documented",
            r#"cell = "example.com"
token_lifetime = "25h"
rotation_interval = "30d"

[authdb]
backend = "kadmin"
principal = "afs/example.com@EXAMPLE.COM"
kadmin = "kadmin.local"

[ssh]
identity = "/root/.ssh/id_ed25519"
known_hosts = "/root/.ssh/known_hosts"
parallel = 16
timeout = "10s"

[[servers]]
name = "fs1"
host = "fs1.example.com"
port = 22
user = "root"
confdir = "/usr/afs/etc"
"#,
        ),
        (
            "valid.file-backend",
            r#"cell = "example.org"
token_lifetime = "1day 2h 30min"

[authdb]
backend = "file"
path = "/usr/afs/etc/afskeys-authdb.json"

[audit]
path = "/var/log/afskeys-audit.log"

[[servers]]
name = "local-copy"
confdir = "/srv/afs/etc"

[[servers]]
name = "db2"
host = "db2.example.org"
port = 2222
user = "afsadmin"
"#,
        ),
        (
            "valid.inline",
            "servers = [{ name = \"a\" }, { name = \"b\", host = \"b\" }]\nssh = { parallel = 1, timeout = \"500ms\" }\n",
        ),
    ] {
        afskeys::config::Config::parse(text, Path::new(name)).expect("config seed parses");
        write(&d, name, text.as_bytes());
    }

    sftp_replies(&out.join("sftp_reply"));
}

fn be(v: u32) -> [u8; 4] {
    v.to_be_bytes()
}

/// A packet: length prefix, then `body` (type byte first).
fn packet(body: &[u8]) -> Vec<u8> {
    let mut p = be(body.len() as u32).to_vec();
    p.extend_from_slice(body);
    p
}

fn sftp_replies(d: &Path) {
    let full = Attrs {
        size: Some(300),
        perm: Some(0o100600),
        atime: Some(1_600_000_000),
        mtime: Some(1_700_000_000),
    };
    for (name, id, reply) in [
        ("valid.status-ok", 1, Reply::Status(0, "Success".into())),
        ("valid.status-eof", 2, Reply::Status(1, String::new())),
        ("valid.handle", 3, Reply::Handle(vec![0, 0, 0, 1])),
        ("valid.data", 4, Reply::Data((0..300u32).map(|i| (i * 7) as u8).collect())),
        ("valid.attrs", 5, Reply::Attrs(full)),
        ("valid.attrs-empty", 6, Reply::Attrs(Attrs::default())),
        (
            "valid.name",
            7,
            Reply::Name(vec![
                ("KeyFile.20260102T030405.000000000Z".into(), full),
                (".afskeys-stage.0011223344556677".into(), Attrs::perm(0o040700)),
            ]),
        ),
        ("valid.extended", 8, Reply::Extended),
    ] {
        write(d, name, &encode_reply(id, &reply));
    }
    // VERSION 3 with OpenSSH's extensions.
    let mut v = vec![2];
    v.extend_from_slice(&be(3));
    for ext in ["posix-rename@openssh.com", "fsync@openssh.com", "hardlink@openssh.com"] {
        v.extend_from_slice(&be(ext.len() as u32));
        v.extend_from_slice(ext.as_bytes());
        v.extend_from_slice(&be(1));
        v.push(b'1');
    }
    write(d, "valid.version", &packet(&v));
    // STATUS with neither message nor language tag (old servers).
    let mut st = vec![101];
    st.extend_from_slice(&be(9));
    st.extend_from_slice(&be(4));
    write(d, "valid.status-bare", &packet(&st));
    // ATTRS with every flag: size, uid/gid, permissions, times, one extension pair.
    let mut at = vec![105];
    at.extend_from_slice(&be(10));
    at.extend_from_slice(&be(0x8000_000f));
    at.extend_from_slice(&300u64.to_be_bytes());
    for x in [0, 0, 0o100600, 1, 2, 1] {
        at.extend_from_slice(&be(x));
    }
    for s in ["x@example.com", "v"] {
        at.extend_from_slice(&be(s.len() as u32));
        at.extend_from_slice(s.as_bytes());
    }
    write(d, "valid.attrs-every-flag", &packet(&at));

    let data = encode_reply(11, &Reply::Data(seq(30, 3)));
    write(d, "corrupt.truncated", &data[..data.len() - 5]);
    write(d, "corrupt.length-zero", &be(0));
    let mut huge = be(0x0200_0000).to_vec();
    huge.extend_from_slice(&data[4..]);
    write(d, "corrupt.length-too-large", &huge);
    let mut unknown = data.clone();
    unknown[4] = 99;
    write(d, "corrupt.unknown-type", &unknown);
    let mut count = encode_reply(12, &Reply::Name(vec![("a".into(), Attrs::default())]));
    count[9..13].copy_from_slice(&be(u32::MAX));
    write(d, "corrupt.name-count", &count);
}

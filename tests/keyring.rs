//! Secrets from the kernel keyring: a password stored with `keyctl padd` (Debian keyutils)
//! derives the same key through `--password-from-keyring user:NAME` as through stdin, for add,
//! rotate and string-to-key, and a missing key is a clear error.

mod common;
use common::*;
use std::process::Command;

struct KernelKey(String);

impl KernelKey {
    fn add(name: &str, secret: &[u8]) -> KernelKey {
        let mut c = Command::new("keyctl");
        c.args(["padd", "user", name, "@u"]);
        ok(pipe(c, secret));
        KernelKey(name.to_string())
    }
}

impl Drop for KernelKey {
    fn drop(&mut self) {
        let id = Command::new("keyctl")
            .args(["search", "@u", "user", &self.0])
            .output();
        if let Ok(o) = id {
            let id = String::from_utf8_lossy(&o.stdout).trim().to_string();
            let _ = Command::new("keyctl").args(["unlink", &id, "@u"]).output();
        }
    }
}

#[test]
fn keyring_password_equals_stdin_password() {
    if !have(&["keyctl"]) {
        return;
    }
    let name = format!("afskeys-test-{}", std::process::id());
    let _k = KernelKey::add(&name, b"keyring secret 123");
    let spec = format!("user:{name}");
    let d = confdir("keyring.example.com");
    let dir = d.path();
    let from_stdin = ok(run(dir, &["string-to-key"], b"keyring secret 123\n"));
    let from_ring = ok(run(
        dir,
        &["string-to-key", "--password-from-keyring", &spec],
        b"",
    ));
    assert_eq!(from_ring, from_stdin);
    let typed = ok(run(
        dir,
        &[
            "string-to-key",
            "--enctype",
            "18",
            "--password-from-keyring",
            &spec,
        ],
        b"",
    ));
    assert_eq!(
        typed,
        ok(run(
            dir,
            &["string-to-key", "--enctype", "18"],
            b"keyring secret 123\n"
        ))
    );

    ok(run(
        dir,
        &["add", "--kvno", "3", "--password-from-keyring", &spec],
        b"",
    ));
    let c = from_stdin
        .lines()
        .nth(1)
        .unwrap()
        .strip_prefix("cksum ")
        .unwrap()
        .to_string();
    assert!(ok(run(dir, &["listkeys"], b"")).starts_with(&format!("key 3 has cksum {c}\n")));
    ok(run(dir, &["rotate", "--password-from-keyring", &spec], b""));
    let status = ok(run(dir, &["status"], b""));
    assert!(status.contains("kvno 4"), "{status}");

    let o = run(
        dir,
        &[
            "string-to-key",
            "--password-from-keyring",
            "user:afskeys-no-such-key",
        ],
        b"",
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("no user key \"afskeys-no-such-key\""),
        "{}",
        stderr(&o)
    );
}

//! Every child afskeys starts has a deadline and dies with afskeys (issue "Races, hangs and
//! lies", item 4): a kadmin that never answers (here a stand-in that sleeps, with a child of
//! its own, as kadmin waiting on a kadmind that accepted TCP and never answered) costs
//! `status`, `check` and `rotate` the configured `[authdb] timeout`, then a clear error, the
//! cell lock released, and no process left behind; a SIGKILLed afskeys takes its kadmin child
//! with it.

mod common;
use common::*;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use wait_timeout::ChildExt;

/// A conf dir whose auth DB is an MIT kadmin that hangs: the script sleeps (its own child),
/// under a name and a sleep length unique to this test, so leftovers can be found.
fn hanging_cell(tag: &str) -> (tempfile::TempDir, String, String) {
    let d = confdir("hang.example.com");
    let marker = format!("{}{}", std::process::id(), tag);
    let script = d.path().join(format!("kadmin-{marker}"));
    let sleep = format!("sleep 1000.{marker}");
    fs::write(&script, format!("#!/bin/sh\n{sleep}\necho never\n")).unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    let toml = format!(
        "[authdb]\nbackend = \"kadmin\"\nprincipal = \"afs/hang.example.com@HANG\"\n\
         kadmin = \"{}\"\ntimeout = \"2s\"\n",
        script.display()
    );
    fs::write(d.path().join("afskeys.toml"), toml).unwrap();
    (d, script.display().to_string(), sleep)
}

/// Processes whose command line holds `pattern`.
fn running(pattern: &str) -> Vec<String> {
    let o = Command::new("pgrep")
        .args(["-af", pattern])
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| !l.contains("pgrep"))
        .map(str::to_string)
        .collect()
}

/// Run afskeys with a watchdog: a run past 30 s is killed and fails the test (today's code
/// hangs for the stand-in's 1000 s).
fn bounded(dir: &Path, args: &[&str]) -> (Output, Duration) {
    let mut c = afskeys();
    c.arg("--confdir").arg(dir).args(args);
    c.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let t = Instant::now();
    let mut child = c.spawn().unwrap();
    let done = child.wait_timeout(Duration::from_secs(30)).unwrap();
    if done.is_none() {
        let _ = child.kill();
        let _ = child.wait();
        panic!("afskeys {args:?} still ran after 30 s: the kadmin child has no deadline");
    }
    (child.wait_with_output().unwrap(), t.elapsed())
}

/// Proves `status`, `check` and `rotate` end within the deadline (2 s here) with a message
/// naming kadmin and the deadline, leave no kadmin or child of it running, and release the
/// cell lock (the next command runs at once).
#[test]
fn a_kadmin_that_never_answers_costs_its_deadline_not_a_hang() {
    let (d, script, sleep) = hanging_cell("1");
    for args in [&["status"][..], &["check"], &["rotate"]] {
        let (o, took) = bounded(d.path(), args);
        let text = format!("{}{}", stdout(&o), stderr(&o));
        eprintln!(
            "{args:?}: exit {:?} after {took:.2?}: {text}",
            o.status.code()
        );
        // status shows what it could read and exits 0; check and rotate fail.
        assert_eq!(o.status.success(), args == ["status"], "{args:?}: {text}");
        assert!(
            text.contains(&format!("{script} did not finish within 2s (killed)")),
            "{args:?}: {text}"
        );
        assert!(took < Duration::from_secs(15), "{args:?} took {took:?}");
        assert!(took >= Duration::from_secs(2), "{args:?} took {took:?}");
        assert_eq!(running(&sleep), Vec::<String>::new(), "left running");
        assert_eq!(running(&script), Vec::<String>::new(), "left running");
    }
    let check = bounded(d.path(), &["check"]).0;
    assert_eq!(check.status.code(), Some(3), "{}", stdout(&check));
    assert!(stdout(&check).starts_with("AFSKEYS UNKNOWN - "));
}

/// Proves a kadmin child dies with afskeys: afskeys is SIGKILLed while kadmin runs (the
/// deadline is far off), and the kadmin process is gone within a second.
#[test]
fn a_killed_afskeys_takes_its_kadmin_child_with_it() {
    let (d, script, _sleep) = hanging_cell("2");
    let toml = fs::read_to_string(d.path().join("afskeys.toml")).unwrap();
    fs::write(
        d.path().join("afskeys.toml"),
        toml.replace("timeout = \"2s\"", "timeout = \"600s\""),
    )
    .unwrap();
    let mut c = afskeys();
    c.arg("--confdir").arg(d.path()).arg("status");
    no_vldb(&mut c);
    let mut child = c
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while running(&script).is_empty() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "kadmin never started"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let t = Instant::now();
    while !running(&script).is_empty() {
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "kadmin outlived afskeys: {:?}",
            running(&script)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Proves text from outside reaches the terminal clean: a kadmin whose error output carries
/// a clipboard write (OSC 52), a window title change and a screen clear has each control
/// character shown as U+FFFD by `status`, `check` and `authdb show`, in stdout and stderr.
#[test]
fn a_kdcs_error_text_reaches_the_terminal_without_control_characters() {
    let (d, script, _) = hanging_cell("3");
    fs::write(
        &script,
        "#!/bin/sh\nprintf 'kadmin: \\033]52;c;ZXZpbA==\\007\\033]0;pwned\\007\\033[2Jbad\\r\\n' >&2\n\
         exit 1\n",
    )
    .unwrap();
    for args in [&["status"][..], &["check"], &["authdb", "show"]] {
        let (o, _) = bounded(d.path(), args);
        let text = format!("{}{}", stdout(&o), stderr(&o));
        assert!(
            text.contains("kadmin: \u{fffd}]52;c;ZXZpbA=="),
            "{args:?}: {text:?}"
        );
        assert!(
            !text
                .chars()
                .any(|c| c.is_control() && c != '\n' && c != '\t'),
            "{args:?}: {text:?}"
        );
    }
}
